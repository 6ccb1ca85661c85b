"""The one atomic writer (model/fileio/atomic.py) as results are written: a failed write leaves
the old file and no temporary file (no TF)."""
import os

import numpy as np
import pytest

from support.pictures import assert_user_error, photo
from model.errors import UserError
from model.fileio import decode
from model.fileio import encode


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch, failure):
  out = tmp_path / "out.png"
  out.write_bytes(b"previous result")

  def fail(*args):
    raise failure
  monkeypatch.setattr(encode.os, "fsync", fail)
  expected = UserError if isinstance(failure, OSError) else KeyboardInterrupt
  with pytest.raises(expected) as info:
    encode.write_image(out, photo())
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
  assert_user_error(encode.write_image, tmp_path / "out.png", photo(),
                     match="Permission denied")
  assert os.listdir(tmp_path) == []


def test_overwrite_is_atomic_and_clean(tmp_path):
  out = tmp_path / "out.webp"
  for value in (10, 200):
    encode.write_image(out, np.full((16, 24, 3), value, np.uint8))
    assert os.listdir(tmp_path) == ["out.webp"]
  assert abs(int(decode.read_image(out)[0].mean()) - 200) <= 1
