"""The batch inpainting pipeline: list and pair the files, read, RunInference, write, report.

Work is split one element per photo. The file match runs as one step (a glob is listed
by one worker, as Beam's own ``MatchFiles`` does); it orders the photos largest file first
and keys each by its rank, and a ``GroupByKey`` on those keys breaks fusion so the list is
spread over all workers before the expensive steps (the DirectRunner deals the keys out in
that order, round robin, so its worker processes get equal shares of the work and finish on
small photos). Images and masks are paired by ``fileio.paths.pair_paths``, the rule of
``test.py``'s folder mode, and read and written with ``fileio`` as ``test.py`` does, so
each output PNG has ``test.py``'s bytes.

Every input ends as one record (``results-*.jsonl``): ``ok``, ``skipped`` (output exists
and ``skip_existing``) or ``failed``. A bad file, a missing or ambiguous mask, an oversized
photo, a failed inference or write is a ``failed`` record, never a failed pipeline.
Outputs are written atomically (local: temporary file + rename; object stores publish an
object only when its upload completes), so a re-run with ``skip_existing`` after a crash
redoes nothing that was finished and finds no half-written file.
"""
import collections
import json
import os
import re

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference import base

from model.fileio import decode
from model.fileio import encode
from model.fileio import paths as paths_lib
from model.fileio.atomic import atomic_write
from model.batch import handler as handler_lib
from model.errors import UserError

GLOB_CHARS = "*?["
OUTPUT_EXTENSION = ".png"
STATUSES = ("ok", "skipped", "failed")
NAMESPACE = "deepfill"
RECORD_FIELDS = ("image", "mask", "output", "status", "error", "inference_ms", "width",
                 "height", "hole_fraction")


class Task(collections.namedtuple("Task", "image mask output error")):
  """One input photo: its image and mask paths, its output path, and a listing error or None."""


# ---------------------------------------------------------------------------------------------
# Listing and pairing (plain functions; run inside the pipeline's first step)


def is_local(path):
  return FileSystems.get_scheme(path) is None


def identity(path):
  """A key that is equal for two spellings of the same file (local: the resolved path)."""
  return os.path.realpath(path) if is_local(path) else path


def has_glob(path):
  return any(c in path for c in GLOB_CHARS)


def exists(path):
  """Whether ``path`` names an existing file or folder (an object elsewhere)."""
  if is_local(path):
    return os.path.exists(path)
  try:
    return FileSystems.exists(path)
  except Exception:  # noqa: BLE001 - e.g. a scheme without its client library
    return False


def is_pattern(arg):
  """Whether ``arg`` is a glob: it has ``*?[`` and names no existing file or folder (an
  existing path is taken literally, brackets and all)."""
  return has_glob(arg) and not exists(arg)


def glob_regex(pattern):
  """The regular expression of a glob in Beam's syntax (``FileSystem.translate_pattern``:
  ``**`` any characters, ``?`` one, ``[...]`` a class), except that ``*`` stops only at
  ``/``: Beam's also stops at a backslash, an ordinary character in POSIX and object-store
  names, so it would silently drop such files."""
  out, i, n = [], 0, len(pattern)
  while i < n:
    c = pattern[i]
    i += 1
    if c == "*":
      if i < n and pattern[i] == "*":
        out.append(".*")
        i += 1
      else:
        out.append("[^/]*")
    elif c == "?":
      out.append(".")
    elif c == "[":
      j = i + (i < n and pattern[i] == "!")
      j += j < n and pattern[j] == "]"
      while j < n and pattern[j] != "]":
        j += 1
      if j >= n:
        out.append(re.escape(c))
        continue
      body = pattern[i:j].replace("\\", "\\\\").replace("[", "\\[")
      i = j + 1
      if body.startswith("!"):
        body = "^" + body[1:]
      elif body.startswith("^"):
        body = "\\" + body
      out.append(f"[{body}]")
    else:
      out.append(re.escape(c))
  return "(?ms)" + "".join(out) + r"\Z"


def _listing_error(what, e):
  text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
  return UserError(f"{what}: cannot list the files ({text})")


def _files_below(prefix):
  """(path, size) of every file whose path starts with the literal ``prefix``, at any depth
  (local: the folder holding ``prefix`` is walked, as Beam's local match does)."""
  if is_local(prefix):
    root = prefix if prefix.endswith(os.sep) else os.path.dirname(prefix)
    found = []
    try:
      for folder, _, names in os.walk(root or os.curdir):
        for name in names:
          path = os.path.join(folder, name) if root else os.path.relpath(
              os.path.join(folder, name))
          if path.startswith(prefix):
            try:
              found.append((path, os.path.getsize(path)))
            except OSError:  # gone meanwhile
              pass
    except OSError as e:
      raise _listing_error(prefix, e) from None
    return found
  if has_glob(prefix):
    raise UserError(f"{prefix}: a name with one of {GLOB_CHARS} cannot be listed literally "
                    "on this filesystem; rename it")
  try:
    found = FileSystems.match([prefix + "**"])[0].metadata_list
  except Exception as e:  # noqa: BLE001 - Beam wraps filesystem errors in its own types
    raise _listing_error(prefix, e) from None
  return [(m.path, m.size_in_bytes) for m in found]


def match_glob(pattern, sizes=None):
  """Paths matching the glob ``pattern`` (`glob_regex`); their sizes in bytes go into the dict
  ``sizes`` if given."""
  prefix = re.match(r"[^*?\[]*", pattern).group(0)
  regex = re.compile(glob_regex(pattern))
  found = [(p, size) for p, size in _files_below(prefix) if regex.match(p)]
  if sizes is not None:
    sizes.update(found)
  return [p for p, _ in found]


def _folder_files(folder, sizes=None):
  """Paths of the files directly in ``folder`` (taken literally); sizes into ``sizes``."""
  if is_local(folder):
    try:
      found = [(e.path, e.stat().st_size) for e in os.scandir(folder) if e.is_file()]
    except OSError as e:
      raise _listing_error(folder, e) from None
  else:
    prefix = folder.rstrip("/") + "/"
    found = [(p, size) for p, size in _files_below(prefix) if "/" not in p[len(prefix):]]
  if sizes is not None:
    sizes.update(found)
  return [p for p, _ in found]


def is_folder(path):
  """Local: a directory. Elsewhere: a path ending in '/' or that is no object itself."""
  if is_local(path):
    return os.path.isdir(path)
  return path.endswith("/") or not exists(path)


def _join(folder, name):
  return FileSystems.join(folder.rstrip("/") if not is_local(folder) else folder, name)


def glob_base(pattern):
  """The folder part of ``pattern`` before its first component with a wildcard."""
  head = pattern
  while has_glob(head):
    head = head.rsplit("/", 1)[0] if "/" in head else ""
  return head or "."


def pattern_reaches(arg, base, output_dir):
  """Whether ``arg`` (a glob, or the folder ``base``) would match files written into ``output_dir``."""
  if is_pattern(arg):
    pattern = arg
    if is_local(pattern):
      pattern, output_dir = os.path.abspath(pattern), os.path.abspath(output_dir)
    probe = _join(output_dir, "x" + OUTPUT_EXTENSION)
    return re.match(glob_regex(pattern), probe) is not None
  return identity(base.rstrip("/") or "/") == identity(output_dir.rstrip("/") or "/")


def expand(arg, what, sizes=None):
  """Resolves a glob, a folder or one file to (paths, base folder, is_one_file). An existing
  path is never a glob (`is_pattern`).

  Folders and globs keep only image names (``paths_lib.is_image_name``), sorted, as
  ``test.py`` lists a folder; their file sizes go into the dict ``sizes`` if given.
  Raises ``UserError`` when ``arg`` names nothing.
  """
  if is_pattern(arg):
    paths = match_glob(arg, sizes)
    base = glob_base(arg)
  elif is_folder(arg):
    paths = _folder_files(arg, sizes)
    base = arg
  else:
    if not (os.path.isfile(arg) if is_local(arg) else FileSystems.exists(arg)):
      raise UserError(f"{arg}: no such {what} file or folder")
    return [arg], os.path.dirname(arg) or ".", True
  paths = sorted(p for p in paths if paths_lib.is_image_name(os.path.basename(p.rstrip("/"))))
  if is_local(arg):
    paths = [p for p in paths if os.path.isfile(p)]
  return paths, base, False


def output_path(image, image_base, output_dir):
  """``output_dir`` + the image's path below ``image_base``, with the extension ``.png``."""
  if is_local(image) and is_local(image_base):
    rel = os.path.relpath(image, image_base)
  else:
    rel = image[len(image_base):].lstrip("/") if image.startswith(image_base) else (
        os.path.basename(image))
  if rel.startswith(".."):
    rel = os.path.basename(image)
  parts = rel.replace(os.sep, "/").split("/")
  parts[-1] = os.path.splitext(parts[-1])[0] + OUTPUT_EXTENSION
  return FileSystems.join(output_dir, *parts)


def list_tasks(images_arg, masks_arg, output_dir, sizes=None):
  """Every input photo as a ``Task``, paired as ``test.py`` pairs folders.

  Images without a mask, with several masks, whose output would replace an input file or
  another photo's output get a ``Task`` with an ``error`` (they become ``failed`` records).
  Problems with the arguments themselves become one such ``Task``. The image files' sizes
  (bytes, from the listing) go into the dict ``sizes`` if given.
  """
  try:
    images, image_base, _ = expand(images_arg, "image", sizes)
    if not images:
      raise UserError(f"--images {images_arg} matches no image file")
    masks, _, one_mask = expand(masks_arg, "mask")
  except UserError as e:
    return [Task(images_arg, masks_arg, None, str(e))]
  if one_mask:
    pairs, unpaired, ambiguous = paths_lib.pair_paths(images, masks[0], identity=identity)
  else:
    same_folder = bool({identity(p) for p in images} & {identity(p) for p in masks})
    pairs, unpaired, ambiguous = paths_lib.pair_paths(images, masks, same_folder=same_folder,
                                                     identity=identity)
  tasks = [Task(i, m, output_path(i, image_base, output_dir), None) for i, m in pairs]
  tasks += [Task(i, None, output_path(i, image_base, output_dir), f"{i}: no mask matches it")
            for i in unpaired]
  tasks += [Task(i, None, output_path(i, image_base, output_dir),
                 paths_lib.several_masks_message(i, found)) for i, found in ambiguous]
  inputs = {identity(p) for p in images} | {identity(p) for p in masks}
  owner = {}
  checked = []
  for task in sorted(tasks, key=lambda t: t.image):
    key = identity(task.output)
    if task.error is None and key in inputs:
      task = task._replace(error=f"{task.output}: the output would replace an input file; "
                                 "write to another --output_dir")
    elif task.error is None and key in owner:
      task = task._replace(error=f"{task.output}: also the output of {owner[key]}; "
                                 "rename one of the two images")
    if task.error is None:
      owner[key] = task.image
    checked.append(task)
  return checked


# ---------------------------------------------------------------------------------------------
# Records


def record(task, status, error=None, inference_ms=None, hw=None, hole_fraction=None):
  """One ``results-*.jsonl`` record (a dict with ``RECORD_FIELDS``)."""
  return {"image": task.image, "mask": task.mask, "output": task.output, "status": status,
          "error": error,
          "inference_ms": None if inference_ms is None else round(float(inference_ms), 1),
          "width": None if hw is None else int(hw[1]),
          "height": None if hw is None else int(hw[0]),
          "hole_fraction": None if hole_fraction is None else round(float(hole_fraction), 6)}


def one_line(exc_type, text):
  """``Type: first line of the message`` for an unexpected exception."""
  lines = str(text).strip().splitlines()
  name = getattr(exc_type, "__name__", str(exc_type))
  return f"{name}: {lines[0]}" if lines else name


def read_checked(path, what, max_pixels):
  """The bytes of an image or mask file, once its header says it is within ``max_pixels``.

  Only formats that state their size in the header (PNG, JPEG, BMP, WebP, GIF, TIFF) pass,
  so no decompression bomb is ever decoded (``check_header``, as the web app does).
  """
  if is_local(path):
    data = decode.read_bytes(path, what)  # test.py's messages for missing/unreadable files
  else:
    try:
      with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        data = f.read()
    except Exception as e:  # noqa: BLE001 - filesystem clients raise many types
      raise UserError(f"{path}: cannot read the {what} file ({one_line(type(e), e)})") from None
  decode.check_header(data, path, max_pixels)
  return data


def write_output(path, payload):
  """Writes a file atomically: local via a temporary file + rename, else one object upload."""
  if is_local(path):
    parent = os.path.dirname(os.path.abspath(path))
    try:
      os.makedirs(parent, exist_ok=True)
    except OSError as e:
      raise UserError(f"{parent}: cannot create the output folder ({e.strerror or e})") from None
    atomic_write(path, payload)
    return
  try:
    with FileSystems.create(path, mime_type="image/png",
                            compression_type=CompressionTypes.UNCOMPRESSED) as f:
      f.write(payload)
  except Exception as e:  # noqa: BLE001
    raise UserError(f"{path}: cannot write the output file ({one_line(type(e), e)})") from None


# ---------------------------------------------------------------------------------------------
# DoFns


def largest_first(tasks, sizes):
  """``tasks`` ordered by image file size, largest first (ties by path)."""
  return sorted(tasks, key=lambda t: (-sizes.get(t.image, 0), t.image))


def _values(keyed_group):
  return keyed_group[1]


class ListTasks(beam.DoFn):
  """Lists and pairs the input files (one step, ahead of the fusion break): (rank, Task)
  pairs, rank 0 for the largest image file."""

  def __init__(self, images, masks, output_dir):
    self._args = (images, masks, output_dir)

  def process(self, unused_element):
    sizes = {}
    yield from enumerate(largest_first(list_tasks(*self._args, sizes=sizes), sizes))


class ReadPhotos(beam.DoFn):
  """Task -> ``handler.Photo``; records for listing errors, skipped outputs and bad files."""

  RECORDS = "records"

  def __init__(self, max_pixels, skip_existing):
    self._max_pixels = int(max_pixels)
    self._skip_existing = bool(skip_existing)

  def process(self, task):
    if task.error:
      yield beam.pvalue.TaggedOutput(self.RECORDS, record(task, "failed", task.error))
      return
    if self._skip_existing and FileSystems.exists(task.output):
      yield beam.pvalue.TaggedOutput(self.RECORDS, record(task, "skipped"))
      return
    try:
      rgb, info, hole = decode.read_pair(
          task.image, task.mask, self._max_pixels,
          read_checked(task.image, "image", self._max_pixels),
          read_checked(task.mask, "mask", self._max_pixels))
    except UserError as e:
      yield beam.pvalue.TaggedOutput(self.RECORDS, record(task, "failed", str(e)))
      return
    except Exception as e:  # noqa: BLE001 - any surprise is this photo's failure only
      yield beam.pvalue.TaggedOutput(
          self.RECORDS, record(task, "failed", f"unexpected {one_line(type(e), e)}"))
      return
    yield handler_lib.Photo(task=task, rgb=rgb, hole=hole, info=info)


def check_pixels(pixels, rgb):
  """Raises `UserError` unless the model's ``pixels`` are uint8 with the photo's shape (a
  SavedModel with the same signature may return anything)."""
  if not (isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8
          and pixels.shape == rgb.shape):
    got = "x".join(map(str, getattr(pixels, "shape", ()))) or "no array"
    h, w = rgb.shape[:2]
    raise UserError(f"the SavedModel returned {got} {getattr(pixels, 'dtype', '')} pixels for a "
                    f"{w}x{h} photo (expected {h}x{w}x3 uint8); is it an export.py export?")


class WriteOutputs(beam.DoFn):
  """PredictionResult(Photo, Inpainted) -> the output PNG and an ``ok`` (or ``failed``) record."""

  def __init__(self):
    self._peak_rss = Metrics.distribution(NAMESPACE, "peak_rss_mb")
    self._baseline_rss = Metrics.distribution(NAMESPACE, "baseline_rss_mb")
    self._setup_cpu = Metrics.distribution(NAMESPACE, "setup_cpu_ms")

  def process(self, result):
    photo, inpainted = result.example, result.inference
    task = photo.task
    size = dict(hw=photo.rgb.shape[:2], hole_fraction=float(photo.hole.mean()))
    try:
      check_pixels(inpainted.pixels, photo.rgb)
      payload = encode.encode_image(task.output, inpainted.pixels, photo.info,
                                      check_path=False)
      write_output(task.output, payload)
    except UserError as e:
      yield record(task, "failed", str(e), inpainted.inference_ms, **size)
      return
    except Exception as e:  # noqa: BLE001
      yield record(task, "failed", f"unexpected {one_line(type(e), e)}", inpainted.inference_ms,
                   **size)
      return
    finally:
      self._peak_rss.update(int(handler_lib.peak_rss_bytes() / 2**20))
      if inpainted.baseline_rss_mb is not None:
        self._baseline_rss.update(int(inpainted.baseline_rss_mb))
      if inpainted.setup_cpu_s is not None:
        self._setup_cpu.update(int(1000 * inpainted.setup_cpu_s))
    yield record(task, "ok", None, inpainted.inference_ms, **size)


def failed_inference_records(dead_letter):
  """RunInference's dead letter ``(batch, (type, repr, traceback))`` -> ``failed`` records."""
  batch, (exc_type, text, _) = dead_letter
  for photo in batch:
    yield record(photo.task, "failed", f"inference failed: {_message(exc_type, text)}",
                 hw=photo.rgb.shape[:2], hole_fraction=float(photo.hole.mean()))


def _message(exc_type, text):
  """First line of an exception's message, from the ``repr`` the dead letter carries."""
  name = getattr(exc_type, "__name__", str(exc_type))
  body = str(text)
  if body.startswith(name + "(") and body.endswith(")"):
    body = body[len(name) + 1:-1].strip("'\"")
  body = body.replace("\\n", "\n").strip()
  return f"{name}: {body.splitlines()[0]}" if body else name


class CountAndFormat(beam.DoFn):
  """Counts records by status (Beam metrics ``deepfill/ok|skipped|failed``) and formats JSON."""

  def __init__(self):
    self._counters = {status: Metrics.counter(NAMESPACE, status) for status in STATUSES}

  def process(self, rec):
    self._counters[rec["status"]].inc()
    yield json.dumps({key: rec[key] for key in RECORD_FIELDS}, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# The pipeline


class InpaintFiles(beam.PTransform):
  """Root transform: files in, PNGs written, one JSON record (a str) per input out.

  Args:
    images: glob, folder or file of images (any Beam filesystem).
    masks: glob, folder or one mask file for every image.
    output_dir: folder for the PNGs (the images' sub-folders below the glob's base are kept).
    model_handler: a ``ModelHandler`` taking ``Photo`` and returning ``Inpainted``.
    max_pixels: photos (and masks) above this many pixels become ``failed`` records,
      checked from the file header before decoding.
    skip_existing: photos whose output exists become ``skipped`` records.
  """

  def __init__(self, images, masks, output_dir, model_handler, max_pixels,
               skip_existing=False):
    super().__init__()
    self._images, self._masks, self._output_dir = images, masks, output_dir
    self._handler = model_handler
    self._max_pixels = max_pixels
    self._skip_existing = skip_existing

  def expand(self, pbegin):
    tasks = (pbegin
             | "Start" >> beam.Create([None])
             | "MatchAndPair" >> beam.ParDo(ListTasks(self._images, self._masks,
                                                      self._output_dir))
             | "SpreadOverWorkers" >> beam.GroupByKey()
             | "Ungroup" >> beam.FlatMap(_values))
    read = tasks | "Read" >> beam.ParDo(
        ReadPhotos(self._max_pixels, self._skip_existing)).with_outputs(
            ReadPhotos.RECORDS, main="photos")
    inferred, dead_letter = (
        read.photos
        | "Inpaint" >> base.RunInference(self._handler).with_exception_handling())
    written = inferred | "Write" >> beam.ParDo(WriteOutputs())
    failed = (dead_letter.failed_inferences
              | "InferenceFailures" >> beam.FlatMap(failed_inference_records))
    return ((read[ReadPhotos.RECORDS], written, failed)
            | "AllRecords" >> beam.Flatten()
            | "Format" >> beam.ParDo(CountAndFormat()))


def results_prefix(output_dir, run_id):
  """``output_dir/results-<run_id>``: the records go to ``<prefix>-SSSSS-of-NNNNN.jsonl``."""
  return FileSystems.join(output_dir, f"results-{run_id}")
