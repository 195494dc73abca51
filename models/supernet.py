"""Weight-sharing BERT supernet: the largest `BertClassifier` run under architecture probabilities.

Every architecture of a `SearchSpace` is a slice of the base model: the first `num_layers`
layers, the first `hidden_size` channels, the first `heads[i]` heads and `ffn[i]` FFN units of
layer i. The relaxed forward pass costs one pass of the base model whatever the number of choices
(see `../shared/DESIGN.md` and the module doc of `models.bert`):

  * heads and FFN units: a soft mask m_j = P(choice keeps unit j). Layer outputs are linear in
    the units, so this is the exact expectation over the choice;
  * hidden size: a probability-weighted mixture of LayerNorms over nested channel prefixes;
  * depth: the probability-weighted sum of the hidden states after each candidate depth.

With one-hot probabilities the supernet computes exactly what `extract_subnet` returns.
Architecture probabilities are a call argument, never module state (convention in
`models.search_space`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models import checkpoint
from models.bert import BertClassifier, BertConfig, HiddenMix, attention_bias
from models.search_space import Arch, SearchSpace

ArchProbs = dict[str, jax.Array]


def check_base_model(config: BertConfig, space: SearchSpace) -> None:
  """Raises ValueError unless `config` is the largest architecture of `space`."""
  largest = space.largest_arch()
  expected = {"num_layers": largest.num_layers, "hidden_size": largest.hidden_size,
              "num_heads": largest.heads, "intermediate_size": largest.ffn,
              "head_size": space.head_size}
  wrong = {k: (getattr(config, k), v) for k, v in expected.items() if getattr(config, k) != v}
  if wrong:
    raise ValueError(f"The model is not the base of search space '{space.name}': "
                     + ", ".join(f"{k} is {got}, the space needs {want}"
                                 for k, (got, want) in wrong.items()))


def nested_mask(probs: jax.Array, choices: tuple[int, ...], width: int) -> jax.Array:
  """P(unit j is kept) for nested choices: [..., n_choices] -> [..., width]."""
  keeps = np.arange(width)[None, :] < np.asarray(choices)[:, None]
  return probs @ jnp.asarray(keeps, probs.dtype)


def supernet_logits(model: BertClassifier, space: SearchSpace, probs: ArchProbs,
                    input_ids: jax.Array, attention_mask: jax.Array,
                    token_type_ids: jax.Array, *, deterministic: bool = True,
                    rngs: nnx.Rngs | None = None,
                    unit_scales: dict[str, jax.Array] | None = None) -> jax.Array:
  """Logits of the supernet under architecture probabilities `probs` ([batch, num_labels]).

  `unit_scales` ({"heads": [L, num_heads], "ffn": [L, intermediate]}) multiply the masks; their
  gradient at 1 is the importance of each head and unit (Michel et al., 2019; DynaBERT).
  """
  bert = model.bert
  config = bert.config
  hidden_mix = HiddenMix(space.hidden_choices, probs["hidden"])
  head_masks = nested_mask(probs["heads"], space.head_choices, space.head_choices[-1])
  unit_masks = nested_mask(probs["ffn"], space.ffn_choices, space.ffn_choices[-1])
  if unit_scales is not None:
    head_masks, unit_masks = head_masks * unit_scales["heads"], unit_masks * unit_scales["ffn"]
  x = bert.embeddings(input_ids, token_type_ids, hidden_mix=hidden_mix,
                      deterministic=deterministic, rngs=rngs)
  bias = attention_bias(attention_mask, x.dtype)
  depth_prob = dict(zip(space.depth_choices, probs["depth"]))
  mixed = jnp.zeros_like(x)
  for i, layer in enumerate(bert.layers):
    x, _ = layer(x, bias, head_mask=head_masks[i], unit_mask=unit_masks[i],
                 hidden_mix=hidden_mix, deterministic=deterministic, rngs=rngs)
    if i + 1 in depth_prob:
      mixed = mixed + depth_prob[i + 1] * x
  # Pooler channels beyond the hidden size would see a bias and weights the subnet does not have.
  channel_mask = nested_mask(probs["hidden"], space.hidden_choices, config.hidden_size)
  pooled = jnp.tanh(bert.pooler(mixed[:, 0])) * channel_mask
  pooled = model.dropout(pooled, deterministic=deterministic, rngs=rngs)
  return model.classifier(pooled)


def subnet_config(base: BertConfig, arch: Arch) -> BertConfig:
  return BertConfig(**{**base.to_dict(), "num_layers": arch.num_layers,
                       "hidden_size": arch.hidden_size, "num_heads": arch.heads,
                       "intermediate_size": arch.ffn})


def _subnet_slices(name: str, arch: Arch, head_size: int) -> tuple[slice, ...] | None:
  """How to slice the Hugging Face tensor `name` (torch layout) for `arch`; None drops it."""
  c = slice(arch.hidden_size)
  if name.startswith("bert.encoder.layer."):
    layer = int(name.split(".")[3])
    if layer >= arch.num_layers:
      return None
    inner, ffn = slice(arch.heads[layer] * head_size), slice(arch.ffn[layer])
    rules = {"attention.self.": (inner, c), "attention.output.dense.": (c, inner),
             "intermediate.dense.": (ffn, c), "output.dense.": (c, ffn)}
    for part, (rows, cols) in rules.items():
      if f".{part}" in name:
        return (rows, cols) if name.endswith("weight") else (rows,)
    return (c,)  # The two LayerNorms.
  if "_embeddings." in name:
    return (slice(None), c)
  if name.startswith("classifier."):
    return (slice(None), c) if name.endswith("weight") else (slice(None),)
  return (c, c) if name.endswith("dense.weight") else (c,)  # Pooler, embedding LayerNorm.


def extract_subnet(model: BertClassifier, space: SearchSpace, arch: Arch) -> BertClassifier:
  """A standalone `BertClassifier` of `arch` holding the supernet's sliced weights."""
  check_base_model(model.bert.config, space)
  arch.validate(space)
  weights = {}
  for name, value in checkpoint.model_weights(model).items():
    slices = _subnet_slices(name, arch, space.head_size)
    if slices is not None:
      weights[name] = value[slices]
  subnet = BertClassifier(subnet_config(model.bert.config, arch), model.num_labels,
                          rngs=nnx.Rngs(0))
  checkpoint.load_weights(subnet, weights, source="supernet slice")
  return subnet


def _permute(variable: nnx.Variable, order: np.ndarray, axis: int) -> None:
  variable.set_value(jnp.take(variable[...], order, axis=axis))


def reorder_units(model: BertClassifier, head_order: np.ndarray, unit_order: np.ndarray) -> None:
  """Permutes every layer's heads and FFN units in place; the function computed is unchanged.

  Args:
    model: the base model.
    head_order: [num_layers, num_heads], new position -> old head index (most important first,
      so that the narrow nested slices keep the most useful heads: DynaBERT's rewiring).
    unit_order: [num_layers, intermediate_size], the same for FFN units.
  """
  head_size = model.bert.config.head_size
  for layer, heads, units in zip(model.bert.layers, head_order, unit_order):
    columns = (np.asarray(heads)[:, None] * head_size + np.arange(head_size)).reshape(-1)
    for dense in (layer.attention.query, layer.attention.key, layer.attention.value):
      _permute(dense.kernel, columns, axis=1)
      _permute(dense.bias, columns, axis=0)
    _permute(layer.attention.output.kernel, columns, axis=0)
    _permute(layer.ffn.intermediate.kernel, np.asarray(units), axis=1)
    _permute(layer.ffn.intermediate.bias, np.asarray(units), axis=0)
    _permute(layer.ffn.output.kernel, np.asarray(units), axis=0)
