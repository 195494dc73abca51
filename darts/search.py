"""Latency-constrained differentiable architecture search of BERT.

  python -m darts.search --config=configs/search.py:task=sst2 --workdir=runs/search_sst2 \
      --config.teacher=runs/sst2/model --config.latency.table=runs/table/cost_table.json \
      --config.latency.target_ms=20

Restarting with the same --workdir resumes; a finished search (arch.json present) is not rerun.
Writes WORKDIR/arch.json, WORKDIR/subnet (the sliced model, Hugging Face layout) and the history
of architecture probabilities. Retrain the result with configs/retrain.py.
"""

from models import native_logs

native_logs.quiet_native_logs()  # Before TensorFlow loads (imported below): it reads it once.

from absl import app

from darts.nas import architecture_search
from darts.training import jobs
from models import workdirs

_FLAGS = jobs.define_job_flags("Search")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  jobs.start_job(_FLAGS.multihost.value)
  summary = architecture_search.search(_FLAGS.config.value, _FLAGS.run_dir())
  print(f"arch {summary['arch']}: {summary['predicted_ms']:.2f} ms predicted "
        f"(target {summary['target_ms']:.2f} ms)")
  jobs.finish_job()


if __name__ == "__main__":
  app.run(workdirs.with_clear_errors(main))
