/*
 * repack_experiment.c: would repacking weights at load time pay? The inner loop of the q8_0 x q8_0
 * prefill kernel on two data layouts, all data in L1, same number of multiply-adds, same run:
 *  (a) ggml's layout, as src/kernels/qk_avx512_impl.h computes it: 2 weight rows x 4 activation rows, two
 *      34-byte blocks per step, per pair vpdpbusd + vcvtdq2ps + vpermps (block scales) + vfmadd;
 *  (b) weights repacked 8 rows interleaved by 8 bytes per block (as llama.cpp's repack.cpp does
 *      for q4_0/q4_K "8x8"): per block and activation row, 4 vpdpbusd cover 8 rows, then one
 *      conversion, one scale product and one fma for all 8 rows.
 * The float work per multiply-add shrinks with the interleave, and the multiply pipes (shared by
 * vpdpbusd and vfmadd) stop being half spent on scales. The values are not meaningful (the
 * layout of (b) is only timed); it measures the instruction mix. bench/NOTES.md has the result.
 *     make bench-kernels && build/release/repack_experiment
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define NB 64 /* blocks per row: k = 2048 */
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma"),noinline))
/* (a) 2 rows x 4 cols over NB blocks; rows of 34-byte blocks, scale products precomputed per 16 blocks */
TGT static void tile_a(const uint8_t *w, const uint8_t *x, const float *prod, float *out) {
    __m512 acc[2][4];
    for (int r=0;r<2;r++) for(int c=0;c<4;c++) acc[r][c]=_mm512_setzero_ps();
    __m512i idx = _mm512_set_epi32(1,1,1,1,1,1,1,1,0,0,0,0,0,0,0,0);
    __m512 pr[2][4];
    for (int r=0;r<2;r++) for(int c=0;c<4;c++) pr[r][c]=_mm512_loadu_ps(prod + (r*4+c)*16);
    for (int b = 0; b < NB; b += 2) {
        __m512i xq[4], xu[4];
        for (int c=0;c<4;c++) { const uint8_t *p = x + c*NB*34 + b*34; xq[c] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const void*)(p+2))), _mm256_loadu_si256((const void*)(p+36)), 1); xu[c] = _mm512_xor_si512(xq[c], _mm512_set1_epi8((char)0x80)); }
        for (int r=0;r<2;r++) {
            const uint8_t *p = w + r*NB*34 + b*34;
            __m512i wq = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const void*)(p+2))), _mm256_loadu_si256((const void*)(p+36)), 1);
            __m512i wc = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), wq));
            for (int c=0;c<4;c++) acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(wc, xu[c], wq)), _mm512_permutexvar_ps(idx, pr[r][c]), acc[r][c]);
        }
        idx = _mm512_add_epi32(idx, _mm512_set1_epi32(2));
        if ((b & 15) == 14) idx = _mm512_set_epi32(1,1,1,1,1,1,1,1,0,0,0,0,0,0,0,0);
    }
    for (int r=0;r<2;r++) for(int c=0;c<4;c++) out[r*4+c] = _mm512_reduce_add_ps(acc[r][c]);
}
/* (b) 8 rows x 4 cols over NB blocks; repacked block = 8 fp16 d + 8 rows x 32 bytes interleaved by 8 bytes */
TGT static void tile_b(const uint8_t *w, const uint8_t *x, const float *dx, float *out) {
    __m512 acc[4];
    for (int c=0;c<4;c++) acc[c]=_mm512_setzero_ps();
    const __m512i dup = _mm512_set_epi32(7,7,6,6,5,5,4,4,3,3,2,2,1,1,0,0);
    for (int b = 0; b < NB; b++) {
        const uint8_t *p = w + b * (16 + 256);
        const __m512 ws = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_loadu_si128((const void*)p))));
        const __m512i w0 = _mm512_loadu_si512(p+16), w1 = _mm512_loadu_si512(p+80), w2 = _mm512_loadu_si512(p+144), w3 = _mm512_loadu_si512(p+208);
        const __m512i corr = _mm512_loadu_si512(p+16); /* stands for -128 * sum(w), stored at repack time */
        for (int c=0;c<4;c++) {
            const uint8_t *q = x + c*NB*34 + b*34 + 2;
            __m512i s = _mm512_dpbusd_epi32(corr, _mm512_xor_si512(_mm512_set1_epi64(*(const long long*)q), _mm512_set1_epi8((char)0x80)), w0);
            s = _mm512_dpbusd_epi32(s, _mm512_xor_si512(_mm512_set1_epi64(*(const long long*)(q+8)), _mm512_set1_epi8((char)0x80)), w1);
            s = _mm512_dpbusd_epi32(s, _mm512_xor_si512(_mm512_set1_epi64(*(const long long*)(q+16)), _mm512_set1_epi8((char)0x80)), w2);
            s = _mm512_dpbusd_epi32(s, _mm512_xor_si512(_mm512_set1_epi64(*(const long long*)(q+24)), _mm512_set1_epi8((char)0x80)), w3);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(ws, _mm512_set1_ps(dx[c*NB+b])), acc[c]);
        }
    }
    for (int c=0;c<4;c++) _mm512_storeu_ps(out + c*16, acc[c]);
}
int main(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx512bw")) {
        printf("repack_experiment: needs AVX-512 VNNI\n");
        return 0;
    }
    uint8_t *w = aligned_alloc(64, 65536), *x = aligned_alloc(64, 65536);
    float *prod = aligned_alloc(64, 4096), *dx = aligned_alloc(64, 4096), out[128];
    for (int i=0;i<65536;i++) { w[i]=(uint8_t)(i*7); x[i]=(uint8_t)(i*13); }
    for (int i=0;i<1024;i++) { prod[i]=1e-3f; dx[i]=1e-3f; }
    volatile float sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        const int it = 40000;
        double t0 = now();
        for (int i=0;i<it;i++) { tile_a(w, x, prod, out); tile_a(w + 2*NB*34, x, prod, out); tile_a(w + 4*NB*34, x, prod, out); tile_a(w + 6*NB*34, x, prod, out); sink += out[0]; }
        double t1 = now();
        for (int i=0;i<it;i++) { tile_b(w, x, dx, out); sink += out[0]; }
        double t2 = now();
        const double macs = 8.0 * 4 * NB * 32 * it; /* 8 rows x 4 cols x k */
        printf("8x4 tiles, k=%d, in L1: (a) ggml layout, 2-row tiles %.0f GOP/s; (b) 8-row interleaved repack %.0f GOP/s; ratio %.2f\n",
               NB*32, 2*macs/(t1-t0)/1e9, 2*macs/(t2-t1)/1e9, (t1-t0)/(t2-t1));
    }
    return 0;
}
