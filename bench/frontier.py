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

import dataclasses
import datetime
import json
import pathlib
import shlex
import sys
import time
from typing import Any, Callable

import ml_collections
import numpy as np
from absl import app, flags, logging

from bench.machine import code_version, machine_facts
from configs import retrain as retrain_config, search as search_config
from darts import layout as layout_lib, stages
from darts.data import glue, metrics
from darts.nas import architecture_search, baselines
from darts.training import finetune, jobs
from latency_loss.table import CostTable, load_table
from models import files, search_space, workdirs
from models.search_space import Arch

_WORKDIR = flags.DEFINE_string("workdir", None, "Root of the benchmark's runs (one dir per task).")
_TASK = flags.DEFINE_string("task", "mrpc", "GLUE task.")
_TEACHER = flags.DEFINE_string("teacher", None,
                               "The task's fine-tuned teacher (darts.train model/).")
_TABLE = flags.DEFINE_string("table", None, "Cost table of the runtime the targets are for.")
_GLUE_DIR = flags.DEFINE_string("glue_dir", "", "GLUE files.")
_FRACTIONS = flags.DEFINE_list("fractions", ["0.5", "0.333", "0.2"],
                               "Targets, x the table's base; the first is the searched one.")
_METHODS = flags.DEFINE_list("methods", ["differentiable", "layer_dropped", "uniform_width",
                                         "evolution", "random", "differentiable_selected",
                                         "differentiable_per_target", "differentiable_layers"],
                             "Methods to run or report.")
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

SELECTED = "differentiable_selected"  # differentiable's supernet, selection by held-out loss.
SEARCHED = ("differentiable", "evolution", "random", SELECTED)
PER_TARGET = "differentiable_per_target"  # A search per target; the first is differentiable's.
LAYERS = "differentiable_layers"  # The differentiable archs, retrained with layer distillation.
OURS_VARIANTS = (PER_TARGET, LAYERS, SELECTED)
BASELINES = {"layer_dropped": baselines.layer_dropped, "uniform_width": baselines.uniform_width}
# CoFi (Xia et al., 2022, Table 2/Fig. 2): points lost vs its BERT-base teacher, GPU speed-ups.
COFI_BARS = {2.0: 0.5, 3.0: 1.0, 5.0: 2.0}


def task_dir() -> pathlib.Path:
  return pathlib.Path(_WORKDIR.value) / _TASK.value


def fractions() -> list[float]:
  return [float(f) for f in _FRACTIONS.value]


def targets_ms(table: CostTable) -> list[float]:
  base = table.predict_ms(table.space.largest_arch())
  return [f * base for f in fractions()]


def timed(name: str, job: Callable[[], Any]) -> Any:
  """Runs `job`, appending its wall time (this run's) to the compute ledger."""
  start = time.perf_counter()
  try:
    return job()
  finally:
    with (task_dir() / "compute.jsonl").open("a") as f:
      f.write(json.dumps({"job": name, "seconds": time.perf_counter() - start,
                          "date": datetime.datetime.now().isoformat(timespec="seconds")}) + "\n")


def search_config_for(method: str, table: CostTable, index: int | None = None):
  """`method`'s search config; with `index`, a single search at the index-th target alone."""
  config = search_config.get_config(f"task={_TASK.value},space={table.space.name}")
  config.teacher = _TEACHER.value
  config.data.glue_dir = _GLUE_DIR.value
  config.optim.num_epochs = _SEARCH_EPOCHS.value
  config.data.max_train_examples = _SEARCH_EXAMPLES.value
  config.latency.table = _TABLE.value
  config.latency.update(**table.runtime.to_dict())
  first, *others = targets_ms(table) if index is None else [targets_ms(table)[index]]
  config.latency.target_ms = first
  config.latency.deploy_targets_ms = tuple(others)
  config.search.method = "differentiable" if method == SELECTED else method
  config.search.evolution.num_evaluations = _EVALUATIONS.value
  config.search.evolution.eval_examples = _EVAL_EXAMPLES.value
  if method == "random":
    config.search.supernet_from = str(search_dir("evolution"))
  if method == SELECTED:
    config.search.selection = "held_out_loss"
    config.search.supernet_from = str(search_dir("differentiable"))
  return config


def search_dir(method: str) -> pathlib.Path:
  return task_dir() / f"search_{method}"


def arch_file(method: str, index: int, table: CostTable) -> pathlib.Path:
  """arch.json of `method` at the index-th target."""
  if method == LAYERS or (method == PER_TARGET and index == 0):
    return arch_file("differentiable", index, table)
  if method == PER_TARGET:
    return search_dir(method) / f"{round(100 * fractions()[index])}" / architecture_search.ARCH_FILE
  if method in SEARCHED:
    root = search_dir(method)
    return (root if index == 0 else architecture_search.target_dir(
        root, targets_ms(table)[index])) / architecture_search.ARCH_FILE
  return task_dir() / "baselines" / method / f"{round(100 * fractions()[index])}" / "arch.json"


def retrain_dir(method: str, index: int, seed: int, table: CostTable) -> pathlib.Path:
  """Where `method`'s arch at the index-th target is retrained with `seed`: that of the first
  target with the same arch (a family's widest fit can be the same at two targets); a
  per-target search's arch that search-once also found shares its retraining (same recipe)."""
  arch = _arch_at(method, index, table)
  if method == PER_TARGET:
    for i in range(len(fractions())):
      if _arch_at("differentiable", i, table) == arch:
        return retrain_dir("differentiable", i, seed, table)
  index = next(i for i in range(index + 1) if _arch_at(method, i, table) == arch)
  return task_dir() / "retrain" / method / f"{round(100 * fractions()[index])}" / f"seed{seed}"


def _arch_at(method: str, index: int, table: CostTable) -> dict[str, Any] | None:
  path = arch_file(method, index, table)
  return json.loads(path.read_text())["arch"] if path.exists() else None


def seeds_of(method: str) -> range:
  return range(_SEEDS.value if method in (*SEARCHED, *OURS_VARIANTS) else 1)


def searched_by(method: str, index: int, table: CostTable
                ) -> tuple[pathlib.Path, ml_collections.ConfigDict] | None:
  """The search behind `method`'s arch at the index-th target: its workdir and the config the
  flags give it; None for the baselines (sliced from the teacher, no search)."""
  if method == LAYERS or (method == PER_TARGET and index == 0):
    return searched_by("differentiable", index, table)
  if method == PER_TARGET:
    return (arch_file(method, index, table).parent,
            search_config_for("differentiable", table, index))
  if method in SEARCHED:
    return search_dir(method), search_config_for(method, table)
  return None


def prepare(method: str, table: CostTable) -> None:
  """The method's arch.json at every target: its search(es), or its baseline family's archs."""
  if method in SEARCHED or method == PER_TARGET:
    indices = [0] if method in SEARCHED else [  # One search, which resumes itself; or one per
        i for i in range(1, len(fractions()))   # other target (the first's is differentiable's).
        if not arch_file(method, i, table).exists()]
    for index in indices:
      workdir, config = searched_by(method, index, table)
      timed(f"search/{method}", lambda c=config, w=workdir: architecture_search.search(c, str(w)))
  elif method in BASELINES:
    task = glue.get_task(_TASK.value)
    margin = search_config_for("differentiable", table).latency.margin  # The searches' budget.
    for index, target in enumerate(targets_ms(table)):
      arch = BASELINES[method](table.space, table.predict_ms, target * (1 - margin))
      if arch is not None:
        baselines.prepare(_TEACHER.value, task.name, task.num_labels, table, arch, target,
                          arch_file(method, index, table).parent)


def train(table: CostTable) -> None:
  """Method by method (--methods order), its archs and their seed-0 retraining; then the other
  seeds: a run cut short still has every finished method's points."""
  for seed in range(_SEEDS.value):
    for method in _METHODS.value:
      if seed == 0:
        prepare(method, table)
      for index in range(len(fractions())):
        path = arch_file(method, index, table)
        if seed not in seeds_of(method) or not path.exists():
          continue
        directory = retrain_dir(method, index, seed, table)
        if not layout_lib.eval_file(directory / finetune.MODEL_DIR).exists():
          timed(f"retrain/{method}", lambda p=path, d=directory, s=seed, m=method: retrain(
              p, d, s, layers=m == LAYERS))


def retrain_config_for(arch_json: pathlib.Path, seed: int, layers: bool
                       ) -> ml_collections.ConfigDict:
  """The retraining recipe (the flags') of the arch in `arch_json`, with `seed`."""
  config = retrain_config.get_config(f"arch={arch_json}")
  config.seed = seed
  if layers:
    config.distill.hidden_weight, config.distill.attention_weight = map(float,
                                                                        _LAYER_WEIGHTS.value)
  config.data.glue_dir = _GLUE_DIR.value
  config.optim.num_epochs = _RETRAIN_EPOCHS.value
  config.data.max_train_examples = _RETRAIN_EXAMPLES.value
  return config


def retrain(arch_json: pathlib.Path, directory: pathlib.Path, seed: int, layers: bool) -> None:
  finetune.train_and_evaluate(retrain_config_for(arch_json, seed, layers), str(directory))


def all_archs(table: CostTable) -> dict[str, Arch]:
  """Every arch the benchmark retrained, by its JSON (the measure phase times each once)."""
  archs = {}
  for method in _METHODS.value:
    for index in range(len(fractions())):
      path = arch_file(method, index, table)
      if path.exists():
        arch = search_space.Arch(**json.loads(path.read_text())["arch"])
        archs[arch.to_json()] = arch
  return archs


def measure(table: CostTable) -> None:
  """Times every arch, the base and the BERT-base shape, interleaved round by round."""
  bert_base = search_space.get_space("bert_base")
  bert_base_table = CostTable(space=dataclasses.replace(bert_base, seq_len=table.space.seq_len),
                              runtime=table.runtime, host=table.host, protocol=table.protocol)
  calls = {"base": (table, table.space.largest_arch()),
           "bert_base": (bert_base_table, bert_base.largest_arch()),
           **{key: (table, arch) for key, arch in all_archs(table).items()}}
  times: dict[str, list[float]] = {key: [] for key in calls}
  for round_index in range(_ROUNDS.value):
    for key, (owner, arch) in calls.items():
      times[key].append(stages.measure_arch_ms(owner, arch))
    logging.info("Timing round %d/%d done (%d models).", round_index + 1, _ROUNDS.value,
                 len(calls))
  files.write_json_atomically(task_dir() / "latency.json", {
      "times_ms": times, "machine": machine_facts(), "runtime": table.runtime.to_dict(),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "rounds": _ROUNDS.value, "units": "table (against the table's reference block)"})


def compute_seconds() -> dict[str, float]:
  """Wall seconds per ledger job (`search/<method>`, `retrain/<method>`), resumed runs summed."""
  ledger = task_dir() / "compute.jsonl"
  totals: dict[str, float] = {}
  for line in (ledger.read_text().splitlines() if ledger.exists() else []):
    record = json.loads(line)
    totals[record["job"]] = totals.get(record["job"], 0.0) + record["seconds"]
  return totals


def compute_core_hours() -> dict[str, Any]:
  """Core-hours per method (its searches and retrainings), and the searches of search-once-
  deploy-many against one search per target (whose first search is the search-once one)."""
  hours = {job: s * (machine_facts()["cores"] or 1) / 3600 for job, s in compute_seconds().items()}
  per_method: dict[str, float] = {}
  for job, h in hours.items():
    method = job.split("/")[1]
    per_method[method] = per_method.get(method, 0.0) + h
  once = hours.get("search/differentiable", 0.0)
  others = hours.get(f"search/{PER_TARGET}")  # None: the per-target searches have not run.
  return {"per_method": per_method, "search_once": once,
          "search_per_target": None if others is None else once + others}


def methods_run() -> list[str]:
  """The --methods with a search or a retraining in the compute ledger. The others are left out:
  a variant that never ran would otherwise show differentiable's arch files, which its own
  resolve to (layer distillation everywhere, one search per target at the first target)."""
  ran = {job.split("/")[1] for job in compute_seconds()}
  if missing := [m for m in _METHODS.value if m not in ran]:
    logging.warning("Never ran in %s (no search or retraining in its compute ledger), so left "
                    "out of the report: %s.", task_dir(), ", ".join(missing))
  return [m for m in _METHODS.value if m in ran]


def _point(method: str, index: int, table: CostTable, times: dict[str, list[float]]
           ) -> dict[str, Any] | None:
  path = arch_file(method, index, table)
  if not path.exists():
    return None
  searched = json.loads(path.read_text())
  arch = search_space.Arch(**searched["arch"])
  if search := searched_by(method, index, table):
    check_recipe(*search)
  runs = []
  for seed in seeds_of(method):
    directory = retrain_dir(method, index, seed, table)
    eval_path = layout_lib.eval_file(directory / finetune.MODEL_DIR)
    if eval_path.exists():
      check_recipe(directory, retrain_config_for(path, seed, layers=method == LAYERS))
      evaluation = json.loads(eval_path.read_text())
      runs.append({"seed": seed, "metrics": evaluation["metrics"],
                   "train_examples": evaluation["num_train_examples"],
                   "epochs": evaluation["epochs"]})
  main = metrics.main_metric(_TASK.value)
  values = [100 * r["metrics"][main] for r in runs]
  point = {"arch": searched["arch"], "predicted_ms": searched["predicted_ms"], "runs": runs,
           "mean": float(np.mean(values)) if values else None,
           "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
           "before_retraining": searched.get("subnet_metrics_before_retraining"),
           "held_out_loss": searched.get("held_out_loss")}
  measured = times.get(arch.to_json())
  if measured:
    point.update(measured_ms=float(np.median(measured)),
                 speedup=float(np.median(np.divide(times["base"], measured))),
                 speedup_vs_bert_base=float(np.median(np.divide(times["bert_base"], measured))))
  return point


def check_recipe(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  """Refuses to report `workdir`'s results when its manifest records another recipe than the
  flags give (the report states the flags as every point's recipe).

  Only keys on both sides are compared: a manifest leaves out input paths (it hashes the inputs)
  and predates keys added since.

  Raises:
    ValueError: naming the manifest and every differing key with both values.
  """
  manifest = workdirs.read_manifest(workdir / workdirs.MANIFEST_FILE)
  recorded = (manifest or {}).get("fields", {})
  wanted = workdirs.config_fields(config)
  shared = recorded.keys() & wanted.keys()
  diff = workdirs.differences({k: recorded[k] for k in shared}, {k: wanted[k] for k in shared})
  if diff:
    raise ValueError(
        f"{workdir / workdirs.MANIFEST_FILE} records another recipe than this report's flags "
        "give:\n  " + "\n  ".join(diff) + "\nPass the recipe flags the train phase ran with "
        "(its command is in that manifest).")


def majority_class_metric() -> float | None:
  """Dev main metric (%) of always predicting the train set's majority class; None for stsb."""
  task = glue.get_task(_TASK.value)
  if task.is_regression:
    return None
  train, dev = (glue.load_split(task.name, split, _GLUE_DIR.value) for split in ("train", "dev"))
  values = metrics.majority_class_metrics(task.name, [e.label for e in train],
                                          [e.label for e in dev])
  return 100 * values[metrics.main_metric(task.name)]


def other_methods(points: dict[str, Any]) -> dict[str, Any]:
  """The points of the methods ours is compared with (not ours or its variants), with a mean."""
  return {m: p for m, p in points.items()
          if m not in ("differentiable", *OURS_VARIANTS) and p["mean"] is not None}


def report(table: CostTable) -> dict[str, Any]:
  latency_file = task_dir() / "latency.json"
  latency = json.loads(latency_file.read_text()) if latency_file.exists() else None
  times = latency["times_ms"] if latency else {}
  teacher_eval = json.loads(layout_lib.eval_file(pathlib.Path(_TEACHER.value)).read_text())
  main = metrics.main_metric(_TASK.value)
  teacher_metric = 100 * teacher_eval["metrics"][main]
  methods = methods_run()
  targets = []
  for index, (fraction, target) in enumerate(zip(fractions(), targets_ms(table))):
    points = {m: p for m in methods if (p := _point(m, index, table, times))}
    ours = points.get("differentiable")
    verdict = {}
    if ours and ours["mean"] is not None:
      # Whether each of ours (discretized, selected) is >= every other method within its std.
      verdict["beats_or_ties"] = {
          mine: {m: points[mine]["mean"] >= p["mean"] - points[mine]["std"]
                 for m, p in other_methods(points).items()}
          for mine in ("differentiable", SELECTED)
          if points.get(mine) and points[mine]["mean"] is not None}
      gains = {"layer_distillation_gain": LAYERS, "held_out_selection_gain": SELECTED,
               **({"per_target_search_gain": PER_TARGET} if index else {})}
      for name, variant in gains.items():
        if points.get(variant) and points[variant]["mean"] is not None:
          verdict[name] = points[variant]["mean"] - ours["mean"]
      verdict["points_below_teacher"] = teacher_metric - ours["mean"]
      verdict["cofi_bar"] = COFI_BARS.get(round(1 / fraction))
      if verdict["cofi_bar"] is not None:
        verdict["within_cofi_bar"] = verdict["points_below_teacher"] <= verdict["cofi_bar"]
    targets.append({"fraction": fraction, "speedup_target": 1 / fraction, "target_ms": target,
                    "points": points, "verdict": verdict})
  return {
      "task": _TASK.value, "main_metric": main,
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": shlex.join(["python", "-m", "bench.frontier", *sys.argv[1:]]),
      "code": code_version(), "machine": machine_facts(),
      "timing": latency and {k: latency[k] for k in ("machine", "date", "rounds", "units")},
      "base_ms": times.get("base") and float(np.median(times["base"])),
      "bert_base_ms": times.get("bert_base") and float(np.median(times["bert_base"])),
      "teacher": {"path": _TEACHER.value, "metric": teacher_metric,
                  "train_examples": teacher_eval["num_train_examples"],
                  "epochs": teacher_eval["epochs"]},
      "majority_class": majority_class_metric(),
      # The table's hash: its path may be a lost workdir; commit it next to the report.
      "table": _TABLE.value, "table_sha256": files.file_sha256(_TABLE.value),
      "search_epochs": _SEARCH_EPOCHS.value, "search_examples": _SEARCH_EXAMPLES.value,
      "retrain_examples": _RETRAIN_EXAMPLES.value,
      "retrain_epochs": _RETRAIN_EPOCHS.value, "num_evaluations": _EVALUATIONS.value,
      "eval_examples": _EVAL_EXAMPLES.value,
      "compute_core_hours": compute_core_hours(),
      "targets": targets}


STYLES = {"differentiable": ("*", "tab:red", 140), LAYERS: ("*", "tab:orange", 90),
          PER_TARGET: ("X", "tab:brown", 60), SELECTED: ("*", "tab:pink", 110),
          "evolution": ("P", "tab:purple", 70),
          "random": ("o", "0.5", 40), "layer_dropped": ("v", "tab:blue", 50),
          "uniform_width": ("s", "tab:green", 45)}


def _examples(count: int) -> str:
  """How much train data a stage saw (the subset flags; 0 is all)."""
  return f"a seeded subset of {count} train examples" if count else "all train data"


def _display_name(task: str) -> str:
  """GLUE's own spelling of a task ("CoLA", "SST-2"), for titles and tables."""
  return glue.get_task(task).dir_name


def plot(result: dict[str, Any], path: pathlib.Path) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4.8))
  labelled = set()
  for target in result["targets"]:
    for method, point in target["points"].items():
      x = point.get("measured_ms", point["predicted_ms"])
      if point["mean"] is None:
        continue
      marker, color, size = STYLES[method]
      ax.errorbar(x, point["mean"], yerr=point["std"] or None, fmt="none", ecolor=color,
                  capsize=3)
      ax.scatter(x, point["mean"], marker=marker, color=color, s=size, zorder=3,
                 label=None if method in labelled else method.replace("_", " "))
      labelled.add(method)
  if result["base_ms"]:
    ax.scatter(result["base_ms"], result["teacher"]["metric"], marker="D", color="black", s=50,
               label="base (teacher)", zorder=3)
  if result.get("majority_class") is not None:
    ax.axhline(result["majority_class"], color="0.4", linestyle=":", linewidth=1,
               label="majority class")
  ax.set(xlabel="measured latency, table units (ms)" if result["base_ms"]
         else "predicted latency (ms; not measured yet)",
         ylabel=f"dev {result['main_metric']} (%)",
         title=(f"{_display_name(result['task'])}: accuracy vs latency, every method "
                "(mean +- std)"))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _fmt(value, spec=".2f"):
  return "n/a" if value is None else format(value, spec)


def _mean_std(point: dict[str, Any] | None) -> str:
  if not point or point["mean"] is None:
    return "n/a"
  return f"{point['mean']:.2f} +- {point['std']:.2f} ({len(point['runs'])})"


def write_markdown(result: dict[str, Any], path: pathlib.Path) -> None:
  teacher = result["teacher"]
  per_target = result["compute_core_hours"]["search_per_target"]  # None: not run.
  lines = [f"# Accuracy-latency frontier: {_display_name(result['task'])} "
           f"({result['main_metric']})", "",
           f"- command: `{result['command']}` (phases train, measure, report)",
           f"- date (UTC): {result['date']}; code {result['code']}",
           f"- machine: {result['machine']}",
           f"- timing: {result['timing']}",
           f"- base {_fmt(result['base_ms'])} ms, BERT-base shape {_fmt(result['bert_base_ms'])} "
           f"ms (random weights, same runtime); teacher {teacher['metric']:.2f} "
           f"({teacher['train_examples']} examples, {teacher['epochs']:.1f} epochs); "
           f"majority class {_fmt(result.get('majority_class'))}",
           f"- searches: {result['search_epochs']:g} supernet epochs on "
           f"{_examples(result['search_examples'])}; evolution/random budget "
           f"{result['num_evaluations']} subnets on {result['eval_examples']} held-out examples; "
           "every arch retrained "
           f"{result['retrain_epochs']:g} epochs on {_examples(result['retrain_examples'])}, "
           "logits distillation",
           "- compute (core-hours, wall x cores; searches and retrainings): " + ", ".join(
               f"{m} {h:.2f}" for m, h in result["compute_core_hours"]["per_method"].items()),
           f"- searches for all {len(result['targets'])} targets: search once, deploy many "
           f"{result['compute_core_hours']['search_once']:.2f} core-h; one search per target "
           + ("not run" if per_target is None else f"{per_target:.2f} core-h"), "",
           "| target | method | arch (layers, hidden, heads, FFN) | predicted ms | measured ms | "
           "x base | x BERT-base | dev (mean +- std, seeds) | before retraining |",
           "|---|---|---|---|---|---|---|---|---|"]
  for target in result["targets"]:
    for method, p in target["points"].items():
      a = p["arch"]
      before = p["before_retraining"] or {}
      lines.append(
          f"| {target['speedup_target']:.0f}x ({target['target_ms']:.2f} ms) | {method} | "
          f"{a['num_layers']}, {a['hidden_size']}, {list(a['heads'])}, {list(a['ffn'])} | "
          f"{p['predicted_ms']:.2f} | {_fmt(p.get('measured_ms'))} | "
          f"{_fmt(p.get('speedup'))} | {_fmt(p.get('speedup_vs_bert_base'))} | "
          f"{_mean_std(p)} | "
          f"{_fmt(before.get(result['main_metric']) and 100 * before[result['main_metric']])} |")
  lines += ["", "| target | points below teacher (ours) | CoFi bar | within | layer "
            "distillation gain | held-out selection gain | search-per-target gain | ours >= "
            "others (within ours' std) | selected >= others |",
            "|---|---|---|---|---|---|---|---|---|"]
  beats = lambda v, mine: ", ".join(f"{m}: {'yes' if ok else 'NO'}"
                                    for m, ok in v["beats_or_ties"].get(mine, {}).items())
  for target in result["targets"]:
    v = target["verdict"]
    if v:
      lines.append(f"| {target['speedup_target']:.0f}x | {v['points_below_teacher']:.2f} | "
                   f"{_fmt(v['cofi_bar'])} | {v.get('within_cofi_bar', 'n/a')} | "
                   + " | ".join(_fmt(v.get(gain), "+.2f") for gain in (
                       "layer_distillation_gain", "held_out_selection_gain",
                       "per_target_search_gain"))
                   + f" | {beats(v, 'differentiable')} | {beats(v, SELECTED) or 'n/a'} |")
  lines += ["", f"![frontier]({path.with_suffix('.png').name})", ""]
  path.write_text("\n".join(lines))


def _host(result: dict[str, Any]) -> str:
  """The timing host of a report, as "family/model (SIMD)"."""
  timing = result.get("timing")
  if not timing:
    return "not timed"
  cpu = timing["machine"]["cpu_identity"]
  simd = "AVX-512" if "avx512f" in cpu["simd"] else "AVX2" if "avx2" in cpu["simd"] else "no AVX2"
  return f"{cpu['family']}/{cpu['model']} ({simd})"


def write_summary(out: pathlib.Path) -> None:
  """out/summary.md: every task report in `out`, one row per target (the README's table)."""
  lines = ["# Frontier summary: every task in this directory", "",
           "Dev metric mean +- std (seeds) per target; ours = the differentiable search, "
           "discretized and with held-out selection; best other = the best of evolution, random, "
           "layer-drop and uniform width. Speed-ups are measured on each task's own timing, on the "
           "host its row names (CPU family/model, SIMD; see its file): never compare them across "
           "hosts.", "",
           "| task (metric) | timed on | teacher | majority class | target | ours, discretized | ours, "
           "selected | best other | selected - best other | selected: x base, x BERT-base | "
           "teacher - best of ours | CoFi bar |", "|" + "---|" * 12]
  for path in sorted(out.glob("*.json")):
    result = json.loads(path.read_text())
    for target in result["targets"]:
      points = target["points"]
      ours = [points.get(m) for m in ("differentiable", SELECTED)]
      best_ours = max((p["mean"] for p in ours if p and p["mean"] is not None), default=None)
      others = other_methods(points)
      best = max(others, key=lambda m: others[m]["mean"], default=None)
      selected = points.get(SELECTED) or {}
      if selected.get("mean") is None:
        selected = {}  # Not retrained yet: a timing but no score, so the row shows neither.
      gap = selected["mean"] - others[best]["mean"] if best and selected else None
      teacher = result["teacher"]["metric"]
      lines.append(
          f"| [{_display_name(result['task'])}]({path.with_suffix('.md').name}) "
          f"({result['main_metric']}) | {_host(result)} | {teacher:.2f} | "
          f"{_fmt(result.get('majority_class'))} | "
          f"{target['speedup_target']:.0f}x | {_mean_std(ours[0])} | {_mean_std(ours[1])} | "
          + (f"{best} {_mean_std(others[best])}" if best else "n/a")
          + f" | {_fmt(gap, '+.2f')} | {_fmt(selected.get('speedup'))}, "
          f"{_fmt(selected.get('speedup_vs_bert_base'), '.1f')} | "
          f"{_fmt(None if best_ours is None else teacher - best_ours)} | "
          f"{_fmt(target['verdict'].get('cofi_bar'), '.1f')} |")
  (out / "summary.md").write_text("\n".join(lines) + "\n")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  jobs.quiet_library_logs()
  table = load_table(_TABLE.value)
  task_dir().mkdir(parents=True, exist_ok=True)
  if _PHASE.value == "train":
    train(table)
  elif _PHASE.value == "measure":
    measure(table)
  else:
    result = report(table)
    out = pathlib.Path(_OUT.value) / _TASK.value
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    write_markdown(result, out.with_suffix(".md"))
    write_summary(out.parent)
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
  app.run(main)
