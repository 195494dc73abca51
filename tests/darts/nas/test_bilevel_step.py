"""Invariants of the search step: no recompiles, exact second order, data-parallel == 1 device."""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from darts.nas import bilevel_step, relaxation
from models import bert, search_space

SPACE = search_space.get_space("tiny")


def tiny_model():
  largest = SPACE.largest_arch()
  config = bert.BertConfig(vocab_size=SPACE.vocab_size, hidden_size=largest.hidden_size,
                           num_layers=largest.num_layers, num_heads=largest.heads,
                           head_size=SPACE.head_size, intermediate_size=largest.ffn,
                           max_position_embeddings=SPACE.max_position_embeddings)
  return bert.BertClassifier(config, 2, rngs=nnx.Rngs(0))


def table():
  rng = np.random.default_rng(0)
  n_h, n_a, n_f = (len(SPACE.hidden_choices), len(SPACE.head_choices), len(SPACE.ffn_choices))
  return {"fixed": rng.uniform(0.2, 0.35, n_h),
          "layer": np.sort(rng.uniform(0.5, 2.0, (n_h, n_a, n_f)), axis=None).reshape(
              n_h, n_a, n_f), "depth_choices": np.array(SPACE.depth_choices)}


def batch(seed):
  rng = np.random.default_rng(seed)
  half = lambda: {"input_ids": rng.integers(1, SPACE.vocab_size, (8, 16)).astype(np.int32),
                  "attention_mask": np.ones((8, 16), np.int32),
                  "token_type_ids": np.zeros((8, 16), np.int32),
                  "labels": rng.integers(0, 2, 8).astype(np.int32),
                  "weights": np.ones(8, np.float32)}
  return {"train": half(), "held_out": half()}


def initial_state(params, weight_tx, arch_tx):
  logits = relaxation.init_logits(SPACE)
  return bilevel_step.SearchState(jnp.zeros((), jnp.int32), params, weight_tx.init(params),
                                 logits, arch_tx.init(logits))


def test_new_architecture_logits_do_not_recompile():
  graphdef, params = nnx.split(tiny_model(), nnx.Param)
  weight_tx, arch_tx = optax.adamw(1e-3), optax.adam(1e-2)
  settings = bilevel_step.SearchSettings(target_ms=3.0)
  step = bilevel_step.make_search_step(graphdef, SPACE, weight_tx, arch_tx, table(), settings,
                                      update_arch=True)
  traces = []
  jitted = jax.jit(lambda *args: (traces.append(1), step(*args))[1])
  state = initial_state(params, weight_tx, arch_tx)
  for i in range(3):
    logits = jax.tree.map(lambda x, i=i: x + i * jnp.arange(x.size).reshape(x.shape) * 0.1,
                          state.arch_logits)
    state, _ = jitted(state._replace(arch_logits=logits), batch(i), jax.random.key(i))
  assert len(traces) == 1


def test_second_order_gradient_matches_finite_differences():
  # The architecture objective through one unrolled SGD step of the weights, differentiated
  # exactly by jax.grad, against central differences along a random direction.
  graphdef, params = nnx.split(tiny_model(), nnx.Param)
  settings = bilevel_step.SearchSettings(relaxation="softmax", second_order=True, unroll_lr=0.5,
                                        target_ms=3.0, tau_start=1.0, tau_end=1.0)
  logits = relaxation.init_logits(SPACE)
  value_and_grad = {}
  for order in ("first", "second"):
    s = bilevel_step.SearchSettings(**{**settings.__dict__, "second_order": order == "second"})
    step = bilevel_step.make_search_step(graphdef, SPACE, optax.sgd(0.0), optax.sgd(1.0),
                                        table(), s, update_arch=True)
    objective = lambda arch_logits, s=step: s(
        initial_state(params, optax.sgd(0.0), optax.sgd(1.0))._replace(arch_logits=arch_logits),
        batch(0), jax.random.key(0))[1]["arch_objective"]
    # One compiled function per order gives both the value and the gradient: compiling the
    # unrolled step is most of this test's time, and op-by-op dispatch of it is slower still.
    value_and_grad[order] = jax.jit(jax.value_and_grad(objective))
  direction = jax.tree.map(lambda x: jax.random.normal(jax.random.key(7), x.shape), logits)
  eps = 1e-2
  shifted = lambda sign: jax.tree.map(lambda x, d: x + sign * eps * d, logits, direction)
  objective = lambda x: value_and_grad["second"](x)[0]
  numeric = (objective(shifted(1)) - objective(shifted(-1))) / (2 * eps)
  grad = value_and_grad["second"](logits)[1]
  dot = lambda g: sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g),
                                                      jax.tree.leaves(direction)))
  first_order = dot(value_and_grad["first"](logits)[1])
  assert abs(dot(grad) - numeric) < 0.05 * abs(numeric) + 1e-4
  assert abs(dot(grad) - numeric) < abs(first_order - numeric)


SHARDING_SCRIPT = r"""
import jax, numpy as np, optax
from flax import nnx
from darts.nas import bilevel_step
from darts.training import sharding
import test_bilevel_step as t

graphdef, params = nnx.split(t.tiny_model(), nnx.Param)
weight_tx, arch_tx = optax.adamw(1e-3), optax.adam(1e-2)
settings = bilevel_step.SearchSettings(target_ms=3.0, second_order=True)
results = []
for devices in (1, 8):
  mesh = sharding.make_mesh(devices)
  rep = sharding.replicated(mesh)
  step = jax.jit(bilevel_step.make_search_step(graphdef, t.SPACE, weight_tx, arch_tx, t.table(),
                                              settings, True),
                 in_shardings=(rep, sharding.batch_sharded(mesh), rep), out_shardings=(rep, rep))
  state = jax.device_put(t.initial_state(params, weight_tx, arch_tx), rep)
  for i in range(2):
    batch = {k: sharding.shard_batch(v, mesh) for k, v in t.batch(i).items()}
    state, _ = step(state, batch, jax.random.key(i))
  results.append(jax.device_get(state))
assert len(jax.devices()) == 8
for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
print("same")
"""


def test_eight_devices_give_the_same_updates_as_one():
  here = pathlib.Path(__file__).parent
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "PYTHONPATH": f"{here.parents[2]}{os.pathsep}{here}"}
  result = subprocess.run([sys.executable, "-c", SHARDING_SCRIPT], env=env, capture_output=True,
                          text=True, cwd=here.parents[2])
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().endswith("same")


def test_bfloat16_compute_keeps_float32_masters_and_tracks_float32_loss():
  graphdef, params = nnx.split(tiny_model(), nnx.Param)
  weight_tx, arch_tx = optax.adamw(1e-3), optax.adam(1e-2)
  metrics, states = {}, {}
  for dtype in ("float32", "bfloat16"):
    settings = bilevel_step.SearchSettings(target_ms=3.0, compute_dtype=dtype)
    step = jax.jit(bilevel_step.make_search_step(graphdef, SPACE, weight_tx, arch_tx, table(),
                                                settings, update_arch=True))
    states[dtype], metrics[dtype] = step(initial_state(params, weight_tx, arch_tx), batch(0),
                                         jax.random.key(0))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(states["bfloat16"].params)
             if jnp.issubdtype(x.dtype, jnp.floating))
  assert states["bfloat16"].arch_logits["ffn"].dtype == jnp.float32
  np.testing.assert_allclose(metrics["bfloat16"]["loss"], metrics["float32"]["loss"], rtol=0.05)
