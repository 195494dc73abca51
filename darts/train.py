"""Trains a fixed-architecture BERT on a GLUE task and evaluates it.

  python -m darts.train --config=configs/finetune.py:task=sst2 --workdir=runs/sst2

Restarting with the same --workdir resumes from the last checkpoint. See configs/finetune.py for
the options (override any with --config.<name>=<value>).
"""

import jax
from absl import app, flags
from ml_collections import config_flags

from darts import finetune, jobs

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.",
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
  summary = finetune.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  metric = summary["main_metric"]
  print(f"{summary['task']} {summary['split']} {metric}: {summary['metrics'][metric]:.4f}")


if __name__ == "__main__":
  app.run(main)
