r"""ONNX Runtime and LiteRT (Python, CPU) against test.py's pipeline: time, peak memory, file sizes.

  python bench/bench_portable.py                       # demo model, 512² and 1024²; writes bench/PORTABLE_RESULTS.md
  python bench/bench_portable.py --sizes 2048 --runtimes ort --max_gb 16 --output /tmp/p.md

The checkpoint is exported once per format by ``export.py --format onnx|tflite``. Each case is a
bundled photo (examples/sklearn_china.png) resized to N×N with a centred square hole of 25 % of
the image, run in a fresh process per runtime: ``tf`` is ``Inpainter.inpaint`` with
``seam_blend=False, strategy="original"`` (what ``test.py --noseam_blend --strategy original``
runs, hole-local path and tiled attention included), ``ort`` an ONNX Runtime CPU session of
model.onnx, ``litert`` the LiteRT interpreter of model.tflite. Reported: the first call (TF:
tracing; ORT/LiteRT: session set-up at this size), the second call, the process's peak RSS, and the largest hole-pixel difference to ``tf``.
``--max_gb`` caps each worker's address space, so a case that needs more fails by itself
instead of pressing the shared machine.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import machine  # noqa: E402  bench/machine.py (this script's folder is on sys.path)
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from model.fileio.atomic import atomic_write  # noqa: E402

PHOTO = os.path.join(REPO, "examples", "sklearn_china.png")
FILES = {"ort": "model.onnx", "litert": "model.tflite"}
FORMATS = {"ort": "onnx", "litert": "tflite"}


def case(side):
  """uint8 RGB [side, side, 3] and a bool hole (centred square, 25 % of the image)."""
  rgb = np.asarray(Image.open(PHOTO).convert("RGB").resize((side, side), Image.BICUBIC))
  hole = np.zeros((side, side), bool)
  hole[side // 4:side // 4 + side // 2, side // 4:side // 4 + side // 2] = True
  return rgb, hole


def worker(runtime, model, side, out_path):
  """Runs one case twice in this process; writes its timings, peak RSS and result."""
  rgb, hole = case(side)
  mask = np.where(hole, 255, 0).astype(np.uint8)[None, :, :, None]
  if runtime == "tf":
    from model.inference import inpainter  # pylint: disable=import-outside-toplevel
    engine = inpainter.Inpainter.from_checkpoint(model, seam_blend=False,
                                                strategy="original")
    run = lambda: engine.inpaint(rgb, hole)[0]  # noqa: E731
  elif runtime == "ort":
    import onnxruntime as ort  # pylint: disable=import-outside-toplevel
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    run = lambda: session.run(["inpainted"], {"image": rgb[None], "mask": mask})[0][0]  # noqa
  else:
    from ai_edge_litert import interpreter  # pylint: disable=import-outside-toplevel
    runner = interpreter.Interpreter(model_path=model).get_signature_runner("serving_default")
    run = lambda: runner(image=rgb[None], mask=mask)["inpainted"][0]  # noqa: E731
  times = []
  for _ in range(2):
    start = time.perf_counter()
    out = run()
    times.append(time.perf_counter() - start)
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  np.save(out_path, out)
  print(json.dumps({"first": times[0], "second": times[1], "peak_gb": peak / 1e9}))


def launch(runtime, model, side, out_path, max_gb):
  def limit():
    if max_gb:
      cap = int(max_gb * 1e9)
      resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

  proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", runtime,
                         "--model", model, "--sizes", str(side), "--result", out_path],
                        capture_output=True, text=True, preexec_fn=limit, timeout=3600)
  if proc.returncode != 0:
    lines = [line for line in proc.stderr.strip().splitlines() if "Error" in line]
    return {"error": f"exit {proc.returncode}: {(lines or ['(no message)'])[-1][:200]}"}
  return json.loads(proc.stdout.strip().splitlines()[-1])


def export(checkpoint_dir, fmt, folder):
  out = os.path.join(folder, fmt)
  proc = subprocess.run([sys.executable, os.path.join(REPO, "export.py"), "--format", fmt,
                         "--checkpoint_dir", checkpoint_dir, "--export_dir", out],
                        capture_output=True, text=True, timeout=3600)
  if proc.returncode != 0:
    sys.exit(f"error: export --format {fmt} failed: {proc.stderr.strip()}")
  return os.path.join(out, FILES["ort" if fmt == "onnx" else "litert"])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint_dir", default=os.path.join(REPO, "checkpoints", "demo"))
  parser.add_argument("--sizes", default="512,1024")
  parser.add_argument("--runtimes", default="tf,ort,litert")
  parser.add_argument("--max_gb", type=float, default=0.0,
                      help="address-space cap of each worker (GB), 0 = none")
  parser.add_argument("--output", default=os.path.join(REPO, "bench", "PORTABLE_RESULTS.md"))
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  parser.add_argument("--model", help=argparse.SUPPRESS)
  parser.add_argument("--result", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return worker(args.worker, args.model, int(args.sizes), args.result)
  runtimes = args.runtimes.split(",")
  with tempfile.TemporaryDirectory() as tmp:
    models = {"tf": args.checkpoint_dir}
    sizes = {}
    for runtime in runtimes:
      if runtime != "tf":
        models[runtime] = export(args.checkpoint_dir, FORMATS[runtime], tmp)
        sizes[FILES[runtime]] = os.path.getsize(models[runtime])
    rows = ["| image | runtime | first call (s) | second call (s) | peak RSS (GB) | "
            "max hole diff vs tf (levels) |", "|---|---|---|---|---|---|"]
    for side in (int(s) for s in args.sizes.split(",")):
      reference = None
      for runtime in runtimes:
        result_path = os.path.join(tmp, f"{runtime}_{side}.npy")
        r = launch(runtime, models[runtime], side, result_path, args.max_gb)
        if "error" in r:
          rows.append(f"| {side}² | {runtime} | failed: {r['error']} | | | |")
        else:
          out = np.load(result_path)
          if runtime == "tf":
            reference = out
          _, hole = case(side)
          diff = ("–" if reference is None or runtime == "tf" else
                  str(int(np.abs(out.astype(int) - reference.astype(int))[hole].max())))
          rows.append(f"| {side}² | {runtime} | {r['first']:.2f} | {r['second']:.2f} | "
                      f"{r['peak_gb']:.2f} | {diff} |")
        print(rows[-1], flush=True)
  files = ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in sizes.items())
  load = os.getloadavg()[0]
  text = (f"# ONNX Runtime and LiteRT against test.py's pipeline\n\n"
          f"`python bench/bench_portable.py --checkpoint_dir {os.path.relpath(args.checkpoint_dir, REPO)} "
          f"--sizes {args.sizes} --runtimes {args.runtimes}"
          f"{f' --max_gb {args.max_gb:g}' if args.max_gb else ''}`; {machine.cpu_model()}, "
          f"load average {load:.1f} at the end. 25 % centred hole, one fresh process per cell; "
          f"tf = `Inpainter.inpaint(seam_blend=False, strategy=\"original\")` "
          f"(`test.py --noseam_blend --strategy original`).\n\n"
          f"Files: {files or '–'}.\n\n" + "\n".join(rows) + "\n")
  atomic_write(args.output, text.encode())
  print(f"wrote {args.output}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
