"""Parity with the official v1 release on the golden fixtures (tolerances of their README)."""
import os
import re

import cv2
import numpy as np
import pytest
import tensorflow as tf

from conftest import GOLDEN, require_shared
from support import procs
from model import flow_viz
from model import weights as checkpoints
from model.inference import inpainter as inpaint

pytestmark = pytest.mark.slow  # the official checkpoint at 256x256, in process and through test.py


def _cases():
  root = os.path.join(GOLDEN, "cases")
  if not os.path.isdir(root):
    return ["missing"]
  return sorted(os.listdir(root))


@pytest.fixture(scope="module")
def inpainter():
  require_shared(GOLDEN)
  return inpaint.Inpainter.from_checkpoint(os.path.join(GOLDEN, "checkpoint"))


def _load_case(name):
  case = require_shared(os.path.join(GOLDEN, "cases", name))
  bgr = cv2.imread(os.path.join(case, "input.png"), cv2.IMREAD_COLOR)
  mask = cv2.imread(os.path.join(case, "mask.png"), cv2.IMREAD_COLOR)
  h, w = bgr.shape[0] // 8 * 8, bgr.shape[1] // 8 * 8
  return case, bgr[:h, :w], mask[:h, :w, 0] > 127.5


@pytest.mark.parametrize("name", _cases())
def test_generator_tensors_match_official(inpainter, name):
  case, bgr, hole = _load_case(name)
  m = hole[None, :, :, None].astype(np.float32)
  x = bgr[None].astype(np.float32) / 127.5 - 1.0
  x_in = x * (1.0 - m)
  dense_x2 = None
  for tile in (None, 5):  # dense and tiled attention give the same tensors
    x1, x2, offsets = inpainter.generator((x_in, m), attention_tile=tile)
    x1, x2 = x1.numpy()[0], x2.numpy()[0]
    if dense_x2 is None:
      dense_x2 = x2
    assert np.abs(x2 - dense_x2).max() <= 1e-5  # memory-bounded path == dense path
    complete = x2 * m[0] + x_in[0] * (1.0 - m[0])
    ref = lambda f: np.load(os.path.join(case, f))  # noqa: E731
    assert np.abs(x1 - ref("coarse_x1_bgr_m1_1.npy")).max() <= 1e-4
    assert np.abs(x2 - ref("stage2_x2_bgr_m1_1.npy")).max() <= 1e-4
    assert np.abs(complete - ref("complete_bgr_m1_1.npy")).max() <= 1e-4
    out_rgb = ((complete + 1.0) * 127.5)[..., ::-1]  # the release's float output
    assert np.abs(out_rgb - ref("output_float_rgb_0_255.npy")).max() <= 2e-2
    flow = flow_viz.flow_to_image(offsets, upsample=2).numpy()[0]
    same = np.all(np.abs(flow - ref("flow_m1_1.npy")) < 1e-6, axis=-1).mean()
    assert same >= 0.99


@pytest.mark.parametrize("name", _cases())
def test_inpainter_matches_official_output(inpainter, name):
  case, bgr, hole = _load_case(name)
  rgb = bgr[..., ::-1]
  official_png = cv2.imread(os.path.join(case, "output.png"), cv2.IMREAD_COLOR)[..., ::-1]
  result, _ = inpainter.inpaint(rgb, hole, official=True)
  diff = np.abs(result.astype(int) - official_png.astype(int))
  assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3
  # Our convention without seam blending: identical hole pixels, known pixels copied.
  raw = inpaint.Inpainter(inpainter.generator, inpainter.config, seam_blend=False)
  ours, _ = raw.inpaint(rgb, hole)
  assert np.array_equal(ours[~hole], rgb[~hole])
  hole_diff = np.abs(ours[hole].astype(int) - official_png[hole].astype(int))
  assert hole_diff.max() <= 1 and (hole_diff > 0).mean() <= 1e-3
  # An official checkpoint's default is the release's computation (ARCHITECTURE.md §7.7): not
  # blended.
  assert inpainter.pipeline() == {"strategy": "original", "seam_blend": False}
  np.testing.assert_array_equal(inpainter.inpaint(rgb, hole)[0], ours)
  # Asked for, seam blending keeps the known pixels and moves hole pixels.
  blend = inpaint.Inpainter(inpainter.generator, inpainter.config, seam_blend=True)
  blended, _ = blend.inpaint(rgb, hole)
  assert np.array_equal(blended[~hole], rgb[~hole])
  assert (blended[hole] != ours[hole]).mean() > 0.3


def test_cli_reproduces_official_png(tmp_path):
  """Also the quiet-output contract: the progress line and ``wrote ...``, nothing else
  (tests/test_cli_conventions.py runs this file with oneDNN forced on and off)."""
  case = require_shared(os.path.join(GOLDEN, "cases", _cases()[0]))
  out = tmp_path / "out.png"
  proc = procs.run("test.py", "--image", os.path.join(case, "input.png"),
                   "--mask", os.path.join(case, "mask.png"), "--output", out, "--official_compat",
                   "--checkpoint_dir", os.path.join(GOLDEN, "checkpoint"), timeout=600)
  stdout, stderr = proc.stdout, proc.stderr
  assert proc.returncode == 0, stderr
  assert stdout == f"wrote {out}\n", stdout
  assert re.fullmatch(r"\[1/1\] input\.png: \d+x\d+, hole [\d.]+ % of the image\n",
                      stderr), stderr
  got = cv2.imread(str(out), cv2.IMREAD_COLOR).astype(int)
  ref = cv2.imread(os.path.join(case, "output.png"), cv2.IMREAD_COLOR).astype(int)
  ref = ref[:got.shape[0], :got.shape[1]]
  diff = np.abs(got - ref)
  assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3


@pytest.mark.parametrize("name", _cases())
def test_cli_default_is_the_release_for_official_checkpoints(tmp_path, name):
  """With an official checkpoint, test.py's default (no flags) is the release's
  computation: its hole pixels within the output.png tolerance, known pixels copied."""
  case, bgr, hole = _load_case(name)
  out = tmp_path / "out.png"
  proc = procs.run("test.py", "--image", os.path.join(case, "input.png"),
                   "--mask", os.path.join(case, "mask.png"), "--output", out,
                   "--checkpoint_dir", os.path.join(GOLDEN, "checkpoint"), timeout=600)
  assert proc.returncode == 0, proc.stderr
  got = cv2.imread(str(out), cv2.IMREAD_COLOR).astype(int)
  source = cv2.imread(os.path.join(case, "input.png"), cv2.IMREAD_COLOR).astype(int)
  ref = cv2.imread(os.path.join(case, "output.png"), cv2.IMREAD_COLOR).astype(int)
  h, w = ref.shape[:2]
  np.testing.assert_array_equal(got[:h, :w][~hole], source[:h, :w][~hole])
  diff = np.abs(got[:h, :w][hole] - ref[hole])
  assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3
