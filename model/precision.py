"""Numeric precision of the networks: Keras dtype policies by name, and whether this machine runs them.

A precision is the name of a Keras dtype policy: ``float32`` (the paper's), ``mixed_bfloat16`` or
``mixed_float16``. Variables stay float32 under every policy, so checkpoints are the same files;
only the computation changes (docs/PRECISION.md). Code that builds networks passes
:func:`policy` as the layers' ``dtype=`` (no global Keras policy is set).

:func:`ensure_supported` runs a tiny convolution with its gradient in the policy's compute
dtype once per process and turns a failure into one ``UserError`` line: oneDNN builds that
believe the CPU has bfloat16 support but may not use it (``ONEDNN_MAX_CPU_ISA`` below
``AVX512_CORE``) cannot create a bfloat16 convolution. :func:`has_amx` tells whether the CPU
has AMX tiles (``amx_bf16``), the hardware on which bfloat16 pays on a CPU. Importing this
module imports neither TensorFlow nor Keras (``flags.py`` and the training ``Config`` use the names).
"""
import functools

from model.errors import UserError

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
DEFAULT = "float32"
_COMPUTE = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}
CPUINFO = "/proc/cpuinfo"


def check(precision):
  """Returns ``precision`` if it is one of ``PRECISIONS``; ValueError otherwise."""
  if precision not in PRECISIONS:
    raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
  return precision


def compute_dtype(precision):
  """``"float32"``, ``"bfloat16"`` or ``"float16"``: the dtype the layers compute in."""
  return _COMPUTE[check(precision)]


def policy(precision):
  """The ``keras.DTypePolicy`` of ``precision`` (pass it as a layer's ``dtype=``)."""
  import keras  # pylint: disable=import-outside-toplevel  (the names above need no Keras)

  return keras.DTypePolicy(check(precision))


def is_mixed(precision):
  """True unless the precision computes in float32."""
  return compute_dtype(precision) != "float32"


def cpu_flags(path=CPUINFO):
  """The set of CPU feature flags of the first ``flags`` line of ``path`` (empty if unreadable)."""
  try:
    with open(path, encoding="utf-8", errors="replace") as f:
      for line in f:
        if line.startswith("flags"):
          return set(line.partition(":")[2].split())
  except OSError:
    pass
  return set()


def has_amx(path=CPUINFO):
  """True when the CPU has AMX bfloat16 tiles (flag ``amx_bf16``; Intel Xeon since Sapphire
  Rapids): where oneDNN's bfloat16 convolutions outrun float32 (bench/PRECISION_RESULTS.md)."""
  return "amx_bf16" in cpu_flags(path)


def _probe_conv(dtype):
  """A 3×3 convolution + bias + ELU and its gradients in ``dtype``, eager and traced (the graph
  optimiser fuses conv, bias and activation into other kernels than eager execution runs)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  x = tf.cast(tf.reshape(tf.range(2 * 8 * 8 * 4, dtype=tf.float32) % 7 / 7.0, [2, 8, 8, 4]),
              dtype)
  kernel = tf.cast(tf.fill([3, 3, 4, 4], 0.1), dtype)
  bias = tf.cast(tf.fill([4], 0.1), dtype)

  def step(x, kernel, bias):
    with tf.GradientTape() as tape:
      tape.watch([x, kernel])
      y = tf.nn.elu(tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "SAME"), bias))
      y = tf.nn.conv2d(y, kernel, 2, "SAME")
      loss = tf.reduce_sum(tf.cast(y, tf.float32))
    return [loss] + tape.gradient(loss, [x, kernel])

  for value in step(x, kernel, bias) + tf.function(step)(x, kernel, bias):
    value.numpy()


def probe(precision):
  """None when this TensorFlow runs convolutions in ``precision``'s compute dtype, else the
  first line of the error it raised. Run once per precision and process."""
  return _probe_cached(check(precision))


@functools.lru_cache(maxsize=None)
def _probe_cached(precision):
  if not is_mixed(precision):
    return None
  try:
    _probe_conv(compute_dtype(precision))
  except Exception as e:  # noqa: BLE001 - TF raises OpError subclasses or RuntimeError here
    text = " ".join(str(e).split())
    return (text[:200] or type(e).__name__)
  return None


def ensure_supported(precision):
  """Raises ``model.errors.UserError`` (one line) unless ``precision`` runs on this machine."""
  error = probe(precision)
  if error is None:
    return
  dtype = compute_dtype(precision)
  raise UserError(
      f"--precision {precision}: TensorFlow cannot run {dtype} convolutions on this machine "
      f"({error}); use --precision float32, or set TF_ENABLE_ONEDNN_OPTS=0 (TensorFlow's own "
      f"{dtype} kernels instead of oneDNN's)")
