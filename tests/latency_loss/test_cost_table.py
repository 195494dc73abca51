"""Cost-table JSON round trip, prediction and the errors on incompatible or broken tables."""

import dataclasses
import json

import numpy as np
import pytest

from latency_loss.blocks import (NULL_MODEL_KEY, Block, arch_blocks, context_arch,
                                 reference_arch, space_blocks)
from latency_loss.runtime import RuntimeSpec
from latency_loss.table import CostTable, load_table, table_arrays
from latency_loss.timing import Stats
from models.search_space import Arch, get_space

SPACE = get_space("tiny")
CONTEXT_FACTOR = 1.1
FIXED_EXTRA_MS = 0.3  # What a whole model pays that the null blocks do not show.


def true_ms(table: CostTable, arch: Arch) -> float:
  """The synthetic host's whole-model latency: layers 10% slower than alone, plus a fixed cost
  that the blocks miss."""
  return (table.overhead_ms() + FIXED_EXTRA_MS + sum(
      table.cost_ms(b, context=False) * (CONTEXT_FACTOR if b.kind == "layer" else 1.0)
      for b in arch_blocks(arch)))


def full_table(runtime=RuntimeSpec()) -> CostTable:
  table = CostTable(space=SPACE, runtime=runtime, host={"cpu_model": "test"},
                    protocol={"warmup": 1, "runs": 2, "statistic": "median"})
  for i, block in enumerate(b for b in space_blocks(SPACE) if b.kind != "context"):
    ms = 0.01 if block.null else 1.0 + i
    table.add(block, Stats(ms, 0.0, 0.0, ms, 2))
  for block in (b for b in space_blocks(SPACE) if b.kind == "context"):
    ms = true_ms(table, context_arch(SPACE, block))
    table.add(block, Stats(ms, 0.0, 0.0, ms, 2))
  return table


def test_round_trip(tmp_path):
  table = full_table()
  table.save(tmp_path / "t.json")
  loaded = load_table(tmp_path / "t.json", expect=RuntimeSpec())
  assert loaded.to_dict() == table.to_dict()
  assert not list(tmp_path.glob("*.tmp")), "atomic save leaves no temp file"


def test_the_cost_model_fitted_on_two_depths_predicts_every_arch():
  table = full_table()
  assert table.context_factor(64) == pytest.approx(CONTEXT_FACTOR)
  for seed in range(8):
    arch = SPACE.random_arch(np.random.default_rng(seed))
    assert table.predict_ms(arch) == pytest.approx(true_ms(table, arch))
  arch = Arch(2, 64, (1, 2), (128, 64))
  net = lambda b: table.entries[b.key]["ms"] - table.entries[b.as_null().key]["ms"]
  assert table.predict_ms(arch, context=False) == pytest.approx(
      table.entries[NULL_MODEL_KEY]["ms"] + sum(net(b) for b in arch_blocks(arch)))
  assert len(arch_blocks(arch)) == 4


def test_a_table_with_one_context_model_keeps_the_isolated_fixed_cost():
  table = full_table()
  for h in SPACE.hidden_choices:  # As built before tables had two depths.
    del table.entries[Block("context", h, depth=SPACE.depth_choices[0]).key]
  arch = context_arch(SPACE, Block("context", 64))  # The one context model left: exact there.
  assert table.predict_ms(arch) == pytest.approx(true_ms(table, arch))
  isolated = table.overhead_ms() + sum(table.cost_ms(b) for b in arch_blocks(arch)
                                       if b.kind != "layer")
  assert table.fixed_ms(arch.hidden_size) == pytest.approx(isolated)


def test_reference_arch_mixes_choices():
  arch = reference_arch(get_space("minilm"), 256)
  arch.validate(get_space("minilm"))
  assert arch.num_layers == 6 and arch.heads[0] == 2 and arch.heads[-1] == 12
  assert arch.ffn[0] == 1536 and arch.ffn[-1] == 256


def test_block_keys_unique_and_complete():
  keys = [b.key for b in space_blocks(SPACE)]
  # The null model; per hidden size 5 blocks and nulls, 2 x 2 layers, 2 context models.
  assert len(keys) == len(set(keys)) == 1 + 2 * 5 + 2 * 2 * 2 + 2 * 2
  assert Block("layer", 64, 2, 128).key == "layer/h64_a2_f128"
  assert Block("context", 64, depth=1).key == "context/h64_d1"


@pytest.mark.parametrize("change,match", [
    (dict(threads=4), "threads"), (dict(precision="int8"), "precision"),
    (dict(xnnpack=False), "xnnpack"), (dict(delegate="/x.so"), "delegate"),
])
def test_runtime_mismatch_raises(tmp_path, change, match):
  full_table().save(tmp_path / "t.json")
  with pytest.raises(ValueError, match=f"t.json.*{match}"):
    load_table(tmp_path / "t.json", expect=dataclasses.replace(RuntimeSpec(), **change))


def test_backend_mismatch_raises():
  with pytest.raises(ValueError, match="backend"):
    full_table().check_compatible(SPACE, RuntimeSpec(backend="xla"))


def test_seq_len_mismatch_raises():
  with pytest.raises(ValueError, match="seq_len: 32 != 16"):
    full_table().check_compatible(dataclasses.replace(SPACE, seq_len=32), RuntimeSpec())


def test_missing_entry_raises(tmp_path):
  table = full_table()
  del table.entries["layer/h64_a2_f128"]
  table.save(tmp_path / "t.json")
  with pytest.raises(ValueError, match="layer/h64_a2_f128"):
    load_table(tmp_path / "t.json", expect=RuntimeSpec())
  with pytest.raises(ValueError, match="layer/h64_a2_f128"):
    table_arrays(table, SPACE)
  with pytest.raises(ValueError, match="layer/h64_a2_f128"):
    table.predict_ms(Arch(1, 64, (2,), (128,)))


def test_a_table_of_another_quantization_recipe_is_refused():
  runtime = RuntimeSpec(precision="int8_full")
  table = full_table(runtime)
  table.host["quantization_recipe"] = "int8_full@sha256:0000000000000000"
  with pytest.raises(ValueError, match=r"host.quantization_recipe: 'int8_full@sha256:\w+' != "
                     r"'int8_full@sha256:0+' \(its blocks were quantized with another recipe"):
    table.check_compatible(SPACE, runtime)
  table.host.update(runtime.quantization_facts())  # As the builder records it.
  table.check_compatible(SPACE, runtime)


def test_larger_job_space_raises():
  bigger = dataclasses.replace(SPACE, ffn_choices=(64, 96, 128))
  with pytest.raises(ValueError, match="f96"):
    full_table().check_compatible(bigger, RuntimeSpec())


def test_malformed_files_raise(tmp_path):
  (tmp_path / "bad.json").write_text('{"format_version": 1, "entries": {')
  with pytest.raises(ValueError, match="bad.json.*malformed JSON"):
    load_table(tmp_path / "bad.json")
  d = full_table().to_dict()
  del d["runtime"]
  (tmp_path / "nort.json").write_text(json.dumps(d))
  with pytest.raises(ValueError, match=r"nort.json.*\['runtime'\]"):
    load_table(tmp_path / "nort.json")
  d = full_table().to_dict()
  d["format_version"] = 99
  (tmp_path / "v.json").write_text(json.dumps(d))
  with pytest.raises(ValueError, match="format_version 99"):
    load_table(tmp_path / "v.json")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.5])
def test_an_entry_that_is_not_a_latency_is_named(tmp_path, bad):
  d = full_table().to_dict()
  key = sorted(d["entries"])[3]
  d["entries"][key]["ms"] = bad
  (tmp_path / "t.json").write_text(json.dumps(d))  # Python writes NaN and Infinity.
  with pytest.raises(ValueError, match=f"t.json: entry '{key}' has ms={bad}; a latency is "
                                       "finite and >= 0"):
    load_table(tmp_path / "t.json")


def test_a_block_timed_faster_than_its_null_block_costs_zero():
  table = full_table()
  block = Block("layer", 64, 2, 128)
  table.entries[block.key]["ms"] = table.entries[block.as_null().key]["ms"] / 2  # Noise.
  assert table.cost_ms(block) == 0.0
  assert table.negative_net_blocks() == [block.key]
  arch = Arch(2, 64, (2, 2), (128, 128))
  assert table.predict_ms(arch) >= table.overhead_ms()
