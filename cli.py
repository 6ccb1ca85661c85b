"""Command-line plumbing shared by test.py, evaluate.py, export.py and train.py.

Every failure a user can cause ends as one ``error: ...`` line on stderr and a
non-zero exit status, never a traceback; warnings never share a line with a
``\\r`` progress line (which would erase them on a terminal).
"""
import sys

from absl import flags as absl_flags


class Console:
  """stderr writer that ends an open progress line before any other message."""

  def __init__(self, stream=None):
    self._stream = stream
    self._progress_open = False

  @property
  def stream(self):
    return self._stream or sys.stderr

  def end_progress(self):
    if self._progress_open:
      self.stream.write("\n")
      self._progress_open = False

  def progress(self, text):
    self.stream.write(f"\r{text}\x1b[K")
    self.stream.flush()
    self._progress_open = True

  def fail(self, message):
    self.end_progress()
    self.stream.write(f"error: {message}\n")

  def warn(self, message):
    self.end_progress()
    self.stream.write(f"warning: {message}\n")


CONSOLE = Console()


def define_max_memory_gb(help_text="Working-memory bound of contextual attention (GB)."):
  """Defines ``--max_memory_gb`` (default 1) with its check: a finite number above 0."""
  absl_flags.DEFINE_float("max_memory_gb", 1.0, help_text)
  absl_flags.register_validator(
      "max_memory_gb", lambda v: v is not None and v > 0 and v != float("inf"),
      message="--max_memory_gb must be a positive number")


def one_line_flag_parser(flag_values):
  """An ``app.run(flags_parser=...)``: a bad flag prints one ``error:`` line (absl prints two)."""

  def parse(argv):
    try:
      return flag_values(argv)
    except absl_flags.Error as e:
      CONSOLE.fail(" ".join(str(e).split()) + " (see --helpshort)")
      sys.exit(1)

  return parse


def guarded(body, expected=()):
  """Runs ``body()``; turns user errors and surprises into one line and an exit status.

  ``expected``: extra exception types whose message is shown as is (``UserError``
  always is). Returns ``body()``'s status, 1 on error, 130 on Ctrl-C.
  """
  from model.errors import UserError
  try:
    return body()
  except (UserError,) + tuple(expected) as e:
    CONSOLE.fail(str(e))
    return 1
  except KeyboardInterrupt:
    CONSOLE.fail("interrupted")
    return 130
  except Exception as e:  # noqa: BLE001 - last resort: one line, never a traceback
    text = str(e).strip()
    CONSOLE.fail(f"unexpected {type(e).__name__}: {text.splitlines()[0] if text else ''}")
    return 1
