"""The thesis of compiler-aware search, tested: is each compiler's own searched model the best
one on that compiler?

  TMPDIR=/tmp CANAO_COMPILE_CACHE=runs/compilers/compile_cache \
  .venv/bin/python -m bench.compiler_thesis --glue_dir=../shared/data/glue \
      --teacher_model=runs/demo_under_load/quiet/run/teacher/model \
      --workdir=runs/compiler_thesis --out=bench/results/compilers/thesis

1. For each cost table of bench/compilers.py (TABLES_DIR/table_<runtime>_<precision>): the
   pipeline's target, search and retrain stages (`darts.stages`) in WORKDIR/<runtime>_<precision>,
   with the same teacher, recipe and target fraction (of that table's own prediction of the
   base model). Each workdir resumes.
2. Every retrained model exported at fp32, int8 and int8_full and compiled for OpenVINO
   (`bench.exported.export_all`: verified on the whole SST-2 dev split through the
   Interpreter and through the dispatch library), in WORKDIR/<runtime>_<precision>/matrix.
3. Every model on every table's (runtime, precision), and the random-weight base model on each,
   timed interleaved (one call of each per round), so that every latency is also a fraction of
   its runtime's base measured alongside.

The thesis holds on a runtime when its own model is the most accurate of those within its target
there (measured latency <= fraction x measured base). Writes OUT.{json,md,png}. Steps 1 and 2 may
run with anything else on the machine; step 3 times: nothing else may run then.
"""

from models import native_logs

native_logs.quiet_native_logs()  # Before TensorFlow loads (imported below): it reads it once.

import datetime
import json
import math
import pathlib
import shlex
import sys
from typing import Any

from absl import app, flags, logging
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from bench.exported import candidates, export_all
from bench.machine import code_version, machine_facts
from configs import pipeline as pipeline_config
from darts import stages
from export import exporter
from latency_loss import builder
from latency_loss.backends import base as backends
from latency_loss.table import CostTable, load_table
from latency_loss.timing import TimingProtocol, time_interleaved
from models import files
from models.search_space import Arch

_TEACHER = flags.DEFINE_string("teacher_model", None, "The fine-tuned fp32 teacher (shared).")
_GLUE_DIR = flags.DEFINE_string("glue_dir", "", "GLUE root (default $GLUE_DIR).")
_TABLES_DIR = flags.DEFINE_string("tables_dir", "runs/compilers", "bench/compilers' workdir.")
_TABLES = flags.DEFINE_list("tables", ["xnnpack:fp32", "xnnpack:int8", "openvino:fp32",
                                       "openvino:int8_full"], "runtime:precision pairs.")
_FRACTION = flags.DEFINE_float("target_fraction", 0.4, "Target: this fraction of each "
                               "runtime's own base latency.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/compiler_thesis", "Pipeline workdirs go here.")
_OUT = flags.DEFINE_string("out", "runs/compiler_thesis/thesis", "Result path, no suffix.")
_RUNS = flags.DEFINE_integer("runs", 200, "Timing rounds (one call of every model each).")
flags.mark_flags_as_required(["teacher_model"])

PRECISIONS = ["fp32", "int8", "int8_full"]  # Exported; every table's precision is among them.


def column(name: str) -> str:
  """'openvino:int8_full' -> 'openvino/int8_full' (the keys of `bench.deployment.candidates`)."""
  return name.replace(":", "/")


def table_path(name: str) -> pathlib.Path:
  return (pathlib.Path(_TABLES_DIR.value) / f"table_{name.replace(':', '_')}"
          / builder.TABLE_NAME)


def run_stages(name: str, which: str) -> pathlib.Path:
  """The pipeline's stages `which` against the table `name` in its workdir (returned)."""
  runtime, precision = name.split(":")
  config = pipeline_config.get_config(f"task=sst2,runtime={runtime},precision={precision}")
  config.update(latency_table=str(table_path(name)), teacher_model=_TEACHER.value,
                glue_dir=_GLUE_DIR.value, stages=which)
  config.latency.target_fraction = _FRACTION.value
  workdir = pathlib.Path(_WORKDIR.value) / name.replace(":", "_")
  logging.info("=== %s for %s in %s", which, name, workdir)
  return stages.run(config, str(workdir)).root


def time_matrix(tables: dict[str, CostTable], models: dict[str, dict[str, bytes]]
                ) -> dict[str, dict[str, float]]:
  """{column: {model (or 'base'): median ms}}: every model and each column's base interleaved."""
  protocol = TimingProtocol(warmup=20, runs=_RUNS.value, min_seconds=0.5)
  calls = {}
  for name, table in tables.items():
    runtime = table.runtime  # The table's own: its threads, plugin and SoC.
    backend = backends.make_backend(table.space, runtime, protocol)
    calls[(column(name), "base")] = backend.arch_call(table.space.largest_arch())
    for searched_for, by_column in models.items():
      calls[(column(name), searched_for)] = backend.model_call(by_column[column(name)])
  logging.info("Timing %d models interleaved, %d rounds ...", len(calls), protocol.runs)
  stats = time_interleaved({f"{c} {m}": call for (c, m), call in calls.items()}, protocol)
  matrix: dict[str, dict[str, float]] = {}
  for c, m in calls:
    matrix.setdefault(c, {})[m] = stats[f"{c} {m}"].median_ms
  return matrix


def verdicts(rows: dict[str, dict[str, Any]], matrix: dict[str, dict[str, float]],
             fraction: float, num_examples: int) -> dict[str, dict[str, Any]]:
  """Per column: the models within its target, the most accurate of them, and whether that is
  the model searched for it. The accuracy gap is also put against one standard error of a dev
  accuracy (binomial, `num_examples`): differences below it are not evidence."""
  out = {}
  for c, latencies in matrix.items():
    target = fraction * latencies["base"]
    metric = {m: rows[m]["metrics"][c] for m in rows}
    within = sorted((m for m in rows if latencies[m] <= target), key=lambda m: -metric[m])
    best = within[0] if within else None
    others = [metric[m] for m in within if m != c]
    p = metric[c]
    out[c] = {"target_ms": target, "within_target": within, "best": best,
              # Ties count for the own model: it is then among the most accurate.
              "holds": c in within and metric[c] >= max(others, default=0.0),
              "own_within": c in within,
              "own_minus_best_other_points": (100 * (metric[c] - max(others))
                                              if c in within and others else None),
              "standard_error_points": 100 * math.sqrt(max(p * (1 - p), 1e-12) / num_examples)}
  return out


def plot(rows, matrix, verdict, path: pathlib.Path) -> None:
  """One panel per runtime: dev accuracy against measured latency (fraction of its base)."""
  fig, axes = plt.subplots(1, len(matrix), figsize=(4.2 * len(matrix), 3.8), squeeze=False)
  for ax, (c, latencies) in zip(axes[0], matrix.items()):
    for m in rows:
      share = latencies[m] / latencies["base"]
      ax.scatter(share, 100 * rows[m]["metrics"][c], s=60 if m == c else 30,
                 marker="*" if m == c else "o", label=f"searched for {m}")
    ax.axvline(_FRACTION.value, color="gray", linestyle="--", linewidth=1)
    ax.set_title(f"on {c} ({'holds' if verdict[c]['holds'] else 'does not hold'})", fontsize=9)
    ax.set_xlabel("latency / base (measured)")
  axes[0][0].set_ylabel("SST-2 dev accuracy (%)")
  axes[0][-1].legend(fontsize=7, loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_markdown(record: dict[str, Any], path: pathlib.Path) -> None:
  cols = list(record["matrix"])
  lines = ["# Compiler-aware search: each runtime's own model on every runtime", "",
           f"- command: `{record['command']}`", f"- date (UTC): {record['date']}",
           f"- machine: {record['machine']['cpu']}, {record['machine']['cores']} cores, SIMD "
           f"{record['machine']['cpu_identity'].get('simd')}", f"- code: {record['code']}",
           f"- target: {100 * record['target_fraction']:.0f}% of each runtime's own base "
           "(6x384, 12 heads, FFN 1536), set in the table's units for the search and checked "
           "here against the base measured in the same interleaved rounds",
           f"- the same teacher and retraining recipe for every model; SST-2 dev "
           f"({record['num_examples']} examples), one standard error of an accuracy ~"
           f"{max(v['standard_error_points'] for v in record['verdicts'].values()):.1f} points",
           f"- timing: 2 threads, all {sum(len(v) for v in record['matrix'].values())} models "
           f"interleaved, median of {record['runs']} rounds", "", "## Searched architectures", "",
           "| searched for | hidden | layers | heads | FFN | predicted by its table (ms) | "
           "target (table ms) |", "|---|---|---|---|---|---|---|"]
  for m, r in record["models"].items():
    a = r["arch"]
    lines.append(f"| {m} | {a['hidden_size']} | {a['num_layers']} | {a['heads']} | {a['ffn']} | "
                 f"{r['predicted_ms']:.2f} | {r['target_ms']:.2f} |")
  lines += ["", "## Measured latency (ms, and share of that runtime's base) and dev accuracy", "",
            "| searched for \\ run on | " + " | ".join(cols) + " |",
            "|---|" + "---|" * len(cols)]
  lines.append("| base (random weights) | " + " | ".join(
      f"{record['matrix'][c]['base']:.2f}" for c in cols) + " |")
  for m, r in record["models"].items():
    cells = []
    for c in cols:
      ms, share = record["matrix"][c][m], record["matrix"][c][m] / record["matrix"][c]["base"]
      mark = "" if ms <= record["verdicts"][c]["target_ms"] else " (over target)"
      own = "**" if m == c else ""
      cells.append(f"{own}{ms:.2f} ms ({100 * share:.0f}%), {100 * r['metrics'][c]:.2f}{own}{mark}")
    lines.append(f"| {m} | " + " | ".join(cells) + " |")
  lines += ["", "## Does each runtime's own model win on it?", ""]
  for c, v in record["verdicts"].items():
    gap = v["own_minus_best_other_points"]
    lines.append(
        f"- **{c}**: {'holds' if v['holds'] else 'does not hold'}. Within its target "
        f"({v['target_ms']:.2f} ms): {', '.join(v['within_target']) or 'none'}; most accurate: "
        f"{v['best']}" + (f"; own model minus the best other within target: {gap:+.2f} points "
                          f"(one standard error {v['standard_error_points']:.1f})"
                          if gap is not None else "") + ".")
  path.write_text("\n".join(lines) + "\n")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  tables = {name: load_table(str(table_path(name))) for name in _TABLES.value}
  for name in tables:  # The targets first: they time the base, so nothing else may run then.
    run_stages(name, "target")
  rows, models = {}, {}
  for name in tables:
    workdir = run_stages(name, "search,retrain")
    target = json.loads((workdir / "target.json").read_text())
    report = export_all(str(workdir / "retrain" / "model"), str(workdir / "matrix"),
                        ",".join(PRECISIONS), _GLUE_DIR.value)
    found = candidates(report, workdir / "matrix" / exporter.EXPORT_DIR, PRECISIONS, threads=2)
    rows[column(name)] = {
        "arch": report["arch"], "workdir": str(workdir), "target_ms": target["target_ms"],
        "predicted_ms": tables[name].predict_ms(Arch(**report["arch"])),
        "jax_metric": report["results"]["jax"]["metrics"],
        "metrics": {c: result["metrics"][result["main_metric"]]
                    for c, (_, _, result) in found.items()}}
    models[column(name)] = {c: model for c, (_, model, _) in found.items()}
    num_examples = report["num_examples"]
  for r in rows.values():  # What every table predicts for every searched model.
    r["predicted_by_each_table_ms"] = {column(n): t.predict_ms(Arch(**r["arch"]))
                                       for n, t in tables.items()}
  matrix = time_matrix(tables, models)
  verdict = verdicts(rows, matrix, _FRACTION.value, num_examples)
  record = {"command": shlex.join(["python", "-m", "bench.compiler_thesis", *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_facts(), "code": code_version(),
            "target_fraction": _FRACTION.value, "runs": _RUNS.value,
            "num_examples": num_examples, "models": rows, "matrix": matrix, "verdicts": verdict}
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  files.write_json_atomically(out.with_suffix(".json"), record)
  write_markdown(record, out.with_suffix(".md"))
  plot(rows, matrix, verdict, out.with_suffix(".png"))
  print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
  app.run(main)
