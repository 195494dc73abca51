"""The official GLUE metrics of each task, in numpy.

All values are fractions (accuracy 0.91, not 91). Degenerate inputs for which a correlation is
undefined (a constant prediction or label vector) give 0.0 rather than NaN, the convention of
sklearn's `matthews_corrcoef`: a model that predicts one class scores "no correlation", and model
selection never has to compare NaNs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from darts.data import glue


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
  """Fraction of predictions equal to the labels."""
  return float(np.mean(predictions == labels))


def f1_score(predictions: np.ndarray, labels: np.ndarray, positive: int = 1) -> float:
  """F1 of the `positive` class; 0.0 when there are no true or predicted positives at all."""
  pred_pos = predictions == positive
  true_pos = labels == positive
  tp = np.sum(pred_pos & true_pos)
  denominator = np.sum(pred_pos) + np.sum(true_pos)  # = 2tp + fp + fn
  return float(2.0 * tp / denominator) if denominator else 0.0


def matthews_corrcoef(predictions: np.ndarray, labels: np.ndarray) -> float:
  """Matthews correlation coefficient (multiclass form; equals the binary formula for 2 classes).

  Uses the confusion-matrix form R_K (Gorodkin 2004), as sklearn does; 0.0 when undefined.
  """
  classes, encoded = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
  n = len(labels)
  y_true, y_pred = encoded[:n], encoded[n:]
  k = len(classes)
  confusion = np.zeros((k, k), dtype=np.float64)
  np.add.at(confusion, (y_true, y_pred), 1.0)
  true_counts = confusion.sum(axis=1)
  pred_counts = confusion.sum(axis=0)
  correct = np.trace(confusion)
  total = confusion.sum()
  cov_tp = correct * total - true_counts @ pred_counts
  cov_pp = total * total - pred_counts @ pred_counts
  cov_tt = total * total - true_counts @ true_counts
  denominator = np.sqrt(cov_pp * cov_tt)
  return float(cov_tp / denominator) if denominator > 0 else 0.0


def pearson_corr(x: np.ndarray, y: np.ndarray) -> float:
  """Pearson correlation; 0.0 when either vector is constant."""
  x = np.asarray(x, dtype=np.float64)
  y = np.asarray(y, dtype=np.float64)
  # Center first: the textbook E[xy] - E[x]E[y] form loses precision for large offsets.
  xc = x - x.mean()
  yc = y - y.mean()
  denominator = np.sqrt(np.sum(xc * xc) * np.sum(yc * yc))
  if denominator == 0:
    return 0.0
  # Rounding can push |r| a hair above 1.
  return float(np.clip(np.sum(xc * yc) / denominator, -1.0, 1.0))


def rankdata_average(x: np.ndarray) -> np.ndarray:
  """1-based ranks with ties given their average rank (scipy.stats.rankdata 'average')."""
  x = np.asarray(x)
  order = np.argsort(x, kind="stable")
  sorted_x = x[order]
  # Start index of each run of equal values in sorted order.
  is_new = np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]])
  run_id = np.cumsum(is_new) - 1
  run_starts = np.flatnonzero(is_new)
  run_ends = np.concatenate([run_starts[1:], [len(x)]])
  # Positions start..end-1 (0-based) have ranks start+1..end, whose mean is (start+1+end)/2.
  run_rank = (run_starts + 1 + run_ends) / 2.0
  ranks = np.empty(len(x), dtype=np.float64)
  ranks[order] = run_rank[run_id]
  return ranks


def spearman_corr(x: np.ndarray, y: np.ndarray) -> float:
  """Spearman rank correlation (Pearson of average-tie ranks); 0.0 when undefined."""
  return pearson_corr(rankdata_average(x), rankdata_average(y))


def _classification(names: tuple[str, ...]) -> Callable[[np.ndarray, np.ndarray],
                                                        dict[str, float]]:
  def compute(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    values: dict[str, float] = {}
    if "mcc" in names:
      values["mcc"] = matthews_corrcoef(predictions, labels)
    if "accuracy" in names:
      values["accuracy"] = accuracy(predictions, labels)
    if "f1" in names:
      values["f1"] = f1_score(predictions, labels, positive=1)
    if "accuracy_f1_mean" in names:
      values["accuracy_f1_mean"] = (values["accuracy"] + values["f1"]) / 2.0
    return values
  return compute


def _regression(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  pearson = pearson_corr(predictions, labels)
  spearman = spearman_corr(predictions, labels)
  return {"pearson": pearson, "spearman": spearman,
          "pearson_spearman_mean": (pearson + spearman) / 2.0}


def compute_metrics(task_name: str, predictions, labels) -> dict[str, float]:
  """Computes the official GLUE metrics of a task.

  Args:
    task_name: GLUE task name, e.g. "cola".
    predictions: [N] class ids (argmax of the logits) or, for stsb, float scores.
    labels: [N] gold class ids or scores. Drop padding rows (weight 0) before calling.

  Returns:
    Metric name -> value as a fraction, with the keys `glue.get_task(task_name).metric_names`:
    cola {"mcc"}; sst2/qnli/rte/wnli/mnli/mnli_mm {"accuracy"}; mrpc/qqp {"f1", "accuracy",
    "accuracy_f1_mean"}; stsb {"pearson", "spearman", "pearson_spearman_mean"}.

  Raises:
    ValueError: unknown task, empty or mismatched inputs, or 2-D predictions (pass class ids,
      not logits).
  """
  task = glue.get_task(task_name)
  predictions = np.asarray(predictions)
  labels = np.asarray(labels)
  if predictions.ndim != 1 or labels.ndim != 1:
    raise ValueError(
        f"predictions and labels must be 1-D, got shapes {predictions.shape} and {labels.shape}"
        + ("" if task.is_regression else " (pass class ids, e.g. logits.argmax(-1))") + ".")
  if predictions.shape != labels.shape:
    raise ValueError(
        f"predictions and labels differ in length: {len(predictions)} vs {len(labels)}.")
  if len(labels) == 0:
    raise ValueError(f"No examples to compute the {task.name} metrics on.")
  if task.is_regression:
    values = _regression(predictions, labels)
  else:
    if not (np.issubdtype(predictions.dtype, np.integer)
            and np.issubdtype(labels.dtype, np.integer)):
      # Float "class ids" usually mean logits or probabilities were passed by mistake.
      raise ValueError(
          f"{task.name} is a classification task: predictions and labels must be integer class "
          f"ids, got dtypes {predictions.dtype} and {labels.dtype}.")
    values = _classification(task.metric_names)(predictions, labels)
  return {name: values[name] for name in task.metric_names}


def main_metric(task_name: str) -> str:
  """The metric used for model selection and reporting.

  cola "mcc", stsb "pearson", mrpc/qqp "f1", all others "accuracy".
  """
  return glue.get_task(task_name).metric_names[0]
