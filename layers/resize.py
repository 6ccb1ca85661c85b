"""Nearest-neighbour resizing with TF1 ``align_corners=True`` semantics (ARCHITECTURE.md §1.4).

The official code resizes masks and features with
``resize_nearest_neighbor(align_corners=True)``: output index ``i`` reads source
index ``round(i * (in - 1) / (out - 1))``. ``tf.image.resize(method='nearest')``
uses half-pixel centres and picks different pixels, so we call the raw op.
"""
import tensorflow as tf


def resize_nearest_align_corners(x, size):
  """Resizes ``x`` [B, H, W, C] to ``size`` (2 ints or an int32 [2] tensor)."""
  size = tf.cast(tf.convert_to_tensor(size), tf.int32)
  return tf.raw_ops.ResizeNearestNeighbor(
      images=x, size=size, align_corners=True, half_pixel_centers=False)


def upsample2x(x):
  """Nearest ×2 upsample; with align_corners this is exact pixel duplication."""
  shape = tf.shape(x)
  return resize_nearest_align_corners(x, shape[1:3] * 2)
