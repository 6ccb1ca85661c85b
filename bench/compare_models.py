r"""Scores several model folders side by side on one photo set (each with its declared pipeline).

  python bench/compare_models.py \
      --models demo=checkpoints/demo,gan=checkpoints/demo_gan_run/candidate \
      --data_dir ../shared/data/dev/photos --max_side 256 --mask_mode both --output_dir out/cmp

Writes what ``evaluate.py`` writes (results.csv, results.json with hole PSNR / L1 / SSIM / TV /
detail per photo and their means, and picture grids ``input | <model> ... | truth``), through
the same engine (``model/evaluation/engine.py``), and prints the mean table. Errors print one
line and exit with status 1.
"""
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", None, "NAME=FOLDER pairs, in table order.")
flags.DEFINE_string("data_dir", None, "Folder of photos.")
flags.DEFINE_string("mask_dir", None, "Optional folder of masks paired by stem (else generated).")
flags.DEFINE_enum("mask_mode", "both", ["box", "free_form", "both"], "Generated masks.")
flags.DEFINE_integer("max_side", 512, "Long side the photos are scaled down to (0 = as they are).")
flags.DEFINE_integer("seed", 0, "Seed of the generated masks.")
flags.DEFINE_string("output_dir", None, "Folder for results and grids.")
flags.DEFINE_float("max_memory_gb", 1.0, "Working-memory bound of the attention.")
flags.mark_flags_as_required(["models", "data_dir", "output_dir"])
cli.define_verbose()


def _fills(models, max_memory_gb, verbose):
  """``{name: fill(given, hole)}`` for ``[(name, folder)]``, each model traced once."""
  import numpy as np
  cli.import_tensorflow(verbose)
  from model.inference import inpainter as inpaint
  fills = {}
  for name, folder in models:
    model = inpaint.Inpainter.from_checkpoint(folder, max_memory_gb)
    hole = np.zeros((64, 64), bool)
    hole[16:48, 16:48] = True
    model.inpaint(np.zeros((64, 64, 3), np.uint8), hole)
    fills[name] = (lambda m: lambda given, hole: m.inpaint(given, hole)[0])(model)
  return fills


def main(argv):
  del argv
  from model.errors import UserError
  from model.evaluation import engine

  def run():
    models = []
    for item in FLAGS.models:
      name, sep, folder = item.partition("=")
      if not sep or not name or not folder:
        raise UserError(f"--models: expected NAME=FOLDER, got {item!r}")
      if not os.path.isdir(folder):
        raise UserError(f"--models: {folder}: no such folder")
      models.append((name, folder))
    report, grids = engine.run(
        FLAGS.data_dir, FLAGS.output_dir, lambda: _fills(models, FLAGS.max_memory_gb,
                                                         FLAGS.verbose),
        mask_dir=FLAGS.mask_dir, mask_mode=FLAGS.mask_mode, seed=FLAGS.seed,
        max_side=FLAGS.max_side, settings={"models": dict(models)}, console=cli.CONSOLE)
    print(engine.format_table(report["summary"]))
    print(f"wrote {os.path.join(FLAGS.output_dir, 'results.csv')}, results.json and {grids} grids")
    return 0

  return cli.guarded(run, expected=(UserError,))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.one_line_flag_parser(FLAGS))
