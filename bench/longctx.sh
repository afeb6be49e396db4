#!/usr/bin/env bash
# Long-context speed: prefill of a D-token prompt and decode at depth D, dense vs DuoAttention vs
# DuoAttention + LServe selection, against llama.cpp on the same GGUF (issue 5). Interleaved per
# depth (llama.cpp, then each longview mode), one JSON line per test, then a table (longctx.py).
#
#   LLAMA_BENCH=/path/to/llama-bench bench/longctx.sh [-d 4096,16384,32768] [-t 2] [-T 1,2] [-n 32] [-S] [MODEL.gguf ...]
#
# -S: longview fills the depth with synthetic keys and values (bench --fill synthetic: seconds
# instead of the minutes of a prefill at 64k-128k), so only its decode is measured; -T 0 runs no
# llama.cpp (bench/longctx.py --fit then extends llama.cpp's decode line from the depths it ran).
# MODES (environment): longview's modes, default "dense duo duo+lserve"; also duo+lserve-shared
# (one page selection per KV head, --select-shared: not LServe's per-query-head rule).
# -t: longview's threads; -T: llama.cpp's thread counts (its best is reported). Default model: the smollm2-135m preset in q8_0 (random weights: speed
# does not depend on them). The DuoAttention pattern is random (seeded), shaped to the model, at
# sparsity 0.5 with sink 64 + window 256; LServe keeps a 4096-token budget, reselected every 4 steps
# (LServe's rule: --select-drift 0; the default drift guard would reselect at nearly every step on
# random weights, whose consecutive queries are unrelated: docs/long-context.md).
# Each (engine, mode, threads, depth) is ONE run of the bench with -d D -n N, no warm-up: it fills
# the cache with D tokens (a D-token prefill, in batches of 512), then decodes N tokens (timed by
# the bench). A 32k prefill takes minutes on 2 cores, so the fill is not repeated to time the
# prefill on its own: prefill tokens/s = D / (the run's wall-clock time - N / decode tokens/s),
# the same rule for both engines (it includes loading the model and creating the context, under
# a second against minutes at 16k and more).
set -euo pipefail
cd "$(dirname "$0")/.."
D=4096,16384,32768 T=2 LT=1,2 N=32 FILL=prefill
while getopts "d:t:T:n:S" o; do
  case $o in d) D=$OPTARG ;; t) T=$OPTARG ;; T) LT=$OPTARG ;; n) N=$OPTARG ;; S) FILL=synthetic ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[ "$LT" = 0 ] && LT=
[ -z "$LT" ] || : "${LLAMA_BENCH:?set LLAMA_BENCH to the path of the llama-bench of llama.cpp}"
make -j"$(nproc)" build/release/longview >/dev/null
LV=build/release/longview
SHARED=${LV_SHARED_DATA:-../shared/data}
mkdir -p build/bench/models bench/results
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  m=build/bench/models/smollm2-135m-q8_0.gguf
  [ -f "$m" ] || "$LV" gen-model --preset smollm2-135m --vocab "$SHARED/vocab/ggml-vocab-llama-spm.gguf" --type q8_0 --seed 1 -o "$m" 2>/dev/null
  models=("$m")
fi
out=bench/results/longctx-$(date -u +%Y%m%dT%H%M%SZ).jsonl
echo "longctx: writing $out" >&2
now() { date +%s.%N; }
# one run: "$@" prints one JSON line per test; adds the engine, mode and the run's wall-clock time
timed() { local eng=$1 mode=$2; shift 2; local t0 t1 line; t0=$(now); line=$("$@" | grep '^{' | tail -1); t1=$(now)
  echo "$line" | sed "s/^{/{\"engine\":\"$eng\",\"mode\":\"$mode\",\"wall_s\":$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}'),/" >> "$out"; }
for m in "${models[@]}"; do
  # a random DuoAttention pattern with the model's shape (layers x KV heads)
  read -r L H < <("$LV" info -m "$m" 2>/dev/null | awk '/^n_layer:/ {l=$2} /^n_head:/ {gsub(/[^0-9 ]/," ",$0); split($0,a," "); h=a[2]} END {print l, h}')
  pat=build/bench/models/$(basename "$m" .gguf)-random-heads.tsv
  python3 -c "import random,sys; random.seed(1); L,H=int(sys.argv[1]),int(sys.argv[2]); print('\n'.join('\t'.join('%.4f'%random.random() for _ in range(H)) for _ in range(L)))" "$L" "$H" > "$pat"
  for d in ${D//,/ }; do
    for t in ${LT//,/ }; do
      echo "longctx: $m depth $d: llama.cpp -t $t" >&2
      timed llama.cpp dense env OMP_WAIT_POLICY=passive "$LLAMA_BENCH" -m "$m" -p 0 -n "$N" -d "$d" -t "$t" -r 1 --no-warmup -o jsonl
    done
    for mode in ${MODES:-dense duo duo+lserve}; do
      echo "longctx: $m depth $d: longview $mode -t $T" >&2
      case $mode in
        dense) flags=() ;;
        duo) flags=(--heads "$pat" --sparsity 0.5) ;;
        duo+lserve) flags=(--heads "$pat" --sparsity 0.5 --lserve --kv-budget 4096 --select-every 4 --select-drift 0) ;;
        duo+lserve-shared) flags=(--heads "$pat" --sparsity 0.5 --lserve --kv-budget 4096 --select-every 4 --select-drift 0 --select-shared) ;;
        *) echo "longctx: unknown mode $mode (MODES: dense duo duo+lserve duo+lserve-shared)" >&2; exit 2 ;;
      esac
      timed longview "$mode" "$LV" bench -m "$m" -p 0 -n "$N" -d "$d" -t "$T" -r 1 --no-warmup --no-limits --fill "$FILL" -o json "${flags[@]}"
    done
  done
done
python3 bench/longctx.py "$out"
