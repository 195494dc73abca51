"""LiteRT backend: block graphs, null blocks with matching signatures, runtime options."""

import numpy as np
import pytest

from latency_loss.backends import tflite
from latency_loss.blocks import Block
from latency_loss.runtime import RuntimeSpec
from models import tf_bert
from models.search_space import get_space

SPACE = get_space("tiny")


def _runner(block, runtime=RuntimeSpec()):
  model = tf_bert.convert_to_tflite(tflite.build_module(block, SPACE))
  return tflite.make_interpreter(model, runtime).get_signature_runner()


@pytest.mark.parametrize("block", [Block("embeddings", 32), Block("layer", 64, 2, 128),
                                   Block("head", 32)])
def test_null_block_has_the_block_signature(block):
  real, null = _runner(block), _runner(block.as_null())
  for side in ("get_input_details", "get_output_details"):
    shapes = lambda r: {k: tuple(v["shape"]) for k, v in getattr(r, side)().items()}
    assert shapes(real) == shapes(null)
  feeds = tflite.random_inputs(null, SPACE)
  assert all(np.isfinite(v).all() for v in null(**feeds).values())


def test_null_model_maps_tokens_to_logits():
  runner = _runner(Block("model", 32, null=True))
  assert set(runner.get_input_details()) == {"input_ids", "attention_mask", "token_type_ids"}
  assert runner(**tflite.random_inputs(runner, SPACE))["logits"].shape == (1, 2)


def test_random_inputs_are_valid_tokens():
  runner = _runner(Block("embeddings", 32))
  feeds = tflite.random_inputs(runner, SPACE)
  assert feeds["input_ids"].max() < SPACE.vocab_size and feeds["input_ids"].dtype == np.int32


def test_xnnpack_off_and_missing_delegate():
  assert _runner(Block("head", 32), RuntimeSpec(xnnpack=False)) is not None
  with pytest.raises(ValueError, match="nonexistent_delegate.so"):
    _runner(Block("head", 32), RuntimeSpec(delegate="/nonexistent_delegate.so"))
