"""Supernet training-step overhead vs the largest fixed model: time and compiled memory.

  .venv/bin/python -m bench.supernet_overhead --batch=32 --seq_len=128 --steps=10

Both steps train the same MiniLM weights on the same batch: the fixed step is darts.train's; the
supernet step is the search's weight update under a relaxed (Gumbel-softmax) architecture, with
and without the architecture update of the bilevel step. Memory is XLA's compiled buffer
assignment (arguments + outputs + temporaries - aliased), the number that decides whether a step
fits on an accelerator. Writes bench/results/supernet_overhead.{json,md}.
"""

import datetime
import json
import pathlib
import shlex
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from flax import nnx

from bench.machine import code_version, machine_facts
from configs import finetune as finetune_config
from darts.nas import bilevel_step, relaxation
from darts.training import finetune
from models import checkpoint, search_space

_BATCH = flags.DEFINE_integer("batch", 32, "Examples per step.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 128, "Tokens per example.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps (after two warm-up steps).")
_OUT = flags.DEFINE_string("out", "bench/results/supernet_overhead", "Result path, no suffix.")


def synthetic_table(space: search_space.SearchSpace) -> dict[str, np.ndarray]:
  """Latency values do not change the step's cost; only the shapes matter here."""
  n_h, n_a, n_f = (len(space.hidden_choices), len(space.head_choices), len(space.ffn_choices))
  return {"fixed": np.ones(n_h), "layer": np.ones((n_h, n_a, n_f)),
          "depth_choices": np.array(space.depth_choices)}


def measure(step, state, batch) -> dict[str, float]:
  """Median seconds per step and the compiled memory of `step`."""
  compiled = jax.jit(step, donate_argnums=0).lower(state, batch, jax.random.key(0)).compile()
  memory = compiled.memory_analysis()
  for i in range(2):
    state, metrics = compiled(state, batch, jax.random.key(i))
  jax.block_until_ready(metrics)
  times = []
  for i in range(_STEPS.value):
    start = time.perf_counter()
    state, metrics = compiled(state, batch, jax.random.key(i))
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  total = (memory.argument_size_in_bytes + memory.output_size_in_bytes
           + memory.temp_size_in_bytes - memory.alias_size_in_bytes)
  return {"median_seconds": float(np.median(times)), "seconds": times,
          "temp_bytes": memory.temp_size_in_bytes, "total_bytes": total}


def main(argv):
  del argv
  space = search_space.get_space("minilm")
  model = checkpoint.load_pretrained("minilm", num_labels=2)
  graphdef, params = nnx.split(model, nnx.Param)
  rng = np.random.default_rng(0)
  b, length = _BATCH.value, _SEQ_LEN.value
  half = {"input_ids": rng.integers(1000, 30000, (b, length)).astype(np.int32),
          "attention_mask": np.ones((b, length), np.int32),
          "token_type_ids": np.zeros((b, length), np.int32),
          "labels": rng.integers(0, 2, b).astype(np.int32), "weights": np.ones(b, np.float32),
          "teacher_logits": rng.normal(size=(b, 2)).astype(np.float32)}
  distill = finetune_config.get_config().distill
  distill.update(weight=0.5, temperature=1.0)
  tx = optax.adamw(1e-5)
  fixed_step = finetune.make_train_step(graphdef, tx, distill)
  fresh = lambda: jax.tree.map(jnp.copy, params)  # Each measured step donates its state.
  fixed_state = finetune.TrainState(jnp.zeros((), jnp.int32), fresh(), tx.init(params))
  results = {"fixed": measure(fixed_step, fixed_state, half)}

  logits = relaxation.init_logits(space)
  arch_tx = optax.adam(1e-2)
  settings = bilevel_step.SearchSettings(target_ms=1.0, distill_weight=0.5)
  for name, update_arch in (("supernet_weights", False), ("supernet_bilevel", True)):
    step = bilevel_step.make_search_step(graphdef, space, tx, arch_tx, synthetic_table(space),
                                        settings, update_arch)
    state = bilevel_step.SearchState(jnp.zeros((), jnp.int32), fresh(), tx.init(params),
                                    jax.tree.map(jnp.copy, logits), arch_tx.init(logits))
    results[name] = measure(step, state, {"train": half, "held_out": half})
  fixed = results["fixed"]
  ratios = {name: {"time": r["median_seconds"] / fixed["median_seconds"],
                   "memory": r["total_bytes"] / fixed["total_bytes"]}
            for name, r in results.items() if name != "fixed"}
  report = {"date": datetime.date.today().isoformat(), "machine": machine_facts(),
            "code": code_version(),
            "command": shlex.join(["python", "-m", "bench.supernet_overhead", *sys.argv[1:]]), "batch": b, "seq_len": length,
            "results": results, "ratios_vs_fixed": ratios,
            "goal": {"time": 1.15, "memory": 1.3, "applies_to": "supernet_weights"}}
  out = pathlib.Path(_OUT.value)
  out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
  lines = [f"# Supernet step overhead, MiniLM (6x384), batch {b} x {length}, {report['date']}",
           "", f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
           f"JAX {report['machine']['jax']}.", "", f"    {report['command']}", "",
           "| step | median s/step | compiled memory (MB) | time ratio | memory ratio |",
           "|---|---|---|---|---|"]
  for name, r in results.items():
    ratio = ratios.get(name, {"time": 1.0, "memory": 1.0})
    lines.append(f"| {name} | {r['median_seconds']:.3f} | {r['total_bytes'] / 2**20:.0f} | "
                 f"{ratio['time']:.3f} | {ratio['memory']:.3f} |")
  lines += ["", "Goal (supernet_weights vs fixed): time <= 1.15x, memory <= 1.3x. The bilevel "
            "step adds the architecture update on a held-out batch (about one more "
            "forward/backward)."]
  out.with_suffix(".md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  app.run(main)
