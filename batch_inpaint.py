r"""Inpaint many photos with Apache Beam's RunInference on an exported SavedModel.

  python batch_inpaint.py --images 'photos/*.jpg' --masks masks/ --output_dir out/ \
      --saved_model export/deepfill [--skip_existing] [--runner DirectRunner ...]

``--images`` is a glob or a folder, ``--masks`` a glob, a folder or one mask for every
photo (any Beam filesystem: local paths, ``gs://`` or ``s3://`` where the runner has
them). Images and masks are paired by file stem as ``test.py`` pairs folders. Every photo
gives one PNG in ``--output_dir`` (``test.py``'s pixels) and one record in
``--output_dir/results-<run>-*.jsonl``; a bad photo is a ``failed`` record, never a failed
pipeline. Flags this script does not define are Beam pipeline options (``--runner``,
``--direct_num_workers``, ``--project``, ...). A command-line mistake (a flag neither this
script nor Beam knows, a missing flag) prints one line ``error: ...`` and exits with status 2;
a problem found before the start (no SavedModel, nothing to read), a pipeline that fails as a
whole, or a run with ``failed`` records (after writing everything else) exits with status 1.
TensorFlow's own start-up lines are hidden unless ``--verbose``. The launch (checks, Beam
options, the run) is ``model/batch/launch.py``; the SavedModel to give it is a serving-only
export (``export.py --signatures serving``). See docs/BATCH.md.
"""
import functools
import logging
import os
import signal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import cli  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string("images", None, "Glob or folder of images (any Beam filesystem).")
flags.DEFINE_string("masks", None, "Glob or folder of masks paired by file stem, or one mask "
                    "file for every image (white = hole).")
flags.DEFINE_string("output_dir", None, "Folder for the inpainted PNGs and results-*.jsonl.")
flags.DEFINE_string("saved_model", None, "SavedModel directory written by export.py "
                    "(--signatures serving: the serving-only export this pipeline runs).")
flags.DEFINE_bool("skip_existing", False, "Photos whose output PNG exists are not redone "
                  "(status 'skipped'); use it to finish a run that stopped.")
cli.define_max_megapixels("Photos larger than this become 'failed' records (checked from the "
                          "file header, before decoding).")
flags.DEFINE_integer("intra_op_threads", 0, "TensorFlow threads per worker process for one "
                     "photo (0 = all cores; on the DirectRunner with several worker processes, "
                     "the cores divided by --direct_num_workers).")
flags.register_validator("intra_op_threads", lambda v: v is not None and v >= 0,
                         message="--intra_op_threads must be 0 or more")
flags.mark_flags_as_required(["images", "masks", "output_dir", "saved_model"])
cli.define_verbose()


_fail = cli.CONSOLE.fail


def _on_sigterm(signum, frame):
  """Deletes this process's local copy of a remote SavedModel (if one is being loaded),
  then dies of the signal as it would have."""
  from model.batch import copies
  copies.remove_stale_copies(include_own=True)
  signal.signal(signum, signal.SIG_DFL)
  os.kill(os.getpid(), signum)


def main(argv):
  logging.getLogger().setLevel(logging.WARNING)
  # The DirectRunner's job service repeats its worker processes' start-up warnings.
  logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)
  # An error that stops the pipeline is reported once, in one line, not as a logged traceback.
  for name in ("apache_beam.runners.common", "apache_beam.runners.worker"):
    logging.getLogger(name).setLevel(logging.CRITICAL)

  signal.signal(signal.SIGTERM, _on_sigterm)

  def body():
    from model.batch import launch
    try:
      counts, records, worker = launch.run(
          FLAGS.images, FLAGS.masks, FLAGS.output_dir, FLAGS.saved_model, beam_args=argv[1:],
          skip_existing=FLAGS.skip_existing, max_megapixels=FLAGS.max_megapixels,
          intra_op_threads=FLAGS.intra_op_threads,
          import_tensorflow=functools.partial(cli.import_tensorflow, FLAGS.verbose))
    except launch.UnknownArguments as e:
      raise app.UsageError(str(e), cli.USAGE_STATUS) from None
    total = sum(counts.values())
    memory = ""
    if worker["peak_rss_mb"] is not None:
      memory = f"; peak memory of a worker process {worker['peak_rss_mb'] / 1024:.2f} GB"
    if worker["baseline_rss_mb"] is not None:
      memory += (f" ({worker['baseline_rss_mb'] / 1024:.2f} GB and "
                 f"{worker['setup_cpu_s']:.1f} s CPU before its first photo)")
    print(f"{counts['ok']} inpainted, {counts['skipped']} skipped, {counts['failed']} failed "
          f"of {total} photos; records: {records}{memory}")
    if counts["failed"]:
      _fail(f"{counts['failed']} of {total} photos failed; their records say why ({records})")
      return 1
    return 0

  from model.batch import launch
  return cli.guarded(body, expected=(launch.LaunchError,))


if __name__ == "__main__":
  # Flags absl does not know are left for Beam's PipelineOptions (checked in run()).
  app.run(main, flags_parser=cli.one_line_flag_parser(FLAGS, known_only=True))
