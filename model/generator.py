"""Two-stage DeepFill v1 generator (ARCHITECTURE.md §2): one layer table, named stages.

``layer_table(cnum)`` is the only description of the architecture: it builds the layers
(official checkpoint names) and is what ``model/inference/local_plan.py`` reads for
receptive fields and FLOPs. ``InpaintGenerator.call`` is the composition of the public
stage methods; other inference paths (hole-local, export graphs) compose the same methods.
"""
import dataclasses

import keras
import tensorflow as tf

from layers import resize
from layers.contextual_attention import ContextualAttention
from layers.gen_conv import GenConv, GenDeconv

STAGES = ("coarse", "hallucination", "attention_encoder", "attention_decoder", "merge")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One generator conv of ARCHITECTURE.md §2.1: ``kind`` ``conv`` (``GenConv``) or
  ``up`` (nearest ×2 upsample, then a 3×3 stride-1 conv: ``GenDeconv``)."""
  name: str
  filters: int
  kernel: int = 3
  stride: int = 1
  dilation: int = 1
  kind: str = "conv"
  activation: str | None = "elu"


@dataclasses.dataclass(frozen=True)
class StageSpec:
  """A chain of layers. ``in_channels``: channels it reads; ``in_scale``: full-resolution
  pixels per pixel of its input (1 for image-size inputs, 4 at H/4)."""
  layers: tuple
  in_channels: int
  in_scale: int = 1

  @property
  def out_channels(self):
    return self.layers[-1].filters


@dataclasses.dataclass(frozen=True)
class AttentionSpec:
  """Contextual attention settings (ARCHITECTURE.md §3): patch size, stride, downsampling rate."""
  ksize: int = 3
  stride: int = 1
  rate: int = 2


ATTENTION = AttentionSpec()


def layer_table(cnum):
  """``{stage: StageSpec}`` of ARCHITECTURE.md §2.3 and §2.5, stages in ``STAGES`` (= checkpoint)
  order. Both stage-2 branches read ``[x̃, 1, m]`` (5 channels); the merge reads both branches."""
  c = int(cnum)
  L = LayerSpec
  coarse = (
      L("conv1", c, 5), L("conv2_downsample", 2 * c, stride=2), L("conv3", 2 * c),
      L("conv4_downsample", 4 * c, stride=2), L("conv5", 4 * c), L("conv6", 4 * c),
      L("conv7_atrous", 4 * c, dilation=2), L("conv8_atrous", 4 * c, dilation=4),
      L("conv9_atrous", 4 * c, dilation=8), L("conv10_atrous", 4 * c, dilation=16),
      L("conv11", 4 * c), L("conv12", 4 * c), L("conv13_upsample", 2 * c, kind="up"),
      L("conv14", 2 * c), L("conv15_upsample", c, kind="up"), L("conv16", c // 2),
      L("conv17", 3, activation=None))
  hallucination = (
      L("xconv1", c, 5), L("xconv2_downsample", c, stride=2), L("xconv3", 2 * c),
      L("xconv4_downsample", 2 * c, stride=2), L("xconv5", 4 * c), L("xconv6", 4 * c),
      L("xconv7_atrous", 4 * c, dilation=2), L("xconv8_atrous", 4 * c, dilation=4),
      L("xconv9_atrous", 4 * c, dilation=8), L("xconv10_atrous", 4 * c, dilation=16))
  encoder = (
      L("pmconv1", c, 5), L("pmconv2_downsample", c, stride=2), L("pmconv3", 2 * c),
      L("pmconv4_downsample", 4 * c, stride=2), L("pmconv5", 4 * c),
      L("pmconv6", 4 * c, activation="relu"))
  decoder = (L("pmconv9", 4 * c), L("pmconv10", 4 * c))
  merge = (
      L("allconv11", 4 * c), L("allconv12", 4 * c), L("allconv13_upsample", 2 * c, kind="up"),
      L("allconv14", 2 * c), L("allconv15_upsample", c, kind="up"), L("allconv16", c // 2),
      L("allconv17", 3, activation=None))
  return {
      "coarse": StageSpec(coarse, 5),
      "hallucination": StageSpec(hallucination, 5),
      "attention_encoder": StageSpec(encoder, 5),
      "attention_decoder": StageSpec(decoder, encoder[-1].filters, 4),
      "merge": StageSpec(merge, hallucination[-1].filters + decoder[-1].filters, 4),
  }


def _build_layer(spec, padding, gated, dtype=None):
  if spec.kind == "up":
    if (spec.kernel, spec.stride, spec.dilation, spec.activation) != (3, 1, 1, "elu"):
      raise ValueError(f"{spec.name}: an 'up' layer is a 3x3 stride-1 ELU conv")
    return GenDeconv(spec.filters, padding=padding, gated=gated, name=spec.name, dtype=dtype)
  if spec.kind != "conv":
    raise ValueError(f"{spec.name}: kind must be 'conv' or 'up', got {spec.kind!r}")
  return GenConv(spec.filters, spec.kernel, spec.stride, spec.dilation,
                 activation=spec.activation, padding=padding, gated=gated, name=spec.name,
                 dtype=dtype)


def _with_mask_channels(x, mask):
  """``[x, 1, m]`` (ARCHITECTURE.md §2.2): ``[B, H, W, 3]``, ``[B, H, W, 1]`` -> ``[B, H, W, 5]``
  in the dtype of ``x``."""
  ones = tf.ones_like(x[..., :1])
  return tf.concat([x, ones, ones * tf.cast(mask, x.dtype)], axis=-1)


@keras.saving.register_keras_serializable(package="deepfill")
class InpaintGenerator(keras.Model):
  """Coarse network + refinement network with contextual attention (ARCHITECTURE.md §2.3–2.5).

  Call ``x1, x2, offsets = gen((x_in, mask))``:
    x_in: float32 ``[B, H, W, 3]`` in [-1, 1] with holes zeroed (``x * (1 - mask)``),
      channel order as the checkpoint expects (BGR for official weights).
    mask: float32 ``[B, H, W, 1]``, 1 = hole, one per sample. H, W multiples of 8.
  Returns the coarse and refined images (clipped to [-1, 1], not composited) and
  the attention offsets, int32 ``[B, H/8, W/8, 2]``. ``attention_tile``, ``attention_tiled``:
  runtime memory knobs of the attention (see :meth:`attention_branch`); same result.

  Precision: ``dtype=`` a Keras dtype policy (``"float32"``, ``"mixed_bfloat16"``,
  ``"mixed_float16"``; ``model/precision.py``) given to every layer. Variables are float32
  under every policy, so the same checkpoints load. The convolutions and features run in the
  compute dtype; the images ``coarse`` and ``merge`` return (x1, x2) are cast to float32,
  so that callers composite and map pixels in float32 whatever the policy.

  ``call`` is the composition of the stage methods below (``c`` = cnum; every stage is
  fully convolutional, so each also runs on a crop whose sides are multiples of 8)::

    x1 = coarse(x_in, mask)
    xnow = stage2_input(x_in, mask, x1)
    y, offsets = attention_branch(attention_encoder(xnow), attention_mask(mask))
    x2 = merge(hallucination(xnow), y)

  ``table`` is the ``layer_table(cnum)`` the layers were built from.
  """

  def __init__(self, cnum=32, padding="zero", gated=False, **kwargs):
    super().__init__(**kwargs)
    self.cnum = int(cnum)
    self.padding = padding
    self.gated = bool(gated)
    self.table = layer_table(self.cnum)
    policy = self.dtype_policy
    self._stages = {stage: [_build_layer(spec, padding, self.gated, policy)
                            for spec in self.table[stage].layers] for stage in STAGES}
    self.attention = ContextualAttention(ATTENTION.ksize, ATTENTION.stride, rate=ATTENTION.rate,
                                         name="contextual_attention", dtype=policy)
    # tf.train.Checkpoint does not follow Keras' tracked lists: expose each layer
    # as an attribute named like its official scope so checkpoints hold it.
    for layer in self.conv_layers():
      setattr(self, layer.name, layer)

  def build(self, input_shape):
    # Sub-layers build themselves on the first call; nothing to create here.
    self.built = True

  def initialize(self):
    """Creates all weights from the layer table, without a forward pass (needed before
    restoring). Same variables, paths and initial values as building on a first call."""
    with keras.name_scope(self.name):  # in call order, so seeded initial values match
      for stage in STAGES:
        channels = self.table[stage].in_channels
        for layer in self._stages[stage]:
          layer.build((None, None, None, channels))
          channels = layer.filters
    self.built = True
    return self

  def conv_layers(self):
    """All GenConv / GenDeconv layers in checkpoint order."""
    return [layer for stage in STAGES for layer in self._stages[stage]]

  def _run(self, stage, x):
    for layer in self._stages[stage]:
      x = layer(x)
    return x

  # ------------------------------------------------------------------ stages

  def _compute(self, x):
    return tf.cast(x, self.compute_dtype)

  def coarse(self, x_in, mask):
    """Stage 1 (§2.3): ``x_in`` ``[B, H, W, 3]`` (holes zeroed), ``mask`` ``[B, H, W, 1]``
    -> ``x1`` ``[B, H, W, 3]`` clipped to [-1, 1], float32."""
    x = self._run("coarse", _with_mask_channels(self._compute(x_in), mask))
    return tf.cast(tf.clip_by_value(x, -1.0, 1.0), tf.float32)

  def stage2_input(self, x_in, mask, x_stage1):
    """``[x̃, 1, m]`` with ``x̃ = x1·m + x_in·(1 − m)`` (§2.4; no stop-gradient): three
    ``[B, H, W, 3|1|3]`` tensors -> ``[B, H, W, 5]`` in the compute dtype. Only hole pixels of
    ``x_stage1`` are read."""
    x_in, mask, x_stage1 = self._compute(x_in), self._compute(mask), self._compute(x_stage1)
    return _with_mask_channels(x_stage1 * mask + x_in * (1.0 - mask), mask)

  def hallucination(self, xnow):
    """Branch A, ``xconv1..10`` (§2.5): ``[B, H, W, 5]`` -> ``[B, H/4, W/4, 4c]``."""
    return self._run("hallucination", xnow)

  def attention_encoder(self, xnow):
    """Branch B encoder, ``pmconv1..6`` (§2.5): ``[B, H, W, 5]`` -> ``[B, H/4, W/4, 4c]``."""
    return self._run("attention_encoder", xnow)

  def attention_mask(self, mask):
    """``m_s``: the mask at the feature size (§2.3, nearest with aligned corners, §1.4):
    ``[B, H, W, 1]`` -> ``[B, H/4, W/4, 1]`` (same dtype). Always from the full-size mask."""
    return resize.resize_nearest_align_corners(mask, (tf.shape(mask)[1:3] + 3) // 4)

  def attention_branch(self, features, mask_s, attention_tile=None, attention_tiled=None,
                       query_box=None, output_box=None, query_mask=None):
    """Contextual attention (§3) of ``features`` on themselves, then ``pmconv9..10``.

    Args:
      features: ``attention_encoder`` output ``[B, h, w, 4c]`` (h = H/4) of the whole image:
        every background patch is a key.
      mask_s: ``attention_mask(mask)``, ``[B, h, w, 1]``.
      attention_tile: None (dense) or int / int32 scalar: query tile on the ``h/2 × w/2``
        grid; bounds memory, same result (§3.9).
      attention_tiled: Python bool or None: whether that tile is smaller than the grid (None:
        tested in the graph, both branches traced).
      query_box, output_box, query_mask: compute only queries in ``query_box`` (int32
        (y0, y1, x0, x1) on the ``h/2`` grid), only tiles with a True in ``query_mask``
        (bool ``[h/2, w/2]``), and return only the ``output_box`` window (on the ``h`` grid)
        — ``layers/contextual_attention.py``.
    Returns:
      ``(y, offsets)``: y ``[B, h, w, 4c]`` in the compute dtype (or the ``output_box`` window), offsets
      int32 ``[B, h/2, w/2, 2]`` (meaningless outside ``query_box``).
    """
    y, offsets = self.attention((features, features, mask_s), tile_size=attention_tile,
                                tiled=attention_tiled, query_box=query_box,
                                output_box=output_box, query_mask=query_mask)
    return self._run("attention_decoder", y), offsets

  def merge(self, hallucinated, attended):
    """Merge decoder ``allconv11..17`` (§2.5): branch A and branch B outputs, both
    ``[B, h, w, 4c]`` -> ``x2`` ``[B, 4h, 4w, 3]`` clipped to [-1, 1], float32."""
    x = self._run("merge", tf.concat([self._compute(hallucinated), self._compute(attended)],
                                     axis=-1))
    return tf.cast(tf.clip_by_value(x, -1.0, 1.0), tf.float32)

  def call(self, inputs, training=False, attention_tile=None, attention_tiled=None):
    x_in, mask = inputs
    x_in = self._compute(x_in)
    mask = self._compute(mask)
    x_stage1 = self.coarse(x_in, mask)
    xnow = self.stage2_input(x_in, mask, x_stage1)
    hallucinated = self.hallucination(xnow)
    attended, offsets = self.attention_branch(
        self.attention_encoder(xnow), self.attention_mask(mask),
        attention_tile=attention_tile, attention_tiled=attention_tiled)
    return x_stage1, self.merge(hallucinated, attended), offsets

  def get_config(self):
    config = super().get_config()
    config.update(cnum=self.cnum, padding=self.padding, gated=self.gated)
    return config


def build_generator(config, dtype="float32"):
  """Builds (and initialises) an ``InpaintGenerator`` from a ``ModelConfig``.

  ``dtype``: the Keras dtype policy (or its name, ``model.precision.PRECISIONS``) of every
  layer; float32 by default whatever Keras' global policy is.
  """
  gen = InpaintGenerator(cnum=config.cnum, padding=config.padding, gated=config.gated,
                         name="inpaint_net", dtype=dtype)
  return gen.initialize()
