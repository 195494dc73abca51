"""Wall-clock timing protocol shared by all host backends: warm-up, repeated runs, robust stats."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
from absl import logging


STATISTICS = ("median", "min")
# "realtime": time at the highest scheduling priority this process may take (see
# `raised_priority`); "normal": as the process runs.
PRIORITIES = ("realtime", "normal")


@dataclasses.dataclass(frozen=True)
class TimingProtocol:
  """How one latency is measured.

  Attributes:
    warmup: untimed runs first (caches, thread pool, delegate lazy init).
    runs: minimum number of timed runs.
    min_seconds: keep timing until this much time is spent too, so fast blocks get many
      samples and a short burst of other load cannot dominate their median.
    statistic: what a latency is: "median" of the runs (robust to scheduler outliers), or
      "min", the fastest run (a table's latencies are then in minimum-latency units, and
      compared with measurements of the same statistic).
    priority: "realtime" times every thread of the process at the highest scheduling priority
      it may take (`raised_priority`): other processes then cannot preempt the timed threads,
      the only remedy measured for 2-thread XNNPACK beside a busy core
      (bench/results/latency_fidelity_under_load.md); "normal" leaves the priority as it is.
    max_other_load: CPU cores' worth of time other processes may take while we time; above
      it the measurement is repeated (a burst of other load doubles 2-thread latencies).
    retries: repetitions of a contended measurement before keeping its least contended one.
    retry_wait_s: pause before a repetition, for the burst to pass.
  """
  warmup: int = 20
  runs: int = 100
  min_seconds: float = 0.0
  statistic: str = "median"
  priority: str = "realtime"
  max_other_load: float = 0.25
  retries: int = 3
  retry_wait_s: float = 2.0

  def __post_init__(self):
    if self.warmup < 0 or self.runs < 1:
      raise ValueError(f"TimingProtocol needs warmup >= 0 and runs >= 1, got {self}")
    if self.statistic not in STATISTICS:
      raise ValueError(f"TimingProtocol.statistic='{self.statistic}': one of {STATISTICS}")
    if self.priority not in PRIORITIES:
      raise ValueError(f"TimingProtocol.priority='{self.priority}': one of {PRIORITIES}")


@dataclasses.dataclass(frozen=True)
class Stats:
  """Summary of timed runs, in milliseconds.

  A measurement against a `Reference` (`time_relative`) is in the reference's quiet units;
  `raw_ms` and `reference_ms` are the latencies actually timed (under the protocol's
  statistic).
  """
  median_ms: float
  iqr_ms: float    # interquartile range: spread robust to outliers
  mad_ms: float    # median absolute deviation
  min_ms: float
  runs: int
  other_load: float = 0.0  # CPU cores' worth of other processes' time during the runs.
  priority: str = "normal"  # The scheduling priority the runs had (`raised_priority`).
  raw_ms: Optional[float] = None
  reference_ms: Optional[float] = None

  def value(self, statistic: str) -> float:
    """The latency under a protocol's `statistic` ("median" or "min")."""
    return self.min_ms if statistic == "min" else self.median_ms

  @classmethod
  def from_samples(cls, samples_ms: np.ndarray, other_load: float = 0.0, **extra) -> "Stats":
    s = np.asarray(samples_ms, np.float64)
    q1, med, q3 = np.percentile(s, [25, 50, 75])
    return cls(float(med), float(q3 - q1), float(np.median(np.abs(s - med))), float(s.min()),
               int(s.size), float(other_load), **extra)


MIN_ACCOUNTED_SECONDS = 0.25


def cpu_seconds() -> Optional[tuple[float, float]]:
  """(busy CPU seconds of the whole host, CPU seconds of this process, all its threads) from
  /proc; None where /proc is not available (then contention goes undetected)."""
  try:
    with open("/proc/stat") as f:
      user, nice, system, _, _, irq, softirq, steal = map(int, f.readline().split()[1:9])
    with open("/proc/self/stat") as f:
      own = f.read().rsplit(")", 1)[1].split()  # After the command name: field 3 onwards.
  except (OSError, ValueError):
    return None
  tick = os.sysconf("SC_CLK_TCK")
  busy = user + nice + system + irq + softirq + steal
  return busy / tick, (int(own[11]) + int(own[12])) / tick  # utime, stime: fields 14, 15.


def other_load_since(before: Optional[tuple[float, float]], wall: float) -> float:
  """CPU cores' worth of other processes' time since `before` (a `cpu_seconds()`), over `wall`
  seconds; 0 when unknown, or over windows too short for /proc's 10 ms ticks (there one tick
  reads as many cores)."""
  after = cpu_seconds()
  if not (before and after) or wall < MIN_ACCOUNTED_SECONDS:
    return 0.0
  return max(0.0, (after[0] - before[0]) - (after[1] - before[1])) / wall


# Scheduling levels `raised_priority` reaches, best first: SCHED_FIFO (preempts every ordinary
# process at once), nice -20 (ordinary processes get ~1% of a shared core, after a delay), none.
LEVELS = ("realtime", "nice-20", "normal")


def _threads() -> list[int]:
  """The ids of this process's threads (none where /proc is not available)."""
  try:
    return [int(tid) for tid in os.listdir("/proc/self/task")]
  except OSError:
    return []


def _raise_thread(tid: int) -> str:
  """Raises one thread to the best level it may take; returns the level."""
  try:
    # Lowest real-time priority, not inherited by processes (nor threads) started meanwhile.
    os.sched_setscheduler(tid, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(1))
    return "realtime"
  except OSError:  # No CAP_SYS_NICE (or RLIMIT_RTPRIO): try the best ordinary priority.
    pass
  try:
    os.setpriority(os.PRIO_PROCESS, tid, -20)
    return "nice-20"
  except OSError:
    return "normal"


class RaisedThreads:
  """This process's threads raised by `raised_priority`, and how to give their scheduling back.

  Attributes:
    wanted: the protocol's priority ("realtime" or "normal": then nothing is raised).
    saved: thread id -> (policy, param, nice) before it was raised.
    levels: the level each raised thread reached.
  """

  def __init__(self, wanted: str):
    self.wanted = wanted
    self.saved: dict[int, tuple] = {}
    self.levels: list[str] = []

  @property
  def level(self) -> str:
    """The worst level (`LEVELS`) over the raised threads."""
    return max(self.levels or ["normal"], key=LEVELS.index)

  def raise_new(self) -> None:
    """Raises the threads not raised yet: a runtime may start its thread pool at its first
    call, inside the timed scope (threads are not created at a raised priority: see
    `_raise_thread`)."""
    if self.wanted == "normal" or not hasattr(os, "sched_setscheduler"):
      return
    for tid in _threads():
      if tid in self.saved:
        continue
      try:
        self.saved[tid] = (os.sched_getscheduler(tid), os.sched_getparam(tid),
                           os.getpriority(os.PRIO_PROCESS, tid))
      except OSError:  # The thread has ended.
        continue
      self.levels.append(_raise_thread(tid))

  def restore(self) -> None:
    for tid, (policy, param, nice) in self.saved.items():
      try:
        os.sched_setscheduler(tid, policy, param)
        os.setpriority(os.PRIO_PROCESS, tid, nice)
      except OSError:
        pass  # The thread has ended.


@contextlib.contextmanager
def raised_priority(priority: str) -> Iterator[RaisedThreads]:
  """Every thread of this process (the runtime's thread pool included) at the highest
  scheduling priority it may take, for the duration; yields the `RaisedThreads` (its `level`:
  the level reached, the worst over the threads). Threads started meanwhile run at the normal
  priority until `raise_new()`.

  On a 2-core machine with one core busy, 2-thread XNNPACK calls at the normal priority took
  twice as long, and calls of different sizes unevenly, so no reference model cancels it; with
  SCHED_FIFO, timed against a reference, blocks took what they took on a quiet machine and
  whole models ~5% more (bench/results/latency_fidelity_under_load.md). Real-time threads
  keep the CPU from other processes while timing, within the kernel's real-time throttle (by
  default 5% of each second stays for them); every thread gets its scheduling back on exit. Needs CAP_SYS_NICE (root, or
  `setcap`); without it, nice -20 needs RLIMIT_NICE; otherwise the level is "normal" and
  load is only detected (`other_load_since`).
  """
  raised = RaisedThreads(priority)
  try:
    raised.raise_new()
    yield raised
  finally:
    raised.restore()


def reachable_priority(priority: str) -> str:
  """The level (`LEVELS`) `raised_priority(priority)` reaches in this process now."""
  with raised_priority(priority) as raised:
    return raised.level


def _time_rounds(fns: Sequence[Callable[[], object]],
                 protocol: TimingProtocol) -> tuple[list[np.ndarray], float, str]:
  """Each of `fns` timed, calling them in turn (one call each per round), at the protocol's
  priority: the samples (ms) of each, the other processes' load meanwhile, and the
  scheduling level the runs had."""
  with raised_priority(protocol.priority) as raised:
    for fn in fns:
      for _ in range(protocol.warmup):
        fn()
    raised.raise_new()  # Thread pools started by the first calls.
    samples = [[] for _ in fns]
    before, wall = cpu_seconds(), time.perf_counter()
    deadline = wall + protocol.min_seconds
    while len(samples[0]) < protocol.runs or time.perf_counter() < deadline:
      for fn, fn_samples in zip(fns, samples):
        start = time.perf_counter()
        fn()
        fn_samples.append(time.perf_counter() - start)
    other = other_load_since(before, time.perf_counter() - wall)
  return [np.array(s) * 1e3 for s in samples], other, raised.level


def _least_contended(measure: Callable[[], tuple[list[np.ndarray], float, str]],
                     protocol: TimingProtocol) -> tuple[list[np.ndarray], float, str]:
  """`measure()` (a `_time_rounds`), repeated while other processes take more than
  `protocol.max_other_load` cores (up to `protocol.retries` times); the least contended
  result."""
  best = None
  for attempt in range(protocol.retries + 1):
    result = measure()
    if best is None or result[1] < best[1]:
      best = result
    if result[1] <= protocol.max_other_load:
      return result
    logging.warning("Other processes took %.2f cores while timing (limit %.2f); %s",
                    result[1], protocol.max_other_load,
                    f"retrying in {protocol.retry_wait_s:g} s" if attempt < protocol.retries
                    else "keeping the least contended measurement")
    if attempt < protocol.retries:
      time.sleep(protocol.retry_wait_s)
  return best


def time_callable(fn: Callable[[], object], protocol: TimingProtocol) -> Stats:
  """Times `fn()` under `protocol` with a monotonic high-resolution clock.

  While other processes take more than `protocol.max_other_load` cores, the measurement is
  repeated (up to `protocol.retries` times); the least contended one is returned, its
  `other_load` recorded.
  """
  samples, other, level = _least_contended(lambda: _time_rounds([fn], protocol), protocol)
  return Stats.from_samples(samples[0], other, priority=level)


def time_interleaved(fns: Mapping[str, Callable[[], object]],
                     protocol: TimingProtocol) -> dict[str, Stats]:
  """Times several callables in alternation, one call of each per round, under `protocol`.

  Latencies measured one after the other are not comparable on a machine whose speed changes
  during the measurement (on shared cloud VMs, 2-thread latencies were seen to switch between two
  levels 15% apart every few seconds, with no other process running): interleaved, every
  callable sees the same mix of levels, so their ratios hold. `protocol.runs` and `min_seconds`
  count rounds; contention is handled as in `time_callable`.
  """
  samples, other, level = _least_contended(lambda: _time_rounds(list(fns.values()), protocol),
                                           protocol)
  return {name: Stats.from_samples(s, other, priority=level) for name, s in zip(fns, samples)}


@dataclasses.dataclass(frozen=True)
class Reference:
  """A fixed model every measurement is timed against, and its latency on a quiet machine.

  Attributes:
    call: one call of the reference model.
    quiet_ms: its median latency measured on a quiet machine (the units of a table).
  """
  call: Callable[[], object]
  quiet_ms: float


def time_relative(fn: Callable[[], object], reference: Reference,
                  protocol: TimingProtocol) -> Stats:
  """Times `fn` interleaved with the reference (one call of each per round), in the
  reference's quiet units (`reference.quiet_ms` is its latency under `protocol.statistic`).

  "median": the per-round ratio fn / reference, whose median the result's `median_ms` is. The
  machine's speed levels slow both calls of a round alike, and cancel. "min": fn's runs over
  the reference's fastest, whose minimum (`min_ms`) is the ratio of the fastest runs. Load from
  busy processes cancels too for single-threaded calls (tests/latency_loss), but not for
  2-thread XNNPACK with one of two cores busy: it delays calls of different lengths unevenly
  (the protocol's "realtime" priority keeps that load off the timed threads instead).
  The measurement is not repeated under load; its `other_load` is recorded for the caller to
  flag. `raw_ms` and `reference_ms` are the two calls' own latencies under the statistic.
  """
  (fn_ms, reference_ms), other, level = _time_rounds([fn, reference.call], protocol)
  latency = np.min if protocol.statistic == "min" else np.median
  per_round = reference_ms.min() if protocol.statistic == "min" else reference_ms
  return Stats.from_samples(fn_ms / per_round * reference.quiet_ms, other, priority=level,
                            raw_ms=float(latency(fn_ms)),
                            reference_ms=float(latency(reference_ms)))
