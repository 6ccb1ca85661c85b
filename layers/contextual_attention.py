"""Contextual attention (Yu et al. 2018, §3.2) as the v1 release computes it (ARCHITECTURE.md §3).

``dense_attention`` follows the paper's steps on the whole ``L × L`` score matrix;
``layers/attention_tiles.py`` gives the same result in query tiles with bounded
memory, optionally only inside a query box (ARCHITECTURE.md §3.9). Unlike the
release: dynamic batch, height and width, and one mask per sample (same results
for batch 1).

Precision: the layer computes in the dtype of ``f`` (its dtype policy's compute dtype when
called as a layer). The score matrix, the propagation, the softmax and the argmax always run
in float32: the softmax of scores scaled by 10 is where bfloat16's 8-bit mantissa would move
the attention (and the offsets) most. The matching product runs in the compute dtype except
for float16, whose range (65504) the raw inner products of ``9·C``-long feature patches can
exceed before their division by the key norms; the paste runs in the compute dtype and sums
its four overlapping parts in float32.
"""
import keras
import tensorflow as tf

from layers import attention_tiles
from layers import resize

# Attention weights below this count as zero in the dense path (see dense_attention).
NEGLIGIBLE_WEIGHT = 1e-20
# Dtypes the layer computes in (the compute dtypes of Keras' float32 and mixed policies).
COMPUTE_DTYPES = (tf.float32, tf.bfloat16, tf.float16)


@keras.saving.register_keras_serializable(package="deepfill")
class ContextualAttention(keras.layers.Layer):
  """Contextual attention layer (ARCHITECTURE.md §3); no trainable weights.

  Call ``y, offsets = layer((f, b, mask))`` (or ``(f, b)`` for no mask):
    f, b: ``[B, H, W, C]`` foreground / background features, same size,
      H and W divisible by ``rate`` (cast to the policy's compute dtype).
    mask: ``[B, H, W, 1]``, 1 = hole, one per sample, same size as f.
  Returns:
    y: ``[B, H, W, C]`` features rebuilt from background patches, in the compute dtype.
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

  def call(self, inputs, tile_size=None, query_box=None, output_box=None, query_mask=None,
           tiled=None):
    f, b = inputs[0], inputs[1]
    mask = inputs[2] if len(inputs) > 2 else None
    tile = self.tile_size if tile_size is None else tile_size
    return contextual_attention(f, b, mask, ksize=self.ksize, rate=self.rate,
                                fuse_k=self.fuse_k if self.fuse else 1,
                                softmax_scale=self.softmax_scale, tile_size=tile,
                                query_box=query_box, output_box=output_box,
                                query_mask=query_mask, tiled=tiled)


def contextual_attention(f, b, mask=None, ksize=3, rate=2, fuse_k=3, softmax_scale=10.0,
                         tile_size=None, query_box=None, output_box=None, query_mask=None,
                         tiled=None):
  """Functional form of :class:`ContextualAttention` (``fuse_k=1`` = no fuse).

  ``query_box``: optional int32 ``[4]`` = (y0, y1, x0, x1) on the downsampled grid;
  only queries inside it are computed (tiled mode), the output elsewhere is 0 and
  the offsets there are meaningless. Keys always cover the whole map.
  ``query_mask``: optional bool ``[H/rate, W/rate]`` (shared by the batch), with ``query_box``:
  only tiles holding at least one True query are computed (scattered holes).
  ``output_box``: with ``query_box``, return only this (y0, y1, x0, x1) window of ``y``
  (feature-map pixels), so no full-size output is allocated.
  ``tiled``: with ``tile_size`` and no ``query_box``, the caller's answer (Python bool) to
  "is the tile smaller than the map?", which the graph otherwise tests (tracing both paths).
  """
  f = tf.convert_to_tensor(f)
  if f.dtype not in COMPUTE_DTYPES:
    f = tf.cast(f, tf.float32)
  b = tf.cast(b, f.dtype)
  if f.shape[-1] is None:
    raise ValueError("the channel dimension of f must be static")
  shape = tf.shape(f)
  check = tf.debugging.assert_equal(
      tf.stack([shape[1] % rate, shape[2] % rate]), 0,
      message="contextual attention needs H and W divisible by rate")
  with tf.control_dependencies([check] if check is not None else []):  # None when eager
    f, b = tf.identity(f), tf.identity(b)
  h, w = shape[1] // rate, shape[2] // rate
  # Matching happens on a grid downsampled by the rate (nearest, align_corners).
  fd = resize.resize_nearest_align_corners(f, [h, w])
  bd = resize.resize_nearest_align_corners(b, [h, w])
  valid = valid_keys(mask, shape[0], h, w, ksize)
  settings = dict(ksize=ksize, rate=rate, fuse_k=fuse_k, softmax_scale=softmax_scale)

  def dense():
    return dense_attention(fd, bd, b, valid, **settings)

  def in_tiles(tile, box):
    return attention_tiles.tiled_attention(fd, bd, b, valid, tile, box, query_mask, output_box,
                                           **settings)

  def tiled_whole(tile):
    return in_tiles(tile, tf.stack([0, h, 0, w]))

  if query_box is not None:
    y, best = in_tiles(tf.maximum(h, w) if tile_size is None else tile_size, query_box)
  elif tile_size is not None and tiled is not None:
    y, best = tiled_whole(tile_size) if tiled else dense()
  elif tile_size is not None:
    # One tile covering every query is the dense computation (faster propagation).
    y, best = tf.cond(tf.cast(tile_size, tf.int32) >= tf.maximum(h, w), dense,
                      lambda: tiled_whole(tile_size))
  else:
    y, best = dense()
  if output_box is None:
    y = tf.ensure_shape(y, f.shape)
  return y, tf.stack([best // w - tf.range(h)[None, :, None],
                      best % w - tf.range(w)[None, None, :]], axis=-1)


def valid_keys(mask, batch, h, w, ksize=3):
  """float32 ``[B, h·w]``: 1 where a background patch holds no hole pixel (§3.3).

  ``mask``: ``[B, H, W, 1]`` (1 = hole) or None (every patch valid). Zero padding
  at the map border counts as known.
  """
  if mask is None:
    return tf.ones(tf.stack([batch, h * w]), tf.float32)
  md = resize.resize_nearest_align_corners(tf.cast(mask, tf.float32), [h, w])
  holes = tf.nn.conv2d(md, tf.ones([ksize, ksize, 1, 1]), 1, "SAME")
  return tf.reshape(tf.cast(tf.equal(holes, 0.0), tf.float32), tf.stack([batch, h * w]))


def patch_rows(x, ksize=3):
  """``[B, h, w, C]`` -> ``[B, h·w, k²C]``: the zero-padded k×k neighbourhood of every
  position in ``(dy, dx, c)`` order, the values of ``tf.image.extract_patches`` (SAME).

  Built from ``k²`` shifted slices, which graph converters (tf2onnx, TFLite) map to
  built-in ops for any height and width; they have no ``ExtractImagePatches`` of unknown
  spatial size.
  """
  shape = tf.shape(x)
  bsz, h, w = shape[0], shape[1], shape[2]
  r = ksize // 2
  padded = tf.pad(x, [[0, 0], [r, r], [r, r], [0, 0]])
  parts = [padded[:, dy:dy + h, dx:dx + w] for dy in range(ksize) for dx in range(ksize)]
  depth = ksize * ksize * x.shape[-1]
  return tf.reshape(tf.concat(parts, axis=-1), tf.stack([bsz, h * w, depth]))


def dense_attention(fd, bd, b, valid, ksize=3, rate=2, fuse_k=3, softmax_scale=10.0):
  """Every query at once, in the paper's steps (ARCHITECTURE.md §3.2–3.7).

  Args:
    fd, bd: ``[B, h, w, C]`` foreground / background on the matching grid.
    b: ``[B, r·h, r·w, C]`` full-resolution background (pasted from), same dtype.
    valid: float32 ``[B, h·w]``, 1 = usable background patch (:func:`valid_keys`).
  Returns:
    ``(y [B, r·h, r·w, C], best int32 [B, h, w])``: the pasted features (dtype of ``b``)
    and the row-major index of each query's highest-attention patch.
  """
  shape = tf.shape(fd)
  bsz, h, w = shape[0], shape[1], shape[2]
  n = h * w
  channels = fd.shape[-1]
  dtype, match = b.dtype, attention_tiles.matching_dtype(b.dtype)
  # 1. Background patches as filters, and their L2 norms (cosine similarity, §3.4).
  keys = tf.cast(patch_rows(bd, ksize), match)
  norms = tf.maximum(tf.norm(tf.cast(keys, tf.float32), axis=-1), 1e-4)  # [B, L]
  # 2. Match: convolving the foreground with the normalised filters is this product.
  scores = tf.matmul(tf.cast(patch_rows(fd, ksize), match), keys, transpose_b=True)
  scores = tf.cast(scores, tf.float32) / norms[:, None, :]
  # 3. Propagate along both diagonals of the score matrix (§3.5).
  if fuse_k > 1:
    scores = propagate(scores, h, w, fuse_k)
  # 4. Scaled softmax over the keys; invalid keys get logit 0, then weight 0 (§3.6).
  valid = valid[:, None, :]
  attn = tf.nn.softmax(scores * valid * softmax_scale, axis=-1) * valid
  # Negligible weights as zero (together < L·1e-20 of a pixel's weight of 1): their products
  # with features are subnormal, which TensorFlow's CPU kernels flush to zero but ONNX Runtime
  # computes, by default, many times slower (bench/WEB_RESULTS.md, the note on subnormals).
  attn = tf.where(attn < NEGLIGIBLE_WEIGHT, 0.0, attn)
  best = tf.argmax(attn, axis=-1, output_type=tf.int32)
  attn = tf.cast(attn, dtype)
  # 5. Paste by transposed conv (§3.7): a raw 2r×2r patch (stride r, SAME) is 2×2 of the
  #    r×r blocks of b; each block position of the patches is one product, then overlap-add.
  lo = rate // 2
  blocks = tf.nn.space_to_depth(tf.pad(b, [[0, 0], [lo, rate - lo], [lo, rate - lo], [0, 0]]),
                                rate)                                 # [B, h+1, w+1, r²C]
  canvas = 0.0
  for i in range(2):
    for j in range(2):
      part = tf.matmul(attn, tf.reshape(blocks[:, i:i + h, j:j + w],
                                        tf.stack([bsz, n, rate * rate * channels])))
      part = tf.nn.depth_to_space(
          tf.reshape(part, tf.stack([bsz, h, w, rate * rate * channels])), rate)
      canvas += tf.pad(tf.cast(part, tf.float32),
                       [[0, 0], [i * rate, (1 - i) * rate], [j * rate, (1 - j) * rate], [0, 0]])
  y = canvas[:, lo:lo + rate * h, lo:lo + rate * w] / 4.0           # 4 patches cover a pixel
  return tf.cast(y, dtype), tf.reshape(best, tf.stack([bsz, h, w]))


def propagate(scores, h, w, fuse_k=3):
  """Sums ``[B, L, L]`` scores along diagonals, row-major then column-major (§3.5).

  ``S'[p, q] = Σ_d S[p + d, q + d]`` with ``d`` in ``[-k//2, k//2]`` and zero outside
  ``[0, L)``: the release's convolution with a k×k identity kernel, once in row-major
  order and once after transposing both the query and the key grid.
  """
  n = h * w
  bsz = tf.shape(scores)[0]
  radius = fuse_k // 2

  def diagonal(x):
    padded = tf.pad(x, [[0, 0], [radius, radius], [radius, radius]])
    return tf.add_n([padded[:, radius + d:radius + d + n, radius + d:radius + d + n]
                     for d in range(-radius, radius + 1)])

  def transpose_grids(x, rows, cols):
    x = tf.reshape(x, tf.stack([bsz, rows, cols, rows, cols]))
    return tf.reshape(tf.transpose(x, [0, 2, 1, 4, 3]), tf.stack([bsz, n, n]))

  column_major = transpose_grids(diagonal(scores), h, w)
  return transpose_grids(diagonal(column_major), w, h)
