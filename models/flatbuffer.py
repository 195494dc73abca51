"""The main graph of a .tflite flatbuffer, read without loading it: its ops, their tensor types
and scopes (what quantization recipes select and the integer-only check reads)."""

import dataclasses
import functools

from ai_edge_litert import schema_py_generated as schema


@dataclasses.dataclass(frozen=True)
class Op:
  """One node of the main subgraph.

  Attributes:
    name: the builtin op (e.g. "FULLY_CONNECTED"), or a custom op's code.
    scope: its output tensor names joined by ";": the scope ai-edge-quantizer's recipes match
      and Model Explorer shows (e.g. "encoder.layer.0.output.LayerNorm/Mean").
    input_types, output_types: the type of each tensor (e.g. "FLOAT32", "INT8"); absent
      optional inputs are left out.
  """
  name: str
  scope: str
  input_types: tuple[str, ...]
  output_types: tuple[str, ...]


@functools.cache
def _names(enum: type) -> dict[int, str]:
  return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def read(model: bytes) -> schema.Model:
  return schema.Model.GetRootAsModel(model, 0)


def ops(model: bytes) -> list[Op]:
  """Every op of the main subgraph, in execution order."""
  m = read(model)
  graph = m.Subgraphs(0)
  tensors = [graph.Tensors(i) for i in range(graph.TensorsLength())]
  types = _names(schema.TensorType)
  found = []
  for i in range(graph.OperatorsLength()):
    op = graph.Operators(i)
    code = m.OperatorCodes(op.OpcodeIndex())
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    ins = [t for t in op.InputsAsNumpy().tolist() if t >= 0] if op.InputsLength() else []
    outs = op.OutputsAsNumpy().tolist() if op.OutputsLength() else []
    found.append(Op(
        name=code.CustomCode().decode() if code.CustomCode() else _names(schema.BuiltinOperator)[builtin],
        scope=";".join(tensors[t].Name().decode() for t in outs),
        input_types=tuple(types[tensors[t].Type()] for t in ins),
        output_types=tuple(types[tensors[t].Type()] for t in outs)))
  return found


def op_names(model: bytes) -> list[str]:
  """The op of every node of the main subgraph, in order (custom ops by their custom code)."""
  return [op.name for op in ops(model)]
