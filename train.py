r"""Train DeepFill (ARCHITECTURE.md §5–6): WGAN-GP critics, custom loop under tf.distribute.

  python train.py --train_flist photos/ --checkpoint_dir checkpoints/run --max_iters 100000
  python train.py --preset tiny --train_flist photos/ --checkpoint_dir /tmp/tiny   # smoke run

Rerunning the same command resumes from the latest checkpoint (weights, optimizer
slots, step; data order and masks are functions of the step, so the run continues
exactly as if uninterrupted). Ctrl-C / SIGTERM finish the current step, save a
checkpoint and stop, also while the input pipeline is still waiting for images; a
second signal stops at once without saving. TensorBoard logs go to
``<checkpoint_dir>/logs``. One run at a time per ``--checkpoint_dir`` (it is locked).
Exit status: 0 done (or stopped by SIGTERM), 2 bad flags, 1 other errors, 130 Ctrl-C.
The run itself is ``model.training.runner.run``; this file only parses flags.
"""
import os
import sys

from absl import app
from absl import flags as absl_flags

import cli
import flags as flags_lib

FLAGS = absl_flags.FLAGS
flags_lib.define_flags(FLAGS)
absl_flags.mark_flag_as_required("train_flist")
cli.define_verbose()


def main(argv):
  runner = None

  def run():
    nonlocal runner
    if FLAGS[flags_lib.OLD_DISTRIBUTE].present:
      cli.CONSOLE.warn(f"--{flags_lib.OLD_DISTRIBUTE} is now --distribute in train.py (the old "
                       "name still works)")
    try:
      cfg = flags_lib.build_config(FLAGS)
    except ValueError as e:  # an invalid flag value (the message names the flag)
      raise app.UsageError(str(e), cli.USAGE_STATUS) from None
    cli.import_tensorflow(FLAGS.verbose)
    from model.training import runner  # TensorFlow: imported once the flags are good
    return runner.run(cfg)

  status = cli.guarded(run, argv=argv)
  if runner is not None and runner.unfinished_threads():
    # A thread is still inside TensorFlow (a blocked input pipeline, or a step cut
    # short by a second signal): interpreter shutdown could wait on it forever.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
  return status


if __name__ == "__main__":
  app.run(main, flags_parser=cli.one_line_flag_parser(FLAGS))
