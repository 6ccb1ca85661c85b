r"""Memory and time of ``Inpainter.inpaint`` by hole shape and by number of hole regions.

  nice python bench/bench_regions.py --cases line:1000,frame:1000,box:1000 --output /tmp/r.json
  nice python bench/bench_regions.py --repo /work/main --cases grid:600:15 --output /tmp/before.json

Each case runs in a fresh interpreter (``harness.run``: wall seconds and the child's peak RSS)
against the checkout ``--repo`` (default: this one), with ``--checkpoint_dir`` (default the demo
model, strategy ``crop`` and seam blending as it declares). Cases, ``kind:side[:n]``:

* ``line``: a 2-px diagonal from corner to corner (one region; a 1-px one is a region per cell) of a ``side``² photo;
* ``frame``: a 1-px rectangle one pixel inside the border;
* ``box``: a centred box of a quarter of the photo;
* ``grid``: ``n`` x ``n`` holes of 8 x 8 px, evenly spaced.

The photo is a seeded smooth pattern plus noise. The child prints the seconds of the ``inpaint``
call (after ``Inpainter.warm_up``, as a server pays tracing once per process), its peak RSS
after the warm-up, before the photo is made (``baseline_gb``) and after the photo (``peak_gb``).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402  bench/harness.py

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_case(kind, side, n=0):
  """uint8 [side, side, 3] photo and bool hole of one case."""
  import cv2  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  y, x = np.mgrid[:side, :side].astype(np.float32) / max(side, 1)
  base = np.stack([128 + 100 * np.sin(6 * x), 128 + 100 * np.cos(5 * y),
                   128 + 80 * np.sin(4 * (x + y))], -1)
  rgb = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
  hole = np.zeros((side, side), np.uint8)
  if kind == "line":
    cv2.line(hole, (0, 0), (side - 1, side - 1), 1, 2)   # 2 px: 4-connected, one region
  elif kind == "frame":
    cv2.rectangle(hole, (1, 1), (side - 2, side - 2), 1, 1)
  elif kind == "box":
    q = side // 4
    hole[q:side - q, q:side - q] = 1
  elif kind == "grid":
    step = side / n
    for i in range(n):
      for j in range(n):
        t, l = int(step * (i + 0.5)) - 4, int(step * (j + 0.5)) - 4
        hole[t:t + 8, l:l + 8] = 1
  else:
    raise ValueError(kind)
  return rgb, hole.astype(bool)


def child(repo, checkpoint, kind, side, n):
  """Runs one case in this process (called in a fresh interpreter)."""
  import resource  # pylint: disable=import-outside-toplevel
  import time  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, repo)
  from model.inference import inpainter  # pylint: disable=import-outside-toplevel
  model = inpainter.Inpainter.from_checkpoint(checkpoint)
  model.warm_up()
  baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  rgb, hole = make_case(kind, side, n)
  start = time.perf_counter()
  model.inpaint(rgb, hole)
  seconds = time.perf_counter() - start
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  return {"seconds": seconds, "hole_px": int(hole.sum()), "baseline_gb": baseline,
          "peak_gb": peak}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repo", default=REPO)
  parser.add_argument("--checkpoint_dir", default=os.path.join(REPO, "checkpoints", "demo"))
  parser.add_argument("--cases", required=True, help="kind:side[:n],...")
  parser.add_argument("--output", required=True, help="JSON lines appended here")
  args = parser.parse_args()
  for case in args.cases.split(","):
    parts = case.split(":")
    kind, side, n = parts[0], int(parts[1]), int(parts[2]) if len(parts) > 2 else 0
    run = harness.run(harness.python_command(__file__, "child", os.path.abspath(args.repo),
                                             os.path.abspath(args.checkpoint_dir), kind, side,
                                             n))
    result = harness.last_json(run.stdout) or {"error": harness.tail(run.stderr)}
    row = dict(result, case=case, repo=args.repo, mp=side * side / 1e6, child_peak_gb=run.peak_gb,
               wall_s=run.wall_s, status=run.status, load=run.load)
    print(json.dumps(row), flush=True)
    with open(args.output, "a") as f:
      f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
  main()
