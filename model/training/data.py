"""tf.data input pipeline: image files -> float32 ``[B, S, S, 3]`` batches in [-1, 1] (ARCHITECTURE.md §6.2).

Data order is a pure function of ``(seed, element index)``, so a run can resume
exactly where it stopped from nothing but the number of consumed batches:

* Epoch ``e`` visits the files in the order ``stateless_shuffle(range(N), key(seed, e))``
  (a full shuffle, not a shuffle buffer). With several input pipelines, pipeline ``p``
  of ``P`` reads positions ``p, p + P, ...`` of every epoch's order.
* Element ``g = e * N + position`` gets its crop offset and flip from stateless ops
  keyed by ``(seed, g)``, so it looks the same however the stream was started.
* ``start_batch=k`` starts the stream at element ``k * batch_size`` of this pipeline
  (jumping straight to the right epoch and position, without decoding anything).
  This equals ``make_dataset(...).skip(k)`` when no file is skipped (see below).

Unreadable files (missing, corrupt or truncated data, non-images) and degenerate
images whose shorter side is below ``MIN_SIDE`` pixels are **skipped**: they are
dropped from the stream, and counted in ``skip_counter`` (an int64 ``tf.Variable``)
and printed to stderr once each, the first time this dataset meets them failing (in any
epoch: a file that breaks after the first one is counted too). A
skipped file shifts the batch boundaries after it, so if ``k`` skipped files lie
before a resume point the resumed stream is ``k`` elements off the uninterrupted
one (still deterministic, nothing crashes). When a whole pass over the files finds
no readable one, an unsharded stream ends (even with ``repeat``) instead of waiting forever.

Files are read exactly as ``test.py`` reads them (``model/fileio/decode.py``, called through
``tf.numpy_function``): PNG, JPEG, BMP, WebP, TIFF, GIF (first frame), 16-bit sources rounded
to 8 bits, EXIF orientation applied; grey becomes 3 channels and alpha is dropped.
"""
import os
import sys

from absl import logging
import numpy as np
import tensorflow as tf

from model.config import CHANNEL_ORDERS
from model.errors import UserError
from model.fileio import decode as image_io
from model.fileio import paths
MIN_SIDE = 8  # images with a shorter side (pixels) are skipped as degenerate

# Independent random streams derived from the user's seed.
_ORDER_STREAM = 1
_AUGMENT_STREAM = 2
_SCALE_STREAM = 3


def list_files(spec):
  """Returns the image paths named by ``spec``.

  Args:
    spec: a directory (searched recursively with the one listing rule,
      ``paths.list_images(spec, recursive=True)``: image extensions in any case, hidden
      files and folders skipped; sorted by path, so the result is deterministic) or a text file list with one
      image path per line (relative paths are resolved against the list file's
      folder; blank lines and lines starting with ``#`` are ignored; the paths are
      not checked here, unreadable ones are skipped by the pipeline).

  Returns:
    A non-empty list of path strings.

  Raises:
    UserError: ``spec`` does not exist or names no image.
  """
  spec = os.fspath(spec)
  if os.path.isdir(spec):
    files = paths.list_images(spec, recursive=True)
    if not files:
      raise UserError(f"no images ({', '.join(paths.IMAGE_EXTENSIONS)}) found under directory "
                      f"{spec}")
    return files
  if not os.path.isfile(spec):
    raise UserError(f"image list not found: {spec} (expected a directory or a file list)")
  folder = os.path.dirname(os.path.abspath(spec))
  try:
    with open(spec, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(f"cannot read file list {spec}: {e}") from e
  files = []
  for line in lines:
    line = line.strip()
    if line and not line.startswith("#"):
      files.append(line if os.path.isabs(line) else os.path.join(folder, line))
  if not files:
    raise UserError(f"file list {spec} names no images (one path per line expected)")
  return files


def make_skip_counter():
  """Returns an int64 counter for ``make_dataset(skip_counter=...)``.

  Create it outside ``strategy.scope()``: the input pipeline runs on the host and
  needs a plain variable, not a mirrored one.
  """
  return tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_images")


def _key(seed, stream):
  return tf.constant([seed, stream], dtype=tf.int64)


def _epoch_order(num_files, epoch, seed, shuffle):
  """File index at each position of ``epoch``, int64 ``[num_files]``."""
  order = tf.range(num_files, dtype=tf.int64)
  if not shuffle:
    return order
  key = tf.random.experimental.stateless_fold_in(_key(seed, _ORDER_STREAM), epoch)
  return tf.random.experimental.stateless_shuffle(order, seed=key)


def _element_stream(num_files, seed, shuffle, repeat, num_shards, shard_index, first_epoch,
                    offset):
  """Dataset of ``(file_index, element_id, epoch)`` from position ``offset`` of ``first_epoch``."""
  if repeat:
    epochs = tf.data.Dataset.counter(start=first_epoch)
  else:
    epochs = tf.data.Dataset.range(first_epoch, 1)

  def one_epoch(epoch):
    order = _epoch_order(num_files, epoch, seed, shuffle)
    positions = tf.range(shard_index, num_files, num_shards, dtype=tf.int64)
    positions = positions[tf.where(epoch == first_epoch, offset, 0):]
    epochs_column = tf.fill(tf.shape(positions), epoch)
    return tf.data.Dataset.from_tensor_slices(
        (tf.gather(order, positions), epoch * num_files + positions, epochs_column))

  return epochs.flat_map(one_epoch)


def _to_model_range(image, channel_order):
  """float [0, 255] RGB -> float32 [-1, 1] in ``channel_order``."""
  if channel_order == "bgr":
    image = image[..., ::-1]
  return tf.clip_by_value(image / 127.5 - 1.0, -1.0, 1.0)


def _read_rgb(path):
  path = os.fsdecode(np.asarray(path).item())
  try:  # a plain read, like tf.io.read_file: it waits for slow (or FIFO) sources
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise UserError(f"{path}: cannot read the image file ({e.strerror or e})") from None
  return image_io.read_image(path, data=data)[0]


def _decode(path):
  """Reads one image as uint8 ``[H, W, 3]`` RGB (``image_io.read_image``); raises on
  unreadable data (``UserError`` eagerly, an ``OpError`` inside a graph)."""
  image = tf.numpy_function(_read_rgb, [path], tf.uint8, stateful=False)
  image.set_shape([None, None, 3])
  return image


def _train_view(image, element_id, img_size, seed, random_crop, random_flip, random_scale=None):
  """uint8 ``[H, W, 3]`` -> float32 ``[S, S, 3]`` in [0, 255] (rescale, crop/resize, flip)."""
  crop_key, flip_key = tf.unstack(tf.random.experimental.stateless_split(
      tf.random.experimental.stateless_fold_in(_key(seed, _AUGMENT_STREAM), element_id), 2))
  antialias = False
  if random_crop:
    shape = tf.shape(image)
    short = tf.minimum(shape[0], shape[1])
    if random_scale:
      # Resizing the photo so that its short side is u * S (u ~ U[lo, hi]) and then
      # cropping S x S equals cropping a square of side S * short / (u * S) and
      # resizing it to S, which decodes nothing twice and touches S^2 pixels only.
      scale_key = tf.random.experimental.stateless_fold_in(_key(seed, _SCALE_STREAM),
                                                           element_id)
      u = tf.random.stateless_uniform([], scale_key, random_scale[0], random_scale[1])
      side = tf.cast(tf.round(tf.cast(short, tf.float32) / u), tf.int32)
      side = tf.clip_by_value(side, 1, short)
      antialias = True
    else:
      # ARCHITECTURE.md §6.2: crop S x S; an image whose short side is below S is first upscaled
      # (bilinear) to short side S. Equivalently, and with bounded memory for thin
      # images, crop a square of side min(short, S) and resize that square to S.
      side = tf.minimum(short, img_size)
    image = tf.image.stateless_random_crop(image, tf.stack([side, side, 3]), seed=crop_key)
  # A no-op for an S x S crop; otherwise rescales, or (no random crop) squashes the
  # whole image to S x S like the official cv2.resize.
  image = tf.image.resize(tf.cast(image, tf.float32), [img_size, img_size], method="bilinear",
                          antialias=antialias)
  if random_flip:
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_key)
  return image


def make_dataset(files, img_size, batch_size, seed, shuffle=True, random_crop=True,
                 random_flip=True, repeat=True, drop_remainder=True, channel_order="bgr",
                 skip_counter=None, start_batch=0, num_shards=1, shard_index=0,
                 random_scale=None):
  """Builds the training input pipeline of one input pipeline (see module docstring).

  Args:
    files: list of image paths (e.g. from ``list_files``).
    img_size: output side S in pixels.
    batch_size: images per batch (per replica when used for distribution).
    seed: integer seed; the whole stream (order, crops, flips) is a function of it.
    shuffle: reshuffle the file order every epoch; False reads ``files`` in order.
    random_crop: True: random S x S crop (upscaling images whose short side < S).
      False: resize the whole image to S x S, ignoring aspect ratio (official default).
    random_flip: random horizontal flip (the official v1 pipeline has none).
    repeat: loop over epochs forever; False: one epoch.
    drop_remainder: drop a last incomplete batch.
    channel_order: ``"bgr"`` (official v1 weights) or ``"rgb"``.
    skip_counter: optional int64 ``tf.Variable`` (``make_skip_counter()``) incremented
      once for every file this stream meets failing (the first time it does).
    start_batch: index of the first batch to produce (resumption).
    num_shards, shard_index: this pipeline reads every ``num_shards``-th position of
      each epoch, starting at ``shard_index``.

  Returns:
    ``tf.data.Dataset`` of float32 ``[batch_size, S, S, 3]`` in [-1, 1].
  """
  files = [os.fspath(f) for f in files]
  if not files:
    raise UserError("no training images given")
  if channel_order not in CHANNEL_ORDERS:
    raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
  if img_size < MIN_SIDE or batch_size < 1 or start_batch < 0:
    raise ValueError(f"bad img_size={img_size}, batch_size={batch_size} or "
                     f"start_batch={start_batch}")
  if not 0 <= shard_index < num_shards:
    raise ValueError(f"shard_index {shard_index} not in [0, {num_shards})")
  if random_scale is not None:
    random_scale = (float(random_scale[0]), float(random_scale[1]))
    if not 0 < random_scale[0] <= random_scale[1]:
      raise ValueError(f"random_scale must be (lo, hi) with 0 < lo <= hi, got {random_scale}")
  seed = int(seed)
  paths = tf.constant(files)
  per_epoch = len(range(shard_index, len(files), num_shards))
  if per_epoch == 0:
    raise UserError(f"{len(files)} image(s) cannot feed {num_shards} input pipelines")
  first_epoch, offset = divmod(start_batch * batch_size, per_epoch)
  stream = _element_stream(len(files), seed, shuffle, repeat, num_shards, shard_index,
                           first_epoch, offset)
  blank = tf.zeros([img_size, img_size, 3], tf.float32)

  def load(file_index, element_id, epoch):
    del epoch
    path = tf.gather(paths, file_index)
    image = _decode(path)
    ok = tf.reduce_min(tf.shape(image)[:2]) >= MIN_SIDE
    image = tf.cond(ok, lambda: _train_view(image, element_id, img_size, seed, random_crop,
                                            random_flip, random_scale), lambda: blank)
    return image, ok, file_index

  def failed(file_index, element_id, epoch):
    del element_id, epoch
    return blank, tf.constant(False), file_index

  def load_or_flag(*element):
    # Decode errors cannot be caught inside a graph, so each file gets a tiny dataset
    # whose erroring element ``ignore_errors`` drops; the ``failed`` fallback then
    # yields a flagged placeholder. Exactly one element per file keeps the order.
    one = tf.data.Dataset.from_tensors(element)
    return one.map(load).ignore_errors().concatenate(one.map(failed)).take(1)

  def report(reported, file_index):
    # Count and log each bad file once, the first time it fails in this stream (a file
    # that breaks in a later epoch counts too).
    if skip_counter is not None:
      skip_counter.assign_add(1)
    tf.print("skipping unreadable or tiny image:", tf.gather(paths, file_index),
             output_stream=sys.stderr)
    return tf.tensor_scatter_nd_update(reported, [[file_index]], [True])

  # After ``full_pass`` elements every file has been tried at least once (the stream
  # may start mid-epoch); if none of them was readable, none ever will be: the stream
  # ends there instead of filtering bad files forever. (A shard of several sees a
  # different subset of the files in every epoch, so it cannot conclude this.)
  full_pass = per_epoch if offset == 0 else 2 * per_epoch - offset
  if num_shards > 1:
    full_pass = np.iinfo(np.int64).max

  def count(state, element):
    seen, good, reported = state
    image, ok, file_index = element
    seen, good = seen + 1, good + tf.cast(ok, tf.int64)
    reported = tf.cond(ok | tf.gather(reported, file_index), lambda: reported,
                       lambda: report(reported, file_index))
    return (seen, good, reported), (image, ok, tf.logical_or(good > 0, seen < full_pass))

  zero = tf.constant(0, tf.int64)
  ds = stream.interleave(load_or_flag, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.scan((zero, zero, tf.zeros([len(files)], tf.bool)), count)
  ds = ds.take_while(lambda image, ok, readable: readable)
  ds = ds.filter(lambda image, ok, readable: ok)
  ds = ds.map(lambda image, ok, readable: _to_model_range(image, channel_order),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  return ds.prefetch(tf.data.AUTOTUNE)


def _center_view(image, img_size):
  """uint8 ``[H, W, 3]`` -> float32 ``[S, S, 3]`` in [0, 255]: short side to S, centre crop."""
  h, w = int(image.shape[0]), int(image.shape[1])
  scale = img_size / min(h, w)
  new_h, new_w = max(img_size, round(h * scale)), max(img_size, round(w * scale))
  image = tf.image.resize(tf.cast(image, tf.float32), [new_h, new_w], method="bilinear",
                          antialias=True)
  top, left = (new_h - img_size) // 2, (new_w - img_size) // 2
  return image[top:top + img_size, left:left + img_size]


def load_validation_images(files, img_size, count, channel_order="bgr"):
  """Returns a fixed float32 ``[n, S, S, 3]`` numpy batch in [-1, 1] for validation/summaries.

  Deterministic: tries ``count`` evenly spaced files of ``files`` first (for variety),
  then the remaining ones in order, until ``count`` readable images are found. Each is
  resized (bilinear, antialiased) so its short side is ``img_size``, then centre
  cropped. Unreadable or tiny images are skipped with a warning; ``n < count`` when
  there are not enough readable images.

  Raises:
    UserError: no readable image.
  """
  if channel_order not in CHANNEL_ORDERS:
    raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
  files = [os.fspath(f) for f in files]
  count = min(int(count), len(files))
  spaced = [i * len(files) // count for i in range(count)] if count > 0 else []
  chosen = set(spaced)
  order = spaced + [i for i in range(len(files)) if i not in chosen]
  images = []
  for i in order:
    if len(images) == count:
      break
    try:
      image = _decode(files[i])
    except UserError as e:
      logging.warning("skipping unreadable validation image: %s", e)
      continue
    if min(image.shape[0], image.shape[1]) < MIN_SIDE:
      logging.warning("skipping tiny validation image %s (%dx%d)", files[i], image.shape[1],
                      image.shape[0])
      continue
    images.append(_to_model_range(_center_view(image, img_size), channel_order).numpy())
  if not images:
    raise UserError(f"no readable validation image among {len(files)} file(s)")
  return np.stack(images).astype(np.float32)
