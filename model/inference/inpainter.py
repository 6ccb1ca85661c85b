"""Inference on whole photos: any size, uint8 in, uint8 out — the one pipeline.

:meth:`Inpainter.fill` is the whole computation as TensorFlow ops: reflect-pad to a
multiple of 8, scale to [-1, 1] in the network's channel order, zero the hole, run the
generator's stage 2 (hole-local where that saves work, ``local_plan.refine``), map back
with the release's ``(x + 1) * 127.5``, saturate (clip, truncate toward zero), crop and copy
the known pixels from the input. ``test.py`` and ``evaluate.py`` call it through
:meth:`Inpainter.inpaint` (NumPy in and out); the SavedModel's signatures
(``model/inference/serving.py``) call it inside their graph, so both give the same bytes.

Differences from the official ``test.py`` (ARCHITECTURE.md §7.1), by design: the image is
padded and cropped back instead of cropped (the output keeps the input's size), and known
pixels are copied (the release's float round trip makes 15–55 % of them one level darker).
Hole pixels are computed exactly as the release does, then (``seam_blend``, the default)
seam-blended into the photo (``model/inference/blending.py``); ``seam_blend=False`` keeps the
network's hole pixels as they are. ``official=True`` reproduces the release bit for bit
instead: grid-8 crop, every pixel through the float round trip, no blending.

Inside a graph grappler rewrites ``x / 127.5`` into ``x * (1 / 127.5)``, which is one ulp off
for 111 of the 256 pixel values and moves some truncated outputs by a level; the divisor is
therefore a ``tf.Variable`` (saved with an export), which constant folding cannot see through.
"""
import numpy as np
import tensorflow as tf

from model import flow_viz
from model import weights
from model.inference import blending
from model.inference import local_plan

GRID = 8
IMAGE_SPEC = tf.TensorSpec([None, None, 3], tf.uint8)
HOLE_SPEC = tf.TensorSpec([None, None], tf.bool)


def grid_pad_indices(size, use_reflect, grid=GRID):
  """Source indices that pad an axis of ``size`` (int32 scalar) up to a multiple of ``grid``.

  ``np.pad(..., (0, pad), mode="reflect")`` (periodic reflection, so pads beyond the size
  work) when ``use_reflect``, else ``mode="edge"``. Returns int32 ``[padded]``.
  """
  padded = (size + grid - 1) // grid * grid  # no modulo of a negative: tf2onnx 1.17 truncates it
  i = tf.range(padded)
  period = tf.maximum(2 * (size - 1), 1)
  j = tf.math.floormod(i, period)
  reflect = tf.where(j >= size, period - j, j)
  edge = tf.minimum(i, tf.maximum(size - 1, 0))
  return tf.where(use_reflect, reflect, edge)


def pad_to_grid(image, hole, grid=GRID):
  """Pads ``image`` [H, W, C] and ``hole`` [H, W] at the bottom/right to multiples of ``grid``:
  reflect, or edge when a side is 1 pixel (index gathers, so any pad works)."""
  shape = tf.shape(hole)
  use_reflect = tf.reduce_min(shape) > 1
  rows = grid_pad_indices(shape[0], use_reflect, grid)
  cols = grid_pad_indices(shape[1], use_reflect, grid)

  def pad(x):
    return tf.gather(tf.gather(x, rows, axis=0), cols, axis=1)

  return pad(image), pad(hole)


class Inpainter:
  """Fills holes of uint8 RGB photos with a DeepFill generator.

  Args:
    generator: an :class:`InpaintGenerator` with weights.
    model_config: its :class:`ModelConfig` (gives the channel order).
    max_memory_gb: working-memory bound of contextual attention; the query tile and the
      encoder strips are chosen from it and the image size (results do not depend on it).
    seam_blend: seam-blend the network's fill into the photo (``blending.blend``); False
      returns the network's hole pixels unchanged. Ignored with ``official=True``.
  """

  def __init__(self, generator, model_config, max_memory_gb=1.0, seam_blend=True):
    self.seam_blend = bool(seam_blend)
    self.budget_bytes = local_plan.budget_bytes_of(max_memory_gb)
    self.generator = generator
    self.config = model_config
    self.bgr = model_config.channel_order == "bgr"
    # A variable, not a constant: see the module docstring.
    self.pixel_scale = tf.Variable(127.5, dtype=tf.float32, trainable=False, name="pixel_scale")
    self._traced = {}

  @classmethod
  def from_checkpoint(cls, path, max_memory_gb=1.0, seam_blend=True):
    gen, cfg = weights.load_generator(path)
    return cls(gen, cfg, max_memory_gb=max_memory_gb, seam_blend=seam_blend)

  def _network_order(self, x):
    return tf.reverse(x, axis=[-1]) if self.bgr else x

  def network_input(self, pixels):
    """uint8 pixels -> float32 ``pixels / 127.5 - 1`` with the release's rounding."""
    return tf.cast(pixels, tf.float32) / self.pixel_scale - 1.0

  def fill(self, image, hole, official=False, with_flow=False, path="auto",
           attention_tiled=None):
    """The inference pipeline on one image, as TensorFlow ops (eager or in a graph).

    Args:
      image: uint8 ``[H, W, 3]`` RGB.
      hole: bool ``[H, W]``, True = pixel to fill.
      official: the release's output instead of ours (grid-8 crop, all pixels through the
        float round trip; the output is ``[H//8*8, W//8*8, 3]``).
      with_flow: run the full network and also return its attention offsets.
      path: ``auto`` (hole-local when its FLOP plan saves work, decided in the graph),
        ``local`` or ``full`` (``local_plan.refine``); ignored with ``with_flow``.
      attention_tiled: for the full network, whether its attention runs in tiles
        (``local_plan.attention_tiled`` of the padded size); None tests it in the graph.
    Returns:
      uint8 ``[H, W, 3]``, or ``(that, int32 offsets [1, H/8, W/8, 2])`` with ``with_flow``.
    """
    tf.debugging.assert_equal(tf.shape(hole), tf.shape(image)[:2],
                              message="mask size must equal image size")
    h, w = tf.shape(hole)[0], tf.shape(hole)[1]
    if official:
      h, w = h // GRID * GRID, w // GRID * GRID
      image, hole = image[:h, :w], hole[:h, :w]
      net_image, net_hole = image, hole
    else:
      net_image, net_hole = pad_to_grid(image, hole)
    mask = tf.cast(net_hole, tf.float32)[None, :, :, None]
    x_in = self.network_input(self._network_order(net_image))[None] * (1.0 - mask)
    if with_flow:
      tile = local_plan.attention_tile(tf.shape(mask)[1], tf.shape(mask)[2], self.budget_bytes)
      _, x2, offsets = self.generator((x_in, mask), attention_tile=tile,
                                      attention_tiled=attention_tiled)
    else:
      x2 = local_plan.refine(self.generator, x_in, mask, self.budget_bytes, path=path,
                             attention_tiled=attention_tiled)
    if official:  # every pixel through the float round trip, as the release
      x2 = x2 * mask + x_in * (1.0 - mask)
    # Hole pixels: x2 * 1 + x_in * 0 is x2 exactly, so ours skips the full-size composite.
    out = self._network_order(((x2 + 1.0) * 127.5)[0, :h, :w])
    out = tf.cast(tf.clip_by_value(out, 0.0, 255.0), tf.uint8)  # the release's saturate_cast
    if self.seam_blend and not official:
      # Blends the uint8 fill, so graphs whose network outputs agree in bytes (test.py's and
      # the SavedModel's) agree after blending too; rounded, as the blended values are ours.
      # blend() returns the input's pixels outside the hole, so it is also the composite.
      blended = blending.blend(tf.cast(image, tf.float32), tf.cast(out, tf.float32), hole)
      out = tf.cast(tf.clip_by_value(tf.round(blended), 0.0, 255.0), tf.uint8)
    elif not official:
      out = tf.where(hole[:, :, None], out, image)
    return (out, offsets) if with_flow else out

  def _function(self, official, with_flow, path, attention_tiled=None):
    """``fill`` traced once per variant (dynamic sizes, so every photo size reuses it)."""
    key = (official, with_flow, path, attention_tiled)
    if key not in self._traced:
      def fn(image, hole):
        return self.fill(image, hole, official=official, with_flow=with_flow, path=path,
                         attention_tiled=attention_tiled)
      self._traced[key] = tf.function(fn, input_signature=[IMAGE_SPEC, HOLE_SPEC],
                                      autograph=False)
    return self._traced[key]

  def choose_path(self, hole):
    """``local`` or ``full``: the path ``path='auto'`` takes in the graph for a bool [H, W]
    hole, decided eagerly (a few hundred small ops cost less than tracing them)."""
    mask = tf.cast(pad_to_grid(hole, hole)[1], tf.float32)[None, :, :, None]
    return "local" if local_plan.use_local(self.generator, mask) else "full"

  def inpaint(self, rgb, hole, official=False, with_flow=False):
    """Inpaints one image (NumPy in and out).

    Args:
      rgb: uint8 ``[H, W, 3]`` RGB.
      hole: bool ``[H, W]``, True = pixel to fill.
      official: reproduce the official ``test.py`` output (grid-8 crop, float round trip
        on every pixel) instead of our conventions.
      with_flow: also return the attention-flow picture (uint8 RGB, output size); this
        runs the full network, otherwise only what reaches the hole is computed.
    Returns:
      ``(result uint8 [H, W, 3], flow or None)``.
    """
    rgb, hole = np.asarray(rgb), np.asarray(hole, bool)
    if not hole.any() and not (official or with_flow):
      return rgb.copy(), None
    # The path (and for the full network, dense or tiled attention) is chosen here rather than
    # in the graph, so only what runs is traced.
    grid_hole = hole[:hole.shape[0] // GRID * GRID, :hole.shape[1] // GRID * GRID] if official \
        else hole
    path = "full" if with_flow or not hole.any() else self.choose_path(grid_hole)
    tiled = None
    if path == "full":
      height, width = (-(-n // GRID) * GRID for n in grid_hole.shape)
      tiled = local_plan.attention_tiled(height, width, self.budget_bytes)
    fill = self._function(official, with_flow, path, tiled)
    if not with_flow:
      return fill(rgb, hole).numpy(), None
    result, offsets = fill(rgb, hole)
    picture = flow_viz.flow_to_image(offsets, upsample=GRID)
    h, w = result.shape[:2]
    return result.numpy(), flow_viz.flow_to_uint8(picture).numpy()[0, :h, :w]
