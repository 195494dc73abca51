"""The search job end to end on the tiny space: outputs, bad input, exact resume after SIGKILL."""

import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from configs import (cost_table as cost_table_config, finetune as finetune_config,
                     retrain as retrain_config, search as search_config)
from darts.nas import architecture_search
from darts.training import finetune
from latency_loss import builder, table as table_lib
from models import checkpoint, search_space, workdirs

REPO = pathlib.Path(__file__).parents[3]
@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_glue_dir, tiny_base_dir):
  """GLUE files, a teacher fine-tuned by darts.train, and a TFLite cost table of the tiny space."""
  root = tmp_path_factory.mktemp("search")
  (root / "glue").symlink_to(tiny_glue_dir)
  config = finetune_config.get_config("task=sst2,runlocal")
  config.model.checkpoint = str(tiny_base_dir)
  config.data.glue_dir = str(root / "glue")
  finetune.train_and_evaluate(config, str(root / "teacher"))
  builder.build_table(cost_table_config.get_config("runlocal"), str(root / "table"))
  return root


@pytest.fixture(scope="module")
def runlocal_config(setup, middle_target_ms):
  """Builds the runlocal search config on `setup`'s teacher and table (latency overrides)."""

  def make(**latency):
    config = search_config.get_config("task=sst2,runlocal")
    config.teacher = str(setup / "teacher" / "model")
    config.data.glue_dir = str(setup / "glue")
    config.latency.table = str(setup / "table" / builder.TABLE_NAME)
    table = table_lib.load_table(config.latency.table)
    config.latency.threads = table.runtime.threads
    config.latency.target_ms = latency.pop("target_ms", None) or middle_target_ms(
        table, architecture_search.search_space_for(config), config.latency.margin)
    for key, value in latency.items():
      config.latency[key] = value
    return config

  return make


@pytest.fixture(scope="module")
def searched(setup, runlocal_config):
  """A finished runlocal search: (config, workdir, arch.json contents)."""
  config = runlocal_config()
  workdir = setup / "searched"
  return config, workdir, architecture_search.search(config, str(workdir))


def test_runlocal_search_writes_arch_within_target(searched):
  config, tmp_path, summary = searched
  arch = search_space.Arch(**{k: tuple(v) if isinstance(v, list) else v
                              for k, v in summary["arch"].items()})
  arch.validate(search_space.get_space("tiny"))
  assert summary["predicted_ms"] <= config.latency.target_ms
  assert json.loads((tmp_path / "arch.json").read_text()) == summary
  subnet = checkpoint.load_pretrained(str(tmp_path / "subnet"), num_labels=2)
  assert subnet.bert.config.num_layers == arch.num_layers
  assert subnet.bert.config.hidden_size == arch.hidden_size
  history = [json.loads(line) for line in
             (tmp_path / architecture_search.HISTORY_FILE).read_text().splitlines()]
  assert [h["step"] for h in history] == [2, 4, 6, 8]
  assert np.allclose(np.sum(history[-1]["heads"], axis=-1), 1.0)
  assert set(summary["subnet_metrics_before_retraining"]) == {"accuracy"}
  # A finished search is not rerun.
  assert architecture_search.search(config, str(tmp_path)) == summary


def test_a_finished_search_is_not_reused_for_another_config(searched, snapshot):
  config, workdir, _ = searched
  before = snapshot(workdir)
  # A larger target: a smaller one can fall below the tiny table's smallest arch (its own error).
  for key, value in (("latency.target_ms", 1.1 * config.latency.target_ms),
                     ("search.relaxation", "softmax"), ("arch_optim.lr", 0.1)):
    other = config.copy_and_resolve_references()
    other.update_from_flattened_dict({key: value})
    with pytest.raises(workdirs.WorkdirMismatchError, match=f"{key}: .* in the workdir, .* now"):
      architecture_search.search(other, str(workdir))
  assert snapshot(workdir) == before


def test_target_below_smallest_arch_is_refused(runlocal_config, tmp_path):
  with pytest.raises(ValueError, match="below the smallest architecture"):
    architecture_search.search(runlocal_config(target_ms=1e-3), str(tmp_path))
  assert not (tmp_path / "arch.json").exists()
  assert not (tmp_path / workdirs.MANIFEST_FILE).exists()  # Refused before anything is written.


def test_table_of_another_runtime_is_refused(runlocal_config, tmp_path):
  config = runlocal_config()
  config.latency.precision = "int8"
  with pytest.raises(ValueError, match="precision"):
    architecture_search.search(config, str(tmp_path))


def test_teacher_of_another_task_is_refused(runlocal_config, tmp_path):
  config = runlocal_config()
  config.data.task = "qnli"
  with pytest.raises(ValueError, match="fine-tuned on 'sst2', not on 'qnli'"):
    architecture_search.search(config, str(tmp_path))


def _search_command(setup, workdir, config):
  flags = [f"--config.teacher={config.teacher}", f"--config.data.glue_dir={setup / 'glue'}",
           f"--config.latency.table={config.latency.table}",
           f"--config.latency.threads={config.latency.threads}",
           f"--config.latency.target_ms={config.latency.target_ms}"]
  return [sys.executable, "-m", "darts.search", "--config=configs/search.py:task=sst2,runlocal",
          f"--workdir={workdir}", *flags]


def test_retraining_the_searched_arch_with_distillation(searched, tmp_path):
  _, search_dir, summary = searched
  config = retrain_config.get_config(f"arch={search_dir / 'arch.json'},runlocal")
  assert config.distill.teacher == summary["teacher"]
  result = finetune.train_and_evaluate(config, str(tmp_path))
  retrained = checkpoint.load_pretrained(str(tmp_path / "model"), num_labels=2)
  assert retrained.bert.config.num_heads == tuple(summary["arch"]["heads"])
  # Started from the sliced subnet, distilled from the search's teacher. (That the shared training
  # loop learns is tests/darts/test_train.py's; this tiny teacher is random.)
  assert result["config"]["model"]["checkpoint"] == summary["subnet"]
  assert result["config"]["distill"]["teacher"] == summary["teacher"]
  assert result["config"]["distill"]["weight"] > 0
  with pytest.raises(ValueError, match="does not exist"):
    retrain_config.get_config(f"arch={tmp_path / 'missing.json'}")


def test_retraining_with_layer_distillation(searched, tmp_path):
  _, search_dir, _ = searched
  config = retrain_config.get_config(f"arch={search_dir / 'arch.json'},runlocal")
  config.distill.update(hidden_weight=1.0, attention_weight=0.5)
  result = finetune.train_and_evaluate(config, str(tmp_path / "layers"))
  assert result["num_train_steps"] == config.optim.num_train_steps
  config.distill.teacher = ""
  with pytest.raises(ValueError, match="need --config.distill.teacher"):
    finetune.train_and_evaluate(config, str(tmp_path / "no_teacher"))


def test_killed_search_resumes_to_the_same_arch(setup, searched, tmp_path):
  config, _, uninterrupted = searched
  workdir = tmp_path / "b"
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  process = subprocess.Popen(_search_command(setup, workdir, config), cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 300
  while not (workdir / "checkpoints" / "2").is_dir():
    assert process.poll() is None and time.monotonic() < deadline
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not (workdir / "arch.json").exists()
  subprocess.run(_search_command(setup, workdir, config), cwd=REPO, env=env, check=True,
                 capture_output=True)
  resumed = json.loads((workdir / "arch.json").read_text())
  assert resumed["arch"] == uninterrupted["arch"]
  np.testing.assert_allclose(resumed["probabilities"]["ffn"],
                             uninterrupted["probabilities"]["ffn"], atol=1e-6)
  steps = [json.loads(line)["step"] for line in
           (workdir / architecture_search.HISTORY_FILE).read_text().splitlines()]
  assert steps == [2, 4, 6, 8]


def test_search_with_a_table_from_the_benchmark_tool(runlocal_config, benchmark_tool_table,
                                                     middle_target_ms, tmp_path):
  # The phone path's table (timed by benchmark_litert_model through the script) drives a search.
  config = runlocal_config()
  table = table_lib.load_table(str(benchmark_tool_table))
  config.latency.update(table=str(benchmark_tool_table), **table.runtime.to_dict())
  config.latency.target_ms = middle_target_ms(
      table, architecture_search.search_space_for(config), config.latency.margin)
  summary = architecture_search.search(config, str(tmp_path))
  assert summary["runtime"]["backend"] == "android"
  assert summary["predicted_ms"] <= summary["budget_ms"] + 1e-9


def _arch_of(summary):
  return search_space.Arch(**summary["arch"])


def test_search_once_deploy_many(runlocal_config, setup, tmp_path):
  config = runlocal_config()
  table = table_lib.load_table(config.latency.table)
  space = architecture_search.search_space_for(config)
  # Every arch fits the first extra target; only small ones fit the second. (Which arch the fill
  # reaches depends on the tiny table's timing noise: no assertion on it.)
  roomy = 1.2 * max(table.predict_ms(space.largest_arch()), config.latency.target_ms)
  tight = 1.05 * table.predict_ms(space.smallest_arch()) / (1 - config.latency.margin)
  config.latency.deploy_targets_ms = (roomy, tight)
  summary = architecture_search.search(config, str(tmp_path))
  deployed = [json.loads(pathlib.Path(d["arch_file"]).read_text())
              for d in summary["deployments"]]
  assert [d["target_ms"] for d in deployed] == [roomy, tight]
  for result in (summary, *deployed):
    assert result["predicted_ms"] <= result["budget_ms"] + 1e-9
    assert result["probabilities"] == summary["probabilities"]  # One search, three archs.
    subnet = checkpoint.load_pretrained(result["subnet"], num_labels=2)
    assert subnet.bert.config.num_heads == tuple(result["arch"]["heads"])


def test_evolution_and_random_search_share_one_supernet(runlocal_config, tmp_path, caplog):
  config = runlocal_config()
  config.search.method = "evolution"
  with caplog.at_level(logging.INFO, logger="absl"):
    evolved = architecture_search.search(config, str(tmp_path / "evolution"))
  budget = evolved["budget_ms"]
  assert 0 < len(evolved["evaluations"]) <= config.search.evolution.num_evaluations
  # Progress of the selection (minutes on a real budget), up to the last distinct subnet.
  assert (f"(distinct subnets evaluated): {len(evolved['evaluations'])}/"
          f"{config.search.evolution.num_evaluations}") in caplog.text
  assert all(e["predicted_ms"] <= budget + 1e-9 for e in evolved["evaluations"])
  assert evolved["held_out_loss"] == min(e["held_out_loss"] for e in evolved["evaluations"])
  assert _arch_of(evolved) == search_space.Arch(
      **min(evolved["evaluations"], key=lambda e: e["held_out_loss"])["arch"])
  assert "probabilities" not in evolved and evolved["train_seconds_this_run"] > 0

  config.search.method = "random"
  config.search.supernet_from = str(tmp_path / "evolution")
  drawn = architecture_search.search(config, str(tmp_path / "random"))
  assert drawn["train_seconds_this_run"] == 0  # Nothing trained: the supernet was reused...
  losses = {json.dumps(e["arch"], sort_keys=True): e["held_out_loss"]
            for e in evolved["evaluations"]}
  shared = [e for e in drawn["evaluations"] if json.dumps(e["arch"], sort_keys=True) in losses]
  assert shared  # ...so an arch both evaluated has the same loss in both.
  for e in shared:
    assert e["held_out_loss"] == pytest.approx(losses[json.dumps(e["arch"], sort_keys=True)],
                                               rel=1e-5)


def test_held_out_selection_reuses_the_differentiable_supernet(runlocal_config, searched,
                                                               tmp_path):
  _, differentiable, discretized = searched
  config = runlocal_config()
  config.search.selection = "held_out_loss"
  config.search.supernet_from = str(differentiable)
  selected = architecture_search.search(config, str(tmp_path / "selected"))
  assert selected["train_seconds_this_run"] == 0  # The same supernet and distribution...
  assert selected["probabilities"] == discretized["probabilities"]
  evaluations = selected["evaluations"]
  # ...and evolution from the discretized arch on it, which it can only improve on.
  assert (_arch_of(evaluations[0]) == search_space.Arch(**selected["discretized_arch"])
          == _arch_of(discretized))
  assert selected["discretized_held_out_loss"] == evaluations[0]["held_out_loss"]
  assert selected["held_out_loss"] == min(e["held_out_loss"] for e in evaluations)
  assert all(e["predicted_ms"] <= selected["budget_ms"] + 1e-9 for e in evaluations)

  config.search.relaxation = "softmax"  # Another distribution: not the same search.
  with pytest.raises(ValueError, match=r"search.relaxation \(gumbel there, softmax here\)"):
    architecture_search.search(config, str(tmp_path / "other"))


@pytest.mark.parametrize("change,match", [
    ({"search.method": "annealing"}, "Unknown --config.search.method='annealing'"),
    ({"search.selection": "best"}, "Unknown --config.search.selection='best'"),
    ({"search.supernet_from": "/nonexistent"}, "no arch.json there"),
    ({"search.method": "random", "search.supernet_from": "/nonexistent"}, "no arch.json there"),
])
def test_bad_search_methods_are_refused(runlocal_config, tmp_path, change, match):
  config = runlocal_config()
  config.update_from_flattened_dict(change)
  with pytest.raises(ValueError, match=match):
    architecture_search.search(config, str(tmp_path))
  assert not (tmp_path / workdirs.MANIFEST_FILE).exists()


def test_a_supernet_trained_on_other_data_is_not_reused(runlocal_config, searched, tmp_path):
  config = runlocal_config()
  config.search.method = "evolution"
  architecture_search.search(config, str(tmp_path / "evolution"))
  config.search.method = "random"
  config.search.supernet_from = str(tmp_path / "evolution")
  config.optim.lr = 1e-3
  with pytest.raises(ValueError, match=r"optim.lr \(3e-05 there, 0.001 here\)"):
    architecture_search.search(config, str(tmp_path / "random"))
  _, differentiable, _ = searched
  config.search.supernet_from = str(differentiable)
  with pytest.raises(ValueError, match="searched with method 'differentiable'; method 'random'"):
    architecture_search.search(config, str(tmp_path / "random"))
