"""Helpers of the web app tests: a real `python serve.py` process, uploads, example pictures."""
import os
import re
import signal
import subprocess
import threading
import time

import cv2
import numpy as np

from conftest import REPO
from support import procs

DEMO_CHECKPOINT = os.path.join(REPO, "checkpoints", "demo")
URL_LINE = re.compile(r"DeepFill web app: (http://\S+/)")


class Server:
  """`python serve.py --port 0 ...` as a subprocess; `url` once it printed its address."""

  def __init__(self, *args, cwd, timeout=900):
    self.proc = procs.start("serve.py", "--port", "0", *args, cwd=cwd)
    self.stdout_lines, self.stderr_lines = [], []
    self._url = None
    self._ready = threading.Event()
    threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout_lines, True),
                     daemon=True).start()
    threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr_lines, False),
                     daemon=True).start()
    self.timeout = timeout

  def _pump(self, stream, lines, watch):
    for line in stream:
      lines.append(line)
      match = URL_LINE.search(line) if watch else None
      if match:
        self._url = match.group(1)
        self._ready.set()
    self._ready.set()  # the process ended

  @property
  def url(self):
    if not self._ready.wait(self.timeout):
      self.stop()
      raise AssertionError(f"serve.py did not start within {self.timeout} s")
    assert self._url, f"serve.py exited ({self.proc.poll()}):\n{self.stderr}"
    return self._url

  @property
  def stderr(self):
    return "".join(self.stderr_lines)

  def rss_peak_kb(self):
    """Peak resident memory of the server process so far (VmHWM, kB)."""
    with open(f"/proc/{self.proc.pid}/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1])
    return None

  def stop(self, sig=signal.SIGINT, timeout=60):
    """Stops the server like Ctrl+C; returns its exit status."""
    if self.proc.poll() is None:
      self.proc.send_signal(sig)
      try:
        self.proc.wait(timeout)
      except subprocess.TimeoutExpired:
        self.proc.kill()
        self.proc.wait()
    time.sleep(0.1)  # let the reader threads drain the pipes
    return self.proc.returncode


def png_bytes(pixels):
  """PNG file bytes of uint8 pixels given in RGB(A) order (or grey)."""
  if pixels.ndim == 3:
    code = cv2.COLOR_RGB2BGR if pixels.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
    pixels = cv2.cvtColor(pixels, code)
  ok, data = cv2.imencode(".png", pixels)
  assert ok
  return data.tobytes()


def mask_png(hole):
  return png_bytes(hole.astype(np.uint8) * 255)


def decode(data, flags=cv2.IMREAD_UNCHANGED):
  pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
  assert pixels is not None, "not a decodable image"
  return pixels


def example_rgb(name="sklearn_china.png"):
  bgr = cv2.imread(os.path.join(REPO, "examples", name), cv2.IMREAD_COLOR)
  assert bgr is not None, name
  return np.ascontiguousarray(bgr[..., ::-1])


def centre_hole(h, w, fraction=0.1):
  """A centred rectangle with the image's aspect ratio covering about ``fraction`` of it."""
  hole = np.zeros((h, w), bool)
  hh, ww = max(1, round(h * fraction ** 0.5)), max(1, round(w * fraction ** 0.5))
  top, left = (h - hh) // 2, (w - ww) // 2
  hole[top:top + hh, left:left + ww] = True
  return hole
