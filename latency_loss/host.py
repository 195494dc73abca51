"""Facts about the host a latency was measured on: its CPU's identity and other load."""

from __future__ import annotations

import os
import platform
import time

import jax
from absl import logging

from latency_loss import timing


def cpu_model() -> str:
  """The host CPU's model name from /proc/cpuinfo (platform.processor() elsewhere)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


# The SIMD extensions LiteRT/XNNPACK and XLA kernels pick by (x86 "flags", Arm "Features"): two
# CPUs named alike ("AMD EPYC") with different sets time the same model differently (VNNI makes
# dynamic-range int8 3x faster).
SIMD_FEATURES = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni",
                 "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "bf16", "sve",
                 "sve2")


def cpu_identity() -> dict[str, object]:
  """What makes two hosts time kernels alike: CPU vendor, family, model and SIMD extensions."""
  fields = {}
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
  except OSError:
    return {"model_name": cpu_model()}
  features = set((fields.get("flags") or fields.get("Features") or "").split())
  return {"model_name": cpu_model(),
          "vendor": fields.get("vendor_id") or fields.get("CPU implementer"),
          "family": fields.get("cpu family") or fields.get("CPU architecture"),
          "model": fields.get("model") or fields.get("CPU part"),
          "simd": sorted(features.intersection(SIMD_FEATURES))}


def other_cpu(table_host: dict[str, object]) -> str | None:
  """Why a host-timed table may not describe this CPU (None when it does)."""
  recorded = table_host.get("cpu_identity")
  if recorded is None:
    return ("it does not record its CPU's identity (built before canao recorded it), so it "
            "cannot be checked against this one")
  here = cpu_identity()
  differences = {k: (recorded.get(k), v) for k, v in here.items() if recorded.get(k) != v}
  return None if not differences else "it was measured on another CPU: " + ", ".join(
      f"{k} {a} (table) vs {b} (here)" for k, (a, b) in differences.items())


def contention(max_load_average: float = 1.0) -> dict[str, object]:
  """Signs that other work shares the CPU (recorded with every table; warned about above
  `max_load_average`)."""
  busy = {"load_average": [round(v, 2) for v in os.getloadavg()]}
  if busy["load_average"][0] > max_load_average:
    logging.warning("CPU contention (%s): timings will be inflated and noisy", busy)
  return busy


def host_facts(backend_facts: dict[str, str]) -> dict[str, object]:
  return {"cpu_model": cpu_model(), "cpu_identity": cpu_identity(), "cpu_count": os.cpu_count(),
          "platform": platform.platform(),
          "python": platform.python_version(), "jax": jax.__version__,
          "contention_at_start": contention(), **backend_facts}


def build_conditions(table_host: dict[str, object]) -> dict[str, object]:
  """What a table's build met on its host (from `table.host`): CPU, scheduling level, other
  load at the start and end, blocks still contended, time spent waiting for quiet. Keys a
  table lacks (older builds, phones) are None."""
  return {"cpu_model": table_host.get("cpu_model"),
          "timing_priority": table_host.get("timing_priority"),
          "load_average_at_start": (table_host.get("contention_at_start") or {}).get(
              "load_average"),
          "load_average_at_end": (table_host.get("contention_at_end") or {}).get("load_average"),
          "contended_blocks": table_host.get("contended_blocks"),
          "waited_for_quiet_s": table_host.get("waited_for_quiet_s"),
          "build_seconds": table_host.get("build_seconds")}


def other_load(seconds: float = 1.0) -> float:
  """CPU cores' worth of other processes' time over the next `seconds` (this one sleeps)."""
  before, start = timing.cpu_seconds(), time.perf_counter()
  time.sleep(seconds)
  return timing.other_load_since(before, time.perf_counter() - start)


class QuietWaiter:
  """Waits for other processes to go quiet: at most `max_wait_s` at a time, `budget_s` in all.

  A table build waits when a measurement was contended, rather than keep timing under load;
  past the limits it goes on and flags what it timed under load, so a machine that is never
  quiet slows a build by at most the budget. A build timed at real-time priority has nothing
  to wait for (`realtime`): other processes cannot preempt its timed threads.
  """

  def __init__(self, max_load: float, budget_s: float, max_wait_s: float = 60.0,
               log_every_s: float = 30.0, realtime: bool = False):
    self.max_load, self.budget_s = max_load, budget_s
    self.max_wait_s, self.log_every_s = max_wait_s, log_every_s
    self.realtime = realtime
    self.waited_s = 0.0

  def wait(self) -> bool:
    """Whether other processes take <= max_load cores (over 1 s windows) now, after waiting
    for it within the limits (always True at real-time priority). Logs a line every
    `log_every_s` while it waits."""
    if self.realtime:
      return True
    start = logged = time.perf_counter()
    while self.waited_s < self.budget_s and time.perf_counter() - start < self.max_wait_s:
      window = time.perf_counter()
      load = other_load(1.0)
      self.waited_s += time.perf_counter() - window
      if load <= self.max_load:
        return True
      if time.perf_counter() - logged >= self.log_every_s:
        logged = time.perf_counter()
        logging.info("Waiting for a quiet machine: other processes take %.2f cores (limit "
                     "%.2f); waited %.0f s (at most %.0f s at a time, %.0f s in all).", load,
                     self.max_load, self.waited_s, self.max_wait_s, self.budget_s)
    if time.perf_counter() - start >= 1.0:
      logging.info("Going on under other load (waited %.0f s in all).", self.waited_s)
    return False
