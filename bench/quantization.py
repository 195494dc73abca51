"""Quantization recipes on real models: dev metric, latency, size and worst tensor per precision.

  TMPDIR=/tmp CANAO_COMPILE_CACHE=runs/compilers/compile_cache \
  .venv/bin/python -m bench.quantization --glue_dir=../shared/data/glue \
      --models=sst2_base:runs/demo_under_load/quiet/run/teacher/model,sst2_searched:runs/demo_under_load/quiet/run/retrain/model,mrpc_base:runs/mrpc/run/teacher/model,mrpc_searched:runs/mrpc/run/retrain/model \
      --workdir=runs/quantization --out=bench/results/quantization

Each model is exported at every precision of --precisions (`bench.exported.export_all`: the
recipes of configs/quantization.py through ai-edge-quantizer, each also compiled for OpenVINO),
verified on its task's whole dev split through the Interpreter and OpenVINO's dispatch library.
Then, per model, every (runtime, precision) is timed at each thread count interleaved with that
runtime's fp32 model (one call of each per round). Exports resume; the timing needs a quiet
machine.
"""

from models import native_logs

native_logs.quiet_native_logs()  # Before TensorFlow loads (imported below): it reads it once.

import datetime
import pathlib
import shlex
import sys
from typing import Any

from absl import app, flags, logging

from bench.exported import candidates, export_all
from bench.machine import code_version, machine_facts
from export import exporter
from latency_loss.backends import base as backends
from latency_loss.timing import TimingProtocol, time_interleaved
from models import files

_MODELS = flags.DEFINE_list("models", None, "name:model_dir pairs (fine-tuned checkpoints).")
_PRECISIONS = flags.DEFINE_string("precisions", "fp32,int8,int8_full,mixed,mixed_int16",
                                  "Exported precisions (fp32 is the reference).")
_THREADS = flags.DEFINE_list("threads", ["1", "2"], "Thread counts timed.")
_GLUE_DIR = flags.DEFINE_string("glue_dir", "", "GLUE root (default $GLUE_DIR).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/quantization", "Exports go to WORKDIR/<name>.")
_OUT = flags.DEFINE_string("out", "runs/quantization/quantization", "Result path, no suffix.")
_RUNS = flags.DEFINE_integer("runs", 100, "Timing rounds.")
_EXPORT_ONLY = flags.DEFINE_bool("export_only", False, "Export and verify only (no timing: "
                                 "may run beside other jobs); a later run reuses the exports.")
flags.mark_flags_as_required(["models"])


def measure(name: str, model_dir: str) -> dict[str, Any]:
  """One model's export, verification and interleaved timing: its rows of the result."""
  precisions = _PRECISIONS.value.split(",")
  report = export_all(model_dir, str(pathlib.Path(_WORKDIR.value) / name), _PRECISIONS.value,
                      _GLUE_DIR.value)
  if _EXPORT_ONLY.value:
    return {}
  out_dir = pathlib.Path(_WORKDIR.value) / name / exporter.EXPORT_DIR
  protocol = TimingProtocol(warmup=10, runs=_RUNS.value, min_seconds=0.5)
  source = exporter.load_source(pathlib.Path(model_dir), "", report["seq_len"], "")
  rows: dict[str, dict[str, Any]] = {}
  for threads in (int(t) for t in _THREADS.value):
    found = candidates(report, out_dir, precisions, threads)
    calls = {key: backends.make_backend(source.space, runtime, protocol).model_call(model)
             for key, (runtime, model, _) in found.items()}
    logging.info("%s: timing %d models at %d thread(s), interleaved ...", name, len(calls), threads)
    stats = time_interleaved(calls, protocol)
    for key, (_, model, result) in found.items():
      runtime_name, precision = key.split("/")
      fp32 = found[f"{runtime_name}/fp32"][2]
      metric, reference = (r["metrics"][r["main_metric"]] for r in (result, fp32))
      recipe = report["results"][precision].get("quantization", {})
      worst = recipe.get("worst_tensors")
      row = rows.setdefault(key, {
          "metric": metric, "vs_fp32_points": 100 * (metric - reference), "bytes": len(model),
          "float_ops": recipe.get("float_ops"), "worst_tensor": worst[0] if worst else None,
          "ms": {}})
      row["ms"][str(threads)] = stats[key].median_ms
  return {"model_dir": model_dir, "task": report["task"], "arch": report["arch"],
          "num_examples": report["num_examples"], "jax_metric": report["results"]["jax"]["metrics"],
          "rows": rows}


def write_markdown(record: dict[str, Any], path: pathlib.Path) -> None:
  threads = _THREADS.value
  lines = ["# Quantization recipes: dev metric, latency, size, worst tensor", "",
           f"- command: `{record['command']}`", f"- date (UTC): {record['date']}",
           f"- machine: {record['machine']['cpu']}, {record['machine']['cores']} cores, SIMD "
           f"{record['machine']['cpu_identity'].get('simd')}", f"- code: {record['code']}",
           "- each model's (runtime, precision) variants timed interleaved with each other "
           f"(fp32 included), median of {record['runs']} rounds; metric on the whole dev split",
           "- worst tensor: lowest SNR against the float graph on 8 dev examples", ""]
  for name, m in record["models"].items():
    lines += [f"## {name}: {m['task']}, arch {m['arch']}, {m['num_examples']} dev examples", "",
              "| runtime / precision | metric | vs fp32 (points) | "
              + " | ".join(f"ms ({t} thr)" for t in threads)
              + " | MB | ops in float | worst tensor (SNR dB) |",
              "|---|---|---|" + "---|" * len(threads) + "---|---|---|"]
    for key, r in m["rows"].items():
      worst = r["worst_tensor"]
      lines.append(
          f"| {key} | {100 * r['metric']:.2f} | {r['vs_fp32_points']:+.2f} | "
          + " | ".join(f"{r['ms'][t]:.2f}" for t in threads)
          + f" | {r['bytes'] / 1e6:.1f} | {r['float_ops'] if r['float_ops'] else '-'} | "
          + (f"`{worst['tensor'][:60]}` ({worst['snr_db']:.1f})" if worst else "-") + " |")
    lines.append("")
  path.write_text("\n".join(lines))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  models = dict(item.split(":", 1) for item in _MODELS.value)
  record = {"command": shlex.join(["python", "-m", "bench.quantization", *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_facts(), "code": code_version(), "runs": _RUNS.value,
            "models": {name: measure(name, model_dir) for name, model_dir in models.items()}}
  if _EXPORT_ONLY.value:
    return
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  files.write_json_atomically(out.with_suffix(".json"), record)
  write_markdown(record, out.with_suffix(".md"))
  print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
  app.run(main)
