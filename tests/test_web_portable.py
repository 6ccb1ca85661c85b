"""The static folder of `export.py --format web` in a real headless Chromium (Debian's).

The folder is served by `python -m http.server`'s handler on 127.0.0.1 and every request that is
not for that folder is aborted and recorded, so the page and `deepfill.js` must work offline and
send nothing: the photo never leaves the browser. `inpaint(image, mask)` is called from an
imported module and through the page (open a photo, open or paint a mask, press Inpaint,
download). A stand-in ONNX graph with the real one's contract (grey in the hole) checks the
page's and the module's mask rules exactly.

Without Chromium the browser tests skip with the reason, except where
DEEPFILL_REQUIRE_BROWSER=1 (CI), where they fail.
"""
import base64
import os
import subprocess
import sys

import numpy as np
import pytest

import static_site
from conftest import REPO
from support import procs
from support import serve as helpers
from support import standin_model
from support.checkpoints import write_tiny_checkpoint

from model.errors import UserError
from model.web import site

pytestmark = pytest.mark.slow  # export.py --format web and Chromium

NPM_DIR = os.path.join(REPO, "web")
ARTIFACTS = os.path.join(REPO, "tests", "artifacts")


def _browser_or_skip():
  reason = None
  try:
    from playwright.sync_api import sync_playwright  # noqa: F401
  except ImportError:
    reason = "playwright is not installed (pip install -e '.[test]')"
  executable = static_site.chromium_executable()
  if reason is None and executable is None:
    reason = "no chromium on PATH (apt-get install chromium; sh tests/install_browser.sh)"
  if reason is None:
    try:
      site.runtime_dist(NPM_DIR)
    except UserError as e:
      reason = str(e)
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
    chromium = p.chromium.launch(executable_path=executable, args=static_site.CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def standin_site(tmp_path_factory):
  _browser_or_skip()
  pytest.importorskip("onnx", reason="the stand-in graph needs the onnx extra")
  folder = tmp_path_factory.mktemp("standin_site")
  site.write_site(str(folder), standin_model.write_standin_model, NPM_DIR)
  server = static_site.StaticServer(str(folder))
  yield server
  server.close()


def _b64(array):
  return base64.b64encode(np.ascontiguousarray(array, np.uint8).tobytes()).decode()


# Runs deepfill.js's inpaint in the page on RGBA arrays sent as base64; returns the result's
# RGBA bytes as base64, or "error: <name>: <message>".
CALL_INPAINT = """async ([base, w, h, image, mask, options]) => {
  const bytes = (b64) => Uint8ClampedArray.from(atob(b64), (c) => c.charCodeAt(0));
  const { inpaint } = await import(base + "deepfill.js");
  try {
    const out = await inpaint(new ImageData(bytes(image), w, h),
                              new ImageData(bytes(mask), mask.length === image.length ? w : 1,
                                            mask.length === image.length ? h : 1), options);
    let text = "";
    for (let i = 0; i < out.data.length; i += 8192) {
      text += String.fromCharCode(...out.data.subarray(i, i + 8192));
    }
    return btoa(text);
  } catch (e) {
    return `error: ${e.name}: ${e.message}`;
  }
}"""


def call_inpaint(page, base, rgba, mask_rgba, options=None):
  h, w = rgba.shape[:2]
  result = page.evaluate(CALL_INPAINT, [base, w, h, _b64(rgba), _b64(mask_rgba), options or {}])
  if result.startswith("error: "):
    return result
  return np.frombuffer(base64.b64decode(result), np.uint8).reshape(h, w, 4)


def _rgba(rgb, alpha=255):
  return np.dstack([rgb, np.broadcast_to(np.uint8(alpha), rgb.shape[:2])]).astype(np.uint8)


def _standin(rgb, hole):
  out = rgb.copy()
  out[hole] = standin_model.GREY
  return out


def test_site_holds_the_page_the_runtime_and_the_model(tmp_path):
  pytest.importorskip("onnx", reason="the stand-in graph needs the onnx extra")
  sizes = site.write_site(str(tmp_path), standin_model.write_standin_model, NPM_DIR) \
      if _runtime_installed() else pytest.skip("npm ci --prefix web has not run")
  pages = {"index.html", "app.css", "paint.js", "pixels.js", "browser.js", "site.js", "deepfill.js"}
  assert set(sizes) == pages | {"model.onnx", "NOTICE.txt", "ort/ort.wasm.min.mjs",
                                "ort/ort-wasm-simd-threaded.mjs", "ort/ort-wasm-simd-threaded.wasm"}
  index = (tmp_path / "index.html").read_text()
  assert '<script type="module" src="site.js"></script>' in index and "server.js" not in index
  site.check_site(str(tmp_path))
  for name in pages:
    text = (tmp_path / name).read_text()
    assert "://" not in text.replace("http.server", ""), f"{name} names an outside address"
  assert 'import * as ort from "./ort/ort.wasm.min.mjs"' in (tmp_path / "deepfill.js").read_text()
  assert site.pinned_version(NPM_DIR) in (tmp_path / "NOTICE.txt").read_text()


def _runtime_installed():
  try:
    site.runtime_dist(NPM_DIR)
    return True
  except UserError:
    return False


def test_missing_or_stale_runtime_is_one_line_with_the_fix(tmp_path):
  npm = tmp_path / "web"
  npm.mkdir()
  (npm / "package.json").write_text('{"dependencies": {"onnxruntime-web": "1.30.0"}}')
  with pytest.raises(UserError, match=r"not installed in .*npm ci --prefix"):
    site.runtime_dist(str(npm))
  installed = npm / "node_modules" / "onnxruntime-web"
  installed.mkdir(parents=True)
  (installed / "package.json").write_text('{"version": "1.29.0"}')
  with pytest.raises(UserError, match=r"is version 1.29.0 but package.json pins 1.30.0"):
    site.runtime_dist(str(npm))
  folder = tmp_path / "site"
  folder.mkdir()
  with pytest.raises(UserError):
    site.write_site(str(folder), standin_model.write_standin_model, str(npm))
  assert not os.listdir(folder), "nothing is written before the runtime is found"
  with pytest.raises(UserError, match=r"is not a folder of export.py --format web \(no "
                     r"deepfill.js, model.onnx, ort/"):
    site.check_site(str(folder))


_EXPORT_WITH_NPM_DIR = r"""
import sys
sys.path.insert(0, sys.argv.pop(1))  # the checkout, as python export.py would have it
from absl import app
import cli, export
export.NPM_DIR = sys.argv.pop(1)
app.run(export.main, flags_parser=cli.one_line_flag_parser(export.FLAGS))
"""


def _export_web(*args, npm_dir=None, cwd):
  command = [sys.executable, os.path.join(REPO, "export.py")]
  if npm_dir:
    command = [sys.executable, "-c", _EXPORT_WITH_NPM_DIR, REPO, str(npm_dir)]
  return subprocess.run(command + ["--format", "web", *map(str, args)], cwd=str(cwd),
                        env=procs.env(), capture_output=True, text=True, timeout=300)


def test_export_web_errors_are_one_line_and_write_nothing(tmp_path):
  checkpoint = write_tiny_checkpoint(tmp_path / "ckpt")
  out = tmp_path / "site"
  npm = tmp_path / "web"
  npm.mkdir()
  (npm / "package.json").write_text('{"dependencies": {"onnxruntime-web": "1.30.0"}}')
  proc = _export_web("--checkpoint_dir", checkpoint, "--export_dir", out, npm_dir=npm,
                     cwd=tmp_path)
  assert proc.returncode == 1, proc
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ONNX Runtime Web is not installed"), lines
  assert "npm ci --prefix" in lines[0]
  assert not out.exists()

  out.mkdir()
  (out / "keep.txt").write_text("mine")
  proc = _export_web("--checkpoint_dir", checkpoint, "--export_dir", out, "--overwrite",
                     cwd=tmp_path)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      f"error: {out} is not a web export directory (no deepfill.js); refusing to replace it"]
  assert os.listdir(out) == ["keep.txt"]


def test_module_mask_rules_and_errors(browser, standin_site):
  offline = static_site.OfflinePage(browser, standin_site.url)
  page, base = offline.page, standin_site.url
  rng = np.random.default_rng(5)
  h, w = 23, 37
  rgb = rng.integers(0, 256, (h, w, 3), np.uint8)
  hole = np.zeros((h, w), bool)
  hole[4:15, 9:30] = True
  image = _rgba(rgb, alpha=rng.integers(200, 256, (h, w)).astype(np.uint8))
  image[..., 3] = 255  # opaque: canvas-free ImageData keeps any alpha, but photos are opaque

  # Holes painted on a transparent layer (alpha > 127), whatever their colour.
  painted = np.zeros((h, w, 4), np.uint8)
  painted[hole] = (0, 0, 0, 200)
  painted[~hole & (rng.random((h, w)) < 0.3)] = (255, 255, 255, 100)  # faint: not a hole
  out = call_inpaint(page, base, image, painted)
  np.testing.assert_array_equal(out[..., :3], _standin(rgb, hole))
  np.testing.assert_array_equal(out[..., 3], image[..., 3])

  # An opaque black mask with white holes: the red channel decides.
  black_white = _rgba(np.where(hole[..., None], np.uint8(255), np.uint8(0)).repeat(3, 2))
  black_white[~hole, 0] = 127  # dark red is not a hole
  np.testing.assert_array_equal(call_inpaint(page, base, image, black_white)[..., :3],
                                _standin(rgb, hole))
  forced = call_inpaint(page, base, image, black_white, {"channel": "alpha"})
  assert (forced[..., :3] == standin_model.GREY).all(), "channel 'alpha': every opaque pixel"

  empty = np.zeros((h, w, 4), np.uint8)
  np.testing.assert_array_equal(call_inpaint(page, base, image, empty), image)
  small = call_inpaint(page, base, image, np.zeros((1, 1, 4), np.uint8))
  assert small == ("error: RangeError: mask is 1x1 but image is 37x23 (width x height); "
                   "masks are not resized"), small
  limits = page.evaluate("""async (base) => {
    const { inpaint, MAX_PIXELS } = await import(base + "deepfill.js");
    const run = async (w, h, options) => {
      try {
        const out = await inpaint(new ImageData(w, h), new ImageData(w, h), options);
        return `ok ${out.width}x${out.height}`;
      } catch (e) {
        return `${e.name}: ${e.message}`;
      }
    };
    return [MAX_PIXELS, await run(896, 896), await run(897, 896),
            await run(897, 896, { maxPixels: 1e7 })];
  }""", base)
  assert limits[:2] == [896 * 896, "ok 896x896"], limits
  assert limits[2].startswith("RangeError: 897x896 is too large to inpaint in the browser"), limits
  assert limits[3] == "ok 897x896"
  bad = call_inpaint(page, base, image, painted, {"channel": "green"})
  assert bad.startswith("error: RangeError: options.channel must be"), bad

  assert not offline.blocked, offline.blocked
  assert {method for method, _ in offline.fetched} == {"GET"}
  assert any(url.endswith("/model.onnx") for _, url in offline.fetched)
  assert not offline.errors, offline.errors
  offline.close()


def _open_photo(offline, path):
  page = offline.page
  page.set_input_files("#file", str(path))
  page.wait_for_selector("#canvas-wrap:not([hidden])")


def _press_inpaint_and_download(offline, path, timeout=600_000):
  page = offline.page
  page.click("#inpaint")
  page.wait_for_selector("#download[aria-disabled=false]", timeout=timeout)
  assert page.locator("#message").is_hidden(), page.locator("#message-text").text_content()
  with page.expect_download() as info:
    page.click("#download")
  info.value.save_as(str(path))
  pixels = helpers.decode(path.read_bytes())
  assert pixels.ndim == 3 and pixels.shape[2] == 3, "an opaque photo gives an RGB PNG"
  return np.ascontiguousarray(pixels[..., ::-1])  # RGB


def _stroke(page, points):
  box = page.locator("#mask").bounding_box()
  xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
  page.mouse.move(*xy[0])
  page.mouse.down()
  for x, y in xy[1:]:
    page.mouse.move(x, y, steps=8)
  page.mouse.up()


def _painted(page):
  """The page's hole (mask canvas alpha > 0) as bool [H, W]."""
  data, w, h = page.evaluate("""() => {
    const c = document.getElementById('mask');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let s = '';
    for (let i = 3; i < d.length; i += 4) s += d[i] ? '1' : '0';
    return [s, c.width, c.height];
  }""")
  return np.frombuffer(data.encode(), np.uint8).reshape(h, w) == ord("1")


def test_page_opens_photo_and_mask_paints_and_downloads(browser, standin_site, tmp_path):
  offline = static_site.OfflinePage(browser, standin_site.url)
  page = offline.page
  page.wait_for_selector("#model:text-matches('^model ready')", timeout=60_000)
  assert "1 thread" in page.locator("#model").text_content()
  assert "cross-origin isolation" in page.locator("#model").text_content()
  rgb = helpers.example_rgb()[:61, :83]
  hole = np.zeros(rgb.shape[:2], bool)
  hole[20:40, 30:55] = True
  (tmp_path / "photo.png").write_bytes(helpers.png_bytes(rgb))
  (tmp_path / "mask.png").write_bytes(helpers.mask_png(hole))
  _open_photo(offline, tmp_path / "photo.png")
  assert page.locator("#inpaint").is_disabled()
  page.set_input_files("#mask-file", str(tmp_path / "mask.png"))
  page.wait_for_selector("#inpaint:not([disabled])")
  first = _press_inpaint_and_download(offline, tmp_path / "first.png")
  np.testing.assert_array_equal(first, _standin(rgb, hole))

  # A mask of another size is refused with test.py's words.
  (tmp_path / "other.png").write_bytes(helpers.mask_png(np.ones((10, 10), bool)))
  page.set_input_files("#mask-file", str(tmp_path / "other.png"))
  page.wait_for_selector("#message:not([hidden])")
  assert "mask is 10x10 but the photo is 83x61" in page.locator("#message-text").text_content()
  page.click("#message-close")

  # Paint on the result (iterative editing): the painted pixels are filled, nothing else moves.
  _stroke(page, [(0.1, 0.8), (0.5, 0.85), (0.9, 0.75)])
  painted = _painted(page)
  assert painted.sum() > 100
  second = _press_inpaint_and_download(offline, tmp_path / "second.png")
  np.testing.assert_array_equal(second, _standin(first, painted))
  page.click("#compare")
  assert page.locator("#compare").get_attribute("aria-pressed") == "true"
  os.makedirs(ARTIFACTS, exist_ok=True)
  page.screenshot(path=os.path.join(ARTIFACTS, "web_portable_standin.png"))
  assert not offline.blocked, offline.blocked
  assert {method for method, _ in offline.fetched} == {"GET"}, "nothing is uploaded"
  assert not offline.errors, offline.errors
  offline.close()


def test_page_keeps_every_known_value_of_a_semi_transparent_photo(browser, standin_site,
                                                                  tmp_path):
  """RGB under alpha 0..254 is read and written as the file holds it (a 2D canvas would store
  it premultiplied: up to 255 levels off where alpha is 0), and the alpha is the photo's."""
  from PIL import Image
  offline = static_site.OfflinePage(browser, standin_site.url)
  page = offline.page
  rng = np.random.default_rng(7)
  h, w = 37, 53
  rgba = rng.integers(0, 256, (h, w, 4), np.uint8)
  rgba[..., 3] = rng.choice(np.array([0, 1, 2, 77, 128, 254, 255], np.uint8), (h, w))
  hole = np.zeros((h, w), bool)
  hole[9:25, 14:40] = True
  Image.fromarray(rgba, "RGBA").save(tmp_path / "photo.png")
  (tmp_path / "mask.png").write_bytes(helpers.mask_png(hole))
  _open_photo(offline, tmp_path / "photo.png")
  page.set_input_files("#mask-file", str(tmp_path / "mask.png"))
  page.wait_for_selector("#inpaint:not([disabled])")
  page.click("#inpaint")
  page.wait_for_selector("#download[aria-disabled=false]", timeout=120_000)
  assert page.locator("#message").is_hidden(), page.locator("#message-text").text_content()
  with page.expect_download() as info:
    page.click("#download")
  info.value.save_as(str(tmp_path / "out.png"))
  out = np.asarray(Image.open(tmp_path / "out.png"))
  assert out.shape == (h, w, 4), out.shape
  np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
  np.testing.assert_array_equal(out[~hole], rgba[~hole])
  assert (out[..., :3][hole] == standin_model.GREY).all()
  assert not offline.blocked and not offline.errors, (offline.blocked, offline.errors)
  offline.close()


def test_without_webgl_opaque_photos_work_and_transparent_ones_are_refused(browser, standin_site,
                                                                           tmp_path):
  from PIL import Image
  rgba = np.dstack([helpers.example_rgb()[:31, :45], np.full((31, 45), 255, np.uint8)])
  hole = np.zeros((31, 45), bool)
  hole[5:20, 10:30] = True
  (tmp_path / "mask.png").write_bytes(helpers.mask_png(hole))
  Image.fromarray(rgba[..., :3]).save(tmp_path / "opaque.png")
  rgba[0, 0, 3] = 254
  Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
  chromium = browser.browser_type.launch(executable_path=static_site.chromium_executable(),
                                         args=static_site.CHROMIUM_ARGS + ["--disable-webgl"])
  try:
    offline = static_site.OfflinePage(chromium, standin_site.url)
    page = offline.page
    assert page.evaluate("!document.createElement('canvas').getContext('webgl')")
    _open_photo(offline, tmp_path / "opaque.png")
    page.set_input_files("#mask-file", str(tmp_path / "mask.png"))
    page.wait_for_selector("#inpaint:not([disabled])")
    out = _press_inpaint_and_download(offline, tmp_path / "out.png")
    np.testing.assert_array_equal(out, _standin(rgba[..., :3], hole))
    _open_photo(offline, tmp_path / "clear.png")
    page.set_input_files("#mask-file", str(tmp_path / "mask.png"))
    page.wait_for_selector("#inpaint:not([disabled])")
    page.click("#inpaint")
    page.wait_for_selector("#message:not([hidden])")
    text = page.locator("#message-text").text_content()
    assert "cannot read the exact colours of a semi-transparent image without WebGL" in text
    assert not offline.blocked and not offline.errors, (offline.blocked, offline.errors)
    offline.close()
  finally:
    chromium.close()


# ---------------------------------------------------------------- the real model vs test.py

def _golden_or_skip():
  from conftest import GOLDEN, require_shared
  return require_shared(os.path.join(GOLDEN, "checkpoint"))


@pytest.fixture(scope="module")
def golden_case(tmp_path_factory):
  """The official checkpoint exported with `export.py --format web`, served; an odd-size photo
  with a box and a stroke hole; and `test.py --noseam_blend --strategy original`'s result for it."""
  _browser_or_skip()
  checkpoint = _golden_or_skip()
  tmp = tmp_path_factory.mktemp("golden_site")
  exported = tmp / "site"
  export = subprocess.Popen(
      [sys.executable, os.path.join(REPO, "export.py"), "--format", "web",
       "--checkpoint_dir", checkpoint, "--export_dir", str(exported)],
      cwd=str(tmp), env=procs.env(), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)
  rgb = helpers.example_rgb()[101:168, 203:300]  # 97 x 67
  hole = np.zeros(rgb.shape[:2], bool)
  hole[14:40, 20:51] = True
  yy, xx = np.mgrid[:rgb.shape[0], :rgb.shape[1]]
  hole |= np.abs(yy - 0.5 * xx - 10) < 3  # a thin diagonal stroke
  (tmp / "photo.png").write_bytes(helpers.png_bytes(rgb))
  (tmp / "mask.png").write_bytes(helpers.mask_png(hole))
  cli = procs.start("test.py", "--image", tmp / "photo.png", "--mask", tmp / "mask.png",
                    "--output", tmp / "cli.png", "--checkpoint_dir", checkpoint,
                    "--noseam_blend", "--strategy", "original", "--precision", "float32",
                    cwd=tmp)
  procs.finish(export, "export.py --format web")
  procs.finish(cli, "test.py")
  expected = helpers.decode((tmp / "cli.png").read_bytes())[..., ::-1]
  server = static_site.StaticServer(str(exported))
  yield {"server": server, "rgb": rgb, "hole": hole, "expected": expected, "tmp": tmp}
  server.close()


def assert_matches_test_py(got, expected, hole):
  """Known pixels exact; in the hole at most 0.1 % of the values differ, by one level."""
  assert got.shape == expected.shape
  np.testing.assert_array_equal(got[~hole], expected[~hole])
  diff = np.abs(got[hole].astype(int) - expected[hole].astype(int))
  assert diff.max() <= 1, f"hole values differ by up to {diff.max()} levels"
  assert (diff > 0).mean() <= 0.001, f"{(diff > 0).mean():.3%} of the hole values differ"


def test_module_inpaint_matches_test_py(browser, golden_case):
  offline = static_site.OfflinePage(browser, golden_case["server"].url)
  rgb, hole = golden_case["rgb"], golden_case["hole"]
  mask = np.zeros(rgb.shape[:2] + (4,), np.uint8)
  mask[hole] = 255
  out = call_inpaint(offline.page, golden_case["server"].url, _rgba(rgb), mask)
  assert not isinstance(out, str), out
  assert (out[..., 3] == 255).all()
  assert_matches_test_py(out[..., :3], golden_case["expected"], hole)
  assert (out[..., :3][hole] != rgb[hole]).any(), "the hole was filled"
  assert not offline.blocked, offline.blocked
  assert not offline.errors, offline.errors
  offline.close()


def test_page_inpaint_matches_test_py(browser, golden_case):
  tmp = golden_case["tmp"]
  offline = static_site.OfflinePage(browser, golden_case["server"].url)
  page = offline.page
  _open_photo(offline, tmp / "photo.png")
  page.set_input_files("#mask-file", str(tmp / "mask.png"))
  page.wait_for_selector("#inpaint:not([disabled])")
  out = _press_inpaint_and_download(offline, tmp / "page.png")
  assert_matches_test_py(out, golden_case["expected"], golden_case["hole"])
  assert "Inpainted in" in page.locator("#status").text_content()
  os.makedirs(ARTIFACTS, exist_ok=True)
  page.screenshot(path=os.path.join(ARTIFACTS, "web_portable_golden.png"))
  assert not offline.blocked, offline.blocked
  assert {method for method, _ in offline.fetched} == {"GET"}, "nothing is uploaded"
  assert not offline.errors, offline.errors
  offline.close()


def test_cross_origin_isolated_server_gives_threads(browser, tmp_path):
  """With COOP/COEP headers the page is cross-origin isolated and ONNX Runtime gets threads."""
  pytest.importorskip("onnx", reason="the stand-in graph needs the onnx extra")
  site.write_site(str(tmp_path), standin_model.write_standin_model, NPM_DIR)
  server = static_site.StaticServer(str(tmp_path), static_site.ISOLATION_HEADERS)
  try:
    offline = static_site.OfflinePage(browser, server.url)
    page = offline.page
    page.wait_for_selector("#model:text-matches('^model ready')", timeout=60_000)
    cores = page.evaluate("navigator.hardwareConcurrency")
    threads = min(4, cores)
    assert page.evaluate("crossOriginIsolated")
    text = page.locator("#model").text_content()
    assert f"WebAssembly, {threads} thread" in text and "isolation" not in text, text
    rgb = helpers.example_rgb()[:40, :56]
    hole = np.zeros(rgb.shape[:2], bool)
    hole[10:30, 5:20] = True
    mask = np.zeros(rgb.shape[:2] + (4,), np.uint8)
    mask[hole] = 255
    out = call_inpaint(page, server.url, _rgba(rgb), mask)
    np.testing.assert_array_equal(out[..., :3], _standin(rgb, hole))
    assert not offline.blocked and not offline.errors, (offline.blocked, offline.errors)
    offline.close()
  finally:
    server.close()
