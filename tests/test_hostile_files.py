"""Hostile files at the Pillow/OpenCV boundary (model/fileio/decode.py: JPEG scan bombs, GIF
frames beyond the screen, damaged TIFFs) and the one check of the user-set limits
(model/limits.py).

Every refusal is a one-line `UserError` naming the file, raised before the expensive work:
a JPEG with an absurd number of scans, a mask whose size cannot be the image's (both known
from the headers), a decode larger than the cap, damaged TIFF data (libtiff's own lines
never reach stderr).
"""
import math

import numpy as np
import pytest

from support import hostile_files as hostile
from model import limits
from model.errors import UserError
from model.fileio import decode
from model.fileio import rules


def _mask_png(h, w):
  import cv2
  ok, data = cv2.imencode(".png", np.full((h, w), 255, np.uint8))
  assert ok
  return data.tobytes()


def _one_line_error(call, *fragments):
  with pytest.raises(UserError) as info:
    call()
  message = str(info.value)
  assert "\n" not in message
  for fragment in fragments:
    assert fragment in message, message
  return message


# ---- item 5: JPEG scans, sizes compared from the headers

def test_scan_count_of_ordinary_and_repeated_scans():
  assert decode.jpeg_scan_count(hostile.progressive_jpeg()) == 10  # libjpeg's script
  assert decode.jpeg_scan_count(hostile.jpeg_header_only(32, 32)) == 1  # baseline
  assert decode.jpeg_scan_count(hostile.many_scans_jpeg(150), stop_after=10**6) == 150
  assert decode.jpeg_scan_count(hostile.many_scans_jpeg(5000)) == rules.MAX_JPEG_SCANS + 1


def test_both_readers_count_scans_by_one_rule():
  """Every SOS marker in the file counts, in the Pillow reader and the SavedModel's (TF ops),
  whether or not it sits inside an APP segment (an EXIF thumbnail is itself a JPEG)."""
  import tensorflow as tf
  from model.inference import bytes_decode
  data = hostile.progressive_jpeg()
  for extra in (0, 1, 200):
    payload = b"Exif\0\0" + b"\xff\xda\x00\x08" * extra
    app1 = b"\xff\xe1" + len(payload + b"..").to_bytes(2, "big") + payload
    jpeg = data[:2] + app1 + data[2:]
    pillow_side = decode.jpeg_scan_count(jpeg, stop_after=10**6)
    assert pillow_side == 10 + extra
    assert int(bytes_decode.jpeg_scans(tf.constant(jpeg))) == pillow_side


@pytest.mark.parametrize("scans, refused", [(rules.MAX_JPEG_SCANS, False),
                                            (rules.MAX_JPEG_SCANS + 1, True), (5000, True)])
def test_jpeg_with_too_many_scans_is_refused_before_decoding(scans, refused):
  data = hostile.many_scans_jpeg(scans)
  if not refused:
    assert decode.read_image("ok.jpg", data=data)[0].shape == (48, 64, 3)
    return
  for call in (lambda: decode.read_image("bomb.jpg", data=data),
               lambda: decode.check_header(data, "bomb.jpg"),
               lambda: decode.read_pair("bomb.jpg", "mask.png", None, data, _mask_png(48, 64))):
    _one_line_error(call, "bomb.jpg: JPEG has more than 100 scans")


def test_pair_sizes_are_compared_from_the_headers(monkeypatch):
  """The 422 of item 5: a 4000x4000 image with a 48x32 mask is refused with nothing decoded."""
  def no_decoding(*args):
    raise AssertionError("a pixel was decoded")
  monkeypatch.setattr(decode, "_decode", no_decoding)
  with pytest.raises(decode.MaskSizeMismatch) as info:
    decode.read_pair("photo.jpg", "mask.png", None, hostile.jpeg_header_only(4000, 4000),
                     _mask_png(32, 48))
  assert str(info.value) == ("mask.png: mask is 48x32 but image is 4000x4000 (width x height); "
                             "masks are not resized, save the mask at the image size")
  assert (info.value.mask_wh, info.value.image_wh) == ((48, 32), (4000, 4000))


def test_pair_of_a_turned_photo_and_its_display_size_mask():
  """EXIF orientation 6 stores 40x24 for a 24x40 (w x h) photo: its display-size mask fits."""
  pixels = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
  photo = hostile.with_exif_orientation(pixels, "JPEG", 6, quality=95)
  rgb, info, hole = decode.read_pair("p.jpg", "m.png", None, photo, _mask_png(40, 24))
  assert rgb.shape == (40, 24, 3) and hole.shape == (40, 24) and info.orientation == 6
  with pytest.raises(decode.MaskSizeMismatch, match="mask is 40x24 but image is 24x40"):
    decode.read_pair("p.jpg", "m.png", None, photo, _mask_png(24, 40))  # found after decoding


# ---- item 6: what is decoded is bounded, whatever the header says

def test_gif_frame_larger_than_its_screen_counts():
  data = hostile.gif_frame_beyond_screen(8, 300)
  assert decode.check_header(data, "g.gif", 100_000)[1] == (300, 300)
  _one_line_error(lambda: decode.read_image("g.gif", 300 * 300 - 1, data=data),
                  "g.gif: image is 300x300", "--max_megapixels")
  assert decode.read_image("g.gif", 300 * 300, data=data)[0].shape == (300, 300, 3)


def test_decoded_size_is_checked_against_the_cap(monkeypatch):
  """A decoder that produces more than the header said is caught on the array too."""
  real = decode._decode

  def bigger(*args):
    pixels, turned = real(*args)
    return np.repeat(pixels, 2, axis=0), turned
  monkeypatch.setattr(decode, "_decode", bigger)
  data = hostile.jpeg_header_only(16, 16)
  _one_line_error(lambda: decode.read_image("x.jpg", 300, data=data), "x.jpg: image is 16x32")


# ---- item 11: TIFF

def test_tiff_with_float_strip_offsets_is_one_line():
  _one_line_error(lambda: decode.read_image("f.tif", data=hostile.tiff_float_strip_offsets()),
                  "f.tif: truncated or corrupt TIFF data")


def test_damaged_g4_tiff_is_refused_without_libtiff_noise(capfd):
  good = decode.read_image("good.tif", data=hostile.g4_tiff(False))[0]
  assert good.shape == (64, 64, 3)
  _one_line_error(lambda: decode.read_image("bad.tif", data=hostile.g4_tiff(True)),
                  "bad.tif: corrupt TIFF data (libtiff: Fax4Decode")
  out, err = capfd.readouterr()
  assert err == "" and out == ""


# ---- the one check of each limit

@pytest.mark.parametrize("check, flag", [(limits.max_pixels, "--max_megapixels"),
                                         (limits.memory_bytes, "--max_memory_gb"),
                                         (limits.upload_bytes, "--max_upload_mb")])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1e308, 0, -1, True, "1"])
def test_limits_refuse_what_would_crash_later(check, flag, value):
  with pytest.raises(ValueError, match=f"^{flag} must be a positive number"):
    check(value)


def test_limits_convert_valid_values():
  assert limits.max_pixels(100) == limits.DEFAULT_MAX_PIXELS == 100_000_000
  assert limits.max_pixels(1e-9) == 1 and limits.max_pixels(limits.MEGAPIXELS_BOUND) == 10**12
  assert limits.memory_bytes(0.5) == 2**29
  assert limits.upload_bytes(50) == 50 * 2**20
