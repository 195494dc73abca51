"""LiteRT's CompiledModel API: on its CPU accelerator, or through a compiler plugin.

With `runtime.plugin` set, every model (a block, a whole architecture) is first AOT-compiled by
the vendor's compiler plugin (`latency_loss.plugins`; compiled models are cached on disk), must
be offloaded whole, and runs through the vendor's dispatch library: what is timed is the
compiler's code, never LiteRT's CPU kernels standing in for ops it left out. Without a plugin
the model runs on the CompiledModel API's CPU accelerator (XNNPACK, another code path than the
Interpreter's).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
from ai_edge_litert import compiled_model, environment, hardware_accelerator, options

from latency_loss import plugins
from latency_loss.backends import tflite
from latency_loss.runtime import RuntimeSpec
from latency_loss.timing import TimingProtocol
from models.search_space import SearchSpace

def _options(runtime: RuntimeSpec) -> options.Options:
  """Accelerators and threads as `runtime` says: the CPU accelerator, or the vendor's dispatch
  (NPU flag) with OpenVINO's device and thread count where the plugin is OpenVINO."""
  accel = hardware_accelerator.HardwareAccelerator
  cpu = options.CpuOptions(num_threads=runtime.threads)
  if not runtime.plugin:
    return options.Options(hardware_accelerators=accel.CPU, cpu_options=cpu)
  openvino = None
  if runtime.plugin == "intel_openvino":
    openvino = options.IntelOpenVinoOptions(
        graph_backend=options.IntelOpenVinoGraphBackend[(runtime.graph_backend or "cpu").upper()],
        performance_mode=options.IntelOpenVinoPerformanceMode.LATENCY,
        configs_map={"INFERENCE_NUM_THREADS": str(runtime.threads)})
  return options.Options(hardware_accelerators=accel.NPU | accel.CPU, cpu_options=cpu,
                         intel_openvino_options=openvino)


def load(model: bytes, runtime: RuntimeSpec, where: str = "the model") -> compiled_model.CompiledModel:
  """A CompiledModel of `model` on `runtime`; plugin runtimes take only models compiled for them
  (`plugins.check_stamp`) and fully accelerated.

  Raises:
    plugins.PluginError: naming `where`: the dispatch library or SDK is missing, the model is
      compiled for another runtime, or LiteRT could not put it all on the accelerator.
  """
  env_options = {}
  if runtime.plugin:
    plugins.check_sdk(runtime)
    plugins.check_stamp(model, runtime, where)
    env_options["dispatch_library_path"] = str(plugins.library(runtime, "dispatch").parent)
  env = environment.Environment.create(**env_options)
  try:
    loaded = compiled_model.CompiledModel.from_buffer(model, options=_options(runtime),
                                                      environment=env)
  except Exception as e:  # The pybind layer raises RuntimeError with LiteRT's status text.
    raise plugins.PluginError(f"{where}: LiteRT cannot load it on runtime '{runtime.name}': "
                              f"{e}") from None
  loaded.model_bytes = model  # LiteRT may read the weights from this buffer, not a copy.
  if runtime.plugin and not loaded.is_fully_accelerated():
    raise plugins.PluginError(f"{where}: LiteRT ran part of it on CPU, not through the "
                              f"'{runtime.plugin}' dispatch library")
  return loaded


def input_details(model: compiled_model.CompiledModel) -> dict[str, dict[str, Any]]:
  return model.get_input_tensor_details(next(iter(model.get_signature_list())))


def runner(model: compiled_model.CompiledModel) -> Callable[..., dict[str, np.ndarray]]:
  """`run(**inputs) -> {output name: array}` over the model's first signature (copying inputs
  in and outputs out, like the Interpreter's signature runner)."""
  signature = next(iter(model.get_signature_list()))
  names = list(model.get_input_tensor_details(signature))
  outputs = model.get_output_tensor_details(signature)
  ins, outs = model.create_input_buffers(0), model.create_output_buffers(0)

  def run(**feeds: np.ndarray) -> dict[str, np.ndarray]:
    for name, buffer in zip(names, ins):
      buffer.write(np.ascontiguousarray(feeds[name]))
    model.run_by_index(0, ins, outs)
    return {name: buffer.read(int(np.prod(d["shape"])), np.dtype(d["dtype"])).reshape(d["shape"])
            for (name, d), buffer in zip(outputs.items(), outs)}

  return run


class CompiledBackend(tflite.TFLiteBackend):
  """Blocks and architectures converted as for the Interpreter, then (with a plugin) compiled,
  loaded and timed through LiteRT's CompiledModel API."""

  name = "compiled"

  def __init__(self, space: SearchSpace, runtime: RuntimeSpec, protocol: TimingProtocol):
    super().__init__(space, runtime, protocol)
    if runtime.plugin:
      plugins.check_available(runtime)
      self._cache = plugins.CompileCache(runtime)

  def facts(self) -> dict[str, str]:
    facts = super().facts()
    return {**facts, **plugins.versions(self.runtime)} if self.runtime.plugin else facts

  def compile(self, model: bytes, what: str = "a model") -> bytes:
    """`model` compiled by the runtime's plugin (cached); refused unless offloaded whole.
    A model already compiled (an exported one) is taken as it is."""
    if not self.runtime.plugin or plugins.stamp(model) is not None:
      return model
    compiled, report = self._cache.compile(model)
    plugins.require_full_offload(report, self.runtime, what)
    return compiled

  def model_call(self, model: bytes) -> Callable[[], object]:
    loaded = load(self.compile(model), self.runtime)
    return functools.partial(runner(loaded), **tflite.random_inputs(input_details(loaded),
                                                                    self.space))
