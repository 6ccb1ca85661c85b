"""Generator convolutions of DeepFill (ARCHITECTURE.md §2.1; the gated variant is DeepFill v2's)."""
import contextlib
import threading

import keras
import tensorflow as tf

from layers import resize
from layers import shapes
from layers.paddings import PADDINGS

ACTIVATIONS = ("elu", "relu", None)
_DIRECT = threading.local()


@contextlib.contextmanager
def direct_dilation():
  """Within this block (on this thread) ``GenConv`` traces a dilated conv as one ``Conv2D``
  with ``dilations`` after an explicit zero pad, instead of ``SpaceToBatchND`` + conv +
  ``BatchToSpaceND``: what graph converters (tf2onnx, TFLite) map to their own dilated
  convolution for unknown input sizes (tf2onnx 1.17 mistranslates the space-to-batch form
  when its paddings depend on the size). Same values up to float rounding."""
  before = getattr(_DIRECT, "on", False)
  _DIRECT.on = True
  try:
    yield
  finally:
    _DIRECT.on = before


def mirror_pad(x, pad, mode):
  """Pads H and W of ``x`` [B, H, W, C] by ``pad`` on each side, REFLECT or SYMMETRIC.

  ``tf.pad`` limits a mirror pad to the axis size (minus one for REFLECT). Larger
  pads, which dilated convs need on small inputs, continue the mirroring
  periodically, as repeated ``np.pad`` rounds do. Static sizes use ``tf.pad`` in
  rounds; unknown sizes one index gather per axis (no loop in the graph, so a
  dynamic-shape trace stays small).
  """
  mode = mode.upper()
  slack = 1 if mode == "REFLECT" else 0
  shape = None
  for axis in (1, 2):
    size = x.shape[axis]
    if size is None:
      shape = tf.shape(x) if shape is None else shape
      x = tf.gather(x, mirror_indices(shape[axis], pad, slack), axis=axis)
      continue
    left = pad
    while left > 0:
      amount = min(left, max(size - slack, 1))
      paddings = [[0, 0]] * 4
      paddings[axis] = [amount, amount]
      x = tf.pad(x, paddings, mode=mode)
      size, left = size + 2 * amount, left - amount
  return x


def mirror_indices(size, pad, slack):
  """Source indices (int32 ``[size + 2 pad]``) of an axis of ``size`` mirrored by ``pad``.

  ``slack`` 0 = SYMMETRIC (edge repeated, period ``2 size``), 1 = REFLECT (edge not
  repeated, period ``2 (size - 1)``; a 1-pixel axis repeats its pixel). Within a
  period ``p`` position ``j`` reads ``min(j, p - 1 + slack - j)``.
  """
  period = 2 * (size - slack)
  if slack:
    period = tf.maximum(period, 1)
  j = tf.math.floormod(tf.range(-pad, size + pad), period)
  return tf.minimum(j, period - (1 - slack) - j)


@keras.saving.register_keras_serializable(package="deepfill")
class GenConv(keras.layers.Layer):
  """k×k conv (stride, dilation) + activation, as ``gen_conv`` of the release.

  Input ``[B, H, W, C_in]``, output ``[B, ceil(H/stride), ceil(W/stride), filters]`` in the
  compute dtype of the layer's dtype policy (``dtype=``, e.g. ``"mixed_bfloat16"``; Keras casts
  floating inputs to it). Variables are float32 under every policy; the inner conv shares
  the layer's policy.
  ``padding='zero'`` is TF SAME (what released weights use); ``'reflect'`` and
  ``'symmetric'`` pad ``dilation*(k-1)/2`` by mirroring, then convolve VALID
  (the paper's mirror padding). ``gated=True`` (DeepFill v2) convolves to
  ``2*filters`` channels and returns ``act(first half) * sigmoid(second half)``;
  layers without activation are never gated. The inner conv is named ``conv``.
  """

  def __init__(self, filters, kernel_size=3, strides=1, dilation_rate=1,
               activation="elu", padding="zero", gated=False, **kwargs):
    super().__init__(**kwargs)
    if padding not in PADDINGS:
      raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if activation not in ACTIVATIONS:
      raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if strides > 1 and dilation_rate > 1:
      raise ValueError("strides > 1 together with dilation_rate > 1 is not supported")
    self.filters = int(filters)
    self.kernel_size = int(kernel_size)
    self.strides = int(strides)
    self.dilation_rate = int(dilation_rate)
    self.activation = activation
    self.padding = padding
    self.gated = bool(gated) and activation is not None
    out = 2 * self.filters if self.gated else self.filters
    self.conv = keras.layers.Conv2D(
        out, self.kernel_size, strides=self.strides, dilation_rate=self.dilation_rate,
        padding="same" if padding == "zero" else "valid", use_bias=True,
        kernel_initializer="glorot_uniform", bias_initializer="zeros", name="conv",
        dtype=self.dtype_policy)

  def build(self, input_shape):
    self.conv.build((input_shape[0], None, None, input_shape[-1]))

  def call(self, x):
    if self.padding != "zero":
      pad = self.dilation_rate * (self.kernel_size - 1) // 2
      x = mirror_pad(x, pad, self.padding)
    x = self.convolve(x)
    if self.activation is None:
      return x
    act = tf.nn.elu if self.activation == "elu" else tf.nn.relu
    if self.gated:
      feat, gate = tf.split(x, 2, axis=-1)
      return act(feat) * tf.sigmoid(gate)
    return act(x)

  def convolve(self, x):
    """``self.conv(x)`` (convolution + bias) with the same TensorFlow ops, built directly.

    A dilated conv is what ``tf.nn.convolution`` makes of it: ``SpaceToBatchND``, a VALID
    conv, ``BatchToSpaceND``. Its general padding arithmetic adds about 80 ops per layer to a
    trace with unknown sizes; the few needed here keep tracing and graph optimisation short.
    """
    # float32 variables, read in the compute dtype (a no-op under the float32 policy).
    kernel = tf.cast(self.conv.kernel, self.compute_dtype)
    bias = tf.cast(self.conv.bias, self.compute_dtype)
    same = self.padding == "zero"
    d = self.dilation_rate
    if d == 1:
      x = tf.nn.conv2d(x, kernel, self.strides, "SAME" if same else "VALID")
    elif getattr(_DIRECT, "on", False):
      if same:  # SAME of a stride-1 conv: d(k-1)/2 on each side (ONNX Runtime has no SAME here)
        half = d * (self.kernel_size - 1) // 2
        x = tf.pad(x, [[0, 0], [half, half], [half, half], [0, 0]])
      x = tf.nn.conv2d(x, kernel, 1, "VALID", dilations=d)
    else:
      # SAME pads d(k-1), a multiple of d, split as TF does; then up to a multiple of d.
      total = d * (self.kernel_size - 1) if same else 0
      size = x.shape[1:3]
      extra = tf.math.floormod(-tf.shape(x)[1:3], d) if None in size else [-n % d for n in size]
      crops = tf.stack([tf.zeros_like(extra), extra], axis=1)
      paddings = crops + [[total // 2, total - total // 2]] * 2
      x = tf.space_to_batch_nd(x, [d, d], paddings)
      x = tf.nn.conv2d(x, kernel, 1, "VALID")
      x = tf.batch_to_space(x, [d, d], crops)
    if x.dtype == tf.float32:
      return tf.nn.bias_add(x, bias)
    # TensorFlow's CPU gradient of BiasAdd (BiasAddGrad) sums over B·H·W in the input's dtype,
    # which in bfloat16 stalls once the sum outgrows its terms; the gradient of a broadcast add
    # is a Sum, which accumulates in float32 (same forward values).
    return x + bias

  def compute_output_shape(self, input_shape):
    return shapes.same_conv_output_shape(input_shape, self.strides, self.filters)

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                  dilation_rate=self.dilation_rate, activation=self.activation,
                  padding=self.padding, gated=self.gated)
    return config


@keras.saving.register_keras_serializable(package="deepfill")
class GenDeconv(keras.layers.Layer):
  """Nearest ×2 upsample (align_corners, ARCHITECTURE.md §1.4) then a 3×3 ``GenConv``.

  Input ``[B, H, W, C]`` -> output ``[B, 2H, 2W, filters]``. The conv is named
  ``<name>_conv`` as in the release (``conv13_upsample/conv13_upsample_conv``).
  """

  def __init__(self, filters, padding="zero", gated=False, **kwargs):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self.padding = padding
    self.gated = bool(gated)
    self.gen_conv = GenConv(self.filters, 3, 1, padding=padding, gated=gated,
                            name=f"{self.name}_conv", dtype=self.dtype_policy)

  def build(self, input_shape):
    b, h, w, c = input_shape
    self.gen_conv.build((b, None if h is None else 2 * h, None if w is None else 2 * w, c))

  def call(self, x):
    return self.gen_conv(resize.upsample2x(x))

  def compute_output_shape(self, input_shape):
    b, h, w, _ = input_shape
    return (b, None if h is None else 2 * h, None if w is None else 2 * w, self.filters)

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, padding=self.padding, gated=self.gated)
    return config
