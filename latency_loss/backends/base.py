"""The protocol every host latency backend implements, and the registry that makes one.

The table builder, the validator and the pipeline are typed against `LatencyBackend` only, so a
new runtime (a compiler plugin, another precision) is one new module here plus one registry
line, not edits across the package. Backends are imported on demand: an XLA job never loads
TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping, Protocol

from latency_loss.blocks import Block
from latency_loss.runtime import RuntimeSpec
from latency_loss.timing import Reference, Stats, TimingProtocol, time_callable, time_relative
from models.search_space import Arch, SearchSpace


class LatencyBackend(Protocol):
  """Prepares the blocks of a search space and whole architectures for timing on one runtime.

  Constructed as `Backend(space, runtime, protocol)` (see `make_backend`). A backend compiles and
  loads; `measure` times, the same way for every backend (alone, or against a reference).
  """

  def facts(self) -> dict[str, str]:
    """Versions and settings of the runtime, recorded in every table it builds."""

  def block_call(self, block: Block) -> Callable[[], object]:
    """One complete call (inputs in, outputs out) of a block (or null block) of the space."""

  def arch_call(self, arch: Arch, seed: int = 0) -> Callable[[], object]:
    """One complete call of a whole model of `arch` (random weights: latency needs no others)."""


def measure(call: Callable[[], object], protocol: TimingProtocol,
            reference: Reference | None = None) -> Stats:
  """The latency of `call`: against `reference` when given (`timing.time_relative`: in its
  quiet units; the machine's speed levels cancel), else alone (`timing.time_callable`)."""
  if reference is None:
    return time_callable(call, protocol)
  return time_relative(call, reference, protocol)


def table_reference(host: Mapping[str, Any], backend: LatencyBackend) -> Reference | None:
  """The reference a table's entries were timed against (`host["reference"]`), ready to time
  against again; None for tables timed without one (phones, older tables)."""
  recorded = host.get("reference")
  if not recorded:
    return None
  return Reference(backend.block_call(Block(**recorded["block"])), recorded["quiet_ms"])


# RuntimeSpec.backend -> "module:class" of the backends that time on this host. "android" runs
# on a phone over adb: its tables are built by latency_loss.backends.android from logs.
HOST_BACKENDS = {"tflite": "latency_loss.backends.tflite:TFLiteBackend",
                 "compiled": "latency_loss.backends.compiled:CompiledBackend",
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
