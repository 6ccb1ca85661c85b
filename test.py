r"""Inpaint photos with a DeepFill checkpoint (ours or an official TF1 v1 one).

  python test.py --image photo.jpg --mask mask.png --output out.png [--flow flow.png]
  python test.py --image photos/ --mask masks/ --output results/

Masks: white (>127) = hole. Folder mode pairs images and masks by file stem (or
``<stem>_mask``); a single mask file serves every image. Every failure prints one
line ``error: ...`` on stderr and exits with status 1; outputs are written atomically.
"""
import os

from absl import app
from absl import flags

import cli
from model import limits
from model.config import GRID  # --official_compat crops each side to a multiple of it

FLAGS = flags.FLAGS

flags.DEFINE_string("image", None, "Input image file, or a folder of images.")
flags.DEFINE_string("mask", None, "Mask file (white = hole), or a folder of masks paired by stem.")
flags.DEFINE_string("output", None, "Output file (format from its extension), or a folder.")
flags.mark_flags_as_required(["image", "mask", "output"])
flags.DEFINE_string("flow", None, "Optional file for the attention-flow picture (single image).")
flags.DEFINE_string("checkpoint_dir", cli.DEFAULT_CHECKPOINT,
                    "Our checkpoint directory (model.json + weights) or an official TF1 "
                    "DeepFill v1 checkpoint directory.")
cli.define_max_memory_gb()
cli.define_seam_blend()
cli.define_precision()
flags.DEFINE_bool("official_compat", False,
                  "Reproduce the official test.py output exactly: crop to a multiple of 8 and "
                  "pass known pixels through the float round trip (output may be smaller).")
cli.define_max_megapixels()
cli.define_verbose()


_fail = cli.CONSOLE.fail
_warn = cli.CONSOLE.warn


class _Runner:
  """Loads the model lazily and inpaints one (image, mask) pair at a time."""

  def __init__(self, checkpoint_dir, max_memory_gb, official, verbose=False, seam_blend=None,
               strategy=None, precision=None):
    self.checkpoint_dir = checkpoint_dir
    self.seam_blend = seam_blend
    self.strategy = strategy
    self.precision = precision
    self.max_memory_gb = max_memory_gb
    self.official = official
    self.verbose = verbose
    self._inpainter = None

  def inpainter(self):
    if self._inpainter is None:
      cli.import_tensorflow(self.verbose)
      from model.inference import inpainter as inpaint  # heavy import (TensorFlow) only when needed
      self._inpainter = inpaint.Inpainter.from_checkpoint(
          self.checkpoint_dir, max_memory_gb=self.max_memory_gb, seam_blend=self.seam_blend,
          strategy=self.strategy, precision=self.precision)
    return self._inpainter

  def check_precision(self):
    """Fails (one line) before any photo is read when an asked-for ``precision`` cannot run
    on this machine; the model's own declaration is checked when it loads."""
    if self.precision not in (None, "float32"):
      cli.import_tensorflow(self.verbose)
      from model.inference import run_precision
      run_precision.resolve(self.precision)

  def checkpoint_files(self):
    """The files of the checkpoint (a directory, or a prefix of ``.index``/``.data`` files)."""
    path = self.checkpoint_dir
    if os.path.isdir(path):
      names = [os.path.join(path, n) for n in os.listdir(path)]
    else:
      folder = os.path.dirname(path) or "."
      names = [os.path.join(folder, n) for n in os.listdir(folder)
               if n.startswith(os.path.basename(path) + ".")] if os.path.isdir(folder) else []
    return [n for n in names if os.path.isfile(n)]

  def run(self, image_path, mask_path, output_path, flow_path=None, max_pixels=None, label=None):
    """Inpaints one pair; returns True when the flow picture was written too."""
    from model.errors import UserError
    from model.fileio import decode, encode, paths
    paths.check_output_path(output_path)
    if flow_path:
      paths.check_output_path(flow_path)
    rgb, info, hole = decode.read_pair(image_path, mask_path, max_pixels)
    paths.check_output_path(output_path, info)  # e.g. transparency into a JPEG: before the work
    h, w = hole.shape
    if self.official and min(h, w) < GRID:
      raise UserError(f"{image_path}: {w}x{h} is too small for --official_compat: the release "
                      f"crops each side to a multiple of {GRID} pixels, which leaves nothing")
    if label:  # big photos take minutes on a CPU: say what is being worked on
      h, w = hole.shape
      cli.CONSOLE.progress(f"{label}: {w}x{h}, hole {100.0 * hole.mean():.1f} % of the image")
    if not hole.any():
      _warn(f"mask {mask_path} has no hole (no pixel > 127); writing the input unchanged")
      result, flow = rgb, None
      if flow_path:
        _warn("no hole, so no flow picture is written")
    else:
      if hole.all():
        _warn(f"mask {mask_path} covers the whole image: there is nothing to borrow from, so "
              "the result is a flat guess")
      result, flow = self.inpainter().inpaint(
          rgb, hole, official=self.official, with_flow=bool(flow_path))
    encode.write_image(output_path, result, info)
    if flow is not None:
      encode.write_image(flow_path, flow, None)
    return flow is not None


def _run_folder(runner, image_dir, mask_arg, output_dir, max_pixels):
  from model.fileio import paths
  from model.errors import UserError
  pairs, unpaired = paths.pair_by_stem(image_dir, mask_arg)
  for path in unpaired:
    _warn(f"no mask for {path}; skipped")
  if not pairs:
    raise UserError(f"no image in {image_dir} has a matching mask in {mask_arg}")
  outputs = [os.path.join(output_dir, os.path.basename(image)) for image, _ in pairs]
  paths.check_spares_inputs(
      outputs, paths.list_images(image_dir) + [mask for _, mask in pairs]
      + runner.checkpoint_files(), "write to another --output folder")
  try:
    os.makedirs(output_dir, exist_ok=True)
  except OSError as e:
    raise UserError(f"{output_dir}: cannot create the output folder ({e.strerror or e})") from None
  failures = 0
  for i, ((image_path, mask_path), output) in enumerate(zip(pairs, outputs), 1):
    label = f"[{i}/{len(pairs)}] {os.path.basename(image_path)}"
    cli.CONSOLE.progress(label)
    try:
      runner.run(image_path, mask_path, output, max_pixels=max_pixels, label=label)
    except UserError as e:
      failures += 1
      _fail(str(e))
  cli.CONSOLE.end_progress()
  if failures:
    raise UserError(f"{failures} of {len(pairs)} images failed")
  print(f"wrote {len(pairs)} images to {output_dir}")


def _main():
  from model.errors import UserError
  runner = _Runner(FLAGS.checkpoint_dir, FLAGS.max_memory_gb, FLAGS.official_compat,
                   FLAGS.verbose, FLAGS.seam_blend, FLAGS.strategy, FLAGS.precision)
  max_pixels = limits.max_pixels(FLAGS.max_megapixels)
  runner.check_precision()
  if os.path.isdir(FLAGS.image):
    if FLAGS.flow:
      raise UserError("--flow works with a single image, not a folder")
    if os.path.exists(FLAGS.output) and not os.path.isdir(FLAGS.output):
      raise UserError(f"--image is a folder, so --output must be a folder: {FLAGS.output}")
    _run_folder(runner, FLAGS.image, FLAGS.mask, FLAGS.output, max_pixels)
  else:
    if os.path.isdir(FLAGS.mask):
      raise UserError(f"--image is a file, so --mask must be a file: {FLAGS.mask}")
    from model.fileio import paths
    outputs = [FLAGS.output] + ([FLAGS.flow] if FLAGS.flow else [])
    paths.check_spares_inputs(outputs, [FLAGS.image, FLAGS.mask] + runner.checkpoint_files(),
                                 "choose another --output or --flow")
    if FLAGS.flow and paths.same_file(FLAGS.flow, FLAGS.output):
      raise UserError(f"--flow and --output name the same file: {FLAGS.flow}")
    flow = runner.run(FLAGS.image, FLAGS.mask, FLAGS.output, FLAGS.flow, max_pixels,
                      label=f"[1/1] {os.path.basename(FLAGS.image)}")
    cli.CONSOLE.end_progress()
    print(f"wrote {FLAGS.output}" + (f" and the attention flow {FLAGS.flow}" if flow else ""))
  return 0


def main(argv):
  return cli.guarded(_main, argv=argv)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.one_line_flag_parser(FLAGS))
