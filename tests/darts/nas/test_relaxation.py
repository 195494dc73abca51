"""Relaxations of architecture logits and the temperature schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from darts.nas import relaxation
from models import search_space

SPACE = search_space.get_space("minilm")


def test_init_logits_shapes_follow_the_space():
  logits = relaxation.init_logits(SPACE)
  assert {k: v.shape for k, v in logits.items()} == {
      "depth": (5,), "hidden": (5,), "heads": (6, 6), "ffn": (6, 6)}


@pytest.mark.parametrize("method", relaxation.RELAXATIONS)
def test_relaxations_give_distributions(method):
  logits = jax.tree.map(lambda x: jax.random.normal(jax.random.key(0), x.shape),
                        relaxation.init_logits(SPACE))
  probs = relaxation.relax(logits, method, jnp.asarray(0.7), jax.random.key(1))
  for p in probs.values():
    np.testing.assert_allclose(np.sum(p, -1), 1.0, rtol=1e-5)
    assert np.all(np.asarray(p) >= -1e-6)


def test_hard_is_one_hot_forward_with_soft_gradient():
  logits = {"depth": jnp.array([0.3, 0.1, -0.2])}
  probs = relaxation.relax(logits, "hard", jnp.asarray(1.0), jax.random.key(0))
  assert sorted(np.asarray(probs["depth"]).round(6).tolist()) == [0.0, 0.0, 1.0]
  grad = jax.grad(lambda l: jnp.vdot(relaxation.relax(l, "hard", jnp.asarray(1.0),
                                                       jax.random.key(0))["depth"],
                                     jnp.array([1.0, 2.0, 3.0])))(logits)
  assert np.all(np.asarray(grad["depth"]) != 0)


def test_softmax_temperature_sharpens():
  logits = {"hidden": jnp.array([1.0, 0.0])}
  warm = relaxation.relax(logits, "softmax", jnp.asarray(5.0))["hidden"]
  cold = relaxation.relax(logits, "softmax", jnp.asarray(0.1))["hidden"]
  assert warm[0] < cold[0] and cold[0] > 0.99
  with pytest.raises(ValueError, match="Unknown relaxation"):
    relaxation.relax(logits, "sigmoid", jnp.asarray(1.0))


def test_temperature_schedule_and_entropy():
  assert float(relaxation.temperature(0, 5.0, 0.5, 100)) == pytest.approx(5.0)
  assert float(relaxation.temperature(50, 5.0, 0.5, 100)) == pytest.approx(np.sqrt(2.5))
  assert float(relaxation.temperature(300, 5.0, 0.5, 100)) == pytest.approx(0.5)
  uniform = jax.tree.map(lambda x: jax.nn.softmax(x, -1), relaxation.init_logits(SPACE))
  # 14 rows: depth and hidden over 5 choices, 6 heads rows and 6 FFN rows over 6 choices.
  assert float(relaxation.entropy(uniform)) == pytest.approx(
      (2 * np.log(5) + 12 * np.log(6)) / 14, rel=1e-5)
