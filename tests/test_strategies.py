"""Scale strategies (model/inference/scaling.py) and the model's inference declaration."""
import json
import os

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import EXAMPLES, GOLDEN, REPO, require_shared
from support import procs
from model import config as config_lib
from model import generator as generator_lib
from model import weights
from model.inference import inpainter as inpaint
from model.inference import local_plan
from model.inference import regions
from model.inference import scaling

SMALL = config_lib.InferenceConfig(strategy="auto", seam_blend=True, crop_size=32, hole_min=8,
                                   hole_max=16)


@pytest.fixture(scope="module")
def tiny():
  keras.utils.set_random_seed(7)
  cfg = config_lib.preset("v1", cnum=4)
  return generator_lib.build_generator(cfg), cfg


def _photo(h, w):
  rgb = cv2.imread(os.path.join(require_shared(EXAMPLES), "sklearn_china.png"))[..., ::-1]
  return np.ascontiguousarray(rgb[:h, :w])


def _holes(h, w):
  hole = np.zeros((h, w), bool)
  hole[6:46, 8:50] = True            # deep: depth 20 > hole_max / 2, so it is rescaled
  hole[h - 10:h - 4, w - 12:w - 3] = True   # small, far away (bottom-right corner)
  cv2.line(hole.view(np.uint8), (70, 10), (100, 60), 1, 3)   # a thin stroke
  return hole


# ----------------------------------------------------------------------------- scaling ops

def _depths_numpy(hole, labels_fn):
  """2 A / P per region, by loops (hole-to-known 4-neighbour edges)."""
  h, w = hole.shape
  area, edges = {}, {}
  for y, x in zip(*np.nonzero(hole)):
    r = labels_fn(y, x)
    area[r] = area.get(r, 0) + 1
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
      yy, xx = y + dy, x + dx
      if 0 <= yy < h and 0 <= xx < w and not hole[yy, xx]:
        edges[r] = edges.get(r, 0) + 1
  return [2.0 * area[r] / max(edges.get(r, 0), 1) for r in sorted(area)]


def test_region_depths_match_numpy():
  hole = np.zeros((70, 90), bool)
  hole[10:30, 10:30] = True          # square: depth = half its side
  hole[50:56, 20:80] = True          # strip: about its width
  hole[0:12, 78:90] = True           # in a corner: the photo's edge adds no known pixel
  boxes, labels = regions.region_boxes(tf.constant(hole), 16)
  got = scaling.region_depths(tf.constant(hole), labels, tf.shape(boxes)[0], 16).numpy()
  lab = labels.numpy()
  expected = _depths_numpy(hole, lambda y, x: lab[y // 16, x // 16])
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert got[lab[0, 80 // 16]] == pytest.approx(12.0)   # 2 * 144 / 24 edges: as a 24² box
  assert got[lab[10 // 16, 10 // 16]] == pytest.approx(10.0)


def test_scale_for_and_context_box():
  assert float(scaling.scale_for(tf.constant(40.0), 112)) == 1.0
  assert float(scaling.scale_for(tf.constant(112.0), 112)) == pytest.approx(0.5)
  assert float(scaling.scale_for(tf.constant(1e6), 112)) == scaling.MIN_SCALE
  box = tf.constant([100, 200, 140, 260])            # 40 x 60 region
  c = scaling.context_box(box, tf.constant(1.0), 32, 1000, 1000, context=1.0).numpy()
  assert list(c) == [30, 140, 210, 320]              # a 180² square around its centre
  c = scaling.context_box(box + 300, tf.constant(0.1), 32, 1000, 1000, context=1.0).numpy()
  assert c[2] - c[0] == 320 and c[3] - c[1] == 320   # at least crop_size / scale
  c = scaling.context_box(box, tf.constant(1.0), 32, 150, 300, context=1.0).numpy()
  assert list(c) == [30, 140, 150, 300]              # clipped to the photo


def test_downscale_hole_covers_every_hole_pixel():
  hole = np.zeros((37, 53), bool)
  hole[5, 7] = True
  hole[20:30, 40:41] = True
  small = scaling.downscale_hole(tf.constant(hole), [12, 18]).numpy()
  back = cv2.resize(small.astype(np.uint8), (53, 37), interpolation=cv2.INTER_NEAREST) > 0
  assert small.sum() >= 2 and back[5, 7] and back[20:30, 40].all()


# ----------------------------------------------------------------------------- strategies

@pytest.mark.slow
def test_known_pixels_exact_and_only_deep_holes_rescaled(tiny):
  gen, cfg = tiny
  rgb, hole = _photo(67, 115), _holes(67, 115)
  run = {s: inpaint.Inpainter(gen, cfg, seam_blend=False, strategy=s, inference=SMALL)
         for s in config_lib.STRATEGIES}
  out = {s: m.inpaint(rgb, hole)[0] for s, m in run.items()}
  for strategy, result in out.items():
    assert result.shape == rgb.shape and result.dtype == np.uint8, strategy
    np.testing.assert_array_equal(result[~hole], rgb[~hole], err_msg=strategy)
  assert run["auto"].choose_strategy(hole) == "crop"
  np.testing.assert_array_equal(out["auto"], out["crop"])
  assert not np.array_equal(out["resize"][hole], out["original"][hole])
  assert not np.array_equal(out["crop"][hole], out["original"][hole])
  # A photo whose holes are all shallow: auto is the original computation, resize does nothing.
  shallow = np.zeros_like(hole)
  shallow[20:26, 30:40] = True
  assert run["auto"].choose_strategy(shallow) == "original"
  np.testing.assert_array_equal(run["auto"].inpaint(rgb, shallow)[0],
                                run["original"].inpaint(rgb, shallow)[0])
  np.testing.assert_array_equal(run["resize"].inpaint(rgb, shallow)[0],
                                run["original"].inpaint(rgb, shallow)[0])


@pytest.mark.slow
def test_auto_decided_in_the_graph_equals_eager_with_blending(tiny):
  """The SavedModel decides `auto` in its graph; test.py eagerly: the same bytes."""
  gen, cfg = tiny
  model = inpaint.Inpainter(gen, cfg, seam_blend=True, strategy="auto", inference=SMALL)
  rgb, hole = _photo(67, 115), _holes(67, 115)
  out, _ = model.inpaint(rgb, hole)
  np.testing.assert_array_equal(out[~hole], rgb[~hole])
  graph = tf.function(lambda a, b: model.fill(a, b), autograph=False)
  np.testing.assert_array_equal(graph(tf.constant(rgb), tf.constant(hole)).numpy(), out)


def _convolutions(concrete):
  """Conv2D nodes of a traced function, its cond branches and loop bodies included."""
  graph = concrete.graph.as_graph_def()
  nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
  return sum(n.op == "Conv2D" for n in nodes)


@pytest.mark.slow
def test_crop_traces_one_network_path_with_the_graphs_bytes(tiny):
  """test.py decides each region's path eagerly: one network copy in the traced graph (the
  in-graph decision holds two, it held four before the resampling alone was conditional),
  and the same bytes as deciding in the graph."""
  gen, cfg = tiny
  model = inpaint.Inpainter(gen, cfg, seam_blend=True, strategy="crop", inference=SMALL)
  rgb, hole = _photo(67, 115), _holes(67, 115)
  deep = np.zeros_like(hole)
  deep[6:46, 8:50] = True
  in_graph = model._function(False, False, "auto", None, "crop")
  for h in (hole, deep):
    np.testing.assert_array_equal(model.inpaint(rgb, h)[0],
                                  in_graph(tf.constant(rgb), tf.constant(h)).numpy())
  path = model.choose_crop_path(deep)
  assert path in ("local", "full")
  one = _convolutions(model._function(False, False, path, None, "crop").get_concrete_function())
  plain = inpaint.Inpainter(gen, cfg, strategy="original", inference=SMALL)
  single = _convolutions(plain._function(False, False, path, None, "original")
                         .get_concrete_function())
  assert one == single
  assert _convolutions(in_graph.get_concrete_function()) > single   # local and full


def test_crop_regions_far_apart_do_not_affect_each_other(tiny):
  """Each region is filled from its own context box: adding a far hole leaves it unchanged."""
  gen, cfg = tiny
  model = inpaint.Inpainter(gen, cfg, seam_blend=False, strategy="crop", inference=SMALL)
  rgb = _photo(96, 320)
  near = np.zeros((96, 320), bool)
  near[20:60, 20:60] = True
  both = near.copy()
  both[30:70, 250:300] = True
  alone, _ = model.inpaint(rgb, near)
  together, _ = model.inpaint(rgb, both)
  np.testing.assert_array_equal(alone[near], together[near])


def test_original_strategy_is_unchanged_by_the_declaration(tiny):
  """`original` ignores the declared sizes: the same bytes as an inpainter without one."""
  gen, cfg = tiny
  rgb, hole = _photo(67, 115), _holes(67, 115)
  plain = inpaint.Inpainter(gen, cfg, seam_blend=True)
  declared = inpaint.Inpainter(gen, cfg, strategy="original", inference=SMALL)
  np.testing.assert_array_equal(plain.inpaint(rgb, hole)[0], declared.inpaint(rgb, hole)[0])


def test_hole_local_work_does_not_grow_with_the_distance_between_holes(tiny):
  """Two small holes in opposite corners cost two small crops."""
  gen, _ = tiny
  costs = []
  for size in (512, 2048):
    mask = np.zeros([1, size, size, 1], np.float32)
    mask[:, 8:16, 8:16] = 1
    mask[:, size - 16:size - 8, size - 16:size - 8] = 1
    boxes = local_plan.hole_boxes(tf.constant(mask))
    assert boxes.shape[0] == 2
    cost = local_plan.plan(gen, boxes, size, size)
    convs = float(cost["local"] - cost["local_attention"])
    side = tf.constant(float(size), tf.float64)
    encoder = float(local_plan.stage_flops(gen.table["attention_encoder"], side, side))
    costs.append(convs - encoder)              # the per-hole convolutions
    assert bool(local_plan.use_local(gen, tf.constant(mask)))
  assert costs[1] == pytest.approx(costs[0], rel=1e-9)


# ----------------------------------------------------------------------------- declaration

def test_declaration_round_trip_and_old_model_json(tmp_path, tiny):
  gen, cfg = tiny
  weights.save_generator(gen, cfg, str(tmp_path / "new"), SMALL)
  assert weights.inference_defaults(str(tmp_path / "new")) == SMALL
  assert weights.load_generator(str(tmp_path / "new"))[1] == cfg
  weights.save_generator(gen, cfg, str(tmp_path / "old"))          # no block: as before
  with open(tmp_path / "old" / "model.json") as f:
    assert "inference" not in json.load(f)
  assert weights.inference_defaults(str(tmp_path / "old")) == config_lib.LEGACY_INFERENCE
  model = inpaint.Inpainter.from_checkpoint(str(tmp_path / "old"))
  assert model.pipeline() == {"strategy": "original", "seam_blend": True}
  bad = json.loads((tmp_path / "new" / "model.json").read_text())
  bad["inference"]["strategy"] = "sideways"
  (tmp_path / "new" / "model.json").write_text(json.dumps(bad))
  with pytest.raises(Exception, match="inference: strategy must be one of"):
    weights.inference_defaults(str(tmp_path / "new"))


def test_demo_and_official_declarations():
  demo = inpaint.Inpainter.from_checkpoint(os.path.join(REPO, "checkpoints", "demo"))
  assert demo.inference == weights.read_inference(os.path.join(REPO, "checkpoints", "demo"))
  assert (demo.inference.crop_size, demo.inference.hole_min, demo.inference.hole_max) == (
      192, 80, 112)                       # TRAINING.md phase 4: 192² crops, 80-112 px boxes
  assert demo.pipeline() == {"strategy": "crop", "seam_blend": True}
  official = inpaint.Inpainter.from_checkpoint(require_shared(os.path.join(GOLDEN, "checkpoint")))
  assert official.pipeline() == {"strategy": "original", "seam_blend": False}
  forced = inpaint.Inpainter.from_checkpoint(os.path.join(GOLDEN, "checkpoint"), strategy="crop",
                                             seam_blend=True)
  assert forced.pipeline() == {"strategy": "crop", "seam_blend": True}


def test_train_config_declares_its_crop_and_holes():
  from model.training import config as train_config
  cfg = train_config.Config()
  assert cfg.inference_defaults() == config_lib.InferenceConfig(
      strategy=train_config.TRAINED_STRATEGY, seam_blend=True, crop_size=256, hole_min=96,
      hole_max=128)
  demo = train_config.Config(data=train_config.DataConfig(
      img_size=192, box_height=112, box_width=112, max_delta_height=32, max_delta_width=32))
  assert (demo.inference_defaults().hole_min, demo.inference_defaults().hole_max) == (80, 112)


def test_a_training_run_folder_declares_its_pipeline(tmp_path):
  """The run folder's model.json (written by the training runner) holds the config's block."""
  from model.training import config as train_config
  from model.training import run_folder
  cfg = train_config.Config(data=train_config.DataConfig(img_size=192))
  run_folder.prepare(cfg, str(tmp_path), log=lambda message: None)
  assert weights.inference_defaults(str(tmp_path)) == cfg.inference_defaults()
  assert weights.inference_defaults(str(tmp_path)).crop_size == 192


def _test_py(tmp_path, ckpt, image, mask, *flags):
  out = tmp_path / f"out{len(list(tmp_path.iterdir()))}.png"
  proc = procs.run("test.py", "--image", image, "--mask", mask, "--output", out,
                   "--checkpoint_dir", ckpt, *flags, cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  return cv2.imread(str(out))[..., ::-1]


@pytest.mark.slow
def test_cli_runs_the_declaration_and_flags_override_it(tmp_path, tiny):
  gen, cfg = tiny
  ckpt = tmp_path / "model"
  weights.save_generator(gen, cfg, str(ckpt), config_lib.InferenceConfig(
      strategy="crop", seam_blend=False, crop_size=32, hole_min=8, hole_max=16))
  rgb, hole = _photo(67, 115), _holes(67, 115)
  image, mask = tmp_path / "in.png", tmp_path / "mask.png"
  cv2.imwrite(str(image), rgb[..., ::-1])
  cv2.imwrite(str(mask), hole.astype(np.uint8) * 255)
  inference = weights.inference_defaults(str(ckpt))

  def expected(**kw):
    return inpaint.Inpainter(gen, cfg, inference=inference, **kw).inpaint(rgb, hole)[0]

  by_default = _test_py(tmp_path, ckpt, image, mask)
  np.testing.assert_array_equal(by_default, expected())
  np.testing.assert_array_equal(by_default, expected(strategy="crop", seam_blend=False))
  overridden = _test_py(tmp_path, ckpt, image, mask, "--strategy", "original", "--seam_blend")
  np.testing.assert_array_equal(overridden, expected(strategy="original", seam_blend=True))
  assert not np.array_equal(overridden, by_default)
