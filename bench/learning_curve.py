r"""Learning curve of a training run on held-out photos, against classical inpainting.

  python bench/learning_curve.py --snapshots /work/runs/keep --data_dir ../shared/data/dev/photos \
      --max_sides 256,512 --out checkpoints/demo/curve

``--snapshots`` holds one folder per kept checkpoint, named ``step_N`` (``model.json`` plus the
``ckpt-N`` files of a run; any of our checkpoint folders works). Each is scored by ``evaluate.py``'s
engine in this process (``model/evaluation/engine.py``; seeded box and free-form masks, the same for every method; the network's own fill,
``--noseam_blend``) at every ``--max_sides`` value;
OpenCV's Telea and Navier–Stokes are scored once on the same masks. Already scored snapshots are
read back from ``<out>.csv``, so the script can be rerun as training goes on. Writes ``<out>.csv``
(one row per step, size, mask kind and method) and ``<out>.png``: hole PSNR and hole L1 against
steps, one panel per size, Telea and Navier–Stokes as horizontal lines.
"""
import csv
import io
import os
import re
import sys
import tempfile

from absl import app
from absl import flags
import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from model.fileio.atomic import atomic_write  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("snapshots", None, "Folder of step_N checkpoint folders.")
flags.DEFINE_string("data_dir", None, "Held-out photos (evaluate.py --data_dir).")
flags.DEFINE_list("max_sides", ["256", "512"], "evaluate.py --max_side values.")
flags.DEFINE_integer("seed", 0, "Mask seed (evaluate.py --seed).")
flags.DEFINE_string("out", None, "Output prefix: writes <out>.csv and <out>.png.")
flags.DEFINE_integer("min_step", 0, "Ignore snapshots before this step.")
flags.mark_flags_as_required(["snapshots", "data_dir", "out"])

FIELDS = ["step", "max_side", "mask", "method", "psnr_hole", "l1_hole"]
COLORS = {"box": (200, 80, 30), "free_form": (40, 140, 40)}  # BGR


class _Quiet:
  """Console of the engine: progress and skipped-photo warnings are not shown here."""

  def progress(self, text):
    del text

  def end_progress(self):
    pass

  def warn(self, message):
    del message


def _fills(method, checkpoint):
  """evaluate.py's methods: the checkpoint's own fill (no seam blending), or Telea + NS."""
  from model.evaluation import classical
  if method != "model":
    return {name: (lambda n: lambda given, hole: classical.inpaint(n, given, hole))(name)
            for name in ("telea", "ns")}
  import cli
  cli.import_tensorflow()  # TensorFlow only for the model, its start-up lines hidden
  from model.inference import inpainter as inpaint
  # The network's own fill: the curve follows training, not blending.
  model = inpaint.Inpainter.from_checkpoint(checkpoint, 1.0, seam_blend=False)
  return {"model": lambda given, hole: model.inpaint(given, hole)[0]}


def _evaluate(method, checkpoint, max_side, out_dir):
  """Scores one method with evaluate.py's engine; returns {(mask, method): (psnr_hole, l1_hole)}."""
  from model.errors import UserError
  from model.evaluation import engine
  try:
    report, _ = engine.run(FLAGS.data_dir, out_dir, lambda: _fills(method, checkpoint),
                           mask_mode="both", seed=FLAGS.seed, max_side=int(max_side),
                           grids=False, save_masks=False, console=_Quiet())
  except UserError as e:
    sys.exit(f"error: evaluation failed for {checkpoint or method} at {max_side} px: {e}")
  return {(row["mask_mode"], row["method"]): (row["psnr_hole_db"], row["l1_pct"])
          for row in report["summary"] if row["image"] == "(mean)"}


def _read_rows(path):
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _write_rows(path, rows):
  text = io.StringIO(newline="")
  writer = csv.DictWriter(text, FIELDS)
  writer.writeheader()
  writer.writerows(rows)
  atomic_write(path, text.getvalue())


def _snapshots():
  found = []
  for name in os.listdir(FLAGS.snapshots):
    m = re.fullmatch(r"step_(\d+)", name)
    if m and int(m.group(1)) >= FLAGS.min_step:
      found.append((int(m.group(1)), os.path.join(FLAGS.snapshots, name)))
  return sorted(found)


def _panel(rows, max_side, key, label, width=520, height=330):
  """One line plot (cv2): the model per mask kind against steps, classical as dashed lines."""
  img = np.full((height, width, 3), 255, np.uint8)
  left, right, top, bottom = 60, 20, 28, 72
  model = [r for r in rows if r["max_side"] == str(max_side) and r["method"] == "model"]
  classic = [r for r in rows if r["max_side"] == str(max_side) and r["method"] != "model"]
  values = [float(r[key]) for r in model + classic]
  steps = [int(r["step"]) for r in model] or [0, 1]
  if not values:
    return img
  lo, hi = min(values), max(values)
  pad = max(hi - lo, 1e-6) * 0.08
  lo, hi = lo - pad, hi + pad
  s0, s1 = min(steps), max(max(steps), min(steps) + 1)

  def xy(step, value):
    x = left + (step - s0) / (s1 - s0) * (width - left - right)
    y = top + (hi - value) / (hi - lo) * (height - top - bottom)
    return int(round(x)), int(round(y))

  cv2.rectangle(img, (left, top), (width - right, height - bottom), (0, 0, 0), 1)
  for i in range(5):
    value = lo + (hi - lo) * i / 4
    _, y = xy(s0, value)
    cv2.putText(img, f"{value:.2f}", (4, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1)
    step = s0 + (s1 - s0) * i / 4
    x, _ = xy(step, lo)
    cv2.putText(img, f"{int(step)}", (x - 14, height - bottom + 16), cv2.FONT_HERSHEY_SIMPLEX,
                0.38, (0, 0, 0), 1)
  cv2.putText(img, f"{label}, long side {max_side} px (x: generator steps)", (left, 18),
              cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
  legend_y = height - bottom + 34
  for mask, color in COLORS.items():
    pts = sorted((int(r["step"]), float(r[key])) for r in model if r["mask"] == mask)
    for (a, va), (b, vb) in zip(pts, pts[1:]):
      cv2.line(img, xy(a, va), xy(b, vb), color, 2, cv2.LINE_AA)
    for a, va in pts:
      cv2.circle(img, xy(a, va), 3, color, -1, cv2.LINE_AA)
    for r in classic:
      if r["mask"] != mask:
        continue
      _, y = xy(s0, float(r[key]))
      dash = 4 if r["method"] == "telea" else 10
      for x in range(left, width - right, 2 * dash):
        cv2.line(img, (x, y), (min(x + dash, width - right), y), color, 1)
    cv2.putText(img, f"{mask}: ours (solid), Telea (short dash), NS (long dash)",
                (left + 6, legend_y), cv2.FONT_HERSHEY_SIMPLEX, 0.36, color, 1)
    legend_y += 14
  return img


def main(argv):
  del argv
  csv_path, png_path = FLAGS.out + ".csv", FLAGS.out + ".png"
  rows = _read_rows(csv_path)
  done = {(r["step"], r["max_side"], r["method"]) for r in rows}
  with tempfile.TemporaryDirectory() as tmp:
    for max_side in FLAGS.max_sides:
      if ("-1", max_side, "telea") not in done:
        for (mask, method), (psnr, l1) in _evaluate("telea", None, max_side, tmp).items():
          if method in ("telea", "ns"):
            rows.append(dict(step=-1, max_side=max_side, mask=mask, method=method,
                             psnr_hole=psnr, l1_hole=l1))
      for step, path in _snapshots():
        if (str(step), max_side, "model") in done:
          continue
        for (mask, method), (psnr, l1) in _evaluate("model", path, max_side, tmp).items():
          if method == "model":
            rows.append(dict(step=step, max_side=max_side, mask=mask, method="model",
                             psnr_hole=psnr, l1_hole=l1))
        print(f"step {step} at {max_side}: scored", flush=True)
        _write_rows(csv_path, rows)
  rows = [{k: str(v) for k, v in r.items()} for r in rows]
  _write_rows(csv_path, rows)
  panels = []
  for max_side in FLAGS.max_sides:
    panels.append(np.concatenate([_panel(rows, max_side, "psnr_hole", "hole PSNR (dB)"),
                                  _panel(rows, max_side, "l1_hole", "hole L1 (%)")], axis=1))
  picture = np.concatenate(panels, axis=0)
  ok, data = cv2.imencode(".png", picture)
  assert ok
  atomic_write(png_path, data.tobytes())
  print(f"wrote {csv_path} and {png_path}")


if __name__ == "__main__":
  app.run(main)
