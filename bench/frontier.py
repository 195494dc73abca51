"""The accuracy-latency frontier of one GLUE task: every search method on one supernet and table.

  python -m bench.frontier --task=mrpc --glue_dir=../shared/data/glue \
      --teacher=runs/mrpc/run/teacher/model \
      --table=runs/demo_under_load/quiet/run/table/cost_table.json \
      --workdir=runs/frontier --phase=train        # long; resumable; may share the machine
  python -m bench.frontier ... --phase=measure     # alone on the machine: timings
  python -m bench.frontier ... --phase=report      # bench/results/frontier/<task>.{json,md,png}

Targets are fractions of the table's prediction of the base (2x, 3x, 5x: 0.5, 0.333, 0.2). At
each, on the same teacher and table:
  differentiable  one bilevel search at the first target, discretized to every target (search
                  once, deploy many; darts.search with latency.deploy_targets_ms);
  evolution       HAT: a supernet trained with uniformly sampled subnets, then evolution on
                  held-out loss under each budget (search.method=evolution);
  random          random search with the same budget, on the evolution job's supernet;
  differentiable_selected  differentiable's search, its archs selected by held-out loss on its own
                  supernet instead of discretized (search.selection=held_out_loss: evolution
                  with the same budget, from the discretized arch and the learned distribution);
  differentiable_per_target  one bilevel search per target (the first is differentiable's own),
                  against which search-once-deploy-many is compared on quality and compute;
  layer_dropped   the base's top layers dropped; uniform_width: every width shrunk alike
                  (darts/nas/baselines.py), both sliced from the teacher;
  differentiable_layers  the differentiable archs retrained with layer distillation too
                  (hidden states and attention maps, --layer_weights) instead of logits only.
Every arch is retrained with the same recipe (configs/retrain.py: logits distillation from the
teacher, --retrain_epochs on all train data), the searched ones with --seeds seeds; large tasks
(SST-2) may search and retrain on a seeded subset (--search_examples, --retrain_examples).
`measure` times every arch, the base and the BERT-base shape (random weights) interleaved on the
table's runtime.
Wall time of every job goes to WORKDIR/<task>/compute.jsonl (resumed jobs add their new time).
`report` states its recipe flags as every point's: it refuses a search or retraining whose
manifest records other values, and leaves out the --methods that never ran.
"""

from __future__ import annotations

import pathlib
import shlex
import sys

from absl import app, flags

from bench import frontier_lib
from darts.training import jobs
from latency_loss.table import load_table

_WORKDIR = flags.DEFINE_string("workdir", None, "Root of the benchmark's runs (one dir per task).")
_TASK = flags.DEFINE_string("task", "mrpc", "GLUE task.")
_TEACHER = flags.DEFINE_string("teacher", None,
                               "The task's fine-tuned teacher (darts.train model/).")
_TABLE = flags.DEFINE_string("table", None, "Cost table of the runtime the targets are for.")
_GLUE_DIR = flags.DEFINE_string("glue_dir", "", "GLUE files.")
_FRACTIONS = flags.DEFINE_list("fractions", ["0.5", "0.333", "0.2"],
                               "Targets, x the table's base; the first is the searched one.")
_METHODS = flags.DEFINE_list("methods", list(frontier_lib.METHODS), "Methods to run or report.")
_LAYER_WEIGHTS = flags.DEFINE_list("layer_weights", ["1.0", "1.0"],
                                   "differentiable_layers: distill.hidden_weight, "
                                   "attention_weight.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Retraining seeds of the searched methods' archs.")
_SEARCH_EPOCHS = flags.DEFINE_float("search_epochs", 3.0, "Supernet epochs (every search).")
_RETRAIN_EPOCHS = flags.DEFINE_float("retrain_epochs", 3.0, "Retraining epochs (every arch).")
# Large sets (SST-2: 67k) may run on a seeded subset; reports say so. 0 = all.
_SEARCH_EXAMPLES = flags.DEFINE_integer("search_examples", 0,
                                        "Train examples of every search (0: all).")
_RETRAIN_EXAMPLES = flags.DEFINE_integer("retrain_examples", 0,
                                         "Train examples of every retraining (0: all).")
_EVALUATIONS = flags.DEFINE_integer("num_evaluations", 100, "Evolution/random budget (subnets).")
_EVAL_EXAMPLES = flags.DEFINE_integer("eval_examples", 256,
                                      "Held-out examples per evolution/random fitness.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved timing rounds of every arch.")
_PHASE = flags.DEFINE_enum("phase", "train", ["train", "measure", "report"], "What to run.")
_OUT = flags.DEFINE_string("out", "bench/results/frontier", "Result directory.")
flags.mark_flags_as_required(["workdir", "teacher", "table"])


def grid_from_flags() -> frontier_lib.Grid:
  return frontier_lib.Grid(
      workdir=pathlib.Path(_WORKDIR.value), task=_TASK.value, teacher=_TEACHER.value,
      table_path=_TABLE.value, table=load_table(_TABLE.value), glue_dir=_GLUE_DIR.value,
      fractions=tuple(map(float, _FRACTIONS.value)), methods=tuple(_METHODS.value),
      layer_weights=tuple(map(float, _LAYER_WEIGHTS.value)), seeds=_SEEDS.value,
      search_epochs=_SEARCH_EPOCHS.value, retrain_epochs=_RETRAIN_EPOCHS.value,
      search_examples=_SEARCH_EXAMPLES.value, retrain_examples=_RETRAIN_EXAMPLES.value,
      num_evaluations=_EVALUATIONS.value, eval_examples=_EVAL_EXAMPLES.value)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  jobs.quiet_library_logs()
  grid = grid_from_flags()
  grid.task_dir.mkdir(parents=True, exist_ok=True)
  if _PHASE.value == "train":
    grid.train()
  elif _PHASE.value == "measure":
    grid.measure(_ROUNDS.value)
  else:
    result = grid.report(shlex.join(["python", "-m", "bench.frontier", *sys.argv[1:]]))
    path = frontier_lib.write_report(result, pathlib.Path(_OUT.value))
    print(path.read_text())


if __name__ == "__main__":
  app.run(main)
