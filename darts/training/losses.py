"""Training objectives: the task loss and distillation from a teacher's logits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _weighted_mean(per_example: jax.Array, weights: jax.Array) -> jax.Array:
  # Filler rows of a short batch have weight 0 and must not count.
  return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def task_loss(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
  """Weighted mean cross-entropy, or squared error when there is one output (regression)."""
  if logits.shape[-1] == 1:
    return _weighted_mean(jnp.square(logits[:, 0] - labels), weights)
  return _weighted_mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels), weights)


def distillation_loss(logits: jax.Array, teacher_logits: jax.Array, weights: jax.Array,
                      temperature: float) -> jax.Array:
  """KL(teacher || student) at `temperature`, scaled by T^2 (Hinton et al.); MSE for regression."""
  if logits.shape[-1] == 1:
    return _weighted_mean(jnp.square(logits[:, 0] - teacher_logits[:, 0]), weights)
  teacher = jax.nn.softmax(teacher_logits / temperature)
  kl = jnp.sum(teacher * (jnp.log(jnp.maximum(teacher, 1e-12))
                          - jax.nn.log_softmax(logits / temperature)), axis=-1)
  return temperature**2 * _weighted_mean(kl, weights)


def model_loss(logits: jax.Array, batch: dict[str, jax.Array], distill_weight: float,
               temperature: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(1 - w) * task + w * distillation (when the batch carries `teacher_logits`), and parts."""
  task = task_loss(logits, batch["labels"], batch["weights"])
  if "teacher_logits" not in batch or distill_weight == 0:
    return task, {"task_loss": task}
  distill = distillation_loss(logits, batch["teacher_logits"], batch["weights"], temperature)
  return ((1.0 - distill_weight) * task + distill_weight * distill,
          {"task_loss": task, "distill_loss": distill})
