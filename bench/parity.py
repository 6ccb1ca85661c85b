r"""Parity with the official release on the golden fixtures: the measured errors behind docs/PARITY.md.

  python bench/parity.py                                # prints one Markdown table per golden case
  TF_ENABLE_ONEDNN_OPTS=1 python bench/parity.py        # oneDNN's kernels forced on (or =0: off)
  python bench/parity.py --onnx                         # also: ONNX Runtime against test.py

Loads ``../shared/golden/deepfill_v1/checkpoint`` (random weights in the official TF1 format)
through the loader users take, runs each case as the release does (grid-8 crop, BGR in [-1, 1])
and prints the largest absolute difference from the release's tensors and its ``output.png``,
beside the tolerances ``tests/test_golden.py`` enforces. TensorFlow turns oneDNN on by default
only on some CPUs; each table says whether it was on. ``output.png`` is compared twice: our
``--official_compat`` bytes, and the default path's hole pixels (an official checkpoint runs
``original`` without seam blending; known pixels are copied from the input).

``--onnx`` (the ``onnx`` extra) also converts the golden checkpoint and the demo model with
``export.py --format onnx``'s converter and counts the hole values ONNX Runtime gives differently
from ``test.py --strategy original --noseam_blend``, on the golden case and the bundled flower.
"""
import os
import sys

import cv2
import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
GOLDEN = os.path.join(os.path.dirname(REPO), "shared", "golden", "deepfill_v1")

from model.inference import inpainter as inpaint  # noqa: E402


def _case(path):
  bgr = cv2.imread(os.path.join(path, "input.png"), cv2.IMREAD_COLOR)
  mask = cv2.imread(os.path.join(path, "mask.png"), cv2.IMREAD_COLOR)
  h, w = bgr.shape[0] // 8 * 8, bgr.shape[1] // 8 * 8
  return bgr[:h, :w], mask[:h, :w, 0] > 127.5


def _png_line(got, ref):
  """``max N, P % of values`` for two uint8 arrays of one shape."""
  diff = np.abs(got.astype(int) - ref.astype(int))
  return f"max {diff.max()}, {100 * (diff > 0).mean():.4f} % of values"


def measure(inpainter, path):
  """Rows (quantity, tolerance, measured) of one golden case."""
  bgr, hole = _case(path)
  ref = lambda f: np.load(os.path.join(path, f))  # noqa: E731
  m = hole[None, :, :, None].astype(np.float32)
  x_in = (bgr[None].astype(np.float32) / 127.5 - 1.0) * (1.0 - m)
  x1, x2, _ = inpainter.generator((x_in, m))
  x1, x2 = x1.numpy()[0], x2.numpy()[0]
  complete = x2 * m[0] + x_in[0] * (1.0 - m[0])
  float_rgb = ((complete + 1.0) * 127.5)[..., ::-1]
  rgb = bgr[..., ::-1]
  official_png = cv2.imread(os.path.join(path, "output.png"), cv2.IMREAD_COLOR)[..., ::-1]
  compat, _ = inpainter.inpaint(rgb, hole, official=True)
  default, _ = inpainter.inpaint(rgb, hole)
  return [
      ("coarse output `x1`", "1e-4", f"{np.abs(x1 - ref('coarse_x1_bgr_m1_1.npy')).max():.1e}"),
      ("refined output `x2`", "1e-4", f"{np.abs(x2 - ref('stage2_x2_bgr_m1_1.npy')).max():.1e}"),
      ("completed image", "1e-4", f"{np.abs(complete - ref('complete_bgr_m1_1.npy')).max():.1e}"),
      ("float output (0–255)", "2e-2",
       f"{np.abs(float_rgb - ref('output_float_rgb_0_255.npy')).max():.1e}"),
      ("`output.png`, `--official_compat`", "≤ 1 level, ≤ 0.1 % of values",
       _png_line(compat, official_png)),
      ("`output.png`, default path, hole pixels", "≤ 1 level, ≤ 0.1 % of values",
       _png_line(default[hole], official_png[hole])),
      ("default path, known pixels equal to the input", "all",
       "all" if np.array_equal(default[~hole], rgb[~hole]) else "NOT ALL"),
  ]


def onnx_rows(checkpoint, image_path, mask_path):
  """Rows (what, hole values differing from test.py, their largest difference) for one pair."""
  import onnxruntime as ort  # pylint: disable=import-outside-toplevel  (the onnx extra)
  from model.inference import convert  # pylint: disable=import-outside-toplevel
  rgb = np.asarray(Image.open(image_path).convert("RGB"))
  hole = np.asarray(Image.open(mask_path).convert("L")) > 127
  reference = inpaint.Inpainter.from_checkpoint(checkpoint, strategy="original",
                                                seam_blend=False)
  expected, _ = reference.inpaint(rgb, hole)
  session = ort.InferenceSession(convert.onnx_bytes(reference.generator, reference.config),
                                 providers=["CPUExecutionProvider"])
  mask = np.where(hole, 255, 0).astype(np.uint8)
  got = session.run(["inpainted"], {"image": rgb[None], "mask": mask[None, :, :, None]})[0][0]
  known_equal = np.array_equal(got[~hole], rgb[~hole])
  diff = np.abs(got[hole].astype(int) - expected[hole].astype(int))
  return (f"{int((diff > 0).sum()):,} of {diff.size:,}", str(diff.max()),
          "yes" if known_equal else "NO")


def _onednn():
  """Whether TensorFlow runs oneDNN's kernels in this process (``?`` if it cannot say)."""
  try:
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
    return "on" if _pywrap_util_port.IsMklEnabled() else "off"
  except (ImportError, AttributeError):
    return "?"


def main():
  cases = os.path.join(GOLDEN, "cases")
  if not os.path.isdir(cases):
    sys.exit(f"error: no golden fixtures at {GOLDEN}")
  inpainter = inpaint.Inpainter.from_checkpoint(os.path.join(GOLDEN, "checkpoint"))
  onednn = _onednn()
  for name in sorted(os.listdir(cases)):
    print(f"{name}, oneDNN {onednn}\n")
    print("| quantity | tolerance | measured max abs error |\n|---|---|---|")
    for row in measure(inpainter, os.path.join(cases, name)):
      print("| " + " | ".join(row) + " |")
    print()
  if "--onnx" in sys.argv[1:]:
    example = os.path.join(REPO, "examples", "sklearn_flower")
    pairs = [("golden checkpoint, its 256² case", os.path.join(GOLDEN, "checkpoint"),
              os.path.join(cases, sorted(os.listdir(cases))[0], "input.png"),
              os.path.join(cases, sorted(os.listdir(cases))[0], "mask.png")),
             ("demo model, examples/sklearn_flower.png", os.path.join(REPO, "checkpoints", "demo"),
              example + ".png", example + "_mask.png")]
    print("ONNX Runtime against `test.py --strategy original --noseam_blend`\n")
    print("| model, photo | hole values that differ | largest difference | known pixels equal |")
    print("|---|---|---|---|")
    for what, checkpoint, image, mask in pairs:
      print(f"| {what} | " + " | ".join(onnx_rows(checkpoint, image, mask)) + " |")


if __name__ == "__main__":
  main()
