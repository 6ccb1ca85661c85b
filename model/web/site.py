"""The static site of ``export.py --format web``: the painting page, ``deepfill.js``,
``model.onnx`` and ONNX Runtime Web's WebAssembly files, for any static file server.

The page is serve.py's (``model/web/page/``) with ``site.js`` as its entry instead of
``server.js``; the runtime comes from the npm package pinned in ``web/package.json`` /
``web/package-lock.json`` (``npm ci --prefix web``).
Only the WebAssembly backend is copied: ``ort.wasm.min.mjs`` and its threaded SIMD build
(``ort-wasm-simd-threaded.{mjs,wasm}``), which runs on one thread when the page is not
cross-origin isolated (docs/BROWSER.md, "Threads").
"""
import json
import os
import shutil

from model.errors import UserError

PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page")
PAGE_FILES = ("app.css", "paint.js", "pixels.js", "browser.js", "site.js", "deepfill.js")
SERVER_ENTRY = '<script type="module" src="server.js"></script>'
SITE_ENTRY = '<script type="module" src="site.js"></script>'
RUNTIME_PACKAGE = "onnxruntime-web"
RUNTIME_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MODEL_FILE = "model.onnx"
NOTICE = """\
This folder was written by DeepFill's `export.py --format web` (Apache License 2.0).

ort/ holds files of the npm package onnxruntime-web {version} (ONNX Runtime Web),
Copyright (c) Microsoft Corporation, released under the MIT License.
"""


def pinned_version(npm_dir):
  """The onnxruntime-web version that ``npm_dir/package.json`` pins."""
  with open(os.path.join(npm_dir, "package.json"), encoding="utf-8") as f:
    return json.load(f)["dependencies"][RUNTIME_PACKAGE]


def runtime_dist(npm_dir):
  """``node_modules/onnxruntime-web/dist`` under ``npm_dir``, checked against the pinned version.

  Raises UserError (one line, with the command that fixes it) when it is missing or stale.
  """
  fix = f"run `npm ci --prefix {os.path.relpath(npm_dir)}` (installs {npm_dir}/package-lock.json)"
  package = os.path.join(npm_dir, "node_modules", RUNTIME_PACKAGE)
  try:
    with open(os.path.join(package, "package.json"), encoding="utf-8") as f:
      installed = json.load(f)["version"]
  except (OSError, ValueError, KeyError):
    raise UserError(f"ONNX Runtime Web is not installed in {npm_dir}; {fix}") from None
  wanted = pinned_version(npm_dir)
  if installed != wanted:
    raise UserError(f"{package} is version {installed} but package.json pins {wanted}; {fix}")
  dist = os.path.join(package, "dist")
  missing = [f for f in RUNTIME_FILES if not os.path.isfile(os.path.join(dist, f))]
  if missing:
    raise UserError(f"{dist} lacks {', '.join(missing)}; {fix}")
  return dist, installed


def write_site(folder, write_model, npm_dir):
  """Fills the (empty) ``folder`` with the static site.

  Args:
    folder: an existing empty directory.
    write_model: ``write_model(path)`` writes the ONNX graph (image uint8 [1,H,W,3], mask uint8
      [1,H,W,1] > 127 = hole -> inpainted uint8 [1,H,W,3]) to ``path``.
    npm_dir: the folder with ``package.json`` and ``node_modules`` (the repository's ``web/``).
  Returns:
    {relative path: size in bytes} of what was written.
  """
  dist, version = runtime_dist(npm_dir)  # before the (slow) model export
  for name in PAGE_FILES:
    shutil.copyfile(os.path.join(PAGE_DIR, name), os.path.join(folder, name))
  with open(os.path.join(PAGE_DIR, "index.html"), encoding="utf-8") as f:
    page = f.read()
  if page.count(SERVER_ENTRY) != 1:
    raise ValueError(f"{PAGE_DIR}/index.html must load its entry as {SERVER_ENTRY}")
  with open(os.path.join(folder, "index.html"), "w", encoding="utf-8") as f:
    f.write(page.replace(SERVER_ENTRY, SITE_ENTRY))
  os.makedirs(os.path.join(folder, "ort"))
  for name in RUNTIME_FILES:
    shutil.copyfile(os.path.join(dist, name), os.path.join(folder, "ort", name))
  with open(os.path.join(folder, "NOTICE.txt"), "w", encoding="utf-8") as f:
    f.write(NOTICE.format(version=version))
  write_model(os.path.join(folder, MODEL_FILE))
  sizes = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      sizes[os.path.relpath(path, folder).replace(os.sep, "/")] = os.path.getsize(path)
  return dict(sorted(sizes.items()))


def check_site(folder):
  """Raises UserError (one line) unless ``folder`` holds what `write_site` writes that a page
  needs to run its model: ``deepfill.js``, ``model.onnx`` and the runtime's files."""
  needed = ["deepfill.js", MODEL_FILE] + [f"ort/{name}" for name in RUNTIME_FILES]
  missing = [name for name in needed if not os.path.isfile(os.path.join(folder, name))]
  if missing:
    raise UserError(f"{folder} is not a folder of export.py --format web (no "
                    f"{', '.join(missing)})")
