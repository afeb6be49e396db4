# longview info and the top-level dispatcher
. "$(dirname "$0")/_lib.sh"
expect_ok "help" "$LV" --help
grep -q "info" "$T/out" || fail "--help does not list info"
expect_fail "unknown command" "$LV" frobnicate
expect_fail "info without -m" "$LV" info
expect_fail "info on a missing file" "$LV" info -m "$T/does-not-exist.gguf"
printf 'NOTGGUF....' > "$T/bad.gguf"
expect_fail "info on a non-GGUF file" "$LV" info -m "$T/bad.gguf"
grep -q "not a GGUF file" "$T/err" || fail "bad magic not named"

# a key name of terminal escapes and invalid UTF-8 is printed escaped, never raw
{ printf 'GGUF\003\000\000\000'; printf '\000\000\000\000\000\000\000\000'; printf '\001\000\000\000\000\000\000\000'
  printf '\010\000\000\000\000\000\000\000'; printf '\033[2Jbad\377'; printf '\143\000\000\000'; } > "$T/esc.gguf"
expect_fail "a key of escape bytes" "$LV" info -m "$T/esc.gguf"
grep -q "'\\\\x1b\[2Jbad\\\\xff'" "$T/err" || fail "the key is escaped: $(cat -v "$T/err")"
LC_ALL=C grep -q "$(printf '\033')" "$T/err" && fail "a raw ESC reached the terminal: $(cat -v "$T/err")"

# the newer families: info names their features, and gemma3's plan marks its sliding-window layers
expect_ok "gen-model gemma3" "$LV" gen-model --arch gemma3 --dim 64 --layers 4 --heads 2 --kv-heads 1 --head-dim 32 --ffn 128 \
  --swa 16 --swa-pattern 2 --vocab builtin:bytes --type q3_k -o "$T/g3.gguf"
expect_ok "info gemma3" "$LV" info -m "$T/g3.gguf"
grep -q "^architecture:  gemma3" "$T/out" && grep -q "^sliding window: 2 of 4 layers see the last 16 positions" "$T/out" &&
  grep -q "GeGLU" "$T/out" && grep -q "2 sliding-window (the model's)" "$T/out" && grep -q "layer   0: w" "$T/out" &&
  grep -q "layer   1: R" "$T/out" && grep -q "bytes per token (f16) for the 2 global layers, plus at most" "$T/out" ||
  fail "gemma3's features and plan: $(cat "$T/out")"
expect_ok "gen-model smollm3" "$LV" gen-model --arch smollm3 --dim 64 --layers 4 --heads 2 --ffn 128 --vocab builtin:bytes --type iq4_nl -o "$T/s3.gguf"
expect_ok "info smollm3" "$LV" info -m "$T/s3.gguf"
grep -q "^NoPE layers:   every 4-th layer" "$T/out" && grep -q "iq4_nl" "$T/out" || fail "smollm3: $(cat "$T/out")"
expect_ok "run gemma3" "$LV" run -m "$T/g3.gguf" -p "hello" -n 4 --temp 0
expect_fail "gen-model: --swa on llama" "$LV" gen-model --arch llama --dim 64 --layers 2 --heads 2 --ffn 128 --swa 8 --vocab builtin:bytes -o "$T/x.gguf"
grep -q "gemma3 feature" "$T/err" || fail "the --swa error names gemma3: $(cat "$T/err")"
# qwen35: the hybrid layers, the state per sequence, the plan of the attention layers only
expect_ok "gen-model qwen35" "$LV" gen-model --arch qwen35 --dim 64 --layers 8 --heads 2 --kv-heads 1 --head-dim 32 --ffn 128 \
  --ssm-state 16 --ssm-heads 2,4 --vocab builtin:bytes --type q8_0 -o "$T/q35.gguf"
expect_ok "info qwen35" "$LV" info -m "$T/q35.gguf"
grep -q "^architecture:  qwen35" "$T/out" && grep -q "^hybrid:        6 gated delta-net (recurrent) layers and 2 gated full-attention" "$T/out" &&
  grep -q "state 33792 bytes per sequence" "$T/out" && grep -q "layer   0: recurrent (state)" "$T/out" && grep -q "layer   3: R " "$T/out" &&
  grep -q "^KV per token:  256 bytes (f16)" "$T/out" && grep -q "+ 33792 bytes of recurrent state per sequence" "$T/out" ||
  fail "qwen35's layers, state and plan: $(cat "$T/out")"
expect_ok "run qwen35" "$LV" run -m "$T/q35.gguf" -p "hello world" -n 6 --temp 0
expect_fail "gen-model: --ssm-state on qwen3" "$LV" gen-model --arch qwen3 --dim 64 --layers 2 --heads 2 --ffn 128 --ssm-state 16 --vocab builtin:bytes -o "$T/x.gguf"
grep -q "qwen35 feature" "$T/err" || fail "the --ssm-state error names qwen35: $(cat "$T/err")"
expect_fail "gen-model: bad --ssm-heads" "$LV" gen-model --arch qwen35 --dim 64 --layers 4 --heads 2 --ffn 128 --ssm-heads 3,4 --vocab builtin:bytes -o "$T/x.gguf"
grep -q "ssm-heads 3,4" "$T/err" || fail "the --ssm-heads error: $(cat "$T/err")"
expect_fail "identify on gemma3" "$LV" identify -m "$T/g3.gguf" -o "$T/h.tsv"
grep -q "supports llama and qwen2 models, not gemma3" "$T/err" || fail "identify names the architecture: $(cat "$T/err")"
true
