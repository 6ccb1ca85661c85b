"""Hostile image files for the tests of the file-format boundary, built in memory.

Each is small and made from scratch with Pillow plus byte patches, so the tests need no data.
"""
import io
import struct
import zlib

import numpy as np
from PIL import Image


def _noise(h, w, seed=0, channels=3):
  shape = (h, w, channels) if channels > 1 else (h, w)
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def jpeg_segments(data):
  """[(marker, start, end)] of a JPEG, a scan's entropy-coded data included in its segment."""
  pos, out = 2, []
  while pos < len(data):
    marker = data[pos + 1]
    if marker == 0xD9:
      out.append((marker, pos, pos + 2))
      break
    end = pos + 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
    if marker == 0xDA:  # entropy data ends at a marker that is not stuffing or a restart
      while not (data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8))):
        end += 1
    out.append((marker, pos, end))
    pos = end
  return out


def progressive_jpeg(h=48, w=64, seed=0):
  buf = io.BytesIO()
  Image.fromarray(_noise(h, w, seed)).save(buf, "JPEG", progressive=True, quality=90)
  return buf.getvalue()


def many_scans_jpeg(scans, h=48, w=64):
  """A progressive JPEG whose smallest scan is repeated until it has ``scans`` scans (a CPU
  bomb: decoding time grows with the scans, the file stays small)."""
  data = progressive_jpeg(h, w)
  segments = jpeg_segments(data)
  sos = [(s, e) for m, s, e in segments if m == 0xDA]
  start, end = min(sos, key=lambda se: se[1] - se[0])
  return data[:sos[-1][1]] + data[start:end] * (scans - len(sos)) + b"\xff\xd9"


def jpeg_header_only(width, height):
  """A small baseline JPEG whose SOF0 is patched to declare width x height: a header that
  costs a width x height decode (the data then ends early)."""
  buf = io.BytesIO()
  Image.fromarray(_noise(16, 16)).save(buf, "JPEG", quality=90)
  data = bytearray(buf.getvalue())
  sof = next(s for m, s, _ in jpeg_segments(bytes(data)) if m == 0xC0)
  data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
  return bytes(data)


def gif_frame_beyond_screen(screen=8, frame=300):
  """A GIF whose logical screen says ``screen`` x ``screen`` but whose one frame is
  ``frame`` x ``frame``: a header check that trusts the screen size lets a large decode through."""
  buf = io.BytesIO()
  Image.fromarray(np.zeros((frame, frame), np.uint8)).convert("P").save(buf, "GIF")
  data = bytearray(buf.getvalue())
  data[6:10] = struct.pack("<HH", screen, screen)
  return bytes(data)


def _tiff_entries(data):
  order = "<" if data[:2] == b"II" else ">"
  ifd = struct.unpack(order + "I", data[4:8])[0]
  count = struct.unpack(order + "H", data[ifd:ifd + 2])[0]
  return order, [ifd + 2 + 12 * i for i in range(count)]


def tiff_float_strip_offsets():
  """An uncompressed TIFF whose StripOffsets tag is typed FLOAT (a damaged file)."""
  buf = io.BytesIO()
  Image.fromarray(_noise(16, 16)).save(buf, "TIFF")
  data = bytearray(buf.getvalue())
  order, entries = _tiff_entries(data)
  for entry in entries:
    if struct.unpack(order + "H", data[entry:entry + 2])[0] == 273:
      data[entry + 2:entry + 4] = struct.pack(order + "H", 11)
  return bytes(data)


def g4_tiff(damaged, size=64):
  """A bilevel CCITT G4 TIFF (decoded by libtiff); ``damaged`` overwrites bytes of its strip."""
  bits = _noise(size, size, seed=1, channels=1) > 127
  buf = io.BytesIO()
  Image.fromarray(bits.astype(np.uint8) * 255).convert("1").save(buf, "TIFF",
                                                                compression="group4")
  data = bytearray(buf.getvalue())
  if damaged:
    order, entries = _tiff_entries(data)
    fields = {struct.unpack(order + "H", data[e:e + 2])[0]: struct.unpack(order + "I",
                                                                         data[e + 8:e + 12])[0]
              for e in entries}
    offset, length = fields[273], fields[279]
    rng = np.random.default_rng(2)
    for k in range(offset + 10, offset + length, 7):
      data[k] = int(rng.integers(0, 256))
  return bytes(data)


def with_exif_orientation(pixels, fmt, tag=None, **kwargs):
  """``pixels`` encoded as ``fmt`` with EXIF Orientation ``tag`` (None: no EXIF block)."""
  exif = Image.Exif()
  if tag is not None:
    exif[0x0112] = tag
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, fmt, exif=exif.tobytes(), **kwargs)
  return buf.getvalue()


def png_with_header(width, height):
  """A small PNG whose IHDR declares ``width x height``; its pixel data is a few bytes, so it is a
  decompression bomb (or a damaged file) to whatever decodes it instead of reading the header."""
  def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
  ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
          + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
