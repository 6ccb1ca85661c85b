"""Separate hole regions of a bool mask and their bounding boxes, in TensorFlow ops.

Work on a hole's joint bounding box grows with the distance between its parts (two small
holes in opposite corners span the whole photo), so per-region work needs the regions.
A *region* here is a 4-connected component of the *occupied cells*: the photo is cut into
``cell`` x ``cell`` squares, and a square is occupied when it holds a hole pixel. Labelling
runs on that coarse grid (min-label propagation with pointer jumping, Shiloach & Vishkin
1982, until nothing changes), so its cost is that of a few passes over the photo's
``(H/cell) x (W/cell)`` cells. Every 4-connected component of the hole lies in one region
(two 4-adjacent pixels sit in one cell or in 4-adjacent cells); hole pixels of different
regions are never 4-adjacent; parts whose cells touch (at most ``2 * cell`` pixels apart)
share a region. Boxes are tight around each region's hole pixels.

A region's cells can be regrouped (:func:`group` by keys, e.g. :func:`tile_keys`, tiles of a
long region; or one key for several small regions) so that work follows the hole's pixels, not
its regions' boxes nor their number. Used by seam blending (``blending.pieces``), the ``crop``
strategy (``scaling.crop_pieces``) and hole-local inference (``local_plan.hole_boxes``).
"""
import tensorflow as tf

CELL = 16  # pixels per side of a labelling cell


def cells_of(hole, cell, outside=False):
  """``hole`` [H, W] padded with ``outside`` to multiples of ``cell`` and cut into cells:
  bool ``[Hc, cell, Wc, cell]``."""
  h, w = tf.shape(hole)[0], tf.shape(hole)[1]
  ph, pw = tf.math.floormod(-h, cell), tf.math.floormod(-w, cell)
  padded = tf.pad(hole, [[0, ph], [0, pw]], constant_values=outside)
  return tf.reshape(padded, [(h + ph) // cell, cell, (w + pw) // cell, cell])


def _propagate(labels, occupied):
  """One round: each occupied cell takes the least label of itself and its 4 neighbours,
  then follows its label twice (labels are flat cell indices of the same region)."""
  big = tf.int32.max
  p = tf.pad(labels, [[1, 1], [1, 1]], constant_values=big)
  least = tf.reduce_min(tf.stack([labels, p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2],
                                  p[1:-1, 2:]]), axis=0)
  least = tf.where(occupied, least, big)
  flat = tf.reshape(least, [-1])
  safe = tf.minimum(flat, tf.size(flat) - 1)   # unoccupied cells hold `big`
  for _ in range(2):
    flat = tf.where(flat < big, tf.gather(flat, safe), flat)
    safe = tf.minimum(flat, tf.size(flat) - 1)
  return tf.reshape(flat, tf.shape(labels))


def label_cells(hole, cell=CELL):
  """Region index of every cell.

  Args:
    hole: bool ``[H, W]``.
    cell: side of a labelling cell in pixels.
  Returns:
    int32 ``[ceil(H / cell), ceil(W / cell)]``: -1 where the cell holds no hole pixel, else
    the cell's region, numbered 0.. in raster order of each region's first cell.
  """
  occupied = tf.reduce_any(cells_of(hole, cell), axis=[1, 3])
  shape = tf.shape(occupied)
  big = tf.int32.max
  index = tf.reshape(tf.range(tf.size(occupied)), shape)
  labels = tf.where(occupied, index, big)

  def changing(labels, previous):
    return tf.reduce_any(tf.not_equal(labels, previous))

  def step(labels, previous):
    return _propagate(labels, occupied), labels

  # Starts from a "previous" that differs everywhere, so the loop runs at least once.
  labels = tf.while_loop(changing, step, (labels, labels - 1))[0]
  # Converged: every cell holds the least flat index of its region, whose cell is the root.
  roots = tf.logical_and(occupied, tf.equal(labels, index))
  rank = tf.cumsum(tf.reshape(tf.cast(roots, tf.int32), [-1]), exclusive=True)
  flat = tf.reshape(labels, [-1])
  region = tf.gather(rank, tf.minimum(flat, tf.size(flat) - 1))
  return tf.where(occupied, tf.reshape(region, shape), -1)


def tight_boxes(hole, labels, count, cell=CELL):
  """Tight bounding boxes of the hole pixels of each group of cells.

  Args:
    hole: bool ``[H, W]``.
    labels: int32 ``[ceil(H / cell), ceil(W / cell)]``: the group of every cell, -1 for none.
    count: int32 scalar, the number of groups (labels ``0 .. count - 1``).
    cell: side of a labelling cell in pixels.
  Returns:
    int32 ``[count, 4]`` rows ``(top, left, bottom, right)`` with exclusive bottom/right.
  """
  cells = cells_of(hole, cell)
  big = tf.int32.max
  offsets = tf.range(cell)

  # Per cell: first and last hole row and column inside it, in photo coordinates.
  rows = tf.reduce_any(cells, axis=3)                       # [Hc, cell, Wc]
  cols = tf.reduce_any(cells, axis=1)                       # [Hc, Wc, cell]
  hc, wc = tf.shape(labels)[0], tf.shape(labels)[1]
  row0 = (tf.range(hc) * cell)[:, None, None] + offsets[None, :, None]
  col0 = (tf.range(wc) * cell)[None, :, None] + offsets[None, None, :]
  top = tf.reduce_min(tf.where(rows, row0, big), axis=1)
  bottom = tf.reduce_max(tf.where(rows, row0, -1), axis=1) + 1
  left = tf.reduce_min(tf.where(cols, col0, big), axis=2)
  right = tf.reduce_max(tf.where(cols, col0, -1), axis=2) + 1

  # Cells without a hole pixel go to an extra segment, dropped afterwards.
  ids = tf.reshape(tf.where(labels >= 0, labels, count), [-1])

  def segment(x, reduce):
    return reduce(tf.reshape(x, [-1]), ids, count + 1)[:count]

  boxes = tf.stack([segment(top, tf.math.unsorted_segment_min),
                    segment(left, tf.math.unsorted_segment_min),
                    segment(bottom, tf.math.unsorted_segment_max),
                    segment(right, tf.math.unsorted_segment_max)], axis=1)
  return tf.reshape(boxes, [-1, 4])


def region_boxes(hole, cell=CELL):
  """Tight bounding boxes of the hole's regions (see the module docstring).

  Args:
    hole: bool ``[H, W]``.
    cell: side of a labelling cell in pixels.
  Returns:
    ``(boxes, labels)``: int32 ``[N, 4]`` rows ``(top, left, bottom, right)`` with exclusive
    bottom/right, region ``i`` in row ``i``; and ``labels`` as :func:`label_cells`.
  """
  labels = label_cells(hole, cell)
  return tight_boxes(hole, labels, tf.reduce_max(labels) + 1, cell), labels


def per_cell(values, labels, empty):
  """``values[labels]`` for every cell (``values`` [N], one per region), ``empty`` where a cell
  has no region (-1)."""
  padded = tf.concat([values, tf.cast([empty], values.dtype)], 0)
  return tf.gather(padded, tf.where(labels >= 0, labels, tf.shape(values)[0]))


def tile_keys(labels, boxes, tile_cells, cell=CELL):
  """int64 ``[Hc, Wc]``: for every cell, its region and the tile of the region it lies in.

  A region's tiles are squares of ``tile_cells`` cells (int32 ``[N]``, one size per region,
  at least 1) on a grid anchored at the cell of its box's top-left corner, so a region whose
  box spans at most ``tile_cells`` cells a side is one tile, and every tile's box is at most
  ``tile_cells * cell`` pixels a side whatever the region's shape. Cells without a region: -1.
  """
  hc, wc = tf.shape(labels)[0], tf.shape(labels)[1]
  tile = per_cell(tf.maximum(tile_cells, 1), labels, 1)
  row = (tf.range(hc)[:, None] - per_cell(boxes[:, 0] // cell, labels, 0)) // tile
  col = (tf.range(wc)[None, :] - per_cell(boxes[:, 1] // cell, labels, 0)) // tile
  region = tf.maximum(labels, 0)
  size = tf.cast(hc * wc, tf.int64)
  key = (tf.cast(region, tf.int64) * size + tf.cast(row, tf.int64) * tf.cast(wc, tf.int64)
         + tf.cast(col, tf.int64))
  return tf.where(labels >= 0, key, -1)


def group(labels, keys):
  """Cells regrouped by ``keys`` (int64 ``[Hc, Wc]``, any values; ignored where ``labels``
  is -1): ``(new labels, count)``, groups numbered 0.. in raster order of their first cell (so
  keys equal to the labels give the labels back)."""
  shape = tf.shape(labels)
  flat = tf.reshape(labels, [-1])
  where = tf.where(flat >= 0)
  unique, index = tf.unique(tf.gather_nd(tf.reshape(keys, [-1]), where))
  new = tf.tensor_scatter_nd_update(-tf.ones_like(flat), where, index)
  return tf.reshape(new, shape), tf.size(unique)
