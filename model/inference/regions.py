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

Used by seam blending (``model/inference/blending.py``), which solves one region at a time.
"""
import tensorflow as tf

CELL = 16  # pixels per side of a labelling cell


def _cells(hole, cell):
  """``hole`` [H, W] padded with False to multiples of ``cell`` and cut into cells:
  bool ``[Hc, cell, Wc, cell]``."""
  h, w = tf.shape(hole)[0], tf.shape(hole)[1]
  ph, pw = tf.math.floormod(-h, cell), tf.math.floormod(-w, cell)
  padded = tf.pad(hole, [[0, ph], [0, pw]])
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
  occupied = tf.reduce_any(_cells(hole, cell), axis=[1, 3])
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


def region_boxes(hole, cell=CELL):
  """Tight bounding boxes of the hole's regions (see the module docstring).

  Args:
    hole: bool ``[H, W]``.
    cell: side of a labelling cell in pixels.
  Returns:
    ``(boxes, labels)``: int32 ``[N, 4]`` rows ``(top, left, bottom, right)`` with exclusive
    bottom/right, region ``i`` in row ``i``; and ``labels`` as :func:`label_cells`.
  """
  cells = _cells(hole, cell)
  labels = label_cells(hole, cell)
  count = tf.reduce_max(labels) + 1
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
  return tf.reshape(boxes, [-1, 4]), labels
