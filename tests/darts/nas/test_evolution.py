"""Evolutionary and random search on synthetic fitness: budgets, constraints, and that evolution
finds fitter archs than random search with the same number of evaluations."""

import numpy as np
import pytest

from darts.nas import evolution
from models.search_space import Arch, get_space

SPACE = get_space("minilm")


def cost_ms(arch: Arch) -> float:
  """A latency model with the table's shape: per layer, attention and FFN GEMMs x hidden."""
  return sum(arch.hidden_size * (h * 32 * 4 + f * 2) for h, f in zip(arch.heads, arch.ffn)) / 1e5


def loss(arch: Arch) -> float:
  """Lower for more capacity, with diminishing returns, and deep layers worth more than FFN:
  the best arch under a budget is a trade-off, not the widest of anything."""
  return (1.0 / arch.num_layers + 50.0 / arch.hidden_size
          + sum(1.0 / h + 40.0 / f for h, f in zip(arch.heads, arch.ffn)) / arch.num_layers)


BUDGET = 0.33 * cost_ms(SPACE.largest_arch())


def test_evolution_spends_exactly_its_budget_on_distinct_archs_under_the_latency_budget():
  calls = []
  fitness = lambda arch: calls.append(arch) or loss(arch)
  settings = evolution.EvolutionSettings(num_evaluations=60, population=12, parents=4)
  best, records = evolution.evolve(fitness, SPACE, cost_ms, BUDGET, settings, seed=0)
  assert len(calls) == len(set(calls)) == len(records) == 60
  for record in records:
    record.arch.validate(SPACE)
    assert record.predicted_ms == cost_ms(record.arch) <= BUDGET
  assert best.fitness == min(r.fitness for r in records)
  assert max(r.generation for r in records) >= 3  # It bred, not just sampled.


def test_evolution_beats_random_search_with_the_same_budget():
  settings = evolution.EvolutionSettings(num_evaluations=80, population=16, parents=4)
  evolved = [evolution.evolve(loss, SPACE, cost_ms, BUDGET, settings, seed)[0].fitness
             for seed in range(5)]
  drawn = [evolution.random_search(loss, SPACE, cost_ms, BUDGET, 80, seed)[0].fitness
           for seed in range(5)]
  assert np.mean(evolved) < np.mean(drawn)
  assert sum(e < d for e, d in zip(evolved, drawn)) >= 4


def test_mutation_and_crossover_give_valid_archs():
  rng = np.random.default_rng(0)
  a, b = SPACE.largest_arch(), SPACE.smallest_arch()
  for _ in range(200):
    evolution.mutate(a, SPACE, rng, 0.5).validate(SPACE)
    child = evolution.crossover(a, b, rng)
    child.validate(SPACE)
    for i in range(child.num_layers):  # Every layer comes from a parent that has it.
      assert child.heads[i] in {p.heads[i] for p in (a, b) if i < p.num_layers}
  assert evolution.mutate(a, SPACE, rng, 0.0) == a


def test_a_budget_larger_than_the_feasible_archs_stops_when_all_are_evaluated():
  space = get_space("tiny")
  fits = lambda arch: arch.num_layers == 1 and arch.hidden_size == space.hidden_choices[0]
  predict = lambda arch: 1.0 if fits(arch) else 2.0
  settings = evolution.EvolutionSettings(num_evaluations=100, population=6, parents=2,
                                         max_draws=200)
  for best, records in (evolution.evolve(loss, space, predict, 1.5, settings, 0),
                        evolution.random_search(loss, space, predict, 1.5, 100, 0, 200)):
    assert len(records) == 4 and all(fits(r.arch) for r in records)  # 1 x 1 x 2 heads x 2 ffn
    assert best.fitness == min(loss(r.arch) for r in records)


def test_seeded_evolution_starts_from_its_initial_archs_and_sampler():
  """The differentiable search's held-out selection: its discretized arch first, the rest of the
  population from its distribution, uniform draws where that distribution has nothing that fits."""
  settings = evolution.EvolutionSettings(num_evaluations=40, population=10, parents=3)
  start = Arch(3, SPACE.hidden_choices[0], (SPACE.head_choices[0],) * 3,
               (SPACE.ffn_choices[0],) * 3)
  narrow_archs = [Arch(2, h, (SPACE.head_choices[0],) * 2, (f,) * 2)
                  for h in SPACE.hidden_choices[:2] for f in SPACE.ffn_choices[:3]]
  narrow = lambda rng: narrow_archs[int(rng.integers(len(narrow_archs)))]
  best, records = evolution.evolve(loss, SPACE, cost_ms, BUDGET, settings, 0,
                                   initial=(start, SPACE.largest_arch()), sample=narrow)
  first = [r.arch for r in records if r.generation == 0]
  assert first[0] == start and SPACE.largest_arch() not in first  # Over the budget: skipped.
  assert len(first) == 10 and all(cost_ms(a) <= BUDGET for a in first)
  assert set(first[1:7]) == set(narrow_archs)  # All of the sampler's, then 3 uniform draws.
  assert best.fitness <= loss(start) and best.fitness == min(r.fitness for r in records)


def test_no_arch_under_the_budget_is_an_error():
  with pytest.raises(ValueError, match="No architecture fits the budget of 0.00 ms"):
    evolution.random_search(loss, SPACE, cost_ms, 0.0, 10, 0, max_draws=50)


@pytest.mark.parametrize("field,value,match", [
    ("parents", 1, "parents=1 must be in"), ("parents", 20, "parents=20 must be in"),
    ("num_evaluations", 0, "num_evaluations=0"), ("mutation_prob", 1.5, "mutation_prob=1.5")])
def test_bad_settings_are_refused(field, value, match):
  with pytest.raises(ValueError, match=match):
    evolution.EvolutionSettings(**{field: value})
