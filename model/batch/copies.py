"""Local copies of remote SavedModels (TensorFlow loads local files only) and their cleanup.

A copy is named ``deepfill_saved_model_<pid>_<random>`` in the temporary folder and lives only
while its model loads (`handler.SavedModelHandler`); a process killed meanwhile leaves it
behind, and the next load (or the CLI on SIGTERM) deletes it. No TensorFlow or Beam import:
the CLI calls this from its SIGTERM handler.
"""
import os
import shutil
import tempfile

COPY_PREFIX = "deepfill_saved_model_"  # + "<pid>_<random>"


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except OSError:  # e.g. another user's process
    return True
  return True


def remove_stale_copies(folder=None, include_own=False):
  """Deletes the copies (`COPY_PREFIX` folders in ``folder``, default: the temporary folder)
  whose process has ended (with ``include_own`` also this process's: for SIGTERM); returns
  how many were deleted."""
  folder = folder or tempfile.gettempdir()
  removed = 0
  try:
    entries = os.listdir(folder)
  except OSError:
    return 0
  for name in entries:
    if not name.startswith(COPY_PREFIX):
      continue
    pid = name[len(COPY_PREFIX):].split("_", 1)[0]
    if not pid.isdigit() or (_alive(int(pid)) and not (include_own and int(pid) == os.getpid())):
      continue
    shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    removed += 1
  return removed


def prefix():
  """The name prefix of this process's copies (for ``tempfile.mkdtemp``)."""
  return f"{COPY_PREFIX}{os.getpid()}_"
