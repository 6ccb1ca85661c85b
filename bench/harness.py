"""The benchmarks' spawn-and-measure plumbing: one child process, its wall time, CPU time and peak RSS.

Figures come from ``os.wait4`` on the child, forked by a small launcher (``_LAUNCHER``): user +
system CPU seconds and ``ru_maxrss``, the largest resident set of the child or of any descendant
it waited for (Linux: KiB). A Python
callable runs in a fresh interpreter through ``python_command`` (a function of a script file,
JSON arguments in, a JSON value out on the last stdout line), so no benchmark embeds a program as
a string. Results go to a Markdown file and a JSON file, both written atomically.
"""
import collections
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import machine  # bench/machine.py (bench/ is on sys.path for every script here)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Run = collections.namedtuple("Run", "wall_s cpu_s peak_gb status stdout stderr load")
Run.__doc__ = """One child: wall/CPU seconds, peak RSS GB, exit status, its output, load at start."""

# As ``python script.py`` would, the script's folder comes first on sys.path.
_TRAMPOLINE = ("import json, os, runpy, sys; sys.path.insert(0, os.path.dirname(sys.argv[1])); "
               "f = runpy.run_path(sys.argv[1])[sys.argv[2]]; "
               "print(json.dumps(f(*json.loads(sys.argv[3]))), flush=True)")


# Runs argv[2:] as its own child and writes the child's [exit code, CPU s, ru_maxrss KB] to fd
# argv[1]. A child forked straight from a large process (a test session, a bench script that
# loaded TensorFlow) reports at least that process's resident size as its peak: Linux keeps the
# forked copy's high-water mark across exec. This small launcher is forked instead.
_LAUNCHER = ("import json, os, sys\n"
             "pid = os.fork()\n"
             "if pid == 0:\n"
             "  try:\n"
             "    os.execvp(sys.argv[2], sys.argv[2:])\n"
             "  finally:\n"
             "    os._exit(127)\n"
             "_, status, usage = os.wait4(pid, 0)\n"
             "code = os.waitstatus_to_exitcode(status)\n"
             "os.write(int(sys.argv[1]), json.dumps([code, usage.ru_utime + usage.ru_stime, "
             "usage.ru_maxrss]).encode())\n"
             "sys.exit(code if code >= 0 else 128 - code)\n")


class _Reader(threading.Thread):
  """Drains one of the child's pipes while it runs (so a chatty child never blocks)."""

  def __init__(self, pipe):
    super().__init__(daemon=True)
    self.pipe, self.chunks = pipe, []
    if pipe is not None:
      self.start()

  def text(self):
    if self.pipe is None:
      return ""
    self.join()
    self.pipe.close()
    return "".join(self.chunks)

  def run(self):
    for chunk in iter(lambda: self.pipe.read(1 << 16), ""):
      self.chunks.append(chunk)


@contextlib.contextmanager
def _sink(path):
  if path is None:
    yield subprocess.PIPE
  else:
    with open(path, "w") as f:
      yield f


def load():
  """The 1-minute load average."""
  return os.getloadavg()[0]


def run(argv, cwd=None, env=None, stdout_path=None, stderr_path=None):
  """Runs ``argv`` to its exit; returns a ``Run`` (stdout/stderr "" where sent to a file)."""
  at_start = load()
  with _sink(stdout_path) as out, _sink(stderr_path) as err:
    start = time.perf_counter()
    report_r, report_w = os.pipe()
    try:
      proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(report_w)] + list(argv),
                              cwd=cwd, env=env, stdout=out, stderr=err, text=True,
                              pass_fds=(report_w,))
    finally:
      os.close(report_w)
    readers = [_Reader(proc.stdout), _Reader(proc.stderr)]
    proc.wait()
    wall = time.perf_counter() - start
    with os.fdopen(report_r, "rb") as f:
      report = f.read()
    stdout, stderr = (r.text() for r in readers)
  code, cpu_s, maxrss_kb = json.loads(report) if report else (proc.returncode, 0.0, 0)
  return Run(wall, cpu_s, maxrss_kb / 2**20, code, stdout, stderr, at_start)


def python_command(script, function, *args):
  """argv that runs ``function(*args)`` of the file ``script`` in a fresh interpreter.

  The function's JSON result is the child's last stdout line (read it with ``last_json``).
  """
  return [sys.executable, "-c", _TRAMPOLINE, os.path.abspath(script), function, json.dumps(args)]


def last_json(text):
  """The last line of ``text`` that is a JSON object or list, or None."""
  for line in reversed(text.splitlines()):
    if line.startswith(("{", "[")):
      return json.loads(line)
  return None


def tail(text):
  """The last non-empty line of ``text`` (a failing child's error), or ""."""
  lines = text.strip().splitlines()
  return lines[-1] if lines else ""


def repeat(argv, times, **kwargs):
  """``times`` runs of ``argv``; returns the list of ``Run``s (stops at the first failure)."""
  runs = []
  for _ in range(times):
    runs.append(run(argv, **kwargs))
    if runs[-1].status:
      break
  return runs


def median(values):
  """The median (the mean of the middle two for an even count)."""
  return statistics.median(values)


def summary(runs):
  """Medians of wall and CPU seconds, the largest peak, over successful ``runs``."""
  ok = [r for r in runs if r.status == 0]
  return {"runs": len(ok), "wall_s": median([r.wall_s for r in ok]),
          "cpu_s": median([r.cpu_s for r in ok]), "peak_gb": max(r.peak_gb for r in ok),
          "load": max(r.load for r in runs)}


def markdown_table(header, rows):
  """A Markdown table: ``header`` a list of column names, ``rows`` lists of cells (str())."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
  return "\n".join(lines)


def machine_line():
  """One line naming the machine and its load (for the head of a results file)."""
  return machine.describe()


def write_results(markdown_path, markdown, json_path=None, data=None):
  """Writes the Markdown text (and ``data`` as JSON) atomically; either path may be None."""
  # Imported here: a child measuring another checkout (bench_cli.py --repo) imports its ``model``.
  if REPO not in sys.path:
    sys.path.insert(0, REPO)
  from model.fileio.atomic import atomic_write  # pylint: disable=import-outside-toplevel
  if markdown_path:
    atomic_write(markdown_path, markdown if markdown.endswith("\n") else markdown + "\n")
  if json_path:
    atomic_write(json_path, json.dumps(data, indent=1) + "\n")
