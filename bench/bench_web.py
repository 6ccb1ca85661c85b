r"""The static folder of ``export.py --format web`` in Debian's headless Chromium: inpainting time,
peak memory, page load to first result, file sizes.

  python bench/bench_web.py --site SITE [--sizes 512,1024] [--hole 0.25] [--repeats 2]
      [--modes plain,isolated] [--output bench/WEB_RESULTS.md]
  python bench/bench_web.py --checkpoint_dir ../shared/golden/deepfill_v1   # exports to a temp dir

SITE is a folder written by ``export.py --format web``. It is served on 127.0.0.1 by ``python -m
http.server``'s handler ("plain": no cross-origin isolation, so ONNX Runtime Web gets one thread)
and by the same handler adding Cross-Origin-Opener-Policy / Cross-Origin-Embedder-Policy
("isolated": SharedArrayBuffer, one thread per core up to 4). Every request outside the folder
is aborted. For each mode and size a fresh browser opens index.html (which starts loading the
model), then ``inpaint`` is called on the README example resized to N x N with a centred square
hole of --hole of it: "first result" is the time from the navigation's start to that first
result (page, runtime and model fetched, session created, one run); then --repeats more calls
give the warm time (median). Peak memory is the renderer process's peak resident set (VmHWM
in /proc; the model runs there, in ONNX Runtime's worker thread), beside its value before the
first call.
"""
import argparse
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import uuid

import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine  # noqa: E402  bench/machine.py
import static_site  # noqa: E402  bench/static_site.py: static server, offline page

from model.fileio.atomic import atomic_write  # noqa: E402

RUN = """async ([photo, hole, repeats, maxWarmMs, options]) => {
  const { inpaint, load } = await import("./deepfill.js");
  const bytes = Uint8Array.from(atob(photo), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }),
                                         { colorSpaceConversion: "none" });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const image = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  const n = bitmap.width, side = Math.round(n * Math.sqrt(hole)), top = (n - side) >> 1;
  const mask = new ImageData(n, n);
  for (let y = top; y < top + side; y++) {
    for (let x = top; x < top + side; x++) mask.data[4 * (y * n + x) + 3] = 255;
  }
  let start = performance.now();
  try {
    await inpaint(image, mask, options);
  } catch (e) {
    return { error: e.message, afterSeconds: (performance.now() - start) / 1000 };
  }
  const first = { sinceNavigation: performance.now(), call: performance.now() - start };
  const warm = [];
  for (let i = 0; i < repeats && first.call < maxWarmMs; i++) {
    start = performance.now();
    await inpaint(image, mask, options);
    warm.push(performance.now() - start);
  }
  const info = await load();
  return { first, warm, threads: info.threads, holeShare: side * side / (n * n) };
}"""


def _descendants_with_tag(tag):
  """Renderer processes of the Chromium whose browser process has ``tag`` on its command line."""
  parents, cmdlines = {}, {}
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/stat") as f:
        parents[int(pid)] = int(f.read().rsplit(")", 1)[1].split()[1])
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdlines[int(pid)] = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
      continue
  roots = {pid for pid, cmd in cmdlines.items() if tag in cmd}
  found = []
  for pid, cmd in cmdlines.items():
    if "--type=renderer" not in cmd:
      continue
    up = pid
    while up in parents and up not in roots and up > 1:
      up = parents[up]
    if up in roots:
      found.append(pid)
  return found


def _status_kb(pid, field):
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  return 0


def measure(playwright, site, headers, photo_png, hole, repeats, max_warm_s, options):
  tag = f"--bench-web={uuid.uuid4().hex}"
  server = static_site.StaticServer(site, headers)
  browser = playwright.chromium.launch(executable_path=static_site.chromium_executable(),
                                       args=static_site.CHROMIUM_ARGS + [tag])
  try:
    offline = static_site.OfflinePage(browser, server.url)
    page = offline.page
    renderers = _descendants_with_tag(tag)
    before = max((_status_kb(p, "VmRSS") for p in renderers), default=0)
    result = page.evaluate(RUN, [base64.b64encode(photo_png).decode(), hole, repeats,
                                 max_warm_s * 1000, options])
    renderers = _descendants_with_tag(tag)
    peak = max((_status_kb(p, "VmHWM") for p in renderers), default=0)
    assert not offline.blocked, offline.blocked
    assert not offline.errors or "error" in result, offline.errors
    offline.close()
  finally:
    browser.close()
    server.close()
  result.update(peak_mb=peak / 1024, before_mb=before / 1024)
  return result


def _photo(size):
  bgr = cv2.imread(os.path.join(REPO, "examples", "sklearn_china.png"), cv2.IMREAD_COLOR)
  ok, data = cv2.imencode(".png", cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA))
  assert ok
  return data.tobytes()


def _export(checkpoint_dir, folder):
  subprocess.run([sys.executable, os.path.join(REPO, "export.py"), "--format", "web",
                  "--checkpoint_dir", checkpoint_dir, "--export_dir", folder], check=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--site", help="folder written by export.py --format web")
  parser.add_argument("--checkpoint_dir", help="export this checkpoint first (without --site)")
  parser.add_argument("--sizes", default="512,1024")
  parser.add_argument("--hole", type=float, default=0.25)
  parser.add_argument("--repeats", type=int, default=2, help="warm calls after the first")
  parser.add_argument("--max_warm_seconds", type=float, default=150,
                      help="no warm calls where the first call took longer than this")
  parser.add_argument("--modes", default="plain,isolated")
  parser.add_argument("--isolated_sizes", default="512", help="sizes of the isolated mode")
  parser.add_argument("--no_limit", action="store_true",
                      help="lift deepfill.js's MAX_PIXELS (to see what happens beyond it)")
  parser.add_argument("--output", default=os.path.join(REPO, "bench", "WEB_RESULTS.md"))
  args = parser.parse_args()
  if bool(args.site) == bool(args.checkpoint_dir):
    parser.error("give exactly one of --site and --checkpoint_dir")
  with tempfile.TemporaryDirectory() as tmp:
    site = args.site
    if not site:
      site = os.path.join(tmp, "site")
      _export(args.checkpoint_dir, site)
    from playwright.sync_api import sync_playwright
    rows = ["| server | threads | image | first result since navigation (s) | first call (s) "
            "| warm call (s, median) | renderer RSS before → peak (MB) |",
            "|---|---|---|---|---|---|---|"]
    with sync_playwright() as p:
      for mode in args.modes.split(","):
        headers = static_site.ISOLATION_HEADERS if mode == "isolated" else None
        label = ("http.server + COOP/COEP headers" if mode == "isolated"
                 else "`python -m http.server`")
        sizes = args.isolated_sizes if mode == "isolated" else args.sizes
        for size in (int(s) for s in sizes.split(",")):
          r = measure(p, site, headers, _photo(size), args.hole, args.repeats,
                      args.max_warm_seconds, {"maxPixels": 1e12} if args.no_limit else {})
          if "error" in r:
            rows.append(f"| {label} | | {size}² | failed after {r['afterSeconds']:.0f} s: "
                        f"{r['error'][:200]} | | | {r['before_mb']:.0f} → {r['peak_mb']:.0f} |")
            print(rows[-1], flush=True)
            continue
          warm = f"{statistics.median(r['warm']) / 1000:.1f}" if r["warm"] else "–"
          rows.append(f"| {label} | {r['threads']} | {size}², {100 * r['holeShare']:.0f} % hole | "
                      f"{r['first']['sinceNavigation'] / 1000:.1f} | {r['first']['call'] / 1000:.1f} "
                      f"| {warm} | {r['before_mb']:.0f} → {r['peak_mb']:.0f} |")
          print(rows[-1], flush=True)
    sizes = ["| file | bytes |", "|---|---|"]
    for root, _, files in os.walk(site):
      for name in sorted(files):
        path = os.path.join(root, name)
        sizes.append(f"| `{os.path.relpath(path, site)}` | {os.path.getsize(path):,} |")
    source = f"--site {args.site}" if args.site else f"--checkpoint_dir {args.checkpoint_dir}"
    chromium = subprocess.run([static_site.chromium_executable(), "--version"],
                              capture_output=True, text=True).stdout.strip()
    text = (f"# In the browser: ONNX Runtime Web (WebAssembly)\n\n"
            f"`python bench/bench_web.py {source} --sizes {args.sizes} --hole {args.hole} "
            f"--repeats {args.repeats} --max_warm_seconds {args.max_warm_seconds:g} "
            f"--modes {args.modes} --isolated_sizes {args.isolated_sizes}"
            f"{' --no_limit' if args.no_limit else ''}`\n\n"
            f"{chromium}, headless, on {machine.cpu_model()} "
            f"({os.cpu_count()} cores); load average at the end "
            f"{os.getloadavg()[0]:.1f}.\n\n" + "\n".join(rows) + "\n\nFiles of the folder:\n\n"
            + "\n".join(sizes) + "\n")
    atomic_write(args.output, text)
    print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
