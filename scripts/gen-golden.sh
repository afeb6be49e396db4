#!/usr/bin/env bash
# Regenerates the golden logits in tests/golden/*.lvg with llama.cpp as the oracle.
#
#   scripts/gen-golden.sh            # all cases
#   scripts/gen-golden.sh llama-f32  # one case
#
# For each case: `longview gen-model` writes a small random-weight model (deterministic from its
# seed), llama.cpp (through oracle/lv_oracle.c, built by scripts/oracle-setup.sh) runs a fixed
# token sequence through it, and the result is written as a golden file: a text header (the
# gen-model parameters, the model's SHA-256, the llama.cpp settings) and a binary body (format:
# tests/golden/README.md). The tests regenerate the same model, check its SHA-256, and compare
# longview's logits and greedy tokens with the golden ones, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${LV_SHARED_DATA:-../shared/data}
[ -d "$SHARED/vocab" ] || { echo "gen-golden: $SHARED/vocab not found (set LV_SHARED_DATA)" >&2; exit 1; }
make -j"$(nproc)" build/release/longview >/dev/null
LV=build/release/longview
ORACLE=$(scripts/oracle-setup.sh | head -1)
. .oracle/env
export LV_ORACLE_LIBDIR OMP_WAIT_POLICY=passive
# llama.cpp v0.4.0 multiplies K and V (and Q) by a Walsh-Hadamard matrix before a quantized cache
# stores them when the head size is a multiple of 64 (its attn_rot_k / attn_rot_v); longview stores
# them as they are (docs/long-context.md), so the oracle runs without that rotation. It changes
# nothing for f32 and f16 caches.
export LLAMA_ATTN_ROT_DISABLE=1
WORK=build/golden-work
mkdir -p "$WORK" tests/golden

N_TOKENS=512
N_SAMPLE=32
N_GEN=64
GEN_PROMPT=16

# name | arch | dim layers heads kv_heads ffn | vocab | type | seed | extra gen-model flags | kv | fa
CASES=(
  "llama-f32|llama|128 2 4 2 384|vocab/ggml-vocab-llama-spm.gguf|f32|1||f32|off"
  "llama-f16|llama|128 2 4 2 384|vocab/ggml-vocab-llama-spm.gguf|f16|2||f32|off"
  "llama-bf16|llama|128 2 4 2 384|vocab/ggml-vocab-llama-spm.gguf|bf16|3||f32|off"
  "llama-q8_0|llama|128 2 4 2 384|vocab/ggml-vocab-llama-spm.gguf|q8_0|4||f32|off"
  "llama-q4_0|llama|128 2 4 2 384|vocab/ggml-vocab-llama-spm.gguf|q4_0|5||f32|off"
  "llama3rope-f32|llama|128 2 4 2 384|vocab/ggml-vocab-llama-spm.gguf|f32|6|--tied --llama3-rope --rope-base 500000|f32|off"
  "llama-mha-f32|llama|96 3 3 3 256|vocab/ggml-vocab-llama-spm.gguf|f32|7||f32|off"
  "qwen2-f32|qwen2|128 2 4 2 384|vocab/ggml-vocab-gpt-2.gguf|f32|11|--rope-base 1000000|f32|off"
  "qwen2-f16|qwen2|128 2 4 2 384|vocab/ggml-vocab-gpt-2.gguf|f16|12|--tied|f32|off"
  "qwen2-q8_0|qwen2|128 2 4 2 384|vocab/ggml-vocab-gpt-2.gguf|q8_0|13||f32|off"
  "qwen2-q4_0|qwen2|128 2 4 2 384|vocab/ggml-vocab-gpt-2.gguf|q4_0|14||f32|off"
  "llama-f16-kvf16|llama|128 2 4 2 384|vocab/ggml-vocab-llama-spm.gguf|f16|21||f16|auto"
  "qwen2-q8_0-kvf16|qwen2|128 2 4 2 384|vocab/ggml-vocab-gpt-2.gguf|q8_0|22||f16|auto"
  "llama-q4_1|llama|128 2 4 2 384|vocab/ggml-vocab-llama-spm.gguf|q4_1|31||f32|off"
  "llama-q5_0|llama|128 2 4 2 384|vocab/ggml-vocab-llama-spm.gguf|q5_0|32||f32|off"
  "qwen2-q5_1|qwen2|128 2 4 2 384|vocab/ggml-vocab-gpt-2.gguf|q5_1|33||f32|off"
  "llama-q4_k|llama|256 2 4 2 768|vocab/ggml-vocab-llama-spm.gguf|q4_k|34||f32|off"
  "qwen2-q5_k|qwen2|256 2 4 2 768|vocab/ggml-vocab-gpt-2.gguf|q5_k|35||f32|off"
  "llama-q6_k|llama|256 2 4 2 768|vocab/ggml-vocab-llama-spm.gguf|q6_k|36||f32|off"
  "llama-q4_k_m|llama|256 4 4 2 768|vocab/ggml-vocab-llama-spm.gguf|q4_k_m|37|--tied|f32|off"
  "qwen2-q4_k_m-fallback|qwen2|128 2 4 2 384|vocab/ggml-vocab-gpt-2.gguf|q4_k_m|38||f32|off"
  "qwen3-f32|qwen3|128 2 4 2 384|vocab/ggml-vocab-gpt-2.gguf|f32|41|--head-dim 64 --rope-base 1000000|f32|off"
  "qwen3-q8_0-kvf16|qwen3|128 2 4 2 384|vocab/ggml-vocab-gpt-2.gguf|q8_0|42|--tied --head-dim 64|f16|auto"
  "smollm3-f32|smollm3|128 4 4 2 384|vocab/ggml-vocab-llama-spm.gguf|f32|43|--rope-base 5000000|f32|off"
  "smollm3-q4_k_m|smollm3|256 4 4 2 768|vocab/ggml-vocab-llama-spm.gguf|q4_k_m|44|--tied|f32|off"
  "gemma3-f32|gemma3|128 3 4 1 384|vocab/ggml-vocab-llama-spm.gguf|f32|45|--tied --head-dim 64 --swa 64 --swa-pattern 3 --rope-base 1000000|f32|off"
  "llama-iq4_nl|llama|128 2 4 2 384|vocab/ggml-vocab-llama-spm.gguf|iq4_nl|47||f32|off"
  "smollm3-q2_k|smollm3|256 4 4 2 768|vocab/ggml-vocab-llama-spm.gguf|q2_k|49|--tied|f32|off"
  "gemma3-q3_k|gemma3|256 3 4 2 768|vocab/ggml-vocab-llama-spm.gguf|q3_k|50|--tied --head-dim 64 --swa 64 --swa-pattern 3|f32|off"
  "qwen3-iq4_xs|qwen3|256 2 4 2 768|vocab/ggml-vocab-gpt-2.gguf|iq4_xs|48|--head-dim 64 --tied|f32|off"
  "gemma3-q8_0-kvf16|gemma3|128 3 2 1 384|vocab/ggml-vocab-llama-spm.gguf|q8_0|46|--tied --head-dim 128 --swa 100 --swa-pattern 3|f16|auto"
  "qwen35-f32|qwen35|128 4 4 2 384|vocab/ggml-vocab-gpt-2.gguf|f32|51|--head-dim 64 --ssm-state 32 --ssm-heads 2,4|f32|off"
  "qwen35-q8_0-kvf16|qwen35|128 4 4 2 384|vocab/ggml-vocab-gpt-2.gguf|q8_0|52|--tied --head-dim 64 --ssm-state 32 --ssm-heads 2,2|f16|auto"
  "qwen35-q4_k_m|qwen35|256 8 4 2 768|vocab/ggml-vocab-gpt-2.gguf|q4_k_m|53|--tied --head-dim 64 --ssm-state 64 --ssm-heads 2,4|f32|off"
  # quantized KV pages (-ctk / -ctv): llama.cpp needs flash attention for a quantized V cache, and
  # runs with LLAMA_ATTN_ROT_DISABLE=1 (below): head sizes of 32 and of 64 (two blocks per head)
  "llama-f16-kvq8_0|llama|128 2 4 2 384|vocab/ggml-vocab-llama-spm.gguf|f16|23||q8_0|on"
  "qwen3-f16-kvq8_0|qwen3|128 2 4 2 384|vocab/ggml-vocab-gpt-2.gguf|f16|27|--tied --head-dim 64|q8_0|on"
  "qwen3-q8_0-kvq8_0|qwen3|128 2 4 2 384|vocab/ggml-vocab-gpt-2.gguf|q8_0|24|--tied --head-dim 64|q8_0|on"
  "llama-f16-kvq4_0|llama|128 2 4 2 384|vocab/ggml-vocab-llama-spm.gguf|f16|25||q4_0|on"
  "qwen3-f16-kvq4_0|qwen3|128 2 4 2 384|vocab/ggml-vocab-gpt-2.gguf|f16|28|--tied --head-dim 64|q4_0|on"
)

for c in "${CASES[@]}"; do
  IFS='|' read -r name arch shape vocab type seed extra kv fa <<<"$c"
  [ $# -eq 0 ] || [[ " $* " == *" $name "* ]] || continue
  read -r dim layers heads kvh ffn <<<"$shape"
  model="$WORK/$name.gguf"
  # shellcheck disable=SC2086
  $LV gen-model --arch "$arch" --dim "$dim" --layers "$layers" --heads "$heads" --kv-heads "$kvh" --ffn "$ffn" \
      --vocab "$SHARED/$vocab" --type "$type" --seed "$seed" $extra -o "$model" 2>/dev/null
  n_vocab=$($LV info -m "$model" | awk '/^n_vocab:/ {print $2}')
  # a fixed pseudo-random token sequence over the whole vocabulary (BOS-free: ids only)
  awk -v n="$N_TOKENS" -v v="$n_vocab" -v s="$seed" 'BEGIN { x = s * 7919 + 1; for (i = 0; i < n; i++) { x = (x * 16807) % 2147483647; printf "%d%s", x % v, (i + 1 < n ? "," : "\n") } }' > "$WORK/$name.tokens"
  "$ORACLE" "$model" "$WORK/$name.tokens" "$WORK/$name.body" --kv "$kv" --fa "$fa" --n-sample $N_SAMPLE --n-gen $N_GEN --gen-prompt $GEN_PROMPT --threads 2
  sha=$(sha256sum "$model" | cut -d' ' -f1)
  {
    echo "LVG1"
    echo "name $name"
    echo "arch $arch"
    echo "dim $dim"
    echo "layers $layers"
    echo "heads $heads"
    echo "kv_heads $kvh"
    echo "ffn $ffn"
    echo "vocab $vocab"
    echo "type $type"
    echo "seed $seed"
    echo "extra $extra"
    echo "model_sha256 $sha"
    echo "kv $kv"
    echo "fa $fa"
    echo "n_vocab $n_vocab"
    echo "n_tokens $N_TOKENS"
    echo "n_sample $N_SAMPLE"
    echo "n_gen $N_GEN"
    echo "gen_prompt $GEN_PROMPT"
    echo "oracle llama.cpp v0.4.0 (node-llama-cpp 3.21.1), lv_oracle"
    echo "end"
    cat "$WORK/$name.body"
  } > "tests/golden/$name.lvg"
  echo "gen-golden: tests/golden/$name.lvg ($(stat -c %s "tests/golden/$name.lvg") bytes)"
done
