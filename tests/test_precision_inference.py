"""Inference precision: --precision, the model's declaration, auto, float32 by default, closeness.

Nothing here assumes bfloat16 hardware: the tolerances comparing precisions hold with oneDNN on
and off (TensorFlow's own bfloat16 kernels), and a machine that cannot run bfloat16 at all is
simulated by making the probe of ``model/precision.py`` fail.
"""
import json
import os
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import EXAMPLES, GOLDEN, REPO, require_shared
from model import config as config_lib
from model import generator as generator_lib
from model import precision as precision_lib
from model import weights
from model.errors import UserError
from model.inference import inpainter as inpaint
from model.inference import run_precision

CLIS = ("test.py", "evaluate.py", "serve.py", "export.py")
# /proc/cpuinfo flags lines (abridged) of three kinds of x86 server.
XEON_AMX = ("processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx avx2 avx512f "
            "avx512_bf16 amx_bf16 amx_tile amx_int8\nbugs\t\t: spectre_v1\n")
XEON_AVX512_BF16 = ("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16 "
                    "avx512_vnni\n")
EPYC_AVX2 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma\n"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
  """A cnum-4 model folder (seeded random weights) whose model.json has no precision key."""
  keras.utils.set_random_seed(11)
  cfg = config_lib.preset("v1", cnum=4)
  folder = str(tmp_path_factory.mktemp("tiny") / "model")
  weights.save_generator(generator_lib.build_generator(cfg), cfg, folder,
                         config_lib.InferenceConfig(strategy="original", seam_blend=True))
  with open(os.path.join(folder, "model.json")) as f:
    values = json.load(f)
  del values["inference"]["precision"]         # as written before the key existed
  with open(os.path.join(folder, "model.json"), "w") as f:
    json.dump(values, f)
  return folder


def _photo(h=96, w=128):
  rgb = cv2.imread(os.path.join(require_shared(EXAMPLES), "sklearn_china.png"))[..., ::-1]
  rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
  hole = np.zeros((h, w), bool)
  hole[h // 4:3 * h // 4, w // 3:2 * w // 3] = True
  return np.ascontiguousarray(rgb), hole


def _cpuinfo(tmp_path, text):
  path = tmp_path / "cpuinfo"
  path.write_text(text)
  return str(path)


# ----------------------------------------------------------------------------- flags

@pytest.mark.parametrize("script", CLIS)
def test_every_inference_cli_takes_precision_and_checks_it(script):
  proc = subprocess.run([sys.executable, os.path.join(REPO, script), "--precision", "bfloat16"],
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: flag --precision=bfloat16"), lines
  for value in ("float32", "mixed_bfloat16", "mixed_float16", "auto"):
    assert value in lines[0]


def test_cli_precision_flag_parses_and_defaults_to_the_declaration():
  import cli
  from absl import flags
  values = flags.FlagValues()
  cli.define_precision(flag_values=values)
  values(["prog"])
  assert values.precision is None                           # what the model declares
  values(["prog", "--precision", "mixed_bfloat16"])
  assert values.precision == "mixed_bfloat16"


def test_precision_lists_agree():
  assert config_lib.INFERENCE_PRECISIONS == precision_lib.PRECISIONS + (run_precision.AUTO,)


# ----------------------------------------------------------------------------- declaration

def test_inference_block_round_trip(tmp_path, tiny_dir):
  block = config_lib.InferenceConfig(strategy="crop", seam_blend=True, crop_size=64,
                                     hole_min=16, hole_max=32, precision="auto")
  assert config_lib.InferenceConfig.from_dict(block.to_dict()) == block
  gen, cfg = weights.load_generator(tiny_dir)
  weights.save_generator(gen, cfg, str(tmp_path / "m"), block)
  assert weights.inference_defaults(str(tmp_path / "m")) == block
  # A block without the key (model.json files written before it) and official checkpoints:
  # float32, the release's computation.
  assert weights.inference_defaults(tiny_dir).precision == "float32"
  assert config_lib.OFFICIAL_INFERENCE.precision == "float32"
  values = json.loads((tmp_path / "m" / "model.json").read_text())
  values["inference"]["precision"] = "bfloat16"
  (tmp_path / "m" / "model.json").write_text(json.dumps(values))
  with pytest.raises(UserError, match="inference: precision must be one of"):
    weights.inference_defaults(str(tmp_path / "m"))


def test_declaration_is_used_and_the_argument_overrides_it(tmp_path, tiny_dir):
  gen, cfg = weights.load_generator(tiny_dir)
  weights.save_generator(gen, cfg, str(tmp_path / "m"), config_lib.InferenceConfig(
      strategy="original", precision="mixed_bfloat16"))
  declared = inpaint.Inpainter.from_checkpoint(str(tmp_path / "m"))
  assert declared.precision == "mixed_bfloat16"
  assert declared.generator.dtype_policy.name == "mixed_bfloat16"
  forced = inpaint.Inpainter.from_checkpoint(str(tmp_path / "m"), precision="float32")
  assert forced.precision == forced.generator.dtype_policy.name == "float32"
  # A float32 generator handed over is rebuilt under the policy with the same weights.
  rebuilt = inpaint.Inpainter(gen, cfg, precision="mixed_bfloat16")
  assert rebuilt.generator is not gen
  for a, b in zip(rebuilt.generator.weights, gen.weights, strict=True):
    assert a.dtype == tf.float32
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert inpaint.Inpainter(gen, cfg, precision="float32").generator is gen


def test_demo_declares_auto():
  """bench/PRECISION_INFERENCE_RESULTS.md: bfloat16 costs the demo less than 0.05 dB on dev."""
  demo = os.path.join(REPO, "checkpoints", "demo")
  assert weights.inference_defaults(demo).precision == "auto"


# ----------------------------------------------------------------------------- auto

@pytest.mark.parametrize("text, gpus, environ, expected", [
    (XEON_AMX, [], {}, "mixed_bfloat16"),
    (XEON_AMX, [], {"TF_ENABLE_ONEDNN_OPTS": "0"}, "float32"),          # Eigen: no AMX
    (XEON_AMX, [], {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, "float32"),
    (XEON_AMX, [], {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, "mixed_bfloat16"),
    (XEON_AMX, [], {"ONEDNN_MAX_CPU_ISA": "ALL"}, "mixed_bfloat16"),
    (XEON_AVX512_BF16, [], {}, "float32"),     # bfloat16 instructions, no tiles: slower
    (EPYC_AVX2, [], {}, "float32"),
    ("", [], {}, "float32"),                   # no /proc/cpuinfo to read
    (EPYC_AVX2, [(8, 0)], {}, "mixed_bfloat16"),   # A100
    (EPYC_AVX2, [(9, 0), (7, 0)], {}, "mixed_bfloat16"),
    (XEON_AMX, [(7, 5)], {}, "float32"),       # T4: the network runs on the GPU
])
def test_auto_detection(tmp_path, text, gpus, environ, expected):
  cpuinfo = _cpuinfo(tmp_path, text) if text else str(tmp_path / "absent")
  assert run_precision.auto_precision(cpuinfo, gpus, environ) == expected


def test_auto_on_this_machine_follows_its_cpu():
  expected = "mixed_bfloat16" if precision_lib.has_amx() and run_precision.onednn_may_use_amx(
      os.environ) else "float32"
  if run_precision.gpu_capabilities():
    pytest.skip("a GPU decides here")
  assert run_precision.auto_precision() == expected


def test_auto_falls_back_to_float32_where_bfloat16_cannot_run(tmp_path, monkeypatch):
  amx = _cpuinfo(tmp_path, XEON_AMX)
  monkeypatch.setattr(precision_lib, "probe", lambda p: None)
  assert run_precision.resolve("auto", cpuinfo=amx, gpus=[], environ={}) == "mixed_bfloat16"
  monkeypatch.setattr(precision_lib, "probe",
                      lambda p: None if p == "float32" else "could not create a primitive")
  assert run_precision.resolve("auto", cpuinfo=amx, gpus=[], environ={}) == "float32"
  with pytest.raises(UserError, match=r"^--precision mixed_bfloat16: .*could not create"):
    run_precision.resolve("mixed_bfloat16")


# ----------------------------------------------------------------------------- default path

def test_official_checkpoint_runs_float32_by_default_graph_and_bytes():
  """The default path of an official checkpoint is the float32 release computation: no
  half-precision tensor anywhere in its graph, and the same bytes as a float32 generator built
  without any precision argument (tests/test_golden.py holds those bytes to the release's)."""
  checkpoint = require_shared(os.path.join(GOLDEN, "checkpoint"))
  model = inpaint.Inpainter.from_checkpoint(checkpoint)
  assert model.precision == model.generator.dtype_policy.name == "float32"
  gen, cfg = weights.load_generator(checkpoint)
  plain = inpaint.Inpainter(gen, cfg, inference=config_lib.OFFICIAL_INFERENCE)
  assert plain.generator is gen
  rgb, hole = _photo(64, 80)
  graph = model._function(False, False, "full").get_concrete_function().graph
  dtypes = {out.dtype for op in graph.get_operations() for out in op.outputs}
  assert not dtypes & {tf.bfloat16, tf.float16}
  np.testing.assert_array_equal(model.inpaint(rgb, hole)[0], plain.inpaint(rgb, hole)[0])


# ----------------------------------------------------------------------------- closeness

def test_bfloat16_output_is_close_to_float32_on_a_small_photo():
  """The bundled demo, network output without blending (what bfloat16 changes): known pixels
  equal; hole pixels within a few 8-bit levels (bfloat16 keeps 8 significant bits)."""
  rgb, hole = _photo()
  demo = os.path.join(REPO, "checkpoints", "demo")
  outs = {}
  for precision in ("float32", "mixed_bfloat16"):
    model = inpaint.Inpainter.from_checkpoint(demo, strategy="original", seam_blend=False,
                                              precision=precision)
    outs[precision] = model.inpaint(rgb, hole)[0].astype(int)
  diff = np.abs(outs["float32"] - outs["mixed_bfloat16"])
  assert not diff[~hole].any()
  assert diff[hole].mean() <= 1.5 and diff.max() <= 16, (diff[hole].mean(), diff.max())
  assert diff[hole].any()      # the two precisions did run different arithmetic


# ----------------------------------------------------------------------------- the CLI

def _test_py(tmp_path, checkpoint, precision, probe_fails=False):
  """test.py in a subprocess on a small photo; with ``probe_fails`` TensorFlow's bfloat16
  convolution fails as on a CPU whose oneDNN cannot create it."""
  rgb, hole = _photo(48, 64)
  image, mask, out = tmp_path / "in.png", tmp_path / "mask.png", tmp_path / "out.png"
  cv2.imwrite(str(image), rgb[..., ::-1])
  cv2.imwrite(str(mask), hole.astype(np.uint8) * 255)
  argv = [os.path.join(REPO, "test.py"), "--image", str(image), "--mask", str(mask),
          "--output", str(out), "--checkpoint_dir", checkpoint, "--precision", precision]
  runner = tmp_path / "run.py"
  runner.write_text(
      "import runpy, sys\n"
      f"sys.path.insert(0, {REPO!r})\n"
      "from model import precision\n"
      "def fail(dtype):\n"
      "  raise RuntimeError('could not create a primitive descriptor for a convolution "
      "forward propagation primitive')\n"
      f"if {probe_fails!r}:\n"
      "  precision._probe_conv = fail\n"
      f"sys.argv = {argv!r}\n"
      "runpy.run_path(sys.argv[0], run_name='__main__')\n")
  proc = subprocess.run([sys.executable, str(runner)], capture_output=True, text=True,
                        timeout=600)
  return proc, out, rgb, hole


def test_cli_mixed_bfloat16_where_it_cannot_run_is_one_line(tmp_path, tiny_dir):
  proc, out, _, _ = _test_py(tmp_path, tiny_dir, "mixed_bfloat16", probe_fails=True)
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, lines
  assert lines[0].startswith("error: --precision mixed_bfloat16: TensorFlow cannot run "
                             "bfloat16 convolutions on this machine (could not create a "
                             "primitive descriptor"), lines
  assert "--precision float32" in lines[0] and not out.exists()
  # auto on the same machine falls back to float32 and runs.
  proc, out, _, _ = _test_py(tmp_path, tiny_dir, "auto", probe_fails=True)
  assert proc.returncode == 0, proc.stderr
  assert out.exists()


def test_cli_mixed_bfloat16_on_this_machine(tmp_path, tiny_dir):
  """What this machine does with bfloat16 (oneDNN on or off): it runs and writes what the
  library computes, or it ends in one line (never a traceback)."""
  proc, out, rgb, hole = _test_py(tmp_path, tiny_dir, "mixed_bfloat16")
  assert "Traceback" not in proc.stderr
  if proc.returncode != 0:
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return
  model = inpaint.Inpainter.from_checkpoint(tiny_dir, precision="mixed_bfloat16")
  np.testing.assert_array_equal(cv2.imread(str(out))[..., ::-1], model.inpaint(rgb, hole)[0])


def test_portable_export_refuses_a_mixed_precision(tmp_path, tiny_dir):
  proc = subprocess.run([sys.executable, os.path.join(REPO, "export.py"), "--format", "onnx",
                         "--checkpoint_dir", tiny_dir, "--export_dir", str(tmp_path / "x"),
                         "--precision", "mixed_bfloat16"], capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      "error: --format onnx runs float32 only (ONNX Runtime's and LiteRT's CPU convolutions "
      "take no bfloat16 or float16); drop --precision mixed_bfloat16 or export a SavedModel"]
  assert not (tmp_path / "x").exists()


def test_savedmodel_bakes_the_precision_in(tmp_path, tiny_dir):
  """The exported serving_default computes what the Inpainter computes under that precision
  (same bytes), which is not the float32 result."""
  from model.inference import serving
  gen, cfg = weights.load_generator(tiny_dir)
  model = serving.ServingModel(gen, cfg, seam_blend=False, precision="mixed_bfloat16")
  assert model.inpainter.generator.dtype_policy.name == "mixed_bfloat16"
  model.archive("serving").write_out(str(tmp_path / "sm"), verbose=False)
  serve = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
  rgb, hole = _photo(40, 48)
  got = serve(image=tf.constant(rgb[None]),
              mask=tf.constant(hole[None, :, :, None].astype(np.uint8) * 255))["inpainted"]
  bf16 = inpaint.Inpainter(gen, cfg, seam_blend=False, precision="mixed_bfloat16").inpaint(
      rgb, hole)[0]
  f32 = inpaint.Inpainter(gen, cfg, seam_blend=False).inpaint(rgb, hole)[0]
  np.testing.assert_array_equal(got.numpy()[0], bf16)
  assert not np.array_equal(bf16, f32)
