"""LiteRT compiler plugins: AOT-compile a .tflite for a vendor compiler, and check the result.

A compiler plugin (shipped in ai-edge-litert under `vendors/<vendor>/compiler`) replaces the
part of a graph it supports with `DISPATCH_OP` partitions holding the vendor's compiled code;
the vendor's dispatch library (`vendors/<vendor>/dispatch`) runs them under LiteRT's
`CompiledModel` API (latency_loss.backends.compiled). Intel's OpenVINO plugin and dispatch ship
in the wheel and, with the `openvino` package, compile for OpenVINO's CPU graph backend on any
x86 CPU. The other vendors' plugins need SDKs that their `ai-edge-litert-sdk-<vendor>` packages
download from the vendor at install time, and dispatch libraries that run on their phones.

Everything here fails with a `PluginError` naming the file and what to do.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import io
import json
import os
import pathlib
import tempfile
from typing import Any

from latency_loss.runtime import RuntimeSpec
from models import files, flatbuffer

DISPATCH_OP = "DISPATCH_OP"
STAMP_METADATA = "LiteRtStamp"  # (manufacturer, SoC model) of a compiled model.
OPENVINO_VERSION = "2026.3.1"  # The dispatch library links libopenvino.so.2631.
# Where compiled blocks are kept between builds ($CANAO_COMPILE_CACHE overrides): keyed by the
# model's bytes, the plugin's settings and the versions, so every entry stays valid.
DEFAULT_CACHE = pathlib.Path.home() / ".cache" / "canao" / "compiled"


class PluginError(ValueError):
  """A compiler plugin, its dispatch library, its SDK or a compiled model cannot be used."""


@dataclasses.dataclass(frozen=True)
class Plugin:
  """How to find and drive one vendor's compiler plugin.

  Attributes:
    vendor_dir: its directory under `ai_edge_litert/vendors/`.
    target_module: the `ai_edge_litert.aot.vendors` module with its `Target` and `SocModel`.
    sdk_module: the Python package that provides its SDK (checked before compiling).
    install: the command that installs that package.
  """
  vendor_dir: str
  target_module: str
  sdk_module: str
  install: str

  def compile_flags(self, runtime: RuntimeSpec) -> dict[str, str]:
    """Extra apply_plugin flags, from the runtime (OpenVINO's device)."""
    if self.vendor_dir == "intel_openvino" and runtime.graph_backend:
      return {"intel_openvino_graph_backends": runtime.graph_backend}
    return {}


PLUGINS = {
    "intel_openvino": Plugin("intel_openvino", "intel_openvino.target", "openvino",
                             f"pip install openvino=={OPENVINO_VERSION}"),
    "qualcomm": Plugin("qualcomm", "qualcomm.target", "ai_edge_litert_sdk_qualcomm",
                       "pip install ai-edge-litert-sdk-qualcomm (downloads the QNN SDK)"),
    "mediatek": Plugin("mediatek", "mediatek.target", "ai_edge_litert_sdk_mediatek",
                       "pip install ai-edge-litert-sdk-mediatek (downloads the NeuroPilot SDK)"),
    "google_tensor": Plugin("google_tensor", "google_tensor.target",
                            "ai_edge_litert_sdk_google_tensor",
                            "pip install ai-edge-litert-sdk-google-tensor (downloads its SDK)"),
}


def plugin_of(runtime: RuntimeSpec) -> Plugin:
  if runtime.plugin not in PLUGINS:
    raise PluginError(f"runtime.plugin='{runtime.plugin}' is not one of {sorted(PLUGINS)}")
  return PLUGINS[runtime.plugin]


def _vendors_dir() -> pathlib.Path:
  import ai_edge_litert  # pylint: disable=g-import-not-at-top
  return pathlib.Path(ai_edge_litert.__file__).parent / "vendors"


def library(runtime: RuntimeSpec, kind: str) -> pathlib.Path:
  """The plugin's "compiler" or "dispatch" library, checked to exist and load.

  Raises:
    PluginError: naming the file and why (absent, or a dependency of it does not load).
  """
  directory = _vendors_dir() / plugin_of(runtime).vendor_dir / kind
  found = sorted(directory.glob("lib*.so")) if directory.is_dir() else []
  if not found:
    raise PluginError(f"runtime '{runtime.plugin}': no {kind} library in {directory}; "
                      + ("the vendor's dispatch library runs on its devices and comes with its "
                         "SDK" if kind == "dispatch" else "reinstall ai-edge-litert==2.3.0"))
  try:
    ctypes.CDLL(str(found[0]))
  except OSError as e:
    raise PluginError(f"runtime '{runtime.plugin}': the {kind} library {found[0]} does not "
                      f"load ({e}); {plugin_of(runtime).install}") from None
  return found[0]


def check_available(runtime: RuntimeSpec) -> None:
  """The runtime's SDK, compiler plugin and dispatch library are all usable (else a
  `PluginError` naming the missing piece), checked before any long job starts."""
  check_sdk(runtime)
  library(runtime, "compiler")
  library(runtime, "dispatch")


def check_sdk(runtime: RuntimeSpec) -> None:
  """The plugin's SDK package is importable (for OpenVINO: the pinned `openvino`)."""
  plugin = plugin_of(runtime)
  if importlib.util.find_spec(plugin.sdk_module) is None:
    raise PluginError(f"runtime '{runtime.plugin}' needs the Python package "
                      f"'{plugin.sdk_module}', which is not installed: {plugin.install}")
  if plugin.sdk_module == "openvino":
    version = importlib.metadata.version("openvino")
    if version != OPENVINO_VERSION:
      raise PluginError(f"runtime '{runtime.plugin}': openvino {version} is installed, but "
                        f"ai-edge-litert's dispatch library links OpenVINO "
                        f"{OPENVINO_VERSION}: pip install openvino=={OPENVINO_VERSION}")


def versions(runtime: RuntimeSpec) -> dict[str, str]:
  """What a compiled model depends on: recorded in tables and reports, and in cache keys."""
  facts = {"litert": importlib.metadata.version("ai-edge-litert"), "plugin": runtime.plugin,
           "graph_backend": runtime.graph_backend, "soc_model": runtime.soc_model}
  sdk = plugin_of(runtime).sdk_module
  if importlib.util.find_spec(sdk) is not None:
    try:
      facts[sdk] = importlib.metadata.version(sdk.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
      facts[sdk] = "unknown"
  if sdk == "openvino" and runtime.graph_backend in ("", "cpu"):
    facts["openvino_float_precision"] = openvino_float_precision()
  return facts


def openvino_float_precision() -> str:
  """The precision OpenVINO's CPU plugin computes float layers in on this CPU.

  It is bfloat16 wherever the CPU has AVX512_BF16 or AMX, f32 elsewhere. Through LiteRT's
  dispatch it stays so: the compile flag `intel_openvino_configs_map=
  INFERENCE_PRECISION_HINT=f32` reaches the compiler (it logs it), but neither it, nor the
  runtime's configs_map, nor a process-wide Core property changes the dispatched results
  (matmuls off by ~2e-3 relative, as bfloat16; OpenVINO's own API with the hint: exact). So
  OpenVINO "fp32" tables and exports are what an fp32 model costs and computes on this
  compiler here, recorded with this fact.
  """
  import openvino  # pylint: disable=g-import-not-at-top
  return str(openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))


# ----------------------------------------------------------------------------- graph reading


def stamp(model: bytes) -> tuple[str, str] | None:
  """(SoC manufacturer, SoC model) a compiled model was compiled for; None if not compiled."""
  m = flatbuffer.read(model)
  for i in range(m.MetadataLength()):
    if m.Metadata(i).Name().decode() == STAMP_METADATA:
      data = bytes(m.Buffers(m.Metadata(i).Buffer()).DataAsNumpy())
      fields = [f.decode() for f in data.split(b"\0") if f]
      return fields[0], fields[1] if len(fields) > 1 else ""
  return None


def _target_module(runtime: RuntimeSpec) -> Any:
  """The plugin's `ai_edge_litert.aot.vendors` target module (its Target, SocModel, ...)."""
  return importlib.import_module(f"ai_edge_litert.aot.vendors.{plugin_of(runtime).target_module}")


def expected_stamp(runtime: RuntimeSpec) -> tuple[str, str]:
  target = _target_module(runtime)
  return target.SocManufacturer(next(iter(target.SocManufacturer))).value, runtime.soc_model


def check_stamp(model: bytes, runtime: RuntimeSpec, where: str) -> None:
  """`model` was compiled for `runtime`'s plugin and SoC.

  Raises:
    PluginError: naming `where`: not compiled, or compiled for another vendor or SoC.
  """
  found, expected = stamp(model), expected_stamp(runtime)
  if found is None:
    raise PluginError(f"{where} is not compiled by a compiler plugin (no {STAMP_METADATA}); "
                      f"compile it for runtime '{runtime.plugin}' first")
  if found != expected:
    raise PluginError(f"{where} was compiled for {found[0]} {found[1]}, not for runtime "
                      f"'{runtime.plugin}' ({expected[0]} {expected[1]}); compile it again "
                      "for this runtime")


def partition_report(original: bytes, compiled: bytes) -> dict[str, Any]:
  """What the plugin took: ops offloaded, DISPATCH_OP partitions, and the ops left on CPU."""
  before, after = flatbuffer.op_names(original), flatbuffer.op_names(compiled)
  left = collections.Counter(op for op in after if op != DISPATCH_OP)
  return {"ops": len(before), "offloaded_ops": len(before) - sum(left.values()),
          "partitions": after.count(DISPATCH_OP), "cpu_ops": dict(sorted(left.items())),
          "fully_offloaded": not left}


def require_full_offload(report: dict[str, Any], runtime: RuntimeSpec, what: str) -> None:
  """A partly offloaded model would time LiteRT's CPU kernels as the compiler's: refuse it."""
  if not report["fully_offloaded"]:
    raise PluginError(f"{what}: the '{runtime.plugin}' plugin left {sum(report['cpu_ops'].values())}"
                      f" of {report['ops']} ops on CPU ({report['cpu_ops']}); their latency "
                      "would be LiteRT's CPU kernels', not the compiler's")


def compiled_summary(result: dict[str, Any]) -> str:
  """One line on an export's "compiled" result: what the plugin offloaded (and left on CPU), and
  how the compiled model verified against JAX."""
  parts = []
  if "partition" in result:
    p = result["partition"]
    parts.append(f"{p['offloaded_ops']} of {p['ops']} ops offloaded in {p['partitions']} "
                 f"partition(s)" + (f", left on CPU: {p['cpu_ops']} (not written)"
                                    if p["cpu_ops"] else ""))
  if "metrics" in result:
    parts.append(" ".join(f"{k} {100 * v:.2f}" for k, v in result["metrics"].items())
                 + f" ({-100 * result['metric_drop']:+.2f} vs JAX), max |logit diff| "
                 f"{result['max_abs_diff']:.2e}" + (" LOSSY" if result.get("lossy") else ""))
  return f"compiled for {result['runtime']['plugin'] or 'litert_cpu'}: " + "; ".join(parts)


# ----------------------------------------------------------------------------- compiling


def _target(runtime: RuntimeSpec) -> Any:
  module = _target_module(runtime)
  try:
    soc = module.SocModel(runtime.soc_model)
  except ValueError:
    raise PluginError(f"runtime '{runtime.plugin}': soc_model='{runtime.soc_model}' is not one "
                      f"of {[s.value for s in module.SocModel]}") from None
  return module.Target(soc)


def compile_model(model: bytes, runtime: RuntimeSpec) -> tuple[bytes, dict[str, Any]]:
  """AOT-compiles `model` with the runtime's plugin: (compiled model, partition report).

  Raises:
    PluginError: the SDK, the plugin or its compile fails (with the plugin's log file).
  """
  check_sdk(runtime)
  library(runtime, "compiler")
  from ai_edge_litert.aot import aot_compile  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory(prefix="canao_aot_") as tmp:
    source = pathlib.Path(tmp) / "model.tflite"
    source.write_bytes(model)
    try:
      # aot_compile draws tqdm bars (on sys.stderr) for every model; a table compiles
      # hundreds. The plugin's own output goes to the log file its errors name.
      with contextlib.redirect_stderr(io.StringIO()):
        result = aot_compile.aot_compile(str(source), output_dir=tmp, target=_target(runtime),
                                         keep_going=False,
                                         **plugin_of(runtime).compile_flags(runtime))
    except Exception as e:  # The plugin's errors come as ValueError/RuntimeError with a log path.
      raise PluginError(f"runtime '{runtime.plugin}': the compiler plugin failed: {e}") from None
    if not result.models_with_backend:
      raise PluginError(f"runtime '{runtime.plugin}': the compiler plugin produced no model "
                        f"({result.failed_backends})")
    compiled = result.models_with_backend[0][1].path.read_bytes()
  return compiled, partition_report(model, compiled)


class CompileCache:
  """Compiled models on disk, keyed by model bytes, plugin settings and versions.

  A killed table build that resumes finds the blocks it compiled; files are written whole
  (`models.files`: temporary file, then rename), so a kill never leaves a truncated entry.
  """

  def __init__(self, runtime: RuntimeSpec, directory: str | os.PathLike | None = None):
    self.runtime = runtime
    self.dir = pathlib.Path(directory or os.environ.get("CANAO_COMPILE_CACHE") or DEFAULT_CACHE)
    self._salt = json.dumps(versions(runtime), sort_keys=True).encode()

  def compile(self, model: bytes) -> tuple[bytes, dict[str, Any]]:
    key = hashlib.sha256(self._salt + model).hexdigest()
    path, report_path = self.dir / f"{key}.tflite", self.dir / f"{key}.json"
    if path.exists() and report_path.exists():
      return path.read_bytes(), json.loads(report_path.read_text())
    compiled, report = compile_model(model, self.runtime)
    self.dir.mkdir(parents=True, exist_ok=True)
    files.atomic_write(path, lambda tmp: pathlib.Path(tmp).write_bytes(compiled))
    files.write_json_atomically(report_path, report)  # Last: it marks the entry complete.
    return compiled, report
