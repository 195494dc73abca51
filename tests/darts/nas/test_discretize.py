"""Most probable architecture and its greedy repair under a latency target."""

import numpy as np
import pytest

from darts.nas import discretize
from models import search_space

SPACE = search_space.SearchSpace(name="d", depth_choices=(1, 2), hidden_choices=(32, 64),
                                 head_choices=(1, 2), ffn_choices=(64, 128), head_size=16,
                                 seq_len=16, vocab_size=100, max_position_embeddings=64)


def predict(arch):  # A latency model where FFN width is cheap and hidden size is expensive.
  return arch.hidden_size / 8 + sum(2 * h + f / 64 for h, f in zip(arch.heads, arch.ffn))


def probs(depth=(0.1, 0.9), hidden=(0.2, 0.8), heads=((0.1, 0.9), (0.3, 0.7)),
          ffn=((0.45, 0.55), (0.4, 0.6))):
  return {"depth": np.array(depth), "hidden": np.array(hidden), "heads": np.array(heads),
          "ffn": np.array(ffn)}


def test_most_probable_arch():
  arch = discretize.most_probable_arch(probs(), SPACE)
  assert arch == search_space.Arch(2, 64, (2, 2), (128, 128))
  short = discretize.most_probable_arch(probs(depth=(0.7, 0.3)), SPACE)
  assert short == search_space.Arch(1, 64, (2,), (128,))


def test_fitting_arch_is_not_repaired():
  arch, repairs = discretize.discretize(probs(), SPACE, predict, target_ms=1e9)
  assert repairs == [] and arch == search_space.Arch(2, 64, (2, 2), (128, 128))


def test_repair_takes_least_probability_per_millisecond_until_it_fits():
  # Most probable: 8 + (4 + 2) * 2 = 20 ms. Log-probability lost per ms saved: layer 0 FFN
  # log(.55/.45)/1 = 0.20, hidden log(.8/.2)/4 = 0.35, depth log(.9/.1)/6 = 0.37, layer 1 FFN
  # log(.6/.4)/1 = 0.41, layer 1 heads log(.7/.3)/2 = 0.42, layer 0 heads log(.9/.1)/2 = 1.1.
  arch, repairs = discretize.discretize(probs(), SPACE, predict, target_ms=16.5)
  assert repairs == ["layer 0 ffn 128->64: 20.00 -> 19.00 ms",
                     "hidden 64->32: 19.00 -> 15.00 ms"]
  assert arch == search_space.Arch(2, 32, (2, 2), (64, 128))


def test_repair_walks_through_a_table_that_is_not_monotone():
  # CI's case: timing noise on a tiny table predicted both single shrinks of 1L/64/FFN 128 slower
  # than the arch, while the smallest arch fits. The walk takes the likelier shrink and goes on.
  # Log-probability lost: layer 0 FFN log(.55/.45) = 0.20 before hidden log(.8/.2) = 1.39.
  arch_ms = {(64, 128): 10.0, (32, 128): 11.0, (64, 64): 12.0, (32, 64): 5.0}

  def noisy(arch):
    return arch_ms[(arch.hidden_size, arch.ffn[0])]

  short = probs(depth=(0.9, 0.1), heads=((0.9, 0.1), (0.9, 0.1)))
  arch, repairs = discretize.discretize(short, SPACE, noisy, target_ms=6.0)
  assert repairs == ["layer 0 ffn 128->64: 10.00 -> 12.00 ms", "hidden 64->32: 12.00 -> 5.00 ms"]
  assert arch == search_space.Arch(1, 32, (1,), (64,))


def test_target_below_the_smallest_arch_is_an_error():
  with pytest.raises(ValueError, match="below the smallest architecture"):
    discretize.discretize(probs(), SPACE, predict, target_ms=1.0)


def test_fill_spends_the_budget_left_after_repair():
  # Most probable arch costs 20 ms; with fill the budget of 18 ms is spent greedily: repair
  # first shrinks layer 0 FFN (19 ms) and hidden (15 ms), then the only widening that fits
  # is layer 0 FFN back to 128 (16 ms), after which nothing fits any more.
  arch, steps = discretize.discretize(probs(), SPACE, predict, target_ms=18.0, fill=True)
  assert steps[-1] == "fill layer 0 ffn 64->128: 15.00 -> 16.00 ms"
  assert predict(arch) <= 18.0
  assert all(predict(bigger) > 18.0
             for _, bigger, _ in discretize._neighbours(arch, probs(), SPACE, +1))


def test_fill_grows_a_too_small_most_probable_arch():
  small = probs(depth=(0.9, 0.1), hidden=(0.9, 0.1), heads=((0.9, 0.1), (0.2, 0.8)))
  arch, steps = discretize.discretize(small, SPACE, predict, target_ms=1e9, fill=True)
  assert arch == SPACE.largest_arch()
  assert "fill depth 1->2" in " ".join(steps)


def test_margin_keeps_the_prediction_under_a_lower_budget():
  arch, _ = discretize.discretize(probs(), SPACE, predict, target_ms=20.0, margin=0.1)
  assert predict(arch) <= 18.0
  with pytest.raises(ValueError, match="margin"):
    discretize.discretize(probs(), SPACE, predict, target_ms=20.0, margin=1.0)


def test_sampled_archs_follow_the_probabilities():
  rng = np.random.default_rng(0)
  p = probs(depth=(0.25, 0.75), hidden=(1.0, 0.0), heads=((0.5, 0.5), (0.0, 1.0)))
  draws = [discretize.sample_arch(p, SPACE, rng) for _ in range(4000)]
  for arch in draws:
    arch.validate(SPACE)
  assert all(a.hidden_size == 32 for a in draws)  # Zero probability: never drawn.
  assert np.mean([a.num_layers == 2 for a in draws]) == pytest.approx(0.75, abs=0.03)
  assert all(a.heads[1] == 2 for a in draws if a.num_layers == 2)
  assert np.mean([a.ffn[0] == 128 for a in draws]) == pytest.approx(0.55, abs=0.03)
