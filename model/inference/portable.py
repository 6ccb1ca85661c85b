"""The inference pipeline as one graph that ONNX and LiteRT converters accept.

:func:`inpaint_function` has the SavedModel's ``serving_default`` contract for one image
(uint8 ``image [1, H, W, 3]`` RGB and ``mask [1, H, W, 1]`` with > 127 = hole -> uint8
``inpainted [1, H, W, 3]``, any H and W) and ``Inpainter.fill``'s steps with
``seam_blend=False``: pad to a multiple of 8 (reflect, index gathers), the release's
``x / 127.5 - 1`` in the network's channel order, the full generator, ``(x + 1) · 127.5``
saturated, cropped back, and the known pixels copied from the input.

What differs from the SavedModel (docs/EXPORT.md): the whole generator runs on the
whole image (no hole-local path, whose crops depend on the hole's values), contextual
attention is the dense path over all background patches (no memory-bounded tiles: those
loop over a value-dependent number of tiles), dilated convolutions are single dilated
``Conv2D`` ops (``gen_conv.direct_dilation``), and there is no seam blending (its solver is a
``tf.while_loop`` that stops on a residual). Hole pixels agree with ``test.py --noseam_blend``
to float rounding; known pixels are equal.
"""
import tensorflow as tf

from layers import gen_conv
from model.inference import inpainter as inpainter_lib

IMAGE_SPEC = tf.TensorSpec([1, None, None, 3], tf.uint8, name="image")
MASK_SPEC = tf.TensorSpec([1, None, None, 1], tf.uint8, name="mask")
OUTPUT_NAME = "inpainted"


def network(generator, x_in, mask):
  """The generator's refined output ``x2`` from its stage methods (ARCHITECTURE.md §2), with
  dense attention (no ``attention_tile``) over every background patch of the whole image."""
  xnow = generator.stage2_input(x_in, mask, generator.coarse(x_in, mask))
  attended, _ = generator.attention_branch(generator.attention_encoder(xnow),
                                           generator.attention_mask(mask))
  return generator.merge(generator.hallucination(xnow), attended)


def fill(generator, model_config, image, mask):
  """The portable pipeline on one image: uint8 ``[1, H, W, 3]``, ``[1, H, W, 1]`` -> uint8
  ``[1, H, W, 3]`` (TensorFlow ops; see the module docstring)."""
  bgr = model_config.channel_order == "bgr"

  def network_order(x):  # a gather: tf2onnx 1.17 mis-shapes ReverseV2 on some sizes
    return tf.gather(x, [2, 1, 0], axis=-1) if bgr else x

  # Pixels are carried as float32 (exact for uint8): LiteRT's built-in comparison, slice and
  # select kernels take no uint8 tensors. Every tensor keeps its batch axis: tf2onnx's
  # transpose optimizer fails on a slice that drops one, leaving a transpose around each conv.
  pixels = tf.cast(image, tf.float32)
  hole = tf.cast(mask, tf.float32) > 127.0                           # [1, H, W, 1]
  h, w = tf.shape(image)[1], tf.shape(image)[2]
  use_reflect = tf.minimum(h, w) > 1  # as inpainter.pad_to_grid: edge when a side is 1 pixel
  rows = inpainter_lib.grid_pad_indices(h, use_reflect)
  cols = inpainter_lib.grid_pad_indices(w, use_reflect)

  def pad(x):
    return tf.gather(tf.gather(x, rows, axis=1), cols, axis=2)

  net_mask = tf.cast(pad(hole), tf.float32)
  # A true division, as the release: tf2onnx runs no arithmetic rewrite (Inpainter's grappler
  # does, hence its variable divisor), and the files give the same bytes on all 256 values.
  x_in = (network_order(pad(pixels)) / 127.5 - 1.0) * (1.0 - net_mask)
  with gen_conv.direct_dilation():
    x2 = network(generator, x_in, net_mask)
  out = network_order(((x2 + 1.0) * 127.5)[:, :h, :w])
  out = tf.floor(tf.clip_by_value(out, 0.0, 255.0))  # the release's saturate_cast to uint8
  return tf.cast(tf.where(hole, out, pixels), tf.uint8)


def inpaint_function(generator, model_config):
  """A ``tf.function`` ``(image, mask) -> {"inpainted": ...}`` over :data:`IMAGE_SPEC` and
  :data:`MASK_SPEC` (dynamic H and W): the graph that ``export.py --format onnx|tflite``
  converts."""

  def serve(image, mask):
    return {OUTPUT_NAME: tf.identity(fill(generator, model_config, image, mask),
                                     name=OUTPUT_NAME)}

  return tf.function(serve, input_signature=[IMAGE_SPEC, MASK_SPEC], autograph=False)
