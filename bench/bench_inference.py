r"""Inference benchmark: time, peak memory and FLOP efficiency of the generator.

  python bench/bench_inference.py                       # full table, writes bench/RESULTS.md
  python bench/bench_inference.py --sizes 256x256,512x512 --holes 0.25 --repeats 3

Each (size, hole, path) case runs in a fresh Python process so that its peak
resident memory (``ru_maxrss``) is its own. Timing excludes warm-up (first call,
graph tracing) and is the median of ``--repeats`` calls of the model on a
random-weight v1 generator (weights do not change the cost). Paths:
``local`` = what ``test.py`` runs (hole-local stages, tiled attention under
``--max_memory_gb``); ``dense`` = the whole generator at once with dense attention
(the release's computation; only where it fits).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SIZES = "256x256,512x512,1024x1024,2048x2048,4000x3000"
DENSE_MAX_PIXELS = 600_000   # dense attention beyond ~0.6 MP needs many GB


def conv_flops(gen, height, width, region=None):
  """Multiply-add FLOPs (×2) of every generator conv on an H×W input."""
  from layers.gen_conv import GenDeconv
  total = 0
  paths = (("coarse", gen.coarse_layers, 5), ("hallu", gen.hallu_layers, 5),
           ("encoder", gen.pm_encoder, 5), ("decoder", gen.pm_decoder, None),
           ("merge", gen.merge_layers, None))
  channels_in = {"decoder": gen.pm_encoder[-1].filters,
                 "merge": gen.hallu_layers[-1].filters + gen.pm_decoder[-1].filters}
  per_path = {}
  for name, layers, cin in paths:
    cin = channels_in.get(name, cin)
    h, w = (height, width) if name in ("coarse", "hallu", "encoder") else (height // 4, width // 4)
    if region is not None:
      h, w = region[name]
    flops = 0
    for layer in layers:
      if isinstance(layer, GenDeconv):
        h, w = h * 2, w * 2
        layer = layer.gen_conv
      s = layer.strides
      h, w = -(-h // s), -(-w // s)
      cout = layer.conv.filters
      flops += 2 * h * w * layer.kernel_size ** 2 * cin * cout
      cin = layer.filters
    per_path[name] = flops
    total += flops
  return total, per_path


def attention_flops(queries, keys, channels, ksize=3, rate=2):
  """Score matmuls (k²C per pair) + reconstruction matmuls ((2r)²C per pair), ×2."""
  return 2 * queries * keys * channels * (ksize * ksize + 4 * rate * rate)


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
  from model import inpaint
  from model import local_inference

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
  tile = inpaint.attention_tile_for_budget(h, w, inp.budget_bytes)
  if not local:
    tile = None
  t = time.perf_counter()
  if local:
    inp.forward(pixels, hole, local=True)
  else:
    inp.generator((tf.zeros([1, h, w, 3]), tf.constant(hole[None, :, :, None], tf.float32)))
  warmup = time.perf_counter() - t
  times = []
  for _ in range(args.repeats):
    t = time.perf_counter()
    if local:
      inp.forward(pixels, hole, local=True)
    else:
      dense = tf.function(lambda a, b: gen((a, b))[1]) if not times else dense  # noqa: F821
      dense(tf.zeros([1, h, w, 3]), tf.constant(hole[None, :, :, None], tf.float32)).numpy()
    times.append(time.perf_counter() - t)
  median = sorted(times)[len(times) // 2]
  # FLOPs actually computed by the path.
  c = gen.pm_encoder[-1].filters
  keys = (h // 8) * (w // 8)
  if local:
    m = local_inference.margins(gen)
    box = [y0 // 8 * 8, -(-(y0 + side_h) // 8) * 8, x0 // 8 * 8, -(-(x0 + side_w) // 8) * 8]

    def grow(b, margin):
      return [max(b[0] - margin, 0) // 8 * 8, min(-(-(b[1] + margin) // 8) * 8, h),
              max(b[2] - margin, 0) // 8 * 8, min(-(-(b[3] + margin) // 8) * 8, w)]
    merge = grow(box, m["merge"])
    hallu = grow(merge, m["hallu"])
    dec = grow(merge, m["decoder"])
    coarse = grow(box, m["coarse"])
    hw = lambda b, s=1: ((b[1] - b[0]) // s, (b[3] - b[2]) // s)  # noqa: E731
    region = {"coarse": hw(coarse), "hallu": hw(hallu), "encoder": (h, w),
              "decoder": hw(dec, 4), "merge": hw(merge, 4)}
    conv, _ = conv_flops(gen, h, w, region)
    qh = min(dec[1] // 8 + 1, h // 8) - max(dec[0] // 8 - 1, 0)
    qw = min(dec[3] // 8 + 1, w // 8) - max(dec[2] // 8 - 1, 0)
    queries = qh * qw
  else:
    conv, _ = conv_flops(gen, h, w)
    queries = keys
  att = attention_flops(queries, keys, c)
  full_conv, _ = conv_flops(gen, h, w)
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  print(json.dumps({
      "size": f"{w}x{h}", "hole": args.hole, "path": args.path, "median_s": median,
      "warmup_s": warmup, "peak_gb": peak, "conv_gflop": conv / 1e9, "att_gflop": att / 1e9,
      "dense_conv_gflop": full_conv / 1e9, "dense_att_gflop": attention_flops(keys, keys, c) / 1e9,
      "gflops_per_s": (conv + att) / 1e9 / median, "tile": tile}), flush=True)


def _parse_size(text):
  w, h = text.lower().split("x")
  return int(h), int(w)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default=DEFAULT_SIZES, help="WxH list")
  parser.add_argument("--holes", default="0.25,0.05", help="hole area fractions")
  parser.add_argument("--paths", default="local,dense")
  parser.add_argument("--repeats", type=int, default=3)
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
  header = ("| size | hole | path | median s | warm-up s | peak GB | conv GFLOP | attention GFLOP "
            "| GFLOP/s | dense conv+att GFLOP |")
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
               str(hole), "--path", path, "--repeats", str(args.repeats), "--max_memory_gb",
               str(args.max_memory_gb)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
        if proc.returncode != 0 or not lines:
          row = f"| {size} | {hole:.0%} | {path} | failed (exit {proc.returncode}) |||||||"
          print(row, proc.stderr.strip().splitlines()[-1:] if proc.stderr else "")
          rows.append(row)
          continue
        r = json.loads(lines[-1])
        row = (f"| {r['size']} | {hole:.0%} | {path} | {r['median_s']:.2f} | {r['warmup_s']:.1f} "
               f"| {r['peak_gb']:.2f} | {r['conv_gflop']:.0f} | {r['att_gflop']:.0f} "
               f"| {r['gflops_per_s']:.0f} | {r['dense_conv_gflop'] + r['dense_att_gflop']:.0f} |")
        print(row, flush=True)
        rows.append(row)
  cpu = "unknown"
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  text = "\n".join([
      "# Inference benchmark", "",
      f"Command: `python bench/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}`".rstrip(),
      "", f"Machine: {os.cpu_count()} CPUs ({cpu}), {platform.platform()}; Python "
      f"{platform.python_version()}, TensorFlow {tf.__version__}. Random-weight v1 generator "
      f"(cnum 32), batch 1, centred square hole; --max_memory_gb {args.max_memory_gb}.", "",
      f"Measured ceiling: conv 3×3 128→128 at 128² {ceiling['conv3x3_128']:.0f} GFLOP/s; "
      f"matmul 2048² {ceiling['matmul_2048']:.0f} GFLOP/s.", "",
      "`local` = hole-local path used by test.py and the SavedModel; `dense` = whole generator "
      "with dense attention (the release's computation). GFLOP counts what the path computes "
      "(convs + attention matmuls); the last column is what the dense path would need.", "",
      header, "|" + "---|" * 10, *rows, ""])
  tmp = args.output + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, args.output)
  print(f"wrote {args.output}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
