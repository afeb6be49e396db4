/*
 * tgemm_avx512.c: the trainer's GEMM with AVX-512 intrinsics (chosen at run time when the CPU
 * has AVX-512; the reference and the portable kernel are in tgemm.c, and tests/train/test_train.c
 * compares all three).
 *
 * C (M, N) = op(A) (M, K) . B (K, N) [+ C]: a micro-kernel keeps an 8 x 32 tile of C in 16
 * registers and, for each k, broadcasts 8 elements of A against two vectors of B's row k (16
 * fused multiply-adds per 2 loads and 8 broadcasts). Blocks: 256 values of k (the A panel stays
 * in L1), 512 columns (the B block, 512 KB, stays in L2). Column tails use masked loads and
 * stores. Each element of C is accumulated sequentially in k, whatever the blocking of M or N.
 */
#include "train/train.h"

#include <immintrin.h>

#include "kernels/exp512.h"

#define MR 8
#define KC 256
#define NC 512

static inline __attribute__((always_inline)) void kern(const int mr, const bool ta, int64_t kc, const float *A, int64_t lda, const float *B,
                                                       int64_t ldb, float *C, int64_t ldc, bool load_c, __mmask16 m0, __mmask16 m1) {
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        if (load_c) {
            c0[r] = _mm512_maskz_loadu_ps(m0, C + r * ldc);
            c1[r] = _mm512_maskz_loadu_ps(m1, C + r * ldc + 16);
        } else {
            c0[r] = _mm512_setzero_ps();
            c1[r] = _mm512_setzero_ps();
        }
    }
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, B + k * ldb);
        const __m512 b1 = _mm512_maskz_loadu_ps(m1, B + k * ldb + 16);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            const __m512 a = _mm512_set1_ps(ta ? A[k * lda + r] : A[r * lda + k]);
            c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        _mm512_mask_storeu_ps(C + r * ldc, m0, c0[r]);
        _mm512_mask_storeu_ps(C + r * ldc + 16, m1, c1[r]);
    }
}

#define KERN_CASE(n)                                                                      \
    case n:                                                                               \
        if (ta) kern(n, true, kc, A, lda, B, ldb, C, ldc, load_c, m0, m1);                \
        else kern(n, false, kc, A, lda, B, ldb, C, ldc, load_c, m0, m1);                  \
        break;

static void kern_any(int mr, bool ta, int64_t kc, const float *A, int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc, bool load_c,
                     __mmask16 m0, __mmask16 m1) {
    switch (mr) {
        KERN_CASE(1)
        KERN_CASE(2)
        KERN_CASE(3)
        KERN_CASE(4)
        KERN_CASE(5)
        KERN_CASE(6)
        KERN_CASE(7)
        KERN_CASE(8)
    default: break;
    }
}

void lv_tr_gemm_avx512(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, bool trans_a, const float *B, int64_t ldb, float *C,
                       int64_t ldc, bool accumulate) {
    for (int64_t j0 = 0; j0 < N; j0 += NC) {
        const int64_t j1 = LV_MIN(N, j0 + NC);
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            const int64_t kc = LV_MIN(KC, K - k0);
            const bool load_c = accumulate || k0 > 0;
            for (int64_t i0 = 0; i0 < M; i0 += MR) {
                const int mr = (int)LV_MIN(MR, M - i0);
                const float *a = trans_a ? A + k0 * lda + i0 : A + i0 * lda + k0;
                for (int64_t j = j0; j < j1; j += 32) {
                    const int64_t nr = LV_MIN(32, j1 - j);
                    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
                    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xffff : nr <= 16 ? (__mmask16)0 : (__mmask16)((1u << (nr - 16)) - 1);
                    kern_any(mr, trans_a, kc, a, lda, B + k0 * ldb + j, ldb, C + i0 * ldc + j, ldc, load_c, m0, m1);
                }
            }
        }
    }
}


void lv_tr_exp_avx512(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, lv_exp512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, m, lv_exp512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}
