"""Capture of what native code writes to file descriptor 2 (libpng/libtiff via OpenCV and
Pillow, TensorFlow's start-up lines), so users see one clear line instead."""
import contextlib
import os
import sys
import tempfile
import threading

_FD2 = threading.Lock()


@contextlib.contextmanager
def hidden_native_stderr():
  """Points file descriptor 2 at a temporary file; yields a function returning what it got.

  Python's `sys.stderr` writes to the same descriptor, so whatever another thread prints
  meanwhile lands in the file too.
  """
  with _FD2:
    with contextlib.suppress(AttributeError, ValueError, OSError):
      sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
      os.dup2(sink.fileno(), 2)
      try:
        yield lambda: (sink.seek(0), sink.read().decode("utf-8", "replace"))[1]
      finally:
        os.dup2(saved, 2)
        os.close(saved)
