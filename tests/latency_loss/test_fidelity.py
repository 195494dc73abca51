"""Fidelity statistics and the end-to-end validation of a runlocal table."""

import json

import numpy as np
import pytest

from configs import cost_table as cost_table_config
from latency_loss import builder, fidelity


def test_summarize_statistics():
  s = fidelity.summarize([1.0, 2.19, 2.73, 4.0], [1.0, 2.0, 3.0, 4.4])
  assert s["num_archs"] == 4
  assert s["mape_pct"] == pytest.approx(100 * np.mean([0, 0.095, 0.09, 0.4 / 4.4]))
  assert s["max_abs_error_pct"] == pytest.approx(9.5)
  assert s["within_5pct"] == 0.25 and s["within_10pct"] == 1.0
  assert s["spearman"] == pytest.approx(1.0)
  assert fidelity.summarize([3.0, 2.0, 1.0], [1.0, 2.0, 3.0])["spearman"] == pytest.approx(-1.0)


def test_validate_runlocal_writes_results(tmp_path):
  config = cost_table_config.get_config("runlocal")
  table = builder.build_table(config, str(tmp_path))
  result = fidelity.validate(table, num_archs=3, seed=0, rounds=2)
  assert len(result["records"]) == 3
  for record in result["records"]:
    assert len(record["round_medians_ms"]) == 2
    assert record["measured_ms"] == pytest.approx(np.median(record["round_medians_ms"]))
  assert result["records"][0]["arch"]["num_layers"] == 2  # the largest arch comes first
  out = str(tmp_path / "fidelity")
  fidelity.write_results(result, table, "t.json", out, "python -m latency_loss.validate", 1.0)
  saved = json.loads((tmp_path / "fidelity.json").read_text())
  assert saved["summary"] == result["summary"] and saved["runtime"]["threads"] == 2
  assert (tmp_path / "fidelity.png").stat().st_size > 1000
  assert "python -m latency_loss.validate" in (tmp_path / "fidelity.md").read_text()
