"""In-graph serving functions for the SavedModel export (TF Serving, ``tf.saved_model.load``).

Two signatures, both on uint8 RGB pixels with white (> 127) = hole:

* ``serving_default(image uint8 [B,H,W,3], mask uint8 [B,H,W,1]) -> {"inpainted": uint8 [B,H,W,3]}``
* ``inpaint_bytes(image_bytes string [B], mask_bytes string [B]) -> {"png_bytes": string [B]}``
  (PNG/JPEG/BMP/GIF/WebP in, PNG out; items may have different sizes).

Both run what ``test.py`` runs (:class:`model.inference.inpainter.Inpainter`), inside the graph, one
sample at a time (``tf.map_fn``): reflect-pad to a multiple of 8 (index gathers, so pads
larger than a tiny image work as ``np.pad`` does), convert to the network's channel order,
run the official float pipeline through ``local_inference.refine`` (hole-local where that
saves work, attention tiled to the memory budget), crop back and copy the known pixels from
the input. Batch 1 per sample keeps the results bit-identical to ``test.py``: a batched call
changes the last float bits, which moves some truncated 8-bit values by one level.

Inside a graph grappler rewrites ``x / 127.5`` into ``x * (1 / 127.5)``, which is one ulp
off for 111 of the 256 pixel values and so moves some truncated outputs by one level. The
divisor is therefore a ``tf.Variable`` (saved with the model), which constant folding
cannot see through.
"""

import keras
import tensorflow as tf

from model.inference import inpainter as inpaint
from model.inference import local_plan as local_inference

GRID = inpaint.GRID
IMAGE_SPEC = tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")
MASK_SPEC = tf.TensorSpec([None, None, None, 1], tf.uint8, name="mask")
IMAGE_BYTES_SPEC = tf.TensorSpec([None], tf.string, name="image_bytes")
MASK_BYTES_SPEC = tf.TensorSpec([None], tf.string, name="mask_bytes")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


def grid_pad_indices(size, use_reflect, grid=GRID):
  """Source indices that pad an axis of ``size`` (int32 scalar) up to a multiple of ``grid``.

  Matches ``np.pad(..., (0, pad), mode="reflect")`` (periodic reflection, so pads beyond
  the size work) when ``use_reflect``, else ``mode="edge"``. Returns int32 ``[padded]``.
  """
  padded = size + tf.math.floormod(-size, grid)
  i = tf.range(padded)
  period = tf.maximum(2 * (size - 1), 1)
  j = tf.math.floormod(i, period)
  reflect = tf.where(j >= size, period - j, j)
  edge = tf.minimum(i, tf.maximum(size - 1, 0))
  return tf.where(use_reflect, reflect, edge)


def pad_to_grid(image, hole, grid=GRID):
  """Pads ``image`` [H,W,C] and ``hole`` [H,W] like ``inpaint.pad_to_grid`` (reflect; edge if
  a side is 1 pixel)."""
  shape = tf.shape(hole)
  use_reflect = tf.reduce_min(shape) > 1
  rows = grid_pad_indices(shape[0], use_reflect, grid)
  cols = grid_pad_indices(shape[1], use_reflect, grid)

  def pad(x):
    return tf.gather(tf.gather(x, rows, axis=0), cols, axis=1)

  return pad(image), pad(hole)


def decode_pixels(data, channels):
  """Decodes one PNG/JPEG/BMP/GIF/WebP string to uint8 ``[H, W, C]`` (``channels`` 0 = as stored).

  Pixels equal ``image_io.read_image``'s (OpenCV): JPEGs use the accurate integer IDCT
  (TensorFlow's default, the fast one, is up to 4 levels off) and 16-bit PNGs become
  round(v / 257) (TensorFlow's uint8 decoding keeps the high byte). EXIF orientation is
  not applied.
  """
  def png():
    wide = tf.cast(tf.io.decode_png(data, channels=channels, dtype=tf.uint16), tf.int32)
    return tf.cast((wide + 128) // 257, tf.uint8)  # 8-bit PNGs come back as v * 257: exact

  def jpeg():
    return tf.io.decode_jpeg(data, channels=channels, dct_method="INTEGER_ACCURATE")

  def other():
    return tf.io.decode_image(data, channels=channels, expand_animations=False)

  magic = tf.strings.substr(data, 0, 8)
  return tf.cond(tf.equal(magic, _PNG_MAGIC), png,
                 lambda: tf.cond(tf.equal(tf.strings.substr(magic, 0, 3), _JPEG_MAGIC),
                                 jpeg, other))


def decode_mask(data):
  """Decodes mask bytes to bool [H, W] as ``image_io.read_mask`` does: brightest colour
  channel > 127, colour composited over black first when the file has an alpha channel."""
  pixels = tf.cast(decode_pixels(data, 0), tf.int32)
  channels = tf.shape(pixels)[2]
  colour = tf.reduce_max(pixels[:, :, :tf.where(channels >= 3, 3, 1)], axis=2)
  alpha = pixels[:, :, channels - 1]
  has_alpha = tf.equal(tf.math.floormod(channels, 2), 0)  # grey+alpha or RGBA
  value = tf.where(has_alpha, (colour * alpha + 127) // 255, colour)
  return value > 127


class ServingModel:
  """The generator wrapped into the two serving signatures.

  Args:
    generator: a built :class:`InpaintGenerator` with weights.
    model_config: its :class:`ModelConfig` (gives the channel order).
    max_memory_gb: working-memory bound of contextual attention per image; the query
      tile is computed from it and the image size in the graph.
  """

  def __init__(self, generator, model_config, max_memory_gb=1.0):
    self.budget_bytes = local_inference.budget_bytes_of(max_memory_gb)
    self.generator = generator
    self.bgr = model_config.channel_order == "bgr"
    # A variable, not a constant: see the module docstring.
    self.pixel_scale = tf.Variable(127.5, dtype=tf.float32, trainable=False, name="pixel_scale")

  def _network_order(self, x):
    return tf.reverse(x, axis=[-1]) if self.bgr else x

  def network_input(self, pixels):
    """uint8 pixels -> float32 ``pixels / 127.5 - 1`` with the release's rounding."""
    return tf.cast(pixels, tf.float32) / self.pixel_scale - 1.0

  def inpaint_one(self, image, hole):
    """uint8 RGB ``image`` [H, W, 3] and bool ``hole`` [H, W] -> uint8 [H, W, 3]."""
    tf.debugging.assert_equal(tf.shape(hole), tf.shape(image)[:2],
                              message="mask size must equal image size")

    def fill():
      h, w = tf.shape(hole)[0], tf.shape(hole)[1]
      padded, hole_p = pad_to_grid(image, hole)
      mask = tf.cast(hole_p, tf.float32)[None, :, :, None]
      x = self.network_input(self._network_order(padded))[None]
      x_in = x * (1.0 - mask)
      x2 = local_inference.refine(self.generator, x_in, mask, self.budget_bytes)
      complete = x2 * mask + x_in * (1.0 - mask)
      out = self._network_order(((complete + 1.0) * 127.5)[0, :h, :w])
      # saturate_cast of the release: clip, then truncate toward zero.
      out = tf.cast(tf.clip_by_value(out, 0.0, 255.0), tf.uint8)
      return tf.where(hole[:, :, None], out, image)

    return tf.cond(tf.reduce_any(hole), fill, lambda: tf.identity(image))

  def serve(self, image, mask):
    """``serving_default``: batched uint8 pixels, one mask per sample."""
    tf.debugging.assert_equal(tf.shape(mask)[:3], tf.shape(image)[:3],
                              message="mask must have the image's batch, height and width")
    holes = mask[..., 0] > 127

    def each():
      # parallel_iterations=1: one image at a time, so the memory bound holds per request.
      return tf.map_fn(lambda item: self.inpaint_one(*item), (image, holes),
                       fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
                       parallel_iterations=1)

    # map_fn cannot stack an empty list of [?, ?, 3] items: an empty batch is returned as is.
    out = tf.cond(tf.shape(image)[0] > 0, each, lambda: tf.identity(image))
    return {"inpainted": out}

  def serve_bytes(self, image_bytes, mask_bytes):
    """``inpaint_bytes``: encoded images and masks (sizes may differ per item) -> PNG bytes."""
    tf.debugging.assert_equal(tf.shape(mask_bytes), tf.shape(image_bytes),
                              message="need one mask per image")

    def one(item):
      data, mask_data = item
      image = decode_pixels(data, 3)
      return tf.io.encode_png(self.inpaint_one(image, decode_mask(mask_data)))

    out = tf.map_fn(one, (image_bytes, mask_bytes),
                    fn_output_signature=tf.TensorSpec([], tf.string), parallel_iterations=1)
    return {"png_bytes": out}

  def archive(self):
    """A ``keras.export.ExportArchive`` with both signatures (``serving_default`` first)."""
    archive = keras.export.ExportArchive()
    archive.track(self.generator)
    archive.add_endpoint("serving_default", self.serve, input_signature=[IMAGE_SPEC, MASK_SPEC])
    archive.add_endpoint("inpaint_bytes", self.serve_bytes,
                         input_signature=[IMAGE_BYTES_SPEC, MASK_BYTES_SPEC])
    return archive

