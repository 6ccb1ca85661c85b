"""Mixed precision (model/precision.py, docs/PRECISION.md): every layer, network, loss and training
step under the Keras policies ``float32``, ``mixed_bfloat16`` and ``mixed_float16``.

Nothing here assumes bfloat16 hardware: reduced-precision results are compared with float32
ones within tolerances that hold for TensorFlow's own (Eigen) kernels and for oneDNN's, run here
with ``TF_ENABLE_ONEDNN_OPTS=0`` and ``=1`` on a CPU without AVX-512 or AMX. Tolerances, relative
to the largest float32 output: a rounding step of bfloat16 is 2⁻⁸ (float16 2⁻¹¹) of a value, a
3×3 or 5×5 conv sums up to a few hundred rounded products; the bounds below are about four times
the largest error measured on this machine with either backend.
"""
import json
import os
import subprocess
import sys

from absl import flags as absl_flags
import keras
import numpy as np
import pytest
import tensorflow as tf

import flags as flags_lib
from conftest import GOLDEN, REPO, SHARED, require_shared
from layers.contextual_attention import ContextualAttention
from layers.dis_conv import DisConv
from layers.gen_conv import GenConv, GenDeconv
from model import config as config_lib
from model import critics
from model import generator as generator_lib
from model import precision
from model import weights
from model.errors import UserError
from model.training import inputs as training_inputs
from model.training import nets as nets_lib
from model.training import run_folder

MIXED = ("mixed_bfloat16", "mixed_float16")
# Largest |mixed - float32| / max |float32| of one layer's output.
CONV_TOLERANCE = {"mixed_bfloat16": 2e-2, "mixed_float16": 3e-3}
# Contextual attention: mean and largest error relative to the float32 output's mean and max
# (a bfloat16 score moves the softmax weights by up to ~10 x 2⁻⁸ of the score).
ATTENTION_TOLERANCE = {"mixed_bfloat16": (2e-2, 1e-1), "mixed_float16": (3e-3, 1e-2)}
COMPUTE = {"float32": tf.float32, "mixed_bfloat16": tf.bfloat16, "mixed_float16": tf.float16}
PROBE_FAILURE = "could not create a primitive descriptor for a convolution forward propagation primitive"


def _relative_max_error(y, ref):
  y = tf.cast(y, tf.float32).numpy()
  return float(np.abs(y - ref).max() / np.abs(ref).max())


# ----------------------------------------------------------------------------- names, CPU flags

def test_policy_names_and_compute_dtypes():
  assert precision.PRECISIONS == ("float32", "mixed_bfloat16", "mixed_float16")
  assert [precision.compute_dtype(p) for p in precision.PRECISIONS] == [
      "float32", "bfloat16", "float16"]
  for name in precision.PRECISIONS:
    policy = precision.policy(name)
    assert policy.name == name and policy.variable_dtype == "float32"
  with pytest.raises(ValueError, match="precision must be one of"):
    precision.check("bfloat16")


def test_has_amx_reads_the_cpu_flags(tmp_path):
  amx = tmp_path / "amx"
  amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
                 "processor\t: 1\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
  avx512_bf16 = tmp_path / "avx512"
  avx512_bf16.write_text("flags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
  assert precision.has_amx(str(amx))
  assert not precision.has_amx(str(avx512_bf16))  # bfloat16 instructions are not AMX
  assert not precision.has_amx(str(tmp_path / "missing"))
  assert precision.has_amx() == ("amx_bf16" in open("/proc/cpuinfo").read())


# ----------------------------------------------------------------------------- the probe

def test_probe_runs_bfloat16_on_tensorflows_own_kernels():
  """With oneDNN off, TensorFlow's Eigen kernels run bfloat16 convolutions on any x86 CPU."""
  code = ("from model import precision; import sys; "
          "sys.exit(repr([precision.probe(p) for p in precision.PRECISIONS]))")
  env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.stderr.strip().splitlines()[-1] == "[None, None, None]", proc.stderr


@pytest.fixture
def failing_probe(monkeypatch):
  """The failure oneDNN raises when it believes in bfloat16 support the ISA it may use lacks
  (ONEDNN_MAX_CPU_ISA below AVX512_CORE); this CPU's TensorFlow falls back to Eigen instead."""
  def fail(dtype):
    if dtype == "bfloat16":
      raise tf.errors.InternalError(None, None, PROBE_FAILURE)
  monkeypatch.setattr(precision, "_probe_conv", fail)
  precision._probe_cached.cache_clear()  # pylint: disable=protected-access
  yield
  precision._probe_cached.cache_clear()  # pylint: disable=protected-access


def test_unsupported_precision_is_one_line(failing_probe):
  precision.ensure_supported("float32")
  precision.ensure_supported("mixed_float16")
  with pytest.raises(UserError) as e:
    precision.ensure_supported("mixed_bfloat16")
  message = str(e.value)
  assert "\n" not in message and PROBE_FAILURE in message
  assert "--precision float32" in message and "TF_ENABLE_ONEDNN_OPTS=0" in message
  cfg = flags_lib.Config(train=flags_lib.TrainConfig(precision="mixed_bfloat16"))
  with pytest.raises(UserError, match="cannot run bfloat16 convolutions"):
    nets_lib.build(cfg)


def test_train_cli_says_it_in_one_line(tmp_path):
  """train.py with a failing probe (patched in the child process): one stderr line, exit 1."""
  code = (
      "import runpy, sys\n"
      "from model import precision\n"  # imports no TensorFlow: train.py does, quietly
      "def fail(dtype):\n"
      f"  raise RuntimeError({PROBE_FAILURE!r})\n"
      "precision._probe_conv = fail\n"
      "sys.argv = ['train.py'] + sys.argv[1:]\n"
      "runpy.run_path('train.py', run_name='__main__')\n")
  photos = require_shared(os.path.join(SHARED, "data", "train", "photos"))
  run_dir = tmp_path / "run"
  proc = subprocess.run(
      [sys.executable, "-c", code, "--preset", "tiny", "--train_flist", photos,
       "--checkpoint_dir", str(run_dir), "--precision", "mixed_bfloat16"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: --precision mixed_bfloat16: "), proc.stderr
  assert "TF_ENABLE_ONEDNN_OPTS=0" in lines[0]
  assert not run_dir.exists()  # refused before the run folder was made


# ----------------------------------------------------------------------------- layers

LAYERS = {
    "gen_conv": lambda dtype: GenConv(8, 3, dtype=dtype),
    "gen_conv_reflect_dilated": lambda dtype: GenConv(8, 3, dilation_rate=2, padding="reflect",
                                                      dtype=dtype),
    "gen_conv_gated_strided": lambda dtype: GenConv(8, 5, strides=2, gated=True,
                                                    padding="symmetric", dtype=dtype),
    "gen_conv_output": lambda dtype: GenConv(3, 3, activation=None, dtype=dtype),
    "gen_deconv": lambda dtype: GenDeconv(8, dtype=dtype),
    "dis_conv": lambda dtype: DisConv(8, dtype=dtype),
    "dis_conv_spectral_norm": lambda dtype: DisConv(8, spectral_norm=True, dtype=dtype),
}


@pytest.fixture(scope="module")
def features():
  return np.random.default_rng(0).normal(size=[2, 16, 16, 6]).astype("float32")


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("policy", MIXED)
def test_conv_layers_compute_in_the_policy_and_match_float32(features, name, policy):
  make = LAYERS[name]
  reference = make("float32")
  expected = reference(features).numpy()
  layer = make(policy)
  layer.build(features.shape)
  layer.set_weights(reference.get_weights())
  y = layer(features)
  assert y.dtype == COMPUTE[policy]
  assert all(v.dtype == "float32" for v in layer.weights)
  assert _relative_max_error(y, expected) <= CONV_TOLERANCE[policy]
  # get_config round trip keeps the policy, down to the inner conv.
  clone = type(layer).from_config(layer.get_config())
  assert clone.dtype_policy.name == policy
  inner = clone.gen_conv.conv if isinstance(clone, GenDeconv) else clone.conv
  assert inner.dtype_policy.name == policy


@pytest.mark.parametrize("policy", MIXED)
def test_gen_conv_bias_gradient_sums_in_float32(policy):
  """The bias gradient sums B·H·W terms: TensorFlow's BiasAddGrad on a CPU sums bfloat16 in
  bfloat16 and lost 40 % of it on this 2×64×64 map; GenConv's gradient stays within 1 %."""
  rng = np.random.default_rng(7)
  x = rng.normal(size=[2, 64, 64, 4]).astype("float32")
  upstream = (rng.normal(size=[2, 64, 64, 3]) * 1e-3 + 2e-4).astype("float32")
  grads = {}
  for name in ("float32", policy):
    layer = GenConv(3, 3, activation=None, dtype=name)
    layer.build(x.shape)
    layer.set_weights([np.full([3, 3, 4, 3], 0.01, "float32"), np.zeros([3], "float32")])
    with tf.GradientTape() as tape:
      y = tf.cast(layer(x), tf.float32)
    grads[name] = tape.gradient(y, layer.conv.bias, output_gradients=upstream).numpy()
  np.testing.assert_allclose(grads[policy], grads["float32"], rtol=1e-2)


def test_spectral_norm_keeps_the_float32_kernel_unrounded(features):
  """The normalised kernel the wrapper writes back is computed in float32, not bfloat16."""
  keras.utils.set_random_seed(2)
  layer = DisConv(8, spectral_norm=True, dtype="mixed_bfloat16")
  reference = DisConv(8, spectral_norm=True)
  layer.build(features.shape)
  reference.build(features.shape)
  reference.set_weights(layer.get_weights())
  layer(features, training=True)
  reference(features, training=True)
  kernel = layer.conv.kernel.numpy()
  rounded = tf.cast(tf.cast(kernel, tf.bfloat16), tf.float32).numpy()
  assert not np.array_equal(kernel, rounded)
  np.testing.assert_allclose(kernel, reference.conv.kernel.numpy(), rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def attention_inputs():
  rng = np.random.default_rng(1)
  f = np.maximum(rng.normal(size=[2, 16, 16, 8]), 0).astype("float32")  # ReLU features (pmconv6)
  mask = np.zeros([2, 16, 16, 1], "float32")
  mask[0, 4:12, 3:10] = 1
  mask[1, 2:8, 6:14] = 1
  return f, mask


@pytest.mark.parametrize("policy", MIXED)
@pytest.mark.parametrize("tile", [None, 3])
def test_contextual_attention_under_each_policy(attention_inputs, policy, tile):
  f, mask = attention_inputs
  y32, offsets32 = ContextualAttention()((f, f, mask), tile_size=tile)
  layer = ContextualAttention(dtype=policy)
  y, offsets = layer((f, f, mask), tile_size=tile)
  assert y.dtype == COMPUTE[policy] and offsets.dtype == tf.int32
  diff = np.abs(tf.cast(y, tf.float32).numpy() - y32.numpy())
  mean_tol, max_tol = ATTENTION_TOLERANCE[policy]
  assert diff.mean() <= mean_tol * np.abs(y32.numpy()).mean()
  assert diff.max() <= max_tol * np.abs(y32.numpy()).max()
  assert np.mean(offsets.numpy() == offsets32.numpy()) >= 0.95
  clone = ContextualAttention.from_config(layer.get_config())
  assert clone.dtype_policy.name == policy


def test_float16_attention_does_not_overflow_on_large_features(attention_inputs):
  """Raw patch products of features ~100 exceed float16's 65504; the matching runs in float32."""
  f, mask = attention_inputs
  big = 100.0 * f
  y32, offsets32 = ContextualAttention()((big, big, mask))
  y, offsets = ContextualAttention(dtype="mixed_float16")((big, big, mask))
  assert np.isfinite(tf.cast(y, tf.float32).numpy()).all()
  assert _relative_max_error(y, y32.numpy()) <= 1e-2
  assert np.mean(offsets.numpy() == offsets32.numpy()) >= 0.95


# ----------------------------------------------------------------------------- networks

@pytest.fixture(scope="module")
def photo_batch():
  rng = np.random.default_rng(3)
  x = np.clip(rng.normal(scale=0.5, size=[2, 64, 64, 3]), -1, 1).astype("float32")
  x = tf.nn.avg_pool2d(x, 5, 1, "SAME").numpy()  # smooth, like photos
  mask = np.zeros([2, 64, 64, 1], "float32")
  mask[0, 16:40, 20:44] = 1
  mask[1, 8:30, 30:60] = 1
  return x, mask


@pytest.fixture(scope="module")
def generator32():
  keras.utils.set_random_seed(4)
  return generator_lib.build_generator(config_lib.ModelConfig(cnum=8))


@pytest.mark.parametrize("policy", MIXED)
def test_generator_runs_under_each_policy(generator32, photo_batch, policy):
  x, mask = photo_batch
  x_in = x * (1 - mask)
  x1_ref, x2_ref, offsets_ref = generator32((x_in, mask))
  gen = generator_lib.build_generator(config_lib.ModelConfig(cnum=8), dtype=policy)
  gen.set_weights(generator32.get_weights())
  assert all(v.dtype == "float32" for v in gen.weights)
  x1, x2, offsets = gen((x_in, mask))
  assert (x1.dtype, x2.dtype, offsets.dtype) == (tf.float32, tf.float32, tf.int32)
  assert gen.hallucination(gen.stage2_input(x_in, mask, x1)).dtype == COMPUTE[policy]
  # Whole network: errors of 37 layers add up; the images are in [-1, 1].
  bound = 0.05 if policy == "mixed_bfloat16" else 0.01
  assert np.abs(x1.numpy() - x1_ref.numpy()).max() <= bound
  assert np.abs(x2.numpy() - x2_ref.numpy()).max() <= bound
  assert np.mean(offsets.numpy() == offsets_ref.numpy()) >= 0.9
  # The known pixels of the composite are the input's exactly (pixel mapping in float32).
  complete = x2 * mask + x_in * (1 - mask)
  np.testing.assert_array_equal(complete.numpy()[mask[..., 0] == 0], x_in[mask[..., 0] == 0])
  config = gen.get_config()
  assert keras.saving.deserialize_keras_object(config["dtype"]).name == policy


def test_global_policy_is_honoured_and_never_changed(photo_batch):
  """The issue's example: InpaintGenerator under a global mixed_bfloat16 policy; and the library
  (build_generator, nets.build) leaves the global policy as it found it."""
  x, mask = photo_batch
  before = keras.config.dtype_policy().name
  try:
    keras.config.set_dtype_policy("mixed_bfloat16")
    gen = generator_lib.InpaintGenerator(cnum=4)
    x1, x2, _ = gen((x * (1 - mask), mask))
    assert gen.conv_layers()[0].compute_dtype == "bfloat16" and x2.dtype == tf.float32
    # An explicit precision wins over the global policy.
    assert generator_lib.build_generator(config_lib.ModelConfig(cnum=4)).compute_dtype == "float32"
  finally:
    keras.config.set_dtype_policy(before)
  generator_lib.build_generator(config_lib.ModelConfig(cnum=4), dtype="mixed_float16")
  assert keras.config.dtype_policy().name == before


@pytest.mark.parametrize("policy", MIXED)
def test_critics_run_under_each_policy(photo_batch, policy):
  x, mask = photo_batch
  cases = [
      (critics.GlobalCritic, dict(cnum=4, input_size=64), x),
      (critics.LocalCritic, dict(cnum=4, input_size=32), x[:, :32, :32]),
      (critics.SNPatchCritic, dict(cnum=4), np.concatenate([x, mask], -1)),
  ]
  for cls, kwargs, inp in cases:
    keras.utils.set_random_seed(5)
    reference = cls(**kwargs)
    critic = cls(**kwargs, dtype=policy)
    critic.set_weights(reference.get_weights())
    score = critic(inp, training=False)
    expected = reference(inp, training=False).numpy()
    assert score.dtype == tf.float32 and all(v.dtype == "float32" for v in critic.weights)
    assert critic.convs[0].compute_dtype == precision.compute_dtype(policy)
    assert np.abs(score.numpy() - expected).max() <= 5 * CONV_TOLERANCE[policy] * (
        np.abs(expected).max() + 1e-3)
    assert cls.from_config(critic.get_config()).convs[-1].dtype_policy.name == policy


# ----------------------------------------------------------------------------- checkpoints

@pytest.mark.parametrize("saved_in, loaded_in", [("mixed_bfloat16", "float32"),
                                                 ("float32", "mixed_float16")])
def test_checkpoints_cross_policies(tmp_path, photo_batch, saved_in, loaded_in):
  cfg = config_lib.ModelConfig(cnum=4)
  keras.utils.set_random_seed(6)
  gen = generator_lib.build_generator(cfg, dtype=saved_in)
  weights.save_generator(gen, cfg, str(tmp_path))
  loaded, loaded_cfg = weights.load_generator(str(tmp_path), dtype=loaded_in)
  assert loaded_cfg == cfg and loaded.compute_dtype == precision.compute_dtype(loaded_in)
  for a, b in zip(gen.weights, loaded.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  x, mask = photo_batch
  assert np.isfinite(loaded((x * (1 - mask), mask))[1].numpy()).all()


def test_official_checkpoint_loads_under_every_policy(photo_batch):
  path = require_shared(os.path.join(GOLDEN, "checkpoint"))
  reference, _ = weights.load_official(path)
  x, mask = photo_batch
  x_in = x * (1 - mask)
  _, x2_ref, _ = reference((x_in, mask))
  for policy in MIXED:
    gen, cfg = weights.load_generator(path, dtype=policy)
    assert cfg.cnum == 32 and gen.compute_dtype == precision.compute_dtype(policy)
    for a, b in zip(reference.weights, gen.weights):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
    _, x2, _ = gen((x_in, mask))
    # Hole pixels of the released model: mean error small against the [-1, 1] range.
    hole = mask[..., 0] == 1
    assert np.abs(x2.numpy() - x2_ref.numpy())[hole].mean() <= (
        0.02 if policy == "mixed_bfloat16" else 0.003)


# ----------------------------------------------------------------------------- training

def _train_config(policy, gan="wgan_gp", **train):
  return flags_lib.Config(
      model=config_lib.preset("v1", cnum=8),
      data=flags_lib.DataConfig(img_size=64, batch_size=2),
      loss=flags_lib.LossConfig(critic_cnum=8, gan=gan),
      train=flags_lib.TrainConfig(precision=policy, micro_batch=0, **train))


def _flat(tensors):
  return np.concatenate([np.asarray(t).ravel() for t in tensors])


def _cosine(a, b):
  return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def training_batch(photo_batch):
  return training_inputs.add_training_inputs(tf.constant(photo_batch[0]), 0, 3, "box", (32, 32),
                                             (8, 8))


def _one_step(policy, batch, gan="wgan_gp"):
  """Loss terms, gradients (unscaled) and weight changes of one critic and one generator update."""
  keras.utils.set_random_seed(3)
  nets = nets_lib.build(_train_config(policy, gan))
  steps = nets.steps
  g_vars, d_vars = nets.generator.trainable_variables, steps.critic_variables()
  with tf.GradientTape() as tape:
    g_terms, _ = steps.generator_losses(batch)
  g_grads = tape.gradient(g_terms["g_loss"], g_vars)
  with tf.GradientTape() as tape:
    d_terms = steps.critic_losses(batch, tf.stop_gradient(steps.forward(batch)[4]))
  d_grads = tape.gradient(d_terms["d_loss"], d_vars)
  before = [v.numpy() for v in g_vars + d_vars]
  tf.function(steps.d_step)(batch)
  tf.function(steps.g_step)(batch)
  change = [v.numpy() - b for v, b in zip(g_vars + d_vars, before)]
  return nets, {**g_terms, **d_terms}, _flat(g_grads), _flat(d_grads), _flat(change), before


@pytest.fixture(scope="module")
def float32_step(training_batch):
  return _one_step("float32", training_batch)


# Cosines of the mixed-precision generator gradient, critic gradient and applied update with the
# float32 ones. The critics' is the loosest: their WGAN loss is a difference of two nearly equal
# means (real and completed images differ only in the hole), and the completed images themselves
# come from the generator in that precision.
STEP_TOLERANCE = {"mixed_bfloat16": (0.99, 0.95, 0.9), "mixed_float16": (0.995, 0.99, 0.98)}


@pytest.mark.parametrize("policy", MIXED)
def test_mixed_training_step_equals_the_float32_step(float32_step, training_batch, policy):
  """Same initial weights, same batch: loss terms within 1 % (+0.002), gradients and the
  applied updates (one critic, then one generator update) pointing the same way (cosine bounds
  in STEP_TOLERANCE)."""
  _, terms32, g32, d32, change32, before32 = float32_step
  nets, terms, g, d, change, before = _one_step(policy, training_batch)
  for a, b in zip(before, before32):  # same float32 initial weights whatever the policy
    np.testing.assert_array_equal(a, b)
  for key, value in terms32.items():
    assert abs(float(terms[key]) - float(value)) <= 0.01 * abs(float(value)) + 2e-3, key
  g_cos, d_cos, update_cos = STEP_TOLERANCE[policy]
  assert _cosine(g, g32) >= g_cos
  assert _cosine(d, d32) >= d_cos
  assert _cosine(change, change32) >= update_cos
  scaled = isinstance(nets.g_opt, keras.optimizers.LossScaleOptimizer)
  assert scaled == (policy == "mixed_float16")
  assert isinstance(nets.d_opt, keras.optimizers.LossScaleOptimizer) == scaled
  if scaled:  # the step was applied, not skipped for non-finite gradients
    assert float(nets.g_opt.dynamic_scale) == 2.0 ** 15 and int(nets.g_opt.iterations) == 1


def test_sn_patch_and_clipped_float16_steps(training_batch):
  """SN-PatchGAN under mixed_float16 with gradient clipping: the clip applies to the unscaled
  gradients (an update of at most lr per weight from Adam either way; finite everywhere)."""
  keras.utils.set_random_seed(3)
  cfg = _train_config("mixed_float16", gan="sn_patch", gradient_clip=True, gradient_clip_value=0.1)
  nets = nets_lib.build(cfg)
  before = [v.numpy() for v in nets.generator.trainable_variables]
  tf.function(nets.steps.d_step)(training_batch)
  terms = tf.function(nets.steps.g_step)(training_batch)
  assert all(np.isfinite(float(v)) for v in terms.values())
  change = _flat([v.numpy() - b for v, b in zip(nets.generator.trainable_variables, before)])
  assert np.isfinite(change).all() and 0 < np.abs(change).max() <= 1.01 * cfg.train.lr


def test_config_records_precision_and_resume_refuses_a_change(tmp_path):
  cfg = _train_config("mixed_bfloat16", checkpoint_dir=str(tmp_path))
  assert json.loads(cfg.to_json())["train"]["precision"] == "mixed_bfloat16"
  assert flags_lib.Config.from_json(cfg.to_json()) == cfg
  (tmp_path / run_folder.CONFIG_JSON).write_text(cfg.to_json())
  (tmp_path / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
  run_folder.check(cfg, str(tmp_path))  # same precision: resumes
  with pytest.raises(UserError) as e:
    run_folder.check(_train_config("float32", checkpoint_dir=str(tmp_path)), str(tmp_path))
  assert "\n" not in str(e.value)
  assert "cannot resume: precision float32 (the run has mixed_bfloat16)" in str(e.value)
  # A config.json written before --precision existed is a float32 run.
  old = json.loads(_train_config("float32").to_json())
  del old["train"]["precision"]
  assert flags_lib.Config.from_json(json.dumps(old)).train.precision == "float32"


def test_precision_flag():
  fv = absl_flags.FlagValues()
  flags_lib.define_flags(fv)
  fv(["train.py", "--precision", "mixed_float16"])
  assert flags_lib.build_config(fv).train.precision == "mixed_float16"
  fv = absl_flags.FlagValues()
  flags_lib.define_flags(fv)
  fv(["train.py"])
  assert flags_lib.build_config(fv).train.precision == "float32"
  with pytest.raises(ValueError, match="--precision must be one of"):
    flags_lib.TrainConfig(precision="bfloat16")


def test_cli_trains_float16_mirrored_and_refuses_to_resume_in_float32(tmp_path):
  """train.py --precision mixed_float16 on two virtual CPUs (MirroredStrategy, loss-scale
  optimizers), then a resume asking for float32: one line, nothing written."""
  photos = require_shared(os.path.join(SHARED, "data", "train", "photos"))
  run_dir = tmp_path / "run"
  common = [sys.executable, os.path.join(REPO, "train.py"), "--preset", "tiny", "--img_size", "32",
            "--cnum", "4", "--critic_cnum", "4", "--critic_steps", "1", "--max_iters", "1",
            "--val_every", "0", "--val_psteps", "0", "--train_flist", photos,
            "--checkpoint_dir", str(run_dir)]
  proc = subprocess.run(common + ["--precision", "mixed_float16", "--strategy", "mirrored",
                                  "--virtual_cpu_devices", "2"],
                        cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  saved = json.loads((run_dir / "config.json").read_text())
  assert saved["train"]["precision"] == "mixed_float16"
  assert tf.train.latest_checkpoint(str(run_dir))
  before = sorted(os.listdir(run_dir))
  proc = subprocess.run(common + ["--max_iters", "2"], cwd=REPO, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "precision float32 (the run has mixed_float16)" in lines[0], proc.stderr
  assert sorted(os.listdir(run_dir)) == before
  # The run's generator loads in float32 (and any other policy) all the same.
  gen, _ = weights.load_generator(str(run_dir))
  assert gen.compute_dtype == "float32"
