/*
 * bench_kernels.c: speed of the per-type kernels (src/kernels/qkernels.h) at each SIMD level, against
 * this machine's limits (../shared/BENCHMARKS.md). Not part of make test. Build and run:
 *
 *     make bench-kernels && build/release/bench_kernels [options]
 *
 * For each weight type and level it reports:
 *  - decode: vec_dot over every row of an N x K weight matrix (one activation row), one thread,
 *    cycling through enough copies of the matrix that every byte comes from DRAM (>= 256 MB per
 *    pass): weight GB/s, against the 41 GB/s one core reads;
 *  - prefill: lv_matmul (the engine's driver: from_float, then gemm tiles) of T activation rows
 *    against the same N x K matrix on one thread: GOP/s (2 N K T operations), against the FMA
 *    (f32, f16), vdpbf16ps (bf16) or VNNI int8 (quantized types) peak.
 * Each figure is the median of the repetitions, with the range. The machine is shared: compare
 * ratios within one run.
 *
 * Options: --types f32,q4_0,... --levels scalar,avx2,avx512 --n N --k K --t T --reps R
 *          --threads N (prefill; default 1) --ring-mb MB (decode working set, default 256)
 */
#define _GNU_SOURCE
#include "kernels/kernels.h"
#include "core/core.h"
#include "kernels/qkernels.h"
#include "gguf/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ../shared/BENCHMARKS.md, one core */
#define PEAK_FMA512 282.0
#define PEAK_BF16 519.0
#define PEAK_VNNI 1130.0
#define PEAK_BW 41.0

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct stat3 {
    double med, lo, hi;
} stat3;

static stat3 stats(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    stat3 s = {v[n / 2], v[0], v[n - 1]};
    return s;
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

static bool in_list(const char *list, const char *name) {
    if (!list) return true;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ","))
        if (!strcasecmp(t, name)) return true;
    return false;
}

static void *xmalloc(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n) != 0 || !p) {
        fprintf(stderr, "bench_kernels: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* ---- probes of this machine's state in the same run (the cores are shared) ---- */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
__attribute__((target("avx512f"))) static double probe_read_gbs(const uint8_t *p, size_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const double t0 = lv_time_s();
    for (size_t i = 0; i + 256 <= n; i += 256) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps((const float *)(p + i)));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps((const float *)(p + i + 64)));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps((const float *)(p + i + 128)));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps((const float *)(p + i + 192)));
    }
    const double dt = lv_time_s() - t0;
    volatile float sink = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    (void)sink;
    return (double)n / dt / 1e9;
}
/* 12 independent vfmadd231ps (zmm) per iteration: GFLOP/s */
__attribute__((target("avx512f"))) static double probe_fma_gflops(void) {
    __m512 a[12], b = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-7f);
    for (int j = 0; j < 12; j++) a[j] = _mm512_set1_ps((float)j);
    const long n = 20000000;
    const double t0 = lv_time_s();
    for (long i = 0; i < n; i++)
        for (int j = 0; j < 12; j++) a[j] = _mm512_fmadd_ps(a[j], b, c);
    const double dt = lv_time_s() - t0;
    __m512 s = a[0];
    for (int j = 1; j < 12; j++) s = _mm512_add_ps(s, a[j]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return 12.0 * n * 32 / dt / 1e9;
}
/* 12 independent vpdpbusd (zmm) per iteration: int8 GOP/s (2 per multiply-add) */
__attribute__((target("avx512f,avx512vnni"))) static double probe_vnni_gops(void) {
    __m512i a[12];
    const __m512i u = _mm512_set1_epi8(3), v = _mm512_set1_epi8(2);
    for (int j = 0; j < 12; j++) a[j] = _mm512_set1_epi32(j);
    const long n = 20000000;
    const double t0 = lv_time_s();
    for (long i = 0; i < n; i++)
        for (int j = 0; j < 12; j++) a[j] = _mm512_dpbusd_epi32(a[j], u, v);
    const double dt = lv_time_s() - t0;
    __m512i s = a[0];
    for (int j = 1; j < 12; j++) s = _mm512_add_epi32(s, a[j]);
    volatile int sink = _mm512_reduce_add_epi32(s);
    (void)sink;
    return 12.0 * n * 128 / dt / 1e9;
}
static void probes(const uint8_t *buf, size_t n) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f")) return;
    printf("# probes now: 1-stream read %.1f GB/s, FMA %.0f GFLOP/s", probe_read_gbs(buf, n), probe_fma_gflops());
    if (__builtin_cpu_supports("avx512vnni")) printf(", VNNI int8 %.0f GOP/s", probe_vnni_gops());
    printf(" (idle machine: 41, 282, 1130)\n");
}
#else
static void probes(const uint8_t *buf, size_t n) {
    (void)buf;
    (void)n;
}
#endif

int main(int argc, char **argv) {
    const char *types = NULL, *levels = NULL;
    int64_t N = 2048, K = 8192, T = 512;
    int reps = 5, threads = 1;
    double ring_mb = 256;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--types") && v) types = argv[++i];
        else if (!strcmp(a, "--levels") && v) levels = argv[++i];
        else if (!strcmp(a, "--n") && v) N = atoll(argv[++i]);
        else if (!strcmp(a, "--k") && v) K = atoll(argv[++i]);
        else if (!strcmp(a, "--t") && v) T = atoll(argv[++i]);
        else if (!strcmp(a, "--reps") && v) reps = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && v) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--ring-mb") && v) ring_mb = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_kernels [--types LIST] [--levels LIST] [--n N] [--k K] [--t T] [--reps R] [--threads N] [--ring-mb MB]\n");
            return 2;
        }
    }
    if (K % 256 || N <= 0 || T <= 0 || reps <= 0 || reps > 100) {
        fprintf(stderr, "bench_kernels: --k must be a multiple of 256, the others positive\n");
        return 2;
    }
    const lv_type all[] = {LV_TYPE_F32,  LV_TYPE_F16,  LV_TYPE_BF16, LV_TYPE_Q8_0, LV_TYPE_Q4_0, LV_TYPE_Q4_1,
                           LV_TYPE_Q5_0, LV_TYPE_Q5_1, LV_TYPE_Q4_K, LV_TYPE_Q5_K, LV_TYPE_Q6_K};
    lv_threadpool *tp = lv_threadpool_create(threads);
    if (!tp) return 1;
    float *xf = xmalloc(sizeof(float) * (size_t)(T * K)), *y = xmalloc(sizeof(float) * (size_t)(T * N));
    void *xq = xmalloc(lv_matmul_scratch_bytes(LV_TYPE_F32, T, K));
    for (int64_t i = 0; i < T * K; i++) xf[i] = frand();
    float *row = xmalloc(sizeof(float) * (size_t)K);

    printf("# bench_kernels: N=%lld K=%lld (weight matrix N x K), prefill T=%lld on %d thread(s), decode on 1 thread over >= %.0f MB; "
           "median of %d [min-max]\n",
           (long long)N, (long long)K, (long long)T, threads, ring_mb, reps);
    {
        const size_t pn = (size_t)(ring_mb * 1048576.0);
        uint8_t *pb = xmalloc(pn);
        memset(pb, 1, pn);
        probes(pb, pn);
        free(pb);
    }
    printf("| type | level | decode vec_dot GB/s | decode gemm 4x1 GB/s | best of 41 GB/s | prefill GOP/s | of peak (peak) | vec_dot in cache GB/s | 4x4 gemm in cache GOP/s |\n"
           "|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    fflush(stdout);
    for (size_t it = 0; it < sizeof(all) / sizeof(all[0]); it++) {
        const lv_type t = all[it];
        if (!in_list(types, lv_type_name(t))) continue;
        const size_t rb = (size_t)lv_row_bytes(t, K), mb = rb * (size_t)N;
        /* a ring of copies: >= ring_mb so that decode reads from DRAM */
        const size_t copies = (size_t)ceil(ring_mb * 1048576.0 / (double)mb);
        uint8_t *w = xmalloc(mb * copies);
        for (int64_t r = 0; r < N; r++) {
            for (int64_t i = 0; i < K; i++) row[i] = frand() * 0.05f;
            lv_quantize_row_file(t, row, w + (size_t)r * rb, K);
        }
        for (size_t c = 1; c < copies; c++) memcpy(w + c * mb, w, mb);
        for (int l = 0; l < LV_SIMD_COUNT && l <= (int)lv_simd_detect(); l++) {
            if (!in_list(levels, lv_simd_name((lv_simd)l))) continue;
            const lv_qtype_ops *o = lv_qtype_ops_get(t, (lv_simd)l);
            lv_simd_set_max((lv_simd)l);
            /* decode */
            const lv_type vt = o->vec_dot_type;
            o->from_float(xf, xq, K);
            double gbs[100];
            const int dreps = l == LV_SIMD_SCALAR ? 1 : reps;
            volatile float sink = 0;
            for (int rep = 0; rep < dreps; rep++) {
                const double t0 = lv_time_s();
                float acc = 0;
                for (size_t c = 0; c < copies; c++)
                    for (int64_t r = 0; r < N; r++) acc += o->vec_dot(K, w + c * mb + (size_t)r * rb, xq);
                gbs[rep] = (double)(mb * copies) / (lv_time_s() - t0) / 1e9;
                sink += acc;
            }
            (void)vt;
            const stat3 d = stats(gbs, dreps);
            /* decode through gemm tiles of 4 rows x 1 activation row (what matmul_worker does for T = 1) */
            double gbs4[100];
            for (int rep = 0; rep < dreps; rep++) {
                const double t0 = lv_time_s();
                float acc = 0, s4[16];
                for (size_t c = 0; c < copies; c++)
                    for (int64_t r = 0; r + 4 <= N; r += 4) {
                        o->gemm(K, w + c * mb + (size_t)r * rb, rb, xq, 0, s4, 1, 4, 1);
                        acc += s4[0];
                    }
                gbs4[rep] = (double)(mb * copies) / (lv_time_s() - t0) / 1e9;
                sink += acc;
            }
            const stat3 d4 = stats(gbs4, dreps);
            /* prefill through the driver */
            lv_tensor W = {"w", t, {K, N, 1, 1}, (int64_t)rb, w};
            const int64_t Tl = l == LV_SIMD_SCALAR ? LV_MIN(T, 16) : T;
            double gops[100];
            const int preps = l == LV_SIMD_SCALAR ? 1 : reps;
            lv_matmul(tp, &W, xf, Tl, y, xq, NULL); /* warm up */
            for (int rep = 0; rep < preps; rep++) {
                const double t0 = lv_time_s();
                lv_matmul(tp, &W, xf, Tl, y, xq, NULL);
                gops[rep] = 2.0 * (double)N * (double)K * (double)Tl / (lv_time_s() - t0) / 1e9;
            }
            const stat3 g = stats(gops, preps);
            /* the kernel alone: 4x4 gemm tiles and vec_dot on data that stays in L1/L2 */
            const int64_t Kc = LV_MIN(K, 4096);
            double kg[100], kd[100];
            const int kreps = l == LV_SIMD_SCALAR ? 1 : reps;
            for (int rep = 0; rep < kreps; rep++) {
                const int inner = l == LV_SIMD_SCALAR ? 20 : 400;
                float tile[16];
                double t0 = lv_time_s();
                for (int it2 = 0; it2 < inner; it2++) o->gemm(Kc, w, rb, xq, (size_t)lv_row_bytes(o->vec_dot_type, K), tile, 4, 4, 4);
                kg[rep] = 2.0 * 16 * (double)Kc * inner / (lv_time_s() - t0) / 1e9;
                t0 = lv_time_s();
                float acc = 0;
                for (int it2 = 0; it2 < inner * 4; it2++) acc += o->vec_dot(Kc, w + (size_t)(it2 & 3) * rb, xq);
                kd[rep] = (double)lv_row_bytes(t, Kc) * inner * 4 / (lv_time_s() - t0) / 1e9;
                sink += acc + tile[0];
            }
            const stat3 kgs = stats(kg, kreps), kds = stats(kd, kreps);
            double peak;
            const char *pname;
            if (t == LV_TYPE_F32 || t == LV_TYPE_F16) {
                peak = l == LV_SIMD_AVX2 ? PEAK_FMA512 / 2 : PEAK_FMA512;
                pname = l == LV_SIMD_AVX2 ? "FMA avx2" : "FMA";
            } else if (t == LV_TYPE_BF16) {
                peak = l == LV_SIMD_AVX512 && lv_qk_avx512_ops_variant(t, 1) ? PEAK_BF16 : l == LV_SIMD_AVX2 ? PEAK_FMA512 / 2 : PEAK_FMA512;
                pname = l == LV_SIMD_AVX512 && lv_qk_avx512_ops_variant(t, 1) ? "bf16 dot" : "FMA";
            } else {
                peak = PEAK_VNNI;
                pname = "int8 VNNI";
            }
            printf("| %s | %s | %.1f [%.1f-%.1f] | %.1f [%.1f-%.1f] | %.0f%% | %.1f [%.1f-%.1f] | %.1f%% (%s %.0f) | %.1f | %.1f (%.0f%%) |\n",
                   lv_type_name(t), lv_simd_name((lv_simd)l), d.med, d.lo, d.hi, d4.med, d4.lo, d4.hi, 100 * LV_MAX(d.med, d4.med) / PEAK_BW, g.med,
                   g.lo, g.hi, 100 * g.med / peak, pname, peak, kds.med, kgs.med, 100 * kgs.med / peak);
            fflush(stdout);
            (void)sink;
        }
        free(w);
    }
    {
        const size_t pn = (size_t)(ring_mb * 1048576.0);
        uint8_t *pb = xmalloc(pn);
        memset(pb, 1, pn);
        probes(pb, pn);
        free(pb);
    }
    lv_simd_set_max(lv_simd_detect());
    free(xf);
    free(y);
    free(xq);
    free(row);
    lv_threadpool_free(tp);
    return 0;
}
