"""The main job end to end on the tiny space (the smoke test of `make demo`), and its reruns."""

import dataclasses
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from configs import pipeline as pipeline_config
from darts import layout as layout_lib, stages
from darts.nas import discretize
from latency_loss import timing
from models import search_space, workdirs

REPO = pathlib.Path(__file__).parents[2]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_glue_dir, tiny_base_dir, middle_target_ms):
  """A runlocal pipeline run through every stage: (config, layout).

  The target fraction comes from the table the run builds (its first stage), so that the target
  is reachable in that table however the machine timed the tiny space's microsecond blocks.
  """
  config = pipeline_config.get_config("runlocal")
  config.base_checkpoint = str(tiny_base_dir)
  config.glue_dir = str(tiny_glue_dir)
  workdir = str(tmp_path_factory.mktemp("pipeline"))
  stages.run(config, workdir, stages=["table"])
  table = stages.Pipeline(config, workdir).load_table()
  config.latency.target_fraction = middle_target_ms(
      table, table.space, config.search.latency.margin) / table.predict_ms(
          table.space.largest_arch())
  return config, stages.run(config, workdir)


def test_every_stage_leaves_its_output(finished):
  config, layout = finished
  target = json.loads(layout.target_file.read_text())
  # The target is in the table's units: a fraction of its prediction of the base, not a timing.
  assert target["target_ms"] == pytest.approx(config.latency.target_fraction
                                              * target["base_predicted_ms"])
  assert target["base_measured_ms"] > 0
  # The conditions the table was built under travel with the target into the report.
  assert target["table_conditions"]["timing_priority"] in timing.LEVELS
  searched = json.loads(layout.arch_file.read_text())
  assert searched["predicted_ms"] <= target["target_ms"]
  export = json.loads(layout.export_report_file.read_text())
  assert export["failures"] == [] and export["results"]["fp32"]["max_abs_diff"] <= 1e-4
  assert export["arch"] == searched["arch"]  # The retrained model is the searched arch.
  latency = json.loads(layout.latency_file.read_text())
  assert set(latency["models"]) == {"fp32", "fp16", "int8", "int8_full"}
  assert all(ms > 0 for m in latency["models"].values() for ms in m["latency_ms"].values())
  # The base was timed with them (interleaved): the speed-up does not mix machine states.
  assert set(latency["base_ms"]) == {str(t) for t in config.measure.threads}
  assert all(ms > 0 for ms in latency["base_ms"].values())
  assert len(latency["fidelity"]) == finished[0].measure.fidelity_archs


def test_report_has_every_section_and_figure(finished):
  _, layout = finished
  text = layout.report_file.read_text()
  for figure in (layout_lib.ACCURACY_FIGURE, layout_lib.ARCH_FIGURE,
                 layout_lib.PROBABILITIES_FIGURE, layout_lib.FIDELITY_FIGURE):
    assert f"]({figure})" in text, figure
    assert (layout.root / figure).stat().st_size > 10_000, figure  # A drawn PNG, not a stub.
  assert "Speed-up:" in text and "model_int8.tflite" in text and "n/a" not in text
  assert "Cost table built on " in text and "scheduling level" in text


def test_rerun_skips_finished_stages_and_never_retimes_the_base(finished, monkeypatch):
  config, layout = finished
  outputs = [layout.arch_file, layout.target_file, layout.latency_file,
             layout.retrain_dir / "eval.json", layout.export_dir / "model_fp32.tflite"]
  before = [p.read_bytes() for p in outputs]
  stamps = [p.stat().st_mtime_ns for p in outputs]

  def retimed(*args):
    raise AssertionError("the base was timed again: a set target is the workdir's truth")

  monkeypatch.setattr(stages, "measure_arch_ms", retimed)
  stages.run(config, str(layout.root))
  assert [p.read_bytes() for p in outputs] == before
  assert [p.stat().st_mtime_ns for p in outputs] == stamps


def test_another_config_is_refused_before_anything_is_written(finished, snapshot):
  config, layout = finished
  before = snapshot(layout.root)
  assert layout_lib.REPORT_FILE in before  # The report, too, is left as it was.
  for key, value in (("latency.target_fraction", 0.9 * config.latency.target_fraction),
                     ("search.arch_optim.lr", 0.5), ("export.precisions", "fp32")):
    other = config.copy_and_resolve_references()
    other.update_from_flattened_dict({key: value})
    stage = "target" if key.startswith("latency") else key.split(".")[0]
    shown = key if stage == "target" else key.split(".", 1)[1]
    with pytest.raises(workdirs.WorkdirMismatchError,
                       match=rf"{stage}\.{shown}: .* in the workdir, .* now"):
      stages.run(other, str(layout.root))
    assert snapshot(layout.root) == before, key  # Not even the stages before it ran.


def test_a_target_set_on_another_table_is_refused(finished, tmp_path, snapshot, monkeypatch):
  monkeypatch.setattr(stages, "measure_arch_ms", lambda table, arch: 1.0)
  config, layout = finished
  config = config.copy_and_resolve_references()
  config.latency_table = str(tmp_path / "phone_table.json")
  table = stages.Pipeline(finished[0], str(layout.root)).load_table()
  table.save(config.latency_table)
  workdir = tmp_path / "run"
  stages.run(config, str(workdir), stages=["target"])
  before = snapshot(workdir)
  table.host["rebuilt"] = True  # The same path, another table: the target was set on the old.
  table.save(config.latency_table)
  with pytest.raises(workdirs.WorkdirMismatchError, match="target set on another cost table"):
    stages.run(config, str(workdir), stages=["target", "search"])
  assert snapshot(workdir) == before


def test_stage_names_are_checked():
  assert stages.parse_stages("report, search") == ("search", "report")
  assert stages.parse_stages("all") == stages.STAGES
  with pytest.raises(ValueError, match="unknown stages"):
    stages.parse_stages("search,deploy")


def test_a_stage_without_its_input_names_the_missing_stage(tmp_path):
  config = pipeline_config.get_config("runlocal")
  with pytest.raises(FileNotFoundError, match="run the 'search' stage first"):
    stages.run(config, str(tmp_path), stages=["retrain"])


def test_command_line_entry_point(tmp_path):
  # The job's flags must not collide with those of the jobs it imports (build_table, ...).
  result = subprocess.run(
      [sys.executable, "-m", "darts.pipeline", "--config=configs/pipeline.py:runlocal",
       f"--workdir={tmp_path}", "--config.stages=report"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"Report: {tmp_path / layout_lib.REPORT_FILE}" in result.stdout
  assert "not drawn" in (tmp_path / layout_lib.REPORT_FILE).read_text()


def test_exported_models_are_not_timed_on_the_host_against_a_phone_table(finished):
  config, layout = finished
  table = stages.Pipeline(config, str(layout.root)).load_table()
  phone = dataclasses.replace(table, runtime=dataclasses.replace(table.runtime, backend="android"),
                              protocol={**table.protocol, "statistic": "mean"})
  models, base_ms = stages.measure_exported(layout.export_dir, phone, threads=(1, 4))
  assert set(models) == {"fp32", "fp16", "int8", "int8_full"}
  assert all(m["latency_ms"] == {"1": None, "4": None} for m in models.values())
  assert base_ms == {"1": None, "4": None}


def test_a_uniformly_slower_table_gives_the_same_target_and_arch(tmp_path, make_cost_table,
                                                                  monkeypatch):
  # The host measures the base the same whatever the table: only the table's units differ.
  monkeypatch.setattr(stages, "measure_arch_ms", lambda table, arch: 20.0)
  space = search_space.get_space("minilm")
  probs = {k: np.asarray(v) for k, v in
           search_space.one_hot_probs(space.largest_arch(), space).items()}
  targets, archs = [], []
  for scale in (1.0, 1.8):
    config = pipeline_config.get_config(None)
    config.latency.target_fraction = 0.75  # The random table's smallest arch is at ~0.5.
    config.latency.table_tolerance = 0.0  # The host's measurement is not the point here.
    config.latency_table = str(tmp_path / f"table_{scale}.json")
    make_cost_table(space, scale=scale).save(config.latency_table)
    layout = stages.run(config, str(tmp_path / f"run_{scale}"), stages=["target"])
    target = json.loads(layout.target_file.read_text())
    table = stages.Pipeline(config, str(layout.root)).load_table()
    targets.append(target)
    archs.append(discretize.discretize(probs, space, table.predict_ms, target["target_ms"],
                                       margin=config.search.latency.margin)[0])
  assert targets[1]["target_ms"] == pytest.approx(1.8 * targets[0]["target_ms"])
  assert targets[0]["target_ms"] == pytest.approx(0.75 * targets[0]["base_predicted_ms"])
  assert archs[0] == archs[1] and archs[0] != space.largest_arch()


@pytest.mark.parametrize("measured_ms, refused", [([1.04], False), ([1.3, 1.05], False),
                                                  ([1.3, 1.25], True)])
def test_a_table_that_does_not_describe_this_machine_is_refused(
    tmp_path, make_cost_table, monkeypatch, measured_ms, refused):
  space = search_space.get_space("minilm")
  config = pipeline_config.get_config(None)
  config.latency_table = str(tmp_path / "table.json")
  table = make_cost_table(space)
  table.save(config.latency_table)
  predicted = table.predict_ms(space.largest_arch())
  timings = iter(measured_ms)
  monkeypatch.setattr(stages, "measure_arch_ms", lambda table, arch: next(timings) * predicted)
  workdir = tmp_path / "run"
  if not refused:  # Within 10%, at once or when measured again (a burst of other load).
    layout = stages.run(config, str(workdir), stages=["target"])
    target = json.loads(layout.target_file.read_text())
    assert target["base_measured_ms"] == pytest.approx(measured_ms[-1] * predicted)
    return
  with pytest.raises(ValueError, match=r"predicts .* but it measures .* \(-20%, beyond "
                                       r"latency.table_tolerance=10%\).*Nothing was written"):
    stages.run(config, str(workdir), stages=["target"])
  assert not (workdir / "target.json").exists()


def test_the_whole_job_for_a_compiler_plugin(finished, tmp_path, monkeypatch, middle_target_ms):
  """--config.runtime=openvino --config.precision=int8_full: that table, search, and the export
  compiled for OpenVINO, verified through its dispatch library and timed there."""
  monkeypatch.setenv("CANAO_COMPILE_CACHE", str(tmp_path / "cache"))
  config, layout = finished
  config = config.copy_and_resolve_references()
  config.update(runtime="openvino", precision="int8_full",
                teacher_model=str(layout.teacher_model_dir))
  config.export.precisions = "fp32"  # The table's precision is added: the job's model.
  stages.run(config, str(tmp_path / "run"), stages=["table"])
  table = stages.Pipeline(config, str(tmp_path / "run")).load_table()
  assert (table.runtime.plugin, table.runtime.precision) == ("intel_openvino", "int8_full")
  config.latency.target_fraction = middle_target_ms(
      table, table.space, config.search.latency.margin) / table.predict_ms(
          table.space.largest_arch())
  run = stages.run(config, str(tmp_path / "run"))
  export = json.loads(run.export_report_file.read_text())
  assert export["compiled_for"]["plugin"] == "intel_openvino"
  assert export["results"]["int8_full"]["compiled"]["partition"]["fully_offloaded"]
  latency = json.loads(run.latency_file.read_text())
  assert latency["runtime"]["plugin"] == "intel_openvino"
  assert {m["file"] for m in latency["models"].values()} == {"model_fp32_openvino.tflite",
                                                             "model_int8_full_openvino.tflite"}
  assert all(ms > 0 for m in latency["models"].values() for ms in m["latency_ms"].values())
  assert "Compiled by the intel_openvino plugin for LNL" in run.report_file.read_text()
