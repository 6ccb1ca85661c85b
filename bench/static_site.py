"""A static file server in a thread and a Chromium page that may fetch nothing outside it: what
bench/bench_web.py and tests/test_web_portable.py open ``export.py --format web``'s folder with."""
import functools
import http.server
import shutil
import threading


class StaticServer:
  """``python -m http.server``'s handler on 127.0.0.1 (a free port) in a daemon thread.

  ``headers`` are added to every answer (e.g. the cross-origin isolation pair)."""

  def __init__(self, folder, headers=None):
    extra = dict(headers or {})

    class Handler(http.server.SimpleHTTPRequestHandler):
      def end_headers(self):
        for key, value in extra.items():
          self.send_header(key, value)
        super().end_headers()

      def log_message(self, *args):  # quiet
        pass

    self.requests = []
    handler = functools.partial(Handler, directory=folder)
    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
    self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
    self.thread.start()

  def close(self):
    self.httpd.shutdown()
    self.httpd.server_close()
    self.thread.join(10)


ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin",
                     "Cross-Origin-Embedder-Policy": "require-corp"}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_executable():
  return shutil.which("chromium") or shutil.which("chromium-browser")


class OfflinePage:
  """A page of ``browser`` on ``base`` whose requests elsewhere are aborted and recorded."""

  def __init__(self, browser, base, path="", viewport=(1280, 800)):
    self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                       accept_downloads=True)
    self.base = base
    self.blocked = []   # URLs the page tried to reach outside the folder
    self.fetched = []   # (method, URL) of everything it asked the folder for
    self.errors = []
    self.context.route("**/*", self._route)
    self.page = self.context.new_page()
    self.page.on("pageerror", lambda e: self.errors.append(str(e)))
    self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
    self.page.goto(base + path)

  def _route(self, route):
    url = route.request.url
    if url.startswith(self.base):
      self.fetched.append((route.request.method, url))
      route.continue_()
    else:
      self.blocked.append(url)
      route.abort()

  def close(self):
    self.context.close()
