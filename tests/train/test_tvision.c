/*
 * test_tvision.c: the trainer's vision tower and idefics3 projector (src/train/tvision.c):
 * LayerNorm, GELU and bidirectional attention against finite differences, the tiled bidirectional
 * attention against its reference, pixel shuffle against HF's view / permute definition, the
 * whole tower + projector's gradients against finite differences, fast kernels against the
 * references, thread-count independence, AdamW lowering a loss, and the exported mmproj GGUF
 * loaded by the engine's encoder (src/vision) giving the trainer's embeddings.
 */
#include "longview.h"
#include "lv_test.h"
#include "train/train.h"
#include "vision/vision.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill(lv_test_rng *r, float *p, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) p[i] = lv_test_rng_f32(r) * scale;
}

static double dot_d(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

static float max_abs(const float *a, int64_t n) {
    float m = 0;
    for (int64_t i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i]));
    return m;
}

static float max_abs_diff(const float *a, const float *b, int64_t n) {
    float m = 0;
    for (int64_t i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

static bool grad_close(double an, double fd, double rtol, double atol) { return fabs(an - fd) <= rtol * fabs(fd) + atol; }

static uint8_t *random_images(lv_test_rng *r, int64_t n_img, int64_t S) {
    uint8_t *p = malloc((size_t)(n_img * S * S * 3));
    for (int64_t i = 0; i < n_img * S * S * 3; i++) p[i] = (uint8_t)(lv_test_rng_u64(r) & 255);
    return p;
}

/* ---------------------------------------------------------------------------------------------
 * single ops; loss = sum(c * y) in double
 * ------------------------------------------------------------------------------------------- */

TEST(train_grad_layernorm) {
    lv_test_rng r = {lv_test_seed()};
    enum { n = 37 };
    float x[n], w[n], b[n], y[n], c[n], dx[n], dw[n] = {0}, db[n] = {0}, mu, rs;
    fill(&r, x, n, 2), fill(&r, w, n, 1), fill(&r, b, n, 1), fill(&r, c, n, 1);
    for (int i = 0; i < n; i++) x[i] += 0.7f; /* a mean away from 0 */
    lv_layernorm_ref(x, w, b, y, n, 1e-6f, &mu, &rs);
    lv_tr_layernorm_bwd(x, w, mu, rs, c, dx, false, dw, db, n);
    /* eps 1e-3 on inputs of order 1: truncation ~eps^2 |y'''| ~ 1e-6; float noise of sum(c y)
     * (|sum| ~ 5, rounding ~3e-7 each) / 2 eps ~ 1e-4: hence 5e-3 relative + 5e-4 */
    const float eps = 1e-3f;
    int bad = 0;
    float *ps[] = {x, w, b}, *gs[] = {dx, dw, db};
    for (int which = 0; which < 3; which++)
        for (int i = 0; i < n; i++) {
            float *p = ps[which];
            const float old = p[i];
            p[i] = old + eps;
            lv_layernorm_ref(x, w, b, y, n, 1e-6f, NULL, NULL);
            const double lp = dot_d(c, y, n);
            p[i] = old - eps;
            lv_layernorm_ref(x, w, b, y, n, 1e-6f, NULL, NULL);
            const double lm = dot_d(c, y, n);
            p[i] = old;
            if (!grad_close(gs[which][i], (lp - lm) / (2 * eps), 5e-3, 5e-4)) {
                fprintf(stderr, "    %c[%d]: analytic %g, finite difference %g\n", "xwb"[which], i, (double)gs[which][i], (lp - lm) / (2 * eps));
                bad++;
            }
        }
    CHECK(bad == 0, "%d layernorm gradients differ from finite differences", bad);
    /* accumulate mode adds */
    float dx2[n];
    for (int i = 0; i < n; i++) dx2[i] = 1.0f;
    lv_tr_layernorm_bwd(x, w, mu, rs, c, dx2, true, NULL, NULL, n);
    float worst = 0;
    for (int i = 0; i < n; i++) worst = fmaxf(worst, fabsf(dx2[i] - 1.0f - dx[i]));
    CHECK(worst < 1e-6f, "accumulating layernorm backward differs by %g", (double)worst);
    /* normalised output: mean 0, variance 1 before the affine part */
    float ones[n], zeros[n] = {0};
    for (int i = 0; i < n; i++) ones[i] = 1.0f;
    lv_layernorm_ref(x, ones, zeros, y, n, 0.0f, NULL, NULL);
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) m += y[i];
    for (int i = 0; i < n; i++) v += (y[i] - m / n) * (y[i] - m / n);
    CHECK(fabs(m / n) < 1e-6 && fabs(v / n - 1) < 1e-5, "layernorm mean %g variance %g", m / n, v / n);
}

TEST(train_grad_gelu) {
    lv_test_rng r = {lv_test_seed()};
    enum { n = 60 };
    float x[n], y[n], ye[n], c[n], dx[n];
    fill(&r, x, n, 5), fill(&r, c, n, 1);
    /* forward: the engine's float reference, bit for bit */
    lv_tr_gelu_fwd(x, y, n);
    lv_gelu_ref(x, ye, n);
    CHECK(memcmp(y, ye, sizeof(y)) == 0, "gelu differs from the engine's lv_gelu_ref");
    lv_tr_gelu_bwd(x, c, dx, n);
    /* eps 1e-3: |gelu'''| <= ~2, truncation <= 1e-6; noise of one float product (3e-7 |y|) / 2e-3 */
    const float eps = 1e-3f;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        float xp = x[i] + eps, xm = x[i] - eps, yp, ym;
        lv_tr_gelu_fwd(&xp, &yp, 1);
        lv_tr_gelu_fwd(&xm, &ym, 1);
        const double fd = (double)c[i] * ((double)yp - (double)ym) / (2 * eps);
        if (!grad_close(dx[i], fd, 2e-3, 5e-4)) {
            fprintf(stderr, "    x %g: analytic %g, finite difference %g\n", (double)x[i], (double)dx[i], fd);
            bad++;
        }
    }
    CHECK(bad == 0, "%d gelu gradients differ from finite differences", bad);
}

static double attn_loss(const lv_tr_attn_shape *s, const float *q, const float *k, const float *v, const float *c, float *out) {
    lv_tr_attn_fwd_ref(s, q, k, v, out, NULL);
    return dot_d(c, out, s->T * s->Hq * s->D);
}

TEST(train_grad_attention_bidir) {
    lv_test_rng r = {lv_test_seed()};
    lv_tr_attn_shape s = {.T = 11, .Hq = 4, .Hkv = 2, .D = 6, .scale = 0.4f, .bidir = true};
    enum { NQ = 11 * 4 * 6, NK = 11 * 2 * 6 };
    float q[NQ], k[NK], v[NK], c[NQ], out[NQ], dq[NQ], dk[NK], dv[NK];
    fill(&r, q, NQ, 1.5f), fill(&r, k, NK, 1.5f), fill(&r, v, NK, 1), fill(&r, c, NQ, 1);
    lv_tr_attn_bwd_ref(&s, q, k, v, c, dq, dk, dv);
    /* the tolerance of train_grad_attention (the causal case) */
    int bad = 0;
    const float eps = 1e-2f;
    float *ps[] = {q, k, v}, *gs[] = {dq, dk, dv};
    const int64_t ns[] = {NQ, NK, NK};
    for (int which = 0; which < 3; which++)
        for (int64_t i = 0; i < ns[which]; i++) {
            float *p = ps[which];
            const float old = p[i];
            p[i] = old + eps;
            const double lp = attn_loss(&s, q, k, v, c, out);
            p[i] = old - eps;
            const double lm = attn_loss(&s, q, k, v, c, out);
            p[i] = old;
            if (!grad_close(gs[which][i], (lp - lm) / (2 * eps), 5e-3, 2e-4)) bad++;
        }
    CHECK(bad == 0, "%d bidirectional attention gradients differ from finite differences", bad);
    /* the first query sees the last key: the output of token 0 depends on v[T - 1] */
    float out2[NQ];
    lv_tr_attn_fwd_ref(&s, q, k, v, out, NULL);
    v[(s.T - 1) * s.Hkv * s.D] += 1.0f;
    lv_tr_attn_fwd_ref(&s, q, k, v, out2, NULL);
    CHECK(out2[0] != out[0], "bidirectional attention: token 0 does not see the last key");
}

/* the tiled kernels (bidir) against the references: several blocks, tails, GQA */
TEST(train_attention_tiled_bidir) {
    lv_test_rng r = {lv_test_seed()};
    lv_threadpool *tp = lv_threadpool_create(2);
    REQUIRE(tp, "threadpool");
    const int cases[][4] = {{1, 2, 1, 16}, {64, 4, 4, 16}, {150, 4, 2, 32}, {200, 6, 3, 8}};
    for (size_t ci = 0; ci < LV_ARRAY_LEN(cases); ci++) {
        lv_tr_attn_shape s = {.T = cases[ci][0], .Hq = cases[ci][1], .Hkv = cases[ci][2], .D = cases[ci][3], .bidir = true};
        s.scale = 1.0f / sqrtf((float)s.D);
        const int64_t nq = s.T * s.Hq * s.D, nk = s.T * s.Hkv * s.D;
        float *q = malloc(sizeof(float) * (size_t)nq), *k = malloc(sizeof(float) * (size_t)nk), *v = malloc(sizeof(float) * (size_t)nk);
        float *o0 = malloc(sizeof(float) * (size_t)nq), *o1 = malloc(sizeof(float) * (size_t)nq), *c = malloc(sizeof(float) * (size_t)nq);
        float *l0 = malloc(sizeof(float) * (size_t)(s.T * s.Hq)), *l1 = malloc(sizeof(float) * (size_t)(s.T * s.Hq));
        float *dq0 = malloc(sizeof(float) * (size_t)nq), *dq1 = malloc(sizeof(float) * (size_t)nq);
        float *dk0 = malloc(sizeof(float) * (size_t)nk), *dk1 = malloc(sizeof(float) * (size_t)nk);
        float *dv0 = malloc(sizeof(float) * (size_t)nk), *dv1 = malloc(sizeof(float) * (size_t)nk);
        float *scr = malloc(sizeof(float) * lv_tr_attn_bwd_scratch(&s));
        fill(&r, q, nq, 2), fill(&r, k, nk, 2), fill(&r, v, nk, 1), fill(&r, c, nq, 1);
        lv_tr_attn_fwd_ref(&s, q, k, v, o0, l0);
        lv_tr_attn_fwd(tp, &s, q, k, v, o1, l1);
        lv_tr_attn_bwd_ref(&s, q, k, v, c, dq0, dk0, dv0);
        lv_tr_attn_bwd(tp, &s, q, k, v, o1, l1, c, dq1, dk1, dv1, scr);
        const float mr = max_abs(l0, s.T * s.Hq);
        const float eo = max_abs_diff(o1, o0, nq), el = max_abs_diff(l1, l0, s.T * s.Hq);
        const float eq = max_abs_diff(dq1, dq0, nq), ek = max_abs_diff(dk1, dk0, nk), ev = max_abs_diff(dv1, dv0, nk);
        /* the causal test's tolerances (train_attention_tiled_matches_reference) */
        CHECK(eo < 2e-5f && el < 2e-5f * fmaxf(1, mr) && eq < 1e-4f && ek < 1e-4f && ev < 1e-4f, "case %d (T %d): out %g lse %g dq %g dk %g dv %g",
              (int)ci, (int)s.T, (double)eo, (double)el, (double)eq, (double)ek, (double)ev);
        free(q), free(k), free(v), free(o0), free(o1), free(c), free(l0), free(l1), free(dq0), free(dq1), free(dk0), free(dk1), free(dv0),
            free(dv1), free(scr);
    }
    lv_threadpool_free(tp);
}

/* pixel shuffle against HF's Idefics3Connector.pixel_shuffle, written as its index arithmetic:
 * x.view(h, w/s, s E).permute(1, 0, 2).reshape(w/s, h/s, s^2 E).permute(1, 0, 2) */
TEST(train_tv_pixel_shuffle) {
    const int G = 6, s = 3, n = G / s;
    const int64_t E = 5, P = E * s * s;
    float x[36 * 5], y[4 * 45], back[36 * 5];
    for (int i = 0; i < 36 * 5; i++) x[i] = (float)i;
    lv_tv_pixel_shuffle(x, y, G, s, E, false);
    int bad = 0;
    for (int Y = 0; Y < n; Y++)
        for (int X = 0; X < n; X++)
            for (int64_t j = 0; j < P; j++) {
                /* step 1: a[r][X'][j1] = x[r][s X' + j1 / E][j1 % E], j1 < s E; step 2 (permute):
                 * b[X'][r][j1]; step 3 (reshape to (w/s, h/s, s^2 E)): b viewed with r = s Y' + j / (s E),
                 * j1 = j % (s E); step 4 (permute): token (Y', X') */
                const int64_t r = (int64_t)s * Y + j / (s * E), j1 = j % (s * E);
                const float want = x[(r * G + (int64_t)s * X + j1 / E) * E + j1 % E];
                bad += y[(Y * n + X) * P + j] != want;
            }
    CHECK(bad == 0, "%d pixel-shuffle elements differ from HF's definition", bad);
    memset(back, 0, sizeof(back));
    lv_tv_pixel_shuffle(back, y, G, s, E, true);
    CHECK(memcmp(back, x, sizeof(x)) == 0, "the inverse shuffle does not undo the shuffle");
}

/* ---------------------------------------------------------------------------------------------
 * the whole tower
 * ------------------------------------------------------------------------------------------- */

static lv_tvmodel *tiny_tower(lv_test_rng *r, lv_tv_config c, bool grads) {
    lv_tvmodel *m = NULL;
    if (lv_tvmodel_create(&c, grads, &m) != LV_OK) return NULL;
    lv_tvmodel_init(m, 7, 0.3f);
    for (int64_t i = 0; i < m->n_params; i++) m->params[i] += 0.05f * lv_test_rng_f32(r); /* norms and biases off their init */
    return m;
}

static int64_t out_floats(const lv_tvmodel *m, int n_img) {
    const int64_t g = m->c.image_size / m->c.patch_size / m->c.scale_factor;
    return (int64_t)n_img * g * g * m->c.n_text_embd;
}

static double tower_loss(lv_threadpool *tp, lv_tvmodel *m, lv_tv_state *st, const uint8_t *img, int n_img, const float *c, float *out) {
    LV_ASSERT(lv_tv_forward(tp, m, st, img, n_img, out) == LV_OK);
    return dot_d(c, out, out_floats(m, n_img));
}

TEST(train_tv_grad_tower) {
    lv_test_rng r = {lv_test_seed()};
    lv_threadpool *tp = lv_threadpool_create(1); /* thousands of tiny forward passes */
    /* 16 px, patches of 4: a 4x4 grid, shuffled 2x2 into 4 tokens; 2 layers, 2 heads of 4 */
    const lv_tv_config c = lv_tv_config_default(16, 4, 8, 2, 2, 12, 2, 6);
    lv_tvmodel *m = tiny_tower(&r, c, true);
    REQUIRE(tp && m, "model");
    const int n_img = 2;
    uint8_t *img = random_images(&r, n_img, c.image_size);
    const int64_t no = out_floats(m, n_img);
    float *cw = malloc(sizeof(float) * (size_t)no), *out = malloc(sizeof(float) * (size_t)no);
    fill(&r, cw, no, 1);
    lv_tv_state st = {0};
    lv_tr_set_reference(true);
    REQUIRE(lv_tv_forward(tp, m, &st, img, n_img, out) == LV_OK, "forward");
    lv_tv_backward(tp, m, &st, cw);
    /* every parameter (every third or so under LV_TEST_QUICK: the sanitizer pass), eps 1e-2: the tower is smooth (LayerNorm, tanh GELU, softmax) and its
     * inputs are O(1), so the central difference's truncation error (eps^2 / 6 |f'''|) is about
     * 1e-5 relative; the float noise of the loss (|loss| ~ 10, ~1e-6 relative through the f32
     * activations) divided by 2 eps is about 5e-4: hence |an - fd| <= 1e-2 |fd| + 2e-3 */
    const float eps = 1e-2f;
    int bad = 0;
    double worst = 0;
    int64_t checked = 0;
    for (int64_t i = 0; i < m->n_params; i += lv_test_quick() ? 1 + (int64_t)(lv_test_rng_u64(&r) % 5) : 1) {
        const float old = m->params[i];
        checked++;
        m->params[i] = old + eps;
        const double lp = tower_loss(tp, m, &st, img, n_img, cw, out);
        m->params[i] = old - eps;
        const double lm = tower_loss(tp, m, &st, img, n_img, cw, out);
        m->params[i] = old;
        const double fd = (lp - lm) / (2 * eps);
        if (!grad_close(m->grads[i], fd, 1e-2, 2e-3)) {
            if (bad < 5) fprintf(stderr, "    param %lld: analytic %g, finite difference %g\n", (long long)i, (double)m->grads[i], fd);
            bad++;
        }
        worst = fmax(worst, fabs(m->grads[i] - fd));
    }
    lv_tr_set_reference(false);
    /* gradients reach every tensor: the first and last of each kind are non-zero */
    const bool reach = m->g.patch_w[0] != 0 && m->g.pos[0] != 0 && m->g.layers[0].wq[0] != 0 && m->g.layers[0].ln1_b[0] != 0 &&
                       m->g.post_b[0] != 0 && m->g.proj[0] != 0;
    CHECK(bad == 0 && reach, "%d of %lld tower gradients differ from finite differences (worst %g); every tensor reached: %d", bad,
          (long long)checked, worst, reach);
    free(cw), free(out), free(img);
    lv_tv_state_free(&st);
    lv_tvmodel_free(m);
    lv_threadpool_free(tp);
}

/* a tower large enough for several attention blocks (144 patches) and the GEMM's blocking */
static lv_tv_config mid_config(void) { return lv_tv_config_default(48, 4, 32, 2, 2, 48, 2, 24); }

static void run_step(lv_threadpool *tp, lv_tvmodel *m, const uint8_t *img, int n_img, const float *cw, float *out) {
    lv_tv_state st = {0};
    memset(m->grads, 0, sizeof(float) * (size_t)m->n_params);
    LV_ASSERT(lv_tv_forward(tp, m, &st, img, n_img, out) == LV_OK);
    lv_tv_backward(tp, m, &st, cw);
    lv_tv_state_free(&st);
}

TEST(train_tv_fast_matches_reference) {
    lv_test_rng r = {lv_test_seed()};
    lv_threadpool *tp = lv_threadpool_create(2);
    lv_tvmodel *m = tiny_tower(&r, mid_config(), true);
    REQUIRE(tp && m, "model");
    const int n_img = 2;
    uint8_t *img = random_images(&r, n_img, m->c.image_size);
    const int64_t no = out_floats(m, n_img);
    float *cw = malloc(sizeof(float) * (size_t)no), *o0 = malloc(sizeof(float) * (size_t)no), *o1 = malloc(sizeof(float) * (size_t)no);
    float *g0 = malloc(sizeof(float) * (size_t)m->n_params);
    fill(&r, cw, no, 1);
    lv_tr_set_reference(true);
    run_step(tp, m, img, n_img, cw, o0);
    memcpy(g0, m->grads, sizeof(float) * (size_t)m->n_params);
    lv_tr_set_reference(false);
    run_step(tp, m, img, n_img, cw, o1);
    /* f32 sums in another order (GEMM blocks, online softmax): 1e-4 of the largest value, as
     * train_fast_step_matches_reference */
    const float eo = max_abs_diff(o1, o0, no), mo = max_abs(o0, no);
    const float eg = max_abs_diff(m->grads, g0, m->n_params), mg = max_abs(g0, m->n_params);
    CHECK(eo <= 1e-4f * mo && eg <= 1e-4f * mg, "fast vs reference: outputs %g (max %g), gradients %g (max %g)", (double)eo, (double)mo, (double)eg,
          (double)mg);
    free(cw), free(o0), free(o1), free(g0), free(img);
    lv_tvmodel_free(m);
    lv_threadpool_free(tp);
}

TEST(train_tv_threads_bit_identical) {
    lv_test_rng r = {lv_test_seed()};
    lv_tvmodel *m = tiny_tower(&r, mid_config(), true);
    REQUIRE(m, "model");
    const int n_img = 3;
    uint8_t *img = random_images(&r, n_img, m->c.image_size);
    const int64_t no = out_floats(m, n_img);
    float *cw = malloc(sizeof(float) * (size_t)no), *o1 = malloc(sizeof(float) * (size_t)no), *o3 = malloc(sizeof(float) * (size_t)no);
    float *g1 = malloc(sizeof(float) * (size_t)m->n_params);
    fill(&r, cw, no, 1);
    lv_threadpool *tp1 = lv_threadpool_create(1), *tp3 = lv_threadpool_create(3);
    REQUIRE(tp1 && tp3, "threadpools");
    run_step(tp1, m, img, n_img, cw, o1);
    memcpy(g1, m->grads, sizeof(float) * (size_t)m->n_params);
    run_step(tp3, m, img, n_img, cw, o3);
    CHECK(memcmp(o1, o3, sizeof(float) * (size_t)no) == 0 && memcmp(g1, m->grads, sizeof(float) * (size_t)m->n_params) == 0,
          "1 vs 3 threads: outputs %s, gradients %s", memcmp(o1, o3, sizeof(float) * (size_t)no) ? "differ" : "equal",
          memcmp(g1, m->grads, sizeof(float) * (size_t)m->n_params) ? "differ" : "equal");
    free(cw), free(o1), free(o3), free(g1), free(img);
    lv_threadpool_free(tp1);
    lv_threadpool_free(tp3);
    lv_tvmodel_free(m);
}

/* AdamW (the text model's optimizer, over the tower's flat array) fits two images to random
 * target embeddings: the squared error falls to under a fifth in 40 steps */
TEST(train_tv_adamw_fits) {
    lv_test_rng r = {lv_test_seed()};
    lv_threadpool *tp = lv_threadpool_create(2);
    const lv_tv_config c = lv_tv_config_default(16, 4, 16, 2, 1, 32, 2, 8);
    lv_tvmodel *m = tiny_tower(&r, c, true);
    REQUIRE(tp && m, "model");
    lv_adamw o = {0};
    REQUIRE(lv_tv_adamw_init(&o, m) == LV_OK, "adamw");
    CHECK(o.decay[m->w.proj - m->params] == 1 && o.decay[m->w.pos - m->params] == 0 && o.decay[m->w.layers[0].bq - m->params] == 0,
          "weight decay on matrices only");
    const int n_img = 2;
    uint8_t *img = random_images(&r, n_img, c.image_size);
    const int64_t no = out_floats(m, n_img);
    float *tgt = malloc(sizeof(float) * (size_t)no), *out = malloc(sizeof(float) * (size_t)no), *dout = malloc(sizeof(float) * (size_t)no);
    fill(&r, tgt, no, 1);
    lv_tv_state st = {0};
    double first = 0, last = 0;
    for (int step = 0; step < 40; step++) {
        memset(m->grads, 0, sizeof(float) * (size_t)m->n_params);
        REQUIRE(lv_tv_forward(tp, m, &st, img, n_img, out) == LV_OK, "forward");
        double loss = 0;
        for (int64_t i = 0; i < no; i++) {
            loss += 0.5 * (double)(out[i] - tgt[i]) * (out[i] - tgt[i]) / (double)no;
            dout[i] = (out[i] - tgt[i]) / (float)no;
        }
        lv_tv_backward(tp, m, &st, dout);
        lv_adamw_step(tp, &o, m->params, m->grads, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f);
        if (step == 0) first = loss;
        last = loss;
    }
    CHECK(last < 0.2 * first, "AdamW: squared error %g -> %g", first, last);
    free(tgt), free(out), free(dout), free(img);
    lv_tv_state_free(&st);
    lv_adamw_free(&o);
    lv_tvmodel_free(m);
    lv_threadpool_free(tp);
}

/* The exported mmproj loads in the engine (src/vision's loader and encoder, which follow mtmd) and
 * its embeddings equal the trainer's. The engine rounds the patch kernel and the im2col rows to
 * f16 (relative error 2^-11 on the first product) and looks GELU up in an f16 table (input and
 * result rounded to f16: 1e-3 relative per activation), where the trainer computes in float; an
 * f16 file also rounds every matrix. Those roundings, carried through 2 layers and the
 * projector, move outputs by up to about 1e-3 of the output scale (measured over 6 seeds: largest
 * difference 1.1-1.7e-3 of the largest |embedding| for f32, 1.8-2.7e-3 for f16; mean 2.2-2.4e-4
 * and 3.3-3.7e-4): the test
 * allows 4e-3 (f32) and 6e-3 (f16) of the largest |embedding|, and a fifth of that on the mean.
 * A wrong permutation, weight or key would give differences of the order of the outputs. */
static void check_engine(bool f16) {
    lv_test_rng r = {lv_test_seed()};
    lv_threadpool *tp = lv_threadpool_create(2);
    const lv_tv_config c = lv_tv_config_default(64, 8, 64, 4, 2, 160, 2, 96);
    lv_tvmodel *m = tiny_tower(&r, c, false);
    REQUIRE(tp && m, "model");
    char path[512];
    snprintf(path, sizeof(path), "%s/tvision-%s.gguf", lv_test_tmpdir(), f16 ? "f16" : "f32");
    REQUIRE(lv_tvmodel_export_gguf(m, path, f16, "test") == LV_OK, "export: %s", lv_last_error());
    lv_clip *clip = NULL;
    REQUIRE(lv_clip_load(path, c.n_text_embd, &clip) == LV_OK, "engine load: %s", lv_last_error());
    CHECK(clip->proj == LV_PROJ_IDEFICS3 && clip->scale_factor == 2 && clip->n_block == 2 && clip->act == LV_CLIP_GELU && clip->n_out == 96,
          "engine reads the keys back");
    const int n_img = 3;
    uint8_t *img = random_images(&r, n_img, c.image_size);
    const int64_t no = out_floats(m, n_img), per = no / n_img;
    float *tr = malloc(sizeof(float) * (size_t)no), *en = malloc(sizeof(float) * (size_t)no);
    lv_tv_state st = {0};
    REQUIRE(lv_tv_forward(tp, m, &st, img, n_img, tr) == LV_OK, "trainer forward");
    for (int b = 0; b < n_img; b++) {
        lv_image im = {c.image_size, c.image_size, img + (int64_t)b * c.image_size * c.image_size * 3};
        lv_clip_input in = {&im, NULL};
        REQUIRE(lv_clip_encode(clip, tp, &in, en + b * per) == LV_OK, "engine encode: %s", lv_last_error());
    }
    const float mx = max_abs(tr, no), worst = max_abs_diff(en, tr, no);
    double mean = 0;
    for (int64_t i = 0; i < no; i++) mean += fabs((double)en[i] - tr[i]) / (double)no;
    const float tol = f16 ? 6e-3f : 4e-3f;
    fprintf(stderr, "    %s: trainer vs engine: max |diff| %.3g, mean %.3g, max |embedding| %.3g\n", f16 ? "f16" : "f32", (double)worst, mean, (double)mx);
    CHECK(worst <= tol * mx && mean <= 0.2 * tol * mx, "%s: trainer vs engine embeddings differ by %g (mean %g; largest %g)", f16 ? "f16" : "f32",
          (double)worst, mean, (double)mx);
    /* the trainer reads its file back: f32 bit for bit, f16 each parameter rounded once */
    lv_tvmodel *back = NULL;
    REQUIRE(lv_tvmodel_load_gguf(path, true, &back) == LV_OK, "trainer load: %s", lv_last_error());
    CHECK(!memcmp(&back->c, &m->c, sizeof(m->c)) && back->n_params == m->n_params && back->grads, "configuration read back");
    int64_t off = 0;
    for (int64_t i = 0; back->n_params == m->n_params && i < m->n_params; i++) {
        const float a = m->params[i], b = back->params[i];
        off += f16 ? fabsf(a - b) > fabsf(a) * 4.9e-4f + 6e-8f : a != b;
    }
    CHECK(off == 0, "%s: %lld parameters read back wrong", f16 ? "f16" : "f32", (long long)off);
    lv_tvmodel_free(back);
    free(tr), free(en), free(img);
    lv_tv_state_free(&st);
    lv_clip_free(clip);
    remove(path);
    lv_tvmodel_free(m);
    lv_threadpool_free(tp);
}

TEST(train_tv_export_matches_engine_f32) { check_engine(false); }
TEST(train_tv_export_matches_engine_f16) { check_engine(true); }

TEST(train_tv_config_refused) {
    lv_tv_config c = lv_tv_config_default(64, 8, 64, 4, 2, 64, 2, 96); /* n_ff == n_embd: mtmd would swap the FFN */
    lv_tvmodel *m = NULL;
    CHECK(lv_tvmodel_create(&c, false, &m) == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "n_ff"), "n_ff == n_embd: %s", lv_last_error());
    c = lv_tv_config_default(60, 8, 64, 4, 2, 160, 2, 96);
    CHECK(lv_tvmodel_create(&c, false, &m) == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "image_size"), "60 px: %s", lv_last_error());
    c = lv_tv_config_default(64, 8, 64, 4, 2, 160, 1, 96);
    CHECK(lv_tvmodel_create(&c, false, &m) == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "scale_factor"), "s = 1: %s", lv_last_error());
    CHECK(m == NULL, "nothing allocated");
}

/* ---------------------------------------------------------------------------------------------
 * tower + text model, end to end
 * ------------------------------------------------------------------------------------------- */

typedef struct vl_pair {
    lv_tvmodel *tv;
    lv_tmodel *lm;
    lv_tv_state tst;
    lv_tr_state lst;
    const uint8_t *img;
    int n_img;
    float *embd, *dembd;
    lv_tr_seq seq;
} vl_pair;

static double vl_loss(lv_threadpool *tp, vl_pair *p, bool grad) {
    LV_ASSERT(lv_tv_forward(tp, p->tv, &p->tst, p->img, p->n_img, p->embd) == LV_OK);
    LV_ASSERT(lv_tr_forward(tp, p->lm, &p->lst, &p->seq, NULL) == LV_OK);
    const double loss = lv_tr_xent_loss(tp, p->lm, &p->lst, &p->seq, grad, 1.0f, NULL);
    if (grad) {
        lv_tr_backward(tp, p->lm, &p->lst, &p->seq, NULL);
        lv_tv_backward(tp, p->tv, &p->tst, p->dembd);
    }
    return loss;
}

/* Images through the tower into a llama's sequence in place of tokens, cross-entropy on the text
 * after them: the gradients of both models' parameters against finite differences, and embedding
 * rows equal to token embeddings reproduce the token-only forward bit for bit. */
TEST(train_tv_text_end_to_end) {
    lv_test_rng r = {lv_test_seed()};
    lv_threadpool *tp = lv_threadpool_create(1);
    const lv_tv_config vc = lv_tv_config_default(16, 4, 8, 2, 1, 12, 2, 16); /* 4 tokens of 16 per image */
    lv_tr_config tc = {.arch = LV_ARCH_LLAMA, .n_vocab = 23, .n_embd = 16, .n_layer = 2, .n_head = 4, .n_head_kv = 2, .head_dim = 4,
                       .n_ff = 24, .n_rot = 4, .n_ctx_train = 256, .rope_base = 10000, .norm_eps = 1e-5f, .tied = true};
    vl_pair p = {0};
    p.tv = tiny_tower(&r, vc, true);
    REQUIRE(tp && p.tv && lv_tmodel_create(&tc, true, &p.lm) == LV_OK, "models");
    lv_tmodel_init(p.lm, 3, 0.25f);
    for (int64_t i = 0; i < p.lm->n_params; i++) p.lm->params[i] += 0.05f * lv_test_rng_f32(&r);
    p.n_img = 2;
    uint8_t *img = random_images(&r, p.n_img, vc.image_size);
    p.img = img;
    enum { T = 16, NE = 8 }; /* 3 text tokens, 8 image rows, 5 text tokens */
    int32_t tok[T], pos[T], tgt[T];
    float w[T];
    for (int i = 0; i < T; i++) {
        tok[i] = i >= 3 && i < 3 + NE ? -1 : (int32_t)(lv_test_rng_u64(&r) % 23);
        pos[i] = i;
    }
    for (int i = 0; i < T; i++) {
        tgt[i] = i + 1 < T ? tok[i + 1] : -1;
        w[i] = 1.0f;
    }
    p.embd = malloc(sizeof(float) * NE * 16);
    p.dembd = malloc(sizeof(float) * NE * 16);
    p.seq = (lv_tr_seq){T, tok, pos, tgt, w, p.embd, p.dembd};

    /* embedding rows that are token embeddings: the same hidden states as the tokens */
    {
        int32_t tok2[T];
        for (int i = 0; i < T; i++) tok2[i] = tok[i] >= 0 ? tok[i] : (int32_t)(i % 23);
        for (int k = 0; k < NE; k++) memcpy(p.embd + k * 16, p.lm->w.tok_embd + (int64_t)((3 + k) % 23) * 16, sizeof(float) * 16);
        lv_tr_seq s2 = {T, tok2, pos, NULL, NULL, NULL, NULL};
        lv_tr_state a = {0};
        REQUIRE(lv_tr_forward(tp, p.lm, &a, &s2, NULL) == LV_OK && lv_tr_forward(tp, p.lm, &p.lst, &p.seq, NULL) == LV_OK, "forward");
        CHECK(memcmp(a.xf, p.lst.xf, sizeof(float) * T * 16) == 0, "embedding rows equal to token embeddings change the hidden states");
        s2.embd = NULL, s2.tokens = tok;
        CHECK(lv_tr_forward(tp, p.lm, &a, &s2, NULL) == LV_ERR_INVALID_ARG, "a -1 token without embedding rows is refused");
        lv_tr_state_free(&a);
    }

    lv_tr_set_reference(true);
    memset(p.tv->grads, 0, sizeof(float) * (size_t)p.tv->n_params);
    memset(p.lm->grads, 0, sizeof(float) * (size_t)p.lm->n_params);
    vl_loss(tp, &p, true);
    /* eps 1e-2 and the whole-model tolerance of check_model_grads (test_train.c): the loss
     * (~40 nats over 12 targets) carries ~1e-5 of float noise, / 2 eps = 5e-4. The five-point
     * stencil (-f(2e) + 8 f(e) - 8 f(-e) + f(-2e)) / 12 e cancels the eps^2 curvature term that
     * the central difference keeps (at 1e-2 it reached 7e-3 on a layer-0 output weight for seed
     * 135924626689417); its noise is 18 / 12 x 1e-5 / eps, 1.5e-3 at most, under atol */
    const float eps = 1e-2f;
    int bad = 0, checked = 0;
    double worst = 0;
    float *ps[2] = {p.tv->params, p.lm->params}, *gs[2] = {p.tv->grads, p.lm->grads};
    const int64_t ns[2] = {p.tv->n_params, p.lm->n_params};
    for (int which = 0; which < 2; which++)
        for (int64_t i = 0; i < ns[which]; i += 1 + (int64_t)(lv_test_rng_u64(&r) % (lv_test_quick() ? 20 : 10))) {
            const float old = ps[which][i];
            double f[4];
            const float step[4] = {2 * eps, eps, -eps, -2 * eps};
            for (int k = 0; k < 4; k++) {
                ps[which][i] = old + step[k];
                f[k] = vl_loss(tp, &p, false);
            }
            ps[which][i] = old;
            const double fd = (-f[0] + 8 * f[1] - 8 * f[2] + f[3]) / (12.0 * eps);
            checked++;
            if (!grad_close(gs[which][i], fd, 2e-2, 3e-3)) {
                if (bad < 5) fprintf(stderr, "    %s param %lld: analytic %g, finite difference %g\n", which ? "text" : "tower", (long long)i, (double)gs[which][i], fd);
                bad++;
            }
            worst = fmax(worst, fabs(gs[which][i] - fd));
        }
    lv_tr_set_reference(false);
    CHECK(bad == 0 && checked > (lv_test_quick() ? 100 : 250), "%d of %d end-to-end gradients differ from finite differences (worst %g)", bad, checked, worst);
    free(p.embd), free(p.dembd), free(img);
    lv_tv_state_free(&p.tst);
    lv_tr_state_free(&p.lst);
    lv_tvmodel_free(p.tv);
    lv_tmodel_free(p.lm);
    lv_threadpool_free(tp);
}
