"""Which delegate runs which part of an exported graph.

Two questions, answered separately:

* measured: how many of the graph's nodes the runtime's delegate (XNNPACK by default, or an
  external delegate library) actually took on this host (`delegated_share`);
* documented: which ops a phone's GPU delegate or NNAPI would take, by the published op lists
  below (`coverage_report`), plus graph properties that make mobile delegates refuse whole
  graphs (tensors of rank > 4, dynamic shapes). For a compiler plugin, its real partition
(`latency_loss.plugins.partition_report`) answers instead.
"""

from __future__ import annotations

import collections
from typing import Any, Mapping

from ai_edge_litert import interpreter as litert

from latency_loss.backends import tflite as tflite_backend
from latency_loss.runtime import RuntimeSpec
from models import flatbuffer

# The TFLite GPU delegate's published op list ("Supported ops", float16/float32 path):
# https://ai.google.dev/edge/litert/performance/gpu#supported_ops (formerly
# https://www.tensorflow.org/lite/performance/gpu#supported_ops). The page warns the list is
# conservative: the delegate's source (tflite/delegates/gpu/common/model_builder.cc) accepts
# more ops (e.g. BATCH_MATMUL, MEAN, RSQRT, TANH, TRANSPOSE), which only a run on a phone
# confirms; ops outside this list are therefore reported as "not documented", not "refused".
GPU_DOCUMENTED_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXP",
    "FULLY_CONNECTED", "LOGICAL_AND", "LOGISTIC", "LSTM", "MAX_POOL_2D", "MAXIMUM", "MINIMUM",
    "MUL", "PAD", "PRELU", "RELU", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "SOFTMAX",
    "STRIDED_SLICE", "SUB", "TRANSPOSE_CONV",
})

# TFLite op -> first Android API level whose NNAPI has the operation, from the NNAPI operation
# reference https://developer.android.com/ndk/reference/group/neural-networks (OperationCode,
# "Available since API level N") and the TFLite NNAPI delegate guide
# https://ai.google.dev/edge/litert/android/delegates/nnapi. SQUARED_DIFFERENCE has no NNAPI
# operation; the TFLite NNAPI delegate lowers it to SUB + MUL. NNAPI is deprecated from
# Android 15 on; vendors' drivers may still refuse supported ops at run time.
NNAPI_MIN_API_LEVEL = {
    "ADD": 27, "AVERAGE_POOL_2D": 27, "CONCATENATION": 27, "CONV_2D": 27,
    "DEPTHWISE_CONV_2D": 27, "DEPTH_TO_SPACE": 27, "DEQUANTIZE": 27, "EMBEDDING_LOOKUP": 27,
    "FLOOR": 27, "FULLY_CONNECTED": 27, "HASHTABLE_LOOKUP": 27, "L2_NORMALIZATION": 27,
    "L2_POOL_2D": 27, "LOCAL_RESPONSE_NORMALIZATION": 27, "LOGISTIC": 27, "LSH_PROJECTION": 27,
    "LSTM": 27, "MAX_POOL_2D": 27, "MUL": 27, "RELU": 27, "RELU_N1_TO_1": 27, "RELU6": 27,
    "RESHAPE": 27, "RESIZE_BILINEAR": 27, "RNN": 27, "SOFTMAX": 27, "SPACE_TO_DEPTH": 27,
    "SVDF": 27, "TANH": 27,
    "BATCH_TO_SPACE_ND": 28, "DIV": 28, "MEAN": 28, "PAD": 28, "SPACE_TO_BATCH_ND": 28,
    "SQUEEZE": 28, "STRIDED_SLICE": 28, "SUB": 28, "TRANSPOSE": 28, "SQUARED_DIFFERENCE": 28,
    "ABS": 29, "ARG_MAX": 29, "ARG_MIN": 29, "CAST": 29, "EQUAL": 29, "EXP": 29,
    "EXPAND_DIMS": 29, "GATHER": 29, "GREATER": 29, "GREATER_EQUAL": 29, "LESS": 29,
    "LESS_EQUAL": 29, "LOG": 29, "LOGICAL_AND": 29, "LOGICAL_NOT": 29, "LOGICAL_OR": 29,
    "LOG_SOFTMAX": 29, "MAXIMUM": 29, "MINIMUM": 29, "NEG": 29, "NOT_EQUAL": 29, "PADV2": 29,
    "POW": 29, "PRELU": 29, "QUANTIZE": 29, "REDUCE_MAX": 29, "REDUCE_MIN": 29,
    "REDUCE_PROD": 29, "SUM": 29, "RESIZE_NEAREST_NEIGHBOR": 29, "RSQRT": 29, "SIN": 29,
    "SLICE": 29, "SPLIT": 29, "SQRT": 29, "TILE": 29, "TOPK_V2": 29, "TRANSPOSE_CONV": 29,
    "ELU": 30, "FILL": 30, "HARD_SWISH": 30, "RANK": 30,
    "BATCH_MATMUL": 31,
}

# Mobile GPU delegates lay tensors out as BHWC: anything of higher rank is refused.
MAX_DELEGATE_RANK = 4
DELEGATE_OP_NAME = "DELEGATE"


def parse_delegate_options(text: str) -> dict[str, str]:
  """'key=value,key=value' (the --config.delegate_options syntax) -> dict.

  Raises:
    ValueError: an item without '='.
  """
  options = {}
  for item in filter(None, (s.strip() for s in text.split(","))):
    key, has_value, value = item.partition("=")
    if not has_value or not key:
      raise ValueError(f"delegate_options item {item!r} is not key=value "
                       "(expected e.g. 'backend=gpu,precision=fp16')")
    options[key] = value
  return options


def check_runtime(runtime: RuntimeSpec) -> None:
  """Loads the runtime's external delegate once, so a bad library fails before any export.

  Raises:
    ValueError: naming the library and the loader's reason.
  """
  if runtime.delegate:
    tflite_backend.load_delegate(runtime)


def _partition_nodes(details: list[dict[str, Any]], delegate: dict[str, Any],
                     producer: Mapping[int, int]) -> set[int]:
  """Original nodes a delegate node replaced: those between its inputs and its outputs."""
  boundary = {int(t) for t in delegate["inputs"]}
  nodes, stack = set(), [int(t) for t in delegate["outputs"]]
  while stack:
    node = producer.get(stack.pop())
    if node is None or node in nodes:
      continue
    nodes.add(node)
    stack += [int(t) for t in details[node]["inputs"] if t >= 0 and int(t) not in boundary]
  return nodes


def delegated_share(model: bytes, runtime: RuntimeSpec) -> dict[str, Any]:
  """Measures which nodes the runtime's delegate took, from the interpreter's node list.

  After delegation the interpreter keeps the original nodes and appends one DELEGATE node per
  partition, whose inputs and outputs are the partition's boundary tensors. The nodes a
  partition replaced are found by walking back from its outputs to its inputs.

  Returns:
    {"nodes", "delegated_nodes", "share", "partitions", "cpu_ops": {op: count}} where
    `cpu_ops` are the ops left to the TFLite CPU kernels.
  """
  interpreter = tflite_backend.make_interpreter(model, runtime)
  interpreter.allocate_tensors()
  details = interpreter._get_ops_details()  # pylint: disable=protected-access
  originals = [d for d in details if d["op_name"] != DELEGATE_OP_NAME]
  partitions = [d for d in details if d["op_name"] == DELEGATE_OP_NAME]
  producer = {int(t): d["index"] for d in originals for t in d["outputs"] if t >= 0}
  taken = set().union(*(_partition_nodes(details, p, producer) for p in partitions))
  cpu_ops = collections.Counter(d["op_name"] for d in originals if d["index"] not in taken)
  return {"nodes": len(originals), "delegated_nodes": len(taken),
          "share": len(taken) / max(len(originals), 1), "partitions": len(partitions),
          "cpu_ops": dict(sorted(cpu_ops.items()))}


def op_counts(model: bytes) -> dict[str, int]:
  """Operator histogram of the flatbuffer's graph, before any delegation."""
  return dict(sorted(collections.Counter(flatbuffer.op_names(model)).items()))


def _shape_flags(model: bytes) -> dict[str, list[str]]:
  """Tensors of rank > 4 and tensors with a dynamic (-1) dimension, by name."""
  tensors = litert.Interpreter(model_content=model).get_tensor_details()
  describe = lambda t, key: f"{t['name']} {t[key].tolist()}"
  return {
      "rank_above_4": sorted(describe(t, "shape") for t in tensors
                             if len(t["shape"]) > MAX_DELEGATE_RANK),
      "dynamic_shapes": sorted(describe(t, "shape_signature") for t in tensors
                               if any(d < 0 for d in t["shape_signature"])),
  }


def coverage_report(model: bytes) -> dict[str, Any]:
  """The graph's ops against the GPU delegate's and NNAPI's published op lists.

  Returns:
    {"ops": {op: count}, "gpu": {"undocumented_ops": [...]},
     "nnapi": {"unsupported_ops": [...], "min_api_level": N}, "rank_above_4": [...],
     "dynamic_shapes": [...]}. An op listed as undocumented/unsupported forces a CPU fallback
     (a partition boundary) on that delegate.
  """
  ops = op_counts(model)
  levels = [NNAPI_MIN_API_LEVEL[op] for op in ops if op in NNAPI_MIN_API_LEVEL]
  return {
      # A compiler plugin's real partition (the export's "compiled" result) supersedes these.
      "source": "documented op lists (GPU delegate, NNAPI), not a compiler's partition",
      "ops": ops,
      "gpu": {"undocumented_ops": sorted(op for op in ops if op not in GPU_DOCUMENTED_OPS)},
      "nnapi": {"unsupported_ops": sorted(op for op in ops if op not in NNAPI_MIN_API_LEVEL),
                "min_api_level": max(levels, default=None)},
      **_shape_flags(model),
  }
