"""Image file headers read without decoding: format, size and EXIF orientation.

Used by ``model.fileio.images`` to reject zero-size or oversized images before decoding and to
show photos the way viewers do. Supports PNG (IHDR, eXIf), JPEG (SOFn, APP1 Exif),
WebP (VP8/VP8L/VP8X, EXIF chunk), BMP, GIF and TIFF (IFD0 tags).
"""
import struct

import numpy as np

# Orientation -> (transpose, flip rows, flip columns), applied in that order.
ORIENTATIONS = {1: (False, False, False), 2: (False, False, True), 3: (False, True, True),
                4: (False, True, False), 5: (True, False, False), 6: (True, False, True),
                7: (True, True, True), 8: (True, True, False)}
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def tiff_tags(tiff):
  """Single-valued SHORT/LONG tags of IFD0 of a TIFF structure as {tag: value} ({} if malformed)."""
  if tiff[:6] == b"Exif\0\0":  # some writers keep the APP1 prefix in PNG/WebP chunks
    tiff = tiff[6:]
  if len(tiff) < 8 or tiff[:4] not in (b"II*\0", b"MM\0*"):
    return {}
  order = "<" if tiff[:1] == b"I" else ">"
  offset = struct.unpack_from(order + "I", tiff, 4)[0]
  if offset + 2 > len(tiff):
    return {}
  tags = {}
  for i in range(struct.unpack_from(order + "H", tiff, offset)[0]):
    entry = offset + 2 + 12 * i
    if entry + 12 > len(tiff):
      break
    tag, kind, count = struct.unpack_from(order + "HHI", tiff, entry)
    if count == 1 and kind in (3, 4):
      tags[tag] = struct.unpack_from(order + ("H" if kind == 3 else "I"), tiff, entry + 8)[0]
  return tags


def _png_header(data):
  size = exif = None
  pos = 8
  while pos + 8 <= len(data):
    length, kind = struct.unpack_from(">I4s", data, pos)
    if kind == b"IHDR" and length >= 8 and pos + 16 <= len(data):
      size = struct.unpack_from(">II", data, pos + 8)
    elif kind == b"eXIf":
      exif = data[pos + 8:pos + 8 + length]
    elif kind == b"IEND":
      break
    pos += 12 + length
  return size, exif


def _jpeg_header(data):
  size = exif = None
  pos = 2
  while pos + 4 <= len(data) and data[pos] == 0xFF:
    marker = data[pos + 1]
    if marker == 0xFF:  # fill byte
      pos += 1
      continue
    if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
      pos += 2
      continue
    if marker in (0xD9, 0xDA):  # end of image / start of scan: the header is over
      break
    length = struct.unpack_from(">H", data, pos + 2)[0]
    if length < 2:
      break
    segment = data[pos + 4:pos + 2 + length]
    if marker in _JPEG_SOF and len(segment) >= 5 and size is None:
      height, width = struct.unpack_from(">HH", segment, 1)
      size = (width, height)
    elif marker == 0xE1 and exif is None and segment.startswith(b"Exif\0\0"):
      exif = segment[6:]
    pos += 2 + length
  return size, exif


def _webp_header(data):
  size = exif = None
  pos = 12
  while pos + 8 <= len(data):
    kind, length = struct.unpack_from("<4sI", data, pos)
    body = pos + 8
    if kind == b"VP8X" and length >= 10 and body + 10 <= len(data):
      size = (int.from_bytes(data[body + 4:body + 7], "little") + 1,
              int.from_bytes(data[body + 7:body + 10], "little") + 1)
    elif (kind == b"VP8 " and size is None and body + 10 <= len(data)
          and data[body + 3:body + 6] == b"\x9d\x01\x2a"):
      width, height = struct.unpack_from("<HH", data, body + 6)
      size = (width & 0x3FFF, height & 0x3FFF)
    elif kind == b"VP8L" and size is None and body + 5 <= len(data) and data[body] == 0x2F:
      bits = struct.unpack_from("<I", data, body + 1)[0]
      size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    elif kind == b"EXIF":
      exif = data[body:body + length]
    pos = body + length + (length & 1)
  return size, exif


def probe(data):
  """(format, (width, height) or None, EXIF orientation) read from the header bytes only."""
  size, exif, fmt = None, None, "other"
  try:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
      fmt, (size, exif) = "png", _png_header(data)
    elif data.startswith(b"\xff\xd8"):
      fmt, (size, exif) = "jpeg", _jpeg_header(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
      fmt, (size, exif) = "webp", _webp_header(data)
    elif data.startswith(b"BM"):
      fmt = "bmp"
      if len(data) >= 26:
        if struct.unpack_from("<I", data, 14)[0] == 12:  # BITMAPCOREHEADER: 16-bit sizes
          size = struct.unpack_from("<HH", data, 18)
        else:  # negative height = rows stored top-down
          size = tuple(abs(v) for v in struct.unpack_from("<ii", data, 18))
    elif data[:6] in (b"GIF87a", b"GIF89a"):
      fmt = "gif"
      size = struct.unpack_from("<HH", data, 6) if len(data) >= 10 else None
    elif data[:4] in (b"II*\0", b"MM\0*"):
      fmt, exif = "tiff", data
      tags = tiff_tags(data)
      size = (tags[256], tags[257]) if 256 in tags and 257 in tags else None
    orientation = tiff_tags(exif).get(0x0112, 1) if exif else 1
  except struct.error:  # a header cut short: leave it to the decoder to complain
    size, orientation = None, 1
  return fmt, size, orientation if orientation in ORIENTATIONS else 1


def is_animated_webp(data):
  """True for a WebP whose VP8X header sets the animation flag (several frames)."""
  return (data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8X" and len(data) > 20
          and bool(data[20] & 0x02))


def orient(array, orientation):
  """Turns stored rows/columns into display orientation (as `ImageOps.exif_transpose`)."""
  transpose, flip_rows, flip_cols = ORIENTATIONS[orientation]
  if transpose:
    array = array.swapaxes(0, 1)
  if flip_rows:
    array = array[::-1]
  if flip_cols:
    array = array[:, ::-1]
  return np.ascontiguousarray(array)
