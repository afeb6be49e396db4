# longview train: a few steps on a tiny model lower the loss; a run stopped at a checkpoint and
# resumed gives the same model and optimizer state, bit for bit, as an uninterrupted run (with a
# different thread count); the output loads in `longview run`; bad flags and checkpoints fail clearly
. "$(dirname "$0")/_lib.sh"
rm -f "$T/full.log" "$T"/*.gguf "$T"/*.optim "$T"/*.ckpt
A="--preset nano --steps 30 --batch 2 --seq-len 400 --lr 3e-3 --seed 5 --log-every 100"
expect_ok "train 30 steps" "$LV" train -o "$T/full.gguf" $A -t 2 --log "$T/full.log"
grep -q "^step 30/30 | loss" "$T/err" || fail "progress line: $(cat "$T/err")"
grep -q "tok/s" "$T/err" && grep -q "ETA" "$T/err" || fail "progress shows tok/s and ETA"
[ "$(grep -vc '^#' "$T/full.log")" = 30 ] || fail "one log line per step"
# the mean loss of the last 5 steps is below that of the first 5 by at least 0.3 nats
awk -F'\t' '!/^#/ { l[$1] = $2 } END { a = 0; b = 0; for (i = 1; i <= 5; i++) { a += l[i]; b += l[25 + i] }
  a /= 5; b /= 5; printf "first5 %.3f last5 %.3f\n", a, b; exit !(b < a - 0.3) }' "$T/full.log" || fail "loss did not fall"

# a run stopped before the end writes a checkpoint beside the output, never the output itself
printf 'an older model\n' > "$T/part.gguf"
expect_ok "train, stopped at step 12" "$LV" train -o "$T/part.gguf" $A -t 1 --stop-at 12
grep -q "step 12 of 30; resume with --resume $T/part.gguf.ckpt" "$T/err" || fail "says where it stopped: $(cat "$T/err")"
[ -f "$T/part.gguf.ckpt" ] && [ -f "$T/part.gguf.ckpt.optim" ] || fail "checkpoint and optimizer state written"
[ "$(cat "$T/part.gguf")" = "an older model" ] || fail "the file at -o was replaced by a checkpoint"
expect_ok "info on the checkpoint" "$LV" info -m "$T/part.gguf.ckpt"
grep -q "training checkpoint (step 12 of 30), not a finished model" "$T/out" || fail "info says it is a checkpoint: $(cat "$T/out")"
expect_ok "run on the checkpoint" "$LV" run -m "$T/part.gguf.ckpt" -p "x" -n 1
grep -q "is a training checkpoint (step 12 of 30)" "$T/err" || fail "loading a checkpoint warns: $(cat "$T/err")"
expect_ok "resume" "$LV" train -o "$T/part.gguf" $A -t 2 --resume "$T/part.gguf.ckpt"
grep -q "resuming .* at step 12 of 30" "$T/err" || fail "resume message"
cmp "$T/full.gguf" "$T/part.gguf" || fail "resumed model differs from the uninterrupted one"
cmp "$T/full.gguf.optim" "$T/part.gguf.optim" || fail "resumed optimizer state differs"
[ ! -e "$T/part.gguf.ckpt" ] && [ ! -e "$T/part.gguf.ckpt.optim" ] || fail "the finished model supersedes the checkpoint"
"$LV" info -m "$T/full.gguf" | grep -q checkpoint && fail "a finished model is not marked as a checkpoint"
echo "ok: resumed run is bit-identical"

# stopped from outside early in a long run (SIGTERM: a background job of a script ignores SIGINT): the file at -o is untouched, no temporary left
printf 'precious\n' > "$T/kill.gguf"
"$LV" train -o "$T/kill.gguf" --preset nano --steps 100000 --batch 1 --seq-len 400 --no-haystack -t 1 --log-every 1 2>"$T/kill.err" &
pid=$!
for _ in $(seq 1200); do grep -q "^step 2/" "$T/kill.err" && break; sleep 0.1; done
grep -q "^step 2/" "$T/kill.err" || fail "the long run started: $(cat "$T/kill.err")"
kill -TERM $pid; wait $pid && fail "an interrupted run exits non-zero"
[ "$(cat "$T/kill.gguf")" = precious ] || fail "an interrupted run replaced the file at -o"
ls "$T" | grep -q "kill.gguf.*tmp" && fail "temporaries left: $(ls "$T" | grep kill)"
echo "ok: an interrupted run leaves -o as it was"
expect_fail "a vocabulary that does not exist" "$LV" train -o "$T/novocab.gguf" --preset nano --steps 1 --vocab "$T/nope.gguf" --no-haystack
[ ! -e "$T/novocab.gguf" ] || fail "a failed start wrote -o"

expect_ok "run loads it" "$LV" run -m "$T/full.gguf" -p "The pass key is" -n 4
expect_ok "info loads it" "$LV" info -m "$T/full.gguf"

# errors
expect_fail "resume with other --steps" "$LV" train -o "$T/x.gguf" --preset nano --steps 31 --seed 5 --seq-len 400 --resume "$T/full.gguf"
grep -q "same flags" "$T/err" || fail "explains"
head -c 100 "$T/full.gguf.optim" > "$T/bad.gguf.optim"; cp "$T/full.gguf" "$T/bad.gguf"
expect_fail "truncated optimizer state" "$LV" train -o "$T/x.gguf" $A --resume "$T/bad.gguf"
expect_fail "missing checkpoint" "$LV" train -o "$T/x.gguf" $A --resume "$T/nope.gguf"
expect_fail "bad dims" "$LV" train -o "$T/x.gguf" --dim 30 --heads 4
expect_fail "seq-len too short for passkey" "$LV" train -o "$T/x.gguf" --preset nano --seq-len 100 --steps 1
expect_fail "unknown preset" "$LV" train -o "$T/x.gguf" --preset huge
expect_fail "no output" "$LV" train --preset nano
# the retrieval task mix: every task builds samples (NIAH when the essays are there); bad lists fail
H="$SHARED/haystack/paul-graham-essays"
if [ -d "$H" ]; then
  expect_ok "train on all four tasks" "$LV" train -o "$T/mix.gguf" --preset nano --steps 4 --batch 4 --seq-len 1500 --seed 3 --haystack "$H" \
    --tasks passkey=1,multikey=1,multivalue=1,niah=1 --eval-every 2 --eval-samples 8 -t 2
  grep -q "retrieval 50% (passkey=1,multikey=1,multivalue=1,niah=1" "$T/err" || fail "the mix is reported: $(cat "$T/err")"
  grep -q "retrieval acc" "$T/err" || fail "held-out retrieval accuracy reported"
  expect_ok "train on random and keyed niah needles" "$LV" train -o "$T/nr.gguf" --preset nano --steps 2 --batch 4 --seq-len 1024 --haystack "$H" \
    --tasks niah=1 --niah-needles random --eval-every 2 --eval-samples 4 -t 2
  expect_ok "train on keyed niah needles" "$LV" train -o "$T/nn.gguf" --preset nano --steps 2 --batch 4 --seq-len 1024 --haystack "$H" \
    --tasks niah=1,passkey=1 --niah-needles number -t 2
  expect_fail "unknown niah needle kind" "$LV" train -o "$T/x.gguf" --preset nano --steps 1 --seq-len 1024 --haystack "$H" --tasks niah=1 --niah-needles words
  expect_fail "niah without the essays" "$LV" train -o "$T/x.gguf" --preset nano --steps 1 --seq-len 1500 --tasks niah=1 --no-haystack
fi
expect_ok "train on multivalue only" "$LV" train -o "$T/mv.gguf" --preset nano --steps 2 --batch 2 --seq-len 1500 --tasks multivalue=1 --needles 3 --no-haystack -t 1
expect_fail "--needles 1" "$LV" train -o "$T/x.gguf" --preset nano --steps 1 --tasks multikey=1 --needles 1 --no-haystack
expect_fail "unknown task" "$LV" train -o "$T/x.gguf" --preset nano --steps 1 --tasks pass=1 --no-haystack
expect_fail "no positive weight" "$LV" train -o "$T/x.gguf" --preset nano --steps 1 --tasks passkey=0 --no-haystack
expect_fail "task without weight" "$LV" train -o "$T/x.gguf" --preset nano --steps 1 --tasks passkey --no-haystack
expect_fail "seq-len too short for multikey" "$LV" train -o "$T/x.gguf" --preset nano --steps 1 --seq-len 500 --tasks multikey=1 --no-haystack

expect_ok "help" "$LV" train --help
for f in --preset --steps --batch --seq-len --lr --warmup --resume --save-every --passkey-frac --tasks --haystack -t; do
  grep -q -- "$f" "$T/out" || fail "help lists $f"
done

# longview identify: gates for the trained llama and for a random qwen2 model; DuoAttention's TSV
# format (one line per layer, one value in [0, 1] per KV head) that `longview heads` accepts
expect_ok "identify (llama)" "$LV" identify -m "$T/full.gguf" -o "$T/gates.tsv" --plot "$T/gates.svg" --steps 5 --seq-len 400 --sink 8 --window 32 -t 2
[ "$(wc -l < "$T/gates.tsv")" = 1 ] || fail "nano: 1 layer"
awk -F'\t' '{ if (NF != 1) exit 1; for (i = 1; i <= NF; i++) if ($i < 0 || $i > 1) exit 1 }' "$T/gates.tsv" || fail "gate values: $(cat "$T/gates.tsv")"
grep -q "<svg" "$T/gates.svg" || fail "svg written"
expect_ok "heads reads it" "$LV" heads "$T/gates.tsv" -m "$T/full.gguf"
expect_ok "gen-model qwen2" "$LV" gen-model --arch qwen2 --dim 32 --layers 3 --heads 4 --kv-heads 2 --ffn 32 --vocab builtin:bytes -o "$T/q.gguf"
expect_ok "identify (qwen2)" "$LV" identify -m "$T/q.gguf" -o "$T/q.tsv" --steps 3 --seq-len 400 --sink 8 --window 32
[ "$(wc -l < "$T/q.tsv")" = 3 ] && awk -F'\t' 'NF != 2 { exit 1 }' "$T/q.tsv" || fail "qwen2: 3 x 2 gates: $(cat "$T/q.tsv")"
expect_ok "identify on multivalue prompts" "$LV" identify -m "$T/full.gguf" -o "$T/mvg.tsv" --steps 2 --seq-len 2000 --tasks multivalue=1 --needles 6 -t 2
grep -q "prompts (multivalue=1)" "$T/err" || fail "identify reports its prompts: $(cat "$T/err")"
expect_fail "identify without a model" "$LV" identify -o "$T/x.tsv"
expect_fail "identify on a missing file" "$LV" identify -m "$T/nope.gguf"
