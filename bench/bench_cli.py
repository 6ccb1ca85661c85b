r"""What a user waits for: wall time and peak memory of ``python test.py`` as a fresh process.

  python bench/bench_cli.py                      # README example, 1024², 2048², folder; writes
                                                 # bench/CLI_RESULTS.md and bench/cli_results.json
  python bench/bench_cli.py --cases readme,folder --json /tmp/now.json --output /tmp/now.md
  python bench/bench_cli.py --repo /tmp/old_checkout --json /tmp/before.json --output /tmp/b.md
  python bench/bench_cli.py --compare /tmp/before.json   # adds before / after columns

Each case runs ``test.py`` of ``--repo`` in a fresh process (wall time from spawn to exit; peak
resident memory of that process from ``wait4``). Beside it, the *marginal* model call: in
another process, ``Inpainter.inpaint`` on the same decoded inputs, timed on a second call after a
first one (tracing, kernel set-up and warm caches excluded) — what the computation itself costs.
The difference is the overhead a user pays on top (imports, model build, tracing, decoding,
encoding). Cases:

* ``readme``: the README's first command (bundled demo model, 512×342 example, 9 % hole, ``--flow``).
* ``1024``, ``2048``: a photo resized to 1024² / 2048², centred square hole of 25 %.
* ``12mp``: 4000×3000, centred 5 % hole (several minutes).
* ``folder``: one run over 10 photos of 10 sizes from 256 to 1024 px (centred 15 % holes);
  the marginal column is the sum of the 10 marginal calls.

Model for the photo cases: ``--checkpoint_dir``, by default a random-weight v1 generator
(cnum 32, the released architecture; weights do not change the cost) saved in our format.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = ("readme", "1024", "2048", "folder")
ALL_CASES = CASES + ("12mp",)
FOLDER_SIDES = [256, 341, 426, 512, 597, 682, 768, 853, 938, 1024]

# Child: decode the inputs as test.py does, then time Inpainter.inpaint twice per pair.
MARGINAL = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
repo, ckpt, flow, pairs = sys.argv[1], sys.argv[2], sys.argv[3] == "1", json.loads(sys.argv[4])
sys.path.insert(0, repo)
from model.fileio import images as image_io
from model.inference import inpainter as inpaint
model = inpaint.Inpainter.from_checkpoint(ckpt)
times = []
for image, mask in pairs:
  rgb, _ = image_io.read_image(image)
  hole = image_io.read_mask(mask)
  for i in range(2):
    t = time.perf_counter()
    model.inpaint(rgb, hole, with_flow=flow)
    elapsed = time.perf_counter() - t
  times.append(elapsed)
print(json.dumps(times))
"""


def _run_measured(cmd, cwd):
  """Runs ``cmd``; returns (wall s, peak RSS GB of that process, exit status, stderr tail)."""
  start = time.perf_counter()
  proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  stderr = proc.stderr.read()
  _, status, usage = os.wait4(proc.pid, 0)
  wall = time.perf_counter() - start
  proc.returncode = os.waitstatus_to_exitcode(status)
  tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] if stderr else []
  return wall, usage.ru_maxrss / 2**20, proc.returncode, tail


def _marginal(repo, checkpoint, pairs, flow):
  proc = subprocess.run([sys.executable, "-c", MARGINAL, repo, checkpoint, "1" if flow else "0",
                         json.dumps(pairs)], capture_output=True, text=True)
  if proc.returncode != 0:
    raise RuntimeError(f"marginal run failed: {proc.stderr.strip()[-500:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _photo(work, name, width, height, hole_share):
  """Writes a photo (the China example resized) and a centred square-ish hole mask."""
  import cv2
  import numpy as np
  src = cv2.imread(os.path.join(REPO, "examples", "sklearn_china.png"), cv2.IMREAD_COLOR)
  image = cv2.resize(src, (width, height), interpolation=cv2.INTER_CUBIC)
  mask = np.zeros((height, width), np.uint8)
  side_h, side_w = round(height * hole_share ** 0.5), round(width * hole_share ** 0.5)
  y0, x0 = (height - side_h) // 2, (width - side_w) // 2
  mask[y0:y0 + side_h, x0:x0 + side_w] = 255
  image_path = os.path.join(work, "images", name + ".png")
  mask_path = os.path.join(work, "masks", name + ".png")
  for folder in ("images", "masks"):
    os.makedirs(os.path.join(work, folder), exist_ok=True)
  cv2.imwrite(image_path, image)
  cv2.imwrite(mask_path, mask)
  return image_path, mask_path


def _random_v1_checkpoint(directory):
  sys.path.insert(0, REPO)
  import keras
  from model import config as config_lib
  from model import generator as generator_lib
  from model import weights
  keras.utils.set_random_seed(0)
  cfg = config_lib.preset("v1", cnum=32)
  weights.save_generator(generator_lib.build_generator(cfg), cfg, directory)
  return directory


def run_case(name, repo, checkpoint, work):
  """One case: returns a dict with wall, peak_gb, marginal_s, status."""
  test_py = os.path.join(repo, "test.py")
  out = os.path.join(work, "out")
  os.makedirs(out, exist_ok=True)
  flow = False
  if name == "readme":
    pairs = [[os.path.join(REPO, "examples", "sklearn_china.png"),
              os.path.join(REPO, "examples", "sklearn_china_mask.png")]]
    ckpt = os.path.join(REPO, "checkpoints", "demo")
    args = ["--image", pairs[0][0], "--mask", pairs[0][1], "--output",
            os.path.join(out, "china.png"), "--flow", os.path.join(out, "china_flow.png"),
            "--checkpoint_dir", ckpt]
    flow, what = True, "README example: 512×342, 9 % hole, `--flow`, demo model"
  elif name == "folder":
    folder = os.path.join(work, "folder")
    pairs = [list(_photo(folder, f"p{side}", side, side * 3 // 4 if i % 2 else side, 0.15))
             for i, side in enumerate(FOLDER_SIDES)]
    ckpt = checkpoint
    args = ["--image", os.path.join(folder, "images"), "--mask", os.path.join(folder, "masks"),
            "--output", os.path.join(out, "folder"), "--checkpoint_dir", ckpt]
    what = "folder: 10 photos, 10 sizes 256–1024 px, 15 % holes"
  else:
    width, height, share = {"1024": (1024, 1024, 0.25), "2048": (2048, 2048, 0.25),
                            "12mp": (4000, 3000, 0.05)}[name]
    pairs = [list(_photo(os.path.join(work, name), name, width, height, share))]
    ckpt = checkpoint
    args = ["--image", pairs[0][0], "--mask", pairs[0][1], "--output",
            os.path.join(out, name + ".png"), "--checkpoint_dir", ckpt]
    what = f"{width}×{height}, {share:.0%} hole"
  wall, peak, status, tail = _run_measured([sys.executable, test_py, *args], cwd=work)
  marginal = sum(_marginal(repo, ckpt, pairs, flow)) if status == 0 else float("nan")
  return {"case": name, "what": what, "wall_s": wall, "peak_gb": peak, "status": status,
          "marginal_s": marginal, "error": " ".join(tail) if status else ""}


def _load():
  try:
    with open("/proc/loadavg") as f:
      return f.read().split()[0]
  except OSError:
    return "?"


def _table(rows, before=None):
  before = {r["case"]: r for r in (before or {}).get("rows", [])}
  if before:
    lines = ["| case | wall before | wall after | marginal call | overhead after | "
             "peak RSS before | peak RSS after |", "|---|---|---|---|---|---|---|"]
  else:
    lines = ["| case | wall | marginal call | overhead | peak RSS |", "|---|---|---|---|---|"]
  for r in rows:
    overhead = r["wall_s"] - r["marginal_s"]
    if before and r["case"] in before:
      b = before[r["case"]]
      lines.append(f"| {r['what']} | {b['wall_s']:.1f} s | {r['wall_s']:.1f} s | "
                   f"{r['marginal_s']:.1f} s | {overhead:.1f} s | {b['peak_gb']:.2f} GB | "
                   f"{r['peak_gb']:.2f} GB |")
    elif before:
      lines.append(f"| {r['what']} | | {r['wall_s']:.1f} s | {r['marginal_s']:.1f} s | "
                   f"{overhead:.1f} s | | {r['peak_gb']:.2f} GB |")
    else:
      lines.append(f"| {r['what']} | {r['wall_s']:.1f} s | {r['marginal_s']:.1f} s | "
                   f"{overhead:.1f} s | {r['peak_gb']:.2f} GB |")
    if r["status"]:
      lines[-1] += f" exit {r['status']}: {r['error']}"
  return lines


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", default=",".join(CASES),
                      help=f"comma-separated, from {', '.join(ALL_CASES)}")
  parser.add_argument("--repo", default=REPO, help="checkout whose test.py and model/ are run")
  parser.add_argument("--checkpoint_dir", default=None,
                      help="model for the photo cases (default: random-weight v1, cnum 32)")
  parser.add_argument("--compare", default=None, help="JSON of an earlier run: before/after table")
  parser.add_argument("--json", default=os.path.join(REPO, "bench", "cli_results.json"))
  parser.add_argument("--output", default=os.path.join(REPO, "bench", "CLI_RESULTS.md"))
  args = parser.parse_args()
  names = [c for c in args.cases.split(",") if c]
  unknown = sorted(set(names) - set(ALL_CASES))
  if unknown:
    parser.error(f"unknown cases {unknown}; choose from {ALL_CASES}")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  repo = os.path.abspath(args.repo)
  load_before = _load()
  rows = []
  with tempfile.TemporaryDirectory(prefix="bench_cli_") as work:
    checkpoint = args.checkpoint_dir or _random_v1_checkpoint(os.path.join(work, "v1"))
    for name in names:
      r = run_case(name, repo, checkpoint, work)
      rows.append(r)
      print(f"{r['case']}: wall {r['wall_s']:.1f} s, marginal {r['marginal_s']:.1f} s, "
            f"peak {r['peak_gb']:.2f} GB, exit {r['status']} {r['error']}", flush=True)
  result = {"repo": repo, "load_before": load_before, "load_after": _load(), "rows": rows,
            "checkpoint": args.checkpoint_dir or "random-weight v1 (cnum 32)",
            "date": time.strftime("%Y-%m-%d %H:%M"), "oneDNN": os.environ.get(
                "TF_ENABLE_ONEDNN_OPTS", "default")}
  before = None
  if args.compare:
    with open(args.compare) as f:
      before = json.load(f)
  cpu = "unknown"
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  import tensorflow as tf
  text = [
      "# CLI benchmark: what a user waits for", "",
      f"Command: `python bench/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}`".rstrip(),
      "", f"Machine: {os.cpu_count()} CPUs ({cpu}), {platform.platform()}; Python "
      f"{platform.python_version()}, TensorFlow {tf.__version__}; oneDNN "
      f"{result['oneDNN']}. {result['date']}, load average {load_before} at the start, "
      f"{result['load_after']} at the end. Photo cases: {result['checkpoint']}.", "",
      "Wall = fresh `python test.py` process, spawn to exit; peak RSS of that process. "
      "Marginal call = `Inpainter.inpaint` on the same inputs in a warm process (second call): "
      "the computation itself. Overhead = wall − marginal (imports, model build, tracing, "
      "decoding, encoding).", ""]
  if before:
    text += [f"Before: `{before['repo']}`, {before['date']}, load average "
             f"{before['load_before']}–{before['load_after']}.", ""]
  text += _table(rows, before) + [""]
  tmp = args.output + ".tmp"
  with open(tmp, "w") as f:
    f.write("\n".join(text))
  os.replace(tmp, args.output)
  with open(args.json + ".tmp", "w") as f:
    json.dump(result, f, indent=1)
  os.replace(args.json + ".tmp", args.json)
  print("\n".join(_table(rows, before)))
  print(f"wrote {args.output} and {args.json}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
