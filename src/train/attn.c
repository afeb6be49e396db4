/*
 * attn.c: causal GQA attention for training, forward and backward, with an optional
 * sink + window mask (DuoAttention's streaming heads, used by identify), or bidirectional
 * (every key visible to every query: the vision tower's, tvision.c).
 *
 * The fast path is FlashAttention-2 on the CPU: blocks of 64 queries x 64 keys, products by
 * lv_tr_gemm, an online softmax in the forward pass that keeps only the log-sum-exp of each row
 * (Hq * T floats instead of the Hq * T^2 probabilities), and a backward pass that recomputes the
 * probabilities block by block:
 *     P = exp(S - lse),  dV += P^T dO,  dP = dO V^T,  dS = P (dP - rowsum(dO O)),
 *     dK += scale dS^T Q,  dQ += scale dS K.
 * Work is split by query head (and query block in the forward pass); a head's dK and dV are
 * partial sums kept apart and reduced over the heads of a group in a fixed order, so the result
 * does not depend on the thread count. Blocks that the mask hides entirely are skipped.
 *
 * The references (the whole score matrix of a head, double accumulation) are the oracles of
 * tests/train/test_train.c, and the implementation used under lv_tr_set_reference(true).
 */
#include "train/train.h"

#include "kernels/qkernels.h"

#include <math.h>
#include <string.h>

#define BQ 64
#define BK 64

static inline bool visible(const lv_tr_attn_shape *s, int64_t i, int64_t j) {
    if (s->bidir) return true;
    return j <= i && (s->window <= 0 || j < s->sink || i - j < s->window);
}

/* the keys a query i can see lie in [0, key_end(i)) */
static inline int64_t key_end(const lv_tr_attn_shape *s, int64_t i) { return s->bidir ? s->T : i + 1; }

/* whether some key of [j0, j1) is visible to some query of [i0, i1) */
static bool block_visible(const lv_tr_attn_shape *s, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    if (s->bidir) return true;
    if (j0 > i1 - 1) return false;
    if (s->window <= 0 || j0 < s->sink) return true;
    return i0 - (j1 - 1) < s->window;
}

void lv_tr_exp_inplace(float *x, int64_t n) {
    if (!lv_tr_reference() && lv_simd_active() >= LV_SIMD_AVX512) {
        lv_tr_exp_avx512(x, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) x[i] = expf(x[i]);
}

/* -------------------------------------------------------------------------------------------
 * references
 * ----------------------------------------------------------------------------------------- */

void lv_tr_attn_fwd_ref(const lv_tr_attn_shape *s, const float *q, const float *k, const float *v, float *out, float *lse) {
    const int64_t T = s->T;
    const int Hq = s->Hq, Hkv = s->Hkv, D = s->D, G = Hq / Hkv;
    double *p = lv_mallocn((size_t)T, sizeof(double));
    LV_ASSERT(p);
    for (int h = 0; h < Hq; h++) {
        const int g = h / G;
        for (int64_t i = 0; i < T; i++) {
            const float *qi = q + (i * Hq + h) * D;
            double mx = -INFINITY;
            for (int64_t j = 0; j < key_end(s, i); j++) {
                if (!visible(s, i, j)) continue;
                const float *kj = k + (j * Hkv + g) * D;
                double d = 0;
                for (int c = 0; c < D; c++) d += (double)qi[c] * kj[c];
                p[j] = d * s->scale;
                if (p[j] > mx) mx = p[j];
            }
            double sum = 0;
            for (int64_t j = 0; j < key_end(s, i); j++) {
                if (!visible(s, i, j)) continue;
                p[j] = exp(p[j] - mx);
                sum += p[j];
            }
            float *o = out + (i * Hq + h) * D;
            for (int c = 0; c < D; c++) {
                double acc = 0;
                for (int64_t j = 0; j < key_end(s, i); j++)
                    if (visible(s, i, j)) acc += p[j] * v[(j * Hkv + g) * D + c];
                o[c] = (float)(acc / sum);
            }
            if (lse) lse[h * T + i] = (float)(mx + log(sum));
        }
    }
    lv_free(p);
}

void lv_tr_attn_bwd_ref(const lv_tr_attn_shape *s, const float *q, const float *k, const float *v, const float *dout, float *dq, float *dk,
                        float *dv) {
    const int64_t T = s->T;
    const int Hq = s->Hq, Hkv = s->Hkv, D = s->D, G = Hq / Hkv;
    double *P = lv_mallocn((size_t)T, sizeof(double)), *dP = lv_mallocn((size_t)T, sizeof(double));
    double *gk = lv_calloc((size_t)(T * Hkv * D), sizeof(double)), *gv = lv_calloc((size_t)(T * Hkv * D), sizeof(double));
    LV_ASSERT(P && dP && gk && gv);
    for (int h = 0; h < Hq; h++) {
        const int g = h / G;
        for (int64_t i = 0; i < T; i++) {
            const float *qi = q + (i * Hq + h) * D, *doi = dout + (i * Hq + h) * D;
            double mx = -INFINITY;
            for (int64_t j = 0; j < key_end(s, i); j++) {
                if (!visible(s, i, j)) continue;
                double d = 0;
                for (int c = 0; c < D; c++) d += (double)qi[c] * k[(j * Hkv + g) * D + c];
                P[j] = d * s->scale;
                if (P[j] > mx) mx = P[j];
            }
            double sum = 0;
            for (int64_t j = 0; j < key_end(s, i); j++)
                if (visible(s, i, j)) sum += (P[j] = exp(P[j] - mx));
            double pdp = 0;
            for (int64_t j = 0; j < key_end(s, i); j++) {
                if (!visible(s, i, j)) continue;
                P[j] /= sum;
                double d = 0;
                for (int c = 0; c < D; c++) d += (double)doi[c] * v[(j * Hkv + g) * D + c];
                dP[j] = d;
                pdp += P[j] * d;
            }
            double dqi[1024];
            LV_ASSERT(D <= 1024);
            for (int c = 0; c < D; c++) dqi[c] = 0;
            for (int64_t j = 0; j < key_end(s, i); j++) {
                if (!visible(s, i, j)) continue;
                const double ds = P[j] * (dP[j] - pdp) * s->scale;
                for (int c = 0; c < D; c++) {
                    dqi[c] += ds * k[(j * Hkv + g) * D + c];
                    gk[(j * Hkv + g) * D + c] += ds * qi[c];
                    gv[(j * Hkv + g) * D + c] += P[j] * doi[c];
                }
            }
            for (int c = 0; c < D; c++) dq[(i * Hq + h) * D + c] = (float)dqi[c];
        }
    }
    for (int64_t i = 0; i < T * Hkv * D; i++) {
        dk[i] = (float)gk[i];
        dv[i] = (float)gv[i];
    }
    lv_free(P);
    lv_free(dP);
    lv_free(gk);
    lv_free(gv);
}

/* -------------------------------------------------------------------------------------------
 * tiled forward
 * ----------------------------------------------------------------------------------------- */

typedef struct attn_task {
    const lv_tr_attn_shape *s;
    const float *q, *k, *v, *out, *lse, *dout;
    float *o, *l, *dq, *dk, *dv;
    float *scratch;      /* per thread: fwd_thread_floats / bwd_thread_floats */
    float *pk, *pv, *dd; /* backward: per-head partial dK, dV (Hq, T, D); rowsum(dO O) (Hq, T) */
    lv_threadpool *tp;
} attn_task;

static size_t fwd_thread_floats(int D) { return (size_t)D * BK + (size_t)BQ * BK + (size_t)BQ * D + 2 * BQ; }

/* Kt (D, n) = rows j0.. of k for KV head g, transposed */
static void pack_t(const float *k, int64_t stride, int64_t j0, int n, int D, float *Kt) {
    for (int c = 0; c < n; c++) {
        const float *row = k + (j0 + c) * stride;
        for (int d = 0; d < D; d++) Kt[d * n + c] = row[d];
    }
}

static void attn_fwd_worker(void *arg, int ith, int nth) {
    attn_task *t = arg;
    const lv_tr_attn_shape *s = t->s;
    const int64_t T = s->T;
    const int Hq = s->Hq, Hkv = s->Hkv, D = s->D, G = Hq / Hkv;
    const int64_t nqb = (T + BQ - 1) / BQ, n_items = nqb * Hq;
    float *Kt = t->scratch + (size_t)ith * fwd_thread_floats(D);
    float *S = Kt + (size_t)D * BK, *O = S + (size_t)BQ * BK, *m = O + (size_t)BQ * D, *l = m + BQ;
    /* items: query block major, last blocks (the most work) first, heads interleaved */
    for (int64_t item = ith; item < n_items; item += nth) {
        const int64_t qb = nqb - 1 - item / Hq;
        const int h = (int)(item % Hq), g = h / G;
        const int64_t i0 = qb * BQ, i1 = LV_MIN(T, i0 + BQ);
        const int bq = (int)(i1 - i0);
        for (int r = 0; r < bq; r++) {
            m[r] = -INFINITY;
            l[r] = 0;
        }
        memset(O, 0, (size_t)bq * D * sizeof(float));
        const float *Qi = t->q + (i0 * Hq + h) * D;
        for (int64_t j0 = 0; j0 < (s->bidir ? T : i1); j0 += BK) {
            const int64_t j1 = LV_MIN(T, j0 + BK);
            if (!block_visible(s, i0, i1, j0, j1)) continue;
            const int bk = (int)(j1 - j0);
            pack_t(t->k + g * D, (int64_t)Hkv * D, j0, bk, D, Kt);
            lv_tr_gemm(bq, bk, D, Qi, (int64_t)Hq * D, false, Kt, bk, S, BK, false);
            for (int r = 0; r < bq; r++) {
                float *sr = S + r * BK;
                const int64_t i = i0 + r;
                float mx = m[r];
                for (int c = 0; c < bk; c++) {
                    if (visible(s, i, j0 + c)) {
                        sr[c] *= s->scale;
                        if (sr[c] > mx) mx = sr[c];
                    } else {
                        sr[c] = -INFINITY;
                    }
                }
                if (mx == -INFINITY) { /* nothing visible in this block for this row */
                    for (int c = 0; c < bk; c++) sr[c] = 0;
                    continue;
                }
                const float corr = m[r] == -INFINITY ? 0.0f : expf(m[r] - mx);
                for (int c = 0; c < bk; c++) sr[c] = sr[c] == -INFINITY ? -100.0f : sr[c] - mx;
                lv_tr_exp_inplace(sr, bk);
                float sum = 0;
                for (int c = 0; c < bk; c++) {
                    if (!visible(s, i, j0 + c)) sr[c] = 0;
                    sum += sr[c];
                }
                l[r] = l[r] * corr + sum;
                m[r] = mx;
                float *orow = O + r * D;
                for (int d = 0; d < D; d++) orow[d] *= corr;
            }
            lv_tr_gemm(bq, D, bk, S, BK, false, t->v + (j0 * Hkv + g) * D, (int64_t)Hkv * D, O, D, true);
        }
        for (int r = 0; r < bq; r++) {
            float *dst = t->o + ((i0 + r) * Hq + h) * D;
            const float inv = 1.0f / l[r];
            for (int d = 0; d < D; d++) dst[d] = O[r * D + d] * inv;
            if (t->l) t->l[h * T + i0 + r] = m[r] + logf(l[r]);
        }
    }
}

void lv_tr_attn_fwd(lv_threadpool *tp, const lv_tr_attn_shape *s, const float *q, const float *k, const float *v, float *out, float *lse) {
    LV_ASSERT(s->Hq % s->Hkv == 0 && s->T > 0 && (!s->bidir || s->window <= 0));
    if (lv_tr_reference()) {
        lv_tr_attn_fwd_ref(s, q, k, v, out, lse);
        return;
    }
    const int nth = lv_threadpool_n_threads(tp);
    float *scratch = lv_mallocn((size_t)nth * fwd_thread_floats(s->D), sizeof(float));
    LV_ASSERT(scratch);
    attn_task t = {.s = s, .q = q, .k = k, .v = v, .o = out, .l = lse, .scratch = scratch, .tp = tp};
    lv_threadpool_run(tp, attn_fwd_worker, &t);
    lv_free(scratch);
}

/* -------------------------------------------------------------------------------------------
 * tiled backward
 * ----------------------------------------------------------------------------------------- */

static size_t bwd_thread_floats(int D) { return 3 * (size_t)BQ * BK + 2 * (size_t)D * BK; }

size_t lv_tr_attn_bwd_scratch(const lv_tr_attn_shape *s) {
    return 2 * (size_t)s->Hq * (size_t)s->T * (size_t)s->D + (size_t)s->Hq * (size_t)s->T;
}

static void attn_bwd_worker(void *arg, int ith, int nth) {
    attn_task *t = arg;
    const lv_tr_attn_shape *s = t->s;
    const int64_t T = s->T;
    const int Hq = s->Hq, Hkv = s->Hkv, D = s->D, G = Hq / Hkv;
    const int64_t ldq = (int64_t)Hq * D, ldk = (int64_t)Hkv * D;
    float *S = t->scratch + (size_t)ith * bwd_thread_floats(D);
    float *dP = S + (size_t)BQ * BK, *dS = dP + (size_t)BQ * BK, *Kt = dS + (size_t)BQ * BK, *Vt = Kt + (size_t)D * BK;

    /* 1. rowsum(dO O) per (head, token); dq = 0 */
    int64_t lo, hi;
    lv_split_range(T, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        for (int h = 0; h < Hq; h++) {
            const float *o = t->out + (i * Hq + h) * D, *d_o = t->dout + (i * Hq + h) * D;
            float acc = 0;
            for (int d = 0; d < D; d++) acc += o[d] * d_o[d];
            t->dd[h * T + i] = acc;
            memset(t->dq + (i * Hq + h) * D, 0, (size_t)D * sizeof(float));
        }
    lv_threadpool_barrier(t->tp);

    /* 2. per query head: all key blocks, all query blocks that see them */
    for (int h = ith; h < Hq; h += nth) {
        const int g = h / G;
        float *pk = t->pk + (size_t)h * T * D, *pv = t->pv + (size_t)h * T * D;
        const float *lse = t->lse + (size_t)h * T, *dd = t->dd + (size_t)h * T;
        for (int64_t j0 = 0; j0 < T; j0 += BK) {
            const int64_t j1 = LV_MIN(T, j0 + BK);
            const int bk = (int)(j1 - j0);
            float *dKj = pk + j0 * D, *dVj = pv + j0 * D;
            memset(dKj, 0, (size_t)bk * D * sizeof(float));
            memset(dVj, 0, (size_t)bk * D * sizeof(float));
            pack_t(t->k + g * D, ldk, j0, bk, D, Kt);
            pack_t(t->v + g * D, ldk, j0, bk, D, Vt);
            for (int64_t i0 = s->bidir ? 0 : (j0 / BQ) * BQ; i0 < T; i0 += BQ) {
                const int64_t i1 = LV_MIN(T, i0 + BQ);
                if (!block_visible(s, i0, i1, j0, j1)) {
                    if (s->window > 0 && j0 >= s->sink && i0 - (j1 - 1) >= s->window) break; /* later blocks are further */
                    continue;
                }
                const int bq = (int)(i1 - i0);
                const float *Qi = t->q + (i0 * Hq + h) * D, *dOi = t->dout + (i0 * Hq + h) * D;
                lv_tr_gemm(bq, bk, D, Qi, ldq, false, Kt, bk, S, BK, false);
                for (int r = 0; r < bq; r++) {
                    float *sr = S + r * BK;
                    const float lr = lse[i0 + r];
                    for (int c = 0; c < bk; c++) sr[c] = visible(s, i0 + r, j0 + c) ? sr[c] * s->scale - lr : -100.0f;
                    lv_tr_exp_inplace(sr, bk);
                    for (int c = 0; c < bk; c++)
                        if (!visible(s, i0 + r, j0 + c)) sr[c] = 0;
                }
                /* dVj += P^T dOi */
                lv_tr_gemm(bk, D, bq, S, BK, true, dOi, ldq, dVj, D, true);
                /* dP = dOi Vj^T */
                lv_tr_gemm(bq, bk, D, dOi, ldq, false, Vt, bk, dP, BK, false);
                for (int r = 0; r < bq; r++) {
                    const float di = dd[i0 + r];
                    for (int c = 0; c < bk; c++) dS[r * BK + c] = S[r * BK + c] * (dP[r * BK + c] - di) * s->scale;
                }
                /* dKj += dS^T Qi; dQi += dS Kj */
                lv_tr_gemm(bk, D, bq, dS, BK, true, Qi, ldq, dKj, D, true);
                lv_tr_gemm(bq, D, bk, dS, BK, false, t->k + (j0 * Hkv + g) * D, ldk, t->dq + (i0 * Hq + h) * D, ldq, true);
            }
        }
    }
    lv_threadpool_barrier(t->tp);

    /* 3. dk, dv: the partial sums of the G heads of each group, in head order */
    for (int64_t i = lo; i < hi; i++)
        for (int g = 0; g < Hkv; g++) {
            float *dk = t->dk + (i * Hkv + g) * D, *dv = t->dv + (i * Hkv + g) * D;
            for (int d = 0; d < D; d++) {
                float a = 0, b = 0;
                for (int hh = 0; hh < G; hh++) {
                    a += t->pk[((size_t)(g * G + hh) * T + i) * D + d];
                    b += t->pv[((size_t)(g * G + hh) * T + i) * D + d];
                }
                dk[d] = a;
                dv[d] = b;
            }
        }
}

void lv_tr_attn_bwd(lv_threadpool *tp, const lv_tr_attn_shape *s, const float *q, const float *k, const float *v, const float *out,
                    const float *lse, const float *dout, float *dq, float *dk, float *dv, float *scratch) {
    if (lv_tr_reference()) {
        lv_tr_attn_bwd_ref(s, q, k, v, dout, dq, dk, dv);
        return;
    }
    const int nth = lv_threadpool_n_threads(tp);
    float *ts = lv_mallocn((size_t)nth * bwd_thread_floats(s->D), sizeof(float));
    LV_ASSERT(ts);
    const size_t htd = (size_t)s->Hq * (size_t)s->T * (size_t)s->D;
    attn_task t = {.s = s, .q = q, .k = k, .v = v, .out = out, .lse = lse, .dout = dout, .dq = dq, .dk = dk, .dv = dv,
                   .scratch = ts, .pk = scratch, .pv = scratch + htd, .dd = scratch + 2 * htd, .tp = tp};
    lv_threadpool_run(tp, attn_bwd_worker, &t);
    lv_free(ts);
}
