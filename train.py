r"""Train DeepFill (ARCHITECTURE.md §5–6): WGAN-GP critics, custom tf.function loop under tf.distribute.

  python train.py --train_flist photos/ --checkpoint_dir checkpoints/run --max_iters 100000
  python train.py --preset tiny --train_flist photos/ --checkpoint_dir /tmp/tiny   # smoke run

Rerunning the same command resumes from the latest checkpoint (weights, optimizer
slots, step; data order and masks are functions of the step, so the run continues
exactly as if uninterrupted). Ctrl-C / SIGTERM save a checkpoint and stop.
TensorBoard logs go to ``<checkpoint_dir>/logs``.
"""
import os
import signal
import sys
import time

from absl import app
from absl import flags as absl_flags

import cli
import flags as flags_lib

FLAGS = absl_flags.FLAGS
flags_lib.define_flags(FLAGS)
absl_flags.mark_flag_as_required("train_flist")
cli.define_verbose()


def _log(message):
  print(message, flush=True)


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


def _prepare_run_dir(cfg, run_dir):
  """Writes config.json/model.json; refuses to resume with a different model."""
  from model import weights as checkpoints
  from model.errors import UserError
  os.makedirs(run_dir, exist_ok=True)
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
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(cfg.to_json())
  os.replace(tmp, path)
  checkpoints.write_model_json(cfg.model, run_dir)


def build_nets(cfg):
  """Generator, critics and optimizers (call under the strategy scope)."""
  import keras
  from model import critics as critics_lib
  from model import generator as generator_lib
  gen = generator_lib.build_generator(cfg.model)
  cnum = cfg.loss.critic_cnum
  if cfg.loss.gan == "none" or cfg.loss.pretrain_coarse_network:
    critics = {}  # reconstruction-only training builds no critic
  elif cfg.loss.gan == "sn_patch":
    critics = {"patch": critics_lib.SNPatchCritic(cnum=cnum, in_channels=4)}
  else:
    in_channels = 4 if cfg.loss.gan_with_mask else 3
    critics = {
        "global": critics_lib.GlobalCritic(cnum=cnum, input_size=cfg.data.img_size,
                                           in_channels=in_channels),
        "local": critics_lib.LocalCritic(
            cnum=cnum, input_size=(cfg.data.box_height, cfg.data.box_width)),
    }
  t = cfg.train
  g_opt = keras.optimizers.Adam(t.lr, beta_1=t.beta1, beta_2=t.beta2)
  d_opt = keras.optimizers.Adam(t.lr, beta_1=t.beta1, beta_2=t.beta2)
  return gen, critics, g_opt, d_opt


def _initialize(cfg, gen, critics, g_opt, d_opt):
  """Creates every variable (Keras 3 cannot restore into unbuilt objects)."""
  import tensorflow as tf
  s = cfg.data.img_size
  if "patch" in critics:
    critics["patch"](tf.zeros([1, s, s, 4]))
  critic_vars = [v for c in critics.values() for v in c.trainable_variables]
  g_opt.build(gen.trainable_variables)
  d_opt.build(critic_vars)


def _loss_settings(cfg):
  from model.training import step as train_step
  loss = cfg.loss
  return train_step.LossSettings(
      gan=loss.gan, gan_loss_alpha=loss.gan_loss_alpha, wgan_gp_lambda=loss.wgan_gp_lambda,
      coarse_l1_alpha=loss.coarse_l1_alpha, l1_loss_alpha=loss.l1_loss_alpha,
      ae_loss_alpha=loss.ae_loss_alpha, global_wgan_loss_alpha=loss.global_wgan_loss_alpha,
      gamma=loss.spatial_discounting_gamma if loss.discounted_mask else 1.0,
      gan_with_mask=loss.gan_with_mask, pretrain_coarse=loss.pretrain_coarse_network,
      l1_region=loss.l1_loss_region)


def _random_scale(data_cfg):
  if (data_cfg.random_scale_min, data_cfg.random_scale_max) == (0, 0):
    return None
  return data_cfg.random_scale_min, data_cfg.random_scale_max


def _warm_start(gen, model_cfg, path):
  """Copies the generator weights of the checkpoint at ``path`` into ``gen``."""
  from model import weights as checkpoints
  from model.errors import UserError
  import dataclasses
  source, source_cfg = checkpoints.load_generator(path)
  # The attention tile only bounds memory; it does not change the weights.
  if dataclasses.replace(source_cfg, attention_tile=model_cfg.attention_tile) != model_cfg:
    def describe(c):
      return f"{c.arch} cnum {c.cnum} {c.padding} padding {c.channel_order.upper()}"
    raise UserError(f"--init_checkpoint {path} holds a different generator "
                    f"({describe(source_cfg)}); this run builds {describe(model_cfg)}")
  gen.set_weights(source.get_weights())


class _StopRequest:
  """Turns SIGINT/SIGTERM into a flag checked between loop calls."""

  def __init__(self):
    self.signal = None
    for sig in (signal.SIGINT, signal.SIGTERM):
      signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    del frame
    if self.signal is not None:  # second signal: stop right away
      raise KeyboardInterrupt
    self.signal = signum


def train(cfg):
  """Runs (or resumes) training for a validated ``flags.Config``; returns the exit status."""
  import numpy as np
  import tensorflow as tf
  import keras
  from model.training import data as data_lib
  from model.training import step as train_step
  from model.training import inputs as training_inputs
  from model.training import summaries
  from model.training import validation
  from model.errors import UserError

  tc, dc = cfg.train, cfg.data
  _setup_devices(tc)
  strategy = _make_strategy(tc)
  chief = _is_chief(strategy)
  run_dir = tc.checkpoint_dir
  files = data_lib.list_files(dc.train_flist)  # fail on bad lists before writing anything
  val_files = data_lib.list_files(dc.val_flist) if dc.val_flist else files
  if chief:
    _prepare_run_dir(cfg, run_dir)
  # Non-chief workers must also write checkpoints (collective ops), into a scratch dir
  # that is deleted after each save; every worker resumes from the chief's checkpoints.
  ckpt_dir = run_dir if chief else os.path.join(run_dir, f"worker_tmp_{os.getpid()}")
  _log(f"{len(files)} training images; {strategy.num_replicas_in_sync} replica(s)")

  keras.utils.set_random_seed(tc.seed)
  with strategy.scope():
    gen, critics, g_opt, d_opt = build_nets(cfg)
    _initialize(cfg, gen, critics, g_opt, d_opt)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
  skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_files")
  ckpt = tf.train.Checkpoint(generator=gen, g_opt=g_opt, d_opt=d_opt, step=step,
                             **{f"critic_{k}": c for k, c in critics.items()})
  manager = tf.train.CheckpointManager(ckpt, ckpt_dir, max_to_keep=3)
  latest = tf.train.latest_checkpoint(run_dir)
  if latest:
    ckpt.restore(latest).assert_existing_objects_matched()
    # The optimizers' learning rate is checkpointed too; --lr of this run wins.
    for opt in (g_opt, d_opt):
      opt.learning_rate = tc.lr
    _log(f"resumed from {latest} at step {int(step.numpy())}")
  elif tc.init_checkpoint:
    _warm_start(gen, cfg.model, tc.init_checkpoint)
    _log(f"generator initialised from {tc.init_checkpoint}")
  start = int(step.numpy())
  if start >= tc.max_iters:
    _log(f"already at step {start} >= --max_iters {tc.max_iters}; nothing to do")
    return 0

  critic_steps = tc.critic_steps if critics else 0
  batches_per_step = critic_steps + 1
  start_batch = start * batches_per_step
  ds = data_lib.make_dataset(files, dc.img_size, dc.batch_size, tc.seed,
                             random_crop=dc.random_crop, random_flip=dc.random_flip,
                             channel_order=cfg.model.channel_order, skip_counter=skipped,
                             start_batch=start_batch, random_scale=_random_scale(dc))
  box = (dc.box_height, dc.box_width)
  ds = ds.enumerate(start=start_batch).map(
      lambda i, images: training_inputs.add_training_inputs(
          images, i, tc.seed, dc.mask_mode, box, (dc.max_delta_height, dc.max_delta_width),
          (dc.vertical_margin, dc.horizontal_margin)))
  iterator = iter(strategy.experimental_distribute_dataset(ds))
  steps = train_step.StepFunctions(
      gen, critics, g_opt, d_opt, _loss_settings(cfg), box,
      num_replicas=strategy.num_replicas_in_sync,
      gradient_clip=tc.gradient_clip_value if tc.gradient_clip else None)

  d_names, g_names = steps.loss_names()

  def reduce(terms):
    return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in terms.items()}

  @tf.function
  def run_loop(iterator, n):
    """Runs ``n`` generator steps (each after ``critic_steps`` critic steps)."""
    d_terms = {k: tf.constant(0.0) for k in d_names}
    g_terms = {k: tf.constant(0.0) for k in g_names}
    for _ in tf.range(n):
      for _ in tf.range(critic_steps):
        d_terms = reduce(strategy.run(steps.d_step, args=(next(iterator),)))
      g_terms = reduce(strategy.run(steps.g_step, args=(next(iterator),)))
      step.assign_add(1)
    return d_terms, g_terms

  if critic_steps == 0:
    @tf.function
    def run_loop(iterator, n):  # noqa: F811 - pretraining: generator steps only
      g_terms = {k: tf.constant(0.0) for k in g_names}
      for _ in tf.range(n):
        g_terms = reduce(strategy.run(steps.g_step, args=(next(iterator),)))
        step.assign_add(1)
      return {}, g_terms

  val_images = data_lib.load_validation_images(val_files, dc.img_size, max(dc.static_view_size, 1),
                                               cfg.model.channel_order)
  writer = tf.summary.create_file_writer(os.path.join(run_dir, "logs")) if chief else None
  stopper = _StopRequest()
  last_time, last_step = time.time(), start
  status = 0

  def save(reason):
    path = manager.save(checkpoint_number=int(step.numpy()))
    if chief:
      _log(f"saved {path} ({reason})")
    else:
      tf.io.gfile.rmtree(ckpt_dir)

  while int(step.numpy()) < tc.max_iters:
    current = int(step.numpy())
    n = min(tc.steps_per_loop, tc.max_iters - current)
    try:
      d_terms, g_terms = run_loop(iterator, tf.constant(n, tf.int64))
    except KeyboardInterrupt:
      _log("interrupted twice; stopping without saving (last checkpoint kept)")
      return 130
    except tf.errors.OutOfRangeError:
      raise UserError("the training data ran out (no readable images?)") from None
    current = int(step.numpy())
    values = {k: float(v) for k, v in {**d_terms, **g_terms}.items()}
    bad = [k for k, v in values.items() if not np.isfinite(v)]
    if bad:
      _log(f"error: non-finite loss ({', '.join(bad)}) at step {current}; stopping. "
           f"The last good checkpoint ({tf.train.latest_checkpoint(run_dir)}) is untouched.")
      return 1
    if current % tc.log_every == 0 or current == tc.max_iters:
      now = time.time()
      rate = (current - last_step) / max(now - last_time, 1e-9)
      eta = (tc.max_iters - current) / max(rate, 1e-9)
      last_time, last_step = now, current
      shown = " ".join(f"{k} {values[k]:.4f}" for k in ("d_loss", "g_loss", "l1_loss", "ae_loss")
                       if k in values)
      _log(f"step {current}/{tc.max_iters} {shown} | {rate:.3f} it/s | ETA {eta / 60:.1f} min"
           f" | skipped files {int(skipped.numpy())}")
      if writer is not None:
        with writer.as_default():
          for k, v in values.items():
            summaries.scalar(f"loss/{k}", v, current)
          summaries.scalar("perf/steps_per_sec", rate, current)
          summaries.scalar("data/skipped_files", int(skipped.numpy()), current)
    if tc.val_every and (current % tc.val_every == 0 or current == tc.max_iters):
      metrics, grid = validation.evaluate_batch(gen, val_images, cfg.model.channel_order,
                                                max_images=tc.viz_max_out)
      _log(f"validation @ {current}: " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
      if writer is not None:
        with writer.as_default():
          for k, v in metrics.items():
            summaries.scalar(f"val/{k}", v, current)
          summaries.image("val/input|coarse|refined|completed|flow|target", grid, current,
                          max_outputs=tc.viz_max_out)
    # Read once: a signal arriving between two reads would stop the run without a save.
    stop_signal = stopper.signal
    if current % tc.checkpoint_every == 0 or current == tc.max_iters:
      save("periodic" if current < tc.max_iters else "final")
    elif stop_signal is not None:
      save(f"signal {stop_signal}")
    if stop_signal is not None:
      _log(f"stopped by signal {stop_signal} at step {current}; rerun to resume")
      status = 128 + stop_signal if stop_signal == signal.SIGINT else 0
      break
  if writer is not None:
    writer.flush()
  return status


def main(argv):
  def run():
    cfg = flags_lib.build_config(FLAGS)
    cli.import_tensorflow(FLAGS.verbose)
    return train(cfg)

  # ValueError: invalid flag values from build_config (the message names the flag).
  return cli.guarded(run, expected=(ValueError,), argv=argv)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.one_line_flag_parser(FLAGS))
