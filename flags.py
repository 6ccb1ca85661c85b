"""Training flags and ``build_config(flag_values) -> Config`` (frozen dataclasses, no TF).

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
import json

from absl import flags as absl_flags

from model import config as config_lib

GANS = ("wgan_gp", "sn_patch", "none")
L1_REGIONS = ("auto", "box", "hole")
MASK_MODES = ("box", "free_form", "both", "mixed")
PADDINGS = ("zero", "reflect", "symmetric")
STRATEGIES = ("default", "mirrored", "multi_worker")
PRESETS = ("none", "tiny")
ALIASES = {"train_spe": "checkpoint_every"}  # official name -> ours
DEFAULT_CRITIC_STEPS = {"wgan_gp": 5, "sn_patch": 1, "none": 0}  # v1: 5 per G step; v2: 1

# ``--preset tiny``: a seconds-long smoke run. Flags given explicitly still win.
TINY_PRESET = {
    "img_size": 64, "cnum": 8, "batch_size": 2, "max_iters": 2, "max_delta_height": 8,
    "max_delta_width": 8, "steps_per_loop": 1, "log_every": 1, "val_every": 2,
    "val_psteps": 2, "checkpoint_every": 2, "val_count": 2, "static_view_size": 2,
    "viz_max_out": 2,
}


def _check(ok, message):
  if not ok:
    raise ValueError(message)


def _check_keys(cls, values, section):
  _check(isinstance(values, dict), f"{section} config must be a JSON object")
  unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
  _check(not unknown, f"unknown {section} config keys: {sorted(unknown)}")
  return values


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Input images and training-mask geometry (ARCHITECTURE.md §6.1–6.2). ``batch_size`` is global."""
  train_flist: str | None = None
  val_flist: str | None = None
  img_size: int = 256
  batch_size: int = 16
  random_crop: bool = True
  random_flip: bool = False
  random_scale_min: float = 0.0   # 0 = crops at the photo's own scale
  random_scale_max: float = 0.0
  val_count: int = 100
  static_view_size: int = 30
  mask_mode: str = "box"
  box_height: int = 128
  box_width: int = 128
  max_delta_height: int = 32
  max_delta_width: int = 32
  vertical_margin: int = 0
  horizontal_margin: int = 0

  def __post_init__(self):
    s = self.img_size
    _check(s >= 32 and s % 16 == 0, f"--img_size must be a multiple of 16 and >= 32, got {s}")
    _check(self.batch_size >= 1, f"--batch_size must be >= 1, got {self.batch_size}")
    lo, hi = self.random_scale_min, self.random_scale_max
    _check((lo, hi) == (0, 0) or 0 < lo <= hi,
           f"--random_scale must be MIN,MAX with 0 < MIN <= MAX, got {lo},{hi}")
    _check((lo, hi) == (0, 0) or self.random_crop, "--random_scale needs --random_crop")
    _check(self.val_count >= 1, f"--val_count must be >= 1, got {self.val_count}")
    _check(self.static_view_size >= 0,
           f"--static_view_size must be >= 0, got {self.static_view_size}")
    _check(self.mask_mode in MASK_MODES,
           f"--mask_mode must be one of {MASK_MODES}, got {self.mask_mode!r}")
    for axis, box, delta, margin in (
        ("height", self.box_height, self.max_delta_height, self.vertical_margin),
        ("width", self.box_width, self.max_delta_width, self.horizontal_margin)):
      margin_flag = "vertical_margin" if axis == "height" else "horizontal_margin"
      _check(box >= 1, f"--box_{axis} must be >= 1 (0 = img_size // 2), got {box}")
      _check(margin >= 0, f"--{margin_flag} must be >= 0, got {margin}")
      _check(box + 2 * margin <= s,
             f"--box_{axis} ({box}) + 2 * --{margin_flag} ({margin}) exceeds --img_size ({s})")
      _check(delta >= 0, f"--max_delta_{axis} must be >= 0, got {delta}")
      _check(box - 2 * (delta // 2) >= 1,
             f"--max_delta_{axis} ({delta}) can shrink the {box}-px box to an empty hole; "
             f"use a value below {box}")

  def per_replica_batch_size(self, num_replicas):
    """Global batch / replicas; ValueError when it does not divide evenly."""
    _check(num_replicas >= 1 and self.batch_size % num_replicas == 0,
           f"--batch_size ({self.batch_size}) must be divisible by the number of replicas "
           f"({num_replicas})")
    return self.batch_size // num_replicas


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Loss weights (ARCHITECTURE.md §5). Defaults are the official v1 values."""
  gan: str = "wgan_gp"
  gan_loss_alpha: float = 0.001
  wgan_gp_lambda: float = 10.0
  coarse_l1_alpha: float = 1.2
  l1_loss_alpha: float = 1.2
  ae_loss_alpha: float = 1.2
  global_wgan_loss_alpha: float = 1.0
  gan_with_mask: bool = False
  discounted_mask: bool = True
  spatial_discounting_gamma: float = 0.9
  pretrain_coarse_network: bool = False
  critic_cnum: int = 64
  l1_loss_region: str = "box"

  def __post_init__(self):
    _check(self.gan in GANS, f"--gan must be one of {GANS}, got {self.gan!r}")
    for name in ("gan_loss_alpha", "wgan_gp_lambda", "coarse_l1_alpha", "l1_loss_alpha",
                 "ae_loss_alpha", "global_wgan_loss_alpha"):
      value = getattr(self, name)
      _check(value >= 0, f"--{name} must be >= 0, got {value}")
    gamma = self.spatial_discounting_gamma
    _check(0 < gamma <= 1, f"--spatial_discounting_gamma must be in (0, 1], got {gamma}")
    _check(self.critic_cnum >= 1, f"--critic_cnum must be >= 1, got {self.critic_cnum}")
    _check(self.l1_loss_region in L1_REGIONS[1:],
           f"--l1_loss_region must be one of {L1_REGIONS}, got {self.l1_loss_region!r}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation, schedule, logging and devices (ARCHITECTURE.md §6.3). Periods count generator steps."""
  checkpoint_dir: str = "checkpoints/run"
  max_iters: int = 1_000_000
  lr: float = 1e-4
  beta1: float = 0.5
  beta2: float = 0.9
  critic_steps: int = 5
  gradient_clip: bool = False
  gradient_clip_value: float = 0.1
  checkpoint_every: int = 10_000
  val_psteps: int = 1000
  log_every: int = 100
  val_every: int = 5000
  steps_per_loop: int = 10
  viz_max_out: int = 10
  strategy: str = "default"
  virtual_cpu_devices: int = 0
  seed: int = 2018
  preset: str = "none"
  init_checkpoint: str | None = None

  def __post_init__(self):
    _check(self.max_iters >= 1, f"--max_iters must be >= 1, got {self.max_iters}")
    _check(self.lr > 0, f"--lr must be > 0, got {self.lr}")
    for name in ("beta1", "beta2"):
      value = getattr(self, name)
      _check(0 <= value < 1, f"--{name} must be in [0, 1), got {value}")
    _check(self.critic_steps >= 0,
           f"--critic_steps must be >= 1 (or -1 for the --gan default), got {self.critic_steps}")
    _check(self.gradient_clip_value > 0,
           f"--gradient_clip_value must be > 0, got {self.gradient_clip_value}")
    _check(self.steps_per_loop >= 1, f"--steps_per_loop must be >= 1, got {self.steps_per_loop}")
    for name, minimum in (("checkpoint_every", 1), ("log_every", 1), ("val_every", 0),
                          ("val_psteps", 0)):
      value = getattr(self, name)
      _check(value >= minimum, f"--{name} must be >= {minimum}, got {value}")
      _check(value % self.steps_per_loop == 0,
             f"--{name} ({value}) must be a multiple of --steps_per_loop ({self.steps_per_loop})")
    _check(self.viz_max_out >= 1, f"--viz_max_out must be >= 1, got {self.viz_max_out}")
    _check(self.strategy in STRATEGIES,
           f"--strategy must be one of {STRATEGIES}, got {self.strategy!r}")
    _check(self.virtual_cpu_devices >= 0,
           f"--virtual_cpu_devices must be >= 0, got {self.virtual_cpu_devices}")
    _check(self.preset in PRESETS, f"--preset must be one of {PRESETS}, got {self.preset!r}")


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a training run needs; saved as JSON beside its checkpoints."""
  model: config_lib.ModelConfig = dataclasses.field(default_factory=config_lib.ModelConfig)
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  loss: LossConfig = dataclasses.field(default_factory=LossConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

  def __post_init__(self):
    data, train = self.data, self.train
    critics = self.loss.gan != "none" and not self.loss.pretrain_coarse_network
    _check(train.critic_steps >= 1 or not critics,
           f"--critic_steps must be >= 1 (or -1 for the --gan default), got {train.critic_steps}")
    if train.strategy == "mirrored" and train.virtual_cpu_devices > 0:
      data.per_replica_batch_size(train.virtual_cpu_devices)

  def to_json(self):
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_json(cls, text):
    """Inverse of ``to_json``; unknown keys raise ValueError, missing ones take defaults."""
    values = _check_keys(cls, json.loads(text), "top-level")
    return cls(model=config_lib.ModelConfig.from_dict(values.get("model", {})),
               data=DataConfig(**_check_keys(DataConfig, values.get("data", {}), "data")),
               loss=LossConfig(**_check_keys(LossConfig, values.get("loss", {}), "loss")),
               train=TrainConfig(**_check_keys(TrainConfig, values.get("train", {}), "train")))


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
  absl_flags.DEFINE_integer("attention_tile", 0,
                            "Contextual-attention query tile size to bound memory (0 = dense).",
                            **fv)

  # Losses and critics.
  absl_flags.DEFINE_enum("gan", ls.gan, GANS,
                         "wgan_gp: v1 global+local WGAN-GP critics; sn_patch: v2 SN-PatchGAN "
                         "(hinge loss); none: reconstruction only (both stages, L1 + AE "
                         "losses, no critics).", **fv)
  absl_flags.DEFINE_enum("l1_loss_region", "auto", L1_REGIONS,
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
  absl_flags.DEFINE_boolean("gradient_clip", t.gradient_clip, "Clip gradients.", **fv)
  absl_flags.DEFINE_float("gradient_clip_value", t.gradient_clip_value,
                          "Clipping threshold when --gradient_clip.", **fv)

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
  absl_flags.DEFINE_integer("steps_per_loop", t.steps_per_loop,
                            "Generator steps per tf.function call; the periods above must be "
                            "multiples of it.", **fv)

  # Devices.
  absl_flags.DEFINE_enum("strategy", t.strategy, STRATEGIES,
                         "tf.distribute strategy: default (one device), mirrored (all local "
                         "GPUs or virtual CPUs), multi_worker (TF_CONFIG).", **fv)
  absl_flags.DEFINE_integer("virtual_cpu_devices", t.virtual_cpu_devices,
                            "Split the CPU into N logical devices (testing distribution; "
                            "0 = off).", **fv)


def _parse_scale(text):
  """``"MIN,MAX"`` -> (min, max) floats; None or empty -> (0, 0) (no rescaling)."""
  if not text:
    return 0.0, 0.0
  parts = text.split(",")
  try:
    values = tuple(float(p) for p in parts)
  except ValueError:
    values = ()
  _check(len(values) == 2, f"--random_scale must be MIN,MAX (two numbers), got {text!r}")
  return values


def build_config(flag_values=absl_flags.FLAGS):
  """Returns the validated frozen ``Config`` for parsed ``flag_values``.

  Raises:
    ValueError: an invalid flag value or combination (message names the flag).
  """
  preset = flag_values.preset
  overrides = TINY_PRESET if preset == "tiny" else {}

  def user_set(name):
    names = (name,) + tuple(a for a, original in ALIASES.items() if original == name)
    return any(not flag_values[n].using_default_value for n in names)

  def get(name):
    if name in overrides and not user_set(name):
      return overrides[name]
    return getattr(flag_values, name)

  img_size = get("img_size")
  scale = _parse_scale(get("random_scale"))
  model_overrides = {}
  if get("padding") is not None:
    model_overrides["padding"] = get("padding")
  attention_tile = get("attention_tile")
  _check(attention_tile >= 0, f"--attention_tile must be >= 0, got {attention_tile}")
  if attention_tile:
    model_overrides["attention_tile"] = attention_tile
  model = config_lib.preset(get("arch"), cnum=get("cnum"), **model_overrides)

  data = DataConfig(
      train_flist=get("train_flist"), val_flist=get("val_flist"), img_size=img_size,
      batch_size=get("batch_size"), random_crop=get("random_crop"),
      random_flip=get("random_flip"), val_count=get("val_count"),
      static_view_size=get("static_view_size"), mask_mode=get("mask_mode"),
      box_height=get("box_height") or img_size // 2, box_width=get("box_width") or img_size // 2,
      max_delta_height=get("max_delta_height") or img_size // 8,
      max_delta_width=get("max_delta_width") or img_size // 8,
      random_scale_min=scale[0], random_scale_max=scale[1],
      vertical_margin=get("vertical_margin"), horizontal_margin=get("horizontal_margin"))
  loss_values = {f.name: get(f.name) for f in dataclasses.fields(LossConfig)}
  if loss_values["l1_loss_region"] == "auto":
    loss_values["l1_loss_region"] = "box" if data.mask_mode == "box" else "hole"
  loss = LossConfig(**loss_values)
  critic_steps = get("critic_steps")
  if critic_steps == -1:
    critic_steps = DEFAULT_CRITIC_STEPS[loss.gan]
  train_values = {f.name: get(f.name) for f in dataclasses.fields(TrainConfig)
                  if f.name != "critic_steps"}
  train = TrainConfig(critic_steps=critic_steps, **train_values)
  return Config(model=model, data=data, loss=loss, train=train)
