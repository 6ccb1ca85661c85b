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


_FAKE_RUN_TIME_LOG = r'''
import os, sys
sys.path.insert(0, sys.argv[1])
import cli
cli.import_tensorflow(verbose=sys.argv[2] == "verbose")
os.write(2, b"E0000 00:00:1796690905.451796    8261 util.cc:131] oneDNN supports DT_INT32 only "
            b"on platforms with AVX-512.\n")
os.write(2, b"2026-01-01 12:00:00.000001: W tensorflow/core/framework/op_kernel.cc:1857] old\n")
os.write(2, b"a native line that is not TensorFlow's\n")
cli.CONSOLE.fail("one line of ours")
'''


@pytest.mark.parametrize("level", ["0", "2", None])
def test_native_log_lines_written_at_run_time_are_dropped(level, tmp_path):
  """The mechanism every CLI shares (cli.import_tensorflow): C++ log lines written to fd 2 after
  the import are dropped whatever TF_CPP_MIN_LOG_LEVEL says; other native lines and our own
  lines still reach stderr; --verbose drops nothing."""
  script = tmp_path / "run.py"
  script.write_text(_FAKE_RUN_TIME_LOG)
  env = dict(os.environ)
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)
  if level is not None:
    env["TF_CPP_MIN_LOG_LEVEL"] = level
  for mode in ("quiet", "verbose"):
    proc = subprocess.run([sys.executable, str(script), REPO, mode], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    if mode == "quiet":
      assert sorted(lines) == ["a native line that is not TensorFlow's",
                               "error: one line of ours"], proc.stderr
    else:
      assert any("util.cc:131] oneDNN" in line for line in lines), proc.stderr
      assert any("op_kernel.cc:1857] old" in line for line in lines), proc.stderr


@pytest.mark.parametrize("onednn", ["1", "0"])
def test_evaluate_prints_only_its_progress_whatever_tensorflow_logs(onednn, tmp_path):
  """TensorFlow's E0000 "oneDNN supports DT_INT32 only on platforms with AVX-512" line, logged
  while the model runs on a CPU without AVX-512 when oneDNN is on, is not shown, even with
  TF_CPP_MIN_LOG_LEVEL=2 in the environment (which lets error-level lines through)."""
  from model import config, generator, weights
  photos = tmp_path / "photos"
  photos.mkdir()
  image = cv2.imread(require_shared(os.path.join(EXAMPLES, "sklearn_china.png")))
  cv2.imwrite(str(photos / "a.png"), cv2.resize(image, (128, 96), interpolation=cv2.INTER_AREA))
  cfg = config.preset("v1", cnum=4)
  weights.save_generator(generator.build_generator(cfg), cfg, str(tmp_path / "ckpt"))
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run([sys.executable, os.path.join(REPO, "evaluate.py"), "--data_dir", photos,
                         "--checkpoint_dir", tmp_path / "ckpt", "--mask_mode", "box",
                         "--max_side", "128", "--output_dir", tmp_path / "out"], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0 and "wrote " in proc.stdout, proc.stderr
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert lines and all(line.startswith("[1/1] a.png") for line in lines), proc.stderr
