# Files a command writes appear whole or not at all (tools/common/output.c): written beside the
# target, renamed into place when complete. A failed or stopped run leaves the target as it was
# and no temporary behind.
. "$(dirname "$0")/_lib.sh"
rm -rf "$T/o"; mkdir -p "$T/o"; O="$T/o"
no_tmp() { ls "$O" | grep -q "\.tmp-" && fail "$1: temporaries left: $(ls "$O")"; true; }
"$LV" gen-model --preset tiny --vocab builtin:bytes -o "$O/m.gguf" 2>/dev/null || fail "gen-model"

# logits: a decode that fails after the output was opened (a token outside the vocabulary)
printf 'old logits\n' > "$O/l.f32"
expect_fail "logits with a bad token" "$LV" logits -m "$O/m.gguf" --tokens 1,2,99999 --all -o "$O/l.f32"
[ "$(cat "$O/l.f32")" = "old logits" ] || fail "a failed logits run replaced the output"
no_tmp "failed logits"
expect_ok "logits" "$LV" logits -m "$O/m.gguf" --tokens 1,2,3 --all -o "$O/l.f32"
[ "$(stat -c %s "$O/l.f32")" = $((3 * 259 * 4)) ] || fail "3 rows of 259 floats: $(stat -c %s "$O/l.f32")"
no_tmp "logits"
expect_fail "logits into a directory" "$LV" logits -m "$O/m.gguf" --tokens 1 -o "$O"
no_tmp "logits into a directory"

# identify: the gates and their picture
expect_ok "identify" "$LV" identify -m "$O/m.gguf" -o "$O/h.tsv" --plot "$O/h.svg" --steps 2 --seq-len 400 --sink 8 --window 32 -t 2
[ -s "$O/h.tsv" ] && grep -q "</svg>" "$O/h.svg" || fail "identify wrote its files"
no_tmp "identify"

# video-frames stopped in the middle of a long decode (SIGTERM): the target untouched, nothing left
if command -v ffmpeg >/dev/null; then
  ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi -i testsrc2=size=1280x720:rate=25 -t 60 -c:v libx264 -preset ultrafast \
    -g 250 -pix_fmt yuv420p "$O/long.mp4" || fail "cannot generate a clip"
  printf 'old frames\n' > "$O/f.rgb"
  "$LV" video-frames -i "$O/long.mp4" --fps 25 --size 64x36 -j 1 -o "$O/f.rgb" 2>"$O/v.err" &
  pid=$!
  for _ in $(seq 2400); do
    t=$(ls "$O" | grep "^f.rgb.tmp-" | head -1)
    [ -n "$t" ] && [ "$(stat -c %s "$O/$t" 2>/dev/null || echo 0)" -gt 100000 ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
  done
  [ -n "$t" ] || fail "the frames go to a temporary beside the target while they are written (or the decode ended first: $(cat "$O/v.err"))"
  kill -TERM $pid; wait $pid && fail "a stopped video-frames exits non-zero"
  [ "$(cat "$O/f.rgb")" = "old frames" ] || fail "a stopped video-frames replaced the target"
  no_tmp "stopped video-frames"
  echo "ok: video-frames stopped midway leaves the target and no temporary"
fi
