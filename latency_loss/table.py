"""Versioned latency cost tables: storage, compatibility checks and whole-model prediction.

A table stores the *raw* time of every block and null block (see `blocks.py`): entry "ms" is
the protocol's statistic (the median on host backends; benchmark_model's mean on android,
unless its log has a median), other fields are spread details. The cost model is derived:

  predict(arch) = null_model + sum over arch's blocks b of c_b * (raw(b) - raw(null(b)))

where c_b = 1 except for layers, c_b = context_factor(hidden): the measured interaction
factor of layers inside a whole model (see `blocks.py`).

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

from latency_loss.blocks import Block, NULL_MODEL_KEY, arch_blocks, reference_arch, space_blocks
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
    self.entries[block.key] = {"ms": stats.median_ms, **dataclasses.asdict(stats)}

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

  def context_factor(self, hidden: int) -> float:
    """Measured interaction factor of layers at `hidden`: their time inside the context
    model over the sum of their isolated costs (never below 0; 1 when the layers cost 0)."""
    key = Block("context", hidden).key
    blocks = arch_blocks(reference_arch(self.space, hidden))
    inside = self._raw(key) - self.overhead_ms() - sum(
        self._isolated_ms(b) for b in blocks if b.kind != "layer")
    alone = sum(self._isolated_ms(b) for b in blocks if b.kind == "layer")
    return max(0.0, inside / alone) if alone > 0 else 1.0

  def cost_ms(self, block: Block, context: bool = True) -> float:
    """Net cost of a block inside a model; layers scaled by `context_factor` if `context`."""
    cost = self._isolated_ms(block)
    if context and block.kind == "layer":
      cost *= self.context_factor(block.hidden)
    return cost

  def predict_ms(self, arch: Arch, context: bool = True) -> float:
    """Predicted whole-model latency of `arch` (`context=False`: no interaction factor)."""
    return self.overhead_ms() + sum(self.cost_ms(b, context) for b in arch_blocks(arch))

  # ------------------------------------------------------------------------- checking

  def check_compatible(self, space: SearchSpace, runtime: RuntimeSpec) -> None:
    """Raises ValueError naming every mismatch between this table and a job.

    The job's runtime must equal the table's, its shape fields (seq_len, batch, ...) must
    match, and the table must hold every block the job's space needs.
    """
    problems = [f"runtime.{m}" for m in runtime.mismatches(self.runtime)]
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
  """Net block costs (ms) as dense arrays indexed like the space's choices.

  Returns:
    {"embeddings": [n_hidden], "head": [n_hidden], "layer": [n_hidden, n_heads, n_ffn],
     "overhead": [], "depth_choices": [n_depth]} -- the input of
    `expected.expected_latency_ms`.
  """
  missing = table.missing(space)
  if missing:
    raise ValueError(f"cost table lacks {len(missing)} entries space '{space.name}' needs, "
                     f"e.g. {missing[:8]}")
  hs, as_, fs = space.hidden_choices, space.head_choices, space.ffn_choices
  layer = np.array([[[table.cost_ms(Block("layer", h, a, f)) for f in fs] for a in as_]
                    for h in hs])
  return {"embeddings": np.array([table.cost_ms(Block("embeddings", h)) for h in hs]),
          "head": np.array([table.cost_ms(Block("head", h)) for h in hs]),
          "layer": layer, "overhead": np.array(table.overhead_ms()),
          "depth_choices": np.array(space.depth_choices)}
