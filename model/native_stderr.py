"""What native code writes to file descriptor 2: captured for a while (libpng/libtiff via OpenCV
and Pillow, TensorFlow's start-up lines), so users see one clear line instead, and TensorFlow's
run-time log lines dropped for a whole CLI run."""
import atexit
import contextlib
import os
import re
import sys
import tempfile
import threading

_FD2 = threading.Lock()


@contextlib.contextmanager
def hidden_native_stderr():
  """Points file descriptor 2 at a temporary file; yields a function returning what it got.

  Unless `drop_native_log_lines` moved `sys.stderr` to its own descriptor, Python's
  `sys.stderr` writes to the same descriptor, so whatever another thread prints meanwhile
  lands in the file too.
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


# TensorFlow's C++ log lines: absl's "E0000 00:00:1796.5 123 util.cc:131] ..." and TSL's older
# "2025-01-01 12:00:00.000001: W tensorflow/core/...cc:12] ..." (severity I, W or E; a fatal F
# line is kept, the process is about to abort).
TF_LOG_LINE = re.compile(rb"^(?:[IWE]\d{4} \d\d:\d\d:[\d.]+\s+\d+ \S+:\d+\] "
                         rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+:\d+\] )")
_FILTER = {}


def drop_native_log_lines():
  """For the rest of the process, TensorFlow's C++ log lines written to file descriptor 2 at run
  time are dropped; everything else still reaches the terminal.

  Python's ``sys.stderr`` is moved to a copy of the original descriptor (the CLIs' progress and
  ``error:`` lines go there directly, on a terminal still a terminal), and descriptor 2 becomes
  a pipe read by a thread that forwards every line but those matching ``TF_LOG_LINE``. Child
  processes inherit the pipe, so their native lines are filtered too. At exit the descriptor is
  restored and the rest of the pipe forwarded. Idempotent; a process without a usable
  descriptor 2 is left as it is.
  """
  if _FILTER:
    return
  with contextlib.suppress(AttributeError, ValueError, OSError):
    sys.stderr.flush()
  try:
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
  except OSError:
    return
  stream = os.fdopen(terminal, "w", buffering=1, closefd=False,
                     encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                     errors="backslashreplace")
  os.dup2(write_end, 2)
  os.close(write_end)
  thread = threading.Thread(target=_forward, args=(read_end, terminal), daemon=True,
                            name="native-stderr-filter")
  thread.start()
  _FILTER.update(terminal=terminal, thread=thread, stream=stream, previous=sys.stderr)
  sys.stderr = stream
  atexit.register(_restore)


def _forward(read_end, terminal):
  pending = b""
  while True:
    try:
      chunk = os.read(read_end, 1 << 16)
    except OSError:
      chunk = b""
    if not chunk:
      break
    *lines, pending = (pending + chunk).split(b"\n")
    kept = [line + b"\n" for line in lines if not TF_LOG_LINE.match(line)]
    if kept:
      _write_all(terminal, b"".join(kept))
  if pending and not TF_LOG_LINE.match(pending):
    _write_all(terminal, pending)
  os.close(read_end)


def _write_all(fd, data):
  with contextlib.suppress(OSError):
    while data:
      data = data[os.write(fd, data):]


def _restore():
  """Puts descriptor 2 back on the terminal (closing the pipe here) and lets the thread finish."""
  with contextlib.suppress(AttributeError, ValueError, OSError):
    sys.stderr.flush()
  with contextlib.suppress(OSError):
    os.dup2(_FILTER["terminal"], 2)
  _FILTER["thread"].join(timeout=2)  # a child still holding the pipe must not hold up the exit
