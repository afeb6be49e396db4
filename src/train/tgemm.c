/*
 * tgemm.c: the trainer's matrix products: the reference GEMM (a dot product per element,
 * accumulated in double), a portable blocked GEMM (baseline x86-64, auto-vectorized), the
 * dispatch to the AVX-512 kernel (tgemm_avx512.c) or the AVX2 + FMA one (tgemm_avx2.c), and the
 * threaded matmul forward/backward built on them.
 *
 * Threads split C by rows in multiples of the AVX-512 micro-kernel's 8 rows (the AVX2 kernel's
 * 6-row tiles do not divide them; its last tile per thread is a partial one). Every element of C is
 * summed in the same order (k blocks of TG_KC in order, k in order inside a block) whichever
 * thread computes it, so results do not depend on the thread count.
 */
#include "train/train.h"

#include "kernels/qkernels.h"

#include <stdatomic.h>
#include <string.h>

#define TG_MR 8
#define TG_KC 256

static _Atomic int g_reference;

void lv_tr_set_reference(bool on) { atomic_store(&g_reference, on ? 1 : 0); }
bool lv_tr_reference(void) { return atomic_load(&g_reference) != 0; }

void lv_tr_gemm_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, bool trans_a, const float *B, int64_t ldb, float *C,
                    int64_t ldc, bool accumulate) {
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double s = accumulate ? (double)C[i * ldc + j] : 0.0;
            for (int64_t k = 0; k < K; k++) {
                const float a = trans_a ? A[k * lda + i] : A[i * lda + k];
                s += (double)a * (double)B[k * ldb + j];
            }
            C[i * ldc + j] = (float)s;
        }
    }
}

/* Portable: blocks of TG_KC k, rows one at a time, columns in runs of 64 that the compiler
 * vectorizes (c[j] += a * b[j]). Same summation order per element as the AVX-512 and AVX2
 * kernels (sequential in k), though without fused multiply-adds: not the same bits (train.h). */
void lv_tr_gemm_portable(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, bool trans_a, const float *B, int64_t ldb, float *C,
                         int64_t ldc, bool accumulate) {
    if (!accumulate)
        for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof(float));
    for (int64_t k0 = 0; k0 < K; k0 += TG_KC) {
        const int64_t k1 = LV_MIN(K, k0 + TG_KC);
        for (int64_t i = 0; i < M; i++) {
            float *c = C + i * ldc;
            for (int64_t j0 = 0; j0 < N; j0 += 64) {
                const int64_t nj = LV_MIN(64, N - j0);
                float acc[64];
                memcpy(acc, c + j0, (size_t)nj * sizeof(float));
                for (int64_t k = k0; k < k1; k++) {
                    const float a = trans_a ? A[k * lda + i] : A[i * lda + k];
                    const float *b = B + k * ldb + j0;
                    for (int64_t j = 0; j < nj; j++) acc[j] += a * b[j];
                }
                memcpy(c + j0, acc, (size_t)nj * sizeof(float));
            }
        }
    }
}

void lv_tr_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, bool trans_a, const float *B, int64_t ldb, float *C,
                int64_t ldc, bool accumulate) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate)
            for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    if (lv_tr_reference()) lv_tr_gemm_ref(M, N, K, A, lda, trans_a, B, ldb, C, ldc, accumulate);
    else if (lv_simd_active() >= LV_SIMD_AVX512) lv_tr_gemm_avx512(M, N, K, A, lda, trans_a, B, ldb, C, ldc, accumulate);
    else if (lv_simd_active() >= LV_SIMD_AVX2 && lv_tr_gemm_avx2(M, N, K, A, lda, trans_a, B, ldb, C, ldc, accumulate)) return;
    else lv_tr_gemm_portable(M, N, K, A, lda, trans_a, B, ldb, C, ldc, accumulate);
}

/* -------------------------------------------------------------------------------------------
 * threaded matmuls
 * ----------------------------------------------------------------------------------------- */

typedef struct mm_task {
    lv_threadpool *tp;
    const float *x, *W, *b, *dy;
    float *y, *dx, *dW, *db, *scratch;
    int64_t T, K, N;
    bool acc_dx;
} mm_task;

/* rows [lo, hi) of M split among threads in multiples of TG_MR */
static void split_rows(int64_t M, int ith, int nth, int64_t *lo, int64_t *hi) {
    const int64_t nb = (M + TG_MR - 1) / TG_MR;
    int64_t a, b;
    lv_split_range(nb, ith, nth, &a, &b);
    *lo = LV_MIN(M, a * TG_MR);
    *hi = LV_MIN(M, b * TG_MR);
}

static void mm_fwd_worker(void *arg, int ith, int nth) {
    mm_task *t = arg;
    const int64_t K = t->K, N = t->N;
    int64_t lo, hi;
    /* 1. Wt (K, N) = W^T, rows of Wt split */
    lv_split_range(K, ith, nth, &lo, &hi);
    for (int64_t k = lo; k < hi; k++)
        for (int64_t n = 0; n < N; n++) t->scratch[k * N + n] = t->W[n * K + k];
    lv_threadpool_barrier(t->tp);
    /* 2. y rows */
    split_rows(t->T, ith, nth, &lo, &hi);
    if (hi > lo) lv_tr_gemm(hi - lo, N, K, t->x + lo * K, K, false, t->scratch, N, t->y + lo * N, N, false);
    if (t->b)
        for (int64_t i = lo; i < hi; i++)
            for (int64_t n = 0; n < N; n++) t->y[i * N + n] += t->b[n];
}

void lv_tr_matmul_fwd(lv_threadpool *tp, const float *x, const float *W, const float *b, float *y, int64_t T, int64_t K, int64_t N,
                      float *scratch) {
    mm_task t = {.tp = tp, .x = x, .W = W, .b = b, .y = y, .scratch = scratch, .T = T, .K = K, .N = N};
    lv_threadpool_run(tp, mm_fwd_worker, &t);
}

static void mm_bwd_worker(void *arg, int ith, int nth) {
    mm_task *t = arg;
    const int64_t T = t->T, K = t->K, N = t->N;
    int64_t lo, hi;
    if (t->dx) {
        split_rows(T, ith, nth, &lo, &hi);
        if (hi > lo) lv_tr_gemm(hi - lo, K, N, t->dy + lo * N, N, false, t->W, K, t->dx + lo * K, K, t->acc_dx);
    }
    if (t->dW) {
        split_rows(N, ith, nth, &lo, &hi);
        if (hi > lo) lv_tr_gemm(hi - lo, K, T, t->dy + lo, N, true, t->x, K, t->dW + lo * K, K, true);
    }
    if (t->db) {
        lv_split_range(N, ith, nth, &lo, &hi);
        for (int64_t n = lo; n < hi; n++) {
            float s = 0;
            for (int64_t i = 0; i < T; i++) s += t->dy[i * N + n];
            t->db[n] += s;
        }
    }
}

void lv_tr_matmul_bwd(lv_threadpool *tp, const float *dy, const float *x, const float *W, float *dx, bool accumulate_dx, float *dW, float *db,
                      int64_t T, int64_t K, int64_t N) {
    mm_task t = {.tp = tp, .x = x, .W = W, .dy = dy, .dx = dx, .dW = dW, .db = db, .T = T, .K = K, .N = N, .acc_dx = accumulate_dx};
    lv_threadpool_run(tp, mm_bwd_worker, &t);
}
