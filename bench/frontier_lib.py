"""The accuracy-latency frontier's grid: methods x targets x seeds of one GLUE task, their
workdirs, compute ledger and report (bench/frontier.py is its command line).

Every method runs on the same teacher and cost table. Its workdirs live under
`Grid.workdir/<task>`:
  search_<method>/           a search (differentiable, evolution, random, selected), its
                             other targets' archs in subdirectories;
  search_differentiable_per_target/<percent>/  one search per other target;
  baselines/<method>/<percent>/  layer-drop and uniform-width archs, sliced from the teacher;
  retrain/<method>/<percent>/seed<N>/  every retraining;
  compute.jsonl              wall seconds of every job (resumed jobs add their new time);
  latency.json               the measure phase's interleaved timings.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
import time
from typing import Any, Callable

import ml_collections
import numpy as np
from absl import logging

from bench.machine import code_version, machine_facts
from configs import retrain as retrain_config, search as search_config
from darts import layout as layout_lib, stages
from darts.data import glue, metrics
from darts.nas import architecture_search, baselines
from darts.training import finetune
from latency_loss.table import CostTable
from models import files, search_space, workdirs
from models.search_space import Arch

SELECTED = "differentiable_selected"  # differentiable's supernet, selection by held-out loss.
SEARCHED = ("differentiable", "evolution", "random", SELECTED)
PER_TARGET = "differentiable_per_target"  # A search per target; the first is differentiable's.
LAYERS = "differentiable_layers"  # The differentiable archs, retrained with layer distillation.
OURS_VARIANTS = (PER_TARGET, LAYERS, SELECTED)
BASELINES = {"layer_dropped": baselines.layer_dropped, "uniform_width": baselines.uniform_width}
METHODS = ("differentiable", "layer_dropped", "uniform_width", "evolution", "random", SELECTED,
           PER_TARGET, LAYERS)
# CoFi (Xia et al., 2022, Table 2/Fig. 2): points lost vs its BERT-base teacher, GPU speed-ups.
COFI_BARS = {2.0: 0.5, 3.0: 1.0, 5.0: 2.0}
LEDGER_FILE = "compute.jsonl"
LATENCY_FILE = "latency.json"


@dataclasses.dataclass(frozen=True)
class Grid:
  """One task's frontier: its methods, targets and recipe (the flags of bench/frontier.py).

  Attributes:
    workdir: root of the benchmark's runs (one directory per task).
    task: GLUE task.
    teacher: the task's fine-tuned teacher (a darts.train model/ directory).
    table_path: the cost table's file; `table` is its content.
    table: the cost table of the runtime the targets are for.
    glue_dir: GLUE files ("" for the default).
    fractions: targets, x the table's prediction of the base; the first is the searched one.
    methods: the methods to run or report, in order.
    layer_weights: differentiable_layers' distill.hidden_weight and attention_weight.
    seeds: retraining seeds of the searched methods' archs (the others get one).
    search_epochs: supernet epochs of every search.
    retrain_epochs: retraining epochs of every arch.
    search_examples: train examples of every search (0: all).
    retrain_examples: train examples of every retraining (0: all).
    num_evaluations: evolution/random budget (subnets).
    eval_examples: held-out examples per evolution/random fitness.
  """
  workdir: pathlib.Path
  task: str
  teacher: str
  table_path: str
  table: CostTable
  glue_dir: str = ""
  fractions: tuple[float, ...] = (0.5, 0.333, 0.2)
  methods: tuple[str, ...] = METHODS
  layer_weights: tuple[float, float] = (1.0, 1.0)
  seeds: int = 3
  search_epochs: float = 3.0
  retrain_epochs: float = 3.0
  search_examples: int = 0
  retrain_examples: int = 0
  num_evaluations: int = 100
  eval_examples: int = 256

  def __post_init__(self):
    if unknown := set(self.methods) - set(METHODS):
      raise ValueError(f"Unknown frontier methods {sorted(unknown)}; known: {', '.join(METHODS)}.")

  @property
  def task_dir(self) -> pathlib.Path:
    return pathlib.Path(self.workdir) / self.task

  @property
  def targets_ms(self) -> list[float]:
    base = self.table.predict_ms(self.table.space.largest_arch())
    return [f * base for f in self.fractions]

  def timed(self, name: str, job: Callable[[], Any]) -> Any:
    """Runs `job`, appending its wall time (this run's) to the compute ledger."""
    start = time.perf_counter()
    try:
      return job()
    finally:
      with (self.task_dir / LEDGER_FILE).open("a") as f:
        f.write(json.dumps({"job": name, "seconds": time.perf_counter() - start,
                            "date": datetime.datetime.now().isoformat(timespec="seconds")}) + "\n")

  def search_config_for(self, method: str, index: int | None = None
                        ) -> ml_collections.ConfigDict:
    """`method`'s search config; with `index`, a single search at the index-th target alone."""
    config = search_config.get_config(f"task={self.task},space={self.table.space.name}")
    config.teacher = self.teacher
    config.data.glue_dir = self.glue_dir
    config.optim.num_epochs = self.search_epochs
    config.data.max_train_examples = self.search_examples
    config.latency.table = self.table_path
    config.latency.update(**self.table.runtime.to_dict())
    first, *others = self.targets_ms if index is None else [self.targets_ms[index]]
    config.latency.target_ms = first
    config.latency.deploy_targets_ms = tuple(others)
    config.search.method = "differentiable" if method == SELECTED else method
    config.search.evolution.num_evaluations = self.num_evaluations
    config.search.evolution.eval_examples = self.eval_examples
    if method == "random":
      config.search.supernet_from = str(self.search_dir("evolution"))
    if method == SELECTED:
      config.search.selection = "held_out_loss"
      config.search.supernet_from = str(self.search_dir("differentiable"))
    return config

  def search_dir(self, method: str) -> pathlib.Path:
    return self.task_dir / f"search_{method}"

  def _percent(self, index: int) -> str:
    return f"{round(100 * self.fractions[index])}"

  def arch_file(self, method: str, index: int) -> pathlib.Path:
    """arch.json of `method` at the index-th target."""
    if method == LAYERS or (method == PER_TARGET and index == 0):
      return self.arch_file("differentiable", index)
    if method == PER_TARGET:
      return self.search_dir(method) / self._percent(index) / architecture_search.ARCH_FILE
    if method in SEARCHED:
      root = self.search_dir(method)
      return (root if index == 0 else architecture_search.target_dir(
          root, self.targets_ms[index])) / architecture_search.ARCH_FILE
    return self.task_dir / "baselines" / method / self._percent(index) / "arch.json"

  def retrain_dir(self, method: str, index: int, seed: int) -> pathlib.Path:
    """Where `method`'s arch at the index-th target is retrained with `seed`: that of the first
    target with the same arch (a family's widest fit can be the same at two targets); a
    per-target search's arch that search-once also found shares its retraining (same recipe)."""
    arch = self._arch_at(method, index)
    if method == PER_TARGET:
      for i in range(len(self.fractions)):
        if self._arch_at("differentiable", i) == arch:
          return self.retrain_dir("differentiable", i, seed)
    index = next(i for i in range(index + 1) if self._arch_at(method, i) == arch)
    return self.task_dir / "retrain" / method / self._percent(index) / f"seed{seed}"

  def _arch_at(self, method: str, index: int) -> dict[str, Any] | None:
    path = self.arch_file(method, index)
    return json.loads(path.read_text())["arch"] if path.exists() else None

  def seeds_of(self, method: str) -> range:
    return range(self.seeds if method in (*SEARCHED, *OURS_VARIANTS) else 1)

  def searched_by(self, method: str, index: int
                  ) -> tuple[pathlib.Path, ml_collections.ConfigDict] | None:
    """The search behind `method`'s arch at the index-th target: its workdir and the config
    this grid gives it; None for the baselines (sliced from the teacher, no search)."""
    if method == LAYERS or (method == PER_TARGET and index == 0):
      return self.searched_by("differentiable", index)
    if method == PER_TARGET:
      return (self.arch_file(method, index).parent,
              self.search_config_for("differentiable", index))
    if method in SEARCHED:
      return self.search_dir(method), self.search_config_for(method)
    return None

  def prepare(self, method: str) -> None:
    """The method's arch.json at every target: its search(es), or its baseline family's archs."""
    if method in SEARCHED or method == PER_TARGET:
      indices = [0] if method in SEARCHED else [  # One search, which resumes itself; or one
          i for i in range(1, len(self.fractions))  # per other target (the first's is ours).
          if not self.arch_file(method, i).exists()]
      for index in indices:
        workdir, config = self.searched_by(method, index)
        self.timed(f"search/{method}",
                   lambda c=config, w=workdir: architecture_search.search(c, str(w)))
    elif method in BASELINES:
      task = glue.get_task(self.task)
      margin = self.search_config_for("differentiable").latency.margin  # The searches' budget.
      for index, target in enumerate(self.targets_ms):
        arch = BASELINES[method](self.table.space, self.table.predict_ms, target * (1 - margin))
        if arch is not None:
          baselines.prepare(self.teacher, task.name, task.num_labels, self.table, arch, target,
                            self.arch_file(method, index).parent)

  def train(self) -> None:
    """Method by method (`methods` order), its archs and their seed-0 retraining; then the
    other seeds: a run cut short still has every finished method's points."""
    for seed in range(self.seeds):
      for method in self.methods:
        if seed == 0:
          self.prepare(method)
        for index in range(len(self.fractions)):
          path = self.arch_file(method, index)
          if seed not in self.seeds_of(method) or not path.exists():
            continue
          directory = self.retrain_dir(method, index, seed)
          if not layout_lib.eval_file(directory / finetune.MODEL_DIR).exists():
            config = self.retrain_config_for(path, seed, layers=method == LAYERS)
            self.timed(f"retrain/{method}", lambda c=config, d=directory: (
                finetune.train_and_evaluate(c, str(d))))

  def retrain_config_for(self, arch_json: pathlib.Path, seed: int, layers: bool
                         ) -> ml_collections.ConfigDict:
    """The retraining recipe of the arch in `arch_json`, with `seed`."""
    config = retrain_config.get_config(f"arch={arch_json}")
    config.seed = seed
    if layers:
      config.distill.hidden_weight, config.distill.attention_weight = self.layer_weights
    config.data.glue_dir = self.glue_dir
    config.optim.num_epochs = self.retrain_epochs
    config.data.max_train_examples = self.retrain_examples
    return config

  def all_archs(self) -> dict[str, Arch]:
    """Every arch the benchmark retrained, by its JSON (the measure phase times each once)."""
    archs = {}
    for method in self.methods:
      for index in range(len(self.fractions)):
        path = self.arch_file(method, index)
        if path.exists():
          arch = search_space.Arch(**json.loads(path.read_text())["arch"])
          archs[arch.to_json()] = arch
    return archs

  def measure(self, rounds: int) -> None:
    """Times every arch, the base and the BERT-base shape, interleaved round by round."""
    table = self.table
    bert_base = search_space.get_space("bert_base")
    bert_base_table = CostTable(space=dataclasses.replace(bert_base, seq_len=table.space.seq_len),
                                runtime=table.runtime, host=table.host, protocol=table.protocol)
    calls = {"base": (table, table.space.largest_arch()),
             "bert_base": (bert_base_table, bert_base.largest_arch()),
             **{key: (table, arch) for key, arch in self.all_archs().items()}}
    times: dict[str, list[float]] = {key: [] for key in calls}
    for round_index in range(rounds):
      for key, (owner, arch) in calls.items():
        times[key].append(stages.measure_arch_ms(owner, arch))
      logging.info("Timing round %d/%d done (%d models).", round_index + 1, rounds, len(calls))
    files.write_json_atomically(self.task_dir / LATENCY_FILE, {
        "times_ms": times, "machine": machine_facts(), "runtime": table.runtime.to_dict(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rounds": rounds, "units": "table (against the table's reference block)"})

  def compute_seconds(self) -> dict[str, float]:
    """Wall seconds per ledger job (`search/<method>`, `retrain/<method>`), resumed runs
    summed."""
    ledger = self.task_dir / LEDGER_FILE
    totals: dict[str, float] = {}
    for line in (ledger.read_text().splitlines() if ledger.exists() else []):
      record = json.loads(line)
      totals[record["job"]] = totals.get(record["job"], 0.0) + record["seconds"]
    return totals

  def compute_core_hours(self) -> dict[str, Any]:
    """Core-hours per method (its searches and retrainings), and the searches of search-once-
    deploy-many against one search per target (whose first search is the search-once one)."""
    cores = machine_facts()["cores"] or 1
    hours = {job: s * cores / 3600 for job, s in self.compute_seconds().items()}
    per_method: dict[str, float] = {}
    for job, h in hours.items():
      method = job.split("/")[1]
      per_method[method] = per_method.get(method, 0.0) + h
    once = hours.get("search/differentiable", 0.0)
    others = hours.get(f"search/{PER_TARGET}")  # None: the per-target searches have not run.
    return {"per_method": per_method, "search_once": once,
            "search_per_target": None if others is None else once + others}

  def methods_run(self) -> list[str]:
    """The methods with a search or a retraining in the compute ledger. The others are left
    out: a variant that never ran would otherwise show differentiable's arch files, which its
    own resolve to (layer distillation everywhere, one search per target at the first)."""
    ran = {job.split("/")[1] for job in self.compute_seconds()}
    if missing := [m for m in self.methods if m not in ran]:
      logging.warning("Never ran in %s (no search or retraining in its compute ledger), so left "
                      "out of the report: %s.", self.task_dir, ", ".join(missing))
    return [m for m in self.methods if m in ran]

  def point(self, method: str, index: int, times: dict[str, list[float]]
            ) -> dict[str, Any] | None:
    """`method`'s point at the index-th target: its arch, every seed's dev metrics, and its
    measured latency and speed-ups when `times` has it; None without an arch there."""
    path = self.arch_file(method, index)
    if not path.exists():
      return None
    searched = json.loads(path.read_text())
    arch = search_space.Arch(**searched["arch"])
    if search := self.searched_by(method, index):
      check_recipe(*search)
    runs = []
    for seed in self.seeds_of(method):
      directory = self.retrain_dir(method, index, seed)
      eval_path = layout_lib.eval_file(directory / finetune.MODEL_DIR)
      if eval_path.exists():
        check_recipe(directory, self.retrain_config_for(path, seed, layers=method == LAYERS))
        evaluation = json.loads(eval_path.read_text())
        runs.append({"seed": seed, "metrics": evaluation["metrics"],
                     "train_examples": evaluation["num_train_examples"],
                     "epochs": evaluation["epochs"]})
    main = metrics.main_metric(self.task)
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
                   speedup_vs_bert_base=float(np.median(np.divide(times["bert_base"],
                                                                  measured))))
    return point

  def majority_class_metric(self) -> float | None:
    """Dev main metric (%) of always predicting the train set's majority class; None for
    stsb."""
    task = glue.get_task(self.task)
    if task.is_regression:
      return None
    train, dev = (glue.load_split(task.name, split, self.glue_dir) for split in ("train", "dev"))
    values = metrics.majority_class_metrics(task.name, [e.label for e in train],
                                            [e.label for e in dev])
    return 100 * values[metrics.main_metric(task.name)]

  def report(self, command: str) -> dict[str, Any]:
    """Every method's point at every target, the verdicts against the others and CoFi's bars,
    the recipe, machine and compute: the content of bench/results/frontier/<task>.json."""
    latency_file = self.task_dir / LATENCY_FILE
    latency = json.loads(latency_file.read_text()) if latency_file.exists() else None
    times = latency["times_ms"] if latency else {}
    teacher_eval = json.loads(layout_lib.eval_file(pathlib.Path(self.teacher)).read_text())
    main = metrics.main_metric(self.task)
    teacher_metric = 100 * teacher_eval["metrics"][main]
    methods = self.methods_run()
    targets = []
    for index, (fraction, target) in enumerate(zip(self.fractions, self.targets_ms)):
      points = {m: p for m in methods if (p := self.point(m, index, times))}
      targets.append({"fraction": fraction, "speedup_target": 1 / fraction, "target_ms": target,
                      "points": points,
                      "verdict": verdict(points, index, fraction, teacher_metric)})
    return {
        "task": self.task, "main_metric": main,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command, "code": code_version(), "machine": machine_facts(),
        "timing": latency and {k: latency[k] for k in ("machine", "date", "rounds", "units")},
        "base_ms": times.get("base") and float(np.median(times["base"])),
        "bert_base_ms": times.get("bert_base") and float(np.median(times["bert_base"])),
        "teacher": {"path": self.teacher, "metric": teacher_metric,
                    "train_examples": teacher_eval["num_train_examples"],
                    "epochs": teacher_eval["epochs"]},
        "majority_class": self.majority_class_metric(),
        # The table's hash: its path may be a lost workdir; commit it next to the report.
        "table": self.table_path, "table_sha256": files.file_sha256(self.table_path),
        "search_epochs": self.search_epochs, "search_examples": self.search_examples,
        "retrain_examples": self.retrain_examples,
        "retrain_epochs": self.retrain_epochs, "num_evaluations": self.num_evaluations,
        "eval_examples": self.eval_examples,
        "compute_core_hours": self.compute_core_hours(),
        "targets": targets}


def verdict(points: dict[str, Any], index: int, fraction: float, teacher_metric: float
            ) -> dict[str, Any]:
  """How ours (differentiable, discretized and selected) fares at one target: whether it is
  >= every other method within its std, its variants' gains, and the points lost to the
  teacher against CoFi's bar. Empty until ours has a retrained point."""
  ours = points.get("differentiable")
  if not ours or ours["mean"] is None:
    return {}
  result = {"beats_or_ties": {
      mine: {m: ties_or_beats(points[mine], p) for m, p in other_methods(points).items()}
      for mine in ("differentiable", SELECTED)
      if points.get(mine) and points[mine]["mean"] is not None}}
  gains = {"layer_distillation_gain": LAYERS, "held_out_selection_gain": SELECTED,
           **({"per_target_search_gain": PER_TARGET} if index else {})}
  for name, variant in gains.items():
    if points.get(variant) and points[variant]["mean"] is not None:
      result[name] = points[variant]["mean"] - ours["mean"]
  result["points_below_teacher"] = teacher_metric - ours["mean"]
  result["cofi_bar"] = COFI_BARS.get(round(1 / fraction))
  if result["cofi_bar"] is not None:
    result["within_cofi_bar"] = result["points_below_teacher"] <= result["cofi_bar"]
  return result


def ties_or_beats(mine: dict[str, Any], other: dict[str, Any]) -> bool:
  """Whether point `mine` is at least as good as `other` within its seed spread: its mean is
  at least the other's mean minus its own std (the reports' rule)."""
  return mine["mean"] >= other["mean"] - mine["std"]


def check_recipe(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  """Refuses to report `workdir`'s results when its manifest records another recipe than
  `config` (the grid's, which the report states as every point's recipe).

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


def other_methods(points: dict[str, Any]) -> dict[str, Any]:
  """The points of the methods ours is compared with (not ours or its variants), with a mean."""
  return {m: p for m, p in points.items()
          if m not in ("differentiable", *OURS_VARIANTS) and p["mean"] is not None}


STYLES = {"differentiable": ("*", "tab:red", 140), LAYERS: ("*", "tab:orange", 90),
          PER_TARGET: ("X", "tab:brown", 60), SELECTED: ("*", "tab:pink", 110),
          "evolution": ("P", "tab:purple", 70),
          "random": ("o", "0.5", 40), "layer_dropped": ("v", "tab:blue", 50),
          "uniform_width": ("s", "tab:green", 45)}


def _examples(count: int) -> str:
  """How much train data a stage saw (the subset flags; 0 is all)."""
  return f"a seeded subset of {count} train examples" if count else "all train data"


def display_name(task: str) -> str:
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
         title=(f"{display_name(result['task'])}: accuracy vs latency, every method "
                "(mean +- std)"))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def fmt(value: float | None, spec: str = ".2f") -> str:
  """`value` formatted by `spec`, or "n/a" for None (not measured, not run)."""
  return "n/a" if value is None else format(value, spec)


def mean_std(point: dict[str, Any] | None) -> str:
  """A point's dev metric as "mean +- std (seeds)", or "n/a" without a retrained seed."""
  if not point or point["mean"] is None:
    return "n/a"
  return f"{point['mean']:.2f} +- {point['std']:.2f} ({len(point['runs'])})"


def write_markdown(result: dict[str, Any], path: pathlib.Path) -> None:
  teacher = result["teacher"]
  per_target = result["compute_core_hours"]["search_per_target"]  # None: not run.
  lines = [f"# Accuracy-latency frontier: {display_name(result['task'])} "
           f"({result['main_metric']})", "",
           f"- command: `{result['command']}` (phases train, measure, report)",
           f"- date (UTC): {result['date']}; code {result['code']}",
           f"- machine: {result['machine']}",
           f"- timing: {result['timing']}",
           f"- base {fmt(result['base_ms'])} ms, BERT-base shape {fmt(result['bert_base_ms'])} "
           f"ms (random weights, same runtime); teacher {teacher['metric']:.2f} "
           f"({teacher['train_examples']} examples, {teacher['epochs']:.1f} epochs); "
           f"majority class {fmt(result.get('majority_class'))}",
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
          f"{p['predicted_ms']:.2f} | {fmt(p.get('measured_ms'))} | "
          f"{fmt(p.get('speedup'))} | {fmt(p.get('speedup_vs_bert_base'))} | "
          f"{mean_std(p)} | "
          f"{fmt(before.get(result['main_metric']) and 100 * before[result['main_metric']])} |")
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
                   f"{fmt(v['cofi_bar'])} | {v.get('within_cofi_bar', 'n/a')} | "
                   + " | ".join(fmt(v.get(gain), "+.2f") for gain in (
                       "layer_distillation_gain", "held_out_selection_gain",
                       "per_target_search_gain"))
                   + f" | {beats(v, 'differentiable')} | {beats(v, SELECTED) or 'n/a'} |")
  lines += ["", f"![frontier]({path.with_suffix('.png').name})", ""]
  path.write_text("\n".join(lines))


def timing_host(result: dict[str, Any]) -> str:
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
          f"| [{display_name(result['task'])}]({path.with_suffix('.md').name}) "
          f"({result['main_metric']}) | {timing_host(result)} | {teacher:.2f} | "
          f"{fmt(result.get('majority_class'))} | "
          f"{target['speedup_target']:.0f}x | {mean_std(ours[0])} | {mean_std(ours[1])} | "
          + (f"{best} {mean_std(others[best])}" if best else "n/a")
          + f" | {fmt(gap, '+.2f')} | {fmt(selected.get('speedup'))}, "
          f"{fmt(selected.get('speedup_vs_bert_base'), '.1f')} | "
          f"{fmt(None if best_ours is None else teacher - best_ours)} | "
          f"{fmt(target['verdict'].get('cofi_bar'), '.1f')} |")
  (out / "summary.md").write_text("\n".join(lines) + "\n")




def write_report(result: dict[str, Any], out: pathlib.Path) -> pathlib.Path:
  """Writes out/<task>.{json,png,md} and out/summary.md; returns the task's markdown file."""
  path = out / result["task"]
  out.mkdir(parents=True, exist_ok=True)
  path.with_suffix(".json").write_text(json.dumps(result, indent=1))
  plot(result, path.with_suffix(".png"))
  write_markdown(result, path.with_suffix(".md"))
  write_summary(out)
  return path.with_suffix(".md")
