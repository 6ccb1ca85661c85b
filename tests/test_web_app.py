"""The web app's request handling (model/web/: app, hosts, uploads, worker, transport) in this process, with a stand-in model.

What is tested here does not depend on the network's pixels (tests/test_serve.py compares
those with test.py against a real `python serve.py`): HEAD, the Host and Origin policy, the
queue and its slots, requests whose client is gone, body and idle timeouts. The stand-in
`inpaint` returns the photo unchanged and can be held at a gate, so that a test decides when
the "model" finishes. The timeout tests run the app under uvicorn with the server settings
serve.py uses (`transport.server_config`), in a thread, on a free loopback port.
"""
import asyncio
import contextlib
import socket
import threading
import time

import httpx
import numpy as np
import pytest

from support import serve as helpers
from model.web import app as web_app
from model.web import hosts
from model.web import transport
from model.web import uploads

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


def _app(queue=2, port=PORT, others=(), pipelines=None, **limits):
  """The app around a `StandIn` named "demo" (the default) and one per name in ``others``
  (``pipelines``: ``{name: {"strategy": ..., "seam_blend": ...}}`` its `ModelInfo` states);
  returns (app, demo's stand-in) or, with ``others``, (app, {name: stand-in})."""
  model = StandIn()
  limits = uploads.Limits(max_upload_bytes=limits.pop("max_upload_bytes", 2**20),
                          max_pixels=10**6, queue=queue, **limits)
  stand_ins = {"demo": model, **{name: StandIn() for name in others}}
  models = [web_app.ServedModel(web_app.ModelInfo(name=name, preset="v1", cnum=4,
                                                  **(pipelines or {}).get(name, {})), m)
            for name, m in stand_ins.items()]
  app = web_app.create_app(models, limits, hosts.allowed_hosts("127.0.0.1", port))
  return app, (stand_ins if others else model)


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
      for path in ("/", "/api/health", "/paint.js"):
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


# ---------------------------------------------------------------- Host and Origin


def test_only_the_servers_own_host_names_are_answered():
  app, model = _app()

  async def main():
    async with _client(app) as c:
      for host in (HOST, f"localhost:{PORT}", f"[::1]:{PORT}", f"LocalHost:{PORT}"):
        response = await c.get("/api/health", headers={"host": host})
        assert response.status_code == 200, (host, response.text)
      for host in ("evil.example", f"evil.example:{PORT}", "127.0.0.1", f"127.0.0.1:{PORT + 1}",
                   f"127.0.0.2:{PORT}", f"localhost.evil.example:{PORT}", "", f"[::1:{PORT}"):
        for path in ("/", "/api/health", "/paint.js"):
          response = await c.get(path, headers={"host": host})
          assert response.status_code == 400, (host, path, response.status_code)
          assert "is not an address of this server" in response.json()["error"]
        response = await c.post("/api/inpaint", files=_upload(), headers={"host": host})
        assert response.status_code == 400, host
      assert model.calls == 0
  run(main())


def test_ports_that_are_not_ascii_digits_are_400_not_500():
  """'²' is a digit to str.isdigit() but not to int(); a port of thousands of digits is more
  than int() reads. Each is a bad Host (400) or a cross-site Origin (403), never a 500."""
  app, model = _app()
  bad_ports = ["²", "¹²³", f"{PORT}³", "1" * 5000, "0" * 4999 + str(PORT)]
  latin1 = lambda text: text.encode("latin-1")  # HTTP header bytes as the server decodes them

  async def main():
    async with _client(app) as c:
      for port in bad_ports[:-1]:
        for host in (f"127.0.0.1:{port}", f"[::1]:{port}"):
          response = await c.get("/api/health", headers={"host": latin1(host)})
          assert response.status_code == 400, (host[:30], response.status_code)
          assert "is not an address of this server" in response.json()["error"]
        response = await c.post("/api/inpaint", files=_upload(),
                                headers={"origin": latin1(f"http://127.0.0.1:{port}")})
        assert response.status_code == 403, (port[:30], response.status_code)
      # Leading zeros are the same port, however many.
      response = await c.get("/api/health", headers={"host": f"127.0.0.1:{bad_ports[-1]}"})
      assert response.status_code == 200, response.text
      body, kind = _multipart(_upload())
      for length in ("²", "1" * 5000):
        response = await c.post("/api/inpaint", content=body,
                                headers={"content-type": kind,
                                         "content-length": latin1(length)})
        assert response.status_code in (400, 413), (length[:30], response.status_code)
      assert model.calls == 0
  run(main())


def test_allowed_hosts_follow_the_listening_address():
  policy = hosts.allowed_hosts("::1", 8000)
  assert policy.allows("[::1]:8000") and policy.allows("localhost:8000")
  assert not policy.allows("[::1]:8001") and not policy.allows("evil.example:8000")
  lan = hosts.allowed_hosts("192.168.7.9", 80)
  assert lan.allows("192.168.7.9") and lan.allows("192.168.7.9:80")
  assert not lan.allows("10.0.0.1") and not lan.allows("evil.example")
  anywhere = hosts.allowed_hosts("0.0.0.0", 8000)
  assert anywhere.allows("10.1.2.3:8000") and anywhere.allows("[fe80::1]:8000")
  assert anywhere.allows(f"{socket.gethostname()}:8000")
  assert not anywhere.allows("evil.example:8000") and not anywhere.allows("10.1.2.3:9")


def test_cross_site_requests_to_the_api_are_403():
  app, model = _app()
  own = f"http://{HOST}"

  async def main():
    async with _client(app) as c:
      refused = [{"origin": "https://evil.example"},
                 {"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
                 {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"},
                 {"origin": "null"}, {"origin": f"http://127.0.0.1:{PORT + 1}"},
                 {"origin": f"https://{HOST}"}, {"origin": own, "sec-fetch-site": "cross-site"}]
      for headers in refused:
        response = await c.post("/api/inpaint", files=_upload(), headers=headers)
        assert response.status_code == 403, (headers, response.status_code)
        assert "cross-site request refused" in response.json()["error"]
        assert (await c.get("/api/health", headers=headers)).status_code == 403, headers
      assert model.calls == 0
      for headers in ({}, {"origin": own, "sec-fetch-site": "same-origin"},
                      {"origin": f"http://localhost:{PORT}"}, {"sec-fetch-site": "none"}):
        response = await c.post("/api/inpaint", files=_upload(), headers=headers)
        assert response.status_code == 200, (headers, response.text)
      # The page itself may be opened from a link on another site.
      assert (await c.get("/", headers={"sec-fetch-site": "cross-site"})).status_code == 200
  run(main())


def test_a_browser_site_is_offered_with_wasm_allowed(tmp_path):
  from model.web import site
  folder = tmp_path / "exported"
  (folder / "ort").mkdir(parents=True)
  for name in ["deepfill.js", site.MODEL_FILE] + [f"ort/{n}" for n in site.RUNTIME_FILES]:
    (folder / name).write_text("x")
  site.check_site(str(folder))
  plain, _ = _app()
  limits = uploads.Limits(max_upload_bytes=2**20, max_pixels=10**6, queue=1)
  offering = web_app.create_app([web_app.ServedModel(web_app.ModelInfo("demo", "v1", 4),
                                                     StandIn())],
                                limits, hosts.allowed_hosts("127.0.0.1", PORT),
                                browser_site=str(folder))

  async def main():
    async with _client(plain) as c:
      assert (await c.get("/api/health")).json()["browser"] is None
      page = await c.get("/")
      assert "wasm" not in page.headers["content-security-policy"]
      assert "cross-origin-embedder-policy" not in page.headers
      assert (await c.get("/browser/deepfill.js")).status_code == 404
    async with _client(offering) as c:
      assert (await c.get("/api/health")).json()["browser"] == {"path": "/browser/",
                                                                "name": "exported"}
      page = await c.get("/")
      assert "script-src 'self' 'wasm-unsafe-eval'" in page.headers["content-security-policy"]
      assert page.headers["cross-origin-opener-policy"] == "same-origin"
      assert page.headers["cross-origin-embedder-policy"] == "require-corp"
      for name, kind in (("deepfill.js", "javascript"), ("ort/ort.wasm.min.mjs", "javascript"),
                         ("ort/ort-wasm-simd-threaded.wasm", "application/wasm")):
        response = await c.get(f"/browser/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"], name
      assert (await c.get("/browser/../app.py")).status_code == 404
  run(main())


def test_health_reveals_no_path():
  app, _ = _app()

  async def main():
    async with _client(app) as c:
      response = await c.get("/api/health")
      assert response.status_code == 200
      assert "checkpoint" not in response.json() and response.json()["model"] == "demo"
      assert "/" not in response.text, response.text
  run(main())


def test_health_lists_the_models_without_paths():
  crop = {"strategy": "crop", "seam_blend": True}
  plain = {"strategy": "original", "seam_blend": False}
  app, _ = _app(others=["demo_gan"], pipelines={"demo": crop, "demo_gan": plain})

  async def main():
    async with _client(app) as c:
      response = await c.get("/api/health")
      assert response.json()["models"] == [  # each model's own pipeline
          {"name": "demo", "preset": "v1", "cnum": 4, "pipeline": crop, "precision": "float32"},
          {"name": "demo_gan", "preset": "v1", "cnum": 4, "pipeline": plain,
           "precision": "float32"}]
      assert response.json()["default"] == "demo"
      assert response.json()["pipeline"] == crop  # the default's
      assert "/" not in response.text and "\\" not in response.text, response.text
  run(main())


# ---------------------------------------------------------------- several models


def test_the_form_field_model_chooses_the_model():
  app, models = _app(others=["other"])

  async def main():
    async with _client(app) as c:
      health = (await c.get("/api/health")).json()
      assert [m["name"] for m in health["models"]] == ["demo", "other"]
      assert health["default"] == health["model"] == "demo"
      for field, expected in ((None, "demo"), ("", "demo"), ("other", "other"),
                              ("demo", "demo")):
        before = {name: m.calls for name, m in models.items()}
        data = None if field is None else {"model": field}
        response = await c.post("/api/inpaint", files=_upload(), data=data)
        assert response.status_code == 200, response.text
        ran = [name for name, m in models.items() if m.calls != before[name]]
        assert ran == [expected], (field, ran)
  run(main())


@pytest.mark.parametrize("name", ["nope", "../demo", "x" * 500])
def test_an_unknown_model_is_a_one_line_422(name):
  app, models = _app(others=["other"])

  async def main():
    async with _client(app) as c:
      response = await c.post("/api/inpaint", files=_upload(), data={"model": name})
      assert response.status_code == 422, response.text
      assert list(response.json()) == ["error"]
      message = response.json()["error"]
      assert "unknown model" in message and "demo, other" in message, message
      assert "\n" not in message and len(message) < 200, message
      assert app.state.worker.admitted == 0
  run(main())
  assert all(m.calls == 0 for m in models.values())


def test_a_model_sent_as_a_file_is_400():
  app, models = _app(others=["other"])

  async def main():
    async with _client(app) as c:
      files = {"image": _upload()["image"], "model": ("other", b"other", "text/plain")}
      response = await c.post("/api/inpaint", files=files)
      assert response.status_code == 400, response.text
      assert list(response.json()) == ["error"] and "\n" not in response.json()["error"]
  run(main())
  assert all(m.calls == 0 for m in models.values())


def test_model_names_must_be_distinct_folder_names():
  limits = uploads.Limits(max_upload_bytes=2**20, max_pixels=10**6, queue=1)
  policy = hosts.allowed_hosts("127.0.0.1", PORT)
  for names in (["a", "a"], ["a/b"], [""], []):
    models = [web_app.ServedModel(web_app.ModelInfo(n, "v1", 4), StandIn()) for n in names]
    with pytest.raises(ValueError):
      web_app.create_app(models, limits, policy)


# ---------------------------------------------------------------- the queue


async def _wait_for(predicate, timeout=30):
  deadline = time.monotonic() + timeout
  while not predicate():
    assert time.monotonic() < deadline, "timed out"
    await asyncio.sleep(0.01)


def test_slots_bound_the_queue_and_503_says_when_to_retry():
  app, model = _app(queue=1)  # 1 + 1 slots
  model.gate.clear()
  worker = app.state.worker

  async def main():
    async with _client(app) as c:
      first = asyncio.create_task(c.post("/api/inpaint", files=_upload()))
      await _wait_for(model.started.is_set)
      second = asyncio.create_task(c.post("/api/inpaint", files=_upload()))
      await _wait_for(lambda: worker.admitted == 2)
      busy = await c.post("/api/inpaint", files=_upload())
      assert busy.status_code == 503 and "busy" in busy.json()["error"], busy.text
      assert int(busy.headers["retry-after"]) >= 1
      health = (await c.get("/api/health")).json()
      assert health["queue"] == {"running": 1, "waiting": 1, "limit": 1}
      model.gate.set()
      for task in (first, second):
        response = await task
        assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
      await _wait_for(lambda: worker.admitted == 0)
      assert model.calls == 2
  run(main())


def test_shut_down_answers_waiting_requests_at_once():
  app, model = _app(queue=2)
  model.gate.clear()
  worker = app.state.worker

  async def main():
    async with _client(app) as c:
      tasks = [asyncio.create_task(c.post("/api/inpaint", files=_upload())) for _ in range(3)]
      await _wait_for(lambda: model.started.is_set() and worker.admitted == 3)
      worker.shut_down()
      responses = await asyncio.wait_for(asyncio.gather(*tasks), 10)  # the gate is still shut
      for response in responses:
        assert response.status_code == 503 and "shutting down" in response.json()["error"]
      assert (await c.post("/api/inpaint", files=_upload())).status_code == 503
      model.gate.set()
      await _wait_for(lambda: worker.admitted == 0)
      assert model.calls == 1  # the two waiting jobs never ran
  run(main())


async def _post_then_hang_up(app, files):
  """Sends one complete POST /api/inpaint straight to the ASGI app, then disconnects (every
  later `receive` says so); returns the response status."""
  body, kind = _multipart(files)
  sent, status = False, []

  async def receive():
    nonlocal sent
    if not sent:
      sent = True
      return {"type": "http.request", "body": body, "more_body": False}
    return {"type": "http.disconnect"}

  async def send(message):
    if message["type"] == "http.response.start":
      status.append(message["status"])

  scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
           "scheme": "http", "path": "/api/inpaint", "raw_path": b"/api/inpaint",
           "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
           "server": ("127.0.0.1", PORT),
           "headers": [(b"host", HOST.encode()), (b"content-type", kind.encode()),
                       (b"content-length", str(len(body)).encode())]}
  await app(scope, receive, send)
  return status[0]


def test_jobs_of_clients_that_hung_up_never_reach_the_model():
  app, model = _app(queue=3)
  model.gate.clear()
  worker = app.state.worker

  async def main():
    async with _client(app) as c:
      first = asyncio.create_task(c.post("/api/inpaint", files=_upload()))
      await _wait_for(model.started.is_set)
      gone = [asyncio.create_task(_post_then_hang_up(app, _upload())) for _ in range(3)]
      await _wait_for(lambda: worker.admitted == 4)
      model.gate.set()
      assert (await first).status_code == 200
      await asyncio.wait_for(asyncio.gather(*gone), 30)
      await _wait_for(lambda: worker.admitted == 0)
      assert model.calls == 1, f"{model.calls - 1} jobs of gone clients were inpainted"
      assert (await c.post("/api/inpaint", files=_upload())).status_code == 200
      assert model.calls == 2
  run(main())


# ---------------------------------------------------------------- under uvicorn: timeouts


@contextlib.contextmanager
def _served(queue=1, idle_timeout=0.5, body_timeout=1.0):
  """The app with a stand-in model under uvicorn (serve.py's `server_config`) on a free
  loopback port, in a thread: yields (port, model, worker)."""
  import uvicorn
  sock = socket.socket()
  sock.bind(("127.0.0.1", 0))
  sock.listen(128)
  port = sock.getsockname()[1]
  app, model = _app(queue=queue, port=port, body_timeout=body_timeout)
  server = uvicorn.Server(transport.server_config(app, idle_timeout=idle_timeout))
  thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
  thread.start()
  deadline = time.monotonic() + 30
  while not server.started:
    assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
    time.sleep(0.01)
  try:
    yield port, model, app.state.worker
  finally:
    model.gate.set()
    server.should_exit = True
    thread.join(30)
    sock.close()


def _read_until_closed(sock, timeout):
  """Everything the server sends until it closes the connection (fails after ``timeout``)."""
  sock.settimeout(timeout)
  data = b""
  while True:
    piece = sock.recv(65536)
    if not piece:
      return data
    data += piece


def _head(port, length):
  return (f"POST /api/inpaint HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
          "Content-Type: multipart/form-data; boundary=b\r\n"
          f"Content-Length: {length}\r\n\r\n").encode()


def test_slow_uploads_hold_no_slot_and_time_out():
  with _served(queue=1, body_timeout=2.0) as (port, model, worker):
    slow = []
    for _ in range(2 * (1 + 1) + 3):  # more than the slots
      sock = socket.create_connection(("127.0.0.1", port))
      sock.sendall(_head(port, 200000) + b"--b\r\n")  # then silence
      slow.append(sock)
    time.sleep(0.3)
    start = time.monotonic()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
      response = c.post("/api/inpaint", files=_upload())
      assert response.status_code == 200, response.text
      assert c.get("/api/health").json()["queue"]["waiting"] == 0
    assert time.monotonic() - start < 1.5  # not after the slow ones timed out
    for sock in slow:  # each gets 408 at its body deadline and its connection is closed
      answer = _read_until_closed(sock, 10)
      assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
      assert b"did not arrive within 2 s" in answer
      sock.close()
    assert time.monotonic() - start < 6
    assert model.calls == 1


def test_connections_without_a_complete_request_head_are_closed():
  with _served(idle_timeout=0.5) as (port, _, _):
    silent = socket.create_connection(("127.0.0.1", port))
    partial = socket.create_connection(("127.0.0.1", port))
    partial.sendall(b"POST /api/inpaint HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    trickle = socket.create_connection(("127.0.0.1", port))
    start = time.monotonic()
    for byte in b"GET /api/health HTTP/1.1\r\nX-Slow: aaaaaaaa":  # one byte every 50 ms
      try:
        trickle.sendall(bytes([byte]))
      except OSError:  # closed by the server: what the test wants
        break
      time.sleep(0.05)
    for sock in (silent, partial, trickle):
      assert _read_until_closed(sock, 5) == b""
      assert time.monotonic() - start < 4
      sock.close()
    # An idle keep-alive connection is closed after its response too.
    with socket.create_connection(("127.0.0.1", port)) as sock:
      sock.sendall(f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
      answer = _read_until_closed(sock, 5)
      assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    # HEAD through uvicorn and h11: the headers of GET, no body.
    with socket.create_connection(("127.0.0.1", port)) as sock:
      sock.sendall(f"HEAD / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
      head, _, rest = _read_until_closed(sock, 5).partition(b"\r\n\r\n")
      assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: " in head and rest == b""
    # A request head over the limit is refused by the HTTP parser.
    with socket.create_connection(("127.0.0.1", port)) as sock:
      sock.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * transport.MAX_HEAD_BYTES + b"\r\n\r\n")
      assert _read_until_closed(sock, 5).startswith(b"HTTP/1.1 400 ")


def test_hung_up_clients_are_dropped_under_uvicorn():
  with _served(queue=3) as (port, model, worker):
    model.gate.clear()
    body, kind = _multipart(_upload())
    request = (f"POST /api/inpaint HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {kind}"
               f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    first = socket.create_connection(("127.0.0.1", port))
    first.sendall(request)
    assert model.started.wait(10)
    for _ in range(3):  # complete requests whose clients leave at once
      with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
    deadline = time.monotonic() + 10
    while worker.admitted < 4:
      assert time.monotonic() < deadline, worker.admitted
      time.sleep(0.01)
    model.gate.set()
    assert _read_until_closed(first, 10).startswith(b"HTTP/1.1 200 ")
    first.close()
    while worker.admitted:
      assert time.monotonic() < deadline + 10
      time.sleep(0.01)
    assert model.calls == 1
