"""Tests for layers/dis_conv.py (critic conv, ARCHITECTURE.md §4)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from layers.dis_conv import DisConv


@pytest.fixture(autouse=True)
def _seed():
  keras.utils.set_random_seed(0)


def _x(shape=(2, 16, 24, 3)):
  return tf.random.stateless_normal(shape, seed=[1, 2])


def test_shape_and_math_match_conv_plus_leaky_relu():
  layer = DisConv(5, name="conv1")
  x = _x()
  y = layer(x)
  assert y.shape == (2, 8, 12, 5)
  assert layer.compute_output_shape((2, 16, 24, 3)) == (2, 8, 12, 5)
  assert layer.compute_output_shape((None, 15, None, 3)) == (None, 8, None, 5)
  # Non-zero bias to check it is added before the activation.
  layer.conv.bias.assign(np.linspace(-1, 1, 5).astype(np.float32))
  pre = tf.nn.conv2d(x, layer.conv.kernel, strides=2, padding="SAME") + layer.conv.bias
  pre = pre.numpy()
  expected = np.where(pre > 0, pre, 0.2 * pre)
  np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-5)
  assert (pre < 0).any() and (pre > 0).any()


def test_weight_names_and_initialisers():
  layer = DisConv(8, name="conv2")
  layer.build((None, None, None, 4))
  assert [v.path for v in layer.weights] == ["conv2/conv/kernel", "conv2/conv/bias"]
  kernel = layer.conv.kernel.numpy()
  assert kernel.shape == (5, 5, 4, 8)
  limit = np.sqrt(6.0 / (5 * 5 * 4 + 5 * 5 * 8))  # Glorot uniform
  assert np.abs(kernel).max() <= limit
  assert np.abs(kernel).max() > 0.5 * limit
  np.testing.assert_array_equal(layer.conv.bias.numpy(), 0.0)


def test_get_config_round_trip_gives_identical_outputs():
  layer = DisConv(6, kernel_size=3, strides=1, name="c")
  x = _x()
  y = layer(x)
  config = layer.get_config()
  assert config["filters"] == 6 and config["kernel_size"] == 3 and config["strides"] == 1
  assert config["spectral_norm"] is False
  clone = DisConv.from_config(config)
  clone.build(x.shape)
  clone.set_weights(layer.get_weights())
  np.testing.assert_array_equal(clone(x).numpy(), y.numpy())
  blob = keras.saving.serialize_keras_object(layer)
  assert keras.saving.deserialize_keras_object(blob).get_config() == config


def test_eager_equals_tf_function_with_dynamic_shapes():
  layer = DisConv(4, name="c")
  x = _x((3, 20, 12, 3))
  eager = layer(x).numpy()
  fn = tf.function(lambda t: layer(t),
                   input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  np.testing.assert_allclose(fn(x).numpy(), eager, rtol=1e-6, atol=1e-6)
  assert fn(_x((1, 8, 8, 3))).shape == (1, 4, 4, 4)


def test_spectral_norm_names_and_training_behaviour():
  layer = DisConv(6, spectral_norm=True, name="conv3")
  x = _x((2, 16, 16, 3))
  layer.build(x.shape)
  paths = {v.path: v.trainable for v in layer.weights}
  assert paths == {"conv3/conv/kernel": True, "conv3/conv/bias": True,
                   "conv3/spectral_norm/vector_u": False}
  kernel0 = layer.conv.kernel.numpy().copy()
  layer(x, training=False)
  np.testing.assert_array_equal(layer.conv.kernel.numpy(), kernel0)
  for _ in range(30):
    y = layer(x, training=True)
  assert y.shape == (2, 8, 8, 6)
  sigma = np.linalg.svd(layer.conv.kernel.numpy().reshape(-1, 6), compute_uv=False)[0]
  assert abs(sigma - 1.0) < 1e-3
  assert DisConv.from_config(layer.get_config()).spectral_norm
