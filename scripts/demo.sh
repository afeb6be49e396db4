#!/usr/bin/env bash
# The README's main job: a needle-in-a-haystack question over a 16384-token context of real text
# (Paul Graham's essays, ../shared/data/haystack) put to the model longview trained itself
# (models/retrieval-long-bytes.gguf, bench/train/RESULTS.md): RULER's single needle, "The special
# magic number for San Francisco is NNNNN.", hidden at a depth, then "What is the special magic
# number for San Francisco?". Asked once with dense attention and once with DuoAttention (half the
# KV heads streaming: sink 64 + window 256) plus LServe page selection on the retrieval heads. For
# each it prints the answer, whether it is the number, the prefill time and speed, the decode speed
# and the KV cache's memory. Without ../shared/data the question is the passkey one (a 5-digit pass
# key in repeated filler sentences). Then the same for a random-weight SmolLM2-135M-shaped model
# (its text is noise), to show the path on a real model shape and vocabulary.
#
# usage: scripts/demo.sh [LONGVIEW] [LENGTH] [DEPTH]   (LV_DEMO_CACHE: where the random model is kept,
#        default build/demo; LV_SHARED_DATA: ../shared/data elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."
LV=${1:-build/release/longview}
LEN=${2:-16384}
DEPTH=${3:-0.8}
SHARED=${LV_SHARED_DATA:-../shared/data}
model=models/retrieval-long-bytes.gguf
heads=models/retrieval-long-bytes.heads.tsv
hay=$SHARED/haystack/paul-graham-essays

echo "== the model: $model (trained by longview train); dense attention, then DuoAttention"
echo "== (sparsity 0.5, heads from longview identify) + LServe (budget 4096)"
if [ -d "$hay" ]; then
  echo "== a magic number hidden at depth $DEPTH of $LEN tokens of essays"
  "$LV" eval niah -m "$model" --haystack "$hay" --lengths "$LEN" --depths "$DEPTH" --samples 1 -n 8 --seed 3 \
    --needle $'\nThe special magic number for San Francisco is {key}.\n' --keywords '{key}' \
    --question 'What is the special magic number for San Francisco?' \
    --answer-prefix 'The special magic number for San Francisco is' \
    --mode dense,duo+lserve --heads "$heads" --sparsity 0.5 --kv-budget 4096
else
  echo "== ($hay not found) a pass key hidden at depth $DEPTH of a $LEN-token filler"
  "$LV" eval passkey -m "$model" --lengths "$LEN" --depths "$DEPTH" --samples 1 -n 12 --seed 3 \
    --mode dense,duo+lserve --heads "$heads" --sparsity 0.5 --kv-budget 4096
fi

vocab=builtin:bytes
[ -f "$SHARED/vocab/ggml-vocab-llama-spm.gguf" ] && vocab="$SHARED/vocab/ggml-vocab-llama-spm.gguf"
# The random model is cached under a name keyed on everything that makes it: the gen-model flags,
# the vocabulary's content and the longview binary that writes it (a change of any gives a new
# file, and the stale ones are removed).
cache=${LV_DEMO_CACHE:-build/demo}
mkdir -p "$cache"
flags=(--preset smollm2-135m --type q8_0 --seed 1)
key=$( { echo "${flags[*]}"; if [ -f "$vocab" ]; then sha256sum < "$vocab"; else echo "$vocab"; fi; sha256sum < "$(command -v "$LV")"; } |
  sha256sum | cut -c1-16)
rnd=$cache/smollm2-135m-random-q8_0-$key.gguf
for old in "$cache"/smollm2-135m-random-q8_0*.gguf; do [ -e "$old" ] && [ "$old" != "$rnd" ] && rm -f "$old"; done
[ -f "$rnd" ] || "$LV" gen-model "${flags[@]}" --vocab "$vocab" -o "$rnd"
echo
echo "== a SmolLM2-135M-shaped model with RANDOM weights (Q8_0, vocabulary: $vocab): the completion below is noise"
"$LV" run -m "$rnd" -p "The best thing to do in San Francisco is" -n 32 --temp 0.8 --seed 7
