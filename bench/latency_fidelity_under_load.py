"""Cost-table fidelity on a quiet machine and under a CPU hog: the MiniLM table built and
validated twice, on the same host, one condition after the other.

  .venv/bin/python -m bench.latency_fidelity_under_load --workdir=runs/fidelity_under_load \
      --out=bench/results/latency_fidelity_under_load

Each condition builds its table in WORKDIR/<condition>/table (configs/cost_table.py, timed
against its reference model) and validates it on the same random architectures
(`latency_loss.fidelity.validate`); its result is written to WORKDIR/<condition>/result.json
as soon as it is done, and a rerun skips finished conditions (a killed build resumes). Under
"loaded", one busy process pinned to one core runs from before the build to after the
validation; it ends by itself after --hog_seconds whatever happens. Nothing else may run on
the machine meanwhile.
"""

from models import native_logs

native_logs.quiet_native_logs()  # Before TensorFlow loads (imported below): it reads it once.

import datetime
import json
import os
import pathlib
import shlex
import sys
import time
from typing import Any

from absl import app, flags, logging

from bench.machine import code_version, machine_facts, start_hog
from configs import cost_table as cost_table_config
from latency_loss import builder, fidelity
from models import files

_WORKDIR = flags.DEFINE_string("workdir", "runs/fidelity_under_load", "Where the tables go.")
_OUT = flags.DEFINE_string("out", "runs/fidelity_under_load/latency_fidelity_under_load",
                           "Result path without suffix (bench/results/... to commit it).")
_SPACE = flags.DEFINE_string("space", "minilm", "Search space of the tables.")
_STATISTIC = flags.DEFINE_enum("statistic", "median", ["median", "min"],
                               "The tables' timing statistic (configs/cost_table.py).")
_PRIORITY = flags.DEFINE_enum("priority", "realtime", ["realtime", "normal"],
                              "The tables' timing priority (configs/cost_table.py).")
_NUM_ARCHS = flags.DEFINE_integer("num_archs", 50, "Random architectures validated per table.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the architecture sampler (same in both).")
_ROUNDS = flags.DEFINE_integer("rounds", 1, "Validation passes over the architectures.")
_HOG_SECONDS = flags.DEFINE_integer("hog_seconds", 5400, "Upper bound of the hog's life.")

CONDITIONS = ("quiet", "loaded")


def run_condition(condition: str) -> dict[str, Any]:
  """Builds and validates one condition's table (resuming), or reads its finished result."""
  workdir = pathlib.Path(_WORKDIR.value) / condition
  result_file = workdir / "result.json"
  if result_file.exists():
    logging.info("%s: done (%s).", condition, result_file)
    return json.loads(result_file.read_text())
  hog = start_hog(_HOG_SECONDS.value) if condition == "loaded" else None
  try:
    config = cost_table_config.get_config(f"space={_SPACE.value},statistic={_STATISTIC.value},"
                                              f"priority={_PRIORITY.value}")
    start = time.time()
    table = builder.build_table(config, str(workdir / "table"))
    build_wall_s = time.time() - start  # Waiting for quiet included (this run's part).
    validation = fidelity.validate(table, _NUM_ARCHS.value, _SEED.value, _ROUNDS.value)
  finally:
    if hog is not None:
      hog.kill()
      hog.wait()
  result = {"condition": condition, "build_seconds": table.host["build_seconds"],
            "build_wall_s": round(build_wall_s, 1),
            "waited_for_quiet_s": table.host.get("waited_for_quiet_s"),
            "contended_blocks": table.host.get("contended_blocks"),
            "reference": table.host.get("reference"), "host": table.host,
            "table": str(workdir / "table" / builder.TABLE_NAME), **validation}
  workdir.mkdir(parents=True, exist_ok=True)
  files.write_json_atomically(result_file, result)
  logging.info("%s: %s", condition, json.dumps(result["summary"]))
  return result


def plot(results: dict[str, dict[str, Any]], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 5), squeeze=False)
  for ax, (condition, result) in zip(axes[0], results.items()):
    measured = [r["measured_ms"] for r in result["records"]]
    predicted = [r["predicted_ms"] for r in result["records"]]
    lim = [0, 1.05 * max(measured + predicted)]
    ax.scatter(measured, predicted, s=14)
    ax.plot(lim, lim, "k-", lw=0.8)
    ax.fill_between(lim, [0.9 * v for v in lim], [1.1 * v for v in lim], alpha=0.15)
    s = result["summary"]
    ax.set(xlim=lim, ylim=lim, xlabel="measured whole model (ms, reference units)",
           ylabel="predicted (ms)", title=f"{condition}: MAPE {s['mape_pct']:.1f}%, "
           f"{100 * s['within_10pct']:.0f}% within 10%")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_markdown(path: str, report: dict[str, Any]) -> None:
  rows = ["| condition | MAPE % | within 5% | within 10% | bias % | max error % | Spearman | "
          "build s (timing) | build s (wall) | waited for quiet s | contended blocks | scheduling |",
          "|---" * 12 + "|"]
  for condition, r in report["results"].items():
    s = r["summary"]
    rows.append(f"| {condition} | {s['mape_pct']:.2f} | {s['within_5pct']:.2f} | "
                f"{s['within_10pct']:.2f} | {s['mean_error_pct']:+.2f} | "
                f"{s['max_abs_error_pct']:.1f} | {s['spearman']:.3f} | {r['build_seconds']:.0f} | "
                f"{r.get('build_wall_s', float('nan')):.0f} | "
                f"{r['waited_for_quiet_s'] or 0:.0f} | {len(r['contended_blocks'] or [])} | "
                f"{r['host'].get('timing_priority', 'normal')} |")
  ablations = []
  for condition, r in report["results"].items():
    for name, label in (("summary_one_depth", "cost model fitted on one depth (before)"),
                        ("summary_without_context_factor", "isolated blocks, no fit"),
                        ("summary_raw_timings", "whole models timed alone (not against the "
                                                "reference)")):
      if name in r:
        ablations.append(f"- {condition}, {label}: MAPE {r[name]['mape_pct']:.2f}%, within 10% "
                         f"{r[name]['within_10pct']:.2f}, bias {r[name]['mean_error_pct']:+.1f}%.")
  machine = report["machine"]
  lines = [f"# Cost-table fidelity, quiet vs under load ({report['space']}, TFLite XNNPACK fp32, "
           f"2 threads, statistic {report['statistic']}, priority "
           f"{report.get('priority', 'normal')})", "", f"- command: `{report['command']}`", f"- date (UTC): {report['date']}",
           f"- machine: {machine['cpu']}, {machine['cores']} cores, SIMD "
           f"{machine['cpu_identity'].get('simd')}", f"- code: {report['code']}",
           f"- load: one busy process pinned to core {machine['cores'] - 1} for the whole build "
           "and validation of the loaded table; nothing else running.",
           f"- validation: {report['num_archs']} archs (the base + random ones, seed "
           f"{report['seed']}), {report['rounds']} round(s), each timed against the table's "
           "reference model, in its quiet units.", "", *rows, "", "Ablations:", *ablations, "",
           f"![scatter]({os.path.basename(path).removesuffix('.md')}.png)", ""]
  pathlib.Path(path).write_text("\n".join(lines))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  results = {condition: run_condition(condition) for condition in CONDITIONS}
  report = {"command": shlex.join(["python", "-m", "bench.latency_fidelity_under_load",
                                   *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_facts(), "code": code_version(), "space": _SPACE.value,
            "num_archs": _NUM_ARCHS.value, "seed": _SEED.value, "rounds": _ROUNDS.value,
            "statistic": _STATISTIC.value, "priority": _PRIORITY.value,
            "results": results}
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  files.write_json_atomically(out.with_suffix(".json"), report)
  plot(results, str(out.with_suffix(".png")))
  write_markdown(str(out.with_suffix(".md")), report)
  print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
  app.run(main)
