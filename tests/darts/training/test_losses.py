"""Task and distillation losses."""

import jax
import numpy as np
import pytest

from darts.training import losses


def test_task_loss_weights_ignore_padding_rows():
  logits = np.array([[2.0, 0.0], [0.0, 2.0], [9.0, -9.0]], np.float32)
  labels = np.array([0, 1, 1])
  full = losses.task_loss(logits[:2], labels[:2], np.ones(2, np.float32))
  padded = losses.task_loss(logits, labels, np.array([1, 1, 0], np.float32))
  np.testing.assert_allclose(full, padded, rtol=1e-6)
  expected = -np.log(np.exp(2) / (np.exp(2) + 1))
  np.testing.assert_allclose(full, expected, rtol=1e-5)
  regression = losses.task_loss(np.array([[1.0], [3.0]]), np.array([2.0, 2.0]), np.ones(2))
  np.testing.assert_allclose(regression, 1.0)


def test_distillation_is_zero_at_the_teacher_and_positive_elsewhere():
  teacher = np.array([[1.0, -1.0, 0.5], [0.0, 2.0, 0.0]], np.float32)
  weights = np.ones(2, np.float32)
  np.testing.assert_allclose(losses.distillation_loss(teacher, teacher, weights, 2.0), 0.0,
                             atol=1e-6)
  student = teacher[::-1]
  kl = losses.distillation_loss(student, teacher, weights, 1.0)
  p, q = jax.nn.softmax(teacher), jax.nn.softmax(student)
  np.testing.assert_allclose(kl, np.mean(np.sum(p * np.log(p / q), -1)), rtol=1e-5)


def test_model_loss_mixes_task_and_distillation():
  batch = {"labels": np.array([0, 1]), "weights": np.ones(2, np.float32),
           "teacher_logits": np.array([[3.0, 0.0], [0.0, 3.0]], np.float32)}
  logits = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
  mixed, parts = losses.model_loss(logits, batch, 0.25, 1.0)
  np.testing.assert_allclose(mixed, 0.75 * parts["task_loss"] + 0.25 * parts["distill_loss"],
                             rtol=1e-6)
  alone, parts = losses.model_loss(logits, {k: batch[k] for k in ("labels", "weights")}, 0.25, 1.0)
  assert set(parts) == {"task_loss"}


def test_layer_map_spreads_student_layers_over_the_teacher():
  assert losses.layer_map(6, 6) == [1, 2, 3, 4, 5, 6]
  assert losses.layer_map(3, 6) == [2, 4, 6]
  assert losses.layer_map(4, 6) == [2, 3, 4, 6]  # round(1.5) = 2, round(4.5) = 4
  assert losses.layer_map(1, 12) == [12]
  with pytest.raises(ValueError, match="must not be deeper"):
    losses.layer_map(7, 6)


def test_hidden_state_loss_compares_the_teachers_first_channels_over_real_tokens():
  rng = np.random.default_rng(0)
  teacher = tuple(rng.normal(size=(2, 5, 8)).astype(np.float32) for _ in range(5))  # 4 layers
  student = (teacher[0][..., :6], teacher[2][..., :6], teacher[4][..., :6])  # 2 layers, 6 wide
  mask, weights = np.ones((2, 5), np.int32), np.ones(2, np.float32)
  np.testing.assert_allclose(losses.hidden_state_loss(student, teacher, mask, weights), 0.0,
                             atol=1e-7)
  # Off by 1 everywhere on real tokens; padding (mask 0) and filler rows (weight 0) do not count.
  shifted = tuple(s + 1.0 for s in student)
  mask[0, 3:] = 0
  noisy = tuple(np.where(mask[..., None] == 0, 100.0, s) for s in shifted)
  for hidden in (shifted, noisy):
    np.testing.assert_allclose(losses.hidden_state_loss(hidden, teacher, mask, weights), 1.0,
                               rtol=1e-6)
  filler = tuple(np.concatenate([s, 50 + s[:1]]) for s in shifted)
  extended = tuple(np.concatenate([t, t[:1]]) for t in teacher)
  np.testing.assert_allclose(losses.hidden_state_loss(
      filler, extended, np.concatenate([mask, mask[:1]]), np.array([1, 1, 0], np.float32)),
      1.0, rtol=1e-6)


def test_attention_loss_is_the_kl_of_head_averaged_maps():
  rng = np.random.default_rng(1)
  maps = lambda heads: jax.nn.softmax(rng.normal(size=(2, heads, 4, 4)), axis=-1)
  teacher = (maps(4), maps(4))
  student = (np.repeat(np.mean(teacher[1], axis=1, keepdims=True), 2, axis=1),)  # 2 heads
  mask, weights = np.ones((2, 4), np.int32), np.ones(2, np.float32)
  np.testing.assert_allclose(losses.attention_loss(student, teacher, mask, weights), 0.0,
                             atol=1e-6)
  other = (maps(2),)
  p, q = np.mean(teacher[1], axis=1), np.mean(other[0], axis=1)
  expected = np.mean(np.sum(p * np.log(p / q), -1))
  np.testing.assert_allclose(losses.attention_loss(other, teacher, mask, weights), expected,
                             rtol=1e-5)
