# longview run --video (docs/video-questions.md): a question about a clip with the tiny golden
# towers (tests/golden/vision); the overlapped pipeline's greedy answer equals the sequential
# reference's and does not depend on the batch size or the decode threads; QuickPrefill and VideoScan
# likewise; clear errors.
. "$(dirname "$0")/_lib.sh"
G=tests/golden/vision
command -v ffmpeg >/dev/null || { echo "skip: no ffmpeg"; exit 0; }
ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi -i testsrc2=size=64x48:rate=10 -t 4 -c:v libx264 -g 12 -bf 2 -pix_fmt yuv420p "$T/clip.mp4" ||
  fail "ffmpeg could not make the clip"
expect_ok "gen-model text" "$LV" gen-model --arch llama --dim 64 --layers 1 --heads 2 --ffn 96 --vocab $G/vocab-vlm.gguf --seed 7 -o "$T/text.gguf"

# SmolVLM2 format (idefics3): 4 frames at 1 fps, the plan and the timings on stderr
expect_ok "run --video smolvlm2" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p "<__media__>What happens?" -n 6 --temp 0 --ids
first=$(cat "$T/out")
grep -q "smolvlm2 format, 4 frames (1 per second of video) at 64x64, 4 frames of 4 embeddings" "$T/err" || fail "plan line: $(cat "$T/err")"
grep -q "video: 4 frames, overlapped | decode" "$T/err" && grep -q "first token after" "$T/err" || fail "timings line: $(cat "$T/err")"
expect_ok "run --video --video-sequential" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p "<__media__>What happens?" -n 6 --temp 0 --ids --video-sequential
[ "$(cat "$T/out")" = "$first" ] || fail "sequential answer '$(cat "$T/out")' differs from overlapped '$first'"
expect_ok "run --video -j 1 -t 1" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p "<__media__>What happens?" -n 6 --temp 0 --ids -j 1 -t 1
[ "$(cat "$T/out")" = "$first" ] || fail "answer changed with the threads: '$(cat "$T/out")' vs '$first'"
grep -q "thread budget: 1 tokens, at most 1 held" "$T/err" || fail "budget line (-t 1): $(cat "$T/err")"
expect_ok "run --video -j 3 -t 2" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p "<__media__>What happens?" -n 6 --temp 0 --ids -j 3 -t 2
[ "$(cat "$T/out")" = "$first" ] || fail "answer changed with -j 3 -t 2: '$(cat "$T/out")' vs '$first'"
grep -Eq "thread budget: 2 tokens, at most [12] held" "$T/err" || fail "budget line (-t 2): $(cat "$T/err")"
expect_ok "run --video --video-no-budget" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p "<__media__>What happens?" -n 6 --temp 0 --ids -j 2 -t 2 --video-no-budget
[ "$(cat "$T/out")" = "$first" ] || fail "answer changed without the budget: '$(cat "$T/out")' vs '$first'"
grep -q "thread budget" "$T/err" && fail "--video-no-budget printed a budget: $(cat "$T/err")"
expect_ok "run --video --frames 6" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p "What?" --frames 6 -n 1 --temp 0
grep -q "6 frames" "$T/err" || fail "--frames 6: $(cat "$T/err")"
# --print-prompt: the prompt as text, each embedding row as <image> (4 frames x 4), nothing decoded
expect_ok "run --video --print-prompt" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p "<__media__>What happens?" --print-prompt
grep -q "^You are provided the following series of four frames from a 0:00:04 \[H:MM:SS\] video.$" "$T/out" || fail "--print-prompt intro: $(cat "$T/out")"
[ "$(grep -o "Frame from 00:0[0-3]:<fake_token_around_image><global-img>" "$T/out" | wc -l)" = 4 ] || fail "--print-prompt frames: $(cat "$T/out")"
[ "$(grep -o "<image>" "$T/out" | wc -l)" = 16 ] && tail -c 15 "$T/out" | grep -q "What happens?$" || fail "--print-prompt rows: $(cat "$T/out")"
! grep -q "video: " "$T/err" || fail "--print-prompt decoded the video: $(cat "$T/err")"
expect_fail "--print-prompt without --video" "$LV" run -m "$T/text.gguf" -p "x" --print-prompt

# Qwen2.5-VL format: temporal pairs, M-RoPE; batches of 7 rows cut across the pairs
expect_ok "run --video qwen2.5vl" "$LV" run -m $G/text-qwen2vl.gguf --mmproj $G/qwen25vl.gguf --video "$T/clip.mp4" -p "<__media__>What?" -n 4 --temp 0 --ids -b 7 -j 2
q=$(cat "$T/out")
grep -q "qwen2.5vl format, 8 frames (2 per second of video) at 392x280, 4 pairs of 140 embeddings" "$T/err" || fail "qwen plan: $(cat "$T/err")"
expect_ok "run --video qwen2.5vl sequential" "$LV" run -m $G/text-qwen2vl.gguf --mmproj $G/qwen25vl.gguf --video "$T/clip.mp4" -p "<__media__>What?" -n 4 --temp 0 --ids --video-sequential
[ "$(cat "$T/out")" = "$q" ] || fail "qwen sequential '$(cat "$T/out")' vs overlapped (-b 7) '$q'"

# QuickPrefill: groups of 2 frames of 6, half their embedding rows pruned; the overlapped answer equals the
# sequential one; --keep 1 equals dense; the KV after the video shrinks by the pruned rows
expect_ok "run --video --keep 1" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p "<__media__>What happens?" --frames 6 -n 6 --temp 0 --ids -b 5
dense=$(cat "$T/out")
expect_ok "run --video --keep 1 --group 4" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p "<__media__>What happens?" --frames 6 -n 6 --temp 0 --ids -b 5 --keep 1 --group 4
[ "$(cat "$T/out")" = "$dense" ] || fail "--keep 1 '$(cat "$T/out")' differs from dense '$dense'"
grep -q "QuickPrefill: 2 groups of 4 frames, keep 1: 0 of 24 embedding rows pruned" "$T/err" || fail "keep 1 line: $(cat "$T/err")"
expect_ok "run --video --keep 0.5 --group 2" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p "<__media__>What happens?" --frames 6 -n 6 --temp 0 --ids -b 5 --keep 0.5 --group 2
qp=$(cat "$T/out")
grep -q "QuickPrefill: 3 groups of 2 frames, keep 0.5: 12 of 24 embedding rows pruned" "$T/err" || fail "keep 0.5 line: $(cat "$T/err")"
expect_ok "run --video --keep 0.5 --group 2 --video-sequential" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p "<__media__>What happens?" --frames 6 -n 6 --temp 0 --ids -b 5 --keep 0.5 --group 2 --video-sequential
[ "$(cat "$T/out")" = "$qp" ] || fail "QuickPrefill sequential '$(cat "$T/out")' vs overlapped '$qp'"
expect_ok "run --video qwen2.5vl --keep 0.25 --group 3" "$LV" run -m $G/text-qwen2vl.gguf --mmproj $G/qwen25vl.gguf --video "$T/clip.mp4" -p "<__media__>What?" -n 4 --temp 0 --ids -b 7 --keep 0.25 --group 3
grep -q "QuickPrefill: 2 groups of 4 frames, keep 0.25: 420 of 560 embedding rows pruned" "$T/err" || fail "qwen keep 0.25 line: $(cat "$T/err")"
expect_fail "--keep without --video" "$LV" run -m "$T/text.gguf" -p hi --keep 0.5
grep -q "are for --video" "$T/err" || fail "$(cat "$T/err")"
expect_fail "--group without --keep" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p hi --group 4
grep -q "give --keep" "$T/err" || fail "$(cat "$T/err")"
expect_fail "--keep 0" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p hi --keep 0
grep -q "above 0" "$T/err" || fail "$(cat "$T/err")"
expect_fail "--keep 1.5" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p hi --keep 1.5

# VideoScan: 6 frames of 4 embeddings, a carrier after each; 2 visual rows kept per frame, a cap of 3 carriers;
# the overlapped answer equals the sequential one; the report
expect_ok "run --video --carrier" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p "<__media__>What happens?" --frames 6 -n 6 --temp 0 --ids -b 5 --carrier --carrier-keep 2 --carrier-max 3
vs=$(cat "$T/out")
grep -q "VideoScan: 3 carriers held (of 6 units), 9 video rows in each full-attention head's cache (carriers + 2 kept visual rows each), 12 visual rows dropped after their unit's forward, 3 carriers (9 rows) dropped by the cap (--carrier-max 3), KV after the video [0-9.]* MiB ([0-9]* bytes)" "$T/err" ||
  fail "carrier line: $(cat "$T/err")"
expect_ok "run --video --carrier --video-sequential" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p "<__media__>What happens?" --frames 6 -n 6 --temp 0 --ids -b 5 --carrier --carrier-keep 2 --carrier-max 3 --video-sequential
[ "$(cat "$T/out")" = "$vs" ] || fail "VideoScan sequential '$(cat "$T/out")' vs overlapped '$vs'"
# VideoScan with DuoAttention (the text model's 2 KV heads, one streaming with sink 4 + window 16) and LServe
# for the decode: the retrieval head keeps the carriers, the streaming head its window; overlapped == sequential
printf '0.9\t0.1\n' > "$T/heads.tsv"
duo=(--heads "$T/heads.tsv" --sparsity 0.5 --sink 4 --window 16 --lserve --kv-budget 64)
expect_ok "run --video --carrier with DuoAttention + LServe" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p "<__media__>What happens?" --frames 6 -n 6 --temp 0 --ids -b 5 --carrier --carrier-keep 2 "${duo[@]}"
vd=$(cat "$T/out")
grep -q "VideoScan: 6 carriers held (of 6 units), 18 video rows in each full-attention head's cache" "$T/err" || fail "duo carrier line: $(cat "$T/err")"
expect_ok "run --video --carrier with DuoAttention + LServe, sequential" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p "<__media__>What happens?" --frames 6 -n 6 --temp 0 --ids -b 5 --carrier --carrier-keep 2 "${duo[@]}" --video-sequential
[ "$(cat "$T/out")" = "$vd" ] || fail "VideoScan + DuoAttention sequential '$(cat "$T/out")' vs overlapped '$vd'"
expect_ok "run --video qwen2.5vl --carrier" "$LV" run -m $G/text-qwen2vl.gguf --mmproj $G/qwen25vl.gguf --video "$T/clip.mp4" -p "<__media__>What?" -n 4 --temp 0 --ids -b 7 --carrier --carrier-max 0
grep -q "VideoScan: 4 carriers held (of 4 units), 4 video rows in each full-attention head's cache (carriers + 0 kept visual rows each), 560 visual rows dropped" "$T/err" ||
  fail "qwen carrier line: $(cat "$T/err")"
grep -q "4 pairs of 140 embeddings + a carrier, 11 text tokens, 575 positions" "$T/err" || fail "qwen plan with carriers: $(cat "$T/err")"
expect_fail "--carrier with --keep" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p hi --carrier --keep 0.5
grep -q "choose one" "$T/err" || fail "$(cat "$T/err")"
expect_fail "--carrier-keep without --carrier" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p hi --carrier-keep 4
grep -q "give --carrier" "$T/err" || fail "$(cat "$T/err")"
expect_ok "run --video --carrier --carrier-layer 0" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p "<__media__>What happens?" --frames 6 -n 2 --temp 0 --ids -b 5 --carrier --carrier-keep 2 --carrier-layer 0
expect_fail "--carrier-layer without --carrier-keep" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p hi --carrier --carrier-layer 0
grep -q "give --carrier-keep" "$T/err" || fail "$(cat "$T/err")"
expect_fail "--carrier-layer 1 of a one-layer model" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p hi --carrier --carrier-keep 2 --carrier-layer 1
grep -q "not a layer of the model" "$T/err" || fail "$(cat "$T/err")"
expect_fail "--carrier-keep -1" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p hi --carrier --carrier-keep -1
grep -q "must not be negative" "$T/err" || fail "$(cat "$T/err")"
expect_fail "--carrier without --video" "$LV" run -m "$T/text.gguf" -p hi --carrier
grep -q "are for --video" "$T/err" || fail "$(cat "$T/err")"

# errors
expect_fail "--video without --mmproj" "$LV" run -m "$T/text.gguf" --video "$T/clip.mp4" -p hi
grep -q "needs --mmproj" "$T/err" || fail "$(cat "$T/err")"
expect_fail "--fps without --video" "$LV" run -m "$T/text.gguf" -p hi --fps 2
grep -q "are for --video" "$T/err" || fail "$(cat "$T/err")"
expect_fail "--video with an mlp projector" "$LV" run -m "$T/text.gguf" --mmproj $G/mlp.gguf --video "$T/clip.mp4" -p hi
grep -q "not mlp" "$T/err" || fail "$(cat "$T/err")"
printf 'not a video at all' > "$T/bad.mp4"
expect_fail "a file that is no video" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/bad.mp4" -p hi
grep -q "bad.mp4" "$T/err" || fail "the file is named: $(cat "$T/err")"
expect_fail "context too small" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --video "$T/clip.mp4" -p hi -c 64 -n 1
grep -q "does not fit the context" "$T/err" || fail "$(cat "$T/err")"
true
