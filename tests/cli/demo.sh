# scripts/demo.sh, the README's main job, at a short length: it answers, and its cached random model
# follows the vocabulary it was made with (a run without ../shared/data then one with it must not
# reuse the byte-vocabulary model under the real vocabulary's name)
. "$(dirname "$0")/_lib.sh"
C="$T/demo-cache"
rm -rf "$C"
LV_DEMO_CACHE="$C" LV_SHARED_DATA="$T/no-shared-data" scripts/demo.sh "$LV" 1024 0.5 >"$T/out1" 2>"$T/err1" || fail "demo without shared data: $(cat "$T/err1")"
grep -q "vocabulary: builtin:bytes" "$T/out1" || fail "the fallback vocabulary is named: $(cat "$T/out1")"
grep -q "^dense  *1.00" "$T/out1" && grep -q "^duo+lserve  *1.00" "$T/out1" || fail "the pass key is found: $(cat "$T/out1")"
m1=$(ls "$C"/*.gguf)
[ "$(echo "$m1" | wc -l)" = 1 ] || fail "one cached model: $m1"
"$LV" info -m "$m1" | grep -q "^tokenizer: .* 259 tokens" || fail "the cached model has the byte vocabulary (259 tokens): $("$LV" info -m "$m1" | grep tokenizer)"
echo "ok: demo without ../shared/data"
if [ -f "$SHARED/vocab/ggml-vocab-llama-spm.gguf" ]; then
  LV_DEMO_CACHE="$C" scripts/demo.sh "$LV" 1024 0.5 >"$T/out2" 2>"$T/err2" || fail "demo with shared data: $(cat "$T/err2")"
  grep -q "vocabulary: .*ggml-vocab-llama-spm.gguf" "$T/out2" || fail "the real vocabulary is named: $(cat "$T/out2")"
  grep -q "^dense  *1.00" "$T/out2" && grep -q "^duo+lserve  *1.00" "$T/out2" || fail "the magic number is found: $(cat "$T/out2")"
  m2=$(ls "$C"/*.gguf)
  [ "$(echo "$m2" | wc -l)" = 1 ] || fail "the stale model was removed: $m2"
  [ "$m2" != "$m1" ] || fail "the cache reused the byte-vocabulary model"
  "$LV" info -m "$m2" | grep -q "32000 tokens" || fail "the cached model has the SPM vocabulary: $("$LV" info -m "$m2" | grep tokenizer)"
  echo "ok: demo with ../shared/data makes a new model for the real vocabulary"
  LV_DEMO_CACHE="$C" scripts/demo.sh "$LV" 1024 0.5 >"$T/out3" 2>"$T/err3" || fail "demo again: $(cat "$T/err3")"
  [ "$(ls "$C"/*.gguf)" = "$m2" ] || fail "the second run with the same inputs reuses the model"
  grep -q "gen-model" "$T/err3" && fail "the model was generated again: $(cat "$T/err3")"
  echo "ok: the same inputs reuse the cached model"
fi
