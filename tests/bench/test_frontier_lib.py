"""The frontier's grid on fabricated workdirs: what its report reads, refuses and leaves out.

No job runs here: the searches, retrainings and timings are files written the way the jobs
write them (arch.json, eval.json beside model/, manifest.json, compute.jsonl, latency.json);
the jobs themselves are tested in tests/darts.
"""

import dataclasses
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from bench import frontier_lib
from bench.machine import machine_facts
from darts import layout as layout_lib
from darts.nas import architecture_search
from darts.training import finetune
from models import search_space, workdirs

REPO = pathlib.Path(__file__).parents[2]
SPACE = search_space.get_space("tiny")
BIG = search_space.Arch(2, 64, (2, 2), (128, 128))
SMALL = search_space.Arch(1, 32, (1,), (64,))
# Dev accuracy of each seed's retraining: ours at both targets, and layer-drop's one seed.
OURS = {0: 0.80, 1: 0.84, 2: 0.82}
LAYER_DROPPED = 0.70


def _write_json(path: pathlib.Path, content) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(content))


def _manifest(workdir: pathlib.Path, config) -> None:
  """What a job records before it runs: its config's fields."""
  workdirs.claim(workdir, "train", workdirs.config_fields(config), dict, has_results=False)


def _arch_json(path: pathlib.Path, grid: frontier_lib.Grid, arch, predicted_ms: float) -> None:
  """An arch.json as darts.search (or a baseline) writes it: what retraining reads."""
  _write_json(path, {"task": grid.task, "subnet": str(path.parent / "subnet"),
                     "teacher": grid.teacher, "config": {"data": {"glue_dir": grid.glue_dir}},
                     "arch": dataclasses.asdict(arch), "predicted_ms": predicted_ms,
                     "subnet_metrics_before_retraining": {"accuracy": 0.6}})


def _retrained(grid: frontier_lib.Grid, method: str, index: int, seed: int, accuracy: float,
               epochs: float) -> None:
  directory = grid.retrain_dir(method, index, seed)
  _manifest(directory, grid.retrain_config_for(grid.arch_file(method, index), seed, False))
  _write_json(layout_lib.eval_file(directory / finetune.MODEL_DIR),
              {"metrics": {"accuracy": accuracy}, "num_train_examples": 120, "epochs": epochs})


@pytest.fixture
def grid(tmp_path, tiny_glue_dir, make_cost_table):
  """A finished grid on the tiny space: ours searched once (BIG at 2x, SMALL at 3x), 3 seeds
  each; layer-drop at 2x (SMALL), 1 seed; everything timed; evolution listed but never run."""
  table_path = tmp_path / "table.json"
  table = make_cost_table(SPACE)
  table.save(str(table_path))
  teacher = tmp_path / "teacher" / finetune.MODEL_DIR
  _write_json(layout_lib.eval_file(teacher), {"metrics": {"accuracy": 0.85},
                                              "num_train_examples": 120, "epochs": 3.0})
  grid = frontier_lib.Grid(workdir=tmp_path / "runs", task="sst2", teacher=str(teacher),
                           table_path=str(table_path), table=table,
                           glue_dir=str(tiny_glue_dir), fractions=(0.5, 0.333),
                           methods=("differentiable", "layer_dropped", "evolution"))
  _manifest(grid.search_dir("differentiable"), grid.search_config_for("differentiable"))
  for index, arch in enumerate((BIG, SMALL)):
    _arch_json(grid.arch_file("differentiable", index), grid, arch, table.predict_ms(arch))
    for seed, accuracy in OURS.items():
      _retrained(grid, "differentiable", index, seed, accuracy + 0.01 * index, epochs=3.0)
  _arch_json(grid.arch_file("layer_dropped", 0), grid, SMALL, table.predict_ms(SMALL))
  _retrained(grid, "layer_dropped", 0, 0, LAYER_DROPPED, epochs=3.0)
  ledger = [("search/differentiable", 3600.0), ("retrain/differentiable", 1800.0),
            ("retrain/differentiable", 900.0), ("retrain/layer_dropped", 600.0)]
  (grid.task_dir / frontier_lib.LEDGER_FILE).write_text("".join(
      json.dumps({"job": job, "seconds": s}) + "\n" for job, s in ledger))
  times = {"base": [10.0, 12.0, 11.0], "bert_base": [60.0, 66.0, 63.0],
           BIG.to_json(): [5.0, 6.0, 5.0], SMALL.to_json(): [2.0, 3.0, 2.0]}
  _write_json(grid.task_dir / frontier_lib.LATENCY_FILE, {
      "times_ms": times, "machine": machine_facts(), "date": "2026-11-30", "rounds": 3, "units": "table"})
  return grid


def test_report_reads_every_seed_timing_and_verdict(grid, monkeypatch):
  monkeypatch.setattr(frontier_lib, "machine_facts", lambda: {"cores": 2})
  result = grid.report("python -m bench.frontier ...")
  at_2x, at_3x = result["targets"]
  ours, dropped = at_2x["points"]["differentiable"], at_2x["points"]["layer_dropped"]
  assert [r["seed"] for r in ours["runs"]] == [0, 1, 2]
  assert ours["mean"] == pytest.approx(100 * np.mean(list(OURS.values())))
  assert ours["std"] == pytest.approx(100 * np.std(list(OURS.values()), ddof=1))
  assert dropped["mean"] == pytest.approx(100 * LAYER_DROPPED) and dropped["std"] == 0.0
  # Medians over rounds of each round's ratio: base / arch (10/5, 12/6, 11/5).
  assert ours["measured_ms"] == 5.0 and ours["speedup"] == pytest.approx(2.0)
  assert ours["speedup_vs_bert_base"] == pytest.approx(12.0)
  assert at_3x["points"]["differentiable"]["mean"] == pytest.approx(83.0)
  assert "layer_dropped" not in at_3x["points"]  # No arch of its family there.
  assert at_2x["verdict"]["beats_or_ties"] == {"differentiable": {"layer_dropped": True}}
  assert at_2x["verdict"]["points_below_teacher"] == pytest.approx(85.0 - 82.0)
  assert at_2x["verdict"]["within_cofi_bar"] is False  # 3 points lost, CoFi's bar at 2x is 0.5.
  assert result["base_ms"] == 11.0 and result["teacher"]["metric"] == pytest.approx(85.0)
  assert result["majority_class"] is not None
  # Resumed runs of a job add up; wall seconds x 2 cores.
  assert result["compute_core_hours"]["per_method"] == pytest.approx(
      {"differentiable": 2.0 + 1.5, "layer_dropped": 600 * 2 / 3600})


def test_a_method_that_never_ran_is_left_out_with_a_warning(grid, monkeypatch):
  warnings = []
  monkeypatch.setattr(frontier_lib.logging, "warning", lambda *args: warnings.append(args))
  # Evolution's arch files would resolve, yet it never ran: no phantom row.
  assert grid.methods_run() == ["differentiable", "layer_dropped"]
  assert "evolution" in warnings[0][-1]


def test_results_of_another_recipe_are_refused_naming_the_manifest_and_key(grid):
  for other, manifest, key in (
      (dataclasses.replace(grid, retrain_epochs=1.0),
       grid.retrain_dir("differentiable", 0, 0) / workdirs.MANIFEST_FILE,
       "optim.num_epochs: 3.0 in the workdir, 1.0 now"),
      (dataclasses.replace(grid, num_evaluations=50),
       grid.search_dir("differentiable") / workdirs.MANIFEST_FILE,
       "search.evolution.num_evaluations: 100 in the workdir, 50 now")):
    with pytest.raises(ValueError, match="records another recipe") as error:
      other.report("python -m bench.frontier ...")
    assert str(manifest) in str(error.value) and key in str(error.value)


def test_an_arch_found_at_two_targets_is_retrained_once(grid):
  # BIG found at 3x too: the second target shares the first one's retraining.
  _arch_json(grid.arch_file("differentiable", 1), grid, BIG, grid.table.predict_ms(BIG))
  assert grid.retrain_dir("differentiable", 1, 2) == grid.retrain_dir("differentiable", 0, 2)
  assert grid.arch_file("differentiable", 1) == architecture_search.target_dir(
      grid.search_dir("differentiable"), grid.targets_ms[1]) / architecture_search.ARCH_FILE


def test_an_unknown_method_is_refused(grid):
  with pytest.raises(ValueError, match="Unknown frontier methods \\['hat'\\]"):
    dataclasses.replace(grid, methods=("differentiable", "hat"))


def test_command_line_reports_the_grid(grid, tmp_path):
  out = tmp_path / "results"
  result = subprocess.run(
      [sys.executable, "-m", "bench.frontier", f"--workdir={grid.workdir}", "--task=sst2",
       f"--teacher={grid.teacher}", f"--table={grid.table_path}", f"--glue_dir={grid.glue_dir}",
       "--fractions=0.5,0.333", "--methods=differentiable,layer_dropped", "--phase=report",
       f"--out={out}"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert {p.name for p in out.iterdir()} == {"sst2.json", "sst2.md", "sst2.png", "summary.md"}
  report = json.loads((out / "sst2.json").read_text())
  assert report["command"].startswith("python -m bench.frontier --workdir=")
  assert report["targets"][0]["points"]["differentiable"]["mean"] == pytest.approx(82.0)
  assert "| 2x (" in (out / "sst2.md").read_text()


def test_train_runs_only_what_is_missing_and_logs_its_time(grid, monkeypatch):
  searches, retrainings = [], []
  monkeypatch.setattr(architecture_search, "search", lambda config, workdir: searches.append(
      workdir))
  monkeypatch.setattr(finetune, "train_and_evaluate", lambda config, workdir: retrainings.append(
      (config.seed, pathlib.Path(workdir).relative_to(grid.task_dir))))
  dataclasses.replace(grid, methods=("differentiable",), seeds=4).train()
  assert searches == [str(grid.search_dir("differentiable"))]  # It resumes (or skips) itself.
  # Seeds 0-2 are retrained at both targets: only the new seed runs.
  assert retrainings == [(3, pathlib.Path("retrain/differentiable/50/seed3")),
                         (3, pathlib.Path("retrain/differentiable/33/seed3"))]
  ledger = (grid.task_dir / frontier_lib.LEDGER_FILE).read_text().splitlines()[-3:]
  assert [json.loads(line)["job"] for line in ledger] == [
      "search/differentiable", "retrain/differentiable", "retrain/differentiable"]
