"""Exports a fine-tuned BERT to verified TFLite models for phones.

  python -m export.to_tflite --config=configs/export.py --workdir=runs/sst2

See configs/export.py for the options (override any with --config.<name>=<value>). Exits
non-zero, writing no final file, when the TFLite models do not match the JAX model.
"""

from absl import app, flags
from ml_collections import config_flags

from darts import jobs
from export import exporter

_CONFIG = config_flags.DEFINE_config_file("config", None, "Export config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "darts.train workdir; outputs go to its export/.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  jobs.quiet_library_logs()
  report = exporter.export(_CONFIG.value, _WORKDIR.value)
  for precision, result in report["results"].items():
    line = " ".join(f"{k}={v:.4f}" for k, v in result["metrics"].items())
    if precision != "jax":
      line += (f" max_abs_diff={result['max_abs_diff']:.2e}"
               f" delegated_share={result['delegate']['share']:.3f}"
               + (" LOSSY" if result.get("lossy") else ""))
    print(f"{precision}: {line}")


if __name__ == "__main__":
  app.run(main)
