"""Tests of darts.data.metrics: hand-computed values, scipy, and the values of the hand-written
metrics they replaced."""

import numpy as np
import pytest
import scipy.stats

from darts.data import glue, metrics


def test_same_values_as_the_hand_written_metrics_they_replace():
  # Values of canao's own numpy metrics (before scikit-learn/scipy) on the same predictions.
  rng = np.random.default_rng(7)
  labels = rng.integers(0, 2, size=50)
  predictions = np.where(rng.uniform(size=50) < 0.8, labels, 1 - labels)
  assert metrics.compute_metrics("cola", predictions, labels) == {
      "mcc": pytest.approx(0.6370302645726269, abs=1e-12)}
  assert metrics.compute_metrics("mrpc", predictions, labels) == {
      "f1": pytest.approx(0.8363636363636363, abs=1e-12), "accuracy": pytest.approx(0.82),
      "accuracy_f1_mean": pytest.approx(0.8281818181818181, abs=1e-12)}
  scores = np.round(rng.uniform(0, 5, size=50) * 5) / 5
  predicted = scores + rng.normal(0, 1, size=50)
  predicted[:10] = 2.0
  assert metrics.compute_metrics("stsb", predicted, scores) == {
      "pearson": pytest.approx(0.7523402853871367, abs=1e-12),
      "spearman": pytest.approx(0.7328931207622342, abs=1e-12),
      "pearson_spearman_mean": pytest.approx(0.7426167030746855, abs=1e-12)}
  three = rng.integers(0, 3, size=50)
  guesses = np.where(rng.uniform(size=50) < 0.6, three, rng.integers(0, 3, size=50))
  assert metrics.matthews_corrcoef(guesses, three) == pytest.approx(0.662169791424277, abs=1e-12)


def test_stsb_matches_scipy():
  rng = np.random.default_rng(1)
  labels = np.round(rng.uniform(0, 5, size=200) * 5) / 5  # Many ties, like the real scores.
  predictions = labels + rng.normal(0, 1.0, size=200)
  predictions[:30] = 2.0  # Ties among predictions too.
  values = metrics.compute_metrics("stsb", predictions, labels)
  pearson = scipy.stats.pearsonr(predictions, labels)[0]
  spearman = scipy.stats.spearmanr(predictions, labels)[0]
  assert values["pearson"] == pytest.approx(pearson, abs=1e-12)
  assert values["spearman"] == pytest.approx(spearman, abs=1e-12)
  assert values["pearson_spearman_mean"] == pytest.approx((pearson + spearman) / 2, abs=1e-12)
  assert list(values) == ["pearson", "spearman", "pearson_spearman_mean"]


def test_pearson_spearman_hand_computed():
  # Perfectly monotone but not linear: Spearman 1, Pearson below 1.
  x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 10.0])
  # Pearson by hand: centered x = (-1, 0, 1), centered y = (-3.333, -2.333, 5.667).
  expected = 9.0 / np.sqrt(2.0 * (100 / 9 + 49 / 9 + 289 / 9))
  assert metrics.pearson_corr(x, y) == pytest.approx(expected)
  assert metrics.spearman_corr(x, y) == pytest.approx(1.0)
  assert metrics.spearman_corr(x, -y) == pytest.approx(-1.0)
  # Constant predictions: undefined correlation is reported as 0.
  assert metrics.pearson_corr(np.ones(3), y) == 0.0
  assert metrics.spearman_corr(np.ones(3), y) == 0.0


def test_mcc_hand_computed():
  # tp=2, fp=1, tn=2, fn=0 -> (2*2 - 1*0) / sqrt(3*2*3*2) = 4/6.
  predictions = np.array([1, 1, 0, 0, 1])
  labels = np.array([1, 0, 0, 0, 1])
  assert metrics.compute_metrics("cola", predictions, labels) == {"mcc": pytest.approx(2 / 3)}
  assert metrics.matthews_corrcoef(labels, labels) == pytest.approx(1.0)
  assert metrics.matthews_corrcoef(1 - labels, labels) == pytest.approx(-1.0)
  # Only one class predicted: undefined, reported as 0 (sklearn's convention).
  assert metrics.matthews_corrcoef(np.ones(5, int), labels) == 0.0


def test_mcc_equals_phi_coefficient():
  # For binary labels MCC is the Pearson correlation of the 0/1 vectors.
  rng = np.random.default_rng(2)
  for _ in range(10):
    labels = rng.integers(0, 2, size=100)
    predictions = np.where(rng.uniform(size=100) < 0.7, labels, 1 - labels)
    assert metrics.matthews_corrcoef(predictions, labels) == pytest.approx(
        scipy.stats.pearsonr(predictions, labels)[0], abs=1e-12)


def test_mrpc_accuracy_f1_hand_computed():
  # tp=3, fp=1, fn=2, tn=2: accuracy 5/8, precision 3/4, recall 3/5, f1 = 2*.75*.6/1.35 = 2/3.
  predictions = np.array([1, 1, 1, 1, 0, 0, 0, 0])
  labels = np.array([1, 1, 1, 0, 1, 1, 0, 0])
  values = metrics.compute_metrics("mrpc", predictions, labels)
  assert values == {"f1": pytest.approx(2 / 3), "accuracy": pytest.approx(5 / 8),
                    "accuracy_f1_mean": pytest.approx((2 / 3 + 5 / 8) / 2)}
  assert metrics.compute_metrics("qqp", predictions, labels) == values
  # No positives predicted nor present: f1 defined as 0.
  assert metrics.f1_score(np.zeros(3, int), np.zeros(3, int)) == 0.0


def test_accuracy_tasks():
  predictions = np.array([0, 1, 2, 2])
  labels = np.array([0, 1, 1, 2])
  for task in ("sst2", "qnli", "rte", "wnli", "mnli", "mnli_mm"):
    assert metrics.compute_metrics(task, predictions, labels) == {"accuracy": 0.75}


def test_majority_class_metrics():
  train = [1, 1, 0, 1, 0]  # Majority 1.
  dev = np.array([1, 0, 0, 1, 1, 0, 0, 0])  # 3 of 8 positive.
  # All-positive: precision 3/8, recall 1, F1 = 2 * 3/8 / (1 + 3/8) = 6/11.
  assert metrics.majority_class_metrics("mrpc", train, dev) == {
      "f1": pytest.approx(6 / 11), "accuracy": pytest.approx(3 / 8),
      "accuracy_f1_mean": pytest.approx((6 / 11 + 3 / 8) / 2)}
  assert metrics.majority_class_metrics("rte", [0, 0, 1], dev) == {"accuracy": 5 / 8}
  assert metrics.majority_class_metrics("cola", train, dev) == {"mcc": 0.0}
  assert metrics.majority_class_metrics("rte", [0, 1], dev) == {"accuracy": 5 / 8}  # Tie: 0.
  with pytest.raises(ValueError, match="regression"):
    metrics.majority_class_metrics("stsb", [1.0], [2.0])


def test_every_task_has_its_metrics_and_main_metric():
  expected_main = {"cola": "mcc", "stsb": "pearson", "mrpc": "f1", "qqp": "f1"}
  for name, task in glue.TASKS.items():
    assert metrics.main_metric(name) == expected_main.get(name, "accuracy")
    labels = np.array([0.0, 1.0, 2.5]) if task.is_regression else np.array([0, 1, 1])
    predictions = np.array([0.5, 1.0, 2.0]) if task.is_regression else np.array([0, 1, 0])
    values = metrics.compute_metrics(name, predictions, labels)
    assert tuple(values) == task.metric_names
    assert all(isinstance(v, float) and -1.0 <= v <= 1.0 for v in values.values())


def test_input_validation():
  with pytest.raises(ValueError, match="1-D.*argmax"):
    metrics.compute_metrics("sst2", np.zeros((3, 2)), np.zeros(3, int))
  with pytest.raises(ValueError, match="differ in length"):
    metrics.compute_metrics("sst2", np.zeros(3, int), np.zeros(4, int))
  with pytest.raises(ValueError, match="integer class ids"):
    metrics.compute_metrics("sst2", np.array([0.2, 0.9]), np.array([0, 1]))
  with pytest.raises(ValueError, match="No examples"):
    metrics.compute_metrics("cola", np.zeros(0, int), np.zeros(0, int))
