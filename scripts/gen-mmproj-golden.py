#!/usr/bin/env python3
"""Writes the small deterministic random-weight mmproj files and test images of the vision goldens.

    PYTHONPATH=.oracle/src/gguf-py /usr/bin/python3 scripts/gen-mmproj-golden.py OUTDIR

Follows ../shared/VISION.md §4.1 (gguf-py from the pinned llama.cpp v0.4.0 source, numpy 1.24):
`clip` architecture, `general.type = mmproj`, the typed key helpers, tensors in PyTorch order.
Rules: f != d (mtmd swaps up/down when ffn_down's ne[0] == d), norm weights 1+N(0, 0.1^2), biases
N(0, 0.02^2), linear weights N(0, 1/fan_in). Output width N_TEXT = the tiny text model's n_embd.

Files (all F32 unless said; 4 heads, d 32, f 96, n_text 64):
  idefics3-s2.gguf       SigLIP-like, p 16, image 64, s 2, 2 blocks, GELU (tanh)     -> 4 tokens / 64x64 tile
  idefics3-s2-e128.gguf  idefics3-s2's weights plus preproc_image_size 128 (SmolVLM's tiling path: Lanczos
                         resize of the long side to 128, 64-px tiles of the refined image, then the overview)
  idefics3-s4.gguf       the same at image 128, s 4                                   -> 4 tokens / 128x128 tile
  idefics3-s2-f16.gguf   idefics3-s2's shape, other seed; matrices F16 (patch/pos F32, as SmolVLM's converter)
  qwen2vl.gguf           qwen2vl_merger, p 14, 2 blocks, QuickGELU, LayerNorm; patch kernels F16 (as the Qwen
                         converters; ggml's conv builds im2col in F16, so F16 kernels lose nothing)
  qwen25vl.gguf          qwen2.5vl_merger: RMSNorm, SwiGLU (ffn_gate, use_silu), n_wa_pattern 2 (block 0
                         windowed, block 1 full); patch kernels F16
  qwen25vl-q8_0.gguf     qwen25vl's shape, other seed; block and merger matrices Q8_0
  mlp.gguf               LLaVA-1.5-like CLIP, p 14, image 56, pre_ln, block_count 3 (mtmd runs 2), QuickGELU,
                         mm.0 -> GELU -> mm.2 (hidden 64); NO v.class_embd (VISION.md §2.3: v0.4.0 appends CLS and
                         drops patch 0; without CLS the output is simply the 16 patches)
text-qwen2vl.gguf       a tiny qwen2vl (M-RoPE) text model for the Qwen position goldens (see text_qwen2vl())
vocab-vlm.gguf          vocabulary for the tiny text model (see vocab())
Images (binary PPM, smooth gradients + sines + uniform noise, at the exact target sizes):
  img-64x64.ppm, img-128x128.ppm, img-224x168.ppm, img-112x112.ppm, img-112x112-b.ppm (second frame of a
  pair: the first shifted, with fresh noise), img-56x56.ppm
Deterministic: numpy RandomState per file, so two runs give identical bytes.
"""
import os
import sys

import numpy as np

import gguf

N_TEXT = 64
D = 32
F = 96
HEADS = 4
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class Gen:
    def __init__(self, seed):
        self.r = np.random.RandomState(seed)

    def lin(self, out, inp):  # Linear weight, PyTorch order (out, in)
        return (self.r.standard_normal((out, inp)) / np.sqrt(inp)).astype(np.float32)

    def bias(self, n):
        return (0.02 * self.r.standard_normal(n)).astype(np.float32)

    def normw(self, n):
        return (1.0 + 0.1 * self.r.standard_normal(n)).astype(np.float32)

    def conv(self, d, p):
        return (self.r.standard_normal((d, 3, p, p)) / np.sqrt(3 * p * p)).astype(np.float32)

    def table(self, n, d, scale=0.5):
        return (scale * self.r.standard_normal((n, d))).astype(np.float32)


def store(w, name, arr, qtype=None):
    """qtype None: as is (F32); 'f16'; 'q8_0'."""
    if qtype == "f16":
        w.add_tensor(name, arr.astype(np.float16))
    elif qtype == "q8_0":
        q = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:
        w.add_tensor(name, arr.astype(np.float32))


def header(w, proj, image_size, patch, n_blocks, eps, mean, std, ftype):
    w.add_type("mmproj")
    w.add_file_type(ftype)
    w.add_clip_has_vision_encoder(True)
    w.add_clip_projector_type(proj)
    w.add_vision_image_size(image_size)
    w.add_vision_patch_size(patch)
    w.add_vision_embedding_length(D)
    w.add_vision_feed_forward_length(F)
    w.add_vision_block_count(n_blocks)
    w.add_vision_head_count(HEADS)
    w.add_vision_projection_dim(N_TEXT)
    w.add_vision_attention_layernorm_eps(eps)
    w.add_vision_image_mean([float(x) for x in mean])
    w.add_vision_image_std([float(x) for x in std])


def blocks(w, g, n_blocks, mat, rms=False, gate=False):
    for i in range(n_blocks):
        b = f"v.blk.{i}"
        store(w, f"{b}.ln1.weight", g.normw(D))
        if not rms:
            store(w, f"{b}.ln1.bias", g.bias(D))
        for t in ("q", "k", "v", "out"):
            store(w, f"{b}.attn_{t}.weight", g.lin(D, D), mat)
            store(w, f"{b}.attn_{t}.bias", g.bias(D))
        store(w, f"{b}.ln2.weight", g.normw(D))
        if not rms:
            store(w, f"{b}.ln2.bias", g.bias(D))
        store(w, f"{b}.ffn_up.weight", g.lin(F, D), mat)
        store(w, f"{b}.ffn_up.bias", g.bias(F))
        if gate:
            store(w, f"{b}.ffn_gate.weight", g.lin(F, D), mat)
            store(w, f"{b}.ffn_gate.bias", g.bias(F))
        store(w, f"{b}.ffn_down.weight", g.lin(D, F), mat)
        store(w, f"{b}.ffn_down.bias", g.bias(D))


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def idefics3(path, seed, image_size, s, n_blocks=2, mat=None, preproc=0):
    p = 16
    g = Gen(seed)
    w = gguf.GGUFWriter(path, "clip")
    header(w, "idefics3", image_size, p, n_blocks, 1e-6, [0.5] * 3, [0.5] * 3, 1 if mat == "f16" else 0)
    w.add_vision_use_gelu(True)
    w.add_vision_projector_scale_factor(s)
    if preproc:
        w.add_vision_preproc_image_size(preproc)
    n_pos = (image_size // p) ** 2
    store(w, "v.patch_embd.weight", g.conv(D, p))
    store(w, "v.patch_embd.bias", g.bias(D))
    store(w, "v.position_embd.weight", g.table(n_pos, D))
    blocks(w, g, n_blocks, mat)
    store(w, "v.post_ln.weight", g.normw(D))
    store(w, "v.post_ln.bias", g.bias(D))
    store(w, "mm.model.fc.weight", g.lin(N_TEXT, D * s * s), mat)
    finish(w)


def qwen(path, seed, v25, n_blocks=2, mat=None):
    p = 14
    g = Gen(seed)
    w = gguf.GGUFWriter(path, "clip")
    header(w, "qwen2.5vl_merger" if v25 else "qwen2vl_merger", 560, p, n_blocks, 1e-6, CLIP_MEAN, CLIP_STD,
           7 if mat == "q8_0" else 1)
    w.add_vision_spatial_merge_size(2)
    if v25:
        w.add_vision_use_silu(True)
        w.add_vision_n_wa_pattern(2)
    store(w, "v.patch_embd.weight", g.conv(D, p), "f16")
    store(w, "v.patch_embd.weight.1", g.conv(D, p), "f16")
    blocks(w, g, n_blocks, mat, rms=v25, gate=v25)
    store(w, "v.post_ln.weight", g.normw(D))
    if not v25:
        store(w, "v.post_ln.bias", g.bias(D))
    store(w, "mm.0.weight", g.lin(4 * D, 4 * D), mat)
    store(w, "mm.0.bias", g.bias(4 * D))
    store(w, "mm.2.weight", g.lin(N_TEXT, 4 * D), mat)
    store(w, "mm.2.bias", g.bias(N_TEXT))
    finish(w)


def mlp(path, seed, image_size=56, n_blocks=3, hidden=64):
    p = 14
    g = Gen(seed)
    w = gguf.GGUFWriter(path, "clip")
    header(w, "mlp", image_size, p, n_blocks, 1e-5, CLIP_MEAN, CLIP_STD, 0)
    w.add_vision_use_gelu(False)  # QuickGELU in the tower, as CLIP
    n_pos = (image_size // p) ** 2  # no class embedding (§2.3)
    store(w, "v.patch_embd.weight", g.conv(D, p))
    store(w, "v.position_embd.weight", g.table(n_pos, D))
    store(w, "v.pre_ln.weight", g.normw(D))
    store(w, "v.pre_ln.bias", g.bias(D))
    blocks(w, g, n_blocks, None)
    store(w, "mm.0.weight", g.lin(hidden, D))
    store(w, "mm.0.bias", g.bias(hidden))
    store(w, "mm.2.weight", g.lin(N_TEXT, hidden))
    store(w, "mm.2.bias", g.bias(N_TEXT))
    finish(w)


EXTRA_TOKENS = ["\n\n", "<fake_token_around_image>", "<global-img>", "<|vision_start|>", "<|vision_end|>"]


def add_vocab(w):
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % i for i in range(256)] + EXTRA_TOKENS
    types = [2, 3, 3] + [6] * 256 + [4] * len(EXTRA_TOKENS)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(toks)
    w.add_token_scores([0.0] * len(toks))
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    return len(toks)


def text_qwen2vl(path, seed, n_ff=96, heads=2):
    """A tiny `qwen2vl` text model (M-RoPE, rope.dimension_sections [4, 6, 6, 0] for head 32; n_embd = N_TEXT;
    1 layer; tied output; F16 matrices; vocab as vocab-vlm.gguf). longview's gen-model has no qwen2vl yet,
    so the file itself is committed. Only its architecture matters to the goldens that use it: with an
    M-RoPE text model mtmd gives Qwen image chunks their nx x ny grid, n_pos = max(nx, ny) and 2-D
    decoder positions; with a llama text model nx = n_tokens, ny = 1 and n_pos = n_tokens."""
    g = Gen(seed)
    w = gguf.GGUFWriter(path, "qwen2vl")
    w.add_context_length(4096)
    w.add_embedding_length(N_TEXT)
    w.add_block_count(1)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1000000.0)
    w.add_rope_dimension_sections([4, 6, 6, 0])
    w.add_file_type(1)
    n_vocab = add_vocab(w)
    store(w, "token_embd.weight", g.table(n_vocab, N_TEXT, 1.0), "f16")
    b = "blk.0"
    store(w, f"{b}.attn_norm.weight", g.normw(N_TEXT))
    for t in ("q", "k", "v"):
        store(w, f"{b}.attn_{t}.weight", g.lin(N_TEXT, N_TEXT), "f16")
        store(w, f"{b}.attn_{t}.bias", g.bias(N_TEXT))
    store(w, f"{b}.attn_output.weight", g.lin(N_TEXT, N_TEXT), "f16")
    store(w, f"{b}.ffn_norm.weight", g.normw(N_TEXT))
    store(w, f"{b}.ffn_gate.weight", g.lin(n_ff, N_TEXT), "f16")
    store(w, f"{b}.ffn_up.weight", g.lin(n_ff, N_TEXT), "f16")
    store(w, f"{b}.ffn_down.weight", g.lin(N_TEXT, n_ff), "f16")
    store(w, "output_norm.weight", g.normw(N_TEXT))
    finish(w)


def vocab(path):
    """A vocabulary-only GGUF for `longview gen-model --vocab`: builtin:bytes' 259 tokens (<unk>, <s>, </s>,
    <0x00>..<0xFF>, SentencePiece with byte fallback) plus, as user-defined tokens, the pieces mtmd looks
    up as whole tokens for idefics3 (its overview markers "\n\n", <fake_token_around_image>, <global-img>:
    missing ones become id -1, which llama_decode rejects) and Qwen's <|vision_start|>, <|vision_end|>."""
    w = gguf.GGUFWriter(path, "llama")
    add_vocab(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def image(path, wd, ht, seed, shift=0, noise_seed=None):
    r = np.random.RandomState(seed)
    y, x = np.mgrid[0:ht, 0:wd].astype(np.float64)
    x = x + shift
    img = np.empty((ht, wd, 3))
    for c in range(3):
        a, b, ph = r.uniform(1.0, 3.0), r.uniform(1.0, 3.0), r.uniform(0, 2 * np.pi)
        img[..., c] = (128 + 60 * np.sin(2 * np.pi * a * x / 64 + ph) * np.cos(2 * np.pi * b * y / 64)
                       + 50 * (x / max(wd, 1) - 0.5) * (1 if c != 1 else -1) + 40 * (y / max(ht, 1) - 0.5))
    if noise_seed is not None:
        r = np.random.RandomState(noise_seed)
    img += r.uniform(-24, 24, img.shape)
    u8 = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (wd, ht))
        f.write(u8.tobytes())


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/golden/vision"
    os.makedirs(out, exist_ok=True)
    j = lambda n: os.path.join(out, n)
    idefics3(j("idefics3-s2.gguf"), 101, 64, 2)
    idefics3(j("idefics3-s2-e128.gguf"), 101, 64, 2, preproc=128)
    idefics3(j("idefics3-s4.gguf"), 102, 128, 4)
    idefics3(j("idefics3-s2-f16.gguf"), 103, 64, 2, mat="f16")
    qwen(j("qwen2vl.gguf"), 201, v25=False)
    qwen(j("qwen25vl.gguf"), 202, v25=True)
    qwen(j("qwen25vl-q8_0.gguf"), 203, v25=True, mat="q8_0")
    mlp(j("mlp.gguf"), 301)
    vocab(j("vocab-vlm.gguf"))
    text_qwen2vl(j("text-qwen2vl.gguf"), 401)
    image(j("img-64x64.ppm"), 64, 64, 1)
    image(j("img-128x128.ppm"), 128, 128, 2)
    image(j("img-224x168.ppm"), 224, 168, 3)
    image(j("img-112x112.ppm"), 112, 112, 4)
    image(j("img-112x112-b.ppm"), 112, 112, 4, shift=6, noise_seed=40)
    image(j("img-56x56.ppm"), 56, 56, 5)
    for n in sorted(os.listdir(out)):
        if n.endswith((".gguf", ".ppm")):
            print(f"{n} {os.path.getsize(j(n))}")


if __name__ == "__main__":
    main()
