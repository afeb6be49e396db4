/*
 * test_quant.c: element types: fp16/bf16 conversion against the CPU's own conversion
 * instructions (F16C; bf16 against the definition), every block layout against blocks built by
 * hand from ggml's format description, quantize/dequantize error bounds, the activation
 * quantizers (q8_1's sum, q8_K's bsums and scale), and the reference dot products against plain
 * float arithmetic on fresh random inputs.
 */
#include "lv_test.h"
#include "gguf/quant.h"

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

/* The float parts of weights that carry a minimum (q4_1, q5_1: +m; q4_K, q5_K: -dmin*m[j]): the
 * row dequantized with every level set to zero. The reference subtracts the minimum term from the
 * scaled integer sum, so its rounding error is relative to both magnitudes. */
static void min_parts(lv_type t, const void *w, int64_t K, float *out) {
    static uint8_t z[4096 * 4 + 64];
    const int64_t nb = K / lv_type_get(t)->blck_size, bs = lv_type_get(t)->type_size;
    memcpy(z, w, (size_t)(nb * bs));
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = z + b * bs;
        switch (t) {
        case LV_TYPE_Q4_1: memset(((lv_block_q4_1 *)blk)->qs, 0, 16); break;
        case LV_TYPE_Q5_1: memset(((lv_block_q5_1 *)blk)->qs, 0, 16); memset(((lv_block_q5_1 *)blk)->qh, 0, 4); break;
        case LV_TYPE_Q4_K: memset(((lv_block_q4_K *)blk)->qs, 0, 128); break;
        case LV_TYPE_Q5_K: memset(((lv_block_q5_K *)blk)->qs, 0, 128); memset(((lv_block_q5_K *)blk)->qh, 0, 32); break;
        case LV_TYPE_Q2_K: memset(((lv_block_q2_K *)blk)->qs, 0, 64); break;
        default: memset(out, 0, sizeof(float) * (size_t)K); return;
        }
    }
    lv_to_float_row(t, z, out, K);
}

TEST(reference_dot_products_equal_float_math) {
    lv_test_rng r = {lv_test_seed() ^ 3};
    const int64_t sizes[] = {32, 64, 96, 256, 512, 4096, 32 * 33, 256 * 5};
    static float w[4096 + 64], x[4096 + 64], wd[4096 + 64], xd[4096 + 64], wm[4096 + 64];
    static uint8_t wq[4096 * 4 + 64], xq[4096 * 4 + 64];
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        const int64_t K = sizes[s];
        for (int64_t i = 0; i < K; i++) {
            w[i] = lv_test_rng_f32(&r);
            x[i] = lv_test_rng_f32(&r) * 3;
        }
        const lv_type types[] = {LV_TYPE_F32,  LV_TYPE_F16,  LV_TYPE_BF16, LV_TYPE_Q8_0, LV_TYPE_Q4_0, LV_TYPE_Q4_1,
                                 LV_TYPE_Q5_0, LV_TYPE_Q5_1, LV_TYPE_Q4_K, LV_TYPE_Q5_K, LV_TYPE_Q6_K, LV_TYPE_Q2_K, LV_TYPE_Q3_K, LV_TYPE_IQ4_NL, LV_TYPE_IQ4_XS};
        for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
            const lv_type wt = types[t], vt = lv_vec_dot_type(wt);
            if (K % lv_type_get(wt)->blck_size) continue;
            lv_quantize_row_file(wt, w, wq, K);
            lv_from_float_row(vt, x, xq, K);
            lv_to_float_row(wt, wq, wd, K);
            lv_to_float_row(vt, xq, xd, K);
            min_parts(wt, wq, K, wm);
            double want = 0, mag = 0, mmag = 0;
            for (int64_t i = 0; i < K; i++) {
                want += (double)wd[i] * xd[i];
                mag += fabs((double)wd[i] * xd[i]) + 2 * fabs((double)wm[i] * xd[i]);
                mmag += fabs((double)wm[i] * xd[i]);
            }
            const float got = lv_vec_dot_ref(wt, K, wq, xq);
            /* the quantized types scale per block in float: a few float ulps of the magnitude; q4_1 and
             * q5_1 read the activation sum from q8_1's s = fp16(d * sum), which carries fp16 rounding
             * (and uses d before its own fp16 rounding): 2^-10 of the minimum term */
            const double tol = 1e-6 * mag + 1e-6 + (vt == LV_TYPE_Q8_1 ? 0x1p-10 * mmag : 0);
            CHECK(fabs(got - want) <= tol, "%s K=%lld: %.9g vs %.9g", lv_type_name(wt), (long long)K, (double)got, want);
        }
    }
}

/* ---- the new block layouts against blocks built by hand from ggml's format description ---- */

static uint16_t h(float f) { return lv_fp32_to_fp16(f); }

TEST(block_layouts_read_as_ggml_defines_them) {
    float y[256];
    { /* q4_1: x = d*q + m; element j (< 16) in the low nibble of qs[j], j + 16 in the high nibble */
        lv_block_q4_1 b = {h(0.5f), h(-2.0f), {0}};
        for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
        lv_to_float_row(LV_TYPE_Q4_1, &b, y, 32);
        for (int j = 0; j < 16; j++) CHECK(y[j] == j * 0.5f - 2 && y[j + 16] == (15 - j) * 0.5f - 2, "q4_1 element %d: %g %g", j, (double)y[j], (double)y[j + 16]);
    }
    { /* q5_0 / q5_1: bit 4 of element j is bit j of the little-endian uint32 qh */
        int q[32];
        uint32_t qh = 0;
        lv_block_q5_0 b0 = {h(0.25f), {0}, {0}};
        lv_block_q5_1 b1 = {h(0.25f), h(1.0f), {0}, {0}};
        for (int j = 0; j < 32; j++) {
            q[j] = (j * 7 + 3) % 32;
            if (q[j] & 16) qh |= 1u << j;
        }
        for (int j = 0; j < 16; j++) b0.qs[j] = b1.qs[j] = (uint8_t)((q[j] & 15) | ((q[j + 16] & 15) << 4));
        for (int i = 0; i < 4; i++) b0.qh[i] = b1.qh[i] = (uint8_t)(qh >> (8 * i));
        lv_to_float_row(LV_TYPE_Q5_0, &b0, y, 32);
        for (int j = 0; j < 32; j++) CHECK(y[j] == (q[j] - 16) * 0.25f, "q5_0 element %d: %g", j, (double)y[j]);
        lv_to_float_row(LV_TYPE_Q5_1, &b1, y, 32);
        for (int j = 0; j < 32; j++) CHECK(y[j] == q[j] * 0.25f + 1, "q5_1 element %d: %g", j, (double)y[j]);
    }
    { /* q8_1 and q8_K: x = d * q */
        lv_block_q8_1 a = {h(0.125f), 0, {0}};
        lv_block_q8_K k8 = {0.375f, {0}, {0}};
        for (int j = 0; j < 32; j++) a.qs[j] = (int8_t)(j * 8 - 127);
        for (int j = 0; j < 256; j++) k8.qs[j] = (int8_t)((j * 37) % 255 - 127);
        lv_to_float_row(LV_TYPE_Q8_1, &a, y, 32);
        for (int j = 0; j < 32; j++) CHECK(y[j] == (j * 8 - 127) * 0.125f, "q8_1 element %d", j);
        lv_to_float_row(LV_TYPE_Q8_K, &k8, y, 256);
        for (int j = 0; j < 256; j++) CHECK(y[j] == ((j * 37) % 255 - 127) * 0.375f, "q8_K element %d", j);
    }
    /* q4_K / q5_K: 8 sub-blocks of 32 with 6-bit scale sc[j] and min m[j]: for j < 4, sc in the low
     * 6 bits of scales[j] and m in those of scales[j+4]; for j >= 4, the low 4 bits of sc and m in
     * the nibbles of scales[j+4] and their top 2 bits in the top 2 bits of scales[j-4] (sc) and
     * scales[j] (m). Sub-block j's levels: nibble (j odd: high) of qs[32*(j/2) + l]; q5_K adds bit j
     * of qh[l] as bit 4. */
    int sc[8], mn[8], lv[256];
    for (int j = 0; j < 8; j++) {
        sc[j] = (j * 13 + 5) % 64;
        mn[j] = (j * 29 + 7) % 64;
    }
    for (int e = 0; e < 256; e++) lv[e] = (e * 11 + e / 32) % 32;
    uint8_t scales[12] = {0};
    for (int j = 0; j < 4; j++) {
        scales[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        scales[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
        scales[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
    for (int j = 0; j < 8; j++) {
        uint8_t a, b;
        lv_get_scale_min_k4(j, scales, &a, &b);
        CHECK(a == sc[j] && b == mn[j], "q4_K scale/min %d: %d %d", j, a, b);
    }
    {
        lv_block_q4_K b;
        memset(&b, 0, sizeof(b));
        b.d = h(0.5f);
        b.dmin = h(0.25f);
        memcpy(b.scales, scales, 12);
        for (int e = 0; e < 256; e++) b.qs[32 * (e / 64) + e % 32] |= (uint8_t)((lv[e] & 15) << (((e / 32) & 1) * 4));
        lv_to_float_row(LV_TYPE_Q4_K, &b, y, 256);
        for (int e = 0; e < 256; e++)
            CHECK(y[e] == 0.5f * sc[e / 32] * (lv[e] & 15) - 0.25f * mn[e / 32], "q4_K element %d: %g", e, (double)y[e]);
    }
    {
        lv_block_q5_K b;
        memset(&b, 0, sizeof(b));
        b.d = h(0.5f);
        b.dmin = h(0.25f);
        memcpy(b.scales, scales, 12);
        for (int e = 0; e < 256; e++) {
            b.qs[32 * (e / 64) + e % 32] |= (uint8_t)((lv[e] & 15) << (((e / 32) & 1) * 4));
            b.qh[e % 32] |= (uint8_t)(((lv[e] >> 4) & 1) << (e / 32));
        }
        lv_to_float_row(LV_TYPE_Q5_K, &b, y, 256);
        for (int e = 0; e < 256; e++) CHECK(y[e] == 0.5f * sc[e / 32] * lv[e] - 0.25f * mn[e / 32], "q5_K element %d: %g", e, (double)y[e]);
    }
    { /* q6_K: 16 sub-blocks of 16 with int8 scales; element e = 128*h + 32*g + l (g = 0..3, l < 32):
       * low 4 bits in ql[64*h + l + 32*(g&1)] (g >= 2: high nibble), top 2 bits at 2*g in qh[32*h + l] */
        lv_block_q6_K b;
        memset(&b, 0, sizeof(b));
        b.d = h(0.125f);
        int q6[256];
        for (int j = 0; j < 16; j++) b.scales[j] = (int8_t)(j * 17 - 128);
        for (int e = 0; e < 256; e++) {
            q6[e] = (e * 23 + 5) % 64;
            const int hh = e / 128, g = (e % 128) / 32, l = e % 32;
            b.ql[64 * hh + l + 32 * (g & 1)] |= (uint8_t)((q6[e] & 15) << (g >= 2 ? 4 : 0));
            b.qh[32 * hh + l] |= (uint8_t)((q6[e] >> 4) << (2 * g));
        }
        lv_to_float_row(LV_TYPE_Q6_K, &b, y, 256);
        for (int e = 0; e < 256; e++) CHECK(y[e] == 0.125f * b.scales[e / 16] * (q6[e] - 32), "q6_K element %d: %g", e, (double)y[e]);
    }
}

/* iq4_nl and iq4_xs against blocks built by hand from ggml's layout (ggml-common.h: block_iq4_nl
 * {d, qs[16]}, block_iq4_xs {d, scales_h, scales_l[4], qs[128]}; dequantize_row_iq4_xs: sub-block
 * ib's scale (scales_l[ib/2] >> 4*(ib%2) & 0xf) | ((scales_h >> 2*ib) & 3) << 4, minus 32, its
 * elements j and j + 16 in the low and high nibbles of qs[16*ib + j]), and the file quantizers'
 * error against the 4-bit non-linear grid. */
TEST(iq4_q2_K_q3_K_layouts_and_quantizers) {
    float y[256];
    {
        lv_block_iq4_nl b;
        b.d = h(0.5f);
        for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
        lv_to_float_row(LV_TYPE_IQ4_NL, &b, y, 32);
        for (int j = 0; j < 16; j++)
            CHECK(y[j] == 0.5f * lv_kvalues_iq4nl[j] && y[j + 16] == 0.5f * lv_kvalues_iq4nl[15 - j], "iq4_nl element %d: %g %g", j, (double)y[j],
                  (double)y[j + 16]);
        CHECK(lv_kvalues_iq4nl[0] == -127 && lv_kvalues_iq4nl[15] == 113, "ggml's iq4 grid");
    }
    {
        lv_block_iq4_xs b;
        memset(&b, 0, sizeof(b));
        b.d = h(0.25f);
        int ls[8];
        for (int ib = 0; ib < 8; ib++) {
            ls[ib] = (ib * 9 + 3) % 64;
            b.scales_l[ib / 2] |= (uint8_t)((ls[ib] & 15) << (4 * (ib % 2)));
            b.scales_h |= (uint16_t)((ls[ib] >> 4) << (2 * ib));
        }
        for (int e = 0; e < 256; e++) b.qs[16 * (e / 32) + e % 16] |= (uint8_t)(((e * 7 + 1) % 16) << ((e % 32) >= 16 ? 4 : 0));
        lv_to_float_row(LV_TYPE_IQ4_XS, &b, y, 256);
        for (int e = 0; e < 256; e++)
            CHECK(y[e] == 0.25f * (float)(ls[e / 32] - 32) * lv_kvalues_iq4nl[(e * 7 + 1) % 16], "iq4_xs element %d: %g", e, (double)y[e]);
    }
    { /* q2_K: ggml's dequantize_row_q2_K walks halves of 128, then four shifts, then two runs of 16 */
        lv_block_q2_K b;
        memset(&b, 0, sizeof(b));
        b.d = h(0.5f);
        b.dmin = h(0.25f);
        for (int j = 0; j < 16; j++) b.scales[j] = (uint8_t)((j % 16) | (((j * 5) % 16) << 4));
        int qv[256], e = 0;
        for (int n = 0; n < 2; n++)
            for (int sh = 0; sh < 4; sh++)
                for (int half = 0; half < 2; half++)
                    for (int l = 0; l < 16; l++, e++) {
                        qv[e] = (e * 3 + 1) % 4;
                        b.qs[32 * n + 16 * half + l] |= (uint8_t)(qv[e] << (2 * sh));
                    }
        lv_to_float_row(LV_TYPE_Q2_K, &b, y, 256);
        for (e = 0; e < 256; e++)
            CHECK(y[e] == 0.5f * (float)(b.scales[e / 16] & 15) * (float)qv[e] - 0.25f * (float)(b.scales[e / 16] >> 4), "q2_K element %d: %g", e,
                  (double)y[e]);
    }
    { /* q3_K: ggml's dequantize_row_q3_K: the 12 scale bytes unpacked through kmask1/kmask2, levels
       * (q >> shift) & 3, minus 4 unless the hmask bit m (shifted once per quarter) is set */
        lv_block_q3_K b;
        memset(&b, 0, sizeof(b));
        b.d = h(0.5f);
        for (int j = 0; j < 12; j++) b.scales[j] = (uint8_t)(j * 37 + 11);
        uint32_t aux[4];
        memcpy(aux, b.scales, 12);
        const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f, tmp = aux[2];
        aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
        aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
        const int8_t *sc = (const int8_t *)aux;
        for (int j = 0; j < 16; j++) CHECK(lv_q3_K_scale(b.scales, j) == sc[j] - 32, "q3_K scale %d: %d vs ggml %d", j, lv_q3_K_scale(b.scales, j), sc[j] - 32);
        for (int i = 0; i < 64; i++) b.qs[i] = (uint8_t)(i * 29 + 7);
        for (int i = 0; i < 32; i++) b.hmask[i] = (uint8_t)(i * 53 + 3);
        float want[256];
        int e = 0, is = 0;
        const uint8_t *q = b.qs;
        uint8_t m = 1;
        for (int n = 0; n < 256; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                float dl = 0.5f * (float)(sc[is++] - 32);
                for (int l = 0; l < 16; l++) want[e++] = dl * (float)((int8_t)((q[l] >> shift) & 3) - ((b.hmask[l] & m) ? 0 : 4));
                dl = 0.5f * (float)(sc[is++] - 32);
                for (int l = 0; l < 16; l++) want[e++] = dl * (float)((int8_t)((q[l + 16] >> shift) & 3) - ((b.hmask[l + 16] & m) ? 0 : 4));
                shift += 2;
                m = (uint8_t)(m << 1);
            }
            q += 32;
        }
        lv_to_float_row(LV_TYPE_Q3_K, &b, y, 256);
        for (e = 0; e < 256; e++) CHECK(y[e] == want[e], "q3_K element %d: %g vs ggml %g", e, (double)y[e], (double)want[e]);
    }
    /* the file quantizers: relative RMS error of a 4-bit grid (measured about 0.05 on normal data) */
    lv_test_rng r = {lv_test_seed() ^ 6};
    static float x[4096], back[4096];
    static uint8_t q[4096];
    for (int i = 0; i < 4096; i++) x[i] = lv_test_rng_f32(&r) * (1 + (i / 256) % 7);
    const lv_type ts[] = {LV_TYPE_IQ4_NL, LV_TYPE_IQ4_XS, LV_TYPE_Q2_K, LV_TYPE_Q3_K};
    for (int t = 0; t < 4; t++) {
        CHECK(lv_quantize_row_file(ts[t], x, q, 4096), "%s quantizes", lv_type_name(ts[t]));
        lv_to_float_row(ts[t], q, back, 4096);
        double se = 0, sx = 0;
        for (int i = 0; i < 4096; i++) {
            se += (double)(back[i] - x[i]) * (back[i] - x[i]);
            sx += (double)x[i] * x[i];
        }
        printf("  %s relative RMS error %.4f\n", lv_type_name(ts[t]), sqrt(se / sx));
        /* 4-bit grids: 0.09; q2_K's 2 bits: 0.35; q3_K's 3: 0.2 */
        CHECK(sqrt(se / sx) <= (t == 2 ? 0.35 : t == 3 ? 0.2 : 0.09), "%s: relative RMS error %.4f", lv_type_name(ts[t]), sqrt(se / sx));
    }
}

TEST(new_types_round_trip_within_their_steps) {
    lv_test_rng r = {lv_test_seed() ^ 4};
    enum { K = 256 * 9 };
    static float x[K], y[K];
    static uint8_t buf[K * 4];
    double se[LV_TYPE_COUNT] = {0}, sx = 0;
    for (int rep = 0; rep < 20; rep++) {
        /* Gaussian-like weights (sum of uniforms), scaled per rep, one all-zero super-block and one constant one */
        for (int i = 0; i < K; i++) x[i] = (lv_test_rng_f32(&r) + lv_test_rng_f32(&r) + lv_test_rng_f32(&r)) * (float)(rep + 1) * 0.01f;
        for (int i = 0; i < 256; i++) x[i] = 0;
        for (int i = 256; i < 512; i++) x[i] = 0.5f;
        for (int i = 0; i < K; i++) sx += (double)x[i] * x[i];
        const lv_type types[] = {LV_TYPE_Q4_1, LV_TYPE_Q5_0, LV_TYPE_Q5_1, LV_TYPE_Q4_K, LV_TYPE_Q5_K, LV_TYPE_Q6_K};
        for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
            const lv_type ty = types[t];
            REQUIRE(lv_quantize_row_file(ty, x, buf, K) && lv_to_float_row(ty, buf, y, K), "%s", lv_type_name(ty));
            for (int i = 0; i < 256; i++) CHECK(y[i] == 0, "%s: an all-zero block reads back as zeros (%g)", lv_type_name(ty), (double)y[i]);
            for (int b = 0; b < K / 32; b++) {
                float lo = 0, hi = 0, amax = 0;
                for (int j = 0; j < 32; j++) {
                    lo = fminf(lo, x[b * 32 + j]);
                    hi = fmaxf(hi, x[b * 32 + j]);
                    amax = fmaxf(amax, fabsf(x[b * 32 + j]));
                }
                for (int j = 0; j < 32; j++) {
                    const int i = b * 32 + j;
                    const float e = fabsf(y[i] - x[i]);
                    se[ty] += (double)e * e;
                    float bound;
                    switch (ty) {
                    /* half a step, plus the fp16 rounding of d (15 or 31 steps of it) and of the minimum */
                    case LV_TYPE_Q4_1: bound = (hi - lo) / 15 * (0.5f + 16 * 0x1p-11f) + amax * 0x1p-10f + 1e-6f; break;
                    case LV_TYPE_Q5_1: bound = (hi - lo) / 31 * (0.5f + 32 * 0x1p-11f) + amax * 0x1p-10f + 1e-6f; break;
                    case LV_TYPE_Q5_0: bound = amax / 16 * 1.002f + amax * 1e-3f; break; /* one step at worst (clamp at 31) */
                    /* the K types: within two steps of the sub-block's range (6-bit scales may clamp an extreme) */
                    case LV_TYPE_Q4_K: bound = 2 * (hi - lo) / 15 + 1e-6f; break;
                    case LV_TYPE_Q5_K: bound = 2 * (hi - lo) / 31 + 1e-6f; break;
                    default: bound = 2 * amax / 31 + 1e-6f; break; /* q6_K */
                    }
                    CHECK(e <= bound, "%s element %d: |%g - %g| > %g", lv_type_name(ty), i, (double)y[i], (double)x[i], (double)bound);
                }
            }
            if (lv_test_failures) return;
        }
    }
    /* and overall, the error one expects from 4, 5 and 6 bits (relative RMS; measured 0.040 q4_1, 0.021 q5_0,
     * 0.019 q5_1, 0.036 q4_K, 0.018 q5_K, 0.0087 q6_K on these inputs) */
    const struct { lv_type t; double max_rel; } q[] = {{LV_TYPE_Q4_1, 0.06}, {LV_TYPE_Q5_0, 0.035}, {LV_TYPE_Q5_1, 0.03},
                                                      {LV_TYPE_Q4_K, 0.05}, {LV_TYPE_Q5_K, 0.03}, {LV_TYPE_Q6_K, 0.015}};
    for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
        const double rel = sqrt(se[q[i].t] / sx);
        printf("  %s relative RMS error %.4f\n", lv_type_name(q[i].t), rel);
        CHECK(rel <= q[i].max_rel, "%s: relative RMS error %.4f > %.3f", lv_type_name(q[i].t), rel, q[i].max_rel);
    }
}

TEST(activation_quantizers_q8_1_q8_K) {
    lv_test_rng r = {lv_test_seed() ^ 5};
    enum { K = 256 * 4 };
    static float x[K], y[K];
    static lv_block_q8_1 a[K / 32];
    static lv_block_q8_K b[K / 256];
    for (int rep = 0; rep < 50; rep++) {
        for (int i = 0; i < K; i++) x[i] = lv_test_rng_f32(&r) * (float)(rep + 1);
        for (int i = 0; i < 256; i++) x[i] = 0; /* an all-zero super-block */
        lv_quantize_q8_1_act(x, a, K);
        lv_quantize_q8_K_act(x, b, K);
        for (int i = 0; i < K / 32; i++) {
            int sum = 0;
            for (int j = 0; j < 32; j++) sum += a[i].qs[j];
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[i * 32 + j]));
            CHECK(a[i].s == lv_fp32_to_fp16(amax / 127.0f * (float)sum), "q8_1 block %d: s is fp16(d * sum)", i);
        }
        lv_to_float_row(LV_TYPE_Q8_1, a, y, K);
        for (int i = 0; i < K; i++) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[i / 32 * 32 + j]));
            CHECK(fabsf(y[i] - x[i]) <= amax / 127 * 0.5f * 1.002f + amax * 1e-3f, "q8_1 element %d", i);
        }
        CHECK(b[0].d == 0, "an all-zero super-block has d = 0");
        for (int i = 0; i < K / 256; i++) {
            for (int g = 0; g < 16; g++) {
                int sum = 0;
                for (int j = 0; j < 16; j++) sum += b[i].qs[16 * g + j];
                CHECK(b[i].bsums[g] == sum, "q8_K bsums[%d] of block %d", g, i);
            }
            int nmax = 0;
            for (int j = 0; j < 256; j++) nmax += b[i].qs[j] == -127;
            CHECK(i == 0 || nmax >= 1, "the largest magnitude maps to -127 in block %d", i);
        }
        lv_to_float_row(LV_TYPE_Q8_K, b, y, K);
        for (int i = 0; i < K; i++) CHECK(fabsf(y[i] - x[i]) <= fabsf(b[i / 256].d) * 0.5f * 1.0001f, "q8_K element %d", i);
        if (lv_test_failures) return;
    }
}
