"""HTTP API and page of the web app (ASGI, FastAPI); `serve.py` runs it with uvicorn.

Routes:
  GET  /             the page (static/index.html; its CSS and JS under /static/)
  GET  /api/health   model description, queue state and limits (JSON)
  POST /api/inpaint  multipart fields ``image`` and ``mask`` -> image/png

An upload goes through the same library calls as ``python test.py`` (``fileio.decode``
decoding, ``Inpainter.inpaint``, ``fileio.encode`` PNG encoding), so the PNG holds the pixels
test.py writes for that pair. Every error is JSON ``{"error": "one line"}`` with a 4xx status for anything a
client can send (400 unreadable file or form, 413 too large, 422 mask does not fit the image,
503 busy with ``Retry-After``).

Concurrency: the model runs on one worker thread, one request at a time, so the event loop
keeps answering the page and health while a big photo is inpainted. A request holds a slot
from the moment its headers arrive until its result is computed (or it fails); there are
``1 + queue`` slots and a request finding none gets 503 before its body is read. Uploads are
counted while they stream in and refused with 413 at ``max_upload_bytes``; every image header
is checked against ``max_pixels`` before anything is decoded.
"""
import asyncio
import collections
import dataclasses
import math
import os
import queue as queue_lib
import threading
import time

import numpy as np
import tensorflow as tf
from fastapi import FastAPI
from fastapi import Request
from fastapi.responses import FileResponse
from fastapi.responses import JSONResponse
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from model.fileio import decode
from model.fileio import encode
from model.errors import UserError

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
# Everything the page needs comes from this server: no CDN, no inline code.
_SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' blob: data:; "
                                "connect-src 'self'; object-src 'none'; base-uri 'none'; "
                                "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclasses.dataclass(frozen=True)
class Limits:
  """What one request may cost.

  Attributes:
    max_upload_bytes: whole request body (both files and the multipart framing).
    max_pixels: width * height of the image (and of the mask), from the file header.
    queue: requests allowed to wait while one is in the model; more get 503.
  """
  max_upload_bytes: int
  max_pixels: int
  queue: int

  def __post_init__(self):
    if self.max_upload_bytes < 1 or self.max_pixels < 1 or self.queue < 0:
      raise ValueError(f"bad limits: {self}")


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  """What `/api/health` says about the model."""
  name: str
  preset: str
  cnum: int
  checkpoint: str


class ApiError(Exception):
  """A client error with its HTTP status; the message is one line."""

  def __init__(self, status, message, headers=None):
    super().__init__(message)
    self.status = status
    self.message = message
    self.headers = headers or {}


class _BodyTooLarge(Exception):
  pass


def error_response(status, message, headers=None):
  """``{"error": message}`` with ``status``; the message is flattened to one line."""
  text = " ".join(str(message).split()) or "error"
  return JSONResponse({"error": text}, status_code=status, headers=headers)


def inpaint_upload(inpainter, image_data, mask_data, max_pixels):
  """PNG bytes of ``image_data`` inpainted where ``mask_data`` is white (> 127).

  The same steps as ``python test.py --image I --mask M --output O.png``: `decode.read_pair`
  on the bytes (sizes compared from the headers first; EXIF orientation, grey/RGBA/16-bit
  handling, mask threshold), `Inpainter.inpaint`, and the PNG encoding of
  `encode.write_image` (grey stays grey, alpha is kept). Unlike test.py an empty mask is
  refused. Call `decode.check_header` on both first. Raises `ApiError` (422),
  `decode.ImageTooLarge` or `UserError`.
  """
  try:
    rgb, info, hole = decode.read_pair("image", "mask", max_pixels, image_data, mask_data)
  except decode.MaskSizeMismatch as e:
    (w, h), (iw, ih) = e.mask_wh, e.image_wh
    raise ApiError(422, f"mask is {w}x{h} but image is {iw}x{ih} (width x height); "
                   "the mask must have the image's size") from None
  if not hole.any():
    raise ApiError(422, "mask has no hole (no pixel > 127): paint what should be filled in white")
  result, _ = inpainter.inpaint(rgb, hole)
  return encode.encode_image("result.png", result, info, check_path=False)


def warm_up(inpainter, size=64):
  """Runs one small inpainting so the first request does not pay for graph tracing (seconds)."""
  start = time.monotonic()
  y, x = np.mgrid[:size, :size]
  rgb = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
  hole = np.zeros((size, size), bool)
  hole[size // 4:size // 2, size // 4:size // 2] = True
  inpainter.inpaint(rgb, hole)
  return time.monotonic() - start


class ShuttingDown(Exception):
  """The server is stopping: the request will not be inpainted."""


class ModelWorker:
  """One daemon thread that runs jobs in arrival order, and the request slots in front of it.

  `admit`/`release` and `run` are called on the event loop only; the thread hands results
  back with ``call_soon_threadsafe``. A slot taken by `admit` is given back by `release`
  if the request ends before `run`, otherwise when its job has finished, even if the
  request was abandoned meanwhile, so the slots always bound the work in the queue.
  `shut_down` (safe from a signal handler) answers every waiting request at once.
  """

  def __init__(self, slots):
    self.slots = slots
    self.admitted = 0
    self.running = False        # as seen on the event loop (for health)
    self.computing = False      # as seen by the worker thread
    self._closing = threading.Event()
    self._loop = None
    self._pending = set()
    self._jobs = queue_lib.SimpleQueue()
    self._durations = collections.deque(maxlen=16)
    threading.Thread(target=self._work, name="model-worker", daemon=True).start()

  @property
  def closing(self):
    return self._closing.is_set()

  def admit(self):
    if self.closing or self.admitted >= self.slots:
      return False
    self.admitted += 1
    return True

  def release(self):
    self.admitted -= 1

  @property
  def waiting(self):
    return self.admitted - int(self.running)

  def retry_after(self):
    """Seconds until a slot is likely free: the mean duration of recent jobs (at least 1)."""
    if not self._durations:
      return 1
    return max(1, math.ceil(sum(self._durations) / len(self._durations)))

  async def run(self, fn, *args):
    """Runs ``fn(*args)`` on the worker thread (the caller holds a slot, released here)."""
    self._loop = asyncio.get_running_loop()
    future = self._loop.create_future()
    self._pending.add(future)
    future.add_done_callback(self._pending.discard)
    self._jobs.put((fn, args, self._loop, future))
    return await future

  def shut_down(self):
    """New requests are refused and waiting ones fail with `ShuttingDown`; the job in the
    model is abandoned (its thread is a daemon). Safe to call from a signal handler."""
    self._closing.set()
    if self._loop is not None:
      self._loop.call_soon_threadsafe(self._fail_pending)

  def _fail_pending(self):
    for future in list(self._pending):
      if not future.done():
        future.set_exception(ShuttingDown())

  def _work(self):
    while True:
      fn, args, loop, future = self._jobs.get()
      if self.closing:
        loop.call_soon_threadsafe(self._finish, future, (False, ShuttingDown()))
        continue
      loop.call_soon_threadsafe(self._set_running, True)
      self.computing = True
      start = time.monotonic()
      try:
        outcome = (True, fn(*args))
      except BaseException as e:  # noqa: BLE001 - handed to the request, never lost
        outcome = (False, e)
      self.computing = False
      self._durations.append(time.monotonic() - start)
      loop.call_soon_threadsafe(self._finish, future, outcome)

  def _set_running(self, value):
    self.running = value

  def _finish(self, future, outcome):
    self.running = False
    self.release()
    if future.done():  # the request was abandoned
      return
    ok, value = outcome
    if ok:
      future.set_result(value)
    else:
      future.set_exception(value)


def _limited_receive(receive, limit):
  """An ASGI ``receive`` that raises `_BodyTooLarge` once the body passes ``limit`` bytes."""
  seen = 0

  async def wrapped():
    nonlocal seen
    message = await receive()
    if message["type"] == "http.request":
      seen += len(message.get("body", b""))
      if seen > limit:
        raise _BodyTooLarge()
    return message

  return wrapped


def _upload_limit_message(limits):
  return (f"upload is larger than the server's limit of {limits.max_upload_bytes / 2**20:g} MB "
          "(--max_upload_mb)")


async def _read_file_field(form, name):
  value = form.get(name)
  if value is None:
    raise ApiError(400, f"missing form field '{name}' (send multipart/form-data with the "
                   "fields 'image' and 'mask')")
  if isinstance(value, str):
    raise ApiError(400, f"form field '{name}' must be a file upload")
  return await value.read()


def create_app(inpainter, model_info, limits):
  """The ASGI app around a loaded `Inpainter` (warm it up with `warm_up` first)."""
  worker = ModelWorker(limits.queue + 1)
  app = FastAPI(title="DeepFill", docs_url=None, redoc_url=None, openapi_url=None)
  app.state.worker = worker

  @app.middleware("http")
  async def security_headers(request, call_next):
    response = await call_next(request)
    for key, value in _SECURITY_HEADERS.items():
      response.headers.setdefault(key, value)
    return response

  @app.exception_handler(HTTPException)
  async def http_error(request, exc):
    return error_response(exc.status_code, exc.detail, getattr(exc, "headers", None))

  @app.exception_handler(Exception)
  async def unexpected_error(request, exc):
    return error_response(500, f"internal error ({type(exc).__name__}); see the server log")

  @app.get("/", include_in_schema=False)
  async def page():
    return FileResponse(os.path.join(STATIC_DIR, "index.html"),
                        headers={"Cache-Control": "no-cache"})

  app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

  @app.get("/api/health")
  async def health():
    return {
        "ready": not worker.closing,
        "model": model_info.name,
        "preset": model_info.preset,
        "cnum": model_info.cnum,
        "checkpoint": model_info.checkpoint,
        "queue": {"running": int(worker.running), "waiting": worker.waiting,
                  "limit": limits.queue},
        "limits": {"max_upload_mb": limits.max_upload_bytes / 2**20,
                   "max_megapixels": limits.max_pixels / 1e6},
    }

  @app.post("/api/inpaint")
  async def inpaint(request: Request):
    length = request.headers.get("content-length")
    if length is not None:
      if not length.isdigit():
        return error_response(400, "bad Content-Length header")
      if int(length) > limits.max_upload_bytes:
        return error_response(413, _upload_limit_message(limits))
    if not worker.admit():
      if worker.closing:
        return error_response(503, "the server is shutting down")
      return error_response(503, f"busy: {worker.waiting} requests are already waiting; "
                            "try again shortly", {"Retry-After": str(worker.retry_after())})
    submitted = False
    try:
      limited = Request(request.scope, _limited_receive(request.receive,
                                                        limits.max_upload_bytes))
      try:
        form = await limited.form(max_files=2, max_fields=8)
      except _BodyTooLarge:
        return error_response(413, _upload_limit_message(limits))
      try:
        image_data = await _read_file_field(form, "image")
        mask_data = await _read_file_field(form, "mask")
      finally:
        await form.close()
      decode.check_header(image_data, "image", limits.max_pixels)
      decode.check_header(mask_data, "mask", limits.max_pixels)
      submitted = True
      png = await worker.run(inpaint_upload, inpainter, image_data, mask_data,
                             limits.max_pixels)
      return Response(png, media_type="image/png")
    except ApiError as e:
      return error_response(e.status, e.message, e.headers)
    except ShuttingDown:
      return error_response(503, "the server is shutting down; the photo was not inpainted")
    except decode.ImageTooLarge as e:
      return error_response(413, e)
    except UserError as e:
      return error_response(400, e)
    except (MemoryError, tf.errors.ResourceExhaustedError):
      return error_response(413, "not enough memory on the server for this image; "
                            "send a smaller one")
    except ClientDisconnect:
      return Response(status_code=400)  # nobody is listening any more
    finally:
      if not submitted:
        worker.release()

  return app
