"""Helpers shared by the tests (imported as ``from support import ...``; tests/ is on sys.path).

  checkpoints      the tiny random-weight generator and its checkpoint
  procs            the subprocess environment and the CLI runner
  serve            a real ``python serve.py`` process, uploads, example pictures
  hostile_files    hostile image files built in memory
  reference_numpy  NumPy references of the numeric kernels
  standin_model    an ONNX graph with the exported model's contract

The static file server and the offline Chromium page are in bench/static_site.py (bench/ uses them
too; tests/conftest.py puts bench/ on sys.path).
"""
