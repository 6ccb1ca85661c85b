"""Turns image batches into training batches: per-sample masks, local boxes, GP mixing.

Every draw is stateless and keyed by ``(seed, batch_index)``, so a resumed run
that restarts at batch ``k`` sees exactly the masks an uninterrupted run saw,
and the split of a global batch over replicas does not change any sample.
"""
import tensorflow as tf

from model.training import data as data_lib
from model.training import masks as masks_lib


def add_training_inputs(images, batch_index, seed, mask_mode, box_size, max_delta,
                        margins=(0, 0)):
  """Returns the batch dict used by ``model.training.step``.

  Args:
    images: float32 ``[B, S, S, 3]`` in [-1, 1].
    batch_index: int64 scalar, position of this batch in the run's stream.
    seed: int, the run seed.
    mask_mode: one of ``model.training.config.MASK_MODES`` (ARCHITECTURE.md §6.1).
    box_size: (h, w) of the bbox / local crop (128×128 at 256 in the release).
    max_delta: (dh, dw) maximum total shrink of the box hole (32, 32).
    margins: (vertical, horizontal) bbox margins.
  Returns:
    dict ``image``, ``mask`` [B,S,S,1] (1 = hole), ``bbox`` [B,4] int32,
    ``alpha_global`` and ``alpha_local`` [B,1,1,1] ~ U[0, 1).
  """
  shape = tf.shape(images)
  b, h, w = shape[0], shape[1], shape[2]
  key = tf.stack([tf.cast(seed, tf.int64), tf.cast(batch_index, tf.int64)])
  seeds = tf.random.experimental.stateless_split(key, 3)
  mask, bbox = masks_lib.random_mask(
      mask_mode, b, h, w, box_size[0], box_size[1], max_delta[0], max_delta[1],
      margin_v=margins[0], margin_h=margins[1], seed=seeds[0])
  alpha_shape = tf.stack([b, 1, 1, 1])
  return {
      "image": images,
      "mask": tf.ensure_shape(mask, images.shape[:3] + [1]),
      "bbox": tf.cast(bbox, tf.int32),
      "alpha_global": tf.random.stateless_uniform(alpha_shape, seeds[1]),
      "alpha_local": tf.random.stateless_uniform(alpha_shape, seeds[2]),
  }


def training_batches(files, data_cfg, seed, channel_order, start_batch=0, skip_counter=None):
  """The run's stream of training batch dicts (images of ``files`` plus their masks).

  Args:
    files: image paths (``data.list_files``).
    data_cfg: ``model.training.config.DataConfig`` (its batch size, crops and masks).
    seed: the run seed (data order, crops and masks are functions of it).
    channel_order: the generator's ``"bgr"`` or ``"rgb"``.
    start_batch: index of the first batch (a resumed run skips what it consumed).
    skip_counter: optional int64 variable counting unreadable files.
  Returns:
    ``tf.data.Dataset`` of :func:`add_training_inputs` dicts; it ends when no file of
    a whole pass is readable (``data.make_dataset``).
  """
  d = data_cfg
  scale = None
  if (d.random_scale_min, d.random_scale_max) != (0, 0):
    scale = (d.random_scale_min, d.random_scale_max)
  images = data_lib.make_dataset(files, d.img_size, d.batch_size, seed, random_crop=d.random_crop,
                                 random_flip=d.random_flip, channel_order=channel_order,
                                 skip_counter=skip_counter, start_batch=start_batch,
                                 random_scale=scale)
  box, delta = (d.box_height, d.box_width), (d.max_delta_height, d.max_delta_width)
  margins = (d.vertical_margin, d.horizontal_margin)
  return images.enumerate(start=start_batch).map(
      lambda i, batch: add_training_inputs(batch, i, seed, d.mask_mode, box, delta, margins),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(1)
