"""Builds a latency cost table of every block of a search space.

  python -m latency_loss.build_table --config=configs/cost_table.py:space=minilm --workdir=DIR

Writes DIR/cost_table.json after every block, so a killed build resumes when run again with the
same workdir. See `latency_loss.builder` and configs/cost_table.py (backends, phones).
"""

from models import native_logs

native_logs.quiet_native_logs()  # Before TensorFlow loads (imported below): it reads it once.

from absl import app, flags
from ml_collections import config_flags

from latency_loss import builder
from models import workdirs

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/cost_table.py:ARGS",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (resumable).")
_NEW_RUN = workdirs.define_new_run_flag()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  workdir = workdirs.fresh_run_dir(_WORKDIR.value) if _NEW_RUN.value else _WORKDIR.value
  builder.build_table(_CONFIG.value, str(workdir))


if __name__ == "__main__":
  app.run(workdirs.with_clear_errors(main))
