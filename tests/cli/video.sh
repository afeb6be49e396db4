# longview video-info and video-frames (docs/video.md). Generates a small clip with the ffmpeg CLI.
. "$(dirname "$0")/_lib.sh"
command -v ffmpeg >/dev/null || { echo "skip: no ffmpeg"; exit 0; }
V="$T/clip.mp4"
ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi -i testsrc2=size=128x96:rate=25 -f lavfi -i sine=f=440 -t 3 \
  -c:v libx264 -g 30 -bf 3 -pix_fmt yuv420p -c:a aac "$V" || fail "cannot generate a clip"

expect_ok "video-info" "$LV" video-info -i "$V"
grep -q "keyframes (s): 0.000 1.200 2.400" "$T/out" || fail "video-info keyframes: $(cat "$T/out")"
grep -q "#1 audio aac" "$T/out" || fail "video-info lists the audio stream"
grep -q "GOP 0: *KR" "$T/out" || fail "video-info GOP structure"
grep -q "not referenced" "$T/out" || fail "video-info reference frames"

# byte-identical to ffmpeg's fps + scale + rgb24
ffmpeg -hide_banner -loglevel error -nostdin -y -i "$V" -vf fps=2,scale=64:48 -pix_fmt rgb24 -f rawvideo "$T/ff.rgb"
for j in 1 2; do
  expect_ok "video-frames -j $j" "$LV" video-frames -i "$V" --fps 2 --size 64x48 -j $j -o "$T/lv.rgb"
  cmp -s "$T/ff.rgb" "$T/lv.rgb" || fail "video-frames -j $j differs from ffmpeg"
  grep -q "video-frames" "$T/err" || fail "no progress line on stderr"
done
expect_ok "video-frames to stdout" "$LV" video-frames -i "$V" --fps 2 --size 64x48 -q -o -
cmp -s "$T/ff.rgb" "$T/out" || fail "stdout output differs from ffmpeg"
expect_ok "--sequential" "$LV" video-frames -i "$V" --fps 2 --size 64x48 --sequential -q -o "$T/seq.rgb"
cmp -s "$T/ff.rgb" "$T/seq.rgb" || fail "the sequential path differs from ffmpeg"

expect_ok "--frames --hashes" "$LV" video-frames -i "$V" --frames 5 --size 32x24 --hashes -q
[ "$(wc -l < "$T/out")" -eq 5 ] || fail "5 hash lines expected: $(cat "$T/out")"
expect_ok "--times" "$LV" video-frames -i "$V" --times 0.5,1,2.9 --size 32x24 --hashes -q
[ "$(wc -l < "$T/out")" -eq 3 ] || fail "3 hash lines expected"
mkdir -p "$T/png"
expect_ok "--dir" "$LV" video-frames -i "$V" --fps 1 --size 32x24 --dir "$T/png" -q
[ "$(ls "$T/png" | grep -c 'frame_0000.*\.png')" -eq 3 ] || fail "3 PNG files expected: $(ls "$T/png")"
expect_ok "--f32 with normalisation" "$LV" video-frames -i "$V" --fps 1 --size 32x24 --f32 --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 -q -o "$T/f.bin" --stats
[ "$(stat -c %s "$T/f.bin")" -eq $((3 * 32 * 24 * 3 * 4)) ] || fail "f32 output size"
grep -q "stats: 3 frames of 3 planned" "$T/err" || fail "--stats line: $(cat "$T/err")"
expect_ok "--help" "$LV" video-frames --help
grep -q -- "--fps F" "$T/out" || fail "--help lists --fps"

# errors
expect_fail "video-frames without -i" "$LV" video-frames -o "$T/x.rgb"
expect_fail "video-frames without output" "$LV" video-frames -i "$V"
expect_fail "missing file" "$LV" video-frames -i "$T/nope.mp4" -o "$T/x.rgb"
grep -q "nope.mp4" "$T/err" || fail "the missing file is not named"
expect_fail "two rules" "$LV" video-frames -i "$V" --fps 1 --frames 3 -o "$T/x.rgb"
expect_fail "bad size" "$LV" video-frames -i "$V" --size 12 -o "$T/x.rgb"
expect_fail "fps 0" "$LV" video-frames -i "$V" --fps 0 -o "$T/x.rgb"
expect_fail "a time past the end" "$LV" video-frames -i "$V" --times 99 -o "$T/x.rgb"
grep -q "past the end" "$T/err" || fail "past the end not said"
expect_fail "audio stream" "$LV" video-frames -i "$V" --stream 1 -o "$T/x.rgb"
grep -q "not a video stream" "$T/err" || fail "audio stream not named"
ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi -i sine=f=440:d=1 -c:a aac "$T/audio.m4a"
expect_fail "no video stream" "$LV" video-info -i "$T/audio.m4a"
grep -q "no video stream" "$T/err" || fail "no video stream not said"
head -c 30000 "$V" > "$T/trunc.mp4"
expect_fail "truncated before the index" "$LV" video-info -i "$T/trunc.mp4"
# an output size FFmpeg cannot allocate is refused before decoding, naming the real bound
expect_fail "--size beyond FFmpeg's images" "$LV" video-frames -i "$V" --frames 1 --size 16384x16384 -q -o "$T/big.rgb"
grep -q "a height of at most 16128" "$T/err" || fail "the bound is named: $(cat "$T/err")"
grep -q "out of memory\|pts" "$T/err" && fail "refused before the first frame: $(cat "$T/err")"
[ ! -e "$T/big.rgb" ] || fail "nothing written"
