"""Seam blending: a gradient-domain (Poisson) paste of the network's fill into the photo, in
TensorFlow ops so that the exported SavedModel runs it too (ARCHITECTURE.md §7.6: the equations,
the solver and why it was chosen; measurements in bench/BLENDING_RESULTS.md).

The blended fill is ``y + h``, ``h`` discrete-harmonic on the hole with ``x_q - y_p`` across each
seam edge. Each hole region (``model/inference/regions.py``) is solved on its own tight box grown
by one pixel, one after the other, by conjugate gradients preconditioned by one multigrid V-cycle
(2x2 aggregation, Galerkin coarse operators, damped Jacobi sweeps around an over-weighted coarse
correction, the coarsest grid solved exactly); a fast sine transform of the box would be exact
for a rectangle but degrades with the hole's shape (a thin stroke in a large box), while the
Galerkin grids follow any shape. The grids live in TensorArrays and the V-cycle is
a loop over levels, so the traced graph has a fixed size; :class:`TracedBlend` traces it off the
critical path. Channels are the batch axis of every solver array ``[C, H, W, 1]``, so
per-channel CG step sizes and the single-channel grids broadcast over the leading axis.
Many small regions are solved together and a long thin region in overlapping tiles
(:func:`pieces`, ARCHITECTURE.md §7.6), so cost and memory follow the hole's pixels, not a thin
region's box nor the number of regions.
"""

import threading

import numpy as np
import tensorflow as tf

from model.inference import regions as regions_lib

CG_STEPS = 200          # at most this many preconditioned CG steps
TOLERANCE = 1e-5        # stop when |residual| <= TOLERANCE * |right-hand side| (per channel)
OMEGA = 0.8             # damping of the Jacobi sweeps
OVER_CORRECTION = 1.5   # weight of the coarse-grid correction
COARSEST = 16           # the coarsest grid has at most this many cells a side, solved exactly
# Pieces (``pieces``): a long thin region is solved in tiles of PIECE px, each on its part within
# HALO times the region's thickness of the tile; MERGE_MIN or more regions whose boxes fit in
# MERGE_BOX px and start in the same MERGE_TILE px tile are solved together.
PIECE = 256
HALO = 16
MERGE_BOX = 64
MERGE_TILE = 256
MERGE_MIN = 3


def _neighbour_sum(x):
  """Sum of the four neighbours of every pixel of ``x`` [N, H, W, C] (zero outside); shifted
  slices, faster here than a convolution."""
  p = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
  return p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]


def _even(x):
  """``x`` [N, H, W, C] padded with zeros to even H and W."""
  shape = tf.shape(x)
  return tf.pad(x, [[0, 0], [0, shape[1] % 2], [0, shape[2] % 2], [0, 0]])


def _restrict(x):
  """``P^T x / 4``: means over 2x2 cells (odd sizes padded with zeros)."""
  return tf.nn.avg_pool2d(_even(x), 2, 2, "VALID")


def _prolong(x, height, width):
  """``P x``: each cell of ``x`` on its 2x2 pixels of the ``height`` x ``width`` grid."""
  s = tf.shape(x)
  up = tf.broadcast_to(x[:, :, None, :, None, :], [s[0], s[1], 2, s[2], 2, s[3]])
  return tf.reshape(up, [s[0], 2 * s[1], 2 * s[2], s[3]])[:, :height, :width]


def _apply(x, grid):
  """``A x`` for the 5-point operator ``grid = (d, right, left, down, up)`` (weights to the
  four neighbours; zero across the grid's edge)."""
  d, right, left, down, up = grid
  p = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
  return d * x - (right * p[:, 1:-1, 2:] + left * p[:, 1:-1, :-2]
                  + down * p[:, 2:, 1:-1] + up * p[:, :-2, 1:-1])


def _coarsen(d, right, down):
  """The Galerkin operator ``P^T A P / 4`` on 2x2 aggregates (again 5-point), from the
  diagonal and the weights to the right and below, all [1, H, W, 1]."""
  n = d.shape[-1]
  t = _even(tf.concat([d, right, down], -1))
  a, b, c, e = t[:, 0::2, 0::2], t[:, 1::2, 0::2], t[:, 0::2, 1::2], t[:, 1::2, 1::2]
  # Weights inside an aggregate are counted twice in P^T A P's diagonal (both directions).
  inner = (a + b)[..., n:2 * n] + (a + c)[..., 2 * n:]
  return (((a + b + c + e)[..., :n] - 2.0 * inner) * 0.25, (c + e)[..., n:2 * n] * 0.25,
          (b + e)[..., 2 * n:] * 0.25)


def _hole_weights(inside):
  """Level 0's weights to the right and below, [1, H, W, 1]: 1 between two hole pixels
  (``inside`` is the 0/1 hole [1, H, W, 1]), else 0."""
  right = inside * tf.pad(inside[:, :, 1:], [[0, 0], [0, 0], [0, 1], [0, 0]])
  down = inside * tf.pad(inside[:, 1:], [[0, 0], [0, 1], [0, 0], [0, 0]])
  return right, down


def _levels(height, width):
  """Grids of the V-cycle for a ``height`` x ``width`` box: halving (at least once) until the
  grid has at most ``COARSEST`` cells a side."""
  longest = tf.cast(tf.maximum(tf.maximum(height, width), 1), tf.float32)
  # The least k with ceil(n / 2^k) <= COARSEST; n - 1/2 keeps float ties away.
  halvings = tf.math.ceil(tf.math.log((longest - 0.5) / COARSEST) / np.log(2.0))
  return tf.maximum(tf.cast(halvings, tf.int32), 1) + 1    # at least one coarse grid


def _coarse_inverse(d, right, down):
  """The inverse of the coarsest grid's matrix [n, n] (n = its cells), symmetrised. Cells
  without unknowns (d = 0) get an identity row; the rest a relative 1e-6 on the diagonal,
  so a region with no known neighbour (a singular grid, whose right-hand side is zero)
  still inverts."""
  n = tf.size(d)
  width = tf.shape(d)[2]
  d, right, down = tf.reshape(d, [-1]), tf.reshape(right, [-1]), tf.reshape(down, [-1])
  cells = tf.range(n)
  across = tf.stack([cells[:-1], cells[:-1] + 1], 1)            # to the right
  below = tf.stack([cells[:n - width], cells[:n - width] + width], 1)
  upper = tf.scatter_nd(tf.concat([across, below], 0),
                        tf.concat([right[:-1], down[:n - width]], 0), [n, n])
  diagonal = tf.where(d > 0, d * (1.0 + 1e-6), 1.0)
  inverse = tf.linalg.inv(tf.linalg.diag(diagonal) - upper - tf.transpose(upper))
  return 0.5 * (inverse + tf.transpose(inverse))


class _Hierarchy:
  """The V-cycle's grids, level 0 the box itself, as TensorArrays indexed by level (a loop
  over levels, so the graph does not grow with the box)."""

  FIELDS = 7  # d, right, left, down, up, Jacobi weights, coarse-correction weights

  def __init__(self, d, right, down, inside):
    self.levels = _levels(tf.shape(d)[1], tf.shape(d)[2])
    self.finest_d, self.inside = d, inside
    arrays = tuple(self._array() for _ in range(self.FIELDS))
    arrays = self._store(arrays, 0, d, right, down)

    def grow(level, d, right, down, *arrays):
      d, right, down = _coarsen(d, right, down)
      return (level + 1, d, right, down) + self._store(arrays, level, d, right, down)

    grid = tf.TensorShape([1, None, None, 1])
    out = tf.while_loop(
        lambda level, *_: level < self.levels, grow, (tf.constant(1), d, right, down) + arrays,
        shape_invariants=(tf.TensorShape([]), grid, grid, grid)
        + (tf.TensorShape(None),) * self.FIELDS)
    self.arrays = out[4:]
    # Level 0's smoothing weights, for the V-cycle's first and last steps (outside its loops).
    self.finest_jacobi, self.finest_correct = (a.read(0) for a in self.arrays[5:])
    last = self.levels - 1
    self.inverse = _coarse_inverse(*(self.arrays[k].read(last) for k in (0, 1, 3)))

  def _array(self):
    return tf.TensorArray(tf.float32, size=self.levels, infer_shape=False,
                          element_shape=[None, None, None, 1], clear_after_read=False)

  def _store(self, arrays, level, d, right, down):
    left = tf.pad(right[:, :, :-1], [[0, 0], [0, 0], [1, 0], [0, 0]])
    up = tf.pad(down[:, :-1], [[0, 0], [1, 0], [0, 0], [0, 0]])
    values = (d, right, left, down, up, tf.math.divide_no_nan(OMEGA, d),
              OVER_CORRECTION * tf.cast(d > 0, tf.float32))
    return tuple(a.write(level, v) for a, v in zip(arrays, values))

  def grid(self, level):
    return tuple(a.read(level) for a in self.arrays[:5])

  def apply(self, level, x):
    return _apply(x, self.grid(level))

  def finest(self, x):
    """``A x`` on level 0 for ``x`` zero off the hole (every vector CG and the V-cycle make
    there): its 0/1 weights make the neighbour terms a plain neighbour sum."""
    return self.finest_d * x - self.inside * _neighbour_sum(x)

  def v_cycle(self, b):
    """One V-cycle for ``A x = b`` on level 0, from zero (symmetric in ``b``): a damped Jacobi
    sweep before and after the over-weighted coarse correction; the coarsest grid is solved
    exactly."""
    jacobi, correct = self.arrays[5], self.arrays[6]
    shape = tf.TensorShape([None, None, None, 1])
    x0 = self.finest_jacobi * b

    def down(level, b, bs, xs):
      x = jacobi.read(level) * b
      return (level + 1, _restrict(b - self.apply(level, x)), bs.write(level, b),
              xs.write(level, x))

    _, coarse, bs, xs = tf.while_loop(
        lambda level, *_: level < self.levels - 1, down,
        # b - A x0 with x0 = J0 b: A's diagonal times J0 is OMEGA on the hole, zero off it.
        (tf.constant(1), _restrict((1.0 - OMEGA) * b + self.inside * _neighbour_sum(x0)),
         self._array(), self._array()),
        shape_invariants=(tf.TensorShape([]), shape, tf.TensorShape(None), tf.TensorShape(None)))
    # The coarsest grid exactly: each channel's cells times the (symmetric) inverse.
    size = tf.shape(coarse)
    x = tf.reshape(tf.linalg.matmul(tf.reshape(coarse, [size[0], -1]), self.inverse), size)

    def up(level, coarse):
      b = bs.read(level)
      size = tf.shape(b)
      x = xs.read(level) + correct.read(level) * _prolong(coarse, size[1], size[2])
      return level - 1, x + jacobi.read(level) * (b - self.apply(level, x))

    coarse = tf.while_loop(lambda level, _: level >= 1, up, (self.levels - 2, x),
                           shape_invariants=(tf.TensorShape([]), shape))[1]
    size = tf.shape(b)
    x = x0 + self.finest_correct * _prolong(coarse, size[1], size[2])
    return x + self.finest_jacobi * (b - self.finest(x))


def correction_and_steps(known, fill, hole):
  """:func:`harmonic_correction` and the number of CG steps it took (int32 scalar)."""
  channels = known.shape[-1]
  inside = tf.cast(hole, tf.float32)[None, :, :, None]
  outside = 1.0 - inside
  # Per pixel: known neighbours, the sum of their values, in-image neighbours (one pass;
  # sums of integers or of uint8 values, so exact in any order).
  sums = _neighbour_sum(tf.concat([outside, known[None] * outside, tf.ones_like(inside)], -1))
  edges, near, count = sums[..., :1], sums[..., 1:1 + channels], sums[..., 1 + channels:]
  # Right-hand side: for each hole pixel, the sum over its known neighbours q of x_q - y_p.
  # The solve holds channels as the batch [C, H, W, 1]: per-channel step sizes and the
  # grids [1, H, W, 1] then broadcast over the leading axis, which is fast.
  rhs = tf.transpose((near - edges * fill[None]) * inside, [3, 1, 2, 0])
  # Equations: count_p h_p - sum of hole-neighbour h = rhs (count: in-image neighbours).
  grids = _Hierarchy(count * inside, *_hole_weights(inside), inside)

  # Dot products (one per channel): float32 sums along rows (each row's order is fixed),
  # then float64 over the rows; step sizes in float32. The order of a whole sum (which
  # depends on the thread count and the graph) then never moves a step size, so test.py's
  # graph and the SavedModel's give the same bytes.
  def dot(a, b):
    return tf.reduce_sum(tf.cast(tf.reduce_sum(a * b, axis=2), tf.float64), axis=[1, 2])

  def ratio(a, b):
    return tf.reshape(tf.cast(a / tf.maximum(b, 1e-30), tf.float32), [-1, 1, 1, 1])

  tol = 1e-12 + TOLERANCE ** 2 * dot(rhs, rhs)

  # Preconditioned CG, the first step's direction being the V-cycle of the right-hand side
  # (p = 0 before it, so the first beta does not matter).
  def step(i, x, r, p, rz, rr):
    z = grids.v_cycle(r)
    rz_new = dot(r, z)
    p = z + ratio(rz_new, rz) * p
    ap = grids.finest(p)
    alpha = ratio(rz_new, dot(p, ap))
    x = x + alpha * p
    r = r - alpha * ap
    return i + 1, x, r, p, rz_new, dot(r, r)

  def going(i, x, r, p, rz, rr):
    return tf.logical_and(i < CG_STEPS, tf.reduce_any(rr > tol))

  zero = tf.zeros_like(rhs)
  ones = tf.ones([channels], tf.float64)
  start = (tf.constant(0), zero, rhs, zero, ones, dot(rhs, rhs))
  steps, x = tf.while_loop(going, step, start)[:2]
  return tf.transpose(x * inside, [3, 1, 2, 0])[0], steps


def harmonic_correction(known, fill, hole):
  """The correction ``h`` [H, W, C] that seam-blends ``fill`` into ``known``, solving on the
  whole array (``blend`` calls it once per hole region).

  Args:
    known: float32 ``[H, W, C]`` photo (values under the hole are ignored).
    fill: float32 ``[H, W, C]`` the network's output (only hole values are used).
    hole: bool ``[H, W]``.
  Returns:
    float32 ``[H, W, C]``: ``h`` on hole pixels, zero elsewhere.
  """
  return correction_and_steps(known, fill, hole)[0]


def _dilate(x):
  """bool [H, W]: ``x`` grown by one pixel (3 x 3, chessboard)."""
  rows = tf.pad(x, [[1, 1], [0, 0]])
  x = rows[:-2] | rows[1:-1] | rows[2:]
  cols = tf.pad(x, [[0, 0], [1, 1]])
  return cols[:, :-2] | cols[:, 1:-1] | cols[:, 2:]


def thickness(hole, labels, count, cell):
  """int32 [count]: a bound (px, chessboard) on how far any hole pixel of each region lies
  from a known pixel: 1, 2, 4 or 8 when that holds for every pixel of the region, else
  ``cell`` times one more than the largest chessboard distance, in cells, from one of its
  cells to a cell that holds a known pixel (cells outside the photo hold none)."""
  occupied = labels >= 0
  ids = tf.reshape(tf.where(occupied, labels, count), [-1])

  def per_region(x, reduce):
    return reduce(tf.reshape(x, [-1]), ids, count + 1)[:count]

  limit = tf.reduce_max(tf.shape(labels))
  near = tf.logical_not(hole)
  bound = tf.fill([count], limit * cell + cell)
  for radius in range(1, 9):
    near = _dilate(near)
    if radius in (1, 2, 4, 8):
      covered = tf.reduce_all(regions_lib.cells_of(near | tf.logical_not(hole), cell, True),
                              axis=[1, 3])
      every = per_region(tf.cast(covered, tf.int32), tf.math.unsorted_segment_min) > 0
      bound = tf.where(tf.logical_and(every, bound > radius), radius, bound)

  cells = regions_lib.cells_of(hole, cell, outside=True)
  known = tf.cast(tf.logical_not(tf.reduce_all(cells, axis=[1, 3])), tf.float32)

  def spread_known(k, reached, distance):
    grown = tf.nn.max_pool2d(reached[None, :, :, None], 3, 1, "SAME")[0, :, :, 0]
    return k + 1, grown, tf.where(grown > reached, k + 1, distance)

  def some_unreached(k, reached, distance):
    return tf.logical_and(k < limit, tf.reduce_any(tf.logical_and(occupied, reached < 0.5)))

  distance = tf.while_loop(some_unreached, spread_known, (tf.constant(0), known,
                                           tf.where(known > 0.5, 0, limit)))[2]
  far = per_region(distance, tf.math.unsorted_segment_max)
  return tf.minimum(bound, cell * (1 + far))


def pieces(hole, cell=regions_lib.CELL):
  """What :func:`blend` solves one at a time: the hole's regions, with many small regions
  near each other solved together and long thin regions cut into overlapping pieces.

  * ``MERGE_MIN`` or more regions whose boxes fit in ``MERGE_BOX`` px and whose boxes start
    in the same ``MERGE_TILE`` px tile form one group, solved together on their joint box
    (their equations are independent, so the solution is theirs apart; one solve instead of
    many).
  * A region whose box is longer than ``PIECE + 2 * halo`` (``halo``: ``HALO`` times its
    :func:`thickness`) is cut into ``PIECE`` px tiles (``regions.tile_keys``); each tile is
    solved on the region's part within ``halo`` of it, with no equation across that cut
    (like the photo's edge), and keeps only its own pixels. Every hole pixel lies within the
    thickness of a known pixel, so the cut's influence decays geometrically over that
    distance, and ``halo`` makes it negligible; memory and time follow the tile, not the
    region's box (a 1-px frame's box is the whole photo).

  Returns ``(labels, groups, piece_group, boxes)``: the piece and the group of every cell
  (-1 for none); int32 [P], each piece's group; int32 [P, 4], the box each piece is solved on
  (top, left, bottom, right; its hole pixels of its group are the unknowns).
  """
  shape = tf.shape(hole)
  boxes, labels = regions_lib.region_boxes(hole, cell)
  count = tf.shape(boxes)[0]
  extent = tf.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
  # Groups: small regions sharing a tile.
  small = extent <= MERGE_BOX
  columns = shape[1] // MERGE_TILE + 1
  tile = boxes[:, 0] // MERGE_TILE * columns + boxes[:, 1] // MERGE_TILE
  members = tf.math.unsorted_segment_sum(tf.cast(small, tf.int32), tile,
                                         (shape[0] // MERGE_TILE + 1) * columns)
  merged = tf.logical_and(small, tf.gather(members, tile) >= MERGE_MIN)
  keys = tf.where(regions_lib.per_cell(merged, labels, False),
                  -2 - tf.cast(regions_lib.per_cell(tile, labels, 0), tf.int64),
                  tf.cast(labels, tf.int64))
  groups, group_count = regions_lib.group(labels, keys)
  group_boxes = regions_lib.tight_boxes(hole, groups, group_count, cell)
  # Pieces: long thin regions (never a merged group, whose box is small) cut into tiles.
  halo = HALO * thickness(hole, labels, count, cell)
  split = extent > PIECE + 2 * halo
  tiles = tf.where(split, PIECE // cell, tf.reduce_max(tf.shape(labels)) + 1)
  piece_labels, piece_count = regions_lib.group(
      labels, tf.where(regions_lib.per_cell(merged, labels, False), keys,
                       regions_lib.tile_keys(labels, boxes, tiles, cell)))
  ids = tf.reshape(tf.where(piece_labels >= 0, piece_labels, piece_count), [-1])

  def per_piece(x):
    return tf.math.unsorted_segment_max(tf.reshape(x, [-1]), ids, piece_count + 1)[:piece_count]

  piece_group = per_piece(groups)
  piece_halo = per_piece(regions_lib.per_cell(halo, labels, 0))
  own = regions_lib.tight_boxes(hole, piece_labels, piece_count, cell)
  outer = tf.gather(group_boxes, piece_group)
  grown = tf.stack([own[:, 0] - piece_halo, own[:, 1] - piece_halo, own[:, 2] + piece_halo,
                    own[:, 3] + piece_halo], 1)
  # One more pixel for the known neighbours, within the photo.
  solve = tf.stack([tf.maximum(tf.maximum(grown[:, 0], outer[:, 0]) - 1, 0),
                    tf.maximum(tf.maximum(grown[:, 1], outer[:, 1]) - 1, 0),
                    tf.minimum(tf.minimum(grown[:, 2], outer[:, 2]) + 1, shape[0]),
                    tf.minimum(tf.minimum(grown[:, 3], outer[:, 3]) + 1, shape[1])], 1)
  return piece_labels, groups, piece_group, tf.reshape(solve, [-1, 4])


def blend(known, fill, hole):
  """``fill`` seam-blended into ``known`` on ``hole``: each piece of the hole (:func:`pieces`)
  is solved on its own box, one after another (an empty hole gives ``known``).

  Args, as :func:`harmonic_correction`; returns float32 ``[H, W, C]``: ``known`` outside
  the hole, ``fill + h`` inside (unclipped).
  """
  labels, groups, piece_group, boxes = pieces(hole)
  cell = regions_lib.CELL
  count = tf.shape(boxes)[0]
  # One more (empty) element each, so that concat() has something to join without regions.
  where = tf.TensorArray(tf.int64, size=count + 1, infer_shape=False, element_shape=[None, 2])
  where = where.write(count, tf.zeros([0, 2], tf.int64))
  values = tf.TensorArray(tf.float32, size=count + 1, infer_shape=False,
                          element_shape=[None, None])
  values = values.write(count, tf.zeros([0, tf.shape(known)[2]]))

  def solve(i, where, values):
    top, left, bottom, right = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
    rows, cols = tf.range(top, bottom) // cell, tf.range(left, right) // cell
    hole_box = hole[top:bottom, left:right]
    unknown = tf.logical_and(hole_box, tf.equal(
        tf.gather(tf.gather(groups, rows), cols, axis=1), piece_group[i]))
    h = harmonic_correction(known[top:bottom, left:right], fill[top:bottom, left:right],
                            unknown)
    mine = tf.logical_and(hole_box, tf.equal(tf.gather(tf.gather(labels, rows), cols, axis=1),
                                             i))
    at = tf.where(mine)
    origin = tf.cast(tf.stack([top, left]), tf.int64)
    return i + 1, where.write(i, at + origin), values.write(i, tf.gather_nd(h, at))

  _, where, values = tf.while_loop(lambda i, *_: i < count, solve,
                                   (tf.constant(0), where, values))
  # Every hole pixel is in exactly one piece: write fill + h there, over the photo.
  at = tf.reshape(where.concat(), [-1, 2])
  h = tf.reshape(values.concat(), [tf.shape(at)[0], tf.shape(known)[2]])
  return tf.tensor_scatter_nd_update(known, at, tf.gather_nd(fill, at) + h)


def blend_uint8(image, fill, hole):
  """:func:`blend` of uint8 ``image`` and ``fill`` [H, W, 3], rounded to uint8."""
  blended = blend(tf.cast(image, tf.float32), tf.cast(fill, tf.float32), hole)
  return tf.cast(tf.clip_by_value(tf.round(blended), 0.0, 255.0), tf.uint8)


class TracedBlend:
  """:func:`blend_uint8` traced once (any size), first compiled in a background thread.

  Tracing and optimising the solver's graph costs about half a second per process; started
  (``prepare``) before the network's own first call, it overlaps that call (TensorFlow
  releases the GIL while a graph is optimised and run). The result is the same ops as the
  blending inside ``Inpainter.fill``, so the same bytes.
  """

  def __init__(self):
    spec = tf.TensorSpec([None, None, 3], tf.uint8)
    self._function = tf.function(blend_uint8, autograph=False, input_signature=[
        spec, spec, tf.TensorSpec([None, None], tf.bool)])
    self._thread = None
    self._lock = threading.Lock()

  def _compile(self):
    pixels = np.zeros([2, 2, 3], np.uint8)
    try:
      self._function(pixels, pixels, np.eye(2, dtype=bool))
    except Exception:  # pylint: disable=broad-except
      pass  # never a traceback from this thread: the real call compiles again and reports

  def prepare(self):
    """Starts compiling in the background (once)."""
    with self._lock:
      if self._thread is None:
        self._thread = threading.Thread(target=self._compile, daemon=True,
                                        name="seam-blend-compile")
        self._thread.start()

  def __call__(self, image, fill, hole):
    """uint8 [H, W, 3]: ``fill`` blended into ``image`` on bool ``hole`` [H, W]."""
    self.prepare()
    self._thread.join()
    return self._function(image, fill, hole)
