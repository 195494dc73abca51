"""TensorFlow graphs of BERT sub-networks, for TFLite conversion and latency measurement.

The cost table (latency_loss/) and the final export both build their graphs here, so a table
entry times exactly the graph that ships. Semantics are Hugging Face `BertModel` (post-LN):

  embeddings: LN(word[ids] + position[0..L-1] + token_type[type_ids]),  eps 1e-12
  layer:      x = LN(x + Dense(MHA(x, mask)));  x = LN(x + Dense(GELU_exact(Dense(x))))
  head:       logits = Dense(tanh(Dense(x[:, 0])))

Weights come as a dict of numpy arrays in Hugging Face BERT naming and torch layout
(`encoder.layer.0.attention.self.query.weight` is [out, in]); `None` means random weights,
which is all latency measurement needs. Shapes are static (batch, seq_len) and every tensor
has rank <= 4 so mobile delegates can take the whole graph.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping, Optional

import numpy as np
import tensorflow as tf

from configs import quantization
from models import quantize
from models.search_space import Arch, SearchSpace

LN_EPS = 1e-12
# Added to the attention scores of padding keys: exp(-100) is 4e-44, so padding gets no weight
# in float (scores stay far inside +-75). Not -1e9 or float32's min: full-integer quantization
# gives the biased scores one int8 scale, and a -1e9 range would round every real score to 0.
MASK_NEGATIVE = -100.0
MASK_VALUES = 2  # attention_mask: 0 = padding, 1 = token.
# fp32; fp16 (float16 weights, float32 compute on CPU); int8 (dynamic range: int8 weights,
# activations quantized on the fly); int16x8 (the converter's full-integer mode with int8 weights
# and int16 activations: accurate, for NPUs with 16-bit activations; LiteRT's CPU kernels for it
# are reference code, ~30x slower); and the recipes of configs/quantization.py (int8_full, mixed,
# mixed_int16), made from the fp32 model by ai-edge-quantizer. Both of the last kinds quantize
# activations with ranges calibrated on representative inputs (CALIBRATED).
INTEGER_OPS = {
    "int16x8": tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
}
PRECISIONS = ("fp32", "fp16", "int8", *INTEGER_OPS, *quantization.RECIPES)
CALIBRATED = (*INTEGER_OPS, *quantization.RECIPES)
# Random calibration inputs (`random_feeds`): enough for kernels and ranges of the right kind,
# which is all a latency measurement needs.
RANDOM_CALIBRATION_EXAMPLES = 4

Weights = Mapping[str, np.ndarray]
Getter = Callable[[str], tf.Tensor]


# ----------------------------------------------------------------------------- weight names


def embeddings_shapes(space: SearchSpace, hidden: int) -> dict[str, tuple[int, ...]]:
  """HF names and shapes of the embedding weights at width `hidden`."""
  return {
      "embeddings.word_embeddings.weight": (space.vocab_size, hidden),
      "embeddings.position_embeddings.weight": (space.max_position_embeddings, hidden),
      "embeddings.token_type_embeddings.weight": (space.type_vocab_size, hidden),
      "embeddings.LayerNorm.weight": (hidden,),
      "embeddings.LayerNorm.bias": (hidden,),
  }


def _dense_shapes(name: str, d_in: int, d_out: int) -> dict[str, tuple[int, ...]]:
  return {f"{name}.weight": (d_out, d_in), f"{name}.bias": (d_out,)}


def _ln_shapes(name: str, width: int) -> dict[str, tuple[int, ...]]:
  return {f"{name}.weight": (width,), f"{name}.bias": (width,)}


def layer_shapes(index: int, hidden: int, heads: int, ffn: int,
                 head_size: int) -> dict[str, tuple[int, ...]]:
  """HF names and shapes of encoder layer `index`'s weights."""
  p = f"encoder.layer.{index}"
  inner = heads * head_size
  shapes = {}
  for proj in ("query", "key", "value"):
    shapes.update(_dense_shapes(f"{p}.attention.self.{proj}", hidden, inner))
  shapes.update(_dense_shapes(f"{p}.attention.output.dense", inner, hidden))
  shapes.update(_ln_shapes(f"{p}.attention.output.LayerNorm", hidden))
  shapes.update(_dense_shapes(f"{p}.intermediate.dense", hidden, ffn))
  shapes.update(_dense_shapes(f"{p}.output.dense", ffn, hidden))
  shapes.update(_ln_shapes(f"{p}.output.LayerNorm", hidden))
  return shapes


def head_shapes(hidden: int, num_labels: int) -> dict[str, tuple[int, ...]]:
  """HF names and shapes of the pooler + classifier weights."""
  return {**_dense_shapes("pooler.dense", hidden, hidden),
          **_dense_shapes("classifier", hidden, num_labels)}


def arch_shapes(arch: Arch, space: SearchSpace) -> dict[str, tuple[int, ...]]:
  """HF names and shapes of every weight of `arch`."""
  shapes = embeddings_shapes(space, arch.hidden_size)
  for i, (a, f) in enumerate(zip(arch.heads, arch.ffn)):
    shapes.update(layer_shapes(i, arch.hidden_size, a, f, space.head_size))
  shapes.update(head_shapes(arch.hidden_size, space.num_labels))
  return shapes


def random_weights(shapes: Mapping[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
  """BERT-like random weights: N(0, 0.02) matrices and biases, LayerNorm gain near 1."""
  rng = np.random.default_rng(seed)
  out = {}
  for name, shape in shapes.items():
    w = rng.normal(0.0, 0.02, size=shape)
    if name.endswith("LayerNorm.weight"):
      w += 1.0
    out[name] = w.astype(np.float32)
  return out


def _select(weights: Optional[Weights], shapes: Mapping[str, tuple[int, ...]],
            seed: int) -> dict[str, np.ndarray]:
  """The weights named in `shapes`, checked; random when `weights` is None.

  A leading "bert." (as in HF `BertForSequenceClassification` checkpoints) is accepted.
  """
  if weights is None:
    return random_weights(shapes, seed)
  weights = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in weights.items()}
  missing = sorted(set(shapes) - set(weights))
  if missing:
    raise ValueError(f"weights lack {len(missing)} tensors, e.g. {missing[:5]}")
  out = {}
  for name, shape in shapes.items():
    w = np.asarray(weights[name], np.float32)
    if w.shape != tuple(shape):
      raise ValueError(f"weight '{name}' has shape {w.shape}, expected {tuple(shape)}")
    out[name] = w
  return out


# ------------------------------------------------------------------------------------- math


def _dense(x: tf.Tensor, w: Getter, name: str) -> tf.Tensor:
  """x [N, in] -> [N, out]; lowers to one TFLite FULLY_CONNECTED, named `<name>/...` in the
  .tflite so that recipes can select it (the projections into the residual stream need int16
  outputs, configs/quantization.py)."""
  with tf.name_scope(name):
    return tf.matmul(x, w(f"{name}.weight"), transpose_b=True) + w(f"{name}.bias")


def _layer_norm(x: tf.Tensor, w: Getter, name: str, residual: tf.Tensor | None = None
                ) -> tf.Tensor:
  """LN(x + residual). The scope names its tensors in the .tflite (`<name>/...`), the residual
  sum included: quantization recipes select them by it (configs/quantization.py), and the
  residual stream's outlier channels are what one int8 scale cannot hold."""
  with tf.name_scope(name):
    if residual is not None:
      x = x + residual
    # The centered input is computed once and squared by a MUL: SQUARED_DIFFERENCE has no int16
    # kernel in LiteRT, and sharing the SUB quantizes one tensor instead of two.
    centered = x - tf.reduce_mean(x, axis=-1, keepdims=True)
    var = tf.reduce_mean(centered * centered, axis=-1, keepdims=True)
    return centered * tf.math.rsqrt(var + LN_EPS) * w(f"{name}.weight") + w(f"{name}.bias")


def _mask_bias(attention_mask: tf.Tensor) -> tf.Tensor:
  """int [B, L] (1 = token, 0 = padding) -> additive float bias [B, 1, 1, L].

  A lookup in the table [MASK_NEGATIVE, 0] rather than a CAST: integer-activation converters
  (16x8) have no int-to-float CAST, and GATHER is one op where CAST, SUB and MUL were three.
  A RESHAPE, not a strided slice: XNNPACK takes reshapes, so the mask does not split the
  delegated graph.
  """
  batch, seq_len = attention_mask.shape
  bias = tf.gather(tf.constant([MASK_NEGATIVE, 0.0], tf.float32),
                   _in_range(attention_mask, MASK_VALUES))
  return tf.reshape(bias, [batch, 1, 1, seq_len])


def _in_range(indices: tf.Tensor, size: int) -> tf.Tensor:
  """Lookup indices clamped to [0, size): values outside (random benchmark inputs) stay valid.

  Benchmark tools fill int32 inputs with random values (TFLite's benchmark_model: 0..99,
  LiteRT's benchmark_litert_model: -128..127), which a GATHER rejects out of bounds. Real
  inputs are in range, so they are unchanged. The clamp is two elementwise int ops (MAXIMUM,
  MINIMUM) per input beside the lookup on the CPU; FLOOR_MOD would be one, but the 16x8
  quantizer refuses it.
  """
  return tf.clip_by_value(indices, 0, size - 1)


def input_ranges(space: SearchSpace) -> dict[str, list[int]]:
  """The valid [min, max] of each int32 model input (recorded in every model's metadata)."""
  return {"input_ids": [0, space.vocab_size - 1], "attention_mask": [0, MASK_VALUES - 1],
          "token_type_ids": [0, space.type_vocab_size - 1]}


def _embeddings(input_ids, token_type_ids, w: Getter, seq_len: int) -> tf.Tensor:
  p = "embeddings"
  words, types = w(f"{p}.word_embeddings.weight"), w(f"{p}.token_type_embeddings.weight")
  x = (tf.gather(words, _in_range(input_ids, words.shape[0]))
       + w(f"{p}.position_embeddings.weight")[:seq_len]
       + tf.gather(types, _in_range(token_type_ids, types.shape[0])))
  return _layer_norm(x, w, f"{p}.LayerNorm")


def _encoder_layer(x: tf.Tensor, mask_bias: tf.Tensor, w: Getter, index: int, heads: int,
                   head_size: int) -> tf.Tensor:
  """x [B, L, h] -> [B, L, h]. Dense layers run on [B*L, h] to map to FULLY_CONNECTED."""
  p = f"encoder.layer.{index}"
  batch, seq_len, hidden = x.shape
  x2 = tf.reshape(x, [batch * seq_len, hidden])

  def split_heads(t):  # [B*L, a*d] -> [B, a, L, d]
    return tf.transpose(tf.reshape(t, [batch, seq_len, heads, head_size]), [0, 2, 1, 3])

  # Scaling q rather than the scores multiplies L*a*d instead of a*L*L values.
  q = split_heads(_dense(x2, w, f"{p}.attention.self.query") * (1.0 / math.sqrt(head_size)))
  k = split_heads(_dense(x2, w, f"{p}.attention.self.key"))
  v = split_heads(_dense(x2, w, f"{p}.attention.self.value"))
  scores = tf.matmul(q, k, transpose_b=True) + mask_bias
  context = tf.matmul(tf.nn.softmax(scores, axis=-1), v)  # [B, a, L, d]
  context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch * seq_len, heads * head_size])
  x2 = _layer_norm(_dense(context, w, f"{p}.attention.output.dense"), w,
                   f"{p}.attention.output.LayerNorm", residual=x2)
  inner = tf.nn.gelu(_dense(x2, w, f"{p}.intermediate.dense"), approximate=False)
  x2 = _layer_norm(_dense(inner, w, f"{p}.output.dense"), w, f"{p}.output.LayerNorm", residual=x2)
  return tf.reshape(x2, [batch, seq_len, hidden])


def _head(x: tf.Tensor, w: Getter) -> tf.Tensor:
  batch, _, hidden = x.shape  # [CLS] by slice + reshape: XNNPACK takes both (not a shrink).
  pooled = tf.tanh(_dense(tf.reshape(x[:, :1, :], [batch, hidden]), w, "pooler.dense"))
  return _dense(pooled, w, "classifier")


# ---------------------------------------------------------------------------------- modules


class _WeightsModule(tf.Module):
  """Holds weights as tf.Variables; matrices stored as given ([out, in], transposed in use)."""

  def __init__(self, weights: Mapping[str, np.ndarray], name: str):
    super().__init__(name=name)
    # Variable names cannot contain dots in every TF API; keep the HF name as the dict key.
    self.variables_by_name = {k: tf.Variable(v, trainable=False, name=k.replace(".", "/"))
                              for k, v in weights.items()}

  def w(self, name: str) -> tf.Tensor:
    return self.variables_by_name[name]


def _int_spec(space: SearchSpace, name: str) -> tf.TensorSpec:
  return tf.TensorSpec([space.batch, space.seq_len], tf.int32, name=name)


def _hidden_spec(space: SearchSpace, hidden: int) -> tf.TensorSpec:
  return tf.TensorSpec([space.batch, space.seq_len, hidden], tf.float32, name="hidden")


def block_signature(kind: str, space: SearchSpace, hidden: int) -> list[tf.TensorSpec]:
  """Input signature of a block kind: "model", "embeddings", "layer" or "head"."""
  ids = lambda name: _int_spec(space, name)
  signatures = {
      "model": lambda: [ids("input_ids"), ids("attention_mask"), ids("token_type_ids")],
      "embeddings": lambda: [ids("input_ids"), ids("token_type_ids")],
      "layer": lambda: [_hidden_spec(space, hidden), ids("attention_mask")],
      "head": lambda: [_hidden_spec(space, hidden)],
  }
  if kind not in signatures:
    raise ValueError(f"block kind '{kind}' is not one of {sorted(signatures)}")
  return signatures[kind]()


class BertModule(_WeightsModule):
  """A whole architecture: (input_ids, attention_mask, token_type_ids) -> {"logits"}."""

  def __init__(self, arch: Arch, space: SearchSpace, weights: Optional[Weights] = None,
               seed: int = 0):
    arch.validate(space)
    super().__init__(_select(weights, arch_shapes(arch, space), seed), name="bert")
    self.arch, self.space = arch, space
    self.serve = tf.function(self._serve,
                             input_signature=block_signature("model", space, arch.hidden_size))

  def _serve(self, input_ids, attention_mask, token_type_ids):
    x = _embeddings(input_ids, token_type_ids, self.w, self.space.seq_len)
    bias = _mask_bias(attention_mask)
    for i, a in enumerate(self.arch.heads):
      x = _encoder_layer(x, bias, self.w, i, a, self.space.head_size)
    return {"logits": _head(x, self.w)}


class EmbeddingsModule(_WeightsModule):
  """The embeddings block: (input_ids, token_type_ids) -> {"hidden"} [B, L, h]."""

  def __init__(self, space: SearchSpace, hidden: int, weights: Optional[Weights] = None,
               seed: int = 0):
    super().__init__(_select(weights, embeddings_shapes(space, hidden), seed), name="embeddings")
    self.space = space
    self.serve = tf.function(self._serve,
                             input_signature=block_signature("embeddings", space, hidden))

  def _serve(self, input_ids, token_type_ids):
    return {"hidden": _embeddings(input_ids, token_type_ids, self.w, self.space.seq_len)}


class EncoderLayerModule(_WeightsModule):
  """Encoder layer `index`: (hidden [B, L, h] f32, attention_mask) -> {"hidden"}."""

  def __init__(self, space: SearchSpace, hidden: int, heads: int, ffn: int,
               weights: Optional[Weights] = None, index: int = 0, seed: int = 0):
    shapes = layer_shapes(index, hidden, heads, ffn, space.head_size)
    super().__init__(_select(weights, shapes, seed), name="encoder_layer")
    self.index, self.heads, self.space = index, heads, space
    self.serve = tf.function(self._serve,
                             input_signature=block_signature("layer", space, hidden))

  def _serve(self, hidden, attention_mask):
    return {"hidden": _encoder_layer(hidden, _mask_bias(attention_mask), self.w, self.index,
                                     self.heads, self.space.head_size)}


class HeadModule(_WeightsModule):
  """Pooler + classifier: (hidden [B, L, h] f32) -> {"logits"}."""

  def __init__(self, space: SearchSpace, hidden: int, weights: Optional[Weights] = None,
               seed: int = 0):
    super().__init__(_select(weights, head_shapes(hidden, space.num_labels), seed), name="head")
    self.serve = tf.function(self._serve, input_signature=block_signature("head", space, hidden))

  def _serve(self, hidden):
    return {"logits": _head(hidden, self.w)}


# ------------------------------------------------------------------------------- conversion


Feeds = Mapping[str, np.ndarray]


def random_feeds(module: tf.Module, count: int = RANDOM_CALIBRATION_EXAMPLES,
                 seed: int = 0) -> list[dict[str, np.ndarray]]:
  """`count` random inputs of a module's `serve` signature: int inputs 0 or 1 (a valid id,
  mask and token type in every space), float inputs standard normal (hidden states after a
  LayerNorm). Latency measurement calibrates full-integer blocks on these."""
  rng = np.random.default_rng(seed)
  specs = tf.nest.flatten(module.serve.get_concrete_function().structured_input_signature)
  return [{spec.name: (rng.integers(0, 2, spec.shape) if spec.dtype.is_integer
                       else rng.normal(size=spec.shape)).astype(spec.dtype.as_numpy_dtype)
           for spec in specs} for _ in range(count)]


def convert_to_tflite(module: tf.Module, precision: str = "fp32",
                      representative: Optional[Callable[[], Iterable[Feeds]]] = None) -> bytes:
  """Converts a module's `serve` function to a TFLite flatbuffer.

  Args:
    module: a module with a `serve` tf.function of fixed input signature (those above).
    precision: one of `PRECISIONS`.
    representative: `CALIBRATED` modes: yields the calibration inputs, one example each
      (default: `random_feeds`, for latency measurement). Inputs stay int32/float32 and
      outputs float32, so an app's I/O does not change with the precision.

  Returns:
    The flatbuffer; its single signature "serving_default" keeps the input/output names.
  """
  if precision not in PRECISIONS:
    raise ValueError(f"precision='{precision}' is not one of {PRECISIONS}")
  if precision in quantization.RECIPES:
    return quantize.quantize(convert_to_tflite(module), quantization.get_recipe(precision),
                             (representative or (lambda: random_feeds(module)))())
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [module.serve.get_concrete_function()], module)
  if precision != "fp32":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if precision == "fp16":
    converter.target_spec.supported_types = [tf.float16]
  if precision in INTEGER_OPS:
    converter.target_spec.supported_ops = [INTEGER_OPS[precision]]
    converter.representative_dataset = representative or (lambda: random_feeds(module))
  return converter.convert()
