"""Expected latency: one-hot invariant, gradients, penalties and bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latency_loss import expected
from latency_loss.blocks import space_blocks
from latency_loss.table import table_arrays
from models.search_space import get_space, one_hot_probs

SPACE = get_space("minilm")


@pytest.fixture
def table(make_cost_table):
  return make_cost_table(SPACE)


def random_probs(rng, space):
  def dist(*shape):
    return jax.nn.softmax(jnp.asarray(rng.normal(size=shape)), axis=-1)
  n = space.max_layers
  return {"depth": dist(len(space.depth_choices)), "hidden": dist(len(space.hidden_choices)),
          "heads": dist(n, len(space.head_choices)), "ffn": dist(n, len(space.ffn_choices))}


def test_one_hot_equals_table_prediction(table):
  arrays = table_arrays(table, SPACE)
  rng = np.random.default_rng(0)
  for _ in range(20):
    arch = SPACE.random_arch(rng)
    got = expected.expected_latency_ms(arrays, one_hot_probs(arch, SPACE))
    np.testing.assert_allclose(float(got), table.predict_ms(arch), rtol=1e-5)


def test_jit_with_traced_table_and_probs(table):
  arrays = {k: jnp.asarray(v) for k, v in table_arrays(table, SPACE).items()}
  arch = SPACE.random_arch(np.random.default_rng(5))
  got = jax.jit(expected.expected_latency_ms)(arrays, one_hot_probs(arch, SPACE))
  np.testing.assert_allclose(float(got), table.predict_ms(arch), rtol=1e-5)


def test_layer_active_probs_nested_depth():
  p = jnp.array([0.1, 0.2, 0.3, 0.4])
  active = expected.layer_active_probs(p, jnp.array([1, 2, 4, 6]), 6)
  np.testing.assert_allclose(active, [1.0, 0.9, 0.7, 0.7, 0.4, 0.4], rtol=1e-6)


def test_mixture_is_bounded_by_extremes(table):
  arrays = table_arrays(table, SPACE)
  lat = expected.expected_latency_ms(arrays, random_probs(np.random.default_rng(1), SPACE))
  costs = [table.cost_ms(b) for b in space_blocks(SPACE) if b.kind == "layer" and not b.null]
  assert min(costs) > 0
  fixed = [table.fixed_ms(h) for h in SPACE.hidden_choices]
  assert 0 < float(lat) < max(fixed) + SPACE.max_layers * max(costs)


def test_gradient_matches_finite_differences(table):
  jax.config.update("jax_enable_x64", True)
  try:
    arrays = {k: jnp.asarray(v, jnp.float64) for k, v in table_arrays(table, SPACE).items()}
    rng = np.random.default_rng(2)
    logits = {k: jnp.asarray(v, jnp.float64)
              for k, v in jax.tree.map(lambda p: np.log(np.asarray(p)),
                                       random_probs(rng, SPACE)).items()}
    f = lambda lg: expected.expected_latency_ms(
        arrays, jax.tree.map(lambda x: jax.nn.softmax(x, axis=-1), lg))
    grads = jax.grad(f)(logits)
    eps = 1e-6
    for key, index in [("depth", (2,)), ("hidden", (0,)), ("heads", (3, 1)), ("ffn", (5, 4))]:
      bump = lambda s: {**logits, key: logits[key].at[index].add(s)}
      numeric = (f(bump(eps)) - f(bump(-eps))) / (2 * eps)
      np.testing.assert_allclose(grads[key][index], numeric, rtol=1e-6, atol=1e-9)
      assert abs(float(grads[key][index])) > 1e-6
  finally:
    jax.config.update("jax_enable_x64", False)


def test_bad_inputs_raise(table):
  arrays = table_arrays(table, SPACE)
  probs = one_hot_probs(SPACE.largest_arch(), SPACE)
  with pytest.raises(ValueError, match=r"probs\['heads'\].*\(6, 6\)"):
    expected.expected_latency_ms(arrays, {**probs, "heads": probs["heads"][:5]})
  with pytest.raises(ValueError, match="lacks keys.*ffn"):
    expected.expected_latency_ms(arrays, {k: v for k, v in probs.items() if k != "ffn"})
  with pytest.raises(ValueError, match="fixed"):
    expected.expected_latency_ms({k: v for k, v in arrays.items() if k != "fixed"}, probs)


def test_penalties():
  lat = jnp.array(20.0)
  assert float(expected.hinge_penalty(lat, 25.0, 3.0)) == 0.0
  np.testing.assert_allclose(expected.hinge_penalty(lat, 10.0, 3.0), 3.0)
  np.testing.assert_allclose(expected.proxyless_penalty(lat, 0.1), 2.0)
  np.testing.assert_allclose(expected.fbnet_loss(jnp.array(2.0), lat, 0.2, 0.6),
                             2.0 * 0.2 * np.log(20.0) ** 0.6, rtol=1e-6)
  # All three push latency down.
  for g in (jax.grad(lambda l: expected.hinge_penalty(l, 10.0, 1.0))(lat),
            jax.grad(lambda l: expected.proxyless_penalty(l, 1.0))(lat),
            jax.grad(lambda l: expected.fbnet_loss(1.0, l))(lat)):
    assert float(g) > 0
