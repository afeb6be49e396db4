/*
 * sampler.c: token sampling. The penalties (repeat, frequency, presence over the last N accepted
 * tokens), then greedy (argmax, ties to the lowest id) or a chain in llama.cpp's default order:
 * top-k -> top-p -> min-p -> temperature -> a seeded draw. The candidate arrays, the penalized
 * logits and the history are allocated once, at creation; sampling allocates nothing.
 * Also the log-probabilities of the raw softmax (lv_token_logprobs), for the server's logprobs.
 */
#include "core/core.h"
#include "runtime/runtime.h"

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
    /* penalties (when on): the last penalty_last_n accepted tokens (a ring), each token's count
     * among them, and the penalized logits */
    bool pen;
    lv_token *hist;    /* (penalty_last_n) */
    int32_t n_hist, head; /* tokens held; the oldest's index once the ring is full */
    int32_t *count;    /* (n_vocab) */
    float *pl;         /* (n_vocab) */
};

lv_sampler_params lv_sampler_default_params(void) {
    lv_sampler_params p = {.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .seed = 0x5eed,
                           .penalty_last_n = 64, .penalty_repeat = 1.0f, .penalty_freq = 0.0f, .penalty_present = 0.0f};
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
    if (p.penalty_repeat == 0.0f) p.penalty_repeat = 1.0f;
    if (p.penalty_last_n < 0 || !(p.penalty_repeat > 0 && isfinite(p.penalty_repeat)) || !isfinite(p.penalty_freq) || !isfinite(p.penalty_present))
        return lv_error(LV_ERR_INVALID_ARG, "sampler: penalty_last_n must be >= 0, penalty_repeat > 0, the penalties finite");
    lv_sampler *smp = lv_calloc(1, sizeof(*smp));
    if (!smp) return LV_ERR_NOMEM;
    smp->p = p;
    smp->n_vocab = n_vocab;
    smp->pen = p.penalty_last_n > 0 && (p.penalty_repeat != 1.0f || p.penalty_freq != 0.0f || p.penalty_present != 0.0f);
    smp->c = lv_calloc((size_t)n_vocab, sizeof(cand));
    bool ok = smp->c != NULL;
    if (ok && smp->pen) {
        smp->hist = lv_mallocn((size_t)p.penalty_last_n, sizeof(lv_token));
        smp->count = lv_calloc((size_t)n_vocab, sizeof(int32_t));
        smp->pl = lv_mallocn((size_t)n_vocab, sizeof(float));
        ok = smp->hist && smp->count && smp->pl;
    }
    if (!ok) {
        lv_sampler_free(smp);
        return LV_ERR_NOMEM;
    }
    uint64_t x = p.seed;
    for (int i = 0; i < 4; i++) smp->s[i] = splitmix(&x);
    *out = smp;
    return LV_OK;
}

void lv_sampler_free(lv_sampler *smp) {
    if (!smp) return;
    lv_free(smp->c);
    lv_free(smp->hist);
    lv_free(smp->count);
    lv_free(smp->pl);
    lv_free(smp);
}

void lv_sampler_accept(lv_sampler *smp, lv_token t) {
    if (!smp->pen || t < 0 || t >= smp->n_vocab) return;
    const int32_t N = smp->p.penalty_last_n;
    if (smp->n_hist < N) {
        smp->hist[smp->n_hist++] = t;
    } else {
        smp->count[smp->hist[smp->head]]--;
        smp->hist[smp->head] = t;
        smp->head = (smp->head + 1) % N;
    }
    smp->count[t]++;
}

/* the logits with the penalties applied (smp->pl), each distinct token of the history once */
static const float *penalize(lv_sampler *smp, const float *logits) {
    float *pl = smp->pl;
    memcpy(pl, logits, (size_t)smp->n_vocab * sizeof(float));
    const lv_sampler_params *p = &smp->p;
    for (int32_t i = 0; i < smp->n_hist; i++) {
        const lv_token t = smp->hist[i];
        const int32_t c = smp->count[t];
        if (c <= 0) continue; /* done already (marked negative below) */
        float l = pl[t];
        l = l <= 0 ? l * p->penalty_repeat : l / p->penalty_repeat;
        pl[t] = l - (float)c * p->penalty_freq - p->penalty_present;
        smp->count[t] = -c;
    }
    for (int32_t i = 0; i < smp->n_hist; i++) {
        const lv_token t = smp->hist[i];
        if (smp->count[t] < 0) smp->count[t] = -smp->count[t];
    }
    return pl;
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

const float *lv_sampler_penalized(lv_sampler *smp, const float *logits) {
    return smp->pen && smp->n_hist > 0 ? penalize(smp, logits) : logits;
}

lv_token lv_sampler_sample(lv_sampler *smp, const float *logits) {
    const int32_t V = smp->n_vocab;
    const lv_sampler_params *p = &smp->p;
    logits = lv_sampler_penalized(smp, logits);
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

/* a < b in the order of the top list: larger logit first, ties to the lower id */
static inline bool lp_before(float la, lv_token a, float lb, lv_token b) { return la > lb || (la == lb && a < b); }

float lv_token_logprobs(const float *logits, int32_t V, lv_token token, int32_t k, lv_token *top_ids, float *top_lp) {
    if (k > V) k = V;
    if (k < 0 || !top_ids || !top_lp) k = 0;
    float mx = -INFINITY;
    for (int32_t i = 0; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    if (mx > -INFINITY)
        for (int32_t i = 0; i < V; i++)
            if (logits[i] == logits[i]) sum += exp((double)logits[i] - mx);
    const double lse = mx > -INFINITY ? (double)mx + log(sum) : 0;
    /* the k best by insertion into a sorted list (k is small: at most 20 for the server) */
    int32_t n = 0;
    for (int32_t i = 0; i < V && k > 0; i++) {
        const float l = logits[i] == logits[i] ? logits[i] : -INFINITY;
        if (n == k && !lp_before(l, i, top_lp[n - 1], top_ids[n - 1])) continue;
        int32_t j = n < k ? n++ : k - 1;
        while (j > 0 && lp_before(l, i, top_lp[j - 1], top_ids[j - 1])) {
            top_lp[j] = top_lp[j - 1];
            top_ids[j] = top_ids[j - 1];
            j--;
        }
        top_lp[j] = l;
        top_ids[j] = i;
    }
    for (int32_t j = 0; j < n; j++) top_lp[j] = (float)((double)top_lp[j] - lse);
    if (token < 0 || token >= V || logits[token] != logits[token]) return -INFINITY;
    return (float)((double)logits[token] - lse);
}
