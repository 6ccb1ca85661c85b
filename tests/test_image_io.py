"""Image/mask file I/O: modes, EXIF orientation, masks, bad inputs and atomic writes (no TF)."""
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
from support.hostile_files import png_with_header
from model.fileio import decode
from model.fileio import encode
from model.fileio import paths
from model.errors import UserError

ORIENTATIONS = range(1, 9)


def _photo(height=48, width=80):
  """A crop of a real photo (not symmetric, so a wrong orientation cannot go unnoticed)."""
  path = require_shared(os.path.join(EXAMPLES, "sklearn_china.png"))
  with Image.open(path) as im:
    return np.asarray(im.convert("RGB"))[100:100 + height, 150:150 + width].copy()


def _encode(array_or_image, fmt, orientation=None, **kwargs):
  im = array_or_image
  if not isinstance(im, Image.Image):
    im = Image.fromarray(im)
  if orientation is not None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    kwargs["exif"] = exif.tobytes()
  buf = io.BytesIO()
  im.save(buf, fmt, **kwargs)
  return buf.getvalue()


def _write(path, data):
  path.write_bytes(data)
  return str(path)


def _pillow_display(data):
  with Image.open(io.BytesIO(data)) as im:
    return np.asarray(ImageOps.exif_transpose(im))




def _assert_user_error(func, *args, match, capfd=None, **kwargs):
  with pytest.raises(UserError, match=match) as info:
    func(*args, **kwargs)
  message = str(info.value)
  assert "\n" not in message
  if capfd is not None:  # no libpng / libjpeg / OpenCV chatter on the console
    assert capfd.readouterr().err == ""
  return message


# ---- round trips

@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".jpg", ".webp"])
def test_rgb_round_trip(tmp_path, ext):
  rgb = _photo()
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
  grey = _photo()[:, :, 1]
  src = _write(tmp_path / f"grey.{fmt.lower()}", _encode(grey, fmt))
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
  rgb = _photo()
  alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).astype(np.uint8), (rgb.shape[0], 1))
  src = _write(tmp_path / "rgba.png", _encode(np.dstack([rgb, alpha]), "PNG"))
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


def test_rgba_to_jpeg(tmp_path):
  rgb = _photo()
  opaque = decode.ImageInfo(path="a.png", mode="rgba",
                              alpha=np.full(rgb.shape[:2], 255, np.uint8))
  encode.write_image(tmp_path / "ok.jpg", rgb, opaque)  # nothing lost: alpha dropped
  assert cv2.imread(str(tmp_path / "ok.jpg"), cv2.IMREAD_UNCHANGED).shape == rgb.shape
  alpha = opaque.alpha.copy()
  alpha[:10] = 0
  see_through = decode.ImageInfo(path="a.png", mode="rgba", alpha=alpha)
  _assert_user_error(encode.write_image, tmp_path / "bad.jpg", rgb, see_through,
                     match="JPEG cannot keep the transparency of a.png")
  assert not (tmp_path / "bad.jpg").exists()


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
  values = np.arange(0, 65536, 257 * 5, dtype=np.uint16).reshape(4, -1)
  src = _write(tmp_path / "deep.png", _encode(Image.fromarray(values), "PNG"))
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
  rgb, info = decode.read_image(_write(tmp_path / "deep.png", png[:at] + chunk + png[at:]))
  rounded = ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)[..., ::-1]
  assert info.orientation == 6 and info.bit_depth == 16
  np.testing.assert_array_equal(rgb, np.rot90(rounded, -1))  # 6: turned clockwise
  assert capfd.readouterr().err == ""


def test_png_with_damaged_compressed_data_is_refused(tmp_path, capfd):
  data = bytearray(_encode(_photo(), "PNG"))
  start = data.find(b"IDAT") + 200
  data[start:start + 50] = bytes(b ^ 0x55 for b in data[start:start + 50])
  _assert_user_error(decode.read_image, _write(tmp_path / "bad.png", bytes(data)),
                     match="truncated or corrupt PNG data", capfd=capfd)


def test_non_ascii_path(tmp_path):
  rgb = _photo()
  folder = tmp_path / "фото ü"
  folder.mkdir()
  out = folder / "çà 写真.png"
  encode.write_image(out, rgb)
  back, _ = decode.read_image(out)
  np.testing.assert_array_equal(back, rgb)
  assert decode.read_mask(out, expected_hw=rgb.shape[:2]).shape == rgb.shape[:2]


@pytest.mark.parametrize("fmt, extra", [("PNG", {}), ("JPEG", {}), ("BMP", {}), ("GIF", {}),
                                        ("TIFF", {}), ("WEBP", {}), ("WEBP", {"lossless": True})])
def test_formats_sizes_and_pixels(tmp_path, fmt, extra):
  rgb = _photo(30, 50)
  data = _encode(rgb, fmt, **extra)
  got, info = decode.read_image(_write(tmp_path / f"a.{fmt.lower()}", data))
  assert info.format == fmt.lower() and got.shape == (30, 50, 3) and info.orientation == 1
  with Image.open(io.BytesIO(data)) as im:  # the pixels Pillow decodes (first frame for GIF)
    np.testing.assert_array_equal(got, np.asarray(im.convert("RGB")))
  vp8x = _encode(rgb, "WEBP", orientation=3)  # EXIF forces the extended (VP8X) WebP layout
  got, info = decode.read_image(_write(tmp_path / "o.webp", vp8x))
  assert info.orientation == 3 and got.shape == (30, 50, 3)


# ---- EXIF orientation

def _app1(payload):
  return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


@pytest.mark.parametrize("value, expected", [(6, 6), (8, 8), (0, 1), (9, 1)])
def test_exif_little_endian_after_xmp(tmp_path, value, expected):
  exif = b"II*\0" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, value, 0)
  xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta tiff:Orientation='3'/>"
  jpeg = _encode(_photo(30, 50), "JPEG")
  data = jpeg[:2] + _app1(xmp) + _app1(b"Exif\0\0" + exif) + jpeg[2:]
  rgb, info = decode.read_image(_write(tmp_path / "x.jpg", data))
  assert info.orientation == expected  # the EXIF tag wins over XMP; invalid values mean none
  assert rgb.shape == ((50, 30, 3) if expected in (5, 6, 7, 8) else (30, 50, 3))
  cut = data[:2] + _app1(b"Exif\0\0" + exif[:9]) + jpeg[2:]  # an EXIF block cut short
  assert decode.read_image(_write(tmp_path / "cut.jpg", cut))[1].orientation == 1


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_jpeg_orientation_matches_exif_transpose(tmp_path, orientation):
  data = _encode(_photo(), "JPEG", orientation, quality=95)
  rgb, info = decode.read_image(_write(tmp_path / "o.jpg", data))
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
  data = _encode(_photo()[:, :, 0], "JPEG", orientation, quality=95)
  rgb, info = decode.read_image(_write(tmp_path / "o.jpg", data))
  assert info.mode == "grey"
  expected = _pillow_display(data)
  assert rgb.shape[:2] == expected.shape
  assert np.abs(rgb[:, :, 0].astype(int) - expected).max() <= 3


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_rgba_orientation_png_webp_tiff(tmp_path, orientation, fmt):
  rgb = _photo()
  alpha = np.tile(np.linspace(30, 255, rgb.shape[1]).astype(np.uint8), (rgb.shape[0], 1))
  extra = {"lossless": True} if fmt == "WEBP" else {}
  data = _encode(np.dstack([rgb, alpha]), fmt, orientation, **extra)
  if fmt == "PNG":
    assert b"eXIf" in data
  pixels, info = decode.read_image(_write(tmp_path / f"o.{fmt.lower()}", data))
  assert info.orientation == orientation and info.mode == "rgba"
  expected = _pillow_display(data)
  np.testing.assert_array_equal(info.alpha, expected[:, :, 3])
  np.testing.assert_array_equal(pixels, expected[:, :, :3])  # unassociated alpha kept as is


def test_mask_orientation(tmp_path):
  hole = np.zeros((40, 64), np.uint8)
  hole[5:15, 40:60] = 255
  data = _encode(hole, "JPEG", 6)
  mask = decode.read_mask(_write(tmp_path / "m.jpg", data), expected_hw=(64, 40))
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
  data = _encode(pixels, "JPEG", quality=60)
  decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
  assert len(np.unique(decoded)) > 2  # really noisy
  mask = decode.read_mask(_write(tmp_path / "m.jpg", data), expected_hw=hole.shape)
  truth = hole > 127
  kernel = np.ones((5, 5), np.uint8)
  far_from_edges = cv2.dilate(hole, kernel) == cv2.erode(hole, kernel)
  np.testing.assert_array_equal(mask[far_from_edges], truth[far_from_edges])
  assert (mask != truth).mean() < 0.01


def test_mask_colour_and_alpha_rules(tmp_path):
  red = np.zeros((20, 30, 3), np.uint8)
  red[5:10, 5:10] = (255, 0, 0)  # any bright channel is a hole
  mask = decode.read_mask(_write(tmp_path / "red.png", _encode(red, "PNG")))
  assert mask.sum() == 25 and mask[5:10, 5:10].all()

  layer = np.zeros((20, 30, 4), np.uint8)  # white strokes on a transparent layer
  layer[..., :3] = 255  # hidden colour under alpha 0 must not count
  layer[2:6, 3:9, 3] = 255
  mask = decode.read_mask(_write(tmp_path / "layer.png", _encode(layer, "PNG")))
  assert mask.sum() == 24 and mask[2:6, 3:9].all()

  alpha_only = np.zeros((20, 30, 4), np.uint8)  # holes painted into alpha: ambiguous, refused
  alpha_only[..., 3] = 255
  alpha_only[2:6, 3:9, 3] = 0
  _assert_user_error(decode.read_mask, _write(tmp_path / "alpha.png", _encode(alpha_only, "PNG")),
                     match="transparent areas but no white pixels")


def test_mask_size_mismatch_is_an_error(tmp_path):
  path = _write(tmp_path / "m.png", _encode(np.zeros((8, 10), np.uint8), "PNG"))
  message = _assert_user_error(decode.read_mask, path, expected_hw=(8, 12),
                               match="mask is 10x8 but image is 12x8")
  assert message.startswith(path)
  assert decode.read_mask(path, expected_hw=(8, 10)).shape == (8, 10)


# ---- bad inputs

def _bad_inputs(tmp_path):
  png = _encode(_photo(), "PNG")
  jpeg = _encode(_photo(), "JPEG")
  garbled = bytearray(jpeg)
  garbled[len(jpeg) // 2:len(jpeg) // 2 + 200] = np.random.default_rng(0).integers(
      0, 256, 200, dtype=np.uint8).tobytes()
  (tmp_path / "folder.png").mkdir()
  return {
      "missing": (str(tmp_path / "nope.png"), "no such"),
      "directory": (str(tmp_path / "folder.png"), "is a directory"),
      "empty": (_write(tmp_path / "empty.png", b""), "empty"),
      "text": (_write(tmp_path / "text.png", b"just some text\n" * 20), "not an image"),
      "png_cut": (_write(tmp_path / "cut.png", png[:len(png) // 2]), "truncated or corrupt PNG"),
      "png_header_only": (_write(tmp_path / "head.png", png[:20]), "truncated or corrupt"),
      "jpeg_cut": (_write(tmp_path / "cut.jpg", jpeg[:len(jpeg) // 2]),
                   "truncated or corrupt JPEG"),
      "jpeg_no_end": (_write(tmp_path / "noend.jpg", jpeg[:-2]), "truncated or corrupt JPEG"),
      "zero_size": (_write(tmp_path / "zero.png", png_with_header(0, 5)), "damaged header"),
      "huge_png": (_write(tmp_path / "huge.png", png_with_header(100000, 100000)),
                   r"100000x100000 \(10000.0 megapixels\), above the limit of 100 megapixels"),
  }


@pytest.mark.parametrize("reader", ["read_image", "read_mask"])
def test_bad_inputs_raise_user_error_quietly(tmp_path, capfd, reader):
  for name, (path, match) in _bad_inputs(tmp_path).items():
    message = _assert_user_error(getattr(decode, reader), path, match=match, capfd=capfd)
    assert message.startswith(path), name


def test_damaged_but_complete_jpeg_decodes_as_viewers_show_it(tmp_path, capfd):
  jpeg = _encode(_photo(), "JPEG")
  garbled = bytearray(jpeg)
  garbled[len(jpeg) // 2:len(jpeg) // 2 + 200] = np.random.default_rng(0).integers(
      0, 256, 200, dtype=np.uint8).tobytes()
  rgb, _ = decode.read_image(_write(tmp_path / "garbled.jpg", bytes(garbled)))
  with Image.open(io.BytesIO(bytes(garbled))) as im:
    np.testing.assert_array_equal(rgb, np.asarray(im))
  assert capfd.readouterr().err == ""  # no libjpeg chatter on the console


def test_huge_jpeg_header_rejected_before_decoding(tmp_path, capfd):
  data = bytearray(_encode(_photo(), "JPEG"))
  sof = data.index(b"\xff\xc0")
  data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)  # height, width
  _assert_user_error(decode.read_image, _write(tmp_path / "huge.jpg", bytes(data)),
                     match="60000x60000", capfd=capfd)
  assert Image.MAX_IMAGE_PIXELS == decode.Image.MAX_IMAGE_PIXELS > 0  # Pillow's own is back


def test_max_pixels_limit(tmp_path):
  path = _write(tmp_path / "p.png", _encode(_photo(), "PNG"))
  _assert_user_error(decode.read_image, path, max_pixels=1000,
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
  png = _encode(_photo(), "PNG")
  assert decode.check_header(png, "image", max_pixels=48 * 80) == ("png", (80, 48))
  assert decode.check_header(_encode(_photo(), "JPEG"), "image")[1] == (80, 48)
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
  path = _write(tmp_path / "anim.webp", _animated_webp())
  message = _assert_user_error(getattr(decode, reader), path, match="animated WebP")
  assert message.startswith(path) and "PNG" in message
  still = _write(tmp_path / "still.webp", _encode(_photo(), "WEBP", lossless=True))
  assert decode.read_image(still)[0].shape == (48, 80, 3)


def test_unreadable_file(tmp_path, monkeypatch):
  path = _write(tmp_path / "secret.png", _encode(_photo(), "PNG"))
  if os.geteuid() != 0:  # root reads anything, so simulate below as well
    os.chmod(path, 0)
    _assert_user_error(decode.read_image, path, match="permission denied")
    os.chmod(path, 0o644)

  def denied(*args, **kwargs):
    raise PermissionError(13, "Permission denied")
  monkeypatch.setattr(decode, "open", denied, raising=False)
  _assert_user_error(decode.read_image, path, match="secret.png: permission denied")


# ---- output paths and atomic writes

@pytest.mark.parametrize("name", ["out.xyz", "out", "out.gif"])
def test_bad_output_extension(tmp_path, name):
  _assert_user_error(paths.check_output_path, tmp_path / name,
                     match="unsupported output extension")
  _assert_user_error(encode.write_image, tmp_path / name, _photo(), match="use one of .png")
  assert os.listdir(tmp_path) == []


def test_bad_output_locations(tmp_path):
  rgb = _photo()
  _assert_user_error(encode.write_image, tmp_path / "missing" / "out.png", rgb,
                     match="output directory .*missing does not exist")
  (tmp_path / "taken.png").mkdir()
  _assert_user_error(encode.write_image, tmp_path / "taken.png", rgb, match="is a directory")
  assert sorted(os.listdir(tmp_path)) == ["taken.png"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only directories")
def test_unwritable_output_directory(tmp_path):
  locked = tmp_path / "locked"
  locked.mkdir(mode=0o500)
  try:
    _assert_user_error(encode.write_image, locked / "out.png", _photo(), match="not writable")
    assert os.listdir(locked) == []
  finally:
    locked.chmod(0o700)


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch, failure):
  out = tmp_path / "out.png"
  out.write_bytes(b"previous result")

  def fail(*args):
    raise failure
  monkeypatch.setattr(encode.os, "fsync", fail)
  expected = UserError if isinstance(failure, OSError) else KeyboardInterrupt
  with pytest.raises(expected) as info:
    encode.write_image(out, _photo())
  if expected is UserError:
    assert "No space left on device" in str(info.value) and str(out) in str(info.value)
  assert os.listdir(tmp_path) == ["out.png"]
  assert out.read_bytes() == b"previous result"


def test_temp_file_creation_failure(tmp_path, monkeypatch):
  real_open = os.open

  def denied(path, *args, **kwargs):
    if os.path.dirname(path) == str(tmp_path):
      raise PermissionError(13, "Permission denied")
    return real_open(path, *args, **kwargs)
  monkeypatch.setattr(encode.os, "open", denied)
  _assert_user_error(encode.write_image, tmp_path / "out.png", _photo(),
                     match="Permission denied")
  assert os.listdir(tmp_path) == []


def test_overwrite_is_atomic_and_clean(tmp_path):
  out = tmp_path / "out.webp"
  for value in (10, 200):
    encode.write_image(out, np.full((16, 24, 3), value, np.uint8))
    assert os.listdir(tmp_path) == ["out.webp"]
  assert abs(int(decode.read_image(out)[0].mean()) - 200) <= 1


# ---- folders

def test_list_images(tmp_path):
  for name in ["b.PNG", "a.jpg", "c.webp", "d.txt", ".hidden.png", "e.jpeg", "f.tiff"]:
    (tmp_path / name).write_bytes(b"x")
  (tmp_path / "sub.png").mkdir()
  (tmp_path / "sub.png" / "deep.png").write_bytes(b"x")
  names = [os.path.basename(p) for p in paths.list_images(tmp_path)]
  assert names == ["a.jpg", "b.PNG", "c.webp", "e.jpeg", "f.tiff"]
  _assert_user_error(paths.list_images, tmp_path / "nope", match="no such directory")
  _assert_user_error(paths.list_images, tmp_path / "d.txt", match="is not a directory")


def test_one_listing_rule_also_when_recursive(tmp_path):
  """Training's recursive listing uses the same name rule: hidden files (e.g. macOS '._x.jpg')
  and hidden folders are skipped, names in any case, sorted by path."""
  for rel in ["b.PNG", "._a.jpg", "sub/c.JPEG", "sub/.d.png", ".cache/e.png", "sub/x.txt"]:
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_bytes(b"x")
  found = [os.path.relpath(p, tmp_path) for p in paths.list_images(tmp_path, recursive=True)]
  assert found == ["b.PNG", os.path.join("sub", "c.JPEG")]
  assert [os.path.basename(p) for p in paths.list_images(tmp_path)] == ["b.PNG"]


def test_pair_by_stem(tmp_path):
  images, masks = tmp_path / "images", tmp_path / "masks"
  images.mkdir()
  masks.mkdir()
  for name in ["a.jpg", "b.png", "c.png"]:
    (images / name).write_bytes(b"x")
  for name in ["a.png", "b_mask.png", "zz.png"]:
    (masks / name).write_bytes(b"x")
  pairs, unpaired = paths.pair_by_stem(images, masks)
  assert pairs == [(str(images / "a.jpg"), str(masks / "a.png")),
                   (str(images / "b.png"), str(masks / "b_mask.png"))]
  assert unpaired == [str(images / "c.png")]

  single = str(masks / "zz.png")
  pairs, unpaired = paths.pair_by_stem(images, single)
  assert [m for _, m in pairs] == [single] * 3 and unpaired == []

  (masks / "a_mask.png").write_bytes(b"x")
  _assert_user_error(paths.pair_by_stem, images, masks, match="a.jpg: several masks match")
  _assert_user_error(paths.pair_by_stem, images, tmp_path / "nope",
                     match="no such mask file or directory")


def test_pair_in_one_folder(tmp_path):
  for name in ["a.png", "a_mask.png", "a.jpg", "b.png"]:
    (tmp_path / name).write_bytes(b"x")
  pairs, unpaired = paths.pair_by_stem(tmp_path, tmp_path)
  assert pairs == [(str(tmp_path / "a.jpg"), str(tmp_path / "a_mask.png")),
                   (str(tmp_path / "a.png"), str(tmp_path / "a_mask.png"))]
  assert unpaired == [str(tmp_path / "b.png")]
  # A single mask file inside the image folder is not paired with itself.
  pairs, _ = paths.pair_by_stem(tmp_path, tmp_path / "a_mask.png")
  assert str(tmp_path / "a_mask.png") not in [i for i, _ in pairs] and len(pairs) == 3


def test_module_does_not_import_tensorflow():
  code = ("import sys, model.fileio.decode, model.fileio.encode, model.fileio.paths, model.limits, "
          "model.native_stderr; assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
  subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
