"""model.training.runner.run called in this process (tiny nets on 32x32 crops of real photos).

The subprocess tests of tests/test_train.py check the CLI; these call the runner as a
function: a stop requested from another thread, the run folder's lock, resuming with
settings that change what the checkpoint holds, failed saves.
"""
import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import threading

import cv2
import pytest

import flags as flags_lib
from conftest import SHARED, require_shared
from support import procs
from model import config as config_lib
from model.errors import UserError
from model.training import run_folder
from model.training import runner

PHOTOS = os.path.join(SHARED, "data", "train", "photos")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  """Four training photos downscaled to a short side of 40 px."""
  src = require_shared(PHOTOS)
  out = tmp_path_factory.mktemp("photos")
  for name in sorted(n for n in os.listdir(src) if n.endswith(".jpg"))[:4]:
    image = cv2.imread(os.path.join(src, name))
    h, w = image.shape[:2]
    scale = 40 / min(h, w)
    cv2.imwrite(str(out / (name[:-4] + ".png")),
                cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA))
  return str(out)


def _cfg(run_dir, photos, loss=None, data=None, **train):
  values = dict(checkpoint_dir=str(run_dir), max_iters=2, critic_steps=1, log_every=1,
                val_every=0, checkpoint_every=1000, viz_max_out=2, seed=7)
  values.update(train)
  return flags_lib.Config(
      model=config_lib.preset("v1", cnum=4),
      data=flags_lib.DataConfig(**{"train_flist": photos, "img_size": 32, "batch_size": 2,
                                   "val_count": 2, "static_view_size": 2, **(data or {})}),
      loss=flags_lib.LossConfig(**{"critic_cnum": 4, **(loss or {})}),
      train=flags_lib.TrainConfig(**values))


def _run(cfg, stop_event=None, stop_at=None):
  """runner.run with its lines collected; ``stop_at``: set ``stop_event`` on that line prefix."""
  lines = []

  def log(line):
    lines.append(line)
    if stop_at and line.startswith(stop_at):
      stop_event.set()

  return runner.run(cfg, stop_event=stop_event, log=log), lines


def _files(folder):
  return {n: (folder / n).read_bytes() for n in sorted(os.listdir(folder))
          if (folder / n).is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, photos):
  """A 2-step WGAN-GP run stopped by ``stop_event`` (asked for 1000 steps)."""
  run_dir = tmp_path_factory.mktemp("runs") / "stopped"
  stop = threading.Event()
  status, lines = _run(_cfg(run_dir, photos, max_iters=1000), stop, stop_at="step 2/")
  return run_dir, status, lines


@pytest.mark.slow
def test_stop_event_stops_after_the_step_saves_and_resumes(trained, photos, tmp_path):
  run_dir, status, lines = trained
  assert status == 0, lines
  assert any(line.startswith("stop requested: stopping after the current step") for line in lines)
  assert f"saved {run_dir}/ckpt-2 (stop requested)" in lines, lines
  assert lines[-1] == "stopped by stop requested at step 2; rerun to resume"
  assert not runner.unfinished_threads()
  # Resumed with a different learning rate, critic lr and warm-up: allowed, they change no shape.
  copy = tmp_path / "copy"
  shutil.copytree(run_dir, copy)
  status, lines = _run(_cfg(copy, photos, max_iters=3, lr=3e-5, critic_lr=1e-4, critic_warmup=1))
  assert status == 0, lines
  assert f"resumed from {copy}/ckpt-2 at step 2" in lines
  assert f"saved {copy}/ckpt-3 (final)" in lines, lines
  # This run's rates won over the checkpointed ones (the critics' was reset to --lr before).
  import tensorflow as tf
  saved = tf.train.load_checkpoint(str(copy / "ckpt-3"))
  rate = lambda opt: float(saved.get_tensor(f"{opt}/_learning_rate/.ATTRIBUTES/VARIABLE_VALUE"))
  assert (rate("g_opt"), rate("d_opt")) == (pytest.approx(3e-5), pytest.approx(1e-4))


def _hold_lock(run_dir):
  """Locks ``run_dir`` as another train.py would (its own open file)."""
  f = open(run_dir / run_folder.LOCK_FILE, "a+")  # noqa: SIM115 - closed by the caller
  fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
  return f


@pytest.mark.slow
def test_a_locked_run_folder_is_refused_untouched(trained, photos, tmp_path):
  """A second run in a folder in use deleted the first one's ckpt-N_temp save."""
  run_dir = tmp_path / "run"
  shutil.copytree(trained[0], run_dir)
  (run_dir / "ckpt-3_temp").mkdir()  # the first run's save in progress
  (run_dir / "ckpt-3_temp" / "part").write_bytes(b"shard")
  before = _files(run_dir)
  held = _hold_lock(run_dir)
  try:
    with pytest.raises(UserError, match="is in use by another training run"):
      _run(_cfg(run_dir, photos, max_iters=3))
    assert (run_dir / "ckpt-3_temp" / "part").read_bytes() == b"shard"
    assert _files(run_dir) == before
  finally:
    held.close()
  # Released: the same run now starts, removes the leftover and trains.
  status, lines = _run(_cfg(run_dir, photos, max_iters=3))
  assert status == 0 and f"removed {run_dir}/ckpt-3_temp (left by an interrupted save)" in lines


@pytest.mark.slow
def test_cli_refuses_a_locked_folder_with_one_line(trained, photos, tmp_path):
  run_dir = tmp_path / "run"
  shutil.copytree(trained[0], run_dir)
  (run_dir / "ckpt-3_temp").mkdir()
  held = _hold_lock(run_dir)
  try:
    proc = procs.run("train.py", "--preset", "tiny", "--img_size", "32", "--cnum", "4",
                     "--critic_cnum", "4", "--critic_steps", "1", "--seed", "7",
                     "--train_flist", photos, "--checkpoint_dir", run_dir, "--max_iters", "1",
                     timeout=300)
  finally:
    held.close()
  assert proc.returncode == 1, proc.stderr
  assert proc.stderr.strip() == (f"error: {run_dir} is in use by another training run (it holds "
                                 f"{run_dir}/train.lock); wait for it to stop or use another "
                                 "--checkpoint_dir"), proc.stderr
  assert (run_dir / "ckpt-3_temp").is_dir()


@pytest.mark.parametrize("loss, data, named", [
    ({"gan": "none"}, {}, "gan none (no critics) (the run has wgan_gp)"),
    ({"gan": "sn_patch"}, {}, "gan sn_patch (the run has wgan_gp)"),
    ({"critic_cnum": 8}, {}, "critic_cnum 8 (the run has 4)"),
    ({"gan_with_mask": True}, {}, "gan_with_mask True (the run has False)"),
    ({}, {"img_size": 48}, "img_size 48 (the run has 32)"),
    ({}, {"box_height": 8}, "box_height 8 (the run has 16)"),
])
@pytest.mark.slow
def test_resume_refuses_settings_that_change_the_checkpoint(trained, photos, loss, data, named):
  """--gan none was accepted and its critic-less checkpoint broke the run for good."""
  run_dir = trained[0]
  before = _files(run_dir)
  with pytest.raises(UserError) as e:
    _run(_cfg(run_dir, photos, loss=loss, data=data, max_iters=3))
  assert named in str(e.value) and "cannot resume" in str(e.value), e.value
  assert _files(run_dir) == before  # nothing written


def test_a_file_as_checkpoint_dir_is_one_sentence(photos, tmp_path):
  target = tmp_path / "notes.txt"
  target.write_text("x")
  with pytest.raises(UserError, match="--checkpoint_dir .*notes.txt is a file, not a folder"):
    _run(_cfg(target, photos))


@pytest.fixture
def small_disk(tmp_path):
  """A 1.6 MB tmpfs (room for one checkpoint of these nets, not two); skipped where mount fails."""
  where = tmp_path / "disk"
  where.mkdir()
  proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1600k", "tmpfs", str(where)],
                        capture_output=True, text=True)
  if proc.returncode:
    pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
  yield where
  if subprocess.run(["umount", str(where)], capture_output=True).returncode:
    subprocess.run(["umount", "-l", str(where)], check=False)  # still open somewhere: detach


@pytest.mark.slow
def test_full_disk_keeps_the_last_checkpoint(trained, photos, small_disk):
  """A save that runs out of space: one sentence naming the kept checkpoint, not TF's text."""
  run_dir = small_disk / "run"
  run_dir.mkdir()
  for name in os.listdir(trained[0]):
    if name.startswith(("ckpt-2", "checkpoint", "config.json", "model.json")):
      shutil.copy(trained[0] / name, run_dir / name)
  with pytest.raises(UserError) as e:
    _run(_cfg(run_dir, photos, max_iters=5, checkpoint_every=1))
  message = str(e.value)
  assert message.startswith(f"could not save the checkpoint of step 3 into {run_dir} ("), message
  assert "No space left on device" in message and "\n" not in message
  assert message.endswith(f"The last good checkpoint ({run_dir}/ckpt-2) is untouched; make room "
                          "(or fix the folder) and rerun to resume from it."), message
  assert os.path.exists(f"{run_dir}/ckpt-2.index")


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--lr=nan", "--batch_size=0", "--critic_lr=inf",
                                  "--img_size=33"])
def test_cli_bad_flag_values_exit_2(flag):
  """Invalid values are command-line mistakes (status 2), like unknown flags."""
  proc = procs.run("train.py", "--train_flist", "x", flag, timeout=120)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: --") and "(see --helpshort)" in lines[0]


def test_lock_is_per_open_file_and_released(tmp_path):
  held = run_folder.lock(str(tmp_path / "r"))
  with pytest.raises(UserError, match="in use"):
    run_folder.lock(str(tmp_path / "r"))
  held.release()
  run_folder.lock(str(tmp_path / "r")).release()


def test_a_lock_file_that_is_a_symlink_is_not_followed(tmp_path):
  """train.py wrote its PID into whatever file a train.lock symlink pointed at."""
  run_dir = tmp_path / "r"
  run_dir.mkdir()
  victim = tmp_path / "precious.txt"
  victim.write_text("keep me\n")
  (run_dir / run_folder.LOCK_FILE).symlink_to(victim)
  with pytest.raises(UserError, match="train.lock is a symbolic link; refusing to follow it"):
    run_folder.lock(str(run_dir))
  assert victim.read_text() == "keep me\n"
  (run_dir / run_folder.LOCK_FILE).unlink()
  os.mkfifo(run_dir / run_folder.LOCK_FILE)  # opening a FIFO would block: refused at once
  with pytest.raises(UserError, match="is not a regular file"):
    run_folder.lock(str(run_dir))


@pytest.mark.parametrize("section, key, value, message", [
    ("data", "img_size", "abc", "data config key 'img_size' must be an integer, got \"abc\""),
    ("model", "cnum", "8", "model config key 'cnum' must be an integer, got \"8\""),
    ("train", "lr", [1], "train config key 'lr' must be a number, got [1]"),
    ("loss", "gan_with_mask", 1, "loss config key 'gan_with_mask' must be true or false, got 1"),
])
def test_hand_edited_config_json_of_the_wrong_type_is_one_sentence(trained, photos, tmp_path,
                                                                   section, key, value, message):
  run_dir = tmp_path / "run"
  shutil.copytree(trained[0], run_dir)
  config = json.loads((run_dir / "config.json").read_text())
  config[section][key] = value
  (run_dir / "config.json").write_text(json.dumps(config))
  with pytest.raises(UserError) as e:
    _run(_cfg(run_dir, photos, max_iters=3))
  assert message in str(e.value) and "config.json cannot be read" in str(e.value), e.value


def test_hand_edited_config_json_that_no_longer_matches_the_checkpoints(trained, photos, tmp_path):
  """config.json's cnum edited to match --cnum: the layout check passes, the restore cannot."""
  run_dir = tmp_path / "run"
  shutil.copytree(trained[0], run_dir)
  config = json.loads((run_dir / "config.json").read_text())
  config["model"]["cnum"] = 8
  (run_dir / "config.json").write_text(json.dumps(config))
  cfg = _cfg(run_dir, photos, max_iters=3)
  cfg = dataclasses.replace(cfg, model=config_lib.preset("v1", cnum=8))
  with pytest.raises(UserError, match=r"ckpt-2 does not match the model this run builds \("
                     r"Received incompatible tensor .*config\.json was edited"):
    _run(cfg)
