#!/usr/bin/env bash
# A question about a long 720p video, longview against llama.cpp's stack, every baseline in the same
# run (issue 19, "Measured"; docs/video-questions.md). Random-weight model pairs of published shapes:
#   smol:   SmolVLM2-256M: `gen-model --preset smollm2-135m` (q8_0, the VLM test vocabulary) and
#           `gen-mmproj --preset smolvlm2-256m --preproc-size 0` (q8_0 and f16): 512x512 frames,
#           64 embeddings a frame, SmolVLM2's video prompt (intro, a timestamp per frame).
#   qwen25: Qwen2.5-VL-3B: `gen-model --preset qwen2.5-vl-3b` and `gen-mmproj --preset qwen2.5-vl-3b`
#           (q8_0): temporal pairs, M-RoPE, one <|vision_start|> block.
# The video (cached in build/bench/video-questions/, git-ignored): ../shared/data/video/nasa_13013.mp4
# (NASA footage, 13 s) looped for 2 minutes, scaled to 1280x720 and re-encoded once (x264 veryfast,
# crf 23, 25 fps, GOP 250 closed, 3 B-frames); the 10-minute and one-hour videos are that segment
# concatenated 5 and 30 times (stream copy: the same H.264, 15000 / 90000 frames).
#
#   bench/video-questions/stack.sh quick          the 10-minute video: every cell below
#   bench/video-questions/stack.sh full           the one-hour video: smol-q8_0 (longview + llama.cpp)
#   bench/video-questions/stack.sh MINUTES CELL... (MINUTES 10 or 60) any cells, in order
# from the repository root, after `make` and scripts/build-mtmd.sh (LV_ORACLE_DIR as that script's).
# Cells: smol-q8_0, smol-f16 (longview, then llama.cpp's stack), smol-q8_0-keep0.5 (QuickPrefill
# --keep 0.5 --group 16), smol-q8_0-carrier (VideoScan --carrier), smol-q8_0-carrier8 (VideoScan+
# --carrier --carrier-keep 8) (longview only), qwen25-q8_0 (longview, then llama.cpp's stack).
# Frames: SmolVLM2 6 a minute (one every 10 s: 60 for 10 minutes, 360 for the hour; --frames N,
# spread over the whole video; LV_VQ_FRAMES=N overrides it, for trying the script); Qwen
# LV_VQ_QWEN_FRAMES (default 8: 4 pairs; its tower costs ~10x SmolVLM2's a frame).
# LV_VQ_NO_LLAMA=1 skips llama.cpp's stack; LV_VQ_SELECT=1 also times the ffmpeg CLI extracting
# the frames in one process with a select filter (decodes every frame of the video).
#
# longview: `longview run -m TEXT --mmproj MM --video V --frames N -p "<__media__>What happens in this
# video?" -n 1 --temp 0 --ids -t 2 -j 1` (the overlapped pipeline), under /usr/bin/time.
# llama.cpp's stack, on the same frames and the same rows:
#   1. `longview run ... --print-prompt` gives the prompt text (every embedding row as <image> or
#      <|video_pad|>), and the sampled frame numbers are computed as longview samples them
#      (SmolVLM2 --frames N: numpy linspace(0, frames - 1, N) truncated, checked against the
#      prompt's timestamps; Qwen: `longview video-frames --frames N --hashes`);
#   2. the ffmpeg CLI extracts them, one process a frame, `ffmpeg -threads 2 -ss T -i V -frames:v 1
#      -vf scale=W:H:flags=bicubic F.ppm` with T = (frame - 0.25) / fps (accurate seeking: decodes
#      from the keyframe before; the frame at T; faster than one process decoding the whole video),
#      at the size longview gives the encoder (SmolVLM2: stretched to 512x512, as ours);
#   3. build/oracle/lv_mtmd video (oracle/lv_mtmd.c, ours, against llama.cpp's libllama + libmtmd):
#      the same pieces of text tokenized by llama.cpp, every frame through mtmd_tokenize +
#      mtmd_encode_chunk (the one image chunk of the frame's row count: for SmolVLM2 the overview,
#      the frame itself; mtmd's extra 1x1 tile chunk is not encoded) and llama_decode, mtmd-helper's
#      chunk loop, 2 threads, llama.cpp's default context (flash attention auto, f16 cache), -b 512;
#      the first token is the argmax of the last row's logits.
# Results: build/bench/video-questions/stack-MINUTESm.tsv (appended, one row per system and cell),
# then a summary. Columns:
#   date, minutes, frames, cell, system  (longview | llama.cpp = ffmpeg + lv_mtmd | ffmpeg-select)
#   units        frames (SmolVLM2) or pairs (Qwen) encoded
#   text, rows   text tokens and all rows (text + embedding (+ carrier) rows) of the prompt
#   ttft_s       seconds from starting on the video to the first token: longview the lv_video_ask
#                call ("first token after"); llama.cpp ffmpeg's wall + lv_mtmd's first_token_s
#   wall_s       process wall seconds, model loading included (llama.cpp: ffmpeg's + lv_mtmd's)
#   ffmpeg_s     ffmpeg's wall seconds (all the frames); program_s: longview's or lv_mtmd's wall
#   cpu_s        process CPU seconds, user + sys, all threads (llama.cpp: ffmpeg's + lv_mtmd's)
#   decode_s     longview: the decode threads' busy seconds, summed; llama.cpp: ffmpeg's CPU seconds
#   encode_s     seconds in the vision tower (longview: wall on the pool; lv_mtmd: mtmd_encode_chunk)
#   prefill_s    seconds in the text model's decode (lv_decode / llama_decode), wall
#   prefill_cpu_s  longview: process CPU seconds while prefilling ("CPU" in run's report)
#   kv_bytes     the KV cache's bytes after the video (longview: lv_kv_used_bytes; llama.cpp:
#                llama_state_seq_get_size of the sequence)
#   rss_mib      peak RSS of longview / lv_mtmd (ffmpeg's own is a few tens of MiB, not counted)
#   first_token  the first token's id (greedy); load1_before, load1_after: /proc/loadavg's 1-minute
#   note         VideoScan / QuickPrefill counts from run's report
set -euo pipefail
cd "$(dirname "$0")/../.."
B=build/bench/video-questions
LV=build/release/longview
SRC=${LV_SHARED_DATA:-../shared/data}/video/nasa_13013.mp4
[ -x "$LV" ] || { echo "build longview first (make)"; exit 1; }
[ -f "$SRC" ] || { echo "no $SRC"; exit 1; }
case "${1:-quick}" in
  quick) set -- 10 smol-q8_0 smol-f16 smol-q8_0-keep0.5 smol-q8_0-carrier smol-q8_0-carrier8 qwen25-q8_0 ;;
  full) set -- 60 smol-q8_0 ;;
esac
minutes=$1
shift
mkdir -p "$B"
ff() { ffmpeg -hide_banner -loglevel error -nostdin -y "$@"; }
# the video
if [ ! -s "$B/seg120.mp4" ]; then
  ff -stream_loop -1 -i "$SRC" -map 0:v:0 -an -sn -t 120 -vf "scale=1280:720:flags=bicubic,fps=25" -c:v libx264 -preset veryfast \
     -crf 23 -g 250 -bf 3 -x264-params open-gop=0 -pix_fmt yuv420p "$B/seg120.tmp.mp4"
  mv "$B/seg120.tmp.mp4" "$B/seg120.mp4"
fi
V=$B/v$minutes.mp4
if [ ! -s "$V" ]; then
  n=$((minutes / 2)); [ $((n * 2)) = "$minutes" ] && [ "$n" -ge 1 ] || { echo "MINUTES must be even"; exit 1; }
  for i in $(seq "$n"); do echo "file 'seg120.mp4'"; done > "$B/list$minutes.txt"
  ff -f concat -safe 0 -i "$B/list$minutes.txt" -c copy "$B/v$minutes.tmp.mp4"
  mv "$B/v$minutes.tmp.mp4" "$V"
fi
# the models
[ -s "$B/smol-text-q8_0.gguf" ] || "$LV" gen-model --preset smollm2-135m --vocab tests/golden/vision/vocab-vlm.gguf --type q8_0 -o "$B/smol-text-q8_0.gguf" 2>/dev/null
for t in q8_0 f16; do
  [ -s "$B/smol-mm-$t.gguf" ] || "$LV" gen-mmproj --preset smolvlm2-256m --type $t --preproc-size 0 -o "$B/smol-mm-$t.gguf" >/dev/null
done
if [[ " $* " == *" qwen25"* ]]; then
  [ -s "$B/qwen25-text-q8_0.gguf" ] || "$LV" gen-model --preset qwen2.5-vl-3b --vocab tests/golden/vision/vocab-vlm.gguf --type q8_0 -o "$B/qwen25-text-q8_0.gguf" 2>/dev/null
  [ -s "$B/qwen25-mm-q8_0.gguf" ] || "$LV" gen-mmproj --preset qwen2.5-vl-3b --type q8_0 -o "$B/qwen25-mm-q8_0.gguf" >/dev/null
fi
MT=
if [ -z "${LV_VQ_NO_LLAMA:-}" ]; then
  MT=$(scripts/build-mtmd.sh | tail -1)
  ORA=${LV_ORACLE_DIR:-$PWD/.oracle}
  . "$ORA/mtmd/env"
  export LV_ORACLE_LIBDIR LV_MTMD_FA=auto
fi

Q="<__media__>What happens in this video?"
rate=$(ffprobe -v error -select_streams v:0 -show_entries stream=avg_frame_rate,nb_frames -of csv=p=0 "$V")
fps=$(awk -F, '{ split($1, a, "/"); printf "%.9g", a[1] / a[2] }' <<<"$rate")
total=$(cut -d, -f2 <<<"$rate")
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "machine: $(nproc) cores, $cpu; video $V: $total frames at $fps fps; load $(cut -d' ' -f1-3 /proc/loadavg)"
tsv=$B/stack-${minutes}m.tsv
[ -s "$tsv" ] || printf 'date\tminutes\tframes\tcell\tsystem\tunits\ttext\trows\tttft_s\twall_s\tffmpeg_s\tprogram_s\tcpu_s\tdecode_s\tencode_s\tprefill_s\tprefill_cpu_s\tkv_bytes\trss_mib\tfirst_token\tload1_before\tload1_after\tnote\n' > "$tsv"
load1() { cut -d' ' -f1 /proc/loadavg; }
row() { local IFS=$'\t'; echo "$*" >> "$tsv"; echo "$*"; }
# time_kv FILE: wall user sys maxrss from /usr/bin/time -f "time: %e %U %S %M"
tline() { grep '^time: ' "$1" | tail -1; }

for cell in "$@"; do
  case $cell in
    smol-*) fam=smol text=$B/smol-text-q8_0.gguf; t=${cell#smol-}; t=${t%%-*}; mm=$B/smol-mm-$t.gguf; nf=${LV_VQ_FRAMES:-$((minutes * 6))} ;;
    qwen25-*) fam=qwen25 text=$B/qwen25-text-q8_0.gguf mm=$B/qwen25-mm-q8_0.gguf nf=${LV_VQ_QWEN_FRAMES:-8} ;;
    *) echo "unknown cell $cell"; exit 1 ;;
  esac
  case $cell in
    *-keep0.5) extra=(--keep 0.5 --group 16) ;;
    *-carrier) extra=(--carrier) ;;
    *-carrier8) extra=(--carrier --carrier-keep 8) ;;
    *) extra=() ;;
  esac
  W=$B/work-$minutes-$cell
  mkdir -p "$W"
  # longview
  l0=$(load1)
  /usr/bin/time -f "time: %e %U %S %M" "$LV" run -m "$text" --mmproj "$mm" --video "$V" --frames "$nf" -p "$Q" -n 1 --temp 0 --ids -t 2 -j 1 \
    "${extra[@]}" > "$W/lv.out" 2> "$W/lv.err" || { cat "$W/lv.err"; exit 1; }
  l1=$(load1)
  plan=$(grep '^video .*format' "$W/lv.err")
  rep=$(grep '^video: ' "$W/lv.err")
  read -r _ wall us sy rss <<<"$(tline "$W/lv.err")"
  units=$(sed -n 's/.*at [0-9]*x[0-9]*, \([0-9]*\) \(frames\|pairs\) of.*/\1/p' <<<"$plan")
  ntext=$(sed -n 's/.*, \([0-9]*\) text tokens, \([0-9]*\) positions.*/\1/p' <<<"$plan")
  nrows=$(sed -n 's/.*, \([0-9]*\) text tokens, \([0-9]*\) positions.*/\2/p' <<<"$plan")
  dec=$(sed -n 's/.*| decode \([0-9.]*\) s.*/\1/p' <<<"$rep")
  enc=$(sed -n 's/.*, encode \([0-9.]*\) s.*/\1/p' <<<"$rep")
  pre=$(sed -n 's/.*, prefill \([0-9.]*\) s (CPU \([0-9.]*\) s).*/\1/p' <<<"$rep")
  precpu=$(sed -n 's/.*, prefill \([0-9.]*\) s (CPU \([0-9.]*\) s).*/\2/p' <<<"$rep")
  ttft=$(sed -n 's/.*first token after \([0-9.]*\) s.*/\1/p' <<<"$rep")
  kvb=$(sed -n 's/.*KV after the video [0-9.]* MiB (\([0-9]*\) bytes).*/\1/p' <<<"$rep")
  note=$(sed -n 's/.*\(VideoScan: [^|]*\), KV after.*/\1/p; s/.*\(QuickPrefill: [^|]*\), KV after.*/\1/p' <<<"$rep")
  row "$(date -u +%FT%TZ)" "$minutes" "$nf" "$cell" longview "$units" "$ntext" "$nrows" "$ttft" "$wall" - "$wall" \
      "$(awk -v a="$us" -v b="$sy" 'BEGIN { printf "%.2f", a + b }')" "$dec" "$enc" "$pre" "$precpu" "$kvb" $((rss / 1024)) \
      "$(tr -d ' \n' < "$W/lv.out")" "$l0" "$l1" "${note:--}"
  [ -n "$MT" ] && [ ${#extra[@]} = 0 ] || continue

  # llama.cpp's stack: the prompt, the frame numbers, ffmpeg, lv_mtmd
  "$LV" run -m "$text" --mmproj "$mm" --video "$V" --frames "$nf" -p "$Q" --print-prompt > "$W/prompt.txt" 2>/dev/null
  size=$(sed -n 's/.* at \([0-9]*x[0-9]*\), .*/\1/p' <<<"$plan")
  if [ $fam = smol ]; then
    awk -v n="$nf" -v t="$total" 'BEGIN { s = n > 1 ? (t - 1) / (n - 1) : 0; for (i = 0; i < n; i++) printf "%d\n", (n > 1 && i == n - 1) ? t - 1 : i * s }' > "$W/idx.txt"
    # the prompt's timestamps are those frames' (MM:SS of frame / fps)
    diff <(grep -o 'Frame from [0-9]*:[0-9]*' "$W/prompt.txt" | sed 's/Frame from //') \
         <(awk -v f="$fps" '{ t = $1 / f; printf "%02d:%02d\n", int(t / 60), int(t % 60) }' "$W/idx.txt") > /dev/null \
      || { echo "the frame numbers do not give the prompt's timestamps"; exit 1; }
    pair=()
  else
    "$LV" video-frames -i "$V" --frames "$nf" --hashes -q | awk '{ print $4 }' > "$W/idx.txt"
    pair=(--pair)
  fi
  rm -rf "$W/frames"
  mkdir -p "$W/frames"
  awk -v d="$W/frames" '{ printf "%s/f%05d.ppm\n", d, NR - 1 }' "$W/idx.txt" > "$W/frames.txt"
  paste -d' ' "$W/idx.txt" "$W/frames.txt" | awk -v f="$fps" '{ t = ($1 - 0.25) / f; if (t < 0) t = 0; printf "%.6f %s\n", t, $2 }' > "$W/seek.txt"
  l0=$(load1)
  /usr/bin/time -f "time: %e %U %S %M" bash -c 'while read -r t out; do
      ffmpeg -hide_banner -loglevel error -nostdin -y -threads 2 -ss "$t" -i "$1" -frames:v 1 -vf "scale=$2:flags=bicubic" -threads 2 "$out" || exit 1
    done < "$3"' _ "$V" "${size/x/:}" "$W/seek.txt" 2> "$W/ff.err" || { cat "$W/ff.err"; exit 1; }
  read -r _ fwall fus fsy _ <<<"$(tline "$W/ff.err")"
  [ "$(ls "$W/frames" | wc -l)" = "$nf" ] || { echo "ffmpeg wrote $(ls "$W/frames" | wc -l) of $nf frames"; exit 1; }
  /usr/bin/time -f "time: %e %U %S %M" "$MT" video "$text" "$mm" "$W/prompt.txt" "$W/frames.txt" "${pair[@]}" -t 2 -b 512 > "$W/mt.out" 2> "$W/mt.err" \
    || { cat "$W/mt.err"; exit 1; }
  l1=$(load1)
  read -r _ mwall mus msy mrss <<<"$(tline "$W/mt.err")"
  k() { sed -n "s/^$1=//p" "$W/mt.out"; }
  [ "$(k n_rows)" = "$nrows" ] && [ "$(k n_text)" = "$ntext" ] || echo "WARNING: llama.cpp's rows $(k n_rows) (text $(k n_text)) differ from longview's $nrows ($ntext)"
  fcpu=$(awk -v a="$fus" -v b="$fsy" 'BEGIN { printf "%.2f", a + b }')
  row "$(date -u +%FT%TZ)" "$minutes" "$nf" "$cell" llama.cpp "$(k n_units)" "$(k n_text)" "$(k n_rows)" \
      "$(awk -v a="$fwall" -v b="$(k first_token_s)" 'BEGIN { printf "%.2f", a + b }')" \
      "$(awk -v a="$fwall" -v b="$mwall" 'BEGIN { printf "%.2f", a + b }')" "$fwall" "$mwall" \
      "$(awk -v a="$fcpu" -v b="$mus" -v c="$msy" 'BEGIN { printf "%.2f", a + b + c }')" "$fcpu" "$(k encode_s)" "$(k prefill_s)" - \
      "$(k kv_bytes)" $((mrss / 1024)) "$(k first_token)" "$l0" "$l1" "lv_mtmd load $(k load_s) s, mtmd_tokenize $(k mtmd_tokenize_s) s"
  if [ -n "${LV_VQ_SELECT:-}" ]; then
    expr=$(awk '{ printf "%seq(n\\,%d)", (NR > 1 ? "+" : ""), $1 }' "$W/idx.txt")
    rm -rf "$W/sel"; mkdir -p "$W/sel"
    l0=$(load1)
    /usr/bin/time -f "time: %e %U %S %M" ffmpeg -hide_banner -loglevel error -nostdin -y -threads 2 -i "$V" \
      -vf "select='$expr',scale=${size/x/:}:flags=bicubic" -fps_mode passthrough -threads 2 "$W/sel/f%05d.ppm" 2> "$W/sel.err"
    read -r _ swall sus ssy _ <<<"$(tline "$W/sel.err")"
    same=$(cmp -s "$W/sel/f00001.ppm" "$W/frames/f00000.ppm" && cmp -s "$W/sel/f$(printf %05d "$nf").ppm" "$W/frames/f$(printf %05d $((nf - 1))).ppm" && echo "same first and last frames as the seeking extraction" || echo "frames differ from the seeking extraction")
    row "$(date -u +%FT%TZ)" "$minutes" "$nf" "$cell" ffmpeg-select "$(ls "$W/sel" | wc -l)" - - - "$swall" "$swall" - \
        "$(awk -v a="$sus" -v b="$ssy" 'BEGIN { printf "%.2f", a + b }')" - - - - - - - "$l0" "$(load1)" "$same"
  fi
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
# summary: llama.cpp's stack against longview per cell, this run's rows
awk -F'\t' -v since="$(date -u -d '-1 day' +%FT%TZ)" 'NR > 1 && $1 >= since { c = $4; if ($5 == "longview") { lt[c] = $9; lw[c] = $10; lc[c] = $13; lk[c] = $18; lr[c] = $19 }
    else if ($5 == "llama.cpp") { mt[c] = $9; mw[c] = $10; mf[c] = $11 } }
  END { printf "%-20s %9s %9s %9s %12s %12s %9s %8s %10s %8s\n", "cell", "lv_ttft", "lv_wall", "lv_cpu/2", "KV_MiB", "RSS_MiB", "ll_ttft", "ffmpeg", "ll_wall", "ratio";
    for (c in lt) printf "%-20s %9.1f %9.1f %9.1f %12.1f %12d %9s %8s %10s %8s\n", c, lt[c], lw[c], lc[c] / 2, lk[c] / 1048576, lr[c],
      ((c in mt) ? mt[c] : "-"), ((c in mf) ? mf[c] : "-"), ((c in mw) ? mw[c] : "-"), ((c in mw) ? sprintf("%.2fx", mw[c] / lw[c]) : "-") }' "$tsv"
