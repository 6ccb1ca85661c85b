"""Small pictures and files for the file-format tests (tests/test_fileio_*.py)."""
import io
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import EXAMPLES, require_shared
from model.errors import UserError


def photo(height=48, width=80):
  """A crop of a real photo (not symmetric, so a wrong orientation cannot go unnoticed)."""
  path = require_shared(os.path.join(EXAMPLES, "sklearn_china.png"))
  with Image.open(path) as im:
    return np.asarray(im.convert("RGB"))[100:100 + height, 150:150 + width].copy()


def encoded(array_or_image, fmt, orientation=None, **kwargs):
  """File bytes written by Pillow (``orientation``: an EXIF Orientation tag to add)."""
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


def write(path, data):
  path.write_bytes(data)
  return str(path)


def assert_user_error(func, *args, match, capfd=None, **kwargs):
  """``func(*args)`` raises a one-line UserError matching ``match`` (and, with ``capfd``, writes
  nothing to stderr: no libpng / libjpeg / OpenCV chatter); returns the message."""
  with pytest.raises(UserError, match=match) as info:
    func(*args, **kwargs)
  message = str(info.value)
  assert "\n" not in message
  if capfd is not None:
    assert capfd.readouterr().err == ""
  return message


def example(name):
  """Path of a photo of ../shared/data/examples (skips, or fails in CI, when it is absent)."""
  return require_shared(os.path.join(EXAMPLES, name))


def read_pixels(path, flags=cv2.IMREAD_UNCHANGED):
  """Pixels of a file as stored (BGR[A] or grey); fails loudly when unreadable."""
  pixels = cv2.imread(str(path), flags)
  assert pixels is not None, f"cannot read {path}"
  return pixels
