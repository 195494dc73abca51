"""Compiler plugins through LiteRT: OpenVINO's (real, on this CPU) compiles, runs and matches the
Interpreter; missing SDKs, libraries, foreign compiled models and CPU fallbacks are clear errors."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from configs.runtimes import runtime_fields
from latency_loss import plugins
from latency_loss.backends import compiled, tflite
from latency_loss.blocks import Block
from latency_loss.runtime import RuntimeSpec
from models import flatbuffer, tf_bert
from models.search_space import get_space

SPACE = get_space("tiny")
OPENVINO = RuntimeSpec(**{k: v for k, v in runtime_fields("openvino").items()})
LAYER = Block("layer", SPACE.hidden_choices[-1], SPACE.head_choices[-1], SPACE.ffn_choices[-1])


def _layer(precision: str) -> bytes:
  return tf_bert.convert_to_tflite(tflite.build_module(LAYER, SPACE), precision)


def _interpreter_outputs(model: bytes, feeds):
  runner = tflite.make_interpreter(model, RuntimeSpec()).get_signature_runner()
  return runner(**feeds)["hidden"]


@pytest.fixture(autouse=True)
def compile_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("CANAO_COMPILE_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("precision, correlation", [("fp32", 0.9999), ("int8_full", 0.99)])
def test_openvino_offloads_a_layer_whole_and_computes_what_the_interpreter_does(precision,
                                                                                correlation):
  model = _layer(precision)
  compiled_model, report = plugins.compile_model(model, OPENVINO)
  assert report["fully_offloaded"] and report["partitions"] == 1
  assert report["offloaded_ops"] == report["ops"] == len(flatbuffer.op_names(model))
  assert flatbuffer.op_names(compiled_model) == [plugins.DISPATCH_OP]
  assert plugins.stamp(compiled_model) == ("IntelOpenVINO", "LNL")
  loaded = compiled.load(compiled_model, OPENVINO)
  feeds = tflite.random_inputs(compiled.input_details(loaded), SPACE)
  ours, reference = compiled.runner(loaded)(**feeds)["hidden"], _interpreter_outputs(model, feeds)
  # Not bit-equal: OpenVINO computes float layers in bfloat16 on CPUs that have it, and its
  # int8 kernels round differently from LiteRT's. The function must be the same.
  assert np.corrcoef(ours.ravel(), reference.ravel())[0, 1] > correlation
  if precision == "fp32" and plugins.openvino_float_precision() == "f32":
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_a_partly_offloaded_model_names_the_ops_left_on_cpu():

  class WithUnsupported(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
    def serve(self, x):
      # SEGMENT_SUM has no OpenVINO TFLite-frontend translator: it stays on LiteRT's CPU.
      return {"y": tf.math.segment_sum(tf.nn.relu(x) * 2.0, tf.constant([0, 0, 1, 1, 2, 2, 3, 3]))}

  _, report = plugins.compile_model(tf_bert.convert_to_tflite(WithUnsupported()), OPENVINO)
  assert not report["fully_offloaded"] and report["cpu_ops"] == {"SEGMENT_SUM": 1}
  with pytest.raises(plugins.PluginError, match=r"left 1 of \d+ ops on CPU .*SEGMENT_SUM.*not the "
                                                r"compiler's"):
    plugins.require_full_offload(report, OPENVINO, "the test model")


def test_models_compiled_for_another_soc_or_not_compiled_are_refused():
  compiled_model, _ = plugins.compile_model(_layer("fp32"), OPENVINO)
  with pytest.raises(plugins.PluginError, match=r"m\.tflite was compiled for IntelOpenVINO LNL, "
                                                r"not for runtime 'intel_openvino' .*PTL"):
    compiled.load(compiled_model, dataclasses.replace(OPENVINO, soc_model="PTL"), "m.tflite")
  with pytest.raises(plugins.PluginError, match=r"plain\.tflite is not compiled"):
    compiled.load(_layer("fp32"), OPENVINO, "plain.tflite")


def test_compiled_models_are_cached_by_content(monkeypatch, tmp_path):
  cache, model = plugins.CompileCache(OPENVINO), _layer("fp32")
  first = cache.compile(model)
  assert len(list(cache.dir.glob("*.tflite"))) == 1
  monkeypatch.setattr(plugins, "compile_model", lambda *a: pytest.fail("compiled again"))
  assert plugins.CompileCache(OPENVINO).compile(model)[0] == first[0]


def test_missing_sdk_is_a_clear_error(monkeypatch):
  find_spec = plugins.importlib.util.find_spec
  monkeypatch.setattr(plugins.importlib.util, "find_spec",
                      lambda name: None if name == "openvino" else find_spec(name))
  with pytest.raises(plugins.PluginError, match=r"needs the Python package 'openvino', which is "
                                                r"not installed: pip install openvino==2026\.3\.1"):
    plugins.compile_model(_layer("fp32"), OPENVINO)


def test_missing_or_unloadable_libraries_name_the_file(monkeypatch, tmp_path):
  qualcomm = RuntimeSpec(**runtime_fields("qualcomm"))
  # Real: the Qualcomm plugin ships without the QNN SDK it links against.
  with pytest.raises(plugins.PluginError, match=r"libLiteRtCompilerPlugin_Qualcomm\.so does not "
                                                r"load .*libQnnHtp.*ai-edge-litert-sdk-qualcomm"):
    plugins.library(qualcomm, "compiler")
  with pytest.raises(plugins.PluginError, match=r"no dispatch library in .*qualcomm/dispatch"):
    plugins.library(qualcomm, "dispatch")
  (tmp_path / "intel_openvino" / "dispatch").mkdir(parents=True)
  (tmp_path / "intel_openvino" / "dispatch" / "libLiteRtDispatch_IntelOpenvino.so").write_text("")
  monkeypatch.setattr(plugins, "_vendors_dir", lambda: tmp_path)
  with pytest.raises(plugins.PluginError, match=r"dispatch library .*IntelOpenvino\.so does not "
                                                r"load"):
    plugins.library(OPENVINO, "dispatch")


def test_unknown_plugin_or_soc_is_an_error():
  with pytest.raises(ValueError, match=r"plugin='npu9' is not a known compiler plugin"):
    RuntimeSpec(backend="compiled", plugin="npu9")
  with pytest.raises(ValueError, match=r"plugin='intel_openvino' needs backend='compiled'"):
    RuntimeSpec(backend="tflite", plugin="intel_openvino")
  with pytest.raises(plugins.PluginError, match=r"soc_model='X1' is not one of .*LNL"):
    plugins.compile_model(_layer("fp32"), dataclasses.replace(OPENVINO, soc_model="X1"))
