r"""What a user waits for: wall time, CPU time and peak memory of ``python test.py`` as a fresh process.

  python bench/bench_cli.py --breakdown          # README example, 1024², 2048², folder; writes
                                                 # bench/CLI_RESULTS.md and bench/cli_results.json
  python bench/bench_cli.py --cases readme,folder --json /tmp/now.json --output /tmp/now.md
  python bench/bench_cli.py --repo /tmp/old_checkout --json /tmp/before.json --output /tmp/b.md
  python bench/bench_cli.py --compare /tmp/before.json   # adds before / after columns
  python bench/bench_cli.py --cases 12mp --reuse bench/cli_results.json   # add a case, keep rows

Each case runs ``test.py`` of ``--repo`` in a fresh process (wall time from spawn to exit, its
user + system CPU time and peak resident memory from ``wait4``, the load average at its start).
Beside it, from another process: the start-up (spawn to model loaded), the first
``Inpainter.inpaint`` call (tracing included) and the *marginal* call, timed on a second call on
the same decoded inputs (tracing, kernel set-up and warm caches excluded) — what the computation
itself costs. The difference between wall and marginal is the overhead a user pays on top
(imports, model build, tracing, decoding, encoding); ``--breakdown`` times test.py's steps for
the README example one by one. Cases:

* ``readme``: the README's first command (bundled demo model, 512×342 example, 9 % hole, ``--flow``).
* ``1024``, ``2048``: a photo resized to 1024² / 2048², centred square hole of 25 %.
* ``12mp``: 4000×3000, centred 5 % hole (several minutes; not in the default list; its marginal
  call is skipped unless ``--skip_marginal ""``).
* ``folder``: one run over 10 photos of 10 sizes from 256 to 1024 px (centred 15 % holes);
  the marginal column is the sum of the 10 marginal calls.

Model for the photo cases: ``--checkpoint_dir``, by default a random-weight v1 generator
(cnum 32, the released architecture; weights do not change the cost) saved in our format with
the bundled demo's ``inference`` block, so test.py runs the demo's default pipeline.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import harness  # bench/harness.py (this script's folder is on sys.path)
import machine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = ("readme", "1024", "2048", "folder")
ALL_CASES = CASES + ("12mp",)
FOLDER_SIDES = [256, 341, 426, 512, 597, 682, 768, 853, 938, 1024]

# Child (python_command): start-up (spawn to model loaded: imports, build, restore), then decode
# the inputs as test.py does and time Inpainter.inpaint twice per pair (wall, CPU of the second).
def marginal_child(repo, ckpt, flow, pairs, spawned):
  import resource  # pylint: disable=import-outside-toplevel
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  sys.path.insert(0, repo)
  from model.fileio import decode as image_io  # pylint: disable=import-outside-toplevel
  from model.inference import inpainter as inpaint  # pylint: disable=import-outside-toplevel
  model = inpaint.Inpainter.from_checkpoint(ckpt)
  usage = resource.getrusage(resource.RUSAGE_SELF)
  startup = {"wall_s": time.time() - spawned, "cpu_s": usage.ru_utime + usage.ru_stime}
  times, cpus, firsts = [], [], []
  for image, mask in pairs:
    rgb, _ = image_io.read_image(image)
    hole = image_io.read_mask(mask)
    for i in range(2):
      t, c = time.perf_counter(), time.process_time()
      model.inpaint(rgb, hole, with_flow=flow)
      elapsed, cpu = time.perf_counter() - t, time.process_time() - c
      if i == 0:
        firsts.append(elapsed)
    times.append(elapsed)
    cpus.append(cpu)
  return {"times": times, "cpus": cpus, "firsts": firsts, "startup": startup}


# Child (python_command): test.py's steps for one photo through the public API, a wall/CPU
# timestamp after each (README example). The first Inpainter.inpaint call includes its tracing.
def breakdown_child(repo, ckpt, image, mask, spawned, out):
  t0, c0 = spawned, 0.0
  steps = []

  def mark(what):
    nonlocal t0, c0
    t, c = time.time(), time.process_time()
    steps.append([what, t - t0, c - c0])
    t0, c0 = t, c

  sys.path.insert(0, repo)
  import cli  # pylint: disable=import-outside-toplevel
  mark("Python start-up, absl, cli")
  cli.import_tensorflow()
  mark("import TensorFlow")
  # pylint: disable=import-outside-toplevel
  from model.fileio import decode as image_io
  from model.fileio import encode
  from model.inference import inpainter as inpaint
  mark("import our modules")
  model = inpaint.Inpainter.from_checkpoint(ckpt)
  mark("build model + restore checkpoint")
  rgb, info = image_io.read_image(image)
  hole = image_io.read_mask(mask, expected_hw=rgb.shape[:2])
  mark("read image + mask")
  result, picture = model.inpaint(rgb, hole, with_flow=True)
  mark("first call (trace + graph optimisation + run + flow picture, --flow)")
  encode.write_image(os.path.join(out, "result.png"), result, info)
  encode.write_image(os.path.join(out, "flow.png"), picture, None)
  mark("write both PNGs")
  model.inpaint(rgb, hole, with_flow=True)
  mark("(a second call, for comparison)")
  return steps


def _run_measured(cmd, cwd):
  """Runs ``cmd``; returns (wall s, CPU s, peak RSS GB of that process, exit status, stderr
  tail)."""
  r = harness.run(cmd, cwd=cwd, stdout_path=os.devnull)
  return r.wall_s, r.cpu_s, r.peak_gb, r.status, [harness.tail(r.stderr)] if r.stderr else []


def _marginal(repo, checkpoint, pairs, flow):
  r = harness.run(harness.python_command(__file__, "marginal_child", repo, checkpoint, flow, pairs,
                                         time.time()))
  if r.status != 0:
    raise RuntimeError(f"marginal run failed: {r.stderr.strip()[-500:]}")
  return harness.last_json(r.stdout)


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
  # The bundled demo's inference block, so the photo cases run the default pipeline users get.
  demo = weights.inference_defaults(os.path.join(REPO, "checkpoints", "demo"))
  weights.save_generator(generator_lib.build_generator(cfg), cfg, directory, demo)
  return directory


def run_case(name, repo, checkpoint, work, marginal=True):
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
  load = _load()
  wall, cpu, peak, status, tail = _run_measured([sys.executable, test_py, *args], cwd=work)
  row = {"case": name, "what": what, "wall_s": wall, "cpu_s": cpu, "peak_gb": peak,
         "status": status, "load": load, "error": " ".join(tail) if status else ""}
  if status == 0 and marginal:
    m = _marginal(repo, ckpt, pairs, flow)
    row.update(marginal_s=sum(m["times"]), marginal_cpu_s=sum(m["cpus"]),
               first_call_s=sum(m["firsts"]),
               startup_s=m["startup"]["wall_s"], startup_cpu_s=m["startup"]["cpu_s"])
  else:
    row.update(marginal_s=float("nan"), marginal_cpu_s=float("nan"), startup_s=float("nan"),
               startup_cpu_s=float("nan"))
  return row


def breakdown(repo, work):
  """Where the README example's time goes: test.py's steps with timestamps, fresh process."""
  out = os.path.join(work, "breakdown")
  os.makedirs(out, exist_ok=True)
  load = _load()
  r = harness.run(harness.python_command(
      __file__, "breakdown_child", repo, os.path.join(REPO, "checkpoints", "demo"),
      os.path.join(REPO, "examples", "sklearn_china.png"),
      os.path.join(REPO, "examples", "sklearn_china_mask.png"), time.time(), out))
  if r.status != 0:
    raise RuntimeError(f"breakdown failed: {r.stderr.strip()[-500:]}")
  return {"load": load, "steps": harness.last_json(r.stdout)}


def _breakdown_lines(result):
  lines = [f"Where the README example's time goes (`--breakdown`: test.py's steps in one fresh "
           f"process, load average {result['load']} at its start):", "",
           "| step | wall | CPU |", "|---|---|---|"]
  total = [0.0, 0.0]
  for what, wall, cpu in result["steps"]:
    lines.append(f"| {what} | {wall:.2f} s | {cpu:.2f} s |")
    if not what.startswith("("):
      total = [total[0] + wall, total[1] + cpu]
  lines.append(f"| **total to the written files** | **{total[0]:.2f} s** | **{total[1]:.2f} s** |")
  return lines


def _load():
  try:
    with open("/proc/loadavg") as f:
      return f.read().split()[0]
  except OSError:
    return "?"


def _num(row, key, fmt, unit):
  value = row.get(key)
  return "–" if value is None or value != value else f"{value:{fmt}} {unit}"


def _table(rows, before=None):
  """Markdown rows; with ``before`` (an earlier run's JSON) its wall, CPU and peak beside."""
  before = {r["case"]: r for r in (before or {}).get("rows", [])}
  head = ["case", "load"]
  head += ["wall before", "wall after", "CPU before", "CPU after"] if before else ["wall", "CPU"]
  head += ["marginal call (CPU)", "first call", "start-up (CPU)", "overhead"]
  head += ["peak RSS before", "peak RSS after"] if before else ["peak RSS"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    b = before.get(r["case"], {})
    cells = [r["what"], r.get("load", "?")]
    cells += [_num(b, "wall_s", ".1f", "s"), _num(r, "wall_s", ".1f", "s"),
              _num(b, "cpu_s", ".1f", "s"), _num(r, "cpu_s", ".1f", "s")] if before else [
                  _num(r, "wall_s", ".1f", "s"), _num(r, "cpu_s", ".1f", "s")]
    cells += [f"{_num(r, 'marginal_s', '.1f', 's')} ({_num(r, 'marginal_cpu_s', '.1f', 's')})",
              _num(r, "first_call_s", ".1f", "s"),
              f"{_num(r, 'startup_s', '.1f', 's')} ({_num(r, 'startup_cpu_s', '.1f', 's')})",
              _num({"x": r["wall_s"] - r["marginal_s"]}, "x", ".1f", "s")]
    cells += [_num(b, "peak_gb", ".2f", "GB"), _num(r, "peak_gb", ".2f", "GB")] if before else [
        _num(r, "peak_gb", ".2f", "GB")]
    if r["status"]:
      cells[-1] += f" exit {r['status']}: {r['error']}"
    lines.append("| " + " | ".join(str(c) for c in cells) + " |")
  return lines


def _targets(rows):
  """One line per target whose case ran: measured value, limit, met or not."""
  by_case = {r["case"]: r for r in rows if not r["status"]}
  lines = []
  if "readme" in by_case:
    r = by_case["readme"]
    lines.append(f"* README example end to end ≤ 6 s wall: {r['wall_s']:.1f} s wall, "
                 f"{r['cpu_s']:.1f} s CPU — {'met' if r['wall_s'] <= 6 else 'not met'}")
  if "folder" in by_case:
    r = by_case["folder"]
    floor = r["marginal_s"] + r["startup_s"]
    floor_cpu = r["marginal_cpu_s"] + r["startup_cpu_s"]
    lines.append(f"* folder total ≤ 1.5 × (Σ marginal calls + one start-up): wall "
                 f"{r['wall_s']:.1f} s = {r['wall_s'] / floor:.2f} × {floor:.1f} s; CPU "
                 f"{r['cpu_s']:.1f} s = {r['cpu_s'] / floor_cpu:.2f} × {floor_cpu:.1f} s — "
                 f"{'met' if r['wall_s'] <= 1.5 * floor else 'not met'} by wall, "
                 f"{'met' if r['cpu_s'] <= 1.5 * floor_cpu else 'not met'} by CPU")
  for case, limit in (("2048", 2.5), ("12mp", 3.5)):
    if case in by_case:
      r = by_case[case]
      lines.append(f"* {r['what']}: peak RSS ≤ {limit} GB: {r['peak_gb']:.2f} GB — "
                   f"{'met' if r['peak_gb'] <= limit else 'not met'}")
  return lines


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", default=",".join(CASES),
                      help=f"comma-separated, from {', '.join(ALL_CASES)}")
  parser.add_argument("--repo", default=REPO, help="checkout whose test.py and model/ are run")
  parser.add_argument("--checkpoint_dir", default=None,
                      help="model for the photo cases (default: random-weight v1, cnum 32)")
  parser.add_argument("--compare", default=None,
                      help="JSON of an earlier run (or several, comma-separated; later ones win "
                      "per case): before/after table")
  parser.add_argument("--skip_marginal", default="12mp",
                      help="cases whose marginal call is not measured (at 12 MP it is two more "
                      "runs of several minutes)")
  parser.add_argument("--reuse", default=None,
                      help="JSON of an earlier run of this checkout: its rows of cases not run "
                      "now are kept (e.g. 12mp)")
  parser.add_argument("--breakdown", action="store_true",
                      help="also time test.py's steps for the README example in one process")
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
      r = run_case(name, repo, checkpoint, work,
                   marginal=name not in args.skip_marginal.split(","))
      rows.append(r)
      print(f"{r['case']}: wall {r['wall_s']:.1f} s (CPU {r['cpu_s']:.1f} s), marginal "
            f"{r['marginal_s']:.1f} s, peak {r['peak_gb']:.2f} GB, load {r['load']}, "
            f"exit {r['status']} {r['error']}", flush=True)
    parts = breakdown(repo, work) if args.breakdown else None
  reused = None
  if args.reuse:
    with open(args.reuse) as f:
      reused = json.load(f)
    ran = {r["case"] for r in rows}
    kept = [dict(r, reused=reused["date"]) for r in reused["rows"] if r["case"] not in ran]
    rows = sorted(rows + kept, key=lambda r: ALL_CASES.index(r["case"]))
  commit = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip() or "?"
  result = {"repo": repo, "commit": commit, "load_before": load_before, "load_after": _load(), "rows": rows,
            "breakdown": parts,
            "checkpoint": args.checkpoint_dir or "random-weight v1 (cnum 32)",
            "date": time.strftime("%Y-%m-%d %H:%M"), "oneDNN": os.environ.get(
                "TF_ENABLE_ONEDNN_OPTS", "default")}
  before = None
  if args.compare:
    for path in args.compare.split(","):
      with open(path) as f:
        earlier = json.load(f)
      if before is None:
        before = earlier
      else:
        rows_by_case = {r["case"]: r for r in before["rows"]}
        rows_by_case.update({r["case"]: r for r in earlier["rows"]})
        before = dict(earlier, rows=list(rows_by_case.values()),
                      runs=before.get("runs", [before]) + [earlier])
  cpu = machine.cpu_model()
  import tensorflow as tf
  text = [
      "# CLI benchmark: what a user waits for", "",
      f"Command: `python bench/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}`".rstrip(),
      "", f"Machine: {os.cpu_count()} CPUs ({cpu}), {platform.platform()}; Python "
      f"{platform.python_version()}, TensorFlow {tf.__version__}; oneDNN "
      f"{result['oneDNN']}. Code: `{repo}` at {commit}. {result['date']}, load average "
      f"{load_before} at the start, "
      f"{result['load_after']} at the end. Photo cases: {result['checkpoint']}.", "",
      "Wall = fresh `python test.py` process, spawn to exit; CPU = its user + system time; "
      "peak RSS of that process; load = 1-minute load average when the case started. "
      "Marginal call = `Inpainter.inpaint` on the same inputs in a warm process (second call): "
      "the computation itself. Start-up = spawn to model loaded in that process (imports, "
      "model build, checkpoint restore). Overhead = wall − marginal (start-up, tracing, "
      "decoding, encoding).", ""]
  if before:
    for run in before.get("runs", [before]):
      text += [f"Before: `{run['repo']}` at {run.get('commit', '?')}, {run['date']}, load "
               f"average {run['load_before']}–"
               f"{run['load_after']}, cases {', '.join(r['case'] for r in run['rows'])}."]
    text += [""]
  if reused:
    text += [f"Rows of {', '.join(r['case'] for r in rows if r.get('reused'))} are from an "
             f"earlier run ({reused['date']}, load average {reused['load_before']}–"
             f"{reused['load_after']}).", ""]
  text += _table(rows, before) + ["", "Targets (set for an idle machine):", ""]
  text += _targets(rows) + [""]
  if parts:
    text += _breakdown_lines(parts) + [""]
  sys.path.insert(0, REPO)
  from model.fileio.atomic import atomic_write
  atomic_write(args.output, "\n".join(text))
  atomic_write(args.json, json.dumps(result, indent=1))
  print("\n".join(_table(rows, before) + _targets(rows)))
  print(f"wrote {args.output} and {args.json}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
