#!/usr/bin/env python3
"""An independent numpy forward of the vision encoders, written from ../shared/VISION.md (§2, §4.2), to check
the mtmd goldens in tests/golden/vision/ (and, later, anything else that claims to match them).

    PYTHONPATH=.oracle/src/gguf-py /usr/bin/python3 scripts/vision-numpy-ref.py [--no-emul] [tests/golden/vision/NAME.lvv ...]

For every embed golden (default: all) it reads the mmproj file and images named in the header, runs the tower
and projector in float64, and prints max|delta| and max|delta| / max|ref| against mtmd's embeddings.
The ggml CPU numerics that matter are emulated (VISION.md §4.2), unless --no-emul:
  - ggml_conv_2d builds im2col in F16: normalised pixels and the patch kernel are rounded to F16;
  - GELU (tanh) and QuickGELU use F16 tables: input rounded to F16, output rounded to F16 (GELU: 0 below -10,
    identity above 10);
  - a matrix stored F16 multiplies activations rounded to F16; a Q8_0 matrix multiplies activations quantised
    to Q8_0 blocks of 32 (scale amax/127 in F16), its own values dequantised.
The logits goldens: the text model (regenerated with build/release/longview gen-model, SHA-256 checked) run
in numpy over the golden's ids, positions and embeddings must give its logits.
Covers idefics3, qwen2vl_merger, qwen2.5vl_merger (still images and temporal pairs) and mlp (no v.class_embd).
Output per golden: max|delta| over everything, relative to max|ref|, the median over tokens of each token's
max|delta|, and how many tokens are within 1e-5. Most tokens agree to ~1e-7; the few that do not are F16-table
(or Q8_0) rounding flips: a value computed within ~1e-7 of a rounding boundary lands on the other side, and one
F16 ulp of a GELU output (or one Q8_0 step) propagates to ~1e-4 (~1e-2 for Q8_0) in that token.
Most images are at the exact target size (preprocessing = /255 and normalisation); the idefics3 cases that
resize (a multi-tile overview, and preproc_image_size's Lanczos tiling) are resized here with Pillow
(python3-pil), which mtmd's resize_pillow ports, so they check that claim too.
"""
import os
import sys

import numpy as np

import gguf

EMUL = "--no-emul" not in sys.argv
T = gguf.GGMLQuantizationType


def f16(x):
    return np.asarray(x, np.float64).astype(np.float16).astype(np.float64) if EMUL else np.asarray(x, np.float64)


def load_lvv(path):
    b = open(path, "rb").read()
    i = b.index(b"\nend\n") + 5
    h = {}
    for line in b[:i].decode().splitlines()[1:-1]:
        if "=" in line:
            k, v = line.split("=", 1)
            h[k] = v
    return h, b[i:]


def read_ppm(path):
    b = open(path, "rb").read()
    parts = b.split(maxsplit=4)
    w, h = int(parts[1]), int(parts[2])
    return np.frombuffer(parts[4][: w * h * 3], np.uint8).reshape(h, w, 3)


class MM:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        self.kv = {}
        for k, f in r.fields.items():
            if not f.data:
                continue
            if f.types and f.types[0] == gguf.GGUFValueType.STRING:
                self.kv[k] = bytes(f.parts[f.data[0]]).decode()
            elif f.types and f.types[0] == gguf.GGUFValueType.ARRAY:
                self.kv[k] = [f.parts[i][0] for i in f.data]
            else:
                self.kv[k] = f.parts[f.data[0]][0]
        self.t = {}
        self.ty = {}
        for t in r.tensors:
            shape = [int(x) for x in reversed(t.shape)]  # PyTorch order
            if t.tensor_type in (T.F32, T.F16):
                a = np.asarray(t.data, np.float64).reshape(shape)
            else:
                a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64).reshape(shape)
            self.t[t.name] = a
            self.ty[t.name] = t.tensor_type

    def has(self, n):
        return n in self.t

    def lin(self, x, name, bias=True):
        """x [n, in] @ W[out, in]^T (+ b), with the activation rounding of the weight's storage type."""
        w = self.t[name + ".weight"]
        ty = self.ty[name + ".weight"]
        if EMUL and ty == T.F16:
            x = f16(x)
        elif EMUL and ty == T.Q8_0:
            xb = x.reshape(x.shape[0], -1, 32)
            d = np.abs(xb).max(axis=2, keepdims=True) / 127.0
            d16 = d.astype(np.float16).astype(np.float64)
            q = np.round(np.divide(xb, d, out=np.zeros_like(xb), where=d > 0))
            x = (q * d16).reshape(x.shape)
        y = x @ w.T
        if bias and name + ".bias" in self.t:
            y = y + self.t[name + ".bias"]
        return y


def layernorm(x, w, b, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    y = (x - m) / np.sqrt(v + eps) * w
    return y + b if b is not None else y


def rmsnorm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def gelu(x):
    if not EMUL:
        return 0.5 * x * (1 + np.tanh(0.7978845608028654 * x * (1 + 0.044715 * x * x)))
    xh = f16(x)
    y = f16(0.5 * xh * (1 + np.tanh(0.7978845608028654 * xh * (1 + 0.044715 * xh * xh))))
    return np.where(x <= -10, 0.0, np.where(x >= 10, x, y))


def quick_gelu(x):
    if not EMUL:
        return x / (1 + np.exp(-1.702 * x))
    xh = f16(x)
    return f16(xh / (1 + np.exp(-1.702 * xh)))


def silu(x):
    return x / (1 + np.exp(-x))


def normalise(img, mm):
    mean = np.array(mm.kv["clip.vision.image_mean"][:3], np.float32)
    std = np.array(mm.kv["clip.vision.image_std"][:3], np.float32)
    x = ((img.astype(np.float32) / np.float32(255.0) - mean) / std).astype(np.float64)  # [H, W, 3]
    return x


def patchify(x, kernel, p):
    """conv p x p stride p -> [n_patches (raster), d], with F16 im2col."""
    H, W, _ = x.shape
    gy, gx = H // p, W // p
    cols = f16(x).reshape(gy, p, gx, p, 3).transpose(0, 2, 4, 1, 3).reshape(gy * gx, 3 * p * p)  # (c, ky, kx)
    k = f16(kernel).reshape(kernel.shape[0], -1)  # [d, 3*p*p] in (c, ky, kx)
    return cols @ k.T


def attention(q, k, v, heads, mask=None):
    n, d = q.shape
    dh = d // heads
    out = np.empty_like(q)
    for h in range(heads):
        s = slice(h * dh, (h + 1) * dh)
        a = q[:, s] @ k[:, s].T / np.sqrt(dh)
        if mask is not None:
            a = np.where(mask, a, -np.inf)
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        out[:, s] = a @ v[:, s]
    return out


def block(mm, x, i, norm, ffn, rope=None, mask=None):
    b = f"v.blk.{i}"
    heads = int(mm.kv["clip.vision.attention.head_count"])
    eps = float(mm.kv["clip.vision.attention.layer_norm_epsilon"])
    nrm = (lambda y, n: rmsnorm(y, mm.t[f"{b}.{n}.weight"], eps)) if norm == "rms" else \
          (lambda y, n: layernorm(y, mm.t[f"{b}.{n}.weight"], mm.t.get(f"{b}.{n}.bias"), eps))
    h = nrm(x, "ln1")
    q, k, v = mm.lin(h, f"{b}.attn_q"), mm.lin(h, f"{b}.attn_k"), mm.lin(h, f"{b}.attn_v")
    if rope is not None:
        q, k = rope(q, heads), rope(k, heads)
    x = x + mm.lin(attention(q, k, v, heads, mask), f"{b}.attn_out")
    h = nrm(x, "ln2")
    if ffn == "swiglu":
        h = silu(mm.lin(h, f"{b}.ffn_gate")) * mm.lin(h, f"{b}.ffn_up")
    else:
        h = (gelu if ffn == "gelu" else quick_gelu)(mm.lin(h, f"{b}.ffn_up"))
    return x + mm.lin(h, f"{b}.ffn_down")


def ffn_kind(mm):
    if mm.kv.get("clip.use_silu"):
        return "swiglu" if mm.has("v.blk.0.ffn_gate.weight") else "silu"
    return "gelu" if mm.kv.get("clip.use_gelu") else "quick"


def idefics3(mm, img):
    p = int(mm.kv["clip.vision.patch_size"])
    s = int(mm.kv["clip.vision.projector.scale_factor"])
    eps = float(mm.kv["clip.vision.attention.layer_norm_epsilon"])
    x = patchify(normalise(img, mm), mm.t["v.patch_embd.weight"], p) + mm.t["v.patch_embd.bias"]
    x = x + mm.t["v.position_embd.weight"][: x.shape[0]]
    for i in range(int(mm.kv["clip.vision.block_count"])):
        x = block(mm, x, i, "ln", ffn_kind(mm))
    x = layernorm(x, mm.t["v.post_ln.weight"], mm.t["v.post_ln.bias"], eps)
    G = img.shape[0] // p
    d = x.shape[1]
    g = x.reshape(G // s, s, G // s, s, d)  # (Y, dy, X, dx, c)
    g = g.transpose(0, 2, 1, 3, 4).reshape((G // s) ** 2, s * s * d)  # feature (dy*s+dx)*d + c
    return mm.lin(g, "mm.model.fc", bias=False)


def pil_resize(img, w, h, algo):
    from PIL import Image
    if img.shape[1] == w and img.shape[0] == h:
        return img
    return np.asarray(Image.fromarray(img).resize((w, h), algo))


def idefics3_tiles(mm, img):
    """mtmd's idefics3 preprocessing (VISION.md §2.1) with Pillow doing the resizing: tiles, then the overview."""
    from PIL import Image
    T_ = int(mm.kv["clip.vision.image_size"])
    E = int(mm.kv.get("clip.vision.preproc_image_size", 0) or 0)
    H, W = img.shape[:2]
    if E:  # (a) long side to E (Lanczos), the short side floor(E/ratio) rounded up to even, then stretched to tiles
        if W >= H:
            rw, rh = E, int(E / (W / H))
            rh += rh % 2
        else:
            rh, rw = E, int(E * (W / H))
            rw += rw % 2
        resized = pil_resize(img, rw, rh, Image.LANCZOS)
        refined = pil_resize(resized, -(-rw // T_) * T_, -(-rh // T_) * T_, Image.LANCZOS)
        overview = pil_resize(refined, T_, T_, Image.LANCZOS)
    else:  # (b) generic slicing; only images whose sides are multiples of T are handled (no refined resize)
        assert H % T_ == 0 and W % T_ == 0, "generic idefics3 slicing: only multiples of the tile size here"
        refined = img
        overview = pil_resize(img, T_, T_, Image.BICUBIC)
    tiles = [refined[y:y + T_, x:x + T_] for y in range(0, refined.shape[0], T_) for x in range(0, refined.shape[1], T_)]
    return tiles + [overview]


def mlp(mm, img):
    p = int(mm.kv["clip.vision.patch_size"])
    eps = float(mm.kv["clip.vision.attention.layer_norm_epsilon"])
    assert not mm.has("v.class_embd"), "files with v.class_embd hit the v0.4.0 CLS quirk (VISION.md §2.3)"
    x = patchify(normalise(img, mm), mm.t["v.patch_embd.weight"], p)
    if mm.has("v.patch_embd.bias"):
        x = x + mm.t["v.patch_embd.bias"]
    x = x + mm.t["v.position_embd.weight"][: x.shape[0]]
    x = layernorm(x, mm.t["v.pre_ln.weight"], mm.t["v.pre_ln.bias"], eps)
    for i in range(int(mm.kv["clip.vision.block_count"]) - 1):  # mtmd runs block_count - 1 blocks
        x = block(mm, x, i, "ln", ffn_kind(mm))
    return mm.lin(gelu(mm.lin(x, "mm.0")), "mm.2")


def qwen(mm, frames):
    p = int(mm.kv["clip.vision.patch_size"])
    eps = float(mm.kv["clip.vision.attention.layer_norm_epsilon"])
    v25 = mm.kv["clip.projector_type"] == "qwen2.5vl_merger"
    f0 = normalise(frames[0], mm)
    f1 = normalise(frames[1], mm) if len(frames) > 1 else f0
    x = patchify(f0, mm.t["v.patch_embd.weight"], p) + patchify(f1, mm.t["v.patch_embd.weight.1"], p)
    H, W, _ = frames[0].shape
    hp, wp = H // p, W // p
    r, c = np.divmod(np.arange(hp * wp), wp)
    order = ((r // 2) * (wp // 2) + c // 2) * 4 + (r % 2) * 2 + (c % 2)  # merge-block index of raster patch
    xs = np.empty_like(x)
    xs[order] = x
    rr = np.empty(hp * wp, np.int64)
    cc = np.empty(hp * wp, np.int64)
    rr[order], cc[order] = r, c

    def rope(t, heads):
        dh = t.shape[1] // heads
        half, quarter = dh // 2, dh // 4
        fr = 10000.0 ** (-4.0 * np.arange(quarter) / dh)
        ang = np.concatenate([rr[:, None] * fr[None], cc[:, None] * fr[None]], axis=1)  # [n, half]
        cos, sin = np.cos(ang), np.sin(ang)
        out = t.copy()
        for h in range(heads):
            a = t[:, h * dh: h * dh + half]
            b = t[:, h * dh + half: (h + 1) * dh]
            out[:, h * dh: h * dh + half] = a * cos - b * sin
            out[:, h * dh + half: (h + 1) * dh] = a * sin + b * cos
        return out

    win_mask = None
    nwa = int(mm.kv.get("clip.vision.n_wa_pattern", 0) or 0)
    if v25:
        wpx = 8  # 112 px / 14 = 8 patches per window side
        wid = (rr // wpx) * ((wp + wpx - 1) // wpx) + cc // wpx
        win_mask = wid[:, None] == wid[None, :]
    for i in range(int(mm.kv["clip.vision.block_count"])):
        full = not v25 or (nwa > 0 and (i + 1) % nwa == 0)
        xs = block(mm, xs, i, "rms" if v25 else "ln", "swiglu" if v25 else ffn_kind(mm), rope, None if full else win_mask)
    if v25:
        xs = rmsnorm(xs, mm.t["v.post_ln.weight"], eps)
    else:
        xs = layernorm(xs, mm.t["v.post_ln.weight"], mm.t["v.post_ln.bias"], eps)
    m = xs.reshape(-1, 4 * xs.shape[1])
    return mm.lin(gelu(mm.lin(m, "mm.0")), "mm.2")


def text_model(h, gdir):
    """The golden's text model: regenerated with longview gen-model (build/release/longview) and its SHA-256 checked."""
    import hashlib
    import subprocess
    import tempfile
    out = os.path.join(tempfile.mkdtemp(prefix="lv-vref-"), "text.gguf")
    lv = os.environ.get("LONGVIEW", "build/release/longview")
    subprocess.run([lv, "gen-model"] + h["text_gen_model"].split() + ["-o", out], check=True, capture_output=True)
    if hashlib.sha256(open(out, "rb").read()).hexdigest() != h["text_sha256"]:
        raise SystemExit("gen-model's text model differs from the golden's (SHA-256)")
    return MM(out)


def llama_logits(tm, ids, pos, embd, n_out):
    """The llama text model over rows that are token ids or (id -1) embedding rows; logits of the last n_out."""
    kv = tm.kv
    E = int(kv["llama.embedding_length"])
    heads = int(kv["llama.attention.head_count"])
    dh = E // heads
    eps = float(kv["llama.attention.layer_norm_rms_epsilon"])
    base = float(kv["llama.rope.freq_base"])
    x = np.empty((len(ids), E))
    k = 0
    for i, t in enumerate(ids):
        if t < 0:
            x[i] = embd[k]
            k += 1
        else:
            x[i] = tm.t["token_embd.weight"][t]
    pos = np.asarray(pos, np.float64)
    ang = pos[:, None] * base ** (-np.arange(0, dh, 2) / dh)[None]  # [n, dh/2]
    cos, sin = np.cos(ang), np.sin(ang)

    def rope(t):  # llama.cpp NORM rope: adjacent pairs (2i, 2i+1)
        t = t.reshape(len(ids), heads, dh // 2, 2).copy()
        a, b = t[..., 0].copy(), t[..., 1].copy()
        t[..., 0] = a * cos[:, None] - b * sin[:, None]
        t[..., 1] = a * sin[:, None] + b * cos[:, None]
        return t.reshape(len(ids), E)

    n = len(ids)
    causal = np.tril(np.ones((n, n), bool))
    for L in range(int(kv["llama.block_count"])):
        b = f"blk.{L}"
        hh = rmsnorm(x, tm.t[f"{b}.attn_norm.weight"], eps)
        q, kk, v = rope(hh @ tm.t[f"{b}.attn_q.weight"].T), rope(hh @ tm.t[f"{b}.attn_k.weight"].T), hh @ tm.t[f"{b}.attn_v.weight"].T
        x = x + attention(q, kk, v, heads, causal) @ tm.t[f"{b}.attn_output.weight"].T
        hh = rmsnorm(x, tm.t[f"{b}.ffn_norm.weight"], eps)
        x = x + (silu(hh @ tm.t[f"{b}.ffn_gate.weight"].T) * (hh @ tm.t[f"{b}.ffn_up.weight"].T)) @ tm.t[f"{b}.ffn_down.weight"].T
    x = rmsnorm(x[-n_out:], tm.t["output_norm.weight"], eps)
    return x @ tm.t["output.weight"].T


def qwen2vl_logits(tm, ids, pos4, embd, n_out):
    """The qwen2vl text model (as llama.cpp's qwen2vl graph: q/k/v biases, M-RoPE = NEOX-style halves with
    rope.dimension_sections picking, per frequency pair, which of the row's 4 positions (t, h, w, e) rotates
    it; tied output) over rows that are token ids or (id -1) embedding rows; logits of the last n_out.
    The causal mask is the row order: llama.cpp masks by t and, within one t, by (y, x) raster order, which
    for mtmd's positions (t non-decreasing, an image's rows in raster order) is the same thing."""
    kv = tm.kv
    E = int(kv["qwen2vl.embedding_length"])
    heads = int(kv["qwen2vl.attention.head_count"])
    dh = E // heads
    eps = float(kv["qwen2vl.attention.layer_norm_rms_epsilon"])
    base = float(kv["qwen2vl.rope.freq_base"])
    sec = [int(v) for v in kv["qwen2vl.rope.dimension_sections"]]
    n = len(ids)
    x = np.empty((n, E))
    k = 0
    for i, t in enumerate(ids):
        if t < 0:
            x[i] = embd[k]
            k += 1
        else:
            x[i] = tm.t["token_embd.weight"][t]
    half = dh // 2
    which = np.empty(half, np.int64)  # section of each frequency pair (ggml_mrope_cache_init, not interleaved)
    for i in range(half):
        r = i % sum(sec)
        which[i] = 0 if r < sec[0] else 1 if r < sec[0] + sec[1] else 2 if r < sec[0] + sec[1] + sec[2] else 3
    p = np.asarray(pos4, np.float64)[:, which]  # [n, half]
    ang = p * base ** (-2.0 * np.arange(half) / dh)[None]
    cos, sin = np.cos(ang), np.sin(ang)

    def rope(t):  # pairs (i, i + dh/2) within each head
        t = t.reshape(n, heads, 2, half).copy()
        a, b = t[:, :, 0].copy(), t[:, :, 1].copy()
        t[:, :, 0] = a * cos[:, None] - b * sin[:, None]
        t[:, :, 1] = a * sin[:, None] + b * cos[:, None]
        return t.reshape(n, E)

    causal = np.tril(np.ones((n, n), bool))
    for L in range(int(kv["qwen2vl.block_count"])):
        b = f"blk.{L}"
        hh = rmsnorm(x, tm.t[f"{b}.attn_norm.weight"], eps)
        q, kk, v = rope(tm.lin(hh, f"{b}.attn_q")), rope(tm.lin(hh, f"{b}.attn_k")), tm.lin(hh, f"{b}.attn_v")
        x = x + tm.lin(attention(q, kk, v, heads, causal), f"{b}.attn_output")
        hh = rmsnorm(x, tm.t[f"{b}.ffn_norm.weight"], eps)
        x = x + tm.lin(silu(tm.lin(hh, f"{b}.ffn_gate")) * tm.lin(hh, f"{b}.ffn_up"), f"{b}.ffn_down")
    x = rmsnorm(x[-n_out:], tm.t["output_norm.weight"], eps)
    return tm.lin(x, "output" if tm.has("output.weight") else "token_embd", bias=False)


def check_logits(path):
    """A logits golden: its embeddings equal the embed golden's, and the text model over its ids/embeddings
    gives its logits (the embeddings are taken from the golden: this checks the text side and the layout).
    M-RoPE goldens (mrope=1) name a committed text model (text_model=, SHA-256 checked) and carry each row's
    4 positions after the logits; they also check those positions against mtmd's rules from the header's chunks."""
    import hashlib
    h, body = load_lvv(path)
    S, N, E, V, O = (int(h[k]) for k in ("n_seq", "n_image_tokens", "n_embd", "n_vocab", "n_out"))
    ids = np.frombuffer(body[: 4 * S], "<i4")
    pos = np.frombuffer(body[4 * S: 8 * S], "<i4")
    embd = np.frombuffer(body[8 * S: 8 * S + 4 * N * E], "<f4").reshape(N, E).astype(np.float64)
    end = 8 * S + 4 * N * E + 4 * O * V
    got = np.frombuffer(body[8 * S + 4 * N * E: end], "<f4").reshape(O, V)
    if h.get("mrope") == "1":
        tpath = os.path.join(os.path.dirname(path), h["text_model"])
        if hashlib.sha256(open(tpath, "rb").read()).hexdigest() != h["text_sha256"]:
            raise SystemExit(f"{tpath} differs from the golden's (SHA-256)")
        tm = MM(tpath)
        pos4 = np.frombuffer(body[end: end + 16 * S], "<i4").reshape(S, 4)
        if len(body) != end + 16 * S:
            raise SystemExit(f"{path}: body size")
        # the positions from the chunk lines alone: text (p, p, p, p), image (pos_0, pos_0 + i / nx, pos_0 + i % nx, 0)
        exp = []
        for c in range(int(h["n_chunks"])):
            f = dict(kv.split("=") for kv in h[f"chunk.{c}"].split()[1:])
            p0, nt = int(f["pos_0"]), int(f["n_tokens"])
            if h[f"chunk.{c}"].startswith("text"):
                exp += [[p0 + j] * 4 for j in range(nt)]
            else:
                nx = int(f["nx"])
                exp += [[p0, p0 + j // nx, p0 + j % nx, 0] for j in range(nt)]
        if not (np.array(exp) == pos4).all() or not (pos == pos4[:, 0]).all():
            raise SystemExit(f"{path}: pos4 differs from mtmd's rules")
        ref = qwen2vl_logits(tm, ids, pos4, embd, O)
        what = "qwen2vl text"
    else:
        tm = text_model(h, os.path.dirname(path))
        ref = llama_logits(tm, ids, pos, embd, O)
        what = "text model"
    diff = np.abs(got - ref).max()
    same_top = int((got.argmax(1) == ref.argmax(1)).sum())
    print(f"{os.path.basename(path):28s} {what:18s} rows {O:3d}  max|d| {diff:.2e}  rel {diff / np.abs(ref).max():.2e}  "
          f"argmax equal {same_top}/{O}")
    return diff / np.abs(ref).max()


def main():
    files = [a for a in sys.argv[1:] if not a.startswith("--")]
    gdir = "tests/golden/vision"
    if not files:
        files = sorted(os.path.join(gdir, n) for n in os.listdir(gdir) if n.endswith(".lvv") and not n.startswith("logits-"))
    files = [f for f in files if not os.path.basename(f).startswith("logits-")]
    worst = 0.0
    for path in files:
        h, body = load_lvv(path)
        d = os.path.dirname(path)
        mm = MM(os.path.join(d, h["mmproj"]))
        imgs = [read_ppm(os.path.join(d, n)) for n in h["images"].split()]
        E, N = int(h["n_embd"]), int(h["n_image_tokens"])
        got = np.frombuffer(body[: 4 * N * E], "<f4").reshape(N, E).astype(np.float64)
        proj = h["projector"]
        note = ""
        if proj == "idefics3":
            tiles = idefics3_tiles(mm, imgs[0])
            ref = np.concatenate([idefics3(mm, t) for t in tiles])  # tiles in raster order, then the overview
            if len(tiles) > 2 or "clip.vision.preproc_image_size" in mm.kv:
                note = " (resized with Pillow)"
        elif proj == "mlp":
            ref = mlp(mm, imgs[0])
        elif h.get("mergeable") == "1":
            ref = qwen(mm, imgs)  # one temporal pair
        else:
            ref = np.concatenate([qwen(mm, [im]) for im in imgs])
        g = got[: ref.shape[0]]
        tok = np.abs(g - ref).max(axis=1)  # per token
        diff = tok.max()
        rel = diff / np.abs(ref).max()
        worst = max(worst, rel)
        ok = int((tok <= 1e-5).sum())
        print(f"{os.path.basename(path):28s} {proj:18s} tokens {ref.shape[0]:3d}  max|d| {diff:.2e}  rel {rel:.2e}  "
              f"median token {np.median(tok):.1e}  tokens <= 1e-5: {ok}/{len(tok)}{note}")
    print(f"worst relative {worst:.2e} ({'with' if EMUL else 'without'} the F16 emulations)")
    logit_files = [a for a in sys.argv[1:] if not a.startswith("--") and os.path.basename(a).startswith("logits-")]
    if not [a for a in sys.argv[1:] if not a.startswith("--")]:
        logit_files = sorted(os.path.join(gdir, n) for n in os.listdir(gdir) if n.startswith("logits-") and n.endswith(".lvv"))
    for path in logit_files:
        check_logits(path)


if __name__ == "__main__":
    main()
