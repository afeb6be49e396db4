# longview train-video: a few steps of a tiny text model + vision tower on V-NIAH samples lower the
# answer loss; a run stopped at checkpoints and resumed with another thread count writes the same
# two models and optimizer states, byte for byte, as an uninterrupted run; the pair loads in
# `longview run --video`; bad flags fail clearly and write nothing
. "$(dirname "$0")/_lib.sh"
HAY="$SHARED/video/nasa_13013.mp4"
[ -f "$HAY" ] || { echo "skip: $HAY is absent"; exit 0; }
rm -f "$T"/*.gguf "$T"/*.optim "$T"/*.ckpt "$T"/*.log
A="--dim 32 --layers 1 --heads 2 --kv-heads 1 --ffn 64 --image-size 32 --patch 8 --vdim 32 --vheads 2 --vlayers 1 --vffn 48
   --frames-min 2 --frames-max 4 --steps 12 --batch 2 --lr 3e-3 --seed 3 --haystack $HAY --log-every 100"
expect_ok "train-video 12 steps" "$LV" train-video -o "$T/full.gguf" --out-mmproj "$T/full-mm.gguf" $A -t 2 --log "$T/full.log" --eval-every 12 --eval-samples 4
grep -q "^step 12/12 | loss" "$T/err" || fail "progress line: $(cat "$T/err")"
grep -q "frames/s" "$T/err" && grep -q "answer acc" "$T/err" || fail "progress shows frames/s and the held-out accuracy: $(cat "$T/err")"
[ "$(grep -vc '^#' "$T/full.log")" = 12 ] || fail "one log line per step"
# the answer loss of the last 3 steps is below that of the first 3
awk -F'\t' '!/^#/ { l[$1] = $3 } END { a = 0; b = 0; for (i = 1; i <= 3; i++) { a += l[i]; b += l[9 + i] }
  printf "answer loss first3 %.3f last3 %.3f\n", a / 3, b / 3; exit !(b < a) }' "$T/full.log" || fail "answer loss did not fall"

printf 'an older model\n' > "$T/part.gguf"
expect_ok "stopped at step 5" "$LV" train-video -o "$T/part.gguf" --out-mmproj "$T/part-mm.gguf" $A -t 1 --stop-at 5
grep -q "step 5 of 12; continue with --resume" "$T/err" || fail "says where it stopped: $(cat "$T/err")"
for f in part.gguf.ckpt part.gguf.ckpt.optim part-mm.gguf.ckpt part-mm.gguf.ckpt.optim; do [ -f "$T/$f" ] || fail "$f written"; done
[ "$(cat "$T/part.gguf")" = "an older model" ] && [ ! -e "$T/part-mm.gguf" ] || fail "a checkpoint replaced an output"
expect_ok "resume" "$LV" train-video -o "$T/part.gguf" --out-mmproj "$T/part-mm.gguf" $A -t 2 --resume
grep -q "resuming at step 5 of 12" "$T/err" || fail "resume message: $(cat "$T/err")"
for f in full.gguf full.gguf.optim full-mm.gguf full-mm.gguf.optim; do
  cmp "$T/$f" "$T/${f/full/part}" || fail "resumed $f differs from the uninterrupted run's"
done
[ ! -e "$T/part.gguf.ckpt" ] && [ ! -e "$T/part-mm.gguf.ckpt.optim" ] || fail "the finished models supersede the checkpoints"
echo "ok: the resumed run is bit-identical"

# the pair answers a video question in `run` (its prompt is the one it was trained on)
expect_ok "run --video loads the pair" "$LV" run -m "$T/full.gguf" --mmproj "$T/full-mm.gguf" --video "$HAY" --frames 4 \
  -p "What is the number shown in the video?" -n 6 --temp 0
grep -q "smolvlm2 format, 4 frames" "$T/err" || fail "run reads the pair as SmolVLM2: $(cat "$T/err")"

# the curriculum's first stage: the text model alone, on rows that spell the needle
expect_ok "--oracle-rows" "$LV" train-video -o "$T/or.gguf" --out-mmproj "$T/or-mm.gguf" $A --init "$T/full.gguf" --oracle-rows -t 2 --log "$T/or.log"
awk -F'\t' '!/^#/ && $6 != 0 { bad = 1 } END { exit bad }' "$T/or.log" || fail "--oracle-rows moved the tower (its gradient norm is not 0)"
cmp -s "$T/full-mm.gguf" "$T/or-mm.gguf" && fail "--oracle-rows: a fresh tower is written, not --init's text model's tower"
# --oracle-grid: each character in its grid cell's row; with boxes of at least 70% of 128 pixels and
# 16-pixel cells (shuffle 2) no two glyph centres share a cell, with 45% they do
G="--dim 32 --layers 1 --heads 2 --kv-heads 1 --ffn 64 --image-size 128 --patch 8 --shuffle 2 --vdim 32 --vheads 2 --vlayers 1 --vffn 48
   --frames-min 1 --frames-max 1 --steps 1 --batch 4 --seed 3 --haystack $HAY --oracle-rows --oracle-grid"
expect_ok "--oracle-grid" "$LV" train-video -o "$T/og.gguf" --out-mmproj "$T/og-mm.gguf" $G --box-min 0.7 --box-max 0.9 -t 2
grep -q -- "--oracle-grid: 0 characters found their cell taken" "$T/err" || fail "no collisions at box 0.7-0.9: $(tail -2 "$T/err")"
expect_ok "--oracle-grid, small boxes" "$LV" train-video -o "$T/og.gguf" --out-mmproj "$T/og-mm.gguf" $G --box-min 0.45 --box-max 0.45 -t 2
grep -Eq -- "--oracle-grid: [1-9][0-9]* characters found their cell taken" "$T/err" || fail "collisions at box 0.45 are counted: $(tail -2 "$T/err")"
# --row-loss and --row-ce: the tower is taught the oracle's rows directly; each loss falls (the mean
# of the last 3 of 12 steps under 0.85 x the first 3's; a gradient of the wrong sign makes it grow)
rows_fall() { # $1: what
  awk '/^step [0-9]+\/12/ { for (i = 1; i <= NF; i++) if ($i == "rows") r[++n] = $(i + 1) }
    END { a = (r[1] + r[2] + r[3]) / 3; b = (r[10] + r[11] + r[12]) / 3; printf "rows first3 %.4f last3 %.4f\n", a, b; exit !(n == 12 && b < 0.85 * a) }' "$T/err" ||
    fail "$1: the rows' loss did not fall: $(cat "$T/err")"
}
expect_ok "--row-loss" "$LV" train-video -o "$T/rl.gguf" --out-mmproj "$T/rl-mm.gguf" ${G/--oracle-rows/} --steps 12 --lr 2e-3 --log-every 1 --row-loss 1 \
  --box-min 0.7 --box-max 0.9 -t 2
rows_fall --row-loss
expect_ok "--row-ce" "$LV" train-video -o "$T/rl.gguf" --out-mmproj "$T/rl-mm.gguf" ${G/--oracle-rows/} --steps 12 --lr 2e-3 --log-every 1 --row-ce 1 \
  --init-std 1 --box-min 0.7 --box-max 0.9 -t 2
rows_fall --row-ce
expect_ok "--row-ce-raw" "$LV" train-video -o "$T/rl.gguf" --out-mmproj "$T/rl-mm.gguf" ${G/--oracle-rows/} --steps 12 --lr 2e-3 --log-every 1 --row-ce 1 \
  --row-ce-raw --init-std 0.3 --box-min 0.7 --box-max 0.9 -t 2
rows_fall --row-ce-raw
expect_fail "--row-loss with --oracle-rows" "$LV" train-video -o "$T/x.gguf" --out-mmproj "$T/x-mm.gguf" $G --row-loss 1
expect_fail "--row-ce-raw without --row-ce" "$LV" train-video -o "$T/x.gguf" --out-mmproj "$T/x-mm.gguf" $A --row-ce-raw
expect_fail "--row-ce with --oracle-rows" "$LV" train-video -o "$T/x.gguf" --out-mmproj "$T/x-mm.gguf" $G --row-ce 1
# ... and the second: the tower alone against it
expect_ok "--freeze-text" "$LV" train-video -o "$T/fz.gguf" --out-mmproj "$T/fz-mm.gguf" $A --init "$T/or.gguf" --freeze-text -t 2 --log "$T/fz.log"
awk -F'\t' '!/^#/ && $5 != 0 { bad = 1 } END { exit bad }' "$T/fz.log" || fail "--freeze-text moved the text model"
cmp "$T/or.gguf" "$T/fz.gguf" || fail "--freeze-text wrote a text model that differs from --init's"
# --init from a builtin:bytes model grows the vocabulary
expect_ok "--init grows a byte vocabulary" "$LV" train-video -o "$T/gr.gguf" --out-mmproj "$T/gr-mm.gguf" $A --steps 2 --init models/retrieval-long-bytes.gguf
grep -q "259 tokens grown to --vocab builtin:bytes-vision's 264" "$T/err" || fail "says it grew: $(cat "$T/err")"

# errors, and nothing written
expect_fail "no --out-mmproj" "$LV" train-video -o "$T/x.gguf" $A
expect_fail "frames-min above frames-max" "$LV" train-video -o "$T/x.gguf" --out-mmproj "$T/x-mm.gguf" --frames-min 5 --frames-max 4
expect_fail "--oracle-rows with --freeze-text" "$LV" train-video -o "$T/x.gguf" --out-mmproj "$T/x-mm.gguf" --oracle-rows --freeze-text --init "$T/full.gguf"
expect_fail "--oracle-grid without --oracle-rows or --row-loss" "$LV" train-video -o "$T/x.gguf" --out-mmproj "$T/x-mm.gguf" $A --oracle-grid
expect_fail "--freeze-text without --init" "$LV" train-video -o "$T/x.gguf" --out-mmproj "$T/x-mm.gguf" --freeze-text
expect_fail "a tower shape that does not tile" "$LV" train-video -o "$T/x.gguf" --out-mmproj "$T/x-mm.gguf" --image-size 30 --patch 8
expect_fail "an unknown task" "$LV" train-video -o "$T/x.gguf" --out-mmproj "$T/x-mm.gguf" --tasks single=1,colour=2
expect_fail "a missing haystack" "$LV" train-video -o "$T/x.gguf" --out-mmproj "$T/x-mm.gguf" --haystack "$T/nope.mp4"
expect_fail "resume without checkpoints" "$LV" train-video -o "$T/x.gguf" --out-mmproj "$T/x-mm.gguf" $A --resume
expect_fail "--init-mmproj that is a text model" "$LV" train-video -o "$T/x.gguf" --out-mmproj "$T/x-mm.gguf" $A --init-mmproj "$T/full.gguf"
grep -q "idefics3" "$T/err" || fail "says what it reads: $(cat "$T/err")"
[ ! -e "$T/x.gguf" ] && [ ! -e "$T/x-mm.gguf" ] || fail "a failed run wrote an output"
echo "ok: train-video"
