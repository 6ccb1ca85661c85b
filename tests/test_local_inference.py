"""Hole-local inference equals the full computation on hole pixels (random weights)."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from layers.gen_conv import GenDeconv
from model import config as config_lib
from model import generator as generator_lib
from model.inference import local_plan as local_inference


@pytest.fixture(scope="module")
def gen():
  keras_seed = tf.keras.utils.set_random_seed
  keras_seed(3)
  return generator_lib.build_generator(config_lib.preset("v1", cnum=4))


def test_margins_derived_from_layer_table(gen):
  # Radii of ARCHITECTURE.md §2.3/§2.5 by hand: e.g. coarse = 2+1+2+2+4+4+8+16+32+64+4+4+(4+2)+2+(2+1)+1+1.
  assert local_inference.receptive_radius(gen.table["coarse"])[0] == 156
  assert local_inference.receptive_radius(gen.table["hallucination"])[0] == 135
  assert local_inference.receptive_radius(gen.table["attention_encoder"]) == (15, 4)
  assert local_inference.margins(gen) == {
      "coarse": 160, "hallu": 136, "encoder": 16, "decoder": 8, "merge": 24}


LAYOUTS = [
    ((96, 128), [(40, 56, 48, 80)]),                      # small hole, everything in range
    ((320, 256), [(0, 30, 0, 40)]),                       # touching the top-left border
    ((384, 400), [(200, 260, 300, 400), (10, 20, 10, 30)]),  # two holes, right border
    ((400, 336), [(330, 400, 100, 170)]),                 # bottom border, far from the top
    ((400, 416), [(8, 24, 8, 24), (376, 392, 200, 216), (96, 120, 392, 416)]),  # scattered:
]                                                         # most query tiles are skipped


@pytest.mark.slow
@pytest.mark.parametrize("size,holes", LAYOUTS)
def test_local_equals_full_on_hole_pixels(gen, size, holes):
  h, w = size
  rng = np.random.default_rng(h * w)
  x = rng.uniform(-1, 1, [1, h, w, 3]).astype(np.float32)
  m = np.zeros([1, h, w, 1], np.float32)
  for y0, y1, x0, x1 in holes:
    m[:, y0:y1, x0:x1] = 1
  x_in = x * (1 - m)
  full = gen((x_in, m))[1].numpy()
  local = local_inference.refine_locally(gen, tf.constant(x_in), tf.constant(m),
                                         tf.constant(3), strip_rows=64).numpy()
  hole = m[..., 0] > 0
  assert np.abs(full[hole] - local[hole]).max() <= 1e-4
  # Under tf.function with dynamic shapes, too.
  fn = tf.function(lambda a, b: local_inference.refine_locally(gen, a, b, tf.constant(5)),
                   input_signature=[tf.TensorSpec([None, None, None, 3]),
                                    tf.TensorSpec([None, None, None, 1])])
  assert np.abs(full[hole] - fn(x_in, m).numpy()[hole]).max() <= 1e-4


def test_batch_with_different_masks(gen):
  rng = np.random.default_rng(5)
  x = rng.uniform(-1, 1, [2, 128, 160, 3]).astype(np.float32)
  m = np.zeros([2, 128, 160, 1], np.float32)
  m[0, 16:48, 16:64] = 1
  m[1, 90:128, 100:160] = 1
  x_in = x * (1 - m)
  full = gen((x_in, m))[1].numpy()
  local = local_inference.refine_locally(gen, tf.constant(x_in), tf.constant(m),
                                         tf.constant(4)).numpy()
  hole = m[..., 0] > 0
  assert np.abs(full[hole] - local[hole]).max() <= 1e-4


def _profiled_conv_flops(make_generator, h, w):
  """(TF's own Conv2D FLOP count of the generator's convs, the FLOP plan) on an h×w input."""
  from tensorflow.python.framework import ops as ops_lib  # the registered per-op FLOP counts
  graph = tf.Graph()
  with graph.as_default():
    g = make_generator()
    before = set(op.name for op in graph.get_operations())
    g((tf.zeros([1, h, w, 3]), tf.ones([1, h, w, 1])))
    counted = sum(ops_lib.get_stats_for_node_def(graph, op.node_def, "flops").value
                  for op in graph.get_operations()
                  if op.name not in before and op.type == "Conv2D"
                  and "contextual_attention" not in op.name)            # not the 3×3 mask box filters
    cost = local_inference.plan(g, tf.constant([8, 16, 8, 16]), h, w)
    with tf.compat.v1.Session(graph=graph) as sess:
      cost = sess.run(cost)
  return counted, cost


@pytest.mark.parametrize("preset,cnum,size", [("v1", 32, (256, 256)), ("gated", 8, (128, 192))])
def test_plan_conv_flops_match_tf_profiler(preset, cnum, size):
  """The FLOP plan's full-network conv part equals TF's own Conv2D FLOP statistics.

  Sizes are multiples of 64, so the rate-16 atrous convs' SpaceToBatch needs no
  padding (TF counts the padded positions too).
  """
  h, w = size
  counted, cost = _profiled_conv_flops(
      lambda: generator_lib.build_generator(config_lib.preset(preset, cnum=cnum)), h, w)
  assert counted > 0
  assert cost["full"] - cost["full_attention"] == pytest.approx(counted, rel=1e-9)
  c = 4 * cnum
  assert cost["full_attention"] == 2 * c * (9 + 16) * ((h // 8) * (w // 8)) ** 2
  if preset == "v1":
    # The figures at 256²: convolutions ≈ 45 GFLOP, attention ≈ 7 GFLOP.
    assert counted / 1e9 == pytest.approx(44.9, abs=0.1)
    assert cost["full_attention"] / 1e9 == pytest.approx(6.7, abs=0.1)


def _mutated_table(cnum):
  """The v1 table with three entries changed: conv10_atrous dilation 16 -> 4 (coarse radius
  156 -> 108), conv5 4c -> 3c channels, allconv11 kernel 3 -> 5 (merge radius 21 -> 25)."""
  changes = {"conv10_atrous": {"dilation": 4}, "conv5": {"filters": 3 * cnum},
             "allconv11": {"kernel": 5}}
  return {name: dataclasses.replace(stage, layers=tuple(
      dataclasses.replace(spec, **changes.get(spec.name, {})) for spec in stage.layers))
          for name, stage in ORIGINAL_TABLE(cnum).items()}


ORIGINAL_TABLE = generator_lib.layer_table


@pytest.mark.slow
def test_one_layer_table_builds_the_layers_and_drives_margins_and_flops(monkeypatch):
  """Mutation check: editing entries of ``layer_table`` changes the built layers, the
  margins and the FLOP plan together, and the hole-local path stays exact."""
  monkeypatch.setattr(generator_lib, "layer_table", _mutated_table)
  tf.keras.utils.set_random_seed(4)
  cfg = config_lib.preset("v1", cnum=4)
  g = generator_lib.build_generator(cfg)
  specs = [spec for stage in generator_lib.STAGES for spec in g.table[stage].layers]
  layers = g.conv_layers()
  assert [layer.name for layer in layers] == [spec.name for spec in specs]
  for layer, spec in zip(layers, specs):
    conv = layer.gen_conv if spec.kind == "up" else layer
    assert isinstance(layer, GenDeconv) == (spec.kind == "up")
    assert (conv.filters, conv.kernel_size, conv.strides, conv.dilation_rate, conv.activation) == (
        spec.filters, spec.kernel, spec.stride, spec.dilation, spec.activation)
  assert g.conv5.filters == 12 and g.conv10_atrous.dilation_rate == 4
  assert g.allconv11.kernel_size == 5
  assert local_inference.margins(g) == {
      "coarse": 112, "hallu": 136, "encoder": 16, "decoder": 8, "merge": 32}
  # FLOPs of the mutated table = TF's count of the mutated graph (not the v1 count).
  counted, cost = _profiled_conv_flops(lambda: generator_lib.build_generator(cfg), 128, 192)
  assert cost["full"] - cost["full_attention"] == pytest.approx(counted, rel=1e-9)
  monkeypatch.undo()
  v1_counted, _ = _profiled_conv_flops(lambda: generator_lib.build_generator(cfg), 128, 192)
  assert counted != v1_counted
  # The hole-local path built on the stages and the mutated margins is still exact.
  rng = np.random.default_rng(9)
  h, w = 192, 256
  x = rng.uniform(-1, 1, [1, h, w, 3]).astype(np.float32)
  m = np.zeros([1, h, w, 1], np.float32)
  m[:, 72:104, 96:136] = 1
  x_in = x * (1 - m)
  full = g((x_in, m))[1].numpy()
  local = local_inference.refine_locally(g, tf.constant(x_in), tf.constant(m), tf.constant(3))
  hole = m[..., 0] > 0
  assert np.abs(full[hole] - local.numpy()[hole]).max() <= 1e-4


def test_plan_counts_only_needed_queries_for_scattered_holes(gen):
  h = w = 1024
  mask = np.zeros([1, h, w, 1], np.float32)
  mask[:, 16:48, 16:48] = 1                               # two small holes in opposite corners
  mask[:, 960:1000, 970:1010] = 1
  needed = local_inference.needed_queries(gen, tf.constant(mask))
  # By hand, on the 1/8 grid: hole cells rows 2..5 / cols 2..5 and rows 120..124 /
  # cols 121..126, grown by 5 cells and clipped to the grid.
  expected = np.zeros((128, 128), bool)
  expected[0:11, 0:11] = True
  expected[115:128, 116:128] = True
  np.testing.assert_array_equal(needed.numpy(), expected)
  box = local_inference._hole_box(tf.constant(mask))
  by_box = local_inference.plan(gen, box, h, w)
  by_mask = local_inference.plan(gen, box, h, w, needed)
  assert float(by_mask["queries"]) == expected.sum()
  assert float(by_box["queries"]) == 128 * 128          # the bounding box spans the image
  assert float(by_mask["local_attention"]) < 0.02 * float(by_box["local_attention"])


@pytest.mark.slow
@pytest.mark.parametrize("max_memory_gb", [1.0, 2e-5])
def test_attention_tiled_decided_eagerly_equals_graph_test(max_memory_gb):
  """test.py decides dense-or-tiled attention of the full network from the size (one branch
  traced); same bytes as the graph's own test, for a map smaller and larger than the tile."""
  from model.inference import inpainter as inpaint
  tf.keras.utils.set_random_seed(3)
  cfg = config_lib.preset("v1", cnum=4)
  model = inpaint.Inpainter(generator_lib.build_generator(cfg), cfg, max_memory_gb=max_memory_gb)
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, [61, 75, 3], dtype=np.uint8)
  hole = np.zeros([61, 75], bool)
  hole[20:40, 25:50] = True
  tiled = local_inference.attention_tiled(64, 80, model.budget_bytes)
  assert tiled == (max_memory_gb < 1)
  result, flow = model.inpaint(rgb, hole, with_flow=True)
  graph_test = tf.function(lambda a, b: model.fill(a, b, with_flow=True), autograph=False)
  expected, _ = graph_test(tf.constant(rgb), tf.constant(hole))
  np.testing.assert_array_equal(result, expected.numpy())
  traced = model._function(False, True, "full", tiled).get_concrete_function()
  ops = {op.type for op in traced.graph.get_operations()}
  assert not ops & {"If", "StatelessIf"}  # only the branch that runs is traced
  assert flow.shape == rgb.shape
