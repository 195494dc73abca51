"""What a latency was measured on: the runtime settings a cost table is only valid for."""

from __future__ import annotations

import dataclasses
import importlib.metadata
from typing import Any, Mapping

from configs import quantization
from configs.runtimes import RUNTIMES

# "tflite": LiteRT's Interpreter (XNNPACK); "compiled": LiteRT's CompiledModel API, on its CPU
# accelerator or, with a compiler plugin, AOT-compiled into DISPATCH_OP partitions that the
# vendor's dispatch library runs (latency_loss.plugins).
BACKENDS = ("tflite", "compiled", "xla", "android")
# models.tf_bert's, less int16x8 (LiteRT's CPU runs it on reference kernels: nothing to table).
PRECISIONS = ("fp32", "fp16", "int8", *quantization.RECIPES)

@dataclasses.dataclass(frozen=True)
class RuntimeSpec:
  """Runtime settings; two tables are comparable only when these are equal.

  Attributes:
    backend: "tflite" (LiteRT on this host), "xla" (jitted JAX on the current device) or
      "android" (LiteRT benchmark_model on a phone over adb).
    threads: CPU threads the runtime may use (pinned, never "auto").
    xnnpack: LiteRT's default XNNPACK delegate on/off.
    precision: "fp32", "fp16" (float16 weights) or "int8" (dynamic-range quantization).
    delegate: path of an external delegate library ("" = none).
    delegate_options: its options, as sorted (key, value) string pairs.
    plugin: "compiled" only: the compiler plugin that AOT-compiles the model ("intel_openvino",
      "qualcomm", "mediatek", "google_tensor"); "" = LiteRT's CPU accelerator.
    graph_backend: the plugin's device, where it has several (OpenVINO: "cpu", "gpu", "npu").
    soc_model: the SoC the plugin compiles for (e.g. "LNL", "SM8650").
  """
  backend: str = "tflite"
  threads: int = 2
  xnnpack: bool = True
  precision: str = "fp32"
  delegate: str = ""
  delegate_options: tuple[tuple[str, str], ...] = ()
  plugin: str = ""
  graph_backend: str = ""
  soc_model: str = ""

  def __post_init__(self):
    if self.backend not in BACKENDS:
      raise ValueError(f"RuntimeSpec.backend='{self.backend}' is not one of {BACKENDS}")
    if self.backend != "compiled" and (self.plugin or self.graph_backend or self.soc_model):
      raise ValueError(f"RuntimeSpec.plugin='{self.plugin}' needs backend='compiled', not "
                       f"'{self.backend}' (or pick a named runtime: {sorted(RUNTIMES)})")
    if not any(self.plugin == fields.get("plugin", "") for fields in RUNTIMES.values()):
      raise ValueError(f"RuntimeSpec.plugin='{self.plugin}' is not a known compiler plugin; "
                       f"named runtimes: {sorted(RUNTIMES)}")
    if self.precision not in PRECISIONS:
      raise ValueError(f"RuntimeSpec.precision='{self.precision}' is not one of {PRECISIONS}")
    if self.threads < 1:
      raise ValueError(f"RuntimeSpec.threads={self.threads} must be >= 1")
    options = self.delegate_options
    if isinstance(options, Mapping):
      options = options.items()
    object.__setattr__(self, "delegate_options",
                       tuple(sorted((str(k), str(v)) for k, v in options)))

  @property
  def name(self) -> str:
    """The runtime's name in configs/runtimes.py (e.g. "openvino"), for files and logs."""
    return next(name for name, fields in RUNTIMES.items()
                if (fields["backend"], fields.get("plugin", "")) == (self.backend, self.plugin))

  def quantization_facts(self) -> dict[str, str]:
    """A recipe precision's recipe (its file's hash) and quantizer version, recorded in a
    table's host facts and checked by `CostTable.check_compatible`; {} for the others."""
    if self.precision not in quantization.RECIPES:
      return {}
    return {"quantization_recipe": quantization.get_recipe(self.precision).identity(),
            "ai_edge_quantizer": importlib.metadata.version("ai-edge-quantizer")}

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["delegate_options"] = dict(self.delegate_options)
    return d

  @classmethod
  def from_config(cls, config: Mapping[str, Any]) -> "RuntimeSpec":
    """The runtime fields of a job's config (a cost-table config, or a search's `latency`);
    the config's other fields are ignored."""
    return cls(**{f.name: (dict(config[f.name]) if f.name == "delegate_options"
                           else config[f.name]) for f in dataclasses.fields(cls)})

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "RuntimeSpec":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ValueError(f"RuntimeSpec: unknown keys {unknown}; expected {sorted(known)}")
    return cls(**d)

  def mismatches(self, other: "RuntimeSpec") -> list[str]:
    """Names of the fields (as 'field: mine != other') that differ."""
    a, b = self.to_dict(), other.to_dict()
    return [f"{k}: {a[k]!r} != {b[k]!r}" for k in a if a[k] != b[k]]
