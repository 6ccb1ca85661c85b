"""Conventions shared by the CLIs (train.py, test.py, export.py, evaluate.py, batch_inpaint.py).

* A command-line mistake (stray argument, missing required flag) is one ``error:`` line and
  the same exit status (2) everywhere; it is found before TensorFlow is imported.
* A successful run prints nothing but its own lines whichever way TensorFlow sets up oneDNN:
  TensorFlow's native start-up lines are hidden unless ``--verbose``. oneDNN also changes
  float round-off, so the official-parity tests run once with it forced on and once off
  (TensorFlow reads TF_ENABLE_ONEDNN_OPTS at import, hence one process per setting).
"""
import os
import re
import subprocess
import sys

import cv2
import pytest

from conftest import EXAMPLES, GOLDEN, REPO, require_shared
from support import procs

USAGE_STATUS = 2


def _run(script, *args, cwd=REPO, environ=None, timeout=120):
  return procs.run(script, *args, cwd=cwd, environ=environ, timeout=timeout)


def _assert_usage_error(proc, fragment):
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == USAGE_STATUS, (proc.returncode, proc.stderr)
  assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
  assert proc.stdout == ""


@pytest.mark.parametrize("script, args", [
    ("test.py", ["--image", "a.png", "--mask", "m.png", "--output", "o.png"]),
    ("export.py", ["--export_dir", "out"]),
    ("evaluate.py", ["--data_dir", "photos", "--output_dir", "out"]),
    ("train.py", ["--train_flist", "photos", "--checkpoint_dir", "run"]),
    ("batch_inpaint.py", ["--images", "photos", "--masks", "masks", "--output_dir", "out",
                          "--saved_model", "export"]),
])
@pytest.mark.slow
def test_stray_argument_and_missing_flag_exit_with_the_same_status(script, args, tmp_path):
  _assert_usage_error(_run(script, *args, "stray", cwd=tmp_path),
                      "unexpected arguments: stray")
  _assert_usage_error(_run(script, *args[2:], cwd=tmp_path), f"{args[0]} is required")
  assert os.listdir(tmp_path) == []


_REQUIRED = {
    "test.py": ["--image", "a.png", "--mask", "m.png", "--output", "o.png"],
    "export.py": ["--export_dir", "out"],
    "serve.py": [],
    "evaluate.py": ["--data_dir", "photos", "--output_dir", "out"],
    "batch_inpaint.py": ["--images", "photos", "--masks", "masks", "--output_dir", "out",
                         "--saved_model", "export"],
}


@pytest.mark.slow
@pytest.mark.parametrize("script, flag", [
    ("test.py", "max_megapixels"), ("export.py", "max_megapixels"),
    ("serve.py", "max_megapixels"), ("batch_inpaint.py", "max_megapixels"),
    ("serve.py", "max_upload_mb"), ("test.py", "max_memory_gb"), ("export.py", "max_memory_gb"),
    ("serve.py", "max_memory_gb"), ("evaluate.py", "max_memory_gb")])
@pytest.mark.parametrize("value", ["inf", "nan", "1e308"])
def test_limit_flags_refuse_non_finite_and_absurd_values(script, flag, value, tmp_path):
  """One check (model/limits.py) per limit, before anything runs."""
  proc = _run(script, *_REQUIRED[script], f"--{flag}={value}", cwd=tmp_path)
  _assert_usage_error(proc, f"--{flag} must be a positive number")
  assert os.listdir(tmp_path) == []


@pytest.fixture
def small_pair(tmp_path):
  """A bundled example and its mask shrunk to 96x64 (a few seconds of inference)."""
  image = cv2.imread(require_shared(os.path.join(EXAMPLES, "sklearn_china.png")))
  mask = cv2.imread(os.path.join(EXAMPLES, "sklearn_china_mask.png"))
  cv2.imwrite(str(tmp_path / "photo.png"), cv2.resize(image, (96, 64), interpolation=cv2.INTER_AREA))
  cv2.imwrite(str(tmp_path / "mask.png"), cv2.resize(mask, (96, 64), interpolation=cv2.INTER_NEAREST))
  return tmp_path / "photo.png", tmp_path / "mask.png"


@pytest.mark.slow
def test_verbose_shows_what_is_hidden_by_default(small_pair, tmp_path):
  image, mask = small_pair
  environ = procs.env(TF_ENABLE_ONEDNN_OPTS="1")
  args = ("--image", image, "--mask", mask, "--output", tmp_path / "out.png")
  quiet = _run("test.py", *args, environ=environ, timeout=600)
  assert quiet.returncode == 0 and quiet.stdout == f"wrote {tmp_path / 'out.png'}\n", quiet
  assert re.fullmatch(r"\[1/1\] photo\.png: 96x64, hole [\d.]+ % of the image\n",
                      quiet.stderr), quiet.stderr
  loud = _run("test.py", *args, "--verbose", environ=environ, timeout=600)
  assert loud.returncode == 0 and "oneDNN custom operations are on" in loud.stderr, loud.stderr


@pytest.mark.slow
@pytest.mark.parametrize("onednn", ["0", "1"])
def test_parity_and_quiet_output_with_onednn(onednn):
  """tests/test_golden.py (official parity, and test.py's exact output) in a fresh process."""
  require_shared(GOLDEN)
  env = procs.env(TF_ENABLE_ONEDNN_OPTS=onednn, DEEPFILL_REQUIRE_SHARED="1")
  proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                         os.path.join("tests", "test_golden.py")], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=1800)
  assert proc.returncode == 0 and " passed" in proc.stdout, proc.stdout[-4000:]


def test_progress_rewrites_its_line_only_on_a_terminal():
  """A log file or pipe got "\\r...ESC[K" updates; it now gets plain lines."""
  import io

  import cli

  class Terminal(io.StringIO):
    def isatty(self):
      return True

  for stream, expected in (
      (io.StringIO(), "[1/2] a.png\nwarning: odd\n[2/2] b.png\n"),
      (Terminal(), "\r[1/2] a.png\x1b[K\nwarning: odd\n\r[2/2] b.png\x1b[K\n")):
    console = cli.Console(stream)
    console.progress("[1/2] a.png")
    console.warn("odd")
    console.progress("[2/2] b.png")
    console.end_progress()
    assert stream.getvalue() == expected
