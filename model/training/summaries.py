"""TensorBoard scalar and image summaries without the ``tensorboard`` package.

TF 2.21 no longer depends on TensorBoard, and ``tf.summary.scalar`` / ``image``
raise without it. These helpers write the same records (the ``scalars`` and
``images`` plugin formats) with the core ``tf.summary.write`` op; viewing them
needs ``pip install tensorboard`` only on the machine that runs TensorBoard.
"""
import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _metadata(plugin):
  meta = summary_pb2.SummaryMetadata()
  meta.plugin_data.plugin_name = plugin
  return meta.SerializeToString()


def scalar(name, value, step):
  """Writes a scalar to the default summary writer."""
  return tf.summary.write(name, tf.cast(value, tf.float32), step=step,
                          metadata=_metadata("scalars"))


def image(name, images, step, max_outputs=3):
  """Writes float images ``[N, H, W, 3]`` in [0, 1] as PNGs (TensorBoard ``images`` plugin)."""
  images = tf.convert_to_tensor(images)[:max_outputs]
  pixels = tf.image.convert_image_dtype(tf.clip_by_value(images, 0.0, 1.0), tf.uint8,
                                        saturate=True)
  encoded = tf.map_fn(tf.image.encode_png, pixels, fn_output_signature=tf.string)
  shape = tf.shape(images)
  dims = tf.stack([tf.strings.as_string(shape[2]), tf.strings.as_string(shape[1])])
  return tf.summary.write(name, tf.concat([dims, encoded], 0), step=step,
                          metadata=_metadata("images"))
