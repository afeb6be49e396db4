# longview gen-mmproj, image-embed, info --mmproj and run --image (docs/vision.md). The golden
# mmproj files and images of tests/golden/vision (llama.cpp's mtmd computed their embeddings; the
# unit tests compare the numbers, this checks the commands around them).
. "$(dirname "$0")/_lib.sh"
G=tests/golden/vision
expect_ok "gen-mmproj tiny" "$LV" gen-mmproj --preset tiny-qwen25vl --type q8_0 --n-text 64 -o "$T/q25.gguf"
expect_ok "info --mmproj" "$LV" info --mmproj "$T/q25.gguf"
grep -q "projector qwen2.5vl_merger" "$T/out" && grep -q "window attention" "$T/out" && grep -q "output width 64" "$T/out" ||
  fail "info --mmproj: $(cat "$T/out")"
expect_fail "gen-mmproj: unknown preset" "$LV" gen-mmproj --preset nope -o "$T/x.gguf"
grep -q "smolvlm2-256m" "$T/err" || fail "the error lists the presets: $(cat "$T/err")"
[ ! -e "$T/x.gguf" ] && [ ! -e "$T/x.gguf.tmp" ] || fail "a failed gen-mmproj left a file"

# a text model whose width fits the golden projectors (64), with their marker tokens
expect_ok "gen-model text" "$LV" gen-model --arch llama --dim 64 --layers 1 --heads 2 --ffn 96 --vocab $G/vocab-vlm.gguf --seed 7 -o "$T/text.gguf"
expect_ok "info -m --mmproj" "$LV" info -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf
grep -q "fits the text model" "$T/out" || fail "info -m --mmproj: $(cat "$T/out")"
"$LV" gen-model --arch llama --dim 96 --layers 1 --heads 2 --ffn 96 --vocab builtin:bytes -o "$T/text96.gguf" 2>/dev/null
expect_fail "width mismatch" "$LV" image-embed -m "$T/text96.gguf" --mmproj $G/mlp.gguf --image $G/img-56x56.ppm -o "$T/e.f32"
grep -q "belongs to another model" "$T/err" || fail "the width mismatch is named: $(cat "$T/err")"

# image-embed: float32 rows, n_tokens on stderr; idefics3 tiles a 128x128 image into 2x2 + overview
expect_ok "image-embed idefics3" "$LV" image-embed -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --image $G/img-128x128.ppm -o "$T/e.f32" -t 2
grep -q "n_tokens 20, n_embd 64, n_pos 20, chunks 5" "$T/err" || fail "image-embed summary: $(cat "$T/err")"
[ "$(stat -c %s "$T/e.f32")" -eq $((20 * 64 * 4)) ] || fail "image-embed wrote $(stat -c %s "$T/e.f32") bytes, want 20 x 64 floats"
grep -q "tile row 2 col 2" "$T/err" && grep -q "overview" "$T/err" || fail "chunk lines: $(cat "$T/err")"
# a PNG of the same pixels encodes to the same bytes (decoding is exact for PNG)
if command -v ffmpeg >/dev/null; then
  ffmpeg -hide_banner -loglevel error -nostdin -y -i $G/img-128x128.ppm "$T/img.png"
  expect_ok "image-embed png" "$LV" image-embed --mmproj $G/idefics3-s2.gguf --image "$T/img.png" -o "$T/e2.f32" -t 1
  cmp -s "$T/e.f32" "$T/e2.f32" || fail "PNG and PPM of one image gave different embeddings (or threads changed them)"
fi
# a Qwen temporal pair is one chunk of (H/28)(W/28) tokens
expect_ok "image-embed pair" "$LV" image-embed --mmproj $G/qwen2vl.gguf --image $G/img-112x112.ppm --image2 $G/img-112x112-b.ppm -o "$T/p.f32"
grep -q "n_tokens 16, n_embd 64, n_pos 4, chunks 1" "$T/err" || fail "pair summary: $(cat "$T/err")"
expect_fail "pair of two sizes" "$LV" image-embed --mmproj $G/qwen2vl.gguf --image $G/img-112x112.ppm --image2 $G/img-224x168.ppm -o "$T/p.f32"
grep -q "needs two frames of one size" "$T/err" || fail "pair size error: $(cat "$T/err")"
expect_fail "pair on idefics3" "$LV" image-embed --mmproj $G/idefics3-s2.gguf --image $G/img-64x64.ppm --image2 $G/img-64x64.ppm -o "$T/p.f32"
grep -q "Qwen projectors" "$T/err" || fail "pair projector error: $(cat "$T/err")"

# bad images and files: clear errors, nothing written
printf 'not an image' > "$T/bad.png"
expect_fail "a corrupt image" "$LV" image-embed --mmproj $G/mlp.gguf --image "$T/bad.png" -o "$T/bad.f32"
grep -q "bad.png" "$T/err" || fail "the corrupt image is named: $(cat "$T/err")"
[ ! -e "$T/bad.f32" ] || fail "a failed image-embed left its output"
expect_fail "a text model as mmproj" "$LV" image-embed --mmproj "$T/text.gguf" --image $G/img-56x56.ppm -o "$T/bad.f32"
grep -q "not an mmproj file" "$T/err" || fail "a text model as mmproj: $(cat "$T/err")"
head -c 5000 $G/mlp.gguf > "$T/trunc.gguf"
expect_fail "a truncated mmproj" "$LV" info --mmproj "$T/trunc.gguf"

# run with images: placed at the markers (or before the text), greedy output deterministic
expect_ok "run --image" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --image $G/img-64x64.ppm -p "Describe <__media__> please" -n 6 --temp 0 --ids
first=$(cat "$T/out")
grep -q "64x64, 2 chunks, 8 embeddings" "$T/err" && grep -q "images: 1, encoded in" "$T/err" || fail "run --image stderr: $(cat "$T/err")"
expect_ok "run --image again" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --image $G/img-64x64.ppm -p "Describe <__media__> please" -n 6 --temp 0 --ids -t 1
[ "$(cat "$T/out")" = "$first" ] || fail "greedy output changed with the thread count: '$first' then '$(cat "$T/out")'"
expect_ok "run --image, no marker" "$LV" run -m "$T/text.gguf" --mmproj $G/mlp.gguf --image $G/img-56x56.ppm -p "What is it?" -n 3 --temp 0
expect_fail "more markers than images" "$LV" run -m "$T/text.gguf" --mmproj $G/mlp.gguf --image $G/img-56x56.ppm -p "<__media__><__media__>" -n 1
grep -q "2 <__media__> markers but 1 images" "$T/err" || fail "marker count error: $(cat "$T/err")"
expect_fail "--image without --mmproj" "$LV" run -m "$T/text.gguf" --image $G/img-56x56.ppm -p hi
grep -q "needs --mmproj" "$T/err" || fail "--image without --mmproj: $(cat "$T/err")"
expect_fail "image prompt too long for -c" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --image $G/img-128x128.ppm -p hi -c 32 -n 1
grep -q "does not fit the context" "$T/err" || fail "context error: $(cat "$T/err")"
# M-RoPE text model (qwen2vl) with a Qwen projector, two images
expect_ok "run qwen2vl" "$LV" run -m $G/text-qwen2vl.gguf --mmproj $G/qwen2vl.gguf --image $G/img-224x168.ppm --image $G/img-112x112.ppm \
  -p "A <__media__> and <__media__>" -n 4 --temp 0 --ids
true
