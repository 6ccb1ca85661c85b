"""Generator configuration: architecture presets and JSON round trip."""
import dataclasses
import json

ARCHS = ("v1", "gated")
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
    if self.channel_order not in ("bgr", "rgb"):
      raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {self.channel_order!r}")
    if self.cnum < 1:
      raise ValueError("cnum must be positive")

  def to_json(self):
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, values):
    values = {k: v for k, v in values.items() if k not in LEGACY_KEYS}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
      raise ValueError(f"unknown model config keys: {sorted(unknown)}")
    return cls(**values)


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
