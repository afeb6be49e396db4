/*
 * attn_q_impl.h: attention over quantized KV pages (LV_KV_Q8_0 or LV_KV_Q4_0 keys or values, or
 * keys and values of different types), written once and compiled per SIMD level (attn_scalar.c, attn_avx2.c,
 * attn_avx512.c include it with ATTNQ_FN defined; the AVX2 / AVX-512 inner loops are chosen by the
 * compiler's target macros). Its reference is lv_attn_ref; tests/kernels/test_kernels.c compares
 * every level with it on fresh random inputs.
 *
 * The same algorithm as attn_impl.h (one pass over blocks of 64 keys, online softmax), reading the
 * pages as stored: no page is dequantized into memory (only the value block in use, in scratch).
 *  - Quantized keys: the query row is quantized to q8_0 once per job (round half to even, as
 *    llama.cpp's x86 build quantizes it for ggml_vec_dot_q8_0_q8_0), and a score is, per block of
 *    32 dimensions, an exact integer dot product of the two blocks' quants scaled by the product
 *    of their scales: s = sum_b (d_q,b d_k,b) isum_b (q4_0 keys: their nibbles minus 8, widened to
 *    bytes in registers, as ggml_vec_dot_q4_0_q8_0 does). AVX2 computes 8 keys at a time
 *    (vpsignb + vpmaddubsw + vpmaddwd per key and block, a vphaddd tree puts the 8 keys' sums in
 *    one vector, 8 scales are one f16 load) for up to 4 query rows at once: each key block is
 *    loaded (q4_0: widened) once for the rows of a group (a decode step's query heads of one KV
 *    head, GQA); a group past the block's last key is copied into a zero-padded buffer first, so
 *    every key's score is the same instructions wherever it lands.
 *  - Values: a block's 64 values are dequantized once for all the rows of the job (x = d q, one
 *    float product per element, as ggml's dequantization that llama.cpp's flash attention adds
 *    with the weight) into a float scratch of the block (16 KiB at Dv = 64, in L1), and each row
 *    adds p_j x_j with its output row in registers, as attn_avx2.c does with an f16 block.
 *  - Float keys or values beside a quantized other half (-ctk f16 -ctv q8_0, ...): portable
 *    loops the compiler vectorizes (keys transposed as stored, one chain over d per key).
 * Every row is computed with the same operations whatever job or tile it is in, so prefill
 * equals token-by-token decode bit for bit (tests/runtime/test_plan.c).
 */
#include "gguf/quant.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

#if defined(__AVX2__)
#include "kernels/attn_pv_avx2.h"
#include <immintrin.h>
#endif

#ifndef ATTNQ_FN
#error "define ATTNQ_FN before including attn_q_impl.h"
#endif

#define AQ_KB 64 /* keys per block */
#define AQ_KG 8  /* keys per score group */
#define AQ_R 4   /* query rows scored together per key load */

#if defined(__AVX2__)
/* the 32 quants of block b of a row as signed bytes: q8_0's as they are, q4_0's nibbles minus 8
 * (low nibbles are elements 0-15, high nibbles 16-31, as ggml's bytes_from_nibbles_32) */
static inline __m256i aq_block_avx2(lv_kv_type t, const int8_t *row, int b) {
    if (t == LV_KV_Q4_0) {
        const __m128i x = _mm_loadu_si128((const __m128i *)(row + 16 * b));
        const __m256i n = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), _mm256_set1_epi8(15));
        return _mm256_sub_epi8(n, _mm256_set1_epi8(8));
    }
    return _mm256_loadu_si256((const __m256i *)(row + 32 * b));
}
#endif

/* element i of block b of a quantized row, as a signed integer */
static inline int aq_q(lv_kv_type t, const int8_t *row, int b, int i) {
    if (t == LV_KV_Q4_0) {
        const uint8_t x = (uint8_t)row[16 * b + (i & 15)];
        return (i < 16 ? x & 15 : x >> 4) - 8;
    }
    return row[32 * b + i];
}

/* The scores of 8 keys (quantized, type kt; key t's quants at kq + t * rowq, its block-b scale at
 * ks[b * ld + t]) against NR q8_0 query rows at once (row i: qq[i], Dk quants, and dq[i], its nb
 * block scales; its 8 scores to out[i]). Each key block is loaded (and, for q4_0, widened) once
 * for the NR rows; every row's arithmetic is the same as alone (the integer sums are exact, and a
 * row's float chain over the blocks is the same operations in the same order), so a row's scores
 * do not depend on NR or on which rows it is grouped with. NR is a constant at every call
 * (always inlined), so the rows' accumulators live in registers. */
static inline __attribute__((always_inline)) void aq_dot8_rows(lv_kv_type kt, const int8_t *kq, int64_t rowq, const uint16_t *ks, int64_t ld,
                                                               const int NR, const int8_t *const *qq, const float *const *dq, int nb,
                                                               float *const *out) {
#if defined(__AVX2__)
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[AQ_R];
    for (int i = 0; i < NR; i++) acc[i] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        __m256i kv[AQ_KG];
        for (int t = 0; t < AQ_KG; t++) kv[t] = aq_block_avx2(kt, kq + t * rowq, b);
        const __m256 dk = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ks + b * ld)));
        for (int i = 0; i < NR; i++) {
            const __m256i qv = _mm256_loadu_si256((const __m256i *)(qq[i] + 32 * b));
            const __m256i aq = _mm256_sign_epi8(qv, qv);
            __m256i sm[AQ_KG];
            for (int t = 0; t < AQ_KG; t++) sm[t] = _mm256_madd_epi16(_mm256_maddubs_epi16(aq, _mm256_sign_epi8(kv[t], qv)), ones);
            /* the 8 keys' sums in key order: pairwise adds, then the two 128-bit halves */
            const __m256i t01 = _mm256_hadd_epi32(sm[0], sm[1]), t23 = _mm256_hadd_epi32(sm[2], sm[3]);
            const __m256i t45 = _mm256_hadd_epi32(sm[4], sm[5]), t67 = _mm256_hadd_epi32(sm[6], sm[7]);
            const __m256i u0 = _mm256_hadd_epi32(t01, t23), u1 = _mm256_hadd_epi32(t45, t67);
            const __m256i isum = _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
            acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(dk, _mm256_set1_ps(dq[i][b])), _mm256_cvtepi32_ps(isum), acc[i]);
        }
    }
    for (int i = 0; i < NR; i++) _mm256_storeu_ps(out[i], acc[i]);
#else
    float s[AQ_R][AQ_KG] = {{0}};
    for (int b = 0; b < nb; b++)
        for (int t = 0; t < AQ_KG; t++) {
            int kb[32];
            for (int e = 0; e < 32; e++) kb[e] = aq_q(kt, kq + t * rowq, b, e);
            const float dk = lv_fp16_to_fp32(ks[b * ld + t]);
            for (int i = 0; i < NR; i++) {
                const int8_t *x = qq[i] + 32 * b;
                int isum = 0;
                for (int e = 0; e < 32; e++) isum += (int)x[e] * kb[e];
                s[i][t] += dk * dq[i][b] * (float)isum;
            }
        }
    for (int i = 0; i < NR; i++) memcpy(out[i], s[i], sizeof(s[i]));
#endif
}

/* raw scores (before scale and mask) of keys j0 .. j0 + nk - 1 of a span against one query row,
 * float keys (beside quantized values): a portable loop, keys transposed as stored */
static inline void aq_scores_float(lv_kv_type kt, const lv_attn_span *sp, int j0, int nk, const float *qf, int Dk, float *sr) {
    for (int j = 0; j < nk; j++) sr[j] = 0.0f;
    for (int d = 0; d < Dk; d++) {
        const float qd = qf[d];
        if (kt == LV_KV_F32) {
            const float *kr = (const float *)sp->k + (size_t)d * (size_t)sp->ldk + j0;
            for (int j = 0; j < nk; j++) sr[j] += qd * kr[j];
        } else {
            const uint16_t *kr = (const uint16_t *)sp->k + (size_t)d * (size_t)sp->ldk + j0;
            for (int j = 0; j < nk; j++) sr[j] += qd * lv_fp16_to_fp32(kr[j]);
        }
    }
}

/* raw scores of keys j0 .. j0 + nk - 1 of a span (quantized keys) against NR query rows
 * (qq[i], dq[i] -> sr[i]), 8 keys at a time */
static inline __attribute__((always_inline)) void aq_scores_rows(lv_kv_type kt, const lv_attn_span *sp, int j0, int nk, const int NR,
                                                                 const int8_t *const *qq, const float *const *dq, int Dk, float *const *sr) {
    const int nb = Dk / LV_KV_QBLOCK;
    const int64_t rowq = lv_kv_qrow_bytes(kt, Dk);
    const int8_t *kq = (const int8_t *)sp->k;
    float *o[AQ_R];
    int j = 0;
    for (; j + AQ_KG <= nk; j += AQ_KG) {
        for (int i = 0; i < NR; i++) o[i] = sr[i] + j;
        /* the key type a constant inside each loop */
        if (kt == LV_KV_Q4_0)
            aq_dot8_rows(LV_KV_Q4_0, kq + (j0 + j) * rowq, rowq, sp->ks + j0 + j, sp->ldk, NR, qq, dq, nb, o);
        else
            aq_dot8_rows(LV_KV_Q8_0, kq + (j0 + j) * rowq, rowq, sp->ks + j0 + j, sp->ldk, NR, qq, dq, nb, o);
    }
    if (j < nk) { /* the last keys, zero-padded to a group: the same instructions as a whole group */
        int8_t kbuf[AQ_KG * 1024];
        uint16_t sbuf[AQ_KG * (1024 / LV_KV_QBLOCK)];
        float tmp[AQ_R][AQ_KG];
        const int left = nk - j;
        memset(kbuf, 0, (size_t)(AQ_KG * rowq));
        memset(sbuf, 0, sizeof(uint16_t) * (size_t)(AQ_KG * nb));
        memcpy(kbuf, kq + (j0 + j) * rowq, (size_t)(left * rowq));
        for (int b = 0; b < nb; b++) memcpy(sbuf + b * AQ_KG, sp->ks + (size_t)b * (size_t)sp->ldk + j0 + j, (size_t)left * sizeof(uint16_t));
        for (int i = 0; i < NR; i++) o[i] = tmp[i];
        aq_dot8_rows(kt, kbuf, rowq, sbuf, AQ_KG, NR, qq, dq, nb, o);
        for (int i = 0; i < NR; i++) memcpy(sr[i] + j, tmp[i], (size_t)left * sizeof(float));
    }
}

/* vb (nk x Dv floats) = the block's values as floats: quantized ones dequantized as ggml does
 * (x = d * q, one float product per element: what llama.cpp's flash attention adds with the
 * weight), float ones widened. Done once per block for all the job's rows, in L1. */
static inline void aq_widen_v(lv_kv_type vt, const lv_attn_span *sp, int j0, int nk, int Dv, float *vb) {
    if (!lv_kv_quantized(vt)) {
        for (int j = 0; j < nk; j++)
            for (int d = 0; d < Dv; d++) vb[(size_t)j * Dv + d] = lv_attn_val_at(vt, sp, j0 + j, d, Dv);
        return;
    }
    const int64_t rowq = lv_kv_qrow_bytes(vt, Dv);
    const int nb = Dv / LV_KV_QBLOCK;
    for (int j = 0; j < nk; j++) {
        const int8_t *row = (const int8_t *)sp->v + (j0 + j) * rowq;
        float *dst = vb + (size_t)j * Dv;
        for (int b = 0; b < nb; b++) {
            const float d = lv_fp16_to_fp32(sp->vs[(size_t)b * (size_t)sp->ldk + (size_t)(j0 + j)]);
#if defined(__AVX2__)
            const __m256i blk = aq_block_avx2(vt, row, b);
            const __m128i lo = _mm256_castsi256_si128(blk), hi = _mm256_extracti128_si256(blk, 1);
            const __m128i part[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
            const __m256 vd = _mm256_set1_ps(d);
            for (int g = 0; g < 4; g++) _mm256_storeu_ps(dst + 32 * b + 8 * g, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part[g])), vd));
#else
            for (int i = 0; i < 32; i++) dst[32 * b + i] = (float)aq_q(vt, row, b, i) * d;
#endif
        }
    }
}

/* o = o * corr + sum_j p[j] vb_j over the block's widened values (one query row) */
static inline void aq_pv(const float *vb, int nk, const float *p, int Dv, float corr, float *o) {
    int c0 = 0;
#if defined(__AVX2__)
    /* 64 outputs at a time in named registers (attn_pv_avx2.h) */
    const __m256 vc = _mm256_set1_ps(corr);
    for (; c0 + 64 <= Dv; c0 += 64) pv_64(false, o + c0, vc, p, nk, vb, Dv, c0 / 8);
    for (; c0 + 8 <= Dv; c0 += 8) {
        __m256 a = _mm256_mul_ps(_mm256_loadu_ps(o + c0), vc);
        for (int j = 0; j < nk; j++) {
            const float pj = p[j];
            if (pj == 0.0f) continue;
            a = _mm256_fmadd_ps(_mm256_set1_ps(pj), _mm256_loadu_ps(vb + (size_t)j * Dv + c0), a);
        }
        _mm256_storeu_ps(o + c0, a);
    }
#endif
    if (c0 < Dv) { /* the scalar level, or a head size that is not a multiple of 8 */
        for (int d = c0; d < Dv; d++) o[d] *= corr;
        for (int j = 0; j < nk; j++) {
            const float pj = p[j];
            if (pj == 0.0f) continue;
            const float *vr = vb + (size_t)j * Dv;
            for (int d = c0; d < Dv; d++) o[d] += pj * vr[d];
        }
    }
}

/* sr[j] = exp(sr[j] - nm) (0 for -inf) for j < nk; returns their sum */
static inline float aq_exp_row(float *sr, int nk, float nm) {
#if defined(__AVX512F__)
    for (int j = nk; j < ((nk + 15) & ~15); j++) sr[j] = -INFINITY;
    const __m512 vnm = _mm512_set1_ps(nm), vninf = _mm512_set1_ps(-INFINITY);
    __m512 vsum = _mm512_setzero_ps();
    for (int j = 0; j < nk; j += 16) {
        const __m512 sv = _mm512_loadu_ps(sr + j);
        const __mmask16 on = _mm512_cmp_ps_mask(sv, vninf, _CMP_NEQ_OQ);
        const __m512 e = _mm512_maskz_mov_ps(on, lv_exp512(_mm512_sub_ps(sv, vnm)));
        _mm512_storeu_ps(sr + j, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    return _mm512_reduce_add_ps(vsum);
#elif defined(__AVX2__)
    for (int j = nk; j < ((nk + 7) & ~7); j++) sr[j] = -INFINITY;
    const __m256 vnm = _mm256_set1_ps(nm), vninf = _mm256_set1_ps(-INFINITY);
    __m256 vsum = _mm256_setzero_ps();
    for (int j = 0; j < nk; j += 8) {
        const __m256 sv = _mm256_loadu_ps(sr + j);
        const __m256 live = _mm256_cmp_ps(sv, vninf, _CMP_NEQ_OQ);
        const __m256 e = _mm256_and_ps(live, exp256(_mm256_sub_ps(sv, vnm)));
        _mm256_storeu_ps(sr + j, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(vsum), _mm256_extractf128_ps(vsum, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
#else
    float sum = 0.0f;
    for (int j = 0; j < nk; j++) {
        sr[j] = sr[j] == -INFINITY ? 0.0f : expf(sr[j] - nm);
        sum += sr[j];
    }
    return sum;
#endif
}

/* scores of the NR rows rows[0..NR) for a block: q8_0 quants and scales of each row from the
 * query scratch, scores into the rows' score scratch */
static inline __attribute__((always_inline)) void aq_score_group(lv_kv_type kt, const lv_attn_span *sp, int j0, int nk, const int NR, const int *rows,
                                                                 const int8_t *qq, const float *dq, float *sc, int Dk) {
    const int nb = Dk / LV_KV_QBLOCK;
    const int8_t *qi[AQ_R];
    const float *di[AQ_R];
    float *si[AQ_R];
    for (int i = 0; i < NR; i++) {
        qi[i] = qq + (size_t)rows[i] * (size_t)Dk;
        di[i] = dq + (size_t)rows[i] * (size_t)nb;
        si[i] = sc + (size_t)rows[i] * (AQ_KB + 16);
    }
    aq_scores_rows(kt, sp, j0, nk, NR, qi, di, Dk, si);
}

/* A decode step reads its pages from DRAM, and the hardware prefetcher restarts at every page:
 * the block AQ_AHEAD blocks after block j0 of span s is prefetched, its keys (quants, scales and
 * positions) before the current block's scores and its values before the current block's value
 * pass (attn_pf.h does the same for float pages; bench/NOTES.md 2026-12-07). keys: which half. */
#define AQ_AHEAD 2
static inline void aq_prefetch_bytes(const void *p, size_t n) {
    const char *l = (const char *)((uintptr_t)p & ~(uintptr_t)63), *e = (const char *)p + n;
    for (; l < e; l += 64) __asm__ volatile("prefetcht0 %0" : : "m"(*l)); /* gcc dropped __builtin_prefetch here */
}
static inline void aq_prefetch_ahead(const lv_attn_job *job, int s, int32_t j0, bool keys) {
    const lv_attn_span *sp = &job->spans[s];
    for (int i = 0; i < AQ_AHEAD; i++) {
        j0 += AQ_KB;
        if (j0 >= sp->n) {
            if (s + 1 >= job->n_spans) return;
            s++;
            sp++;
            j0 = 0;
        }
    }
    const int nk = sp->n - j0 < AQ_KB ? sp->n - j0 : AQ_KB;
    const lv_kv_type t = keys ? job->kv_type : job->kv_type_v;
    const int D = keys ? job->Dk : job->Dv;
    const void *base = keys ? sp->k : sp->v;
    if (lv_kv_quantized(t)) {
        const int64_t rowq = lv_kv_qrow_bytes(t, D);
        const uint16_t *sc = keys ? sp->ks : sp->vs;
        aq_prefetch_bytes((const int8_t *)base + (int64_t)j0 * rowq, (size_t)(nk * rowq));
        for (int b = 0; b < D / 32; b++) aq_prefetch_bytes(sc + (size_t)b * (size_t)sp->ldk + j0, (size_t)nk * sizeof(uint16_t));
    } else if (keys) { /* float keys, transposed: a row of nk per dimension */
        const size_t es = lv_kv_elt_size(t);
        for (int d = 0; d < D; d++) aq_prefetch_bytes((const char *)base + ((size_t)d * (size_t)sp->ldk + (size_t)j0) * es, (size_t)nk * es);
    } else {
        const size_t es = lv_kv_elt_size(t);
        aq_prefetch_bytes((const char *)base + (size_t)j0 * (size_t)D * es, (size_t)nk * (size_t)D * es);
    }
    if (keys) {
        size_t pb;
        const void *pp = lv_span_pos_ptr(sp, j0, &pb);
        if (pp) aq_prefetch_bytes(pp, (size_t)nk * pb);
    }
}

void ATTNQ_FN(const lv_attn_job *job, float *scratch) {
    const int nq = job->n_tok * job->n_head, Dk = job->Dk, Dv = job->Dv;
    const lv_kv_type kt = job->kv_type, vt = job->kv_type_v;
    LV_ASSERT(Dk <= 1024 && Dv <= 1024);
    LV_ASSERT((!lv_kv_quantized(kt) || Dk % LV_KV_QBLOCK == 0) && (!lv_kv_quantized(vt) || Dv % LV_KV_QBLOCK == 0));
#define QROW(r) (job->q + (size_t)((r) / job->n_head) * job->q_tok_stride + (size_t)((r) % job->n_head) * job->q_head_stride)
#define OROW(r) (job->out + (size_t)((r) / job->n_head) * job->out_tok_stride + (size_t)((r) % job->n_head) * job->out_head_stride)
#define QPOS(r) (job->pos[(r) / job->n_head])
    /* scratch (within lv_attn_scratch_floats): the query rows as the keys take them (nq x Dk floats,
     * or nq x Dk int8 quants and nq x Dk / 32 scales in the same room) | scores (nq, KB + 16) | m, l (nq)
     * | the block's values as floats (KB x Dv) */
    const int nb = Dk / LV_KV_QBLOCK;
    float *qf = scratch;
    int8_t *qq = (int8_t *)scratch;
    float *dq = scratch + (size_t)nq * (size_t)Dk / 2;
    float *sc = scratch + (size_t)nq * (size_t)Dk;
    float *m = sc + (size_t)nq * (AQ_KB + 16);
    float *l = m + nq;
    float *vb = l + nq;
    for (int r = 0; r < nq; r++) {
        if (lv_kv_quantized(kt)) {
            lv_block_q8_0 blk[1024 / LV_QK8_0];
            lv_quantize_q8_0_act(QROW(r), blk, Dk);
            for (int b = 0; b < nb; b++) {
                memcpy(qq + (size_t)r * (size_t)Dk + 32 * b, blk[b].qs, 32);
                dq[(size_t)r * (size_t)nb + (size_t)b] = lv_fp16_to_fp32(blk[b].d);
            }
        } else {
            lv_attn_query_as(kt, QROW(r), qf + (size_t)r * Dk, Dk);
        }
        m[r] = -INFINITY;
        l[r] = 0.0f;
        memset(OROW(r), 0, (size_t)Dv * sizeof(float));
    }
    int32_t max_qpos = job->pos[0];
    for (int t = 1; t < job->n_tok; t++) max_qpos = job->pos[t] > max_qpos ? job->pos[t] : max_qpos;

    for (int s = 0; s < job->n_spans; s++) {
        const lv_attn_span *sp = &job->spans[s];
        const uint32_t heads = job->span_heads ? job->span_heads[s] : UINT32_MAX;
        for (int32_t j0 = 0; j0 < sp->n; j0 += AQ_KB) {
            const int nk = sp->n - j0 < AQ_KB ? sp->n - j0 : AQ_KB;
            if (lv_span_pos(sp, j0) > max_qpos) break; /* the whole block is in every query's future */
            int32_t kp[AQ_KB]; /* the block's key positions */
            lv_span_pos_block(sp, j0, nk, kp);
            aq_prefetch_ahead(job, s, j0, true);
            /* scores: quantized keys AQ_R rows at a time (the rows that chose the span: a decode
             * step's query heads of one KV head), each key block loaded once for the group */
            int grp[AQ_R], ng = 0;
            for (int r = 0; r < nq; r++) {
                if (!((heads >> (r % job->n_head)) & 1u)) continue; /* this head did not choose the span */
                if (!lv_kv_quantized(kt)) {
                    aq_scores_float(kt, sp, j0, nk, qf + (size_t)r * Dk, Dk, sc + (size_t)r * (AQ_KB + 16));
                    continue;
                }
                grp[ng++] = r;
                if (ng == AQ_R) {
                    aq_score_group(kt, sp, j0, nk, AQ_R, grp, qq, dq, sc, Dk);
                    ng = 0;
                }
            }
            switch (ng) { /* the rest: a constant row count per call */
                case 3: aq_score_group(kt, sp, j0, nk, 3, grp, qq, dq, sc, Dk); break;
                case 2: aq_score_group(kt, sp, j0, nk, 2, grp, qq, dq, sc, Dk); break;
                case 1: aq_score_group(kt, sp, j0, nk, 1, grp, qq, dq, sc, Dk); break;
                default: break;
            }
            aq_prefetch_ahead(job, s, j0, false);
            bool widened = false;
            for (int r = 0; r < nq; r++) {
                if (!((heads >> (r % job->n_head)) & 1u)) continue;
                float *sr = sc + (size_t)r * (AQ_KB + 16);
                const int32_t qp = QPOS(r);
                float bm = -INFINITY;
                for (int j = 0; j < nk; j++) {
                    const bool vis = job->mask.kind == LV_MASK_CAUSAL ? kp[j] <= qp : lv_attn_visible(&job->mask, kp[j], qp);
                    sr[j] = vis ? sr[j] * job->scale : -INFINITY;
                    bm = sr[j] > bm ? sr[j] : bm;
                }
                if (bm == -INFINITY) continue; /* nothing visible for this row in this block */
                const float nm = bm > m[r] ? bm : m[r];
                const float corr = m[r] == -INFINITY ? 0.0f : expf(m[r] - nm);
                const float bl = aq_exp_row(sr, nk, nm);
                if (!widened) { /* the values once for all the rows */
                    aq_widen_v(vt, sp, j0, nk, Dv, vb);
                    widened = true;
                }
                aq_pv(vb, nk, sr, Dv, corr, OROW(r));
                l[r] = l[r] * corr + bl;
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
        if (l[r] == 0.0f) continue; /* nothing attended: output stays zero */
        const float inv = 1.0f / l[r];
        float *o = OROW(r);
        for (int d = 0; d < Dv; d++) o[d] *= inv;
    }
#undef QROW
#undef OROW
#undef QPOS
}

#undef AQ_KB
#undef AQ_AHEAD
#undef AQ_KG
#undef AQ_R
