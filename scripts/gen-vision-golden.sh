#!/usr/bin/env bash
# Regenerates the vision goldens in tests/golden/vision/ with llama.cpp's mtmd as the oracle.
#
#   scripts/gen-vision-golden.sh            # everything
#   scripts/gen-vision-golden.sh mlp-56     # some cases (the mmproj files, images and vocabulary are always rewritten)
#
# 1. scripts/gen-mmproj-golden.py writes the random-weight mmproj files (all four projector types),
#    the test images (PPM at the exact target sizes) and the tiny text model's vocabulary into
#    tests/golden/vision/ (committed; deterministic, so a rerun rewrites identical bytes).
# 2. `longview gen-model` writes the tiny text model (n_embd = the mmproj output width), deterministic
#    from its seed; its arguments and SHA-256 go into every golden header, so the tests regenerate it.
# 3. oracle/lv_mtmd.c (built with libmtmd by scripts/build-mtmd.sh, out of tree from the pinned
#    llama.cpp v0.4.0 source) runs mtmd_tokenize / mtmd_encode_chunk (and, for the logits cases, the
#    text model on the chunks as mtmd-helper's eval does) and the result becomes NAME.lvv: a text
#    header and a little-endian body (format: tests/golden/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${LV_JOBS:-2}
OUTDIR=tests/golden/vision
WORK=build/vision-golden-work
mkdir -p "$WORK" "$OUTDIR"
make -j"$JOBS" build/release/longview >/dev/null
LV=build/release/longview
ORACLE=$(scripts/build-mtmd.sh -j"$JOBS" | tail -1)
. .oracle/mtmd/env
export LV_ORACLE_LIBDIR OMP_WAIT_POLICY=passive
PYTHON=${PYTHON:-/usr/bin/python3}
PYTHONPATH=.oracle/src/gguf-py "$PYTHON" scripts/gen-mmproj-golden.py "$OUTDIR" >/dev/null

# the tiny text model: llama, n_embd 64 = the mmproj files' output width, 1 layer
TEXT_ARGS="--arch llama --dim 64 --layers 1 --heads 2 --ffn 96 --vocab $OUTDIR/vocab-vlm.gguf --type f32 --seed 7"
TEXT="$WORK/text.gguf"
# shellcheck disable=SC2086
$LV gen-model $TEXT_ARGS -o "$TEXT" >/dev/null 2>&1
TEXT_SHA=$(sha256sum "$TEXT" | cut -d' ' -f1)
THREADS=2
PROMPT='Describe <__media__> please'

# name | kind | mmproj | images | extra lv_mtmd flags (logits: the prompt, default $PROMPT) | what it covers
CASES=(
  "idefics3-s2-64|embed|idefics3-s2.gguf|img-64x64.ppm||idefics3, one 64x64 tile (p 16, s 2: 4 tokens) + the identical overview"
  "idefics3-s2-128|embed|idefics3-s2.gguf|img-128x128.ppm||idefics3 multi-tile: 2x2 tiles of 64 (exact crops) + the overview (128->64 Pillow-bicubic, NOT preprocessing-free)"
  "idefics3-e128-64|embed|idefics3-s2-e128.gguf|img-64x64.ppm||idefics3 with preproc_image_size 128 (SmolVLM tiling): 64x64 upscaled to 128 (Lanczos), 2x2 tiles + overview (NOT preprocessing-free)"
  "idefics3-e128-224x168|embed|idefics3-s2-e128.gguf|img-224x168.ppm||idefics3 with preproc_image_size 128, non-square: long side to 128, 128x96, stretched to 128x128, 2x2 tiles + overview (NOT preprocessing-free)"
  "idefics3-s4-128|embed|idefics3-s4.gguf|img-128x128.ppm||idefics3, one 128x128 tile (p 16, s 4: 4 tokens of 16d) + the identical overview"
  "idefics3-s2-f16-64|embed|idefics3-s2-f16.gguf|img-64x64.ppm||idefics3 with F16 matrices"
  "qwen2vl-224x168|embed|qwen2vl.gguf|img-224x168.ppm||qwen2vl_merger, non-square 224x168 (16x12 patches, 8x6 merged = 48 tokens)"
  "qwen2vl-112|embed|qwen2vl.gguf|img-112x112.ppm||qwen2vl_merger, 112x112 still image (16 tokens)"
  "qwen2vl-pair-112|embed|qwen2vl.gguf|img-112x112.ppm img-112x112-b.ppm|--pair|qwen2vl_merger, temporal pair of two 112x112 frames (mergeable bitmaps: one chunk of 16 tokens)"
  "qwen25vl-224x168|embed|qwen25vl.gguf|img-224x168.ppm||qwen2.5vl_merger, 224x168: 2x2 windows (partial bottom row) in block 0, full attention in block 1"
  "qwen25vl-112|embed|qwen25vl.gguf|img-112x112.ppm||qwen2.5vl_merger, 112x112 (one window = the whole image)"
  "qwen25vl-pair-112|embed|qwen25vl.gguf|img-112x112.ppm img-112x112-b.ppm|--pair|qwen2.5vl_merger, temporal pair of two 112x112 frames"
  "qwen25vl-q8_0-224x168|embed|qwen25vl-q8_0.gguf|img-224x168.ppm||qwen2.5vl_merger with Q8_0 matrices"
  "mlp-56|embed|mlp.gguf|img-56x56.ppm||mlp (LLaVA-1.5 style, no v.class_embd), 56x56: 16 tokens, 2 of 3 blocks run"
  "qwen2vl-224x168-mrope|embed|qwen2vl.gguf|img-224x168.ppm||qwen2vl-224x168 with an M-RoPE text model: nx 8, ny 6, n_pos 8, decoder positions"
  "qwen25vl-224x168-mrope|embed|qwen25vl.gguf|img-224x168.ppm||qwen25vl-224x168 with an M-RoPE text model"
  "qwen25vl-pair-112-mrope|embed|qwen25vl.gguf|img-112x112.ppm img-112x112-b.ppm|--pair|the temporal pair with an M-RoPE text model: t constant over the pair"
  "qwen2vl-two-images-mrope|embed|qwen2vl.gguf|img-224x168.ppm img-112x112.ppm||two images in one prompt (not mergeable) with an M-RoPE text model: the second chunk's pos_0 follows max(nx, ny)"
  "logits-mlp-56|logits|mlp.gguf|img-56x56.ppm||end to end: BOS + 'Describe ' + 16 image rows + ' please' through the tiny text model"
  "logits-idefics3-s2-64|logits|idefics3-s2.gguf|img-64x64.ppm||end to end: the idefics3 tile + overview with their marker tokens"
  "logits-qwen2vl-224x168-mrope|logits|qwen2vl.gguf|img-224x168.ppm||end to end with the M-RoPE text model: BOS + 'Describe ' + <|vision_start|> + 48 image rows (8x6 grid, 2-D decoder positions) + <|vision_end|> + ' please' (text after the image at pos_0 + max(nx, ny)); pos4 per row"
  "logits-qwen25vl-two-images-mrope|logits|qwen25vl.gguf|img-224x168.ppm img-112x112.ppm|A <__media__> and <__media__> end|end to end with the M-RoPE text model, two images (8x6 and 4x4 grids) in one prompt, each chunk's pos_0 the running n_past; pos4 per row"
)

for c in "${CASES[@]}"; do
  IFS='|' read -r name kind mmproj images extra covers <<<"$c"
  [ $# -eq 0 ] || [[ " $* " == *" $name "* ]] || continue
  paths=()
  for i in $images; do paths+=("$OUTDIR/$i"); done
  # the *-mrope cases use the committed qwen2vl text model (gen-model has no qwen2vl architecture yet)
  text="$TEXT"
  case $name in *-mrope) text="$OUTDIR/text-qwen2vl.gguf" ;; esac
  if [ "$kind" = embed ]; then
    # shellcheck disable=SC2086
    "$ORACLE" embed "$text" "$OUTDIR/$mmproj" "${paths[@]}" $extra -t $THREADS -o "$WORK/$name" 2>"$WORK/$name.log"
  else
    prompt=${extra:-$PROMPT}
    "$ORACLE" logits "$text" "$OUTDIR/$mmproj" "$prompt" "${paths[@]}" -t $THREADS -o "$WORK/$name" 2>"$WORK/$name.log"
  fi
  proj=$(PYTHONPATH=.oracle/src/gguf-py "$PYTHON" -c 'import sys, gguf; r = gguf.GGUFReader(sys.argv[1]); f = r.fields["clip.projector_type"]; print(bytes(f.parts[f.data[0]]).decode())' "$OUTDIR/$mmproj")
  {
    echo "LVV1"
    echo "name=$name"
    echo "kind=$kind"
    echo "covers=$covers"
    echo "projector=$proj"
    echo "mmproj=$mmproj"
    echo "mmproj_sha256=$(sha256sum "$OUTDIR/$mmproj" | cut -d' ' -f1)"
    echo "images=$images"
    for i in $images; do echo "image_sha256.$i=$(sha256sum "$OUTDIR/$i" | cut -d' ' -f1)"; done
    if [ "$text" = "$TEXT" ]; then
      echo "text_gen_model=$TEXT_ARGS"
      echo "text_sha256=$TEXT_SHA"
    else
      echo "text_model=$(basename "$text")"
      echo "text_sha256=$(sha256sum "$text" | cut -d' ' -f1)"
    fi
    if [ "$kind" = logits ]; then echo "prompt=$prompt"; fi
    cat "$WORK/$name.txt"
    echo "oracle=llama.cpp v0.4.0 (node-llama-cpp 3.21.1) libmtmd built by scripts/build-mtmd.sh, oracle/lv_mtmd.c; CPU, warmup off, flash attention off"
    echo "end"
    cat "$WORK/$name.bin"
  } > "$OUTDIR/$name.lvv"
  echo "gen-vision-golden: $OUTDIR/$name.lvv ($(stat -c %s "$OUTDIR/$name.lvv") bytes)"
done
