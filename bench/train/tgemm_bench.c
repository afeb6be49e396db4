/*
 * tgemm_bench.c: GFLOP/s of the trainer's GEMM kernels (src/train/tgemm*.c) on the trainer's
 * shapes, 1 and 2 threads, rows split among threads as lv_tr_matmul_* split them (multiples of 8).
 * `make bench-tgemm`, then build/release/tgemm_bench [M [reps]]. Not part of the tests.
 *
 * For each K = N in {64, 256, 576, 1536} with M = 512 (T, the tokens of a step): the forward form
 * C (M, N) = A (M, K) . B (K, N) and the weight-gradient form C += A^T B (trans_a, accumulate).
 * Prints the median and the best of `reps` timed runs (the machine is shared: the best is the
 * kernel, the median the kernel plus the neighbours). Then the vision tower's forward + backward
 * (src/train/tvision.c) with the portable GEMM (lv_simd_set_max(LV_SIMD_SCALAR): the tower's
 * only other dispatched kernel, the AVX-512 exp, is not used on AVX2 either) and with the best.
 */
#include "core/core.h"
#include "kernels/qkernels.h"
#include "train/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*gemm_fn)(int64_t, int64_t, int64_t, const float *, int64_t, bool, const float *, int64_t, float *, int64_t, bool);

static void gemm_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, bool ta, const float *B, int64_t ldb, float *C, int64_t ldc,
                      bool acc) {
    if (!lv_tr_gemm_avx2(M, N, K, A, lda, ta, B, ldb, C, ldc, acc)) abort();
}

typedef struct {
    gemm_fn fn;
    int64_t M, N, K;
    const float *A, *B;
    float *C;
    bool ta;
} job;

static void worker(void *arg, int ith, int nth) {
    const job *j = arg;
    const int64_t nb = (j->M + 7) / 8;
    int64_t a, b;
    lv_split_range(nb, ith, nth, &a, &b);
    const int64_t lo = LV_MIN(j->M, a * 8), hi = LV_MIN(j->M, b * 8);
    if (hi <= lo) return;
    if (j->ta) j->fn(hi - lo, j->N, j->K, j->A + lo, j->M, true, j->B, j->N, j->C + lo * j->N, j->N, true);
    else j->fn(hi - lo, j->N, j->K, j->A + lo * j->K, j->K, false, j->B, j->N, j->C + lo * j->N, j->N, false);
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const bool skip_gemm = getenv("TGEMM_BENCH_TOWER_ONLY") != NULL;
    const int64_t M = argc > 1 ? atoll(argv[1]) : 512;
    const int reps = argc > 2 ? atoi(argv[2]) : 7;
    const int64_t sizes[] = {64, 256, 576, 1536};
    struct { const char *name; gemm_fn fn; lv_simd level; } kern[] = {
        {"portable", lv_tr_gemm_portable, LV_SIMD_SCALAR}, {"avx2", gemm_avx2, LV_SIMD_AVX2}, {"avx512", lv_tr_gemm_avx512, LV_SIMD_AVX512}};
    double load[3] = {0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
        fclose(f);
    }
    printf("# tgemm_bench M=%lld, best level %s, loadavg at start %.2f %.2f %.2f\n", (long long)M, lv_simd_name(lv_simd_detect()), load[0], load[1],
           load[2]);
    printf("| form | K=N | threads | kernel | GFLOP/s median | GFLOP/s best |\n|---|---|---|---|---|---|\n");
    for (size_t si = 0; si < (skip_gemm ? 0 : LV_ARRAY_LEN(sizes)); si++) {
        const int64_t K = sizes[si], N = sizes[si];
        float *A = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(K * N)), *C = malloc(sizeof(float) * (size_t)(M * N));
        for (int64_t i = 0; i < M * K; i++) A[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
        for (int64_t i = 0; i < K * N; i++) B[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
        memset(C, 0, sizeof(float) * (size_t)(M * N));
        for (int ta = 0; ta < 2; ta++)
            for (int nth = 1; nth <= 2; nth++) {
                lv_threadpool *tp = lv_threadpool_create(nth);
                for (size_t ki = 0; ki < LV_ARRAY_LEN(kern); ki++) {
                    if (lv_simd_detect() < kern[ki].level) continue;
                    /* ta: A is (K, M) here, the same floats read the other way; K and M swap roles of a (T, N) dy */
                    job j = {.fn = kern[ki].fn, .M = M, .N = N, .K = K, .A = A, .B = B, .C = C, .ta = ta};
                    const double flop = 2.0 * (double)M * (double)N * (double)K;
                    int iters = 1;
                    double t0 = lv_time_s();
                    lv_threadpool_run(tp, worker, &j);
                    const double once = lv_time_s() - t0;
                    if (once < 0.05) iters = (int)(0.05 / (once + 1e-9)) + 1;
                    double ts[32];
                    const int nr = reps < 32 ? reps : 32;
                    for (int r = 0; r < nr; r++) {
                        t0 = lv_time_s();
                        for (int it = 0; it < iters; it++) lv_threadpool_run(tp, worker, &j);
                        ts[r] = (lv_time_s() - t0) / iters;
                    }
                    qsort(ts, (size_t)nr, sizeof(double), cmp_d);
                    printf("| %s | %lld | %d | %s | %.1f | %.1f |\n", ta ? "C += A^T B" : "C = A B", (long long)K, nth, kern[ki].name,
                           flop / ts[nr / 2] * 1e-9, flop / ts[0] * 1e-9);
                    fflush(stdout);
                }
                lv_threadpool_free(tp);
            }
        free(A), free(B), free(C);
    }
    /* the vision tower: 2 images of 224 x 224, patch 16 (196 patches, K = 768), width 256, 4 heads,
     * 2 layers, FFN 1024, pixel shuffle 2, into a 576-wide text model (SmolLM2-135M's) */
    const lv_tv_config c = lv_tv_config_default(224, 16, 256, 4, 2, 1024, 2, 576);
    const int n_img = 2;
    lv_tvmodel *m = NULL;
    if (lv_tvmodel_create(&c, true, &m) != LV_OK) return 1;
    lv_tvmodel_init(m, 1, 0.02f);
    const int64_t npix = (int64_t)n_img * c.image_size * c.image_size * 3, g = c.image_size / c.patch_size / c.scale_factor;
    const int64_t n_out = (int64_t)n_img * g * g * c.n_text_embd;
    uint8_t *img = malloc((size_t)npix);
    float *out = malloc(sizeof(float) * (size_t)n_out), *dout = malloc(sizeof(float) * (size_t)n_out);
    for (int64_t i = 0; i < npix; i++) img[i] = (uint8_t)((i * 2654435761u) >> 24);
    for (int64_t i = 0; i < n_out; i++) dout[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    printf("\n| vision tower fwd+bwd (2 images 224px, p16, E256, L2, F1024) | threads | GEMM | ms median | ms best |\n|---|---|---|---|---|\n");
    for (int nth = 1; nth <= 2; nth++) {
        lv_threadpool *tp = lv_threadpool_create(nth);
        for (int lvl = 0; lvl < 2; lvl++) {
            lv_simd_set_max(lvl == 0 ? LV_SIMD_SCALAR : LV_SIMD_AVX512);
            lv_tv_state st = {0};
            double ts[32];
            const int nr = reps < 32 ? reps : 32;
            for (int r = -1; r < nr; r++) {
                const double t0 = lv_time_s();
                if (lv_tv_forward(tp, m, &st, img, n_img, out) != LV_OK) return 1;
                lv_tv_backward(tp, m, &st, dout);
                if (r >= 0) ts[r] = lv_time_s() - t0;
            }
            qsort(ts, (size_t)nr, sizeof(double), cmp_d);
            printf("| | %d | %s | %.1f | %.1f |\n", nth, lvl == 0 ? "portable" : lv_simd_name(lv_simd_active()), ts[nr / 2] * 1e3, ts[0] * 1e3);
            fflush(stdout);
            lv_tv_state_free(&st);
        }
        lv_threadpool_free(tp);
    }
    lv_tvmodel_free(m);
    free(img), free(out), free(dout);
    f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
        fclose(f);
    }
    printf("# loadavg at end %.2f %.2f %.2f\n", load[0], load[1], load[2]);
    return 0;
}
