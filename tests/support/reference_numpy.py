"""Literal NumPy reference for contextual attention and its flow picture (ARCHITECTURE.md §3).

Written for tests only: plain loops and small helpers that follow the release's
algorithm step by step for ONE sample, with no cleverness, so that the TF layer
(which evaluates the same maths with gathers and tiles) can be checked against
it. Shapes are tiny in tests, so speed does not matter.

Conventions: feature maps ``[H, W, C]``, masks ``[H, W, 1]`` with 1 = hole,
downsampled grid ``h × w`` with ``L = h·w`` and row-major index ``l = y·w + x``.
"""
import numpy as np


# ---------------------------------------------------------------------------
# Small building blocks.
# ---------------------------------------------------------------------------

def same_padding(size, ksize, stride):
  """TF "SAME" padding along one axis: returns (pad_before, pad_after, n_out)."""
  n_out = -(-size // stride)
  total = max((n_out - 1) * stride + ksize - size, 0)
  return total // 2, total - total // 2, n_out


def extract_patches(x, ksize, stride):
  """SAME zero-padded ``ksize × ksize`` patches of ``x`` [H, W, C].

  Returns ``[n_out_h, n_out_w, ksize, ksize, C]``; patch (i, j) starts at
  padded pixel (i·stride, j·stride).
  """
  height, width, channels = x.shape
  top, bottom, oh = same_padding(height, ksize, stride)
  left, right, ow = same_padding(width, ksize, stride)
  padded = np.zeros((height + top + bottom, width + left + right, channels), x.dtype)
  padded[top:top + height, left:left + width] = x
  out = np.zeros((oh, ow, ksize, ksize, channels), x.dtype)
  for i in range(oh):
    for j in range(ow):
      out[i, j] = padded[i * stride:i * stride + ksize, j * stride:j * stride + ksize]
  return out


def nearest_source_index(n_in, n_out):
  """Source indices of TF1 ``resize_nearest_neighbor(align_corners=True)``.

  index(i) = round(i · (n_in − 1) / (n_out − 1)), with n_out == 1 -> 0. The TF
  kernel forms the scale and the product in float32 and rounds halves away
  from zero (``roundf``), which matters e.g. for 10 -> 5 (i = 2 -> 4.5 -> 5).
  """
  if n_out == 1:
    return np.zeros([1], np.int64)
  scale = np.float32(n_in - 1) / np.float32(n_out - 1)
  pos = np.arange(n_out).astype(np.float32) * scale
  idx = np.floor(pos + np.float32(0.5)).astype(np.int64)
  return np.minimum(idx, n_in - 1)


def resize_nearest_align_corners(x, out_h, out_w):
  """Nearest resize of ``x`` [H, W, C] to ``[out_h, out_w, C]`` (ARCHITECTURE.md §1.4)."""
  rows = nearest_source_index(x.shape[0], out_h)
  cols = nearest_source_index(x.shape[1], out_w)
  return x[rows][:, cols]


def fuse_diagonal(scores, fuse_k):
  """Correlates a 2-D score image with a ``fuse_k × fuse_k`` identity kernel.

  SAME zero padding, so ``new[a, c] = Σ_d old[a + d, c + d]`` for
  ``d = −r..r`` (``r = fuse_k // 2``), terms outside the image being zero.
  """
  rows, cols = scores.shape
  radius = fuse_k // 2
  out = np.zeros_like(scores)
  for a in range(rows):
    for c in range(cols):
      total = scores.dtype.type(0)
      for d in range(-radius, radius + 1):
        if 0 <= a + d < rows and 0 <= c + d < cols:
          total = total + scores[a + d, c + d]
      out[a, c] = total
  return out


def softmax(x, axis):
  """Numerically stable softmax."""
  e = np.exp(x - np.max(x, axis=axis, keepdims=True))
  return e / np.sum(e, axis=axis, keepdims=True)


# ---------------------------------------------------------------------------
# Contextual attention for one sample (ARCHITECTURE.md §3.2–3.8).
# ---------------------------------------------------------------------------

def contextual_attention(f, b, mask=None, ksize=3, rate=2, fuse_k=3, softmax_scale=10.0,
                         fuse=True, dtype=np.float64, return_details=False):
  """Contextual attention of ONE sample, literally as the release computes it.

  Args:
    f, b: ``[H, W, C]`` foreground / background features (H, W divisible by rate).
    mask: ``[H, W, 1]`` (or ``[H, W]``), 1 = hole; None = everything known.
    dtype: arithmetic precision (float64 default; float32 allowed).
    return_details: also return a dict of intermediates.
  Returns:
    y ``[H, W, C]`` (dtype) and int32 offsets ``[H/rate, W/rate, 2]`` = (dy, dx);
    plus the details dict when asked.
  """
  f = np.asarray(f, dtype)
  b = np.asarray(b, dtype)
  height, width, channels = f.shape
  assert b.shape == f.shape, "f and b must have the same shape"
  assert height % rate == 0 and width % rate == 0
  h2, w2 = height // rate, width // rate
  n = h2 * w2

  # 1. Raw 2r×2r patches of full-resolution b, stride r (SAME) -> [L, 2r, 2r, C].
  raw = extract_patches(b, 2 * rate, rate)
  assert raw.shape[:2] == (h2, w2)
  raw = raw.reshape(n, 2 * rate, 2 * rate, channels)

  # 2. Downsample f, b and the mask by 1/rate (nearest, align_corners).
  fd = resize_nearest_align_corners(f, h2, w2)
  bd = resize_nearest_align_corners(b, h2, w2)
  if mask is None:
    md = np.zeros((h2, w2, 1), dtype)
  else:
    mask = np.asarray(mask, dtype).reshape(height, width, 1)
    md = resize_nearest_align_corners(mask, h2, w2)

  # 3. k×k matching patches of downsampled b; each divided by max(L2 norm, 1e-4).
  bpatch = extract_patches(bd, ksize, 1).reshape(n, ksize, ksize, channels)
  filters = np.zeros_like(bpatch)
  for l in range(n):
    norm = np.sqrt(np.sum(bpatch[l] * bpatch[l]))
    filters[l] = bpatch[l] / max(norm, dtype(1e-4))

  # 4. Valid-patch mask: 1 where the k×k zero-padded window of the mask averages 0.
  mpatch = extract_patches(md, ksize, 1).reshape(n, -1)
  mm = (np.mean(mpatch, axis=1) == 0.0).astype(dtype)                 # [L]

  # 5.2 Scores: SAME correlation of downsampled f with the filters -> [L_f, L_b].
  fpatch = extract_patches(fd, ksize, 1).reshape(n, ksize, ksize, channels)
  scores = np.zeros((n, n), dtype)
  for p in range(n):
    for l in range(n):
      scores[p, l] = np.sum(fpatch[p] * filters[l])
  raw_scores = scores.copy()

  # 5.3 Fuse: diagonal sum in row-major order, then in column-major order.
  if fuse:
    scores = fuse_diagonal(scores, fuse_k)
    scores = scores.reshape(h2, w2, h2, w2).transpose(1, 0, 3, 2).reshape(n, n)
    scores = fuse_diagonal(scores, fuse_k)
    scores = scores.reshape(w2, h2, w2, h2).transpose(1, 0, 3, 2).reshape(n, n)

  # 5.4 Mask (zeros, not -inf), softmax over L of scores·scale, mask again.
  scores = scores * mm[None, :]
  attention = softmax(scores * dtype(softmax_scale), axis=1) * mm[None, :]

  # 5.5 / 7.1 Argmax -> absolute (row, col) -> offsets relative to own position.
  best = np.argmax(attention, axis=1)
  offsets = np.zeros((h2, w2, 2), np.int32)
  for p in range(n):
    y, x = divmod(p, w2)
    offsets[y, x, 0] = best[p] // w2 - y
    offsets[y, x, 1] = best[p] % w2 - x

  # 5.6 Reconstruction: transposed conv (stride r) of the attention map with the
  # raw patches, i.e. paste Σ_l attention[p, l]·raw[l] at position p, then /4.
  top, _, _ = same_padding(height, 2 * rate, rate)
  left, _, _ = same_padding(width, 2 * rate, rate)
  y_out = np.zeros((height, width, channels), dtype)
  for p in range(n):
    py, px = divmod(p, w2)
    pasted = np.tensordot(attention[p], raw, axes=(0, 0))              # [2r, 2r, C]
    for ky in range(2 * rate):
      for kx in range(2 * rate):
        oy = py * rate - top + ky
        ox = px * rate - left + kx
        if 0 <= oy < height and 0 <= ox < width:
          y_out[oy, ox] += pasted[ky, kx]
  y_out = y_out / dtype(4.0)

  if not return_details:
    return y_out, offsets
  details = dict(raw=raw, fd=fd, bd=bd, md=md, filters=filters, mm=mm,
                 raw_scores=raw_scores, fused_scores=scores, attention=attention, best=best)
  return y_out, offsets, details


def contextual_attention_batch(f, b, mask=None, **kwargs):
  """Applies :func:`contextual_attention` to each sample of ``[B, H, W, C]`` inputs."""
  ys, offs = [], []
  for i in range(f.shape[0]):
    y, off = contextual_attention(f[i], b[i], None if mask is None else mask[i], **kwargs)
    ys.append(y)
    offs.append(off)
  return np.stack(ys), np.stack(offs)


# ---------------------------------------------------------------------------
# Flow colour wheel (ARCHITECTURE.md §3.8).
# ---------------------------------------------------------------------------

def make_color_wheel():
  """Middlebury colour wheel, ``[55, 3]`` float64 RGB in 0..255.

  Segments RY 15, YG 6, GC 4, CB 11, BM 13, MR 6; ramps are floor(255·i/n).
  """
  segments = [15, 6, 4, 11, 13, 6]
  wheel = np.zeros((sum(segments), 3))
  start = 0
  # (channel that ramps, ramp direction up?, channel held at 255)
  plan = [(1, True, 0), (0, False, 1), (2, True, 1), (1, False, 2), (0, True, 2), (2, False, 0)]
  for n, (ramp_ch, up, full_ch) in zip(segments, plan):
    ramp = np.floor(255.0 * np.arange(n) / n)
    wheel[start:start + n, full_ch] = 255.0
    wheel[start:start + n, ramp_ch] = ramp if up else 255.0 - ramp
    start += n
  return wheel


def compute_color(u, v):
  """Colour-codes normalised (u, v) [h, w] -> uint8 [h, w, 3] (RGB)."""
  wheel = make_color_wheel()
  ncols = wheel.shape[0]
  rad = np.sqrt(u ** 2 + v ** 2)
  a = np.arctan2(-v, -u) / np.pi
  fk = (a + 1) / 2 * (ncols - 1) + 1
  k0 = np.floor(fk).astype(np.int64)
  k1 = k0 + 1
  k1[k1 == ncols + 1] = 1
  frac = fk - k0
  img = np.zeros(u.shape + (3,), np.uint8)
  inside = rad <= 1
  for ch in range(3):
    col0 = wheel[:, ch][k0 - 1] / 255
    col1 = wheel[:, ch][k1 - 1] / 255
    col = (1 - frac) * col0 + frac * col1
    col[inside] = 1 - rad[inside] * (1 - col[inside])
    col[~inside] = col[~inside] * 0.75
    img[:, :, ch] = np.uint8(np.floor(255 * col))
  return img


def flow_to_uint8_wheel(offsets):
  """Offsets ``[h, w, 2]`` (dy, dx) of ONE sample -> uint8 ``[h, w, 3]`` colours."""
  u = np.asarray(offsets[..., 0]).astype(np.float64)
  v = np.asarray(offsets[..., 1]).astype(np.float64)
  unknown = (np.abs(u) > 1e7) | (np.abs(v) > 1e7)
  u[unknown] = 0
  v[unknown] = 0
  maxrad = max(-1.0, np.max(np.sqrt(u ** 2 + v ** 2)))
  eps = np.finfo(np.float64).eps
  u = u / (maxrad + eps)
  v = v / (maxrad + eps)
  return compute_color(u, v)


def flow_to_image(offsets, upsample=2):
  """Offsets -> flow picture in [-1, 1] exactly as the v1 layer returns it.

  ``offsets``: int ``[B, h, w, 2]`` or ``[h, w, 2]``. Normalised per sample.
  Returns float32 ``[(B,) h·upsample, w·upsample, 3]`` = value/127.5 − 1,
  pixel-duplicated ``upsample`` times (nearest ×2 with align_corners).
  """
  offsets = np.asarray(offsets)
  single = offsets.ndim == 3
  if single:
    offsets = offsets[None]
  pics = []
  for i in range(offsets.shape[0]):
    img = flow_to_uint8_wheel(offsets[i]).astype(np.float32)
    pic = img / np.float32(127.5) - np.float32(1.0)
    pic = np.repeat(np.repeat(pic, upsample, axis=0), upsample, axis=1)
    pics.append(pic)
  out = np.stack(pics).astype(np.float32)
  return out[0] if single else out
