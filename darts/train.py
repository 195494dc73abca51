"""Trains a fixed-architecture BERT on a GLUE task and evaluates it.

  python -m darts.train --config=configs/finetune.py:task=sst2 --workdir=runs/sst2

Restarting with the same --workdir resumes from the last checkpoint. See configs/finetune.py for
the options (override any with --config.<name>=<value>).
"""

from models import native_logs

native_logs.quiet_native_logs()  # Before TensorFlow loads (imported below): it reads it once.

from absl import app

from darts.training import finetune, jobs
from models import workdirs

_FLAGS = jobs.define_job_flags("Training")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  jobs.start_job(_FLAGS.multihost.value)
  summary = finetune.train_and_evaluate(_FLAGS.config.value, _FLAGS.run_dir())
  metric = summary["main_metric"]
  print(f"{summary['task']} {summary['split']} {metric}: {summary['metrics'][metric]:.4f}")
  jobs.finish_job()


if __name__ == "__main__":
  app.run(workdirs.with_clear_errors(main))
