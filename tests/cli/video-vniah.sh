# longview video-vniah (docs/vniah.md): V-NIAH evaluation videos, H.264 through libx264, read back
# by video-info / video-frames. The haystack is ../shared/data's NASA clip, or a generated one.
. "$(dirname "$0")/_lib.sh"
H="$SHARED/video/nasa_13013.mp4"
if [ ! -e "$H" ]; then
  command -v ffmpeg >/dev/null || { echo "skip: no ../shared/data and no ffmpeg"; exit 0; }
  H="$T/hay.mp4"
  ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi -i testsrc2=size=160x90:rate=25 -t 2 -c:v libx264 -pix_fmt yuv420p "$H" \
    || fail "cannot generate a haystack"
fi
expect_ok "--help" "$LV" video-vniah --help
grep -q -- "--needle TEXT@SECONDS" "$T/out" || fail "--help lists --needle"

O="$T/v.mp4"
expect_ok "a small video" "$LV" video-vniah -o "$O" --haystack "$H" --length 3 --fps 4 --size 128x72 --gop 4 \
  --needle 48151@1 --needle "hi there@2+0.5" --seed 7
[ -s "$O" ] || fail "the video is there"
ls "$T" | grep -q "\.tmp-" && fail "temporaries left: $(ls "$T")"
grep -q '^needle 0: "48151" frames \[4, 8) = 1.000..2.000 s (00:01)' "$T/out" || fail "needle 0 line: $(cat "$T/out")"
grep -q '^needle 1: "hi there" frames \[8, 10) = 2.000..2.500 s (00:02)' "$T/out" || fail "needle 1 line: $(cat "$T/out")"
grep -q '"text": "48151", "t": 1.000000, "duration": 1.000000, "f0": 4, "f1": 8' "$T/v.json" || fail "JSON: $(cat "$T/v.json")"
grep -q '"n_frames": 12' "$T/v.json" || fail "JSON frame count"
grep -q "video-vniah" "$T/err" || fail "no progress line on stderr"
expect_ok "video-info reads it" "$LV" video-info -i "$O"
grep -q "h264 (High) 128x72" "$T/out" || fail "video-info: $(head -5 "$T/out")"
grep -q "frames: *12 shown" "$T/out" || fail "12 frames: $(cat "$T/out")"
grep -q "keyframes (s): 0.000 1.000 2.000" "$T/out" || fail "a keyframe every 4 frames: $(cat "$T/out")"
# the needle's frames differ from the haystack's: frame 5 with and without the needle (another seed moves the box)
expect_ok "without needles" "$LV" video-vniah -o "$T/plain.mp4" --haystack "$H" --length 3 --fps 4 --size 128x72 --gop 4 -q
"$LV" video-frames -i "$O" --all --hashes -q > "$T/h1" && "$LV" video-frames -i "$T/plain.mp4" --all --hashes -q > "$T/h0" \
  || fail "video-frames"
[ "$(wc -l < "$T/h1")" -eq 12 ] || fail "12 frames decoded"
for f in 4 5 6 7 8 9; do
  [ "$(awk -v f=$f '$1 == f { print $5 }' "$T/h1")" != "$(awk -v f=$f '$1 == f { print $5 }' "$T/h0")" ] || fail "frame $f has no needle"
done
# the cache of the resized haystack changes nothing
expect_ok "--cache 0" "$LV" video-vniah -o "$T/nocache.mp4" --haystack "$H" --length 3 --fps 4 --size 128x72 --gop 4 \
  --needle 48151@1 --needle "hi there@2+0.5" --seed 7 -q --cache 0
cmp -s "$O" "$T/nocache.mp4" || fail "--cache 0 gives other bytes"
# a JSON elsewhere, and N/D rates
expect_ok "--json, --fps 30000/1001" "$LV" video-vniah -o "$T/w.mp4" --haystack "$H","$H" --length 1 --fps 30000/1001 --size 64x36 \
  --needle 7@0.5 --json "$T/truth.json" -q
grep -q '"fps_num": 30000, "fps_den": 1001' "$T/truth.json" || fail "--json: $(cat "$T/truth.json")"

# errors: nothing is left behind
expect_fail "no --haystack" "$LV" video-vniah -o "$T/x.mp4" --length 3 --needle 1@1
expect_fail "a needle without a time" "$LV" video-vniah -o "$T/x.mp4" --haystack "$H" --length 3 --needle 12345
grep -q "TEXT@SECONDS" "$T/err" || fail "the needle format is named"
expect_fail "a needle past the end" "$LV" video-vniah -o "$T/x.mp4" --haystack "$H" --length 3 --needle 12345@3.5
grep -q "past the end" "$T/err" || fail "past the end not said: $(cat "$T/err")"
expect_fail "a character outside the font" "$LV" video-vniah -o "$T/x.mp4" --haystack "$H" --length 3 --needle 'a"b@1'
expect_fail "an odd size" "$LV" video-vniah -o "$T/x.mp4" --haystack "$H" --length 3 --size 129x72
expect_fail "fps 0" "$LV" video-vniah -o "$T/x.mp4" --haystack "$H" --length 3 --fps 0
expect_fail "a missing haystack" "$LV" video-vniah -o "$T/x.mp4" --haystack "$T/nope.mp4" --length 3
grep -q "nope.mp4" "$T/err" || fail "the missing file is not named"
expect_fail "an unknown preset" "$LV" video-vniah -o "$T/x.mp4" --haystack "$H" --length 1 --size 64x36 --preset warp9
expect_fail "an unwritable output" "$LV" video-vniah -o "$T/no/such/dir/x.mp4" --haystack "$H" --length 1 --size 64x36
expect_fail "standard output" "$LV" video-vniah -o - --haystack "$H" --length 1 --size 64x36
[ ! -e "$T/x.mp4" ] && [ ! -e "$T/x.json" ] || fail "a failed run left files"
ls "$T" | grep -q "\.tmp-" && fail "temporaries left: $(ls "$T")"
true
# stopped in the middle (SIGTERM): no video, no temporary
"$LV" video-vniah -o "$T/long.mp4" --haystack "$H" --length 3600 --fps 25 --size 320x180 -q -j 1 2>"$T/long.err" &
pid=$!
for i in $(seq 1 100); do ls "$T" | grep -q "long.mp4.tmp-" && break; sleep 0.05; done
sleep 0.5
kill -TERM $pid
wait $pid && fail "a stopped run exited 0"
[ ! -e "$T/long.mp4" ] || fail "a stopped run left the video"
ls "$T" | grep -q "\.tmp-" && fail "a stopped run left its temporary: $(ls "$T")"
echo "ok: stopped by SIGTERM, nothing left"
