"""model/inference/orientation.py: EXIF orientation of file bytes in TF ops, equal to what
test.py reads (model/fileio/decode.py, i.e. PIL.ImageOps.exif_transpose), for the formats a
SavedModel decodes (JPEG, PNG, WebP): one rule for both readers on every way a file states its
orientation (integer types, several entries, several blocks), and a PNG with a bad CRC refused by
both."""
import io
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from support import hostile_files as hostile
from model.errors import UserError
from model.fileio import decode
from model.inference import bytes_decode, orientation, png_chunks


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def _upright(data):
  """What a bytes signature would do: decode (as serving does), then turn."""
  image = tf.cond(tf.strings.substr(data, 0, 2) == b"\xff\xd8",
                  lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
                  lambda: tf.io.decode_image(data, channels=3, expand_animations=False))
  return orientation.apply_orientation(image, orientation.exif_orientation(data))


@pytest.mark.parametrize("fmt, kwargs", [("JPEG", {"quality": 95}), ("PNG", {}),
                                         ("WEBP", {"lossless": True})])
@pytest.mark.parametrize("tag", [None, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
def test_upright_pixels_equal_test_py(tmp_path, fmt, kwargs, tag):
  pixels = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)
  data = hostile.with_exif_orientation(pixels, fmt, tag, **kwargs)
  path = tmp_path / f"photo.{fmt.lower()}"
  path.write_bytes(data)
  expected, info = decode.read_image(str(path))
  assert int(orientation.exif_orientation(tf.constant(data))) == info.orientation
  np.testing.assert_array_equal(_upright(tf.constant(data)).numpy(), expected)


def _app1(payload):
  return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def test_big_endian_after_other_segments_and_malformed_blocks():
  jpeg = hostile.with_exif_orientation(np.zeros((4, 4, 3), np.uint8), "JPEG")
  exif = b"MM\0*" + struct.pack(">IH", 8, 2) + struct.pack(">HHIHH", 0x0100, 3, 1, 4, 0) \
      + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0)
  xmp = _app1(b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>")
  read = lambda data: int(orientation.exif_orientation(tf.constant(data)))  # noqa: E731
  assert read(jpeg[:2] + xmp + _app1(b"Exif\0\0" + exif) + jpeg[2:]) == 6
  assert read(jpeg[:2] + _app1(b"Exif\0\0" + exif[:20]) + jpeg[2:]) == 1  # cut short
  assert read(jpeg[:2] + _app1(b"Exif\0\0" + b"XX*\0" + exif[4:]) + jpeg[2:]) == 1  # bad order
  for junk in (b"", b"hello", b"\xff\xd8", b"\xff\xd8\xff\xe1\x00", b"\x89PNG\r\n\x1a\n",
               b"RIFF\0\0\0\0WEBP"):
    assert read(junk) == 1, junk


# --- One rule for both readers: every way a file can state its orientation -----------------
# Each file is read by test.py's reader (model/fileio/decode.py, Pillow) and by the SavedModel's
# (model/inference/bytes_decode.py, TF ops); the two must agree on the orientation and on the
# pixels, or both refuse the file.

def _ifd(entries, big=False, tail=b""):
  """A TIFF block with one IFD at offset 8: ``entries`` are (tag, type, count, 4 value bytes)."""
  e = ">" if big else "<"
  block = (b"MM\0*" if big else b"II*\0") + struct.pack(e + "IH", 8, len(entries))
  for tag, kind, count, value in entries:
    block += struct.pack(e + "HHI", tag, kind, count) + value
  return block + struct.pack(e + "I", 0) + tail


def _value(v, width, big=False):
  """``v`` as a ``width``-byte field, left-justified in the 4-byte value slot."""
  return v.to_bytes(width, "big" if big else "little").ljust(4, b"\0")


def _plain(pixels, fmt, **kwargs):
  """``pixels`` encoded with no EXIF block at all."""
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, fmt, **kwargs)
  return buf.getvalue()


def _png_chunk(kind, body, bad_crc=False):
  crc = zlib.crc32(kind + body) ^ (1 if bad_crc else 0)
  return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _png(pixels, before=(), after=()):
  """A PNG with the eXIf ``before`` (list of chunk bodies or whole chunks) its IDAT and after."""
  data = _plain(pixels, "PNG")
  at, end = data.index(b"IDAT") - 4, data.index(b"IEND") - 4
  whole = lambda c: c if c[4:8] in (b"eXIf", b"tEXt") else _png_chunk(b"eXIf", c)  # noqa: E731
  return (data[:at] + b"".join(map(whole, before)) + data[at:end] + b"".join(map(whole, after))
          + data[end:])


def _jpeg(pixels, *blocks):
  """A JPEG whose APP1 "Exif" segments hold ``blocks`` (the first with its prefix; Pillow joins
  the others to it without theirs)."""
  data = _plain(pixels, "JPEG", quality=95)
  return data[:2] + b"".join(_app1(b"Exif\0\0" + block) for block in blocks) + data[2:]


def _riff(kind, body):
  return kind + struct.pack("<I", len(body)) + body + b"\0" * (len(body) % 2)


def _webp(pixels, *blocks, flag=True):
  """An extended (VP8X) WebP with an EXIF chunk per block; ``flag``: the header's EXIF bit."""
  data = hostile.with_exif_orientation(pixels, "WEBP", tag=1, lossless=True)  # EXIF forces the VP8X layout
  chunks, pos = [], 12
  while pos < len(data):
    kind, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
    body = data[pos + 8:pos + 8 + size]
    if kind == b"VP8X":
      body = bytes([(body[0] | 8) if flag else (body[0] & ~8)]) + body[1:]
    if kind != b"EXIF":
      chunks.append(_riff(kind, body))
    pos += 8 + size + size % 2
  chunks += [_riff(b"EXIF", block) for block in blocks]
  riff = b"WEBP" + b"".join(chunks)
  return b"RIFF" + struct.pack("<I", len(riff)) + riff


SHORT, LONG, SBYTE, SSHORT, SLONG, RATIONAL, FLOAT = 3, 4, 6, 8, 9, 5, 11
_WIDTH = {SHORT: 2, LONG: 4, SBYTE: 1, SSHORT: 2, SLONG: 4}


def _entry(kind, value, big=False):
  return (0x0112, kind, 1, _value(value, _WIDTH[kind], big))


# (name, TIFF block(s), the orientation of the rule)
_BLOCKS = [
    ("short", [_ifd([_entry(SHORT, 6)])], 6),
    ("long", [_ifd([_entry(LONG, 6)])], 6),
    ("sshort", [_ifd([_entry(SSHORT, 8)])], 8),
    ("slong big-endian", [_ifd([_entry(SLONG, 5, True)], big=True)], 5),
    ("sbyte", [_ifd([_entry(SBYTE, 7)])], 7),
    ("sshort negative", [_ifd([_entry(SSHORT, 0xFFFA)])], 1),
    ("two entries: the first counts", [_ifd([_entry(SHORT, 3), _entry(LONG, 6)])], 3),
    ("two entries, the first out of range", [_ifd([_entry(SHORT, 9), _entry(SHORT, 6)])], 1),
    ("two entries, the first undefined", [_ifd([(0x0112, 7, 1, b"\3\0\0\0"), _entry(SHORT, 6)])],
     1),
    ("entry of an unknown type is skipped", [_ifd([_entry(SHORT, 6), (0x0112, 99, 1, b"\3\0\0\0")])],
     6),
    ("entry with count 0 is skipped", [_ifd([_entry(SHORT, 6), (0x0112, SHORT, 0, b"\3\0\0\0")])],
     6),
    ("count 3: the first value, stored after the IFD",
     [_ifd([(0x0112, SHORT, 3, struct.pack("<I", 26))], tail=struct.pack("<HHH", 2, 3, 4))], 2),
    ("values beyond the block end the IFD",
     [_ifd([_entry(SHORT, 6), (0x0112, SHORT, 3, struct.pack("<I", 9000))])], 6),
    ("float", [_ifd([(0x0112, FLOAT, 1, struct.pack("<f", 6.0))])], 1),
    ("text", [_ifd([(0x0112, 2, 2, b"6\0\0\0")])], 1),
    ("byte", [_ifd([(0x0112, 1, 1, b"\6\0\0\0")])], 1),
    ("odd TIFF header Pillow accepts", [b"II\0*" + _ifd([_entry(SHORT, 6)])[4:]], 6),
]


def _files(pixels, blocks):
  """The same block in each container."""
  return {"jpeg": _jpeg(pixels, blocks[0]), "png": _png(pixels, before=[blocks[0]]),
          "png after IDAT": _png(pixels, after=[blocks[0]]), "webp": _webp(pixels, blocks[0])}


def _both(data):
  """(orientation, pixels) from each reader: test.py's and the SavedModel's."""
  pixels, info = decode.read_image("photo", data=data)
  return (info.orientation, pixels), (int(_orientation(tf.constant(data))),
                                      _decoded(tf.constant(data)).numpy())


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def _orientation(data):
  return orientation.exif_orientation(data)


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def _decoded(data):
  return bytes_decode.decode_upright(data, 3, 10 ** 6, "image")


def _assert_agree(data, expected, what=""):
  """Both readers find orientation ``expected`` in ``data`` and give the same pixels (``what``
  names the case in a failure)."""
  (ours, pil_pixels), (tf_orientation, tf_pixels) = _both(data)
  assert (ours, tf_orientation) == (expected, expected), what
  np.testing.assert_array_equal(tf_pixels, pil_pixels, err_msg=what)


@pytest.mark.parametrize("name, blocks, expected", _BLOCKS, ids=[b[0] for b in _BLOCKS])
def test_both_readers_follow_one_rule(name, blocks, expected):
  pixels = np.random.default_rng(3).integers(0, 256, (6, 10, 3), dtype=np.uint8)
  for container, data in _files(pixels, blocks).items():
    _assert_agree(data, expected, f"{name} in {container}")


def test_several_blocks_in_one_file_both_readers_pick_the_same():
  pixels = np.random.default_rng(4).integers(0, 256, (6, 10, 3), dtype=np.uint8)
  three, six = _ifd([_entry(SHORT, 3)]), _ifd([_entry(SHORT, 6)])
  # a JPEG's segments are one block: an IFD whose values continue in the second segment
  split = _ifd([(0x0112, SHORT, 3, struct.pack("<I", 26))])
  cases = {
      "png: two eXIf before IDAT, the last": (_png(pixels, before=[three, six]), 6),
      "png: two eXIf after IDAT, the last": (_png(pixels, after=[three, six]), 6),
      "png: before IDAT wins over after": (_png(pixels, before=[three], after=[six]), 3),
      "jpeg: two segments, the first's IFD": (_jpeg(pixels, three, six), 3),
      "jpeg: values in the second segment": (_jpeg(pixels, split, struct.pack("<HHH", 8, 1, 1)),
                                             8),
      "webp: two EXIF chunks, the first": (_webp(pixels, six, three), 6),
      "webp: EXIF flag not set": (_webp(pixels, six, flag=False), 1),
  }
  for name, (data, expected) in cases.items():
    _assert_agree(data, expected, name)


def test_png_with_a_bad_crc_is_refused_by_both_readers():
  pixels = np.random.default_rng(5).integers(0, 256, (6, 10, 3), dtype=np.uint8)
  six = _ifd([_entry(SHORT, 6)])
  for name, data in {
      "eXIf before IDAT": _png(pixels, before=[_png_chunk(b"eXIf", six, bad_crc=True)]),
      "eXIf after IDAT": _png(pixels, after=[_png_chunk(b"eXIf", six, bad_crc=True)]),
      "tEXt": _png(pixels, before=[_png_chunk(b"tEXt", b"a\0b", bad_crc=True)]),
  }.items():
    with pytest.raises(UserError, match="checksum"):
      decode.read_image(name, data=data)
    with pytest.raises(tf.errors.InvalidArgumentError, match="checksum"):
      _decoded(tf.constant(data))
  good = _png(pixels, before=[_png_chunk(b"tEXt", b"a\0b")])  # the check accepts a sound file
  _assert_agree(good, 1)


def test_sideways_photo_with_long_orientation_comes_back_upright_from_both():
  """The defect as reported: a non-square phone photo stored with Orientation as LONG."""
  pixels = np.random.default_rng(6).integers(0, 256, (8, 14, 3), dtype=np.uint8)
  data = _jpeg(pixels, _ifd([_entry(LONG, 6)]))
  (ours, pil_pixels), (theirs, tf_pixels) = _both(data)
  assert ours == theirs == 6 and tf_pixels.shape == (14, 8, 3)
  np.testing.assert_array_equal(tf_pixels, pil_pixels)


def test_crc32_equals_zlib():
  rng = np.random.default_rng(7)
  data = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
  starts = np.array([0, 0, 5, 7, 100, 1000, 2999, 3000])
  ends = np.array([0, 3000, 6, 1031, 2100, 2024, 3000, 3000])
  got = png_chunks.crc32(tf.constant(data), tf.constant(starts, tf.int64),
                         tf.constant(ends, tf.int64)).numpy()
  assert got.tolist() == [zlib.crc32(data[a:b]) for a, b in zip(starts, ends)]
