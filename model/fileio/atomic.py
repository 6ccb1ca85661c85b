"""The one way this project writes a file: all of it or none of it.

The bytes go to a temporary file in the target's folder, are flushed to disk, and the
temporary file is renamed over the target: a crash, a full disk or Ctrl-C leaves either
the old file or the new one, never a part, and no temporary file behind.
"""
import contextlib
import os
import secrets

from model.errors import UserError


def atomic_write(path, data):
  """Writes `data` (bytes, or str as UTF-8) to the local file `path` atomically.

  Raises:
    UserError: the file cannot be written (the message names `path` and the reason).
  """
  path = os.fspath(path)
  payload = data.encode("utf-8") if isinstance(data, str) else data
  directory, name = os.path.split(os.path.abspath(path))
  while True:
    temp = os.path.join(directory, f".{name[:200]}.{secrets.token_hex(4)}.tmp")
    try:
      fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
      break
    except FileExistsError:
      continue
    except OSError as e:
      raise UserError(f"{path}: cannot write the file ({e.strerror or e})") from None
  try:
    with open(fd, "wb") as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temp, path)
  except BaseException as e:
    with contextlib.suppress(OSError):
      os.unlink(temp)
    if isinstance(e, OSError):
      raise UserError(f"{path}: cannot write the file ({e.strerror or e})") from None
    raise
