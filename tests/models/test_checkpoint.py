"""Checkpoint loading/saving: Hugging Face names, safetensors only, clear errors."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from flax import nnx

from models import bert, checkpoint


def tiny_model(num_labels=None, seed=0, **overrides):
  config = bert.BertConfig(**{**dict(vocab_size=40, hidden_size=16, num_layers=2,
                                     num_heads=(4, 2), head_size=4, intermediate_size=(32, 8),
                                     max_position_embeddings=16), **overrides})
  if num_labels is None:
    return bert.BertModel(config, rngs=nnx.Rngs(seed))
  return bert.BertClassifier(config, num_labels, rngs=nnx.Rngs(seed))


def logits(model):
  ids = jnp.arange(1, 9).reshape(2, 4)
  out = model(ids, jnp.ones_like(ids))
  return np.asarray(out if isinstance(model, bert.BertClassifier) else out.last_hidden_state)


def test_save_then_load_reproduces_classifier(tmp_path):
  model = tiny_model(num_labels=3)
  checkpoint.save_pretrained(model, tmp_path)
  loaded = checkpoint.load_pretrained(str(tmp_path), num_labels=3, seed=1)
  np.testing.assert_array_equal(logits(model), logits(loaded))
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["canao_bert_config"]["num_heads"] == [4, 2]  # non-uniform layers recorded


def test_hf_config_of_minilm(minilm_dir):
  config = checkpoint.load_config(minilm_dir)
  assert (config.num_layers, config.hidden_size, config.num_heads[0], config.head_size,
          config.intermediate_size[0], config.gelu) == (6, 384, 12, 32, 1536, "erf")


def test_bert_for_classification_names_and_gamma_beta_are_accepted(tmp_path):
  model = tiny_model(num_labels=2)
  weights = checkpoint.model_weights(model)  # "bert."-prefixed, as BertForSequenceClassification
  renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                                                       "LayerNorm.beta"): v
             for k, v in weights.items()}
  other = tiny_model(num_labels=2, seed=5)
  checkpoint.load_weights(other, renamed)
  np.testing.assert_array_equal(logits(model), logits(other))


def test_encoder_checkpoint_leaves_new_head(tmp_path):
  encoder = tiny_model()
  classifier = tiny_model(num_labels=2, seed=3)
  head_before = np.asarray(classifier.classifier.kernel[...])
  checkpoint.load_weights(classifier, checkpoint.model_weights(encoder))
  np.testing.assert_array_equal(classifier.classifier.kernel[...], head_before)
  np.testing.assert_array_equal(classifier.bert.pooler.kernel[...], encoder.pooler.kernel[...])


def test_missing_and_unexpected_tensors_are_named():
  weights = checkpoint.model_weights(tiny_model())
  del weights["encoder.layer.1.output.dense.bias"]
  weights["encoder.layer.7.attention.self.query.weight"] = np.zeros((1, 1), np.float32)
  with pytest.raises(ValueError, match=r"missing tensors \['encoder.layer.1.output.dense.bias'\]"
                     r".*unexpected tensors \['encoder.layer.7"):
    checkpoint.load_weights(tiny_model(), weights)


def test_wrong_shapes_are_named():
  weights = checkpoint.model_weights(tiny_model(intermediate_size=(32, 12)))
  with pytest.raises(ValueError, match=r"encoder.layer.1.intermediate.dense.weight: checkpoint"):
    checkpoint.load_weights(tiny_model(), weights)


def test_pickle_weights_are_refused(tmp_path):
  checkpoint.save_pretrained(tiny_model(), tmp_path)
  (tmp_path / "model.safetensors").unlink()
  (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04 pickle")
  with pytest.raises(ValueError, match="pickle-based weights"):
    checkpoint.load_pretrained(str(tmp_path))


def test_a_truncated_weights_file_names_its_path(tmp_path):
  checkpoint.save_pretrained(tiny_model(), tmp_path)
  weights = tmp_path / "model.safetensors"
  weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
  with pytest.raises(ValueError, match=f"{weights} cannot be read .*truncated or corrupt"):
    checkpoint.load_pretrained(str(tmp_path))


def test_sharded_safetensors(tmp_path):
  model = tiny_model()
  checkpoint.save_pretrained(model, tmp_path)
  weights = checkpoint.read_weights(tmp_path)
  (tmp_path / "model.safetensors").unlink()
  names = sorted(weights)
  shards = {"a.safetensors": names[::2], "b.safetensors": names[1::2]}
  for shard, keys in shards.items():
    safetensors.numpy.save_file({k: weights[k] for k in keys}, tmp_path / shard)
  index = {"weight_map": {k: s for s, keys in shards.items() for k in keys}}
  (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
  np.testing.assert_array_equal(logits(model), logits(checkpoint.load_pretrained(str(tmp_path))))


def test_bad_directories_and_configs(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    checkpoint.resolve_model_dir(str(tmp_path / "nope"))
  with pytest.raises(FileNotFoundError, match="No config.json"):
    checkpoint.load_config(tmp_path)
  (tmp_path / "config.json").write_text('{"model_type": "roberta"}')
  with pytest.raises(ValueError, match="only 'bert' is supported"):
    checkpoint.load_config(tmp_path)
  (tmp_path / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
  with pytest.raises(ValueError, match="lacks the keys"):
    checkpoint.load_config(tmp_path)
  (tmp_path / "config.json").write_text('{not json')
  with pytest.raises(ValueError, match="not valid JSON"):
    checkpoint.load_config(tmp_path)
