#!/usr/bin/env bash
# Scaling with the number of threads: longview -j N against ffmpeg -threads N doing the same job
# (1 frame per second at 384x384 RGB24) on the clips of make_clips.sh, for N = 1, 2, 4, ... up to
# the core count. Meant for a machine with more cores than the 2 of the benchmark machine
# (bench/video/NOTES.md has what it measured).
#
#   bench/video/scaling.sh [CLIP_NAME[:THREADS,...]]...
#       e.g. h264_720p_10min.mp4 hevc_720p_3min.mp4:1,16 (default: the three clips, all thread counts)
#
# Every longview output is compared with ffmpeg's (same bytes, or DIFFERENT in the table); one
# run per cell (REPS=n for the best of n). Environment: LV (default build/release/longview) and
# FFMPEG (default ffmpeg) may be commands with arguments (a dynamic loader and a library path for
# a bundle); DIR (default build/bench/video) holds the clips (made when missing) and the outputs.
# Prints a table and appends two TSV rows per cell to $DIR/scaling.tsv: clip, threads, tool, wall
# s, CPU s (user + sys), then ffmpeg's output md5 or longview's comparison with it.
set -euo pipefail
LV=${LV:-build/release/longview}
FFMPEG=${FFMPEG:-ffmpeg}
DIR=${DIR:-build/bench/video}
REPS=${REPS:-1}
here=$(dirname "$0")
cores=$(nproc)
all=(1)
for ((n = 2; n <= cores; n *= 2)); do all+=("$n"); done
[ "${all[-1]}" -eq "$cores" ] || all+=("$cores")
specs=("$@")
[ ${#specs[@]} -gt 0 ] || specs=(h264_720p_10min.mp4 h264_1080p_2min.mp4 hevc_720p_3min.mp4)
mkdir -p "$DIR"
echo "machine: $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
TIMEFORMAT='%R %U %S'
# timed CMD...: runs CMD REPS times, sets $wall and $cpu (user + sys) of the fastest run
timed() {
  local best=1e9 t
  wall=0 cpu=0
  for ((r = 0; r < REPS; r++)); do
    t=$({ time "$@" >/dev/null 2>&1; } 2>&1 | tail -1)
    read -r w u s <<<"$t"
    if awk -v a="$w" -v b="$best" 'BEGIN{exit !(a<b)}'; then
      best=$w wall=$w cpu=$(awk -v u="$u" -v s="$s" 'BEGIN{printf "%.2f", u+s}')
    fi
  done
}
for spec in "${specs[@]}"; do
  name=${spec%%:*}
  threads=("${all[@]}")
  [ "$name" = "$spec" ] || IFS=, read -r -a threads <<<"${spec#*:}"
  clip=$DIR/$name
  if [ ! -s "$clip" ]; then
    SECONDS=0
    FFMPEG="$FFMPEG" "$here/make_clips.sh" "$DIR" "$name" >/dev/null
    echo "made $name in $SECONDS s"
  fi
  echo "== $name"
  printf '%-8s %10s %10s %10s %10s %9s  %s\n' threads "ffmpeg s" "(cpu s)" "longview s" "(cpu s)" speed-up frames
  ref=
  for n in "${threads[@]}"; do
    timed $FFMPEG -hide_banner -loglevel error -nostdin -y -threads "$n" -i "$clip" \
      -vf fps=1,scale=384:384 -pix_fmt rgb24 -f rawvideo "$DIR/ff.rgb"
    ffw=$wall ffc=$cpu
    sum=$(md5sum < "$DIR/ff.rgb" | cut -d' ' -f1)
    [ -n "$ref" ] || ref=$sum
    timed $LV video-frames -i "$clip" --fps 1 --size 384x384 -j "$n" -q -o "$DIR/lv.rgb"
    lvw=$wall lvc=$cpu
    same=identical
    [ "$(md5sum < "$DIR/lv.rgb" | cut -d' ' -f1)" = "$ref" ] || same=DIFFERENT
    [ "$sum" = "$ref" ] || same="$same (ffmpeg -threads $n differs from its first run)"
    printf '%-8s %10.2f %10.2f %10.2f %10.2f %8.2fx  %s\n' "$n" "$ffw" "$ffc" "$lvw" "$lvc" \
      "$(awk -v a="$ffw" -v b="$lvw" 'BEGIN{print a/b}')" "$same"
    printf '%s\t%s\tffmpeg\t%s\t%s\t%s\n%s\t%s\tlongview\t%s\t%s\t%s\n' "$name" "$n" "$ffw" "$ffc" "$ref" \
      "$name" "$n" "$lvw" "$lvc" "$same" >>"$DIR/scaling.tsv"
  done
  rm -f "$DIR/ff.rgb" "$DIR/lv.rgb"
done
