"""The protocol every host latency backend implements, and the registry that makes one.

The table builder, the validator and the pipeline are typed against `LatencyBackend` only, so a
new runtime (a compiler plugin, another precision) is one new module here plus one registry
line, not edits across the package. Backends are imported on demand: an XLA job never loads
TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Protocol

from latency_loss.blocks import Block
from latency_loss.runtime import RuntimeSpec
from latency_loss.timing import Stats, TimingProtocol
from models.search_space import Arch, SearchSpace


class LatencyBackend(Protocol):
  """Times the blocks of a search space and whole architectures on one runtime.

  Constructed as `Backend(space, runtime, protocol)` (see `make_backend`).
  """

  def facts(self) -> dict[str, str]:
    """Versions and settings of the runtime, recorded in every table it builds."""

  def measure_block(self, block: Block) -> Stats:
    """The latency of one block (or null block) of the space, alone."""

  def measure_arch(self, arch: Arch, seed: int = 0) -> Stats:
    """The latency of a whole model of `arch` (random weights: latency does not need others)."""


# RuntimeSpec.backend -> "module:class" of the backends that time on this host. "android" runs
# on a phone over adb: its tables are built by latency_loss.backends.android from logs.
HOST_BACKENDS = {"tflite": "latency_loss.backends.tflite:TFLiteBackend",
                 "xla": "latency_loss.backends.xla:XLABackend"}


def make_backend(space: SearchSpace, runtime: RuntimeSpec,
                 protocol: TimingProtocol) -> LatencyBackend:
  """The backend of `runtime.backend`, imported on first use.

  Raises:
    ValueError: the runtime cannot be timed on this host (e.g. "android").
  """
  if runtime.backend not in HOST_BACKENDS:
    raise ValueError(f"backend '{runtime.backend}' cannot measure on this host; host backends: "
                     f"{sorted(HOST_BACKENDS)}")
  module, _, name = HOST_BACKENDS[runtime.backend].partition(":")
  return getattr(importlib.import_module(module), name)(space, runtime, protocol)
