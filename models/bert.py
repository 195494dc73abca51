"""BERT encoder in Flax NNX, numerically equal to Hugging Face's `BertModel`.

Any shape is allowed, including a different number of attention heads and FFN size in every layer
(the shape of a subnetwork extracted from the supernet). The layout is post-LayerNorm BERT:

    embeddings = LayerNorm(word[ids] + position[0..L) + token_type[types])
    per layer:   x = LayerNorm(x + Attention(x));  x = LayerNorm(x + FFN(x))
    pooler:      tanh(Dense(x[:, 0]))

Parameters are float32. Dropout is active only when `deterministic=False` and then draws from the
`dropout` stream of the `rngs` passed to the call, so a training step stays a pure function of
(params, batch, rng).

The layers also take optional relaxed widths, as call arguments (never module state), which is how
`models/supernet.py` runs this same code as a weight-sharing supernet: a soft mask over attention
heads, a soft mask over FFN units, and a `HiddenMix` that mixes LayerNorms over nested prefixes of
the hidden channels. With one-hot widths the result equals the sliced smaller BERT.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

GELU_VARIANTS = ("erf", "tanh")


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Shape and regularization of a BERT encoder.

  `num_heads` and `intermediate_size` take one int for every layer or a tuple with one entry per
  layer; they are stored as tuples. `head_size` is independent of `hidden_size`, so narrowing the
  heads of a layer does not change its hidden size.
  """

  vocab_size: int = 30522
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int | tuple[int, ...] = 12
  head_size: int = 64
  intermediate_size: int | tuple[int, ...] = 3072
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout: float = 0.1
  attention_dropout: float = 0.1
  gelu: str = "erf"
  pad_token_id: int = 0

  def __post_init__(self):
    for name in ("num_heads", "intermediate_size"):
      value = getattr(self, name)
      per_layer = (value,) * self.num_layers if isinstance(value, int) else tuple(value)
      if len(per_layer) != self.num_layers:
        raise ValueError(
            f"BertConfig.{name} has {len(per_layer)} entries but num_layers={self.num_layers}.")
      if any(v <= 0 for v in per_layer):
        raise ValueError(f"BertConfig.{name} must be positive, got {per_layer}.")
      object.__setattr__(self, name, per_layer)
    if self.gelu not in GELU_VARIANTS:
      raise ValueError(f"BertConfig.gelu must be one of {GELU_VARIANTS}, got {self.gelu!r}.")
    for name in ("vocab_size", "hidden_size", "num_layers", "head_size",
                 "max_position_embeddings", "type_vocab_size"):
      if getattr(self, name) <= 0:
        raise ValueError(f"BertConfig.{name} must be positive, got {getattr(self, name)}.")

  def to_dict(self) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()}

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> "BertConfig":
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ValueError(f"Unknown BertConfig keys: {sorted(unknown)}.")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


COMPUTE_DTYPES = ("float32", "bfloat16")


def compute_view(params: Any, compute_dtype: str) -> Any:
  """Floating parameters cast to the compute dtype; the float32 masters stay untouched.

  Call inside the loss function: gradients flow back through the cast to the float32 masters,
  so bfloat16 matmuls on TPU/GPU do not cost optimizer precision.
  """
  if compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}.")
  if compute_dtype == "float32":
    return params
  dtype = jnp.dtype(compute_dtype)
  return jax.tree.map(lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p,
                      params)


class BertOutput(NamedTuple):
  last_hidden_state: jax.Array  # [batch, length, hidden]
  pooled_output: jax.Array  # [batch, hidden]
  # With `internals=True` only (layer distillation): the embeddings' output and every layer's,
  # and every layer's attention probabilities [batch, heads, query, key].
  hidden_states: tuple[jax.Array, ...] = ()
  attentions: tuple[jax.Array, ...] = ()


def _dense(in_features: int, out_features: int, rngs: nnx.Rngs) -> nnx.Linear:
  # BERT's initializer (truncation aside): N(0, 0.02) kernels, zero biases.
  return nnx.Linear(in_features, out_features,
                    kernel_init=nnx.initializers.normal(0.02), rngs=rngs)


def _embed(num: int, features: int, rngs: nnx.Rngs) -> nnx.Embed:
  return nnx.Embed(num, features, embedding_init=nnx.initializers.normal(0.02), rngs=rngs)


def gelu(x: jax.Array, variant: str) -> jax.Array:
  """BERT's GELU: exact (erf) by default, the tanh approximation on request."""
  return jax.nn.gelu(x, approximate=(variant == "tanh"))


@dataclasses.dataclass(frozen=True)
class HiddenMix:
  """A relaxed global hidden size: LayerNorm over the first `sizes[k]` channels, weight `probs[k]`.

  Deliberately not a pytree: `sizes` must stay static under jit, so build it inside the traced
  function from the search space and pass only `probs` through jit boundaries.
  """

  sizes: tuple[int, ...]
  probs: jax.Array


def normalize(norm: nnx.LayerNorm, x: jax.Array, hidden_mix: HiddenMix | None) -> jax.Array:
  """`norm(x)`, or the probability-weighted mixture of LayerNorms over nested channel prefixes.

  Channels beyond a choice's size are zero in that choice's term, so with one-hot probabilities
  the following dense layers see exactly the inputs of the narrower model.
  """
  if hidden_mix is None:
    return norm(x)
  width = x.shape[-1]
  mixed = jnp.zeros_like(x)
  for size, prob in zip(hidden_mix.sizes, hidden_mix.probs):
    part = x[..., :size]
    mean = part.mean(-1, keepdims=True)
    var = jnp.square(part - mean).mean(-1, keepdims=True)
    y = ((part - mean) * jax.lax.rsqrt(var + norm.epsilon) * norm.scale[:size]
         + norm.bias[:size])
    mixed = mixed + prob * jnp.pad(y, [(0, 0)] * (x.ndim - 1) + [(0, width - size)])
  return mixed


def attention_bias(attention_mask: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
  """[batch, length] 0/1 mask -> additive bias [batch, 1, 1, length], as Hugging Face does."""
  keep = attention_mask[:, None, None, :].astype(dtype)
  return (1.0 - keep) * jnp.finfo(dtype).min


class Embeddings(nnx.Module):
  """Word + position + token-type embeddings, then LayerNorm and dropout."""

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    self.word_embeddings = _embed(config.vocab_size, config.hidden_size, rngs)
    self.position_embeddings = _embed(config.max_position_embeddings, config.hidden_size, rngs)
    self.token_type_embeddings = _embed(config.type_vocab_size, config.hidden_size, rngs)
    self.layer_norm = nnx.LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps, rngs=rngs)
    self.dropout = nnx.Dropout(config.hidden_dropout)

  def __call__(self, input_ids: jax.Array, token_type_ids: jax.Array, *,
               hidden_mix: HiddenMix | None = None, deterministic: bool = True,
               rngs: nnx.Rngs | None = None) -> jax.Array:
    positions = jnp.arange(input_ids.shape[-1])
    x = (self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
         + self.token_type_embeddings(token_type_ids))
    x = normalize(self.layer_norm, x, hidden_mix)
    return self.dropout(x, deterministic=deterministic, rngs=rngs)


class SelfAttention(nnx.Module):
  """Multi-head self-attention with output projection, residual and LayerNorm."""

  def __init__(self, config: BertConfig, num_heads: int, *, rngs: nnx.Rngs):
    self.num_heads = num_heads
    self.head_size = config.head_size
    inner = num_heads * config.head_size
    self.query = _dense(config.hidden_size, inner, rngs)
    self.key = _dense(config.hidden_size, inner, rngs)
    self.value = _dense(config.hidden_size, inner, rngs)
    self.output = _dense(inner, config.hidden_size, rngs)
    self.layer_norm = nnx.LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps, rngs=rngs)
    self.attention_dropout = nnx.Dropout(config.attention_dropout)
    self.output_dropout = nnx.Dropout(config.hidden_dropout)

  def __call__(self, x: jax.Array, bias: jax.Array, *, head_mask: jax.Array | None = None,
               hidden_mix: HiddenMix | None = None, deterministic: bool = True,
               rngs: nnx.Rngs | None = None) -> tuple[jax.Array, jax.Array]:
    """Returns the output and the attention probabilities (before dropout).

    `head_mask` [num_heads] scales each head's output (a soft head count).
    """
    batch, length, _ = x.shape
    split = lambda t: t.reshape(batch, length, self.num_heads, self.head_size)
    q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(self.head_size) + bias
    attention = jax.nn.softmax(scores, axis=-1)
    probs = self.attention_dropout(attention, deterministic=deterministic, rngs=rngs)
    context = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
    if head_mask is not None:
      context = context * head_mask[:, None]
    out = self.output(context.reshape(batch, length, -1))
    out = self.output_dropout(out, deterministic=deterministic, rngs=rngs)
    return normalize(self.layer_norm, x + out, hidden_mix), attention


class FeedForward(nnx.Module):
  """Dense -> GELU -> Dense, with residual and LayerNorm."""

  def __init__(self, config: BertConfig, intermediate_size: int, *, rngs: nnx.Rngs):
    self.gelu_variant = config.gelu
    self.intermediate = _dense(config.hidden_size, intermediate_size, rngs)
    self.output = _dense(intermediate_size, config.hidden_size, rngs)
    self.layer_norm = nnx.LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps, rngs=rngs)
    self.dropout = nnx.Dropout(config.hidden_dropout)

  def __call__(self, x: jax.Array, *, unit_mask: jax.Array | None = None,
               hidden_mix: HiddenMix | None = None, deterministic: bool = True,
               rngs: nnx.Rngs | None = None) -> jax.Array:
    """`unit_mask` [intermediate_size] scales each FFN unit (a soft FFN size)."""
    h = gelu(self.intermediate(x), self.gelu_variant)
    if unit_mask is not None:
      h = h * unit_mask
    out = self.dropout(self.output(h), deterministic=deterministic, rngs=rngs)
    return normalize(self.layer_norm, x + out, hidden_mix)


class EncoderLayer(nnx.Module):
  """One transformer layer; its width comes from `config` at `layer_index`."""

  def __init__(self, config: BertConfig, layer_index: int, *, rngs: nnx.Rngs):
    self.attention = SelfAttention(config, config.num_heads[layer_index], rngs=rngs)
    self.ffn = FeedForward(config, config.intermediate_size[layer_index], rngs=rngs)

  def __call__(self, x: jax.Array, bias: jax.Array, *, head_mask: jax.Array | None = None,
               unit_mask: jax.Array | None = None, hidden_mix: HiddenMix | None = None,
               deterministic: bool = True, rngs: nnx.Rngs | None = None
               ) -> tuple[jax.Array, jax.Array]:
    """Returns the layer's output and its attention probabilities."""
    x, attention = self.attention(x, bias, head_mask=head_mask, hidden_mix=hidden_mix,
                                  deterministic=deterministic, rngs=rngs)
    return self.ffn(x, unit_mask=unit_mask, hidden_mix=hidden_mix, deterministic=deterministic,
                    rngs=rngs), attention


class BertModel(nnx.Module):
  """The BERT encoder with its pooler."""

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.embeddings = Embeddings(config, rngs=rngs)
    self.layers = nnx.List([EncoderLayer(config, i, rngs=rngs)
                            for i in range(config.num_layers)])
    self.pooler = _dense(config.hidden_size, config.hidden_size, rngs)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
               token_type_ids: jax.Array | None = None, *, deterministic: bool = True,
               rngs: nnx.Rngs | None = None, internals: bool = False) -> BertOutput:
    """Encodes a batch.

    Args:
      input_ids: [batch, length] int token ids.
      attention_mask: [batch, length], 1 for real tokens and 0 for padding.
      token_type_ids: [batch, length] segment ids; zeros when None.
      deterministic: disables dropout.
      rngs: must hold a `dropout` stream when `deterministic` is False.
      internals: also return every hidden state and attention map (layer distillation).

    Returns:
      The last hidden states and the pooled [CLS] representation (and the internals).
    """
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    x = self.embeddings(input_ids, token_type_ids, deterministic=deterministic, rngs=rngs)
    bias = attention_bias(attention_mask, x.dtype)
    hidden_states, attentions = [x], []
    for layer in self.layers:
      x, attention = layer(x, bias, deterministic=deterministic, rngs=rngs)
      hidden_states.append(x)
      attentions.append(attention)
    pooled = jnp.tanh(self.pooler(x[:, 0]))
    if not internals:
      return BertOutput(x, pooled)
    return BertOutput(x, pooled, tuple(hidden_states), tuple(attentions))


class BertClassifier(nnx.Module):
  """BERT with a sequence classification head (or regression when `num_labels == 1`)."""

  def __init__(self, config: BertConfig, num_labels: int, *, rngs: nnx.Rngs):
    if num_labels < 1:
      raise ValueError(f"num_labels must be >= 1 (1 means regression), got {num_labels}.")
    self.num_labels = num_labels
    self.bert = BertModel(config, rngs=rngs)
    self.dropout = nnx.Dropout(config.hidden_dropout)
    self.classifier = _dense(config.hidden_size, num_labels, rngs)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
               token_type_ids: jax.Array | None = None, *, deterministic: bool = True,
               rngs: nnx.Rngs | None = None, internals: bool = False
               ) -> jax.Array | tuple[jax.Array, BertOutput]:
    """Returns logits [batch, num_labels] (regression: [batch, 1]); with `internals`, also the
    encoder's output with every hidden state and attention map. Args as `BertModel`."""
    encoded = self.bert(input_ids, attention_mask, token_type_ids,
                        deterministic=deterministic, rngs=rngs, internals=internals)
    pooled = self.dropout(encoded.pooled_output, deterministic=deterministic, rngs=rngs)
    logits = self.classifier(pooled)
    return (logits, encoded) if internals else logits
