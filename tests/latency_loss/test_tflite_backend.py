"""LiteRT backend: block graphs, null blocks with matching signatures, runtime options."""

import os

import numpy as np
import pytest
import tensorflow as tf

from latency_loss.backends import tflite
from latency_loss.blocks import Block
from latency_loss import timing
from latency_loss.runtime import RuntimeSpec
from latency_loss.timing import TimingProtocol, time_callable
from models import tf_bert
from models.search_space import get_space

SPACE = get_space("tiny")


def _runner(block, runtime=RuntimeSpec()):
  model = tf_bert.convert_to_tflite(tflite.build_module(block, SPACE))
  return tflite.make_interpreter(model, runtime).get_signature_runner()


@pytest.mark.parametrize("block", [Block("embeddings", 32), Block("layer", 64, 2, 128),
                                   Block("head", 32)])
def test_null_block_has_the_block_signature(block):
  real, null = _runner(block), _runner(block.as_null())
  for side in ("get_input_details", "get_output_details"):
    shapes = lambda r: {k: tuple(v["shape"]) for k, v in getattr(r, side)().items()}
    assert shapes(real) == shapes(null)
  feeds = tflite.random_inputs(null.get_input_details(), SPACE)
  assert all(np.isfinite(v).all() for v in null(**feeds).values())


def test_null_model_maps_tokens_to_logits():
  runner = _runner(Block("model", 32, null=True))
  assert set(runner.get_input_details()) == {"input_ids", "attention_mask", "token_type_ids"}
  assert runner(**tflite.random_inputs(runner.get_input_details(), SPACE))["logits"].shape == (1, 2)


def test_random_inputs_are_valid_tokens():
  runner = _runner(Block("embeddings", 32))
  feeds = tflite.random_inputs(runner.get_input_details(), SPACE)
  assert feeds["input_ids"].max() < SPACE.vocab_size and feeds["input_ids"].dtype == np.int32


def test_xnnpack_off_and_missing_delegate():
  assert _runner(Block("head", 32), RuntimeSpec(xnnpack=False)) is not None
  with pytest.raises(ValueError, match="nonexistent_delegate.so"):
    _runner(Block("head", 32), RuntimeSpec(delegate="/nonexistent_delegate.so"))


class _MatmulChain(tf.Module):
  """A few milliseconds of GEMMs, which XNNPACK splits over its threads."""

  def __init__(self, width: int = 512, depth: int = 8):
    super().__init__()
    rng = np.random.default_rng(0)
    self.weights = [tf.constant(rng.normal(size=(width, width)).astype(np.float32) / width)
                    for _ in range(depth)]
    self.serve = tf.function(self._serve,
                             input_signature=[tf.TensorSpec([64, width], tf.float32)])

  def _serve(self, x):
    for w in self.weights:
      x = tf.nn.relu(tf.matmul(x, w))
    return {"y": x}


def _matmul_call(depth: int):
  runner = tflite.make_interpreter(tf_bert.convert_to_tflite(_MatmulChain(depth=depth)),
                                   RuntimeSpec(threads=2)).get_signature_runner()
  x = np.random.default_rng(0).normal(size=(64, 512)).astype(np.float32)
  return lambda: runner(x=x)


def _normal_over_realtime(call, rounds: int, seconds: float = 0.3) -> float:
  """The median over rounds of `call`'s latency at the normal priority over its latency at
  real-time priority, each timed back to back for `seconds` in turn.

  Alternating cancels the VM's speed levels: against a quiet measurement taken seconds
  earlier, a level switch (seen: 1.5x) hid the hog's slowdown. Single calls alternated do not
  do: a call shorter than a time slice, right after a real-time one, mostly ends before the
  scheduler gives the hog its core back. Windows of 0.1 s were still too short on an Intel Xeon
  host (this test read 1.07 and 1.34, failing 2 of 3 runs; under a standing hog, 1.14-1.66);
  0.3 s windows read 1.55-1.65 in 12 runs of 10 rounds there.
  """
  def window(priority: str) -> float:
    return time_callable(call, TimingProtocol(
        warmup=0, runs=1, min_seconds=seconds, priority=priority,
        max_other_load=float("inf"))).median_ms

  return float(np.median([window("normal") / window("realtime") for _ in range(rounds)]))


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores: one busy, one free")
def test_a_two_thread_call_timed_against_a_reference_holds_under_a_cpu_hog_started_during_it(
    cpu_hogs):
  level = timing.reachable_priority("realtime")
  if level != "realtime":
    pytest.skip(f"this process may not take real-time priority (it reached '{level}')")
  call, reference_call = _matmul_call(depth=8), _matmul_call(depth=4)
  protocol = lambda priority: TimingProtocol(warmup=5, runs=20, min_seconds=2.0,
                                             priority=priority, max_other_load=float("inf"))
  reference = timing.Reference(reference_call,
                               time_callable(reference_call, protocol("realtime")).median_ms)
  quiet = timing.time_relative(call, reference, protocol("realtime"))
  # On the last core, busy from 0.3 s into the next measurement.
  [hog] = cpu_hogs(1, delay=0.3, seconds=30, core=os.cpu_count() - 1)
  loaded = timing.time_relative(call, reference, protocol("realtime"))
  slowdown = _normal_over_realtime(call, rounds=10)
  assert hog.poll() is None  # Busy all along.
  # The hog took one of the two cores: at the normal priority the call was much slower...
  assert slowdown > 1.4
  # ...against the reference at real-time priority, it measures as on a quiet machine (the
  # reference cancels the VM's speed levels, the priority the hog).
  assert loaded.priority == "realtime"
  assert loaded.median_ms == pytest.approx(quiet.median_ms, rel=0.1)
