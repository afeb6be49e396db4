#!/usr/bin/env bash
# Decode cost at depth in user CPU time, configurations interleaved (issue 22): for each round, each
# configuration and each depth, one `longview bench` run with -n 8 and one with -n N; the cost of a
# decoded token is (user time of -n N - user time of -n 8) / (N - 8) in ms, so the fill and the setup
# cancel, and time another process takes from ours is not counted (wall time on a shared machine is).
#
#   bench/decode-cpu.sh [-r ROUNDS] [-d 4096,131072] [-n 136] [-t 2] [-k f16] [-m MODEL] "LABEL|LONGVIEW|FLAGS" ...
#
# Every run has the duo + LServe flags of bench/longctx.sh (its random head pattern, budget 4096,
# --select-every 4 --select-drift 0, synthetic fill) plus the configuration's FLAGS, e.g.
#   bench/decode-cpu.sh -r 2 "perhead|build/release/longview|" "shared|build/release/longview|--select-shared"
set -euo pipefail
cd "$(dirname "$0")/.."
R=2 D=4096,131072 N=136 T=2 KV=f16 M=build/bench/models/smollm2-135m-q8_0.gguf
while getopts "r:d:n:t:k:m:" o; do
  case $o in r) R=$OPTARG ;; d) D=$OPTARG ;; n) N=$OPTARG ;; t) T=$OPTARG ;; k) KV=$OPTARG ;; m) M=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "decode-cpu: give at least one LABEL|LONGVIEW|FLAGS" >&2; exit 2; }
LV=build/release/longview
[ -f "$M" ] || { echo "decode-cpu: $M missing (bench/longctx.sh makes it)" >&2; exit 2; }
read -r L H < <("$LV" info -m "$M" 2>/dev/null | awk '/^n_layer:/ {l=$2} /^n_head:/ {gsub(/[^0-9 ]/," ",$0); split($0,a," "); h=a[2]} END {print l, h}')
pat=$(mktemp)
trap 'rm -f "$pat"' EXIT
python3 -c "import random,sys; random.seed(1); L,H=int(sys.argv[1]),int(sys.argv[2]); print('\n'.join('\t'.join('%.4f'%random.random() for _ in range(H)) for _ in range(L)))" "$L" "$H" > "$pat"
user() { # LONGVIEW DEPTH NGEN FLAGS...: user CPU seconds of one run
  local lv=$1 d=$2 n=$3; shift 3; local t; t=$(mktemp)
  /usr/bin/time -f %U -o "$t" "$lv" bench -m "$M" -p 0 -n "$n" -d "$d" -t "$T" -r 1 --no-warmup --no-limits --fill synthetic --kv-type "$KV" \
    --heads "$pat" --sparsity 0.5 --lserve --kv-budget 4096 --select-every 4 --select-drift 0 -o json "$@" >/dev/null 2>&1
  cat "$t"; rm -f "$t"; }
echo "decode-cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kv $KV, $T threads, load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$R"); do
  for cfg in "$@"; do
    IFS='|' read -r lab lv fl <<<"$cfg"
    for d in ${D//,/ }; do
      # shellcheck disable=SC2086
      a=$(user "$lv" "$d" 8 $fl); b=$(user "$lv" "$d" "$N" $fl)
      echo "$lab depth $d round $r: $(awk -v a="$a" -v b="$b" -v n="$N" 'BEGIN {printf "%.1f", (b - a) / (n - 8) * 1000}') ms/token user CPU (load $(cut -d' ' -f1 /proc/loadavg))"
    done
  done
done
