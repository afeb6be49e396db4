/*
 * attn_avx512.c: the tiled attention kernel with AVX-512 intrinsics (head dims multiples of 16),
 * and the portable one (attn_impl.h) compiled for AVX-512 for other head dims.
 *
 * Same algorithm as attn_impl.h (one pass, online softmax, blocks of 64 keys widened to f32 once
 * per job and block), written so nothing is left to the compiler's auto-vectorizer:
 *  - scores: for each query row, keys 4 at a time: 4 x (Dk/16) FMAs into 4 accumulators, then
 *    one shuffle tree reduces the 4 accumulators to 4 sums (about 2 extra operations per key
 *    instead of a full 16-lane reduction per key);
 *  - softmax: 16 scores at a time with a vector exp (range reduction, degree-6 polynomial,
 *    vscalefps), causal mask by comparing 16 stored positions with the query's;
 *  - values: the output row lives in Dv/16 registers across the block.
 * Its reference is lv_attn_ref; tests/test_kernels.c compares the two at every level.
 */
#include "kernels.h"
void lv_attn_tiled_avx512_generic(const lv_attn_job *job, float *scratch);
#define ATTN_FN lv_attn_tiled_avx512_generic
#include "attn_impl.h"

#include <immintrin.h>

#include "exp512.h"

#define KB 64
#define MAX_DV_REGS 16 /* Dv up to 256 */


/* the sums of the 16 lanes of a, b, c, d as one 4-vector */
static inline __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
    const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b)); /* per 128: a0+a2 a1+a3? (pairs) */
    const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    const __m512 abcd = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    /* each 128-bit lane now holds partial sums of a, b, c, d; add the four lanes */
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(abcd), _mm512_extractf32x8_ps(abcd, 1));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

static inline void widen_block(lv_kv_type t, const void *src, int64_t first_row, int rows, int D, float *dst) {
    const int64_t n = (int64_t)rows * D;
    if (t == LV_KV_F32) {
        memcpy(dst, (const float *)src + first_row * D, (size_t)n * sizeof(float));
    } else {
        const uint16_t *h = (const uint16_t *)src + first_row * D;
        for (int64_t i = 0; i < n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
    }
}

void lv_attn_tiled_avx512(const lv_attn_job *job, float *scratch) {
    const int Dk = job->Dk, Dv = job->Dv;
    if (Dk % 16 != 0 || Dv % 16 != 0 || Dv > 16 * MAX_DV_REGS) {
        lv_attn_tiled_avx512_generic(job, scratch);
        return;
    }
    const int nq = job->n_tok * job->n_head;
    /* scratch: q (nq, Dk) | K block (KB, Dk) | V block (KB, Dv) | scores (nq, KB) | m, l (nq) */
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
            for (int d = 0; d < Dk; d += 16)
                _mm512_storeu_ps(dq + d, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(src + d), _MM_FROUND_TO_NEAREST_INT)));
        else
            memcpy(dq, src, (size_t)Dk * sizeof(float));
        m[r] = -INFINITY;
        l[r] = 0.0f;
        memset(OROW(r), 0, (size_t)Dv * sizeof(float));
    }
    int32_t max_qpos = job->pos[0];
    for (int t = 1; t < job->n_tok; t++) max_qpos = job->pos[t] > max_qpos ? job->pos[t] : max_qpos;
    const __m512 vscale = _mm512_set1_ps(job->scale), vninf = _mm512_set1_ps(-INFINITY);

    for (int s = 0; s < job->n_spans; s++) {
        const lv_attn_span *sp = &job->spans[s];
        for (int32_t j0 = 0; j0 < sp->n; j0 += KB) {
            const int nk = sp->n - j0 < KB ? sp->n - j0 : KB;
            if (sp->pos[j0] > max_qpos) break;
            const int nk4 = (nk + 3) & ~3, nk16 = (nk + 15) & ~15;
            widen_block(job->kv_type, sp->k, j0, nk, Dk, kb);
            widen_block(job->kv_type, sp->v, j0, nk, Dv, vb);
            /* pad keys to a multiple of 4 and 16 with zero rows (their scores are masked) */
            if (nk4 > nk) memset(kb + (size_t)nk * Dk, 0, (size_t)(nk4 - nk) * Dk * sizeof(float));
            const uint32_t heads = job->span_heads ? job->span_heads[s] : UINT32_MAX;
            for (int r = 0; r < nq; r++) {
                if (!((heads >> (r % job->n_head)) & 1u)) continue; /* this head did not choose the span */
                const float *qr = q + (size_t)r * Dk;
                float *sr = sc + (size_t)r * KB;
                for (int j = 0; j < nk4; j += 4) {
                    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                    const float *k0 = kb + (size_t)j * Dk;
                    for (int d = 0; d < Dk; d += 16) {
                        const __m512 qv = _mm512_loadu_ps(qr + d);
                        a0 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k0 + d), a0);
                        a1 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k0 + Dk + d), a1);
                        a2 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k0 + 2 * Dk + d), a2);
                        a3 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k0 + 3 * Dk + d), a3);
                    }
                    _mm_storeu_ps(sr + j, hsum4(a0, a1, a2, a3));
                }
                /* scale and mask, 16 keys at a time */
                const int32_t qp = QPOS(r);
                for (int j = 0; j < nk16; j += 16) {
                    __mmask16 valid = j + 16 <= nk ? (__mmask16)0xffff : (__mmask16)((1u << (nk - j)) - 1);
                    __mmask16 vis;
                    if (job->mask.kind == LV_MASK_CAUSAL) {
                        const __m512i kp = _mm512_maskz_loadu_epi32(valid, sp->pos + j0 + j);
                        vis = _mm512_mask_cmple_epi32_mask(valid, kp, _mm512_set1_epi32(qp));
                    } else {
                        vis = 0;
                        for (int t = 0; t < 16 && j + t < nk; t++)
                            if (lv_attn_visible(&job->mask, sp->pos[j0 + j + t], qp)) vis |= (__mmask16)(1u << t);
                    }
                    const __m512 sv = _mm512_loadu_ps(sr + j);
                    _mm512_storeu_ps(sr + j, _mm512_mask_mul_ps(vninf, vis, sv, vscale));
                }
                /* online softmax update */
                __m512 vmax = vninf;
                for (int j = 0; j < nk16; j += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(sr + j));
                const float bm = _mm512_reduce_max_ps(vmax);
                if (bm == -INFINITY) continue;
                const float nm = bm > m[r] ? bm : m[r];
                const float corr = m[r] == -INFINITY ? 0.0f : expf(m[r] - nm);
                const __m512 vnm = _mm512_set1_ps(nm);
                __m512 vsum = _mm512_setzero_ps();
                for (int j = 0; j < nk16; j += 16) {
                    const __m512 sv = _mm512_loadu_ps(sr + j);
                    const __mmask16 live = _mm512_cmp_ps_mask(sv, vninf, _CMP_NEQ_OQ);
                    const __m512 p = _mm512_maskz_mov_ps(live, lv_exp512(_mm512_sub_ps(sv, vnm)));
                    _mm512_storeu_ps(sr + j, p);
                    vsum = _mm512_add_ps(vsum, p);
                }
                float *o = OROW(r);
                __m512 acc[MAX_DV_REGS];
                const int nv = Dv / 16;
                const __m512 vc = _mm512_set1_ps(corr);
                for (int c = 0; c < nv; c++) acc[c] = _mm512_mul_ps(_mm512_loadu_ps(o + 16 * c), vc);
                for (int j = 0; j < nk; j++) {
                    const float pj = sr[j];
                    if (pj == 0.0f) continue;
                    const __m512 pv = _mm512_set1_ps(pj);
                    const float *vr = vb + (size_t)j * Dv;
                    for (int c = 0; c < nv; c++) acc[c] = _mm512_fmadd_ps(pv, _mm512_loadu_ps(vr + 16 * c), acc[c]);
                }
                for (int c = 0; c < nv; c++) _mm512_storeu_ps(o + 16 * c, acc[c]);
                l[r] = l[r] * corr + _mm512_reduce_add_ps(vsum);
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
        const __m512 inv = _mm512_set1_ps(1.0f / l[r]);
        float *o = OROW(r);
        for (int d = 0; d < Dv; d += 16) _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_loadu_ps(o + d), inv));
    }
#undef QROW
#undef OROW
#undef QPOS
}

/* LServe's page score (kernels.h); T and LOAD: the statistics' element type and how 16 of them
 * are widened to f32, so the f16 and f32 kernels are the same instructions around the load */
#define QUEST_PAGE_AVX512(NAME, T, LOAD, REF)                                                                                  \
    void NAME(const float *q, int64_t q_stride, int n_q, const T *stats, int n_lp, int Dk, float *best) {                    \
        if (Dk % 16 != 0) {                                                                                                    \
            REF(q, q_stride, n_q, stats, n_lp, Dk, best);                                                                      \
            return;                                                                                                            \
        }                                                                                                                      \
        for (int h = 0; h < n_q; h++) best[h] = -INFINITY;                                                                     \
        for (int lp = 0; lp < n_lp; lp++) {                                                                                    \
            const T *mn = stats + (size_t)lp * 2 * (size_t)Dk, *mx = mn + Dk;                                                  \
            for (int h = 0; h < n_q; h++) {                                                                                    \
                const float *qh = q + h * q_stride;                                                                            \
                __m512 acc = _mm512_setzero_ps();                                                                              \
                for (int d = 0; d < Dk; d += 16) {                                                                             \
                    const __m512 qv = _mm512_loadu_ps(qh + d);                                                                 \
                    acc = _mm512_add_ps(acc, _mm512_max_ps(_mm512_mul_ps(qv, LOAD(mx + d)), _mm512_mul_ps(qv, LOAD(mn + d)))); \
                }                                                                                                              \
                const float sum = _mm512_reduce_add_ps(acc);                                                                   \
                best[h] = sum > best[h] ? sum : best[h];                                                                       \
            }                                                                                                                  \
        }                                                                                                                      \
    }

#define LOAD_F32(p) _mm512_loadu_ps(p)
#define LOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
QUEST_PAGE_AVX512(lv_quest_page_avx512, float, LOAD_F32, lv_quest_page_ref)
QUEST_PAGE_AVX512(lv_quest_page_f16_avx512, uint16_t, LOAD_F16, lv_quest_page_f16_ref)
#undef LOAD_F32
#undef LOAD_F16
#undef QUEST_PAGE_AVX512
