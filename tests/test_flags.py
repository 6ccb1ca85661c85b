"""Tests for flags.py (build_config, presets, validation, JSON) and the no-FLAGS-in-library rule."""
import dataclasses
import json
import os
import re
import subprocess
import sys

from absl import flags as absl_flags
import pytest

import flags as flags_lib
from support import procs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parse(*argv):
  fv = absl_flags.FlagValues()
  flags_lib.define_flags(fv)
  fv(["train.py", *argv])
  return fv


def _config(*argv):
  return flags_lib.build_config(_parse(*argv))


def test_defaults_are_official_v1_and_frozen():
  config = _config()
  assert config.model.arch == "v1" and config.model.cnum == 32
  assert config.model.padding == "zero" and config.model.channel_order == "bgr"
  assert (config.data.img_size, config.data.batch_size) == (256, 16)
  assert (config.data.box_height, config.data.box_width) == (128, 128)
  assert (config.data.max_delta_height, config.data.max_delta_width) == (32, 32)
  assert config.loss == flags_lib.Config().loss and config.loss.l1_loss_region == "box"
  assert config.loss.gan_loss_alpha == 0.001 and config.loss.spatial_discounting_gamma == 0.9
  assert (config.train.lr, config.train.beta1, config.train.beta2) == (1e-4, 0.5, 0.9)
  assert config.train.critic_steps == 5
  assert config.train.checkpoint_every == 10_000 and config.train.val_psteps == 1000
  assert config.train.checkpoint_dir == "checkpoints/run"
  for part in (config, config.model, config.data, config.loss, config.train):
    with pytest.raises(dataclasses.FrozenInstanceError):
      part.seed = 1


def test_every_flag_has_help():
  fv = _parse()
  assert all(flag.help and flag.help != "(no help available)"
             for flag in fv._flags().values())  # pylint: disable=protected-access


def test_tiny_preset_and_explicit_flags_win():
  tiny = _config("--preset=tiny")
  assert (tiny.data.img_size, tiny.model.cnum, tiny.data.batch_size) == (64, 8, 2)
  assert tiny.train.max_iters == 2 and tiny.data.box_height == 32
  assert tiny.train.preset == "tiny"
  custom = _config("--preset=tiny", "--batch_size=4", "--train_spe=1", "--img_size=96")
  assert custom.data.batch_size == 4 and custom.train.checkpoint_every == 1
  assert custom.data.img_size == 96 and custom.data.box_height == 48


def test_arch_gan_and_sentinels():
  gated = _config("--arch=gated", "--gan=sn_patch")
  assert gated.model.padding == "symmetric" and gated.model.gated
  assert gated.model.channel_order == "rgb"
  assert gated.train.critic_steps == 1
  assert _config("--gan=sn_patch", "--critic_steps=3").train.critic_steps == 3
  assert _config("--padding=reflect").model.padding == "reflect"
  assert _config("--box_height=64", "--box_width=96").data.box_width == 96


@pytest.mark.parametrize("argv, message", [
    (["--img_size=100"], "--img_size must be a multiple of 16"),
    (["--distribute=mirrored", "--virtual_cpu_devices=2", "--batch_size=5"], "divisible"),
    (["--box_height=32", "--max_delta_height=64"], "empty hole"),
    (["--box_width=200", "--horizontal_margin=40"], "exceeds --img_size"),
    (["--log_every=0"], "--log_every must be >= 1"),
    (["--critic_steps=0"], "--critic_steps must be >= 1"),
    (["--spatial_discounting_gamma=1.5"], "spatial_discounting_gamma"),
    (["--lr=0"], "--lr must be > 0"),
    (["--beta2=1"], "--beta2"),
    (["--batch_size=0"], "--batch_size must be >= 1"),
    (["--gan_loss_alpha=-1"], "--gan_loss_alpha must be >= 0"),
    (["--micro_batch=-2"], "--micro_batch must be >= 0 (or -1 for auto)"),
    (["--gan=sn_patch", "--micro_batch=4"], "--micro_batch must be 0 or -1 with --gan sn_patch"),
])
def test_invalid_values_give_clear_errors(argv, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    _config(*argv)


def test_enum_flags_reject_unknown_values():
  for argv in (["--arch=v3"], ["--gan=dcgan"], ["--mask_mode=circle"], ["--padding=same"]):
    with pytest.raises(absl_flags.IllegalFlagValueError):
      _parse(*argv)


def test_per_replica_batch_size():
  data = _config().data
  assert data.per_replica_batch_size(4) == 4
  with pytest.raises(ValueError, match="divisible"):
    data.per_replica_batch_size(3)


def test_micro_batches():
  """Auto splits the official batch of 16 into 4 micro-batches of 4 (bench/README.md)."""
  assert _config().train.micro_batch == -1 and _config().micro_batches() == 4
  assert _config().micro_batches(num_replicas=2) == 2           # 8 per replica, micro 4
  assert _config("--img_size=512").micro_batches() == 16        # micro 1
  recipe = _config("--cnum=16", "--img_size=128", "--batch_size=8", "--gan=none")
  assert recipe.micro_batches() == 1                            # auto would allow 32
  assert _config("--micro_batch=0").micro_batches() == 1
  assert _config("--micro_batch=3").micro_batches() == 8        # largest divisor of 16 <= 3
  assert _config("--micro_batch=16").micro_batches() == 1
  assert _config("--batch_size=7", "--micro_batch=4").micro_batches() == 7
  assert _config("--gan=sn_patch").micro_batches() == 1         # power iteration per call
  assert _config("--gan=sn_patch", "--pretrain_coarse_network").micro_batches() == 4


def test_config_built_in_code_resolves_the_sentinels_as_flags_do():
  """Box sizes, the auto L1 region and the critic-step default come from Config, not flags.py."""
  C = flags_lib
  small = C.Config(data=C.DataConfig(img_size=64, mask_mode="free_form"),
                   loss=C.LossConfig(gan="sn_patch"))
  assert small == _config("--img_size=64", "--mask_mode=free_form", "--gan=sn_patch")
  assert (small.data.box_height, small.data.box_width) == (32, 32)
  assert (small.data.max_delta_height, small.data.max_delta_width) == (8, 8)
  assert small.loss.l1_loss_region == "hole" and small.train.critic_steps == 1
  default = C.Config()
  assert default == _config()
  assert (default.data.box_height, default.loss.l1_loss_region) == (128, "box")
  assert default.train.critic_steps == 5
  assert C.Config(loss=C.LossConfig(gan="none")).train.critic_steps == 0
  assert C.parse_scale("1,3") == (1.0, 3.0) and C.parse_scale(None) == (0.0, 0.0)
  with pytest.raises(ValueError, match="MIN,MAX"):
    C.parse_scale("1,nan")


@pytest.mark.parametrize("argv, message", [
    (["--lr=nan"], "--lr must be a finite number"),
    (["--lr=inf"], "--lr must be a finite number"),
    (["--critic_lr=nan"], "--critic_lr must be a finite number"),
    (["--gan_loss_alpha=inf"], "--gan_loss_alpha must be a finite number"),
    (["--l1_loss_alpha=nan"], "--l1_loss_alpha must be a finite number"),
    (["--beta1=nan"], "--beta1 must be a finite number"),
])
def test_non_finite_numbers_are_refused(argv, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    _config(*argv)


def test_distribute_and_its_old_name():
  """train.py's tf.distribute strategy is --distribute; --strategy (the scale strategy in the
  other CLIs) still sets it in train.py, and older config.json files say "strategy"."""
  assert _config("--distribute=mirrored").train.distribute == "mirrored"
  assert _config("--strategy=mirrored").train.distribute == "mirrored"
  assert _config("--strategy=mirrored", "--distribute=default").train.distribute == "default"
  old = flags_lib.Config.from_json('{"train": {"strategy": "multi_worker"}}')
  assert old.train.distribute == "multi_worker"
  assert '"strategy"' not in old.to_json()


def test_train_py_says_strategy_is_now_distribute(tmp_path):
  """Before the flags are checked (here: a bad --batch_size, so TensorFlow is never loaded)."""
  proc = procs.run("train.py", "--train_flist", "x", "--strategy", "default", "--batch_size=0",
                   cwd=tmp_path, timeout=120)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 2 and len(lines) == 2, proc.stderr
  assert lines[0] == ("warning: --strategy is now --distribute in train.py (the old name "
                      "still works)")
  assert lines[1].startswith("error: --batch_size"), proc.stderr


def test_json_round_trip_and_validation():
  config = _config("--arch=gated", "--preset=tiny", "--train_flist=a.flist", "--seed=3")
  text = config.to_json()
  assert flags_lib.Config.from_json(text) == config
  assert flags_lib.Config.from_json("{}") == flags_lib.Config()
  assert flags_lib.Config.from_json('{"train": {"seed": 1}}').train.micro_batch == -1  # older runs
  # steps_per_loop (retired, it never did anything) is still in older runs' config.json
  assert flags_lib.Config.from_json('{"train": {"steps_per_loop": 10}}') == flags_lib.Config()
  with open(os.path.join(REPO, "checkpoints", "demo_run", "config.json")) as f:
    demo = flags_lib.Config.from_json(f.read())
  assert (demo.loss.gan, demo.data.img_size, demo.model.cnum) == ("none", 192, 16)
  with pytest.raises(ValueError, match="unknown train config keys"):
    flags_lib.Config.from_json('{"train": {"speed": 1}}')
  with pytest.raises(ValueError, match="unknown top-level config keys"):
    flags_lib.Config.from_json('{"extra": {}}')
  with pytest.raises(ValueError, match="multiple of 16"):
    flags_lib.Config.from_json('{"data": {"img_size": 100}}')


def test_attention_tile_is_a_call_argument_not_configuration():
  """--attention_tile is gone; config.json of older runs holding the key still loads."""
  assert "attention_tile" not in _parse()._flags()  # pylint: disable=protected-access
  for value in ("null", "16"):
    old = flags_lib.Config.from_json('{"model": {"arch": "v1", "attention_tile": %s}}' % value)
    assert old == flags_lib.Config()
  with open(os.path.join(REPO, "checkpoints", "demo_run", "config.json")) as f:
    values = json.load(f)
  values["model"]["attention_tile"] = None  # as the run's config.json was written
  assert flags_lib.Config.from_json(json.dumps(values)).model.cnum == 16


def test_flags_module_does_not_import_tensorflow():
  code = "import sys, flags; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 0, proc.stderr


_ABSL_FLAGS_IMPORT = re.compile(
    r"^\s*(from\s+absl\s+import\s+[^#\n]*\bflags\b|from\s+absl\.flags\b|import\s+absl\.flags\b"
    r"|from\s+absl\s+import\s*\([^)]*\bflags\b)", re.MULTILINE)


def test_library_code_never_imports_absl_flags():
  offenders = []
  for package in ("model", "layers"):
    for root, _, names in os.walk(os.path.join(REPO, package)):
      for name in names:
        if name.endswith(".py"):
          path = os.path.join(root, name)
          with open(path, encoding="utf-8") as f:
            if _ABSL_FLAGS_IMPORT.search(f.read()):
              offenders.append(os.path.relpath(path, REPO))
  assert not offenders, f"library modules must take explicit arguments, not absl flags: {offenders}"
  assert _ABSL_FLAGS_IMPORT.search("from absl import app, flags\n")
  assert not _ABSL_FLAGS_IMPORT.search("from absl import logging\n")


def test_reconstruction_only_scale_region_and_warm_start_flags():
  recon = _config("--gan=none", "--mask_mode=both", "--random_scale=1,3",
                  "--init_checkpoint=/x/run")
  assert recon.train.critic_steps == 0
  # No critic is built without adversarial loss: config.json says 0 whatever the flag.
  assert _config("--gan=none", "--critic_steps=3").train.critic_steps == 0
  assert _config("--pretrain_coarse_network", "--critic_steps=3").train.critic_steps == 0
  assert recon.loss.l1_loss_region == "hole"
  assert (recon.data.random_scale_min, recon.data.random_scale_max) == (1.0, 3.0)
  assert recon.train.init_checkpoint == "/x/run"
  assert _config().loss.l1_loss_region == "box"  # the release's formula for box masks
  assert _config("--mask_mode=box", "--l1_loss_region=hole").loss.l1_loss_region == "hole"
  assert flags_lib.Config.from_json(recon.to_json()) == recon
  # Hole-shrink defaults scale with the image like the box does (official 32 at 256).
  small = _config("--img_size=64")
  assert (small.data.box_height, small.data.max_delta_height) == (32, 8)
  assert _config().data.max_delta_width == 32


@pytest.mark.parametrize("argv, message", [
    (["--random_scale=2"], "--random_scale must be MIN,MAX"),
    (["--random_scale=a,b"], "--random_scale must be MIN,MAX"),
    (["--random_scale=3,1"], "0 < MIN <= MAX"),
    (["--random_scale=1,2", "--norandom_crop"], "--random_scale needs --random_crop"),
])
def test_bad_random_scale(argv, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    _config(*argv)
