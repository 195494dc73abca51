"""The blocks a cost table times, and how an architecture decomposes into them.

A whole model is embeddings + its encoder layers + head, so its latency is predicted as the
sum of the per-block costs plus one fixed per-invocation overhead. Block costs are *net*:
each block's raw time minus the time of a "null" block with the same inputs and outputs
(invocation + I/O copies), which a whole model pays once rather than once per block.

Layers run differently inside a whole model than alone (their weights share the caches with
the other layers', activations come from the previous layer), and what one invocation costs
besides the blocks is not exactly the null blocks' time, so the table also times whole
*context* models per hidden size, `reference_arch(space, h, depth)` at the space's largest and
smallest depth; a line through them (fixed cost + factor x the sum of isolated layer costs) is
that hidden size's cost model, fitted on this host (see `table.CostTable.layer_fit`).
"""

from __future__ import annotations

import dataclasses

from models.search_space import Arch, SearchSpace

KINDS = ("embeddings", "layer", "head", "model", "context")
# The null whole model (token inputs -> logits): the per-invocation overhead a model pays once.
NULL_MODEL_KEY = "null_model"


@dataclasses.dataclass(frozen=True, order=True)
class Block:
  """One timed unit. `heads`/`ffn` are 0 for all kinds but "layer".

  `null=True` denotes the empty block with this block's signature (overhead measurement);
  kind "model" exists only as null: the empty whole model, whose time is the fixed overhead.
  Kind "context" is the whole `reference_arch` at this hidden size and depth.
  """
  kind: str
  hidden: int
  heads: int = 0
  ffn: int = 0
  null: bool = False
  depth: int = 0  # Context models only: their number of layers (0: the space's largest).

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"Block.kind='{self.kind}' is not one of {KINDS}")
    if self.kind == "model" and not self.null:
      raise ValueError("Block kind 'model' exists only as the null model (null=True)")
    if self.kind == "context" and self.null:
      raise ValueError("Block kind 'context' has no null block")
    if self.depth and self.kind != "context":
      raise ValueError("Block.depth is for context models only")

  @property
  def key(self) -> str:
    """Stable table key, e.g. "layer/h384_a12_f1536", "null_layer/h384", "null_model"."""
    if self.kind == "model":
      return NULL_MODEL_KEY
    prefix = ("null_" if self.null else "") + self.kind
    if self.kind == "layer" and not self.null:
      return f"{prefix}/h{self.hidden}_a{self.heads}_f{self.ffn}"
    if self.depth:
      return f"{prefix}/h{self.hidden}_d{self.depth}"
    return f"{prefix}/h{self.hidden}"

  def as_null(self) -> "Block":
    return Block(self.kind, self.hidden, null=True)


def reference_arch(space: SearchSpace, hidden: int, depth: int = 0) -> Arch:
  """The context model of `hidden` and `depth` (0: the largest): heads rising and FFN falling
  over the layers, so it mixes small and large layers like the architectures the search
  visits."""
  n = depth or space.max_layers
  pick = lambda choices, i: choices[round(i * (len(choices) - 1) / max(n - 1, 1))]
  return Arch(n, hidden, tuple(pick(space.head_choices, i) for i in range(n)),
              tuple(pick(space.ffn_choices, n - 1 - i) for i in range(n)))


def reference_block(space: SearchSpace) -> Block:
  """The fixed model every block of a table is timed against: a layer of middle size, so that
  other load slows it the way it slows the blocks."""
  middle = lambda choices: choices[(len(choices) - 1) // 2]
  return Block("layer", middle(space.hidden_choices), middle(space.head_choices),
               middle(space.ffn_choices))


def space_blocks(space: SearchSpace) -> list[Block]:
  """Every block the space needs, cheap kinds first (so a partial table is useful early)."""
  blocks = [Block("model", space.hidden_choices[0], null=True)]
  for h in space.hidden_choices:
    blocks += [Block("embeddings", h), Block("head", h)]
    blocks += [Block(kind, h, null=True) for kind in ("embeddings", "layer", "head")]
  for h in space.hidden_choices:
    blocks += [Block("layer", h, a, f) for a in space.head_choices for f in space.ffn_choices]
  return blocks + [block for h in space.hidden_choices for block in context_blocks(space, h)]


def context_blocks(space: SearchSpace, hidden: int) -> list[Block]:
  """The whole models timed at `hidden` to fit its cost model: the largest depth, and the
  smallest when it differs."""
  blocks = [Block("context", hidden)]
  if space.depth_choices[0] < space.max_layers:
    blocks.append(Block("context", hidden, depth=space.depth_choices[0]))
  return blocks


def context_arch(space: SearchSpace, block: Block) -> Arch:
  """The whole model a context block times."""
  return reference_arch(space, block.hidden, block.depth)


def arch_blocks(arch: Arch) -> list[Block]:
  """The (non-null) blocks whose costs sum to `arch`'s predicted latency."""
  h = arch.hidden_size
  return ([Block("embeddings", h)]
          + [Block("layer", h, a, f) for a, f in zip(arch.heads, arch.ffn)]
          + [Block("head", h)])
