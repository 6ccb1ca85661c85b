r"""Average the generator weights of several checkpoints of one run into a model folder.

  python tools/average_checkpoints.py --checkpoints RUN/step_1500,RUN/step_1600,... \
      --output checkpoints/demo [--overwrite]

Uniform averaging of the last few checkpoints of a constant-learning-rate run (Polyak
averaging, sampled) removes most of the step-to-step jitter of a single checkpoint, so the
model is chosen by a rule stated in advance instead of by the luckiest validation score.
Every input must hold the same generator (``model.json``); the result is ``model.json`` plus
the generator weights, the format of ``checkpoints/demo``, written to a temporary folder and
renamed into place. Errors print one line and exit with status 1.
"""
import os
import shutil
import sys
import tempfile

from absl import app
from absl import flags
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("checkpoints", None, "Checkpoint folders (ours) to average, two or more.")
flags.DEFINE_string("output", None, "Model folder to write.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output folder.")
flags.mark_flags_as_required(["checkpoints", "output"])


def average(paths):
  """(generator, ModelConfig) whose weights are the mean of the generators at ``paths``."""
  import numpy as np
  from model import weights
  from model.errors import UserError
  if len(paths) < 2:
    raise UserError("--checkpoints needs two or more folders")
  total, first_cfg, gen = None, None, None
  for path in paths:
    gen, cfg = weights.load_generator(path)
    if first_cfg is None:
      first_cfg = cfg
    elif cfg != first_cfg:
      raise UserError(f"{path} holds a different generator than {paths[0]}")
    values = [w.astype(np.float64) for w in gen.get_weights()]
    total = values if total is None else [t + v for t, v in zip(total, values)]
  gen.set_weights([(t / len(paths)).astype(np.float32) for t in total])
  return gen, first_cfg


def main(argv):
  def run():
    from model.errors import UserError
    if len(FLAGS.checkpoints) < 2:
      raise UserError("--checkpoints needs two or more folders")
    out = os.path.abspath(FLAGS.output)
    if os.path.exists(out) and not FLAGS.overwrite:
      raise UserError(f"{FLAGS.output} exists; pass --overwrite to replace it")
    sources = {os.path.realpath(p) for p in FLAGS.checkpoints}
    if os.path.realpath(out) in sources:
      raise UserError(f"--output {FLAGS.output} is one of the --checkpoints")
    logging.set_verbosity(logging.WARNING)  # no saver INFO lines
    cli.import_tensorflow()
    from model import weights
    gen, cfg = average(FLAGS.checkpoints)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".average-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the model folder is not
    try:
      weights.save_generator(gen, cfg, tmp, weights.inference_defaults(FLAGS.checkpoints[0]))
      old = None
      if os.path.exists(out):
        old = tempfile.mkdtemp(prefix=".replaced-", dir=parent)
        os.rename(out, os.path.join(old, "model"))
      os.rename(tmp, out)
      if old:
        shutil.rmtree(old)
    except BaseException:
      shutil.rmtree(tmp, ignore_errors=True)
      raise
    print(f"wrote {FLAGS.output} (mean of {len(FLAGS.checkpoints)} checkpoints)")
    return 0

  return cli.guarded(run, argv=argv)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.one_line_flag_parser(FLAGS))
