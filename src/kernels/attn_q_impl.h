/*
 * attn_q_impl.h: attention over quantized KV pages (LV_KV_Q8_0 or LV_KV_Q4_0 keys or values, or
 * keys and values of different types), written once and compiled per SIMD level (attn_scalar.c, attn_avx2.c,
 * attn_avx512.c include it with ATTNQ_FN defined; the AVX2 / AVX-512 inner loops are chosen by the
 * compiler's target macros). Its reference is lv_attn_ref; tests/kernels/test_kernels.c compares
 * every level with it on fresh random inputs.
 *
 * The same algorithm as attn_impl.h (one pass over blocks of 64 keys, online softmax), reading the
 * pages as stored: nothing is dequantized into memory.
 *  - Quantized keys: the query row is quantized to q8_0 once per job (round half to even, as
 *    llama.cpp's x86 build quantizes it for ggml_vec_dot_q8_0_q8_0), and a score is, per block of
 *    32 dimensions, an exact integer dot product of the two blocks' quants scaled by the product
 *    of their scales: s = sum_b (d_q,b d_k,b) isum_b (q4_0 keys: their nibbles minus 8, widened to
 *    bytes in registers, as ggml_vec_dot_q4_0_q8_0 does). AVX2 computes 8 keys at a time
 *    (vpsignb + vpmaddubsw + vpmaddwd per key and block, a vphaddd tree puts the 8 keys' sums in
 *    one vector, 8 scales are one f16 load); a group past the block's last key is copied into a
 *    zero-padded buffer first, so every key's score is the same instructions wherever it lands.
 *  - Quantized values: o += (p_j d_j,b) q_j over each block, the quants widened in registers
 *    (8 or 16 lanes), the output row in registers 64 dimensions at a time.
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
#include <immintrin.h>
#endif

#ifndef ATTNQ_FN
#error "define ATTNQ_FN before including attn_q_impl.h"
#endif

#define AQ_KB 64 /* keys per block */
#define AQ_KG 8  /* keys per score group */

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

/* The scores of 8 keys (quantized, type t; key t's quants at kq + t * rowq, its block-b scale at
 * ks[b * ld + t]) against one q8_0 query row (qq: Dk quants, dq: its nb block scales). */
static inline __attribute__((always_inline)) void aq_dot8(lv_kv_type kt, const int8_t *kq, int64_t rowq, const uint16_t *ks, int64_t ld,
                                                          const int8_t *qq, const float *dq, int nb, float *out) {
#if defined(__AVX2__)
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const __m256i qv = _mm256_loadu_si256((const __m256i *)(qq + 32 * b));
        const __m256i aq = _mm256_sign_epi8(qv, qv);
        __m256i s[AQ_KG];
        for (int t = 0; t < AQ_KG; t++) {
            const __m256i kv = aq_block_avx2(kt, kq + t * rowq, b);
            s[t] = _mm256_madd_epi16(_mm256_maddubs_epi16(aq, _mm256_sign_epi8(kv, qv)), ones);
        }
        /* the 8 keys' sums in key order: pairwise adds, then the two 128-bit halves */
        const __m256i t01 = _mm256_hadd_epi32(s[0], s[1]), t23 = _mm256_hadd_epi32(s[2], s[3]);
        const __m256i t45 = _mm256_hadd_epi32(s[4], s[5]), t67 = _mm256_hadd_epi32(s[6], s[7]);
        const __m256i u0 = _mm256_hadd_epi32(t01, t23), u1 = _mm256_hadd_epi32(t45, t67);
        const __m256i isum = _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
        const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ks + b * ld))), _mm256_set1_ps(dq[b]));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum), acc);
    }
    _mm256_storeu_ps(out, acc);
#else
    for (int t = 0; t < AQ_KG; t++) {
        float s = 0.0f;
        for (int b = 0; b < nb; b++) {
            const int8_t *x = qq + 32 * b;
            int isum = 0;
            for (int i = 0; i < 32; i++) isum += (int)x[i] * aq_q(kt, kq + t * rowq, b, i);
            const float d = lv_fp16_to_fp32(ks[b * ld + t]) * dq[b];
            s += d * (float)isum;
        }
        out[t] = s;
    }
#endif
}

/* raw scores (before scale and mask) of keys j0 .. j0 + nk - 1 of a span against one query row */
static inline void aq_scores(lv_kv_type kt, const lv_attn_span *sp, int j0, int nk, const float *qf, const int8_t *qq, const float *dq,
                             int Dk, float *sr) {
    if (!lv_kv_quantized(kt)) {
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
        return;
    }
    const int nb = Dk / LV_KV_QBLOCK;
    const int64_t rowq = lv_kv_qrow_bytes(kt, Dk);
    const int8_t *kq = (const int8_t *)sp->k;
    int j = 0;
    /* the key type a constant inside each loop */
    if (kt == LV_KV_Q4_0)
        for (; j + AQ_KG <= nk; j += AQ_KG) aq_dot8(LV_KV_Q4_0, kq + (j0 + j) * rowq, rowq, sp->ks + j0 + j, sp->ldk, qq, dq, nb, sr + j);
    else
        for (; j + AQ_KG <= nk; j += AQ_KG) aq_dot8(LV_KV_Q8_0, kq + (j0 + j) * rowq, rowq, sp->ks + j0 + j, sp->ldk, qq, dq, nb, sr + j);
    if (j < nk) { /* the last keys, zero-padded to a group: the same instructions as a whole group */
        int8_t kbuf[AQ_KG * 1024];
        uint16_t sbuf[AQ_KG * (1024 / LV_KV_QBLOCK)];
        float tmp[AQ_KG];
        const int left = nk - j;
        memset(kbuf, 0, (size_t)(AQ_KG * rowq));
        memset(sbuf, 0, sizeof(uint16_t) * (size_t)(AQ_KG * nb));
        memcpy(kbuf, kq + (j0 + j) * rowq, (size_t)(left * rowq));
        for (int b = 0; b < nb; b++) memcpy(sbuf + b * AQ_KG, sp->ks + (size_t)b * (size_t)sp->ldk + j0 + j, (size_t)left * sizeof(uint16_t));
        aq_dot8(kt, kbuf, rowq, sbuf, AQ_KG, qq, dq, nb, tmp);
        memcpy(sr + j, tmp, (size_t)left * sizeof(float));
    }
}

/* o = o * corr + sum_j p[j] v_j over the block's values (keys j0 ..) */
static inline void aq_pv(lv_kv_type vt, const lv_attn_span *sp, int j0, int nk, const float *p, int Dv, float corr, float *o) {
    if (!lv_kv_quantized(vt)) {
        for (int d = 0; d < Dv; d++) o[d] *= corr;
        for (int j = 0; j < nk; j++) {
            const float pj = p[j];
            if (pj == 0.0f) continue;
            if (vt == LV_KV_F32) {
                const float *vr = (const float *)sp->v + (size_t)(j0 + j) * (size_t)Dv;
                for (int d = 0; d < Dv; d++) o[d] += pj * vr[d];
            } else {
                const uint16_t *vr = (const uint16_t *)sp->v + (size_t)(j0 + j) * (size_t)Dv;
                for (int d = 0; d < Dv; d++) o[d] += pj * lv_fp16_to_fp32(vr[d]);
            }
        }
        return;
    }
    const int64_t rowq = lv_kv_qrow_bytes(vt, Dv);
    const int8_t *vq = (const int8_t *)sp->v;
    const uint16_t *vs = sp->vs;
    const size_t ld = (size_t)sp->ldk;
    /* 64 dimensions (2 blocks) at a time in registers, then a last block of 32 */
    for (int c0 = 0; c0 < Dv; c0 += 64) {
        const int nbk = Dv - c0 >= 64 ? 2 : 1;
#if defined(__AVX512F__)
        __m512 acc[4];
        const __m512 vc = _mm512_set1_ps(corr);
        for (int g = 0; g < 2 * nbk; g++) acc[g] = _mm512_mul_ps(_mm512_loadu_ps(o + c0 + 16 * g), vc);
        for (int j = 0; j < nk; j++) {
            const float pj = p[j];
            if (pj == 0.0f) continue;
            const int8_t *row = vq + (j0 + j) * rowq;
            for (int bb = 0; bb < nbk; bb++) {
                const __m512 pd = _mm512_set1_ps(pj * lv_fp16_to_fp32(vs[(size_t)(c0 / 32 + bb) * ld + (size_t)(j0 + j)]));
                const __m256i blk = aq_block_avx2(vt, row, c0 / 32 + bb);
                for (int g = 0; g < 2; g++) {
                    const __m512 x = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(g ? _mm256_extracti128_si256(blk, 1) : _mm256_castsi256_si128(blk)));
                    acc[2 * bb + g] = _mm512_fmadd_ps(pd, x, acc[2 * bb + g]);
                }
            }
        }
        for (int g = 0; g < 2 * nbk; g++) _mm512_storeu_ps(o + c0 + 16 * g, acc[g]);
#elif defined(__AVX2__)
        __m256 acc[8];
        const __m256 vc = _mm256_set1_ps(corr);
        for (int g = 0; g < 4 * nbk; g++) acc[g] = _mm256_mul_ps(_mm256_loadu_ps(o + c0 + 8 * g), vc);
        for (int j = 0; j < nk; j++) {
            const float pj = p[j];
            if (pj == 0.0f) continue;
            const int8_t *row = vq + (j0 + j) * rowq;
            for (int bb = 0; bb < nbk; bb++) {
                const __m256 pd = _mm256_set1_ps(pj * lv_fp16_to_fp32(vs[(size_t)(c0 / 32 + bb) * ld + (size_t)(j0 + j)]));
                const __m256i blk = aq_block_avx2(vt, row, c0 / 32 + bb);
                const __m128i lo = _mm256_castsi256_si128(blk), hi = _mm256_extracti128_si256(blk, 1);
                const __m128i part[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
                for (int g = 0; g < 4; g++) {
                    const __m256 x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part[g]));
                    acc[4 * bb + g] = _mm256_fmadd_ps(pd, x, acc[4 * bb + g]);
                }
            }
        }
        for (int g = 0; g < 4 * nbk; g++) _mm256_storeu_ps(o + c0 + 8 * g, acc[g]);
#else
        for (int d = c0; d < c0 + 32 * nbk; d++) o[d] *= corr;
        for (int j = 0; j < nk; j++) {
            const float pj = p[j];
            if (pj == 0.0f) continue;
            const int8_t *row = vq + (j0 + j) * rowq;
            for (int bb = 0; bb < nbk; bb++) {
                const int b = c0 / 32 + bb;
                const float pd = pj * lv_fp16_to_fp32(vs[(size_t)b * ld + (size_t)(j0 + j)]);
                for (int i = 0; i < 32; i++) o[32 * b + i] += pd * (float)aq_q(vt, row, b, i);
            }
        }
#endif
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

void ATTNQ_FN(const lv_attn_job *job, float *scratch) {
    const int nq = job->n_tok * job->n_head, Dk = job->Dk, Dv = job->Dv;
    const lv_kv_type kt = job->kv_type, vt = job->kv_type_v;
    LV_ASSERT(Dk <= 1024 && Dv <= 1024);
    LV_ASSERT((!lv_kv_quantized(kt) || Dk % LV_KV_QBLOCK == 0) && (!lv_kv_quantized(vt) || Dv % LV_KV_QBLOCK == 0));
#define QROW(r) (job->q + (size_t)((r) / job->n_head) * job->q_tok_stride + (size_t)((r) % job->n_head) * job->q_head_stride)
#define OROW(r) (job->out + (size_t)((r) / job->n_head) * job->out_tok_stride + (size_t)((r) % job->n_head) * job->out_head_stride)
#define QPOS(r) (job->pos[(r) / job->n_head])
    /* scratch (within lv_attn_scratch_floats): the query rows as the keys take them (nq x Dk floats,
     * or nq x Dk int8 quants and nq x Dk / 32 scales in the same room) | scores (nq, KB + 16) | m, l (nq) */
    const int nb = Dk / LV_KV_QBLOCK;
    float *qf = scratch;
    int8_t *qq = (int8_t *)scratch;
    float *dq = scratch + (size_t)nq * (size_t)Dk / 2;
    float *sc = scratch + (size_t)nq * (size_t)Dk;
    float *m = sc + (size_t)nq * (AQ_KB + 16);
    float *l = m + nq;
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
            if (sp->pos[j0] > max_qpos) break; /* the whole block is in every query's future */
            for (int r = 0; r < nq; r++) {
                if (!((heads >> (r % job->n_head)) & 1u)) continue; /* this head did not choose the span */
                float *sr = sc + (size_t)r * (AQ_KB + 16);
                aq_scores(kt, sp, j0, nk, qf + (size_t)r * Dk, qq + (size_t)r * Dk, dq + (size_t)r * nb, Dk, sr);
                const int32_t qp = QPOS(r);
                float bm = -INFINITY;
                for (int j = 0; j < nk; j++) {
                    const bool vis = job->mask.kind == LV_MASK_CAUSAL ? sp->pos[j0 + j] <= qp : lv_attn_visible(&job->mask, sp->pos[j0 + j], qp);
                    sr[j] = vis ? sr[j] * job->scale : -INFINITY;
                    bm = sr[j] > bm ? sr[j] : bm;
                }
                if (bm == -INFINITY) continue; /* nothing visible for this row in this block */
                const float nm = bm > m[r] ? bm : m[r];
                const float corr = m[r] == -INFINITY ? 0.0f : expf(m[r] - nm);
                const float bl = aq_exp_row(sr, nk, nm);
                aq_pv(vt, sp, j0, nk, sr, Dv, corr, OROW(r));
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
#undef AQ_KG
