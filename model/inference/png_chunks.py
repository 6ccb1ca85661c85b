"""PNG chunks of encoded bytes in TensorFlow ops: where they are, and whether their CRCs hold.

``test.py`` refuses a PNG any of whose chunks before IEND has a wrong CRC-32 (Pillow checks the
chunks before the first IDAT when it opens the file, and ``model/fileio/decode.py`` verifies
the rest); libpng, which TensorFlow's decoder uses, only warns and skips an ancillary chunk
with a wrong CRC. :func:`checksums_ok` gives the SavedModel's ``inpaint_bytes`` the same rule,
and :func:`chunk_table` is the one chunk walk that ``orientation.py`` reads ``eXIf`` with.

The CRC-32 (ISO 3309, as zlib computes it) of every chunk is computed at once, in work
proportional to the bytes checked: a binary tree of partial remainders over the chunks'
bytes (each node the remainder of its 2^k bytes), prefix remainders read from the tree at the
chunk boundaries, and a chunk's remainder as the difference of two prefixes, all by the
linearity of the CRC over GF(2). IDAT chunks, the bulk of a file, are left to libpng, which
refuses a wrong CRC on a critical chunk itself.
"""
import numpy as np
import tensorflow as tf

MAGIC = b"\x89PNG\r\n\x1a\n"
_POLY = 0xEDB88320
_LEVELS = 40  # covers any tf.string size (2^40 bytes)


def _crc_tables():
  """The byte table of CRC-32 and, for k < _LEVELS, tables that shift a remainder by 2^k zero
  bytes: shifted(r) = XOR_j SHIFT[k, j, (r >> 8j) & 255]."""
  table = np.zeros(256, np.int64)
  for b in range(256):
    r = b
    for _ in range(8):
      r = (r >> 1) ^ (_POLY if r & 1 else 0)
    table[b] = r
  # columns[i]: the image of bit i under "shift by one zero byte", then squared per level
  columns = np.array([table[(1 << i) & 0xFF] ^ ((1 << i) >> 8) for i in range(32)], np.int64)
  values = np.arange(256, dtype=np.int64)
  shift = np.zeros((_LEVELS, 4, 256), np.int64)
  for k in range(_LEVELS):
    for j in range(4):
      out = np.zeros(256, np.int64)
      for bit in range(8):
        out ^= np.where((values >> bit) & 1, columns[8 * j + bit], 0)
      shift[k, j] = out
    columns = np.array([_apply(columns, c) for c in columns], np.int64)  # M_{k+1} = M_k M_k
  return table, shift


def _apply(columns, value):
  out = 0
  for i in range(32):
    if (int(value) >> i) & 1:
      out ^= int(columns[i])
  return out


_TABLE, _SHIFT = _crc_tables()
_BASE = 3  # the tree's lowest stored level: nodes of 8 bytes, from 8 byte tables at once


def _byte_tables():
  """_WORD[n][b]: the remainder of byte b followed by n zero bytes, n < 2^_BASE."""
  words = [_TABLE.copy()]
  for _ in range(2 ** _BASE - 1):
    r = words[-1]
    words.append(_TABLE[r & 0xFF] ^ (r >> 8))
  return np.stack(words)


_WORD = _byte_tables()


def _bits(values, low, mask):
  """(values >> low) & mask for int64 tensors (mask -1: all)."""
  shifted = tf.bitwise.right_shift(values, tf.constant(low, tf.int64))
  return shifted if mask == -1 else tf.bitwise.bitwise_and(shifted, tf.constant(mask, tf.int64))


def _shift(values, k):
  """``values`` (int64 remainders) shifted by 2^k zero bytes."""
  shift = tf.constant(_SHIFT[k])
  out = tf.zeros_like(values)
  for j in range(4):
    out = tf.bitwise.bitwise_xor(out, tf.gather(shift[j], _bits(values, 8 * j, 0xFF)))
  return out


def _shift_by(values, distance):
  """``values`` shifted by ``distance`` (int64, per element) zero bytes."""
  for k in range(_LEVELS):
    bit = tf.not_equal(_bits(distance, k, 1), 0)
    values = tf.where(bit, _shift(values, k), values)
  return values


def _node(stream, k, index):
  """Remainder of stream[index 2^k : (index + 1) 2^k] for k < _BASE (read from the bytes)."""
  width = 2 ** k
  out = tf.zeros_like(index)
  for m in range(width):
    byte = tf.gather(stream, index * width + m)
    out = tf.bitwise.bitwise_xor(out, tf.gather(tf.constant(_WORD[width - 1 - m]), byte))
  return out


def crc32(data, starts, ends):
  """int64 CRC-32 of ``data[starts[i]:ends[i]]`` for each i (int64 vectors; 0 <= start <= end
  <= size), equal to ``zlib.crc32`` of those bytes."""
  raw = tf.io.decode_raw(data, tf.uint8)
  lengths = ends - starts
  stream = tf.cast(tf.gather(raw, tf.ragged.range(starts, ends).flat_values), tf.int64)
  last = tf.cumsum(lengths)
  first = last - lengths
  # levels[k][j] (k >= _BASE): remainder of stream[j 2^k : (j+1) 2^k], whole nodes only
  width = 2 ** _BASE
  words = tf.size(stream) // width
  base = tf.zeros([words], tf.int64)
  for m in range(width):
    base = tf.bitwise.bitwise_xor(base, tf.gather(tf.constant(_WORD[width - 1 - m]),
                                                  stream[m:words * width:width]))
  levels = {_BASE: base}
  for k in range(_BASE, _LEVELS - 1):
    level = levels[k]
    pairs = tf.size(level) // 2
    levels[k + 1] = tf.bitwise.bitwise_xor(_shift(level[0:2 * pairs:2], k),
                                           level[1:2 * pairs:2])

  def prefix(points):
    """Remainders of stream[:p] for each p: the nodes of p's binary digits, high to low."""
    acc, covered = tf.zeros_like(points), tf.zeros_like(points)
    for k in reversed(range(_LEVELS)):
      bit = tf.not_equal(_bits(points, k, 1), 0)
      index = tf.where(bit, _bits(covered, k, -1), 0)
      if k >= _BASE:
        padded = tf.concat([levels[k], tf.zeros([1], tf.int64)], 0)  # index for unset bits
        node = tf.gather(padded, tf.where(bit, index, tf.size(levels[k], tf.int64)))
      else:
        padded = tf.concat([stream, tf.zeros([width], tf.int64)], 0)
        node = _node(padded, k, index)
      acc = tf.where(bit, tf.bitwise.bitwise_xor(_shift(acc, k), node), acc)
      covered = tf.where(bit, covered + (1 << k), covered)
    return acc

  remainder = tf.bitwise.bitwise_xor(prefix(last), _shift_by(prefix(first), lengths))
  ones = tf.fill(tf.shape(lengths), tf.constant(0xFFFFFFFF, tf.int64))  # the initial register
  return tf.bitwise.bitwise_xor(tf.bitwise.bitwise_xor(remainder, _shift_by(ones, lengths)),
                                tf.constant(0xFFFFFFFF, tf.int64))


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def chunk_table(data):
  """The chunks of a PNG from its signature to its IEND (included), as Pillow walks them.

  Returns (starts, lengths, kinds): int64 offsets of each chunk's length field, int64 data
  lengths, and the 4-byte type strings; empty for data that is not a PNG. The walk ends at
  IEND, or at a chunk that does not fit in the data (the decoder refuses such a file).
  """
  data = tf.convert_to_tensor(data, tf.string)
  size = tf.cast(tf.strings.length(data), tf.int64)
  padded = tf.strings.join([data, tf.constant(b"\0" * 8)])
  is_png = tf.equal(tf.strings.substr(data, 0, 8), MAGIC)

  def cond(pos, done, starts, lengths, kinds):
    return tf.logical_and(tf.logical_not(done), pos + 12 <= size)

  def body(pos, done, starts, lengths, kinds):
    head = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, pos, 4), tf.uint8), tf.int64)
    length = head[0] * 2 ** 24 + head[1] * 2 ** 16 + head[2] * 2 ** 8 + head[3]
    kind = tf.strings.substr(padded, pos + 4, 4)
    fits = pos + 12 + length <= size
    index = starts.size()
    starts, lengths = starts.write(index, pos), lengths.write(index, length)
    kinds = kinds.write(index, kind)
    done = tf.logical_or(tf.equal(kind, b"IEND"), tf.logical_not(fits))
    return pos + 12 + length, done, starts, lengths, kinds

  arrays = (tf.TensorArray(tf.int64, 0, dynamic_size=True),
            tf.TensorArray(tf.int64, 0, dynamic_size=True),
            tf.TensorArray(tf.string, 0, dynamic_size=True))
  _, _, starts, lengths, kinds = tf.while_loop(
      cond, body, (tf.constant(8, tf.int64), tf.logical_not(is_png)) + arrays)
  starts, lengths, kinds = starts.stack(), lengths.stack(), kinds.stack()
  fits = starts + 12 + lengths <= size
  return starts[fits], lengths[fits], kinds[fits]


def checksums_ok(data):
  """True unless ``data`` is a PNG one of whose chunks before IEND, other than IDAT, has a CRC
  that does not match its type and data (what ``test.py`` refuses; libpng checks IDAT)."""
  data = tf.convert_to_tensor(data, tf.string)
  starts, lengths, kinds = chunk_table(data)
  checked = tf.logical_and(tf.not_equal(kinds, b"IEND"), tf.not_equal(kinds, b"IDAT"))
  starts, lengths = starts[checked], lengths[checked]
  crc = crc32(data, starts + 4, starts + 8 + lengths)
  stored = tf.io.decode_raw(tf.strings.substr(data, starts + 8 + lengths,
                                                   tf.fill(tf.shape(starts),
                                                           tf.constant(4, tf.int64))), tf.uint8)
  stored = tf.reshape(tf.cast(stored, tf.int64), [-1, 4])
  stored = (stored[:, 0] * 2 ** 24 + stored[:, 1] * 2 ** 16 + stored[:, 2] * 2 ** 8
            + stored[:, 3])
  return tf.reduce_all(tf.equal(crc, stored))
