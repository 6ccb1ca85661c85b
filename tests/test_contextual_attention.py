"""layers.contextual_attention.ContextualAttention against the NumPy reference (ARCHITECTURE.md §3)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from support import reference_numpy as ref
from layers.contextual_attention import ContextualAttention

Y_TOL = 1e-5


def _features(rng, batch, height, width, channels, scale=1.0):
  return (scale * rng.standard_normal((batch, height, width, channels))).astype(np.float32)


def _masks(batch, height, width):
  """Different rectangular holes per sample (1 = hole), interior and at borders."""
  m = np.zeros((batch, height, width, 1), np.float32)
  shapes = [(1, 4, 2, 5), (height // 2, height, width // 3, width), (0, 3, 0, 3), (2, 6, 1, 4)]
  for i in range(batch):
    y0, y1, x0, x1 = shapes[i % len(shapes)]
    m[i, y0:y1, x0:x1] = 1.0
  return m


def _call(layer, f, b, mask):
  inputs = (tf.constant(f), tf.constant(b)) + (() if mask is None else (tf.constant(mask),))
  y, offsets = layer(inputs)
  return y.numpy(), offsets.numpy()


def _assert_matches(y, offsets, y_ref, off_ref, tol=Y_TOL):
  assert offsets.dtype == np.int32
  assert y.shape == y_ref.shape and offsets.shape == off_ref.shape
  np.testing.assert_array_equal(offsets, off_ref)
  np.testing.assert_allclose(y, y_ref, rtol=0, atol=tol)


# ---------------------------------------------------------------------------
# The reference itself: loops vs the release's TF op sequence (float64).
# ---------------------------------------------------------------------------

def _release_op_sequence(f, b, mask, fuse, softmax_scale=10.0):
  """One sample through the release's op sequence, written with TF ops (float64)."""
  f = tf.constant(f[None], tf.float64)
  b = tf.constant(b[None], tf.float64)
  _, height, width, channels = f.shape
  h, w = height // 2, width // 2
  n = h * w
  raw = tf.image.extract_patches(b, [1, 4, 4, 1], [1, 2, 2, 1], [1, 1, 1, 1], "SAME")
  raw = tf.transpose(tf.reshape(raw, [n, 4, 4, channels]), [1, 2, 3, 0])         # [4,4,C,L]

  def down(x):
    return tf.compat.v1.image.resize_nearest_neighbor(x, [h, w], align_corners=True)

  fd, bd = down(f), down(b)
  md = tf.zeros([1, h, w, 1], tf.float64) if mask is None else down(tf.constant(mask[None], tf.float64))
  filt = tf.image.extract_patches(bd, [1, 3, 3, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME")
  filt = tf.transpose(tf.reshape(filt, [n, 3, 3, channels]), [1, 2, 3, 0])         # [3,3,C,L]
  norm = tf.sqrt(tf.reduce_sum(tf.square(filt), axis=[0, 1, 2], keepdims=True))
  filt = filt / tf.maximum(norm, tf.constant(1e-4, tf.float64))
  scores = tf.nn.conv2d(fd, filt, strides=1, padding="SAME")                       # [1,h,w,L]
  if fuse:
    eye = tf.reshape(tf.eye(3, dtype=tf.float64), [3, 3, 1, 1])
    s = tf.nn.conv2d(tf.reshape(scores, [1, n, n, 1]), eye, 1, "SAME")
    s = tf.transpose(tf.reshape(s, [1, h, w, h, w]), [0, 2, 1, 4, 3])
    s = tf.nn.conv2d(tf.reshape(s, [1, n, n, 1]), eye, 1, "SAME")
    s = tf.transpose(tf.reshape(s, [1, w, h, w, h]), [0, 2, 1, 4, 3])
    scores = tf.reshape(s, [1, h, w, n])
  mp = tf.image.extract_patches(md, [1, 3, 3, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME")
  mm = tf.cast(tf.equal(tf.reduce_mean(mp, axis=-1), 0.0), tf.float64)            # [1,h,w]
  mm = tf.reshape(mm, [1, 1, 1, n])
  scores = scores * mm
  attn = tf.nn.softmax(scores * softmax_scale, axis=3) * mm
  best = tf.argmax(attn, axis=3, output_type=tf.int32)[0]
  y = tf.nn.conv2d_transpose(attn, raw, [1, height, width, channels], strides=2, padding="SAME")
  return (y[0] / 4.0).numpy(), best.numpy()


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("with_mask", [True, False])
def test_reference_equals_release_op_sequence(fuse, with_mask):
  rng = np.random.default_rng(1)
  f = rng.standard_normal((8, 12, 4))
  b = rng.standard_normal((8, 12, 4))
  mask = _masks(1, 8, 12)[0] if with_mask else None
  y_ref, off_ref = ref.contextual_attention(f, b, mask, fuse=fuse)
  y_ops, best = _release_op_sequence(f, b, mask, fuse)
  np.testing.assert_allclose(y_ref, y_ops, rtol=0, atol=1e-10)
  grid_y, grid_x = np.meshgrid(np.arange(4), np.arange(6), indexing="ij")
  np.testing.assert_array_equal(off_ref[..., 0], best // 6 - grid_y)
  np.testing.assert_array_equal(off_ref[..., 1], best % 6 - grid_x)


def test_reference_float32_close_to_float64():
  rng = np.random.default_rng(2)
  f, b = rng.standard_normal((2, 8, 8, 4))
  m = _masks(1, 8, 8)[0]
  y64, o64 = ref.contextual_attention(f, b, m)
  y32, o32 = ref.contextual_attention(f, b, m, dtype=np.float32)
  assert y32.dtype == np.float32
  np.testing.assert_array_equal(o32, o64)
  np.testing.assert_allclose(y32, y64, atol=1e-5)


# ---------------------------------------------------------------------------
# Layer vs reference.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(8, 8, 4), (8, 12, 6), (10, 6, 5), (12, 16, 8)])
@pytest.mark.parametrize("fuse", [True, False])
def test_matches_reference_per_sample_masks(size, fuse):
  height, width, channels = size
  rng = np.random.default_rng(height * 100 + width + channels + fuse)
  f = _features(rng, 2, height, width, channels)
  b = _features(rng, 2, height, width, channels)
  mask = _masks(2, height, width)
  y, off = _call(ContextualAttention(fuse=fuse), f, b, mask)
  _assert_matches(y, off, *ref.contextual_attention_batch(f, b, mask, fuse=fuse))


@pytest.mark.parametrize("size", [(8, 12, 4), (10, 6, 5)])
def test_matches_reference_self_attention(size):
  """f = b, as in the generator: hole queries must look elsewhere."""
  height, width, channels = size
  rng = np.random.default_rng(5)
  f = _features(rng, 2, height, width, channels)
  mask = _masks(2, height, width)
  y, off = _call(ContextualAttention(), f, f, mask)
  y_ref, off_ref = ref.contextual_attention_batch(f, f, mask)
  _assert_matches(y, off, y_ref, off_ref)
  assert np.any(off_ref != 0)


@pytest.mark.parametrize("fuse", [True, False])
def test_matches_reference_without_mask(fuse):
  rng = np.random.default_rng(6)
  f = _features(rng, 2, 8, 12, 4)
  b = _features(rng, 2, 8, 12, 4)
  layer = ContextualAttention(fuse=fuse)
  y, off = _call(layer, f, b, None)
  _assert_matches(y, off, *ref.contextual_attention_batch(f, b, None, fuse=fuse))
  # An all-known mask is the same as no mask.
  y0, off0 = _call(layer, f, b, np.zeros((2, 8, 12, 1), np.float32))
  np.testing.assert_array_equal(off0, off)
  np.testing.assert_allclose(y0, y, rtol=0, atol=1e-6)
  # (f, b, None) is accepted as "no mask" too.
  y1, off1 = layer((tf.constant(f), tf.constant(b), None))
  np.testing.assert_array_equal(off1.numpy(), off)
  np.testing.assert_allclose(y1.numpy(), y, rtol=0, atol=1e-6)


def test_all_hole_sample_gives_zeros_and_index_zero():
  """No valid patch: attention is all zero, y = 0, argmax = index 0 (as tf.argmax)."""
  rng = np.random.default_rng(7)
  f = _features(rng, 2, 8, 12, 4)
  mask = _masks(2, 8, 12)
  mask[1] = 1.0
  y, off = _call(ContextualAttention(), f, f, mask)
  _assert_matches(y, off, *ref.contextual_attention_batch(f, f, mask))
  assert np.all(y[1] == 0)
  gy, gx = np.meshgrid(np.arange(4), np.arange(6), indexing="ij")
  np.testing.assert_array_equal(off[1], np.stack([-gy, -gx], axis=-1))


def test_matches_reference_other_softmax_scale():
  rng = np.random.default_rng(8)
  f = _features(rng, 1, 8, 8, 4)
  b = _features(rng, 1, 8, 8, 4)
  mask = _masks(1, 8, 8)
  y, off = _call(ContextualAttention(softmax_scale=3.0), f, b, mask)
  _assert_matches(y, off, *ref.contextual_attention_batch(f, b, mask, softmax_scale=3.0))


def test_tf_function_with_dynamic_shapes():
  channels = 4
  layer = ContextualAttention()
  spec = tf.TensorSpec([None, None, None, channels], tf.float32)
  fn = tf.function(lambda f, b, m: layer((f, b, m)),
                   input_signature=[spec, spec, tf.TensorSpec([None, None, None, 1], tf.float32)])
  fn_nomask = tf.function(lambda f, b: layer((f, b)), input_signature=[spec, spec])
  rng = np.random.default_rng(9)
  for batch, height, width in [(2, 8, 12), (1, 10, 6), (3, 8, 8)]:
    f = _features(rng, batch, height, width, channels)
    b = _features(rng, batch, height, width, channels)
    mask = _masks(batch, height, width)
    y, off = fn(f, b, mask)
    _assert_matches(y.numpy(), off.numpy(), *ref.contextual_attention_batch(f, b, mask))
    y, off = fn_nomask(f, b)
    _assert_matches(y.numpy(), off.numpy(), *ref.contextual_attention_batch(f, b, None))


def test_batch_of_two_equals_two_batches_of_one():
  rng = np.random.default_rng(10)
  f = _features(rng, 2, 8, 12, 4)
  b = _features(rng, 2, 8, 12, 4)
  mask = _masks(2, 8, 12)
  layer = ContextualAttention()
  y, off = _call(layer, f, b, mask)
  for i in range(2):
    yi, offi = _call(layer, f[i:i + 1], b[i:i + 1], mask[i:i + 1])
    np.testing.assert_array_equal(off[i:i + 1], offi)
    np.testing.assert_allclose(y[i:i + 1], yi, rtol=0, atol=Y_TOL)


@pytest.mark.parametrize("size", [(10, 6, 4), (8, 12, 4)])
def test_tiles_equal_dense(size):
  height, width, channels = size
  rng = np.random.default_rng(11)
  f = _features(rng, 2, height, width, channels)
  b = _features(rng, 2, height, width, channels)
  mask = _masks(2, height, width)
  y, off = _call(ContextualAttention(), f, b, mask)
  for tile in (1, 2, 3):
    yt, offt = _call(ContextualAttention(tile_size=tile), f, b, mask)
    np.testing.assert_array_equal(offt, off)
    np.testing.assert_allclose(yt, y, rtol=0, atol=Y_TOL)
  # Tiled without fuse and without mask, too.
  yn, offn = _call(ContextualAttention(fuse=False), f, b, None)
  ynt, offnt = _call(ContextualAttention(fuse=False, tile_size=2), f, b, None)
  np.testing.assert_array_equal(offnt, offn)
  np.testing.assert_allclose(ynt, yn, rtol=0, atol=Y_TOL)


@pytest.mark.parametrize("fuse", [True, False])
def test_tiles_match_reference_on_a_larger_map(fuse):
  """Tiles of a 10×14 grid (uneven split, fuse shifts wrapping across rows and
  columns, holes at the borders) against the loop reference directly."""
  rng = np.random.default_rng(21 + fuse)
  f = _features(rng, 2, 20, 28, 3)
  b = _features(rng, 2, 20, 28, 3)
  mask = _masks(2, 20, 28)
  expected = ref.contextual_attention_batch(f, b, mask, fuse=fuse)
  for tile in (4, 6):
    y, off = _call(ContextualAttention(fuse=fuse, tile_size=tile), f, b, mask)
    _assert_matches(y, off, *expected)


def test_query_mask_skips_tiles_without_needed_queries():
  rng = np.random.default_rng(23)
  f = _features(rng, 1, 24, 24, 3)
  b = _features(rng, 1, 24, 24, 3)
  mask = _masks(1, 24, 24)
  layer = ContextualAttention(tile_size=4)
  inputs = tuple(tf.constant(v) for v in (f, b, mask))
  full_box = tf.constant([0, 12, 0, 12])
  needed = np.zeros((12, 12), bool)
  needed[5, 6] = True                                     # inside tile (1, 1) of the 3×3 tiles
  y, off = layer(inputs, query_box=full_box, query_mask=tf.constant(needed))
  # Same as computing that one tile's box; other tiles contribute nothing (argmax 0).
  y_tile, off_tile = layer(inputs, query_box=tf.constant([4, 8, 4, 8]))
  np.testing.assert_allclose(y.numpy(), y_tile.numpy(), rtol=0, atol=Y_TOL)
  np.testing.assert_array_equal(off.numpy(), off_tile.numpy())
  _, off_dense = layer(inputs)
  np.testing.assert_array_equal(off.numpy()[0, 4:8, 4:8], off_dense.numpy()[0, 4:8, 4:8])
  assert np.abs(y.numpy()).max() > 0 and np.abs(y.numpy()[0, :4]).max() == 0
  # All needed: the same as no mask.
  y_all, _ = layer(inputs, query_box=full_box, query_mask=tf.ones([12, 12], tf.bool))
  y_none, _ = layer(inputs, query_box=full_box)
  np.testing.assert_array_equal(y_all.numpy(), y_none.numpy())


@pytest.mark.parametrize("fuse_k", [3, 1])
def test_tile_module_equals_dense_path_directly(fuse_k):
  """layers.attention_tiles on one whole-map tile, and on a box of uneven tiles, against
  contextual_attention.dense_attention on the same prepared inputs (the layer's
  dispatch takes the dense path for a whole-map tile, so it is called directly here)."""
  from layers import attention_tiles
  from layers import contextual_attention as ca
  rng = np.random.default_rng(24 + fuse_k)
  b = tf.constant(_features(rng, 2, 12, 16, 3))
  f = tf.constant(_features(rng, 2, 12, 16, 3))
  fd, bd = (tf.constant(v.numpy()[:, ::2, ::2]) for v in (f, b))  # ÷2 align_corners of an even map
  valid = ca.valid_keys(tf.constant(_masks(2, 12, 16)), 2, 6, 8)
  settings = dict(ksize=3, rate=2, fuse_k=fuse_k, softmax_scale=10.0)
  y, best = ca.dense_attention(fd, bd, b, valid, **settings)
  for tile, box in ((8, [0, 6, 0, 8]), (3, [0, 6, 0, 8]), (2, [1, 5, 2, 7])):
    yt, bt = attention_tiles.tiled_attention(fd, bd, b, valid, tile, box, **settings)
    y0, y1, x0, x1 = box
    np.testing.assert_array_equal(bt.numpy()[:, y0:y1, x0:x1], best.numpy()[:, y0:y1, x0:x1])
    # Output pixels covered only by the box's queries' patches equal the dense ones.
    rows, cols = slice(2 * y0 + 1, 2 * y1 - 1), slice(2 * x0 + 1, 2 * x1 - 1)
    if box == [0, 6, 0, 8]:
      rows, cols = slice(None), slice(None)
    np.testing.assert_allclose(yt.numpy()[:, rows, cols], y.numpy()[:, rows, cols], rtol=0, atol=Y_TOL)


def test_tiles_under_tf_function():
  layer = ContextualAttention(tile_size=2)
  spec = tf.TensorSpec([None, None, None, 4], tf.float32)
  fn = tf.function(lambda f, b, m: layer((f, b, m)),
                   input_signature=[spec, spec, tf.TensorSpec([None, None, None, 1], tf.float32)])
  rng = np.random.default_rng(12)
  f = _features(rng, 2, 10, 6, 4)
  b = _features(rng, 2, 10, 6, 4)
  mask = _masks(2, 10, 6)
  y, off = fn(f, b, mask)
  _assert_matches(y.numpy(), off.numpy(), *ref.contextual_attention_batch(f, b, mask))


def test_gradients_finite_and_nonzero():
  rng = np.random.default_rng(13)
  f = tf.constant(_features(rng, 2, 8, 8, 4))
  b = tf.constant(_features(rng, 2, 8, 8, 4))
  mask = tf.constant(_masks(2, 8, 8))
  weights = tf.constant(_features(rng, 2, 8, 8, 4))
  for layer in (ContextualAttention(), ContextualAttention(tile_size=2)):
    with tf.GradientTape(persistent=True) as tape:
      tape.watch([f, b])
      y, _ = layer((f, b, mask))
      loss = tf.reduce_sum(y * weights)
    for grad in tape.gradient(loss, [f, b]):
      grad = grad.numpy()
      assert np.all(np.isfinite(grad))
      assert np.abs(grad).max() > 0
      assert np.abs(grad[0]).max() > 0 and np.abs(grad[1]).max() > 0
    # Self-attention (f is b), as used in the generator.
    with tf.GradientTape() as tape:
      tape.watch(f)
      y, _ = layer((f, f, mask))
      loss = tf.reduce_sum(y * weights)
    grad = tape.gradient(loss, f).numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


# ---------------------------------------------------------------------------
# Constructed cases.
# ---------------------------------------------------------------------------

def _duplicate(x):
  """Pixel-duplicates a downsampled map ×2; align_corners ÷2 resize gives it back."""
  return np.repeat(np.repeat(x, 2, axis=0), 2, axis=1)


@pytest.mark.parametrize("fuse", [True, False])
def test_hole_attends_to_planted_copy(fuse):
  """A hole holds an exact copy of a known background block -> offsets point at it."""
  h2, w2, channels = 8, 10, 4
  rng = np.random.default_rng(14)
  grid = rng.standard_normal((h2, w2, channels))
  src, dst = (2, 2), (5, 7)                       # block centres on the downsampled grid
  grid[dst[0] - 2:dst[0] + 3, dst[1] - 2:dst[1] + 3] = grid[src[0] - 2:src[0] + 3, src[1] - 2:src[1] + 3]
  md = np.zeros((h2, w2, 1))
  md[dst[0] - 1:dst[0] + 2, dst[1] - 1:dst[1] + 2] = 1.0      # the copy's centre is a hole
  f = _duplicate(grid).astype(np.float32)[None]
  mask = _duplicate(md).astype(np.float32)[None]
  y, off = _call(ContextualAttention(fuse=fuse), f, f, mask)
  y_ref, off_ref = ref.contextual_attention_batch(f, f, mask, fuse=fuse)
  _assert_matches(y, off, y_ref, off_ref)
  want = (src[0] - dst[0], src[1] - dst[1])
  np.testing.assert_array_equal(off[0, dst[0], dst[1]], want)
  if not fuse:
    # Every query inside the copy's inner 3x3 finds its own source position.
    np.testing.assert_array_equal(
        off[0, dst[0] - 1:dst[0] + 2, dst[1] - 1:dst[1] + 2], np.broadcast_to(want, (3, 3, 2)))
  else:
    # The reconstruction at the hole centre reproduces the source pixels.
    cy, cx = 2 * dst[0], 2 * dst[1]
    sy, sx = 2 * src[0], 2 * src[1]
    np.testing.assert_allclose(y[0, cy:cy + 2, cx:cx + 2], f[0, sy:sy + 2, sx:sx + 2], atol=1e-3)


def test_hole_patches_get_zero_attention():
  """Self-attention: hole patches match themselves perfectly but are never chosen."""
  height, width, channels = 12, 16, 4
  rng = np.random.default_rng(15)
  f = _features(rng, 2, height, width, channels)
  mask = _masks(2, height, width)
  layer = ContextualAttention()
  y, off = _call(layer, f, f, mask)
  for i in range(2):
    _, off_ref, details = ref.contextual_attention(f[i], f[i], mask[i], return_details=True)
    np.testing.assert_array_equal(off[i], off_ref)
    mm = details["mm"].reshape(height // 2, width // 2)
    assert mm.min() == 0 and mm.max() == 1
    gy, gx = np.meshgrid(np.arange(height // 2), np.arange(width // 2), indexing="ij")
    ty, tx = gy + off[i, ..., 0], gx + off[i, ..., 1]
    assert np.all(mm[ty, tx] == 1), "an offset points at an invalid (hole) patch"
    assert np.all(np.any(off[i][mm == 0] != 0, axis=-1)), "a hole query attends to itself"


@pytest.mark.parametrize("fuse", [True, False])
def test_pixels_of_invalid_patches_do_not_matter(fuse):
  """Background pixels seen only by invalid (hole) patches have zero influence.

  Without fuse, any such hole pixel may change. With fuse, the scores of a valid
  patch also add the raw scores of its diagonal neighbours, valid or not (the
  release masks after fusing), so only pixels the ÷2 resize never samples may.
  """
  height, width, channels = 12, 16, 4
  h2, w2 = height // 2, width // 2
  rng = np.random.default_rng(15)
  f = _features(rng, 2, height, width, channels)
  mask = _masks(2, height, width)
  layer = ContextualAttention(fuse=fuse)
  y, off = _call(layer, f, f, mask)
  rows = set(ref.nearest_source_index(height, h2).tolist())
  cols = set(ref.nearest_source_index(width, w2).tolist())
  b = f.copy()
  for i in range(2):
    _, _, details = ref.contextual_attention(f[i], f[i], mask[i], fuse=fuse, return_details=True)
    mm = details["mm"].reshape(h2, w2)
    for yy in range(height):
      for xx in range(width):
        covering = [(py, px) for py in range(h2) for px in range(w2)
                    if 2 * py - 1 <= yy <= 2 * py + 2 and 2 * px - 1 <= xx <= 2 * px + 2]
        sampled = yy in rows and xx in cols
        if mask[i, yy, xx, 0] == 1 and all(mm[p] == 0 for p in covering) and not (fuse and sampled):
          b[i, yy, xx] = 50.0 * rng.standard_normal(channels)
  assert np.abs(b - f).max() > 0
  y2, off2 = _call(layer, f, b, mask)
  np.testing.assert_array_equal(off2, off)
  np.testing.assert_allclose(y2, y, rtol=0, atol=1e-6)


def test_get_config_round_trip():
  layer = ContextualAttention(ksize=3, stride=1, rate=2, fuse_k=3, softmax_scale=7.5, fuse=False,
                              tile_size=2, name="attn")
  config = layer.get_config()
  for key, value in dict(ksize=3, stride=1, rate=2, fuse_k=3, softmax_scale=7.5, fuse=False,
                         tile_size=2).items():
    assert config[key] == value
  clone = ContextualAttention.from_config(config)
  assert clone.get_config() == config
  revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
  assert isinstance(revived, ContextualAttention) and revived.get_config() == config
  rng = np.random.default_rng(16)
  f = _features(rng, 2, 8, 12, 4)
  b = _features(rng, 2, 8, 12, 4)
  mask = _masks(2, 8, 12)
  y, off = _call(layer, f, b, mask)
  for other in (clone, revived):
    y2, off2 = _call(other, f, b, mask)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(off2, off)
  _assert_matches(y, off, *ref.contextual_attention_batch(f, b, mask, fuse=False, softmax_scale=7.5))


def test_rejects_sizes_not_divisible_by_rate():
  layer = ContextualAttention()
  f = np.zeros((1, 9, 8, 2), np.float32)
  with pytest.raises(tf.errors.InvalidArgumentError, match="divisible by rate"):
    layer((f, f))
  spec = tf.TensorSpec([None, None, None, 2], tf.float32)
  fn = tf.function(lambda a: layer((a, a))[0], input_signature=[spec])
  with pytest.raises(tf.errors.InvalidArgumentError, match="divisible by rate"):
    fn(f)
