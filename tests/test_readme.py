"""The README's first command (minus the venv/pip setup) inpaints a bundled example."""
import os
import re
import shlex
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # the README's commands, run


def _first_commands():
  text = open(os.path.join(REPO, "README.md")).read()
  blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
  return blocks[0].strip(), blocks[1].strip()


def test_readme_first_command_inpaints_an_example(tmp_path):
  setup_and_run, _ = _first_commands()
  step = setup_and_run.split("&&")[-1].strip()
  argv = shlex.split(step)
  assert argv[:2] == ["python", "test.py"], step
  args = dict(zip(argv[2::2], argv[3::2]))
  out = tmp_path / "filled.png"
  args["--output"] = str(out)
  args.pop("--flow", None)
  cmd = [sys.executable, "test.py"] + [x for kv in args.items() for x in kv]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr
  image = cv2.imread(os.path.join(REPO, args["--image"]), cv2.IMREAD_COLOR)
  mask = cv2.imread(os.path.join(REPO, args["--mask"]), cv2.IMREAD_GRAYSCALE) > 127
  result = cv2.imread(str(out), cv2.IMREAD_COLOR)
  assert result.shape == image.shape
  assert np.array_equal(result[~mask], image[~mask])
  assert not np.array_equal(result[mask], image[mask])


def test_readme_first_command_runs_as_written(tmp_path):
  """The steps after the install, verbatim, in a fresh working directory (no out/ yet)."""
  setup_and_run, _ = _first_commands()
  steps = [step.strip() for step in setup_and_run.split("&&")]
  run = [step for step in steps if not step.startswith(("python3 -m venv", ". ", "pip "))]
  assert run and run[-1].startswith("python test.py"), steps
  work = tmp_path / "clone"
  work.mkdir()
  for name in os.listdir(REPO):            # the repository as a user has it, minus outputs
    if name not in ("out", ".venv", ".git"):
      os.symlink(os.path.join(REPO, name), work / name)
  script = " && ".join(run).replace("python test.py", f"{shlex.quote(sys.executable)} test.py")
  proc = subprocess.run(["bash", "-c", script], cwd=work, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr
  argv = shlex.split(run[-1])
  args = dict(zip(argv[2::2], argv[3::2]))
  for key in ("--output", "--flow"):
    assert cv2.imread(str(work / args[key]), cv2.IMREAD_COLOR) is not None, key


def test_ci_runs_the_readme_test_command():
  _, test_command = _first_commands()
  ci = open(os.path.join(REPO, ".ci", "run")).read()
  assert test_command in ci


def test_test_command_keeps_pytest_status():
  """pytest's exit status 5 (no tests collected) must fail CI, not pass as success."""
  _, test_command = _first_commands()
  ci = open(os.path.join(REPO, ".ci", "run")).read()
  for text in (test_command, ci):
    assert "rc=0" not in text and "-eq 5" not in text
    assert text.rstrip().endswith("python -m pytest -q tests")
