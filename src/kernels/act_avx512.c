/*
 * act_avx512.c: the AVX-512 level of the element-wise activations (SwiGLU), with exp512.h's exp.
 * Checked against lv_swiglu_ref in tests/kernels/test_kernels.c.
 */
#include "kernels/kernels.h"

#if defined(__AVX512F__)

#include "kernels/exp512.h"

static inline __m512 swiglu16(__m512 g, __m512 u) {
    const __m512 e = lv_exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
    return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

void lv_swiglu_avx512(const float *gate, const float *up, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, swiglu16(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(out + i, m, swiglu16(_mm512_maskz_loadu_ps(m, gate + i), _mm512_maskz_loadu_ps(m, up + i)));
    }
}

#else

void lv_swiglu_avx512(const float *gate, const float *up, float *out, int64_t n) { lv_swiglu_ref(gate, up, out, n); }

#endif
