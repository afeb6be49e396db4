# Scale-out behind HAProxy (deploy/haproxy/scaleout.sh, docs/server.md "Scale-out"): three
# `longview serve` replicas and HAProxy on loopback. Checks that
#  - requests that start alike always reach the same replica (body-prefix hash), and the set is used;
#  - an SSE stream passes through HAProxy whole, ending in [DONE];
#  - a replica stopped with SIGSTOP is taken out by the health check, only its keys move to the
#    others (consistent hashing), and it takes them back after SIGCONT;
#  - past slots + queue, requests get HAProxy's 503 with Retry-After and the OpenAI error JSON at
#    once, and every request is answered 200 or 503;
#  - bad options are refused, and SIGTERM stops HAProxy and every replica.
. "$(dirname "$0")/_lib.sh"
command -v python3 >/dev/null || { echo "skip: python3 absent"; exit 0; }
if ! command -v haproxy >/dev/null; then
  [ -n "${CI:-}" ] && fail "haproxy is not installed (scripts/install-deps.sh installs it)"
  echo "skip: haproxy absent"; exit 0
fi
SO="$(cd "$(dirname "$0")/../.." && pwd)/deploy/haproxy/scaleout.sh"
S="$T/slow.gguf"
expect_ok "gen-model" "$LV" gen-model --arch llama --dim 256 --layers 4 --heads 4 --kv-heads 2 --ffn 512 --vocab builtin:bytes --seed 6 -o "$S"
expect_ok "--help" bash "$SO" --help
grep -q -- "--balance" "$T/out" || fail "--help does not describe --balance"
expect_fail "no model" bash "$SO" --longview "$LV"
expect_fail "bad --balance" bash "$SO" -m "$S" --balance random
expect_fail "--replicas 0" bash "$SO" -m "$S" --replicas 0
expect_fail "--slots x" bash "$SO" -m "$S" --slots x
expect_ok "--print-config is valid" bash -c "bash '$SO' --print-config > '$T/h.cfg' && haproxy -c -q -f '$T/h.cfg'"

# four free ports in a row (HAProxy, then the replicas)
port=$(python3 - <<'PY'
import random, socket
for _ in range(200):
    b = random.randint(20000, 60000)
    try:
        ss = []
        for p in range(b, b + 4):
            s = socket.socket(); s.bind(("127.0.0.1", p)); ss.append(s)
        for s in ss: s.close()
        print(b); break
    except OSError:
        for s in ss: s.close()
PY
)
[ -n "$port" ] || fail "no free ports"
bash "$SO" -m "$S" --longview "$LV" --port "$port" --replicas 3 --slots 1 --maxqueue 1 --queue-timeout 2 --dir "$T/run" -- -c 4096 -b 64 \
  >"$T/so.out" 2>"$T/so.err" &
so=$!
trap 'kill -TERM $so 2>/dev/null; sleep 1; for f in "$T"/run/*.pid; do kill -KILL "$(cat "$f")" 2>/dev/null; done' EXIT
for i in $(seq 1 1200); do
  grep -q "^ready:" "$T/so.err" 2>/dev/null && break
  kill -0 $so 2>/dev/null || fail "scaleout.sh exited: $(cat "$T/so.err")"
  sleep 0.05
done
grep -q "^ready:" "$T/so.err" || fail "scaleout.sh not ready: $(cat "$T/so.err")"
echo "ok: $(cat "$T/so.err")"

python3 - "http://127.0.0.1:$port" "$T/run" <<'PY' || fail "scale-out checks"
import json, os, signal, sys, threading, time, urllib.request, urllib.error
A, RUN = sys.argv[1], sys.argv[2]
def ok(what): print("ok:", what, flush=True)
def post(body, timeout=60):
    req = urllib.request.Request(A + "/v1/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as f:
            return f.status, dict(f.headers), f.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
def served_by(prefix):
    # the prompt first in the body: HAProxy hashes the body's first 64 bytes
    st, h, b = post({"prompt": prefix + " and then a question", "max_tokens": 2})
    assert st == 200, (st, b)
    return h.get("X-Served-By") or h.get("x-served-by")
def status(name):
    with urllib.request.urlopen(A + "/haproxy-stats;csv", timeout=10) as f:
        rows = [l.split(",") for l in f.read().decode().splitlines()]
    hdr = rows[0]
    i_sv, i_st = hdr.index("svname"), hdr.index("status")
    for r in rows[1:]:
        if len(r) > i_st and r[0] == "replicas" and r[i_sv] == name: return r[i_st]
    raise AssertionError("no replica " + name)
def wait_status(name, want, t=20):
    t0 = time.time()
    while time.time() - t0 < t:
        if status(name).startswith(want): return time.time() - t0
        time.sleep(0.1)
    raise AssertionError("%s still %s after %d s, wanted %s" % (name, status(name), t, want))

# routing: the same start, the same replica
prefixes = ["System prompt number %d: you are a helpful assistant." % i for i in range(8)]
home = {}
for p in prefixes:
    seen = {served_by(p) for _ in range(3)}
    assert len(seen) == 1, (p, seen)
    home[p] = seen.pop()
assert len(set(home.values())) >= 2, home
ok("8 prefixes x 3 requests: each prefix always on one replica; replicas used: %s" % sorted(set(home.values())))

# SSE through HAProxy
req = urllib.request.Request(A + "/v1/completions", data=json.dumps({"prompt": "Hi", "max_tokens": 6, "stream": True}).encode(),
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=60) as f:
    assert f.headers.get("Content-Type", "").startswith("text/event-stream"), f.headers
    lines = [l for l in f.read().decode().split("\n") if l.startswith("data: ")]
assert lines and lines[-1] == "data: [DONE]", lines[-3:]
chunks = [json.loads(l[6:]) for l in lines[:-1]]
assert all(c["object"] == "text_completion" for c in chunks), chunks[:2]
ok("SSE through HAProxy: %d chunks, then [DONE]" % len(chunks))

# a stopped replica: out after the health checks, only its keys move, back after SIGCONT
victim = home[prefixes[0]]
pid = int(open(os.path.join(RUN, victim + ".pid")).read())
os.kill(pid, signal.SIGSTOP)
try:
    dt = wait_status(victim, "DOWN")
    ok("%s stopped: marked DOWN by the health check after %.1f s" % (victim, dt))
    for p in prefixes:
        r = served_by(p)
        if home[p] == victim: assert r != victim, (p, r)
        else: assert r == home[p], ("a key moved that was not the stopped replica's", p, home[p], r)
    ok("only the stopped replica's keys moved (%d of %d prefixes)" % (sum(1 for p in prefixes if home[p] == victim), len(prefixes)))
finally:
    os.kill(pid, signal.SIGCONT)
dt = wait_status(victim, "UP")
assert all(served_by(p) == home[p] for p in prefixes)
ok("%s continued: UP after %.1f s, every prefix back on its replica" % (victim, dt))

# past slots + queue: HAProxy's 503 at once, JSON, Retry-After; everything else 200
res = []
def one(i):
    t0 = time.time()
    st, h, b = post({"prompt": prefixes[1] + " long", "max_tokens": 300, "ignore_eos": True}, timeout=120)
    res.append((st, h, b, time.time() - t0))
th = [threading.Thread(target=one, args=(i,)) for i in range(8)]
for t in th: t.start()
for t in th: t.join()
codes = sorted(r[0] for r in res)
assert set(codes) <= {200, 503}, codes
n200, n503 = codes.count(200), codes.count(503)
assert n200 >= 1 and n503 >= 5, codes
for st, h, b, dt in res:
    if st != 503: continue
    e = json.loads(b)["error"]
    assert e["code"] == 503 and e["type"] == "unavailable_error", e
    assert (h.get("Retry-After") or h.get("retry-after")) == "1", h
quick = sum(1 for r in res if r[0] == 503 and r[3] < 1.5)
assert quick >= 5, [(r[0], round(r[3], 2)) for r in res]
ok("8 requests at once on one replica (1 slot, queue 1): %d x 200, %d x 503 (JSON, Retry-After; %d within 1.5 s)" % (n200, n503, quick))
PY

kill -TERM $so
for i in $(seq 1 200); do kill -0 $so 2>/dev/null || break; sleep 0.1; done
kill -0 $so 2>/dev/null && fail "scaleout.sh did not stop on SIGTERM"
for f in "$T"/run/*.pid; do
  p=$(cat "$f")
  for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && fail "$(basename "$f" .pid) still runs after SIGTERM"
done
echo "ok: SIGTERM stopped HAProxy and the replicas"
