"""Wall-clock timing protocol shared by all host backends: warm-up, repeated runs, robust stats."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
from absl import logging


STATISTICS = ("median", "min")


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
      compared with measurements of the same statistic). Neither holds for 2-thread XNNPACK
      under a persistent busy core (bench/results/latency_fidelity_under_load*.md).
    max_other_load: CPU cores' worth of time other processes may take while we time; above
      it the measurement is repeated (a burst of other load doubles 2-thread latencies).
    retries: repetitions of a contended measurement before keeping its least contended one.
    retry_wait_s: pause before a repetition, for the burst to pass.
  """
  warmup: int = 20
  runs: int = 100
  min_seconds: float = 0.0
  statistic: str = "median"
  max_other_load: float = 0.25
  retries: int = 3
  retry_wait_s: float = 2.0

  def __post_init__(self):
    if self.warmup < 0 or self.runs < 1:
      raise ValueError(f"TimingProtocol needs warmup >= 0 and runs >= 1, got {self}")
    if self.statistic not in STATISTICS:
      raise ValueError(f"TimingProtocol.statistic='{self.statistic}': one of {STATISTICS}")


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


def _time_rounds(fns: Sequence[Callable[[], object]],
                 protocol: TimingProtocol) -> tuple[list[np.ndarray], float]:
  """Each of `fns` timed, calling them in turn (one call each per round): the samples (ms) of
  each, and the other processes' load meanwhile."""
  for fn in fns:
    for _ in range(protocol.warmup):
      fn()
  samples = [[] for _ in fns]
  before, wall = cpu_seconds(), time.perf_counter()
  deadline = wall + protocol.min_seconds
  while len(samples[0]) < protocol.runs or time.perf_counter() < deadline:
    for fn, fn_samples in zip(fns, samples):
      start = time.perf_counter()
      fn()
      fn_samples.append(time.perf_counter() - start)
  other = other_load_since(before, time.perf_counter() - wall)
  return [np.array(s) * 1e3 for s in samples], other


def _least_contended(measure: Callable[[], tuple[list[np.ndarray], float]],
                     protocol: TimingProtocol) -> tuple[list[np.ndarray], float]:
  """`measure()`, repeated while other processes take more than `protocol.max_other_load`
  cores (up to `protocol.retries` times); the least contended result."""
  best = None
  for attempt in range(protocol.retries + 1):
    samples, other = measure()
    if best is None or other < best[1]:
      best = samples, other
    if other <= protocol.max_other_load:
      return samples, other
    logging.warning("Other processes took %.2f cores while timing (limit %.2f); %s",
                    other, protocol.max_other_load,
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
  samples, other = _least_contended(lambda: _time_rounds([fn], protocol), protocol)
  return Stats.from_samples(samples[0], other)


def time_interleaved(fns: Mapping[str, Callable[[], object]],
                     protocol: TimingProtocol) -> dict[str, Stats]:
  """Times several callables in alternation, one call of each per round, under `protocol`.

  Latencies measured one after the other are not comparable on a machine whose speed changes
  during the measurement (on shared cloud VMs, 2-thread latencies were seen to switch between two
  levels 15% apart every few seconds, with no other process running): interleaved, every
  callable sees the same mix of levels, so their ratios hold. `protocol.runs` and `min_seconds`
  count rounds; contention is handled as in `time_callable`.
  """
  samples, other = _least_contended(lambda: _time_rounds(list(fns.values()), protocol), protocol)
  return {name: Stats.from_samples(s, other) for name, s in zip(fns, samples)}


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
  2-thread XNNPACK with one of two cores busy: it delays calls of different lengths unevenly.
  The measurement is not repeated under load; its `other_load` is recorded for the caller to
  flag. `raw_ms` and `reference_ms` are the two calls' own latencies under the statistic.
  """
  (fn_ms, reference_ms), other = _time_rounds([fn, reference.call], protocol)
  latency = np.min if protocol.statistic == "min" else np.median
  per_round = reference_ms.min() if protocol.statistic == "min" else reference_ms
  return Stats.from_samples(fn_ms / per_round * reference.quiet_ms, other,
                            raw_ms=float(latency(fn_ms)),
                            reference_ms=float(latency(reference_ms)))
