"""model/inference/orientation.py: EXIF orientation of file bytes in TF ops, equal to what
test.py reads (model/fileio/decode.py, i.e. PIL.ImageOps.exif_transpose), for the formats a
SavedModel decodes (JPEG, PNG, WebP)."""
import io
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from model.fileio import decode
from model.inference import orientation


def _encode(pixels, fmt, tag=None, **kwargs):
  exif = Image.Exif()
  if tag is not None:
    exif[0x0112] = tag
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, fmt, exif=exif.tobytes(), **kwargs)
  return buf.getvalue()


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
  data = _encode(pixels, fmt, tag, **kwargs)
  path = tmp_path / f"photo.{fmt.lower()}"
  path.write_bytes(data)
  expected, info = decode.read_image(str(path))
  assert int(orientation.exif_orientation(tf.constant(data))) == info.orientation
  np.testing.assert_array_equal(_upright(tf.constant(data)).numpy(), expected)


def _app1(payload):
  return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def test_big_endian_after_other_segments_and_malformed_blocks():
  jpeg = _encode(np.zeros((4, 4, 3), np.uint8), "JPEG")
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
