#!/usr/bin/env bash
# Scale-out behind HAProxy (deploy/haproxy/scaleout.sh; issue 21, ../shared/SERVING.md §4.2):
# REPLICAS `longview serve` processes (SLOTS slots, 1 thread each) behind HAProxy, a workload of
# shared system prompts (lvbench --prefix K:L: each prompt starts with one of K prefixes of L
# tokens, then its own tokens), closed loop at CONC requests in flight. Run once with the
# body-prefix hash (consistent) and once with round robin; for each, the prompt-cache hit ratio
# (prompt tokens reused from a slot's cache over prompt tokens admitted, summed over the replicas'
# /metrics), the CPU seconds the replicas used, and lvbench's TTFT.
# Usage: bench/serve/scaleout.sh [MODEL.gguf]   (default build/bench/models/smollm2-135m-q8_0.gguf,
#        else a random SmolLM2-135M-shaped model made with gen-model)
# Environment: REPLICAS (3), SLOTS (2), K (6), L (256), N (120), CONC (6), LENGTHS (uniform:16:64),
#   MAX_TOKENS (8), PORT (18300), SEED (1).
# Writes bench/serve/results/scaleout-<UTC stamp>.jsonl and prints a table.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -j2 build/release/longview build/release/lvbench >/dev/null
LV=$PWD/build/release/longview B=$PWD/build/release/lvbench
M=${1:-build/bench/models/smollm2-135m-q8_0.gguf}
if [ ! -s "$M" ]; then
  mkdir -p build/bench/models
  "$LV" gen-model --preset smollm2-135m --type q8_0 -o "$M" >/dev/null
fi
REPLICAS=${REPLICAS:-3} SLOTS=${SLOTS:-2} K=${K:-6} L=${L:-256} N=${N:-120} CONC=${CONC:-6}
LENGTHS=${LENGTHS:-uniform:16:64} MAX_TOKENS=${MAX_TOKENS:-8} PORT=${PORT:-18300} SEED=${SEED:-1}
mkdir -p bench/serve/results
out=bench/serve/results/scaleout-$(date -u +%Y%m%dT%H%M%SZ).jsonl
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
echo "{\"type\":\"run\",\"cpu\":\"$cpu\",\"nproc\":$(nproc),\"model\":\"$M\",\"replicas\":$REPLICAS,\"slots\":$SLOTS,\"K\":$K,\"L\":$L,\"n\":$N,\"concurrency\":$CONC}" > "$out"
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="longview:$2" '$1 == m { print $2 }'; }
cpu_s() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; } # utime + stime, clock ticks of 1/100 s
printf '%-11s %9s %12s %11s %9s %9s\n' balance hit_ratio prompt_tok replica_cpu ttft_p50 ttft_p90
for bal in hash roundrobin; do
  d=$(mktemp -d)
  deploy/haproxy/scaleout.sh -m "$M" --longview "$LV" --port "$PORT" --replicas "$REPLICAS" --slots "$SLOTS" --maxqueue 64 \
    --queue-timeout 600 --balance "$bal" --dir "$d" -- -c 8192 -b 512 >"$d/so.out" 2>"$d/so.err" &
  so=$!
  for _ in $(seq 1 1200); do grep -q "^ready:" "$d/so.err" 2>/dev/null && break; sleep 0.05; done
  grep -q "^ready:" "$d/so.err" || { cat "$d/so.err" >&2; kill $so; exit 1; }
  c0=0; for i in $(seq 0 $((REPLICAS - 1))); do c0=$(awk -v a="$c0" -v b="$(cpu_s "$(cat "$d/r$i.pid")")" 'BEGIN { print a + b }'); done
  "$B" --url "http://127.0.0.1:$PORT" --concurrency "$CONC" -n "$N" --prefix "$K:$L" --lengths "$LENGTHS" --max-tokens "$MAX_TOKENS" \
    --ignore-eos --seed "$SEED" --label "$bal" --no-requests -q --out "$d/lvb.jsonl"
  hits=0 queries=0 c1=0
  for i in $(seq 0 $((REPLICAS - 1))); do
    p=$((PORT + 1 + i))
    hits=$((hits + $(metric $p prefix_cache_hits_total | cut -d. -f1)))
    queries=$((queries + $(metric $p prefix_cache_queries_total | cut -d. -f1)))
    c1=$(awk -v a="$c1" -v b="$(cpu_s "$(cat "$d/r$i.pid")")" 'BEGIN { print a + b }')
  done
  kill -TERM $so; wait $so 2>/dev/null || true
  python3 - "$d/lvb.jsonl" "$bal" "$hits" "$queries" "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" >>"$out" <<'PY'
import json, sys
s = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
hits, queries, cpu = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
print(json.dumps({"type": "scaleout", "balance": sys.argv[2], "prefix_hits": hits, "prompt_tokens": queries,
                  "hit_ratio": hits / queries if queries else 0, "replica_cpu_s": cpu, "summary": s}))
PY
  python3 - "$out" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
s = r["summary"]
t = s.get("ttft") or {}
print("%-11s %9.3f %12d %11.1f %9.3f %9.3f" % (r["balance"], r["hit_ratio"], r["prompt_tokens"], r["replica_cpu_s"], t.get("p50", float("nan")), t.get("p90", float("nan"))))
PY
  rm -rf "$d"
done
echo "results: $out"
