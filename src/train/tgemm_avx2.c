/*
 * tgemm_avx2.c: the trainer's GEMM with AVX2 + FMA intrinsics, for CPUs without AVX-512 (chosen
 * at run time by lv_tr_gemm in tgemm.c; tests/train/test_train.c compares it with the reference,
 * with a sequential fmaf loop bit for bit, and across row splits bit for bit).
 *
 * C (M, N) = op(A) (M, K) . B (K, N) [+ C]. The micro-kernel keeps a 6 x 16 tile of C in 12 ymm
 * registers; for each k it loads two vectors of B's row k and broadcasts 6 elements of A (12
 * fused multiply-adds per 2 loads and 6 broadcasts; 15 of the 16 registers). Blocking in the
 * BLIS order: NC columns of B, up to KC values of k (B's KC x NC block is packed into 16-column
 * panels, zero-padded, contiguous in k), MC rows of A (packed into 6-row panels, zero-padded,
 * contiguous in k, from A or A^T alike), then 16-column panels of B (16 KB, stay in L1) against
 * 6-row panels of A (6 KB each, from L2). Edge tiles (fewer than 6 rows or 16 columns) go
 * through a 6 x 16 buffer, so the inner loop never masks.
 *
 * The summation order of each C element is the AVX-512 kernel's: start from C (accumulate) or
 * 0, then one fused multiply-add per k, k blocks in order, k in order within a block, in float.
 * The blocking of M and N does not enter it, so the result is bit-identical to the AVX-512
 * kernel's and does not depend on how C is split among threads.
 */
#include "train/train.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define MR 6
#define NR 16
#define KC 256
#define MC 120 /* MC x KC of packed A: 120 KB, in L2 */
#define NC 1024 /* KC x NC of packed B: 1 MB, in L2/L3 */

/* C tile (6 x 16 at c, row stride ldc) = [C +] Ap (kc x 6, packed) . Bp (kc x 16, packed) */
static __attribute__((noinline)) void kern_6x16(int64_t kc, const float *restrict Ap, const float *restrict Bp, float *restrict c, int64_t ldc, bool load_c) {
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (load_c) {
        c00 = _mm256_loadu_ps(c + 0 * ldc), c01 = _mm256_loadu_ps(c + 0 * ldc + 8);
        c10 = _mm256_loadu_ps(c + 1 * ldc), c11 = _mm256_loadu_ps(c + 1 * ldc + 8);
        c20 = _mm256_loadu_ps(c + 2 * ldc), c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
        c30 = _mm256_loadu_ps(c + 3 * ldc), c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
        c40 = _mm256_loadu_ps(c + 4 * ldc), c41 = _mm256_loadu_ps(c + 4 * ldc + 8);
        c50 = _mm256_loadu_ps(c + 5 * ldc), c51 = _mm256_loadu_ps(c + 5 * ldc + 8);
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
    }
#define LV_TG_STEP(k)                                                         \
    do {                                                                      \
        const __m256 b0 = _mm256_load_ps(Bp + (k) * NR);                      \
        const __m256 b1 = _mm256_load_ps(Bp + (k) * NR + 8);                  \
        __m256 a = _mm256_broadcast_ss(Ap + (k) * MR + 0);                    \
        c00 = _mm256_fmadd_ps(a, b0, c00), c01 = _mm256_fmadd_ps(a, b1, c01); \
        a = _mm256_broadcast_ss(Ap + (k) * MR + 1);                           \
        c10 = _mm256_fmadd_ps(a, b0, c10), c11 = _mm256_fmadd_ps(a, b1, c11); \
        a = _mm256_broadcast_ss(Ap + (k) * MR + 2);                           \
        c20 = _mm256_fmadd_ps(a, b0, c20), c21 = _mm256_fmadd_ps(a, b1, c21); \
        a = _mm256_broadcast_ss(Ap + (k) * MR + 3);                           \
        c30 = _mm256_fmadd_ps(a, b0, c30), c31 = _mm256_fmadd_ps(a, b1, c31); \
        a = _mm256_broadcast_ss(Ap + (k) * MR + 4);                           \
        c40 = _mm256_fmadd_ps(a, b0, c40), c41 = _mm256_fmadd_ps(a, b1, c41); \
        a = _mm256_broadcast_ss(Ap + (k) * MR + 5);                           \
        c50 = _mm256_fmadd_ps(a, b0, c50), c51 = _mm256_fmadd_ps(a, b1, c51); \
    } while (0)
    for (int64_t k = 0; k < kc; k++) LV_TG_STEP(k);
#undef LV_TG_STEP
    _mm256_storeu_ps(c + 0 * ldc, c00), _mm256_storeu_ps(c + 0 * ldc + 8, c01);
    _mm256_storeu_ps(c + 1 * ldc, c10), _mm256_storeu_ps(c + 1 * ldc + 8, c11);
    _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);
    _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);
    _mm256_storeu_ps(c + 4 * ldc, c40), _mm256_storeu_ps(c + 4 * ldc + 8, c41);
    _mm256_storeu_ps(c + 5 * ldc, c50), _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}

/* B rows [0, kc), columns [0, nc) -> panels of 16 columns, each kc x 16 contiguous, zero-padded */
static void pack_b(int64_t kc, int64_t nc, const float *B, int64_t ldb, float *Bp) {
    for (int64_t j = 0; j < nc; j += NR) {
        const int64_t nr = LV_MIN(NR, nc - j);
        float *p = Bp + j * kc;
        if (nr == NR) {
            for (int64_t k = 0; k < kc; k++) {
                _mm256_store_ps(p + k * NR, _mm256_loadu_ps(B + k * ldb + j));
                _mm256_store_ps(p + k * NR + 8, _mm256_loadu_ps(B + k * ldb + j + 8));
            }
        } else {
            for (int64_t k = 0; k < kc; k++) {
                memcpy(p + k * NR, B + k * ldb + j, (size_t)nr * sizeof(float));
                memset(p + k * NR + nr, 0, (size_t)(NR - nr) * sizeof(float));
            }
        }
    }
}

/* op(A) rows [0, mc), k [0, kc) -> panels of 6 rows, each kc x 6 contiguous (row r of panel at
 * k * 6 + r), zero-padded. A points at op(A)'s element (0, 0). */
static void pack_a(int64_t mc, int64_t kc, const float *A, int64_t lda, bool trans_a, float *Ap) {
    for (int64_t i = 0; i < mc; i += MR) {
        const int64_t mr = LV_MIN(MR, mc - i);
        float *p = Ap + i * kc;
        if (trans_a) {
            for (int64_t k = 0; k < kc; k++) {
                const float *a = A + k * lda + i;
                int64_t r = 0;
                for (; r < mr; r++) p[k * MR + r] = a[r];
                for (; r < MR; r++) p[k * MR + r] = 0.0f;
            }
        } else {
            int64_t r = 0;
            for (; r < mr; r++) {
                const float *a = A + (i + r) * lda;
                for (int64_t k = 0; k < kc; k++) p[k * MR + r] = a[k];
            }
            for (; r < MR; r++)
                for (int64_t k = 0; k < kc; k++) p[k * MR + r] = 0.0f;
        }
    }
}

bool lv_tr_gemm_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, bool trans_a, const float *B, int64_t ldb, float *C,
                     int64_t ldc, bool accumulate) {
    if (M <= 0 || N <= 0) return true;
    if (K <= 0) {
        if (!accumulate)
            for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof(float));
        return true;
    }
    /* K in blocks of at most KC of equal size (576 = 3 x 192, not 256 + 256 + 64: fewer passes
     * over C per multiply-add). The blocks do not enter the result: C is stored and reloaded in
     * float between them, exactly. */
    const int64_t n_kb = (K + KC - 1) / KC, kcm = (K + n_kb - 1) / n_kb;
    const int64_t ncm = (LV_MIN(N, NC) + NR - 1) / NR * NR, mcm = (LV_MIN(M, MC) + MR - 1) / MR * MR;
    const size_t nb = (size_t)(kcm * ncm), na = (size_t)(kcm * mcm);
    float *buf = aligned_alloc(64, ((nb + na) * sizeof(float) + 63) / 64 * 64);
    if (!buf) return false; /* no memory for the packed blocks: C untouched, the caller falls back */
    float *Bp = buf, *Ap = buf + nb;
    float edge[MR * NR];
    for (int64_t jc = 0; jc < N; jc += NC) {
        const int64_t nc = LV_MIN(NC, N - jc);
        for (int64_t pc = 0; pc < K; pc += kcm) {
            const int64_t kc = LV_MIN(kcm, K - pc);
            const bool load_c = accumulate || pc > 0;
            pack_b(kc, nc, B + pc * ldb + jc, ldb, Bp);
            for (int64_t ic = 0; ic < M; ic += MC) {
                const int64_t mc = LV_MIN(MC, M - ic);
                pack_a(mc, kc, trans_a ? A + pc * lda + ic : A + ic * lda + pc, lda, trans_a, Ap);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    const int64_t nr = LV_MIN(NR, nc - jr);
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        const int64_t mr = LV_MIN(MR, mc - ir);
                        float *c = C + (ic + ir) * ldc + jc + jr;
                        if (mr == MR && nr == NR) {
                            kern_6x16(kc, Ap + ir * kc, Bp + jr * kc, c, ldc, load_c);
                        } else {
                            memset(edge, 0, sizeof(edge));
                            if (load_c)
                                for (int64_t r = 0; r < mr; r++) memcpy(edge + r * NR, c + r * ldc, (size_t)nr * sizeof(float));
                            kern_6x16(kc, Ap + ir * kc, Bp + jr * kc, edge, NR, load_c);
                            for (int64_t r = 0; r < mr; r++) memcpy(c + r * ldc, edge + r * NR, (size_t)nr * sizeof(float));
                        }
                    }
                }
            }
        }
    }
    free(buf);
    return true;
}
