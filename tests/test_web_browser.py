"""The web page in a real headless Chromium (Debian's `chromium`, driven by Playwright).

`python serve.py` runs with the bundled demo model. A user's session is replayed with mouse and
keyboard events: open an example photo, paint a stroke, press Inpaint, download the result, paint
again on it (iterative editing), compare before/after, undo/redo, erase, clear; and the same on a
phone-width window where the photo is shown scaled. The checks are on the files that went over
the wire: the mask the page sent has the photo's full size and covers the painted stroke; the
download keeps every pixel outside the mask, changes the stroke, and is exactly what
`python test.py` writes for that photo and mask. The server also offers a stand-in
`export.py --format web` site (`--web_export`): with "Run in this browser" on, the page runs it
and uploads nothing. Screenshots are saved under tests/artifacts/.

The browser comes from the system (`apt-get install chromium`; README's test command installs
it). Without it the tests skip with the reason, except where DEEPFILL_REQUIRE_BROWSER=1 (CI),
where they fail.
"""
import base64
import os
import shutil

import cv2
import numpy as np
import pytest

from conftest import REPO
from support import procs
from support import serve as helpers
from support import standin_model
from support.checkpoints import write_tiny_checkpoint

pytestmark = pytest.mark.slow  # serve.py and Chromium

ARTIFACTS = os.path.join(REPO, "tests", "artifacts")
PHOTO = os.path.join(REPO, "examples", "sklearn_china.png")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
BRUSH = 40  # the page's default brush size, in CSS pixels


def _browser_or_skip():
  reason = None
  try:
    from playwright.sync_api import sync_playwright  # noqa: F401
  except ImportError:
    reason = "playwright is not installed (pip install -e '.[test]')"
  executable = shutil.which("chromium") or shutil.which("chromium-browser")
  if reason is None and executable is None:
    reason = "no chromium on PATH (apt-get install chromium chromium-driver)"
  if reason:
    if os.environ.get("DEEPFILL_REQUIRE_BROWSER") == "1":
      pytest.fail(f"browser test required but cannot run: {reason}")
    pytest.skip(reason)
  return executable


@pytest.fixture(scope="module")
def browser():
  executable = _browser_or_skip()
  from playwright.sync_api import sync_playwright
  with sync_playwright() as p:
    chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  _browser_or_skip()
  tmp = tmp_path_factory.mktemp("web")
  other = write_tiny_checkpoint(tmp / "other")  # a second model to choose on the page
  site = _standin_site(tmp / "browser_model")
  running = helpers.Server("--checkpoint_dir", helpers.DEMO_CHECKPOINT, "--checkpoint_dir", other,
                           *(("--web_export", site) if site else ()), cwd=tmp)
  running.url  # noqa: B018 - waits until it listens
  running.site = site
  yield running
  assert running.stop() == 0
  assert "Traceback" not in running.stderr, running.stderr


def _standin_site(folder):
  """A static site with the stand-in graph (tests/support/standin_model.py) (grey in the hole), or None without the
  onnx extra or `npm ci --prefix web`."""
  from model.errors import UserError
  from model.web import site
  try:
    import onnx  # noqa: F401
    os.makedirs(folder)
    site.write_site(str(folder), standin_model.write_standin_model, os.path.join(REPO, "web"))
  except (ImportError, UserError):
    return None
  return str(folder)


class Session:
  """One page with its captured uploads and browser-side errors."""

  def __init__(self, browser, url, width, height, tmp):
    self.page = browser.new_page(viewport={"width": width, "height": height},
                                 accept_downloads=True)
    self.errors = []
    self.uploads = []  # multipart bodies as Chromium sent them (files on disk are left out)
    self.tmp = tmp
    self.page.on("pageerror", lambda e: self.errors.append(str(e)))
    self.page.on("console", self._console)
    self.page.route("**/api/inpaint", self._capture)
    self.page.goto(url)
    self.page.wait_for_selector("#model:text-matches('^model ')")

  def _console(self, message):
    # Chromium logs every 4xx/5xx fetch; the page shows those itself (checked by the tests).
    if message.type == "error" and "Failed to load resource" not in message.text:
      self.errors.append(message.text)

  def set_brush(self, size):
    self.page.eval_on_selector(
        "#size", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", str(size))

  def _capture(self, route):
    request = route.request
    self.uploads.append((request.headers["content-type"], request.post_data_buffer))
    route.continue_()

  def open_photo(self, path):
    self.page.set_input_files("#file", path)
    self.page.wait_for_selector("#canvas-wrap:not([hidden])")
    return self.page.locator("#mask").bounding_box()

  def stroke(self, points):
    """Drags the mouse through ``points`` given as fractions of the displayed photo.

    Returns the photo's place on the screen and the points in screen coordinates.
    """
    box = self.page.locator("#mask").bounding_box()
    mouse = self.page.mouse
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    mouse.move(*xy[0])
    mouse.down()
    for x, y in xy[1:]:
      mouse.move(x, y, steps=8)
    mouse.up()
    return box, xy

  def inpaint(self, name):
    """Presses Inpaint, waits for the result and downloads it; returns the PNG bytes."""
    count = len(self.uploads)
    self.page.click("#inpaint")
    self.page.wait_for_selector("#busy[hidden]", state="attached", timeout=600_000)
    assert self.page.locator("#message").is_hidden(), self.page.locator("#message").text_content()
    assert self.page.locator("#download").get_attribute("aria-disabled") == "false"
    assert len(self.uploads) == count + 1
    with self.page.expect_download() as info:
      self.page.click("#download")
    path = os.path.join(self.tmp, name)
    info.value.save_as(path)
    with open(path, "rb") as f:
      return f.read()

  def painted_pixels(self):
    """How many mask-canvas pixels are painted (alpha > 0), and the canvas size."""
    return self.page.evaluate("""() => {
      const c = document.getElementById('mask');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
      return [n, c.width, c.height];
    }""")

  def screenshot(self, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, name)
    self.page.screenshot(path=path)
    print(f"screenshot: {path}")
    return path


def _parts(content_type, body):
  """{field: bytes} of a multipart/form-data body."""
  boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
  parts = {}
  for chunk in body.split(b"--" + boundary)[1:]:
    if chunk.startswith(b"--"):
      break
    head, _, data = chunk[2:].partition(b"\r\n\r\n")
    name = head.split(b'name="', 1)[1].split(b'"', 1)[0].decode()
    parts[name] = data[:-2]  # the CRLF before the next boundary
  return parts


def _distance_to_path(shape, path):
  """Distance of every pixel centre of an image of ``shape`` to the polyline ``path`` (pixels)."""
  h, w = shape
  y, x = np.mgrid[:h, :w].astype(np.float64) + 0.5
  best = np.full(shape, np.inf)
  for (x0, y0), (x1, y1) in zip(path[:-1], path[1:]):
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
    best = np.minimum(best, np.hypot(x - x0 - t * dx, y - y0 - t * dy))
  return best


def _check_round(session, stroke, photo, result_png, slack=2.5):
  """The mask sent covers the painted stroke (at full resolution) and the result fits it."""
  box, screen_path = stroke
  content_type, body = session.uploads[-1]
  mask = helpers.decode(_parts(content_type, body)["mask"], cv2.IMREAD_GRAYSCALE) > 127
  h, w = photo.shape[:2]
  assert mask.shape == (h, w), "the mask is sent at the photo's full resolution"
  scale = w / box["width"]
  path = [((x - box["x"]) * scale, (y - box["y"]) * scale) for x, y in screen_path]
  distance = _distance_to_path((h, w), path)
  radius = BRUSH / 2 * scale
  assert mask[distance <= radius - slack].all(), "the whole stroke is a hole"
  assert not mask[distance > radius + slack].any(), "nothing outside the stroke is a hole"
  result = helpers.decode(result_png, cv2.IMREAD_COLOR)
  assert result.shape == photo.shape
  assert np.array_equal(result[~mask], photo[~mask]), "pixels outside the stroke are the photo's"
  inside = distance <= radius - slack
  changed = np.abs(result.astype(int) - photo.astype(int)).max(axis=2)[inside]
  assert (changed > 0).mean() > 0.5, "the stroke was filled"
  return mask


def test_paint_inpaint_download_and_edit_again(browser, server, tmp_path):
  session = Session(browser, server.url, 1280, 800, str(tmp_path))
  page = session.page
  photo = helpers.decode(open(PHOTO, "rb").read(), cv2.IMREAD_COLOR)
  box = session.open_photo(PHOTO)
  assert page.locator("#inpaint").is_disabled()  # nothing painted yet

  painted_stroke = session.stroke([(0.30, 0.35), (0.45, 0.42), (0.62, 0.40)])
  first = session.inpaint("first.png")
  mask = _check_round(session, painted_stroke, photo, first)
  assert "Inpainted in" in page.locator("#status").text_content()
  session.screenshot("web_inpaint.png")

  # The same pixels as `python test.py` for this photo and the mask the page sent.
  cv2.imwrite(str(tmp_path / "mask.png"), mask.astype(np.uint8) * 255)
  procs.finish(procs.start("test.py", "--image", PHOTO, "--mask", tmp_path / "mask.png",
                           "--output", tmp_path / "cli.png", cwd=tmp_path), "test.py")
  cli = cv2.imread(str(tmp_path / "cli.png"), cv2.IMREAD_UNCHANGED)
  assert np.array_equal(helpers.decode(first), cli)

  # Before/after: the canvas shows the photo, then the result again; no painting meanwhile.
  page.click("#compare")
  assert page.locator("#compare").get_attribute("aria-pressed") == "true"
  assert page.locator("#undo").is_disabled() and page.locator("#clear").is_disabled()
  page.keyboard.press("v")
  assert page.locator("#compare").get_attribute("aria-pressed") == "false"

  # Brush size keys, then a second stroke on the result (iterative editing).
  page.keyboard.press("]")
  assert page.locator("#size").input_value() == "50"
  page.keyboard.press("[")
  assert page.locator("#size").input_value() == str(BRUSH)
  second_stroke = session.stroke([(0.70, 0.70), (0.85, 0.75)])
  painted, width, height = session.painted_pixels()
  assert painted > 0 and (width, height) == (photo.shape[1], photo.shape[0])
  page.keyboard.press("Control+z")
  assert session.painted_pixels()[0] == 0 and page.locator("#inpaint").is_disabled()
  page.keyboard.press("Control+Shift+z")
  assert session.painted_pixels()[0] == painted
  page.click("#eraser")
  session.stroke([(0.84, 0.70), (0.86, 0.80)])
  assert 0 < session.painted_pixels()[0] < painted
  page.keyboard.press("Control+z")
  page.keyboard.press("b")
  assert session.painted_pixels()[0] == painted
  page.click("#clear")
  assert session.painted_pixels()[0] == 0
  page.keyboard.press("Control+z")
  assert session.painted_pixels()[0] == painted

  second = session.inpaint("second.png")
  content_type, body = session.uploads[-1]
  assert _parts(content_type, body)["image"] == first, "the second round edits the first result"
  _check_round(session, second_stroke, helpers.decode(first, cv2.IMREAD_COLOR), second)
  session.screenshot("web_inpaint_second.png")
  assert not session.errors, session.errors
  page.close()


def test_narrow_window_scales_the_photo_not_the_mask(browser, server, tmp_path):
  session = Session(browser, server.url, 390, 844, str(tmp_path))
  page = session.page
  photo = helpers.decode(open(PHOTO, "rb").read(), cv2.IMREAD_COLOR)
  box = session.open_photo(PHOTO)
  assert box["width"] < photo.shape[1] * 0.8, "shown scaled down"
  assert page.evaluate("document.documentElement.scrollWidth") <= 390, "no sideways scrolling"
  for control in ("#inpaint", "#download", "#undo", "#size", "label[for=file]"):
    bounds = page.locator(control).bounding_box()
    assert bounds["x"] >= 0 and bounds["x"] + bounds["width"] <= 390, control
  painted_stroke = session.stroke([(0.20, 0.60), (0.50, 0.50), (0.75, 0.62)])
  result = session.inpaint("narrow.png")
  _check_round(session, painted_stroke, photo, result)
  session.screenshot("web_inpaint_narrow.png")
  assert not session.errors, session.errors
  page.close()


def test_the_model_chosen_on_the_page_is_sent(browser, server, tmp_path):
  session = Session(browser, server.url, 1280, 800, str(tmp_path))
  page = session.page
  names = page.eval_on_selector_all("#model-choice option", "els => els.map(e => e.value)")
  assert names == ["demo", "other"] and page.input_value("#model-choice") == "demo"
  page.select_option("#model-choice", "other")
  page.wait_for_selector("#model:text-matches('^model other ')")
  assert page.locator("#model").text_content() == "model other (v1, cnum 4; original, seam-blended)"
  session.open_photo(PHOTO)
  session.stroke([(0.4, 0.4), (0.6, 0.5)])
  session.inpaint("other.png")
  _, body = session.uploads[-1]
  assert b'name="model"\r\n\r\nother\r\n' in body, body[-300:]
  assert not session.errors, session.errors
  page.close()


def test_drop_paste_and_errors_are_shown_in_the_page(browser, server, tmp_path):
  session = Session(browser, server.url, 1280, 800, str(tmp_path))
  page = session.page
  encoded = base64.b64encode(open(PHOTO, "rb").read()).decode()
  make_file = """([data, name]) => {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, {type: 'image/png'}));
    return transfer;
  }"""
  transfer = page.evaluate_handle(make_file, [encoded, "dropped.png"])
  page.dispatch_event("#stage", "drop", {"dataTransfer": transfer})
  page.wait_for_selector("#status:text-matches('^dropped.png: 512×342')")
  clipboard = page.evaluate_handle(make_file, [encoded, "pasted.png"])
  page.evaluate("""(transfer) => {
    const event = new ClipboardEvent('paste', {clipboardData: transfer, bubbles: true});
    document.dispatchEvent(event);
  }""", clipboard)
  page.wait_for_selector("#status:text-matches('^pasted.png: 512×342')")

  # An empty mask is refused in the page, before anything is sent.
  session.stroke([(0.5, 0.5), (0.55, 0.5)])
  page.click("#eraser")
  session.set_brush(200)
  session.stroke([(0.4, 0.4), (0.7, 0.6)])
  assert session.painted_pixels()[0] == 0
  page.click("#inpaint")
  page.wait_for_selector("#message:not([hidden])")
  assert "Paint over the area" in page.locator("#message-text").text_content()
  assert not session.uploads
  page.click("#message-close")

  # A file the browser shows but the server refuses: the API's message appears in the page.
  from PIL import Image
  icon = tmp_path / "icon.ico"
  Image.fromarray(helpers.example_rgb()[:64, :64]).save(icon)
  box = session.open_photo(str(icon))
  page.click("#brush")
  session.set_brush(20)
  session.stroke([(0.3, 0.3), (0.6, 0.6)])
  page.click("#inpaint")
  page.wait_for_selector("#message:not([hidden])", timeout=120_000)
  text = page.locator("#message-text").text_content()
  assert text.startswith("Inpainting failed: image: unsupported file"), text
  assert not page.locator("#inpaint").is_disabled()  # ready for another try
  assert not session.errors, session.errors
  page.close()


def test_run_in_this_browser_uploads_nothing(browser, server, tmp_path):
  if not server.site:
    pytest.skip("no stand-in site (needs the onnx extra and npm ci --prefix web)")
  session = Session(browser, server.url, 1280, 800, str(tmp_path))
  page = session.page
  assert page.locator("#privacy").is_hidden()
  page.check("#run-here")
  page.wait_for_selector("#model:text-matches('^model browser_model in this browser .*ready')",
                         timeout=60_000)
  text = page.locator("#model").text_content()
  assert "threads" in text or "1 thread" in text, text
  assert page.locator("#privacy").is_visible() and page.locator("#model-choice").is_disabled()
  photo = helpers.decode(open(PHOTO, "rb").read(), cv2.IMREAD_COLOR)
  session.open_photo(PHOTO)
  session.stroke([(0.30, 0.35), (0.62, 0.40)])
  page.click("#inpaint")
  page.wait_for_selector("#download[aria-disabled=false]", timeout=120_000)
  assert page.locator("#message").is_hidden(), page.locator("#message-text").text_content()
  assert not session.uploads, "the photo was not sent to the server"
  with page.expect_download() as info:
    page.click("#download")
  info.value.save_as(str(tmp_path / "here.png"))
  result = cv2.imread(str(tmp_path / "here.png"), cv2.IMREAD_COLOR)
  grey = (result == standin_model.GREY).all(axis=2)
  assert grey.sum() > 500, "the stand-in filled the stroke with grey"
  assert np.array_equal(result[~grey], photo[~grey]), "every other pixel is the photo's"
  # Off again: the server inpaints.
  page.uncheck("#run-here")
  assert page.locator("#privacy").is_hidden()
  page.wait_for_selector("#model:text-matches('^model demo ')")
  session.stroke([(0.7, 0.7), (0.8, 0.75)])
  session.inpaint("server.png")
  assert session.uploads, "sent to the server"
  assert not session.errors, session.errors
  page.close()
