"""Builds a latency cost table of every block of a search space (the logic of
`python -m latency_loss.build_table`).

Writes DIR/cost_table.json, saved after every block (atomically), so a killed build resumes
where it stopped when run again with the same workdir. For backend=android, the first run
writes DIR/android/ (one .tflite per block + run_benchmarks.sh); after running the script
with a phone attached, run again with --config.android_logs=DIR/android/logs to ingest.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time

import ml_collections
from absl import logging

from latency_loss import host
from latency_loss.backends.base import LatencyBackend, make_backend
from latency_loss.blocks import space_blocks
from latency_loss.runtime import RuntimeSpec
from latency_loss.table import CostTable, load_table
from latency_loss.timing import TimingProtocol
from models import workdirs
from models.search_space import SearchSpace, get_space

TABLE_NAME = "cost_table.json"


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
  return CostTable(space=space, runtime=runtime, host=host.host_facts(facts),
                   protocol=dataclasses.asdict(protocol))


def measure_missing(table: CostTable, backend: LatencyBackend, path: str,
                    log_every_seconds: float = 30.0) -> CostTable:
  """Measures every block the table lacks, saving after each.

  Logs count/total and ETA every `log_every_seconds` and for the first and last blocks; every
  block's own line at --verbosity=1.
  """
  todo = [b for b in space_blocks(table.space) if b.key not in table.entries]
  total, start = len(space_blocks(table.space)), time.time()
  before = table.host.get("build_seconds", 0.0)  # Spent by the runs this one resumes.
  logged = None
  for done, block in enumerate(todo, 1):
    stats = backend.measure_block(block)
    table.add(block, stats)
    now = time.time()
    table.host["build_seconds"] = round(before + now - start, 1)
    table.save(path)
    line = ("[%d/%d] %-28s %8.3f ms (IQR %.3f)  elapsed %.0fs ETA %.0fs",
            total - len(todo) + done, total, block.key, stats.median_ms, stats.iqr_ms,
            now - start, (now - start) / done * (len(todo) - done))
    if logged is None or now - logged >= log_every_seconds or done == len(todo):
      logged = now
      logging.info(*line)
    else:
      logging.debug(*line)
  return table


def protocol_from_config(config: ml_collections.ConfigDict) -> TimingProtocol:
  """The timing protocol of a cost-table config (configs/cost_table.py)."""
  return TimingProtocol(warmup=config.warmup, runs=config.runs, min_seconds=config.min_seconds,
                        max_other_load=config.max_other_load, retries=config.retries)


def build_table(config: ml_collections.ConfigDict, workdir: str) -> CostTable:
  """Builds (or resumes) the table of `config` in `workdir`; returns it.

  Raises:
    models.workdirs.WorkdirMismatchError: `workdir` holds a table of another config.
    models.workdirs.WorkdirBusyError: another job is using `workdir`.
  """
  with workdirs.locked(workdir):
    path = os.path.join(workdir, TABLE_NAME)
    # The phone path's logs are its second phase's input, not another table.
    workdirs.claim(pathlib.Path(workdir), "table",
                   workdirs.config_fields(config, exclude=("android_logs",)), dict,
                   has_results=os.path.exists(path))
    return _build_table(config, workdir, path)


def _build_table(config: ml_collections.ConfigDict, workdir: str, path: str) -> CostTable:
  space, runtime = get_space(config.space), RuntimeSpec.from_config(config)
  protocol = protocol_from_config(config)
  if runtime.backend == "android":
    from latency_loss.backends import android
    return android.build_or_ingest(space, runtime, protocol, workdir, config.android_logs,
                                   path, host.host_facts({}), config.benchmark_runner)
  backend = make_backend(space, runtime, protocol)
  table = open_table(path, space, runtime, protocol, backend.facts())
  measure_missing(table, backend, path)
  table.host["contention_at_end"] = host.contention()
  table.host["negative_net_blocks"] = table.negative_net_blocks()
  if table.host["negative_net_blocks"]:
    logging.warning("%d blocks were timed faster than their null block (timing noise; they "
                    "count as 0 ms): %s", len(table.host["negative_net_blocks"]),
                    table.host["negative_net_blocks"][:8])
  table.save(path)
  logging.info("Table complete: %s (%d entries, %.0f s of timing in all)", path,
               len(table.entries), table.host.get("build_seconds", 0.0))
  return table
