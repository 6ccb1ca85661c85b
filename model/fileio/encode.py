"""Encoding and atomic writing of uint8 RGB results, in the mode of their source.

Files we write are 8-bit and have no EXIF tag (pixels are already in display orientation).
"""
import os

import cv2
import numpy as np

from model.errors import UserError
from model.fileio import paths
from model.fileio.atomic import atomic_write

_JPEG_PARAMS = [cv2.IMWRITE_JPEG_QUALITY, 95,  # no chroma subsampling: keeps colour detail
                cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
_ENCODE_PARAMS = {
    ".png": [cv2.IMWRITE_PNG_COMPRESSION, 3],
    ".jpg": _JPEG_PARAMS,
    ".jpeg": _JPEG_PARAMS,
    ".bmp": [],
    ".webp": [cv2.IMWRITE_WEBP_QUALITY, 95],
    ".tif": [],
    ".tiff": [],
}
assert set(_ENCODE_PARAMS) == set(paths.IMAGE_EXTENSIONS)  # every listed image can be written


def write_image(path, rgb, info=None):
  """Writes uint8 RGB `[H, W, 3]` atomically, in the mode of the source described by `info`.

  The bytes are those of `encode_image`; see there for modes and formats. They go to a
  temporary file in the same directory that replaces `path` at the end, so a failure never
  leaves a partial file.
  """
  atomic_write(path, encode_image(path, rgb, info))


def encode_image(path, rgb, info=None, check_path=True):
  """The file bytes `write_image` writes for uint8 RGB `[H, W, 3]` (format from `path`'s extension).

  `info` is the source's `model.fileio.decode.ImageInfo`: 'grey' sources are written as one
  channel (luma), 'rgba' sources get `info.alpha` back (cropped top-left if the result is
  smaller, as after a crop to a multiple of 8; dropped for JPEG when fully opaque).
  info=None writes RGB. The format follows the extension: PNG, JPEG (quality 95, 4:4:4
  chroma), BMP, WebP (quality 95) or TIFF. `check_path=False` skips the local-folder checks
  of `paths.check_output_path` (for paths on other filesystems).
  """
  path = os.fspath(path)
  if check_path:
    ext = paths.check_output_path(path, info)
  else:
    ext = paths.check_extension(path, hint=False)
  rgb = np.asarray(rgb)
  if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
    raise ValueError(f"write_image expects uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
  mode = "rgb" if info is None else info.mode
  if mode == "grey":
    pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
  elif mode == "rgba" and info.alpha is not None and ext not in paths.NO_ALPHA_EXTENSIONS:
    h, w = rgb.shape[:2]
    if info.alpha.shape[0] < h or info.alpha.shape[1] < w:
      raise ValueError(f"alpha {info.alpha.shape} is smaller than the image {rgb.shape[:2]}")
    pixels = cv2.cvtColor(np.dstack([rgb, info.alpha[:h, :w]]), cv2.COLOR_RGBA2BGRA)
  else:
    pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
  try:
    ok, encoded = cv2.imencode(ext, pixels, _ENCODE_PARAMS[ext])
    detail = ""
  except cv2.error as e:  # e.g. larger than the format allows
    ok, detail = False, f" ({str(e).strip().splitlines()[-1]})"
  if not ok:
    raise UserError(f"{path}: OpenCV could not encode {ext} data{detail}")
  return encoded.tobytes()
