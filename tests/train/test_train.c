/*
 * test_train.c: the trainer (src/train/): every kernel against its reference, every backward op
 * against finite differences, a whole tiny model's gradients against finite differences (llama
 * with tied output, qwen2 with biases and NEOX rope, DuoAttention gates), thread-count
 * independence, and the trainer's logits against the inference engine's for the same weights.
 */
#include "longview.h"
#include "lv_test.h"
#include "kernels/qkernels.h"
#include "train/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill(lv_test_rng *r, float *p, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) p[i] = lv_test_rng_f32(r) * scale;
}

static double dot_d(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

static float max_abs_diff(const float *a, const float *b, int64_t n, float *max_ref) {
    float md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        md = fmaxf(md, fabsf(a[i] - b[i]));
        mr = fmaxf(mr, fabsf(b[i]));
    }
    if (max_ref) *max_ref = mr;
    return md;
}

/* |an - fd| <= rtol * max(|fd|, floor) + atol */
static bool grad_close(double an, double fd, double rtol, double atol) { return fabs(an - fd) <= rtol * fabs(fd) + atol; }

/* ---------------------------------------------------------------------------------------------
 * GEMM
 * ------------------------------------------------------------------------------------------- */

TEST(train_gemm_matches_reference) {
    lv_test_rng r = {lv_test_seed()};
    const int64_t shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {8, 32, 16}, {9, 33, 17}, {64, 64, 32}, {37, 130, 300}, {100, 513, 257}, {3, 1000, 64}};
    for (size_t si = 0; si < LV_ARRAY_LEN(shapes); si++) {
        const int64_t M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
        for (int ta = 0; ta < 2; ta++)
            for (int acc = 0; acc < 2; acc++) {
                const int64_t lda = (ta ? M : K) + 3, ldb = N + 5, ldc = N + 2;
                float *A = malloc(sizeof(float) * (size_t)((ta ? K : M) * lda)), *B = malloc(sizeof(float) * (size_t)(K * ldb));
                float *C0 = malloc(sizeof(float) * (size_t)(M * ldc)), *C1 = malloc(sizeof(float) * (size_t)(M * ldc)),
                      *C2 = malloc(sizeof(float) * (size_t)(M * ldc));
                fill(&r, A, (ta ? K : M) * lda, 1.0f);
                fill(&r, B, K * ldb, 1.0f);
                fill(&r, C0, M * ldc, 1.0f);
                memcpy(C1, C0, sizeof(float) * (size_t)(M * ldc));
                memcpy(C2, C0, sizeof(float) * (size_t)(M * ldc));
                lv_tr_gemm_ref(M, N, K, A, lda, ta, B, ldb, C0, ldc, acc);
                lv_tr_gemm_portable(M, N, K, A, lda, ta, B, ldb, C1, ldc, acc);
                lv_tr_gemm(M, N, K, A, lda, ta, B, ldb, C2, ldc, acc);
                float worst1 = 0, worst2 = 0;
                bool pad_ok = true;
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = 0; j < ldc; j++) {
                        const float ref = C0[i * ldc + j];
                        if (j >= N) { /* columns past N are never touched */
                            pad_ok = pad_ok && C1[i * ldc + j] == ref && C2[i * ldc + j] == ref;
                            continue;
                        }
                        const float tol = 1e-6f * (float)K + 1e-6f * fabsf(ref);
                        worst1 = fmaxf(worst1, fabsf(C1[i * ldc + j] - ref) / tol);
                        worst2 = fmaxf(worst2, fabsf(C2[i * ldc + j] - ref) / tol);
                    }
                CHECK(worst1 <= 1 && worst2 <= 1 && pad_ok, "gemm M=%lld N=%lld K=%lld ta=%d acc=%d: portable %.2f, active %.2f of tolerance, pad %d",
                      (long long)M, (long long)N, (long long)K, ta, acc, (double)worst1, (double)worst2, pad_ok);
                free(A);
                free(B);
                free(C0);
                free(C1);
                free(C2);
            }
    }
}

/* What the FMA kernels (AVX2 and AVX-512) compute for each element: start from C (accumulate) or
 * 0, one fused multiply-add per k, in order, in float (train.h). fmaf rounds once, as vfmadd does. */
static void gemm_fma_seq(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, bool ta, const float *B, int64_t ldb, float *C,
                         int64_t ldc, bool acc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float s = acc ? C[i * ldc + j] : 0.0f;
            for (int64_t k = 0; k < K; k++) s = fmaf(ta ? A[k * lda + i] : A[i * lda + k], B[k * ldb + j], s);
            C[i * ldc + j] = s;
        }
}

typedef void (*gemm_fn)(int64_t, int64_t, int64_t, const float *, int64_t, bool, const float *, int64_t, float *, int64_t, bool);

/* lv_tr_gemm_avx2 returns false only when it cannot allocate its packing buffers (C untouched) */
static void gemm_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, bool ta, const float *B, int64_t ldb, float *C, int64_t ldc,
                      bool acc) {
    if (!lv_tr_gemm_avx2(M, N, K, A, lda, ta, B, ldb, C, ldc, acc)) abort();
}

/* The FMA kernels on fresh random shapes (edges of the 6x16 / 8x32 tiles, the 256-k blocks, the
 * AVX2 kernel's 120-row and 1024-column blocks; trans_a, accumulate, odd leading dimensions):
 * - within a bound of the double reference argued from K and the values: recursive summation with
 *   one rounding per step (fused multiply-add) is off by at most gamma_K * S, gamma_K = K u / (1 - K u),
 *   u = 2^-24, S = |C| + sum_k |a_k b_k| (Higham, Accuracy and Stability, 4.2); the reference adds
 *   its own rounding to float, u |ref|;
 * - bit for bit equal to the sequential fmaf loop (so AVX2 and AVX-512 agree bit for bit);
 * - columns past N untouched;
 * - the same bits when C is computed in pieces (rows and columns split at random points, as
 *   threads split it), whatever the split. */
TEST(train_gemm_fma_kernels) {
    lv_test_rng r = {lv_test_seed()};
    struct { const char *name; gemm_fn fn; lv_simd level; } kern[] = {{"avx2", gemm_avx2, LV_SIMD_AVX2},
                                                                       {"avx512", lv_tr_gemm_avx512, LV_SIMD_AVX512}};
    int n_kern = 0;
    for (size_t ki = 0; ki < LV_ARRAY_LEN(kern); ki++) n_kern += lv_simd_detect() >= kern[ki].level;
    if (!n_kern) SKIP("no AVX2+FMA on this CPU");
    const int n_random = lv_test_quick() ? 6 : 24;
    for (int si = 0; si < n_random + 2; si++) {
        int64_t M, N, K;
        if (si == n_random) M = 127, N = 1041, K = 263;     /* two row blocks, two column blocks, two k blocks */
        else if (si == n_random + 1) M = 6, N = 16, K = 1; /* one full tile, one k */
        else {
            M = 1 + (int64_t)(lv_test_rng_u64(&r) % 40);
            N = 1 + (int64_t)(lv_test_rng_u64(&r) % 80);
            K = 1 + (int64_t)(lv_test_rng_u64(&r) % 600);
        }
        const bool ta = lv_test_rng_u64(&r) & 1, acc = si % 3 != 0;
        const int64_t lda = (ta ? M : K) + (int64_t)(lv_test_rng_u64(&r) % 7), ldb = N + (int64_t)(lv_test_rng_u64(&r) % 7),
                      ldc = N + 1 + (int64_t)(lv_test_rng_u64(&r) % 5);
        const size_t na = (size_t)((ta ? K : M) * lda), nb = (size_t)(K * ldb), nc = (size_t)(M * ldc);
        float *A = malloc(sizeof(float) * na), *B = malloc(sizeof(float) * nb), *C0 = malloc(sizeof(float) * nc),
              *Cr = malloc(sizeof(float) * nc), *Cs = malloc(sizeof(float) * nc), *Ck = malloc(sizeof(float) * nc), *Cp = malloc(sizeof(float) * nc);
        REQUIRE(A && B && C0 && Cr && Cs && Ck && Cp, "alloc");
        fill(&r, A, (int64_t)na, 1.0f);
        fill(&r, B, (int64_t)nb, 1.0f);
        fill(&r, C0, (int64_t)nc, 1.0f);
        memcpy(Cr, C0, sizeof(float) * nc);
        memcpy(Cs, C0, sizeof(float) * nc);
        lv_tr_gemm_ref(M, N, K, A, lda, ta, B, ldb, Cr, ldc, acc);
        gemm_fma_seq(M, N, K, A, lda, ta, B, ldb, Cs, ldc, acc);
        const double u = 0x1p-24, gamma = (double)K * u / (1 - (double)K * u);
        for (size_t ki = 0; ki < LV_ARRAY_LEN(kern); ki++) {
            if (lv_simd_detect() < kern[ki].level) continue;
            memcpy(Ck, C0, sizeof(float) * nc);
            kern[ki].fn(M, N, K, A, lda, ta, B, ldb, Ck, ldc, acc);
            double worst = 0;
            int64_t n_diff_seq = 0;
            bool pad_ok = true;
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < ldc; j++) {
                    const int64_t e = i * ldc + j;
                    if (j >= N) {
                        pad_ok = pad_ok && memcmp(&Ck[e], &C0[e], sizeof(float)) == 0;
                        continue;
                    }
                    double S = acc ? fabs((double)C0[e]) : 0;
                    for (int64_t k = 0; k < K; k++) S += fabs((double)(ta ? A[k * lda + i] : A[i * lda + k]) * (double)B[k * ldb + j]);
                    const double tol = gamma * S + u * fabs((double)Cr[e]) + 1e-30;
                    worst = fmax(worst, fabs((double)Ck[e] - (double)Cr[e]) / tol);
                    n_diff_seq += memcmp(&Ck[e], &Cs[e], sizeof(float)) != 0;
                }
            /* the same product in pieces: a random row split, then a random column split */
            memcpy(Cp, C0, sizeof(float) * nc);
            const int64_t mi = (int64_t)(lv_test_rng_u64(&r) % (uint64_t)(M + 1)), nj = (int64_t)(lv_test_rng_u64(&r) % (uint64_t)(N + 1));
            const float *A2 = ta ? A + mi : A + mi * lda;
            kern[ki].fn(mi, nj, K, A, lda, ta, B, ldb, Cp, ldc, acc);
            kern[ki].fn(mi, N - nj, K, A, lda, ta, B + nj, ldb, Cp + nj, ldc, acc);
            kern[ki].fn(M - mi, N, K, A2, lda, ta, B, ldb, Cp + mi * ldc, ldc, acc);
            const bool split_same = memcmp(Cp, Ck, sizeof(float) * nc) == 0;
            CHECK(worst <= 1 && n_diff_seq == 0 && pad_ok && split_same,
                  "%s M=%lld N=%lld K=%lld ta=%d acc=%d lda=%lld ldb=%lld ldc=%lld: %.3g of the error bound, %lld elements differ from the fmaf "
                  "loop, pad %d, split at row %lld col %lld same %d",
                  kern[ki].name, (long long)M, (long long)N, (long long)K, ta, acc, (long long)lda, (long long)ldb, (long long)ldc, worst,
                  (long long)n_diff_seq, pad_ok, (long long)mi, (long long)nj, split_same);
        }
        free(A), free(B), free(C0), free(Cr), free(Cs), free(Ck), free(Cp);
    }
}

/* the threaded matmuls on the active kernel give the same bits with 1, 2 and 3 threads */
TEST(train_gemm_threads_bit_identical) {
    lv_test_rng r = {lv_test_seed()};
    const int64_t T = 77, K = 300, N = 53;
    float *x = malloc(sizeof(float) * T * K), *W = malloc(sizeof(float) * N * K), *dy = malloc(sizeof(float) * T * N),
          *scratch = malloc(sizeof(float) * K * N), *out[3];
    REQUIRE(x && W && dy && scratch, "alloc");
    fill(&r, x, T * K, 1), fill(&r, W, N * K, 1), fill(&r, dy, T * N, 1);
    const int64_t n_out = T * N + T * K + N * K;
    for (int pass = 0; pass < 3; pass++) {
        out[pass] = calloc((size_t)n_out, sizeof(float));
        REQUIRE(out[pass], "alloc");
        lv_threadpool *tp = lv_threadpool_create(pass + 1);
        REQUIRE(tp, "threadpool");
        lv_tr_matmul_fwd(tp, x, W, NULL, out[pass], T, K, N, scratch);
        lv_tr_matmul_bwd(tp, dy, x, W, out[pass] + T * N, false, out[pass] + T * N + T * K, NULL, T, K, N);
        lv_threadpool_free(tp);
    }
    CHECK(memcmp(out[0], out[1], sizeof(float) * (size_t)n_out) == 0 && memcmp(out[0], out[2], sizeof(float) * (size_t)n_out) == 0,
          "y, dx, dW differ between 1, 2 and 3 threads (%s)", lv_simd_name(lv_simd_active()));
    free(x), free(W), free(dy), free(scratch), free(out[0]), free(out[1]), free(out[2]);
}

TEST(train_exp_accuracy) {
    float x[300], y[300];
    for (int i = 0; i < 300; i++) x[i] = y[i] = -80.0f + 0.28f * (float)i;
    lv_tr_exp_inplace(y, 300);
    float worst = 0;
    for (int i = 0; i < 300; i++) worst = fmaxf(worst, fabsf(y[i] - expf(x[i])) / expf(x[i]));
    /* the range reduction t = x log2(e) is rounded to float: about 3e-8 |x| relative */
    CHECK(worst < 1e-5f, "exp relative error %g", (double)worst);
}

/* ---------------------------------------------------------------------------------------------
 * finite-difference checks of single ops; loss = sum(c * y) in double
 * ------------------------------------------------------------------------------------------- */

TEST(train_grad_matmul) {
    lv_test_rng r = {lv_test_seed()};
    lv_threadpool *tp = lv_threadpool_create(1);
    REQUIRE(tp, "threadpool");
    const int64_t T = 13, K = 21, N = 19;
    float x[13 * 21], W[19 * 21], b[19], y[13 * 19], c[13 * 19], dx[13 * 21], dW[19 * 21], db[19], scratch[21 * 19];
    fill(&r, x, T * K, 1), fill(&r, W, N * K, 1), fill(&r, b, N, 1), fill(&r, c, T * N, 1);
    memset(dW, 0, sizeof(dW));
    memset(db, 0, sizeof(db));
    lv_tr_matmul_bwd(tp, c, x, W, dx, false, dW, db, T, K, N);
    const float eps = 1e-2f;
    int bad = 0;
    float *ps[] = {x, W, b}, *gs[] = {dx, dW, db};
    const int64_t ns[] = {T * K, N * K, N};
    for (int which = 0; which < 3; which++)
        for (int64_t i = 0; i < ns[which]; i += 3) {
            float *p = ps[which];
            const float old = p[i];
            p[i] = old + eps;
            lv_tr_matmul_fwd(tp, x, W, b, y, T, K, N, scratch);
            const double lp = dot_d(c, y, T * N);
            p[i] = old - eps;
            lv_tr_matmul_fwd(tp, x, W, b, y, T, K, N, scratch);
            const double lm = dot_d(c, y, T * N);
            p[i] = old;
            if (!grad_close(gs[which][i], (lp - lm) / (2 * eps), 1e-3, 1e-3)) bad++;
        }
    CHECK(bad == 0, "%d matmul gradients differ from finite differences", bad);
    lv_threadpool_free(tp);
}

TEST(train_grad_rmsnorm) {
    lv_test_rng r = {lv_test_seed()};
    const int64_t n = 37;
    float x[37], w[37], y[37], c[37], dx[37], dw[37];
    fill(&r, x, n, 2), fill(&r, w, n, 1), fill(&r, c, n, 1);
    memset(dw, 0, sizeof(dw));
    const float rr = lv_tr_rmsnorm_fwd(x, w, y, n, 1e-5f);
    lv_tr_rmsnorm_bwd(x, w, rr, c, dx, false, dw, n);
    int bad = 0;
    const float eps = 1e-3f;
    for (int which = 0; which < 2; which++)
        for (int64_t i = 0; i < n; i++) {
            float *p = which ? w : x;
            const float old = p[i];
            p[i] = old + eps;
            lv_tr_rmsnorm_fwd(x, w, y, n, 1e-5f);
            const double lp = dot_d(c, y, n);
            p[i] = old - eps;
            lv_tr_rmsnorm_fwd(x, w, y, n, 1e-5f);
            const double lm = dot_d(c, y, n);
            p[i] = old;
            if (!grad_close(which ? dw[i] : dx[i], (lp - lm) / (2 * eps), 5e-3, 5e-4)) {
                fprintf(stderr, "    %s[%d]: analytic %g, finite difference %g\n", which ? "w" : "x", (int)i, (double)(which ? dw[i] : dx[i]), (lp - lm) / (2 * eps));
                bad++;
            }
        }
    CHECK(bad == 0, "%d rmsnorm gradients differ from finite differences", bad);
    /* accumulate mode adds */
    float dx2[37];
    for (int i = 0; i < n; i++) dx2[i] = 1.0f;
    lv_tr_rmsnorm_bwd(x, w, rr, c, dx2, true, NULL, n);
    float worst = 0;
    for (int i = 0; i < n; i++) worst = fmaxf(worst, fabsf(dx2[i] - 1.0f - dx[i]));
    CHECK(worst < 1e-6f, "accumulating rmsnorm backward differs by %g", (double)worst);
}

TEST(train_grad_rope) {
    lv_test_rng r = {lv_test_seed()};
    for (int type = 0; type < 2; type++) {
        const lv_rope_type rt = type ? LV_ROPE_NEOX : LV_ROPE_NORM;
        lv_rope_params rp = {.n_rot = 12, .type = rt, .freq_base = 10000, .freq_scale = 1, .attn_factor = 1, .n_ctx_orig = 4096};
        float cache[12];
        lv_rope_cache(&rp, 1234, cache);
        const int H = 3, D = 16;
        float x[48], x0[48], c[48], dx[48];
        fill(&r, x, 48, 1), fill(&r, c, 48, 1);
        memcpy(x0, x, sizeof(x));
        /* forward equals the engine's lv_rope_apply head by head */
        float xe[48];
        memcpy(xe, x, sizeof(x));
        for (int h = 0; h < H; h++) lv_rope_apply(&rp, cache, xe + h * D);
        lv_tr_rope(rt, 12, cache, x, H, D, false);
        CHECK(memcmp(x, xe, sizeof(x)) == 0, "rope type %d differs from the engine's", type);
        /* backward = inverse rotation: the gradient of sum(c * rope(x)) is rope^-1(c) */
        memcpy(dx, c, sizeof(c));
        lv_tr_rope(rt, 12, cache, dx, H, D, true);
        int bad = 0;
        const float eps = 1e-2f;
        for (int i = 0; i < 48; i++) {
            float xp[48], xm[48];
            memcpy(xp, x0, sizeof(x0));
            memcpy(xm, x0, sizeof(x0));
            xp[i] += eps, xm[i] -= eps;
            lv_tr_rope(rt, 12, cache, xp, H, D, false);
            lv_tr_rope(rt, 12, cache, xm, H, D, false);
            if (!grad_close(dx[i], (dot_d(c, xp, 48) - dot_d(c, xm, 48)) / (2 * eps), 1e-3, 1e-4)) bad++;
        }
        CHECK(bad == 0, "rope type %d: %d gradients differ from finite differences", type, bad);
        /* inverse undoes forward */
        lv_tr_rope(rt, 12, cache, x, H, D, true);
        CHECK(max_abs_diff(x, x0, 48, NULL) < 1e-5f, "rope inverse does not undo the rotation");
    }
}

TEST(train_grad_swiglu) {
    lv_test_rng r = {lv_test_seed()};
    const int n = 50;
    float g[50], u[50], h[50], c[50], dg[50], du[50];
    fill(&r, g, n, 4), fill(&r, u, n, 2), fill(&r, c, n, 1);
    lv_tr_swiglu_bwd(g, u, c, dg, du, n);
    int bad = 0;
    const float eps = 1e-3f;
    for (int which = 0; which < 2; which++)
        for (int i = 0; i < n; i++) {
            float *p = which ? u : g;
            const float old = p[i];
            p[i] = old + eps;
            lv_tr_swiglu_fwd(g, u, h, n);
            const double lp = dot_d(c, h, n);
            p[i] = old - eps;
            lv_tr_swiglu_fwd(g, u, h, n);
            const double lm = dot_d(c, h, n);
            p[i] = old;
            if (!grad_close(which ? du[i] : dg[i], (lp - lm) / (2 * eps), 2e-3, 2e-4)) bad++;
        }
    CHECK(bad == 0, "%d swiglu gradients differ from finite differences", bad);
}

TEST(train_grad_xent) {
    lv_test_rng r = {lv_test_seed()};
    const int V = 40;
    float lg[40], d[40];
    fill(&r, lg, V, 3);
    const float loss = lv_tr_xent(lg, V, 7, d, 0.5f);
    double lse = 0;
    for (int i = 0; i < V; i++) lse += exp(lg[i]);
    CHECK(fabs(loss - (log(lse) - lg[7])) < 1e-5, "cross-entropy %g vs %g", (double)loss, log(lse) - lg[7]);
    int bad = 0;
    const float eps = 1e-2f;
    for (int i = 0; i < V; i++) {
        const float old = lg[i];
        lg[i] = old + eps;
        const double lp = lv_tr_xent(lg, V, 7, NULL, 1);
        lg[i] = old - eps;
        const double lm = lv_tr_xent(lg, V, 7, NULL, 1);
        lg[i] = old;
        if (!grad_close(d[i], 0.5 * (lp - lm) / (2 * eps), 5e-3, 1e-4)) {
            fprintf(stderr, "    logit %d: analytic %g, finite difference %g\n", i, (double)d[i], 0.5 * (lp - lm) / (2 * eps));
            bad++;
        }
    }
    CHECK(bad == 0, "%d cross-entropy gradients differ from finite differences", bad);
}

/* attention: reference backward against finite differences of the reference forward, then the
 * tiled kernels against the references (causal GQA, several blocks, tails, window mask) */
static double attn_loss(const lv_tr_attn_shape *s, const float *q, const float *k, const float *v, const float *c, float *out) {
    lv_tr_attn_fwd_ref(s, q, k, v, out, NULL);
    return dot_d(c, out, s->T * s->Hq * s->D);
}

TEST(train_grad_attention) {
    lv_test_rng r = {lv_test_seed()};
    const int windows[][2] = {{0, 0}, {2, 5}};
    for (int wi = 0; wi < 2; wi++) {
        lv_tr_attn_shape s = {.T = 11, .Hq = 4, .Hkv = 2, .D = 6, .scale = 0.4f, .sink = windows[wi][0], .window = windows[wi][1]};
        const int64_t nq = s.T * s.Hq * s.D, nk = s.T * s.Hkv * s.D;
        float q[264], k[132], v[132], c[264], out[264], dq[264], dk[132], dv[132];
        fill(&r, q, nq, 1.5f), fill(&r, k, nk, 1.5f), fill(&r, v, nk, 1), fill(&r, c, nq, 1);
        lv_tr_attn_bwd_ref(&s, q, k, v, c, dq, dk, dv);
        int bad = 0;
        const float eps = 1e-2f;
        float *ps[] = {q, k, v}, *gs[] = {dq, dk, dv};
        const int64_t ns[] = {nq, nk, nk};
        for (int which = 0; which < 3; which++)
            for (int64_t i = 0; i < ns[which]; i++) {
                float *p = ps[which];
                const float old = p[i];
                p[i] = old + eps;
                const double lp = attn_loss(&s, q, k, v, c, out);
                p[i] = old - eps;
                const double lm = attn_loss(&s, q, k, v, c, out);
                p[i] = old;
                if (!grad_close(gs[which][i], (lp - lm) / (2 * eps), 5e-3, 2e-4)) bad++;
            }
        CHECK(bad == 0, "window %d: %d attention gradients differ from finite differences", s.window, bad);
    }
}

TEST(train_attention_tiled_matches_reference) {
    lv_test_rng r = {lv_test_seed()};
    lv_threadpool *tp = lv_threadpool_create(2);
    REQUIRE(tp, "threadpool");
    const int cases[][6] = {/* T, Hq, Hkv, D, sink, window */
                            {1, 2, 1, 16, 0, 0},    {63, 4, 2, 32, 0, 0},   {150, 4, 2, 32, 0, 0}, {200, 6, 3, 8, 0, 0},
                            {300, 4, 1, 16, 4, 70}, {257, 2, 2, 32, 64, 1}, {130, 4, 2, 16, 0, 64}};
    const int n_cases = lv_test_quick() ? 5 : (int)LV_ARRAY_LEN(cases);
    for (int ci = 0; ci < n_cases; ci++) {
        lv_tr_attn_shape s = {.T = cases[ci][0], .Hq = cases[ci][1], .Hkv = cases[ci][2], .D = cases[ci][3], .sink = cases[ci][4],
                              .window = cases[ci][5]};
        s.scale = 1.0f / sqrtf((float)s.D);
        const int64_t nq = s.T * s.Hq * s.D, nk = s.T * s.Hkv * s.D;
        float *q = malloc(sizeof(float) * (size_t)nq), *k = malloc(sizeof(float) * (size_t)nk), *v = malloc(sizeof(float) * (size_t)nk);
        float *o0 = malloc(sizeof(float) * (size_t)nq), *o1 = malloc(sizeof(float) * (size_t)nq), *c = malloc(sizeof(float) * (size_t)nq);
        float *l0 = malloc(sizeof(float) * (size_t)(s.T * s.Hq)), *l1 = malloc(sizeof(float) * (size_t)(s.T * s.Hq));
        float *dq0 = malloc(sizeof(float) * (size_t)nq), *dq1 = malloc(sizeof(float) * (size_t)nq);
        float *dk0 = malloc(sizeof(float) * (size_t)nk), *dk1 = malloc(sizeof(float) * (size_t)nk);
        float *dv0 = malloc(sizeof(float) * (size_t)nk), *dv1 = malloc(sizeof(float) * (size_t)nk);
        float *scr = malloc(sizeof(float) * lv_tr_attn_bwd_scratch(&s));
        fill(&r, q, nq, 2), fill(&r, k, nk, 2), fill(&r, v, nk, 1), fill(&r, c, nq, 1);
        lv_tr_attn_fwd_ref(&s, q, k, v, o0, l0);
        lv_tr_attn_fwd(tp, &s, q, k, v, o1, l1);
        lv_tr_attn_bwd_ref(&s, q, k, v, c, dq0, dk0, dv0);
        lv_tr_attn_bwd(tp, &s, q, k, v, o1, l1, c, dq1, dk1, dv1, scr);
        float mr;
        const float eo = max_abs_diff(o1, o0, nq, NULL), el = max_abs_diff(l1, l0, s.T * s.Hq, &mr);
        const float eq = max_abs_diff(dq1, dq0, nq, NULL), ek = max_abs_diff(dk1, dk0, nk, NULL), ev = max_abs_diff(dv1, dv0, nk, NULL);
        CHECK(eo < 2e-5f && el < 2e-5f * fmaxf(1, mr) && eq < 1e-4f && ek < 1e-4f && ev < 1e-4f,
              "case %d (T %d, window %d): out %g lse %g dq %g dk %g dv %g", ci, (int)s.T, s.window, (double)eo, (double)el, (double)eq, (double)ek,
              (double)ev);
        free(q), free(k), free(v), free(o0), free(o1), free(c), free(l0), free(l1), free(dq0), free(dq1), free(dk0), free(dk1), free(dv0),
            free(dv1), free(scr);
    }
    lv_threadpool_free(tp);
}

/* ---------------------------------------------------------------------------------------------
 * whole models
 * ------------------------------------------------------------------------------------------- */

static lv_tr_config tiny_config(lv_arch arch, bool tied) {
    lv_tr_config c = {.arch = arch, .n_vocab = 23, .n_embd = 16, .n_layer = 2, .n_head = 4, .n_head_kv = 2, .head_dim = 4, .n_ff = 24,
                      .n_rot = 4, .n_ctx_train = 256, .rope_base = 10000, .norm_eps = 1e-5f, .tied = tied};
    c.bias_qkv = arch == LV_ARCH_QWEN2;
    return c;
}

typedef struct seq_buf {
    int32_t tok[64], pos[64], tgt[64];
    float w[64];
    lv_tr_seq seq;
} seq_buf;

static void make_seq(seq_buf *b, lv_test_rng *r, int T, int V, bool skip_pos) {
    int32_t p = 0;
    for (int i = 0; i < T; i++) {
        b->tok[i] = (int32_t)(lv_test_rng_u64(r) % (uint64_t)V);
        b->pos[i] = p;
        p += skip_pos && i == T / 2 ? 1000 : 1;
    }
    for (int i = 0; i < T; i++) {
        b->tgt[i] = i + 1 < T ? b->tok[i + 1] : -1;
        b->w[i] = i % 3 == 0 ? 0.0f : 1.0f + (float)(i % 2);
    }
    b->seq = (lv_tr_seq){T, b->tok, b->pos, b->tgt, b->w};
}

static double model_loss(lv_threadpool *tp, lv_tmodel *m, lv_tr_state *st, const lv_tr_seq *seq) {
    LV_ASSERT(lv_tr_forward(tp, m, st, seq, NULL) == LV_OK);
    return lv_tr_xent_loss(tp, m, st, seq, false, 1.0f, NULL);
}

static void check_model_grads(lv_arch arch, bool tied) {
    lv_test_rng r = {lv_test_seed()};
    lv_threadpool *tp = lv_threadpool_create(1); /* hundreds of tiny forward passes: no handoffs */
    lv_tr_config c = tiny_config(arch, tied);
    lv_tmodel *m = NULL;
    REQUIRE(tp && lv_tmodel_create(&c, true, &m) == LV_OK, "model");
    lv_tmodel_init(m, 7, 0.25f);
    for (int64_t i = 0; i < m->n_params; i++) m->params[i] += 0.05f * lv_test_rng_f32(&r); /* norms and biases off their init */
    lv_tr_state st = {0};
    seq_buf sb;
    make_seq(&sb, &r, 20, c.n_vocab, true);
    lv_tr_set_reference(true);
    memset(m->grads, 0, sizeof(float) * (size_t)m->n_params);
    REQUIRE(lv_tr_forward(tp, m, &st, &sb.seq, NULL) == LV_OK, "forward");
    lv_tr_xent_loss(tp, m, &st, &sb.seq, true, 1.0f, NULL);
    lv_tr_backward(tp, m, &st, &sb.seq, NULL);
    int bad = 0, checked = 0;
    const float eps = 1e-3f;
    double worst = 0;
    for (int64_t i = 0; i < m->n_params; i += 1 + (int64_t)(lv_test_rng_u64(&r) % 9)) {
        const float old = m->params[i];
        m->params[i] = old + eps;
        const double lp = model_loss(tp, m, &st, &sb.seq);
        m->params[i] = old - eps;
        const double lm = model_loss(tp, m, &st, &sb.seq);
        m->params[i] = old;
        const double fd = (lp - lm) / (2 * eps);
        checked++;
        if (!grad_close(m->grads[i], fd, 2e-2, 3e-3)) {
            if (bad < 5) fprintf(stderr, "    param %lld: analytic %g, finite difference %g\n", (long long)i, (double)m->grads[i], fd);
            bad++;
        }
        worst = fmax(worst, fabs(m->grads[i] - fd));
    }
    lv_tr_set_reference(false);
    CHECK(bad == 0 && checked > 100, "%s%s: %d of %d gradients differ from finite differences (worst %g)", arch == LV_ARCH_QWEN2 ? "qwen2" : "llama",
          tied ? " tied" : "", bad, checked, worst);
    lv_tr_state_free(&st);
    lv_tmodel_free(m);
    lv_threadpool_free(tp);
}

TEST(train_grad_model_llama_tied) { check_model_grads(LV_ARCH_LLAMA, true); }
TEST(train_grad_model_qwen2_untied) { check_model_grads(LV_ARCH_QWEN2, false); }

/* the fast kernels give the reference's gradients on a whole model */
TEST(train_fast_step_matches_reference) {
    lv_test_rng r = {lv_test_seed()};
    lv_threadpool *tp = lv_threadpool_create(2);
    lv_tr_config c = tiny_config(LV_ARCH_LLAMA, true);
    c.n_embd = 64, c.head_dim = 16, c.n_rot = 16, c.n_ff = 96;
    lv_tmodel *m = NULL;
    REQUIRE(tp && lv_tmodel_create(&c, true, &m) == LV_OK, "model");
    lv_tmodel_init(m, 3, 0.1f);
    lv_tr_state st = {0};
    seq_buf sb;
    make_seq(&sb, &r, 64, c.n_vocab, false);
    float *g_ref = malloc(sizeof(float) * (size_t)m->n_params);
    double loss[2];
    for (int pass = 0; pass < 2; pass++) {
        lv_tr_set_reference(pass == 0);
        memset(m->grads, 0, sizeof(float) * (size_t)m->n_params);
        REQUIRE(lv_tr_forward(tp, m, &st, &sb.seq, NULL) == LV_OK, "forward");
        loss[pass] = lv_tr_xent_loss(tp, m, &st, &sb.seq, true, 1.0f, NULL);
        lv_tr_backward(tp, m, &st, &sb.seq, NULL);
        if (pass == 0) memcpy(g_ref, m->grads, sizeof(float) * (size_t)m->n_params);
    }
    lv_tr_set_reference(false);
    float mr;
    const float d = max_abs_diff(m->grads, g_ref, m->n_params, &mr);
    CHECK(fabs(loss[0] - loss[1]) < 1e-4 * fabs(loss[0]) && d < 1e-4f * mr, "loss %g vs %g; gradients differ by %g (max %g)", loss[0], loss[1],
          (double)d, (double)mr);
    free(g_ref);
    lv_tr_state_free(&st);
    lv_tmodel_free(m);
    lv_threadpool_free(tp);
}

/* the gradients are the same with 1 and 3 threads, bit for bit */
TEST(train_threads_bit_identical) {
    lv_test_rng r = {lv_test_seed()};
    lv_tr_config c = tiny_config(LV_ARCH_QWEN2, false);
    c.n_embd = 64, c.head_dim = 16, c.n_rot = 16, c.n_ff = 96;
    lv_tmodel *m = NULL;
    REQUIRE(lv_tmodel_create(&c, true, &m) == LV_OK, "model");
    lv_tmodel_init(m, 5, 0.1f);
    seq_buf sb;
    make_seq(&sb, &r, 64, c.n_vocab, true);
    float *g1 = malloc(sizeof(float) * (size_t)m->n_params);
    double loss[2];
    for (int pass = 0; pass < 2; pass++) {
        lv_threadpool *tp = lv_threadpool_create(pass == 0 ? 1 : 3);
        lv_tr_state st = {0};
        memset(m->grads, 0, sizeof(float) * (size_t)m->n_params);
        REQUIRE(lv_tr_forward(tp, m, &st, &sb.seq, NULL) == LV_OK, "forward");
        loss[pass] = lv_tr_xent_loss(tp, m, &st, &sb.seq, true, 1.0f, NULL);
        lv_tr_backward(tp, m, &st, &sb.seq, NULL);
        if (pass == 0) memcpy(g1, m->grads, sizeof(float) * (size_t)m->n_params);
        lv_tr_state_free(&st);
        lv_threadpool_free(tp);
    }
    CHECK(loss[0] == loss[1] && memcmp(g1, m->grads, sizeof(float) * (size_t)m->n_params) == 0, "1 vs 3 threads: loss %.9g vs %.9g, gradients %s",
          loss[0], loss[1], memcmp(g1, m->grads, sizeof(float) * (size_t)m->n_params) ? "differ" : "equal");
    free(g1);
    lv_tmodel_free(m);
}

/* DuoAttention gates: d loss / d alpha against finite differences, loss = sum(c * xf) */
TEST(train_grad_duo_gates) {
    lv_test_rng r = {lv_test_seed()};
    lv_threadpool *tp = lv_threadpool_create(2);
    lv_tr_config c = tiny_config(LV_ARCH_QWEN2, true);
    lv_tmodel *m = NULL;
    REQUIRE(tp && lv_tmodel_create(&c, false, &m) == LV_OK, "model");
    lv_tmodel_init(m, 9, 0.5f);
    seq_buf sb;
    make_seq(&sb, &r, 30, c.n_vocab, false);
    lv_tr_state teacher = {0}, st = {0};
    REQUIRE(lv_tr_forward(tp, m, &teacher, &sb.seq, NULL) == LV_OK, "teacher");
    float alpha[4], dalpha[4] = {0};
    fill(&r, alpha, 4, 0.5f);
    for (int i = 0; i < 4; i++) alpha[i] += 0.5f;
    lv_tr_duo duo = {alpha, dalpha, teacher.att, 2, 6};
    const int64_t n = sb.seq.T * c.n_embd;
    float *cw = malloc(sizeof(float) * (size_t)n);
    fill(&r, cw, n, 1);
    lv_tr_set_reference(true);
    REQUIRE(lv_tr_forward(tp, m, &st, &sb.seq, &duo) == LV_OK, "student");
    memcpy(st.dx, cw, sizeof(float) * (size_t)n);
    lv_tr_backward(tp, m, &st, &sb.seq, &duo);
    int bad = 0;
    const float eps = 1e-3f;
    for (int i = 0; i < 4; i++) {
        const float old = alpha[i];
        alpha[i] = old + eps;
        lv_tr_forward(tp, m, &st, &sb.seq, &duo);
        const double lp = dot_d(cw, st.xf, n);
        alpha[i] = old - eps;
        lv_tr_forward(tp, m, &st, &sb.seq, &duo);
        const double lm = dot_d(cw, st.xf, n);
        alpha[i] = old;
        if (!grad_close(dalpha[i], (lp - lm) / (2 * eps), 2e-2, 3e-3)) { /* float noise of the loss / 2 eps is about 1e-3 */
            fprintf(stderr, "    gate %d: analytic %g, finite difference %g\n", i, (double)dalpha[i], (lp - lm) / (2 * eps));
            bad++;
        }
    }
    lv_tr_set_reference(false);
    /* alpha = 1 everywhere reproduces the teacher exactly */
    for (int i = 0; i < 4; i++) alpha[i] = 1.0f;
    lv_tr_forward(tp, m, &st, &sb.seq, &duo);
    CHECK(bad == 0 && memcmp(st.xf, teacher.xf, sizeof(float) * (size_t)n) == 0, "%d gate gradients differ; alpha=1 %s the teacher", bad,
          memcmp(st.xf, teacher.xf, sizeof(float) * (size_t)n) ? "differs from" : "equals");
    free(cw);
    lv_tr_state_free(&st);
    lv_tr_state_free(&teacher);
    lv_tmodel_free(m);
    lv_threadpool_free(tp);
}

/* The trainer's logits equal the inference engine's for the same weights: export to GGUF (f32,
 * builtin:bytes vocabulary), load with lv_model_load, decode the same tokens, compare every
 * position's logits. Both compute in f32 with different summation orders, so the tolerance is
 * relative to the largest logit: 1e-4. Also loads the GGUF back into a trainer model (round trip
 * bit for bit). */
static void check_engine_logits(lv_arch arch, bool tied) {
    lv_test_rng r = {lv_test_seed()};
    lv_threadpool *tp = lv_threadpool_create(2);
    lv_tr_config c = tiny_config(arch, tied);
    c.n_vocab = 259, c.n_embd = 64, c.n_head = 4, c.n_head_kv = 2, c.head_dim = 16, c.n_rot = 16, c.n_ff = 96, c.n_layer = 2;
    lv_tmodel *m = NULL;
    REQUIRE(tp && lv_tmodel_create(&c, false, &m) == LV_OK, "model");
    lv_tmodel_init(m, 11, 0.2f);
    for (int64_t i = 0; i < m->n_params; i++) m->params[i] += 0.05f * lv_test_rng_f32(&r); /* norms and biases not trivial */
    char path[512];
    snprintf(path, sizeof(path), "%s/train-engine-%s%s.gguf", lv_test_tmpdir(), arch == LV_ARCH_QWEN2 ? "qwen2" : "llama", tied ? "-tied" : "");
    REQUIRE(lv_tmodel_export_gguf(m, "builtin:bytes", path, false, "test", NULL) == LV_OK, "export: %s", lv_last_error());
    lv_model *em = NULL;
    REQUIRE(lv_model_load(path, lv_model_default_params(), &em) == LV_OK, "load: %s", lv_last_error());
    enum { T = 70 };
    int32_t tok[T], pos[T];
    for (int i = 0; i < T; i++) tok[i] = (int32_t)(lv_test_rng_u64(&r) % 259), pos[i] = i;
    lv_tr_seq seq = {T, tok, pos, NULL, NULL};
    lv_tr_state st = {0};
    REQUIRE(lv_tr_forward(tp, m, &st, &seq, NULL) == LV_OK, "trainer forward");
    float *tl = malloc(sizeof(float) * T * 259);
    lv_tr_logits(tp, m, &st, 0, T, tl);

    lv_context_params cp = lv_context_default_params();
    cp.n_ctx = 256, cp.threadpool = tp, cp.kv_type = LV_KV_F32; /* the default f16 cache rounds k and v */
    lv_context *ctx = NULL;
    REQUIRE(lv_context_create(em, cp, &ctx) == LV_OK, "context: %s", lv_last_error());
    lv_batch b = lv_batch_init(T);
    for (int i = 0; i < T; i++) b.token[i] = tok[i], b.pos[i] = i, b.seq_id[i] = 0, b.logits[i] = 1;
    b.n_tokens = T;
    REQUIRE(lv_decode(ctx, &b) == LV_OK, "decode: %s", lv_last_error());
    float worst = 0, maxl = 0;
    int argmax_diff = 0;
    for (int i = 0; i < T; i++) {
        const float *el = lv_get_logits_ith(ctx, i);
        REQUIRE(el, "logits %d", i);
        int a0 = 0, a1 = 0;
        for (int j = 0; j < 259; j++) {
            worst = fmaxf(worst, fabsf(el[j] - tl[i * 259 + j]));
            maxl = fmaxf(maxl, fabsf(el[j]));
            if (el[j] > el[a0]) a0 = j;
            if (tl[i * 259 + j] > tl[i * 259 + a1]) a1 = j;
        }
        argmax_diff += a0 != a1;
    }
    CHECK(worst <= 1e-4f * fmaxf(1, maxl), "%s%s: trainer vs engine logits differ by %g (largest logit %g), argmax differs at %d of %d",
          arch == LV_ARCH_QWEN2 ? "qwen2" : "llama", tied ? " tied" : "", (double)worst, (double)maxl, argmax_diff, T);
    /* round trip: the GGUF loads back into the trainer bit for bit */
    lv_tmodel *m2 = NULL;
    REQUIRE(lv_tmodel_from_model(em, false, &m2) == LV_OK, "from_model: %s", lv_last_error());
    CHECK(m2->n_params == m->n_params && memcmp(m2->params, m->params, sizeof(float) * (size_t)m->n_params) == 0, "GGUF round trip changed the weights");
    lv_tmodel_free(m2);
    lv_batch_free(&b);
    lv_context_free(ctx);
    lv_model_free(em);
    remove(path);
    free(tl);
    lv_tr_state_free(&st);
    lv_tmodel_free(m);
    lv_threadpool_free(tp);
}

TEST(train_logits_match_engine_llama_tied) { check_engine_logits(LV_ARCH_LLAMA, true); }
TEST(train_logits_match_engine_qwen2_untied) { check_engine_logits(LV_ARCH_QWEN2, false); }

/* export refuses a vocabulary of the wrong size, naming both */
TEST(train_export_vocab_mismatch) {
    lv_tr_config c = tiny_config(LV_ARCH_LLAMA, true);
    lv_tmodel *m = NULL;
    REQUIRE(lv_tmodel_create(&c, false, &m) == LV_OK, "model");
    char path[512];
    snprintf(path, sizeof(path), "%s/train-badvocab.gguf", lv_test_tmpdir());
    CHECK(lv_tmodel_export_gguf(m, "builtin:bytes", path, false, NULL, NULL) == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "259"),
          "mismatch: %s", lv_last_error());
    lv_tmodel_free(m);
}

/* the schedule: linear warmup to lr, cosine to min_lr at total, min_lr after */
TEST(train_lr_schedule) {
    CHECK(fabsf(lv_lr_schedule(0, 100, 10, 1.0f, 0.1f) - 0.1f) < 1e-6f, "first warmup step");
    CHECK(fabsf(lv_lr_schedule(9, 100, 10, 1.0f, 0.1f) - 1.0f) < 1e-6f, "end of warmup");
    CHECK(fabsf(lv_lr_schedule(10, 100, 10, 1.0f, 0.1f) - 1.0f) < 1e-6f, "peak");
    CHECK(fabsf(lv_lr_schedule(55, 100, 10, 1.0f, 0.1f) - 0.55f) < 1e-6f, "half way: (lr + min_lr) / 2");
    CHECK(fabsf(lv_lr_schedule(100, 100, 10, 1.0f, 0.1f) - 0.1f) < 1e-6f && fabsf(lv_lr_schedule(500, 100, 10, 1.0f, 0.1f) - 0.1f) < 1e-6f, "end");
    float prev = 2;
    bool mono = true;
    for (int s = 10; s <= 100; s++) {
        const float v = lv_lr_schedule(s, 100, 10, 1.0f, 0.1f);
        mono = mono && v <= prev;
        prev = v;
    }
    CHECK(mono, "decay is monotone");
}

/* optimizer state: save, load into a fresh optimizer, identical; corrupt files are refused */
TEST(train_adamw_state_roundtrip) {
    lv_test_rng r = {lv_test_seed()};
    lv_tr_config c = tiny_config(LV_ARCH_LLAMA, true);
    lv_tmodel *m = NULL;
    REQUIRE(lv_tmodel_create(&c, true, &m) == LV_OK, "model");
    lv_adamw a = {0}, b = {0};
    REQUIRE(lv_adamw_init(&a, m) == LV_OK && lv_adamw_init(&b, m) == LV_OK, "init");
    fill(&r, a.m, a.n, 1), fill(&r, a.v, a.n, 1);
    a.t = 17;
    char path[512];
    snprintf(path, sizeof(path), "%s/train-optim.bin", lv_test_tmpdir());
    lv_tr_ckpt_info info = {.step = 17, .total_steps = 100, .seed = 9}, got = {0};
    REQUIRE(lv_adamw_save(&a, &info, path) == LV_OK, "save: %s", lv_last_error());
    CHECK(lv_adamw_load(&b, &got, path) == LV_OK && b.t == 17 && got.step == 17 && got.total_steps == 100 && got.seed == 9 &&
              memcmp(a.m, b.m, sizeof(float) * (size_t)a.n) == 0 && memcmp(a.v, b.v, sizeof(float) * (size_t)a.n) == 0,
          "round trip: %s", lv_last_error());
    /* flip one byte of the moments: the checksum catches it */
    FILE *f = fopen(path, "r+b");
    REQUIRE(f, "reopen");
    fseek(f, 100, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 100, SEEK_SET);
    fputc(ch ^ 1, f);
    fclose(f);
    CHECK(lv_adamw_load(&b, &got, path) == LV_ERR_FORMAT && strstr(lv_last_error(), "checksum"), "corruption: %s", lv_last_error());
    /* a model of another size */
    c.n_embd = 32;
    lv_tmodel *m2 = NULL;
    lv_adamw c2 = {0};
    REQUIRE(lv_tmodel_create(&c, true, &m2) == LV_OK && lv_adamw_init(&c2, m2) == LV_OK, "second model");
    REQUIRE(lv_adamw_save(&a, &info, path) == LV_OK, "save again");
    CHECK(lv_adamw_load(&c2, &got, path) == LV_ERR_INVALID_ARG, "size mismatch refused: %s", lv_last_error());
    remove(path);
    lv_adamw_free(&a), lv_adamw_free(&b), lv_adamw_free(&c2);
    lv_tmodel_free(m), lv_tmodel_free(m2);
}

/* lv_tmodel_grow_vocab: the grown model computes the same hidden states for the old tokens and the
 * same logits over them (tied and untied: the old output rows are kept), the new tokens' rows are
 * fresh, and a smaller vocabulary is refused */
static void check_grow_vocab(bool tied) {
    lv_test_rng r = {lv_test_seed()};
    lv_threadpool *tp = lv_threadpool_create(2);
    lv_tr_config c = tiny_config(LV_ARCH_QWEN2, tied);
    lv_tmodel *m = NULL, *g = NULL;
    REQUIRE(tp && lv_tmodel_create(&c, false, &m) == LV_OK, "model");
    lv_tmodel_init(m, 5, 0.2f);
    for (int64_t i = 0; i < m->n_params; i++) m->params[i] += 0.05f * lv_test_rng_f32(&r);
    const int32_t V0 = c.n_vocab, V1 = V0 + 5;
    REQUIRE(lv_tmodel_grow_vocab(m, V1, true, 9, 0.02f, &g) == LV_OK, "grow: %s", lv_last_error());
    CHECK(g->c.n_vocab == V1 && g->grads && g->n_params == m->n_params + (tied ? 5 : 10) * (int64_t)c.n_embd, "grown shape");
    enum { T = 40 };
    int32_t tok[T], pos[T];
    for (int i = 0; i < T; i++) tok[i] = (int32_t)(lv_test_rng_u64(&r) % (uint64_t)V0), pos[i] = i;
    lv_tr_seq seq = {T, tok, pos, NULL, NULL};
    lv_tr_state s0 = {0}, s1 = {0};
    REQUIRE(lv_tr_forward(tp, m, &s0, &seq, NULL) == LV_OK && lv_tr_forward(tp, g, &s1, &seq, NULL) == LV_OK, "forward");
    CHECK(!memcmp(s0.xf, s1.xf, sizeof(float) * T * (size_t)c.n_embd), "hidden states equal");
    float *l0 = malloc(sizeof(float) * (size_t)V0), *l1 = malloc(sizeof(float) * (size_t)V1);
    lv_tr_logits(tp, m, &s0, T - 1, 1, l0);
    lv_tr_logits(tp, g, &s1, T - 1, 1, l1);
    CHECK(!memcmp(l0, l1, sizeof(float) * (size_t)V0), "the old tokens' logits equal");
    bool fresh = true;
    for (int64_t i = 0; i < 5 * (int64_t)c.n_embd; i++) fresh &= fabsf(g->w.tok_embd[(int64_t)V0 * c.n_embd + i]) < 0.2f;
    CHECK(fresh && g->w.tok_embd[(int64_t)V0 * c.n_embd] != 0, "new rows N(0, 0.02)");
    lv_tmodel *bad = NULL;
    CHECK(lv_tmodel_grow_vocab(m, V0 - 1, false, 1, 0.02f, &bad) == LV_ERR_INVALID_ARG && !bad, "shrinking refused");
    free(l0), free(l1);
    lv_tr_state_free(&s0), lv_tr_state_free(&s1);
    lv_tmodel_free(g), lv_tmodel_free(m);
    lv_threadpool_free(tp);
}

TEST(train_grow_vocab_tied) { check_grow_vocab(true); }
TEST(train_grow_vocab_untied) { check_grow_vocab(false); }
