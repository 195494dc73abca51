"""Post-training quantization with ai-edge-quantizer's recipes (configs/quantization.py).

Checked beyond what the library checks:
- every recipe entry selects ops of the model (a mistyped scope would quietly quantize nothing);
- an integer-only recipe leaves no op computing in float;
- the graph's outputs stay float32, as at every other precision: the library leaves them int8,
  and an app (or LiteRT's CompiledModel, which reports no output scale) would read raw codes.
"""

import collections
import contextlib
import io
import math
import os
import re
from typing import Any, Iterable, Mapping

import numpy as np
from absl import logging
from ai_edge_litert import interpreter, schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils
from ai_edge_quantizer import model_validator, quantizer
from ai_edge_quantizer.utils import validation_utils

from configs.quantization import Recipe
from models import flatbuffer

SIGNATURE = "serving_default"  # The one signature of every model tf_bert converts.
Feeds = Mapping[str, np.ndarray]
# Type conversions touch float without computing in it (e.g. at the graph's float outputs).
CONVERSIONS = ("QUANTIZE", "DEQUANTIZE", "CAST")


class QuantizationError(ValueError):
  """A recipe that does not fit the model, or a result that is not what the recipe claims."""


def check_entries(model: bytes, recipe: Recipe) -> None:
  """Every entry of `recipe` selects at least one op of `model`.

  Raises:
    QuantizationError: naming the entry, the recipe file and scopes the model does have.
  """
  ops = flatbuffer.ops(model)
  for index, entry in enumerate(recipe.entries()):
    selected = [op for op in ops if entry["operation"] in ("*", op.name)
                and re.search(entry["regex"], op.scope)]
    if not selected:
      kinds = sorted({op.name for op in ops})
      raise QuantizationError(
          f"{recipe.path}: entry {index} (regex '{entry['regex']}', operation "
          f"'{entry['operation']}') selects no op of this model. Its ops are {kinds}; scopes "
          f"look like {[op.scope for op in ops[:3]]}.")


def float_ops(model: bytes) -> list[flatbuffer.Op]:
  """The ops that compute in float: a float input or output, type conversions aside."""
  return [op for op in flatbuffer.ops(model)
          if "FLOAT32" in op.input_types + op.output_types and op.name not in CONVERSIONS]


def describe_ops(ops: list[flatbuffer.Op]) -> dict[str, int]:
  """{op name: count}, e.g. the float ops a mixed recipe leaves (the export report lists it)."""
  return dict(sorted(collections.Counter(op.name for op in ops).items()))


def float_outputs(model: bytes) -> bytes:
  """`model` with a DEQUANTIZE after each quantized graph output (the signature keeps its
  names), so that its outputs are float32."""
  m = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
  graph = m.subgraphs[0]
  quantized = [(i, t) for i, t in enumerate(graph.outputs)
               if graph.tensors[t].type in (schema.TensorType.INT8, schema.TensorType.INT16)]
  if not quantized:
    return model
  codes = [flatbuffer_utils.get_builtin_code_from_operator_code(c) for c in m.operatorCodes]
  if schema.BuiltinOperator.DEQUANTIZE not in codes:
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.DEQUANTIZE
    code.version = 1
    m.operatorCodes.append(code)
    codes.append(schema.BuiltinOperator.DEQUANTIZE)
  for position, index in quantized:
    old = graph.tensors[index]
    new = schema.TensorT()
    new.name, new.shape, new.type, new.buffer = old.name, old.shape, schema.TensorType.FLOAT32, 0
    old.name += b"_quantized"  # The object API holds names as bytes.
    graph.tensors.append(new)
    op = schema.OperatorT()
    op.opcodeIndex = codes.index(schema.BuiltinOperator.DEQUANTIZE)
    op.inputs, op.outputs = [index], [len(graph.tensors) - 1]
    graph.operators.append(op)
    graph.outputs[position] = len(graph.tensors) - 1
    for signature in m.signatureDefs or []:
      for output in signature.outputs:
        if output.tensorIndex == index:
          output.tensorIndex = len(graph.tensors) - 1
  return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def check_calibration(model: bytes, examples: list[dict[str, np.ndarray]]) -> None:
  """Calibration examples feed exactly the model's inputs, at its shapes.

  Raises:
    QuantizationError: none given, or an example with other inputs or shapes (e.g. another
      sequence length), naming the example and the input.
  """
  details = interpreter.Interpreter(model_content=model).get_signature_runner(
      SIGNATURE).get_input_details()
  if not examples:
    raise QuantizationError("no calibration examples: a calibrated precision needs them")
  for index, example in enumerate(examples):
    if set(example) != set(details):
      raise QuantizationError(f"calibration example {index} feeds {sorted(example)}; the model "
                              f"takes {sorted(details)}")
    for name, detail in details.items():
      wanted = tuple(int(d) for d in detail["shape"])
      if np.shape(example[name]) != wanted:
        raise QuantizationError(
            f"calibration example {index}: input '{name}' has shape {np.shape(example[name])}, "
            f"the model takes {wanted} (data of another sequence length or batch?)")


def quantize(model: bytes, recipe: Recipe, calibration: Iterable[Feeds]) -> bytes:
  """`model` (float) quantized with `recipe`, calibrated on `calibration` (one example each).

  A block of a model need not hold every scope its recipe names (the head has no LayerNorm):
  whole models are checked with `check_entries` first, by the export.

  Raises:
    QuantizationError: calibration examples that do not fit the model (`check_calibration`),
      or an integer-only recipe that left float ops (named, with their scopes).
  """
  examples = [dict(feeds) for feeds in calibration]
  check_calibration(model, examples)
  logging.info("Quantizing with recipe '%s' (%s), calibrated on %d examples ...", recipe.name,
               recipe.path.name, len(examples))
  qt = quantizer.Quantizer(model)
  qt.load_quantization_recipe(recipe.entries())
  # The library draws tqdm bars on stderr for every calibration: a table quantizes many blocks.
  with contextlib.redirect_stderr(io.StringIO()):
    result = qt.calibrate({SIGNATURE: examples}, num_threads=os.cpu_count() or 1)
    quantized = qt.quantize(result, enable_progress_bar=False, enable_progress_report=False)
  out = float_outputs(bytes(quantized.quantized_model))
  left = float_ops(out)
  if recipe.integer_only and left:
    raise QuantizationError(
        f"recipe '{recipe.name}' ({recipe.path}) claims integer-only, but the quantized model "
        f"computes {len(left)} ops in float: {describe_ops(left)}, e.g. "
        f"{[op.scope for op in left[:3]]}. Quantize those ops in the recipe, or make it a "
        "mixed precision (configs/quantization.py).")
  return out


def worst_tensors(reference: bytes, quantized: bytes, feeds: Iterable[Feeds],
                  count: int = 5) -> list[dict[str, Any]]:
  """The `count` tensors of `quantized` farthest from the float `reference` on `feeds`:
  [{"tensor", "snr_db", "cosine"}], lowest signal-to-noise ratio first (ai-edge-quantizer's
  per-tensor comparison)."""
  metrics = [validation_utils.ValidationErrorMetric.SNR,
             validation_utils.ValidationErrorMetric.COSINE_SIMILARITY]
  result = model_validator.compare_model(reference, quantized, {SIGNATURE: [dict(f) for f in feeds]},
                                         metrics, num_threads=os.cpu_count() or 1)
  tensors = result.get_signature_comparison_result(SIGNATURE).intermediate_tensors
  # An all-zero reference (e.g. the clamped token types of single sentences) has no signal.
  signal = {n: m for n, m in tensors.items() if m["snr"] > 0 or m["cosine_similarity"] < 1}
  ranked = sorted(signal.items(), key=lambda kv: kv[1]["snr"])
  return [{"tensor": name, "snr_db": 10 * math.log10(max(m["snr"], 1e-12)),
           "cosine": float(m["cosine_similarity"])} for name, m in ranked[:count]]
