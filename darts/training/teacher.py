"""The fine-tuned teacher of distillation and search: loaded for one task only."""

from __future__ import annotations

import json
import pathlib
from models import checkpoint
from models.bert import BertClassifier

TASK_KEY = "canao_task"  # Written into config.json by darts.train.


def load_teacher(model_dir: str, task_name: str, num_labels: int) -> BertClassifier:
  """Loads a model fine-tuned by `darts.train` and checks it was trained for `task_name`.

  Raises:
    ValueError: the checkpoint records another task, or has another number of labels.
  """
  path = pathlib.Path(checkpoint.resolve_model_dir(model_dir))
  recorded = json.loads((path / checkpoint.CONFIG_FILE).read_text()).get(TASK_KEY)
  if recorded is not None and recorded != task_name:
    raise ValueError(f"The teacher {path} was fine-tuned on {recorded!r}, not on {task_name!r}; "
                     "fine-tune one for this task with darts.train first.")
  weights = checkpoint.read_weights(path)
  if "classifier.weight" not in weights:
    raise ValueError(f"The teacher {path} has no classification head; pass a model fine-tuned "
                     "by darts.train (its WORKDIR/model).")
  if weights["classifier.weight"].shape[0] != num_labels:
    raise ValueError(f"The teacher {path} has {weights['classifier.weight'].shape[0]} outputs; "
                     f"task {task_name} needs {num_labels}.")
  return checkpoint.load_pretrained(str(path), num_labels)
