"""Orbax checkpoints of a job's state: saved every N steps, the latest restored on restart."""

from __future__ import annotations

import os
import pathlib
from typing import TypeVar

import jax
import orbax.checkpoint as ocp
from absl import logging

State = TypeVar("State")


CHECKPOINT_DIR = "checkpoints"


def has_checkpoints(workdir: pathlib.Path) -> bool:
  """Whether `workdir` holds a checkpoint (a step directory) to resume from."""
  directory = workdir / CHECKPOINT_DIR
  return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


def checkpoint_manager(workdir: pathlib.Path, keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager((workdir / CHECKPOINT_DIR).absolute(),
                               options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))


def save(manager: ocp.CheckpointManager, step: int, state) -> None:
  manager.save(step, args=ocp.args.StandardSave(state))


def restore_latest(manager: ocp.CheckpointManager, state: State) -> State:
  """The newest readable checkpoint restored into `state`'s structure and shardings, else
  `state` (no checkpoint yet).

  A checkpoint that cannot be read (truncated or damaged files) is moved aside, with a warning,
  to `checkpoints_unreadable/` beside the checkpoints (never deleted), and the previous one is
  tried: the job redoes the steps since then.

  Raises:
    ValueError: checkpoints exist but none can be read; names them and the errors.
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  errors = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # pylint: disable=broad-except  # orbax raises many types.
      errors.append(f"step {step}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
      _move_aside(manager, step)
      continue
    if errors:
      logging.warning("Unreadable checkpoints were moved to %s (%s); resumed from the older "
                      "one at step %d.", _aside_dir(manager), "; ".join(errors), step)
    logging.info("Resumed from the checkpoint at step %d in %s.", step, manager.directory)
    return restored
  if errors:
    raise ValueError(f"No checkpoint in {manager.directory} can be read ({'; '.join(errors)}); "
                     f"they were moved to {_aside_dir(manager)}. Rerun to start from step 0, "
                     "or restore them from a backup.")
  return state


def _aside_dir(manager: ocp.CheckpointManager) -> pathlib.Path:
  return pathlib.Path(manager.directory).parent / "checkpoints_unreadable"


def _move_aside(manager: ocp.CheckpointManager, step: int) -> None:
  """Moves a step out of the manager's sight, so that the resumed job can save that step again."""
  aside = _aside_dir(manager)
  aside.mkdir(exist_ok=True)
  source = pathlib.Path(manager.directory) / str(step)
  target, copy = aside / str(step), 1
  while target.exists():
    target, copy = aside / f"{step}.{copy}", copy + 1
  os.replace(source, target)
  manager.reload()
