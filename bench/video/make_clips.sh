#!/usr/bin/env bash
# Synthesizes the benchmark clips (once; existing files are kept) into build/bench/video/.
# The content is lavfi testsrc2 (moving patterns, a counter, a colour sweep) plus light temporal
# noise so that the encoder spends bits on every frame, like camera footage does. Tuned so that
# `ffmpeg -threads 1` needs roughly the ~38 s per 10 minutes of 720p H.264 quoted in
# ../shared/BENCHMARKS.md on this machine.
#   h264_720p_10min.mp4   1280x720 25 fps, 10 min, x264 veryfast, B-frames 3 (pyramid), GOP 250 (closed)
#   h264_1080p_2min.mp4   1920x1080 25 fps, 2 min, x264 veryfast, B-frames 3, GOP 250
#   hevc_720p_3min.mp4    1280x720 25 fps, 3 min, x265 veryfast, B-frames 4, GOP 250, open GOP (x265 default)
#
#   bench/video/make_clips.sh [OUTDIR [NAME...]]    (NAMEs: make only these clips)
# FFMPEG (default ffmpeg) may be a command with arguments.
set -euo pipefail
out=${1:-build/bench/video}
shift || true
only=" $* "
FFMPEG=${FFMPEG:-ffmpeg}
mkdir -p "$out"
src() { echo "testsrc2=size=$1:rate=25,noise=alls=8:allf=t"; }
make_clip() {
  local name=$1 size=$2 secs=$3; shift 3
  [ "$only" = "  " ] || [[ "$only" == *" $name "* ]] || return 0
  [ -s "$out/$name" ] && { echo "keep $out/$name"; return; }
  echo "making $out/$name ..."
  $FFMPEG -hide_banner -loglevel error -nostdin -y -f lavfi -i "$(src "$size")" -t "$secs" "$@" -pix_fmt yuv420p "$out/tmp_$name"
  mv "$out/tmp_$name" "$out/$name"
}
make_clip h264_720p_10min.mp4 1280x720 600 -c:v libx264 -preset veryfast -crf 23 -g 250 -bf 3
make_clip h264_1080p_2min.mp4 1920x1080 120 -c:v libx264 -preset veryfast -crf 23 -g 250 -bf 3
make_clip hevc_720p_3min.mp4 1280x720 180 -c:v libx265 -preset veryfast -crf 26 \
  -x265-params "keyint=250:bframes=4:log-level=error"
ls -la "$out"
