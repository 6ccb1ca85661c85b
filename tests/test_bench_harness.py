"""bench/harness.py: wait4 measurements of a child, repeats and median, tables, atomic results."""
import json
import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
sys.path.insert(0, BENCH)

import harness  # noqa: E402  pylint: disable=wrong-import-position
from model.errors import UserError  # noqa: E402  pylint: disable=wrong-import-position

# A child that touches `mb` MiB (every page written, so it is resident) and prints one JSON line.
_ALLOC = "import sys; b = bytearray({mb} << 20); b[::4096] = b'x' * len(b[::4096]); print('{{\"ok\": 1}}')"


def _child(mb):
  return [sys.executable, "-c", _ALLOC.format(mb=mb)]


def test_peak_rss_grows_with_an_allocation():
  ballast = bytearray(400 << 20)  # a large parent (a test session) must not count as the child
  ballast[::4096] = b"x" * len(ballast[::4096])
  small, large = harness.run(_child(1)), harness.run(_child(200))
  del ballast
  assert small.peak_gb * 1024 < 150, small.peak_gb
  assert small.status == large.status == 0
  grown_mb = (large.peak_gb - small.peak_gb) * 1024
  assert 150 < grown_mb < 260, grown_mb
  assert large.wall_s > 0 and large.cpu_s > 0 and large.load >= 0
  assert harness.last_json(large.stdout) == {"ok": 1}


def test_exit_status_and_stderr_of_a_failing_child():
  r = harness.run([sys.executable, "-c", "import sys; print('x' * 200000); "
                   "sys.exit('error: bad input')"])
  assert r.status == 1
  assert harness.tail(r.stderr) == "error: bad input"
  assert len(r.stdout) == 200001  # a full pipe does not block the child


def test_output_to_files(tmp_path):
  out, err = tmp_path / "out.txt", tmp_path / "err.txt"
  r = harness.run([sys.executable, "-c", "import sys; print('o'); print('e', file=sys.stderr)"],
                  stdout_path=str(out), stderr_path=str(err))
  assert (r.status, r.stdout, r.stderr) == (0, "", "")
  assert out.read_text() == "o\n" and err.read_text() == "e\n"


def test_python_command_runs_a_function_of_a_script(tmp_path):
  script = tmp_path / "child.py"
  script.write_text("import helper\ndef add(a, b):\n  return {'sum': a + b, 'h': helper.X}\n")
  (tmp_path / "helper.py").write_text("X = 7\n")  # the script's folder is on sys.path
  r = harness.run(harness.python_command(str(script), "add", 2, 3))
  assert r.status == 0, r.stderr
  assert harness.last_json(r.stdout) == {"sum": 5, "h": 7}


def test_repeat_and_median():
  runs = harness.repeat(_child(1), 3)
  assert len(runs) == 3
  s = harness.summary(runs)
  assert s["runs"] == 3
  assert s["wall_s"] == sorted(r.wall_s for r in runs)[1]
  assert s["peak_gb"] == max(r.peak_gb for r in runs)
  assert harness.median([3, 1, 2]) == 2 and harness.median([4, 1, 2, 3]) == 2.5
  failing = harness.repeat([sys.executable, "-c", "raise SystemExit(3)"], 5)
  assert len(failing) == 1 and failing[0].status == 3  # stops at the first failure


def test_markdown_table():
  text = harness.markdown_table(["case", "s"], [["a", 1.5], ["b", "–"]])
  assert text == "| case | s |\n|---|---|\n| a | 1.5 |\n| b | – |"


def test_machine_line_names_cores_and_load():
  line = harness.machine_line()
  assert f"{os.cpu_count()} cores" in line and "load average" in line


def test_importing_the_harness_imports_no_model_package():
  r = harness.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {BENCH!r}); "
                   "import harness; print('model' in sys.modules)"])
  assert r.stdout.strip() == "False", r.stderr


def test_write_results_is_atomic(tmp_path, monkeypatch):
  md, js = tmp_path / "R.md", tmp_path / "r.json"
  harness.write_results(str(md), "# T", str(js), {"rows": [1]})
  assert md.read_text() == "# T\n" and json.loads(js.read_text()) == {"rows": [1]}

  def fail(*_):
    raise OSError("disk full")

  monkeypatch.setattr(os, "replace", fail)  # the rename never happens: the old files stay
  with pytest.raises(UserError, match="disk full"):
    harness.write_results(str(md), "# new", str(js), {"rows": [2]})
  assert md.read_text() == "# T\n"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["R.md", "r.json"]  # no temp left
