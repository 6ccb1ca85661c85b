"""SavedModel export (`python export.py`) and the in-graph serving functions (model/inference/serving.py).

End to end: a tiny generator (cnum 4) is saved as our checkpoint format, exported by
a real `python export.py` run, and loaded in a separate Python process with
`tf.saved_model.load` and no project code on the path. Both signatures must give exactly the
bytes `python test.py` writes for the same inputs, on sizes that are not multiples of 8, with
one mask per sample. Export and test.py runs overlap (they are separate processes) to save
wall time. The golden official TF1 checkpoint is exported and compared on its example too.
"""
import json
import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from conftest import GOLDEN, REPO, require_shared
from support import hostile_files as hostile
from support import procs
from support.checkpoints import write_tiny_checkpoint
from support.hostile_files import png_with_header
from model import config as config_lib
from model.fileio import decode
from model.inference import inpainter as inpaint
from model.inference import serving

EXPORT_PY = os.path.join(REPO, "export.py")
TEST_PY = os.path.join(REPO, "test.py")
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
SIZES = [(40, 56), (37, 61)]  # (H, W); neither is a multiple of 8
# A budget of ~4 KB makes contextual attention run in 2x2 query tiles at 40x56 and 1x1 tiles
# at 37x61 (padded to 40x64), so the tile computed in the graph must match test.py's.
TINY_BUDGET_GB = "4e-6"
MAX_MEGAPIXELS = "0.01"  # inpaint_bytes refuses files declaring more than 10,000 pixels

# Runs in a fresh interpreter with a clean PYTHONPATH and cwd=tmp: only TensorFlow + NumPy.
# argv: export_dir, job.json, result.npz. job: {"batches": {key: npz path},
# "bytes": [[image.png, mask.png], ...]}. Writes the outputs of both signatures.
LOADER = r"""
import json, sys
import numpy as np
import tensorflow as tf
export_dir, job_path, result_path = sys.argv[1:4]
with open(job_path) as f:
  job = json.load(f)
loaded = tf.saved_model.load(export_dir)
default = loaded.signatures["serving_default"]
results = {}
for key, path in job["batches"].items():
  arrays = np.load(path)
  out = default(image=tf.constant(arrays["image"]), mask=tf.constant(arrays["mask"]))
  results["inpainted_" + key] = out["inpainted"].numpy()
if job["bytes"]:
  read = lambda p: open(p, "rb").read()
  images = tf.constant([read(i) for i, _ in job["bytes"]])
  masks = tf.constant([read(m) for _, m in job["bytes"]])
  pngs = loaded.signatures["inpaint_bytes"](image_bytes=images, mask_bytes=masks)["png_bytes"]
  for i, data in enumerate(pngs.numpy()):
    results["png_%d" % i] = np.frombuffer(data, np.uint8)
if job.get("exif"):
  read = lambda p: open(p, "rb").read()
  pngs = loaded.signatures["inpaint_bytes"](
      image_bytes=tf.constant([read(i) for i, _ in job["exif"]]),
      mask_bytes=tf.constant([read(m) for _, m in job["exif"]]))["png_bytes"]
  for i, data in enumerate(pngs.numpy()):
    results["exif_png_%d" % i] = np.frombuffer(data, np.uint8)
try:  # a mask of the wrong size is refused
  default(image=tf.zeros([1, 16, 16, 3], tf.uint8), mask=tf.zeros([1, 16, 8, 1], tf.uint8))
  results["mismatch_refused"] = np.array(False)
except tf.errors.InvalidArgumentError:
  results["mismatch_refused"] = np.array(True)
empty = default(image=tf.zeros([0, 16, 16, 3], tf.uint8), mask=tf.zeros([0, 16, 16, 1], tf.uint8))
results["empty_shape"] = np.array(empty["inpainted"].shape)
refusals = {"rgb_mask": lambda: default(image=tf.zeros([1, 16, 16, 3], tf.uint8),
                                        mask=tf.fill([1, 16, 16, 3], tf.constant(255, tf.uint8)))}
for name, (image_path, mask_path) in job.get("refusals", {}).items():
  refusals[name] = lambda i=image_path, m=mask_path: loaded.signatures["inpaint_bytes"](
      image_bytes=tf.constant([open(i, "rb").read()]),
      mask_bytes=tf.constant([open(m, "rb").read()]))
for name, call in refusals.items():
  try:
    call()
    results["refused_" + name] = np.array("")
  except tf.errors.InvalidArgumentError as e:
    results["refused_" + name] = np.array(e.message)
project = [m for m in ("model", "layers", "flags") if m in sys.modules]
assert not project, "project modules were imported: %s" % project
np.savez(result_path, **results)
"""


def _start(script, *args, cwd):
  return procs.start(script, *args, cwd=cwd)


def _finish(proc, what, timeout=1200):
  return procs.finish(proc, what, timeout)


def _run_export(*args, cwd):
  return procs.run("export.py", *args, cwd=cwd, timeout=1200)


def _load_and_call(export_dir, tmp, batches, pairs, refusals=None, exif=()):
  """Runs LOADER in a separate process; returns its outputs (dict of arrays)."""
  job = os.path.join(tmp, "job.json")
  result = os.path.join(tmp, "result.npz")
  with open(job, "w") as f:
    json.dump({"batches": batches, "bytes": pairs, "refusals": refusals or {},
               "exif": list(exif)}, f)
  proc = subprocess.run([sys.executable, "-c", LOADER, str(export_dir), job, result],
                        cwd=str(tmp), env=procs.env(), capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, f"loading the SavedModel failed:\n{proc.stdout}\n{proc.stderr}"
  with np.load(result) as data:
    return {key: data[key] for key in data.files}


def _rgb(path):
  bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
  assert bgr is not None, f"cannot read {path}"
  return bgr[..., ::-1]


def _write_image(path, pixels):
  assert cv2.imwrite(str(path), pixels), f"cannot write {path}"
  return str(path)


def _holes(h, w, sample):
  """Different masks per sample: a box, strokes, and holes touching the padded borders."""
  hole = np.zeros((h, w), bool)
  if sample == 0:
    hole[h // 4:h // 2 + 3, w // 5:w // 2] = True
    hole[-3:, -5:] = True  # bottom-right corner, next to the reflect padding
  else:
    cv2.line(hole.view(np.uint8), (2, h - 4), (w - 3, 5), 1, 3)
    hole[:4, :7] = True
  return hole


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
  """A tiny exported model, its inputs and the matching `python test.py` outputs."""
  tmp = tmp_path_factory.mktemp("export")
  ckpt = tmp / "ckpt"
  # Declares the auto strategy at a scale where sample 0's box is rescaled (crop) and sample 1's
  # thin holes are not (original), so both branches are baked into the export and compared.
  write_tiny_checkpoint(ckpt, inference=config_lib.InferenceConfig(
      strategy="auto", seam_blend=True, crop_size=24, hole_min=6, hole_max=12))

  # An earlier export in OUT: replaced thanks to --overwrite.
  out = tmp / "models" / "deepfill"
  out.mkdir(parents=True)
  (out / "saved_model.pb").write_bytes(b"old")
  (out / "variables").mkdir()
  (out / "variables" / "stale.index").write_text("old export")
  export = _start(EXPORT_PY, "--checkpoint_dir", ckpt, "--export_dir", out, "--overwrite",
                  "--max_memory_gb", TINY_BUDGET_GB, "--max_megapixels", MAX_MEGAPIXELS, cwd=tmp)

  photo = _rgb(os.path.join(REPO, "examples", "sklearn_china.png"))
  (tmp / "images").mkdir()
  (tmp / "masks").mkdir()
  batches, pairs, names = {}, [], {}
  for h, w in SIZES:
    key = f"{h}x{w}"
    images, masks = [], []
    for i in range(2):
      y, x = 50 + 90 * i, 120 + 70 * i
      image = np.ascontiguousarray(photo[y:y + h, x:x + w])
      hole = _holes(h, w, i)
      name = f"{key}_{i}.png"
      pairs.append([_write_image(tmp / "images" / name, image[..., ::-1]),
                    _write_image(tmp / "masks" / name, hole.astype(np.uint8) * 255)])
      names.setdefault(key, []).append(name)
      images.append(image)
      masks.append(hole[..., None].astype(np.uint8) * 255)
    batches[key] = str(tmp / f"{key}.npz")
    np.savez(batches[key], image=np.stack(images), mask=np.stack(masks))

  exif = _exif_pairs(tmp / "exif", photo)
  cli = _start(TEST_PY, "--image", tmp / "images", "--mask", tmp / "masks",
               "--output", tmp / "expected", "--checkpoint_dir", ckpt,
               "--max_memory_gb", TINY_BUDGET_GB, cwd=tmp)
  _finish(cli, "test.py")
  stdout, stderr = _finish(export, "export.py")
  return dict(tmp=tmp, out=out, batches=batches, pairs=pairs, names=names,
              stdout=stdout, stderr=stderr, ckpt=ckpt, exif=exif)


def _exif_pairs(folder, photo):
  """A 24x40 photo stored as JPEG with each EXIF orientation 1..8, and a mask drawn on the
  photo as displayed (no tag): [(image, mask)]."""
  folder.mkdir()
  stored = np.ascontiguousarray(photo[100:124, 200:240])
  pairs = []
  for tag in range(1, 9):
    image = folder / f"photo_{tag}.jpg"
    image.write_bytes(hostile.with_exif_orientation(stored, "JPEG", tag, quality=95))
    h, w = (40, 24) if tag >= 5 else (24, 40)
    hole = np.zeros((h, w), bool)
    hole[h // 4:h // 2, w // 3:w // 2 + 2] = True
    pairs.append([str(image), _write_image(folder / f"mask_{tag}.png",
                                           hole.astype(np.uint8) * 255)])
  return pairs




def _refusal_files(tmp, good_image, good_mask):
  """name -> (image file, mask file) that inpaint_bytes must refuse with a clear message."""
  from PIL import Image
  frames = [Image.fromarray(np.full((16, 24, 3), v, np.uint8)) for v in (0, 128, 255)]
  frames[0].save(tmp / "anim.webp", save_all=True, append_images=frames[1:], duration=100,
                 lossless=True)
  (tmp / "bomb.png").write_bytes(png_with_header(101, 100))   # 10,100 pixels > cap
  (tmp / "text.png").write_bytes(b"not an image at all")
  (tmp / "liar.gif").write_bytes(hostile.gif_frame_beyond_screen(8, 300))  # 90,000 > cap
  (tmp / "scans.jpg").write_bytes(hostile.many_scans_jpeg(101))
  return {"gif_frame_above_cap": (str(tmp / "liar.gif"), good_mask),
          "jpeg_scans": (str(tmp / "scans.jpg"), good_mask),
          "image_above_cap": (str(tmp / "bomb.png"), good_mask),
          "mask_above_cap": (good_image, str(tmp / "bomb.png")),
          "animated_webp": (str(tmp / "anim.webp"), good_mask),
          "not_an_image": (str(tmp / "text.png"), good_mask)}


@pytest.fixture(scope="module")
def tiny_results(tiny_export):
  e = tiny_export
  refusals = _refusal_files(e["tmp"], *e["pairs"][0])
  return _load_and_call(e["out"], e["tmp"], e["batches"], e["pairs"], refusals, e["exif"])


@pytest.mark.slow
def test_export_writes_saved_model_atomically(tiny_export):
  out = tiny_export["out"]
  assert "wrote SavedModel" in tiny_export["stdout"]
  assert not tiny_export["stderr"].strip(), tiny_export["stderr"]
  assert (out / "saved_model.pb").stat().st_size > 1000  # the old placeholder is gone
  assert not (out / "variables" / "stale.index").exists()
  assert (out / "variables").is_dir()
  assert sorted(os.listdir(out.parent)) == ["deepfill"]  # no temporary directory left


@pytest.mark.slow
def test_serving_default_equals_test_py(tiny_export, tiny_results):
  tmp = tiny_export["tmp"]
  for key, path in tiny_export["batches"].items():
    with np.load(path) as batch:
      images, masks = batch["image"], batch["mask"]
    out = tiny_results["inpainted_" + key]
    assert out.shape == images.shape and out.dtype == np.uint8
    for i, name in enumerate(tiny_export["names"][key]):
      expected = _rgb(tmp / "expected" / name)
      known = masks[i, ..., 0] <= 127
      np.testing.assert_array_equal(out[i][known], images[i][known])
      np.testing.assert_array_equal(out[i], expected, err_msg=f"{key} sample {i}")
      assert not np.array_equal(out[i], images[i])  # the holes were filled


@pytest.mark.slow
def test_inpaint_bytes_equals_test_py(tiny_export, tiny_results):
  tmp = tiny_export["tmp"]
  for i, (image_path, _) in enumerate(tiny_export["pairs"]):
    decoded = cv2.imdecode(tiny_results[f"png_{i}"], cv2.IMREAD_UNCHANGED)
    assert decoded is not None and decoded.shape == _rgb(image_path).shape
    expected = _rgb(tmp / "expected" / os.path.basename(image_path))
    np.testing.assert_array_equal(decoded[..., ::-1], expected, err_msg=image_path)


@pytest.mark.slow
def test_inpaint_bytes_turns_photos_as_test_py(tiny_export, tiny_results):
  """EXIF orientation 1..8: the SavedModel returns test.py's pixels (decode.read_pair,
  Inpainter.inpaint with the export's checkpoint and budget) in test.py's orientation."""
  runner = inpaint.Inpainter.from_checkpoint(str(tiny_export["ckpt"]),
                                             max_memory_gb=float(TINY_BUDGET_GB))
  for i, (image_path, mask_path) in enumerate(tiny_export["exif"]):
    rgb, info, hole = decode.read_pair(image_path, mask_path)
    assert info.orientation == i + 1
    expected, _ = runner.inpaint(rgb, hole)
    got = cv2.imdecode(tiny_results[f"exif_png_{i}"], cv2.IMREAD_UNCHANGED)[..., ::-1]
    np.testing.assert_array_equal(got, expected, err_msg=f"orientation {i + 1}")


@pytest.mark.slow
def test_wrong_mask_size_refused_and_empty_batch(tiny_results):
  assert tiny_results["mismatch_refused"]
  assert list(tiny_results["empty_shape"]) == [0, 16, 16, 3]


@pytest.mark.slow
@pytest.mark.parametrize("name,fragment", [
    ("rgb_mask", "mask must be uint8 [B, H, W, 1]"),
    ("image_above_cap", "image is 101x100 pixels: empty, or above the limit"),
    ("mask_above_cap", "mask is 101x100 pixels"),
    ("animated_webp", "animated WebP is not supported"),
    ("not_an_image", "unsupported image data"),
    ("gif_frame_above_cap", "image is 300x300 pixels: empty, or above the limit"),
    ("jpeg_scans", "image: JPEG has more than 100 scans")])
def test_serving_refuses_bad_input_clearly(tiny_results, name, fragment):
  """serving_default enforces [B,H,W,1] masks; inpaint_bytes checks the header (pixel cap set
  at export, before decoding: the 'bomb' has no valid pixel data) and refuses animations."""
  message = str(tiny_results["refused_" + name])
  assert message, f"{name} was accepted"
  assert fragment in message, message
  if "cap" in name:
    assert "0.01 megapixels set at export" in message  # the GIF's header says 8x8


@pytest.mark.slow
def test_saved_model_cli_lists_signatures(tiny_export):
  proc = subprocess.run([SAVED_MODEL_CLI, "show", "--dir", str(tiny_export["out"]), "--all"],
                        capture_output=True, text=True, timeout=600, env=procs.env())
  assert proc.returncode == 0, proc.stderr
  text = proc.stdout
  default = text.split("signature_def['serving_default']")[1].split("signature_def[")[0]
  for name in ("inputs['image']", "inputs['mask']", "outputs['inpainted']", "DT_UINT8",
               "(-1, -1, -1, 3)", "(-1, -1, -1, 1)", "tensorflow/serving/predict"):
    assert name in default, name
  by_bytes = text.split("signature_def['inpaint_bytes']")[1].split("signature_def[")[0]
  for name in ("inputs['image_bytes']", "inputs['mask_bytes']", "outputs['png_bytes']",
               "DT_STRING"):
    assert name in by_bytes, name


def _assert_one_line_error(proc, *fragments, status=1):
  assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


@pytest.mark.slow
def test_export_errors_are_one_line(tmp_path):
  out = tmp_path / "out"
  proc = _run_export("--checkpoint_dir", tmp_path / "missing", "--export_dir", out,
                     cwd=tmp_path)
  _assert_one_line_error(proc, "checkpoint directory not found")
  assert not out.exists()

  proc = _run_export("--checkpoint_dir", tmp_path, "--export_dir", out, cwd=tmp_path)
  _assert_one_line_error(proc, "no DeepFill checkpoint")  # after TensorFlow is loaded
  assert not out.exists()

  out.mkdir()
  (out / "keep.txt").write_text("mine")
  proc = _run_export("--checkpoint_dir", tmp_path / "missing", "--export_dir", out,
                     cwd=tmp_path)
  _assert_one_line_error(proc, "not empty", "--overwrite")
  proc = _run_export("--checkpoint_dir", tmp_path / "missing", "--export_dir", out,
                     "--overwrite", cwd=tmp_path)
  _assert_one_line_error(proc, "not a SavedModel directory")  # never wipes other folders
  assert sorted(os.listdir(out)) == ["keep.txt"]

  proc = _run_export("--export_dir", tmp_path / "x", "--max_memory_gb", "abc", cwd=tmp_path)
  _assert_one_line_error(proc, "max_memory_gb", status=2)
  proc = _run_export("--checkpoint_dir", tmp_path, cwd=tmp_path)
  _assert_one_line_error(proc, "--export_dir is required", status=2)
  proc = _run_export("--export_dir", tmp_path / "x", "stray", cwd=tmp_path)
  _assert_one_line_error(proc, "unexpected arguments: stray", status=2)
  assert sorted(os.listdir(tmp_path)) == ["out"]  # nothing else was created


def _fake_saved_model(folder, *extra):
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "saved_model.pb").write_bytes(b"old")
  (folder / "variables").mkdir(exist_ok=True)
  (folder / "variables" / "variables.index").write_bytes(b"old")
  for name in extra:
    (folder / name).write_text("not part of a SavedModel")
  return folder


def _tree(folder):
  return sorted(os.path.relpath(os.path.join(root, name), folder)
                for root, dirs, files in os.walk(folder) for name in dirs + files)


@pytest.mark.slow
def test_overwrite_replaces_only_a_saved_model(tmp_path):
  ckpt_parent = _fake_saved_model(tmp_path / "P")
  ckpt = ckpt_parent / "ckpt"
  write_tiny_checkpoint(ckpt)
  before = _tree(ckpt_parent)
  # The export dir holds the checkpoint being exported (or is it): refused, nothing touched.
  for out in (ckpt_parent, ckpt, tmp_path / "Plink"):
    if out.name == "Plink":
      os.symlink(ckpt_parent, out)
    proc = _run_export("--checkpoint_dir", ckpt, "--export_dir", out, "--overwrite",
                       cwd=tmp_path)
    _assert_one_line_error(proc, "contains the checkpoint being exported")
    assert _tree(ckpt_parent) == before
  # A SavedModel with other files beside it is not replaced either.
  other = _fake_saved_model(tmp_path / "Q", "notes.txt")
  proc = _run_export("--checkpoint_dir", ckpt, "--export_dir", other, "--overwrite",
                     cwd=tmp_path)
  _assert_one_line_error(proc, "holds more than a SavedModel (notes.txt)")
  assert (other / "notes.txt").exists() and (other / "saved_model.pb").read_bytes() == b"old"
  # A symlink to a SavedModel: the link stays, the directory it points to is replaced.
  target = _fake_saved_model(tmp_path / "models" / "v1")
  link = tmp_path / "current"
  os.symlink(target, link)
  # (--signatures serving: the pipeline's export, serving_default only.)
  proc = _run_export("--checkpoint_dir", ckpt, "--export_dir", link, "--overwrite",
                     "--signatures", "serving", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert (f"wrote SavedModel to {target} (the target of the symlink {link}) (signatures: "
          "serving_default)") in proc.stdout
  assert os.path.islink(link) and os.path.realpath(link) == str(target)
  assert (target / "saved_model.pb").stat().st_size > 1000
  assert not (target / "variables" / "variables.index").read_bytes() == b"old"
  assert sorted(os.listdir(target.parent)) == ["v1"]  # no temporary directory left
  assert set(tf.saved_model.load(str(link)).signatures) == {"serving_default"}


_FULL_DISK = r"""
import os, sys
import tensorflow as tf
import export
out = sys.argv[1]
def write(tmp):  # what SaveV2 raises when the disk fills up while the variables are written
  with open(os.path.join(tmp, "saved_model.pb"), "wb") as f:
    f.write(b"partial")
  raise tf.errors.ResourceExhaustedError(None, None, (
      "{{function_node __wrapped__SaveV2_dtypes_170_device_/job:localhost/replica:0/task:0/"
      "device:CPU:0}} " + tmp + "/variables/variables_temp/part-00000-of-00001.data-00000-of-"
      "00001.tempstate2353073883585354485; No space left on device [Op:SaveV2]"))
try:
  export._write_atomically(out, False, write)
except export._ExportError as e:
  print(e)
"""


@pytest.mark.slow
def test_full_disk_is_one_user_facing_line(tmp_path):
  """A disk that fills up during the export: one line that says so, and nothing left behind.
  (Also checked by hand on a 2 MB tmpfs: the same message.)"""
  out = tmp_path / "export"
  proc = subprocess.run([sys.executable, "-c", _FULL_DISK, str(out)], cwd=REPO, env=procs.env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout == (f"cannot write {out}: No space left on device; nothing was written "
                         "(free some space or choose another --export_dir)\n"), proc.stdout
  assert os.listdir(tmp_path) == []


# In-process checks of the graph pieces against the NumPy inference path.

def test_pad_to_grid_matches_numpy():
  fn = tf.function(inpaint.pad_to_grid, input_signature=[
      tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([None, None], tf.bool)])
  rng = np.random.default_rng(0)
  for h in range(1, 11):
    for w in (1, 2, 3, 7, 8, 9, 17):
      image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
      hole = rng.random((h, w)) < 0.5
      padded, hole_p = fn(image, hole)
      mode = "reflect" if min(h, w) > 1 else "edge"
      pads = [(0, -h % 8), (0, -w % 8)]
      np.testing.assert_array_equal(padded.numpy(), np.pad(image, pads + [(0, 0)], mode=mode),
                                    f"{h}x{w}")
      np.testing.assert_array_equal(hole_p.numpy(), np.pad(hole, pads, mode=mode), f"{h}x{w}")


def test_attention_tile_in_graph_matches_the_memory_model():
  from model.inference import local_plan as local_inference
  for budget in (1e3, 3e6, 0.5 * 2**30, 2**30, 16 * 2**30):
    fn = tf.function(lambda h, w, b=budget: local_inference.attention_tile(h, w, b))
    for h, w in ((8, 8), (40, 56), (256, 256), (512, 680), (1024, 768), (4000, 6000)):
      h2, w2 = max(h // 8, 1), max(w // 8, 1)
      # ~3 (t+2)^2 + 8 t^2 ~ 12 t^2 rows of L+1 floats must fit the budget.
      t = int(math.sqrt(max(budget / (4.0 * (h2 * w2 + 1) * 12), 1.0)))
      expected = max(1, min(t, max(h2, w2)))
      assert int(fn(tf.constant(h), tf.constant(w))) == expected, (budget, h, w)
      assert int(local_inference.attention_tile(h, w, budget)) == expected  # eager
  # A batch of 4 shares the budget: each sample gets a quarter.
  for h, w in ((256, 256), (1024, 768), (4000, 6000)):
    one = int(local_inference.attention_tile(h, w, 2**30 / 4))
    assert int(local_inference.attention_tile(h, w, 2**30, batch=4)) == one
    assert int(local_inference.strip_rows(w, 32, 2**30, batch=4)) == int(
        local_inference.strip_rows(w, 32, 2**30 / 4))


def test_network_input_is_not_rewritten_by_grappler():
  # Inside a graph, `x / 127.5` becomes `x * (1/127.5)`: 111 of the 256 values would differ.
  model = inpaint.Inpainter(None, config_lib.preset("v1", cnum=4))
  fn = tf.function(model.network_input, input_signature=[tf.TensorSpec([None], tf.uint8)])
  values = np.arange(256, dtype=np.uint8)
  expected = values.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
  np.testing.assert_array_equal(fn(values).numpy(), expected)


@pytest.mark.slow
def test_golden_official_checkpoint_export(tmp_path):
  ckpt = require_shared(os.path.join(GOLDEN, "checkpoint"))
  case = require_shared(os.path.join(GOLDEN, "cases", "c00_256x256_center_china"))
  image_path, mask_path = os.path.join(case, "input.png"), os.path.join(case, "mask.png")
  out = tmp_path / "golden_export"
  export = _start(EXPORT_PY, "--checkpoint_dir", ckpt, "--export_dir", out, cwd=tmp_path)
  expected_path = tmp_path / "expected.png"
  cli = _start(TEST_PY, "--image", image_path, "--mask", mask_path, "--output", expected_path,
               "--checkpoint_dir", ckpt, cwd=tmp_path)
  _finish(cli, "test.py")
  _finish(export, "export.py")

  image = _rgb(image_path)
  hole = decode.read_mask(mask_path)
  batch = str(tmp_path / "golden.npz")
  np.savez(batch, image=image[None], mask=(hole[None, ..., None] * 255).astype(np.uint8))
  results = _load_and_call(out, tmp_path, {"golden": batch}, [[image_path, mask_path]])
  expected = _rgb(expected_path)
  inpainted = results["inpainted_golden"][0]
  np.testing.assert_array_equal(inpainted[~hole], image[~hole])
  np.testing.assert_array_equal(inpainted, expected)
  png = cv2.imdecode(results["png_0"], cv2.IMREAD_COLOR)[..., ::-1]
  np.testing.assert_array_equal(png, expected)


def _site(folder, *extra):
  """A folder laid out as ``export.py --format web`` writes it (file contents are stand-ins)."""
  from model.web import site
  (folder / "ort").mkdir(parents=True)
  for name in (*site.PAGE_FILES, "index.html", "NOTICE.txt", site.MODEL_FILE, *extra):
    (folder / name).write_bytes(b"old")
  for name in site.RUNTIME_FILES:
    (folder / "ort" / name).write_bytes(b"old")
  return folder


@pytest.mark.parametrize("fmt", ["onnx", "tflite", "web"])
def test_overwrite_of_a_portable_format_replaces_only_an_export_of_that_format(fmt, tmp_path):
  """An ONNX export over a web export would have wiped the site (it holds a model.onnx): with
  --overwrite, a folder is replaced only if it holds an export of the same format and nothing
  else, as for SavedModels (checked before TensorFlow loads)."""
  import export
  marker = export.MARKERS[fmt]

  def folder(name, *files):
    path = tmp_path / name
    path.mkdir()
    for file in files:
      (path / file).write_bytes(b"old")
    return path

  if fmt == "web":
    sound = _site(tmp_path / "site")
    crowded = [_site(tmp_path / "site2", "photos.html"), _site(tmp_path / "site3")]
    (crowded[1] / "ort" / "mine.js").write_bytes(b"old")
  else:
    sound = folder("sound", marker)
    crowded = [folder("extra", marker, "notes.txt")]
    if fmt == "onnx":  # the reported case: --format onnx over a web export
      crowded.append(_site(tmp_path / "site"))
  export._check_target(str(sound), True, fmt)  # an earlier export of the format: replaced
  for path in crowded:
    before = _tree(path)
    with pytest.raises(export._ExportError, match="holds more than"):
      export._check_target(str(path), True, fmt)
    assert _tree(path) == before
