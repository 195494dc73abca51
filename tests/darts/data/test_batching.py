"""Tests of darts.data.batching with a tiny whitespace tokenizer."""

import itertools

import numpy as np
import pytest

from darts.data import batching, glue

PAD, CLS, SEP = 0, 1, 2


class FakeTokenizer:
  """Whitespace tokenizer with a growing vocabulary; same interface as WordPieceTokenizer."""

  pad_id = PAD

  def __init__(self):
    self.vocab: dict[str, int] = {}

  def _ids(self, text):
    return [self.vocab.setdefault(word, len(self.vocab) + 3) for word in text.split()]

  def encode_batch(self, texts_a, texts_b, max_length):
    out = []
    for i, text_a in enumerate(texts_a):
      a = self._ids(text_a)
      b = self._ids(texts_b[i]) if texts_b is not None else None
      budget = max_length - (3 if b is not None else 2)
      if b is None:
        a = a[:budget]
      else:
        while len(a) + len(b) > budget:  # Longest-first truncation.
          (a if len(a) >= len(b) else b).pop()
      ids = [CLS] + a + [SEP]
      types = [0] * len(ids)
      if b is not None:
        ids += b + [SEP]
        types += [1] * (len(b) + 1)
      out.append((ids, types))
    return out


def _dataset(lengths, max_length=16, is_regression=False, pair=False):
  """Examples whose encoded length is exactly `lengths[i]` (labels = index % 2 or index/10)."""
  examples = []
  for i, n in enumerate(lengths):
    if pair:
      words = n - 3
      text_a = " ".join(f"a{i}_{j}" for j in range(words // 2 + words % 2))
      text_b = " ".join(f"b{i}_{j}" for j in range(words // 2))
    else:
      text_a, text_b = " ".join(f"w{i}_{j}" for j in range(n - 2)), None
    label = i / 10 if is_regression else i % 2
    examples.append(glue.Example(text_a, text_b, label))
  return batching.encode(examples, FakeTokenizer(), max_length, is_regression)


def test_encode_layout():
  ds = _dataset([3, 5, 4], pair=True)
  assert len(ds) == 3
  np.testing.assert_array_equal(ds.lengths, [3, 5, 4])
  ids, types = ds.example(1)
  assert ids[0] == CLS and ids[-1] == SEP and len(ids) == 5
  np.testing.assert_array_equal(types, [0, 0, 0, 1, 1])
  assert ds.labels.dtype == np.int32 and ds.pad_id == PAD
  reg = _dataset([3, 4], is_regression=True)
  assert reg.labels.dtype == np.float32
  np.testing.assert_allclose(reg.labels, [0.0, 0.1])


def test_encode_truncates_and_rejects_mixed_pairs():
  ds = batching.encode([glue.Example("x " * 40, None, 0)], FakeTokenizer(), 8, False)
  assert ds.lengths.tolist() == [8]
  with pytest.raises(ValueError, match="all single sentences or all pairs"):
    batching.encode([glue.Example("a", "b", 0), glue.Example("c", None, 1)],
                    FakeTokenizer(), 8, False)


def test_smallest_bucket_and_bucket_validation():
  ds = _dataset([2, 4, 5, 8, 9, 16], max_length=16)
  np.testing.assert_array_equal(batching.assign_buckets(ds, (4, 8, 16)), [0, 0, 1, 1, 2, 2])
  assert batching.bucket_histogram(ds, (4, 8, 16)) == {4: 2, 8: 2, 16: 2}
  with pytest.raises(ValueError, match="largest bucket length 8 .* max_length 16"):
    batching.assign_buckets(ds, (4, 8))
  with pytest.raises(ValueError, match="strictly increasing"):
    batching.assign_buckets(ds, (8, 4, 16))


def test_make_batch_shapes_padding_and_weights():
  ds = _dataset([3, 5], max_length=8, pair=True)
  batch = batching.make_batch(ds, 8, np.array([1, 0]), batch_size=4)
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
      "input_ids": ((4, 8), np.int32), "attention_mask": ((4, 8), np.int32),
      "token_type_ids": ((4, 8), np.int32), "labels": ((4,), np.int32),
      "weights": ((4,), np.float32)}
  np.testing.assert_array_equal(batch["input_ids"][0, :5], ds.example(1)[0])
  np.testing.assert_array_equal(batch["input_ids"][0, 5:], PAD)
  np.testing.assert_array_equal(batch["attention_mask"][0], [1] * 5 + [0] * 3)
  np.testing.assert_array_equal(batch["attention_mask"][1], [1] * 3 + [0] * 5)
  np.testing.assert_array_equal(batch["token_type_ids"][0], [0, 0, 0, 1, 1, 0, 0, 0])
  np.testing.assert_array_equal(batch["labels"], [1, 0, 0, 0])
  np.testing.assert_array_equal(batch["weights"], [1, 1, 0, 0])
  np.testing.assert_array_equal(batch["attention_mask"][2:], 0)
  with pytest.raises(ValueError, match="does not fit in bucket"):
    batching.make_batch(ds, 4, np.array([1]), batch_size=4)
  reg = _dataset([3], is_regression=True)
  assert batching.make_batch(reg, 16, np.array([0]), 2)["labels"].dtype == np.float32


def test_make_batch_gathers_extras_in_row_order():
  ds = _dataset([3, 5, 4], max_length=8)
  ds.extras["teacher_logits"] = np.arange(6, dtype=np.float32).reshape(3, 2)
  batch = batching.make_batch(ds, 8, np.array([2, 0]), batch_size=3)
  np.testing.assert_array_equal(batch["teacher_logits"], [[4, 5], [0, 1], [0, 0]])


def _random_dataset(n=103, seed=0, max_length=32):
  rng = np.random.default_rng(seed)
  return _dataset(rng.integers(2, max_length + 1, size=n).tolist(), max_length=max_length)


BUCKETS = (8, 16, 32)


def test_training_plan_fixed_shapes_and_one_bucket_per_batch():
  ds = _random_dataset()
  plan = batching.epoch_plan(ds, 8, BUCKETS, seed=0, epoch=0)
  assert len(plan) == batching.num_batches_per_epoch(ds, 8, BUCKETS)
  seen = np.concatenate([indices for _, indices in plan])
  assert len(seen) == len(set(seen.tolist()))  # No example twice in an epoch.
  bucket_ids = batching.assign_buckets(ds, BUCKETS)
  for bucket_length, indices in plan:
    assert len(indices) == 8
    assert set(bucket_ids[indices].tolist()) == {BUCKETS.index(bucket_length)}
    batch = batching.make_batch(ds, bucket_length, indices, 8)
    assert batch["input_ids"].shape == (8, bucket_length)
    assert batch["weights"].sum() == 8


def test_eval_plan_covers_every_example_once_in_order():
  ds = _random_dataset()
  plan = batching.epoch_plan(ds, 8, BUCKETS, seed=0, epoch=0, shuffle=False,
                             drop_remainder=False)
  assert len(plan) == batching.num_batches_per_epoch(ds, 8, BUCKETS, drop_remainder=False)
  seen = np.concatenate([indices for _, indices in plan])
  np.testing.assert_array_equal(np.sort(seen), np.arange(len(ds)))
  counts = batching.bucket_histogram(ds, BUCKETS)
  for bucket_length in BUCKETS:
    sizes = [len(ix) for b, ix in plan if b == bucket_length]
    assert sum(sizes) == counts[bucket_length]
    assert all(s == 8 for s in sizes[:-1]) and 1 <= sizes[-1] <= 8  # Only the last is short.
  # eval_batches: weights mark real rows; indices map predictions back.
  total_weight, labels = 0.0, np.zeros(len(ds), np.int32)
  for indices, batch in batching.eval_batches(ds, 8, BUCKETS):
    assert batch["input_ids"].shape[0] == 8
    total_weight += batch["weights"].sum()
    labels[indices] = batch["labels"][:len(indices)]
  assert total_weight == len(ds)
  np.testing.assert_array_equal(labels, ds.labels)


def _plan_key(plan):
  return [(b, ix.tolist()) for b, ix in plan]


def test_plan_is_deterministic_per_seed_and_epoch():
  ds = _random_dataset()
  plan = batching.epoch_plan(ds, 8, BUCKETS, seed=3, epoch=2)
  assert _plan_key(plan) == _plan_key(batching.epoch_plan(ds, 8, BUCKETS, seed=3, epoch=2))
  assert _plan_key(plan) != _plan_key(batching.epoch_plan(ds, 8, BUCKETS, seed=3, epoch=3))
  assert _plan_key(plan) != _plan_key(batching.epoch_plan(ds, 8, BUCKETS, seed=4, epoch=2))
  # Shuffling mixes buckets in the batch order (not all of one bucket first).
  order = [b for b, _ in plan]
  assert order != sorted(order)


def _batches_equal(a, b):
  return a[0] == b[0] and a[1].keys() == b[1].keys() and all(
      np.array_equal(a[1][k], b[1][k]) for k in a[1])


@pytest.mark.parametrize("start_step", [0, 1, 5, 11, 12, 13, 30])
def test_iterate_batches_resume_equals_uninterrupted(start_step):
  ds = _random_dataset()
  per_epoch = batching.num_batches_per_epoch(ds, 8, BUCKETS)
  assert per_epoch == 12  # start_steps above cover epoch boundaries.
  full = list(itertools.islice(batching.iterate_batches(ds, 8, BUCKETS, seed=7), 40))
  resumed = list(itertools.islice(
      batching.iterate_batches(ds, 8, BUCKETS, seed=7, start_step=start_step), 40 - start_step))
  assert len(resumed) == 40 - start_step
  assert all(_batches_equal(x, y) for x, y in zip(full[start_step:], resumed))
  assert [epoch for epoch, _ in full] == [s // per_epoch for s in range(40)]


def test_iterate_batches_skips_without_building(monkeypatch):
  ds = _random_dataset()
  built = []
  original = batching.make_batch
  monkeypatch.setattr(batching, "make_batch",
                      lambda *args, **kwargs: built.append(1) or original(*args, **kwargs))
  next(batching.iterate_batches(ds, 8, BUCKETS, seed=0, start_step=1000))
  assert len(built) == 1


def test_iterate_batches_errors():
  ds = _dataset([3, 4, 5])
  with pytest.raises(ValueError, match="No batch of size 8"):
    next(batching.iterate_batches(ds, 8, (16,), seed=0))
  with pytest.raises(ValueError, match="start_step"):
    next(batching.iterate_batches(ds, 1, (16,), seed=0, start_step=-1))
