#!/usr/bin/env bash
# longview vs llama.cpp, side by side on the same GGUF files, interleaved run by run so that a
# noisy machine hits both alike. Writes bench/results/compare-*.jsonl and prints the ratio table
# (bench/compare.py) that bench/RESULTS.md reproduces.
#
#   LLAMA_BENCH=/path/to/llama-bench bench/compare.sh [-p 512] [-n 128] [-t 1,2] [-r 3] [-R 2] [MODEL.gguf ...]
#
# LLAMA_BENCH: llama-bench of llama.cpp v0.4.0 (the release node-llama-cpp 3.21.1 bundles), CPU
# build with -march=native and OpenMP, as ../shared/BENCHMARKS.md describes; it is run with
# OMP_WAIT_POLICY=passive (without it its OpenMP workers spin against its own pool on 2 cores).
# Without MODEL arguments the models are generated: gen-model presets smollm2-135m, qwen2.5-0.5b
# and llama3.2-1b in f16, q8_0 and q4_0, plus q4_k_m when LLAMA_QUANTIZE (llama.cpp's
# llama-quantize, same release) is given.
set -euo pipefail
cd "$(dirname "$0")/.."
P=512 N=128 T=1,2 R=3 ROUNDS=2
while getopts "p:n:t:r:R:" o; do
  case $o in p) P=$OPTARG ;; n) N=$OPTARG ;; t) T=$OPTARG ;; r) R=$OPTARG ;; R) ROUNDS=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
: "${LLAMA_BENCH:?set LLAMA_BENCH to the path of the llama-bench of llama.cpp}"
make -j"$(nproc)" build/release/longview >/dev/null
LV=build/release/longview
SHARED=${LV_SHARED_DATA:-../shared/data}
mkdir -p build/bench/models bench/results
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  for preset in smollm2-135m qwen2.5-0.5b llama3.2-1b; do
    case $preset in qwen2.5-0.5b) vocab=$SHARED/vocab/ggml-vocab-qwen2.gguf ;; llama3.2-1b) vocab=$SHARED/vocab/ggml-vocab-llama-bpe.gguf ;; *) vocab=$SHARED/vocab/ggml-vocab-llama-spm.gguf ;; esac
    for type in f16 q8_0 q4_0; do
      m=build/bench/models/$preset-$type.gguf
      [ -f "$m" ] || "$LV" gen-model --preset "$preset" --vocab "$vocab" --type "$type" --seed 1 -o "$m" 2>/dev/null
      models+=("$m")
    done
    if [ -n "${LLAMA_QUANTIZE:-}" ]; then
      m=build/bench/models/$preset-q4_k_m.gguf
      [ -f "$m" ] || { [ -f build/bench/models/$preset-f16.gguf ] && "$LLAMA_QUANTIZE" build/bench/models/$preset-f16.gguf "$m" Q4_K_M >/dev/null 2>&1; }
      models+=("$m")
    fi
  done
fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=bench/results/compare-$stamp.jsonl
echo "compare: writing $out" >&2
for round in $(seq 1 "$ROUNDS"); do
  for m in "${models[@]}"; do
    echo "compare: round $round: $m" >&2
    # longview first in odd rounds, llama.cpp first in even ones
    run_lv() { "$LV" bench -m "$m" -p "$P" -n "$N" -t "$T" -r "$R" -o json | sed 's/^{/{"engine":"longview",/' >> "$out"; }
    run_ll() { OMP_WAIT_POLICY=passive "$LLAMA_BENCH" -m "$m" -p "$P" -n "$N" -t "$T" -r "$R" -o jsonl 2>/dev/null | sed 's/^{/{"engine":"llama.cpp",/' >> "$out"; }
    if [ $((round % 2)) -eq 1 ]; then run_lv; run_ll; else run_ll; run_lv; fi
  done
done
python3 bench/compare.py "$out"
