"""XLA latency: the Flax blocks of `models/bert.py`, jitted on the current JAX device.

Runtime constraints: XLA's CPU thread pool uses every core, so `threads` must equal the
host's core count on CPU; there is no XNNPACK, delegate or weight precision here, so
`xnnpack=False`, `delegate=""` and `precision="fp32"` are required (a mismatch raises).
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from latency_loss.blocks import Block, context_arch
from latency_loss.runtime import RuntimeSpec
from latency_loss.timing import TimingProtocol
from models import bert
from models.search_space import Arch, SearchSpace


def _config(space: SearchSpace, hidden: int, heads: tuple[int, ...],
            ffn: tuple[int, ...]) -> bert.BertConfig:
  return bert.BertConfig(vocab_size=space.vocab_size, hidden_size=hidden,
                         num_layers=len(heads), num_heads=heads, head_size=space.head_size,
                         intermediate_size=ffn,
                         max_position_embeddings=space.max_position_embeddings,
                         type_vocab_size=space.type_vocab_size)


class _Head(nnx.Module):
  """Pooler + classifier on token 0, as `bert.BertClassifier` computes them."""

  def __init__(self, hidden: int, num_labels: int, rngs: nnx.Rngs):
    self.pooler = nnx.Linear(hidden, hidden, rngs=rngs)
    self.classifier = nnx.Linear(hidden, num_labels, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.classifier(jnp.tanh(self.pooler(x[:, 0])))


def _inputs(space: SearchSpace, hidden: int) -> dict[str, jax.Array]:
  rng = np.random.default_rng(0)
  shape = (space.batch, space.seq_len)
  return {"ids": jnp.asarray(rng.integers(0, space.vocab_size, shape), jnp.int32),
          "mask": jnp.ones(shape, jnp.int32), "types": jnp.zeros(shape, jnp.int32),
          "hidden": jnp.asarray(rng.normal(size=shape + (hidden,)), jnp.float32)}


def block_fn(block: Block, space: SearchSpace) -> tuple[Callable, tuple]:
  """A jitted function computing `block` (or its null block) and its arguments."""
  x = _inputs(space, block.hidden)
  rngs = nnx.Rngs(0)
  if block.null:  # the same inputs and outputs, one cheap op per output
    out_shape = {"model": (space.batch, space.num_labels), "head": (space.batch, space.num_labels)}
    shape = out_shape.get(block.kind, (space.batch, space.seq_len, block.hidden))
    args = {"model": (x["ids"], x["mask"], x["types"]), "embeddings": (x["ids"], x["types"]),
            "layer": (x["hidden"], x["mask"]), "head": (x["hidden"],)}[block.kind]
    return jax.jit(lambda *a: jnp.broadcast_to(a[0].ravel()[0].astype(jnp.float32), shape)), args
  if block.kind == "context":
    return _classifier_fn(context_arch(space, block), space, 0)
  if block.kind == "embeddings":
    module = bert.Embeddings(_config(space, block.hidden, (1,), (1,)), rngs=rngs)
    fn, args = (lambda m, ids, types: m(ids, types)), (x["ids"], x["types"])
  elif block.kind == "layer":
    module = bert.EncoderLayer(_config(space, block.hidden, (block.heads,), (block.ffn,)), 0,
                               rngs=rngs)
    fn = lambda m, h, mask: m(h, bert.attention_bias(mask))[0]  # The output, not the map.
    args = (x["hidden"], x["mask"])
  else:
    module, fn, args = _Head(block.hidden, space.num_labels, rngs), (lambda m, h: m(h)), (
        x["hidden"],)
  return _bind(module, fn), args


def _classifier_fn(arch: Arch, space: SearchSpace, seed: int) -> tuple[Callable, tuple]:
  """The jitted whole `bert.BertClassifier` of `arch` and its token inputs."""
  config = _config(space, arch.hidden_size, arch.heads, arch.ffn)
  model = bert.BertClassifier(config, space.num_labels, rngs=nnx.Rngs(seed))
  x = _inputs(space, arch.hidden_size)
  return _bind(model, lambda m, *a: m(*a)), (x["ids"], x["mask"], x["types"])


def _bind(module: nnx.Module, fn: Callable) -> Callable:
  """jit(fn) taking the weights as arguments, so XLA cannot fold them into constants."""
  graphdef, state = nnx.split(module)
  jitted = jax.jit(lambda state, *a: fn(nnx.merge(graphdef, state), *a))
  return lambda *a: jitted(state, *a)


class XLABackend:
  """Times jitted Flax blocks and whole architectures on the default JAX device."""

  name = "xla"

  def __init__(self, space: SearchSpace, runtime: RuntimeSpec, protocol: TimingProtocol):
    problems = []
    if runtime.backend != self.name:
      problems.append(f"backend='{runtime.backend}'")
    if runtime.xnnpack or runtime.delegate or runtime.precision != "fp32":
      problems.append("xnnpack/delegate/precision must be False/''/'fp32'")
    if jax.default_backend() == "cpu" and runtime.threads != os.cpu_count():
      problems.append(f"threads={runtime.threads} but XLA:CPU uses all {os.cpu_count()} cores")
    if problems:
      raise ValueError("XLABackend: unsupported RuntimeSpec: " + "; ".join(problems))
    self.space, self.runtime, self.protocol = space, runtime, protocol

  def facts(self) -> dict[str, str]:
    device = jax.devices()[0]
    return {"jax_device": f"{device.platform}:{device.device_kind}"}

  def block_call(self, block: Block) -> Callable[[], object]:
    return _call(*block_fn(block, self.space))

  def arch_call(self, arch: Arch, seed: int = 0) -> Callable[[], object]:
    return _call(*_classifier_fn(arch, self.space, seed))


def _call(fn: Callable, args: tuple) -> Callable[[], object]:
  """One call, waited for: XLA dispatches asynchronously."""
  return lambda: jax.block_until_ready(fn(*args))
