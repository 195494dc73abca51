"""benchmark_model log parsing, block export and log ingestion (no phone needed)."""

import json
import pathlib
import subprocess

import pytest

from latency_loss.backends import android
from latency_loss.runtime import RuntimeSpec
from latency_loss.table import load_table
from latency_loss.timing import TimingProtocol
from models.search_space import get_space

SAMPLE = (pathlib.Path(__file__).parent / "fixtures" / "benchmark_model_output.txt").read_text()


def test_parses_recorded_output():
  parsed = android.parse_benchmark_log(SAMPLE)
  assert parsed["statistic"] == "mean"
  assert parsed["ms"] == pytest.approx(6.10237)
  assert parsed["runs"] == 100  # the timed runs, not the 20 warm-up runs
  assert parsed["std_ms"] == pytest.approx(0.121)
  assert parsed["min_ms"] == pytest.approx(5.987)
  assert parsed["init_ms"] == pytest.approx(41.322)
  assert parsed["warmup_avg_ms"] == pytest.approx(6.31745)


def test_prefers_median_when_present():
  text = SAMPLE.replace("avg=6102.37 std=121", "avg=6102.37 std=121 p5=6000 median=6090 p95=6300")
  parsed = android.parse_benchmark_log(text)
  assert (parsed["statistic"], parsed["ms"]) == ("median", pytest.approx(6.09))


def test_failed_run_raises():
  text = "INFO: STARTING!\nERROR: Failed to allocate tensors!\nERROR: Benchmarking failed.\n"
  with pytest.raises(ValueError, match="x.log.*no benchmark_model timings.*Benchmarking failed"):
    android.parse_benchmark_log(text, source="x.log")


def test_script_is_valid_bash():
  subprocess.run(["bash", "-n", android.SCRIPT], check=True)


def test_export_then_ingest_builds_table(tmp_path):
  space, runtime = get_space("tiny"), RuntimeSpec(backend="android")
  protocol = TimingProtocol(warmup=20, runs=100)
  table_path = str(tmp_path / "cost_table.json")
  android.build_or_ingest(space, runtime, protocol, str(tmp_path), "", table_path, {})
  manifest = json.loads((tmp_path / "android" / android.MANIFEST).read_text())
  models = sorted(p.stem for p in (tmp_path / "android" / "models").glob("*.tflite"))
  assert models == sorted(manifest)
  assert (tmp_path / "android" / "android_benchmark.sh").exists()
  logs = tmp_path / "android" / "logs"
  logs.mkdir()
  for i, name in enumerate(manifest):  # distinct fake timings per block
    (logs / f"{name}.log").write_text(SAMPLE.replace("avg): 6102.37", f"avg): {1000 + i}"))
  android.build_or_ingest(space, runtime, protocol, str(tmp_path), str(logs), table_path, {})
  table = load_table(table_path, expect=runtime)
  assert table.missing() == [] and table.protocol["statistic"] == "mean"
  assert sorted(e["ms"] for e in table.entries.values()) == [
      pytest.approx((1000 + i) / 1e3) for i in range(len(manifest))]
  assert table.predict_ms(space.largest_arch()) > 0


def test_script_command_maps_runtime():
  runtime = RuntimeSpec(backend="android", threads=4, xnnpack=False, delegate="gpu")
  command = android.script_command(runtime, TimingProtocol(5, 50), "/d")
  assert command.startswith("/d/") and command.endswith("/d/models /d/logs 4 false true 50 5")
  host = android.script_command(runtime, TimingProtocol(5, 50), "/d", runner="host")
  assert host.startswith("BENCHMARK_RUNNER=host /d/")
  with pytest.raises(ValueError, match="runner 'usb'"):
    android.script_command(runtime, TimingProtocol(5, 50), "/d", runner="usb")


def test_the_phone_path_on_this_host_builds_a_valid_table(benchmark_tool_table):
  # Real benchmark_litert_model runs with its default random inputs (int32 in -128..127), not a
  # recorded log: every block ran (the graphs clamp their lookup indices) and was ingested.
  table = load_table(str(benchmark_tool_table), expect=RuntimeSpec(backend="android"))
  assert table.missing() == [] and table.protocol["statistic"] == "median"
  assert table.host["device"] == android.RUNNERS["host"]
  assert {e["tool"] for e in table.entries.values()} == {"benchmark_litert_model"}
  assert all(e["runs"] == 5 and e["ms"] >= 0 for e in table.entries.values())
  logs = benchmark_tool_table.parent / "android" / "logs"
  assert sorted(p.stem for p in logs.glob("*.log")) == sorted(
      json.loads((logs.parent / android.MANIFEST).read_text()))
