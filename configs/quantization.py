"""Quantization recipes: the precisions made by ai-edge-quantizer, each a file in
configs/recipes/<name>.json, chosen by name (`--config.precisions=...,mixed` in
`export.to_tflite`, `--config.precision=mixed` in the pipeline and the cost tables).

A recipe is ai-edge-quantizer's JSON: a list of {regex, operation, algorithm_key, op_config}.
For each op, the last entry whose `regex` is found in the op's scope (its output tensor names,
e.g. `encoder.layer.3.output.LayerNorm/Mean`) and whose `operation` is the op or "*" decides.
Every entry must select something in the model it is applied to (`models.quantize`).

  int8_full    integer-only: int8 weights (per channel) and int8 activations (per tensor) on
               every op; what NPUs, DSPs and OpenVINO's int8 kernels run.
  mixed        int8_full, but the LayerNorms and the residual sums they normalize (MEAN, SUB,
               MUL, ADD, RSQRT in their scope) in float: the residual stream has outlier
               channels, and the variance squares them, beyond what one int8 scale holds.
               Every GEMM stays int8.
  mixed_int16  integer-only: int8_full with int16 activations in the same ops and in the two
               projections that write into the residual stream (attention.output.dense and
               output.dense FULLY_CONNECTEDs, weights int8): on MRPC their int8 outputs were the
               worst tensors (SNR 5.6 dB) and cost 1.8 F1 points; Q, K, V, the FFN's first
               GEMM and the attention BATCH_MATMULs stay int8 (for accelerators with int16
               kernels; LiteRT's CPU runs them on reference kernels).
"""

import dataclasses
import hashlib
import json
import pathlib
from typing import Any

RECIPE_DIR = pathlib.Path(__file__).parent / "recipes"


@dataclasses.dataclass(frozen=True)
class Recipe:
  """A named quantization recipe.

  Attributes:
    name: the precision it makes (also the file configs/recipes/<name>.json).
    integer_only: every op of the result must compute in integers (checked after quantizing;
      type conversions, such as the float outputs' DEQUANTIZE, do not compute).
  """
  name: str
  integer_only: bool

  @property
  def path(self) -> pathlib.Path:
    return RECIPE_DIR / f"{self.name}.json"

  def entries(self) -> list[dict[str, Any]]:
    """The recipe's entries, checked for the keys ai-edge-quantizer reads."""
    try:
      entries = json.loads(self.path.read_text())
    except (OSError, json.JSONDecodeError) as e:
      raise ValueError(f"quantization recipe '{self.name}': cannot read {self.path}: {e}") from None
    for index, entry in enumerate(entries if isinstance(entries, list) else [None]):
      missing = {"regex", "operation", "algorithm_key"} - set(entry or {})
      if missing:
        raise ValueError(f"{self.path}: entry {index} lacks {sorted(missing)} (each entry is "
                         "{regex, operation, algorithm_key, op_config})")
    return entries

  def sha256(self) -> str:
    return hashlib.sha256(self.path.read_bytes()).hexdigest()

  def identity(self) -> str:
    """'<name>@sha256:<first 16 hex digits>': a table built with another version of the file
    does not describe the models this one makes."""
    return f"{self.name}@sha256:{self.sha256()[:16]}"


RECIPES = {recipe.name: recipe for recipe in (
    Recipe("int8_full", integer_only=True),
    Recipe("mixed", integer_only=False),
    Recipe("mixed_int16", integer_only=True),
)}


def get_recipe(name: str) -> Recipe:
  """The recipe of a precision; a clear error for an unknown one."""
  if name not in RECIPES:
    raise ValueError(f"unknown quantization recipe '{name}': known are {sorted(RECIPES)} "
                     f"(files in {RECIPE_DIR})")
  return RECIPES[name]
