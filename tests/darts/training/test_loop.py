"""The training loop: time spent in steps counts as training, whatever reads the state."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tensorboardX

from darts.training import checkpoints, loop


@jax.jit
def _slow_step(x):
  # ~50-100 ms of matmuls on 2 cores: long enough that the asynchronous dispatch of a step
  # returns well before the step has run.
  for _ in range(20):
    x = jnp.tanh(x @ x)
  return x


def test_steps_still_running_when_periodic_work_starts_count_as_training(tmp_path):
  reads = []

  def step_fn(state, step):
    return {"x": _slow_step(state["x"])}, {}, 32.0

  def read_state(step, state):  # As a search's probability history does, every step.
    reads.append(float(np.asarray(state["x"]).sum()))

  x = jnp.eye(512) * 0.5
  _slow_step(x).block_until_ready()  # Compiled here, so the steps below only compute.
  start = time.perf_counter()
  for _ in range(16):
    x = _slow_step(x)
  x.block_until_ready()
  compute_seconds = time.perf_counter() - start

  manager = checkpoints.checkpoint_manager(tmp_path / "checkpoints", keep=1)
  writer = tensorboardX.SummaryWriter(str(tmp_path / "tensorboard"))
  state, progress = loop.run(
      {"x": jnp.eye(512) * 0.5}, step_fn, start_step=0, total_steps=16,
      cadence=loop.Cadence(log_every_steps=4, checkpoint_every_steps=100), manager=manager,
      writer=writer, schedule=optax.constant_schedule(1e-3),
      periodic=[loop.Periodic(1, read_state)])
  assert len(reads) == 16 and np.isfinite(np.asarray(state["x"])).all()
  # Before the fix the reads waited for the steps inside the pause: training time was the first
  # step's alone (the loop waits for that one), and the logged examples/s many times too high.
  assert progress.train_time > 0.4 * compute_seconds, (progress.train_time, compute_seconds)
  assert progress.train_examples == 16 * 32.0
