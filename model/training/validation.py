"""Validation during training: fixed-mask metrics and the TensorBoard picture grid."""
import numpy as np
import tensorflow as tf

from model import flow_viz
from model.config import GRID
from model.evaluation.metrics import mse_to_psnr


def static_view_mask(batch, size):
  """The release's validation hole (ARCHITECTURE.md §6.5): the centred half-size box, no shrink."""
  mask = np.zeros([batch, size, size, 1], np.float32)
  q = size // 4
  mask[:, q:q + size // 2, q:q + size // 2] = 1.0
  return mask


def _to_display(x, channel_order):
  """[-1, 1] network-order images -> [0, 1] RGB."""
  x = (x + 1.0) / 2.0
  return x[..., ::-1] if channel_order == "bgr" else x


def evaluate_batch(generator, images, channel_order, max_images=10, chunk=4):
  """Inpaints ``images`` [N, S, S, 3] (in [-1, 1]) with the static mask.

  Returns ``(metrics, grid)``: ``hole_l1`` (mean absolute error on hole pixels, 0–1
  scale), ``psnr`` (dB, completed vs target, 0–1 scale) and the grid
  ``[min(N, max_images), S, 6S, 3]``: input with hole | coarse | refined |
  completed | attention flow | target.
  """
  images = np.asarray(images, np.float32)
  n, size = images.shape[0], images.shape[1]
  abs_err, hole_px, sq_err, rows = 0.0, 0.0, [], []
  for i in range(0, n, chunk):
    x = images[i:i + chunk]
    mask = static_view_mask(x.shape[0], size)
    x_in = x * (1.0 - mask)
    x1, x2, offsets = generator((x_in, mask), training=False)
    x1, x2 = x1.numpy(), x2.numpy()
    complete = x2 * mask + x_in * (1.0 - mask)
    diff = np.abs(complete - x) / 2.0
    abs_err += float((diff * mask).sum())
    hole_px += float(mask.sum() * 3)
    sq_err.extend(np.mean(np.square(diff), axis=(1, 2, 3)))
    if len(rows) < max_images:
      flow = flow_viz.flow_to_image(offsets, upsample=GRID).numpy()
      flow = (flow[:, :size, :size] + 1.0) / 2.0  # flow pictures are RGB already
      shown = x_in + mask  # holes drawn white, as in the paper's figures
      parts = [_to_display(np.clip(p, -1, 1), channel_order) for p in (shown, x1, x2, complete)]
      parts.append(flow)
      parts.append(_to_display(x, channel_order))
      rows.extend(np.concatenate(parts, axis=2))
  metrics = {"hole_l1": abs_err / max(hole_px, 1.0),
             "psnr": float(np.mean([mse_to_psnr(mse) for mse in sq_err]))}
  grid = tf.convert_to_tensor(np.clip(np.stack(rows[:max_images]), 0.0, 1.0))
  return metrics, grid
