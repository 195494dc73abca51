"""Tokenization and length-bucketed, fixed-shape batches for GLUE.

Every batch has the same batch size and one of a few sequence lengths (`bucket_lengths`), so XLA
compiles at most `len(bucket_lengths)` programs per batch size while short sentences are not
padded to the maximum length.

Batch order is a pure function of (seed, epoch): `epoch_plan` recomputes an epoch's batches
exactly, so a job restored at global step k can continue with `iterate_batches(start_step=k)` and
see the same batches as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
from absl import logging

from darts.data import glue

# Examples per `encode_batch` call: large enough for a fast tokenizer to parallelize, small
# enough that the Python lists it returns stay modest for MNLI/QQP-sized splits.
_ENCODE_CHUNK = 4096


class Tokenizer(Protocol):
  """What batching needs from a tokenizer (e.g. `models.tokenizer.WordPieceTokenizer`)."""

  pad_id: int

  def encode_batch(self, texts_a: Sequence[str], texts_b: Sequence[str] | None,
                   max_length: int) -> list[tuple[list[int], list[int]]]:
    """Returns (input_ids, token_type_ids) per example, with [CLS]/[SEP], truncated."""
    ...


@dataclasses.dataclass
class EncodedDataset:
  """Token ids of a whole split, stored flat (one array for all examples) to save memory.

  Example i's tokens are `token_ids[offsets[i]:offsets[i + 1]]`.

  Attributes:
    token_ids: int32 [total_tokens], all examples' input ids concatenated.
    token_type_ids: int32 [total_tokens], segment ids aligned with `token_ids`.
    offsets: int64 [N + 1], start of each example in the flat arrays.
    labels: [N] int32 class ids, or float32 scores for regression.
    lengths: int32 [N] number of tokens per example (offsets' differences).
    pad_id: token id used for padding.
    max_length: the truncation length used by `encode`; no example is longer.
    is_regression: whether labels are float scores.
    extras: per-example arrays [N, ...] that batches carry along (e.g. a teacher's logits).
  """

  token_ids: np.ndarray
  token_type_ids: np.ndarray
  offsets: np.ndarray
  labels: np.ndarray
  lengths: np.ndarray
  pad_id: int
  max_length: int
  is_regression: bool
  extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  def __len__(self) -> int:
    return len(self.labels)

  def example(self, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns (input_ids, token_type_ids) of example i."""
    start, end = self.offsets[i], self.offsets[i + 1]
    return self.token_ids[start:end], self.token_type_ids[start:end]


def encode(examples: Sequence[glue.Example],
           tokenizer: Tokenizer,
           max_length: int,
           is_regression: bool) -> EncodedDataset:
  """Tokenizes examples into an `EncodedDataset`.

  Args:
    examples: GLUE examples; either all have `text_b` or none has.
    tokenizer: anything with `encode_batch(texts_a, texts_b, max_length)` and `pad_id`.
    max_length: maximum tokens per example, including [CLS]/[SEP].
    is_regression: store labels as float32 (stsb) instead of int32.

  Returns:
    The encoded dataset.

  Raises:
    ValueError: mixed single/pair examples, or tokenizer output that is empty, longer than
      max_length, or whose ids and type ids differ in length.
  """
  if max_length < 2:
    raise ValueError(f"max_length must be >= 2 to hold [CLS] and [SEP], got {max_length}.")
  num_pairs = sum(ex.text_b is not None for ex in examples)
  if 0 < num_pairs < len(examples):
    raise ValueError(
        f"{num_pairs} of {len(examples)} examples have text_b: a split must be all single "
        "sentences or all pairs.")
  is_pair = num_pairs > 0

  id_chunks, type_chunks, lengths = [], [], []
  for start in range(0, len(examples), _ENCODE_CHUNK):
    chunk = examples[start:start + _ENCODE_CHUNK]
    encoded = tokenizer.encode_batch([ex.text_a for ex in chunk],
                                     [ex.text_b for ex in chunk] if is_pair else None,
                                     max_length)
    if len(encoded) != len(chunk):
      raise ValueError(
          f"Tokenizer returned {len(encoded)} encodings for {len(chunk)} examples.")
    for j, (ids, types) in enumerate(encoded):
      if not 0 < len(ids) <= max_length or len(types) != len(ids):
        raise ValueError(
            f"Example {start + j}: tokenizer returned {len(ids)} ids and {len(types)} type ids; "
            f"expected the same number, between 1 and max_length={max_length}.")
      id_chunks.append(np.asarray(ids, dtype=np.int32))
      type_chunks.append(np.asarray(types, dtype=np.int32))
      lengths.append(len(ids))

  lengths = np.asarray(lengths, dtype=np.int32)
  offsets = np.zeros(len(examples) + 1, dtype=np.int64)
  np.cumsum(lengths, out=offsets[1:])
  empty = np.zeros(0, dtype=np.int32)
  return EncodedDataset(
      token_ids=np.concatenate(id_chunks) if id_chunks else empty,
      token_type_ids=np.concatenate(type_chunks) if type_chunks else empty,
      offsets=offsets,
      labels=np.asarray([ex.label for ex in examples],
                        dtype=np.float32 if is_regression else np.int32),
      lengths=lengths,
      pad_id=int(tokenizer.pad_id),
      max_length=int(max_length),
      is_regression=is_regression,
  )


def head(dataset: EncodedDataset, count: int) -> EncodedDataset:
  """The first `count` examples (all when `count` is 0 or larger than the dataset)."""
  if not count or count >= len(dataset):
    return dataset
  end = int(dataset.offsets[count])
  return dataclasses.replace(
      dataset, token_ids=dataset.token_ids[:end], token_type_ids=dataset.token_type_ids[:end],
      offsets=dataset.offsets[:count + 1], labels=dataset.labels[:count],
      lengths=dataset.lengths[:count],
      extras={name: values[:count] for name, values in dataset.extras.items()})

def _check_buckets(dataset: EncodedDataset, bucket_lengths: Sequence[int]) -> np.ndarray:
  buckets = np.asarray(bucket_lengths, dtype=np.int64)
  if buckets.ndim != 1 or len(buckets) == 0 or np.any(buckets <= 0) or np.any(
      np.diff(buckets) <= 0):
    raise ValueError(
        f"bucket_lengths must be positive and strictly increasing, got {tuple(bucket_lengths)}.")
  if buckets[-1] < dataset.max_length:
    raise ValueError(
        f"The largest bucket length {int(buckets[-1])} is smaller than the dataset's max_length "
        f"{dataset.max_length}; add a bucket >= {dataset.max_length}.")
  return buckets


def assign_buckets(dataset: EncodedDataset, bucket_lengths: Sequence[int]) -> np.ndarray:
  """Returns each example's bucket index: the smallest bucket length >= its length."""
  buckets = _check_buckets(dataset, bucket_lengths)
  return np.searchsorted(buckets, dataset.lengths, side="left")


def bucket_histogram(dataset: EncodedDataset, bucket_lengths: Sequence[int]) -> dict[int, int]:
  """Returns {bucket length: number of examples in it}."""
  counts = np.bincount(assign_buckets(dataset, bucket_lengths), minlength=len(bucket_lengths))
  return {int(b): int(c) for b, c in zip(bucket_lengths, counts)}


def _check_batch_size(batch_size: int) -> None:
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")


def num_batches_per_epoch(dataset: EncodedDataset,
                          batch_size: int,
                          bucket_lengths: Sequence[int],
                          drop_remainder: bool = True) -> int:
  """Number of batches in every epoch plan (independent of seed and epoch)."""
  _check_batch_size(batch_size)
  counts = np.bincount(assign_buckets(dataset, bucket_lengths), minlength=len(bucket_lengths))
  if drop_remainder:
    return int(np.sum(counts // batch_size))
  return int(np.sum(-(-counts // batch_size)))


def epoch_plan(dataset: EncodedDataset,
               batch_size: int,
               bucket_lengths: Sequence[int],
               seed: int,
               epoch: int,
               shuffle: bool = True,
               drop_remainder: bool = True) -> list[tuple[int, np.ndarray]]:
  """Returns the batches of one epoch as (bucket length, example indices).

  With `shuffle`, examples are shuffled within each bucket, cut into batches per bucket, and the
  batch order is then shuffled across buckets; the plan depends only on (seed, epoch). Without
  `shuffle`, batches come bucket by bucket in example order.

  Args:
    dataset: the encoded split.
    batch_size: examples per batch.
    bucket_lengths: strictly increasing sequence lengths; the last must be >= max_length.
    seed: non-negative base seed.
    epoch: non-negative epoch number.
    shuffle: shuffle (training) or keep order (evaluation).
    drop_remainder: drop each bucket's last short batch (training). With False every example
      appears exactly once and the last batch of a bucket may be short (evaluation).

  Returns:
    A list of (bucket_length, int64 indices) with 1 <= len(indices) <= batch_size.
  """
  _check_batch_size(batch_size)
  if seed < 0 or epoch < 0:
    raise ValueError(f"seed and epoch must be non-negative, got seed={seed}, epoch={epoch}.")
  bucket_ids = assign_buckets(dataset, bucket_lengths)
  # One generator per (seed, epoch): any epoch's plan can be rebuilt without replaying earlier
  # epochs, which is what makes resuming exact and cheap.
  rng = np.random.default_rng([seed, epoch])
  plan: list[tuple[int, np.ndarray]] = []
  for b, bucket_length in enumerate(bucket_lengths):
    members = np.flatnonzero(bucket_ids == b)
    if shuffle:
      members = rng.permutation(members)
    for start in range(0, len(members), batch_size):
      indices = members[start:start + batch_size]
      if drop_remainder and len(indices) < batch_size:
        break
      plan.append((int(bucket_length), indices.astype(np.int64)))
  if shuffle:
    plan = [plan[i] for i in rng.permutation(len(plan))]
  return plan


def make_batch(dataset: EncodedDataset,
               bucket_length: int,
               indices: np.ndarray,
               batch_size: int) -> dict[str, np.ndarray]:
  """Builds one padded batch of shape [batch_size, bucket_length].

  Rows beyond `len(indices)` are filler (pad tokens, label 0, weight 0), so short final batches
  keep the compiled shape.

  Returns:
    A dict with `input_ids`, `attention_mask`, `token_type_ids` (int32 [B, L]), `labels` ([B]
    int32, float32 for regression), `weights` (float32 [B], 1 real row, 0 filler) and each of
    `dataset.extras` ([B, ...], zeros in filler rows).

  Raises:
    ValueError: more indices than batch_size, or an example longer than bucket_length.
  """
  indices = np.asarray(indices, dtype=np.int64)
  if len(indices) > batch_size:
    raise ValueError(f"{len(indices)} indices do not fit in a batch of {batch_size}.")
  if len(indices) and int(dataset.lengths[indices].max()) > bucket_length:
    raise ValueError(
        f"An example of length {int(dataset.lengths[indices].max())} does not fit in bucket "
        f"length {bucket_length}.")
  input_ids = np.full((batch_size, bucket_length), dataset.pad_id, dtype=np.int32)
  token_type_ids = np.zeros((batch_size, bucket_length), dtype=np.int32)
  attention_mask = np.zeros((batch_size, bucket_length), dtype=np.int32)
  for row, i in enumerate(indices):
    start, end = dataset.offsets[i], dataset.offsets[i + 1]
    n = end - start
    input_ids[row, :n] = dataset.token_ids[start:end]
    token_type_ids[row, :n] = dataset.token_type_ids[start:end]
    attention_mask[row, :n] = 1
  labels = np.zeros((batch_size,), dtype=dataset.labels.dtype)
  labels[:len(indices)] = dataset.labels[indices]
  weights = np.zeros((batch_size,), dtype=np.float32)
  weights[:len(indices)] = 1.0
  batch = {
      "input_ids": input_ids,
      "attention_mask": attention_mask,
      "token_type_ids": token_type_ids,
      "labels": labels,
      "weights": weights,
  }
  for name, values in dataset.extras.items():
    batch[name] = np.zeros((batch_size,) + values.shape[1:], values.dtype)
    batch[name][:len(indices)] = values[indices]
  return batch


def iterate_batches(dataset: EncodedDataset,
                    batch_size: int,
                    bucket_lengths: Sequence[int],
                    seed: int,
                    start_step: int = 0,
                    shuffle: bool = True,
                    drop_remainder: bool = True) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
  """Infinite training iterator over epochs, starting at global step `start_step`.

  Step s is batch `s % n` of epoch `s // n`, n = `num_batches_per_epoch(...)`, so resuming at
  step k yields exactly the batches an uninterrupted run yields from step k on. Skipped epochs
  and batches are never built.

  Yields:
    (epoch, batch) with the batch as returned by `make_batch`.

  Raises:
    ValueError: start_step < 0, or an epoch would have no batch (e.g. every bucket holds fewer
      than batch_size examples with drop_remainder).
  """
  if start_step < 0:
    raise ValueError(f"start_step must be non-negative, got {start_step}.")
  per_epoch = num_batches_per_epoch(dataset, batch_size, bucket_lengths, drop_remainder)
  if per_epoch == 0:
    raise ValueError(
        f"No batch of size {batch_size} can be formed from {len(dataset)} examples in buckets "
        f"{bucket_histogram(dataset, bucket_lengths)} (drop_remainder={drop_remainder}).")
  if drop_remainder:
    dropped = len(dataset) - per_epoch * batch_size
    logging.info("%d batches of %d per epoch; %d examples (the per-bucket remainders, "
                 "different ones each epoch) are left out of each epoch.",
                 per_epoch, batch_size, dropped)
  epoch, skip = divmod(start_step, per_epoch)
  while True:
    plan = epoch_plan(dataset, batch_size, bucket_lengths, seed, epoch, shuffle, drop_remainder)
    for bucket_length, indices in plan[skip:]:
      yield epoch, make_batch(dataset, bucket_length, indices, batch_size)
    skip = 0
    epoch += 1


def eval_batches(
    dataset: EncodedDataset,
    batch_size: int,
    bucket_lengths: Sequence[int],
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
  """One ordered pass for evaluation: every example exactly once.

  Yields:
    (indices, batch): the example indices of the batch's real rows (to put predictions back in
    dataset order) and the batch, whose filler rows have weight 0.
  """
  for bucket_length, indices in _eval_plan(dataset, batch_size, bucket_lengths):
    yield indices, make_batch(dataset, bucket_length, indices, batch_size)


def num_eval_batches(dataset: EncodedDataset, batch_size: int,
                     bucket_lengths: Sequence[int]) -> int:
  """How many batches `eval_batches` yields (for progress lines)."""
  return len(_eval_plan(dataset, batch_size, bucket_lengths))


def _eval_plan(dataset: EncodedDataset, batch_size: int, bucket_lengths: Sequence[int]):
  return epoch_plan(dataset, batch_size, bucket_lengths, seed=0, epoch=0, shuffle=False,
                    drop_remainder=False)
