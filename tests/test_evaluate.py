"""Tests of the evaluation masks (model/evaluation/masks.py) and the `python evaluate.py` CLI.

CLI runs are real subprocesses on 3 dev photos downscaled to 128 px (--max_side 128).
The OpenCV-only runs do not import TensorFlow (about 1 s each); the model run uses a tiny
random checkpoint (cnum=4). Errors must print exactly one `error:` line and exit 1.
"""
import csv
import json
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO, SHARED, require_shared
from support import procs
from support.checkpoints import write_tiny_checkpoint
from model.evaluation import masks as eval_masks

PHOTOS = os.path.join(SHARED, "data", "dev", "photos")
NAMES = ("lxqt_valendas.jpg", "mate_ladybird.jpg", "tiktok_pexels-36236147.jpg")
COLUMNS = ["image", "mask_mode", "method", "width", "height", "hole_pct", "l1_pct", "l2_pct",
           "psnr_hole_db", "psnr_db", "ssim", "tv_pct", "tv_hole_pct", "truth_tv_pct",
           "truth_tv_hole_pct", "detail", "seconds"]
_PROGRESS = re.compile(r"^\[\d+/\d+\] [^\r\n\x1b]*(\n|$)", re.M)  # plain lines: not a tty


# ---------------------------------------------------------------------------------------------
# Evaluation masks


def test_masks_are_deterministic_for_a_seed_and_index():
  for mode in eval_masks.EVAL_MASK_MODES:
    a = eval_masks.eval_mask(mode, 120, 160, seed=7, index=3)
    b = eval_masks.eval_mask(mode, 120, 160, seed=7, index=3)
    assert a.dtype == bool and a.shape == (120, 160)
    assert np.array_equal(a, b)


def test_masks_differ_across_images_seeds_and_modes():
  for mode in eval_masks.EVAL_MASK_MODES:
    masks = [eval_masks.eval_mask(mode, 128, 128, 0, i).tobytes() for i in range(20)]
    assert len(set(masks)) == 20
    assert not np.array_equal(eval_masks.eval_mask(mode, 128, 128, 0, 0),
                              eval_masks.eval_mask(mode, 128, 128, 1, 0))
  assert not np.array_equal(eval_masks.eval_mask("box", 128, 128, 0, 0),
                            eval_masks.eval_mask("free_form", 128, 128, 0, 0))


def test_masks_are_pinned():
  """Guards reproducibility: these numbers change only if the generators change."""
  box = eval_masks.eval_mask("box", 256, 256, 0, 0)
  rows, cols = np.nonzero(box)
  assert (box.sum(), rows.min(), rows.max(), cols.min(), cols.max()) == (14848, 113, 240, 63, 178)
  assert eval_masks.eval_mask("free_form", 256, 256, 0, 0).sum() == 2916


@pytest.mark.parametrize("height, width", [(256, 256), (85, 128), (512, 341)])
def test_box_masks_are_the_scaled_training_hole(height, width):
  fractions = []
  for i in range(200):
    hole = eval_masks.eval_mask("box", height, width, 0, i)
    rows, cols = np.nonzero(hole)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    assert hole[top:bottom, left:right].all() and hole.sum() == (bottom - top) * (right - left)
    shrink_h, shrink_w = (height // 8) // 2, (width // 8) // 2
    assert height // 2 - 2 * shrink_h <= bottom - top <= height // 2
    assert width // 2 - 2 * shrink_w <= right - left <= width // 2
    fractions.append(hole.mean())
  assert 0.13 < min(fractions) and max(fractions) <= 0.25
  assert 0.17 < np.mean(fractions) < 0.21


@pytest.mark.parametrize("height, width", [(256, 256), (128, 96), (512, 340)])
def test_free_form_masks_have_sensible_sizes(height, width):
  fractions = np.array([eval_masks.eval_mask("free_form", height, width, 0, i).mean()
                        for i in range(300)])
  assert fractions.min() > 0.003 and fractions.max() < 0.6
  assert 0.12 < fractions.mean() < 0.19  # v2 strokes: mean ~15 % at any size
  assert np.percentile(fractions, 90) < 0.35


def test_mask_arguments_are_checked():
  with pytest.raises(ValueError, match="mask mode"):
    eval_masks.eval_mask("circle", 64, 64, 0, 0)
  with pytest.raises(ValueError, match="non-negative"):
    eval_masks.eval_mask("box", 64, 64, -1, 0)


def test_eval_masks_and_metrics_do_not_import_tensorflow():
  code = ("import sys; from model.evaluation import masks as eval_masks, metrics, engine, "
          "classical; "
          "eval_masks.eval_mask('free_form', 64, 64, 0, 0); "
          "assert 'tensorflow' not in sys.modules, 'TF imported'")
  subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


# ---------------------------------------------------------------------------------------------
# CLI helpers


def run_eval(*args):
  """Runs `python evaluate.py ARGS`."""
  return procs.run("evaluate.py", *args)


def stderr_lines(proc):
  return [line for line in _PROGRESS.sub("", proc.stderr).split("\n") if line.strip()]


def assert_ok(proc):
  report = f"rc={proc.returncode}\nstdout={proc.stdout}\nstderr={proc.stderr!r}"
  assert proc.returncode == 0, report
  lines = stderr_lines(proc)
  assert all(line.startswith("warning: ") for line in lines), report
  assert "wrote" in proc.stdout, report
  return lines


def assert_error(proc, match, out_dir=None, status=1):
  """One error line and exit ``status`` (2 for command-line mistakes, 1 otherwise)."""
  report = f"rc={proc.returncode}\nstdout={proc.stdout}\nstderr={proc.stderr!r}"
  assert proc.returncode == status, report
  assert "Traceback" not in proc.stderr, report
  lines = stderr_lines(proc)
  assert lines and lines[-1].startswith("error: ") and re.search(match, lines[-1]), report
  assert all(line.startswith("warning: ") for line in lines[:-1]), report
  if out_dir is not None:
    assert not os.path.exists(os.path.join(out_dir, "results.csv")), report
    assert not os.path.exists(os.path.join(out_dir, "results.json")), report


def read_csv(out_dir):
  with open(os.path.join(out_dir, "results.csv"), newline="") as f:
    reader = csv.DictReader(f)
    return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  """Three dev photos (1024-1638 px; evaluated at 128 px)."""
  directory = tmp_path_factory.mktemp("photos")
  for name in NAMES:
    shutil.copy(require_shared(os.path.join(PHOTOS, name)), directory / name)
  return directory


@pytest.fixture(scope="module")
def opencv_run(photos, tmp_path_factory):
  """Telea vs Navier-Stokes on box and free-form masks."""
  out = tmp_path_factory.mktemp("eval_cv")
  proc = run_eval("--data_dir", photos, "--method", "telea", "--compare", "ns",
                  "--mask_mode", "both", "--max_side", 128, "--output_dir", out)
  return proc, out


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
  """One of our checkpoints with a tiny random generator (cnum=4)."""
  return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ckpt"))


# ---------------------------------------------------------------------------------------------
# CLI success cases


@pytest.mark.slow
def test_opencv_methods_end_to_end(opencv_run):
  proc, out = opencv_run
  assert_ok(proc)
  assert re.search(r"\[3/3\] tiktok_pexels-36236147\.jpg", proc.stderr)  # progress
  header, rows = read_csv(out)
  assert header == COLUMNS
  per_image = [r for r in rows if r["image"] != "(mean)"]
  means = [r for r in rows if r["image"] == "(mean)"]
  assert len(per_image) == 3 * 2 * 2 and len(means) == 2 * 2
  assert {(r["mask_mode"], r["method"]) for r in means} == {
      ("box", "telea"), ("box", "ns"), ("free_form", "telea"), ("free_form", "ns")}
  for r in per_image:
    assert max(int(r["width"]), int(r["height"])) == 128
    assert 0 < float(r["hole_pct"]) < 60 and 0 < float(r["l1_pct"]) < 50
    assert float(r["l2_pct"]) < float(r["l1_pct"])
    assert float(r["psnr_db"]) > float(r["psnr_hole_db"]) > 5
    assert 0 < float(r["ssim"]) < 1 and float(r["tv_pct"]) > 0
    assert 0 < float(r["detail"]) < 1  # diffusion fills are smoother than the photos
  box_telea = [float(r["l1_pct"]) for r in per_image if r["mask_mode"] == "box"
               and r["method"] == "telea"]
  mean = next(r for r in means if r["mask_mode"] == "box" and r["method"] == "telea")
  assert float(mean["l1_pct"]) == pytest.approx(np.mean(box_telea), abs=1e-5)

  report = json.load(open(os.path.join(out, "results.json")))
  assert report["counts"] == {"images": 3, "evaluated": 3, "skipped": 0}
  assert report["settings"]["methods"] == ["telea", "ns"]
  assert report["settings"]["mask_modes"] == ["box", "free_form"]
  assert len(report["images"]) == 12 and len(report["summary"]) == 4
  assert set(COLUMNS[5:]) <= set(report["summary"][0]) and report["summary"][0]["images"] == 3
  assert "tv_pct" in report["definitions"] and "Laplacian" in report["definitions"]["detail"]

  table = proc.stdout.splitlines()
  assert table[0].split()[:4] == ["mask_mode", "method", "images", "hole%"]
  assert table[0].split()[-2:] == ["detail", "s/img"]
  assert sum(1 for line in table if line.split()[:2] == ["free_form", "ns"]) == 1

  grids = sorted(os.listdir(os.path.join(out, "grids")))
  assert grids == sorted(f"{os.path.splitext(n)[0]}_{m}.png" for n in NAMES
                         for m in ("box", "free_form"))
  grid = cv2.imread(os.path.join(out, "grids", "mate_ladybird_box.png"))
  assert grid.shape == (80 + 20, 4 * 128 + 3 * 4, 3)  # input | telea | ns | truth, label strip
  for mode in ("box", "free_form"):
    assert len(os.listdir(os.path.join(out, "masks", mode))) == 3
  assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


@pytest.mark.slow
def test_saved_masks_reproduce_the_scores(opencv_run, photos, tmp_path):
  """The generated masks, fed back through --mask_dir, give the same numbers."""
  _, first = opencv_run
  proc = run_eval("--data_dir", photos, "--mask_dir", first / "masks" / "box", "--method", "telea",
                  "--max_side", 128, "--nogrids", "--output_dir", tmp_path)
  assert_ok(proc)
  _, rows = read_csv(tmp_path)
  _, old = read_csv(first)
  old = {r["image"]: r for r in old if r["mask_mode"] == "box" and r["method"] == "telea"}
  for row in rows:
    assert row["mask_mode"] == "fixed"
    for column in COLUMNS[3:-1]:
      assert row[column] == old[row["image"]][column], column
  assert not os.path.exists(tmp_path / "grids")


@pytest.mark.slow
def test_fixed_masks_at_full_size_and_skipped_files(photos, tmp_path):
  data, masks, out = tmp_path / "data", tmp_path / "masks", tmp_path / "out"
  shutil.copytree(photos, data)
  masks.mkdir()
  (data / "broken.jpg").write_bytes((data / NAMES[0]).read_bytes()[:2000])
  height, width = cv2.imread(str(data / NAMES[0])).shape[:2]
  hole = np.zeros((height, width), np.uint8)
  hole[200:500, 300:700] = 255
  cv2.imwrite(str(masks / "lxqt_valendas.png"), hole)             # full size: downscaled
  cv2.imwrite(str(masks / "mate_ladybird_mask.png"), np.zeros((10, 10), np.uint8))  # bad size
  proc = run_eval("--data_dir", data, "--mask_dir", masks, "--method", "ns",
                  "--max_side", 128, "--output_dir", out)
  warnings = assert_ok(proc)
  assert any("broken.jpg" in w and "no mask" in w for w in warnings)
  assert any("mate_ladybird_mask.png" in w and "10x10" in w for w in warnings)
  assert any("tiktok" in w for w in warnings)
  assert warnings[-1] == "warning: 3 of 4 images skipped (see results.json)"
  _, rows = read_csv(out)
  assert [r["image"] for r in rows] == ["lxqt_valendas.jpg", "(mean)"]
  row = rows[0]
  assert (row["width"], row["height"]) == ("128", "85")
  assert float(row["hole_pct"]) == pytest.approx(100 * 300 * 400 / (height * width), rel=0.15)
  report = json.load(open(out / "results.json"))
  assert report["counts"] == {"images": 4, "evaluated": 1, "skipped": 3}


@pytest.mark.slow
def test_corrupt_photo_is_skipped_and_counted(photos, tmp_path):
  data = tmp_path / "data"
  shutil.copytree(photos, data)
  (data / "aa_broken.jpg").write_bytes((data / NAMES[1]).read_bytes()[:3000])
  proc = run_eval("--data_dir", data, "--method", "telea", "--max_side", 96, "--nogrids",
                  "--output_dir", tmp_path / "out")
  warnings = assert_ok(proc)
  assert len(warnings) == 2 and "aa_broken.jpg" in warnings[0]
  report = json.load(open(tmp_path / "out" / "results.json"))
  assert report["counts"] == {"images": 4, "evaluated": 3, "skipped": 1}
  assert report["skipped"][0]["image"].endswith("aa_broken.jpg")


@pytest.mark.slow
def test_model_with_baselines_end_to_end(photos, tiny_checkpoint, tmp_path):
  proc = run_eval("--data_dir", photos, "--checkpoint_dir", tiny_checkpoint, "--compare", "telea,ns",
                  "--mask_mode", "both", "--max_images", 2, "--max_side", 128,
                  "--output_dir", tmp_path)
  assert_ok(proc)
  header, rows = read_csv(tmp_path)
  assert header == COLUMNS
  assert [r["method"] for r in rows[:3]] == ["model", "telea", "ns"]
  assert {r["image"] for r in rows} == {"(mean)", NAMES[0], NAMES[1]}
  assert len(rows) == 2 * 2 * 3 + 2 * 3
  model_rows = [r for r in rows if r["method"] == "model" and r["image"] != "(mean)"]
  assert all(0 < float(r["l1_pct"]) < 100 and 0 < float(r["ssim"]) <= 1 for r in model_rows)
  assert all(float(r["detail"]) > 0 for r in model_rows)
  report = json.load(open(tmp_path / "results.json"))
  assert report["settings"]["checkpoint_dir"] == os.path.abspath(tiny_checkpoint)
  assert report["settings"]["precision"] == "float32"  # what ran (the model declares nothing)
  grid = cv2.imread(str(tmp_path / "grids" / "lxqt_valendas_free_form.png"))
  assert grid.shape == (85 + 20, 5 * 128 + 4 * 4, 3)  # input | ours | Telea | NS | truth
  assert len(os.listdir(tmp_path / "grids")) == 4


# ---------------------------------------------------------------------------------------------
# CLI errors


@pytest.mark.parametrize("args, match, status", [
    (["--data_dir", "{tmp}/missing"], "no such directory", 1),
    (["--data_dir", "{tmp}"], "no images in", 1),
    (["--data_dir", "{photos}", "--method", "telea", "--compare", "telea,bogus"],
     "unknown method 'bogus'", 2),
    (["--data_dir", "{photos}", "--checkpoint_dir", "{tmp}/nope"], "checkpoint directory not found",
     1),
    (["--data_dir", "{photos}", "--method", "ns", "--max_side", "8"], "--max_side", 2),
    (["--data_dir", "{photos}", "--method", "ns", "--max_side", "1"], "--max_side", 2),
    (["--data_dir", "{photos}", "--mask_dir", "{photos}", "--mask_mode", "box"], "--mask_mode", 2),
    (["--data_dir", "{photos}", "--mask_dir", "{tmp}/nope"], "--mask_dir", 1),
    (["--data_dir", "{photos}", "--method", "paint"], "--method", 2),
    (["--data_dir", "{photos}", "--max_images", "0", "--method", "ns"], "--max_images", 2),
    (["--data_dir", "{photos}", "--seed", "-1", "--method", "ns"], "--seed", 2),
    (["--data_dir", "{photos}", "--method", "ns", "stray"], "unexpected arguments: stray", 2),
])
@pytest.mark.slow
def test_bad_arguments_give_one_error_line(args, match, status, photos, tmp_path):
  out = tmp_path / "out"
  args = [a.format(tmp=tmp_path, photos=photos) for a in args]
  assert_error(run_eval(*args, "--output_dir", out), match, out, status=status)


@pytest.mark.slow
def test_missing_output_dir_flag(photos):
  assert_error(run_eval("--data_dir", photos, "--method", "ns"), "--output_dir is required",
               status=2)


@pytest.mark.slow
def test_unreadable_checkpoint(photos, tmp_path):
  checkpoint = tmp_path / "ckpt"
  checkpoint.mkdir()
  (checkpoint / "model.json").write_text("{not json")
  assert_error(run_eval("--data_dir", photos, "--checkpoint_dir", checkpoint,
                        "--output_dir", tmp_path / "out"), "model.json", tmp_path / "out")


@pytest.mark.slow
def test_only_bad_photos(tmp_path):
  data = tmp_path / "data"
  data.mkdir()
  (data / "a.png").write_bytes(b"not a png")
  proc = run_eval("--data_dir", data, "--method", "telea", "--output_dir", tmp_path / "out")
  assert_error(proc, "no image could be evaluated", tmp_path / "out")
