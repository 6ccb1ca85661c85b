"""The shared test helpers (tests/support/) themselves."""
import numpy as np

from support import checkpoints
from support import procs


def test_tiny_weights_do_not_depend_on_earlier_tests():
  """The exported graph and test.py's are byte-identical for the tiny weights, not for every
  draw, so the tiny generator must not depend on the process's global random state."""
  import keras
  keras.utils.set_random_seed(123)  # e.g. what tests/test_local_inference.py leaves behind
  np.random.default_rng(0).random(3)
  first = [w.numpy() for w in checkpoints.tiny_generator()[0].weights]
  keras.utils.set_random_seed(7)
  keras.random.uniform((4,))
  second = [w.numpy() for w in checkpoints.tiny_generator()[0].weights]
  assert len(first) == len(second) > 10
  assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_subprocess_environment_is_a_users(monkeypatch):
  monkeypatch.setenv("PYTHONPATH", "/elsewhere")
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
  values = procs.env(EXTRA="1")
  assert "PYTHONPATH" not in values and "TF_CPP_MIN_LOG_LEVEL" not in values
  assert values["EXTRA"] == "1"


def test_run_keeps_carriage_returns(tmp_path):
  script = tmp_path / "cr.py"
  script.write_text("import sys; sys.stderr.write('a\\rb\\n'); print('out')\n")
  proc = procs.run(script, cwd=tmp_path, timeout=60)
  assert (proc.returncode, proc.stdout, proc.stderr) == (0, "out\n", "a\rb\n")
