#!/usr/bin/env bash
# n choices sharing one prefill (issue 21, docs/server.md): one server (prompt cache off), a chat
# request with a ~1800-token prompt asked with n = 1, with n = 4, and as 4 requests of n = 1 sent
# at once (the baseline: what 4 choices cost when each computes the prompt), max_tokens 16,
# ROUNDS rounds. Reported: wall seconds, and the prompt tokens the server computed (the difference
# of /metrics' longview:prompt_tokens_total around it): n = 4 computes the prompt once.
#   bench/serve/nshare.sh [MODEL] [ROUNDS]       from the repository root, after `make`
set -euo pipefail
cd "$(dirname "$0")/../.."
M=${1:-build/bench/models/smollm2-135m-q8_0.gguf}
ROUNDS=${2:-3}
LV=build/release/longview
[ -x "$LV" ] && [ -f "$M" ] || { echo "needs $LV and $M" >&2; exit 1; }
T=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf -- "$T"' EXIT
"$LV" serve -m "$M" --port 0 -np 4 -c 16384 -b 512 -t 2 --metrics --no-cache-prompt >"$T/out" 2>"$T/err" &
pid=$!
for _ in $(seq 1 600); do grep -q "ready in" "$T/err" && break; sleep 0.1; done
A=$(grep -o 'http://127.0.0.1:[0-9]*' "$T/err" | head -1)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$A" "$ROUNDS" <<'PY'
import json, sys, time, urllib.request
A, rounds = sys.argv[1], int(sys.argv[2])
words = ("the quick brown fox jumps over the lazy dog while seven tired engineers "
         "measure prefill time on a shared machine ").split()
prompt = " ".join(words[i % len(words)] for i in range(1500))
def metric():
    for line in urllib.request.urlopen(A + "/metrics").read().decode().split("\n"):
        if line.startswith("longview:prompt_tokens_total "):
            return float(line.split()[1])
def ask(n):
    body = json.dumps({"messages": [{"role": "user", "content": prompt}], "max_tokens": 16, "temperature": 0.7, "seed": 1, "n": n}).encode()
    m0, t0 = metric(), time.time()
    r = json.loads(urllib.request.urlopen(urllib.request.Request(A + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})).read())
    return time.time() - t0, metric() - m0, r["usage"]["prompt_tokens"], len(r["choices"])
def four_alone():
    """the baseline: 4 requests of n = 1 sent at once (each its own slot and prefill)"""
    import threading
    m0, t0 = metric(), time.time()
    th = [threading.Thread(target=ask, args=(1,)) for _ in range(4)]
    for t in th: t.start()
    for t in th: t.join()
    return time.time() - t0, metric() - m0
print("request\twall_s\tprompt_tokens_computed")
for _ in range(rounds):
    for n in (1, 4):
        w, c, p, k = ask(n)
        print("n=%d\t%.2f\t%d" % (n, w, c), flush=True)
    w, c = four_alone()
    print("4 x n=1\t%.2f\t%d" % (w, c), flush=True)
PY
