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


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
  """The teacher layer each student layer learns from, 1-based (0 is the embeddings'): layers
  spread uniformly over the teacher's depth, the last onto the last (TinyBERT's uniform map)."""
  if not 0 < student_layers <= teacher_layers:
    raise ValueError(f"Layer distillation maps {student_layers} student layers onto "
                     f"{teacher_layers} teacher layers: the student must not be deeper.")
  return [round(i * teacher_layers / student_layers) for i in range(1, student_layers + 1)]


def hidden_state_loss(student: tuple[jax.Array, ...], teacher: tuple[jax.Array, ...],
                      attention_mask: jax.Array, weights: jax.Array) -> jax.Array:
  """Mean squared error between each student hidden state (the embeddings' and every layer's)
  and its mapped teacher's, over real tokens.

  A student sliced from its teacher keeps the teacher's first channels (models.supernet), so a
  narrower student matches the teacher's first `hidden` channels: no learned projection.
  """
  mapping = [0] + layer_map(len(student) - 1, len(teacher) - 1)
  tokens = attention_mask.astype(jnp.float32) * weights[:, None]
  per_layer = []
  for s, t in zip(student, (teacher[i] for i in mapping)):
    error = jnp.mean(jnp.square(s - t[..., :s.shape[-1]]), axis=-1)  # [batch, length]
    per_layer.append(jnp.sum(error * tokens) / jnp.maximum(jnp.sum(tokens), 1.0))
  return jnp.mean(jnp.stack(per_layer))


def attention_loss(student: tuple[jax.Array, ...], teacher: tuple[jax.Array, ...],
                   attention_mask: jax.Array, weights: jax.Array) -> jax.Array:
  """KL(teacher || student) of each layer's attention distribution averaged over heads, from
  every real query token, for mapped layers.

  Heads are averaged because a searched student has other head counts than its teacher (and
  its heads were reordered by importance): the head-averaged map is what both share.
  """
  mapping = layer_map(len(student), len(teacher))
  queries = attention_mask.astype(jnp.float32) * weights[:, None]
  per_layer = []
  for s, t in zip(student, (teacher[i - 1] for i in mapping)):
    p, q = jnp.mean(t, axis=1), jnp.mean(s, axis=1)  # [batch, query, key]
    kl = jnp.sum(p * (jnp.log(jnp.maximum(p, 1e-12)) - jnp.log(jnp.maximum(q, 1e-12))), -1)
    per_layer.append(jnp.sum(kl * queries) / jnp.maximum(jnp.sum(queries), 1.0))
  return jnp.mean(jnp.stack(per_layer))
