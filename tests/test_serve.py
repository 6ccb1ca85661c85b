"""The web app's HTTP API (`python serve.py`, model/web/app.py) against a real server process.

A tiny random-weight generator (cnum 4) is served on 127.0.0.1 with small limits. Results must
be the pixels (and, for PNG outputs, the bytes) `python test.py` writes for the same pair, for
RGB, grey, RGBA, 16-bit, BMP and EXIF-rotated JPEG inputs. Every client error is a 4xx with a
one-line JSON message; a burst of concurrent requests gets only 200s and 503s; health answers
while the model is busy; the server stops cleanly.
"""
import concurrent.futures
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import zlib

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from support import hostile_files as hostile
from support import procs
from support import serve as helpers
from support.checkpoints import write_tiny_checkpoint

pytestmark = pytest.mark.slow  # a real python serve.py process

QUEUE = 2
MAX_UPLOAD_MB = 1
MAX_MEGAPIXELS = 1.1
BIG = 640  # BIG x BIG fits the pixel limit and takes a while with its large hole


def _smooth(h, w):
  """A smooth RGB image whose PNG stays small (fits the upload limit at BIG x BIG)."""
  y, x = np.mgrid[:h, :w]
  return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1),
                   (x + y) * 255 // max(h + w - 2, 1)], axis=-1).astype(np.uint8)


def _png_header_only(width, height, rows=4):
  """A valid-looking PNG that declares width x height but holds a few rows (a bomb's header)."""
  def chunk(kind, body):
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
  raw = zlib.compress(b"".join(b"\0" + bytes(width * 3) for _ in range(rows)))
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
          + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def _pairs(folder):
  """Writes test inputs (images/, masks/, exif/) and returns {name: (image path, mask path)}."""
  photo = helpers.example_rgb()
  images, masks = folder / "images", folder / "masks"
  images.mkdir()
  masks.mkdir()
  pairs = {}

  def hole_for(h, w, k):
    hole = helpers.centre_hole(h, w, 0.15)
    cv2.line(hole.view(np.uint8), (1, h - 3), (w - 2, 4 + k), 1, 2)
    hole[-2:, :3] = True  # touches the bottom-left corner next to the padding
    return hole

  def add(name, pixels, hole, writer=None):
    path = images / name
    if writer:
      writer(path, pixels)
    else:
      assert cv2.imwrite(str(path), pixels)
    mask = masks / (os.path.splitext(name)[0] + ".png")
    assert cv2.imwrite(str(mask), hole.astype(np.uint8) * 255)
    pairs[name] = (path, mask)

  rgb = np.ascontiguousarray(photo[40:101, 100:183])          # 61 x 83: not a multiple of 8
  add("rgb.png", rgb[..., ::-1], hole_for(61, 83, 0))
  grey = cv2.cvtColor(np.ascontiguousarray(photo[150:190, 200:256]), cv2.COLOR_RGB2GRAY)
  add("grey.png", grey, hole_for(40, 56, 1))
  rgba = np.dstack([photo[200:245, 300:357][..., ::-1],
                    np.tile(np.linspace(0, 255, 57).astype(np.uint8), (45, 1))])
  add("rgba.png", rgba, hole_for(45, 57, 2))
  deep = photo[60:108, 250:298][..., ::-1].astype(np.uint16) * 257 + 100
  add("deep.png", deep, hole_for(48, 48, 3))
  add("plain.bmp", np.ascontiguousarray(photo[300:337, 40:99][..., ::-1]), hole_for(37, 59, 4))

  # An EXIF-rotated JPEG (orientation 6: shown rotated by 90 degrees); its mask is drawn in the
  # displayed orientation, as in a viewer, a browser or test.py.
  exif_dir = folder / "exif"
  exif_dir.mkdir()
  stored = np.ascontiguousarray(photo[220:284, 400:480])      # stored 80 wide x 64 high
  exif = Image.Exif()
  exif[0x0112] = 6
  jpeg = exif_dir / "rotated.jpg"
  Image.fromarray(stored).save(jpeg, "JPEG", quality=90, exif=exif)
  mask = exif_dir / "rotated_mask.png"
  assert cv2.imwrite(str(mask), hole_for(80, 64, 5).astype(np.uint8) * 255)
  pairs["rotated.jpg"] = (jpeg, mask)
  return pairs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """The tiny server, the inputs and test.py's outputs for them."""
  tmp = tmp_path_factory.mktemp("serve")
  ckpt = write_tiny_checkpoint(tmp / "ckpt")
  other = write_tiny_checkpoint(tmp / "other", seed=4)  # a second model, other weights
  server = helpers.Server("--checkpoint_dir", ckpt, "--checkpoint_dir", other, "--queue", QUEUE,
                          "--max_upload_mb", MAX_UPLOAD_MB, "--max_megapixels", MAX_MEGAPIXELS,
                          cwd=tmp)
  pairs = _pairs(tmp)
  expected = tmp / "expected"
  folder_run = procs.start("test.py", "--image", tmp / "images", "--mask", tmp / "masks",
                           "--output", expected, "--checkpoint_dir", ckpt, cwd=tmp)
  jpeg, mask = pairs["rotated.jpg"]
  single_run = procs.start("test.py", "--image", jpeg, "--mask", mask, "--output",
                           tmp / "rotated_expected.png", "--checkpoint_dir", ckpt, cwd=tmp)
  procs.finish(folder_run, "test.py (folder)")
  procs.finish(single_run, "test.py (EXIF JPEG)")
  outputs = {name: expected / name for name in pairs if name != "rotated.jpg"}
  outputs["rotated.jpg"] = tmp / "rotated_expected.png"
  server.url  # noqa: B018 - waits until it listens
  yield dict(server=server, tmp=tmp, pairs=pairs, outputs=outputs, ckpt=ckpt)
  server.stop()


@pytest.fixture(scope="module")
def client(setup):
  with httpx.Client(base_url=setup["server"].url, timeout=300) as c:
    yield c


def _files(image, mask, image_name="image.png", mask_name="mask.png"):
  return {"image": (image_name, image, "application/octet-stream"),
          "mask": (mask_name, mask, "application/octet-stream")}


def _assert_error(response, status, *fragments):
  assert response.status_code == status, (response.status_code, response.text)
  assert response.headers["content-type"] == "application/json"
  body = response.json()
  assert list(body) == ["error"], body
  message = body["error"]
  assert message and "\n" not in message and len(message) < 400, message
  for fragment in fragments:
    assert fragment in message, message
  return message


def _host_port(url):
  parsed = urllib.parse.urlsplit(url)
  return parsed.hostname, parsed.port


def _authority(url):
  return urllib.parse.urlsplit(url).netloc


def _raw(url, request, read_timeout=60):
  """Sends raw bytes on a new connection; returns (status, headers dict, body)."""
  with socket.create_connection(_host_port(url), timeout=read_timeout) as sock:
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
      piece = sock.recv(65536)
      if not piece:
        break
      data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
      piece = sock.recv(65536)
      if not piece:
        break
      body += piece
  return int(lines[0].split()[1]), headers, body


# ---------------------------------------------------------------- good requests


def test_health_describes_the_model_and_limits(client):
  response = client.get("/api/health")
  assert response.status_code == 200
  health = response.json()
  assert health["ready"] is True
  assert (health["model"], health["preset"], health["cnum"]) == ("ckpt", "v1", 4)
  pipeline = {"strategy": "original", "seam_blend": True}  # what runs (legacy model.json)
  assert health["pipeline"] == pipeline
  assert health["precision"] == "float32"  # what a model.json without the key runs
  assert "checkpoint" not in health and "/" not in response.text  # no filesystem path
  assert health["models"] == [
      {"name": name, "preset": "v1", "cnum": 4, "pipeline": pipeline, "precision": "float32"}
      for name in ("ckpt", "other")]
  assert health["default"] == "ckpt"
  assert health["queue"]["limit"] == QUEUE
  assert health["limits"] == {"max_upload_mb": MAX_UPLOAD_MB, "max_megapixels": MAX_MEGAPIXELS}


@pytest.mark.parametrize("name", ["rgb.png", "grey.png", "rgba.png", "deep.png", "plain.bmp",
                                  "rotated.jpg"])
def test_inpaint_returns_what_test_py_writes(setup, client, name):
  image, mask = setup["pairs"][name]
  response = client.post("/api/inpaint", files=_files(image.read_bytes(), mask.read_bytes(),
                                                      image.name, mask.name))
  assert response.status_code == 200, response.text
  assert response.headers["content-type"] == "image/png"
  expected = setup["outputs"][name]
  got = helpers.decode(response.content)
  want = cv2.imread(str(expected), cv2.IMREAD_UNCHANGED)
  assert got.shape == want.shape and got.dtype == want.dtype == np.uint8
  assert np.array_equal(got, want)
  if expected.suffix == ".png":  # same encoder and settings: the very same file
    assert response.content == expected.read_bytes()
  if name == "rgb.png":  # and the hole was really filled
    hole = helpers.decode(mask.read_bytes(), cv2.IMREAD_GRAYSCALE) > 127
    source = helpers.decode(image.read_bytes())
    assert np.array_equal(got[~hole], source[~hole])
    assert np.abs(got[hole].astype(int) - source[hole]).mean() > 5


def test_the_model_field_chooses_the_model(setup, client):
  image, mask = setup["pairs"]["rgb.png"]
  files = _files(image.read_bytes(), mask.read_bytes())
  default = client.post("/api/inpaint", files=files)
  named = client.post("/api/inpaint", files=files, data={"model": "ckpt"})
  other = client.post("/api/inpaint", files=files, data={"model": "other"})
  for response in (default, named, other):
    assert response.status_code == 200, response.text
  assert named.content == default.content == setup["outputs"]["rgb.png"].read_bytes()
  hole = helpers.decode(mask.read_bytes(), cv2.IMREAD_GRAYSCALE) > 127
  got, want = helpers.decode(other.content), helpers.decode(default.content)
  assert np.array_equal(got[~hole], want[~hole])
  assert np.abs(got[hole].astype(int) - want[hole]).mean() > 1  # the other weights filled it
  message = _assert_error(client.post("/api/inpaint", files=files, data={"model": "/tmp/x"}),
                          422, "unknown model", "ckpt, other")
  assert str(setup["tmp"]) not in message


def test_page_and_assets_are_served_without_external_urls(client):
  page = client.get("/")
  assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
  assert '"server.js"' in page.text and '"app.css"' in page.text
  assert "default-src 'self'" in page.headers["content-security-policy"]
  for asset, kind in (("/server.js", "javascript"), ("/paint.js", "javascript"),
                      ("/pixels.js", "javascript"), ("/browser.js", "javascript"),
                      ("/app.css", "text/css")):
    response = client.get(asset)
    assert response.status_code == 200 and kind in response.headers["content-type"], asset
  for name in ("site.js", "deepfill.js", "page", "..%2Fapp.py"):
    assert client.get("/" + name).status_code == 404, name  # the static site's files only
  folder = os.path.join(REPO, "model", "web", "page")
  for name in os.listdir(folder):
    text = open(os.path.join(folder, name), encoding="utf-8").read()
    assert "http://" not in text and "https://" not in text and "//cdn" not in text, name


# ---------------------------------------------------------------- client errors


def test_unreadable_or_unsupported_files_are_400(setup, client):
  image, mask = setup["pairs"]["rgb.png"]
  good_image, good_mask = image.read_bytes(), mask.read_bytes()
  ppm = b"P6\n83 61\n255\n" + bytes(83 * 61 * 3)  # OpenCV reads it, its size is not checked first
  cases = [
      (b"\x00\x01garbage" * 50, good_mask, "image"),
      (b"hello, this is text\n", good_mask, "image"),
      (good_image[:len(good_image) // 2], good_mask, "image: truncated or corrupt PNG"),
      (b"", good_mask, "image: the file is empty"),
      (ppm, good_mask, "image: unsupported file"),
      (good_image, good_mask[:40], "mask"),
      (good_image, b"\xff\xd8\xff\xe0 not really a jpeg", "mask"),
  ]
  for image_data, mask_data, fragment in cases:
    response = client.post("/api/inpaint", files=_files(image_data, mask_data))
    _assert_error(response, 400, fragment)


def test_bad_forms_are_400(setup, client):
  image, mask = setup["pairs"]["rgb.png"]
  data = image.read_bytes()
  _assert_error(client.post("/api/inpaint", files={"image": ("a.png", data)}), 400, "'mask'")
  _assert_error(client.post("/api/inpaint", files={"mask": ("a.png", data)}), 400, "'image'")
  _assert_error(client.post("/api/inpaint", data={"image": "x", "mask": "y"}), 400,
                "must be a file")
  _assert_error(client.post("/api/inpaint", json={"image": "x"}), 400, "multipart")
  _assert_error(client.post("/api/inpaint"), 400)
  three = [("image", ("a.png", data)), ("mask", ("b.png", data)), ("extra", ("c.png", data))]
  _assert_error(client.post("/api/inpaint", files=three), 400)
  _assert_error(client.post("/api/inpaint", content=b"--x\r\nbroken",
                            headers={"content-type": "multipart/form-data"}), 400)
  _assert_error(client.post("/api/inpaint", content=b"--x\r\nbroken",
                            headers={"content-type": "multipart/form-data; boundary=x"}), 400)
  # Odd file names (newlines, non-ASCII) are only names: the pair is still inpainted.
  odd = client.post("/api/inpaint", files=_files(data, mask.read_bytes(), "a\nb\u00e9.png",
                                                 "m\u00e4sk.png"))
  assert odd.status_code == 200, odd.text


def test_unknown_routes_and_methods_answer_json(client):
  _assert_error(client.get("/nothing/here"), 404)
  _assert_error(client.get("/api/inpaint"), 405)
  _assert_error(client.delete("/api/health"), 405)


def test_declared_upload_over_the_limit_is_413_before_the_body_is_sent(setup):
  url = setup["server"].url
  declared = 100 * 2**20
  request = (f"POST /api/inpaint HTTP/1.1\r\nHost: {_authority(url)}\r\nContent-Type: multipart/form-data; "
             f"boundary=b\r\nContent-Length: {declared}\r\n\r\n").encode()
  status, headers, body = _raw(url, request)  # nothing of the 100 MB is ever sent
  assert status == 413
  assert "upload is larger" in json.loads(body)["error"]


def test_streamed_upload_over_the_limit_is_413(setup, client):
  image, mask = setup["pairs"]["rgb.png"]
  boundary = "zzzboundary"
  head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
          "Content-Type: image/png\r\n\r\n").encode()

  def body():  # chunked: no Content-Length, so the server has to count
    yield head + image.read_bytes()
    for _ in range(64):  # 4 MB of padding, well over the 1 MB limit
      yield b"\0" * 65536

  response = client.post("/api/inpaint", content=body(),
                         headers={"content-type": f"multipart/form-data; boundary={boundary}"})
  _assert_error(response, 413, "upload is larger")
  assert client.get("/api/health").status_code == 200


def test_pixel_limit_is_checked_from_the_header(setup, client):
  server = setup["server"]
  before = server.rss_peak_kb()
  bomb = _png_header_only(20000, 20000)  # 400 megapixels declared in a few kB
  assert len(bomb) < MAX_UPLOAD_MB * 2**20
  small_mask = helpers.mask_png(np.ones((4, 4), bool))
  message = _assert_error(client.post("/api/inpaint", files=_files(bomb, small_mask)), 413,
                          "image", "20000x20000", "--max_megapixels")
  assert "400.0 megapixels" in message
  just_over = _png_header_only(1100, 1001)
  _assert_error(client.post("/api/inpaint", files=_files(just_over, small_mask)), 413, "image")
  image, _ = setup["pairs"]["rgb.png"]
  _assert_error(client.post("/api/inpaint", files=_files(image.read_bytes(), bomb)), 413, "mask")
  # Nothing was decoded: a 400-megapixel RGB decode alone would take 1.2 GB.
  assert server.rss_peak_kb() - before < 200_000


def test_mask_that_does_not_fit_is_422(setup, client):
  image, mask = setup["pairs"]["rgb.png"]
  data = image.read_bytes()
  wrong = helpers.mask_png(helpers.centre_hole(83, 61))  # transposed size
  _assert_error(client.post("/api/inpaint", files=_files(data, wrong)), 422,
                "mask is 61x83 but image is 83x61")
  empty = helpers.mask_png(np.zeros((61, 83), bool))
  _assert_error(client.post("/api/inpaint", files=_files(data, empty)), 422, "no hole")


def test_hostile_files_are_one_line_4xx(setup, client):
  """A TIFF with float StripOffsets was a 500, a damaged G4 TIFF was
  inpainted with libtiff's lines in the server log, a JPEG's scans were not bounded, and a
  mask of the wrong size was found only after the image was decoded."""
  mask16, mask64 = (helpers.mask_png(np.ones((n, n), bool)) for n in (16, 64))
  _assert_error(client.post("/api/inpaint", files=_files(hostile.tiff_float_strip_offsets(),
                                                         mask16)),
                400, "image: truncated or corrupt TIFF data")
  _assert_error(client.post("/api/inpaint", files=_files(hostile.g4_tiff(True), mask64)),
                400, "image: corrupt TIFF data (libtiff: Fax4Decode")
  _assert_error(client.post("/api/inpaint", files=_files(hostile.many_scans_jpeg(5000),
                                                         mask64)),
                400, "image: JPEG has more than 100 scans")
  _assert_error(client.post("/api/inpaint", files=_files(hostile.jpeg_header_only(1000, 1000),
                                                         helpers.mask_png(np.ones((32, 48),
                                                                                  bool)))),
                422, "mask is 48x32 but image is 1000x1000")
  assert "Fax4Decode" not in setup["server"].stderr


# ---------------------------------------------------------------- concurrency


def _big_request():
  image = helpers.png_bytes(_smooth(BIG, BIG))
  mask = helpers.mask_png(helpers.centre_hole(BIG, BIG, 0.3))
  assert len(image) + len(mask) < MAX_UPLOAD_MB * 2**20
  return _files(image, mask)


def test_burst_gets_only_200_and_503(setup):
  files = _big_request()
  clients = 3 * (QUEUE + 1) + 3
  barrier = threading.Barrier(clients)

  def one(_):
    with httpx.Client(base_url=setup["server"].url, timeout=600) as c:
      barrier.wait()
      return c.post("/api/inpaint", files=files)

  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    responses = list(pool.map(one, range(clients)))
  statuses = sorted(r.status_code for r in responses)
  assert set(statuses) <= {200, 503}, statuses
  ok = [r for r in responses if r.status_code == 200]
  busy = [r for r in responses if r.status_code == 503]
  assert ok and busy, statuses
  assert len(ok) >= QUEUE + 1  # every slot was used
  assert len({r.content for r in ok}) == 1  # complete and identical PNGs
  assert helpers.decode(ok[0].content).shape == (BIG, BIG, 3)
  for r in busy:
    _assert_error(r, 503, "busy")
    assert int(r.headers["retry-after"]) >= 1


def test_health_and_page_answer_while_the_model_is_busy(setup, client):
  files = _big_request()
  result = {}
  worker = threading.Thread(target=lambda: result.setdefault(
      "response", httpx.post(setup["server"].url + "api/inpaint", files=files, timeout=600)))
  worker.start()
  seen_busy = None
  deadline = time.monotonic() + 600
  while worker.is_alive() and time.monotonic() < deadline:
    health = client.get("/api/health").json()
    if health["queue"]["running"]:
      seen_busy = health
      page = client.get("/")  # the page too, while the model works
      assert page.status_code == 200
      break
    time.sleep(0.01)
  worker.join()
  assert result["response"].status_code == 200
  assert seen_busy is not None, "never saw the model running (health blocked?)"
  assert client.get("/api/health").json()["queue"] == {"running": 0, "waiting": 0,
                                                       "limit": QUEUE}


def test_abandoned_uploads_give_their_slot_back(setup, client):
  url = setup["server"].url
  for _ in range(QUEUE + 3):  # more than the slots
    request = (f"POST /api/inpaint HTTP/1.1\r\nHost: {_authority(url)}\r\nContent-Type: "
               "multipart/form-data; boundary=b\r\nContent-Length: 500000\r\n\r\n--b\r\n").encode()
    with socket.create_connection(_host_port(url)) as sock:
      sock.sendall(request)
      time.sleep(0.05)
  deadline = time.monotonic() + 30
  while client.get("/api/health").json()["queue"]["waiting"] and time.monotonic() < deadline:
    time.sleep(0.05)
  image, mask = setup["pairs"]["rgb.png"]
  response = client.post("/api/inpaint", files=_files(image.read_bytes(), mask.read_bytes()))
  assert response.status_code == 200, response.text


def test_server_log_has_no_traceback(setup, client):
  assert client.get("/api/health").status_code == 200
  assert "Traceback" not in setup["server"].stderr, setup["server"].stderr


# ---------------------------------------------------------------- the command line


def _serve(*args, cwd):
  return procs.run("serve.py", *args, cwd=cwd, timeout=600)


def _one_error_line(proc, *fragments):
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  errors = [line for line in lines if line.startswith("error: ")]
  assert len(errors) == 1, proc.stderr
  for fragment in fragments:
    assert fragment in errors[0], errors[0]
  assert "Traceback" not in proc.stderr


def test_cli_errors_are_one_line(tmp_path):
  usage = 2  # a command-line mistake, as in every CLI (cli.USAGE_STATUS)
  proc = _serve("--max_upload_mb", "0", cwd=tmp_path)
  assert proc.returncode == usage
  _one_error_line(proc, "max_upload_mb")
  proc = _serve("--queue", "-1", cwd=tmp_path)
  assert proc.returncode == usage
  _one_error_line(proc, "queue")
  proc = _serve("stray", cwd=tmp_path)
  assert proc.returncode == usage
  _one_error_line(proc, "unexpected arguments: stray")
  proc = _serve("--checkpoint_dir", tmp_path / "a" / "demo", "--checkpoint_dir",
                tmp_path / "b" / "demo", cwd=tmp_path)
  assert proc.returncode == usage
  _one_error_line(proc, "two models are named 'demo'")
  proc = _serve("--port", "0", "--checkpoint_dir", tmp_path / "missing", cwd=tmp_path)
  assert proc.returncode == 1
  _one_error_line(proc, "checkpoint directory not found")
  assert proc.stdout == "" and "InitializeLog" not in proc.stderr, proc.stderr  # TF is quiet
  assert "oneDNN" not in proc.stderr, proc.stderr
  proc = _serve("--port", "0", "--web_export", tmp_path, cwd=tmp_path)
  assert proc.returncode == 1
  _one_error_line(proc, "is not a folder of export.py --format web (no deepfill.js, model.onnx")


def test_the_bundled_demo_is_offered_by_default(tmp_path):
  """Without --checkpoint_dir: checkpoints/demo (the one model the repository ships)."""
  code = "import json, serve; print(json.dumps(serve._checkpoints(None)))"
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=procs.env(),
                       capture_output=True, text=True, timeout=120, check=True).stdout
  assert json.loads(out) == [["demo", os.path.join(REPO, "checkpoints", "demo")]]


def test_busy_port_is_one_line(tmp_path):
  with socket.socket() as taken:
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    proc = _serve("--port", taken.getsockname()[1], cwd=tmp_path)
  assert proc.returncode == 1
  _one_error_line(proc, "cannot listen on 127.0.0.1:")


def test_other_host_warns_there_is_no_auth(tmp_path):
  proc = _serve("--host", "0.0.0.0", "--port", "0", "--checkpoint_dir", tmp_path / "missing",
                cwd=tmp_path)
  assert "warning: --host 0.0.0.0" in proc.stderr and "no authentication" in proc.stderr
  assert proc.returncode == 1  # (then the missing checkpoint stops it)


def test_ctrl_c_while_inpainting_answers_and_stops_cleanly(setup):
  # Last test of the module: stop the shared server as a user would, while it works.
  server = setup["server"]
  image = helpers.png_bytes(_smooth(1024, 1024))  # a few seconds with the tiny model
  files = _files(image, helpers.mask_png(helpers.centre_hole(1024, 1024, 0.3)))
  result = {}
  worker = threading.Thread(target=lambda: result.setdefault(
      "response", httpx.post(server.url + "api/inpaint", files=files, timeout=600)))
  worker.start()
  with httpx.Client(base_url=server.url, timeout=60) as c:
    while not c.get("/api/health").json()["queue"]["running"]:
      assert worker.is_alive()
      time.sleep(0.01)
  assert server.stop() == 0
  worker.join()
  # The request in the model was answered at once rather than after the inpainting.
  _assert_error(result["response"], 503, "shutting down")
  assert "stopped" in "".join(server.stdout_lines)
  assert "Traceback" not in server.stderr, server.stderr
