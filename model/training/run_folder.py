"""The run folder of a training run: what may resume in it, its lock, its config files.

A run folder (``--checkpoint_dir``) holds ``config.json``, ``model.json``, the checkpoints
and ``logs/``. :func:`check` refuses, before anything is written, a folder that is not a
folder, holds a model this code did not train there, or holds checkpoints that this run's
settings could not restore (``Config.checkpoint_layout``). :func:`lock` takes an exclusive
``fcntl.flock`` on ``train.lock`` inside it for the whole run, so a second run in the same
folder stops at once instead of deleting the first one's half-written save.
:func:`prepare` removes the leftovers of a killed save and writes the config files.
"""
import errno
import fcntl
import os
import re
import shutil
import stat

from model import weights
from model.errors import UserError
from model.fileio.atomic import atomic_write
from model.training.config import Config

CONFIG_JSON = "config.json"
LOCK_FILE = "train.lock"
# Left behind when a save is killed (tf.train.Checkpoint writes shards there first).
TEMP_CHECKPOINT = re.compile(r"^ckpt-\d+_temp$")


def _has_checkpoint(names):
  return "checkpoint" in names or any(n.endswith(".index") for n in names)


def check(cfg, run_dir):
  """Raises UserError unless ``cfg`` may start or resume a run in ``run_dir``; writes nothing."""
  if os.path.exists(run_dir) and not os.path.isdir(run_dir):
    raise UserError(f"--checkpoint_dir {run_dir} is a file, not a folder")
  if not os.path.isdir(run_dir):
    return
  names = os.listdir(run_dir)
  path = os.path.join(run_dir, CONFIG_JSON)
  if not os.path.exists(path):
    if weights.MODEL_JSON in names or _has_checkpoint(names):
      raise UserError(f"{run_dir} holds a model or checkpoint that train.py did not write there "
                      "(no config.json); use another --checkpoint_dir (--init_checkpoint "
                      f"{run_dir} starts a new run from its generator)")
    return
  try:
    with open(path, encoding="utf-8") as f:
      old = Config.from_json(f.read())
  except (ValueError, OSError) as e:
    raise UserError(f"{path} cannot be read ({e}); put back the values the run was trained "
                    "with, or start a new run in another --checkpoint_dir") from None
  if not _has_checkpoint(names):
    return  # nothing to restore: the new settings simply replace the old ones
  before, now = old.checkpoint_layout(), cfg.checkpoint_layout()
  changed = [k for k in dict.fromkeys([*before, *now]) if before.get(k) != now.get(k)]
  if changed:
    diff = ", ".join(f"{k} {now.get(k, '-')} (the run has {before.get(k, '-')})" for k in changed)
    raise UserError(f"{run_dir} holds a run whose checkpoints this command cannot resume: "
                    f"{diff}; rerun with the run's values, or start a new run in another "
                    f"--checkpoint_dir (--init_checkpoint {run_dir} keeps its generator)")


def _open_lock_file(path):
  """``path`` opened for reading and writing, created if needed; never through a symbolic link
  (whose target would get this process's PID) nor anything but a regular file."""
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                 0o644)
  except OSError as e:
    if e.errno == errno.ELOOP:
      raise UserError(f"{path} is a symbolic link; refusing to follow it (it is the run "
                      "folder's lock file: remove the link)") from None
    raise
  if not stat.S_ISREG(os.fstat(fd).st_mode):
    os.close(fd)
    raise UserError(f"{path} is not a regular file; refusing to use it as the run folder's "
                    "lock file (remove it)")
  return os.fdopen(fd, "r+", encoding="utf-8")


class Lock:
  """An exclusive ``flock`` on ``<run_dir>/train.lock``, held until :meth:`release`."""

  def __init__(self, run_dir):
    self.path = os.path.join(run_dir, LOCK_FILE)
    self._file = _open_lock_file(self.path)
    try:
      fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      self._file.close()
      if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise UserError(f"{run_dir} is in use by another training run (it holds {self.path}); "
                        "wait for it to stop or use another --checkpoint_dir") from None
      raise
    self._file.seek(0)
    self._file.truncate()
    self._file.write(f"{os.getpid()}\n")  # for people: which process trains here
    self._file.flush()

  def release(self):
    if not self._file.closed:
      fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
      self._file.close()


def lock(run_dir):
  """Creates ``run_dir`` if needed and locks it for this process (UserError when taken)."""
  try:
    os.makedirs(run_dir, exist_ok=True)
    return Lock(run_dir)
  except OSError as e:
    raise UserError(f"--checkpoint_dir {run_dir}: cannot use it ({e.strerror or e})") from None


def prepare(cfg, run_dir, log):
  """Removes the leftovers of a killed save and writes ``config.json`` and ``model.json``.

  Call with the lock held (:func:`lock`), after :func:`check`.
  """
  for name in sorted(os.listdir(run_dir)):
    if TEMP_CHECKPOINT.match(name) and os.path.isdir(os.path.join(run_dir, name)):
      shutil.rmtree(os.path.join(run_dir, name))
      log(f"removed {os.path.join(run_dir, name)} (left by an interrupted save)")
  try:
    atomic_write(os.path.join(run_dir, CONFIG_JSON), cfg.to_json())
    weights.write_model_json(cfg.model, run_dir, cfg.inference_defaults())
  except OSError as e:
    raise UserError(f"cannot write the run's config files into {run_dir} "
                    f"({e.strerror or e})") from None
