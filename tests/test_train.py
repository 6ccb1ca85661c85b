"""Training end to end: real `python train.py` runs on real photos.

Photos of ../shared/data/train/photos are downscaled to a short side of 40 px; runs use
32x32 crops, generator cnum 4, critic cnum 4 and one critic step per generator step.

Every `train.py` process costs 20-40 s (TensorFlow import and tracing the training step
dominate, the steps themselves are fast), so the runs are started by a small scheduler
thread as soon as their inputs exist, at most ``MAX_RUNNING`` processes at a time, and each
test waits for the runs it checks:

  ref       6 steps, uninterrupted          short-run checks, test.py inpaints with it,
            (ref, first, resumed: --micro_batch 1)
                                            reference of the resume test
  first     the same command, 3 steps  ->   resumed   its copy rerun to 6 steps (== ref)
                                       ->   nonfinite its copy rerun with --lr 1e6
                                       ->   workers   its copy resumed by 2 multi-worker processes
  killed    1000 steps, SIGKILL right after its 2nd checkpoint
                                       ->   revived   rerun: resumes, then SIGTERM saves and exits
  corrupt   a folder with a corrupt JPEG, a text file named .png and a 1x1 PNG
  mirrored  `python -c`: one critic + one generator step on 2 virtual CPUs vs one device
            (also with each replica's batch in 2 micro-batches)
  inpaint   `python test.py` with the `ref` run (after ref)

The fixed-batch L1 test runs in this process while those run.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from conftest import REPO, SHARED, require_shared

pytestmark = pytest.mark.slow  # training runs of train.py

TRAIN_PY = os.path.join(REPO, "train.py")
TEST_PY = os.path.join(REPO, "test.py")
PHOTOS = os.path.join(SHARED, "data", "train", "photos")
EXAMPLE = os.path.join(REPO, "examples", "sklearn_china.png")
EXAMPLE_MASK = os.path.join(REPO, "examples", "sklearn_china_mask.png")
DEMO = os.path.join(REPO, "checkpoints", "demo")

MAX_RUNNING = int(os.environ.get("DEEPFILL_TRAIN_TEST_PROCS", "4"))  # concurrent subprocesses
JOB_TIMEOUT = 420  # seconds from a job's start; a hung job is killed and its test fails

# Shared by every run: 32x32 crops (16x16 local box), tiny nets, one critic step per G step.
# The tiny preset already sets batch 2 and --log_every 1.
BASE = ["--preset", "tiny", "--img_size", "32", "--cnum", "4", "--critic_cnum", "4",
        "--critic_steps", "1", "--seed", "7"]
RESUME_K = 3  # `first` stops here; `resumed` and `ref` reach 2 * RESUME_K
STEP_LINE = re.compile(r"^step (\d+)/(\d+) (.*?) \| .*\| skipped files (\d+)$", re.M)
LOSS_NAMES = ("d_loss", "g_loss", "l1_loss", "ae_loss")


# ----------------------------------------------------------------------------- scheduler

class Job:
  """One or more subprocesses started together; each writes stdout+stderr to its own log.

  Args:
    name: log file stem.
    commands: called at start (after ``prepare``): list of ``(argv, extra_env)``.
    after: jobs that must have finished first.
    prepare: optional callable run just before the start (copies, port choice, ...).
    signal_on: optional ``(regex, signal)`` or ``(regex, signal, delay_s)``: sent once to
      the first process ``delay_s`` (default 0) seconds after its output matches.
    timeout: seconds from the start after which the job is killed (and its test fails).
    split_stderr: stderr goes to its own log (``errors(i)``) instead of joining stdout.
  """

  def __init__(self, name, commands, after=(), prepare=None, signal_on=None, processes=1,
               timeout=JOB_TIMEOUT, split_stderr=False):
    self.name, self.commands, self.after = name, commands, tuple(after)
    self.prepare, self.signal_on, self.processes = prepare, signal_on, processes
    self.timeout, self.split_stderr = timeout, split_stderr
    self.matched_at = None
    self.procs, self.logs, self.meta = [], [], {}
    self.start_time = self.end_time = None
    self.finished = threading.Event()
    self.error = None
    self.signalled = False

  def start(self, log_dir):
    self.start_time = time.monotonic()
    if self.prepare is not None:
      self.prepare(self)
    for i, (argv, extra_env) in enumerate(self.commands()):
      env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
      env.update(extra_env)
      log = os.path.join(log_dir, f"{self.name}.{i}.log")
      with open(log, "wb") as f, open(log[:-len(".log")] + ".err", "wb") as err:
        self.procs.append(subprocess.Popen([sys.executable, *argv], cwd=REPO, env=env, stdout=f,
                                           stderr=err if self.split_stderr else subprocess.STDOUT))
      self.logs.append(log)

  def output(self, i=0):
    with open(self.logs[i], encoding="utf-8", errors="replace") as f:
      return f.read()

  def errors(self, i=0):
    """stderr of process ``i`` (empty unless ``split_stderr``)."""
    with open(self.logs[i][:-len(".log")] + ".err", encoding="utf-8", errors="replace") as f:
      return f.read()

  @property
  def returncodes(self):
    return [p.returncode for p in self.procs]

  def poll(self):
    """Fires the signal trigger; returns True once every process has exited."""
    if self.signal_on and not self.signalled and self.procs[0].poll() is None:
      pattern, sig, delay = (*self.signal_on, 0)[:3]
      if self.matched_at is None and re.search(pattern, self.output(0), re.M):
        self.matched_at = time.monotonic()
      if self.matched_at is not None and time.monotonic() >= self.matched_at + delay:
        self.procs[0].send_signal(sig)
        self.signalled = True
    return all(p.poll() is not None for p in self.procs)

  def kill(self):
    for p in self.procs:
      if p.poll() is None:
        p.kill()
        p.wait()

  def describe(self):
    took = (self.end_time or time.monotonic()) - (self.start_time or time.monotonic())
    text = f"job {self.name}: exit {self.returncodes} after {took:.0f} s"
    for i in range(len(self.logs)):
      text += f"\n--- {self.logs[i]} (last 3000 chars) ---\n{self.output(i)[-3000:]}"
      if self.split_stderr:
        text += f"\n--- its stderr (last 3000 chars) ---\n{self.errors(i)[-3000:]}"
    return text if self.error is None else f"{text}\nerror: {self.error}"


class Scheduler:
  """Starts submitted jobs in order once their dependencies finished, ``max_running`` at most."""

  def __init__(self, log_dir, max_running):
    self.log_dir, self.max_running = log_dir, max_running
    self.pending, self.running, self.done = [], [], []
    self.t0 = time.monotonic()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, daemon=True)

  def submit(self, *jobs):
    self.pending.extend(jobs)

  def start(self):
    self._thread.start()

  def _finish(self, job, error=None):
    job.error = job.error or error
    job.end_time = time.monotonic()
    if job in self.running:
      self.running.remove(job)
    self.done.append(job)
    job.finished.set()

  def _tick(self):
    for job in list(self.running):
      if job.poll():
        self._finish(job)
      elif time.monotonic() - job.start_time > job.timeout:
        job.kill()
        self._finish(job, f"killed after {job.timeout} s")
    for job in list(self.pending):
      if not all(dep.finished.is_set() for dep in job.after):
        continue
      busy = sum(j.processes for j in self.running)
      if self.running and busy + job.processes > self.max_running:
        break  # strict order: a waiting 2-process job is not overtaken
      self.pending.remove(job)
      try:
        job.start(self.log_dir)
        self.running.append(job)
      except Exception as e:  # pylint: disable=broad-except - reported by the waiting test
        job.kill()
        self._finish(job, f"could not start: {type(e).__name__}: {e}")

  def _loop(self):
    while not self._stop.is_set():
      self._tick()
      self._stop.wait(0.2)

  def wait(self, job):
    """Blocks until ``job`` finished; fails the test if it could not run to its end."""
    job.finished.wait(timeout=JOB_TIMEOUT * 4)
    assert job.finished.is_set(), f"job {job.name} never finished"
    assert job.error is None, job.describe()
    return job

  def close(self):
    self._stop.set()
    self._thread.join()
    for job in self.running:
      job.kill()
    lines = [f"{j.name}: start {j.start_time - self.t0:.0f} s, end {j.end_time - self.t0:.0f} s"
             for j in self.done if j.start_time is not None]
    with open(os.path.join(self.log_dir, "timings.txt"), "w") as f:
      f.write("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- helpers

def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _downscale(src, dst, short_side=40):
  image = cv2.imread(src, cv2.IMREAD_COLOR)
  assert image is not None, f"cannot read {src}"
  h, w = image.shape[:2]
  scale = short_side / min(h, w)
  small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
  assert cv2.imwrite(dst, small), dst


def _train(run_dir, photos, *flags):
  return [TRAIN_PY, *BASE, "--train_flist", str(photos), "--checkpoint_dir", str(run_dir),
          *map(str, flags)]


def _steps(output):
  """``{step: {loss name: value}}`` and ``{step: skip count}`` from the step log lines."""
  losses, skipped = {}, {}
  for m in STEP_LINE.finditer(output):
    words = m.group(3).split()
    losses[int(m.group(1))] = {k: float(v) for k, v in zip(words[::2], words[1::2])}
    skipped[int(m.group(1))] = int(m.group(4))
  return losses, skipped


def _latest_step(run_dir):
  """Step number of the latest checkpoint named in ``run_dir/checkpoint`` (None if absent)."""
  path = os.path.join(run_dir, "checkpoint")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    m = re.search(r'^model_checkpoint_path: "(?:.*/)?ckpt-(\d+)"', f.read(), re.M)
  return int(m.group(1)) if m else None


def _checkpoint_files(run_dir):
  """``{name: bytes}`` of the checkpoint files (data, index, state file) in ``run_dir``."""
  names = sorted(n for n in os.listdir(run_dir) if n.startswith("ckpt-") or n == "checkpoint")
  out = {}
  for n in names:
    with open(os.path.join(run_dir, n), "rb") as f:
      out[n] = f.read()
  return out


def _read_checkpoint(prefix):
  import tensorflow as tf
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(prefix)
          if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def _logged_scalars(run_dir):
  """``{(tag, step): value}`` from every TensorBoard event file under ``run_dir/logs``."""
  import tensorflow as tf
  from tensorflow.core.util import event_pb2
  values = {}
  log_dir = os.path.join(run_dir, "logs")
  for name in sorted(os.listdir(log_dir)):
    for record in tf.data.TFRecordDataset(os.path.join(log_dir, name)):
      event = event_pb2.Event.FromString(record.numpy())
      for v in event.summary.value:
        if v.tag.startswith("loss/"):
          values[(v.tag, event.step)] = float(tf.make_ndarray(v.tensor))
  return values


# Runs in a fresh interpreter: the virtual CPU devices must exist before TF initialises.
_MIRRORED_SCRIPT = r"""
import dataclasses, json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[1])
import keras
import numpy as np
import flags as flags_lib
from model import config as config_lib
from model.training import data as data_lib
from model.training import inputs as training_inputs
from model.training import nets as nets_lib

cfg = flags_lib.Config(
    model=config_lib.preset("v1", cnum=4),
    data=flags_lib.DataConfig(img_size=32, batch_size=4, box_height=16, box_width=16,
                              max_delta_height=8, max_delta_width=8),
    loss=flags_lib.LossConfig(critic_cnum=4), train=flags_lib.TrainConfig(critic_steps=1))
images = next(iter(data_lib.make_dataset(data_lib.list_files(sys.argv[2]), 32, 4, seed=3)))
batch = training_inputs.add_training_inputs(images, 0, 3, "box", (16, 16), (8, 8))
initial = []

def one_d_and_one_g_step(strategy, cfg=cfg):
  with strategy.scope():
    keras.utils.set_random_seed(0)
    # SGD, not Adam: Adam's first update is about lr * sign(gradient), blind to the gradient's
    # scale and amplifying rounding noise in near-zero gradients up to lr.
    nets = nets_lib.build(cfg, num_replicas=strategy.num_replicas_in_sync,
                          make_optimizer=lambda: keras.optimizers.SGD(0.05))
    step = tf.Variable(0, dtype=tf.int64)
  variables = nets.generator.weights + [w for c in nets.critics.values() for w in c.weights]
  if not initial:
    initial.extend(v.numpy() for v in variables)
  for v, value in zip(variables, initial):  # identical starting weights, whatever the RNG did
    v.assign(value)
  critic_step, generator_step, _ = nets_lib.distributed_steps(strategy, nets, step)
  it = iter(strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(batch).repeat(2)))
  d = critic_step(next(it))
  g = generator_step(next(it))
  assert int(step.numpy()) == 1
  losses = {k: float(v) for k, v in {**d, **g}.items()}
  return losses, [(v.path, v.numpy()) for v in variables]

single, single_w = one_d_and_one_g_step(tf.distribute.OneDeviceStrategy("/cpu:0"))
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
multi, multi_w = one_d_and_one_g_step(mirrored)
# --micro_batch 1: each replica's 2 samples in 2 micro-batches.
micro_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, micro_batch=1))
assert micro_cfg.micro_batches(2) == 2
micro, micro_w = one_d_and_one_g_step(mirrored, micro_cfg)
diffs = [(float(np.max(np.abs(a - b))), name) for (name, a), (_, b) in zip(single_w, multi_w)]
micro_diffs = [(float(np.max(np.abs(a - b))), name)
               for (name, a), (_, b) in zip(single_w, micro_w)]
changes = [float(np.max(np.abs(a - b))) for (_, a), b in zip(single_w, initial)]
print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "single": single,
                  "mirrored": multi, "max_weight_diff": max(diffs),
                  "mirrored_micro": micro, "max_weight_diff_micro": max(micro_diffs),
                  "max_weight_change": max(changes), "num_variables": len(diffs)}))
"""


# ----------------------------------------------------------------------------- fixture

class _Runs:
  """What the tests see: run directories, photo folders and ``wait(job name)``."""

  def __init__(self, scheduler, jobs, dirs, root, photos, bad):
    self._scheduler, self._jobs = scheduler, jobs
    self.dirs, self.root, self.photos, self.bad = dirs, root, photos, bad

  def wait(self, name):
    return self._scheduler.wait(self._jobs[name])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Prepares the photo folders and starts every training subprocess (see module docstring)."""
  sources = sorted(os.path.join(PHOTOS, n) for n in os.listdir(require_shared(PHOTOS))
                   if n.lower().endswith(".jpg"))[:6]
  assert len(sources) == 6, f"expected 6 photos in {PHOTOS}"
  root = tmp_path_factory.mktemp("train")
  photos, bad = root / "photos", root / "bad"
  photos.mkdir()
  bad.mkdir()
  for src in sources:
    _downscale(src, str(photos / os.path.basename(src)))
  for src in sources[:4]:
    shutil.copy(photos / os.path.basename(src), bad)
  with open(sources[4], "rb") as f:  # a real JPEG header followed by garbage
    header = f.read(300)
  (bad / "corrupt.jpg").write_bytes(header + np.random.RandomState(0).bytes(2000))
  (bad / "notes.png").write_text("this is a text file, not a PNG\n")
  assert cv2.imwrite(str(bad / "one_pixel.png"), np.zeros((1, 1, 3), np.uint8))
  logs = root / "logs"
  logs.mkdir()
  unreadable, blocked = root / "unreadable", root / "blocked"
  unreadable.mkdir()
  blocked.mkdir()
  noise = np.random.RandomState(1)
  for i in range(3):  # random bytes and empty files, all named .png
    (unreadable / f"noise{i}.png").write_bytes(noise.bytes(500))
  for i in range(2):
    (unreadable / f"empty{i}.png").write_bytes(b"")
  os.mkfifo(blocked / "waiting.png")  # reading it blocks until a writer opens it: never
  # Folder listings take regular files only, so the FIFO is named in a file list.
  (root / "blocked.flist").write_text("blocked/waiting.png\n")
  d = {name: root / name for name in ("ref", "first", "resumed", "nonfinite", "workers",
                                      "killed", "corrupt", "recon", "warm", "warm_bad",
                                      "nonfinite_fresh", "unreadable_run", "blocked_run",
                                      "foreign")}
  k = RESUME_K
  # Each batch of 2 in 2 micro-batches: the exact-resume comparison covers --micro_batch.
  resume_flags = ("--val_every", k, "--checkpoint_every", k, "--micro_batch", 1)

  def copy_first_to(target, leftover=None):
    def prepare(job):
      shutil.copytree(d["first"], target)
      job.meta["before"] = _checkpoint_files(target)
      if leftover:  # what a SIGKILL during a save leaves behind
        os.makedirs(target / leftover)
        (target / leftover / "part-00000-of-00001.index").write_bytes(b"partial")
    return prepare

  def copy_demo_model(job):
    os.makedirs(d["foreign"])
    for name in os.listdir(DEMO):
      if name == "model.json" or name.startswith("generator."):
        shutil.copy(os.path.join(DEMO, name), d["foreign"])
    job.meta["before"] = {n: (d["foreign"] / n).read_bytes() for n in os.listdir(d["foreign"])}

  def multi_worker_commands():
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    argv = _train(d["workers"], photos, "--distribute", "multi_worker", "--max_iters", k + 2,
                  "--checkpoint_every", 1, "--val_every", 0)
    return [(argv, {"TF_CONFIG": json.dumps({"cluster": cluster,
                                             "task": {"type": "worker", "index": i}})})
            for i in range(2)]

  def note_killed_step(job):
    job.meta["latest"] = _latest_step(d["killed"])

  first = Job("first", lambda: [(_train(d["first"], photos, *resume_flags, "--max_iters", k), {})])
  killed = Job("killed", lambda: [(_train(d["killed"], photos, "--max_iters", 1000,
                                          "--checkpoint_every", 1, "--val_every", 0), {})],
               signal_on=(r"^saved \S*ckpt-2 ", signal.SIGKILL))
  ref = Job("ref", lambda: [(_train(d["ref"], photos, *resume_flags, "--max_iters", 2 * k), {})])
  workers = Job("workers", multi_worker_commands, after=[first], processes=2,
                prepare=copy_first_to(d["workers"]))
  resumed = Job("resumed", lambda: [(_train(d["resumed"], photos, *resume_flags,
                                            "--max_iters", 2 * k), {})],
                after=[first], prepare=copy_first_to(d["resumed"], leftover=f"ckpt-{k + 1}_temp"))
  nonfinite = Job("nonfinite", lambda: [(_train(d["nonfinite"], photos, "--lr", "1e6",
                                                "--max_iters", k + 30, "--val_every", 0,
                                                "--checkpoint_every", 1000), {})],
                  after=[first], prepare=copy_first_to(d["nonfinite"]), split_stderr=True)
  nonfinite_fresh = Job("nonfinite_fresh", lambda: [(_train(
      d["nonfinite_fresh"], photos, "--lr", "1e6", "--max_iters", 30, "--val_every", 0,
      "--checkpoint_every", 1000), {})], split_stderr=True)
  unreadable_run = Job("unreadable_run", lambda: [(_train(
      d["unreadable_run"], unreadable, "--val_flist", photos, "--max_iters", 1000), {})],
      split_stderr=True, timeout=180)
  blocked_run = Job("blocked_run", lambda: [(_train(
      d["blocked_run"], root / "blocked.flist", "--val_flist", photos, "--max_iters", 1000,
      "--checkpoint_every", 1000, "--val_every", 0), {})],
      signal_on=(r"^1 training images", signal.SIGTERM, 5), timeout=180)
  foreign = Job("foreign", lambda: [(_train(d["foreign"], photos, "--max_iters", 1), {})],
                prepare=copy_demo_model, split_stderr=True)
  revived = Job("revived", lambda: [(_train(d["killed"], photos, "--max_iters", 1000,
                                            "--checkpoint_every", 1000, "--val_every", 0), {})],
                after=[killed], prepare=note_killed_step,
                signal_on=(r"^step \d+/1000 ", signal.SIGTERM))
  corrupt = Job("corrupt", lambda: [(_train(d["corrupt"], bad, "--max_iters", 4,
                                            "--checkpoint_every", 2, "--val_every", 0), {})])
  # Traces four distributed step functions: minutes on a loaded 2-core machine.
  mirrored = Job("mirrored", lambda: [(["-c", _MIRRORED_SCRIPT, REPO, str(photos)], {})],
                 timeout=2 * JOB_TIMEOUT)
  inpaint = Job("inpaint", lambda: [([TEST_PY, "--checkpoint_dir", str(d["ref"]),
                                      "--image", EXAMPLE, "--mask", EXAMPLE_MASK,
                                      "--output", str(root / "inpainted.png")], {})],
                after=[ref])
  recon = Job("recon", lambda: [(_train(d["recon"], photos, "--gan", "none", "--mask_mode", "both",
                                        "--random_scale", "1,2", "--max_iters", 2,
                                        "--checkpoint_every", 2, "--val_every", 0), {})])
  warm = Job("warm", lambda: [(_train(d["warm"], photos, "--gan", "none", "--lr", "1e-12",
                                      "--init_checkpoint", d["ref"], "--max_iters", 1,
                                      "--checkpoint_every", 1, "--val_every", 0), {})],
             after=[ref])
  warm_bad = Job("warm_bad", lambda: [(_train(d["warm_bad"], photos, "--cnum", "8",
                                              "--init_checkpoint", d["ref"], "--max_iters", 1),
                                       {})], after=[ref])
  order = [mirrored, first, killed, ref, workers, resumed, nonfinite, revived, corrupt, inpaint,
           recon, warm, warm_bad, unreadable_run, blocked_run, foreign, nonfinite_fresh]
  jobs = {j.name: j for j in order}
  scheduler = Scheduler(str(logs), MAX_RUNNING)
  scheduler.submit(*order)
  scheduler.start()
  yield _Runs(scheduler, jobs, d, root, photos, bad)
  scheduler.close()


# ----------------------------------------------------------------------------- tests

def test_l1_loss_decreases_on_a_fixed_batch(runs):
  """20 critic+generator steps on one real batch (lr 1e-3) cut the hole and known-region L1."""
  import keras
  import tensorflow as tf
  import flags as flags_lib
  from model import config as config_lib
  from model.training import data as data_lib
  from model.training import inputs as training_inputs
  from model.training import nets as nets_lib

  cfg = flags_lib.Config(
      model=config_lib.preset("v1", cnum=4),
      data=flags_lib.DataConfig(img_size=32, batch_size=2, box_height=16, box_width=16,
                                max_delta_height=8, max_delta_width=8),
      loss=flags_lib.LossConfig(critic_cnum=4),
      train=flags_lib.TrainConfig(lr=1e-3, critic_steps=1))
  keras.utils.set_random_seed(0)
  nets = nets_lib.build(cfg)
  files = data_lib.list_files(str(runs.photos))
  images = next(iter(data_lib.make_dataset(files, 32, 2, seed=0)))
  batch = training_inputs.add_training_inputs(images, 0, 0, "box", (16, 16), (8, 8))
  assert 0 < float(tf.reduce_mean(batch["mask"])) < 0.25
  steps, g_opt, d_opt = nets.steps, nets.g_opt, nets.d_opt
  losses = tf.function(lambda b: steps.generator_losses(b)[0])
  d_step, g_step = tf.function(steps.d_step), tf.function(steps.g_step)
  before = {k: float(v) for k, v in losses(batch).items()}
  for _ in range(20):
    d_step(batch)
    g_step(batch)
  after = {k: float(v) for k, v in losses(batch).items()}
  assert all(np.isfinite(v) for v in after.values()), after
  assert after["l1_loss"] < 0.75 * before["l1_loss"], (before, after)
  assert after["ae_loss"] < 0.9 * before["ae_loss"], (before, after)
  assert int(g_opt.iterations.numpy()) == int(d_opt.iterations.numpy()) == 20


def test_short_cli_run_trains_and_checkpoints(runs):
  """`train.py --preset tiny` for 6 steps: finite losses, validation, checkpoints, configs."""
  import flags as flags_lib
  job = runs.wait("ref")
  out = job.output()
  assert job.returncodes == [0], job.describe()
  assert "6 training images; 1 replica(s)" in out
  losses, skipped = _steps(out)
  assert sorted(losses) == list(range(1, 2 * RESUME_K + 1)), job.describe()
  for step, values in losses.items():
    assert set(values) == set(LOSS_NAMES), values
    assert all(np.isfinite(v) for v in values.values()), (step, values)
  assert set(skipped.values()) == {0}
  assert re.search(r"^validation @ 6: hole_l1 [\d.]+ psnr [\d.]+$", out, re.M), out
  run_dir = runs.dirs["ref"]
  assert f"saved {run_dir}/ckpt-6 (final)" in out
  assert _latest_step(run_dir) == 6
  assert os.path.exists(run_dir / "ckpt-6.index")
  assert os.listdir(run_dir / "logs"), "no TensorBoard event file"
  cfg = flags_lib.Config.from_json((run_dir / "config.json").read_text())
  assert (cfg.data.img_size, cfg.model.cnum, cfg.loss.critic_cnum, cfg.train.max_iters,
          cfg.train.critic_steps) == (32, 4, 4, 6, 1)
  assert json.loads((run_dir / "model.json").read_text())["cnum"] == 4


def test_test_py_inpaints_with_the_trained_checkpoint(runs):
  """`test.py --checkpoint_dir <run>` loads the training checkpoint and writes the result."""
  job = runs.wait("inpaint")
  assert job.returncodes == [0], job.describe()
  result = cv2.imread(str(runs.root / "inpainted.png"), cv2.IMREAD_COLOR)
  image = cv2.imread(EXAMPLE, cv2.IMREAD_COLOR)
  assert result is not None and result.shape == image.shape
  known = cv2.imread(EXAMPLE_MASK, cv2.IMREAD_GRAYSCALE) < 128
  diff = np.abs(result.astype(np.int16) - image.astype(np.int16))
  assert diff[known].max() <= 1  # pixels outside the hole are kept


def test_resume_matches_uninterrupted_run(runs):
  """3 steps + rerun to 6 == 6 steps straight: weights, critics, optimizers, logged losses."""
  k = RESUME_K
  first, resumed, ref = runs.wait("first"), runs.wait("resumed"), runs.wait("ref")
  for job in (first, resumed, ref):
    assert job.returncodes == [0], job.describe()
  resumed_dir = runs.dirs["resumed"]
  assert f"resumed from {resumed_dir}/ckpt-{k} at step {k}" in resumed.output()
  resumed_losses, _ = _steps(resumed.output())
  ref_losses, _ = _steps(ref.output())
  assert sorted(resumed_losses) == list(range(k + 1, 2 * k + 1)), resumed.describe()
  for step, values in resumed_losses.items():  # printed with 4 decimals
    np.testing.assert_allclose([values[n] for n in LOSS_NAMES],
                               [ref_losses[step][n] for n in LOSS_NAMES], rtol=0, atol=1.01e-4,
                               err_msg=f"step {step}")
  ref_scalars, resumed_scalars = _logged_scalars(runs.dirs["ref"]), _logged_scalars(resumed_dir)
  after_resume = sorted(key for key in ref_scalars if key[1] > k)
  assert len(after_resume) >= 3 * 8, after_resume  # every loss term of steps 4..6
  for key in after_resume:
    assert abs(resumed_scalars[key] - ref_scalars[key]) <= 1e-5, (key, resumed_scalars[key],
                                                                   ref_scalars[key])

  got = _read_checkpoint(str(resumed_dir / f"ckpt-{2 * k}"))
  want = _read_checkpoint(str(runs.dirs["ref"] / f"ckpt-{2 * k}"))
  assert sorted(got) == sorted(want)
  for name, value in want.items():
    np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-5, err_msg=name)
  assert int(got["step/.ATTRIBUTES/VARIABLE_VALUE"]) == 2 * k
  for opt in ("g_opt", "d_opt"):
    assert int(got[f"{opt}/_iterations/.ATTRIBUTES/VARIABLE_VALUE"]) == 2 * k
  # The comparison covers the critics: all their conv kernels (and Adam slots) are stored.
  # Critic convs (global: 4, 8, 16, 16 channels; local: 4, 8, 16, 32), each with 2 Adam slots.
  shapes = [tuple(v.shape) for v in got.values()]
  expected = {(5, 5, 3, 4): 6, (5, 5, 4, 8): 6, (5, 5, 8, 16): 6, (5, 5, 16, 16): 3,
              (5, 5, 16, 32): 3}
  assert {s: shapes.count(s) for s in expected} == expected
  # ... and the weights did move after the resume point (the comparison is not vacuous).
  middle = _read_checkpoint(str(runs.dirs["first"] / f"ckpt-{k}"))
  assert max(float(np.max(np.abs(middle[n] - v))) for n, v in want.items()
             if v.dtype == np.float32) > 1e-5


def _error_line(job):
  """The one ``error:`` line of a ``split_stderr`` job: last on stderr, none on stdout."""
  out, err = job.output(), job.errors()
  lines = [line for line in err.splitlines() if line.startswith("error:")]
  assert len(lines) == 1 and err.rstrip().endswith(lines[0]), job.describe()
  assert "error:" not in out and "Traceback" not in out + err, job.describe()
  return lines[0]


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(runs):
  """Resuming with --lr 1e6 blows up: one error line on stderr, exit 1, checkpoints unchanged."""
  job = runs.wait("nonfinite")
  run_dir = runs.dirs["nonfinite"]
  assert job.returncodes == [1], job.describe()
  m = re.fullmatch(r"error: non-finite loss \(([\w, ]+)\) at step (\d+); stopping\. The last good "
                   r"checkpoint \((\S+)\) is untouched; rerun with a lower --lr to resume from "
                   r"it\.", _error_line(job))
  assert m, job.describe()
  assert int(m.group(2)) > RESUME_K and m.group(3) == f"{run_dir}/ckpt-{RESUME_K}"
  assert _checkpoint_files(run_dir) == job.meta["before"]


def test_nonfinite_loss_before_any_checkpoint_says_so(runs):
  """A fresh run that blows up before its first save names no checkpoint (was: "(None)")."""
  job = runs.wait("nonfinite_fresh")
  assert job.returncodes == [1], job.describe()
  assert re.fullmatch(r"error: non-finite loss \([\w, ]+\) at step \d+; stopping\. No checkpoint "
                      r"was written yet; try a lower --lr\.", _error_line(job)), job.describe()
  assert _latest_step(runs.dirs["nonfinite_fresh"]) is None


def test_no_readable_training_image_fails_at_once(runs):
  """Five random-byte or empty .png files (readable --val_flist): one error line, exit 1.

  Before, the skipped files were filtered out of an endless stream: the run spun forever.
  """
  job = runs.wait("unreadable_run")
  assert job.returncodes == [1], job.describe()
  assert _error_line(job) == ("error: none of the 5 training images could be read (each was "
                              "skipped, see the lines above)")
  assert _latest_step(runs.dirs["unreadable_run"]) is None


def test_sigterm_stops_and_saves_while_the_input_pipeline_waits(runs):
  """The only training file is a FIFO nobody writes: SIGTERM still saves and exits 0."""
  job = runs.wait("blocked_run")
  run_dir = runs.dirs["blocked_run"]
  out = job.output()
  assert job.signalled and job.returncodes == [0], job.describe()
  assert f"saved {run_dir}/ckpt-0 (signal 15)" in out, job.describe()
  assert "stopped by signal 15 at step 0; rerun to resume" in out
  assert _latest_step(run_dir) == 0


def test_refuses_a_model_folder_it_did_not_write(runs):
  """--checkpoint_dir holding a copy of checkpoints/demo (no config.json): refused, untouched."""
  job = runs.wait("foreign")
  assert job.returncodes == [1], job.describe()
  assert "holds a model or checkpoint that train.py did not write" in _error_line(job)
  folder = runs.dirs["foreign"]
  assert {n: (folder / n).read_bytes() for n in os.listdir(folder)} == job.meta["before"]


def test_leftover_of_a_killed_save_is_removed_on_start(runs):
  """A ``ckpt-N_temp/`` folder (SIGKILL during a save) is deleted when the run restarts."""
  job = runs.wait("resumed")
  run_dir = runs.dirs["resumed"]
  leftover = run_dir / f"ckpt-{RESUME_K + 1}_temp"
  assert f"removed {leftover} (left by an interrupted save)" in job.output(), job.describe()
  assert not leftover.exists()


def test_sigkill_then_rerun_resumes_and_sigterm_saves(runs):
  """SIGKILL mid-training leaves a restorable checkpoint; SIGTERM saves one and exits 0."""
  killed = runs.wait("killed")
  assert killed.signalled and killed.returncodes == [-signal.SIGKILL], killed.describe()
  revived = runs.wait("revived")
  latest = revived.meta["latest"]  # read from the state file after the kill
  assert latest is not None and latest >= 2, killed.describe()
  out = revived.output()
  run_dir = runs.dirs["killed"]
  assert revived.signalled and revived.returncodes == [0], revived.describe()
  assert f"resumed from {run_dir}/ckpt-{latest} at step {latest}" in out, revived.describe()
  losses, _ = _steps(out)
  assert min(losses) == latest + 1
  m = re.search(rf"^saved {re.escape(str(run_dir))}/ckpt-(\d+) \(signal 15\)$", out, re.M)
  assert m, revived.describe()
  saved = int(m.group(1))
  assert saved == max(losses)
  assert f"stopped by signal 15 at step {saved}; rerun to resume" in out
  assert _latest_step(run_dir) == saved
  assert int(_read_checkpoint(str(run_dir / f"ckpt-{saved}"))["step/.ATTRIBUTES/VARIABLE_VALUE"]
             ) == saved


def test_bad_files_are_skipped_and_reported(runs):
  """A corrupt JPEG, a text file named .png and a 1x1 PNG are skipped; training goes on."""
  job = runs.wait("corrupt")
  out = job.output()
  assert job.returncodes == [0], job.describe()
  assert "7 training images; 1 replica(s)" in out
  reported = {line.split(":", 1)[1].strip().strip('"')
              for line in out.splitlines() if line.startswith("skipping unreadable or tiny image:")}
  assert reported == {str(runs.bad / n) for n in ("corrupt.jpg", "notes.png", "one_pixel.png")}
  losses, skipped = _steps(out)
  assert sorted(losses) == [1, 2, 3, 4]
  assert all(np.isfinite(v) for values in losses.values() for v in values.values())
  assert skipped[4] == 3  # each bad file counted once
  assert _latest_step(runs.dirs["corrupt"]) == 4


def test_mirrored_two_virtual_cpus_match_one_device(runs):
  """One critic and one generator step: MirroredStrategy over 2 CPUs (whole replica batches
  and 2 micro-batches per replica) == one device."""
  job = runs.wait("mirrored")
  assert job.returncodes == [0], job.describe()
  result = json.loads(job.output().strip().splitlines()[-1])
  assert result["replicas"] == 2
  assert set(result["single"]) == {"d_global", "d_local", "gp", "d_loss", "g_global", "g_local",
                                   "l1_loss", "ae_loss", "gan_loss", "g_loss"}
  for name, value in result["single"].items():
    assert abs(result["mirrored"][name] - value) <= 1e-5, (name, result)
    assert abs(result["mirrored_micro"][name] - value) <= 1e-5, (name, result)
  assert result["max_weight_diff"][0] <= 1e-5, result
  assert result["max_weight_diff_micro"][0] <= 1e-5, result
  assert result["max_weight_change"] > 1e-5, result  # both steps did update the weights


def test_multi_worker_two_processes_resume_and_train(runs):
  """Two `--distribute multi_worker` processes on 127.0.0.1 resume a run and train 2 steps."""
  job = runs.wait("workers")
  run_dir = runs.dirs["workers"]
  assert job.returncodes == [0, 0], job.describe()
  outputs = [job.output(0), job.output(1)]
  for out in outputs:
    assert "2 replica(s)" in out, job.describe()
    assert f"resumed from {run_dir}/ckpt-{RESUME_K} at step {RESUME_K}" in out, job.describe()
  losses = [_steps(out)[0] for out in outputs]
  assert sorted(losses[0]) == [RESUME_K + 1, RESUME_K + 2], job.describe()
  assert losses[0] == losses[1]  # the logged losses are global (all-reduced)
  assert f"saved {run_dir}/ckpt-{RESUME_K + 2} (final)" in outputs[0]
  assert _latest_step(run_dir) == RESUME_K + 2
  assert not [n for n in os.listdir(run_dir) if n.startswith("worker_tmp")]


def test_reconstruction_only_run_builds_no_critic(runs):
  """--gan none: both stages train on L1 + AE, no critic variables, no critic steps."""
  import flags as flags_lib
  job = runs.wait("recon")
  assert job.returncodes == [0], job.describe()
  losses, _ = _steps(job.output())
  assert sorted(losses) == [1, 2]
  for values in losses.values():
    assert set(values) == {"g_loss", "l1_loss", "ae_loss"}, values
  names = _read_checkpoint(str(runs.dirs["recon"] / "ckpt-2"))
  assert not [n for n in names if n.startswith("critic") or n.startswith("d_opt/")], names
  cfg = flags_lib.Config.from_json((runs.dirs["recon"] / "config.json").read_text())
  assert (cfg.train.critic_steps, cfg.loss.l1_loss_region) == (0, "hole")
  assert (cfg.data.random_scale_min, cfg.data.random_scale_max) == (1.0, 2.0)


def test_warm_start_copies_the_generator_and_refuses_another_architecture(runs):
  from model import weights as checkpoints
  warm, bad = runs.wait("warm"), runs.wait("warm_bad")
  assert warm.returncodes == [0], warm.describe()
  assert f"generator initialised from {runs.dirs['ref']}" in warm.output()
  source, _ = checkpoints.load_generator(str(runs.dirs["ref"]))
  started, _ = checkpoints.load_generator(str(runs.dirs["warm"]))
  for a, b in zip(source.get_weights(), started.get_weights()):
    np.testing.assert_allclose(a, b, atol=1e-6)  # one step at lr 1e-12
  assert bad.returncodes == [1], bad.describe()
  assert "holds a different generator" in bad.output()
