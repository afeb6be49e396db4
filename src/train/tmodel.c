/*
 * tmodel.c: the trainable llama-family model: parameters in one f32 array, initialisation,
 * forward pass (the engine's forward.c op for op, so logits agree), backward pass, the
 * cross-entropy head, loading any GGUF the engine loads, and export to GGUF.
 *
 *   x = tok_embd[token]
 *   per layer:  xn1 = rmsnorm(x) * attn_norm;  q, k, v = xn1 Wq^T (+bq), ...;  rope(q, k) at pos
 *               att = attention(q, k, v)  [duo: alpha * o_full + (1 - alpha) * streaming]
 *               xmid = x + att Wo^T (+bo)
 *               xn2 = rmsnorm(xmid) * ffn_norm;  hff = silu(xn2 Wgate^T) * (xn2 Wup^T)
 *               x' = xmid + hff Wdown^T
 *   xf = rmsnorm(x_L) * output_norm;  logits = xf Woutput^T
 */
#include "train/train.h"

#include "gguf/gguf.h"
#include "gguf/quant.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* -------------------------------------------------------------------------------------------
 * configuration and layout
 * ----------------------------------------------------------------------------------------- */

lv_status lv_tr_config_check(const lv_tr_config *c) {
    if (c->arch != LV_ARCH_LLAMA && c->arch != LV_ARCH_QWEN2) return lv_error(LV_ERR_INVALID_ARG, "unknown architecture %d", (int)c->arch);
    if (c->n_vocab < 2 || c->n_vocab > (1 << 22)) return lv_error(LV_ERR_INVALID_ARG, "n_vocab %d out of range", c->n_vocab);
    if (c->n_embd < 2 || c->n_embd > (1 << 16)) return lv_error(LV_ERR_INVALID_ARG, "n_embd %d out of range", c->n_embd);
    if (c->n_layer < 1 || c->n_layer > 1024) return lv_error(LV_ERR_INVALID_ARG, "n_layer %d out of range", c->n_layer);
    if (c->n_head < 1 || c->n_head_kv < 1 || c->n_head % c->n_head_kv != 0)
        return lv_error(LV_ERR_INVALID_ARG, "n_head %d must be a positive multiple of n_head_kv %d", c->n_head, c->n_head_kv);
    if (c->head_dim < 2 || c->head_dim > 1024 || c->head_dim % 2) return lv_error(LV_ERR_INVALID_ARG, "head_dim %d must be even, 2..1024", c->head_dim);
    if (c->n_rot < 2 || c->n_rot > c->head_dim || c->n_rot % 2)
        return lv_error(LV_ERR_INVALID_ARG, "n_rot %d must be even and at most head_dim %d", c->n_rot, c->head_dim);
    if (c->n_ff < 1 || c->n_ff > (1 << 20)) return lv_error(LV_ERR_INVALID_ARG, "n_ff %d out of range", c->n_ff);
    if (!(c->rope_base > 1.0f) || !(c->norm_eps > 0.0f)) return lv_error(LV_ERR_INVALID_ARG, "rope_base must be > 1 and norm_eps > 0");
    return LV_OK;
}

/* lay the tensors out over base (params or grads); returns the float count */
static int64_t layout(const lv_tr_config *c, float *base, lv_tr_weights *w, lv_tr_layer *layers) {
    const int64_t E = c->n_embd, V = c->n_vocab, F = c->n_ff, Q = (int64_t)c->n_head * c->head_dim, KV = (int64_t)c->n_head_kv * c->head_dim;
    int64_t off = 0;
#define TAKE(ptr, n) ((ptr) = base ? base + off : NULL, off += (n))
    TAKE(w->tok_embd, V * E);
    for (int l = 0; l < c->n_layer; l++) {
        lv_tr_layer *L = &layers[l];
        memset(L, 0, sizeof(*L));
        TAKE(L->attn_norm, E);
        TAKE(L->wq, Q * E);
        TAKE(L->wk, KV * E);
        TAKE(L->wv, KV * E);
        if (c->bias_qkv) {
            TAKE(L->bq, Q);
            TAKE(L->bk, KV);
            TAKE(L->bv, KV);
        }
        TAKE(L->wo, E * Q);
        if (c->bias_o) TAKE(L->bo, E);
        TAKE(L->ffn_norm, E);
        TAKE(L->w_gate, F * E);
        TAKE(L->w_up, F * E);
        TAKE(L->w_down, E * F);
    }
    TAKE(w->output_norm, E);
    if (c->tied) w->output = w->tok_embd;
    else TAKE(w->output, V * E);
#undef TAKE
    w->layers = layers;
    return off;
}

static lv_rope_params rope_of(const lv_tr_config *c) {
    lv_rope_params rp = {
        .n_rot = c->n_rot,
        .type = c->arch == LV_ARCH_QWEN2 ? LV_ROPE_NEOX : LV_ROPE_NORM,
        .freq_base = c->rope_base,
        .freq_scale = 1.0f,
        .ext_factor = 0.0f,
        .attn_factor = 1.0f,
        .beta_fast = 32.0f,
        .beta_slow = 1.0f,
        .n_ctx_orig = c->n_ctx_train,
        .freq_factors = NULL,
    };
    return rp;
}

lv_status lv_tmodel_create(const lv_tr_config *c, bool with_grads, lv_tmodel **out) {
    *out = NULL;
    lv_status st = lv_tr_config_check(c);
    if (st != LV_OK) return st;
    lv_tmodel *m = lv_calloc(1, sizeof(*m));
    if (!m) return LV_ERR_NOMEM;
    m->c = *c;
    lv_tr_layer *lw = lv_calloc((size_t)c->n_layer, sizeof(lv_tr_layer)), *lg = lv_calloc((size_t)c->n_layer, sizeof(lv_tr_layer));
    m->w.layers = lw;
    m->g.layers = lg;
    if (!lw || !lg) goto nomem;
    m->n_params = layout(c, NULL, &m->w, lw);
    m->params = lv_aligned_alloc(64, (size_t)m->n_params * sizeof(float));
    if (!m->params) goto nomem;
    layout(c, m->params, &m->w, lw);
    if (with_grads) {
        m->grads = lv_aligned_alloc(64, (size_t)m->n_params * sizeof(float));
        if (!m->grads) goto nomem;
        layout(c, m->grads, &m->g, lg);
    }
    m->rope = rope_of(c);
    *out = m;
    return LV_OK;
nomem:
    lv_tmodel_free(m);
    return LV_ERR_NOMEM;
}

void lv_tmodel_free(lv_tmodel *m) {
    if (!m) return;
    lv_aligned_free(m->params);
    lv_aligned_free(m->grads);
    lv_free(m->w.layers);
    lv_free(m->g.layers);
    lv_free(m->rope_freqs);
    lv_free(m);
}

/* -------------------------------------------------------------------------------------------
 * initialisation
 * ----------------------------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void lv_tr_fill_normal(float *p, int64_t n, uint64_t seed, float std) {
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i += 2) {
        const double u1 = ((double)(splitmix(&s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
        const double u2 = ((double)(splitmix(&s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
        const double r = sqrt(-2.0 * log(u1));
        p[i] = (float)(r * cos(2.0 * LV_PI * u2)) * std;
        if (i + 1 < n) p[i + 1] = (float)(r * sin(2.0 * LV_PI * u2)) * std;
    }
}

static void fill_const(float *p, int64_t n, float v) {
    for (int64_t i = 0; i < n; i++) p[i] = v;
}

void lv_tmodel_init(lv_tmodel *m, uint64_t seed, float std) {
    const lv_tr_config *c = &m->c;
    const int64_t E = c->n_embd, V = c->n_vocab, F = c->n_ff, Q = (int64_t)c->n_head * c->head_dim, KV = (int64_t)c->n_head_kv * c->head_dim;
    const float std_res = std / sqrtf(2.0f * (float)c->n_layer);
    uint64_t k = seed * 0x100000001b3ull;
    lv_tr_fill_normal(m->w.tok_embd, V * E, ++k, std);
    for (int l = 0; l < c->n_layer; l++) {
        lv_tr_layer *L = &m->w.layers[l];
        fill_const(L->attn_norm, E, 1.0f);
        lv_tr_fill_normal(L->wq, Q * E, ++k, std);
        lv_tr_fill_normal(L->wk, KV * E, ++k, std);
        lv_tr_fill_normal(L->wv, KV * E, ++k, std);
        if (L->bq) {
            fill_const(L->bq, Q, 0);
            fill_const(L->bk, KV, 0);
            fill_const(L->bv, KV, 0);
        }
        lv_tr_fill_normal(L->wo, E * Q, ++k, std_res);
        if (L->bo) fill_const(L->bo, E, 0);
        fill_const(L->ffn_norm, E, 1.0f);
        lv_tr_fill_normal(L->w_gate, F * E, ++k, std);
        lv_tr_fill_normal(L->w_up, F * E, ++k, std);
        lv_tr_fill_normal(L->w_down, E * F, ++k, std_res);
    }
    fill_const(m->w.output_norm, E, 1.0f);
    if (!c->tied) lv_tr_fill_normal(m->w.output, V * E, ++k, std);
}

/* -------------------------------------------------------------------------------------------
 * state
 * ----------------------------------------------------------------------------------------- */

#define XENT_CHUNK 128

void lv_tr_state_free(lv_tr_state *s) {
    if (!s) return;
    float **bufs[] = {&s->rope_cache, &s->x, &s->xn1, &s->r1, &s->q, &s->k, &s->v, &s->att, &s->att_s, &s->lse, &s->xmid, &s->xn2, &s->r2,
                      &s->gate, &s->up, &s->hff, &s->xf, &s->rf, &s->dx, &s->dxn, &s->dq, &s->dk, &s->dv, &s->datt, &s->dgate, &s->dup,
                      &s->dh, &s->dtmp, &s->wscratch, &s->ascratch, &s->logits, &s->dlogits, &s->xent_x, &s->xent_dx};
    for (size_t i = 0; i < LV_ARRAY_LEN(bufs); i++) {
        lv_free(*bufs[i]);
        *bufs[i] = NULL;
    }
    s->T_cap = 0;
    s->m = NULL;
}

lv_status lv_tr_state_reserve(lv_tr_state *s, const lv_tmodel *m, int64_t T, bool duo) {
    if (s->m == m && T <= s->T_cap && (!duo || s->att_s)) return LV_OK;
    lv_tr_state_free(s);
    const lv_tr_config *c = &m->c;
    const int64_t L = c->n_layer, E = c->n_embd, V = c->n_vocab, F = c->n_ff, Q = (int64_t)c->n_head * c->head_dim,
                  KV = (int64_t)c->n_head_kv * c->head_dim, Hq = c->n_head;
    const int64_t W = LV_MAX(LV_MAX(E, Q), F);
    const lv_tr_attn_shape as = {.T = T, .Hq = c->n_head, .Hkv = c->n_head_kv, .D = c->head_dim};
    s->ascratch_n = lv_tr_attn_bwd_scratch(&as);
    struct {
        float **p;
        int64_t n;
    } plan[] = {
        {&s->rope_cache, T * c->n_rot}, {&s->x, (L + 1) * T * E}, {&s->xn1, L * T * E}, {&s->r1, L * T}, {&s->q, L * T * Q},
        {&s->k, L * T * KV}, {&s->v, L * T * KV}, {&s->att, L * T * Q}, {&s->att_s, duo ? L * T * Q : 0}, {&s->lse, L * Hq * T},
        {&s->xmid, L * T * E}, {&s->xn2, L * T * E}, {&s->r2, L * T}, {&s->gate, L * T * F}, {&s->up, L * T * F}, {&s->hff, L * T * F},
        {&s->xf, T * E}, {&s->rf, T}, {&s->dx, T * E}, {&s->dxn, T * E}, {&s->dq, T * Q}, {&s->dk, T * KV}, {&s->dv, T * KV},
        {&s->datt, T * Q}, {&s->dgate, T * F}, {&s->dup, T * F}, {&s->dh, T * F}, {&s->dtmp, T * W},
        {&s->wscratch, LV_MAX(E * W, V * E)}, {&s->ascratch, (int64_t)s->ascratch_n}, {&s->logits, XENT_CHUNK * V},
        {&s->dlogits, XENT_CHUNK * V}, {&s->xent_x, XENT_CHUNK * E}, {&s->xent_dx, XENT_CHUNK * E},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(plan); i++) {
        if (plan[i].n == 0) continue;
        *plan[i].p = lv_mallocn((size_t)plan[i].n, sizeof(float));
        if (!*plan[i].p) {
            lv_tr_state_free(s);
            return lv_error(LV_ERR_NOMEM, "training state for %lld tokens: out of memory", (long long)T);
        }
    }
    s->T_cap = T;
    s->m = m;
    return LV_OK;
}

/* -------------------------------------------------------------------------------------------
 * per-row parallel helpers
 * ----------------------------------------------------------------------------------------- */

typedef struct row_task {
    const lv_tmodel *m;
    lv_tr_state *st;
    const lv_tr_seq *seq;
    const float *src, *w, *r, *dy, *a, *b;
    float *dst, *rout, *dw, *da, *db;
    int64_t n, il;
    bool acc;
    const lv_tr_duo *duo;
} row_task;

static void norm_rows(void *arg, int64_t lo, int64_t hi, int ith) {
    row_task *t = arg;
    const float eps = t->m->c.norm_eps;
    for (int64_t i = lo; i < hi; i++) t->rout[i] = lv_tr_rmsnorm_fwd(t->src + i * t->n, t->w, t->dst + i * t->n, t->n, eps);
}

/* rmsnorm backward: rows split for dx; the weight gradient summed over rows in order, by columns */
static void norm_bwd_worker(void *arg, int ith, int nth) {
    row_task *t = arg;
    const int64_t T = t->seq->T, n = t->n;
    int64_t lo, hi;
    lv_split_range(T, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) lv_tr_rmsnorm_bwd(t->src + i * n, t->w, t->r[i], t->dy + i * n, t->dst + i * n, t->acc, NULL, n);
    if (!t->dw) return;
    lv_split_range(n, ith, nth, &lo, &hi);
    for (int64_t j = lo; j < hi; j++) {
        float s = 0;
        for (int64_t i = 0; i < T; i++) s += t->dy[i * n + j] * t->src[i * n + j] * t->r[i];
        t->dw[j] += s;
    }
}

static void rope_rows(void *arg, int64_t lo, int64_t hi, int ith) {
    row_task *t = arg;
    const lv_tmodel *m = t->m;
    const lv_tr_config *c = &m->c;
    const int64_t Q = (int64_t)c->n_head * c->head_dim, KV = (int64_t)c->n_head_kv * c->head_dim;
    float *q = t->dst, *k = t->da;
    const bool inverse = t->acc;
    for (int64_t i = lo; i < hi; i++) {
        const float *cache = t->st->rope_cache + i * c->n_rot;
        lv_tr_rope(m->rope.type, c->n_rot, cache, q + i * Q, c->n_head, c->head_dim, inverse);
        lv_tr_rope(m->rope.type, c->n_rot, cache, k + i * KV, c->n_head_kv, c->head_dim, inverse);
    }
}

static void rope_cache_rows(void *arg, int64_t lo, int64_t hi, int ith) {
    row_task *t = arg;
    for (int64_t i = lo; i < hi; i++) lv_rope_cache(&t->m->rope, t->seq->pos[i], t->st->rope_cache + i * t->m->c.n_rot);
}

static void add_rows(void *arg, int64_t lo, int64_t hi, int ith) {
    row_task *t = arg;
    for (int64_t i = lo * t->n; i < hi * t->n; i++) t->dst[i] = t->a[i] + t->b[i];
}

static void swiglu_rows(void *arg, int64_t lo, int64_t hi, int ith) {
    row_task *t = arg;
    lv_tr_swiglu_fwd(t->a + lo * t->n, t->b + lo * t->n, t->dst + lo * t->n, (hi - lo) * t->n);
}

static void swiglu_bwd_rows(void *arg, int64_t lo, int64_t hi, int ith) {
    row_task *t = arg;
    lv_tr_swiglu_bwd(t->a + lo * t->n, t->b + lo * t->n, t->dy + lo * t->n, t->da + lo * t->n, t->db + lo * t->n, (hi - lo) * t->n);
}

static void embed_rows(void *arg, int64_t lo, int64_t hi, int ith) {
    row_task *t = arg;
    const int64_t E = t->m->c.n_embd;
    for (int64_t i = lo; i < hi; i++)
        if (t->seq->tokens[i] >= 0) memcpy(t->dst + i * E, t->m->w.tok_embd + (int64_t)t->seq->tokens[i] * E, (size_t)E * sizeof(float));
}

/* duo mixing: att = alpha o_full + (1 - alpha) att_s, per KV group */
static void duo_mix_rows(void *arg, int64_t lo, int64_t hi, int ith) {
    row_task *t = arg;
    const lv_tr_config *c = &t->m->c;
    const int64_t Q = (int64_t)c->n_head * c->head_dim, G = c->n_head / c->n_head_kv, GD = G * c->head_dim;
    const float *alpha = t->duo->alpha + t->il * c->n_head_kv;
    const float *of = t->duo->o_full + t->il * t->seq->T * Q;
    for (int64_t i = lo; i < hi; i++)
        for (int64_t j = 0; j < Q; j++) {
            const float a = alpha[j / GD];
            t->dst[i * Q + j] = a * of[i * Q + j] + (1.0f - a) * t->src[i * Q + j];
        }
}

/* -------------------------------------------------------------------------------------------
 * forward
 * ----------------------------------------------------------------------------------------- */

#define LAYER_PTR(base, l, per) ((base) + (int64_t)(l) * (per))

lv_status lv_tr_forward(lv_threadpool *tp, const lv_tmodel *m, lv_tr_state *st, const lv_tr_seq *seq, const lv_tr_duo *duo) {
    const lv_tr_config *c = &m->c;
    const int64_t T = seq->T, E = c->n_embd, F = c->n_ff, Q = (int64_t)c->n_head * c->head_dim, KV = (int64_t)c->n_head_kv * c->head_dim;
    if (T < 1) return lv_error(LV_ERR_INVALID_ARG, "empty sequence");
    for (int64_t i = 0; i < T; i++)
        if (seq->tokens[i] < (seq->embd ? -1 : 0) || seq->tokens[i] >= c->n_vocab)
            return lv_error(LV_ERR_INVALID_ARG, "token %d at %lld is outside the vocabulary (%d)%s", seq->tokens[i], (long long)i, c->n_vocab,
                            seq->tokens[i] == -1 ? " and the sequence has no embedding rows" : "");
    lv_status s = lv_tr_state_reserve(st, m, T, duo != NULL);
    if (s != LV_OK) return s;
    row_task t = {.m = m, .st = st, .seq = seq, .duo = duo};
    lv_parallel_for(tp, T, rope_cache_rows, &t);
    t.dst = st->x;
    lv_parallel_for(tp, T, embed_rows, &t);
    if (seq->embd) /* the embedding rows, in order (a copy: cheap beside the layers) */
        for (int64_t i = 0, k = 0; i < T; i++)
            if (seq->tokens[i] < 0) memcpy(st->x + i * E, seq->embd + k++ * E, (size_t)E * sizeof(float));
    const lv_tr_attn_shape as = {.T = T, .Hq = c->n_head, .Hkv = c->n_head_kv, .D = c->head_dim, .scale = 1.0f / sqrtf((float)c->head_dim)};
    for (int l = 0; l < c->n_layer; l++) {
        const lv_tr_layer *L = &m->w.layers[l];
        float *x = LAYER_PTR(st->x, l, T * E), *xn1 = LAYER_PTR(st->xn1, l, T * E), *r1 = LAYER_PTR(st->r1, l, T);
        float *q = LAYER_PTR(st->q, l, T * Q), *k = LAYER_PTR(st->k, l, T * KV), *v = LAYER_PTR(st->v, l, T * KV);
        float *att = LAYER_PTR(st->att, l, T * Q), *lse = LAYER_PTR(st->lse, l, T * c->n_head);
        float *xmid = LAYER_PTR(st->xmid, l, T * E), *xn2 = LAYER_PTR(st->xn2, l, T * E), *r2 = LAYER_PTR(st->r2, l, T);
        float *gate = LAYER_PTR(st->gate, l, T * F), *up = LAYER_PTR(st->up, l, T * F), *hff = LAYER_PTR(st->hff, l, T * F);
        float *xnext = LAYER_PTR(st->x, l + 1, T * E);

        t.src = x, t.w = L->attn_norm, t.dst = xn1, t.rout = r1, t.n = E;
        lv_parallel_for(tp, T, norm_rows, &t);
        lv_tr_matmul_fwd(tp, xn1, L->wq, L->bq, q, T, E, Q, st->wscratch);
        lv_tr_matmul_fwd(tp, xn1, L->wk, L->bk, k, T, E, KV, st->wscratch);
        lv_tr_matmul_fwd(tp, xn1, L->wv, L->bv, v, T, E, KV, st->wscratch);
        t.dst = q, t.da = k, t.acc = false;
        lv_parallel_for(tp, T, rope_rows, &t);
        if (!duo) {
            lv_tr_attn_fwd(tp, &as, q, k, v, att, lse);
        } else {
            lv_tr_attn_shape ss = as;
            ss.sink = duo->sink;
            ss.window = duo->window;
            float *att_s = LAYER_PTR(st->att_s, l, T * Q);
            lv_tr_attn_fwd(tp, &ss, q, k, v, att_s, lse);
            t.src = att_s, t.dst = att, t.il = l;
            lv_parallel_for(tp, T, duo_mix_rows, &t);
        }
        lv_tr_matmul_fwd(tp, att, L->wo, L->bo, st->dtmp, T, Q, E, st->wscratch);
        t.a = x, t.b = st->dtmp, t.dst = xmid, t.n = E;
        lv_parallel_for(tp, T, add_rows, &t);

        t.src = xmid, t.w = L->ffn_norm, t.dst = xn2, t.rout = r2, t.n = E;
        lv_parallel_for(tp, T, norm_rows, &t);
        lv_tr_matmul_fwd(tp, xn2, L->w_gate, NULL, gate, T, E, F, st->wscratch);
        lv_tr_matmul_fwd(tp, xn2, L->w_up, NULL, up, T, E, F, st->wscratch);
        t.a = gate, t.b = up, t.dst = hff, t.n = F;
        lv_parallel_for(tp, T, swiglu_rows, &t);
        lv_tr_matmul_fwd(tp, hff, L->w_down, NULL, st->dtmp, T, F, E, st->wscratch);
        t.a = xmid, t.b = st->dtmp, t.dst = xnext, t.n = E;
        lv_parallel_for(tp, T, add_rows, &t);
    }
    t.src = LAYER_PTR(st->x, c->n_layer, T * E), t.w = m->w.output_norm, t.dst = st->xf, t.rout = st->rf, t.n = E;
    lv_parallel_for(tp, T, norm_rows, &t);
    return LV_OK;
}

void lv_tr_logits(lv_threadpool *tp, const lv_tmodel *m, lv_tr_state *st, int64_t t0, int64_t rows, float *logits) {
    lv_tr_matmul_fwd(tp, st->xf + t0 * m->c.n_embd, m->w.output, NULL, logits, rows, m->c.n_embd, m->c.n_vocab, st->wscratch);
}

/* -------------------------------------------------------------------------------------------
 * cross-entropy head
 * ----------------------------------------------------------------------------------------- */

typedef struct xent_task {
    const lv_tr_seq *seq;
    const int64_t *rows;
    int64_t V;
    float *logits, *dlogits, *loss;
    float scale;
    bool grad;
} xent_task;

static void xent_rows(void *arg, int64_t lo, int64_t hi, int ith) {
    xent_task *t = arg;
    for (int64_t r = lo; r < hi; r++) {
        const int64_t i = t->rows[r];
        const float w = t->seq->weights ? t->seq->weights[i] : 1.0f;
        t->loss[r] = lv_tr_xent(t->logits + r * t->V, t->V, t->seq->targets[i], t->grad ? t->dlogits + r * t->V : NULL, w * t->scale);
    }
}

double lv_tr_xent_loss(lv_threadpool *tp, lv_tmodel *m, lv_tr_state *st, const lv_tr_seq *seq, bool grad, float scale, float *ce) {
    const int64_t T = seq->T, E = m->c.n_embd, V = m->c.n_vocab;
    if (grad) memset(st->dx, 0, (size_t)(T * E) * sizeof(float));
    if (ce) memset(ce, 0, (size_t)T * sizeof(float));
    if (!seq->targets) return 0.0;
    int64_t rows[XENT_CHUNK];
    float loss[XENT_CHUNK];
    float *xin = st->xent_x; /* (chunk, E) gathered hidden states */
    float *dxc = st->xent_dx;
    double total = 0.0;
    int64_t i = 0;
    while (i < T) {
        int64_t n = 0;
        for (; i < T && n < XENT_CHUNK; i++) {
            const float w = seq->weights ? seq->weights[i] : 1.0f;
            if (seq->targets[i] < 0 || w <= 0.0f) continue;
            LV_ASSERT(seq->targets[i] < V);
            rows[n] = i;
            memcpy(xin + n * E, st->xf + i * E, (size_t)E * sizeof(float));
            n++;
        }
        if (n == 0) break;
        lv_tr_matmul_fwd(tp, xin, m->w.output, NULL, st->logits, n, E, V, st->wscratch);
        xent_task xt = {seq, rows, V, st->logits, st->dlogits, loss, scale, grad};
        lv_parallel_for(tp, n, xent_rows, &xt);
        for (int64_t r = 0; r < n; r++) {
            const float w = seq->weights ? seq->weights[rows[r]] : 1.0f;
            total += (double)w * loss[r];
            if (ce) ce[rows[r]] = loss[r];
        }
        if (grad) {
            lv_tr_matmul_bwd(tp, st->dlogits, xin, m->w.output, dxc, false, m->grads ? m->g.output : NULL, NULL, n, E, V);
            for (int64_t r = 0; r < n; r++) memcpy(st->dx + rows[r] * E, dxc + r * E, (size_t)E * sizeof(float));
        }
    }
    return total;
}

/* -------------------------------------------------------------------------------------------
 * backward
 * ----------------------------------------------------------------------------------------- */

/* duo: d att_s = (1 - alpha) d att; d alpha += sum over the group's columns of d att (o_full - att_s).
 * Rows split for the first; the gate sums by group over all rows in order (one thread per group). */
typedef struct duo_bwd_task {
    const lv_tmodel *m;
    const lv_tr_duo *duo;
    const float *datt, *att_s;
    float *dout;
    int64_t T, il;
} duo_bwd_task;

static void duo_bwd_worker(void *arg, int ith, int nth) {
    duo_bwd_task *t = arg;
    const lv_tr_config *c = &t->m->c;
    const int64_t Q = (int64_t)c->n_head * c->head_dim, G = c->n_head / c->n_head_kv, GD = G * c->head_dim;
    const float *alpha = t->duo->alpha + t->il * c->n_head_kv;
    const float *of = t->duo->o_full + t->il * t->T * Q;
    int64_t lo, hi;
    lv_split_range(t->T, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        for (int64_t j = 0; j < Q; j++) t->dout[i * Q + j] = (1.0f - alpha[j / GD]) * t->datt[i * Q + j];
    for (int64_t g = ith; g < c->n_head_kv; g += nth) {
        double s = 0;
        for (int64_t i = 0; i < t->T; i++)
            for (int64_t j = g * GD; j < (g + 1) * GD; j++) s += (double)t->datt[i * Q + j] * (double)(of[i * Q + j] - t->att_s[i * Q + j]);
        t->duo->dalpha[t->il * c->n_head_kv + g] += (float)s;
    }
}

/* d tok_embd: rows of the table split among threads by id, tokens summed in order */
typedef struct embed_bwd_task {
    const lv_tr_seq *seq;
    const float *dx;
    float *dE;
    int64_t E, V;
} embed_bwd_task;

static void embed_bwd_worker(void *arg, int ith, int nth) {
    embed_bwd_task *t = arg;
    for (int64_t i = 0; i < t->seq->T; i++) {
        const int32_t tok = t->seq->tokens[i];
        if (tok < 0 || tok % nth != ith) continue; /* -1: an embedding row (seq->dembd) */
        float *d = t->dE + (int64_t)tok * t->E;
        const float *s = t->dx + i * t->E;
        for (int64_t j = 0; j < t->E; j++) d[j] += s[j];
    }
}

void lv_tr_backward(lv_threadpool *tp, lv_tmodel *m, lv_tr_state *st, const lv_tr_seq *seq, const lv_tr_duo *duo) {
    const lv_tr_config *c = &m->c;
    const int64_t T = seq->T, E = c->n_embd, F = c->n_ff, Q = (int64_t)c->n_head * c->head_dim, KV = (int64_t)c->n_head_kv * c->head_dim;
    const bool gw = m->grads != NULL;
    row_task t = {.m = m, .st = st, .seq = seq, .duo = duo};
    const lv_tr_attn_shape as = {.T = T, .Hq = c->n_head, .Hkv = c->n_head_kv, .D = c->head_dim, .scale = 1.0f / sqrtf((float)c->head_dim),
                                 .sink = duo ? duo->sink : 0, .window = duo ? duo->window : 0};

    /* final norm: dxf is in st->dx; move it to dxn and write d x_L into dx */
    memcpy(st->dxn, st->dx, (size_t)(T * E) * sizeof(float));
    t.src = LAYER_PTR(st->x, c->n_layer, T * E), t.w = m->w.output_norm, t.r = st->rf, t.dy = st->dxn, t.dst = st->dx, t.acc = false;
    t.dw = gw ? m->g.output_norm : NULL, t.n = E;
    lv_threadpool_run(tp, norm_bwd_worker, &t);

    for (int l = c->n_layer - 1; l >= 0; l--) {
        const lv_tr_layer *L = &m->w.layers[l];
        lv_tr_layer *GL = gw ? &m->g.layers[l] : NULL;
        float *x = LAYER_PTR(st->x, l, T * E), *xn1 = LAYER_PTR(st->xn1, l, T * E), *r1 = LAYER_PTR(st->r1, l, T);
        float *q = LAYER_PTR(st->q, l, T * Q), *k = LAYER_PTR(st->k, l, T * KV), *v = LAYER_PTR(st->v, l, T * KV);
        float *att = LAYER_PTR(st->att, l, T * Q), *lse = LAYER_PTR(st->lse, l, T * c->n_head);
        float *xmid = LAYER_PTR(st->xmid, l, T * E), *xn2 = LAYER_PTR(st->xn2, l, T * E), *r2 = LAYER_PTR(st->r2, l, T);
        float *gate = LAYER_PTR(st->gate, l, T * F), *up = LAYER_PTR(st->up, l, T * F), *hff = LAYER_PTR(st->hff, l, T * F);

        /* feed-forward block: dx holds d x_{l+1} = d xmid (residual) */
        lv_tr_matmul_bwd(tp, st->dx, hff, L->w_down, st->dh, false, GL ? GL->w_down : NULL, NULL, T, F, E);
        t.a = gate, t.b = up, t.dy = st->dh, t.da = st->dgate, t.db = st->dup, t.n = F;
        lv_parallel_for(tp, T, swiglu_bwd_rows, &t);
        lv_tr_matmul_bwd(tp, st->dgate, xn2, L->w_gate, st->dxn, false, GL ? GL->w_gate : NULL, NULL, T, E, F);
        lv_tr_matmul_bwd(tp, st->dup, xn2, L->w_up, st->dxn, true, GL ? GL->w_up : NULL, NULL, T, E, F);
        t.src = xmid, t.w = L->ffn_norm, t.r = r2, t.dy = st->dxn, t.dst = st->dx, t.acc = true, t.dw = GL ? GL->ffn_norm : NULL, t.n = E;
        lv_threadpool_run(tp, norm_bwd_worker, &t);

        /* attention block: dx holds d xmid = d x_l (residual) */
        lv_tr_matmul_bwd(tp, st->dx, att, L->wo, st->datt, false, GL ? GL->wo : NULL, GL ? GL->bo : NULL, T, Q, E);
        const float *att_out = att, *dout = st->datt;
        if (duo) {
            float *att_s = LAYER_PTR(st->att_s, l, T * Q);
            duo_bwd_task dt = {m, duo, st->datt, att_s, st->dtmp, T, l};
            lv_threadpool_run(tp, duo_bwd_worker, &dt);
            att_out = att_s;
            dout = st->dtmp;
        }
        lv_tr_attn_bwd(tp, &as, q, k, v, att_out, lse, dout, st->dq, st->dk, st->dv, st->ascratch);
        t.dst = st->dq, t.da = st->dk, t.acc = true; /* inverse rotation */
        lv_parallel_for(tp, T, rope_rows, &t);
        lv_tr_matmul_bwd(tp, st->dq, xn1, L->wq, st->dxn, false, GL ? GL->wq : NULL, GL ? GL->bq : NULL, T, E, Q);
        lv_tr_matmul_bwd(tp, st->dk, xn1, L->wk, st->dxn, true, GL ? GL->wk : NULL, GL ? GL->bk : NULL, T, E, KV);
        lv_tr_matmul_bwd(tp, st->dv, xn1, L->wv, st->dxn, true, GL ? GL->wv : NULL, GL ? GL->bv : NULL, T, E, KV);
        t.src = x, t.w = L->attn_norm, t.r = r1, t.dy = st->dxn, t.dst = st->dx, t.acc = true, t.dw = GL ? GL->attn_norm : NULL, t.n = E;
        lv_threadpool_run(tp, norm_bwd_worker, &t);
    }
    if (gw) {
        embed_bwd_task et = {seq, st->dx, m->g.tok_embd, E, c->n_vocab};
        lv_threadpool_run(tp, embed_bwd_worker, &et);
    }
    if (seq->dembd)
        for (int64_t i = 0, k = 0; i < T; i++)
            if (seq->tokens[i] < 0) memcpy(seq->dembd + k++ * E, st->dx + i * E, (size_t)E * sizeof(float));
}

/* -------------------------------------------------------------------------------------------
 * loading a GGUF model
 * ----------------------------------------------------------------------------------------- */

static lv_status copy_tensor(const lv_tensor *src, float *dst, int64_t ne0, int64_t ne1) {
    if (!src->data) return lv_error(LV_ERR_FORMAT, "tensor missing");
    if (src->ne[0] != ne0 || src->ne[1] != ne1)
        return lv_error(LV_ERR_FORMAT, "tensor %s has shape (%lld, %lld), expected (%lld, %lld)", src->name, (long long)src->ne[0],
                        (long long)src->ne[1], (long long)ne0, (long long)ne1);
    for (int64_t r = 0; r < ne1; r++)
        if (!lv_to_float_row(src->type, (const uint8_t *)src->data + r * src->row_bytes, dst + r * ne0, ne0))
            return lv_error(LV_ERR_UNSUPPORTED, "tensor %s: type %s cannot be converted to f32", src->name, lv_type_name(src->type));
    return LV_OK;
}

lv_status lv_tmodel_from_model(const lv_model *src, bool with_grads, lv_tmodel **out) {
    *out = NULL;
    if (!src || src->vocab_only || !src->layers) return lv_error(LV_ERR_INVALID_ARG, "a model with weights is needed");
    const lv_hparams *hp = &src->hp;
    if (src->arch != LV_ARCH_LLAMA && src->arch != LV_ARCH_QWEN2)
        return lv_error(LV_ERR_UNSUPPORTED, "the trainer (train, identify) supports llama and qwen2 models, not %s", lv_arch_name(src->arch));
    if (hp->n_embd_head_k != hp->n_embd_head_v)
        return lv_error(LV_ERR_UNSUPPORTED, "key and value head sizes differ (%lld, %lld)", (long long)hp->n_embd_head_k, (long long)hp->n_embd_head_v);
    lv_tr_config c = {
        .arch = src->arch,
        .n_vocab = (int32_t)hp->n_vocab,
        .n_embd = (int32_t)hp->n_embd,
        .n_layer = (int32_t)hp->n_layer,
        .n_head = (int32_t)hp->n_head,
        .n_head_kv = (int32_t)hp->n_head_kv,
        .head_dim = (int32_t)hp->n_embd_head_k,
        .n_ff = (int32_t)hp->n_ff,
        .n_rot = (int32_t)hp->n_rot,
        .n_ctx_train = (int32_t)LV_MIN(hp->n_ctx_train, INT32_MAX),
        .rope_base = hp->rope_freq_base,
        .norm_eps = hp->norm_rms_eps,
        .tied = src->tied_output,
        .bias_qkv = src->layers[0].bq.data != NULL,
        .bias_o = src->layers[0].bo.data != NULL,
    };
    lv_tmodel *m = NULL;
    lv_status st = lv_tmodel_create(&c, with_grads, &m);
    if (st != LV_OK) return st;
    m->rope = lv_rope_params_from(src);
    if (src->rope_freqs.data) {
        m->rope_freqs = lv_mallocn((size_t)c.n_rot / 2, sizeof(float));
        if (!m->rope_freqs) {
            lv_tmodel_free(m);
            return LV_ERR_NOMEM;
        }
        memcpy(m->rope_freqs, src->rope_freqs.data, (size_t)c.n_rot / 2 * sizeof(float));
        m->rope.freq_factors = m->rope_freqs;
    }
    const int64_t E = c.n_embd, V = c.n_vocab, F = c.n_ff, Q = (int64_t)c.n_head * c.head_dim, KV = (int64_t)c.n_head_kv * c.head_dim;
    st = copy_tensor(&src->tok_embd, m->w.tok_embd, E, V);
    for (int l = 0; l < c.n_layer && st == LV_OK; l++) {
        const lv_layer *S = &src->layers[l];
        lv_tr_layer *D = &m->w.layers[l];
        if ((S->bq.data != NULL) != c.bias_qkv || (S->bk.data != NULL) != c.bias_qkv || (S->bv.data != NULL) != c.bias_qkv ||
            (S->bo.data != NULL) != c.bias_o) {
            st = lv_error(LV_ERR_UNSUPPORTED, "layer %d: biases differ from layer 0's", l);
            break;
        }
        if ((st = copy_tensor(&S->attn_norm, D->attn_norm, E, 1)) || (st = copy_tensor(&S->wq, D->wq, E, Q)) ||
            (st = copy_tensor(&S->wk, D->wk, E, KV)) || (st = copy_tensor(&S->wv, D->wv, E, KV)) || (st = copy_tensor(&S->wo, D->wo, Q, E)) ||
            (st = copy_tensor(&S->ffn_norm, D->ffn_norm, E, 1)) || (st = copy_tensor(&S->ffn_gate, D->w_gate, E, F)) ||
            (st = copy_tensor(&S->ffn_up, D->w_up, E, F)) || (st = copy_tensor(&S->ffn_down, D->w_down, F, E)))
            break;
        if (c.bias_qkv && ((st = copy_tensor(&S->bq, D->bq, Q, 1)) || (st = copy_tensor(&S->bk, D->bk, KV, 1)) ||
                           (st = copy_tensor(&S->bv, D->bv, KV, 1))))
            break;
        if (c.bias_o && (st = copy_tensor(&S->bo, D->bo, E, 1))) break;
    }
    if (st == LV_OK) st = copy_tensor(&src->output_norm, m->w.output_norm, E, 1);
    if (st == LV_OK && !c.tied) st = copy_tensor(&src->output, m->w.output, E, V);
    if (st != LV_OK) {
        lv_tmodel_free(m);
        return st;
    }
    *out = m;
    return LV_OK;
}

/* -------------------------------------------------------------------------------------------
 * export
 * ----------------------------------------------------------------------------------------- */

typedef struct exp_tensor {
    char name[LV_GGUF_MAX_NAME];
    const float *data;
    int64_t ne0, ne1;
    int n_dims;
    lv_type type;
} exp_tensor;

lv_status lv_tmodel_export_gguf(const lv_tmodel *m, const char *vocab_gguf, const char *path, bool f16, const char *name,
                                const char *const *extra_kv) {
    const lv_tr_config *c = &m->c;
    const char *arch = c->arch == LV_ARCH_QWEN2 ? "qwen2" : "llama";
    const int64_t E = c->n_embd, V = c->n_vocab, F = c->n_ff, Q = (int64_t)c->n_head * c->head_dim, KV = (int64_t)c->n_head_kv * c->head_dim;
    const lv_type wt = f16 ? LV_TYPE_F16 : LV_TYPE_F32;
    lv_status st = LV_ERR_NOMEM;
    lv_gguf_writer *w = lv_gguf_writer_create();
    exp_tensor *ts = lv_calloc((size_t)(4 + 16 * c->n_layer), sizeof(exp_tensor));
    uint8_t *buf = NULL;
    FILE *f = NULL;
    char *tmp = NULL;
    if (!w || !ts) goto end;
    char key[160];
#define K(suffix) (snprintf(key, sizeof(key), "%s.%s", arch, suffix), key)
    bool ok = lv_gguf_writer_set_str(w, "general.architecture", arch) && lv_gguf_writer_set_str(w, "general.name", name ? name : "longview");
    ok = ok && lv_gguf_writer_set_u32(w, "general.file_type", f16 ? 1 : 0);
    ok = ok && lv_gguf_writer_set_u32(w, K("context_length"), (uint32_t)c->n_ctx_train);
    ok = ok && lv_gguf_writer_set_u32(w, K("embedding_length"), (uint32_t)E);
    ok = ok && lv_gguf_writer_set_u32(w, K("block_count"), (uint32_t)c->n_layer);
    ok = ok && lv_gguf_writer_set_u32(w, K("feed_forward_length"), (uint32_t)F);
    ok = ok && lv_gguf_writer_set_u32(w, K("attention.head_count"), (uint32_t)c->n_head);
    ok = ok && lv_gguf_writer_set_u32(w, K("attention.head_count_kv"), (uint32_t)c->n_head_kv);
    ok = ok && lv_gguf_writer_set_f32(w, K("rope.freq_base"), c->rope_base);
    ok = ok && lv_gguf_writer_set_f32(w, K("attention.layer_norm_rms_epsilon"), c->norm_eps);
    ok = ok && lv_gguf_writer_set_u32(w, K("rope.dimension_count"), (uint32_t)c->n_rot);
    if ((int64_t)c->n_head * c->head_dim != E) {
        ok = ok && lv_gguf_writer_set_u32(w, K("attention.key_length"), (uint32_t)c->head_dim);
        ok = ok && lv_gguf_writer_set_u32(w, K("attention.value_length"), (uint32_t)c->head_dim);
    }
    ok = ok && lv_gguf_writer_set_u32(w, K("vocab_size"), (uint32_t)V);
    for (int i = 0; ok && extra_kv && extra_kv[i]; i += 2) ok = lv_gguf_writer_set_str(w, extra_kv[i], extra_kv[i + 1]);
#undef K
    if (!ok) goto end;
    int64_t nv = 0;
    if ((st = lv_genmodel_add_vocab(w, vocab_gguf, &nv)) != LV_OK) goto end;
    if (nv != V) {
        st = lv_error(LV_ERR_INVALID_ARG, "%s: the vocabulary has %lld tokens, the model %lld", vocab_gguf, (long long)nv, (long long)V);
        goto end;
    }
    st = LV_ERR_NOMEM;

    int nt = 0;
#define T2(nm, p, a, b) (snprintf(ts[nt].name, LV_GGUF_MAX_NAME, "%s", nm), ts[nt].data = (p), ts[nt].ne0 = (a), ts[nt].ne1 = (b), \
                         ts[nt].n_dims = 2, ts[nt].type = wt, nt++)
#define T1(nm, p, a) (snprintf(ts[nt].name, LV_GGUF_MAX_NAME, "%s", nm), ts[nt].data = (p), ts[nt].ne0 = (a), ts[nt].ne1 = 1, \
                      ts[nt].n_dims = 1, ts[nt].type = LV_TYPE_F32, nt++)
    T2("token_embd.weight", m->w.tok_embd, E, V);
    for (int l = 0; l < c->n_layer; l++) {
        const lv_tr_layer *L = &m->w.layers[l];
        char nm[LV_GGUF_MAX_NAME];
#define BLK(s) (snprintf(nm, sizeof(nm), "blk.%d.%s", l, s), nm)
        T1(BLK("attn_norm.weight"), L->attn_norm, E);
        T2(BLK("attn_q.weight"), L->wq, E, Q);
        T2(BLK("attn_k.weight"), L->wk, E, KV);
        T2(BLK("attn_v.weight"), L->wv, E, KV);
        if (L->bq) {
            T1(BLK("attn_q.bias"), L->bq, Q);
            T1(BLK("attn_k.bias"), L->bk, KV);
            T1(BLK("attn_v.bias"), L->bv, KV);
        }
        T2(BLK("attn_output.weight"), L->wo, Q, E);
        if (L->bo) T1(BLK("attn_output.bias"), L->bo, E);
        T1(BLK("ffn_norm.weight"), L->ffn_norm, E);
        T2(BLK("ffn_gate.weight"), L->w_gate, E, F);
        T2(BLK("ffn_up.weight"), L->w_up, E, F);
        T2(BLK("ffn_down.weight"), L->w_down, F, E);
#undef BLK
    }
    T1("output_norm.weight", m->w.output_norm, E);
    if (!c->tied) T2("output.weight", m->w.output, E, V);
#undef T1
#undef T2
    int64_t max_row = 0;
    for (int i = 0; i < nt; i++) {
        int64_t ne[2] = {ts[i].ne0, ts[i].ne1};
        if (!lv_gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ne)) goto end;
        max_row = LV_MAX(max_row, ts[i].ne0);
    }
    buf = lv_malloc((size_t)max_row * 4);
    size_t pl = strlen(path) + 5;
    tmp = lv_malloc(pl);
    if (!buf || !tmp) goto end;
    snprintf(tmp, pl, "%s.tmp", path);
    if (!(f = fopen(tmp, "wb"))) {
        st = lv_error(LV_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
        goto end;
    }
    if ((st = lv_gguf_writer_write_header(w, f)) != LV_OK) goto end;
    for (int i = 0; i < nt; i++) {
        const int64_t rb = lv_row_bytes(ts[i].type, ts[i].ne0);
        for (int64_t r = 0; r < ts[i].ne1; r++) {
            LV_ASSERT(lv_quantize_row_file(ts[i].type, ts[i].data + r * ts[i].ne0, buf, ts[i].ne0));
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

lv_status lv_tmodel_grow_vocab(const lv_tmodel *src, int32_t n_vocab, bool with_grads, uint64_t seed, float std, lv_tmodel **out) {
    *out = NULL;
    const int32_t V0 = src->c.n_vocab;
    if (n_vocab < V0) return lv_error(LV_ERR_INVALID_ARG, "growing a vocabulary of %d tokens to %d", V0, n_vocab);
    lv_tr_config c = src->c;
    c.n_vocab = n_vocab;
    lv_tmodel *m = NULL;
    lv_status st = lv_tmodel_create(&c, with_grads, &m);
    if (st != LV_OK) return st;
    const int64_t E = c.n_embd, old_rows = (int64_t)V0 * E, new_rows = (int64_t)(n_vocab - V0) * E;
    /* tok_embd, then the layers and the output norm in the same order; an untied output last */
    memcpy(m->w.tok_embd, src->w.tok_embd, (size_t)old_rows * sizeof(float));
    lv_tr_fill_normal(m->w.tok_embd + old_rows, new_rows, seed, std);
    const float *s0 = src->w.tok_embd + old_rows;
    float *d0 = m->w.tok_embd + old_rows + new_rows;
    const int64_t mid = (src->w.output_norm + E) - s0;
    memcpy(d0, s0, (size_t)mid * sizeof(float));
    if (!c.tied) {
        memcpy(m->w.output, src->w.output, (size_t)old_rows * sizeof(float));
        lv_tr_fill_normal(m->w.output + old_rows, new_rows, seed + 1, std);
    }
    m->rope = src->rope;
    if (src->rope_freqs) {
        if (!(m->rope_freqs = lv_mallocn((size_t)c.n_rot / 2, sizeof(float)))) {
            lv_tmodel_free(m);
            return LV_ERR_NOMEM;
        }
        memcpy(m->rope_freqs, src->rope_freqs, (size_t)c.n_rot / 2 * sizeof(float));
        m->rope.freq_factors = m->rope_freqs;
    }
    *out = m;
    return LV_OK;
}
