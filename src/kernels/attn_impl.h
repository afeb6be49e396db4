/*
 * attn_impl.h: the tiled attention kernel, written once in portable C and compiled three times
 * (attn_scalar.c, attn_avx2.c, attn_avx512.c) with each level's -m flags, so the compiler
 * vectorizes its inner loops for that level. Include it after defining ATTN_FN (the function's
 * name). Its reference is lv_attn_ref (kernels.c): two passes with double dot products; the tests
 * compare the two on fresh random inputs.
 *
 * Algorithm (flash-attention style, one pass, online softmax): a job is a group of query rows
 * that read the same KV stream (the G query heads of one KV head, for one or several tokens of
 * one sequence). For each block of up to ATTN_KB keys, every key row is loaded once and dotted
 * with every query row (scores tile: nq x ATTN_KB); then each query row rescales its running
 * output by exp(old_max - new_max) and adds the block's values weighted by exp(s - new_max).
 * Keys whose stored position exceeds the query's position are masked (causal by position).
 * f16 keys and values are widened to f32 one block at a time; with an f16 cache the queries are
 * rounded to f16 first, as llama.cpp does.
 */
#include "gguf/quant.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

#ifndef ATTN_FN
#error "define ATTN_FN before including attn_impl.h"
#endif

#define ATTN_KB 64 /* keys per block */

/* 16 independent accumulators: vectorizes as one 512-bit or two 256-bit registers */
static inline float attn_dot(const float *a, const float *b, int n) {
    float acc[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[i + j] * b[i + j];
    float s = 0;
    for (; i < n; i++) s += a[i] * b[i];
    for (int j = 0; j < 16; j++) s += acc[j];
    return s;
}

/* keys first_row.. of a span, row by row (dst: rows x D) */
static inline void attn_widen_keys(lv_kv_type t, const lv_attn_span *sp, int64_t first_row, int rows, int D, float *dst) {
    for (int d = 0; d < D; d++)
        for (int j = 0; j < rows; j++) dst[(size_t)j * D + d] = lv_attn_key(t, sp, first_row + j, d);
}

static inline void attn_widen(lv_kv_type t, const void *src, int64_t first_row, int rows, int D, float *dst) {
    if (t == LV_KV_F32) {
        memcpy(dst, (const float *)src + first_row * D, (size_t)rows * (size_t)D * sizeof(float));
    } else {
        const uint16_t *h = (const uint16_t *)src + first_row * D;
        for (int i = 0; i < rows * D; i++) dst[i] = lv_fp16_to_fp32(h[i]);
    }
}

void ATTN_FN(const lv_attn_job *job, float *scratch) {
    const int nq = job->n_tok * job->n_head, Dk = job->Dk, Dv = job->Dv;
#define QROW(r) (job->q + (size_t)((r) / job->n_head) * job->q_tok_stride + (size_t)((r) % job->n_head) * job->q_head_stride)
#define OROW(r) (job->out + (size_t)((r) / job->n_head) * job->out_tok_stride + (size_t)((r) % job->n_head) * job->out_head_stride)
#define QPOS(r) (job->pos[(r) / job->n_head])
    /* scratch layout: q (nq, Dk) | K block (KB, Dk) | V block (KB, Dv) | scores (nq, KB) | m, l (nq) */
    float *q = scratch;
    float *kb = q + (size_t)nq * Dk;
    float *vb = kb + (size_t)ATTN_KB * Dk;
    float *sc = vb + (size_t)ATTN_KB * Dv;
    float *m = sc + (size_t)nq * ATTN_KB;
    float *l = m + nq;
    for (int r = 0; r < nq; r++) {
        const float *src = QROW(r);
        for (int d = 0; d < Dk; d++) q[(size_t)r * Dk + d] = job->kv_type == LV_KV_F16 ? lv_fp16_to_fp32(lv_fp32_to_fp16(src[d])) : src[d];
        m[r] = -INFINITY;
        l[r] = 0.0f;
        memset(OROW(r), 0, (size_t)Dv * sizeof(float));
    }
    int32_t max_qpos = job->pos[0];
    for (int t = 1; t < job->n_tok; t++) max_qpos = job->pos[t] > max_qpos ? job->pos[t] : max_qpos;

    for (int s = 0; s < job->n_spans; s++) {
        const lv_attn_span *sp = &job->spans[s];
        for (int32_t j0 = 0; j0 < sp->n; j0 += ATTN_KB) {
            const int nk = sp->n - j0 < ATTN_KB ? sp->n - j0 : ATTN_KB;
            /* the whole block is in the future of every query: skip it (positions increase along a stream) */
            if (lv_span_pos(sp, j0) > max_qpos) break;
            int32_t kp[ATTN_KB]; /* the block's key positions */
            lv_span_pos_block(sp, j0, nk, kp);
            attn_widen_keys(job->kv_type, sp, j0, nk, Dk, kb);
            /* scores tile */
            const uint32_t heads = job->span_heads ? job->span_heads[s] : UINT32_MAX;
            for (int r = 0; r < nq; r++) {
                const int32_t qp = QPOS(r);
                const float *qr = q + (size_t)r * Dk;
                float *sr = sc + (size_t)r * ATTN_KB;
                if (!((heads >> (r % job->n_head)) & 1u)) {
                    for (int j = 0; j < nk; j++) sr[j] = -INFINITY; /* this head did not choose the span */
                } else if (job->mask.kind == LV_MASK_CAUSAL) {
                    for (int j = 0; j < nk; j++) sr[j] = kp[j] <= qp ? attn_dot(qr, kb + (size_t)j * Dk, Dk) * job->scale : -INFINITY;
                } else {
                    for (int j = 0; j < nk; j++)
                        sr[j] = lv_attn_visible(&job->mask, kp[j], qp) ? attn_dot(qr, kb + (size_t)j * Dk, Dk) * job->scale : -INFINITY;
                }
            }
            attn_widen(job->kv_type, sp->v, j0, nk, Dv, vb);
            /* online softmax update */
            for (int r = 0; r < nq; r++) {
                float *sr = sc + (size_t)r * ATTN_KB;
                float bm = -INFINITY;
                for (int j = 0; j < nk; j++) bm = sr[j] > bm ? sr[j] : bm;
                if (bm == -INFINITY) continue; /* every key masked for this query */
                const float nm = bm > m[r] ? bm : m[r];
                const float corr = m[r] == -INFINITY ? 0.0f : expf(m[r] - nm);
                float *o = OROW(r);
                if (corr != 1.0f)
                    for (int d = 0; d < Dv; d++) o[d] *= corr;
                float bl = 0;
                for (int j = 0; j < nk; j++) {
                    const float p = sr[j] == -INFINITY ? 0.0f : expf(sr[j] - nm);
                    sr[j] = p;
                    bl += p;
                }
                for (int j = 0; j < nk; j++) {
                    const float p = sr[j];
                    if (p == 0.0f) continue;
                    const float *vr = vb + (size_t)j * Dv;
                    for (int d = 0; d < Dv; d++) o[d] += p * vr[d];
                }
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
