"""What the benchmark tables say about the machine they were measured on."""


def cpu_model():
  """The CPU's model name from /proc/cpuinfo, or "unknown" where there is none (not Linux)."""
  try:
    with open("/proc/cpuinfo") as f:
      return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    return "unknown"
