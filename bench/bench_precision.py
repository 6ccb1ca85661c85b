r"""float32 vs mixed_bfloat16 on this CPU, with oneDNN on and off: eight 3×3 convs and training updates.

  python bench/bench_precision.py                                    # bench/PRECISION_RESULTS.md
  python bench/bench_precision.py --train_settings official --train_flags=--batch_size=16

Two measurements, each cell in a fresh process whose environment sets ``TF_ENABLE_ONEDNN_OPTS``
(``1``: oneDNN's kernels, ``0``: TensorFlow's own Eigen kernels; without the variable TensorFlow
turns oneDNN on only for CPUs with AVX-512 VNNI / bfloat16 / AMX):

* ``micro``: eight chained 3×3 stride-1 convolutions (batch 1, C→C channels) traced once per dtype,
  float32 and bfloat16 calls alternating in one process; the best of ``--repeats`` per dtype, as
  GFLOP/s (2 FLOPs per multiply-add). 64 channels at 256² and 128 channels at 128².
* ``train``: ``bench/bench_train.py --case <setting>`` with ``--precision=float32`` and
  ``--precision=mixed_bfloat16`` (its timing: median seconds per generator update with its critic
  steps, first update, peak RSS). Cells alternate float32 / bfloat16 within each oneDNN setting.
  The ``official`` setting here adds ``--batch_size=2`` by default (``--official_flags``): the
  release's networks, crop, critics and 5 critic steps at 1/8 of its batch, so that a cell
  takes minutes on a 2-core machine instead of a quarter of an hour (``--official_onednn``
  limits its oneDNN settings).

``has AMX`` in the header is ``model.precision.has_amx()`` (``amx_bf16`` in /proc/cpuinfo).
"""
import argparse
import json
import os
import platform
import sys
import time

import harness  # bench/harness.py (this script's folder is on sys.path)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
PHOTOS = os.path.join(os.path.dirname(REPO), "shared", "data", "train", "photos")
MICRO_SHAPES = ((64, 256), (128, 128))  # (channels, side)
ONEDNN = ("1", "0")
PRECISIONS = ("float32", "mixed_bfloat16")


def micro(repeats):
  """Child: GFLOP/s of eight chained 3×3 convs per shape and dtype (best of ``repeats``)."""
  import tensorflow as tf
  out = []
  for channels, side in MICRO_SHAPES:
    x = tf.random.stateless_normal([1, side, side, channels], [1, 2])
    kernels = [tf.random.stateless_normal([3, 3, channels, channels], [3, i]) * 0.05
               for i in range(8)]
    flops = 8 * 2 * side * side * 9 * channels * channels
    calls = {}
    for dtype in (tf.float32, tf.bfloat16):
      xs, ks = tf.cast(x, dtype), [tf.cast(k, dtype) for k in kernels]

      @tf.function
      def chain(xs=xs, ks=ks):
        y = xs
        for k in ks:
          y = tf.nn.conv2d(y, k, 1, "SAME")
        return y
      chain().numpy()  # trace and warm up
      calls[dtype.name] = chain
    best = {name: float("inf") for name in calls}
    for _ in range(repeats):
      for name, chain in calls.items():  # alternating float32 / bfloat16
        t = time.perf_counter()
        chain().numpy()
        best[name] = min(best[name], time.perf_counter() - t)
    out.append({"channels": channels, "side": side, "gflop": flops / 1e9,
                **{f"{name}_gflops": flops / s / 1e9 for name, s in best.items()}})
  return out


def _env(onednn):
  return {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _train_cell(setting, extra, precision, onednn, args):
  flags = f"{extra} --precision={precision} {args.train_flags}".strip()
  cmd = [sys.executable, os.path.join(HERE, "bench_train.py"), "--case", setting, "--iterations",
         str(args.iterations), "--photos", args.photos, f"--train_flags={flags}"]
  proc = harness.run(cmd, env=_env(onednn))
  result = harness.last_json(proc.stdout)
  if proc.status or result is None:
    return {"error": harness.tail(proc.stderr) or f"exit {proc.status}"}
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5, help="micro: alternating calls per dtype")
  parser.add_argument("--train_settings", default="official,recipe",
                      help="bench_train.py settings (comma-separated; empty: none)")
  parser.add_argument("--official_flags", default="--batch_size=2",
                      help="train.py flags added to the official setting")
  parser.add_argument("--official_onednn", default="1,0",
                      help="TF_ENABLE_ONEDNN_OPTS values the official setting runs with")
  parser.add_argument("--train_flags", default="", help="train.py flags added to every setting")
  parser.add_argument("--iterations", type=int, default=1, help="timed updates per cell")
  parser.add_argument("--photos", default=PHOTOS)
  parser.add_argument("--output", default=os.path.join(HERE, "PRECISION_RESULTS.md"))
  args = parser.parse_args()
  sys.path.insert(0, REPO)
  from model import precision as precision_lib  # pylint: disable=import-outside-toplevel

  started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
  micro_rows, train_rows, data = [], [], {"micro": {}, "train": {}}
  for onednn in ONEDNN:
    proc = harness.run(harness.python_command(__file__, "micro", args.repeats), env=_env(onednn))
    results = harness.last_json(proc.stdout)
    if proc.status or results is None:
      micro_rows.append([onednn, "failed: " + harness.tail(proc.stderr), "", "", ""])
      continue
    data["micro"][onednn] = results
    for r in results:
      micro_rows.append([
          "on" if onednn == "1" else "off", f"{r['channels']} ch at {r['side']}²",
          f"{r['float32_gflops']:.0f}", f"{r['bfloat16_gflops']:.0f}",
          f"{r['bfloat16_gflops'] / r['float32_gflops']:.2f}×"])
    print(micro_rows[-2:], flush=True)
  settings = [s for s in args.train_settings.split(",") if s]
  for setting in settings:
    extra = args.official_flags if setting == "official" else ""
    for onednn in (args.official_onednn.split(",") if setting == "official" else ONEDNN):
      cells = {p: _train_cell(setting, extra, p, onednn, args) for p in PRECISIONS}
      data["train"][f"{setting}/{onednn}"] = cells
      f32, bf16 = cells["float32"], cells["mixed_bfloat16"]
      row = [setting, "on" if onednn == "1" else "off"]
      for cell in (f32, bf16):
        row += ([f"{cell['s_per_update']:.2f}", f"{cell['warmup_s']:.0f}",
                 f"{cell['peak_gb']:.2f}"] if "error" not in cell else
                [f"failed: {cell['error'][:120]}", "", ""])
      ok = "error" not in f32 and "error" not in bf16
      row.append(f"{f32['s_per_update'] / bf16['s_per_update']:.2f}×" if ok else "")
      row.append(f"{f32['load_before']:.1f}–{bf16['load_after']:.1f}" if ok else "")
      train_rows.append(row)
      print(row, flush=True)
  summaries = {key: cells["float32"].get("summary", "") for key, cells in data["train"].items()}
  lines = [
      "# Mixed precision on this CPU: float32 vs bfloat16", "",
      f"Command: `python bench/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}`".rstrip(),
      f"({started}).", "",
      f"Machine: {harness.machine_line()}; {platform.platform()}; Python "
      f"{platform.python_version()}. has AMX (amx_bf16): **{precision_lib.has_amx()}**; CPU flags "
      f"with avx512: {sorted(f for f in precision_lib.cpu_flags() if 'avx512' in f) or 'none'}. "
      "The machine is shared with other jobs (load column).", "",
      "## Eight 3×3 convolutions (GFLOP/s, best of alternating calls)", "",
      harness.markdown_table(["oneDNN", "shape", "float32", "bfloat16", "bfloat16 / float32"],
                             micro_rows), "",
      "## Training: seconds per generator update (critic steps included)", "",
      harness.markdown_table(
          ["setting", "oneDNN", "float32 s", "float32 first s", "float32 peak GB",
           "bf16 s", "bf16 first s", "bf16 peak GB", "speed-up", "load 1-min"], train_rows), "",
      *[f"* `{key}`: {text}" for key, text in summaries.items() if text], ""]
  harness.write_results(args.output, "\n".join(lines),
                        os.path.splitext(args.output)[0] + ".json", data)
  print(f"wrote {args.output}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
