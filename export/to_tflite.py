"""Exports a fine-tuned BERT to verified TFLite models for phones.

  python -m export.to_tflite --config=configs/export.py --workdir=runs/sst2
  python -m export.to_tflite --config=configs/export.py --workdir=runs/sst2 \
      --delegate=/path/libdelegate.so --delegate_option=backend=gpu --delegate_option=fp16=1
  python -m export.to_tflite --config=configs/export.py --workdir=runs/sst2 --runtime=openvino

See configs/export.py for the options (override any with --config.<name>=<value>). Exits
non-zero, writing no final file, when the TFLite models do not match the JAX model.
"""

from models import native_logs

native_logs.quiet_native_logs()  # Before TensorFlow loads (imported below): it reads it once.

import pathlib

from absl import app, flags
from ml_collections import config_flags

from darts.training import jobs
from export import exporter
from latency_loss import plugins
from models import workdirs

_CONFIG = config_flags.DEFINE_config_file("config", None, "Export config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "darts.train workdir; outputs go to its export/ "
                                "(with --new_run: export/run_N/).")
_DELEGATE = flags.DEFINE_string(
    "delegate", None, "External delegate library (.so) to verify and measure on; the same as "
    "--config.delegate.")
_DELEGATE_OPTIONS = flags.DEFINE_multi_string(
    "delegate_option", [], "key=value passed to --delegate; repeatable. Added to "
    "--config.delegate_options.")
_RUNTIME = flags.DEFINE_string(
    "runtime", None, "Also compile for and verify on this LiteRT runtime (configs/runtimes.py: "
    "litert_cpu, openvino, qualcomm, ...); the same as --config.runtime.")
_NEW_RUN = workdirs.define_new_run_flag()
flags.mark_flags_as_required(["config", "workdir"])


def config_with_flags(config):
  """`config` with the --runtime, --delegate and --delegate_option shortcuts applied."""
  if _RUNTIME.value:
    config.runtime = _RUNTIME.value
  if _DELEGATE.value:
    config.delegate = _DELEGATE.value
  if _DELEGATE_OPTIONS.value:
    config.delegate_options = ",".join(filter(None, [config.delegate_options,
                                                     *_DELEGATE_OPTIONS.value]))
  return config


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  jobs.start_job(multihost=False)
  out_dir = (workdirs.fresh_run_dir(pathlib.Path(_WORKDIR.value) / exporter.EXPORT_DIR)
             if _NEW_RUN.value else None)
  report = exporter.export(config_with_flags(_CONFIG.value), _WORKDIR.value, out_dir)
  for precision, result in report["results"].items():
    line = " ".join(f"{k}={v:.4f}" for k, v in result["metrics"].items())
    if precision != "jax":
      line += (f" max_abs_diff={result['max_abs_diff']:.2e}"
               f" delegated_share={result['delegate']['share']:.3f}"
               + (" LOSSY" if result.get("lossy") else ""))
    print(f"{precision}: {line}")
    if "compiled" in result:
      print(f"  {plugins.compiled_summary(result['compiled'])}")
  jobs.finish_job()


if __name__ == "__main__":
  app.run(workdirs.with_clear_errors(main))
