"""Hand-shrunk and random baseline architectures under a latency budget."""

import pytest

from darts.nas import baselines
from models import search_space

SPACE = search_space.get_space("minilm")


def predict(arch):  # Linear in every width, plus a fixed overhead; like a real table in shape.
  return 0.5 + sum(arch.hidden_size / 384 * (1.0 + h / 12 + f / 1536)
                   for h, f in zip(arch.heads, arch.ffn))


def test_layer_dropped_keeps_full_width_and_the_most_layers_that_fit():
  arch = baselines.layer_dropped(SPACE, predict, budget_ms=9.0)  # 2 layers: 6.5 ms, 3: 9.5 ms
  assert arch == search_space.Arch(2, 384, (12, 12), (1536, 1536))
  assert baselines.layer_dropped(SPACE, predict, budget_ms=6.0) is None


def test_uniform_width_shrinks_every_width_by_one_factor():
  # Hidden 320 (10 heads, FFN 1280) costs 13.8 ms; hidden 256 (8 heads, FFN 1024) 9.8 ms.
  arch = baselines.uniform_width(SPACE, predict, budget_ms=10.0)
  assert arch == search_space.Arch(6, 256, (8,) * 6, (1024,) * 6)
  assert baselines.uniform_width(SPACE, predict, budget_ms=0.5) is None


def test_random_archs_are_distinct_and_in_the_band():
  archs = baselines.random_under_budget(SPACE, predict, 6.0, 7.0, count=4, seed=0)
  assert len(set(archs)) == 4
  assert all(6.0 <= predict(a) <= 7.0 for a in archs)
  assert archs == baselines.random_under_budget(SPACE, predict, 6.0, 7.0, count=4, seed=0)
  with pytest.raises(ValueError, match="random archs"):
    baselines.random_under_budget(SPACE, predict, 100.0, 101.0, count=1, seed=0, max_draws=50)
