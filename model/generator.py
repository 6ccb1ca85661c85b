"""Two-stage DeepFill v1 generator (ARCHITECTURE.md §2), layer names as in the official checkpoint."""
import keras
import tensorflow as tf

from layers import resize
from layers.contextual_attention import ContextualAttention
from layers.gen_conv import GenConv, GenDeconv


@keras.saving.register_keras_serializable(package="deepfill")
class InpaintGenerator(keras.Model):
  """Coarse network + refinement network with contextual attention (ARCHITECTURE.md §2.3–2.5).

  Call ``x1, x2, offsets = gen((x_in, mask))``:
    x_in: float32 ``[B, H, W, 3]`` in [-1, 1] with holes zeroed (``x * (1 - mask)``),
      channel order as the checkpoint expects (BGR for official weights).
    mask: float32 ``[B, H, W, 1]``, 1 = hole, one per sample. H, W multiples of 8.
  Returns the coarse and refined images (clipped to [-1, 1], not composited) and
  the attention offsets, int32 ``[B, H/8, W/8, 2]``. ``attention_tile``, ``attention_tiled``:
  the attention's ``tile_size`` and ``tiled`` (``layers/contextual_attention.py``).
  """

  def __init__(self, cnum=32, padding="zero", gated=False, attention_tile=None, **kwargs):
    super().__init__(**kwargs)
    self.cnum = int(cnum)
    self.padding = padding
    self.gated = bool(gated)
    self.attention_tile = attention_tile
    c = self.cnum

    def conv(name, filters, k=3, s=1, d=1, act="elu"):
      return GenConv(filters, k, s, d, activation=act, padding=padding, gated=gated, name=name)

    def deconv(name, filters):
      return GenDeconv(filters, padding=padding, gated=gated, name=name)

    # Stage 1 (ARCHITECTURE.md §2.3).
    self.coarse_layers = [
        conv("conv1", c, 5), conv("conv2_downsample", 2 * c, 3, 2), conv("conv3", 2 * c),
        conv("conv4_downsample", 4 * c, 3, 2), conv("conv5", 4 * c), conv("conv6", 4 * c),
        conv("conv7_atrous", 4 * c, d=2), conv("conv8_atrous", 4 * c, d=4),
        conv("conv9_atrous", 4 * c, d=8), conv("conv10_atrous", 4 * c, d=16),
        conv("conv11", 4 * c), conv("conv12", 4 * c), deconv("conv13_upsample", 2 * c),
        conv("conv14", 2 * c), deconv("conv15_upsample", c), conv("conv16", c // 2),
        conv("conv17", 3, act=None)]
    # Stage 2, branch A: dilated "hallucination" convs (ARCHITECTURE.md §2.5).
    self.hallu_layers = [
        conv("xconv1", c, 5), conv("xconv2_downsample", c, 3, 2), conv("xconv3", 2 * c),
        conv("xconv4_downsample", 2 * c, 3, 2), conv("xconv5", 4 * c), conv("xconv6", 4 * c),
        conv("xconv7_atrous", 4 * c, d=2), conv("xconv8_atrous", 4 * c, d=4),
        conv("xconv9_atrous", 4 * c, d=8), conv("xconv10_atrous", 4 * c, d=16)]
    # Stage 2, branch B: contextual attention.
    self.pm_encoder = [
        conv("pmconv1", c, 5), conv("pmconv2_downsample", c, 3, 2), conv("pmconv3", 2 * c),
        conv("pmconv4_downsample", 4 * c, 3, 2), conv("pmconv5", 4 * c),
        conv("pmconv6", 4 * c, act="relu")]
    self.attention = ContextualAttention(3, 1, rate=2, tile_size=attention_tile,
                                         name="contextual_attention")
    self.pm_decoder = [conv("pmconv9", 4 * c), conv("pmconv10", 4 * c)]
    # Merge and decode.
    self.merge_layers = [
        conv("allconv11", 4 * c), conv("allconv12", 4 * c), deconv("allconv13_upsample", 2 * c),
        conv("allconv14", 2 * c), deconv("allconv15_upsample", c), conv("allconv16", c // 2),
        conv("allconv17", 3, act=None)]
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

    def chain(layers, channels):
      for layer in layers:
        layer.build((None, None, None, channels))
        channels = layer.filters
      return channels

    with keras.name_scope(self.name):  # in call order, so seeded initial values match
      chain(self.coarse_layers, 5)
      hallu = chain(self.hallu_layers, 5)
      chain(self.pm_decoder, chain(self.pm_encoder, 5))
      chain(self.merge_layers, hallu + self.pm_decoder[-1].filters)
    self.built = True
    return self

  def conv_layers(self):
    """All GenConv / GenDeconv layers in checkpoint order."""
    return (self.coarse_layers + self.hallu_layers + self.pm_encoder + self.pm_decoder
            + self.merge_layers)

  def call(self, inputs, training=False, attention_tile=None, attention_tiled=None):
    x_in, mask = inputs
    x_in = tf.convert_to_tensor(x_in, tf.float32)
    mask = tf.cast(mask, tf.float32)
    ones = tf.ones_like(x_in[..., :1])
    # Stage 1 input: [x_in, ones, ones*mask] (ARCHITECTURE.md §2.2).
    x = tf.concat([x_in, ones, ones * mask], axis=-1)
    for i, layer in enumerate(self.coarse_layers):
      x = layer(x)
      if i == 5:  # after conv6: mask at the feature resolution, for attention.
        mask_s = resize.resize_nearest_align_corners(mask, tf.shape(x)[1:3])
    x_stage1 = tf.clip_by_value(x, -1.0, 1.0)

    # Paste the coarse result into the hole (no stop-gradient, ARCHITECTURE.md §2.4).
    x = x_stage1 * mask + x_in * (1.0 - mask)
    xnow = tf.concat([x, ones, ones * mask], axis=-1)
    hallu = xnow
    for layer in self.hallu_layers:
      hallu = layer(hallu)
    pm = xnow
    for layer in self.pm_encoder:
      pm = layer(pm)
    pm, offsets = self.attention((pm, pm, mask_s), tile_size=attention_tile,
                                 tiled=attention_tiled)
    for layer in self.pm_decoder:
      pm = layer(pm)
    x = tf.concat([hallu, pm], axis=-1)
    for layer in self.merge_layers:
      x = layer(x)
    x_stage2 = tf.clip_by_value(x, -1.0, 1.0)
    return x_stage1, x_stage2, offsets

  def get_config(self):
    config = super().get_config()
    config.update(cnum=self.cnum, padding=self.padding, gated=self.gated,
                  attention_tile=self.attention_tile)
    return config


def build_generator(config):
  """Builds (and initialises) an ``InpaintGenerator`` from a ``ModelConfig``."""
  gen = InpaintGenerator(cnum=config.cnum, padding=config.padding, gated=config.gated,
                         attention_tile=config.attention_tile, name="inpaint_net")
  return gen.initialize()
