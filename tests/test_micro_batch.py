"""Micro-batched training steps (``--micro_batch``): the same update as the whole batch.

Tiny shapes (32², cnum 4, batch 4, WGAN-GP critics): one critic and one generator step
with the batch in 2 and 4 micro-batches against the whole batch, eagerly and in a
``tf.function``; and the traced step's order (a micro-batch waits for the previous
one's gradients, which is what bounds the activation memory).
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

import flags as flags_lib
from model import config as config_lib
from model.training import inputs as training_inputs
from model.training import nets as nets_lib

BATCH = 4


def _config(micro_batch, gradient_clip=False, gan="wgan_gp"):
  return flags_lib.Config(
      model=config_lib.preset("v1", cnum=4),
      data=flags_lib.DataConfig(img_size=32, batch_size=BATCH, box_height=16, box_width=16,
                                max_delta_height=8, max_delta_width=8),
      loss=flags_lib.LossConfig(critic_cnum=4, gan=gan),
      train=flags_lib.TrainConfig(critic_steps=1, micro_batch=micro_batch,
                                  gradient_clip=gradient_clip, gradient_clip_value=0.05))


def _batch():
  images = tf.random.stateless_uniform([BATCH, 32, 32, 3], [1, 2], -1.0, 1.0)
  return training_inputs.add_training_inputs(images, 0, 3, "box", (16, 16), (8, 8))


_INITIAL = {}


def _nets(cfg):
  """Nets of ``cfg`` with SGD (Adam's first step is about lr * sign, blind to the
  gradient's scale) and the same starting weights whatever ``cfg`` is."""
  keras.utils.set_random_seed(0)
  nets = nets_lib.build(cfg, make_optimizer=lambda: keras.optimizers.SGD(0.05))
  variables = nets.generator.weights + nets.steps.critic_variables()
  if cfg.loss.gan not in _INITIAL:
    _INITIAL[cfg.loss.gan] = [v.numpy() for v in variables]
  for v, value in zip(variables, _INITIAL[cfg.loss.gan]):
    v.assign(value)
  return nets, variables


def _one_d_and_one_g_step(cfg, compiled):
  nets, variables = _nets(cfg)
  d_step, g_step = nets.steps.d_step, nets.steps.g_step
  if compiled:
    d_step, g_step = tf.function(d_step), tf.function(g_step)
  batch = _batch()
  terms = {**d_step(batch), **g_step(batch)}
  return {k: float(v) for k, v in terms.items()}, [v.numpy() for v in variables]


@pytest.mark.slow
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("gradient_clip", [False, True], ids=["", "clipped"])
def test_micro_batched_steps_equal_the_whole_batch(compiled, gradient_clip):
  whole_terms, whole = _one_d_and_one_g_step(_config(0, gradient_clip), compiled)
  _, initial = _nets(_config(0))
  assert max(np.max(np.abs(a - b)) for a, b in zip(whole, initial)) > 1e-4  # steps did train
  for micro_batch in (2, 1):  # 2 and 4 micro-batches
    cfg = _config(micro_batch, gradient_clip)
    assert cfg.micro_batches() == BATCH // micro_batch
    terms, weights = _one_d_and_one_g_step(cfg, compiled)
    assert terms.keys() == whole_terms.keys()
    for name, value in whole_terms.items():
      assert terms[name] == pytest.approx(value, rel=1e-5, abs=1e-6), (micro_batch, name)
    for a, b in zip(whole, weights):
      np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_micro_batched_gradients_equal_the_whole_batch():
  """The summed generator gradient itself, before any optimizer step."""
  grads = {}
  for micro_batch in (0, 1):
    nets, _ = _nets(_config(micro_batch))
    steps = nets.steps
    variables = nets.generator.trainable_variables
    grads[micro_batch], _ = steps._gradients(  # pylint: disable=protected-access
        _batch(), variables, "g_loss", lambda part, _: steps.generator_losses(part)[0])
  assert len(grads[0]) == len(grads[1]) > 0
  for whole, split in zip(grads[0], grads[1]):
    np.testing.assert_allclose(split.numpy(), whole.numpy(), rtol=1e-4, atol=1e-7)


def _ancestors(op):
  seen, todo = set(), [op]
  while todo:
    o = todo.pop()
    if o not in seen:
      seen.add(o)
      todo.extend(t.op for t in o.inputs)
      todo.extend(o.control_inputs)
  return seen


@pytest.mark.parametrize("step", ["g_step", "d_step"])
def test_traced_step_runs_micro_batches_one_after_another(step):
  """Each micro-batch's forward convs wait for the previous one's filter gradients."""
  nets, _ = _nets(_config(2))  # 2 micro-batches of 2
  fn = tf.function(getattr(nets.steps, step)).get_concrete_function(_batch())
  convs = [op for op in fn.graph.get_operations()
           if op.type == "Conv2D" and "gradient" not in op.name]
  # No generator conv sees the whole batch: 2 samples, rate² times that for the dilated
  # convs (SpaceToBatchND, rates 2 to 16).
  sizes = {op.inputs[0].shape[0] for op in convs if op.name.startswith("inpaint_net")}
  assert sizes == {2 * rate * rate for rate in (1, 2, 4, 8, 16)}
  waiting = [any(a.type == "Conv2DBackpropFilter" for a in _ancestors(op)) for op in convs]
  # Half the forward convs (the second micro-batch's) come after a backward pass.
  assert sum(waiting) == len(convs) // 2, (sum(waiting), len(convs))


def test_sn_patch_keeps_whole_batches():
  """SN-PatchGAN's power iteration runs per critic call: auto does not split, explicit refuses."""
  assert _config(-1, gan="sn_patch").micro_batches() == 1
  assert _config(-1).micro_batches() == 1  # 4 samples of 32², cnum 4: far below the budget
  with pytest.raises(ValueError, match="--micro_batch must be 0 or -1 with --gan sn_patch"):
    _config(2, gan="sn_patch")
