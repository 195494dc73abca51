"""The supernet with one-hot probabilities equals the extracted subnet; reordering is exact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models import search_space, supernet
from models.bert import BertClassifier, BertConfig

SPACE = search_space.SearchSpace(
    name="test", depth_choices=(1, 2, 3), hidden_choices=(24, 40, 48), head_choices=(1, 2, 3),
    ffn_choices=(16, 40, 64), head_size=8, seq_len=12, vocab_size=60,
    max_position_embeddings=32)


def base_model(seed=0) -> BertClassifier:
  largest = SPACE.largest_arch()
  config = BertConfig(vocab_size=60, hidden_size=largest.hidden_size,
                      num_layers=largest.num_layers, num_heads=largest.heads, head_size=8,
                      intermediate_size=largest.ffn, max_position_embeddings=32)
  model = BertClassifier(config, num_labels=3, rngs=nnx.Rngs(seed))
  # Random LayerNorm scales/biases and larger weights: slicing mistakes cannot hide behind 1/0.
  graphdef, params = nnx.split(model)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  leaves = [jax.random.normal(k, x.shape) * 0.3 for k, x in zip(keys, leaves)]
  return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))


def batch():
  ids = jax.random.randint(jax.random.key(3), (3, 12), 1, 60)
  mask = jnp.array([[1] * 12, [1] * 7 + [0] * 5, [1] * 3 + [0] * 9])
  types = jnp.array([[0] * 6 + [1] * 6] * 3)
  return ids, mask, types


ARCHS = [SPACE.largest_arch(),
         search_space.Arch(1, 24, (1,), (16,)),
         search_space.Arch(2, 40, (3, 1), (40, 64)),
         search_space.Arch(3, 48, (2, 3, 1), (16, 64, 40))]
ARCHS += [SPACE.random_arch(np.random.default_rng(seed)) for seed in range(4)]


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.to_json())
def test_one_hot_supernet_equals_extracted_subnet(arch):
  model = base_model()
  probs = {k: jnp.asarray(v) for k, v in search_space.one_hot_probs(arch, SPACE).items()}
  expected = supernet.extract_subnet(model, SPACE, arch)(*batch())
  got = supernet.supernet_logits(model, SPACE, probs, *batch())
  np.testing.assert_allclose(got, expected, atol=1e-5)


def test_extracted_subnet_has_the_arch_shapes():
  arch = ARCHS[2]
  subnet = supernet.extract_subnet(base_model(), SPACE, arch)
  assert subnet.bert.config.num_heads == (3, 1) and subnet.bert.config.intermediate_size == (40, 64)
  assert subnet.bert.layers[1].attention.query.kernel[...].shape == (40, 8)
  assert subnet.bert.embeddings.word_embeddings.embedding[...].shape == (60, 40)


def test_soft_head_mask_is_the_expectation_over_head_counts():
  # Before the LayerNorm, a layer's attention output is linear in its heads: a soft mask is
  # exactly the probability-weighted average of the narrower layers.
  attention = base_model().bert.layers[0].attention
  x = jax.random.normal(jax.random.key(0), (2, 12, 48))
  bias = jnp.zeros((2, 1, 1, 12))
  attention.layer_norm = lambda y: y  # Look at the residual sum itself.
  probs = jnp.array([0.2, 0.5, 0.3])
  mixed, _ = attention(x, bias, head_mask=supernet.nested_mask(probs, (1, 2, 3), 3))
  each = [attention(x, bias, head_mask=(jnp.arange(3) < n).astype(jnp.float32))[0]
          for n in (1, 2, 3)]
  np.testing.assert_allclose(mixed, sum(p * y for p, y in zip(probs, each)), atol=1e-5)


def test_nested_mask():
  np.testing.assert_allclose(supernet.nested_mask(jnp.array([0.2, 0.8]), (1, 3), 4),
                             [1.0, 0.8, 0.8, 0.0])


def test_reordering_preserves_the_function_and_moves_units():
  model = base_model()
  before = model(*batch())
  query_before = np.asarray(model.bert.layers[1].attention.query.kernel[...])
  ffn_before = np.asarray(model.bert.layers[1].ffn.intermediate.kernel[...])
  rng = np.random.default_rng(0)
  head_order = np.stack([rng.permutation(3) for _ in range(3)])
  unit_order = np.stack([rng.permutation(64) for _ in range(3)])
  supernet.reorder_units(model, head_order, unit_order)
  np.testing.assert_allclose(model(*batch()), before, atol=1e-5)
  first = head_order[1][0]
  np.testing.assert_array_equal(model.bert.layers[1].attention.query.kernel[...][:, :8],
                                query_before[:, first * 8:(first + 1) * 8])
  np.testing.assert_array_equal(model.bert.layers[1].ffn.intermediate.kernel[...][:, 0],
                                ffn_before[:, unit_order[1][0]])


def test_model_of_another_shape_is_rejected():
  config = BertConfig(vocab_size=60, hidden_size=48, num_layers=3, num_heads=2, head_size=8,
                      intermediate_size=64, max_position_embeddings=32)
  model = BertClassifier(config, 2, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"num_heads is \(2, 2, 2\), the space needs \(3, 3, 3\)"):
    supernet.extract_subnet(model, SPACE, ARCHS[1])
