"""Launching the batch pipeline (batch_inpaint.py): Beam options, checks before the start, run.

`run` checks the arguments (unknown Beam options, paths that cannot work) before any worker
starts, builds `transforms.InpaintFiles` with a `handler.SavedModelHandler`, runs it and
returns the counts by status and the workers' memory report. Problems are `LaunchError` (one
line), Beam arguments nobody knows `UnknownArguments`; the CLI turns them into ``error:``
lines with status 1 and 2.
"""
import logging
import os
import re
import secrets
import time

from model import limits

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class LaunchError(Exception):
  """A problem found before the pipeline starts, or one that stopped it (one-line message)."""


class UnknownArguments(ValueError):
  """Arguments that are neither the CLI's flags nor Beam pipeline options (one line)."""


def import_beam():
  """Imports Beam without its import-time warning about optional GCP client libraries."""
  root = logging.getLogger()
  level = root.level
  root.setLevel(logging.ERROR)
  try:
    import apache_beam  # noqa: F401
    from apache_beam.io.filesystems import FileSystems  # noqa: F401
  finally:
    root.setLevel(level)


def unknown_beam_arguments(beam_args):
  """The arguments of ``beam_args`` that no Beam pipeline option takes, parsed with the
  argument parser ``PipelineOptions`` builds from every registered options class (handed to
  ``get_all_options``'s ``add_extra_args_fn``)."""
  from apache_beam.options.pipeline_options import PipelineOptions

  class _Parsed(Exception):  # stops get_all_options once its parser is built
    def __init__(self, unknown):
      super().__init__()
      self.unknown = unknown

  def parse(parser):
    raise _Parsed(parser.parse_known_args(list(beam_args))[1])

  try:
    PipelineOptions(list(beam_args)).get_all_options(add_extra_args_fn=parse)
  except _Parsed as parsed:
    return [str(a) for a in parsed.unknown]
  raise AssertionError("PipelineOptions.get_all_options did not call add_extra_args_fn")


def pipeline_options(beam_args):
  """``PipelineOptions`` from the arguments the CLI did not know. An argument Beam does not
  know either raises `UnknownArguments` (Beam itself drops it with a log line, so a typo in
  an option would pass unnoticed)."""
  from apache_beam.options.pipeline_options import PipelineOptions
  unknown = unknown_beam_arguments(beam_args)
  if any(a.startswith("-") for a in unknown):
    raise UnknownArguments(f"unknown flags: {' '.join(unknown)} (neither this script's flags "
                           "nor Beam pipeline options)")
  if unknown:
    raise UnknownArguments(f"unexpected arguments: {' '.join(unknown)}")
  return PipelineOptions(list(beam_args))


def check_arguments(images, masks, output_dir, saved_model, max_megapixels):
  """Fails early, with one line, on arguments that cannot work (before any worker starts)."""
  from apache_beam.io.filesystems import FileSystems
  from model.batch import transforms
  for name, value in (("images", images), ("masks", masks), ("output_dir", output_dir),
                      ("saved_model", saved_model)):
    if not value:
      raise LaunchError(f"--{name} is required")
  try:
    limits.max_pixels(max_megapixels)
  except ValueError as e:
    raise LaunchError(str(e)) from None
  if not FileSystems.exists(FileSystems.join(saved_model, "saved_model.pb")):
    raise LaunchError(f"{saved_model}: not a SavedModel directory (no saved_model.pb); "
                      "write one with export.py --signatures serving")
  bases = []
  for flag, arg in (("images", images), ("masks", masks)):
    try:
      if transforms.is_pattern(arg):
        if not transforms.match_glob(arg):
          raise LaunchError(f"--{flag} {arg} matches no file")
        bases.append((flag, arg, transforms.glob_base(arg)))
      elif not (os.path.exists(arg) if transforms.is_local(arg) else (
          FileSystems.exists(arg)  # an object; else a "folder" (a name prefix) with objects
          or FileSystems.match([arg.rstrip("/") + "/**"], limits=[1])[0].metadata_list)):
        raise LaunchError(f"--{flag} {arg}: no such file or folder")
      else:
        if transforms.is_folder(arg):
          bases.append((flag, arg, arg))
    except LaunchError:
      raise
    except Exception as e:  # noqa: BLE001 - e.g. a gs:// path without the gcp extra
      raise LaunchError(f"--{flag} {arg}: {transforms.one_line(type(e), e)}") from None
  out = transforms.identity(output_dir.rstrip("/") or "/")
  for flag, arg, base in bases:  # a single mask file is read, never searched
    if (transforms.identity(base.rstrip("/") or "/") == out
        or transforms.pattern_reaches(arg, base, output_dir)):
      raise LaunchError(f"--output_dir {output_dir} is where the {flag} are read from; choose "
                        "another folder (a later run would read the outputs as inputs)")
  if transforms.is_local(output_dir):
    try:
      os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
      raise LaunchError(f"{output_dir}: cannot create the output folder "
                        f"({e.strerror or e})") from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
      raise LaunchError(f"{output_dir}: the output folder is not writable")


def direct_runner_defaults(options, beam_args, intra_op_threads):
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
        import_tensorflow=None):
  """Builds and runs the pipeline; returns (counts by status, records glob, worker report):
  the report has ``peak_rss_mb`` (the largest peak resident memory of a worker process),
  ``baseline_rss_mb`` (the largest a worker had before its first photo, model loaded and
  warmed up) and ``setup_cpu_s`` (the largest CPU time a worker used before its first
  photo); each is None when no photo reached a worker.

  ``import_tensorflow``: see `handler.SavedModelHandler` (unused with ``model_handler``).

  Raises `UnknownArguments` for arguments neither the CLI nor Beam knows, `LaunchError`
  for problems found before the start or a pipeline that failed as a whole."""
  import_beam()
  import apache_beam as beam
  from apache_beam.metrics.metric import MetricsFilter
  from model.batch import handler as handler_lib
  from model.batch import transforms

  beam_args = list(beam_args)
  options = pipeline_options(beam_args)
  check_arguments(images, masks, output_dir, saved_model, max_megapixels)
  intra_op_threads, options = direct_runner_defaults(options, beam_args, intra_op_threads)
  # Worker processes (e.g. --direct_running_mode multi_processing) import this checkout.
  path = os.environ.get("PYTHONPATH", "")
  if REPO not in path.split(os.pathsep):
    os.environ["PYTHONPATH"] = REPO + (os.pathsep + path if path else "")
  if model_handler is None:
    model_handler = handler_lib.SavedModelHandler(saved_model, intra_op_threads,
                                                  import_tensorflow=import_tensorflow)
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
    raise LaunchError(f"the pipeline failed: {first}") from None
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
