"""A Beam ``ModelHandler`` for the exported DeepFill SavedModel (``export.py``).

Beam's own ``TFModelHandlerTensor`` does not fit: it imports ``tensorflow_hub`` (whose
install pulls the full ``tensorflow`` package beside ``tensorflow-cpu``) and loads models
with ``tf.keras.models.load_model``, which Keras 3 refuses for SavedModels. This handler
loads with ``tf.saved_model.load`` and calls the ``serving_default`` signature once per
photo: photos differ in size, so they are never stacked into a batch (RunInference is told
to make batches of one).

Only ``serving_default`` is loaded: :func:`keep_only_signature` drops the other signatures
(``inpaint_bytes`` and what only it calls: half of the 16,000 nodes of the demo export)
before ``tf.saved_model.load``, which builds every function of the file whether it is called
or not (0.13 GB less per worker for the demo model). One model per worker process
(RunInference shares it between the threads of a process) that inpaints one photo at a time
(a lock), so a process needs the inference working memory of one photo; its attention part
is bounded by the ``--max_memory_gb`` given to ``export.py``. TensorFlow is imported only in
the workers, when the model is loaded.
"""
import dataclasses
import logging
import os
import resource
import shutil
import sys
import tempfile
import threading
import time

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference import base
from google.protobuf.message import DecodeError


class _DropBeamMemoryWarning(logging.Filter):
  """Beam 2.77's RunInference warns on every model load that it cannot measure memory:
  its module imports ``resource`` together with a torch-only model manager and drops both
  when torch is missing. The warning is wrong here; ``peak_rss_bytes`` measures it."""

  def filter(self, record):
    return not record.getMessage().startswith("Resource module is not available")


if not any(isinstance(f, _DropBeamMemoryWarning) for f in logging.getLogger().filters):
  logging.getLogger().addFilter(_DropBeamMemoryWarning())


@dataclasses.dataclass(eq=False)
class Photo:
  """One decoded input: what the model needs plus what the writer needs.

  Attributes:
    task: the pipeline's ``Task`` (image, mask and output paths).
    rgb: uint8 ``[H, W, 3]`` RGB, in display orientation (as ``test.py`` reads it).
    hole: bool ``[H, W]``, True = hole.
    info: the image's ``ImageInfo`` (grey / RGBA mode is written back as ``test.py`` does).
  """
  task: object
  rgb: np.ndarray
  hole: np.ndarray
  info: object


@dataclasses.dataclass(eq=False)
class Inpainted:
  """What the handler returns for one photo: uint8 ``[H, W, 3]`` pixels, the call time, and
  the worker's peak resident memory (MB) and CPU time (s) before its first photo."""
  pixels: np.ndarray
  inference_ms: float
  baseline_rss_mb: float = None
  setup_cpu_s: float = None


SIGNATURE = "serving_default"
FINGERPRINT = "fingerprint.pb"  # a checksum of the full saved_model.pb: left out of the copy


def _function_names(attr_value, out):
  if attr_value.HasField("func"):
    out.append(attr_value.func.name)
  if attr_value.HasField("list"):
    out.extend(f.name for f in attr_value.list.func)


def _called_functions(nodes, library):
  """Names of the library functions that ``nodes`` (NodeDefs) call or take as attributes."""
  out = []
  for node in nodes:
    if node.op in library:
      out.append(node.op)
    for value in node.attr.values():
      _function_names(value, out)
  return out


def keep_only_signature(saved_model_pb, name=SIGNATURE):
  """A ``saved_model.pb`` (bytes) reduced to the signature ``name`` and the functions it calls.

  The object graph keeps its nodes (node ids stay valid): the ones holding other functions
  become empty objects that nothing refers to, and the function library loses every
  function ``name`` does not reach. Variables are untouched. Raises ``ValueError`` when
  the file has no such signature.
  """
  from tensorflow.core.protobuf import saved_model_pb2
  model = saved_model_pb2.SavedModel.FromString(saved_model_pb)
  if len(model.meta_graphs) != 1:
    raise ValueError(f"expected one MetaGraph, found {len(model.meta_graphs)}")
  meta = model.meta_graphs[0]
  graph = meta.object_graph_def
  root = graph.nodes[0].children if graph.nodes else []  # TF1 SavedModels have no object graph
  signatures = [graph.nodes[c.node_id] for c in root if c.local_name == "signatures"]
  wanted = [c.node_id for s in signatures for c in s.children if c.local_name == name]
  if not wanted or graph.nodes[wanted[0]].WhichOneof("kind") != "bare_concrete_function":
    raise ValueError(f"no signature {name!r}")
  library = {f.signature.name: f for f in meta.graph_def.library.function}
  # Roots: the signature's function and what the graph-mode (TF1) view's other nodes call
  # (its saver), minus the nodes that are other signatures' outputs.
  others = [key for key in meta.signature_def if key != name and not key.startswith("__")]
  other_outputs = {t.name.split(":")[0] for key in others
                   for t in meta.signature_def[key].outputs.values()}
  stack = [graph.nodes[wanted[0]].bare_concrete_function.concrete_function_name]
  stack += _called_functions([n for n in meta.graph_def.node if n.name not in other_outputs],
                             library)
  kept = set()
  while stack:
    fname = stack.pop()
    if fname in library and fname not in kept:
      kept.add(fname)
      stack.extend(_called_functions(library[fname].node_def, library))
  dropped = set()
  for node_id, node in enumerate(graph.nodes):
    kind = node.WhichOneof("kind")
    if kind == "function":
      names = set(node.function.concrete_functions)
    elif kind == "bare_concrete_function":
      names = {node.bare_concrete_function.concrete_function_name}
    else:
      continue
    if not names <= kept:
      dropped.add(node_id)
      node.Clear()
      node.user_object.identifier = "_generic_user_object"
  for node in graph.nodes:
    for field in (node.children, node.dependencies):
      refs = [ref for ref in field if ref.node_id not in dropped]
      if len(refs) != len(field):
        del field[:]
        field.extend(refs)
  for fname in [f for f in graph.concrete_functions if f not in kept]:
    del graph.concrete_functions[fname]
  functions = [f for f in meta.graph_def.library.function if f.signature.name in kept]
  del meta.graph_def.library.function[:]
  meta.graph_def.library.function.extend(functions)
  gradients = [g for g in meta.graph_def.library.registered_gradients
               if g.gradient_func in kept]
  del meta.graph_def.library.registered_gradients[:]
  meta.graph_def.library.registered_gradients.extend(gradients)
  # Graph-mode (TF1) view: drop the other signatures and the nodes calling removed functions.
  for key in others:
    del meta.signature_def[key]
  nodes = [n for n in meta.graph_def.node
           if all(f in kept for f in _called_functions([n], library))]
  del meta.graph_def.node[:]
  meta.graph_def.node.extend(nodes)
  return model.SerializeToString()


def _link_or_copy(source, target):
  try:
    os.symlink(source, target)
  except OSError:
    shutil.copytree(source, target)


WARM_UP_SIDE = 64  # the warm-up photo: 64 x 64 with a 16 x 16 hole


class LoadedModel:
  """The loaded SavedModel's ``serving_default`` function, called by one thread at a time.

  The constructor makes one call on a small photo, so graph optimisation and kernel set-up
  happen at load time; ``baseline_rss_mb`` is then the process's peak resident memory: what
  it holds before its first photo (Python, TensorFlow, Beam, the model, its optimised graph),
  and ``setup_cpu_s`` the CPU time the process has used so far (all its threads).
  """

  def __init__(self, loaded, folder=None):
    self._loaded = loaded  # keeps the variables alive
    self._folder = folder  # the reduced copy (assets are read from it)
    self._serve = loaded.signatures[SIGNATURE]
    self._lock = threading.Lock()
    self.baseline_rss_mb = self.setup_cpu_s = None  # set once the warm-up call below is done
    side = WARM_UP_SIDE
    hole = np.zeros((side, side), bool)
    hole[side // 2 - 8:side // 2 + 8, side // 2 - 8:side // 2 + 8] = True
    self(np.zeros((side, side, 3), np.uint8), hole)
    self.baseline_rss_mb = peak_rss_bytes() / 2**20
    self.setup_cpu_s = time.process_time()

  def __call__(self, rgb, hole):
    """uint8 ``rgb`` [H, W, 3] and bool ``hole`` [H, W] -> ``Inpainted``."""
    import tensorflow as tf
    mask = np.where(hole, np.uint8(255), np.uint8(0))[None, :, :, None]
    with self._lock:
      start = time.perf_counter()
      out = self._serve(image=tf.constant(rgb[None]), mask=tf.constant(mask))["inpainted"]
      pixels = out[0].numpy()
      elapsed = time.perf_counter() - start
    return Inpainted(pixels=pixels, inference_ms=1000.0 * elapsed,
                     baseline_rss_mb=self.baseline_rss_mb, setup_cpu_s=self.setup_cpu_s)


def peak_rss_bytes():
  """Peak resident memory of this process so far (bytes)."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def copy_tree(source, target):
  """Copies every file below ``source`` (any Beam filesystem) into the local folder ``target``.

  The handler loads such a local copy, so a SavedModel loads from wherever the Beam workers
  can read (``gs://``, ``s3://``, ...), whatever remote paths TensorFlow itself supports.
  """
  root = source.rstrip("/") + "/"
  for meta in FileSystems.match([root + "**"])[0].metadata_list:
    rel = meta.path[len(root):]
    dest = os.path.join(target, *rel.split("/"))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with FileSystems.open(meta.path, compression_type=CompressionTypes.UNCOMPRESSED) as f_in:
      with open(dest, "wb") as f_out:
        shutil.copyfileobj(f_in, f_out, 1 << 20)


class SavedModelHandler(base.ModelHandler):
  """Runs ``serving_default`` of a DeepFill SavedModel on ``Photo`` elements, one by one.

  Args:
    saved_model_dir: the directory ``export.py`` wrote: a local path, or a path on another
      Beam filesystem (copied to a local temporary folder by each worker, then loaded).
    intra_op_threads: TensorFlow's intra-op thread count in each worker process, 0 for
      TensorFlow's default (all cores). Several worker processes on one machine each
      use all cores unless this is lowered. Applied only if TensorFlow has not started
      its runtime in the process yet.
    import_tensorflow: a picklable function returning the ``tensorflow`` module, for a
      worker to import it its own way (the CLI's hides TensorFlow's start-up lines);
      None: a plain import.
  """

  def __init__(self, saved_model_dir, intra_op_threads=0, import_tensorflow=None):
    super().__init__(min_batch_size=1, max_batch_size=1)
    self._saved_model_dir = saved_model_dir
    self._intra_op_threads = int(intra_op_threads)
    self._import_tensorflow = import_tensorflow

  def load_model(self):
    if self._import_tensorflow is not None:
      tf = self._import_tensorflow()
    else:
      import tensorflow as tf
    if self._intra_op_threads > 0:
      try:
        tf.config.threading.set_intra_op_parallelism_threads(self._intra_op_threads)
      except RuntimeError:  # the runtime is already initialised in this process
        pass
    folder = tempfile.TemporaryDirectory(prefix="deepfill_saved_model_")
    try:
      local = folder.name
      if FileSystems.get_scheme(self._saved_model_dir) is None:
        source = os.path.abspath(self._saved_model_dir)
        for entry in os.listdir(source):
          if entry not in ("saved_model.pb", FINGERPRINT):
            _link_or_copy(os.path.join(source, entry), os.path.join(local, entry))
      else:
        copy_tree(self._saved_model_dir, local)
        if os.path.exists(os.path.join(local, FINGERPRINT)):
          os.remove(os.path.join(local, FINGERPRINT))
        source = local
      with open(os.path.join(source, "saved_model.pb"), "rb") as f:
        full = f.read()
      try:
        reduced = keep_only_signature(full)
      except ValueError:  # not export.py's layout (e.g. a TF1 SavedModel): loaded whole
        reduced = full
      with open(os.path.join(local, "saved_model.pb"), "wb") as f:
        f.write(reduced)
      return LoadedModel(tf.saved_model.load(local), folder)
    except BaseException as e:
      folder.cleanup()
      if not isinstance(e, (OSError, ValueError, KeyError, DecodeError, tf.errors.OpError)):
        raise
      lines = str(e).strip().splitlines()
      raise RuntimeError(f"{self._saved_model_dir}: cannot load the SavedModel "
                         f"({lines[0] if lines else type(e).__name__})") from e

  def run_inference(self, batch, model, inference_args=None):
    for photo in batch:
      yield base.PredictionResult(photo, model(photo.rgb, photo.hole),
                                  model_id=self._saved_model_dir)

  def get_num_bytes(self, batch):
    return sum(photo.rgb.nbytes for photo in batch)  # the default pickles the whole batch

  def __repr__(self):
    return f"SavedModelHandler({self._saved_model_dir!r})"
