r"""Inference benchmark: time, peak memory and FLOP efficiency of the generator.

  python bench/bench_inference.py                       # full table, writes bench/RESULTS.md
  python bench/bench_inference.py --sizes 256x256,512x512 --holes 0.25 --repeats 3

Each (size, hole, path) case runs in a fresh Python process so that its peak
resident memory (``ru_maxrss``) is its own. Timing excludes warm-up (first call,
graph tracing) and is the median of ``--repeats`` calls (``--repeats 0``: the first call,
tracing included; images above 2 MP use ``--repeats_large``, 0 by default) of the model on a
random-weight v1 generator (weights do not change the cost). Paths:
``local`` = what ``test.py`` runs (hole-local stages, tiled attention under
``--max_memory_gb``); ``dense`` = the whole generator at once with dense attention
(the release's computation; only where it fits).
"""
import argparse
import json
import os
import platform
import sys
import time

import harness  # bench/harness.py (this script's folder is on sys.path)
import machine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SIZES = "256x256,512x512,1024x1024,2048x2048,4000x3000"
DENSE_MAX_PIXELS = 600_000   # dense attention beyond ~0.6 MP needs many GB
LARGE_PIXELS = 2_000_000     # cases above this use --repeats_large (minutes per call)


def _ceiling():
  import tensorflow as tf
  x = tf.random.normal([1, 128, 128, 128])
  k = tf.random.normal([3, 3, 128, 128])
  a = tf.random.normal([2048, 2048])
  conv = tf.function(lambda: tf.nn.conv2d(x, k, 1, "SAME"))
  mm = tf.function(lambda: tf.matmul(a, a))
  out = {}
  for name, fn, flops in (("conv3x3_128", conv, 2 * 128 * 128 * 9 * 128 * 128),
                          ("matmul_2048", mm, 2 * 2048 ** 3)):
    fn().numpy()
    times = []
    for _ in range(7):
      t = time.perf_counter()
      fn().numpy()
      times.append(time.perf_counter() - t)
    out[name] = flops / sorted(times)[len(times) // 2] / 1e9
  return out


def run_case(args):
  """Child process: one case; prints a JSON line."""
  import numpy as np
  import resource
  import tensorflow as tf
  sys.path.insert(0, REPO)
  from model import config as config_lib
  from model import generator as generator_lib
  from model.inference import inpainter as inpaint
  from model.inference import local_plan as local_inference

  h, w = args.size
  tf.keras.utils.set_random_seed(0)
  gen = generator_lib.build_generator(config_lib.preset("v1", cnum=32))
  inp = inpaint.Inpainter(gen, config_lib.preset("v1"), max_memory_gb=args.max_memory_gb)
  hole = np.zeros([h, w], bool)
  side_h, side_w = int(round(h * args.hole ** 0.5)), int(round(w * args.hole ** 0.5))
  y0, x0 = (h - side_h) // 2, (w - side_w) // 2
  hole[y0:y0 + side_h, x0:x0 + side_w] = True
  pixels = np.random.default_rng(0).integers(0, 256, [h, w, 3]).astype(np.uint8)
  local = args.path == "local"
  tile = int(local_inference.attention_tile(h, w, inp.budget_bytes)) if local else None
  x = tf.zeros([1, h, w, 3])
  m = tf.constant(hole[None, :, :, None], tf.float32)
  dense = tf.function(lambda a, b: gen((a, b))[1])
  run = (lambda: inp.inpaint(pixels, hole)) if local else (lambda: dense(x, m).numpy())
  t = time.perf_counter()
  run()
  warmup = time.perf_counter() - t
  times = []
  for _ in range(args.repeats):
    t = time.perf_counter()
    run()
    times.append(time.perf_counter() - t)
  median = harness.median(times) if times else warmup  # --repeats 0: first call
  # FLOPs actually computed by the path (the Inpainter picks local only when it pays off).
  box = (y0 // 8 * 8, -(-(y0 + side_h) // 8) * 8, x0 // 8 * 8, -(-(x0 + side_w) // 8) * 8)
  needed = local_inference.needed_queries(gen, m)
  cost = local_inference.plan(gen, box, h, w, needed)
  used_local = bool(local and cost["local"] < local_inference.LOCAL_THRESHOLD * cost["full"])
  flops = float(cost["local"] if used_local else cost["full"])
  attention = float(cost["local_attention"] if used_local else cost["full_attention"])
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  print(json.dumps({
      "size": f"{w}x{h}", "hole": args.hole, "path": args.path, "median_s": median,
      "warmup_s": warmup, "peak_gb": peak, "gflop": flops / 1e9,
      "conv_gflop": (flops - attention) / 1e9, "dense_gflop": float(cost["full"]) / 1e9,
      "generator_conv_gflop": float(cost["full"] - cost["full_attention"]) / 1e9,
      "repeats": args.repeats,
      "used_local": used_local, "queries": float(cost["queries"]) if used_local else None,
      "gflops_per_s": flops / 1e9 / median, "tile": tile}), flush=True)


def _parse_size(text):
  w, h = text.lower().split("x")
  return int(h), int(w)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default=DEFAULT_SIZES, help="WxH list")
  parser.add_argument("--holes", default="0.25,0.05", help="hole area fractions")
  parser.add_argument("--paths", default="local,dense")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--repeats_large", type=int, default=0,
                      help="repeats above 2 MP (0: time the first call, tracing included)")
  parser.add_argument("--max_memory_gb", type=float, default=1.0)
  parser.add_argument("--output", default=os.path.join(REPO, "bench", "RESULTS.md"))
  parser.add_argument("--case", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--size", type=_parse_size, help=argparse.SUPPRESS)
  parser.add_argument("--hole", type=float, help=argparse.SUPPRESS)
  parser.add_argument("--path", help=argparse.SUPPRESS)
  args = parser.parse_args()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if args.case:
    run_case(args)
    return 0

  import tensorflow as tf
  ceiling = _ceiling()
  rows = []
  header = ("| size | hole | path | timed | s | warm-up s | peak GB | GFLOP computed "
            "| GFLOP/s | × conv floor | dense GFLOP | local used |")
  print(f"ceiling: conv3x3 {ceiling['conv3x3_128']:.0f} GFLOP/s, matmul "
        f"{ceiling['matmul_2048']:.0f} GFLOP/s")
  print(header)
  for size in args.sizes.split(","):
    h, w = _parse_size(size)
    for hole in (float(v) for v in args.holes.split(",")):
      for path in args.paths.split(","):
        if path == "dense" and h * w > DENSE_MAX_PIXELS:
          continue
        cmd = [sys.executable, os.path.abspath(__file__), "--case", "--size", size, "--hole",
               str(hole), "--path", path, "--repeats",
               str(args.repeats_large if h * w > LARGE_PIXELS else args.repeats), "--max_memory_gb",
               str(args.max_memory_gb)]
        proc = harness.run(cmd)
        r = harness.last_json(proc.stdout)
        if proc.status != 0 or r is None:
          row = f"| {size} | {hole:.0%} | {path} | failed (exit {proc.status}) |||||||||"
          print(row, harness.tail(proc.stderr))
          rows.append(row)
          continue
        timed = f"median of {r['repeats']}" if r["repeats"] else "first call"
        # The floor: the whole generator's convolutions at the conv ceiling.
        floor = r["generator_conv_gflop"] / ceiling["conv3x3_128"]
        row = (f"| {r['size']} | {hole:.0%} | {path} | {timed} | {r['median_s']:.2f} "
               f"| {r['warmup_s']:.1f} | {r['peak_gb']:.2f} | {r['gflop']:.0f} "
               f"| {r['gflops_per_s']:.0f} | {r['median_s'] / floor:.2f} "
               f"| {r['dense_gflop']:.0f} | {'yes' if r['used_local'] else 'no'} |")
        print(row, flush=True)
        rows.append(row)
  cpu = machine.cpu_model()
  text = "\n".join([
      "# Inference benchmark", "",
      f"Command: `python bench/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}`".rstrip(),
      "", f"Machine: {os.cpu_count()} CPUs ({cpu}), {platform.platform()}; Python "
      f"{platform.python_version()}, TensorFlow {tf.__version__}. Random-weight v1 generator "
      f"(cnum 32), batch 1, centred square hole; --max_memory_gb {args.max_memory_gb}.", "",
      f"Measured ceiling: conv 3×3 128→128 at 128² {ceiling['conv3x3_128']:.0f} GFLOP/s; "
      f"matmul 2048² {ceiling['matmul_2048']:.0f} GFLOP/s.", "",
      "`local` = hole-local path used by test.py and the SavedModel; `dense` = whole generator "
      "with dense attention (the release's computation). `timed`: median of N calls after a "
      "warm-up call, or (above 2 MP) the first call, tracing included. GFLOP counts what the "
      "path computes (convs + attention matmuls); `× conv floor` = time / (the whole "
      "generator's conv GFLOP / conv ceiling), the time its convolutions alone would take at "
      "the ceiling; `dense GFLOP` is what the dense path would need. "
      "Analysis: bench/README.md.", "",
      header, "|" + "---|" * 12, *rows, ""])
  from model.fileio.atomic import atomic_write
  atomic_write(args.output, text)
  print(f"wrote {args.output}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
