#!/usr/bin/env bash
# QuickPrefill and VideoScan (issue 19, docs/video-questions.md): prefill time and KV bytes of a question about a
# real clip at --keep 1 (dense, bit for bit), 0.5 and 0.25, with a random-weight model pair of
# SmolVLM2-256M's shapes: the SmolLM2-135M text shape (q8_0, the VLM test vocabulary with
# SmolVLM2's image tokens) and the SigLIP-B/16-512 tower + idefics3 projector (q8_0), 64 embeddings
# a frame. The clip: ../shared/data/video/nasa_13013.mp4 (320x180, 13 s: 13 frames at SmolVLM2's
# 1 fps), groups of 4 frames (4 groups; with the default 16 the 13 frames are one group and only
# the question would read a pruned cache).
#
#   bench/video-questions/run.sh [ROUNDS] [GROUP] [FRAMES]     from the repository root, after `make`
#   bench/video-questions/run.sh kv [FRAMES ...]                the KV memory of VideoScan (below)
#   bench/video-questions/run.sh overlap [ROUNDS] [FRAMES] [CLIP ...]   the shared thread budget (below)
#
# FRAMES > 0 samples that many frames over the clip instead (--frames; SmolVLM2's rule otherwise).
#
# Each run: `longview run --video-sequential -t 2 -j 1 -n 8 --temp 0` (the sequential execution,
# so that the process CPU time while prefilling is the prefill's own); the keeps alternate within a
# round, their order rotating between rounds. Reported: prefill wall seconds and CPU seconds (all
# threads; the machine is shared, the CPU seconds are the steadier number), the KV cache's bytes
# after the video (f16 keys and values) and the peak RSS. Results: build/bench/video-questions/results-fFRAMES-gGROUP.tsv.
#
# `kv` mode (VideoScan, docs/video-questions.md): for each frame count (--frames N; default 13 26),
# one run of each mode in the same invocation: dense, QuickPrefill (--keep 0.5 --group 4), VideoScan
# (--carrier, the cap of 64), VideoScan+ (--carrier --carrier-keep 8) and VideoScan+ with a cap of 16
# carriers (--carrier-max 16). Reported: the KV cache's bytes after the video (exact: rows x 23040
# bytes), the rows of the video held, the prefill CPU seconds, the peak RSS. Random weights: the
# answers mean nothing (VideoScan needs carrier-trained weights). Results:
# build/bench/video-questions/kv-FRAMES.tsv.
set -euo pipefail
cd "$(dirname "$0")/../.."
# `overlap` mode (the shared thread budget, docs/video-questions.md): the overlapped execution at
# -t 2, with the budget (-j 2 and -j 1) and without it (--video-no-budget -j 1: the decode thread
# beside the two pool threads, the overlap before the budget), modes alternating within a round,
# order rotating between rounds; default clips: ../shared/data/video/nasa_13013.mp4 and, when made,
# build/bench/video/h264_720p_10min.mp4 (bench/video/make_clips.sh) and h264_720p_3min.mp4 (make_clips.sh's
# 720p settings for 3 minutes: ffmpeg -f lavfi -i testsrc2=size=1280x720:rate=25,noise=alls=8:allf=t -t 180
# -c:v libx264 -preset veryfast -crf 23 -g 250 -bf 3 -pix_fmt yuv420p). Reported per run:
# wall seconds to the first token's logits (lv_video_ask's own, model loading excluded), the
# process CPU seconds (user + sys, all threads) over the same call, CPU/T and wall / (CPU/T) (1.00:
# every core busy the whole time; the issue's goal is at most 1.15), the decode threads' busy
# seconds, the encoder's wall seconds, the seconds the encoder waited for frames, the pool's yields
# to the decode threads, the budget's use (tokens held / (T x wall): what the budget left idle by
# its own choice, whatever the load), and the load average before each run. The machine is shared: the CPU
# seconds are the steadier number. Results: build/bench/video-questions/overlap-fFRAMES.tsv.
if [ "${1:-}" = overlap ]; then
  shift
  rounds=${1:-2}
  frames=${2:-24}
  shift 2 || shift $#
  B=build/bench/video-questions
  LV=build/release/longview
  D=${LV_SHARED_DATA:-../shared/data}/video
  [ -x "$LV" ] || { echo "build longview first (make)"; exit 1; }
  clips=("$@")
  if [ ${#clips[@]} -eq 0 ]; then
    clips=("$D/nasa_13013.mp4")
    for c in build/bench/video/h264_720p_10min.mp4 build/bench/video/h264_720p_3min.mp4; do [ -f "$c" ] && clips+=("$c"); done
  fi
  mkdir -p "$B"
  [ -f "$B/text.gguf" ] || "$LV" gen-model --preset smollm2-135m --vocab tests/golden/vision/vocab-vlm.gguf --type q8_0 -o "$B/text.gguf" 2>/dev/null
  [ -f "$B/mm.gguf" ] || "$LV" gen-mmproj --preset smolvlm2-256m --type q8_0 -o "$B/mm.gguf" >/dev/null
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
  echo "machine: $(nproc) cores, $cpu, load $(cut -d' ' -f1-3 /proc/loadavg)"
  tsv=$B/overlap-f$frames.tsv
  printf 'clip\tround\tmode\tload1\twall_s\tcpu_s\tcpu_per_t\tratio\tdecode_busy_s\tencode_s\twaited_s\tyields\tbudget_use\tanswer\n' > "$tsv"
  modes=("budget -j 2|-j 2" "budget -j 1|-j 1" "no budget -j 1|-j 1 --video-no-budget")
  for v in "${clips[@]}"; do
    [ -f "$v" ] || { echo "no $v"; exit 1; }
    for r in $(seq 1 "$rounds"); do
      for i in 0 1 2; do
        m=${modes[$(( (i + r - 1) % 3 ))]}
        name=${m%%|*}
        args=${m#*|}
        load=$(cut -d' ' -f1 /proc/loadavg)
        err=$B/overlap-err.txt
        # shellcheck disable=SC2086
        ans=$("$LV" run -m "$B/text.gguf" --mmproj "$B/mm.gguf" --video "$v" -p "<__media__>What happens in this video?" \
               -n 4 --temp 0 --ids -t 2 --frames "$frames" $args 2>"$err" | tr -d '\n')
        line=$(grep '^video:' "$err")
        wall=$(sed -n 's/.*first token after \([0-9.]*\) s (CPU \([0-9.]*\) s).*/\1/p' <<<"$line")
        cpus=$(sed -n 's/.*first token after \([0-9.]*\) s (CPU \([0-9.]*\) s).*/\2/p' <<<"$line")
        dec=$(sed -n 's/.*| decode \([0-9.]*\) s.*/\1/p' <<<"$line")
        enc=$(sed -n 's/.*encode \([0-9.]*\) s,.*/\1/p' <<<"$line")
        wt=$(sed -n 's/.*waited for frames \([0-9.]*\) s.*/\1/p' <<<"$line")
        y=$(sed -n 's/.*the pool yielded \([0-9]*\) times.*/\1/p' <<<"$line")
        use=$(sed -n 's/.*in use \([0-9]*%\) of the time.*/\1/p' <<<"$line")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.3f\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(basename "$v")" "$r" "$name" "$load" "$wall" "$cpus" \
          "$(echo "$cpus / 2" | bc -l)" "$(echo "$wall / ($cpus / 2)" | bc -l)" "$dec" "$enc" "$wt" "${y:--}" "${use:--}" "$ans" | tee -a "$tsv"
      done
    done
  done
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
  # medians per clip and mode
  awk -F'\t' 'NR > 1 { k = $1 "|" $3; if (!(k in n)) ord[++no] = k; n[k]++; w[k, n[k]] = $5; c[k, n[k]] = $7; q[k, n[k]] = $8 }
    function med(a, k, m,   i, j, t, v) { for (i = 1; i <= m; i++) v[i] = a[k, i]; for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
    END { printf "%-26s %-16s %8s %8s %8s\n", "clip", "mode", "wall_s", "CPU/T_s", "ratio";
          for (i = 1; i <= no; i++) { k = ord[i]; split(k, p, "|"); printf "%-26s %-16s %8.2f %8.2f %8.3f\n", p[1], p[2], med(w, k, n[k]), med(c, k, n[k]), med(q, k, n[k]) } }' "$tsv"
  exit 0
fi
if [ "${1:-}" = kv ]; then
  shift
  B=build/bench/video-questions
  LV=build/release/longview
  V=${LV_SHARED_DATA:-../shared/data}/video/nasa_13013.mp4
  [ -x "$LV" ] || { echo "build longview first (make)"; exit 1; }
  [ -f "$V" ] || { echo "no $V"; exit 1; }
  mkdir -p "$B"
  [ -f "$B/text.gguf" ] || "$LV" gen-model --preset smollm2-135m --vocab tests/golden/vision/vocab-vlm.gguf --type q8_0 -o "$B/text.gguf" 2>/dev/null
  [ -f "$B/mm.gguf" ] || "$LV" gen-mmproj --preset smolvlm2-256m --type q8_0 -o "$B/mm.gguf" >/dev/null
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
  echo "machine: $(nproc) cores, $cpu, load $(cut -d' ' -f1-3 /proc/loadavg)"
  frames_list=${*:-13 26}
  modes=("dense|" "keep0.5|--keep 0.5 --group 4" "carrier|--carrier" "carrier+8|--carrier --carrier-keep 8" "carrier+8,max16|--carrier --carrier-keep 8 --carrier-max 16")
  for nf in $frames_list; do
    tsv=$B/kv-$nf.tsv
    printf 'frames	mode	positions	kv_video_bytes	kv_video_mib	prefill_cpu_s	peak_rss_mib	videoscan
' > "$tsv"
    for m in "${modes[@]}"; do
      name=${m%%|*}
      args=${m#*|}
      err=$B/kv-err-$nf-$name.txt
      # shellcheck disable=SC2086
      /usr/bin/time -f "peak_rss_kb=%M" "$LV" run -m "$B/text.gguf" --mmproj "$B/mm.gguf" --video "$V" -p "<__media__>What happens in this video?" \
         -n 1 --temp 0 --ids -t 2 -j 1 --video-sequential --frames "$nf" $args >/dev/null 2>"$err"
      line=$(grep '^video:' "$err")
      pos=$(sed -n 's/.*text tokens, \([0-9]*\) positions.*/\1/p' "$err")
      kvb=$(sed -n 's/.*KV after the video [0-9.]* MiB (\([0-9]*\) bytes).*/\1/p' <<<"$line")
      pc=$(sed -n 's/.*prefill [0-9.]* s (CPU \([0-9.]*\) s).*/\1/p' <<<"$line")
      vs=$(sed -n 's/.*VideoScan: \([^|]*\), KV after.*/\1/p' <<<"$line")
      rss=$(( $(sed -n 's/^peak_rss_kb=//p' "$err") / 1024 ))
      printf '%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\n' "$nf" "$name" "$pos" "$kvb" "$(echo "$kvb / 1048576" | bc -l)" "$pc" "$rss" "$vs" | tee -a "$tsv"
    done
  done
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0
fi
rounds=${1:-2}
group=${2:-4}
frames=${3:-0}
B=build/bench/video-questions
LV=build/release/longview
V=${LV_SHARED_DATA:-../shared/data}/video/nasa_13013.mp4
[ -x "$LV" ] || { echo "build longview first (make)"; exit 1; }
[ -f "$V" ] || { echo "no $V"; exit 1; }
mkdir -p "$B"
[ -f "$B/text.gguf" ] || "$LV" gen-model --preset smollm2-135m --vocab tests/golden/vision/vocab-vlm.gguf --type q8_0 -o "$B/text.gguf" 2>/dev/null
[ -f "$B/mm.gguf" ] || "$LV" gen-mmproj --preset smolvlm2-256m --type q8_0 -o "$B/mm.gguf" >/dev/null
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "machine: $(nproc) cores, $cpu, load $(cut -d' ' -f1-3 /proc/loadavg)"
tsv=$B/results-f$frames-g$group.tsv
printf 'round\tkeep\tgroup\tprefill_s\tprefill_cpu_s\tencode_s\tpruned_rows\tvideo_rows\tkv_video_mib\tkv_total_mib\tpeak_rss_mib\tanswer\n' > "$tsv"
keeps=(1 0.5 0.25)
for r in $(seq 1 "$rounds"); do
  for i in 0 1 2; do
    k=${keeps[$(( (i + r - 1) % 3 ))]}
    err=$B/err-$r-$k.txt
    ans=$( /usr/bin/time -f "peak_rss_kb=%M" "$LV" run -m "$B/text.gguf" --mmproj "$B/mm.gguf" --video "$V" -p "<__media__>What happens in this video?" \
       -n 8 --temp 0 --ids -t 2 -j 1 --video-sequential --keep "$k" --group "$group" $([ "$frames" -gt 0 ] && echo --frames "$frames") 2>"$err" | tr -d '\n')
    line=$(grep '^video:' "$err")
    pf=$(sed -n 's/.*prefill \([0-9.]*\) s (CPU \([0-9.]*\) s).*/\1/p' <<<"$line")
    pc=$(sed -n 's/.*prefill \([0-9.]*\) s (CPU \([0-9.]*\) s).*/\2/p' <<<"$line")
    en=$(sed -n 's/.*encode \([0-9.]*\) s.*/\1/p' <<<"$line")
    pr=$(sed -n 's/.*keep [0-9.]*: \([0-9]*\) of \([0-9]*\) embedding.*/\1/p' <<<"$line")
    vr=$(sed -n 's/.*keep [0-9.]*: \([0-9]*\) of \([0-9]*\) embedding.*/\2/p' <<<"$line")
    kvv=$(sed -n 's/.*KV after the video \([0-9.]*\) MiB.*/\1/p' <<<"$line")
    kvt=$(sed -n 's/.*| KV \([0-9.]*\) MiB$/\1/p' <<<"$line")
    rss=$(( $(sed -n 's/^peak_rss_kb=//p' "$err") / 1024 ))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$k" "$group" "$pf" "$pc" "$en" "$pr" "$vr" "$kvv" "$kvt" "$rss" "$ans" | tee -a "$tsv"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
# medians per keep
awk -F'\t' 'NR > 1 { n[$2]++; w[$2, n[$2]] = $4; c[$2, n[$2]] = $5; kv[$2] = $9; pr[$2] = $7; vr[$2] = $8 }
  function med(a, k, m,   i, j, t, v) { for (i = 1; i <= m; i++) v[i] = a[k, i]; for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
  END { printf "%-6s %12s %14s %14s %16s\n", "keep", "prefill_s", "prefill_cpu_s", "pruned/rows", "KV_video_MiB";
        split("1 0.5 0.25", ks, " "); for (i = 1; i <= 3; i++) { k = ks[i]; if (!n[k]) continue;
        printf "%-6s %12.2f %14.2f %14s %16s\n", k, med(w, k, n[k]), med(c, k, n[k]), pr[k] "/" vr[k], kv[k] } }' "$tsv"
