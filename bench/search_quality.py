"""Does the search hit its latency targets, and beat hand-shrunk and random archs there?

  GLUE_DIR=../shared/data/glue python -m bench.search_quality --workdir=runs/bench_search \
      --teacher=runs/bench_finetune/sst2/model \
      --table=bench/results/cost_table_minilm_tflite.json --base_ms=18.0 --phase=train
  python -m bench.search_quality ... --phase=measure   # on a quiet machine
  python -m bench.search_quality ... --phase=report

For each target (a fraction of the base model's measured latency, --base_ms or measured now), the
pipeline searches, retrains the searched subnet with distillation and exports it; the baselines
(the base with its top layers dropped, every width shrunk uniformly, --num_random random archs),
each the largest of its family that fits the same budget and sliced from the same teacher, are
retrained with the same recipe and exported. `measure` times every exported fp32 model on the
table's runtime; `report` writes bench/results/search_quality.{json,md,png}. Phases are separate
because training can share the machine and timing cannot.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import shlex
import sys
from typing import Any

import numpy as np

from absl import app, flags, logging

from bench.machine import code_version, machine_facts
from configs import pipeline as pipeline_config
from darts import layout as layout_lib, report as report_lib, stages
from darts.data import glue
from darts.nas import baselines
from darts.training import jobs
from latency_loss.table import load_table

_WORKDIR = flags.DEFINE_string("workdir", None, "Root of every run of the benchmark.")
_TEACHER = flags.DEFINE_string("teacher", None, "The fine-tuned teacher (darts.train model/).")
_TABLE = flags.DEFINE_string("table", None, "Cost table of the runtime the targets are for.")
_TASK = flags.DEFINE_string("task", "sst2", "GLUE task.")
_BASE_MS = flags.DEFINE_float("base_ms", 0.0, "Measured latency of the base model; 0: measure.")
_FRACTIONS = flags.DEFINE_list("fractions", ["0.5", "0.3", "0.7"], "Targets, x base latency.")
_NUM_RANDOM = flags.DEFINE_integer("num_random", 2, "Random archs per target.")
_SEARCH_EXAMPLES = flags.DEFINE_integer("search_examples", 10000, "SST-2 train subsample.")
_RETRAIN_EXAMPLES = flags.DEFINE_integer("retrain_examples", 10000,
                                         "Retraining subsample (0: all of train).")
_RETRAIN_EPOCHS = flags.DEFINE_float("retrain_epochs", 1.0, "Retraining epochs, every arch.")
_PHASE = flags.DEFINE_enum("phase", "train", ["train", "measure", "report"], "What to run.")
_OUT = flags.DEFINE_string("out", "bench/results/search_quality", "Result path, no suffix.")
flags.mark_flags_as_required(["workdir", "teacher", "table"])

LOW_FRACTION = 0.85  # The searched arch must not waste more budget than this.


def bench_config(target_ms: float):
  """The pipeline config every run of the benchmark shares (fp32 export, 2-thread timing)."""
  config = pipeline_config.get_config(f"task={_TASK.value}")
  config.latency_table = _TABLE.value
  config.teacher_model = _TEACHER.value
  config.latency.target_ms = target_ms
  config.search.data.max_train_examples = _SEARCH_EXAMPLES.value
  config.retrain.data.max_train_examples = _RETRAIN_EXAMPLES.value
  config.retrain.optim.num_epochs = _RETRAIN_EPOCHS.value
  config.export.precisions = "fp32"
  config.measure.threads = (load_table(_TABLE.value).runtime.threads,)
  config.measure.fidelity_archs = 0
  return config


def target_dir(fraction: float) -> pathlib.Path:
  return pathlib.Path(_WORKDIR.value) / f"target{round(100 * fraction)}"


def baseline_archs(target_ms: float, budget_ms: float) -> dict[str, Any]:
  """Each baseline family's arch for this budget (None where no arch of the family fits)."""
  table = load_table(_TABLE.value)
  space = table.space
  archs = {"layer_dropped": baselines.layer_dropped(space, table.predict_ms, budget_ms),
           "uniform_width": baselines.uniform_width(space, table.predict_ms, budget_ms)}
  randoms = baselines.random_under_budget(space, table.predict_ms, LOW_FRACTION * target_ms,
                                          budget_ms, _NUM_RANDOM.value, seed=round(target_ms * 100))
  archs.update({f"random_{i}": arch for i, arch in enumerate(randoms)})
  return archs


def prepare_baseline(layout: layout_lib.Layout, arch, target_ms: float) -> None:
  """Slices the teacher to `arch` and writes the search-shaped arch.json retraining reads."""
  task = glue.get_task(_TASK.value)
  baselines.prepare(_TEACHER.value, task.name, task.num_labels, load_table(_TABLE.value), arch,
                    target_ms, layout.search_dir)


def budget_ms(target_ms: float) -> float:
  """The discretization budget the search uses; the baselines must fit the same one."""
  return target_ms * (1 - bench_config(target_ms).search.latency.margin)


def runs_of(fraction: float, base_ms: float) -> dict[str, pathlib.Path]:
  """name -> pipeline workdir of every run at this target ('searched' first)."""
  target_ms = fraction * base_ms
  runs = {"searched": target_dir(fraction)}
  for name, arch in baseline_archs(target_ms, budget_ms(target_ms)).items():
    if arch is not None:
      runs[name] = target_dir(fraction) / "baselines" / name
  return runs


def train(base_ms: float) -> None:
  for fraction in map(float, _FRACTIONS.value):
    target_ms = fraction * base_ms
    config = bench_config(target_ms)
    budget = budget_ms(target_ms)
    logging.info("=== target %.0f%%: %.2f ms (budget %.2f ms)", 100 * fraction, target_ms, budget)
    stages.run(config, str(target_dir(fraction)),
               stages=["target", "search", "retrain", "export"])
    for name, arch in baseline_archs(target_ms, budget).items():
      if arch is None:
        logging.info("%s: no arch of this family fits %.2f ms.", name, budget)
        continue
      layout = layout_lib.Layout(target_dir(fraction) / "baselines" / name)
      prepare_baseline(layout, arch, target_ms)
      stages.run(config, str(layout.root), stages=["retrain", "export"])


def measure(base_ms: float) -> None:
  for fraction in map(float, _FRACTIONS.value):
    for root in runs_of(fraction, base_ms).values():
      stages.run(bench_config(fraction * base_ms), str(root), stages=["measure"])


def _record(root: pathlib.Path) -> dict[str, Any]:
  layout = layout_lib.Layout(root)
  searched = json.loads(layout.arch_file.read_text())
  evaluation = json.loads(layout.retrain_eval_file.read_text())
  latency = json.loads(layout.latency_file.read_text())
  fp32 = latency["models"]["fp32"]
  measured_ms = report_lib.table_threads_ms(latency)
  # The base timed interleaved with this model (pipeline stage measure): a ratio that drifts of
  # the machine's speed between runs do not move.
  base_ms = report_lib.paired_base_ms(latency)
  return {"arch": searched["arch"], "predicted_ms": searched["predicted_ms"],
          "measured_ms": measured_ms, "paired_base_ms": base_ms,
          "fraction_of_base": base_ms and measured_ms / base_ms,
          "jax_metric": evaluation["metrics"][evaluation["main_metric"]],
          "litert_metric": fp32["metrics"][fp32["main_metric"]],
          "main_metric": evaluation["main_metric"], "workdir": str(root)}


def draw_pipeline_report(fraction: float, target_ms: float, others: dict[str, Any]) -> None:
  """The searched run's own report.md, with the baselines in its accuracy-latency figure."""
  path = target_dir(fraction) / "baselines.json"
  path.write_text(json.dumps({name.replace("_", " "): {"latency_ms": run["measured_ms"],
                                                       "metric": run["jax_metric"]}
                              for name, run in others.items()}, indent=1))
  config = bench_config(target_ms)
  config.report_baselines = str(path)
  stages.run(config, str(target_dir(fraction)), stages=["report"])


def report(base_ms: float) -> dict[str, Any]:
  teacher_eval = json.loads(layout_lib.eval_file(pathlib.Path(_TEACHER.value)).read_text())
  targets = {}
  for fraction in map(float, _FRACTIONS.value):
    target_ms = fraction * base_ms
    runs = {name: _record(root) for name, root in runs_of(fraction, base_ms).items()}
    searched = runs["searched"]
    others = {k: v for k, v in runs.items() if k != "searched"}
    draw_pipeline_report(fraction, target_ms, others)
    # Judged on the interleaved ratio to the base when there is one: the target is a fraction
    # of the base's latency, and the ratio is what a drift of the machine's speed leaves alone.
    over_target = (searched["fraction_of_base"] / fraction if searched["fraction_of_base"]
                   else searched["measured_ms"] / target_ms)
    targets[f"{round(100 * fraction)}%"] = {
        "target_ms": target_ms, "fraction": fraction, "runs": runs,
        "hit": LOW_FRACTION <= over_target <= 1.0,
        "measured_over_target": over_target,
        "beats": {k: searched["jax_metric"] > v["jax_metric"] for k, v in others.items()},
        "loss_vs_base_points": 100 * (teacher_eval["metrics"][teacher_eval["main_metric"]]
                                      - searched["jax_metric"]),
    }
  return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "command": shlex.join(["python", "-m", "bench.search_quality", *sys.argv[1:]]),
          "code": code_version(), "machine": machine_facts(), "base_ms": base_ms,
          "teacher": {"path": _TEACHER.value, "metrics": teacher_eval["metrics"]},
          "table": _TABLE.value, "search_examples": _SEARCH_EXAMPLES.value,
          "retrain_examples": _RETRAIN_EXAMPLES.value, "retrain_epochs": _RETRAIN_EPOCHS.value,
          "targets": targets}


def plot(result: dict[str, Any], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4.8))
  styles = {"searched": ("*", "tab:red", 140), "layer_dropped": ("v", "tab:blue", 50),
            "uniform_width": ("s", "tab:green", 45), "random": ("o", "0.5", 30)}
  labelled = set()
  for target in result["targets"].values():
    ax.axvline(target["target_ms"], color="0.8", ls="--", lw=1)
    for name, run in target["runs"].items():
      family = "random" if name.startswith("random") else name
      marker, color, size = styles[family]
      ax.scatter(run["measured_ms"], 100 * run["jax_metric"], marker=marker, color=color, s=size,
                 label=None if family in labelled else family.replace("_", " "), zorder=3)
      labelled.add(family)
  teacher_metric = result["teacher"]["metrics"]
  paired = [run["paired_base_ms"] for target in result["targets"].values()
            for run in target["runs"].values() if run.get("paired_base_ms")]
  base_ms = float(np.median(paired)) if paired else result["base_ms"]
  ax.scatter(base_ms, 100 * next(iter(teacher_metric.values())), marker="D",
             color="black", s=50, label="base (teacher)", zorder=3)
  ax.set(xlabel="measured latency, fp32 TFLite (ms)", ylabel="dev accuracy (%)",
         title="SST-2: searched vs hand-shrunk and random archs (dashed: targets)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_markdown(result: dict[str, Any], path: str) -> None:
  lines = ["# Search quality and target hitting (SST-2, MiniLM space)", "",
           f"- command: `{result['command']}` (phases train, measure, report)",
           f"- date (UTC): {result['date']}; code {result['code']}",
           f"- machine: {result['machine']}",
           f"- base model measured: {result['base_ms']:.2f} ms (fp32 TFLite, XNNPACK, table's "
           f"threads); teacher dev {result['teacher']['metrics']}",
           f"- search on {result['search_examples']} SST-2 train sentences, every arch retrained "
           f"on {result['retrain_examples'] or 'all'} for {result.get('retrain_epochs', 1):g} "
           "epoch(s) with distillation from the teacher; "
           "baselines sliced from the teacher (first heads, units, layers)", "",
           "| target | run | arch (layers, hidden, heads, FFN) | predicted ms | measured ms | "
           "x base (interleaved) | dev acc JAX | dev acc LiteRT |",
           "|---|---|---|---|---|---|---|---|"]
  for label, target in result["targets"].items():
    for name, run in target["runs"].items():
      a = run["arch"]
      ratio = run.get("fraction_of_base")
      lines.append(f"| {label} ({target['target_ms']:.2f} ms) | {name} | {a['num_layers']}, "
                   f"{a['hidden_size']}, {list(a['heads'])}, {list(a['ffn'])} | "
                   f"{run['predicted_ms']:.2f} | {run['measured_ms']:.2f} | "
                   f"{f'{ratio:.3f}' if ratio else 'n/a'} | "
                   f"{100 * run['jax_metric']:.2f} | {100 * run['litert_metric']:.2f} |")
  lines += ["", "| target | searched measured / target | hit (0.85-1.0) | beats | "
            "points below base |", "|---|---|---|---|---|"]
  for label, target in result["targets"].items():
    beats = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in target["beats"].items())
    lines.append(f"| {label} | {target['measured_over_target']:.2f} | "
                 f"{'yes' if target['hit'] else 'NO'} | {beats} | "
                 f"{target['loss_vs_base_points']:.2f} |")
  lines += ["", f"![Pareto]({pathlib.Path(path).with_suffix('.png').name})", ""]
  pathlib.Path(path).write_text("\n".join(lines))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  jobs.quiet_library_logs()
  table = load_table(_TABLE.value)
  base_ms = _BASE_MS.value or stages.measure_arch_ms(table, table.space.largest_arch())
  if _PHASE.value == "train":
    train(base_ms)
  elif _PHASE.value == "measure":
    measure(base_ms)
  else:
    result = report(base_ms)
    out = pathlib.Path(_OUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    plot(result, str(out.with_suffix(".png")))
    write_markdown(result, str(out.with_suffix(".md")))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
  app.run(main)
