"""Shared test helpers: repository paths and the ../shared data location."""
import os
import struct
import sys
import zlib

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("DEEPFILL_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
GOLDEN = os.path.join(SHARED, "golden", "deepfill_v1")
EXAMPLES = os.path.join(SHARED, "data", "examples")

if REPO not in sys.path:
  sys.path.insert(0, REPO)


def require_shared(path):
  """Skips when ../shared data is absent, unless CI demands it (DEEPFILL_REQUIRE_SHARED=1)."""
  if os.path.exists(path):
    return path
  if os.environ.get("DEEPFILL_REQUIRE_SHARED") == "1":
    pytest.fail(f"required fixture missing: {path}")
  pytest.skip(f"fixture not available: {path}")


def png_with_header(width, height):
  """A small PNG whose IHDR declares ``width x height``; its pixel data is a few bytes, so it is a
  decompression bomb (or a damaged file) to whatever decodes it instead of reading the header."""
  def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
  ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
          + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
