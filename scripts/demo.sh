#!/usr/bin/env bash
# The README's main job: a needle-in-a-haystack question (a 5-digit pass key hidden in a
# 16384-token haystack) put to the model longview trained itself (models/passkey-long-bytes.gguf,
# bench/train/RESULTS.md), once with dense attention and once with DuoAttention (half the KV
# heads streaming: sink 64 + window 256) plus LServe page selection on the retrieval heads.
# For each it prints the answer, whether it is the key, the prefill time and speed, the decode
# speed and the KV cache's memory. Then the same for a random-weight SmolLM2-135M-shaped model
# (its text is noise), to show the path on a real model shape and vocabulary.
#
# usage: scripts/demo.sh [LONGVIEW] [LENGTH] [DEPTH]
set -euo pipefail
cd "$(dirname "$0")/.."
LV=${1:-build/release/longview}
LEN=${2:-16384}
DEPTH=${3:-0.8}
SHARED=${LV_SHARED_DATA:-../shared/data}
model=models/passkey-long-bytes.gguf
heads=models/passkey-long-bytes.heads.tsv

echo "== a pass key hidden at depth $DEPTH of a $LEN-token haystack; the model: $model (trained by longview train)"
echo "== dense attention, then DuoAttention (sparsity 0.5, heads from longview identify) + LServe (budget 4096)"
"$LV" eval passkey -m "$model" --lengths "$LEN" --depths "$DEPTH" --samples 1 -n 12 --seed 3 \
  --mode dense,duo+lserve --heads "$heads" --sparsity 0.5 --kv-budget 4096

vocab=builtin:bytes
[ -f "$SHARED/vocab/ggml-vocab-llama-spm.gguf" ] && vocab="$SHARED/vocab/ggml-vocab-llama-spm.gguf"
mkdir -p build/demo
rnd=build/demo/smollm2-135m-random-q8_0.gguf
[ -f "$rnd" ] || "$LV" gen-model --preset smollm2-135m --vocab "$vocab" --type q8_0 --seed 1 -o "$rnd"
echo
echo "== a SmolLM2-135M-shaped model with RANDOM weights (Q8_0, vocabulary: $vocab): the completion below is noise"
"$LV" run -m "$rnd" -p "The best thing to do in San Francisco is" -n 32 --temp 0.8 --seed 7
