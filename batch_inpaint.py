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
TensorFlow's own start-up lines are hidden unless ``--verbose``. See README "Batch inpainting
with Apache Beam".
"""
import ast
import functools
import logging
import os
import re
import secrets
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import cli  # noqa: E402
from model import limits  # noqa: E402

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.abspath(__file__))

flags.DEFINE_string("images", None, "Glob or folder of images (any Beam filesystem).")
flags.DEFINE_string("masks", None, "Glob or folder of masks paired by file stem, or one mask "
                    "file for every image (white = hole).")
flags.DEFINE_string("output_dir", None, "Folder for the inpainted PNGs and results-*.jsonl.")
flags.DEFINE_string("saved_model", None, "SavedModel directory written by export.py.")
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


class _LaunchError(Exception):
  """A problem found before the pipeline starts, or one that stopped it (one-line message)."""


_fail = cli.CONSOLE.fail


def _import_beam():
  """Imports Beam without its import-time warning about optional GCP client libraries."""
  root = logging.getLogger()
  level = root.level
  root.setLevel(logging.ERROR)
  try:
    import apache_beam  # noqa: F401
    from apache_beam.io.filesystems import FileSystems  # noqa: F401
  finally:
    root.setLevel(level)


class _Captured(logging.Handler):
  def __init__(self):
    super().__init__(logging.WARNING)
    self.messages = []

  def emit(self, rec):
    self.messages.append(rec.getMessage())


def pipeline_options(beam_args):
  """``PipelineOptions`` from the arguments absl did not know. An argument Beam does not know
  either is an error (a typo must not be dropped silently, which is what Beam does)."""
  from apache_beam.options.pipeline_options import PipelineOptions
  options = PipelineOptions(beam_args)
  logger = logging.getLogger("apache_beam.options.pipeline_options")
  captured = _Captured()
  saved = logger.propagate
  logger.addHandler(captured)
  logger.propagate = False
  try:
    options.get_all_options(retain_unknown_options=False)
  finally:
    logger.removeHandler(captured)
    logger.propagate = saved
  prefix = "Discarding unparseable args: "
  for message in captured.messages:
    if message.startswith(prefix):
      try:
        dropped = [str(a) for a in ast.literal_eval(message[len(prefix):])]
      except (ValueError, SyntaxError):
        dropped = [message[len(prefix):]]
      if any(a.startswith("-") for a in dropped):
        raise app.UsageError(f"unknown flags: {' '.join(dropped)} (neither this script's flags "
                             "nor Beam pipeline options)", cli.USAGE_STATUS)
      raise app.UsageError(f"unexpected arguments: {' '.join(dropped)}", cli.USAGE_STATUS)
  return options


def check_arguments(images, masks, output_dir, saved_model, max_megapixels):
  """Fails early, with one line, on arguments that cannot work (before any worker starts)."""
  from apache_beam.io.filesystems import FileSystems
  from model.batch import transforms
  for name, value in (("images", images), ("masks", masks), ("output_dir", output_dir),
                      ("saved_model", saved_model)):
    if not value:
      raise _LaunchError(f"--{name} is required")
  try:
    limits.max_pixels(max_megapixels)
  except ValueError as e:
    raise _LaunchError(str(e)) from None
  if not FileSystems.exists(FileSystems.join(saved_model, "saved_model.pb")):
    raise _LaunchError(f"{saved_model}: not a SavedModel directory (no saved_model.pb); "
                       "write one with export.py")
  bases = []
  for flag, arg in (("images", images), ("masks", masks)):
    try:
      if transforms.has_glob(arg):
        if not FileSystems.match([arg], limits=[1])[0].metadata_list:
          raise _LaunchError(f"--{flag} {arg} matches no file")
        bases.append((flag, arg, transforms.glob_base(arg)))
      elif not (os.path.exists(arg) if transforms.is_local(arg) else (
          FileSystems.exists(arg)  # an object; else a "folder" (a name prefix) with objects
          or FileSystems.match([arg.rstrip("/") + "/**"], limits=[1])[0].metadata_list)):
        raise _LaunchError(f"--{flag} {arg}: no such file or folder")
      else:
        if transforms.is_folder(arg):
          bases.append((flag, arg, arg))
    except _LaunchError:
      raise
    except Exception as e:  # noqa: BLE001 - e.g. a gs:// path without the gcp extra
      raise _LaunchError(f"--{flag} {arg}: {transforms.one_line(type(e), e)}") from None
  out = transforms.identity(output_dir.rstrip("/") or "/")
  for flag, arg, base in bases:  # a single mask file is read, never searched
    if (transforms.identity(base.rstrip("/") or "/") == out
        or transforms.pattern_reaches(arg, base, output_dir)):
      raise _LaunchError(f"--output_dir {output_dir} is where the {flag} are read from; choose "
                         "another folder (a later run would read the outputs as inputs)")
  if transforms.is_local(output_dir):
    try:
      os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
      raise _LaunchError(f"{output_dir}: cannot create the output folder "
                         f"({e.strerror or e})") from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
      raise _LaunchError(f"{output_dir}: the output folder is not writable")


def _direct_runner_defaults(options, beam_args, intra_op_threads):
  """On the DirectRunner: worker logs at WARNING unless asked otherwise, and with several
  worker processes (``multi_processing``) the cores are split between them unless
  ``intra_op_threads`` is given (each would otherwise use every core for its photo)."""
  from apache_beam.options.pipeline_options import DirectOptions
  from apache_beam.options.pipeline_options import PipelineOptions
  from apache_beam.options.pipeline_options import StandardOptions
  runner = options.view_as(StandardOptions).runner
  if runner not in (None, "DirectRunner", "direct", "BundleBasedDirectRunner"):
    return intra_op_threads, options
  direct = options.view_as(DirectOptions)
  if (intra_op_threads == 0 and direct.direct_running_mode == "multi_processing"
      and direct.direct_num_workers > 1):
    intra_op_threads = max(1, (os.cpu_count() or 1) // direct.direct_num_workers)
  if not any(a.startswith("--default_sdk_harness_log_level") for a in beam_args):
    options = PipelineOptions(beam_args + ["--default_sdk_harness_log_level=WARNING"])
  return intra_op_threads, options


def run(images, masks, output_dir, saved_model, beam_args=(), skip_existing=False,
        max_megapixels=100.0, intra_op_threads=0, model_handler=None, run_id=None,
        verbose=False):
  """Builds and runs the pipeline; returns (counts by status, records glob, worker report):
  the report has ``peak_rss_mb`` (the largest peak resident memory of a worker process),
  ``baseline_rss_mb`` (the largest a worker had before its first photo, model loaded and
  warmed up) and ``setup_cpu_s`` (the largest CPU time a worker used before its first
  photo); each is None when no photo reached a worker.

  Raises ``app.UsageError`` for arguments neither this script nor Beam knows, ``_LaunchError``
  for problems found before the start or a pipeline that failed as a whole."""
  _import_beam()
  import apache_beam as beam
  from apache_beam.metrics.metric import MetricsFilter
  from model.batch import handler as handler_lib
  from model.batch import transforms

  beam_args = list(beam_args)
  options = pipeline_options(beam_args)
  check_arguments(images, masks, output_dir, saved_model, max_megapixels)
  intra_op_threads, options = _direct_runner_defaults(options, beam_args, intra_op_threads)
  # Worker processes (e.g. --direct_running_mode multi_processing) import this checkout.
  path = os.environ.get("PYTHONPATH", "")
  if REPO not in path.split(os.pathsep):
    os.environ["PYTHONPATH"] = REPO + (os.pathsep + path if path else "")
  if model_handler is None:
    model_handler = handler_lib.SavedModelHandler(
        saved_model, intra_op_threads,
        import_tensorflow=functools.partial(cli.import_tensorflow, verbose))
  run_id = run_id or time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)
  prefix = transforms.results_prefix(output_dir, run_id)
  pipeline = beam.Pipeline(options=options)
  _ = (pipeline
       | "InpaintFiles" >> transforms.InpaintFiles(
           images, masks, output_dir, model_handler, max_pixels=limits.max_pixels(max_megapixels),
           skip_existing=skip_existing)
       | "WriteRecords" >> beam.io.WriteToText(prefix, file_name_suffix=".jsonl"))
  try:
    result = pipeline.run()
    result.wait_until_finish()
  except KeyboardInterrupt:
    raise
  except Exception as e:  # noqa: BLE001 - e.g. an unreadable SavedModel, a lost worker
    text = re.sub(r"\s*\[while running [^\]]*\]", "", str(e)).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    raise _LaunchError(f"the pipeline failed: {first}") from None
  metrics = result.metrics().query(MetricsFilter().with_namespace(transforms.NAMESPACE))
  counts = {status: 0 for status in transforms.STATUSES}
  worker = {"peak_rss_mb": None, "baseline_rss_mb": None, "setup_cpu_ms": None}
  for counter in metrics["counters"]:
    if counter.key.metric.name in counts:
      counts[counter.key.metric.name] += counter.committed or counter.attempted or 0
  for dist in metrics["distributions"]:
    value = dist.committed or dist.attempted
    name = dist.key.metric.name
    if name in worker and value is not None and value.count:
      worker[name] = max(worker[name] or 0, value.max)
  cpu_ms = worker.pop("setup_cpu_ms")
  worker["setup_cpu_s"] = None if cpu_ms is None else cpu_ms / 1000
  return counts, prefix + "-*.jsonl", worker


def main(argv):
  logging.getLogger().setLevel(logging.WARNING)
  # The DirectRunner's job service repeats its worker processes' start-up warnings.
  logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)
  # An error that stops the pipeline is reported once, in one line, not as a logged traceback.
  for name in ("apache_beam.runners.common", "apache_beam.runners.worker"):
    logging.getLogger(name).setLevel(logging.CRITICAL)

  def body():
    counts, records, worker = run(FLAGS.images, FLAGS.masks, FLAGS.output_dir,
                                  FLAGS.saved_model, beam_args=argv[1:],
                                  skip_existing=FLAGS.skip_existing,
                                  max_megapixels=FLAGS.max_megapixels,
                                  intra_op_threads=FLAGS.intra_op_threads, verbose=FLAGS.verbose)
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

  return cli.guarded(body, expected=(_LaunchError,))


if __name__ == "__main__":
  # Flags absl does not know are left for Beam's PipelineOptions (checked in run()).
  app.run(main, flags_parser=cli.one_line_flag_parser(FLAGS, known_only=True))
