"""Builds a latency cost table of every block of a search space (the logic of
`python -m latency_loss.build_table`).

Writes DIR/cost_table.json, saved after every block (atomically), so a killed build resumes
where it stopped when run again with the same workdir. For runtime=android, the first run
writes DIR/android/ (one .tflite per block + run_benchmarks.sh); after running the script
with a phone attached, run again with --config.android_logs=DIR/android/logs to ingest.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
import time

import ml_collections
from absl import logging

from latency_loss import host
from latency_loss.backends import base as backends
from latency_loss.backends.base import LatencyBackend
from latency_loss.blocks import Block, reference_block, space_blocks
from latency_loss.runtime import RuntimeSpec
from latency_loss.table import CostTable, load_table
from latency_loss.timing import (LEVELS, Reference, Stats, TimingProtocol, reachable_priority,
                                 time_callable)
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


@dataclasses.dataclass
class BlockTimer:
  """How a build times each block: on `backend`, against `reference` (None: alone), waiting
  (within `waiter`'s budget) for other processes to go quiet after a contended measurement."""
  backend: LatencyBackend
  protocol: TimingProtocol
  reference: Reference | None
  waiter: host.QuietWaiter

  def measure(self, block: Block) -> Stats:
    stats = backends.measure(self.backend.block_call(block), self.protocol, self.reference)
    if self.contended(stats.other_load):
      self.waiter.wait()  # Before the next block.
    return stats

  def contended(self, other_load: float) -> bool:
    return other_load > self.protocol.max_other_load


def open_reference(table: CostTable, backend: LatencyBackend, protocol: TimingProtocol,
                   waiter: host.QuietWaiter) -> Reference:
  """The table's reference (its block and quiet latency); on a new table, measured now alone,
  after waiting for a quiet machine, and recorded in `host["reference"]`."""
  reference = backends.table_reference(table.host, backend)
  if reference is not None:
    return reference
  if table.entries:
    raise ValueError("the table's entries were timed without a reference model; rebuild it, or "
                     "resume it with --config.reference=False")
  block = reference_block(table.space)
  call = backend.block_call(block)
  waiter.wait()
  quiet_ms = time_callable(call, protocol)
  table.host["reference"] = {"block": dataclasses.asdict(block), "key": block.key,
                             "quiet_ms": quiet_ms.value(protocol.statistic),
                             "other_load": quiet_ms.other_load}
  logging.info("Reference %s: %.3f ms alone (%s; other load %.2f cores; scheduling %s); every "
               "block is timed against it, in these units.", block.key,
               quiet_ms.value(protocol.statistic), protocol.statistic, quiet_ms.other_load,
               quiet_ms.priority)
  return Reference(call, quiet_ms.value(protocol.statistic))


def measure_missing(table: CostTable, timer: BlockTimer, path: str,
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
    stats = timer.measure(block)
    table.add(block, stats)
    now = time.time()
    table.host["build_seconds"] = round(before + now - start, 1)
    table.save(path)
    line = ("[%d/%d] %-28s %8.3f ms (IQR %.3f, other load %.2f)  elapsed %.0fs ETA %.0fs",
            total - len(todo) + done, total, block.key, table.entries[block.key]["ms"],
            stats.iqr_ms,
            stats.other_load, now - start, (now - start) / done * (len(todo) - done))
    if logged is None or now - logged >= log_every_seconds or done == len(todo):
      logged = now
      logging.info(*line)
    else:
      logging.debug(*line)
  return table


def remeasure_contended(table: CostTable, timer: BlockTimer, path: str) -> list[str]:
  """Times again every block measured while other processes took more than the protocol
  allows, while the machine is quiet (within the waiter's limits); keeps the less contended
  measurement of each. Returns the keys still contended."""
  flagged = [b for b in space_blocks(table.space)
             if timer.contended(table.entries[b.key]["other_load"])]
  if flagged:
    logging.info("Re-measuring %d blocks timed under other load: %s", len(flagged),
                 [b.key for b in flagged[:8]])
  for block in flagged:
    if not timer.waiter.wait():
      logging.info("Not quiet: the contended blocks keep their measurement against the "
                   "reference.")
      break
    stats = timer.measure(block)
    if stats.other_load < table.entries[block.key]["other_load"]:
      table.add(block, stats)
      table.save(path)
  return [b.key for b in flagged if timer.contended(table.entries[b.key]["other_load"])]


def protocol_from_config(config: ml_collections.ConfigDict) -> TimingProtocol:
  """The timing protocol of a cost-table config (configs/cost_table.py)."""
  return TimingProtocol(warmup=config.warmup, runs=config.runs, min_seconds=config.min_seconds,
                        statistic=config.statistic, priority=config.priority,
                        max_other_load=config.max_other_load,
                        retries=config.retries)


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
                                   path, host.host_facts(runtime.quantization_facts()),
                                   config.benchmark_runner)
  backend = backends.make_backend(space, runtime, protocol)
  table = open_table(path, space, runtime, protocol, backend.facts())
  level = reachable_priority(protocol.priority)
  if protocol.priority == "realtime" and level != "realtime":
    logging.warning("Timing at the '%s' scheduling level, not real-time (this process lacks "
                    "CAP_SYS_NICE): other processes' load can bend the table; after a block "
                    "timed under it, the build waits for a quiet machine. Build tables as root, "
                    "or after `sudo setcap cap_sys_nice+ep %s`.", level,
                    os.path.realpath(sys.executable))
  else:
    logging.info("Timing at the '%s' scheduling level%s.", level,
                 ": other processes cannot preempt the timed threads, so the build does not "
                 "wait for a quiet machine" if level == "realtime" else "")
  waiter = host.QuietWaiter(protocol.max_other_load, config.quiet_wait_s,
                            realtime=level == "realtime")
  if not config.reference and "reference" in table.host:
    raise ValueError(f"{path}: its entries were timed against a reference model; resume it "
                     "with --config.reference=True")
  reference = open_reference(table, backend, protocol, waiter) if config.reference else None
  timer = BlockTimer(backend, protocol, reference, waiter)
  measure_missing(table, timer, path)
  finish_table(table, timer, path)
  logging.info("Table complete: %s (%d entries, %.0f s of timing in all)", path,
               len(table.entries), table.host.get("build_seconds", 0.0))
  return table


def finish_table(table: CostTable, timer: BlockTimer, path: str) -> None:
  """Re-measures contended blocks, and records the conditions of the build in `table.host`."""
  table.host["contended_blocks"] = remeasure_contended(table, timer, path)
  if table.host["contended_blocks"]:
    logging.warning("%d blocks were timed while other processes took more than %.2f cores, "
                    "and stayed so when timed again: %s", len(table.host["contended_blocks"]),
                    timer.protocol.max_other_load, table.host["contended_blocks"][:8])
  if timer.reference is not None:
    # Only for the record: the entries are in the units of the reference's first measurement.
    end = time_callable(timer.reference.call, timer.protocol)
    table.host["reference"].update(quiet_ms_at_end=end.value(timer.protocol.statistic),
                                   other_load_at_end=end.other_load)
  table.host["waited_for_quiet_s"] = round(table.host.get("waited_for_quiet_s", 0.0)
                                           + timer.waiter.waited_s, 1)
  table.host["contention_at_end"] = host.contention()
  # The worst level any entry was timed at.
  table.host["timing_priority"] = max((e.get("priority", "normal")
                                       for e in table.entries.values()),
                                      key=LEVELS.index, default="normal")
  table.host["negative_net_blocks"] = table.negative_net_blocks()
  if table.host["negative_net_blocks"]:
    logging.warning("%d blocks were timed faster than their null block (timing noise; they "
                    "count as 0 ms): %s", len(table.host["negative_net_blocks"]),
                    table.host["negative_net_blocks"][:8])
  table.save(path)
