/*
 * test_qkernels.c: the per-type kernels of every SIMD level this CPU supports (qkernels.h)
 * against the scalar level, the reference, on fresh random inputs:
 *
 *  - from_float is bit-identical to the scalar conversion (finite inputs; ties, zeros, subnormals,
 *    huge values and NaN for the float types);
 *  - vec_dot and every gemm tile shape (nr, nc in 1..4) agree with the scalar reference within
 *    the tolerance below, for k of one block, odd block counts and k not a multiple of the SIMD
 *    width, large k, rows at unaligned addresses and strides, all-zero rows and extreme values;
 *  - at each level every gemm tile gives, for every pair, exactly (bit for bit) what vec_dot gives
 *    for that pair, and writes nothing outside its tile: this is what makes prefill and
 *    token-by-token decode produce identical logits (tests/model/test_golden.c checks it end to end).
 *
 * Tolerance (docs/testing.md): the integer block sums are exact at every level, so fast and
 * reference results differ only by the order of float operations. With u = 2^-24 and n the length
 * of the longest chain of float additions (k/8 + 16 for the float types: one lane of an 8- or
 * 16-lane accumulator plus the lane reduction; k/32 + 16 for the quantized types: one term per
 * block), recursive summation errs by at most n * u * sum|terms| (Higham, Accuracy and Stability,
 * 4.2), each term carries two or three roundings of its own (scale products, fma), and the
 * reference itself rounds once: we assert |fast - ref| <= 2 (n + 4) u M, where M is the sum of
 * the magnitudes of all products (for weights with a minimum, q4_1/q5_1/q4_K/q5_K, the level and
 * minimum parts counted separately). bf16 at the AVX-512 BF16 level uses vdpbf16ps, which treats
 * subnormal inputs as zero: the inputs here have no bf16 subnormals.
 */
#include "lv_test.h"
#include "kernels/qkernels.h"
#include "gguf/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const lv_type k_types[] = {LV_TYPE_F32,  LV_TYPE_F16,  LV_TYPE_BF16, LV_TYPE_Q8_0, LV_TYPE_Q4_0, LV_TYPE_Q4_1,
                                  LV_TYPE_Q5_0, LV_TYPE_Q5_1, LV_TYPE_Q4_K, LV_TYPE_Q5_K, LV_TYPE_Q6_K, LV_TYPE_Q2_K,
                                  LV_TYPE_Q3_K, LV_TYPE_IQ4_NL, LV_TYPE_IQ4_XS};
#define N_TYPES ((int)(sizeof(k_types) / sizeof(k_types[0])))

typedef struct variant {
    const char *name;
    const lv_qtype_ops *ops;
} variant;

/* The kernels of type t at every level this CPU supports (scalar first). Missing kernels at a
 * supported level are a failure. */
static int variants_of(lv_type t, variant *v) {
    int n = 0;
    v[n++] = (variant){"scalar", lv_qk_scalar_ops(t)};
    const lv_simd det = lv_simd_detect();
    if (det >= LV_SIMD_AVX2) {
        const lv_qtype_ops *o = lv_qk_avx2_ops(t);
        CHECK(o != NULL, "%s: no avx2 kernels", lv_type_name(t));
        if (o) v[n++] = (variant){"avx2", o};
    }
    if (det >= LV_SIMD_AVX512) {
        const lv_qtype_ops *o = lv_qk_avx512_ops_variant(t, 0);
        CHECK(o != NULL, "%s: no avx512 kernels", lv_type_name(t));
        if (o) v[n++] = (variant){"avx512", o};
        if ((o = lv_qk_avx512_ops_variant(t, 1))) v[n++] = (variant){"avx512+vnni/bf16", o};
    }
    return n;
}

static int64_t blck(lv_type t) { return lv_type_get(t)->blck_size; }

/* A buffer of exactly n bytes placed `off` bytes past a 64-byte boundary, so that reading past
 * its end is caught under AddressSanitizer and SIMD loads see unaligned addresses. */
typedef struct buf {
    uint8_t *base, *p;
} buf;
static buf buf_new(size_t n, size_t off) {
    buf b;
    b.base = aligned_alloc(64, (n + off + 63) / 64 * 64 + 64);
    b.p = b.base + off;
    return b;
}
static void buf_free(buf *b) { free(b->base); }

/* Fill x (k floats) with one of several input patterns. */
enum { PAT_NORMAL, PAT_WIDE, PAT_ZERO, PAT_EXTREME, PAT_TIES, PAT_COUNT };
static void fill(lv_test_rng *r, float *x, int64_t k, int pat, lv_type vt) {
    for (int64_t i = 0; i < k; i++) {
        float v = lv_test_rng_f32(r);
        switch (pat) {
        case PAT_NORMAL: break;
        case PAT_WIDE: /* magnitudes 2^-20 .. 2^20 (types with fp16 values or scales: 2^-14 .. 2^10, no overflow) */
            v *= vt == LV_TYPE_F32 || vt == LV_TYPE_BF16 ? (float)exp2((double)(lv_test_rng_u64(r) % 40) - 20)
                                                         : (float)exp2((double)(lv_test_rng_u64(r) % 24) - 14);
            break;
        case PAT_ZERO: v = 0; break;
        case PAT_EXTREME: { /* the largest values each type holds without overflowing a long sum */
            /* (q8_1 stores fp16(d * sum(q)): 32 * 2000 stays below fp16's 65504) */
            const float big = vt == LV_TYPE_F16 ? 60000.0f : vt == LV_TYPE_F32 || vt == LV_TYPE_BF16 ? 1e15f : vt == LV_TYPE_Q8_1 ? 2000.0f : 1e4f;
            v = (lv_test_rng_u64(r) & 1) ? big : -big;
            if (lv_test_rng_u64(r) % 5 == 0) v *= lv_test_rng_f32(r);
            break;
        }
        case PAT_TIES: v = (float)((int)(lv_test_rng_u64(r) % 255) - 127) * 0.5f; break; /* many halves: rounding ties */
        }
        x[i] = v;
    }
    if (pat == PAT_ZERO && k > 1) x[k - 1] = 0;
}

/* The float parts of weights with a minimum (q4_1, q5_1: m; q4_K, q5_K: -dmin*m[j]) per element:
 * the row dequantized with every level zeroed. Zero for the other types. */
static void min_parts(lv_type t, const uint8_t *w, int64_t K, float *out, uint8_t *scratch) {
    const int64_t nb = K / blck(t), bs = lv_type_get(t)->type_size;
    memcpy(scratch, w, (size_t)(nb * bs));
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *p = scratch + b * bs;
        switch (t) {
        case LV_TYPE_Q4_1: memset(p + 4, 0, 16); break;
        case LV_TYPE_Q5_1: memset(p + 4, 0, 20); break;
        case LV_TYPE_Q4_K: memset(p + 16, 0, 128); break;
        case LV_TYPE_Q5_K: memset(p + 16, 0, 160); break;
        case LV_TYPE_Q2_K: memset(p + 16, 0, 64); break;
        default: memset(out, 0, sizeof(float) * (size_t)K); return;
        }
    }
    lv_to_float_row(t, scratch, out, K);
}

/* Random weight blocks straight from random bytes (every level pattern, q8_0's -128 included)
 * with sane finite scales: d fields set to fp16 of |N| in [2^-12, 2^4) (or 65504 for extremes). */
static void random_blocks(lv_test_rng *r, lv_type t, uint8_t *w, int64_t K, int extreme) {
    const int64_t nb = K / blck(t), bs = lv_type_get(t)->type_size;
    for (int64_t i = 0; i < nb * bs; i++) w[i] = extreme ? (uint8_t)((lv_test_rng_u64(r) & 1) ? 0xff : 0x80) : (uint8_t)lv_test_rng_u64(r);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *p = w + b * bs;
        uint16_t h[2];
        for (int j = 0; j < 2; j++) {
            const float v = extreme ? 65504.0f : (float)exp2((double)(lv_test_rng_u64(r) % 16) - 12) * (1 + (float)lv_test_rng_unit(r));
            h[j] = lv_fp32_to_fp16((lv_test_rng_u64(r) & 1) && t != LV_TYPE_Q4_K && t != LV_TYPE_Q5_K && t != LV_TYPE_Q2_K ? -v : v);
        }
        switch (t) {
        case LV_TYPE_Q6_K: memcpy(p + 208, &h[0], 2); break;
        case LV_TYPE_Q2_K: memcpy(p + 80, h, 4); break;
        case LV_TYPE_Q3_K: memcpy(p + 108, &h[0], 2); break;
        case LV_TYPE_Q4_1:
        case LV_TYPE_Q5_1:
        case LV_TYPE_Q4_K:
        case LV_TYPE_Q5_K: memcpy(p, h, 4); break;
        default: memcpy(p, &h[0], 2); break;
        }
    }
}

/* |fast - ref| bound of the header comment */
static double tolerance(lv_type t, int64_t K, const uint8_t *w, const uint8_t *xq, float *wd, float *xd, float *wm, uint8_t *scratch) {
    lv_to_float_row(t, w, wd, K);
    lv_to_float_row(lv_vec_dot_type(t), xq, xd, K);
    min_parts(t, w, K, wm, scratch);
    double M = 0;
    for (int64_t i = 0; i < K; i++) M += (fabs((double)wd[i] - wm[i]) + fabs((double)wm[i])) * fabs((double)xd[i]);
    const bool flt = t == LV_TYPE_F32 || t == LV_TYPE_F16 || t == LV_TYPE_BF16;
    const double n = (flt ? (double)K / 8 : (double)K / 32) + 16;
    return 2 * (n + 4) * 0x1p-24 * M + 1e-30;
}

TEST(qkernels_every_level_has_every_type) {
    for (int it = 0; it < N_TYPES; it++) {
        const lv_type t = k_types[it];
        variant v[8];
        const int n = variants_of(t, v);
        for (int i = 0; i < n; i++) {
            CHECK(v[i].ops->type == t && v[i].ops->vec_dot_type == lv_vec_dot_type(t), "%s %s: type %d / %d", lv_type_name(t), v[i].name,
                  v[i].ops->type, v[i].ops->vec_dot_type);
            CHECK(v[i].ops->from_float && v[i].ops->vec_dot && v[i].ops->gemm, "%s %s: missing operations", lv_type_name(t), v[i].name);
        }
        /* the dispatcher gives the best level, capped */
        for (int l = 0; l < LV_SIMD_COUNT; l++) {
            const lv_qtype_ops *o = lv_qtype_ops_get(t, (lv_simd)l);
            CHECK(o != NULL && o->type == t, "%s: no kernels at %s", lv_type_name(t), lv_simd_name((lv_simd)l));
            if (l == LV_SIMD_SCALAR) CHECK(o == lv_qk_scalar_ops(t), "%s: the scalar cap gives the reference", lv_type_name(t));
        }
    }
    printf("  levels on this CPU: best %s\n", lv_simd_name(lv_simd_detect()));
}

TEST(qkernels_from_float_is_bit_identical) {
    lv_test_rng r = {lv_test_seed() ^ 0x51};
    const int64_t sizes[] = {256, 512, 256 * 9, 4096};
    static float x[4096 + 16];
    static uint8_t want[4096 * 4 + 64], got[4096 * 4 + 64];
    for (int it = 0; it < N_TYPES; it++) {
        const lv_type t = k_types[it], vt = lv_vec_dot_type(t);
        variant v[8];
        const int n = variants_of(t, v);
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
            for (int pat = 0; pat < PAT_COUNT; pat++) {
                /* float types: also sizes that are not a multiple of 16 */
                const int64_t K = blck(vt) == 1 ? sizes[s] - (int64_t)(lv_test_rng_u64(&r) % 17) : sizes[s];
                fill(&r, x, K, pat, vt);
                if (blck(vt) == 1 && pat == PAT_WIDE) { /* special values for the float conversions */
                    const float sp[] = {0.0f, -0.0f, 1e-40f, -1e-45f, 65504.0f, 65520.0f, 1e30f, INFINITY, -INFINITY, NAN, -NAN, 3.0e-8f};
                    for (size_t j = 0; j < sizeof(sp) / sizeof(sp[0]) && (int64_t)j < K; j++) x[j * 7 % K] = sp[j];
                }
                const size_t bytes = (size_t)lv_row_bytes(vt, K);
                v[0].ops->from_float(x, want, K);
                for (int i = 1; i < n; i++) {
                    memset(got, 0xa5, bytes + 64);
                    v[i].ops->from_float(x, got, K);
                    CHECK(memcmp(got, want, bytes) == 0, "%s %s from_float (%s, k=%lld, pattern %d) differs from the scalar conversion",
                          lv_type_name(t), v[i].name, lv_type_name(vt), (long long)K, pat);
                    CHECK(got[bytes] == 0xa5, "%s %s from_float wrote past the row", lv_type_name(t), v[i].name);
                }
            }
    }
}

/* One case: R weight rows x C activation rows of k elements at the given misalignments, checked
 * at every variant: vec_dot within tolerance of the reference, each gemm tile bit-identical to
 * vec_dot. */
static void check_case(lv_test_rng *r, lv_type t, int64_t K, int wpat, int xpat, int raw_weights, size_t woff, size_t xoff) {
    enum { R = 4, C = 4 };
    const lv_type vt = lv_vec_dot_type(t);
    const size_t wrow = (size_t)lv_row_bytes(t, K), xrow = (size_t)lv_row_bytes(vt, K);
    /* unaligned strides: a few bytes more than a row, keeping the element alignment of the types */
    const size_t ws = wrow + (lv_test_rng_u64(r) & 1) * 4, xs = xrow + (lv_test_rng_u64(r) & 1) * 4;
    buf wb = buf_new((R - 1) * ws + wrow, woff), xb = buf_new((C - 1) * xs + xrow, xoff);
    float *f = malloc(sizeof(float) * (size_t)K), *wd = malloc(sizeof(float) * (size_t)K), *xd = malloc(sizeof(float) * (size_t)K),
          *wm = malloc(sizeof(float) * (size_t)K);
    uint8_t *scratch = malloc(wrow);
    for (int i = 0; i < R; i++) {
        if (raw_weights && blck(t) > 1) random_blocks(r, t, wb.p + i * ws, K, wpat == PAT_EXTREME);
        else {
            fill(r, f, K, wpat, t);
            lv_quantize_row_file(t, f, wb.p + i * ws, K);
        }
    }
    for (int c = 0; c < C; c++) {
        fill(r, f, K, xpat, vt);
        lv_from_float_row(vt, f, xb.p + c * xs, K);
    }
    float ref[R][C], tol[R][C];
    for (int i = 0; i < R; i++)
        for (int c = 0; c < C; c++) {
            ref[i][c] = lv_vec_dot_ref(t, K, wb.p + i * ws, xb.p + c * xs);
            tol[i][c] = (float)tolerance(t, K, wb.p + i * ws, xb.p + c * xs, wd, xd, wm, scratch);
        }
    variant v[8];
    const int n = variants_of(t, v);
    for (int iv = 0; iv < n; iv++) {
        const lv_qtype_ops *o = v[iv].ops;
        float dot[R][C];
        for (int i = 0; i < R; i++)
            for (int c = 0; c < C; c++) {
                dot[i][c] = o->vec_dot(K, wb.p + i * ws, xb.p + c * xs);
                CHECK(fabsf(dot[i][c] - ref[i][c]) <= tol[i][c], "%s %s vec_dot k=%lld (w pattern %d%s, x pattern %d, offsets %zu/%zu): %.9g vs reference %.9g (tolerance %.3g)",
                      lv_type_name(t), v[iv].name, (long long)K, wpat, raw_weights ? " raw" : "", xpat, woff, xoff, (double)dot[i][c],
                      (double)ref[i][c], (double)tol[i][c]);
            }
        for (int nr = 1; nr <= R; nr++)
            for (int nc = 1; nc <= C; nc++) {
                const size_t ss = C + 3;
                float s[R * (C + 3)];
                for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) s[i] = -12345.0f;
                /* the tile starting at row R - nr and column C - nc, so both edges are exercised */
                const int r0 = R - nr, c0 = C - nc;
                o->gemm(K, wb.p + r0 * ws, ws, xb.p + c0 * xs, xs, s, ss, nr, nc);
                for (int i = 0; i < R; i++)
                    for (int c = 0; c < (int)ss; c++) {
                        const float got = s[(size_t)i * ss + (size_t)c];
                        if (i < nr && c < nc) {
                            const float want = dot[r0 + i][c0 + c];
                            CHECK(memcmp(&got, &want, 4) == 0, "%s %s gemm %dx%d k=%lld: pair (%d,%d) %.9g, vec_dot %.9g (must be identical)",
                                  lv_type_name(t), v[iv].name, nr, nc, (long long)K, i, c, (double)got, (double)want);
                        } else {
                            CHECK(got == -12345.0f, "%s %s gemm %dx%d wrote outside its tile at (%d,%d)", lv_type_name(t), v[iv].name, nr, nc, i, c);
                        }
                    }
            }
    }
    free(f);
    free(wd);
    free(xd);
    free(wm);
    free(scratch);
    buf_free(&wb);
    buf_free(&xb);
}

TEST(qkernels_vec_dot_and_gemm_match_the_reference) {
    lv_test_rng r = {lv_test_seed() ^ 0x52};
    const int64_t big = lv_test_quick() ? 4096 : 16384;
    for (int it = 0; it < N_TYPES; it++) {
        const lv_type t = k_types[it];
        const int64_t b = blck(t);
        /* k: one block (or one element), an odd number of blocks / not a multiple of 16 or 32,
         * a few SIMD steps, large */
        int64_t sizes[6];
        int ns = 0;
        if (b == 1) {
            sizes[ns++] = 1;
            sizes[ns++] = 31;
            sizes[ns++] = 16 * 5 + 9;
            sizes[ns++] = 1000;
        } else {
            sizes[ns++] = b;
            sizes[ns++] = 3 * b;
            sizes[ns++] = 8 * b;
            sizes[ns++] = 13 * b;
        }
        sizes[ns++] = big;
        const size_t align = t == LV_TYPE_F32 ? 4 : 2, xalign = lv_vec_dot_type(t) == LV_TYPE_F32 || lv_vec_dot_type(t) == LV_TYPE_Q8_K ? 4 : 2;
        for (int s = 0; s < ns; s++) {
            const int64_t K = sizes[s];
            check_case(&r, t, K, PAT_NORMAL, PAT_NORMAL, 0, 0, 0);
            check_case(&r, t, K, PAT_WIDE, PAT_NORMAL, 0, align, xalign * 3);
            check_case(&r, t, K, PAT_NORMAL, PAT_TIES, 1, align * 5, xalign);
            if (K <= 4096 || !lv_test_quick()) {
                check_case(&r, t, K, PAT_ZERO, PAT_NORMAL, 0, align * 3, 0);
                check_case(&r, t, K, PAT_NORMAL, PAT_ZERO, 0, 0, xalign * 7);
                check_case(&r, t, K, PAT_EXTREME, PAT_EXTREME, 0, align, xalign);
                check_case(&r, t, K, PAT_EXTREME, PAT_EXTREME, 1, align * 7, xalign * 5);
            }
            if (lv_test_failures) return;
        }
    }
}
