"""Critic convolution of DeepFill: 5x5 stride-2 conv + LeakyReLU(0.2) (ARCHITECTURE.md §4)."""
import keras
import tensorflow as tf

from layers import shapes

LEAKY_SLOPE = 0.2  # tf.nn.leaky_relu's default, used by the release.


@keras.saving.register_keras_serializable(package="deepfill")
class DisConv(keras.layers.Layer):
  """k×k strided conv (TF SAME zero padding, bias) followed by LeakyReLU(0.2).

  Input ``[B, H, W, C_in]``, output ``[B, ceil(H/strides), ceil(W/strides), filters]`` in the
  compute dtype of the layer's dtype policy (``dtype=``); variables are float32 under every policy.
  Kernels are Glorot-uniform, biases zero (TF1 defaults, ARCHITECTURE.md §2.1). The inner
  conv is named ``conv``, so the weights are ``<name>/conv/kernel`` and
  ``<name>/conv/bias``, mirroring the release's ``<scope>/<name>/kernel``.

  ``spectral_norm=True`` (SN-PatchGAN, ARCHITECTURE.md §4.2) wraps the conv in
  ``keras.layers.SpectralNormalization`` with one power iteration and a
  non-trainable ``<name>/spectral_norm/vector_u``. Note Keras' behaviour: in
  ``training=True`` calls the wrapper *overwrites* the kernel variable with
  ``kernel / sigma`` before convolving (no gradient through sigma); with
  ``training=False`` the stored kernel is used as is. Under a mixed policy that normalisation
  runs in float32 (the wrapper does not autocast): computed in bfloat16 it would round the
  float32 kernel it writes back to bfloat16 at every call.
  """

  def __init__(self, filters, kernel_size=5, strides=2, spectral_norm=False, **kwargs):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self.kernel_size = int(kernel_size)
    self.strides = int(strides)
    self.spectral_norm = bool(spectral_norm)
    self.conv = keras.layers.Conv2D(
        self.filters, self.kernel_size, strides=self.strides, padding="same", use_bias=True,
        kernel_initializer="glorot_uniform", bias_initializer="zeros", name="conv",
        dtype=self.dtype_policy)
    # autocast=False: the wrapper reads and rewrites the float32 kernel in float32 and passes
    # its input on uncast; the wrapped conv still computes in the policy's compute dtype.
    self.sn = (keras.layers.SpectralNormalization(self.conv, power_iterations=1,
                                                  name="spectral_norm", autocast=False,
                                                  dtype=self.dtype_policy)
               if self.spectral_norm else None)

  def build(self, input_shape):
    shape = (input_shape[0], None, None, input_shape[-1])
    # The conv is built first, under this layer's scope, so its path stays
    # <name>/conv/... even when the spectral-norm wrapper owns it.
    self.conv.build(shape)
    if self.sn is not None:
      self.sn.build(shape)

  def call(self, x, training=False):
    if self.sn is not None:
      x = self.sn(x, training=training)
    else:
      x = self.conv(x)
    return tf.nn.leaky_relu(x, alpha=LEAKY_SLOPE)

  def compute_output_shape(self, input_shape):
    return shapes.same_conv_output_shape(input_shape, self.strides, self.filters)

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                  spectral_norm=self.spectral_norm)
    return config
