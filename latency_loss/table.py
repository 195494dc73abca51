"""Versioned latency cost tables: storage, compatibility checks and whole-model prediction.

A table stores the *raw* time of every block and null block (see `blocks.py`): entry "ms" is
the protocol's statistic (the median on host backends; benchmark_model's mean on android,
unless its log has a median), in the units of the table's reference model when it has one
(`host["reference"]`), other fields are spread details. The cost model is derived, per hidden
size h:

  predict(arch) = fixed(h) + factor(h) * sum over arch's layers l of (raw(l) - raw(null(l)))

fitted on this host through the table's context models (whole models of h at the largest and
smallest depth, `blocks.context_blocks`): the line through (sum of their isolated layer costs,
their measured time). `fixed` is what a model pays besides its layers (invocation, embeddings,
head), `factor` how layers interact inside a whole model. A table with one context model per h
(built before there were two) keeps fixed(h) = null model + embeddings + head, net.

JSON layout (format_version 1):

  {"format_version": 1, "created": ISO date, "backend": "tflite",
   "space": {SearchSpace fields}, "runtime": {RuntimeSpec fields},
   "host": {"cpu_model", "cpu_count", versions...},
   "protocol": {"warmup", "runs", "statistic"},
   "entries": {"layer/h384_a12_f1536": {"ms", "median_ms", "iqr_ms", "mad_ms", "min_ms",
                                        "runs"}, ...}}
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
from typing import Any, Mapping, Optional

import numpy as np

from latency_loss.blocks import (Block, NULL_MODEL_KEY, arch_blocks, context_arch, context_blocks,
                                 space_blocks)
from latency_loss.runtime import RuntimeSpec
from latency_loss.timing import Stats
from models.files import atomic_write
from models.search_space import Arch, SearchSpace

FORMAT_VERSION = 1
# Space fields that change the graph of a given block, so must match between table and job.
_SHAPE_FIELDS = ("seq_len", "batch", "head_size", "vocab_size", "max_position_embeddings",
                 "type_vocab_size", "num_labels")
_REQUIRED_KEYS = ("format_version", "created", "backend", "space", "runtime", "host",
                  "protocol", "entries")


@dataclasses.dataclass
class CostTable:
  """Measured block latencies for one space on one runtime."""
  space: SearchSpace
  runtime: RuntimeSpec
  host: dict[str, Any]
  protocol: dict[str, Any]
  entries: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
  created: str = dataclasses.field(
      default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"))

  # --------------------------------------------------------------------------- content

  def add(self, block: Block, stats: Stats) -> None:
    """Records a block's latency under the table's statistic, with its spread details."""
    self.entries[block.key] = {"ms": stats.value(self.protocol.get("statistic", "median")),
                               **dataclasses.asdict(stats)}

  def missing(self, space: Optional[SearchSpace] = None) -> list[str]:
    """Keys that `space` (default: the table's own) needs but the table lacks."""
    return [b.key for b in space_blocks(space or self.space) if b.key not in self.entries]

  def _raw(self, key: str) -> float:
    if key not in self.entries:
      raise ValueError(f"cost table has no entry '{key}'")
    return self.entries[key]["ms"]

  def overhead_ms(self) -> float:
    """Fixed per-invocation cost of a whole model (its null model's time)."""
    return self._raw(NULL_MODEL_KEY)

  def _isolated_ms(self, block: Block) -> float:
    """A block's time alone minus its null block's time, never below 0.

    A block cannot cost less than nothing: a negative difference is timing noise (blocks of a
    few microseconds, or a tool that rounds to 10 us), and is counted as 0 (see
    `negative_net_blocks`).
    """
    return max(0.0, self._raw(block.key) - self._raw(block.as_null().key))

  def negative_net_blocks(self) -> list[str]:
    """Keys of the blocks timed faster than their null block (counted as costing 0)."""
    return [b.key for b in space_blocks(self.space)
            if not b.null and b.kind not in ("model", "context") and b.key in self.entries
            and b.as_null().key in self.entries
            and self._raw(b.key) < self._raw(b.as_null().key)]

  def layer_fit(self, hidden: int) -> tuple[float, float]:
    """(fixed ms, layer factor) of `hidden`'s cost model, fitted on its context models.

    Both are kept >= 0: a negative factor or fixed cost is timing noise of a tiny space.
    """
    isolated_fixed = self.overhead_ms() + sum(
        self._isolated_ms(Block(kind, hidden)) for kind in ("embeddings", "head"))
    points = [(sum(self._isolated_ms(b) for b in arch_blocks(context_arch(self.space, block))
                   if b.kind == "layer"), self._raw(block.key))
              for block in context_blocks(self.space, hidden) if block.key in self.entries]
    if not points:
      raise ValueError(f"cost table has no entry '{Block('context', hidden).key}'")
    (x0, y0), rest = points[0], points[1:]
    if not rest or all(x == x0 for x, _ in rest):
      return isolated_fixed, (max(0.0, (y0 - isolated_fixed) / x0) if x0 > 0 else 1.0)
    factor, fixed = np.polyfit([x for x, _ in points], [y for _, y in points], 1)
    if factor < 0:
      factor = 0.0
      fixed = float(np.mean([y for _, y in points]))
    return max(0.0, float(fixed)), float(factor)

  def context_factor(self, hidden: int) -> float:
    """How layers at `hidden` interact inside a whole model: the slope of its cost model."""
    return self.layer_fit(hidden)[1]

  def fixed_ms(self, hidden: int) -> float:
    """What a whole model at `hidden` pays besides its layers, fitted on this host."""
    return self.layer_fit(hidden)[0]

  def cost_ms(self, block: Block, context: bool = True) -> float:
    """Net cost of a block; layers scaled by their `context_factor` if `context`."""
    cost = self._isolated_ms(block)
    if context and block.kind == "layer":
      cost *= self.context_factor(block.hidden)
    return cost

  def predict_ms(self, arch: Arch, context: bool = True) -> float:
    """Predicted whole-model latency of `arch`: the fitted cost model, or with
    `context=False` the plain sum of isolated block costs plus the null model."""
    layers = sum(self.cost_ms(b, context) for b in arch_blocks(arch) if b.kind == "layer")
    if context:
      return self.fixed_ms(arch.hidden_size) + layers
    return self.overhead_ms() + layers + sum(
        self.cost_ms(b, context) for b in arch_blocks(arch) if b.kind != "layer")

  # ------------------------------------------------------------------------- checking

  def check_compatible(self, space: SearchSpace, runtime: RuntimeSpec) -> None:
    """Raises ValueError naming every mismatch between this table and a job.

    The job's runtime must equal the table's, its shape fields (seq_len, batch, ...) must
    match, and the table must hold every block the job's space needs.
    """
    problems = [f"runtime.{m}" for m in runtime.mismatches(self.runtime)]
    # The table's blocks must have been quantized with the recipe the job's models will be.
    wanted = runtime.quantization_facts().get("quantization_recipe")
    if wanted and not problems and self.host.get("quantization_recipe") != wanted:
      problems.append(f"host.quantization_recipe: {wanted!r} != "
                      f"{self.host.get('quantization_recipe')!r} (its blocks were quantized "
                      "with another recipe file than the job's: rebuild the table)")
    problems += [f"space.{f}: {getattr(space, f)!r} != {getattr(self.space, f)!r}"
                 for f in _SHAPE_FIELDS if getattr(space, f) != getattr(self.space, f)]
    if problems:
      raise ValueError("cost table was measured under other settings (job != table): "
                       + "; ".join(problems))
    missing = self.missing(space)
    if missing:
      raise ValueError(f"cost table lacks {len(missing)} entries space '{space.name}' needs, "
                       f"e.g. {missing[:8]}")

  # ---------------------------------------------------------------------------- json

  def to_dict(self) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "created": self.created,
            "backend": self.runtime.backend, "space": dataclasses.asdict(self.space),
            "runtime": self.runtime.to_dict(), "host": self.host, "protocol": self.protocol,
            "entries": dict(sorted(self.entries.items()))}

  @classmethod
  def from_dict(cls, d: Mapping[str, Any], source: str = "<dict>") -> "CostTable":
    missing = [k for k in _REQUIRED_KEYS if k not in d]
    if missing:
      raise ValueError(f"{source}: not a cost table, missing keys {missing}")
    if d["format_version"] != FORMAT_VERSION:
      raise ValueError(f"{source}: format_version {d['format_version']} != {FORMAT_VERSION}")
    try:
      table = cls(space=SearchSpace.from_dict(d["space"]),
                  runtime=RuntimeSpec.from_dict(d["runtime"]), host=dict(d["host"]),
                  protocol=dict(d["protocol"]), entries={}, created=d["created"])
    except (TypeError, ValueError) as e:
      raise ValueError(f"{source}: {e}") from None
    if d["backend"] != table.runtime.backend:
      raise ValueError(f"{source}: backend '{d['backend']}' != runtime.backend "
                       f"'{table.runtime.backend}'")
    for key, entry in d["entries"].items():
      if not isinstance(entry, Mapping) or not isinstance(entry.get("ms"), (int, float)):
        raise ValueError(f"{source}: entry '{key}' has no numeric 'ms'")
      if not (math.isfinite(entry["ms"]) and entry["ms"] >= 0):
        raise ValueError(f"{source}: entry '{key}' has ms={entry['ms']}; a latency is finite "
                         "and >= 0. Rebuild the table, or re-measure that block (delete the "
                         "entry and rerun the build with the same --workdir: it resumes).")
      table.entries[key] = dict(entry)
    return table

  def save(self, path: str) -> None:
    """Writes atomically (temp file + rename): a kill never leaves a truncated table."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    text = json.dumps(self.to_dict(), indent=1)
    atomic_write(pathlib.Path(path), lambda tmp: pathlib.Path(tmp).write_text(text))


def load_table(path: str, expect: Optional[RuntimeSpec] = None,
               space: Optional[SearchSpace] = None) -> CostTable:
  """Loads a table; with `expect` (and optionally `space`), checks it fits the job.

  Raises:
    ValueError: malformed JSON, wrong format, or (with `expect`) any mismatch or missing
      entry, naming the file and the keys.
  """
  try:
    with open(path) as f:
      d = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: malformed JSON ({e})") from None
  table = CostTable.from_dict(d, source=path)
  if expect is not None:
    try:
      table.check_compatible(space or table.space, expect)
    except ValueError as e:
      raise ValueError(f"{path}: {e}") from None
  return table


def table_arrays(table: CostTable, space: SearchSpace) -> dict[str, np.ndarray]:
  """The cost model as dense arrays indexed like the space's choices (ms).

  Returns:
    {"fixed": [n_hidden] (what a model pays besides its layers), "layer": [n_hidden, n_heads,
     n_ffn] (net layer costs, times their context factor), "depth_choices": [n_depth]} -- the
    input of `expected.expected_latency_ms`.
  """
  missing = table.missing(space)
  if missing:
    raise ValueError(f"cost table lacks {len(missing)} entries space '{space.name}' needs, "
                     f"e.g. {missing[:8]}")
  hs, as_, fs = space.hidden_choices, space.head_choices, space.ffn_choices
  layer = np.array([[[table.cost_ms(Block("layer", h, a, f)) for f in fs] for a in as_]
                    for h in hs])
  return {"fixed": np.array([table.fixed_ms(h) for h in hs]), "layer": layer,
          "depth_choices": np.array(space.depth_choices)}
