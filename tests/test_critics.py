"""Tests for model/critics.py (ARCHITECTURE.md §4.1 v1 critics, §4.2 SN-PatchGAN)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from model.critics import GlobalCritic, LocalCritic, SNPatchCritic


@pytest.fixture(autouse=True)
def _seed():
  keras.utils.set_random_seed(0)


def _x(shape):
  return tf.random.stateless_uniform(shape, seed=[3, 4], minval=-1.0, maxval=1.0)


def _trainable_count(model):
  return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def test_official_parameter_counts():
  assert GlobalCritic(cnum=64).count_params() == 2_733_441      # 256x256 input
  assert LocalCritic(cnum=64).count_params() == 4_339_329       # 128x128 input
  sn = SNPatchCritic(cnum=64)
  assert _trainable_count(sn) == 5_946_816
  assert sn.count_params() - _trainable_count(sn) == 64 + 128 + 4 * 256  # vector_u


@pytest.mark.parametrize("cls,size", [(GlobalCritic, (32, 32)), (LocalCritic, (16, 48))])
def test_output_shapes_and_layer_widths(cls, size):
  critic = cls(cnum=4, input_size=size)
  out = critic(_x((3, *size, 3)))
  assert out.shape == (3, 1)
  last = 4 * 4 if cls is GlobalCritic else 8 * 4
  assert [c.filters for c in critic.convs] == [4, 8, 16, last]
  assert critic.flat_size == (size[0] // 16) * (size[1] // 16) * last
  assert critic.fc.kernel.shape == (critic.flat_size, 1)


def test_variable_names_follow_the_release():
  g = GlobalCritic(cnum=4, input_size=32)
  l = LocalCritic(cnum=4, input_size=16)
  assert g.name == "discriminator_global" and l.name == "discriminator_local"
  paths = [v.path for v in g.weights]
  assert paths[:2] == ["discriminator_global/conv1/conv/kernel",
                       "discriminator_global/conv1/conv/bias"]
  assert paths[-2:] == ["discriminator_global/dout_global_fc/kernel",
                        "discriminator_global/dout_global_fc/bias"]
  names = l.official_variable_names()
  assert set(names) == {f"discriminator/discriminator_local/conv{i}/{p}"
                        for i in range(1, 5) for p in ("kernel", "bias")} | {
                            "discriminator/dout_local_fc/kernel", "discriminator/dout_local_fc/bias"}
  assert names["discriminator/discriminator_local/conv4/kernel"].shape == (5, 5, 16, 32)
  assert names["discriminator/dout_local_fc/kernel"].shape == (32, 1)


def test_flatten_is_row_major_nhwc_like_the_release():
  critic = GlobalCritic(cnum=2, input_size=(32, 48))
  critic.fc.bias.assign([0.5])
  x = _x((2, 32, 48, 3))
  feat = x
  for conv in critic.convs:
    feat = conv(feat)
  flat = feat.numpy().reshape(2, -1)          # NumPy C order = TF1 flatten of NHWC
  expected = flat @ critic.fc.kernel.numpy() + 0.5
  np.testing.assert_allclose(critic(x).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_input_size_validation():
  with pytest.raises(ValueError, match="multiples of 16"):
    GlobalCritic(cnum=4, input_size=40)
  critic = LocalCritic(cnum=4, input_size=32)
  with pytest.raises(ValueError, match="built for 32x32"):
    critic(_x((1, 16, 16, 3)))
  fn = tf.function(lambda t: critic(t),
                   input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  assert fn(_x((2, 32, 32, 3))).shape == (2, 1)
  with pytest.raises(tf.errors.InvalidArgumentError):
    fn(_x((4, 16, 16, 3)))     # would otherwise reshape silently into a wrong batch


@pytest.mark.parametrize("make", [
    lambda: GlobalCritic(cnum=4, input_size=(32, 16), in_channels=4),
    lambda: LocalCritic(cnum=3, input_size=16),
    lambda: SNPatchCritic(cnum=4, in_channels=4),
])
def test_get_config_round_trip_gives_identical_outputs(make):
  critic = make()
  size = getattr(critic, "input_size", (64, 64))
  x = _x((2, *size, critic.in_channels))
  y = critic(x).numpy()
  clone = type(critic).from_config(critic.get_config())
  assert clone.get_config() == critic.get_config()
  clone.set_weights(critic.get_weights())
  np.testing.assert_array_equal(clone(x).numpy(), y)
  restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(critic))
  assert type(restored) is type(critic)
  assert restored.get_config() == critic.get_config()


def test_sn_patch_critic_shapes_and_training_mode():
  critic = SNPatchCritic(cnum=4)
  assert [c.filters for c in critic.convs] == [4, 8, 16, 16, 16, 16]
  assert all(c.spectral_norm for c in critic.convs)
  x = _x((2, 128, 64, 4))
  assert critic(x).shape == (2, 2 * 1 * 16)
  u0 = [c.sn.vector_u.numpy().copy() for c in critic.convs]
  with tf.GradientTape() as tape:
    out = critic(x, training=True)
    loss = tf.reduce_mean(tf.nn.relu(1.0 - out))
  grads = tape.gradient(loss, critic.trainable_variables)
  assert out.shape == (2, 32)
  assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
  assert any(not np.array_equal(u, c.sn.vector_u.numpy()) for u, c in zip(u0, critic.convs))
  fn = tf.function(lambda t: critic(t, training=True),
                   input_signature=[tf.TensorSpec([None, None, None, 4], tf.float32)])
  assert fn(_x((1, 256, 256, 4))).shape == (1, 4 * 4 * 16)


def test_checkpoint_holds_every_critic_variable(tmp_path):
  """tf.train.Checkpoint must save the convs too, not only the dense head."""
  import tensorflow as tf
  for critic in (GlobalCritic(cnum=4, input_size=32), LocalCritic(cnum=4, input_size=16),
                 SNPatchCritic(cnum=4)):
    path = tf.train.Checkpoint(critic=critic).write(str(tmp_path / critic.name))
    keys = [k for k in tf.train.list_variables(path) if k[0].startswith("critic/")]
    assert len(keys) == len(critic.weights), (critic.name, keys)
