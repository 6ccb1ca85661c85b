"""Contextual attention (Yu et al. 2018, §3.2; the v1 release's exact behaviour, ARCHITECTURE.md §3).

Differences from the release, none of which change results for batch 1:
* dynamic batch, height and width; one mask **per sample** (the release used
  sample 0's mask for the whole batch);
* queries (foreground positions) can be processed in tiles, so no
  ``L × L`` score matrix is ever held for large images (``tile_size``).

Math (per sample, downsampled grid ``h × w``, ``L = h·w``, row-major index
``p = y·w + x``). With ``F_p`` the zero-padded k×k foreground patch at ``p`` and
``B̂_q`` the background patch at ``q`` divided by ``max(‖B_q‖, 1e-4)``, the raw
scores are ``S[p, q] = ⟨F_p, B̂_q⟩``. The release's propagation ("fuse") convolves
the ``L × L`` score image with an identity kernel along the row-major diagonal,
then again along the column-major diagonal. Both are index shifts applied to
``p`` and ``q`` together:

    T[a, b]  = Σ_d S[rm(a, d), rm(b, d)]      rm(p, d) = p + d (row-major)
    S2[p, q] = Σ_d T[cm(p, d), cm(q, d)]      cm(p, d) = d steps on in column-major order

where a term is zero as soon as a shift leaves ``[0, L)`` (the zero padding of
the release's conv). The dense path (all queries, small maps) does this on the
whole score matrix with shifted slices, like the release. A query tile needs only
the score rows its shifts reach: it gathers those rows (contiguous copies) and
shifts the key axis by slicing, in row-major key order for the first pass and
column-major key order for the second; the tile then keeps its keys in
column-major order through the softmax and the paste.
"""
import keras
import tensorflow as tf

from layers import resize


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


@keras.saving.register_keras_serializable(package="deepfill")
class ContextualAttention(keras.layers.Layer):
  """Contextual attention layer (ARCHITECTURE.md §3); no trainable weights.

  Call ``y, offsets = layer((f, b, mask))`` (or ``(f, b)`` for no mask):
    f, b: float32 ``[B, H, W, C]`` foreground / background features, same size,
      H and W divisible by ``rate``.
    mask: float32 ``[B, H, W, 1]``, 1 = hole, one per sample, same size as f.
  Returns:
    y: ``[B, H, W, C]`` features rebuilt from background patches.
    offsets: int32 ``[B, H/rate, W/rate, 2]``: (dy, dx) from each position to
      its best-matching valid background patch on the downsampled grid
      (``argmax`` of the attention; 0-index tie-break as ``tf.argmax``).
  ``tile_size``: None = all queries at once (the release's dense computation);
  an int (or int32 scalar tensor) ``t`` = queries in equal tiles of at most ``t × t`` on the
  downsampled grid, same result, working memory a few copies of ``B·(t+2)²·L`` floats instead
  of ``B·L²``.
  """

  def __init__(self, ksize=3, stride=1, rate=2, fuse_k=3, softmax_scale=10.0,
               fuse=True, tile_size=None, **kwargs):
    super().__init__(**kwargs)
    if stride != 1:
      raise ValueError("only stride=1 is supported (as used by DeepFill)")
    if ksize % 2 != 1 or fuse_k % 2 != 1:
      raise ValueError("ksize and fuse_k must be odd")
    self.ksize = int(ksize)
    self.stride = int(stride)
    self.rate = int(rate)
    self.fuse_k = int(fuse_k)
    self.softmax_scale = float(softmax_scale)
    self.fuse = bool(fuse)
    self.tile_size = None if tile_size is None else int(tile_size)

  def get_config(self):
    config = super().get_config()
    config.update(ksize=self.ksize, stride=self.stride, rate=self.rate, fuse_k=self.fuse_k,
                  softmax_scale=self.softmax_scale, fuse=self.fuse, tile_size=self.tile_size)
    return config

  def compute_output_shape(self, input_shape):
    fshape = input_shape[0]
    b, h, w, _ = fshape
    r = self.rate
    return (tuple(fshape), (b, None if h is None else h // r, None if w is None else w // r, 2))

  def call(self, inputs, tile_size=None, query_box=None, output_box=None, query_mask=None):
    f, b = inputs[0], inputs[1]
    mask = inputs[2] if len(inputs) > 2 else None
    tile = self.tile_size if tile_size is None else tile_size
    return contextual_attention(f, b, mask, ksize=self.ksize, rate=self.rate,
                                fuse_k=self.fuse_k if self.fuse else 1,
                                softmax_scale=self.softmax_scale, tile_size=tile,
                                query_box=query_box, output_box=output_box,
                                query_mask=query_mask)


def contextual_attention(f, b, mask=None, ksize=3, rate=2, fuse_k=3, softmax_scale=10.0,
                         tile_size=None, query_box=None, output_box=None, query_mask=None):
  """Functional form of :class:`ContextualAttention` (``fuse_k=1`` = no fuse).

  ``query_box``: optional int32 ``[4]`` = (y0, y1, x0, x1) on the downsampled grid;
  only queries inside it are computed (tiled mode), the output elsewhere is 0 and
  the offsets there are meaningless. Keys always cover the whole map.
  ``query_mask``: optional bool ``[h2, w2]`` (shared by the batch), with ``query_box``:
  only tiles holding at least one True query are computed (scattered holes).
  ``output_box``: with ``query_box``, return only this (y0, y1, x0, x1) window of ``y``
  (feature-map pixels), so no full-size output is allocated.
  """
  f = tf.convert_to_tensor(f, tf.float32)
  b = tf.convert_to_tensor(b, tf.float32)
  channels = f.shape[-1]
  if channels is None:
    raise ValueError("the channel dimension of f must be static")
  shape = tf.shape(f)
  bsz, height, width = shape[0], shape[1], shape[2]
  check = tf.debugging.assert_equal(
      tf.stack([height % rate, width % rate]), 0,
      message="contextual attention needs H and W divisible by rate")
  with tf.control_dependencies([check] if check is not None else []):  # None when eager
    f, b = tf.identity(f), tf.identity(b)
  h2, w2 = height // rate, width // rate
  n = h2 * w2
  kr = ksize // 2

  # Step 2: downsample f, b and the mask (nearest, align_corners).
  fd = resize.resize_nearest_align_corners(f, [h2, w2])
  bd = resize.resize_nearest_align_corners(b, [h2, w2])
  box = tf.ones([ksize, ksize, 1, 1], tf.float32)
  if mask is None:
    mm = tf.ones([bsz, n], tf.float32)
  else:
    md = resize.resize_nearest_align_corners(tf.cast(mask, tf.float32), [h2, w2])
    # Step 4: a background patch is valid iff its k×k window holds no hole pixel.
    holes = tf.nn.conv2d(md, box, 1, "SAME")
    mm = tf.reshape(tf.cast(tf.equal(holes, 0.0), tf.float32), [bsz, n])
  # Step 3: k×k patches, never materialised: <F_p, B_q> = Σ_d fd[p+d]·bd[q+d]
  # (zero padded). Background patches are divided by max(‖B_q‖, 1e-4).
  sq = tf.nn.conv2d(tf.reduce_sum(tf.square(bd), axis=-1, keepdims=True), box, 1, "SAME")
  inv_norm = 1.0 / tf.maximum(tf.sqrt(tf.reshape(sq, [bsz, n])), 1e-4)
  fd_pad = tf.reshape(tf.pad(fd, [[0, 0], [kr, kr], [kr, kr], [0, 0]]), [bsz, -1, channels])
  wp = w2 + 2 * kr
  # Step 1 (reconstruction source): raw 2r×2r patches with stride r, stored as the
  # (h2+1)×(w2+1) grid of r×r blocks of b (SAME padding r//2 before, r - r//2 after).
  b_pad = tf.pad(b, [[0, 0], [rate // 2, rate - rate // 2], [rate // 2, rate - rate // 2],
                     [0, 0]])
  rm_table, cm_table = _shift_tables(h2, w2, fuse_k)                  # [fuse_k, L + 1]
  kdim = ksize * ksize * channels

  def raw_blocks(column_major):
    """The block grid as ``[B, cells, r²C]`` ((ry, rx, C) per cell), cells in row- or
    column-major order."""
    grid = tf.nn.space_to_depth(b_pad, rate)                          # [B, h2+1, w2+1, r²C]
    if column_major:
      grid = tf.transpose(grid, [0, 2, 1, 3])
    return tf.reshape(grid, [bsz, (h2 + 1) * (w2 + 1), rate * rate * channels])

  def key_patch_matrix():
    """Key patches as one [B, L, k²C] matrix (dense path only, where L is small)."""
    return tf.reshape(tf.image.extract_patches(
        bd, [1, ksize, ksize, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME"), [bsz, n, kdim])

  def scores_for(rows, key_patches=None):
    """Raw scores S[rows, :] ``[B, U, L]`` for flat query indices ``rows`` (n = zero row).

    With ``key_patches`` (dense path) one matmul with K = k²C. Otherwise the query
    patches are the filters of a convolution over the background (the release's
    convolution with the roles swapped): no [L, k²C] matrix, and oneDNN's conv is
    about 2× faster on CPU than a matmul with the same FLOPs.
    """
    valid = rows < n
    ry = tf.where(valid, rows // w2, -kr - 1)
    rx = tf.where(valid, rows % w2, -kr - 1)
    # Query patches, (dy, dx, C) order like extract_patches; invalid rows read the
    # zero corner (0, 0) of the padded grid.
    fq = tf.concat([tf.gather(fd_pad, tf.where(valid, (ry + kr + dy) * wp + (rx + kr + dx), 0),
                              axis=1)
                    for dy in range(-kr, kr + 1) for dx in range(-kr, kr + 1)], axis=-1)
    if key_patches is not None:
      scores = tf.matmul(fq, key_patches, transpose_b=True)
    else:
      u = tf.shape(rows)[0]
      filters = tf.transpose(tf.reshape(fq, tf.stack([bsz, u, ksize, ksize, channels])),
                             [0, 2, 3, 4, 1])                         # [B, k, k, C, U]

      def one_sample(args):
        return tf.reshape(tf.nn.conv2d(args[0][None], args[1], 1, "SAME"), tf.stack([n, u]))

      scores = tf.map_fn(one_sample, (bd, filters),
                         fn_output_signature=tf.TensorSpec([None, None], tf.float32))
      scores = tf.transpose(scores, [0, 2, 1])
    return scores * inv_norm[:, None, :]

  def fuse_subset(queries):
    """Fused scores ``[B, P, L]`` of any query subset, **keys in column-major order**.

    The two passes of the release, T[a, b] = Σ_d S[rm(a, d), rm(b, d)] and then
    S2[p, q] = Σ_d T[cm(p, d), cm(q, d)]: query rows are gathered (contiguous
    copies), key shifts are slices of the key axis, in row-major order for the
    first pass and column-major order for the second.
    """
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

  def fuse_all():
    """Fused scores [B, L, L] of every query: the release's two diagonal passes
    (row-major, then column-major order), done with shifted slices."""
    scores = scores_for(tf.range(n), key_patch_matrix())
    radius = fuse_k // 2

    def diagonal(x):
      padded = tf.pad(x, [[0, 0], [radius, radius], [radius, radius]])
      return tf.add_n([padded[:, radius + d:radius + d + n, radius + d:radius + d + n]
                       for d in range(-radius, radius + 1)])

    def to_column_major(x, rows_, cols_):
      x = tf.reshape(x, [bsz, rows_, cols_, rows_, cols_])
      return tf.reshape(tf.transpose(x, [0, 2, 1, 4, 3]), [bsz, n, n])

    fused = to_column_major(diagonal(scores), h2, w2)
    return to_column_major(diagonal(fused), w2, h2)

  def attend(queries, th, tw, blocks, all_queries=False):
    """Attention for a th×tw block of queries -> (canvas, argmax [B, P]).

    ``blocks``: ``raw_blocks(column_major)`` matching the key order in use
    (column-major exactly for tiles with a fuse).
    """
    p = tf.shape(queries)[0]
    column_major = fuse_k > 1 and not all_queries
    if column_major:
      fused = fuse_subset(queries)
      valid = _to_column_major(mm[:, None, :], h2, w2)
    else:
      fused = fuse_all() if all_queries and fuse_k > 1 else scores_for(queries)
      valid = mm[:, None, :]
    attn = tf.nn.softmax(fused * valid * softmax_scale, axis=-1) * valid
    best = tf.argmax(attn, axis=-1, output_type=tf.int32)
    if column_major:
      best = (best % h2) * w2 + best // h2
    # Step 5.6: paste raw patches weighted by attention (a transposed conv):
    # block (ii, jj) of every patch = attention shifted by (ii, jj) on the block grid.
    rows_, cols_ = (w2, h2) if column_major else (h2, w2)
    grid = tf.reshape(attn, tf.stack([bsz, p, rows_, cols_]))
    parts = []
    for ii in range(2):
      for jj in range(2):
        s_row, s_col = (jj, ii) if column_major else (ii, jj)
        shifted = tf.pad(grid, [[0, 0], [0, 0], [s_row, 1 - s_row], [s_col, 1 - s_col]])
        shifted = tf.reshape(shifted, tf.stack([bsz, p, (h2 + 1) * (w2 + 1)]))
        parts.append(tf.reshape(tf.matmul(shifted, blocks),
                                tf.stack([bsz, th, tw, rate, rate, channels])))
    return _fold(parts, th, tw, rate, channels), best

  pad_lo = rate // 2
  def dense():
    canvas, best = attend(tf.range(n), h2, w2, raw_blocks(False), all_queries=True)
    return (canvas[:, pad_lo:pad_lo + height, pad_lo:pad_lo + width, :] / 4.0,
            tf.reshape(best, [bsz, h2, w2]))

  def tiled(tile, box, needed=None):
    blocks = raw_blocks(fuse_k > 1)
    return _tiled(lambda q, th, tw: attend(q, th, tw, blocks), bsz, h2, w2, rate, channels,
                  tile, box, needed)

  if tile_size is None and query_box is None:
    y, best = dense()
  elif query_box is None:
    # One tile covering every query is the dense computation (faster fuse).
    tile = tf.cast(tile_size, tf.int32)
    full_box = tf.stack([0, h2, 0, w2])
    y, best = tf.cond(tile >= tf.maximum(h2, w2), dense,
                      lambda: _place(*tiled(tile, full_box), full_box, rate, height, width))
  else:
    query_box = tf.cast(query_box, tf.int32)
    tile = tf.maximum(h2, w2) if tile_size is None else tf.cast(tile_size, tf.int32)
    y, best = _place(*tiled(tile, query_box, query_mask), query_box, rate, height, width,
                     output_box)
  if output_box is None:
    y = tf.ensure_shape(y, f.shape)
  gy = tf.range(h2)[None, :, None]
  gx = tf.range(w2)[None, None, :]
  offsets = tf.stack([best // w2 - gy, best % w2 - gx], axis=-1)
  return y, offsets


def _place(canvas, best, query_box, rate, height, width, output_box=None):
  """Puts a query box's canvas (see ``_tiled``) into the full [B, H, W, C] map, /4.

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
    window = canvas[:, r0:r0 + rows[1] - rows[0], c0:c0 + cols[1] - cols[0]] / 4.0
    return window, best
  canvas = canvas[:, tf.maximum(-top, 0):tf.minimum(ch, height - top),
                  tf.maximum(-left, 0):tf.minimum(cw, width - left)] / 4.0
  top, left = tf.maximum(top, 0), tf.maximum(left, 0)
  y = tf.pad(canvas, [[0, 0], [top, height - top - tf.shape(canvas)[1]],
                      [left, width - left - tf.shape(canvas)[2]], [0, 0]])
  return y, best


def _tiled(attend, bsz, h2, w2, rate, channels, tile, query_box, needed=None):
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

  _, out, best_all = tf.while_loop(
      lambda k, *_: k < tf.size(todo), body, [tf.constant(0), out, best_all])
  return tf.transpose(out, [2, 0, 1, 3]), tf.transpose(best_all, [2, 0, 1])
