/*
 * optim.c: AdamW (Loshchilov & Hutter: decoupled weight decay, as torch.optim.AdamW) with global
 * gradient-norm clipping. Weight decay applies to the matrices (embedding included, as llm.c),
 * not to norm weights or biases. The gradient norm is summed in fixed blocks in a fixed order, so
 * the update does not depend on the thread count.
 */
#include "train/train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define NORM_BLOCK 65536

lv_status lv_adamw_init_n(lv_adamw *o, int64_t n) {
    memset(o, 0, sizeof(*o));
    o->n = n;
    o->m = lv_calloc((size_t)o->n, sizeof(float));
    o->v = lv_calloc((size_t)o->n, sizeof(float));
    o->decay = lv_calloc((size_t)o->n, 1);
    if (!o->m || !o->v || !o->decay) {
        lv_adamw_free(o);
        return LV_ERR_NOMEM;
    }
    return LV_OK;
}

lv_status lv_adamw_init(lv_adamw *o, const lv_tmodel *m) {
    lv_status st = lv_adamw_init_n(o, m->n_params);
    if (st != LV_OK) return st;
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

/* -------------------------------------------------------------------------------------------
 * optimizer state files: "LVADAMW1", then little-endian u64 n, i64 t, i64 step, u64 seed,
 * i64 total_steps, f32 m[n], f32 v[n], and a u64 FNV-1a hash of everything before it.
 * ----------------------------------------------------------------------------------------- */

static const char k_magic[8] = {'L', 'V', 'A', 'D', 'A', 'M', 'W', '1'};

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static bool put(FILE *f, uint64_t *h, const void *p, size_t n) {
    *h = fnv(*h, p, n);
    return fwrite(p, 1, n, f) == n;
}

static bool get(FILE *f, uint64_t *h, void *p, size_t n) {
    if (fread(p, 1, n, f) != n) return false;
    *h = fnv(*h, p, n);
    return true;
}

lv_status lv_adamw_save(const lv_adamw *o, const lv_tr_ckpt_info *info, const char *path) {
    size_t pl = strlen(path) + 5;
    char *tmp = lv_malloc(pl);
    if (!tmp) return LV_ERR_NOMEM;
    snprintf(tmp, pl, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        lv_status st = lv_error(LV_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
        lv_free(tmp);
        return st;
    }
    uint64_t h = 0xcbf29ce484222325ull, n = (uint64_t)o->n, seed = info->seed;
    int64_t t = o->t, step = info->step, total = info->total_steps;
    bool ok = put(f, &h, k_magic, 8) && put(f, &h, &n, 8) && put(f, &h, &t, 8) && put(f, &h, &step, 8) && put(f, &h, &seed, 8) &&
              put(f, &h, &total, 8) && put(f, &h, o->m, (size_t)o->n * sizeof(float)) && put(f, &h, o->v, (size_t)o->n * sizeof(float));
    ok = ok && fwrite(&h, 1, 8, f) == 8;
    ok = fflush(f) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    lv_status st = LV_OK;
    if (!ok) st = lv_error(LV_ERR_IO, "writing '%s': %s", tmp, strerror(errno));
    else if (rename(tmp, path) != 0) st = lv_error(LV_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    if (st != LV_OK) remove(tmp);
    lv_free(tmp);
    return st;
}

lv_status lv_adamw_load(lv_adamw *o, lv_tr_ckpt_info *info, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return lv_error(LV_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    uint64_t h = 0xcbf29ce484222325ull, n = 0, seed = 0, stored = 0;
    int64_t t = 0, step = 0, total = 0;
    char magic[8];
    lv_status st = LV_OK;
    if (!get(f, &h, magic, 8) || memcmp(magic, k_magic, 8) != 0) {
        st = lv_error(LV_ERR_FORMAT, "%s: not a longview optimizer state file", path);
    } else if (!get(f, &h, &n, 8) || !get(f, &h, &t, 8) || !get(f, &h, &step, 8) || !get(f, &h, &seed, 8) || !get(f, &h, &total, 8)) {
        st = lv_error(LV_ERR_FORMAT, "%s: truncated header", path);
    } else if (n != (uint64_t)o->n) {
        st = lv_error(LV_ERR_INVALID_ARG, "%s: state for %llu parameters, the model has %lld", path, (unsigned long long)n, (long long)o->n);
    } else if (t < 0 || step < 0 || total < 0) {
        st = lv_error(LV_ERR_FORMAT, "%s: negative step counts", path);
    } else if (!get(f, &h, o->m, (size_t)n * sizeof(float)) || !get(f, &h, o->v, (size_t)n * sizeof(float)) || fread(&stored, 1, 8, f) != 8) {
        st = lv_error(LV_ERR_FORMAT, "%s: truncated", path);
    } else if (stored != h) {
        st = lv_error(LV_ERR_FORMAT, "%s: checksum mismatch (corrupt file)", path);
    }
    fclose(f);
    if (st != LV_OK) return st;
    o->t = t;
    info->step = step;
    info->seed = seed;
    info->total_steps = total;
    return LV_OK;
}

float lv_lr_schedule(int64_t step, int64_t total, int64_t warmup, float lr, float min_lr) {
    if (step < warmup) return lr * (float)(step + 1) / (float)warmup;
    const int64_t span = total - warmup;
    if (span <= 0) return lr;
    double p = (double)(step - warmup) / (double)span;
    if (p > 1) p = 1;
    return min_lr + (float)(0.5 * (1.0 + cos(LV_PI * p))) * (lr - min_lr);
}
