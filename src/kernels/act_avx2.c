/*
 * act_avx2.c: the AVX2 + F16C level of the table activations (GELU, QuickGELU, GeGLU): each
 * input rounded to f16 by vcvtps2ph (round to nearest even, what lv_fp32_to_fp16 computes bit for
 * bit), its entry gathered from the 65536-entry table, the clamps of ggml's GELU applied with
 * masks. The results equal the scalar loops of kernels.c exactly (tests/kernels/test_kernels.c).
 */
#include "kernels/kernels.h"

/* one element, as the scalar loops of kernels.c compute it */
static inline float act_one(const float *table, bool clamp, float v, const float *up, int64_t i) {
    const float r = clamp && v >= 10.0f ? v : table[lv_fp32_to_fp16(v)];
    return clamp && v <= -10.0f ? 0.0f : up ? r * up[i] : r;
}

#if defined(__AVX2__) && defined(__F16C__)

#include <immintrin.h>

static inline __m256 lookup8(const float *table, __m256 v) {
    const __m256i idx = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return _mm256_i32gather_ps(table, idx, 4);
}

void lv_act_table_avx2(const float *table, bool clamp, const float *x, const float *up, float *y, int64_t n) {
    const __m256 lo = _mm256_set1_ps(-10.0f), hi = _mm256_set1_ps(10.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        __m256 r = lookup8(table, v);
        /* x >= 10: x; x <= -10: +0 (not times up, as the scalar loop); NaN compares false: the table's entry */
        if (clamp) r = _mm256_blendv_ps(r, v, _mm256_cmp_ps(v, hi, _CMP_GE_OQ));
        if (up) r = _mm256_mul_ps(r, _mm256_loadu_ps(up + i));
        if (clamp) r = _mm256_andnot_ps(_mm256_cmp_ps(v, lo, _CMP_LE_OQ), r);
        _mm256_storeu_ps(y + i, r);
    }
    for (; i < n; i++) y[i] = act_one(table, clamp, x[i], up, i);
}

#else

void lv_act_table_avx2(const float *table, bool clamp, const float *x, const float *up, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = act_one(table, clamp, x[i], up, i);
}

#endif
