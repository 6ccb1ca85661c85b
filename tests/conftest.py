"""Repository paths, the ../shared data location and the test levels.

Shared helpers are in tests/support/. Tests marked ``slow`` (subprocess end-to-end runs, long
trainings, browsers) are the end-to-end level; ``python -m pytest -q -m "not slow" tests`` runs
the unit level alone, ``python -m pytest -q tests`` runs both. Mark a whole file with a
module-level ``pytestmark = pytest.mark.slow``.
"""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("DEEPFILL_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
GOLDEN = os.path.join(SHARED, "golden", "deepfill_v1")
EXAMPLES = os.path.join(SHARED, "data", "examples")

BENCH = os.path.join(REPO, "bench")  # bench/static_site.py and bench/harness.py are tested too

for _path in (BENCH, REPO):
  if _path not in sys.path:
    sys.path.insert(0, _path)


def require_shared(path):
  """Skips when ../shared data is absent, unless CI demands it (DEEPFILL_REQUIRE_SHARED=1)."""
  if os.path.exists(path):
    return path
  if os.environ.get("DEEPFILL_REQUIRE_SHARED") == "1":
    pytest.fail(f"required fixture missing: {path}")
  pytest.skip(f"fixture not available: {path}")
