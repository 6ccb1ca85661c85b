r"""Export a DeepFill checkpoint (ours or an official TF1 v1 one) as a SavedModel for serving,
or as an ONNX or LiteRT (TFLite) model.

  python export.py --checkpoint_dir DIR --export_dir OUT [--max_memory_gb 1] [--max_megapixels 100]
                   [--overwrite] [--[no]seam_blend] [--strategy original|resize|crop|auto]
                   [--signatures all|serving] [--precision float32|mixed_bfloat16|mixed_float16|auto]
  python export.py --format onnx|tflite --checkpoint_dir DIR --export_dir OUT [--overwrite]
  python export.py --format web --checkpoint_dir DIR --export_dir OUT [--overwrite]

SavedModel signatures (see ``model/inference/serving.py`` and docs/SERVING.md):
  serving_default: image uint8 [B,H,W,3] RGB, mask uint8 [B,H,W,1] (>127 = hole) -> inpainted
  inpaint_bytes:   image_bytes string [B], mask_bytes string [B] (encoded files) -> png_bytes
                   (left out with --signatures serving, the export batch_inpaint.py runs)
``--format onnx`` writes OUT/model.onnx and ``--format tflite`` OUT/model.tflite: the
serving_default contract with B = 1 and any H, W, at the photo's own resolution (strategy
original, whatever the checkpoint declares), without seam blending and with dense attention
(``model/inference/portable.py``, docs/EXPORT.md), in float32: the SavedModel bakes in
``--precision`` (``auto`` resolved on this machine), the portable formats refuse a mixed one.
``--format web`` writes OUT as a static site for any file server (docs/BROWSER.md): the page, ``deepfill.js``, the ONNX model and ONNX Runtime Web from ``web/node_modules``
(``npm ci --prefix web``; ``model/web/site.py``).
The export is written to a temporary directory beside OUT and renamed into place, so OUT
is never half-written. With ``--overwrite`` an existing OUT is replaced only if it holds an
export of the same format and nothing else, and never if it is or contains the checkpoint
directory; a symlink OUT stays, the directory it points to is written. Every failure prints
one line ``error: ...`` and exits with status 1.
"""
import os
import re
import shutil
import tempfile

from absl import app
from absl import flags
from absl import logging

import cli
from model import limits

FLAGS = flags.FLAGS

flags.DEFINE_string("checkpoint_dir", cli.DEFAULT_CHECKPOINT,
                    "Our checkpoint directory (model.json + weights) or an official TF1 "
                    "DeepFill v1 checkpoint directory.")
flags.DEFINE_string("export_dir", None, "Directory to write the SavedModel (or model file) to.")
flags.mark_flag_as_required("export_dir")
flags.DEFINE_enum("format", "savedmodel", ["savedmodel", "onnx", "tflite", "web"],
                  "savedmodel (TF Serving, tf.saved_model.load), onnx (OUT/model.onnx, ONNX "
                  "Runtime; needs the onnx extra), tflite (OUT/model.tflite, LiteRT) or web (OUT: "
                  "a static site running model.onnx in the browser; needs npm ci --prefix web). "
                  "The ONNX and LiteRT models run the network at the photo's own resolution "
                  "without seam blending (strategy original) and ignore --strategy, --seam_blend, "
                  "--max_memory_gb and --max_megapixels.")
cli.define_max_memory_gb("Working-memory bound of contextual attention per image (GB); the "
                         "attention tile is chosen from it and the image size at serving time.")
cli.define_max_megapixels("inpaint_bytes refuses an image or mask whose file header declares "
                          "more megapixels (width x height) than this, before decoding it.")
flags.DEFINE_enum("signatures", "all", ["all", "serving"], "Signatures to export: 'all' "
                  "(serving_default and inpaint_bytes) or 'serving' (serving_default only: what "
                  "batch_inpaint.py runs; a smaller graph to load).")
flags.DEFINE_bool("overwrite", False, "Replace an existing non-empty SavedModel directory.")
cli.define_seam_blend()
cli.define_precision("Keras dtype policy baked into the SavedModel: float32, mixed_bfloat16 or "
                     "mixed_float16, or auto (resolved on this machine: mixed_bfloat16 on a CPU "
                     "with AMX or a GPU of compute capability 8.0 or more, else float32). "
                     "Default: as the model declares (official checkpoints: float32). The ONNX, "
                     "LiteRT and web formats run float32 (auto means float32 there) and refuse "
                     "a mixed policy. docs/PRECISION.md.")
cli.define_verbose()


class _ExportError(Exception):
  """A problem with the export flags or paths (message is one line)."""


# The file that marks a directory as an export of each format (only those are replaced).
MARKERS = {"savedmodel": "saved_model.pb", "onnx": "model.onnx", "tflite": "model.tflite",
           "web": "deepfill.js"}
NPM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")  # web/package.json
# --precision values the portable formats accept (None: the model's declaration is not used
# there; auto: bfloat16 pays in none of their runtimes).
PORTABLE_PRECISIONS = (None, "float32", "auto")


_fail = cli.CONSOLE.fail


# What a SavedModel directory holds (tf.saved_model.save, Keras, TF1 builders); with
# --overwrite only a directory of these entries is replaced (for the other formats: the files
# that format writes, _foreign_entries).
SAVED_MODEL_ENTRIES = frozenset({"saved_model.pb", "saved_model.pbtxt", "variables", "assets",
                                 "assets.extra", "fingerprint.pb", "keras_metadata.pb"})


def _check_target(out, overwrite, fmt="savedmodel"):
  """Fails early (before TensorFlow loads) if ``out`` (symlinks resolved) must not be
  written: it exists and is not a directory, or is not empty and either ``overwrite`` is off
  or it holds anything but an export of format ``fmt``."""
  if not os.path.lexists(out):
    return
  if not os.path.isdir(out) or os.path.islink(out):
    raise _ExportError(f"{out} exists and is not a directory")
  entries = os.listdir(out)
  if not entries:
    return
  if not overwrite:
    raise _ExportError(f"{out} exists and is not empty; pass --overwrite to replace it")
  marker = MARKERS[fmt]
  what = {"savedmodel": "a SavedModel", "web": "a web export"}.get(fmt, f"an {fmt} export")
  if marker not in entries:
    raise _ExportError(f"{out} is not {what} directory (no {marker}); refusing to replace it")
  foreign = _foreign_entries(out, entries, fmt)
  if foreign:
    shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                      else "")
    raise _ExportError(f"{out} holds more than {what} ({shown}); refusing to replace it")


def _foreign_entries(out, entries, fmt):
  """The entries of ``out`` that an export of format ``fmt`` does not write, sorted (a web
  export's ``ort/`` folder is looked into: it holds ONNX Runtime Web's files only)."""
  if fmt == "savedmodel":
    return sorted(set(entries) - SAVED_MODEL_ENTRIES)
  if fmt != "web":
    return sorted(set(entries) - {MARKERS[fmt]})
  from model.web import site  # no TensorFlow
  foreign = sorted(set(entries) - set(site.PAGE_FILES)
                   - {"index.html", "ort", "NOTICE.txt", site.MODEL_FILE})
  runtime = os.path.join(out, "ort")
  if os.path.lexists(runtime):
    if not os.path.isdir(runtime) or os.path.islink(runtime):
      foreign.append("ort")
    else:
      foreign += sorted(f"ort/{name}" for name in set(os.listdir(runtime))
                        - set(site.RUNTIME_FILES))
  return foreign


def _check_not_inside(out, checkpoint_dir):
  """Refuses an export directory that is, or contains, the checkpoint being exported."""
  source = checkpoint_dir
  if not os.path.isdir(source):  # a TF1 checkpoint prefix: its files are in its folder
    source = os.path.dirname(os.path.abspath(source))
  source = os.path.realpath(source)
  if source == out or source.startswith(out.rstrip(os.sep) + os.sep):
    raise _ExportError(f"--export_dir {out} contains the checkpoint being exported "
                       f"({checkpoint_dir}); choose another folder")


def _remove(path):
  if path and os.path.lexists(path):
    shutil.rmtree(path, ignore_errors=True)


def _write_failure(out, error):
  """One line for an error raised while writing ``out`` (an OSError or a TensorFlow OpError,
  whose text starts with ``{{function_node ...}}`` and ends with ``[Op:...]``)."""
  text = getattr(error, "strerror", None) or " ".join(str(error).split())
  text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
  text = re.sub(r"\s*\[Op:\w+\]$", "", text).rsplit("; ", 1)[-1]  # "<temp file>; <reason>"
  advice = ("free some space or choose another --export_dir" if "No space left" in text
            else "check the folder and its permissions")
  return _ExportError(f"cannot write {out}: {text}; nothing was written ({advice})")


def _write_atomically(out, overwrite, write, fmt="savedmodel"):
  """Calls ``write(tmp)`` on a fresh directory beside ``out``, then renames it to ``out``."""
  parent = os.path.dirname(out)
  try:
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; OUT gets normal permissions
  except OSError as e:
    raise _ExportError(f"{parent}: cannot create a directory there ({e.strerror or e})") from None
  old = None
  try:
    try:
      write(tmp)
    except Exception as e:  # noqa: BLE001 - TensorFlow reports a full disk as an OpError
      if isinstance(e, OSError) or type(e).__module__.startswith("tensorflow."):
        raise _write_failure(out, e) from None
      raise
    _check_target(out, overwrite, fmt)  # it may have appeared while we were exporting
    if os.path.isdir(out) and os.listdir(out):
      old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=parent)
      os.replace(out, old)  # replaces the empty placeholder directory
    os.replace(tmp, out)  # an empty existing directory is replaced too
  except OSError as e:
    if old and not os.path.lexists(out):
      os.replace(old, out)  # put the previous export back
      old = None
    raise _ExportError(f"cannot write {out} ({e.strerror or e})") from None
  finally:
    _remove(tmp)  # gone after a successful rename
    _remove(old)


def portable_model(generator, model_config, fmt="onnx", verbose=False):
  """The bytes of ``model.onnx`` (``fmt="onnx"``) or ``model.tflite`` of a loaded generator
  (``model/inference/convert.py``); converter log lines are hidden unless ``verbose``."""
  import logging as std_logging
  from model.inference import convert
  if not verbose:  # tf2onnx logs every step, and its optimizers' skipped rewrites
    std_logging.getLogger("tf2onnx").setLevel(std_logging.ERROR)
  if fmt == "onnx":
    return convert.onnx_bytes(generator, model_config)
  return convert.tflite_bytes(generator, model_config)


def _write_file(folder, name, data):
  with open(os.path.join(folder, name), "wb") as f:
    f.write(data)


def export(checkpoint_dir, export_dir, max_memory_gb=1.0, overwrite=False, verbose=False,
           max_megapixels=100.0, seam_blend=None, signatures="all", fmt="savedmodel",
           strategy=None, precision=None):
  """Loads the generator from ``checkpoint_dir`` and writes the export of format ``fmt``
  (``MARKERS``' keys) to ``export_dir``; a SavedModel gets the signatures of
  ``serving.SIGNATURE_SETS[signatures]`` and bakes in ``strategy`` / ``seam_blend`` /
  ``precision`` (None: what the checkpoint declares; ``auto`` is resolved here); the portable
  formats run the network's own fill at full resolution in float32
  (``model/inference/portable.py``), ignore the first two and refuse a mixed ``precision``.
  Returns ``(the directory written, the dtype policy its network runs under)``."""
  if not export_dir:
    raise _ExportError("--export_dir is required")
  try:
    limits.memory_bytes(max_memory_gb)
    max_pixels = limits.max_pixels(max_megapixels)
  except ValueError as e:
    raise _ExportError(str(e)) from None
  if fmt not in MARKERS:
    raise _ExportError(f"--format must be one of {', '.join(MARKERS)}, got {fmt!r}")
  if fmt != "savedmodel" and precision not in PORTABLE_PRECISIONS:
    raise _ExportError(f"--format {fmt} runs float32 only (ONNX Runtime's and LiteRT's CPU "
                       f"convolutions take no bfloat16 or float16); drop --precision {precision} "
                       "or export a SavedModel")
  # A symlink stays: the directory it points to is the one written (replaced with --overwrite).
  out = os.path.realpath(export_dir)
  _check_not_inside(out, checkpoint_dir)
  _check_target(out, overwrite, fmt)
  if not os.path.exists(checkpoint_dir) and not os.path.exists(checkpoint_dir + ".index"):
    raise _ExportError(f"checkpoint directory not found: {checkpoint_dir}")
  if fmt == "web":
    from model.web import site
    site.runtime_dist(NPM_DIR)  # before TensorFlow loads: a missing `npm ci` is one line

  cli.import_tensorflow(verbose)
  from model import weights as checkpoints  # heavy imports (TensorFlow) only when needed
  from model.inference import serving
  generator, model_config = checkpoints.load_generator(checkpoint_dir)
  if fmt == "web":
    data = portable_model(generator, model_config, "onnx", verbose)
    write = lambda tmp: site.write_site(tmp, lambda path: _write_file(*os.path.split(path), data),
                                        NPM_DIR)
    _write_atomically(out, overwrite, write, fmt)
    return out, "float32"
  if fmt != "savedmodel":
    data = portable_model(generator, model_config, fmt, verbose)
    _write_atomically(out, overwrite, lambda tmp: _write_file(tmp, MARKERS[fmt], data), fmt)
    return out, "float32"
  model = serving.ServingModel(generator, model_config, max_memory_gb, max_pixels=max_pixels,
                               seam_blend=seam_blend, strategy=strategy,
                               inference=checkpoints.inference_defaults(checkpoint_dir),
                               precision=precision)
  archive = model.archive(signatures)
  _write_atomically(out, overwrite, lambda tmp: archive.write_out(tmp, verbose=False))
  return out, model.inpainter.precision


def main(argv):
  if not FLAGS.verbose:
    logging.set_verbosity(logging.WARNING)  # TF's SavedModel writer logs at INFO

  def run():
    out, precision = export(FLAGS.checkpoint_dir, FLAGS.export_dir, FLAGS.max_memory_gb, FLAGS.overwrite,
                 FLAGS.verbose, FLAGS.max_megapixels, FLAGS.seam_blend, FLAGS.signatures,
                 FLAGS.format, FLAGS.strategy, FLAGS.precision)
    link = ""
    if os.path.islink(FLAGS.export_dir.rstrip(os.sep) or os.sep):
      link = f" (the target of the symlink {FLAGS.export_dir})"
    if FLAGS.format == "savedmodel":
      names = ", ".join(("serving_default", "inpaint_bytes")[:1 if FLAGS.signatures == "serving"
                                                            else 2])
      print(f"wrote SavedModel to {out}{link} (signatures: {names}); precision {precision}")
    elif FLAGS.format == "web":
      print(f"wrote the static site {out}{link} (index.html, deepfill.js, model.onnx, ONNX Runtime "
            f"Web); try it: python -m http.server --directory {out} --bind 127.0.0.1 8080")
    else:
      print(f"wrote {os.path.join(out, MARKERS[FLAGS.format])}{link} (image, mask -> inpainted; "
            "batch 1, any size; strategy original, no seam blending)")
    return 0

  return cli.guarded(run, expected=(_ExportError,), argv=argv)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.one_line_flag_parser(FLAGS))
