"""Architecture logits, their relaxations to probabilities, and the temperature schedule.

Logits live outside the model parameters and follow the probability convention of
`models.search_space`: {"depth": [n_depth], "hidden": [n_hidden], "heads": [L, n_heads],
"ffn": [L, n_ffn]}, one distribution per row.

Relaxations:
  * `softmax` (DARTS): p = softmax(logits / tau).
  * `gumbel` (FBNet): p = softmax((logits + g) / tau), g ~ Gumbel(0, 1), resampled every step.
  * `hard` (straight-through Gumbel): the forward pass sees the one-hot argmax of the Gumbel
    sample (one architecture, as at deployment), the gradient is the Gumbel-softmax one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from models.search_space import SearchSpace

ArchLogits = dict[str, jax.Array]
RELAXATIONS = ("softmax", "gumbel", "hard")


def init_logits(space: SearchSpace) -> ArchLogits:
  """Uniform distributions (zero logits) over every decision of `space`."""
  layers = space.max_layers
  return {"depth": jnp.zeros(len(space.depth_choices)),
          "hidden": jnp.zeros(len(space.hidden_choices)),
          "heads": jnp.zeros((layers, len(space.head_choices))),
          "ffn": jnp.zeros((layers, len(space.ffn_choices)))}


def relax(logits: ArchLogits, method: str, temperature: jax.Array,
          rng: jax.Array | None = None) -> ArchLogits:
  """Architecture probabilities from logits (see the module doc); `rng` for Gumbel methods."""
  if method not in RELAXATIONS:
    raise ValueError(f"Unknown relaxation {method!r}; expected one of {RELAXATIONS}.")
  if method == "softmax":
    return jax.tree.map(lambda x: jax.nn.softmax(x / temperature, axis=-1), logits)
  keys = dict(zip(sorted(logits), jax.random.split(rng, len(logits))))
  probs = {}
  for name, x in logits.items():
    soft = jax.nn.softmax((x + jax.random.gumbel(keys[name], x.shape)) / temperature, axis=-1)
    if method == "hard":
      hard = jax.nn.one_hot(jnp.argmax(soft, axis=-1), x.shape[-1], dtype=soft.dtype)
      soft = hard + soft - jax.lax.stop_gradient(soft)
    probs[name] = soft
  return probs


def temperature(step: jax.Array, start: float, end: float, anneal_steps: int) -> jax.Array:
  """Exponential annealing from `start` to `end` over `anneal_steps`, then constant (FBNet)."""
  fraction = jnp.clip(step / max(anneal_steps, 1), 0.0, 1.0)
  return start * (end / start) ** fraction


def entropy(probs: ArchLogits) -> jax.Array:
  """Mean entropy (nats) over all decisions: log(n) when uniform, 0 when decided."""
  rows = [p.reshape(-1, p.shape[-1]) for p in probs.values()]
  per_row = [-jnp.sum(p * jnp.log(jnp.maximum(p, 1e-12)), axis=-1) for p in rows]
  return jnp.mean(jnp.concatenate(per_row))


def softmax_probs(logits: ArchLogits) -> dict[str, np.ndarray]:
  """The current (temperature 1, noise-free) distribution, as numpy, for logging and decisions."""
  return {k: np.asarray(jax.nn.softmax(v, axis=-1)) for k, v in logits.items()}
