"""Shared test helpers: repository paths and the ../shared data location."""
import os
import sys

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
