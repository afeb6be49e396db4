/*
 * attn_pv_avx2.h: the AVX2 inner loops the attention kernels share: eight f32 lanes from an f16 or
 * f32 array, and the value accumulation of one query row over 64 output dimensions. Used by the
 * f16 / f32 kernel (attn_avx2.c) and by the quantized-page kernel over its dequantized value block
 * (attn_q_impl.h, at the AVX2 and AVX-512 levels).
 */
#ifndef LV_ATTN_PV_AVX2_H
#define LV_ATTN_PV_AVX2_H

#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>

/* eight values from element off of p, f16 (h16) or f32 */
static inline __attribute__((always_inline)) __m256 load8(const bool h16, const void *p, size_t off) {
    return h16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + off))) : _mm256_loadu_ps((const float *)p + off);
}

/* oc[0..63] = oc * corr + sum_j p[j] v[j] over 64 dims (8 vectors in registers: with a run-time
 * count the compiler kept the accumulators in memory, a store and reload per fma, measured half the
 * kernel's time in a 1024-token vision prefill); value j is row j of v (f16 or f32, Dv a row), from column 8 c0 */
static inline __attribute__((always_inline)) void pv_64(const bool h16, float *oc, __m256 vc, const float *sr, int nk, const void *v, int Dv,
                                                        int c0) {
    __m256 a0 = _mm256_mul_ps(_mm256_loadu_ps(oc), vc), a1 = _mm256_mul_ps(_mm256_loadu_ps(oc + 8), vc);
    __m256 a2 = _mm256_mul_ps(_mm256_loadu_ps(oc + 16), vc), a3 = _mm256_mul_ps(_mm256_loadu_ps(oc + 24), vc);
    __m256 a4 = _mm256_mul_ps(_mm256_loadu_ps(oc + 32), vc), a5 = _mm256_mul_ps(_mm256_loadu_ps(oc + 40), vc);
    __m256 a6 = _mm256_mul_ps(_mm256_loadu_ps(oc + 48), vc), a7 = _mm256_mul_ps(_mm256_loadu_ps(oc + 56), vc);
    for (int j = 0; j < nk; j++) {
        const float pj = sr[j];
        if (pj == 0.0f) continue;
        const __m256 pv = _mm256_set1_ps(pj);
        const size_t vr = (size_t)j * (size_t)Dv + 8 * (size_t)c0;
        a0 = _mm256_fmadd_ps(pv, load8(h16, v, vr), a0);
        a1 = _mm256_fmadd_ps(pv, load8(h16, v, vr + 8), a1);
        a2 = _mm256_fmadd_ps(pv, load8(h16, v, vr + 16), a2);
        a3 = _mm256_fmadd_ps(pv, load8(h16, v, vr + 24), a3);
        a4 = _mm256_fmadd_ps(pv, load8(h16, v, vr + 32), a4);
        a5 = _mm256_fmadd_ps(pv, load8(h16, v, vr + 40), a5);
        a6 = _mm256_fmadd_ps(pv, load8(h16, v, vr + 48), a6);
        a7 = _mm256_fmadd_ps(pv, load8(h16, v, vr + 56), a7);
    }
    _mm256_storeu_ps(oc, a0);
    _mm256_storeu_ps(oc + 8, a1);
    _mm256_storeu_ps(oc + 16, a2);
    _mm256_storeu_ps(oc + 24, a3);
    _mm256_storeu_ps(oc + 32, a4);
    _mm256_storeu_ps(oc + 40, a5);
    _mm256_storeu_ps(oc + 48, a6);
    _mm256_storeu_ps(oc + 56, a7);
}

#endif
