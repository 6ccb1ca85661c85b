"""Training masks of DeepFill: v1 bbox holes and v2 brush strokes (ARCHITECTURE.md §6.1). Pure TF.

Every function is stateless: randomness comes only from the ``seed`` argument,
an int32/int64 tensor of shape ``[2]`` (the same seed gives the same masks), and
each sample of the batch gets its own draw. Everything is built from TF ops on
the pixel grid, so the functions run eagerly, inside ``tf.function`` and inside
``tf.data.Dataset.map`` with identical results. Masks are float32
``[B, H, W, 1]`` with **1 = hole**; bboxes are int32 ``[B, 4]`` = (top, left,
height, width).

Hole sizes:
  * ``box``: the hole is the bbox shrunk by ``d`` in [0, max_delta // 2] on both
    sides of each axis, so its sides lie in ``[box - 2 * (max_delta // 2), box]``:
    96..128 with the release's 128 box and delta 32, i.e. 14%..25% of a 256x256
    image, centred in the bbox.
  * ``free_form``: 1-3 strokes of 4-11 segments, 12-40 px wide at 256x256 (see
    ``brush_stroke_mask``). Measured over 4096 draws at 256x256: 1%-45% of the
    image (1st-99th percentile 2%-36%), mean 15%.
  * ``both``: union of the two (the v2 training mask): 15%-57% (1st-99th
    percentile 18%-48%), mean 31%, with the release's 128 box and delta 32.
"""
import math

import tensorflow as tf

from model.brush import (ANGLE_RANGE, MAX_NUM_STROKES, MAX_NUM_VERTEX, MAX_WIDTH,  # noqa: F401
                                MEAN_ANGLE, MIN_NUM_VERTEX, MIN_WIDTH, REFERENCE_DIAGONAL)
from model.training.config import MASK_MODES



def _split_seed(seed, num):
  """``num`` independent stateless seeds, ``[num, 2]``, derived from ``seed``."""
  if seed is None:
    raise ValueError("an explicit seed tensor of shape [2] is required")
  seed = tf.convert_to_tensor(seed)
  if seed.dtype not in (tf.int32, tf.int64):
    seed = tf.cast(seed, tf.int64)
  return tf.random.experimental.stateless_split(seed, num)


def random_bbox(batch, img_h, img_w, box_h, box_w, margin_v=0, margin_h=0, seed=None):
  """One random ``box_h x box_w`` bbox per sample (ARCHITECTURE.md §6.1).

  ``top`` is uniform in ``[margin_v, img_h - margin_v - box_h)`` and ``left`` in
  ``[margin_h, img_w - margin_h - box_w)`` (upper bounds exclusive, as released;
  a box that exactly fills the free range gets ``top = margin_v``).

  Returns:
    int32 ``[batch, 4]`` = (top, left, box_h, box_w).
  """
  if all(isinstance(v, int) for v in (img_h, img_w, box_h, box_w, margin_v, margin_h)):
    if img_h - margin_v - box_h < margin_v or img_w - margin_h - box_w < margin_h:
      raise ValueError(f"bbox {box_h}x{box_w} with margins ({margin_v}, {margin_h}) does "
                       f"not fit a {img_h}x{img_w} image")
  seeds = _split_seed(seed, 2)
  max_top = tf.maximum(img_h - margin_v - box_h, margin_v + 1)
  max_left = tf.maximum(img_w - margin_h - box_w, margin_h + 1)
  shape = tf.reshape(batch, [1])
  top = tf.random.stateless_uniform(shape, seeds[0], minval=margin_v, maxval=max_top,
                                    dtype=tf.int32)
  left = tf.random.stateless_uniform(shape, seeds[1], minval=margin_h, maxval=max_left,
                                     dtype=tf.int32)
  size_h = tf.fill(shape, tf.cast(box_h, tf.int32))
  size_w = tf.fill(shape, tf.cast(box_w, tf.int32))
  return tf.stack([top, left, size_h, size_w], axis=1)


def bbox_to_mask(bboxes, img_h, img_w, max_delta_h, max_delta_w, seed):
  """Hole mask inside each bbox, shrunk symmetrically by a random amount (ARCHITECTURE.md §6.1).

  Per sample, ``dh`` is uniform in ``[0, max_delta_h // 2]`` and ``dw`` in
  ``[0, max_delta_w // 2]`` (inclusive); the hole is rows
  ``[top + dh, top + h - dh)`` and columns ``[left + dw, left + w - dw)``.

  Args:
    bboxes: int32 ``[B, 4]`` (top, left, h, w).
    img_h, img_w: image size.
    max_delta_h, max_delta_w: maximum total shrink per axis (0 = the full bbox).
    seed: int ``[2]``.
  Returns:
    float32 ``[B, img_h, img_w, 1]``, 1 = hole.
  """
  bboxes = tf.cast(bboxes, tf.int32)
  seeds = _split_seed(seed, 2)
  shape = tf.shape(bboxes)[:1]
  dh = tf.random.stateless_uniform(shape, seeds[0], minval=0, maxval=max_delta_h // 2 + 1,
                                   dtype=tf.int32)
  dw = tf.random.stateless_uniform(shape, seeds[1], minval=0, maxval=max_delta_w // 2 + 1,
                                   dtype=tf.int32)
  top = bboxes[:, 0] + dh
  bottom = bboxes[:, 0] + bboxes[:, 2] - dh
  left = bboxes[:, 1] + dw
  right = bboxes[:, 1] + bboxes[:, 3] - dw
  rows = tf.range(img_h, dtype=tf.int32)[None, :]
  cols = tf.range(img_w, dtype=tf.int32)[None, :]
  in_rows = (rows >= top[:, None]) & (rows < bottom[:, None])    # [B, H]
  in_cols = (cols >= left[:, None]) & (cols < right[:, None])    # [B, W]
  hole = in_rows[:, :, None] & in_cols[:, None, :]
  return tf.cast(hole, tf.float32)[..., None]


def local_patch(x, bboxes):
  """Crops each sample's bbox: ``x[b, top:top+h, left:left+w]`` (ARCHITECTURE.md §6.1).

  All boxes must have the same size (positions differ per sample); boxes must lie
  inside the image. Differentiable with respect to ``x``.

  Args:
    x: ``[B, H, W, C]`` (images or masks).
    bboxes: int32 ``[B, 4]`` (top, left, h, w).
  Returns:
    ``[B, h, w, C]``.
  """
  bboxes = tf.cast(bboxes, tf.int32)
  box_h, box_w = bboxes[0, 2], bboxes[0, 3]
  checks = [tf.debugging.assert_equal(bboxes[:, 2], box_h, message="bbox heights differ"),
            tf.debugging.assert_equal(bboxes[:, 3], box_w, message="bbox widths differ")]
  with tf.control_dependencies(checks):
    rows = bboxes[:, 0:1] + tf.range(box_h)[None, :]     # [B, h]
    cols = bboxes[:, 1:2] + tf.range(box_w)[None, :]     # [B, w]
  x = tf.gather(x, rows, axis=1, batch_dims=1)            # [B, h, W, C]
  return tf.gather(x, cols, axis=2, batch_dims=1)         # [B, h, w, C]


_FAR = 1e9  # stands in for +-infinity in interval arithmetic (avoids inf * 0)


def _solve_linear_range(a, lo, hi):
  """Interval of ``u`` with ``a * u`` in ``[lo, hi]``; ``a == 0`` gives all or nothing."""
  safe = tf.where(a == 0.0, 1.0, a)
  p, q = lo / safe, hi / safe
  left = tf.where(a > 0.0, p, q)
  right = tf.where(a > 0.0, q, p)
  zero_ok = (lo <= 0.0) & (hi >= 0.0)
  left = tf.where(a == 0.0, tf.where(zero_ok, -_FAR, _FAR), left)
  right = tf.where(a == 0.0, tf.where(zero_ok, _FAR, -_FAR), right)
  return left, right


def capsule_mask(x0, y0, x1, y1, radius, active, img_h, img_w):
  """Rasterises thick segments: pixels within ``radius`` of a segment (a capsule).

  Pixel (row i, column j) sits at (x = j, y = i); it is set when its distance to
  some active segment is ``<= radius``. Each capsule is convex, so it meets every
  pixel row in one interval, found in closed form from its two end discs and its
  middle band. The row intervals of all segments are added into a difference
  array (+1 at the first covered column, -1 after the last) and a cumulative sum
  along the row gives the coverage count, so the full-resolution cost does not
  grow with the number of segments.

  Args:
    x0, y0, x1, y1: float32 ``[B, N]`` segment end points (pixel units).
    radius: float32 ``[B, N]``, half the stroke width.
    active: bool ``[B, N]``; inactive segments draw nothing.
    img_h, img_w: output size.
  Returns:
    bool ``[B, img_h, img_w]``.
  """
  x0, y0, x1, y1, radius = (tf.cast(t, tf.float32)[:, :, None]
                            for t in (x0, y0, x1, y1, radius))
  active = active[:, :, None]
  rows = tf.range(img_h, dtype=tf.float32)                     # [H], broadcast to [B, N, H]
  lefts, rights, valid = [], [], []
  # End discs: |x - xc| <= sqrt(r^2 - (y - yc)^2).
  for xc, yc in ((x0, y0), (x1, y1)):
    half_sq = radius * radius - tf.square(rows - yc)
    half = tf.sqrt(tf.maximum(half_sq, 0.0))
    lefts.append(xc - half)
    rights.append(xc + half)
    valid.append(half_sq >= 0.0)
  # Middle band, with u = x - x0, e = y - y0, d = (dx, dy), L = |d|:
  # projection 0 <= u*dx + e*dy <= L^2 and offset |u*dy - e*dx| <= r*L.
  dx, dy = x1 - x0, y1 - y0
  length_sq = dx * dx + dy * dy
  length = tf.sqrt(length_sq)
  e = rows - y0
  l1, r1 = _solve_linear_range(dx, -e * dy, length_sq - e * dy)
  l2, r2 = _solve_linear_range(dy, e * dx - radius * length, e * dx + radius * length)
  lefts.append(x0 + tf.maximum(l1, l2))
  rights.append(x0 + tf.minimum(r1, r2))
  valid.append(length_sq > 0.0)
  left = tf.fill(tf.shape(e), _FAR)
  right = tf.fill(tf.shape(e), -_FAR)
  for lo, hi, ok in zip(lefts, rights, valid):
    ok = ok & (lo <= hi) & active
    left = tf.where(ok, tf.minimum(left, lo), left)
    right = tf.where(ok, tf.maximum(right, hi), right)
  # Covered columns [start, end) per (sample, segment, row), clipped to the image.
  width = tf.cast(img_w, tf.float32)
  start = tf.cast(tf.clip_by_value(tf.math.ceil(left), 0.0, width), tf.int64)
  end = tf.cast(tf.clip_by_value(tf.floor(right) + 1.0, 0.0, width), tf.int64)
  hit = tf.cast(start < end, tf.int32)
  batch = tf.shape(e, out_type=tf.int64)[0]
  h = tf.cast(img_h, tf.int64)
  stride = tf.cast(img_w, tf.int64) + 1
  row_base = ((tf.range(batch)[:, None, None] * h + tf.range(h)[None, None, :]) * stride)
  ids = tf.concat([tf.reshape(row_base + start, [-1]), tf.reshape(row_base + end, [-1])], 0)
  deltas = tf.concat([tf.reshape(hit, [-1]), -tf.reshape(hit, [-1])], 0)
  diff = tf.math.unsorted_segment_sum(deltas, ids, batch * h * stride)
  diff = tf.reshape(diff, tf.stack([batch, h, stride]))
  return tf.cumsum(diff, axis=2)[:, :, :-1] > 0


def brush_stroke_mask(batch, img_h, img_w, seed):
  """Free-form brush-stroke masks of DeepFill v2 (ARCHITECTURE.md §6.1), one per sample.

  Per sample: 1-3 strokes; each stroke starts at a uniform integer point and
  takes 4-11 steps. Step ``i`` has angle ``U(lo, hi)`` (odd ``i``) or
  ``2*pi - U(lo, hi)`` (even ``i``), with ``lo = 2pi/5 - U(0, 2pi/15)`` and
  ``hi = 2pi/5 + U(0, 2pi/15)`` drawn per stroke, and length
  ``clip(N(r, floor(r/2)), 0, 2r)``, ``r = sqrt(H^2 + W^2) / 8``; each new vertex
  is clipped to ``[0, W] x [0, H]`` and truncated to integers. The stroke is a
  polyline of width ``floor(U(12s, 40s))`` (at least 1) with discs of that
  diameter at the vertices, where ``s = sqrt(H^2 + W^2) / (256 sqrt 2)`` scales
  the release's 12..40 px (at 256x256) to other image sizes.

  Drawing is done in TF by ``capsule_mask``: a pixel (row y, col x) is a hole
  when its distance to some segment is at most width / 2. A segment with its end
  discs is exactly such a capsule, so this closely matches PIL's line + ellipse
  rasterisation (it is not pixel-identical).

  Returns:
    float32 ``[batch, img_h, img_w, 1]``, 1 = hole.
  """
  seeds = _split_seed(seed, 8)
  s, v = MAX_NUM_STROKES, MAX_NUM_VERTEX
  h = tf.cast(img_h, tf.float32)
  w = tf.cast(img_w, tf.float32)
  diagonal = tf.sqrt(h * h + w * w)
  radius = diagonal / 8.0
  scale = diagonal / REFERENCE_DIAGONAL
  b = tf.reshape(batch, [1])
  bs = tf.concat([b, [s]], 0)
  bsv = tf.concat([b, [s, v]], 0)

  num_strokes = tf.random.stateless_uniform(b, seeds[0], 1, s + 1, dtype=tf.int32)
  num_vertex = tf.random.stateless_uniform(bs, seeds[1], MIN_NUM_VERTEX, v + 1, dtype=tf.int32)
  jitter = tf.random.stateless_uniform(tf.concat([bs, [2]], 0), seeds[2], 0.0, ANGLE_RANGE)
  angle_lo = MEAN_ANGLE - jitter[..., 0]
  angle_hi = MEAN_ANGLE + jitter[..., 1]
  u = tf.random.stateless_uniform(bsv, seeds[3])
  angles = angle_lo[..., None] + u * (angle_hi - angle_lo)[..., None]
  even = tf.range(v) % 2 == 0
  angles = tf.where(even, 2.0 * math.pi - angles, angles)
  lengths = radius + tf.floor(radius / 2.0) * tf.random.stateless_normal(bsv, seeds[4])
  lengths = tf.clip_by_value(lengths, 0.0, 2.0 * radius)
  start = tf.random.stateless_uniform(tf.concat([bs, [2]], 0), seeds[5])
  x = tf.floor(start[..., 0] * w)
  y = tf.floor(start[..., 1] * h)
  widths = tf.floor(tf.random.stateless_uniform(bs, seeds[6], MIN_WIDTH * scale,
                                                MAX_WIDTH * scale))

  # Walk the polylines: vertices [B, S] per step, V + 1 vertices in all.
  step_x = lengths * tf.cos(angles)
  step_y = lengths * tf.sin(angles)
  xs, ys = [x], [y]
  for i in range(v):
    x = tf.floor(tf.clip_by_value(x + step_x[..., i], 0.0, w))
    y = tf.floor(tf.clip_by_value(y + step_y[..., i], 0.0, h))
    xs.append(x)
    ys.append(y)

  # Segment i of stroke j joins vertices i and i + 1; it exists when the sample
  # has more than j strokes and that stroke more than i steps.
  n = s * v
  on = ((tf.range(s)[None, :, None] < num_strokes[:, None, None])
        & (tf.range(v)[None, None, :] < num_vertex[:, :, None]))            # [B, S, V]
  xs = tf.stack(xs, axis=2)                                                # [B, S, V + 1]
  ys = tf.stack(ys, axis=2)
  radius = tf.broadcast_to(tf.maximum(widths, 1.0)[:, :, None] / 2.0, bsv)
  flat = lambda t: tf.reshape(t, tf.concat([b, [n]], 0))
  mask = capsule_mask(flat(xs[:, :, :-1]), flat(ys[:, :, :-1]), flat(xs[:, :, 1:]),
                      flat(ys[:, :, 1:]), flat(radius), flat(on), img_h, img_w)
  return tf.cast(mask, tf.float32)[..., None]


def random_mask(mode, batch, img_h, img_w, box_h, box_w, max_delta_h, max_delta_w,
                margin_v=0, margin_h=0, seed=None):
  """Training masks of the chosen kind, with the bboxes for the local critic crop.

  ``mode``: ``"box"`` (v1, ``bbox_to_mask``), ``"free_form"`` (v2 brush strokes
  only), ``"both"`` (union, the v2 training mask) or ``"mixed"`` (each sample a
  box hole or brush strokes, with equal odds). A bbox is drawn in every mode
  so that a local critic always has a crop; with ``"free_form"`` it is unrelated
  to the hole. Sub-seeds for bbox, shrink and strokes are split from ``seed``.

  Returns:
    (mask float32 ``[B, img_h, img_w, 1]`` with 1 = hole, bboxes int32 ``[B, 4]``).
  """
  if mode not in MASK_MODES:
    raise ValueError(f"mask mode must be one of {MASK_MODES}, got {mode!r}")
  seeds = _split_seed(seed, 3)
  bboxes = random_bbox(batch, img_h, img_w, box_h, box_w, margin_v, margin_h, seed=seeds[0])
  if mode == "free_form":
    return brush_stroke_mask(batch, img_h, img_w, seeds[2]), bboxes
  mask = bbox_to_mask(bboxes, img_h, img_w, max_delta_h, max_delta_w, seeds[1])
  if mode == "both":
    mask = tf.maximum(mask, brush_stroke_mask(batch, img_h, img_w, seeds[2]))
  elif mode == "mixed":
    strokes = brush_stroke_mask(batch, img_h, img_w, seeds[2])
    coin = tf.random.stateless_uniform(
        tf.stack([batch, 1, 1, 1]), tf.random.experimental.stateless_fold_in(seeds[1], 1))
    mask = tf.where(coin < 0.5, mask, strokes)
  return mask, bboxes
