/*
 * attn_ref.c: the references of the attention kernels: lv_attn_ref (two passes, dot products in
 * double, over spans and a mask) and LServe's page score (lv_quest_page_ref and its f16-statistics
 * form). The tiled kernels of every SIMD level (attn_scalar.c, attn_avx2.c, attn_avx512.c) are
 * tested against them, and the SIMD page scorers call them for what their vectors do not cover;
 * the dispatch to the active level is in kernels.c, so dependencies point one way:
 * kernels.c -> attn_<level>.c -> attn_ref.c.
 */
#include "kernels/kernels.h"

#include "gguf/quant.h"

#include <math.h>
#include <string.h>

void lv_attn_query_as(lv_kv_type t, const float *q, float *out, int D) {
    if (lv_kv_quantized(t)) {
        lv_block_q8_0 b[1024 / LV_QK8_0];
        LV_ASSERT(D <= 1024 && D % LV_QK8_0 == 0);
        lv_quantize_q8_0_act(q, b, D);
        lv_to_float_row(LV_TYPE_Q8_0, b, out, D);
    } else if (t == LV_KV_F16) {
        for (int d = 0; d < D; d++) out[d] = lv_fp16_to_fp32(lv_fp32_to_fp16(q[d]));
    } else {
        memcpy(out, q, (size_t)D * sizeof(float));
    }
}

int64_t lv_attn_ref(const float *q, const lv_attn_span *spans, int n_spans, int32_t q_pos, const lv_attn_mask *mask, float scale,
                    lv_kv_type kv_type, lv_kv_type kv_type_v, int Dk, int Dv, float *scores, float *out) {
    float qr[1024];
    LV_ASSERT(Dk <= 1024 && Dv <= 1024);
    lv_attn_query_as(kv_type, q, qr, Dk);

    /* pass 1: scores and max */
    float mx = -INFINITY;
    int64_t j = 0, n_att = 0;
    for (int s = 0; s < n_spans; s++) {
        const lv_attn_span *sp = &spans[s];
        for (int32_t i = 0; i < sp->n; i++, j++) {
            if (!lv_attn_visible(mask, lv_span_pos(sp, i), q_pos)) {
                scores[j] = -INFINITY;
                continue;
            }
            double dot = 0;
            for (int d = 0; d < Dk; d++) dot += (double)qr[d] * (double)lv_attn_key_at(kv_type, sp, i, d, Dk);
            scores[j] = (float)dot * scale;
            if (scores[j] > mx) mx = scores[j];
            n_att++;
        }
    }
    for (int d = 0; d < Dv; d++) out[d] = 0.0f;
    if (n_att == 0) return 0;
    /* pass 2: softmax weights (sum in double, as ggml's soft_max) */
    double sum = 0;
    for (int64_t i = 0; i < j; i++) {
        const float e = scores[i] == -INFINITY ? 0.0f : expf(scores[i] - mx);
        scores[i] = e;
        sum += e;
    }
    const float inv = (float)(1.0 / sum);
    /* pass 3: weighted sum of values */
    j = 0;
    for (int s = 0; s < n_spans; s++) {
        const lv_attn_span *sp = &spans[s];
        for (int32_t i = 0; i < sp->n; i++, j++) {
            const float p = scores[j] * inv;
            if (p == 0.0f) continue;
            for (int d = 0; d < Dv; d++) out[d] += p * lv_attn_val_at(kv_type_v, sp, i, d, Dv);
        }
    }
    return n_att;
}

size_t lv_attn_scratch_floats(int nq, int Dk, int Dv) {
    /* the largest of the levels' layouts: q | K block | V block | scores (nq x 64, or the AVX-512
     * kernel's 4 x 64 and a discarded row of Dv) | m, l */
    return (size_t)nq * (size_t)Dk + 64 * (size_t)(Dk + Dv) + (size_t)nq * 64 + 4 * 64 + (size_t)Dv + 2 * (size_t)nq +
           (size_t)nq * 16; /* attn_q_impl.h's score rows are 80 wide; its float value block (64 x Dv) follows m, l */
}

void lv_quest_page_ref(const float *q, int64_t q_stride, int n_q, const float *stats, int n_lp, int Dk, float *best) {
    for (int h = 0; h < n_q; h++) best[h] = -INFINITY;
    for (int lp = 0; lp < n_lp; lp++) {
        const float *mn = stats + (size_t)lp * 2 * (size_t)Dk, *mx = mn + Dk;
        for (int h = 0; h < n_q; h++) {
            const float *qh = q + h * q_stride;
            float acc[16] = {0};
            int d = 0;
            for (; d + 16 <= Dk; d += 16)
                for (int j = 0; j < 16; j++) {
                    const float a = qh[d + j] * mx[d + j], b = qh[d + j] * mn[d + j];
                    acc[j] += a > b ? a : b;
                }
            float sum = 0;
            for (; d < Dk; d++) {
                const float a = qh[d] * mx[d], b = qh[d] * mn[d];
                sum += a > b ? a : b;
            }
            for (int j = 0; j < 16; j++) sum += acc[j];
            best[h] = sum > best[h] ? sum : best[h];
        }
    }
}

void lv_quest_page_f16_ref(const float *q, int64_t q_stride, int n_q, const uint16_t *stats, int n_lp, int Dk, float *best) {
    float s[2 * 1024];
    LV_ASSERT(Dk <= 1024);
    for (int h = 0; h < n_q; h++) best[h] = -INFINITY;
    for (int lp = 0; lp < n_lp; lp++) {
        float b[64];
        for (int i = 0; i < 2 * Dk; i++) s[i] = lv_fp16_to_fp32(stats[(size_t)lp * 2 * (size_t)Dk + (size_t)i]);
        for (int h0 = 0; h0 < n_q; h0 += 64) {
            const int nh = n_q - h0 < 64 ? n_q - h0 : 64;
            lv_quest_page_ref(q + h0 * q_stride, q_stride, nh, s, 1, Dk, b);
            for (int h = 0; h < nh; h++) best[h0 + h] = b[h] > best[h0 + h] ? b[h] : best[h0 + h];
        }
    }
}
