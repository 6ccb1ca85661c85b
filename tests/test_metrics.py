"""Tests of model/evaluation/metrics.py against hand-computed values (and tf.image as an outside reference)."""
import numpy as np
import pytest

from model.evaluation import metrics

C1 = (0.01 * 1.0) ** 2
C2 = (0.03 * 1.0) ** 2


def _photo_like(shape=(40, 48, 3), seed=0):
  """Smooth random image in [0.1, 0.9] (so a +-0.1 shift stays in range)."""
  rng = np.random.default_rng(seed)
  base = rng.uniform(0.1, 0.9, (shape[0] // 4 + 1, shape[1] // 4 + 1, shape[2]))
  return np.kron(base, np.ones((4, 4, 1)))[:shape[0], :shape[1]]


def _hole(h, w, top, left, bottom, right):
  hole = np.zeros((h, w), bool)
  hole[top:bottom, left:right] = True
  return hole


# PSNR


@pytest.mark.parametrize("error, expected", [(0.1, 20.0), (0.01, 40.0), (0.5, 20 * np.log10(2))])
def test_psnr_of_a_uniform_error(error, expected):
  target = np.full((16, 16, 3), 0.25)
  assert metrics.psnr(target + error, target) == pytest.approx(expected, abs=1e-9)
  assert metrics.psnr(target - error, target) == pytest.approx(expected, abs=1e-9)


def test_psnr_known_mse_and_floor():
  assert metrics.mse_to_psnr(0.01) == pytest.approx(20.0)
  assert metrics.mse_to_psnr(1.0) == pytest.approx(0.0)
  image = _photo_like()
  assert metrics.psnr(image, image) == pytest.approx(100.0)  # MSE floored at 1e-10
  assert metrics.mse_to_psnr(0.0) == pytest.approx(100.0)


def test_hole_psnr_ignores_known_pixels():
  target = np.zeros((20, 20, 3))
  hole = _hole(20, 20, 5, 5, 10, 15)
  pred = target.copy()
  pred[hole] = 0.1     # 20 dB inside the hole
  pred[~hole] = 0.01   # would give 40 dB alone
  assert metrics.psnr(pred, target, hole) == pytest.approx(20.0)
  # Whole image: MSE = f * 0.01 + (1 - f) * 1e-4 with f = 50 / 400.
  f = 50 / 400
  assert metrics.psnr(pred, target) == pytest.approx(-10 * np.log10(f * 0.01 + (1 - f) * 1e-4))


def test_uint8_inputs_are_scaled_to_unit_range():
  target = np.full((12, 12, 3), 100, np.uint8)
  pred = np.full((12, 12, 3), 151, np.uint8)  # error 51 / 255 = 0.2
  assert metrics.psnr(pred, target) == pytest.approx(-20 * np.log10(0.2))
  assert metrics.hole_l1(pred, target, np.ones((12, 12), bool)) == pytest.approx(0.2)


# L1 / L2 restricted to the hole


def test_l1_l2_only_count_hole_pixels():
  target = np.zeros((10, 10, 3))
  pred = np.ones((10, 10, 3))          # huge error outside the hole
  hole = _hole(10, 10, 2, 2, 4, 4)     # 4 pixels
  pred[2, 2] = [0.2, 0.2, 0.2]
  pred[2, 3] = [0.4, 0.0, 0.0]
  pred[3, 2] = [0.0, 0.0, 0.0]
  pred[3, 3] = [0.1, 0.1, 0.1]
  # 12 samples: |e| sums to 0.6 + 0.4 + 0 + 0.3 = 1.3; e^2 sums to 0.12 + 0.16 + 0.03 = 0.31.
  assert metrics.hole_l1(pred, target, hole) == pytest.approx(1.3 / 12)
  assert metrics.hole_l2(pred, target, hole) == pytest.approx(0.31 / 12)
  assert metrics.hole_l1(pred, target, ~hole) == pytest.approx(1.0)


def test_l1_on_grey_images_and_symmetry():
  a = np.array([[0.0, 0.5], [1.0, 0.25]])
  b = np.array([[0.5, 0.5], [0.0, 0.0]])
  hole = np.array([[True, False], [True, True]])
  assert metrics.hole_l1(a, b, hole) == pytest.approx((0.5 + 1.0 + 0.25) / 3)
  assert metrics.hole_l1(b, a, hole) == metrics.hole_l1(a, b, hole)
  assert metrics.hole_l2(a, b, hole) == pytest.approx((0.25 + 1.0 + 0.0625) / 3)


def test_empty_hole_and_bad_shapes_are_rejected():
  a = np.zeros((8, 8, 3))
  with pytest.raises(ValueError, match="empty"):
    metrics.hole_l1(a, a, np.zeros((8, 8), bool))
  with pytest.raises(ValueError, match="does not match"):
    metrics.hole_l2(a, a, np.ones((4, 8), bool))
  with pytest.raises(ValueError, match="shapes differ"):
    metrics.psnr(a, np.zeros((8, 9, 3)))
  with pytest.raises(TypeError):
    metrics.psnr(a.astype(np.int32), a.astype(np.int32))


# Total variation


def test_tv_of_a_constant_image_is_zero():
  assert metrics.total_variation(np.full((9, 7, 3), 0.4)) == 0.0
  assert metrics.total_variation(np.full((9, 7, 3), 0.4), _hole(9, 7, 2, 2, 5, 5)) == 0.0


def test_tv_of_a_checkerboard():
  board = (np.indices((6, 8)).sum(axis=0) % 2).astype(np.float64)
  assert metrics.total_variation(board) == pytest.approx(1.0)
  assert metrics.total_variation(np.stack([board] * 3, -1) * 0.5) == pytest.approx(0.5)
  assert metrics.total_variation((board * 255).astype(np.uint8)) == pytest.approx(1.0)


def test_tv_pools_horizontal_and_vertical_pairs():
  h, w = 5, 7
  stripes = np.tile(np.arange(w) % 2, (h, 1)).astype(np.float64)  # columns 0, 1, 0, 1, ...
  horizontal, vertical = h * (w - 1), (h - 1) * w                 # all of them differ by 1 / 0
  assert metrics.total_variation(stripes) == pytest.approx(horizontal / (horizontal + vertical))


def test_tv_in_the_hole_counts_pairs_touching_it():
  image = np.array([[0.0, 1.0, 0.0],
                    [0.0, 0.0, 0.0],
                    [0.0, 0.0, 0.5]])
  hole = np.zeros((3, 3), bool)
  hole[0, 0] = True
  # Pairs touching (0, 0): right |0 - 1| = 1, down |0 - 0| = 0.
  assert metrics.total_variation(image, hole) == pytest.approx(0.5)
  hole[2, 2] = True
  # Plus (2, 2)'s left and up pairs: 0.5 each.
  assert metrics.total_variation(image, hole) == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
  # Whole image: 12 pairs; |differences| 1 + 1 (row 0), 0.5 (row 2), 1 (col 1), 0.5 (col 2).
  assert metrics.total_variation(image) == pytest.approx(4.0 / 12)


# SSIM


def test_gaussian_window():
  w = metrics.gaussian_window()
  assert w.shape == (11,) and w.sum() == pytest.approx(1.0)
  assert np.allclose(w, w[::-1]) and w.argmax() == 5
  assert w[5] / w[6] == pytest.approx(np.exp(1 / (2 * 1.5 ** 2)))


def test_ssim_of_identical_images_is_one():
  image = _photo_like()
  assert metrics.ssim(image, image) == pytest.approx(1.0, abs=1e-12)
  photo = (image * 255).astype(np.uint8)
  assert metrics.ssim(photo, photo) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_constant_images_is_the_luminance_term():
  a, b = np.full((16, 16, 3), 0.2), np.full((16, 16, 3), 0.6)
  expected = (2 * 0.2 * 0.6 + C1) / (0.2 ** 2 + 0.6 ** 2 + C1)  # contrast-structure term is 1
  assert metrics.ssim(a, b) == pytest.approx(expected)
  assert metrics.ssim_map(a[..., 0], b[..., 0]).shape == (6, 6)  # valid region: 16 - 10


def test_ssim_of_a_constant_shift_is_lower_and_symmetric():
  image = _photo_like()
  shifted = image + 0.1
  value = metrics.ssim(image, shifted)
  assert 0.5 < value < 1.0
  assert metrics.ssim(shifted, image) == pytest.approx(value, abs=1e-12)
  assert metrics.ssim(image, image + 0.2) < value
  noisy = image + np.random.default_rng(1).normal(0, 0.1, image.shape)
  assert metrics.ssim(image, noisy) < 1.0
  assert metrics.ssim(noisy, image) == pytest.approx(metrics.ssim(image, noisy), abs=1e-12)


def test_ssim_averages_channels():
  a = _photo_like(seed=2)
  b = a.copy()
  b[..., 1] += 0.2
  per_channel = [metrics.ssim(a[..., c], b[..., c]) for c in range(3)]
  assert per_channel[0] == pytest.approx(1.0) and per_channel[2] == pytest.approx(1.0)
  assert metrics.ssim(a, b) == pytest.approx(np.mean(per_channel))


def test_ssim_needs_the_window_to_fit():
  with pytest.raises(ValueError, match="at least 11x11"):
    metrics.ssim(np.zeros((10, 30, 3)), np.zeros((10, 30, 3)))


def test_ssim_and_psnr_match_tf_image():
  tf = pytest.importorskip("tensorflow")
  rng = np.random.default_rng(3)
  a = rng.integers(0, 256, (37, 45, 3)).astype(np.uint8)
  b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
  reference = float(tf.image.ssim(tf.constant(a), tf.constant(b), max_val=255))
  assert metrics.ssim(a, b) == pytest.approx(reference, abs=1e-4)
  reference = float(tf.image.psnr(tf.constant(a), tf.constant(b), max_val=255))
  assert metrics.psnr(a, b) == pytest.approx(reference, abs=1e-4)


# All metrics of one image


def test_image_metrics():
  target = (_photo_like((32, 32, 3)) * 255).astype(np.uint8)
  hole = _hole(32, 32, 8, 8, 24, 16)
  pred = target.copy()
  pred[hole] = np.clip(pred[hole].astype(int) + 51, 0, 255).astype(np.uint8)
  m = metrics.image_metrics(pred, target, hole)
  assert set(m) == {"hole_fraction", "l1", "l2", "psnr_hole", "psnr", "ssim", "tv", "tv_hole",
                    "detail"}
  assert m["hole_fraction"] == pytest.approx(128 / 1024)
  error = (pred[hole].astype(float) - target[hole]) / 255
  assert m["l1"] == pytest.approx(np.abs(error).mean())
  assert m["l2"] == pytest.approx(np.square(error).mean())
  assert m["psnr_hole"] == pytest.approx(-10 * np.log10(m["l2"]))
  assert m["psnr"] == pytest.approx(-10 * np.log10(m["l2"] * m["hole_fraction"]))
  assert m["psnr"] > m["psnr_hole"] and m["ssim"] < 1.0
  assert m["tv"] == pytest.approx(metrics.total_variation(pred))
  perfect = metrics.image_metrics(target, target, hole)
  assert perfect["l1"] == 0.0 and perfect["ssim"] == pytest.approx(1.0)
  assert perfect["detail"] == 1.0 and m["detail"] == metrics.detail_ratio(pred, target, hole)


# Detail (high-frequency energy of the hole relative to the truth's)


def _reference_energy(rgb, hole):
  """Loop-by-loop reference: mean |4Y - up - down - left - right| over interior hole pixels."""
  rgb = np.asarray(rgb, np.float64) / (255.0 if np.asarray(rgb).dtype == np.uint8 else 1.0)
  h, w = hole.shape
  y = [[0.299 * rgb[i, j, 0] + 0.587 * rgb[i, j, 1] + 0.114 * rgb[i, j, 2] for j in range(w)]
       for i in range(h)]
  values = [abs(4 * y[i][j] - y[i - 1][j] - y[i + 1][j] - y[i][j - 1] - y[i][j + 1])
            for i in range(1, h - 1) for j in range(1, w - 1) if hole[i][j]]
  return sum(values) / len(values) if values else 0.0


def test_laplacian_energy_matches_a_loop_reference():
  rng = np.random.default_rng(3)
  rgb = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
  hole = rng.uniform(size=(13, 17)) < 0.4
  hole[0, :] = True  # border pixels have no four neighbours: never counted
  assert metrics.laplacian_energy(rgb, hole) == pytest.approx(_reference_energy(rgb, hole),
                                                              rel=1e-12)
  edge_only = np.zeros((13, 17), bool)
  edge_only[:, 0] = True
  assert metrics.laplacian_energy(rgb, edge_only) == 0.0


def test_detail_ratio_values():
  rng = np.random.default_rng(4)
  truth = rng.integers(40, 216, (24, 24, 3), dtype=np.uint8)  # noisy: lots of fine detail
  hole = _hole(24, 24, 6, 6, 18, 18)
  flat = truth.copy()
  flat[hole] = truth[hole].mean(axis=0).astype(np.uint8)  # a reconstruction-only-like fill
  e_truth = _reference_energy(truth, hole)
  e_flat = _reference_energy(flat, hole)
  assert metrics.detail_ratio(flat, truth, hole) == pytest.approx(
      (e_flat + 1e-4) / (e_truth + 1e-4), rel=1e-12)
  assert metrics.detail_ratio(flat, truth, hole) < 0.5
  assert metrics.detail_ratio(truth, truth, hole) == 1.0
  assert metrics.detail_ratio(truth, flat, hole) > 2.0
  grey = np.full((24, 24, 3), 90, np.uint8)
  assert metrics.detail_ratio(grey, grey, hole) == 1.0  # flat filled flat: no division by zero
  # The luminance weights: a change of green alone counts 0.587 / 0.114 times one of blue alone.
  g, b = grey.copy(), grey.copy()
  g[12, 12, 1] += 50
  b[12, 12, 2] += 50
  ratio = metrics.laplacian_energy(g, hole) / metrics.laplacian_energy(b, hole)
  assert ratio == pytest.approx(0.587 / 0.114)
