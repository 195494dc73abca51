"""Builds a latency cost table of every block of a search space.

  python -m latency_loss.build_table --config=configs/cost_table.py:space=minilm --workdir=DIR

Writes DIR/cost_table.json, saved after every block (atomically), so a killed build resumes
where it stopped when run again with the same workdir. For backend=android, the first run
writes DIR/android/ (one .tflite per block + run_benchmarks.sh); after running the script
with a phone attached, run again with --config.android_logs=DIR/android/logs to ingest.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time

from absl import app, flags, logging
import jax
import ml_collections
from ml_collections import config_flags

from latency_loss.blocks import space_blocks
from latency_loss.runtime import RuntimeSpec
from latency_loss.table import CostTable, load_table
from latency_loss.timing import TimingProtocol
from models.search_space import SearchSpace, get_space

TABLE_NAME = "cost_table.json"
# The team's marker for "someone is running a long CPU job": timings taken meanwhile are off.
CPU_BUSY_FLAG = "/tmp/canao_cpu_busy"


def runtime_from_config(config: ml_collections.ConfigDict) -> RuntimeSpec:
  return RuntimeSpec(backend=config.backend, threads=config.threads, xnnpack=config.xnnpack,
                     precision=config.precision, delegate=config.delegate,
                     delegate_options=dict(config.delegate_options))


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


def contention() -> dict[str, object]:
  """Signs that other work shares the CPU (recorded with every table; warned about)."""
  busy = {"load_average": [round(v, 2) for v in os.getloadavg()],
          "cpu_busy_flag": os.path.exists(CPU_BUSY_FLAG)}
  if busy["cpu_busy_flag"] or busy["load_average"][0] > 1.0:
    logging.warning("CPU contention (%s): timings will be inflated and noisy", busy)
  return busy


def host_facts(backend_facts: dict[str, str]) -> dict[str, object]:
  return {"cpu_model": cpu_model(), "cpu_identity": cpu_identity(), "cpu_count": os.cpu_count(),
          "platform": platform.platform(),
          "python": platform.python_version(), "jax": jax.__version__,
          "contention_at_start": contention(), **backend_facts}


def make_backend(space: SearchSpace, runtime: RuntimeSpec, protocol: TimingProtocol):
  """The measuring backend; imported lazily so xla jobs never load TensorFlow."""
  if runtime.backend == "tflite":
    from latency_loss.backends.tflite import TFLiteBackend
    return TFLiteBackend(space, runtime, protocol)
  if runtime.backend == "xla":
    from latency_loss.backends.xla import XLABackend
    return XLABackend(space, runtime, protocol)
  raise ValueError(f"backend '{runtime.backend}' cannot measure on this host")


def open_table(path: str, space: SearchSpace, runtime: RuntimeSpec,
               protocol: TimingProtocol, facts: dict[str, str]) -> CostTable:
  """The partial table at `path` if there is one (checked to match the job), else a new one."""
  if os.path.exists(path):
    table = load_table(path, expect=None)
    mismatches = runtime.mismatches(table.runtime)
    if table.space != space:
      mismatches.append("space")
    if table.protocol != dataclasses.asdict(protocol):
      mismatches.append(f"protocol: {protocol} != {table.protocol}")
    if mismatches:
      raise ValueError(f"{path}: existing table is for another job ({'; '.join(mismatches)}); "
                       "use another --workdir")
    logging.info("Resuming %s: %d entries kept", path, len(table.entries))
    return table
  return CostTable(space=space, runtime=runtime, host=host_facts(facts),
                   protocol=dataclasses.asdict(protocol))


def measure_missing(table: CostTable, backend, path: str) -> CostTable:
  """Measures every block the table lacks, saving after each; logs count/total and ETA."""
  todo = [b for b in space_blocks(table.space) if b.key not in table.entries]
  total, start = len(space_blocks(table.space)), time.time()
  for done, block in enumerate(todo, 1):
    stats = backend.measure_block(block)
    table.add(block, stats)
    table.save(path)
    elapsed = time.time() - start
    logging.info("[%d/%d] %-28s %8.3f ms (IQR %.3f)  elapsed %.0fs ETA %.0fs",
                 total - len(todo) + done, total, block.key, stats.median_ms, stats.iqr_ms,
                 elapsed, elapsed / done * (len(todo) - done))
  return table


def build_table(config: ml_collections.ConfigDict, workdir: str) -> CostTable:
  """Builds (or resumes) the table of `config` in `workdir`; returns it."""
  space, runtime = get_space(config.space), runtime_from_config(config)
  protocol = TimingProtocol(warmup=config.warmup, runs=config.runs,
                            min_seconds=config.min_seconds, max_other_load=config.max_other_load,
                            retries=config.retries)
  path = os.path.join(workdir, TABLE_NAME)
  if runtime.backend == "android":
    from latency_loss.backends import android
    return android.build_or_ingest(space, runtime, protocol, workdir, config.android_logs,
                                   path, host_facts({}))
  backend = make_backend(space, runtime, protocol)
  table = open_table(path, space, runtime, protocol, backend.facts())
  start = time.time()
  measure_missing(table, backend, path)
  table.host["contention_at_end"] = contention()
  table.host["build_seconds"] = round(time.time() - start, 1)
  table.save(path)
  logging.info("Table complete: %s (%d entries, %.0fs)", path, len(table.entries),
               time.time() - start)
  return table


def main(argv):
  del argv
  build_table(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  # Defined here, not at import: the pipeline imports this module and has its own --config.
  _CONFIG = config_flags.DEFINE_config_file("config", None, "configs/cost_table.py:ARGS")
  _WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (resumable).")
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
