"""The web app's routes (ASGI, FastAPI); `serve.py` runs it with uvicorn (ARCHITECTURE.md §9.6).

Routes:
  GET  /             the painting page (page/index.html; its CSS and JS beside it, /app.css ...)
  GET  /api/health   model description, queue state and limits (JSON)
  POST /api/inpaint  multipart fields ``image``, ``mask`` and optionally ``model`` (one of the
                     served models' names; default: the first) -> image/png
  GET  /browser/...  with ``browser_site``: a folder of ``export.py --format web``, whose
                     ``deepfill.js`` the page runs when "Run in this browser" is on
Every GET route also answers HEAD (the same status and headers, no body).

An upload goes through the same library calls as ``python test.py`` (`inpaint_upload`). Every
error is JSON ``{"error": "one line"}`` with a 4xx status for anything a client can send (400
unreadable file or form, 408 slow body, 413 too large, 422 mask does not fit the image, 503
busy with ``Retry-After``); the Host/Origin policy is `hosts.RequestGuard`, the request limits
`uploads`, the model thread and its slots `worker.ModelWorker`. Nothing reveals a path.
"""
import dataclasses
import os
import time

import tensorflow as tf
from fastapi import FastAPI
from fastapi import Request
from fastapi.responses import FileResponse
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from model.errors import UserError
from model.fileio import decode
from model.fileio import encode
from model.web import hosts as hosts_lib
from model.web import middleware
from model.web import uploads
from model.web.errors import ApiError
from model.web.errors import error_response
from model.web.worker import ClientGone
from model.web.worker import ModelWorker
from model.web.worker import ShuttingDown

PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page")
# The page's files this server answers at /<name> (site.js and deepfill.js belong to the
# static site of export.py --format web; the server's page loads a site's copy under /browser/).
PAGE_FILES = ("index.html", "app.css", "paint.js", "pixels.js", "server.js", "browser.js")
BROWSER_PATH = "/browser"


def security_headers(browser_site):
  """The headers of every response: everything the page needs comes from this server (no CDN,
  no inline code). With a browser site, WebAssembly may be compiled and the page is
  cross-origin isolated, so that ONNX Runtime Web gets threads."""
  wasm = " 'wasm-unsafe-eval'" if browser_site else ""
  headers = {
      "Content-Security-Policy": (f"default-src 'self'; script-src 'self'{wasm}; "
                                  "img-src 'self' blob: data:; connect-src 'self'; "
                                  "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
      "X-Content-Type-Options": "nosniff",
      "Referrer-Policy": "no-referrer",
  }
  if browser_site:
    headers.update({"Cross-Origin-Opener-Policy": "same-origin",
                    "Cross-Origin-Embedder-Policy": "require-corp"})
  return headers


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


def create_app(models, limits, hosts, browser_site=None):
  """The ASGI app around loaded models (`ServedModel`s, the first is the default; warm each
  up with `warm_up` first); ``limits``: `uploads.Limits`; ``hosts``: the
  `hosts.HostPolicy` (`hosts.allowed_hosts`) of the address it is served on; ``browser_site``:
  a folder written by ``export.py --format web`` (checked with `site.check_site`) or None.
  All models share the one `ModelWorker`: one request runs at a time, whichever model it
  chose."""
  table = _model_table(models)
  default = next(iter(table.values())).info
  worker = ModelWorker(limits.queue + 1)
  app = FastAPI(title="DeepFill", docs_url=None, redoc_url=None, openapi_url=None)
  app.state.worker = worker

  app.add_middleware(hosts_lib.RequestGuard, policy=hosts)
  app.add_middleware(middleware.DefaultHeaders, headers=security_headers(browser_site))
  app.add_middleware(middleware.HeadAsGet)  # outermost: HEAD takes the GET route's every step

  @app.exception_handler(HTTPException)
  async def http_error(request, exc):
    return error_response(exc.status_code, exc.detail, getattr(exc, "headers", None))

  @app.exception_handler(Exception)
  async def unexpected_error(request, exc):
    return error_response(500, f"internal error ({type(exc).__name__}); see the server log")

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
        "browser": ({"path": BROWSER_PATH + "/", "name": os.path.basename(
            os.path.abspath(browser_site))} if browser_site else None),
        "queue": {"running": int(worker.running), "waiting": worker.waiting,
                  "limit": limits.queue},
        "limits": {"max_upload_mb": limits.max_upload_bytes / 2**20,
                   "max_megapixels": limits.max_pixels / 1e6},
    }

  def busy():
    if worker.closing:
      return error_response(503, "the server is shutting down", uploads.UNREAD)
    return error_response(503, f"busy: {worker.waiting} requests are already waiting; "
                          "try again shortly", {"Retry-After": str(worker.retry_after()),
                                                **uploads.UNREAD})

  @app.post("/api/inpaint")
  async def inpaint(request: Request):
    try:
      uploads.check_declared_length(request, limits)
      if not worker.has_room():  # no slot is taken while the body arrives
        return busy()
      form = await uploads.read_form(request, limits)
    except ApiError as e:
      return error_response(e.status, e.message, e.headers)
    except ClientDisconnect:
      return Response(status_code=400)  # nobody is listening any more
    submitted = False
    admitted = worker.admit()
    try:
      if not admitted:
        return busy()
      try:
        image_data = await uploads.read_file_field(form, "image")
        mask_data = await uploads.read_file_field(form, "mask")
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

  @app.get("/", include_in_schema=False)
  async def page():
    return FileResponse(os.path.join(PAGE_DIR, "index.html"),
                        headers={"Cache-Control": "no-cache"})

  @app.get("/{name}", include_in_schema=False)
  async def page_file(name: str):
    if name not in PAGE_FILES:
      raise HTTPException(404, "Not Found")
    return FileResponse(os.path.join(PAGE_DIR, name), headers={"Cache-Control": "no-cache"})

  if browser_site:
    app.mount(BROWSER_PATH, StaticFiles(directory=browser_site), name="browser")
  return app
