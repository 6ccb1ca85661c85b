r"""Training-step benchmark: wall time of one generator iteration (with its critic steps).

  python bench/bench_train.py                                  # official: 256², batch 16, 5 critic steps
  python bench/bench_train.py --img_size 128 --batch_size 8 --cnum 16 --arch gated --critic_steps 1

Random images and the official random masks; the first iteration (tracing) is
excluded, the median of ``--iterations`` is reported and appended to
``bench/TRAIN_RESULTS.md`` with the machine and command.
"""
import argparse
import os
import platform
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--img_size", type=int, default=256)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--cnum", type=int, default=32)
  parser.add_argument("--critic_cnum", type=int, default=64)
  parser.add_argument("--arch", default="v1", choices=["v1", "gated"])
  parser.add_argument("--critic_steps", type=int, default=5)
  parser.add_argument("--iterations", type=int, default=2)
  parser.add_argument("--output", default=os.path.join(REPO, "bench", "TRAIN_RESULTS.md"))
  args = parser.parse_args()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  sys.path.insert(0, REPO)
  import keras
  import tensorflow as tf
  from model import config as config_lib
  from model.training import config as train_config
  from model.training import inputs as training_inputs
  from model.training import nets as nets_lib

  keras.utils.set_random_seed(0)
  s, box = args.img_size, args.img_size // 2
  cfg = train_config.Config(
      model=config_lib.preset(args.arch, cnum=args.cnum),
      data=train_config.DataConfig(img_size=s, batch_size=args.batch_size, box_height=box,
                                   box_width=box, max_delta_height=box // 4,
                                   max_delta_width=box // 4),
      loss=train_config.LossConfig(critic_cnum=args.critic_cnum),
      train=train_config.TrainConfig(critic_steps=args.critic_steps))
  nets = nets_lib.build(cfg)
  step = tf.Variable(0, dtype=tf.int64)
  d_step, g_step = nets_lib.distributed_steps(tf.distribute.get_strategy(), nets, step)

  def batch(i):
    images = tf.random.stateless_uniform([args.batch_size, s, s, 3], [0, i], -1.0, 1.0)
    return training_inputs.add_training_inputs(images, i, 0, "box", (box, box),
                                               (box // 4, box // 4))

  def iteration(i):
    for k in range(args.critic_steps):
      d_step(batch(i * 10 + k))
    return float(g_step(batch(i * 10 + 9))["g_loss"])

  t = time.perf_counter()
  iteration(0)
  warmup = time.perf_counter() - t
  times = []
  for i in range(1, args.iterations + 1):
    t = time.perf_counter()
    iteration(i)
    times.append(time.perf_counter() - t)
  median = sorted(times)[len(times) // 2]
  row = (f"| {args.arch} | {args.cnum} | {s}² | {args.batch_size} | {args.critic_steps} "
         f"| {median:.1f} | {warmup:.0f} |")
  print(f"median s per generator iteration (with {args.critic_steps} critic steps): "
        f"{median:.2f} (first, incl. tracing: {warmup:.1f})")
  header = ("| arch | cnum | size | batch | critic steps | s / iteration | first iteration s |\n"
            "|---|---|---|---|---|---|---|\n")
  if not os.path.exists(args.output):
    with open(args.output, "w") as f:
      f.write("# Training-step benchmark\n\n"
              f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, TensorFlow "
              f"{tf.__version__}. Command: `python bench/bench_train.py [flags]` (flags per row)."
              f"\n\n{header}")
  with open(args.output, "a") as f:
    f.write(row + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
