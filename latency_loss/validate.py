"""Fidelity of a cost table: predicted vs measured latency of whole random architectures.

  python -m latency_loss.validate --table=PATH --num_archs=50 --rounds=3 [--out=PREFIX]

Writes PREFIX.{json,png,md} (default runs/fidelity/latency_fidelity_<space>_<runtime>_<precision>; results
enter bench/results/ only by an explicit --out). See `latency_loss.fidelity`.
"""

from models import native_logs

native_logs.quiet_native_logs()  # Before TensorFlow loads (imported below): it reads it once.

import json
import os
import sys
import time

from absl import app, flags, logging

from latency_loss import fidelity
from latency_loss.table import load_table

_TABLE = flags.DEFINE_string("table", None, "Cost table JSON to validate.")
_NUM_ARCHS = flags.DEFINE_integer("num_archs", 50, "Random architectures to measure.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the architecture sampler.")
_OUT = flags.DEFINE_string("out", None, "Output path prefix (no extension).")
_ROUNDS = flags.DEFINE_integer(
    "rounds", 3, "Passes over all architectures; each model's latency is the median of its "
    "per-pass medians, so a burst of other load during one pass does not count.")
flags.mark_flags_as_required(["table"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  table = load_table(_TABLE.value)
  # Never into the source tree by default: committing to bench/results/ is an explicit --out.
  out = _OUT.value or os.path.join(
      "runs", "fidelity",
      f"latency_fidelity_{table.space.name}_{table.runtime.name}_{table.runtime.precision}")
  start = time.time()
  result = fidelity.validate(table, _NUM_ARCHS.value, _SEED.value, _ROUNDS.value)
  command = "python -m latency_loss.validate " + " ".join(sys.argv[1:])
  fidelity.write_results(result, table, _TABLE.value, out, command, time.time() - start)
  logging.info("Summary: %s", json.dumps(result["summary"]))


if __name__ == "__main__":
  app.run(main)
