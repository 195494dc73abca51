"""Run manifests, the workdir lock, fresh runs, and one-line disk errors."""

import errno
import json
import os
import pathlib
import subprocess
import sys
import time

import ml_collections
import pytest
from absl import logging

from models import workdirs

REPO = pathlib.Path(__file__).parents[2]
FIELDS = {"data.task": "sst2", "optim.lr": 5e-5, "buckets": [16, 32]}


def no_inputs():
  return {"data": "abc"}


def test_config_fields_flatten_and_leave_out_prefixes():
  config = ml_collections.ConfigDict({"a": 1, "b": {"c": (1, 2), "log_every": 5, "d": {}},
                                      "logs": 3})
  assert workdirs.config_fields(config, exclude=("b.log_every", "log")) == {
      "a": 1, "b.c": [1, 2], "b.d": {}, "logs": 3}


def test_claim_records_then_accepts_the_same_run(tmp_path, snapshot):
  workdirs.claim(tmp_path, "train", FIELDS, no_inputs, has_results=False)
  manifest = json.loads((tmp_path / workdirs.MANIFEST_FILE).read_text())
  assert manifest["job"] == "train" and manifest["fields"] == FIELDS
  assert manifest["inputs"] == {"data": "abc"} and manifest["command"]
  before = snapshot(tmp_path)
  workdirs.claim(tmp_path, "train", dict(FIELDS), no_inputs, has_results=True)
  assert snapshot(tmp_path) == before


def test_claim_refuses_other_values_naming_both(tmp_path, snapshot):
  workdirs.claim(tmp_path, "train", FIELDS, no_inputs, has_results=False)
  before = snapshot(tmp_path)
  hashed = []
  with pytest.raises(workdirs.WorkdirMismatchError) as e:
    workdirs.claim(tmp_path, "train", {**FIELDS, "data.task": "rte", "seed": 1},
                   lambda: hashed.append(1) or {}, has_results=True)
  message = str(e.value)
  assert 'data.task: "sst2" in the workdir, "rte" now' in message
  assert "seed: (absent) in the workdir, 1 now" in message and "--new_run" in message
  assert hashed == []  # Inputs are not hashed (reading data, checkpoints) once fields differ.
  with pytest.raises(workdirs.WorkdirMismatchError, match='inputs.data: "abc" in the workdir, '
                                                         '"xyz" now'):
    workdirs.claim(tmp_path, "train", FIELDS, lambda: {"data": "xyz"}, has_results=True)
  assert snapshot(tmp_path) == before


def test_a_key_added_later_matches_old_workdirs_only_at_its_old_behaviour(tmp_path,
                                                                          monkeypatch):
  monkeypatch.setattr(workdirs, "ADDED_KEYS", {"search.selection": "discretize"})
  workdirs.claim(tmp_path, "search", FIELDS, no_inputs, has_results=False)  # Written before.
  workdirs.claim(tmp_path, "search", {**FIELDS, "search.selection": "discretize"}, no_inputs,
                 has_results=True)
  with pytest.raises(workdirs.WorkdirMismatchError,
                     match='search.selection: "discretize" in the workdir, "held_out_loss" now'):
    workdirs.claim(tmp_path, "search", {**FIELDS, "search.selection": "held_out_loss"},
                   no_inputs, has_results=True)
  (tmp_path / "p").mkdir()
  workdirs.record_part(tmp_path / "p", "pipeline", "search", FIELDS)
  workdirs.check_parts(tmp_path / "p", "pipeline",
                       {"search": {**FIELDS, "search.selection": "discretize"}},
                       has_results=lambda part: True)


def test_a_manifest_without_results_is_replaced(tmp_path):
  # A run that failed before its first checkpoint holds nothing to mix.
  workdirs.claim(tmp_path, "train", FIELDS, no_inputs, has_results=False)
  workdirs.claim(tmp_path, "train", {"other": 1}, no_inputs, has_results=False)
  assert json.loads((tmp_path / workdirs.MANIFEST_FILE).read_text())["fields"] == {"other": 1}


def test_a_damaged_manifest_is_named(tmp_path):
  (tmp_path / workdirs.MANIFEST_FILE).write_text("{not json")
  with pytest.raises(ValueError, match="manifest.json is damaged"):
    workdirs.claim(tmp_path, "train", FIELDS, no_inputs, has_results=True)


def test_parts_refuse_only_parts_with_results(tmp_path):
  workdirs.record_part(tmp_path, "pipeline", "search", {"lr": 1})
  workdirs.record_part(tmp_path, "pipeline", "retrain", {"epochs": 1})
  wanted = {"search": {"lr": 2}, "retrain": {"epochs": 3}}
  workdirs.check_parts(tmp_path, "pipeline", wanted, has_results=lambda part: False)
  with pytest.raises(workdirs.WorkdirMismatchError, match=r"search.lr: 1 in the workdir, 2 now"):
    workdirs.check_parts(tmp_path, "pipeline", wanted, has_results=lambda p: p == "search")


def test_fresh_run_dirs_never_reuse_a_directory(tmp_path):
  first = workdirs.fresh_run_dir(tmp_path)
  assert first == tmp_path / "run_1"
  first.mkdir()
  assert workdirs.fresh_run_dir(tmp_path) == tmp_path / "run_2"


def test_a_second_job_on_a_workdir_is_refused_with_the_first_ones_pid(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from models import workdirs\n"
       f"with workdirs.locked({str(tmp_path)!r}):\n  print('locked', flush=True); time.sleep(60)"],
      cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(workdirs.WorkdirBusyError, match=f"in use by another job: pid {holder.pid}"):
      with workdirs.locked(tmp_path):
        pass
  finally:
    holder.kill()
    holder.wait()
  # The kernel released the killed holder's lock: no stale lock file blocks the next job.
  deadline = time.monotonic() + 10
  while True:
    try:
      with workdirs.locked(tmp_path):
        break
    except workdirs.WorkdirBusyError:
      assert time.monotonic() < deadline
      time.sleep(0.05)


def _write_to_full_disk(argv):
  del argv
  try:
    with open("/dev/full", "w") as f:  # Every write fails with ENOSPC, as on a full disk.
      f.write("x")
  except OSError as e:
    raise RuntimeError("checkpoint save failed in a background thread") from e


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_one_line_and_exit_status_1(monkeypatch):
  lines = []
  monkeypatch.setattr(logging, "error", lambda fmt, *args: lines.append(fmt % args))
  with pytest.raises(SystemExit) as e:
    workdirs.with_clear_errors(_write_to_full_disk)([])
  assert e.value.code == 1
  assert len(lines) == 1 and "\n" not in lines[0]
  assert lines[0].startswith("Stopped: no space left on device (RuntimeError). Free space")


def test_read_only_and_other_errors(monkeypatch):
  lines = []
  monkeypatch.setattr(logging, "error", lambda fmt, *args: lines.append(fmt % args))

  def read_only(argv):
    raise OSError(errno.EROFS, "Read-only file system", "/mnt/ro/eval.json")

  with pytest.raises(SystemExit):
    workdirs.with_clear_errors(read_only)([])
  assert "read-only file system writing /mnt/ro/eval.json" in lines[0]

  def bug(argv):
    raise KeyError("a bug keeps its traceback")

  with pytest.raises(KeyError):
    workdirs.with_clear_errors(bug)([])
