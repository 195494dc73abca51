"""The fine-tuning optimizer: weight decay on the right parameters, warm-up and decay."""

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from darts.training import finetune
from models import bert


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
