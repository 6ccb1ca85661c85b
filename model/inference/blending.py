"""Seam blending: a gradient-domain (Poisson) paste of the network's fill into the photo.

The generator's hole values ``y`` need not meet the known pixels ``x`` at the hole's edge
(the v1 network has no skip connections, so fine detail and exact colour at the boundary
are lost in its 4x-downsampled bottleneck). Seam blending keeps the fill's gradients inside
the hole and makes it continuous with the photo (Perez et al., "Poisson Image Editing",
SIGGRAPH 2003; used as post-processing by Iizuka et al., SIGGRAPH 2017). The blended fill
is ``y + h`` with ``h`` discrete-harmonic on the hole and, across every hole edge between a
hole pixel ``p`` and a known pixel ``q``, the boundary value ``x_q - y_p`` (the fill's
gradient across the seam is taken as zero, so only hole values of ``y`` are used). Pixels
outside the image add no equation (natural boundary); docs/ARCHITECTURE.md §7.6 has the
equations.

Solver (TensorFlow ops, so it runs inside the exported SavedModel): conjugate gradients
preconditioned by one multigrid V-cycle, until the residual is ``1e-5`` of the right-hand
side. The V-cycle aggregates 2x2 pixels per coarser grid (piecewise-constant prolongation,
Galerkin coarse operators ``P^T A P``: the hole's exact shape, its Dirichlet edges and the
image border's natural edges reach every grid, and every grid keeps a 5-point stencil),
with one damped Jacobi sweep before and after the coarse correction and the correction
over-weighted (aggregation under-corrects smooth errors by about 2, Braess 1995; Notay
2010). The V-cycle is symmetric positive definite, so CG stays valid. A V-cycle costs
O(N) on an N-pixel box and CG needs a few tens of them whatever N (plain CG on the
Laplacian needs O(sqrt N) steps, O(N^1.5) in all): O(N log N) at worst (the grids' count).

Each hole region (``model/inference/regions.py``) is solved on its own tight box grown by
one pixel, one after the other, so cost and memory follow the regions' boxes, not the
distance between them; hole pixels of different regions are never 4-adjacent, so the
regions' equations are independent.
"""

import tensorflow as tf

from model.inference import regions as regions_lib

LEVELS = 14             # grids of the V-cycle: a box of 8,192 pixels a side ends on one cell
CG_STEPS = 200          # at most this many preconditioned CG steps
TOLERANCE = 1e-5        # stop when |residual| <= TOLERANCE * |right-hand side| (per channel)
OMEGA = 0.8             # damping of the Jacobi sweeps
OVER_CORRECTION = 1.7   # weight of the coarse-grid correction


def _neighbour_sum(x):
  """Sum of the four neighbours of every pixel of ``x`` [H, W, C] (zero outside)."""
  p = tf.pad(x, [[1, 1], [1, 1], [0, 0]])
  return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]


def _kernel(taps, channels):
  """Depthwise kernel [3, 3, C, len(taps)] whose output m is the input at offset taps[m]."""
  k = [[[float((dy, dx) == t) for t in taps] for dx in (-1, 0, 1)] for dy in (-1, 0, 1)]
  return tf.tile(tf.constant(k)[:, :, None, :], [1, 1, channels, 1])


def _conv(x, kernel):
  return tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME")


def _even(x):
  """``x`` [1, H, W, C] padded with zeros to even H and W."""
  h, w = tf.shape(x)[1], tf.shape(x)[2]
  return tf.pad(x, [[0, 0], [0, h % 2], [0, w % 2], [0, 0]])


def _restrict(x):
  """``P^T x``: sums over 2x2 cells (odd sizes padded with zeros)."""
  return tf.nn.avg_pool2d(_even(x), 2, 2, "VALID") * 4.0


def _prolong(x, shape):
  """``P x``: each cell's value on its 2x2 pixels, cropped to ``shape`` [1, H, W, C]."""
  up = tf.image.resize(x, 2 * tf.shape(x)[1:3], "nearest")
  return up[:, :shape[1], :shape[2]]


class _Grid:
  """One grid of the V-cycle: ``A x = d x - sum over the 4 neighbours of w x``.

  ``weights`` [1, H, W, 4C] holds, for each pixel and channel, the weights to its neighbours
  at the offsets of ``_OFFSETS`` (the order of a depthwise conv's outputs); the finest grid
  instead uses its 0/1 hole mask (``inside``) with a plain neighbour sum.
  """

  def __init__(self, d, weights=None, inside=None):
    self.d, self.weights, self.inside = d, weights, inside
    self.jacobi = tf.where(d > 0.5, OMEGA / tf.maximum(d, 0.5), 0.0)
    self.mask = tf.cast(d > 0.5, tf.float32)
    channels = d.shape[-1]
    self.shifts = _kernel(_OFFSETS, channels)
    self.cross = tf.reduce_sum(self.shifts, -1, keepdims=True)

  def apply(self, x):
    if self.weights is None:
      return self.d * x - self.inside * _conv(x, self.cross)
    x4 = _conv(x, self.shifts)
    shape = tf.shape(x)
    near = tf.reduce_sum(tf.reshape(self.weights * x4, tf.concat([shape, [4]], 0)), -1)
    return self.d * x - near

  def neighbour_weights(self):
    """[1, H, W, C, 4] weights to the neighbours at ``_OFFSETS``."""
    if self.weights is None:
      near = _conv(self.inside, self.shifts)   # is the neighbour a hole pixel?
      w = tf.reshape(near, tf.concat([tf.shape(self.d), [4]], 0))
      return w * self.inside[..., None]
    return tf.reshape(self.weights, tf.concat([tf.shape(self.d), [4]], 0))

  def coarsen(self):
    """The Galerkin grid ``P^T A P`` on 2x2 aggregates (again 5-point)."""
    w = self.neighbour_weights()            # [1, H, W, C, 4]: right, left, down, up
    right = _even(w[..., 0])
    down = _even(w[..., 2])
    # Weights inside an aggregate are counted twice in P^T A P's diagonal (both directions).
    r_in = right[:, 0::2, 0::2] + right[:, 1::2, 0::2]
    r_out = right[:, 0::2, 1::2] + right[:, 1::2, 1::2]
    d_in = down[:, 0::2, 0::2] + down[:, 0::2, 1::2]
    d_out = down[:, 1::2, 0::2] + down[:, 1::2, 1::2]
    d = _restrict(self.d) - 2.0 * (r_in + d_in)
    zero_col = [[0, 0], [0, 0], [1, 0], [0, 0]]
    zero_row = [[0, 0], [1, 0], [0, 0], [0, 0]]
    left = tf.pad(r_out[:, :, :-1], zero_col)
    up = tf.pad(d_out[:, :-1], zero_row)
    return _Grid(d, tf.reshape(tf.stack([r_out, left, d_out, up], -1),
                               tf.concat([tf.shape(d)[:3], [-1]], 0)))


_OFFSETS = ((0, 1), (0, -1), (1, 0), (-1, 0))   # right, left, down, up


def _v_cycle(grids, b, level=0):
  """One V-cycle for ``A x = b`` on ``grids[level]``, from zero (symmetric in ``b``)."""
  grid = grids[level]
  if level == len(grids) - 1:
    return b * grid.jacobi / OMEGA
  x = grid.jacobi * b
  coarse = _v_cycle(grids, _restrict(b - grid.apply(x)), level + 1)
  x = x + OVER_CORRECTION * grid.mask * _prolong(coarse, tf.shape(b))
  return x + grid.jacobi * (b - grid.apply(x))


def correction_and_steps(known, fill, hole):
  """:func:`harmonic_correction` and the number of CG steps it took (int32 scalar)."""
  channels = known.shape[-1]
  inside = tf.cast(hole, tf.float32)[..., None]
  outside = 1.0 - inside
  # Right-hand side: for each hole pixel, the sum over its known neighbours q of x_q - y_p.
  edges = _neighbour_sum(outside) * inside
  rhs = (_neighbour_sum(known * outside) - edges * fill) * inside
  # Equations: count_p h_p - sum of hole-neighbour h = rhs (count: in-image neighbours).
  count = _neighbour_sum(tf.ones_like(inside)) * inside
  tile = [1, 1, 1, channels]
  grids = [_Grid(tf.tile(count[None], tile), inside=tf.tile(inside[None], tile))]
  for _ in range(LEVELS - 1):
    grids.append(grids[-1].coarsen())
  rhs = rhs[None]

  # Dot products: float32 sums along rows (each row's order is fixed), then float64 over the
  # rows; step sizes in float32. The order of a whole sum (which depends on the thread count
  # and the graph) then never moves a step size, so test.py's graph and the SavedModel's
  # give the same bytes.
  def dot(a, b):
    return tf.reduce_sum(tf.cast(tf.reduce_sum(a * b, axis=2), tf.float64), axis=[0, 1])

  def ratio(a, b):
    return tf.cast(a / tf.maximum(b, 1e-30), tf.float32)

  x = tf.zeros_like(rhs)
  r = rhs
  z = _v_cycle(grids, r)
  p = z
  tol = 1e-12 + TOLERANCE ** 2 * dot(rhs, rhs)

  def step(i, x, r, p, rz, rr):
    ap = grids[0].apply(p)
    alpha = ratio(rz, dot(p, ap))
    x = x + alpha * p
    r = r - alpha * ap
    z = _v_cycle(grids, r)
    rz_new = dot(r, z)
    p = z + ratio(rz_new, rz) * p
    return i + 1, x, r, p, rz_new, dot(r, r)

  def going(i, x, r, p, rz, rr):
    return tf.logical_and(i < CG_STEPS, tf.reduce_any(rr > tol))

  steps, x = tf.while_loop(going, step, (tf.constant(0), x, r, p, dot(r, z), dot(r, r)))[:2]
  return x[0] * inside, steps


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


def blend(known, fill, hole):
  """``fill`` seam-blended into ``known`` on ``hole``: each hole region is solved on its own
  box grown by one pixel (an empty hole gives ``known``).

  Args, as :func:`harmonic_correction`; returns float32 ``[H, W, C]``: ``known`` outside
  the hole, ``fill + h`` inside (unclipped).
  """
  shape = tf.shape(hole)
  boxes, labels = regions_lib.region_boxes(hole)
  cell = regions_lib.CELL
  count = tf.shape(boxes)[0]
  # One more (empty) element each, so that concat() has something to join without regions.
  where = tf.TensorArray(tf.int64, size=count + 1, infer_shape=False, element_shape=[None, 2])
  where = where.write(count, tf.zeros([0, 2], tf.int64))
  values = tf.TensorArray(tf.float32, size=count + 1, infer_shape=False,
                          element_shape=[None, None])
  values = values.write(count, tf.zeros([0, tf.shape(known)[2]]))

  def solve(i, where, values):
    top, left = tf.maximum(boxes[i, 0] - 1, 0), tf.maximum(boxes[i, 1] - 1, 0)
    bottom, right = tf.minimum(boxes[i, 2] + 1, shape[0]), tf.minimum(boxes[i, 3] + 1, shape[1])
    rows, cols = tf.range(top, bottom) // cell, tf.range(left, right) // cell
    own = tf.equal(tf.gather(tf.gather(labels, rows), cols, axis=1), i)
    region = tf.logical_and(hole[top:bottom, left:right], own)
    h = harmonic_correction(known[top:bottom, left:right], fill[top:bottom, left:right],
                            region)
    at = tf.where(region)
    origin = tf.cast(tf.stack([top, left]), tf.int64)
    return i + 1, where.write(i, at + origin), values.write(i, tf.gather_nd(h, at))

  _, where, values = tf.while_loop(lambda i, *_: i < count, solve,
                                   (tf.constant(0), where, values))
  at = tf.reshape(where.concat(), [-1, 2])
  h = tf.scatter_nd(at, tf.reshape(values.concat(), [tf.shape(at)[0], tf.shape(known)[2]]),
                    tf.shape(known, out_type=tf.int64))
  return tf.where(hole[..., None], fill + h, known)
