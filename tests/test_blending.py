"""Seam blending (model/inference/blending.py) against a dense NumPy solve of its equations,
and hole regions (model/inference/regions.py) against a flood fill."""
import numpy as np
import pytest
import tensorflow as tf

from model import config as config_lib
from model import generator as generator_lib
from model.inference import blending
from model.inference import inpainter as inpaint
from model.inference import regions

IMAGE = tf.TensorSpec([None, None, 3], tf.float32)
MASK = tf.TensorSpec([None, None], tf.bool)
# Traced once for every test (dynamic shapes, as in Inpainter.fill).
BLEND_GRAPH = tf.function(blending.blend, input_signature=[IMAGE, IMAGE, MASK], autograph=False)


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
  np.testing.assert_allclose(got, expected, atol=0.02)  # CG stops at 1e-5 of the right-hand side
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
  np.testing.assert_allclose(out[box][hole[box]], expected[hole[box]], atol=0.02)


def test_constant_offset_is_removed_and_empty_hole_is_identity():
  known = np.full((40, 40, 3), 90.0, np.float32)
  hole = np.zeros((40, 40), bool)
  hole[10:30, 5:35] = True
  out = blending.blend(tf.constant(known), tf.constant(known + 37.0), tf.constant(hole))
  np.testing.assert_allclose(out.numpy(), known, atol=1e-2)   # a colour shift leaves no seam
  none = blending.blend(tf.constant(known), tf.constant(known + 37.0),
                        tf.constant(np.zeros((40, 40), bool)))
  np.testing.assert_array_equal(none.numpy(), known)


@pytest.mark.slow
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


def _photo(rng, height, width):
  known = (rng.uniform(0, 255, (height, width, 3)) * 0.3
           + np.linspace(0, 150, width)[None, :, None]).astype(np.float32)
  fill = rng.uniform(0, 255, (height, width, 3)).astype(np.float32)
  return known, fill


def _more_holes(height, width):
  """Hole kinds beyond _holes: border, separate holes, 1-px holes, whole image minus a dot."""
  holes = dict(_holes(height, width))
  border = np.ones((height, width), bool)
  border[3:-4, 5:-2] = False                  # a frame around the image: touches all 4 edges
  holes["border"] = border
  pixels = np.zeros((height, width), bool)
  pixels[0, 0] = pixels[7, 9] = pixels[7, 11] = pixels[-1, -1] = pixels[20, 20] = True
  pixels[21, 21] = True                       # diagonal neighbours: two separate unknowns
  holes["pixels"] = pixels
  nearly_all = np.ones((height, width), bool)
  nearly_all[17, 22] = False                  # one known pixel carries the whole solution
  holes["nearly_all"] = nearly_all
  return holes


def _several(height=80, width=100):
  """Four holes in separate regions (16-px cells), three touching an image edge."""
  several = np.zeros((height, width), bool)
  several[2:9, 2:12] = True
  several[40:60, 0:6] = True                  # the left edge
  several[30:38, 85:100] = True               # the right edge
  several[72:80, 50:56] = True                # the bottom edge
  return several


def dense_blend(known, fill, hole):
  return np.where(hole[..., None], fill + dense_correction(known, fill, hole), known)


@pytest.mark.parametrize("kind", ["boxes", "stroke", "border", "several", "pixels",
                                  "nearly_all"])
@pytest.mark.parametrize("graph", [False, True])
def test_blend_matches_dense_solve_on_every_hole_kind(kind, graph):
  rng = np.random.default_rng(11)
  hole = _several() if kind == "several" else _more_holes(36, 44)[kind]
  height, width = hole.shape
  known, fill = _photo(rng, height, width)
  expected = dense_blend(known, fill, hole)
  fn = BLEND_GRAPH if graph else blending.blend
  got = fn(tf.constant(known), tf.constant(fill), tf.constant(hole)).numpy()
  np.testing.assert_array_equal(got[~hole], known[~hole])
  # CG stops at 1e-5 of the right-hand side: far below a level.
  np.testing.assert_allclose(got[hole], expected[hole], atol=0.02)
  assert np.abs(expected - fill)[hole].max() > 20      # a real correction, not a no-op


def test_blend_is_deterministic_in_eager_and_graph():
  rng = np.random.default_rng(5)
  known, fill = _photo(rng, 70, 90)
  hole = np.zeros((70, 90), bool)
  hole[10:50, 20:75] = True
  hole[60:, :8] = True
  args = tf.constant(known), tf.constant(fill), tf.constant(hole)
  runs = [BLEND_GRAPH(*args).numpy() for _ in range(2)] + [blending.blend(*args).numpy()]
  for run in runs[1:]:
    np.testing.assert_array_equal(run, runs[0])


def test_far_apart_holes_are_solved_on_their_own_boxes():
  # Two 8x8 holes in opposite corners: the joint box would be the whole image.
  side = 2000
  hole = np.zeros((side, side), bool)
  hole[3:11, 5:13] = True
  hole[side - 12:side - 4, side - 9:side - 1] = True
  boxes = regions.region_boxes(tf.constant(hole))[0].numpy()
  np.testing.assert_array_equal(boxes, [[3, 5, 11, 13], [side - 12, side - 9, side - 4, side - 1]])
  rng = np.random.default_rng(2)
  known = rng.uniform(0, 255, (side, side, 3)).astype(np.float32)
  fill = rng.uniform(0, 255, (side, side, 3)).astype(np.float32)
  got = BLEND_GRAPH(tf.constant(known), tf.constant(fill), tf.constant(hole)).numpy()
  for top, left, bottom, right in boxes:
    box = (slice(top - 1, bottom + 1), slice(left - 1, min(right + 1, side)))
    expected = dense_blend(known[box], fill[box], hole[box])
    np.testing.assert_allclose(got[box], expected, atol=0.02)
  np.testing.assert_array_equal(got[~hole], known[~hole])


def test_solver_steps_stay_few_as_the_box_grows():
  # Multigrid-preconditioned CG: the step count grows slowly (plain CG's grows with the side).
  fn = tf.function(blending.correction_and_steps, input_signature=[IMAGE, IMAGE, MASK],
                   autograph=False)
  rng = np.random.default_rng(3)
  steps = []
  for side in (32, 128):
    known, fill = _photo(rng, side + 2, side + 2)
    hole = np.zeros((side + 2, side + 2), bool)
    hole[1:-1, 1:-1] = True
    steps.append(int(fn(tf.constant(known), tf.constant(fill), tf.constant(hole))[1]))
  assert steps[0] <= steps[1] <= 22, steps


def flood_fill_cells(hole, cell):
  """Reference for regions.label_cells: occupied cells, 4-connected, numbered by first cell."""
  hc, wc = -(-hole.shape[0] // cell), -(-hole.shape[1] // cell)
  occupied = np.zeros((hc, wc), bool)
  for i, j in np.argwhere(hole):
    occupied[i // cell, j // cell] = True
  labels = -np.ones((hc, wc), int)
  count = 0
  for i in range(hc):
    for j in range(wc):
      if occupied[i, j] and labels[i, j] < 0:
        stack = [(i, j)]
        labels[i, j] = count
        while stack:
          y, x = stack.pop()
          for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
            if 0 <= ny < hc and 0 <= nx < wc and occupied[ny, nx] and labels[ny, nx] < 0:
              labels[ny, nx] = count
              stack.append((ny, nx))
        count += 1
  boxes = []
  for k in range(count):
    points = np.argwhere(hole & np.kron(labels == k, np.ones((cell, cell), bool))[
        :hole.shape[0], :hole.shape[1]])
    boxes.append([*points.min(0), *(points.max(0) + 1)])
  return labels, np.array(boxes, int).reshape(-1, 4)


def _spiral(size):
  """A one-cell-wide spiral: a region whose cells are far apart along it."""
  grid = np.zeros((size, size), bool)
  top, left, bottom, right = 0, 0, size - 1, size - 1
  while top <= bottom and left <= right:
    grid[top, left:right + 1] = True
    grid[top:bottom + 1, right] = True
    if bottom - top >= 2:
      grid[bottom, left:right + 1] = True
    if right - left >= 2:
      grid[top + 2:bottom + 1, left] = True
    top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
    if top <= bottom:
      grid[top, left - 2:left] = True    # joins the next turn
  return grid


@pytest.mark.parametrize("graph", [False, True])
def test_region_labels_and_boxes_match_a_flood_fill(graph):
  rng = np.random.default_rng(4)
  spiral = np.kron(_spiral(11), np.ones((4, 4), bool))
  cases = [np.zeros((30, 50), bool), rng.uniform(size=(45, 61)) < 0.003,
           rng.uniform(size=(40, 40)) < 0.02, spiral, _several(), _several()[:, ::-1]]
  cases += [_more_holes(36, 44)[kind] for kind in ("boxes", "stroke", "pixels", "border")]
  assert len(flood_fill_cells(spiral, 4)[1]) == 1            # one long winding region
  assert len(flood_fill_cells(_several(), 16)[1]) == 4

  def run(hole):
    return regions.region_boxes(hole, 4)

  fn = tf.function(run, input_signature=[MASK], autograph=False) if graph else run
  for hole in cases:
    expected_labels, expected_boxes = flood_fill_cells(hole, 4)
    boxes, labels = fn(tf.constant(hole))
    np.testing.assert_array_equal(labels.numpy(), expected_labels)
    np.testing.assert_array_equal(boxes.numpy(), expected_boxes)
    assert boxes.dtype == tf.int32 and labels.dtype == tf.int32
  np.testing.assert_array_equal(regions.label_cells(tf.constant(_several())).numpy(),
                                flood_fill_cells(_several(), regions.CELL)[0])


def test_whole_image_hole_and_one_pixel_image_keep_the_fill():
  # No known pixel: no seam to close, the fill is kept (the equations have no data).
  rng = np.random.default_rng(8)
  for shape in ((9, 13, 3), (1, 1, 3)):
    known, fill = rng.uniform(0, 255, shape), rng.uniform(0, 255, shape)
    out = blending.blend(tf.constant(known, tf.float32), tf.constant(fill, tf.float32),
                         tf.ones(shape[:2], tf.bool))
    np.testing.assert_array_equal(out.numpy(), fill.astype(np.float32))


def _dense_operator(hole):
  """The finest grid's matrix: rows of the hole equations, identity-free zero rows elsewhere
  (known pixels of the box are not unknowns)."""
  height, width = hole.shape
  n = height * width
  a = np.zeros((n, n))
  for i, j in np.argwhere(hole):
    k = i * width + j
    for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
      y, x = i + di, j + dj
      if 0 <= y < height and 0 <= x < width:
        a[k, k] += 1
        if hole[y, x]:
          a[k, y * width + x] -= 1
  return a


def _aggregation(height, width):
  """P: each pixel of a height x width grid to its 2x2 cell of the next coarser grid."""
  ch, cw = -(-height // 2), -(-width // 2)
  p = np.zeros((height * width, ch * cw))
  for i in range(height):
    for j in range(width):
      p[i * width + j, (i // 2) * cw + j // 2] = 1
  return p, (ch, cw)


def _stencil_matrix(d, right, down):
  """The matrix of a 5-point grid given its diagonal and right/down weights [H, W]."""
  height, width = d.shape
  a = np.diag(d.ravel()).astype(np.float64)
  for i in range(height):
    for j in range(width):
      k = i * width + j
      if j + 1 < width:
        a[k, k + 1] = a[k + 1, k] = -right[i, j]
      if i + 1 < height:
        a[k, k + width] = a[k + width, k] = -down[i, j]
  return a


def _finest_grid(hole):
  """Level 0 of the V-cycle for a bool hole [H, W]: ``(d, right, down, inside)`` [1, H, W, 1]."""
  inside = hole.astype(np.float32)[None, :, :, None]
  count = blending._neighbour_sum(tf.ones_like(tf.constant(inside))).numpy() * inside
  right, down = (w.numpy() for w in blending._hole_weights(tf.constant(inside)))
  return count, right, down, inside


@pytest.mark.parametrize("shape", [(37, 45), (33, 16), (1, 70)])
def test_coarse_grids_are_galerkin_operators(shape):
  # Every grid of the V-cycle is P^T A P / 4 of the one above (NumPy reference), odd sizes too.
  rng = np.random.default_rng(9)
  hole = rng.uniform(size=shape) < 0.7
  hole[0, 0] = False
  count, right, down, inside = _finest_grid(hole)
  grids = blending._Hierarchy(tf.constant(count), tf.constant(right), tf.constant(down),
                              tf.constant(inside))
  a = _dense_operator(hole)
  size = shape
  levels = int(grids.levels)
  assert levels == {45: 3, 33: 3, 70: 4}[max(shape)]
  for level in range(levels):
    d, r, _, dn, _ = (g.numpy()[0, :, :, 0] for g in grids.grid(level))
    assert d.shape == size
    np.testing.assert_allclose(_stencil_matrix(d, r, dn), a, atol=1e-6)
    p, size = _aggregation(*size)
    a = p.T @ a @ p / 4
  assert max(size) <= blending.COARSEST


def test_levels_halve_to_the_coarsest_grid():
  sides = np.array([1, 2, 15, 16, 17, 31, 32, 33, 64, 65, 255, 256, 257, 511, 512, 513, 1024,
                    2047, 2048, 2049, 4097])
  got = [int(blending._levels(tf.constant(int(n)), tf.constant(1))) for n in sides]
  expected = []
  for n in sides:
    levels = 1
    while n > blending.COARSEST or levels < 2:
      n, levels = -(-n // 2), levels + 1
    expected.append(levels)
  assert got == expected


@pytest.mark.parametrize("graph", [False, True])
def test_v_cycle_is_a_symmetric_positive_definite_preconditioner(graph):
  # CG needs a symmetric positive definite preconditioner: u.V(v) = v.V(u) and v.V(v) > 0.
  rng = np.random.default_rng(12)
  hole = _more_holes(36, 44)["stroke"] | _more_holes(36, 44)["boxes"]
  count, right, down, inside = _finest_grid(hole)

  def cycle(u):
    return blending._Hierarchy(tf.constant(count), tf.constant(right), tf.constant(down),
                               tf.constant(inside)).v_cycle(u)

  fn = tf.function(cycle, autograph=False) if graph else cycle
  u = (rng.normal(size=(3, 36, 44, 1)) * inside).astype(np.float32)
  v = (rng.normal(size=(3, 36, 44, 1)) * inside).astype(np.float32)
  vu, vv = fn(tf.constant(u)).numpy(), fn(tf.constant(v)).numpy()
  for c in range(3):
    np.testing.assert_allclose(np.sum(u[c] * vv[c]), np.sum(v[c] * vu[c]), rtol=1e-4)
    assert np.sum(v[c] * vv[c]) > 0 and np.sum(u[c] * vu[c]) > 0
  assert not vu[:, ~hole].any()       # no value off the hole


def test_traced_blend_matches_blend_and_compiles_in_the_background():
  rng = np.random.default_rng(13)
  known = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
  fill = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
  hole = np.zeros((40, 52), bool)
  hole[6:30, 10:41] = True
  traced = blending.TracedBlend()
  traced.prepare()
  traced.prepare()                     # once: the same thread
  thread = traced._thread
  expected = blending.blend_uint8(tf.constant(known), tf.constant(fill), tf.constant(hole))
  got = traced(known, fill, hole)
  assert traced._thread is thread and not thread.is_alive()
  np.testing.assert_array_equal(got.numpy(), expected.numpy())
  assert (got.numpy()[hole] != fill[hole]).mean() > 0.5
  np.testing.assert_array_equal(got.numpy()[~hole], known[~hole])


def test_small_boxes_take_few_steps():
  # A box of at most 2 COARSEST cells a side has one coarse grid, solved exactly.
  rng = np.random.default_rng(14)
  known, fill = _photo(rng, 30, 27)
  hole = np.ones((30, 27), bool)
  hole[0, :] = hole[:, 0] = False
  hole[7, 5] = False
  h, steps = blending.correction_and_steps(tf.constant(known), tf.constant(fill),
                                           tf.constant(hole))
  assert int(steps) <= 8
  np.testing.assert_allclose(h.numpy(), dense_correction(known, fill, hole), atol=0.02)


@pytest.mark.parametrize("graph", [False, True])
def test_finest_operator_is_the_level_0_grid(graph):
  # The neighbour-sum form of level 0 equals its 5-point weights on vectors zero off the hole.
  rng = np.random.default_rng(15)
  hole = _more_holes(36, 44)["stroke"] | _more_holes(36, 44)["border"]
  count, right, down, inside = _finest_grid(hole)
  x = (rng.normal(size=(3, 36, 44, 1)) * inside).astype(np.float32)

  def both(x):
    grids = blending._Hierarchy(*(tf.constant(a) for a in (count, right, down, inside)))
    return grids.finest(x), grids.apply(0, x)

  fn = tf.function(both, autograph=False) if graph else both
  finest, general = fn(tf.constant(x))
  np.testing.assert_allclose(finest.numpy(), general.numpy(), atol=1e-5)
  expected = (_dense_operator(hole) @ x[..., 0].reshape(3, -1).T).T.reshape(3, 36, 44)
  np.testing.assert_allclose(finest.numpy()[..., 0], expected, atol=1e-4)
