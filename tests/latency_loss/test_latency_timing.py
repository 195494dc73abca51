"""Timing protocol: warm-up calls, run counts and the robust statistics."""

import itertools
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from latency_loss import timing
from latency_loss.timing import Stats, TimingProtocol, cpu_seconds, time_callable, time_interleaved

NO_RETRIES = {"max_other_load": float("inf")}  # Other load on the test machine must not matter.


def test_calls_warmup_plus_runs():
  calls = []
  stats = time_callable(lambda: calls.append(1), TimingProtocol(warmup=3, runs=7, **NO_RETRIES))
  assert len(calls) == 10 and stats.runs == 7


def test_other_processes_load_is_detected_and_the_measurement_repeated(cpu_hogs):
  cpu_hogs(1)
  calls = []
  protocol = TimingProtocol(warmup=0, runs=5, min_seconds=0.5, max_other_load=0.3, retries=1,
                            retry_wait_s=0.0)
  stats = time_callable(lambda: calls.append(1), protocol)
  assert stats.other_load > 0.5  # The hog keeps one core busy.
  assert len(calls) > stats.runs  # Timed twice: the first attempt was contended.


def test_cpu_seconds_counts_this_process():
  before = cpu_seconds()
  sum(i * i for i in range(2_000_000))
  after = cpu_seconds()
  assert after[1] > before[1] and after[0] >= before[0]


def test_min_seconds_adds_runs():
  stats = time_callable(lambda: None, TimingProtocol(warmup=0, runs=2, min_seconds=0.05,
                                                     **NO_RETRIES))
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
  with pytest.raises(ValueError, match="priority"):
    TimingProtocol(priority="high")


def _scheduling(tid: int = 0) -> tuple[int, int]:
  return os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)


def test_raised_priority_covers_every_thread_and_is_given_back():
  idle = threading.Event()
  before_scope = threading.Thread(target=idle.wait)  # Like a runtime's thread pool...
  before_scope.start()
  try:
    with timing.raised_priority("realtime") as raised:
      if raised.level == "normal":
        pytest.skip("this process may not raise its priority")
      in_scope = threading.Thread(target=idle.wait)  # ...or one started at its first call.
      in_scope.start()
      tids = (threading.get_native_id(), before_scope.native_id, in_scope.native_id)
      started = _scheduling(in_scope.native_id)
      raised.raise_new()
      during = {tid: _scheduling(tid) for tid in tids}
      child = subprocess.run([sys.executable, "-c", "import os; print(os.sched_getscheduler(0), "
                              "os.getpriority(os.PRIO_PROCESS, 0))"],
                             capture_output=True, text=True, check=True).stdout.split()
    after = {tid: _scheduling(tid) for tid in tids}
  finally:
    idle.set()
  normal = _scheduling(threading.get_native_id())
  assert raised.level in ("realtime", "nice-20")
  is_raised = ((lambda s: s[0] & ~os.SCHED_RESET_ON_FORK == os.SCHED_FIFO)
               if raised.level == "realtime" else (lambda s: s[1] == -20))
  assert raised.level == "nice-20" or started == normal  # Not inherited by new threads...
  assert all(is_raised(s) for s in during.values())  # ...until raised.
  assert all(s == normal for s in after.values())  # Given back...
  assert tuple(map(int, child)) == normal  # ...and never passed to processes started.


def test_normal_priority_changes_nothing():
  before = _scheduling()
  with timing.raised_priority("normal") as raised:
    raised.raise_new()
    assert raised.level == "normal" and _scheduling() == before
  stats = time_callable(lambda: None, TimingProtocol(warmup=0, runs=3, priority="normal",
                                                     **NO_RETRIES))
  assert stats.priority == "normal"


def _machine_that_speeds_up(slow_calls: int):
  """Callables sleeping their latency, 3x slower for the first `slow_calls` calls of any."""
  calls = itertools.count()

  def model(ms: float):
    return lambda: time.sleep(ms / 1e3 * (3 if next(calls) < slow_calls else 1))

  return model


def test_interleaving_keeps_ratios_when_the_machine_changes_speed():
  protocol = TimingProtocol(warmup=0, runs=50, **NO_RETRIES)
  model = _machine_that_speeds_up(slow_calls=40)
  stats = time_interleaved({"a": model(2.0), "b": model(4.0)}, protocol)
  assert stats["b"].median_ms / stats["a"].median_ms == pytest.approx(2.0, rel=0.15)
  # One after the other, the same change compares a slow `a` with a fast `b`.
  model = _machine_that_speeds_up(slow_calls=40)
  a, b = time_callable(model(2.0), protocol), time_callable(model(4.0), protocol)
  assert b.median_ms / a.median_ms < 1.0


def test_windows_too_short_for_cpu_accounting_report_no_load(monkeypatch):
  # /proc counts 10 ms ticks: one tick of another process over a millisecond reads as 10 cores.
  readings = iter([(100.00, 5.0), (100.01, 5.0)])
  monkeypatch.setattr(timing, "cpu_seconds", lambda: next(readings))
  stats = time_callable(lambda: None, TimingProtocol(warmup=0, runs=5, min_seconds=0.0,
                                                     max_other_load=0.25, retries=0))
  assert stats.other_load == 0.0


def _work(n: int):
  """A CPU-bound call (pure Python: one core, no sleeping)."""
  return lambda: sum(i * i for i in range(n))


def test_a_measurement_against_a_reference_holds_under_a_cpu_hog_started_during_it(cpu_hogs):
  # Calls of ~20 ms: longer than a scheduler time slice, so a busy core delays most of them.
  # Each measurement lasts >= 2 s, so the hogs (up in ~0.3-0.8 s) load most of it. At the
  # normal priority: real-time threads would keep the hogs off (tests/latency_loss/
  # test_tflite_backend.py), and this is the reference's own effect.
  protocol = TimingProtocol(warmup=2, runs=40, min_seconds=2.0, priority="normal", **NO_RETRIES)
  fn, reference_call = _work(300_000), _work(150_000)
  reference = timing.Reference(reference_call, quiet_ms=time_callable(reference_call,
                                                                      protocol).median_ms)
  quiet = timing.time_relative(fn, reference, protocol)
  alone_quiet = time_callable(fn, protocol)
  # Two per core, busy while the next measurements run.
  cpu_hogs(2 * (os.cpu_count() or 1), delay=0.3, seconds=20)
  loaded = timing.time_relative(fn, reference, protocol)
  alone_loaded = time_callable(fn, protocol)
  # The hogs took the CPU: timed alone, the call was much slower, and the detector saw them...
  assert alone_loaded.median_ms > 1.25 * alone_quiet.median_ms
  assert loaded.other_load > 0.5 and loaded.raw_ms > quiet.raw_ms
  # ...but against the reference, in its quiet units, it measures as on a quiet machine.
  assert loaded.median_ms == pytest.approx(quiet.median_ms, rel=0.1)
