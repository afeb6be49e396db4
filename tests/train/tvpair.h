/*
 * tvpair.h: a trainer-initialised text model + mmproj pair (issue 20), deterministic from a seed,
 * written with the trainer's own exporters (lv_tmodel_export_gguf, lv_tvmodel_export_gguf). The
 * llama.cpp check of the exporters (scripts/gen-tvision-golden.sh, tests/golden/tvision/) writes
 * the pair with `build/<mode>/tvpair_gen`, and tests/vision/test_vision_golden.c writes it again
 * in-process and checks that the SHA-256 of both files equal the goldens'.
 *
 * The shapes (fixed; the spec string chooses seed, matrix type and pixel-shuffle factor):
 *   tower: idefics3, 64 px images, patch 8 (an 8 x 8 grid), width 64, 4 heads, 2 blocks, FFN 160,
 *          shuffle s (2: 16 tokens per tile, 4: 4 tokens), into 128 (the text model's width)
 *   text:  llama, 2 layers, width 128, 4 heads (2 KV heads, head 32), FFN 256, tied output,
 *          vocabulary builtin:bytes-vision (builtin:bytes' 259 tokens, SmolVLM2's 4 markers and
 *          "\n\n", no space prefix: the trained video models' vocabulary, docs/train.md)
 * Weights: lv_tvmodel_init / lv_tmodel_init with std 0.2, then every parameter (norm weights and
 * biases included, which the initialisers set to 1 and 0) plus 0.05 N(0, 1) from lv_tr_fill_normal,
 * so that no tensor is trivial and a swapped or ignored bias or norm shows.
 */
#ifndef LV_TESTS_TVPAIR_H
#define LV_TESTS_TVPAIR_H

#include "longview.h"

#include <stdbool.h>
#include <stdint.h>

#define TVPAIR_VOCAB "builtin:bytes-vision"

typedef struct tvpair_spec {
    uint64_t seed;
    bool f16;  /* f16 matrices in both files (norms, biases, patch kernel and positions stay f32) */
    int scale; /* the pixel-shuffle factor: 2 or 4 */
    bool bytes_vocab; /* "vocab=bytes": builtin:bytes (259 tokens) instead of TVPAIR_VOCAB; mtmd cannot
                       * run idefics3 prompts with it (its overview markers are not tokens: docs/train.md) */
} tvpair_spec;

/* "seed=N type=f32|f16 scale=S [vocab=bytes]" (any order; missing: seed 1, f32, scale 2) */
bool tvpair_parse(const char *s, tvpair_spec *out);
/* The tower of the pair as the trainer holds it (f32), before export. */
struct lv_tvmodel;
lv_status tvpair_tower(const tvpair_spec *sp, struct lv_tvmodel **out);
/* Writes the text model to text_path and the mmproj to mm_path (either may be NULL: skipped). */
lv_status tvpair_write(const tvpair_spec *sp, const char *text_path, const char *mm_path);

#endif
