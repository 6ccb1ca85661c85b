"""HTTP API and page of the web app (ASGI, FastAPI); `serve.py` runs it with uvicorn.

Routes:
  GET  /             the page (static/index.html; its CSS and JS under /static/)
  GET  /api/health   model description, queue state and limits (JSON)
  POST /api/inpaint  multipart fields ``image``, ``mask`` and optionally ``model`` (one of the
                     served models' names; default: the first) -> image/png
Every GET route also answers HEAD (the same status and headers, no body).

An upload goes through the same library calls as ``python test.py`` (``fileio.decode``
decoding, ``Inpainter.inpaint``, ``fileio.encode`` PNG encoding), so the PNG holds the pixels
test.py writes for that pair. Every error is JSON ``{"error": "one line"}`` with a 4xx status for anything a
client can send (400 unreadable file or form, 413 too large, 422 mask does not fit the image,
503 busy with ``Retry-After``). Only the Host names the server listens as are answered, and
the API refuses cross-site requests (`HostPolicy`, `_RequestGuard`): no other web page can use
it, even through DNS rebinding. Nothing reveals a filesystem path.

Concurrency: the model runs on one worker thread, one request at a time, so the event loop
keeps answering the page and health while a big photo is inpainted. A request holds a slot
from the moment its whole body has arrived until its result is computed (or it fails); there
are ``1 + queue`` slots, and a request finding none gets 503 (before its body is read if they
are already taken when its headers arrive). A body must arrive within
``Limits.body_timeout`` (else 408), a request head within ``server_config``'s idle timeout. A request
whose client has disconnected when its turn comes is dropped before it reaches the model. Uploads are
counted while they stream in and refused with 413 at ``max_upload_bytes``; every image header
is checked against ``max_pixels`` before anything is decoded.
"""
import asyncio
import collections
import concurrent.futures
import dataclasses
import ipaddress
import math
import os
import socket
import threading
import time

import tensorflow as tf
from fastapi import FastAPI
from fastapi import Request
from fastapi.responses import FileResponse
from fastapi.responses import JSONResponse
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.datastructures import MutableHeaders
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
    body_timeout: seconds the whole request body may take to arrive after its headers;
      later: 408 and the connection is closed.
  """
  max_upload_bytes: int
  max_pixels: int
  queue: int
  body_timeout: float = 60.0

  def __post_init__(self):
    if (self.max_upload_bytes < 1 or self.max_pixels < 1 or self.queue < 0
        or not self.body_timeout > 0):
      raise ValueError(f"bad limits: {self}")


MAX_HEAD_BYTES = 16 * 1024  # request line + headers; more: 400 from the HTTP parser (h11)


def server_config(app, idle_timeout=10.0, **kwargs):
  """The ``uvicorn.Config`` serve.py runs ``app`` with.

  A connection must deliver a complete request head (at most `MAX_HEAD_BYTES`) within
  ``idle_timeout`` seconds of opening, and the next one within ``idle_timeout`` seconds of its
  previous response, or it is closed: neither a silent nor a slowly-typing client holds a
  connection. (uvicorn's own ``timeout_keep_alive``, set to the same, restarts with every byte
  received.) ``kwargs`` go to ``uvicorn.Config``.
  """
  import uvicorn
  settings = dict(log_level="warning", access_log=False, server_header=False,
                  timeout_graceful_shutdown=5)
  settings.update(kwargs)
  return uvicorn.Config(app, http=_head_deadline_protocol(idle_timeout),
                        timeout_keep_alive=idle_timeout,
                        h11_max_incomplete_event_size=MAX_HEAD_BYTES, **settings)


def _head_deadline_protocol(seconds):
  """uvicorn's h11 protocol with a deadline for each request head (see `server_config`)."""
  from uvicorn.protocols.http.h11_impl import H11Protocol

  class HeadDeadlineProtocol(H11Protocol):
    _deadline = None
    _waiting_after = None  # the request/response cycle before the awaited head

    def _arm(self):
      self._disarm()
      self._waiting_after = self.cycle
      self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self):
      if self._deadline is not None:
        self._deadline.cancel()
        self._deadline = None

    def _expire(self):
      self._deadline = None
      if not self.transport.is_closing():
        self.transport.close()

    def connection_made(self, transport):
      super().connection_made(transport)
      self._arm()

    def connection_lost(self, exc):
      self._disarm()
      super().connection_lost(exc)

    def handle_events(self):
      super().handle_events()
      if self._deadline is not None and self.cycle is not self._waiting_after:
        self._disarm()  # a new request's head has arrived

    def on_response_complete(self):
      self._arm()  # before: a pipelined request handled inside disarms it
      super().on_response_complete()

  return HeadDeadlineProtocol


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  """What `/api/health` says about a model (``name``: the checkpoint's folder name, never
  a path; it is also the value of the form field ``model`` that chooses it)."""
  name: str
  preset: str
  cnum: int
  strategy: str = "original"   # the pipeline that runs (Inpainter.pipeline())
  seam_blend: bool = True
  precision: str = "float32"   # the Keras dtype policy it runs under (Inpainter.precision)

  def describe(self):
    """Its entry in `/api/health`'s ``models``: name, preset, cnum, ``pipeline`` and
    ``precision``."""
    return {"name": self.name, "preset": self.preset, "cnum": self.cnum,
            "pipeline": {"strategy": self.strategy, "seam_blend": self.seam_blend},
            "precision": self.precision}


@dataclasses.dataclass(frozen=True)
class ServedModel:
  """A loaded model the app offers: its `ModelInfo` and its `Inpainter` (or a stand-in with
  ``inpaint(rgb, hole)``)."""
  info: ModelInfo
  inpainter: object


def _model_table(models):
  """``{name: ServedModel}`` in the given order (the first is the default); names must be
  distinct and contain no path separator."""
  table = {}
  for served in models:
    name = served.info.name
    if not name or "/" in name or "\\" in name or name in table:
      raise ValueError(f"bad or repeated model name {name!r}")
    table[name] = served
  if not table:
    raise ValueError("no model to serve")
  return table


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_WILDCARDS = ("", "0.0.0.0", "::")


def _split_authority(authority):
  """``name[:port]`` (``[v6]:port`` for IPv6) -> (lower-case name, port or None); None if
  it is not of that form."""
  authority = authority.strip().lower()
  name, port = authority, None
  if authority.startswith("["):
    end = authority.find("]")
    if end < 0:
      return None
    name, rest = authority[:end + 1], authority[end + 1:]
    if rest:
      if not rest.startswith(":"):
        return None
      port = rest[1:]
  elif ":" in authority:
    name, port = authority.rsplit(":", 1)
  if port is not None:
    if not port.isdigit():
      return None
    port = int(port)
  return (name, port) if name else None


def _is_ip_literal(name):
  try:
    ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
    return True
  except ValueError:
    return False


@dataclasses.dataclass(frozen=True)
class HostPolicy:
  """The ``Host`` header values (and so the ``Origin`` values) the server answers to.

  Attributes:
    names: lower-case host names and IP literals (IPv6 in brackets).
    port: the port the server listens on; a Host without a port means 80.
    any_ip: also any IP literal (a server on a wildcard address: DNS rebinding always
      sends a domain name, never an IP address).
  """
  names: frozenset
  port: int
  any_ip: bool = False

  def allows(self, authority):
    parts = _split_authority(authority or "")
    if parts is None:
      return False
    name, port = parts
    return ((port or 80) == self.port
            and (name in self.names or (self.any_ip and _is_ip_literal(name))))

  def allows_origin(self, origin):
    scheme, sep, authority = origin.partition("://")
    return sep == "://" and scheme.lower() == "http" and "/" not in authority and (
        self.allows(authority))


def allowed_hosts(host, port):
  """The `HostPolicy` of a server listening on ``host`` (as ``--host`` spells it) and
  ``port``: the loopback names, ``host`` itself, and for a wildcard address (0.0.0.0, ::)
  also this machine's host names and any IP literal."""
  name = host.strip().lower()
  if ":" in name and not name.startswith("["):
    name = f"[{name}]"
  names = set(LOOPBACK_NAMES) | {name}
  wildcard = host.strip() in _WILDCARDS
  if wildcard:
    names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
  return HostPolicy(frozenset(names - {"", "[]"}), int(port), any_ip=wildcard)


class ApiError(Exception):
  """A client error with its HTTP status; the message is one line."""

  def __init__(self, status, message, headers=None):
    super().__init__(message)
    self.status = status
    self.message = message
    self.headers = headers or {}


class _BodyTooLarge(Exception):
  pass


class _BodyTimeout(Exception):
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


def warm_up(inpainter):
  """Runs small inpaintings so the first request does not pay for graph tracing (seconds):
  a small hole, and with a scaling strategy one that it rescales (`Inpainter.warm_up`)."""
  start = time.monotonic()
  inpainter.warm_up()
  return time.monotonic() - start


class ShuttingDown(Exception):
  """The server is stopping: the request will not be inpainted."""


class ClientGone(Exception):
  """The request's client disconnected before its turn: its job was dropped unrun."""


class ModelWorker:
  """The model's one thread (``ThreadPoolExecutor(max_workers=1)``: jobs run in arrival
  order) and the request slots in front of it.

  `admit`/`release` and `run` are called on the event loop only. A slot taken by `admit` is
  given back by `release` if the request ends before `run`, otherwise when its job is done
  (finished, failed or cancelled before it started), even if the request was abandoned
  meanwhile, so the slots always bound the work in the executor's queue. `shut_down` (safe
  from a signal handler) answers every waiting request at once.
  """

  def __init__(self, slots):
    self.slots = slots
    self.admitted = 0
    self.running = False        # as seen on the event loop (for health)
    self.computing = False      # as seen by the worker thread
    self._closing = threading.Event()
    self._loop = None
    self._pending = set()
    self._durations = collections.deque(maxlen=16)
    self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                           thread_name_prefix="model-worker")

  @property
  def closing(self):
    return self._closing.is_set()

  def admit(self):
    if self.closing or self.admitted >= self.slots:
      return False
    self.admitted += 1
    return True

  def has_room(self):
    """Whether `admit` would succeed now (takes nothing)."""
    return not self.closing and self.admitted < self.slots

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

  async def run(self, fn, *args, is_gone=None):
    """Runs ``fn(*args)`` on the worker thread (the caller holds a slot, released here).

    ``is_gone``: a coroutine function (e.g. ``request.is_disconnected``) awaited on the event
    loop when the job's turn comes; if it returns True the job is dropped before ``fn`` runs
    and `ClientGone` is raised. Raises `ShuttingDown` if the server stops before the job is
    done.
    """
    loop = self._loop = asyncio.get_running_loop()
    try:
      job = self._executor.submit(self._job, loop, fn, args, is_gone)
    except RuntimeError:  # the executor was shut down
      self.release()
      raise ShuttingDown() from None
    job.add_done_callback(lambda _: _call_soon(loop, self._done))
    future = asyncio.wrap_future(job)
    self._pending.add(future)
    try:
      return await future
    except asyncio.CancelledError:
      if self.closing and future.cancelled() and not asyncio.current_task().cancelling():
        raise ShuttingDown() from None  # cancelled by shut_down, not the request's task
      raise
    finally:
      self._pending.discard(future)

  def shut_down(self):
    """New requests are refused and waiting ones fail with `ShuttingDown`; the job in the
    model is abandoned (serve.py leaves without waiting for it). Safe to call from a signal
    handler."""
    self._closing.set()
    if self._loop is not None:
      _call_soon(self._loop, self._cancel_pending)

  def _cancel_pending(self):
    self._executor.shutdown(wait=False, cancel_futures=True)
    for future in list(self._pending):
      future.cancel()

  def _job(self, loop, fn, args, is_gone):  # on the worker thread
    if self.closing:
      raise ShuttingDown()
    if is_gone is not None and _ask(loop, is_gone):
      raise ClientGone()
    _call_soon(loop, self._set_running, True)
    self.computing = True
    start = time.monotonic()
    try:
      return fn(*args)
    finally:
      self.computing = False
      self._durations.append(time.monotonic() - start)

  def _set_running(self, value):
    self.running = value

  def _done(self):
    self.running = False
    self.release()


def _ask(loop, coroutine_function, timeout=10):
  """From another thread: the result of ``coroutine_function()`` run on ``loop`` (False if the
  loop does not answer within ``timeout`` seconds, e.g. while it stops)."""
  try:
    return bool(asyncio.run_coroutine_threadsafe(coroutine_function(), loop).result(timeout))
  except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError, RuntimeError):
    return False


def _call_soon(loop, fn, *args):
  """``loop.call_soon_threadsafe`` that does nothing once the loop is closed."""
  try:
    loop.call_soon_threadsafe(fn, *args)
  except RuntimeError:
    pass


class _HeadAsGet:
  """ASGI middleware: ``HEAD`` is answered as ``GET`` is, without the body (RFC 9110 §9.3.2),
  for every route that has a ``GET``."""

  def __init__(self, app):
    self.app = app

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http" or scope["method"] != "HEAD":
      await self.app(scope, receive, send)
      return

    async def send_headers_only(message):
      if message["type"] == "http.response.body":
        message = {**message, "body": b""}
      await send(message)

    await self.app({**scope, "method": "GET"}, receive, send_headers_only)


class _RequestGuard:
  """ASGI middleware: a request whose ``Host`` is not one of the server's (`HostPolicy`) gets
  400 (no DNS-rebound page can reach the app); an ``/api/`` request from another site gets
  403: an ``Origin`` that is not ``http://`` + an allowed host, or a ``Sec-Fetch-Site`` other
  than ``same-origin`` or ``none``. Requests without these headers (curl, scripts) pass."""

  def __init__(self, app, policy):
    self.app = app
    self.policy = policy

  async def __call__(self, scope, receive, send):
    if scope["type"] == "http":
      headers = Headers(scope=scope)
      refusal = None
      host = headers.get("host")
      if not self.policy.allows(host):
        refusal = error_response(400, f"Host {host!r} is not an address of this server; open "
                                 f"it as http://127.0.0.1:{self.policy.port}/ or the --host "
                                 "address it listens on")
      elif scope["path"].startswith("/api/"):
        site, origin = headers.get("sec-fetch-site"), headers.get("origin")
        if (site is not None and site.lower() not in ("same-origin", "none")) or (
            origin is not None and not self.policy.allows_origin(origin)):
          refusal = error_response(403, "cross-site request refused: the API answers only "
                                   "its own page and clients that send no Origin")
      if refusal is not None:
        await refusal(scope, receive, send)
        return
    await self.app(scope, receive, send)


class _SecurityHeaders:
  """ASGI middleware: `_SECURITY_HEADERS` on every response that does not set them itself."""

  def __init__(self, app):
    self.app = app

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      await self.app(scope, receive, send)
      return

    async def send_with_headers(message):
      if message["type"] == "http.response.start":
        headers = MutableHeaders(scope=message)
        for key, value in _SECURITY_HEADERS.items():
          headers.setdefault(key, value)
      await send(message)

    await self.app(scope, receive, send_with_headers)


def _limited_receive(receive, limit, seconds):
  """An ASGI ``receive`` that raises `_BodyTooLarge` once the body passes ``limit`` bytes and
  `_BodyTimeout` when it has not fully arrived ``seconds`` after the first call."""
  seen = 0
  deadline = time.monotonic() + seconds

  async def wrapped():
    nonlocal seen
    try:
      message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
    except TimeoutError:
      raise _BodyTimeout() from None
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


def _model_field(form, table):
  """The `ServedModel` the form's optional ``model`` field names (absent or empty: the
  default, the first). Raises `ApiError` (400 not a text field, 422 unknown name)."""
  value = form.get("model")
  if value is None or value == "":
    return next(iter(table.values()))
  if not isinstance(value, str):
    raise ApiError(400, "form field 'model' must be a text field (a model's name)")
  if value not in table:
    shown = value if len(value) <= 40 else value[:40] + "..."
    raise ApiError(422, f"unknown model {shown!r}; this server offers: {', '.join(table)}")
  return table[value]


def create_app(models, limits, hosts):
  """The ASGI app around loaded models (`ServedModel`s, the first is the default; warm each
  up with `warm_up` first); ``hosts``: the `HostPolicy` (`allowed_hosts`) of the address it
  is served on. All models share the one `ModelWorker`: one request runs at a time, whichever
  model it chose."""
  table = _model_table(models)
  default = next(iter(table.values())).info
  worker = ModelWorker(limits.queue + 1)
  app = FastAPI(title="DeepFill", docs_url=None, redoc_url=None, openapi_url=None)
  app.state.worker = worker

  app.add_middleware(_RequestGuard, policy=hosts)
  app.add_middleware(_SecurityHeaders)
  app.add_middleware(_HeadAsGet)  # outermost: HEAD takes the GET route's every step

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
        "model": default.name,
        "preset": default.preset,
        "cnum": default.cnum,
        "pipeline": default.describe()["pipeline"],
        "precision": default.precision,
        "models": [m.info.describe() for m in table.values()],
        "default": default.name,
        "queue": {"running": int(worker.running), "waiting": worker.waiting,
                  "limit": limits.queue},
        "limits": {"max_upload_mb": limits.max_upload_bytes / 2**20,
                   "max_megapixels": limits.max_pixels / 1e6},
    }

  # Errors sent before the body has fully arrived close the connection (the rest of the
  # body is not waited for).
  unread = {"Connection": "close"}

  def busy():
    if worker.closing:
      return error_response(503, "the server is shutting down", unread)
    return error_response(503, f"busy: {worker.waiting} requests are already waiting; "
                          "try again shortly", {"Retry-After": str(worker.retry_after()), **unread})

  @app.post("/api/inpaint")
  async def inpaint(request: Request):
    length = request.headers.get("content-length")
    if length is not None:
      if not length.isdigit():
        return error_response(400, "bad Content-Length header", unread)
      if int(length) > limits.max_upload_bytes:
        return error_response(413, _upload_limit_message(limits), unread)
    if not worker.has_room():  # no slot is taken while the body arrives
      return busy()
    limited = Request(request.scope, _limited_receive(request.receive, limits.max_upload_bytes,
                                                      limits.body_timeout))
    try:
      form = await limited.form(max_files=2, max_fields=8)
    except _BodyTooLarge:
      return error_response(413, _upload_limit_message(limits), unread)
    except _BodyTimeout:
      return error_response(408, f"the request body did not arrive within "
                            f"{limits.body_timeout:g} s (--body_timeout)", unread)
    except ClientDisconnect:
      return Response(status_code=400)  # nobody is listening any more
    submitted = False
    admitted = worker.admit()
    try:
      if not admitted:
        return busy()
      try:
        image_data = await _read_file_field(form, "image")
        mask_data = await _read_file_field(form, "mask")
        chosen = _model_field(form, table)
      finally:
        await form.close()
      decode.check_header(image_data, "image", limits.max_pixels)
      decode.check_header(mask_data, "mask", limits.max_pixels)
      submitted = True
      png = await worker.run(inpaint_upload, chosen.inpainter, image_data, mask_data,
                             limits.max_pixels, is_gone=request.is_disconnected)
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
    except ClientGone:
      return Response(status_code=400)  # nobody is listening any more
    finally:
      if admitted and not submitted:
        worker.release()
      if not admitted:
        await form.close()

  return app
