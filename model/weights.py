"""Generator checkpoints: official TF1 DeepFill v1 checkpoints (by variable name) and our own.

Our format is a directory holding ``model.json`` (a :class:`ModelConfig`) and a
``tf.train.Checkpoint`` whose generator sits under the key ``generator`` (the
training checkpoints of ``train.py`` have the same layout, so they load too).
Official checkpoints are read by name (ARCHITECTURE.md §7.3): ``inpaint_net/<layer>/kernel``
and ``.../bias``, with ``<layer>/<layer>_conv`` for the upsampling layers.

``model.json`` may also hold an ``inference`` block (:class:`model.config.InferenceConfig`):
how the model is run by default. :func:`inference_defaults` reads it; an official checkpoint
defaults to the release's computation, a ``model.json`` without the block to
``LEGACY_INFERENCE``.
"""
import glob
import json
import os

import tensorflow as tf

from layers.gen_conv import GenDeconv
from model import config as config_lib
from model import generator as generator_lib
from model.errors import UserError
from model.fileio.atomic import atomic_write

MODEL_JSON = "model.json"
GENERATOR_KEY = "generator"


def official_variable_names(gen):
  """Maps official TF1 variable names to the generator's Keras variables."""
  names = {}
  for layer in gen.conv_layers():
    if isinstance(layer, GenDeconv):
      scope = f"inpaint_net/{layer.name}/{layer.gen_conv.name}"
      conv = layer.gen_conv.conv
    else:
      scope = f"inpaint_net/{layer.name}"
      conv = layer.conv
    names[f"{scope}/kernel"] = conv.kernel
    names[f"{scope}/bias"] = conv.bias
  return names


def _checkpoint_prefix(path):
  """Returns the checkpoint prefix for a directory or prefix path, or None."""
  if os.path.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest and os.path.exists(latest + ".index"):
      return latest
    indexes = sorted(f for f in os.listdir(path) if f.endswith(".index"))
    return os.path.join(path, indexes[-1][:-len(".index")]) if indexes else None
  if os.path.exists(path + ".index"):
    return path
  return None


# What reading a cut-short or overwritten checkpoint file raises: a short read of the data
# file (IndexError "Read less bytes than requested"), a checksum mismatch or a bad table
# (DataLossError, or a plain OpError from the checkpoint reader with one of these messages).
_DAMAGE_TEXT = ("Read less bytes", "Checksum does not match", "not an sstable", "corrupt",
                "truncated")


def _is_damage(error):
  return isinstance(error, (IndexError, tf.errors.DataLossError)) or (
      isinstance(error, tf.errors.OpError) and any(t in str(error) for t in _DAMAGE_TEXT))


def _damaged(prefix, error, part="data"):
  """The UserError for a checkpoint file that is truncated or corrupt, naming the file."""
  files = [prefix + ".index"] if part == "index" else (
      sorted(glob.glob(glob.escape(prefix) + ".data-*")) or [prefix + ".data-*"])
  detail = " ".join(str(error).split())
  detail = detail.split("}} ", 1)[-1][:200]  # drop TensorFlow's {{function_node ...}} prefix
  return UserError(f"{', '.join(files)}: checkpoint file is truncated or corrupt ({detail}); "
                   "copy or download it again")


def _read_variables(prefix):
  try:
    reader = tf.train.load_checkpoint(prefix)
    return reader, reader.get_variable_to_shape_map()
  except (tf.errors.OpError, ValueError) as e:
    if _is_damage(e):
      raise _damaged(prefix, e, "index") from None
    raise UserError(f"cannot read checkpoint {prefix}: {str(e).splitlines()[0]}") from None


def is_official_checkpoint(path):
  """True if ``path`` holds a TF1 checkpoint with ``inpaint_net/`` generator variables."""
  prefix = _checkpoint_prefix(path)
  if prefix is None:
    return False
  _, shapes = _read_variables(prefix)
  return "inpaint_net/conv1/kernel" in shapes


def load_official(path, dtype="float32"):
  """Builds the ``v1`` generator and loads an official TF1 checkpoint into it.

  Discriminator and optimizer variables are ignored; missing or mis-shaped
  generator variables raise ``UserError``. ``cnum`` is read from ``conv1``. ``dtype``: the
  generator's Keras dtype policy (its variables are float32 under every policy).
  """
  prefix = _checkpoint_prefix(path)
  if prefix is None:
    raise UserError(f"no checkpoint found in {path}")
  reader, shapes = _read_variables(prefix)
  if "inpaint_net/conv1/kernel" not in shapes:
    raise UserError(f"{path} is not a DeepFill v1 checkpoint (no inpaint_net/conv1/kernel)")
  cnum = int(shapes["inpaint_net/conv1/kernel"][-1])
  cfg = config_lib.preset("v1", cnum=cnum)
  gen = generator_lib.build_generator(cfg, dtype=dtype)
  names = official_variable_names(gen)
  missing = sorted(n for n in names if n not in shapes)
  if missing:
    raise UserError(f"checkpoint {prefix} lacks {len(missing)} generator variables, "
                    f"e.g. {missing[0]}")
  for name, var in names.items():
    if list(shapes[name]) != list(var.shape):
      raise UserError(f"checkpoint variable {name} has shape {shapes[name]}, "
                      f"the v1 generator needs {list(var.shape)}")
  try:
    for name, var in names.items():
      var.assign(reader.get_tensor(name))
  except (IndexError, tf.errors.OpError) as e:
    if _is_damage(e):
      raise _damaged(prefix, e) from None
    raise
  return gen, cfg


INFERENCE_KEY = "inference"


def write_model_json(cfg, directory, inference=None):
  """Atomically writes ``model.json`` for ``cfg`` (and the ``inference`` block, an
  :class:`InferenceConfig`, unless None) into ``directory``."""
  values = json.loads(cfg.to_json())
  if inference is not None:
    values[INFERENCE_KEY] = inference.to_dict()
  atomic_write(os.path.join(directory, MODEL_JSON), json.dumps(values, indent=2, sort_keys=True))


def save_generator(gen, cfg, directory, inference=None):
  """Writes a model folder: ``model.json`` (with ``inference`` unless None) and the generator
  weights (no critics or optimizer), e.g. to ship a generator taken from a training run (how
  ``checkpoints/demo`` was made)."""
  os.makedirs(directory, exist_ok=True)
  write_model_json(cfg, directory, inference)
  ckpt = tf.train.Checkpoint(**{GENERATOR_KEY: gen})
  return ckpt.write(os.path.join(directory, "generator"))


def _read_json(directory):
  path = os.path.join(directory, MODEL_JSON)
  try:
    with open(path) as f:
      values = json.load(f)
    if not isinstance(values, dict):
      raise ValueError("not a JSON object")
    return path, values
  except (OSError, ValueError, TypeError) as e:
    raise UserError(f"bad {path}: {e}") from None


def read_model_json(directory):
  path, values = _read_json(directory)
  values = {k: v for k, v in values.items() if k != INFERENCE_KEY}
  try:
    return config_lib.ModelConfig.from_dict(values)
  except (ValueError, TypeError) as e:
    raise UserError(f"bad {path}: {e}") from None


def read_inference(directory):
  """The ``inference`` block of ``directory``'s ``model.json``; ``LEGACY_INFERENCE`` without one."""
  path, values = _read_json(directory)
  if INFERENCE_KEY not in values:
    return config_lib.LEGACY_INFERENCE
  try:
    return config_lib.InferenceConfig.from_dict(values[INFERENCE_KEY])
  except (ValueError, TypeError) as e:
    raise UserError(f"bad {path}: {INFERENCE_KEY}: {e}") from None


def inference_defaults(path):
  """How the checkpoint at ``path`` is run by default (:class:`InferenceConfig`): its
  ``model.json`` block, or the release's computation for an official TF1 checkpoint."""
  if os.path.isdir(path) and os.path.exists(os.path.join(path, MODEL_JSON)):
    return read_inference(path)
  return config_lib.OFFICIAL_INFERENCE


def load_ours(directory, dtype="float32"):
  """Rebuilds the generator from ``model.json`` (Keras dtype policy ``dtype``) and restores its
  weights, whatever policy they were trained in (variables are float32 under every one)."""
  cfg = read_model_json(directory)
  prefix = _checkpoint_prefix(directory)
  if prefix is None:
    raise UserError(f"{directory} has {MODEL_JSON} but no checkpoint files")
  gen = generator_lib.build_generator(cfg, dtype=dtype)
  _read_variables(prefix)  # a clear error for unreadable files
  # Restore by object graph, not by variable name: in training checkpoints the
  # generator's weights are stored under the optimizer's path (TF keeps the first path).
  try:
    status = tf.train.Checkpoint(**{GENERATOR_KEY: gen}).read(prefix)
    status.expect_partial()
    status.assert_existing_objects_matched()
  except (AssertionError, IndexError, tf.errors.OpError, ValueError) as e:
    if _is_damage(e):
      raise _damaged(prefix, e) from None
    message = " ".join(str(e).split())[:300]
    raise UserError(f"checkpoint {prefix} does not match {MODEL_JSON} "
                    f"(or holds no generator): {message}") from None
  return gen, cfg


def load_generator(path, dtype="float32"):
  """Loads a generator from our checkpoint directory or an official TF1 one.

  ``dtype``: the generator's Keras dtype policy or its name (``model.precision.PRECISIONS``).
  Returns ``(generator, ModelConfig)``. Raises ``UserError`` if nothing usable is there.
  """
  if not os.path.exists(path) and not os.path.exists(path + ".index"):
    raise UserError(f"checkpoint directory not found: {path}")
  if os.path.isdir(path) and os.path.exists(os.path.join(path, MODEL_JSON)):
    return load_ours(path, dtype=dtype)
  if is_official_checkpoint(path):
    return load_official(path, dtype=dtype)
  raise UserError(f"no DeepFill checkpoint in {path} (expected {MODEL_JSON} + checkpoint, "
                  "or an official TF1 checkpoint)")


def under_precision(gen, cfg, precision):
  """``gen`` if it runs under the Keras dtype policy ``precision``, else a generator of ``cfg``
  built under it holding the same (float32) weights; None stays None (an inpainter used only for
  its pixel mapping)."""
  if gen is None or gen.dtype_policy.name == precision:
    return gen
  other = generator_lib.build_generator(cfg, dtype=precision)
  for target, source in zip(other.weights, gen.weights, strict=True):
    target.assign(source)
  return other
