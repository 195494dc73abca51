"""Facts about the host a latency was measured on: its CPU's identity and other load."""

from __future__ import annotations

import os
import platform

import jax
from absl import logging


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
