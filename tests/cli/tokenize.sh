# longview tokenize on vocabulary-only GGUF files
. "$(dirname "$0")/_lib.sh"
V=$SHARED/vocab
[ -d "$V" ] || { echo "skip: $V absent"; exit 0; }
expect_ok "help" "$LV" tokenize --help
grep -q -- "--parse-special" "$T/out" || fail "--help does not list --parse-special"
expect_fail "no model" "$LV" tokenize -p hi
expect_fail "both -p and -f" "$LV" tokenize -m "$V/ggml-vocab-gpt-2.gguf" -p a -f /dev/null
expect_fail "missing file" "$LV" tokenize -m "$T/nope.gguf" -p hi
# llama.cpp's ids (ggml-vocab-llama-spm.gguf.out: " Hello world" -> 15043 3186)
expect_ok "spm ids" "$LV" tokenize -m "$V/ggml-vocab-llama-spm.gguf" -p "Hello world" --ids
[ "$(cat "$T/out")" = "1 15043 3186" ] || fail "spm ids: $(cat "$T/out")"
expect_ok "spm --no-bos" "$LV" tokenize -m "$V/ggml-vocab-llama-spm.gguf" -p "Hello world" --ids --no-bos
[ "$(cat "$T/out")" = "15043 3186" ] || fail "spm --no-bos: $(cat "$T/out")"
expect_ok "bpe pieces" "$LV" tokenize -m "$V/ggml-vocab-llama-bpe.gguf" -p "Hello world"
grep -q "128000 -> '<|begin_of_text|>'" "$T/out" || fail "no BOS line: $(cat "$T/out")"
grep -q "1917 -> ' world'" "$T/out" || fail "no ' world' line: $(cat "$T/out")"
expect_ok "parse special off" "$LV" tokenize -m "$V/ggml-vocab-llama-bpe.gguf" -p "<|eot_id|>" --ids --no-bos
[ "$(cat "$T/out")" != "128009" ] || fail "special text parsed without --parse-special"
expect_ok "parse special on" "$LV" tokenize -m "$V/ggml-vocab-llama-bpe.gguf" -p "<|eot_id|>" --ids --no-bos --parse-special
[ "$(cat "$T/out")" = "128009" ] || fail "--parse-special: $(cat "$T/out")"
printf 'Hello world' > "$T/in.txt"
expect_ok "from a file" "$LV" tokenize -m "$V/ggml-vocab-gpt-2.gguf" -f "$T/in.txt" --ids
[ "$(cat "$T/out")" = "15496 995" ] || fail "-f: $(cat "$T/out")"
