/*
 * tvision.c: the trainable vision tower and idefics3 projector (issue 20): a SigLIP ViT as
 * SmolVLM's mmproj files hold it, in f32, forward and backward op by op (train.h has the
 * equations), and export to an mmproj GGUF that src/vision (and llama.cpp's mtmd) load.
 *
 * The forward pass is src/vision/encode.c's for idefics3, op for op, except where the engine
 * follows ggml's f16 shortcuts (the patch kernel and im2col rounded to f16, GELU looked up in an
 * f16 table): the trainer computes those exactly in float, so the two agree to about 1e-3 of the
 * output's scale (tests/train/test_tvision.c measures it).
 *
 * Kernels: the matrix products are lv_tr_matmul_fwd / _bwd (fast path and reference chosen by
 * lv_tr_set_reference), attention is lv_tr_attn_fwd / _bwd with bidir (per image), LayerNorm and
 * GELU are ops.c's. Every reduction over rows (weight and bias gradients, the position embedding
 * gradient summed over images) is split by columns and summed in row order, so results do not
 * depend on the thread count.
 */
#include "train/train.h"

#include "gguf/gguf.h"
#include "gguf/quant.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* -------------------------------------------------------------------------------------------
 * configuration and layout
 * ----------------------------------------------------------------------------------------- */

lv_tv_config lv_tv_config_default(int32_t image_size, int32_t patch_size, int32_t n_embd, int32_t n_head, int32_t n_layer, int32_t n_ff,
                                  int32_t scale_factor, int32_t n_text_embd) {
    lv_tv_config c = {.image_size = image_size, .patch_size = patch_size, .n_embd = n_embd, .n_head = n_head, .n_layer = n_layer,
                      .n_ff = n_ff, .scale_factor = scale_factor, .n_text_embd = n_text_embd, .eps = 1e-6f,
                      .mean = {0.5f, 0.5f, 0.5f}, .std = {0.5f, 0.5f, 0.5f}};
    return c;
}

lv_status lv_tv_config_check(const lv_tv_config *c) {
    if (c->patch_size < 1 || c->patch_size > 64) return lv_error(LV_ERR_INVALID_ARG, "patch_size %d out of range (1..64)", c->patch_size);
    if (c->scale_factor < 2 || c->scale_factor > 16) return lv_error(LV_ERR_INVALID_ARG, "scale_factor %d out of range (2..16: idefics3 needs > 1)", c->scale_factor);
    if (c->image_size < 1 || c->image_size > 4096 || c->image_size % (c->patch_size * c->scale_factor))
        return lv_error(LV_ERR_INVALID_ARG, "image_size %d must be a positive multiple of patch_size x scale_factor (%d), at most 4096", c->image_size,
                        c->patch_size * c->scale_factor);
    if (c->n_embd < 2 || c->n_embd > (1 << 14)) return lv_error(LV_ERR_INVALID_ARG, "n_embd %d out of range", c->n_embd);
    if (c->n_head < 1 || c->n_embd % c->n_head || c->n_embd / c->n_head > 1024)
        return lv_error(LV_ERR_INVALID_ARG, "n_head %d must divide n_embd %d (heads of at most 1024)", c->n_head, c->n_embd);
    if (c->n_layer < 1 || c->n_layer > 256) return lv_error(LV_ERR_INVALID_ARG, "n_layer %d out of range", c->n_layer);
    /* mtmd (and src/vision/clip.c) swap ffn_up and ffn_down when ffn_down's input width is n_embd,
     * so a file with n_ff == n_embd would be read with its FFN matrices exchanged */
    if (c->n_ff < 1 || c->n_ff > (1 << 16) || c->n_ff == c->n_embd)
        return lv_error(LV_ERR_INVALID_ARG, "n_ff %d out of range or equal to n_embd (mtmd would swap ffn_up and ffn_down)", c->n_ff);
    if (c->n_text_embd < 1 || c->n_text_embd > (1 << 16)) return lv_error(LV_ERR_INVALID_ARG, "n_text_embd %d out of range", c->n_text_embd);
    if (!(c->eps >= 0.0f)) return lv_error(LV_ERR_INVALID_ARG, "eps must be >= 0");
    for (int i = 0; i < 3; i++)
        if (!(c->std[i] != 0.0f) || !isfinite(c->mean[i])) return lv_error(LV_ERR_INVALID_ARG, "pixel mean / std %d invalid", i);
    return LV_OK;
}

typedef struct tv_dims {
    int64_t S, p, G, N, K, s, M, P, E, H, D, L, F, Et;
} tv_dims;

static tv_dims dims_of(const lv_tv_config *c) {
    tv_dims d;
    d.S = c->image_size, d.p = c->patch_size, d.G = d.S / d.p, d.N = d.G * d.G, d.K = 3 * d.p * d.p, d.s = c->scale_factor;
    d.M = (d.G / d.s) * (d.G / d.s), d.E = c->n_embd, d.P = d.E * d.s * d.s, d.H = c->n_head, d.D = d.E / d.H, d.L = c->n_layer;
    d.F = c->n_ff, d.Et = c->n_text_embd;
    return d;
}

static int64_t tv_layout(const lv_tv_config *c, float *base, lv_tv_weights *w, lv_tv_layer *layers) {
    const tv_dims d = dims_of(c);
    int64_t off = 0;
#define TAKE(ptr, n) ((ptr) = base ? base + off : NULL, off += (n))
    TAKE(w->patch_w, d.E * d.K);
    TAKE(w->patch_b, d.E);
    TAKE(w->pos, d.N * d.E);
    for (int l = 0; l < c->n_layer; l++) {
        lv_tv_layer *L = &layers[l];
        TAKE(L->ln1_w, d.E);
        TAKE(L->ln1_b, d.E);
        TAKE(L->wq, d.E * d.E);
        TAKE(L->bq, d.E);
        TAKE(L->wk, d.E * d.E);
        TAKE(L->bk, d.E);
        TAKE(L->wv, d.E * d.E);
        TAKE(L->bv, d.E);
        TAKE(L->wo, d.E * d.E);
        TAKE(L->bo, d.E);
        TAKE(L->ln2_w, d.E);
        TAKE(L->ln2_b, d.E);
        TAKE(L->w_up, d.F * d.E);
        TAKE(L->b_up, d.F);
        TAKE(L->w_down, d.E * d.F);
        TAKE(L->b_down, d.E);
    }
    TAKE(w->post_w, d.E);
    TAKE(w->post_b, d.E);
    TAKE(w->proj, d.Et * d.P);
#undef TAKE
    w->layers = layers;
    return off;
}

lv_status lv_tvmodel_create(const lv_tv_config *c, bool with_grads, lv_tvmodel **out) {
    *out = NULL;
    lv_status st = lv_tv_config_check(c);
    if (st != LV_OK) return st;
    lv_tvmodel *m = lv_calloc(1, sizeof(*m));
    if (!m) return LV_ERR_NOMEM;
    m->c = *c;
    lv_tv_layer *lw = lv_calloc((size_t)c->n_layer, sizeof(lv_tv_layer)), *lg = lv_calloc((size_t)c->n_layer, sizeof(lv_tv_layer));
    m->w.layers = lw;
    m->g.layers = lg;
    if (!lw || !lg) goto nomem;
    m->n_params = tv_layout(c, NULL, &m->w, lw);
    if (!(m->params = lv_aligned_alloc(64, (size_t)m->n_params * sizeof(float)))) goto nomem;
    memset(m->params, 0, (size_t)m->n_params * sizeof(float));
    tv_layout(c, m->params, &m->w, lw);
    if (with_grads) {
        if (!(m->grads = lv_aligned_alloc(64, (size_t)m->n_params * sizeof(float)))) goto nomem;
        memset(m->grads, 0, (size_t)m->n_params * sizeof(float));
        tv_layout(c, m->grads, &m->g, lg);
    }
    *out = m;
    return LV_OK;
nomem:
    lv_tvmodel_free(m);
    return LV_ERR_NOMEM;
}

void lv_tvmodel_free(lv_tvmodel *m) {
    if (!m) return;
    lv_aligned_free(m->params);
    lv_aligned_free(m->grads);
    lv_free(m->w.layers);
    lv_free(m->g.layers);
    lv_free(m);
}

static void fill_const(float *p, int64_t n, float v) {
    for (int64_t i = 0; i < n; i++) p[i] = v;
}

void lv_tvmodel_init(lv_tvmodel *m, uint64_t seed, float std) {
    const tv_dims d = dims_of(&m->c);
    const float std_res = std / sqrtf(2.0f * (float)d.L);
    uint64_t k = seed * 0x100000001b3ull + 0x7649;
    memset(m->params, 0, (size_t)m->n_params * sizeof(float)); /* biases */
    lv_tr_fill_normal(m->w.patch_w, d.E * d.K, ++k, std);
    lv_tr_fill_normal(m->w.pos, d.N * d.E, ++k, std);
    for (int l = 0; l < d.L; l++) {
        lv_tv_layer *L = &m->w.layers[l];
        fill_const(L->ln1_w, d.E, 1.0f);
        fill_const(L->ln2_w, d.E, 1.0f);
        lv_tr_fill_normal(L->wq, d.E * d.E, ++k, std);
        lv_tr_fill_normal(L->wk, d.E * d.E, ++k, std);
        lv_tr_fill_normal(L->wv, d.E * d.E, ++k, std);
        lv_tr_fill_normal(L->wo, d.E * d.E, ++k, std_res);
        lv_tr_fill_normal(L->w_up, d.F * d.E, ++k, std);
        lv_tr_fill_normal(L->w_down, d.E * d.F, ++k, std_res);
    }
    fill_const(m->w.post_w, d.E, 1.0f);
    lv_tr_fill_normal(m->w.proj, d.Et * d.P, ++k, std);
}

lv_status lv_tv_adamw_init(lv_adamw *o, const lv_tvmodel *m) {
    lv_status st = lv_adamw_init_n(o, m->n_params);
    if (st != LV_OK) return st;
    const tv_dims d = dims_of(&m->c);
#define MARK(ptr, n) memset(o->decay + ((ptr) - m->params), 1, (size_t)(n))
    MARK(m->w.patch_w, d.E * d.K);
    for (int l = 0; l < d.L; l++) {
        const lv_tv_layer *L = &m->w.layers[l];
        MARK(L->wq, d.E * d.E);
        MARK(L->wk, d.E * d.E);
        MARK(L->wv, d.E * d.E);
        MARK(L->wo, d.E * d.E);
        MARK(L->w_up, d.F * d.E);
        MARK(L->w_down, d.E * d.F);
    }
    MARK(m->w.proj, d.Et * d.P);
#undef MARK
    return LV_OK;
}

/* -------------------------------------------------------------------------------------------
 * state
 * ----------------------------------------------------------------------------------------- */

void lv_tv_state_free(lv_tv_state *s) {
    if (!s) return;
    float **bufs[] = {&s->cols, &s->x, &s->xn1, &s->mu1, &s->rs1, &s->q, &s->k, &s->v, &s->att, &s->lse, &s->xmid, &s->xn2, &s->mu2, &s->rs2,
                      &s->hup, &s->act, &s->xf, &s->muf, &s->rsf, &s->xs, &s->dx, &s->dxn, &s->dq, &s->dk, &s->dv, &s->datt, &s->dh,
                      &s->dxs, &s->wscratch, &s->ascratch};
    for (size_t i = 0; i < LV_ARRAY_LEN(bufs); i++) {
        lv_free(*bufs[i]);
        *bufs[i] = NULL;
    }
    s->B_cap = s->B = 0;
    s->m = NULL;
}

lv_status lv_tv_state_reserve(lv_tv_state *s, const lv_tvmodel *m, int32_t n_img) {
    if (s->m == m && n_img <= s->B_cap) return LV_OK;
    lv_tv_state_free(s);
    const tv_dims d = dims_of(&m->c);
    const int64_t R = (int64_t)n_img * d.N, L = d.L, RM = (int64_t)n_img * d.M;
    const lv_tr_attn_shape as = {.T = d.N, .Hq = (int)d.H, .Hkv = (int)d.H, .D = (int)d.D, .bidir = true};
    const int64_t wmax = LV_MAX(LV_MAX(d.K * d.E, d.E * d.E), LV_MAX(d.E * d.F, d.P * d.Et));
    struct {
        float **p;
        int64_t n;
    } plan[] = {
        {&s->cols, R * d.K}, {&s->x, (L + 1) * R * d.E}, {&s->xn1, L * R * d.E}, {&s->mu1, L * R}, {&s->rs1, L * R}, {&s->q, L * R * d.E},
        {&s->k, L * R * d.E}, {&s->v, L * R * d.E}, {&s->att, L * R * d.E}, {&s->lse, L * n_img * d.H * d.N}, {&s->xmid, L * R * d.E},
        {&s->xn2, L * R * d.E}, {&s->mu2, L * R}, {&s->rs2, L * R}, {&s->hup, L * R * d.F}, {&s->act, L * R * d.F}, {&s->xf, R * d.E},
        {&s->muf, R}, {&s->rsf, R}, {&s->xs, RM * d.P}, {&s->dx, R * d.E}, {&s->dxn, R * d.E}, {&s->dq, R * d.E}, {&s->dk, R * d.E},
        {&s->dv, R * d.E}, {&s->datt, R * d.E}, {&s->dh, R * d.F}, {&s->dxs, RM * d.P}, {&s->wscratch, wmax},
        {&s->ascratch, (int64_t)lv_tr_attn_bwd_scratch(&as)},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(plan); i++) {
        *plan[i].p = lv_mallocn((size_t)LV_MAX(plan[i].n, 1), sizeof(float));
        if (!*plan[i].p) {
            lv_tv_state_free(s);
            return lv_error(LV_ERR_NOMEM, "vision training state for %d images: out of memory", n_img);
        }
    }
    s->B_cap = n_img;
    s->m = m;
    return LV_OK;
}

/* -------------------------------------------------------------------------------------------
 * patches and pixel shuffle
 * ----------------------------------------------------------------------------------------- */

void lv_tv_im2col(const lv_tv_config *c, const uint8_t *rgb, int32_t n_img, float *cols) {
    const tv_dims d = dims_of(c);
    for (int64_t b = 0; b < n_img; b++) {
        const uint8_t *img = rgb + b * d.S * d.S * 3;
        for (int64_t i = 0; i < d.N; i++) {
            const int64_t r = i / d.G, col = i % d.G;
            float *dst = cols + (b * d.N + i) * d.K;
            for (int ch = 0; ch < 3; ch++)
                for (int64_t ky = 0; ky < d.p; ky++) {
                    const uint8_t *src = img + ((r * d.p + ky) * d.S + col * d.p) * 3 + ch;
                    for (int64_t kx = 0; kx < d.p; kx++) dst[(ch * d.p + ky) * d.p + kx] = ((float)src[kx * 3] / 255.0f - c->mean[ch]) / c->std[ch];
                }
        }
    }
}

void lv_tv_pixel_shuffle(const float *x, float *y, int32_t G, int32_t s, int64_t E, bool inverse) {
    const int64_t n = G / s;
    for (int64_t Y = 0; Y < n; Y++)
        for (int64_t X = 0; X < n; X++)
            for (int64_t dy = 0; dy < s; dy++)
                for (int64_t dx = 0; dx < s; dx++) {
                    float *yp = y + (Y * n + X) * (E * s * s) + (dy * s + dx) * E;
                    const int64_t src = (s * Y + dy) * G + s * X + dx;
                    if (inverse) memcpy((float *)x + src * E, yp, (size_t)E * sizeof(float));
                    else memcpy(yp, x + src * E, (size_t)E * sizeof(float));
                }
}

/* -------------------------------------------------------------------------------------------
 * row-parallel helpers
 * ----------------------------------------------------------------------------------------- */

typedef struct tv_task {
    const lv_tvmodel *m;
    lv_tv_state *st;
    const uint8_t *rgb;
    const float *src, *w, *b, *mu, *rs, *dy;
    float *dst, *mu_out, *rs_out, *dw, *db;
    int64_t rows, n;
    bool acc;
} tv_task;

static void ln_rows(void *arg, int64_t lo, int64_t hi, int ith) {
    tv_task *t = arg;
    for (int64_t i = lo; i < hi; i++)
        lv_layernorm_ref(t->src + i * t->n, t->w, t->b, t->dst + i * t->n, t->n, t->m->c.eps, &t->mu_out[i], &t->rs_out[i]);
}

/* LayerNorm backward: rows split for dx; weight and bias gradients by columns, rows in order */
static void ln_bwd_worker(void *arg, int ith, int nth) {
    tv_task *t = arg;
    const int64_t R = t->rows, n = t->n;
    int64_t lo, hi;
    lv_split_range(R, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) lv_tr_layernorm_bwd(t->src + i * n, t->w, t->mu[i], t->rs[i], t->dy + i * n, t->dst + i * n, t->acc, NULL, NULL, n);
    if (!t->dw) return;
    lv_split_range(n, ith, nth, &lo, &hi);
    for (int64_t j = lo; j < hi; j++) {
        float sw = 0, sb = 0;
        for (int64_t i = 0; i < R; i++) {
            const float g = t->dy[i * n + j];
            sw += g * ((t->src[i * n + j] - t->mu[i]) * t->rs[i]);
            sb += g;
        }
        t->dw[j] += sw;
        t->db[j] += sb;
    }
}

static void ln_apply(lv_threadpool *tp, tv_task *t, const float *src, const float *w, const float *b, float *dst, float *mu, float *rs, int64_t rows,
                     int64_t n) {
    t->src = src, t->w = w, t->b = b, t->dst = dst, t->mu_out = mu, t->rs_out = rs, t->n = n;
    lv_parallel_for(tp, rows, ln_rows, t);
}

static void ln_backward(lv_threadpool *tp, tv_task *t, const float *src, const float *w, const float *mu, const float *rs, const float *dy,
                        float *dx, bool acc, float *dw, float *db, int64_t rows, int64_t n) {
    t->src = src, t->w = w, t->mu = mu, t->rs = rs, t->dy = dy, t->dst = dx, t->acc = acc, t->dw = dw, t->db = db, t->rows = rows, t->n = n;
    lv_threadpool_run(tp, ln_bwd_worker, t);
}

static void gelu_rows(void *arg, int64_t lo, int64_t hi, int ith) {
    tv_task *t = arg;
    lv_tr_gelu_fwd(t->src + lo * t->n, t->dst + lo * t->n, (hi - lo) * t->n);
}

static void gelu_bwd_rows(void *arg, int64_t lo, int64_t hi, int ith) {
    tv_task *t = arg;
    lv_tr_gelu_bwd(t->src + lo * t->n, t->dy + lo * t->n, t->dst + lo * t->n, (hi - lo) * t->n);
}

/* dst (R, n) = a + b (b NULL: dst += a); with pos: a is per image, (N, n) repeated */
static void add_rows(void *arg, int64_t lo, int64_t hi, int ith) {
    tv_task *t = arg;
    const int64_t n = t->n, N = t->rows; /* rows: the period of src (the position table's N), or 0 */
    for (int64_t i = lo; i < hi; i++) {
        const float *a = t->src + (N ? i % N : i) * n;
        float *y = t->dst + i * n;
        if (t->b) {
            const float *b = t->b + i * n;
            for (int64_t j = 0; j < n; j++) y[j] = b[j] + a[j];
        } else {
            for (int64_t j = 0; j < n; j++) y[j] += a[j];
        }
    }
}

/* dpos (N, E) += sum over images of dx (B N, E): columns split, images in order */
static void pos_bwd_worker(void *arg, int ith, int nth) {
    tv_task *t = arg;
    const int64_t NE = t->rows * t->n, B = t->st->B;
    int64_t lo, hi;
    lv_split_range(NE, ith, nth, &lo, &hi);
    for (int64_t j = lo; j < hi; j++) {
        float s = 0;
        for (int64_t b = 0; b < B; b++) s += t->dy[b * NE + j];
        t->dw[j] += s;
    }
}

static void im2col_worker(void *arg, int64_t lo, int64_t hi, int ith) {
    tv_task *t = arg;
    const tv_dims d = dims_of(&t->m->c);
    for (int64_t b = lo; b < hi; b++) lv_tv_im2col(&t->m->c, t->rgb + b * d.S * d.S * 3, 1, t->st->cols + b * d.N * d.K);
}

typedef struct shuffle_task {
    const tv_dims *d;
    float *x, *y;
    bool inverse;
} shuffle_task;

static void shuffle_worker(void *arg, int64_t lo, int64_t hi, int ith) {
    shuffle_task *t = arg;
    const tv_dims *d = t->d;
    for (int64_t b = lo; b < hi; b++)
        lv_tv_pixel_shuffle(t->x + b * d->N * d->E, t->y + b * d->M * d->P, (int32_t)d->G, (int32_t)d->s, d->E, t->inverse);
}

#define LP(base, l, per) ((base) + (int64_t)(l) * (per))

/* -------------------------------------------------------------------------------------------
 * forward
 * ----------------------------------------------------------------------------------------- */

lv_status lv_tv_forward(lv_threadpool *tp, const lv_tvmodel *m, lv_tv_state *st, const uint8_t *rgb, int32_t n_img, float *out) {
    if (n_img < 1) return lv_error(LV_ERR_INVALID_ARG, "no images");
    lv_status s = lv_tv_state_reserve(st, m, n_img);
    if (s != LV_OK) return s;
    st->B = n_img;
    const tv_dims d = dims_of(&m->c);
    const int64_t R = (int64_t)n_img * d.N, RE = R * d.E;
    tv_task t = {.m = m, .st = st, .rgb = rgb};
    const lv_tr_attn_shape as = {.T = d.N, .Hq = (int)d.H, .Hkv = (int)d.H, .D = (int)d.D, .scale = 1.0f / sqrtf((float)d.D), .bidir = true};

    lv_parallel_for(tp, n_img, im2col_worker, &t);
    lv_tr_matmul_fwd(tp, st->cols, m->w.patch_w, m->w.patch_b, st->x, R, d.K, d.E, st->wscratch);
    t.src = m->w.pos, t.b = NULL, t.dst = st->x, t.rows = d.N, t.n = d.E;
    lv_parallel_for(tp, R, add_rows, &t);

    for (int l = 0; l < d.L; l++) {
        const lv_tv_layer *L = &m->w.layers[l];
        float *x = LP(st->x, l, RE), *xn1 = LP(st->xn1, l, RE), *q = LP(st->q, l, RE), *k = LP(st->k, l, RE), *v = LP(st->v, l, RE);
        float *att = LP(st->att, l, RE), *xmid = LP(st->xmid, l, RE), *xn2 = LP(st->xn2, l, RE), *xnext = LP(st->x, l + 1, RE);
        float *hup = LP(st->hup, l, R * d.F), *act = LP(st->act, l, R * d.F), *lse = LP(st->lse, l, (int64_t)n_img * d.H * d.N);
        ln_apply(tp, &t, x, L->ln1_w, L->ln1_b, xn1, LP(st->mu1, l, R), LP(st->rs1, l, R), R, d.E);
        lv_tr_matmul_fwd(tp, xn1, L->wq, L->bq, q, R, d.E, d.E, st->wscratch);
        lv_tr_matmul_fwd(tp, xn1, L->wk, L->bk, k, R, d.E, d.E, st->wscratch);
        lv_tr_matmul_fwd(tp, xn1, L->wv, L->bv, v, R, d.E, d.E, st->wscratch);
        for (int64_t b = 0; b < n_img; b++) {
            const int64_t o = b * d.N * d.E;
            lv_tr_attn_fwd(tp, &as, q + o, k + o, v + o, att + o, lse + b * d.H * d.N);
        }
        lv_tr_matmul_fwd(tp, att, L->wo, L->bo, st->dq, R, d.E, d.E, st->wscratch);
        t.src = st->dq, t.b = x, t.dst = xmid, t.rows = 0, t.n = d.E;
        lv_parallel_for(tp, R, add_rows, &t);
        ln_apply(tp, &t, xmid, L->ln2_w, L->ln2_b, xn2, LP(st->mu2, l, R), LP(st->rs2, l, R), R, d.E);
        lv_tr_matmul_fwd(tp, xn2, L->w_up, L->b_up, hup, R, d.E, d.F, st->wscratch);
        t.src = hup, t.dst = act, t.n = d.F;
        lv_parallel_for(tp, R, gelu_rows, &t);
        lv_tr_matmul_fwd(tp, act, L->w_down, L->b_down, st->dq, R, d.F, d.E, st->wscratch);
        t.src = st->dq, t.b = xmid, t.dst = xnext, t.rows = 0, t.n = d.E;
        lv_parallel_for(tp, R, add_rows, &t);
    }
    ln_apply(tp, &t, LP(st->x, d.L, RE), m->w.post_w, m->w.post_b, st->xf, st->muf, st->rsf, R, d.E);
    shuffle_task sh = {&d, st->xf, st->xs, false};
    lv_parallel_for(tp, n_img, shuffle_worker, &sh);
    lv_tr_matmul_fwd(tp, st->xs, m->w.proj, NULL, out, (int64_t)n_img * d.M, d.P, d.Et, st->wscratch);
    return LV_OK;
}

/* -------------------------------------------------------------------------------------------
 * backward
 * ----------------------------------------------------------------------------------------- */

void lv_tv_backward(lv_threadpool *tp, lv_tvmodel *m, lv_tv_state *st, const float *dout) {
    LV_ASSERT(st->m == m && st->B > 0);
    const tv_dims d = dims_of(&m->c);
    const int64_t B = st->B, R = B * d.N, RE = R * d.E;
    const bool gw = m->grads != NULL;
    tv_task t = {.m = m, .st = st};
    const lv_tr_attn_shape as = {.T = d.N, .Hq = (int)d.H, .Hkv = (int)d.H, .D = (int)d.D, .scale = 1.0f / sqrtf((float)d.D), .bidir = true};

    /* projector and pixel shuffle: dxs = dout Wproj, then unshuffle into dxn */
    lv_tr_matmul_bwd(tp, dout, st->xs, m->w.proj, st->dxs, false, gw ? m->g.proj : NULL, NULL, B * d.M, d.P, d.Et);
    shuffle_task sh = {&d, st->dxn, st->dxs, true};
    lv_parallel_for(tp, B, shuffle_worker, &sh);
    ln_backward(tp, &t, LP(st->x, d.L, RE), m->w.post_w, st->muf, st->rsf, st->dxn, st->dx, false, gw ? m->g.post_w : NULL,
                gw ? m->g.post_b : NULL, R, d.E);

    for (int l = (int)d.L - 1; l >= 0; l--) {
        const lv_tv_layer *L = &m->w.layers[l];
        lv_tv_layer *GL = gw ? &m->g.layers[l] : NULL;
        float *x = LP(st->x, l, RE), *xn1 = LP(st->xn1, l, RE), *q = LP(st->q, l, RE), *k = LP(st->k, l, RE), *v = LP(st->v, l, RE);
        float *att = LP(st->att, l, RE), *xmid = LP(st->xmid, l, RE), *xn2 = LP(st->xn2, l, RE);
        float *hup = LP(st->hup, l, R * d.F), *act = LP(st->act, l, R * d.F), *lse = LP(st->lse, l, B * d.H * d.N);

        /* feed-forward block: dx holds d x_{l+1} = d xmid through the residual */
        lv_tr_matmul_bwd(tp, st->dx, act, L->w_down, st->dh, false, GL ? GL->w_down : NULL, GL ? GL->b_down : NULL, R, d.F, d.E);
        t.src = hup, t.dy = st->dh, t.dst = st->dh, t.n = d.F; /* in place: each element reads its own dy */
        lv_parallel_for(tp, R, gelu_bwd_rows, &t);
        lv_tr_matmul_bwd(tp, st->dh, xn2, L->w_up, st->dxn, false, GL ? GL->w_up : NULL, GL ? GL->b_up : NULL, R, d.E, d.F);
        ln_backward(tp, &t, xmid, L->ln2_w, LP(st->mu2, l, R), LP(st->rs2, l, R), st->dxn, st->dx, true, GL ? GL->ln2_w : NULL,
                    GL ? GL->ln2_b : NULL, R, d.E);

        /* attention block: dx holds d xmid = d x_l through the residual */
        lv_tr_matmul_bwd(tp, st->dx, att, L->wo, st->datt, false, GL ? GL->wo : NULL, GL ? GL->bo : NULL, R, d.E, d.E);
        for (int64_t b = 0; b < B; b++) {
            const int64_t o = b * d.N * d.E;
            lv_tr_attn_bwd(tp, &as, q + o, k + o, v + o, att + o, lse + b * d.H * d.N, st->datt + o, st->dq + o, st->dk + o, st->dv + o,
                           st->ascratch);
        }
        lv_tr_matmul_bwd(tp, st->dq, xn1, L->wq, st->dxn, false, GL ? GL->wq : NULL, GL ? GL->bq : NULL, R, d.E, d.E);
        lv_tr_matmul_bwd(tp, st->dk, xn1, L->wk, st->dxn, true, GL ? GL->wk : NULL, GL ? GL->bk : NULL, R, d.E, d.E);
        lv_tr_matmul_bwd(tp, st->dv, xn1, L->wv, st->dxn, true, GL ? GL->wv : NULL, GL ? GL->bv : NULL, R, d.E, d.E);
        ln_backward(tp, &t, x, L->ln1_w, LP(st->mu1, l, R), LP(st->rs1, l, R), st->dxn, st->dx, true, GL ? GL->ln1_w : NULL,
                    GL ? GL->ln1_b : NULL, R, d.E);
    }
    if (!gw) return;
    /* dx = d(patch embedding + pos) */
    t.dy = st->dx, t.dw = m->g.pos, t.rows = d.N, t.n = d.E;
    lv_threadpool_run(tp, pos_bwd_worker, &t);
    lv_tr_matmul_bwd(tp, st->dx, st->cols, m->w.patch_w, NULL, false, m->g.patch_w, m->g.patch_b, R, d.K, d.E);
}

/* -------------------------------------------------------------------------------------------
 * export: the keys and tensors of gen-mmproj's idefics3 files (src/vision/genmmproj.c)
 * ----------------------------------------------------------------------------------------- */

typedef struct tv_exp {
    char name[64];
    const float *data;
    int n_dims;
    int64_t ne[4];
    lv_type type;
} tv_exp;

/* The tensors of an mmproj file as the export writes them and the loader reads them (ts: room for
 * 8 + 16 L); matrices of type mt. Returns the count. */
static int tv_tensors(const lv_tvmodel *m, tv_exp *ts, lv_type mt) {
    const tv_dims d = dims_of(&m->c);
    int n = 0;
#define ADD(nm, ptr, ty, nd, a, b, cc, dd)                                                                                               \
    do {                                                                                                                                 \
        tv_exp *e_ = &ts[n++];                                                                                                           \
        snprintf(e_->name, sizeof(e_->name), "%s", (nm));                                                                               \
        e_->data = (ptr), e_->type = (ty), e_->n_dims = (nd), e_->ne[0] = (a), e_->ne[1] = (b), e_->ne[2] = (cc), e_->ne[3] = (dd);      \
    } while (0)
#define VEC(nm, ptr, len) ADD(nm, ptr, LV_TYPE_F32, 1, len, 1, 1, 1)
#define MAT(nm, ptr, k, rows) ADD(nm, ptr, mt, 2, k, rows, 1, 1)
    /* the conv kernel and the position table stay f32, as SmolVLM's converter writes them */
    ADD("v.patch_embd.weight", m->w.patch_w, LV_TYPE_F32, 4, d.p, d.p, 3, d.E);
    VEC("v.patch_embd.bias", m->w.patch_b, d.E);
    ADD("v.position_embd.weight", m->w.pos, LV_TYPE_F32, 2, d.E, d.N, 1, 1);
    for (int l = 0; l < d.L; l++) {
        const lv_tv_layer *L = &m->w.layers[l];
        char nm[64];
#define BLK(s) (snprintf(nm, sizeof(nm), "v.blk.%d.%s", l, (s)), nm)
        VEC(BLK("ln1.weight"), L->ln1_w, d.E);
        VEC(BLK("ln1.bias"), L->ln1_b, d.E);
        MAT(BLK("attn_q.weight"), L->wq, d.E, d.E);
        VEC(BLK("attn_q.bias"), L->bq, d.E);
        MAT(BLK("attn_k.weight"), L->wk, d.E, d.E);
        VEC(BLK("attn_k.bias"), L->bk, d.E);
        MAT(BLK("attn_v.weight"), L->wv, d.E, d.E);
        VEC(BLK("attn_v.bias"), L->bv, d.E);
        MAT(BLK("attn_out.weight"), L->wo, d.E, d.E);
        VEC(BLK("attn_out.bias"), L->bo, d.E);
        VEC(BLK("ln2.weight"), L->ln2_w, d.E);
        VEC(BLK("ln2.bias"), L->ln2_b, d.E);
        MAT(BLK("ffn_up.weight"), L->w_up, d.E, d.F);
        VEC(BLK("ffn_up.bias"), L->b_up, d.F);
        MAT(BLK("ffn_down.weight"), L->w_down, d.F, d.E);
        VEC(BLK("ffn_down.bias"), L->b_down, d.E);
#undef BLK
    }
    VEC("v.post_ln.weight", m->w.post_w, d.E);
    VEC("v.post_ln.bias", m->w.post_b, d.E);
    MAT("mm.model.fc.weight", m->w.proj, d.P, d.Et);
#undef ADD
#undef VEC
#undef MAT
    return n;
}

lv_status lv_tvmodel_export_gguf(const lv_tvmodel *m, const char *path, bool f16, const char *name) {
    const lv_tv_config *c = &m->c;
    const tv_dims d = dims_of(c);
    const lv_type mt = f16 ? LV_TYPE_F16 : LV_TYPE_F32;
    lv_status st = LV_ERR_NOMEM;
    lv_gguf_writer *w = lv_gguf_writer_create();
    tv_exp *ts = lv_calloc((size_t)(8 + 16 * d.L), sizeof(*ts));
    uint8_t *buf = NULL;
    FILE *f = NULL;
    char *tmp = NULL;
    if (!w || !ts) goto end;
    bool ok = lv_gguf_writer_set_str(w, "general.architecture", "clip") && lv_gguf_writer_set_str(w, "general.type", "mmproj") &&
              lv_gguf_writer_set_str(w, "general.name", name ? name : "longview-vision") &&
              lv_gguf_writer_set_u32(w, "general.file_type", f16 ? 1 : 0) && lv_gguf_writer_set_bool(w, "clip.has_vision_encoder", true) &&
              lv_gguf_writer_set_str(w, "clip.projector_type", "idefics3") &&
              lv_gguf_writer_set_u32(w, "clip.vision.image_size", (uint32_t)d.S) &&
              lv_gguf_writer_set_u32(w, "clip.vision.patch_size", (uint32_t)d.p) &&
              lv_gguf_writer_set_u32(w, "clip.vision.embedding_length", (uint32_t)d.E) &&
              lv_gguf_writer_set_u32(w, "clip.vision.feed_forward_length", (uint32_t)d.F) &&
              lv_gguf_writer_set_u32(w, "clip.vision.block_count", (uint32_t)d.L) &&
              lv_gguf_writer_set_u32(w, "clip.vision.attention.head_count", (uint32_t)d.H) &&
              lv_gguf_writer_set_f32(w, "clip.vision.attention.layer_norm_epsilon", c->eps) &&
              lv_gguf_writer_set_u32(w, "clip.vision.projection_dim", (uint32_t)d.Et) &&
              lv_gguf_writer_set_arr(w, "clip.vision.image_mean", LV_GGUF_FLOAT32, c->mean, 3) &&
              lv_gguf_writer_set_arr(w, "clip.vision.image_std", LV_GGUF_FLOAT32, c->std, 3) &&
              lv_gguf_writer_set_bool(w, "clip.use_gelu", true) && lv_gguf_writer_set_bool(w, "clip.use_silu", false) &&
              lv_gguf_writer_set_u32(w, "clip.vision.projector.scale_factor", (uint32_t)d.s);
    if (!ok) goto end;
    const int n = tv_tensors(m, ts, mt);
    int64_t max_row = 0;
    for (int i = 0; i < n; i++) {
        if (!lv_gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne)) goto end;
        max_row = LV_MAX(max_row, ts[i].ne[0]);
    }
    const size_t pl = strlen(path) + 5;
    if (!(buf = lv_malloc((size_t)max_row * 4)) || !(tmp = lv_malloc(pl))) goto end;
    snprintf(tmp, pl, "%s.tmp", path);
    if (!(f = fopen(tmp, "wb"))) {
        st = lv_error(LV_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
        goto end;
    }
    if ((st = lv_gguf_writer_write_header(w, f)) != LV_OK) goto end;
    for (int i = 0; i < n; i++) {
        const int64_t K = ts[i].ne[0], rows = ts[i].ne[1] * ts[i].ne[2] * ts[i].ne[3], rb = lv_row_bytes(ts[i].type, K);
        for (int64_t r = 0; r < rows; r++) {
            LV_ASSERT(lv_quantize_row_file(ts[i].type, ts[i].data + r * K, buf, K));
            if ((st = lv_gguf_writer_write_data(w, f, buf, (uint64_t)rb)) != LV_OK) goto end;
        }
    }
    LV_ASSERT(lv_gguf_writer_complete(w));
    st = lv_file_commit(&f, tmp, path);
end:
    if (f) fclose(f);
    if (st != LV_OK && tmp) remove(tmp);
    lv_free(tmp);
    lv_free(buf);
    lv_free(ts);
    lv_gguf_writer_free(w);
    return st;
}

/* -------------------------------------------------------------------------------------------
 * load: an mmproj file the export wrote (f32 or f16 matrices), back into the trainer
 * ----------------------------------------------------------------------------------------- */

static bool key_u32(const lv_gguf *g, const char *key, int32_t *out) {
    int64_t v;
    const int64_t i = lv_gguf_find_key(g, key);
    if (i < 0 || !lv_gguf_get_i64(g, i, &v) || v < 1 || v > (1 << 20)) return false;
    *out = (int32_t)v;
    return true;
}

lv_status lv_tvmodel_load_gguf(const char *path, bool with_grads, lv_tvmodel **out) {
    *out = NULL;
    lv_gguf *g = NULL;
    lv_status st = lv_gguf_open(path, &g);
    if (st != LV_OK) return st;
    lv_tvmodel *m = NULL;
    tv_exp *ts = NULL;
    lv_tv_config c = lv_tv_config_default(1, 1, 1, 1, 1, 1, 2, 1);
    const int64_t kp = lv_gguf_find_key(g, "clip.projector_type");
    lv_gguf_str ps = kp >= 0 ? lv_gguf_get_str(g, kp) : (lv_gguf_str){0};
    if (!ps.ptr || ps.len != 8 || memcmp(ps.ptr, "idefics3", 8) != 0) {
        st = lv_error(LV_ERR_UNSUPPORTED, "%s: the trainer reads idefics3 mmproj files (a trained vision tower), not this one", path);
        goto end;
    }
    if (!key_u32(g, "clip.vision.image_size", &c.image_size) || !key_u32(g, "clip.vision.patch_size", &c.patch_size) ||
        !key_u32(g, "clip.vision.embedding_length", &c.n_embd) || !key_u32(g, "clip.vision.feed_forward_length", &c.n_ff) ||
        !key_u32(g, "clip.vision.block_count", &c.n_layer) || !key_u32(g, "clip.vision.attention.head_count", &c.n_head) ||
        !key_u32(g, "clip.vision.projection_dim", &c.n_text_embd) || !key_u32(g, "clip.vision.projector.scale_factor", &c.scale_factor)) {
        st = lv_error(LV_ERR_FORMAT, "%s: a clip.vision size key is missing or out of range", path);
        goto end;
    }
    double v;
    const int64_t ke = lv_gguf_find_key(g, "clip.vision.attention.layer_norm_epsilon");
    if (ke >= 0 && lv_gguf_get_f64(g, ke, &v)) c.eps = (float)v;
    const char *norm_keys[2] = {"clip.vision.image_mean", "clip.vision.image_std"};
    for (int k = 0; k < 2; k++) {
        const int64_t i = lv_gguf_find_key(g, norm_keys[k]);
        for (int j = 0; i >= 0 && j < 3; j++)
            if (lv_gguf_arr_get_f64(g, i, (uint64_t)j, &v)) (k ? c.std : c.mean)[j] = (float)v;
    }
    if ((st = lv_tv_config_check(&c)) != LV_OK) goto end;
    if ((st = lv_tvmodel_create(&c, with_grads, &m)) != LV_OK) goto end;
    if (!(ts = lv_calloc((size_t)(8 + 16 * c.n_layer), sizeof(*ts)))) {
        st = LV_ERR_NOMEM;
        goto end;
    }
    const int n = tv_tensors(m, ts, LV_TYPE_F32);
    for (int i = 0; i < n && st == LV_OK; i++) {
        const int64_t ti = lv_gguf_find_tensor(g, ts[i].name);
        const lv_gguf_tensor *t = ti >= 0 ? lv_gguf_tensor_at(g, ti) : NULL;
        if (!t) {
            st = lv_error(LV_ERR_FORMAT, "%s: no tensor %s", path, ts[i].name);
            break;
        }
        bool shape = true;
        for (int k = 0; k < 4; k++) shape &= t->ne[k] == ts[i].ne[k];
        if (!shape || (t->type != LV_TYPE_F32 && t->type != LV_TYPE_F16)) {
            st = lv_error(LV_ERR_FORMAT, "%s: tensor %s is %s [%lld, %lld, %lld, %lld]; the configuration needs f32 or f16 [%lld, %lld, %lld, %lld]",
                          path, ts[i].name, lv_type_get((lv_type)t->type)->name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                          (long long)t->ne[3], (long long)ts[i].ne[0], (long long)ts[i].ne[1], (long long)ts[i].ne[2], (long long)ts[i].ne[3]);
            break;
        }
        const int64_t K = ts[i].ne[0], rows = ts[i].ne[1] * ts[i].ne[2] * ts[i].ne[3], rb = lv_row_bytes((lv_type)t->type, K);
        for (int64_t r = 0; r < rows; r++)
            LV_ASSERT(lv_to_float_row((lv_type)t->type, (const uint8_t *)t->data + r * rb, (float *)ts[i].data + r * K, K));
    }
end:
    lv_free(ts);
    lv_gguf_close(g);
    if (st != LV_OK) {
        lv_tvmodel_free(m);
        return st;
    }
    *out = m;
    return LV_OK;
}
