"""EXIF orientation of encoded image bytes, in TensorFlow ops (so a SavedModel can apply it).

``test.py`` shows photos the way viewers do (``PIL.ImageOps.exif_transpose`` in
``model/fileio/decode.py``); TensorFlow's decoders ignore the Orientation tag. These two
functions let a graph that receives file bytes do the same (``bytes_decode.decode_upright``,
used by the ``inpaint_bytes`` signature): ``apply_orientation(decoded, exif_orientation(data))``.

The rule, the same in both readers (``model/fileio/decode.py``'s ``block_orientation`` reads
the block Pillow finds with it, whatever Pillow's own EXIF parser does):

* the EXIF block, as Pillow finds it: a JPEG's APP1 "Exif" segments before the first scan,
  joined in order (the first one whole, the others without their "Exif\0\0" prefix); in a PNG
  the last eXIf chunk before the first IDAT, or if there is none the last one after it (up to
  IEND, or the first fcTL of an animated PNG); in a WebP the first EXIF chunk, when the VP8X
  header's EXIF flag is set. A PNG whose chunks' CRCs do not match is refused by both readers
  (``png_chunks.checksums_ok``), so its eXIf is never read.
* in it, the first IFD: the first entry of tag 0x0112 that is loaded (a known TIFF type, a
  count above 0; an entry whose values lie outside the block ends the IFD, as it ends
  Pillow's reading), as Pillow 13 reads it (Pillow 12 took the last);
* its first value, when the entry's type is an integer type (SHORT, LONG, SBYTE, SSHORT,
  SLONG, IFD, LONG8) and the value is 1..8; anything else gives 1 (no change).

Orientation given only in XMP is not read here.
"""
import tensorflow as tf

from model.inference import png_chunks

_ORIENTATION_TAG = 0x0112
_EXIF = b"Exif\0\0"
# bytes per value of each TIFF type Pillow loads (0: a type it skips), and the integer ones
_TYPE_SIZE = [0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4, 0, 0, 8]
_INTEGER_TYPES = (3, 4, 6, 8, 9, 13, 16)
_BIG_ENDIAN = (b"MM\0*", b"MM*\0", b"MM\0+")  # the classic TIFF headers Pillow accepts
_LITTLE_ENDIAN = (b"II*\0", b"II\0*")


def _size(data):
  return tf.cast(tf.strings.length(data), tf.int64)


def _bytes(data):
  return tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int64)


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def _jpeg_exif(data):
  """The APP1 "Exif" segments before the first SOS, joined as Pillow joins them."""
  raw = _bytes(data)
  size = tf.size(raw, out_type=tf.int64)
  raw = tf.concat([raw, tf.zeros([4], tf.int64)], 0)
  padded = tf.strings.join([data, tf.constant(b"\0" * 10)])
  marks = tf.where(tf.equal(raw[:-4], 0xFF))[:, 0]  # Pillow skips other bytes between markers
  marks = tf.concat([marks, [size]], 0)
  code = tf.constant([1 if 0xC0 <= m <= 0xFE else 0 for m in range(256)], tf.int64)
  no_length = tf.constant([1 if m == 0xC8 or 0xD0 <= m <= 0xD9 or 0xF0 <= m <= 0xFD else 0
                           for m in range(256)], tf.int64)

  def cond(pos, done, starts, ends):
    return tf.logical_and(tf.logical_not(done), pos < size)

  def body(pos, done, starts, ends):
    pos = tf.gather(marks, tf.searchsorted(marks, tf.reshape(pos, [1]))[0])  # next 0xFF
    marker = raw[tf.minimum(pos + 1, size)]
    length = raw[pos + 2] * 256 + raw[pos + 3]
    known = tf.gather(code, marker) > 0
    segment = tf.logical_and(known, tf.equal(tf.gather(no_length, marker), 0))
    payload = tf.maximum(length - 2, 0)
    is_exif = tf.logical_and(tf.logical_and(segment, tf.equal(marker, 0xE1)),
                             tf.equal(tf.strings.substr(padded, pos + 4, 6), _EXIF))
    is_exif = tf.logical_and(is_exif, pos + 4 + payload <= size)
    index = starts.size()
    starts = starts.write(index, tf.where(is_exif, pos + 4, -1))
    ends = ends.write(index, pos + 4 + payload)
    step = tf.where(segment, 4 + payload,
                    tf.where(tf.logical_or(known, tf.equal(marker, 0)), tf.constant(2, tf.int64), 1))  # 0xFFFF: 1
    stop = tf.logical_or(tf.equal(marker, 0xDA),  # start of scan
                         tf.logical_and(tf.logical_not(known),
                                        tf.logical_and(marker != 0, marker != 0xFF)))
    return pos + step, tf.logical_or(stop, pos >= size), starts, ends

  arrays = (tf.TensorArray(tf.int64, 0, dynamic_size=True),
            tf.TensorArray(tf.int64, 0, dynamic_size=True))
  _, _, starts, ends = tf.while_loop(cond, body, (tf.constant(2, tf.int64), False) + arrays)
  starts, ends = starts.stack(), ends.stack()
  exif = starts >= 0
  starts, ends = starts[exif], ends[exif]
  starts = starts + tf.where(tf.range(tf.size(starts)) > 0, tf.constant(6, tf.int64), 0)  # later ones: no prefix
  return tf.strings.reduce_join(tf.strings.substr(data, starts, ends - starts))


def _png_exif(data):
  """The eXIf chunk Pillow keeps: the last before the first IDAT, else the last after it."""
  starts, lengths, kinds = png_chunks.chunk_table(data)
  index = tf.range(tf.size(starts, out_type=tf.int64), dtype=tf.int64)
  big = tf.constant(2 ** 62, tf.int64)
  idat = tf.reduce_min(tf.where(tf.equal(kinds, b"IDAT"), index, big))
  before = index < idat
  actl = tf.logical_and(before, tf.equal(kinds, b"acTL"))
  animated = tf.logical_and(tf.equal(tf.reduce_sum(tf.cast(actl, tf.int64)), 1),
                            tf.reduce_any(tf.logical_and(actl, _frames_above_one(data, starts,
                                                                                 lengths))))
  fctl = tf.where(tf.logical_and(animated, tf.logical_and(tf.logical_not(before),
                                                          tf.equal(kinds, b"fcTL"))),
                  index, big)
  end = tf.reduce_min(fctl)
  exif = tf.equal(kinds, b"eXIf")
  last_before = tf.reduce_max(tf.where(tf.logical_and(exif, before), index, -1))
  last_after = tf.reduce_max(tf.where(tf.logical_and(exif, tf.logical_and(
      tf.logical_not(before), index < end)), index, -1))
  chosen = tf.where(last_before >= 0, last_before, last_after)
  found = chosen >= 0
  chosen = tf.maximum(chosen, 0)
  return tf.cond(found, lambda: tf.strings.substr(data, tf.gather(starts, chosen) + 8,
                                                  tf.gather(lengths, chosen)),
                 lambda: tf.constant(b""))


def _frames_above_one(data, starts, lengths):
  """Per chunk: its first 4 data bytes, read as acTL's frame count, are 2..2^31."""
  head = tf.strings.substr(tf.strings.join([data, tf.constant(b"\0" * 4)]), starts + 8,
                           tf.fill(tf.shape(starts), tf.constant(4, tf.int64)))
  value = tf.reshape(_bytes(head), [-1, 4])
  value = value[:, 0] * 2 ** 24 + value[:, 1] * 2 ** 16 + value[:, 2] * 2 ** 8 + value[:, 3]
  return tf.logical_and(tf.logical_and(value >= 2, value <= 2 ** 31), lengths >= 8)


def _webp_exif(data):
  """The first EXIF chunk of an extended WebP whose VP8X header has the EXIF flag."""
  size = _size(data)
  head = _bytes(tf.strings.substr(tf.strings.join([data, tf.constant(b"\0" * 24)]), 0, 24))
  riff = head[4] + head[5] * 256 + head[6] * 2 ** 16 + head[7] * 2 ** 24
  end = tf.minimum(size, riff + 8)
  flagged = tf.logical_and(tf.equal(tf.strings.substr(data, 12, 4), b"VP8X"),
                           tf.not_equal(tf.bitwise.bitwise_and(head[20], 8), 0))
  padded = tf.strings.join([data, tf.constant(b"\0" * 8)])

  def cond(pos, start, length):
    return tf.logical_and(start < 0, pos + 8 <= end)

  def body(pos, start, length):
    n = _bytes(tf.strings.substr(padded, pos + 4, 4))
    n = n[0] + n[1] * 256 + n[2] * 2 ** 16 + n[3] * 2 ** 24
    found = tf.logical_and(tf.equal(tf.strings.substr(padded, pos, 4), b"EXIF"),
                           pos + 8 + n <= end)
    return (pos + 8 + n + n % 2, tf.where(found, pos + 8, start), tf.where(found, n, length))

  _, start, length = tf.while_loop(
      cond, body, (tf.constant(12, tf.int64), tf.where(flagged, tf.constant(-1, tf.int64), 0), tf.constant(0, tf.int64)))
  return tf.strings.substr(data, tf.maximum(start, 0), tf.where(start > 0, length, 0))


def exif_block(data):
  """The EXIF bytes of one JPEG, PNG or WebP file as Pillow finds them (b"" when none)."""
  data = tf.convert_to_tensor(data, tf.string)
  magic = tf.strings.substr(tf.strings.join([data, tf.constant(b"\0" * 12)]), 0, 12)
  is_jpeg = tf.equal(tf.strings.substr(magic, 0, 3), b"\xff\xd8\xff")
  is_png = tf.equal(tf.strings.substr(magic, 0, 8), png_chunks.MAGIC)
  is_webp = tf.logical_and(tf.equal(tf.strings.substr(magic, 0, 4), b"RIFF"),
                           tf.equal(tf.strings.substr(magic, 8, 4), b"WEBP"))
  return tf.case([(is_jpeg, lambda: _jpeg_exif(data)), (is_png, lambda: _png_exif(data)),
                  (is_webp, lambda: _webp_exif(data))], default=lambda: tf.constant(b""))


def exif_orientation(data):
  """int32 EXIF orientation (1..8; 1 = none) of one encoded JPEG, PNG or WebP file, by the
  rule above.

  Args:
    data: scalar string tensor, the file's bytes.
  """
  return tiff_orientation(exif_block(data))


def tiff_orientation(block):
  """int32 orientation (1..8) read from an EXIF block (a TIFF structure, "Exif\0\0" prefixes
  allowed) by the rule above."""
  block = tf.convert_to_tensor(block, tf.string)

  def prefixed(count):
    return tf.equal(tf.strings.substr(block, 6 * count, 6), _EXIF)

  skip, _ = tf.while_loop(lambda n, _: prefixed(n), lambda n, m: (n + 1, m),
                          (tf.constant(0, tf.int64), tf.constant(0)))
  tiff = tf.strings.substr(block, 6 * skip, _size(block))
  size = _size(tiff)
  raw = tf.concat([_bytes(tiff), tf.zeros([8], tf.int64)], 0)
  head = tf.strings.substr(tiff, 0, 4)
  big = tf.reduce_any(tf.equal(head, _BIG_ENDIAN))
  little = tf.reduce_any(tf.equal(head, _LITTLE_ENDIAN))

  def uint(pos, width):
    """Unsigned ``width``-byte fields at int64 positions (any shape; outside: zeros)."""
    pos = tf.where(tf.logical_and(pos >= 0, pos + width <= size), pos, size)
    parts = [tf.gather(raw, pos + i) for i in range(width)]
    weights = [256 ** (width - 1 - i) for i in range(width)]
    big_value = sum(p * w for p, w in zip(parts, weights))
    little_value = sum(p * w for p, w in zip(parts, reversed(weights)))
    return tf.where(big, big_value, little_value)

  ifd = uint(tf.constant(4, tf.int64), 4)
  valid = tf.logical_and(tf.logical_or(big, little), size >= 8)
  valid = tf.logical_and(valid, ifd + 2 <= size)
  count = tf.where(valid, uint(ifd, 2), 0)
  count = tf.clip_by_value(count, 0, tf.maximum((size - ifd - 2) // 12, 0))  # whole entries
  entry = ifd + 2 + 12 * tf.range(count, dtype=tf.int64)
  tag, kind, values = uint(entry, 2), uint(entry + 2, 2), uint(entry + 4, 4)
  width = tf.gather(tf.constant(_TYPE_SIZE, tf.int64), tf.where(kind < len(_TYPE_SIZE), kind, 0))
  nbytes = values * width
  where = tf.where(nbytes <= 4, entry + 8, uint(entry + 8, 4))
  beyond = tf.logical_and(nbytes > 4, where + nbytes > size)  # ends Pillow's reading
  index = tf.range(count, dtype=tf.int64)
  read = index < tf.reduce_min(tf.where(beyond, index, count))
  loaded = tf.logical_and(read, nbytes > 0)
  hit = tf.logical_and(loaded, tf.equal(tag, _ORIENTATION_TAG))
  # the first hit; count when there is none (the zero appended below; also for no entries)
  last = tf.minimum(tf.reduce_min(tf.where(hit, index, count)), count)
  found = last < count
  kind, width, where = (tf.gather(tf.concat([x, tf.zeros([1], tf.int64)], 0), last)
                        for x in (kind, width, where))
  value = tf.case([(tf.equal(width, w), lambda w=w: uint(where, w)) for w in (1, 2, 4)],
                  default=lambda: _eight_byte(uint, where, big))
  integer = tf.reduce_any(tf.equal(kind, _INTEGER_TYPES))
  ok = tf.logical_and(tf.logical_and(found, integer), tf.logical_and(value >= 1, value <= 8))
  return tf.cast(tf.where(tf.logical_and(valid, ok), value, 1), tf.int32)


def _eight_byte(uint, where, big):
  """An 8-byte unsigned field read as 0..8 (9 when it is larger)."""
  high = uint(tf.where(big, where, where + 4), 4)
  low = uint(tf.where(big, where + 4, where), 4)
  return tf.where(tf.equal(high, 0), tf.minimum(low, 9), 9)


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
