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
2010). The V-cycle is symmetric positive definite, so CG stays valid. Why this and not a
fast sine transform of the box as preconditioner: that one is exact for a rectangle but
degrades with the hole's shape (a thin stroke in a large box), while the Galerkin grids
follow any shape. Cost: a V-cycle is O(N) on an N-pixel box (4/3 N pixel updates); the
CG steps grow like log N (steps per hole box size: ``bench/BLENDING_RESULTS.md``), so
O(N log N) in all, where plain CG on the Laplacian needs O(sqrt N) steps, O(N^1.5).

Each hole region (``model/inference/regions.py``) is solved on its own tight box grown by
one pixel, one after the other, so cost and memory follow the regions' boxes, not the
distance between them; hole pixels of different regions are never 4-adjacent, so the
regions' equations are independent.
"""

import numpy as np
import tensorflow as tf

from model.inference import regions as regions_lib

LEVELS = 12             # grids of the V-cycle: a box of 2,048 pixels a side ends on one cell
CG_STEPS = 200          # at most this many preconditioned CG steps
TOLERANCE = 1e-5        # stop when |residual| <= TOLERANCE * |right-hand side| (per channel)
OMEGA = 0.8             # damping of the Jacobi sweeps
OVER_CORRECTION = 1.5   # weight of the coarse-grid correction
EVEN_LEVELS = 3         # the finest box is padded to a multiple of 2^EVEN_LEVELS


def _neighbour_sum(x):
  """Sum of the four neighbours of every pixel of ``x`` [H, W, C] (zero outside)."""
  p = tf.pad(x, [[1, 1], [1, 1], [0, 0]])
  return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]


_OFFSETS = ((0, 1), (0, -1), (1, 0), (-1, 0))   # right, left, down, up


def _kernels(channels):
  """Depthwise kernels: ``[3, 3, C, 4]`` whose output ``4c + m`` is channel c at offset
  ``_OFFSETS[m]``, and ``[3, 3, C, 1]`` of their sum (the neighbour sum)."""
  k = np.zeros([3, 3, channels, 4], np.float32)
  for m, (dy, dx) in enumerate(_OFFSETS):
    k[1 + dy, 1 + dx, :, m] = 1.0
  return tf.constant(k), tf.constant(k.sum(-1, keepdims=True))


def _conv(x, kernel):
  return tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME")


class _Grid:
  """One grid of the V-cycle: ``A x = d x - sum over the 4 neighbours of w x``, scaled by
  ``4^-level`` (so that restriction is a plain 2x2 mean).

  The finest grid has 0/1 weights, given by its hole mask ``inside`` (a neighbour sum);
  coarser ones keep ``right`` and ``down`` [1, H, W, C] (the weights to the pixel at the
  right and below) and ``weights`` [1, H, W, 4C], all four in the depthwise conv's output
  order. Grids with ``even`` sizes need no padding to be restricted.
  """

  def __init__(self, kernels, d, even, inside=None, right=None, down=None):
    self.kernels, self.d, self.even, self.inside = kernels, d, even, inside
    self.shape = tf.shape(d)
    self.jacobi = tf.math.divide_no_nan(OMEGA, d)
    self.correct = OVER_CORRECTION * tf.cast(d > 0, tf.float32)
    if inside is not None:
      right = _conv(inside, kernels[0][..., 0:1]) * inside
      down = _conv(inside, kernels[0][..., 2:3]) * inside
    else:
      left = tf.pad(right[:, :, :-1], [[0, 0], [0, 0], [1, 0], [0, 0]])
      up = tf.pad(down[:, :-1], [[0, 0], [1, 0], [0, 0], [0, 0]])
      self.weights = tf.reshape(tf.stack([right, left, down, up], -1),
                                self.shape * [1, 1, 1, 4])
      self.shape5 = tf.concat([self.shape, [4]], 0)
    self.right, self.down = right, down
    if not even:
      self.pad = tf.stack([[0, 0], [0, self.shape[1] % 2], [0, self.shape[2] % 2], [0, 0]])

  def apply(self, x):
    if self.inside is not None:
      return self.d * x - self.inside * _conv(x, self.kernels[1])
    near = tf.reshape(self.weights * _conv(x, self.kernels[0]), self.shape5)
    return self.d * x - tf.reduce_sum(near, -1)

  def _even(self, x):
    return x if self.even else tf.pad(x, self.pad)

  def restrict(self, x):
    """``P^T x / 4``: means over 2x2 cells (odd sizes padded with zeros)."""
    return tf.nn.avg_pool2d(self._even(x), 2, 2, "VALID")

  def prolong(self, x):
    """``P x``: each cell's value of the next coarser grid on its 2x2 pixels of this one."""
    up = tf.nn.depth_to_space(tf.tile(x, [1, 1, 1, 4]), 2)
    return up if self.even else up[:, :self.shape[1], :self.shape[2]]

  def coarsen(self, even):
    """The Galerkin grid ``P^T A P / 4`` on 2x2 aggregates (again 5-point)."""
    t = self._even(tf.concat([self.d, self.right, self.down], -1))
    a, b, c, e = t[:, 0::2, 0::2], t[:, 1::2, 0::2], t[:, 0::2, 1::2], t[:, 1::2, 1::2]
    n = self.d.shape[-1]
    # Weights inside an aggregate are counted twice in P^T A P's diagonal (both directions).
    inner = (a + b)[..., n:2 * n] + (a + c)[..., 2 * n:]
    d = ((a + b + c + e)[..., :n] - 2.0 * inner) * 0.25
    return _Grid(self.kernels, d, even, right=(c + e)[..., n:2 * n] * 0.25,
                 down=(b + e)[..., 2 * n:] * 0.25)


def _v_cycle(grids, b, level=0):
  """One V-cycle for ``A x = b`` on ``grids[level]``, from zero (symmetric in ``b``); the
  coarsest grid gets one Jacobi step (exact on one cell)."""
  grid = grids[level]
  if level == len(grids) - 1:
    return b * grid.jacobi / OMEGA
  x = grid.jacobi * b
  coarse = _v_cycle(grids, grid.restrict(b - grid.apply(x)), level + 1)
  x = x + grid.correct * grid.prolong(coarse)
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
  # Padded (no unknowns there) so that the first EVEN_LEVELS grids have even sizes.
  size = tf.shape(hole)
  pad = tf.stack([[0, 0], [0, tf.math.floormod(-size[0], 2 ** EVEN_LEVELS)],
                  [0, tf.math.floormod(-size[1], 2 ** EVEN_LEVELS)], [0, 0]])
  tile = [1, 1, 1, channels]
  grids = [_Grid(_kernels(channels), tf.pad(tf.tile(count[None], tile), pad), True,
                 inside=tf.pad(tf.tile(inside[None], tile), pad))]
  for level in range(1, LEVELS):
    grids.append(grids[-1].coarsen(even=level < EVEN_LEVELS))
  rhs = tf.pad(rhs[None], pad)

  # Dot products: float32 sums along rows (each row's order is fixed), then float64 over the
  # rows; step sizes in float32. The order of a whole sum (which depends on the thread count
  # and the graph) then never moves a step size, so test.py's graph and the SavedModel's
  # give the same bytes.
  def dot(a, b):
    return tf.reduce_sum(tf.cast(tf.reduce_sum(a * b, axis=2), tf.float64), axis=[0, 1])

  def ratio(a, b):
    return tf.cast(a / tf.maximum(b, 1e-30), tf.float32)

  tol = 1e-12 + TOLERANCE ** 2 * dot(rhs, rhs)

  # Preconditioned CG, the first step's direction being the V-cycle of the right-hand side
  # (p = 0 before it, so the first beta does not matter).
  def step(i, x, r, p, rz, rr):
    z = _v_cycle(grids, r)
    rz_new = dot(r, z)
    p = z + ratio(rz_new, rz) * p
    ap = grids[0].apply(p)
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
  return x[0, :size[0], :size[1]] * inside, steps


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
