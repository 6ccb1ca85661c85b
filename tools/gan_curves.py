r"""The adversarial terms of a training run's TensorBoard log as a picture and a CSV.

  python tools/gan_curves.py --run_dir RUN --output curves.png [--bin 20] [--csv curves.csv]

Reads the scalar events ``train.py`` writes to ``RUN/logs`` and plots, per bin of generator
steps, the mean of: the critics' Wasserstein estimates W = E[D(real)] - E[D(fake)]
(``-loss/d_global`` and ``-loss/d_local``), the gradient-penalty term ``loss/gp`` (before its
weight lambda) and the generator's hole L1 ``loss/l1_loss``. What a healthy WGAN-GP run looks like
is described in ``checkpoints/demo_gan_run/TRAINING.md``. Errors print one line and exit with
status 1.
"""
import collections
import glob
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "Training run folder (holds logs/).")
flags.DEFINE_string("output", None, "PNG to write.")
flags.DEFINE_string("csv", None, "Optional CSV of the binned means.")
flags.DEFINE_integer("bin", 20, "Generator steps per plotted point.", lower_bound=1)
flags.mark_flags_as_required(["run_dir", "output"])

# (tag, sign, label, BGR colour); W estimates are the negated critic losses.
SERIES = (("loss/d_global", -1.0, "W global", (200, 80, 0)),
          ("loss/d_local", -1.0, "W local", (0, 140, 255)),
          ("loss/gp", 1.0, "gradient penalty (x1)", (60, 160, 60)),
          ("loss/l1_loss", 1.0, "hole L1 (x10)", (40, 40, 200)))
SCALE = {"loss/l1_loss": 10.0}


def read_scalars(run_dir):
  """``{tag: {step: value}}`` of every scalar event under ``run_dir/logs``."""
  import tensorflow as tf
  from tensorflow.core.util import event_pb2
  values = collections.defaultdict(dict)
  files = sorted(glob.glob(os.path.join(run_dir, "logs", "**", "events.*"), recursive=True))
  for path in files:
    for record in tf.data.TFRecordDataset(path):
      event = event_pb2.Event.FromString(record.numpy())
      for v in event.summary.value:
        if v.HasField("simple_value"):
          values[v.tag][event.step] = v.simple_value
        elif v.HasField("tensor") and not v.tensor.string_val:
          values[v.tag][event.step] = float(tf.make_ndarray(v.tensor))
  return values


def binned(values, width):
  """``[(bin start, {tag: mean})]`` for the tags of ``SERIES`` (signed and scaled)."""
  steps = sorted({s for tag, *_ in SERIES for s in values.get(tag, {})})
  rows = []
  for start in range(min(steps), max(steps) + 1, width) if steps else []:
    row = {}
    for tag, sign, _, _ in SERIES:
      xs = [v for s, v in values.get(tag, {}).items() if start <= s < start + width]
      if xs:
        row[tag] = sign * SCALE.get(tag, 1.0) * sum(xs) / len(xs)
    if row:
      rows.append((start, row))
  return rows


def plot(rows, width=760, height=360):
  """A cv2 line plot of ``binned`` rows."""
  import cv2
  import numpy as np
  img = np.full((height, width, 3), 255, np.uint8)
  left, right, top, bottom = 60, 20, 28, 60
  vals = [v for _, row in rows for v in row.values()] or [0.0, 1.0]
  lo, hi = min(vals + [0.0]), max(vals)
  pad = max(hi - lo, 1e-6) * 0.08
  lo, hi = lo - pad, hi + pad
  s0 = rows[0][0] if rows else 0
  s1 = max(rows[-1][0] if rows else 1, s0 + 1)

  def xy(step, value):
    return (int(round(left + (step - s0) / (s1 - s0) * (width - left - right))),
            int(round(top + (hi - value) / (hi - lo) * (height - top - bottom))))

  cv2.rectangle(img, (left, top), (width - right, height - bottom), (0, 0, 0), 1)
  cv2.line(img, xy(s0, 0.0), xy(s1, 0.0), (180, 180, 180), 1)
  for i in range(5):
    value, step = lo + (hi - lo) * i / 4, s0 + (s1 - s0) * i / 4
    cv2.putText(img, f"{value:.2f}", (4, xy(s0, value)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                (0, 0, 0), 1)
    cv2.putText(img, f"{int(step)}", (xy(step, lo)[0] - 14, height - bottom + 16),
                cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1)
  cv2.putText(img, "critic and generator terms per step (x: steps)", (left, 18),
              cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
  x_legend = left
  for tag, _, label, color in SERIES:
    pts = [(s, row[tag]) for s, row in rows if tag in row]
    for (a, va), (b, vb) in zip(pts, pts[1:]):
      cv2.line(img, xy(a, va), xy(b, vb), color, 2, cv2.LINE_AA)
    cv2.putText(img, label, (x_legend, height - 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1)
    x_legend += 10 + cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)[0][0] + 20
  return img


def main(argv):
  from model.errors import UserError
  from model.fileio.atomic import atomic_write

  def run():
    if not os.path.isdir(os.path.join(FLAGS.run_dir, "logs")):
      raise UserError(f"{FLAGS.run_dir}: no logs/ folder (not a training run?)")
    cli.import_tensorflow(False)
    rows = binned(read_scalars(FLAGS.run_dir), FLAGS.bin)
    if not rows:
      raise UserError(f"{FLAGS.run_dir}: no critic or loss scalars in its logs")
    import cv2
    ok, png = cv2.imencode(".png", plot(rows))
    if not ok:
      raise UserError(f"{FLAGS.output}: cannot encode the picture")
    atomic_write(FLAGS.output, png.tobytes())
    if FLAGS.csv:
      lines = ["step," + ",".join(label for _, _, label, _ in SERIES)]
      lines += [f"{s}," + ",".join(f"{row[t]:.5f}" if t in row else "" for t, *_ in SERIES)
                for s, row in rows]
      atomic_write(FLAGS.csv, "\n".join(lines) + "\n")
    print(f"wrote {FLAGS.output}" + (f" and {FLAGS.csv}" if FLAGS.csv else ""))
    return 0

  return cli.guarded(run, argv=argv)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.one_line_flag_parser(FLAGS))
