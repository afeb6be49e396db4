/*
 * quant.c: type traits and the scalar reference routines of quant.h.
 */
#include "gguf/quant.h"

#include "core/core.h"

#include <float.h>
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
    [LV_TYPE_Q4_1] = {"q4_1", 32, 20, true},
    [LV_TYPE_Q5_0] = {"q5_0", 32, 22, true},
    [LV_TYPE_Q5_1] = {"q5_1", 32, 24, true},
    [LV_TYPE_Q8_0] = {"q8_0", 32, 34, true},
    [LV_TYPE_Q8_1] = {"q8_1", 32, 36, false},
    [LV_TYPE_Q2_K] = {"q2_K", 256, 84, true},
    [LV_TYPE_Q3_K] = {"q3_K", 256, 110, true},
    [LV_TYPE_Q4_K] = {"q4_K", 256, 144, true},
    [LV_TYPE_Q5_K] = {"q5_K", 256, 176, true},
    [LV_TYPE_Q6_K] = {"q6_K", 256, 210, true},
    [LV_TYPE_Q8_K] = {"q8_K", 256, 292, false},
    [LV_TYPE_IQ2_XXS] = {"iq2_xxs", 256, 66, false},
    [LV_TYPE_IQ2_XS] = {"iq2_xs", 256, 74, false},
    [LV_TYPE_IQ3_XXS] = {"iq3_xxs", 256, 98, false},
    [LV_TYPE_IQ1_S] = {"iq1_s", 256, 50, false},
    [LV_TYPE_IQ4_NL] = {"iq4_nl", 32, 18, true},
    [LV_TYPE_IQ3_S] = {"iq3_s", 256, 110, false},
    [LV_TYPE_IQ2_S] = {"iq2_s", 256, 82, false},
    [LV_TYPE_IQ4_XS] = {"iq4_xs", 256, 136, true},
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
    case LV_TYPE_Q4_0:
    case LV_TYPE_Q5_0: return LV_TYPE_Q8_0;
    case LV_TYPE_Q4_1:
    case LV_TYPE_Q5_1: return LV_TYPE_Q8_1;
    case LV_TYPE_Q4_K:
    case LV_TYPE_Q5_K:
    case LV_TYPE_Q6_K:
    case LV_TYPE_Q2_K:
    case LV_TYPE_Q3_K:
    case LV_TYPE_IQ4_XS: return LV_TYPE_Q8_K;
    case LV_TYPE_IQ4_NL: return LV_TYPE_Q8_0;
    default: return LV_TYPE_COUNT;
    }
}

const int8_t lv_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

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
 * quantization: the 32-element types
 * ----------------------------------------------------------------------------------------- */

/* Round to nearest (ties to even) and saturate to int8 exactly as x86's cvtps2dq followed by
 * the signed-saturating packs do: NaN and |v| >= 2^31 ("integer indefinite") give -128. The SIMD
 * activation quantizers use those instructions, so this makes them bit-identical for every input. */
static inline int8_t round_sat_i8(float v) {
    const float r = nearbyintf(v);
    if (!(r >= -2147483648.0f && r < 2147483648.0f)) return -128;
    return (int8_t)(r > 127.0f ? 127 : r < -128.0f ? -128 : (int)r);
}

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
        for (int j = 0; j < LV_QK8_0; j++) y[i].qs[j] = round_sat_i8(x[i * LV_QK8_0 + j] * id);
    }
}

void lv_quantize_q8_1_act(const float *x, lv_block_q8_1 *y, int64_t k) {
    LV_ASSERT(k % LV_QK8_1 == 0);
    for (int64_t i = 0; i < k / LV_QK8_1; i++) {
        float amax = 0.0f;
        for (int j = 0; j < LV_QK8_1; j++) amax = LV_MAX(amax, fabsf(x[i * LV_QK8_1 + j]));
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[i].d = lv_fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < LV_QK8_1; j++) {
            y[i].qs[j] = round_sat_i8(x[i * LV_QK8_1 + j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = lv_fp32_to_fp16(d * (float)sum); /* as ggml's AVX2 quantize_row_q8_1 */
    }
}

/* The element of largest magnitude, with its sign: the first one on ties, 0 when all are 0 (or
 * NaN). The symmetric quantizers scale by it so that it lands on their outermost level. */
static inline float signed_absmax(const float *x, int64_t n) {
    float amax = 0.0f, max = 0.0f;
    for (int64_t i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    return max;
}

void lv_quantize_q4_0_ref(const float *x, lv_block_q4_0 *y, int64_t k) {
    LV_ASSERT(k % LV_QK4_0 == 0);
    for (int64_t i = 0; i < k / LV_QK4_0; i++) {
        const float *xb = x + i * LV_QK4_0;
        const float max = signed_absmax(xb, LV_QK4_0);
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

void lv_quantize_q4_1_ref(const float *x, lv_block_q4_1 *y, int64_t k) {
    LV_ASSERT(k % LV_QK4_1 == 0);
    for (int64_t i = 0; i < k / LV_QK4_1; i++) {
        const float *xb = x + i * LV_QK4_1;
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < LV_QK4_1; j++) {
            if (xb[j] < min) min = xb[j];
            if (xb[j] > max) max = xb[j];
        }
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = lv_fp32_to_fp16(d);
        y[i].m = lv_fp32_to_fp16(min);
        for (int j = 0; j < LV_QK4_1 / 2; j++) {
            const uint8_t q0 = (uint8_t)LV_MIN(15, (int8_t)((xb[j] - min) * id + 0.5f));
            const uint8_t q1 = (uint8_t)LV_MIN(15, (int8_t)((xb[LV_QK4_1 / 2 + j] - min) * id + 0.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void lv_quantize_q5_0_ref(const float *x, lv_block_q5_0 *y, int64_t k) {
    LV_ASSERT(k % LV_QK5_0 == 0);
    for (int64_t i = 0; i < k / LV_QK5_0; i++) {
        const float *xb = x + i * LV_QK5_0;
        const float max = signed_absmax(xb, LV_QK5_0);
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = lv_fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < LV_QK5_0 / 2; j++) {
            const uint8_t q0 = (uint8_t)LV_MIN(31, (int8_t)(xb[j] * id + 16.5f));
            const uint8_t q1 = (uint8_t)LV_MIN(31, (int8_t)(xb[LV_QK5_0 / 2 + j] * id + 16.5f));
            y[i].qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + LV_QK5_0 / 2);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

void lv_quantize_q5_1_ref(const float *x, lv_block_q5_1 *y, int64_t k) {
    LV_ASSERT(k % LV_QK5_1 == 0);
    for (int64_t i = 0; i < k / LV_QK5_1; i++) {
        const float *xb = x + i * LV_QK5_1;
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < LV_QK5_1; j++) {
            if (xb[j] < min) min = xb[j];
            if (xb[j] > max) max = xb[j];
        }
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = lv_fp32_to_fp16(d);
        y[i].m = lv_fp32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < LV_QK5_1 / 2; j++) {
            const uint8_t q0 = (uint8_t)((xb[j] - min) * id + 0.5f);
            const uint8_t q1 = (uint8_t)((xb[LV_QK5_1 / 2 + j] - min) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)((q0 >> 4) & 1) << j;
            qh |= (uint32_t)((q1 >> 4) & 1) << (j + LV_QK5_1 / 2);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

/* -------------------------------------------------------------------------------------------
 * quantization: the K types (super-blocks of 256)
 * ----------------------------------------------------------------------------------------- */

void lv_quantize_q8_K_act(const float *x, lv_block_q8_K *y, int64_t k) {
    LV_ASSERT(k % LV_QK_K == 0);
    for (int64_t i = 0; i < k / LV_QK_K; i++, x += LV_QK_K) {
        /* the element of largest magnitude (the first one on ties) sets the sign of the scale */
        const float max = signed_absmax(x, LV_QK_K), amax = fabsf(max);
        memset(y[i].bsums, 0, sizeof(y[i].bsums));
        if (amax == 0.0f) {
            y[i].d = 0.0f;
            memset(y[i].qs, 0, LV_QK_K);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < LV_QK_K; j++) y[i].qs[j] = round_sat_i8(iscale * x[j]);
        for (int j = 0; j < LV_QK_K; j++) y[i].bsums[j / 16] = (int16_t)(y[i].bsums[j / 16] + y[i].qs[j]);
        y[i].d = 1.0f / iscale;
    }
}

static inline int clamp_round(float v, int lo, int hi) {
    const float r = nearbyintf(v);
    return r < (float)lo ? lo : r > (float)hi ? hi : (int)r; /* NaN -> hi */
}

/* Fit x[0..n) by a * l + b with integers l in [0, nmax] and b <= 0, minimising the squared error:
 * for 21 trial step sizes around (max - min) / nmax, round to the grid, then solve the 2x2 least
 * squares for (a, b) (b clamped to 0: then a alone), the error from the sums in closed form.
 * Returns a, stores -b in *m and the levels of the best trial in L. */
static float fit_scale_min(const float *x, int n, int nmax, uint8_t *L, float *m) {
    float lo = x[0], hi = x[0], sx = 0, sx2 = 0;
    for (int i = 0; i < n; i++) {
        lo = LV_MIN(lo, x[i]);
        hi = LV_MAX(hi, x[i]);
        sx += x[i];
        sx2 += x[i] * x[i];
    }
    if (lo > 0) lo = 0;
    memset(L, 0, (size_t)n);
    if (!(hi > lo)) {
        *m = -lo;
        return 0.0f;
    }
    double best_err = INFINITY;
    float best_a = (hi - lo) / (float)nmax, best_b = lo, best_iscale = (float)nmax / (hi - lo);
    for (int is = -10; is <= 10; is++) {
        const float iscale = ((float)nmax + 0.1f * (float)is) / (hi - lo);
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            const float l = fminf(fmaxf(nearbyintf(iscale * (x[i] - lo)), 0.0f), (float)nmax);
            sl += l;
            sl2 += l * l;
            sxl += x[i] * l;
        }
        const double D = (double)n * sl2 - (double)sl * sl;
        if (!(D > 0)) continue;
        double a = ((double)n * sxl - (double)sl * sx) / D, b = ((double)sl2 * sx - (double)sl * sxl) / D;
        if (b > 0) {
            b = 0;
            a = sxl / (double)sl2;
        }
        if (!(a > 0)) continue;
        /* sum (a l + b - x)^2 expanded */
        const double err = a * a * sl2 + 2 * a * b * sl + n * b * b - 2 * a * sxl - 2 * b * sx + sx2;
        if (err < best_err) {
            best_err = err;
            best_a = (float)a;
            best_b = (float)b;
            best_iscale = iscale;
        }
    }
    for (int i = 0; i < n; i++) L[i] = (uint8_t)clamp_round(best_iscale * (x[i] - lo), 0, nmax);
    *m = -best_b;
    return best_a;
}

/* q4_K and q5_K: per sub-block (scale, min) fits, quantized to 6 bits against the super-block's
 * largest scale and min, then every element re-rounded with the scale and min it will be read with. */
static void quantize_k_scale_min(const float *x, int nmax, uint16_t *d_out, uint16_t *dmin_out, uint8_t *scales, uint8_t *L) {
    float sc[8], mn[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        sc[j] = fit_scale_min(x + 32 * j, 32, nmax, L + 32 * j, &mn[j]);
        max_scale = LV_MAX(max_scale, sc[j]);
        max_min = LV_MAX(max_min, mn[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    memset(scales, 0, LV_K_SCALE_SIZE);
    for (int j = 0; j < 8; j++) {
        const uint8_t ls = (uint8_t)clamp_round(inv_scale * sc[j], 0, 63);
        const uint8_t lm = (uint8_t)clamp_round(inv_min * mn[j], 0, 63);
        if (j < 4) {
            scales[j] = ls;
            scales[j + 4] = lm;
        } else {
            scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d_out = lv_fp32_to_fp16(max_scale / 63.0f);
    *dmin_out = lv_fp32_to_fp16(max_min / 63.0f);
    const float d = lv_fp16_to_fp32(*d_out), dmin = lv_fp16_to_fp32(*dmin_out);
    for (int j = 0; j < 8; j++) {
        uint8_t ls, lm;
        lv_get_scale_min_k4(j, scales, &ls, &lm);
        const float dd = d * ls, dm = dmin * lm;
        for (int i = 0; i < 32; i++) L[32 * j + i] = dd != 0.0f ? (uint8_t)clamp_round((x[32 * j + i] + dm) / dd, 0, nmax) : 0;
    }
}

void lv_quantize_q4_K_file(const float *x, lv_block_q4_K *y, int64_t k) {
    LV_ASSERT(k % LV_QK_K == 0);
    uint8_t L[LV_QK_K];
    for (int64_t i = 0; i < k / LV_QK_K; i++, x += LV_QK_K) {
        quantize_k_scale_min(x, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        for (int p = 0; p < 4; p++)
            for (int l = 0; l < 32; l++) y[i].qs[32 * p + l] = (uint8_t)(L[64 * p + l] | (L[64 * p + 32 + l] << 4));
    }
}

void lv_quantize_q5_K_file(const float *x, lv_block_q5_K *y, int64_t k) {
    LV_ASSERT(k % LV_QK_K == 0);
    uint8_t L[LV_QK_K];
    for (int64_t i = 0; i < k / LV_QK_K; i++, x += LV_QK_K) {
        quantize_k_scale_min(x, 31, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, sizeof(y[i].qh));
        for (int p = 0; p < 4; p++)
            for (int l = 0; l < 32; l++) {
                const uint8_t a = L[64 * p + l], b = L[64 * p + 32 + l];
                y[i].qs[32 * p + l] = (uint8_t)((a & 15) | ((b & 15) << 4));
                y[i].qh[l] |= (uint8_t)(((a >> 4) << (2 * p)) | ((b >> 4) << (2 * p + 1)));
            }
    }
}

/* q6_K: per 16-element sub-block a symmetric scale (21 trial steps, each refined by least
 * squares), the scales quantized to int8 against the one of largest magnitude (which maps to
 * -128, as the levels' range is -32..31), then every element re-rounded. */
void lv_quantize_q6_K_file(const float *x, lv_block_q6_K *y, int64_t k) {
    LV_ASSERT(k % LV_QK_K == 0);
    int8_t L[LV_QK_K];
    for (int64_t i = 0; i < k / LV_QK_K; i++, x += LV_QK_K) {
        float sc[16], max_scale = 0, max_abs_scale = 0;
        for (int j = 0; j < 16; j++) {
            const float *xb = x + 16 * j;
            const float max = signed_absmax(xb, 16), amax = fabsf(max);
            sc[j] = 0;
            if (amax < 1e-30f) continue;
            double best = -1;
            for (int is = -10; is <= 10; is++) {
                const float iscale = -(32.0f + 0.1f * (float)is) / max;
                float sxl = 0, sl2 = 0;
                for (int l = 0; l < 16; l++) {
                    const float q = fminf(fmaxf(nearbyintf(iscale * xb[l]), -32.0f), 31.0f);
                    sxl += xb[l] * q;
                    sl2 += q * q;
                }
                /* the least-squares scale sxl/sl2 leaves an error of sum(x^2) - sxl^2/sl2 */
                if (sl2 > 0 && (double)sxl * sxl / sl2 > best) {
                    best = (double)sxl * sxl / sl2;
                    sc[j] = sxl / sl2;
                }
            }
            if (fabsf(sc[j]) > max_abs_scale) {
                max_abs_scale = fabsf(sc[j]);
                max_scale = sc[j];
            }
        }
        memset(&y[i], 0, sizeof(y[i]));
        if (max_abs_scale < 1e-30f) continue; /* all zero: d = 0 */
        const float iscale = -128.0f / max_scale;
        y[i].d = lv_fp32_to_fp16(1.0f / iscale);
        const float d = lv_fp16_to_fp32(y[i].d);
        for (int j = 0; j < 16; j++) {
            y[i].scales[j] = (int8_t)clamp_round(iscale * sc[j], -128, 127);
            const float dd = d * y[i].scales[j];
            for (int l = 0; l < 16; l++) L[16 * j + l] = (int8_t)(dd != 0.0f ? clamp_round(x[16 * j + l] / dd, -32, 31) + 32 : 32);
        }
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            const int8_t *Lh = L + 128 * h;
            for (int l = 0; l < 32; l++) {
                const int q0 = Lh[l], q1 = Lh[l + 32], q2 = Lh[l + 64], q3 = Lh[l + 96];
                ql[l] = (uint8_t)((q0 & 15) | ((q2 & 15) << 4));
                ql[l + 32] = (uint8_t)((q1 & 15) | ((q3 & 15) << 4));
                qh[l] = (uint8_t)((q0 >> 4) | ((q1 >> 4) << 2) | ((q2 >> 4) << 4) | ((q3 >> 4) << 6));
            }
        }
    }
}

/* -------------------------------------------------------------------------------------------
 * row conversions
 * ----------------------------------------------------------------------------------------- */

/* iq4: the index of the level nearest to v (levels ascending) */
static int iq4_nearest(float v) {
    int best = 0;
    float bd = fabsf(v - lv_kvalues_iq4nl[0]);
    for (int i = 1; i < 16; i++) {
        const float d = fabsf(v - lv_kvalues_iq4nl[i]);
        if (d < bd) {
            bd = d;
            best = i;
        }
    }
    return best;
}

/* 32 values with scale d into iq4 indices (q4_0's nibble order); returns the squared error */
static float iq4_indices(const float *x, float d, uint8_t *qs) {
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    float err = 0;
    for (int j = 0; j < 16; j++) {
        const int a = iq4_nearest(x[j] * id), b = iq4_nearest(x[j + 16] * id);
        qs[j] = (uint8_t)(a | (b << 4));
        const float ea = x[j] - d * lv_kvalues_iq4nl[a], eb = x[j + 16] - d * lv_kvalues_iq4nl[b];
        err += ea * ea + eb * eb;
    }
    return err;
}

/* iq4_nl file quantizer: per block, the scale that maps the largest-magnitude element onto the
 * outermost level (-127), or onto +113, whichever leaves the smaller squared error (a simpler
 * search than llama-quantize's; any scale gives a valid file). */
static void quantize_iq4_nl(const float *x, lv_block_iq4_nl *y, int64_t k) {
    for (int64_t i = 0; i < k / 32; i++) {
        const float *b = x + i * 32;
        const float max = signed_absmax(b, 32);
        uint8_t q1[16], q2[16];
        const float d1 = lv_fp16_to_fp32(lv_fp32_to_fp16(max / -127.0f)), d2 = lv_fp16_to_fp32(lv_fp32_to_fp16(max / 113.0f));
        const float e1 = iq4_indices(b, d1, q1), e2 = iq4_indices(b, d2, q2);
        const bool second = e2 < e1;
        y[i].d = lv_fp32_to_fp16(second ? d2 : d1);
        memcpy(y[i].qs, second ? q2 : q1, 16);
    }
}

/* iq4_xs file quantizer: each sub-block's iq4_nl scale, then one super-block scale d with
 * 6-bit sub-scales ls_j - 32 in [-32, 31] nearest to scale_j / d, then the indices again at the
 * scale d * (ls_j - 32) actually stored. */
static void quantize_iq4_xs(const float *x, lv_block_iq4_xs *y, int64_t k) {
    for (int64_t i = 0; i < k / LV_QK_K; i++) {
        const float *b = x + i * LV_QK_K;
        float sc[8], amax = 0;
        for (int j = 0; j < 8; j++) {
            sc[j] = signed_absmax(b + 32 * j, 32) / -127.0f;
            amax = fmaxf(amax, fabsf(sc[j]));
        }
        const float d = lv_fp16_to_fp32(lv_fp32_to_fp16(amax / 31.0f));
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        memset(&y[i], 0, sizeof(y[i]));
        y[i].d = lv_fp32_to_fp16(d);
        for (int j = 0; j < 8; j++) {
            int ls = (int)lrintf(sc[j] * id);
            ls = ls < -32 ? -32 : ls > 31 ? 31 : ls;
            const int u = ls + 32;
            y[i].scales_l[j / 2] |= (uint8_t)((u & 0xf) << (4 * (j & 1)));
            y[i].scales_h |= (uint16_t)((u >> 4) << (2 * j));
            iq4_indices(b + 32 * j, d * (float)ls, y[i].qs + 16 * j);
        }
    }
}

/* q2_K file quantizer: per 16-element sub-block the range [min(0, lo), hi] in 3 steps, then the
 * scales and minima quantized to 4 bits against the super-block's largest (d, dmin), and every
 * element re-rounded at the scale and minimum actually stored. */
static void quantize_q2_K(const float *x, lv_block_q2_K *y, int64_t k) {
    for (int64_t i = 0; i < k / LV_QK_K; i++) {
        const float *b = x + i * LV_QK_K;
        float sc[16], mn[16], msc = 0, mmn = 0;
        for (int j = 0; j < 16; j++) {
            float lo = 0, hi = -INFINITY;
            for (int l = 0; l < 16; l++) {
                lo = fminf(lo, b[16 * j + l]);
                hi = fmaxf(hi, b[16 * j + l]);
            }
            sc[j] = (hi - lo) / 3.0f;
            mn[j] = -lo;
            msc = fmaxf(msc, sc[j]);
            mmn = fmaxf(mmn, mn[j]);
        }
        const float d = lv_fp16_to_fp32(lv_fp32_to_fp16(msc / 15.0f)), dmin = lv_fp16_to_fp32(lv_fp32_to_fp16(mmn / 15.0f));
        memset(&y[i], 0, sizeof(y[i]));
        y[i].d = lv_fp32_to_fp16(d);
        y[i].dmin = lv_fp32_to_fp16(dmin);
        for (int j = 0; j < 16; j++) {
            const int qs = d > 0 ? (int)LV_MIN(15, lrintf(sc[j] / d)) : 0, qm = dmin > 0 ? (int)LV_MIN(15, lrintf(mn[j] / dmin)) : 0;
            y[i].scales[j] = (uint8_t)(qs | (qm << 4));
            const float dl = d * (float)qs, ml = dmin * (float)qm;
            for (int l = 0; l < 16; l++) {
                const int e = 16 * j + l;
                int q = dl > 0 ? (int)lrintf((b[e] + ml) / dl) : 0;
                q = q < 0 ? 0 : q > 3 ? 3 : q;
                y[i].qs[32 * (e / 128) + e % 32] |= (uint8_t)(q << (2 * ((e % 128) / 32)));
            }
        }
    }
}

/* q3_K file quantizer: per 16-element sub-block the scale that maps its largest-magnitude element
 * to -4, the scales quantized to 6 bits (-32..31) against the largest, every element re-rounded
 * at the stored scale. */
static void quantize_q3_K(const float *x, lv_block_q3_K *y, int64_t k) {
    for (int64_t i = 0; i < k / LV_QK_K; i++) {
        const float *b = x + i * LV_QK_K;
        float sc[16], amax = 0;
        for (int j = 0; j < 16; j++) {
            sc[j] = signed_absmax(b + 16 * j, 16) / -4.0f;
            amax = fmaxf(amax, fabsf(sc[j]));
        }
        const float d = lv_fp16_to_fp32(lv_fp32_to_fp16(amax / 31.0f));
        memset(&y[i], 0, sizeof(y[i]));
        y[i].d = lv_fp32_to_fp16(d);
        for (int j = 0; j < 16; j++) {
            int ls = d > 0 ? (int)lrintf(sc[j] / d) : 0;
            ls = ls < -32 ? -32 : ls > 31 ? 31 : ls;
            const int u = ls + 32;
            if (j < 8) y[i].scales[j] |= (uint8_t)(u & 0xf);
            else y[i].scales[j - 8] |= (uint8_t)((u & 0xf) << 4);
            y[i].scales[8 + (j & 3)] |= (uint8_t)((u >> 4) << (2 * (j >> 2)));
            const float dl = d * (float)ls;
            for (int l = 0; l < 16; l++) {
                const int e = 16 * j + l, h = e / 128, g = (e % 128) / 32, l32 = e % 32;
                int q = dl != 0 ? (int)lrintf(b[e] / dl) : 0;
                q = q < -4 ? -4 : q > 3 ? 3 : q;
                const int uq = q + 4;
                y[i].qs[32 * h + l32] |= (uint8_t)((uq & 3) << (2 * g));
                if (uq >> 2) y[i].hmask[l32] |= (uint8_t)(1 << (4 * h + g));
            }
        }
    }
}

static inline int q3_K_level(const lv_block_q3_K *b, int e) {
    const int h = e / 128, g = (e % 128) / 32, l = e % 32;
    return ((b->qs[32 * h + l] >> (2 * g)) & 3) - ((b->hmask[l] >> (4 * h + g)) & 1 ? 0 : 4);
}

static inline int iq4_xs_scale(const lv_block_iq4_xs *b, int j) {
    return (((b->scales_l[j / 2] >> (4 * (j & 1))) & 0xf) | (((b->scales_h >> (2 * j)) & 3) << 4)) - 32;
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
    case LV_TYPE_Q8_1: lv_quantize_q8_1_act(x, y, k); return true;
    case LV_TYPE_Q8_K: lv_quantize_q8_K_act(x, y, k); return true;
    case LV_TYPE_Q4_0: lv_quantize_q4_0_ref(x, y, k); return true;
    case LV_TYPE_Q4_1: lv_quantize_q4_1_ref(x, y, k); return true;
    case LV_TYPE_Q5_0: lv_quantize_q5_0_ref(x, y, k); return true;
    case LV_TYPE_Q5_1: lv_quantize_q5_1_ref(x, y, k); return true;
    case LV_TYPE_Q4_K: lv_quantize_q4_K_file(x, y, k); return true;
    case LV_TYPE_Q5_K: lv_quantize_q5_K_file(x, y, k); return true;
    case LV_TYPE_Q6_K: lv_quantize_q6_K_file(x, y, k); return true;
    case LV_TYPE_Q2_K: quantize_q2_K(x, y, k); return true;
    case LV_TYPE_Q3_K: quantize_q3_K(x, y, k); return true;
    case LV_TYPE_IQ4_NL: quantize_iq4_nl(x, y, k); return true;
    case LV_TYPE_IQ4_XS: quantize_iq4_xs(x, y, k); return true;
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
    case LV_TYPE_Q8_1: {
        const lv_block_q8_1 *b = x;
        for (int64_t i = 0; i < k / LV_QK8_1; i++) {
            const float d = lv_fp16_to_fp32(b[i].d);
            for (int j = 0; j < LV_QK8_1; j++) y[i * LV_QK8_1 + j] = b[i].qs[j] * d;
        }
        return true;
    }
    case LV_TYPE_Q8_K: {
        const lv_block_q8_K *b = x;
        for (int64_t i = 0; i < k / LV_QK_K; i++)
            for (int j = 0; j < LV_QK_K; j++) y[i * LV_QK_K + j] = b[i].d * b[i].qs[j];
        return true;
    }
    case LV_TYPE_Q2_K: {
        const lv_block_q2_K *b = x;
        for (int64_t i = 0; i < k / LV_QK_K; i++) {
            const float d = lv_fp16_to_fp32(b[i].d), dmin = lv_fp16_to_fp32(b[i].dmin);
            for (int e = 0; e < LV_QK_K; e++) {
                const uint8_t sc = b[i].scales[e / 16];
                const int q = (b[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
                y[i * LV_QK_K + e] = d * (float)(sc & 0xf) * (float)q - dmin * (float)(sc >> 4);
            }
        }
        return true;
    }
    case LV_TYPE_Q3_K: {
        const lv_block_q3_K *b = x;
        for (int64_t i = 0; i < k / LV_QK_K; i++) {
            const float d = lv_fp16_to_fp32(b[i].d);
            for (int e = 0; e < LV_QK_K; e++)
                y[i * LV_QK_K + e] = d * (float)lv_q3_K_scale(b[i].scales, e / 16) * (float)q3_K_level(&b[i], e);
        }
        return true;
    }
    case LV_TYPE_IQ4_NL: {
        const lv_block_iq4_nl *b = x;
        for (int64_t i = 0; i < k / 32; i++) {
            const float d = lv_fp16_to_fp32(b[i].d);
            for (int j = 0; j < 16; j++) {
                y[i * 32 + j] = d * lv_kvalues_iq4nl[b[i].qs[j] & 0xf];
                y[i * 32 + j + 16] = d * lv_kvalues_iq4nl[b[i].qs[j] >> 4];
            }
        }
        return true;
    }
    case LV_TYPE_IQ4_XS: {
        const lv_block_iq4_xs *b = x;
        for (int64_t i = 0; i < k / LV_QK_K; i++) {
            const float d = lv_fp16_to_fp32(b[i].d);
            for (int j = 0; j < 8; j++) {
                const float dl = d * (float)iq4_xs_scale(&b[i], j);
                for (int l = 0; l < 16; l++) {
                    y[i * LV_QK_K + 32 * j + l] = dl * lv_kvalues_iq4nl[b[i].qs[16 * j + l] & 0xf];
                    y[i * LV_QK_K + 32 * j + l + 16] = dl * lv_kvalues_iq4nl[b[i].qs[16 * j + l] >> 4];
                }
            }
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
    case LV_TYPE_Q4_1: {
        const lv_block_q4_1 *b = x;
        for (int64_t i = 0; i < k / LV_QK4_1; i++) {
            const float d = lv_fp16_to_fp32(b[i].d), m = lv_fp16_to_fp32(b[i].m);
            for (int j = 0; j < LV_QK4_1 / 2; j++) {
                y[i * LV_QK4_1 + j] = (b[i].qs[j] & 0x0f) * d + m;
                y[i * LV_QK4_1 + j + LV_QK4_1 / 2] = (b[i].qs[j] >> 4) * d + m;
            }
        }
        return true;
    }
    case LV_TYPE_Q5_0: {
        const lv_block_q5_0 *b = x;
        for (int64_t i = 0; i < k / LV_QK5_0; i++) {
            const float d = lv_fp16_to_fp32(b[i].d);
            uint32_t qh;
            memcpy(&qh, b[i].qh, 4);
            for (int j = 0; j < LV_QK5_0 / 2; j++) {
                const int q0 = (int)((b[i].qs[j] & 0x0f) | (((qh >> j) & 1) << 4));
                const int q1 = (int)((b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
                y[i * LV_QK5_0 + j] = (q0 - 16) * d;
                y[i * LV_QK5_0 + j + LV_QK5_0 / 2] = (q1 - 16) * d;
            }
        }
        return true;
    }
    case LV_TYPE_Q5_1: {
        const lv_block_q5_1 *b = x;
        for (int64_t i = 0; i < k / LV_QK5_1; i++) {
            const float d = lv_fp16_to_fp32(b[i].d), m = lv_fp16_to_fp32(b[i].m);
            uint32_t qh;
            memcpy(&qh, b[i].qh, 4);
            for (int j = 0; j < LV_QK5_1 / 2; j++) {
                const int q0 = (int)((b[i].qs[j] & 0x0f) | (((qh >> j) & 1) << 4));
                const int q1 = (int)((b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
                y[i * LV_QK5_1 + j] = q0 * d + m;
                y[i * LV_QK5_1 + j + LV_QK5_1 / 2] = q1 * d + m;
            }
        }
        return true;
    }
    case LV_TYPE_Q4_K: {
        const lv_block_q4_K *b = x;
        for (int64_t i = 0; i < k / LV_QK_K; i++) {
            const float d = lv_fp16_to_fp32(b[i].d), dmin = lv_fp16_to_fp32(b[i].dmin);
            for (int j = 0; j < 8; j++) {
                uint8_t sc, m;
                lv_get_scale_min_k4(j, b[i].scales, &sc, &m);
                const float d1 = d * sc, m1 = dmin * m;
                const uint8_t *q = b[i].qs + 32 * (j / 2);
                for (int l = 0; l < 32; l++) *y++ = d1 * ((j & 1) ? q[l] >> 4 : q[l] & 0xF) - m1;
            }
        }
        return true;
    }
    case LV_TYPE_Q5_K: {
        const lv_block_q5_K *b = x;
        for (int64_t i = 0; i < k / LV_QK_K; i++) {
            const float d = lv_fp16_to_fp32(b[i].d), dmin = lv_fp16_to_fp32(b[i].dmin);
            for (int j = 0; j < 8; j++) {
                uint8_t sc, m;
                lv_get_scale_min_k4(j, b[i].scales, &sc, &m);
                const float d1 = d * sc, m1 = dmin * m;
                const uint8_t *q = b[i].qs + 32 * (j / 2);
                for (int l = 0; l < 32; l++) {
                    const int v = ((j & 1) ? q[l] >> 4 : q[l] & 0xF) | (((b[i].qh[l] >> j) & 1) << 4);
                    *y++ = d1 * v - m1;
                }
            }
        }
        return true;
    }
    case LV_TYPE_Q6_K: {
        const lv_block_q6_K *b = x;
        for (int64_t i = 0; i < k / LV_QK_K; i++) {
            const float d = lv_fp16_to_fp32(b[i].d);
            for (int e = 0; e < LV_QK_K; e++) {
                const int h = e / 128, quarter = (e % 128) / 32, l = e % 32;
                const uint8_t ql = b[i].ql[64 * h + l + 32 * (quarter & 1)];
                const int lo = quarter < 2 ? ql & 0xF : ql >> 4;
                const int hi = (b[i].qh[32 * h + l] >> (2 * quarter)) & 3;
                *y++ = d * b[i].scales[e / 16] * ((lo | (hi << 4)) - 32);
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

/* The levels of one weight block as plain integers (element order), then integer dot products
 * over them: exact, and simple loops the compiler vectorizes (the golden test runs the scalar
 * level too). */
static inline void levels_q4(const uint8_t *qs, int off, int8_t *q) {
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)((qs[j] & 0x0f) - off);
        q[j + 16] = (int8_t)((qs[j] >> 4) - off);
    }
}
static inline void levels_q5(const uint8_t *qs, const uint8_t *qh4, int off, int8_t *q) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(((qs[j] & 0x0f) | (((qh >> j) & 1) << 4)) - off);
        q[j + 16] = (int8_t)(((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - off);
    }
}
/* q4_K / q5_K: element 32j + l of sub-block j (qh: NULL for q4_K) */
static inline void levels_k4(const uint8_t *qs, const uint8_t *qh, int8_t *q) {
    for (int j = 0; j < 8; j++)
        for (int l = 0; l < 32; l++) {
            const uint8_t b = qs[32 * (j / 2) + l];
            q[32 * j + l] = (int8_t)(((j & 1) ? b >> 4 : b & 0xF) | (qh ? ((qh[l] >> j) & 1) << 4 : 0));
        }
}
/* q6_K: element 128h + 32g + l, minus 32 */
static inline void levels_k6(const uint8_t *ql, const uint8_t *qh, int8_t *q) {
    for (int h = 0; h < 2; h++)
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) {
                const uint8_t b = ql[64 * h + l + 32 * (g & 1)];
                const int lo = g < 2 ? b & 0xF : b >> 4, hi = (qh[32 * h + l] >> (2 * g)) & 3;
                q[128 * h + 32 * g + l] = (int8_t)((lo | (hi << 4)) - 32);
            }
}
/* iq4_nl / one iq4_xs sub-block: the levels of 32 indices */
static inline void levels_iq4(const uint8_t *qs, int8_t *q) {
    for (int j = 0; j < 16; j++) {
        q[j] = lv_kvalues_iq4nl[qs[j] & 0x0f];
        q[j + 16] = lv_kvalues_iq4nl[qs[j] >> 4];
    }
}
static inline int32_t dot_i8(const int8_t *a, const int8_t *b, int n) {
    int32_t s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

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
        int8_t q[32];
        for (int64_t i = 0; i < k / LV_QK4_0; i++) {
            levels_q4(a[i].qs, 8, q);
            s += (float)dot_i8(q, b[i].qs, 32) * (lv_fp16_to_fp32(a[i].d) * lv_fp16_to_fp32(b[i].d));
        }
        return s;
    }
    case LV_TYPE_Q5_0: {
        const lv_block_q5_0 *a = w;
        const lv_block_q8_0 *b = x;
        float s = 0;
        int8_t q[32];
        for (int64_t i = 0; i < k / LV_QK5_0; i++) {
            levels_q5(a[i].qs, a[i].qh, 16, q);
            s += (float)dot_i8(q, b[i].qs, 32) * (lv_fp16_to_fp32(a[i].d) * lv_fp16_to_fp32(b[i].d));
        }
        return s;
    }
    case LV_TYPE_Q4_1: {
        const lv_block_q4_1 *a = w;
        const lv_block_q8_1 *b = x;
        float s = 0;
        int8_t q[32];
        for (int64_t i = 0; i < k / LV_QK4_1; i++) {
            levels_q4(a[i].qs, 0, q);
            s += (lv_fp16_to_fp32(a[i].d) * lv_fp16_to_fp32(b[i].d)) * (float)dot_i8(q, b[i].qs, 32) + lv_fp16_to_fp32(a[i].m) * lv_fp16_to_fp32(b[i].s);
        }
        return s;
    }
    case LV_TYPE_Q5_1: {
        const lv_block_q5_1 *a = w;
        const lv_block_q8_1 *b = x;
        float s = 0;
        int8_t q[32];
        for (int64_t i = 0; i < k / LV_QK5_1; i++) {
            levels_q5(a[i].qs, a[i].qh, 0, q);
            s += (lv_fp16_to_fp32(a[i].d) * lv_fp16_to_fp32(b[i].d)) * (float)dot_i8(q, b[i].qs, 32) + lv_fp16_to_fp32(a[i].m) * lv_fp16_to_fp32(b[i].s);
        }
        return s;
    }
    case LV_TYPE_Q4_K:
    case LV_TYPE_Q5_K: {
        const lv_block_q8_K *b = x;
        const size_t bs = t == LV_TYPE_Q4_K ? sizeof(lv_block_q4_K) : sizeof(lv_block_q5_K);
        float s = 0;
        int8_t q[LV_QK_K];
        for (int64_t i = 0; i < k / LV_QK_K; i++) {
            const uint8_t *blk = (const uint8_t *)w + (size_t)i * bs;
            uint16_t dh, dminh;
            const uint8_t *scales;
            if (t == LV_TYPE_Q4_K) {
                const lv_block_q4_K *a = (const lv_block_q4_K *)blk;
                dh = a->d, dminh = a->dmin, scales = a->scales;
                levels_k4(a->qs, NULL, q);
            } else {
                const lv_block_q5_K *a = (const lv_block_q5_K *)blk;
                dh = a->d, dminh = a->dmin, scales = a->scales;
                levels_k4(a->qs, a->qh, q);
            }
            int32_t isum = 0, msum = 0;
            for (int j = 0; j < 8; j++) {
                uint8_t sc, m;
                lv_get_scale_min_k4(j, scales, &sc, &m);
                isum += sc * dot_i8(q + 32 * j, b[i].qs + 32 * j, 32);
                msum += m * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
            }
            const float d = lv_fp16_to_fp32(dh) * b[i].d, dmin = lv_fp16_to_fp32(dminh) * b[i].d;
            s += d * (float)isum - dmin * (float)msum;
        }
        return s;
    }
    case LV_TYPE_Q6_K: {
        const lv_block_q6_K *a = w;
        const lv_block_q8_K *b = x;
        float s = 0;
        int8_t q[LV_QK_K];
        for (int64_t i = 0; i < k / LV_QK_K; i++) {
            levels_k6(a[i].ql, a[i].qh, q);
            int32_t isum = 0;
            for (int j = 0; j < 16; j++) isum += a[i].scales[j] * dot_i8(q + 16 * j, b[i].qs + 16 * j, 16);
            s += (lv_fp16_to_fp32(a[i].d) * b[i].d) * (float)isum;
        }
        return s;
    }
    case LV_TYPE_Q2_K: {
        const lv_block_q2_K *a = w;
        const lv_block_q8_K *b = x;
        float s = 0;
        for (int64_t i = 0; i < k / LV_QK_K; i++) {
            int32_t isum = 0, msum = 0;
            for (int j = 0; j < 16; j++) {
                int32_t si = 0;
                for (int l = 0; l < 16; l++) {
                    const int e = 16 * j + l;
                    si += b[i].qs[e] * ((a[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3);
                }
                isum += (a[i].scales[j] & 0xf) * si;
                msum += (a[i].scales[j] >> 4) * b[i].bsums[j];
            }
            const float d = lv_fp16_to_fp32(a[i].d) * b[i].d, dmin = lv_fp16_to_fp32(a[i].dmin) * b[i].d;
            s += d * (float)isum - dmin * (float)msum;
        }
        return s;
    }
    case LV_TYPE_Q3_K: {
        const lv_block_q3_K *a = w;
        const lv_block_q8_K *b = x;
        float s = 0;
        for (int64_t i = 0; i < k / LV_QK_K; i++) {
            int32_t isum = 0;
            for (int j = 0; j < 16; j++) {
                int32_t si = 0;
                for (int l = 0; l < 16; l++) si += b[i].qs[16 * j + l] * q3_K_level(&a[i], 16 * j + l);
                isum += lv_q3_K_scale(a[i].scales, j) * si;
            }
            s += (lv_fp16_to_fp32(a[i].d) * b[i].d) * (float)isum;
        }
        return s;
    }
    case LV_TYPE_IQ4_NL: {
        const lv_block_iq4_nl *a = w;
        const lv_block_q8_0 *b = x;
        float s = 0;
        int8_t q[32];
        for (int64_t i = 0; i < k / 32; i++) {
            levels_iq4(a[i].qs, q);
            s += (float)dot_i8(q, b[i].qs, 32) * (lv_fp16_to_fp32(a[i].d) * lv_fp16_to_fp32(b[i].d));
        }
        return s;
    }
    case LV_TYPE_IQ4_XS: {
        const lv_block_iq4_xs *a = w;
        const lv_block_q8_K *b = x;
        float s = 0;
        int8_t q[32];
        for (int64_t i = 0; i < k / LV_QK_K; i++) {
            int32_t isum = 0;
            for (int j = 0; j < 8; j++) {
                levels_iq4(a[i].qs + 16 * j, q);
                isum += iq4_xs_scale(&a[i], j) * dot_i8(q, b[i].qs + 32 * j, 32);
            }
            s += (lv_fp16_to_fp32(a[i].d) * b[i].d) * (float)isum;
        }
        return s;
    }
    default: LV_ASSERT(!"lv_vec_dot_ref: type not computable"); return 0;
    }
}
