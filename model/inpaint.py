"""Inference on whole photos: any size, uint8 in, uint8 out (spec §5 plus our conventions).

Differences from the official ``test.py`` (spec §5), by design:
* the image is reflect-padded to a multiple of 8 and cropped back instead of
  cropped, so the output has the input's size;
* known pixels are copied from the input; the official float32 round trip
  makes 15–55 % of them one level darker. Hole pixels are computed exactly as
  the release does (``trunc((x2 + 1) * 127.5)``).
``official=True`` reproduces the release bit for bit instead (grid-8 crop, all
pixels through the float round trip), for parity checks.
"""
import math

import numpy as np
import tensorflow as tf

from model import checkpoints
from model import flow_viz
from model import local_inference

GRID = 8
# Working-memory model of one attention tile: (t+2)² score rows plus about six
# t²-row temporaries (gathers, fused sum, logits, softmax), each L floats.
_TILE_COPIES = 7


def attention_tile_for_budget(height, width, budget_bytes, batch=1):
  """Largest query tile whose attention working memory fits ``budget_bytes``."""
  h2, w2 = max(height // GRID, 1), max(width // GRID, 1)
  n = h2 * w2
  per_row = 4.0 * batch * (n + 1)
  t = int(math.sqrt(max(budget_bytes / (per_row * _TILE_COPIES), 1.0)))
  return max(1, min(t, max(h2, w2)))


def strip_rows_for_budget(width, channels, budget_bytes):
  """Rows per strip of the full-image attention encoder for a memory budget."""
  per_row = 4.0 * width * (5 + 4 * channels)   # input + a few full-res activations
  rows = int(budget_bytes / per_row) // GRID * GRID
  return max(32, min(rows, 1024))


def pad_to_grid(array, grid=GRID):
  """Reflect-pads H and W of ``array`` [H, W, ...] up to multiples of ``grid``."""
  h, w = array.shape[:2]
  ph, pw = (-h) % grid, (-w) % grid
  if ph == 0 and pw == 0:
    return array
  pads = [(0, ph), (0, pw)] + [(0, 0)] * (array.ndim - 2)
  mode = "reflect" if min(h, w) > 1 else "edge"
  return np.pad(array, pads, mode=mode)


class Inpainter:
  """Fills holes of uint8 RGB photos with a DeepFill generator.

  Args:
    generator: an :class:`InpaintGenerator` with weights.
    model_config: its :class:`ModelConfig` (gives the channel order).
    max_memory_gb: working-memory bound of contextual attention; the query tile
      size is chosen from it (results do not depend on it).
  """

  def __init__(self, generator, model_config, max_memory_gb=1.0):
    self.generator = generator
    self.config = model_config
    self.budget_bytes = float(max_memory_gb) * 2**30
    spec = [tf.TensorSpec([None, None, None, 3], tf.float32),
            tf.TensorSpec([None, None, None, 1], tf.float32),
            tf.TensorSpec([], tf.int32)]
    self._run = tf.function(self._refine, input_signature=spec)
    self._run_local = tf.function(self._refine_local, input_signature=spec + [
        tf.TensorSpec([], tf.int32)])

  @classmethod
  def from_checkpoint(cls, path, max_memory_gb=1.0):
    gen, cfg = checkpoints.load_generator(path)
    return cls(gen, cfg, max_memory_gb=max_memory_gb)

  def _refine(self, x_in, mask, tile):
    """Generator on ``x_in`` [B,H,W,3] in [-1, 1] (holes zeroed); returns (x2, offsets)."""
    _, x2, offsets = self.generator((x_in, mask), attention_tile=tile)
    return x2, offsets

  def _refine_local(self, x_in, mask, tile, strip_rows):
    """Hole-local stage 2 (``model.local_inference``): exact on hole pixels only."""
    x2 = local_inference.refine_locally(self.generator, x_in, mask, tile, strip_rows)
    return x2, tf.zeros([1, 1, 1, 2], tf.int32)

  def _local_pays_off(self, hole):
    """Hole-local path only when it saves work (small images: one pass is faster)."""
    rows, cols = np.nonzero(hole.any(axis=1))[0], np.nonzero(hole.any(axis=0))[0]
    box = (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)
    cost = local_inference.plan(self.generator, box, *hole.shape)
    return cost["local"] < 0.8 * cost["full"]

  def forward(self, pixels, hole, tile=None, local=False):
    """Official float pipeline (spec §5 steps 5–9) on network-order pixels.

    The pixel arithmetic runs in NumPy float32 in the release's order; inside a
    ``tf.function`` grappler would turn ``/127.5`` into ``*(1/127.5)``, which
    changes the truncated 8-bit output of ~5 % of pixels.
    ``local=True`` computes only what reaches hole pixels (``model.local_inference``);
    the output is then exact on hole pixels and offsets are not computed.
    Returns ``((complete + 1) * 127.5`` as float32 [H, W, 3], offsets).
    """
    mask = hole[None, :, :, None].astype(np.float32)
    x = pixels[None].astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    x_in = x * (np.float32(1.0) - mask)
    if tile is None:
      tile = attention_tile_for_budget(*hole.shape, self.budget_bytes)
    args = (tf.constant(x_in), tf.constant(mask), tf.constant(tile, tf.int32))
    if local and hole.any() and self._local_pays_off(hole):
      rows = strip_rows_for_budget(hole.shape[1], self.config.cnum, self.budget_bytes)
      x2, offsets = self._run_local(*args, tf.constant(rows, tf.int32))
    else:
      x2, offsets = self._run(*args)
    complete = x2.numpy() * mask + x_in * (np.float32(1.0) - mask)
    return ((complete + np.float32(1.0)) * np.float32(127.5))[0], offsets

  def _to_network(self, rgb):
    return rgb[..., ::-1] if self.config.channel_order == "bgr" else rgb

  def inpaint(self, rgb, hole, official=False, with_flow=False):
    """Inpaints one image.

    Args:
      rgb: uint8 ``[H, W, 3]`` RGB.
      hole: bool ``[H, W]``, True = pixel to fill.
      official: reproduce the official ``test.py`` output (grid-8 crop, float
        round trip on every pixel) instead of our conventions.
      with_flow: also return the attention-flow picture (uint8 RGB, image size); this
        runs the full network, otherwise only the hole's neighbourhood is computed.
    Returns:
      ``(result uint8 [H, W, 3], flow or None)``.
    """
    h, w = hole.shape
    if official:
      h, w = h // GRID * GRID, w // GRID * GRID
      net_in, net_mask = self._to_network(rgb[:h, :w]), hole[:h, :w]
    else:
      net_in = pad_to_grid(self._to_network(rgb))
      net_mask = pad_to_grid(hole)
    out, offsets = self.forward(net_in, net_mask, local=not with_flow)
    out = out[:h, :w]
    if self.config.channel_order == "bgr":
      out = out[..., ::-1]
    # saturate_cast semantics of the release: clip, then truncate toward zero.
    result = np.clip(out, 0, 255).astype(np.uint8)
    if not official:
      result = np.where(hole[..., None], result, rgb)
    flow = None
    if with_flow:
      picture = flow_viz.flow_to_image(offsets, upsample=GRID)
      flow = flow_viz.flow_to_uint8(picture).numpy()[0, :h, :w]
    return result, flow
