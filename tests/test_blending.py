"""Seam blending (model/inference/blending.py) against a dense NumPy solve of its equations."""
import numpy as np
import pytest
import tensorflow as tf

from model import config as config_lib
from model import generator as generator_lib
from model.inference import blending
from model.inference import inpainter as inpaint


def dense_correction(known, fill, hole):
  """h on the hole: for each hole pixel p, sum over in-image neighbours q of (h_p - h_q) = 0
  with h_q = x_q - y_p for known q (docs/ARCHITECTURE.md §7.6), solved directly."""
  height, width, channels = known.shape
  points = np.argwhere(hole)
  index = -np.ones((height, width), int)
  index[hole] = np.arange(len(points))
  a = np.zeros((len(points), len(points)))
  b = np.zeros((len(points), channels))
  for k, (i, j) in enumerate(points):
    for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
      y, x = i + di, j + dj
      if not (0 <= y < height and 0 <= x < width):
        continue
      a[k, k] += 1
      if hole[y, x]:
        a[k, index[y, x]] -= 1
      else:
        b[k] += known[y, x] - fill[i, j]
  h = np.zeros_like(known, dtype=np.float64)
  h[hole] = np.linalg.solve(a, b)
  return h


def _holes(height, width):
  boxes = np.zeros((height, width), bool)
  boxes[5:25, 8:30] = True                # interior box
  boxes[0:10, 34:width] = True            # touching the top and right borders
  stroke = np.zeros((height, width), bool)
  for t in range(width - 4):              # a thin diagonal stroke, 3 px wide
    y = int(4 + t * (height - 10) / width)
    stroke[y:y + 3, t:t + 3] = True
  return {"boxes": boxes, "stroke": stroke}


@pytest.mark.parametrize("kind", ["boxes", "stroke"])
@pytest.mark.parametrize("graph", [False, True])
def test_correction_matches_dense_solve(kind, graph):
  rng = np.random.default_rng(7)
  height, width = 36, 44
  hole = _holes(height, width)[kind]
  known = (rng.uniform(0, 255, (height, width, 3)) * 0.3
           + np.linspace(0, 150, width)[None, :, None]).astype(np.float32)
  fill = rng.uniform(0, 255, (height, width, 3)).astype(np.float32)
  expected = dense_correction(known, fill, hole)
  fn = tf.function(blending.harmonic_correction) if graph else blending.harmonic_correction
  got = fn(tf.constant(known), tf.constant(fill), tf.constant(hole)).numpy()
  assert np.abs(expected).max() > 20            # a real correction, not a no-op
  np.testing.assert_allclose(got, expected, atol=0.25)  # CG stops at 1e-4 of the right-hand side
  assert not got[~hole].any()


@pytest.mark.parametrize("graph", [False, True])
def test_blend_keeps_known_pixels_and_solves_only_the_hole_box(graph):
  rng = np.random.default_rng(1)
  known = rng.uniform(0, 255, (50, 60, 3)).astype(np.float32)
  fill = rng.uniform(0, 255, (50, 60, 3)).astype(np.float32)
  hole = np.zeros((50, 60), bool)
  hole[20:30, 31:45] = True
  fn = tf.function(blending.blend) if graph else blending.blend
  out = fn(tf.constant(known), tf.constant(fill), tf.constant(hole)).numpy()
  np.testing.assert_array_equal(out[~hole], known[~hole])
  box = (slice(19, 31), slice(30, 46))
  expected = fill[box] + dense_correction(known[box], fill[box], hole[box])
  np.testing.assert_allclose(out[box][hole[box]], expected[hole[box]], atol=0.25)  # CG stops at 1e-4 of the right-hand side


def test_constant_offset_is_removed_and_empty_hole_is_identity():
  known = np.full((40, 40, 3), 90.0, np.float32)
  hole = np.zeros((40, 40), bool)
  hole[10:30, 5:35] = True
  out = blending.blend(tf.constant(known), tf.constant(known + 37.0), tf.constant(hole))
  np.testing.assert_allclose(out.numpy(), known, atol=1e-2)   # a colour shift leaves no seam
  none = blending.blend(tf.constant(known), tf.constant(known + 37.0),
                        tf.constant(np.zeros((40, 40), bool)))
  np.testing.assert_array_equal(none.numpy(), known)


def test_inpainter_seam_blend_changes_only_hole_pixels_and_not_the_official_path():
  tf.keras.utils.set_random_seed(3)
  cfg = config_lib.preset("v1", cnum=4)
  gen = generator_lib.build_generator(cfg)
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, [45, 67, 3], dtype=np.uint8)
  hole = np.zeros([45, 67], bool)
  hole[10:30, 20:50] = True
  blended = inpaint.Inpainter(gen, cfg).inpaint(rgb, hole)[0]
  raw_model = inpaint.Inpainter(gen, cfg, seam_blend=False)
  raw = raw_model.inpaint(rgb, hole)[0]
  np.testing.assert_array_equal(blended[~hole], rgb[~hole])
  assert (blended[hole] != raw[hole]).mean() > 0.5
  # The blended fill is the network's uint8 fill plus the harmonic correction, rounded.
  expected = blending.blend(tf.constant(rgb, tf.float32), tf.constant(raw, tf.float32),
                            tf.constant(hole)).numpy()
  np.testing.assert_array_equal(blended, np.clip(np.round(expected), 0, 255).astype(np.uint8))
  official = inpaint.Inpainter(gen, cfg).inpaint(rgb, hole, official=True)[0]
  np.testing.assert_array_equal(official, raw_model.inpaint(rgb, hole, official=True)[0])
