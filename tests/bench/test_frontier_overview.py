"""Tests of bench/frontier_overview.py: pooling one task's reports and the overview's verdicts,
on fabricated reports (the shape bench.frontier --phase=report writes)."""

import json
import pathlib
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from bench import frontier_overview

REPO = pathlib.Path(__file__).parents[2]
ARCH = {"num_layers": 4, "hidden_size": 256, "heads": [4, 4, 4, 4], "ffn": [512] * 4}
OTHER_ARCH = {**ARCH, "num_layers": 3, "heads": [4, 4, 4], "ffn": [512] * 3}


def _point(scores, arch=ARCH, speedup=2.0):
  """A report's point: seed i scored scores[i] (%), measured at `speedup`."""
  return {"arch": arch, "predicted_ms": 1.0, "speedup": speedup,
          "runs": [{"seed": i, "metrics": {"accuracy": s / 100}} for i, s in enumerate(scores)],
          "mean": float(np.mean(scores)),
          "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0}


def _report(points_per_target, task="rte", table_sha256="abc", teacher=60.0):
  fractions = (0.5, 0.333, 0.2)
  return {"task": task, "main_metric": "accuracy", "teacher": {"metric": teacher},
          "majority_class": 52.71, "table_sha256": table_sha256, "search_epochs": 3.0,
          "retrain_epochs": 3.0, "timing": None,
          "targets": [{"fraction": f, "speedup_target": 1 / f, "points": points}
                      for f, points in zip(fractions, points_per_target)]}


def _main_run():
  return _report([
      {"differentiable": _point([59.0, 60.0, 61.0]), "random": _point([57.0, 58.0, 59.0])},
      {"differentiable": _point([54.0, 55.0, 56.0]), "random": _point([56.0, 57.0, 58.0]),
       "differentiable_layers": _point([55.0])},
      {"differentiable": _point([50.0, 50.0, 50.0]), "uniform_width": _point([53.0])}])


def _variants_run():
  """Ours rerun (the same scores), layer distillation with 3 seeds, one search per target."""
  return _report([
      {"differentiable": _point([59.0, 60.0, 61.0])},
      {"differentiable": _point([54.0, 55.0, 56.0]),
       "differentiable_layers": _point([55.0, 55.5, 56.5]),
       "differentiable_per_target": _point([57.0, 58.0, 59.0], arch=OTHER_ARCH)},
      {"differentiable": _point([50.0, 50.0, 50.0]),
       "differentiable_per_target": _point([52.0, 53.0, 54.0], arch=OTHER_ARCH)}])


def test_reports_of_one_run_are_pooled_keeping_each_point_with_the_most_seeds():
  merged = frontier_overview.merge([("main.json", _main_run()), ("var.json", _variants_run())])
  points = merged["targets"][1]["points"]
  assert points["differentiable"]["source"] == "main.json"  # As many seeds: the first kept.
  assert points["random"]["source"] == "main.json"
  assert points["differentiable_layers"]["source"] == "var.json"  # 3 seeds against 1.
  assert len(points["differentiable_layers"]["runs"]) == 3
  assert points["differentiable_per_target"]["source"] == "var.json"
  assert merged["sources"] == {"main.json": "not timed", "var.json": "not timed"}


def test_a_seed_scored_differently_is_refused_naming_both_files_and_the_seed():
  variants = _variants_run()
  variants["targets"][1]["points"]["differentiable_layers"]["runs"][0]["metrics"] = {
      "accuracy": 0.60}
  with pytest.raises(ValueError, match=r"differentiable_layers at 3x in var.json and main.json "
                                       r"give seed 0 different dev metrics"):
    frontier_overview.merge([("main.json", _main_run()), ("var.json", variants)])


def test_another_arch_table_or_teacher_is_refused():
  variants = _variants_run()
  variants["targets"][0]["points"]["differentiable"]["arch"] = OTHER_ARCH
  with pytest.raises(ValueError, match="differentiable at 2x .* have different archs"):
    frontier_overview.merge([("main.json", _main_run()), ("var.json", variants)])
  with pytest.raises(ValueError, match=r"not of the same run as main.json.*\n  table_sha256: "
                                       "'abc' vs 'def'"):
    frontier_overview.merge([("main.json", _main_run()),
                             ("var.json", _report([{}, {}, {}], table_sha256="def"))])
  with pytest.raises(ValueError, match="teacher metric: 60.0 vs 61.0"):
    frontier_overview.merge([("main.json", _main_run()),
                             ("var.json", _report([{}, {}, {}], teacher=61.0))])


def test_rows_name_the_best_of_ours_the_best_other_and_what_each_loses_to():
  merged = frontier_overview.merge([("main.json", _main_run()), ("var.json", _variants_run())])
  at_2x, at_3x, at_5x = (frontier_overview.row(merged, i) for i in range(3))
  assert at_2x["best_ours"] == "differentiable" and at_2x["best_other"] == "random"
  assert at_2x["gap"] == pytest.approx(2.0) and at_2x["loses_to"] == []
  assert at_2x["below_teacher"] == pytest.approx(0.0) and at_2x["within_cofi_bar"]
  # At 3x search-once (55 +- 1) loses to random (57), one search per target (58) does not.
  assert at_3x["search_once_loses_to"] == ["random"]
  assert at_3x["best_ours"] == "differentiable_per_target" and at_3x["loses_to"] == []
  assert at_3x["cofi_bar"] == 1.0 and not at_3x["within_cofi_bar"]
  # At 5x per target (53 +- 1) ties uniform width's single seed (53).
  assert at_5x["best_ours"] == "differentiable_per_target"
  assert at_5x["gap"] == pytest.approx(0.0) and at_5x["loses_to"] == []
  assert at_5x["search_once_loses_to"] == ["uniform_width"]


def test_command_line_writes_the_overview_and_a_bad_report_is_named(tmp_path):
  main, variants, bad = tmp_path / "main.json", tmp_path / "var.json", tmp_path / "bad.json"
  main.write_text(json.dumps(_main_run()))
  variants.write_text(json.dumps(_variants_run()))
  out = tmp_path / "overview.md"
  subprocess.run([sys.executable, "-m", "bench.frontier_overview", f"--out={out}",
                  f"--reports={main},{variants}"], cwd=REPO, check=True, capture_output=True,
                 timeout=120)
  text = out.read_text()
  assert "| RTE (accuracy) | 3x | 60.00 | 52.71 | 55.00 +- 1.00 (3) | NO: random | " \
         "differentiable per target 58.00 +- 1.00 (3), 2.00x | yes | random 57.00 +- 1.00 (3)" \
         ", 2.00x | +1.00 | 2.00 (missed) | 1.0 |" in text
  assert f"- RTE: `{main}` (not timed), `{variants}` (not timed)" in text
  bad.write_text("{not json")
  with pytest.raises(ValueError, match=re.escape(f"--reports: {bad} is not a bench.frontier")):
    frontier_overview.load([str(main), str(bad)])


def test_the_committed_overview_is_what_its_command_writes_from_the_committed_reports(tmp_path):
  committed = REPO / "bench/results/frontier/overview.md"
  command = committed.read_text().splitlines()[2].split("`")[1]  # "- command: `...`"
  flag = next(a for a in shlex.split(command) if a.startswith("--reports="))
  rewritten = tmp_path / "overview.md"
  with pytest.MonkeyPatch.context() as patch:
    patch.chdir(REPO)  # The reports' paths are relative to the repository.
    results = frontier_overview.load(flag.removeprefix("--reports=").split(","))
    frontier_overview.write_overview(results, rewritten, command)
  assert rewritten.read_text() == committed.read_text()
