"""File names and paths: which files are images, listing folders, pairing images with masks,
and checking output paths before any work is done (no decoding here).

The one listing rule (used by test.py, evaluate.py, training and the batch pipeline): a file is
an image when its name is not hidden (does not start with '.') and ends in one of
`IMAGE_EXTENSIONS`, in any case (`is_image_name`). Listings are sorted by path. A folder is
read one level deep (`list_images`); training searches its folder recursively with the same
rule and does not enter hidden folders (`list_images(..., recursive=True)`).
"""
import contextlib
import os

from model.errors import UserError

# Extensions that listings pick up; each one can also be written (`model.fileio.encode`).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
NO_ALPHA_EXTENSIONS = (".jpg", ".jpeg")


def is_image_name(name):
  """True for a file name listings pick: not hidden, ending in one of `IMAGE_EXTENSIONS`."""
  return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _listdir(directory):
  try:
    return os.listdir(directory)
  except FileNotFoundError:
    raise UserError(f"{directory}: no such directory") from None
  except NotADirectoryError:
    raise UserError(f"{directory}: is not a directory") from None
  except OSError as e:
    raise UserError(f"{directory}: cannot list the directory ({e.strerror or e})") from None


def list_images(directory, recursive=False):
  """Image files (`is_image_name`) in `directory`, sorted by path.

  Not recursive by default; `recursive=True` also lists sub-folders, except hidden ones.
  """
  directory = os.fspath(directory)
  names = _listdir(directory)
  if not recursive:
    paths = (os.path.join(directory, n) for n in sorted(names) if is_image_name(n))
    return [p for p in paths if os.path.isfile(p)]
  found = []
  for root, dirs, files in os.walk(directory):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    found.extend(os.path.join(root, n) for n in files if is_image_name(n))
  return sorted(p for p in found if os.path.isfile(p))


def check_output_path(path, info=None):
  """Rejects an output path that `write_image` could not write, before any work is done.

  Checks the extension (one of `IMAGE_EXTENSIONS`), that the parent directory exists and is
  writable, that the path is not a directory and, given the source `info` (an `ImageInfo`),
  that a JPEG output would not lose real transparency. Returns the lower-case extension.
  """
  path = os.fspath(path)
  ext = check_extension(path)
  if os.path.isdir(path):
    raise UserError(f"{path}: is a directory, expected an output file name")
  parent = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(parent):
    raise UserError(f"{path}: output directory {parent} does not exist")
  if not os.access(parent, os.W_OK | os.X_OK):
    raise UserError(f"{path}: output directory {parent} is not writable")
  if (ext in NO_ALPHA_EXTENSIONS and info is not None and info.mode == "rgba"
      and info.alpha is not None and (info.alpha < 255).any()):
    raise UserError(f"{path}: JPEG cannot keep the transparency of {info.path}; "
                    "write .png, .webp or .tiff instead")
  return ext


def check_extension(path, hint=True):
  """The lower-case extension of `path` if it is one of `IMAGE_EXTENSIONS`, else UserError."""
  ext = os.path.splitext(path)[1].lower()
  if ext not in IMAGE_EXTENSIONS:
    raise UserError(f"{path}: unsupported output extension {ext or '(none)'}"
                    + (f"; use one of {', '.join(IMAGE_EXTENSIONS)}" if hint else ""))
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
