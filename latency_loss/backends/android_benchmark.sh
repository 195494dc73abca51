#!/usr/bin/env bash
# Times every .tflite of a directory on an Android phone with TFLite's benchmark_model.
#
#   android_benchmark.sh MODEL_DIR LOG_DIR THREADS USE_XNNPACK USE_GPU NUM_RUNS WARMUP_RUNS
#
# Needs `adb` with one phone attached (or ANDROID_SERIAL set) and the benchmark_model binary
# for the phone's ABI at $BENCHMARK_MODEL (default ./benchmark_model; prebuilt binaries:
# https://www.tensorflow.org/lite/performance/measurement). Writes LOG_DIR/<model>.log, which
# `python -m latency_loss.build_table ... --config.android_logs=LOG_DIR` ingests.
set -euo pipefail

if [[ $# -ne 7 ]]; then
  sed -n '2,9p' "$0"
  exit 2
fi
model_dir=$1 log_dir=$2 threads=$3 use_xnnpack=$4 use_gpu=$5 num_runs=$6 warmup_runs=$7
benchmark_model=${BENCHMARK_MODEL:-./benchmark_model}
remote=/data/local/tmp/canao

mkdir -p "$log_dir"
adb shell mkdir -p "$remote"
adb push "$benchmark_model" "$remote/benchmark_model" >/dev/null
adb shell chmod +x "$remote/benchmark_model"
for model in "$model_dir"/*.tflite; do
  name=$(basename "$model" .tflite)
  if [[ -s "$log_dir/$name.log" ]]; then
    continue  # resumable: keep logs of models already timed
  fi
  adb push "$model" "$remote/$name.tflite" >/dev/null
  adb shell "$remote/benchmark_model" --graph="$remote/$name.tflite" \
    --num_threads="$threads" --use_xnnpack="$use_xnnpack" --use_gpu="$use_gpu" \
    --num_runs="$num_runs" --warmup_runs="$warmup_runs" --min_secs=0 --warmup_min_secs=0 \
    > "$log_dir/$name.log.tmp" 2>&1
  mv "$log_dir/$name.log.tmp" "$log_dir/$name.log"
  adb shell rm "$remote/$name.tflite"
  echo "$name: $(grep -o 'Inference (avg): [0-9.]*' "$log_dir/$name.log")"
done
