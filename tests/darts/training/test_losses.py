"""Task and distillation losses."""

import jax
import numpy as np

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
