/*
 * test_embd.c: batches that carry embeddings instead of token ids (LV_TOKEN_EMBD rows) and the
 * four positions of M-RoPE models (qwen2vl), against the token path and the 1-D path they must
 * equal; the context's rotary offset after an image; bad batches refused with the cache intact.
 */
#include "lv_test.h"
#include "longview.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static lv_model *tiny(const char *arch, const char *name) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/embd-%s.gguf", lv_test_tmpdir(), name);
    lv_genmodel_params gp = lv_genmodel_default_params();
    gp.arch = arch;
    gp.n_embd = 64;
    gp.n_layer = 2;
    gp.n_head = 4;
    gp.n_head_kv = 2;
    gp.n_ff = 96;
    gp.vocab_path = "builtin:bytes";
    gp.seed = 5;
    lv_model *m = NULL;
    if (lv_genmodel_write(&gp, path) != LV_OK || lv_model_load(path, lv_model_default_params(), &m) != LV_OK) return NULL;
    return m;
}

static lv_context *ctx_for(lv_model *m) {
    lv_context_params cp = lv_context_default_params();
    cp.n_ctx = 128;
    cp.n_batch = cp.n_ubatch = 64;
    cp.n_threads = 2;
    cp.kv_type = LV_KV_F32;
    lv_context *c = NULL;
    return lv_context_create(m, cp, &c) == LV_OK ? c : NULL;
}

static float max_diff(const float *a, const float *b, int n) {
    float d = 0;
    for (int i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - b[i]));
    return d;
}

/* An image-like prompt (text, rows of random embeddings, text; the text rows' embd is NaN, which
 * must be ignored) decoded in one batch, and split in two batches at several places: the same
 * logits bit for bit, so embedding rows enter the cache and are attended like tokens. (The end
 * to end checks against llama.cpp are in tests/vision/test_vision_golden.c.) */
TEST(embd_rows_split_batches_equal_one_batch) {
    lv_model *m = tiny("llama", "llama");
    REQUIRE(m, "model: %s", lv_last_error());
    const int E = lv_model_n_embd(m), V = lv_model_n_vocab(m), n = 24;
    lv_test_rng r = {lv_test_seed()};
    lv_batch b = lv_batch_init_embd(n, E);
    for (int i = 0; i < n; i++) {
        const bool img = i >= 4 && i < 16;
        b.token[i] = img ? LV_TOKEN_EMBD : (lv_token)(3 + lv_test_rng_u64(&r) % 200);
        for (int e = 0; e < E; e++) b.embd[i * E + e] = img ? 0.5f * lv_test_rng_f32(&r) : NAN; /* ignored for text rows */
        b.pos[i] = i;
        b.seq_id[i] = 0;
        b.logits[i] = 1;
    }
    b.n_tokens = n;
    lv_batch one = b;
    one.pos_mrope = NULL;
    lv_context *c1 = ctx_for(m);
    REQUIRE(c1 && lv_decode(c1, &one) == LV_OK, "one batch: %s", lv_last_error());
    for (int cut = 1; cut < n; cut += 5) {
        lv_context *c2 = ctx_for(m);
        lv_batch a = one, z = one;
        a.n_tokens = cut;
        z.token += cut, z.pos += cut, z.seq_id += cut, z.logits += cut, z.embd += (size_t)cut * E;
        z.n_tokens = n - cut;
        REQUIRE(c2 && lv_decode(c2, &a) == LV_OK && lv_decode(c2, &z) == LV_OK, "split at %d: %s", cut, lv_last_error());
        const float d = max_diff(lv_get_logits_ith(c1, n - 1), lv_get_logits_ith(c2, n - cut - 1), V);
        CHECK(d == 0.0f, "split at %d: last row differs by %g", cut, d);
        lv_context_free(c2);
    }
    lv_context_free(c1);
    lv_batch_free(&b);
    lv_model_free(m);
}

TEST(embd_bad_batches_refused) {
    lv_model *m = tiny("llama", "llama");
    REQUIRE(m, "model: %s", lv_last_error());
    const int E = lv_model_n_embd(m);
    lv_context *c = ctx_for(m);
    REQUIRE(c, "%s", lv_last_error());
    lv_batch b = lv_batch_init_embd(4, E);
    for (int i = 0; i < 4; i++) {
        b.token[i] = i == 2 ? LV_TOKEN_EMBD : 65;
        b.pos[i] = i;
        b.seq_id[i] = 0;
        b.logits[i] = i == 3;
        for (int e = 0; e < E; e++) b.embd[i * E + e] = 0.1f;
    }
    b.n_tokens = 4;
    lv_batch no_embd = b;
    no_embd.embd = NULL;
    no_embd.pos_mrope = NULL;
    CHECK(lv_decode(c, &no_embd) == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "no embd"), "LV_TOKEN_EMBD without embd: %s", lv_last_error());
    lv_batch nan = b;
    nan.pos_mrope = NULL;
    b.embd[2 * E + 7] = NAN;
    CHECK(lv_decode(c, &nan) == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "non-finite"), "a NaN embedding: %s", lv_last_error());
    b.embd[2 * E + 7] = 0.1f;
    CHECK(lv_decode(c, &b) == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "M-RoPE"), "M-RoPE positions on llama: %s", lv_last_error());
    CHECK(lv_kv_seq_n_tokens(c, 0) == 0, "refused batches leave the cache empty");
    CHECK(lv_decode(c, &nan) == LV_OK, "the fixed batch decodes: %s", lv_last_error());
    lv_context_free(c);
    lv_batch_free(&b);
    lv_model_free(m);
}

/* qwen2vl with text positions (pos_mrope NULL, or explicit (p, p, p, p)) is qwen2: the same
 * weights (gen-model seeds each tensor by its name) give the same logits */
TEST(mrope_text_positions_equal_qwen2) {
    lv_model *vl = tiny("qwen2vl", "qwen2vl"), *q2 = tiny("qwen2", "qwen2");
    REQUIRE(vl && q2, "models: %s", lv_last_error());
    CHECK(lv_model_n_pos_per_token(vl) == 4 && lv_model_n_pos_per_token(q2) == 1, "positions per token");
    const int V = lv_model_n_vocab(vl), n = 20;
    lv_batch b = lv_batch_init_embd(n, lv_model_n_embd(vl));
    for (int i = 0; i < n; i++) {
        b.token[i] = (lv_token)(10 + 7 * i % 200);
        b.pos[i] = i;
        b.seq_id[i] = 0;
        b.logits[i] = i == n - 1;
        for (int k = 0; k < 4; k++) b.pos_mrope[k * n + i] = i;
    }
    b.n_tokens = n;
    lv_batch plain = b;
    plain.pos_mrope = NULL;
    plain.embd = NULL;
    lv_context *cq = ctx_for(q2), *cv = ctx_for(vl), *cv2 = ctx_for(vl);
    REQUIRE(cq && cv && cv2, "%s", lv_last_error());
    REQUIRE(lv_decode(cq, &plain) == LV_OK && lv_decode(cv, &plain) == LV_OK && lv_decode(cv2, &b) == LV_OK, "%s", lv_last_error());
    CHECK(max_diff(lv_get_logits_ith(cq, -1), lv_get_logits_ith(cv, -1), V) == 0.0f, "qwen2vl without M-RoPE rows differs from qwen2");
    CHECK(max_diff(lv_get_logits_ith(cv, -1), lv_get_logits_ith(cv2, -1), V) == 0.0f, "explicit (p, p, p, p) differs from none");
    lv_context_free(cq);
    lv_context_free(cv);
    lv_context_free(cv2);
    lv_batch_free(&b);
    lv_model_free(vl);
    lv_model_free(q2);
}

/* After an image (rows sharing t, spread over h and w), a text token decoded without M-RoPE rows
 * takes the next rotary position (the largest so far + 1): the same logits as giving it
 * explicitly. And the grid positions matter (swapping h and w changes the logits). */
TEST(mrope_offset_after_image) {
    lv_model *vl = tiny("qwen2vl", "qwen2vl");
    REQUIRE(vl, "model: %s", lv_last_error());
    const int E = lv_model_n_embd(vl), V = lv_model_n_vocab(vl);
    lv_test_rng r = {lv_test_seed()};
    /* BOS-like text at 0..1, a 4x3 image at t0 = 2 (rows 2..13), then text */
    const int n = 14, nx = 4;
    lv_batch b = lv_batch_init_embd(n, E);
    for (int i = 0; i < n; i++) {
        const bool img = i >= 2;
        b.token[i] = img ? LV_TOKEN_EMBD : 40 + i;
        for (int e = 0; e < E; e++) b.embd[i * E + e] = img ? 0.5f * lv_test_rng_f32(&r) : 0;
        b.pos[i] = i;
        b.seq_id[i] = 0;
        b.logits[i] = i == n - 1;
        const int j = i - 2;
        b.pos_mrope[i] = img ? 2 : i;
        b.pos_mrope[n + i] = img ? 2 + j / nx : i;
        b.pos_mrope[2 * n + i] = img ? 2 + j % nx : i;
        b.pos_mrope[3 * n + i] = img ? 0 : i;
    }
    b.n_tokens = n;
    /* next rotary position: max(2 + 2, 2 + 3) + 1 = 6, at cache position 14 */
    lv_batch t = lv_batch_init_embd(1, E);
    t.n_tokens = 1;
    t.token[0] = 77;
    t.pos[0] = n;
    t.seq_id[0] = 0;
    t.logits[0] = 1;
    for (int k = 0; k < 4; k++) t.pos_mrope[k] = 6;
    lv_batch t_implicit = t;
    t_implicit.pos_mrope = NULL;
    lv_context *c1 = ctx_for(vl), *c2 = ctx_for(vl), *c3 = ctx_for(vl);
    REQUIRE(c1 && c2 && c3, "%s", lv_last_error());
    REQUIRE(lv_decode(c1, &b) == LV_OK && lv_decode(c1, &t) == LV_OK, "%s", lv_last_error());
    REQUIRE(lv_decode(c2, &b) == LV_OK && lv_decode(c2, &t_implicit) == LV_OK, "%s", lv_last_error());
    CHECK(max_diff(lv_get_logits_ith(c1, -1), lv_get_logits_ith(c2, -1), V) == 0.0f, "the implicit rotary position after the image is not 6");
    /* swapping h and w of the image changes the result (the positions reach the rotation) */
    for (int i = 2; i < n; i++) {
        const lv_pos h = b.pos_mrope[n + i];
        b.pos_mrope[n + i] = b.pos_mrope[2 * n + i];
        b.pos_mrope[2 * n + i] = h;
    }
    REQUIRE(lv_decode(c3, &b) == LV_OK && lv_decode(c3, &t) == LV_OK, "%s", lv_last_error());
    CHECK(max_diff(lv_get_logits_ith(c1, -1), lv_get_logits_ith(c3, -1), V) > 1e-4f, "swapping h and w changed nothing");
    /* clearing the sequence resets the offset: text from position 0 equals a fresh context */
    CHECK(lv_kv_seq_rm(c2, 0, 0, -1) == LV_OK, "clear");
    lv_batch p = t_implicit;
    p.pos[0] = 0;
    lv_context *c4 = ctx_for(vl);
    REQUIRE(c4 && lv_decode(c2, &p) == LV_OK && lv_decode(c4, &p) == LV_OK, "%s", lv_last_error());
    CHECK(max_diff(lv_get_logits_ith(c2, -1), lv_get_logits_ith(c4, -1), V) == 0.0f, "the offset survived clearing the sequence");
    lv_context_free(c1);
    lv_context_free(c2);
    lv_context_free(c3);
    lv_context_free(c4);
    lv_batch_free(&b);
    lv_batch_free(&t);
    lv_model_free(vl);
}
