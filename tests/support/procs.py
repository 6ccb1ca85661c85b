"""Running the CLIs as a user does: ``python SCRIPT ARGS`` in a subprocess.

The environment is the caller's without PYTHONPATH (Python puts a script's folder first on
sys.path, and ``python -c`` run with cwd=REPO imports this checkout: a test must not pass thanks
to a path a user does not have) and without TF_CPP_MIN_LOG_LEVEL (the CLIs' own logging defaults
are under test).
"""
import os
import subprocess
import sys

from conftest import REPO


def env(**overrides):
  """The subprocess environment (see the module docstring), plus ``overrides``."""
  values = dict(os.environ)
  values.pop("PYTHONPATH", None)
  values.pop("TF_CPP_MIN_LOG_LEVEL", None)
  values.update(overrides)
  return values


def command(script, *args):
  """[python, REPO/script, args...]; ``script`` relative to the repository (or absolute)."""
  return [sys.executable, os.path.join(REPO, script), *map(str, args)]


def run(script, *args, cwd=REPO, environ=None, timeout=900):
  """Runs a CLI to its end; a CompletedProcess with str output decoded by hand (text mode would
  turn a progress line's "\\r" into a newline)."""
  proc = subprocess.run(command(script, *args), cwd=str(cwd), env=environ or env(),
                        capture_output=True, timeout=timeout)
  return subprocess.CompletedProcess(proc.args, proc.returncode,
                                     proc.stdout.decode("utf-8", "replace"),
                                     proc.stderr.decode("utf-8", "replace"))


def start(script, *args, cwd=REPO, environ=None, **kwargs):
  """Starts a CLI (text pipes); call ``finish``."""
  return subprocess.Popen(command(script, *args), cwd=str(cwd), env=environ or env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def finish(proc, what, timeout=900):
  """Waits for ``start``'s process; asserts it succeeded; (stdout, stderr)."""
  out, err = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{out}\n{err}"
  return out, err
