"""In-graph serving functions for the SavedModel export (TF Serving, ``tf.saved_model.load``).

Two signatures, both on uint8 RGB pixels with white (> 127) = hole:

* ``serving_default(image uint8 [B,H,W,3], mask uint8 [B,H,W,1]) -> {"inpainted": uint8 [B,H,W,3]}``
* ``inpaint_bytes(image_bytes string [B], mask_bytes string [B]) -> {"png_bytes": string [B]}``
  (PNG/JPEG/BMP/GIF/still WebP in, PNG out; items may have different sizes).

Each sample runs :meth:`model.inference.inpainter.Inpainter.fill` — the pipeline ``test.py``
runs — one at a time (``tf.map_fn``). Batch 1 per sample keeps the results bit-identical to
``test.py``: a batched call changes the last float bits, which moves some truncated 8-bit
values by one level. Bad input ends in an ``InvalidArgumentError`` naming the problem: a mask
that is not ``[B, H, W, 1]`` or not the image's size; in ``inpaint_bytes`` an image or mask
above the pixel cap (read from the file header, before anything is decoded), an unsupported
format, or an animated WebP.
"""

import keras
import tensorflow as tf

from model.inference import inpainter as inpainter_lib

IMAGE_SPEC = tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")
MASK_SPEC = tf.TensorSpec([None, None, None, 1], tf.uint8, name="mask")
IMAGE_BYTES_SPEC = tf.TensorSpec([None], tf.string, name="image_bytes")
MASK_BYTES_SPEC = tf.TensorSpec([None], tf.string, name="mask_bytes")
DEFAULT_MAX_PIXELS = 100_000_000  # as test.py --max_megapixels 100
# export.py --signatures: "serving" is what the Beam pipeline loads (nothing else is built).
SIGNATURE_SETS = {"all": ("serving_default", "inpaint_bytes"), "serving": ("serving_default",)}
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_HEADER_BYTES = 32


def _header(data):
  """The first 32 bytes of ``data``, zero-padded: (string, int32 [32])."""
  head = tf.strings.substr(tf.strings.join([data, tf.constant(b"\0" * _HEADER_BYTES)]), 0,
                           _HEADER_BYTES)
  return head, tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int32)


def _le(b, offset, count):
  """Little-endian unsigned value of ``count`` bytes of ``b`` at ``offset`` (int64)."""
  return sum(tf.cast(b[offset + i], tf.int64) * 256**i for i in range(count))


def _be(b, offset, count):
  return sum(tf.cast(b[offset + i], tf.int64) * 256**(count - 1 - i) for i in range(count))


def header_size(data):
  """(width, height) int64 read from the header of one encoded image, without decoding.

  PNG (IHDR), JPEG (``tf.io.extract_jpeg_shape``, SOF marker), GIF (logical screen),
  BMP (info header) and still WebP (VP8X canvas, VP8 frame header, VP8L header); these are
  the sizes TensorFlow's decoders produce. Raises ``InvalidArgumentError`` for any other
  content and for an animated WebP (TensorFlow's animated WebP decoder is not memory-safe).
  """
  head, b = _header(data)

  def part(pos, length):
    return tf.strings.substr(head, pos, length)

  fourcc = part(12, 4)
  is_png = tf.equal(part(0, 8), _PNG_MAGIC)
  is_jpeg = tf.equal(part(0, 3), _JPEG_MAGIC)
  is_gif = tf.logical_or(tf.equal(part(0, 6), b"GIF87a"), tf.equal(part(0, 6), b"GIF89a"))
  is_bmp = tf.equal(part(0, 2), b"BM")
  is_webp = tf.logical_and(tf.equal(part(0, 4), b"RIFF"), tf.equal(part(8, 4), b"WEBP"))
  known = tf.reduce_any(tf.stack([is_png, is_jpeg, is_gif, is_bmp, is_webp]))
  check_known = tf.debugging.Assert(known, [
      "unsupported image data: send PNG, JPEG, BMP, GIF or WebP"])
  animated = tf.logical_and(is_webp, tf.logical_and(tf.equal(fourcc, b"VP8X"),
                                                    tf.not_equal(b[20] // 2 % 2, 0)))
  check_still = tf.debugging.Assert(tf.logical_not(animated), [
      "animated WebP is not supported: send a single frame (e.g. as PNG)"])

  def jpeg():
    shape = tf.cast(tf.io.extract_jpeg_shape(data), tf.int64)
    return tf.stack([shape[1], shape[0]])

  def webp():
    vp8x = tf.stack([1 + _le(b, 24, 3), 1 + _le(b, 27, 3)])
    lossy = tf.stack([_le(b, 26, 2) % 2**14, _le(b, 28, 2) % 2**14])
    bits = _le(b, 21, 4)
    lossless = tf.stack([bits % 2**14 + 1, bits // 2**14 % 2**14 + 1])
    return tf.where(tf.equal(fourcc, b"VP8X"), vp8x,
                    tf.where(tf.equal(fourcc, b"VP8L"), lossless, lossy))

  def bmp():
    core = tf.equal(_le(b, 14, 4), 12)  # BITMAPCOREHEADER: 16-bit sizes
    height = _le(b, 22, 4)
    height = tf.where(height >= 2**31, 2**32 - height, height)  # negative = top-down rows
    return tf.where(core, tf.stack([_le(b, 18, 2), _le(b, 20, 2)]),
                    tf.stack([_le(b, 18, 4), height]))

  with tf.control_dependencies([check_known, check_still]):
    size = tf.case([(is_png, lambda: tf.stack([_be(b, 16, 4), _be(b, 20, 4)])),
                    (is_jpeg, jpeg),
                    (is_gif, lambda: tf.stack([_le(b, 6, 2), _le(b, 8, 2)])),
                    (is_bmp, bmp)], default=webp, exclusive=False)
    return tf.identity(size)


def checked(data, max_pixels, what):
  """``data`` (one encoded image) once its header passed :func:`header_size` and the cap.

  Anything that decodes the returned tensor runs after the check, so an image above
  ``max_pixels`` (width × height) is refused before a single pixel is decoded.
  """
  size = header_size(data)
  pixels = size[0] * size[1]
  ok = tf.logical_and(pixels > 0, pixels <= max_pixels)
  message = tf.strings.format(
      what + " is {}x{} pixels: empty, or above the limit of "
      f"{max_pixels / 1e6:g} megapixels set at export", (size[0], size[1]))
  check = tf.debugging.Assert(ok, [message])
  with tf.control_dependencies([check]):
    return tf.identity(data)


def decode_pixels(data, channels):
  """Decodes one PNG/JPEG/BMP/GIF/WebP string to uint8 ``[H, W, C]`` (``channels`` 0 = as stored).

  Pixels equal ``model.fileio.images.read_image``'s (OpenCV): JPEGs use the accurate integer
  IDCT (TensorFlow's default, the fast one, is up to 4 levels off) and 16-bit PNGs become
  round(v / 257) (TensorFlow's uint8 decoding keeps the high byte). EXIF orientation is
  not applied. Call it on :func:`checked` data.
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
  """Decodes mask bytes to bool [H, W] as ``model.fileio.images.read_mask`` does: brightest
  colour channel > 127, colour composited over black first when the file has an alpha channel."""
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
    max_pixels: ``inpaint_bytes`` refuses an image or mask whose header declares more
      pixels (width × height) than this, before decoding it.
    seam_blend: as :class:`Inpainter` (baked into the export).
  """

  def __init__(self, generator, model_config, max_memory_gb=1.0,
               max_pixels=DEFAULT_MAX_PIXELS, seam_blend=True):
    if not max_pixels >= 1:
      raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")
    self.inpainter = inpainter_lib.Inpainter(generator, model_config, max_memory_gb, seam_blend)
    self.max_pixels = int(max_pixels)

  def _one(self, image, hole):
    """``Inpainter.fill`` on one sample (hole-local path chosen in the graph)."""
    return tf.cond(tf.reduce_any(hole), lambda: self.inpainter.fill(image, hole),
                   lambda: tf.identity(image))

  def serve(self, image, mask):
    """``serving_default``: batched uint8 pixels, one mask per sample."""
    tf.debugging.assert_equal(tf.shape(mask)[3], 1, message=(
        "mask must be uint8 [B, H, W, 1] (one channel, > 127 = hole)"))
    tf.debugging.assert_equal(tf.shape(mask)[:3], tf.shape(image)[:3],
                              message="mask must have the image's batch, height and width")
    holes = mask[..., 0] > 127

    def each():
      # parallel_iterations=1: one image at a time, so the memory bound holds per request.
      return tf.map_fn(lambda item: self._one(*item), (image, holes),
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
      image = decode_pixels(checked(data, self.max_pixels, "image"), 3)
      hole = decode_mask(checked(mask_data, self.max_pixels, "mask"))
      return tf.io.encode_png(self._one(image, hole))

    out = tf.map_fn(one, (image_bytes, mask_bytes),
                    fn_output_signature=tf.TensorSpec([], tf.string), parallel_iterations=1)
    return {"png_bytes": out}

  def archive(self, signatures="all"):
    """A ``keras.export.ExportArchive`` with the signatures of `SIGNATURE_SETS[signatures]`
    (``serving_default`` first)."""
    if signatures not in SIGNATURE_SETS:
      raise ValueError(f"signatures must be one of {sorted(SIGNATURE_SETS)}, got {signatures!r}")
    archive = keras.export.ExportArchive()
    archive.track(self.inpainter.generator)
    archive.add_endpoint("serving_default", self.serve, input_signature=[IMAGE_SPEC, MASK_SPEC])
    if "inpaint_bytes" in SIGNATURE_SETS[signatures]:
      archive.add_endpoint("inpaint_bytes", self.serve_bytes,
                           input_signature=[IMAGE_BYTES_SPEC, MASK_BYTES_SPEC])
    return archive
