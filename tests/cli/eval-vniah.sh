# longview eval vniah (docs/vniah.md): V-NIAH sweeps over real H.264 videos on a tiny random model pair
# (the answers are noise; the harness is what is checked): the table per mode, the JSON lines, the SVG
# heat map; every mode asked about the same video, which is the one `video-vniah` writes for the same
# seed and needles (byte for byte); QuickPrefill at keep 1 answers as dense, token for token; the
# needle at its depth; the keyed and order questions; bad flags, missing files and a corrupt haystack
# refused. The scoring rule itself is tests/tools/test_vniah.c's vniah_answer_rule.
. "$(dirname "$0")/_lib.sh"
HAY="$SHARED/video/nasa_13013.mp4"
[ -f "$HAY" ] || { echo "skip: $HAY is absent"; exit 0; }
G=tests/golden/vision
MM=$G/idefics3-s2.gguf   # a 64 px idefics3 tower, 4 rows a frame
expect_ok "gen-model" "$LV" gen-model --arch llama --dim 64 --layers 2 --heads 2 --ffn 96 --vocab $G/vocab-vlm.gguf --seed 7 -o "$T/text.gguf"
printf '0.9\t0.1\n0.2\t0.8\n' > "$T/h.tsv"   # 2 layers x 2 KV heads, like the model
rm -rf "$T/v"
S="--size 64x64 --haystack $HAY -n 4 -t 2"
# 2 lengths (4 s; 30 s, longer than one pass of the clip's two streams at 1 fps, so the second video of
# that length comes from the haystack kept in memory) x 2 depths x 7 modes
MODES=dense,quickprefill:1,quickprefill:0.5,videoscan,videoscan+:2,dense+duo+lserve,videoscan+duo
expect_ok "eval vniah, 7 modes" "$LV" eval vniah -m "$T/text.gguf" --mmproj $MM $S --lengths 4,30 --depths 0,1 --mode $MODES --group 2 \
  --heads "$T/h.tsv" --kv-budget 64 --window 32 --sink 4 -o "$T/o.jsonl" --plot "$T/p.svg" --videos "$T/v"
for m in ${MODES//,/ }; do
  grep -q "^single | mode $m | text.gguf | 1 sample per cell, 1 fps, greedy, -n 4$" "$T/out" || fail "table for $m: $(cat "$T/out")"
done
[ "$(grep -c '^  length   0.00   1.00 |  mean |   TTFT s | prefill s |   KV MiB$' "$T/out")" = 7 ] || fail "table headers: $(cat "$T/out")"
[ "$(grep -Ec '^ +4s +0\.00 +0\.00 \| +0\.00 \|' "$T/out")" = 7 ] && [ "$(grep -Ec '^ +30s ' "$T/out")" = 7 ] &&
  [ "$(grep -Ec '^ +all ' "$T/out")" = 7 ] || fail "a row per length and mode: $(cat "$T/out")"
grep -q "^mode  *accuracy  *of dense  *TTFT s @ max  *KV MiB @ max$" "$T/out" && grep -q "^videoscan+duo " "$T/out" || fail "the mode comparison"
grep -q "^video 4/4: 30s at 1 fps (30 frames), depth 1.00, seed 0: needle [0-9]\{5\} at 00:29 (frame 29)" "$T/err" &&
  grep -q "^\[quickprefill:0.5\]: wrong" "$T/err" && grep -q "^4/4 videos done" "$T/err" || fail "progress on stderr: $(cat "$T/err")"
[ "$(wc -l < "$T/o.jsonl")" = 28 ] || fail "28 JSON lines, got $(wc -l < "$T/o.jsonl")"
python3 - "$T/o.jsonl" <<'PY' || fail "JSON lines"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
need = ["task", "mode", "length", "depth", "sample", "seed", "needles", "needle", "needle_t", "question", "answer", "response",
        "response_tokens", "first_number", "right", "n_frames", "n_tokens", "kv_bytes", "ttft_s", "prefill_s", "video"]
for r in rows:
    missing = [k for k in need if k not in r]
    assert not missing, ("fields missing", missing, r)
    n = int(r["length"])
    assert r["video_frames"] == n and r["n_frames"] == n, r          # every frame of the video sampled
    nd = r["needles"][0]
    assert nd["f0"] == round(r["depth"] * (n - 1)) and nd["f1"] == nd["f0"] + 1, ("needle not at its depth", r)
    assert r["needle"] == nd["text"] == r["answer"] and r["question"] == "What is the number shown in the video?", r
    assert r["right"] == (r["first_number"] == r["answer"]), r
    assert r["ttft_s"] > 0 and r["kv_bytes"] > 0 and r["prefill_s"] > 0, r
by = {}
for r in rows:
    by.setdefault((r["length"], r["depth"], r["seed"]), {})[r["mode"]] = r
assert len(by) == 4
for key, ms in by.items():
    assert len(ms) == 7, key
    d = ms["dense"]
    for m, r in ms.items():   # one video for every mode
        assert r["needles"] == d["needles"] and r["video"] == d["video"] and r["question"] == d["question"], (key, m)
    q1 = ms["quickprefill:1"]
    assert q1["response_tokens"] == d["response_tokens"] and q1["n_tokens"] == d["n_tokens"] and q1["kv_bytes"] == d["kv_bytes"], \
        ("quickprefill:1 is not dense", key, q1["response_tokens"], d["response_tokens"])
    assert ms["quickprefill:0.5"]["kv_bytes"] < d["kv_bytes"], key
    assert ms["videoscan"]["n_carriers"] == int(key[0]) and ms["videoscan"]["n_tokens"] == d["n_tokens"] + int(key[0]), key
    assert ms["videoscan+:2"]["n_carrier_rows"] == 3 * int(key[0]), key
texts = {r["needle"] for r in rows}
assert len(texts) == 4, texts   # each video its own number
PY
grep -q "<svg" "$T/p.svg" && grep -q "videoscan+:2" "$T/p.svg" && grep -q "30s video, depth 1.00: 0 of 1 right" "$T/p.svg" || fail "SVG, a panel per mode"
[ "$(ls "$T/v" | wc -l)" = 8 ] || fail "--videos: 4 videos and their JSON: $(ls "$T/v")"
# the same video as video-vniah writes with the sample's seed and needles (the second 30 s one: from the kept haystack)
V30=$(ls "$T/v"/vniah-single-30s-d1.00-s0.mp4) || fail "no 30 s video"
N=$(grep -o '"text": "[0-9]*"' "${V30%.mp4}.json" | grep -o '[0-9]\{5\}')
expect_ok "video-vniah, the same needle" "$LV" video-vniah -o "$T/same.mp4" --haystack "$HAY" --length 30 --fps 1 --size 64x64 --needle "$N@29" --seed 0 -j 2 -q
cmp -s "$T/same.mp4" "$V30" || fail "eval vniah's video differs from video-vniah's"
[ "$(grep -o '"box": \[[0-9, ]*\]' "$T/same.json")" = "$(grep -o '"box": \[[0-9, ]*\]' "${V30%.mp4}.json")" ] || fail "boxes differ"
grep -q "\"text\":\"$N\",\"t\":29.0,\"mmss\":\"00:29\",\"f0\":29,\"f1\":30,\"box\":\[$(grep -o '"box": \[[0-9, ]*\]' "$T/same.json" | grep -o '[0-9, ]*' | tr -d ' ' | tail -1)\]" "$T/o.jsonl" ||
  fail "the JSON line's needle is not video-vniah's: $(grep -o '"box": \[[0-9, ]*\]' "$T/same.json")"
echo "ok: the 30 s video at depth 1 is video-vniah's, byte for byte"

# keyed: 3 needles, the question names the one at the depth by its MM:SS; order: two, the earlier is the answer
expect_ok "keyed" "$LV" eval vniah -m "$T/text.gguf" --mmproj $MM $S --task keyed --lengths 8 --depths 0.5 --seed 5 -o "$T/k.jsonl" -q
[ ! -s "$T/err" ] || fail "-q printed: $(cat "$T/err")"
grep -q "^keyed | mode dense | " "$T/out" || fail "keyed table"
expect_ok "order" "$LV" eval vniah -m "$T/text.gguf" --mmproj $MM $S --task order --lengths 8 --depths 0 --fps 2 --seed 5 -o "$T/r.jsonl" -q
python3 - "$T/k.jsonl" "$T/r.jsonl" <<'PY' || fail "keyed / order JSON"
import json, sys
k = json.loads(open(sys.argv[1]).readline())
assert len(k["needles"]) == 3 and k["needles"][1]["f0"] == 4, k      # round(0.5 x 7) = 4, the others 2+ frames away
assert k["question"] == "What number is shown at 00:04?" and k["answer"] == k["needles"][1]["text"] == k["needle"], k
r = json.loads(open(sys.argv[2]).readline())
assert r["video_frames"] == 16 and r["n_frames"] == 16 and r["fps"] == 2, r
a, b = r["needles"]
assert a["f0"] == 0 and b["f0"] >= 3 and r["answer"] == a["text"], r   # 2 fps: 1 frame + 2 frames (a second) apart
assert r["question"] in ("Which number was shown first, %s or %s?" % (a["text"], b["text"]), "Which number was shown first, %s or %s?" % (b["text"], a["text"])), r
PY

# refusals
E="-m $T/text.gguf --mmproj $MM $S --lengths 4 --depths 0"
expect_fail "unknown mode" "$LV" eval vniah $E --mode sparse
grep -q "is not a mode: dense, quickprefill:F" "$T/err" || fail "$(cat "$T/err")"
expect_fail "quickprefill:0" "$LV" eval vniah $E --mode quickprefill:0
expect_fail "videoscan+:0" "$LV" eval vniah $E --mode videoscan+:0
expect_fail "a mode twice" "$LV" eval vniah $E --mode dense,quickprefill:1,dense
expect_fail "+duo without heads" "$LV" eval vniah $E --mode videoscan+duo+lserve
grep -q "need a head pattern" "$T/err" || fail "$(cat "$T/err")"
expect_fail "--group without quickprefill" "$LV" eval vniah $E --group 2
expect_fail "bad length" "$LV" eval vniah $E --lengths 4,x
expect_fail "bad depth" "$LV" eval vniah $E --depths 0,1.5
expect_fail "bad task" "$LV" eval vniah $E --task words
expect_fail "too short for keyed" "$LV" eval vniah $E --task keyed --lengths 3
grep -q "3 frames, too few for --task keyed" "$T/err" || fail "$(cat "$T/err")"
expect_fail "no mmproj" "$LV" eval vniah -m "$T/text.gguf" $S --lengths 4
expect_fail "missing model" "$LV" eval vniah -m "$T/nope.gguf" --mmproj $MM $S --lengths 4
expect_fail "a text model as the mmproj" "$LV" eval vniah -m "$T/text.gguf" --mmproj "$T/text.gguf" $S --lengths 4
grep -q "not an mmproj file" "$T/err" || fail "$(cat "$T/err")"
expect_fail "missing haystack" "$LV" eval vniah $E --haystack "$T/nope.mp4"
head -c 4000 /dev/urandom > "$T/noise.mp4"
head -c 30000 "$HAY" > "$T/cut.mp4"
expect_fail "corrupt haystack" "$LV" eval vniah $E --haystack "$T/noise.mp4"
grep -q "cannot read the haystack: .*noise.mp4 is not a video file" "$T/err" || fail "$(cat "$T/err")"
expect_fail "truncated haystack" "$LV" eval vniah $E --haystack "$T/cut.mp4"
expect_fail "heads of another shape" "$LV" eval vniah $E --mode dense+duo --heads <(printf '0.9\n0.1\n0.5\n')
