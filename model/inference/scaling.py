"""Scale strategies ``original`` / ``resize`` / ``crop`` / ``auto`` (ARCHITECTURE.md §7.7) as
TF ops: hole-region depths and scales (:func:`scale_for`), context boxes (:func:`context_box`),
area-down / bicubic-up resampling and the paste of a region's hole pixels. Measurements behind
the depth rule and ``CONTEXT``: bench/STRATEGY_RESULTS.md.
"""
import tensorflow as tf

from model.inference import regions

MIN_SCALE = 1.0 / 16.0  # never shrink further (a 4,000-px hole runs at 250 px)
MIN_SIDE = 16           # a scaled photo or crop keeps at least this many pixels per side
# Context around a region in crop mode, in multiples of the region's longest side (at least a
# crop_size² crop at the region's scale); chosen in bench/STRATEGY_RESULTS.md ("Crop margin").
CONTEXT = 0.25
# A region whose box is longer than MAX_PIECE network pixels (its scale times its side in the
# photo) is cut into pieces of PIECE network pixels a side, so the network's work and memory
# follow the region's pixels, not its box (a thin diagonal's box is the whole photo).
MAX_PIECE = 512
PIECE = 256
# Small regions at full scale (box within ``crop_size``) that share a tile of ``MERGE_TILE``
# crop sizes are filled in one crop when there are at least ``MERGE_MIN`` of them: that crop
# (at most about (1 + 2 CONTEXT)² MERGE_TILE² crop sizes²) costs less than theirs apart.
MERGE_TILE = 2
MERGE_MIN = 3


def scale_for(depth, hole_max):
  """float32 scale at which a hole region of ``depth`` (px, float32) matches the training
  holes: ``min(1, hole_max / (2 depth))``, at least ``MIN_SCALE``."""
  return tf.clip_by_value(float(hole_max) / (2.0 * tf.maximum(depth, 1e-3)), MIN_SCALE, 1.0)


def region_depths(hole, labels, count, cell):
  """float32 [count]: ``2 A / P`` of every region (module docstring); ``labels``: the
  region of every ``cell``² cell, -1 for none (``regions.label_cells``)."""
  inside = tf.cast(hole, tf.float32)
  known = tf.pad(1.0 - inside, [[1, 1], [1, 1]])   # no known pixel outside the photo
  edges = (known[:-2, 1:-1] + known[2:, 1:-1] + known[1:-1, :-2] + known[1:-1, 2:]) * inside
  h, w = tf.shape(hole)[0], tf.shape(hole)[1]
  ph, pw = tf.math.floormod(-h, cell), tf.math.floormod(-w, cell)

  def per_cell(x):
    x = tf.pad(x, [[0, ph], [0, pw]])
    return tf.reduce_sum(tf.reshape(x, [(h + ph) // cell, cell, (w + pw) // cell, cell]),
                         axis=[1, 3])

  ids = tf.maximum(labels, 0)
  weight = tf.cast(labels >= 0, tf.float32)
  area = tf.math.unsorted_segment_sum(per_cell(inside) * weight, ids, count)
  perimeter = tf.math.unsorted_segment_sum(per_cell(edges) * weight, ids, count)
  return 2.0 * area / tf.maximum(perimeter, 1.0)


def scaled_size(height, width, scale):
  """int32 [2]: ``(height, width) * scale`` rounded, at least ``MIN_SIDE`` (or the size)."""
  size = tf.cast(tf.stack([height, width]), tf.float32)
  scaled = tf.cast(tf.round(size * scale), tf.int32)
  return tf.minimum(tf.maximum(scaled, MIN_SIDE), tf.stack([height, width]))


def downscale(image, size):
  """uint8 [H, W, 3] -> uint8 ``size`` by area averaging (rounded)."""
  small = tf.image.resize(tf.cast(image, tf.float32)[None], size, method="area")[0]
  return tf.cast(tf.clip_by_value(tf.round(small), 0.0, 255.0), tf.uint8)


def downscale_hole(hole, size):
  """bool [H, W] -> bool ``size``: a pixel is a hole when any source pixel under it is."""
  cover = tf.image.resize(tf.cast(hole, tf.float32)[None, :, :, None], size, method="area")
  return cover[0, :, :, 0] > 0.0


def upscale(image, size):
  """uint8 [h, w, 3] -> uint8 ``size``, bicubic (rounded, clipped)."""
  big = tf.image.resize(tf.cast(image, tf.float32)[None], size, method="bicubic")[0]
  return tf.cast(tf.clip_by_value(tf.round(big), 0.0, 255.0), tf.uint8)


def context_box(box, scale, crop_size, height, width, context=None):
  """(top, left, bottom, right) int32: the square centred on ``box`` whose side is
  ``1 + 2 context`` times the box's longest side (``context`` default ``CONTEXT``) and at least
  ``crop_size / scale``, clipped to the photo (and never smaller than ``box``). ``box`` may be
  ``[..., 4]`` with ``scale`` ``[...]`` (one context box per row)."""
  context = CONTEXT if context is None else context
  box = tf.convert_to_tensor(box)
  t, l, b, r = box[..., 0], box[..., 1], box[..., 2], box[..., 3]
  extent = tf.cast(tf.maximum(b - t, r - l), tf.float32)
  side = tf.maximum(extent * (1.0 + 2.0 * context), float(crop_size) / scale)
  cy = tf.cast(t + b, tf.float32) / 2.0
  cx = tf.cast(l + r, tf.float32) / 2.0
  half = side / 2.0
  top = tf.maximum(tf.cast(tf.floor(cy - half), tf.int32), 0)
  left = tf.maximum(tf.cast(tf.floor(cx - half), tf.int32), 0)
  bottom = tf.minimum(tf.cast(tf.math.ceil(cy + half), tf.int32), height)
  right = tf.minimum(tf.cast(tf.math.ceil(cx + half), tf.int32), width)
  # Never smaller than the region itself (a long thin region's box is not a square).
  return tf.stack([tf.minimum(top, t), tf.minimum(left, l), tf.maximum(bottom, b),
                   tf.maximum(right, r)], axis=-1)


def box_indices(box):
  """int32 [h, w, 2] (row, column) of every pixel of ``box`` (for tensor_scatter_nd_update)."""
  rows = tf.range(box[0], box[2])
  cols = tf.range(box[1], box[3])
  grid_r, grid_c = tf.meshgrid(rows, cols, indexing="ij")
  return tf.stack([grid_r, grid_c], axis=-1)


def owned(labels, box, region, cell):
  """bool [h, w]: pixels of ``box`` whose labelling cell belongs to ``region``."""
  rows = tf.gather(labels, tf.range(box[0], box[2]) // cell)
  cells = tf.gather(rows, tf.range(box[1], box[3]) // cell, axis=1)
  return tf.equal(cells, region)


def crop_pieces(hole, labels, boxes, scales, crop_size, cell):
  """What ``crop`` fills in one network call each: pieces of the hole's regions.

  A region whose box is longer than ``MAX_PIECE`` network pixels at its scale is cut into
  tiles of ``PIECE`` network pixels (``regions.tile_keys``); small full-scale regions (box within
  ``crop_size``) are grouped by ``MERGE_TILE`` x ``crop_size`` tiles of the photo, a tile's
  regions filled together when it holds at least ``MERGE_MIN``; other regions are one piece
  each, numbered as the regions are.

  Args:
    hole: bool ``[H, W]``.
    labels, boxes: ``regions.region_boxes(hole, cell)``.
    scales: float32 ``[N]``, each region's scale (:func:`scale_for`).
    crop_size: the model's training crop (px).
    cell: labelling cell (px).
  Returns:
    ``(boxes, labels, scales)`` of the pieces: int32 ``[P, 4]``, the piece of every cell
    (-1 for none), float32 ``[P]``.
  """
  span = tf.maximum((boxes[:, 2] - 1) // cell - boxes[:, 0] // cell,
                    (boxes[:, 3] - 1) // cell - boxes[:, 1] // cell) + 1
  long = tf.cast(span * cell, tf.float32) * scales > MAX_PIECE
  tile = tf.where(long, tf.cast(tf.floor(PIECE / scales / cell), tf.int32), span + 1)
  keys = regions.tile_keys(labels, boxes, tile, cell)
  small = tf.logical_and(scales >= 1.0, span * cell <= crop_size)
  merge = max(MERGE_TILE * crop_size // cell, 1)               # cells per merge tile side
  columns = tf.shape(labels)[1] // merge + 1
  where = boxes[:, 0] // cell // merge * columns + boxes[:, 1] // cell // merge
  tiles = tf.shape(labels)[0] // merge + 1
  members = tf.math.unsorted_segment_sum(tf.cast(small, tf.int32), where, tiles * columns)
  merged = tf.logical_and(small, tf.gather(members, where) >= MERGE_MIN)
  # Merged groups get negative keys, apart from the regions' own (non-negative) keys.
  keys = tf.where(regions.per_cell(merged, labels, False),
                  -2 - tf.cast(regions.per_cell(where, labels, 0), tf.int64), keys)
  pieces, count = regions.group(labels, keys)
  ids = tf.reshape(tf.where(labels >= 0, pieces, count), [-1])
  piece_scales = tf.math.unsorted_segment_min(
      tf.reshape(regions.per_cell(scales, labels, 1.0), [-1]), ids, count + 1)[:count]
  return regions.tight_boxes(hole, pieces, count, cell), pieces, piece_scales
