"""Wall-clock timing protocol shared by all host backends: warm-up, repeated runs, robust stats."""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class TimingProtocol:
  """How one latency is measured.

  Attributes:
    warmup: untimed runs first (caches, thread pool, delegate lazy init).
    runs: minimum number of timed runs; the statistic is their median (robust to scheduler
      outliers).
    min_seconds: keep timing until this much time is spent too, so fast blocks get many
      samples and a short burst of other load cannot dominate their median.
    statistic: only "median".
  """
  warmup: int = 20
  runs: int = 100
  min_seconds: float = 0.0
  statistic: str = "median"

  def __post_init__(self):
    if self.warmup < 0 or self.runs < 1:
      raise ValueError(f"TimingProtocol needs warmup >= 0 and runs >= 1, got {self}")
    if self.statistic != "median":
      raise ValueError(f"TimingProtocol.statistic='{self.statistic}': only 'median' is supported")


@dataclasses.dataclass(frozen=True)
class Stats:
  """Summary of timed runs, in milliseconds."""
  median_ms: float
  iqr_ms: float    # interquartile range: spread robust to outliers
  mad_ms: float    # median absolute deviation
  min_ms: float
  runs: int

  @classmethod
  def from_samples(cls, samples_ms: np.ndarray) -> "Stats":
    s = np.asarray(samples_ms, np.float64)
    q1, med, q3 = np.percentile(s, [25, 50, 75])
    return cls(float(med), float(q3 - q1), float(np.median(np.abs(s - med))), float(s.min()),
               int(s.size))


def time_callable(fn: Callable[[], object], protocol: TimingProtocol) -> Stats:
  """Times `fn()` under `protocol` with a monotonic high-resolution clock."""
  for _ in range(protocol.warmup):
    fn()
  samples = []
  deadline = time.perf_counter() + protocol.min_seconds
  while len(samples) < protocol.runs or time.perf_counter() < deadline:
    start = time.perf_counter()
    fn()
    samples.append(time.perf_counter() - start)
  return Stats.from_samples(np.array(samples) * 1e3)
