"""Config of the latency cost-table build.

  python -m latency_loss.build_table --config=configs/cost_table.py:space=minilm --workdir=DIR

The argument is a comma-separated list of `key=value` overrides and flags:
  space=minilm|bert_base|tiny   search space to tabulate (default minilm)
  backend=tflite|xla|android    where to measure (default tflite)
  precision=fp32|fp16|int8      TFLite weight precision (default fp32)
  threads=N                     pinned CPU threads (default 2; xla: all cores)
  xnnpack=0|1                   LiteRT's default XNNPACK delegate (default 1)
  runlocal                      tiny space and few runs: finishes in seconds (tests, smoke runs)
Any field can also be overridden with --config.FIELD=VALUE.
"""

import os

import ml_collections

_INT_KEYS = ("threads", "warmup", "runs")


def _parse(arg: str) -> dict[str, str]:
  """'space=minilm,runlocal' -> {'space': 'minilm', 'runlocal': ''}."""
  out = {}
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    out[key.strip()] = value.strip()
  return out


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """Returns the build config; see the module docstring for `arg`."""
  args = _parse(arg)
  unknown = set(args) - {"space", "backend", "precision", "threads", "xnnpack", "runlocal",
                         "warmup", "runs"}
  if unknown:
    raise ValueError(f"configs/cost_table.py: unknown arguments {sorted(unknown)}")
  config = ml_collections.ConfigDict()
  config.space = "minilm"
  config.backend = "tflite"
  config.precision = "fp32"
  config.threads = 2
  config.xnnpack = True
  config.delegate = ""            # external delegate library (.so) for load_delegate
  config.delegate_options = {}    # its options, strings
  config.warmup = 30
  config.runs = 150
  config.min_seconds = 0.5  # per block, on top of `runs`: fast blocks get more samples
  config.android_logs = ""        # android: directory of benchmark_model logs to ingest
  if "runlocal" in args:
    config.space, config.warmup, config.runs, config.min_seconds = "tiny", 2, 5, 0.0
  for key in ("space", "backend", "precision"):
    if key in args:
      config[key] = args[key]
  for key in _INT_KEYS:
    if key in args:
      config[key] = int(args[key])
  # XLA has no XNNPACK and its CPU thread pool spans every core.
  if config.backend == "xla":
    config.xnnpack, config.threads = False, os.cpu_count()
  if "xnnpack" in args:
    config.xnnpack = args["xnnpack"] not in ("0", "false", "False")
  return config
