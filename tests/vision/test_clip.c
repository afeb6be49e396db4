/*
 * test_clip.c: the mmproj loader and the vision encoder.
 *
 * The encoder (src/vision/encode.c: lv_matmul, the tiled attention kernel, per-window jobs) is
 * compared with a slow reference written here from docs/vision.md: double precision, weights
 * dequantized row by row, attention as an explicit softmax over an explicit window mask, the
 * 2-D RoPE from its formula, the token orders (Qwen's 2x2 merge blocks, idefics3's pixel shuffle)
 * from their definitions. It emulates the two ggml roundings the encoder reproduces on purpose
 * (the f16 im2col, the f16 GELU tables). llama.cpp's own answers are in test_vision_golden.c.
 */
#include "gguf_build.h"
#include "lv_test.h"
#include "vision/vision.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the slow reference ---- */

static double *mat_rows(const lv_tensor *W) { /* W as N rows of K doubles */
    const int64_t K = W->ne[0], N = W->ne[1];
    double *m = malloc(sizeof(double) * (size_t)(K * N));
    float *row = malloc(sizeof(float) * (size_t)K);
    for (int64_t j = 0; j < N; j++) {
        lv_to_float_row(W->type, (const uint8_t *)W->data + j * W->row_bytes, row, K);
        for (int64_t k = 0; k < K; k++) m[j * K + k] = row[k];
    }
    free(row);
    return m;
}

/* y (T, N) = x (T, K) W^T + b */
static void ref_linear(const lv_tensor *W, const lv_tensor *b, const double *x, int64_t T, double *y) {
    const int64_t K = W->ne[0], N = W->ne[1];
    double *m = mat_rows(W);
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += x[t * K + k] * m[j * K + k];
            y[t * N + j] = s + (b && b->data ? ((const float *)b->data)[j] : 0.0);
        }
    free(m);
}

static void ref_norm(const lv_clip *c, const lv_tensor *w, const lv_tensor *b, const double *x, double *y, int64_t T, int64_t n) {
    for (int64_t t = 0; t < T; t++) {
        const double *xr = x + t * n;
        double *yr = y + t * n;
        double mean = 0, var = 0;
        if (c->norm == LV_CLIP_LAYERNORM) {
            for (int64_t i = 0; i < n; i++) mean += xr[i];
            mean /= (double)n;
        }
        for (int64_t i = 0; i < n; i++) var += (xr[i] - mean) * (xr[i] - mean);
        const double s = 1.0 / sqrt(var / (double)n + c->eps);
        for (int64_t i = 0; i < n; i++)
            yr[i] = (xr[i] - mean) * s * ((const float *)w->data)[i] + (b && b->data ? ((const float *)b->data)[i] : 0.0);
    }
}

static double f16r(double v) { return lv_fp16_to_fp32(lv_fp32_to_fp16((float)v)); }

/* ggml's tables: f16 in, f16 out (GELU clamped outside +-10) */
static double ref_act(lv_clip_act a, double x) {
    if (a == LV_CLIP_GELU) {
        if (x <= -10) return 0;
        if (x >= 10) return x;
        const float h = (float)f16r(x);
        return f16r(0.5f * h * (1.0f + tanhf(0.79788456080286535587989211986876f * h * (1.0f + 0.044715f * h * h))));
    }
    if (a == LV_CLIP_QUICK_GELU) {
        const float h = (float)f16r(x);
        return f16r(h * (1.0f / (1.0f + expf(-1.702f * h))));
    }
    return x / (1.0 + exp(-x));
}

/* token order of the tower: idx -> patch (row, col) */
static void token_order(const lv_clip *c, int64_t gx, int64_t gy, int32_t *tr, int32_t *tc) {
    int64_t t = 0;
    if (c->proj == LV_PROJ_QWEN2VL || c->proj == LV_PROJ_QWEN25VL) {
        for (int64_t by = 0; by < gy / 2; by++)
            for (int64_t bx = 0; bx < gx / 2; bx++)
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++, t++) {
                        tr[t] = (int32_t)(2 * by + dy);
                        tc[t] = (int32_t)(2 * bx + dx);
                    }
    } else {
        for (int64_t r = 0; r < gy; r++)
            for (int64_t col = 0; col < gx; col++, t++) {
                tr[t] = (int32_t)r;
                tc[t] = (int32_t)col;
            }
    }
}

static void ref_encode(const lv_clip *c, const lv_image *img, const lv_image *img2, double *out) {
    const int64_t p = c->patch_size, gx = img->w / p, gy = img->h / p, N = gx * gy, d = c->n_embd, f = c->n_ff, K = 3 * p * p;
    const int64_t H = c->n_head, D = c->d_head;
    const bool qwen = c->proj == LV_PROJ_QWEN2VL || c->proj == LV_PROJ_QWEN25VL;
    int32_t *tr = malloc(sizeof(int32_t) * (size_t)N), *tc = malloc(sizeof(int32_t) * (size_t)N);
    token_order(c, gx, gy, tr, tc);
    double *x = calloc((size_t)(N * d), sizeof(double)), *cur = malloc(sizeof(double) * (size_t)(N * LV_MAX(d, K)));
    double *q = malloc(sizeof(double) * (size_t)(N * d)), *k = malloc(sizeof(double) * (size_t)(N * d)), *v = malloc(sizeof(double) * (size_t)(N * d));
    double *att = malloc(sizeof(double) * (size_t)(N * d)), *up = malloc(sizeof(double) * (size_t)(N * f)), *gate = malloc(sizeof(double) * (size_t)(N * f));
    double *tmp = malloc(sizeof(double) * (size_t)(N * d)), *sc = malloc(sizeof(double) * (size_t)N);
    /* patch embedding: the conv kernel(s) and pixels rounded to f16 */
    for (int kern = 0; kern < (qwen ? 2 : 1); kern++) {
        const lv_image *im = kern == 1 && img2 ? img2 : img;
        const lv_tensor *W = kern ? &c->patch_w1 : &c->patch_w;
        float *wrow = malloc(sizeof(float) * (size_t)K);
        for (int64_t t = 0; t < N; t++)
            for (int ch = 0; ch < 3; ch++)
                for (int64_t ky = 0; ky < p; ky++)
                    for (int64_t kx = 0; kx < p; kx++) {
                        const uint8_t u = im->rgb[((tr[t] * p + ky) * im->w + tc[t] * p + kx) * 3 + ch];
                        cur[t * K + (ch * p + ky) * p + kx] = f16r(((float)u / 255.0f - c->mean[ch]) / c->std[ch]);
                    }
        for (int64_t j = 0; j < d; j++) {
            lv_to_float_row(W->type, (const uint8_t *)W->data + j * lv_row_bytes(W->type, K), wrow, K);
            for (int64_t t = 0; t < N; t++) {
                double s = 0;
                for (int64_t i = 0; i < K; i++) s += cur[t * K + i] * f16r(wrow[i]);
                x[t * d + j] += s;
            }
        }
        free(wrow);
    }
    for (int64_t t = 0; t < N; t++)
        for (int64_t j = 0; j < d; j++) {
            if (c->patch_b.data) x[t * d + j] += ((const float *)c->patch_b.data)[j];
            if (c->pos_embd.data) {
                float pr[4096];
                lv_to_float_row(c->pos_embd.type, (const uint8_t *)c->pos_embd.data + t * c->pos_embd.row_bytes, pr, d);
                x[t * d + j] += pr[j];
            }
        }
    if (c->pre_ln_w.data) {
        ref_norm(c, &c->pre_ln_w, &c->pre_ln_b, x, tmp, N, d);
        memcpy(x, tmp, sizeof(double) * (size_t)(N * d));
    }
    const int64_t win = c->n_wa_pattern ? c->window_size / c->patch_size / 2 : 0;
    for (int il = 0; il < c->n_block_run; il++) {
        const lv_clip_block *b = &c->blocks[il];
        ref_norm(c, &b->ln1_w, &b->ln1_b, x, cur, N, d);
        ref_linear(&b->q_w, &b->q_b, cur, N, q);
        ref_linear(&b->k_w, &b->k_b, cur, N, k);
        ref_linear(&b->v_w, &b->v_b, cur, N, v);
        if (qwen) /* pair (i, i + D/2): angle row * 10000^(-4i/D) for i < D/4, col * 10000^(-4(i - D/4)/D) after */
            for (int64_t t = 0; t < N; t++)
                for (int64_t h = 0; h < H; h++)
                    for (int64_t i = 0; i < D / 2; i++) {
                        const double ang = i < D / 4 ? tr[t] * pow(10000.0, -4.0 * (double)i / (double)D)
                                                     : tc[t] * pow(10000.0, -4.0 * (double)(i - D / 4) / (double)D);
                        double *vecs[2] = {q + t * d + h * D, k + t * d + h * D};
                        for (int r = 0; r < 2; r++) {
                            const double a = vecs[r][i], bb = vecs[r][i + D / 2];
                            vecs[r][i] = a * cos(ang) - bb * sin(ang);
                            vecs[r][i + D / 2] = a * sin(ang) + bb * cos(ang);
                        }
                    }
        const bool windowed = win > 0 && (il + 1) % c->n_wa_pattern != 0;
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < N; t++) {
                double mx = -INFINITY;
                for (int64_t j = 0; j < N; j++) {
                    const bool vis = !windowed || (tr[t] / 2 / win == tr[j] / 2 / win && tc[t] / 2 / win == tc[j] / 2 / win);
                    if (!vis) {
                        sc[j] = -INFINITY;
                        continue;
                    }
                    double s = 0;
                    for (int64_t e = 0; e < D; e++) s += q[t * d + h * D + e] * k[j * d + h * D + e];
                    sc[j] = s / sqrt((double)D);
                    mx = fmax(mx, sc[j]);
                }
                double sum = 0;
                for (int64_t j = 0; j < N; j++) sum += sc[j] = sc[j] == -INFINITY ? 0 : exp(sc[j] - mx);
                for (int64_t e = 0; e < D; e++) {
                    double o = 0;
                    for (int64_t j = 0; j < N; j++) o += sc[j] * v[j * d + h * D + e];
                    att[t * d + h * D + e] = o / sum;
                }
            }
        ref_linear(&b->o_w, &b->o_b, att, N, tmp);
        for (int64_t i = 0; i < N * d; i++) x[i] += tmp[i];
        ref_norm(c, &b->ln2_w, &b->ln2_b, x, cur, N, d);
        ref_linear(&b->up_w, &b->up_b, cur, N, up);
        if (b->gate_w.data) {
            ref_linear(&b->gate_w, &b->gate_b, cur, N, gate);
            for (int64_t i = 0; i < N * f; i++) up[i] *= gate[i] / (1.0 + exp(-gate[i]));
        } else {
            for (int64_t i = 0; i < N * f; i++) up[i] = ref_act(c->act, up[i]);
        }
        ref_linear(&b->down_w, &b->down_b, up, N, tmp);
        for (int64_t i = 0; i < N * d; i++) x[i] += tmp[i];
    }
    if (c->post_ln_w.data) {
        ref_norm(c, &c->post_ln_w, &c->post_ln_b, x, tmp, N, d);
        memcpy(x, tmp, sizeof(double) * (size_t)(N * d));
    }
    if (c->proj == LV_PROJ_IDEFICS3) {
        const int64_t s = c->scale_factor, nx = gx / s, ny = gy / s, kk = d * s * s;
        double *sh = calloc((size_t)(nx * ny * kk), sizeof(double));
        for (int64_t t = 0; t < N; t++) { /* patch (r, c) goes to token (r/s, c/s), slot (r%s, c%s) */
            const int64_t o = (tr[t] / s) * nx + tc[t] / s, slot = (tr[t] % s) * s + tc[t] % s;
            memcpy(sh + o * kk + slot * d, x + t * d, sizeof(double) * (size_t)d);
        }
        ref_linear(&c->mm_fc, NULL, sh, nx * ny, out);
        free(sh);
    } else {
        const int64_t rows = qwen ? N / 4 : N, hid = c->mm0_w.ne[1];
        double *hdn = malloc(sizeof(double) * (size_t)(rows * hid));
        ref_linear(&c->mm0_w, &c->mm0_b, x, rows, hdn);
        for (int64_t i = 0; i < rows * hid; i++) hdn[i] = ref_act(LV_CLIP_GELU, hdn[i]);
        ref_linear(&c->mm2_w, &c->mm2_b, hdn, rows, out);
        free(hdn);
    }
    free(tr), free(tc), free(x), free(cur), free(q), free(k), free(v), free(att), free(up), free(gate), free(tmp), free(sc);
}

/* ---- helpers ---- */

static void random_image(lv_image *img, int32_t w, int32_t h, lv_test_rng *r) {
    lv_image_alloc(img, w, h);
    for (int64_t i = 0; i < (int64_t)w * h * 3; i++) img->rgb[i] = (uint8_t)(lv_test_rng_u64(r) >> 56);
}

static const char *tiny_file(const char *preset, const char *type, int32_t n_text) {
    static char path[4][512];
    static int slot;
    char *p = path[slot++ % 4];
    snprintf(p, 512, "%s/mmproj-%s-%s-%d.gguf", lv_test_tmpdir(), preset, type, n_text);
    lv_status st = lv_mmproj_write_random(preset, type, n_text, -1, 7, 0.05f, p);
    return st == LV_OK ? p : NULL;
}

/* per token: max |a - b| over the output's max |b|; returns the worst token's, *median the median token's */
static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double rel_err(const float *a, const double *b, int64_t n_tok, int64_t n_embd, double *median) {
    double mb = 0;
    for (int64_t i = 0; i < n_tok * n_embd; i++) mb = fmax(mb, fabs(b[i]));
    double *tok = malloc(sizeof(double) * (size_t)n_tok), worst = 0;
    for (int64_t t = 0; t < n_tok; t++) {
        double md = 0;
        for (int64_t i = t * n_embd; i < (t + 1) * n_embd; i++) md = fmax(md, fabs((double)a[i] - b[i]));
        tok[t] = mb > 0 ? md / mb : md;
        worst = fmax(worst, tok[t]);
    }
    qsort(tok, (size_t)n_tok, sizeof(double), cmp_double);
    *median = tok[n_tok / 2];
    free(tok);
    return worst;
}

static void check_against_ref(const char *preset, const char *type, int32_t w, int32_t h, bool pair, double tol_med, double tol_max) {
    const char *path = tiny_file(preset, type, 96);
    REQUIRE(path, "gen-mmproj %s: %s", preset, lv_last_error());
    lv_clip *c = NULL;
    lv_status st = lv_clip_load(path, 96, &c);
    REQUIRE(st == LV_OK, "load %s: %s", preset, lv_last_error());
    lv_test_rng r = {lv_test_seed() ^ (uint64_t)w * 31 ^ (uint64_t)h};
    lv_image a = {0}, b = {0};
    random_image(&a, w, h, &r);
    if (pair) random_image(&b, w, h, &r);
    int32_t n, nx, ny;
    REQUIRE(lv_clip_n_tokens(c, w, h, &n, &nx, &ny) == LV_OK, "n_tokens");
    float *out1 = malloc(sizeof(float) * (size_t)n * (size_t)c->n_out), *out2 = malloc(sizeof(float) * (size_t)n * (size_t)c->n_out);
    double *ref = malloc(sizeof(double) * (size_t)n * (size_t)c->n_out);
    lv_threadpool *tp1 = lv_threadpool_create(1), *tp3 = lv_threadpool_create(3);
    lv_clip_input in = {&a, pair ? &b : NULL};
    CHECK(lv_clip_encode(c, tp1, &in, out1) == LV_OK, "encode: %s", lv_last_error());
    CHECK(lv_clip_encode(c, tp3, &in, out2) == LV_OK, "encode: %s", lv_last_error());
    CHECK(memcmp(out1, out2, sizeof(float) * (size_t)n * (size_t)c->n_out) == 0, "%s: 1 and 3 threads differ", preset);
    ref_encode(c, &a, pair ? &b : NULL, ref);
    double med;
    const double e = rel_err(out1, ref, n, c->n_out, &med);
    CHECK(med <= tol_med && e <= tol_max, "%s %s %dx%d%s: |encoder - reference| / max |reference|: median token %.3g (limit %.3g), worst %.3g (limit %.3g)",
          preset, type, w, h, pair ? " pair" : "", med, tol_med, e, tol_max);
    lv_threadpool_free(tp1);
    lv_threadpool_free(tp3);
    free(out1), free(out2), free(ref);
    lv_image_free(&a);
    lv_image_free(&b);
    lv_clip_free(c);
}

/* f32 weights: float against double accumulation differs by ~1e-6 of the output's scale, and the
 * f16 GELU tables (input and result rounded to f16, as ggml) turn that into a few 1e-5 per token:
 * an input within 1e-6 of an f16 rounding boundary rounds the other way in one of the two, and the
 * projector's GELU sees hundreds of inputs per token (with exact GELU on one side the median token
 * moves to 2.4e-4). A wrong token order, window, RoPE pair or shuffle slot is O(1). */
TEST(vision_encoder_idefics3_matches_reference) {
    check_against_ref("tiny-idefics3", "f32", 64, 64, false, 1.5e-4, 1e-3);
    check_against_ref("tiny-idefics3", "f32", 96, 64, false, 1.5e-4, 1e-3);
}
TEST(vision_encoder_qwen2vl_matches_reference) {
    check_against_ref("tiny-qwen2vl", "f32", 224, 168, false, 1.5e-4, 1e-3);
    check_against_ref("tiny-qwen2vl", "f32", 112, 56, true, 1.5e-4, 1e-3);
}
TEST(vision_encoder_qwen25vl_windows_match_reference) {
    /* 16x12 patches = 8x6 merged tokens = windows of 4x4, 4x4, 4x2, 4x2; blocks 0 and 2 windowed */
    check_against_ref("tiny-qwen25vl", "f32", 224, 168, false, 1.5e-4, 1e-3);
    check_against_ref("tiny-qwen25vl", "f32", 168, 280, true, 1.5e-4, 1e-3);
}
TEST(vision_encoder_mlp_matches_reference) {
    check_against_ref("tiny-mlp", "f32", 56, 56, false, 1.5e-4, 1e-3);
}
/* f16 and q8_0 weights: the activations are converted as the weight type's dot product wants
 * (f16 / q8_0 blocks), which the reference does not do */
TEST(vision_encoder_f16_q8_0_close_to_reference) {
    check_against_ref("tiny-idefics3", "f16", 64, 64, false, 3e-3, 1e-2);
    check_against_ref("tiny-qwen25vl", "q8_0", 224, 168, false, 3e-2, 6e-2);
}

/* ---- the loader ---- */

/* Copy an mmproj file, leaving out key `drop_key` and tensor `drop_tensor`, and setting `u32_key`
 * to an f32 value (a wrong type) when given. */
static const char *mutated(const char *src, const char *drop_key, const char *drop_tensor, const char *f32_key, const char *name) {
    lv_gguf *g = NULL;
    if (lv_gguf_open(src, &g) != LV_OK) return NULL;
    lv_gguf_writer *w = lv_gguf_writer_create();
    for (int64_t i = 0; i < lv_gguf_n_kv(g); i++) {
        const char *k = lv_gguf_key(g, i);
        if (drop_key && strcmp(k, drop_key) == 0) continue;
        if (f32_key && strcmp(k, f32_key) == 0) {
            lv_gguf_writer_set_f32(w, k, 3.0f);
            continue;
        }
        lv_gguf_writer_copy_kv(w, g, i);
    }
    const void *data[512];
    int64_t n = 0;
    for (int64_t i = 0; i < lv_gguf_n_tensors(g) && n < 512; i++) {
        const lv_gguf_tensor *t = lv_gguf_tensor_at(g, i);
        if (drop_tensor && strcmp(t->name, drop_tensor) == 0) continue;
        lv_gguf_writer_add_tensor(w, t->name, (lv_type)t->type, t->n_dims, t->ne);
        data[n++] = t->data;
    }
    gb_buf out = {0};
    const bool ok = gb_write_mem(w, data, &out);
    const char *path = gb_tmp_path(name);
    const bool ok2 = ok && gb_write_file(path, out.p, out.n);
    gb_free(&out);
    lv_gguf_writer_free(w);
    lv_gguf_close(g);
    return ok2 ? path : NULL;
}

static void expect_error(const char *path, int64_t n_text, lv_status want, const char *needle) {
    lv_clip *c = NULL;
    lv_status st = lv_clip_load(path, n_text, &c);
    CHECK(st == want, "%s: status %d, want %d (%s)", path, st, want, lv_last_error());
    CHECK(strstr(lv_last_error(), needle) != NULL, "error '%s' does not name '%s'", lv_last_error(), needle);
    CHECK(c == NULL, "a failed load returns no handle");
    lv_clip_free(c);
}

TEST(vision_loader_checks) {
    const char *src = tiny_file("tiny-idefics3", "f32", 96);
    REQUIRE(src, "gen-mmproj: %s", lv_last_error());
    lv_clip *c = NULL;
    REQUIRE(lv_clip_load(src, 96, &c) == LV_OK, "%s", lv_last_error());
    CHECK(c->proj == LV_PROJ_IDEFICS3 && c->n_out == 96 && c->scale_factor == 2 && c->n_block_run == 2, "hyper-parameters");
    lv_clip_free(c);
    /* the projector's width must be the text model's */
    expect_error(src, 128, LV_ERR_INVALID_ARG, "embedding width is 128");
    expect_error(mutated(src, "clip.vision.patch_size", NULL, NULL, "mm-nopatch.gguf"), 0, LV_ERR_FORMAT, "clip.vision.patch_size");
    expect_error(mutated(src, NULL, "v.blk.1.attn_k.weight", NULL, "mm-nok.gguf"), 0, LV_ERR_FORMAT, "v.blk.1.attn_k.weight");
    expect_error(mutated(src, NULL, NULL, "clip.vision.block_count", "mm-f32key.gguf"), 0, LV_ERR_FORMAT, "expected uint32");
    expect_error(mutated(src, "clip.has_vision_encoder", NULL, NULL, "mm-novision.gguf"), 0, LV_ERR_UNSUPPORTED, "no vision encoder");
    expect_error(mutated(src, "clip.vision.projector.scale_factor", NULL, NULL, "mm-noscale.gguf"), 0, LV_ERR_FORMAT, "scale_factor");
    /* a text model is not an mmproj */
    const char *mlp = tiny_file("tiny-mlp", "f32", 96);
    REQUIRE(mlp, "%s", lv_last_error());
    expect_error(mutated(mlp, NULL, "mm.2.weight", NULL, "mm-nomm2.gguf"), 0, LV_ERR_FORMAT, "mm.2.weight");
    const char *q25 = tiny_file("tiny-qwen25vl", "f32", 96);
    REQUIRE(q25, "%s", lv_last_error());
    expect_error(mutated(q25, "clip.vision.n_wa_pattern", NULL, NULL, "mm-nowa.gguf"), 0, LV_ERR_FORMAT, "n_wa_pattern");
    expect_error(mutated(q25, NULL, "v.blk.0.ffn_gate.weight", NULL, "mm-nogate.gguf"), 0, LV_ERR_FORMAT, "ffn_gate");
}

/* mtmd swaps ffn_up and ffn_down when the file names them the other way round (old converters):
 * a file written that way encodes to the same embeddings */
TEST(vision_loader_swapped_ffn_names) {
    const char *src = tiny_file("tiny-mlp", "f32", 96);
    REQUIRE(src, "%s", lv_last_error());
    lv_gguf *g = NULL;
    REQUIRE(lv_gguf_open(src, &g) == LV_OK, "%s", lv_last_error());
    lv_gguf_writer *w = lv_gguf_writer_create();
    for (int64_t i = 0; i < lv_gguf_n_kv(g); i++) lv_gguf_writer_copy_kv(w, g, i);
    const void *data[512];
    int64_t n = 0;
    for (int64_t i = 0; i < lv_gguf_n_tensors(g); i++) {
        const lv_gguf_tensor *t = lv_gguf_tensor_at(g, i);
        char name[96];
        snprintf(name, sizeof(name), "%s", t->name);
        char *u = strstr(name, "ffn_up."), *dn = strstr(name, "ffn_down.");
        if (u) memmove(u + 9, u + 7, strlen(u + 7) + 1), memcpy(u, "ffn_down.", 9);
        else if (dn) memmove(dn + 7, dn + 9, strlen(dn + 9) + 1), memcpy(dn, "ffn_up.", 7);
        lv_gguf_writer_add_tensor(w, name, (lv_type)t->type, t->n_dims, t->ne);
        data[n++] = t->data;
    }
    gb_buf out = {0};
    REQUIRE(gb_write_mem(w, data, &out), "write");
    const char *swapped = gb_tmp_path("mm-swapped.gguf");
    REQUIRE(gb_write_file(swapped, out.p, out.n), "write file");
    gb_free(&out);
    lv_gguf_writer_free(w);
    lv_gguf_close(g);
    lv_clip *a = NULL, *b = NULL;
    REQUIRE(lv_clip_load(src, 0, &a) == LV_OK && lv_clip_load(swapped, 0, &b) == LV_OK, "%s", lv_last_error());
    lv_test_rng r = {lv_test_seed()};
    lv_image img = {0};
    random_image(&img, 56, 56, &r);
    float *o1 = malloc(sizeof(float) * 16 * 96), *o2 = malloc(sizeof(float) * 16 * 96);
    lv_threadpool *tp = lv_threadpool_create(2);
    lv_clip_input in = {&img, NULL};
    CHECK(lv_clip_encode(a, tp, &in, o1) == LV_OK && lv_clip_encode(b, tp, &in, o2) == LV_OK, "encode");
    CHECK(memcmp(o1, o2, sizeof(float) * 16 * 96) == 0, "swapped names give other embeddings");
    lv_threadpool_free(tp);
    free(o1), free(o2);
    lv_image_free(&img);
    lv_clip_free(a);
    lv_clip_free(b);
}

TEST(vision_encoder_rejects_bad_sizes) {
    const char *src = tiny_file("tiny-qwen2vl", "f32", 96);
    REQUIRE(src, "%s", lv_last_error());
    lv_clip *c = NULL;
    REQUIRE(lv_clip_load(src, 0, &c) == LV_OK, "%s", lv_last_error());
    int32_t n, nx, ny;
    CHECK(lv_clip_n_tokens(c, 224, 170, &n, &nx, &ny) == LV_ERR_INVALID_ARG, "170 px is not a whole number of patches");
    CHECK(lv_clip_n_tokens(c, 210, 168, &n, &nx, &ny) == LV_ERR_INVALID_ARG, "15 patches do not make 2x2 blocks");
    CHECK(lv_clip_n_tokens(c, 224, 168, &n, &nx, &ny) == LV_OK && n == 48 && nx == 8 && ny == 6, "224x168: 8x6 merged tokens");
    lv_clip_free(c);
}

/* The clip keeps its activation buffers between encodes (encode.c's workspace): a small input
 * after a large one, a large one after a small one (the buffers grow) and a call made while
 * another holds the buffers (its own allocation) all give exactly what a fresh clip gives. */
static void encode_fresh(const char *path, const lv_image *a, const lv_image *b, lv_threadpool *tp, float *out) {
    lv_clip *c = NULL;
    if (lv_clip_load(path, 96, &c) != LV_OK) return;
    lv_clip_input in = {a, b};
    CHECK(lv_clip_encode(c, tp, &in, out) == LV_OK, "fresh encode: %s", lv_last_error());
    lv_clip_free(c);
}

static void check_reuse(const char *preset, bool pair, const int32_t sizes[][2], int n_sizes) {
    const char *path = tiny_file(preset, "f32", 96);
    REQUIRE(path, "gen-mmproj %s: %s", preset, lv_last_error());
    lv_clip *c = NULL;
    REQUIRE(lv_clip_load(path, 96, &c) == LV_OK, "load: %s", lv_last_error());
    lv_threadpool *tp = lv_threadpool_create(2);
    lv_test_rng r = {lv_test_seed() ^ 0x5eed};
    for (int i = 0; i < n_sizes; i++) {
        const int32_t w = sizes[i][0], h = sizes[i][1];
        lv_image a = {0}, b = {0};
        random_image(&a, w, h, &r);
        if (pair) random_image(&b, w, h, &r);
        int32_t n, nx, ny;
        REQUIRE(lv_clip_n_tokens(c, w, h, &n, &nx, &ny) == LV_OK, "n_tokens");
        const size_t bytes = sizeof(float) * (size_t)n * (size_t)c->n_out;
        float *kept = malloc(bytes), *own = malloc(bytes), *fresh = malloc(bytes);
        memset(fresh, 0xff, bytes);
        lv_clip_input in = {&a, pair ? &b : NULL};
        CHECK(lv_clip_encode(c, tp, &in, kept) == LV_OK, "encode: %s", lv_last_error());
        /* a call while the buffers are taken allocates its own */
        atomic_store(&c->ws_busy, 1);
        CHECK(lv_clip_encode(c, tp, &in, own) == LV_OK, "encode with the buffers taken: %s", lv_last_error());
        CHECK(atomic_load(&c->ws_busy) == 1, "a call that did not take the buffers released them");
        atomic_store(&c->ws_busy, 0);
        encode_fresh(path, &a, pair ? &b : NULL, tp, fresh);
        CHECK(memcmp(kept, fresh, bytes) == 0, "%s %dx%d (input %d of %d): the kept buffers change the output", preset, w, h, i + 1, n_sizes);
        CHECK(memcmp(own, fresh, bytes) == 0, "%s %dx%d: a call's own buffers change the output", preset, w, h);
        CHECK(c->ws != NULL, "the clip keeps its buffers");
        free(kept), free(own), free(fresh);
        lv_image_free(&a);
        lv_image_free(&b);
    }
    lv_threadpool_free(tp);
    lv_clip_free(c);
}

TEST(vision_encoder_reuses_its_buffers_exactly) {
    const int32_t idefics[][2] = {{96, 64}, {64, 64}, {128, 96}, {64, 64}};
    check_reuse("tiny-idefics3", false, idefics, 4);
    const int32_t qwen[][2] = {{112, 112}, {56, 56}, {224, 168}, {112, 112}};
    check_reuse("tiny-qwen25vl", true, qwen, 4);
}
