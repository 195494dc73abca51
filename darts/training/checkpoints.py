"""Orbax checkpoints of a job's state: saved every N steps, the latest restored on restart."""

from __future__ import annotations

import pathlib
from typing import TypeVar

import jax
import orbax.checkpoint as ocp
from absl import logging

State = TypeVar("State")


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
