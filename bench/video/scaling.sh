#!/usr/bin/env bash
# Scaling with the number of threads: longview -j N against ffmpeg -threads N doing the same job
# (1 frame per second at 384x384 RGB24), for N = 1, 2, 4, ... up to the core count. Meant for a
# machine with more cores than the 2 of the benchmark machine (see NOTES.md).
#
#   bench/video/scaling.sh [SECONDS] [REPS]
#
# Environment: LV (default build/release/longview) and FFMPEG (default ffmpeg) may be commands with
# arguments, e.g. a dynamic loader and a library path for a bundle; OUT (default build/bench/scaling)
# receives the clip and the results.
set -euo pipefail
secs=${1:-180}
reps=${2:-1}
LV=${LV:-build/release/longview}
FFMPEG=${FFMPEG:-ffmpeg}
OUT=${OUT:-build/bench/scaling}
mkdir -p "$OUT"
clip=$OUT/h264_720p_${secs}s.mp4
if [ ! -s "$clip" ]; then
  t0=$(date +%s.%N)
  $FFMPEG -hide_banner -loglevel error -nostdin -y -f lavfi -i "testsrc2=size=1280x720:rate=25,noise=alls=8:allf=t" \
    -t "$secs" -c:v libx264 -preset veryfast -crf 23 -g 250 -bf 3 -pix_fmt yuv420p "$clip"
  echo "clip: $clip ($(stat -c %s "$clip") bytes) in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
fi
cores=$(nproc)
threads=(1)
for ((n = 2; n <= cores; n *= 2)); do threads+=("$n"); done
[ "${threads[-1]}" -eq "$cores" ] || threads+=("$cores")
echo "machine: $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
$FFMPEG -hide_banner -loglevel error -nostdin -y -threads 1 -i "$clip" -vf fps=1,scale=384:384 -pix_fmt rgb24 -f rawvideo "$OUT/ref.rgb"
ref=$(md5sum < "$OUT/ref.rgb" | cut -d' ' -f1)
printf '%-8s %12s %12s %10s  %s\n' threads "ffmpeg (s)" "longview (s)" speed-up frames
for n in "${threads[@]}"; do
  best_ff=1e9 best_lv=1e9
  for ((r = 0; r < reps; r++)); do
    t0=$(date +%s.%N)
    $FFMPEG -hide_banner -loglevel error -nostdin -y -threads "$n" -i "$clip" -vf fps=1,scale=384:384 -pix_fmt rgb24 -f rawvideo /dev/null
    t1=$(date +%s.%N)
    $LV video-frames -i "$clip" --fps 1 --size 384x384 -j "$n" -q -o "$OUT/lv.rgb"
    t2=$(date +%s.%N)
    best_ff=$(awk -v a="$t0" -v b="$t1" -v m="$best_ff" 'BEGIN{d=b-a; print (d<m)?d:m}')
    best_lv=$(awk -v a="$t1" -v b="$t2" -v m="$best_lv" 'BEGIN{d=b-a; print (d<m)?d:m}')
  done
  same=$([ "$(md5sum < "$OUT/lv.rgb" | cut -d' ' -f1)" = "$ref" ] && echo identical || echo DIFFERENT)
  printf '%-8s %12.2f %12.2f %9.2fx  %s\n' "$n" "$best_ff" "$best_lv" "$(awk -v a="$best_ff" -v b="$best_lv" 'BEGIN{print a/b}')" "$same"
done
