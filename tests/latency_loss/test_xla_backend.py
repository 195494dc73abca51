"""XLA backend: the runlocal table builds, and settings XLA cannot honour are refused."""

import math

import pytest

from configs import cost_table as cost_table_config
from latency_loss import builder
from latency_loss.backends import base as backends, xla
from latency_loss.blocks import Block
from latency_loss.runtime import RuntimeSpec
from latency_loss.timing import TimingProtocol
from models.search_space import Arch, get_space


def test_runlocal_xla_table(tmp_path):
  config = cost_table_config.get_config("runlocal,runtime=xla")
  table = builder.build_table(config, str(tmp_path))
  assert table.missing() == [] and table.runtime.backend == "xla"
  assert "jax_device" in table.host
  # Finite, of any sign: net costs of microsecond blocks are mostly timing noise.
  assert math.isfinite(table.predict_ms(get_space("tiny").largest_arch()))


def test_block_functions_have_block_shapes():
  space = get_space("tiny")
  fn, args = xla.block_fn(Block("layer", 64, 2, 128), space)
  assert fn(*args).shape == (1, 16, 64)
  fn, args = xla.block_fn(Block("head", 32), space)
  assert fn(*args).shape == (1, 2)
  fn, args = xla.block_fn(Block("embeddings", 32, null=True), space)
  assert fn(*args).shape == (1, 16, 32)


def test_whole_arch_measures():
  space = get_space("tiny")
  runtime = RuntimeSpec(backend="xla", xnnpack=False,
                        threads=cost_table_config.get_config("runtime=xla").threads)
  backend = xla.XLABackend(space, runtime, TimingProtocol(1, 2))
  stats = backends.measure(backend.arch_call(Arch(2, 32, (1, 2), (64, 128))), backend.protocol)
  assert stats.runs == 2 and stats.median_ms > 0


@pytest.mark.parametrize("runtime,match", [
    (RuntimeSpec(backend="xla"), "xnnpack"),
    (RuntimeSpec(backend="xla", xnnpack=False, precision="int8"), "precision"),
    (RuntimeSpec(backend="tflite", xnnpack=False), "backend"),
])
def test_unsupported_runtime_raises(runtime, match):
  with pytest.raises(ValueError, match=match):
    xla.XLABackend(get_space("tiny"), runtime, TimingProtocol())
