"""Trains a fixed-architecture BERT on a GLUE task and evaluates it.

  python -m darts.train --config=configs/finetune.py:task=sst2 --workdir=runs/sst2

Restarting with the same --workdir resumes from the last checkpoint. See configs/finetune.py for
the options (override any with --config.<name>=<value>).
"""

from models import native_logs

native_logs.quiet_native_logs()  # Before TensorFlow loads (imported below): it reads it once.

from absl import app

from darts.training import finetune, jobs

_CONFIG, _WORKDIR, _MULTIHOST = jobs.define_job_flags("Training")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  jobs.start_job(_MULTIHOST.value)
  summary = finetune.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  metric = summary["main_metric"]
  print(f"{summary['task']} {summary['split']} {metric}: {summary['metrics'][metric]:.4f}")
  jobs.finish_job()


if __name__ == "__main__":
  app.run(main)
