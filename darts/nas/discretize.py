"""From architecture probabilities to one architecture that meets the latency target."""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import numpy as np

from models.search_space import Arch, SearchSpace

_FLOOR = 1e-12  # Keeps log-probabilities finite for choices the search drove to zero.


def _arch_by(probs: dict[str, np.ndarray], space: SearchSpace,
             pick: Callable[[np.ndarray], int], depth: int | None = None) -> Arch:
  """The arch whose every decision is `pick(its probabilities)`, an index into its choices;
  decisions are taken in the order depth, hidden, heads, FFN (a sampler's stream depends on it)."""
  if depth is None:
    depth = space.depth_choices[pick(probs["depth"])]
  return Arch(num_layers=depth, hidden_size=space.hidden_choices[pick(probs["hidden"])],
              heads=tuple(space.head_choices[pick(r)] for r in probs["heads"][:depth]),
              ffn=tuple(space.ffn_choices[pick(r)] for r in probs["ffn"][:depth]))


def most_probable_arch(probs: dict[str, np.ndarray], space: SearchSpace,
                       depth: int | None = None) -> Arch:
  """The most probable choice of every decision (layers beyond the depth are dropped).

  `depth` fixes the number of layers instead of taking the most probable one.
  """
  return _arch_by(probs, space, lambda row: int(np.argmax(row)), depth)


def sample_arch(probs: dict[str, np.ndarray], space: SearchSpace,
                rng: np.random.Generator) -> Arch:
  """An arch drawn from the searched distribution: every decision independently by its
  probabilities (the layers beyond the drawn depth are dropped)."""

  def draw(row: np.ndarray) -> int:
    p = np.asarray(row, np.float64)
    return int(rng.choice(len(p), p=p / p.sum()))

  return _arch_by(probs, space, draw)


def _log_prob(row: np.ndarray, choices: tuple[int, ...], value: int) -> float:
  return float(np.log(max(row[choices.index(value)], _FLOOR)))


def _step(choices: tuple[int, ...], value: int, direction: int) -> int | None:
  """The next narrower (direction -1) or wider (+1) choice, None at the end of the range."""
  index = choices.index(value) + direction
  return choices[index] if 0 <= index < len(choices) else None


def _neighbours(arch: Arch, probs: dict[str, np.ndarray], space: SearchSpace,
                direction: int) -> Iterator[tuple[str, Arch, float]]:
  """Yields (description, arch, log-probability lost) for every single-step change of one
  decision in `direction` (-1 narrower, +1 wider). A layer added by a deeper arch takes its
  most probable heads and FFN width."""
  depth = _step(space.depth_choices, arch.num_layers, direction)
  if depth is not None:
    lost = (_log_prob(probs["depth"], space.depth_choices, arch.num_layers)
            - _log_prob(probs["depth"], space.depth_choices, depth))
    deeper = most_probable_arch(probs, space, depth=depth)
    yield (f"depth {arch.num_layers}->{depth}",
           Arch(depth, arch.hidden_size, (arch.heads + deeper.heads)[:depth],
                (arch.ffn + deeper.ffn)[:depth]), lost)
  hidden = _step(space.hidden_choices, arch.hidden_size, direction)
  if hidden is not None:
    lost = (_log_prob(probs["hidden"], space.hidden_choices, arch.hidden_size)
            - _log_prob(probs["hidden"], space.hidden_choices, hidden))
    yield (f"hidden {arch.hidden_size}->{hidden}",
           dataclasses.replace(arch, hidden_size=hidden), lost)
  for field, choices in (("heads", space.head_choices), ("ffn", space.ffn_choices)):
    values = getattr(arch, field)
    for layer, value in enumerate(values):
      changed = _step(choices, value, direction)
      if changed is None:
        continue
      row = probs[field][layer]
      lost = _log_prob(row, choices, value) - _log_prob(row, choices, changed)
      new_values = values[:layer] + (changed,) + values[layer + 1:]
      yield (f"layer {layer} {field} {value}->{changed}",
             dataclasses.replace(arch, **{field: new_values}), lost)


def _repair(arch: Arch, probs: dict[str, np.ndarray], space: SearchSpace,
            predict_ms: Callable[[Arch], float], budget_ms: float) -> tuple[Arch, list[str]]:
  """Shrinks one decision at a time, least log-probability lost per ms saved first, until the
  arch fits `budget_ms`.

  A measured table need not be monotone: timing noise on small blocks can predict every single
  shrink of an arch slower than the arch itself. Then the shrink that loses the least
  log-probability is taken anyway. Every step lowers some decision and none raises one, so the
  walk ends, at the latest at the smallest arch, which the caller has checked fits.
  """
  steps = []
  latency = predict_ms(arch)
  while latency > budget_ms:
    saving, other = None, None
    for description, candidate, lost in _neighbours(arch, probs, space, -1):
      new_latency = predict_ms(candidate)
      saved = latency - new_latency
      if saved > 0 and (saving is None or lost / saved < saving[0]):
        saving = (lost / saved, description, candidate, new_latency)
      if other is None or lost < other[0]:
        other = (lost, description, candidate, new_latency)
    _, description, arch, new_latency = saving or other
    steps.append(f"{description}: {latency:.2f} -> {new_latency:.2f} ms")
    latency = new_latency
  return arch, steps


def _fill(arch: Arch, probs: dict[str, np.ndarray], space: SearchSpace,
          predict_ms: Callable[[Arch], float], budget_ms: float) -> tuple[Arch, list[str]]:
  """Widens one decision at a time while the arch still fits `budget_ms`, least
  log-probability lost (or most gained) per ms spent first, so no budget is left unused."""
  steps = []
  latency = predict_ms(arch)
  while True:
    best = None
    for description, candidate, lost in _neighbours(arch, probs, space, +1):
      new_latency = predict_ms(candidate)
      spent = new_latency - latency
      if spent > 0 and new_latency <= budget_ms and (best is None or lost / spent < best[0]):
        best = (lost / spent, description, candidate, new_latency)
    if best is None:
      return arch, steps
    _, description, arch, new_latency = best
    steps.append(f"{description}: {latency:.2f} -> {new_latency:.2f} ms")
    latency = new_latency


def discretize(probs: dict[str, np.ndarray], space: SearchSpace,
               predict_ms: Callable[[Arch], float], target_ms: float, margin: float = 0.0,
               fill: bool = False) -> tuple[Arch, list[str]]:
  """The most probable arch, fitted to the latency budget `target_ms * (1 - margin)`.

  Repair: while the prediction exceeds the budget, take the single-step shrink that loses the
  least log-probability per millisecond saved. Fill (when `fill`): then, while some single-step
  widening still fits, take the one that loses the least log-probability per millisecond spent.
  The margin absorbs the cost table's prediction error, so that the measured latency, not just
  the predicted one, stays under the target.

  Returns:
    The architecture and the steps taken (empty when the most probable arch is kept).

  Raises:
    ValueError: when even the smallest architecture of the space is predicted above budget.
  """
  if not 0.0 <= margin < 1.0:
    raise ValueError(f"margin={margin} must be in [0, 1)")
  budget_ms = target_ms * (1.0 - margin)
  smallest = space.smallest_arch()
  if predict_ms(smallest) > budget_ms:
    raise ValueError(f"The latency target {target_ms:.2f} ms (budget {budget_ms:.2f} ms after "
                     f"a {margin:.0%} margin) is below the smallest architecture of space "
                     f"'{space.name}' ({predict_ms(smallest):.2f} ms predicted).")
  arch, steps = _repair(most_probable_arch(probs, space), probs, space, predict_ms, budget_ms)
  if fill:
    arch, filled = _fill(arch, probs, space, predict_ms, budget_ms)
    steps += [f"fill {line}" for line in filled]
  return arch, steps
