"""The user-set limits (``--max_megapixels``, ``--max_memory_gb``, ``--max_upload_mb``): their
defaults and the one check of each, shared by every CLI (``cli.py``), the export and the web
app. No dependencies, so CLIs check flags before importing TensorFlow.

Each check accepts a finite number above 0 and at most ``bound`` (which keeps the derived
byte and pixel counts finite integers) and raises ``ValueError`` with a one-line message
naming the flag otherwise (``inf``, ``nan``, ``1e308``, 0, negatives, non-numbers).
"""
import math

DEFAULT_MAX_MEGAPIXELS = 100.0  # test.py, export.py, batch_inpaint.py (serve.py: 40)
DEFAULT_MAX_PIXELS = int(DEFAULT_MAX_MEGAPIXELS * 1e6)
MEGAPIXELS_BOUND = 1e6   # 10**12 pixels: far above any photo, and an int64 in graphs
MEMORY_GB_BOUND = 1e6
UPLOAD_MB_BOUND = 1e6


def check_number(flag, value, bound):
  """``value`` as a float if it is finite, above 0 and at most ``bound``, else ValueError."""
  ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
        and math.isfinite(value) and 0 < value <= bound)
  if not ok:
    raise ValueError(f"--{flag} must be a positive number (at most {bound:g}), got {value}")
  return float(value)


def max_pixels(megapixels):
  """``--max_megapixels`` as a pixel count (width x height), at least 1."""
  return max(1, int(check_number("max_megapixels", megapixels, MEGAPIXELS_BOUND) * 1e6))


def memory_bytes(gigabytes):
  """``--max_memory_gb`` in bytes (GB = 2**30 bytes)."""
  return check_number("max_memory_gb", gigabytes, MEMORY_GB_BOUND) * 2**30


def upload_bytes(megabytes):
  """``--max_upload_mb`` in bytes (MB = 2**20 bytes), at least 1."""
  return max(1, int(check_number("max_upload_mb", megabytes, UPLOAD_MB_BOUND) * 2**20))

