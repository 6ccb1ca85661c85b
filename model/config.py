"""Generator configuration: architecture presets and JSON round trip."""
import dataclasses
import json
import typing

from model import precision as precision_lib

ARCHS = ("v1", "gated")
CHANNEL_ORDERS = ("bgr", "rgb")  # the network's input channel order (bgr: official v1 weights)
# The generator's input sides are multiples of this: two stride-2 convolutions, then the x2
# downsample inside attention (ARCHITECTURE.md §2); its offsets are on this grid.
GRID = 8
# Keys older model.json files may hold and that are ignored now (the attention tile
# became a call argument of the generator).
LEGACY_KEYS = ("attention_tile",)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Everything needed to rebuild a generator (saved as ``config.json`` beside weights).

  ``v1``: the official release (plain ELU convs, zero padding, BGR input order).
  ``gated``: our variant (gated ELU convs, symmetric mirror padding, RGB order).
  Runtime knobs such as the attention tile are call arguments, not configuration.
  """
  arch: str = "v1"
  cnum: int = 32
  padding: str = "zero"
  gated: bool = False
  channel_order: str = "bgr"

  def __post_init__(self):
    if self.arch not in ARCHS:
      raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
    if self.channel_order not in CHANNEL_ORDERS:
      raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, "
                       f"got {self.channel_order!r}")
    if self.cnum < 1:
      raise ValueError("cnum must be positive")

  def to_json(self):
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, values):
    if not isinstance(values, dict):
      raise ValueError(f"the model config must be a JSON object, got {json.dumps(values)}")
    values = {k: v for k, v in values.items() if k not in LEGACY_KEYS}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
      raise ValueError(f"unknown model config keys: {sorted(unknown)}")
    check_types(cls, values, "model")
    return cls(**values)


_JSON_TYPES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               type(None): "null"}


def _is(value, kind):
  if kind is bool or kind is type(None) or kind is str:
    return isinstance(value, kind) if kind is not type(None) else value is None
  if kind is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if kind is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  return True


def check_types(cls, values, section):
  """Raises ValueError (one sentence) when a value read from JSON does not have the JSON type of
  its dataclass field (``"img_size": "abc"``), before the dataclass's own checks compare it."""
  for field in dataclasses.fields(cls):
    if field.name not in values:
      continue
    kinds = typing.get_args(field.type) or (field.type,)
    if not any(_is(values[field.name], kind) for kind in kinds):
      wanted = " or ".join(_JSON_TYPES.get(kind, str(kind)) for kind in kinds)
      raise ValueError(f"{section} config key {field.name!r} must be {wanted}, got "
                       f"{json.dumps(values[field.name])}")


def preset(arch, cnum=32, **overrides):
  """Returns the ``ModelConfig`` of an architecture preset."""
  if arch == "v1":
    base = ModelConfig(arch="v1", cnum=cnum, padding="zero", gated=False, channel_order="bgr")
  elif arch == "gated":
    base = ModelConfig(arch="gated", cnum=cnum, padding="symmetric", gated=True,
                       channel_order="rgb")
  else:
    raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
  return dataclasses.replace(base, **overrides)


STRATEGIES = ("original", "resize", "crop", "auto")
# Keras dtype policies the generator can run under (variables stay float32 in the mixed ones)
# and ``auto``: bfloat16 where the hardware makes it pay, else float32
# (``model/inference/run_precision.py``; docs/PRECISION.md).
INFERENCE_PRECISIONS = precision_lib.PRECISIONS + ("auto",)


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
  """How a model is run by default: the ``inference`` block of ``model.json``.

  ``strategy``: ``original`` (the photo at its own resolution), ``resize`` (the whole photo at
  the scale where its holes match ``hole_max``), ``crop`` (each hole region with a margin at
  that scale, pasted back at full resolution) or ``auto`` (picks per photo);
  ``model/inference/scaling.py``. ``seam_blend``: seam-blend the fill at full resolution.
  ``crop_size``, ``hole_min``, ``hole_max``: the square training crops' side and the range of
  the training box holes' sides (px), which the scaling strategies aim at. ``precision``: the
  Keras dtype policy the generator runs under, or ``auto`` (``INFERENCE_PRECISIONS``); pixel
  mapping and seam blending stay float32 whatever it is.
  """
  strategy: str = "original"
  seam_blend: bool = True
  crop_size: int = 256
  hole_min: int = 96
  hole_max: int = 128
  precision: str = "float32"

  def __post_init__(self):
    if self.strategy not in STRATEGIES:
      raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
    if self.precision not in INFERENCE_PRECISIONS:
      raise ValueError(f"precision must be one of {INFERENCE_PRECISIONS}, "
                       f"got {self.precision!r}")
    if not isinstance(self.seam_blend, bool):
      raise ValueError(f"seam_blend must be true or false, got {self.seam_blend!r}")
    for name in ("crop_size", "hole_min", "hole_max"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not self.hole_min <= self.hole_max <= self.crop_size:
      raise ValueError(f"need hole_min <= hole_max <= crop_size, got {self.hole_min}, "
                       f"{self.hole_max}, {self.crop_size}")

  def to_dict(self):
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values):
    if not isinstance(values, dict):
      raise ValueError(f"the inference block must be a JSON object, got {values!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
      raise ValueError(f"unknown inference keys: {sorted(unknown)}")
    check_types(cls, values, "inference")
    return cls(**values)


# The official release (Yu et al. 2018; inpaint.yml): 256² crops, 128² boxes shrunk by up to
# 32 px, run at full resolution in float32 without post-processing. Official TF1 checkpoints
# default to it.
OFFICIAL_INFERENCE = InferenceConfig(strategy="original", seam_blend=False, crop_size=256,
                                     hole_min=96, hole_max=128, precision="float32")
# A model.json written before the block existed: run as it was then (full resolution, blended,
# float32).
LEGACY_INFERENCE = InferenceConfig(strategy="original", seam_blend=True, precision="float32")
