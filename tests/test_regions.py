"""Work follows the hole's pixels, not its regions' boxes, and not their number: pieces of the
hole for ``crop`` (scaling.crop_pieces), the hole-local boxes (local_plan.hole_boxes) and seam
blending (blending.pieces), ARCHITECTURE.md §7.4, §7.6, §7.7."""
import json
import os
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO
from model import config as config_lib
from model import generator as generator_lib
from model.inference import blending
from model.inference import inpainter as inpaint
from model.inference import local_plan
from model.inference import regions
from model.inference import scaling

SMALL = config_lib.InferenceConfig(strategy="crop", seam_blend=False, crop_size=32, hole_min=8,
                                   hole_max=16)
BLEND = tf.function(blending.blend, autograph=False, input_signature=[
    tf.TensorSpec([None, None, 3], tf.float32), tf.TensorSpec([None, None, 3], tf.float32),
    tf.TensorSpec([None, None], tf.bool)])


@pytest.fixture(scope="module")
def tiny():
  keras.utils.set_random_seed(7)
  cfg = config_lib.preset("v1", cnum=4)
  return generator_lib.build_generator(cfg), cfg


def _line(side, thickness=2):
  hole = np.zeros((side, side), np.uint8)
  cv2.line(hole, (0, 0), (side - 1, side - 1), 1, thickness)
  return hole.astype(bool)


def _frame(side, inset=1, thickness=1):
  hole = np.zeros((side, side), np.uint8)
  cv2.rectangle(hole, (inset, inset), (side - 1 - inset, side - 1 - inset), 1, thickness)
  return hole.astype(bool)


def _grid(side, count, size=4, offset=4):
  """``count`` x ``count`` holes of ``size`` px, one per ``side / count`` block, apart enough
  that each is its own region."""
  hole = np.zeros((side, side), bool)
  step = side // count
  for i in range(count):
    for j in range(count):
      hole[i * step + offset:i * step + offset + size, j * step + offset:j * step + offset + size] = 1
  return hole


def _photo(h, w, seed=0):
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[:h, :w] / max(h, w)
  base = np.stack([128 + 90 * np.sin(7 * x), 128 + 90 * np.cos(5 * y), 128 + 60 * np.sin(9 * (x + y))], -1)
  return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def test_tile_keys_cut_a_long_region_and_group_keeps_the_labels():
  hole = tf.constant(_line(300))
  boxes, labels = regions.region_boxes(hole, 16)
  assert boxes.shape[0] == 1
  same, count = regions.group(labels, tf.cast(labels, tf.int64))
  np.testing.assert_array_equal(same.numpy(), labels.numpy())
  assert int(count) == 1
  pieces, count = regions.group(labels, regions.tile_keys(labels, boxes, tf.constant([4]), 16))
  piece_boxes = regions.tight_boxes(hole, pieces, count, 16).numpy()
  assert int(count) >= 300 // 64
  assert (piece_boxes[:, 2:] - piece_boxes[:, :2]).max() <= 64
  # The pieces cover the region's cells exactly.
  np.testing.assert_array_equal(pieces.numpy() >= 0, labels.numpy() >= 0)


@pytest.mark.parametrize("shape", ["line", "frame"])
def test_crop_work_follows_the_pixels_of_a_thin_hole(tiny, shape):
  """A 2-px diagonal or 1-px frame is one region whose box is the whole photo; its crop pieces and
  their networks stay bounded, and the hole-local boxes too."""
  gen, cfg = tiny
  model = inpaint.Inpainter(gen, cfg, strategy="crop", inference=SMALL)
  areas = []
  for side in (1200, 2400):
    hole = _line(side) if shape == "line" else _frame(side)
    _, _, scales, contexts = model.crop_plan(tf.constant(hole))
    scales, contexts = scales.numpy(), contexts.numpy()
    assert (scales == 1.0).all()
    sides = np.maximum(contexts[:, 2] - contexts[:, 0], contexts[:, 3] - contexts[:, 1])
    assert sides.max() <= (1 + 2 * scaling.CONTEXT) * scaling.PIECE + 2
    areas.append(((contexts[:, 2] - contexts[:, 0]) * (contexts[:, 3] - contexts[:, 1])).sum())
  # The network's pixels grow with the hole's length (twice), not the photo's area (4 times).
  assert areas[1] < 2.5 * areas[0]
  mask = tf.constant(hole, tf.float32)[None, :, :, None]
  local = local_plan.hole_boxes(mask).numpy()
  assert (np.maximum(local[:, 1] - local[:, 0], local[:, 3] - local[:, 2])
          <= local_plan.MAX_PIECE + 2 * local_plan.GRID).all()
  assert bool(local_plan.use_local(gen, mask))


def test_crop_fills_many_small_regions_in_few_network_calls(tiny, monkeypatch):
  """64 small regions: filled in shared crops, a few network calls instead of 64, each crop
  bounded; known pixels stay exact. Counted in eager mode, where the loop runs in Python."""
  gen, cfg = tiny
  model = inpaint.Inpainter(gen, cfg, strategy="crop", inference=SMALL)
  hole = _grid(256, 8)
  assert int(tf.reduce_max(regions.label_cells(tf.constant(hole), 16))) + 1 == 64
  calls = []
  fill = model._scaled_fill

  def counted(image, sub_hole, *args):
    calls.append(tuple(sub_hole.shape))
    return fill(image, sub_hole, *args)

  monkeypatch.setattr(model, "_scaled_fill", counted)
  rgb = _photo(256, 256)
  out = model.fill(tf.constant(rgb), tf.constant(hole), seam_blend=False).numpy()
  assert len(calls) <= 64 // scaling.MERGE_MIN
  assert max(max(c) for c in calls) <= (1 + 2 * scaling.CONTEXT) * (
      scaling.MERGE_TILE + 1) * SMALL.crop_size + 2
  np.testing.assert_array_equal(out[~hole], rgb[~hole])
  # The same decision in the traced graph: the bytes agree.
  monkeypatch.undo()
  graph = model._function(False, False, "auto", None, "crop", seam_blend=False)
  np.testing.assert_array_equal(graph(rgb, hole).numpy(), out)


def test_crop_paths_are_decided_in_one_call(tiny):
  """choose_crop_path: one traced call for every piece, as the graph decides."""
  gen, cfg = tiny
  model = inpaint.Inpainter(gen, cfg, strategy="crop", inference=SMALL)
  hole = _grid(256, 8)
  path = model.choose_crop_path(hole)
  assert path in ("local", "full", "auto")
  flags = model._traced_paths(hole).numpy()
  assert flags.shape[0] == int(tf.shape(model.crop_plan(tf.constant(hole))[0])[0]) < 64


@pytest.mark.parametrize("shape", ["line", "frame", "thick_frame"])
def test_blend_solves_long_thin_regions_in_tiles(shape):
  """Pieces of at most PIECE + 2 halo + 2 px a side, and the same blend as one solve on the
  whole region's box (the cut's influence has decayed within the halo)."""
  side = 900
  hole = {"line": _line(side), "frame": _frame(side),
          "thick_frame": _frame(side, 20, 9)}[shape]
  rng = np.random.default_rng(3)
  known = _photo(side, side).astype(np.float32)
  fill = (known + 30 + rng.normal(0, 4, known.shape)).astype(np.float32)
  labels, _, _, boxes = blending.pieces(tf.constant(hole))
  boxes = boxes.numpy()
  assert len(boxes) > 4
  extent = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
  assert extent.max() <= blending.PIECE + 2 * blending.HALO * 8 + 2
  assert extent.max() < 0.6 * side
  got = BLEND(known, fill, hole).numpy()
  whole = known.copy()
  whole[hole] = fill[hole] + blending.harmonic_correction(known, fill, hole).numpy()[hole]
  assert np.abs(got - whole).max() < 0.05
  np.testing.assert_array_equal(got[~hole], known[~hole])


def test_blend_solves_many_small_regions_together(monkeypatch):
  hole = _grid(256, 8)
  known = _photo(256, 256).astype(np.float32)
  fill = known[::-1].copy()
  labels, _, piece_group, boxes = blending.pieces(tf.constant(hole))
  assert len(boxes.numpy()) <= 64 // blending.MERGE_MIN
  together = blending.blend(known, fill, hole).numpy()
  monkeypatch.setattr(blending, "MERGE_MIN", 10 ** 6)
  assert len(blending.pieces(tf.constant(hole))[3].numpy()) == 64
  apart = blending.blend(known, fill, hole).numpy()
  assert np.abs(together - apart).max() < 0.02


def test_blend_of_ordinary_holes_is_one_solve_per_region():
  """Regions of ordinary sizes are neither cut nor merged: one piece per region, solved on its
  box grown by one pixel."""
  hole = np.zeros((200, 300), bool)
  hole[20:80, 30:120] = True
  hole[150:190, 200:290] = True
  cv2.line(hole.view(np.uint8), (150, 10), (290, 120), 1, 5)
  boxes, labels = regions.region_boxes(tf.constant(hole), 16)
  piece_labels, _, _, solve = blending.pieces(tf.constant(hole))
  np.testing.assert_array_equal(piece_labels.numpy(), labels.numpy())
  grown = boxes.numpy() + [-1, -1, 1, 1]
  np.testing.assert_array_equal(solve.numpy(), np.clip(grown, 0, [200, 300, 200, 300]))


def _peak_growth_gb(shape, side):
  """Peak RSS growth (GB) of a fresh process inpainting ``shape`` at ``side``² with the demo
  model (``crop``, blended), over its peak after warm-up."""
  script = os.path.join(REPO, "bench", "bench_regions.py")
  code = ("import json, runpy, sys; f = runpy.run_path(sys.argv[1])['child']; "
          "print(json.dumps(f(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), 0)))")
  out = subprocess.run([sys.executable, "-c", code, script, REPO,
                        os.path.join(REPO, "checkpoints", "demo"), shape, str(side)],
                       capture_output=True, text=True, check=True, cwd=REPO)
  result = json.loads(out.stdout.strip().splitlines()[-1])
  return result["peak_gb"] - result["baseline_gb"]


@pytest.mark.parametrize("shape", ["line", "frame"])
def test_thin_hole_memory_is_bounded_per_megapixel(shape):
  """The README's bound, 0.25 GB per megapixel above the warmed-up process (plus attention's
  --max_memory_gb), holds for a 2-px diagonal and a 1-px frame whose box is the whole photo."""
  side = 1600
  growth = _peak_growth_gb(shape, side)
  assert growth <= 0.25 * side * side / 1e6, growth
