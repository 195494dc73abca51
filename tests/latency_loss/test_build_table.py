"""The runlocal table build end to end (real LiteRT timings of a tiny space), and resuming."""

import math
import os
import pathlib
import subprocess
import sys

import pytest

from configs import cost_table as cost_table_config
from latency_loss import builder, host
from latency_loss.backends import base as backends
from latency_loss.blocks import space_blocks
from latency_loss.runtime import RuntimeSpec
from latency_loss.table import load_table
from models import workdirs
from models.search_space import get_space

REPO = pathlib.Path(__file__).parents[2]


@pytest.fixture(scope="module")
def config():
  return cost_table_config.get_config("runlocal")


def test_runlocal_builds_complete_table(tmp_path, config):
  table = builder.build_table(config, str(tmp_path))
  loaded = load_table(str(tmp_path / builder.TABLE_NAME),
                      expect=RuntimeSpec.from_config(config))
  assert loaded.missing() == []
  assert loaded.host["cpu_count"] >= 1 and loaded.host["litert"]
  assert loaded.protocol == {"warmup": 2, "runs": 5, "min_seconds": 0.0, "statistic": "median",
                             "priority": "realtime", "max_other_load": 0.25, "retries": 0,
                             "retry_wait_s": 2.0}
  # The level reached: every entry's, and the table's lowest (as root: real-time).
  levels = {e["priority"] for e in loaded.entries.values()}
  assert len(levels) == 1 and loaded.host["timing_priority"] in levels
  assert all(e["ms"] > 0 and e["other_load"] >= 0 for e in loaded.entries.values())
  # Finite, of any sign: net costs of microsecond blocks are mostly timing noise.
  assert math.isfinite(loaded.predict_ms(get_space("tiny").largest_arch()))
  assert table.entries == loaded.entries


def test_resume_keeps_entries_and_measures_only_missing(tmp_path, config, monkeypatch):
  builder.build_table(config, str(tmp_path))
  path = tmp_path / builder.TABLE_NAME
  table = load_table(str(path))
  dropped = space_blocks(table.space)[-1].key
  del table.entries[dropped]
  for entry in table.entries.values():  # None contended: none is timed again at the end.
    entry["other_load"] = 0.0
  table.save(str(path))
  kept = dict(table.entries)
  prepared = []
  original = backends.make_backend

  def spy(*args):
    backend = original(*args)
    block_call = backend.block_call
    backend.block_call = lambda block: prepared.append(block.key) or block_call(block)
    return backend

  monkeypatch.setattr(backends, "make_backend", spy)
  resumed = builder.build_table(config, str(tmp_path))
  # The reference, to time against in the units the table's entries are in, then the missing
  # block; the reference keeps its first quiet latency.
  assert prepared == [table.host["reference"]["key"], dropped]
  assert resumed.host["reference"]["quiet_ms"] == table.host["reference"]["quiet_ms"]
  assert {k: v for k, v in resumed.entries.items() if k != dropped} == {
      k: v for k, v in kept.items() if k != dropped}


def test_resume_with_other_settings_is_refused_and_changes_nothing(tmp_path, config, snapshot):
  builder.build_table(config, str(tmp_path))
  before = snapshot(tmp_path)
  other = cost_table_config.get_config("runlocal,threads=1")
  with pytest.raises(workdirs.WorkdirMismatchError, match="threads: 2 in the workdir, 1 now"):
    builder.build_table(other, str(tmp_path))
  assert snapshot(tmp_path) == before


def test_build_seconds_count_the_runs_before_a_resume(tmp_path, config):
  builder.build_table(config, str(tmp_path))
  path = tmp_path / builder.TABLE_NAME
  table = load_table(str(path))
  del table.entries[space_blocks(table.space)[-1].key]
  table.host["build_seconds"] = 1000.0  # As if the killed run had timed for 1000 s.
  table.save(str(path))
  assert 1000.0 < builder.build_table(config, str(tmp_path)).host["build_seconds"] < 1100.0


def test_config_parsing():
  config = cost_table_config.get_config("space=bert_base,precision=int8,xnnpack=0,threads=1")
  assert (config.space, config.precision, config.xnnpack, config.threads) == (
      "bert_base", "int8", False, 1)
  with pytest.raises(ValueError, match="bogus"):
    cost_table_config.get_config("bogus=1")


def test_tables_record_the_cpu_and_another_cpu_is_named(tmp_path, config):
  table = builder.build_table(config, str(tmp_path))
  assert table.host["cpu_identity"] == host.cpu_identity()
  assert host.other_cpu(table.host) is None
  other = {**table.host, "cpu_identity": {**table.host["cpu_identity"], "simd": ["avx2"]}}
  assert "measured on another CPU: simd ['avx2'] (table)" in host.other_cpu(other)
  assert "does not record its CPU" in host.other_cpu({"cpu_model": "AMD EPYC"})


def _build_table_log(workdir, *flags) -> str:
  # As from a user's shell: this test process imported jax, which sets TF_CPP_MIN_LOG_LEVEL=1.
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  result = subprocess.run(
      [sys.executable, "-m", "latency_loss.build_table", "--config=configs/cost_table.py:runlocal",
       f"--workdir={workdir}", *flags], cwd=REPO, capture_output=True, text=True, timeout=600,
      env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout + result.stderr


def test_a_refused_resume_is_one_line_and_new_run_starts_beside_it(tmp_path):
  _build_table_log(tmp_path)
  before = (tmp_path / builder.TABLE_NAME).read_bytes()
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  command = [sys.executable, "-m", "latency_loss.build_table",
             "--config=configs/cost_table.py:runlocal", f"--workdir={tmp_path}",
             "--config.threads=1"]
  refused = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                           env=env)
  assert refused.returncode == 1 and "Traceback" not in refused.stderr
  assert "threads: 2 in the workdir, 1 now" in refused.stderr and "--new_run" in refused.stderr
  assert (tmp_path / builder.TABLE_NAME).read_bytes() == before
  fresh = subprocess.run([*command, "--new_run"], cwd=REPO, capture_output=True, text=True,
                         timeout=600, env=env)
  assert fresh.returncode == 0, fresh.stderr[-3000:]
  assert load_table(str(tmp_path / "run_1" / builder.TABLE_NAME)).runtime.threads == 1
  assert (tmp_path / builder.TABLE_NAME).read_bytes() == before


def test_the_default_log_has_progress_but_no_converter_chatter(tmp_path):
  # A TFLite conversion per block: TensorFlow's C++ logs two warnings for each unless quiet.
  blocks = len(space_blocks(get_space("tiny")))
  quiet = _build_table_log(tmp_path / "quiet")
  assert f"[{blocks}/{blocks}]" in quiet and "Table complete" in quiet
  assert quiet.count(f"/{blocks}] ") < blocks  # A progress line every ~30 s, not one per block.
  assert "Ignored output_format" not in quiet and "drop_control_dependency" not in quiet
  # --verbosity asks for TensorFlow's own lines back.
  assert "Ignored output_format" in _build_table_log(tmp_path / "verbose", "--verbosity=1")
