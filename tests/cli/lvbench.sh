# lvbench (bench/serve/lvbench.c), the serving load generator, against `longview serve` on a tiny
# model: closed and open loop, generated workloads (mixed lengths, shared prefixes) and a workload
# file, the chat and native routes, a wrong key and a closed port (failures), a full queue
# (refusals). Its counts (requests, completion, prompt and cached tokens, refusals) must equal what
# the server's /metrics counted.
. "$(dirname "$0")/_lib.sh"
command -v python3 >/dev/null || { echo "skip: python3 absent"; exit 0; }
command -v curl >/dev/null || { echo "skip: curl absent"; exit 0; }
B="$(dirname "$LV")/lvbench"
[ -x "$B" ] || fail "no lvbench next to $LV (make builds it)"
M="$T/m.gguf"
expect_ok "gen-model" "$LV" gen-model --arch llama --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 96 --std 0.08 --vocab builtin:bytes --seed 5 -o "$M"
expect_ok "help" "$B" --help
for o in --rate --burstiness --concurrency -n --duration --timeout --workload --lengths --prefix --slo-ttft --slo-tpot --out; do
  grep -q -- "$o" "$T/out" || fail "--help does not list $o"
done
expect_fail "no arrival mode" "$B" -n 2
expect_fail "both modes" "$B" --rate 1 --concurrency 2
expect_fail "not loopback" "$B" --url http://192.0.2.1:80 --concurrency 1 -n 1
expect_fail "bad --lengths" "$B" --concurrency 1 --lengths mixed:1:2
printf '{"prompt": [1, 2]}\nnot json\n' > "$T/bad.jsonl"
expect_fail "bad workload line" "$B" --concurrency 1 --workload "$T/bad.jsonl"

serve_start main -m "$M" -np 3 -c 4096 -b 64 -t 1 --metrics --api-key k
A=$(cat "$T/main.addr")
metrics() { curl -s -H "Authorization: Bearer k" "$1/metrics" > "$2"; }
metrics "$A" "$T/m0.txt"

# closed loop: mixed lengths with two shared prefixes, exactly 6 tokens each
expect_ok "closed loop" "$B" --url "$A" --api-key k --concurrency 4 -n 16 --lengths mixed:8:32:100:200:0.25 --prefix 2:40 \
  --max-tokens 6 --ignore-eos --seed 3 --label closed --out "$T/closed.jsonl" --dump-workload "$T/w.jsonl"
grep -q '16 requests: 16 ok, 0 refused, 0 failed' "$T/err" || fail "closed loop summary: $(cat "$T/err")"
# open loop, bursty gamma arrivals, the same workload read back from the file
expect_ok "open loop" "$B" --url "$A" --api-key k --rate 40 --burstiness 0.5 --workload "$T/w.jsonl" --slo-ttft 30 --slo-tpot 5 \
  --label open --out "$T/open.jsonl"
# the chat route (delta.content) and llama.cpp's /completion (no [DONE]; "stop": true), 4 each
printf '{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello %s"}],"max_tokens":5,"ignore_eos":true}\n' a b c d > "$T/chat.jsonl"
expect_ok "chat route" "$B" --url "$A" --api-key k --endpoint /v1/chat/completions --concurrency 2 --workload "$T/chat.jsonl" --out "$T/chat.out"
printf '{"prompt":"Hi %s","n_predict":5,"ignore_eos":true}\n' a b c d > "$T/native.jsonl"
expect_ok "native route" "$B" --url "$A" --api-key k --endpoint /completion --rate inf --workload "$T/native.jsonl" --out "$T/native.out"
metrics "$A" "$T/m1.txt"

# failures: a wrong key (401) and a port nobody listens on; exit status 1
expect_fail "wrong key" "$B" --url "$A" --api-key nope --concurrency 1 -n 2 -q --out "$T/auth.jsonl"
python3 - "$T/auth.jsonl" <<'PY' || fail "401s counted as failures"
import json, sys
L = [json.loads(l) for l in open(sys.argv[1])]
s = L[-1]
assert s["failed"] == 2 and s["ok"] == 0 and all(l["status"] == 401 and "HTTP 401" in l["error"] for l in L[:-1]), L
PY
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
expect_fail "nobody listening" "$B" --url "http://127.0.0.1:$port" --concurrency 1 -n 1 -q
metrics "$A" "$T/m2.txt"

# a full queue: one slot, a queue of one, 8 requests at once: the others are refused with 503
# (its --timeout 20 lowers the SSE ping interval to 10 s: libmicrohttpd closes a connection silent
# for --timeout seconds, a stream waiting in the queue included)
serve_start small -m "$M" -np 1 -c 4096 -b 64 -t 1 --metrics --max-queue 1 --timeout 20
grep -q -- '--sse-ping 15 s lowered to 10 s' "$T/small.err" || fail "no note of the lowered ping interval: $(cat "$T/small.err")"
A2=$(cat "$T/small.addr")
"$B" --url "$A2" --rate inf -n 8 --lengths fixed:16 --max-tokens 1500 --ignore-eos --out "$T/full.jsonl" 2>"$T/full.err" \
  || fail "full queue run: $(cat "$T/full.err")"
metrics "$A2" "$T/m3.txt"

python3 - "$T" <<'PY' || fail "lvbench's counts against /metrics"
import json, sys
T = sys.argv[1]
def metrics(name):
    m = {}
    for l in open(f"{T}/{name}"):
        if l.startswith("longview:"):
            k, v = l.rsplit(" ", 1); m[k[9:]] = float(v)
    assert m, name
    return m
def lines(name):
    L = [json.loads(l) for l in open(f"{T}/{name}")]
    assert L[-1]["type"] == "summary" and all(l["type"] == "request" for l in L[:-1]), name
    return L[:-1], L[-1]
m0, m1, m2, m3 = metrics("m0.txt"), metrics("m1.txt"), metrics("m2.txt"), metrics("m3.txt")
d = {k: m1[k] - m0.get(k, 0) for k in m1}
runs = {n: lines(n) for n in ("closed.jsonl", "open.jsonl", "chat.out", "native.out")}
reqs = [r for R, s in runs.values() for r in R]
n = len(reqs)
assert n == 16 + 16 + 4 + 4, n
assert all(r["ok"] and r["status"] == 200 and r["error"] is None for r in reqs)
assert d["requests_finished_total"] == n, (d["requests_finished_total"], n)
assert d["time_to_first_token_seconds_count"] == n and d["e2e_request_latency_seconds_count"] == n
comp = sum(r["completion_tokens"] for r in reqs)
assert d["tokens_predicted_total"] == comp, (d["tokens_predicted_total"], comp)
assert all(r["completion_tokens"] == 6 for R, _ in (runs["closed.jsonl"], runs["open.jsonl"]) for r in R)
assert all(r["completion_tokens"] == 5 for R, _ in (runs["chat.out"], runs["native.out"]) for r in R)
prompt = sum(r["prompt_tokens"] for r in reqs)
assert d["prompt_tokens_total"] + d["prefix_cache_hits_total"] == prompt, (d["prompt_tokens_total"], d["prefix_cache_hits_total"], prompt)
cached = sum(r["cached_tokens"] for R, _ in (runs["closed.jsonl"], runs["open.jsonl"], runs["chat.out"]) for r in R)
assert cached > 0, "the shared prefixes were never reused"
# generated prompts: the ids lvbench sent are what the server counted
for R, _ in (runs["closed.jsonl"], runs["open.jsonl"]):
    assert all(r["n_prompt"] == r["prompt_tokens"] for r in R)
    assert all(len(r["itl"]) == r["n_chunks"] - 1 and r["ttft"] > 0 and r["e2e"] >= r["ttft"] for r in R)
for name, (R, s) in runs.items():
    assert s["ok"] == len(R) and s["failed"] == 0 and s["refused"] == 0, (name, s)
    assert s["completion_tokens"] == sum(r["completion_tokens"] for r in R), name
    assert s["ttft"]["n"] == len(R) and s["ttft"]["p50"] <= s["ttft"]["p90"] <= s["ttft"]["p99"] <= s["ttft"]["max"], s
s = runs["open.jsonl"][1]
assert s["mode"] == "open" and s["rate"] == 40 and s["good"] == 16 and s["goodput"] > 0, s
assert runs["closed.jsonl"][1]["mode"] == "closed" and runs["native.out"][1]["mode"] == "burst"
# the failed runs reached the server only as 401s
assert m2["requests_rejected_total{reason=\"auth\"}"] - m1["requests_rejected_total{reason=\"auth\"}"] == 2
assert m2["requests_finished_total"] == m1["requests_finished_total"]
# the full queue
R, s = lines("full.jsonl")
assert s["ok"] + s["refused"] == 8 and s["failed"] == 0 and s["refused"] >= 1, s
assert all(r["status"] == 503 for r in R if r["refused"]) and all(r["completion_tokens"] == 1500 for r in R if r["ok"])
assert m3["requests_rejected_total{reason=\"queue_full\"}"] == s["refused"], (m3, s)
assert m3["requests_finished_total"] == s["ok"]
print("ok: %d requests; completion %d, prompt %d tokens (%d from the prefix cache) as /metrics counts; %d of 8 refused with 503 as counted"
      % (n, comp, prompt, d["prefix_cache_hits_total"], s["refused"]))
PY
echo "ok: lvbench"
