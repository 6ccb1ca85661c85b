r"""Score inpainting on a folder of photos: a DeepFill checkpoint and/or OpenCV's classical methods.

  python evaluate.py --data_dir photos/ --output_dir eval/ [--checkpoint_dir checkpoints/demo]
      [--mask_mode box|free_form|both|multi] [--seed 0] [--compare telea,ns] [--max_side 512]
  python evaluate.py --data_dir photos/ --mask_dir masks/ --method telea --output_dir eval/

Every photo is its own ground truth: a hole is cut, the method fills it, and the
result is compared with the photo. Holes come from ``--mask_dir`` (paired by file
stem like ``test.py``; white = hole) or are generated from ``--seed`` by
``model/evaluation/masks.py`` (box = v1 training hole, free_form = v2 brush strokes;
``both`` gives two result groups; the mask of a photo depends only on the seed,
the mode, the photo's size and its index in the sorted file list of
``--data_dir``, so adding files changes the masks of later ones: keep the
written masks to freeze a mask set). Photos whose long side exceeds ``--max_side``
are first downscaled (cv2.INTER_AREA) so the long side equals it; metrics are
computed at that size. Metric definitions: ``model/evaluation/metrics.py``.

Outputs in ``--output_dir``: ``results.csv`` (one row per image x mask mode x
method, then one ``(mean)`` row per mask mode x method), ``results.json`` (the
same plus settings, definitions and skipped files), ``grids/<stem>_<mode>.png``
(input with hole | first method | other methods | truth) and, for generated
masks, ``masks/<mode>/<stem>.png`` (reusable with ``--mask_dir`` and the same
``--max_side``). A table goes to stdout, progress to stderr. Bad flag values
print one ``error:`` line and exit 2; a missing folder, no images or an unusable
checkpoint print one and exit 1. An unreadable photo or mask is skipped with a
warning and counted (exit status 0 as long as one photo was evaluated). The
engine is ``model/evaluation/engine.py``; this file parses flags and builds the
methods' fill functions.
"""
import os

from absl import app
from absl import flags

import cli

# NumPy/OpenCV only; TensorFlow is imported lazily, for --method model.
from model.errors import UserError
from model.evaluation import classical
from model.evaluation import engine
from model.evaluation import masks as eval_masks

FLAGS = flags.FLAGS
METHODS = ("model", "telea", "ns")
MIN_SIDE = engine.MIN_SIDE

flags.DEFINE_string("data_dir", None, "Folder of photos (ground truth); not recursive.")
flags.DEFINE_string("mask_dir", None, "Folder of fixed masks paired by stem (a.png or a_mask.png "
                    "for a.jpg; or one mask file for every photo), white = hole, at the photo's "
                    "size or its --max_side size. Default: masks generated from --seed.")
flags.DEFINE_enum("mask_mode", "box", [*eval_masks.EVAL_MASK_MODES, "both", eval_masks.MULTI],
                  "Generated masks: v1 box, v2 free-form strokes, both as two result groups, "
                  "or multi (2-3 separate boxes, about 10 % of the photo; for --max_side 0).")
flags.DEFINE_integer("seed", 0, "Seed of the generated masks (same seed, same masks).",
                     lower_bound=0)
flags.DEFINE_enum("method", "model", list(METHODS),
                  "Method to score: the DeepFill checkpoint or cv2.inpaint (Telea / Navier-Stokes).")
flags.DEFINE_list("compare", [], "More methods scored on the same masks, e.g. telea,ns.")
flags.DEFINE_string("checkpoint_dir", cli.DEFAULT_CHECKPOINT,
                    "Checkpoint for --method model (ours or an official TF1 v1 one).")
flags.DEFINE_integer("max_images", None, "Evaluate only the first N photos (sorted by name).",
                     lower_bound=1)
flags.DEFINE_integer("max_side", 512, "Downscale photos whose long side is longer (0 = never). "
                     "Keeps CPU time sane; the release was trained at 256x256.")
flags.DEFINE_integer("inpaint_radius", 3, "cv2.inpaint neighbourhood radius for telea / ns.",
                     lower_bound=1)
cli.define_max_memory_gb()
cli.define_seam_blend()
cli.define_precision()
flags.DEFINE_bool("grids", True, "Write the side-by-side picture grids.")
flags.DEFINE_bool("save_masks", True, "Write the generated masks into OUT/masks/<mode>/.")
flags.DEFINE_string("output_dir", None, "Folder for results.csv, results.json, grids/ and masks/.")
flags.mark_flags_as_required(["data_dir", "output_dir"])
cli.define_verbose()


def _usage(message):
  return app.UsageError(message, cli.USAGE_STATUS)


def _methods():
  names = [FLAGS.method]
  for name in FLAGS.compare:
    name = name.strip().lower()
    if name not in METHODS:
      raise _usage(f"--compare: unknown method {name!r}; choose from {', '.join(METHODS)}")
    if name not in names:
      names.append(name)
  return names


def _check_flags():
  if FLAGS.mask_dir and FLAGS["mask_mode"].present:
    raise _usage("--mask_mode chooses generated masks; it cannot be used with --mask_dir")
  if FLAGS.max_side != 0 and FLAGS.max_side < MIN_SIDE:
    raise _usage(f"--max_side must be 0 (no downscaling) or >= {MIN_SIDE}, got {FLAGS.max_side}")
  out = FLAGS.output_dir
  if os.path.exists(out) and not os.path.isdir(out):
    raise UserError(f"--output_dir {out} exists and is not a folder")
  if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
    raise UserError(f"--output_dir {out}: parent folder does not exist")


def model_fill(checkpoint_dir, max_memory_gb, verbose=False, seam_blend=None, strategy=None,
               precision=None):
  """The checkpoint's ``fill(given, hole)``, loaded and traced once (off the clock).

  ``seam_blend`` / ``strategy`` / ``precision``: None runs what the checkpoint declares
  (``Inpainter``). The function's ``precision`` attribute is the dtype policy that runs.
  """
  if not os.path.exists(checkpoint_dir):
    raise UserError(f"checkpoint directory not found: {checkpoint_dir}")
  cli.import_tensorflow(verbose)
  from model.inference import inpainter as inpaint  # heavy import (TensorFlow) only when needed
  inpainter = inpaint.Inpainter.from_checkpoint(checkpoint_dir, max_memory_gb,
                                                seam_blend=seam_blend, strategy=strategy,
                                                precision=precision)
  inpainter.warm_up()  # trace once

  def fill(given, hole):
    return inpainter.inpaint(given, hole)[0]

  fill.precision = inpainter.precision
  return fill


def _fills(names, settings):
  fills = {}
  for name in names:
    if name == "model":
      fills[name] = model_fill(FLAGS.checkpoint_dir, FLAGS.max_memory_gb, FLAGS.verbose,
                               FLAGS.seam_blend, FLAGS.strategy, FLAGS.precision)
      settings["precision"] = fills[name].precision  # what ran (auto resolved)
    else:
      fills[name] = (lambda method: lambda given, hole: classical.inpaint(
          method, given, hole, FLAGS.inpaint_radius))(name)
  return fills


def _main():
  _check_flags()
  methods = _methods()
  settings = {"inpaint_radius": FLAGS.inpaint_radius,
              "checkpoint_dir": os.path.abspath(FLAGS.checkpoint_dir) if "model" in methods
                                else None}
  report, grids = engine.run(
      FLAGS.data_dir, FLAGS.output_dir, lambda: _fills(methods, settings),
      mask_dir=FLAGS.mask_dir, mask_mode=FLAGS.mask_mode, seed=FLAGS.seed, max_images=FLAGS.max_images,
      max_side=FLAGS.max_side, grids=FLAGS.grids, save_masks=FLAGS.save_masks,
      settings=settings, console=cli.CONSOLE)
  print(engine.format_table(report["summary"]))
  counts = report["counts"]
  if counts["skipped"]:
    cli.CONSOLE.warn(f"{counts['skipped']} of {counts['images']} images skipped "
                     "(see results.json)")
  print(f"wrote {os.path.join(FLAGS.output_dir, 'results.csv')}, results.json and {grids} grids")
  return 0


def main(argv):
  return cli.guarded(_main, argv=argv)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.one_line_flag_parser(FLAGS))
