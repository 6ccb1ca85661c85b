r"""Export a DeepFill checkpoint (ours or an official TF1 v1 one) as a SavedModel for serving,
or as an ONNX or LiteRT (TFLite) model.

  python export.py --checkpoint_dir DIR --export_dir OUT [--max_memory_gb 1] [--max_megapixels 100]
                   [--overwrite] [--noseam_blend]
  python export.py --format onnx|tflite --checkpoint_dir DIR --export_dir OUT [--overwrite]
  python export.py --format web --checkpoint_dir DIR --export_dir OUT [--overwrite]

SavedModel signatures (see ``model/inference/serving.py`` and README "Serving"):
  serving_default: image uint8 [B,H,W,3] RGB, mask uint8 [B,H,W,1] (>127 = hole) -> inpainted
  inpaint_bytes:   image_bytes string [B], mask_bytes string [B] (encoded files) -> png_bytes
``--format onnx`` writes OUT/model.onnx and ``--format tflite`` OUT/model.tflite: the
serving_default contract with B = 1 and any H, W, without seam blending and with dense
attention (``model/inference/portable.py``, README "ONNX and LiteRT"). The output is written
to a temporary directory beside OUT and renamed into place, so OUT is never half-written.
``--format web`` writes OUT as a static site for any file server (README "In the browser, no
server"): the page, ``deepfill.js``, the ONNX model and ONNX Runtime Web from ``web/node_modules``
(``npm ci --prefix web``; ``model/web/portable.py``).
Every failure prints one line ``error: ...`` and exits with status 1.
"""
import math
import os
import re
import shutil
import tempfile

from absl import app
from absl import flags
from absl import logging

import cli

FLAGS = flags.FLAGS
DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints", "demo")

flags.DEFINE_string("checkpoint_dir", DEFAULT_CHECKPOINT,
                    "Our checkpoint directory (model.json + weights) or an official TF1 "
                    "DeepFill v1 checkpoint directory.")
flags.DEFINE_string("export_dir", None, "Directory to write the SavedModel (or model file) to.")
flags.mark_flag_as_required("export_dir")
flags.DEFINE_enum("format", "savedmodel", ["savedmodel", "onnx", "tflite", "web"],
                  "savedmodel (TF Serving, tf.saved_model.load), onnx (OUT/model.onnx, ONNX "
                  "Runtime; needs the onnx extra), tflite (OUT/model.tflite, LiteRT) or web (OUT: "
                  "a static site running model.onnx in the browser; needs npm ci --prefix web). "
                  "The ONNX and LiteRT models do not seam-blend and ignore --max_memory_gb and "
                  "--max_megapixels.")
cli.define_max_memory_gb("Working-memory bound of contextual attention per image (GB); the "
                         "attention tile is chosen from it and the image size at serving time.")
cli.define_max_megapixels("inpaint_bytes refuses an image or mask whose file header declares "
                          "more megapixels (width x height) than this, before decoding it.")
flags.DEFINE_bool("overwrite", False, "Replace an existing non-empty SavedModel directory.")
cli.define_seam_blend()
cli.define_verbose()


class _ExportError(Exception):
  """A problem with the export flags or paths (message is one line)."""


# The file that marks a directory as an export of each format (only those are replaced).
MARKERS = {"savedmodel": "saved_model.pb", "onnx": "model.onnx", "tflite": "model.tflite",
           "web": "deepfill.js"}
NPM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")  # web/package.json


_fail = cli.CONSOLE.fail


def _check_target(out, overwrite, fmt="savedmodel"):
  """Fails early (before TensorFlow loads) if ``out`` must not be written."""
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
  if marker not in entries:
    what = {"savedmodel": "a SavedModel", "web": "a web export"}.get(fmt, f"an {fmt} export")
    raise _ExportError(f"{out} is not {what} directory (no {marker}); refusing to replace it")


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
           max_megapixels=100.0, seam_blend=True, fmt="savedmodel"):
  """Loads the generator from ``checkpoint_dir`` and writes the export of format ``fmt``
  (``MARKERS``' keys) to ``export_dir``."""
  if not export_dir:
    raise _ExportError("--export_dir is required")
  if not (math.isfinite(max_memory_gb) and max_memory_gb > 0):
    raise _ExportError(f"--max_memory_gb must be a positive number, got {max_memory_gb}")
  if not (math.isfinite(max_megapixels) and max_megapixels > 0):
    raise _ExportError(f"--max_megapixels must be a positive number, got {max_megapixels}")
  if fmt not in MARKERS:
    raise _ExportError(f"--format must be one of {', '.join(MARKERS)}, got {fmt!r}")
  out = os.path.abspath(export_dir)
  _check_target(out, overwrite, fmt)
  if not os.path.exists(checkpoint_dir) and not os.path.exists(checkpoint_dir + ".index"):
    raise _ExportError(f"checkpoint directory not found: {checkpoint_dir}")
  if fmt == "web":
    from model.web import portable as site
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
    return out
  if fmt != "savedmodel":
    data = portable_model(generator, model_config, fmt, verbose)
    _write_atomically(out, overwrite, lambda tmp: _write_file(tmp, MARKERS[fmt], data), fmt)
    return out
  archive = serving.ServingModel(generator, model_config, max_memory_gb,
                                 max_pixels=max(1, int(max_megapixels * 1e6)),
                                 seam_blend=seam_blend).archive()
  _write_atomically(out, overwrite, lambda tmp: archive.write_out(tmp, verbose=False))
  return out


def main(argv):
  if not FLAGS.verbose:
    logging.set_verbosity(logging.WARNING)  # TF's SavedModel writer logs at INFO

  def run():
    out = export(FLAGS.checkpoint_dir, FLAGS.export_dir, FLAGS.max_memory_gb, FLAGS.overwrite,
                 FLAGS.verbose, FLAGS.max_megapixels, FLAGS.seam_blend, FLAGS.format)
    if FLAGS.format == "savedmodel":
      print(f"wrote SavedModel to {out} (signatures: serving_default, inpaint_bytes)")
    elif FLAGS.format == "web":
      print(f"wrote the static site {out} (index.html, deepfill.js, model.onnx, ONNX Runtime "
            f"Web); try it: python -m http.server --directory {out} --bind 127.0.0.1 8080")
    else:
      print(f"wrote {os.path.join(out, MARKERS[FLAGS.format])} (image, mask -> inpainted; "
            "batch 1, any size; no seam blending)")
    return 0

  return cli.guarded(run, expected=(_ExportError,), argv=argv)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.one_line_flag_parser(FLAGS))
