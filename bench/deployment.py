"""The deployment answer: which (runtime, precision) of a searched model to ship.

  .venv/bin/python -m bench.deployment --model_dir=runs/demo_under_load/quiet/run/retrain/model \
      --teacher_eval=runs/demo_under_load/quiet/run/teacher/eval.json \
      --workdir=runs/deployment --out=bench/results/compilers/deployment

Exports the model at every precision, compiled for OpenVINO too (`export.exporter`, verified
on the whole dev split through the Interpreter and through OpenVINO's dispatch library), then
times every (runtime, precision) model and the fp32 base architecture on XNNPACK (random
weights) interleaved, one call of each per round. The answer is the fastest model whose dev
metric is within --max_drop of the fp32 teacher's. Nothing else may run on the machine.
"""

from models import native_logs

native_logs.quiet_native_logs()  # Before TensorFlow loads (imported below): it reads it once.

import datetime
import json
import os
import pathlib
import shlex
import sys
from typing import Any

from absl import app, flags, logging

from bench.exported import candidates, export_all
from bench.machine import code_version, machine_facts
from export import exporter
from latency_loss.backends import compiled, tflite
from latency_loss.runtime import RuntimeSpec
from latency_loss.timing import TimingProtocol, time_interleaved
from models import files

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "The searched, retrained model.")
_TEACHER_EVAL = flags.DEFINE_string("teacher_eval", None, "The fp32 teacher's eval.json.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/deployment", "Where the export goes.")
_OUT = flags.DEFINE_string("out", "runs/deployment/deployment", "Result path, no suffix.")
_GLUE_DIR = flags.DEFINE_string("glue_dir", "", "GLUE root (default $GLUE_DIR).")
_PRECISIONS = flags.DEFINE_string("precisions", "fp32,int8,int8_full", "Exported precisions.")
_MAX_DROP = flags.DEFINE_float("max_drop", 0.01, "Allowed metric drop vs the teacher.")
flags.mark_flags_as_required(["model_dir", "teacher_eval"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  report = export_all(_MODEL_DIR.value, _WORKDIR.value, _PRECISIONS.value, _GLUE_DIR.value)
  teacher = json.loads(pathlib.Path(_TEACHER_EVAL.value).read_text())
  teacher_metric = teacher["metrics"][teacher["main_metric"]]
  out_dir = pathlib.Path(_WORKDIR.value) / exporter.EXPORT_DIR
  source = exporter.load_source(pathlib.Path(_MODEL_DIR.value), "", report["seq_len"], "")
  protocol = TimingProtocol(warmup=30, runs=150, min_seconds=0.5)
  models = candidates(report, out_dir, _PRECISIONS.value.split(","), threads=2)
  xnnpack_backend = tflite.TFLiteBackend(source.space, RuntimeSpec(threads=2), protocol)
  calls = {"base xnnpack/fp32": xnnpack_backend.arch_call(source.space.largest_arch())}
  for name, (runtime, model, _) in models.items():
    backend = (compiled.CompiledBackend(source.space, runtime, protocol) if runtime.plugin
               else xnnpack_backend)
    calls[name] = backend.model_call(model)
  logging.info("Timing %d models interleaved ...", len(calls))
  stats = time_interleaved(calls, protocol)
  base_ms = stats["base xnnpack/fp32"].median_ms
  rows = {}
  for name, (_, model, result) in models.items():
    metric = result["metrics"][result["main_metric"]]
    rows[name] = {"latency_ms": stats[name].median_ms, "speedup_vs_base": base_ms / stats[name].median_ms,
                  "metric": metric, "vs_teacher_points": 100 * (metric - teacher_metric),
                  "vs_jax_points": -100 * result["metric_drop"], "bytes": len(model)}
  within = {n: r for n, r in rows.items() if r["vs_teacher_points"] >= -100 * _MAX_DROP.value}
  answer = min(within, key=lambda n: within[n]["latency_ms"]) if within else None
  # The short recipe leaves the searched model itself below the teacher: also the fastest that
  # keeps its own fp32 (JAX) accuracy within the same margin.
  kept = {n: r for n, r in rows.items() if r["vs_jax_points"] >= -100 * _MAX_DROP.value}
  answer_vs_own = min(kept, key=lambda n: kept[n]["latency_ms"]) if kept else None
  record = {"command": shlex.join(["python", "-m", "bench.deployment", *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_facts(), "code": code_version(), "arch": report["arch"],
            "teacher_metric": teacher_metric, "jax_metric": report["results"]["jax"]["metrics"],
            "base_ms": base_ms, "models": rows, "answer": answer,
            "answer_vs_own_fp32": answer_vs_own,
            "fastest": min(rows, key=lambda n: rows[n]["latency_ms"])}
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  files.write_json_atomically(out.with_suffix(".json"), record)
  lines = [f"# Deployment answer: the searched model on each (runtime, precision)", "",
           f"- command: `{record['command']}`", f"- date (UTC): {record['date']}",
           f"- machine: {record['machine']['cpu']}, {record['machine']['cores']} cores, SIMD "
           f"{record['machine']['cpu_identity'].get('simd')}", f"- code: {record['code']}",
           f"- arch: {json.dumps(report['arch'])}; SST-2 dev ({report['num_examples']} examples); "
           f"teacher (fp32, JAX) {100 * teacher_metric:.2f}, this model in JAX "
           f"{100 * report['results']['jax']['metrics'][report['results']['fp32']['main_metric']]:.2f}",
           f"- timing: 2 threads, every model and the fp32 base (XNNPACK, random weights) "
           f"interleaved, median of {protocol.runs}+ calls; base {base_ms:.2f} ms", "",
           "| runtime / precision | ms | speed-up vs fp32 XNNPACK base | dev metric | vs teacher "
           "(points) | vs JAX (points) | MB |", "|---|---|---|---|---|---|---|"]
  for name, r in sorted(rows.items(), key=lambda kv: kv[1]["latency_ms"]):
    lines.append(f"| {name} | {r['latency_ms']:.2f} | {r['speedup_vs_base']:.2f}x | "
                 f"{100 * r['metric']:.2f} | {r['vs_teacher_points']:+.2f} | "
                 f"{r['vs_jax_points']:+.2f} | {r['bytes'] / 1e6:.1f} |")
  lines += ["", f"Fastest within {100 * _MAX_DROP.value:.0f} point of the teacher: "
            + (f"**{answer}**, {rows[answer]['speedup_vs_base']:.2f}x the fp32 XNNPACK base."
               if answer else "none (every model is more than that below the teacher)."),
            f"Fastest within {100 * _MAX_DROP.value:.0f} point of the searched model's own fp32 "
            "(JAX): " + (f"**{answer_vs_own}**, {rows[answer_vs_own]['speedup_vs_base']:.2f}x the "
                         "fp32 XNNPACK base." if answer_vs_own else "none."), ""]
  out.with_suffix(".md").write_text("\n".join(lines))
  print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
  app.run(main)
