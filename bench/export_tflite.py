"""Latency and accuracy of the exported TFLite models, against the generic JAX route and peak.

  GLUE_DIR=/work/shared/data/glue .venv/bin/python -m bench.export_tflite \
      --workdir=runs/bench_finetune/sst2 --table=runs/table/cost_table.json

Run `python -m export.to_tflite --config=configs/export.py --workdir=WORKDIR` first: this times
the files it shipped (WORKDIR/export/model_*.tflite) at 1 and 2 threads with XNNPACK, compares
them with the cost table's prediction (--table), converts the same weights through the generic
JAX route (jax2tf -> TFLiteConverter) and measures its latency and dev accuracy, and relates the
fp32 model's matmul FLOPs to this machine's fp32 GEMM peak (numpy, 2 threads) measured in the
same run. Writes bench/results/export_tflite.{json,md}. Needs a quiet machine.
"""

import datetime
import json
import os
import pathlib
import shlex
import subprocess
import sys

import numpy as np
import tensorflow as tf
from absl import app, flags
from flax import nnx
from jax.experimental import jax2tf

from bench.machine import code_version, machine_facts
from export import delegates, exporter, verify
from latency_loss.backends import tflite as tflite_backend
from latency_loss.runtime import RuntimeSpec
from latency_loss.table import load_table
from latency_loss.timing import TimingProtocol
from models import checkpoint
from models.search_space import Arch
from models.tokenizer import WordPieceTokenizer

_WORKDIR = flags.DEFINE_string("workdir", None, "darts.train workdir holding export/.")
_TABLE = flags.DEFINE_string("table", "", "Optional cost table to compare predictions with.")
_THREADS = flags.DEFINE_list("threads", ["1", "2"], "Thread counts to time.")
_WARMUP = flags.DEFINE_integer("warmup", 20, "Untimed runs per model.")
_RUNS = flags.DEFINE_integer("runs", 100, "Timed runs per model.")
_OUT = flags.DEFINE_string("out", "bench/results/export_tflite", "Result path without suffix.")
flags.mark_flags_as_required(["workdir"])

GENERIC = "jax2tf"  # The generic route's entry among the timed models.
# Peak probe: large enough that numpy's BLAS runs at its GEMM peak, small enough for seconds.
_GEMM_SIZE, _GEMM_REPEATS = 2048, 10
_GEMM_PROBE = f"""
import time, numpy as np
a = np.random.default_rng(0).standard_normal(({_GEMM_SIZE}, {_GEMM_SIZE}), dtype=np.float32)
a @ a
best = min((lambda t: (a @ a, time.perf_counter() - t)[1])(time.perf_counter())
           for _ in range({_GEMM_REPEATS}))
print(2 * {_GEMM_SIZE} ** 3 / best / 1e9)
"""


def matmul_flops(arch: Arch, seq_len: int, head_size: int, num_labels: int) -> int:
  """Multiply-add FLOPs (x2) of the model's matmuls at batch 1; elementwise ops excluded."""
  h, n = arch.hidden_size, seq_len
  total = 2 * h * h + 2 * h * num_labels  # Pooler and classifier (one token).
  for heads, ffn in zip(arch.heads, arch.ffn):
    inner = heads * head_size
    total += 2 * n * h * inner * 4  # Q, K, V and the output projection.
    total += 2 * n * n * inner * 2  # Scores and context.
    total += 2 * n * h * ffn * 2  # FFN in and out.
  return total


def gemm_peak_gflops(threads: int) -> float:
  """numpy fp32 GEMM GFLOP/s with `threads` BLAS threads (fresh process: pools read env once)."""
  env = {**os.environ, **{k: str(threads) for k in (
      "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
  out = subprocess.run([sys.executable, "-c", _GEMM_PROBE], env=env, check=True,
                       capture_output=True, text=True)
  return float(out.stdout.strip().splitlines()[-1])


def jax2tf_model(source: exporter.Source) -> bytes:
  """The generic route: the JAX model through jax2tf (StableHLO) and TFLiteConverter, fp32."""
  graphdef, params = nnx.split(checkpoint.load_pretrained(str(source.model_dir),
                                                          source.task.num_labels))
  forward = lambda ids, mask, types: {"logits": nnx.merge(graphdef, params)(ids, mask, types)}
  module = tf.Module()
  module.serve = tf.function(
      jax2tf.convert(forward, with_gradient=False), autograph=False,
      input_signature=[tf.TensorSpec([1, source.space.seq_len], tf.int32, name=n)
                       for n in verify.INPUT_NAMES])
  return tf.lite.TFLiteConverter.from_concrete_functions(
      [module.serve.get_concrete_function()], module).convert()


def time_threads(models: dict[str, bytes], source: exporter.Source,
                 protocol: TimingProtocol) -> dict[str, dict[str, dict]]:
  """name -> thread count -> timing stats. At each thread count the models are timed interleaved
  (this VM's 2-thread speed switches between two levels ~15% apart every few seconds; timed one
  after the other, models would be compared across levels)."""
  out = {name: {} for name in models}
  for t in _THREADS.value:
    stats = tflite_backend.TFLiteBackend(source.space, RuntimeSpec(threads=int(t)),
                                         protocol).time_models(models)
    for name, s in stats.items():
      out[name][t] = s.__dict__
  return out


def table_prediction(source: exporter.Source, models: dict) -> dict | None:
  """The table's prediction of the arch, beside our measurement at the table's runtime."""
  if not _TABLE.value:
    return None
  table = load_table(_TABLE.value)
  measured = models.get(table.runtime.precision, {}).get("latency", {}).get(
      str(table.runtime.threads))
  return {"path": _TABLE.value, "runtime": table.runtime.to_dict(),
          "seq_len": table.space.seq_len, "predicted_ms": table.predict_ms(source.arch),
          "measured_ms": measured and measured["median_ms"]}


def generic_route(model: bytes, source: exporter.Source, dev: verify.PaddedSplit,
                  reference: np.ndarray) -> dict:
  """Accuracy and delegation of the jax2tf route's `model`."""
  logits = verify.tflite_logits(model, RuntimeSpec(threads=2), dev.inputs)
  return {"bytes": len(model), **verify.compare(source.task, dev, reference, logits),
          "delegate": delegates.delegated_share(model, RuntimeSpec(threads=2)),
          "ops": delegates.op_counts(model)}


def run() -> dict:
  out_dir = pathlib.Path(_WORKDIR.value) / exporter.EXPORT_DIR
  export_report = json.loads((out_dir / exporter.REPORT_FILE).read_text())
  source = exporter.load_source(pathlib.Path(export_report["model_dir"]), export_report["task"],
                                export_report["seq_len"])
  protocol = TimingProtocol(warmup=_WARMUP.value, runs=_RUNS.value)
  load_before = os.getloadavg()
  peak = gemm_peak_gflops(2)
  exported = {path.stem.removeprefix("model_"): path
              for path in sorted(out_dir.glob("model_*.tflite"))}
  generic = jax2tf_model(source)
  latency = time_threads({**{p: path.read_bytes() for p, path in exported.items()},
                          GENERIC: generic}, source, protocol)
  models = {}
  for precision, path in exported.items():
    result = export_report["results"][precision]
    models[precision] = {"file": str(path), "bytes": path.stat().st_size,
                         "metrics": result["metrics"], "max_abs_diff": result["max_abs_diff"],
                         "metric_drop": result["metric_drop"],
                         "delegate": result["delegate"], "latency": latency[precision]}
  tokenizer = WordPieceTokenizer.from_pretrained(source.model_dir)
  dev = verify.padded_split(source.task, "dev", tokenizer, source.space.seq_len, None)
  reference = verify.jax_logits(source.model_dir, source.task.num_labels, dev.inputs)
  flops = matmul_flops(source.arch, source.space.seq_len, source.config.head_size,
                       source.task.num_labels)
  fp32_ms = models["fp32"]["latency"]["2"]["median_ms"]
  return {
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": shlex.join(["python", "-m", "bench.export_tflite", *sys.argv[1:]]),
      "code": code_version(),
      "machine": {**machine_facts(), "load_average_before": load_before,
                  "tensorflow": tf.__version__},
      "model_dir": str(source.model_dir), "task": source.task.name,
      "arch": source.arch.__dict__, "seq_len": source.space.seq_len,
      "protocol": protocol.__dict__, "jax_metrics": export_report["results"]["jax"]["metrics"],
      "models": models, "table": table_prediction(source, models),
      "jax2tf": {**generic_route(generic, source, dev, reference), "latency": latency[GENERIC]},
      "roofline": {"matmul_gflop": flops / 1e9, "fp32_2_threads_ms": fp32_ms,
                   "achieved_gflops": flops / fp32_ms / 1e6, "numpy_gemm_peak_gflops": peak,
                   "gemm": f"{_GEMM_SIZE}x{_GEMM_SIZE} fp32, 2 threads, best of {_GEMM_REPEATS}"},
      "load_average_after": os.getloadavg(),
  }


def write_markdown(path: pathlib.Path, r: dict) -> None:
  main = next(iter(r["jax_metrics"]))
  machine = r["machine"]
  lines = [
      f"# TFLite export of {r['model_dir']} ({r['task']}), {r['date']}", "",
      f"Command: `{r['command']}` at commit {r['code']['commit'][:12]}"
      f"{' (uncommitted changes)' if r['code']['dirty'] else ''}.", "",
      (f"Machine: {machine['cpu']}, {machine['cores']} cores, TF {machine['tensorflow']}; "
       f"load average before {machine['load_average_before']}, after "
       f"{r['load_average_after']}. Arch {r['arch']}, seq_len {r['seq_len']}, batch 1, XNNPACK; "
       f"median of {r['protocol']['runs']} runs after {r['protocol']['warmup']} warm-up."), "",
      f"JAX dev {main}: {100 * r['jax_metrics'][main]:.2f}", "",
      (f"| model | MB | dev {main} | drop vs JAX (points) | max abs logit diff | XNNPACK nodes | "
       + " | ".join(f"{t} thread(s) ms" for t in r["models"]["fp32"]["latency"]) + " |"),
      "|---" * (6 + len(r["models"]["fp32"]["latency"])) + "|"]
  for name, m in [*r["models"].items(), ("jax2tf (generic)", r["jax2tf"])]:
    d = m["delegate"]
    lines.append(
        f"| {name} | {m['bytes'] / 1e6:.1f} | {100 * m['metrics'][main]:.2f} | "
        f"{100 * m['metric_drop']:.2f} | {m['max_abs_diff']:.2e} | "
        f"{d['delegated_nodes']}/{d['nodes']} ({d['partitions']} partitions) | "
        + " | ".join(f"{s['median_ms']:.2f}" for s in m["latency"].values()) + " |")
  if r["table"]:
    t = r["table"]
    lines += ["", (f"Cost table {t['path']} ({t['runtime']}, seq_len {t['seq_len']}) predicts "
                   f"{t['predicted_ms']:.2f} ms; measured {t['measured_ms']} ms.")]
  f = r["roofline"]
  lines += ["", (f"fp32 matmul work {f['matmul_gflop']:.3f} GFLOP in {f['fp32_2_threads_ms']:.2f} "
                 f"ms = {f['achieved_gflops']:.1f} GFLOP/s, vs numpy GEMM peak "
                 f"{f['numpy_gemm_peak_gflops']:.1f} GFLOP/s ({f['gemm']}): "
                 f"{100 * f['achieved_gflops'] / f['numpy_gemm_peak_gflops']:.0f}% of peak."), ""]
  path.write_text("\n".join(lines))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  report = run()
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix(".json").write_text(json.dumps(report, indent=2))
  write_markdown(out.with_suffix(".md"), report)
  print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
  app.run(main)
