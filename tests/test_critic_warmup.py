"""--critic_warmup and --critic_lr: warm-up steps train only the critics and count as steps."""
import numpy as np
import pytest
import tensorflow as tf

import flags as flags_lib
from model import config as config_lib
from model.training import inputs as training_inputs
from model.training import nets as nets_lib


def _cfg(**train):
  return flags_lib.Config(
      model=config_lib.preset("v1", cnum=4),
      data=flags_lib.DataConfig(img_size=32, batch_size=2, box_height=16, box_width=16,
                                max_delta_height=8, max_delta_width=8),
      loss=flags_lib.LossConfig(critic_cnum=4),
      train=flags_lib.TrainConfig(critic_steps=1, **train))


def _batch():
  rng = np.random.default_rng(5)
  images = tf.constant(rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32))
  return training_inputs.add_training_inputs(images, 0, 3, "box", (16, 16), (8, 8))


@pytest.mark.slow
def test_warmup_step_moves_only_the_critics_and_counts():
  tf.keras.utils.set_random_seed(0)
  nets = nets_lib.build(_cfg(lr=1e-3, critic_lr=1e-2, critic_warmup=3))
  step = tf.Variable(0, dtype=tf.int64)
  _, _, warmup_step = nets_lib.distributed_steps(tf.distribute.get_strategy(), nets, step)
  gen_before = [v.numpy() for v in nets.generator.weights]
  critic_vars = [v for c in nets.critics.values() for v in c.trainable_variables]
  critic_before = [v.numpy() for v in critic_vars]
  terms = warmup_step(_batch())
  assert int(step.numpy()) == 1
  assert set(terms) == {"d_global", "d_local", "gp", "d_loss"}
  assert all(np.array_equal(a, v.numpy()) for a, v in zip(gen_before, nets.generator.weights))
  assert max(float(np.max(np.abs(a - v.numpy()))) for a, v in zip(critic_before, critic_vars)) > 0
  assert int(nets.g_opt.iterations.numpy()) == 0 and int(nets.d_opt.iterations.numpy()) == 1


@pytest.mark.parametrize("critic_lr, expected", [(0.0, 1e-3), (1e-2, 1e-2)])
def test_critic_lr_defaults_to_lr(critic_lr, expected):
  nets = nets_lib.build(_cfg(lr=1e-3, critic_lr=critic_lr))
  assert float(nets.d_opt.learning_rate.numpy()) == pytest.approx(expected)
  assert float(nets.g_opt.learning_rate.numpy()) == pytest.approx(1e-3)


@pytest.mark.parametrize("field, value", [("critic_lr", -1.0), ("critic_lr", float("nan")),
                                          ("critic_warmup", -1)])
def test_bad_values_are_refused(field, value):
  with pytest.raises(ValueError, match=field):
    _cfg(**{field: value})
