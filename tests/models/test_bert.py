"""The Flax BERT against transformers' PyTorch BertModel, and its shape/dropout behaviour."""

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models import bert, checkpoint

FIXTURES = pathlib.Path(__file__).parents[1] / "fixtures"


def test_matches_transformers_bert_on_minilm_checkpoint(minilm_dir):
  # Reference from tests/fixtures/make_bert_reference.py (transformers BertModel, eager, fp32).
  ref = np.load(FIXTURES / "minilm_reference.npz")
  assert (ref["attention_mask"] == 0).any(), "the fixture must include padding"
  model = checkpoint.load_pretrained(str(minilm_dir))
  out = model(jnp.asarray(ref["input_ids"]), jnp.asarray(ref["attention_mask"]),
              jnp.asarray(ref["token_type_ids"]))
  hidden_diff = np.abs(np.asarray(out.last_hidden_state) - ref["last_hidden_state"])
  # Padding positions included: both implementations mask keys with the same additive bias.
  assert hidden_diff.max() <= 1e-4, hidden_diff.max()
  pooled_diff = np.abs(np.asarray(out.pooled_output) - ref["pooler_output"])
  assert pooled_diff.max() <= 1e-4, pooled_diff.max()


def tiny_config(**overrides) -> bert.BertConfig:
  values = dict(vocab_size=50, hidden_size=16, num_layers=3, num_heads=(4, 2, 3), head_size=8,
                intermediate_size=(32, 16, 24), max_position_embeddings=20)
  return bert.BertConfig(**{**values, **overrides})


def test_per_layer_widths_give_per_layer_shapes():
  model = bert.BertModel(tiny_config(), rngs=nnx.Rngs(0))
  assert model.layers[1].attention.query.kernel[...].shape == (16, 2 * 8)
  assert model.layers[2].ffn.intermediate.kernel[...].shape == (16, 24)
  ids = jnp.ones((2, 7), jnp.int32)
  out = model(ids, jnp.ones_like(ids))
  assert out.last_hidden_state.shape == (2, 7, 16) and out.pooled_output.shape == (2, 16)


def test_padding_does_not_change_real_tokens():
  model = bert.BertModel(tiny_config(), rngs=nnx.Rngs(0))
  ids = jax.random.randint(jax.random.key(1), (1, 5), 1, 50)
  padded = jnp.concatenate([ids, jnp.array([[7, 9, 3]])], axis=1)
  mask = jnp.array([[1] * 5 + [0] * 3])
  short = model(ids, jnp.ones_like(ids)).last_hidden_state
  long = model(padded, mask).last_hidden_state[:, :5]
  np.testing.assert_allclose(short, long, atol=1e-5)


def test_dropout_only_when_not_deterministic():
  model = bert.BertClassifier(tiny_config(), num_labels=3, rngs=nnx.Rngs(0))
  ids = jnp.arange(12).reshape(2, 6)
  mask = jnp.ones_like(ids)
  clean = model(ids, mask)
  noisy = lambda seed: model(ids, mask, deterministic=False, rngs=nnx.Rngs(dropout=seed))
  assert not np.allclose(clean, noisy(0))
  np.testing.assert_array_equal(noisy(0), noisy(0))
  assert not np.allclose(noisy(0), noisy(1))


def test_tanh_gelu_differs_from_erf():
  x = jnp.linspace(-3, 3, 7)
  assert not np.allclose(bert.gelu(x, "erf"), bert.gelu(x, "tanh"))
  np.testing.assert_allclose(bert.gelu(x, "tanh"), bert.gelu(x, "erf"), atol=1e-3)


@pytest.mark.parametrize("overrides, message", [
    (dict(num_heads=(4, 2)), "num_heads has 2 entries"),
    (dict(intermediate_size=0), "intermediate_size must be positive"),
    (dict(gelu="relu"), "gelu must be one of"),
    (dict(hidden_size=0), "hidden_size must be positive"),
])
def test_config_rejects_bad_shapes(overrides, message):
  with pytest.raises(ValueError, match=message):
    tiny_config(**overrides)


def test_config_dict_round_trip():
  config = tiny_config()
  assert bert.BertConfig.from_dict(config.to_dict()) == config
  with pytest.raises(ValueError, match="Unknown BertConfig keys"):
    bert.BertConfig.from_dict({**config.to_dict(), "hiden_size": 3})
  assert dataclasses.replace(config, num_heads=2).num_heads == (2, 2, 2)
