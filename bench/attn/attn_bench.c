/*
 * attn_bench.c: the attention kernel alone, at decode (one token, G query heads) and prefill
 * (T tokens x G heads) shapes, over n cached tokens, f16 cache, head dim 64. Reports keys/s per
 * query row, GFLOP/s (4 Dk flops per row and key) and GB/s of KV read, for comparing kernel
 * changes (`perf stat -e instructions` makes it repeatable on a busy machine).
 * With KEEP < 100, only about KEEP% of the 64-token pages are read, chosen at random and walked in
 * order, as a decode step walks an LServe selection (the rates then count the pages read).
 * Build: make bench-attn; run: build/release/attn_bench [n] [reps] [G] [T] [KEEP]  (defaults 4096 200 3 16 100)
 */
#include "kernels/kernels.h"
#include "kernels/qkernels.h"
#include "gguf/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const int n = argc > 1 ? atoi(argv[1]) : 4096, reps = argc > 2 ? atoi(argv[2]) : 200;
    const int G = argc > 3 ? atoi(argv[3]) : 3, T = argc > 4 ? atoi(argv[4]) : 16, keep = argc > 5 ? atoi(argv[5]) : 100;
    enum { D = 64, P = 64 };
    if (n < T || n < 1 || reps < 1 || G < 1 || G > 32 || T < 1 || T > 4096 || keep < 1 || keep > 100) {
        fprintf(stderr, "usage: attn_bench [n >= T] [reps] [G 1..32] [T 1..4096] [KEEP 1..100]\n");
        return 2;
    }
    uint16_t *k = malloc(sizeof(uint16_t) * (size_t)n * D), *v = malloc(sizeof(uint16_t) * (size_t)n * D);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n * D; i++) {
        k[i] = lv_fp32_to_fp16((float)(((unsigned)i * 7919u) % 1000) / 1000.0f - 0.5f);
        v[i] = lv_fp32_to_fp16((float)(((unsigned)i * 104729u) % 1000) / 1000.0f - 0.5f);
    }
    for (int i = 0; i < n; i++) pos[i] = i;
    lv_attn_span *spans = malloc(sizeof(lv_attn_span) * (size_t)(n / P + 1));
    int ns = 0, nread = 0;
    unsigned rng = 12345u;
    for (int i = 0; i < n; i += P) {
        rng = rng * 1103515245u + 12345u;
        if (i + P < n && (int)((rng >> 16) % 100) >= keep) continue; /* the last page is always read */
        spans[ns++] = (lv_attn_span){k + (size_t)i * D, v + (size_t)i * D, pos + i, n - i < P ? n - i : P, P}; /* pages of (D, P) keys */
        nread += spans[ns - 1].n;
    }
    float *q = malloc(sizeof(float) * (size_t)T * G * D), *out = malloc(sizeof(float) * (size_t)T * G * D);
    for (int i = 0; i < T * G * D; i++) q[i] = (float)(i % 17) / 17.0f - 0.5f;
    float *scratch = malloc(sizeof(float) * lv_attn_scratch_floats(T * G, D, D));
    int32_t *qpos = malloc(sizeof(int32_t) * (size_t)T);
    for (int t = 0; t < T; t++) qpos[t] = n - T + t;
    for (int shape = 0; shape < 2; shape++) {
        const int nt = shape ? T : 1;
        lv_attn_job job = {.q = q, .q_tok_stride = G * D, .q_head_stride = D, .out = out, .out_tok_stride = G * D, .out_head_stride = D,
                           .pos = shape ? qpos : &qpos[T - 1], .n_tok = nt, .n_head = G, .spans = spans, .n_spans = ns, .scale = 0.125f,
                           .kv_type = LV_KV_F16, .kv_type_v = LV_KV_F16, .Dk = D, .Dv = D};
        lv_attn(&job, scratch);
        const double t0 = now_s();
        for (int r = 0; r < reps; r++) lv_attn(&job, scratch);
        const double dt = (now_s() - t0) / reps;
        printf("%s (%s): %d tokens x %d heads over %d keys: %.3f ms, %.1f Mkeys/s per query row, %.1f GFLOP/s, KV %.2f GB/s\n",
               shape ? "prefill" : "decode ", lv_simd_name(lv_simd_active()), nt, G, nread, dt * 1e3, (double)nread * nt * G / dt / 1e6,
               4.0 * D * nread * nt * G / dt / 1e9, (double)nread * 2 * D * 2 / dt / 1e9);
    }
    free(k);
    free(v);
    free(pos);
    free(spans);
    free(scratch);
    free(q);
    free(out);
    free(qpos);
    return 0;
}
