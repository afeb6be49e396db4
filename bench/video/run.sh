#!/usr/bin/env bash
# Video benchmark (../shared/BENCHMARKS.md item 4): sampled decode, 1 frame per second resized to
# 384x384 RGB24, longview against the ffmpeg CLI doing the same job, in the same script.
#
#   bench/video/run.sh [REPS] [CLIP...]      from the repository root, after `make`
#
# 1. Synthesizes the clips once (bench/video/make_clips.sh; kept in build/bench/video).
# 2. Exactness: longview -j1 and -j2 output compared byte for byte with `ffmpeg -threads 1`.
# 3. Timing: REPS rounds (default 3); each round runs the four jobs once, interleaved, in an order
#    that rotates every round (ffmpeg -threads 1, longview -j 1, ffmpeg -threads 2, longview -j 2),
#    output to /dev/null. Wall-clock seconds and CPU seconds (user + sys, which a busy shared
#    machine disturbs much less); medians, spread and ratios go to build/bench/video/results.tsv
#    and bench/video/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
reps=${1:-3}
shift || true
B=build/bench/video
LV=build/release/longview
[ -x "$LV" ] || { echo "build longview first (make)"; exit 1; }
bench/video/make_clips.sh "$B" >/dev/null
clips=("$@")
[ ${#clips[@]} -gt 0 ] || clips=(h264_720p_10min.mp4 h264_1080p_2min.mp4 hevc_720p_3min.mp4)
FPS=1 W=384 H=384
VF="fps=$FPS,scale=$W:$H"
tsv=$B/results.tsv
: > "$tsv"

now() { date +%s.%N; }
ff() { # threads out
  ffmpeg -hide_banner -loglevel error -nostdin -y -threads "$1" -i "$clip" -vf "$VF" -pix_fmt rgb24 -f rawvideo "$2"; }
lv() { # threads out
  "$LV" video-frames -i "$clip" --fps "$FPS" --size "${W}x${H}" -j "$1" -q -o "$2"; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
for name in "${clips[@]}"; do
  clip=$B/$name
  echo "== $name"
  # exactness
  ff 1 "$B/ref.rgb"
  for j in 1 2; do
    lv "$j" "$B/lv.rgb"
    if cmp -s "$B/ref.rgb" "$B/lv.rgb"; then same=identical; else same=DIFFERENT; fi
    echo "   longview -j $j vs ffmpeg -threads 1: $same ($(stat -c %s "$B/lv.rgb") bytes)"
    printf '%s\texact\tj%d\t%s\n' "$name" "$j" "$same" >> "$tsv"
  done
  rm -f "$B/ref.rgb" "$B/lv.rgb"
  "$LV" video-frames -i "$clip" --fps "$FPS" --size "${W}x${H}" -j 1 -q -o /dev/null --stats 2>&1 | sed 's/^/   /'
  # timing, interleaved
  jobs=("ff 1" "lv 1" "ff 2" "lv 2")
  for ((r = 0; r < reps; r++)); do
    for ((k = 0; k < 4; k++)); do
      job=${jobs[$(((k + r) % 4))]}
      t0=$(now)
      /usr/bin/time -f '%U %S' -o "$B/cpu.txt" bash -c "$(declare -f ff lv); clip='$clip' VF='$VF' FPS=$FPS W=$W H=$H LV='$LV' $job /dev/null"
      t1=$(now)
      dt=$(echo "$t1 - $t0" | bc -l)
      cpu=$(awk '{print $1 + $2}' "$B/cpu.txt")
      printf '%s\ttime\t%s\t%.3f\t%.3f\n' "$name" "${job/ /-t}" "$dt" "$cpu" >> "$tsv"
      printf '   round %d %-6s %7.2f s wall %7.2f s cpu  (load %s)\n' "$r" "${job/ /-t}" "$dt" "$cpu" "$(cut -d' ' -f1 /proc/loadavg)"
    done
  done
done
python3 bench/video/summarize.py "$tsv" "$reps" > bench/video/RESULTS.md.new
mv bench/video/RESULTS.md.new bench/video/RESULTS.md
cat bench/video/RESULTS.md
