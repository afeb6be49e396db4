# The models in models/ (trained by longview train, bench/train/RESULTS.md) still retrieve: the
# passkey at 512 and 8192 tokens, the RULER-style needle in the essays at 8192, dense and with
# DuoAttention + LServe. Under LV_TEST_QUICK (the sanitizer run of make test) one depth instead
# of five, and the long models at 4096 tokens with a 2048-token budget (still half the pages read)
# instead of 8192 and 4096: the model quality is the release run's to check, the memory safety of
# the path is the same at any depth and length.
. "$(dirname "$0")/_lib.sh"
if [ -n "${LV_TEST_QUICK:-}" ]; then
  DEPTHS=(--depths 0.5); ROW="^ +%s +1\.00 +\| +1\.00"; LONG=4096; BUDGET=2048
else
  DEPTHS=(); ROW="^ +%s +1\.00 +1\.00 +1\.00 +1\.00 +1\.00 +\| +1\.00"; LONG=8192; BUDGET=4096
fi
# the shipped model (bench/train/RESULTS.md) still retrieves: 5 depths x 2 seeds at 512 tokens, dense
M=models/passkey-small-bytes.gguf
if [ -f "$M" ]; then
  expect_ok "eval the shipped passkey model" "$LV" eval passkey -m "$M" --lengths 512 "${DEPTHS[@]}" --samples 2 -n 10 -q
  grep -Eq "$(printf "$ROW" 512)" "$T/out" || fail "shipped model below 100% at 512 tokens: $(cat "$T/out")"
fi
# the long model retrieves at its trained length (8192 tokens) at every depth, dense and with
# DuoAttention + LServe at the issue's budget (4096: half the pages read at each decode step)
M=models/passkey-long-bytes.gguf
if [ -f "$M" ]; then
  expect_ok "eval the long passkey model" "$LV" eval passkey -m "$M" --lengths $LONG "${DEPTHS[@]}" --samples 1 -n 10 -q --mode dense,duo+lserve \
    --heads models/passkey-long-bytes.heads.tsv --sparsity 0.5 --kv-budget $BUDGET
  [ "$(grep -Ec "$(printf "$ROW" $LONG)" "$T/out")" = 2 ] || fail "long model below 100% at $LONG tokens: $(cat "$T/out")"
fi
# the retrieval model answers the RULER-style needle in the essays at its trained length (8192
# tokens) at every depth, dense and with DuoAttention + LServe (bench/train/RESULTS.md)
M=models/retrieval-long-bytes.gguf
H="$SHARED/haystack/paul-graham-essays"
if [ -f "$M" ] && [ -d "$H" ]; then
  expect_ok "eval the retrieval model on keyed needles in the essays" "$LV" eval niah -m "$M" --haystack "$H" --lengths $LONG "${DEPTHS[@]}" --samples 1 -n 8 -q \
    --needle $'\nThe special magic number for San Francisco is {key}.\n' --keywords '{key}' \
    --question 'What is the special magic number for San Francisco?' --answer-prefix 'The special magic number for San Francisco is' \
    --mode dense,duo+lserve --heads models/retrieval-long-bytes.heads.tsv --sparsity 0.5 --kv-budget $BUDGET
  [ "$(grep -Ec "$(printf "$ROW" $LONG)" "$T/out")" = 2 ] || fail "retrieval model below 100% at $LONG tokens: $(cat "$T/out")"
fi
# the first video pair (docs/train.md, trained by longview train-video on 1-2 frame samples) reads the
# number off real H.264 videos through eval vniah: 2-second clips at 1 fps, the needle on the last
# frame (measured 8 of 8 in release; at least 6 of 8 asked: the engine's arithmetic may move a digit)
M=models/vniah-short-bytes.gguf
HAY="$SHARED/video/nasa_13013.mp4"
if [ -f "$M" ] && [ -f "$HAY" ]; then
  if [ -n "${LV_TEST_QUICK:-}" ]; then NS=4; else NS=8; fi
  expect_ok "eval vniah on the first video pair" "$LV" eval vniah -m "$M" --mmproj models/vniah-short-bytes.mmproj.gguf --haystack "$HAY" \
    --lengths 2 --fps 1 --depths 1 --samples $NS --box 0.7 --box-max 0.9 --size 640x360 --mode dense -n 9 -t 2 -q
  awk '$1 == "2s" { m = $2 } END { printf "video pair: %s\n", m; exit !(m >= 0.75) }' "$T/out" || fail "the video pair below 0.75: $(cat "$T/out")"
fi
