/*
 * test_quant.c: element types: fp16/bf16 conversion against the CPU's own conversion
 * instructions (F16C; bf16 against the definition), block layouts, quantize/dequantize and the
 * reference dot products against plain float arithmetic on fresh random inputs.
 */
#include "lv_test.h"
#include "quant.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("f16c"))) static uint16_t hw_f2h(float f) { return (uint16_t)_cvtss_sh(f, 0); }
__attribute__((target("f16c"))) static float hw_h2f(uint16_t h) { return _cvtsh_ss(h); }
#include <cpuid.h>
static int have_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#else
static uint16_t hw_f2h(float f) { return 0; }
static float hw_h2f(uint16_t h) { return 0; }
static int have_f16c(void) { return 0; }
#endif

static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

TEST(fp16_conversion_matches_hardware) {
    if (!have_f16c()) SKIP("this CPU has no F16C instructions to compare with");
    for (uint32_t h = 0; h < 65536; h++) {
        float a = hw_h2f((uint16_t)h), b = lv_fp16_to_fp32((uint16_t)h);
        CHECK(memcmp(&a, &b, 4) == 0 || (a != a && b != b), "fp16 %04x -> %g vs %g", h, (double)a, (double)b);
        if (lv_test_failures) return;
    }
    lv_test_rng r = {lv_test_seed()};
    const int n = lv_test_quick() ? 200000 : 4000000;
    for (int i = 0; i < n; i++) {
        float f = u2f((uint32_t)lv_test_rng_u64(&r));
        if (f != f) continue;
        CHECK(hw_f2h(f) == lv_fp32_to_fp16(f), "f32 %a -> %04x vs %04x", (double)f, hw_f2h(f), lv_fp32_to_fp16(f));
        if (lv_test_failures) return;
    }
    /* boundaries: halfway cases, overflow threshold, subnormals */
    const float edge[] = {65504.0f, 65519.99f, 65520.0f, 1e-8f, 2.98e-8f, 5.96e-8f, 6.1e-5f, -0.0f, 1.0009765625f + 0.00048828125f};
    for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); i++) CHECK(hw_f2h(edge[i]) == lv_fp32_to_fp16(edge[i]), "edge %g", (double)edge[i]);
}

TEST(bf16_conversion_rounds_to_nearest_even) {
    CHECK(lv_fp32_to_bf16(1.0f) == 0x3f80, "1.0");
    CHECK(lv_fp32_to_bf16(u2f(0x3f808000)) == 0x3f80, "tie rounds to even (down)");
    CHECK(lv_fp32_to_bf16(u2f(0x3f818000)) == 0x3f82, "tie rounds to even (up)");
    CHECK(lv_fp32_to_bf16(u2f(0x3f808001)) == 0x3f81, "above tie rounds up");
    uint16_t nan = lv_fp32_to_bf16(u2f(0x7f800001));
    CHECK((nan & 0x7f80) == 0x7f80 && (nan & 0x7f), "nan stays nan (%04x)", nan);
    lv_test_rng r = {lv_test_seed() ^ 1};
    for (int i = 0; i < 100000; i++) {
        float f = u2f((uint32_t)lv_test_rng_u64(&r) & 0xbfffffff); /* finite */
        float g = lv_bf16_to_fp32(lv_fp32_to_bf16(f));
        /* nearest: no other bf16 value is closer */
        float up = lv_bf16_to_fp32((uint16_t)(lv_fp32_to_bf16(f) + 1)), dn = lv_bf16_to_fp32((uint16_t)(lv_fp32_to_bf16(f) - 1));
        /* a neighbour across zero or into NaN is not a candidate */
        CHECK((up != up || fabsf(g - f) <= fabsf(up - f)) && (dn != dn || fabsf(g - f) <= fabsf(dn - f)), "bf16 of %a", (double)f);
        if (lv_test_failures) return;
    }
}

TEST(type_traits_match_ggml) {
    struct { uint32_t t; const char *name; int64_t blck, size; } want[] = {
        {0, "f32", 1, 4}, {1, "f16", 1, 2}, {2, "q4_0", 32, 18}, {3, "q4_1", 32, 20}, {6, "q5_0", 32, 22}, {7, "q5_1", 32, 24},
        {8, "q8_0", 32, 34}, {10, "q2_K", 256, 84}, {12, "q4_K", 256, 144}, {13, "q5_K", 256, 176}, {14, "q6_K", 256, 210},
        {30, "bf16", 1, 2}, {39, "mxfp4", 32, 17},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const lv_type_traits *tt = lv_type_get(want[i].t);
        REQUIRE(tt, "type %u known", want[i].t);
        CHECK(strcmp(tt->name, want[i].name) == 0 && tt->blck_size == want[i].blck && tt->type_size == want[i].size, "type %u: %s %lld %lld",
              want[i].t, tt->name, (long long)tt->blck_size, (long long)tt->type_size);
    }
    const uint32_t removed[] = {4, 5, 31, 32, 33, 36, 37, 38, 43, 1000};
    for (size_t i = 0; i < sizeof(removed) / sizeof(removed[0]); i++) CHECK(lv_type_get(removed[i]) == NULL, "type %u is not valid", removed[i]);
    CHECK(strstr(lv_type_name(31), "31") != NULL, "unknown type named by number");
}

TEST(q4_0_block_layout_is_ggml_s) {
    /* one block: values -8d..7d in a known pattern; the layout puts element j in the low nibble
     * of qs[j] and element j+16 in the high nibble */
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)((j % 16) - 8) * 0.5f;
    x[0] = -4.0f; /* the signed max sets d = max / -8 = 0.5 */
    lv_block_q4_0 b;
    lv_quantize_q4_0_ref(x, &b, 32);
    CHECK(lv_fp16_to_fp32(b.d) == 0.5f, "d = %g", (double)lv_fp16_to_fp32(b.d));
    for (int j = 0; j < 16; j++) {
        CHECK((b.qs[j] & 0xf) == (uint8_t)(x[j] / 0.5f + 8), "low nibble %d", j);
        CHECK((b.qs[j] >> 4) == (uint8_t)(x[j + 16] / 0.5f + 8), "high nibble %d", j);
    }
    float y[32];
    lv_to_float_row(LV_TYPE_Q4_0, &b, y, 32);
    for (int j = 0; j < 32; j++) CHECK(y[j] == x[j], "exact round trip of representable values at %d", j);
}

TEST(quantize_dequantize_error_bounds) {
    lv_test_rng r = {lv_test_seed() ^ 2};
    enum { K = 32 * 37 };
    float x[K], y[K];
    uint8_t buf[K * 4];
    for (int rep = 0; rep < 50; rep++) {
        for (int i = 0; i < K; i++) x[i] = lv_test_rng_f32(&r) * (rep + 1);
        const lv_type types[] = {LV_TYPE_F16, LV_TYPE_BF16, LV_TYPE_Q8_0, LV_TYPE_Q4_0};
        for (size_t t = 0; t < 4; t++) {
            REQUIRE(lv_quantize_row_file(types[t], x, buf, K), "quantize");
            REQUIRE(lv_to_float_row(types[t], buf, y, K), "dequantize");
            for (int b = 0; b < K / 32; b++) {
                float amax = 0;
                for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
                for (int j = 0; j < 32; j++) {
                    const float e = fabsf(y[b * 32 + j] - x[b * 32 + j]), v = fabsf(x[b * 32 + j]);
                    float bound;
                    switch (types[t]) {
                    case LV_TYPE_F16: bound = v * 0x1p-11f + 1e-7f; break;
                    case LV_TYPE_BF16: bound = v * 0x1p-8f; break;
                    case LV_TYPE_Q8_0: bound = amax / 127 * 0.5f * 1.002f + amax * 1e-3f; break; /* half a step (+ fp16 rounding of d) */
                    default: bound = amax / 8 * 1.002f + amax * 1e-3f; break;                 /* q4_0: one step at worst (clamp at 15) */
                    }
                    CHECK(e <= bound, "%s: |%g - %g| > %g", lv_type_name(types[t]), (double)y[b * 32 + j], (double)x[b * 32 + j], (double)bound);
                }
            }
            if (lv_test_failures) return;
        }
    }
}

TEST(reference_dot_products_equal_float_math) {
    lv_test_rng r = {lv_test_seed() ^ 3};
    const int64_t sizes[] = {32, 64, 96, 4096, 32 * 33};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        const int64_t K = sizes[s];
        float w[4096 + 64], x[4096 + 64], wd[4096 + 64], xd[4096 + 64];
        uint8_t wq[4096 * 4 + 64], xq[4096 * 4 + 64];
        for (int64_t i = 0; i < K; i++) {
            w[i] = lv_test_rng_f32(&r);
            x[i] = lv_test_rng_f32(&r) * 3;
        }
        const lv_type types[] = {LV_TYPE_F32, LV_TYPE_F16, LV_TYPE_BF16, LV_TYPE_Q8_0, LV_TYPE_Q4_0};
        for (size_t t = 0; t < 5; t++) {
            const lv_type wt = types[t], vt = lv_vec_dot_type(wt);
            lv_quantize_row_file(wt, w, wq, K);
            lv_from_float_row(vt, x, xq, K);
            lv_to_float_row(wt, wq, wd, K);
            lv_to_float_row(vt, xq, xd, K);
            double want = 0, mag = 0;
            for (int64_t i = 0; i < K; i++) {
                want += (double)wd[i] * xd[i];
                mag += fabs((double)wd[i] * xd[i]);
            }
            const float got = lv_vec_dot_ref(wt, K, wq, xq);
            /* the quantized types scale per block in float: a few float ulps of the magnitude */
            CHECK(fabs(got - want) <= 1e-6 * mag + 1e-6, "%s K=%lld: %.9g vs %.9g", lv_type_name(wt), (long long)K, (double)got, want);
        }
    }
}
