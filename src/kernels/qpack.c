/*
 * qpack.c: the packed layouts of qpack.h (portable): packing and unpacking, the activation
 * format's scales and sums, the reference product, and choosing the kernels.
 */
#include "kernels/qpack.h"

#include "core/core.h"

#include <stdlib.h>
#include <string.h>

bool lv_pack_type_supported(lv_type t) {
    return t == LV_TYPE_Q4_0 || t == LV_TYPE_Q5_0 || t == LV_TYPE_Q8_0 || t == LV_TYPE_Q4_K || t == LV_TYPE_IQ4_XS || t == LV_TYPE_IQ4_NL;
}

/* q5_0 block group: d[16], the high bits as 8 64-bit masks, then the nibbles as q4_0's */
static void pack_q5_0(int64_t k, const uint8_t *w, size_t w_stride, uint8_t *o) {
    for (int64_t b = 0; b < k / 32; b++, o += 16 * sizeof(lv_block_q5_0)) {
        uint64_t hm[8] = {0};
        for (int r = 0; r < LV_PACK_ROWS; r++) {
            const lv_block_q5_0 *a = (const lv_block_q5_0 *)(w + r * w_stride) + b;
            uint32_t qh;
            memcpy(&qh, a->qh, 4);
            memcpy(o + 2 * r, &a->d, 2);
            for (int j = 0; j < 8; j++)
                for (int i = 0; i < 4; i++) hm[j] |= (uint64_t)((qh >> (4 * j + i)) & 1) << (4 * r + i);
            for (int j = 0; j < 4; j++) memcpy(o + 96 + 64 * j + 4 * r, a->qs + 4 * j, 4);
        }
        memcpy(o + 32, hm, 64);
    }
}

static void unpack_q5_0(int64_t k, const uint8_t *o, uint8_t *w, size_t w_stride) {
    for (int64_t b = 0; b < k / 32; b++, o += 16 * sizeof(lv_block_q5_0)) {
        uint64_t hm[8];
        memcpy(hm, o + 32, 64);
        for (int r = 0; r < LV_PACK_ROWS; r++) {
            lv_block_q5_0 *a = (lv_block_q5_0 *)(w + r * w_stride) + b;
            uint32_t qh = 0;
            for (int j = 0; j < 8; j++)
                for (int i = 0; i < 4; i++) qh |= (uint32_t)((hm[j] >> (4 * r + i)) & 1) << (4 * j + i);
            memcpy(a->qh, &qh, 4);
            memcpy(&a->d, o + 2 * r, 2);
            for (int j = 0; j < 4; j++) memcpy(a->qs + 4 * j, o + 96 + 64 * j + 4 * r, 4);
        }
    }
}

/* q4_K block group: d[16], dmin[16], sc[8][16], m[4][16][2], then the quants */
#define K4_SC 64
#define K4_M 192
#define K4_Q 320
#define K4_GROUP 2368

/* iq4_xs block group: d[16], sc[8][16] (ls - 32 as int8), then the indices */
#define X4_SC 32
#define X4_Q 160
#define X4_GROUP 2208

size_t lv_pack_group_bytes(lv_type t, int64_t k) {
    LV_ASSERT(lv_pack_type_supported(t));
    if (t == LV_TYPE_IQ4_XS) return (size_t)(k / 256) * X4_GROUP;
    return t == LV_TYPE_Q4_K ? (size_t)(k / 256) * K4_GROUP : (size_t)lv_row_bytes(t, k) * LV_PACK_ROWS;
}

static void pack_iq4_xs(int64_t k, const uint8_t *w, size_t w_stride, uint8_t *o) {
    for (int64_t b = 0; b < k / 256; b++, o += X4_GROUP)
        for (int r = 0; r < LV_PACK_ROWS; r++) {
            const lv_block_iq4_xs *a = (const lv_block_iq4_xs *)(w + r * w_stride) + b;
            memcpy(o + 2 * r, &a->d, 2);
            for (int j = 0; j < 8; j++) {
                const int ls = ((a->scales_l[j / 2] >> (4 * (j % 2))) & 0xF) | (((a->scales_h >> (2 * j)) & 3) << 4);
                o[X4_SC + 16 * j + r] = (uint8_t)(int8_t)(ls - 32);
                for (int q = 0; q < 4; q++) memcpy(o + X4_Q + 256 * j + 64 * q + 4 * r, a->qs + 16 * j + 4 * q, 4);
            }
        }
}

static void unpack_iq4_xs(int64_t k, const uint8_t *o, uint8_t *w, size_t w_stride) {
    for (int64_t b = 0; b < k / 256; b++, o += X4_GROUP)
        for (int r = 0; r < LV_PACK_ROWS; r++) {
            lv_block_iq4_xs *a = (lv_block_iq4_xs *)(w + r * w_stride) + b;
            memcpy(&a->d, o + 2 * r, 2);
            uint16_t sh = 0;
            memset(a->scales_l, 0, sizeof(a->scales_l));
            for (int j = 0; j < 8; j++) {
                const int ls = (int8_t)o[X4_SC + 16 * j + r] + 32; /* 6 bits */
                a->scales_l[j / 2] = (uint8_t)(a->scales_l[j / 2] | ((ls & 0xF) << (4 * (j % 2))));
                sh = (uint16_t)(sh | ((ls >> 4) & 3) << (2 * j));
                for (int q = 0; q < 4; q++) memcpy(a->qs + 16 * j + 4 * q, o + X4_Q + 256 * j + 64 * q + 4 * r, 4);
            }
            a->scales_h = sh;
        }
}

static void pack_q4_K(int64_t k, const uint8_t *w, size_t w_stride, uint8_t *o) {
    for (int64_t b = 0; b < k / 256; b++, o += K4_GROUP)
        for (int r = 0; r < LV_PACK_ROWS; r++) {
            const lv_block_q4_K *a = (const lv_block_q4_K *)(w + r * w_stride) + b;
            memcpy(o + 2 * r, &a->d, 2);
            memcpy(o + 32 + 2 * r, &a->dmin, 2);
            for (int j = 0; j < 8; j++) {
                uint8_t sc, m;
                lv_get_scale_min_k4(j, a->scales, &sc, &m);
                o[K4_SC + 16 * j + r] = sc;
                o[K4_M + 32 * (j / 2) + 2 * r + (j & 1)] = m;
            }
            for (int i = 0; i < 4; i++)
                for (int q = 0; q < 8; q++) memcpy(o + K4_Q + 512 * i + 64 * q + 4 * r, a->qs + 32 * i + 4 * q, 4);
        }
}

static void unpack_q4_K(int64_t k, const uint8_t *o, uint8_t *w, size_t w_stride) {
    for (int64_t b = 0; b < k / 256; b++, o += K4_GROUP)
        for (int r = 0; r < LV_PACK_ROWS; r++) {
            lv_block_q4_K *a = (lv_block_q4_K *)(w + r * w_stride) + b;
            uint8_t sc[8], m[8];
            memcpy(&a->d, o + 2 * r, 2);
            memcpy(&a->dmin, o + 32 + 2 * r, 2);
            for (int j = 0; j < 8; j++) {
                sc[j] = o[K4_SC + 16 * j + r];
                m[j] = o[K4_M + 32 * (j / 2) + 2 * r + (j & 1)];
            }
            /* the 12-byte encoding of lv_get_scale_min_k4, inverted (all 96 bits are used) */
            for (int j = 0; j < 4; j++) {
                a->scales[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
                a->scales[j + 4] = (uint8_t)(m[j] | ((m[j + 4] >> 4) << 6));
                a->scales[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
            }
            for (int i = 0; i < 4; i++)
                for (int q = 0; q < 8; q++) memcpy(a->qs + 32 * i + 4 * q, o + K4_Q + 512 * i + 64 * q + 4 * r, 4);
        }
}

/* quant bytes per row and block of q4_0 and iq4_nl (16: the same block, nibble indices) and q8_0 (32) */
static int quant_bytes(lv_type t) { return t == LV_TYPE_Q4_0 || t == LV_TYPE_IQ4_NL ? 16 : 32; }

void lv_pack_rows(lv_type t, int64_t k, const void *w, size_t w_stride, void *dst) {
    LV_ASSERT(lv_pack_type_supported(t));
    if (t == LV_TYPE_Q4_K) {
        pack_q4_K(k, w, w_stride, dst);
        return;
    }
    if (t == LV_TYPE_IQ4_XS) {
        pack_iq4_xs(k, w, w_stride, dst);
        return;
    }
    if (t == LV_TYPE_Q5_0) {
        pack_q5_0(k, w, w_stride, dst);
        return;
    }
    const int64_t nb = k / 32, bs = lv_type_get(t)->type_size, qb = quant_bytes(t);
    const uint8_t flip = t == LV_TYPE_Q8_0 ? 0x80 : 0x00; /* int8 q + 128 == q ^ 0x80 as a byte */
    uint8_t *o = dst;
    for (int64_t b = 0; b < nb; b++) {
        for (int r = 0; r < LV_PACK_ROWS; r++) memcpy(o + 2 * r, (const uint8_t *)w + r * w_stride + b * bs, 2);
        uint8_t *q = o + 2 * LV_PACK_ROWS;
        for (int64_t j = 0; j < qb / 4; j++)
            for (int r = 0; r < LV_PACK_ROWS; r++) {
                const uint8_t *src = (const uint8_t *)w + r * w_stride + b * bs + 2 + 4 * j;
                for (int i = 0; i < 4; i++) q[(j * LV_PACK_ROWS + r) * 4 + i] = src[i] ^ flip;
            }
        o += LV_PACK_ROWS * bs;
    }
}

void lv_unpack_rows(lv_type t, int64_t k, const void *src, void *w, size_t w_stride) {
    LV_ASSERT(lv_pack_type_supported(t));
    if (t == LV_TYPE_Q4_K) {
        unpack_q4_K(k, src, w, w_stride);
        return;
    }
    if (t == LV_TYPE_IQ4_XS) {
        unpack_iq4_xs(k, src, w, w_stride);
        return;
    }
    if (t == LV_TYPE_Q5_0) {
        unpack_q5_0(k, src, w, w_stride);
        return;
    }
    const int64_t nb = k / 32, bs = lv_type_get(t)->type_size, qb = quant_bytes(t);
    const uint8_t flip = t == LV_TYPE_Q8_0 ? 0x80 : 0x00;
    const uint8_t *o = src;
    for (int64_t b = 0; b < nb; b++) {
        for (int r = 0; r < LV_PACK_ROWS; r++) memcpy((uint8_t *)w + r * w_stride + b * bs, o + 2 * r, 2);
        const uint8_t *q = o + 2 * LV_PACK_ROWS;
        for (int64_t j = 0; j < qb / 4; j++)
            for (int r = 0; r < LV_PACK_ROWS; r++) {
                uint8_t *d = (uint8_t *)w + r * w_stride + b * bs + 2 + 4 * j;
                for (int i = 0; i < 4; i++) d[i] = q[(j * LV_PACK_ROWS + r) * 4 + i] ^ flip;
            }
        o += LV_PACK_ROWS * bs;
    }
}

size_t lv_packx_row_bytes(lv_type t, int64_t k) {
    /* q4_K: int16 sums of 8 sub-blocks per super-block; else float d + int32 nsum per block */
    return lv_packx_tail(t, k) + (lv_packx_is_q8_K(t) ? (size_t)(k / 256) * 16 : (size_t)(k / 32) * 8);
}

void lv_packx_finish(lv_type t, void *row, int64_t k) {
    if (lv_packx_is_q8_K(t)) {
        const lv_block_q8_K *q = row;
        int16_t *sb = (int16_t *)((uint8_t *)row + lv_packx_tail(t, k));
        for (int64_t b = 0; b < k / 256; b++)
            for (int j = 0; j < 8; j++) sb[8 * b + j] = (int16_t)(q[b].bsums[2 * j] + q[b].bsums[2 * j + 1]);
        return;
    }
    const int64_t nb = k / 32;
    const lv_block_q8_0 *q = row;
    float *d = (float *)((uint8_t *)row + lv_packx_tail(t, k));
    int32_t *nsum = (int32_t *)(d + nb);
    for (int64_t b = 0; b < nb; b++) {
        int32_t s = 0;
        for (int i = 0; i < 32; i++) s += q[b].qs[i];
        d[b] = lv_fp16_to_fp32(q[b].d);
        nsum[b] = -s;
    }
}

void lv_pack_gemm_ref(lv_type t, int64_t k, const void *group, const void *x, size_t x_stride, float *y, size_t y_stride, int nc) {
    const size_t rb = (size_t)lv_row_bytes(t, k);
    uint8_t *rows = malloc(rb * LV_PACK_ROWS);
    LV_ASSERT(rows);
    lv_unpack_rows(t, k, group, rows, rb);
    for (int c = 0; c < nc; c++)
        for (int r = 0; r < LV_PACK_ROWS; r++)
            y[(size_t)c * y_stride + (size_t)r] = lv_vec_dot_ref(t, k, rows + (size_t)r * rb, (const uint8_t *)x + (size_t)c * x_stride);
    free(rows);
}

const lv_pack_ops *lv_pack_ops_get(lv_type t, lv_simd level) {
    if (!lv_pack_type_supported(t)) return NULL;
    lv_simd det = lv_simd_detect();
    if ((int)level > (int)det) level = det;
    if (level >= LV_SIMD_AVX512) return lv_pack_avx512_ops(t);
    return level == LV_SIMD_AVX2 ? lv_pack_avx2_ops(t) : NULL;
}

bool lv_pack_enabled(void) {
    const char *e = getenv("LV_REPACK");
    return !(e && strcmp(e, "0") == 0);
}
