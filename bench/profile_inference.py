r"""Where inference time goes: per-op-type time of one generator call, from TF's step stats.

  python bench/profile_inference.py --size 1024x1024 --hole 0.25
  python bench/profile_inference.py --size 512x512 --hole 0.25 --output bench/PROFILE.md

Builds the same computation ``test.py`` runs (``local_inference.refine``: hole-local
stages where they pay off, tiled attention under ``--max_memory_gb``) on a
random-weight v1 generator, runs it once to warm up, then once with full tracing
(TF1-style ``RunMetadata``, which also sees inside while loops), and sums each
op's time by op type. Op times overlap (two inter-op threads and intra-op
parallelism), so the shares are of the summed op time, not of the wall time.
"""
import argparse
import collections
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Op types by what they do; the rest is "other".
GROUPS = {
    "convolutions": ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative"),
    "matmuls (attention paste, dense scores)": ("BatchMatMulV2", "MatMul", "_MklMatMul"),
    "data movement (gather, slice, pad, transpose, concat)": (
        "GatherV2", "StridedSlice", "Pad", "PadV2", "Transpose", "ConcatV2", "TensorScatterAdd",
        "TensorScatterUpdate", "SpaceToBatchND", "BatchToSpaceND", "SpaceToDepth",
        "TensorListStack", "TensorListSetItem", "TensorListGetItem", "Tile", "Slice",
        "ExtractImagePatches", "ResizeNearestNeighbor", "Reshape"),
    "elementwise and softmax": ("Elu", "Relu", "Mul", "AddV2", "Add", "AddN", "Sub", "Softmax",
                                "BiasAdd", "Sigmoid", "Maximum", "Minimum", "RealDiv", "Exp",
                                "Sqrt", "Square", "ArgMax", "ClipByValue", "Cast", "Select",
                                "SelectV2", "Sum"),
}


def _parse_size(text):
  w, h = text.lower().split("x")
  return int(h), int(w)


def profile(height, width, hole_fraction, max_memory_gb):
  """Returns (wall seconds untraced, {op type: summed seconds})."""
  import numpy as np
  import tensorflow as tf
  sys.path.insert(0, REPO)
  from model import config as config_lib
  from model import generator as generator_lib
  from model.inference import local_plan as local_inference

  graph = tf.Graph()
  with graph.as_default():
    tf.keras.utils.set_random_seed(0)
    gen = generator_lib.build_generator(config_lib.preset("v1", cnum=32))
    x = tf.compat.v1.placeholder(tf.float32, [1, None, None, 3])
    m = tf.compat.v1.placeholder(tf.float32, [1, None, None, 1])
    out = local_inference.refine(gen, x, m, max_memory_gb * 2**30)
    init = tf.compat.v1.global_variables_initializer()
  mask = np.zeros([1, height, width, 1], np.float32)
  side_h = int(round(height * hole_fraction ** 0.5))
  side_w = int(round(width * hole_fraction ** 0.5))
  y0, x0 = (height - side_h) // 2, (width - side_w) // 2
  mask[:, y0:y0 + side_h, x0:x0 + side_w] = 1.0
  image = np.random.default_rng(0).uniform(-1, 1, [1, height, width, 3]).astype(np.float32)
  feed = {x: image * (1.0 - mask), m: mask}
  with tf.compat.v1.Session(graph=graph) as sess:
    sess.run(init)
    sess.run(out, feed)
    start = time.perf_counter()
    sess.run(out, feed)
    wall = time.perf_counter() - start
    options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
    metadata = tf.compat.v1.RunMetadata()
    sess.run(out, feed, options=options, run_metadata=metadata)
  by_type = collections.Counter()
  for device in metadata.step_stats.dev_stats:
    for node in device.node_stats:
      label = node.timeline_label
      op = label.split("= ", 1)[1].split("(", 1)[0] if "= " in label else node.node_name
      by_type[op] += node.all_end_rel_micros / 1e6
  return wall, by_type


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=_parse_size, default=(1024, 1024), help="WxH")
  parser.add_argument("--hole", type=float, default=0.25, help="hole area fraction")
  parser.add_argument("--max_memory_gb", type=float, default=1.0)
  parser.add_argument("--top", type=int, default=12, help="op types to list")
  parser.add_argument("--output", help="also write the tables to this Markdown file")
  args = parser.parse_args()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  height, width = args.size
  wall, by_type = profile(height, width, args.hole, args.max_memory_gb)
  total = sum(by_type.values())
  grouped = collections.Counter()
  for op, seconds in by_type.items():
    group = next((g for g, ops in GROUPS.items() if op in ops), "other")
    grouped[group] += seconds
  lines = [f"Profile of one call at {width}x{height}, {args.hole:.0%} hole, "
           f"--max_memory_gb {args.max_memory_gb}: wall {wall:.2f} s (untraced), "
           f"summed op time {total:.2f} s.", "",
           "| group | op s | share |", "|---|---|---|"]
  lines += [f"| {g} | {s:.2f} | {s / total:.0%} |" for g, s in grouped.most_common()]
  lines += ["", "| op type | op s | share |", "|---|---|---|"]
  lines += [f"| {op} | {s:.2f} | {s / total:.0%} |" for op, s in by_type.most_common(args.top)]
  text = "\n".join(lines) + "\n"
  print(text)
  if args.output:
    from model.fileio.atomic import atomic_write
    atomic_write(args.output, text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
