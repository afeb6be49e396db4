/*
 * quant.c: type traits and the scalar reference routines of quant.h.
 */
#include "quant.h"

#include "lv_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* -------------------------------------------------------------------------------------------
 * type traits (names, block sizes and block bytes as in ggml.c's type_traits)
 * ----------------------------------------------------------------------------------------- */

static const lv_type_traits g_traits[LV_TYPE_COUNT] = {
    [LV_TYPE_F32] = {"f32", 1, 4, true},
    [LV_TYPE_F16] = {"f16", 1, 2, true},
    [LV_TYPE_Q4_0] = {"q4_0", 32, 18, true},
    [LV_TYPE_Q4_1] = {"q4_1", 32, 20, false},
    [LV_TYPE_Q5_0] = {"q5_0", 32, 22, false},
    [LV_TYPE_Q5_1] = {"q5_1", 32, 24, false},
    [LV_TYPE_Q8_0] = {"q8_0", 32, 34, true},
    [LV_TYPE_Q8_1] = {"q8_1", 32, 36, false},
    [LV_TYPE_Q2_K] = {"q2_K", 256, 84, false},
    [LV_TYPE_Q3_K] = {"q3_K", 256, 110, false},
    [LV_TYPE_Q4_K] = {"q4_K", 256, 144, false},
    [LV_TYPE_Q5_K] = {"q5_K", 256, 176, false},
    [LV_TYPE_Q6_K] = {"q6_K", 256, 210, false},
    [LV_TYPE_Q8_K] = {"q8_K", 256, 292, false},
    [LV_TYPE_IQ2_XXS] = {"iq2_xxs", 256, 66, false},
    [LV_TYPE_IQ2_XS] = {"iq2_xs", 256, 74, false},
    [LV_TYPE_IQ3_XXS] = {"iq3_xxs", 256, 98, false},
    [LV_TYPE_IQ1_S] = {"iq1_s", 256, 50, false},
    [LV_TYPE_IQ4_NL] = {"iq4_nl", 32, 18, false},
    [LV_TYPE_IQ3_S] = {"iq3_s", 256, 110, false},
    [LV_TYPE_IQ2_S] = {"iq2_s", 256, 82, false},
    [LV_TYPE_IQ4_XS] = {"iq4_xs", 256, 136, false},
    [LV_TYPE_I8] = {"i8", 1, 1, false},
    [LV_TYPE_I16] = {"i16", 1, 2, false},
    [LV_TYPE_I32] = {"i32", 1, 4, false},
    [LV_TYPE_I64] = {"i64", 1, 8, false},
    [LV_TYPE_F64] = {"f64", 1, 8, false},
    [LV_TYPE_IQ1_M] = {"iq1_m", 256, 56, false},
    [LV_TYPE_BF16] = {"bf16", 1, 2, true},
    [LV_TYPE_TQ1_0] = {"tq1_0", 256, 54, false},
    [LV_TYPE_TQ2_0] = {"tq2_0", 256, 66, false},
    [LV_TYPE_MXFP4] = {"mxfp4", 32, 17, false},
    [LV_TYPE_NVFP4] = {"nvfp4", 64, 36, false},
    [LV_TYPE_Q1_0] = {"q1_0", 128, 18, false},
    [LV_TYPE_Q2_0] = {"q2_0", 64, 18, false},
};

const lv_type_traits *lv_type_get(uint32_t type) {
    if (type >= LV_TYPE_COUNT || g_traits[type].blck_size == 0) return NULL;
    return &g_traits[type];
}

const char *lv_type_name(uint32_t type) {
    const lv_type_traits *tt = lv_type_get(type);
    if (tt) return tt->name;
    static _Thread_local char buf[32];
    snprintf(buf, sizeof(buf), "unknown type %u", type);
    return buf;
}

int64_t lv_row_bytes(lv_type type, int64_t ne0) {
    const lv_type_traits *tt = lv_type_get(type);
    LV_ASSERT(tt && ne0 % tt->blck_size == 0);
    return ne0 / tt->blck_size * tt->type_size;
}

lv_type lv_vec_dot_type(lv_type t) {
    switch (t) {
    case LV_TYPE_F32: return LV_TYPE_F32;
    case LV_TYPE_F16: return LV_TYPE_F16;
    case LV_TYPE_BF16: return LV_TYPE_BF16;
    case LV_TYPE_Q8_0:
    case LV_TYPE_Q4_0: return LV_TYPE_Q8_0;
    default: return LV_TYPE_COUNT;
    }
}

/* -------------------------------------------------------------------------------------------
 * fp16 / bf16
 * ----------------------------------------------------------------------------------------- */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float lv_fp16_to_fp32_slow(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400) == 0);
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    return bits_f32(u);
}

uint16_t lv_fp32_to_fp16(float f) {
    /* round to nearest even, as the F16C instruction (vcvtps2ph, imm 0) and ggml's fallback */
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) { /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 | ((absx >> 13) & 0x3ff) : 0));
    }
    if (absx >= 0x477ff000u) { /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    }
    if (absx < 0x38800000u) { /* result is subnormal or zero */
        if (absx < 0x33000000u) return (uint16_t)sign; /* < 2^-25: rounds to zero */
        uint32_t man = (absx & 0x7fffff) | 0x800000;
        int shift = 113 - (int)(absx >> 23) + 13; /* 126 - exp + 13 - ... */
        uint32_t r = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = (absx - 0x38000000u) >> 13; /* rebias exponent 127 -> 15 */
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

uint16_t lv_fp32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 64); /* quiet nan */
    return (uint16_t)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

/* -------------------------------------------------------------------------------------------
 * quantization
 * ----------------------------------------------------------------------------------------- */

void lv_quantize_q8_0_ref(const float *x, lv_block_q8_0 *y, int64_t k) {
    LV_ASSERT(k % LV_QK8_0 == 0);
    for (int64_t i = 0; i < k / LV_QK8_0; i++) {
        float amax = 0.0f;
        for (int j = 0; j < LV_QK8_0; j++) amax = LV_MAX(amax, fabsf(x[i * LV_QK8_0 + j]));
        const float d = amax / 127.0f;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = lv_fp32_to_fp16(d);
        for (int j = 0; j < LV_QK8_0; j++) y[i].qs[j] = (int8_t)roundf(x[i * LV_QK8_0 + j] * id);
    }
}

void lv_quantize_q8_0_act(const float *x, lv_block_q8_0 *y, int64_t k) {
    LV_ASSERT(k % LV_QK8_0 == 0);
    for (int64_t i = 0; i < k / LV_QK8_0; i++) {
        float amax = 0.0f;
        for (int j = 0; j < LV_QK8_0; j++) amax = LV_MAX(amax, fabsf(x[i * LV_QK8_0 + j]));
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[i].d = lv_fp32_to_fp16(d);
        /* nearbyintf rounds half to even in the default rounding mode, like _mm256_round_ps */
        for (int j = 0; j < LV_QK8_0; j++) y[i].qs[j] = (int8_t)nearbyintf(x[i * LV_QK8_0 + j] * id);
    }
}

void lv_quantize_q4_0_ref(const float *x, lv_block_q4_0 *y, int64_t k) {
    LV_ASSERT(k % LV_QK4_0 == 0);
    for (int64_t i = 0; i < k / LV_QK4_0; i++) {
        const float *xb = x + i * LV_QK4_0;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < LV_QK4_0; j++) {
            if (amax < fabsf(xb[j])) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = lv_fp32_to_fp16(d);
        for (int j = 0; j < LV_QK4_0 / 2; j++) {
            const float x0 = xb[j] * id;
            const float x1 = xb[LV_QK4_0 / 2 + j] * id;
            const uint8_t q0 = (uint8_t)LV_MIN(15, (int8_t)(x0 + 8.5f));
            const uint8_t q1 = (uint8_t)LV_MIN(15, (int8_t)(x1 + 8.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

bool lv_from_float_row(lv_type t, const float *x, void *y, int64_t k) {
    switch (t) {
    case LV_TYPE_F32: memcpy(y, x, (size_t)k * sizeof(float)); return true;
    case LV_TYPE_F16: {
        uint16_t *h = y;
        for (int64_t i = 0; i < k; i++) h[i] = lv_fp32_to_fp16(x[i]);
        return true;
    }
    case LV_TYPE_BF16: {
        uint16_t *h = y;
        for (int64_t i = 0; i < k; i++) h[i] = lv_fp32_to_bf16(x[i]);
        return true;
    }
    case LV_TYPE_Q8_0: lv_quantize_q8_0_act(x, y, k); return true;
    case LV_TYPE_Q4_0: lv_quantize_q4_0_ref(x, y, k); return true;
    default: return false;
    }
}

bool lv_quantize_row_file(lv_type t, const float *x, void *y, int64_t k) {
    if (t == LV_TYPE_Q8_0) {
        lv_quantize_q8_0_ref(x, y, k);
        return true;
    }
    return lv_from_float_row(t, x, y, k);
}

bool lv_to_float_row(lv_type t, const void *x, float *y, int64_t k) {
    switch (t) {
    case LV_TYPE_F32: memcpy(y, x, (size_t)k * sizeof(float)); return true;
    case LV_TYPE_F16: {
        const uint16_t *h = x;
        for (int64_t i = 0; i < k; i++) y[i] = lv_fp16_to_fp32(h[i]);
        return true;
    }
    case LV_TYPE_BF16: {
        const uint16_t *h = x;
        for (int64_t i = 0; i < k; i++) y[i] = lv_bf16_to_fp32(h[i]);
        return true;
    }
    case LV_TYPE_Q8_0: {
        const lv_block_q8_0 *b = x;
        for (int64_t i = 0; i < k / LV_QK8_0; i++) {
            const float d = lv_fp16_to_fp32(b[i].d);
            for (int j = 0; j < LV_QK8_0; j++) y[i * LV_QK8_0 + j] = b[i].qs[j] * d;
        }
        return true;
    }
    case LV_TYPE_Q4_0: {
        const lv_block_q4_0 *b = x;
        for (int64_t i = 0; i < k / LV_QK4_0; i++) {
            const float d = lv_fp16_to_fp32(b[i].d);
            for (int j = 0; j < LV_QK4_0 / 2; j++) {
                y[i * LV_QK4_0 + j] = ((b[i].qs[j] & 0x0f) - 8) * d;
                y[i * LV_QK4_0 + j + LV_QK4_0 / 2] = ((b[i].qs[j] >> 4) - 8) * d;
            }
        }
        return true;
    }
    default: return false;
    }
}

/* -------------------------------------------------------------------------------------------
 * dot products
 * ----------------------------------------------------------------------------------------- */

/* Sum of products in double with 8 independent accumulators (so the loop is not one long
 * dependency chain), combined pairwise: deterministic, and more accurate than any float order. */
#define DOT_DOUBLE(CONV_A, CONV_B)                                                          \
    do {                                                                                    \
        double acc[8] = {0};                                                                \
        int64_t i = 0;                                                                      \
        for (; i + 8 <= k; i += 8)                                                          \
            for (int j = 0; j < 8; j++) acc[j] += (double)CONV_A(a[i + j]) * (double)CONV_B(b[i + j]); \
        for (; i < k; i++) acc[0] += (double)CONV_A(a[i]) * (double)CONV_B(b[i]);          \
        return (float)(((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))); \
    } while (0)
#define IDENT(x) (x)

float lv_vec_dot_ref(lv_type t, int64_t k, const void *w, const void *x) {
    switch (t) {
    case LV_TYPE_F32: {
        const float *a = w, *b = x;
        DOT_DOUBLE(IDENT, IDENT);
    }
    case LV_TYPE_F16: {
        const uint16_t *a = w, *b = x;
        DOT_DOUBLE(lv_fp16_to_fp32, lv_fp16_to_fp32);
    }
    case LV_TYPE_BF16: {
        const uint16_t *a = w, *b = x;
        DOT_DOUBLE(lv_bf16_to_fp32, lv_bf16_to_fp32);
    }
    case LV_TYPE_Q8_0: {
        const lv_block_q8_0 *a = w, *b = x;
        float s = 0;
        for (int64_t i = 0; i < k / LV_QK8_0; i++) {
            int32_t si = 0;
            for (int j = 0; j < LV_QK8_0; j++) si += a[i].qs[j] * b[i].qs[j];
            s += (float)si * (lv_fp16_to_fp32(a[i].d) * lv_fp16_to_fp32(b[i].d));
        }
        return s;
    }
    case LV_TYPE_Q4_0: {
        const lv_block_q4_0 *a = w;
        const lv_block_q8_0 *b = x;
        float s = 0;
        for (int64_t i = 0; i < k / LV_QK4_0; i++) {
            int32_t si = 0;
            for (int j = 0; j < LV_QK4_0 / 2; j++) {
                si += ((a[i].qs[j] & 0x0f) - 8) * b[i].qs[j];
                si += ((a[i].qs[j] >> 4) - 8) * b[i].qs[j + LV_QK4_0 / 2];
            }
            s += (float)si * (lv_fp16_to_fp32(a[i].d) * lv_fp16_to_fp32(b[i].d));
        }
        return s;
    }
    default: LV_ASSERT(!"lv_vec_dot_ref: type not computable"); return 0;
    }
}
