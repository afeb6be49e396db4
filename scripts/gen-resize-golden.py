#!/usr/bin/python3
"""Writes tests/golden/vision/: Pillow's resize results and mtmd's preprocessing geometry, the
oracles of tests/vision/test_image.c (format: tests/golden/README.md, "vision/").

    /usr/bin/python3 scripts/gen-resize-golden.py      (Debian python3-pil and python3-numpy)

load/        PNG (RGB, RGBA, grey, grey+alpha, palette, 1-bit), BMP, GIF, TIFF, lossless WebP and JPEG (4:4:4, 4:2:2, 4:2:0)
             files written by Pillow, each with Pillow's own decoding (convert("RGB")) as PPM.
resize/      deterministic source images (uniform noise and smooth gradients; several sizes and
             aspect ratios down to 1 pixel) and Pillow's Image.resize of each to several sizes
             (up, down, non-integer ratios, one axis only, to 1 pixel) with NEAREST, BILINEAR,
             BICUBIC and LANCZOS. Binary PPM (P6) files; cases.txt lists them.
preprocess/  plans.txt: the geometry of llama.cpp v0.4.0 mtmd's preprocessing (tools/mtmd/
             mtmd-image.cpp with clip.cpp's per-type settings) for many image sizes, computed by
             the small re-implementation below (numpy float32 where mtmd uses float, Python
             floats where it uses double), written from reading mtmd, not from longview's C.
             cases.txt + PPMs: a few whole preprocessings done with Pillow (source, expected
             tower inputs stacked top to bottom).
Everything is seeded: a rerun writes the same bytes (for the same Pillow version).
"""
import math
import os
import sys

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "golden", "vision")
F32 = np.float32
FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def write_ppm(path, img):
    img = img.convert("RGB")
    w, h = img.size
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        f.write(img.tobytes())


def noise(w, h, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), "RGB")


def gradient(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for c in range(3):
        fx, fy, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 6.3)
        v = 127.5 + 127.5 * np.sin(fx * 2 * np.pi * x / max(w, 2) + fy * 2 * np.pi * y / max(h, 2) + ph)
        chans.append(v)
    a = np.clip(np.rint(np.stack(chans, axis=-1)), 0, 255).astype(np.uint8)
    # hard edges too: a black / white block, which makes the negative lobes clip
    a[h // 4: h // 2 + 1, w // 4: w // 2 + 1] = 0 if seed % 2 else 255
    return Image.fromarray(a, "RGB")


# (name, kind, w, h, [(dst_w, dst_h), ...])
RESIZE_CASES = [
    ("noise37x23", noise, 37, 23, [(16, 10), (45, 29), (37, 11), (20, 23), (1, 1), (3, 40), (12, 7)]),
    ("grad48x36", gradient, 48, 36, [(24, 18), (35, 25), (7, 5), (13, 36), (49, 37)]),
    ("noise1x1", noise, 1, 1, [(5, 3), (1, 4)]),
    ("grad1x17", gradient, 1, 17, [(1, 5), (4, 40), (3, 17)]),
    ("noise17x1", noise, 17, 1, [(5, 1), (40, 3), (17, 2)]),
    ("noise5x3", noise, 5, 3, [(13, 11), (2, 2), (1, 3), (8, 3)]),
    ("grad100x7", gradient, 100, 7, [(33, 3), (29, 20), (150, 9), (10, 50)]),
    ("noise13x31", noise, 13, 31, [(6, 9), (20, 47), (13, 30), (40, 31)]),
    ("grad29x29", gradient, 29, 29, [(28, 28), (30, 30), (8, 8), (29, 45)]),
]


def gen_resize():
    d = os.path.join(OUT, "resize")
    os.makedirs(d, exist_ok=True)
    lines = ["# source dst_w dst_h filter: resize/src-SOURCE.ppm resized by Pillow %s -> resize/SOURCE-WxH-FILTER.ppm"
             % Image.__version__]
    for i, (name, kind, w, h, targets) in enumerate(RESIZE_CASES):
        src = kind(w, h, 1000 + i)
        write_ppm(os.path.join(d, "src-%s.ppm" % name), src)
        for (tw, th) in targets:
            for fname, flt in FILTERS.items():
                write_ppm(os.path.join(d, "%s-%dx%d-%s.ppm" % (name, tw, th, fname)), src.resize((tw, th), flt))
                lines.append("%s %d %d %s" % (name, tw, th, fname))
    with open(os.path.join(d, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# mtmd's preprocessing geometry, re-implemented
# ---------------------------------------------------------------------------------------------

def c_round(x):  # std::round on a float: half away from zero
    x = float(x)
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def smart_size(w, h, align, min_px, max_px, longest):
    """img_tool::calc_size_preserved_ratio: float32 arithmetic as in mtmd."""
    fa = F32(align)
    if longest > 0:
        s = min(F32(longest) / F32(w), F32(longest) / F32(h))
        wb = int(np.ceil(F32(F32(w) * s) / fa)) * align
        hb = int(np.ceil(F32(F32(h) * s) / fa)) * align
    else:
        wb = max(align, c_round(F32(w) / fa) * align)
        hb = max(align, c_round(F32(h) / fa) * align)
    if max_px > 0 and wb * hb > max_px:
        beta = np.sqrt(F32(F32(h) * F32(w)) / F32(max_px))
        hb = max(align, int(np.floor(F32(F32(h) / beta) / fa)) * align)
        wb = max(align, int(np.floor(F32(F32(w) / beta) / fa)) * align)
    elif min_px > 0 and wb * hb < min_px:
        beta = np.sqrt(F32(min_px) / F32(F32(h) * F32(w)))
        hb = int(np.ceil(F32(F32(h) * beta) / fa)) * align
        wb = int(np.ceil(F32(F32(w) * beta) / fa)) * align
    return wb, hb


def fit_ceil(sw, sh, w, h):
    """img_tool::resize with PAD_CEIL: (fit_w, fit_h, x, y)."""
    if (sw, sh) == (w, h):
        return w, h, 0, 0
    s = min(F32(w) / F32(sw), F32(h) / F32(sh))
    fw = min(int(np.ceil(F32(F32(sw) * s))), w)
    fh = min(int(np.ceil(F32(F32(sh) * s))), h)
    return fw, fh, (w - fw) // 2, (h - fh) // 2


def plan(typ, S, P, merge, E, mint, maxt, w, h):
    """None if mtmd refuses; else dict of the geometry."""
    if typ == "idefics3":
        merge = merge or 1
        area = P * P * merge * merge
        min_px = mint * area if mint > 0 else -1
        max_px = maxt * area if maxt > 0 else -1
        if max_px < min_px:
            return None  # clip.cpp: image_max_pixels < image_min_pixels
        if E > 0 and min_px <= 0 and max_px <= 0:
            ar = w / h  # double
            if w >= h:
                rw, rh = E, int(E / ar)
                rh += rh % 2
            else:
                rw, rh = int(E * ar), E
                rw += rw % 2
            if rw <= 0 or rh <= 0:
                return None
            cols, rows = -(-rw // S), -(-rh // S)
            return dict(w=S, h=S, rows=rows, cols=cols, resw=rw, resh=rh, refw=cols * S, refh=rows * S,
                        fit=(cols * S, rows * S, 0, 0), lanczos=1)
        rw, rh = smart_size(w, h, S, max(min_px, 0), max(max_px, 0), E)
        cols, rows = int(np.ceil(F32(rw) / F32(S))), int(np.ceil(F32(rh) / F32(S)))
        return dict(w=S, h=S, rows=rows, cols=cols, resw=0, resh=0, refw=rw, refh=rh, fit=fit_ceil(w, h, rw, rh),
                    lanczos=0)
    if typ in ("qwen2vl", "qwen25vl"):
        merge = merge or 2
        area = P * P * merge * merge
        min_px = (mint if mint > 0 else 8) * area
        max_px = (maxt if maxt > 0 else 4096) * area
        if max_px < min_px:
            return None
        rw, rh = smart_size(w, h, P * merge, min_px, max_px, 0)
        return dict(w=rw, h=rh, rows=0, cols=0, resw=0, resh=0, refw=rw, refh=rh, fit=fit_ceil(w, h, rw, rh), lanczos=0)
    assert typ == "mlp"
    return dict(w=S, h=S, rows=0, cols=0, resw=0, resh=0, refw=S, refh=S, fit=fit_ceil(w, h, S, S), lanczos=0)


SIZES = [(1, 1), (2, 3), (28, 28), (27, 29), (64, 64), (100, 37), (37, 100), (224, 168), (336, 336), (448, 448),
         (500, 375), (375, 500), (512, 512), (640, 480), (801, 599), (1000, 20), (20, 1000), (1280, 720),
         (1920, 1080), (1080, 1920), (3000, 4000), (4032, 3024), (7, 5000), (5000, 7), (16384, 16384), (16384, 1)]
CONFIGS = [
    # type, image_size, patch, merge, preproc_image_size, min_tokens, max_tokens
    ("idefics3", 512, 16, 4, 2048, 0, 0),     # SmolVLM2-256M/500M
    ("idefics3", 384, 14, 3, 1536, 0, 0),     # SmolVLM2-2.2B
    ("idefics3", 512, 16, 4, 0, 0, 0),        # an older file: generic slicing
    ("idefics3", 512, 16, 4, 2048, 0, 1024),  # user limits: generic slicing with longest_edge
    ("idefics3", 512, 16, 4, 2048, 64, 0),    # min without max: refused
    ("idefics3", 32, 8, 2, 64, 0, 0),         # the tiny test shape
    ("qwen2vl", 560, 14, 2, 0, 0, 0),
    ("qwen25vl", 560, 14, 2, 0, 0, 0),
    ("qwen25vl", 560, 14, 2, 0, 1024, 0),     # --image-min-tokens 1024
    ("qwen25vl", 560, 14, 2, 0, 0, 64),       # --image-max-tokens 64
    ("qwen25vl", 560, 14, 2, 0, 100, 50),     # refused
    ("mlp", 336, 14, 0, 0, 0, 0),
    ("mlp", 56, 14, 0, 0, 0, 0),
]


def gen_plans():
    d = os.path.join(OUT, "preprocess")
    os.makedirs(d, exist_ok=True)
    lines = ["# type image_size patch merge preproc_image_size min_tokens max_tokens src_w src_h : status out_w out_h "
             "rows cols lanczos resized_w resized_h refined_w refined_h fit_w fit_h fit_x fit_y"]
    for cfg in CONFIGS:
        for (w, h) in SIZES:
            p = plan(*cfg, w, h)
            head = "%s %d %d %d %d %d %d %d %d :" % (cfg + (w, h))
            if p is None:
                lines.append(head + " err")
            else:
                lines.append(head + " ok %d %d %d %d %d %d %d %d %d %d %d %d %d" % (
                    p["w"], p["h"], p["rows"], p["cols"], p["lanczos"], p["resw"], p["resh"], p["refw"], p["refh"],
                    *p["fit"]))
    with open(os.path.join(d, "plans.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def run_prep(cfg, src):
    """The whole preprocessing with Pillow, following mtmd's steps."""
    p = plan(*cfg, *src.size)
    typ = cfg[0]

    def fitted(img, outw, outh, flt, color):
        fw, fh, fx, fy = p["fit"]
        if (fw, fh) == (outw, outh):
            return img.resize((outw, outh), flt)
        canvas = Image.new("RGB", (outw, outh), color)
        canvas.paste(img.resize((fw, fh), flt), (fx, fy))
        return canvas

    if typ == "idefics3":
        S = p["w"]
        if p["lanczos"]:
            refined = src.resize((p["resw"], p["resh"]), Image.LANCZOS).resize((p["refw"], p["refh"]), Image.LANCZOS)
            ov = refined.resize((S, S), Image.LANCZOS)
        else:
            refined = fitted(src, p["refw"], p["refh"], Image.BICUBIC, (0, 0, 0))
            ov = src.resize((S, S), Image.BICUBIC)
        tiles = [refined.crop((x * S, y * S, x * S + S, y * S + S)) for y in range(p["rows"]) for x in range(p["cols"])]
        outs = tiles + [ov]
    elif typ == "mlp":
        outs = [fitted(src, p["w"], p["h"], Image.BICUBIC, (122, 116, 104))]
    else:
        outs = [fitted(src, p["w"], p["h"], Image.BICUBIC, (0, 0, 0))]
    w, h = outs[0].size
    stack = Image.new("RGB", (w, h * len(outs)))
    for i, o in enumerate(outs):
        stack.paste(o, (0, i * h))
    return stack, len(outs)


PREP_CASES = [
    # name, config, source kind, w, h
    ("idefics3-lanczos", ("idefics3", 16, 8, 2, 40, 0, 0), gradient, 50, 30),
    ("idefics3-lanczos-tall", ("idefics3", 16, 8, 2, 40, 0, 0), noise, 21, 40),
    ("idefics3-slices", ("idefics3", 16, 8, 2, 0, 0, 0), gradient, 50, 30),
    ("idefics3-square", ("idefics3", 16, 8, 2, 0, 0, 0), noise, 16, 16),
    ("qwen-min", ("qwen25vl", 560, 14, 2, 0, 2, 0), gradient, 20, 15),
    ("qwen-pad", ("qwen2vl", 560, 14, 2, 0, 1, 0), noise, 61, 20),
    ("mlp-wide", ("mlp", 42, 14, 0, 0, 0, 0), gradient, 40, 25),
    ("mlp-tall", ("mlp", 42, 14, 0, 0, 0, 0), noise, 9, 70),
]


def gen_prep_cases():
    d = os.path.join(OUT, "preprocess")
    lines = ["# name type image_size patch merge preproc_image_size min_tokens max_tokens n_images: "
             "preprocess/NAME-src.ppm -> preprocess/NAME-out.ppm (the tower inputs stacked top to bottom)"]
    for i, (name, cfg, kind, w, h) in enumerate(PREP_CASES):
        src = kind(w, h, 2000 + i)
        out, n = run_prep(cfg, src)
        write_ppm(os.path.join(d, name + "-src.ppm"), src)
        write_ppm(os.path.join(d, name + "-out.ppm"), out)
        lines.append("%s %s %d %d %d %d %d %d %d" % ((name,) + cfg + (n,)))
    with open(os.path.join(d, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def gen_load():
    """Files for lv_image_load, each with Pillow's convert("RGB") of it as NAME.ppm."""
    d = os.path.join(OUT, "load")
    os.makedirs(d, exist_ok=True)
    rgb = gradient(23, 17, 3000)
    rng = np.random.default_rng(3001)
    alpha = Image.fromarray(rng.integers(0, 256, size=(17, 23), dtype=np.uint8), "L")
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    files = [
        ("rgb.png", rgb, {}),
        ("rgba.png", rgba, {}),
        ("grey.png", rgb.convert("L"), {}),
        ("greya.png", rgb.convert("LA"), {}),
        ("palette.png", rgb.convert("P", palette=Image.ADAPTIVE, colors=37), {}),
        ("bilevel.png", rgb.convert("1"), {}),
        ("rgb.bmp", rgb, {}),
        ("palette.gif", rgb.convert("P", palette=Image.ADAPTIVE, colors=50), {}),
        ("rgb.tif", rgb, {}),
        ("rgba-deflate.tif", rgba, {"compression": "tiff_adobe_deflate"}),
        ("lossless.webp", rgb, {"lossless": True}),
        ("q95-444.jpg", rgb, {"quality": 95, "subsampling": 0}),
        ("q90-420.jpg", gradient(40, 30, 3002), {"quality": 90, "subsampling": 2}),
        ("q85-420-odd.jpg", rgb, {"quality": 85, "subsampling": 2}),
        ("q90-422.jpg", gradient(31, 20, 3003), {"quality": 90, "subsampling": 1}),
    ]
    lines = ["# file: load/FILE decodes (Pillow, convert(\"RGB\")) to load/FILE.ppm"]
    for name, img, kw in files:
        path = os.path.join(d, name)
        img.save(path, **kw)
        write_ppm(path + ".ppm", Image.open(path).convert("RGB"))
        lines.append(name)
    with open(os.path.join(d, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    gen_resize()
    gen_load()
    gen_plans()
    gen_prep_cases()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print("gen-resize-golden: Pillow %s, %d bytes in %s" % (Image.__version__, total, os.path.relpath(OUT, ROOT)),
          file=sys.stderr)


if __name__ == "__main__":
    main()
