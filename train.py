r"""Train DeepFill (ARCHITECTURE.md §5–6): WGAN-GP critics, custom loop under tf.distribute.

  python train.py --train_flist photos/ --checkpoint_dir checkpoints/run --max_iters 100000
  python train.py --preset tiny --train_flist photos/ --checkpoint_dir /tmp/tiny   # smoke run

Rerunning the same command resumes from the latest checkpoint (weights, optimizer
slots, step; data order and masks are functions of the step, so the run continues
exactly as if uninterrupted). Ctrl-C / SIGTERM finish the current step, save a
checkpoint and stop, also while the input pipeline is still waiting for images; a
second signal stops at once without saving. TensorBoard logs go to
``<checkpoint_dir>/logs``.
"""
import os
import queue
import re
import shutil
import signal
import sys
import threading
import time

from absl import app
from absl import flags as absl_flags

import cli
import flags as flags_lib

FLAGS = absl_flags.FLAGS
flags_lib.define_flags(FLAGS)
absl_flags.mark_flag_as_required("train_flist")
cli.define_verbose()

WAIT_SECONDS = 0.2  # how often the main thread looks at the stop flag while it waits
# Left behind when a save is killed (tf.train.Checkpoint writes shards there first).
TEMP_CHECKPOINT = re.compile(r"^ckpt-\d+_temp$")


def _log(message):
  print(message, flush=True)


# ----------------------------------------------------------------------------- devices

def _setup_devices(train_cfg):
  """Virtual CPU devices must be configured before TensorFlow touches a device."""
  import tensorflow as tf
  if train_cfg.virtual_cpu_devices > 0:
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * train_cfg.virtual_cpu_devices)


def _make_strategy(train_cfg):
  import tensorflow as tf
  if train_cfg.strategy == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if train_cfg.strategy == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)
  return tf.distribute.get_strategy()


def _is_chief(strategy):
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  return resolver.task_type == "chief" or (resolver.task_type == "worker"
                                           and resolver.task_id == 0)


# ----------------------------------------------------------------------------- run folder

def _check_run_dir(cfg, run_dir):
  """Refuses a folder holding another model, or a run of a different model."""
  from model import weights
  from model.errors import UserError
  path = os.path.join(run_dir, "config.json")
  if os.path.exists(path):
    try:
      with open(path) as f:
        old = flags_lib.Config.from_json(f.read())
    except ValueError as e:
      raise UserError(f"bad {path}: {e}") from None
    if old.model != cfg.model:
      raise UserError(f"{run_dir} holds a run with a different model ({old.model}); "
                      "use another --checkpoint_dir")
    return
  if not os.path.isdir(run_dir):
    return
  names = os.listdir(run_dir)
  if (weights.MODEL_JSON in names or "checkpoint" in names
      or any(n.endswith(".index") for n in names)):
    raise UserError(f"{run_dir} holds a model or checkpoint that train.py did not write there "
                    "(no config.json); use another --checkpoint_dir (--init_checkpoint "
                    f"{run_dir} starts a new run from its generator)")


def _prepare_run_dir(cfg, run_dir):
  """Writes config.json/model.json and removes the leftovers of a killed save."""
  from model import weights
  from model.fileio.atomic import atomic_write
  _check_run_dir(cfg, run_dir)
  os.makedirs(run_dir, exist_ok=True)
  for name in sorted(os.listdir(run_dir)):
    if TEMP_CHECKPOINT.match(name) and os.path.isdir(os.path.join(run_dir, name)):
      shutil.rmtree(os.path.join(run_dir, name))
      _log(f"removed {os.path.join(run_dir, name)} (left by an interrupted save)")
  atomic_write(os.path.join(run_dir, "config.json"), cfg.to_json())
  weights.write_model_json(cfg.model, run_dir)


# ----------------------------------------------------------------------------- restore

def _warm_start(gen, model_cfg, path):
  """Copies the generator weights of the checkpoint at ``path`` into ``gen``."""
  from model import weights
  from model.errors import UserError
  source, source_cfg = weights.load_generator(path)
  if source_cfg != model_cfg:
    def describe(c):
      return f"{c.arch} cnum {c.cnum} {c.padding} padding {c.channel_order.upper()}"
    raise UserError(f"--init_checkpoint {path} holds a different generator "
                    f"({describe(source_cfg)}); this run builds {describe(model_cfg)}")
  gen.set_weights(source.get_weights())


def _restore(cfg, strategy, run_dir, ckpt_dir):
  """Builds the nets and restores the latest checkpoint of ``run_dir`` (or warm-starts).

  Returns ``(nets, step, manager)``: ``step`` the int64 step variable, ``manager``
  the ``CheckpointManager`` writing into ``ckpt_dir``.
  """
  import keras
  import tensorflow as tf
  from model.training import nets as nets_lib
  tc = cfg.train
  keras.utils.set_random_seed(tc.seed)
  with strategy.scope():
    nets = nets_lib.build(cfg, num_replicas=strategy.num_replicas_in_sync)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
  ckpt = tf.train.Checkpoint(step=step, **nets.checkpoint_objects())
  manager = tf.train.CheckpointManager(ckpt, ckpt_dir, max_to_keep=3)
  latest = tf.train.latest_checkpoint(run_dir)
  if latest:
    # Every object of this run must be restored; a value of an object the run no longer
    # builds (the critic optimizer of an older reconstruction-only run) is ignored.
    ckpt.restore(latest).assert_existing_objects_matched().expect_partial()
    # The optimizers' learning rate is checkpointed too; --lr of this run wins.
    for opt in (nets.g_opt, nets.d_opt):
      opt.learning_rate = tc.lr
    _log(f"resumed from {latest} at step {int(step.numpy())}")
  elif tc.init_checkpoint:
    _warm_start(nets.generator, cfg.model, tc.init_checkpoint)
    _log(f"generator initialised from {tc.init_checkpoint}")
  return nets, step, manager


# ----------------------------------------------------------------------------- input

class _Feeder:
  """Reads each step's batches on a daemon thread when the main thread asks for them.

  Waiting for images happens there, so the main thread keeps handling signals even
  when the input pipeline blocks; ``get`` returns None once a stop is requested. A
  step's batches are complete before it starts, so a stop never leaves a step half
  done. Reading only on request keeps the order of collective ops (multi-worker
  input and steps) the same on every worker; the pipeline prefetches meanwhile.
  """

  def __init__(self, iterator, batches_per_step, num_files):
    self._iterator, self._per_step, self._num_files = iterator, batches_per_step, num_files
    self._requested = threading.Event()
    self._queue = queue.Queue()
    self._closed = threading.Event()
    self.thread = threading.Thread(target=self._run, name="train-input", daemon=True)
    self.thread.start()

  def _run(self):
    import tensorflow as tf
    while not self._closed.is_set():
      if not self._requested.wait(WAIT_SECONDS):
        continue
      self._requested.clear()
      try:
        self._queue.put(tuple([next(self._iterator) for _ in range(self._per_step)]))
      except (StopIteration, tf.errors.OutOfRangeError):
        self._queue.put(StopIteration())
        return
      except BaseException as e:  # noqa: BLE001 - handed to the main thread
        self._queue.put(e)
        return

  def get(self, stopper):
    """The next step's batches, or None when ``stopper`` asks to stop first."""
    from model.errors import UserError
    if self._queue.empty():
      self._requested.set()
    while not stopper.requested():
      try:
        item = self._queue.get(timeout=WAIT_SECONDS)
      except queue.Empty:
        continue
      if isinstance(item, StopIteration):
        raise UserError(f"none of the {self._num_files} training images could be read "
                        "(each was skipped, see the lines above)")
      if isinstance(item, BaseException):
        raise item
      return item
    return None

  def close(self):
    self._closed.set()


def _input(cfg, strategy, files, start_step, skipped):
  """The run's distributed batch stream from ``start_step`` on, read by a ``_Feeder``."""
  from model.training import inputs
  batches_per_step = cfg.critic_steps + 1
  ds = inputs.training_batches(files, cfg.data, cfg.train.seed, cfg.model.channel_order,
                               start_batch=start_step * batches_per_step, skip_counter=skipped)
  iterator = iter(strategy.experimental_distribute_dataset(ds))
  return _Feeder(iterator, batches_per_step, len(files))


# ----------------------------------------------------------------------------- loop

class _StopRequest:
  """SIGINT/SIGTERM: the first asks to stop after the current step, a second stops now."""

  def __init__(self):
    self.signal = None
    self._announced = False
    self._previous = {sig: signal.signal(sig, self._handle)
                      for sig in (signal.SIGINT, signal.SIGTERM)}

  def _handle(self, signum, frame):
    del frame
    if self.signal is not None:
      raise KeyboardInterrupt
    self.signal = signum

  def requested(self):
    if self.signal is not None and not self._announced:
      self._announced = True
      _log(f"signal {self.signal}: stopping after the current step (signal again to stop "
           "at once without saving)")
    return self.signal is not None

  def restore(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _in_background(stopper, fn, *args):
  """Returns ``fn(*args)`` computed on a daemon thread while this thread handles signals."""
  result = {}
  done = threading.Event()

  def target():
    try:
      result["value"] = fn(*args)
    except BaseException as e:  # noqa: BLE001 - re-raised below
      result["error"] = e
    finally:
      done.set()

  thread = threading.Thread(target=target, name="train-step", daemon=True)
  _BACKGROUND.append(thread)
  thread.start()
  while not done.wait(WAIT_SECONDS):
    stopper.requested()  # announces a first signal while a long step runs
  _BACKGROUND.remove(thread)
  if "error" in result:
    raise result["error"]
  return result["value"]


_BACKGROUND = []  # threads that may still run TensorFlow when train() returns


class _Reporter:
  """Step lines on stdout and TensorBoard scalars/images (the chief only)."""

  def __init__(self, cfg, run_dir, chief, skipped, start):
    import tensorflow as tf
    self.cfg, self.skipped = cfg, skipped
    self.writer = tf.summary.create_file_writer(os.path.join(run_dir, "logs")) if chief else None
    self.last_time, self.last_step = time.time(), start

  def _scalars(self, prefix, values, step):
    from model.training import summaries
    if self.writer is not None:
      with self.writer.as_default():
        for k, v in values.items():
          summaries.scalar(f"{prefix}/{k}", v, step)

  def losses(self, step, values):
    max_iters = self.cfg.train.max_iters
    now = time.time()
    rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
    eta = (max_iters - step) / max(rate, 1e-9)
    self.last_time, self.last_step = now, step
    skipped = int(self.skipped.numpy())
    shown = " ".join(f"{k} {values[k]:.4f}" for k in ("d_loss", "g_loss", "l1_loss", "ae_loss")
                     if k in values)
    _log(f"step {step}/{max_iters} {shown} | {rate:.3f} it/s | ETA {eta / 60:.1f} min"
         f" | skipped files {skipped}")
    self._scalars("loss", values, step)
    self._scalars("perf", {"steps_per_sec": rate}, step)
    self._scalars("data", {"skipped_files": skipped}, step)

  def validation(self, step, generator, images):
    from model.training import summaries
    from model.training import validation
    tc = self.cfg.train
    metrics, grid = validation.evaluate_batch(generator, images, self.cfg.model.channel_order,
                                              max_images=tc.viz_max_out)
    _log(f"validation @ {step}: " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    self._scalars("val", metrics, step)
    if self.writer is not None:
      with self.writer.as_default():
        summaries.image("val/input|coarse|refined|completed|flow|target", grid, step,
                        max_outputs=tc.viz_max_out)

  def close(self):
    if self.writer is not None:
      self.writer.flush()


def _nonfinite_error(bad, step, run_dir):
  import tensorflow as tf
  from model.errors import UserError
  latest = tf.train.latest_checkpoint(run_dir)
  kept = (f"The last good checkpoint ({latest}) is untouched; rerun with a lower --lr to "
          "resume from it." if latest else
          "No checkpoint was written yet; try a lower --lr.")
  return UserError(f"non-finite loss ({', '.join(bad)}) at step {step}; stopping. {kept}")


def _loop(cfg, strategy, nets, step, manager, feeder, reporter, val_images, stopper, chief,
          ckpt_dir):
  """Trains until ``--max_iters`` or a signal; returns the exit status."""
  import numpy as np
  import tensorflow as tf
  from model.training import nets as nets_lib
  tc = cfg.train
  critic_step, generator_step, warmup_step = nets_lib.distributed_steps(strategy, nets, step)
  saved_at = None

  def save(reason):
    nonlocal saved_at
    path = manager.save(checkpoint_number=int(step.numpy()))
    saved_at = int(step.numpy())
    if chief:
      _log(f"saved {path} ({reason})")
    else:
      tf.io.gfile.rmtree(ckpt_dir)

  current = int(step.numpy())
  while current < tc.max_iters:
    batches = feeder.get(stopper)
    if batches is None:
      break
    d_terms, g_terms = {}, {}
    warmup = current < tc.critic_warmup and nets.critics
    for batch in batches[:-1]:
      d_terms = _in_background(stopper, critic_step, batch)
    if warmup:  # the generator stays frozen: its batch trains the critics once more
      d_terms = _in_background(stopper, warmup_step, batches[-1])
    else:
      g_terms = _in_background(stopper, generator_step, batches[-1])
    current = int(step.numpy())
    values = {k: float(v) for k, v in {**d_terms, **g_terms}.items()}
    bad = [k for k, v in values.items() if not np.isfinite(v)]
    if bad:
      raise _nonfinite_error(bad, current, tc.checkpoint_dir)
    if current % tc.log_every == 0 or current == tc.max_iters:
      reporter.losses(current, values)
    if tc.val_every and (current % tc.val_every == 0 or current == tc.max_iters):
      reporter.validation(current, nets.generator, val_images)
    if current % tc.checkpoint_every == 0 or current == tc.max_iters:
      save("periodic" if current < tc.max_iters else "final")
    if stopper.requested():
      break
  # Read once: a signal arriving between two reads would stop the run without a save.
  stop_signal = stopper.signal
  if stop_signal is None:
    return 0
  if saved_at != current:
    save(f"signal {stop_signal}")
  _log(f"stopped by signal {stop_signal} at step {current}; rerun to resume")
  return 128 + stop_signal if stop_signal == signal.SIGINT else 0


def train(cfg):
  """Runs (or resumes) training for a validated ``flags.Config``; returns the exit status."""
  import tensorflow as tf
  from model.training import data as data_lib

  tc, dc = cfg.train, cfg.data
  _setup_devices(tc)
  strategy = _make_strategy(tc)
  chief = _is_chief(strategy)
  run_dir = tc.checkpoint_dir
  files = data_lib.list_files(dc.train_flist)  # fail on bad lists before writing anything
  val_files = data_lib.list_files(dc.val_flist) if dc.val_flist else files
  if chief:
    _prepare_run_dir(cfg, run_dir)
  else:
    _check_run_dir(cfg, run_dir)
  # Non-chief workers must also write checkpoints (collective ops), into a scratch dir
  # that is deleted after each save; every worker resumes from the chief's checkpoints.
  ckpt_dir = run_dir if chief else os.path.join(run_dir, f"worker_tmp_{os.getpid()}")
  stopper = _StopRequest()
  feeder = reporter = None
  try:
    _log(f"{len(files)} training images; {strategy.num_replicas_in_sync} replica(s)")
    nets, step, manager = _restore(cfg, strategy, run_dir, ckpt_dir)
    start = int(step.numpy())
    if start >= tc.max_iters:
      _log(f"already at step {start} >= --max_iters {tc.max_iters}; nothing to do")
      return 0
    skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_files")
    feeder = _input(cfg, strategy, files, start, skipped)
    val_images = data_lib.load_validation_images(
        val_files, dc.img_size, max(dc.static_view_size, 1), cfg.model.channel_order)
    reporter = _Reporter(cfg, run_dir, chief, skipped, start)
    return _loop(cfg, strategy, nets, step, manager, feeder, reporter, val_images, stopper,
                 chief, ckpt_dir)
  except KeyboardInterrupt:
    _log("interrupted twice; stopping without saving (last checkpoint kept)")
    return 130
  finally:
    stopper.restore()
    if reporter is not None:
      reporter.close()
    if feeder is not None:
      feeder.close()
      feeder.thread.join(timeout=2 * WAIT_SECONDS)
      if feeder.thread.is_alive():  # blocked inside the input pipeline
        _BACKGROUND.append(feeder.thread)


def main(argv):
  def run():
    cfg = flags_lib.build_config(FLAGS)
    cli.import_tensorflow(FLAGS.verbose)
    return train(cfg)

  # ValueError: invalid flag values from build_config (the message names the flag).
  status = cli.guarded(run, expected=(ValueError,), argv=argv)
  if any(t.is_alive() for t in _BACKGROUND):
    # A thread is still inside TensorFlow (a blocked input pipeline, or a step cut
    # short by a second signal): interpreter shutdown could wait on it forever.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
  return status


if __name__ == "__main__":
  app.run(main, flags_parser=cli.one_line_flag_parser(FLAGS))
