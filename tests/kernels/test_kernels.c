/*
 * test_kernels.c: the reference kernels against straightforward double-precision formulas on
 * fresh random inputs: RMSNorm, RoPE (both pair layouts, frequency factors, linear scaling),
 * SwiGLU, attention over several spans with a causal mask by stored position, and the matmul
 * driver (threads, bias, every weight type) against row-by-row dot products.
 */
#include "kernels/kernels.h"
#include "lv_test.h"
#include "kernels/qkernels.h"
#include "gguf/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

TEST(rmsnorm_matches_formula) {
    lv_test_rng r = {lv_test_seed() ^ 10};
    for (int n = 1; n < 300; n += 37) {
        float x[300], w[300], y[300];
        for (int i = 0; i < n; i++) {
            x[i] = lv_test_rng_f32(&r) * 4;
            w[i] = 1 + lv_test_rng_f32(&r) * 0.1f;
        }
        lv_rmsnorm_ref(x, w, y, n, 1e-5f);
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
        const double sc = 1.0 / sqrt(ss / n + 1e-5);
        for (int i = 0; i < n; i++) CHECK(fabs(y[i] - x[i] * sc * w[i]) <= 1e-5 * fabs(x[i] * sc * w[i]) + 1e-7, "n=%d i=%d", n, i);
    }
}

TEST(rope_matches_formula) {
    lv_test_rng r = {lv_test_seed() ^ 11};
    const int D = 64;
    float ff[32];
    for (int i = 0; i < 32; i++) ff[i] = 1 + (float)i / 4;
    for (int variant = 0; variant < 4; variant++) {
        lv_rope_params rp = {.n_rot = D, .type = variant & 1 ? LV_ROPE_NEOX : LV_ROPE_NORM, .freq_base = 10000.0f,
                             .freq_scale = variant == 2 ? 0.25f : 1.0f, .attn_factor = 1.0f, .n_ctx_orig = 4096,
                             .freq_factors = variant == 3 ? ff : NULL};
        const int32_t positions[] = {0, 1, 7, 100, 4095, 100000};
        for (size_t ip = 0; ip < sizeof(positions) / sizeof(positions[0]); ip++) {
            const int32_t pos = positions[ip];
            float x[64], y[64], cache[64];
            for (int i = 0; i < D; i++) x[i] = y[i] = lv_test_rng_f32(&r);
            lv_rope_cache(&rp, pos, cache);
            lv_rope_apply(&rp, cache, y);
            for (int i = 0; i < D / 2; i++) {
                /* ggml computes theta by repeated float multiplication: allow its rounding (relative
                 * 1e-6 per step, so ~1e-4 of the angle at i = 31, times the position) */
                const double theta = pos * pow(10000.0, -2.0 * i / D) / (variant == 3 ? ff[i] : 1.0) * rp.freq_scale;
                const int a = variant & 1 ? i : 2 * i, b = variant & 1 ? i + D / 2 : 2 * i + 1;
                const double c = cos(theta), s = sin(theta);
                const double ya = x[a] * c - x[b] * s, yb = x[a] * s + x[b] * c;
                const double tol = 1e-5 + 4e-7 * fabs(theta) * 32;
                CHECK(fabs(y[a] - ya) <= tol && fabs(y[b] - yb) <= tol, "variant %d pos %d pair %d: (%g,%g) vs (%g,%g)", variant, pos, i,
                      (double)y[a], (double)y[b], ya, yb);
            }
        }
    }
}

TEST(swiglu_matches_formula) {
    float g[64], u[64], o[64];
    lv_test_rng r = {lv_test_seed() ^ 12};
    for (int i = 0; i < 64; i++) {
        g[i] = lv_test_rng_f32(&r) * 10;
        u[i] = lv_test_rng_f32(&r);
    }
    lv_swiglu_ref(g, u, o, 64);
    /* relative: float's few roundings (and expf's ulp) on results up to 10 exceed an absolute 1e-6
     * for some seeds (seen under the -O1 sanitizer build, seed 34245569979045) */
    for (int i = 0; i < 64; i++) {
        const double want = g[i] / (1 + exp(-(double)g[i])) * u[i];
        CHECK(fabs(o[i] - want) <= 1e-6 * fmax(1.0, fabs(want)), "i=%d: %.9g vs %.9g", i, (double)o[i], want);
    }
}

/* The AVX-512 swiglu against the reference, n not a multiple of 16 (masked tail), wide inputs up
 * to |g| = 100 (exp overflows to inf: silu of a large negative g is -0) and the in-place form. */
TEST(swiglu_avx512_matches_the_reference) {
    if (lv_simd_detect() < LV_SIMD_AVX512) SKIP("no AVX-512 on this CPU");
    enum { N = 1000 + 13 };
    static float g[N], u[N], want[N], got[N];
    lv_test_rng r = {lv_test_seed() ^ 16};
    for (int i = 0; i < N; i++) {
        g[i] = lv_test_rng_f32(&r) * (i < 900 ? 12.0f : 100.0f);
        u[i] = lv_test_rng_f32(&r) * 4;
    }
    g[0] = 0.0f;
    g[1] = -0.0f;
    lv_swiglu_ref(g, u, want, N);
    for (int n = 1; n <= N; n += n < 40 ? 1 : 97) {
        memcpy(got, g, sizeof(float) * (size_t)n);
        got[n] = 12345.0f;
        lv_swiglu_avx512(got, u, got, n); /* in place, as the forward pass calls it */
        CHECK(got[n] == 12345.0f, "n=%d: wrote past the end", n);
        for (int i = 0; i < n; i++) {
            /* the absolute floor: where sigmoid(g) is below FLT_MIN (g < -87.3) the kernel's exp
             * flushes to 0 and expf goes subnormal, so the two differ by up to |g u| FLT_MIN <=
             * 100 x 4 x 2^-126 = 4.7e-36 (a seed with g = -88.5 gave 0 against 1.08e-37) */
            const double tol = (8 + fabs((double)g[i])) * 0x1p-23 * fabs((double)want[i]) + 1e-35;
            CHECK(fabs((double)got[i] - want[i]) <= tol, "n=%d i=%d g=%g: %.9g vs reference %.9g", n, i, (double)g[i], (double)got[i], (double)want[i]);
        }
        if (lv_test_failures) return;
    }
}

TEST(geglu_reference_matches_the_tanh_formula) {
    float g[64], u[64], o[64];
    lv_test_rng r = {lv_test_seed() ^ 17};
    for (int i = 0; i < 64; i++) {
        g[i] = lv_test_rng_f32(&r) * 12;
        u[i] = lv_test_rng_f32(&r);
    }
    lv_geglu_ref(g, u, o, 64);
    for (int i = 0; i < 64; i++) {
        const double x = g[i], want = 0.5 * x * (1 + tanh(sqrt(2 / LV_PI) * (x + 0.044715 * x * x * x))) * u[i];
        CHECK(fabs(o[i] - want) <= 2e-6 * fmax(1.0, fabs(want)), "i=%d x=%g: %.9g vs %.9g", i, x, (double)o[i], want);
    }
}

/* The table GeGLU (llama.cpp's: GELU by the f16 value of x, rounded to f16) against the exact
 * reference: the input's f16 rounding moves GELU by at most max|GELU'| (< 1.13) times |x| 2^-11,
 * the output's by |GELU| 2^-11, and f16 subnormals near 0 are 2^-24 apart; beyond |x| >= 10 it is
 * x or 0. In place, n from 1 up, inputs up to |x| = 40. */
TEST(geglu_table_matches_the_reference) {
    enum { N = 4096 + 7 };
    static float g[N], u[N], want[N], got[N];
    lv_test_rng r = {lv_test_seed() ^ 18};
    for (int i = 0; i < N; i++) {
        g[i] = lv_test_rng_f32(&r) * (i < 3000 ? 6.0f : i < 4000 ? 40.0f : 1e-4f);
        u[i] = lv_test_rng_f32(&r) * 4;
    }
    g[0] = 0.0f;
    g[1] = -0.0f;
    g[2] = 10.0f;
    g[3] = -10.0f;
    lv_geglu_ref(g, u, want, N);
    memcpy(got, g, sizeof(g));
    lv_geglu(got, u, got, N);
    for (int i = 0; i < N; i++) {
        const double x = fabs((double)g[i]), gl = fabs((double)want[i] / (u[i] != 0 ? u[i] : 1));
        const double tol = ((1.13 * x + gl) * 0x1p-11 + 0x1p-23) * fabs((double)u[i]) + 1e-30;
        CHECK(fabs((double)got[i] - want[i]) <= tol, "i=%d x=%g: %.9g vs reference %.9g", i, (double)g[i], (double)got[i], (double)want[i]);
        if (lv_test_failures) return;
    }
}

/* The table activations at every SIMD level the CPU has equal the scalar loops bit for bit (the
 * AVX2 level rounds to f16 with vcvtps2ph and gathers): random inputs of every magnitude, the
 * clamp boundaries, values that round to f16 infinity, subnormals, infinities and NaN, lengths
 * that are not a multiple of 8, in place as the forward passes call them. */
TEST(table_activations_equal_the_scalar_loops) {
    enum { N = 3000 + 5 };
    static float x[N], u[N], want[N], got[N];
    lv_test_rng r = {lv_test_seed() ^ 19};
    for (int i = 0; i < N; i++) {
        uint32_t bits = (uint32_t)lv_test_rng_u64(&r);
        float f;
        memcpy(&f, &bits, 4);
        x[i] = i % 3 == 0 ? f : lv_test_rng_f32(&r) * (float)exp2((double)(lv_test_rng_u64(&r) % 40) - 24);
        u[i] = lv_test_rng_f32(&r) * 4;
    }
    const float special[] = {0.0f, -0.0f, 10.0f, -10.0f, 9.99f, -9.99f, 65504.0f, 65520.0f, -65520.0f, 1e-8f, -3e-8f, 6e-5f, INFINITY, -INFINITY, NAN, 0.5f};
    for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++) x[i] = special[i];
    const lv_simd top = lv_simd_detect();
    for (int f = 0; f < 3; f++)
        for (int n = 1; n <= N; n += n < 40 ? 1 : 331) {
            lv_simd_set_max(LV_SIMD_SCALAR);
            memcpy(want, x, sizeof(float) * (size_t)n);
            if (f == 0) lv_gelu(want, want, n);
            else if (f == 1) lv_gelu_quick(want, want, n);
            else lv_geglu(want, u, want, n);
            for (int l = 1; l <= (int)top; l++) {
                lv_simd_set_max((lv_simd)l);
                memcpy(got, x, sizeof(float) * (size_t)n);
                got[n] = 12345.0f;
                if (f == 0) lv_gelu(got, got, n);
                else if (f == 1) lv_gelu_quick(got, got, n);
                else lv_geglu(got, u, got, n);
                CHECK(got[n] == 12345.0f, "n=%d: wrote past the end", n);
                for (int i = 0; i < n; i++)
                    CHECK(memcmp(&got[i], &want[i], 4) == 0 || (isnan(got[i]) && isnan(want[i])), "%s at %s, n=%d i=%d x=%g: %.9g, scalar %.9g",
                          f == 0 ? "gelu" : f == 1 ? "gelu_quick" : "geglu", lv_simd_name((lv_simd)l), n, i, (double)x[i], (double)got[i], (double)want[i]);
                if (lv_test_failures) break;
            }
            lv_simd_set_max(top);
            if (lv_test_failures) return;
        }
}

/* naive attention in double over one flat array */
static void attn_naive(const float *q, const float *k, const float *v, const int32_t *pos, int n, int32_t qpos, float scale, int Dk,
                       int Dv, double *out) {
    double mx = -INFINITY, w[512];
    for (int j = 0; j < n; j++) {
        if (pos[j] > qpos) {
            w[j] = -INFINITY;
            continue;
        }
        double d = 0;
        for (int e = 0; e < Dk; e++) d += (double)q[e] * k[j * Dk + e];
        w[j] = d * scale;
        mx = fmax(mx, w[j]);
    }
    double sum = 0;
    for (int j = 0; j < n; j++) sum += w[j] == -INFINITY ? 0 : exp(w[j] - mx);
    for (int e = 0; e < Dv; e++) out[e] = 0;
    for (int j = 0; j < n; j++) {
        if (w[j] == -INFINITY) continue;
        const double p = exp(w[j] - mx) / sum;
        for (int e = 0; e < Dv; e++) out[e] += p * v[j * Dv + e];
    }
}

TEST(attention_over_spans_matches_naive_softmax) {
    lv_test_rng r = {lv_test_seed() ^ 13};
    enum { N = 300, DK = 48, DV = 40 };
    float *k = malloc(sizeof(float) * N * DK), *v = malloc(sizeof(float) * N * DV), q[DK], out[DV], scores[N];
    uint16_t *kh = malloc(2 * N * DK), *vh = malloc(2 * N * DV);
    float *kr = malloc(sizeof(float) * N * DK), *vr = malloc(sizeof(float) * N * DV), *kt = malloc(sizeof(float) * N * DK);
    uint16_t *kht = malloc(2 * N * DK);
    int32_t pos[N];
    REQUIRE(k && v && kh && vh && kr && vr && kt && kht, "alloc");
    for (int rep = 0; rep < 20; rep++) {
        for (int j = 0; j < N; j++) pos[j] = j * 2 + (int32_t)(lv_test_rng_u64(&r) % 2); /* increasing, with gaps */
        for (int i = 0; i < N * DK; i++) k[i] = lv_test_rng_f32(&r) * 2;
        for (int i = 0; i < N * DV; i++) v[i] = lv_test_rng_f32(&r);
        for (int i = 0; i < DK; i++) q[i] = lv_test_rng_f32(&r) * 2;
        for (int i = 0; i < N * DK; i++) kr[i] = lv_fp16_to_fp32(kh[i] = lv_fp32_to_fp16(k[i]));
        for (int i = 0; i < N * DV; i++) vr[i] = lv_fp16_to_fp32(vh[i] = lv_fp32_to_fp16(v[i]));
        lv_test_transpose(k, kt, N, DK, sizeof(float)); /* the spans' key layout */
        lv_test_transpose(kh, kht, N, DK, sizeof(uint16_t));
        /* split into uneven spans, as pages of a stream */
        lv_attn_span sp32[8], sp16[8];
        int cuts[9] = {0, 1, 64, 65, 128, 200, 256, 299, N}, ns = 8;
        for (int s = 0; s < ns; s++) {
            sp32[s] = (lv_attn_span){kt + cuts[s], v + cuts[s] * DV, pos + cuts[s], cuts[s + 1] - cuts[s], N};
            sp16[s] = (lv_attn_span){kht + cuts[s], vh + cuts[s] * DV, pos + cuts[s], cuts[s + 1] - cuts[s], N};
        }
        const int32_t qpos = (int32_t)(lv_test_rng_u64(&r) % (2 * N + 2)) - 1;
        const float scale = 1.0f / sqrtf(DK);
        double want[DV];
        attn_naive(q, k, v, pos, N, qpos, scale, DK, DV, want);
        int64_t na = lv_attn_ref(q, sp32, ns, qpos, NULL, scale, LV_KV_F32, LV_KV_F32, DK, DV, scores, out);
        int64_t expect_n = 0;
        for (int j = 0; j < N; j++) expect_n += pos[j] <= qpos;
        CHECK(na == expect_n, "attended %lld keys, expected %lld", (long long)na, (long long)expect_n);
        for (int e = 0; e < DV; e++) CHECK(fabs(out[e] - want[e]) <= 2e-6, "f32 kv: out[%d] %g vs %g (qpos %d)", e, (double)out[e], want[e], qpos);
        /* f16 cache: the query is rounded to f16 too, as llama.cpp does */
        float qh[DK];
        for (int i = 0; i < DK; i++) qh[i] = lv_fp16_to_fp32(lv_fp32_to_fp16(q[i]));
        attn_naive(qh, kr, vr, pos, N, qpos, scale, DK, DV, want);
        lv_attn_ref(q, sp16, ns, qpos, NULL, scale, LV_KV_F16, LV_KV_F16, DK, DV, scores, out);
        for (int e = 0; e < DV; e++) CHECK(fabs(out[e] - want[e]) <= 2e-6, "f16 kv: out[%d] %g vs %g", e, (double)out[e], want[e]);
        if (lv_test_failures) break;
    }
    free(k);
    free(v);
    free(kh);
    free(vh);
    free(kr);
    free(vr);
    free(kt);
    free(kht);
}

TEST(matmul_threads_bias_and_types_match_row_dots) {
    lv_test_rng r = {lv_test_seed() ^ 14};
    const int64_t K = 96, N = 37, T = 5;
    lv_threadpool *tp = lv_threadpool_create(3);
    REQUIRE(tp, "pool");
    float *w = malloc(sizeof(float) * K * N), *x = malloc(sizeof(float) * K * T), *y = malloc(sizeof(float) * N * T), bias[37];
    uint8_t *wq = malloc((size_t)(4 * K * N)), *xq = malloc((size_t)(4 * K * T)), *xv = malloc((size_t)(4 * K));
    for (int64_t i = 0; i < K * N; i++) w[i] = lv_test_rng_f32(&r) * 0.1f;
    for (int64_t i = 0; i < K * T; i++) x[i] = lv_test_rng_f32(&r);
    for (int i = 0; i < N; i++) bias[i] = lv_test_rng_f32(&r);
    const lv_type types[] = {LV_TYPE_F32, LV_TYPE_F16, LV_TYPE_BF16, LV_TYPE_Q8_0, LV_TYPE_Q4_0};
    for (size_t t = 0; t < 5; t++) {
        const int64_t rb = lv_row_bytes(types[t], K);
        for (int64_t n = 0; n < N; n++) lv_quantize_row_file(types[t], w + n * K, wq + n * rb, K);
        lv_tensor W = {"w", types[t], {K, N, 1, 1}, rb, wq};
        lv_matmul(tp, &W, x, T, y, xq, bias);
        const lv_type vt = lv_vec_dot_type(types[t]);
        for (int64_t tt = 0; tt < T; tt++) {
            lv_from_float_row(vt, x + tt * K, xv, K);
            for (int64_t n = 0; n < N; n++) {
                const float want = lv_vec_dot_ref(types[t], K, wq + n * rb, xv) + bias[n];
                CHECK(fabsf(y[tt * N + n] - want) <= 1e-6f * (1 + fabsf(want)), "%s t=%lld n=%lld: %g vs %g", lv_type_name(types[t]),
                      (long long)tt, (long long)n, (double)y[tt * N + n], (double)want);
            }
        }
    }
    lv_threadpool_free(tp);
    free(w);
    free(x);
    free(y);
    free(wq);
    free(xq);
    free(xv);
}

TEST(tiled_attention_equals_reference_at_every_level) {
    lv_test_rng r = {lv_test_seed() ^ 15};
    enum { N = 333, DK = 64, DV = 48, NT = 5, NH = 3 };
    float *k = malloc(sizeof(float) * N * DK), *v = malloc(sizeof(float) * N * DV);
    uint16_t *kh = malloc(2 * N * DK), *vh = malloc(2 * N * DV);
    float q[NT * NH * DK], out[NT * NH * DV], want[DV], scores[N];
    int32_t pos[N], qpos[NT];
    float *scratch = malloc(sizeof(float) * lv_attn_scratch_floats(NT * NH, DK, DV)), *kt = malloc(sizeof(float) * N * DK);
    uint16_t *kht = malloc(2 * N * DK);
    REQUIRE(k && v && kh && vh && scratch && kt && kht, "alloc");
    const lv_simd saved = lv_simd_active();
    for (int level = 0; level <= (int)lv_simd_detect(); level++) {
        lv_simd_set_max((lv_simd)level);
        for (int rep = 0; rep < 10; rep++) {
            for (int j = 0; j < N; j++) pos[j] = j * 3 + (int32_t)(lv_test_rng_u64(&r) % 3);
            for (int i = 0; i < N * DK; i++) kh[i] = lv_fp32_to_fp16(k[i] = lv_test_rng_f32(&r) * 2);
            for (int i = 0; i < N * DV; i++) vh[i] = lv_fp32_to_fp16(v[i] = lv_test_rng_f32(&r));
            for (int i = 0; i < NT * NH * DK; i++) q[i] = lv_test_rng_f32(&r) * 2;
            lv_test_transpose(k, kt, N, DK, sizeof(float));
            lv_test_transpose(kh, kht, N, DK, sizeof(uint16_t));
            /* queries: one before every key (nothing to attend), some in the middle, one after all */
            qpos[0] = -1;
            for (int t = 1; t < NT; t++) qpos[t] = (int32_t)(lv_test_rng_u64(&r) % (3 * N + 3));
            const int cuts[] = {0, 5, 64, 100, 128, 129, 256, N};
            const int ns = 7;
            for (int f16 = 0; f16 < 2; f16++) {
                lv_attn_span sp[7];
                for (int s = 0; s < ns; s++)
                    sp[s] = (lv_attn_span){f16 ? (const void *)(kht + cuts[s]) : (const void *)(kt + cuts[s]),
                                           f16 ? (const void *)(vh + cuts[s] * DV) : (const void *)(v + cuts[s] * DV), pos + cuts[s],
                                           cuts[s + 1] - cuts[s], N};
                lv_attn_job job = {.q = q, .q_tok_stride = NH * DK, .q_head_stride = DK, .out = out, .out_tok_stride = NH * DV,
                                   .out_head_stride = DV, .pos = qpos, .n_tok = NT, .n_head = NH, .spans = sp, .n_spans = ns,
                                   .scale = 0.125f, .kv_type = f16 ? LV_KV_F16 : LV_KV_F32, .kv_type_v = f16 ? LV_KV_F16 : LV_KV_F32, .Dk = DK, .Dv = DV};
                lv_attn(&job, scratch);
                for (int t = 0; t < NT; t++)
                    for (int h = 0; h < NH; h++) {
                        lv_attn_ref(q + (t * NH + h) * DK, sp, ns, qpos[t], NULL, 0.125f, job.kv_type, job.kv_type, DK, DV, scores, want);
                        for (int d = 0; d < DV; d++)
                            CHECK(fabsf(out[(t * NH + h) * DV + d] - want[d]) <= 1e-5f, "%s %s t%d h%d d%d: %g vs %g", lv_simd_name((lv_simd)level),
                                  f16 ? "f16" : "f32", t, h, d, (double)out[(t * NH + h) * DV + d], (double)want[d]);
                        if (lv_test_failures) goto done;
                    }
            }
        }
    }
done:
    lv_simd_set_max(saved);
    free(k);
    free(v);
    free(kh);
    free(vh);
    free(scratch);
    free(kt);
    free(kht);
}

/* A job's rows come out of the tiled kernel exactly as they would alone: prefill (many tokens x
 * G heads in one job) equals token-by-token decode bit for bit only if a row's result does not
 * depend on the tile or job it lands in. Random head dims (the intrinsics kernels' multiples of
 * 16, Dv past 64 and not a multiple of 64, and odd ones for the portable kernel), random spans
 * (shorter and longer than a 64-key block), every mask kind, random per-head span choices; each
 * row also against the reference over the spans its head chose. */
TEST(tiled_attention_rows_do_not_depend_on_their_job) {
    lv_test_rng r = {lv_test_seed() ^ 0x7a11};
    enum { MAXN = 700, MAXD = 160, MAXT = 6, MAXH = 5, MAXS = 12 };
    const int dims[][2] = {{64, 64}, {128, 128}, {16, 80}, {96, 32}, {48, 144}, {160, 16}, {24, 40}, {13, 7}};
    float *k = malloc(sizeof(float) * MAXN * MAXD), *v = malloc(sizeof(float) * MAXN * MAXD);
    uint16_t *kh = malloc(2 * MAXN * MAXD), *vh = malloc(2 * MAXN * MAXD);
    float *q = malloc(sizeof(float) * MAXT * MAXH * MAXD), *out = malloc(sizeof(float) * MAXT * MAXH * MAXD);
    float one[MAXD], want[MAXD], scores[MAXN];
    int32_t pos[MAXN], qpos[MAXT];
    float *scratch = malloc(sizeof(float) * lv_attn_scratch_floats(MAXT * MAXH, MAXD, MAXD)), *kt = malloc(sizeof(float) * MAXN * MAXD);
    uint16_t *kht = malloc(2 * MAXN * MAXD);
    REQUIRE(k && v && kh && vh && q && out && scratch && kt && kht, "alloc");
    const lv_simd saved = lv_simd_active();
    const int reps = lv_test_quick() ? 3 : 8;
    for (int level = 0; level <= (int)lv_simd_detect(); level++) {
        lv_simd_set_max((lv_simd)level);
        for (size_t di = 0; di < sizeof(dims) / sizeof(dims[0]); di++)
            for (int rep = 0; rep < reps; rep++) {
                const int Dk = dims[di][0], Dv = dims[di][1];
                const int n = 1 + (int)(lv_test_rng_u64(&r) % MAXN), nt = 1 + (int)(lv_test_rng_u64(&r) % MAXT);
                const int nh = 1 + (int)(lv_test_rng_u64(&r) % MAXH), f16 = rep & 1;
                for (int j = 0; j < n; j++) pos[j] = j * 2 + (int32_t)(lv_test_rng_u64(&r) % 2);
                for (int i = 0; i < n * Dk; i++) kh[i] = lv_fp32_to_fp16(k[i] = lv_test_rng_f32(&r) * 2);
                for (int i = 0; i < n * Dv; i++) vh[i] = lv_fp32_to_fp16(v[i] = lv_test_rng_f32(&r));
                for (int i = 0; i < nt * nh * Dk; i++) q[i] = lv_test_rng_f32(&r) * 2;
                for (int t = 0; t < nt; t++) qpos[t] = (int32_t)(lv_test_rng_u64(&r) % (2 * (uint64_t)n + 4)) - 2;
                lv_test_transpose(k, kt, n, Dk, sizeof(float));
                lv_test_transpose(kh, kht, n, Dk, sizeof(uint16_t));
                /* spans: random cuts */
                lv_attn_span sp[MAXS];
                uint32_t heads[MAXS];
                int ns = 0;
                for (int at = 0; at < n && ns < MAXS;) {
                    int len = ns == MAXS - 1 ? n - at : 1 + (int)(lv_test_rng_u64(&r) % 150);
                    if (len > n - at) len = n - at;
                    sp[ns] = (lv_attn_span){f16 ? (const void *)(kht + at) : (const void *)(kt + at),
                                            f16 ? (const void *)(vh + (size_t)at * Dv) : (const void *)(v + (size_t)at * Dv), pos + at, len, n};
                    heads[ns++] = (uint32_t)lv_test_rng_u64(&r);
                    at += len;
                }
                const bool choose = rep % 3 == 2;
                lv_attn_mask mask = {.kind = LV_MASK_CAUSAL};
                if (rep % 4 == 1) mask = (lv_attn_mask){.kind = LV_MASK_SINK_WINDOW, .sink_end = 7, .window = 90};
                if (rep % 4 == 3) mask = (lv_attn_mask){.kind = LV_MASK_BLOCK_STRIDED, .block = 32, .local_blocks = 2, .vert_stride = 3};
                lv_attn_job job = {.q = q, .q_tok_stride = nh * Dk, .q_head_stride = Dk, .out = out, .out_tok_stride = nh * Dv,
                                   .out_head_stride = Dv, .pos = qpos, .n_tok = nt, .n_head = nh, .spans = sp, .n_spans = ns,
                                   .span_heads = choose ? heads : NULL, .mask = mask, .scale = 0.125f,
                                   .kv_type = f16 ? LV_KV_F16 : LV_KV_F32, .kv_type_v = f16 ? LV_KV_F16 : LV_KV_F32, .Dk = Dk, .Dv = Dv};
                lv_attn(&job, scratch);
                for (int t = 0; t < nt; t++)
                    for (int h = 0; h < nh; h++) {
                        /* the row alone: its head's spans only */
                        lv_attn_span hs[MAXS];
                        int nhs = 0;
                        for (int s = 0; s < ns; s++)
                            if (!choose || ((heads[s] >> h) & 1u)) hs[nhs++] = sp[s];
                        lv_attn_job alone = job;
                        alone.q = q + (t * nh + h) * Dk;
                        alone.out = one;
                        alone.pos = &qpos[t];
                        alone.n_tok = alone.n_head = 1;
                        alone.spans = hs;
                        alone.n_spans = nhs;
                        alone.span_heads = NULL;
                        lv_attn(&alone, scratch);
                        const float *row = out + (t * nh + h) * Dv;
                        CHECK(memcmp(row, one, sizeof(float) * (size_t)Dv) == 0, "%s Dk%d Dv%d %s mask %d, %d x %d rows, row (%d, %d): differs alone",
                              lv_simd_name((lv_simd)level), Dk, Dv, f16 ? "f16" : "f32", mask.kind, nt, nh, t, h);
                        lv_attn_ref(alone.q, hs, nhs, qpos[t], &mask, 0.125f, job.kv_type, job.kv_type, Dk, Dv, scores, want);
                        for (int d = 0; d < Dv; d++)
                            CHECK(fabsf(row[d] - want[d]) <= 1e-5f, "%s Dk%d Dv%d row (%d, %d) d%d: %g vs reference %g", lv_simd_name((lv_simd)level), Dk, Dv,
                                  t, h, d, (double)row[d], (double)want[d]);
                        if (lv_test_failures) goto done;
                    }
            }
    }
done:
    lv_simd_set_max(saved);
    free(k);
    free(v);
    free(kh);
    free(vh);
    free(q);
    free(out);
    free(scratch);
    free(kt);
    free(kht);
}

/* LServe's page score (Quest bound, max over logical pages) at every SIMD level against the
 * portable reference, for head sizes the vector kernels take and odd ones they hand back:
 * equal within float rounding of a 64-term sum (relative 1e-5 of the sum of |terms|). */
TEST(quest_page_scores_equal_reference_at_every_level) {
    lv_test_rng r = {lv_test_seed() ^ 0x9e57};
    const int dims[] = {64, 128, 32, 24, 13};
    static float q[5 * 128], stats[4 * 2 * 128];
    float want[5], got[5];
    const lv_simd saved = lv_simd_active();
    for (size_t di = 0; di < sizeof(dims) / sizeof(dims[0]); di++) {
        const int Dk = dims[di];
        for (int rep = 0; rep < 50; rep++) {
            for (int i = 0; i < 5 * Dk; i++) q[i] = lv_test_rng_f32(&r) * 3;
            for (int lp = 0; lp < 4; lp++)
                for (int d = 0; d < Dk; d++) {
                    const float a = lv_test_rng_f32(&r) * 2, b = lv_test_rng_f32(&r) * 2;
                    stats[lp * 2 * Dk + d] = fminf(a, b);
                    stats[lp * 2 * Dk + Dk + d] = fmaxf(a, b);
                }
            lv_quest_page_ref(q, Dk, 5, stats, 4, Dk, want);
            /* the reference itself against a double-precision sum */
            for (int h = 0; h < 5; h++) {
                double best = -INFINITY, mag = 0;
                for (int lp = 0; lp < 4; lp++) {
                    double s = 0;
                    for (int d = 0; d < Dk; d++) {
                        const double x = q[h * Dk + d], t = fmax(x * stats[lp * 2 * Dk + Dk + d], x * stats[lp * 2 * Dk + d]);
                        s += t;
                        mag += fabs(t);
                    }
                    best = fmax(best, s);
                }
                CHECK(fabs(want[h] - best) <= 1e-5 * mag + 1e-6, "reference D%d: %g vs %g", Dk, want[h], best);
                for (int level = 1; level <= (int)lv_simd_detect(); level++) {
                    lv_simd_set_max((lv_simd)level);
                    lv_quest_page(q, Dk, 5, stats, 4, Dk, got);
                    CHECK(fabs(got[h] - want[h]) <= 1e-5 * mag + 1e-6, "%s D%d query %d: %g vs %g", lv_simd_name((lv_simd)level), Dk, h, got[h],
                          want[h]);
                }
                lv_simd_set_max(saved);
            }
            /* f16 statistics: at every level the f16 kernel computes exactly what the f32 kernel of
             * that level computes on the widened values */
            static uint16_t h16[4 * 2 * 128];
            static float w32[4 * 2 * 128];
            for (int i = 0; i < 4 * 2 * Dk; i++) {
                h16[i] = lv_fp32_to_fp16(stats[i]);
                w32[i] = lv_fp16_to_fp32(h16[i]);
            }
            for (int level = 0; level <= (int)lv_simd_detect(); level++) {
                lv_simd_set_max((lv_simd)level);
                float g16[5], g32[5];
                lv_quest_page_f16(q, Dk, 5, h16, 4, Dk, g16);
                lv_quest_page(q, Dk, 5, w32, 4, Dk, g32);
                for (int h = 0; h < 5; h++)
                    CHECK(g16[h] == g32[h], "%s D%d query %d: f16 statistics %g vs widened f32 %g", lv_simd_name((lv_simd)level), Dk, h, g16[h],
                          g32[h]);
            }
            lv_simd_set_max(saved);
        }
    }
    lv_simd_set_max(saved);
}

/* The gated delta-net step: the reference against the definition in double precision (decay,
 * delta rule, output, from a given state and from zeros), and the AVX2 kernel against the
 * reference over several steps in place, for head sizes 8..128. */
TEST(gated_delta_net_step_matches_the_definition_and_avx2_the_reference) {
    enum { SMAX = 128 };
    static float s0[SMAX * SMAX], ref[SMAX * SMAX], simd[SMAX * SMAX], q[SMAX], k[SMAX], v[SMAX], o_ref[SMAX], o_simd[SMAX];
    static double M[SMAX * SMAX];
    lv_test_rng r = {lv_test_seed() ^ 0x6d4};
    const int sizes[] = {8, 16, 24, 64, 128};
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        const int S = sizes[si];
        for (int i = 0; i < S * S; i++) s0[i] = lv_test_rng_f32(&r) * 0.5f;
        for (int zero = 0; zero < 2; zero++) {
            for (int i = 0; i < S; i++) {
                q[i] = lv_test_rng_f32(&r) / sqrtf((float)S);
                k[i] = lv_test_rng_f32(&r) / sqrtf((float)S);
                v[i] = lv_test_rng_f32(&r);
            }
            const float decay = 0.5f + 0.5f * fabsf(lv_test_rng_f32(&r)), beta = fabsf(lv_test_rng_f32(&r)), scale = 1.0f / sqrtf((float)S);
            /* the definition: S[i][j] stored at row j, column i */
            for (int i = 0; i < S * S; i++) M[i] = zero ? 0.0 : (double)s0[i] * decay;
            double want[SMAX];
            for (int j = 0; j < S; j++) {
                double dk = 0;
                for (int i = 0; i < S; i++) dk += M[j * S + i] * k[i];
                const double d = ((double)v[j] - dk) * beta;
                double dq = 0;
                for (int i = 0; i < S; i++) {
                    M[j * S + i] += d * k[i];
                    dq += M[j * S + i] * q[i];
                }
                want[j] = dq * scale;
            }
            lv_gdn_step_ref(zero ? NULL : s0, ref, q, k, v, decay, beta, scale, o_ref, S);
            for (int j = 0; j < S; j++) CHECK(fabs(o_ref[j] - want[j]) <= 1e-5 * (1 + fabs(want[j])), "S=%d out %d: %g vs %g", S, j, (double)o_ref[j], want[j]);
            for (int i = 0; i < S * S; i++) CHECK(fabs(ref[i] - M[i]) <= 1e-5 * (1 + fabs(M[i])), "S=%d state %d", S, i);
            if (lv_test_failures) return;
        }
        if (lv_simd_detect() < LV_SIMD_AVX2) continue;
        /* three steps: from s0 into a new buffer, then twice in place */
        memcpy(ref, s0, sizeof(float) * (size_t)(S * S));
        for (int step = 0; step < 3; step++) {
            for (int i = 0; i < S; i++) {
                q[i] = lv_test_rng_f32(&r);
                k[i] = lv_test_rng_f32(&r) / sqrtf((float)S);
                v[i] = lv_test_rng_f32(&r);
            }
            const float decay = 0.9f, beta = 0.7f, scale = 0.125f;
            lv_gdn_step_ref(step ? ref : s0, ref, q, k, v, decay, beta, scale, o_ref, S);
            lv_gdn_step_avx2(step ? simd : s0, simd, q, k, v, decay, beta, scale, o_simd, S);
            for (int j = 0; j < S; j++)
                CHECK(fabsf(o_simd[j] - o_ref[j]) <= 1e-5f * (1 + fabsf(o_ref[j])), "S=%d step %d out %d: avx2 %g vs reference %g", S, step, j,
                      (double)o_simd[j], (double)o_ref[j]);
            for (int i = 0; i < S * S; i++)
                CHECK(fabsf(simd[i] - ref[i]) <= 1e-5f * (1 + fabsf(ref[i])), "S=%d step %d state %d", S, step, i);
            if (lv_test_failures) return;
        }
    }
}

/* Quantized KV pages (attn_q_impl.h, q8_0 and q4_0): every SIMD level against lv_attn_ref (double dot products over
 * the dequantized keys and values, the query rounded as the key type takes it) and against the
 * scalar level, on fresh random keys, values and queries; keys and values quantized or float in
 * every mix (-ctk / -ctv); spans shorter and longer than a block, causal and Lambda masks, random
 * per-head span choices. Each row also computed alone (n_tok 1, one head) must equal its row of
 * the big job bit for bit: what makes prefill equal token-by-token decode on quantized pages. */
static void quantize_rows(lv_kv_type t, const float *x, int n, int D, int ld, int8_t *q, uint16_t *s) {
    lv_block_q8_0 b[1024 / LV_QK8_0];
    lv_block_q4_0 b4[1024 / LV_QK4_0];
    for (int j = 0; j < n; j++) {
        if (t == LV_KV_Q4_0) {
            lv_quantize_q4_0_ref(x + (size_t)j * D, b4, D);
            for (int i = 0; i < D / LV_QK4_0; i++) {
                memcpy(q + (size_t)j * D / 2 + 16 * i, b4[i].qs, 16);
                s[(size_t)i * ld + j] = b4[i].d;
            }
            continue;
        }
        lv_quantize_q8_0_act(x + (size_t)j * D, b, D);
        for (int i = 0; i < D / LV_QK8_0; i++) {
            memcpy(q + (size_t)j * D + LV_QK8_0 * i, b[i].qs, LV_QK8_0);
            s[(size_t)i * ld + j] = b[i].d;
        }
    }
}

TEST(quantized_attention_equals_reference_at_every_level) {
    lv_test_rng r = {lv_test_seed() ^ 0x9a8};
    enum { N = 300, MAXD = 128, NT = 4, NH = 3, NS = 6 };
    const int dims[][2] = {{64, 64}, {128, 96}, {32, 32}};
    const lv_kv_type types[][2] = {{LV_KV_Q8_0, LV_KV_Q8_0}, {LV_KV_Q4_0, LV_KV_Q4_0}, {LV_KV_Q8_0, LV_KV_F16}, {LV_KV_F16, LV_KV_Q4_0},
                                   {LV_KV_Q4_0, LV_KV_F32}, {LV_KV_F32, LV_KV_Q8_0}, {LV_KV_Q8_0, LV_KV_Q4_0}, {LV_KV_F16, LV_KV_F32}};
    float *k = malloc(sizeof(float) * N * MAXD), *v = malloc(sizeof(float) * N * MAXD), *kt = malloc(sizeof(float) * N * MAXD);
    uint16_t *kh = malloc(2 * N * MAXD), *kht = malloc(2 * N * MAXD), *vh = malloc(2 * N * MAXD);
    int8_t *kq = malloc(N * MAXD), *vq = malloc(N * MAXD);
    uint16_t *ks = malloc(2 * N * MAXD / 32), *vs = malloc(2 * N * MAXD / 32);
    float q[NT * NH * MAXD], out[NT * NH * MAXD], lvl0[NT * NH * MAXD], one[MAXD], want[MAXD], scores[N];
    int32_t pos[N], qpos[NT];
    uint32_t heads[NS];
    float *scratch = malloc(sizeof(float) * lv_attn_scratch_floats(NT * NH, MAXD, MAXD));
    REQUIRE(k && v && kt && kh && kht && vh && kq && vq && ks && vs && scratch, "alloc");
    const lv_simd saved = lv_simd_active();
    double worst = 0, worst_lvl = 0;
    for (int rep = 0; rep < (lv_test_quick() ? 8 : 24); rep++) {
        const int Dk = dims[rep % 3][0], Dv = dims[rep % 3][1];
        const lv_kv_type kt_ = types[rep % 8][0], vt_ = types[rep % 8][1];
        for (int j = 0; j < N; j++) pos[j] = j * 2 + (int32_t)(lv_test_rng_u64(&r) % 2);
        for (int i = 0; i < N * Dk; i++) kh[i] = lv_fp32_to_fp16(k[i] = lv_test_rng_f32(&r) * 2);
        for (int i = 0; i < N * Dv; i++) vh[i] = lv_fp32_to_fp16(v[i] = lv_test_rng_f32(&r));
        for (int i = 0; i < NT * NH * Dk; i++) q[i] = lv_test_rng_f32(&r) * 2;
        lv_test_transpose(k, kt, N, Dk, sizeof(float));
        lv_test_transpose(kh, kht, N, Dk, sizeof(uint16_t));
        quantize_rows(kt_, k, N, Dk, N, kq, ks);
        quantize_rows(vt_, v, N, Dv, N, vq, vs);
        qpos[0] = -1;
        for (int t = 1; t < NT; t++) qpos[t] = (int32_t)(lv_test_rng_u64(&r) % (2 * N + 2));
        const int cuts[NS + 1] = {0, 7, 64, 100, 165, 230, N};
        lv_attn_span sp[NS];
        for (int s = 0; s < NS; s++) {
            const int c = cuts[s];
            sp[s] = (lv_attn_span){.pos = pos + c, .n = cuts[s + 1] - c, .ldk = N};
            const bool qk = lv_kv_quantized(kt_), qv = lv_kv_quantized(vt_);
            sp[s].k = qk ? (const void *)(kq + (size_t)c * (size_t)lv_kv_qrow_bytes(kt_, Dk)) : kt_ == LV_KV_F16 ? (const void *)(kht + c) : (const void *)(kt + c);
            sp[s].ks = qk ? ks + c : NULL;
            sp[s].v = qv ? (const void *)(vq + (size_t)c * (size_t)lv_kv_qrow_bytes(vt_, Dv))
                         : vt_ == LV_KV_F16 ? (const void *)(vh + (size_t)c * Dv) : (const void *)(v + (size_t)c * Dv);
            sp[s].vs = qv ? vs + c : NULL;
            heads[s] = rep % 2 ? (uint32_t)(lv_test_rng_u64(&r) % 8) | 1u : UINT32_MAX;
        }
        lv_attn_mask mask = {.kind = LV_MASK_CAUSAL};
        if (rep % 4 == 3) mask = (lv_attn_mask){.kind = LV_MASK_SINK_WINDOW, .sink_end = 9, .window = 70};
        for (int level = 0; level <= (int)lv_simd_detect(); level++) {
            lv_simd_set_max((lv_simd)level);
            lv_attn_job job = {.q = q, .q_tok_stride = NH * Dk, .q_head_stride = Dk, .out = out, .out_tok_stride = NH * Dv, .out_head_stride = Dv,
                               .pos = qpos, .n_tok = NT, .n_head = NH, .spans = sp, .n_spans = NS, .span_heads = heads, .mask = mask,
                               .scale = 0.125f, .kv_type = kt_, .kv_type_v = vt_, .Dk = Dk, .Dv = Dv};
            lv_attn(&job, scratch);
            for (int t = 0; t < NT; t++)
                for (int h = 0; h < NH; h++) {
                    lv_attn_span hs[NS];
                    int nhs = 0;
                    for (int s = 0; s < NS; s++)
                        if ((heads[s] >> h) & 1u) hs[nhs++] = sp[s];
                    lv_attn_ref(q + (t * NH + h) * Dk, hs, nhs, qpos[t], &mask, 0.125f, kt_, vt_, Dk, Dv, scores, want);
                    const float *o = out + (t * NH + h) * Dv;
                    for (int d = 0; d < Dv; d++) {
                        worst = fmax(worst, fabs(o[d] - want[d]));
                        if (level) worst_lvl = fmax(worst_lvl, fabs(o[d] - lvl0[(t * NH + h) * Dv + d]));
                        CHECK(fabsf(o[d] - want[d]) <= 1e-5f, "%s K %s V %s Dk %d Dv %d t%d h%d d%d: %g vs reference %g", lv_simd_name((lv_simd)level),
                              lv_kv_type_name(kt_), lv_kv_type_name(vt_), Dk, Dv, t, h, d, (double)o[d], (double)want[d]);
                        if (level)
                            CHECK(fabsf(o[d] - lvl0[(t * NH + h) * Dv + d]) <= 1e-5f, "%s vs scalar: K %s V %s t%d h%d d%d", lv_simd_name((lv_simd)level),
                                  lv_kv_type_name(kt_), lv_kv_type_name(vt_), t, h, d);
                    }
                    /* the row alone: bit for bit */
                    lv_attn_job alone = job;
                    alone.q = q + (t * NH + h) * Dk;
                    alone.out = one;
                    alone.pos = qpos + t;
                    alone.n_tok = 1;
                    alone.n_head = 1;
                    alone.spans = hs;
                    alone.n_spans = nhs;
                    alone.span_heads = NULL;
                    lv_attn(&alone, scratch);
                    CHECK(memcmp(one, o, sizeof(float) * (size_t)Dv) == 0, "%s K %s V %s t%d h%d: the row alone differs from its row in the job",
                          lv_simd_name((lv_simd)level), lv_kv_type_name(kt_), lv_kv_type_name(vt_), t, h);
                    if (lv_test_failures) goto done;
                }
            if (level == 0) memcpy(lvl0, out, sizeof(float) * NT * NH * (size_t)Dv);
        }
    }
    printf("  max |out - reference| %.1e, max |level - scalar| %.1e (tolerance 1e-5)\n", worst, worst_lvl);
done:
    lv_simd_set_max(saved);
    free(k);
    free(v);
    free(kt);
    free(kh);
    free(kht);
    free(vh);
    free(kq);
    free(vq);
    free(ks);
    free(vs);
    free(scratch);
}

/* The quantized kernel scores up to 4 query rows per key load (a decode step's GQA group of one KV
 * head): on fresh random inputs, group sizes 1..8 (groups of 4 plus a rest of 1-3), one and two
 * tokens, odd span lengths (a block's last keys zero-padded to 8), every SIMD level against
 * lv_attn_ref and against the scalar level, and each row alone bit for bit. */
TEST(quantized_attention_gqa_groups_equal_reference) {
    lv_test_rng r = {lv_test_seed() ^ 0x6a4};
    enum { MAXN = 260, D = 64, MAXQ = 2 * 8 };
    const lv_kv_type types[][2] = {{LV_KV_Q8_0, LV_KV_Q8_0}, {LV_KV_Q4_0, LV_KV_Q4_0}, {LV_KV_Q8_0, LV_KV_F16}, {LV_KV_Q4_0, LV_KV_Q8_0}};
    float *k = malloc(sizeof(float) * MAXN * D), *v = malloc(sizeof(float) * MAXN * D);
    uint16_t *vh = malloc(2 * MAXN * D), *ks = malloc(2 * MAXN * D / 32), *vs = malloc(2 * MAXN * D / 32);
    int8_t *kq = malloc(MAXN * D), *vq = malloc(MAXN * D);
    float q[MAXQ * D], out[MAXQ * D], lvl0[MAXQ * D], one[D], want[D], scores[MAXN];
    int32_t pos[MAXN], qpos[2];
    float *scratch = malloc(sizeof(float) * lv_attn_scratch_floats(MAXQ, D, D));
    REQUIRE(k && v && vh && ks && vs && kq && vq && scratch, "alloc");
    const lv_simd saved = lv_simd_active();
    double worst = 0;
    int cases = 0;
    for (int G = 1; G <= 8; G++)
        for (int rep = 0; rep < (lv_test_quick() ? 2 : 4); rep++) {
            const int n = 1 + 2 * (int)(lv_test_rng_u64(&r) % (MAXN / 2)); /* odd */
            const int nt = 1 + rep % 2;
            const lv_kv_type kt_ = types[(G + rep) % 4][0], vt_ = types[(G + rep) % 4][1];
            for (int j = 0; j < n; j++) pos[j] = j;
            for (int i = 0; i < n * D; i++) k[i] = lv_test_rng_f32(&r) * 2;
            for (int i = 0; i < n * D; i++) vh[i] = lv_fp32_to_fp16(v[i] = lv_test_rng_f32(&r));
            for (int i = 0; i < nt * G * D; i++) q[i] = lv_test_rng_f32(&r) * 2;
            quantize_rows(kt_, k, n, D, n, kq, ks);
            quantize_rows(vt_, v, n, D, n, vq, vs);
            qpos[0] = n - nt;
            qpos[1] = n - 1;
            /* two spans: an odd cut, as pages of a selection */
            const int cut = n > 2 ? 1 + 2 * (int)(lv_test_rng_u64(&r) % (uint64_t)(n / 2)) : n;
            lv_attn_span sp[2];
            int ns = 0;
            for (int c0 = 0; c0 < n; c0 = c0 == 0 ? cut : n) {
                const int c1 = c0 == 0 ? cut : n;
                sp[ns] = (lv_attn_span){.pos = pos + c0, .n = c1 - c0, .ldk = n, .ks = ks + c0};
                sp[ns].k = kq + (size_t)c0 * (size_t)lv_kv_qrow_bytes(kt_, D);
                if (lv_kv_quantized(vt_)) {
                    sp[ns].v = vq + (size_t)c0 * (size_t)lv_kv_qrow_bytes(vt_, D);
                    sp[ns].vs = vs + c0;
                } else {
                    sp[ns].v = vh + (size_t)c0 * D;
                }
                ns++;
            }
            const lv_attn_mask mask = {.kind = LV_MASK_CAUSAL};
            for (int level = 0; level <= (int)lv_simd_detect(); level++) {
                lv_simd_set_max((lv_simd)level);
                lv_attn_job job = {.q = q, .q_tok_stride = G * D, .q_head_stride = D, .out = out, .out_tok_stride = G * D, .out_head_stride = D,
                                   .pos = qpos + (nt == 1), .n_tok = nt, .n_head = G, .spans = sp, .n_spans = ns, .mask = mask,
                                   .scale = 0.125f, .kv_type = kt_, .kv_type_v = vt_, .Dk = D, .Dv = D};
                lv_attn(&job, scratch);
                for (int row = 0; row < nt * G; row++) {
                    lv_attn_ref(q + row * D, sp, ns, job.pos[row / G], &mask, 0.125f, kt_, vt_, D, D, scores, want);
                    const float *o = out + row * D;
                    for (int d = 0; d < D; d++) {
                        worst = fmax(worst, fabs(o[d] - want[d]));
                        CHECK(fabsf(o[d] - want[d]) <= 1e-5f, "%s G %d n %d K %s V %s row %d d%d: %g vs reference %g", lv_simd_name((lv_simd)level), G,
                              n, lv_kv_type_name(kt_), lv_kv_type_name(vt_), row, d, (double)o[d], (double)want[d]);
                        if (level)
                            CHECK(fabsf(o[d] - lvl0[row * D + d]) <= 1e-5f, "%s vs scalar: G %d n %d row %d d%d", lv_simd_name((lv_simd)level), G, n, row, d);
                    }
                    lv_attn_job alone = job;
                    alone.q = q + row * D;
                    alone.out = one;
                    alone.pos = job.pos + row / G;
                    alone.n_tok = 1;
                    alone.n_head = 1;
                    lv_attn(&alone, scratch);
                    CHECK(memcmp(one, o, sizeof(float) * D) == 0, "%s G %d n %d K %s V %s: row %d alone differs from its row in the group",
                          lv_simd_name((lv_simd)level), G, n, lv_kv_type_name(kt_), lv_kv_type_name(vt_), row);
                    if (lv_test_failures) goto done;
                }
                if (level == 0) memcpy(lvl0, out, sizeof(float) * (size_t)(nt * G * D));
                cases++;
            }
        }
    printf("  %d cases, max |out - reference| %.1e (tolerance 1e-5)\n", cases, worst);
done:
    lv_simd_set_max(saved);
    free(k);
    free(v);
    free(vh);
    free(ks);
    free(vs);
    free(kq);
    free(vq);
    free(scratch);
}
