"""Tests for model/training/masks.py (ARCHITECTURE.md §6.1: bbox holes, brush strokes)."""
import numpy as np
import pytest
import tensorflow as tf

from model.training import masks


def _seed(a, b=7):
  return tf.constant([a, b], tf.int64)


def _boxes_and_masks(batch=32, seed=0, delta=32):
  bboxes = masks.random_bbox(batch, 256, 256, 128, 128, seed=_seed(seed))
  mask = masks.bbox_to_mask(bboxes, 256, 256, delta, delta, _seed(seed, 8))
  return bboxes.numpy(), mask.numpy()


# ---------------------------------------------------------------- bboxes


def test_random_bbox_ranges_and_per_sample_positions():
  bboxes = masks.random_bbox(64, 256, 200, 128, 96, 10, 20, seed=_seed(1)).numpy()
  assert bboxes.shape == (64, 4) and bboxes.dtype == np.int32
  top, left = bboxes[:, 0], bboxes[:, 1]
  assert top.min() >= 10 and top.max() < 256 - 10 - 128
  assert left.min() >= 20 and left.max() < 200 - 20 - 96
  np.testing.assert_array_equal(bboxes[:, 2:], [[128, 96]] * 64)
  assert len(set(map(tuple, bboxes[:, :2]))) > 32          # positions differ per sample
  assert (masks.random_bbox(2, 32, 32, 32, 32, seed=_seed(1)).numpy()[:, :2] == 0).all()
  with pytest.raises(ValueError, match="does not fit"):
    masks.random_bbox(2, 64, 64, 48, 48, 10, 0, seed=_seed(1))
  with pytest.raises(ValueError, match="seed"):
    masks.random_bbox(2, 64, 64, 32, 32)


def test_bbox_masks_hole_sizes_polarity_and_position():
  bboxes, mask = _boxes_and_masks()
  assert mask.shape == (32, 256, 256, 1) and mask.dtype == np.float32
  assert set(np.unique(mask)) == {0.0, 1.0}
  sides = []
  for (t, l, h, w), m in zip(bboxes, mask[..., 0]):
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    hole_h, hole_w = len(rows), len(cols)
    assert 96 <= hole_h <= 128 and 96 <= hole_w <= 128
    assert m.sum() == hole_h * hole_w                          # one solid rectangle
    # Inside the bbox and shrunk by the same amount on both sides.
    assert rows[0] - t == t + h - 1 - rows[-1] >= 0
    assert cols[0] - l == l + w - 1 - cols[-1] >= 0
    assert rows[-1] < 256 and cols[-1] < 256
    sides += [hole_h, hole_w]
  assert len(set(sides)) > 5                                   # shrink drawn per sample
  assert all((s - 96) % 2 == 0 for s in sides)                 # symmetric shrink


def test_bbox_mask_without_delta_is_the_full_box():
  bboxes, mask = _boxes_and_masks(batch=4, delta=0)
  for (t, l, h, w), m in zip(bboxes, mask[..., 0]):
    expected = np.zeros((256, 256), np.float32)
    expected[t:t + h, l:l + w] = 1.0
    np.testing.assert_array_equal(m, expected)


def test_same_seed_same_masks_different_seed_different_masks():
  b1, m1 = _boxes_and_masks(batch=4, seed=3)
  b2, m2 = _boxes_and_masks(batch=4, seed=3)
  b3, m3 = _boxes_and_masks(batch=4, seed=4)
  np.testing.assert_array_equal(b1, b2)
  np.testing.assert_array_equal(m1, m2)
  assert not np.array_equal(m1, m3)
  s1 = masks.brush_stroke_mask(3, 48, 64, _seed(5)).numpy()
  np.testing.assert_array_equal(s1, masks.brush_stroke_mask(3, 48, 64, _seed(5)).numpy())
  assert not np.array_equal(s1, masks.brush_stroke_mask(3, 48, 64, _seed(6)).numpy())


# ---------------------------------------------------------------- local patch


def test_local_patch_crops_each_sample_at_its_own_box():
  x = tf.random.stateless_normal([3, 20, 24, 2], seed=[0, 1])
  bboxes = tf.constant([[0, 0, 8, 10], [12, 14, 8, 10], [5, 3, 8, 10]], tf.int32)
  with tf.GradientTape() as tape:
    tape.watch(x)
    patch = masks.local_patch(x, bboxes)
    loss = tf.reduce_sum(patch)
  assert patch.shape == (3, 8, 10, 2)
  xn = x.numpy()
  for i, (t, l, h, w) in enumerate(bboxes.numpy()):
    np.testing.assert_array_equal(patch[i].numpy(), xn[i, t:t + h, l:l + w])
  grad = tape.gradient(loss, x).numpy()
  assert grad.sum() == 3 * 8 * 10 * 2 and set(np.unique(grad)) == {0.0, 1.0}
  with pytest.raises(tf.errors.InvalidArgumentError):
    masks.local_patch(x, tf.constant([[0, 0, 8, 10], [0, 0, 9, 10], [0, 0, 8, 10]]))


# ---------------------------------------------------------------- brush strokes


def _reference_capsules(x0, y0, x1, y1, radius, active, h, w):
  py, px = np.mgrid[0:h, 0:w].astype(np.float64)
  out = np.zeros((x0.shape[0], h, w), bool)
  for b in range(x0.shape[0]):
    for n in range(x0.shape[1]):
      if not active[b, n]:
        continue
      dx, dy = x1[b, n] - x0[b, n], y1[b, n] - y0[b, n]
      length_sq = dx * dx + dy * dy
      t = np.zeros_like(px)
      if length_sq > 0:
        t = np.clip(((px - x0[b, n]) * dx + (py - y0[b, n]) * dy) / length_sq, 0.0, 1.0)
      dist_sq = (px - x0[b, n] - t * dx) ** 2 + (py - y0[b, n] - t * dy) ** 2
      out[b] |= dist_sq <= radius[b, n] ** 2
  return out


def test_capsule_mask_matches_brute_force_distance():
  rng = np.random.default_rng(0)
  b, n, h, w = 3, 16, 29, 41
  x0, x1 = (rng.integers(-4, w + 4, (b, n)).astype(np.float32) for _ in range(2))
  y0, y1 = (rng.integers(-4, h + 4, (b, n)).astype(np.float32) for _ in range(2))
  x1[:, :3] = x0[:, :3]          # vertical segments
  y1[:, 2:5] = y0[:, 2:5]        # horizontal ones, and points (both equal)
  radius = (rng.integers(1, 14, (b, n)) / 2.0).astype(np.float32)
  active = rng.random((b, n)) < 0.4
  got = masks.capsule_mask(x0, y0, x1, y1, radius, tf.constant(active), h, w).numpy()
  np.testing.assert_array_equal(got, _reference_capsules(x0, y0, x1, y1, radius, active, h, w))


def test_brush_stroke_masks_are_binary_per_sample_and_sized_sensibly():
  mask = masks.brush_stroke_mask(16, 256, 256, _seed(11)).numpy()
  assert mask.shape == (16, 256, 256, 1) and mask.dtype == np.float32
  assert set(np.unique(mask)) == {0.0, 1.0}
  cover = mask.mean(axis=(1, 2, 3))
  assert (cover > 0.005).all() and (cover < 0.6).all()
  assert 0.05 < cover.mean() < 0.3
  assert len({m.tobytes() for m in mask}) == 16
  # Widths and step lengths scale with the image, so the covered fraction is
  # about the same at 64x64.
  small = masks.brush_stroke_mask(16, 64, 64, _seed(11)).numpy()
  assert 0.05 < small.mean() < 0.3


# ---------------------------------------------------------------- random_mask


def test_random_mask_modes():
  args = (4, 64, 64, 32, 32, 8, 8)
  box, bb_box = masks.random_mask("box", *args, seed=_seed(2))
  free, bb_free = masks.random_mask("free_form", *args, seed=_seed(2))
  both, bb_both = masks.random_mask("both", *args, seed=_seed(2))
  for bb in (bb_free, bb_both):
    np.testing.assert_array_equal(bb.numpy(), bb_box.numpy())
  for m in (box, free, both):
    assert m.shape == (4, 64, 64, 1) and m.dtype == tf.float32
  np.testing.assert_array_equal(both.numpy(), np.maximum(box.numpy(), free.numpy()))
  # mixed: each sample is exactly its box mask or its stroke mask, and both kinds occur.
  mixed, _ = masks.random_mask("mixed", 16, 64, 64, 32, 32, 8, 8, seed=_seed(2))
  box16, _ = masks.random_mask("box", 16, 64, 64, 32, 32, 8, 8, seed=_seed(2))
  free16, _ = masks.random_mask("free_form", 16, 64, 64, 32, 32, 8, 8, seed=_seed(2))
  kinds = [("box" if np.array_equal(m, mb) else "free" if np.array_equal(m, mf) else "?")
           for m, mb, mf in zip(mixed.numpy(), box16.numpy(), free16.numpy())]
  assert "?" not in kinds and {"box", "free"} == set(kinds), kinds
  # Box holes sit inside their bboxes.
  for (t, l, h, w), m in zip(bb_box.numpy(), box.numpy()[..., 0]):
    assert m[t:t + h, l:l + w].sum() == m.sum() > 0
  with pytest.raises(ValueError, match="mask mode"):
    masks.random_mask("ellipse", *args, seed=_seed(2))


# ---------------------------------------------------------------- eager / graph / tf.data


def _all_masks(seed):
  mask, bboxes = masks.random_mask("both", 2, 32, 48, 16, 16, 8, 8, seed=seed)
  return mask, bboxes, masks.local_patch(mask, bboxes)


@pytest.mark.slow
def test_eager_equals_tf_function_equals_tf_data_map():
  seeds = [tf.constant([i, 42], tf.int64) for i in range(3)]
  eager = [_all_masks(s) for s in seeds]
  graph_fn = tf.function(_all_masks)
  dataset = tf.data.Dataset.range(3).map(lambda i: _all_masks(tf.stack([i, 42])))
  for i, from_data in enumerate(dataset):
    from_graph = graph_fn(seeds[i])
    for e, g, d in zip(eager[i], from_graph, from_data):
      np.testing.assert_array_equal(e.numpy(), g.numpy())
      np.testing.assert_array_equal(e.numpy(), d.numpy())
  assert not np.array_equal(eager[0][0].numpy(), eager[1][0].numpy())


def test_dynamic_sizes_inside_tf_function():
  fn = tf.function(lambda b, h, w, s: masks.brush_stroke_mask(b, h, w, s),
                   input_signature=[tf.TensorSpec([], tf.int32)] * 3
                   + [tf.TensorSpec([2], tf.int64)])
  out = fn(tf.constant(2), tf.constant(40), tf.constant(24), _seed(1))
  np.testing.assert_array_equal(out.numpy(), masks.brush_stroke_mask(2, 40, 24, _seed(1)).numpy())
