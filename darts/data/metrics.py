"""The official GLUE metrics of each task, from the libraries GLUE's own evaluation uses.

scikit-learn's `matthews_corrcoef` and `f1_score`, scipy's `pearsonr` and `spearmanr`; this module
only maps tasks to them. All values are fractions (accuracy 0.91, not 91). Degenerate inputs for
which a correlation is undefined (a constant prediction or label vector) give 0.0 rather than
NaN, the convention of sklearn's `matthews_corrcoef`: a model that predicts one class scores "no
correlation", and model selection never has to compare NaNs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy import stats
from sklearn import metrics as sk_metrics

from darts.data import glue


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
  """Fraction of predictions equal to the labels."""
  return float(sk_metrics.accuracy_score(labels, predictions))


def f1_score(predictions: np.ndarray, labels: np.ndarray, positive: int = 1) -> float:
  """F1 of the `positive` class; 0.0 when there are no true or predicted positives at all."""
  return float(sk_metrics.f1_score(labels, predictions, pos_label=positive, average="binary",
                                   labels=[positive], zero_division=0.0))


def matthews_corrcoef(predictions: np.ndarray, labels: np.ndarray) -> float:
  """Matthews correlation coefficient (multiclass form); 0.0 when undefined."""
  return float(sk_metrics.matthews_corrcoef(labels, predictions))


def _correlation(fn, x: np.ndarray, y: np.ndarray) -> float:
  x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
  if np.ptp(x) == 0 or np.ptp(y) == 0:
    return 0.0  # Undefined for a constant vector (scipy warns and returns NaN).
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", stats.ConstantInputWarning)
    return float(np.clip(fn(x, y).statistic, -1.0, 1.0))


def pearson_corr(x: np.ndarray, y: np.ndarray) -> float:
  """Pearson correlation; 0.0 when either vector is constant."""
  return _correlation(stats.pearsonr, x, y)


def spearman_corr(x: np.ndarray, y: np.ndarray) -> float:
  """Spearman rank correlation (average ranks for ties); 0.0 when undefined."""
  return _correlation(stats.spearmanr, x, y)


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


def majority_class_metrics(task_name: str, train_labels, labels) -> dict[str, float]:
  """The metrics of always predicting the train set's most frequent class (ties: the lowest id).

  The floor a classifier must clear to have learned anything from the text: on the GLUE dev sets,
  MRPC F1 0.812, RTE accuracy 0.527, CoLA MCC 0.

  Args:
    task_name: a classification task.
    train_labels: the train set's class ids, whose most frequent one is predicted.
    labels: the gold class ids it is scored on.

  Raises:
    ValueError: a regression task, or the errors of `compute_metrics`.
  """
  if glue.get_task(task_name).is_regression:
    raise ValueError(f"{task_name} is a regression task: it has no majority class.")
  majority = np.bincount(np.asarray(train_labels)).argmax()
  labels = np.asarray(labels)
  return compute_metrics(task_name, np.full_like(labels, majority), labels)


def main_metric(task_name: str) -> str:
  """The metric used for model selection and reporting.

  cola "mcc", stsb "pearson", mrpc/qqp "f1", all others "accuracy".
  """
  return glue.get_task(task_name).metric_names[0]
