# longview eval: NIAH and passkey sweeps on a tiny random model in every attention mode (the
# answers are noise; the harness is what is checked): the table, JSON lines, the SVG heat map,
# prompt dumps, and the errors of bad options
. "$(dirname "$0")/_lib.sh"
V="$SHARED/vocab/ggml-vocab-llama-spm.gguf"
H="$SHARED/haystack/paul-graham-essays"
M="$T/m.gguf"
if [ -f "$V" ]; then vocab="$V"; lens=256,512; else vocab=builtin:bytes; lens=600,900; fi
expect_ok "gen-model" "$LV" gen-model --arch llama --dim 32 --layers 3 --heads 4 --kv-heads 2 --ffn 64 --vocab "$vocab" --type q8_0 --seed 11 -o "$M"
printf '0.9\t0.1\n0.8\t0.2\n0.3\t0.7\n' > "$T/p.tsv"   # 3 layers x 2 KV heads, like the model

# passkey in every mode: 4 modes x 2 lengths x 2 depths x 2 samples = 32 JSON lines
expect_ok "passkey, all modes" "$LV" eval passkey -m "$M" --lengths $lens --depths 0,1 --samples 2 -n 4 -t 1 \
  --mode dense,duo,duo+lserve,longgen --heads "$T/p.tsv" -o "$T/pk.jsonl" --plot "$T/pk.svg"
for m in dense duo duo+lserve longgen; do
  grep -q "^passkey | mode $m | m.gguf | 2 samples per cell" "$T/out" || fail "table for $m: $(cat "$T/out")"
done
grep -q "^ *length *0.00 *1.00 | *mean | *prefill t/s | *decode t/s | *KV MiB" "$T/out" || fail "table header"
[ "$(grep -c "^ *${lens%,*} " "$T/out")" -eq 4 ] || fail "a row per length and mode"
grep -q "^mode *accuracy *prefill t/s" "$T/out" || fail "the mode comparison"
[ "$(wc -l < "$T/pk.jsonl")" -eq 32 ] || fail "32 JSON lines, got $(wc -l < "$T/pk.jsonl")"
for f in '"task":"passkey"' '"mode":"duo+lserve"' '"n_tokens":' '"needle_pos":' '"response":' '"correct":' '"prefill_tps":' '"decode_tps":' '"kv_bytes":'; do
  grep -q "$f" "$T/pk.jsonl" || fail "JSON field $f"
done
# seeds 0 and 1 hide different keys; every prompt is at most its length and at most 2 short of it
[ "$(grep -o '"answer":"[0-9]*"' "$T/pk.jsonl" | sort -u | wc -l)" -eq 2 ] || fail "two samples, two keys"
grep -o '"length":[0-9]*,"n_tokens":[0-9]*' "$T/pk.jsonl" | tr -c '0-9\n' ' ' | while read -r l n; do
  [ "$n" -le "$l" ] && [ "$n" -ge $((l - 2)) ] || fail "prompt of $n tokens for length $l"
done || exit 1
grep -q "<svg" "$T/pk.svg" && grep -q "duo+lserve" "$T/pk.svg" || fail "SVG with a panel per mode"
if command -v xmllint >/dev/null; then xmllint --noout "$T/pk.svg" || fail "well-formed SVG"; fi
grep -q "needle at" "$T/err" || fail "per-sample lines on stderr"
expect_ok "quiet" "$LV" eval passkey -m "$M" --lengths ${lens%,*} --depths 0.5 -n 2 -q -t 1
[ ! -s "$T/err" ] || fail "-q prints nothing on stderr: $(cat "$T/err")"

# NIAH with the essays, prompt dumps
if [ -d "$H" ] && [ -f "$V" ]; then
  mkdir -p "$T/dump"
  expect_ok "niah" "$LV" eval niah -m "$M" --haystack "$H" --lengths 256,512 --depths 0.25,0.75 -n 4 -t 1 --dump-prompts "$T/dump" -o "$T/niah.jsonl"
  grep -q "^niah | mode dense" "$T/out" || fail "NIAH table"
  [ "$(ls "$T/dump" | wc -l)" -eq 4 ] || fail "4 prompt dumps"
  f="$T/dump/niah-512-0.75-0.txt"
  grep -q "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day." "$f" || fail "needle in the dump"
  tail -c 60 "$f" | grep -q "Answer: The best thing to do in San Francisco is$" || fail "ends with the answer start"
  grep -q '"answer":"sandwich|Dolores Park"' "$T/niah.jsonl" || fail "NIAH answer keywords"
  expect_ok "niah, custom needle and chat template" "$LV" eval niah -m "$M" --haystack "$H" --lengths 300 --depths 0.5 -n 2 -t 1 \
    --needle "The magic number of the day is 7312." --keywords 7312 --question "What is the magic number?" --chat-template chatml -o "$T/c.jsonl"
  grep -q '"answer":"7312"' "$T/c.jsonl" || fail "custom keywords"
  expect_ok "niah, keyed needle and answer prefix" "$LV" eval niah -m "$M" --haystack "$H" --lengths 400 --depths 0.5 --samples 2 -n 2 -t 1 \
    --needle $'\nThe special magic number for Oslo is {key}.\n' --keywords '{key}' --question "What is the special magic number for Oslo?" \
    --answer-prefix "The special magic number for Oslo is" -o "$T/k.jsonl" --dump-prompts "$T/kdump"
  k0=$(grep -o '"answer":"[0-9]*"' "$T/k.jsonl" | sort -u | wc -l)
  [ "$k0" = 2 ] || fail "keyed needle: two seeds, two 5-digit keys: $(cat "$T/k.jsonl")"
  grep -q "Answer: The special magic number for Oslo is$" "$T/kdump"/niah-400-0.50-0.txt || fail "answer prefix in the prompt"
  grep -q "{key}" "$T/kdump"/niah-400-0.50-0.txt && fail "the key is substituted in the prompt"
  expect_fail "custom needle without keywords" "$LV" eval niah -m "$M" --haystack "$H" --lengths 300 --needle "A needle."
  expect_fail "keywords not in the needle" "$LV" eval niah -m "$M" --haystack "$H" --lengths 300 --needle "A needle." --keywords hay
  grep -q "does not contain its keywords" "$T/err" || fail "explains"
else
  echo "skip: NIAH part ($H or $V not found)"
fi

# errors
expect_fail "duo without a pattern" "$LV" eval passkey -m "$M" --lengths ${lens%,*} --mode duo
grep -q -- "--heads" "$T/err" || fail "names --heads"
printf '0.9\t0.1\n0.8\t0.2\n' > "$T/p2.tsv"
expect_fail "pattern of another shape" "$LV" eval passkey -m "$M" --lengths ${lens%,*} --mode duo --heads "$T/p2.tsv"
grep -q "2 layers x 2 KV heads but the model has 3 layers x 2 KV heads" "$T/err" || fail "explains the shape: $(cat "$T/err")"
expect_fail "unknown mode" "$LV" eval passkey -m "$M" --mode sparse
expect_fail "mode twice" "$LV" eval passkey -m "$M" --mode dense,dense
expect_fail "depth out of range" "$LV" eval passkey -m "$M" --depths 0.5,1.5
expect_fail "bad lengths" "$LV" eval passkey -m "$M" --lengths 256,abc
expect_fail "too short" "$LV" eval passkey -m "$M" --lengths 40
grep -q "too short" "$T/err" || fail "says too short"
expect_fail "context too small" "$LV" eval passkey -m "$M" --lengths ${lens%,*} -c 100
expect_fail "no task" "$LV" eval -m "$M"
expect_fail "unknown task" "$LV" eval ruler -m "$M"
expect_fail "NIAH option on passkey" "$LV" eval passkey -m "$M" --needle "x"
expect_fail "missing haystack" "$LV" eval niah -m "$M" --haystack "$T/no-such-dir" --lengths 512
grep -q "no-such-dir" "$T/err" || fail "names the directory"
expect_fail "missing model" "$LV" eval passkey -m "$T/nope.gguf"
expect_fail "unwritable output" "$LV" eval passkey -m "$M" --lengths ${lens%,*} -n 1 --depths 0 -t 1 -o "$T/no/dir/x.jsonl"
expect_ok "help" "$LV" eval --help
grep -q -- "--kv-budget" "$T/out" && grep -q -- "--select-every" "$T/out" || fail "help lists the LServe options"
grep -q -- "--select-drift" "$T/out" && grep -q "multikey|multivalue" "$T/out" && grep -q -- "--needles" "$T/out" || fail "help lists drift, tasks, --needles"

# multikey / multivalue on the shipped long passkey model: the answer rule applies, JSON names the task
PK=models/passkey-long-bytes.gguf
if [ -f "$PK" ]; then
  expect_ok "eval multikey" "$LV" eval multikey -m "$PK" --lengths 1500 --depths 0,1 -n 12 -q -t 2 -o "$T/mk.jsonl"
  grep -q '"task":"multikey"' "$T/mk.jsonl" || fail "multikey JSON lines: $(head -c 300 "$T/mk.jsonl")"
  grep -q "^multikey | mode dense" "$T/out" || fail "multikey table: $(cat "$T/out")"
  expect_ok "eval multivalue, 3 needles" "$LV" eval multivalue -m "$PK" --lengths 1500 --depths 0.5 --needles 3 -n 30 -q -t 2
  grep -q "^multivalue | mode dense" "$T/out" || fail "multivalue table"
fi
expect_fail "--needles on passkey" "$LV" eval passkey -m "$M" --needles 3
expect_fail "--needles 11" "$LV" eval multikey -m "$M" --needles 11
