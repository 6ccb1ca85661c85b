"""The web app's request handling (model/web/app.py) in this process, with a stand-in model.

What is tested here does not depend on the network's pixels (tests/test_serve.py compares
those with test.py against a real `python serve.py`): HEAD, the Host and Origin policy, the
queue and its slots, requests whose client is gone, body and idle timeouts. The stand-in
`inpaint` returns the photo unchanged and can be held at a gate, so that a test decides when
the "model" finishes. The timeout tests run the app under uvicorn with the server settings
serve.py uses (`app.server_config`), in a thread, on a free loopback port.
"""
import asyncio
import socket
import threading
import time

import httpx
import numpy as np
import pytest

import serve_helpers as helpers
from model.web import app as web_app

PORT = 8123
HOST = f"127.0.0.1:{PORT}"


class StandIn:
  """An `Inpainter` stand-in: counts calls; each call waits for `gate` (open by default)."""

  def __init__(self):
    self.calls = 0
    self.started = threading.Event()
    self.gate = threading.Event()
    self.gate.set()

  def inpaint(self, rgb, hole):
    self.calls += 1
    self.started.set()
    assert self.gate.wait(60), "the test never opened the gate"
    return rgb, None


def _app(queue=2, **limits):
  model = StandIn()
  limits = web_app.Limits(max_upload_bytes=limits.pop("max_upload_bytes", 2**20),
                          max_pixels=10**6, queue=queue, **limits)
  info = web_app.ModelInfo(name="demo", preset="v1", cnum=4, checkpoint="/x/demo")
  app = web_app.create_app(model, info, limits)
  return app, model


def _client(app):
  return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{HOST}")


def _upload(side=16):
  rgb = np.full((side, side, 3), 100, np.uint8)
  hole = np.zeros((side, side), bool)
  hole[4:8, 4:8] = True
  return {"image": ("a.png", helpers.png_bytes(rgb), "image/png"),
          "mask": ("m.png", helpers.mask_png(hole), "image/png")}


def _multipart(files):
  """(body bytes, content-type) of a multipart form, as a client would send it."""
  request = httpx.Request("POST", f"http://{HOST}/api/inpaint", files=files)
  return request.read(), request.headers["content-type"]


def run(coro):
  return asyncio.run(coro)


# ---------------------------------------------------------------- HEAD


def test_head_answers_like_get_without_a_body():
  app, _ = _app()

  async def main():
    async with _client(app) as c:
      for path in ("/", "/api/health", "/static/app.js"):
        get, head = await c.get(path), await c.head(path)
        assert get.status_code == head.status_code == 200, (path, head.status_code, head.text)
        assert head.content == b"" and get.content, path
        for key in ("content-type", "content-security-policy"):
          assert head.headers[key] == get.headers[key], (path, key)
        if path != "/api/health":  # health's queue figures may change between the two calls
          assert head.headers["content-length"] == get.headers["content-length"], path
      assert (await c.head("/nothing")).status_code == 404
      assert (await c.head("/api/inpaint")).status_code == 405
  run(main())
