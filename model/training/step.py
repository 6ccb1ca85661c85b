"""One critic step and one generator step of DeepFill training (ARCHITECTURE.md §5, §6.3).

Per replica: ``model.training.nets.distributed_steps`` runs them under a strategy. Batches
are dicts built by :func:`model.training.inputs.add_training_inputs`:
``image`` [b, S, S, 3] in [-1, 1], ``mask`` [b, S, S, 1] (1 = hole), ``bbox``
[b, 4] int32 (top, left, h, w) of the local-critic crop, and the per-sample
gradient-penalty mixing coefficients ``alpha_global`` / ``alpha_local`` [b, 1, 1, 1].
Every random draw lives in the batch, so a step is a pure function of the
batch and the weights: single-device and multi-replica runs agree.

Losses are per-replica means divided by ``num_replicas`` (the optimizers sum
gradients over replicas, so the update equals the global-batch mean). With
``micro_batches`` > 1 a replica's batch is split the same way once more: each
micro-batch's loss is divided by their number too and the gradients are summed
before the optimizer runs, so the update is the same while only one micro-batch's
activations are held for back-propagation (ARCHITECTURE.md §6.3).

Precision: the networks compute in their dtype policy's compute dtype, but the generator's
images and the critics' scores come back as float32, so every loss term, the gradient
penalty and the composite are float32. With a ``keras.optimizers.LossScaleOptimizer``
(``mixed_float16``) the loss is multiplied by its loss scale before the gradients are taken;
the optimizer divides them again (and skips a step whose gradients are not finite).
"""
import keras
import tensorflow as tf

from model.training import losses as losses_lib
from model.training import masks as masks_lib


class StepFunctions:
  """Builds the per-replica critic and generator steps.

  Args:
    generator: ``InpaintGenerator``.
    critics: dict with ``global`` and ``local`` (WGAN-GP) or ``patch`` (SN-PatchGAN);
      empty for reconstruction-only training (``gan="none"``).
    g_opt, d_opt: Keras optimizers (created under the strategy scope).
    settings: :class:`model.training.config.LossConfig`.
    box_size: (h, w) of the local crop.
    num_replicas: replicas in sync (loss scaling).
    gradient_clip: None or a max global norm per step (of the summed gradient).
    micro_batches: equal parts of each replica's batch run one after another
      (``Config.micro_batches``); the batch size must be divisible by it.
  """

  def __init__(self, generator, critics, g_opt, d_opt, settings, box_size, num_replicas=1,
               gradient_clip=None, micro_batches=1):
    self.generator = generator
    self.critics = critics
    self.g_opt = g_opt
    self.d_opt = d_opt
    self.s = settings
    self.box_size = tuple(box_size)
    self.num_replicas = num_replicas
    self.gradient_clip = gradient_clip
    self.micro_batches = int(micro_batches)
    self.sd_weights = losses_lib.spatial_discount_weights(*self.box_size,
                                                          gamma=settings.discount_gamma)

  def critic_variables(self):
    return [v for c in self.critics.values() for v in c.trainable_variables]

  def forward(self, batch, training=True):
    """Runs the generator; returns images, mask, stage outputs, completed image."""
    x = batch["image"]
    mask = batch["mask"]
    x_in = x * (1.0 - mask)
    x1, x2, offsets = self.generator((x_in, mask), training=training)
    complete = x2 * mask + x_in * (1.0 - mask)
    return x, mask, x1, x2, complete, offsets

  def _local(self, batch, *images):
    bh, bw = self.box_size
    return [tf.ensure_shape(masks_lib.local_patch(im, batch["bbox"]), [None, bh, bw, im.shape[-1]])
            for im in images]

  def _global_input(self, image, mask):
    if self.s.gan_with_mask:
      return tf.concat([image, mask], axis=-1)
    return image

  def critic_losses(self, batch, complete, training=True):
    """Critic loss terms for real ``batch['image']`` vs ``complete`` (ARCHITECTURE.md §5.4)."""
    x, mask = batch["image"], batch["mask"]
    if self.s.gan == "sn_patch":
      patch = self.critics["patch"]
      both = patch(tf.concat([tf.concat([x, mask], -1), tf.concat([complete, mask], -1)], 0),
                   training=training)
      real, fake = tf.split(both, 2, axis=0)
      d_loss = losses_lib.hinge_d_loss(real, fake)
      return {"d_loss": d_loss, "d_patch": d_loss}
    glob, loc = self.critics["global"], self.critics["local"]
    local_x, local_complete, local_mask = self._local(batch, x, complete, mask)
    g_in = tf.concat([self._global_input(x, mask), self._global_input(complete, mask)], 0)
    real_g, fake_g = tf.split(glob(g_in, training=training), 2, axis=0)
    real_l, fake_l = tf.split(loc(tf.concat([local_x, local_complete], 0), training=training),
                              2, axis=0)
    gp_global = losses_lib.gradient_penalty(
        lambda t: glob(self._global_input(t, mask), training=training), x, complete, mask,
        batch["alpha_global"])
    gp_local = losses_lib.gradient_penalty(
        lambda t: loc(t, training=training), local_x, local_complete, local_mask,
        batch["alpha_local"])
    return losses_lib.critic_loss_terms(real_g, fake_g, real_l, fake_l, gp_global, gp_local,
                                        gp_lambda=self.s.wgan_gp_lambda)

  def generator_losses(self, batch, training=True):
    """Generator loss terms (ARCHITECTURE.md §5.4) and the forward results."""
    x, mask, x1, x2, complete, offsets = self.forward(batch, training)
    s = self.s
    # The box crops feed only the v1 box L1 (the WGAN local critic crops its own input).
    local_x = local_x1 = local_x2 = None
    if s.l1_loss_region == "box":
      local_x, local_x1, local_x2 = self._local(batch, x, x1, x2)
    critic_outputs = {}
    if s.adversarial:
      if s.gan == "sn_patch":
        critic_outputs["d_fake_patch"] = self.critics["patch"](
            tf.concat([complete, mask], -1), training=training)
      else:
        (local_complete,) = self._local(batch, complete)
        critic_outputs["d_fake_global"] = self.critics["global"](
            self._global_input(complete, mask), training=training)
        critic_outputs["d_fake_local"] = self.critics["local"](local_complete, training=training)
    terms = losses_lib.generator_loss_terms(
        x, x1, x2, mask, local_x, local_x1, local_x2, self.sd_weights, **critic_outputs,
        coarse_l1_alpha=s.coarse_l1_alpha, l1_loss_alpha=s.l1_loss_alpha,
        ae_loss_alpha=s.ae_loss_alpha, gan_loss_alpha=s.gan_loss_alpha,
        global_wgan_loss_alpha=s.global_wgan_loss_alpha, pretrain_coarse=s.pretrain_coarse_network,
        per_sample_known=True, l1_region=s.l1_loss_region, adversarial=s.adversarial)
    return terms, (x, mask, x1, x2, complete, offsets)

  def _micro_batches(self, batch):
    """``batch`` split into ``micro_batches`` equal dicts along the batch axis."""
    n = self.micro_batches
    if n == 1:
      return [batch]
    parts = {k: tf.split(v, n, axis=0) for k, v in batch.items()}
    return [{k: parts[k][i] for k in batch} for i in range(n)]

  def _gradients(self, batch, variables, loss_key, losses, prepare=None, opt=None):
    """Summed gradients of ``loss_key`` over the micro-batches, and the mean loss terms.

    ``losses(part, prepared)`` returns a dict of loss terms of one micro-batch (run
    under the tape); ``prepare(part)`` runs before, outside the tape. A micro-batch
    starts once the previous one's gradients exist (control dependency), so that a
    graph holds one micro-batch's activations at a time. Loss terms and gradients
    are divided by ``micro_batches * num_replicas``; the gradients are multiplied by the loss
    scale of ``opt`` when it is a ``LossScaleOptimizer``.
    """
    scale = self.micro_batches * self.num_replicas
    grads, terms, previous = None, None, []
    for part in self._micro_batches(batch):
      if previous:
        with tf.control_dependencies(previous):
          part = {k: tf.identity(v) for k, v in part.items()}
      prepared = prepare(part) if prepare else None
      with tf.GradientTape() as tape:
        part_terms = losses(part, prepared)
        scaled = part_terms[loss_key] / scale
        if isinstance(opt, keras.optimizers.LossScaleOptimizer):
          scaled = opt.scale_loss(scaled)
      part_grads = tape.gradient(scaled, variables)
      if grads is None:
        grads, terms = part_grads, part_terms
      else:  # a variable without a gradient has none in every micro-batch
        grads = [g if g is None else g + p for g, p in zip(grads, part_grads)]
        terms = {k: v + part_terms[k] for k, v in terms.items()}
      previous = [g for g in part_grads if g is not None]
    return grads, {k: v / scale for k, v in terms.items()}

  def _apply(self, opt, grads, variables):
    if self.gradient_clip:
      # Loss-scaled gradients are clipped at the scaled threshold: the same as clipping
      # the unscaled ones (and a non-finite norm keeps them non-finite, so the step is skipped).
      limit = self.gradient_clip
      if isinstance(opt, keras.optimizers.LossScaleOptimizer):
        limit = limit * opt.dynamic_scale
      grads, _ = tf.clip_by_global_norm(grads, limit)
    opt.apply_gradients(zip(grads, variables))

  def d_step(self, batch):
    """One critic update on ``batch``; returns its loss terms divided by replicas."""
    def completed(part):  # the generator's forward, outside the critics' tape
      return tf.stop_gradient(self.forward(part, training=True)[4])

    variables = self.critic_variables()
    grads, terms = self._gradients(batch, variables, "d_loss", self.critic_losses,
                                   prepare=completed, opt=self.d_opt)
    self._apply(self.d_opt, grads, variables)
    return terms

  def g_step(self, batch):
    """One generator update on ``batch``; returns its loss terms divided by replicas."""
    variables = self.generator.trainable_variables
    grads, terms = self._gradients(batch, variables, "g_loss",
                                   lambda part, _: self.generator_losses(part)[0],
                                   opt=self.g_opt)
    self._apply(self.g_opt, grads, variables)
    return terms
