"""Writing results (model/fileio/encode.py): JPEG and transparency, non-ASCII paths, output
locations (no TF; the round trips are in tests/test_fileio_decode.py)."""
import os

import cv2
import numpy as np
import pytest

from support.pictures import assert_user_error, photo
from model.fileio import decode
from model.fileio import encode


def test_rgba_to_jpeg(tmp_path):
  rgb = photo()
  opaque = decode.ImageInfo(path="a.png", mode="rgba",
                              alpha=np.full(rgb.shape[:2], 255, np.uint8))
  encode.write_image(tmp_path / "ok.jpg", rgb, opaque)  # nothing lost: alpha dropped
  assert cv2.imread(str(tmp_path / "ok.jpg"), cv2.IMREAD_UNCHANGED).shape == rgb.shape
  alpha = opaque.alpha.copy()
  alpha[:10] = 0
  see_through = decode.ImageInfo(path="a.png", mode="rgba", alpha=alpha)
  assert_user_error(encode.write_image, tmp_path / "bad.jpg", rgb, see_through,
                     match="JPEG cannot keep the transparency of a.png")
  assert not (tmp_path / "bad.jpg").exists()


def test_non_ascii_path(tmp_path):
  rgb = photo()
  folder = tmp_path / "фото ü"
  folder.mkdir()
  out = folder / "çà 写真.png"
  encode.write_image(out, rgb)
  back, _ = decode.read_image(out)
  np.testing.assert_array_equal(back, rgb)
  assert decode.read_mask(out, expected_hw=rgb.shape[:2]).shape == rgb.shape[:2]


def test_bad_output_locations(tmp_path):
  rgb = photo()
  assert_user_error(encode.write_image, tmp_path / "missing" / "out.png", rgb,
                     match="output directory .*missing does not exist")
  (tmp_path / "taken.png").mkdir()
  assert_user_error(encode.write_image, tmp_path / "taken.png", rgb, match="is a directory")
  assert sorted(os.listdir(tmp_path)) == ["taken.png"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only directories")
def test_unwritable_output_directory(tmp_path):
  locked = tmp_path / "locked"
  locked.mkdir(mode=0o500)
  try:
    assert_user_error(encode.write_image, locked / "out.png", photo(), match="not writable")
    assert os.listdir(locked) == []
  finally:
    locked.chmod(0o700)
