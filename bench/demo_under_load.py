"""`make demo`'s main job on a quiet machine and under a CPU hog: does load change the searched
architecture?

  .venv/bin/python -m bench.demo_under_load --workdir=runs/demo_under_load \
      --out=bench/results/demo_under_load

Runs `darts.pipeline` with `make demo`'s config (configs/pipeline.py:task=sst2) in
WORKDIR/quiet, then in WORKDIR/loaded with one busy process pinned to one core from before its
first stage to after its last (it ends by itself after --hog_seconds whatever happens). The
loaded run fine-tunes no teacher of its own: it takes the quiet run's
(`--config.teacher_model`), so the two runs differ only in what load can change: the cost
table, the target, the search that reads them, and everything after. Each run resumes in its
workdir (the pipeline skips finished stages), and a finished pair is only compared again.
Nothing else may run on the machine meanwhile.
"""

from models import native_logs

native_logs.quiet_native_logs()  # Before TensorFlow loads (imported below): it reads it once.

import datetime
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time
from typing import Any

from absl import app, flags, logging

from bench.machine import code_version, machine_facts, start_hog
from darts import layout as layout_lib
from latency_loss import host
from latency_loss.table import load_table
from models import files
from models.search_space import Arch

_WORKDIR = flags.DEFINE_string("workdir", "runs/demo_under_load", "Where the two runs go.")
_OUT = flags.DEFINE_string("out", "runs/demo_under_load/demo_under_load",
                           "Result path without suffix (bench/results/... to commit it).")
_GLUE_DIR = flags.DEFINE_string("glue_dir", os.environ.get("GLUE_DIR", "../shared/data/glue"),
                                "The GLUE files (as `make demo`).")
_HOG_SECONDS = flags.DEFINE_integer("hog_seconds", 5400, "Upper bound of the hog's life.")

CONFIG = "configs/pipeline.py:task=sst2"  # `make demo`'s.


def run_pipeline(workdir: pathlib.Path, flags_: list[str]) -> float:
  """Runs (or resumes) the main job in `workdir`; returns its wall time in seconds."""
  command = [sys.executable, "-m", "darts.pipeline", f"--config={CONFIG}",
             f"--workdir={workdir}", f"--config.glue_dir={os.path.abspath(_GLUE_DIR.value)}",
             *flags_]
  logging.info("Running %s", shlex.join(command))
  start = time.time()
  subprocess.run(command, check=True)
  return time.time() - start


def summarize(workdir: pathlib.Path) -> dict[str, Any]:
  """What a finished run decided, and under which conditions its table was built."""
  layout = layout_lib.Layout(workdir)
  target = json.loads(layout.target_file.read_text())
  table = load_table(str(layout.table_file))
  arch = Arch.from_json(json.dumps(json.loads(layout.arch_file.read_text())["arch"]))
  latency = json.loads(layout.latency_file.read_text())
  retrain_eval = json.loads(layout.retrain_eval_file.read_text())
  return {"arch": json.loads(arch.to_json()), "arch_predicted_ms": table.predict_ms(arch),
          "target": {k: target[k] for k in ("target_ms", "target_fraction", "base_predicted_ms",
                                            "base_measured_ms")},
          "table_conditions": host.build_conditions(table.host),
          "reference_quiet_ms": table.host["reference"]["quiet_ms"],
          "retrain_eval": retrain_eval, "measured": latency}


def run_condition(condition: str) -> dict[str, Any]:
  root = pathlib.Path(_WORKDIR.value)
  result_file = root / condition / "result.json"
  if result_file.exists():
    return json.loads(result_file.read_text())
  extra = ([f"--config.teacher_model={root / 'quiet' / 'run' / 'teacher' / 'model'}"]
           if condition == "loaded" else [])
  hog = start_hog(_HOG_SECONDS.value) if condition == "loaded" else None
  try:
    wall_s = run_pipeline(root / condition / "run", extra)
  finally:
    if hog is not None:
      hog.kill()
      hog.wait()
  # Summed over the runs that resumed it (a rerun of a finished one adds seconds).
  wall_file = root / condition / "wall_s.json"
  wall_s += json.loads(wall_file.read_text()) if wall_file.exists() else 0.0
  files.write_json_atomically(wall_file, round(wall_s, 1))
  result = {"condition": condition, "wall_s": round(wall_s, 1), "flags": extra,
            **summarize(root / condition / "run")}
  files.write_json_atomically(result_file, result)
  return result


def compare(quiet: dict[str, Any], loaded: dict[str, Any]) -> dict[str, Any]:
  """Same architecture? Otherwise how far apart, in each table's own prediction."""
  same = quiet["arch"] == loaded["arch"]
  cross = {}
  if not same:  # Each arch priced by the other run's table: within the tables' error?
    for name, run in (("quiet", quiet), ("loaded", loaded)):
      table = load_table(str(layout_lib.Layout(
          pathlib.Path(_WORKDIR.value) / name / "run").table_file))
      cross[f"{name}_table"] = {arch_of: table.predict_ms(Arch.from_json(json.dumps(r["arch"])))
                                for arch_of, r in (("quiet_arch", quiet), ("loaded_arch", loaded))}
  return {"same_arch": same, "cross_predictions_ms": cross,
          "target_ratio": loaded["target"]["target_ms"] / quiet["target"]["target_ms"],
          "reference_ratio": loaded["reference_quiet_ms"] / quiet["reference_quiet_ms"]}


def write_markdown(path: pathlib.Path, report: dict[str, Any]) -> None:
  rows = ["| | quiet | one core busy |", "|---|---|---|"]
  q, l = report["results"]["quiet"], report["results"]["loaded"]
  describe = lambda a: (f"{a['num_layers']} layers, hidden {a['hidden_size']}, heads "
                        f"{a['heads']}, FFN {a['ffn']}")
  metric = lambda r: r["retrain_eval"]["metrics"][r["retrain_eval"]["main_metric"]]
  for label, fn in (
      ("searched architecture", lambda r: describe(r["arch"])),
      ("target (table units, ms)", lambda r: f"{r['target']['target_ms']:.2f} "
       f"({100 * r['target']['target_fraction']:.0f}% of {r['target']['base_predicted_ms']:.2f})"),
      ("base measured at the target stage (ms)", lambda r: f"{r['target']['base_measured_ms']:.2f}"),
      ("searched arch, table prediction (ms)", lambda r: f"{r['arch_predicted_ms']:.2f}"),
      ("reference model alone at the build's start (ms)",
       lambda r: f"{r['reference_quiet_ms']:.3f}"),
      ("table build conditions", lambda r: json.dumps(r["table_conditions"])),
      ("retrained dev metric (%)", lambda r: f"{100 * metric(r):.2f}"),
      ("wall time of the run (min)", lambda r: f"{r['wall_s'] / 60:.1f}")):
    rows.append(f"| {label} | {fn(q)} | {fn(l)} |")
  c = report["comparison"]
  verdict = ("The same architecture was searched under load as on a quiet machine."
             if c["same_arch"] else
             "The searched architectures differ; each priced by both tables (ms): "
             + json.dumps(c["cross_predictions_ms"]))
  machine = report["machine"]
  lines = ["# `make demo` quiet vs one core busy", "", f"- command: `{report['command']}`",
           f"- date (UTC): {report['date']}",
           f"- machine: {machine['cpu']}, {machine['cores']} cores, SIMD "
           f"{machine['cpu_identity'].get('simd')}", f"- code: {report['code']}",
           "- load: one busy process pinned to the last core for the whole loaded run (table, "
           "target, search, retraining, export, measurement); the loaded run reuses the quiet "
           "run's teacher.", "", *rows, "", verdict,
           f"Target ratio loaded/quiet {c['target_ratio']:.3f}; reference latency ratio "
           f"{c['reference_ratio']:.3f} (the tables' units).", ""]
  path.write_text("\n".join(lines))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  results = {condition: run_condition(condition) for condition in ("quiet", "loaded")}
  report = {"command": shlex.join(["python", "-m", "bench.demo_under_load", *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_facts(), "code": code_version(), "config": CONFIG,
            "results": results, "comparison": compare(results["quiet"], results["loaded"])}
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  files.write_json_atomically(out.with_suffix(".json"), report)
  write_markdown(out.with_suffix(".md"), report)
  print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
  app.run(main)
