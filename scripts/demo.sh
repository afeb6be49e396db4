#!/usr/bin/env bash
# The README's main job: write a SmolLM2-135M-shaped model with RANDOM weights (Q8_0), describe it,
# and generate from it. The output text is noise: the weights are random until the project
# ships a trained model. What it shows is the whole path (GGUF writing and validating load,
# tokenizer, prefill, paged KV cache, sampling, streaming detokenization) and its speed.
set -euo pipefail
cd "$(dirname "$0")/.."
LV=${1:-build/release/longview}
SHARED=${LV_SHARED_DATA:-../shared/data}
vocab=builtin:bytes
[ -f "$SHARED/vocab/ggml-vocab-llama-spm.gguf" ] && vocab="$SHARED/vocab/ggml-vocab-llama-spm.gguf"
mkdir -p build/demo
model=build/demo/smollm2-135m-random-q8_0.gguf
if [ ! -f "$model" ]; then
  "$LV" gen-model --preset smollm2-135m --vocab "$vocab" --type q8_0 --seed 1 -o "$model"
fi
echo "== longview info (random weights, vocabulary: $vocab)"
"$LV" info -m "$model"
echo
echo "== longview run: the weights are RANDOM, so the completion below is noise"
"$LV" run -m "$model" -p "The best thing to do in San Francisco is" -n 32 --temp 0.8 --seed 7
