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

The solver is TensorFlow ops (so it runs inside the exported SavedModel): a pull-push
interpolation of the boundary values (pooled to coarser grids, then upsampled into the cells
without data) is the start of conjugate gradients on the exact equations, which stop when
the residual is 1e-4 of the right-hand side or after ``CG_STEPS``. It works on the hole's
bounding box only.
"""

import tensorflow as tf

MAX_LEVELS = 12         # pull-push grids: a 2,048-pixel hole box ends on one cell
CG_STEPS = 500          # at most this many conjugate-gradient steps at full resolution


def _neighbour_sum(x):
  """Sum of the four neighbours of every pixel of ``x`` [H, W, C] (zero outside)."""
  p = tf.pad(x, [[1, 1], [1, 1], [0, 0]])
  return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]


def _pool(x):
  """2x2 sum pooling (odd sizes padded with zeros)."""
  h, w = tf.shape(x)[0], tf.shape(x)[1]
  x = tf.pad(x, [[0, h % 2], [0, w % 2], [0, 0]])
  return tf.nn.avg_pool2d(x[None], 2, 2, "VALID")[0] * 4.0


def _upsample(x, height, width):
  return tf.repeat(tf.repeat(x, 2, axis=0), 2, axis=1)[:height, :width]


def harmonic_correction(known, fill, hole):
  """The correction ``h`` [H, W, C] that seam-blends ``fill`` into ``known``.

  Args:
    known: float32 ``[H, W, C]`` photo (values under the hole are ignored).
    fill: float32 ``[H, W, C]`` the network's output (only hole values are used).
    hole: bool ``[H, W]``.
  Returns:
    float32 ``[H, W, C]``: ``h`` on hole pixels, zero elsewhere.
  """
  inside = tf.cast(hole, tf.float32)[..., None]
  outside = 1.0 - inside
  # Edge data: for each hole pixel, the sum over its known neighbours q of (x_q - y_p)
  # and how many there are.
  edges = _neighbour_sum(outside) * inside
  edge_sum = (_neighbour_sum(known * outside) - edges * fill) * inside

  # Pull-push start: the mean edge value of each cell where any exists, else the coarser guess.
  sums, counts = [edge_sum], [edges]
  for _ in range(MAX_LEVELS - 1):
    sums.append(_pool(sums[-1]))
    counts.append(_pool(counts[-1]))
  x = tf.zeros_like(sums[-1])
  for level in range(MAX_LEVELS - 1, -1, -1):
    shape = tf.shape(sums[level])
    if level < MAX_LEVELS - 1:
      x = _upsample(x, shape[0], shape[1])
    x = tf.where(counts[level] > 0, sums[level] / tf.maximum(counts[level], 1.0), x)
  x = x * inside

  # Full resolution: conjugate gradients on the exact equations (symmetric positive
  # definite): count_p h_p - sum of hole-neighbour h = sum of edge values.
  count = _neighbour_sum(tf.ones_like(inside)) * inside

  def apply(h):
    return (count * h - _neighbour_sum(h * inside)) * inside

  # Dot products in float64, step sizes in float32: the order of a sum (which depends on the
  # thread count and the graph) then practically never moves a step size by a float32 ulp, so
  # test.py's graph and the SavedModel's give the same bytes.
  def dot(a, b):
    return tf.reduce_sum(tf.cast(a * b, tf.float64), axis=[0, 1])

  r = edge_sum - apply(x)
  p = r
  rr = dot(r, r)
  tol = 1e-12 + 1e-8 * dot(edge_sum, edge_sum)

  def step(i, x, r, p, rr):
    ap = apply(p)
    alpha = tf.cast(rr / tf.maximum(dot(p, ap), 1e-30), tf.float32)
    x = x + alpha * p
    r = r - alpha * ap
    rr_new = dot(r, r)
    p = r + tf.cast(rr_new / tf.maximum(rr, 1e-30), tf.float32) * p
    return i + 1, x, r, p, rr_new

  def going(i, x, r, p, rr):
    return tf.logical_and(i < CG_STEPS, tf.reduce_any(rr > tol))

  return tf.while_loop(going, step, (tf.constant(0), x, r, p, rr))[1]


def blend(known, fill, hole):
  """``fill`` seam-blended into ``known`` on ``hole``; only the hole's bounding box (grown by
  one pixel) is solved, and no branch is taken (an empty hole gives ``known``).

  Args, as :func:`harmonic_correction`; returns float32 ``[H, W, C]``: ``known`` outside
  the hole, ``fill + h`` inside (unclipped).
  """
  shape = tf.shape(hole, out_type=tf.int64)

  def span(axis):
    n = shape[1 - axis]
    idx = tf.where(tf.reduce_any(hole, axis=axis))[:, 0]
    lo = tf.clip_by_value(tf.reduce_min(tf.concat([idx, [n]], 0)) - 1, 0, n - 1)
    hi = tf.clip_by_value(tf.reduce_max(tf.concat([idx, [-1]], 0)) + 2, lo + 1, n)
    return lo, hi

  (y0, y1), (x0, x1) = span(1), span(0)
  h = harmonic_correction(known[y0:y1, x0:x1], fill[y0:y1, x0:x1], hole[y0:y1, x0:x1])
  h = tf.pad(h, [[y0, shape[0] - y1], [x0, shape[1] - x1], [0, 0]])
  return tf.where(hole[..., None], fill + h, known)
