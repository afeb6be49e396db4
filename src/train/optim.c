/*
 * optim.c: AdamW (Loshchilov & Hutter: decoupled weight decay, as torch.optim.AdamW) with global
 * gradient-norm clipping. Weight decay applies to the matrices (embedding included, as llm.c),
 * not to norm weights or biases. The gradient norm is summed in fixed blocks in a fixed order, so
 * the update does not depend on the thread count.
 */
#include "train.h"

#include <math.h>
#include <string.h>

#define NORM_BLOCK 65536

lv_status lv_adamw_init(lv_adamw *o, const lv_tmodel *m) {
    memset(o, 0, sizeof(*o));
    o->n = m->n_params;
    o->m = lv_calloc((size_t)o->n, sizeof(float));
    o->v = lv_calloc((size_t)o->n, sizeof(float));
    o->decay = lv_calloc((size_t)o->n, 1);
    if (!o->m || !o->v || !o->decay) {
        lv_adamw_free(o);
        return LV_ERR_NOMEM;
    }
    const lv_tr_config *c = &m->c;
    const int64_t E = c->n_embd, V = c->n_vocab, F = c->n_ff, Q = (int64_t)c->n_head * c->head_dim, KV = (int64_t)c->n_head_kv * c->head_dim;
#define MARK(p, n) memset(o->decay + ((p) - m->params), 1, (size_t)(n))
    MARK(m->w.tok_embd, V * E);
    for (int l = 0; l < c->n_layer; l++) {
        const lv_tr_layer *L = &m->w.layers[l];
        MARK(L->wq, Q * E);
        MARK(L->wk, KV * E);
        MARK(L->wv, KV * E);
        MARK(L->wo, E * Q);
        MARK(L->w_gate, F * E);
        MARK(L->w_up, F * E);
        MARK(L->w_down, E * F);
    }
    if (!c->tied) MARK(m->w.output, V * E);
#undef MARK
    return LV_OK;
}

void lv_adamw_free(lv_adamw *o) {
    if (!o) return;
    lv_free(o->m);
    lv_free(o->v);
    lv_free(o->decay);
    memset(o, 0, sizeof(*o));
}

typedef struct adam_task {
    lv_adamw *o;
    float *p, *g;
    double *partial;
    float lr, b1, b2, eps, wd, gscale, bc1, bc2;
} adam_task;

static void norm_blocks(void *arg, int64_t lo, int64_t hi, int ith) {
    adam_task *t = arg;
    for (int64_t b = lo; b < hi; b++) {
        const int64_t i0 = b * NORM_BLOCK, i1 = LV_MIN(t->o->n, i0 + NORM_BLOCK);
        double s = 0;
        for (int64_t i = i0; i < i1; i++) s += (double)t->g[i] * (double)t->g[i];
        t->partial[b] = s;
    }
}

static void update_range(void *arg, int64_t lo, int64_t hi, int ith) {
    adam_task *t = arg;
    lv_adamw *o = t->o;
    for (int64_t i = lo; i < hi; i++) {
        const float g = t->g[i] * t->gscale;
        const float mi = o->m[i] = t->b1 * o->m[i] + (1.0f - t->b1) * g;
        const float vi = o->v[i] = t->b2 * o->v[i] + (1.0f - t->b2) * g * g;
        const float mhat = mi / t->bc1, vhat = vi / t->bc2;
        float p = t->p[i];
        if (o->decay[i]) p -= t->lr * t->wd * p;
        t->p[i] = p - t->lr * mhat / (sqrtf(vhat) + t->eps);
    }
}

float lv_adamw_step(lv_threadpool *tp, lv_adamw *o, float *params, float *grads, float lr, float beta1, float beta2, float eps, float wd,
                    float clip) {
    const int64_t nb = (o->n + NORM_BLOCK - 1) / NORM_BLOCK;
    double *partial = lv_mallocn((size_t)nb, sizeof(double));
    LV_ASSERT(partial);
    adam_task t = {.o = o, .p = params, .g = grads, .partial = partial};
    lv_parallel_for(tp, nb, norm_blocks, &t);
    double ss = 0;
    for (int64_t b = 0; b < nb; b++) ss += partial[b];
    lv_free(partial);
    const float norm = (float)sqrt(ss);
    o->t++;
    t.lr = lr, t.b1 = beta1, t.b2 = beta2, t.eps = eps, t.wd = wd;
    t.gscale = clip > 0 && norm > clip ? clip / norm : 1.0f;
    t.bc1 = 1.0f - powf(beta1, (float)o->t);
    t.bc2 = 1.0f - powf(beta2, (float)o->t);
    lv_parallel_for(tp, o->n, update_range, &t);
    return norm;
}
