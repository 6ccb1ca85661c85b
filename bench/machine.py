"""What the benchmark tables say about the machine they were measured on."""
import os



def cpu_model():
  """The CPU's model name from /proc/cpuinfo, or "unknown" where there is none (not Linux)."""
  try:
    with open("/proc/cpuinfo") as f:
      return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    return "unknown"


def memory_gb():
  """Total memory in GB from /proc/meminfo, or None."""
  try:
    with open("/proc/meminfo") as f:
      kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return kib / 2**20
  except (OSError, StopIteration, ValueError):
    return None


def describe():
  """CPU model, cores, memory and the load averages in one line."""
  memory = memory_gb()
  one, five, _ = os.getloadavg()
  return (f"{cpu_model()}, {os.cpu_count()} cores"
          + (f", {memory:.0f} GB" if memory else "") + f"; load average {one:.2f} / {five:.2f}")
