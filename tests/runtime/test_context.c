/*
 * test_context.c: lv_decode's contract on a small random-weight model: invalid batches and
 * full contexts are errors that change nothing; sequences in one batch do not see each other
 * (packed or interleaved, prefill mixed with decode); an aborted step rolls the cache back;
 * removing a suffix and decoding again reproduces the logits; thread counts do not change them.
 * Each test runs on a tiny model of every architecture (qwen2 with biases, qwen3's q/k norms,
 * smollm3's NoPE layers, gemma3's sliding-window layer beside a global one, qwen35's recurrent
 * layers beside a gated attention layer: its state follows the same transactions).
 */
#include "lv_test.h"
#include "longview.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_archs[] = {"qwen2", "qwen3", "smollm3", "gemma3", "qwen35"};
#define N_ARCH 5
#define QWEN35 4
/* the tiny qwen35's memory (f32 cache): bytes per token of its one attention layer (2 KV heads, k + v
 * of 16), and of one sequence's state in its 3 recurrent layers (a 3-input convolution window over
 * 2 x 2 key-head + 4 value-head channels of 16, and 4 value heads' 16 x 16 matrices) */
#define Q35_TOKEN_BYTES ((int64_t)2 * 2 * 16 * 4)
#define Q35_STATE_BYTES ((int64_t)3 * ((4 - 1) * (2 * 2 * 16 + 4 * 16) + 4 * 16 * 16) * 4)
static lv_model *g_models[N_ARCH]; /* shared by the tests of this file */

static lv_model *tiny_model(int a) {
    if (g_models[a]) return g_models[a];
    const char *data = lv_test_shared_data();
    if (!data) return NULL;
    char vocab[1024], path[1024];
    snprintf(vocab, sizeof(vocab), "%s/vocab/ggml-vocab-llama-spm.gguf", data);
    snprintf(path, sizeof(path), "%s/context-tiny-%s.gguf", lv_test_tmpdir(), g_archs[a]);
    lv_genmodel_params gp = lv_genmodel_default_params();
    gp.arch = g_archs[a];
    gp.n_embd = 64;
    gp.n_layer = a == 2 ? 4 : 2; /* smollm3: layer 3 has no RoPE */
    gp.n_head = 4;
    gp.n_head_kv = 2;
    gp.n_ff = 96;
    if (a == 3) {
        gp.n_swa = 8; /* layer 0 sees the last 8 positions, layer 1 everything */
        gp.swa_pattern = 2;
    }
    if (a == QWEN35) { /* layers 0-2 recurrent (4 value heads over 2 key heads of 16), layer 3 attention */
        gp.n_layer = 4;
        gp.ssm_state = 16;
        gp.ssm_k_heads = 2;
        gp.ssm_v_heads = 4;
    }
    gp.vocab_path = vocab;
    gp.ftype = LV_FTYPE_Q8_0;
    gp.seed = 99;
    if (lv_genmodel_write(&gp, path) != LV_OK) return NULL;
    if (lv_model_load(path, lv_model_default_params(), &g_models[a]) != LV_OK) return NULL;
    return g_models[a];
}

/* the body that follows runs once per architecture, with `model` and `arch` set */
#define FOR_EACH_ARCH() for (int a_ = 0; a_ < N_ARCH; a_++)
#define NEED_MODEL()                                                                                  \
    const char *arch = g_archs[a_];                                                                   \
    lv_model *model = tiny_model(a_);                                                                 \
    if (!model && !lv_test_shared_data()) SKIP("../shared/data not found (the test model needs a vocabulary)"); \
    REQUIRE(model, "%s test model: %s", arch, lv_last_error());                                      \
    printf("  %s\n", arch)

static lv_context *new_ctx(lv_model *m, uint32_t n_ctx, uint32_t n_seq, int threads) {
    lv_context_params cp = lv_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = 256;
    cp.n_ubatch = 64;
    cp.n_seq_max = n_seq;
    cp.n_threads = threads;
    cp.kv_type = LV_KV_F32;
    lv_context *ctx = NULL;
    return lv_context_create(m, cp, &ctx) == LV_OK ? ctx : NULL;
}

static void fill(lv_batch *b, int32_t i, lv_token t, lv_pos p, lv_seq_id s, bool logits) {
    b->token[i] = t;
    b->pos[i] = p;
    b->seq_id[i] = s;
    b->logits[i] = logits;
}

/* logits after feeding tokens[0..n) one prefill into a fresh context */
static float *solo_logits(lv_model *m, const lv_token *toks, int32_t n) {
    lv_context *ctx = new_ctx(m, 512, 1, 2);
    lv_batch b = lv_batch_init(n);
    for (int32_t i = 0; i < n; i++) fill(&b, i, toks[i], i, 0, i == n - 1);
    b.n_tokens = n;
    float *out = NULL;
    if (ctx && lv_decode(ctx, &b) == LV_OK) {
        const int32_t V = lv_model_n_vocab(m);
        out = malloc(sizeof(float) * (size_t)V);
        memcpy(out, lv_get_logits_ith(ctx, n - 1), sizeof(float) * (size_t)V);
    }
    lv_batch_free(&b);
    lv_context_free(ctx);
    return out;
}

static double max_diff(const float *a, const float *b, int32_t n) {
    double d = 0;
    for (int32_t i = 0; i < n; i++) d = fmax(d, fabs(a[i] - b[i]));
    return d;
}

TEST(decode_rejects_bad_batches_and_changes_nothing) {
    FOR_EACH_ARCH() {
        NEED_MODEL();
        lv_context *ctx = new_ctx(model, 64, 2, 2);
        REQUIRE(ctx, "ctx: %s", lv_last_error());
        lv_batch b = lv_batch_init(300);
        REQUIRE(b.token, "batch");
        for (int i = 0; i < 5; i++) fill(&b, i, 10 + i, i, 0, true);
        b.n_tokens = 5;
        REQUIRE(lv_decode(ctx, &b) == LV_OK, "first decode: %s", lv_last_error());
        const int32_t V = lv_model_n_vocab(model);

        struct { const char *what; int idx; lv_token tok; lv_pos pos; lv_seq_id seq; int n; } bad[] = {
            {"token id -1", 0, -1, 5, 0, 1},         {"token id = n_vocab", 0, V, 5, 0, 1}, {"sequence id 2", 0, 1, 5, 2, 1},
            {"sequence id -1", 0, 1, 5, -1, 1},      {"position 3 <= cached 4", 0, 1, 3, 0, 1}, {"negative position", 0, 1, -2, 1, 1},
            {"repeated position in batch", 1, 7, 5, 0, 2}, {"more than n_batch", 0, 1, 5, 0, 257},
        };
        for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
            b.n_tokens = bad[k].n;
            for (int i = 0; i < b.n_tokens; i++) fill(&b, i, 3, 5 + i, 0, true);
            fill(&b, bad[k].idx, bad[k].tok, bad[k].pos, bad[k].seq, true);
            lv_status st = lv_decode(ctx, &b);
            CHECK(st == LV_ERR_INVALID_ARG, "%s: status %d", bad[k].what, st);
            CHECK(lv_last_error()[0] != '\0', "%s: no message", bad[k].what);
            CHECK(lv_kv_seq_n_tokens(ctx, 0) == 5 && lv_kv_seq_n_tokens(ctx, 1) == 0, "%s: cache changed", bad[k].what);
        }
        CHECK(lv_get_logits_ith(ctx, 0) == NULL && lv_get_logits_ith(ctx, -1) == NULL, "a failed step leaves no logits");
        b.n_tokens = 0;
        CHECK(lv_decode(ctx, &b) == LV_ERR_INVALID_ARG, "empty batch");
        CHECK(lv_decode(ctx, NULL) == LV_ERR_INVALID_ARG, "NULL batch");
        lv_batch_free(&b);
        lv_context_free(ctx);
    }
}

TEST(prompt_longer_than_context_is_an_error) {
    FOR_EACH_ARCH() {
        NEED_MODEL();
        lv_context *ctx = new_ctx(model, 32, 1, 2);
        REQUIRE(ctx, "ctx");
        lv_batch b = lv_batch_init(40);
        for (int i = 0; i < 40; i++) fill(&b, i, 100 + i, i, 0, i == 39);
        b.n_tokens = 40;
        lv_status st = lv_decode(ctx, &b);
        CHECK(st == LV_ERR_CONTEXT_FULL, "status %d", st);
        CHECK(strstr(lv_last_error(), "context") != NULL, "message: %s", lv_last_error());
        CHECK(lv_kv_seq_n_tokens(ctx, 0) == 0, "nothing cached");
        b.n_tokens = 32;
        CHECK(lv_decode(ctx, &b) == LV_OK, "32 tokens fit: %s", lv_last_error());
        b.n_tokens = 1;
        fill(&b, 0, 5, 32, 0, true);
        CHECK(lv_decode(ctx, &b) == LV_ERR_CONTEXT_FULL && lv_kv_seq_n_tokens(ctx, 0) == 32, "one more is refused, cache intact");
        lv_batch_free(&b);
        lv_context_free(ctx);
    }
}

TEST(sequences_in_one_batch_do_not_see_each_other) {
    FOR_EACH_ARCH() {
        NEED_MODEL();
        const int32_t V = lv_model_n_vocab(model);
        lv_token A[23], B[17];
        lv_test_rng r = {lv_test_seed() ^ 20};
        for (int i = 0; i < 23; i++) A[i] = (lv_token)(lv_test_rng_u64(&r) % (uint64_t)V);
        for (int i = 0; i < 17; i++) B[i] = (lv_token)(lv_test_rng_u64(&r) % (uint64_t)V);
        float *la = solo_logits(model, A, 23), *lb = solo_logits(model, B, 17);
        REQUIRE(la && lb, "solo runs");
        /* interleaved: A and B alternate in one batch (B's positions restart at 0) */
        lv_context *ctx = new_ctx(model, 128, 2, 2);
        lv_batch b = lv_batch_init(40);
        int n = 0, ia = 0, ib = 0;
        while (ia < 23 || ib < 17) {
            if (ia < 23) { fill(&b, n++, A[ia], ia, 0, ia == 22); ia++; }
            if (ib < 17) { fill(&b, n++, B[ib], ib, 1, ib == 16); ib++; }
        }
        b.n_tokens = n;
        REQUIRE(ctx && lv_decode(ctx, &b) == LV_OK, "packed decode: %s", lv_last_error());
        int last_a = -1, last_b = -1;
        for (int i = 0; i < n; i++) {
            if (b.seq_id[i] == 0 && b.logits[i]) last_a = i;
            if (b.seq_id[i] == 1 && b.logits[i]) last_b = i;
        }
        CHECK(max_diff(lv_get_logits_ith(ctx, last_a), la, V) == 0, "seq 0 packed vs alone: %g", max_diff(lv_get_logits_ith(ctx, last_a), la, V));
        CHECK(max_diff(lv_get_logits_ith(ctx, last_b), lb, V) == 0, "seq 1 packed vs alone: %g", max_diff(lv_get_logits_ith(ctx, last_b), lb, V));
        CHECK(lv_kv_seq_n_tokens(ctx, 0) == 23 && lv_kv_seq_n_tokens(ctx, 1) == 17, "per-sequence lengths");
        /* mixed step: seq 0 decodes one token while seq 1 prefills 5 more */
        lv_token A2[24], B2[22];
        memcpy(A2, A, sizeof(A));
        memcpy(B2, B, sizeof(B));
        A2[23] = 42;
        for (int i = 0; i < 5; i++) B2[17 + i] = 1000 + i;
        float *la2 = solo_logits(model, A2, 24), *lb2 = solo_logits(model, B2, 22);
        b.n_tokens = 6;
        fill(&b, 0, 42, 23, 0, true);
        for (int i = 0; i < 5; i++) fill(&b, 1 + i, 1000 + i, 17 + i, 1, i == 4);
        REQUIRE(lv_decode(ctx, &b) == LV_OK, "mixed decode: %s", lv_last_error());
        CHECK(max_diff(lv_get_logits_ith(ctx, 0), la2, V) == 0, "decode row vs alone");
        CHECK(max_diff(lv_get_logits_ith(ctx, 5), lb2, V) == 0, "prefill row vs alone");
        CHECK(lv_get_logits_ith(ctx, 1) == NULL && lv_get_logits_ith(ctx, 6) == NULL && lv_get_logits_ith(ctx, -1) == lv_get_logits_ith(ctx, 5),
              "only requested rows have logits");
        free(la);
        free(lb);
        free(la2);
        free(lb2);
        lv_batch_free(&b);
        lv_context_free(ctx);
    }
}

static bool abort_now(void *user) { return ++*(int *)user >= 2; }

TEST(abort_rolls_back_and_seq_rm_reproduces) {
    FOR_EACH_ARCH() {
        NEED_MODEL();
        const int32_t V = lv_model_n_vocab(model);
        lv_token T[30];
        for (int i = 0; i < 30; i++) T[i] = 50 + 7 * i;
        float *want = solo_logits(model, T, 30);
        REQUIRE(want, "solo");
        int calls = 0;
        lv_context_params cp = lv_context_default_params();
        cp.n_ctx = 64;
        cp.n_threads = 2;
        cp.kv_type = LV_KV_F32;
        cp.abort_fn = abort_now;
        cp.abort_user = &calls;
        lv_context *ctx = NULL;
        REQUIRE(lv_context_create(model, cp, &ctx) == LV_OK, "ctx");
        lv_batch b = lv_batch_init(30);
        for (int i = 0; i < 20; i++) fill(&b, i, T[i], i, 0, false);
        b.n_tokens = 20;
        CHECK(lv_decode(ctx, &b) == LV_ERR_ABORTED, "aborted after layer 2");
        CHECK(lv_kv_seq_n_tokens(ctx, 0) == 0, "rolled back");
        calls = -1000; /* no more aborts */
        CHECK(lv_decode(ctx, &b) == LV_OK, "again: %s", lv_last_error());
        for (int i = 0; i < 10; i++) fill(&b, i, T[20 + i], 20 + i, 0, i == 9);
        b.n_tokens = 10;
        CHECK(lv_decode(ctx, &b) == LV_OK, "rest");
        CHECK(max_diff(lv_get_logits_ith(ctx, 9), want, V) == 0, "after abort + retry: identical logits");
        /* drop the last 12 tokens and feed them again (a recurrent state cannot be rewound: the
         * suffix is refused with nothing changed, and the whole sequence goes instead) */
        int first = 18;
        if (a_ == QWEN35) {
            CHECK(lv_kv_seq_rm(ctx, 0, 18, -1) == LV_ERR_UNSUPPORTED && lv_kv_seq_n_tokens(ctx, 0) == 30, "qwen35: a suffix is refused");
            CHECK(lv_kv_seq_rm(ctx, 0, 31, -1) == LV_OK && lv_kv_seq_n_tokens(ctx, 0) == 30, "qwen35: removing past the end is a no-op");
            CHECK(lv_kv_seq_rm(ctx, 0, 0, -1) == LV_OK && lv_kv_seq_n_tokens(ctx, 0) == 0, "qwen35: the whole sequence goes");
            first = 0;
        } else {
            CHECK(lv_kv_seq_rm(ctx, 0, 18, -1) == LV_OK && lv_kv_seq_n_tokens(ctx, 0) == 18, "seq_rm suffix");
        }
        CHECK(lv_kv_seq_rm(ctx, 0, 2, 5) == LV_ERR_UNSUPPORTED || a_ == QWEN35, "removing from the middle is refused");
        for (int i = 0; i < 30 - first; i++) fill(&b, i, T[first + i], first + i, 0, i == 29 - first);
        b.n_tokens = 30 - first;
        CHECK(lv_decode(ctx, &b) == LV_OK, "re-decode");
        CHECK(max_diff(lv_get_logits_ith(ctx, 29 - first), want, V) == 0, "after seq_rm: identical logits");
        free(want);
        lv_batch_free(&b);
        lv_context_free(ctx);
    }
}

TEST(thread_count_does_not_change_logits) {
    FOR_EACH_ARCH() {
        NEED_MODEL();
        const int32_t V = lv_model_n_vocab(model);
        float *ref = NULL;
        for (int th = 1; th <= 3; th++) {
            lv_context *ctx = new_ctx(model, 128, 1, th);
            lv_batch b = lv_batch_init(100);
            for (int i = 0; i < 100; i++) fill(&b, i, (i * 131) % V, i, 0, i == 99);
            b.n_tokens = 100;
            REQUIRE(ctx && lv_decode(ctx, &b) == LV_OK, "decode with %d threads", th);
            const float *lg = lv_get_logits_ith(ctx, 99);
            if (!ref) {
                ref = malloc(sizeof(float) * (size_t)V);
                memcpy(ref, lg, sizeof(float) * (size_t)V);
            } else {
                CHECK(max_diff(lg, ref, V) == 0, "%d threads differ from 1: %g", th, max_diff(lg, ref, V));
            }
            lv_batch_free(&b);
            lv_context_free(ctx);
        }
        free(ref);
    }
}

TEST(context_creation_survives_allocation_failures) {
    FOR_EACH_ARCH() {
        NEED_MODEL();
        int failures = 0;
        for (int64_t n = 0; n < 200; n++) {
            lv_test_alloc_fail_after(n);
            lv_context *ctx = new_ctx(model, 64, 2, 2);
            lv_test_alloc_fail_after(-1);
            if (ctx) {
                lv_batch b = lv_batch_init(4);
                for (int i = 0; i < 4; i++) fill(&b, i, i + 1, i, 0, i == 3);
                b.n_tokens = 4;
                CHECK(lv_decode(ctx, &b) == LV_OK, "a context that was created works");
                lv_batch_free(&b);
                lv_context_free(ctx);
                break;
            }
            failures++;
        }
        CHECK(failures > 5, "allocation failures were exercised (%d)", failures);
    }
}

__attribute__((destructor)) static void free_tiny_models(void) {
    for (int a = 0; a < N_ARCH; a++) lv_model_free(g_models[a]);
}

/* gemma3's sliding-window layer keeps constant memory: over 512 tokens the cache grows by the
 * global layer's bytes per token only (the window layer holds its last 8 positions plus at most
 * two 16-token pages), and a suffix inside the evicted part cannot be removed. */
TEST(gemma3_sliding_window_layers_keep_constant_memory) {
    const int a_ = 3;
    NEED_MODEL();
    lv_context_params cp = lv_context_default_params();
    cp.n_ctx = 1024;
    cp.n_batch = 64;
    cp.n_ubatch = 64;
    cp.kv_page_size = 16;
    cp.kv_type = LV_KV_F32;
    lv_context *ctx = NULL;
    REQUIRE(lv_context_create(model, cp, &ctx) == LV_OK, "ctx: %s", lv_last_error());
    const int64_t tok = 2 /* KV heads */ * 2 * 16 /* k + v, head 16 */ * 4; /* bytes per token per layer, f32 */
    lv_batch b = lv_batch_init(64);
    int64_t used[9] = {0};
    for (int c = 0; c < 8; c++) {
        for (int i = 0; i < 64; i++) fill(&b, i, 1 + (c * 64 + i) % 500, c * 64 + i, 0, i == 63);
        b.n_tokens = 64;
        REQUIRE(lv_decode(ctx, &b) == LV_OK, "chunk %d: %s", c, lv_last_error());
        used[c + 1] = lv_kv_used_bytes(ctx);
    }
    /* from 128 tokens on, each 64 more cost the global layer's 64 tokens, nothing for the window layer */
    for (int c = 2; c < 8; c++)
        CHECK(used[c + 1] - used[c] == 64 * tok, "tokens %d..%d: +%lld bytes, want %lld (the global layer only)", c * 64, c * 64 + 63,
              (long long)(used[c + 1] - used[c]), (long long)(64 * tok));
    CHECK(used[8] <= 512 * tok + (8 + 2 * 16 + 64) * tok, "512 tokens use %lld bytes: more than the global layer + a window", (long long)used[8]);
    CHECK(lv_kv_seq_rm(ctx, 0, 100, -1) == LV_ERR_UNSUPPORTED && lv_kv_seq_n_tokens(ctx, 0) == 512,
          "removing a suffix the window layer evicted is refused, the cache intact");
    lv_batch_free(&b);
    lv_context_free(ctx);
}

/* qwen35's recurrent layers keep a state per sequence whatever its length: the cache grows by the
 * attention layer's bytes per token only, the state is counted once per sequence that has tokens,
 * and prefill, chunks and token-by-token decode agree exactly (the state carries across steps
 * and micro-batches). */
TEST(qwen35_recurrent_state_is_constant_and_carries_across_steps) {
    const int a_ = QWEN35;
    NEED_MODEL();
    const int32_t V = lv_model_n_vocab(model);
    lv_token T[96];
    for (int i = 0; i < 96; i++) T[i] = (lv_token)(3 + (i * 977) % (V - 3));
    float *want = solo_logits(model, T, 96);
    REQUIRE(want, "solo");
    const int64_t tok = Q35_TOKEN_BYTES, state = Q35_STATE_BYTES;
    for (int chunk = 1; chunk <= 96; chunk *= 7) { /* 1 (token by token), 7, 49 */
        lv_context_params cp = lv_context_default_params();
        cp.n_ctx = 256;
        cp.n_ubatch = 5; /* several micro-batches per step */
        cp.kv_type = LV_KV_F32;
        cp.n_threads = 2;
        lv_context *ctx = NULL;
        REQUIRE(lv_context_create(model, cp, &ctx) == LV_OK, "ctx: %s", lv_last_error());
        CHECK(lv_kv_used_bytes(ctx) == 0, "an empty context holds no state");
        lv_batch b = lv_batch_init(96);
        for (int i0 = 0; i0 < 96; i0 += chunk) {
            const int n = i0 + chunk <= 96 ? chunk : 96 - i0;
            for (int i = 0; i < n; i++) fill(&b, i, T[i0 + i], i0 + i, 0, i == n - 1);
            b.n_tokens = n;
            REQUIRE(lv_decode(ctx, &b) == LV_OK, "chunk at %d: %s", i0, lv_last_error());
            CHECK(lv_kv_used_bytes(ctx) == state + (i0 + n) * tok, "after %d tokens: %lld bytes, want the state %lld + %d tokens of one layer",
                  i0 + n, (long long)lv_kv_used_bytes(ctx), (long long)state, i0 + n);
        }
        const float *lg = lv_get_logits_ith(ctx, -1);
        CHECK(lg && max_diff(lg, want, V) == 0, "chunks of %d vs one prefill: %g", chunk, lg ? max_diff(lg, want, V) : -1.0);
        lv_batch_free(&b);
        lv_context_free(ctx);
    }
    free(want);
}

/* The attention plans apply to qwen35's attention layer: LServe selection whose budget covers the
 * context gives the dense logits exactly, and a sink+window plan on the attention layer (the
 * recurrent layers' words in the plan are ignored) keeps its KV bounded whatever the length. */
TEST(qwen35_attention_plans_apply_to_its_attention_layers) {
    const int a_ = QWEN35;
    NEED_MODEL();
    const int32_t V = lv_model_n_vocab(model);
    lv_token T[80];
    for (int i = 0; i < 80; i++) T[i] = (lv_token)(5 + (i * 631) % (V - 5));
    float *dense = solo_logits(model, T, 80);
    REQUIRE(dense, "dense");
    for (int mode = 0; mode < 2; mode++) {
        lv_context_params cp = lv_context_default_params();
        cp.n_ctx = 256;
        cp.kv_page_size = 16;
        cp.kv_type = LV_KV_F32;
        cp.n_threads = 2;
        if (mode == 0) {
            cp.attention.select = true;
            cp.attention.kv_budget = 256; /* covers the context: selection keeps every page */
            cp.attention.select_every = 1;
        } else {
            cp.attention.layer_plan = "full,full,full,sw";
            cp.attention.sink = 4;
            cp.attention.window = 8;
        }
        lv_context *ctx = NULL;
        REQUIRE(lv_context_create(model, cp, &ctx) == LV_OK, "mode %d: %s", mode, lv_last_error());
        lv_batch b = lv_batch_init(40);
        for (int i = 0; i < 40; i++) fill(&b, i, T[i], i, 0, false);
        b.n_tokens = 40;
        REQUIRE(lv_decode(ctx, &b) == LV_OK, "prefill: %s", lv_last_error());
        int64_t used_40 = lv_kv_used_bytes(ctx);
        for (int i = 40; i < 80; i++) { /* decode token by token */
            fill(&b, 0, T[i], i, 0, true);
            b.n_tokens = 1;
            REQUIRE(lv_decode(ctx, &b) == LV_OK, "decode %d: %s", i, lv_last_error());
        }
        const float *lg = lv_get_logits_ith(ctx, 0);
        if (mode == 0) {
            CHECK(lg && max_diff(lg, dense, V) == 0, "LServe with a covering budget vs dense: %g", lg ? max_diff(lg, dense, V) : -1.0);
        } else {
            CHECK(lg && max_diff(lg, dense, V) > 0, "a sink+window attention layer changes the logits");
            /* the state, and sink + window + two partial 16-token pages of the attention layer
             * (dense would hold all 80 tokens: 37376 bytes) */
            const int64_t state = Q35_STATE_BYTES, tok = Q35_TOKEN_BYTES;
            CHECK(lv_kv_used_bytes(ctx) <= state + (4 + 8 + 2 * 16) * tok && used_40 <= state + (4 + 8 + 2 * 16) * tok,
                  "sink+window: %lld bytes after 80 tokens, %lld after 40; bound %lld", (long long)lv_kv_used_bytes(ctx), (long long)used_40,
                  (long long)(state + (4 + 8 + 2 * 16) * tok));
        }
        lv_batch_free(&b);
        lv_context_free(ctx);
    }
    free(dense);
}

/* lv_kv_seq_cp: a copy of a sequence continues as the sequence does, bit for bit, for every
 * architecture (sliding-window evictions, recurrent state), with f32 and f16 caches and LServe's
 * statistics (pages of 16, selection on); removing the source leaves the copy intact; bad ids, a
 * non-empty destination and a full context are refused and change nothing */
TEST(seq_cp_continues_as_the_source) {
    FOR_EACH_ARCH() {
        NEED_MODEL();
        const int32_t V = lv_model_n_vocab(model);
        for (int variant = 0; variant < 2; variant++) {
            lv_context_params cp = lv_context_default_params();
            cp.n_ctx = 512;
            cp.n_batch = 64;
            cp.n_ubatch = 16;
            cp.n_seq_max = 3;
            cp.n_threads = 2;
            cp.kv_type = variant ? LV_KV_F16 : LV_KV_F32; /* (head size 16: no q8_0 pages) */
            cp.kv_page_size = 16;
            cp.attention.select = variant == 1 && a_ != QWEN35 && a_ != 3; /* LServe pages on the full-attention models */
            cp.attention.kv_budget = 32;
            lv_context *ctx = NULL;
            REQUIRE(lv_context_create(model, cp, &ctx) == LV_OK, "%s: context: %s", arch, lv_last_error());
            lv_batch b = lv_batch_init(64);
            lv_test_rng r = {lv_test_seed() + (uint64_t)variant};
            const int32_t n = 53;
            for (int32_t done = 0; done < n;) { /* the prompt in seq 0, batches of up to 40 */
                const int32_t m = n - done < 40 ? n - done : 40;
                for (int32_t i = 0; i < m; i++) fill(&b, i, 3 + (lv_token)(lv_test_rng_u64(&r) % (uint64_t)(V - 3)), done + i, 0, done + i == n - 1);
                b.n_tokens = m;
                REQUIRE(lv_decode(ctx, &b) == LV_OK, "%s: prompt: %s", arch, lv_last_error());
                done += m;
            }
            const int64_t used = lv_kv_used_bytes(ctx);
            CHECK(lv_kv_seq_cp(ctx, 0, 1) == LV_OK && lv_kv_seq_cp(ctx, 0, 2) == LV_OK, "%s: copy: %s", arch, lv_last_error());
            CHECK(lv_kv_used_bytes(ctx) == 3 * used && lv_kv_seq_n_tokens(ctx, 1) == n && lv_kv_seq_n_tokens(ctx, 2) == n,
                  "%s: %lld bytes after two copies of %lld, %lld tokens", arch, (long long)lv_kv_used_bytes(ctx), (long long)used,
                  (long long)lv_kv_seq_n_tokens(ctx, 1));
            CHECK(lv_kv_seq_cp(ctx, 0, 1) == LV_ERR_INVALID_ARG && lv_kv_seq_cp(ctx, 1, 1) == LV_ERR_INVALID_ARG &&
                      lv_kv_seq_cp(ctx, 0, 3) == LV_ERR_INVALID_ARG && lv_kv_used_bytes(ctx) == 3 * used,
                  "%s: bad copies refused and nothing changed", arch);
            /* the same tokens into seq 0 and seq 1 (one batch) and seq 2 (alone): equal logits at every step;
             * from step 6 seq 0 is removed and seq 1 and 2 go on together */
            float *l0 = malloc(sizeof(float) * (size_t)V);
            lv_token t = (lv_token)(3 + lv_test_rng_u64(&r) % (uint64_t)(V - 3));
            bool same = true, same2 = true;
            for (int32_t k = 0; k < 12 && same && same2; k++) {
                if (k == 6) REQUIRE(lv_kv_seq_rm(ctx, 0, 0, -1) == LV_OK, "%s: removing the source: %s", arch, lv_last_error());
                fill(&b, 0, t, n + k, k < 6 ? 0 : 2, true);
                fill(&b, 1, t, n + k, 1, true);
                b.n_tokens = 2;
                REQUIRE(lv_decode(ctx, &b) == LV_OK, "%s: step %d: %s", arch, k, lv_last_error());
                memcpy(l0, lv_get_logits_ith(ctx, 0), sizeof(float) * (size_t)V);
                same = memcmp(l0, lv_get_logits_ith(ctx, 1), sizeof(float) * (size_t)V) == 0;
                if (k < 6) {
                    fill(&b, 0, t, n + k, 2, true);
                    b.n_tokens = 1;
                    REQUIRE(lv_decode(ctx, &b) == LV_OK, "%s: step %d (seq 2): %s", arch, k, lv_last_error());
                    same2 = memcmp(l0, lv_get_logits_ith(ctx, 0), sizeof(float) * (size_t)V) == 0;
                }
                lv_token best = 0;
                for (int32_t i = 1; i < V; i++) best = l0[i] > l0[best] ? i : best;
                t = best;
            }
            CHECK(same && same2, "%s %s: the copies' logits differ from the source's", arch, variant ? "f16 + LServe" : "f32");
            free(l0);
            lv_batch_free(&b);
            lv_context_free(ctx);
        }
    }
}

/* LServe's page statistics (min / max keys per 16-token logical page) written by a prefill on
 * several threads equal one thread's: decoding over selected pages then gives the same logits bit
 * for bit. (The threads' rows met in a logical page and raced on its read-modify-write: selections
 * at decode differed now and then.) Five prefills on 3 threads, each against the 1-thread one. */
TEST(lserve_statistics_do_not_depend_on_threads) {
    lv_model *model = tiny_model(0);
    if (!model && !lv_test_shared_data()) SKIP("../shared/data not found (the test model needs a vocabulary)");
    REQUIRE(model, "model: %s", lv_last_error());
    const int32_t V = lv_model_n_vocab(model), N = 301, STEPS = 24;
    float *ref = malloc(sizeof(float) * (size_t)V * STEPS), *lg = malloc(sizeof(float) * (size_t)V);
    for (int run = 0; run < 6; run++) {
        lv_context_params cp = lv_context_default_params();
        cp.n_ctx = 512;
        cp.n_batch = cp.n_ubatch = 512;
        cp.n_threads = run == 0 ? 1 : 3;
        cp.kv_type = LV_KV_F32;
        cp.kv_page_size = 16;
        cp.attention.select = true;
        cp.attention.kv_budget = 32;
        cp.attention.select_every = 1; /* select at every step */
        lv_context *ctx = NULL;
        REQUIRE(lv_context_create(model, cp, &ctx) == LV_OK, "context: %s", lv_last_error());
        lv_batch b = lv_batch_init(N);
        for (int32_t i = 0; i < N; i++) fill(&b, i, 3 + (i * 7919) % (V - 3), i, 0, i == N - 1);
        b.n_tokens = N;
        REQUIRE(lv_decode(ctx, &b) == LV_OK, "prefill: %s", lv_last_error());
        bool same = true;
        for (int32_t s = 0; s < STEPS && same; s++) {
            fill(&b, 0, 3 + (s * 104729) % (V - 3), N + s, 0, true);
            b.n_tokens = 1;
            REQUIRE(lv_decode(ctx, &b) == LV_OK, "step %d: %s", s, lv_last_error());
            memcpy(lg, lv_get_logits_ith(ctx, 0), sizeof(float) * (size_t)V);
            if (run == 0) memcpy(ref + (size_t)s * V, lg, sizeof(float) * (size_t)V);
            else same = memcmp(lg, ref + (size_t)s * V, sizeof(float) * (size_t)V) == 0;
        }
        CHECK(same, "run %d on 3 threads: decoding over the selected pages differs from 1 thread's", run);
        lv_batch_free(&b);
        lv_context_free(ctx);
    }
    free(ref), free(lg);
}
