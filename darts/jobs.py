"""What every job shares: checkpoints that resume, progress lines, atomic result files, logs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging as std_logging
import pathlib
import time
from typing import Iterator, TypeVar

import jax
import orbax.checkpoint as ocp
import tensorboardX
from absl import flags, logging
from ml_collections import config_flags

from models import checkpoint

State = TypeVar("State")


def define_job_flags(what: str) -> tuple[flags.FlagHolder, flags.FlagHolder, flags.FlagHolder]:
  """The flags every job takes: --config (a config file), --workdir and --multihost."""
  config = config_flags.DEFINE_config_file("config", None, f"{what} config file.",
                                           lock_config=True)
  workdir = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results; "
                                "rerunning with the same one resumes.")
  multihost = flags.DEFINE_bool(
      "multihost", False, "Call jax.distributed.initialize() first: one process per host (TPU "
      "pods, multi-node GPU); every host builds the same batches and keeps its devices' shards.")
  flags.mark_flags_as_required(["config", "workdir"])
  return config, workdir, multihost


def start_job(multihost: bool) -> None:
  """Common start of a job's main: readable logs, and the distributed runtime when asked."""
  quiet_library_logs()
  if multihost:
    jax.distributed.initialize()


def checkpoint_manager(workdir: pathlib.Path, keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager((workdir / "checkpoints").absolute(),
                               options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))


def save(manager: ocp.CheckpointManager, step: int, state) -> None:
  manager.save(step, args=ocp.args.StandardSave(state))


def restore_latest(manager: ocp.CheckpointManager, state: State) -> State:
  """The latest checkpoint restored into `state`'s structure and shardings, else `state`."""
  if manager.latest_step() is None:
    return state
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  state = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(abstract))
  logging.info("Resumed from the checkpoint at step %d in %s.", manager.latest_step(),
               manager.directory)
  return state


def _format_duration(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


class ProgressLogger:
  """Logs step, loss, learning rate, examples/s and ETA, and writes them to TensorBoard."""

  SHOWN = ("loss", "expected_latency_ms", "entropy", "temperature")

  def __init__(self, writer: tensorboardX.SummaryWriter, start_step: int, total_steps: int):
    self.writer, self.total_steps = writer, total_steps
    self.start_time = self.window_time = time.perf_counter()
    self.window_step = start_step
    self.window_examples = 0.0
    self.train_time = 0.0
    self.train_examples = 0.0

  def update(self, step: int, examples: float, step_metrics: dict[str, float],
             lr: float) -> None:
    self.window_examples += examples
    now = time.perf_counter()
    elapsed = now - self.window_time
    steps = step - self.window_step
    examples_per_sec = self.window_examples / elapsed
    eta = (self.total_steps - step) * elapsed / steps
    shown = " ".join(f"{name} {step_metrics[name]:.4g}" for name in self.SHOWN
                     if name in step_metrics)
    logging.info("step %d/%d (%.1f%%) %s lr %.2e | %.1f examples/s | elapsed %s, ETA %s",
                 step, self.total_steps, 100 * step / self.total_steps, shown, lr,
                 examples_per_sec, _format_duration(now - self.start_time),
                 _format_duration(eta))
    for name, value in {**step_metrics, "lr": lr, "examples_per_sec": examples_per_sec}.items():
      self.writer.add_scalar(f"train/{name}", value, step)
    self.train_time += elapsed
    self.train_examples += self.window_examples
    self.window_time, self.window_step, self.window_examples = now, step, 0.0

  @contextlib.contextmanager
  def paused(self) -> Iterator[None]:
    """Keeps evaluation and checkpointing out of the throughput and ETA."""
    start = time.perf_counter()
    yield
    self.window_time += time.perf_counter() - start


def file_sha256(path: str | pathlib.Path) -> str:
  """Hex SHA-256 of a file's bytes (records which table or model a result came from)."""
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def write_json_atomically(path: pathlib.Path, payload: dict) -> None:
  """Writes JSON under a temporary name, then renames: readers never see a partial file."""
  text = json.dumps(payload, indent=2, sort_keys=True)
  checkpoint.atomic_write(path, lambda tmp: pathlib.Path(tmp).write_text(text))


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
