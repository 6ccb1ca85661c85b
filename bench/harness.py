"""The benchmarks' spawn-and-measure plumbing: one child process, its wall time, CPU time and peak RSS.

Figures come from ``os.wait4`` on the child: user + system CPU seconds and ``ru_maxrss``, the
largest resident set of the child or of any descendant it waited for (Linux: KiB). A Python
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


class _Reader(threading.Thread):
  """Drains one pipe so that ``wait4``, not Popen, reaps the child (and keeps its rusage)."""

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
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
    readers = [_Reader(proc.stdout), _Reader(proc.stderr)]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = (r.text() for r in readers)
  return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 2**20, proc.returncode,
             stdout, stderr, at_start)


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
