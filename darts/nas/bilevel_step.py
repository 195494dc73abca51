"""The bilevel search step: architecture logits on held-out data, weights on train data.

One step (DARTS's alternation) first updates the architecture logits on a held-out batch, then
the supernet weights on a train batch under the updated relaxed architecture. The architecture
objective is the distillation/task loss plus a latency penalty on the expected latency from the
cost table. Second order (DARTS, eq. 7) differentiates the held-out loss through one unrolled SGD
step of the weights, w' = w - xi * grad_w L_train(w, alpha), with `jax.grad` (exact
Hessian-vector products, no finite differences).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from darts.nas import relaxation
from darts.training import losses
from latency_loss import expected
from models.bert import compute_view
from models.search_space import SearchSpace
from models.supernet import supernet_logits

PENALTIES = ("hinge", "proxyless", "fbnet")


class SearchState(NamedTuple):
  step: jax.Array
  params: nnx.State
  weight_opt_state: optax.OptState
  arch_logits: relaxation.ArchLogits
  arch_opt_state: optax.OptState


@dataclasses.dataclass(frozen=True)
class SearchSettings:
  """Static settings of the step (a change recompiles; architecture values never do)."""

  relaxation: str = "gumbel"
  tau_start: float = 5.0
  tau_end: float = 0.5
  anneal_steps: int = 1000
  second_order: bool = False
  unroll_lr: float = 5e-5  # xi of the second-order unrolled step.
  distill_weight: float = 1.0
  distill_temperature: float = 1.0
  penalty: str = "hinge"
  target_ms: float = 20.0
  penalty_weight: float = 1.0  # lambda of hinge/proxyless, alpha of FBNet.
  fbnet_beta: float = 0.6
  compute_dtype: str = "float32"

  def __post_init__(self):
    if self.penalty not in PENALTIES:
      raise ValueError(f"Unknown latency penalty {self.penalty!r}; expected one of {PENALTIES}.")
    if self.relaxation not in relaxation.RELAXATIONS:
      raise ValueError(f"Unknown relaxation {self.relaxation!r}; expected one of "
                       f"{relaxation.RELAXATIONS}.")
    if self.target_ms <= 0:
      raise ValueError(f"The latency target must be positive, got {self.target_ms} ms.")


def latency_objective(model_loss: jax.Array, latency_ms: jax.Array,
                      settings: SearchSettings) -> jax.Array:
  """The model loss combined with the configured latency penalty."""
  if settings.penalty == "fbnet":
    return expected.fbnet_loss(model_loss, latency_ms, settings.penalty_weight,
                               settings.fbnet_beta)
  if settings.penalty == "proxyless":
    # Latency in units of the target, so lambda is comparable across devices.
    return model_loss + expected.proxyless_penalty(latency_ms / settings.target_ms,
                                                   settings.penalty_weight)
  return model_loss + expected.hinge_penalty(latency_ms, settings.target_ms,
                                             settings.penalty_weight)


def make_search_step(graphdef: nnx.GraphDef, space: SearchSpace,
                     weight_tx: optax.GradientTransformation,
                     arch_tx: optax.GradientTransformation, table: dict[str, jax.Array],
                     settings: SearchSettings, update_arch: bool
                     ) -> Callable[[SearchState, dict, jax.Array], tuple[SearchState, dict]]:
  """Returns the pure step `(state, {"train": b, "held_out": b}, rng) -> (state, metrics)`.

  With `update_arch=False` (the warm-up) only the weights are trained, under the current
  relaxed architecture.
  """

  def supernet_loss(params, probs, batch, rng):
    model = nnx.merge(graphdef, compute_view(params, settings.compute_dtype))
    compute_probs = compute_view(probs, settings.compute_dtype)
    logits = supernet_logits(model, space, compute_probs, batch["input_ids"],
                             batch["attention_mask"], batch["token_type_ids"],
                             deterministic=False, rngs=nnx.Rngs(dropout=rng))
    return losses.model_loss(logits.astype(jnp.float32), batch, settings.distill_weight,
                             settings.distill_temperature)

  def arch_loss(logits, params, batch, tau, rng):
    sample_rng, unroll_rng, loss_rng = jax.random.split(rng, 3)
    probs = relaxation.relax(logits, settings.relaxation, tau, sample_rng)
    if settings.second_order:
      grads = jax.grad(lambda p: supernet_loss(p, probs, batch["train"], unroll_rng)[0])(params)
      params = jax.tree.map(lambda p, g: p - settings.unroll_lr * g, params, grads)
    model_loss, parts = supernet_loss(params, probs, batch["held_out"], loss_rng)
    latency = expected.expected_latency_ms(table, probs)
    return latency_objective(model_loss, latency, settings), parts

  def step(state: SearchState, batch: dict[str, dict[str, jax.Array]], rng: jax.Array):
    tau = relaxation.temperature(state.step, settings.tau_start, settings.tau_end,
                                  settings.anneal_steps)
    arch_rng, sample_rng, weight_rng = jax.random.split(rng, 3)
    metrics = {}
    logits, arch_opt_state = state.arch_logits, state.arch_opt_state
    if update_arch:
      (objective, parts), grads = jax.value_and_grad(arch_loss, has_aux=True)(
          logits, state.params, batch, tau, arch_rng)
      updates, arch_opt_state = arch_tx.update(grads, arch_opt_state, logits)
      logits = optax.apply_updates(logits, updates)
      metrics.update(arch_objective=objective, held_out_task_loss=parts["task_loss"])
    probs = jax.lax.stop_gradient(
        relaxation.relax(logits, settings.relaxation, tau, sample_rng))
    (loss, parts), grads = jax.value_and_grad(supernet_loss, has_aux=True)(
        state.params, probs, batch["train"], weight_rng)
    updates, weight_opt_state = weight_tx.update(grads, state.weight_opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    mean_probs = relaxation.relax(logits, "softmax", jnp.asarray(1.0))
    metrics.update(loss=loss, **parts, temperature=tau, entropy=relaxation.entropy(mean_probs),
                   expected_latency_ms=expected.expected_latency_ms(table, mean_probs))
    return SearchState(state.step + 1, params, weight_opt_state, logits, arch_opt_state), metrics

  return step
