"""LiteRT's CompiledModel backend: on its CPU accelerator, and through OpenVINO's compiler plugin
end to end on the tiny space (build, resume from the compile cache, validate)."""

import json

import numpy as np
import pytest

from configs import cost_table as cost_table_config
from configs.runtimes import runtime_fields
from latency_loss import builder, fidelity, plugins
from latency_loss.backends import base as backends
from latency_loss.backends import tflite
from latency_loss.blocks import Block
from latency_loss.runtime import RuntimeSpec
from latency_loss.table import load_table
from latency_loss.timing import TimingProtocol
from models.search_space import get_space

SPACE = get_space("tiny")
PROTOCOL = TimingProtocol(warmup=1, runs=3)


@pytest.fixture(autouse=True)
def compile_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("CANAO_COMPILE_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("runtime", ["litert_cpu", "openvino"])
def test_a_block_call_computes_what_the_interpreter_computes(runtime):
  spec = RuntimeSpec(**runtime_fields(runtime))
  backend = backends.make_backend(SPACE, spec, PROTOCOL)
  block = Block("layer", SPACE.hidden_choices[-1], SPACE.head_choices[-1], SPACE.ffn_choices[-1])
  model = backend.convert(tflite.build_module(block, SPACE))
  call = backend.model_call(model)
  reference = tflite.make_interpreter(model, RuntimeSpec()).get_signature_runner()(**call.keywords)
  # OpenVINO computes float layers in bfloat16 on CPUs that have it (plugins.openvino_float_
  # precision): same function, a few 1e-3 apart.
  exact = runtime == "litert_cpu" or plugins.openvino_float_precision() == "f32"
  np.testing.assert_allclose(call()["hidden"], reference["hidden"], atol=1e-4 if exact else 3e-2)
  assert backends.measure(call, PROTOCOL).median_ms > 0


def test_openvino_int8_full_table_builds_resumes_without_compiling_and_validates(tmp_path,
                                                                                   monkeypatch):
  config = cost_table_config.get_config("runlocal,runtime=openvino,precision=int8_full")
  table = builder.build_table(config, str(tmp_path / "table"))
  assert table.missing() == [] and table.runtime.plugin == "intel_openvino"
  assert table.host["openvino"] == plugins.OPENVINO_VERSION
  assert table.runtime.to_dict() | {"precision": "int8_full", "soc_model": "LNL",
                                    "graph_backend": "cpu"} == table.runtime.to_dict()
  # A killed build: half its entries gone. It resumes from the compile cache.
  path = tmp_path / "table" / builder.TABLE_NAME
  saved = json.loads(path.read_text())
  dropped = sorted(saved["entries"])[::2]
  for key in dropped:
    del saved["entries"][key]
  path.write_text(json.dumps(saved))
  with monkeypatch.context() as patch:
    patch.setattr(plugins, "compile_model", lambda *a: pytest.fail("compiled again"))
    resumed = builder.build_table(config, str(tmp_path / "table"))
  assert resumed.missing() == [] and set(dropped) <= set(resumed.entries)
  result = fidelity.validate(load_table(str(path)), num_archs=2, seed=0)
  assert [r["measured_ms"] > 0 for r in result["records"]] == [True, True]


def test_a_table_of_one_runtime_is_refused_for_another(tmp_path):
  config = cost_table_config.get_config("runlocal,runtime=openvino")
  builder.build_table(config, str(tmp_path))
  with pytest.raises(ValueError, match=r"runtime.backend: 'tflite' != 'compiled'; "
                                       r"runtime.plugin: '' != 'intel_openvino'"):
    load_table(str(tmp_path / builder.TABLE_NAME), expect=RuntimeSpec())
  other = cost_table_config.get_config("runlocal,runtime=openvino,precision=int8")
  with pytest.raises(ValueError, match=r'precision: "fp32" in the workdir, "int8" now'):
    builder.build_table(other, str(tmp_path))
