#!/usr/bin/env bash
# Vision encoder benchmark (issue 18): time to encode one image with the SmolVLM2-256M tower
# (SigLIP-B/16 at 512x512, idefics3 projector) and the Qwen2.5-VL-3B tower (448x448), f16 and
# q8_0 mmproj files of the real shapes (random weights, `longview gen-mmproj`), longview against
# llama.cpp's own mtmd in the same run, same file, same image.
#
#   bench/vision/run.sh [REPS]          from the repository root, after `make` and scripts/build-mtmd.sh
#
# longview: `longview image-embed -t 2 -r REPS` (median of REPS encodes after a warm-up; decoding the
# image file included). llama.cpp: build/oracle/lv_mtmd bench (mtmd_tokenize + mtmd_encode_chunk of
# every chunk, median of REPS after a warm-up) at 1 and 2 threads, its default flash attention
# (LV_MTMD_FA=auto), the better of the two counted. The SmolVLM2 file has no preproc_image_size, so
# a 512x512 image is one tile plus its overview (2 x 64 tokens) on both sides; the Qwen image is one
# 448x448 chunk of 256 tokens. The rounds alternate the two programs. FLOPs per image from
# ../shared/VISION.md section 5 (SigLIP-B/16 tile 214.7 GFLOP, Qwen2.5-VL 448x448 1343 GFLOP).
# Results: build/bench/vision/results.tsv and the table printed (bench/vision/RESULTS.md keeps them).
set -euo pipefail
cd "$(dirname "$0")/../.."
reps=${1:-3}
B=build/bench/vision
LV=build/release/longview
[ -x "$LV" ] || { echo "build longview first (make)"; exit 1; }
MT=$(scripts/build-mtmd.sh | tail -1)
. .oracle/mtmd/env 2>/dev/null || . .oracle/env
export LV_ORACLE_LIBDIR LV_MTMD_FA=auto
mkdir -p "$B"
for t in f16 q8_0; do
  [ -f "$B/smol-$t.gguf" ] || "$LV" gen-mmproj --preset smolvlm2-256m --type "$t" --preproc-size 0 -o "$B/smol-$t.gguf"
  [ -f "$B/qwen25-$t.gguf" ] || "$LV" gen-mmproj --preset qwen2.5-vl-3b --type "$t" -o "$B/qwen25-$t.gguf"
done
# text models of the projectors' widths (mtmd checks it; one small layer is enough)
[ -f "$B/text-576.gguf" ] || "$LV" gen-model --arch llama --dim 576 --layers 1 --heads 9 --kv-heads 3 --ffn 256 --vocab builtin:bytes -o "$B/text-576.gguf" 2>/dev/null
[ -f "$B/text-2048.gguf" ] || "$LV" gen-model --arch qwen2vl --dim 2048 --layers 1 --heads 16 --kv-heads 2 --ffn 256 --vocab builtin:bytes -o "$B/text-2048.gguf" 2>/dev/null
for s in 512 448; do
  [ -f "$B/img$s.ppm" ] || ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi -i "testsrc2=size=${s}x${s}" -frames:v 1 "$B/img$s.ppm"
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "machine: $(nproc) cores, $cpu, load $(cut -d' ' -f1-3 /proc/loadavg)"
tsv=$B/results.tsv
[ -n "${LV_BENCH_ONLY:-}" ] && [ -s "$tsv" ] || printf 'cell\tlongview_s\tllamacpp_s\tllamacpp_threads\tratio\tlv_gflops\tlv_rss_mib\tllamacpp_rss_mib\n' > "$tsv"
printf '%-22s %10s %12s %7s %8s %10s %9s %9s\n' cell longview_s llama.cpp_s threads ratio GFLOP/s lv_RSS mtmd_RSS
cells=("smol f16 576 512 429.4" "smol q8_0 576 512 429.4" "qwen25 f16 2048 448 1343" "qwen25 q8_0 2048 448 1343")
# LV_BENCH_ONLY=qwen25-q8_0 (a cell's prefix) runs only the matching cells
if [ -n "${LV_BENCH_ONLY:-}" ]; then
  keep=(); for c in "${cells[@]}"; do set -- $c; [[ "$1-$2" == $LV_BENCH_ONLY* ]] && keep+=("$c"); done; cells=("${keep[@]}")
fi
for c in "${cells[@]}"; do
  set -- $c
  mm=$B/$1-$2.gguf text=$B/text-$3.gguf img=$B/img$4.ppm gflop=$5
  lv_out=$("$LV" image-embed -m "$text" --mmproj "$mm" --image "$img" -t 2 -r "$reps" -o /dev/null 2>&1 | tail -1)
  lv_s=$(sed -n 's/.* chunks [0-9]*, \([0-9.]*\) s.*/\1/p' <<<"$lv_out")
  lv_rss=$(sed -n 's/.*peak RSS \([0-9]*\) MiB.*/\1/p' <<<"$lv_out")
  best=; best_t=; best_rss=
  for th in 1 2; do
    out=$("$MT" bench "$text" "$mm" "$img" -t $th -r "$reps" 2>/dev/null)
    ms=$(sed -n 's/^encode_ms_median=//p' <<<"$out")
    rss=$(sed -n 's/^peak_rss_kb=//p' <<<"$out")
    s=$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')
    if [ -z "$best" ] || awk -v a="$s" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$s best_t=$th best_rss=$((rss / 1024)); fi
  done
  ratio=$(awk -v a="$lv_s" -v b="$best" 'BEGIN { printf "%.2f", b / a }')
  gfs=$(awk -v g="$gflop" -v a="$lv_s" 'BEGIN { printf "%.0f", g / a }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1-$2@$4" "$lv_s" "$best" "$best_t" "$ratio" "$gfs" "$lv_rss" "$best_rss" >> "$tsv"
  printf '%-22s %10s %12s %7s %7sx %10s %9s %9s\n' "$1-$2@$4" "$lv_s" "$best" "$best_t" "$ratio" "$gfs" "$lv_rss" "$best_rss"
done
