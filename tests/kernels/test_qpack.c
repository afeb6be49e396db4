/*
 * test_qpack.c: weights repacked for the matrix kernels (qpack.h), on fresh random inputs.
 *
 *  - packing then unpacking gives back the rows byte for byte (every byte pattern; q4_K's 12-byte
 *    scale encoding included), and the layout puts a row's scale and quants where qpack.h says;
 *  - a packed activation row is the q8_0 row of from_float plus each block's widened scale and
 *    minus its quant sum (q4_K: the q8_K row plus each 32-element sub-block's sum);
 *  - the packed kernels of every level this CPU has agree with the reference (rows unpacked, the
 *    scalar q4_0/q8_0 dot product of quant.c) within the tolerance of tests/kernels/test_qkernels.c (the
 *    integer block sums are exact; one float term per block: n = k/32 + 16; q4_K's level and
 *    minimum parts counted separately), for one block, odd
 *    block counts and large k, raw random blocks and extreme values, unaligned addresses;
 *  - every column of a tile of nc columns is bit-identical to the same column alone (prefill ==
 *    decode), and a tile writes nothing outside its 16 rows x nc columns;
 *  - lv_matmul on a packed tensor gives, for every token of a batch, exactly what it gives for
 *    that token alone, and agrees with the unpacked tensor within the tolerance.
 */
#include "kernels/kernels.h"
#include "lv_test.h"
#include "kernels/qpack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const lv_type k_ptypes[] = {LV_TYPE_Q4_0, LV_TYPE_Q5_0, LV_TYPE_Q8_0, LV_TYPE_Q4_K, LV_TYPE_IQ4_XS, LV_TYPE_IQ4_NL};
#define N_PTYPES (sizeof(k_ptypes) / sizeof(k_ptypes[0]))
/* the types whose blocks are super-blocks of 256 */
static bool super256(lv_type t) { return t == LV_TYPE_Q4_K || t == LV_TYPE_IQ4_XS; }

/* 16 rows of k elements (row stride rs): quantized from random floats, or raw random bytes with
 * sane scales (every quant pattern, q8_0's -128 included), or the extremes (scale 65504). */
static void random_rows(lv_test_rng *r, lv_type t, int64_t k, uint8_t *w, size_t rs, int mode) {
    float *f = malloc(sizeof(float) * (size_t)k);
    const int64_t nb = k / lv_type_get(t)->blck_size, bs = lv_type_get(t)->type_size;
    for (int i = 0; i < LV_PACK_ROWS; i++) {
        uint8_t *row = w + (size_t)i * rs;
        if (mode == 0) {
            for (int64_t j = 0; j < k; j++) f[j] = lv_test_rng_f32(r) * (float)exp2((double)(lv_test_rng_u64(r) % 8) - 4);
            lv_quantize_row_file(t, f, row, k);
            continue;
        }
        for (int64_t j = 0; j < nb * bs; j++) row[j] = mode == 2 ? (uint8_t)((lv_test_rng_u64(r) & 1) ? 0xff : 0x80) : (uint8_t)lv_test_rng_u64(r);
        for (int64_t b = 0; b < nb; b++)
            for (int h16 = 0; h16 < (t == LV_TYPE_Q4_K ? 2 : 1); h16++) { /* q4_K: d and dmin, positive */
                const float v = mode == 2 ? 65504.0f : (float)exp2((double)(lv_test_rng_u64(r) % 16) - 12) * (1 + (float)lv_test_rng_unit(r));
                const uint16_t h = lv_fp32_to_fp16((lv_test_rng_u64(r) & 1) && t != LV_TYPE_Q4_K ? -v : v);
                memcpy(row + b * bs + 2 * h16, &h, 2);
            }
    }
    free(f);
}

/* One packed activation row for weights of type t from random floats (extreme: +-1e4, as
 * test_qkernels.c). */
static void random_packx(lv_test_rng *r, lv_type t, int64_t k, uint8_t *row, int extreme) {
    float *f = malloc(sizeof(float) * (size_t)k);
    for (int64_t j = 0; j < k; j++) f[j] = extreme ? ((lv_test_rng_u64(r) & 1) ? 1e4f : -1e4f) : lv_test_rng_f32(r);
    if (!extreme && k > 32) memset(f + 32, 0, sizeof(float) * 32); /* an all-zero block */
    lv_from_float_row(lv_vec_dot_type(t), f, row, k);
    lv_packx_finish(t, row, k);
    free(f);
}

TEST(qpack_round_trip_is_exact) {
    lv_test_rng r = {lv_test_seed() ^ 0x71};
    const int64_t sizes[] = {256, 768, 2048, 4096};
    for (size_t it = 0; it < N_PTYPES; it++)
        for (size_t s = 0; s < 4; s++) {
            const lv_type t = k_ptypes[it];
            const int64_t K = sizes[s] - (super256(t) ? 0 : 32 * (int64_t)s); /* odd block counts too */
            const size_t rb = (size_t)lv_row_bytes(t, K), rs = rb + 6, gb = lv_pack_group_bytes(t, K);
            uint8_t *w = malloc(rs * LV_PACK_ROWS), *p = malloc(gb + 1), *back = malloc(rs * LV_PACK_ROWS);
            random_rows(&r, t, K, w, rs, 1);
            p[gb] = 0x5a;
            lv_pack_rows(t, K, w, rs, p);
            CHECK(p[gb] == 0x5a, "%s k=%lld: packing wrote past its group", lv_type_name(t), (long long)K);
            memset(back, 0, rs * LV_PACK_ROWS);
            lv_unpack_rows(t, K, p, back, rs);
            for (int i = 0; i < LV_PACK_ROWS; i++)
                CHECK(memcmp(back + i * rs, w + i * rs, rb) == 0, "%s k=%lld: row %d differs after a round trip", lv_type_name(t), (long long)K, i);
            /* the layout itself: block 0's scale of row 5, and row 5's first quant byte */
            CHECK(memcmp(p + 10, w + 5 * rs, 2) == 0, "%s: row 5's scale is not at d[5]", lv_type_name(t));
            const size_t q0 = t == LV_TYPE_Q4_K ? 320 : t == LV_TYPE_IQ4_XS ? 160 : t == LV_TYPE_Q5_0 ? 96 : 32;
            const size_t wq0 = t == LV_TYPE_Q4_K ? 16 : t == LV_TYPE_IQ4_XS ? 8 : t == LV_TYPE_Q5_0 ? 6 : 2;
            CHECK(p[q0 + 5 * 4] == (uint8_t)(w[5 * rs + wq0] ^ (t == LV_TYPE_Q8_0 ? 0x80 : 0)), "%s: row 5's first quant byte is not in lane 5", lv_type_name(t));
            if (t == LV_TYPE_Q5_0) { /* the high bit of row 5's element 21 (qh bit 21) is bit 4 * 5 + 1 of mask 5 */
                uint64_t h;
                memcpy(&h, p + 32 + 8 * 5, 8);
                CHECK(((h >> 21) & 1) == ((w[5 * rs + 2 + 2] >> 5) & 1), "q5_0: row 5's element 21 high bit is not in mask 5");
            }
            if (t == LV_TYPE_IQ4_XS) { /* sub-block 5's scale of row 5: low 4 bits in the high nibble of scales_l[2], high 2 in bits 10-11 of scales_h */
                const uint8_t *blk = w + 5 * rs;
                uint16_t sh;
                memcpy(&sh, blk + 2, 2);
                const int ls = (blk[4 + 2] >> 4) | (((sh >> 10) & 3) << 4);
                CHECK((int8_t)p[32 + 16 * 5 + 5] == ls - 32, "iq4_xs: sub-block 5 of row 5: scale %d, want %d", (int8_t)p[32 + 16 * 5 + 5], ls - 32);
            }
            if (t == LV_TYPE_Q4_K) { /* sub-block 6's scale and min of row 5 */
                uint8_t sc, m;
                lv_get_scale_min_k4(6, w + 5 * rs + 4, &sc, &m);
                CHECK(p[64 + 16 * 6 + 5] == sc && p[192 + 32 * 3 + 2 * 5] == m, "q4_K: sub-block 6 of row 5: scale/min %u/%u, want %u/%u", p[64 + 16 * 6 + 5],
                      p[192 + 32 * 3 + 2 * 5], sc, m);
            }
            free(w);
            free(p);
            free(back);
        }
}

TEST(qpack_activation_rows_carry_scales_and_sums) {
    lv_test_rng r = {lv_test_seed() ^ 0x72};
    const int64_t K = 320, nb = K / 32;
    uint8_t *row = malloc(lv_packx_row_bytes(LV_TYPE_Q4_0, K)), *q8 = malloc((size_t)lv_row_bytes(LV_TYPE_Q8_0, K));
    float f[320];
    for (int64_t j = 0; j < K; j++) f[j] = lv_test_rng_f32(&r) * 3;
    lv_from_float_row(LV_TYPE_Q8_0, f, q8, K);
    lv_from_float_row(LV_TYPE_Q8_0, f, row, K);
    lv_packx_finish(LV_TYPE_Q4_0, row, K);
    CHECK(memcmp(row, q8, (size_t)lv_row_bytes(LV_TYPE_Q8_0, K)) == 0, "the q8_0 part changed");
    CHECK(lv_packx_row_bytes(LV_TYPE_Q4_0, K) >= (size_t)lv_row_bytes(LV_TYPE_Q8_0, K) + (size_t)nb * 8, "row bytes");
    const lv_block_q8_0 *b = (const lv_block_q8_0 *)q8;
    const float *d = (const float *)(row + lv_packx_row_bytes(LV_TYPE_Q4_0, K) - (size_t)nb * 8);
    const int32_t *ns = (const int32_t *)(d + nb);
    for (int64_t i = 0; i < nb; i++) {
        int s = 0;
        for (int j = 0; j < 32; j++) s += b[i].qs[j];
        CHECK(d[i] == lv_fp16_to_fp32(b[i].d) && d[i] != 0, "block %lld: scale %g vs %g", (long long)i, (double)d[i], (double)lv_fp16_to_fp32(b[i].d));
        CHECK(ns[i] == -s, "block %lld: nsum %d vs %d", (long long)i, ns[i], -s);
    }
    free(row);
    free(q8);
    /* q4_K: the q8_K row, then the 32-element sums */
    const int64_t K2 = 512;
    float f2[512];
    uint8_t *row2 = malloc(lv_packx_row_bytes(LV_TYPE_Q4_K, K2));
    for (int64_t j = 0; j < K2; j++) f2[j] = lv_test_rng_f32(&r);
    lv_from_float_row(LV_TYPE_Q8_K, f2, row2, K2);
    lv_packx_finish(LV_TYPE_Q4_K, row2, K2);
    const lv_block_q8_K *k8 = (const lv_block_q8_K *)row2;
    const int16_t *sb = (const int16_t *)(row2 + 2 * sizeof(lv_block_q8_K));
    CHECK(lv_packx_row_bytes(LV_TYPE_Q4_K, K2) == 2 * sizeof(lv_block_q8_K) + 32, "q4_K row bytes %zu", lv_packx_row_bytes(LV_TYPE_Q4_K, K2));
    for (int i = 0; i < 16; i++) {
        int s = 0;
        for (int j = 0; j < 32; j++) s += k8[i / 8].qs[32 * (i % 8) + j];
        CHECK(sb[i] == s, "q4_K sub-block %d: sum %d vs %d", i, sb[i], s);
    }
    free(row2);
}

/* |fast - ref| bound of test_qkernels.c for one row and activation */
static double tolerance(lv_type t, int64_t K, const uint8_t *w, const uint8_t *x, float *wd, float *xd) {
    lv_to_float_row(t, w, wd, K);
    lv_to_float_row(lv_vec_dot_type(t), x, xd, K);
    double M = 0;
    if (t == LV_TYPE_Q4_K) { /* the level and minimum parts separately: the minimum part is the row with its quants zeroed */
        const size_t rb = (size_t)lv_row_bytes(t, K);
        uint8_t *z = malloc(rb);
        float *wm = malloc(sizeof(float) * (size_t)K);
        memcpy(z, w, rb);
        for (int64_t b = 0; b < K / 256; b++) memset(z + b * 144 + 16, 0, 128);
        lv_to_float_row(t, z, wm, K);
        for (int64_t i = 0; i < K; i++) M += (fabs((double)wd[i] - wm[i]) + fabs((double)wm[i])) * fabs((double)xd[i]);
        free(z);
        free(wm);
        return 2 * ((double)K / 32 + 16 + 4) * 0x1p-24 * M + 1e-30;
    }
    for (int64_t i = 0; i < K; i++) M += fabs((double)wd[i]) * fabs((double)xd[i]);
    return 2 * ((double)K / 32 + 16 + 4) * 0x1p-24 * M + 1e-30;
}

static void check_gemm(lv_test_rng *r, const lv_pack_ops *ops, lv_type t, int64_t K, int wmode, int xext, size_t off) {
    enum { C = LV_PACK_MAX_COLS, R = LV_PACK_ROWS };
    const size_t rb = (size_t)lv_row_bytes(t, K), xs = lv_packx_row_bytes(t, K) + 4, ys = R + 3;
    uint8_t *w = malloc(rb * R), *gbase = malloc(lv_pack_group_bytes(t, K) + 64), *xbase = malloc(xs * C + 64);
    uint8_t *g = gbase + off, *x = xbase + off * 4 % 64;
    float *wd = malloc(sizeof(float) * (size_t)K), *xd = malloc(sizeof(float) * (size_t)K);
    float ref[C * R], alone[C * R], y[C * (R + 3)];
    random_rows(r, t, K, w, rb, wmode);
    lv_pack_rows(t, K, w, rb, g);
    for (int c = 0; c < C; c++) random_packx(r, t, K, x + c * xs, xext);
    lv_pack_gemm_ref(t, K, g, x, xs, ref, R, C);
    for (int c = 0; c < C; c++) {
        ops->gemm(K, g, x + c * xs, xs, alone + c * R, R, 1);
        for (int i = 0; i < R; i++) {
            const double tol = tolerance(t, K, w + i * rb, x + c * xs, wd, xd);
            CHECK(fabs((double)alone[c * R + i] - ref[c * R + i]) <= tol, "%s k=%lld (weights %d, x %d): row %d col %d: %.9g vs reference %.9g (tolerance %.3g)",
                  lv_type_name(t), (long long)K, wmode, xext, i, c, (double)alone[c * R + i], (double)ref[c * R + i], tol);
        }
    }
    for (int nc = 1; nc <= C; nc++) {
        const int c0 = C - nc; /* the last nc columns */
        for (size_t i = 0; i < sizeof(y) / sizeof(y[0]); i++) y[i] = -12345.0f;
        ops->gemm(K, g, x + (size_t)c0 * xs, xs, y, ys, nc);
        for (int c = 0; c < C; c++)
            for (int i = 0; i < (int)ys; i++) {
                const float got = y[(size_t)c * ys + (size_t)i];
                if (c < nc && i < R) {
                    const float want = alone[(c0 + c) * R + i];
                    CHECK(memcmp(&got, &want, 4) == 0, "%s k=%lld tile of %d columns: row %d col %d %.9g, alone %.9g (must be identical)",
                          lv_type_name(t), (long long)K, nc, i, c, (double)got, (double)want);
                } else {
                    CHECK(got == -12345.0f, "%s tile of %d columns wrote outside at (%d, %d)", lv_type_name(t), nc, c, i);
                }
            }
    }
    free(w);
    free(gbase);
    free(xbase);
    free(wd);
    free(xd);
}

TEST(qpack_kernels_match_the_reference) {
    lv_test_rng r = {lv_test_seed() ^ 0x73};
    const int64_t sizes[] = {32, 96, 13 * 32, 2048, 8192};
    int levels = 0;
    for (size_t it = 0; it < N_PTYPES; it++) {
        const lv_type t = k_ptypes[it];
        for (int l = 0; l <= (int)lv_simd_detect(); l++) {
            const lv_pack_ops *ops = lv_pack_ops_get(t, (lv_simd)l);
            if (!ops) continue;
            levels++;
            CHECK(ops->type == t, "%s at %s: table of %s", lv_type_name(t), lv_simd_name((lv_simd)l), lv_type_name(ops->type));
            for (size_t s = 0; s < 5; s++) {
                if (sizes[s] > 2048 && lv_test_quick()) continue;
                const int64_t K = super256(t) ? sizes[s] / 32 * 256 : sizes[s]; /* 1, 3, 13, 64, 256 super-blocks */
                if (K > 16384 && lv_test_quick()) continue;
                check_gemm(&r, ops, t, K, 0, 0, 0);
                check_gemm(&r, ops, t, K, 1, 0, 2);
                check_gemm(&r, ops, t, K, 2, 1, 6);
                if (lv_test_failures) return;
            }
        }
    }
    if (!levels) SKIP("no packed kernels on this CPU (they need AVX2 or AVX-512 VNNI): only the layout is tested");
}

/* N = 53: three packed groups and 5 rows that stay in the file's layout (a row count that is not a
 * multiple of 16, as Qwen2.5-VL's 3420-row FFN) */
TEST(qpack_matmul_batch_equals_token_by_token) {
    lv_test_rng r = {lv_test_seed() ^ 0x74};
    const int64_t K = 512, N = 53, T = 11;
    lv_threadpool *tp = lv_threadpool_create(2);
    REQUIRE(tp, "pool");
    float *x = malloc(sizeof(float) * K * T), *yb = malloc(sizeof(float) * N * T), *y1 = malloc(sizeof(float) * N), *yu = malloc(sizeof(float) * N * T);
    float bias[53], *wd = malloc(sizeof(float) * K), *xd = malloc(sizeof(float) * K);
    uint8_t *xq = malloc((size_t)(4 * K * T + 64)), *xv = malloc((size_t)lv_row_bytes(LV_TYPE_Q8_K, K) + 64);
    for (int64_t i = 0; i < K * T; i++) x[i] = lv_test_rng_f32(&r);
    for (int i = 0; i < N; i++) bias[i] = lv_test_rng_f32(&r);
    for (size_t it = 0; it < N_PTYPES; it++) {
        const lv_type t = k_ptypes[it];
        const int64_t rb = lv_row_bytes(t, K), gb = (int64_t)lv_pack_group_bytes(t, K);
        const int64_t G = (N + LV_PACK_ROWS - 1) / LV_PACK_ROWS;
        uint8_t *wq = malloc((size_t)(rb * G * LV_PACK_ROWS)), *wp = malloc((size_t)(gb * G));
        for (int64_t g = 0; g < G; g++) {
            random_rows(&r, t, K, wq + g * LV_PACK_ROWS * rb, (size_t)rb, 0);
            if ((g + 1) * LV_PACK_ROWS <= N) lv_pack_rows(t, K, wq + g * LV_PACK_ROWS * rb, (size_t)rb, wp + g * gb);
        }
        lv_tensor W = {"w", t, {K, N, 1, 1}, rb, wq, NULL};
        lv_tensor P = {"w", t, {K, N, 1, 1}, rb, wq, wp};
        lv_matmul(tp, &W, x, T, yu, xq, bias);
        lv_matmul(tp, &P, x, T, yb, xq, bias);
        for (int64_t tt = 0; tt < T; tt++) {
            lv_matmul(tp, &P, x + tt * K, 1, y1, xq, bias);
            lv_from_float_row(lv_vec_dot_type(t), x + tt * K, xv, K);
            for (int64_t n = 0; n < N; n++) {
                const float got = yb[tt * N + n];
                CHECK(memcmp(&got, &y1[n], 4) == 0, "%s token %lld row %lld: batch %.9g, alone %.9g (must be identical)", lv_type_name(t), (long long)tt,
                      (long long)n, (double)got, (double)y1[n]);
                const double tol = tolerance(t, K, wq + n * rb, xv, wd, xd) + 1e-6 * fabs((double)bias[n]);
                CHECK(fabs((double)got - yu[tt * N + n]) <= tol, "%s token %lld row %lld: packed %.9g, unpacked %.9g", lv_type_name(t), (long long)tt,
                      (long long)n, (double)got, (double)yu[tt * N + n]);
            }
        }
        free(wq);
        free(wp);
    }
    lv_threadpool_free(tp);
    free(x);
    free(yb);
    free(y1);
    free(yu);
    free(wd);
    free(xd);
    free(xq);
    free(xv);
}
