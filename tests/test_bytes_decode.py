"""model/inference/bytes_decode.py: the SavedModel's decoding of file bytes equals test.py's
(model/fileio/decode.py), EXIF orientation included, and its limits hold (JPEG scans, GIF frames).

tests/test_export.py runs the exported ``inpaint_bytes`` signature on photos with every EXIF
orientation and compares it with test.py's steps.
"""
import cv2
import numpy as np
import pytest
import tensorflow as tf

from support import hostile_files as hostile
from model.fileio import decode
from model.inference import bytes_decode

CAP = 10_000
BYTES = tf.TensorSpec([], tf.string)


def _write_image(path, pixels):
  assert cv2.imwrite(str(path), pixels), f"cannot write {path}"
  return str(path)


@tf.function(input_signature=[BYTES])
def _pixels(data):
  return bytes_decode.decode_upright(data, 3, CAP, "image")


@tf.function(input_signature=[BYTES])
def _hole(data):
  return bytes_decode.decode_mask(data, CAP)


def _refusal(fn, data):
  """The InvalidArgumentError message of ``fn(data)``, or '' when it is accepted."""
  try:
    fn(tf.constant(data))
  except tf.errors.InvalidArgumentError as e:
    return e.message
  return ""


@pytest.mark.slow
def test_decoding_matches_read_image(tmp_path):
  """Pixels and holes equal test.py's for RGB, grey, RGBA, 16-bit, JPEG and BMP files."""
  rng = np.random.default_rng(1)
  h, w = 9, 13
  bgr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  images = {"rgb.png": bgr, "grey.png": bgr[..., 0], "rgba.png": np.dstack([bgr, bgr[..., 0]]),
            "rgb16.png": rng.integers(0, 65536, (h, w, 3), dtype=np.uint16),
            "photo.jpg": cv2.GaussianBlur(bgr, (5, 5), 2), "rgb.bmp": bgr}
  for name, pixels in images.items():
    path = _write_image(tmp_path / name, pixels)  # the format follows the name
    expected, _ = decode.read_image(path)
    np.testing.assert_array_equal(_pixels(open(path, "rb").read()).numpy(), expected, name)

  grey = (rng.random((h, w)) * 255).astype(np.uint8)
  colour = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  alpha = rng.integers(0, 256, (h, w, 1), dtype=np.uint8)
  alpha[0, 0] = grey[0, 0] = 255  # one opaque white pixel, so read_mask accepts every file
  colour[0, 0] = 255
  masks = {"grey": grey[..., None], "rgb": colour, "rgba": np.dstack([colour, alpha]),
           "grey_alpha": np.dstack([grey, alpha]),
           "grey16": rng.integers(0, 65536, (h, w, 1), dtype=np.uint16)}
  for name, pixels in masks.items():
    path = tmp_path / f"mask_{name}.png"
    path.write_bytes(tf.io.encode_png(pixels).numpy())  # encode_png keeps the channels
    expected = decode.read_mask(str(path))
    np.testing.assert_array_equal(_hole(path.read_bytes()).numpy(), expected, name)


@pytest.mark.parametrize("fmt, kwargs", [("JPEG", {"quality": 95}), ("PNG", {}),
                                         ("WEBP", {"lossless": True})])
@pytest.mark.parametrize("tag", [None, 1, 2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_is_applied_as_test_py_does(fmt, kwargs, tag):
  rng = np.random.default_rng(tag or 0)
  pixels = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
  data = hostile.with_exif_orientation(pixels, fmt, tag, **kwargs)
  expected, info = decode.read_image("photo", data=data)
  assert info.orientation == (tag or 1)
  np.testing.assert_array_equal(_pixels(data).numpy(), expected)
  mask = hostile.with_exif_orientation(np.where(pixels > 127, 255, 0).astype(np.uint8), fmt, tag,
                                       **kwargs)
  np.testing.assert_array_equal(_hole(mask).numpy(), decode.read_mask("mask", data=mask))


def test_gif_frame_larger_than_its_screen_is_refused():
  """The header's logical screen says 8x8, the frame is 300x300."""
  data = hostile.gif_frame_beyond_screen(8, 300)
  np.testing.assert_array_equal(bytes_decode.header_size(tf.constant(data)).numpy(),
                                [300, 300, 90_000])
  assert "image is 300x300 pixels: empty, or above the limit" in _refusal(_pixels, data)
  bare = tf.function(lambda d: bytes_decode.decode_pixels(d, 3, CAP, "image"),
                     input_signature=[BYTES])  # no header check: the decoded shape is checked
  assert "image is 300x300 pixels" in _refusal(bare, data)
  small = hostile.gif_frame_beyond_screen(8, 90)
  assert _pixels(tf.constant(small)).shape == (90, 90, 3)


def test_animated_gif_counts_every_frame():
  from PIL import Image
  import io
  frames = [Image.fromarray(np.full((50, 60), v, np.uint8)) for v in (0, 100, 200)]
  buf = io.BytesIO()
  frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
  np.testing.assert_array_equal(bytes_decode.header_size(tf.constant(buf.getvalue())).numpy(),
                                [60, 50, 9000])


def test_jpeg_with_too_many_scans_is_refused():
  """In the graph: scans are counted in the bytes before decoding."""
  assert int(bytes_decode.jpeg_scans(tf.constant(hostile.progressive_jpeg()))) == 10
  assert "JPEG has more than 100 scans" in _refusal(_pixels, hostile.many_scans_jpeg(101))
  assert _refusal(_pixels, hostile.many_scans_jpeg(100)) == ""
