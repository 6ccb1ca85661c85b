"""End-to-end tests of the inpainting CLI (`python test.py`) on real photos.

Every run is a real subprocess. Runs that load a model cost seconds (TensorFlow import + model),
so the success cases share a few runs: one folder-mode run covers odd sizes, grey, RGBA, a JPEG
mask, an all-black mask, an unpaired image and a bad file; one uses a single mask for a folder;
one single-image run uses the golden official TF1 checkpoint. Bad inputs are detected before
TensorFlow is imported, so those runs are cheap (~0.3 s) and get one run each.

Contract under test (docs/CLI.md, "Errors, outputs and inputs"): a failure exits non-zero with
exactly one stderr line `error: ...` (never a traceback) and leaves no output file behind.
"""
import os
import re
import shutil

import cv2
import numpy as np
import pytest

from conftest import GOLDEN, require_shared
from support import hostile_files as hostile
from support import procs
from support.pictures import example as _example, read_pixels as _read
from support.checkpoints import write_tiny_checkpoint
from support.hostile_files import png_with_header

pytestmark = pytest.mark.slow  # every test runs python test.py

# Progress updates: stderr is not a terminal here, so each is a plain "[i/n] name..." line.
_PROGRESS = re.compile(r"^\[\d+/\d+\] [^\r\n\x1b]*(\n|$)", re.M)




def _write(path, pixels, params=()):
  assert cv2.imwrite(str(path), pixels, list(params)), f"cannot write {path}"
  return str(path)




def run_cli(*args, cwd):
  """`python test.py ARGS` to its end, TensorFlow logging left at the CLI's own default."""
  return procs.run("test.py", *args, cwd=cwd)


def stderr_lines(proc):
  """Non-empty stderr lines with the progress lines removed."""
  text = _PROGRESS.sub("", proc.stderr)
  return [line for line in text.split("\n") if line.strip()]


def _no_temp_files(directory):
  if os.path.isdir(directory):
    leftovers = [n for n in os.listdir(directory) if n.endswith(".tmp")]
    assert not leftovers, f"temporary files left in {directory}: {leftovers}"


def assert_failed(proc, *absent, match=None, warnings=0):
  """Non-zero exit, exactly one `error:` line (after `warnings` warning lines), no traceback,
  and none of `absent` written."""
  report = f"rc={proc.returncode}\nstdout={proc.stdout!r}\nstderr={proc.stderr!r}"
  assert proc.returncode != 0, report
  assert "Traceback" not in proc.stderr, report
  lines = stderr_lines(proc)
  assert len(lines) == warnings + 1, report
  assert all(line.startswith("warning: ") for line in lines[:-1]), report
  assert lines[-1].startswith("error: "), report
  if match is not None:
    assert re.search(match, lines[-1]), report
  assert "wrote" not in proc.stdout, report
  for path in absent:
    assert not os.path.lexists(path), f"{path} exists after a failure\n{report}"
    _no_temp_files(os.path.dirname(os.path.abspath(path)))
  return lines[-1]


def assert_succeeded(proc):
  """Exit 0, no traceback, and every stderr line is a warning; returns the warnings."""
  report = f"rc={proc.returncode}\nstdout={proc.stdout!r}\nstderr={proc.stderr!r}"
  assert proc.returncode == 0, report
  assert "Traceback" not in proc.stderr, report
  lines = stderr_lines(proc)
  assert all(line.startswith("warning: ") for line in lines), report
  return lines


def _hole(mask_path):
  """The CLI's rule: hole where the brightest channel is > 127."""
  mask = _read(mask_path)
  return (mask if mask.ndim == 2 else mask[..., :3].max(axis=2)) > 127


def _assert_inpainted(out, src, hole):
  """Same shape/channels, known pixels bit-exact, and the model wrote something into the hole."""
  assert out.shape == src.shape and out.dtype == np.uint8
  assert np.array_equal(out[~hole], src[~hole])
  assert hole.any() and not np.array_equal(out[hole], src[hole])


# ---------------------------------------------------------------------------------------------
# Checkpoints


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
  """One of our checkpoints with a tiny random generator (cnum=4): fast to load and run."""
  return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ckpt"))


# ---------------------------------------------------------------------------------------------
# Folder mode: one run covering many kinds of input.


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, tiny_checkpoint):
  """`--image DIR --mask DIR --output DIR` over odd-size, grey, RGBA, JPEG-mask, all-black,
  unpaired and bad inputs; masks are paired by stem (`<stem>.ext` and `<stem>_mask.ext`)."""
  root = tmp_path_factory.mktemp("folder")
  images, masks, out = root / "images", root / "masks", root / "out"
  images.mkdir()
  masks.mkdir()
  china, china_mask = _read(_example("sklearn_china.png")), _read(_example("sklearn_china_mask.png"))
  flower = _read(_example("sklearn_flower.png"))
  flower_mask = _read(_example("sklearn_flower_mask.png"))
  lomiri = _read(_example("lomiri_picture_0b_by_freespace.png"))
  lomiri_mask = _read(_example("lomiri_picture_0b_by_freespace_mask.png"))

  # Odd size: 301 x 203 (width x height), neither a multiple of 8; mask paired as <stem>.png.
  rows, cols = slice(5, 5 + 203), slice(3, 3 + 301)
  odd, odd_mask = china[rows, cols], china_mask[rows, cols]
  assert odd.shape[:2] == (203, 301) and (odd_mask > 127).any() and not (odd_mask > 127).all()
  _write(images / "odd.png", odd)
  _write(masks / "odd.png", odd_mask)
  # Grey source: must come back single-channel; mask paired as <stem>_mask.png.
  _write(images / "grey.png", cv2.cvtColor(flower, cv2.COLOR_BGR2GRAY))
  _write(masks / "grey_mask.png", flower_mask)
  # RGBA with a varied alpha (including fully transparent pixels): alpha must be kept.
  h, w = lomiri.shape[:2]
  alpha = (np.add.outer(np.arange(h), np.arange(w)) * 255 // (h + w - 2)).astype(np.uint8)
  alpha[:20, :20] = 0
  _write(images / "rgba.png", np.dstack([lomiri, alpha]))
  _write(masks / "rgba.png", lomiri_mask)
  # JPEG mask (quality 70): compression noise around the strokes must be tolerated.
  _write(images / "jpegmask.png", china)
  jpeg_mask = _write(masks / "jpegmask_mask.jpg", china_mask, [cv2.IMWRITE_JPEG_QUALITY, 70])
  noisy = _read(jpeg_mask)
  assert ((noisy > 0) & (noisy < 255)).any(), "the JPEG mask should have compression noise"
  # All-black mask: the input comes back unchanged, with a warning.
  _write(images / "black.png", flower)
  _write(masks / "black.png", np.zeros(flower.shape[:2], np.uint8))
  # No mask at all: skipped with a warning.
  _write(images / "unpaired.png", china[:64, :64])
  # A text file named .png, with a mask: reported, the others are still written.
  (images / "bad.png").write_text("this is not a PNG\n")
  _write(masks / "bad.png", china_mask)

  proc = run_cli("--image", images, "--mask", masks, "--output", out,
                 "--checkpoint_dir", tiny_checkpoint, cwd=root)
  return {"proc": proc, "images": images, "masks": masks, "out": out}


def test_folder_exit_status_and_messages(folder_run):
  proc, images = folder_run["proc"], folder_run["images"]
  report = f"rc={proc.returncode}\nstdout={proc.stdout!r}\nstderr={proc.stderr!r}"
  assert proc.returncode == 1, report
  assert "Traceback" not in proc.stderr, report
  lines = stderr_lines(proc)
  assert all(line.startswith(("error: ", "warning: ")) for line in lines), report
  errors = [line for line in lines if line.startswith("error: ")]
  warnings = [line for line in lines if line.startswith("warning: ")]
  assert len(errors) == 2, report
  assert str(images / "bad.png") in errors[0] and "not an image" in errors[0], report
  assert errors[1] == "error: 1 of 6 images failed", report
  assert lines[-1] == errors[1], "the summary comes last"
  assert len(warnings) == 2, report
  assert any("no mask for" in w and str(images / "unpaired.png") in w for w in warnings), report
  assert any("no hole" in w and "black.png" in w for w in warnings), report


def test_folder_bad_and_unpaired_files_are_not_written(folder_run):
  out = folder_run["out"]
  assert sorted(os.listdir(out)) == ["black.png", "grey.png", "jpegmask.png", "odd.png",
                                     "rgba.png"]


def test_folder_odd_size_keeps_size_and_known_pixels(folder_run):
  src = _read(folder_run["images"] / "odd.png")
  out = _read(folder_run["out"] / "odd.png")
  assert out.shape == (203, 301, 3)
  _assert_inpainted(out, src, _hole(folder_run["masks"] / "odd.png"))


def test_folder_grey_stays_single_channel(folder_run):
  src = _read(folder_run["images"] / "grey.png")
  out = _read(folder_run["out"] / "grey.png")
  assert src.ndim == 2 and out.ndim == 2
  _assert_inpainted(out, src, _hole(folder_run["masks"] / "grey_mask.png"))


def test_folder_rgba_keeps_alpha_and_known_rgb(folder_run):
  src = _read(folder_run["images"] / "rgba.png")
  out = _read(folder_run["out"] / "rgba.png")
  assert src.shape[2] == 4 and out.shape == src.shape
  assert np.array_equal(out[..., 3], src[..., 3])
  _assert_inpainted(out[..., :3], src[..., :3], _hole(folder_run["masks"] / "rgba.png"))


def test_folder_jpeg_mask_with_compression_noise(folder_run):
  src = _read(folder_run["images"] / "jpegmask.png")
  out = _read(folder_run["out"] / "jpegmask.png")
  noisy_hole = _hole(folder_run["masks"] / "jpegmask_mask.jpg")
  clean_hole = _hole(_example("sklearn_china_mask.png"))
  # Thresholding at 127 removes the noise: the hole is the clean one up to a thin edge.
  assert (noisy_hole != clean_hole).mean() < 0.005
  _assert_inpainted(out, src, noisy_hole)


def test_folder_all_black_mask_returns_input(folder_run):
  src = _read(folder_run["images"] / "black.png")
  out = _read(folder_run["out"] / "black.png")
  assert np.array_equal(out, src)


def test_folder_one_mask_for_all(tmp_path, tiny_checkpoint):
  """`--mask FILE` in folder mode: the one mask serves every image (and is not an image itself)."""
  images = tmp_path / "images"
  images.mkdir()
  shutil.copy(_example("sklearn_china.png"), images / "china.png")
  shutil.copy(_example("sklearn_flower.png"), images / "flower.png")
  mask = images / "shared_mask.png"
  shutil.copy(_example("sklearn_china_mask.png"), mask)
  out = tmp_path / "results"
  proc = run_cli("--image", images, "--mask", mask, "--output", out,
                 "--checkpoint_dir", tiny_checkpoint, cwd=tmp_path)
  assert assert_succeeded(proc) == []
  assert f"wrote 2 images to {out}" in proc.stdout
  assert sorted(os.listdir(out)) == ["china.png", "flower.png"]
  hole = _hole(mask)
  for name in ("china.png", "flower.png"):
    _assert_inpainted(_read(out / name), _read(images / name), hole)


# ---------------------------------------------------------------------------------------------
# Single image with the golden official TF1 checkpoint (auto-detected) and --flow.


def test_single_image_with_official_checkpoint_and_flow(tmp_path):
  checkpoint = require_shared(os.path.join(GOLDEN, "checkpoint"))
  lomiri = _read(_example("lomiri_picture_0b_by_freespace.png"))
  lomiri_mask = _read(_example("lomiri_picture_0b_by_freespace_mask.png"))
  rows, cols = slice(100, 100 + 203), slice(120, 120 + 301)
  image = _write(tmp_path / "photo.png", lomiri[rows, cols])
  mask = _write(tmp_path / "photo_mask.png", lomiri_mask[rows, cols])
  output, flow = tmp_path / "filled.png", tmp_path / "flow.png"
  proc = run_cli("--image", image, "--mask", mask, "--output", output, "--flow", flow,
                 "--checkpoint_dir", checkpoint, cwd=tmp_path)
  assert assert_succeeded(proc) == []
  assert f"wrote {output}" in proc.stdout
  src, out = _read(image), _read(output)
  # What is being worked on (big photos take minutes), as a progress line ended before exit.
  hole_pct = 100.0 * _hole(mask).mean()
  assert f"[1/1] photo.png: 301x203, hole {hole_pct:.1f} % of the image\n" in proc.stderr
  assert "\r" not in proc.stderr and "\x1b" not in proc.stderr  # not a terminal: plain lines
  assert out.shape == (203, 301, 3)
  _assert_inpainted(out, src, _hole(mask))
  picture = _read(flow)
  assert picture.shape == (203, 301, 3) and picture.dtype == np.uint8
  _no_temp_files(tmp_path)


def test_single_image_all_black_mask_returns_input(tmp_path, tiny_checkpoint):
  """No hole: the input is written unchanged and --flow is skipped, with warnings."""
  image = _example("sklearn_flower.png")
  mask = _write(tmp_path / "black.png", np.zeros(_read(image).shape[:2], np.uint8))
  output, flow = tmp_path / "out.png", tmp_path / "flow.png"
  proc = run_cli("--image", image, "--mask", mask, "--output", output, "--flow", flow,
                 "--checkpoint_dir", tiny_checkpoint, cwd=tmp_path)
  warnings = assert_succeeded(proc)
  assert len(warnings) == 2 and "no hole" in warnings[0] and "flow" in warnings[1], proc.stderr
  assert np.array_equal(_read(output), _read(image))
  assert not flow.exists()


@pytest.mark.parametrize("height, width", [(1, 1), (1, 10000), (7, 64)])
def test_official_compat_on_an_image_the_grid_crop_empties(tmp_path, tiny_checkpoint, height,
                                                           width):
  """Was "error: unexpected InvalidArgumentError" from inside the graph."""
  image = _write(tmp_path / "thin.png", np.full((height, width, 3), 120, np.uint8))
  mask = _write(tmp_path / "thin_mask.png", np.full((height, width), 255, np.uint8))
  output = tmp_path / "out.png"
  proc = run_cli("--image", image, "--mask", mask, "--output", output, "--official_compat",
                 "--checkpoint_dir", tiny_checkpoint, cwd=tmp_path)
  assert_failed(proc, output, match=rf"thin\.png: {width}x{height} is too small for "
                r"--official_compat: the release crops each side to a multiple of 8 pixels, "
                r"which leaves nothing$")


def test_whole_image_hole_warns_and_flow_is_named(tmp_path, tiny_checkpoint):
  """A 100 % hole has nothing to borrow from: a warning, as for an empty hole; the --flow file
  written is named on stdout."""
  image = _write(tmp_path / "photo.png", _read(_example("sklearn_flower.png"))[:64, :96])
  mask = _write(tmp_path / "all.png", np.full((64, 96), 255, np.uint8))
  output, flow = tmp_path / "out.png", tmp_path / "flow.png"
  proc = run_cli("--image", image, "--mask", mask, "--output", output, "--flow", flow,
                 "--checkpoint_dir", tiny_checkpoint, cwd=tmp_path)
  warnings = assert_succeeded(proc)
  assert warnings == [f"warning: mask {mask} covers the whole image: there is nothing to borrow "
                      "from, so the result is a flat guess"], proc.stderr
  assert proc.stdout == f"wrote {output} and the attention flow {flow}\n"
  assert output.exists() and flow.exists()


# ---------------------------------------------------------------------------------------------
# Bad inputs detected before any model is loaded (cheap runs). Each case returns
# ((arguments, paths that must not exist), regex the error line must match[, warnings]).


def _single(tmp, image=None, mask=None, output=None, extra=()):
  image = _example("sklearn_china.png") if image is None else image
  mask = _example("sklearn_china_mask.png") if mask is None else mask
  output = tmp / "out.png" if output is None else output
  return ["--image", image, "--mask", mask, "--output", output, *extra], [output]


def _case_missing_image(tmp):
  return _single(tmp, image=tmp / "nope.png"), r"nope\.png: no such image file"


def _case_missing_mask(tmp):
  return _single(tmp, mask=tmp / "nope.png"), r"nope\.png: no such mask file"


def _case_directory_as_mask(tmp):
  (tmp / "masks").mkdir()
  return _single(tmp, mask=tmp / "masks"), r"--mask must be a file"


def _case_truncated_png(tmp):
  data = open(_example("sklearn_china.png"), "rb").read()
  (tmp / "cut.png").write_bytes(data[:len(data) // 3])
  return _single(tmp, image=tmp / "cut.png"), r"cut\.png: truncated or corrupt PNG"


def _case_corrupt_png(tmp):
  data = bytearray(open(_example("sklearn_china.png"), "rb").read())
  start = data.find(b"IDAT") + 2000
  data[start:start + 100] = bytes(b ^ 0x55 for b in data[start:start + 100])
  (tmp / "corrupt.png").write_bytes(bytes(data))
  return _single(tmp, image=tmp / "corrupt.png"), r"corrupt\.png: truncated or corrupt PNG"


def _case_truncated_jpeg(tmp):
  ok, data = cv2.imencode(".jpg", _read(_example("sklearn_china.png")))
  assert ok
  data = data.tobytes()
  (tmp / "cut.jpg").write_bytes(data[:len(data) // 2])
  return _single(tmp, image=tmp / "cut.jpg"), r"cut\.jpg: truncated or corrupt JPEG"


def _case_text_named_png(tmp):
  (tmp / "notes.png").write_text("hello, I am text\n")
  return _single(tmp, image=tmp / "notes.png"), r"notes\.png: not an image"


def _case_text_mask(tmp):
  (tmp / "mask.png").write_text("hello, I am text\n")
  return _single(tmp, mask=tmp / "mask.png"), r"mask\.png: not an image"


def _case_empty_file(tmp):
  (tmp / "empty.png").write_bytes(b"")
  return _single(tmp, image=tmp / "empty.png"), r"empty\.png: the image file is empty"


def _case_zero_size_header(tmp):
  (tmp / "zero.png").write_bytes(png_with_header(0, 0))
  return _single(tmp, image=tmp / "zero.png"), r"zero\.png: not an image file .*damaged header"


def _case_absurd_header(tmp):
  (tmp / "huge.png").write_bytes(png_with_header(100000, 100000))
  return _single(tmp, image=tmp / "huge.png"), r"huge\.png: image is 100000x100000.*megapixels"


def _case_fifo(tmp):
  os.mkfifo(tmp / "pipe.png")  # opening it would block forever: must be refused unread
  return _single(tmp, image=tmp / "pipe.png"), r"pipe\.png: is not a regular file"


def _case_unreadable(tmp):
  if os.geteuid() == 0:
    pytest.skip("root reads files whatever their mode")
  path = shutil.copy(_example("sklearn_china.png"), tmp / "secret.png")
  os.chmod(path, 0)
  return _single(tmp, image=path), r"secret\.png: permission denied"


def _case_mask_size_mismatch(tmp):
  mask = _example("lomiri_picture_0b_by_freespace_mask.png")  # 512x346, the image is 512x342
  return _single(tmp, mask=mask), r"mask is 512x346 but image is 512x342"


def _case_tiff_float_strip_offsets(tmp):  # was "unexpected TypeError"
  path = tmp / "float.tif"
  path.write_bytes(hostile.tiff_float_strip_offsets())
  mask = _write(tmp / "mask.png", np.full((16, 16), 255, np.uint8))
  return _single(tmp, image=path, mask=mask), r"float\.tif: truncated or corrupt TIFF data"


def _case_damaged_g4_tiff(tmp):  # was accepted, with libtiff's lines on stderr
  path = tmp / "fax.tif"
  path.write_bytes(hostile.g4_tiff(damaged=True))
  mask = _write(tmp / "mask.png", np.full((64, 64), 255, np.uint8))
  return _single(tmp, image=path, mask=mask), r"fax\.tif: corrupt TIFF data \(libtiff: Fax4Decode"


def _case_jpeg_scan_bomb(tmp):  # decoding time grows with the scans
  path = tmp / "scans.jpg"
  path.write_bytes(hostile.many_scans_jpeg(5000))
  return _single(tmp, image=path), r"scans\.jpg: JPEG has more than 100 scans"


def _case_mask_size_mismatch_from_headers(tmp):  # found before the 4000x4000 decode
  path = tmp / "big.jpg"
  path.write_bytes(hostile.jpeg_header_only(4000, 4000))
  return _single(tmp, image=path), r"mask is 512x342 but image is 4000x4000"


def _case_output_dir_missing(tmp):
  return _single(tmp, output=tmp / "no" / "such" / "dir" / "out.png"), r"does not exist"


def _case_output_under_a_file(tmp):
  (tmp / "file").write_text("x")
  return _single(tmp, output=tmp / "file" / "out.png"), r"out\.png: output directory"


def _case_output_is_a_directory(tmp):
  (tmp / "out.png").mkdir()
  args, _ = _single(tmp)
  return (args, [tmp / "out.png" / "out.png"]), r"out\.png: is a directory"


def _case_unknown_output_extension(tmp):
  return _single(tmp, output=tmp / "out.xyz"), r"unsupported output extension \.xyz"


def _case_no_output_extension(tmp):
  return _single(tmp, output=tmp / "out"), r"unsupported output extension \(none\)"


def _case_unknown_flow_extension(tmp):
  args, absent = _single(tmp, extra=["--flow", tmp / "flow.xyz"])
  return (args, absent + [tmp / "flow.xyz"]), r"flow\.xyz: unsupported output extension"


def _case_missing_image_flag(tmp):
  return (["--mask", _example("sklearn_china_mask.png"), "--output", tmp / "out.png"],
          [tmp / "out.png"]), r"--image is required"


def _case_unexpected_positional_args(tmp):
  args, absent = _single(tmp, extra=["extra.png", "more"])
  return (args, absent), r"unexpected arguments: extra\.png more"


def _case_unknown_flag(tmp):
  args, absent = _single(tmp, extra=["--nonexistent_flag"])
  return (args, absent), r"nonexistent_flag"


def _case_bad_flag_value(tmp):
  args, absent = _single(tmp, extra=["--max_memory_gb", "lots"])
  return (args, absent), r"max_memory_gb"


def _case_negative_memory_budget(tmp):
  args, absent = _single(tmp, extra=["--max_memory_gb", "-1"])
  return (args, absent), r"--max_memory_gb must be a positive number"


def _case_nan_memory_budget(tmp):
  args, absent = _single(tmp, extra=["--max_memory_gb", "nan"])
  return (args, absent), r"--max_memory_gb must be a positive number"


def _case_flag_without_value(tmp):
  args, absent = _single(tmp)
  return (args + ["--output"], absent), r"--output"


def _folder(tmp):
  images = tmp / "images"
  images.mkdir()
  shutil.copy(_example("sklearn_china.png"), images / "china.png")
  return images


def _case_folder_with_flow(tmp):
  out = tmp / "results"
  return (["--image", _folder(tmp), "--mask", _example("sklearn_china_mask.png"),
           "--output", out, "--flow", tmp / "flow.png"], [out, tmp / "flow.png"]), r"--flow"


def _case_folder_output_is_a_file(tmp):
  (tmp / "taken.png").write_text("x")
  return (["--image", _folder(tmp), "--mask", _example("sklearn_china_mask.png"),
           "--output", tmp / "taken.png"], [tmp / "taken.png" / "china.png"]), \
      r"--output must be a folder"


def _case_folder_output_under_a_file(tmp):
  (tmp / "file").write_text("x")
  out = tmp / "file" / "results"
  return (["--image", _folder(tmp), "--mask", _example("sklearn_china_mask.png"),
           "--output", out], [out]), r"cannot create the output folder"


def _case_folder_missing_mask_dir(tmp):
  out = tmp / "results"
  return (["--image", _folder(tmp), "--mask", tmp / "nomasks", "--output", out], [out]), \
      r"nomasks: no such mask file or directory"


def _case_folder_nothing_paired(tmp):
  (tmp / "masks").mkdir()
  out = tmp / "results"
  return (["--image", _folder(tmp), "--mask", tmp / "masks", "--output", out], [out]), \
      r"no image in .* has a matching mask", 1  # plus "warning: no mask for .../china.png"


_CASES = {name[len("_case_"):]: func for name, func in sorted(globals().items())
          if name.startswith("_case_")}


@pytest.mark.parametrize("case", sorted(_CASES))
def test_bad_input_fails_with_one_error_line(case, tmp_path):
  (args, absent), match, *warnings = _CASES[case](tmp_path)
  # A missing checkpoint would also fail: the input must be rejected before the model is loaded.
  proc = run_cli("--checkpoint_dir", tmp_path / "no_checkpoint", *args, cwd=tmp_path)
  line = assert_failed(proc, *absent, match=match, warnings=sum(warnings))
  assert "checkpoint" not in line


# ---------------------------------------------------------------------------------------------
# An output never replaces an input of the same run (image, mask, checkpoint), however spelled.


def _inputs_copy(tmp):
  """photo.png + mask.png in tmp/in, a checkpoint folder tmp/ckpt with a picture in it."""
  folder = tmp / "in"
  folder.mkdir()
  shutil.copy(_example("sklearn_flower.png"), folder / "photo.png")
  shutil.copy(_example("sklearn_flower_mask.png"), folder / "mask.png")
  (tmp / "ckpt").mkdir()
  shutil.copy(_example("sklearn_flower.png"), tmp / "ckpt" / "curve.png")
  (tmp / "ckpt" / "model.json").write_text("{}")
  return folder


def _protect_same_spelling(tmp, folder):
  return ["--image", folder / "photo.png", "--mask", folder / "mask.png",
          "--output", folder / "photo.png"]


def _protect_relative_spelling(tmp, folder):  # run from tmp: in/../in/photo.png
  return ["--image", folder / "photo.png", "--mask", folder / "mask.png",
          "--output", os.path.join("in", "..", "in", "photo.png")]


def _protect_symlink(tmp, folder):
  os.symlink(folder / "photo.png", tmp / "link.png")
  return ["--image", folder / "photo.png", "--mask", folder / "mask.png",
          "--output", tmp / "link.png"]


def _protect_symlinked_folder(tmp, folder):
  os.symlink(folder, tmp / "alias")
  return ["--image", folder / "photo.png", "--mask", folder / "mask.png",
          "--output", tmp / "alias" / "photo.png"]


def _protect_hard_link(tmp, folder):
  os.link(folder / "photo.png", tmp / "hard.png")
  return ["--image", tmp / "hard.png", "--mask", folder / "mask.png",
          "--output", folder / "photo.png"]


def _protect_mask(tmp, folder):
  return ["--image", folder / "photo.png", "--mask", folder / "mask.png",
          "--output", folder / "mask.png"]


def _protect_image_from_flow(tmp, folder):
  return ["--image", folder / "photo.png", "--mask", folder / "mask.png",
          "--output", tmp / "out.png", "--flow", folder / "photo.png"]


def _protect_checkpoint(tmp, folder):
  return ["--image", folder / "photo.png", "--mask", folder / "mask.png",
          "--output", tmp / "ckpt" / "curve.png", "--checkpoint_dir", tmp / "ckpt"]


def _protect_folder_is_image_folder(tmp, folder):
  (folder / "mask.png").rename(folder / "photo_mask.png")
  return ["--image", folder, "--mask", folder, "--output", folder]


def _protect_folder_through_symlink(tmp, folder):
  os.symlink(folder, tmp / "alias")
  return ["--image", folder, "--mask", folder / "mask.png", "--output", tmp / "alias"]


def _protect_folder_replaces_a_mask(tmp, folder):
  masks = tmp / "masks"
  masks.mkdir()
  (folder / "mask.png").rename(masks / "photo.png")  # the mask of photo.png, by stem
  return ["--image", folder, "--mask", masks, "--output", masks]


_PROTECT = {name[len("_protect_"):]: func for name, func in sorted(globals().items())
            if name.startswith("_protect_")}


@pytest.mark.parametrize("case", sorted(_PROTECT))
def test_output_never_replaces_an_input(case, tmp_path):
  folder = _inputs_copy(tmp_path)
  args = _PROTECT[case](tmp_path, folder)
  before = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
  if "--checkpoint_dir" not in args:
    args += ["--checkpoint_dir", tmp_path / "no_checkpoint"]
  proc = run_cli(*args, cwd=tmp_path)
  assert_failed(proc, match=r"would replace .*, an input of this run", warnings=0)
  after = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
  assert after == before  # nothing written, nothing replaced


def test_flow_and_output_must_differ(tmp_path):
  folder = _inputs_copy(tmp_path)
  proc = run_cli("--image", folder / "photo.png", "--mask", folder / "mask.png",
                 "--output", tmp_path / "out.png", "--flow", tmp_path / "." / "out.png",
                 "--checkpoint_dir", tmp_path / "no_checkpoint", cwd=tmp_path)
  assert_failed(proc, tmp_path / "out.png", match=r"--flow and --output name the same file")


def test_transparency_into_jpeg_is_refused_before_the_model_runs(tmp_path):
  rgba = np.dstack([_read(_example("sklearn_flower.png"))[:64, :96],
                   np.full((64, 96), 255, np.uint8)])
  rgba[:8, :8, 3] = 0
  image = _write(tmp_path / "rgba.png", rgba)
  mask = _write(tmp_path / "mask.png", np.full((64, 96), 255, np.uint8))
  # With a missing checkpoint, the model would fail to load: the JPEG check must come first.
  proc = run_cli("--image", image, "--mask", mask, "--output", tmp_path / "out.jpg",
                 "--checkpoint_dir", tmp_path / "no_checkpoint", cwd=tmp_path)
  assert_failed(proc, tmp_path / "out.jpg", match=r"JPEG cannot keep the transparency")


# ---------------------------------------------------------------------------------------------
# Bad checkpoints (the model is loaded after the inputs were read, so these import TensorFlow).


def _garbage_checkpoint(directory):
  rng = np.random.default_rng(0)
  directory.mkdir()
  (directory / "checkpoint").write_text('model_checkpoint_path: "snap-0"\n')
  (directory / "snap-0.index").write_bytes(rng.bytes(3000))
  (directory / "snap-0.data-00000-of-00001").write_bytes(rng.bytes(3000))
  (directory / "notes.txt").write_text("not a checkpoint\n")
  return directory


def _model_json_only(directory):
  from model import config
  directory.mkdir()
  (directory / "model.json").write_text(config.preset("v1", cnum=4).to_json())
  return directory


@pytest.mark.parametrize("kind, match", [
    ("missing", r"checkpoint directory not found"),
    ("garbage", r"snap-0\.index: checkpoint file is truncated or corrupt"),
    ("model_json_only", r"has model\.json but no checkpoint files"),
])
def test_bad_checkpoint_fails_with_one_error_line(kind, match, tmp_path):
  checkpoint = {
      "missing": lambda d: d,
      "garbage": _garbage_checkpoint,
      "model_json_only": _model_json_only,
  }[kind](tmp_path / "ckpt")
  args, absent = _single(tmp_path, extra=["--flow", tmp_path / "flow.png"])
  proc = run_cli(*args, "--checkpoint_dir", checkpoint, cwd=tmp_path)
  assert_failed(proc, *absent, tmp_path / "flow.png", match=match)
