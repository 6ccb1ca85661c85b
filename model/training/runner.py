"""A whole training run as one call: ``run(cfg, stop_event=None) -> exit status`` (ARCHITECTURE.md §6).

``run`` starts or resumes the run in ``cfg.train.checkpoint_dir`` (``model.training.run_folder``:
checks, lock, config files), builds the nets (``nets.build``), restores the latest checkpoint
or warm-starts the generator, and trains to ``max_iters``, saving every ``checkpoint_every``
steps. Data order and masks are functions of the step, so a resumed run continues exactly as
an uninterrupted one.

Stopping: ``stop_event`` (a ``threading.Event``) set from any thread, or, when ``run`` is
called on the main thread, SIGINT / SIGTERM, finish the current step, save and return
(0; 130 for SIGINT). A second signal stops at once without saving. The input pipeline is
read on a daemon thread (``train-input``) and each step runs on one (``train-step``), so
the caller's thread keeps watching for a stop even while either blocks; such a thread can
outlive ``run`` (see :func:`unfinished_threads`). Errors meant for users raise
``UserError``; the last good checkpoint is never touched by a failed save. The nets compute in
``cfg.train.precision`` (``nets.build``); a precision this machine cannot run is refused before
the run folder is written.
"""
import os
import queue
import signal
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from model import precision as precision_lib
from model import weights
from model.errors import UserError
from model.training import data as data_lib
from model.training import inputs
from model.training import nets as nets_lib
from model.training import run_folder
from model.training import summaries
from model.training import validation

WAIT_SECONDS = 0.2  # how often the waiting thread looks for a stop request
THREAD_NAMES = ("train-input", "train-step")
INTERRUPTED_STATUS = 130  # a second signal: stopped without saving


def _print(message):
  print(message, flush=True)


def unfinished_threads():
  """The runner's daemon threads still alive (blocked in the input pipeline or a cut step).

  Interpreter shutdown could wait on them inside TensorFlow forever: a CLI that sees any
  should end the process with ``os._exit``.
  """
  return [t for t in threading.enumerate() if t.name in THREAD_NAMES and t.is_alive()]


# ----------------------------------------------------------------------------- devices

def _setup_devices(train_cfg):
  """Virtual CPU devices must be configured before TensorFlow touches a device."""
  if train_cfg.virtual_cpu_devices > 0:
    cpus = tf.config.list_physical_devices("CPU")
    wanted = [tf.config.LogicalDeviceConfiguration()] * train_cfg.virtual_cpu_devices
    try:
      tf.config.set_logical_device_configuration(cpus[0], wanted)
    except RuntimeError:  # already initialised (a second run in this process)
      if len(tf.config.list_logical_devices("CPU")) != train_cfg.virtual_cpu_devices:
        raise UserError(f"--virtual_cpu_devices {train_cfg.virtual_cpu_devices}: this process "
                        "already set up its devices differently") from None


def _make_strategy(train_cfg):
  if train_cfg.distribute == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if train_cfg.distribute == "mirrored":
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


# ----------------------------------------------------------------------------- restore

def _warm_start(gen, model_cfg, path):
  """Copies the generator weights of the checkpoint at ``path`` into ``gen``."""
  source, source_cfg = weights.load_generator(path)
  if source_cfg != model_cfg:
    def describe(c):
      return f"{c.arch} cnum {c.cnum} {c.padding} padding {c.channel_order.upper()}"
    raise UserError(f"--init_checkpoint {path} holds a different generator "
                    f"({describe(source_cfg)}); this run builds {describe(model_cfg)}")
  gen.set_weights(source.get_weights())


def _restore(cfg, strategy, run_dir, ckpt_dir, log):
  """Builds the nets and restores the latest checkpoint of ``run_dir`` (or warm-starts).

  Returns ``(nets, step, manager)``: ``step`` the int64 step variable, ``manager``
  the ``CheckpointManager`` writing into ``ckpt_dir``.
  """
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
    try:
      ckpt.restore(latest).assert_existing_objects_matched().expect_partial()
    except (ValueError, AssertionError) as e:  # shapes or objects differ: not this model's
      reason = " ".join(str(e).split())
      raise UserError(f"{latest} does not match the model this run builds ({reason[:200]}); "
                      f"if {run_dir}/config.json was edited, put back the values the run was "
                      "trained with, or start a new run in another --checkpoint_dir") from None
    # The optimizers' learning rates are checkpointed too; this run's settings win.
    nets.g_opt.learning_rate = tc.lr
    nets.d_opt.learning_rate = tc.critic_lr or tc.lr
    log(f"resumed from {latest} at step {int(step.numpy())}")
  elif tc.init_checkpoint:
    _warm_start(nets.generator, cfg.model, tc.init_checkpoint)
    log(f"generator initialised from {tc.init_checkpoint}")
  return nets, step, manager


# ----------------------------------------------------------------------------- stopping

class _StopRequest:
  """A stop after the current step: ``stop_event``, or SIGINT/SIGTERM on the main thread.

  A second signal raises KeyboardInterrupt (stop at once, no save).
  """

  def __init__(self, stop_event, log):
    self.signal = None
    self._event, self._log = stop_event, log
    self._announced = False
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      self._previous = {sig: signal.signal(sig, self._handle)
                        for sig in (signal.SIGINT, signal.SIGTERM)}

  def _handle(self, signum, frame):
    del frame
    if self.signal is not None:
      raise KeyboardInterrupt
    self.signal = signum

  def requested(self):
    asked = self.signal is not None or (self._event is not None and self._event.is_set())
    if asked and not self._announced:
      self._announced = True
      what = f"signal {self.signal}" if self.signal is not None else "stop requested"
      again = " (signal again to stop at once without saving)" if self._previous else ""
      self._log(f"{what}: stopping after the current step{again}")
    return asked

  def reason(self):
    """What stopped the run (read once after the loop), or None."""
    if self.signal is not None:
      return f"signal {self.signal}"
    return "stop requested" if self._event is not None and self._event.is_set() else None

  def status(self):
    return 128 + self.signal if self.signal == signal.SIGINT else 0

  def restore(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _in_background(stopper, fn, *args):
  """Returns ``fn(*args)`` computed on a daemon thread while this thread watches for a stop."""
  result = {}
  done = threading.Event()

  def target():
    try:
      result["value"] = fn(*args)
    except BaseException as e:  # noqa: BLE001 - re-raised below
      result["error"] = e
    finally:
      done.set()

  threading.Thread(target=target, name="train-step", daemon=True).start()
  while not done.wait(WAIT_SECONDS):
    stopper.requested()  # announces a first stop request while a long step runs
  if "error" in result:
    raise result["error"]
  return result["value"]


# ----------------------------------------------------------------------------- input

class _Feeder:
  """Reads each step's batches on a daemon thread when the caller asks for them.

  Waiting for images happens there, so the caller keeps handling stop requests even
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
    while not self._closed.is_set():
      if not self._requested.wait(WAIT_SECONDS):
        continue
      self._requested.clear()
      try:
        self._queue.put(tuple([next(self._iterator) for _ in range(self._per_step)]))
      except (StopIteration, tf.errors.OutOfRangeError):
        self._queue.put(StopIteration())
        return
      except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
        self._queue.put(e)
        return

  def get(self, stopper):
    """The next step's batches, or None when ``stopper`` asks to stop first."""
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
    self.thread.join(timeout=2 * WAIT_SECONDS)  # may stay blocked inside the input pipeline


def _input(cfg, strategy, files, start_step, skipped):
  """The run's distributed batch stream from ``start_step`` on, read by a ``_Feeder``."""
  batches_per_step = cfg.critic_steps + 1
  ds = inputs.training_batches(files, cfg.data, cfg.train.seed, cfg.model.channel_order,
                               start_batch=start_step * batches_per_step, skip_counter=skipped)
  iterator = iter(strategy.experimental_distribute_dataset(ds))
  return _Feeder(iterator, batches_per_step, len(files))


# ----------------------------------------------------------------------------- reporting

class _Reporter:
  """Step lines on stdout and TensorBoard scalars/images (the chief only)."""

  def __init__(self, cfg, run_dir, chief, skipped, start, log):
    self.cfg, self.skipped, self.log = cfg, skipped, log
    self.writer = tf.summary.create_file_writer(os.path.join(run_dir, "logs")) if chief else None
    self.last_time, self.last_step = time.time(), start

  def _scalars(self, prefix, values, step):
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
    self.log(f"step {step}/{max_iters} {shown} | {rate:.3f} it/s | ETA {eta / 60:.1f} min"
             f" | skipped files {skipped}")
    self._scalars("loss", values, step)
    self._scalars("perf", {"steps_per_sec": rate}, step)
    self._scalars("data", {"skipped_files": skipped}, step)

  def validation(self, step, generator, images):
    tc = self.cfg.train
    metrics, grid = validation.evaluate_batch(generator, images, self.cfg.model.channel_order,
                                              max_images=tc.viz_max_out)
    self.log(f"validation @ {step}: " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    self._scalars("val", metrics, step)
    if self.writer is not None:
      with self.writer.as_default():
        summaries.image("val/input|coarse|refined|completed|flow|target", grid, step,
                        max_outputs=tc.viz_max_out)

  def close(self):
    if self.writer is not None:
      self.writer.close()


def _nonfinite_error(bad, step, run_dir):
  latest = tf.train.latest_checkpoint(run_dir)
  kept = (f"The last good checkpoint ({latest}) is untouched; rerun with a lower --lr to "
          "resume from it." if latest else
          "No checkpoint was written yet; try a lower --lr.")
  return UserError(f"non-finite loss ({', '.join(bad)}) at step {step}; stopping. {kept}")


def _save_error(error, step, run_dir):
  """A failed save (full disk, folder gone or read-only): one sentence; older saves stay."""
  reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
  reason = " ".join(reason.split())
  if isinstance(error, tf.errors.OpError):
    reason = error.message.splitlines()[0] if error.message else type(error).__name__
    reason = reason.split("; ")[-1]  # TF: "...: <path>; No space left on device"
  latest = tf.train.latest_checkpoint(run_dir)
  kept = (f"The last good checkpoint ({latest}) is untouched; make room (or fix the folder) and "
          "rerun to resume from it." if latest else "No checkpoint was written yet.")
  return UserError(f"could not save the checkpoint of step {step} into {run_dir} ({reason}); "
                   f"stopping. {kept}")


# ----------------------------------------------------------------------------- loop

def _loop(cfg, strategy, nets, step, manager, feeder, reporter, val_images, stopper, chief,
          ckpt_dir, log):
  """Trains until ``max_iters`` or a stop request; returns the exit status."""
  tc = cfg.train
  critic_step, generator_step, warmup_step = nets_lib.distributed_steps(strategy, nets, step)
  saved_at = None

  def save(reason):
    nonlocal saved_at
    try:
      path = manager.save(checkpoint_number=int(step.numpy()))
    except (OSError, tf.errors.OpError) as e:
      raise _save_error(e, int(step.numpy()), tc.checkpoint_dir) from None
    saved_at = int(step.numpy())
    if chief:
      log(f"saved {path} ({reason})")
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
  reason = stopper.reason()
  if reason is None:
    return 0
  if saved_at != current:
    save(reason)
  log(f"stopped by {reason} at step {current}; rerun to resume")
  return stopper.status()


def run(cfg, stop_event=None, log=_print):
  """Runs (or resumes) training for a validated ``Config``; returns the exit status.

  Args:
    cfg: ``model.training.config.Config``.
    stop_event: optional ``threading.Event``; once set, the run stops after the current
      step, saves a checkpoint and returns 0.
    log: ``str -> None`` for the progress lines (default: print to stdout).
  Returns:
    0 when done or stopped on request (SIGTERM included), 130 after SIGINT, 130 after a
    second signal (no save). Raises ``UserError`` for problems a user can fix.
  """
  tc, dc = cfg.train, cfg.data
  run_dir = tc.checkpoint_dir
  run_folder.check(cfg, run_dir)  # before anything is written or built
  files = data_lib.list_files(dc.train_flist)  # fail on bad lists before writing anything
  val_files = data_lib.list_files(dc.val_flist) if dc.val_flist else files
  _setup_devices(tc)
  precision_lib.ensure_supported(tc.precision)  # after the device setup, before any write
  strategy = _make_strategy(tc)
  chief = _is_chief(strategy)
  held = None
  stopper = _StopRequest(stop_event, log)
  feeder = reporter = None
  try:
    if chief:
      held = run_folder.lock(run_dir)
      run_folder.prepare(cfg, run_dir, log)
    # Non-chief workers must also write checkpoints (collective ops), into a scratch dir
    # that is deleted after each save; every worker resumes from the chief's checkpoints.
    ckpt_dir = run_dir if chief else os.path.join(run_dir, f"worker_tmp_{os.getpid()}")
    log(f"{len(files)} training images; {strategy.num_replicas_in_sync} replica(s)")
    nets, step, manager = _restore(cfg, strategy, run_dir, ckpt_dir, log)
    start = int(step.numpy())
    if start >= tc.max_iters:
      log(f"already at step {start} >= --max_iters {tc.max_iters}; nothing to do")
      return 0
    skipped = data_lib.make_skip_counter()
    feeder = _input(cfg, strategy, files, start, skipped)
    val_images = data_lib.load_validation_images(
        val_files, dc.img_size, max(dc.static_view_size, 1), cfg.model.channel_order)
    reporter = _Reporter(cfg, run_dir, chief, skipped, start, log)
    return _loop(cfg, strategy, nets, step, manager, feeder, reporter, val_images, stopper,
                 chief, ckpt_dir, log)
  except KeyboardInterrupt:
    log("interrupted twice; stopping without saving (last checkpoint kept)")
    return INTERRUPTED_STATUS
  finally:
    stopper.restore()
    if reporter is not None:
      reporter.close()
    if feeder is not None:
      feeder.close()
    if held is not None:
      held.release()
