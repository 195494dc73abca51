"""Latency-constrained differentiable architecture search of BERT.

  python -m darts.search --config=configs/search.py:task=sst2 --workdir=runs/search_sst2 \
      --config.teacher=runs/sst2/model --config.latency.table=runs/table/cost_table.json \
      --config.latency.target_ms=20

Restarting with the same --workdir resumes; a finished search (arch.json present) is not rerun.
Writes WORKDIR/arch.json, WORKDIR/subnet (the sliced model, Hugging Face layout) and the history
of architecture probabilities. Retrain the result with configs/retrain.py.
"""

import jax
from absl import app, flags
from ml_collections import config_flags

from darts import jobs, searching

_CONFIG = config_flags.DEFINE_config_file("config", None, "Search config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() first: one process per host (TPU "
    "pods, multi-node GPU); every host builds the same batches and keeps its devices' shards.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  jobs.quiet_library_logs()
  if _MULTIHOST.value:
    jax.distributed.initialize()
  summary = searching.search(_CONFIG.value, _WORKDIR.value)
  print(f"arch {summary['arch']}: {summary['predicted_ms']:.2f} ms predicted "
        f"(target {summary['target_ms']:.2f} ms)")


if __name__ == "__main__":
  app.run(main)
