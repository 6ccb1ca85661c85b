"""Decoding encoded image bytes in TensorFlow ops, for the SavedModel's ``inpaint_bytes``.

The TF counterpart of ``model/fileio/decode.py`` (Pillow/OpenCV, used by test.py): the same
pixels under the rules listed in ``model/fileio/rules.py``, EXIF orientation applied by
``model/inference/orientation.py``. :func:`checked` makes the header checks before anything is
decoded (sizes read from the header bytes; for a GIF every frame descriptor, as a frame may be
larger than the logical screen the header states).
"""
import tensorflow as tf

from model.fileio import rules
from model.inference import orientation, png_chunks

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


def gif_extent(data):
  """(width, height, frame_pixels) int64 of a GIF, walking its blocks without decoding.

  width, height: the logical screen grown to cover every frame (left + width, top +
  height of each image descriptor); frame_pixels: the sum of the frames' width x height,
  what the decoder expands. A damaged block structure ends the walk (the decoder then
  refuses the file).
  """
  raw = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int64)
  size = tf.size(raw, out_type=tf.int64)
  raw = tf.concat([raw, tf.zeros([1], tf.int64)], 0)  # reads past the end give 0

  def at(pos):
    return tf.gather(raw, tf.minimum(tf.cast(pos, tf.int64), size))

  def u16(pos):
    return at(pos) + 256 * at(pos + 1)

  flags = at(10)
  start = 13 + tf.where(flags >= 128, 3 * 2 ** (flags % 8 + 1), 0)  # global colour table

  def cond(pos, in_blocks, width, height, pixels):
    return pos < size

  def body(pos, in_blocks, width, height, pixels):
    kind = at(pos)

    def sub_block():  # one data sub-block: a length byte, then that many bytes
      length = at(pos)
      return pos + 1 + length, tf.not_equal(length, 0), width, height, pixels

    def descriptor():  # image descriptor, optional local colour table, LZW code size
      left, top, w, h, local = u16(pos + 1), u16(pos + 3), u16(pos + 5), u16(pos + 7), at(pos + 9)
      table = tf.where(local >= 128, 3 * 2 ** (local % 8 + 1), 0)
      return (pos + 11 + table, tf.constant(True), tf.maximum(width, left + w),
              tf.maximum(height, top + h), pixels + w * h)

    def extension():
      return pos + 2, tf.constant(True), width, height, pixels

    def end():  # trailer or an unknown block: stop
      return size, tf.constant(False), width, height, pixels

    return tf.case([(in_blocks, sub_block), (tf.equal(kind, 0x2C), descriptor),
                    (tf.equal(kind, 0x21), extension)], default=end, exclusive=False)

  _, _, width, height, pixels = tf.while_loop(
      cond, body, (start, tf.constant(False), u16(6), u16(8), tf.constant(0, tf.int64)))
  return width, height, pixels


def header_size(data):
  """(width, height, decoded_pixels) int64 from the header of one encoded image.

  PNG (IHDR), JPEG (``tf.io.extract_jpeg_shape``, SOF marker), GIF (:func:`gif_extent`),
  BMP (info header) and still WebP (VP8X canvas, VP8 frame header, VP8L header): the sizes
  TensorFlow's decoders produce (before EXIF orientation). decoded_pixels is width x height,
  for a GIF the pixels of all its frames. Raises ``InvalidArgumentError`` for any other
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

  def with_area(size):
    return tf.stack([size[0], size[1], size[0] * size[1]])

  def jpeg():
    shape = tf.cast(tf.io.extract_jpeg_shape(data), tf.int64)
    return with_area(tf.stack([shape[1], shape[0]]))

  def webp():
    vp8x = tf.stack([1 + _le(b, 24, 3), 1 + _le(b, 27, 3)])
    lossy = tf.stack([_le(b, 26, 2) % 2**14, _le(b, 28, 2) % 2**14])
    bits = _le(b, 21, 4)
    lossless = tf.stack([bits % 2**14 + 1, bits // 2**14 % 2**14 + 1])
    return with_area(tf.where(tf.equal(fourcc, b"VP8X"), vp8x,
                              tf.where(tf.equal(fourcc, b"VP8L"), lossless, lossy)))

  def bmp():
    core = tf.equal(_le(b, 14, 4), 12)  # BITMAPCOREHEADER: 16-bit sizes
    height = _le(b, 22, 4)
    height = tf.where(height >= 2**31, 2**32 - height, height)  # negative = top-down rows
    return with_area(tf.where(core, tf.stack([_le(b, 18, 2), _le(b, 20, 2)]),
                              tf.stack([_le(b, 18, 4), height])))

  def gif():
    width, height, frames = gif_extent(data)
    return tf.stack([width, height, tf.maximum(width * height, frames)])

  with tf.control_dependencies([check_known, check_still]):
    size = tf.case([(is_png, lambda: with_area(tf.stack([_be(b, 16, 4), _be(b, 20, 4)]))),
                    (is_jpeg, jpeg), (is_gif, gif), (is_bmp, bmp)],
                   default=webp, exclusive=False)
    return tf.identity(size)


def jpeg_scans(data):
  """SOS markers (0xFFDA) in the bytes: the scans of a JPEG, counted without decoding.

  Entropy-coded data cannot hold the pair (a 0xFF there is followed by 0x00 or a restart
  marker), so this counts the scans of every image in the file (an EXIF thumbnail or an
  MPO's second image included), at least those of the main image.
  """
  return tf.size(tf.strings.split(data, sep=b"\xff\xda"), out_type=tf.int64) - 1


def _cap_message(what, width, height, max_pixels):
  return tf.strings.format(
      what + " is {}x{} pixels: empty, or above the limit of "
      f"{max_pixels / 1e6:g} megapixels set at export", (width, height))


def checked(data, max_pixels, what):
  """``data`` (one encoded image) once its header passed :func:`header_size` and the limits.

  Anything that decodes the returned tensor runs after the check, so an image above
  ``max_pixels`` (width × height; a GIF's frames together), a JPEG with too many scans or a
  PNG with a chunk whose CRC does not match (as test.py refuses it) is refused before a single
  pixel is decoded.
  """
  size = header_size(data)
  ok = tf.logical_and(tf.logical_and(size[0] > 0, size[1] > 0), size[2] <= max_pixels)
  check = tf.debugging.Assert(ok, [_cap_message(what, size[0], size[1], max_pixels)])
  is_jpeg = tf.equal(tf.strings.substr(data, 0, 3), _JPEG_MAGIC)
  scans_ok = tf.logical_or(tf.logical_not(is_jpeg), jpeg_scans(data) <= rules.MAX_JPEG_SCANS)
  check_scans = tf.debugging.Assert(scans_ok, [what + ": " + rules.TOO_MANY_SCANS])
  check_crc = tf.debugging.Assert(png_chunks.checksums_ok(data),
                                  [what + ": " + rules.PNG_CHECKSUM])
  with tf.control_dependencies([check, check_scans, check_crc]):
    return tf.identity(data)


def decode_pixels(data, channels, max_pixels, what):
  """Decodes one :func:`checked` PNG/JPEG/BMP/GIF/WebP string to uint8 ``[H, W, C]`` as stored
  (``channels`` 0 = as stored), refusing a result above ``max_pixels`` whatever the header said.

  Pixels equal ``model.fileio.decode.read_image``'s (before orientation): JPEGs use the
  accurate integer IDCT (TensorFlow's default, the fast one, is up to 4 levels off) and
  16-bit PNGs become round(v / 257) (TensorFlow's uint8 decoding keeps the high byte).
  """
  def png():
    wide = tf.cast(tf.io.decode_png(data, channels=channels, dtype=tf.uint16), tf.int32)
    return tf.cast((wide + 128) // 257, tf.uint8)  # 8-bit PNGs come back as v * 257: exact

  def jpeg():
    return tf.io.decode_jpeg(data, channels=channels, dct_method="INTEGER_ACCURATE")

  def other():
    return tf.io.decode_image(data, channels=channels, expand_animations=False)

  magic = tf.strings.substr(data, 0, 8)
  pixels = tf.cond(tf.equal(magic, _PNG_MAGIC), png,
                   lambda: tf.cond(tf.equal(tf.strings.substr(magic, 0, 3), _JPEG_MAGIC),
                                   jpeg, other))
  shape = tf.shape(pixels, out_type=tf.int64)
  check = tf.debugging.Assert(shape[0] * shape[1] <= max_pixels,
                              [_cap_message(what, shape[1], shape[0], max_pixels)])
  with tf.control_dependencies([check]):
    return tf.identity(pixels)


def decode_upright(data, channels, max_pixels, what):
  """:func:`decode_pixels` turned to display orientation by the file's EXIF Orientation tag
  (JPEG, PNG, WebP), as ``PIL.ImageOps.exif_transpose`` turns test.py's pixels."""
  pixels = decode_pixels(checked(data, max_pixels, what), channels, max_pixels, what)
  return orientation.apply_orientation(pixels, orientation.exif_orientation(data))


def decode_mask(data, max_pixels):
  """Decodes mask bytes to bool [H, W] as ``model.fileio.decode.read_mask`` does (display
  orientation; brightest colour channel > ``rules.MASK_THRESHOLD``, colour composited over
  black first when the file has an alpha channel)."""
  pixels = tf.cast(decode_upright(data, 0, max_pixels, "mask"), tf.int32)
  channels = tf.shape(pixels)[2]
  colour = tf.reduce_max(pixels[:, :, :tf.where(channels >= 3, 3, 1)], axis=2)
  alpha = pixels[:, :, channels - 1]
  has_alpha = tf.equal(tf.math.floormod(channels, 2), 0)  # grey+alpha or RGBA
  value = tf.where(has_alpha, (colour * alpha + 127) // 255, colour)
  return value > rules.MASK_THRESHOLD
