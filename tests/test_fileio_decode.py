"""Reading images and masks (model/fileio/decode.py): round trips through encode, formats, bit
depths, EXIF orientation, mask rules, bad and hostile inputs (no TF)."""
import io
import os
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import EXAMPLES, REPO, require_shared
from support.pictures import assert_user_error, encoded, photo, write
from support.hostile_files import png_with_header
from model.fileio import decode
from model.fileio import encode
from model.fileio import paths
from model.errors import UserError

ORIENTATIONS = range(1, 9)


def _pillow_display(data):
  with Image.open(io.BytesIO(data)) as im:
    return np.asarray(ImageOps.exif_transpose(im))


# ---- round trips, formats and bit depths

@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".jpg", ".webp"])
def test_rgb_round_trip(tmp_path, ext):
  rgb = photo()
  out = tmp_path / f"out{ext}"
  encode.write_image(out, rgb, decode.ImageInfo(path="src", mode="rgb"))
  back, info = decode.read_image(out)
  assert back.dtype == np.uint8 and back.shape == rgb.shape
  assert info.mode == "rgb" and info.alpha is None and info.orientation == 1
  if ext in (".png", ".bmp", ".tif"):
    np.testing.assert_array_equal(back, rgb)
  else:  # lossy at quality 95
    assert np.abs(back.astype(int) - rgb).mean() < 6
  assert os.listdir(tmp_path) == [out.name]  # no temporary file left behind


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_grey_round_trip(tmp_path, fmt):
  grey = photo()[:, :, 1]
  src = write(tmp_path / f"grey.{fmt.lower()}", encoded(grey, fmt))
  rgb, info = decode.read_image(src)
  assert info.mode == "grey" and info.format == fmt.lower()
  assert rgb.shape == grey.shape + (3,)
  assert (rgb == rgb[:, :, :1]).all()
  expected = cv2.imdecode(np.frombuffer(open(src, "rb").read(), np.uint8), cv2.IMREAD_GRAYSCALE)
  np.testing.assert_array_equal(rgb[:, :, 0], expected)
  out = tmp_path / "out.png"
  encode.write_image(out, rgb, info)
  written = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
  assert written.ndim == 2
  np.testing.assert_array_equal(written, expected)


def test_rgba_round_trip_keeps_alpha(tmp_path):
  rgb = photo()
  alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).astype(np.uint8), (rgb.shape[0], 1))
  src = write(tmp_path / "rgba.png", encoded(np.dstack([rgb, alpha]), "PNG"))
  back, info = decode.read_image(src)
  assert info.mode == "rgba"
  np.testing.assert_array_equal(back, rgb)
  np.testing.assert_array_equal(info.alpha, alpha)
  for ext in (".png", ".tif"):
    out = tmp_path / f"out{ext}"
    encode.write_image(out, back, info)
    with Image.open(out) as im:
      assert im.mode == "RGBA"
      np.testing.assert_array_equal(np.asarray(im), np.dstack([rgb, alpha]))
  # A result cropped to a multiple of 8 (official mode) gets the matching alpha crop.
  encode.write_image(tmp_path / "crop.png", back[:40, :72].copy(), info)
  with Image.open(tmp_path / "crop.png") as im:
    np.testing.assert_array_equal(np.asarray(im)[:, :, 3], alpha[:40, :72])


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
  values = np.arange(0, 65536, 257 * 5, dtype=np.uint16).reshape(4, -1)
  src = write(tmp_path / "deep.png", encoded(Image.fromarray(values), "PNG"))
  rgb, info = decode.read_image(src)
  assert info.bit_depth == 16 and info.mode == "grey"
  np.testing.assert_array_equal(rgb[:, :, 0], values // 257)


@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_colour_is_rounded_not_truncated(tmp_path, channels):
  values = np.random.default_rng(0).integers(0, 65536, (5, 7, channels), dtype=np.uint16)
  path = tmp_path / "deep.png"
  assert cv2.imwrite(str(path), values)  # BGR[A]
  rgb, info = decode.read_image(path)
  rounded = ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
  rounded = cv2.cvtColor(rounded, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGBA)
  assert info.bit_depth == 16 and info.mode == ("rgb" if channels == 3 else "rgba")
  np.testing.assert_array_equal(rgb, rounded[..., :3])
  if channels == 4:
    np.testing.assert_array_equal(info.alpha, rounded[..., 3])


def test_16_bit_colour_png_with_exif_orientation_quietly(tmp_path, capfd):
  values = np.random.default_rng(1).integers(0, 65536, (5, 7, 3), dtype=np.uint16)
  png = cv2.imencode(".png", values)[1].tobytes()
  exif = Image.Exif()
  exif[0x0112] = 6
  body = exif.tobytes()  # with its "Exif\0\0" prefix, which libpng warns about (on stderr)
  chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
  at = png.index(b"IDAT") - 4
  rgb, info = decode.read_image(write(tmp_path / "deep.png", png[:at] + chunk + png[at:]))
  rounded = ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)[..., ::-1]
  assert info.orientation == 6 and info.bit_depth == 16
  np.testing.assert_array_equal(rgb, np.rot90(rounded, -1))  # 6: turned clockwise
  assert capfd.readouterr().err == ""


def test_png_with_damaged_compressed_data_is_refused(tmp_path, capfd):
  data = bytearray(encoded(photo(), "PNG"))
  start = data.find(b"IDAT") + 200
  data[start:start + 50] = bytes(b ^ 0x55 for b in data[start:start + 50])
  assert_user_error(decode.read_image, write(tmp_path / "bad.png", bytes(data)),
                     match="truncated or corrupt PNG data", capfd=capfd)


@pytest.mark.parametrize("fmt, extra", [("PNG", {}), ("JPEG", {}), ("BMP", {}), ("GIF", {}),
                                        ("TIFF", {}), ("WEBP", {}), ("WEBP", {"lossless": True})])
def test_formats_sizes_and_pixels(tmp_path, fmt, extra):
  rgb = photo(30, 50)
  data = encoded(rgb, fmt, **extra)
  got, info = decode.read_image(write(tmp_path / f"a.{fmt.lower()}", data))
  assert info.format == fmt.lower() and got.shape == (30, 50, 3) and info.orientation == 1
  with Image.open(io.BytesIO(data)) as im:  # the pixels Pillow decodes (first frame for GIF)
    np.testing.assert_array_equal(got, np.asarray(im.convert("RGB")))
  vp8x = encoded(rgb, "WEBP", orientation=3)  # EXIF forces the extended (VP8X) WebP layout
  got, info = decode.read_image(write(tmp_path / "o.webp", vp8x))
  assert info.orientation == 3 and got.shape == (30, 50, 3)


# ---- EXIF orientation

def _app1(payload):
  return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


@pytest.mark.parametrize("value, expected", [(6, 6), (8, 8), (0, 1), (9, 1)])
def test_exif_little_endian_after_xmp(tmp_path, value, expected):
  exif = b"II*\0" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, value, 0)
  xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta tiff:Orientation='3'/>"
  jpeg = encoded(photo(30, 50), "JPEG")
  data = jpeg[:2] + _app1(xmp) + _app1(b"Exif\0\0" + exif) + jpeg[2:]
  rgb, info = decode.read_image(write(tmp_path / "x.jpg", data))
  assert info.orientation == expected  # the EXIF tag wins over XMP; invalid values mean none
  assert rgb.shape == ((50, 30, 3) if expected in (5, 6, 7, 8) else (30, 50, 3))
  cut = data[:2] + _app1(b"Exif\0\0" + exif[:9]) + jpeg[2:]  # an EXIF block cut short
  assert decode.read_image(write(tmp_path / "cut.jpg", cut))[1].orientation == 1


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_jpeg_orientation_matches_exif_transpose(tmp_path, orientation):
  data = encoded(photo(), "JPEG", orientation, quality=95)
  rgb, info = decode.read_image(write(tmp_path / "o.jpg", data))
  assert info.orientation == orientation and info.mode == "rgb"
  expected = _pillow_display(data)
  assert rgb.shape == expected.shape
  assert np.abs(rgb.astype(int) - expected).max() <= 3  # two JPEG decoders, same geometry
  # OpenCV applies the tag itself with IMREAD_COLOR (not with IMREAD_UNCHANGED, which we use).
  viewer = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
  np.testing.assert_array_equal(rgb, viewer)
  if orientation != 1:
    plain = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    assert plain.shape != rgb.shape or not np.array_equal(plain, rgb)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_grey_jpeg_orientation(tmp_path, orientation):
  data = encoded(photo()[:, :, 0], "JPEG", orientation, quality=95)
  rgb, info = decode.read_image(write(tmp_path / "o.jpg", data))
  assert info.mode == "grey"
  expected = _pillow_display(data)
  assert rgb.shape[:2] == expected.shape
  assert np.abs(rgb[:, :, 0].astype(int) - expected).max() <= 3


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_rgba_orientation_png_webp_tiff(tmp_path, orientation, fmt):
  rgb = photo()
  alpha = np.tile(np.linspace(30, 255, rgb.shape[1]).astype(np.uint8), (rgb.shape[0], 1))
  extra = {"lossless": True} if fmt == "WEBP" else {}
  data = encoded(np.dstack([rgb, alpha]), fmt, orientation, **extra)
  if fmt == "PNG":
    assert b"eXIf" in data
  pixels, info = decode.read_image(write(tmp_path / f"o.{fmt.lower()}", data))
  assert info.orientation == orientation and info.mode == "rgba"
  expected = _pillow_display(data)
  np.testing.assert_array_equal(info.alpha, expected[:, :, 3])
  np.testing.assert_array_equal(pixels, expected[:, :, :3])  # unassociated alpha kept as is


def test_mask_orientation(tmp_path):
  hole = np.zeros((40, 64), np.uint8)
  hole[5:15, 40:60] = 255
  data = encoded(hole, "JPEG", 6)
  mask = decode.read_mask(write(tmp_path / "m.jpg", data), expected_hw=(64, 40))
  np.testing.assert_array_equal(mask, _pillow_display(data) > 127)


# ---- masks

def test_example_masks_match_their_images():
  images = require_shared(EXAMPLES)
  pairs, unpaired = paths.pair_by_stem(images, images)
  assert len(pairs) == 3 and unpaired == []
  for image_path, mask_path in pairs:
    rgb, _ = decode.read_image(image_path)
    mask = decode.read_mask(mask_path, expected_hw=rgb.shape[:2])
    assert mask.dtype == bool and mask.shape == rgb.shape[:2]
    np.testing.assert_array_equal(mask, cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE) > 127)
    assert 0 < mask.mean() < 0.5


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_noisy_mask(tmp_path, channels):
  hole = np.zeros((64, 96), np.uint8)
  cv2.circle(hole, (40, 30), 17, 255, -1)
  hole[40:60, 60:90] = 255
  pixels = hole if channels == 1 else np.dstack([hole] * 3)
  data = encoded(pixels, "JPEG", quality=60)
  decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
  assert len(np.unique(decoded)) > 2  # really noisy
  mask = decode.read_mask(write(tmp_path / "m.jpg", data), expected_hw=hole.shape)
  truth = hole > 127
  kernel = np.ones((5, 5), np.uint8)
  far_from_edges = cv2.dilate(hole, kernel) == cv2.erode(hole, kernel)
  np.testing.assert_array_equal(mask[far_from_edges], truth[far_from_edges])
  assert (mask != truth).mean() < 0.01


def test_mask_colour_and_alpha_rules(tmp_path):
  red = np.zeros((20, 30, 3), np.uint8)
  red[5:10, 5:10] = (255, 0, 0)  # any bright channel is a hole
  mask = decode.read_mask(write(tmp_path / "red.png", encoded(red, "PNG")))
  assert mask.sum() == 25 and mask[5:10, 5:10].all()

  layer = np.zeros((20, 30, 4), np.uint8)  # white strokes on a transparent layer
  layer[..., :3] = 255  # hidden colour under alpha 0 must not count
  layer[2:6, 3:9, 3] = 255
  mask = decode.read_mask(write(tmp_path / "layer.png", encoded(layer, "PNG")))
  assert mask.sum() == 24 and mask[2:6, 3:9].all()

  alpha_only = np.zeros((20, 30, 4), np.uint8)  # holes painted into alpha: ambiguous, refused
  alpha_only[..., 3] = 255
  alpha_only[2:6, 3:9, 3] = 0
  assert_user_error(decode.read_mask, write(tmp_path / "alpha.png", encoded(alpha_only, "PNG")),
                     match="transparent areas but no white pixels")


def test_mask_size_mismatch_is_an_error(tmp_path):
  path = write(tmp_path / "m.png", encoded(np.zeros((8, 10), np.uint8), "PNG"))
  message = assert_user_error(decode.read_mask, path, expected_hw=(8, 12),
                               match="mask is 10x8 but image is 12x8")
  assert message.startswith(path)
  assert decode.read_mask(path, expected_hw=(8, 10)).shape == (8, 10)


# ---- bad inputs

def _bad_inputs(tmp_path):
  png = encoded(photo(), "PNG")
  jpeg = encoded(photo(), "JPEG")
  garbled = bytearray(jpeg)
  garbled[len(jpeg) // 2:len(jpeg) // 2 + 200] = np.random.default_rng(0).integers(
      0, 256, 200, dtype=np.uint8).tobytes()
  (tmp_path / "folder.png").mkdir()
  return {
      "missing": (str(tmp_path / "nope.png"), "no such"),
      "directory": (str(tmp_path / "folder.png"), "is a directory"),
      "empty": (write(tmp_path / "empty.png", b""), "empty"),
      "text": (write(tmp_path / "text.png", b"just some text\n" * 20), "not an image"),
      "png_cut": (write(tmp_path / "cut.png", png[:len(png) // 2]), "truncated or corrupt PNG"),
      "png_header_only": (write(tmp_path / "head.png", png[:20]), "truncated or corrupt"),
      "jpeg_cut": (write(tmp_path / "cut.jpg", jpeg[:len(jpeg) // 2]),
                   "truncated or corrupt JPEG"),
      "jpeg_no_end": (write(tmp_path / "noend.jpg", jpeg[:-2]), "truncated or corrupt JPEG"),
      "zero_size": (write(tmp_path / "zero.png", png_with_header(0, 5)), "damaged header"),
      "huge_png": (write(tmp_path / "huge.png", png_with_header(100000, 100000)),
                   r"100000x100000 \(10000.0 megapixels\), above the limit of 100 megapixels"),
  }


@pytest.mark.parametrize("reader", ["read_image", "read_mask"])
def test_bad_inputs_raise_user_error_quietly(tmp_path, capfd, reader):
  for name, (path, match) in _bad_inputs(tmp_path).items():
    message = assert_user_error(getattr(decode, reader), path, match=match, capfd=capfd)
    assert message.startswith(path), name


def test_damaged_but_complete_jpeg_decodes_as_viewers_show_it(tmp_path, capfd):
  jpeg = encoded(photo(), "JPEG")
  garbled = bytearray(jpeg)
  garbled[len(jpeg) // 2:len(jpeg) // 2 + 200] = np.random.default_rng(0).integers(
      0, 256, 200, dtype=np.uint8).tobytes()
  rgb, _ = decode.read_image(write(tmp_path / "garbled.jpg", bytes(garbled)))
  with Image.open(io.BytesIO(bytes(garbled))) as im:
    np.testing.assert_array_equal(rgb, np.asarray(im))
  assert capfd.readouterr().err == ""  # no libjpeg chatter on the console


def test_huge_jpeg_header_rejected_before_decoding(tmp_path, capfd):
  data = bytearray(encoded(photo(), "JPEG"))
  sof = data.index(b"\xff\xc0")
  data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)  # height, width
  assert_user_error(decode.read_image, write(tmp_path / "huge.jpg", bytes(data)),
                     match="60000x60000", capfd=capfd)
  assert Image.MAX_IMAGE_PIXELS == decode.Image.MAX_IMAGE_PIXELS > 0  # Pillow's own is back


def test_max_pixels_limit(tmp_path):
  path = write(tmp_path / "p.png", encoded(photo(), "PNG"))
  assert_user_error(decode.read_image, path, max_pixels=1000,
                     match="above the limit of 0.001 megapixels")
  assert decode.read_image(path, max_pixels=None)[0].shape == (48, 80, 3)


def _animated_webp(frames=3, height=16, width=24):
  rng = np.random.default_rng(7)
  images = [Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
            for _ in range(frames)]
  buf = io.BytesIO()
  images[0].save(buf, "WEBP", save_all=True, append_images=images[1:], duration=100,
                 lossless=True)
  return buf.getvalue()


def test_check_header_decides_from_the_header_alone():
  """Servers check uploads with `check_header` before decoding: size limit, format, empties."""
  png = encoded(photo(), "PNG")
  assert decode.check_header(png, "image", max_pixels=48 * 80) == ("png", (80, 48))
  assert decode.check_header(encoded(photo(), "JPEG"), "image")[1] == (80, 48)
  with pytest.raises(decode.ImageTooLarge, match=r"^image: image is 80x48 .* 0.001 megapixels"):
    decode.check_header(png, "image", max_pixels=1000)
  bomb = png_with_header(100000, 100000)  # a few bytes that declare 10 gigapixels
  with pytest.raises(decode.ImageTooLarge, match="100000x100000"):
    decode.check_header(bomb, "mask")
  ppm = b"P6\n2 2\n255\n" + bytes(12)  # decodable, but its size is not checked before decoding
  assert cv2.imdecode(np.frombuffer(ppm, np.uint8), cv2.IMREAD_UNCHANGED) is not None
  for data, match in ((ppm, "unsupported file"), (b"", "empty"), (b"text" * 10, "unsupported"),
                      (_animated_webp(), "animated WebP")):
    with pytest.raises(UserError, match=match) as raised:
      decode.check_header(data, "image")
    assert not isinstance(raised.value, decode.ImageTooLarge)
  # read_image's own limit is the same error type, so callers can tell "too large" apart.
  with pytest.raises(decode.ImageTooLarge):
    decode.read_image("upload", max_pixels=1000, data=png)


@pytest.mark.parametrize("reader", ["read_image", "read_mask"])
def test_animated_webp_is_refused_clearly(tmp_path, reader):
  """One behaviour with the SavedModel, whose TensorFlow decoder cannot read animations."""
  path = write(tmp_path / "anim.webp", _animated_webp())
  message = assert_user_error(getattr(decode, reader), path, match="animated WebP")
  assert message.startswith(path) and "PNG" in message
  still = write(tmp_path / "still.webp", encoded(photo(), "WEBP", lossless=True))
  assert decode.read_image(still)[0].shape == (48, 80, 3)


def test_unreadable_file(tmp_path, monkeypatch):
  path = write(tmp_path / "secret.png", encoded(photo(), "PNG"))
  if os.geteuid() != 0:  # root reads anything, so simulate below as well
    os.chmod(path, 0)
    assert_user_error(decode.read_image, path, match="permission denied")
    os.chmod(path, 0o644)

  def denied(*args, **kwargs):
    raise PermissionError(13, "Permission denied")
  monkeypatch.setattr(decode, "open", denied, raising=False)
  assert_user_error(decode.read_image, path, match="secret.png: permission denied")


def test_module_does_not_import_tensorflow():
  code = ("import sys, model.fileio.decode, model.fileio.encode, model.fileio.paths, model.limits, "
          "model.native_stderr; assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
  subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
