"""The precision an inference run uses: ``auto`` decided from the hardware, the choice checked.

``auto`` is ``mixed_bfloat16`` only where bfloat16 pays: on a GPU (TensorFlow runs the network
on the first one) of compute capability 8.0 or more, and on a CPU with AMX tiles (flag
``amx_bf16``) whose oneDNN may use them. A CPU with bfloat16 instructions but no AMX runs
bfloat16 convolutions slower than float32, and without oneDNN (``TF_ENABLE_ONEDNN_OPTS=0``)
TensorFlow's own bfloat16 kernels are no faster (docs/PRECISION.md); ``auto`` is
float32 there. An explicit mixed precision is checked to run (``model.precision.probe``): if it
cannot, one ``UserError`` line; ``auto`` falls back to float32 instead.
"""
import os

from model import precision as precision_lib

AUTO = "auto"
BFLOAT16 = "mixed_bfloat16"
# Off values of TF_ENABLE_ONEDNN_OPTS (TensorFlow reads it as a boolean).
_OFF = ("0", "false", "off", "no")


def gpu_capabilities():
  """``[(major, minor)]``: the compute capabilities of the visible GPUs, in device order
  (``(0, 0)`` for one that does not report it)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  capabilities = []
  for device in tf.config.list_physical_devices("GPU"):
    details = tf.config.experimental.get_device_details(device)
    capabilities.append(tuple(details.get("compute_capability") or (0, 0)))
  return capabilities


def onednn_may_use_amx(environ):
  """False when the environment keeps oneDNN off (``TF_ENABLE_ONEDNN_OPTS``) or limits it to
  an instruction set without AMX (``ONEDNN_MAX_CPU_ISA``, e.g. ``AVX512_CORE_BF16``)."""
  if environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower() in _OFF:
    return False
  isa = environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
  return isa in ("", "ALL", "DEFAULT") or "AMX" in isa


def auto_precision(cpuinfo=precision_lib.CPUINFO, gpus=None, environ=None):
  """``mixed_bfloat16`` where bfloat16 pays on this machine, else ``float32`` (module docstring).

  Args:
    cpuinfo: path of the ``/proc/cpuinfo`` text (its first ``flags`` line is read).
    gpus: ``[(major, minor)]`` compute capabilities of the visible GPUs; None asks TensorFlow.
    environ: the environment (None: ``os.environ``).
  """
  gpus = gpu_capabilities() if gpus is None else [tuple(g) for g in gpus]
  if gpus:
    return BFLOAT16 if gpus[0] >= (8, 0) else "float32"
  environ = os.environ if environ is None else environ
  if precision_lib.has_amx(cpuinfo) and onednn_may_use_amx(environ):
    return BFLOAT16
  return "float32"


def resolve(precision, **detect):
  """The Keras dtype policy name to run for ``precision`` (one of
  ``config.INFERENCE_PRECISIONS``): ``auto`` as :func:`auto_precision` (``detect``: its
  arguments) and float32 if that cannot run here; any other name as it is, after checking it
  runs (``model.errors.UserError`` in one line if not)."""
  if precision == AUTO:
    chosen = auto_precision(**detect)
    return chosen if precision_lib.probe(chosen) is None else "float32"
  precision_lib.ensure_supported(precision)
  return precision
