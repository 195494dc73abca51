"""BERT architecture search space and concrete architectures.

A `SearchSpace` describes which sub-networks of a base BERT the search may pick:

* depth: a nested layer count (the first `num_layers` layers of the base model are kept);
* hidden: one global hidden size shared by embeddings, all layers and the head;
* heads: per-layer number of attention heads (the head size is fixed by the base model);
* ffn: per-layer intermediate (feed-forward) size.

An `Arch` is one point of the space. Architecture *probabilities*, the relaxed form the
differentiable search optimises, follow this convention everywhere in canao:

    probs = {
        "depth":  [n_depth],                       # distribution over space.depth_choices
        "hidden": [n_hidden],                      # distribution over space.hidden_choices
        "heads":  [max_layers, n_head_choices],    # row i: distribution for layer i
        "ffn":    [max_layers, n_ffn_choices],     # row i: distribution for layer i
    }

with `max_layers = max(space.depth_choices)`; every row sums to one. Rows of layers that a
given depth drops are still present (they are weighted by P(layer active) downstream).
`one_hot_probs(arch, space)` gives the degenerate distribution of one architecture; rows of
inactive layers are then one-hot on the largest choice, an arbitrary but valid distribution.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

import numpy as np

_CHOICE_FIELDS = ("depth_choices", "hidden_choices", "head_choices", "ffn_choices")


def _check_choices(name: str, values: tuple[int, ...], base: int) -> None:
  """Raises ValueError unless `values` is sorted, unique, positive and ends at `base`."""
  if not values:
    raise ValueError(f"SearchSpace.{name} is empty")
  if any(int(v) <= 0 for v in values):
    raise ValueError(f"SearchSpace.{name}={values}: choices must be positive")
  if list(values) != sorted(set(values)):
    raise ValueError(f"SearchSpace.{name}={values}: choices must be sorted and unique")
  if values[-1] != base:
    raise ValueError(
        f"SearchSpace.{name}={values}: the largest choice must equal the base model's {base}")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """A BERT search space around one base model (the largest architecture of the space).

  Attributes:
    name: identifier, e.g. "minilm".
    depth_choices: allowed (nested) layer counts; the largest is the base depth.
    hidden_choices: allowed global hidden sizes; the largest is the base hidden size.
    head_choices: allowed per-layer head counts; the largest is the base head count.
    ffn_choices: allowed per-layer FFN sizes; the largest is the base intermediate size.
    head_size: fixed size of one attention head (32 for MiniLM, 64 for BERT-base).
    seq_len: static sequence length the latency is measured and exported at.
    batch: static batch size (1 on phones).
    vocab_size: word-piece vocabulary size.
    max_position_embeddings: rows of the position-embedding table.
    type_vocab_size: rows of the token-type-embedding table.
    num_labels: classifier outputs.
  """
  name: str
  depth_choices: tuple[int, ...]
  hidden_choices: tuple[int, ...]
  head_choices: tuple[int, ...]
  ffn_choices: tuple[int, ...]
  head_size: int
  seq_len: int = 128
  batch: int = 1
  vocab_size: int = 30522
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  num_labels: int = 2

  def __post_init__(self):
    for field in _CHOICE_FIELDS:
      object.__setattr__(self, field, tuple(int(v) for v in getattr(self, field)))
    for field in _CHOICE_FIELDS:
      values = getattr(self, field)
      _check_choices(field, values, values[-1] if values else 0)
    for field in ("head_size", "seq_len", "batch", "vocab_size", "max_position_embeddings",
                  "type_vocab_size", "num_labels"):
      if int(getattr(self, field)) <= 0:
        raise ValueError(f"SearchSpace.{field}={getattr(self, field)} must be positive")
    if self.seq_len > self.max_position_embeddings:
      raise ValueError(f"SearchSpace.seq_len={self.seq_len} exceeds "
                       f"max_position_embeddings={self.max_position_embeddings}")

  @property
  def max_layers(self) -> int:
    return self.depth_choices[-1]

  def largest_arch(self) -> "Arch":
    """The base model: the largest choice everywhere."""
    n = self.max_layers
    return Arch(n, self.hidden_choices[-1], (self.head_choices[-1],) * n,
                (self.ffn_choices[-1],) * n)

  def smallest_arch(self) -> "Arch":
    """The smallest choice everywhere."""
    n = self.depth_choices[0]
    return Arch(n, self.hidden_choices[0], (self.head_choices[0],) * n,
                (self.ffn_choices[0],) * n)

  def random_arch(self, rng: np.random.Generator) -> "Arch":
    """An architecture drawn uniformly per decision (depth, hidden, each layer's heads/FFN)."""
    n = int(rng.choice(self.depth_choices))
    return Arch(num_layers=n,
                hidden_size=int(rng.choice(self.hidden_choices)),
                heads=tuple(int(v) for v in rng.choice(self.head_choices, size=n)),
                ffn=tuple(int(v) for v in rng.choice(self.ffn_choices, size=n)))

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "SearchSpace":
    """Builds a space from a dict, e.g. the one embedded in a cost table."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ValueError(f"SearchSpace: unknown keys {unknown}; expected a subset of {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

  @classmethod
  def from_json(cls, text: str) -> "SearchSpace":
    return cls.from_dict(json.loads(text))


@dataclasses.dataclass(frozen=True)
class Arch:
  """One concrete sub-network of a `SearchSpace`.

  Attributes:
    num_layers: number of encoder layers (the first ones of the base model).
    hidden_size: global hidden size.
    heads: attention-head count of each layer, length `num_layers`.
    ffn: FFN (intermediate) size of each layer, length `num_layers`.
  """
  num_layers: int
  hidden_size: int
  heads: tuple[int, ...]
  ffn: tuple[int, ...]

  def __post_init__(self):
    object.__setattr__(self, "num_layers", int(self.num_layers))
    object.__setattr__(self, "hidden_size", int(self.hidden_size))
    object.__setattr__(self, "heads", tuple(int(v) for v in self.heads))
    object.__setattr__(self, "ffn", tuple(int(v) for v in self.ffn))
    for field in ("heads", "ffn"):
      if len(getattr(self, field)) != self.num_layers:
        raise ValueError(f"Arch.{field} has {len(getattr(self, field))} entries but "
                         f"num_layers={self.num_layers}")

  def validate(self, space: SearchSpace) -> None:
    """Raises ValueError naming the first field whose value `space` does not allow."""
    def check(field, value, allowed):
      if value not in allowed:
        raise ValueError(f"Arch.{field}={value} is not in space '{space.name}'; "
                         f"allowed values: {list(allowed)}")
    check("num_layers", self.num_layers, space.depth_choices)
    check("hidden_size", self.hidden_size, space.hidden_choices)
    for i, (a, f) in enumerate(zip(self.heads, self.ffn)):
      check(f"heads[{i}]", a, space.head_choices)
      check(f"ffn[{i}]", f, space.ffn_choices)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self))

  @classmethod
  def from_json(cls, text: str) -> "Arch":
    try:
      d = json.loads(text)
      return cls(d["num_layers"], d["hidden_size"], tuple(d["heads"]), tuple(d["ffn"]))
    except (KeyError, TypeError, json.JSONDecodeError) as e:
      raise ValueError(f"Arch.from_json: malformed architecture JSON ({e!r}): {text[:200]}")

  def save(self, path: str) -> None:
    with open(path, "w") as f:
      f.write(self.to_json() + "\n")

  @classmethod
  def load(cls, path: str) -> "Arch":
    with open(path) as f:
      try:
        return cls.from_json(f.read())
      except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def one_hot_probs(arch: Arch, space: SearchSpace) -> dict[str, np.ndarray]:
  """The degenerate architecture probabilities selecting exactly `arch` (see module doc)."""
  arch.validate(space)
  def onehot(choices, value):
    v = np.zeros(len(choices), np.float32)
    v[choices.index(value)] = 1.0
    return v
  n = space.max_layers
  heads = list(arch.heads) + [space.head_choices[-1]] * (n - arch.num_layers)
  ffn = list(arch.ffn) + [space.ffn_choices[-1]] * (n - arch.num_layers)
  return {
      "depth": onehot(space.depth_choices, arch.num_layers),
      "hidden": onehot(space.hidden_choices, arch.hidden_size),
      "heads": np.stack([onehot(space.head_choices, a) for a in heads]),
      "ffn": np.stack([onehot(space.ffn_choices, f) for f in ffn]),
  }


_SPACES = {
    # all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads of 32, FFN 1536. 5 * 6 * 6 = 180 layer
    # variants: the TFLite table builds in a few minutes on 2 cores (bench/README.md).
    "minilm": SearchSpace(
        name="minilm", depth_choices=(2, 3, 4, 5, 6), hidden_choices=(128, 192, 256, 320, 384),
        head_choices=(2, 4, 6, 8, 10, 12), ffn_choices=(256, 512, 768, 1024, 1280, 1536),
        head_size=32),
    # bert-base-uncased: 12 layers, hidden 768, 12 heads of 64, FFN 3072.
    "bert_base": SearchSpace(
        name="bert_base", depth_choices=(4, 6, 8, 10, 12),
        hidden_choices=(256, 384, 512, 640, 768), head_choices=(2, 4, 6, 8, 10, 12),
        ffn_choices=(512, 1024, 1536, 2048, 2560, 3072), head_size=64),
    # Tiny space for tests and `runlocal` jobs: builds and times in seconds.
    "tiny": SearchSpace(
        name="tiny", depth_choices=(1, 2), hidden_choices=(32, 64), head_choices=(1, 2),
        ffn_choices=(64, 128), head_size=16, seq_len=16, vocab_size=128,
        max_position_embeddings=64),
}


def get_space(name: str) -> SearchSpace:
  """Returns a predefined space: "minilm", "bert_base" or "tiny"."""
  if name not in _SPACES:
    raise ValueError(f"Unknown search space '{name}'; known: {sorted(_SPACES)}")
  return _SPACES[name]
