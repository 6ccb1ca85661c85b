"""tools/gan_curves.py: TensorBoard scalars of a run -> binned critic terms (picture + CSV)."""
import os
import sys

import numpy as np
import pytest

from conftest import REPO
from support import procs

sys.path.insert(0, os.path.join(REPO, "tools"))
import gan_curves  # noqa: E402


def test_binned_means_negate_the_critic_losses_and_scale_l1():
  values = {"loss/d_global": {1: -1.0, 2: -3.0, 5: -5.0}, "loss/gp": {1: 0.5, 2: 0.7},
            "loss/l1_loss": {5: 0.2}}
  rows = gan_curves.binned(values, 4)
  assert [s for s, _ in rows] == [1, 5]
  assert rows[0][1] == pytest.approx({"loss/d_global": 2.0, "loss/gp": 0.6})
  assert rows[1][1] == pytest.approx({"loss/d_global": 5.0, "loss/l1_loss": 2.0})
  assert gan_curves.plot(rows).shape == (360, 760, 3)


@pytest.mark.slow
def test_cli_reads_a_run_log(tmp_path):
  import tensorflow as tf
  from model.training import summaries
  logs = tmp_path / "run" / "logs"
  writer = tf.summary.create_file_writer(str(logs))
  with writer.as_default():
    for step in range(1, 7):
      summaries.scalar("loss/d_global", -float(step), step)
      summaries.scalar("loss/gp", 0.25, step)
  writer.close()
  out, csv = tmp_path / "c.png", tmp_path / "c.csv"
  proc = procs.run("tools/gan_curves.py", "--run_dir", tmp_path / "run", "--output", out,
                   "--csv", csv, "--bin", "3", timeout=300)
  assert proc.returncode == 0, proc.stderr
  lines = csv.read_text().splitlines()
  assert lines[1].split(",")[:2] == ["1", "2.00000"] and lines[2].split(",")[:2] == ["4", "5.00000"]
  assert out.read_bytes()[:4] == b"\x89PNG"
  bad = procs.run("tools/gan_curves.py", "--run_dir", tmp_path, "--output", out, timeout=300)
  assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "no logs/" in bad.stderr
