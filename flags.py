"""Training flags and ``build_config(flag_values) -> Config`` (``model/training/config.py``).

Usage in a CLI (flags are defined explicitly, not at import)::

    from absl import flags as absl_flags
    import flags as flags_lib
    flags_lib.define_flags(absl_flags.FLAGS)
    ...
    config = flags_lib.build_config(absl_flags.FLAGS)

Flags mirror the official v1 ``inpaint.yml`` (ARCHITECTURE.md §6.4) in lower case. Defaults are
the official values except where a help string says otherwise. ``Config.to_json()`` is
saved beside checkpoints and ``Config.from_json()`` rebuilds (and re-validates) it.
"""
import dataclasses

from absl import flags as absl_flags

from layers.paddings import PADDINGS
from model import config as config_lib
from model import precision as precision_lib

from model.training.config import (  # noqa: F401 - the config classes, re-exported
    DEFAULT_CRITIC_STEPS, DISTRIBUTE_STRATEGIES, GANS, L1_REGIONS, MASK_MODES, PRESETS, Config,
    DataConfig, LossConfig, TrainConfig, parse_scale)

L1_REGION_CHOICES = ("auto",) + L1_REGIONS  # auto: box for box masks, else hole
ALIASES = {"train_spe": "checkpoint_every"}  # official name -> ours
OLD_DISTRIBUTE = "strategy"  # --distribute's old name (train.py says so when it is used)

# ``--preset tiny``: a seconds-long smoke run. Flags given explicitly still win.
TINY_PRESET = {
    "img_size": 64, "cnum": 8, "batch_size": 2, "max_iters": 2, "max_delta_height": 8,
    "max_delta_width": 8, "log_every": 1, "val_every": 2,
    "val_psteps": 2, "checkpoint_every": 2, "val_count": 2, "static_view_size": 2,
    "viz_max_out": 2,
}


def define_flags(flag_values=absl_flags.FLAGS):
  """Defines every training flag on ``flag_values`` (call once, at CLI module level)."""
  fv = {"flag_values": flag_values}
  d = DataConfig()
  ls = LossConfig()
  t = TrainConfig()

  # Run, data and schedule.
  absl_flags.DEFINE_enum("preset", "none", PRESETS,
                         "tiny: 64x64 images, cnum 8, batch 2, 2 steps (smoke tests); explicit "
                         "flags override it.", **fv)
  absl_flags.DEFINE_string("train_flist", None,
                           "Training images: a file list (one path per line, relative to the "
                           "list's folder) or a directory searched recursively.", **fv)
  absl_flags.DEFINE_string("val_flist", None,
                           "Validation images (same format as --train_flist).", **fv)
  absl_flags.DEFINE_string("checkpoint_dir", t.checkpoint_dir,
                           "Run directory: checkpoints, config.json, summaries.", **fv)
  absl_flags.DEFINE_integer("max_iters", t.max_iters,
                            "Total generator steps (official MAX_ITERS). Rerunning with the same "
                            "--checkpoint_dir resumes and continues up to this step.", **fv)
  absl_flags.DEFINE_integer("batch_size", d.batch_size,
                            "Global batch size (split evenly over replicas).", **fv)
  absl_flags.DEFINE_integer("img_size", d.img_size,
                            "Training image side in pixels (IMG_SHAPES); multiple of 16.", **fv)
  absl_flags.DEFINE_boolean("random_crop", d.random_crop,
                            "Random img_size crops, upscaling smaller images (official "
                            "RANDOM_CROP; its default False squashes whole images to img_size, "
                            "ignoring aspect ratio).", **fv)
  absl_flags.DEFINE_boolean("random_flip", d.random_flip,
                            "Random horizontal flips (the official v1 pipeline has none).", **fv)
  absl_flags.DEFINE_string("random_scale", None,
                           "MIN,MAX: before cropping, resize each photo so that its short side is "
                           "U(MIN, MAX) x --img_size (e.g. 1,3: a 128 crop shows 1/3 to all of a "
                           "photo's short side). Default: crops at the photo's own scale.", **fv)
  absl_flags.DEFINE_string("init_checkpoint", None,
                           "Start a new run from this checkpoint's generator weights (a run "
                           "folder or a model folder with model.json; same architecture). "
                           "Critics, optimizers and step start fresh; ignored on resume.", **fv)
  absl_flags.DEFINE_integer("seed", t.seed,
                            "Seed of data order, crops, masks and initialisation.", **fv)

  # Model.
  absl_flags.DEFINE_enum("arch", "v1", config_lib.ARCHS,
                         "v1: official release (zero padding, BGR); gated: gated convs, "
                         "symmetric padding, RGB.", **fv)
  absl_flags.DEFINE_integer("cnum", 32, "Generator width (channels of the first conv).", **fv)
  absl_flags.DEFINE_enum("padding", None, PADDINGS,
                         "Generator padding (official PADDING 'SAME' = zero). Default: the "
                         "--arch preset's.", **fv)

  # Losses and critics.
  absl_flags.DEFINE_enum("gan", ls.gan, GANS,
                         "wgan_gp: v1 global+local WGAN-GP critics; sn_patch: v2 SN-PatchGAN "
                         "(hinge loss); none: reconstruction only (both stages, L1 + AE "
                         "losses, no critics).", **fv)
  absl_flags.DEFINE_enum("l1_loss_region", "auto", L1_REGION_CHOICES,
                         "Where the hole L1 loss is taken. box: the v1 discounted L1 inside the "
                         "local box (the release); hole: every hole pixel, normalised per sample "
                         "(any mask shape); auto: box for --mask_mode box, else hole.", **fv)
  absl_flags.DEFINE_float("gan_loss_alpha", ls.gan_loss_alpha,
                          "Weight of the adversarial term in the generator loss.", **fv)
  absl_flags.DEFINE_float("wgan_gp_lambda", ls.wgan_gp_lambda, "Gradient-penalty weight.", **fv)
  absl_flags.DEFINE_float("coarse_l1_alpha", ls.coarse_l1_alpha,
                          "Weight of the stage-1 terms inside the l1 and ae losses.", **fv)
  absl_flags.DEFINE_float("l1_loss_alpha", ls.l1_loss_alpha,
                          "Weight of the discounted hole-region L1 loss.", **fv)
  absl_flags.DEFINE_float("ae_loss_alpha", ls.ae_loss_alpha,
                          "Weight of the known-region (auto-encoder) L1 loss.", **fv)
  absl_flags.DEFINE_float("global_wgan_loss_alpha", ls.global_wgan_loss_alpha,
                          "Weight of the global critic inside the adversarial term (local: 1).",
                          **fv)
  absl_flags.DEFINE_boolean("gan_with_mask", ls.gan_with_mask,
                            "Concatenate the mask as a 4th channel to the critic input.", **fv)
  absl_flags.DEFINE_boolean("discounted_mask", ls.discounted_mask,
                            "Weight the hole L1 loss by spatial discounting.", **fv)
  absl_flags.DEFINE_float("spatial_discounting_gamma", ls.spatial_discounting_gamma,
                          "Spatial discounting base (official code 0.9; the paper states 0.99).",
                          **fv)
  absl_flags.DEFINE_boolean("pretrain_coarse_network", ls.pretrain_coarse_network,
                            "Train only the coarse network with L1 losses (no GAN, no critic).",
                            **fv)
  absl_flags.DEFINE_integer("critic_cnum", ls.critic_cnum,
                            "Critic width (channels of the first critic conv; official 64).",
                            **fv)

  # Masks (ARCHITECTURE.md §6.1).
  absl_flags.DEFINE_enum("mask_mode", d.mask_mode, MASK_MODES,
                         "box: v1 rectangles; free_form: v2 brush strokes; both: their union; "
                         "mixed: each sample a box or strokes (equal odds).",
                         **fv)
  absl_flags.DEFINE_integer("box_height", 0,
                            "Bbox / local-critic crop height (HEIGHT); 0 = img_size // 2.", **fv)
  absl_flags.DEFINE_integer("box_width", 0,
                            "Bbox / local-critic crop width (WIDTH); 0 = img_size // 2.", **fv)
  absl_flags.DEFINE_integer("max_delta_height", 0,
                            "The hole is the bbox shrunk by up to max_delta_height // 2 on top "
                            "and bottom; 0 = img_size // 8 (the official 32 at 256).", **fv)
  absl_flags.DEFINE_integer("max_delta_width", 0,
                            "The hole is the bbox shrunk by up to max_delta_width // 2 left and "
                            "right; 0 = img_size // 8 (the official 32 at 256).", **fv)
  absl_flags.DEFINE_integer("vertical_margin", d.vertical_margin,
                            "Minimum distance of the bbox from the top/bottom edges.", **fv)
  absl_flags.DEFINE_integer("horizontal_margin", d.horizontal_margin,
                            "Minimum distance of the bbox from the left/right edges.", **fv)

  # Optimisation.
  absl_flags.DEFINE_float("lr", t.lr, "Adam learning rate (constant).", **fv)
  absl_flags.DEFINE_float("beta1", t.beta1, "Adam beta1.", **fv)
  absl_flags.DEFINE_float("beta2", t.beta2, "Adam beta2 (v1 0.9; v2 used 0.999).", **fv)
  absl_flags.DEFINE_integer("critic_steps", -1,
                            "Critic updates per generator update; -1 = the --gan default "
                            f"({DEFAULT_CRITIC_STEPS}).", **fv)
  absl_flags.DEFINE_float("critic_lr", t.critic_lr,
                          "Adam learning rate of the critics (0 = --lr).", **fv)
  absl_flags.DEFINE_integer("critic_warmup", t.critic_warmup,
                            "Steps at the start of the run in which only the critics train "
                            "(on the frozen generator; each such step makes --critic_steps + 1 "
                            "critic updates); they count as steps.", **fv)
  absl_flags.DEFINE_boolean("gradient_clip", t.gradient_clip, "Clip gradients.", **fv)
  absl_flags.DEFINE_float("gradient_clip_value", t.gradient_clip_value,
                          "Clipping threshold when --gradient_clip.", **fv)
  absl_flags.DEFINE_integer("micro_batch", t.micro_batch,
                            "Each step runs each replica's batch in micro-batches of at most "
                            "this many samples, one after another, and sums their gradients: "
                            "the same update with less activation memory. 0 = the whole batch; "
                            "-1 = auto: 4 at 256² cnum 32 (the official settings; memory measured "
                            "in bench/README.md), scaled by 1 / (img_size² cnum); whole batch "
                            "with --gan sn_patch.",
                            **fv)

  absl_flags.DEFINE_enum("precision", t.precision, precision_lib.PRECISIONS,
                         "Keras dtype policy of the generator and critics: float32 (the "
                         "paper's), mixed_bfloat16 (pays on CPUs with AMX and on recent GPUs) or "
                         "mixed_float16 (GPUs; loss scaling). Weights stay float32, so "
                         "checkpoints load in any precision; a resumed run keeps its own "
                         "(docs/PRECISION.md).", **fv)

  # Logging, checkpoints, validation.
  absl_flags.DEFINE_integer("checkpoint_every", t.checkpoint_every,
                            "Checkpoint period in generator steps (official TRAIN_SPE).", **fv)
  for alias, original in ALIASES.items():
    absl_flags.DEFINE_alias(alias, original, **fv)
  absl_flags.DEFINE_integer("val_psteps", t.val_psteps,
                            "Image-summary period in generator steps (0 = off).", **fv)
  absl_flags.DEFINE_integer("log_every", t.log_every, "Scalar logging period in steps.", **fv)
  absl_flags.DEFINE_integer("val_every", t.val_every,
                            "Validation-metrics period in steps (0 = off).", **fv)
  absl_flags.DEFINE_integer("val_count", d.val_count,
                            "Validation images used for metrics.", **fv)
  absl_flags.DEFINE_integer("viz_max_out", t.viz_max_out,
                            "Training images per image summary.", **fv)
  absl_flags.DEFINE_integer("static_view_size", d.static_view_size,
                            "Fixed validation images shown in summaries (0 = none).", **fv)

  # Devices.
  absl_flags.DEFINE_enum("distribute", t.distribute, DISTRIBUTE_STRATEGIES,
                         "tf.distribute strategy: default (one device), mirrored (all local "
                         "GPUs or virtual CPUs), multi_worker (TF_CONFIG).", **fv)
  absl_flags.DEFINE_enum(OLD_DISTRIBUTE, None, DISTRIBUTE_STRATEGIES,
                         "Old name of --distribute (--strategy is the scale strategy in the "
                         "other CLIs).", **fv)
  absl_flags.DEFINE_integer("virtual_cpu_devices", t.virtual_cpu_devices,
                            "Split the CPU into N logical devices (testing distribution; "
                            "0 = off).", **fv)


def build_config(flag_values=absl_flags.FLAGS):
  """Returns the validated frozen ``Config`` for parsed ``flag_values``.

  Every section is built from its dataclass fields: a field takes the flag of the
  same name, except the model preset and the ``MIN,MAX`` pair of ``--random_scale``.
  The sentinels (box sizes 0, ``auto`` L1 region, ``--critic_steps -1``) are resolved
  by ``Config`` itself.

  Raises:
    ValueError: an invalid flag value or combination (message names the flag).
  """
  overrides = TINY_PRESET if flag_values.preset == "tiny" else {}

  def user_set(name):
    names = (name,) + tuple(a for a, original in ALIASES.items() if original == name)
    return any(not flag_values[n].using_default_value for n in names)

  def get(name):
    if name in overrides and not user_set(name):
      return overrides[name]
    return getattr(flag_values, name)

  def section(cls, derived):
    return cls(**{f.name: derived[f.name] if f.name in derived else get(f.name)
                  for f in dataclasses.fields(cls)})

  padding = get("padding")
  model = config_lib.preset(get("arch"), cnum=get("cnum"),
                            **({} if padding is None else {"padding": padding}))

  scale = parse_scale(get("random_scale"))
  data = section(DataConfig, {"random_scale_min": scale[0], "random_scale_max": scale[1]})
  old = flag_values[OLD_DISTRIBUTE].value
  distribute = old if old is not None and not user_set("distribute") else get("distribute")
  return Config(model=model, data=data, loss=section(LossConfig, {}),
                train=section(TrainConfig, {"distribute": distribute}))
