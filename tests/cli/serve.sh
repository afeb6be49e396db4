# longview serve end to end: every endpoint's shape, SSE streams ending in [DONE], errors in the
# OpenAI shape with their status codes, greedy output equal to `longview run`'s, concurrent
# requests each equal to the same request alone, a full queue refused with 503 + Retry-After,
# a client that goes away frees its slot, SIGTERM drains a running stream and exits 0.
# The HTTP checks are a python3 script (urllib, as a client library would speak); a few use curl.
. "$(dirname "$0")/_lib.sh"
command -v python3 >/dev/null || { echo "skip: python3 absent"; exit 0; }
M="$T/m.gguf"; S="$T/slow.gguf"
expect_ok "gen-model" "$LV" gen-model --arch llama --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 96 --std 0.08 --vocab builtin:bytes --seed 5 -o "$M"
expect_ok "gen-model (slower)" "$LV" gen-model --arch llama --dim 256 --layers 4 --heads 4 --kv-heads 2 --ffn 512 --vocab builtin:bytes --seed 6 -o "$S"
expect_ok "help" "$LV" serve --help
for o in --host --port -np --ctx-size --batch --threads --api-key --api-key-file --metrics --alias --heads --lserve --no-pack; do
  grep -q -- "$o" "$T/out" || fail "--help does not list $o"
done
expect_fail "no model" "$LV" serve
expect_fail "-b not above -np" "$LV" serve -m "$M" -np 8 -b 8
expect_fail "both key options" "$LV" serve -m "$M" --api-key a --api-key-file "$T/k"
expect_fail "missing model file" "$LV" serve -m "$T/nope.gguf" --port 0

# the references: longview run, greedy
expect_ok "run greedy" "$LV" run -m "$M" -p "Hello world" -n 24 --temp 0 -c 2048
cp "$T/out" "$T/run.txt"
expect_ok "run greedy ids" "$LV" run -m "$M" -p "Hello world" -n 24 --temp 0 -c 2048 --ids
cp "$T/out" "$T/run.ids"

serve_start main -m "$M" -np 3 -c 2048 -b 64 -t 1 --metrics --api-key secret --alias tiny --max-body 65536
A=$(cat "$T/main.addr")
echo "main server at $A"
if command -v curl >/dev/null; then
  [ "$(curl -s "$A/health")" = '{"status":"ok"}' ] || fail "curl /health"
  code=$(curl -s -o "$T/c.json" -w '%{http_code}' -H 'Authorization: Bearer secret' "$A/v1/completions" -d '{bad json')
  [ "$code" = 400 ] && grep -q '"type":"invalid_request_error"' "$T/c.json" || fail "curl malformed JSON: $code $(cat "$T/c.json")"
  curl -s -N -H 'Authorization: Bearer secret' "$A/v1/completions" -d '{"prompt":"Hi","max_tokens":4,"stream":true}' > "$T/c.sse"
  [ "$(grep -c '^data: ' "$T/c.sse")" -ge 2 ] && tail -n 2 "$T/c.sse" | grep -q '^data: \[DONE\]$' || fail "curl stream: $(cat "$T/c.sse")"
  echo "ok: curl /health, a malformed body, a stream"
fi
python3 - "$A" "$T" <<'PY' || fail "HTTP checks (main server)"
import json, sys, threading, urllib.request, urllib.error
A, T = sys.argv[1], sys.argv[2]
KEY = {"Authorization": "Bearer secret"}
def req(path, body=None, headers=KEY, raw=None, method=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    r = urllib.request.Request(A + path, data=data, headers=dict(headers, **({"Content-Type": "application/json"} if data is not None else {})), method=method)
    try:
        with urllib.request.urlopen(r, timeout=120) as f:
            return f.status, f.read(), dict(f.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)
def js(path, body=None, **kw):
    st, b, h = req(path, body, **kw)
    return st, json.loads(b), h
def sse(path, body):
    """data lines as openai-python reads them: stop at [DONE]; returns (events, saw_done)"""
    st, b, h = req(path, body)
    assert st == 200, (st, b)
    assert h.get("Content-Type", "").startswith("text/event-stream"), h
    events, done = [], False
    for line in b.decode().split("\n"):
        if line.startswith("data: "):
            if line[6:].startswith("[DONE]"):
                done = True; break
            events.append(json.loads(line[6:]))
        else:
            assert line == "" or line.startswith(":"), repr(line)
    return events, done
def ok(what): print("ok:", what, flush=True)
def err_shape(j, code, typ):
    e = j.get("error")
    assert isinstance(e, dict) and e.get("code") == code and e.get("type") == typ and isinstance(e.get("message"), str) and e["message"], j

# health, auth, models
st, j, _ = js("/health", headers={})
assert st == 200 and j == {"status": "ok"}, (st, j); ok("/health without a key")
st, j, _ = js("/v1/models", headers={})
assert st == 401; err_shape(j, 401, "authentication_error"); ok("no key: 401")
st, j, _ = js("/v1/models", headers={"Authorization": "Bearer wrong"})
assert st == 401; ok("wrong key: 401")
st, j, _ = js("/v1/models", headers={"X-Api-Key": "secret"})
assert st == 200 and j["object"] == "list" and j["data"][0]["id"] == "tiny" and j["data"][0]["object"] == "model" and j["data"][0]["meta"]["n_vocab"] == 259, j
ok("/v1/models")

# greedy completions equal longview run's
run_text = open(T + "/run.txt", "rb").read().decode()
assert run_text.endswith("\n"); run_text = run_text[:-1]
run_ids = [int(x) for x in open(T + "/run.ids").read().split()]
st, j, _ = js("/v1/completions", {"model": "x", "prompt": "Hello world", "max_tokens": 24, "temperature": 0})
assert st == 200 and j["object"] == "text_completion" and j["model"] == "tiny" and j["id"].startswith("cmpl-"), j
c = j["choices"][0]
assert c["index"] == 0 and c["finish_reason"] in ("length", "stop"), c
assert c["text"] == run_text, (c["text"], run_text)
u = j["usage"]
assert u["completion_tokens"] == len(run_ids) and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and "cached_tokens" in u["prompt_tokens_details"], u
ok("/v1/completions greedy == longview run (%d tokens)" % len(run_ids))
st, j, _ = js("/completion", {"prompt": "Hello world", "n_predict": 24, "temperature": 0, "return_tokens": True})
assert st == 200 and j["tokens"] == run_ids and j["content"] == run_text and j["stop"] is True and j["tokens_evaluated"] > 0, j
ok("/completion greedy ids == longview run --ids")
# the same prompt again reuses the slot's cached prefix and gives the same answer
st, j2, _ = js("/v1/completions", {"prompt": "Hello world", "max_tokens": 24, "temperature": 0})
assert j2["choices"][0]["text"] == run_text and j2["usage"]["prompt_tokens_details"]["cached_tokens"] > 0, j2["usage"]
ok("repeated prompt: %d cached tokens, same text" % j2["usage"]["prompt_tokens_details"]["cached_tokens"])

# streams
ev, done = sse("/v1/completions", {"prompt": "Hello world", "max_tokens": 24, "temperature": 0, "stream": True})
assert done and all(e["object"] == "text_completion" for e in ev), ev
assert "".join(e["choices"][0]["text"] for e in ev if e["choices"]) == run_text
assert ev[-1]["choices"][0]["finish_reason"] in ("length", "stop") and all(e["choices"][0]["finish_reason"] is None for e in ev[:-1])
ok("/v1/completions stream: %d events, the same text, [DONE]" % len(ev))
msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}]
st, j, _ = js("/v1/chat/completions", {"messages": msgs, "max_completion_tokens": 16, "temperature": 0, "seed": 3})
assert st == 200 and j["object"] == "chat.completion" and j["id"].startswith("chatcmpl-"), j
m = j["choices"][0]["message"]
assert m["role"] == "assistant" and isinstance(m["content"], str) and j["usage"]["completion_tokens"] <= 16, j
ok("/v1/chat/completions")
ev, done = sse("/v1/chat/completions", {"messages": msgs, "max_tokens": 16, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}})
assert done and ev[0]["choices"][0]["delta"]["role"] == "assistant" and all(e["object"] == "chat.completion.chunk" for e in ev)
assert ev[-1]["choices"] == [] and ev[-1]["usage"]["completion_tokens"] == j["usage"]["completion_tokens"], ev[-1]
assert ev[-2]["choices"][0]["finish_reason"] == j["choices"][0]["finish_reason"] and ev[-2]["choices"][0]["delta"] == {}
assert "".join(e["choices"][0]["delta"].get("content") or "" for e in ev if e["choices"]) == m["content"]
ok("/v1/chat/completions stream with include_usage: role first, usage last, [DONE], the same text")
st, b, h = req("/completion", {"prompt": "Hello world", "n_predict": 5, "stream": True, "temperature": 0})
lines = [l for l in b.decode().split("\n") if l.startswith("data: ")]
assert st == 200 and "[DONE]" not in b.decode() and json.loads(lines[-1][6:])["stop"] is True, b
ok("/completion stream: ends with stop:true, no [DONE]")
# stop strings
cut = run_text[len(run_text) // 2:len(run_text) // 2 + 2]
if cut.strip("\x00"):
    st, j, _ = js("/v1/completions", {"prompt": "Hello world", "max_tokens": 24, "temperature": 0, "stop": ["\x01zz", cut]})
    assert j["choices"][0]["text"] == run_text[:run_text.index(cut)] and j["choices"][0]["finish_reason"] == "stop", (j, cut)
    ok("stop string %r cuts the text" % cut)
# t_max_predict_ms: generation stops on time, finish_reason length
st, j, _ = js("/v1/completions", {"prompt": "Hello", "max_tokens": 1500, "temperature": 0, "ignore_eos": True, "t_max_predict_ms": 1})
assert st == 200 and j["choices"][0]["finish_reason"] == "length" and 2 <= j["usage"]["completion_tokens"] < 1500, j["usage"]
ok("t_max_predict_ms 1: stopped after %d tokens" % j["usage"]["completion_tokens"])
# seeded sampling is repeatable
a = js("/v1/completions", {"prompt": "abc", "max_tokens": 12, "temperature": 1.0, "seed": 77})[1]["choices"][0]["text"]
b2 = js("/v1/completions", {"prompt": "abc", "max_tokens": 12, "temperature": 1.0, "seed": 77})[1]["choices"][0]["text"]
assert a == b2; ok("same seed, same text")

# tokenize / detokenize
st, j, _ = js("/tokenize", {"content": "Hi!"})
toks = j["tokens"]; assert st == 200 and all(isinstance(t, int) for t in toks), j
st, j, _ = js("/tokenize", {"content": "Hi!", "with_pieces": True})
assert [p["id"] for p in j["tokens"]] == toks, j
st, j, _ = js("/detokenize", {"tokens": toks})
assert st == 200 and j["content"].endswith("Hi!"), j
st, j, _ = js("/detokenize", {"tokens": [1, 100000]})
assert st == 400; err_shape(j, 400, "invalid_request_error")
ok("/tokenize, /detokenize")

# errors
for path in ("/v1/completions", "/v1/chat/completions", "/completion", "/tokenize"):
    st, j, _ = js(path, raw=b'{"prompt": "x",')
    assert st == 400; err_shape(j, 400, "invalid_request_error")
st, j, _ = js("/v1/completions", raw=b'[1,2]'); assert st == 400; err_shape(j, 400, "invalid_request_error")
st, j, _ = js("/v1/completions", raw=b'[' * 100 + b']' * 100); assert st == 400 and "deeper" in j["error"]["message"], j
st, j, _ = js("/v1/completions", {"prompt": list(range(3, 250)) * 10, "max_tokens": 4})
assert st == 400; err_shape(j, 400, "exceed_context_size_error"); assert j["error"]["n_ctx"] == 2048 and j["error"]["n_prompt_tokens"] == 2470, j
st, j, _ = js("/v1/completions", {"prompt": "hi", "max_tokens": 5000}); assert st == 400; err_shape(j, 400, "exceed_context_size_error")
st, j, _ = js("/v1/completions", {"prompt": "hi", "temperature": "hot"}); assert st == 400 and "temperature" in j["error"]["message"], j
st, j, _ = js("/v1/completions", {"prompt": "hi", "top_p": 2}); assert st == 400, j
st, j, _ = js("/v1/completions", {"max_tokens": 2}); assert st == 400, j
st, j, _ = js("/v1/chat/completions", {"messages": []}); assert st == 400; err_shape(j, 400, "invalid_request_error")
st, j, _ = js("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}); assert st == 400, j
st, j, _ = js("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}); assert st == 501, j
st, j, _ = js("/v1/completions", raw=b'{"prompt":"' + b'a' * 70000 + b'"}'); assert st == 413; err_shape(j, 413, "invalid_request_error")
st, j, _ = js("/nope"); assert st == 404; err_shape(j, 404, "not_found_error")
st, j, _ = js("/v1/completions", method="GET"); assert st == 405, j
ok("errors: malformed JSON, not an object, too deep, too long for the context, bad fields, unsupported, too big, 404, 405")

# concurrent requests: each answer equals the same request alone
prompts = ["a" * n for n in (1, 5, 40, 3, 90, 12, 60, 7)]
alone = [js("/v1/completions", {"prompt": p, "max_tokens": 16, "temperature": 0})[1]["choices"][0]["text"] for p in prompts]
res = [None] * len(prompts)
def one(i):
    st, j, _ = js("/v1/completions", {"prompt": prompts[i], "max_tokens": 16, "temperature": 0})
    res[i] = (st, j["choices"][0]["text"] if st == 200 else j)
th = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
[t.start() for t in th]; [t.join() for t in th]
for i, (st, text) in enumerate(res):
    assert st == 200 and text == alone[i], (i, st, text, alone[i])
ok("%d concurrent requests on 3 slots: all 200, each equal to its answer alone" % len(prompts))

# a burst of mixed traffic: good requests, streams, malformed bodies, clients that go away mid-body
# or mid-answer; afterwards the server answers and holds no slot
import random, socket
rnd = random.Random(5)
host, port = A[len("http://"):].split(":")
def chaos(i):
    k = i % 5
    if k == 0:  # answered, or refused by the full queue (12 waiting at most)
        st, j, h = js("/v1/completions", {"prompt": "z" * rnd.randint(1, 200), "max_tokens": rnd.randint(0, 30), "temperature": 0.5})
        assert st == 200 or (st == 503 and h.get("Retry-After") and j["error"]["type"] == "unavailable_error"), (st, j)
    elif k == 1:
        st, b, h = req("/v1/chat/completions", {"messages": [{"role": "user", "content": "q" * rnd.randint(1, 100)}], "max_tokens": 20, "stream": True})
        assert (st == 200 and b.endswith(b"data: [DONE]\n\n")) or st == 503, (st, b[-200:])
    elif k == 2:
        st, b, _ = req("/v1/completions", raw=bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 300))))
        assert st in (400, 413), st
    else:
        s = socket.create_connection((host, int(port)))
        body = json.dumps({"prompt": "w" * 50, "max_tokens": 400, "stream": k == 3}).encode()
        head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        s.sendall(head + (body if k == 3 else body[:len(body) // 2]))
        if k == 3: s.recv(100)
        s.close()
errors = []
def chaos_safe(i):
    try: chaos(i)
    except Exception as e: errors.append((i, repr(e)))
th = [threading.Thread(target=chaos_safe, args=(i,)) for i in range(40)]
[t.start() for t in th]; [t.join() for t in th]
assert not errors, errors
import time
for _ in range(200):
    st, b, h = req("/metrics")
    vals = {l.split()[0]: float(l.split()[1]) for l in b.decode().splitlines() if l and not l.startswith("#")}
    if vals["longview:num_requests_running"] == 0 and vals["longview:num_requests_waiting"] == 0: break
    time.sleep(0.05)
assert vals["longview:num_requests_running"] == 0 and vals["longview:num_requests_waiting"] == 0, vals
st, j, _ = js("/v1/completions", {"prompt": "Hello world", "max_tokens": 24, "temperature": 0})
assert st == 200 and j["choices"][0]["text"] == run_text
ok("40 mixed requests (good, streamed, garbage, cut off mid-body and mid-answer): no slot held, answers unchanged")

# requests with fields of every wrong type: each answered 200, 400 or 501, none crashes the server
base = {"model": "m", "prompt": "hi", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "temperature": 0.5, "top_p": 0.9,
        "top_k": 5, "min_p": 0.1, "seed": 1, "stop": ["x"], "stream": False, "stream_options": {"include_usage": True}, "n": 1,
        "logprobs": False, "ignore_eos": False, "n_predict": 3, "max_completion_tokens": 3, "return_tokens": True}
odd = [None, True, False, 0, -1, 1.5, -1e300, 2**62, -2**63, "", "x" * 3000, "\u0000", [], [None], [[[]]], {}, {"a": 1}, [1, -5], ["a", 2],
       [{"type": "image_url"}], [{"type": "text"}], [{"role": 3}], [{"role": "user", "content": 5}], [{"role": "user", "content": [{"type": "text", "text": 1}]}]]
codes = {}
for i in range(400):
    body = dict(base)
    for k in rnd.sample(sorted(base), rnd.randint(1, 3)):
        body[k] = rnd.choice(odd)
    path = rnd.choice(["/v1/completions", "/v1/chat/completions", "/completion", "/tokenize", "/detokenize"])
    st, b, h = req(path, body)
    codes[st] = codes.get(st, 0) + 1
    assert st in (200, 400, 501), (path, body, st, b[:300])
    json.loads(b) if not b.startswith(b"data: ") else None
st, j, _ = js("/health", headers={})
assert st == 200, st
ok("400 requests with odd field values: %s" % sorted(codes.items()))

# metrics
st, b, h = req("/metrics")
text = b.decode()
assert st == 200 and h["Content-Type"].startswith("text/plain"), h
for name in ("prompt_tokens_total", "tokens_predicted_total", "num_requests_running", "num_requests_waiting", "kv_cache_usage_perc",
             "time_to_first_token_seconds_bucket", "inter_token_latency_seconds_count", "e2e_request_latency_seconds_sum",
             "request_queue_time_seconds_count", "prepack_prompts_per_step_bucket", "requests_rejected_total{reason=\"too_long\"}",
             "prefix_cache_hits_total", "n_decode_total"):
    assert ("longview:" + name) in text, name
vals = {l.split()[0]: float(l.split()[1]) for l in text.splitlines() if l and not l.startswith("#")}
assert vals["longview:num_requests_running"] == 0 and vals["longview:requests_rejected_total{reason=\"too_long\"}"] >= 2, vals
assert vals["longview:prepack_prompts_per_step_sum"] > vals["longview:prepack_prompts_per_step_count"], "no step packed two prompts"
ok("/metrics: counters and histograms; a step packed several prompts")
PY
# logprobs, n choices, penalties (SERVING.md 1.4): shapes, values, validation
python3 - "$A" "$T" <<'PY' || fail "logprobs / n / penalties (main server)"
import json, math, sys, urllib.request, urllib.error
A, T = sys.argv[1], sys.argv[2]
KEY = {"Authorization": "Bearer secret", "Content-Type": "application/json"}
def req(path, body):
    r = urllib.request.Request(A + path, data=json.dumps(body).encode(), headers=KEY)
    try:
        with urllib.request.urlopen(r, timeout=120) as f: return f.status, f.read()
    except urllib.error.HTTPError as e: return e.code, e.read()
def js(path, body):
    st, b = req(path, body); return st, json.loads(b)
def sse(path, body):
    st, b = req(path, body)
    assert st == 200, (st, b)
    ev = []
    for line in b.decode().split("\n"):
        if line.startswith("data: "):
            if line[6:].startswith("[DONE]"): return ev
            ev.append(json.loads(line[6:]))
    raise AssertionError("no [DONE]: " + b.decode()[-300:])
def ok(what): print("ok:", what, flush=True)
run_ids = [int(x) for x in open(T + "/run.ids").read().split()]
def check_entry(e, k, greedy=True, with_id=False):
    """one OpenAI chat logprobs entry (or llama.cpp's completion_probabilities one)"""
    assert isinstance(e["token"], str) and isinstance(e["bytes"], list) and all(0 <= b < 256 for b in e["bytes"]), e
    assert e["logprob"] <= 0 and len(e["top_logprobs"]) == k, e
    tl = [t["logprob"] for t in e["top_logprobs"]]
    assert all(t <= 0 for t in tl) and tl == sorted(tl, reverse=True), tl
    assert sum(math.exp(t) for t in tl) <= 1 + 1e-6, tl
    for t in e["top_logprobs"]:
        assert isinstance(t["token"], str) and isinstance(t["bytes"], list) and (("id" in t) == with_id), t
    if greedy and k:  # the greedy token is the most probable one
        assert abs(e["logprob"] - max(tl)) < 1e-6 and e["bytes"] == e["top_logprobs"][0]["bytes"], e

# chat, not streamed: choices[].logprobs.content[] with token, logprob, bytes, top_logprobs
chat = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 12, "temperature": 0, "logprobs": True, "top_logprobs": 5}
st, j = js("/v1/chat/completions", chat)
assert st == 200, j
c = j["choices"][0]
content = c["logprobs"]["content"]
assert len(content) == j["usage"]["completion_tokens"] > 0, (len(content), j["usage"])
for e in content: check_entry(e, 5)
raw = b"".join(bytes(e["bytes"]) for e in content)
try: assert raw.decode() == c["message"]["content"] or c["finish_reason"] == "stop", (raw, c)
except UnicodeDecodeError: pass  # random bytes of a random model: the text went through U+FFFD
ok("chat logprobs: %d entries, greedy token = max of top_logprobs, all <= 0, sum exp(top) <= 1" % len(content))
# without logprobs: null; top_logprobs 0: the chosen token's only
st, j0 = js("/v1/chat/completions", dict(chat, logprobs=False, top_logprobs=None))
assert st == 200 and j0["choices"][0]["logprobs"] is None and j0["choices"][0]["message"] == c["message"], j0
st, j1 = js("/v1/chat/completions", dict(chat, top_logprobs=0))
assert st == 200 and [e["logprob"] for e in j1["choices"][0]["logprobs"]["content"]] == [e["logprob"] for e in content], j1
assert all(e["top_logprobs"] == [] for e in j1["choices"][0]["logprobs"]["content"])
ok("chat: no logprobs -> null, top_logprobs 0 -> the chosen tokens' only, same values")
# streamed: the entries arrive in the chunks, the same as the answer's
ev = sse("/v1/chat/completions", dict(chat, stream=True))
streamed = [e for x in ev if x["choices"] and x["choices"][0].get("logprobs") for e in x["choices"][0]["logprobs"]["content"]]
assert streamed == content, (streamed, content)
ok("chat stream: %d logprobs entries over %d chunks, equal to the non-streamed ones" % (len(streamed), len(ev)))

# legacy completions: logprobs N -> tokens, token_logprobs, top_logprobs, text_offset
cmpl = {"prompt": "Hello world", "max_tokens": 24, "temperature": 0, "logprobs": 3}
st, j = js("/v1/completions", cmpl)
assert st == 200, j
lp = j["choices"][0]["logprobs"]
n = j["usage"]["completion_tokens"]
assert n == len(run_ids) and len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"]) == n, lp
assert lp["text_offset"][0] == 0 and lp["text_offset"] == sorted(lp["text_offset"]), lp["text_offset"]
for tok, l, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
    assert isinstance(tok, str) and l <= 0 and 1 <= len(top) <= 3 and all(v <= 0 for v in top.values()), (tok, l, top)
    assert abs(l - max(top.values())) < 1e-6 and sum(math.exp(v) for v in top.values()) <= 1 + 1e-6, (l, top)
ev = sse("/v1/completions", dict(cmpl, stream=True))
st_toks = [t for x in ev if x["choices"] and x["choices"][0]["logprobs"] for t in x["choices"][0]["logprobs"]["tokens"]]
st_lps = [t for x in ev if x["choices"] and x["choices"][0]["logprobs"] for t in x["choices"][0]["logprobs"]["token_logprobs"]]
st_off = [t for x in ev if x["choices"] and x["choices"][0]["logprobs"] for t in x["choices"][0]["logprobs"]["text_offset"]]
assert st_toks == lp["tokens"] and st_lps == lp["token_logprobs"] and st_off == lp["text_offset"], (st_toks, lp["tokens"])
ok("legacy logprobs: %d tokens, token_logprobs = max of top_logprobs, text_offset from 0; the stream carries the same" % n)
# llama.cpp's /completion n_probs: completion_probabilities, ids of longview run's greedy tokens
st, j = js("/completion", {"prompt": "Hello world", "n_predict": 24, "temperature": 0, "n_probs": 4})
cp = j["completion_probabilities"]
assert st == 200 and [e["id"] for e in cp] == run_ids, (cp, run_ids)
for e in cp:
    check_entry(e, 4, with_id=True)
    assert e["top_logprobs"][0]["id"] == e["id"], e
st, b = req("/completion", {"prompt": "Hello world", "n_predict": 24, "temperature": 0, "n_probs": 4, "stream": True})
evs = [json.loads(l[6:]) for l in b.decode().split("\n") if l.startswith("data: ")]
assert st == 200 and [e for x in evs for e in x.get("completion_probabilities", [])] == cp, evs
ok("/completion n_probs: completion_probabilities of the greedy ids == longview run's, the same streamed")

# n choices: choice i draws with seed + i; the prompt counted once, the completions summed
body = {"prompt": "abc", "max_tokens": 8, "temperature": 1.0, "seed": 41, "ignore_eos": True}
st, j = js("/v1/completions", dict(body, n=3))
assert st == 200 and [c["index"] for c in j["choices"]] == [0, 1, 2], j
one = [js("/v1/completions", dict(body, seed=41 + i))[1] for i in range(3)]
assert [c["text"] for c in j["choices"]] == [o["choices"][0]["text"] for o in one], (j["choices"], one)
u = j["usage"]
assert u["prompt_tokens"] == one[0]["usage"]["prompt_tokens"] and u["completion_tokens"] == 24 and u["total_tokens"] == u["prompt_tokens"] + 24, u
assert len(set(c["text"] for c in j["choices"])) > 1, j["choices"]
ok("n=3 with a seed: 3 choices, choice i == n=1 with seed + i, usage %s" % u)
st, jl = js("/v1/completions", dict(body, n=2, logprobs=1, temperature=0))
assert st == 200 and all(len(c["logprobs"]["tokens"]) == 8 for c in jl["choices"]) and jl["usage"]["completion_tokens"] == 16, jl
ok("n=2 with logprobs: each choice its own logprobs")
cbody = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "temperature": 1.0, "seed": 9, "ignore_eos": True, "n": 3}
st, jc = js("/v1/chat/completions", cbody)
assert st == 200 and [c["index"] for c in jc["choices"]] == [0, 1, 2] and jc["usage"]["completion_tokens"] == 18, jc
ev = sse("/v1/chat/completions", dict(cbody, stream=True, stream_options={"include_usage": True}))
texts, roles, fins = ["", "", ""], [0, 0, 0], [None] * 3
for x in ev[:-1]:
    assert len(x["choices"]) == 1, x
    ch = x["choices"][0]
    i = ch["index"]
    roles[i] += ch["delta"].get("role") == "assistant"
    texts[i] += ch["delta"].get("content") or ""
    if ch["finish_reason"]: fins[i] = ch["finish_reason"]
U = lambda u: (u["prompt_tokens"], u["completion_tokens"], u["total_tokens"])  # (cached_tokens: the second time, the prompt is cached)
assert ev[-1]["choices"] == [] and U(ev[-1]["usage"]) == U(jc["usage"]), (ev[-1], jc["usage"])
assert roles == [1, 1, 1] and fins == [c["finish_reason"] for c in jc["choices"]], (roles, fins)
assert texts == [c["message"]["content"] for c in jc["choices"]], (texts, jc["choices"])
ok("chat n=3 stream: chunks carry index 0-2, a role and a finish each, the non-streamed texts, usage last")

# penalties: repeat_last_n 0 turns them off; on, they change a repetitive greedy answer
plain = js("/v1/completions", {"prompt": "Hello world", "max_tokens": 24, "temperature": 0})[1]["choices"][0]["text"]
off = js("/v1/completions", {"prompt": "Hello world", "max_tokens": 24, "temperature": 0, "frequency_penalty": 2, "presence_penalty": 2,
                             "repeat_penalty": 1.5, "repeat_last_n": 0})[1]["choices"][0]["text"]
assert off == plain, (off, plain)
if len(set(run_ids)) < len(run_ids):
    for pen in ({"frequency_penalty": 2}, {"presence_penalty": 2}, {"repeat_penalty": 5.0}):
        st, j = js("/v1/completions", dict({"prompt": "Hello world", "max_tokens": 24, "temperature": 0, "repeat_last_n": -1}, **pen))
        assert st == 200 and j["choices"][0]["text"] != plain, (pen, j)
    ok("penalties: off with repeat_last_n 0; frequency, presence and repeat each change a greedy answer that repeats tokens")
else:
    ok("penalties: off with repeat_last_n 0 (the greedy answer repeats no token: no change to check)")

# out-of-range values: 400 invalid_request_error, and the server goes on
bad = [("/v1/chat/completions", {"frequency_penalty": 2.5}), ("/v1/chat/completions", {"presence_penalty": -2.01}),
       ("/v1/completions", {"frequency_penalty": "x"}), ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}),
       ("/v1/chat/completions", {"top_logprobs": 3}), ("/v1/chat/completions", {"logprobs": 1}),
       ("/v1/completions", {"logprobs": 21}), ("/v1/completions", {"logprobs": -1}), ("/v1/completions", {"logprobs": "5"}),
       ("/v1/completions", {"n": 0}), ("/v1/completions", {"n": 4}), ("/v1/chat/completions", {"n": 1.5}),
       ("/completion", {"n": 2}), ("/completion", {"n_probs": 21}), ("/v1/completions", {"repeat_penalty": -1}),
       ("/v1/completions", {"repeat_last_n": -2})]
for path, extra in bad:
    b = dict({"prompt": "hi", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}, **extra)
    st, j = js(path, b)
    assert st == 400 and j["error"]["type"] == "invalid_request_error" and j["error"]["code"] == 400 and j["error"]["message"], (path, extra, st, j)
st, j = js("/v1/completions", {"prompt": "Hello world", "max_tokens": 24, "temperature": 0})
assert st == 200 and j["choices"][0]["text"] == plain
with urllib.request.urlopen(urllib.request.Request(A + "/metrics", headers=KEY)) as f:
    m = {l.split()[0]: float(l.split()[1]) for l in f.read().decode().splitlines() if l and not l.startswith("#")}
assert m["longview:num_requests_running"] == 0 and m["longview:num_requests_waiting"] == 0, m
ok("%d out-of-range requests: 400 invalid_request_error each; the server answers as before, no slot held" % len(bad))
PY
serve_stop main "$pid"

# while the model loads: /health and every other route answer 503 (the load is held back 4 s)
printf 'first-key\n second-key \n' > "$T/keys"
LV_TEST_SERVE_LOAD_DELAY_MS=4000 "$LV" serve --port 0 -m "$M" --api-key-file "$T/keys" >"$T/load.out" 2>"$T/load.err" &
pid=$!
servers+=("$pid")
for i in $(seq 1 100); do grep -q "listening on" "$T/load.err" 2>/dev/null && break; sleep 0.02; done
A=$(grep -o 'http://127.0.0.1:[0-9]*' "$T/load.err" | head -1)
python3 - "$A" <<'PY' || fail "503 while loading"
import json, sys, urllib.request, urllib.error
for path in ("/health", "/v1/models"):
    try:
        urllib.request.urlopen(sys.argv[1] + path, timeout=10); raise AssertionError(path + " answered 200 while loading")
    except urllib.error.HTTPError as e:
        j = json.loads(e.read())
        assert e.code == 503 and j["error"] == {"code": 503, "message": "Loading model", "type": "unavailable_error"}, (e.code, j)
print("ok: /health and /v1/models answer 503 Loading model while the model loads")
PY
for i in $(seq 1 200); do grep -q "ready in" "$T/load.err" && break; sleep 0.05; done
python3 - "$A" <<'PY' || fail "after loading: /health, keys from --api-key-file"
import sys, urllib.request, urllib.error
A = sys.argv[1]
assert urllib.request.urlopen(A + "/health").status == 200
for key, want in (("second-key", 200), ("first-key", 200), ("other", 401)):
    try:
        st = urllib.request.urlopen(urllib.request.Request(A + "/v1/models", headers={"X-Api-Key": key})).status
    except urllib.error.HTTPError as e:
        st = e.code
    assert st == want, (key, st)
print("ok: after loading, /health is 200 and the keys of --api-key-file (trimmed) are the ones accepted")
PY
serve_stop load "$pid"

# a slower model, one slot, a queue of one, sink+window layers: refusal, cancellation on
# disconnect, drain on SIGTERM
serve_start slow -m "$S" -np 1 -c 8192 -b 64 -t 1 --metrics --max-queue 1 --layer-plan full,sw,full,sw --sink 4 --window 64 --sse-ping 0.05
A=$(cat "$T/slow.addr")
python3 - "$A" "$pid" <<'PY' || fail "HTTP checks (slow server)"
import json, os, signal, socket, sys, threading, time, urllib.request, urllib.error
A, PID = sys.argv[1], int(sys.argv[2])
host, port = A[len("http://"):].split(":")
def ok(what): print("ok:", what, flush=True)
def metrics():
    with urllib.request.urlopen(A + "/metrics", timeout=30) as f:
        return {l.split()[0]: float(l.split()[1]) for l in f.read().decode().splitlines() if l and not l.startswith("#")}
def wait_for(cond, what, t=30):
    t0 = time.time()
    while time.time() - t0 < t:
        if cond(metrics()): return time.time() - t0
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what + ": " + json.dumps(metrics()))
def raw_post(path, body):
    s = socket.create_connection((host, int(port)))
    b = json.dumps(body).encode()
    s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (path.encode(), len(b)) + b)
    return s
# a long prefill (4000 tokens in chunks of 64) keeps a stream silent: SSE comment pings meanwhile
t0 = time.time()
r = urllib.request.Request(A + "/v1/completions", data=json.dumps({"prompt": [1] + [40 + i % 200 for i in range(3999)], "max_tokens": 1, "stream": True}).encode(),
                           headers={"Content-Type": "application/json"})
with urllib.request.urlopen(r, timeout=120) as f:
    body = f.read().decode()
first_data = body.index("data: ")
pings = body[:first_data].count(": ping\n\n")
assert body.endswith("data: [DONE]\n\n") and (pings >= 1 or time.time() - t0 < 0.15), (pings, body[:200])
ok("a %.1f s prefill: %d SSE pings before the first event" % (time.time() - t0, pings))
long = {"prompt": "x", "max_tokens": 8000, "temperature": 0, "ignore_eos": True}
# A streams and holds the slot
a = raw_post("/v1/completions", dict(long, stream=True))
assert b"200" in a.recv(4096).split(b"\r\n")[0]
wait_for(lambda m: m["longview:num_requests_running"] == 1, "A running")
# B waits in the queue
res = {}
def b_req():
    r = urllib.request.Request(A + "/v1/completions", data=json.dumps({"prompt": "y", "max_tokens": 4}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(r, timeout=60) as f: res["b"] = (f.status, json.loads(f.read()))
tb = threading.Thread(target=b_req); tb.start()
wait_for(lambda m: m["longview:num_requests_waiting"] == 1, "B waiting")
# C: the queue is full
r = urllib.request.Request(A + "/v1/completions", data=json.dumps({"prompt": "z", "max_tokens": 4}).encode(), headers={"Content-Type": "application/json"})
try:
    urllib.request.urlopen(r, timeout=30); raise AssertionError("C was accepted")
except urllib.error.HTTPError as e:
    j = json.loads(e.read())
    assert e.code == 503 and e.headers["Retry-After"] and j["error"]["type"] == "unavailable_error", (e.code, j)
ok("full queue: 503 unavailable_error with Retry-After")
# A's client goes away: its slot is freed and B runs
a.close()
dt = wait_for(lambda m: m["longview:requests_cancelled_total"] == 1, "A cancelled")
tb.join(60)
assert res["b"][0] == 200 and res["b"][1]["usage"]["completion_tokens"] == 4, res
ok("a streaming client that disconnects is cancelled (%.2f s) and the queued request runs" % dt)
# a non-streaming client that disconnects
d = raw_post("/v1/completions", long)
wait_for(lambda m: m["longview:num_requests_running"] == 1, "D running")
d.close()
dt = wait_for(lambda m: m["longview:requests_cancelled_total"] == 2 and m["longview:num_requests_running"] == 0, "D cancelled")
ok("a non-streaming client that disconnects is cancelled (%.2f s), the slot is free" % dt)
# SIGTERM while a stream runs: it finishes with [DONE], new requests get 503, then the process exits
e = raw_post("/v1/completions", {"prompt": "x", "max_tokens": 600, "temperature": 0, "ignore_eos": True, "stream": True})
wait_for(lambda m: m["longview:num_requests_running"] == 1, "E running")
os.kill(PID, signal.SIGTERM)
time.sleep(0.1)
try:
    urllib.request.urlopen(urllib.request.Request(A + "/v1/completions", data=b'{"prompt":"q","max_tokens":2}', headers={"Content-Type": "application/json"}), timeout=10)
    raise AssertionError("accepted while draining")
except urllib.error.HTTPError as ex:
    assert ex.code == 503, ex.code
except (urllib.error.URLError, ConnectionError):
    pass  # already closed
data = b""
e.settimeout(60)
while True:
    chunk = e.recv(65536)
    if not chunk: break
    data += chunk
    if b"data: [DONE]" in data: break
assert b"data: [DONE]" in data, data[-300:]
n = data.count(b'"text"')
ok("SIGTERM: the running stream finished ([DONE], %d events), a new request got 503" % n)
PY
[ $? -eq 0 ] || fail "slow server checks"
for i in $(seq 1 400); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid"; fail "slow server still running after SIGTERM"; }
wait "$pid" || fail "slow server exit status $?: $(tail -5 "$T/slow.err")"
grep -q "stopped" "$T/slow.err" || fail "slow: no 'stopped' line"
echo "ok: the slow server drained and exited 0"
