#!/usr/bin/env bash
# Times every .tflite of a directory with a LiteRT benchmark tool, one log per model.
#
#   android_benchmark.sh MODEL_DIR LOG_DIR THREADS USE_XNNPACK USE_GPU NUM_RUNS WARMUP_RUNS
#
# BENCHMARK_RUNNER=adb (default): on an Android phone with TFLite's benchmark_model. Needs `adb`
# with one phone attached (or ANDROID_SERIAL set) and the benchmark_model binary for the phone's
# ABI at $BENCHMARK_MODEL (default ./benchmark_model; prebuilt binaries:
# https://www.tensorflow.org/lite/performance/measurement).
# BENCHMARK_RUNNER=host: on this machine with LiteRT's benchmark_litert_model ($PYTHON -m
# ai_edge_litert.tools.benchmark_litert_model; XNNPACK is its CPU accelerator), the same model
# list, resume and logs: a stand-in for the phone that needs no phone.
# Both tools feed their default random inputs; our graphs clamp lookup indices, so they run.
# Writes LOG_DIR/<model>.log, which
# `python -m latency_loss.build_table ... --config.android_logs=LOG_DIR` ingests.
set -euo pipefail

if [[ $# -ne 7 ]]; then
  sed -n '2,16p' "$0"
  exit 2
fi
model_dir=$1 log_dir=$2 threads=$3 use_xnnpack=$4 use_gpu=$5 num_runs=$6 warmup_runs=$7
runner=${BENCHMARK_RUNNER:-adb}
remote=/data/local/tmp/canao

time_on_phone() {  # model name log
  adb push "$1" "$remote/$2.tflite" >/dev/null
  adb shell "$remote/benchmark_model" --graph="$remote/$2.tflite" \
    --num_threads="$threads" --use_xnnpack="$use_xnnpack" --use_gpu="$use_gpu" \
    --num_runs="$num_runs" --warmup_runs="$warmup_runs" --min_secs=0 --warmup_min_secs=0 \
    > "$3" 2>&1
  adb shell rm "$remote/$2.tflite"
}

time_on_host() {  # model name log
  local gpu=()
  if [[ $use_gpu == true ]]; then gpu=(--use_gpu); fi
  "${PYTHON:-python3}" -m ai_edge_litert.tools.benchmark_litert_model --model="$1" \
    --num_threads="$threads" --num_runs="$num_runs" --warmup_runs="$warmup_runs" "${gpu[@]}" \
    > "$3" 2>&1
}

case $runner in
  adb)
    time_model=time_on_phone
    adb shell mkdir -p "$remote"
    adb push "${BENCHMARK_MODEL:-./benchmark_model}" "$remote/benchmark_model" >/dev/null
    adb shell chmod +x "$remote/benchmark_model" ;;
  host) time_model=time_on_host ;;
  *) echo "BENCHMARK_RUNNER=$runner: use adb or host" >&2; exit 2 ;;
esac
mkdir -p "$log_dir"
for model in "$model_dir"/*.tflite; do
  name=$(basename "$model" .tflite)
  if [[ -s "$log_dir/$name.log" ]]; then
    continue  # resumable: keep logs of models already timed
  fi
  if ! "$time_model" "$model" "$name" "$log_dir/$name.log.tmp"; then
    echo "$name: the benchmark failed; its output is in $log_dir/$name.log.tmp" >&2
    exit 1
  fi
  mv "$log_dir/$name.log.tmp" "$log_dir/$name.log"
  echo "$name: $(grep -o 'Inference (avg): [0-9.]*' "$log_dir/$name.log")"
done
