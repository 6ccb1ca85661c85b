"""Losses of DeepFill v1 (ARCHITECTURE.md §5.1–5.4) and the v2 hinge GAN loss (§5.4). Pure functions.

Conventions: images float32 ``[B, H, W, C]`` in [-1, 1]; masks float32
``[B, H, W, 1]`` (or ``[1, H, W, 1]``), **1 = hole**; critic outputs any shape
(``[B, 1]`` for the v1 critics). Nothing here logs, draws random numbers or
reads globals; the interpolation coefficients of the gradient penalty are an
argument.

Precision: every term is computed in float32 whatever the networks' dtype policy
(``model/precision.py``): inputs are cast to float32 first (a no-op for the generator's
images and the critics' scores, which the networks return as float32). A bfloat16 mean
over a batch of images would keep only about three significant digits.
"""
import numpy as np
import tensorflow as tf

from model.training.config import L1_REGIONS

GP_EPSILON = 1e-8


def _float32(*tensors):
  """The arguments as float32 tensors (None stays None)."""
  return [None if t is None else tf.cast(t, tf.float32) for t in tensors]


def spatial_discount_weights(height, width, gamma=0.9):
  """Spatially discounted L1 weights for a ``height x width`` bbox crop (ARCHITECTURE.md §5.1).

  ``w[i, j] = max(gamma ** min(i, height - i), gamma ** min(j, width - j))``:
  gamma to the distance from the nearest bbox edge, one-off asymmetric as in the
  release (row 0 has distance 0, the last row distance 1). Closed form, no
  iteration. ``gamma = 0.9`` is the released code's value (``inpaint.yml``);
  the paper states 0.99. ``gamma = 1`` gives all ones (``DISCOUNTED_MASK: False``).

  Args:
    height, width: Python ints, the crop size (128 x 128 in the release).
    gamma: discount per pixel of distance, in (0, 1].
  Returns:
    float32 constant ``[1, height, width, 1]``. For gamma 0.9 at 128x128: corner 1.0,
    (127, 127) 0.9, centre (64, 64) 0.9**64 = 0.00118, mean 0.253.
  """
  rows = np.arange(height)
  cols = np.arange(width)
  dist_r = np.minimum(rows, height - rows).astype(np.float64)
  dist_c = np.minimum(cols, width - cols).astype(np.float64)
  weights = np.maximum(gamma ** dist_r[:, None], gamma ** dist_c[None, :])
  return tf.constant(weights[None, :, :, None], tf.float32)


def discounted_l1(target, pred, weights):
  """``mean(|target - pred| * weights)`` over every element (ARCHITECTURE.md §5.1).

  ``weights`` broadcasts against ``[B, h, w, C]``, e.g. ``spatial_discount_weights``.
  """
  target, pred, weights = _float32(target, pred, weights)
  return tf.reduce_mean(tf.abs(target - pred) * weights)


def known_region_l1(target, pred, mask):
  """L1 over the known pixels, normalised by the known area (ARCHITECTURE.md §5.2).

  ``mean(|target - pred| * (1 - mask)) / mean(1 - mask)``; the numerator averages
  over ``[B, H, W, C]``, the denominator over the mask ``[B|1, H, W, 1]``, so the
  result is the mean absolute error per known pixel and channel. With per-sample
  masks the known areas are pooled over the batch. Returns 0 if nothing is known.
  """
  target, pred = _float32(target, pred)
  known = 1.0 - tf.cast(mask, tf.float32)
  return tf.math.divide_no_nan(tf.reduce_mean(tf.abs(target - pred) * known),
                               tf.reduce_mean(known))


def per_sample_known_l1(target, pred, mask):
  """Known-region L1 normalised by **each sample's** known area, averaged over samples.

  ``mean_b(mean_hwc(|target - pred| * (1 - mask_b)) / mean_hw(1 - mask_b))``. Equals
  :func:`known_region_l1` when all samples share one mask (the release), and, unlike
  it, splits exactly over replicas when masks differ (each replica's mean of
  per-sample terms, averaged, is the global mean). A sample with no known pixel adds 0.
  """
  target, pred = _float32(target, pred)
  known = 1.0 - tf.cast(mask, tf.float32)
  num = tf.reduce_mean(tf.abs(target - pred) * known, axis=[1, 2, 3])
  den = tf.reduce_mean(known, axis=[1, 2, 3])
  return tf.reduce_mean(tf.math.divide_no_nan(num, den))


def hole_l1(target, pred, mask):
  """L1 over the hole pixels, normalised by **each sample's** hole area, averaged over samples.

  ``mean_b(mean_hwc(|target - pred| * mask_b) / mean_hw(mask_b))``: every hole
  pixel of every sample gets the same weight whatever the mask's shape, so
  free-form strokes outside the local box are supervised too (the v2 release
  uses an L1 over the whole image instead). A sample with no hole adds 0.
  """
  target, pred, mask = _float32(target, pred, mask)
  num = tf.reduce_mean(tf.abs(target - pred) * mask, axis=[1, 2, 3])
  den = tf.reduce_mean(mask, axis=[1, 2, 3])
  return tf.reduce_mean(tf.math.divide_no_nan(num, den))


def wgan_d_loss(real, fake):
  """WGAN critic loss ``mean(D(fake)) - mean(D(real))`` (to minimise)."""
  real, fake = _float32(real, fake)
  return tf.reduce_mean(fake) - tf.reduce_mean(real)


def wgan_g_loss(fake):
  """WGAN generator loss ``-mean(D(fake))``."""
  (fake,) = _float32(fake)
  return -tf.reduce_mean(fake)


def hinge_d_loss(real, fake):
  """SN-PatchGAN hinge critic loss ``0.5 mean(relu(1 - real)) + 0.5 mean(relu(1 + fake))`` (§5.4)."""
  real, fake = _float32(real, fake)
  return 0.5 * tf.reduce_mean(tf.nn.relu(1.0 - real)) + 0.5 * tf.reduce_mean(tf.nn.relu(1.0 + fake))


def hinge_g_loss(fake):
  """SN-PatchGAN generator loss ``-mean(D(fake))`` (ARCHITECTURE.md §5.4)."""
  (fake,) = _float32(fake)
  return -tf.reduce_mean(fake)


def gradient_penalty(critic_fn, real, fake, mask, alpha, epsilon=GP_EPSILON):
  """Masked WGAN-GP penalty ``mean_b((sqrt(sum_hwc g^2 * mask) - 1)^2)`` (ARCHITECTURE.md §5.3).

  ``g`` is the gradient of ``critic_fn`` at ``x = real + alpha * (fake - real)``.
  Restricting the norm to hole pixels (mask 1) follows the release. Unlike the
  release (which had none), ``epsilon`` is added inside the sqrt so that the
  gradient stays finite (the release's gives NaN) when ``g`` vanishes on the hole.
  It raises the norm by at most sqrt(epsilon) = 1e-4 (near zero) and by about
  epsilon / 2 when the norm is near 1, so the penalty is practically unchanged.

  Args:
    critic_fn: callable ``[B, H, W, C] -> [B, ...]``; samples must be independent
      (no batch-mixing layers), since the gradient of the summed output is used.
    real, fake: float32 ``[B, H, W, C]`` (whole images or local crops).
    mask: float32 ``[B|1, H, W, 1]``, 1 = hole, or None for the plain (unmasked) penalty.
    alpha: float32 ``[B, 1, 1, 1]``, one U[0, 1) draw per sample, supplied by the caller.
    epsilon: added to the squared norm before the sqrt.
  Returns:
    scalar float32 penalty (not multiplied by lambda).
  """
  # float32 interpolation and norm whatever the critic's policy: the critic casts x to its
  # compute dtype inside the tape, so the gradient comes back as float32.
  real, fake, alpha = _float32(real, fake, alpha)
  x = real + alpha * (fake - real)
  with tf.GradientTape() as tape:
    tape.watch(x)
    score = critic_fn(x)
  grads = tf.cast(tape.gradient(score, x), tf.float32)
  squared = tf.square(grads)
  if mask is not None:
    squared = squared * tf.cast(mask, squared.dtype)
  norm = tf.sqrt(tf.reduce_sum(squared, axis=[1, 2, 3]) + epsilon)
  return tf.reduce_mean(tf.square(norm - 1.0))


def generator_loss_terms(x, x_stage1, x_stage2, mask, local_x, local_x_stage1, local_x_stage2,
                         sd_weights, d_fake_global=None, d_fake_local=None, d_fake_patch=None,
                         coarse_l1_alpha=1.2, l1_loss_alpha=1.2, ae_loss_alpha=1.2,
                         gan_loss_alpha=0.001, global_wgan_loss_alpha=1.0,
                         pretrain_coarse=False, per_sample_known=False, l1_region="box",
                         adversarial=True):
  """All generator loss terms (ARCHITECTURE.md §5.4), as a dict of scalars.

  Args:
    x, x_stage1, x_stage2: real image and the raw (not composited) generator
      outputs, ``[B, H, W, 3]``.
    mask: ``[B|1, H, W, 1]``, 1 = hole.
    local_x, local_x_stage1, local_x_stage2: the same three cropped to each
      sample's bbox (``masks.local_patch``), ``[B, h, w, 3]``.
    sd_weights: ``spatial_discount_weights(h, w, gamma)`` (or ones), broadcastable.
    d_fake_global, d_fake_local: WGAN critic outputs on the completed image and its
      crop (v1). d_fake_patch: instead, the SN-PatchGAN output (v2 hinge loss).
      All unused (may be None) when ``pretrain_coarse``.
    coarse_l1_alpha, l1_loss_alpha, ae_loss_alpha, gan_loss_alpha,
      global_wgan_loss_alpha: weights of ``inpaint.yml``.
    pretrain_coarse: ``PRETRAIN_COARSE_NETWORK``: drop the stage-2 and GAN terms.
    l1_region: ``"box"``: the v1 discounted L1 inside the local box (the release's
      formula; covers the whole hole only when the hole is that box); ``"hole"``:
      :func:`hole_l1` over every hole pixel of the whole image (any mask shape).
    adversarial: False drops the GAN terms (reconstruction-only training).
    per_sample_known: normalise the known-region L1 per sample
      (:func:`per_sample_known_l1`, what training uses) instead of pooled over the
      batch (:func:`known_region_l1`, the release's formula); equal for one shared mask.
  Returns:
    dict with ``l1_loss = coarse_l1_alpha * dl1(stage1) + dl1(stage2)`` (local,
    discounted), ``ae_loss = coarse_l1_alpha * kl1(stage1) + kl1(stage2)`` (known
    region), the unweighted GAN terms (``g_global`` and ``g_local``, or ``g_patch``;
    none when ``pretrain_coarse``), ``gan_loss = gan_loss_alpha * (global_wgan_loss_alpha
    * g_global + g_local)`` (or ``gan_loss_alpha * g_patch``) and the total
    ``g_loss = gan_loss + l1_loss_alpha * l1_loss + ae_loss_alpha * ae_loss``.
  """
  if l1_region not in L1_REGIONS:
    raise ValueError(f"l1_region must be one of {L1_REGIONS}, got {l1_region!r}")
  known_l1 = per_sample_known_l1 if per_sample_known else known_region_l1

  def hole_term(local_pred, pred):
    if l1_region == "hole":
      return hole_l1(x, pred, mask)
    return discounted_l1(local_x, local_pred, sd_weights)

  l1_loss = coarse_l1_alpha * hole_term(local_x_stage1, x_stage1)
  ae_loss = coarse_l1_alpha * known_l1(x, x_stage1, mask)
  terms = {}
  gan_loss = tf.constant(0.0)
  if not pretrain_coarse:
    l1_loss += hole_term(local_x_stage2, x_stage2)
    ae_loss += known_l1(x, x_stage2, mask)
  if pretrain_coarse or not adversarial:
    pass  # reconstruction terms only
  elif d_fake_patch is not None:
    terms["g_patch"] = hinge_g_loss(d_fake_patch)
    gan_loss = gan_loss_alpha * terms["g_patch"]
  else:
    terms["g_global"] = wgan_g_loss(d_fake_global)
    terms["g_local"] = wgan_g_loss(d_fake_local)
    gan_loss = gan_loss_alpha * (global_wgan_loss_alpha * terms["g_global"]
                                 + terms["g_local"])
  terms.update(l1_loss=l1_loss, ae_loss=ae_loss, gan_loss=gan_loss,
               g_loss=gan_loss + l1_loss_alpha * l1_loss + ae_loss_alpha * ae_loss)
  return terms


def critic_loss_terms(d_real_global, d_fake_global, d_real_local, d_fake_local,
                      gp_global, gp_local, gp_lambda=10.0):
  """DeepFill v1 critic loss terms (ARCHITECTURE.md §5.4), as a dict of scalars.

  Returns ``d_global``, ``d_local`` (WGAN), ``gp = gp_global + gp_local`` and
  ``d_loss = d_global + d_local + gp_lambda * gp``.
  """
  d_global = wgan_d_loss(d_real_global, d_fake_global)
  d_local = wgan_d_loss(d_real_local, d_fake_local)
  gp = gp_global + gp_local
  return {"d_global": d_global, "d_local": d_local, "gp": gp,
          "d_loss": d_global + d_local + gp_lambda * gp}
