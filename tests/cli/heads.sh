# longview heads: the published patterns binarized (threshold, map, counts, fraction >= 0.5), the
# shape check against a model, the SVG heat map, and the errors of bad files and options
. "$(dirname "$0")/_lib.sh"
P="$SHARED/patterns"

# a hand-written 4 x 2 pattern: no shared data needed
printf '0.9\t0.1\n0.8\t0.2\n-0.01\t1.0\n0.7\t0.3\n' > "$T/p.tsv"
expect_ok "small pattern" "$LV" heads "$T/p.tsv" --sparsity 0.5
grep -q "^shape: *4 layers x 2 KV heads" "$T/out" || fail "shape line: $(cat "$T/out")"
grep -q "^heads: *4 retrieval" "$T/out" || fail "4 of 8 retrieval at 0.5"
grep -q "^    0  #\.  *1/2" "$T/out" || fail "layer 0 map: $(grep '^    0' "$T/out")"
grep -q "^    2  \.#  *1/2" "$T/out" || fail "layer 2 map (the negative gate is clipped to 0)"
grep -q ">= 0.5: 4 of 8 (0.50)" "$T/out" || fail "fraction >= 0.5"
expect_ok "sparsity 0" "$LV" heads "$T/p.tsv" --sparsity 0
grep -q "^threshold: *-inf" "$T/out" && grep -q "^heads: *8 retrieval" "$T/out" || fail "sparsity 0: every head retrieval"
expect_ok "sparsity 1" "$LV" heads "$T/p.tsv" --sparsity 1
grep -q "^heads: *0 retrieval" "$T/out" || fail "sparsity 1: none"

# errors
printf '0.9\t0.1\n0.8\n' > "$T/ragged.tsv"
expect_fail "ragged rows" "$LV" heads "$T/ragged.tsv"
grep -q "line 2 has 1 columns" "$T/err" || fail "names the line"
printf '0.9\tzero\n' > "$T/word.tsv"
expect_fail "not a number" "$LV" heads "$T/word.tsv"
: > "$T/empty.tsv"
expect_fail "empty file" "$LV" heads "$T/empty.tsv"
expect_fail "missing file" "$LV" heads "$T/nope.tsv"
expect_fail "no file" "$LV" heads
expect_fail "sparsity out of range" "$LV" heads "$T/p.tsv" --sparsity 1.5
expect_fail "two files" "$LV" heads "$T/p.tsv" "$T/p.tsv"
expect_ok "help" "$LV" heads --help
grep -q -- "--sparsity" "$T/out" || fail "help lists --sparsity"

# shape check against a model: a 4-layer, 2-KV-head model matches p.tsv, a 2-layer one does not
expect_ok "gen-model 4x2" "$LV" gen-model --arch llama --dim 32 --layers 4 --heads 4 --kv-heads 2 --ffn 32 --vocab builtin:bytes -o "$T/m4.gguf"
expect_ok "matching model" "$LV" heads "$T/p.tsv" -m "$T/m4.gguf"
grep -q "the shape matches" "$T/out" || fail "says it matches"
expect_ok "gen-model 2x2" "$LV" gen-model --arch llama --dim 32 --layers 2 --heads 4 --kv-heads 2 --ffn 32 --vocab builtin:bytes -o "$T/m2.gguf"
expect_fail "wrong shape" "$LV" heads "$T/p.tsv" -m "$T/m2.gguf"
grep -q "4 layers x 2 KV heads but the model .* has 2 layers x 2 KV heads" "$T/err" || fail "explains the mismatch: $(cat "$T/err")"

[ -d "$P" ] || { echo "skip: $P not found (published patterns)"; exit 0; }
# the published patterns: exactly half at 0.5, and PAPERS.md's fractions of gates >= 0.5
check() { # dir layers heads retrieval-at-0.5 fraction
  expect_ok "$1" "$LV" heads "$P/$1/full_attention_heads.tsv" --sparsity 0.5
  grep -q "^shape: *$2 layers x $3 KV heads" "$T/out" || fail "$1 shape"
  grep -q "^heads: *$4 retrieval (50.0%)" "$T/out" || fail "$1: $4 retrieval heads: $(grep '^heads' "$T/out")"
  grep -q "of $(( $2 * $3 )) ($5)" "$T/out" || fail "$1: fraction >= 0.5 is $5: $(grep '^gates' "$T/out")"
  [ "$(grep -c '^ *[0-9][0-9]*  [#.]' "$T/out")" -eq "$2" ] || fail "$1: one map row per layer"
}
check Llama-2-7B-32K-Instruct 32 32 512 0.44
check Llama-3-8B-Instruct-Gradient-1048k 32 8 128 0.81
check Llama-3-8B-Instruct-Gradient-4194k 32 8 128 0.81
check Meta-Llama-3.1-8B-Instruct 32 8 128 0.91
check Mistral-7B-Instruct-v0.2 32 8 128 0.95
check Mistral-7B-Instruct-v0.3 32 8 128 0.94
expect_ok "MHA at 0.75" "$LV" heads "$P/Llama-2-7B-32K-Instruct/full_attention_heads.tsv" --sparsity 0.75
grep -q "^heads: *256 retrieval (25.0%)" "$T/out" || fail "0.75 of 1024 -> 256 retrieval"
F="$P/Llama-3-8B-Instruct-Gradient-1048k/full_attention_heads.tsv"
expect_ok "threshold on a tie" "$LV" heads "$F"
grep -q "^threshold: *0.96093[0-9]* " "$T/out" || fail "threshold 0.9609375 (+ noise): $(grep '^threshold' "$T/out")"
grep -q "sink 128, recent 256" "$T/out" || fail "config.json beside the file"
"$LV" heads "$F" --seed 7 > "$T/seed7" 2>&1 || fail "seed 7"
cmp -s "$T/out" "$T/seed7" && fail "the seed picks among tied gates: the map should change"
expect_ok "plot" "$LV" heads "$F" --plot "$T/h.svg"
grep -q "<svg" "$T/h.svg" && grep -q "threshold 0.9609" "$T/h.svg" || fail "SVG with a title"
[ "$(grep -c 'fill="none" stroke="#e41a1c"' "$T/h.svg")" -eq 128 ] || fail "128 retrieval heads outlined"
if command -v xmllint >/dev/null; then xmllint --noout "$T/h.svg" || fail "well-formed SVG"; fi
expect_fail "plot to a bad path" "$LV" heads "$F" --plot "$T/no/such/dir/h.svg"
