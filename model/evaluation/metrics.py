"""Inpainting quality metrics (pure NumPy): hole L1/L2, PSNR, total variation, SSIM, detail.

NumPy, not ``tf.image.ssim``: ``evaluate.py`` scores OpenCV's Telea / Navier-Stokes without
importing TensorFlow (seconds of start-up and gigabytes it does not need); the SSIM below
equals ``tf.image.ssim`` to 1e-4 (tests/test_metrics.py).

The DeepFill v1 paper (Table 1; ARCHITECTURE.md §8) reports mean l1 error, mean l2 error,
PSNR and "TV loss" on Places2 "for reference only". The table has not been
checked against the paper PDF and the paper does not define its TV loss or the
region its errors are taken over, so the definitions below are ours, written
down exactly:

* Values are compared on a [0, 1] scale (uint8 / 255) in float64; every
  channel of every pixel counts as one sample.
* ``hole_l1``: mean |pred - target| over the hole pixels (all channels).
  ``hole_l2``: mean (pred - target)^2 over the same samples. Reported in % by
  the CLI (x 100), like the paper. When known pixels are copied from the input
  (our model and the OpenCV baselines do) the whole-image error is the hole
  error times the hole fraction.
* ``psnr``: 10 log10(1 / MSE) in dB, MSE over the whole image (hole_psnr: over
  the hole samples only). MSE is floored at ``MSE_FLOOR`` (1e-10), so a perfect
  match gives 100 dB instead of infinity and averages stay finite.
* ``total_variation``: mean |difference| between 4-neighbours of one image,
  pooled over all horizontal and vertical neighbour pairs and channels (a
  constant image gives 0, a one-pixel 0/1 checkerboard gives 1). With a hole
  mask, only the pairs with at least one pixel in the hole count.
* ``ssim``: SSIM of Wang et al. 2004 (IEEE TIP 13(4)): 11x11 Gaussian window,
  sigma 1.5 (normalised to sum 1), K1 = 0.01, K2 = 0.03, dynamic range 1,
  population (not sample) variances, statistics only where the window fits
  inside the image ("valid" filtering, as the authors' ``ssim_index.m``; no
  automatic downscaling), mean of the SSIM map, then mean over the RGB channels.
* ``detail_ratio``: fine detail of the fill relative to the truth's, the hole's
  high-frequency energy (ARCHITECTURE.md §8). Luminance Y = 0.299 R + 0.587 G +
  0.114 B (BT.601) on the [0, 1] scale; 4-neighbour Laplacian
  L = 4 Y(y, x) - Y(y-1, x) - Y(y+1, x) - Y(y, x-1) - Y(y, x+1) at every pixel whose
  four neighbours lie inside the image (no padding); E(image) = mean |L| over those
  pixels that are in the hole; ratio = (E(pred) + eps) / (E(target) + eps) with
  eps = ``DETAIL_EPS`` (1e-4, a fortieth of one 8-bit level) so that a flat hole
  filled flat scores 1. 1.0 = as much fine detail as the photo; a blurry fill sits
  below 1, a noisy one above.
"""
import numpy as np

MSE_FLOOR = 1e-10
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B
DETAIL_EPS = 1e-4


def to_unit(image):
  """uint8 ``[H, W(, C)]`` -> float64 in [0, 1]; float input is taken as already in [0, 1]."""
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image.astype(np.float64) / 255.0
  if np.issubdtype(image.dtype, np.floating):
    return image.astype(np.float64)
  raise TypeError(f"expected uint8 or float pixels, got {image.dtype}")


def _pair(pred, target):
  pred, target = to_unit(pred), to_unit(target)
  if pred.shape != target.shape:
    raise ValueError(f"shapes differ: {pred.shape} vs {target.shape}")
  if pred.ndim == 2:
    pred, target = pred[..., None], target[..., None]
  if pred.ndim != 3:
    raise ValueError(f"expected [H, W] or [H, W, C] images, got shape {pred.shape}")
  return pred, target


def _hole(hole, shape):
  hole = np.asarray(hole, bool)
  if hole.shape != tuple(shape[:2]):
    raise ValueError(f"hole mask {hole.shape} does not match image {shape[:2]}")
  if not hole.any():
    raise ValueError("the hole mask is empty")
  return hole


def hole_fraction(hole):
  """Share of pixels in the hole, in [0, 1]."""
  return float(np.mean(np.asarray(hole, bool)))


def hole_l1(pred, target, hole):
  """Mean absolute error over the hole pixels (all channels), [0, 1] scale."""
  pred, target = _pair(pred, target)
  hole = _hole(hole, pred.shape)
  return float(np.mean(np.abs(pred[hole] - target[hole])))


def hole_l2(pred, target, hole):
  """Mean squared error over the hole pixels (all channels), [0, 1] scale."""
  pred, target = _pair(pred, target)
  hole = _hole(hole, pred.shape)
  return float(np.mean(np.square(pred[hole] - target[hole])))


def mse_to_psnr(mse):
  """PSNR in dB for a mean squared error on the [0, 1] scale (floored at ``MSE_FLOOR``)."""
  return float(10.0 * np.log10(1.0 / max(float(mse), MSE_FLOOR)))


def psnr(pred, target, hole=None):
  """PSNR in dB over the whole image, or over the hole samples only when ``hole`` is given."""
  pred, target = _pair(pred, target)
  if hole is None:
    return mse_to_psnr(np.mean(np.square(pred - target)))
  return mse_to_psnr(hole_l2(pred, target, hole))


def total_variation(image, hole=None):
  """Mean absolute 4-neighbour difference of ``image`` ([0, 1] scale).

  Pooled over every horizontal and vertical neighbour pair and every channel.
  With ``hole`` (bool ``[H, W]``), only pairs with at least one pixel in the hole.
  """
  image = to_unit(image)
  if image.ndim == 2:
    image = image[..., None]
  dy = np.abs(image[1:] - image[:-1])          # [H-1, W, C]
  dx = np.abs(image[:, 1:] - image[:, :-1])    # [H, W-1, C]
  if hole is None:
    count = dy.size + dx.size
    return float((dy.sum() + dx.sum()) / count) if count else 0.0
  hole = np.asarray(hole, bool)
  if hole.shape != image.shape[:2]:
    raise ValueError(f"hole mask {hole.shape} does not match image {image.shape[:2]}")
  pairs_y = hole[1:] | hole[:-1]
  pairs_x = hole[:, 1:] | hole[:, :-1]
  count = (pairs_y.sum() + pairs_x.sum()) * image.shape[2]
  if count == 0:
    return 0.0
  return float((dy[pairs_y].sum() + dx[pairs_x].sum()) / count)


def gaussian_window(size=SSIM_WINDOW, sigma=SSIM_SIGMA):
  """1-D Gaussian weights of length ``size`` summing to 1 (the 2-D window is its outer product)."""
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  w = np.exp(-(x * x) / (2.0 * sigma * sigma))
  return w / w.sum()


def _filter_valid(image, window):
  """Separable correlation of 2-D ``image`` with ``window`` x ``window``, valid region only."""
  k = window.size
  h, w = image.shape
  rows = sum(window[i] * image[i:h - k + 1 + i] for i in range(k))
  return sum(window[j] * rows[:, j:w - k + 1 + j] for j in range(k))


def ssim_map(a, b, data_range=1.0):
  """SSIM map of two single-channel float images (valid region, ``H-10 x W-10``)."""
  window = gaussian_window()
  if min(a.shape) < window.size:
    raise ValueError(f"SSIM needs images of at least {window.size}x{window.size}, got {a.shape}")
  c1 = (SSIM_K1 * data_range) ** 2
  c2 = (SSIM_K2 * data_range) ** 2
  mu_a, mu_b = _filter_valid(a, window), _filter_valid(b, window)
  var_a = _filter_valid(a * a, window) - mu_a * mu_a
  var_b = _filter_valid(b * b, window) - mu_b * mu_b
  cov = _filter_valid(a * b, window) - mu_a * mu_b
  num = (2.0 * mu_a * mu_b + c1) * (2.0 * cov + c2)
  den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
  return num / den


def ssim(pred, target):
  """Mean SSIM (Wang et al. 2004) over the valid map, averaged over channels; 1 = identical."""
  pred, target = _pair(pred, target)
  values = [ssim_map(pred[..., c], target[..., c]).mean() for c in range(pred.shape[2])]
  return float(np.mean(values))


def luminance(image):
  """``[H, W, 3]`` RGB (uint8 or [0, 1] float) -> float64 ``[H, W]`` BT.601 luma; 2-D passes."""
  image = to_unit(image)
  if image.ndim == 2:
    return image
  if image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f"expected an [H, W, 3] RGB image, got shape {image.shape}")
  return image @ np.asarray(LUMA)


def laplacian_energy(image, hole):
  """Mean |4-neighbour Laplacian| of the luminance over the hole's interior pixels (0 if none)."""
  y = luminance(image)
  hole = np.asarray(hole, bool)
  if hole.shape != y.shape:
    raise ValueError(f"hole mask {hole.shape} does not match image {y.shape}")
  lap = 4.0 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]
  inside = hole[1:-1, 1:-1]
  return float(np.abs(lap[inside]).mean()) if inside.any() else 0.0


def detail_ratio(pred, target, hole):
  """High-frequency energy of ``pred`` in the hole / that of ``target`` (1 = as much detail)."""
  return ((laplacian_energy(pred, hole) + DETAIL_EPS)
          / (laplacian_energy(target, hole) + DETAIL_EPS))


def image_metrics(pred, target, hole):
  """All metrics of one completed image against its ground truth.

  Args:
    pred, target: uint8 ``[H, W, 3]`` (completed image and ground truth).
    hole: bool ``[H, W]``, True = hole (must not be empty).
  Returns:
    dict of floats: ``hole_fraction``, ``l1``, ``l2``, ``psnr_hole``, ``psnr``,
    ``ssim``, ``tv``, ``tv_hole`` (fractions, not %; PSNR in dB), ``detail`` (ratio).
  """
  pred_u, target_u = _pair(pred, target)
  hole = _hole(hole, pred_u.shape)
  l2 = hole_l2(pred_u, target_u, hole)
  return {
      "hole_fraction": hole_fraction(hole),
      "l1": hole_l1(pred_u, target_u, hole),
      "l2": l2,
      "psnr_hole": mse_to_psnr(l2),
      "psnr": psnr(pred_u, target_u),
      "ssim": ssim(pred_u, target_u),
      "tv": total_variation(pred_u),
      "tv_hole": total_variation(pred_u, hole),
      "detail": detail_ratio(pred_u, target_u, hole),
  }
