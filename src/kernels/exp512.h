/*
 * exp512.h: a 16-lane exp for the AVX-512 files (include it only where AVX-512 is enabled):
 * exp(x) = 2^n 2^f, n = round(x log2 e), f in [-1/2, 1/2]: a degree-6 polynomial for 2^f and
 * vscalefps; inputs below -87 are clamped (the result underflows to ~0 instead of denormals).
 * Shared by the attention kernel (attn_avx512.c) and the trainer (train/tgemm_avx512.c).
 */
#ifndef LV_EXP512_H
#define LV_EXP512_H

#include <immintrin.h>

static inline __m512 lv_exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(1.5353362e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3398874e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6184373e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5503324e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022648e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

#endif
