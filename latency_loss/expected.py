"""Differentiable expected latency of relaxed architecture probabilities, and latency losses.

`probs` follow the convention of `models/search_space.py`:
  {"depth": [n_depth], "hidden": [n_hidden], "heads": [L, n_heads], "ffn": [L, n_ffn]}
and `table` is `latency_loss.table.table_arrays(...)` (the cost model, in ms):
  {"fixed": [n_hidden], "layer": [n_hidden, n_heads, n_ffn], "depth_choices": [n_depth]}

Decisions are treated as independent, and depth is nested: layer i (0-based) runs iff the
chosen depth is > i, so P(layer i active) = sum of the depth probabilities of choices > i.
The expectation is linear in each factor, hence exact for independent choices, and for
one-hot probabilities it equals the table's prediction for that architecture.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

_TABLE_KEYS = ("fixed", "layer", "depth_choices")
_PROB_KEYS = ("depth", "hidden", "heads", "ffn")


def _check_shapes(table: Mapping[str, jax.Array], probs: Mapping[str, jax.Array]) -> None:
  """Raises ValueError naming any missing key or shape that disagrees with the table."""
  for name, keys, got in (("table", _TABLE_KEYS, table), ("probs", _PROB_KEYS, probs)):
    missing = [k for k in keys if k not in got]
    if missing:
      raise ValueError(f"expected_latency_ms: {name} lacks keys {missing}")
  n_hidden, n_heads, n_ffn = np.shape(table["layer"])
  depth_choices = table["depth_choices"]
  # Under jit the table may be traced; its (static) shapes are still checked.
  max_layers = (int(np.max(depth_choices)) if not isinstance(depth_choices, jax.core.Tracer)
                else np.shape(probs["heads"])[0])
  expected = {"depth": (np.shape(depth_choices)[0],), "hidden": (n_hidden,),
              "heads": (max_layers, n_heads), "ffn": (max_layers, n_ffn)}
  bad = [f"probs['{k}'] has shape {tuple(np.shape(probs[k]))}, expected {v}"
         for k, v in expected.items() if tuple(np.shape(probs[k])) != v]
  if tuple(np.shape(table["fixed"])) != (n_hidden,):
    bad.append(f"table['fixed'] has shape {tuple(np.shape(table['fixed']))}, expected "
               f"({n_hidden},)")
  if bad:
    raise ValueError("expected_latency_ms: " + "; ".join(bad))


def layer_active_probs(depth_probs: jax.Array, depth_choices: jax.Array,
                       max_layers: int) -> jax.Array:
  """P(layer i runs) for i < max_layers under nested depth: sum_{d > i} p(d)."""
  runs = jnp.arange(max_layers)[:, None] < jnp.asarray(depth_choices)[None, :]
  return runs.astype(depth_probs.dtype) @ depth_probs


def expected_latency_ms(table: Mapping[str, jax.Array],
                        probs: Mapping[str, jax.Array]) -> jax.Array:
  """E[latency] in ms of the relaxed architecture `probs` (see module docstring).

  E = p(h)·fixed + sum_i P(layer i active) sum_{h,a,f} p(h) p_i(a) p_i(f) T[h, a, f].
  Differentiable in `probs` (and in the table values).

  Raises:
    ValueError: a missing key or a shape that disagrees with the table.
  """
  _check_shapes(table, probs)
  max_layers = probs["heads"].shape[0]
  p_hidden = probs["hidden"]
  per_layer = jnp.einsum("h,la,lf,haf->l", p_hidden, probs["heads"], probs["ffn"],
                         table["layer"])
  active = layer_active_probs(probs["depth"], table["depth_choices"], max_layers)
  return p_hidden @ table["fixed"] + active @ per_layer


def fbnet_loss(task_loss: jax.Array, latency_ms: jax.Array, alpha: float = 0.2,
               beta: float = 0.6) -> jax.Array:
  """FBNet's multiplicative objective: task_loss * alpha * log(latency_ms) ** beta.

  This is Wu et al. (2019), eq. 2, with latency in milliseconds; it needs latency_ms > 1
  (log > 0), which holds for every BERT this project times.
  """
  return task_loss * alpha * jnp.log(latency_ms) ** beta


def proxyless_penalty(latency_ms: jax.Array, lam: float) -> jax.Array:
  """ProxylessNAS's additive penalty lam * E[latency] (add it to the task loss)."""
  return lam * latency_ms


def hinge_penalty(latency_ms: jax.Array, target_ms: float, lam: float) -> jax.Array:
  """lam * max(0, latency/target - 1): zero once the latency budget is met."""
  return lam * jax.nn.relu(latency_ms / target_ms - 1.0)
