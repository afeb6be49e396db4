/*
 * test_sparse.c: every sparse attention plan against dense attention with the equivalent
 * explicit mask, on fresh random keys, values and queries.
 *
 * Two caches receive the same tokens step by step (prefill chunks of several sizes, then decode
 * steps): a FULL one (the reference keeps every token) and one with the policy under test
 * (sink + window, block-strided, or full with LServe statistics). After each step, queries at
 * the step's positions attend (a) through the sparse cache's own spans and mask with the tiled
 * kernel and (b) through the full cache with lv_attn_ref and the explicit mask. They must agree
 * within 1e-5 (outputs are averages of values in [-1, 1]; the fast kernels accumulate up to 1500
 * keys in float and use a polynomial exp, the reference uses double dot products: typical
 * differences are 1e-6); and the sparse cache must hold no more than its policy allows.
 */
#include "kv/kv.h"
#include "lv_test.h"
#include "kernels/qkernels.h"
#include "gguf/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { DK = 32, DV = 32, PAGE = 16 };

typedef struct pair {
    lv_kv *full, *sparse;
    lv_kv_head_policy pol;
} pair;

static int make_pair_kv(pair *p, lv_kv_head_policy pol, int64_t n_ctx, int64_t n_batch, lv_kv_type t, lv_kv_type tv) {
    lv_kv_params kp = {.n_layer = 1, .n_head_kv = 1, .head_dim_k = DK, .head_dim_v = DV, .page_size = PAGE, .n_ctx = n_ctx,
                       .n_seq_max = 1, .n_batch = n_batch, .type = t, .type_v = tv};
    p->pol = pol;
    if (lv_kv_create(&kp, &p->full) != LV_OK) return 0;
    kp.policies = &p->pol;
    return lv_kv_create(&kp, &p->sparse) == LV_OK;
}

static int make_pair(pair *p, lv_kv_head_policy pol, int64_t n_ctx, int64_t n_batch, lv_kv_type t) {
    return make_pair_kv(p, pol, n_ctx, n_batch, t, t);
}

static void free_pair(pair *p) {
    lv_kv_free(p->full);
    lv_kv_free(p->sparse);
}

/* append n random tokens at positions pos0.. to both caches; with commit false the transaction
 * stays open (the step's queries attend before the commit, as in the engine) */
static void append_open(pair *p, lv_test_rng *r, int64_t n, int32_t pos0, float *k_all, float *v_all, bool commit) {
    int64_t nn[1] = {n};
    int32_t last[1] = {pos0 + (int32_t)n - 1};
    LV_ASSERT(lv_kv_reserve(p->full, nn, last) == LV_OK && lv_kv_reserve(p->sparse, nn, last) == LV_OK);
    for (int64_t i = 0; i < n; i++) {
        float *k = k_all + (pos0 + i) * DK, *v = v_all + (pos0 + i) * DV;
        for (int d = 0; d < DK; d++) k[d] = lv_test_rng_f32(r) * 2;
        for (int d = 0; d < DV; d++) v[d] = lv_test_rng_f32(r);
        lv_kv_write(p->full, 0, 0, 0, i, k, v, pos0 + (int32_t)i);
        lv_kv_write(p->sparse, 0, 0, 0, i, k, v, pos0 + (int32_t)i);
    }
    if (commit) {
        lv_kv_commit(p->full);
        lv_kv_commit(p->sparse);
    }
}

static void append(pair *p, lv_test_rng *r, int64_t n, int32_t pos0, float *k_all, float *v_all) {
    append_open(p, r, n, pos0, k_all, v_all, true);
}

/* query at position qpos through both caches; returns max |difference| */
static double compare_query(pair *p, const float *q, int32_t qpos, int64_t n_vis, lv_kv_type t, lv_kv_type tv, int64_t *attended) {
    static lv_attn_span spans_s[4096], spans_f[4096];
    static float scores[70000], scratch[20000];
    float out_s[DV], out_f[DV];
    lv_attn_mask mask;
    int ns = lv_kv_spans(p->sparse, 0, 0, 0, n_vis, spans_s, &mask);
    lv_attn_job job = {.q = q, .out = out_s, .pos = &qpos, .n_tok = 1, .n_head = 1, .spans = spans_s, .n_spans = ns, .mask = mask,
                       .scale = 0.17f, .kv_type = t, .kv_type_v = tv, .Dk = DK, .Dv = DV};
    lv_attn(&job, scratch);
    /* the explicit mask over every token: positions here are 0, 1, 2, ... so the first `sink`
     * tokens are exactly those with position < sink */
    lv_attn_mask explicit_mask = {.kind = p->pol.kind, .sink_end = p->pol.sink, .window = p->pol.window, .block = p->pol.block,
                                  .local_blocks = p->pol.local_blocks, .vert_stride = p->pol.vert_stride};
    int nf = lv_kv_spans(p->full, 0, 0, 0, n_vis, spans_f, NULL);
    *attended = lv_attn_ref(q, spans_f, nf, qpos, &explicit_mask, 0.17f, t, tv, DK, DV, scores, out_f);
    double d = 0;
    for (int e = 0; e < DV; e++) d = fmax(d, fabs(out_s[e] - out_f[e]));
    return d;
}

static void run_policy(lv_kv_head_policy pol, const char *name, int64_t max_stored_extra) {
    lv_test_rng r = {lv_test_seed() ^ (uint64_t)pol.kind * 77};
    const int64_t N = lv_test_quick() ? 600 : 1500;
    float *k_all = malloc(sizeof(float) * (size_t)N * DK), *v_all = malloc(sizeof(float) * (size_t)N * DV);
    const int chunks[] = {1, 37, 64, 5, 100, 16, 1, 1, 3, 200}; /* prefill pieces, then decode-like steps */
    /* f32, f16, q8_0, q4_0 caches, and q8_0 keys with f16 values (-ctk q8_0 -ctv f16) */
    const lv_kv_type types[][2] = {{LV_KV_F32, LV_KV_F32}, {LV_KV_F16, LV_KV_F16}, {LV_KV_Q8_0, LV_KV_Q8_0}, {LV_KV_Q4_0, LV_KV_Q4_0}, {LV_KV_Q8_0, LV_KV_F16}};
    for (int t = 0; t < 5; t++) {
        const lv_kv_type kt = types[t][0], vt = types[t][1];
        char tname[32];
        snprintf(tname, sizeof(tname), "%s%s%s", lv_kv_type_name(kt), kt == vt ? "" : "/", kt == vt ? "" : lv_kv_type_name(vt));
        pair p;
        REQUIRE(make_pair_kv(&p, pol, N, 200, kt, vt), "%s: create: %s", name, lv_last_error());
        int32_t pos = 0;
        double worst = 0;
        int64_t max_stored = 0, checks = 0, ci = 0;
        while (pos < N) {
            int64_t n = chunks[ci++ % (int)(sizeof(chunks) / sizeof(chunks[0]))];
            if (pos > N / 2) n = 1 + (int64_t)(lv_test_rng_u64(&r) % 3); /* mostly decode later */
            if (pos + n > N) n = N - pos;
            append_open(&p, &r, n, pos, k_all, v_all, false);
            /* every query of the step, before the commit (bottom-right aligned: query i of the chunk
             * sees the cache and the chunk up to its own position) */
            for (int64_t i = 0; i < n; i++) {
                float q[DK];
                for (int d = 0; d < DK; d++) q[d] = lv_test_rng_f32(&r) * 2;
                int64_t att;
                const double d = compare_query(&p, q, pos + (int32_t)i, n, kt, vt, &att);
                worst = fmax(worst, d);
                checks++;
            }
            lv_kv_commit(p.full);
            lv_kv_commit(p.sparse);
            pos += (int32_t)n;
            const int64_t stored = lv_kv_used_bytes_(p.sparse) / (lv_kv_row_bytes(kt, DK) + lv_kv_row_bytes(vt, DV));
            max_stored = stored > max_stored ? stored : max_stored;
        }
        CHECK(worst <= 1e-5, "%s (%s cache): sparse vs dense with the explicit mask differ by %g", name, tname, worst);
        if (max_stored_extra >= 0)
            CHECK(max_stored <= max_stored_extra, "%s: kept %lld tokens, the policy allows %lld", name, (long long)max_stored,
                  (long long)max_stored_extra);
        printf("  %-28s %-9s cache: %lld queries, max diff %.1e, peak tokens kept %lld of %lld\n", name, tname, (long long)checks,
               worst, (long long)max_stored, (long long)N);
        free_pair(&p);
    }
    free(k_all);
    free(v_all);
}

TEST(sink_window_plan_equals_dense_with_lambda_mask) {
    lv_kv_head_policy pol = {.kind = LV_MASK_SINK_WINDOW, .sink = 20, .window = 50};
    /* sink pages + window + one step of up to 200 tokens, rounded to pages */
    run_policy(pol, "sink 20 + window 50", 2 * PAGE + 50 + 200 + 2 * PAGE);
    lv_kv_head_policy pol2 = {.kind = LV_MASK_SINK_WINDOW, .sink = 0, .window = 1};
    run_policy(pol2, "window 1 (no sink)", 200 + 2 * PAGE);
    lv_kv_head_policy pol3 = {.kind = LV_MASK_SINK_WINDOW, .sink = 64, .window = 256};
    run_policy(pol3, "sink 64 + window 256", -1);
}

TEST(block_strided_plan_equals_dense_with_block_mask) {
    lv_kv_head_policy pol = {.kind = LV_MASK_BLOCK_STRIDED, .block = 32, .local_blocks = 3, .vert_stride = 4};
    run_policy(pol, "block 32, local 3, stride 4", -1);
    lv_kv_head_policy pol2 = {.kind = LV_MASK_BLOCK_STRIDED, .block = 16, .local_blocks = 1, .vert_stride = 2};
    run_policy(pol2, "block 16, local 1, stride 2", -1);
}

TEST(full_plan_with_statistics_equals_dense) {
    lv_kv_head_policy pol = {.kind = LV_MASK_CAUSAL, .stats = true};
    run_policy(pol, "full + key statistics", -1);
}

/* LServe selection: brute force over the full cache */
/* The Quest score of page pg computed from the keys themselves (k_all: n keys of DK), in double:
 * the max over its logical pages of sum_d max(q_d kmax_d, q_d kmin_d). */
static double brute_page_score(const float *k_all, int64_t n, const float *q, int64_t pg) {
    double best = -INFINITY;
    for (int64_t lp = 0; lp * LV_KV_LOGICAL_PAGE < PAGE; lp++) {
        double s = 0;
        for (int d = 0; d < DK; d++) {
            float mn = INFINITY, mx = -INFINITY;
            for (int64_t t = pg * PAGE + lp * LV_KV_LOGICAL_PAGE; t < pg * PAGE + (lp + 1) * LV_KV_LOGICAL_PAGE && t < n; t++) {
                mn = fminf(mn, k_all[t * DK + d]);
                mx = fmaxf(mx, k_all[t * DK + d]);
            }
            if (mn == INFINITY) continue;
            s += fmax((double)q[d] * mx, (double)q[d] * mn);
        }
        best = fmax(best, s);
    }
    return best;
}

TEST(lserve_selection_picks_the_best_pages_and_equals_dense_when_the_budget_covers_all) {
    lv_test_rng r = {lv_test_seed() ^ 99};
    const int64_t N = 700;
    float *k_all = malloc(sizeof(float) * N * DK), *v_all = malloc(sizeof(float) * N * DV);
    lv_kv_head_policy pol = {.kind = LV_MASK_CAUSAL, .stats = true};
    pair p;
    REQUIRE(make_pair(&p, pol, N, N, LV_KV_F32), "create");
    append(&p, &r, 400, 0, k_all, v_all);
    for (int32_t pos = 400; pos < 700; pos += 50) append(&p, &r, 50, pos, k_all, v_all);
    const int64_t n_pages = lv_kv_n_pages(p.sparse, 0, 0, 0, 0);
    REQUIRE(n_pages == (N + PAGE - 1) / PAGE, "pages %lld", (long long)n_pages);
    int32_t sel[128];
    static uint8_t scratch[128 * 8];
    static lv_attn_span spans[128], spans_all[128];
    static float scores[1000];
    for (int rep = 0; rep < 20; rep++) {
        float q[DK];
        for (int d = 0; d < DK; d++) q[d] = lv_test_rng_f32(&r) * 2;
        /* brute-force page scores from the keys themselves */
        double best_score[64];
        for (int64_t pg = 0; pg < n_pages; pg++) best_score[pg] = brute_page_score(k_all, N, q, pg);
        const int64_t k = 3 + rep % 8;
        int n = lv_kv_select_pages(p.sparse, 0, 0, 0, 0, q, k, sel, scratch);
        CHECK(n == k, "selected %d of %lld", n, (long long)k);
        CHECK(sel[n - 1] == n_pages - 1, "the newest page is always read");
        for (int i = 1; i < n; i++) CHECK(sel[i - 1] < sel[i], "increasing");
        /* every unselected page (but the newest) scores no better than the worst selected one */
        double worst_sel = INFINITY;
        for (int i = 0; i < n - 1; i++) worst_sel = fmin(worst_sel, best_score[sel[i]]);
        for (int64_t pg = 0; pg < n_pages - 1; pg++) {
            bool chosen = false;
            for (int i = 0; i < n; i++) chosen |= sel[i] == pg;
            if (!chosen) CHECK(best_score[pg] <= worst_sel + 1e-4, "page %lld (score %g) beats a selected one (%g)", (long long)pg, best_score[pg], worst_sel);
        }
        /* attention over the selection == the reference over exactly those pages */
        float out_s[DV], out_r[DV], scratch_f[20000];
        int32_t qpos = N - 1;
        int ns = lv_kv_spans_of_pages(p.sparse, 0, 0, 0, 0, sel, n, spans);
        lv_attn_job job = {.q = q, .out = out_s, .pos = &qpos, .n_tok = 1, .n_head = 1, .spans = spans, .n_spans = ns,
                           .scale = 0.17f, .kv_type = LV_KV_F32, .kv_type_v = LV_KV_F32, .Dk = DK, .Dv = DV};
        lv_attn(&job, scratch_f);
        lv_attn_ref(q, spans, ns, qpos, NULL, 0.17f, LV_KV_F32, LV_KV_F32, DK, DV, scores, out_r);
        for (int e = 0; e < DV; e++) CHECK(fabsf(out_s[e] - out_r[e]) <= 1e-5f, "selected-page attention");
        /* several queries scored in one pass (the query heads of a KV head) choose as one at a time */
        {
            float qq[3 * DK];
            int32_t multi[3 * 130], one[130];
            static uint8_t mscratch[3 * 128 * 8];
            for (int i = 0; i < 3 * DK; i++) qq[i] = i < DK ? q[i] : lv_test_rng_f32(&r) * 2;
            const int nm = lv_kv_select_pages_multi(p.sparse, 0, 0, 0, 0, qq, DK, 3, false, k, multi, 130, mscratch);
            for (int h = 0; h < 3; h++) {
                const int n1 = lv_kv_select_pages(p.sparse, 0, 0, 0, 0, qq + h * DK, k, one, scratch);
                CHECK(nm == n1 && memcmp(one, multi + h * 130, sizeof(int32_t) * (size_t)n1) == 0, "query %d: multi-query selection differs", h);
            }
            /* shared (one selection per KV head): every query gets the same pages, the best k - 1 by
             * the max over the queries of the brute-force score, plus the newest */
            const int nsh = lv_kv_select_pages_multi(p.sparse, 0, 0, 0, 0, qq, DK, 3, true, k, multi, 130, mscratch);
            CHECK(nsh == k, "shared: %d pages of %lld", nsh, (long long)k);
            for (int h = 1; h < 3; h++) CHECK(memcmp(multi, multi + h * 130, sizeof(int32_t) * (size_t)nsh) == 0, "shared: query %d's pages differ", h);
            CHECK(multi[nsh - 1] == n_pages - 1, "shared: the newest page is read");
            double gsc[64];
            for (int64_t pg = 0; pg < n_pages; pg++) {
                gsc[pg] = -INFINITY;
                for (int h = 0; h < 3; h++) gsc[pg] = fmax(gsc[pg], brute_page_score(k_all, N, qq + h * DK, pg));
            }
            double gw = INFINITY;
            for (int i = 0; i < nsh - 1; i++) gw = fmin(gw, gsc[multi[i]]);
            for (int64_t pg = 0; pg < n_pages - 1; pg++) {
                bool chosen = false;
                for (int i = 0; i < nsh; i++) chosen |= multi[i] == pg;
                if (!chosen) CHECK(gsc[pg] <= gw + 1e-4, "shared: page %lld (%g) beats a selected one (%g)", (long long)pg, gsc[pg], gw);
            }
        }
        /* a budget covering every page selects every page: exactly the dense plan */
        n = lv_kv_select_pages(p.sparse, 0, 0, 0, 0, q, n_pages + rep, sel, scratch);
        int nd = lv_kv_spans(p.sparse, 0, 0, 0, 0, spans_all, NULL);
        CHECK(n == nd, "full budget: %d pages vs %d", n, nd);
        for (int i = 0; i < n && i < nd; i++) CHECK(sel[i] == i, "full budget selects page %d", i);
    }
    free_pair(&p);
    free(k_all);
    free(v_all);
}

/* LServe decode reads the union of the G query heads' selections once, each head attending only
 * over the pages it chose (lv_attn_job.span_heads): the result must equal each head's own job
 * bit for bit (same pages in the same order, same blocks), at every SIMD level, for head dims
 * the intrinsics kernels take (64) and ones they leave to the portable kernel (DK, DV). */
TEST(lserve_union_of_head_selections_equals_each_head_alone) {
    lv_test_rng r = {lv_test_seed() ^ 4242};
    enum { G = 3, NP = 40, P = 64, MAXD = 64 };
    const int dims[2][2] = {{64, 64}, {DK, DV}};
    static uint16_t kh[NP * P * MAXD], vh[NP * P * MAXD];
    static int32_t pos[NP * P];
    for (int i = 0; i < NP * P * MAXD; i++) {
        kh[i] = lv_fp32_to_fp16(lv_test_rng_f32(&r) * 2);
        vh[i] = lv_fp32_to_fp16(lv_test_rng_f32(&r));
    }
    for (int i = 0; i < NP * P; i++) pos[i] = i;
    static float scratch[40000], scores[NP * P];
    const lv_simd saved = lv_simd_active();
    for (int level = 0; level <= (int)lv_simd_detect(); level++) {
        lv_simd_set_max((lv_simd)level);
        for (int di = 0; di < 2; di++) {
            const int Dk = dims[di][0], Dv = dims[di][1];
            for (int rep = 0; rep < 10; rep++) {
                float q[G * MAXD], out_u[G * MAXD], out_1[MAXD], out_r[MAXD];
                for (int i = 0; i < G * Dk; i++) q[i] = lv_test_rng_f32(&r) * 2;
                /* each head chooses a random sorted subset of pages, always with the newest */
                bool chose[G][NP];
                for (int h = 0; h < G; h++)
                    for (int pg = 0; pg < NP; pg++) chose[h][pg] = pg == NP - 1 || lv_test_rng_f32(&r) < (rep % 3 == 0 ? 0.0f : 0.3f);
                lv_attn_span uspans[NP], hspans[NP];
                uint32_t heads[NP];
                int nu = 0;
                for (int pg = 0; pg < NP; pg++) {
                    uint32_t bits = 0;
                    for (int h = 0; h < G; h++) bits |= chose[h][pg] ? 1u << h : 0u;
                    if (!bits) continue;
                    uspans[nu] = (lv_attn_span){kh + (size_t)pg * P * Dk, vh + (size_t)pg * P * Dv, pos + pg * P, P, P}; /* keys (Dk, P) per page */
                    heads[nu++] = bits;
                }
                const int32_t qpos = NP * P - 1 - rep; /* the newest page partly in the future */
                lv_attn_job job = {.q = q, .q_tok_stride = G * Dk, .q_head_stride = Dk, .out = out_u, .out_tok_stride = G * Dv,
                                   .out_head_stride = Dv, .pos = &qpos, .n_tok = 1, .n_head = G, .spans = uspans, .n_spans = nu,
                                   .span_heads = heads, .scale = 0.125f, .kv_type = LV_KV_F16, .kv_type_v = LV_KV_F16, .Dk = Dk, .Dv = Dv};
                lv_attn(&job, scratch);
                for (int h = 0; h < G; h++) {
                    int nh = 0;
                    for (int pg = 0; pg < NP; pg++)
                        if (chose[h][pg]) hspans[nh++] = (lv_attn_span){kh + (size_t)pg * P * Dk, vh + (size_t)pg * P * Dv, pos + pg * P, P, P};
                    lv_attn_job one = {.q = q + h * Dk, .out = out_1, .pos = &qpos, .n_tok = 1, .n_head = 1, .spans = hspans,
                                       .n_spans = nh, .scale = 0.125f, .kv_type = LV_KV_F16, .kv_type_v = LV_KV_F16, .Dk = Dk, .Dv = Dv};
                    lv_attn(&one, scratch);
                    CHECK(memcmp(out_1, out_u + h * Dv, sizeof(float) * (size_t)Dv) == 0, "%s D%d rep %d head %d: union != alone",
                          lv_simd_name((lv_simd)level), Dk, rep, h);
                    lv_attn_ref(q + h * Dk, hspans, nh, qpos, NULL, 0.125f, LV_KV_F16, LV_KV_F16, Dk, Dv, scores, out_r);
                    for (int e = 0; e < Dv; e++)
                        CHECK(fabsf(out_u[h * Dv + e] - out_r[e]) <= 1e-5f, "%s D%d head %d: %g vs reference %g", lv_simd_name((lv_simd)level), Dk, h,
                              out_u[h * Dv + e], out_r[e]);
                }
            }
        }
    }
    lv_simd_set_max(saved);
}

TEST(key_statistics_survive_rollback_and_truncation) {
    lv_test_rng r = {lv_test_seed() ^ 5};
    lv_kv_head_policy pol = {.kind = LV_MASK_CAUSAL, .stats = true};
    pair p, q;
    REQUIRE(make_pair(&p, pol, 512, 512, LV_KV_F32) && make_pair(&q, pol, 512, 512, LV_KV_F32), "create");
    float *k_all = malloc(sizeof(float) * 512 * DK), *v_all = malloc(sizeof(float) * 512 * DV);
    float *k2 = malloc(sizeof(float) * 512 * DK), *v2 = malloc(sizeof(float) * 512 * DV);
    append(&p, &r, 40, 0, k_all, v_all);
    /* the same 40 tokens into q, then 30 more rolled back, and a suffix truncated */
    memcpy(k2, k_all, sizeof(float) * 40 * DK);
    memcpy(v2, v_all, sizeof(float) * 40 * DV);
    int64_t nn[1] = {40};
    int32_t last[1] = {39};
    REQUIRE(lv_kv_reserve(q.sparse, nn, last) == LV_OK, "reserve");
    for (int i = 0; i < 40; i++) lv_kv_write(q.sparse, 0, 0, 0, i, k2 + i * DK, v2 + i * DV, i);
    lv_kv_commit(q.sparse);
    nn[0] = 30;
    last[0] = 69;
    REQUIRE(lv_kv_reserve(q.sparse, nn, last) == LV_OK, "reserve 2");
    float junk[DK], vj[DV];
    for (int d = 0; d < DK; d++) junk[d] = 100.0f; /* would widen the statistics */
    for (int d = 0; d < DV; d++) vj[d] = 0;
    for (int i = 0; i < 30; i++) lv_kv_write(q.sparse, 0, 0, 0, i, junk, vj, 40 + i);
    lv_kv_rollback(q.sparse);
    uint8_t scratch[64 * 8];
    int32_t s1[8], s2[8];
    for (int rep = 0; rep < 10; rep++) {
        float qv[DK];
        for (int d = 0; d < DK; d++) qv[d] = lv_test_rng_f32(&r);
        int a = lv_kv_select_pages(p.sparse, 0, 0, 0, 0, qv, 2, s1, scratch);
        int b = lv_kv_select_pages(q.sparse, 0, 0, 0, 0, qv, 2, s2, scratch);
        CHECK(a == b && memcmp(s1, s2, sizeof(int32_t) * (size_t)a) == 0, "selection after a rollback equals one without it");
    }
    free(k_all);
    free(v_all);
    free(k2);
    free(v2);
    free_pair(&p);
    free_pair(&q);
}

/* Two-level selection (stats_group): the cache keeps min/max per group of pages too. Each query
 * keeps its best 2 (k - 1) / G + 2 groups by the bound over the group (checked against the keys
 * themselves), and chooses its best k - 1 pages among the pages of the groups any query kept;
 * with no more groups than that it is the exhaustive selection exactly; and a rolled-back step
 * leaves the group statistics as they were (the selection equals that of a cache that never saw
 * it), in f32 and f16 caches. */
static double brute_group_bound(const float *k_all, int64_t n, const float *q, int64_t g, int64_t G) {
    double s = 0;
    for (int d = 0; d < DK; d++) {
        float mn = INFINITY, mx = -INFINITY;
        for (int64_t t = g * G * PAGE; t < (g + 1) * G * PAGE && t < n; t++) {
            mn = fminf(mn, k_all[t * DK + d]);
            mx = fmaxf(mx, k_all[t * DK + d]);
        }
        s += fmax((double)q[d] * mx, (double)q[d] * mn);
    }
    return s;
}

/* a step of n extreme keys at positions pos0.. written to kv, then rolled back; false if it could
 * not be reserved */
static bool rolled_back_junk(lv_kv *kv, int32_t pos0, int n) {
    int64_t nn[1] = {n};
    int32_t last[1] = {pos0 + n - 1};
    if (lv_kv_reserve(kv, nn, last) != LV_OK) return false;
    float junk[DK], vj[DV] = {0};
    for (int d = 0; d < DK; d++) junk[d] = d % 2 ? 50.0f : -50.0f;
    for (int i = 0; i < n; i++) lv_kv_write(kv, 0, 0, 0, i, junk, vj, pos0 + i);
    lv_kv_rollback(kv);
    return true;
}

TEST(two_level_selection_keeps_each_heads_best_groups_and_equals_exhaustive_when_they_cover) {
    lv_test_rng r = {lv_test_seed() ^ 0x2L};
    enum { N = 2000, G = 4, NQ = 3 };
    for (int tt = 0; tt < 2; tt++) {
        const lv_kv_type t = tt ? LV_KV_F16 : LV_KV_F32;
        float *k_all = malloc(sizeof(float) * (N + 64) * DK), *v_all = malloc(sizeof(float) * (N + 64) * DV);
        lv_kv_head_policy pol = {.kind = LV_MASK_CAUSAL, .stats = true};
        pair p; /* p.sparse: statistics per page only, the exhaustive reference */
        REQUIRE(make_pair(&p, pol, N + 64, N + 64, t), "create");
        lv_kv_params kp = {.n_layer = 1, .n_head_kv = 1, .head_dim_k = DK, .head_dim_v = DV, .page_size = PAGE, .n_ctx = N + 64,
                           .n_seq_max = 1, .n_batch = N + 64, .type = t, .type_v = LV_KV_SAME, .policies = &pol, .stats_group = G};
        lv_kv *gk = NULL;
        REQUIRE(lv_kv_create(&kp, &gk) == LV_OK, "create grouped: %s", lv_last_error());
        for (int32_t pos = 0; pos < N; pos += 500) append(&p, &r, 500, pos, k_all, v_all);
        /* the same keys into the grouped cache, in other chunk sizes; an f16 cache rounds them */
        for (int32_t pos = 0; pos < N;) {
            const int64_t n = pos + 333 <= N ? 333 : N - pos;
            int64_t nn[1] = {n};
            int32_t last[1] = {pos + (int32_t)n - 1};
            REQUIRE(lv_kv_reserve(gk, nn, last) == LV_OK, "reserve");
            for (int64_t i = 0; i < n; i++) lv_kv_write(gk, 0, 0, 0, i, k_all + (pos + i) * DK, v_all + (pos + i) * DV, pos + (int32_t)i);
            lv_kv_commit(gk);
            pos += (int32_t)n;
        }
        if (t == LV_KV_F16) /* the statistics see the stored keys */
            for (int64_t i = 0; i < (int64_t)N * DK; i++) k_all[i] = lv_fp16_to_fp32(lv_fp32_to_fp16(k_all[i]));
        REQUIRE(rolled_back_junk(gk, N, 40), "reserve junk");
        const int64_t n_pages = (N + PAGE - 1) / PAGE, n_groups = (n_pages - 1 + G - 1) / G;
        uint8_t *scr = malloc(lv_kv_select_scratch_bytes(gk, NQ)), *scr0 = malloc(lv_kv_select_scratch_bytes(p.sparse, NQ));
        for (int rep = 0; rep < 12; rep++) {
            float q[NQ * DK];
            for (int i = 0; i < NQ * DK; i++) q[i] = lv_test_rng_f32(&r) * 2;
            const int64_t k = rep < 8 ? 3 + rep : 70; /* 70: keep = 36 groups >= 31, every group */
            const int64_t keep = 2 * (k - 1) / G + 2;
            int32_t sel[NQ * 130], ref[NQ * 130];
            const int n = lv_kv_select_pages_multi(gk, 0, 0, 0, 0, q, DK, NQ, false, k, sel, 130, scr);
            const int n0 = lv_kv_select_pages_multi(p.sparse, 0, 0, 0, 0, q, DK, NQ, false, k, ref, 130, scr0);
            CHECK(n == k && n0 == k, "%s k %lld: %d and %d pages", t ? "f16" : "f32", (long long)k, n, n0);
            if (keep >= n_groups) {
                for (int h = 0; h < NQ; h++)
                    CHECK(memcmp(sel + h * 130, ref + h * 130, sizeof(int32_t) * (size_t)n) == 0, "k %lld: groups cover all: head %d differs from exhaustive",
                          (long long)k, h);
                continue;
            }
            /* the candidate groups: each head's best `keep` by the bound over the group's keys */
            bool cand[64] = {false};
            for (int h = 0; h < NQ; h++) {
                double gb[64];
                for (int64_t g = 0; g < n_groups; g++) gb[g] = brute_group_bound(k_all, N, q + h * DK, g, G);
                for (int64_t g = 0; g < n_groups; g++) {
                    int64_t better = 0;
                    for (int64_t o = 0; o < n_groups; o++) better += gb[o] > gb[g] + 1e-3;
                    if (better < keep - 1) cand[g] = true; /* surely among the best `keep` (ties within 1e-3 aside) */
                }
            }
            for (int h = 0; h < NQ; h++) {
                const int32_t *s = sel + h * 130;
                CHECK(s[n - 1] == n_pages - 1, "the newest page is read");
                double worst = INFINITY;
                for (int i = 0; i < n - 1; i++) worst = fmin(worst, brute_page_score(k_all, N, q + h * DK, s[i]));
                /* no unchosen page of a sure candidate group beats the worst chosen page */
                for (int64_t pg = 0; pg < n_pages - 1; pg++) {
                    if (!cand[pg / G]) continue;
                    bool chosen = false;
                    for (int i = 0; i < n; i++) chosen |= s[i] == pg;
                    if (!chosen) CHECK(brute_page_score(k_all, N, q + h * DK, pg) <= worst + 1e-3, "%s k %lld head %d: page %lld of a kept group beats a chosen one",
                                       t ? "f16" : "f32", (long long)k, h, (long long)pg);
                }
            }
            if (lv_test_failures) break;
        }
        free(scr);
        free(scr0);
        lv_kv_free(gk);
        free_pair(&p);
        free(k_all);
        free(v_all);
    }
}

/* The exact rule of two-level selection (stats_group_exact): each query expands groups by their
 * bound until its (k - 1)-th best page score so far is greater than the next group's bound. Its
 * pages must equal exhaustive selection's (a cache of the same type keeping per-page statistics
 * only) for every query and budget, covering or not: on uniform random keys (bounds that barely
 * separate, so most groups are expanded) and on keys with a few loud pages among quiet ones
 * (bounds that separate, so most groups are skipped: the path the stopping rule decides), in
 * f32, f16 and q8_0 caches, with 7 query heads, after a rolled-back step of extreme keys; with a
 * shared selection too (which then scores every page). */
TEST(two_level_exact_rule_equals_exhaustive_selection) {
    lv_test_rng r = {lv_test_seed() ^ 0x3e7};
    enum { N = 2600, G = 4, NQ = 7, CAP = 200 };
    const lv_kv_type types[] = {LV_KV_F32, LV_KV_F16, LV_KV_Q8_0};
    int checked = 0;
    for (int tt = 0; tt < 3; tt++)
        for (int loud = 0; loud < 2; loud++) {
            const lv_kv_type t = types[tt];
            lv_kv_head_policy pol = {.kind = LV_MASK_CAUSAL, .stats = true};
            lv_kv_params kp = {.n_layer = 1, .n_head_kv = 1, .head_dim_k = DK, .head_dim_v = DV, .page_size = PAGE, .n_ctx = N + 64,
                               .n_seq_max = 1, .n_batch = N + 64, .type = t, .type_v = LV_KV_SAME, .policies = &pol};
            lv_kv *ex = NULL, *gk = NULL;
            REQUIRE(lv_kv_create(&kp, &ex) == LV_OK, "create: %s", lv_last_error());
            kp.stats_group = G;
            kp.stats_group_exact = true;
            REQUIRE(lv_kv_create(&kp, &gk) == LV_OK, "create grouped: %s", lv_last_error());
            float *k = malloc(sizeof(float) * N * DK), *v = malloc(sizeof(float) * N * DV);
            REQUIRE(k && v, "alloc");
            bool big[N / PAGE + 1];
            for (int64_t pg = 0; pg <= N / PAGE; pg++) big[pg] = !loud || lv_test_rng_u64(&r) % 12 == 0; /* loud: one page in 12 is 20x the others */
            for (int64_t i = 0; i < N; i++) {
                for (int d = 0; d < DK; d++) k[i * DK + d] = lv_test_rng_f32(&r) * (big[i / PAGE] ? 2.0f : 0.1f);
                for (int d = 0; d < DV; d++) v[i * DV + d] = lv_test_rng_f32(&r);
            }
            lv_kv *both[2] = {ex, gk};
            for (int c = 0; c < 2; c++) /* in different chunk sizes */
                for (int32_t pos = 0; pos < N;) {
                    const int64_t n = c ? (pos + 333 <= N ? 333 : N - pos) : (pos + 500 <= N ? 500 : N - pos);
                    int64_t nn[1] = {n};
                    int32_t last[1] = {pos + (int32_t)n - 1};
                    REQUIRE(lv_kv_reserve(both[c], nn, last) == LV_OK, "reserve");
                    for (int64_t i = 0; i < n; i++) lv_kv_write(both[c], 0, 0, 0, i, k + (pos + i) * DK, v + (pos + i) * DV, pos + (int32_t)i);
                    lv_kv_commit(both[c]);
                    pos += (int32_t)n;
                }
            REQUIRE(rolled_back_junk(gk, N, 40), "reserve junk");
            uint8_t *scr = malloc(lv_kv_select_scratch_bytes(gk, NQ)), *scr0 = malloc(lv_kv_select_scratch_bytes(ex, NQ));
            REQUIRE(scr && scr0, "alloc");
            const int64_t n_pages = (N + PAGE - 1) / PAGE;
            for (int rep = 0; rep < 16; rep++) {
                float q[NQ * DK];
                for (int i = 0; i < NQ * DK; i++) q[i] = lv_test_rng_f32(&r) * 2;
                /* budgets from 3 pages to past the context (covering: every page) */
                const int64_t kk[] = {3, 4, 5, 8, 9, 17, 33, 64, 100, 162, 163, 170};
                const int64_t kp_ = kk[rep % 12];
                const bool shared = rep >= 12;
                int32_t sel[NQ * CAP], ref[NQ * CAP];
                const int n = lv_kv_select_pages_multi(gk, 0, 0, 0, 0, q, DK, NQ, shared, kp_, sel, CAP, scr);
                const int n0 = lv_kv_select_pages_multi(ex, 0, 0, 0, 0, q, DK, NQ, shared, kp_, ref, CAP, scr0);
                CHECK(n == n0 && n == (kp_ < n_pages ? kp_ : n_pages), "%s k %lld: %d and %d pages", lv_kv_type_name(t), (long long)kp_, n, n0);
                for (int h = 0; h < NQ; h++)
                    CHECK(memcmp(sel + h * CAP, ref + h * CAP, sizeof(int32_t) * (size_t)n) == 0, "%s %s k %lld%s: head %d differs from exhaustive selection",
                          lv_kv_type_name(t), loud ? "loud pages" : "uniform", (long long)kp_, shared ? " shared" : "", h);
                checked++;
                if (lv_test_failures) break;
            }
            free(scr);
            free(scr0);
            free(k);
            free(v);
            lv_kv_free(ex);
            lv_kv_free(gk);
            if (lv_test_failures) return;
        }
    printf("  %d selections of 7 heads equal exhaustive selection\n", checked);
}

/* A rolled-back step leaves the group statistics as they were: after it and 200 more tokens, the
 * two-level selection equals that of a cache that never saw the step (the extreme keys would
 * otherwise make their group the best of every query). */
TEST(group_statistics_survive_rollback) {
    lv_test_rng r = {lv_test_seed() ^ 0x77};
    enum { N = 2010, M = 200, G = 4 }; /* the step starts mid-group (group 31: slots 1984-2047) */
    lv_kv_head_policy pol = {.kind = LV_MASK_CAUSAL, .stats = true};
    lv_kv_params kp = {.n_layer = 1, .n_head_kv = 1, .head_dim_k = DK, .head_dim_v = DV, .page_size = PAGE, .n_ctx = N + M + 64,
                       .n_seq_max = 1, .n_batch = N + M, .type = LV_KV_F16, .type_v = LV_KV_SAME, .policies = &pol, .stats_group = G};
    lv_kv *a = NULL, *b = NULL;
    REQUIRE(lv_kv_create(&kp, &a) == LV_OK && lv_kv_create(&kp, &b) == LV_OK, "create");
    float *k = malloc(sizeof(float) * (N + M) * DK), *v = malloc(sizeof(float) * (N + M) * DV);
    for (int64_t i = 0; i < (int64_t)(N + M) * DK; i++) k[i] = lv_test_rng_f32(&r) * 2;
    for (int64_t i = 0; i < (int64_t)(N + M) * DV; i++) v[i] = lv_test_rng_f32(&r);
    lv_kv *both[2] = {a, b};
    for (int c = 0; c < 2; c++) {
        int64_t nn[1] = {N};
        int32_t last[1] = {N - 1};
        REQUIRE(lv_kv_reserve(both[c], nn, last) == LV_OK, "reserve");
        for (int64_t i = 0; i < N; i++) lv_kv_write(both[c], 0, 0, 0, i, k + i * DK, v + i * DV, (int32_t)i);
        lv_kv_commit(both[c]);
    }
    REQUIRE(rolled_back_junk(a, N, 100), "reserve junk");
    for (int c = 0; c < 2; c++) {
        int64_t nn[1] = {M};
        int32_t last[1] = {N + M - 1};
        REQUIRE(lv_kv_reserve(both[c], nn, last) == LV_OK, "reserve more");
        for (int64_t i = 0; i < M; i++) lv_kv_write(both[c], 0, 0, 0, i, k + (N + i) * DK, v + (N + i) * DV, N + (int32_t)i);
        lv_kv_commit(both[c]);
    }
    uint8_t *scr = malloc(lv_kv_select_scratch_bytes(a, 1));
    for (int rep = 0; rep < 20; rep++) {
        float q[DK];
        for (int d = 0; d < DK; d++) q[d] = lv_test_rng_f32(&r) * 2;
        int32_t s1[16], s2[16];
        const int n1 = lv_kv_select_pages(a, 0, 0, 0, 0, q, 5, s1, scr), n2 = lv_kv_select_pages(b, 0, 0, 0, 0, q, 5, s2, scr);
        CHECK(n1 == n2 && memcmp(s1, s2, sizeof(int32_t) * (size_t)n1) == 0, "rep %d: the rolled-back keys still steer the selection", rep);
    }
    free(scr);
    free(k);
    free(v);
    lv_kv_free(a);
    lv_kv_free(b);
}

/* A q8_0 or q4_0 cache keeps LServe's statistics from the keys before quantization, in f16: rounding to
 * nearest is monotonic, so they are exactly an f16 cache's statistics of the same keys (whose keys
 * are rounded first). Hence the same selections as an f16 cache, per page and with groups, also
 * after a rolled-back step of extreme keys that starts mid-way through a logical page and a group
 * (the rollback restores the statistics it saved at reserve: a quantized cache could not rebuild
 * them from its keys). */
static void quantized_statistics(lv_kv_type qt) {
    lv_test_rng r = {lv_test_seed() ^ 0x58};
    enum { N = 1210, G = 4 };
    lv_kv_head_policy pol = {.kind = LV_MASK_CAUSAL, .stats = true};
    lv_kv *a = NULL, *b = NULL;
    lv_kv_params kp = {.n_layer = 1, .n_head_kv = 1, .head_dim_k = DK, .head_dim_v = DV, .page_size = PAGE, .n_ctx = N + 64,
                       .n_seq_max = 1, .n_batch = N + 64, .type = qt, .type_v = LV_KV_SAME, .policies = &pol, .stats_group = G};
    REQUIRE(lv_kv_create(&kp, &a) == LV_OK, "create %s: %s", lv_kv_type_name(qt), lv_last_error());
    kp.type = LV_KV_F16;
    REQUIRE(lv_kv_create(&kp, &b) == LV_OK, "create f16");
    float *k = malloc(sizeof(float) * N * DK), *v = malloc(sizeof(float) * N * DV);
    REQUIRE(k && v, "alloc");
    for (int i = 0; i < N * DK; i++) k[i] = lv_test_rng_f32(&r) * 3;
    for (int i = 0; i < N * DV; i++) v[i] = lv_test_rng_f32(&r);
    const int steps[] = {500, 7, 300, 403};
    int32_t pos = 0;
    for (int s = 0; s < 4; s++) {
        int64_t nn[1] = {steps[s]};
        int32_t last[1] = {pos + steps[s] - 1};
        REQUIRE(lv_kv_reserve(a, nn, last) == LV_OK && lv_kv_reserve(b, nn, last) == LV_OK, "reserve");
        for (int i = 0; i < steps[s]; i++) {
            lv_kv_write(a, 0, 0, 0, i, k + (size_t)(pos + i) * DK, v + (size_t)(pos + i) * DV, pos + i);
            lv_kv_write(b, 0, 0, 0, i, k + (size_t)(pos + i) * DK, v + (size_t)(pos + i) * DV, pos + i);
        }
        lv_kv_commit(a);
        lv_kv_commit(b);
        pos += steps[s];
        if (s == 1) { /* 507 tokens: mid-way through a logical page and a group */
            float junk[DK], vj[DV] = {0};
            for (int d = 0; d < DK; d++) junk[d] = d % 2 ? 60.0f : -60.0f;
            nn[0] = 40;
            last[0] = pos + 39;
            REQUIRE(lv_kv_reserve(a, nn, last) == LV_OK, "reserve junk");
            for (int i = 0; i < 40; i++) lv_kv_write(a, 0, 0, 0, i, junk, vj, pos + i);
            lv_kv_rollback(a);
        }
    }
    const size_t sb = lv_kv_select_scratch_bytes(a, 4);
    void *scratch = malloc(sb);
    int32_t sa[4 * 128], sbp[4 * 128];
    REQUIRE(scratch, "alloc");
    for (int rep = 0; rep < 40; rep++) {
        float q[4 * DK];
        for (int i = 0; i < 4 * DK; i++) q[i] = lv_test_rng_f32(&r);
        const int64_t kp_ = 3 + rep % 9;
        const int na = lv_kv_select_pages_multi(a, 0, 0, 0, 0, q, DK, 4, rep % 3 == 2, kp_, sa, 128, scratch);
        const int nb = lv_kv_select_pages_multi(b, 0, 0, 0, 0, q, DK, 4, rep % 3 == 2, kp_, sbp, 128, scratch);
        CHECK(na == nb, "selection sizes %d vs %d", na, nb);
        for (int h = 0; h < 4 && na == nb; h++)
            CHECK(memcmp(sa + h * 128, sbp + h * 128, sizeof(int32_t) * (size_t)na) == 0, "%s and f16 caches select other pages (query %d, k %lld)",
                  lv_kv_type_name(qt), h, (long long)kp_);
    }
    free(scratch);
    free(k);
    free(v);
    lv_kv_free(a);
    lv_kv_free(b);
}

TEST(quantized_cache_statistics_are_those_of_the_unquantized_keys) {
    quantized_statistics(LV_KV_Q8_0);
    quantized_statistics(LV_KV_Q4_0);
}
