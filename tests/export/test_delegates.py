"""Delegate coverage measurement and the op-support report, on tiny graphs."""

import ctypes.util

import pytest
import tensorflow as tf

from export import delegates
from latency_loss.runtime import RuntimeSpec
from models import tf_bert
from models.search_space import Arch, get_space


def _convert(fn, signature) -> bytes:
  module = tf.Module()
  module.serve = tf.function(fn, input_signature=signature)
  return tf.lite.TFLiteConverter.from_concrete_functions(
      [module.serve.get_concrete_function()], module).convert()


@pytest.fixture(scope="module")
def bert_fp32():
  return tf_bert.convert_to_tflite(
      tf_bert.BertModule(Arch(1, 32, (2,), (64,)), get_space("tiny")))


def test_xnnpack_share_is_measured_per_node(bert_fp32):
  share = delegates.delegated_share(bert_fp32, RuntimeSpec(threads=1))
  # Only the lookups stay on the CPU (XNNPACK has no GATHER, nor integer MAXIMUM/MINIMUM): the
  # two embedding lookups and the mask bias's, each with the clamp of its indices; they run
  # first, and everything after them is one XNNPACK partition.
  assert share["partitions"] == 1 and share["cpu_ops"] == {"GATHER": 3, "MAXIMUM": 3,
                                                           "MINIMUM": 3}
  assert 0.85 < share["share"] < 1.0
  assert share["delegated_nodes"] + sum(share["cpu_ops"].values()) == share["nodes"]


def test_without_a_delegate_nothing_is_delegated(bert_fp32):
  share = delegates.delegated_share(bert_fp32, RuntimeSpec(threads=1, xnnpack=False))
  assert share["share"] == 0.0 and share["partitions"] == 0
  assert sum(share["cpu_ops"].values()) == share["nodes"]


def test_fully_delegable_graph_has_share_one():
  model = _convert(lambda x: {"y": tf.nn.relu(x * 2.0 + 1.0)},
                   [tf.TensorSpec([1, 8], tf.float32)])
  share = delegates.delegated_share(model, RuntimeSpec(threads=1))
  assert share["share"] == 1.0 and share["cpu_ops"] == {}


def test_coverage_flags_rank_above_4_and_dynamic_shapes():
  model = _convert(lambda x: {"y": tf.reduce_sum(tf.reshape(x, [-1, 2, 2, 2, 2]) * 3.0, 1)},
                   [tf.TensorSpec([None, 16], tf.float32)])
  report = delegates.coverage_report(model)
  assert "Reshape [1, 2, 2, 2, 2]" in report["rank_above_4"]
  assert "serving_default_x:0 [-1, 16]" in report["dynamic_shapes"]
  assert "SUM" in report["gpu"]["undocumented_ops"]


def test_coverage_of_the_bert_graph(bert_fp32):
  report = delegates.coverage_report(bert_fp32)
  assert report["ops"]["FULLY_CONNECTED"] == 6 + 2
  assert report["nnapi"]["unsupported_ops"] == ["GELU"]
  assert report["nnapi"]["min_api_level"] == 31  # BATCH_MATMUL.
  assert {"GATHER", "GELU", "BATCH_MATMUL"} <= set(report["gpu"]["undocumented_ops"])
  assert report["rank_above_4"] == [] and report["dynamic_shapes"] == []


def test_delegate_options_parse_and_reject_garbage():
  assert delegates.parse_delegate_options("a=1, b=x=y,") == {"a": "1", "b": "x=y"}
  assert delegates.parse_delegate_options("") == {}
  with pytest.raises(ValueError, match="'oops' is not key=value"):
    delegates.parse_delegate_options("a=1,oops")


def test_unloadable_delegate_names_the_library():
  runtime = RuntimeSpec(delegate="/nonexistent/libgpu.so", delegate_options={"k": "v"})
  with pytest.raises(ValueError, match="cannot load the delegate library "
                                       "'/nonexistent/libgpu.so' with options {'k': 'v'}"):
    delegates.check_runtime(runtime)



def test_a_library_that_is_not_a_delegate_is_named():
  libm = ctypes.util.find_library("m")  # Loads, but has no delegate entry points.
  runtime = RuntimeSpec(delegate=libm)
  with pytest.raises(ValueError, match=f"'{libm}'.*is not a TFLite external delegate"):
    delegates.check_runtime(runtime)
