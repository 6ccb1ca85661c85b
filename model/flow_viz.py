"""Attention offsets -> Middlebury colour-wheel picture, in TF ops (ARCHITECTURE.md §3.8).

The release coloured the argmax offsets of contextual attention with NumPy in a
``py_func``; here the same arithmetic runs as graph ops (float64, like NumPy), so
it works in ``tf.function`` and SavedModels with dynamic batch / height / width.
One difference: the release normalised by a running maximum radius over the
batch; we normalise each sample by its own maximum (identical for batch 1).
"""
import numpy as np
import tensorflow as tf

# Segment lengths of the Middlebury wheel: RY, YG, GC, CB, BM, MR (55 colours).
_SEGMENTS = (15, 6, 4, 11, 13, 6)


def _color_wheel():
  """``[55, 3]`` float64 RGB wheel in 0..255; ramps are floor(255·i/n) (ARCHITECTURE.md §3.8)."""
  rows = []
  # Each segment: one channel held at 255, one ramping up or down, one at 0.
  plan = ((0, 1, True), (1, 0, False), (1, 2, True), (2, 1, False), (2, 0, True), (0, 2, False))
  for n, (full, ramp, up) in zip(_SEGMENTS, plan):
    steps = np.floor(255.0 * np.arange(n) / n)
    block = np.zeros((n, 3))
    block[:, full] = 255.0
    block[:, ramp] = steps if up else 255.0 - steps
    rows.append(block)
  return np.concatenate(rows, axis=0)


_WHEEL = _color_wheel()
# Grappler rewrites ``x / const`` as ``x * (1 / const)``, which is not the IEEE
# quotient NumPy computes; so constant divisions are done here in NumPy (tables)
# and the division by pi uses a data-dependent divisor.
_WHEEL_01 = _WHEEL / 255.0
_LEVELS = np.arange(256).astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def flow_to_image(offsets, upsample=2):
  """Colours attention offsets like the v1 release (ARCHITECTURE.md §3.8).

  Args:
    offsets: int ``[B, h, w, 2]`` = (dy, dx) per position (u = dy, v = dx).
    upsample: nearest (pixel-duplication) factor applied at the end; the v1
      layer returns the picture upsampled ×2 (= rate).
  Returns:
    float32 ``[B, h·upsample, w·upsample, 3]`` in [-1, 1] (value/127.5 − 1),
    channel 0 = red. White means "attends to itself"; each sample is
    normalised by its own maximum radius.
  """
  flow = tf.cast(tf.convert_to_tensor(offsets), tf.float64)
  u = flow[..., 0]
  v = flow[..., 1]
  # Unknown flow (|u| or |v| > 1e7) is set to 0 before normalising.
  unknown = (tf.abs(u) > 1e7) | (tf.abs(v) > 1e7)
  u = tf.where(unknown, tf.zeros_like(u), u)
  v = tf.where(unknown, tf.zeros_like(v), v)
  maxrad = tf.reduce_max(tf.sqrt(u * u + v * v), axis=[1, 2], keepdims=True)
  maxrad = tf.maximum(maxrad, -1.0)  # the release starts its running max at -1
  denom = maxrad + np.finfo(np.float64).eps
  u = u / denom
  v = v / denom

  # compute_color: hue from the angle, saturation from the radius.
  ncols = _WHEEL.shape[0]
  rad = tf.sqrt(u * u + v * v)
  pi = tf.where(tf.math.is_nan(maxrad), tf.constant(np.nan, tf.float64), np.pi)
  a = tf.math.atan2(-v, -u) / pi
  fk = (a + 1.0) / 2.0 * (ncols - 1) + 1.0
  k0 = tf.cast(tf.floor(fk), tf.int32)
  k1 = k0 + 1
  k1 = tf.where(tf.equal(k1, ncols + 1), tf.ones_like(k1), k1)
  frac = fk - tf.cast(k0, tf.float64)
  inside = rad <= 1.0
  channels = []
  for ch in range(3):
    table = tf.constant(_WHEEL_01[:, ch], tf.float64)
    col0 = tf.gather(table, k0 - 1)
    col1 = tf.gather(table, k1 - 1)
    col = (1.0 - frac) * col0 + frac * col1
    col = tf.where(inside, 1.0 - rad * (1.0 - col), col * 0.75)
    channels.append(tf.floor(255.0 * col))
  value = tf.cast(tf.stack(channels, axis=-1), tf.int32)            # 0..255
  picture = tf.gather(tf.constant(_LEVELS), value)                   # value/127.5 - 1
  if upsample != 1:
    picture = tf.repeat(tf.repeat(picture, upsample, axis=1), upsample, axis=2)
  return picture


def flow_to_uint8(picture):
  """Flow picture in [-1, 1] -> uint8 RGB, ``round((x + 1)·127.5)`` (ARCHITECTURE.md §3.8)."""
  picture = tf.convert_to_tensor(picture, tf.float32)
  return tf.cast(tf.clip_by_value(tf.round((picture + 1.0) * 127.5), 0.0, 255.0), tf.uint8)
