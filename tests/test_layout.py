"""Import rules of docs/ARCHITECTURE.md §9.1, checked on the source with ast (no imports run).

Training and inference never import each other, ``layers/`` imports nothing from ``model/``, and file I/O and
evaluation import neither training nor inference. Imports are followed through the project's own modules, so a
rule also breaks when a shared module (say ``model/brush.py``) starts importing a forbidden area.
"""
import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# area whose modules are checked -> areas they must not reach
RULES = {
    "model.training": ("model.inference",),
    "model.inference": ("model.training",),
    "layers": ("model",),
    "model.fileio": ("model.training", "model.inference"),
    "model.evaluation": ("model.training", "model.inference"),
    "model.batch": ("model.training", "model.inference"),  # it runs the exported SavedModel
    "model.web": ("model.training",),  # serve.py hands it a loaded Inpainter
}


def _in_area(name, area):
  return name == area or name.startswith(area + ".")


def project_sources():
  """{dotted module name: source text} of every .py file under model/ and layers/."""
  sources = {}
  for top in ("model", "layers"):
    for root, _, files in os.walk(os.path.join(REPO, top)):
      for f in files:
        if f.endswith(".py"):
          path = os.path.join(root, f)
          name = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
          name = name[:-len(".__init__")] if name.endswith(".__init__") else name
          with open(path, encoding="utf-8") as fh:
            sources[name] = (fh.read(), f == "__init__.py")
  return sources


def imported_names(source, module, is_package):
  """Dotted names a module imports (anywhere in the file), relative imports resolved."""
  names = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      names += [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      parts = module.split(".")
      if node.level:
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join(parts[:keep] + ([node.module] if node.module else []))
      else:
        base = node.module
      names.append(base)
      names += [f"{base}.{a.name}" for a in node.names]  # `from pkg import submodule`
  return names


def violations(sources):
  """One line per forbidden import reachable from a checked area, with the import chain."""
  graph = {m: imported_names(src, m, pkg) for m, (src, pkg) in sources.items()}

  def project_modules(name):  # the module itself and the packages whose __init__ importing it runs
    parts = name.split(".")
    return [p for p in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if p in sources]

  found = []
  for area, forbidden in RULES.items():
    for start in sorted(m for m in sources if _in_area(m, area)):
      seen, stack = {start}, [(start, [start])]
      while stack:
        module, chain = stack.pop()
        for name in graph[module]:
          bad = [f for f in forbidden if _in_area(name, f)]
          if bad:
            found.append(f"{start} must not import {bad[0]}: {' -> '.join(chain + [name])}")
            continue
          for nxt in project_modules(name):
            if nxt not in seen:
              seen.add(nxt)
              stack.append((nxt, chain + [nxt]))
  return sorted(set(found))


def test_every_checked_area_has_modules():
  sources = project_sources()
  for area in RULES:
    assert [m for m in sources if _in_area(m, area) and m != area], f"no modules found under {area}"


def test_layout_rules_hold():
  found = violations(project_sources())
  assert not found, "\n".join(found)


@pytest.mark.parametrize("module, added, expected", [
    ("model.training.step", "from model.inference import serving", "model.training.step must not import"),
    ("model.inference.serving", "import model.training.losses", "model.inference.serving must not import"),
    ("model.inference.inpainter", "from model import training", "must not import model.training"),
    ("layers.resize", "from model.errors import UserError", "layers.resize must not import model"),
    ("model.fileio.decode", "from ..inference import inpainter", "model.fileio.decode must not import"),
    # through a shared module: evaluation masks import model.brush
    ("model.brush", "from model.training import masks", "model.evaluation.masks must not import"),
])
def test_checker_catches_a_forbidden_import(module, added, expected):
  sources = project_sources()
  src, pkg = sources[module]
  sources[module] = (src + "\n\ndef _late():\n  " + added + "\n", pkg)
  found = violations(sources)
  assert any(expected in line for line in found), found
