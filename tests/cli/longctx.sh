# long-context flags on run, logits, info, bench
. "$(dirname "$0")/_lib.sh"
M="$T/m.gguf"
expect_ok "gen-model" "$LV" gen-model --arch llama --dim 64 --layers 3 --heads 4 --kv-heads 2 --ffn 96 --vocab builtin:bytes -o "$M"
printf '0.9\t0.1\n0.2\t0.8\n1.0\t-0.0001\n' > "$T/p.tsv"
expect_ok "info with a pattern" "$LV" info -m "$M" --heads "$T/p.tsv" --sparsity 0.5
grep -q "3 full (retrieval), 3 sink+window" "$T/out" || fail "plan counts: $(cat "$T/out")"
expect_ok "info with a LongGen plan" "$LV" info -m "$M" --layer-plan full,sw,bs --block-size 64
grep -q "block-strided layers: block 64" "$T/out" || fail "block-strided described"
expect_ok "run duo + lserve" "$LV" run -m "$M" -p "hello there, general kenobi" -n 8 --temp 0 --heads "$T/p.tsv" --sink 4 --window 8 --lserve --kv-budget 64 -b 5
expect_ok "logits longgen" "$LV" logits -m "$M" -p "abc" --layer-plan longgen -o "$T/l.f32"
expect_ok "bench duo" "$LV" bench -m "$M" -p 16 -n 4 -r 1 --no-limits --heads "$T/p.tsv" --window 8
expect_ok "bench synthetic depth" "$LV" bench -m "$M" -p 0 -n 4 -d 3000 -r 1 --no-limits --fill synthetic --heads "$T/p.tsv" --lserve --kv-budget 256 -o json
grep -q '"n_depth": *3000' "$T/out" && grep -q '"lv_fill": *"synthetic"' "$T/out" || fail "synthetic fill reported: $(cat "$T/out")"
expect_ok "bench two-level selection" "$LV" bench -m "$M" -p 0 -n 4 -d 3000 -r 1 --no-limits --fill synthetic --heads "$T/p.tsv" --lserve --kv-budget 256 --select-groups 4
expect_ok "info two-level selection" "$LV" info -m "$M" --heads "$T/p.tsv" --lserve --kv-budget 256 --select-groups 4
grep -q "two-level selection: groups of 4 pages scored first, each query head keeps its best 3 groups" "$T/out" || fail "two-level described: $(cat "$T/out")"
expect_ok "bench two-level selection, exact rule" "$LV" bench -m "$M" -p 0 -n 4 -d 3000 -r 1 --no-limits --fill synthetic --heads "$T/p.tsv" --lserve --kv-budget 256 --select-groups 4 --select-exact
expect_ok "info two-level selection, exact rule" "$LV" info -m "$M" --heads "$T/p.tsv" --lserve --kv-budget 256 --select-groups 4 --select-exact
grep -q "each query head expands groups by their bound until no other page can be chosen" "$T/out" || fail "exact rule described: $(cat "$T/out")"
expect_fail "select groups out of range" "$LV" run -m "$M" -p hi -n 2 --lserve --select-groups 1
grep -q "select groups 1" "$T/err" || fail "the bad group size is named: $(cat "$T/err")"
expect_fail "bench bad fill" "$LV" bench -m "$M" -p 0 -n 4 -d 16 --fill magic
printf '0.9\t0.1\t0.3\n' > "$T/bad.tsv"
expect_fail "pattern of another shape" "$LV" run -m "$M" -p hi -n 2 --heads "$T/bad.tsv"
grep -q "1 layers x 3 KV heads" "$T/err" || fail "both shapes named"
printf '0.9\tx\n' > "$T/bad2.tsv"
expect_fail "malformed pattern" "$LV" info -m "$M" --heads "$T/bad2.tsv"
expect_fail "bad layer plan" "$LV" run -m "$M" -p hi -n 2 --layer-plan full,full
expect_fail "budget not a multiple of the page" "$LV" run -m "$M" -p hi -n 2 --lserve --kv-budget 100
# quantized KV pages: --kv-type and llama.cpp's -ctk / -ctv
expect_fail "q8_0 cache on a head size of 16" "$LV" run -m "$M" -p hi -n 2 --kv-type q8_0
grep -q "multiples of 32 (this model: keys 16, values 16)" "$T/err" || fail "the head sizes are named: $(cat "$T/err")"
expect_fail "unknown cache type" "$LV" run -m "$M" -p hi -n 2 -ctv q3_0
grep -q "cache-type-v: 'q3_0' is not a KV cache type" "$T/err" || fail "the flag and the type are named: $(cat "$T/err")"
M2="$T/m32.gguf"
expect_ok "gen-model head size 32" "$LV" gen-model --arch llama --dim 128 --layers 3 --heads 4 --kv-heads 2 --ffn 96 --vocab builtin:bytes -o "$M2"
expect_ok "info q8_0 cache" "$LV" info -m "$M2" --kv-type q8_0 --heads "$T/p.tsv" --sparsity 0.5
grep -q "KV bytes per token (q8_0 keys, q8_0 values): dense 408; this plan 204 per token" "$T/out" || fail "q8_0 bytes: $(grep 'KV bytes' "$T/out")"
expect_ok "info -ctk q8_0 -ctv f16" "$LV" info -m "$M2" -ctk q8_0 --cache-type-v f16
grep -q "KV bytes per token (q8_0 keys, f16 values): dense 588;" "$T/out" || fail "mixed bytes: $(grep 'KV bytes' "$T/out")"
expect_ok "run duo + lserve on q8_0 pages" "$LV" run -m "$M2" -p "hello there, general kenobi" -n 8 --temp 0 -ctk q8_0 -ctv q8_0 --heads "$T/p.tsv" --sink 4 --window 8 --lserve --kv-budget 64 -b 5
expect_ok "bench q8_0 synthetic depth" "$LV" bench -m "$M2" -p 0 -n 4 -d 3000 -r 1 --no-limits --fill synthetic --kv-type q8_0 -o json
grep -q '"type_k": *"q8_0"' "$T/out" && grep -q '"type_v": *"q8_0"' "$T/out" || fail "bench reports the cache types: $(cat "$T/out")"
expect_ok "logits q8_0 keys" "$LV" logits -m "$M2" -p "abc" -ctk q8_0 -o "$T/lq.f32"
expect_ok "info q4_0 cache" "$LV" info -m "$M2" -ctk q4_0 -ctv q4_0
grep -q "KV bytes per token (q4_0 keys, q4_0 values): dense 216;" "$T/out" || fail "q4_0 bytes: $(grep "KV bytes" "$T/out")"
expect_ok "run q4_0 pages" "$LV" run -m "$M2" -p "hello" -n 4 --temp 0 --kv-type q4_0
