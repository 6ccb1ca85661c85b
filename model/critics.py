"""Critics of DeepFill: v1 WGAN-GP global/local critics (ARCHITECTURE.md §4.1) and v2 SN-PatchGAN (§4.2).

Weights are created in the constructor, so a fresh critic can be counted,
restored or given weights without a dummy call. The v1 critics end in a dense
layer, which fixes their input size: it is the constructor argument
``input_size`` (defaults: 256x256 global, 128x128 local, as released). Any
``input_size`` whose sides are multiples of 16 works; calling a critic on a
different size raises an error instead of silently reshaping.

Precision: ``dtype=`` a Keras dtype policy (``model/precision.py``), given to every layer;
variables are float32 under every policy. The scores are returned as float32, so the losses
and the gradient penalty are computed in float32.
"""
import keras
import tensorflow as tf

from layers.dis_conv import DisConv


def _size_pair(input_size):
  if isinstance(input_size, int):
    input_size = (input_size, input_size)
  h, w = (int(v) for v in input_size)
  if h <= 0 or w <= 0 or h % 16 or w % 16:
    raise ValueError(f"critic input_size must be positive multiples of 16, got {(h, w)}")
  return h, w


def _track_for_checkpoints(model, layers):
  """``tf.train.Checkpoint`` does not follow Keras' tracked lists: expose each layer."""
  for layer in layers:
    setattr(model, layer.name, layer)


class _WganCritic(keras.Model):
  """Four ``DisConv`` (5x5, stride 2, LeakyReLU 0.2) + flatten + linear ``Dense(1)``."""

  SCOPE = None       # official TF1 scope of the convs, under "discriminator/"
  FC_NAME = None     # official name of the dense head
  LAST_MULT = None   # width multiplier of conv4
  DEFAULT_SIZE = None

  def __init__(self, cnum=64, input_size=None, in_channels=3, **kwargs):
    kwargs.setdefault("name", self.SCOPE)
    super().__init__(**kwargs)
    self.cnum = int(cnum)
    self.input_size = _size_pair(self.DEFAULT_SIZE if input_size is None else input_size)
    self.in_channels = int(in_channels)
    c = self.cnum
    policy = self.dtype_policy
    self.convs = [DisConv(f, name=f"conv{i + 1}", dtype=policy)
                  for i, f in enumerate((c, 2 * c, 4 * c, self.LAST_MULT * c))]
    self.fc = keras.layers.Dense(1, kernel_initializer="glorot_uniform",
                                 bias_initializer="zeros", name=self.FC_NAME, dtype=policy)
    _track_for_checkpoints(self, self.convs)
    self.build((None, *self.input_size, self.in_channels))

  @property
  def flat_size(self):
    """Length of the flattened conv4 features: (H/16) * (W/16) * LAST_MULT * cnum."""
    h, w = self.input_size
    return (h // 16) * (w // 16) * self.LAST_MULT * self.cnum

  def build(self, input_shape):
    b, h, w, c = input_shape
    for conv in self.convs:
      conv.build((b, h, w, c))
      h, w, c = h // 2, w // 2, conv.filters
    self.fc.build((b, self.flat_size))
    self.built = True

  def call(self, x, training=False):
    """``x``: ``[B, H, W, in_channels]`` in [-1, 1], (H, W) = input_size -> float32 ``[B, 1]``."""
    h, w = self.input_size
    if x.shape[1] is not None and x.shape[2] is not None and tuple(x.shape[1:3]) != (h, w):
      raise ValueError(f"{self.name} was built for {h}x{w} inputs, got "
                       f"{x.shape[1]}x{x.shape[2]}")
    for conv in self.convs:
      x = conv(x, training=training)
    # Row-major NHWC flatten, as the release's flatten (reshape to [B, -1]).
    # An explicit batch dimension makes a wrong dynamic input size an error.
    x = tf.reshape(x, [tf.shape(x)[0], self.flat_size])
    return tf.cast(self.fc(x), tf.float32)

  def official_variable_names(self):
    """Maps official TF1 names (``discriminator/<scope>/convN/kernel`` ...) to variables."""
    names = {}
    for conv in self.convs:
      names[f"discriminator/{self.SCOPE}/{conv.name}/kernel"] = conv.conv.kernel
      names[f"discriminator/{self.SCOPE}/{conv.name}/bias"] = conv.conv.bias
    names[f"discriminator/{self.FC_NAME}/kernel"] = self.fc.kernel
    names[f"discriminator/{self.FC_NAME}/bias"] = self.fc.bias
    return names

  def get_config(self):
    config = super().get_config()
    config.update(cnum=self.cnum, input_size=list(self.input_size),
                  in_channels=self.in_channels)
    return config


@keras.saving.register_keras_serializable(package="deepfill")
class GlobalCritic(_WganCritic):
  """WGAN-GP critic on the whole image (ARCHITECTURE.md §4.1): convs cnum, 2c, 4c, 4c, dense ``dout_global_fc``.

  ``GlobalCritic(cnum=64, input_size=256)`` has 2,733,441 parameters. Input
  float32 ``[B, H, W, in_channels]`` (3 = image; 4 with the mask for the
  ``GAN_WITH_MASK`` option), output the linear score ``[B, 1]``.
  """

  SCOPE = "discriminator_global"
  FC_NAME = "dout_global_fc"
  LAST_MULT = 4
  DEFAULT_SIZE = (256, 256)


@keras.saving.register_keras_serializable(package="deepfill")
class LocalCritic(_WganCritic):
  """WGAN-GP critic on the bbox crop (ARCHITECTURE.md §4.1): convs cnum, 2c, 4c, 8c, dense ``dout_local_fc``.

  ``LocalCritic(cnum=64, input_size=128)`` has 4,339,329 parameters. Input
  float32 ``[B, h, w, in_channels]`` (the local patch), output ``[B, 1]``.
  """

  SCOPE = "discriminator_local"
  FC_NAME = "dout_local_fc"
  LAST_MULT = 8
  DEFAULT_SIZE = (128, 128)


@keras.saving.register_keras_serializable(package="deepfill")
class SNPatchCritic(keras.Model):
  """SN-PatchGAN of DeepFill v2 (ARCHITECTURE.md §4.2): six spectral-normalised 5x5 stride-2 ``DisConv``.

  Widths cnum, 2c, 4c, 4c, 4c, 4c (5,946,816 trainable parameters at cnum 64,
  plus one non-trainable ``vector_u`` per conv). Input float32
  ``[B, H, W, in_channels]``, by default ``concat([image, mask], -1)`` (image in
  [-1, 1], mask 1 = hole). Any H, W work (no dense layer); the output is every
  patch score flattened: ``[B, ceil(H/64) * ceil(W/64) * 4 * cnum]`` (4x4x256 =
  4096 for 256x256), float32. Pass ``training=True`` during critic and generator updates
  so that the spectral normalisation's power iteration runs.
  """

  def __init__(self, cnum=64, in_channels=4, **kwargs):
    kwargs.setdefault("name", "sn_patch_gan")
    super().__init__(**kwargs)
    self.cnum = int(cnum)
    self.in_channels = int(in_channels)
    c = self.cnum
    widths = [c, 2 * c, 4 * c, 4 * c, 4 * c, 4 * c]
    self.convs = [DisConv(f, spectral_norm=True, name=f"conv{i + 1}", dtype=self.dtype_policy)
                  for i, f in enumerate(widths)]
    _track_for_checkpoints(self, self.convs)
    self.build((None, None, None, self.in_channels))

  def build(self, input_shape):
    c = input_shape[-1]
    for conv in self.convs:
      conv.build((None, None, None, c))
      c = conv.filters
    self.built = True

  def call(self, x, training=False):
    for conv in self.convs:
      x = conv(x, training=training)
    return tf.cast(tf.reshape(x, [tf.shape(x)[0], -1]), tf.float32)

  def get_config(self):
    config = super().get_config()
    config.update(cnum=self.cnum, in_channels=self.in_channels)
    return config
