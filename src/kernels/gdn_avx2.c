/*
 * gdn_avx2.c: the gated delta-net step with AVX2 + FMA (reference: lv_gdn_step_ref in gdn.c).
 * Each state row is read once and written twice while it sits in L1: decay and k-dot, then the
 * rank-one update and q-dot. S must be a multiple of 8.
 */
#include "kernels/kernels.h"

#include <immintrin.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

void lv_gdn_step_avx2(const float *src, float *dst, const float *q, const float *k, const float *v, float decay, float beta, float scale,
                      float *out, int S) {
    const __m256 vdec = _mm256_set1_ps(decay);
    for (int j = 0; j < S; j++) {
        float *m = dst + (int64_t)j * S;
        __m256 acc = _mm256_setzero_ps();
        if (src) {
            const float *a = src + (int64_t)j * S;
            for (int i = 0; i < S; i += 8) {
                const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(a + i), vdec);
                _mm256_storeu_ps(m + i, x);
                acc = _mm256_fmadd_ps(x, _mm256_loadu_ps(k + i), acc);
            }
        } else {
            for (int i = 0; i < S; i += 8) _mm256_storeu_ps(m + i, _mm256_setzero_ps());
        }
        const __m256 vd = _mm256_set1_ps((v[j] - hsum(acc)) * beta);
        __m256 acq = _mm256_setzero_ps();
        for (int i = 0; i < S; i += 8) {
            const __m256 x = _mm256_fmadd_ps(vd, _mm256_loadu_ps(k + i), _mm256_loadu_ps(m + i));
            _mm256_storeu_ps(m + i, x);
            acq = _mm256_fmadd_ps(x, _mm256_loadu_ps(q + i), acq);
        }
        out[j] = hsum(acq) * scale;
    }
}
