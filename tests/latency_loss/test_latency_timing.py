"""Timing protocol: warm-up calls, run counts and the robust statistics."""

import numpy as np
import pytest

from latency_loss.timing import Stats, TimingProtocol, time_callable


def test_calls_warmup_plus_runs():
  calls = []
  stats = time_callable(lambda: calls.append(1), TimingProtocol(warmup=3, runs=7))
  assert len(calls) == 10 and stats.runs == 7


def test_min_seconds_adds_runs():
  stats = time_callable(lambda: None, TimingProtocol(warmup=0, runs=2, min_seconds=0.05))
  assert stats.runs > 2


def test_stats_are_robust_to_an_outlier():
  s = Stats.from_samples(np.array([1.0, 1.1, 0.9, 1.0, 100.0]))
  assert s.median_ms == 1.0 and s.min_ms == 0.9 and s.mad_ms == pytest.approx(0.1)
  assert s.iqr_ms == pytest.approx(0.1)


def test_bad_protocol_raises():
  with pytest.raises(ValueError, match="runs"):
    TimingProtocol(runs=0)
  with pytest.raises(ValueError, match="statistic"):
    TimingProtocol(statistic="mean")
