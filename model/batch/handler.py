"""A Beam ``ModelHandler`` for the exported DeepFill SavedModel (``export.py``).

Beam's own ``TFModelHandlerTensor`` does not fit: it imports ``tensorflow_hub`` (whose
install pulls the full ``tensorflow`` package beside ``tensorflow-cpu``) and loads models
with ``tf.keras.models.load_model``, which Keras 3 refuses for SavedModels. This handler
loads with ``tf.saved_model.load`` and calls the ``serving_default`` signature once per
photo: photos differ in size, so they are never stacked into a batch (RunInference is told
to make batches of one).

The SavedModel is loaded as it is: ``tf.saved_model.load`` builds every function of the
file whether it is called or not, so the export for the pipeline is a serving-only one
(``export.py --signatures serving``; the full export also loads, with ``inpaint_bytes``
built for nothing). A local export is loaded in place; one on another Beam filesystem is
copied to a local temporary folder that is deleted once loaded. One model per worker process
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

from model.batch import copies


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

WARM_UP_SIDE = 64  # the warm-up photo: 64 x 64 with a 16 x 16 hole


class LoadedModel:
  """The loaded SavedModel's ``serving_default`` function, called by one thread at a time.

  The constructor makes one call on a small photo, so graph optimisation and kernel set-up
  happen at load time; ``baseline_rss_mb`` is then the process's peak resident memory: what
  it holds before its first photo (Python, TensorFlow, Beam, the model, its optimised graph),
  and ``setup_cpu_s`` the CPU time the process has used so far (all its threads).
  """

  def __init__(self, loaded):
    self._loaded = loaded  # keeps the variables alive
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
    try:
      if FileSystems.get_scheme(self._saved_model_dir) is None:
        loaded = tf.saved_model.load(self._saved_model_dir)
      else:  # TensorFlow reads local files: a copy, deleted once the model is in memory
        copies.remove_stale_copies()
        folder = tempfile.mkdtemp(prefix=copies.prefix())
        try:
          copy_tree(self._saved_model_dir, folder)
          loaded = tf.saved_model.load(folder)
        finally:
          shutil.rmtree(folder, ignore_errors=True)
      return LoadedModel(loaded)
    except (OSError, ValueError, KeyError, DecodeError, tf.errors.OpError) as e:
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
