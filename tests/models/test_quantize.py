"""Quantization recipes (configs/quantization.py) through ai-edge-quantizer on the tiny space:
what each recipe leaves in float, that the result computes what the float model does, and the
errors for recipes and calibration data that do not fit."""

import json

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from configs import quantization
from models import flatbuffer, quantize, tf_bert
from models.search_space import get_space

SPACE = get_space("tiny")
LAYER_NORM_OPS = {"MEAN", "SUB", "MUL", "ADD", "RSQRT"}
SHIPPED = quantization.RECIPE_DIR  # Tests below point RECIPE_DIR elsewhere.


@pytest.fixture(scope="module")
def module():
  arch = SPACE.largest_arch()
  # BERT's init (std 0.02) gives near-constant logits; larger matrices make every weight show.
  weights = {k: v * 10 if v.ndim == 2 and "embeddings" not in k else v for k, v in
             tf_bert.random_weights(tf_bert.arch_shapes(arch, SPACE), seed=1).items()}
  return tf_bert.BertModule(arch, SPACE, weights)


@pytest.fixture(scope="module")
def float_model(module):
  return tf_bert.convert_to_tflite(module)


def feeds(count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
  rng = np.random.default_rng(seed)
  shape = (1, SPACE.seq_len)
  return [{"input_ids": rng.integers(0, SPACE.vocab_size, shape).astype(np.int32),
           "attention_mask": (np.arange(SPACE.seq_len) < rng.integers(4, SPACE.seq_len)
                              ).astype(np.int32)[None],
           "token_type_ids": np.zeros(shape, np.int32)} for _ in range(count)]


def logits(model: bytes, inputs: list[dict[str, np.ndarray]]) -> np.ndarray:
  runner = Interpreter(model_content=model).get_signature_runner()
  return np.concatenate([runner(**f)["logits"] for f in inputs])


@pytest.fixture(scope="module")
def quantized(float_model):
  return {name: quantize.quantize(float_model, recipe, feeds(64))
          for name, recipe in quantization.RECIPES.items()}


def test_integer_only_recipes_leave_no_float_op_and_mixed_only_the_layer_norms(quantized):
  assert quantize.float_ops(quantized["int8_full"]) == []
  assert quantize.float_ops(quantized["mixed_int16"]) == []
  mixed = quantize.describe_ops(quantize.float_ops(quantized["mixed"]))
  # The LayerNorms' ops, nothing else: every GEMM stays int8.
  assert set(mixed) == LAYER_NORM_OPS
  assert all("LayerNorm/" in op.scope for op in quantize.float_ops(quantized["mixed"]))
  layer_norms = 1 + 2 * SPACE.largest_arch().num_layers
  assert mixed["RSQRT"] == layer_norms
  types = {op.name: op for op in flatbuffer.ops(quantized["mixed_int16"])}
  assert "INT16" in types["RSQRT"].output_types
  # mixed_int16: int16 out of the two projections into the residual stream, int8 elsewhere.
  encoder_gemms = [op for op in flatbuffer.ops(quantized["mixed_int16"])
                   if op.name == "FULLY_CONNECTED" and ".layer." in op.scope]
  assert len(encoder_gemms) == 6 * SPACE.largest_arch().num_layers  # Q, K, V, O, FFN in, out.
  for op in encoder_gemms:
    residual = ".output.dense/" in op.scope
    assert op.output_types == (("INT16",) if residual else ("INT8",)), op.scope


def test_outputs_stay_float_and_follow_the_float_model(float_model, quantized):
  inputs = feeds(32, seed=1)
  reference = logits(float_model, inputs)
  for name, model in quantized.items():
    runner = Interpreter(model_content=model).get_signature_runner()
    assert runner.get_output_details()["logits"]["dtype"] == np.float32, name
    out = logits(model, inputs)
    # Dequantized logits, not int8 codes; ai-edge-quantizer calibrates ranges as moving
    # averages of per-example min/max, which clip a random model's extreme logits.
    assert np.abs(out).max() < 2 * np.abs(reference).max(), name
    assert np.corrcoef(out.ravel(), reference.ravel())[0, 1] > 0.9, name
    assert (out.argmax(-1) == reference.argmax(-1)).mean() >= 0.8, name


def test_worst_tensors_are_ranked_by_snr(float_model, quantized):
  worst = quantize.worst_tensors(float_model, quantized["int8_full"], feeds(2), count=4)
  assert len(worst) == 4
  assert [w["snr_db"] for w in worst] == sorted(w["snr_db"] for w in worst)
  assert all(-1 <= w["cosine"] <= 1 and w["tensor"] for w in worst)


@pytest.fixture
def recipe_dir(tmp_path, monkeypatch):
  monkeypatch.setattr(quantization, "RECIPE_DIR", tmp_path)
  return tmp_path


def test_an_entry_that_selects_nothing_is_an_error(float_model, recipe_dir):
  entries = json.loads((SHIPPED / "mixed.json").read_text())
  entries[1]["regex"] = "LayerNrom/"  # A typo.
  (recipe_dir / "typo.json").write_text(json.dumps(entries))
  with pytest.raises(quantize.QuantizationError, match=r"typo.json: entry 1 \(regex "
                     r"'LayerNrom/', operation 'MEAN'\) selects no op"):
    quantize.check_entries(float_model, quantization.Recipe("typo", integer_only=False))


def test_a_recipe_that_claims_integer_only_but_leaves_float_is_an_error(float_model,
                                                                        recipe_dir):
  (recipe_dir / "claims.json").write_text((SHIPPED / "mixed.json").read_text())
  with pytest.raises(quantize.QuantizationError, match=r"claims integer-only, but the quantized "
                     r"model computes \d+ ops in float: .*'RSQRT': 5"):
    quantize.quantize(float_model, quantization.Recipe("claims", integer_only=True), feeds(4))


def test_unknown_and_malformed_recipes_are_errors(recipe_dir):
  with pytest.raises(ValueError, match="unknown quantization recipe 'int4'.*int8_full"):
    quantization.get_recipe("int4")
  (recipe_dir / "bad.json").write_text('[{"regex": ".*"}]')
  with pytest.raises(ValueError, match=r"bad.json: entry 0 lacks \['algorithm_key', "
                     r"'operation'\]"):
    quantization.Recipe("bad", integer_only=True).entries()


def test_calibration_of_another_length_is_an_error(float_model):
  short = [{k: v[:, :8] for k, v in f.items()} for f in feeds(2)]
  with pytest.raises(quantize.QuantizationError, match=r"calibration example 0: input "
                     r"'\w+' has shape \(1, 8\), the model takes \(1, 16\)"):
    quantize.quantize(float_model, quantization.get_recipe("int8_full"), short)
  with pytest.raises(quantize.QuantizationError, match="no calibration examples"):
    quantize.quantize(float_model, quantization.get_recipe("int8_full"), [])
