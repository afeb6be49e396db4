# longview serve: requests that wait in the queue, streaming ones included, get a proper status.
# One slot held by a long stream; then
#  - a stream that waits past --queue-timeout gets HTTP 503 with Retry-After and the OpenAI error
#    JSON (not a 200 and an error event: its headers are held back until it has a slot);
#  - a stream and a non-streamed request that wait longer than --timeout (libmicrohttpd's idle
#    timeout) and then get the slot are answered in full (200, the stream ends with [DONE]);
#  - a queued stream whose client goes away is dropped from the queue;
#  - the counters agree (one queue timeout, the cancellations) and SIGTERM exits 0.
. "$(dirname "$0")/_lib.sh"
command -v python3 >/dev/null || { echo "skip: python3 absent"; exit 0; }
S="$T/slow.gguf"
expect_ok "gen-model" "$LV" gen-model --arch llama --dim 256 --layers 4 --heads 4 --kv-heads 2 --ffn 512 --vocab builtin:bytes --seed 6 -o "$S"

serve_start q -m "$S" -np 1 -c 8192 -b 64 -t 1 --metrics --max-queue 4 --queue-timeout 4 --timeout 2
A=$(cat "$T/q.addr")

python3 - "$A" <<'PY' || fail "queue checks"
import json, socket, sys, threading, time, urllib.request, urllib.error
A = sys.argv[1]
host, port = A[len("http://"):].split(":")
def ok(what): print("ok:", what, flush=True)
def metrics():
    with urllib.request.urlopen(A + "/metrics", timeout=30) as f:
        return {l.split()[0]: float(l.split()[1]) for l in f.read().decode().splitlines() if l and not l.startswith("#")}
def wait_for(cond, what, t=30):
    t0 = time.time()
    while time.time() - t0 < t:
        m = metrics()
        if cond(m): return m
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what + ": " + json.dumps(metrics()))
def raw_post(body):
    s = socket.create_connection((host, int(port)))
    b = json.dumps(body).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(b) + b)
    return s
def post(body, out, key):
    """urllib, as a client library speaks: (status, headers, body, seconds)"""
    t0 = time.time()
    r = urllib.request.Request(A + "/v1/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(r, timeout=120) as f:
            out[key] = (f.status, dict(f.headers), f.read().decode(), time.time() - t0)
    except urllib.error.HTTPError as e:
        out[key] = (e.code, dict(e.headers), e.read().decode(), time.time() - t0)
    except Exception as e:  # a connection closed without an answer
        out[key] = (None, {}, repr(e), time.time() - t0)

# A streams and holds the only slot
a = raw_post({"prompt": "x", "max_tokens": 8000, "temperature": 0, "ignore_eos": True, "stream": True})
assert a.recv(4096).split(b"\r\n")[0].split()[1] == b"200"
wait_for(lambda m: m["longview:num_requests_running"] == 1, "A running")

# B: a stream that waits past --queue-timeout (4 s, longer than --timeout 2 s)
res = {}
tb = threading.Thread(target=post, args=({"prompt": "y", "max_tokens": 4, "stream": True}, res, "b"))
tb.start()
tb.join(60)
st, h, body, dt = res["b"]
assert st == 503, ("B: a queued stream that timed out must get 503", st, body[:300])
assert h.get("Retry-After", "").isdigit(), h
assert h.get("Content-Type", "").startswith("application/json"), h
j = json.loads(body)
assert j["error"]["code"] == 503 and j["error"]["type"] == "unavailable_error" and "queue" in j["error"]["message"], j
assert dt >= 3.5, dt
ok("a stream that waited %.1f s in the queue got 503 + Retry-After: %s and %s" % (dt, h["Retry-After"], body))
m = metrics()
assert m['longview:requests_rejected_total{reason="queue_timeout"}'] == 1, m

# C (a stream) and E (not streamed) wait longer than --timeout, then A's client goes away and they run
tc = threading.Thread(target=post, args=({"prompt": "c", "max_tokens": 4, "stream": True, "stream_options": {"include_usage": True}}, res, "c"))
tc.start()
wait_for(lambda m: m["longview:num_requests_waiting"] == 1, "C waiting")
te = threading.Thread(target=post, args=({"prompt": "e", "max_tokens": 4}, res, "e"))
te.start()
wait_for(lambda m: m["longview:num_requests_waiting"] == 2, "E waiting")
time.sleep(2.6)  # past --timeout 2, before --queue-timeout 4
a.close()
tc.join(60); te.join(60)
st, h, body, dt = res["c"]
assert st == 200 and h.get("Content-Type", "").startswith("text/event-stream"), (st, h, body[:300])
ev = [l[6:] for l in body.split("\n") if l.startswith("data: ")]
assert ev and ev[-1] == "[DONE]", body[-300:]
usage = [json.loads(e)["usage"] for e in ev[:-1] if json.loads(e).get("usage")]
assert usage and usage[0]["completion_tokens"] == 4, body[-400:]
ok("a stream that waited %.1f s (longer than --timeout) got its slot: 200, %d events, [DONE]" % (dt, len(ev)))
st, h, body, dt = res["e"]
assert st == 200 and json.loads(body)["usage"]["completion_tokens"] == 4, (st, body[:300])
ok("a non-streamed request that waited %.1f s got its answer" % dt)

# D: a queued stream whose client goes away is dropped from the queue
f = raw_post({"prompt": "x", "max_tokens": 8000, "temperature": 0, "ignore_eos": True, "stream": True})
assert f.recv(4096).split(b"\r\n")[0].split()[1] == b"200"
wait_for(lambda m: m["longview:num_requests_running"] == 1, "F running")
d = raw_post({"prompt": "d", "max_tokens": 4, "stream": True})
wait_for(lambda m: m["longview:num_requests_waiting"] == 1, "D waiting")
c0 = metrics()["longview:requests_cancelled_total"]
d.close()
wait_for(lambda m: m["longview:num_requests_waiting"] == 0 and m["longview:requests_cancelled_total"] == c0 + 1, "D dropped", t=10)
ok("a queued stream whose client went away was dropped from the queue")
f.close()
m = wait_for(lambda m: m["longview:num_requests_running"] == 0, "F cancelled")
assert m['longview:requests_rejected_total{reason="queue_timeout"}'] == 1, m
ok("no slot busy, nothing waiting, one queue timeout counted")
PY
[ $? -eq 0 ] || fail "queue checks"
serve_stop q "$pid"
