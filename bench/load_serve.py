r"""Load test of the web app: concurrent clients against a real `python serve.py` on 127.0.0.1.

  python bench/load_serve.py [--checkpoint_dir checkpoints/demo] [--clients 4,8,16]
      [--requests 10] [--size 512] [--hole 0.1] [--queue 8] [--output bench/SERVE_RESULTS.md]

For each number of clients, every client sends --requests POST /api/inpaint of the same photo
(the README example resized to --size x --size, a centred hole covering --hole of it), one after
another on fresh connections. A 503 is an answer too: the client then waits the Retry-After the
server gave before its next request (a polite client), and it counts as refused, not lost.
Meanwhile one more thread polls GET /api/health to show the server stays responsive.

Checked: every answer is either a complete PNG identical to the first one, or a clean 503 with
Retry-After and a JSON error; anything else (another status, a dropped connection, a different
PNG) is counted as lost and makes the run fail. Reported per level: latency p50/p95 of the 200s,
throughput (200s per second of wall time), 503s, health latency, and the server's peak RSS
during the level (VmHWM, reset between levels through /proc/PID/clear_refs). Prints the table
and writes it, with the command and the machine's load, to --output.
"""
import argparse
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from model.fileio.atomic import atomic_write  # noqa: E402

URL_LINE = re.compile(r"DeepFill web app: http://([^:/]+):(\d+)/")


def _args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--checkpoint_dir", default=os.path.join(REPO, "checkpoints", "demo"))
  parser.add_argument("--clients", default="4,8,16", help="comma-separated client counts")
  parser.add_argument("--requests", type=int, default=10, help="requests per client")
  parser.add_argument("--size", type=int, default=512, help="photo side (pixels)")
  parser.add_argument("--hole", type=float, default=0.1, help="hole share of the photo")
  parser.add_argument("--queue", type=int, default=8, help="serve.py --queue")
  parser.add_argument("--max_memory_gb", type=float, default=1.0, help="serve.py --max_memory_gb")
  parser.add_argument("--output", default=os.path.join(REPO, "bench", "SERVE_RESULTS.md"))
  return parser.parse_args()


def _inputs(size, hole_share):
  bgr = cv2.imread(os.path.join(REPO, "examples", "sklearn_china.png"), cv2.IMREAD_COLOR)
  photo = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA)
  side = int(round(size * hole_share ** 0.5))
  mask = np.zeros((size, size), np.uint8)
  top = (size - side) // 2
  mask[top:top + side, top:top + side] = 255
  ok1, image_png = cv2.imencode(".png", photo)
  ok2, mask_png = cv2.imencode(".png", mask)
  assert ok1 and ok2
  return image_png.tobytes(), mask_png.tobytes(), side * side / size / size


def _multipart(image, mask):
  boundary = "bench" + secrets.token_hex(8)
  parts = []
  for name, data in (("image", image), ("mask", mask)):
    parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                 f"filename=\"{name}.png\"\r\nContent-Type: image/png\r\n\r\n".encode())
    parts.append(data + b"\r\n")
  parts.append(f"--{boundary}--\r\n".encode())
  return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Server:
  """serve.py in a subprocess, started with --port 0; host/port parsed from its URL line."""

  def __init__(self, args):
    cmd = [sys.executable, os.path.join(REPO, "serve.py"), "--port", "0",
           "--checkpoint_dir", args.checkpoint_dir, "--queue", str(args.queue),
           "--max_memory_gb", str(args.max_memory_gb)]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    self.started = time.monotonic()
    self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
    for line in self.proc.stdout:
      match = URL_LINE.search(line)
      if match:
        self.host, self.port = match.group(1), int(match.group(2))
        break
    else:
      raise SystemExit(f"serve.py exited with status {self.proc.wait()} before listening")
    self.startup_s = time.monotonic() - self.started
    threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

  def status(self, key):
    with open(f"/proc/{self.proc.pid}/status") as f:
      for line in f:
        if line.startswith(key + ":"):
          return int(line.split()[1]) * 1024
    return 0

  def reset_peak(self):
    """Resets VmHWM to the current RSS (Linux >= 4.0); False if not allowed."""
    try:
      with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
        f.write("5")
      return True
    except OSError:
      return False

  def stop(self):
    self.proc.send_signal(signal.SIGINT)
    try:
      return self.proc.wait(60)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      return self.proc.wait()


def _request(server, method, path, body=None, content_type=None, timeout=900):
  conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
  try:
    headers = {"Connection": "close"}
    if content_type:
      headers["Content-Type"] = content_type
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    headers = {key.lower(): value for key, value in response.getheaders()}
    return response.status, headers, response.read()
  finally:
    conn.close()


def _is_json_error(data):
  try:
    return isinstance(json.loads(data), dict) and "error" in json.loads(data)
  except ValueError:
    return False


def _percentile(values, q):
  return float(np.percentile(values, q)) if values else float("nan")


def _level(server, clients, requests, body, content_type, reference):
  """Runs one load level; returns its row (dict)."""
  results = []  # (kind, seconds)
  lock = threading.Lock()
  barrier = threading.Barrier(clients + 1)
  done = threading.Event()
  health = []

  def client():
    barrier.wait()
    for _ in range(requests):
      start = time.monotonic()
      try:
        status, headers, data = _request(server, "POST", "/api/inpaint", body, content_type)
      except (OSError, http.client.HTTPException) as e:
        status, headers, data = None, {}, str(e).encode()
      elapsed = time.monotonic() - start
      wait = 0.0
      if status == 200 and data == reference:
        kind = "ok"
      elif status == 503 and _is_json_error(data) and "retry-after" in headers:
        kind = "busy"
        wait = float(headers["retry-after"])
      else:
        kind = "lost"
        print(f"lost: status {status}: {data[:200]!r}", file=sys.stderr)
      with lock:
        results.append((kind, elapsed))
      if wait:
        time.sleep(wait)

  def probe():
    while not done.is_set():
      start = time.monotonic()
      try:
        status, _, _ = _request(server, "GET", "/api/health", timeout=60)
      except (OSError, http.client.HTTPException):
        status = None
      health.append((status, time.monotonic() - start))
      time.sleep(0.25)

  threads = [threading.Thread(target=client) for _ in range(clients)]
  for t in threads:
    t.start()
  server.reset_peak()
  prober = threading.Thread(target=probe)
  start = time.monotonic()
  barrier.wait()
  prober.start()
  for t in threads:
    t.join()
  wall = time.monotonic() - start
  done.set()
  prober.join()
  ok = [s for kind, s in results if kind == "ok"]
  busy = [s for kind, s in results if kind == "busy"]
  lost = [s for kind, s in results if kind == "lost"]
  health_ok = [s for status, s in health if status == 200]
  return {
      "clients": clients, "sent": len(results), "ok": len(ok), "busy": len(busy),
      "lost": len(lost) + sum(1 for status, _ in health if status != 200),
      "p50": _percentile(ok, 50), "p95": _percentile(ok, 95),
      "busy_p50_ms": 1000 * _percentile(busy, 50), "throughput": len(ok) / wall, "wall": wall,
      "health_p95_ms": 1000 * _percentile(health_ok, 95),
      "health_max_ms": 1000 * max(health_ok, default=float("nan")),
      "peak_rss_gb": server.status("VmHWM") / 1e9,
  }


def _ms(value):
  return "–" if np.isnan(value) else f"{value:.0f} ms"


def _table(rows):
  lines = ["| clients × requests | 200 | 503 | lost | latency p50 | latency p95 | throughput "
           "| 503 answered in (p50) | health p95 / max | server peak RSS |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(
        f"| {r['clients']} × {r['requests']} | {r['ok']} | {r['busy']} | {r['lost']} "
        f"| {r['p50']:.2f} s | {r['p95']:.2f} s | {r['throughput']:.2f} req/s "
        f"| {_ms(r['busy_p50_ms'])} | {r['health_p95_ms']:.0f} / {r['health_max_ms']:.0f} ms "
        f"| {r['peak_rss_gb']:.2f} GB |")
  return "\n".join(lines)


def main():
  args = _args()
  levels = [int(v) for v in args.clients.split(",") if v.strip()]
  image, mask, share = _inputs(args.size, args.hole)
  body, content_type = _multipart(image, mask)
  load_before = os.getloadavg()
  server = Server(args)
  try:
    status, _, reference = _request(server, "POST", "/api/inpaint", body, content_type)
    if status != 200:
      raise SystemExit(f"the first request failed with status {status}: {reference[:300]!r}")
    single = []
    for _ in range(3):
      start = time.monotonic()
      _request(server, "POST", "/api/inpaint", body, content_type)
      single.append(time.monotonic() - start)
    peak_after_start = server.status("VmHWM") / 1e9
    rows = []
    for clients in levels:
      row = _level(server, clients, args.requests, body, content_type, reference)
      row["requests"] = args.requests
      rows.append(row)
      print(_table([row]).splitlines()[-1], flush=True)
    peak_overall = server.status("VmHWM") / 1e9
  finally:
    exit_status = server.stop()
  load_after = os.getloadavg()
  table = _table(rows)
  lost = sum(r["lost"] for r in rows)
  command = "python bench/load_serve.py " + " ".join(sys.argv[1:])
  checkpoint = os.path.relpath(args.checkpoint_dir, REPO)
  if checkpoint.startswith(".."):
    checkpoint = os.path.abspath(args.checkpoint_dir)
  text = f"""# Web app under load (`bench/load_serve.py`)

Command: `{command.strip()}`

* Server: `python serve.py --checkpoint_dir {checkpoint} --queue {args.queue} --max_memory_gb {args.max_memory_gb:g}` on 127.0.0.1 (one request at a time through the model, {args.queue} may wait).
* Each request: POST /api/inpaint of a {args.size}×{args.size} PNG photo with a centred square hole of {100 * share:.1f} % ({len(body) / 1024:.0f} KB multipart body).
* Each client sends {args.requests} requests one after another; after a 503 it waits the server's `Retry-After` before the next one.
  A 503 is a clean refusal; "lost" counts anything else (other status, dropped connection, a PNG that differs from the first answer): **{lost} lost**.
* One request alone: {np.median(single):.2f} s (median of 3, after warm-up). Server start-up (import, model load, warm-up) to listening: {server.startup_s:.1f} s.
* Server peak RSS: {peak_after_start:.2f} GB after start-up and the first requests, {peak_overall:.2f} GB over the whole run (VmHWM; the column below is per level, reset between levels).
  Server exit status after Ctrl+C (SIGINT): {exit_status}.
* Machine: {os.cpu_count()} CPUs; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (the machine is shared; latencies scale with its load).

{table}

Latency is per answered request as a client sees it (upload, queueing, inference, PNG); throughput is
200s per second of wall time for the level. With one model worker, throughput stays at about one
request per single-request time whatever the number of clients; more clients than `1 + --queue`
slots get quick 503s instead of piling up memory, and health keeps answering throughout.
"""
  atomic_write(args.output, text)
  print(table)
  print(f"server peak RSS {peak_overall:.2f} GB; wrote {args.output}")
  return 1 if lost else 0


if __name__ == "__main__":
  sys.exit(main())
