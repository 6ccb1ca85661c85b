"""model.flow_viz (TF colour wheel) against the NumPy reference (ARCHITECTURE.md §3.8)."""
import numpy as np
import pytest
import tensorflow as tf

from support import reference_numpy as ref
from model import flow_viz


def _random_offsets(rng, batch, h, w, magnitudes):
  """Random int32 offsets; sample i has |dy|, |dx| <= magnitudes[i]."""
  out = np.zeros((batch, h, w, 2), np.int32)
  for i in range(batch):
    m = magnitudes[i]
    out[i] = rng.integers(-m, m + 1, size=(h, w, 2))
  return out


def _uint8(picture):
  return flow_viz.flow_to_uint8(picture).numpy()


@pytest.mark.parametrize("shape,magnitudes", [
    ((1, 4, 4), (3,)),
    ((2, 5, 7), (1, 12)),
    ((3, 6, 3), (40, 2, 7)),
    ((2, 8, 6), (0, 5)),
])
def test_matches_numpy_reference_eager(shape, magnitudes):
  rng = np.random.default_rng(sum(shape) + sum(magnitudes))
  offsets = _random_offsets(rng, *shape, magnitudes)
  got = flow_viz.flow_to_image(tf.constant(offsets)).numpy()
  want = ref.flow_to_image(offsets)
  assert got.dtype == np.float32 and got.shape == (shape[0], 2 * shape[1], 2 * shape[2], 3)
  np.testing.assert_array_equal(got, want)


def test_matches_numpy_reference_tf_function_dynamic_shape():
  fn = tf.function(flow_viz.flow_to_image,
                   input_signature=[tf.TensorSpec([None, None, None, 2], tf.int32)])
  rng = np.random.default_rng(7)
  for shape, mags in [((2, 3, 5), (4, 9)), ((1, 6, 2), (20,))]:
    offsets = _random_offsets(rng, *shape, mags)
    np.testing.assert_array_equal(fn(tf.constant(offsets)).numpy(), ref.flow_to_image(offsets))


def test_upsample_factor_and_pixel_duplication():
  rng = np.random.default_rng(3)
  offsets = _random_offsets(rng, 1, 3, 4, (5,))
  one = flow_viz.flow_to_image(offsets, upsample=1).numpy()
  four = flow_viz.flow_to_image(offsets, upsample=4).numpy()
  assert four.shape == (1, 12, 16, 3)
  np.testing.assert_array_equal(four, np.repeat(np.repeat(one, 4, axis=1), 4, axis=2))
  np.testing.assert_array_equal(one, ref.flow_to_image(offsets, upsample=1))


def test_normalisation_is_per_sample():
  """Same direction field, scaled differently per sample -> same picture per sample."""
  rng = np.random.default_rng(11)
  base = _random_offsets(rng, 1, 4, 5, (3,))[0]
  offsets = np.stack([base, 5 * base]).astype(np.int32)
  pics = flow_viz.flow_to_image(offsets).numpy()
  np.testing.assert_array_equal(pics[0], pics[1])
  # A batch-wide (running) maximum would dim the small sample instead.
  np.testing.assert_array_equal(pics, ref.flow_to_image(offsets))
  alone = flow_viz.flow_to_image(offsets[:1]).numpy()
  np.testing.assert_array_equal(pics[:1], alone)


def test_zero_offsets_are_white():
  pics = flow_viz.flow_to_image(np.zeros((2, 3, 4, 2), np.int32)).numpy()
  np.testing.assert_array_equal(pics, np.ones_like(pics))
  assert (_uint8(pics) == 255).all()


@pytest.mark.parametrize("offset,rgb", [
    ((3, 0), (255, 0, 0)),      # down: red (atan2(-0.0, -1) = -pi -> first wheel colour)
    ((1, 0), (255, 0, 0)),
    ((0, 3), (255, 229, 0)),    # right: orange-yellow (between wheel entries 13 and 14)
    ((0, 1), (255, 229, 0)),
    ((-2, 0), (0, 209, 255)),   # up: sky blue
    ((0, -2), (88, 0, 255)),    # left: violet
])
def test_known_colours_of_pure_directions(offset, rgb):
  offsets = np.zeros((1, 2, 2, 2), np.int32)
  offsets[0, 1, 0] = offset
  pic = _uint8(flow_viz.flow_to_image(offsets))
  np.testing.assert_array_equal(pic[0, 2:4, 0:2], np.broadcast_to(rgb, (2, 2, 3)))
  # Every other pixel has offset (0, 0): white.
  assert (pic[0, 0:2] == 255).all() and (pic[0, 2:4, 2:4] == 255).all()


def test_half_radius_blends_towards_white_and_unknown_is_zero():
  offsets = np.zeros((1, 1, 3, 2), np.int32)
  offsets[0, 0, 0] = (2, 0)                 # half of the max radius, pointing down
  offsets[0, 0, 1] = (4, 0)                 # the max radius
  offsets[0, 0, 2] = (0, 2 * 10 ** 7)       # unknown: treated as (0, 0) -> white
  pic = _uint8(flow_viz.flow_to_image(offsets, upsample=1))[0, 0]
  np.testing.assert_array_equal(pic, [[255, 127, 127], [255, 0, 0], [255, 255, 255]])
  np.testing.assert_array_equal(pic, _uint8(ref.flow_to_image(offsets, upsample=1))[0, 0])


def test_values_are_k_over_127_5_minus_1():
  rng = np.random.default_rng(5)
  pic = flow_viz.flow_to_image(_random_offsets(rng, 2, 4, 4, (6, 6))).numpy()
  k = _uint8(pic).astype(np.float32)
  np.testing.assert_array_equal(pic, k / np.float32(127.5) - np.float32(1.0))
  assert pic.min() >= -1.0 and pic.max() <= 1.0


def test_savedmodel_round_trip(tmp_path):
  module = tf.Module()
  module.flow = tf.function(lambda o: flow_viz.flow_to_image(o),
                            input_signature=[tf.TensorSpec([None, None, None, 2], tf.int32)])
  tf.saved_model.save(module, str(tmp_path / "flow"))
  loaded = tf.saved_model.load(str(tmp_path / "flow"))
  rng = np.random.default_rng(13)
  offsets = _random_offsets(rng, 2, 3, 4, (2, 9))
  np.testing.assert_array_equal(loaded.flow(tf.constant(offsets)).numpy(), ref.flow_to_image(offsets))
