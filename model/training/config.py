"""Training configuration: one frozen, validated dataclass per concept, saved as JSON.

``DataConfig`` (images and masks), ``LossConfig`` (loss weights and critics, read by
``model.training.step`` as is), ``TrainConfig`` (optimisation, schedule, devices) and
``Config`` (the three plus the generator's ``ModelConfig``). No TensorFlow, no flags:
``flags.py`` builds a ``Config`` from the command line, the training runner saves it as
``config.json`` beside the checkpoints and ``Config.from_json`` rebuilds it. Defaults
are the values of the official v1 release's ``inpaint.yml`` (ARCHITECTURE.md §6.4) except
where a comment says otherwise.

The sentinels are resolved here, so a ``Config`` built in code gets the same values as
one built from flags: box sizes 0 -> from ``img_size`` (``box_*`` = S/2, ``max_delta_*`` =
S/8), ``l1_loss_region="auto"`` -> box for box masks, else hole, ``critic_steps=-1`` ->
the ``gan``'s default (0 without critics). ``parse_scale`` reads ``--random_scale``'s
``MIN,MAX``. Saved JSON holds the resolved values.
"""
import dataclasses
import json
import math

from model import config as config_lib
from model import precision as precision_lib

# How train.py's models are run by default (the inference block of their model.json): the
# pipeline that scored best on dev with the demo model (checkpoints/demo/TRAINING.md).
TRAINED_STRATEGY = "crop"

GANS = ("wgan_gp", "sn_patch", "none")
L1_REGIONS = ("box", "hole")
MASK_MODES = ("box", "free_form", "both", "mixed")
DISTRIBUTE_STRATEGIES = ("default", "mirrored", "multi_worker")  # tf.distribute (--distribute)
PRESETS = ("none", "tiny")
DEFAULT_CRITIC_STEPS = {"wgan_gp": 5, "sn_patch": 1, "none": 0}  # v1: 5 per G step; v2: 1
# ``--micro_batch -1``: micro-batches of at most this many samples x pixels x generator
# channels (cnum), i.e. 4 samples of the release's 256² cnum-32 setting (bench/README.md).
AUTO_MICRO_BATCH_UNITS = 4 * 256 * 256 * 32


def _check(ok, message):
  if not ok:
    raise ValueError(message)


def _check_finite(obj, names):
  for name in names:
    value = getattr(obj, name)
    try:
      finite = math.isfinite(value)
    except TypeError:
      finite = False
    _check(finite, f"--{name} must be a finite number, got {value}")


def parse_scale(text):
  """``"MIN,MAX"`` -> (min, max) floats; None or empty -> (0, 0) (no rescaling)."""
  if not text:
    return 0.0, 0.0
  try:
    values = tuple(float(p) for p in text.split(","))
  except ValueError:
    values = ()
  if len(values) != 2 or not all(math.isfinite(v) for v in values):
    raise ValueError(f"--random_scale must be MIN,MAX (two numbers), got {text!r}")
  return values


def _check_keys(cls, values, section):
  _check(isinstance(values, dict), f"{section} config must be a JSON object")
  unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
  _check(not unknown, f"unknown {section} config keys: {sorted(unknown)}")
  config_lib.check_types(cls, values, section)
  return values


class _Section:
  """``from_dict`` for a config dataclass: unknown keys raise, missing ones take defaults."""
  SECTION = ""
  RETIRED = ()  # keys older config.json files hold that no longer mean anything (dropped)
  RENAMED = {}  # key in older config.json files -> its name now

  @classmethod
  def from_dict(cls, values):
    if isinstance(values, dict):
      values = {cls.RENAMED.get(k, k): v for k, v in values.items() if k not in cls.RETIRED}
    return cls(**_check_keys(cls, values, cls.SECTION))


@dataclasses.dataclass(frozen=True)
class DataConfig(_Section):
  """Input images and training masks (ARCHITECTURE.md §6.1–6.2). ``batch_size`` is global.

  Box sizes 0 are derived from ``img_size`` S: ``box_height/width`` S // 2, ``max_delta_*``
  S // 8 (the release's 128 and 32 at 256).
  """
  SECTION = "data"
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
  box_height: int = 0           # 0 = img_size // 2
  box_width: int = 0
  max_delta_height: int = 0     # 0 = img_size // 8
  max_delta_width: int = 0
  vertical_margin: int = 0
  horizontal_margin: int = 0

  def __post_init__(self):
    s = self.img_size
    _check(s >= 32 and s % 16 == 0,
           f"--img_size must be a multiple of 16 and >= 32, got {s}")
    for name, share in (("box_height", 2), ("box_width", 2), ("max_delta_height", 8),
                        ("max_delta_width", 8)):
      if getattr(self, name) == 0:
        object.__setattr__(self, name, s // share)
    _check_finite(self, ("random_scale_min", "random_scale_max"))
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
class LossConfig(_Section):
  """Loss weights, GAN flavour and critic width (ARCHITECTURE.md §4–5)."""
  SECTION = "loss"
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
  l1_loss_region: str = "auto"  # auto: box for --mask_mode box, else hole (resolved by Config)

  def __post_init__(self):
    _check(self.gan in GANS, f"--gan must be one of {GANS}, got {self.gan!r}")
    weights = ("gan_loss_alpha", "wgan_gp_lambda", "coarse_l1_alpha", "l1_loss_alpha",
               "ae_loss_alpha", "global_wgan_loss_alpha")
    _check_finite(self, weights + ("spatial_discounting_gamma",))
    for name in weights:
      value = getattr(self, name)
      _check(value >= 0, f"--{name} must be >= 0, got {value}")
    gamma = self.spatial_discounting_gamma
    _check(0 < gamma <= 1, f"--spatial_discounting_gamma must be in (0, 1], got {gamma}")
    _check(self.critic_cnum >= 1, f"--critic_cnum must be >= 1, got {self.critic_cnum}")
    _check(self.l1_loss_region in L1_REGIONS + ("auto",),
           f"--l1_loss_region must be one of {L1_REGIONS + ('auto',)}, "
           f"got {self.l1_loss_region!r}")

  @property
  def adversarial(self):
    """True when critics are built and trained (not ``--gan none``, not stage-1 pretraining)."""
    return self.gan != "none" and not self.pretrain_coarse_network

  @property
  def discount_gamma(self):
    """Base of the spatial discount of the hole L1 (1.0 = no discount)."""
    return self.spatial_discounting_gamma if self.discounted_mask else 1.0


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Section):
  """Optimisation, schedule, logging and devices (ARCHITECTURE.md §6.3). Periods count G steps."""
  SECTION = "train"
  RETIRED = ("steps_per_loop",)  # never did anything (steps run one per call)
  RENAMED = {"strategy": "distribute"}  # "strategy" is the scale strategy everywhere else
  checkpoint_dir: str = "checkpoints/run"
  max_iters: int = 1_000_000
  lr: float = 1e-4
  beta1: float = 0.5
  beta2: float = 0.9
  critic_steps: int = -1  # -1 = the gan's default (DEFAULT_CRITIC_STEPS; resolved by Config)
  critic_lr: float = 0.0  # 0 = lr
  critic_warmup: int = 0  # first steps of a run that update only the critics
  gradient_clip: bool = False
  gradient_clip_value: float = 0.1
  checkpoint_every: int = 10_000
  val_psteps: int = 1000
  log_every: int = 100
  val_every: int = 5000
  viz_max_out: int = 10
  distribute: str = "default"
  virtual_cpu_devices: int = 0
  seed: int = 2018
  preset: str = "none"
  init_checkpoint: str | None = None
  micro_batch: int = -1  # samples per micro-batch: 0 = whole batch, -1 = auto (micro_batches)
  precision: str = precision_lib.DEFAULT  # Keras dtype policy of the nets (model/precision.py)

  def __post_init__(self):
    _check_finite(self, ("lr", "beta1", "beta2", "critic_lr", "gradient_clip_value"))
    _check(self.max_iters >= 1, f"--max_iters must be >= 1, got {self.max_iters}")
    _check(self.lr > 0, f"--lr must be > 0, got {self.lr}")
    for name in ("beta1", "beta2"):
      value = getattr(self, name)
      _check(0 <= value < 1, f"--{name} must be in [0, 1), got {value}")
    _check(self.critic_lr >= 0 and self.critic_lr == self.critic_lr,
           f"--critic_lr must be >= 0 (0 = --lr), got {self.critic_lr}")
    _check(self.critic_warmup >= 0, f"--critic_warmup must be >= 0, got {self.critic_warmup}")
    _check(self.critic_steps >= -1,
           f"--critic_steps must be >= 1 (or -1 for the --gan default), got {self.critic_steps}")
    _check(self.gradient_clip_value > 0,
           f"--gradient_clip_value must be > 0, got {self.gradient_clip_value}")
    for name, minimum in (("checkpoint_every", 1), ("log_every", 1), ("val_every", 0),
                          ("val_psteps", 0)):
      value = getattr(self, name)
      _check(value >= minimum, f"--{name} must be >= {minimum}, got {value}")
    _check(self.viz_max_out >= 1, f"--viz_max_out must be >= 1, got {self.viz_max_out}")
    _check(self.distribute in DISTRIBUTE_STRATEGIES,
           f"--distribute must be one of {DISTRIBUTE_STRATEGIES}, got {self.distribute!r}")
    _check(self.virtual_cpu_devices >= 0,
           f"--virtual_cpu_devices must be >= 0, got {self.virtual_cpu_devices}")
    _check(self.preset in PRESETS, f"--preset must be one of {PRESETS}, got {self.preset!r}")
    _check(self.micro_batch >= -1,
           f"--micro_batch must be >= 0 (or -1 for auto), got {self.micro_batch}")
    _check(self.precision in precision_lib.PRECISIONS,
           f"--precision must be one of {precision_lib.PRECISIONS}, got {self.precision!r}")


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a training run needs; saved as JSON beside its checkpoints."""
  model: config_lib.ModelConfig = dataclasses.field(default_factory=config_lib.ModelConfig)
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  loss: LossConfig = dataclasses.field(default_factory=LossConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

  def __post_init__(self):
    loss, train = self.loss, self.train
    if loss.l1_loss_region == "auto":
      region = "box" if self.data.mask_mode == "box" else "hole"
      object.__setattr__(self, "loss", dataclasses.replace(loss, l1_loss_region=region))
    steps = train.critic_steps
    if not self.loss.adversarial:
      steps = 0  # no critic is built, whatever critic_steps says
    elif steps == -1:
      steps = DEFAULT_CRITIC_STEPS[self.loss.gan]
    if steps != train.critic_steps:
      object.__setattr__(self, "train", dataclasses.replace(train, critic_steps=steps))
    data, train = self.data, self.train
    _check(train.critic_steps >= 1 or not self.loss.adversarial,
           f"--critic_steps must be >= 1 (or -1 for the --gan default), got {train.critic_steps}")
    if train.distribute == "mirrored" and train.virtual_cpu_devices > 0:
      data.per_replica_batch_size(train.virtual_cpu_devices)
    _check(train.micro_batch <= 0 or not self._spectral_norm,
           "--micro_batch must be 0 or -1 with --gan sn_patch (its spectral norm runs one "
           "power iteration per critic call, so split batches would change the update)")

  @property
  def _spectral_norm(self):
    return self.loss.adversarial and self.loss.gan == "sn_patch"

  def to_json(self):
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  def inference_defaults(self, strategy=TRAINED_STRATEGY, seam_blend=True):
    """The ``inference`` block ``run_folder.prepare`` writes into the run's ``model.json``:
    the crop side and the box holes' side range (box shrunk by up to ``max_delta // 2`` per
    side) of this run, and how such a model is run by default."""
    d = self.data
    smallest = min(d.box_height - 2 * (d.max_delta_height // 2),
                   d.box_width - 2 * (d.max_delta_width // 2))
    return config_lib.InferenceConfig(strategy=strategy, seam_blend=seam_blend,
                                      crop_size=d.img_size, hole_min=max(1, smallest),
                                      hole_max=max(d.box_height, d.box_width))

  def checkpoint_layout(self):
    """``{flag: value}`` of the settings that decide which objects and shapes a checkpoint holds.

    A resumed run must build exactly these (the generator; whether there are critics, of
    which kind, width, input channels and input sizes) and keep its ``precision`` (the
    weights are float32 in every precision, but ``mixed_float16`` checkpoints its optimizers'
    loss scale, and one run computes in one precision); every other setting (learning
    rates, loss weights, schedule, logging) may change on resume.
    """
    m, loss, data = self.model, self.loss, self.data
    layout = {"arch": m.arch, "cnum": m.cnum, "padding": m.padding, "gated": m.gated,
              "channel_order": m.channel_order, "precision": self.train.precision,
              "gan": loss.gan if loss.adversarial else "none (no critics)"}
    if loss.adversarial:
      layout["critic_cnum"] = loss.critic_cnum
      if loss.gan == "wgan_gp":  # the dense layers of both critics depend on their input sizes
        layout.update(gan_with_mask=loss.gan_with_mask, img_size=data.img_size,
                      box_height=data.box_height, box_width=data.box_width)
    return layout

  @property
  def critic_steps(self):
    """Critic updates per generator update in this run (0 without critics)."""
    return self.train.critic_steps if self.loss.adversarial else 0

  def micro_batches(self, num_replicas=1):
    """Micro-batches each replica's batch is split into by the steps (1 = no split).

    Their gradients are summed into one update equal to the whole batch's (every loss
    term is a mean of per-sample terms), so only activation memory changes. The
    micro-batch is the largest divisor of the replica batch not above ``micro_batch``
    samples; ``-1`` (auto) takes ``AUTO_MICRO_BATCH_UNITS / (img_size² · cnum)`` samples,
    and no split with ``--gan sn_patch``.
    """
    batch = self.data.per_replica_batch_size(num_replicas)
    size = self.train.micro_batch
    if size == -1:
      size = 0 if self._spectral_norm else max(
          1, AUTO_MICRO_BATCH_UNITS // (self.data.img_size ** 2 * self.model.cnum))
    if size == 0 or size >= batch:
      return 1
    return batch // max(d for d in range(1, size + 1) if batch % d == 0)

  @classmethod
  def from_json(cls, text):
    """Inverse of ``to_json``; unknown keys raise ValueError, missing ones take defaults."""
    values = _check_keys(cls, json.loads(text), "top-level")
    # Each field's default factory is its section's class.
    return cls(**{f.name: f.default_factory.from_dict(values.get(f.name, {}))
                  for f in dataclasses.fields(cls)})


