#!/usr/bin/env bash
# A soak of `longview serve` (issue 21): lvbench's open-loop load at RATE requests per second for
# DURATION seconds, with misbehaving clients mixed in by a python side-load: slow clients (a body sent
# a few bytes at a time), clients that disconnect in the middle of a stream or before the answer,
# malformed requests (not JSON, too deep, wrong types, unknown routes, a truncated body). The
# server's resident memory is sampled every second.
# Passes when: the server is alive at the end and exits 0 on SIGTERM; every lvbench request was
# answered 200 or refused with a JSON 429 / 503 (none failed); every malformed request got a 4xx
# with a JSON error; no slot is left busy and no request waits once the load stops
# (requests_processing and requests_deferred back to 0); resident memory after warm-up stays within
# 10% (+ 8 MiB) of its level at the end of the first quarter.
# Usage: bench/serve/soak.sh [MODEL.gguf]   (default: the smollm2-135m q8_0 preset of run.sh)
# Environment: DURATION (600), RATE (2, about twice what the model serves on 2 cores with the
#   default workload), NP (4), CTX (8192), THREADS (2), TOKEN_RANGE (prompt ids, 1000:20000).
# Writes bench/serve/results/soak-<UTC stamp>.jsonl (lvbench's lines, the RSS samples, the
# side-load's counts, the verdict) and prints the verdict.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -j2 build/release/longview build/release/lvbench >/dev/null
LV=$PWD/build/release/longview
B=$PWD/build/release/lvbench
SHARED=${LV_SHARED_DATA:-../shared/data}
DURATION=${DURATION:-600} RATE=${RATE:-2} NP=${NP:-4} CTX=${CTX:-8192} THREADS=${THREADS:-2} TOKEN_RANGE=${TOKEN_RANGE:-1000:20000}
m=${1:-build/bench/models/smollm2-135m-q8_0.gguf}
if [ ! -f "$m" ] && [ $# -eq 0 ]; then
  mkdir -p build/bench/models
  "$LV" gen-model --preset smollm2-135m --vocab "$SHARED/vocab/ggml-vocab-llama-spm.gguf" --type q8_0 --seed 1 -o "$m" 2>/dev/null
fi
mkdir -p bench/serve/results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=bench/serve/results/soak-$stamp.jsonl
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -KILL $pid 2>/dev/null; rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$LV" serve -m "$m" --port "$port" -np "$NP" -c "$CTX" -t "$THREADS" --metrics --timeout 10 --queue-timeout 20 >"$tmp/server.out" 2>"$tmp/server.err" &
pid=$!
url=http://127.0.0.1:$port
for i in $(seq 1 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health" 2>/dev/null)" = 200 ] && break
  kill -0 $pid 2>/dev/null || { cat "$tmp/server.err" >&2; exit 1; }
  sleep 0.1
done
echo "soak: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load $(cut -d' ' -f1-3 /proc/loadavg); $m at $RATE req/s for $DURATION s; writing $out" >&2

# the RSS sampler
( while kill -0 $pid 2>/dev/null; do
    echo "$(date +%s.%N) $(awk '/VmRSS/ { print $2 }' /proc/$pid/status 2>/dev/null)"; sleep 1
  done ) > "$tmp/rss.txt" &
sampler=$!
# the side-load of misbehaving clients
python3 - "$port" "$DURATION" "$TOKEN_RANGE" > "$tmp/side.json" <<'PY' &
import json, random, socket, sys, time
port, duration = int(sys.argv[1]), float(sys.argv[2])
LO, HI = (int(x) for x in sys.argv[3].split(":"))
random.seed(1)
counts = {"slow": 0, "slow_ok": 0, "disconnect_stream": 0, "disconnect_early": 0, "malformed": 0, "malformed_4xx_json": 0, "bad": []}
def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=120)  # as lvbench --timeout: a queued request may wait 20 s and more
    return s
def request(body, path="/v1/completions", ctype="application/json"):
    b = body if isinstance(body, bytes) else body.encode()
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {len(b)}\r\nConnection: close\r\n\r\n").encode() + b
def read_all(s):
    data = b""
    while True:
        try:
            k = s.recv(65536)
        except socket.timeout:
            break
        if not k: break
        data += k
    return data
def status_and_body(data):
    head, _, body = data.partition(b"\r\n\r\n")
    try: st = int(head.split(b" ")[1])
    except Exception: st = 0
    return st, body
ok_body = json.dumps({"prompt": [random.randint(LO, HI - 1) for _ in range(24)], "max_tokens": 8, "ignore_eos": True, "temperature": 0})
malformed = [
    (request("{bad json"), None), (request("[1, 2, 3]"), None), (request("{" * 200 + "}" * 200), None),
    (request('{"prompt": 12}'), None), (request('{"prompt": [1, 2], "max_tokens": "many"}'), None),
    (request('{"prompt": [-5]}'), None), (request('{"messages": 3}', "/v1/chat/completions"), None),
    (request('{"prompt": "x"}', "/v1/nope"), None), (request('{"prompt": [1,2], "temperature": -1}'), None),
    (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"prompt\"", "truncated"),
    (b"GARBAGE\r\n\r\n", "garbage"),
]
t_end = time.time() + duration
while time.time() < t_end:
    kind = random.choice(["slow", "disconnect_stream", "disconnect_early", "malformed", "malformed"])
    try:
        if kind == "slow":  # the body a few bytes at a time
            counts["slow"] += 1
            s = conn(); r = request(ok_body)
            for i in range(0, len(r), 16):
                s.sendall(r[i:i + 16]); time.sleep(0.02)
            st, body = status_and_body(read_all(s)); s.close()
            if st in (200, 429, 503): counts["slow_ok"] += 1
            else: counts["bad"].append(("slow", st, body[:200].decode(errors="replace")))
        elif kind == "disconnect_stream":  # reads the first event, then goes away
            counts["disconnect_stream"] += 1
            s = conn(); s.sendall(request(json.dumps({"prompt": [random.randint(LO, HI - 1) for _ in range(64)], "max_tokens": 400, "ignore_eos": True, "stream": True})))
            s.recv(4096); s.close()
        elif kind == "disconnect_early":  # sends a request and closes before any answer
            counts["disconnect_early"] += 1
            s = conn(); s.sendall(request(json.dumps({"prompt": [random.randint(LO, HI - 1) for _ in range(200)], "max_tokens": 64}))); s.close()
        else:
            counts["malformed"] += 1
            raw, what = random.choice(malformed)
            s = conn(); s.sendall(raw)
            if what == "truncated": s.shutdown(socket.SHUT_WR)
            st, body = status_and_body(read_all(s)); s.close()
            if what in ("truncated", "garbage"):
                if st == 0 or 400 <= st < 500: counts["malformed_4xx_json"] += 1  # closed, or an HTTP-level 4xx
                else: counts["bad"].append((what, st, body[:200].decode(errors="replace")))
            else:
                try: j = json.loads(body.decode())
                except Exception: j = None
                if 400 <= st < 500 and isinstance(j, dict) and isinstance(j.get("error"), dict): counts["malformed_4xx_json"] += 1
                else: counts["bad"].append(("malformed", st, body[:200].decode(errors="replace")))
    except Exception as e:
        counts["bad"].append((kind, "exception", repr(e)))
    time.sleep(random.uniform(0.05, 0.3))
print(json.dumps(counts))
PY
side=$!
"$B" --url "$url" --rate "$RATE" --duration "$DURATION" -n 1000000 --lengths mixed:16:128:384:768:0.1 --max-tokens 16:48 --ignore-eos \
  --token-range "$TOKEN_RANGE" --timeout 120 --label soak --out "$tmp/lvbench.jsonl" 2>"$tmp/lvbench.err" || true
wait $side || true
sleep 2
curl -s "$url/metrics" > "$tmp/metrics.txt"
alive=0; kill -0 $pid 2>/dev/null && alive=1
kill -TERM $pid; code=0; wait $pid || code=$?; pid=
kill $sampler 2>/dev/null || true
cat "$tmp/lvbench.jsonl" >> "$out"
python3 - "$tmp" "$out" "$alive" "$code" "$DURATION" <<'PY'
import json, sys
tmp, out, alive, code, duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
summ = [json.loads(l) for l in open(tmp + "/lvbench.jsonl")][-1]
side = json.load(open(tmp + "/side.json"))
m = {}
for l in open(tmp + "/metrics.txt"):
    if l.startswith("longview:"):
        k, v = l.rsplit(" ", 1); m[k[9:]] = float(v)
rss = [(float(t), int(k)) for t, k in (l.split() for l in open(tmp + "/rss.txt") if len(l.split()) == 2)]
t0 = rss[0][0]
q = duration / 4
warm = [k for t, k in rss if q * 0.75 <= t - t0 <= q]
late = [k for t, k in rss if t - t0 >= duration - q]
rss_ref = max(warm) if warm else rss[0][1]
rss_late = max(late) if late else rss[-1][1]
checks = {
    "alive_at_end": alive == 1,
    "exit_0_on_sigterm": code == 0,
    "lvbench_none_failed": summ["failed"] == 0,
    "malformed_all_4xx_json": side["malformed"] == side["malformed_4xx_json"] and not side["bad"],
    "no_busy_slot_after": m.get("requests_processing", -1) == 0 and m.get("requests_deferred", -1) == 0,
    "rss_flat": rss_late <= rss_ref * 1.10 + 8192,
}
v = {"type": "soak", "duration_s": duration, "lvbench": {k: summ[k] for k in ("requests", "ok", "refused", "failed", "goodput")},
     "side": {k: v for k, v in side.items() if k != "bad"}, "side_bad": side["bad"][:5],
     "cancelled": m.get("requests_cancelled_total"), "rejected_bad_request": m.get('requests_rejected_total{reason="bad_request"}'),
     "rss_kib": {"first": rss[0][1], "end_of_first_quarter": rss_ref, "last_quarter_max": rss_late, "max": max(k for _, k in rss)},
     "rss_samples": [[round(t - t0, 1), k] for t, k in rss], "checks": checks, "pass": all(checks.values())}
with open(out, "a") as f: f.write(json.dumps(v) + "\n")
print(json.dumps({k: v[k] for k in v if k != "rss_samples"}, indent=1))
sys.exit(0 if v["pass"] else 1)
PY
