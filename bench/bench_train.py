r"""Training-step benchmark: seconds per generator update, its FLOPs, efficiency vs the conv ceiling.

  python bench/bench_train.py                              # official + recipe, bench/TRAIN_RESULTS.md
  python bench/bench_train.py --settings recipe --iterations 5 --profile
  python bench/bench_train.py --settings official --train_flags=--micro_batch=0 --output /tmp/x.md

A setting is a list of ``train.py`` flags (``SETTINGS``), turned into a ``Config`` by
``flags.build_config`` and built by ``model.training.nets.build`` exactly as ``train.py``
does; batches come from the real input pipeline (``model.training.inputs``) on the
photos of ``--photos``, read when a step asks for them, as in ``train.py``. Each
setting runs in a fresh process (its peak memory is its own). The first update
(tracing) is excluded; the medians of ``--iterations`` updates are reported:

* ``s / update``: critic steps plus the generator step, input waits included;
* ``input wait``: the part spent waiting for batches (a pipeline stall);
* ``GFLOP / update``: convolutions (forward, input and filter gradients) and matmuls,
  counted from the traced step graphs, critic steps included;
* ``× floor``: time / (conv GFLOP / the conv ceiling), where the ceiling is the
  GFLOP/s of ``bench_inference.py``'s reference conv measured in the same process before
  and after the updates: 1.0 = the convolutions alone at the ceiling, nothing else;
* ``× floor in CPU s``: the same in CPU seconds (the process's update CPU time over the
  conv GFLOP per CPU second), which hardly depends on what else runs on the machine.

The machine is shared: the load average and the CPUs the process got are reported.
``--profile`` adds the per-op-type time of one update (TF profiler), grouped.
"""
import argparse
import collections
import glob
import json
import os
import platform
import re
import sys
import tempfile
import time

import harness  # bench/harness.py (this script's folder is on sys.path)
import machine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = os.path.join(os.path.dirname(REPO), "shared", "data", "train", "photos")

SETTINGS = {
    # The release: v1 cnum 32, 256², batch 16, WGAN-GP, 5 critic steps, box holes.
    "official": [],
    # checkpoints/demo's recipe: reconstruction only on mixed masks, photos rescaled.
    "recipe": ["--cnum=16", "--img_size=128", "--batch_size=8", "--gan=none",
               "--mask_mode=mixed", "--random_scale=1,3"],
}

OP_EVENT = re.compile(r"^[^\s:]+:(\w+)$")  # profiler event of an op: "<op name>:<op type>"
CONV_OPS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "DepthwiseConv2dNative")
MATMUL_OPS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
# Profiler op types by what they do (oneDNN names included); the rest is "other".
GROUPS = {
    "convolutions": ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "_FusedConv2D",
                     "_MklNativeConv2D", "_MklNativeFusedConv2D", "_MklNativeConv2DWithBias",
                     "_MklNativeConv2DBackpropInput", "_MklNativeConv2DBackpropFilter",
                     "_MklNativeConv2DBackpropFilterWithBias", "_MklConv2D",
                     "_MklConv2DBackpropInput", "_MklConv2DBackpropFilter", "BiasAddGrad"),
    "matmuls (attention)": ("MatMul", "BatchMatMulV2", "_MklMatMul", "_MklBatchMatMulV2"),
    "data movement": ("GatherV2", "StridedSlice", "StridedSliceGrad", "Pad", "PadV2", "MirrorPad",
                      "MirrorPadGrad", "Transpose", "ConcatV2", "SpaceToBatchND",
                      "BatchToSpaceND", "SpaceToDepth", "DepthToSpace", "Tile", "Slice",
                      "ExtractImagePatches", "ResizeNearestNeighbor",
                      "ResizeNearestNeighborGrad", "UnsortedSegmentSum", "ScatterNd",
                      "TensorScatterAdd", "Reshape", "Split", "SplitV", "_MklTranspose",
                      "GatherNd", "Pack", "Unpack"),
    "optimizer (Adam)": ("ResourceApplyAdam", "AssignAddVariableOp", "AssignSubVariableOp",
                         "AssignVariableOp", "ReadVariableOp", "Sqrt", "Pow", "RealDiv"),
}


def _conv_flops(op):
  """FLOPs (2 per multiply-add) of a conv op, from its static shapes; None if unknown."""
  if op.type == "Conv2DBackpropFilter":
    out, kernel = op.inputs[2].shape, op.outputs[0].shape   # out_backprop, filter gradient
  elif op.type == "Conv2DBackpropInput":
    out, kernel = op.inputs[2].shape, op.inputs[1].shape    # out_backprop, filter
  else:
    out, kernel = op.outputs[0].shape, op.inputs[1].shape
  if not (out.is_fully_defined() and kernel.is_fully_defined()):
    return None
  per_output = kernel[0] * kernel[1] * kernel[2]
  if op.type == "DepthwiseConv2dNative":
    per_output = kernel[0] * kernel[1]
  return 2 * out.num_elements() * per_output


def _matmul_flops(op):
  a, b = op.inputs[0].shape, op.inputs[1].shape
  if not (a.is_fully_defined() and b.is_fully_defined()):
    return None
  adj_a = op.get_attr("adj_x" if op.type.startswith("Batch") else "transpose_a")
  k = a[-2] if adj_a else a[-1]
  out = op.outputs[0].shape
  return 2 * out.num_elements() * k


def graph_flops(concrete_function):
  """``{"conv": FLOPs, "matmul": FLOPs, "uncounted": op count}`` of a traced step.

  Nested functions (loops, conditionals) are not followed; the training steps have none
  (``uncounted`` also counts them, so a change would show).
  """
  graph = concrete_function.graph
  # Only ops the outputs and side effects (variable updates) depend on: the gradient code
  # also builds results nobody uses (the gradient of a constant input, say), which
  # TensorFlow prunes before running.
  live, todo = set(), [t.op for t in graph.outputs] + list(graph.control_outputs)
  while todo:
    op = todo.pop()
    if op not in live:
      live.add(op)
      todo.extend(t.op for t in op.inputs)
      todo.extend(op.control_inputs)
  total = collections.Counter()
  for op in graph.get_operations():
    if op not in live:
      continue
    elif op.type in CONV_OPS:
      flops, kind = _conv_flops(op), "conv"
    elif op.type in MATMUL_OPS:
      flops, kind = _matmul_flops(op), "matmul"
    elif op.type in ("While", "StatelessWhile", "If", "StatelessIf", "PartitionedCall",
                     "StatefulPartitionedCall"):
      flops, kind = None, None
    else:
      continue
    if flops is None:
      total["uncounted"] += 1
    else:
      total[kind] += flops
  return {k: total[k] for k in ("conv", "matmul", "uncounted")}


def _profile(fn, logdir):
  """Runs ``fn()`` under the TF profiler; returns ``{op type: summed seconds}``."""
  import tensorflow as tf
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  tf.profiler.experimental.start(logdir)
  try:
    fn()
  finally:
    tf.profiler.experimental.stop()
  by_type = collections.Counter()
  for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
      space.ParseFromString(f.read())
    for plane in space.planes:
      for line in plane.lines:
        if not line.name.startswith("tf_Compute") and "Eigen" not in line.name:
          continue  # op events run on TF's compute threads
        for event in line.events:
          op = OP_EVENT.match(plane.event_metadata[event.metadata_id].name)
          if op:  # not executor bookkeeping ("ExecutorState::Process", ...)
            by_type[op.group(1)] += event.duration_ps / 1e12
  return by_type


def conv_ceiling(repeats=7):
  """GFLOP per wall second and per CPU second of ``bench_inference.py``'s reference conv.

  A 3×3 128→128 conv at 128² (batch 1), median of ``repeats`` calls. Per CPU second
  (this process's threads), the figure hardly depends on what else runs on the machine.
  """
  import tensorflow as tf
  x = tf.random.normal([1, 128, 128, 128])
  k = tf.random.normal([3, 3, 128, 128])
  conv = tf.function(lambda: tf.nn.conv2d(x, k, 1, "SAME"))
  flops = 2 * 128 * 128 * 9 * 128 * 128
  conv().numpy()
  walls, cpus = [], []
  for _ in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    conv().numpy()
    walls.append(time.perf_counter() - t)
    cpus.append(time.process_time() - c)
  return {"wall": flops / sorted(walls)[repeats // 2] / 1e9,
          "cpu": flops / sorted(cpus)[repeats // 2] / 1e9}


def run_case(args):
  """Child process: one setting; prints a JSON line."""
  import resource
  import numpy as np
  import tensorflow as tf
  from absl import flags as absl_flags
  sys.path.insert(0, REPO)
  import flags as flags_lib
  from model.training import data as data_lib
  from model.training import inputs as inputs_lib
  from model.training import nets as nets_lib

  ceiling_before = conv_ceiling()
  flag_values = absl_flags.FlagValues()
  flags_lib.define_flags(flag_values)
  setting_flags = SETTINGS[args.case] + args.train_flags.split()
  flag_values(["bench_train", *setting_flags, f"--train_flist={args.photos}"])
  cfg = flags_lib.build_config(flag_values)
  load_before = os.getloadavg()[0]
  tf.keras.utils.set_random_seed(0)
  nets = nets_lib.build(cfg)
  step = tf.Variable(0, dtype=tf.int64)
  critic_step, generator_step, _ = nets_lib.distributed_steps(tf.distribute.get_strategy(), nets,
                                                           step)
  files = data_lib.list_files(args.photos)
  per_update = cfg.critic_steps + 1
  iterator = iter(inputs_lib.training_batches(files, cfg.data, cfg.train.seed,
                                              cfg.model.channel_order))

  def update():
    """One generator update as train.py runs it: (input wait s, compute s)."""
    t0 = time.perf_counter()
    batches = [next(iterator) for _ in range(per_update)]
    t1 = time.perf_counter()
    for batch in batches[:-1]:
      critic_step(batch)
    float(generator_step(batches[-1])["g_loss"])
    return t1 - t0, time.perf_counter() - t1

  t = time.perf_counter()
  update()
  warmup = time.perf_counter() - t
  waits, computes = [], []
  cpu = time.process_time()
  for _ in range(args.iterations):
    wait, compute = update()
    waits.append(wait)
    computes.append(compute)
  cpu = time.process_time() - cpu
  totals = [w + c for w, c in zip(waits, computes)]
  sample = next(iterator)
  flops = graph_flops(generator_step.get_concrete_function(sample))
  if cfg.critic_steps:
    critic = graph_flops(critic_step.get_concrete_function(sample))
    flops = {k: flops[k] + cfg.critic_steps * critic[k] for k in flops}
  profile = None
  if args.profile:
    with tempfile.TemporaryDirectory() as logdir:
      profile = _profile(update, logdir)
  ceiling_after = conv_ceiling()
  print(json.dumps({
      "setting": args.case, "flags": setting_flags, "s_per_update": float(np.median(totals)),
      "input_wait_s": float(np.median(waits)), "compute_s": float(np.median(computes)),
      "warmup_s": warmup, "iterations": args.iterations, "conv_gflop": flops["conv"] / 1e9,
      "matmul_gflop": flops["matmul"] / 1e9, "uncounted_ops": flops["uncounted"],
      "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
      "load_before": load_before, "load_after": os.getloadavg()[0],
      "cpu_share": cpu / max(sum(totals), 1e-9),
      "cpu_s_per_update": cpu / args.iterations,
      "conv_ceiling": [ceiling_before["wall"], ceiling_after["wall"]],
      "conv_ceiling_cpu": [ceiling_before["cpu"], ceiling_after["cpu"]],
      "summary": (f"v{cfg.model.arch[1:]} cnum {cfg.model.cnum}, {cfg.data.img_size}², batch "
                  f"{cfg.data.batch_size} in {cfg.micro_batches()} micro-batch(es), gan "
                  f"{cfg.loss.gan}, {cfg.critic_steps} critic steps, masks {cfg.data.mask_mode}"),
      "profile": profile}), flush=True)


def _grouped(profile):
  grouped = collections.Counter()
  for op, seconds in profile.items():
    group = next((g for g, ops in GROUPS.items() if op in ops), "other")
    grouped[group] += seconds
  return grouped


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--settings", default="official,recipe",
                      help=f"comma-separated names of {sorted(SETTINGS)}")
  parser.add_argument("--iterations", type=int, default=2, help="timed updates per setting")
  parser.add_argument("--photos", default=PHOTOS, help="training photos (a folder or a list)")
  parser.add_argument("--train_flags", default="",
                      help="train.py flags added to every setting (e.g. --micro_batch=0)")
  parser.add_argument("--profile", action="store_true", help="per-op-type time of one update")
  parser.add_argument("--top", type=int, default=12, help="op types listed by --profile")
  parser.add_argument("--output", default=os.path.join(REPO, "bench", "TRAIN_RESULTS.md"))
  parser.add_argument("--case", choices=sorted(SETTINGS), help=argparse.SUPPRESS)
  args = parser.parse_args()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if args.case:
    run_case(args)
    return 0
  if not os.path.exists(args.photos):
    parser.error(f"no training photos at {args.photos} (see --photos)")
  import tensorflow as tf
  header = ("| setting | s / update | input wait s | first update s | conv GFLOP | matmul GFLOP "
            "| conv ceiling GFLOP/s | conv floor s | × floor | CPU s / update "
            "| × floor in CPU s | peak GB | CPUs used | load 1-min |")
  print(header)
  rows, details = [], []
  for name in args.settings.split(","):
    cmd = [sys.executable, os.path.abspath(__file__), "--case", name, "--iterations",
           str(args.iterations), "--photos", args.photos, f"--train_flags={args.train_flags}"]
    cmd += ["--profile"] if args.profile else []
    proc = harness.run(cmd)
    r = harness.last_json(proc.stdout)
    if proc.status or r is None:
      rows.append(f"| {name} | failed (exit {proc.status}) |||||||||")
      print(rows[-1], harness.tail(proc.stderr))
      continue
    ceiling = sum(r["conv_ceiling"]) / 2
    floor = r["conv_gflop"] / ceiling
    cpu_floor = r["conv_gflop"] / (sum(r["conv_ceiling_cpu"]) / 2)
    rows.append(f"| {name} | {r['s_per_update']:.2f} | {r['input_wait_s']:.2f} "
                f"| {r['warmup_s']:.0f} | {r['conv_gflop']:.0f} | {r['matmul_gflop']:.1f} "
                f"| {r['conv_ceiling'][0]:.0f} / {r['conv_ceiling'][1]:.0f} | {floor:.2f} "
                f"| {r['s_per_update'] / floor:.2f} | {r['cpu_s_per_update']:.2f} "
                f"| {r['cpu_s_per_update'] / cpu_floor:.2f} | {r['peak_gb']:.2f} "
                f"| {r['cpu_share']:.2f} "
                f"| {r['load_before']:.1f} → {r['load_after']:.1f} |")
    print(rows[-1], flush=True)
    details.append(f"* `{name}`: {r['summary']} (train.py flags: "
                   f"`{' '.join(r['flags']) or '(defaults)'}`); median of {r['iterations']} "
                   f"updates; {r['uncounted_ops']} ops without a FLOP count.")
    if r["profile"]:
      total = sum(r["profile"].values())
      grouped = _grouped(r["profile"])
      lines = [f"Profile of one `{name}` update (summed op time {total:.2f} s; two compute "
               "threads overlap, so shares are of op time, not wall time):", "",
               "| group | op s | share |", "|---|---|---|"]
      lines += [f"| {g} | {s:.2f} | {s / total:.0%} |" for g, s in grouped.most_common()]
      lines += ["", "| op type | op s | share |", "|---|---|---|"]
      lines += [f"| {op} | {s:.2f} | {s / total:.0%} |"
                for op, s in collections.Counter(r["profile"]).most_common(args.top)]
      details.append("\n" + "\n".join(lines) + "\n")
      print("\n".join(lines))
  cpu = machine.cpu_model()
  text = "\n".join([
      "# Training-step benchmark", "",
      f"Command: `python bench/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}`".rstrip(),
      "", f"Machine: {os.cpu_count()} CPUs ({cpu}), {platform.platform()}; Python "
      f"{platform.python_version()}, TensorFlow {tf.__version__}. The machine is shared: the "
      "conv ceiling (3×3 128→128 at 128², `bench_inference.py`'s) is measured in each "
      "setting's process before and after its updates, `CPUs used` is the process's CPU "
      "seconds per wall second over the timed updates and `load 1-min` the load average "
      "before and after (above the CPU count, other processes took part of the CPUs).", "",
      "`s / update`: one generator update with its critic steps, batches from the real input "
      "pipeline (`input wait` = the time spent waiting for them); `conv floor s` = conv "
      "GFLOP / the mean of the two ceilings; `× floor` = s / update over that floor. Analysis: bench/README.md.",
      "", header, "|" + "---|" * 14, *rows, "", *details, ""])
  sys.path.insert(0, REPO)
  from model.fileio.atomic import atomic_write
  atomic_write(args.output, text)
  print(f"wrote {args.output}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
