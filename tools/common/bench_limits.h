#ifndef LV_BENCH_LIMITS_H
#define LV_BENCH_LIMITS_H
typedef struct bench_limits {
    double read_gbs;   /* memory read bandwidth, GB/s, all threads */
    double fma_gflops; /* f32 FMA peak, GFLOP/s, all threads */
} bench_limits;
/* Measure with n_threads threads (about 1.5 s). Returns 0, or -1 if out of memory. */
int bench_measure_limits(int n_threads, bench_limits *out);
#endif
