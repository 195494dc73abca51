"""From architecture probabilities to one architecture that meets the latency target."""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import numpy as np

from models.search_space import Arch, SearchSpace

_FLOOR = 1e-12  # Keeps log-probabilities finite for choices the search drove to zero.


def most_probable_arch(probs: dict[str, np.ndarray], space: SearchSpace) -> Arch:
  """The most probable choice of every decision (layers beyond the depth are dropped)."""
  depth = space.depth_choices[int(np.argmax(probs["depth"]))]
  return Arch(num_layers=depth,
              hidden_size=space.hidden_choices[int(np.argmax(probs["hidden"]))],
              heads=tuple(space.head_choices[int(np.argmax(r))] for r in probs["heads"][:depth]),
              ffn=tuple(space.ffn_choices[int(np.argmax(r))] for r in probs["ffn"][:depth]))


def _log_prob(row: np.ndarray, choices: tuple[int, ...], value: int) -> float:
  return float(np.log(max(row[choices.index(value)], _FLOOR)))


def _narrower(choices: tuple[int, ...], value: int) -> int | None:
  index = choices.index(value)
  return choices[index - 1] if index else None


def _one_step_smaller(arch: Arch, probs: dict[str, np.ndarray],
                      space: SearchSpace) -> Iterator[tuple[str, Arch, float]]:
  """Yields (description, smaller arch, log-probability lost) for every single-step shrink."""
  depth = _narrower(space.depth_choices, arch.num_layers)
  if depth is not None:
    lost = (_log_prob(probs["depth"], space.depth_choices, arch.num_layers)
            - _log_prob(probs["depth"], space.depth_choices, depth))
    yield (f"depth {arch.num_layers}->{depth}",
           Arch(depth, arch.hidden_size, arch.heads[:depth], arch.ffn[:depth]), lost)
  hidden = _narrower(space.hidden_choices, arch.hidden_size)
  if hidden is not None:
    lost = (_log_prob(probs["hidden"], space.hidden_choices, arch.hidden_size)
            - _log_prob(probs["hidden"], space.hidden_choices, hidden))
    yield (f"hidden {arch.hidden_size}->{hidden}",
           dataclasses.replace(arch, hidden_size=hidden), lost)
  for field, key, choices in (("heads", "heads", space.head_choices),
                              ("ffn", "ffn", space.ffn_choices)):
    values = getattr(arch, field)
    for layer, value in enumerate(values):
      smaller = _narrower(choices, value)
      if smaller is None:
        continue
      row = probs[key][layer]
      lost = _log_prob(row, choices, value) - _log_prob(row, choices, smaller)
      new_values = values[:layer] + (smaller,) + values[layer + 1:]
      yield (f"layer {layer} {field} {value}->{smaller}",
             dataclasses.replace(arch, **{field: new_values}), lost)


def discretize(probs: dict[str, np.ndarray], space: SearchSpace,
               predict_ms: Callable[[Arch], float],
               target_ms: float) -> tuple[Arch, list[str]]:
  """The most probable arch, greedily shrunk until `predict_ms(arch) <= target_ms`.

  Each repair step takes the single-step shrink that loses the least log-probability per
  millisecond saved.

  Returns:
    The architecture and the repair steps taken (empty when the most probable arch fits).

  Raises:
    ValueError: when even the smallest architecture of the space is predicted above target.
  """
  smallest = space.smallest_arch()
  if predict_ms(smallest) > target_ms:
    raise ValueError(f"The latency target {target_ms:.2f} ms is below the smallest architecture "
                     f"of space '{space.name}' ({predict_ms(smallest):.2f} ms predicted).")
  arch = most_probable_arch(probs, space)
  repairs = []
  latency = predict_ms(arch)
  while latency > target_ms:
    best = None
    for description, candidate, lost in _one_step_smaller(arch, probs, space):
      saved = latency - predict_ms(candidate)
      if saved > 0 and (best is None or lost / saved < best[0]):
        best = (lost / saved, description, candidate)
    if best is None:  # Cannot happen while the smallest arch fits; kept as a clear failure.
      raise ValueError(f"No single shrink of {arch} lowers its predicted latency.")
    _, description, arch = best
    new_latency = predict_ms(arch)
    repairs.append(f"{description}: {latency:.2f} -> {new_latency:.2f} ms")
    latency = new_latency
  return arch, repairs
