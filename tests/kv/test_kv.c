/*
 * test_kv.c: the paged KV cache: transactional reserve/commit/rollback, capacity errors that
 * change nothing, slots and spans, suffix truncation, several sequences sharing the pools.
 */
#include "kv/kv.h"
#include "lv_test.h"
#include "gguf/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static lv_kv *make_kv(int64_t n_ctx, int64_t n_seq, int64_t page, lv_kv_type t) {
    lv_kv_params p = {.n_layer = 2, .n_head_kv = 3, .head_dim_k = 8, .head_dim_v = 4, .page_size = page, .n_ctx = n_ctx,
                      .n_seq_max = n_seq, .type = t, .type_v = LV_KV_SAME};
    lv_kv *kv = NULL;
    return lv_kv_create(&p, &kv) == LV_OK ? kv : NULL;
}

/* append n tokens to seq (positions p0..), writing recognisable values */
static lv_status append(lv_kv *kv, int64_t n_seq, int64_t seq, int64_t n, int32_t p0, bool commit) {
    int64_t n_new[8] = {0};
    int32_t last[8] = {0};
    n_new[seq] = n;
    last[seq] = p0 + (int32_t)n - 1;
    lv_status st = lv_kv_reserve(kv, n_new, last);
    if (st != LV_OK) return st;
    for (int64_t i = 0; i < n; i++)
        for (int64_t l = 0; l < 2; l++)
            for (int64_t h = 0; h < 3; h++) {
                float k[8], v[4];
                /* values exact in f16 too: k[0] names the position and layer, k[1] the sequence and head */
                for (int d = 0; d < 8; d++) k[d] = (float)d;
                k[0] = (float)((p0 + i) * 2 + l);
                k[1] = (float)(seq * 4 + h);
                for (int d = 0; d < 4; d++) v[d] = -(float)(p0 + i) - d;
                lv_kv_write(kv, seq, l, h, i, k, v, p0 + (int32_t)i);
            }
    if (commit) lv_kv_commit(kv);
    else lv_kv_rollback(kv);
    (void)n_seq;
    return LV_OK;
}

/* every committed token of seq, read back through the dense spans, has the values written */
static int check_stream(lv_kv *kv, int64_t seq, int32_t first_pos) {
    lv_attn_span spans[64];
    for (int64_t l = 0; l < 2; l++)
        for (int64_t h = 0; h < 3; h++) {
            const int64_t n = lv_kv_seq_len(kv, seq);
            int ns = lv_kv_spans(kv, seq, l, h, 0, spans, NULL);
            int64_t t = 0;
            for (int s = 0; s < ns; s++)
                for (int32_t i = 0; i < spans[s].n; i++, t++) {
                    /* keys are stored transposed: element d of key i at k[d * ldk + i] */
                    const float k0 = lv_attn_key(lv_kv_type_of(kv), &spans[s], i, 0), k1 = lv_attn_key(lv_kv_type_of(kv), &spans[s], i, 1);
                    const int32_t pos = first_pos + (int32_t)t;
                    if (lv_span_pos(&spans[s], i) != pos) return 0;
                    if (k0 != (float)(pos * 2 + l) || k1 != (float)(seq * 4 + h)) return 0;
                }
            if (t != n) return 0;
        }
    return 1;
}

TEST(kv_append_commit_rollback) {
    lv_kv *kv = make_kv(200, 2, 16, LV_KV_F32);
    REQUIRE(kv, "create: %s", lv_last_error());
    CHECK(lv_kv_seq_len(kv, 0) == 0 && lv_kv_seq_max_pos(kv, 0) == -1, "empty");
    CHECK(append(kv, 2, 0, 37, 0, true) == LV_OK, "append 37");
    CHECK(lv_kv_seq_len(kv, 0) == 37 && lv_kv_seq_max_pos(kv, 0) == 36, "len 37");
    CHECK(check_stream(kv, 0, 0), "contents after commit");
    const int64_t used = lv_kv_used_bytes_(kv);
    CHECK(used == 37 * 2 * 3 * (8 + 4) * 4, "used bytes %lld", (long long)used);
    /* a rolled-back step leaves everything as it was */
    CHECK(append(kv, 2, 0, 50, 37, false) == LV_OK, "reserve 50");
    CHECK(lv_kv_seq_len(kv, 0) == 37 && lv_kv_seq_max_pos(kv, 0) == 36 && lv_kv_used_bytes_(kv) == used, "rollback restores");
    CHECK(check_stream(kv, 0, 0), "contents after rollback");
    /* pages freed by the rollback are reusable: fill to capacity exactly */
    CHECK(append(kv, 2, 0, 163, 37, true) == LV_OK, "fill to n_ctx: %s", lv_last_error());
    CHECK(check_stream(kv, 0, 0), "contents when full");
    lv_kv_free(kv);
}

TEST(kv_context_full_changes_nothing) {
    lv_kv *kv = make_kv(100, 2, 16, LV_KV_F16);
    REQUIRE(kv, "create");
    CHECK(append(kv, 2, 1, 60, 0, true) == LV_OK, "seq 1: 60");
    CHECK(append(kv, 2, 0, 30, 0, true) == LV_OK, "seq 0: 30");
    lv_status st = append(kv, 2, 0, 11, 30, true);
    CHECK(st == LV_ERR_CONTEXT_FULL, "101st token refused (%d)", st);
    CHECK(strstr(lv_last_error(), "context full") != NULL, "message: %s", lv_last_error());
    CHECK(lv_kv_seq_len(kv, 0) == 30 && lv_kv_seq_len(kv, 1) == 60, "lengths unchanged");
    CHECK(check_stream(kv, 0, 0) && check_stream(kv, 1, 0), "contents unchanged");
    CHECK(append(kv, 2, 0, 10, 30, true) == LV_OK, "exactly full is fine");
    lv_kv_free(kv);
}

TEST(kv_truncate_suffix_and_reuse) {
    lv_kv *kv = make_kv(256, 1, 16, LV_KV_F32);
    REQUIRE(kv, "create");
    CHECK(append(kv, 1, 0, 100, 0, true) == LV_OK, "append");
    CHECK(lv_kv_seq_truncate(kv, 0, 40) == LV_OK, "truncate");
    CHECK(lv_kv_seq_len(kv, 0) == 40 && lv_kv_seq_max_pos(kv, 0) == 39, "len %lld max %d", (long long)lv_kv_seq_len(kv, 0),
          lv_kv_seq_max_pos(kv, 0));
    CHECK(check_stream(kv, 0, 0), "kept prefix intact");
    CHECK(append(kv, 1, 0, 216, 40, true) == LV_OK, "the freed pages serve again: %s", lv_last_error());
    CHECK(check_stream(kv, 0, 0), "contents");
    CHECK(lv_kv_seq_truncate(kv, 0, 0) == LV_OK && lv_kv_seq_len(kv, 0) == 0 && lv_kv_used_bytes_(kv) == 0, "truncate all");
    lv_kv_free(kv);
}

TEST(kv_rejects_bad_shapes) {
    lv_kv_params p = {.n_layer = 1, .n_head_kv = 1, .head_dim_k = 8, .head_dim_v = 8, .page_size = 16, .n_ctx = 0, .n_seq_max = 1};
    lv_kv *kv = NULL;
    CHECK(lv_kv_create(&p, &kv) == LV_ERR_INVALID_ARG && !kv, "n_ctx 0");
    p.n_ctx = (int64_t)1 << 40;
    p.n_layer = 1 << 20;
    CHECK(lv_kv_create(&p, &kv) != LV_OK && !kv, "absurd size refused: %s", lv_last_error());
}

/* ---- QuickPrefill's pruning of a sequence's tail (lv_kv_seq_prune_tail) ---- */

#define PR_L 2
#define PR_H 2
#define PR_D 32
#define PR_P 16

/* two layers of two KV heads; layer 1's head 1 streams (sink + a window no test reaches); the full
 * heads keep LServe statistics, with groups of 2 pages */
static lv_kv *prune_kv(lv_kv_type t) {
    lv_kv_head_policy pol[PR_L * PR_H];
    memset(pol, 0, sizeof(pol));
    for (int i = 0; i < PR_L * PR_H; i++) pol[i].stats = true;
    pol[1 * PR_H + 1] = (lv_kv_head_policy){.kind = LV_MASK_SINK_WINDOW, .sink = 2, .window = 4096};
    lv_kv_params p = {.n_layer = PR_L, .n_head_kv = PR_H, .head_dim_k = PR_D, .head_dim_v = PR_D, .page_size = PR_P, .n_ctx = 4096,
                      .n_seq_max = 2, .n_batch = 512, .type = t, .type_v = LV_KV_SAME, .policies = pol, .stats_group = 2};
    lv_kv *kv = NULL;
    return lv_kv_create(&p, &kv) == LV_OK ? kv : NULL;
}

/* the key and value of (layer, head, position): random, reproducible */
static void pr_kv_of(int64_t l, int64_t h, int32_t pos, float *k, float *v) {
    lv_test_rng r = {(uint64_t)(pos * 131 + l * 17 + h * 5 + 1)};
    for (int d = 0; d < PR_D; d++) k[d] = 2.0f * lv_test_rng_f32(&r);
    for (int d = 0; d < PR_D; d++) v[d] = lv_test_rng_f32(&r);
}

/* append positions pos[0..n) to seq; for (l, h) the token written in slot i is pos_of(l, h, i) when given */
static lv_status pr_append(lv_kv *kv, int64_t seq, int64_t n, const int32_t *pos, const int32_t *(*pos_of)(int64_t, int64_t)) {
    int64_t n_new[2] = {0};
    int32_t last[2] = {0};
    n_new[seq] = n;
    last[seq] = pos[n - 1];
    lv_status st = lv_kv_reserve(kv, n_new, last);
    if (st != LV_OK) return st;
    for (int64_t l = 0; l < PR_L; l++)
        for (int64_t h = 0; h < PR_H; h++) {
            const int32_t *ps = pos_of ? pos_of(l, h) : pos;
            for (int64_t i = 0; i < n; i++) {
                float k[PR_D], v[PR_D];
                pr_kv_of(l, h, ps[i], k, v);
                lv_kv_write(kv, seq, l, h, i, k, v, ps[i]);
            }
        }
    lv_kv_commit(kv);
    return LV_OK;
}

/* what stream (l, h) of seq holds: positions, keys and values as stored (dequantized) */
static int64_t pr_read(lv_kv *kv, int64_t seq, int64_t l, int64_t h, int32_t *pos, float *k, float *v) {
    lv_attn_span spans[512];
    const int ns = lv_kv_spans(kv, seq, l, h, 0, spans, NULL);
    int64_t t = 0;
    for (int s = 0; s < ns; s++)
        for (int32_t i = 0; i < spans[s].n; i++, t++) {
            pos[t] = lv_span_pos(&spans[s], i);
            for (int d = 0; d < PR_D; d++) {
                k[t * PR_D + d] = lv_attn_key_at(lv_kv_type_of(kv), &spans[s], i, d, PR_D);
                v[t * PR_D + d] = lv_attn_val_at(lv_kv_type_v_of(kv), &spans[s], i, d, PR_D);
            }
        }
    return t;
}

#define PR_A 100 /* tokens before the pruned tail */
#define PR_B 120 /* the tail */
#define PR_K 30  /* prunable tokens kept of the tail's 96 */

static int32_t pr_kept[PR_L][PR_H][PR_A + PR_B]; /* per stream: the positions expected after pruning */
static const int32_t *pr_kept_of(int64_t l, int64_t h) { return pr_kept[l][h]; }

static void prune_case(lv_kv_type t) {
    const char *tn = lv_kv_type_name(t);
    lv_kv *kv = prune_kv(t), *fresh = prune_kv(t);
    REQUIRE(kv && fresh, "%s: create: %s", tn, lv_last_error());
    static int32_t pos[PR_A + PR_B], got_pos[PR_A + PR_B];
    static float before_k[PR_L][PR_H][(PR_A + PR_B) * PR_D], before_v[PR_L][PR_H][(PR_A + PR_B) * PR_D];
    static float got_k[(PR_A + PR_B) * PR_D], got_v[(PR_A + PR_B) * PR_D];
    for (int i = 0; i < PR_A + PR_B; i++) pos[i] = i;
    REQUIRE(pr_append(kv, 0, PR_A, pos, NULL) == LV_OK && pr_append(kv, 0, PR_B, pos + PR_A, NULL) == LV_OK, "%s: append: %s", tn, lv_last_error());
    for (int64_t l = 0; l < PR_L; l++)
        for (int64_t h = 0; h < PR_H; h++) pr_read(kv, 0, l, h, got_pos, before_k[l][h], before_v[l][h]);
    const int64_t used0 = lv_kv_pages_in_use_bytes_(kv);
    uint8_t prunable[PR_B];
    int64_t n_prunable = 0;
    for (int i = 0; i < PR_B; i++) n_prunable += prunable[i] = i % 5 != 0; /* every fifth token (text) stays */
    /* the expected kept set per layer: the PR_K prunable tokens of smallest squared key norm over the full heads */
    for (int64_t l = 0; l < PR_L; l++) {
        double norm[PR_B];
        for (int i = 0; i < PR_B; i++) {
            norm[i] = 0;
            for (int64_t h = 0; h < PR_H; h++) {
                if (l == 1 && h == 1) continue; /* streaming: not pruned, not counted */
                for (int d = 0; d < PR_D; d++) norm[i] += (double)before_k[l][h][(PR_A + i) * PR_D + d] * before_k[l][h][(PR_A + i) * PR_D + d];
            }
        }
        uint8_t keep[PR_B];
        for (int i = 0; i < PR_B; i++) keep[i] = !prunable[i];
        for (int j = 0; j < PR_K; j++) { /* selection by hand: the smallest norm not yet kept, the earlier on ties */
            int best = -1;
            for (int i = 0; i < PR_B; i++)
                if (prunable[i] && !keep[i] && (best < 0 || norm[i] < norm[best])) best = i;
            keep[best] = 2;
        }
        for (int64_t h = 0; h < PR_H; h++) {
            int n = 0;
            for (int i = 0; i < PR_A + PR_B; i++)
                if (i < PR_A || (l == 1 && h == 1) || keep[i - PR_A]) pr_kept[l][h][n++] = i;
        }
    }
    int64_t np = -1;
    REQUIRE(lv_kv_seq_prune_tail(kv, 0, PR_B, prunable, PR_K, &np) == LV_OK, "%s: prune: %s", tn, lv_last_error());
    CHECK(np == n_prunable - PR_K, "%s: %lld pruned", tn, (long long)np);
    CHECK(lv_kv_seq_len(kv, 0) == PR_A + PR_B && lv_kv_seq_max_pos(kv, 0) == PR_A + PR_B - 1, "%s: the logical length stays", tn);
    const int64_t n_keep = PR_A + (PR_B - n_prunable) + PR_K;
    for (int64_t l = 0; l < PR_L; l++)
        for (int64_t h = 0; h < PR_H; h++) {
            const bool streaming = l == 1 && h == 1;
            const int64_t n = pr_read(kv, 0, l, h, got_pos, got_k, got_v);
            CHECK(n == (streaming ? PR_A + PR_B : n_keep) && n == lv_kv_stream_n_stored(kv, 0, l, h), "%s (%lld, %lld): %lld tokens", tn,
                  (long long)l, (long long)h, (long long)n);
            int bad = 0;
            for (int64_t i = 0; i < n && !bad; i++) {
                const int32_t p = pr_kept[l][h][i];
                bad = got_pos[i] != p || memcmp(got_k + i * PR_D, before_k[l][h] + p * PR_D, PR_D * sizeof(float)) ||
                      memcmp(got_v + i * PR_D, before_v[l][h] + p * PR_D, PR_D * sizeof(float));
            }
            CHECK(!bad, "%s (%lld, %lld): the kept tokens, in order, with their keys, values and positions", tn, (long long)l, (long long)h);
        }
    CHECK(lv_kv_pages_in_use_bytes_(kv) < used0, "%s: pages went back to the pools", tn);
    /* LServe's selection over the pruned streams equals that over streams written with the kept
     * tokens only (statistics rebuilt; float caches: exactly, the statistics are of the stored keys) */
    REQUIRE(pr_append(fresh, 0, n_keep, pr_kept[0][0], pr_kept_of) == LV_OK, "%s: fresh: %s", tn, lv_last_error());
    if (!lv_kv_quantized(t)) {
        static uint8_t scratch[1 << 16];
        REQUIRE(lv_kv_select_scratch_bytes(kv, 1) <= sizeof(scratch), "scratch");
        lv_test_rng r = {99};
        int same = 1;
        for (int trial = 0; trial < 20; trial++) {
            float q[PR_D];
            for (int d = 0; d < PR_D; d++) q[d] = lv_test_rng_f32(&r);
            for (int64_t l = 0; l < PR_L; l++) {
                int32_t a[64], b[64];
                const int na = lv_kv_select_pages(kv, 0, l, 0, 0, q, 3, a, scratch);
                const int nb = lv_kv_select_pages(fresh, 0, l, 0, 0, q, 3, b, scratch);
                same &= na == nb && memcmp(a, b, (size_t)na * sizeof(int32_t)) == 0;
            }
        }
        CHECK(same, "%s: page selection after pruning differs from a cache that only ever held the kept tokens", tn);
    }
    /* errors change nothing: the same tail again, more tokens than the sequence has */
    CHECK(lv_kv_seq_prune_tail(kv, 0, PR_B, prunable, PR_K, &np) == LV_ERR_INVALID_ARG, "%s: pruning twice", tn);
    CHECK(lv_kv_seq_prune_tail(kv, 0, PR_A + PR_B + 1, NULL, 1, &np) == LV_ERR_INVALID_ARG, "%s: too long a tail", tn);
    CHECK(lv_kv_stream_n_stored(kv, 0, 0, 0) == n_keep, "%s: unchanged", tn);
    /* truncating inside the pruned range: the logical tokens from p0 on go */
    const int32_t cut = PR_A + 57;
    CHECK(lv_kv_seq_truncate(kv, 0, cut) == LV_OK, "%s: truncate at %d: %s", tn, cut, lv_last_error());
    CHECK(lv_kv_seq_len(kv, 0) == cut && lv_kv_seq_max_pos(kv, 0) == cut - 1, "%s: after the cut: length %lld, last %d", tn,
          (long long)lv_kv_seq_len(kv, 0), lv_kv_seq_max_pos(kv, 0));
    for (int64_t l = 0; l < PR_L; l++)
        for (int64_t h = 0; h < PR_H; h++) {
            int64_t want = 0;
            while (want < PR_A + PR_B && pr_kept[l][h][want] < cut && (want < n_keep || (l == 1 && h == 1))) want++;
            CHECK(lv_kv_stream_n_stored(kv, 0, l, h) == want, "%s (%lld, %lld): %lld after the cut, want %lld", tn, (long long)l, (long long)h,
                  (long long)lv_kv_stream_n_stored(kv, 0, l, h), (long long)want);
        }
    /* the positions go on from the cut, and the new tail can be pruned */
    REQUIRE(pr_append(kv, 0, PR_A + PR_B - cut, pos + cut, NULL) == LV_OK, "%s: append after the cut: %s", tn, lv_last_error());
    CHECK(lv_kv_seq_len(kv, 0) == PR_A + PR_B, "%s: length after re-appending", tn);
    CHECK(lv_kv_seq_prune_tail(kv, 0, PR_A + PR_B - cut, NULL, 10, &np) == LV_OK && np == PR_A + PR_B - cut - 10, "%s: prune the new tail: %s", tn,
          lv_last_error());
    /* truncating at the start of the pruned ranges: the cache as before any pruning */
    CHECK(lv_kv_seq_truncate(kv, 0, PR_A) == LV_OK && lv_kv_seq_len(kv, 0) == PR_A && lv_kv_seq_max_pos(kv, 0) == PR_A - 1, "%s: truncate at %d",
          tn, PR_A);
    for (int64_t l = 0; l < PR_L; l++)
        for (int64_t h = 0; h < PR_H; h++) {
            const int64_t n = pr_read(kv, 0, l, h, got_pos, got_k, got_v);
            CHECK(n == PR_A && memcmp(got_k, before_k[l][h], PR_A * PR_D * sizeof(float)) == 0 && got_pos[PR_A - 1] == PR_A - 1,
                  "%s (%lld, %lld): the first %d tokens as they were", tn, (long long)l, (long long)h, PR_A);
        }
    /* a tail whose positions have a gap is refused */
    int32_t gap[3] = {PR_A + 5, PR_A + 6, PR_A + 7};
    REQUIRE(pr_append(kv, 0, 3, gap, NULL) == LV_OK, "%s: append with a gap", tn);
    CHECK(lv_kv_seq_prune_tail(kv, 0, 4, NULL, 1, &np) == LV_ERR_INVALID_ARG, "%s: a tail with a gap", tn);
    CHECK(lv_kv_seq_prune_tail(kv, 0, 3, NULL, 1, &np) == LV_OK && np == 2, "%s: the consecutive part: %s", tn, lv_last_error());
    /* a cut before the pruned range; then the whole sequence */
    CHECK(lv_kv_seq_truncate(kv, 0, 5) == LV_OK && lv_kv_seq_len(kv, 0) == 5 && lv_kv_seq_max_pos(kv, 0) == 4, "%s: truncate at 5", tn);
    CHECK(lv_kv_seq_truncate(kv, 0, 0) == LV_OK && lv_kv_seq_len(kv, 0) == 0 && lv_kv_pages_in_use_bytes_(kv) == 0, "%s: all gone", tn);
    lv_kv_free(kv);
    lv_kv_free(fresh);
}

TEST(kv_prune_tail_f32) { prune_case(LV_KV_F32); }
TEST(kv_prune_tail_f16) { prune_case(LV_KV_F16); }
TEST(kv_prune_tail_q8_0) { prune_case(LV_KV_Q8_0); }
TEST(kv_prune_tail_q4_0) { prune_case(LV_KV_Q4_0); }

/* VideoScan's pruning by an explicit mask per layer (lv_kv_seq_prune_mask) and the cap's removal of
 * a range inside a pruned one (lv_kv_seq_drop_range), against the positions chosen by hand: kept
 * keys, values and positions in order, the streaming head untouched, LServe's selection as over a
 * cache that only ever held the survivors, truncation, errors */
static void mask_case(lv_kv_type t) {
    const char *tn = lv_kv_type_name(t);
    lv_kv *kv = prune_kv(t), *fresh = prune_kv(t);
    REQUIRE(kv && fresh, "%s: create: %s", tn, lv_last_error());
    static int32_t pos[PR_A + PR_B], got_pos[PR_A + PR_B];
    static float before_k[PR_L][PR_H][(PR_A + PR_B) * PR_D], before_v[PR_L][PR_H][(PR_A + PR_B) * PR_D];
    static float got_k[(PR_A + PR_B) * PR_D], got_v[(PR_A + PR_B) * PR_D];
    for (int i = 0; i < PR_A + PR_B; i++) pos[i] = i;
    REQUIRE(pr_append(kv, 0, PR_A, pos, NULL) == LV_OK && pr_append(kv, 0, PR_B, pos + PR_A, NULL) == LV_OK, "%s: append: %s", tn, lv_last_error());
    for (int64_t l = 0; l < PR_L; l++)
        for (int64_t h = 0; h < PR_H; h++) pr_read(kv, 0, l, h, got_pos, before_k[l][h], before_v[l][h]);
    /* layer 0 keeps every third tail token, layer 1 every fourth; then [PR_A + 30, PR_A + 60) is dropped */
    uint8_t keep[PR_L * PR_B];
    for (int i = 0; i < PR_B; i++) keep[i] = i % 3 == 0, keep[PR_B + i] = i % 4 == 0;
    int64_t nd = -1;
    REQUIRE(lv_kv_seq_prune_mask(kv, 0, PR_B, keep, &nd) == LV_OK && nd == PR_B - PR_B / 3, "%s: prune: %s (%lld)", tn, lv_last_error(), (long long)nd);
    CHECK(lv_kv_seq_drop_range(kv, 0, PR_A - 5, PR_A + 2, &nd) == LV_ERR_INVALID_ARG, "%s: a range outside the pruned one", tn);
    REQUIRE(lv_kv_seq_drop_range(kv, 0, PR_A + 30, PR_A + 60, &nd) == LV_OK && nd == 10, "%s: drop: %s (%lld)", tn, lv_last_error(), (long long)nd);
    CHECK(lv_kv_seq_len(kv, 0) == PR_A + PR_B && lv_kv_seq_max_pos(kv, 0) == PR_A + PR_B - 1, "%s: the logical length stays", tn);
    int64_t n_keep = 0;
    for (int64_t l = 0; l < PR_L; l++)
        for (int64_t h = 0; h < PR_H; h++) {
            const bool streaming = l == 1 && h == 1;
            int n = 0;
            for (int i = 0; i < PR_A + PR_B; i++) {
                const int ti = i - PR_A;
                if (streaming || ti < 0 || (keep[l * PR_B + ti] && !(ti >= 30 && ti < 60))) pr_kept[l][h][n++] = i;
            }
            if (l == 0 && h == 0) n_keep = n;
            const int64_t got = pr_read(kv, 0, l, h, got_pos, got_k, got_v);
            int bad = got != n;
            for (int64_t i = 0; i < got && !bad; i++) {
                const int32_t p = pr_kept[l][h][i];
                bad = got_pos[i] != p || memcmp(got_k + i * PR_D, before_k[l][h] + p * PR_D, PR_D * sizeof(float)) ||
                      memcmp(got_v + i * PR_D, before_v[l][h] + p * PR_D, PR_D * sizeof(float));
            }
            CHECK(!bad, "%s (%lld, %lld): %lld tokens, want the %d chosen by hand in order with their keys, values and positions", tn, (long long)l,
                  (long long)h, (long long)got, n);
        }
    if (!lv_kv_quantized(t)) { /* LServe's statistics rebuilt: the selection of a cache that only held layer 0's survivors */
        REQUIRE(pr_append(fresh, 0, n_keep, pr_kept[0][0], pr_kept_of) == LV_OK, "%s: fresh: %s", tn, lv_last_error());
        static uint8_t scratch[1 << 16];
        lv_test_rng r = {7};
        int same = 1;
        for (int trial = 0; trial < 20; trial++) {
            float q[PR_D];
            for (int d = 0; d < PR_D; d++) q[d] = lv_test_rng_f32(&r);
            int32_t a[64], b[64];
            const int na = lv_kv_select_pages(kv, 0, 0, 0, 0, q, 3, a, scratch);
            const int nb = lv_kv_select_pages(fresh, 0, 0, 0, 0, q, 3, b, scratch);
            same &= na == nb && memcmp(a, b, (size_t)na * sizeof(int32_t)) == 0;
        }
        CHECK(same, "%s: page selection after the mask and the drop differs from a fresh cache", tn);
    }
    /* errors: the same tail again */
    CHECK(lv_kv_seq_prune_mask(kv, 0, PR_B, keep, &nd) == LV_ERR_INVALID_ARG, "%s: pruning twice", tn);
    /* a cut inside the dropped range, then at the tail's start: as before any pruning */
    CHECK(lv_kv_seq_truncate(kv, 0, PR_A + 45) == LV_OK && lv_kv_seq_len(kv, 0) == PR_A + 45 && lv_kv_seq_max_pos(kv, 0) == PR_A + 44,
          "%s: cut inside the dropped range: %lld", tn, (long long)lv_kv_seq_len(kv, 0));
    CHECK(lv_kv_stream_n_stored(kv, 0, 0, 0) == PR_A + 10, "%s: %lld stored after the cut", tn, (long long)lv_kv_stream_n_stored(kv, 0, 0, 0));
    CHECK(lv_kv_seq_truncate(kv, 0, PR_A) == LV_OK && lv_kv_seq_len(kv, 0) == PR_A && lv_kv_stream_n_stored(kv, 0, 1, 0) == PR_A, "%s: cut at %d", tn,
          PR_A);
    lv_kv_free(kv);
    lv_kv_free(fresh);
}

TEST(kv_prune_mask_and_drop_f16) { mask_case(LV_KV_F16); }
TEST(kv_prune_mask_and_drop_q8_0) { mask_case(LV_KV_Q8_0); }
TEST(kv_prune_mask_and_drop_f32) { mask_case(LV_KV_F32); }

/* a pruned range whose every token is gone from every stream: its positions still count */
TEST(kv_prune_whole_prefix) {
    lv_kv *kv = prune_kv(LV_KV_F32);
    REQUIRE(kv, "create");
    int32_t pos[20];
    for (int i = 0; i < 20; i++) pos[i] = i;
    REQUIRE(pr_append(kv, 1, 20, pos, NULL) == LV_OK, "append");
    int64_t np;
    CHECK(lv_kv_seq_prune_tail(kv, 1, 20, NULL, 0, &np) == LV_OK && np == 20, "prune all 20: %s", lv_last_error());
    CHECK(lv_kv_stream_n_stored(kv, 1, 0, 0) == 0 && lv_kv_stream_n_stored(kv, 1, 1, 1) == 20, "full heads empty, the streaming one not");
    CHECK(lv_kv_seq_len(kv, 1) == 20 && lv_kv_seq_max_pos(kv, 1) == 19, "20 positions");
    CHECK(lv_kv_seq_truncate(kv, 1, 10) == LV_OK && lv_kv_seq_len(kv, 1) == 10 && lv_kv_seq_max_pos(kv, 1) == 9, "cut at 10: %lld",
          (long long)lv_kv_seq_len(kv, 1));
    REQUIRE(pr_append(kv, 1, 5, pos + 10, NULL) == LV_OK, "append 10..14: %s", lv_last_error());
    CHECK(lv_kv_seq_len(kv, 1) == 15 && lv_kv_stream_n_stored(kv, 1, 0, 0) == 5, "15 positions, 5 stored");
    CHECK(lv_kv_seq_truncate(kv, 1, 0) == LV_OK && lv_kv_seq_len(kv, 1) == 0, "all gone");
    lv_kv_free(kv);
}

/* allocations failing in turn inside the pruning: LV_ERR_NOMEM with the cache unchanged, then success */
TEST(kv_prune_allocation_failures) {
    lv_kv *kv = prune_kv(LV_KV_F16);
    REQUIRE(kv, "create");
    int32_t pos[40];
    for (int i = 0; i < 40; i++) pos[i] = i;
    REQUIRE(pr_append(kv, 0, 40, pos, NULL) == LV_OK, "append");
    const int64_t bytes = lv_kv_pages_in_use_bytes_(kv);
    int ok = 0;
    for (int n = 0; n < 10 && !ok; n++) {
        int64_t np = -1;
        lv_test_alloc_fail_after(n);
        lv_status st = lv_kv_seq_prune_tail(kv, 0, 30, NULL, 5, &np);
        lv_test_alloc_fail_after(-1);
        if (st == LV_OK) {
            ok = 1;
            CHECK(np == 25 && lv_kv_stream_n_stored(kv, 0, 0, 0) == 15, "pruned after %d failures", n);
        } else {
            CHECK(st == LV_ERR_NOMEM && lv_kv_stream_n_stored(kv, 0, 0, 0) == 40 && lv_kv_pages_in_use_bytes_(kv) == bytes &&
                      lv_kv_seq_len(kv, 0) == 40, "allocation %d failing: %s, the cache changed", n, lv_status_str(st));
        }
    }
    CHECK(ok, "no success within 10 allocations");
    CHECK(lv_kv_seq_truncate(kv, 0, 10) == LV_OK && lv_kv_seq_len(kv, 0) == 10 && lv_kv_stream_n_stored(kv, 0, 0, 0) == 10, "cut at 10");
    lv_kv_free(kv);
}

/* ---- positions: a page's base and form (none per slot / 16-bit offsets / 32-bit), kv.h ----
 * Every slot must read back the position written, whatever form its page took: consecutive runs,
 * gaps within 16 bits of the page's base (65535 exactly) and beyond (65536), a partly filled page
 * whose form the next batch must widen (and a rollback that must narrow it again), positions near
 * INT32_MAX, a sequence cut and appended again (Prepacking's slot reuse, a restart at 0),
 * pruning that moves far positions into one page, a copied sequence. Read back through the spans,
 * and through the attention kernels: each against the same spans with 32-bit positions. */

#define PS_D 32
#define PS_MAX 1200
static int64_t PS_P = 16; /* the page size of ps_kv's caches (128: spans longer than the kernels' 64-key blocks) */

static lv_kv *ps_kv(lv_kv_type t, int64_t n_ctx) {
    lv_kv_params p = {.n_layer = 1, .n_head_kv = 2, .head_dim_k = PS_D, .head_dim_v = PS_D, .page_size = PS_P, .n_ctx = n_ctx,
                      .n_seq_max = 2, .n_batch = 512, .type = t, .type_v = LV_KV_SAME};
    lv_kv *kv = NULL;
    return lv_kv_create(&p, &kv) == LV_OK ? kv : NULL;
}

static int32_t ps_short[3] = {-1, -1, -1}; /* positions whose keys are short (pruning keeps them) */

static void ps_kv_of(int32_t pos, int64_t h, float *k, float *v) {
    lv_test_rng r = {(uint64_t)pos * 7919u + (uint64_t)h * 13u + 1u};
    const float len = pos == ps_short[0] || pos == ps_short[1] || pos == ps_short[2] ? 0.001f : 2.0f;
    for (int d = 0; d < PS_D; d++) k[d] = len * (0.5f + 0.5f * fabsf(lv_test_rng_f32(&r)));
    for (int d = 0; d < PS_D; d++) v[d] = lv_test_rng_f32(&r);
}

/* append positions ps[0..n) to seq, reserved as lv_decode reserves (first and last position);
 * slot_writer: written by lv_kv_write_slot + lv_kv_write_stats, the forward pass's threaded path,
 * which relies on the reservation's choice of form; else lv_kv_write */
static lv_status ps_append(lv_kv *kv, int64_t seq, int64_t n, const int32_t *ps, bool slot_writer, bool commit) {
    int64_t n_new[2] = {0};
    int32_t first[2] = {0}, last[2] = {0};
    n_new[seq] = n;
    first[seq] = ps[0];
    last[seq] = ps[n - 1];
    lv_status st = lv_kv_reserve_pos(kv, n_new, first, last);
    if (st != LV_OK) return st;
    for (int64_t h = 0; h < 2; h++)
        for (int64_t i = 0; i < n; i++) {
            float k[PS_D], v[PS_D];
            ps_kv_of(ps[i], h, k, v);
            if (slot_writer) {
                lv_kv_write_slot(kv, seq, 0, h, i, k, v, ps[i]);
                lv_kv_write_stats(kv, seq, 0, h, i, k);
            } else {
                lv_kv_write(kv, seq, 0, h, i, k, v, ps[i]);
            }
        }
    if (commit) lv_kv_commit(kv);
    else lv_kv_rollback(kv);
    return LV_OK;
}

/* does every stream of seq hold exactly the positions want[0..n), through its spans and through
 * the attention kernels (the spans' forms against the same spans with 32-bit positions, for
 * queries at and between the positions)? 0 if so, else a code naming the first difference */
static int ps_check(lv_kv *kv, int64_t seq, const int32_t *want, int64_t n) {
    static lv_attn_span sp[PS_MAX], sp32[PS_MAX];
    static int32_t pos32[PS_MAX];
    static float scratch[1 << 16];
    for (int64_t h = 0; h < 2; h++) {
        if (lv_kv_stream_n_stored(kv, seq, 0, h) != n) return 1;
        const int ns = lv_kv_spans(kv, seq, 0, h, 0, sp, NULL);
        int64_t t = 0;
        for (int s = 0; s < ns; s++) {
            sp32[s] = sp[s];
            sp32[s].pos = pos32 + t;
            sp32[s].pos16 = NULL;
            sp32[s].pos0 = 0;
            for (int32_t i = 0; i < sp[s].n; i++, t++) {
                if (t >= n || lv_span_pos(&sp[s], i) != want[t]) return 2;
                pos32[t] = want[t];
            }
        }
        if (t != n) return 3;
        /* queries at a few positions, with their neighbours: masks cut inside pages */
        for (int64_t qi = 0; qi < n; qi += n / 5 + 1)
            for (int dq = -1; dq <= 1; dq++) {
                const int64_t qp64 = (int64_t)want[qi] + dq;
                if (qp64 < 0 || qp64 > INT32_MAX) continue;
                const int32_t qp = (int32_t)qp64;
                float q[PS_D], o1[PS_D], o2[PS_D], r1[PS_D], r2[PS_D];
                ps_kv_of(qp ^ 0x55, 1 - h, q, o1);
                lv_attn_job job = {.q = q, .out = o1, .pos = &qp, .n_tok = 1, .n_head = 1, .spans = sp, .n_spans = ns, .scale = 0.3f,
                                   .kv_type = lv_kv_type_of(kv), .kv_type_v = lv_kv_type_v_of(kv), .Dk = PS_D, .Dv = PS_D};
                job.mask.kind = LV_MASK_SINK_WINDOW; /* a window in positions: gaps change what it sees */
                job.mask.sink_end = want[0] + 1;
                job.mask.window = 40;
                lv_attn_job job32 = job;
                job32.spans = sp32;
                job32.out = o2;
                lv_attn(&job, scratch);
                lv_attn(&job32, scratch);
                if (memcmp(o1, o2, sizeof(o1))) return 4;
                job.mask.kind = LV_MASK_CAUSAL;
                job32.mask.kind = LV_MASK_CAUSAL;
                lv_attn(&job, scratch);
                lv_attn(&job32, scratch);
                if (memcmp(o1, o2, sizeof(o1))) return 5;
                static float sc1[PS_MAX], sc2[PS_MAX];
                const int64_t a1 = lv_attn_ref(q, sp, ns, qp, NULL, 0.3f, job.kv_type, job.kv_type_v, PS_D, PS_D, sc1, r1);
                const int64_t a2 = lv_attn_ref(q, sp32, ns, qp, NULL, 0.3f, job.kv_type, job.kv_type_v, PS_D, PS_D, sc2, r2);
                int64_t vis = 0;
                for (int64_t j = 0; j < n; j++) vis += want[j] <= qp;
                if (a1 != vis || a2 != vis || memcmp(r1, r2, sizeof(r1))) return 6;
            }
    }
    return 0;
}

/* bytes of the pages a consecutive fill takes: K, V and the 5-byte header, no positions per slot */
static int64_t ps_run_bytes(lv_kv *kv, int64_t n) {
    const int64_t pages = (n + PS_P - 1) / PS_P;
    return pages * 2 * (PS_P * (lv_kv_row_bytes(lv_kv_type_of(kv), PS_D) + lv_kv_row_bytes(lv_kv_type_v_of(kv), PS_D)) + 5);
}

static void positions_case(lv_kv_type t, bool slot_writer) {
    const char *tn = lv_kv_type_name(t);
    lv_kv *kv = ps_kv(t, 4096);
    REQUIRE(kv, "%s: create: %s", tn, lv_last_error());
    static int32_t want[PS_MAX];
    int64_t n = 0;
    int32_t b[256];
    int rc;
#define PS_ADD(commit, ...)                                                                                                      \
    do {                                                                                                                         \
        const int32_t add_[] = {__VA_ARGS__};                                                                                    \
        const int64_t na_ = (int64_t)(sizeof(add_) / sizeof(add_[0]));                                                           \
        CHECK(ps_append(kv, 0, na_, add_, slot_writer, commit) == LV_OK, "%s: append at %d: %s", tn, add_[0], lv_last_error()); \
        if (commit) {                                                                                                            \
            memcpy(want + n, add_, sizeof(add_));                                                                                \
            n += na_;                                                                                                            \
        }                                                                                                                        \
        CHECK((rc = ps_check(kv, 0, want, n)) == 0, "%s (%s): after %lld at %d: code %d", tn, slot_writer ? "slots" : "write", \
              (long long)na_, add_[0], rc);                                                                                      \
    } while (0)
    /* 0..195 consecutive: pages with nothing stored per slot (with 128-token pages, spans longer
     * than a kernel block) */
    for (int i = 0; i < 196; i++) b[i] = i;
    CHECK(ps_append(kv, 0, 196, b, slot_writer, true) == LV_OK, "%s: append", tn);
    memcpy(want, b, 196 * sizeof(int32_t));
    n = 196;
    CHECK((rc = ps_check(kv, 0, want, n)) == 0, "%s: consecutive: code %d", tn, rc);
    CHECK(lv_kv_pages_in_use_bytes_(kv) == ps_run_bytes(kv, 196), "%s: consecutive positions cost %lld bytes, not %lld", tn,
          (long long)lv_kv_pages_in_use_bytes_(kv), (long long)ps_run_bytes(kv, 196));
    PS_ADD(true, 196, 197, 198, 199);        /* continues the run in the partly filled page */
    const int64_t bytes_run = lv_kv_pages_in_use_bytes_(kv);
    PS_ADD(false, 210, 211, 220);            /* would widen the page to 16-bit offsets: rolled back */
    CHECK(lv_kv_pages_in_use_bytes_(kv) == bytes_run, "%s: a rollback left the page's wider form", tn);
    PS_ADD(true, 210, 211, 220);             /* gaps: the page takes 16-bit offsets */
    const int32_t pb = want[n - n % PS_P];   /* its base */
    PS_ADD(true, pb + 65535);                /* the largest offset from the base */
    PS_ADD(true, pb + 65536);                /* one past it: the page takes 32-bit positions */
    PS_ADD(true, pb + 65537);
    PS_ADD(true, 100000, 100001, 100002, 100003, 100004, 100005, 100006, 100007, 100008, 100009, 100010, 100011, 100012, 100013);
    PS_ADD(true, 100014, 100016, 100016 + 65535); /* a run page widened to offsets at the boundary */
    PS_ADD(true, 200000, 200001);            /* and a new page: a batch with gaps beyond 16 bits */
    PS_ADD(true, INT32_MAX - 70000, INT32_MAX - 5, INT32_MAX - 3, INT32_MAX); /* near the largest position */
    /* cut inside a page and append again after a gap (a slot reused for another prompt) */
    CHECK(lv_kv_seq_truncate(kv, 0, 211) == LV_OK, "%s: cut", tn);
    while (n > 0 && want[n - 1] >= 211) n--;
    CHECK((rc = ps_check(kv, 0, want, n)) == 0, "%s: after the cut: code %d", tn, rc);
    PS_ADD(true, 211, 212, 213);             /* the offsets page continues */
    PS_ADD(true, 5000, 5001, 5002, 5003, 5004, 5005, 5006, 5007, 5008, 5009, 5010, 5011, 5012, 5013, 5014, 5015);
    /* a copy holds the same positions */
    CHECK(lv_kv_seq_copy(kv, 0, 1) == LV_OK, "%s: copy: %s", tn, lv_last_error());
    CHECK((rc = ps_check(kv, 1, want, n)) == 0, "%s: the copy: code %d", tn, rc);
    /* the whole sequence removed and appended again from 0 (Prepacking's restart): runs again */
    CHECK(lv_kv_seq_truncate(kv, 1, 0) == LV_OK && lv_kv_seq_truncate(kv, 0, 0) == LV_OK, "%s: clear", tn);
    n = 0;
    CHECK(lv_kv_pages_in_use_bytes_(kv) == 0, "%s: pages left", tn);
    for (int i = 0; i < 200; i++) b[i] = i;
    CHECK(ps_append(kv, 0, 200, b, slot_writer, true) == LV_OK, "%s: again", tn);
    memcpy(want, b, 200 * sizeof(int32_t));
    n = 200;
    CHECK((rc = ps_check(kv, 0, want, n)) == 0, "%s: restarted: code %d", tn, rc);
    CHECK(lv_kv_pages_in_use_bytes_(kv) == ps_run_bytes(kv, 200), "%s: restarted run costs %lld bytes, not %lld", tn,
          (long long)lv_kv_pages_in_use_bytes_(kv), (long long)ps_run_bytes(kv, 200));
#undef PS_ADD
    lv_kv_free(kv);
}

TEST(kv_positions_exact_in_every_form_f16) {
    for (PS_P = 16; PS_P <= 128; PS_P *= 8) {
        positions_case(LV_KV_F16, true);
        positions_case(LV_KV_F16, false);
    }
    PS_P = 16;
}
TEST(kv_positions_exact_in_every_form_q4_0) {
    for (PS_P = 16; PS_P <= 128; PS_P *= 8) {
        positions_case(LV_KV_Q4_0, true);
        positions_case(LV_KV_Q4_0, false);
    }
    PS_P = 16;
}

/* pruning moves kept tokens down: far apart positions land in one page (QuickPrefill over 140000
 * tokens keeping 3 of 5 prunable ones, after the 5 first: one of them beyond the tail's middle, so
 * the page holds positions more than 16 bits apart) */
TEST(kv_positions_after_pruning) {
    const int64_t N = 140000;
    lv_kv *kv = ps_kv(LV_KV_F16, N + 64);
    REQUIRE(kv, "create: %s", lv_last_error());
    int32_t *ps = malloc((size_t)N * sizeof(int32_t));
    REQUIRE(ps, "alloc");
    for (int64_t i = 0; i < N; i++) ps[i] = (int32_t)(i + 7);
    ps_short[0] = ps[5 + 1], ps_short[1] = ps[5 + (N - 5) / 2], ps_short[2] = ps[5 + (N - 5) - 2];
    for (int64_t i0 = 0; i0 < N; i0 += 512) CHECK(ps_append(kv, 0, LV_MIN(512, N - i0), ps + i0, true, true) == LV_OK, "append");
    /* the tail is all but the first 5 tokens; the 3 with short keys stay, far apart */
    const int64_t tail = N - 5;
    const int64_t keep_at[3] = {1, tail / 2, tail - 2};
    int64_t np = 0;
    CHECK(lv_kv_seq_prune_tail(kv, 0, tail, NULL, 3, &np) == LV_OK && np == tail - 3, "prune: %s (%lld)", lv_last_error(), (long long)np);
    int32_t want[8];
    int64_t w = 0;
    for (int i = 0; i < 5; i++) want[w++] = ps[i];
    for (int k = 0; k < 3; k++) want[w++] = ps[5 + keep_at[k]];
    CHECK(want[7] - want[0] > 65535 && want[6] - want[0] > 65535, "the kept positions are not beyond 16 bits");
    int rc;
    CHECK((rc = ps_check(kv, 0, want, w)) == 0, "after pruning: code %d", rc);
    /* appending after the pruned tail: a new run */
    const int32_t more[3] = {(int32_t)N + 7, (int32_t)N + 8, (int32_t)N + 9};
    CHECK(ps_append(kv, 0, 3, more, true, true) == LV_OK, "append after pruning");
    int32_t want2[11];
    memcpy(want2, want, sizeof(want));
    memcpy(want2 + 8, more, sizeof(more));
    CHECK((rc = ps_check(kv, 0, want2, 11)) == 0, "after pruning and appending: code %d", rc);
    for (int k = 0; k < 3; k++) ps_short[k] = -1;
    free(ps);
    lv_kv_free(kv);
}
