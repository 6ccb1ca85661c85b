"""What one request may cost, and reading an upload within it (ARCHITECTURE.md §9.6): the
declared length, the bytes counted while they stream in, the time the body may take."""
import asyncio
import dataclasses
import time

from fastapi import Request

from model.web.errors import ApiError

# Errors sent before the body has fully arrived close the connection (the rest of the body is
# not waited for).
UNREAD = {"Connection": "close"}


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


class _BodyTooLarge(Exception):
  pass


class _BodyTimeout(Exception):
  pass


def _too_large(limits):
  return ApiError(413, f"upload is larger than the server's limit of "
                  f"{limits.max_upload_bytes / 2**20:g} MB (--max_upload_mb)", UNREAD)


def check_declared_length(request, limits):
  """Raises `ApiError` (400 unreadable, 413 over the limit) for the request's
  ``Content-Length`` header, before anything of the body is read."""
  length = request.headers.get("content-length")
  if length is None:
    return
  if not (length.isascii() and length.isdigit()):
    raise ApiError(400, "bad Content-Length header", UNREAD)
  significant = length.lstrip("0")
  if len(significant) > 18 or int(significant or "0") > limits.max_upload_bytes:
    raise _too_large(limits)


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


async def read_form(request, limits):
  """The request's multipart form (at most 2 files and 8 fields), its body counted as it
  arrives. Raises `ApiError` (413 over ``max_upload_bytes``, 408 later than
  ``body_timeout``) or starlette's ``ClientDisconnect``."""
  limited = Request(request.scope, _limited_receive(request.receive, limits.max_upload_bytes,
                                                    limits.body_timeout))
  try:
    return await limited.form(max_files=2, max_fields=8)
  except _BodyTooLarge:
    raise _too_large(limits) from None
  except _BodyTimeout:
    raise ApiError(408, f"the request body did not arrive within {limits.body_timeout:g} s "
                   "(--body_timeout)", UNREAD) from None


async def read_file_field(form, name):
  """The bytes of the form's file field ``name``; `ApiError` 400 if it is missing or text."""
  value = form.get(name)
  if value is None:
    raise ApiError(400, f"missing form field '{name}' (send multipart/form-data with the "
                   "fields 'image' and 'mask')")
  if isinstance(value, str):
    raise ApiError(400, f"form field '{name}' must be a file upload")
  return await value.read()
