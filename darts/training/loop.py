"""The one training loop of every job: fine-tuning, retraining and the architecture search.

It owns what they share: the step count from a restored checkpoint, the progress line, the check
for non-finite metrics, periodic work (evaluation, probability history) kept out of the
throughput, and the checkpoint cadence. What a step does is the caller's `step_fn`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Callable, Generic, Sequence, TypeVar

import jax
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tensorboardX
from absl import logging

from darts.training import checkpoints
from darts.training.progress import ProgressLogger
from models import workdirs

# Config keys that set how often a job logs, evaluates or checkpoints, not what it computes:
# a job may resume with other values (the run manifest leaves them out).
CADENCE_KEYS = ("log_every_steps", "eval_every_steps", "history_every_steps",
                "checkpoint_every_steps", "keep_checkpoints")


def claim_workdir(workdir: pathlib.Path, job: str, config: ml_collections.ConfigDict,
                  input_paths: tuple[str, ...], inputs: dict[str, Callable[[], str]],
                  outputs: tuple[str, ...]) -> None:
  """Refuses `workdir` when its checkpoints or `outputs` come from another config or inputs.

  Args:
    workdir: the job's workdir.
    job: its name in the manifest.
    config: the job's config; all of it defines the result except `CADENCE_KEYS` and
      `input_paths` (keys that locate inputs, which are hashed instead: a moved file is the same
      input).
    inputs: each input's name and a function that hashes it.
    outputs: the job's result files or directories in `workdir`.

  Raises:
    models.workdirs.WorkdirMismatchError: naming every differing key with both values.
  """
  workdirs.claim(workdir, job,
                 workdirs.config_fields(config, exclude=(*CADENCE_KEYS, *input_paths)),
                 lambda: {name: digest() for name, digest in inputs.items()},
                 has_results=(checkpoints.has_checkpoints(workdir)
                              or any((workdir / name).exists() for name in outputs)))


State = TypeVar("State")
# (state, step) -> (state, metrics, examples in the step's batch); `step` counts from 1.
StepFn = Callable[[State, int], tuple[State, dict, float]]


@dataclasses.dataclass(frozen=True)
class Periodic(Generic[State]):
  """`fn(step, state)` every `every` steps (0: never), and after the last step if `at_end`."""
  every: int
  fn: Callable[[int, State], None]
  at_end: bool = True

  def due(self, step: int, total_steps: int) -> bool:
    if step == total_steps:
      return self.at_end
    return self.every > 0 and step % self.every == 0


@dataclasses.dataclass(frozen=True)
class Cadence:
  """How often the loop logs progress (and checks metrics) and saves a checkpoint."""
  log_every_steps: int
  checkpoint_every_steps: int


def run(state: State, step_fn: StepFn, *, start_step: int, total_steps: int, cadence: Cadence,
        manager: ocp.CheckpointManager, writer: tensorboardX.SummaryWriter,
        schedule: optax.Schedule, periodic: Sequence[Periodic] = (),
        nan_hint: str = "lower --config.optim.lr or check the data"
        ) -> tuple[State, ProgressLogger]:
  """Runs steps `start_step + 1 .. total_steps`; returns the final state and the progress log.

  Raises:
    FloatingPointError: a logged metric is NaN or infinite (names the step and `nan_hint`).
  """
  progress = ProgressLogger(writer, start_step, total_steps)
  examples_since_log = 0.0
  if start_step < total_steps:
    logging.info("Compiling the step (XLA): the first step takes longer.")
  for step in range(start_step + 1, total_steps + 1):
    state, step_metrics, examples = step_fn(state, step)
    examples_since_log += examples
    if step == start_step + 1:
      jax.block_until_ready(state)
      logging.info("First step done (compilation included) after %.1f s.",
                   time.perf_counter() - progress.start_time)
    if step % cadence.log_every_steps == 0 or step == total_steps:
      step_metrics = jax.device_get(step_metrics)
      if not all(np.isfinite(v) for v in step_metrics.values()):
        raise FloatingPointError(f"Non-finite metrics at step {step}: {step_metrics}; "
                                 f"{nan_hint}.")
      progress.update(step, examples_since_log, step_metrics, float(schedule(step)))
      examples_since_log = 0.0
    for work in periodic:
      if work.due(step, total_steps):
        with progress.paused(state):
          work.fn(step, state)
    if step % cadence.checkpoint_every_steps == 0 or step == total_steps:
      with progress.paused(state):
        checkpoints.save(manager, step, state)
  manager.wait_until_finished()
  return state, progress
