"""The main job: a pretrained BERT and a GLUE task in; a searched, retrained, exported and
verified TFLite model out, with a report. Its stages are in `darts.stages`.

  python -m darts.pipeline --config=configs/pipeline.py:task=sst2 --workdir=runs/demo

See configs/pipeline.py for the options and more commands. Rerunning with the same --workdir
resumes: finished stages are skipped.
"""

from models import native_logs

native_logs.quiet_native_logs()  # Before TensorFlow loads (imported below): it reads it once.

from absl import app

from darts import stages
from darts.training import jobs
from models import workdirs

_FLAGS = jobs.define_job_flags("Pipeline")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  jobs.start_job(_FLAGS.multihost.value)
  layout = stages.run(_FLAGS.config.value, _FLAGS.run_dir())
  print(f"Report: {layout.report_file}")
  if layout.export_report_file.exists():
    print(f"TFLite models: {layout.export_dir}")
  jobs.finish_job()


if __name__ == "__main__":
  app.run(workdirs.with_clear_errors(main))
