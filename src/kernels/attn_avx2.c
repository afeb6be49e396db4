/*
 * attn_avx2.c: the tiled attention kernel with AVX2 + FMA + F16C intrinsics (head dims multiples
 * of 8, Dv up to 256), and the portable one (attn_impl.h) compiled for AVX2 for other head dims.
 * The same structure as attn_avx512.c at 8 lanes: a block's keys widened as they are stored
 * (transposed, lv_attn_span), each score one fma chain over the dimensions in its own lane, 8 keys
 * per vector; exp 8 lanes at a time, the output row in registers across a block. A block that at
 * most DIRECT_ROWS query rows use (most blocks of a decode step under LServe selection) is read
 * straight from its f16 page instead, the same f32 values in the same fma chains, so the two paths
 * agree bit for bit; either way the blocks PF_AHEAD ahead are prefetched (attn_pf.h).
 * Its reference is lv_attn_ref; tests/kernels/test_kernels.c compares them at every level.
 */
#include "kernels/kernels.h"
void lv_attn_tiled_avx2_generic(const lv_attn_job *job, float *scratch);
#define ATTN_FN lv_attn_tiled_avx2_generic
#include "kernels/attn_impl.h"

#include <immintrin.h>
#include <stdbool.h>

#define KB 64
#define MAX_DV_REGS 32 /* Dv up to 256 */
#include "kernels/attn_pf.h"
#include "kernels/attn_pv_avx2.h"

/* A block is read straight from an f16 page (no widened copy) when at most this many query rows
 * use it: each row then converts the keys and values itself, which costs less than the widening's
 * stores and reloads up to 3 rows (attn_bench, bench/NOTES.md 2026-12-07). That is every block of a
 * decode step at G <= 3 (SmolLM2-135M: 3), and most blocks of one under LServe's per-query-head
 * selection, where a KV head reads the union of its query heads' pages and most serve one head. */
#define DIRECT_ROWS 3

static inline __m256 exp256(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 t = _mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f));
    const __m256 n = _mm256_floor_ps(t);
    const __m256 f = _mm256_sub_ps(t, n);
    __m256 p = _mm256_set1_ps(1.5353362e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3398874e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.6184373e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5503324e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022648e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9314718e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    /* 2^n through the exponent bits (n >= -126 after the clamp) */
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* kT (Dk x KB): keys j0.. of a span (transposed as stored), key j dimension d at kT[d * KB + j];
 * keys past nk are zero. f32 keys are copied too: read in place, a vision tower's keys (dimension
 * rows 4 KiB apart) fall into a few L1 sets and the kernel ran 2.3x slower (bench/NOTES.md) */
static void widen_keys_t(lv_kv_type t, const lv_attn_span *sp, int j0, int nk, int Dk, float *kT, const next_block *nb) {
    for (int d = 0; d < Dk; d++) {
        if (nb->nk) prefetch_bytes(nb->k + (size_t)d * nb->k_row, nb->k_n);
        float *dst = kT + (size_t)d * KB;
        if (nk == KB && t == LV_KV_F16) {
            const uint16_t *h = (const uint16_t *)sp->k + (size_t)d * (size_t)sp->ldk + j0;
            for (int j = 0; j < KB; j += 8) _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + j))));
        } else if (nk == KB) {
            memcpy(dst, (const float *)sp->k + (size_t)d * (size_t)sp->ldk + j0, KB * sizeof(float));
        } else {
            for (int j = 0; j < KB; j++) dst[j] = j < nk ? lv_attn_key(t, sp, j0 + j, d) : 0.0f;
        }
    }
}

/* value rows first_row.. as f32, a row of the next block prefetched per row */
static inline void widen_block(lv_kv_type t, const void *src, int64_t first_row, int rows, int D, float *dst, const next_block *nb) {
    for (int j = 0; j < rows; j++) {
        if (j < nb->nk) prefetch_bytes(nb->v + (size_t)j * nb->v_n, nb->v_n);
        if (t == LV_KV_F32) {
            memcpy(dst + (size_t)j * D, (const float *)src + (first_row + j) * D, (size_t)D * sizeof(float));
        } else {
            const uint16_t *h = (const uint16_t *)src + (first_row + j) * D;
            for (int i = 0; i < D; i += 8) _mm256_storeu_ps(dst + (size_t)j * D + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
        }
    }
}

/* 8 f32 from element off of p: f16 widened (h16) or f32 */

/* the scores of one query row against a block's nk keys (transposed: dimension d of key j at
 * element d * ld + j of k, f16 straight from the page or the widened f32 block), 32 keys at a
 * time, one fma chain over d per key: the same values and chain either way. pf: a block to
 * prefetch during the first 32 keys (a key row and a value row per dimension), or NULL. */
static inline __attribute__((always_inline)) void score_row(const bool h16, const float *qr, const void *k, size_t ld, int nk, int Dk, float *sr,
                                                            const next_block *pf) {
    for (int j = 0; j < nk; j += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int d = 0; d < Dk; d++) {
            if (pf && j == 0) {
                prefetch_bytes(pf->k + (size_t)d * pf->k_row, pf->k_n);
                if (d < pf->nk) prefetch_bytes(pf->v + (size_t)d * pf->v_n, pf->v_n);
            }
            const __m256 qd = _mm256_set1_ps(qr[d]);
            const size_t kd = (size_t)d * ld + (size_t)j;
            a0 = _mm256_fmadd_ps(qd, load8(h16, k, kd), a0);
            a1 = _mm256_fmadd_ps(qd, load8(h16, k, kd + 8), a1);
            a2 = _mm256_fmadd_ps(qd, load8(h16, k, kd + 16), a2);
            a3 = _mm256_fmadd_ps(qd, load8(h16, k, kd + 24), a3);
        }
        _mm256_storeu_ps(sr + j, a0);
        _mm256_storeu_ps(sr + j + 8, a1);
        _mm256_storeu_ps(sr + j + 16, a2);
        _mm256_storeu_ps(sr + j + 24, a3);
    }
    for (int d = Dk; pf && d < pf->nk; d++) prefetch_bytes(pf->v + (size_t)d * pf->v_n, pf->v_n);
}


void lv_attn_tiled_avx2(const lv_attn_job *job, float *scratch) {
    const int Dk = job->Dk, Dv = job->Dv;
    if (Dk % 8 != 0 || Dv % 8 != 0 || Dv > 8 * MAX_DV_REGS) {
        lv_attn_tiled_avx2_generic(job, scratch);
        return;
    }
    const int nq = job->n_tok * job->n_head;
    float *q = scratch;
    float *kb = q + (size_t)nq * Dk;
    float *vb = kb + (size_t)KB * Dk;
    float *sc = vb + (size_t)KB * Dv;
    float *m = sc + (size_t)nq * KB;
    float *l = m + nq;
#define QROW(r) (job->q + (size_t)((r) / job->n_head) * job->q_tok_stride + (size_t)((r) % job->n_head) * job->q_head_stride)
#define OROW(r) (job->out + (size_t)((r) / job->n_head) * job->out_tok_stride + (size_t)((r) % job->n_head) * job->out_head_stride)
#define QPOS(r) (job->pos[(r) / job->n_head])
    for (int r = 0; r < nq; r++) {
        const float *src = QROW(r);
        float *dq = q + (size_t)r * Dk;
        if (job->kv_type == LV_KV_F16)
            for (int d = 0; d < Dk; d += 8)
                _mm256_storeu_ps(dq + d, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(src + d), _MM_FROUND_TO_NEAREST_INT)));
        else
            memcpy(dq, src, (size_t)Dk * sizeof(float));
        m[r] = -INFINITY;
        l[r] = 0.0f;
        memset(OROW(r), 0, (size_t)Dv * sizeof(float));
    }
    int32_t max_qpos = job->pos[0];
    for (int t = 1; t < job->n_tok; t++) max_qpos = job->pos[t] > max_qpos ? job->pos[t] : max_qpos;

    if (job->n_tok == 1) /* a decode job: its first blocks, which no earlier block prefetches */
        for (int i = 0; i < PF_AHEAD; i++) {
            const next_block first = find_next_block(job, 0, 0, i);
            prefetch_block(&first, Dk);
        }
    const uint32_t all_heads = job->n_head >= 32 ? UINT32_MAX : (1u << job->n_head) - 1u;
    for (int s = 0; s < job->n_spans; s++) {
        const lv_attn_span *sp = &job->spans[s];
        const uint32_t heads = job->span_heads ? job->span_heads[s] : UINT32_MAX;
        const int rows = job->n_tok * __builtin_popcount(heads & all_heads); /* query rows that use the span */
        for (int32_t j0 = 0; j0 < sp->n; j0 += KB) {
            const int nk = sp->n - j0 < KB ? sp->n - j0 : KB;
            if (lv_span_pos(sp, j0) > max_qpos) break;
            const next_block nb = find_next_block(job, s, j0, PF_AHEAD);
            /* a full f16 block that few rows use: read from the page, prefetching in the first row's
             * score loop; otherwise widened once for all rows, prefetching as it widens */
            const bool direct = job->kv_type == LV_KV_F16 && nk == KB && Dv % 64 == 0 && rows <= DIRECT_ROWS;
            const uint16_t *kh = (const uint16_t *)sp->k + j0, *vh = (const uint16_t *)sp->v + (size_t)j0 * (size_t)Dv;
            if (!direct) {
                widen_keys_t(job->kv_type, sp, j0, nk, Dk, kb, &nb);
                widen_block(job->kv_type, sp->v, j0, nk, Dv, vb, &nb);
            }
            bool pf_pending = direct && nb.nk;
            int32_t kp[KB]; /* the block's key positions */
            const int32_t kpos_max = lv_span_pos_block(sp, j0, nk, kp);
            /* scores of 4 query rows at a time, 16 keys per step: each key vector loaded once for the 4
             * rows (8 fmas per 2 loads and 4 broadcasts, against 4 per 4 + 1 row by row); the same fma
             * chain per score as the row kernel below, so the result does not depend on which is used */
            int r4 = 0;
            if (heads == UINT32_MAX)
                for (; r4 + 4 <= nq; r4 += 4) {
                    const float *q0 = q + (size_t)r4 * Dk, *q1 = q0 + Dk, *q2 = q1 + Dk, *q3 = q2 + Dk;
                    float *s0 = sc + (size_t)r4 * KB;
                    for (int j = 0; j < nk; j += 16) {
                        __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
                        for (int d = 0; d < Dk; d++) {
                            const float *kd = kb + (size_t)d * KB + j;
                            const __m256 k0 = _mm256_loadu_ps(kd), k1 = _mm256_loadu_ps(kd + 8);
                            __m256 qd = _mm256_broadcast_ss(q0 + d);
                            a00 = _mm256_fmadd_ps(qd, k0, a00);
                            a01 = _mm256_fmadd_ps(qd, k1, a01);
                            qd = _mm256_broadcast_ss(q1 + d);
                            a10 = _mm256_fmadd_ps(qd, k0, a10);
                            a11 = _mm256_fmadd_ps(qd, k1, a11);
                            qd = _mm256_broadcast_ss(q2 + d);
                            a20 = _mm256_fmadd_ps(qd, k0, a20);
                            a21 = _mm256_fmadd_ps(qd, k1, a21);
                            qd = _mm256_broadcast_ss(q3 + d);
                            a30 = _mm256_fmadd_ps(qd, k0, a30);
                            a31 = _mm256_fmadd_ps(qd, k1, a31);
                        }
                        _mm256_storeu_ps(s0 + j, a00);
                        _mm256_storeu_ps(s0 + j + 8, a01);
                        _mm256_storeu_ps(s0 + KB + j, a10);
                        _mm256_storeu_ps(s0 + KB + j + 8, a11);
                        _mm256_storeu_ps(s0 + 2 * KB + j, a20);
                        _mm256_storeu_ps(s0 + 2 * KB + j + 8, a21);
                        _mm256_storeu_ps(s0 + 3 * KB + j, a30);
                        _mm256_storeu_ps(s0 + 3 * KB + j + 8, a31);
                    }
                }
            for (int r = 0; r < nq; r++) {
                if (!((heads >> (r % job->n_head)) & 1u)) continue; /* this head did not choose the span */
                const float *qr = q + (size_t)r * Dk;
                float *sr = sc + (size_t)r * KB;
                if (r >= r4) { /* 32 keys (4 vectors) at a time, one fma chain per key */
                    if (direct) {
                        score_row(true, qr, kh, (size_t)sp->ldk, nk, Dk, sr, pf_pending ? &nb : NULL);
                        pf_pending = false;
                    } else {
                        score_row(false, qr, kb, KB, nk, Dk, sr, NULL);
                    }
                }
                /* scale and mask: 8 at a time when the causal mask hides none of the block's keys
                 * (every key of a prefix, a vision tower's keys), else key by key */
                const int32_t qp = QPOS(r);
                float bm = -INFINITY;
                int j1 = 0;
                if (job->mask.kind == LV_MASK_CAUSAL && kpos_max <= qp) {
                    const __m256 vs = _mm256_set1_ps(job->scale);
                    __m256 vm = _mm256_set1_ps(-INFINITY);
                    for (; j1 + 8 <= nk; j1 += 8) {
                        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(sr + j1), vs);
                        _mm256_storeu_ps(sr + j1, v);
                        vm = _mm256_max_ps(vm, v);
                    }
                    float t[8];
                    _mm256_storeu_ps(t, vm);
                    for (int i = 0; i < 8; i++) bm = t[i] > bm ? t[i] : bm;
                }
                for (int j = j1; j < nk; j++) {
                    const bool vis = job->mask.kind == LV_MASK_CAUSAL ? kp[j] <= qp : lv_attn_visible(&job->mask, kp[j], qp);
                    sr[j] = vis ? sr[j] * job->scale : -INFINITY;
                    bm = sr[j] > bm ? sr[j] : bm;
                }
                if (bm == -INFINITY) continue;
                const float nm = bm > m[r] ? bm : m[r];
                const float corr = m[r] == -INFINITY ? 0.0f : expf(m[r] - nm);
                const __m256 vnm = _mm256_set1_ps(nm), vninf = _mm256_set1_ps(-INFINITY);
                for (int j = nk; j < ((nk + 7) & ~7); j++) sr[j] = -INFINITY;
                __m256 vsum = _mm256_setzero_ps();
                for (int j = 0; j < nk; j += 8) {
                    const __m256 sv = _mm256_loadu_ps(sr + j);
                    const __m256 live = _mm256_cmp_ps(sv, vninf, _CMP_NEQ_OQ);
                    const __m256 p = _mm256_and_ps(live, exp256(_mm256_sub_ps(sv, vnm)));
                    _mm256_storeu_ps(sr + j, p);
                    vsum = _mm256_add_ps(vsum, p);
                }
                float *o = OROW(r);
                const int nv = Dv / 8;
                const __m256 vc = _mm256_set1_ps(corr);
                int c0 = 0; /* the output row in registers, 64 values at a time (pv_64) */
                for (; c0 + 8 <= nv; c0 += 8) {
                    if (direct) pv_64(true, o + 8 * c0, vc, sr, nk, vh, Dv, c0);
                    else pv_64(false, o + 8 * c0, vc, sr, nk, vb, Dv, c0);
                }
                if (c0 < nv) { /* a head size that is not a multiple of 64: the rest, vector by vector */
                    __m256 acc[8];
                    const int nr = nv - c0;
                    for (int c = 0; c < nr; c++) acc[c] = _mm256_mul_ps(_mm256_loadu_ps(o + 8 * (c0 + c)), vc);
                    for (int j = 0; j < nk; j++) {
                        const float pj = sr[j];
                        if (pj == 0.0f) continue;
                        const __m256 pv = _mm256_set1_ps(pj);
                        const float *vr = vb + (size_t)j * Dv + 8 * c0;
                        for (int c = 0; c < nr; c++) acc[c] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(vr + 8 * c), acc[c]);
                    }
                    for (int c = 0; c < nr; c++) _mm256_storeu_ps(o + 8 * (c0 + c), acc[c]);
                }
                const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(vsum), _mm256_extractf128_ps(vsum, 1));
                const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
                l[r] = l[r] * corr + _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
                m[r] = nm;
            }
        }
    }
    if (job->m_out && job->l_out) {
        for (int r = 0; r < nq; r++) {
            job->m_out[r] = m[r];
            job->l_out[r] = l[r];
        }
        return;
    }
    for (int r = 0; r < nq; r++) {
        if (l[r] == 0.0f) continue;
        const __m256 inv = _mm256_set1_ps(1.0f / l[r]);
        float *o = OROW(r);
        for (int d = 0; d < Dv; d += 8) _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_loadu_ps(o + d), inv));
    }
#undef QROW
#undef OROW
#undef QPOS
}

/* LServe's page score (kernels.h); T and LOAD: the statistics' element type and how 8 of them
 * are widened to f32, so the f16 and f32 kernels are the same instructions around the load */
#define QUEST_PAGE_AVX2(NAME, T, LOAD, REF)                                                                                    \
    void NAME(const float *q, int64_t q_stride, int n_q, const T *stats, int n_lp, int Dk, float *best) {                    \
        if (Dk % 8 != 0) {                                                                                                     \
            REF(q, q_stride, n_q, stats, n_lp, Dk, best);                                                                      \
            return;                                                                                                            \
        }                                                                                                                      \
        for (int h = 0; h < n_q; h++) best[h] = -INFINITY;                                                                     \
        /* several query heads: a logical page's statistics widened once into w for all of them (the same \
         * f32 values, so the same sums as widening per head) */                                               \
        float w[2 * 256];                                                                                                      \
        const bool once = n_q > 1 && Dk <= 256;                                                                                \
        for (int lp = 0; lp < n_lp; lp++) {                                                                                    \
            const T *mn = stats + (size_t)lp * 2 * (size_t)Dk, *mx = mn + Dk;                                                  \
            if (once)                                                                                                          \
                for (int d = 0; d < Dk; d += 8) {                                                                              \
                    _mm256_storeu_ps(w + d, LOAD(mn + d));                                                                     \
                    _mm256_storeu_ps(w + Dk + d, LOAD(mx + d));                                                                \
                }                                                                                                              \
            for (int h = 0; h < n_q; h++) {                                                                                    \
                const float *qh = q + h * q_stride;                                                                            \
                __m256 acc = _mm256_setzero_ps();                                                                              \
                if (once)                                                                                                      \
                    for (int d = 0; d < Dk; d += 8) {                                                                          \
                        const __m256 qv = _mm256_loadu_ps(qh + d);                                                             \
                        acc = _mm256_add_ps(acc, _mm256_max_ps(_mm256_mul_ps(qv, _mm256_loadu_ps(w + Dk + d)),                 \
                                                               _mm256_mul_ps(qv, _mm256_loadu_ps(w + d))));                    \
                    }                                                                                                          \
                else                                                                                                           \
                    for (int d = 0; d < Dk; d += 8) {                                                                          \
                        const __m256 qv = _mm256_loadu_ps(qh + d);                                                             \
                        acc = _mm256_add_ps(acc, _mm256_max_ps(_mm256_mul_ps(qv, LOAD(mx + d)), _mm256_mul_ps(qv, LOAD(mn + d)))); \
                    }                                                                                                          \
                const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));                     \
                const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));                                                       \
                const float sum = _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));                                    \
                best[h] = sum > best[h] ? sum : best[h];                                                                       \
            }                                                                                                                  \
        }                                                                                                                      \
    }

#define LOAD_F32(p) _mm256_loadu_ps(p)
#define LOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
QUEST_PAGE_AVX2(lv_quest_page_avx2, float, LOAD_F32, lv_quest_page_ref)
QUEST_PAGE_AVX2(lv_quest_page_f16_avx2, uint16_t, LOAD_F16, lv_quest_page_f16_ref)
#undef LOAD_F32
#undef LOAD_F16
#undef QUEST_PAGE_AVX2

/* quantized KV pages (attn_q_impl.h) at this level, with exp256 above */
#define ATTNQ_FN lv_attn_q_avx2
#include "kernels/attn_q_impl.h"
