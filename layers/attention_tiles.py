"""Contextual attention in query tiles with bounded memory (ARCHITECTURE.md §3.9).

Same result as ``contextual_attention.dense_attention`` (to float rounding), but no
``L × L`` score matrix is held: queries are processed ``tile × tile`` at a time,
optionally only inside a query box and only in tiles holding a needed query.

Per tile (downsampled grid ``h × w``, ``L = h·w``, row-major index ``p = y·w + x``):
* scores: one convolution of the background with the tile's query patches as
  filters (the release's convolution with the roles swapped);
* propagation: the two passes of §3.5 are index shifts applied to the query and the
  key together, ``T[a, c] = Σ_d S[a +row d, c +row d]`` then
  ``S2[p, q] = Σ_d T[p +col d, q +col d]`` (zero once a shift leaves ``[0, L)``).
  A tile gathers the score rows its shifts reach and shifts the key axis by
  slicing, in row-major key order for the first pass and column-major order for the
  second; it then keeps its keys in column-major order through softmax and paste;
* paste: four matmuls of the attention against the ``(h+1) × (w+1)`` grid of
  ``r × r`` blocks of ``b`` that the raw patches are made of, then an overlap-add.
"""
import tensorflow as tf


def matching_dtype(dtype):
  """The dtype of the score product for features of ``dtype``: ``dtype``, except float32 for
  float16, whose range the raw patch inner products can exceed (see contextual_attention)."""
  return tf.float32 if dtype == tf.float16 else dtype


def _shift_tables(h, w, fuse_k):
  """Index shifts of the two propagation passes on the flattened ``h × w`` grid.

  Returns int32 ``(rm, cm)``, both ``[fuse_k, h·w + 1]``; ``n = h·w`` is a zero slot
  (a shift that leaves ``[0, n)``, or the zero slot itself):
  ``rm[i, p] = p + d`` (row-major order) and ``cm[i, p]`` = the position ``d``
  steps after ``p`` in column-major order, for ``d = i − fuse_k // 2``.
  """
  n = h * w
  p = tf.range(n + 1)
  radius = fuse_k // 2
  rm, cm = [], []
  for d in range(-radius, radius + 1):
    q = p + d
    rm.append(tf.where((p < n) & (q >= 0) & (q < n), q, n))
    c = (p % w) * h + p // w + d                                      # column-major index
    c_ok = (p < n) & (c >= 0) & (c < n)
    c = tf.clip_by_value(c, 0, n - 1)
    cm.append(tf.where(c_ok, (c % h) * w + c // h, n))
  return tf.stack(rm), tf.stack(cm)


def _to_column_major(x, h, w):
  """``[B, P, h·w]`` row-major on the last axis -> column-major (``x·h + y``)."""
  shape = tf.shape(x)
  x = tf.reshape(x, tf.stack([shape[0], shape[1], h, w]))
  return tf.reshape(tf.transpose(x, [0, 1, 3, 2]), shape)


def _fold(parts, th, tw, rate, channels):
  """Sums pasted ``2r × 2r`` patches with stride ``r`` (a transposed conv).

  ``parts[2*ii + jj]``: ``[B, th, tw, r, r, C]``, block (ii, jj) of the patches of a
  ``th × tw`` block of positions (patch pixel (ii·r + ri, jj·r + rj)). Returns the
  canvas ``[B, (th+1)·r, (tw+1)·r, C]``; canvas pixel (0, 0) is output pixel
  ``(r·y0 − r//2, r·x0 − r//2)`` for a block starting at (y0, x0).
  """
  canvas = None
  for ii in range(2):
    for jj in range(2):
      block = parts[2 * ii + jj]
      b = tf.shape(block)[0]
      block = tf.transpose(block, [0, 1, 3, 2, 4, 5])                  # [B, th, r, tw, r, C]
      block = tf.reshape(block, [b, th * rate, tw * rate, channels])
      block = tf.pad(block, [[0, 0], [ii * rate, (1 - ii) * rate],
                             [jj * rate, (1 - jj) * rate], [0, 0]])
      canvas = block if canvas is None else canvas + block
  return canvas


def tiled_attention(fd, bd, b, valid, tile, query_box, query_mask=None, output_box=None,
                    ksize=3, rate=2, fuse_k=3, softmax_scale=10.0):
  """Contextual attention of the queries in ``query_box``, one tile at a time.

  Args:
    fd, bd, b, valid: as ``contextual_attention.dense_attention`` (downsampled
      foreground/background ``[B, h, w, C]``, full-resolution background, valid keys
      ``[B, h·w]``).
    tile: int32 scalar, the largest tile side (tiles of a box are made equal).
    query_box: int32 ``[4]`` (y0, y1, x0, x1) on the ``h × w`` grid; keys always
      cover the whole map.
    query_mask: optional bool ``[h, w]``: tiles without a True query are skipped.
    output_box: optional (y0, y1, x0, x1) window of ``y`` (feature pixels) to return.
  Returns:
    ``(y, best)``: y ``[B, r·h, r·w, C]`` (or the ``output_box`` window) in ``b``'s dtype, zero out of
    the box queries' reach; best int32 ``[B, h, w]`` flat argmax (0 outside the box).
  """
  shape = tf.shape(fd)
  bsz, h2, w2 = shape[0], shape[1], shape[2]
  channels = fd.shape[-1]
  n = h2 * w2
  kr = ksize // 2
  # Precision as in dense_attention: scores, softmax and argmax in float32, the matching
  # convolution in ``matching_dtype``, the paste in the features' dtype, its sum in float32.
  dtype = b.dtype
  match = matching_dtype(dtype)
  box = tf.ones([ksize, ksize, 1, 1], tf.float32)
  # 1 / max(‖B_q‖, 1e-4) of every background patch, without an [L, k²C] patch matrix.
  sq = tf.nn.conv2d(tf.reduce_sum(tf.square(tf.cast(bd, tf.float32)), axis=-1, keepdims=True),
                    box, 1, "SAME")
  inv_norm = 1.0 / tf.maximum(tf.sqrt(tf.reshape(sq, [bsz, n])), 1e-4)
  bd = tf.cast(bd, match)
  fd = tf.cast(fd, match)
  fd_pad = tf.reshape(tf.pad(fd, [[0, 0], [kr, kr], [kr, kr], [0, 0]]), [bsz, -1, channels])
  wp = w2 + 2 * kr
  # Raw 2r×2r patches with stride r = the (h2+1)×(w2+1) grid of r×r blocks of b
  # (SAME padding r//2 before, r - r//2 after).
  b_pad = tf.pad(b, [[0, 0], [rate // 2, rate - rate // 2], [rate // 2, rate - rate // 2],
                     [0, 0]])
  rm_table, cm_table = _shift_tables(h2, w2, fuse_k)                  # [fuse_k, L + 1]
  column_major = fuse_k > 1
  grid = tf.nn.space_to_depth(b_pad, rate)                            # [B, h2+1, w2+1, r²C]
  if column_major:
    grid = tf.transpose(grid, [0, 2, 1, 3])
  blocks = tf.reshape(grid, [bsz, (h2 + 1) * (w2 + 1), rate * rate * channels])
  valid = _to_column_major(valid[:, None, :], h2, w2) if column_major else valid[:, None, :]

  def scores_for(rows):
    """Raw scores S[rows, :] ``[B, U, L]`` for flat query indices ``rows`` (n = zero row).

    The query patches are the filters of a convolution over the background: no
    [L, k²C] matrix, and oneDNN's conv is about 2× faster on CPU than a matmul
    with the same FLOPs.
    """
    ok = rows < n
    ry = tf.where(ok, rows // w2, -kr - 1)
    rx = tf.where(ok, rows % w2, -kr - 1)
    # Query patches, (dy, dx, C) order; invalid rows read the zero corner of the padded grid.
    fq = tf.concat([tf.gather(fd_pad, tf.where(ok, (ry + kr + dy) * wp + (rx + kr + dx), 0),
                              axis=1)
                    for dy in range(-kr, kr + 1) for dx in range(-kr, kr + 1)], axis=-1)
    u = tf.shape(rows)[0]
    filters = tf.transpose(tf.reshape(fq, tf.stack([bsz, u, ksize, ksize, channels])),
                           [0, 2, 3, 4, 1])                           # [B, k, k, C, U]

    def one_sample(args):
      return tf.reshape(tf.nn.conv2d(args[0][None], args[1], 1, "SAME"), tf.stack([n, u]))

    scores = tf.map_fn(one_sample, (bd, filters),
                       fn_output_signature=tf.TensorSpec([None, None], match))
    return tf.cast(tf.transpose(scores, [0, 2, 1]), tf.float32) * inv_norm[:, None, :]

  def fused_scores(queries):
    """Propagated scores ``[B, P, L]`` of a query subset, keys in column-major order."""
    p = tf.shape(queries)[0]
    radius = fuse_k // 2
    rows2, inv2 = tf.unique(tf.reshape(tf.gather(cm_table, queries, axis=1), [-1]))
    rows1, inv1 = tf.unique(tf.reshape(tf.gather(rm_table, rows2, axis=1), [-1]))
    inv1 = tf.reshape(inv1, tf.stack([fuse_k, tf.shape(rows2)[0]]))
    inv2 = tf.reshape(inv2, tf.stack([fuse_k, p]))
    pad = [[0, 0], [0, 0], [radius, radius]]
    scores = tf.pad(scores_for(rows1), pad)
    t = tf.add_n([tf.gather(scores, inv1[i], axis=1)[:, :, i:i + n] for i in range(fuse_k)])
    t = tf.pad(_to_column_major(t, h2, w2), pad)
    return tf.add_n([tf.gather(t, inv2[i], axis=1)[:, :, i:i + n] for i in range(fuse_k)])

  def attend(queries, th, tw):
    """Attention of a th×tw block of queries -> (canvas, argmax [B, P])."""
    p = tf.shape(queries)[0]
    scores = fused_scores(queries) if column_major else scores_for(queries)
    attn = tf.nn.softmax(scores * valid * softmax_scale, axis=-1) * valid
    best = tf.argmax(attn, axis=-1, output_type=tf.int32)
    attn = tf.cast(attn, dtype)
    if column_major:
      best = (best % h2) * w2 + best // h2
    # Paste: block (ii, jj) of every patch = attention shifted by (ii, jj) on the block grid.
    rows_, cols_ = (w2, h2) if column_major else (h2, w2)
    att_grid = tf.reshape(attn, tf.stack([bsz, p, rows_, cols_]))
    parts = []
    for ii in range(2):
      for jj in range(2):
        s_row, s_col = (jj, ii) if column_major else (ii, jj)
        shifted = tf.pad(att_grid, [[0, 0], [0, 0], [s_row, 1 - s_row], [s_col, 1 - s_col]])
        shifted = tf.reshape(shifted, tf.stack([bsz, p, (h2 + 1) * (w2 + 1)]))
        parts.append(tf.reshape(tf.cast(tf.matmul(shifted, blocks), tf.float32),
                                tf.stack([bsz, th, tw, rate, rate, channels])))
    return _fold(parts, th, tw, rate, channels), best

  query_box = tf.cast(query_box, tf.int32)
  canvas, best = _over_tiles(attend, bsz, h2, w2, rate, channels, tf.cast(tile, tf.int32),
                             query_box, query_mask)
  y = _place(canvas, query_box, rate, h2 * rate, w2 * rate, output_box)
  return tf.cast(y, dtype), best


def _place(canvas, query_box, rate, height, width, output_box=None):
  """Puts a query box's canvas (see ``_over_tiles``) into the full [B, H, W, C] map, /4.

  With ``output_box`` (y0, y1, x0, x1) only that window of the map is returned.
  """
  pad_lo = rate // 2
  # Canvas pixel (0, 0) is output pixel (r·y_lo − r//2, r·x_lo − r//2); crop the outside.
  top = rate * query_box[0] - pad_lo
  left = rate * query_box[2] - pad_lo
  ch, cw = tf.shape(canvas)[1], tf.shape(canvas)[2]
  if output_box is not None:
    rows = tf.stack([output_box[0] - top, output_box[1] - top])
    cols = tf.stack([output_box[2] - left, output_box[3] - left])
    pads = tf.stack([[0, 0], [tf.maximum(-rows[0], 0), tf.maximum(rows[1] - ch, 0)],
                     [tf.maximum(-cols[0], 0), tf.maximum(cols[1] - cw, 0)], [0, 0]])
    canvas = tf.pad(canvas, pads)
    r0, c0 = rows[0] + pads[1, 0], cols[0] + pads[2, 0]
    return canvas[:, r0:r0 + rows[1] - rows[0], c0:c0 + cols[1] - cols[0]] / 4.0
  canvas = canvas[:, tf.maximum(-top, 0):tf.minimum(ch, height - top),
                  tf.maximum(-left, 0):tf.minimum(cw, width - left)] / 4.0
  top, left = tf.maximum(top, 0), tf.maximum(left, 0)
  return tf.pad(canvas, [[0, 0], [top, height - top - tf.shape(canvas)[1]],
                         [left, width - left - tf.shape(canvas)[2]], [0, 0]])


def _over_tiles(attend, bsz, h2, w2, rate, channels, tile, query_box, needed=None):
  """Runs ``attend`` over ``tile × tile`` blocks of the queries in ``query_box``.

  ``needed``: optional bool ``[h2, w2]``; tiles without a True position are skipped
  (their queries contribute nothing to the canvas and their argmax stays 0).

  Returns ``(canvas, best)``: the pasted patches of the box's queries, canvas
  ``[B, (qh+1)·r, (qw+1)·r, C]`` whose pixel (0, 0) is output pixel
  ``(r·y_lo − r//2, r·x_lo − r//2)``, and the argmax ``[B, h2, w2]`` (0 outside the box).
  """
  y_lo, y_hi = query_box[0], query_box[1]
  x_lo, x_hi = query_box[2], query_box[3]
  nty = tf.maximum((y_hi - y_lo + tile - 1) // tile, 0)
  ntx = tf.maximum((x_hi - x_lo + tile - 1) // tile, 0)
  # Equal tiles per axis (74 rows with tile 35 -> 25, 25, 24 rather than 35, 35, 4).
  tile_y = (y_hi - y_lo + tf.maximum(nty, 1) - 1) // tf.maximum(nty, 1)
  tile_x = (x_hi - x_lo + tf.maximum(ntx, 1) - 1) // tf.maximum(ntx, 1)
  # Accumulators are [rows, cols, B, C] so scatter indices are (row, col).
  out = tf.zeros(tf.stack([(y_hi - y_lo + 1) * rate, (x_hi - x_lo + 1) * rate, bsz, channels]),
                 tf.float32)
  best_all = tf.zeros(tf.stack([h2, w2, bsz]), tf.int32)
  if needed is None:
    todo = tf.range(nty * ntx)
  else:
    # Tile occupancy: pad the box's part of ``needed`` to whole tiles, reduce per tile.
    part = tf.cast(needed, tf.bool)[y_lo:y_hi, x_lo:x_hi]
    part = tf.pad(part, [[0, nty * tile_y - (y_hi - y_lo)], [0, ntx * tile_x - (x_hi - x_lo)]])
    occupied = tf.reduce_any(tf.reshape(part, tf.stack([nty, tile_y, ntx, tile_x])), axis=[1, 3])
    todo = tf.cast(tf.where(tf.reshape(occupied, [-1]))[:, 0], tf.int32)

  def body(k, out, best_all):
    i = todo[k]
    y0 = y_lo + (i // ntx) * tile_y
    x0 = x_lo + (i % ntx) * tile_x
    th = tf.minimum(tile_y, y_hi - y0)
    tw = tf.minimum(tile_x, x_hi - x0)
    ys = y0 + tf.range(th)
    xs = x0 + tf.range(tw)
    grid = tf.reshape(tf.stack(tf.meshgrid(ys, xs, indexing="ij"), axis=-1), [-1, 2])
    queries = grid[:, 0] * w2 + grid[:, 1]
    canvas, best = attend(queries, th, tw)                            # [B, (th+1)r, (tw+1)r, C]
    cy = rate * (y0 - y_lo) + tf.range((th + 1) * rate)
    cx = rate * (x0 - x_lo) + tf.range((tw + 1) * rate)
    cgrid = tf.reshape(tf.stack(tf.meshgrid(cy, cx, indexing="ij"), axis=-1), [-1, 2])
    updates = tf.reshape(tf.transpose(canvas, [1, 2, 0, 3]), [-1, bsz, channels])
    out = tf.tensor_scatter_nd_add(out, cgrid, updates)
    best_all = tf.tensor_scatter_nd_update(best_all, grid, tf.transpose(best))
    return k + 1, out, best_all

  # One tile at a time: a tile's scores do not depend on the previous tile, so TensorFlow's
  # default (10 iterations in flight) may hold several tiles' working memory at once.
  _, out, best_all = tf.while_loop(
      lambda k, *_: k < tf.size(todo), body, [tf.constant(0), out, best_all],
      parallel_iterations=1)
  return tf.transpose(out, [2, 0, 1, 3]), tf.transpose(best_all, [2, 0, 1])
