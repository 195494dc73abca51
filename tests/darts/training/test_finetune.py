"""The fine-tuning optimizer (weight decay on the right parameters, warm-up and decay) and the
step's layer distillation from a live teacher."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from configs import finetune as finetune_config
from darts.training import finetune
from models import bert, search_space, supernet


def tiny_params():
  config = bert.BertConfig(vocab_size=10, hidden_size=8, num_layers=2, num_heads=2, head_size=4,
                           intermediate_size=8, max_position_embeddings=8)
  return nnx.split(bert.BertClassifier(config, 2, rngs=nnx.Rngs(0)), nnx.Param)[1]


def test_decay_mask_selects_kernels_and_embeddings_only():
  params = tiny_params()
  flat = jax.tree_util.tree_flatten_with_path(finetune.decay_mask(params))[0]
  decayed = sorted("/".join(str(getattr(k, "key", "")) for k in path[:-1])
                   for path, value in flat if value)
  # 3 embeddings, 6 kernels per layer (q, k, v, attention out, intermediate, out), pooler, head.
  assert len(decayed) == 3 + 6 * 2 + 2
  assert all(name.endswith(("kernel", "embedding")) for name in decayed)


def test_adamw_shrinks_kernels_but_not_layer_norms_without_gradient():
  params = tiny_params()
  optim = ml_collections.ConfigDict(dict(lr=0.1, warmup_ratio=0.0, weight_decay=0.5, b1=0.9,
                                         b2=0.999, eps=1e-6, clip_norm=1.0))
  tx, schedule = finetune.make_optimizer(optim, num_train_steps=10)
  zeros = jax.tree.map(np.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  new = nnx.State.merge(params, jax.tree.map(lambda p, u: p + u, params, updates))
  kernel = new["bert"]["pooler"]["kernel"][...]
  np.testing.assert_allclose(kernel, params["bert"]["pooler"]["kernel"][...] * (1 - 0.1 * 0.5),
                             rtol=1e-5)
  np.testing.assert_array_equal(new["bert"]["pooler"]["bias"][...],
                                params["bert"]["pooler"]["bias"][...])
  assert float(schedule(0)) == pytest.approx(0.1) and float(schedule(10)) == 0.0


def _layer_distillation_setup(arch, hidden_weight=1.0, attention_weight=1.0):
  """A tiny-space teacher without dropout (its attention sharpened: a random init attends
  almost uniformly), a student sliced to `arch`, a batch, and the step."""
  space = search_space.get_space("tiny")
  base = space.largest_arch()
  config = bert.BertConfig(vocab_size=space.vocab_size, hidden_size=base.hidden_size,
                           num_layers=base.num_layers, num_heads=base.heads,
                           head_size=space.head_size, intermediate_size=base.ffn,
                           max_position_embeddings=space.max_position_embeddings,
                           hidden_dropout=0.0, attention_dropout=0.0)
  teacher = bert.BertClassifier(config, 2, rngs=nnx.Rngs(0))
  for layer in teacher.bert.layers:
    for dense in (layer.attention.query, layer.attention.key):
      dense.kernel.value = 20.0 * dense.kernel.value
  student = supernet.extract_subnet(teacher, space, arch)
  distill = finetune_config.get_config().distill
  distill.update(weight=0.0, hidden_weight=hidden_weight, attention_weight=attention_weight)
  tx = optax.adam(1e-2)
  teacher_graphdef, teacher_params = nnx.split(teacher, nnx.Param)
  graphdef, params = nnx.split(student, nnx.Param)
  step = jax.jit(finetune.make_train_step(graphdef, tx, distill, "float32", teacher_graphdef))
  rng = np.random.default_rng(0)
  batch = {"input_ids": rng.integers(5, space.vocab_size, (4, 12)).astype(np.int32),
           "attention_mask": np.ones((4, 12), np.int32),
           "token_type_ids": np.zeros((4, 12), np.int32),
           "labels": rng.integers(0, 2, 4).astype(np.int32), "weights": np.ones(4, np.float32)}
  batch["attention_mask"][0, 8:] = 0
  state = finetune.TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))
  return step, state, batch, teacher_params


def test_layer_distillation_is_zero_for_the_teacher_itself():
  step, state, batch, teacher_params = _layer_distillation_setup(
      search_space.get_space("tiny").largest_arch())
  _, metrics = step(state, batch, jax.random.key(0), teacher_params)
  assert float(metrics["hidden_loss"]) < 1e-10 and abs(float(metrics["attention_loss"])) < 1e-6
  np.testing.assert_allclose(metrics["loss"], metrics["task_loss"], rtol=1e-5)


def test_layer_distillation_teaches_a_shallower_narrower_student():
  # The same 30 steps with and without layer distillation, from the same sliced student; the
  # layer losses of both results are read with the distilling step's metrics.
  arch = search_space.Arch(1, 32, (1,), (64,))
  distilling, start, batch, teacher_params = _layer_distillation_setup(arch)
  plain, *_ = _layer_distillation_setup(arch, hidden_weight=0.0, attention_weight=0.0)
  final = {}
  for name, step in (("plain", plain), ("distilled", distilling)):
    state = jax.tree.map(jnp.copy, start)
    for i in range(30):
      state, metrics = step(state, batch, jax.random.key(i), teacher_params)
    final[name] = distilling(state, batch, jax.random.key(99), teacher_params)[1]
  assert set(metrics) >= {"hidden_loss", "attention_loss"}
  assert "hidden_loss" not in plain(start, batch, jax.random.key(0), teacher_params)[1]
  for loss in ("hidden_loss", "attention_loss"):
    assert float(final["distilled"][loss]) < 0.5 * float(final["plain"][loss]), loss
