/*
 * sampler.c: token sampling. Greedy (argmax, ties to the lowest id) or a chain in llama.cpp's
 * default order: top-k -> top-p -> min-p -> temperature -> a seeded draw. The candidate arrays
 * are allocated once, at creation; sampling allocates nothing.
 */
#include "core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    float logit;
    int32_t id;
} cand;

struct lv_sampler {
    lv_sampler_params p;
    int32_t n_vocab;
    cand *c;           /* (n_vocab) */
    uint64_t s[4];     /* xoshiro256** state */
};

lv_sampler_params lv_sampler_default_params(void) {
    lv_sampler_params p = {.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .seed = 0x5eed};
    return p;
}

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(lv_sampler *smp) {
    uint64_t *s = smp->s;
    const uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

lv_status lv_sampler_create(lv_sampler_params p, int32_t n_vocab, lv_sampler **out) {
    *out = NULL;
    if (n_vocab <= 0) return lv_error(LV_ERR_INVALID_ARG, "sampler: n_vocab must be positive");
    if (!(p.temp == p.temp) || !(p.top_p == p.top_p) || !(p.min_p == p.min_p)) return lv_error(LV_ERR_INVALID_ARG, "sampler: NaN parameter");
    lv_sampler *smp = lv_calloc(1, sizeof(*smp));
    if (!smp) return LV_ERR_NOMEM;
    smp->c = lv_calloc((size_t)n_vocab, sizeof(cand));
    if (!smp->c) {
        lv_free(smp);
        return LV_ERR_NOMEM;
    }
    smp->p = p;
    smp->n_vocab = n_vocab;
    uint64_t x = p.seed;
    for (int i = 0; i < 4; i++) smp->s[i] = splitmix(&x);
    *out = smp;
    return LV_OK;
}

void lv_sampler_free(lv_sampler *smp) {
    if (!smp) return;
    lv_free(smp->c);
    lv_free(smp);
}

/* descending by logit, ties by ascending id (deterministic) */
static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit > y->logit) return -1;
    if (x->logit < y->logit) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Move the k best candidates to the front (in any order): quickselect. */
static void select_top(cand *c, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        cand pivot = c[(lo + hi) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (cand_cmp(&c[i], &pivot) < 0) i++;
            while (cand_cmp(&c[j], &pivot) > 0) j--;
            if (i <= j) {
                cand t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

lv_token lv_sampler_sample(lv_sampler *smp, const float *logits) {
    const int32_t V = smp->n_vocab;
    const lv_sampler_params *p = &smp->p;
    if (p->temp <= 0.0f) {
        int32_t best = 0;
        for (int32_t i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    cand *c = smp->c;
    int64_t n = V;
    for (int32_t i = 0; i < V; i++) {
        c[i].logit = logits[i] == logits[i] ? logits[i] : -INFINITY; /* NaN never wins */
        c[i].id = i;
    }
    /* top-k */
    if (p->top_k > 0 && p->top_k < n) {
        select_top(c, n, p->top_k);
        n = p->top_k;
    }
    qsort(c, (size_t)n, sizeof(cand), cand_cmp);
    /* top-p on the softmax of what is left */
    if (p->top_p < 1.0f) {
        double sum = 0;
        for (int64_t i = 0; i < n; i++) sum += exp((double)c[i].logit - c[0].logit);
        double cum = 0;
        int64_t keep = n;
        for (int64_t i = 0; i < n; i++) {
            cum += exp((double)c[i].logit - c[0].logit) / sum;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    /* min-p: keep p_i >= min_p * p_max, i.e. logit_i >= logit_max + log(min_p) */
    if (p->min_p > 0.0f) {
        const float thr = c[0].logit + logf(p->min_p);
        int64_t keep = 1;
        while (keep < n && c[keep].logit >= thr) keep++;
        n = keep;
    }
    /* temperature, softmax, draw */
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += exp(((double)c[i].logit - c[0].logit) / p->temp);
    const double r = (double)(rng_next(smp) >> 11) * (1.0 / 9007199254740992.0) * sum;
    double cum = 0;
    for (int64_t i = 0; i < n; i++) {
        cum += exp(((double)c[i].logit - c[0].logit) / p->temp);
        if (r < cum) return c[i].id;
    }
    return c[n - 1].id;
}
