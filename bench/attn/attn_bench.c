/*
 * attn_bench.c: the attention kernel alone, at decode (one token, G query heads) and prefill
 * (T tokens x G heads) shapes, over n cached tokens, f16 cache, head dim 64. Reports keys/s per
 * query row, GFLOP/s (4 Dk flops per row and key) and GB/s of KV read, for comparing kernel
 * changes (`perf stat -e instructions` makes it repeatable on a busy machine).
 * With KEEP < 100, only about KEEP% of the 64-token pages are read, chosen at random and walked in
 * order, as a decode step walks an LServe selection (the rates then count the pages read).
 * TYPE (f16, q8_0 or q4_0) is the cache type of keys and values (quantized pages as kv.c lays them
 * out: each token's blocks row after row, the page's scales block by block).
 * POSITIONS: how the spans keep the keys' positions (lv_attn_span): pos32 (an array), run (a page's
 * base alone, as the KV cache keeps consecutive positions), off16 (a base and 16-bit offsets).
 * Build: make bench-attn; run: build/release/attn_bench [n] [reps] [G] [T] [KEEP] [TYPE] [POSITIONS]
 * (defaults 4096 200 3 16 100 f16 pos32)
 */
#include "kernels/kernels.h"
#include "kernels/qkernels.h"
#include "gguf/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const int n = argc > 1 ? atoi(argv[1]) : 4096, reps = argc > 2 ? atoi(argv[2]) : 200;
    const int G = argc > 3 ? atoi(argv[3]) : 3, T = argc > 4 ? atoi(argv[4]) : 16, keep = argc > 5 ? atoi(argv[5]) : 100;
    const char *tname = argc > 6 ? argv[6] : "f16";
    const lv_kv_type kt = !strcmp(tname, "q8_0") ? LV_KV_Q8_0 : !strcmp(tname, "q4_0") ? LV_KV_Q4_0 : LV_KV_F16;
    const char *fname = argc > 7 ? argv[7] : "pos32";
    const int pos_form = !strcmp(fname, "run") ? 1 : !strcmp(fname, "off16") ? 2 : 0;
    enum { D = 64, P = 64 };
    if (n < T || n < 1 || reps < 1 || G < 1 || G > 32 || T < 1 || T > 4096 || keep < 1 || keep > 100 || (kt == LV_KV_F16 && strcmp(tname, "f16"))) {
        fprintf(stderr, "usage: attn_bench [n >= T] [reps] [G 1..32] [T 1..4096] [KEEP 1..100] [f16|q8_0|q4_0]\n");
        return 2;
    }
    const int64_t rowq = lv_kv_quantized(kt) ? lv_kv_qrow_bytes(kt, D) : 0;
    const int npages = (n + P - 1) / P, nb = D / LV_KV_QBLOCK;
    int8_t *kq = malloc((size_t)npages * P * (size_t)(rowq ? rowq : 1)), *vq = malloc((size_t)npages * P * (size_t)(rowq ? rowq : 1));
    uint16_t *ks = malloc(sizeof(uint16_t) * (size_t)npages * P * nb), *vs = malloc(sizeof(uint16_t) * (size_t)npages * P * nb);
    uint16_t *k = malloc(sizeof(uint16_t) * (size_t)n * D), *v = malloc(sizeof(uint16_t) * (size_t)n * D);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n * D; i++) {
        k[i] = lv_fp32_to_fp16((float)(((unsigned)i * 7919u) % 1000) / 1000.0f - 0.5f);
        v[i] = lv_fp32_to_fp16((float)(((unsigned)i * 104729u) % 1000) / 1000.0f - 0.5f);
    }
    for (int i = 0; i < n; i++) pos[i] = i;
    uint16_t *off16 = malloc(sizeof(uint16_t) * (size_t)n);
    for (int i = 0; i < n; i++) off16[i] = (uint16_t)(i % P);
    if (rowq) /* quantized pages: token j of page p at row j, block b's scale at ks[(p * nb + b) * P + j] */
        for (int j = 0; j < n; j++) {
            float kr[D], vr[D];
            for (int d = 0; d < D; d++) {
                kr[d] = lv_fp16_to_fp32(k[(size_t)j * D + d]);
                vr[d] = lv_fp16_to_fp32(v[(size_t)j * D + d]);
            }
            const int p = j / P, jj = j % P;
            for (int b = 0; b < nb; b++) {
                if (kt == LV_KV_Q8_0) {
                    lv_block_q8_0 bk, bv;
                    lv_quantize_q8_0_act(kr + 32 * b, &bk, 32);
                    lv_quantize_q8_0_act(vr + 32 * b, &bv, 32);
                    memcpy(kq + (size_t)j * rowq + 32 * b, bk.qs, 32);
                    memcpy(vq + (size_t)j * rowq + 32 * b, bv.qs, 32);
                    ks[((size_t)p * nb + b) * P + jj] = bk.d;
                    vs[((size_t)p * nb + b) * P + jj] = bv.d;
                } else {
                    lv_block_q4_0 bk, bv;
                    lv_quantize_q4_0_ref(kr + 32 * b, &bk, 32);
                    lv_quantize_q4_0_ref(vr + 32 * b, &bv, 32);
                    memcpy(kq + (size_t)j * rowq + 16 * b, bk.qs, 16);
                    memcpy(vq + (size_t)j * rowq + 16 * b, bv.qs, 16);
                    ks[((size_t)p * nb + b) * P + jj] = bk.d;
                    vs[((size_t)p * nb + b) * P + jj] = bv.d;
                }
            }
        }
    lv_attn_span *spans = malloc(sizeof(lv_attn_span) * (size_t)(n / P + 1));
    int ns = 0, nread = 0;
    unsigned rng = 12345u;
    for (int i = 0; i < n; i += P) {
        rng = rng * 1103515245u + 12345u;
        if (i + P < n && (int)((rng >> 16) % 100) >= keep) continue; /* the last page is always read */
        spans[ns++] = (lv_attn_span){k + (size_t)i * D, v + (size_t)i * D, pos + i, n - i < P ? n - i : P, P}; /* pages of (D, P) keys */
        if (rowq) {
            spans[ns - 1].k = kq + (size_t)i * rowq;
            spans[ns - 1].v = vq + (size_t)i * rowq;
            spans[ns - 1].ks = ks + (size_t)(i / P) * nb * P;
            spans[ns - 1].vs = vs + (size_t)(i / P) * nb * P;
        }
        if (pos_form == 1) { /* as a KV page keeps consecutive positions: its base alone */
            spans[ns - 1].pos = NULL;
            spans[ns - 1].pos0 = i;
        } else if (pos_form == 2) { /* a base and 16-bit offsets */
            spans[ns - 1].pos = NULL;
            spans[ns - 1].pos16 = off16 + i;
            spans[ns - 1].pos0 = i - (i % P);
        }
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
                           .kv_type = kt, .kv_type_v = kt, .Dk = D, .Dv = D};
        lv_attn(&job, scratch);
        const double t0 = now_s();
        for (int r = 0; r < reps; r++) lv_attn(&job, scratch);
        const double dt = (now_s() - t0) / reps;
        printf("%s %s (%s): %d tokens x %d heads over %d keys: %.3f ms, %.1f Mkeys/s per query row, %.1f GFLOP/s, KV %.2f GB/s\n",
               lv_kv_type_name(kt), shape ? "prefill" : "decode ", lv_simd_name(lv_simd_active()), nt, G, nread, dt * 1e3, (double)nread * nt * G / dt / 1e6,
               4.0 * D * nread * nt * G / dt / 1e9, (double)nread * 2 * (rowq ? (double)rowq + 2.0 * nb : 2.0 * D) / dt / 1e9);
    }
    free(k);
    free(v);
    free(pos);
    free(off16);
    free(spans);
    free(scratch);
    free(q);
    free(out);
    free(qpos);
    free(kq);
    free(vq);
    free(ks);
    free(vs);
    return 0;
}
