"""Android phones: export each block's .tflite, time it with benchmark_model over adb, ingest.

The same script, model list, resume and ingestion run on this host with LiteRT's
benchmark_litert_model (runner "host"): a stand-in for the phone path, tested in `make test`.

RuntimeSpec mapping: `threads` -> --num_threads, `xnnpack` -> --use_xnnpack, and
`delegate="gpu"` -> --use_gpu=true (other delegates are not supported on this path).
benchmark_model reports the mean (and std) of its timed runs, so android tables use the
"mean" statistic unless the log also carries a median.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any, Optional

from absl import logging

from latency_loss.blocks import space_blocks
from latency_loss.runtime import RuntimeSpec
from latency_loss.table import CostTable
from latency_loss.timing import TimingProtocol
from models.search_space import SearchSpace

SCRIPT = os.path.join(os.path.dirname(__file__), "android_benchmark.sh")
MANIFEST = "manifest.json"
_TIMINGS = re.compile(r"Inference timings in us: (.*)")
_STAT_LINE = re.compile(r"count=(\d+)((?: \w+=[-\d.e+]+)+)")
_LITERT_RESULTS = "BENCHMARK RESULTS"
_LITERT_LINE = re.compile(r"^([A-Z][\w ()]+):\s+([-\d.]+) ms\b", re.M)
# Where the script times the models: `adb` (a phone) or `host` (this machine, LiteRT's
# benchmark_litert_model: a stand-in for the phone path).
RUNNERS = {"adb": "android (adb, benchmark_model)",
           "host": "this host (benchmark_litert_model, stand-in for a phone)"}


def parse_benchmark_log(text: str, source: str = "<log>") -> dict[str, Any]:
  """Parses the output of TFLite's benchmark_model or LiteRT's benchmark_litert_model into ms.

  Returns:
    {"ms", "statistic", "avg_ms", "std_ms", "min_ms", "max_ms", "runs", "init_ms",
     "first_ms", "warmup_avg_ms", "tool"}; "ms" is the median when the log has one, else the
    mean.

  Raises:
    ValueError: the log lacks the final timings (the run failed), naming `source`.
  """
  if _LITERT_RESULTS in text:
    return _parse_litert_log(text, source)
  summary = _TIMINGS.search(text)
  stats = _STAT_LINE.findall(text)
  if not summary or not stats:
    raise ValueError(f"{source}: no benchmark_model timings found (did the run fail?); "
                     f"last lines: {text.strip().splitlines()[-3:]}")
  fields = dict(re.findall(r"([\w ()]+?): ([-\d.e+]+)", summary.group(1)))
  fields = {k.strip(): float(v) for k, v in fields.items()}
  # The last count= line is the timed runs (the earlier one is the warm-up).
  count, rest = stats[-1]
  run = {k: float(v) for k, v in re.findall(r"(\w+)=([-\d.e+]+)", rest)}
  out = {"avg_ms": run["avg"] / 1e3, "std_ms": run["std"] / 1e3, "min_ms": run["min"] / 1e3,
         "max_ms": run["max"] / 1e3, "runs": int(count), "init_ms": fields["Init"] / 1e3,
         "first_ms": fields["First inference"] / 1e3,
         "warmup_avg_ms": fields["Warmup (avg)"] / 1e3, "tool": "benchmark_model"}
  if "median" in run:
    out.update(ms=run["median"] / 1e3, statistic="median")
  else:
    out.update(ms=fields["Inference (avg)"] / 1e3, statistic="mean")
  return out


def _parse_litert_log(text: str, source: str) -> dict[str, Any]:
  """benchmark_litert_model's "BENCHMARK RESULTS" block (milliseconds, 2 decimals)."""
  fields = {k.strip(): float(v) for k, v in _LITERT_LINE.findall(text)}
  runs = re.search(r"Inference \(avg\):\s+[\d.]+ ms \((\d+) runs\)", text)
  wanted = ("Inference (median)", "Inference (avg)", "Inference (std)", "Inference (min)",
            "Inference (max)", "Model initialization", "Warmup (first)", "Warmup (avg)")
  missing = [k for k in wanted if k not in fields]
  if missing or not runs:
    raise ValueError(f"{source}: benchmark_litert_model results lack {missing or ['runs']}")
  return {"ms": fields["Inference (median)"], "statistic": "median",
          "avg_ms": fields["Inference (avg)"], "std_ms": fields["Inference (std)"],
          "min_ms": fields["Inference (min)"], "max_ms": fields["Inference (max)"],
          "runs": int(runs.group(1)), "init_ms": fields["Model initialization"],
          "first_ms": fields["Warmup (first)"], "warmup_avg_ms": fields["Warmup (avg)"],
          "tool": "benchmark_litert_model"}


def _check_runner(runner: str) -> None:
  if runner not in RUNNERS:
    raise ValueError(f"benchmark runner '{runner}': use one of {sorted(RUNNERS)}")


def _file_name(key: str) -> str:
  return key.replace("/", "__")


def script_command(runtime: RuntimeSpec, protocol: TimingProtocol, export_dir: str,
                   runner: str = "adb") -> str:
  """The shell command that times every exported block (on the phone, or `runner="host"`)."""
  _check_runner(runner)
  use_gpu = "true" if runtime.delegate == "gpu" else "false"
  env = f"BENCHMARK_RUNNER={runner} " if runner != "adb" else ""
  return (f"{env}{os.path.join(export_dir, 'android_benchmark.sh')} {export_dir}/models "
          f"{export_dir}/logs {runtime.threads} {str(runtime.xnnpack).lower()} {use_gpu} "
          f"{protocol.runs} {protocol.warmup}")


def export_blocks(space: SearchSpace, runtime: RuntimeSpec, protocol: TimingProtocol,
                  export_dir: str, runner: str = "adb") -> str:
  """Writes models/<block>.tflite, the manifest and the script; returns the command to run."""
  if runtime.delegate not in ("", "gpu"):
    raise ValueError(f"android backend: delegate='{runtime.delegate}' unsupported ('' or 'gpu')")
  from models import tf_bert  # TensorFlow only when exporting, not when ingesting logs
  from latency_loss.backends.tflite import build_module
  os.makedirs(os.path.join(export_dir, "models"), exist_ok=True)
  manifest = {}
  for block in space_blocks(space):
    name = _file_name(block.key)
    path = os.path.join(export_dir, "models", name + ".tflite")
    if not os.path.exists(path):
      model = tf_bert.convert_to_tflite(build_module(block, space), runtime.precision)
      with open(path + ".tmp", "wb") as f:
        f.write(model)
      os.replace(path + ".tmp", path)
    manifest[name] = block.key
  with open(os.path.join(export_dir, MANIFEST), "w") as f:
    json.dump(manifest, f, indent=1)
  shutil.copy(SCRIPT, os.path.join(export_dir, "android_benchmark.sh"))
  return script_command(runtime, protocol, export_dir, runner)


def ingest_logs(log_dir: str, manifest_path: str, table: CostTable) -> CostTable:
  """Adds one entry per `<block>.log` of `log_dir` to `table` (keys from the manifest)."""
  with open(manifest_path) as f:
    manifest = json.load(f)
  statistics = set()
  for name, key in manifest.items():
    path = os.path.join(log_dir, name + ".log")
    if os.path.exists(path):
      with open(path) as f:
        entry = parse_benchmark_log(f.read(), source=path)
      statistics.add(entry["statistic"])
      table.entries[key] = entry
  if len(statistics) > 1:
    raise ValueError(f"{log_dir}: logs mix statistics {sorted(statistics)}")
  if statistics:
    table.protocol["statistic"] = statistics.pop()
  return table


def build_or_ingest(space: SearchSpace, runtime: RuntimeSpec, protocol: TimingProtocol,
                    workdir: str, log_dir: Optional[str], table_path: str,
                    host: dict[str, Any], runner: str = "adb") -> CostTable:
  """Without `log_dir`: exports and logs the command to run. With it: ingests and saves."""
  _check_runner(runner)
  export_dir = os.path.join(workdir, "android")
  table = CostTable(space=space, runtime=runtime, host={**host, "device": RUNNERS[runner]},
                    protocol={"warmup": protocol.warmup, "runs": protocol.runs,
                              "min_seconds": 0.0, "statistic": "mean"})
  if not log_dir:
    command = export_blocks(space, runtime, protocol, export_dir, runner)
    logging.info("Exported %d blocks. With the phone attached (runner adb) run:\n  %s\nthen rerun with "
                 "--config.android_logs=%s/logs", len(space_blocks(space)), command, export_dir)
    return table
  ingest_logs(log_dir, os.path.join(export_dir, MANIFEST), table)
  table.save(table_path)
  missing = table.missing()
  if missing:
    logging.warning("%d blocks have no log yet, e.g. %s", len(missing), missing[:5])
  return table
