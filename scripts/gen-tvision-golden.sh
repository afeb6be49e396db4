#!/usr/bin/env bash
# Regenerates tests/golden/tvision/: llama.cpp's mtmd on text model + mmproj pairs written by the
# trainer's exporters (lv_tmodel_export_gguf, lv_tvmodel_export_gguf; issue 20), so that
# tests/vision/test_vision_golden.c can check that llama.cpp loads what the trainer writes and
# computes the same image embeddings and logits as longview.
#
#   scripts/gen-tvision-golden.sh                                   # the generated pairs below
#   scripts/gen-tvision-golden.sh --pair NAME TEXT.gguf MMPROJ.gguf   # a shipped (trained) pair
#
# 1. build/release/tvpair_gen writes each pair (tests/train/tvpair.h: trainer-initialised weights,
#    deterministic from the spec string, so the test writes the same bytes again in-process and
#    compares SHA-256s; the files themselves are not committed).
# 2. oracle/lv_mtmd (scripts/build-mtmd.sh: libmtmd built out of tree from the pinned llama.cpp
#    v0.4.0 source) runs mtmd_tokenize / mtmd_encode_chunk on the images (embed) and the text model
#    on the chunks as mtmd-helper does (logits); the result becomes NAME.lvv in the LVV1 format of
#    tests/golden/README.md, with `pair_gen=SPEC` (generated) or `pair_files=TEXT MMPROJ` (paths
#    relative to the repository root, for a shipped pair) in the header.
# Images: the committed tests/golden/vision/img-*.ppm.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${LV_JOBS:-2}
OUTDIR=tests/golden/tvision
IMGDIR=tests/golden/vision
WORK=build/tvision-golden-work
mkdir -p "$WORK" "$OUTDIR"
make -j"$JOBS" build/release/tvpair_gen >/dev/null
ORACLE=$(scripts/build-mtmd.sh -j"$JOBS" | tail -1)
. .oracle/mtmd/env
export LV_ORACLE_LIBDIR OMP_WAIT_POLICY=passive
THREADS=2
PROMPT='Describe <__media__> please'

# name | kind | pair | images | prompt (logits) | what it covers
CASES=(
  "tv-f32-s2-64|embed|seed=5 type=f32 scale=2|img-64x64.ppm||trainer pair (f32), shuffle 2: one 64x64 tile (16 tokens) + the identical overview"
  "tv-f32-s2-128|embed|seed=5 type=f32 scale=2|img-128x128.ppm||trainer pair (f32), shuffle 2: 2x2 tiles (exact crops) + the Pillow-bicubic overview"
  "tv-f32-s4-64|embed|seed=7 type=f32 scale=4|img-64x64.ppm||trainer pair (f32), shuffle 4: 4 tokens of 16 x 64 features per tile"
  "tv-f16-s2-64|embed|seed=6 type=f16 scale=2|img-64x64.ppm||trainer pair with F16 matrices (both files), shuffle 2"
  "logits-tv-f32-s2-64|logits|seed=5 type=f32 scale=2|img-64x64.ppm||end to end: BOS + 'Describe ' + tile + marker tokens + overview + ' please' through the trainer's text model"
  "logits-tv-f16-s2-128|logits|seed=6 type=f16 scale=2|img-128x128.ppm||end to end with F16 files: four tiles with their <row_Y_col_X> text, the overview, ' please'"
)
SHIPPED=""
if [ "${1:-}" = --pair ]; then
  [ $# -eq 4 ] || { echo "usage: $0 --pair NAME TEXT.gguf MMPROJ.gguf" >&2; exit 2; }
  SHIPPED="$3 $4"
  CASES=(
    "$2-64|embed|-|img-64x64.ppm||shipped pair $2: a 64x64 image (upscaled to the tower's size as mtmd does)"
    "$2-224x168|embed|-|img-224x168.ppm||shipped pair $2: a non-square image"
    "logits-$2-64|logits|-|img-64x64.ppm||shipped pair $2 end to end"
  )
fi

for c in "${CASES[@]}"; do
  IFS='|' read -r name kind spec images prompt covers <<<"$c"
  if [ -n "$SHIPPED" ]; then
    read -r text mm <<<"$SHIPPED"
    mmname=$(basename "$mm")
  else
    tag=$(echo "$spec" | tr ' =' '-_')
    text="$WORK/$tag-text.gguf" mm="$WORK/$tag-mmproj.gguf"
    build/release/tvpair_gen "$spec" "$text" "$mm"
    mmname="tvpair-$tag-mmproj.gguf" # informational; the test reads 'f16' in it for the tolerance
  fi
  paths=()
  for i in $images; do paths+=("$IMGDIR/$i"); done
  prompt=${prompt:-$PROMPT}
  if [ "$kind" = embed ]; then
    "$ORACLE" embed "$text" "$mm" "${paths[@]}" -t $THREADS -o "$WORK/$name" 2>"$WORK/$name.log"
  else
    "$ORACLE" logits "$text" "$mm" "$prompt" "${paths[@]}" -t $THREADS -o "$WORK/$name" 2>"$WORK/$name.log"
  fi
  {
    echo "LVV1"
    echo "name=$name"
    echo "kind=$kind"
    echo "covers=$covers"
    echo "projector=idefics3"
    if [ -n "$SHIPPED" ]; then echo "pair_files=$text $mm"; else echo "pair_gen=$spec"; fi
    echo "mmproj=$mmname"
    echo "mmproj_sha256=$(sha256sum "$mm" | cut -d' ' -f1)"
    echo "images=$images"
    for i in $images; do echo "image_sha256.$i=$(sha256sum "$IMGDIR/$i" | cut -d' ' -f1)"; done
    echo "text_sha256=$(sha256sum "$text" | cut -d' ' -f1)"
    if [ "$kind" = logits ]; then echo "prompt=$prompt"; fi
    cat "$WORK/$name.txt"
    echo "oracle=llama.cpp v0.4.0 (node-llama-cpp 3.21.1) libmtmd built by scripts/build-mtmd.sh, oracle/lv_mtmd.c; CPU, warmup off, flash attention off"
    echo "end"
    cat "$WORK/$name.bin"
  } > "$OUTDIR/$name.lvv"
  echo "gen-tvision-golden: $OUTDIR/$name.lvv ($(stat -c %s "$OUTDIR/$name.lvv") bytes)"
done
