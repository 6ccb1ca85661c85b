"""Image and mask files: careful reading (EXIF orientation, grey/RGBA, 16-bit) and atomic writing.

NumPy, Pillow and OpenCV (no TensorFlow), so CLIs can check their inputs before loading a
model. Every problem a user can cause raises `UserError` with a one-line message that starts
with the file path: a missing, unreadable, empty, non-image, truncated or oversized file, a
mask of the wrong size, or a bad output path.

Conventions:
* Files are read as bytes and opened with Pillow: the header (format, size, EXIF) is read
  lazily, so the pixel limit is checked before anything is decoded, and Pillow's decoders
  report truncated or broken data as exceptions. JPEG data that is damaged but complete
  decodes the way viewers show it.
* Pixels are uint8 RGB `[H, W, 3]` in display orientation: the EXIF Orientation tag (JPEG,
  PNG, WebP, TIFF; XMP when there is no EXIF tag) is applied as `PIL.ImageOps.exif_transpose`
  applies it. Files we write have no tag.
* 16-bit sources are scaled to 8 bits as round(v / 257) (16-bit colour is decoded with
  OpenCV, which keeps all 16 bits; Pillow keeps only the high byte). Outputs are always
  8-bit. Other sample types (float, 32-bit) are rejected.
* Masks are bool `[H, W]`, True = hole: a pixel is a hole when its brightest colour
  channel is > 127 (white = hole). See `read_mask` for alpha channels.
"""
import contextlib
import dataclasses
import io
import os
import stat
import sys
import tempfile
import threading
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model.errors import UserError
from model.fileio.atomic import atomic_write

DEFAULT_MAX_PIXELS = 100_000_000
MODES = ("grey", "rgb", "rgba")
# Extensions that `list_images` (and training) pick up; each one can also be written.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
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
_NO_ALPHA = (".jpg", ".jpeg")
SERVED_FORMATS = ("png", "jpeg", "bmp", "webp", "gif", "tiff")  # what check_header lets through
_PILLOW_LIMIT = threading.Lock()
_FD2 = threading.Lock()
_ORIENTATION = 0x0112
# Pillow mode -> the mode it is converted to (None: keep; missing: not supported).
_CONVERT = {"1": "L", "L": None, "P": "RGB", "PA": "RGBA", "LA": "RGBA", "La": "RGBA",
            "RGB": None, "RGBA": None, "RGBa": "RGBA", "RGBX": "RGB", "CMYK": "RGB",
            "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}


@dataclasses.dataclass(frozen=True, eq=False)
class ImageInfo:
  """How a file stored its pixels, so `write_image` can write the same mode back.

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


@contextlib.contextmanager
def hidden_native_stderr():
  """Points file descriptor 2 at a temporary file; yields a function returning what it got.

  For native code that prints to stderr on its own (libpng warnings from OpenCV, TensorFlow's
  start-up lines). Python's `sys.stderr` writes to the same descriptor, so whatever another
  thread prints meanwhile lands in the file too.
  """
  with _FD2:
    with contextlib.suppress(AttributeError, ValueError, OSError):
      sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
      os.dup2(sink.fileno(), 2)
      try:
        yield lambda: (sink.seek(0), sink.read().decode("utf-8", "replace"))[1]
      finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_size(path, width, height, max_pixels):
  if width * height > max_pixels:
    raise ImageTooLarge(f"{path}: image is {width}x{height} ({width * height / 1e6:.1f} "
                        f"megapixels), above the limit of {max_pixels / 1e6:g} megapixels "
                        "(--max_megapixels)")


ANIMATED_WEBP = ("animated WebP is not supported (nor by the SavedModel, whose decoder cannot "
                 "read animations safely); save the frame you want as PNG")


def _is_animated_webp(data):
  """True for a WebP whose VP8X header sets the animation flag (as the SavedModel checks it)."""
  return (data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8X" and len(data) > 20
          and bool(data[20] & 0x02))


def read_bytes(path, what="image"):
  """The bytes of a local file, with `read_image`'s one-line errors (missing, a directory,
  unreadable, empty)."""
  return _read_bytes(os.fspath(path), what)


def _read_bytes(path, what):
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


def _open(path, data):
  """Pillow's lazy view of the file: format, size and EXIF are known, no pixel is decoded.

  The pixel limit that counts is the caller's (`max_pixels`, checked from this header), so
  Pillow's own process-wide one (`Image.MAX_IMAGE_PIXELS`: a warning above it, an error
  without the image size above twice it) is lifted while the header is read, under a lock.
  """
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
  except (OSError, SyntaxError, ValueError, EOFError) as e:
    raise UserError(f"{path}: truncated or corrupt image header ({e})") from None


def _format(image):
  return (image.format or "other").lower().replace("mpo", "jpeg")  # MPO: a camera JPEG


def check_header(data, name, max_pixels=DEFAULT_MAX_PIXELS):
  """Checks an encoded image from its header alone, before anything is decoded.

  For servers and pipelines that receive files as bytes. Raises `UserError` (message
  starting with `name`) for empty data, a damaged header, a format not in `SERVED_FORMATS`
  or an animated WebP, and `ImageTooLarge` when width x height exceeds `max_pixels`.
  Returns (format, (width, height)) as stored (before EXIF orientation).
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
    if _is_animated_webp(data):
      raise UserError(f"{name}: {ANIMATED_WEBP}")
    _check_size(name, *image.size, max_pixels)
    return _format(image), image.size


def _is_deep_colour(image):
  """16-bit colour (PNG/TIFF): Pillow would keep only the high byte of each sample."""
  for tile in image.tile:
    rawmode = tile.args if isinstance(tile.args, str) else (tile.args or ("",))[0]
    if isinstance(rawmode, str) and ";16" in rawmode and not image.mode.startswith("I;16"):
      return True
  return False


def _decode(path, image, data, orientation, deep):
  """(pixels, turned): uint8 or uint16 ``[H, W]`` or ``[H, W, 3|4]`` RGB[A], and whether
  they are already in display orientation."""
  name = image.format or "image"
  try:
    if name == "PNG":  # chunk checksums, which Pillow's decoder does not look at
      with Image.open(io.BytesIO(data)) as check:
        check.verify()
    image.load()  # decodes; truncated or broken data raises here
  except (OSError, SyntaxError, ValueError, EOFError) as e:
    raise UserError(f"{path}: truncated or corrupt {name} data ({e})") from None
  if deep:  # all 16 bits, from OpenCV (the data is known to be sound; libpng may still warn)
    with hidden_native_stderr():
      pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.ndim != 3:
      raise UserError(f"{path}: OpenCV cannot decode this 16-bit {name} file")
    pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB if pixels.shape[2] == 3
                          else cv2.COLOR_BGRA2RGBA)
    return pixels, name == "TIFF"  # OpenCV's TIFF reader turns TIFFs itself
  if orientation != 1:
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


def _load(path, what, max_pixels, data=None):
  """Decoded uint8 pixels in display orientation ([H, W] grey, or RGB / RGBA last axis) + info.

  `data`: the file's bytes when the caller has read them already (`path` then only names
  the file in messages and in the info)."""
  path = os.fspath(path)
  max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
  if data is None:
    data = _read_bytes(path, what)
  elif not data:
    raise UserError(f"{path}: the {what} file is empty (0 bytes)")
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Pillow warns about odd EXIF blocks on stderr
    with _open(path, data) as image:
      _check_size(path, *image.size, max_pixels)
      if _is_animated_webp(data):
        raise UserError(f"{path}: {ANIMATED_WEBP}")
      deep = _is_deep_colour(image)  # before anything loads the image (getexif may)
      try:
        orientation = int(image.getexif().get(_ORIENTATION, 1))
      except (OSError, SyntaxError, ValueError, TypeError, KeyError):  # unreadable EXIF
        orientation = 1
      orientation = orientation if 1 <= orientation <= 8 else 1
      fmt = _format(image)
      pixels, turned = _decode(path, image, data, orientation, deep)
  bit_depth = 16 if pixels.dtype == np.uint16 else 8
  if bit_depth == 16:
    pixels = ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
  if not turned and orientation != 1:
    pixels = _turn(pixels, orientation)
  mode = "grey" if pixels.ndim == 2 else ("rgb" if pixels.shape[2] == 3 else "rgba")
  info = ImageInfo(path=path, mode=mode, orientation=orientation, bit_depth=bit_depth, format=fmt)
  return np.ascontiguousarray(pixels), info


def read_image(path, max_pixels=DEFAULT_MAX_PIXELS, data=None):
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
  pixels, info = _load(path, "image", max_pixels, data)
  if info.mode == "grey":
    return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB), info
  if info.mode == "rgba":
    alpha = np.ascontiguousarray(pixels[:, :, 3])
    return np.ascontiguousarray(pixels[:, :, :3]), dataclasses.replace(info, alpha=alpha)
  return pixels, info


def read_mask(path, expected_hw=None, max_pixels=DEFAULT_MAX_PIXELS, data=None):
  """Reads a mask file: white = hole.

  A pixel is a hole when its brightest colour channel is > 127, so grey, coloured and
  JPEG-compressed masks all work. With an alpha channel the colour is composited over black
  first, so white strokes on a transparent layer are holes and transparent pixels never are.
  A mask whose only content is transparency (holes painted into the alpha channel) is
  rejected with an explanation rather than read as "no hole". EXIF orientation is applied
  as for images. The mask is never resized.

  Args:
    path: mask file.
    expected_hw: (height, width) of the image, or None to accept any size.
    max_pixels, data: as in `read_image`.

  Returns:
    bool `[H, W]`, True = hole.
  """
  pixels, info = _load(path, "mask", max_pixels, data)
  if pixels.ndim == 2:
    hole = pixels > 127
  else:
    value = pixels[:, :, :3].max(axis=2)
    if info.mode == "rgba":
      alpha = pixels[:, :, 3]
      value = (value.astype(np.uint16) * alpha + 127) // 255
      hole = value > 127
      if not hole.any() and (alpha < 128).any():
        raise UserError(f"{info.path}: mask has transparent areas but no white pixels; holes must "
                        "be painted white (> 127) on black, transparency does not mark holes")
    else:
      hole = value > 127
  if expected_hw is not None and tuple(hole.shape) != tuple(int(v) for v in expected_hw):
    (h, w), (eh, ew) = hole.shape, expected_hw
    raise UserError(f"{info.path}: mask is {w}x{h} but image is {ew}x{eh} (width x height); "
                    "masks are not resized, save the mask at the image size")
  return hole


def check_output_path(path, info=None):
  """Rejects an output path that `write_image` could not write, before any work is done.

  Checks the extension (one of `IMAGE_EXTENSIONS`), that the parent directory exists and is
  writable, that the path is not a directory and, given the source `info`, that a JPEG
  output would not lose real transparency. Returns the lower-case extension.
  """
  path = os.fspath(path)
  ext = os.path.splitext(path)[1].lower()
  if ext not in _ENCODE_PARAMS:
    raise UserError(f"{path}: unsupported output extension {ext or '(none)'}; "
                    f"use one of {', '.join(IMAGE_EXTENSIONS)}")
  if os.path.isdir(path):
    raise UserError(f"{path}: is a directory, expected an output file name")
  parent = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(parent):
    raise UserError(f"{path}: output directory {parent} does not exist")
  if not os.access(parent, os.W_OK | os.X_OK):
    raise UserError(f"{path}: output directory {parent} is not writable")
  if (ext in _NO_ALPHA and info is not None and info.mode == "rgba"
      and info.alpha is not None and (info.alpha < 255).any()):
    raise UserError(f"{path}: JPEG cannot keep the transparency of {info.path}; "
                    "write .png, .webp or .tiff instead")
  return ext


def _file_keys(path):
  """Keys shared by every spelling of one file: its resolved path and, if it exists, its inode."""
  keys = {os.path.realpath(path)}
  with contextlib.suppress(OSError, ValueError):
    st = os.stat(path)
    keys.add((st.st_dev, st.st_ino))
  return keys


def same_file(a, b):
  """True when two paths name the same file (see `check_spares_inputs`)."""
  return bool(_file_keys(os.fspath(a)) & _file_keys(os.fspath(b)))


def check_spares_inputs(outputs, inputs, hint):
  """Rejects an output path that names an input file of the same run (UserError).

  Any spelling counts: relative or absolute, through symbolic links (also of a parent
  folder), or a hard link of the input. `hint` ends the message (what to do instead).
  """
  owner = {}
  for path in inputs:
    for key in _file_keys(os.fspath(path)):
      owner.setdefault(key, os.fspath(path))
  for out in outputs:
    for key in _file_keys(os.fspath(out)):
      if key in owner:
        raise UserError(f"{os.fspath(out)}: would replace {owner[key]}, an input of this run; "
                        f"{hint}")


def write_image(path, rgb, info=None):
  """Writes uint8 RGB `[H, W, 3]` atomically, in the mode of the source described by `info`.

  The bytes are those of `encode_image`; see there for modes and formats. They go to a
  temporary file in the same directory that replaces `path` at the end, so a failure never
  leaves a partial file.
  """
  atomic_write(path, encode_image(path, rgb, info))


def encode_image(path, rgb, info=None, check_path=True):
  """The file bytes `write_image` writes for uint8 RGB `[H, W, 3]` (format from `path`'s extension).

  'grey' sources are written as one channel (luma), 'rgba' sources get `info.alpha` back
  (cropped top-left if the result is smaller, as after a crop to a multiple of 8; dropped
  for JPEG when fully opaque). info=None writes RGB. The format follows the extension: PNG,
  JPEG (quality 95, 4:4:4 chroma), BMP, WebP (quality 95) or TIFF. `check_path=False` skips
  the local-folder checks of `check_output_path` (for paths on other filesystems).
  """
  path = os.fspath(path)
  if check_path:
    ext = check_output_path(path, info)
  else:
    ext = os.path.splitext(path)[1].lower()
    if ext not in _ENCODE_PARAMS:
      raise UserError(f"{path}: unsupported output extension {ext or '(none)'}")
  rgb = np.asarray(rgb)
  if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
    raise ValueError(f"write_image expects uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
  mode = "rgb" if info is None else info.mode
  if mode == "grey":
    pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
  elif mode == "rgba" and info.alpha is not None and ext not in _NO_ALPHA:
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


def is_image_name(name):
  """True for a file name `list_images` picks: not hidden, ending in one of `IMAGE_EXTENSIONS`."""
  return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_images(directory):
  """Image files directly in `directory` (not recursive), sorted by name.

  Picks names ending in one of `IMAGE_EXTENSIONS` (any case) and skips hidden files.
  """
  directory = os.fspath(directory)
  try:
    names = os.listdir(directory)
  except FileNotFoundError:
    raise UserError(f"{directory}: no such directory") from None
  except NotADirectoryError:
    raise UserError(f"{directory}: is not a directory") from None
  except OSError as e:
    raise UserError(f"{directory}: cannot list the directory ({e.strerror or e})") from None
  paths = (os.path.join(directory, n) for n in sorted(names) if is_image_name(n))
  return [p for p in paths if os.path.isfile(p)]


def pair_paths(images, masks, same_folder=False, identity=os.path.realpath):
  """Pairs image paths with mask paths by file stem (the rule of `pair_by_stem`).

  Shared by `test.py`'s folder mode and the batch pipeline, which lists files through
  Beam's filesystems. A single mask path (a str) serves every image except itself. From a
  list of masks, the mask of `a.jpg` is `a.<ext>` or `a_mask.<ext>`; with `same_folder`
  (the masks are the images' own folder) only `a_mask.<ext>` counts. Files used as masks
  are not images. `identity(path)` says when two spellings name the same file.

  Returns:
    (pairs, unpaired, ambiguous): (image, mask) pairs and images without a mask, in the
    order of `images` without the files used as masks; and (image, [masks]) for every
    image that several masks match (those images are in neither of the other lists).
  """
  if isinstance(masks, (str, os.PathLike)):
    mask = os.fspath(masks)
    return [(image, mask) for image in images if identity(image) != identity(mask)], [], []
  by_stem = {}
  for mask in masks:
    by_stem.setdefault(_stem(mask), []).append(mask)
  pairs, unpaired, ambiguous = [], [], []
  for image in images:
    stem = _stem(image)
    found = ([] if same_folder else by_stem.get(stem, [])) + by_stem.get(stem + "_mask", [])
    if len(found) > 1:
      ambiguous.append((image, found))
    elif found:
      pairs.append((image, found[0]))
    else:
      unpaired.append(image)
  used = {identity(mask) for _, mask in pairs}
  return ([(i, m) for i, m in pairs if identity(i) not in used],
          [i for i in unpaired if identity(i) not in used], ambiguous)


def several_masks_message(image, masks):
  """The one-line error for an image that several masks match."""
  return f"{image}: several masks match ({', '.join(masks)}); keep one"


def pair_by_stem(image_dir, mask_dir_or_file):
  """Pairs every image in `image_dir` with its mask (see `pair_paths`).

  `mask_dir_or_file` is one mask file for every image or a folder of masks; when it is
  the image folder only `<stem>_mask.<ext>` files are masks. More than one match is a
  `UserError`.

  Returns:
    (pairs, unpaired): sorted lists of (image_path, mask_path) and of image paths without mask.
  """
  images = list_images(image_dir)
  masks = os.fspath(mask_dir_or_file)
  if os.path.isfile(masks):
    pairs, unpaired, _ = pair_paths(images, masks)
    return pairs, unpaired
  if not os.path.isdir(masks):
    raise UserError(f"{masks}: no such mask file or directory")
  pairs, unpaired, ambiguous = pair_paths(images, list_images(masks),
                                          same_folder=os.path.samefile(image_dir, masks))
  if ambiguous:
    raise UserError(several_masks_message(*ambiguous[0]))
  return pairs, unpaired


def _stem(path):
  return os.path.splitext(os.path.basename(path))[0]
