"""Batch inpainting with Apache Beam (`batch_inpaint.py`, model/batch/) on the DirectRunner.

A tiny generator (cnum 4) is saved as a checkpoint and exported as a SavedModel; the pipeline
runs the SavedModel in this process (DirectRunner), `python test.py` runs the checkpoint in
subprocesses started at the same time, and the PNGs must be byte-identical. One pipeline run
covers good photos (odd size, grey, RGBA, a JPEG with EXIF orientation, a nested folder) and
every kind of bad input; each must end as exactly one record, none fails the pipeline. A
crash (SIGKILL of the CLI after its first output) followed by `--skip_existing` must finish
the job without touching finished files, giving the bytes of an uninterrupted run.
"""
import glob
import io
import json
import os
import signal
import tempfile
import time
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from support import procs
from support.pictures import example as _example, read_pixels as _read
from support.checkpoints import write_tiny_checkpoint
from support.hostile_files import png_with_header

pytest.importorskip("apache_beam", reason="the beam extra is not installed")

from model import weights  # noqa: E402
from model.batch import copies  # noqa: E402
from model.batch import handler as handler_lib  # noqa: E402
from model.batch import launch  # noqa: E402
from model.batch import transforms  # noqa: E402
from model.fileio import decode  # noqa: E402
from model.fileio import paths  # noqa: E402

pytestmark = pytest.mark.slow  # Beam pipelines and test.py processes

TEST_PY = os.path.join(REPO, "test.py")
BATCH_PY = os.path.join(REPO, "batch_inpaint.py")




def _write(path, pixels):
  os.makedirs(os.path.dirname(str(path)), exist_ok=True)
  assert cv2.imwrite(str(path), pixels), f"cannot write {path}"
  return str(path)




def _start(script, *args, cwd, **kwargs):
  return procs.start(script, *args, cwd=cwd, **kwargs)


def _finish(proc, what):
  procs.finish(proc, what)


def _records(output_dir):
  """{image basename: record} from every results-*.jsonl; each image must appear once."""
  found = {}
  for path in glob.glob(os.path.join(str(output_dir), "results-*.jsonl")):
    with open(path, encoding="utf-8") as f:
      for line in f:
        rec = json.loads(line)
        assert list(rec) == list(transforms.RECORD_FIELDS), rec
        name = os.path.basename(rec["image"])
        assert name not in found, f"two records for {name}"
        found[name] = rec
  return found


def _pngs(directory):
  return sorted(os.path.relpath(p, directory)
                for p in glob.glob(os.path.join(str(directory), "**", "*.png"), recursive=True))


# ---------------------------------------------------------------------------------------------
# A tiny model: checkpoint for test.py, SavedModel for the pipeline.


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  from model.inference import serving
  root = tmp_path_factory.mktemp("batch_model")
  ckpt, export = str(root / "ckpt"), str(root / "export")
  gen, cfg = weights.load_generator(write_tiny_checkpoint(ckpt))
  serving.ServingModel(gen, cfg, 1.0).archive("serving").write_out(export, verbose=False)
  return {"checkpoint": ckpt, "saved_model": export}


class _FailOnBoom(handler_lib.SavedModelHandler):
  """The real handler, except that inference raises for images named boom*."""

  def run_inference(self, batch, model, inference_args=None):
    for photo in batch:
      if os.path.basename(photo.task.image).startswith("boom"):
        raise RuntimeError("simulated inference failure\nsecond line")
    yield from super().run_inference(batch, model, inference_args)


# ---------------------------------------------------------------------------------------------
# One pipeline run over good and bad inputs, next to test.py runs on the good ones.


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory, tiny):
  root = tmp_path_factory.mktemp("batch")
  images, masks, out, ref = root / "images", root / "masks", root / "out", root / "ref"
  china, china_mask = _read(_example("sklearn_china.png")), _read(_example("sklearn_china_mask.png"))
  flower, flower_mask = (_read(_example("sklearn_flower.png")),
                         _read(_example("sklearn_flower_mask.png")))
  lomiri = _read(_example("lomiri_picture_0b_by_freespace.png"))
  lomiri_mask = _read(_example("lomiri_picture_0b_by_freespace_mask.png"))
  small, small_mask = china[90:154, 100:196], china_mask[90:154, 100:196]
  assert (small_mask > 127).any()

  good = {}  # name -> (image pixels, mask pixels, image file name)
  good["odd"] = (china[5:208, 3:304], china_mask[5:208, 3:304])       # 301 x 203
  good["grey"] = (cv2.cvtColor(flower, cv2.COLOR_BGR2GRAY), flower_mask)
  h, w = lomiri.shape[:2]
  alpha = (np.add.outer(np.arange(h), np.arange(w)) * 255 // (h + w - 2)).astype(np.uint8)
  good["rgba"] = (np.dstack([lomiri, alpha]), lomiri_mask)
  good["back\\slash"] = (china[100:164, 120:200], china_mask[100:164, 120:200])  # a legal name
  for name, (pixels, mask) in good.items():
    _write(images / f"{name}.png", pixels)
    _write(ref / "images" / f"{name}.png", pixels)
    mask_name = f"{name}_mask.png" if name == "grey" else f"{name}.png"  # both stem rules
    _write(masks / mask_name, mask)
    _write(ref / "masks" / mask_name, mask)
  _write(images / "sub" / "nested.png", small)
  _write(ref / "images" / "nested.png", small)
  _write(masks / "nested.png", small_mask)
  _write(ref / "masks" / "nested.png", small_mask)
  # A JPEG stored sideways with EXIF orientation 6: read upright, as test.py reads it.
  stored = np.ascontiguousarray(np.rot90(china[:120, :160], k=1))  # 120 x 160 upright
  exif = Image.Exif()
  exif[0x0112] = 6
  buf = io.BytesIO()
  Image.fromarray(stored[..., ::-1]).save(buf, "JPEG", quality=90, exif=exif.tobytes())
  (images / "rotated.jpg").write_bytes(buf.getvalue())
  upright_mask = china_mask[:120, :160]
  _write(masks / "rotated.png", upright_mask)

  # Bad inputs: each must become one failed record.
  (images / "corrupt.png").write_text("this is not a PNG\n")
  _write(masks / "corrupt.png", small_mask)
  _write(images / "wrongsize.png", small)
  _write(masks / "wrongsize.png", small_mask[:, :-8])
  _write(images / "nomask.png", small)
  (images / "bomb.png").write_bytes(png_with_header(20000, 20000))
  _write(masks / "bomb.png", small_mask)
  # A format whose size is not in a header we read (OpenCV would decode it): refused unread.
  (images / "ppmbomb.png").write_bytes(b"P6\n20000 20000\n255\n" + b"\0" * 64)
  _write(masks / "ppmbomb.png", small_mask)
  _write(images / "twomasks.png", small)
  _write(masks / "twomasks.png", small_mask)
  _write(masks / "twomasks_mask.png", small_mask)
  _write(images / "boom.png", small)
  _write(masks / "boom.png", small_mask)
  _write(images / "clash.bmp", small)  # clash.bmp and clash.png would both write clash.png
  _write(images / "clash.png", small)
  _write(masks / "clash.png", small_mask)
  _write(images / "blocked" / "x.png", small)  # out/blocked is a file: the write fails
  _write(masks / "x.png", small_mask)
  out.mkdir()
  (out / "blocked").write_text("a file where the pipeline needs a folder\n")

  # test.py on the same photos, with the checkpoint the SavedModel was exported from.
  folder = _start(TEST_PY, "--image", ref / "images", "--mask", ref / "masks", "--output",
                  ref / "out", "--checkpoint_dir", tiny["checkpoint"], cwd=root)
  single = _start(TEST_PY, "--image", images / "rotated.jpg", "--mask", masks / "rotated.png",
                  "--output", ref / "rotated.png", "--checkpoint_dir", tiny["checkpoint"],
                  cwd=root)
  try:
    counts, pattern, worker = launch.run(
        str(images / "**"), str(masks), str(out), tiny["saved_model"],
        model_handler=_FailOnBoom(tiny["saved_model"]))
  finally:
    _finish(folder, "test.py folder mode")
    _finish(single, "test.py single image")
  return {"counts": counts, "pattern": pattern, "worker": worker,
          "out": out, "ref": ref,
          "images": images, "records": _records(out), "upright_mask": upright_mask}


def test_outputs_are_byte_identical_to_test_py(batch_run):
  out, ref = batch_run["out"], batch_run["ref"]
  for name in ("odd", "grey", "rgba", "back\\slash"):
    with open(out / f"{name}.png", "rb") as a, open(ref / "out" / f"{name}.png", "rb") as b:
      assert a.read() == b.read(), f"{name}.png differs from test.py's"
  with open(out / "sub" / "nested.png", "rb") as a, open(ref / "out" / "nested.png", "rb") as b:
    assert a.read() == b.read(), "sub/nested.png differs from test.py's"
  with open(out / "rotated.png", "rb") as a, open(ref / "rotated.png", "rb") as b:
    assert a.read() == b.read(), "rotated.png (EXIF-rotated JPEG) differs from test.py's"
  assert _read(out / "grey.png").ndim == 2  # grey stays grey, as with test.py
  assert _read(out / "rgba.png").shape[2] == 4  # alpha kept
  # The model really changed the hole (a copy of the input would also be "equal").
  rotated = _read(out / "rotated.png")
  upright, _ = decode.read_image(batch_run["images"] / "rotated.jpg")
  upright = upright[..., ::-1]  # RGB -> BGR as cv2 reads the output
  assert rotated.shape == upright.shape == (120, 160, 3)
  assert not np.array_equal(rotated[batch_run["upright_mask"] > 127],
                            upright[batch_run["upright_mask"] > 127])


def test_every_input_has_one_record(batch_run):
  recs = batch_run["records"]
  ok = {"odd.png", "grey.png", "rgba.png", "back\\slash.png", "nested.png", "rotated.jpg",
        "clash.bmp"}
  failed = {"corrupt.png": "not a PNG, JPEG, BMP, WebP, GIF or TIFF file",
            "wrongsize.png": "mask is 88x64 but image is 96x64",
            "nomask.png": "no mask matches it",
            "bomb.png": "20000x20000 (400.0 megapixels), above the limit of 100 megapixels",
            "ppmbomb.png": "not a PNG, JPEG, BMP, WebP, GIF or TIFF file",
            "twomasks.png": "several masks match",
            "boom.png": "inference failed: RuntimeError: simulated inference failure",
            "clash.png": "also the output of",
            "x.png": "cannot create the output folder"}
  assert set(recs) == ok | set(failed), sorted(recs)
  for name in ok:
    rec = recs[name]
    assert rec["status"] == "ok" and rec["error"] is None, rec
    assert rec["inference_ms"] > 0 and 0 < rec["hole_fraction"] < 1, rec
    assert os.path.isfile(rec["output"]), rec
  assert (recs["odd.png"]["width"], recs["odd.png"]["height"]) == (301, 203)
  assert (recs["rotated.jpg"]["width"], recs["rotated.jpg"]["height"]) == (160, 120)
  for name, text in failed.items():
    rec = recs[name]
    assert rec["status"] == "failed" and text in rec["error"], rec
    assert "\n" not in rec["error"], rec
    if name != "clash.png":  # clash.png's output is clash.bmp's, which succeeded
      assert rec["output"] is None or not os.path.exists(rec["output"]), rec
  assert recs["boom.png"]["width"] == 96 and recs["boom.png"]["inference_ms"] is None
  counts = batch_run["counts"]
  assert counts == {"ok": len(ok), "skipped": 0, "failed": len(failed)}, counts
  worker = batch_run["worker"]  # measured in the worker (here: this process)
  assert worker["peak_rss_mb"] and worker["peak_rss_mb"] > 100, worker
  # Measured after the model's load and warm-up call, before the first photo.
  assert worker["baseline_rss_mb"] and 100 < worker["baseline_rss_mb"] <= worker["peak_rss_mb"]
  assert worker["setup_cpu_s"] and worker["setup_cpu_s"] > 0.5, worker


def test_no_partial_files_left(batch_run):
  out = batch_run["out"]
  leftovers = [p for p in glob.glob(os.path.join(str(out), "**", ".*"), recursive=True)]
  assert not leftovers, leftovers
  assert sorted(_pngs(out)) == sorted(["odd.png", "grey.png", "rgba.png", "back\\slash.png",
                                       "rotated.png", "clash.png",
                                       os.path.join("sub", "nested.png")])


# ---------------------------------------------------------------------------------------------
# Pairing: the same function as test.py's folder mode.


def _pairs(tasks):
  """(image, mask) of every paired task (an output clash is not a pairing matter)."""
  return [(t.image, t.mask) for t in tasks if t.mask is not None]


def _unpaired(tasks):
  return [t.image for t in tasks if t.error and "no mask matches" in t.error]


def test_pairing_is_test_py_pairing(tmp_path):
  images, masks = tmp_path / "images", tmp_path / "masks"
  for name in ["a.jpg", "b.png", "c.png", ".hidden.png", "notes.txt", "e.webp"]:
    (images / name).parent.mkdir(exist_ok=True)
    (images / name).write_bytes(b"x")
  for name in ["a.png", "b_mask.png", "zz.png", "e_mask.JPG"]:
    (masks / name).parent.mkdir(exist_ok=True)
    (masks / name).write_bytes(b"x")
  out = str(tmp_path / "out")
  expected, unpaired = paths.pair_by_stem(images, masks)
  assert expected and unpaired  # the case is not trivial
  for images_arg in (str(images), str(images) + "/", str(images / "*")):
    tasks = transforms.list_tasks(images_arg, str(masks), out)
    assert _pairs(tasks) == expected, images_arg
    assert _unpaired(tasks) == unpaired
  assert _pairs(transforms.list_tasks(str(images / "*"), str(masks / "*"), out)) == expected
  # One mask file for every image.
  single = str(masks / "zz.png")
  expected, _ = paths.pair_by_stem(images, single)
  assert _pairs(transforms.list_tasks(str(images), single, out)) == expected
  # Ambiguous: test.py refuses the run, the pipeline fails that photo only.
  (masks / "a_mask.png").write_bytes(b"x")
  with pytest.raises(decode.UserError, match="several masks match"):
    paths.pair_by_stem(images, masks)
  tasks = transforms.list_tasks(str(images), str(masks), out)
  assert [t.image for t in tasks if t.error and "several masks" in t.error] == [str(images / "a.jpg")]
  assert _pairs(tasks) == [(str(images / "b.png"), str(masks / "b_mask.png")),
                           (str(images / "e.webp"), str(masks / "e_mask.JPG"))]


_ODD_NAMES = ["plain", "back\\slash", "br[ack]et", "st*r", "qu?stion", "sp ace", "\u00fcml\u00e4ut",
              "[x]", "a!b"]


@pytest.mark.parametrize("folder_name", ["images", "br[ack]et dir", "st*r dir"])
def test_every_file_name_is_listed(tmp_path, folder_name):
  """No legal file name is dropped by the listing (Beam's glob '*' skips names with a
  backslash), and an existing folder is taken literally even with glob characters."""
  images, masks = tmp_path / folder_name, tmp_path / "masks"
  for name in _ODD_NAMES:
    for folder, stem in ((images, name), (masks, name + "_mask")):
      folder.mkdir(exist_ok=True)
      (folder / f"{stem}.png").write_bytes(b"x")
  (images / "sub").mkdir()
  (images / "sub" / "deep\\er.png").write_bytes(b"x")
  (masks / "deep\\er.png").write_bytes(b"x")
  expected, unpaired = paths.pair_by_stem(images, masks)  # test.py's folder mode
  assert len(expected) == len(_ODD_NAMES) and not unpaired
  out = str(tmp_path / "out")
  args = [str(images), str(images) + "/"]
  if not os.path.exists(images / "*"):
    args.append(os.path.join(glob.escape(str(images)), "*"))
  for images_arg in args:
    tasks = transforms.list_tasks(images_arg, str(masks), out)
    assert not [t for t in tasks if t.error], (images_arg, tasks)
    assert _pairs(tasks) == expected, images_arg
    assert {os.path.basename(t.output) for t in tasks} == {f"{n}.png" for n in _ODD_NAMES}
  if folder_name == "images":  # '**' reaches the sub-folder too
    tasks = transforms.list_tasks(str(images / "**"), str(masks), out)
    assert len(tasks) == len(_ODD_NAMES) + 1 and not [t for t in tasks if t.error], tasks
  # The launch check agrees: an existing folder is a folder, not a pattern.
  launch.check_arguments(str(images), str(masks), out, _fake_saved_model(tmp_path), 1)


def _fake_saved_model(tmp_path):
  folder = tmp_path / "sm"
  folder.mkdir(exist_ok=True)
  (folder / "saved_model.pb").write_bytes(b"")
  return str(folder)


def test_glob_regex_is_beams_glob_but_star_keeps_backslashes():
  from apache_beam.io.filesystem import FileSystem
  import re
  rng = np.random.default_rng(0)
  atoms = ["a", "b", "/", "*", "**", "?", "[ab]", "[!a]", "[", "]", ".", "-", "^", "[^a]"]
  letters = ["a", "b", "/", ".", "-", "^", "!", "[", "]", "\\"]
  checked = 0
  for _ in range(3000):
    pattern = "".join(rng.choice(atoms, rng.integers(1, 6)))
    path = "".join(rng.choice(letters, rng.integers(0, 8)))
    ours = re.match(transforms.glob_regex(pattern), path) is not None
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", FutureWarning)  # Beam's class for '[[a]' has a nested '['
      beams = re.match(FileSystem.translate_pattern(pattern), path) is not None
    if "\\" not in path:
      assert ours == beams, (pattern, path)
      checked += 1
    elif beams:
      assert ours, (pattern, path)  # a backslash only ever adds matches
  assert checked > 1000
  assert re.match(transforms.glob_regex("in/*.png"), "in/b\\c.png")
  assert not re.match(transforms.glob_regex("in/*.png"), "in/sub/c.png")


def test_pairing_in_one_folder(tmp_path):
  for name in ["a.png", "a_mask.png", "a.jpg", "b.png"]:
    (tmp_path / name).write_bytes(b"x")
  expected, unpaired = paths.pair_by_stem(tmp_path, tmp_path)
  tasks = transforms.list_tasks(str(tmp_path), str(tmp_path), str(tmp_path / "out"))
  assert _pairs(tasks) == expected and len(expected) == 2
  assert _unpaired(tasks) == unpaired == [str(tmp_path / "b.png")]
  # a.jpg and a.png would both write a.png: the second one fails, the first is written.
  assert [t.error is None for t in tasks if t.mask] == [True, False]
  # A single mask inside the image folder is not an image of its own.
  expected, _ = paths.pair_by_stem(tmp_path, tmp_path / "a_mask.png")
  tasks = transforms.list_tasks(str(tmp_path), str(tmp_path / "a_mask.png"), str(tmp_path / "o"))
  assert _pairs(tasks) == expected and len(expected) == 3


def test_outputs_never_replace_inputs(tmp_path):
  # Output paths keep the folders below the glob's base: with --output_dir above the
  # images, a.png's output would be the image itself.
  (tmp_path / "in").mkdir()
  (tmp_path / "in" / "a.png").write_bytes(b"x")
  (tmp_path / "in" / "a_mask.png").write_bytes(b"x")
  tasks = transforms.list_tasks(str(tmp_path / "*" / "a.png"), str(tmp_path / "in" / "a_mask.png"),
                                str(tmp_path))
  assert len(tasks) == 1 and "would replace an input file" in tasks[0].error
  # Through a symlinked spelling of the same folder too.
  os.symlink(tmp_path / "in", tmp_path / "link")
  tasks = transforms.list_tasks(str(tmp_path / "in" / "a.png"), str(tmp_path / "in" / "a_mask.png"),
                                str(tmp_path / "link"))
  assert "would replace an input file" in tasks[0].error


def test_launch_errors(tmp_path, tiny):
  (tmp_path / "in").mkdir()
  _write(tmp_path / "in" / "a.png", np.zeros((16, 16, 3), np.uint8))
  good = dict(images=str(tmp_path / "in"), masks=str(tmp_path / "in" / "a.png"),
              output_dir=str(tmp_path / "out"), saved_model=tiny["saved_model"])
  cases = [
      (dict(saved_model=str(tmp_path)), "not a SavedModel directory"),
      (dict(images=str(tmp_path / "in" / "*.jpg")), "matches no file"),
      (dict(masks=str(tmp_path / "nope")), "no such file or folder"),
      (dict(output_dir=str(tmp_path / "in")), "where the images are read from"),
      (dict(images=str(tmp_path / "**"), output_dir=str(tmp_path / "in" / "filled")),
       "where the images are read from"),  # a later run's '**' would find the outputs
  ]
  for change, text in cases:
    with pytest.raises(launch.LaunchError, match=text):
      launch.run(**{**good, **change})
  # A typo in a Beam option is a command-line mistake, not an option Beam drops silently.
  with pytest.raises(launch.UnknownArguments, match="unknown flags: --runnner"):
    launch.run(**good, beam_args=["--runnner", "DirectRunner"])
  assert not os.path.exists(tmp_path / "out") or not os.listdir(tmp_path / "out")


def test_cli_error_is_one_line(tmp_path, tiny):
  proc = procs.run("batch_inpaint.py", "--images", tmp_path / "*.png", "--masks", tmp_path,
                   "--output_dir", tmp_path / "out", "--saved_model", tiny["saved_model"],
                   "--bogus_option", "3", cwd=tmp_path, timeout=300)
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  assert "unknown flags: --bogus_option 3" in lines[0]


# ---------------------------------------------------------------------------------------------
# A crash, then --skip_existing.


def test_skip_existing_finishes_after_a_crash(tmp_path, tiny):
  china = _read(_example("sklearn_china.png"))
  images = tmp_path / "images"
  for i in range(40):
    _write(images / f"p{i:02d}.png", china[i * 5:i * 5 + 96, i * 7:i * 7 + 128])
  mask = np.zeros((96, 128), np.uint8)
  mask[30:60, 40:90] = 255
  mask_path = _write(tmp_path / "mask.png", mask)
  out, clean = tmp_path / "out", tmp_path / "clean"

  proc = _start(BATCH_PY, "--images", images, "--masks", mask_path, "--output_dir", out,
                "--saved_model", tiny["saved_model"], cwd=tmp_path, start_new_session=True)
  deadline = time.monotonic() + 600
  try:
    while not _pngs(out) and proc.poll() is None and time.monotonic() < deadline:
      time.sleep(0.005)
  finally:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
  done = _pngs(out)
  assert 0 < len(done) < 40, f"the crash came too late or too early ({len(done)} outputs)"
  assert not glob.glob(os.path.join(str(out), "results-*.jsonl"))  # records come at the end
  before = {name: os.stat(out / name) for name in done}

  counts, _, _ = launch.run(str(images), mask_path, str(out), tiny["saved_model"],
                                   skip_existing=True)
  assert counts == {"ok": 40 - len(done), "skipped": len(done), "failed": 0}, counts
  for name, st in before.items():  # finished files were not rewritten
    now = os.stat(out / name)
    assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), name
  statuses = {name: rec["status"] for name, rec in _records(out).items()}
  assert statuses == {f"p{i:02d}.png": "skipped" if f"p{i:02d}.png" in done else "ok"
                      for i in range(40)}
  # The result is that of an uninterrupted run, byte for byte.
  counts, _, _ = launch.run(str(images), mask_path, str(clean), tiny["saved_model"])
  assert counts["ok"] == 40
  assert _pngs(out) == _pngs(clean)
  for name in _pngs(clean):
    with open(out / name, "rb") as a, open(clean / name, "rb") as b:
      assert a.read() == b.read(), name


# ---------------------------------------------------------------------------------------------
# A remote filesystem: an in-memory object store (no folders; an object exists once uploaded).


class _ObjectStore:
  """Beam FileSystem for ``memtest://`` paths, kept in a dict (like GCS: flat names)."""
  objects = {}


def _memtest_filesystem():
  from apache_beam.io.filesystem import BeamIOError, FileMetadata, FileSystem

  class _Upload(io.BytesIO):
    def __init__(self, path):
      super().__init__()
      self._path = path

    def close(self):
      if not self.closed:
        _ObjectStore.objects[self._path] = self.getvalue()  # published on close only
      super().close()

  class MemTestFileSystem(FileSystem):
    @classmethod
    def scheme(cls):
      return "memtest"

    def join(self, basepath, *paths):
      return "/".join([basepath.rstrip("/")] + [p.strip("/") for p in paths])

    def split(self, path):
      head, _, tail = path.rpartition("/")
      return head, tail

    def mkdirs(self, path):
      pass

    def has_dirs(self):
      return False

    def _list(self, dir_or_prefix):
      for path, data in sorted(_ObjectStore.objects.items()):
        if path.startswith(dir_or_prefix):
          yield FileMetadata(path, len(data), 0.0)

    def create(self, path, mime_type="application/octet-stream", compression_type=None):
      return _Upload(path)

    def open(self, path, mime_type="application/octet-stream", compression_type=None):
      if path not in _ObjectStore.objects:
        raise BeamIOError("not found", {path: FileNotFoundError(path)})
      return io.BytesIO(_ObjectStore.objects[path])

    def copy(self, sources, destinations):
      for s, d in zip(sources, destinations):
        _ObjectStore.objects[d] = _ObjectStore.objects[s]

    def rename(self, sources, destinations):
      for s, d in zip(sources, destinations):
        _ObjectStore.objects[d] = _ObjectStore.objects.pop(s)

    def exists(self, path):  # objects only: a "folder" is a name prefix, as on GCS
      return path in _ObjectStore.objects

    def size(self, path):
      return len(_ObjectStore.objects[path])

    def last_updated(self, path):
      return 0.0

    def checksum(self, path):
      return str(len(_ObjectStore.objects[path]))

    def metadata(self, path):
      return FileMetadata(path, len(_ObjectStore.objects[path]), 0.0)

    def delete(self, paths):
      for path in paths:
        for p in [p for p in _ObjectStore.objects if p == path or p.startswith(path + "/")]:
          del _ObjectStore.objects[p]

  return MemTestFileSystem


def test_remote_filesystem_paths(batch_run, tiny, tmp_path, monkeypatch):
  filesystem = _memtest_filesystem()  # Beam finds the subclass (while it lives) by its scheme
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the local copy is made
  stale = tmp_path / f"{copies.COPY_PREFIX}{2**22 + 1}_killed"  # left by a killed process
  stale.mkdir()
  store = _ObjectStore.objects
  store.clear()
  for root, _, files in os.walk(tiny["saved_model"]):
    for name in files:
      rel = os.path.relpath(os.path.join(root, name), tiny["saved_model"]).replace(os.sep, "/")
      with open(os.path.join(root, name), "rb") as f:
        store[f"memtest://bucket/model/{rel}"] = f.read()
  images = batch_run["images"]
  masks = os.path.join(os.path.dirname(str(images)), "masks")
  for name, mask in (("odd.png", "odd.png"), ("grey.png", "grey_mask.png")):
    store[f"memtest://bucket/photos/{name}"] = open(images / name, "rb").read()
    store[f"memtest://bucket/masks/{mask}"] = open(os.path.join(masks, mask), "rb").read()
  store["memtest://bucket/photos/corrupt.png"] = b"not a PNG"
  store["memtest://bucket/masks/corrupt.png"] = store["memtest://bucket/masks/odd.png"]

  counts, pattern, _ = launch.run("memtest://bucket/photos/*.png", "memtest://bucket/masks",
                                         "memtest://bucket/out", "memtest://bucket/model")
  assert counts == {"ok": 2, "skipped": 0, "failed": 1}, counts
  for name in ("odd.png", "grey.png"):  # the bytes of the local run, which are test.py's
    assert store[f"memtest://bucket/out/{name}"] == open(batch_run["out"] / name, "rb").read()
  records = [json.loads(line) for path, data in store.items()
             if path.startswith(pattern.split("*")[0]) for line in data.decode().splitlines()]
  failed = [r for r in records if r["status"] == "failed"]
  assert len(records) == 3 and failed[0]["image"] == "memtest://bucket/photos/corrupt.png"
  assert "not a PNG, JPEG" in failed[0]["error"]
  counts, _, _ = launch.run("memtest://bucket/photos/*.png", "memtest://bucket/masks/",
                                   "memtest://bucket/out", "memtest://bucket/model",
                                   skip_existing=True)
  assert counts == {"ok": 0, "skipped": 2, "failed": 1}, counts
  # The copy is deleted once loaded, and the stale one at the first load.
  assert not [n for n in os.listdir(tmp_path) if n.startswith(copies.COPY_PREFIX)]
  del filesystem


# ---------------------------------------------------------------------------------------------
# Only serving_default is loaded; the photos are dealt out to the workers largest first.


def test_serving_only_export_is_loaded_in_place(tiny, tmp_path, monkeypatch):
  """The pipeline's export has serving_default only; the handler loads it as it is, with no
  copy, and returns what the full export's serving_default returns."""
  import tensorflow as tf
  from model.inference import serving
  from tensorflow.core.protobuf import saved_model_pb2
  full = str(tmp_path / "full")
  gen, cfg = weights.load_generator(tiny["checkpoint"])
  serving.ServingModel(gen, cfg, 1.0).archive().write_out(full, verbose=False)
  functions = {}
  for name, path in (("serving", tiny["saved_model"]), ("full", full)):
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
      meta = saved_model_pb2.SavedModel.FromString(f.read()).meta_graphs[0]
    functions[name] = {f.signature.name for f in meta.graph_def.library.function}
  assert not [n for n in functions["serving"] if "serve_bytes" in n]
  assert [n for n in functions["full"] if "serve_bytes" in n]
  assert len(functions["serving"]) < len(functions["full"])

  temp = tmp_path / "temp"
  temp.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(temp))
  model = handler_lib.SavedModelHandler(tiny["saved_model"]).load_model()
  assert os.listdir(temp) == []  # loaded in place: nothing copied
  assert set(model._loaded.signatures) == {"serving_default"}
  assert model.baseline_rss_mb > 100
  rng = np.random.default_rng(5)
  rgb = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
  hole = np.zeros((45, 70), bool)
  hole[10:30, 20:50] = True
  got = model(rgb, hole)
  serve = tf.saved_model.load(full).signatures["serving_default"]
  want = serve(image=tf.constant(rgb[None]),
               mask=tf.constant(np.where(hole, 255, 0).astype(np.uint8)[None, :, :, None]))
  assert np.array_equal(got.pixels, want["inpainted"][0].numpy())
  assert not np.array_equal(got.pixels[hole], rgb[hole])
  assert got.baseline_rss_mb == model.baseline_rss_mb and got.setup_cpu_s == model.setup_cpu_s
  # A full export loads too (both signatures built).
  assert set(handler_lib.SavedModelHandler(full).load_model()._loaded.signatures) == {
      "serving_default", "inpaint_bytes"}


def test_stale_copies_are_removed(tmp_path):
  dead = 2**22 + 1  # above Linux's largest pid: no such process
  for name in (f"{copies.COPY_PREFIX}{dead}_abc", f"{copies.COPY_PREFIX}{os.getpid()}_abc",
               f"{copies.COPY_PREFIX}{os.getppid()}_abc", f"{copies.COPY_PREFIX}old", "other"):
    (tmp_path / name).mkdir()
    (tmp_path / name / "saved_model.pb").write_bytes(b"x")
  assert copies.remove_stale_copies(str(tmp_path)) == 1
  assert sorted(os.listdir(tmp_path)) == sorted([
      f"{copies.COPY_PREFIX}{os.getpid()}_abc", f"{copies.COPY_PREFIX}{os.getppid()}_abc",
      f"{copies.COPY_PREFIX}old", "other"])
  assert copies.remove_stale_copies(str(tmp_path), include_own=True) == 1
  assert f"{copies.COPY_PREFIX}{os.getppid()}_abc" in os.listdir(tmp_path)  # alive, not ours


def test_sigterm_removes_the_commands_copy(tmp_path, tiny):
  """batch_inpaint.py on SIGTERM deletes its own copy (here a stand-in made once it runs)."""
  temp = tmp_path / "temp"
  temp.mkdir()
  _write(tmp_path / "in" / "a.png", np.zeros((16, 16, 3), np.uint8))
  proc = procs.start("batch_inpaint.py", "--images", tmp_path / "in", "--masks",
                     tmp_path / "in" / "a.png", "--output_dir", tmp_path / "out",
                     "--saved_model", tiny["saved_model"], cwd=tmp_path,
                     environ=procs.env(TMPDIR=str(temp)))
  copy = temp / f"{copies.COPY_PREFIX}{proc.pid}_test"
  deadline = time.monotonic() + 300
  while "tensorflow" not in open(f"/proc/{proc.pid}/maps").read():  # main() is running
    assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
    time.sleep(0.05)
  copy.mkdir()
  proc.send_signal(signal.SIGTERM)
  proc.communicate(timeout=60)
  assert proc.returncode == -signal.SIGTERM
  assert not copy.exists()


_DEALT = []  # (thread, image) in the order the fake handler saw them


class _RecordingHandler(handler_lib.SavedModelHandler):
  """No model: returns the input and notes which thread got which photo."""

  def load_model(self):
    return None

  def run_inference(self, batch, model, inference_args=None):
    import threading
    for photo in batch:
      _DEALT.append((threading.get_ident(), photo.task.image))
      yield handler_lib.base.PredictionResult(
          photo, handler_lib.Inpainted(pixels=photo.rgb, inference_ms=1.0))


def test_photos_are_dealt_out_largest_first(tmp_path):
  """Two DirectRunner workers get the photos in turn, largest file first: equal shares."""
  import apache_beam as beam
  from apache_beam.options.pipeline_options import PipelineOptions
  rng = np.random.default_rng(3)
  images, out = tmp_path / "in", tmp_path / "out"
  for i in range(12):
    side = int(rng.integers(16, 120))
    _write(images / f"p{i:02d}.png", rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    mask = np.zeros((side, side), np.uint8)
    mask[: side // 2] = 255
    _write(images / f"p{i:02d}_mask.png", mask)
  sizes = {str(p): os.path.getsize(p) for p in images.glob("p??.png")}
  _DEALT.clear()
  options = PipelineOptions(["--direct_num_workers", "2", "--direct_running_mode",
                             "multi_threading"])
  with beam.Pipeline(options=options) as pipeline:
    _ = pipeline | transforms.InpaintFiles(str(images), str(images), str(out),
                                           _RecordingHandler(str(tmp_path)), max_pixels=10**6)
  assert sorted(image for _, image in _DEALT) == sorted(sizes)
  threads = sorted({thread for thread, _ in _DEALT})
  assert len(threads) == 2, threads
  ranked = sorted(sizes, key=lambda p: (-sizes[p], p))
  for k, thread in enumerate(threads):
    seen = [image for t, image in _DEALT if t == thread]
    assert seen in (ranked[0::2], ranked[1::2]), (k, seen)
  shares = [sum(sizes[image] for t, image in _DEALT if t == thread) for thread in threads]
  assert abs(shares[0] - shares[1]) <= max(sizes.values())


def test_tf1_saved_model_loads(tmp_path):
  """A TF1-style SavedModel (no object graph) is loaded as any other."""
  import tensorflow as tf
  export = str(tmp_path / "tf1")
  graph = tf.Graph()
  with graph.as_default():
    image = tf.compat.v1.placeholder(tf.uint8, [None, None, None, 3], name="image")
    mask = tf.compat.v1.placeholder(tf.uint8, [None, None, None, 1], name="mask")
    out = tf.where(tf.broadcast_to(mask > 127, tf.shape(image)), tf.zeros_like(image), image)
    with tf.compat.v1.Session(graph=graph) as session:
      builder = tf.compat.v1.saved_model.Builder(export)
      builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={
          "serving_default": tf.compat.v1.saved_model.predict_signature_def(
              {"image": image, "mask": mask}, {"inpainted": out})})
      builder.save()
  model = handler_lib.SavedModelHandler(export).load_model()
  rgb = np.full((5, 6, 3), 7, np.uint8)
  hole = np.zeros((5, 6), bool)
  hole[1:3, 2:4] = True
  got = model(rgb, hole).pixels
  assert np.array_equal(got[hole], np.zeros((4, 3), np.uint8))
  assert np.array_equal(got[~hole], rgb[~hole])


def test_output_of_another_shape_is_a_failed_record(tmp_path):
  """A foreign SavedModel with serving_default(image, mask) -> inpainted that returns 2x2
  pictures: failed records saying so, no PNG."""
  import tensorflow as tf

  class Foreign(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8),
                                  tf.TensorSpec([None, None, None, 1], tf.uint8)])
    def serve(self, image, mask):
      return {"inpainted": tf.zeros([tf.shape(image)[0], 2, 2, 3], tf.uint8)}

  foreign = Foreign()
  export = str(tmp_path / "foreign")
  tf.saved_model.save(foreign, export, signatures={"serving_default": foreign.serve})
  images, out = tmp_path / "in", tmp_path / "out"
  for name, side in (("a", 24), ("b", 40)):
    _write(images / f"{name}.png", np.full((side, side + 8, 3), 90, np.uint8))
    mask = np.zeros((side, side + 8), np.uint8)
    mask[4:12, 4:12] = 255
    _write(images / f"{name}_mask.png", mask)
  counts, _, _ = launch.run(str(images), str(images), str(out), export)
  assert counts == {"ok": 0, "skipped": 0, "failed": 2}, counts
  recs = _records(out)
  assert "returned 2x2x3 uint8 pixels for a 32x24 photo (expected 24x32x3 uint8)" in (
      recs["a.png"]["error"]), recs["a.png"]
  assert "for a 48x40 photo" in recs["b.png"]["error"]
  assert _pngs(out) == []
