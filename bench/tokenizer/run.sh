#!/usr/bin/env bash
# Tokenizer speed: longview's lv_tokenize against llama.cpp's llama_tokenize on the same text
# (the 49 haystack essays concatenated, about 644 KB), same vocabularies, several repetitions;
# best and median wall time of one tokenize call (vocabulary load excluded) for each.
#   bench/tokenizer/run.sh [REPS]
# Needs the release build (make) and the oracle (scripts/gen-tokenizer-golden.sh --build-only,
# which needs a prebuilt llama.cpp: see that script).
set -euo pipefail
cd "$(dirname "$0")/../.."
reps=${1:-7}
SHARED=${LV_SHARED_DATA:-../shared/data}
make -s -j2 build/release/liblongview.a
pkgs="libavformat libavcodec libswscale libavutil libpcre2-8 libpcre2-32 jansson"
gcc -O2 -std=c11 -Iinclude -o build/release/bench_tokenize bench/tokenizer/bench_tokenize.c build/release/liblongview.a \
    $(pkg-config --libs $pkgs) -lm -pthread
[ -x build/oracle/lv_oracle_tokenizer ] || scripts/gen-tokenizer-golden.sh --build-only
text=build/release/haystack.txt
cat $(ls "$SHARED"/haystack/paul-graham-essays/*.txt | sort) > "$text"
echo "text: $text ($(wc -c < "$text") bytes); $(nproc) cores;$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
for v in llama-spm gpt-2 llama-bpe qwen2; do
  echo "== $v"
  build/release/bench_tokenize "$SHARED/vocab/ggml-vocab-$v.gguf" "$text" "$reps"
  build/oracle/lv_oracle_tokenizer bench "$SHARED/vocab/ggml-vocab-$v.gguf" "$text" "$reps"
done
