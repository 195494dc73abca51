"""Forward passes of a fixed BERT classifier over whole datasets (evaluation, teacher logits)."""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np
from flax import nnx

from darts.data import batching
from darts.training import progress, sharding


def make_predict(graphdef: nnx.GraphDef, mesh: jax.sharding.Mesh
                 ) -> Callable[[nnx.State, dict], jax.Array]:
  """A jitted `(params, batch) -> logits` of a fixed BERT classifier, without dropout."""

  def predict(params, batch):
    model = nnx.merge(graphdef, params)
    return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

  return jax.jit(predict, in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh)),
                 out_shardings=sharding.replicated(mesh))


def dataset_logits(predict: Callable[[nnx.State, dict], jax.Array], params: nnx.State,
                   dataset: batching.EncodedDataset, batch_size: int,
                   bucket_lengths: tuple[int, ...], mesh: jax.sharding.Mesh,
                   what: str = "") -> np.ndarray:
  """Logits [N, num_labels] of every example of `dataset`, in dataset order.

  With `what`, logs progress (batches done, ETA) under that name: for passes long enough to
  look hung, such as the teacher's logits of a whole train split.
  """
  logits = None
  batches = batching.eval_batches(dataset, batch_size, bucket_lengths)
  if what:
    batches = progress.logged(
        batches, batching.num_eval_batches(dataset, batch_size, bucket_lengths), what)
  for indices, batch in batches:
    out = np.asarray(predict(params, sharding.shard_batch(batch, mesh)))
    if logits is None:
      logits = np.zeros((len(dataset), out.shape[-1]), np.float32)
    logits[indices] = out[:len(indices)]
  return logits
