r"""Score inpainting on a folder of photos: a DeepFill checkpoint and/or OpenCV's classical methods.

  python evaluate.py --data_dir photos/ --output_dir eval/ [--checkpoint_dir checkpoints/demo]
      [--mask_mode box|free_form|both] [--seed 0] [--compare telea,ns] [--max_side 512]
  python evaluate.py --data_dir photos/ --mask_dir masks/ --method telea --output_dir eval/

Every photo is its own ground truth: a hole is cut, the method fills it, and the
result is compared with the photo. Holes come from ``--mask_dir`` (paired by file
stem like ``test.py``; white = hole) or are generated from ``--seed`` by
``model/evaluation/masks.py`` (box = v1 training hole, free_form = v2 brush strokes;
``both`` gives two result groups; the mask of a photo depends only on the seed,
the mode, the photo's size and its index in the sorted file list of
``--data_dir``, so adding files changes the masks of later ones: keep the
written masks to freeze a mask set). Photos whose long side exceeds ``--max_side``
are first downscaled (cv2.INTER_AREA) so the long side equals it; metrics are
computed at that size. Metric definitions: ``model/evaluation/metrics.py``.

Outputs in ``--output_dir``: ``results.csv`` (one row per image x mask mode x
method, then one ``(mean)`` row per mask mode x method), ``results.json`` (the
same plus settings, definitions and skipped files), ``grids/<stem>_<mode>.png``
(input with hole | first method | other methods | truth) and, for generated
masks, ``masks/<mode>/<stem>.png`` (reusable with ``--mask_dir`` and the same
``--max_side``). A table goes to stdout, progress to stderr. Bad arguments, a
missing folder, no images or an unusable checkpoint print one ``error:`` line
and exit 1. An unreadable photo or mask is skipped with a warning and counted
(exit status 0 as long as one photo was evaluated).
"""
import csv
import io
import json
import os
import time

import cv2
import numpy as np
from absl import app
from absl import flags

import cli

# These are NumPy/OpenCV only; TensorFlow is imported lazily, for --method model.
from model.evaluation import masks as eval_masks
from model.fileio import decode
from model.fileio import encode
from model.fileio import paths
from model.fileio.atomic import atomic_write
from model.evaluation import metrics
from model.errors import UserError

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.abspath(__file__))
METHODS = ("model", "telea", "ns")
LABELS = {"model": "ours", "telea": "Telea", "ns": "Navier-Stokes"}
MIN_SIDE = 16  # SSIM needs an 11x11 window; smaller photos are skipped

flags.DEFINE_string("data_dir", None, "Folder of photos (ground truth); not recursive.")
flags.DEFINE_string("mask_dir", None, "Folder of fixed masks paired by stem (a.png or a_mask.png "
                    "for a.jpg; or one mask file for every photo), white = hole, at the photo's "
                    "size or its --max_side size. Default: masks generated from --seed.")
flags.DEFINE_enum("mask_mode", "box", [*eval_masks.EVAL_MASK_MODES, "both"],
                  "Generated masks: v1 box, v2 free-form strokes, or both as two result groups.")
flags.DEFINE_integer("seed", 0, "Seed of the generated masks (same seed, same masks).",
                     lower_bound=0)
flags.DEFINE_enum("method", "model", list(METHODS),
                  "Method to score: the DeepFill checkpoint or cv2.inpaint (Telea / Navier-Stokes).")
flags.DEFINE_list("compare", [], "More methods scored on the same masks, e.g. telea,ns.")
flags.DEFINE_string("checkpoint_dir", os.path.join(REPO, "checkpoints", "demo"),
                    "Checkpoint for --method model (ours or an official TF1 v1 one).")
flags.DEFINE_integer("max_images", None, "Evaluate only the first N photos (sorted by name).",
                     lower_bound=1)
flags.DEFINE_integer("max_side", 512, "Downscale photos whose long side is longer (0 = never). "
                     "Keeps CPU time sane; the release was trained at 256x256.")
flags.DEFINE_integer("inpaint_radius", 3, "cv2.inpaint neighbourhood radius for telea / ns.",
                     lower_bound=1)
cli.define_max_memory_gb()
cli.define_seam_blend()
flags.DEFINE_bool("grids", True, "Write the side-by-side picture grids.")
flags.DEFINE_bool("save_masks", True, "Write the generated masks into OUT/masks/<mode>/.")
flags.DEFINE_string("output_dir", None, "Folder for results.csv, results.json, grids/ and masks/.")
flags.mark_flags_as_required(["data_dir", "output_dir"])
cli.define_verbose()

COLUMNS = ("image", "mask_mode", "method", "width", "height", "hole_pct", "l1_pct", "l2_pct",
           "psnr_hole_db", "psnr_db", "ssim", "tv_pct", "tv_hole_pct", "truth_tv_pct",
           "truth_tv_hole_pct", "seconds")
MEAN_COLUMNS = COLUMNS[5:]
# (header, column, format) of the stdout table.
TABLE = (("images", "images", "{:d}"), ("hole%", "hole_pct", "{:.1f}"), ("l1%", "l1_pct", "{:.2f}"),
         ("l2%", "l2_pct", "{:.2f}"), ("PSNR_hole", "psnr_hole_db", "{:.2f}"),
         ("PSNR", "psnr_db", "{:.2f}"), ("SSIM", "ssim", "{:.4f}"), ("TV%", "tv_pct", "{:.2f}"),
         ("TV_hole%", "tv_hole_pct", "{:.2f}"), ("s/img", "seconds", "{:.2f}"))
DEFINITIONS = {
    "scale": "pixels compared on [0, 1] (uint8 / 255), every channel of every pixel is a sample",
    "hole_pct": "share of pixels in the hole, %",
    "l1_pct": "mean |output - truth| over the hole samples, % of the range",
    "l2_pct": "mean (output - truth)^2 over the hole samples, % (x 100)",
    "psnr_hole_db": "10 log10(1 / MSE) with the MSE over the hole samples (MSE floored at 1e-10)",
    "psnr_db": "10 log10(1 / MSE) with the MSE over the whole image (MSE floored at 1e-10)",
    "ssim": "Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, valid "
            "region, mean SSIM map, averaged over R, G, B; whole image",
    "tv_pct": "total variation of the completed image: mean |difference| of all horizontal and "
              "vertical neighbour pairs (all channels), %; the paper's TV definition is unverified "
              "(ARCHITECTURE.md §8)",
    "tv_hole_pct": "the same over the neighbour pairs with at least one pixel in the hole",
    "truth_tv_pct": "tv_pct of the ground truth (reference)",
    "truth_tv_hole_pct": "tv_hole_pct of the ground truth (reference)",
    "seconds": "wall time of the method on that image (model: after a warm-up run)",
    "mean": "(mean) rows average the per-image values (PSNR averaged in dB)",
    "masks": "generated by model/evaluation/masks.py from (seed, mode, index of the photo in the "
             "sorted file list of data_dir, size); 'fixed' = read from mask_dir",
}

_fail = cli.CONSOLE.fail
_warn = cli.CONSOLE.warn


def _progress(i, n, name, start):
  elapsed = time.monotonic() - start
  left = f", ~{elapsed / (i - 1) * (n - i + 1):.0f}s left" if i > 1 else ""
  cli.CONSOLE.progress(f"[{i}/{n}] {name} ({elapsed:.0f}s{left})")


def _methods():
  names = [FLAGS.method]
  for name in FLAGS.compare:
    name = name.strip().lower()
    if name not in METHODS:
      raise UserError(f"--compare: unknown method {name!r}; choose from {', '.join(METHODS)}")
    if name not in names:
      names.append(name)
  return names


def _check_flags():
  if FLAGS.mask_dir and FLAGS["mask_mode"].present:
    raise UserError("--mask_mode chooses generated masks; it cannot be used with --mask_dir")
  if FLAGS.max_side != 0 and FLAGS.max_side < MIN_SIDE:
    raise UserError(f"--max_side must be 0 (no downscaling) or >= {MIN_SIDE}, got {FLAGS.max_side}")
  out = FLAGS.output_dir
  if os.path.exists(out) and not os.path.isdir(out):
    raise UserError(f"--output_dir {out} exists and is not a folder")
  if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
    raise UserError(f"--output_dir {out}: parent folder does not exist")


class Runner:
  """Fills the hole of one photo with one method; the model is loaded once, up front."""

  def __init__(self, names, checkpoint_dir, radius, max_memory_gb, verbose=False,
               seam_blend=True):
    self.radius = radius
    self.inpainter = None
    if "model" in names:
      if not os.path.exists(checkpoint_dir):
        raise UserError(f"checkpoint directory not found: {checkpoint_dir}")
      cli.import_tensorflow(verbose)
      from model.inference import inpainter as inpaint  # heavy import (TensorFlow) only when needed
      self.inpainter = inpaint.Inpainter.from_checkpoint(checkpoint_dir, max_memory_gb,
                                                         seam_blend=seam_blend)
      hole = np.zeros((64, 64), bool)
      hole[16:48, 16:48] = True
      self.inpainter.inpaint(np.zeros((64, 64, 3), np.uint8), hole)  # trace once, off the clock

  def run(self, name, rgb, hole):
    """uint8 RGB result; the method only sees ``rgb`` with the hole blacked out."""
    given = np.where(hole[..., None], np.uint8(0), rgb)
    if name == "model":
      return self.inpainter.inpaint(given, hole)[0]
    flag = cv2.INPAINT_TELEA if name == "telea" else cv2.INPAINT_NS
    bgr = cv2.inpaint(cv2.cvtColor(given, cv2.COLOR_RGB2BGR), hole.astype(np.uint8) * 255,
                      float(self.radius), flag)
    return np.where(hole[..., None], cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), rgb)


def eval_size(height, width, max_side):
  """(height, width) after scaling the long side down to ``max_side`` (0 = unchanged)."""
  if not max_side or max(height, width) <= max_side:
    return height, width
  scale = max_side / max(height, width)
  return max(1, round(height * scale)), max(1, round(width * scale))


def load_sample(image_path, mask_path, max_side):
  """The photo at evaluation size and its fixed hole (None without a mask file).

  A mask at the photo's full size is downscaled with it; a downscaled pixel is a
  hole when any source pixel under it is (cv2.INTER_AREA coverage > 0).
  """
  rgb, _ = decode.read_image(image_path)
  h, w = rgb.shape[:2]
  size = eval_size(h, w, max_side)
  if min(size) < MIN_SIDE:
    raise UserError(f"{image_path}: {size[1]}x{size[0]} is too small to evaluate "
                    f"(SSIM needs at least {MIN_SIDE} px per side)")
  if size != (h, w):
    rgb = cv2.resize(rgb, size[::-1], interpolation=cv2.INTER_AREA)
  if mask_path is None:
    return rgb, None
  hole = decode.read_mask(mask_path)
  if hole.shape == (h, w) and size != (h, w):
    hole = cv2.resize(hole.astype(np.float32), size[::-1], interpolation=cv2.INTER_AREA) > 0
  elif hole.shape != size:
    raise UserError(f"{mask_path}: mask is {hole.shape[1]}x{hole.shape[0]} but the image is "
                    f"{w}x{h} ({size[1]}x{size[0]} after --max_side)")
  if not hole.any():
    raise UserError(f"{mask_path}: mask has no hole (no pixel > 127)")
  return rgb, hole


def grid_picture(panels):
  """Labelled panels side by side: [(label, uint8 RGB [H, W, 3])] -> uint8 RGB."""
  font, strip, gap = cv2.FONT_HERSHEY_SIMPLEX, 20, 4
  columns = []
  for label, image in panels:
    h, w = image.shape[:2]
    header = np.zeros((strip, w, 3), np.uint8)
    scale = 0.45
    while scale > 0.2 and cv2.getTextSize(label, font, scale, 1)[0][0] > w - 4:
      scale -= 0.05
    cv2.putText(header, label, (3, strip - 6), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    columns.append(np.concatenate([header, image], axis=0))
    columns.append(np.full((h + strip, gap, 3), 255, np.uint8))
  return np.concatenate(columns[:-1], axis=1)


def _unique_stems(paths):
  stems, seen = [], set()
  for path in paths:
    base = os.path.basename(path)
    stem = os.path.splitext(base)[0]
    if stem in seen:
      stem = base.replace(".", "_")
    seen.add(stem)
    stems.append(stem)
  return stems


def summarize(rows, modes, methods):
  """One mean row per (mask mode, method) present in ``rows``, in that order."""
  means = []
  for mode in modes:
    for method in methods:
      group = [r for r in rows if r["mask_mode"] == mode and r["method"] == method]
      if group:
        mean = {c: sum(r[c] for r in group) / len(group) for c in MEAN_COLUMNS}
        means.append({"image": "(mean)", "mask_mode": mode, "method": method,
                      "images": len(group), **mean})
  return means


def format_table(means):
  """The stdout table: one line per mask mode x method, plus the truth's TV per mask mode."""
  header = ["mask_mode", "method"] + [h for h, _, _ in TABLE]
  lines, last_mode = [], None
  for row in means + [None]:
    mode = row["mask_mode"] if row else None
    if last_mode is not None and mode != last_mode:
      ref = next(r for r in means if r["mask_mode"] == last_mode)
      cells = {"tv_pct": ref["truth_tv_pct"], "tv_hole_pct": ref["truth_tv_hole_pct"]}
      lines.append([last_mode, "(truth)"] + [f.format(cells[c]) if c in cells else "-"
                                             for _, c, f in TABLE])
    if row:
      lines.append([mode, row["method"]] + [f.format(row[c]) for _, c, f in TABLE])
    last_mode = mode
  widths = [max(len(x[i]) for x in [header] + lines) for i in range(len(header))]
  render = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
  return "\n".join([render(header)] + [render(x) for x in lines])


def _csv_text(rows):
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
  writer.writeheader()
  for row in rows:
    writer.writerow({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()})
  return buffer.getvalue()


def evaluate(jobs, modes, methods, runner, out_dir):
  """Scores every (index, image, mask) job; returns (per-image rows, skipped, grids written)."""
  grey = decode.ImageInfo(path="", mode="grey")
  rows, skipped, grids = [], [], 0
  stems = _unique_stems([path for _, path, _ in jobs])
  start = time.monotonic()
  for n, ((index, path, mask_path), stem) in enumerate(zip(jobs, stems), 1):
    name = os.path.basename(path)
    _progress(n, len(jobs), name, start)
    try:
      rgb, fixed = load_sample(path, mask_path, FLAGS.max_side)
    except UserError as e:
      _warn(f"skipped: {e}")
      skipped.append({"image": path, "reason": str(e)})
      continue
    h, w = rgb.shape[:2]
    for mode in modes:
      if fixed is not None:
        hole = fixed
      else:
        hole = eval_masks.eval_mask(mode, h, w, FLAGS.seed, index)
        if FLAGS.save_masks:
          os.makedirs(os.path.join(out_dir, "masks", mode), exist_ok=True)
          encode.write_image(os.path.join(out_dir, "masks", mode, stem + ".png"),
                               np.repeat(hole[..., None].astype(np.uint8) * 255, 3, 2), grey)
      truth_tv = (metrics.total_variation(rgb), metrics.total_variation(rgb, hole))
      panels = [("input", np.where(hole[..., None], np.uint8(255), rgb))]
      for method in methods:
        t0 = time.monotonic()
        result = runner.run(method, rgb, hole)
        seconds = time.monotonic() - t0
        m = metrics.image_metrics(result, rgb, hole)
        rows.append({
            "image": name, "mask_mode": mode, "method": method, "width": w, "height": h,
            "hole_pct": 100 * m["hole_fraction"], "l1_pct": 100 * m["l1"], "l2_pct": 100 * m["l2"],
            "psnr_hole_db": m["psnr_hole"], "psnr_db": m["psnr"], "ssim": m["ssim"],
            "tv_pct": 100 * m["tv"], "tv_hole_pct": 100 * m["tv_hole"],
            "truth_tv_pct": 100 * truth_tv[0], "truth_tv_hole_pct": 100 * truth_tv[1],
            "seconds": seconds})
        panels.append((LABELS[method], result))
      if FLAGS.grids:
        panels.append(("truth", rgb))
        os.makedirs(os.path.join(out_dir, "grids"), exist_ok=True)
        encode.write_image(os.path.join(out_dir, "grids", f"{stem}_{mode}.png"),
                             grid_picture(panels))
        grids += 1
  cli.CONSOLE.end_progress()
  return rows, skipped, grids


def _main():
  _check_flags()
  methods = _methods()
  if FLAGS.mask_dir:
    if not os.path.exists(FLAGS.mask_dir):
      raise UserError(f"--mask_dir {FLAGS.mask_dir}: no such folder")
    pairs, unpaired = paths.pair_by_stem(FLAGS.data_dir, FLAGS.mask_dir)
    modes = ["fixed"]
  else:
    pairs, unpaired = [(p, None) for p in paths.list_images(FLAGS.data_dir)], []
    modes = list(eval_masks.EVAL_MASK_MODES) if FLAGS.mask_mode == "both" else [FLAGS.mask_mode]
  jobs = [(i, image, mask) for i, (image, mask) in enumerate(pairs)][:FLAGS.max_images]
  if not jobs:
    where = f" with a mask in {FLAGS.mask_dir}" if FLAGS.mask_dir else ""
    raise UserError(f"no images{where} in {FLAGS.data_dir} "
                    f"(looked for {', '.join(paths.IMAGE_EXTENSIONS)})")
  skipped = [{"image": p, "reason": "no mask with the same stem"} for p in unpaired]
  for item in skipped:
    _warn(f"skipped: {item['image']}: {item['reason']}")
  runner = Runner(methods, FLAGS.checkpoint_dir, FLAGS.inpaint_radius, FLAGS.max_memory_gb,
                  FLAGS.verbose, FLAGS.seam_blend)
  out = FLAGS.output_dir
  try:
    os.makedirs(out, exist_ok=True)
  except OSError as e:
    raise UserError(f"--output_dir {out}: cannot create ({e.strerror or e})") from None
  rows, bad, grids = evaluate(jobs, modes, methods, runner, out)
  skipped += bad
  if not rows:
    raise UserError(f"no image could be evaluated ({len(skipped)} skipped)")
  means = summarize(rows, modes, methods)
  settings = {
      "data_dir": os.path.abspath(FLAGS.data_dir),
      "mask_dir": os.path.abspath(FLAGS.mask_dir) if FLAGS.mask_dir else None,
      "mask_modes": modes, "seed": None if FLAGS.mask_dir else FLAGS.seed,
      "methods": methods, "max_side": FLAGS.max_side, "max_images": FLAGS.max_images,
      "inpaint_radius": FLAGS.inpaint_radius,
      "checkpoint_dir": os.path.abspath(FLAGS.checkpoint_dir) if "model" in methods else None}
  report = {"settings": settings, "definitions": DEFINITIONS,
            "counts": {"images": len(jobs) + len(unpaired),
                       "evaluated": len({r["image"] for r in rows}), "skipped": len(skipped)},
            "summary": means, "images": rows, "skipped": skipped}
  atomic_write(os.path.join(out, "results.csv"), _csv_text(rows + means))
  atomic_write(os.path.join(out, "results.json"), json.dumps(report, indent=1) + "\n")
  print(format_table(means))
  if skipped:
    _warn(f"{len(skipped)} of {len(jobs) + len(unpaired)} images skipped (see results.json)")
  print(f"wrote {os.path.join(out, 'results.csv')}, results.json and {grids} grids")
  return 0


def main(argv):
  return cli.guarded(_main, argv=argv)

if __name__ == "__main__":
  app.run(main, flags_parser=cli.one_line_flag_parser(FLAGS))
