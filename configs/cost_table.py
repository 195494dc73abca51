"""Config of the latency cost-table build.

  python -m latency_loss.build_table --config=configs/cost_table.py:space=minilm --workdir=DIR

The argument is a comma-separated list of `key=value` overrides and flags:
  space=minilm|bert_base|tiny   search space to tabulate (default minilm)
  runtime=NAME                  where to measure (configs/runtimes.py; default xnnpack):
                                xnnpack (LiteRT's Interpreter), litert_cpu (its CompiledModel
                                API on CPU), openvino (Intel's compiler plugin, OpenVINO's CPU
                                graph backend), qualcomm|mediatek|google_tensor (their plugins:
                                need the vendor SDK), xla (jitted JAX) or android (a phone)
  precision=NAME                fp32 (default), fp16 (float16 weights), int8 (dynamic range), or
                                a quantization recipe of configs/quantization.py (int8_full,
                                mixed, mixed_int16): blocks quantized with that recipe, whose
                                file hash the table records and every job checks
  threads=N                     pinned CPU threads (default 2; xla: all cores)
  statistic=median|min          what a latency is: the median or the fastest run
  priority=realtime|normal      timed threads' scheduling: the highest the process may take
                                (other processes cannot preempt them), or as it runs
  xnnpack=0|1                   LiteRT's default XNNPACK delegate (default 1)
  runner=adb|host               android: time on a phone over adb, or on this host with LiteRT's
                                benchmark_litert_model (the phone path without a phone)
  runlocal                      tiny space and few runs: finishes in seconds (tests, smoke runs)
Any field can also be overridden with --config.FIELD=VALUE.
"""

import os

import ml_collections

from configs import common
from configs import runtimes


def set_runtime(config: ml_collections.ConfigDict, name: str, threads: int = 2,
                xnnpack: bool = True) -> None:
  """Sets the runtime fields of a table config to the runtime `name` of configs/runtimes.py:
  backend, and for compiler plugins plugin, graph_backend and soc_model (the SoC compiled for;
  override with --config.soc_model)."""
  fields = runtimes.runtime_fields(name)
  config.update({k: v for k, v in fields.items() if k != "xnnpack"})
  # XLA has no XNNPACK and its CPU thread pool spans every core.
  config.threads = os.cpu_count() if fields["backend"] == "xla" else threads
  config.xnnpack = xnnpack and fields["xnnpack"]


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """Returns the build config; see the module docstring for `arg`."""
  # warmup/runs 0: the variant's default (few runs for runlocal), so explicit values still win.
  args = common.parse_arg(arg, space="", runtime="xnnpack", precision="fp32", threads=2,
                          xnnpack=True, runlocal=False, warmup=0, runs=0, runner="adb",
                          statistic="median", priority="realtime")
  config = ml_collections.ConfigDict()
  config.space = args.space or ("tiny" if args.runlocal else "minilm")
  set_runtime(config, args.runtime, args.threads, args.xnnpack)
  config.precision = args.precision
  config.delegate = ""            # external delegate library (.so) for load_delegate
  config.delegate_options = {}    # its options, strings
  config.warmup = args.warmup or (2 if args.runlocal else 30)
  config.runs = args.runs or (5 if args.runlocal else 150)
  config.min_seconds = 0.0 if args.runlocal else 0.5  # Fast blocks get more samples.
  # What a latency is: "median" of the runs, or "min" (the fastest run; see
  # latency_loss.timing.TimingProtocol).
  config.statistic = args.statistic
  # "realtime": every timed thread at the highest scheduling priority the process may take
  # (SCHED_FIFO with CAP_SYS_NICE, else nice -20 where allowed; the level reached is recorded
  # in every entry and in host["timing_priority"]). A busy core doubled 2-thread XNNPACK
  # latencies, unevenly, at the normal priority; at SCHED_FIFO the table kept MAPE 5.7% vs
  # 2.7% quiet (bench/results/latency_fidelity_under_load.md). "normal": as the process runs.
  config.priority = args.priority
  # A block timed while other processes take more than this many cores is timed again (up to
  # `retries` times, 2 s apart): bursts of other load would otherwise enter the table.
  config.max_other_load = 0.25
  config.retries = 0 if args.runlocal else 3
  # Time every block interleaved with a fixed reference model (a middle-sized layer), as its
  # ratio to the reference times the reference's latency alone on a quiet machine: the
  # machine's speed levels slow both, and cancel (a busy core does not, for 2-thread XNNPACK:
  # `priority` is what holds there). False: every block alone.
  config.reference = True
  # Seconds the build may wait in all for other processes to go quiet (after a contended block,
  # before the reference's quiet latency, before re-measuring contended blocks); then it goes on.
  config.quiet_wait_s = 0.0 if args.runlocal else 300.0
  config.android_logs = ""        # android: directory of benchmark_model logs to ingest
  # android: where the script times the blocks: "adb" (a phone) or "host" (this machine, with
  # LiteRT's benchmark_litert_model: the phone path without a phone).
  config.benchmark_runner = args.runner
  return config
