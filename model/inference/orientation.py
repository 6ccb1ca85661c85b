"""EXIF orientation of encoded image bytes, in TensorFlow ops (so a SavedModel can apply it).

``test.py`` shows photos the way viewers do (``PIL.ImageOps.exif_transpose`` in
``model/fileio/decode.py``); TensorFlow's decoders ignore the Orientation tag. These two
functions let a graph that receives file bytes do the same (``bytes_decode.decode_upright``,
used by the ``inpaint_bytes`` signature): ``apply_orientation(decoded, exif_orientation(data))``.

``exif_orientation`` finds the EXIF block of a JPEG (APP1 "Exif" segment), a PNG (eXIf chunk)
or a WebP (EXIF chunk) and reads tag 0x0112 of its first IFD; anything else, a malformed block
or a value outside 1..8 gives 1 (no change). XMP-only orientation is not read.
"""
import tensorflow as tf

_ORIENTATION_TAG = 0x0112
_PAD = 16  # zero bytes appended so that a field read near the end never runs past the data


def _reader(data):
  """Readers of unsigned big/little-endian fields of ``data`` at int32 offsets."""
  padded = data + b"\0" * _PAD
  size = tf.strings.length(data)

  def take(pos, k):
    pos = tf.clip_by_value(pos, 0, size)  # callers check bounds; this keeps substr legal
    raw = tf.io.decode_raw(tf.strings.substr(padded, pos, k), tf.uint8)
    return tf.cast(raw, tf.int32)

  def uint(pos, k, big_endian):
    """Unsigned ``k``-byte field; ``big_endian`` is a Python bool or a boolean tensor."""
    b = take(pos, k)
    little = tf.reduce_sum(b * tf.constant([256 ** i for i in range(k)], tf.int32))
    big = tf.reduce_sum(b * tf.constant([256 ** (k - 1 - i) for i in range(k)], tf.int32))
    if isinstance(big_endian, bool):
      return big if big_endian else little
    return tf.where(big_endian, big, little)

  def text(pos, k):
    return tf.strings.substr(padded, tf.clip_by_value(pos, 0, size), k)

  return size, take, uint, text


def _find_exif(data):
  """(start, end) of the TIFF structure inside ``data``, or (0, 0) when there is none."""
  size, take, uint, text = _reader(data)
  none = (tf.constant(0), tf.constant(0))

  def jpeg():
    def cond(pos, start, end):
      return tf.logical_and(tf.equal(start, 0), pos + 4 <= size)

    def body(pos, start, end):
      first, marker = take(pos, 1)[0], take(pos + 1, 1)[0]
      length = uint(pos + 2, 2, True)
      stop = tf.logical_or(tf.not_equal(first, 0xFF),
                           tf.logical_or(tf.equal(marker, 0xDA), tf.equal(marker, 0xD9)))
      no_length = tf.logical_or(tf.equal(marker, 0x01),
                                tf.logical_and(marker >= 0xD0, marker <= 0xD7))
      is_exif = tf.logical_and(tf.equal(marker, 0xE1), tf.equal(text(pos + 4, 6), b"Exif\0\0"))
      found = tf.logical_and(tf.logical_not(stop), tf.logical_and(is_exif, length >= 8))
      step = tf.where(tf.equal(marker, 0xFF), 1, tf.where(no_length, 2, 2 + length))
      step = tf.where(tf.logical_or(stop, length < 2), size, step)  # ends the loop
      return (pos + step, tf.where(found, pos + 10, start),
              tf.where(found, tf.minimum(pos + 2 + length, size), end))

    _, start, end = tf.while_loop(cond, body, (tf.constant(2), 0, 0))
    return start, end

  def chunks(first, big_endian, kind, stop_kind, header, pad_odd):
    def cond(pos, start, end):
      return tf.logical_and(tf.equal(start, 0), pos + 8 <= size)

    def body(pos, start, end):
      if big_endian:  # PNG: length, type
        length, name = uint(pos, 4, True), text(pos + 4, 4)
      else:  # RIFF: type, length
        name, length = text(pos, 4), uint(pos + 4, 4, False)
      found = tf.logical_and(tf.equal(name, kind), length >= 8)
      step = header + length + (length % 2 if pad_odd else 0)
      step = tf.where(tf.logical_or(tf.equal(name, stop_kind), length < 0), size, step)
      return (pos + step, tf.where(found, pos + 8, start),
              tf.where(found, tf.minimum(pos + 8 + length, size), end))

    _, start, end = tf.while_loop(cond, body, (tf.constant(first), 0, 0))
    return start, end

  is_jpeg = tf.equal(text(0, 2), b"\xff\xd8")
  is_png = tf.equal(text(0, 8), b"\x89PNG\r\n\x1a\n")
  is_webp = tf.logical_and(tf.equal(text(0, 4), b"RIFF"), tf.equal(text(8, 4), b"WEBP"))
  return tf.case([(is_jpeg, jpeg),
                  (is_png, lambda: chunks(8, True, b"eXIf", b"IEND", 12, False)),
                  (is_webp, lambda: chunks(12, False, b"EXIF", b"", 8, True))],
                 default=lambda: none)


def exif_orientation(data):
  """int32 EXIF orientation (1..8; 1 = none) of one encoded JPEG, PNG or WebP file.

  Args:
    data: scalar string tensor, the file's bytes.
  """
  data = tf.convert_to_tensor(data, tf.string)
  size, take, uint, text = _reader(data)
  start, end = _find_exif(data)
  start = tf.where(tf.equal(text(start, 6), b"Exif\0\0"), start + 6, start)  # a kept prefix
  order = text(start, 4)
  big = tf.equal(order, b"MM\0*")
  valid = tf.logical_and(end - start >= 8, tf.logical_or(big, tf.equal(order, b"II*\0")))
  ifd = start + uint(start + 4, 4, big)
  valid = tf.logical_and(valid, tf.logical_and(ifd > start, ifd + 2 <= end))
  count = tf.where(valid, uint(ifd, 2, big), 0)

  def cond(i, value):
    entry = ifd + 2 + 12 * i
    return tf.logical_and(tf.logical_and(i < count, tf.equal(value, 0)), entry + 12 <= end)

  def body(i, value):
    entry = ifd + 2 + 12 * i
    tag, kind = uint(entry, 2, big), uint(entry + 2, 2, big)
    found = tf.logical_and(tf.equal(tag, _ORIENTATION_TAG), tf.equal(kind, 3))  # SHORT
    return i + 1, tf.where(found, uint(entry + 8, 2, big), value)

  _, value = tf.while_loop(cond, body, (tf.constant(0), tf.constant(0)))
  return tf.where(tf.logical_and(value >= 1, value <= 8), value, 1)


def apply_orientation(image, orientation):
  """``[H, W, C]`` image turned to display orientation, as ``ImageOps.exif_transpose`` does."""
  image = tf.convert_to_tensor(image)
  transpose = lambda x: tf.transpose(x, [1, 0, 2])  # noqa: E731
  branches = [
      lambda: image,                                  # 1: as stored
      lambda: tf.reverse(image, [1]),                 # 2: mirrored left-right
      lambda: tf.reverse(image, [0, 1]),              # 3: rotated 180
      lambda: tf.reverse(image, [0]),                 # 4: mirrored top-bottom
      lambda: transpose(image),                       # 5: transposed
      lambda: tf.reverse(transpose(image), [1]),      # 6: turned 90 degrees clockwise
      lambda: tf.reverse(transpose(image), [0, 1]),   # 7: transverse
      lambda: tf.reverse(transpose(image), [0]),      # 8: turned 90 degrees anticlockwise
  ]
  index = tf.clip_by_value(tf.cast(orientation, tf.int32) - 1, 0, 7)
  return tf.switch_case(index, branches)
