"""LiteRT (TFLite) latency on this host, through `ai_edge_litert`'s signature runner."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.metadata
import os
import tempfile
from typing import Callable, Mapping

import numpy as np
import tensorflow as tf
from ai_edge_litert import interpreter as litert

from latency_loss.blocks import Block, context_arch
from latency_loss.runtime import RuntimeSpec
from latency_loss.timing import Stats, TimingProtocol, time_interleaved
from models import tf_bert
from models.search_space import Arch, SearchSpace


class _NullModule(tf.Module):
  """The cheapest graph with a block's signature: measures invocation and I/O overhead.

  Each output depends on the inputs (so nothing is constant-folded away) through one
  elementwise op that XNNPACK takes, a few microseconds of compute.
  """

  def __init__(self, block: Block, space: SearchSpace):
    super().__init__(name="null")
    ones = tf.ones([block.hidden])

    def embeddings(input_ids, token_type_ids):
      return {"hidden": tf.cast(input_ids + token_type_ids, tf.float32)[..., tf.newaxis] * ones}

    def layer(hidden, attention_mask):
      return {"hidden": hidden + tf.cast(attention_mask, tf.float32)[..., tf.newaxis]}

    def head(hidden):
      return {"logits": hidden[:, 0, :space.num_labels] * 2.0}

    def model(input_ids, attention_mask, token_type_ids):
      summed = tf.cast(input_ids + attention_mask + token_type_ids, tf.float32)
      return {"logits": summed[:, :space.num_labels] * 2.0}

    fn = {"embeddings": embeddings, "layer": layer, "head": head, "model": model}[block.kind]
    self.serve = tf.function(
        fn, input_signature=tf_bert.block_signature(block.kind, space, block.hidden))


def build_module(block: Block, space: SearchSpace) -> tf.Module:
  """The TF module of `block` (random weights), or of its null counterpart."""
  h = block.hidden
  if block.null:
    return _NullModule(block, space)
  if block.kind == "embeddings":
    return tf_bert.EmbeddingsModule(space, h)
  if block.kind == "layer":
    return tf_bert.EncoderLayerModule(space, h, block.heads, block.ffn)
  if block.kind == "context":
    return tf_bert.BertModule(context_arch(space, block), space)
  return tf_bert.HeadModule(space, h)


# The entry points of LiteRT's external delegate ABI, which `load_delegate` looks up.
DELEGATE_SYMBOLS = ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate")


def load_delegate(runtime: RuntimeSpec) -> litert.Delegate:
  """The runtime's external delegate library, loaded with its options.

  Raises:
    ValueError: naming the library and why: it does not load, it is not a delegate (it lacks
      the ABI's symbols), or the delegate refused its options.
  """
  cannot = (f"--config.delegate: cannot load the delegate library '{runtime.delegate}' with "
            f"options {dict(runtime.delegate_options)}")
  try:
    library = ctypes.CDLL(runtime.delegate)
  except OSError as e:
    raise ValueError(f"{cannot}: {e}") from None
  missing = [s for s in DELEGATE_SYMBOLS if not hasattr(library, s)]
  if missing:  # LiteRT would raise a bare AttributeError, twice.
    raise ValueError(f"{cannot}: it is not a TFLite external delegate (it does not export "
                     f"{missing}).")
  try:
    return litert.load_delegate(runtime.delegate, dict(runtime.delegate_options))
  except (OSError, ValueError, RuntimeError) as e:
    raise ValueError(f"{cannot}: {e}") from None


def make_interpreter(model: bytes, runtime: RuntimeSpec) -> litert.Interpreter:
  """An interpreter configured exactly as `runtime` says (threads, XNNPACK, delegate)."""
  delegates = [load_delegate(runtime)] if runtime.delegate else None
  resolver = (litert.OpResolverType.AUTO if runtime.xnnpack
              else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
  return litert.Interpreter(model_content=model, num_threads=runtime.threads,
                            experimental_delegates=delegates,
                            experimental_op_resolver_type=resolver)


def random_inputs(details: Mapping[str, Mapping], space: SearchSpace,
                  seed: int = 0) -> dict[str, np.ndarray]:
  """Valid random feeds for every input of a signature (ids < vocab, all-ones mask), from its
  input details ({name: {"shape", "dtype"}}, as the Interpreter's signature runner and LiteRT's
  CompiledModel give them)."""
  rng = np.random.default_rng(seed)
  feeds = {}
  for name, detail in details.items():
    shape, dtype = detail["shape"], detail["dtype"]
    if name == "input_ids":
      feeds[name] = rng.integers(0, space.vocab_size, shape).astype(dtype)
    elif name == "attention_mask":
      feeds[name] = np.ones(shape, dtype)
    elif name == "token_type_ids":
      feeds[name] = np.zeros(shape, dtype)
    else:
      feeds[name] = rng.normal(size=shape).astype(dtype)
  return feeds


def model_call(model: bytes, space: SearchSpace, runtime: RuntimeSpec) -> Callable[[], object]:
  """One full signature-runner call of `model` (set inputs, invoke, read outputs)."""
  runner = make_interpreter(model, runtime).get_signature_runner()
  return functools.partial(runner, **random_inputs(runner.get_input_details(), space))


class TFLiteBackend:
  """Builds, converts and times blocks and whole architectures with LiteRT."""

  name = "tflite"

  def __init__(self, space: SearchSpace, runtime: RuntimeSpec, protocol: TimingProtocol):
    if runtime.backend != self.name:
      raise ValueError(f"{type(self).__name__} got RuntimeSpec.backend='{runtime.backend}'")
    self.space, self.runtime, self.protocol = space, runtime, protocol
    # Whole-model flatbuffers, kept on disk: validation times each architecture in several
    # rounds, and converting a model costs more than timing it.
    self._arch_dir = tempfile.TemporaryDirectory(prefix="canao_tflite_")

  def facts(self) -> dict[str, str]:
    return {"litert": importlib.metadata.version("ai-edge-litert"), "tensorflow": tf.__version__,
            **self.runtime.quantization_facts()}

  def convert(self, module: tf.Module) -> bytes:
    return tf_bert.convert_to_tflite(module, self.runtime.precision)

  def model_call(self, model: bytes) -> Callable[[], object]:
    """One full call of a converted model on this backend's runtime."""
    return model_call(model, self.space, self.runtime)

  def time_models(self, models: Mapping[str, bytes]) -> dict[str, Stats]:
    """Times one full call of each model, interleaved (`timing.time_interleaved`: their ratios
    hold if the machine's speed changes)."""
    return time_interleaved({name: self.model_call(model) for name, model in models.items()},
                            self.protocol)

  def block_call(self, block: Block) -> Callable[[], object]:
    return self.model_call(self.convert(build_module(block, self.space)))

  def arch_model(self, arch: Arch, seed: int = 0) -> bytes:
    """The whole model of `arch` with random weights (converted once per backend, then reused)."""
    name = hashlib.sha1(f"{arch.to_json()} {seed}".encode()).hexdigest()
    path = os.path.join(self._arch_dir.name, name + ".tflite")
    if not os.path.exists(path):
      with open(path, "wb") as f:
        f.write(self.convert(tf_bert.BertModule(arch, self.space, seed=seed)))
    with open(path, "rb") as f:
      return f.read()

  def arch_call(self, arch: Arch, seed: int = 0) -> Callable[[], object]:
    return self.model_call(self.arch_model(arch, seed))
