"""What every job's entry module shares: its flags, readable logs and errors, the distributed
runtime."""

from __future__ import annotations

import logging as std_logging
from typing import NamedTuple

import jax
from absl import flags, logging
from ml_collections import config_flags

from models import native_logs, workdirs


class JobFlags(NamedTuple):
  config: flags.FlagHolder
  workdir: flags.FlagHolder
  multihost: flags.FlagHolder
  new_run: flags.FlagHolder

  def run_dir(self) -> str:
    """--workdir, or a fresh subdirectory of it with --new_run."""
    return str(workdirs.fresh_run_dir(self.workdir.value) if self.new_run.value
               else self.workdir.value)


def define_job_flags(what: str) -> JobFlags:
  """The flags every job takes: --config (a config file), --workdir, --new_run, --multihost."""
  config = config_flags.DEFINE_config_file("config", None, f"{what} config file.",
                                           lock_config=True)
  workdir = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results; "
                                "rerunning with the same one resumes.")
  multihost = flags.DEFINE_bool(
      "multihost", False, "Call jax.distributed.initialize() first: one process per host (TPU "
      "pods, multi-node GPU); every host builds the same batches and keeps its devices' shards.")
  flags.mark_flags_as_required(["config", "workdir"])
  return JobFlags(config, workdir, multihost, workdirs.define_new_run_flag())


def start_job(multihost: bool) -> None:
  """Common start of a job's main: readable logs, and the distributed runtime when asked."""
  quiet_library_logs()
  native_logs.collect_warnings()
  if multihost:
    jax.distributed.initialize()


def finish_job() -> None:
  """Common end of a job's main: repeats its warnings, where the user looks last."""
  collected = native_logs.warning_summary()
  if collected:
    logging.warning("This job logged %d warning(s):\n%s", len(collected),
                    "\n".join(f"  - {message}" for message in collected))


class _DropChattyLibraries(std_logging.Filter):
  """Drops INFO/DEBUG records of libraries that log every file they write or function they
  trace (orbax; TensorFlow's SavedModel machinery, run by every TFLite conversion)."""

  CHATTY = ("/orbax/", "/tensorflow/python/")

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or not any(
        part in record.pathname for part in self.CHATTY)


def quiet_library_logs() -> None:
  """Keeps warnings of chatty libraries but not their INFO lines (call from a job's main)."""
  for handler in std_logging.getLogger().handlers + std_logging.getLogger("absl").handlers:
    handler.addFilter(_DropChattyLibraries())
