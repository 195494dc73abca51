"""The TF BERT graphs against a plain numpy BERT, and their TFLite conversions."""

import math

import numpy as np
import pytest
from scipy.special import erf

from ai_edge_litert.interpreter import Interpreter
from models import tf_bert
from models.search_space import Arch, get_space

SPACE = get_space("tiny")
ARCH = Arch(2, 64, (2, 1), (128, 64))


def _np_ln(x, w, prefix):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + 1e-12) * w[f"{prefix}.weight"] + w[f"{prefix}.bias"]


def _np_dense(x, w, prefix):
  return x @ w[f"{prefix}.weight"].T + w[f"{prefix}.bias"]


def numpy_bert(w, arch, space, ids, mask, types):
  """Hugging Face BertModel + pooler + classifier, written independently in numpy."""
  L, d = space.seq_len, space.head_size
  x = (w["embeddings.word_embeddings.weight"][ids]
       + w["embeddings.position_embeddings.weight"][:L]
       + w["embeddings.token_type_embeddings.weight"][types])
  x = _np_ln(x, w, "embeddings.LayerNorm")
  bias = (1.0 - mask[:, None, None, :]) * -1e9
  for i, a in enumerate(arch.heads):
    p = f"encoder.layer.{i}"
    heads = lambda t: t.reshape(t.shape[0], L, a, d).transpose(0, 2, 1, 3)
    q, k, v = (heads(_np_dense(x, w, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + bias
    s = np.exp(s - s.max(-1, keepdims=True))
    ctx = (s / s.sum(-1, keepdims=True)) @ v
    ctx = ctx.transpose(0, 2, 1, 3).reshape(x.shape[0], L, a * d)
    x = _np_ln(x + _np_dense(ctx, w, f"{p}.attention.output.dense"), w,
               f"{p}.attention.output.LayerNorm")
    h = _np_dense(x, w, f"{p}.intermediate.dense")
    h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
    x = _np_ln(x + _np_dense(h, w, f"{p}.output.dense"), w, f"{p}.output.LayerNorm")
  pooled = np.tanh(_np_dense(x[:, 0], w, "pooler.dense"))
  return _np_dense(pooled, w, "classifier")


@pytest.fixture(scope="module")
def weights():
  w = tf_bert.random_weights(tf_bert.arch_shapes(ARCH, SPACE), seed=1)
  # Larger-than-BERT weights so every term visibly matters in the comparison.
  return {k: (v * 10 if v.ndim == 2 and "embeddings" not in k else v) for k, v in w.items()}


@pytest.fixture(scope="module")
def inputs():
  rng = np.random.default_rng(0)
  ids = rng.integers(0, SPACE.vocab_size, (1, SPACE.seq_len)).astype(np.int32)
  mask = np.ones((1, SPACE.seq_len), np.int32)
  mask[:, 11:] = 0  # padding must not leak into unpadded positions
  types = (np.arange(SPACE.seq_len) >= 6).astype(np.int32)[None]
  return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


@pytest.fixture(scope="module")
def module(weights):
  return tf_bert.BertModule(ARCH, SPACE, weights)


def test_tf_model_matches_numpy_reference(module, weights, inputs):
  got = module.serve(**inputs)["logits"].numpy()
  want = numpy_bert(weights, ARCH, SPACE, inputs["input_ids"], inputs["attention_mask"],
                    inputs["token_type_ids"])
  assert got.shape == (1, SPACE.num_labels)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_blocks_compose_to_the_model(module, weights, inputs):
  h = tf_bert.EmbeddingsModule(SPACE, ARCH.hidden_size, weights).serve(
      input_ids=inputs["input_ids"], token_type_ids=inputs["token_type_ids"])["hidden"]
  for i, (a, f) in enumerate(zip(ARCH.heads, ARCH.ffn)):
    layer = tf_bert.EncoderLayerModule(SPACE, ARCH.hidden_size, a, f, weights, index=i)
    h = layer.serve(hidden=h, attention_mask=inputs["attention_mask"])["hidden"]
  logits = tf_bert.HeadModule(SPACE, ARCH.hidden_size, weights).serve(hidden=h)["logits"]
  np.testing.assert_allclose(logits.numpy(), module.serve(**inputs)["logits"].numpy(),
                             rtol=1e-5, atol=1e-6)


def _run_tflite(model: bytes, inputs):
  return Interpreter(model_content=model).get_signature_runner()(**inputs)["logits"]


def test_tflite_fp32_matches_tf(module, inputs):
  model = tf_bert.convert_to_tflite(module, "fp32")
  np.testing.assert_allclose(_run_tflite(model, inputs), module.serve(**inputs)["logits"].numpy(),
                             atol=1e-4)


# One TFLite op per graph op we write (GELU stays one op; MAXIMUM and MINIMUM clamp lookup
# indices into range); anything else is a surprise.
EXPECTED_OPS = {"ADD", "BATCH_MATMUL", "FULLY_CONNECTED", "GATHER", "GELU", "MAXIMUM", "MEAN",
                "MINIMUM", "MUL", "RESHAPE", "RSQRT", "SOFTMAX", "STRIDED_SLICE", "SUB", "TANH",
                "TRANSPOSE", "DEQUANTIZE"}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_conversions_use_expected_ops(module, inputs, precision):
  model = tf_bert.convert_to_tflite(module, precision)
  interp = Interpreter(model_content=model)
  ops = {op["op_name"] for op in interp._get_ops_details()}
  assert ops <= EXPECTED_OPS, ops - EXPECTED_OPS
  assert "GELU" in ops
  max_rank = max(len(t["shape"]) for t in interp.get_tensor_details())
  assert max_rank <= 4
  logits = _run_tflite(model, inputs)
  # Lower precisions stay close to fp32 on these small random weights.
  np.testing.assert_allclose(logits, module.serve(**inputs)["logits"].numpy(), atol=0.1)


def test_signature_names(module):
  runner = Interpreter(model_content=tf_bert.convert_to_tflite(module)).get_signature_runner()
  assert set(runner.get_input_details()) == {"input_ids", "attention_mask", "token_type_ids"}
  assert set(runner.get_output_details()) == {"logits"}


def test_bad_weights_raise(weights):
  missing = {k: v for k, v in weights.items() if k != "encoder.layer.1.output.dense.bias"}
  with pytest.raises(ValueError, match="encoder.layer.1.output.dense.bias"):
    tf_bert.BertModule(ARCH, SPACE, missing)
  wrong = dict(weights, **{"classifier.weight": np.zeros((3, 64), np.float32)})
  with pytest.raises(ValueError, match=r"classifier.weight.*\(3, 64\)"):
    tf_bert.BertModule(ARCH, SPACE, wrong)
  with pytest.raises(ValueError, match="precision"):
    tf_bert.convert_to_tflite(tf_bert.HeadModule(SPACE, 32), "int4")


def test_hf_bert_prefix_accepted(module, weights, inputs):
  prefixed = {f"bert.{k}" if not k.startswith("classifier") else k: v for k, v in weights.items()}
  other = tf_bert.BertModule(ARCH, SPACE, prefixed)
  np.testing.assert_array_equal(other.serve(**inputs)["logits"].numpy(),
                                module.serve(**inputs)["logits"].numpy())


def test_matches_flax_classifier_through_checkpoint_naming(inputs):
  # The interface with models/: the Flax model's checkpoint dict drives the TF graph.
  import jax.numpy as jnp
  from flax import nnx
  from models import bert, checkpoint
  config = bert.BertConfig(vocab_size=SPACE.vocab_size, hidden_size=ARCH.hidden_size,
                           num_layers=ARCH.num_layers, num_heads=ARCH.heads,
                           head_size=SPACE.head_size, intermediate_size=ARCH.ffn,
                           max_position_embeddings=SPACE.max_position_embeddings,
                           type_vocab_size=SPACE.type_vocab_size)
  model = bert.BertClassifier(config, SPACE.num_labels, rngs=nnx.Rngs(3))
  want = model(*(jnp.asarray(inputs[k]) for k in ("input_ids", "attention_mask",
                                                  "token_type_ids")))
  got = tf_bert.BertModule(ARCH, SPACE, checkpoint.model_weights(model)).serve(**inputs)
  np.testing.assert_allclose(got["logits"].numpy(), np.asarray(want), rtol=1e-4, atol=1e-5)
