"""Everything a training run trains, built in one place for train.py, the tests and the bench.

:func:`build` makes the generator, the critics of the chosen GAN (none for
reconstruction-only training), the two Adam optimizers with every variable
created (Keras 3 cannot restore into unbuilt objects) and the per-replica step
functions; :func:`distributed_steps` wraps those in ``tf.function`` for a
``tf.distribute`` strategy.

Precision (``cfg.train.precision``, ``model/precision.py``): every network is built with that
Keras dtype policy (passed to its layers, no global policy is set); ``mixed_float16`` wraps
both optimizers in a ``keras.optimizers.LossScaleOptimizer`` (dynamic loss scaling).
"""
import dataclasses

import keras
import tensorflow as tf

from model import critics as critics_lib
from model import generator as generator_lib
from model import precision as precision_lib
from model.training import step as step_lib


@dataclasses.dataclass
class Nets:
  """The trained objects of a run and its step functions (``steps``)."""
  generator: keras.Model
  critics: dict
  g_opt: keras.optimizers.Optimizer
  d_opt: keras.optimizers.Optimizer
  steps: step_lib.StepFunctions

  def checkpoint_objects(self):
    """Keyword arguments of the run's ``tf.train.Checkpoint`` (names fixed: old runs resume).

    Without critics the critic optimizer is left out (it never steps).
    """
    objects = {"generator": self.generator, "g_opt": self.g_opt}
    if self.critics:
      objects["d_opt"] = self.d_opt
    return {**objects, **{f"critic_{name}": c for name, c in self.critics.items()}}


def build_critics(cfg):
  """The critics of ``cfg.loss.gan`` for a ``Config`` (an empty dict without adversarial loss)."""
  loss, data = cfg.loss, cfg.data
  if not loss.adversarial:
    return {}
  dtype = precision_lib.policy(cfg.train.precision)
  if loss.gan == "sn_patch":
    return {"patch": critics_lib.SNPatchCritic(cnum=loss.critic_cnum, in_channels=4,
                                               dtype=dtype)}
  return {
      "global": critics_lib.GlobalCritic(cnum=loss.critic_cnum, input_size=data.img_size,
                                         in_channels=4 if loss.gan_with_mask else 3,
                                         dtype=dtype),
      "local": critics_lib.LocalCritic(cnum=loss.critic_cnum,
                                       input_size=(data.box_height, data.box_width),
                                       dtype=dtype),
  }


def build(cfg, num_replicas=1, make_optimizer=None):
  """Builds a run's :class:`Nets` from a ``Config``; call under the strategy's scope.

  Args:
    cfg: ``model.training.config.Config``.
    num_replicas: replicas in sync (each replica's loss is divided by it).
    make_optimizer: optional ``() -> keras optimizer``, called once per optimizer;
      default Adam with ``cfg.train``'s learning rates (``critic_lr`` for the critics) and betas.
      Under ``mixed_float16`` either is wrapped in a ``LossScaleOptimizer``.

  Raises ``UserError`` when this machine cannot run ``cfg.train.precision``
  (``model.precision.ensure_supported``).
  """
  t = cfg.train
  precision_lib.ensure_supported(t.precision)
  if make_optimizer is None:
    def make_optimizer(lr=t.lr):
      return keras.optimizers.Adam(lr, beta_1=t.beta1, beta_2=t.beta2)
    g_opt, d_opt = make_optimizer(), make_optimizer(t.critic_lr or t.lr)
  else:
    g_opt, d_opt = make_optimizer(), make_optimizer()
  if precision_lib.compute_dtype(t.precision) == "float16":
    g_opt, d_opt = (keras.optimizers.LossScaleOptimizer(o) for o in (g_opt, d_opt))
  gen = generator_lib.build_generator(cfg.model, dtype=t.precision)
  critics = build_critics(cfg)
  if "patch" in critics:  # the only critic whose weights need a first call
    s = cfg.data.img_size
    critics["patch"](tf.zeros([1, s, s, 4]))
  g_opt.build(gen.trainable_variables)
  d_opt.build([v for c in critics.values() for v in c.trainable_variables])
  steps = step_lib.StepFunctions(
      gen, critics, g_opt, d_opt, cfg.loss, (cfg.data.box_height, cfg.data.box_width),
      num_replicas=num_replicas,
      gradient_clip=t.gradient_clip_value if t.gradient_clip else None,
      micro_batches=cfg.micro_batches(num_replicas))
  return Nets(gen, critics, g_opt, d_opt, steps)


def distributed_steps(strategy, nets, step):
  """``(critic_step, generator_step, warmup_step)``: ``tf.function``s of one distributed batch each.

  Each runs its per-replica step under ``strategy`` and returns the loss terms
  summed over replicas (each replica's terms are already divided by their number,
  so the sums are global-batch means); ``generator_step`` also adds 1 to ``step``;
  ``warmup_step`` is a critic step that adds 1 to ``step`` (``--critic_warmup``).
  """
  def reduce(terms):
    return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in terms.items()}

  @tf.function
  def critic_step(batch):
    return reduce(strategy.run(nets.steps.d_step, args=(batch,)))

  @tf.function
  def generator_step(batch):
    terms = reduce(strategy.run(nets.steps.g_step, args=(batch,)))
    step.assign_add(1)
    return terms

  @tf.function
  def warmup_step(batch):  # a critic update that counts as a step: the generator is frozen
    terms = reduce(strategy.run(nets.steps.d_step, args=(batch,)))
    step.assign_add(1)
    return terms

  return critic_step, generator_step, warmup_step
