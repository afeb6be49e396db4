#!/usr/bin/env bash
# Writes tests/golden/tokenizer/: what llama.cpp (the oracle) answers for longview's tokenizer
# tests, so that `make test` needs neither llama.cpp nor a network.
#
#   scripts/gen-tokenizer-golden.sh [--build-only]
#
# It builds oracle/lv_oracle_tokenizer.c (a small program against llama.cpp's public llama.h)
# against a prebuilt libllama, by default the one node-llama-cpp 3.21.1 bundles (llama.cpp
# release v0.4.0 there):
#   mkdir -p /tmp/oracle && cd /tmp/oracle && npm init -y && npm i -E --ignore-scripts node-llama-cpp@3.21.1
#   git clone node_modules/node-llama-cpp/llama/gitRelease.bundle /tmp/llama-src/src   # headers
# Override with LLAMA_LIB_DIR and LLAMA_INCLUDE. Nothing built or fetched here is committed.
#
# Files written (all small):
#   inputs.txt             the round-trip inputs, one hex string per line: llama.cpp's test
#                          vector strings, then random UTF-8 (seeded: invalid bytes, lone
#                          surrogates as bytes, overlong forms, 4-byte emoji, CJK, long runs of
#                          spaces and newlines)
#   roundtrip-NAME.txt     per input: "<n> <ids...> | <hex of llama_detokenize>" (no specials)
#   haystack-NAME.txt      per essay of ../shared/data/haystack: token count, FNV-64 of the ids
#                          and of the decoded text, and whether it decodes back to the file
# NAME: the five vocab GGUFs, llama3-json / qwen3-json, the GGUFs that longview's own
# tokenizer.json import writes (so llama.cpp also checks that conversion), and gemma4, a synthetic
# vocabulary of that type (scripts/gen-gemma4-vocab.py writes vocab-gemma4.gguf; info-gemma4.txt
# holds llama.cpp's special ids and add_bos for it).
set -euo pipefail
cd "$(dirname "$0")/.."
LIB=${LLAMA_LIB_DIR:-/tmp/oracle/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64}
INC=${LLAMA_INCLUDE:-/tmp/llama-src/src}
SHARED=${LV_SHARED_DATA:-../shared/data}
mkdir -p build/oracle
gcc -O2 -o build/oracle/lv_oracle_tokenizer oracle/lv_oracle_tokenizer.c -I"$INC/include" -I"$INC/ggml/include" \
    -L"$LIB" -l:libllama.v0.4.0.so -l:libggml.v0.4.0.so -l:libggml-base.so -Wl,-rpath,"$LIB"
[ "${1:-}" = "--build-only" ] && exit 0
oracle=build/oracle/lv_oracle_tokenizer
out=tests/golden/tokenizer
mkdir -p "$out"

# the inputs
python3 - "$SHARED/vocab/ggml-vocab-gpt-2.gguf.inp" "$out/inputs.txt" build/oracle/inputs.bin <<'PY'
import random, struct, sys
inp, out_txt, out_bin = sys.argv[1:4]
strings = open(inp, 'rb').read().split(b'\n__ggml_vocab_test__\n')[:-1]
rng = random.Random(20240601)
def piece():
    k = rng.randrange(12)
    if k == 0: return bytes(rng.choice([0x80 + rng.randrange(0x75), 0xF8 + rng.randrange(8), 0xC0, 0xC1]) for _ in range(rng.randrange(1, 4)))
    if k == 1: return b'\xed' + bytes([0xA0 + rng.randrange(0x20), 0x80 + rng.randrange(0x40)])  # lone surrogate
    if k == 2: return b'\xc0\x80' if rng.random() < 0.5 else b'\xe0\x80\xaf'                    # overlong
    if k == 3: return chr(rng.choice([0x1F600, 0x1F680, 0x1F999, 0x1FAE9, 0x1D11E]) + rng.randrange(8) if rng.random() < 0.9 else 0x10FFFF).encode()
    if k == 4: return ''.join(chr(0x4E00 + rng.randrange(0x5000)) for _ in range(rng.randrange(1, 6))).encode()
    if k == 5: return b' ' * rng.randrange(1, 70)
    if k == 6: return rng.choice([b'\n', b'\r\n', b'\n\n', b'\t', b' \n ']) * rng.randrange(1, 20)
    if k == 7: return rng.choice([b"'s", b"'LL", b"'ve", b"n't", b' 12345', b'3.14159', b'\xc2\xa0', b'\xe3\x80\x80', b'\xe2\x80\xa8'])
    if k == 8: return ''.join(rng.choice('ÄäÖöÜüßéèêçñ€£¥©®™αβγδЖжשלוםمرحبا') for _ in range(rng.randrange(1, 8))).encode()
    if k == 9: return bytes(rng.choice(b'!?.,;:()[]{}<>|/\\@#$%^&*-_=+~`"') for _ in range(rng.randrange(1, 6)))
    if k == 10: return rng.choice([b'<|endoftext|>', b'<s>', b'</s>', b'<|im_start|>', b'<|eot_id|>', b'[INST]'])
    return ' '.join(rng.choice(['the', 'Hello', 'world', 'tokenizer', 'LLaMA', 'GGUF', 'x', 'QwQ']) for _ in range(rng.randrange(1, 5))).encode()
for i in range(300):
    s = b''.join(piece() for _ in range(rng.randrange(1, 10)))
    # lead bytes F5-F7 with three continuation bytes make llama.cpp abort: keep them out
    s = bytes(b if b < 0xF5 or b > 0xF7 else 0xF8 for b in s)
    strings.append(s)
strings.append(b' ' * 3000 + b'\n' * 2000 + b'x')
with open(out_txt, 'w') as f:
    for s in strings: f.write((s.hex() or '-') + '\n')
with open(out_bin, 'wb') as f:
    for s in strings: f.write(struct.pack('<I', len(s)) + s)
PY

# our tokenizer.json conversions (written by the test into build/release/tmp)
make -s -j2 build/release/lv_test
LV_TEST_TMPDIR=build/release/tmp build/release/lv_test tokenizer_json >/dev/null 2>&1 || true

# gemma4: a synthetic vocabulary of that tokenizer type (no Gemma 4 download needed), committed
python3 scripts/gen-gemma4-vocab.py "$out/vocab-gemma4.gguf"

vocabs=(llama-spm phi-3 gpt-2 llama-bpe qwen2 llama3-json qwen3-json gemma4)
for name in "${vocabs[@]}"; do
  case $name in
    gemma4) gguf=$out/vocab-gemma4.gguf; "$oracle" info "$gguf" > "$out/info-gemma4.txt" ;;
    *-json) gguf=build/release/tmp/${name%-json}-from-json.gguf ;;
    *) gguf=$SHARED/vocab/ggml-vocab-$name.gguf ;;
  esac
  [ -f "$gguf" ] || { echo "missing $gguf" >&2; exit 1; }
  "$oracle" roundtrip "$gguf" build/oracle/inputs.bin > "$out/roundtrip-$name.txt"
  "$oracle" digest "$gguf" $(ls "$SHARED"/haystack/paul-graham-essays/*.txt | sort) > "$out/haystack-$name.txt"
  echo "$name: $(wc -l < "$out/roundtrip-$name.txt") round trips, $(wc -l < "$out/haystack-$name.txt") essays"
done
# the tokenizer.json conversions must agree with the GGUF files of the same vocabularies: the
# test compares them with those goldens, so keep one copy
for pair in llama3-json:llama-bpe qwen3-json:qwen2; do
  a=${pair%%:*}; b=${pair##*:}
  cmp -s "$out/roundtrip-$a.txt" "$out/roundtrip-$b.txt" || { echo "llama.cpp tokenizes $a unlike $b" >&2; exit 1; }
  diff <(cut -d' ' -f2- "$out/haystack-$a.txt") <(cut -d' ' -f2- "$out/haystack-$b.txt") >/dev/null || { echo "haystack: $a differs from $b" >&2; exit 1; }
  rm "$out/roundtrip-$a.txt" "$out/haystack-$a.txt"
done
du -sh "$out"
