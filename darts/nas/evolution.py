"""Evolutionary search (HAT) and random search over a trained weight-shared supernet.

Both look for the architecture of least fitness (a loss: the held-out loss of the sliced subnet,
computed by the caller) among those whose cost-table prediction fits the latency budget. Their
budget is a number of evaluated architectures: each distinct architecture is evaluated once, and
the search stops when the budget is spent or no unevaluated architecture fits any more.

Evolution (Wang et al., 2020, "HAT", Algorithm 1): a population of random archs under the
budget; each generation keeps the `parents` fittest and breeds children by mutation (each
decision redrawn with `mutation_prob`) and crossover (each decision taken from one of two
parents), every child redrawn until it fits the budget. The initial population can be seeded
(`initial`) and drawn from another distribution than the uniform one (`sample`): the
differentiable search's held-out selection starts from its discretized arch and draws the rest
from its learned architecture distribution.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import numpy as np

from models.search_space import Arch, SearchSpace

Fitness = Callable[[Arch], float]
Predict = Callable[[Arch], float]
METHODS = ("evolution", "random")


@dataclasses.dataclass(frozen=True)
class EvolutionSettings:
  """HAT's search hyper-parameters, in evaluated architectures rather than generations."""

  num_evaluations: int = 200  # The budget: distinct architectures evaluated.
  population: int = 20
  parents: int = 5  # The fittest kept from one generation to the next.
  mutation_share: float = 0.5  # Of the children; the rest come from crossover.
  mutation_prob: float = 0.3  # Per decision (depth, hidden, each layer's heads and FFN).
  max_draws: int = 1000  # Tries for one child that fits the budget and is new.

  def __post_init__(self):
    if not 2 <= self.parents < self.population:  # Crossover needs two.
      raise ValueError(f"parents={self.parents} must be in [2, population={self.population}).")
    if self.num_evaluations < 1:
      raise ValueError(f"num_evaluations={self.num_evaluations} must be >= 1.")
    for name in ("mutation_share", "mutation_prob"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1].")


@dataclasses.dataclass
class Record:
  arch: Arch
  fitness: float
  predicted_ms: float
  generation: int  # 0: the initial population (random search: every draw).


class _Budget:
  """Evaluates each architecture once and stops at `limit` evaluations."""

  def __init__(self, fitness: Fitness, predict_ms: Predict, limit: int):
    self.fitness, self.predict_ms, self.limit = fitness, predict_ms, limit
    self.records: dict[Arch, Record] = {}

  @property
  def spent(self) -> bool:
    return len(self.records) >= self.limit

  def evaluate(self, arch: Arch, generation: int) -> Record:
    if arch not in self.records:
      self.records[arch] = Record(arch, float(self.fitness(arch)), self.predict_ms(arch),
                                  generation)
    return self.records[arch]

  def best(self) -> Record:
    return min(self.records.values(), key=lambda r: r.fitness)


def mutate(arch: Arch, space: SearchSpace, rng: np.random.Generator, prob: float) -> Arch:
  """Redraws each decision with probability `prob`; layers added by a deeper draw are random."""
  fresh = space.random_arch(rng)
  depth = fresh.num_layers if rng.random() < prob else arch.num_layers
  hidden = fresh.hidden_size if rng.random() < prob else arch.hidden_size
  draw = lambda choices, values, i: (int(rng.choice(choices))
                                     if i >= len(values) or rng.random() < prob else values[i])
  return Arch(depth, hidden, tuple(draw(space.head_choices, arch.heads, i) for i in range(depth)),
              tuple(draw(space.ffn_choices, arch.ffn, i) for i in range(depth)))


def crossover(a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
  """Each decision from `a` or `b` at random; a layer only one parent has comes from it."""
  pick = lambda x, y: x if rng.random() < 0.5 else y
  depth = pick(a.num_layers, b.num_layers)

  def layer(field: str, i: int) -> int:
    values = [getattr(p, field)[i] for p in (a, b) if i < p.num_layers]
    return pick(values[0], values[-1])

  return Arch(depth, pick(a.hidden_size, b.hidden_size),
              tuple(layer("heads", i) for i in range(depth)),
              tuple(layer("ffn", i) for i in range(depth)))


def _draw_new(make: Callable[[], Arch], budget: _Budget, budget_ms: float,
              max_draws: int) -> Optional[Arch]:
  """The first of `max_draws` draws of `make` that fits `budget_ms` and is not evaluated yet."""
  for _ in range(max_draws):
    arch = make()
    if arch not in budget.records and budget.predict_ms(arch) <= budget_ms:
      return arch
  return None


def random_search(fitness: Fitness, space: SearchSpace, predict_ms: Predict, budget_ms: float,
                  num_evaluations: int, seed: int, max_draws: int = 1000
                  ) -> tuple[Record, list[Record]]:
  """The fittest of `num_evaluations` distinct random archs (uniform per decision) under the
  budget; returns (best, every evaluation in order)."""
  rng = np.random.default_rng(seed)
  budget = _Budget(fitness, predict_ms, num_evaluations)
  while not budget.spent:
    arch = _draw_new(lambda: space.random_arch(rng), budget, budget_ms, max_draws)
    if arch is None:
      break
    budget.evaluate(arch, 0)
  return _result(budget, budget_ms)


def evolve(fitness: Fitness, space: SearchSpace, predict_ms: Predict, budget_ms: float,
           settings: EvolutionSettings, seed: int, initial: Sequence[Arch] = (),
           sample: Optional[Callable[[np.random.Generator], Arch]] = None
           ) -> tuple[Record, list[Record]]:
  """HAT's evolutionary search (module doc); returns (best, every evaluation in order).

  Args:
    initial: archs that start the population (those over the budget are skipped).
    sample: draws the rest of the initial population (default: uniform per decision); where it
      finds no new arch under the budget in `max_draws` draws, uniform draws take over.
  """
  rng = np.random.default_rng(seed)
  budget = _Budget(fitness, predict_ms, settings.num_evaluations)
  fitting = [arch for arch in dict.fromkeys(initial) if predict_ms(arch) <= budget_ms]
  population = [budget.evaluate(arch, 0)
                for arch in fitting[:min(settings.population, settings.num_evaluations)]]
  draw = sample or space.random_arch
  while len(population) < settings.population and not budget.spent:
    arch = _draw_new(lambda: draw(rng), budget, budget_ms, settings.max_draws)
    if arch is None and sample is not None:  # Nothing new under the budget from `sample`.
      arch = _draw_new(lambda: space.random_arch(rng), budget, budget_ms, settings.max_draws)
    if arch is None:
      break
    population.append(budget.evaluate(arch, 0))
  generation = 0
  num_mutations = int(round(settings.mutation_share * (settings.population - settings.parents)))
  while not budget.spent and len(population) > settings.parents:
    generation += 1
    parents = sorted(population, key=lambda r: r.fitness)[:settings.parents]
    makers = ([lambda: mutate(parents[rng.integers(len(parents))].arch, space, rng,
                              settings.mutation_prob)] * num_mutations
              + [lambda: crossover(*(parents[i].arch for i in rng.choice(
                  len(parents), 2, replace=False)), rng)]
              * (settings.population - settings.parents - num_mutations))
    children = []
    for make in makers:
      if budget.spent:
        break
      arch = _draw_new(make, budget, budget_ms, settings.max_draws)
      if arch is not None:
        children.append(budget.evaluate(arch, generation))
    if not children:  # Every neighbour of the parents is evaluated or over budget.
      break
    population = parents + children
  return _result(budget, budget_ms)


def _result(budget: _Budget, budget_ms: float) -> tuple[Record, list[Record]]:
  if not budget.records:
    raise ValueError(f"No architecture fits the budget of {budget_ms:.2f} ms.")
  return budget.best(), list(budget.records.values())
