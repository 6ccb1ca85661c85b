"""ONNX and LiteRT exports (`python export.py --format onnx|tflite`, model/inference/portable.py).

The demo model and the golden official-format checkpoint are exported once each per format by
real `python export.py` runs (module fixture, in parallel with the `test.py --noseam_blend
--strategy original` runs they are compared with). ONNX Runtime (CPU) and the LiteRT
interpreter must give test.py's bytes on the known pixels and within one level on at most
0.1 % of the hole's values, on the golden case (256x256), an odd size (61x83, padded to 64x88
inside the graph) and a bundled example photo (342x512). Kernels the graph is made of are checked against NumPy / the default
TensorFlow ops, eager and traced with unknown sizes.
"""
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import GOLDEN, REPO, require_shared
from support import procs
from layers import contextual_attention
from layers import gen_conv

DEMO = os.path.join(REPO, "checkpoints", "demo")
GOLDEN_CASE = os.path.join(GOLDEN, "cases", "c00_256x256_center_china")
EXAMPLE = os.path.join(REPO, "examples", "sklearn_flower")
CHECKPOINTS = {"demo": DEMO, "official": os.path.join(GOLDEN, "checkpoint")}
FORMATS = {"onnx": "model.onnx", "tflite": "model.tflite"}
MAX_DIFFERING = 1e-3  # share of hole values allowed to differ (by one level at most)


def _finish(proc, what):
  return procs.finish(proc, what, timeout=1500)[0]


def _inputs(folder):
  """Writes the three cases (images/ and masks/ paired by stem); returns {stem: (rgb, hole)}."""
  images, masks = folder / "images", folder / "masks"
  images.mkdir()
  masks.mkdir()
  rgb = np.asarray(Image.open(os.path.join(GOLDEN_CASE, "input.png")).convert("RGB"))
  mask = np.asarray(Image.open(os.path.join(GOLDEN_CASE, "mask.png")).convert("L"))
  photo = np.asarray(Image.open(EXAMPLE + ".png").convert("RGB"))
  photo_mask = np.asarray(Image.open(EXAMPLE + "_mask.png").convert("L"))
  odd_mask = np.zeros((61, 83), np.uint8)
  odd_mask[17:44, 20:57] = 255
  cases = {"golden": (rgb, mask), "odd": (photo[100:161, 200:283], odd_mask),
           "example": (photo, photo_mask)}
  for stem, (pixels, hole) in cases.items():
    Image.fromarray(pixels).save(images / f"{stem}.png")
    Image.fromarray(hole).save(masks / f"{stem}.png")
  return {stem: (pixels, hole > 127) for stem, (pixels, hole) in cases.items()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """{checkpoint: {"cases": {stem: (rgb, hole)}, "test_py": {stem: uint8}, format: path}}."""
  require_shared(GOLDEN_CASE)
  pytest.importorskip("tf2onnx", reason="the onnx extra is not installed")
  root = tmp_path_factory.mktemp("portable")
  cases = _inputs(root)
  jobs = {}
  for name, checkpoint in CHECKPOINTS.items():
    for fmt in FORMATS:
      jobs[name, fmt] = procs.start("export.py", "--format", fmt, "--checkpoint_dir",
                                    checkpoint, "--export_dir", root / f"{name}_{fmt}")
    jobs[name, "test.py"] = procs.start("test.py", "--checkpoint_dir", checkpoint,
                                        "--noseam_blend", "--strategy", "original",
                                        "--precision", "float32",
                                        "--image", root / "images", "--mask", root / "masks",
                                        "--output", root / f"{name}_test_py")
  results = {}
  for (name, what), proc in jobs.items():
    out = _finish(proc, f"{what} of {name}")
    entry = results.setdefault(name, {"cases": cases})
    if what == "test.py":
      entry["test_py"] = {stem: np.asarray(Image.open(root / f"{name}_test_py" / f"{stem}.png"))
                          for stem in cases}
    else:
      path = root / f"{name}_{what}" / FORMATS[what]
      assert str(path) in out and os.listdir(path.parent) == [FORMATS[what]]
      entry[what] = str(path)
  return results


def _onnx_runner(path):
  ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
  session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
  return lambda image, mask: session.run(["inpainted"], {"image": image, "mask": mask})[0]


def _litert_runner(path):
  litert = pytest.importorskip("ai_edge_litert.interpreter",
                               reason="ai-edge-litert is not installed")
  runner = litert.Interpreter(model_path=path).get_signature_runner("serving_default")
  return lambda image, mask: runner(image=image, mask=mask)["inpainted"]


RUNNERS = {"onnx": _onnx_runner, "tflite": _litert_runner}


def assert_matches_test_py(ours, reference, hole, what):
  """Known pixels equal; hole values within one level on at most MAX_DIFFERING of them."""
  assert ours.shape == reference.shape and ours.dtype == np.uint8, what
  np.testing.assert_array_equal(ours[~hole], reference[~hole], err_msg=f"{what}: known pixels")
  diff = np.abs(ours[hole].astype(int) - reference[hole].astype(int))
  assert diff.max() <= 1, f"{what}: a hole value differs by {diff.max()}"
  assert (diff > 0).mean() <= MAX_DIFFERING, f"{what}: {(diff > 0).mean():.2%} differ"


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("checkpoint", sorted(CHECKPOINTS))
def test_runtime_matches_test_py(exported, checkpoint, fmt):
  entry = exported[checkpoint]
  run = RUNNERS[fmt](entry[fmt])
  for stem, (rgb, hole) in entry["cases"].items():
    mask = np.where(hole, 255, 0).astype(np.uint8)
    ours = run(rgb[None], mask[None, :, :, None])
    assert ours.shape == (1,) + rgb.shape
    assert_matches_test_py(ours[0], entry["test_py"][stem], hole, f"{checkpoint} {fmt} {stem}")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_no_hole_returns_the_image_and_masks_threshold_at_127(exported, fmt):
  run = RUNNERS[fmt](exported["demo"][fmt])
  rgb = np.random.default_rng(0).integers(0, 256, (1, 21, 34, 3), dtype=np.uint8)
  np.testing.assert_array_equal(run(rgb, np.full((1, 21, 34, 1), 127, np.uint8)), rgb)
  mask = np.zeros((1, 21, 34, 1), np.uint8)
  mask[0, 5:12, 9:20] = 128
  out = run(rgb, mask)
  np.testing.assert_array_equal(out[mask[..., 0] == 0], rgb[mask[..., 0] == 0])
  assert (out[mask[..., 0] > 0] != rgb[mask[..., 0] > 0]).any()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_tiny_and_one_pixel_sides_match_the_inpainter(exported, fmt):
  """Edge padding for a 1-pixel side, reflection beyond the size, a size already on the grid."""
  from model.inference import inpainter  # pylint: disable=import-outside-toplevel
  engine = inpainter.Inpainter.from_checkpoint(DEMO, seam_blend=False,
                                                strategy="original", precision="float32")
  run = RUNNERS[fmt](exported["demo"][fmt])
  rng = np.random.default_rng(3)
  for h, w in [(1, 20), (3, 1), (8, 8), (9, 17)]:
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    hole = rng.random((h, w)) < 0.4
    ours = run(rgb[None], np.where(hole, 255, 0).astype(np.uint8)[None, :, :, None])[0]
    assert_matches_test_py(ours, engine.inpaint(rgb, hole)[0], hole, f"{fmt} {h}x{w}")


@pytest.mark.slow
def test_onnx_contract(exported):
  onnx = pytest.importorskip("onnx", reason="onnx is not installed")
  model = onnx.load(exported["official"]["onnx"])
  uint8 = onnx.TensorProto.UINT8

  def signature(values):
    return {v.name: (v.type.tensor_type.elem_type,
                     [d.dim_value if d.HasField("dim_value") else None
                      for d in v.type.tensor_type.shape.dim]) for v in values}

  assert signature(model.graph.input) == {"image": (uint8, [1, None, None, 3]),
                                          "mask": (uint8, [1, None, None, 1])}
  assert signature(model.graph.output) == {"inpainted": (uint8, [1, None, None, 3])}
  ops = {node.op_type for node in model.graph.node}
  assert not ops & {"Loop", "If", "Scan"}, ops  # no control flow in the graph


@pytest.mark.slow
def test_tflite_contract(exported):
  litert = pytest.importorskip("ai_edge_litert.interpreter",
                               reason="ai-edge-litert is not installed")
  interpreter = litert.Interpreter(model_path=exported["official"]["tflite"])
  assert interpreter.get_signature_list() == {
      "serving_default": {"inputs": ["image", "mask"], "outputs": ["inpainted"]}}
  runner = interpreter.get_signature_runner("serving_default")
  details = {name: (d["dtype"], [int(n) for n in d["shape_signature"]])
             for name, d in runner.get_input_details().items()}
  assert details == {"image": (np.uint8, [1, -1, -1, 3]), "mask": (np.uint8, [1, -1, -1, 1])}


@pytest.mark.slow
def test_export_refuses_to_replace_another_format(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  (out / "saved_model.pb").write_bytes(b"")
  proc = procs.run("export.py", "--format", "onnx", "--export_dir", out, "--overwrite",
                   timeout=300)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 1 and len(lines) == 1, proc.stderr
  assert lines[0] == f"error: {out} is not an onnx export directory (no model.onnx); " \
                     "refusing to replace it"
  assert sorted(os.listdir(out)) == ["saved_model.pb"]


def _numpy_patches(x, k):
  b, h, w, c = x.shape
  r = k // 2
  padded = np.pad(x, [(0, 0), (r, r), (r, r), (0, 0)])
  out = np.zeros((b, h * w, k * k * c), x.dtype)
  for y in range(h):
    for xx in range(w):
      out[:, y * w + xx] = padded[:, y:y + k, xx:xx + k].reshape(b, -1)
  return out


def test_patch_rows_match_numpy_and_extract_patches():
  x = np.random.default_rng(1).normal(size=(2, 5, 7, 3)).astype(np.float32)
  want = _numpy_patches(x, 3)
  traced = tf.function(lambda t: contextual_attention.patch_rows(t, 3),
                       input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  for fn in (lambda t: contextual_attention.patch_rows(t, 3), traced):
    np.testing.assert_array_equal(fn(x).numpy(), want)
  patches = tf.image.extract_patches(x, [1, 3, 3, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME")
  np.testing.assert_array_equal(np.reshape(patches, want.shape), want)


@pytest.mark.parametrize("dilation", [2, 4, 16])
def test_direct_dilation_equals_space_to_batch(dilation):
  layer = gen_conv.GenConv(5, 3, 1, dilation, name="atrous")
  layer.build((None, None, None, 4))
  x = np.random.default_rng(dilation).normal(size=(1, 13, 18, 4)).astype(np.float32)
  spec = [tf.TensorSpec([1, None, None, 4], tf.float32)]
  want = layer(x).numpy()

  def direct(t):
    with gen_conv.direct_dilation():
      return layer(t)

  traced = tf.function(direct, input_signature=spec)
  ops = {op.type for op in traced.get_concrete_function().graph.get_operations()}
  assert "SpaceToBatchND" not in ops and "Conv2D" in ops
  assert "SpaceToBatchND" in {op.type for op in tf.function(layer, input_signature=spec)
                              .get_concrete_function().graph.get_operations()}
  for got in (direct(x), traced(x)):
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
