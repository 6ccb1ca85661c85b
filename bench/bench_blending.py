r"""What seam blending (``model/inference/blending.py``) costs, alone and inside ``test.py``.

  python bench/bench_blending.py                       # both tables; writes bench/BLENDING_RESULTS.md
  python bench/bench_blending.py --parts solver --sizes 256,512 --output /tmp/b.md
  python bench/bench_blending.py --parts e2e --checkpoint_dir ../shared/golden/deepfill_v1

``solver``: per hole box of side N (a photo-like image of side 2N — a horizontal ramp plus
noise — with a centred N x N hole; the fill is the truth shifted by 25 levels plus noise),
``blending.blend`` traced once with dynamic shapes (as in ``Inpainter.fill``), median of
three calls after a warm-up, for this checkout ("after") and for ``--baseline`` (a git
revision's ``blending.py``, "before"). Errors are against the exact solution of the same
equations (a rectangle: a float64 discrete sine transform in NumPy): the largest, and the
share of hole values whose rounded uint8 differs from the exact one's; "vs before" is the
share of rounded hole values that differ between the two solvers and the largest difference.

``e2e``: ``test.py`` wall time with ``--seam_blend`` against ``--noseam_blend`` (each run as a
subprocess under ``nice -n 0``, alternated, median of ``--repeats``): one 1024 x 1024 photo
with a centred hole of 25 % of it, and folders of ``--count`` 512 x 512 photos with box holes
of ~18 % (seeded positions), made from ``--photos``; medians, and the fastest runs (the least
disturbed by other work on a shared machine).
"""
import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import harness  # noqa: E402  bench/harness.py
import machine  # noqa: E402  bench/machine.py (this script's folder is on sys.path)
import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")


def exact_correction(known, fill, top, side):
  """``h`` on a ``side`` x ``side`` hole at (top, top) not touching the image edge, in float64:
  the 5-point Dirichlet Laplacian of a rectangle, diagonalised by the sine transform."""
  rows = slice(top, top + side)
  rhs = np.zeros((side, side, known.shape[2]))
  k, y = known.astype(np.float64), fill[rows, rows].astype(np.float64)
  rhs[0] += k[top - 1, rows] - y[0]
  rhs[-1] += k[top + side, rows] - y[-1]
  rhs[:, 0] += k[rows, top - 1] - y[:, 0]
  rhs[:, -1] += k[rows, top + side] - y[:, -1]
  i = np.arange(1, side + 1)
  sine = np.sin(np.pi * np.outer(i, i) / (side + 1))
  lam = 2.0 - 2.0 * np.cos(np.pi * i / (side + 1))
  lam = lam[:, None] + lam[None, :]
  scale = (2.0 / (side + 1)) ** 2
  return np.stack([scale * sine @ ((sine @ rhs[..., c] @ sine) / lam) @ sine
                   for c in range(rhs.shape[2])], -1)


def load_blending(revision):
  """``blending.py`` as it was at ``revision`` (a module of its own)."""
  source = subprocess.run(["git", "-C", REPO, "show", f"{revision}:model/inference/blending.py"],
                          check=True, capture_output=True, text=True).stdout
  path = os.path.join(tempfile.mkdtemp(), "blending_before.py")
  with open(path, "w") as f:
    f.write(source)
  spec = importlib.util.spec_from_file_location("blending_before", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def timed(fn, args, repeats=3):
  fn(*args)
  times, out = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn(*args).numpy()
    times.append(time.perf_counter() - start)
  return statistics.median(times), out


def solver_table(sizes, baseline):
  import tensorflow as tf
  from model.inference import blending

  image = tf.TensorSpec([None, None, 3], tf.float32)
  mask = tf.TensorSpec([None, None], tf.bool)

  def traced(fn):
    return tf.function(fn, input_signature=[image, image, mask], autograph=False)

  after = traced(blending.blend)
  steps_fn = traced(blending.correction_and_steps)
  before = traced(load_blending(baseline).blend) if baseline else None
  rng = np.random.default_rng(0)
  rows = ["| hole box | before: s | after: s | after: CG steps | max error vs exact, before / "
          "after (levels) | hole pixels whose rounded value ≠ exact, before / after | "
          "hole pixels rounded differently by before and after (max levels) |",
          "|---|---|---|---|---|---|---|"]

  def pixels_off(a, b):
    return (np.clip(np.round(a), 0, 255) != np.clip(np.round(b), 0, 255)).any(-1).mean() * 100
  for side in sizes:
    n, top = 2 * side, side // 2
    img = (rng.uniform(0, 255, (n, n, 3)) * 0.2
           + np.linspace(0, 200, n)[None, :, None]).astype(np.float32)
    hole = np.zeros((n, n), bool)
    hole[top:top + side, top:top + side] = True
    fill = (img + 25.0 + rng.normal(0, 5, img.shape)).astype(np.float32)
    args = tf.constant(img), tf.constant(fill), tf.constant(hole)
    seconds, out = timed(after, args)
    box = (slice(top - 1, top + side + 1),) * 2
    steps = int(steps_fn(img[box], fill[box], hole[box])[1])
    exact = fill[hole] + exact_correction(img, fill, top, side).reshape(-1, 3)
    error = f"{np.abs(out[hole] - exact).max():.3f}"
    off = f"{pixels_off(out[hole], exact):.3f} %"
    old_s, versus = "–", "–"
    if before is not None:
      old_s, old = timed(before, args)
      old_s = f"{old_s:.2f}"
      error = f"{np.abs(old[hole] - exact).max():.3f} / " + error
      off = f"{pixels_off(old[hole], exact):.3f} % / " + off
      most = np.abs(np.round(old[hole]) - np.round(out[hole])).max()
      versus = f"{pixels_off(old[hole], out[hole]):.3f} % ({most:.0f})"
    rows.append(f"| {side}² | {old_s} | {seconds:.3f} | {steps} | {error} | {off} | {versus} |")
    print(rows[-1], flush=True)
  return rows


def make_inputs(folder, photos, count):
  """One 1024² photo with a 25 % centred hole, and ``count`` 512² photos with ~18 % boxes."""
  from PIL import Image

  names = sorted(n for n in os.listdir(photos) if n.lower().endswith((".jpg", ".png")))
  rng = np.random.default_rng(0)

  def square(name, side):
    img = Image.open(os.path.join(photos, name)).convert("RGB")
    s = min(img.size)
    left, top = (img.size[0] - s) // 2, (img.size[1] - s) // 2
    return img.crop((left, top, left + s, top + s)).resize((side, side), Image.LANCZOS)

  def mask(side, box, top, left):
    m = np.zeros((side, side), np.uint8)
    m[top:top + box, left:left + box] = 255
    return Image.fromarray(m)

  big = os.path.join(folder, "big")
  os.makedirs(big)
  square(names[0], 1024).save(os.path.join(big, "photo.png"))
  mask(1024, 512, 256, 256).save(os.path.join(big, "photo_mask.png"))
  small = os.path.join(folder, "small")
  os.makedirs(os.path.join(small, "images"))
  os.makedirs(os.path.join(small, "masks"))
  box = int(round(512 * 0.18 ** 0.5))
  for k in range(count):
    stem = f"photo{k:02d}"
    square(names[k % len(names)], 512).save(os.path.join(small, "images", stem + ".png"))
    top, left = rng.integers(8, 512 - box - 8, size=2)
    mask(512, box, top, left).save(os.path.join(small, "masks", stem + ".png"))
  return ((os.path.join(big, "photo.png"), os.path.join(big, "photo_mask.png")),
          (os.path.join(small, "images"), os.path.join(small, "masks")), box)


def run_test_py(image, mask, output, checkpoint_dir, blend):
  command = ["nice", "-n", "0", sys.executable, os.path.join(REPO, "test.py"),
             f"--image={image}", f"--mask={mask}", f"--output={output}",
             f"--checkpoint_dir={checkpoint_dir}", "--seam_blend" if blend else "--noseam_blend"]
  done = harness.run(command)
  if done.status:
    sys.exit(f"error: test.py failed: {harness.tail(done.stderr)}")
  return done.wall_s


def e2e_table(checkpoint_dir, photos, counts, repeats):
  rows = ["| case | test.py --noseam_blend: s | test.py --seam_blend: s | blending adds "
          "(medians) | blending adds (fastest runs) |", "|---|---|---|---|---|"]
  with tempfile.TemporaryDirectory() as folder:
    big, small, box = make_inputs(folder, photos, max(counts))
    cases = [("1024² photo, 25 % hole (512² box)", big, os.path.join(folder, "out.png"))]
    for count in counts:
      # The first `count` photos of the folder, in a folder of their own.
      images = os.path.join(folder, f"images{count}")
      masks = os.path.join(folder, f"masks{count}")
      os.makedirs(images)
      os.makedirs(masks)
      for name in sorted(os.listdir(small[0]))[:count]:
        shutil.copy(os.path.join(small[0], name), os.path.join(images, name))
        shutil.copy(os.path.join(small[1], name), os.path.join(masks, name))
      cases.append((f"{count} photos of 512², ~18 % box holes ({box}²)", (images, masks),
                    os.path.join(folder, f"out{count}")))
    for label, (image, mask), output in cases:
      times = {True: [], False: []}
      for _ in range(repeats):
        for blend in (False, True):
          times[blend].append(run_test_py(image, mask, output, checkpoint_dir, blend))
      off, on = statistics.median(times[False]), statistics.median(times[True])
      low_off, low_on = min(times[False]), min(times[True])
      rows.append(f"| {label} | {off:.1f} (fastest {low_off:.1f}) | {on:.1f} (fastest "
                  f"{low_on:.1f}) | {(on / off - 1) * 100:+.1f} % | "
                  f"{(low_on / low_off - 1) * 100:+.1f} % |")
      print(rows[-1], flush=True)
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--parts", default="solver,e2e")
  parser.add_argument("--sizes", default="256,512,1024", help="hole box sides (solver)")
  parser.add_argument("--baseline", default="b066107",
                      help="git revision whose blending.py is 'before' ('' to skip)")
  parser.add_argument("--checkpoint_dir", default=os.path.join(SHARED, "golden", "deepfill_v1",
                                                               "checkpoint"))
  parser.add_argument("--photos", default=os.path.join(SHARED, "data", "dev", "photos"))
  parser.add_argument("--count", default="10,26",
                      help="512² photos in each folder case (comma-separated)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__),
                                                       "BLENDING_RESULTS.md"))
  args = parser.parse_args()
  parts = args.parts.split(",")
  load = os.getloadavg()[0]
  sections = []
  if "solver" in parts:
    rows = solver_table([int(s) for s in args.sizes.split(",")], args.baseline)
    sections.append(f"## The solver alone\n\n`python bench/bench_blending.py --parts solver "
                    f"--sizes {args.sizes} --baseline {args.baseline}`\n\n" + "\n".join(rows))
  if "e2e" in parts:
    rows = e2e_table(args.checkpoint_dir, args.photos,
                     [int(c) for c in args.count.split(",")], args.repeats)
    sections.append(f"## test.py end to end\n\n`python bench/bench_blending.py --parts e2e` "
                    f"(checkpoint `{os.path.relpath(args.checkpoint_dir, REPO)}`, median of "
                    f"{args.repeats}, each run under `nice -n 0`)\n\n" + "\n".join(rows))
  from model.fileio.atomic import atomic_write
  text = (f"# Seam blending cost\n\nCPU {machine.cpu_model()}, {os.cpu_count()} cores; load "
          f"average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (a shared "
          f"machine)\n\n" + "\n\n".join(sections) + "\n")
  atomic_write(args.output, text)
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
