# gen-model, info, logits and run end to end, and their errors
. "$(dirname "$0")/_lib.sh"
[ -d "$SHARED/vocab" ] || { echo "skip: $SHARED/vocab not found"; exit 0; }
V="$SHARED/vocab/ggml-vocab-llama-spm.gguf"
M="$T/m.gguf"
expect_ok "gen-model" "$LV" gen-model --arch llama --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 --vocab "$V" --type q8_0 --seed 3 -o "$M"
expect_ok "info" "$LV" info -m "$M"
grep -q "^n_layer: *2" "$T/out" || fail "info shows the layers"
grep -q "q8_0" "$T/out" || fail "info shows the type"

# logits: the last row, every row, and chunking does not change them
expect_ok "logits last" "$LV" logits -m "$M" --tokens 1,450,3000,29 -o "$T/last.f32" -t 2
[ "$(stat -c %s "$T/last.f32")" -eq $((32000 * 4)) ] || fail "one row of 32000 floats"
expect_ok "logits all" "$LV" logits -m "$M" --tokens 1,450,3000,29 --all -o "$T/all.f32" -t 2
[ "$(stat -c %s "$T/all.f32")" -eq $((4 * 32000 * 4)) ] || fail "four rows"
expect_ok "logits all, chunks of 1" "$LV" logits -m "$M" --tokens 1,450,3000,29 --all -b 1 -o "$T/all1.f32" -t 1
cmp -s "$T/all.f32" "$T/all1.f32" || fail "chunked logits differ"
tail -c $((32000 * 4)) "$T/all.f32" | cmp -s - "$T/last.f32" || fail "last row of --all differs from the last-row run"
expect_ok "logits from text" "$LV" logits -m "$M" -p "Hello world" -o "$T/p.f32"

# run: greedy is deterministic and equals the argmax chain; text mode prints
expect_ok "run greedy ids" "$LV" run -m "$M" --tokens 1,450,3000 -n 12 --temp 0 --ids -t 2
ids1=$(cat "$T/out")
expect_ok "run greedy ids again" "$LV" run -m "$M" --tokens 1,450,3000 -n 12 --temp 0 --ids -t 1
[ "$ids1" = "$(cat "$T/out")" ] || fail "greedy differs between runs/thread counts: $ids1 vs $(cat "$T/out")"
[ "$(echo "$ids1" | wc -w)" -le 12 ] || fail "at most -n tokens"
expect_ok "run text" "$LV" run -m "$M" -p "Once upon a time" -n 8 --seed 5
grep -q "tokens/s" "$T/err" || fail "timings on stderr"

# errors
expect_fail "prompt longer than the context" "$LV" run -m "$M" --tokens 1,2,3,4,5,6,7,8,9,10 -n 4 -c 8
expect_fail "token id out of range" "$LV" logits -m "$M" --tokens 1,32000 -o "$T/x.f32"
grep -q "outside the vocabulary" "$T/err" || fail "names the bad id"
expect_fail "no prompt" "$LV" run -m "$M"
expect_fail "bad -n" "$LV" run -m "$M" -p hi -n -3
expect_fail "bad type" "$LV" gen-model --arch llama --dim 64 --layers 1 --heads 4 --ffn 64 --vocab "$V" --type iq2_xxs -o "$T/y.gguf"
expect_fail "missing model file" "$LV" run -m "$T/nope.gguf" -p hi
expect_fail "unknown option" "$LV" logits --frobnicate
head -c 1000 "$M" > "$T/trunc.gguf"
expect_fail "truncated model" "$LV" run -m "$T/trunc.gguf" -p hi
expect_ok "help of every command" "$LV" run --help
grep -q -- "--temp" "$T/out" || fail "run --help lists --temp"

# bench: llama-bench field names in JSON lines, one per test
expect_ok "bench json" "$LV" bench -m "$M" -p 16 -n 4 -r 2 -t 1,2 --no-limits -o json
[ "$(grep -c '"n_prompt"' "$T/out")" -eq 4 ] || fail "4 JSON lines (pp and tg at 2 thread counts): $(cat "$T/out")"
for f in '"avg_ts"' '"stddev_ts"' '"samples_ts"' '"n_gen":4' '"n_threads":2' '"lv_gbs"'; do grep -q "$f" "$T/out" || fail "field $f missing"; done
expect_ok "bench markdown with depth" "$LV" bench -m "$M" -p 8 -n 2 -d 0,16 -r 1 --no-limits
grep -q "tg2 @ d16" "$T/out" || fail "depth test row"
grep -q "^bench 1/4: pp8, " "$T/err" && grep -q "^bench 4/4: tg2 @ d16, .*: done in" "$T/err" || fail "progress per test on stderr: $(cat "$T/err")"
expect_ok "bench --help" "$LV" bench --help
grep -q "^% FMA can pass 100% on a quantized" "$T/out" || fail "--help explains a % FMA over 100"
expect_fail "bench bad list" "$LV" bench -m "$M" -p 8,x

# run sizes its context from the prompt, and says when the prompt runs past the model's training
# context (passkey-small-bytes was trained on 1024 tokens; 6000 bytes are > 4096 tokens)
P=models/passkey-small-bytes.gguf
if [ -f "$P" ]; then
  head -c 6000 /dev/zero | tr '\0' 'a' > "$T/long.txt"
  expect_ok "run: -c from a long prompt" "$LV" run -m "$P" -f "$T/long.txt" -n 2
  grep -q "the prompt plus -n (6006 tokens) exceeds the model's training context (1024)" "$T/err" || fail "the training context warning: $(cat "$T/err")"
  expect_ok "run: -c beyond the training context" "$LV" run -m "$P" -p "hello" -n 2 -c 8192
  grep -q "warning: -c (8192 tokens) exceeds the model's training context (1024)" "$T/err" || fail "warns about -c: $(cat "$T/err")"
  expect_ok "run: a short prompt" "$LV" run -m "$P" -p "hello" -n 2
  grep -q "training context" "$T/err" && fail "no warning inside the training context: $(cat "$T/err")"
  expect_fail "run: -c given and too small" "$LV" run -m "$P" -f "$T/long.txt" -n 2 -c 4096
  grep -q "raise -c" "$T/err" || fail "says to raise -c"
fi
