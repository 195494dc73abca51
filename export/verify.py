"""The export's verification: TFLite logits and metrics through LiteRT, against the JAX model.

Inputs are real GLUE examples tokenized exactly like training (`darts.data.batching.encode`) and
padded to the export's static sequence length, the shape the app feeds.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax
import numpy as np
from flax import nnx

from darts.data import batching, glue, metrics
from darts.training import finetune
from latency_loss.backends import compiled
from latency_loss.backends import tflite as tflite_backend
from latency_loss.runtime import RuntimeSpec
from models import checkpoint
from models.tokenizer import WordPieceTokenizer

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Rows per jitted JAX call; the last chunk is padded so one program serves every call.
_JAX_BATCH = 32


@dataclasses.dataclass
class PaddedSplit:
  """A split as fixed-shape model inputs.

  Attributes:
    dataset: the encoded examples (labels, lengths).
    inputs: int32 [N, seq_len] arrays named like the model's inputs.
  """
  dataset: batching.EncodedDataset
  inputs: dict[str, np.ndarray]

  def __len__(self) -> int:
    return len(self.dataset)


def padded_split(task: glue.GlueTask, split: str, tokenizer: WordPieceTokenizer, seq_len: int,
                 glue_dir: str | os.PathLike[str] | None, limit: int = 0,
                 seed: int = 0) -> PaddedSplit:
  """Loads, optionally subsamples (`limit` > 0, seeded), tokenizes and pads a GLUE split."""
  examples = finetune.subsample(glue.load_split(task.name, split, glue_dir), limit, seed)
  dataset = batching.encode(examples, tokenizer, seq_len, task.is_regression)
  batch = batching.make_batch(dataset, seq_len, np.arange(len(dataset)), len(dataset))
  return PaddedSplit(dataset, {name: batch[name] for name in INPUT_NAMES})


def jax_logits(model_dir: str | os.PathLike[str], num_labels: int,
               inputs: dict[str, np.ndarray]) -> np.ndarray:
  """Logits [N, num_labels] of the checkpoint's JAX model (`checkpoint.load_pretrained`)."""
  graphdef, params = nnx.split(checkpoint.load_pretrained(str(model_dir), num_labels))
  forward = jax.jit(lambda p, x: nnx.merge(graphdef, p)(*(x[k] for k in INPUT_NAMES)))
  n = len(inputs["input_ids"])
  out = []
  for start in range(0, n, _JAX_BATCH):
    chunk = {k: v[start:start + _JAX_BATCH] for k, v in inputs.items()}
    rows = len(chunk["input_ids"])
    chunk = {k: np.pad(v, ((0, _JAX_BATCH - rows), (0, 0))) for k, v in chunk.items()}
    out.append(np.asarray(forward(params, chunk))[:rows])
  return np.concatenate(out).astype(np.float32)


def logits_of(run: Callable[..., dict[str, np.ndarray]],
              inputs: dict[str, np.ndarray]) -> np.ndarray:
  """Logits of a batch-1 model, one example per call of `run(**inputs) -> {"logits": ...}`."""
  n = len(inputs["input_ids"])
  return np.concatenate([run(**{k: v[i:i + 1] for k, v in inputs.items()})["logits"]
                         for i in range(n)]).astype(np.float32)


def tflite_logits(model: bytes, runtime: RuntimeSpec, inputs: dict[str, np.ndarray]) -> np.ndarray:
  """Logits of a batch-1 TFLite model through the Interpreter's signature runner."""
  return logits_of(tflite_backend.make_interpreter(model, runtime).get_signature_runner(), inputs)


def compiled_logits(model: bytes, runtime: RuntimeSpec, inputs: dict[str, np.ndarray],
                    where: str) -> np.ndarray:
  """Logits through LiteRT's CompiledModel API on `runtime` (a compiler plugin's model runs
  through the vendor's dispatch library)."""
  return logits_of(compiled.runner(compiled.load(model, runtime, where)), inputs)


def task_metrics(task: glue.GlueTask, logits: np.ndarray, data: PaddedSplit) -> dict[str, float]:
  """The task's official metrics of `logits` on `data`."""
  return finetune.evaluate(logits, task, data.dataset)


def compare(task: glue.GlueTask, data: PaddedSplit, reference: np.ndarray,
            logits: np.ndarray) -> dict[str, Any]:
  """Metrics of `logits` and their distance to the reference (JAX) logits.

  Returns:
    {"metrics", "main_metric", "metric_drop" (reference minus ours, as a fraction),
     "max_abs_diff", "mean_abs_diff", "prediction_agreement"}.
  """
  main = metrics.main_metric(task.name)
  ours, ref = task_metrics(task, logits, data), task_metrics(task, reference, data)
  diff = np.abs(logits - reference)
  agreement = (None if task.is_regression  # JSON has no NaN.
               else float(np.mean(np.argmax(logits, -1) == np.argmax(reference, -1))))
  return {"metrics": ours, "main_metric": main, "metric_drop": ref[main] - ours[main],
          "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
          "prediction_agreement": agreement}
