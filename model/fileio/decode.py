"""Reading image and mask files: header checks, decoding (EXIF orientation, grey/RGBA, 16-bit).

NumPy, Pillow and OpenCV (no TensorFlow), so CLIs can check their inputs before loading a
model. The rules it applies are listed once, in `model/fileio/rules.py`. Every problem a user
can cause raises `UserError` with a one-line message that starts with the file path.

How:
* Files are read as bytes and opened with Pillow, whose header (format, size, EXIF) is read
  lazily, so the header checks run before anything is decoded (`read_pair`: both headers).
  Pillow's decoders report truncated or broken data as exceptions, libtiff's error lines are
  read from the stderr they write to.
* Pixels are uint8 RGB `[H, W, 3]` in display orientation: the EXIF Orientation tag (JPEG,
  PNG, WebP, TIFF; XMP when there is no EXIF tag) is applied as `PIL.ImageOps.exif_transpose`
  applies it.
* 16-bit colour is decoded with OpenCV, which keeps all 16 bits (Pillow keeps only the high
  byte).
* Masks are bool `[H, W]`, True = hole. See `read_mask` for alpha channels.
"""
import dataclasses
import io
import os
import re
import stat
import threading
import warnings
import zlib

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model import limits
from model.errors import UserError
from model.fileio import rules
from model.native_stderr import hidden_native_stderr

MODES = ("grey", "rgb", "rgba")
SERVED_FORMATS = ("png", "jpeg", "bmp", "webp", "gif", "tiff")  # what check_header lets through
_PILLOW_LIMIT = threading.Lock()
_ORIENTATION = 0x0112
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Pillow mode -> the mode it is converted to (None: keep; missing: not supported).
_CONVERT = {"1": "L", "L": None, "P": "RGB", "PA": "RGBA", "LA": "RGBA", "La": "RGBA",
            "RGB": None, "RGBA": None, "RGBa": "RGBA", "RGBX": "RGB", "CMYK": "RGB",
            "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}


@dataclasses.dataclass(frozen=True, eq=False)
class ImageInfo:
  """How a file stored its pixels, so `encode.write_image` can write the same mode back.

  Attributes:
    path: the file that was read.
    mode: 'grey' (one channel), 'rgb', or 'rgba' (the colour is returned, the alpha is kept
      here). Grey + alpha and palette sources with transparency are 'rgba'.
    alpha: uint8 `[H, W]` in display orientation for 'rgba', else None.
    orientation: EXIF orientation 1..8 found in the file (1 = none), already applied.
    bit_depth: 8, or 16 for sources that were scaled down to 8 bits.
    format: Pillow's format name in lower case ('png', 'jpeg', 'bmp', 'webp', 'gif',
      'tiff', ...).
  """
  path: str
  mode: str = "rgb"
  alpha: np.ndarray | None = None
  orientation: int = 1
  bit_depth: int = 8
  format: str = "other"

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")


class ImageTooLarge(UserError):
  """The image has more pixels than the caller's limit (found from the header, before decoding)."""


class MaskSizeMismatch(UserError):
  """The mask's size is not the image's; `mask_wh` and `image_wh` are (width, height)."""

  def __init__(self, mask_path, mask_wh, image_wh):
    (w, h), (ew, eh) = mask_wh, image_wh
    super().__init__(f"{mask_path}: mask is {w}x{h} but image is {ew}x{eh} (width x height); "
                     "masks are not resized, save the mask at the image size")
    self.mask_wh, self.image_wh = tuple(mask_wh), tuple(image_wh)


def _check_size(path, width, height, max_pixels):
  if width * height > max_pixels:
    raise ImageTooLarge(f"{path}: image is {width}x{height} ({width * height / 1e6:.1f} "
                        f"megapixels), above the limit of {max_pixels / 1e6:g} megapixels "
                        "(--max_megapixels)")


def _is_animated_webp(data):
  """True for a WebP whose VP8X header sets the animation flag (as the SavedModel checks it)."""
  return (data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8X" and len(data) > 20
          and bool(data[20] & 0x02))


def jpeg_scan_count(data, stop_after=rules.MAX_JPEG_SCANS):
  """Number of SOS markers (0xFF 0xDA) anywhere in JPEG bytes, counted without decoding: the
  one scan rule of ``rules.py`` item 2, which ``bytes_decode.jpeg_scans`` counts in TF ops.
  Entropy-coded data cannot hold the pair, so this is at least the main image's scans (an EXIF
  thumbnail's count too). Stops once the count passes ``stop_after``."""
  count, pos = 0, data.find(b"\xff\xda")
  while pos >= 0 and count <= stop_after:
    count += 1
    pos = data.find(b"\xff\xda", pos + 2)
  return count


def read_bytes(path, what="image"):
  """The bytes of a local file, with `read_image`'s one-line errors (missing, a directory,
  unreadable, empty)."""
  path = os.fspath(path)
  try:
    st = os.stat(path)
  except FileNotFoundError:
    raise UserError(f"{path}: no such {what} file") from None
  except OSError as e:
    raise UserError(f"{path}: cannot access the {what} file ({e.strerror or e})") from None
  if stat.S_ISDIR(st.st_mode):
    raise UserError(f"{path}: is a directory, not a file")
  if not stat.S_ISREG(st.st_mode):
    raise UserError(f"{path}: is not a regular file")
  try:
    with open(path, "rb") as f:
      data = f.read()
  except PermissionError:
    raise UserError(f"{path}: permission denied reading the {what} file") from None
  except OSError as e:
    raise UserError(f"{path}: cannot read the {what} file ({e.strerror or e})") from None
  if not data:
    raise UserError(f"{path}: the {what} file is empty (0 bytes)")
  return data


class _Unidentified(UserError):
  """No Pillow plugin recognises the data."""


def _first_line(e):
  text = str(e).strip()
  return text.splitlines()[0] if text else type(e).__name__


def _open(path, data):
  """Pillow's lazy view of the file: format, size and EXIF are known, no pixel is decoded.

  The pixel limit that counts is the caller's (`max_pixels`, checked from this header), so
  Pillow's own process-wide one (`Image.MAX_IMAGE_PIXELS`: a warning above it, an error
  without the image size above twice it) is lifted while the header is read, under a lock.
  Pillow's parsers raise many exception types on hostile headers; all become one line.
  """
  if not _png_checksums_ok(data):
    raise UserError(f"{path}: {rules.PNG_CHECKSUM}")
  try:
    with _PILLOW_LIMIT:
      limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
      try:
        return Image.open(io.BytesIO(data))
      finally:
        Image.MAX_IMAGE_PIXELS = limit
  except UnidentifiedImageError:
    raise _Unidentified(f"{path}: not an image file Pillow can read (an unknown format, or a "
                        "damaged header)") from None
  except MemoryError:
    raise
  except Exception as e:  # noqa: BLE001 - any parser failure is a damaged file
    raise UserError(f"{path}: truncated or corrupt image header ({_first_line(e)})") from None


def _png_checksums_ok(data):
  """False for a PNG one of whose chunks before IEND, IDAT aside, has a wrong CRC (Pillow
  refuses those, before IDAT with a misleading message); the SavedModel applies the same rule
  (``model/inference/png_chunks.py``). IDAT chunks are checked when decoding (``_decode``), a
  chunk that does not fit is left to Pillow."""
  if not data.startswith(_PNG_MAGIC):
    return True
  pos = len(_PNG_MAGIC)
  while pos + 12 <= len(data):
    length = int.from_bytes(data[pos:pos + 4], "big")
    kind = data[pos + 4:pos + 8]
    end = pos + 8 + length
    if kind == b"IEND" or end + 4 > len(data):
      return True
    stored = int.from_bytes(data[end:end + 4], "big")
    if kind != b"IDAT" and zlib.crc32(data[pos + 4:end]) != stored:
      return False
    pos = end + 4
  return True


def _format(image):
  return (image.format or "other").lower().replace("mpo", "jpeg")  # MPO: a camera JPEG


def _check_work(path, image, data, max_pixels):
  """The checks made from the header before decoding: pixel cap, still WebP, JPEG scans."""
  _check_size(path, *image.size, max_pixels)
  if _is_animated_webp(data):
    raise UserError(f"{path}: {rules.ANIMATED_WEBP}")
  if _format(image) == "jpeg" and jpeg_scan_count(data) > rules.MAX_JPEG_SCANS:
    raise UserError(f"{path}: {rules.TOO_MANY_SCANS}")


def check_header(data, name, max_pixels=limits.DEFAULT_MAX_PIXELS):
  """Checks an encoded image from its header alone, before anything is decoded.

  For servers and pipelines that receive files as bytes. Raises `UserError` (message
  starting with `name`) for empty data, a damaged header, a format not in `SERVED_FORMATS`,
  an animated WebP or a JPEG with too many scans, and `ImageTooLarge` when width x height
  exceeds `max_pixels`. Returns (format, (width, height)) as stored (before EXIF orientation).
  """
  if not data:
    raise UserError(f"{name}: the file is empty (0 bytes)")
  max_pixels = int(max_pixels)
  unsupported = UserError(f"{name}: unsupported file (not a PNG, JPEG, BMP, WebP, GIF or TIFF "
                          "file)")
  try:
    image = _open(name, data)
  except _Unidentified:
    raise unsupported from None
  with image:
    if _format(image) not in SERVED_FORMATS:
      raise unsupported
    _check_work(name, image, data, max_pixels)
    return _format(image), image.size


def _is_deep_colour(image):
  """16-bit colour (PNG/TIFF): Pillow would keep only the high byte of each sample."""
  for tile in image.tile:
    rawmode = tile.args if isinstance(tile.args, str) else (tile.args or ("",))[0]
    if isinstance(rawmode, str) and ";16" in rawmode and not image.mode.startswith("I;16"):
      return True
  return False


# The EXIF orientation rule shared with model/inference/orientation.py (the SavedModel's
# reader, whose docstring states it): TIFF value sizes, the integer types, the headers read.
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
              16: 8}
_INTEGER_TYPES = frozenset({3, 4, 6, 8, 9, 13, 16})
_TIFF_ORDER = {b"MM\0*": "big", b"MM*\0": "big", b"MM\0+": "big", b"II*\0": "little",
               b"II\0*": "little"}
_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(="|>)([0-9])')  # Pillow's pattern
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}
_OWN_RULE = ("jpeg", "png", "webp")  # the formats both readers decode


def block_orientation(block):
  """Orientation 1..8 read from an EXIF block by the rule of ``model/inference/orientation.py``
  (its first IFD's first loaded 0x0112 entry), or None when the block has no such entry.

  Read here rather than through Pillow's EXIF parser, which changed between versions (Pillow
  12 kept the last of two entries, 13 keeps the first), so that test.py and the SavedModel
  agree on every Pillow version.
  """
  while block.startswith(b"Exif\0\0"):
    block = block[6:]
  order = _TIFF_ORDER.get(block[:4])
  if order is None or len(block) < 8:
    return None
  uint = lambda pos, width: int.from_bytes(block[pos:pos + width], order)  # noqa: E731
  ifd = uint(4, 4)
  if ifd + 2 > len(block):
    return None
  for i in range(uint(ifd, 2)):
    entry = ifd + 2 + 12 * i
    if entry + 12 > len(block):
      break
    tag, kind, count = uint(entry, 2), uint(entry + 2, 2), uint(entry + 4, 4)
    width = _TYPE_SIZE.get(kind, 0)
    size = count * width
    where = entry + 8 if size <= 4 else uint(entry + 8, 4)
    if size > 4 and where + size > len(block):
      break  # values outside the block end the IFD
    if size == 0 or tag != _ORIENTATION:
      continue
    value = uint(where, width) if kind in _INTEGER_TYPES else 0
    return value if 1 <= value <= 8 else 1
  return None


def _orientation(image):
  """EXIF orientation 1..8 (1 when absent or unreadable); may decode a PNG (EXIF after IDAT).

  JPEG, PNG and WebP: the EXIF block Pillow finds, read by :func:`block_orientation` (the
  SavedModel's rule); with no Orientation entry there, the XMP tiff:Orientation Pillow would
  use (which the SavedModel does not read). Other formats (TIFF): Pillow's value of tag 0x0112
  when it is an int 1..8.
  """
  try:
    if _format(image) in _OWN_RULE:
      if _format(image) == "png" and "exif" not in image.info:
        image.load()  # an eXIf chunk after IDAT is read with the pixels
      block = image.info.get("exif")
      value = block_orientation(block) if isinstance(block, bytes) else None
      if value is None:
        xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp") or b""
        found = _XMP_ORIENTATION.search(xmp.encode() if isinstance(xmp, str) else xmp)
        value = int(found[2]) if found else 1
    else:
      value = image.getexif().get(_ORIENTATION, 1)
  except MemoryError:
    raise
  except Exception:  # noqa: BLE001 - an unreadable EXIF block is no orientation
    value = 1
  return value if type(value) is int and 1 <= value <= 8 else 1


def _header_orientation(image):
  """`_orientation` when the header holds the EXIF block, else None (not known without decoding)."""
  if _format(image) == "png" and "exif" not in image.info:
    return None
  return _orientation(image)


def _load_pixels(path, image):
  """Runs Pillow's decoder; libtiff's error lines (written to stderr) refuse the file."""
  name = image.format or "image"
  if name != "TIFF":
    image.load()
    return
  with hidden_native_stderr() as captured:
    try:
      image.load()
    finally:
      printed = captured()
  errors = [line.strip() for line in printed.splitlines()
            if line.strip() and "warning" not in line.lower()]
  if errors:
    raise UserError(f"{path}: corrupt TIFF data (libtiff: {errors[0]})")


def _decode(path, image, data, orientation, deep):
  """(pixels, turned): uint8 or uint16 ``[H, W]`` or ``[H, W, 3|4]`` RGB[A], and whether
  they are already in display orientation."""
  name = image.format or "image"
  try:
    if name == "PNG":  # chunk checksums, which Pillow's decoder does not look at
      with Image.open(io.BytesIO(data)) as check:
        check.verify()
    _load_pixels(path, image)  # decodes; truncated or broken data raises here
  except (UserError, MemoryError):
    raise
  except Exception as e:  # noqa: BLE001 - any decoder failure is a damaged file
    raise UserError(f"{path}: truncated or corrupt {name} data ({_first_line(e)})") from None
  if deep:  # all 16 bits, from OpenCV (the data is known to be sound; libpng may still warn)
    with hidden_native_stderr():
      pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.ndim != 3:
      raise UserError(f"{path}: OpenCV cannot decode this 16-bit {name} file")
    pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB if pixels.shape[2] == 3
                          else cv2.COLOR_BGRA2RGBA)
    return pixels, name == "TIFF"  # OpenCV's TIFF reader turns TIFFs itself
  if orientation != 1:
    if _format(image) in _OWN_RULE:  # turned by this module's orientation, not Pillow's
      image = image.transpose(_TRANSPOSE[orientation])
    else:
      image = ImageOps.exif_transpose(image)  # knows when the decoder turned the pixels already
  if image.mode.startswith("I;16"):
    return np.asarray(image), True
  if image.mode not in _CONVERT:
    raise UserError(f"{path}: {image.mode} samples are not supported (8- or 16-bit images only)")
  target = _CONVERT[image.mode]
  if image.mode == "P" and "transparency" in image.info:
    target = "RGBA"
  return np.asarray(image.convert(target) if target else image), True


def _turn(pixels, orientation):
  """uint8 pixels in display orientation, turned as `ImageOps.exif_transpose` turns them."""
  view = Image.fromarray(pixels)
  view.getexif()[_ORIENTATION] = orientation
  return np.asarray(ImageOps.exif_transpose(view))


class _Source:
  """One file opened lazily and checked from its header (`_check_work`); decodes on demand."""

  def __init__(self, path, what, max_pixels, data=None):
    self.path = os.fspath(path)
    self.max_pixels = limits.DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    if data is None:
      data = read_bytes(self.path, what)
    elif not data:
      raise UserError(f"{self.path}: the {what} file is empty (0 bytes)")
    self.data = data
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # Pillow warns about odd EXIF blocks on stderr
      self.image = _open(self.path, data)
      try:
        _check_work(self.path, self.image, data, self.max_pixels)
        self.deep = _is_deep_colour(self.image)  # before anything loads the image (getexif may)
        self.header_orientation = _header_orientation(self.image)
      except BaseException:
        self.image.close()
        raise

  def display_size(self):
    """(width, height) after the orientation known from the header (None: assumed 1)."""
    w, h = self.image.size
    return (h, w) if (self.header_orientation or 1) >= 5 else (w, h)

  def decode(self):
    """Decoded uint8 pixels in display orientation ([H, W] grey, or RGB / RGBA last axis) + info."""
    path, image = self.path, self.image
    with warnings.catch_warnings(), image:
      warnings.simplefilter("ignore")
      orientation = (self.header_orientation if self.header_orientation is not None
                     else _orientation(image))
      fmt = _format(image)
      pixels, turned = _decode(path, image, self.data, orientation, self.deep)
    _check_size(path, pixels.shape[1], pixels.shape[0], self.max_pixels)  # whatever the header said
    bit_depth = 16 if pixels.dtype == np.uint16 else 8
    if bit_depth == 16:
      pixels = ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if not turned and orientation != 1:
      pixels = _turn(pixels, orientation)
    mode = "grey" if pixels.ndim == 2 else ("rgb" if pixels.shape[2] == 3 else "rgba")
    info = ImageInfo(path=path, mode=mode, orientation=orientation, bit_depth=bit_depth,
                     format=fmt)
    return np.ascontiguousarray(pixels), info

  def close(self):
    self.image.close()


def _rgb_of(pixels, info):
  if info.mode == "grey":
    return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB), info
  if info.mode == "rgba":
    alpha = np.ascontiguousarray(pixels[:, :, 3])
    return np.ascontiguousarray(pixels[:, :, :3]), dataclasses.replace(info, alpha=alpha)
  return pixels, info


def _hole_of(pixels, info, expected_hw):
  if pixels.ndim == 2:
    hole = pixels > rules.MASK_THRESHOLD
  else:
    value = pixels[:, :, :3].max(axis=2)
    if info.mode == "rgba":
      alpha = pixels[:, :, 3]
      value = (value.astype(np.uint16) * alpha + 127) // 255
      hole = value > rules.MASK_THRESHOLD
      if not hole.any() and (alpha < 128).any():
        raise UserError(f"{info.path}: mask has transparent areas but no white pixels; holes must "
                        "be painted white (> 127) on black, transparency does not mark holes")
    else:
      hole = value > rules.MASK_THRESHOLD
  if expected_hw is not None and tuple(hole.shape) != tuple(int(v) for v in expected_hw):
    (h, w), (eh, ew) = hole.shape, expected_hw
    raise MaskSizeMismatch(info.path, (w, h), (ew, eh))
  return hole


def read_image(path, max_pixels=limits.DEFAULT_MAX_PIXELS, data=None):
  """Reads an image file for inpainting.

  Args:
    path: an image file Pillow opens (PNG, JPEG, BMP, WebP, TIFF, GIF, ...), 8- or 16-bit.
    max_pixels: width * height limit, checked from the header before decoding (`ImageTooLarge`).
      None = default.
    data: the file's bytes, if already read (e.g. from a remote filesystem); `path` then
      only names the file in messages.

  Returns:
    (rgb, info): uint8 `[H, W, 3]` RGB in display orientation (grey is replicated to three
    channels, alpha is split off into `info.alpha`), and an `ImageInfo`.
  """
  return _rgb_of(*_Source(path, "image", max_pixels, data).decode())


def read_mask(path, expected_hw=None, max_pixels=limits.DEFAULT_MAX_PIXELS, data=None):
  """Reads a mask file: white = hole.

  A pixel is a hole when its brightest colour channel is > 127, so grey, coloured and
  JPEG-compressed masks all work. With an alpha channel the colour is composited over black
  first, so white strokes on a transparent layer are holes and transparent pixels never are.
  A mask whose only content is transparency (holes painted into the alpha channel) is
  rejected with an explanation rather than read as "no hole". EXIF orientation is applied
  as for images. The mask is never resized.

  Args:
    path: mask file.
    expected_hw: (height, width) of the image, or None to accept any size
      (`MaskSizeMismatch` otherwise).
    max_pixels, data: as in `read_image`.

  Returns:
    bool `[H, W]`, True = hole.
  """
  return _hole_of(*_Source(path, "mask", max_pixels, data).decode(), expected_hw)


def read_pair(image_path, mask_path, max_pixels=limits.DEFAULT_MAX_PIXELS, image_data=None,
              mask_data=None):
  """`read_image` and `read_mask` of one pair, with the sizes compared before decoding.

  Both headers are checked first (`check_header`'s limits); a mask whose stored size is
  neither the image's nor its transpose (EXIF orientation may turn either) is refused
  with `MaskSizeMismatch` before a pixel is decoded. The exact check (display orientation)
  follows decoding. Used by test.py, the web app and the batch pipeline.

  Returns:
    (rgb, info, hole) as `read_image` and `read_mask` return them.
  """
  image = _Source(image_path, "image", max_pixels, image_data)
  try:
    mask = _Source(mask_path, "mask", max_pixels, mask_data)
    try:
      (w, h), (mw, mh) = image.image.size, mask.image.size
      if (mw, mh) not in ((w, h), (h, w)):
        raise MaskSizeMismatch(mask.path, mask.display_size(), image.display_size())
      rgb, info = _rgb_of(*image.decode())
      hole = _hole_of(*mask.decode(), rgb.shape[:2])
    finally:
      mask.close()
  finally:
    image.close()
  return rgb, info, hole
