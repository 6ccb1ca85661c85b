"""Hole-local inference (ARCHITECTURE.md §7.4): run each stage only where it can change hole pixels.

Composes the generator's stage methods on crops; margins and FLOPs come from its layer
table (``generator.table``, ARCHITECTURE.md §2.6). Measured costs: bench/RESULTS.md.
"""
import tensorflow as tf

from model import limits
from model.generator import ATTENTION
from model.config import GRID
from model.inference import regions

# The hole-local path is taken when its FLOP plan is below this share of the full
# network's: its own overhead is small (timings: bench/RESULTS.md, bench/README.md).
LOCAL_THRESHOLD = 0.95
# A hole region whose box is longer than this (px) is processed in pieces of at most this side
# (``regions.tile_keys``), so the crops follow its pixels, not its box.
MAX_PIECE = 512


def receptive_radius(stage):
  """Receptive-field radius (full-res px) of a ``StageSpec`` of the layer table (§2.6).

  Each k×k conv with dilation d at scale s (px per feature pixel) adds
  ``d·(k−1)/2·s``; a stride-2 conv doubles the scale after itself; a ×2 nearest
  upsample (``up``) halves it and adds one source pixel (``s``) of uncertainty.
  Returns ``(radius, output_scale)``.
  """
  radius, scale = 0, stage.in_scale
  for spec in stage.layers:
    if spec.kind == "up":
      radius += scale
      scale //= 2
    radius += spec.dilation * (spec.kernel - 1) // 2 * scale
    scale *= spec.stride
  return radius, scale


def _round_up(value, multiple=GRID):
  return -(-value // multiple) * multiple


# margins() key -> layer-table stage.
_MARGIN_STAGES = {"coarse": "coarse", "hallu": "hallucination", "encoder": "attention_encoder",
                  "decoder": "attention_decoder", "merge": "merge"}


def margins(generator):
  """Receptive-field margins (px, rounded up to multiples of 8) of the generator's stages,
  from its layer table (ARCHITECTURE.md §2.6). Values within a margin of a crop edge that
  is not an image edge are wrong (padding instead of image content) and are never used."""
  return {key: _round_up(receptive_radius(generator.table[stage])[0])
          for key, stage in _MARGIN_STAGES.items()}


def _hole_box(mask):
  """(y0, y1, x0, x1) of the union of hole pixels over the batch, aligned to 8."""
  any_hole = tf.reduce_max(mask, axis=[0, 3]) > 0.5                   # [H, W]
  rows = tf.where(tf.reduce_any(any_hole, axis=1))[:, 0]
  cols = tf.where(tf.reduce_any(any_hole, axis=0))[:, 0]
  y0, y1 = tf.reduce_min(rows), tf.reduce_max(rows) + 1
  x0, x1 = tf.reduce_min(cols), tf.reduce_max(cols) + 1
  box = tf.cast(tf.stack([y0, y1, x0, x1]), tf.int32)
  return _expand(box, 0, tf.shape(mask)[1], tf.shape(mask)[2])


def _expand(box, margin, height, width):
  """Grows ``box`` by ``margin``, clips to the image, aligns outward to multiples of 8."""
  y0 = tf.maximum(box[0] - margin, 0) // GRID * GRID
  x0 = tf.maximum(box[2] - margin, 0) // GRID * GRID
  y1 = tf.minimum(_round_up(box[1] + margin), height)
  x1 = tf.minimum(_round_up(box[3] + margin), width)
  return tf.stack([y0, y1, x0, x1])


def _crop(x, box, scale=1):
  return x[:, box[0] // scale:box[1] // scale, box[2] // scale:box[3] // scale, :]


def _swap_batch_rows(x):
  """4-D [A, B, W, C] -> [B, A, W, C]; a free reshape when A or B is 1 (batch 1)."""
  shape = tf.shape(x)
  swapped = tf.stack([shape[1], shape[0], shape[2], shape[3]])
  return tf.cond(tf.logical_or(shape[0] == 1, shape[1] == 1),
                 lambda: tf.reshape(x, swapped), lambda: tf.transpose(x, [1, 0, 2, 3]))


def _encode_in_strips(encode, x, halo, block):
  """Applies ``encode``, a conv stack with total stride 4, to ``x`` in row strips (exact).

  ``halo`` ≥ the stack's receptive radius and ``block`` are multiples of 8.
  """
  height = tf.shape(x)[1]
  count = (height + block - 1) // block
  parts = tf.TensorArray(x.dtype, size=count, infer_shape=False)

  def body(i, parts):
    r0 = i * block
    r1 = tf.minimum(r0 + block, height)
    lo = tf.maximum(r0 - halo, 0)
    hi = tf.minimum(r1 + halo, height)
    y = encode(x[:, lo:hi])[:, (r0 - lo) // 4:(r1 - lo) // 4]
    return i + 1, parts.write(i, _swap_batch_rows(y))   # rows first, for concat

  # One strip at a time (strips are independent; in flight together their memory adds up).
  _, parts = tf.while_loop(lambda i, _: i < count, body, [tf.constant(0), parts],
                           parallel_iterations=1)
  return _swap_batch_rows(parts.concat())


def hole_boxes(mask):
  """int32 [N, 4] (y0, y1, x0, x1): the boxes of the hole regions of the union of ``mask``
  [B, H, W, 1] over the batch (``regions.region_boxes``), a region longer than ``MAX_PIECE``
  cut into tiles of that side, aligned outward to 8. Each box is processed on its own, so the
  work does not grow with the distance between holes, nor with a thin region's box."""
  any_hole = tf.reduce_max(mask, axis=[0, 3]) > 0.5                   # [H, W]
  boxes, labels = regions.region_boxes(any_hole, regions.CELL)
  tiles = tf.fill(tf.shape(boxes)[:1], MAX_PIECE // regions.CELL)
  pieces, count = regions.group(labels, regions.tile_keys(labels, boxes, tiles, regions.CELL))
  boxes = regions.tight_boxes(any_hole, pieces, count, regions.CELL)
  height, width = tf.shape(mask)[1], tf.shape(mask)[2]
  return tf.map_fn(lambda b: _expand(tf.stack([b[0], b[2], b[1], b[3]]), 0, height, width),
                   boxes, fn_output_signature=tf.TensorSpec([4], tf.int32))


def _boxes_of(hole):
  """``hole`` as int32 [N, 4]: one box [4] or boxes [N, 4]."""
  hole = tf.cast(hole, tf.int32)
  return hole[None] if hole.shape.rank == 1 else hole


def _scatter(target, box, values):
  """``target`` [B, H, W, C] with ``values`` [B, h, w, C] written over ``box`` (y0, y1, x0, x1)."""
  rows, cols = tf.range(box[0], box[1]), tf.range(box[2], box[3])
  grid = tf.stack(tf.meshgrid(rows, cols, indexing="ij"), axis=-1)      # [h, w, 2]
  swapped = tf.transpose(target, [1, 2, 0, 3])                           # [H, W, B, C]
  updated = tf.tensor_scatter_nd_update(swapped, grid, tf.transpose(values, [1, 2, 0, 3]))
  return tf.transpose(updated, [2, 0, 1, 3])


def _each_box(boxes, body, initial):
  """``body(box, value) -> value`` for every box, one after another (their memory does not
  add up); a single box runs without a loop."""
  if boxes.shape[0] == 1:
    return body(boxes[0], initial)
  return tf.while_loop(lambda i, _: i < tf.shape(boxes)[0],
                       lambda i, v: (i + 1, body(boxes[i], v)), (tf.constant(0), initial),
                       parallel_iterations=1)[1]


def refine_locally(generator, x_in, mask, attention_tile, strip_rows=256, hole=None,
                   needed=None):
  """Stage-2 output that equals the full computation on every hole pixel.

  The generator's stage methods on crops grown by :func:`margins` (ARCHITECTURE.md §7.4);
  the attention encoder runs over the whole image, in strips.

  Args:
    generator: an ``InpaintGenerator``.
    x_in: float32 ``[B, H, W, 3]`` with holes zeroed; mask ``[B, H, W, 1]`` with at
      least one hole pixel; H, W multiples of 8.
    attention_tile: int32 query tile size of contextual attention.
    strip_rows: rows per strip of the attention encoder (multiple of 8).
    hole, needed: :func:`hole_boxes` (or one box, e.g. ``_hole_box(mask)``) and
      ``needed_queries(generator, mask)`` when the caller already has them.
  Returns:
    float32 ``[B, H, W, 3]``: ``x_stage2`` on every hole box (aligned to 8), zeros elsewhere
    (the stages between run in the generator's compute dtype).
    Stage 1 and the refinement run per box (so two small holes far apart cost two small
    crops, not their joint bounding box); the attention keys come from the whole image.
  """
  m = margins(generator)
  shape = tf.shape(x_in)
  height, width = shape[1], shape[2]
  boxes = hole_boxes(mask) if hole is None else _boxes_of(hole)
  if needed is None:
    needed = needed_queries(generator, mask)

  g = generator
  # Stage 1 around each hole region; only its hole pixels are pasted (ARCHITECTURE.md §2.4),
  # so zeros elsewhere give the same stage-2 input.
  def coarse(box, x1):
    r1 = _expand(box, m["coarse"], height, width)
    inner = box - tf.stack([r1[0], r1[0], r1[2], r1[2]])
    return _scatter(x1, box, _crop(g.coarse(_crop(x_in, r1), _crop(mask, r1)), inner))

  x1 = _each_box(boxes, coarse, tf.zeros_like(x_in))
  xnow = g.stage2_input(x_in, mask, x1)

  # Attention keys: the encoder over the whole image, in strips.
  block = tf.maximum(_round_up(tf.cast(strip_rows, tf.int32)), GRID)
  pm = _encode_in_strips(g.attention_encoder, xnow, m["encoder"], block)
  pm = tf.ensure_shape(pm, [None, None, None, g.table["attention_encoder"].out_channels])
  mask_s = g.attention_mask(mask)
  h2, w2 = height // GRID, width // GRID

  def refined(out_box, out):
    merge_box = _expand(out_box, m["merge"], height, width)
    hallu_box = _expand(merge_box, m["hallu"], height, width)
    dec_box = _expand(merge_box, m["decoder"], height, width)

    hallu = g.hallucination(_crop(xnow, hallu_box))
    offset = (merge_box - tf.stack([hallu_box[0], hallu_box[0], hallu_box[2], hallu_box[2]])) // 4
    hallu = hallu[:, offset[0]:offset[1], offset[2]:offset[3]]

    # Queries whose pasted 4×4 patches reach the decoder crop (1/8 grid).
    qbox = tf.stack([tf.maximum(dec_box[0] // GRID - 1, 0), tf.minimum(dec_box[1] // GRID + 1, h2),
                     tf.maximum(dec_box[2] // GRID - 1, 0), tf.minimum(dec_box[3] // GRID + 1, w2)])
    # Scattered holes: of the box's query tiles, compute only those holding a needed query.
    att, _ = g.attention_branch(pm, mask_s, attention_tile=attention_tile, query_box=qbox,
                                output_box=dec_box // 4, query_mask=needed)
    offset = (merge_box - tf.stack([dec_box[0], dec_box[0], dec_box[2], dec_box[2]])) // 4
    att = att[:, offset[0]:offset[1], offset[2]:offset[3]]

    x2 = g.merge(hallu, att)
    offset = out_box - tf.stack([merge_box[0], merge_box[0], merge_box[2], merge_box[2]])
    return _scatter(out, out_box, x2[:, offset[0]:offset[1], offset[2]:offset[3]])

  return _each_box(boxes, refined, tf.zeros_like(x_in))


def needed_queries(generator, mask):
  """bool ``[H/8, W/8]``: attention queries that can reach a hole pixel (any sample).

  A query's pasted 4×4 patch (1/4 scale) covers full-res pixels ``[8q − 4, 8q + 12)``,
  and a hole pixel reads the attention output within the decoder + merge margins
  (v1: 8 + 24 = 32 px), so queries within ``(merge + decoder)/8 + 1`` cells (v1: 5) of a
  hole cell are needed.
  """
  m = margins(generator)
  reach = (m["merge"] + m["decoder"]) // GRID + 1
  cells = tf.nn.max_pool2d(tf.reduce_max(mask, axis=0, keepdims=True), 8, 8, "VALID")
  return tf.nn.max_pool2d(cells, 2 * reach + 1, 1, "SAME")[0, :, :, 0] > 0.5


def stage_flops(stage, h, w, gated=False):
  """2 × multiply-adds of a ``StageSpec`` of the layer table on an h×w input (float64
  tensors). A gated conv computes twice the filters (ARCHITECTURE.md §2.1)."""
  flops = tf.constant(0.0, tf.float64)
  cin = stage.in_channels
  for spec in stage.layers:
    if spec.kind == "up":
      h, w = h * 2.0, w * 2.0
    h, w = tf.math.ceil(h / spec.stride), tf.math.ceil(w / spec.stride)
    conv_filters = 2 * spec.filters if gated and spec.activation is not None else spec.filters
    flops += 2.0 * h * w * float(spec.kernel ** 2 * cin * conv_filters)
    cin = spec.filters
  return flops


def plan(generator, hole, height, width, needed=None):
  """FLOP estimate (float64 tensors) of the hole-local and of the full computation.

  ``hole``: int32 (y0, y1, x0, x1), the hole's bounding box aligned to 8, or ``[N, 4]`` such
  boxes of its regions (:func:`hole_boxes`; their work is summed). Counts conv
  multiply-adds ×2 and the attention matmuls (k²C score + (2r)²C paste per
  query-key pair). ``needed``: optional :func:`needed_queries` mask; the local
  attention then counts only those queries (scattered holes; a lower bound, as
  whole tiles are computed). Returns a dict with ``local``, ``full`` (totals),
  ``local_attention``, ``full_attention`` (their attention parts) and ``queries``.
  """
  g = generator
  m = margins(g)
  hole = tf.transpose(_boxes_of(hole))       # [4, N]: every box op below is per region
  height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
  merge = _expand(hole, m["merge"], height, width)
  boxes = {"coarse": _expand(hole, m["coarse"], height, width),
           "hallu": _expand(merge, m["hallu"], height, width),
           "decoder": _expand(merge, m["decoder"], height, width), "merge": merge}

  def size(box, scale=1):
    box = tf.cast(box, tf.float64)
    return (box[1] - box[0]) / scale, (box[3] - box[2]) / scale

  table = g.table
  c = table["attention_encoder"].out_channels
  h8, w8 = height // GRID, width // GRID
  keys = tf.cast(h8 * w8, tf.float64)
  per_pair = float(2 * c * (ATTENTION.ksize ** 2 + 4 * ATTENTION.rate ** 2))
  full_hw = (tf.cast(height, tf.float64), tf.cast(width, tf.float64))

  def convs(sizes):
    sizes = dict(sizes, encoder=full_hw)   # per region (summed), the encoder once
    return sum((tf.reduce_sum(stage_flops(table[stage], *sizes[key], gated=g.gated))
                for key, stage in _MARGIN_STAGES.items()), tf.constant(0.0, tf.float64))

  dec = boxes["decoder"]
  qh = tf.minimum(dec[1] // 8 + 1, h8) - tf.maximum(dec[0] // 8 - 1, 0)
  qw = tf.minimum(dec[3] // 8 + 1, w8) - tf.maximum(dec[2] // 8 - 1, 0)
  queries = tf.reduce_sum(tf.cast(qh * qw, tf.float64))
  if needed is not None:
    queries = tf.minimum(queries, tf.reduce_sum(tf.cast(needed, tf.float64)))
  local_att = per_pair * queries * keys
  full_att = per_pair * keys * keys
  local = local_att + convs({"coarse": size(boxes["coarse"]), "hallu": size(boxes["hallu"]),
                             "decoder": size(dec, 4), "merge": size(merge, 4)})
  quarter = (full_hw[0] / 4, full_hw[1] / 4)
  full = full_att + convs({"coarse": full_hw, "hallu": full_hw, "decoder": quarter,
                           "merge": quarter})   # scalar sizes: the sums run over one value
  return {"local": local, "full": full, "local_attention": local_att,
          "full_attention": full_att, "queries": queries}


# Working-memory model of one attention tile, in rows of L floats: a few copies of
# the (t+2)² raw score rows (conv output, its transpose, the padded copy, the
# first-pass gathers and sum) and of the t² fused rows (second-pass gathers and
# sum, logits, softmax, paste shifts): 12 t² is a conservative bound (measured peaks
# per size and budget: bench/RESULTS.md).
_TILE_COPIES = 12


def budget_bytes_of(max_memory_gb):
  """``--max_memory_gb`` in bytes (``limits.memory_bytes``: ValueError unless valid)."""
  return limits.memory_bytes(max_memory_gb)


def attention_tile(height, width, budget_bytes, batch=1):
  """Largest query tile (int32) whose attention working memory for ``batch``
  samples fits ``budget_bytes`` (a tile's tensors hold every sample of the batch)."""
  h2 = tf.maximum(height // 8, 1)
  w2 = tf.maximum(width // 8, 1)
  n = tf.cast(h2 * w2, tf.float64)
  per_sample = tf.constant(float(budget_bytes), tf.float64) / tf.cast(tf.maximum(batch, 1),
                                                                       tf.float64)
  ratio = per_sample / (4.0 * (n + 1.0) * _TILE_COPIES)
  t = tf.cast(tf.sqrt(tf.maximum(ratio, 1.0)), tf.int32)
  return tf.maximum(1, tf.minimum(t, tf.maximum(h2, w2)))


def attention_tiled(height, width, budget_bytes):
  """Python bool: the full network's attention on a ``height × width`` input (multiples of 8,
  batch 1) runs in tiles of :func:`attention_tile`, i.e. that tile is smaller than the map."""
  tile = int(attention_tile(height, width, budget_bytes))
  return tile < max(height // 8, width // 8)


def strip_rows(width, channels, budget_bytes, batch=1):
  """Rows per strip of the full-image attention encoder for a memory budget (int32)."""
  per_row = 4.0 * tf.cast(width, tf.float64) * (5 + 4 * channels) * tf.cast(
      tf.maximum(batch, 1), tf.float64)
  rows = tf.cast(tf.constant(float(budget_bytes), tf.float64) / per_row, tf.int32) // GRID * GRID
  return tf.clip_by_value(rows, 32, 1024)


PATHS = ("auto", "local", "full")


def use_local(generator, mask, hole=None, needed=None):
  """bool scalar: ``mask`` [B, H, W, 1] has a hole and the hole-local FLOP plan is below
  ``LOCAL_THRESHOLD`` (95 %) of the full network's. ``hole``, ``needed``: as in
  :func:`refine_locally`."""
  shape = tf.shape(mask)

  def cheaper():
    box = hole_boxes(mask) if hole is None else hole
    need = needed_queries(generator, mask) if needed is None else needed
    cost = plan(generator, box, shape[1], shape[2], need)
    return cost["local"] < LOCAL_THRESHOLD * cost["full"]

  return tf.cond(tf.reduce_any(mask > 0.5), cheaper, lambda: tf.constant(False))


def refine(generator, x_in, mask, budget_bytes, path="auto", attention_tiled=None):
  """Stage-2 output for inference, exact on hole pixels (what test.py and serving run).

  ``path``: ``local`` computes only what reaches hole pixels (``mask`` must have one),
  ``full`` runs the whole generator, ``auto`` picks local in the graph when
  :func:`use_local` says so (each path is traced once). Attention is tiled to fit
  ``budget_bytes`` either way; ``attention_tiled`` (Python bool, or None to test it in the
  graph): whether that tile is smaller than the full network's attention map (see
  :func:`attention_tiled`). ``x_in``/``mask``: float32 ``[B, H, W, *]``, H, W multiples of 8.
  The network runs in the generator's compute dtype (its Keras dtype policy; its stage
  methods take and return float32 images); the plan and the returned float32 ``x_stage2`` do
  not depend on it.
  """
  shape = tf.shape(x_in)
  height, width = shape[1], shape[2]
  tile = attention_tile(height, width, budget_bytes, shape[0])

  def full():
    return generator((x_in, mask), attention_tile=tile, attention_tiled=attention_tiled)[1]

  if path not in PATHS:
    raise ValueError(f"path must be one of {PATHS}, got {path!r}")
  if path == "full":
    return full()
  # Computed once for the plan and the local path (meaningless, and unused, without a hole).
  hole, needed = hole_boxes(mask), needed_queries(generator, mask)

  def local():
    rows = strip_rows(width, generator.cnum, budget_bytes, shape[0])
    return refine_locally(generator, x_in, mask, tile, rows, hole, needed)

  if path == "local":
    return local()
  return tf.cond(use_local(generator, mask, hole, needed), local, full)
