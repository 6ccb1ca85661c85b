"""Inference on whole photos: any size, uint8 in, uint8 out (ARCHITECTURE.md §7.1–7.2).

Differences from the official ``test.py`` (ARCHITECTURE.md §7.1), by design:
* the image is reflect-padded to a multiple of 8 and cropped back instead of
  cropped, so the output has the input's size;
* known pixels are copied from the input; the official float32 round trip
  makes 15–55 % of them one level darker. Hole pixels are computed exactly as
  the release does (``trunc((x2 + 1) * 127.5)``).
``official=True`` reproduces the release bit for bit instead (grid-8 crop, all
pixels through the float round trip), for parity checks.
"""
import numpy as np
import tensorflow as tf

from model import weights as checkpoints
from model import flow_viz
from model.inference import local_plan as local_inference

GRID = 8


def attention_tile_for_budget(height, width, budget_bytes):
  """Largest attention query tile fitting ``budget_bytes`` (see ``local_inference``)."""
  return int(local_inference.attention_tile(height, width, budget_bytes))


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
    self.budget_bytes = local_inference.budget_bytes_of(max_memory_gb)
    self.generator = generator
    self.config = model_config
    spec = [tf.TensorSpec([None, None, None, 3], tf.float32),
            tf.TensorSpec([None, None, None, 1], tf.float32),
            tf.TensorSpec([], tf.int32)]
    self._run = tf.function(self._refine, input_signature=spec)
    self._run_auto = tf.function(self._refine_auto, input_signature=spec[:2])

  @classmethod
  def from_checkpoint(cls, path, max_memory_gb=1.0):
    gen, cfg = checkpoints.load_generator(path)
    return cls(gen, cfg, max_memory_gb=max_memory_gb)

  def _refine(self, x_in, mask, tile):
    """Generator on ``x_in`` [B,H,W,3] in [-1, 1] (holes zeroed); returns (x2, offsets)."""
    _, x2, offsets = self.generator((x_in, mask), attention_tile=tile)
    return x2, offsets

  def _refine_auto(self, x_in, mask):
    """Inference stage 2: hole-local where it saves work (``local_inference.refine``)."""
    x2 = local_inference.refine(self.generator, x_in, mask, self.budget_bytes)
    return x2, tf.zeros([1, 1, 1, 2], tf.int32)

  def forward(self, pixels, hole, tile=None, local=False):
    """Official float pipeline (ARCHITECTURE.md §7.1 steps 3–4) on network-order pixels.

    The pixel arithmetic runs in NumPy float32 in the release's order; inside a
    ``tf.function`` grappler would turn ``/127.5`` into ``*(1/127.5)``, which
    changes the truncated 8-bit output of ~5 % of pixels.
    ``local=True`` lets ``local_inference.refine`` compute only what reaches hole
    pixels when that saves work; the output is then exact on hole pixels only and
    offsets are not computed.
    Returns ``((complete + 1) * 127.5`` as float32 [H, W, 3], offsets).
    """
    mask = hole[None, :, :, None].astype(np.float32)
    x_in = pixels[None].astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    x_in *= np.float32(1.0) - mask  # in place: big photos need no second copy
    if tile is None:
      tile = attention_tile_for_budget(*hole.shape, self.budget_bytes)
    if local:
      x2, offsets = self._run_auto(tf.constant(x_in), tf.constant(mask))
    else:
      x2, offsets = self._run(tf.constant(x_in), tf.constant(mask), tf.constant(tile, tf.int32))
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
