r"""What seam blending (``model/inference/blending.py``) adds to an inpainting call.

  python bench/bench_blending.py                     # 512², 1024², 2048²; writes bench/BLENDING_RESULTS.md
  python bench/bench_blending.py --sizes 512 --output /tmp/b.md

Each case: a photo-like image of side N (a horizontal ramp plus noise), a centred square hole of
25 % of the image, a fill that is the truth shifted by 25 levels plus noise. ``blending.blend``
runs traced once with dynamic shapes (as in ``Inpainter.fill``); the table gives the median of
three calls after a warm-up call, and the mean hole error left by the shift (it should be the
noise's, about 4 levels).
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import machine  # noqa: E402  bench/machine.py (this script's folder is on sys.path)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from model.fileio.atomic import atomic_write  # noqa: E402
from model.inference import blending  # noqa: E402


def case(fn, side, rng):
  img = (rng.uniform(0, 255, (side, side, 3)) * 0.2
         + np.linspace(0, 200, side)[None, :, None]).astype(np.float32)
  hole = np.zeros((side, side), bool)
  hole[side // 4:3 * side // 4, side // 4:3 * side // 4] = True
  fill = img + 25.0 + rng.normal(0, 5, img.shape).astype(np.float32)
  args = tf.constant(img), tf.constant(fill), tf.constant(hole)
  fn(*args)
  times = []
  for _ in range(3):
    start = time.perf_counter()
    out = fn(*args).numpy()
    times.append(time.perf_counter() - start)
  return statistics.median(times), float(np.abs(out - img)[hole].mean())


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", default="512,1024,2048")
  parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__),
                                                       "BLENDING_RESULTS.md"))
  args = parser.parse_args()
  image = tf.TensorSpec([None, None, 3], tf.float32)
  fn = tf.function(blending.blend, input_signature=[image, image, tf.TensorSpec([None, None],
                                                                                  tf.bool)])
  rng = np.random.default_rng(0)
  rows = ["| image | hole box | seconds (median of 3) | mean hole error (levels) |",
          "|---|---|---|---|"]
  for side in (int(s) for s in args.sizes.split(",")):
    seconds, error = case(fn, side, rng)
    rows.append(f"| {side}² | {side // 2}² | {seconds:.2f} | {error:.2f} |")
    print(rows[-1], flush=True)
  text = (f"# Seam blending cost\n\n`python bench/bench_blending.py --sizes {args.sizes}`; "
          f"CPU {machine.cpu_model()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f} at the end\n\n" + "\n".join(rows) + "\n")
  atomic_write(args.output, text)
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
