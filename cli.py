"""Command-line plumbing shared by the CLIs (test.py, evaluate.py, export.py, train.py, ...).

Every failure a user can cause ends as one ``error: ...`` line on stderr and a
non-zero exit status, never a traceback: 2 for a command-line mistake (unknown flag,
bad or missing flag value, stray argument), 1 for everything else. On a terminal a
progress update rewrites its line (``\\r``); warnings never share a line with it (which
would erase them). When stderr is not a terminal (a log file, a pipe) updates are plain lines.
TensorFlow's native start-up and log lines are hidden unless ``--verbose`` is given.
"""
import os
import re
import sys

from absl import app
from absl import flags as absl_flags

from model import limits
from model.config import INFERENCE_PRECISIONS
from model.config import STRATEGIES

USAGE_STATUS = 2  # exit status of a command-line mistake, in every CLI
# The model test.py, export.py, evaluate.py and serve.py run when given no --checkpoint_dir.
DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints", "demo")


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

  def is_terminal(self):
    try:
      return self.stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
      return False

  def progress(self, text):
    """One progress update: rewrites its line on a terminal, a plain line otherwise (logs)."""
    if not self.is_terminal():
      self.stream.write(f"{text}\n")
      self.stream.flush()
      return
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


def _define_limit(name, default, help_text, check):
  """A float flag checked by ``check`` (from ``model/limits.py``, the one check of that limit)."""
  absl_flags.DEFINE_float(name, default, help_text)

  def validate(value):
    try:
      check(value)
    except ValueError as e:
      raise absl_flags.ValidationError(str(e)) from None
    return True

  absl_flags.register_validator(name, validate)


def define_max_memory_gb(help_text="Working-memory bound of contextual attention (GB)."):
  """Defines ``--max_memory_gb`` (default 1), checked by ``limits.memory_bytes``."""
  _define_limit("max_memory_gb", 1.0, help_text, limits.memory_bytes)


def define_max_megapixels(help_text="Reject images larger than this (megapixels, width x "
                          "height), checked from the file header before decoding.",
                          default=None):
  """Defines ``--max_megapixels`` (default 100), checked by ``limits.max_pixels``."""
  _define_limit("max_megapixels", limits.DEFAULT_MAX_MEGAPIXELS if default is None else default,
                help_text, limits.max_pixels)


def define_max_upload_mb(help_text, default):
  """Defines ``--max_upload_mb``, checked by ``limits.upload_bytes``."""
  _define_limit("max_upload_mb", default, help_text, limits.upload_bytes)


def define_seam_blend():
  """Defines ``--seam_blend`` / ``--strategy`` (default: what the model declares, i.e. the
  ``inference`` block of its ``model.json``; official TF1 checkpoints: the release's
  computation)."""
  absl_flags.DEFINE_bool("seam_blend", None, "Seam-blend the fill into the photo "
                         "(gradient-domain paste, docs/ARCHITECTURE.md §7.6); --noseam_blend "
                         "keeps the network's hole pixels as they are. Default: as the model "
                         "declares (model.json 'inference'; official checkpoints: off).")
  absl_flags.DEFINE_enum("strategy", None, list(STRATEGIES),
                         "Scale strategy: original (the photo at its own resolution), resize "
                         "(the whole photo at the scale where its holes match the model's "
                         "training holes), crop (each hole region with a margin at that scale, "
                         "pasted back), auto (crop when a hole is deeper than the training "
                         "holes, else original). Default: as the model declares (official "
                         "checkpoints: original).")


def define_precision(help_text="Keras dtype policy the network runs under: float32, "
                     "mixed_bfloat16 or mixed_float16 (weights stay float32; pixel mapping and "
                     "seam blending stay float32), or auto (mixed_bfloat16 on a CPU with AMX "
                     "or a GPU of compute capability 8.0 or more, else float32). Default: as "
                     "the model declares (model.json 'inference'; official checkpoints: "
                     "float32). docs/PRECISION.md.", flag_values=absl_flags.FLAGS):
  """Defines ``--precision`` (default None: what the model declares)."""
  absl_flags.DEFINE_enum("precision", None, list(INFERENCE_PRECISIONS), help_text,
                         flag_values=flag_values)


def define_verbose():
  """Defines ``--verbose``: show TensorFlow's own start-up and C++ log lines."""
  absl_flags.DEFINE_bool("verbose", False, "Also show TensorFlow's own start-up and log lines "
                         "(hidden by default).")


def import_tensorflow(verbose=False):
  """Imports and returns TensorFlow, hiding its native start-up lines unless ``verbose``.

  Those lines (absl's "All log messages before absl::InitializeLog()..." warning, the
  "oneDNN custom operations are on" notice, CPU-feature notes) are written by C++ code
  straight to file descriptor 2 while TensorFlow loads, before ``TF_CPP_MIN_LOG_LEVEL``
  applies; so the descriptor is pointed elsewhere for the import (if the import fails they
  are shown). C++ log lines written later, while the CLI runs, are dropped whatever
  ``TF_CPP_MIN_LOG_LEVEL`` the environment sets (``native_stderr.drop_native_log_lines``;
  the level is set here to 3 unless the environment sets it, so most are never written):
  ``E0000`` lines such as "oneDNN supports DT_INT32 only on platforms with AVX-512" read like
  errors but are not; real failures reach Python as exceptions, which the CLIs report in one
  line. ``--verbose`` shows them all.
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
  if verbose:
    import tensorflow
    return tensorflow
  from model.native_stderr import drop_native_log_lines, hidden_native_stderr
  drop_native_log_lines()
  if "tensorflow" in sys.modules:
    import tensorflow
    return tensorflow
  with hidden_native_stderr() as captured:
    try:
      import tensorflow
      return tensorflow
    except BaseException as e:
      shown, error = captured(), e
  sys.stderr.write(shown)  # what TensorFlow printed may explain the failure
  raise error


# absl's message for a missing required flag, and ours.
_REQUIRED = re.compile(r"flag --(\w+)=None: Flag --\1 must have a value other than None\.")


def one_line_flag_parser(flag_values, known_only=False):
  """An ``app.run(flags_parser=...)``: a bad flag prints one ``error:`` line (absl prints two)
  and exits with ``USAGE_STATUS``. ``known_only``: flags absl does not know are left in the
  returned argv (batch_inpaint.py hands them to Beam, which checks them)."""

  def parse(argv):
    try:
      return flag_values(argv, known_only=known_only)
    except absl_flags.Error as e:
      message = _REQUIRED.sub(r"--\1 is required", " ".join(str(e).split()))
      CONSOLE.fail(message + " (see --helpshort)")
      sys.exit(USAGE_STATUS)

  return parse


def guarded(body, expected=(), argv=None):
  """Runs ``body()``; turns user errors and surprises into one line and an exit status.

  ``argv``: the arguments ``app.run`` left over after the flags; any besides the program
  name is a command-line mistake (``app.UsageError``). ``expected``: extra exception types
  whose message is shown as is (``UserError`` always is). Returns ``body()``'s status,
  ``USAGE_STATUS`` for a usage error, 1 on other errors, 130 on Ctrl-C.
  """
  from model.errors import UserError
  try:
    if argv is not None and len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}", USAGE_STATUS)
    return body()
  except app.UsageError as e:
    CONSOLE.fail(f"{e} (see --helpshort)")
    return e.exitcode
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
