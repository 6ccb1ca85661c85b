"""tools/average_checkpoints.py: the mean of several generators, written atomically."""
import os

import numpy as np
import pytest

from support import checkpoints
from support import procs


def _save_random(directory, seed, cnum=4):
  from model import weights
  gen, cfg = checkpoints.tiny_generator(seed, cnum)
  weights.save_generator(gen, cfg, str(directory))
  return gen.get_weights()


def _run(*argv):
  return procs.run("tools/average_checkpoints.py", *argv, timeout=300)


@pytest.mark.slow
def test_average_is_the_elementwise_mean_and_loads_like_any_model(tmp_path):
  from model import weights
  a = _save_random(tmp_path / "a", 1)
  b = _save_random(tmp_path / "b", 2)
  c = _save_random(tmp_path / "c", 3)
  out = tmp_path / "avg"
  done = _run("--checkpoints", f"{tmp_path / 'a'},{tmp_path / 'b'},{tmp_path / 'c'}",
              "--output", out)
  assert done.returncode == 0, done.stderr
  assert done.stdout.strip() == f"wrote {out} (mean of 3 checkpoints)"
  assert done.stderr == ""
  gen, cfg = weights.load_generator(str(out))
  assert cfg.cnum == 4
  for got, wa, wb, wc in zip(gen.get_weights(), a, b, c):
    np.testing.assert_allclose(got, (wa.astype(np.float64) + wb + wc) / 3, rtol=1e-6, atol=1e-7)
  assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temp folder left


@pytest.mark.slow
def test_bad_inputs_are_one_line_errors_and_write_nothing(tmp_path):
  _save_random(tmp_path / "a", 1)
  _save_random(tmp_path / "b", 2, cnum=8)
  cases = [
      (["--checkpoints", tmp_path / "a", "--output", tmp_path / "o1"], "two or more"),
      (["--checkpoints", f"{tmp_path / 'a'},{tmp_path / 'b'}", "--output", tmp_path / "o2"],
       "different generator"),
      (["--checkpoints", f"{tmp_path / 'a'},{tmp_path / 'missing'}", "--output", tmp_path / "o3"],
       "not found"),
      (["--checkpoints", f"{tmp_path / 'a'},{tmp_path / 'a'}", "--output", tmp_path / "a",
        "--overwrite"], "is one of the --checkpoints"),
      (["--checkpoints", f"{tmp_path / 'a'},{tmp_path / 'a'}", "--output", tmp_path / "b"],
       "exists; pass --overwrite"),
  ]
  for argv, message in cases:
    done = _run(*argv)
    assert done.returncode == 1, (argv, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
  assert sorted(os.listdir(tmp_path)) == ["a", "b"]
