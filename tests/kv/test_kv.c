/*
 * test_kv.c: the paged KV cache: transactional reserve/commit/rollback, capacity errors that
 * change nothing, slots and spans, suffix truncation, several sequences sharing the pools.
 */
#include "kv/kv.h"
#include "lv_test.h"
#include "gguf/quant.h"

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
                    if (spans[s].pos[i] != pos) return 0;
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
