#!/usr/bin/env bash
# longview serve against llama.cpp's llama-server, measured with lvbench (docs/server.md "Measuring"),
# issue 21: the same GGUF, the same slots (-np) and context (-c), the same step budget (-b), 2 threads
# each, one server at a time, every run in this one script.
#   (a) Prepacking: PREPACK_N prompts of mixed lengths (many short, a few long) sent at once: the
#       time until every prompt has its first token, and the median TTFT, for longview (packing on),
#       longview --no-pack (one prompt per step) and llama-server.
#   (b) Goodput under Poisson arrivals at several rates: requests per second meeting TTFT <= 2 s and
#       TPOT <= 100 ms, longview against llama-server at the same rates on the same workload.
# Usage: bench/serve/run.sh [MODEL.gguf ...]    (default: the smollm2-135m and qwen2.5-0.5b presets in
#        q8_0, random weights, made with gen-model into build/bench/models/ when absent)
# Environment: LLAMA_SERVER (default .oracle/build/bin/llama-server, scripts/build-llama-tools.sh; none:
#   longview alone),
#   LV_BENCH_ONLY=prepack|goodput, NP (16), CTX (16384), BATCH (512), THREADS (2), RATES_<preset>
#   (arrival rates per model, e.g. RATES_smollm2="2 4 8"), GOODPUT_N (requests per rate), SEED,
#   TOKEN_RANGE (prompt ids, 1000:20000), PREPACK_N / _LENGTHS / _OUT, GOODPUT_LENGTHS / _OUT (lvbench's
#   -n, --lengths and --max-tokens of each test), ROUNDS (1): the Prepacking runs repeated this many
#   times, the servers alternating (packing, no-pack, llama-server, packing, ...), since a shared
#   machine's load changes from one minute to the next.
# Every lvbench run is followed by a "server_cpu" line: the CPU seconds (user + system, all threads)
# the server used during that run, from /proc/PID/stat, the measure that load on the machine
# disturbs least (docs/server.md, bench/serve/RESULTS.md); the seconds its threads spent waiting
# on the run queue for a core (runqueue_s, from /proc/PID/task/*/schedstat: how much the other
# work on the machine held it back); and the steps it ran (steps, the n_decode_total counter).
# Writes bench/serve/results/serve-<UTC stamp>.jsonl (a "run" line per server run, then lvbench's
# lines labelled model/server/test[/rate]) and prints the tables of bench/serve/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -j2 build/release/longview build/release/lvbench >/dev/null
LV=$PWD/build/release/longview
B=$PWD/build/release/lvbench
LLAMA_SERVER=${LLAMA_SERVER:-$PWD/.oracle/build/bin/llama-server}
[ "$LLAMA_SERVER" = none ] || [ -x "$LLAMA_SERVER" ] || { echo "run.sh: no llama-server at $LLAMA_SERVER (scripts/build-llama-tools.sh builds it; LLAMA_SERVER=none runs longview alone)" >&2; exit 1; }
servers_pre=(longview longview-nopack llama) servers_good=(longview llama)
[ "$LLAMA_SERVER" = none ] && servers_pre=(longview longview-nopack) servers_good=(longview)
SHARED=${LV_SHARED_DATA:-../shared/data}
NP=${NP:-16} CTX=${CTX:-16384} BATCH=${BATCH:-512} THREADS=${THREADS:-2} SEED=${SEED:-1} TOKEN_RANGE=${TOKEN_RANGE:-1000:20000}
ONLY=${LV_BENCH_ONLY:-}
ROUNDS=${ROUNDS:-1}
PREPACK_N=${PREPACK_N:-64} PREPACK_LENGTHS=${PREPACK_LENGTHS:-mixed:8:32:128:256:0.125} PREPACK_OUT=${PREPACK_OUT:-8}
GOODPUT_N=${GOODPUT_N:-20} GOODPUT_LENGTHS=${GOODPUT_LENGTHS:-mixed:16:64:256:512:0.1} GOODPUT_OUT=${GOODPUT_OUT:-16:32}
mkdir -p build/bench/models bench/serve/results
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  for preset in smollm2-135m qwen2.5-0.5b; do
    case $preset in qwen2.5-0.5b) vocab=$SHARED/vocab/ggml-vocab-qwen2.gguf ;; *) vocab=$SHARED/vocab/ggml-vocab-llama-spm.gguf ;; esac
    m=build/bench/models/$preset-q8_0.gguf
    [ -f "$m" ] || "$LV" gen-model --preset "$preset" --vocab "$vocab" --type q8_0 --seed 1 -o "$m" 2>/dev/null
    models+=("$m")
  done
fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=bench/serve/results/serve-$stamp.jsonl
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -KILL $pid 2>/dev/null; rm -rf "$tmp"' EXIT
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
echo "serve bench: $cpu, $(nproc) cores; writing $out" >&2

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# start SERVER MODEL [extra...]: one server (longview, longview-nopack or llama), its URL in $url
start() {
  local kind=$1 m=$2 port i
  port=$(free_port)
  case $kind in
    longview) cmd=("$LV" serve -m "$m" --port "$port" -np "$NP" -c "$CTX" -b "$BATCH" -t "$THREADS" --metrics) ;;
    longview-nopack) cmd=("$LV" serve -m "$m" --port "$port" -np "$NP" -c "$CTX" -b "$BATCH" -t "$THREADS" --metrics --no-pack) ;;
    llama) cmd=("$LLAMA_SERVER" -m "$m" --host 127.0.0.1 --port "$port" -np "$NP" -c "$CTX" -b "$BATCH" -ub "$BATCH" -t "$THREADS" -tb "$THREADS" --metrics) ;;
  esac
  "${cmd[@]}" >"$tmp/server.log" 2>&1 &
  pid=$!
  url=http://127.0.0.1:$port
  for i in $(seq 1 1200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health" 2>/dev/null)" = 200 ] && break
    kill -0 $pid 2>/dev/null || { tail -20 "$tmp/server.log" >&2; echo "run.sh: $kind did not start" >&2; exit 1; }
    sleep 0.1
  done
  python3 -c 'import json,sys; print(json.dumps({"type":"run","label":sys.argv[1],"cpu":sys.argv[2],"loadavg":open("/proc/loadavg").read().split()[:3],"cmd":sys.argv[3:]}))' \
    "$label" "$cpu" "${cmd[@]}" >> "$out"
}
stop() { kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true; pid=; }
cpu_ticks() { awk '{print $14 + $15}' /proc/$pid/stat; } # the server's user + system time, in clock ticks
# its threads' run-queue wait so far, one "tid ns" line each (threads come and go: compare the common ones)
runqueue() { for t in /proc/$pid/task/*; do echo "${t##*/} $(cut -d' ' -f2 "$t/schedstat" 2>/dev/null)"; done; }
steps() { curl -s "$url/metrics" | awk '/^[a-z]+:n_decode_total /{print $2; f=1} END{if (!f) print 0}'; } # its steps so far (--metrics)
bench() { # lvbench args...: two warm-up requests, then the run, its lines labelled $label
  "$B" --url "$url" --concurrency 1 -n 2 --lengths fixed:32 --max-tokens 4 --ignore-eos --out /dev/null 2>/dev/null || true
  local c0 c1 n0 n1
  c0=$(cpu_ticks) n0=$(steps); runqueue > "$tmp/q0"
  "$B" --url "$url" --seed "$SEED" --token-range "$TOKEN_RANGE" --ignore-eos --label "$label" "$@" --out "$tmp/run.jsonl" 2>"$tmp/run.err" || true
  c1=$(cpu_ticks) n1=$(steps); runqueue > "$tmp/q1"
  cat "$tmp/run.jsonl" >> "$out"
  python3 - "$label" $((c1 - c0)) "$(getconf CLK_TCK)" "$tmp/q0" "$tmp/q1" "$n0" "$n1" >> "$out" <<'PY'
import json, sys
a = sys.argv
q = [dict(l.split() for l in open(f) if len(l.split()) == 2) for f in (a[4], a[5])]
wait = sum(int(q[1][t]) - int(q[0][t]) for t in q[0] if t in q[1])
print(json.dumps({"type": "server_cpu", "label": a[1], "cpu_s": int(a[2]) / int(a[3]), "runqueue_s": wait / 1e9,
                  "steps": int(float(a[7]) - float(a[6])), "loadavg": open("/proc/loadavg").read().split()[:3]}))
PY
  echo "  $label: $(grep -o 'requests:.*' "$tmp/run.err" | head -1), server CPU $(( (c1 - c0) / $(getconf CLK_TCK) )) s" >&2
}

for m in "${models[@]}"; do
  name=$(basename "$m" .gguf)
  preset=${name%%-*}
  if [ -z "$ONLY" ] || [ "$ONLY" = prepack ]; then
    for round in $(seq 1 "$ROUNDS"); do
      for server in "${servers_pre[@]}"; do
        label=$name/$server/prepack
        [ "$ROUNDS" -gt 1 ] && label=$label/$round
        start $server "$m"
        bench --rate inf -n "$PREPACK_N" --lengths "$PREPACK_LENGTHS" --max-tokens "$PREPACK_OUT"
        stop
      done
    done
  fi
  if [ -z "$ONLY" ] || [ "$ONLY" = goodput ]; then
    var=RATES_${preset//[.-]/_}
    rates=${!var:-}
    [ -n "$rates" ] || case $preset in smollm2) rates="0.5 1 2" ;; *) rates="0.25 0.5 1" ;; esac
    for server in "${servers_good[@]}"; do
      label=$name/$server/goodput
      start $server "$m"
      for r in $rates; do
        label=$name/$server/goodput/$r
        bench --rate "$r" -n "$GOODPUT_N" --lengths "$GOODPUT_LENGTHS" --max-tokens "$GOODPUT_OUT" --slo-ttft 2 --slo-tpot 0.1
      done
      stop
    done
  fi
done

python3 - "$out" <<'PY'
import json, sys
S, CPU = {}, {}
for l in open(sys.argv[1]):
    j = json.loads(l)
    if j["type"] == "summary": S[j["label"]] = j
    if j["type"] == "server_cpu": CPU[j["label"]] = j
models = sorted({k.split("/")[0] for k in S}, key=lambda m: (not m.startswith("smollm2"), m))
def f(x, d=2): return "-" if x is None else f"{x:.{d}f}"
# a prepack label is model/server/prepack or, with ROUNDS > 1, model/server/prepack/round
rounds = sorted({k.split("/")[3] if k.count("/") == 3 else "" for k in S if "/prepack" in k})
pre = [(m, r, *(f"{m}/{sv}/prepack" + (f"/{r}" if r else "") for sv in ("longview", "longview-nopack", "llama"))) for m in models for r in rounds]
pre = [(m, r, S.get(a), S.get(b), S.get(c), CPU.get(a), CPU.get(b), CPU.get(c)) for m, r, a, b, c in pre]
if any(p[2] for p in pre):
    print("\n(a) Prepacking: all prompts at once; time until every prompt has its first token (s) and median TTFT (s);")
    print("server CPU seconds (all threads) per 1000 tokens served (prompt + completion); seconds its threads waited")
    print("on the run queue for a core held by other work, and its steps\n")
    print("| model | round | longview | longview --no-pack | llama-server | vs --no-pack | vs llama-server | CPU s / 1000 tok: packing, no-pack, llama-server | run-queue s (steps): packing, no-pack, llama-server |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m, r, a, b, c, ca, cb, cc in pre:
        if not a: continue
        cell = lambda s: "-" if not s else f"{s['all_first_token_s']:.2f} / {s['ttft']['p50']:.2f}"
        ratio = lambda s: "-" if not s else f"{s['all_first_token_s'] / a['all_first_token_s']:.2f}x / {s['ttft']['p50'] / a['ttft']['p50']:.2f}x"
        per = lambda s, cs: "-" if not s or cs is None else f"{1000 * cs['cpu_s'] / (s['prompt_tokens'] - s['cached_tokens'] + s['completion_tokens']):.2f}"
        rq = lambda cs: "-" if cs is None or "runqueue_s" not in cs else f"{cs['runqueue_s']:.1f} ({cs['steps']})"
        print(f"| {m} | {r or 1} | {cell(a)} | {cell(b)} | {cell(c)} | {ratio(b)} | {ratio(c)} | {per(a, ca)}, {per(b, cb)}, {per(c, cc)} | {rq(ca)}, {rq(cb)}, {rq(cc)} |")
rows = [k for k in S if "/goodput/" in k]
if rows:
    print("\n(b) Goodput under Poisson arrivals (TTFT <= 2 s, TPOT <= 0.1 s): good requests per second (good / sent), TTFT p50 / p99, TPOT p50\n")
    print("| model | rate (req/s) | longview | llama-server | ratio |")
    print("|---|---|---|---|---|")
    for m in models:
        rates = sorted({float(k.split("/")[3]) for k in rows if k.startswith(m + "/")})
        for r in rates:
            rs = f"{r:g}"
            a, c = S.get(f"{m}/longview/goodput/{rs}"), S.get(f"{m}/llama/goodput/{rs}")
            cell = lambda s: "-" if not s else f"{s['goodput']:.2f} ({s['good']}/{s['requests']}), {f(s['ttft']['p50'])} / {f(s['ttft']['p99'])} s, {f(s['tpot']['p50'], 3)} s"
            ratio = "-" if not (a and c) else ("inf" if c["goodput"] == 0 and a["goodput"] > 0 else "-" if c["goodput"] == 0 else f"{a['goodput'] / c['goodput']:.2f}x")
            print(f"| {m} | {rs} | {cell(a)} | {cell(c)} | {ratio} |")
PY
echo "run.sh: $out" >&2
