"""Exports a fine-tuned BERT (a darts.train workdir) to verified TFLite models.

  python -m export.to_tflite --config=configs/export.py --workdir=runs/sst2
  python -m export.to_tflite --config=configs/export.py --workdir=runs/sst2_export \
      --config.model_dir=runs/search/model --config.precisions=fp32,int8
  python -m export.to_tflite --config=configs/export.py --workdir=runs/sst2 \
      --config.delegate=/path/libdelegate.so --config.delegate_options=backend=gpu
  python -m export.to_tflite --config=configs/export.py --workdir=runs/sst2 --runtime=openvino
  python -m export.to_tflite --config=configs/export.py:runlocal --workdir=/tmp/sst2_local

Arguments after the colon: `runlocal` (few examples, short sequences: a smoke test in seconds).
Outputs go to WORKDIR/export/: model_<precision>.tflite (+ .json sidecar), vocab.txt,
tokenizer_config.json and export_report.json; with a compiler plugin runtime, also
model_<precision>_<runtime>.tflite, compiled for it.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_arg(arg, runlocal=False)
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.model_dir = ""  # Empty: WORKDIR/model (where darts.train writes the model).
  config.task = ""  # Empty: the task recorded in the checkpoint's config.json.
  config.arch = ""  # Optional Arch JSON file the checkpoint must match (e.g. a search result).
  config.seq_len = 128  # Static sequence length of the exported graph.
  # fp32 (always built: it is the verified reference), fp16 (float16 weights), int8 (dynamic
  # range), and the recipes of configs/quantization.py, calibrated on train examples: int8_full
  # (integer-only), mixed (int8, LayerNorms in float) and mixed_int16 (integer-only, int16
  # LayerNorms). Also int16x8 (int16 activations, for NPUs that run them): accurate, but ~0.6 s
  # a sentence on LiteRT's CPU kernels, so not verified by default.
  config.precisions = "fp32,fp16,int8,int8_full"
  config.calibration_examples = 200
  config.min_calibration_examples = 100  # Fewer is an error: the ranges would clip.

  config.data = ml_collections.ConfigDict()
  config.data.glue_dir = ""  # Empty: $GLUE_DIR, else the Hugging Face Hub.
  config.data.eval_split = "dev"

  config.verify = ml_collections.ConfigDict()
  config.verify.num_examples = 0  # 0 = the whole eval split.
  config.verify.min_examples = 256
  config.verify.fp32_tolerance = 1e-4  # Max |TFLite fp32 logit - JAX logit|.
  config.verify.max_metric_drop = 0.01  # A model losing more (1 point) is flagged as lossy...
  config.verify.fail_on_metric_drop = False  # ...and fails the export only when this is set.

  # A LiteRT runtime of configs/runtimes.py the models are also compiled for and verified on:
  # "xnnpack" (none: the Interpreter's verification below is all), "litert_cpu" (the
  # CompiledModel API), or a compiler plugin ("openvino"; "qualcomm", "mediatek",
  # "google_tensor" with their SDKs): each precision is AOT-compiled, written beside the plain
  # model as model_<precision>_<runtime>.tflite when the plugin offloads it whole, verified
  # through the dispatch library with the same gate, and its partition reported.
  config.runtime = "xnnpack"
  config.soc_model = ""  # The SoC to compile for; empty: the runtime's default.
  config.graph_backend = ""  # OpenVINO's device (cpu, gpu, npu); empty: the runtime's (cpu).

  # The Interpreter runtime the models are verified and their delegation measured on.
  config.threads = 2
  config.xnnpack = True
  config.delegate = ""  # Path of an external delegate library (.so).
  config.delegate_options = ""  # "key=value,key=value", passed to the delegate.

  if args.runlocal:
    config.seq_len = 32
    config.calibration_examples = 8
    config.min_calibration_examples = 8
    config.verify.num_examples = 32
    config.verify.min_examples = 16
  return config
