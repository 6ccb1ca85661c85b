"""Tests for model/training/losses.py against hand-computed NumPy values (ARCHITECTURE.md §5)."""
import numpy as np
import pytest
import tensorflow as tf

from model.training import losses

RNG = np.random.default_rng(0)


def _rand(*shape, low=-1.0, high=1.0):
  return RNG.uniform(low, high, shape).astype(np.float32)


def _masks(b, h, w):
  """Per-sample rectangular hole masks [b, h, w, 1], 1 = hole, all different."""
  m = np.zeros((b, h, w, 1), np.float32)
  for i in range(b):
    m[i, i:i + h // 2, 1 + i:w - 1, 0] = 1.0
  return m


# ---------------------------------------------------------------- spatial discount


def test_spatial_discount_values_at_128():
  w = losses.spatial_discount_weights(128, 128, gamma=0.9).numpy()
  assert w.shape == (1, 128, 128, 1) and w.dtype == np.float32
  w = w[0, :, :, 0]
  assert w[0, 0] == pytest.approx(1.0)
  assert w[127, 127] == pytest.approx(0.9)
  assert w[64, 64] == pytest.approx(0.9 ** 64, rel=1e-5)
  assert w[64, 64] == pytest.approx(0.00118, abs=5e-6)
  assert w.mean() == pytest.approx(0.253, abs=5e-4)
  assert w[16:112, 16:112].mean() == pytest.approx(0.059, abs=5e-4)
  # Symmetric about row/column 64 (distance min(i, 128 - i)); row 0 is the odd one out.
  np.testing.assert_array_equal(w[1:], w[1:][::-1])
  np.testing.assert_array_equal(w, w.T)


def test_spatial_discount_matches_release_loop():
  h, w, gamma = 11, 6, 0.8
  ref = np.ones((h, w))
  for i in range(h):
    for j in range(w):
      ref[i, j] = max(gamma ** min(i, h - i), gamma ** min(j, w - j))
  got = losses.spatial_discount_weights(h, w, gamma).numpy()[0, :, :, 0]
  np.testing.assert_allclose(got, ref, rtol=1e-6)
  np.testing.assert_array_equal(losses.spatial_discount_weights(4, 5, 1.0).numpy(), 1.0)


# ---------------------------------------------------------------- L1 terms


def test_discounted_l1():
  t, p = _rand(2, 8, 8, 3), _rand(2, 8, 8, 3)
  weights = losses.spatial_discount_weights(8, 8, 0.9)
  expected = np.mean(np.abs(t - p) * weights.numpy())
  assert float(losses.discounted_l1(t, p, weights)) == pytest.approx(expected, rel=1e-6)


def test_known_region_l1_normalises_by_known_area():
  t, p = _rand(3, 8, 8, 3), _rand(3, 8, 8, 3)
  m = _masks(3, 8, 8)
  known = 1.0 - m
  expected = np.mean(np.abs(t - p) * known) / np.mean(known)
  assert float(losses.known_region_l1(t, p, m)) == pytest.approx(expected, rel=1e-6)
  # Equivalent: mean absolute error per known pixel and channel.
  per_pixel = np.abs(t - p)[np.broadcast_to(known, t.shape) > 0].mean()
  assert float(losses.known_region_l1(t, p, m)) == pytest.approx(per_pixel, rel=1e-5)
  # A shared [1, H, W, 1] mask (the release's shape) broadcasts.
  expected1 = np.mean(np.abs(t - p) * known[:1]) / np.mean(known[:1])
  assert float(losses.known_region_l1(t, p, m[:1])) == pytest.approx(expected1, rel=1e-6)
  # Nothing known: 0, not NaN.
  assert float(losses.known_region_l1(t, p, np.ones_like(m))) == 0.0


def test_per_sample_known_l1():
  t, p = _rand(3, 8, 8, 3), _rand(3, 8, 8, 3)
  m = _masks(3, 8, 8)
  m[2] = 1.0                                     # sample 2 has nothing known: adds 0
  per_sample = [np.abs(t[i] - p[i])[np.broadcast_to(1 - m[i], t[i].shape) > 0].mean()
                if (1 - m[i]).any() else 0.0 for i in range(3)]
  got = float(losses.per_sample_known_l1(t, p, m))
  assert got == pytest.approx(np.mean(per_sample), rel=1e-5)
  # Differs from the pooled form when masks differ ...
  assert abs(got - float(losses.known_region_l1(t, p, m))) > 1e-3
  # ... and equals it when all samples share one mask.
  shared = np.repeat(m[:1], 3, axis=0)
  assert float(losses.per_sample_known_l1(t, p, shared)) == pytest.approx(
      float(losses.known_region_l1(t, p, shared)), rel=1e-6)
  # Split over two "replicas" (halves), averaged: equals the whole batch.
  t4, p4, m4 = _rand(4, 8, 8, 3), _rand(4, 8, 8, 3), _masks(4, 8, 8)
  halves = [float(losses.per_sample_known_l1(t4[i:i + 2], p4[i:i + 2], m4[i:i + 2]))
            for i in (0, 2)]
  assert np.mean(halves) == pytest.approx(float(losses.per_sample_known_l1(t4, p4, m4)), rel=1e-6)


# ---------------------------------------------------------------- GAN losses


def test_wgan_and_hinge_losses():
  real, fake = _rand(4, 1, low=-2, high=2), _rand(4, 1, low=-2, high=2)
  assert float(losses.wgan_d_loss(real, fake)) == pytest.approx(fake.mean() - real.mean(), abs=1e-6)
  assert float(losses.wgan_g_loss(fake)) == pytest.approx(-fake.mean(), abs=1e-6)
  expected = 0.5 * np.maximum(1 - real, 0).mean() + 0.5 * np.maximum(1 + fake, 0).mean()
  assert float(losses.hinge_d_loss(real, fake)) == pytest.approx(expected, abs=1e-6)
  assert float(losses.hinge_g_loss(fake)) == pytest.approx(-fake.mean(), abs=1e-6)


# ---------------------------------------------------------------- gradient penalty


def _linear_critic(w):
  return lambda x: tf.reduce_sum(x * w, axis=[1, 2, 3])[:, None]


def test_gp_is_zero_for_critic_1_lipschitz_on_the_hole():
  b, h, w, c = 3, 8, 8, 3
  mask = _masks(b, h, w)
  weights = _rand(b, h, w, c)
  # Unit norm over each sample's hole pixels; arbitrary (large) outside the hole.
  hole = np.broadcast_to(mask, weights.shape)
  norms = np.sqrt((weights ** 2 * hole).sum(axis=(1, 2, 3), keepdims=True))
  weights = np.where(hole > 0, weights / norms, 5.0 * weights).astype(np.float32)
  alpha = RNG.uniform(size=(b, 1, 1, 1)).astype(np.float32)
  gp = losses.gradient_penalty(_linear_critic(weights), _rand(b, h, w, c), _rand(b, h, w, c),
                               mask, alpha)
  assert float(gp) < 1e-10
  # Without the mask restriction the same critic is penalised.
  assert float(losses.gradient_penalty(_linear_critic(weights), _rand(b, h, w, c),
                                       _rand(b, h, w, c), None, alpha)) > 1.0


def test_gp_matches_numpy_for_linear_critic():
  b, h, w, c = 4, 6, 5, 3
  mask = _masks(b, h, w)
  weights = _rand(b, h, w, c)
  alpha = RNG.uniform(size=(b, 1, 1, 1)).astype(np.float32)
  eps = losses.GP_EPSILON
  norm = np.sqrt((weights.astype(np.float64) ** 2 * mask).sum(axis=(1, 2, 3)) + eps)
  expected = np.mean((norm - 1.0) ** 2)
  gp = losses.gradient_penalty(_linear_critic(weights), _rand(b, h, w, c), _rand(b, h, w, c),
                               mask, alpha)
  assert float(gp) == pytest.approx(expected, rel=1e-5)
  full = np.sqrt((weights.astype(np.float64) ** 2).sum(axis=(1, 2, 3)) + eps)
  gp_full = losses.gradient_penalty(_linear_critic(weights), _rand(b, h, w, c),
                                    _rand(b, h, w, c), None, alpha)
  assert float(gp_full) == pytest.approx(np.mean((full - 1.0) ** 2), rel=1e-5)


def test_gp_uses_per_sample_alpha_interpolation():
  # D(x) = 0.5 * sum(x^2) has gradient x, so the norm depends on where x is taken.
  b, h, w, c = 3, 4, 4, 2
  real, fake, mask = _rand(b, h, w, c), _rand(b, h, w, c), _masks(b, h, w)
  alpha = np.array([0.0, 0.3, 1.0], np.float32).reshape(b, 1, 1, 1)
  critic = lambda x: 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])
  interp = real + alpha * (fake - real)
  norm = np.sqrt((interp.astype(np.float64) ** 2 * mask).sum(axis=(1, 2, 3)) + losses.GP_EPSILON)
  gp = losses.gradient_penalty(critic, real, fake, mask, alpha)
  assert float(gp) == pytest.approx(np.mean((norm - 1.0) ** 2), rel=1e-5)
  gp_fn = tf.function(losses.gradient_penalty, autograph=False)
  assert float(gp_fn(critic, real, fake, mask, alpha)) == pytest.approx(float(gp), rel=1e-6)


def test_gp_gradient_is_finite_when_critic_is_flat_on_the_hole():
  b, h, w, c = 2, 4, 4, 3
  mask = _masks(b, h, w)
  v = tf.Variable(np.where(np.broadcast_to(mask, (b, h, w, c)) > 0, 0.0, 1.0).astype(np.float32))
  real, fake = _rand(b, h, w, c), _rand(b, h, w, c)
  alpha = np.full((b, 1, 1, 1), 0.5, np.float32)

  def gp_and_grad(epsilon):
    with tf.GradientTape() as tape:
      gp = losses.gradient_penalty(lambda x: tf.reduce_sum(x * v, axis=[1, 2, 3]),
                                   real, fake, mask, alpha, epsilon=epsilon)
    return float(gp), tape.gradient(gp, v).numpy()

  gp, grad = gp_and_grad(losses.GP_EPSILON)
  assert gp == pytest.approx((np.sqrt(losses.GP_EPSILON) - 1.0) ** 2, rel=1e-6)
  assert np.isfinite(grad).all()
  # The release's bare sqrt (epsilon 0) gives NaN gradients here.
  _, grad0 = gp_and_grad(0.0)
  assert np.isnan(grad0).any()


# ---------------------------------------------------------------- combined terms


def test_generator_loss_terms_match_spec_formula():
  b, h, w, lh, lw = 2, 16, 16, 8, 8
  x, x1, x2 = _rand(b, h, w, 3), _rand(b, h, w, 3), _rand(b, h, w, 3)
  lx, lx1, lx2 = x[:, 2:10, 4:12], x1[:, 2:10, 4:12], x2[:, 2:10, 4:12]
  mask = _masks(b, h, w)
  sd = losses.spatial_discount_weights(lh, lw, 0.9)
  dg, dl = _rand(b, 1), _rand(b, 1)
  terms = losses.generator_loss_terms(x, x1, x2, mask, lx, lx1, lx2, sd, dg, dl)
  sdn, known = sd.numpy(), 1.0 - mask
  l1 = 1.2 * np.mean(np.abs(lx - lx1) * sdn) + np.mean(np.abs(lx - lx2) * sdn)
  ae = (1.2 * np.mean(np.abs(x - x1) * known) + np.mean(np.abs(x - x2) * known)) / known.mean()
  gan = 0.001 * (1.0 * -dg.mean() + -dl.mean())
  expected = {"l1_loss": l1, "ae_loss": ae, "g_global": -dg.mean(), "g_local": -dl.mean(),
              "gan_loss": gan, "g_loss": gan + 1.2 * l1 + 1.2 * ae}
  assert set(terms) == set(expected)
  for key, value in expected.items():
    assert float(terms[key]) == pytest.approx(value, rel=1e-5, abs=1e-8), key

  custom = losses.generator_loss_terms(x, x1, x2, mask, lx, lx1, lx2, sd, dg, dl,
                                       coarse_l1_alpha=1.0, l1_loss_alpha=2.0, ae_loss_alpha=0.5,
                                       gan_loss_alpha=0.1, global_wgan_loss_alpha=3.0)
  l1c = np.mean(np.abs(lx - lx1) * sdn) + np.mean(np.abs(lx - lx2) * sdn)
  aec = (np.mean(np.abs(x - x1) * known) + np.mean(np.abs(x - x2) * known)) / known.mean()
  ganc = 0.1 * (3.0 * -dg.mean() + -dl.mean())
  assert float(custom["g_loss"]) == pytest.approx(ganc + 2.0 * l1c + 0.5 * aec, rel=1e-5)

  pre = losses.generator_loss_terms(x, x1, x2, mask, lx, lx1, lx2, sd, pretrain_coarse=True)
  l1p = 1.2 * np.mean(np.abs(lx - lx1) * sdn)
  aep = 1.2 * np.mean(np.abs(x - x1) * known) / known.mean()
  assert float(pre["gan_loss"]) == 0.0
  assert float(pre["g_loss"]) == pytest.approx(1.2 * l1p + 1.2 * aep, rel=1e-5)


def test_generator_loss_terms_training_variants():
  """Per-sample known-area normalisation, the hinge (SN-PatchGAN) term, pretrain keys."""
  b, h, w = 3, 16, 16
  x, x1, x2 = _rand(b, h, w, 3), _rand(b, h, w, 3), _rand(b, h, w, 3)
  lx, lx1, lx2 = x[:, 2:10, 4:12], x1[:, 2:10, 4:12], x2[:, 2:10, 4:12]
  mask = _masks(b, h, w)
  sd = losses.spatial_discount_weights(8, 8, 0.9)
  patch = _rand(b, 4, 4, 1)
  terms = losses.generator_loss_terms(x, x1, x2, mask, lx, lx1, lx2, sd, d_fake_patch=patch,
                                      per_sample_known=True)
  assert set(terms) == {"g_patch", "l1_loss", "ae_loss", "gan_loss", "g_loss"}
  known = 1.0 - mask

  def kl1(pred):
    return np.mean([np.mean(np.abs(x[i] - pred[i]) * known[i]) / known[i].mean()
                    for i in range(b)])

  sdn = sd.numpy()
  l1 = 1.2 * np.mean(np.abs(lx - lx1) * sdn) + np.mean(np.abs(lx - lx2) * sdn)
  ae = 1.2 * kl1(x1) + kl1(x2)
  gan = 0.001 * -patch.mean()
  assert float(terms["ae_loss"]) == pytest.approx(ae, rel=1e-5)
  assert float(terms["g_patch"]) == pytest.approx(-patch.mean(), rel=1e-5)
  assert float(terms["g_loss"]) == pytest.approx(gan + 1.2 * l1 + 1.2 * ae, rel=1e-5)
  pre = losses.generator_loss_terms(x, x1, x2, mask, lx, lx1, lx2, sd, pretrain_coarse=True,
                                    per_sample_known=True)
  assert set(pre) == {"l1_loss", "ae_loss", "gan_loss", "g_loss"}
  assert float(pre["ae_loss"]) == pytest.approx(1.2 * kl1(x1), rel=1e-5)


def test_critic_loss_terms():
  rg, fg, rl, fl = (_rand(3, 1) for _ in range(4))
  terms = losses.critic_loss_terms(rg, fg, rl, fl, 0.25, 0.5)
  d_g, d_l = fg.mean() - rg.mean(), fl.mean() - rl.mean()
  assert float(terms["d_global"]) == pytest.approx(d_g, abs=1e-6)
  assert float(terms["d_local"]) == pytest.approx(d_l, abs=1e-6)
  assert float(terms["gp"]) == pytest.approx(0.75)
  assert float(terms["d_loss"]) == pytest.approx(d_g + d_l + 7.5, abs=1e-5)


# ---------------------------------------------------------------- hole supervision


def test_hole_l1_matches_numpy_per_sample_normalisation():
  b, h, w = 3, 12, 10
  x, pred = _rand(b, h, w, 3), _rand(b, h, w, 3)
  mask = _masks(b, h, w)
  mask[2] = 0.0  # a sample without a hole adds 0
  want = np.mean([np.mean(np.abs(x[i] - pred[i]) * mask[i]) / mask[i].mean() if mask[i].any()
                  else 0.0 for i in range(b)])
  assert float(losses.hole_l1(x, pred, mask)) == pytest.approx(want, rel=1e-5)
  assert float(tf.function(losses.hole_l1)(x, pred, mask)) == pytest.approx(want, rel=1e-5)


def _hole_gradient(mode, l1_region, size=64):
  """|d g_loss / d x_stage2| for the training masks of ``mode`` (no GAN terms)."""
  from model.training import masks as masks_lib
  b, box = 4, size // 2
  mask, bbox = masks_lib.random_mask(mode, b, size, size, box, box, size // 8, size // 8,
                                     seed=tf.constant([3, 4], tf.int64))
  x = tf.constant(_rand(b, size, size, 3))
  x1 = tf.Variable(_rand(b, size, size, 3))
  x2 = tf.Variable(_rand(b, size, size, 3))
  sd = losses.spatial_discount_weights(box, box, 0.9)
  with tf.GradientTape() as tape:
    local = [masks_lib.local_patch(t, tf.cast(bbox, tf.int32)) for t in (x, x1, x2)]
    terms = losses.generator_loss_terms(x, x1, x2, mask, *local, sd, per_sample_known=True,
                                        l1_region=l1_region, adversarial=False)
  grad = tape.gradient(terms["g_loss"], x2)
  return np.abs(grad.numpy()).sum(-1), mask.numpy()[..., 0] > 0.5


@pytest.mark.parametrize("mode", ["box", "free_form", "both", "mixed"])
def test_every_hole_pixel_gets_a_gradient(mode):
  """With the region train.py picks (box for box masks, else hole), no hole pixel is unsupervised."""
  region = "box" if mode == "box" else "hole"
  grad, hole = _hole_gradient(mode, region)
  assert hole.any()
  assert (grad[hole] > 0).all(), f"{(grad[hole] == 0).sum()} hole pixels get no gradient"


def test_box_region_misses_strokes_outside_the_box():
  """The v1 formula alone leaves free-form hole pixels outside the local box unsupervised."""
  grad, hole = _hole_gradient("free_form", "box")
  assert (grad[hole] == 0).any()


def test_reconstruction_only_terms_have_no_gan_part():
  b, h, w = 2, 16, 16
  x, x1, x2 = _rand(b, h, w, 3), _rand(b, h, w, 3), _rand(b, h, w, 3)
  mask = _masks(b, h, w)
  sd = losses.spatial_discount_weights(8, 8, 0.9)
  lx, lx1, lx2 = x[:, 2:10, 4:12], x1[:, 2:10, 4:12], x2[:, 2:10, 4:12]
  terms = losses.generator_loss_terms(x, x1, x2, mask, lx, lx1, lx2, sd, per_sample_known=True,
                                      l1_region="hole", adversarial=False)
  assert set(terms) == {"l1_loss", "ae_loss", "gan_loss", "g_loss"}
  l1 = 1.2 * float(losses.hole_l1(x, x1, mask)) + float(losses.hole_l1(x, x2, mask))
  assert float(terms["l1_loss"]) == pytest.approx(l1, rel=1e-5)
  assert float(terms["g_loss"]) == pytest.approx(
      1.2 * l1 + 1.2 * float(terms["ae_loss"]), rel=1e-5)
  with pytest.raises(ValueError, match="l1_region"):
    losses.generator_loss_terms(x, x1, x2, mask, lx, lx1, lx2, sd, l1_region="image")
