"""The fine-tuning job: runlocal end to end, and exact resume after a SIGKILL."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import safetensors.numpy

from configs import finetune as finetune_config
from darts.training import finetune
from models import workdirs

REPO = pathlib.Path(__file__).parents[2]
POSITIVE = ["a charming and affecting journey", "the best film of the year", "warm and funny",
            "a gorgeous , witty , seductive movie", "one of the most exciting films"]
NEGATIVE = ["unflinchingly bleak and desperate", "a dull , lifeless mess", "boring and too long",
            "the plot is a disaster", "nothing works in this tedious film"]


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory) -> pathlib.Path:
  """A small SST-2 in the GLUE layout (header, sentence<TAB>label)."""
  root = tmp_path_factory.mktemp("glue")
  (root / "SST-2").mkdir()
  rng = np.random.default_rng(0)
  for split, size in (("train", 96), ("dev", 40)):
    rows = []
    for _ in range(size):
      label = int(rng.integers(2))
      words = (POSITIVE if label else NEGATIVE)[rng.integers(5)]
      rows.append(f"{words} {rng.choice(['.', '!', 'indeed .'])}\t{label}")
    (root / "SST-2" / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
  return root


# Enough for MiniLM to learn the phrases above (dev accuracy 1.0 on this machine, from 0.5).
LEARNING = {"num_train_steps": 12, "lr": 2e-4}


def runlocal_config(glue_dir):
  config = finetune_config.get_config("task=sst2,runlocal")
  config.data.glue_dir = str(glue_dir)
  config.optim.update(LEARNING)
  return config


def train_command(workdir, glue_dir):
  return [sys.executable, "-m", "darts.train", "--config=configs/finetune.py:task=sst2,runlocal",
          f"--workdir={workdir}", f"--config.data.glue_dir={glue_dir}",
          *(f"--config.optim.{k}={v}" for k, v in LEARNING.items())]


def test_runlocal_trains_and_writes_results(tmp_path, glue_dir):
  summary = finetune.train_and_evaluate(runlocal_config(glue_dir), str(tmp_path))
  written = json.loads((tmp_path / "eval.json").read_text())
  assert written["metrics"] == summary["metrics"]
  # Training works: the loss falls and the model beats chance (a broken step, loss or optimizer
  # update leaves both at chance).
  losses = [loss for _, loss in summary["train_loss_this_run"]]
  assert losses[-1] < 0.7 * losses[0]
  assert summary["metrics"]["accuracy"] >= 0.9
  assert summary["num_train_steps"] == 12 and summary["resumed_from_step"] == 0
  assert (tmp_path / "model" / "model.safetensors").is_file()
  assert (tmp_path / "model" / "vocab.txt").is_file()
  assert json.loads((tmp_path / "model" / "config.json").read_text())["canao_task"] == "sst2"
  assert list((tmp_path / "tensorboard").iterdir())
  # A second run finds the finished checkpoint and only evaluates.
  again = finetune.train_and_evaluate(runlocal_config(glue_dir), str(tmp_path))
  assert again["resumed_from_step"] == 12 and again["metrics"] == summary["metrics"]


def test_a_workdir_of_another_run_is_refused_and_left_as_it_was(tmp_path, glue_dir, tiny_base_dir,
                                                              snapshot):
  data = tmp_path / "glue"
  shutil.copytree(glue_dir, data)
  config = runlocal_config(data)
  config.model.checkpoint = str(tiny_base_dir)
  config.optim.num_train_steps = 2
  workdir = tmp_path / "run"
  finetune.train_and_evaluate(config, str(workdir))
  before = snapshot(workdir)
  for key, value, shown in (("data.task", "rte", '"sst2" in the workdir, "rte" now'),
                            ("optim.lr", 1e-3, "0.0002 in the workdir, 0.001 now")):
    other = config.copy_and_resolve_references()
    other.update_from_flattened_dict({key: value})
    with pytest.raises(workdirs.WorkdirMismatchError, match=f"{key}: {shown}"):
      finetune.train_and_evaluate(other, str(workdir))
  # Other data under the same path is another input.
  train_tsv = data / "SST-2" / "train.tsv"
  original = train_tsv.read_bytes()
  train_tsv.write_bytes(original.replace(b"boring", b"tedious"))
  with pytest.raises(workdirs.WorkdirMismatchError, match="inputs.data.train: "):
    finetune.train_and_evaluate(config, str(workdir))
  assert snapshot(workdir) == before
  # Cadence is not part of the result: a resume may log or checkpoint more often.
  train_tsv.write_bytes(original)
  config.log_every_steps = 1
  assert finetune.train_and_evaluate(config, str(workdir))["resumed_from_step"] == 2


def wait_for_checkpoint(workdir: pathlib.Path, process: subprocess.Popen) -> None:
  deadline = time.monotonic() + 300
  while not (workdir / "checkpoints" / "2").is_dir():
    assert process.poll() is None, "training ended before its first checkpoint"
    assert time.monotonic() < deadline, "no checkpoint after 300 s"
    time.sleep(0.05)


def test_killed_job_resumes_and_matches_uninterrupted_run(tmp_path, glue_dir):
  uninterrupted = finetune.train_and_evaluate(runlocal_config(glue_dir), str(tmp_path / "a"))
  killed_dir = tmp_path / "b"
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  process = subprocess.Popen(train_command(killed_dir, glue_dir), cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  wait_for_checkpoint(killed_dir, process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not (killed_dir / "eval.json").exists()
  subprocess.run(train_command(killed_dir, glue_dir), cwd=REPO, env=env, check=True,
                 capture_output=True)
  resumed = json.loads((killed_dir / "eval.json").read_text())
  assert 0 < resumed["resumed_from_step"] < resumed["num_train_steps"]
  assert resumed["metrics"] == uninterrupted["metrics"]
  weights_a = safetensors.numpy.load_file(tmp_path / "a" / "model" / "model.safetensors")
  weights_b = safetensors.numpy.load_file(killed_dir / "model" / "model.safetensors")
  for name, value in weights_a.items():
    np.testing.assert_allclose(weights_b[name], value, atol=1e-6, err_msg=name)
