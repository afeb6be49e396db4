/*
 * bench_limits.c: quick probes of this machine's limits, so `longview bench` can report each
 * test's bandwidth and FLOP rate as a fraction of what the hardware does: memory read bandwidth
 * (a sum over a buffer much larger than the caches, all threads) and FMA throughput (independent
 * accumulator chains). The AVX-512 / AVX2 variants are chosen at run time.
 */
#define _GNU_SOURCE
#include "bench_limits.h"
#include "cli.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

typedef struct probe_arg {
    const float *buf;
    size_t n;       /* floats for this thread */
    int reps;
    double seconds; /* for the FMA probe */
    double result;
    pthread_barrier_t *bar;
} probe_arg;

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static float sum_avx512(const float *p, size_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 64 <= n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}
__attribute__((target("avx2"))) static float sum_avx2(const float *p, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
/* 12 independent FMA chains of 16 floats: 2 * 16 * 12 FLOP per iteration */
__attribute__((target("avx512f"))) static double fma_avx512(double seconds) {
    __m512 a[12], x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(0.001f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    double t0 = cli_now_s(), t;
    long iters = 0;
    do {
        for (int k = 0; k < 4096; k++)
            for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], x, y);
        iters += 4096;
    } while ((t = cli_now_s() - t0) < seconds);
    float sink = 0;
    for (int i = 0; i < 12; i++) sink += _mm512_reduce_add_ps(a[i]);
    return (double)iters * 12 * 16 * 2 / t + (sink == 12345.0f ? 1 : 0);
}
__attribute__((target("avx2,fma"))) static double fma_avx2(double seconds) {
    __m256 a[12], x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(0.001f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    double t0 = cli_now_s(), t;
    long iters = 0;
    do {
        for (int k = 0; k < 4096; k++)
            for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], x, y);
        iters += 4096;
    } while ((t = cli_now_s() - t0) < seconds);
    float tmp[8], sink = 0;
    for (int i = 0; i < 12; i++) {
        _mm256_storeu_ps(tmp, a[i]);
        sink += tmp[0];
    }
    return (double)iters * 12 * 8 * 2 / t + (sink == 12345.0f ? 1 : 0);
}
#endif

static float sum_scalar(const float *p, size_t n) {
    float a[8] = {0};
    for (size_t i = 0; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) a[j] += p[i + j];
    return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

static float sum_best(const float *p, size_t n) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) return sum_avx512(p, n);
    if (__builtin_cpu_supports("avx2")) return sum_avx2(p, n);
#endif
    return sum_scalar(p, n);
}

static void *bw_thread(void *p) {
    probe_arg *a = p;
    volatile float sink = 0;
    sink += sum_best(a->buf, a->n); /* touch once (page faults) */
    pthread_barrier_wait(a->bar);
    double t0 = cli_now_s();
    for (int r = 0; r < a->reps; r++) sink += sum_best(a->buf, a->n);
    a->result = cli_now_s() - t0;
    (void)sink;
    return NULL;
}

static void *fma_thread(void *p) {
    probe_arg *a = p;
    pthread_barrier_wait(a->bar);
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) a->result = fma_avx512(a->seconds);
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) a->result = fma_avx2(a->seconds);
    else
#endif
        a->result = 0;
    return NULL;
}

int bench_measure_limits(int n_threads, bench_limits *out) {
    memset(out, 0, sizeof(*out));
    const size_t nf = (size_t)64 << 20; /* 256 MiB of floats: far beyond the caches */
    float *buf = malloc(nf * sizeof(float));
    if (!buf) return -1;
    for (size_t i = 0; i < nf; i++) buf[i] = (float)(i & 7);
    pthread_t th[64];
    probe_arg args[64];
    pthread_barrier_t bar;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 64) n_threads = 64;
    pthread_barrier_init(&bar, NULL, (unsigned)n_threads);
    const size_t per = nf / (size_t)n_threads / 64 * 64;
    for (int i = 0; i < n_threads; i++) {
        args[i] = (probe_arg){buf + (size_t)i * per, per, 4, 0.3, 0, &bar};
        pthread_create(&th[i], NULL, bw_thread, &args[i]);
    }
    double tmax = 0;
    for (int i = 0; i < n_threads; i++) {
        pthread_join(th[i], NULL);
        if (args[i].result > tmax) tmax = args[i].result;
    }
    out->read_gbs = (double)per * n_threads * sizeof(float) * 4 / tmax / 1e9;
    for (int i = 0; i < n_threads; i++) {
        args[i].seconds = 0.3;
        pthread_create(&th[i], NULL, fma_thread, &args[i]);
    }
    for (int i = 0; i < n_threads; i++) {
        pthread_join(th[i], NULL);
        out->fma_gflops += args[i].result / 1e9;
    }
    pthread_barrier_destroy(&bar);
    free(buf);
    return 0;
}
