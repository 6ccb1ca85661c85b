"""setup.py installs dependencies only: no generic top-level name (test, flags, model, ...)
lands in site-packages, where it would shadow or be shadowed by other projects' modules."""
import os
from distutils.core import run_setup  # setuptools' vendored distutils

from conftest import REPO


def _distribution():
  cwd = os.getcwd()
  os.chdir(REPO)
  try:
    return run_setup("setup.py", stop_after="init")
  finally:
    os.chdir(cwd)


def test_setup_installs_no_module():
  dist = _distribution()
  assert not dist.packages and not dist.py_modules, (dist.packages, dist.py_modules)
  assert not getattr(dist, "scripts", None) and not dist.entry_points


def test_runtime_dependencies_are_not_hidden_in_extras():
  requires = " ".join(_distribution().install_requires).lower()
  for name in ("numpy", "opencv-python-headless", "absl-py", "pillow"):
    assert name in requires, name


def test_editable_install_goes_through_the_pep_660_backend():
  """Without a build backend, pip < 25 runs ``setup.py develop`` for ``pip install -e``, which
  adds the checkout to every sys.path of the environment (an ``easy-install.pth`` line)."""
  text = open(os.path.join(REPO, "pyproject.toml")).read()
  assert 'build-backend = "setuptools.build_meta"' in text
  assert '"setuptools>=64"' in text  # the first setuptools with PEP 660 editable installs
