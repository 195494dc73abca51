"""Orbax checkpoints: a damaged latest checkpoint falls back to the previous one."""

import pathlib

import jax.numpy as jnp
import pytest

from darts.training import checkpoints


def state(scale: float):
  return {"w": jnp.arange(100.0) * scale, "step": jnp.asarray(int(scale))}


def save_steps(workdir: pathlib.Path, steps) -> None:
  manager = checkpoints.checkpoint_manager(workdir, keep=3)
  for step in steps:
    checkpoints.save(manager, step, state(step))
  manager.wait_until_finished()


def damage(step_dir: pathlib.Path) -> None:
  """Truncates every file of a checkpoint, as a crash during a copy or a bad disk would."""
  for path in step_dir.rglob("*"):
    if path.is_file():
      path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous(tmp_path, caplog):
  save_steps(tmp_path, (2, 4))
  damage(tmp_path / "checkpoints" / "4")
  manager = checkpoints.checkpoint_manager(tmp_path, keep=3)
  restored = checkpoints.restore_latest(manager, state(0))
  assert int(restored["step"]) == 2 and float(restored["w"][1]) == 2.0
  assert "resumed from the older one at step 2" in caplog.text
  # Kept for inspection, out of the manager's way: the resumed job saves step 4 again.
  assert (tmp_path / "checkpoints_unreadable" / "4").is_dir()
  checkpoints.save(manager, 4, state(4))
  manager.wait_until_finished()
  assert manager.all_steps() == [2, 4]


def test_no_readable_checkpoint_is_an_error_naming_them(tmp_path):
  save_steps(tmp_path, (2,))
  damage(tmp_path / "checkpoints" / "2")
  manager = checkpoints.checkpoint_manager(tmp_path, keep=3)
  with pytest.raises(ValueError, match=r"No checkpoint in .*checkpoints can be read \(step 2:"):
    checkpoints.restore_latest(manager, state(0))


def test_no_checkpoint_gives_the_initial_state(tmp_path):
  manager = checkpoints.checkpoint_manager(tmp_path, keep=3)
  initial = state(7)
  assert checkpoints.restore_latest(manager, initial) is initial
  assert not checkpoints.has_checkpoints(tmp_path)
  save_steps(tmp_path, (1,))
  assert checkpoints.has_checkpoints(tmp_path)
