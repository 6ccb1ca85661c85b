r"""Inference under mixed_bfloat16 against float32: the demo's quality on dev, model-call time.

  python bench/bench_precision_inference.py quality [--data_dir ../shared/data/dev/photos] \
      [--checkpoint checkpoints/demo] [--max_side 512] [--seed 0]
  python bench/bench_precision_inference.py speed \
      [--checkpoint ../shared/golden/deepfill_v1/checkpoint] [--sizes 512,1024] [--repeats 3]

``quality``: the checkpoint with the pipeline its model.json declares (strategy, seam blending),
once under each precision, on the same photos and masks as ``evaluate.py`` (photos downscaled
to ``--max_side`` with cv2.INTER_AREA, box and free-form masks from ``--seed``): mean hole PSNR
and hole L1 per precision and mask kind (``model/evaluation/metrics.py``), and the largest
difference of a pixel between the two outputs.

``speed``: the full generator (``local_plan.refine(path="full")``, tiled attention under the
default 1 GB budget, as test.py runs it when the hole is large) on a ``S × S`` photo with a
centred box hole of a quarter of its area, one model per precision in one process, calls
alternating between them; median of ``--repeats`` calls after one warm-up call each.
Run it once as is and once with ``TF_ENABLE_ONEDNN_OPTS=0`` to compare oneDNN and Eigen.
Both modes print a Markdown table.
"""
import argparse
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
PRECISIONS = ("float32", "mixed_bfloat16")


def quality(args):
  import numpy as np

  from model.evaluation import engine
  from model.evaluation import masks as eval_masks
  from model.evaluation import metrics
  from model.fileio import paths
  from model.inference import inpainter as inpaint

  models = {p: inpaint.Inpainter.from_checkpoint(args.checkpoint, precision=p)
            for p in PRECISIONS}
  for model in models.values():
    model.warm_up()
  scores = {(mode, p): [] for mode in eval_masks.EVAL_MASK_MODES for p in PRECISIONS}
  largest, changed, hole_pixels = 0, 0, 0
  photos = paths.list_images(args.data_dir)
  seconds = {p: 0.0 for p in PRECISIONS}
  for index, path in enumerate(photos):
    rgb, _ = engine.load_sample(path, None, args.max_side)
    h, w = rgb.shape[:2]
    for mode in eval_masks.EVAL_MASK_MODES:
      hole = eval_masks.eval_mask(mode, h, w, args.seed, index)
      given = np.where(hole[..., None], 0, rgb).astype(np.uint8)
      out = {}
      for p in PRECISIONS:
        start = time.perf_counter()
        out[p] = models[p].inpaint(given, hole)[0]
        seconds[p] += time.perf_counter() - start
        scores[(mode, p)].append((metrics.psnr(out[p], rgb, hole),
                                  100.0 * metrics.hole_l1(out[p], rgb, hole)))
      diff = np.abs(out["float32"].astype(int) - out["mixed_bfloat16"].astype(int))
      largest = max(largest, int(diff.max()))
      changed += int((diff[hole].max(axis=-1) > 0).sum())
      hole_pixels += int(hole.sum())
    print(f"{os.path.basename(path)} done", file=sys.stderr, flush=True)

  print(f"checkpoint {args.checkpoint}, pipeline {models['float32'].pipeline()}, "
        f"{len(photos)} photos, max_side {args.max_side}, seed {args.seed}\n")
  print("| masks | precision | hole PSNR dB | hole L1 % |")
  print("|---|---|---|---|")
  for mode in eval_masks.EVAL_MASK_MODES:
    for p in PRECISIONS:
      values = np.array(scores[(mode, p)])
      print(f"| {mode} | {p} | {values[:, 0].mean():.3f} | {values[:, 1].mean():.3f} |")
    f32, bf16 = (np.array(scores[(mode, p)]) for p in PRECISIONS)
    print(f"| {mode} | bf16 − f32 | {bf16[:, 0].mean() - f32[:, 0].mean():+.3f} | "
          f"{bf16[:, 1].mean() - f32[:, 1].mean():+.3f} |")
  print(f"\nlargest pixel difference {largest} levels; hole pixels that differ "
        f"{100.0 * changed / max(hole_pixels, 1):.1f} %; seconds "
        + ", ".join(f"{p} {s:.1f}" for p, s in seconds.items()))


def speed(args):
  import numpy as np
  import tensorflow as tf

  from model import weights
  from model.inference import local_plan

  budget = local_plan.budget_bytes_of(1.0)
  nets = {p: weights.load_generator(args.checkpoint, dtype=p)[0] for p in PRECISIONS}
  calls = {p: tf.function(lambda x, m, g=g: local_plan.refine(g, x, m, budget, path="full"),
                          autograph=False) for p, g in nets.items()}
  rng = np.random.default_rng(0)
  print(f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', '(unset)')}, "
        f"checkpoint {args.checkpoint}, median of {args.repeats} alternating calls\n")
  print("| size | float32 s | mixed_bfloat16 s | bf16 speed-up | largest hole diff (levels) |")
  print("|---|---|---|---|---|")
  for side in (int(s) for s in args.sizes.split(",")):
    x = tf.constant(rng.uniform(-1, 1, [1, side, side, 3]).astype(np.float32))
    m = np.zeros([1, side, side, 1], np.float32)
    m[:, side // 4:3 * side // 4, side // 4:3 * side // 4] = 1.0
    m = tf.constant(m)
    x = x * (1.0 - m)
    outputs = {p: calls[p](x, m).numpy() for p in PRECISIONS}  # warm-up (tracing)
    times = {p: [] for p in PRECISIONS}
    for _ in range(args.repeats):
      for p in PRECISIONS:
        start = time.perf_counter()
        calls[p](x, m).numpy()
        times[p].append(time.perf_counter() - start)
    f32, bf16 = (statistics.median(times[p]) for p in PRECISIONS)
    hole = m.numpy()[0, ..., 0] > 0
    diff = np.abs(outputs["float32"] - outputs["mixed_bfloat16"])[0][hole].max() * 127.5
    print(f"| {side}² | {f32:.2f} | {bf16:.2f} | {f32 / bf16:.2f}× | {diff:.1f} |", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("mode", choices=("quality", "speed"))
  parser.add_argument("--checkpoint", default=None)
  parser.add_argument("--data_dir", default=os.path.join(os.path.dirname(REPO), "shared", "data",
                                                         "dev", "photos"))
  parser.add_argument("--max_side", type=int, default=512)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--sizes", default="512,1024")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  if args.mode == "quality":
    args.checkpoint = args.checkpoint or os.path.join(REPO, "checkpoints", "demo")
    quality(args)
  else:
    args.checkpoint = args.checkpoint or os.path.join(
        os.path.dirname(REPO), "shared", "golden", "deepfill_v1", "checkpoint")
    speed(args)


if __name__ == "__main__":
  main()
