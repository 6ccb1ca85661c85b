"""Inference on whole photos: any size, uint8 in, uint8 out — the one pipeline.

:meth:`Inpainter.fill` is the whole computation as TensorFlow ops: reflect-pad to a
multiple of 8, scale to [-1, 1] in the network's channel order, zero the hole, run the
generator's stage 2 (hole-local where that saves work, ``local_plan.refine``), map back
with the release's ``(x + 1) * 127.5``, saturate (clip, truncate toward zero), crop and copy
the known pixels from the input. ``test.py`` and ``evaluate.py`` call it through
:meth:`Inpainter.inpaint` (NumPy in and out); the SavedModel's signatures
(``model/inference/serving.py``) call it inside their graph, so both give the same bytes.

Its conventions and how they differ from the release's test-time procedure are
ARCHITECTURE.md §7.1–7.2 (padding instead of cropping, known pixels copied); after the network,
``seam_blend`` (§7.6, ``model/inference/blending.py``) pastes the fill in the gradient domain.
``official=True`` reproduces the release bit for bit instead: grid-8 crop, every pixel through
the float round trip, no blending.

The generator runs under the Keras dtype policy ``precision`` names (``float32`` by default,
the release's computation; ``model/inference/run_precision.py``): the pixel mapping into and
out of the network, the plan and the seam blending stay float32, and the network's output is
cast to float32 before it is mapped back to pixels. In float32 those casts are no-ops, so the
default graph is unchanged.

Inside a graph grappler rewrites ``x / 127.5`` into ``x * (1 / 127.5)``, which is one ulp off
for 111 of the 256 pixel values and moves some truncated outputs by a level; the divisor is
therefore a ``tf.Variable`` (saved with an export), which constant folding cannot see through.
"""
import numpy as np
import tensorflow as tf

from model import config as config_lib
from model import flow_viz
from model import weights
from model.config import GRID
from model.inference import blending
from model.inference import local_plan
from model.inference import regions
from model.inference import run_precision
from model.inference import scaling

IMAGE_SPEC = tf.TensorSpec([None, None, 3], tf.uint8)
HOLE_SPEC = tf.TensorSpec([None, None], tf.bool)
# Seam blending as run by ``Inpainter.inpaint``: one traced function per process.
_BLEND = blending.TracedBlend()


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
    seam_blend: seam-blend the fill into the photo (``blending.blend``); False returns the
      network's hole pixels unchanged; None: as ``inference`` declares. Ignored with
      ``official=True``.
    strategy: ``original``, ``resize``, ``crop`` or ``auto`` (``model/inference/scaling.py``);
      None: as ``inference`` declares.
    inference: the model's :class:`InferenceConfig` (``weights.inference_defaults``); None:
      ``LEGACY_INFERENCE`` (full resolution, blended, float32).
    precision: ``float32``, ``mixed_bfloat16``, ``mixed_float16`` or ``auto``
      (``run_precision.resolve``); None: as ``inference`` declares. The generator is rebuilt
      under that policy with the same weights when it was built under another; a precision
      this machine cannot run raises ``UserError``.
  Attributes:
    precision: the Keras dtype policy the network runs under (``auto`` resolved).
  """

  def __init__(self, generator, model_config, max_memory_gb=1.0, seam_blend=None,
               strategy=None, inference=None, precision=None):
    self.inference = config_lib.LEGACY_INFERENCE if inference is None else inference
    self.seam_blend = self.inference.seam_blend if seam_blend is None else bool(seam_blend)
    self.strategy = self.inference.strategy if strategy is None else strategy
    if self.strategy not in config_lib.STRATEGIES:
      raise ValueError(f"strategy must be one of {config_lib.STRATEGIES}, got {self.strategy!r}")
    requested = self.inference.precision if precision is None else precision
    if requested not in config_lib.INFERENCE_PRECISIONS:
      raise ValueError(f"precision must be one of {config_lib.INFERENCE_PRECISIONS}, "
                       f"got {requested!r}")
    self.budget_bytes = local_plan.budget_bytes_of(max_memory_gb)
    self.precision = run_precision.resolve(requested)
    self.generator = weights.under_precision(generator, model_config, self.precision)
    self.config = model_config
    self.bgr = model_config.channel_order == "bgr"
    # A variable, not a constant: see the module docstring.
    self.pixel_scale = tf.Variable(127.5, dtype=tf.float32, trainable=False, name="pixel_scale")
    self._traced = {}
    self._traced_paths = None

  @classmethod
  def from_checkpoint(cls, path, max_memory_gb=1.0, seam_blend=None, strategy=None,
                      precision=None):
    """Loads ``path`` (ours or official) with its declared inference defaults; ``seam_blend``,
    ``strategy`` and ``precision`` override them unless None."""
    inference = weights.inference_defaults(path)
    chosen = run_precision.resolve(precision or inference.precision)  # built once, under it
    gen, cfg = weights.load_generator(path, dtype=chosen)
    return cls(gen, cfg, max_memory_gb=max_memory_gb, seam_blend=seam_blend,
               strategy=strategy, inference=inference, precision=chosen)

  def pipeline(self):
    """What runs, for reports and the web page: ``{"strategy": ..., "seam_blend": ...}``."""
    return {"strategy": self.strategy, "seam_blend": self.seam_blend}

  def _network_order(self, x):
    return tf.reverse(x, axis=[-1]) if self.bgr else x

  def network_input(self, pixels):
    """uint8 pixels -> float32 ``pixels / 127.5 - 1`` with the release's rounding."""
    return tf.cast(pixels, tf.float32) / self.pixel_scale - 1.0

  def _stage2(self, x_in, mask, with_flow, path, attention_tiled):
    """The refined image ``x2`` (float32, whatever the compute dtype) of the padded input and,
    with ``with_flow``, the full network's attention offsets (else None: only what reaches the
    hole is computed)."""
    if with_flow:
      tile = local_plan.attention_tile(tf.shape(mask)[1], tf.shape(mask)[2], self.budget_bytes)
      _, x2, offsets = self.generator((x_in, mask), attention_tile=tile,
                                      attention_tiled=attention_tiled)
      return tf.cast(x2, tf.float32), offsets  # from the compute dtype (no-op in float32)
    return local_plan.refine(self.generator, x_in, mask, self.budget_bytes, path=path,
                             attention_tiled=attention_tiled), None

  def _network_fill(self, image, hole, path="auto", attention_tiled=None, with_flow=False):
    """The network at the image's own scale: uint8 ``[H, W, 3]`` whose hole pixels are the
    network's (others are meaningless), and the offsets with ``with_flow``."""
    h, w = tf.shape(hole)[0], tf.shape(hole)[1]
    net_image, net_hole = pad_to_grid(image, hole)
    mask = tf.cast(net_hole, tf.float32)[None, :, :, None]
    x_in = self.network_input(self._network_order(net_image))[None] * (1.0 - mask)
    x2, offsets = self._stage2(x_in, mask, with_flow, path, attention_tiled)  # float32
    # Hole pixels: x2 * 1 + x_in * 0 is x2 exactly, so ours skips the full-size composite.
    out = self._network_order(((x2 + 1.0) * 127.5)[0, :h, :w])
    out = tf.cast(tf.clip_by_value(out, 0.0, 255.0), tf.uint8)  # the release's saturate_cast
    return (out, offsets) if with_flow else out

  def _scaled_fill(self, image, hole, scale, path="auto", attention_tiled=None):
    """The network's hole pixels (uint8 ``[H, W, 3]``, the input elsewhere) computed at
    ``scale`` (float32 ≤ 1): area-downscaled photo, fill composited there, bicubic back.
    Only the resampling is conditional, so the network appears once in a graph."""
    h, w = tf.shape(hole)[0], tf.shape(hole)[1]
    shrink = scale < 1.0

    def scaled_input():
      size = scaling.scaled_size(h, w, scale)
      return scaling.downscale(image, size), scaling.downscale_hole(hole, size)

    small, small_hole = tf.cond(shrink, scaled_input, lambda: (image, hole))
    net = self._network_fill(small, small_hole, path, attention_tiled)

    def scaled_output():
      small_fill = tf.where(small_hole[..., None], net, small)
      return tf.where(hole[..., None], scaling.upscale(small_fill, tf.stack([h, w])), image)

    return tf.cond(shrink, scaled_output, lambda: tf.where(hole[..., None], net, image))

  def _regions(self, hole):
    """Hole regions: boxes int32 [N, 4], cell labels, and each region's scale float32 [N]."""
    boxes, labels = regions.region_boxes(hole, regions.CELL)
    depths = scaling.region_depths(hole, labels, tf.shape(boxes)[0], regions.CELL)
    return boxes, labels, scaling.scale_for(depths, self.inference.hole_max)

  def _resize_fill(self, image, hole):
    """``resize``: the whole photo at the scale of its deepest hole region."""
    scales = self._regions(hole)[2]
    return self._scaled_fill(image, hole, tf.reduce_min(tf.concat([scales, [1.0]], 0)))

  def crop_plan(self, hole):
    """What ``crop`` runs: the pieces of the hole (``scaling.crop_pieces``), each filled in
    one network call on its context box. Returns ``(boxes int32 [P, 4], cell labels,
    scales float32 [P], context boxes int32 [P, 4])``."""
    boxes, labels, scales = self._regions(hole)
    inf = self.inference
    boxes, labels, scales = scaling.crop_pieces(hole, labels, boxes, scales, inf.crop_size,
                                                regions.CELL)
    contexts = scaling.context_box(boxes, scales, inf.crop_size, tf.shape(hole)[0],
                                   tf.shape(hole)[1])
    return boxes, labels, scales, contexts

  def _crop_fill(self, image, hole, path="auto", attention_tiled=None):
    """``crop``: each piece of the hole (:meth:`crop_plan`) in its context box at its own
    scale, pasted back (only that piece's hole pixels), one piece after another. ``path``,
    ``attention_tiled``: every piece's network (``choose_crop_path``; default: decided per
    piece in the graph)."""
    boxes, labels, scales, contexts = self.crop_plan(hole)

    def body(i, out):
      box, scale, c = boxes[i], scales[i], contexts[i]
      filled = self._scaled_fill(image[c[0]:c[2], c[1]:c[3]], hole[c[0]:c[2], c[1]:c[3]], scale,
                                 path, attention_tiled)
      inner = filled[box[0] - c[0]:box[2] - c[0], box[1] - c[1]:box[3] - c[1]]
      own = tf.logical_and(hole[box[0]:box[2], box[1]:box[3]],
                           scaling.owned(labels, box, i, regions.CELL))
      patch = tf.where(own[..., None], inner, out[box[0]:box[2], box[1]:box[3]])
      return i + 1, tf.tensor_scatter_nd_update(out, scaling.box_indices(box), patch)

    # One piece at a time: their working memory does not add up.
    return tf.while_loop(lambda i, _: i < tf.shape(boxes)[0], body, (tf.constant(0), image),
                         parallel_iterations=1)[1]

  def _crop_paths(self, hole):
    """bool [P]: whether each ``crop`` piece's network takes the hole-local path (what
    ``path='auto'`` decides for it in the graph: ``local_plan.use_local`` of its network
    mask)."""
    _, _, scales, contexts = self.crop_plan(hole)

    def local(i):
      c, scale = contexts[i], scales[i]
      sub = hole[c[0]:c[2], c[1]:c[3]]
      size = scaling.scaled_size(c[2] - c[0], c[3] - c[1], scale)
      sub = tf.cond(scale < 1.0, lambda: scaling.downscale_hole(sub, size), lambda: sub)
      mask = tf.cast(pad_to_grid(sub, sub)[1], tf.float32)[None, :, :, None]
      return local_plan.use_local(self.generator, mask)

    return tf.map_fn(local, tf.range(tf.shape(scales)[0]),
                     fn_output_signature=tf.TensorSpec([], tf.bool))

  def needs_scaling(self, hole):
    """bool scalar: some hole region is deeper than the training holes (its scale is below 1;
    ``auto`` then runs ``crop``, else ``original``)."""
    return tf.reduce_any(self._regions(hole)[2] < 1.0)

  def _strategy_fill(self, image, hole, strategy, path, attention_tiled):
    if strategy == "original":
      return self._network_fill(image, hole, path, attention_tiled)
    if strategy == "resize":
      return self._resize_fill(image, hole)
    if strategy == "crop":
      return self._crop_fill(image, hole, path, attention_tiled)
    return tf.cond(self.needs_scaling(hole), lambda: self._crop_fill(image, hole),
                   lambda: self._network_fill(image, hole))

  def fill(self, image, hole, official=False, with_flow=False, path="auto",
           attention_tiled=None, strategy=None, seam_blend=None):
    """The inference pipeline on one image, as TensorFlow ops (eager or in a graph).

    Args:
      image: uint8 ``[H, W, 3]`` RGB.
      hole: bool ``[H, W]``, True = pixel to fill.
      official: the release's output instead of ours (grid-8 crop, all pixels through the
        float round trip; the output is ``[H//8*8, W//8*8, 3]``).
      with_flow: also return the attention offsets of the full network at full resolution
        (with the ``original`` strategy that network's output is the fill).
      path: ``auto`` (hole-local when its FLOP plan saves work, decided in the graph),
        ``local`` or ``full`` (``local_plan.refine``) for the ``original`` strategy's network.
      attention_tiled: for the full network, whether its attention runs in tiles
        (``local_plan.attention_tiled`` of the padded size); None tests it in the graph.
      strategy: overrides ``self.strategy`` for this call (``inpaint`` resolves ``auto``).
      seam_blend: overrides ``self.seam_blend`` for this call.
    Returns:
      uint8 ``[H, W, 3]``, or ``(that, int32 offsets [1, H/8, W/8, 2])`` with ``with_flow``.
    """
    tf.debugging.assert_equal(tf.shape(hole), tf.shape(image)[:2],
                              message="mask size must equal image size")
    if official:
      return self._official_fill(image, hole, with_flow, path, attention_tiled)
    strategy = self.strategy if strategy is None else strategy
    offsets = None
    if with_flow:
      out, offsets = self._network_fill(image, hole, attention_tiled=attention_tiled,
                                        with_flow=True)
      if strategy != "original":
        out = self._strategy_fill(image, hole, strategy, "auto", None)
    else:
      out = self._strategy_fill(image, hole, strategy, path, attention_tiled)
    if self.seam_blend if seam_blend is None else seam_blend:
      # Blends the uint8 fill, so graphs whose network outputs agree in bytes (test.py's and
      # the SavedModel's) agree after blending too; rounded, as the blended values are ours.
      # blend() returns the input's pixels outside the hole, so it is also the composite.
      out = blending.blend_uint8(image, out, hole)
    else:
      out = tf.where(hole[:, :, None], out, image)
    return (out, offsets) if with_flow else out

  def _official_fill(self, image, hole, with_flow, path, attention_tiled):
    """The release's bytes: grid-8 crop, every pixel through the float round trip."""
    h, w = tf.shape(hole)[0] // GRID * GRID, tf.shape(hole)[1] // GRID * GRID
    image, hole = image[:h, :w], hole[:h, :w]
    mask = tf.cast(hole, tf.float32)[None, :, :, None]
    x_in = self.network_input(self._network_order(image))[None] * (1.0 - mask)
    x2, offsets = self._stage2(x_in, mask, with_flow, path, attention_tiled)
    x2 = x2 * mask + x_in * (1.0 - mask)
    out = self._network_order(((x2 + 1.0) * 127.5)[0, :h, :w])
    out = tf.cast(tf.clip_by_value(out, 0.0, 255.0), tf.uint8)
    return (out, offsets) if with_flow else out

  def _function(self, official, with_flow, path, attention_tiled=None, strategy=None,
                seam_blend=None):
    """``fill`` traced once per variant (dynamic sizes, so every photo size reuses it)."""
    key = (official, with_flow, path, attention_tiled, strategy, seam_blend)
    if key not in self._traced:
      def fn(image, hole):
        return self.fill(image, hole, official=official, with_flow=with_flow, path=path,
                         attention_tiled=attention_tiled, strategy=strategy,
                         seam_blend=seam_blend)
      self._traced[key] = tf.function(fn, input_signature=[IMAGE_SPEC, HOLE_SPEC],
                                      autograph=False)
    return self._traced[key]

  def choose_path(self, hole):
    """``local`` or ``full``: the path ``path='auto'`` takes in the graph for a bool [H, W]
    hole, decided eagerly (a few hundred small ops cost less than tracing them)."""
    mask = tf.cast(pad_to_grid(hole, hole)[1], tf.float32)[None, :, :, None]
    return "local" if local_plan.use_local(self.generator, mask) else "full"

  def choose_crop_path(self, hole):
    """The network path (``local`` or ``full``) of every ``crop`` piece for a bool [H, W] hole,
    decided as the graph decides it (one traced call for all pieces), so one network is traced;
    ``"auto"`` (decided per piece in the graph) when the pieces disagree. Dense or tiled attention
    stays decided in the graph: that choice alone moved bytes on the README example, and it
    duplicates no convolution."""
    if self._traced_paths is None:
      self._traced_paths = tf.function(self._crop_paths, input_signature=[HOLE_SPEC],
                                       autograph=False)
    paths = set(np.where(self._traced_paths(hole).numpy(), "local", "full").tolist())
    return paths.pop() if len(paths) == 1 else "auto"

  def choose_strategy(self, hole):
    """The strategy this inpainter runs on a bool [H, W] hole: ``self.strategy``, with
    ``auto`` resolved eagerly as the graph resolves it."""
    if self.strategy != "auto":
      return self.strategy
    return "crop" if bool(self.needs_scaling(tf.constant(hole))) else "original"

  def warm_up(self):
    """Traces what ``inpaint`` will run on small inputs (a hole at the model's own scale and,
    unless the strategy is ``original``, one deeper than the training holes), so the first
    photo does not pay for tracing."""
    side = 2 * self.inference.hole_max
    y, x = np.mgrid[:side, :side]
    rgb = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    holes = [(side // 2 - 8, side // 2 + 8)]
    if self.strategy != "original":
      holes.append((side // 8, side - side // 8))
    for lo, hi in holes:
      hole = np.zeros((side, side), bool)
      hole[lo:hi, lo:hi] = True
      self.inpaint(rgb, hole)

  def inpaint(self, rgb, hole, official=False, with_flow=False):
    """Inpaints one image (NumPy in and out).

    Args:
      rgb: uint8 ``[H, W, 3]`` RGB.
      hole: bool ``[H, W]``, True = pixel to fill.
      official: reproduce the official ``test.py`` output (grid-8 crop, float round trip
        on every pixel) instead of our conventions.
      with_flow: also return the attention-flow picture (uint8 RGB, output size) of the
        full network at full resolution.
    Returns:
      ``(result uint8 [H, W, 3], flow or None)``.
    """
    rgb, hole = np.asarray(rgb), np.asarray(hole, bool)
    if not hole.any() and not (official or with_flow):
      return rgb.copy(), None
    # The strategy, the path (and for the full network, dense or tiled attention) are chosen
    # here rather than in the graph, so only what runs is traced.
    strategy = None if official else self.choose_strategy(hole)
    grid_hole = hole[:hole.shape[0] // GRID * GRID, :hole.shape[1] // GRID * GRID] if official \
        else hole
    tiled = None
    if strategy in (None, "original") or with_flow:
      path = "full" if with_flow or not hole.any() else self.choose_path(grid_hole)
      if path == "full":
        height, width = (-(-n // GRID) * GRID for n in grid_hole.shape)
        tiled = local_plan.attention_tiled(height, width, self.budget_bytes)
    elif strategy == "crop":
      path = self.choose_crop_path(hole)
    else:
      path = "auto"
    # Blending runs as its own function, compiled in the background while the network's
    # first call runs (same ops as inside ``fill``, so the same bytes); started after the
    # network is traced, as both tracings need the GIL.
    blend = self.seam_blend and not official
    fill = self._function(official, with_flow, path, tiled, strategy, seam_blend=False)
    if blend:
      fill.get_concrete_function()
      _BLEND.prepare()
    result, offsets = fill(rgb, hole) if with_flow else (fill(rgb, hole), None)
    if blend:
      result = _BLEND(rgb, result, hole)
    if offsets is None:
      return result.numpy(), None
    picture = flow_viz.flow_to_image(offsets, upsample=GRID)
    h, w = result.shape[:2]
    return result.numpy(), flow_viz.flow_to_uint8(picture).numpy()[0, :h, :w]
