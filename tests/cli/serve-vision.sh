# longview serve --mmproj (docs/server.md): images in requests, with the tiny golden idefics3
# tower (tests/golden/vision). /completion with llama-server's multimodal_data gives the tokens
# `longview run --image` gives; a chat image_url part (a data: URI) is laid out where the part is;
# a repeated request reuses only the text before its image; bad images, URLs and servers without
# --mmproj are refused with 400 and the server goes on. Qwen2.5-VL (M-RoPE positions): the same
# oracle for two images, and a text-only request after an image one in the same slot (its rotary
# offset set back) equal to `longview run -p`.
. "$(dirname "$0")/_lib.sh"
command -v python3 >/dev/null || { echo "skip: python3 absent"; exit 0; }
G=tests/golden/vision
expect_ok "gen-model text" "$LV" gen-model --arch llama --dim 64 --layers 2 --heads 2 --ffn 96 --std 0.3 --vocab $G/vocab-vlm.gguf --seed 8 -o "$T/text.gguf"
expect_ok "run --image (the reference)" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --image $G/img-64x64.ppm -p "<__media__>What is this?" -n 8 --temp 0 --ids -c 2048
cp "$T/out" "$T/run.ids"
expect_ok "run --image, the other image" "$LV" run -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf --image $G/img-56x56.ppm -p "<__media__>What is this?" -n 8 --temp 0 --ids -c 2048
cp "$T/out" "$T/run2.ids"
expect_ok "gen-model qwen2vl text" "$LV" gen-model --arch qwen2vl --dim 64 --layers 2 --heads 2 --ffn 96 --std 0.3 --vocab $G/vocab-vlm.gguf --seed 3 -o "$T/q.gguf"
for i in 1 2; do
  img=$([ $i = 1 ] && echo img-64x64 || echo img-56x56)
  expect_ok "run --image qwen2.5-vl $img" "$LV" run -m "$T/q.gguf" --mmproj $G/qwen25vl.gguf --image $G/$img.ppm -p "Describe: <__media__> now" -n 8 --temp 0 --ids -c 2048
  cp "$T/out" "$T/q$i.ids"
done
expect_ok "run qwen2vl text only" "$LV" run -m "$T/q.gguf" -p "Describe: something else" -n 8 --temp 0 --ids -c 2048
cp "$T/out" "$T/q-text.ids"
expect_fail "--mmproj that is not a file" "$LV" serve -m "$T/text.gguf" --mmproj "$T/nope.gguf" --port 0

serve_start vis -m "$T/text.gguf" --mmproj $G/idefics3-s2.gguf -np 2 -c 2048 -b 64 -t 1
vis_pid=$pid
grep -q "images with .*idefics3" "$T/vis.err" || fail "no images line: $(cat "$T/vis.err")"
serve_start plain -m "$T/text.gguf" -np 1 -c 1024 -b 64 -t 1
plain_pid=$pid
serve_start qwen -m "$T/q.gguf" --mmproj $G/qwen25vl.gguf -np 1 -c 2048 -b 16 -t 1
qwen_pid=$pid
python3 - "$(cat "$T/vis.addr")" "$(cat "$T/plain.addr")" "$T" "$G" "$(cat "$T/qwen.addr")" <<'PY' || fail "HTTP checks"
import base64, json, sys, urllib.request, urllib.error
A, P, T, G, Q = sys.argv[1:6]
def js(base, path, body):
    r = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(r, timeout=120) as f:
            return f.status, json.loads(f.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
def ok(what): print("ok:", what, flush=True)
b64 = lambda p: base64.b64encode(open(p, "rb").read()).decode()
img1, img2 = b64(G + "/img-64x64.ppm"), b64(G + "/img-56x56.ppm")
ids1 = [int(x) for x in open(T + "/run.ids").read().split()]
ids2 = [int(x) for x in open(T + "/run2.ids").read().split()]
assert ids1 != ids2, "the two images give the same answer: the test could not tell them apart"
def native(img):
    return js(A, "/completion", {"prompt": "<__media__>What is this?", "multimodal_data": [img], "n_predict": 8, "temperature": 0, "return_tokens": True})
st, j = native(img1)
assert st == 200 and j["tokens"] == ids1, (st, j)
ok("/completion + multimodal_data == longview run --image (%d tokens)" % len(ids1))
st, j = native(img2)
assert st == 200 and j["tokens"] == ids2, (st, j)
ok("the other image after it: its own answer (the cached prefix stopped at the image)")
st, j = native(img1)
assert st == 200 and j["tokens"] == ids1 and 0 < j["tokens_cached"] < j["tokens_evaluated"], (st, {k: j.get(k) for k in ("tokens", "tokens_cached", "tokens_evaluated")})
ok("the first again: same tokens, %d of %d prompt tokens reused (the text before the image)" % (j["tokens_cached"], j["tokens_evaluated"]))

# chat: an image_url part where it stands in the message; the image adds its rows to the prompt
def chat(parts, base=A):
    return js(base, "/v1/chat/completions", {"messages": [{"role": "user", "content": parts}], "max_tokens": 6, "temperature": 0})
url = "data:image/x-portable-pixmap;base64," + img1
st, j = chat([{"type": "text", "text": "Look: "}, {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": " What is it?"}])
assert st == 200 and isinstance(j["choices"][0]["message"]["content"], str), (st, j)
with_img = j["usage"]["prompt_tokens"]
st, j = chat([{"type": "text", "text": "Look: "}, {"type": "text", "text": " What is it?"}])
assert st == 200, (st, j)
assert with_img - j["usage"]["prompt_tokens"] >= 20, (with_img, j["usage"])  # 4 x 4 tile rows + the overview's + tag text
ok("chat with an image_url part: %d prompt tokens, %d without the image" % (with_img, j["usage"]["prompt_tokens"]))
st, j = chat([{"type": "image_url", "image_url": url}, {"type": "text", "text": "?"}])
assert st == 200, (st, j)
ok("image_url given as a plain string")

# refusals: 400 with the OpenAI error shape, and the server goes on
def bad(status, j, words):
    e = j.get("error", {})
    assert status == 400 and e.get("type") == "invalid_request_error" and words in e.get("message", ""), (status, j)
    ok("400: " + e["message"][:100])
st, j = chat([{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]); bad(st, j, "not fetched")
st, j = chat([{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@@"}}]); bad(st, j, "not valid base64")
st, j = chat([{"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"not an image at all").decode()}}]); bad(st, j, "image 0")
st, j = chat([{"type": "image_url", "image_url": {"url": url}}] * 17); bad(st, j, "more than 16 images")
st, j = chat([{"type": "image_url"}]); bad(st, j, "needs 'image_url'")
st, j = js(A, "/completion", {"prompt": 5, "multimodal_data": [img1]}); bad(st, j, "multimodal_data")
st, j = js(A, "/completion", {"prompt": "<__media__><__media__>two markers", "multimodal_data": [img1]}); bad(st, j, "the prompt with its images")
st, j = chat([{"type": "image_url", "image_url": {"url": url}}], base=P); bad(st, j, "--mmproj")
st, j = native(img1)
assert st == 200 and j["tokens"] == ids1, (st, j)
ok("after the refusals: the same answer")

# Qwen2.5-VL: M-RoPE positions for the image rows, 16-token steps cutting through them; one slot
q = [[int(x) for x in open(T + "/q%s.ids" % k).read().split()] for k in ("1", "2", "-text")]
assert q[0] != q[1], "the two images give the same Qwen answer"
for k, img in ((0, img1), (1, img2), (0, img1)):
    st, j = js(Q, "/completion", {"prompt": "Describe: <__media__> now", "multimodal_data": [img], "n_predict": 8, "temperature": 0, "return_tokens": True})
    assert st == 200 and j["tokens"] == q[k], (k, st, j.get("tokens"), q[k])
ok("qwen2.5-vl: /completion + multimodal_data == longview run --image, two images in turn")
st, j = js(Q, "/completion", {"prompt": "Describe: something else", "n_predict": 8, "temperature": 0, "return_tokens": True})
assert st == 200 and j["tokens"] == q[2] and j["tokens_cached"] > 0, (st, j.get("tokens"), j.get("tokens_cached"), q[2])
ok("qwen2.5-vl: a text-only request after an image one reuses the text before the image (%d tokens) and equals run -p" % j["tokens_cached"])
PY
serve_stop vis "$vis_pid"
serve_stop plain "$plain_pid"
serve_stop qwen "$qwen_pid"
