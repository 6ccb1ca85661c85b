"""Generic ASGI middlewares of the web app: HEAD as GET, default response headers."""
from starlette.datastructures import MutableHeaders


class HeadAsGet:
  """``HEAD`` is answered as ``GET`` is, without the body (RFC 9110 §9.3.2), for every route
  that has a ``GET``."""

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


class DefaultHeaders:
  """``headers`` (a dict) on every response that does not set them itself."""

  def __init__(self, app, headers):
    self.app = app
    self.headers = dict(headers)

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      await self.app(scope, receive, send)
      return

    async def send_with_headers(message):
      if message["type"] == "http.response.start":
        headers = MutableHeaders(scope=message)
        for key, value in self.headers.items():
          headers.setdefault(key, value)
      await send(message)

    await self.app(scope, receive, send_with_headers)
