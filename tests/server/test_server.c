/*
 * test_server.c: the serving engine without HTTP (src/server/).
 *  - lv_pack_step against a slow reference (sort by decreasing length, first fit) on random
 *    inputs: every prompt placed at most once, the budget respected and used up while prompts
 *    wait, at most one chunk, aged prompts first, and the one-prompt-per-step rule when off.
 *  - a packed step (several prompts of mixed length, each its own sequence, positions restarting)
 *    gives bit for bit the logits each prompt gives alone in a fresh context.
 *  - the engine (queue, admission, packing with chunks, decode mixed with prefill, prompt reuse)
 *    gives each request exactly the tokens a one-request loop gives: greedy and seeded sampling.
 *  - refusals (too long, queue full), cancellation frees the slot, stop strings cut the text,
 *    the time cap on generation, the queue timeout (a timed-out request leaves the queue without
 *    a slot: lv_srv_req_wait_admitted), and a drain on the engine thread that lets
 *    running requests finish.
 */
#define _GNU_SOURCE
#include "lv_test.h"
#include "longview.h"
#include "server/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the packer ---- */

/* the reference: whole prompts by decreasing length (older first on ties), first fit */
static int32_t ref_whole(const lv_pack_item *it, int n, int32_t room, bool *whole) {
    bool *done = calloc((size_t)n, 1);
    for (int k = 0; k < n; k++) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (!done[i] && (best < 0 || it[i].n_tokens > it[best].n_tokens ||
                             (it[i].n_tokens == it[best].n_tokens && (it[i].order < it[best].order || (it[i].order == it[best].order && it[i].id < it[best].id)))))
                best = i;
        done[best] = true;
        if (it[best].n_tokens <= room) {
            whole[best] = true;
            room -= it[best].n_tokens;
        }
    }
    free(done);
    return room;
}

TEST(server_pack_bfd_fills_the_step) {
    /* a worked case: 60 + 30 fill 90 of 100; the 10 left go to the oldest of those that did not fit */
    lv_pack_item it[5] = {{0, 30, 0, 4, false}, {1, 60, 0, 3, false}, {2, 30, 0, 2, false}, {3, 20, 0, 1, false}, {4, 15, 0, 5, false}};
    lv_pack_place out[5];
    int n = lv_pack_step(it, 5, 100, 5, 8, true, out);
    REQUIRE(n == 3, "placements %d", n);
    CHECK(out[0].id == 1 && out[0].n_tokens == 60, "first: %d/%d", out[0].id, out[0].n_tokens);
    CHECK(out[1].id == 2 && out[1].n_tokens == 30, "second (older of the two 30s): %d/%d", out[1].id, out[1].n_tokens);
    CHECK(out[2].id == 3 && out[2].n_tokens == 10, "chunk to the oldest left (id 3): %d/%d", out[2].id, out[2].n_tokens);
    /* a started prompt gets the chunk before an older one */
    it[0].started = true;
    n = lv_pack_step(it, 5, 100, 5, 8, true, out);
    CHECK(n == 3 && out[2].id == 0 && out[2].n_tokens == 10, "chunk to the started prompt: %d/%d", out[2].id, out[2].n_tokens);
    /* many short prompts go in whole together */
    lv_pack_item sh[4] = {{0, 5, 0, 0, false}, {1, 9, 0, 1, false}, {2, 3, 0, 2, false}, {3, 200, 0, 3, false}};
    n = lv_pack_step(sh, 4, 64, 4, 8, true, out);
    CHECK(n == 4 && out[3].id == 3 && out[3].n_tokens == 64 - 17, "short ones whole + chunk: n %d", n);
    /* off: one prompt per step, the oldest */
    n = lv_pack_step(sh, 4, 64, 4, 8, false, out);
    CHECK(n == 1 && out[0].id == 0 && out[0].n_tokens == 5, "pack off: %d %d/%d", n, out[0].id, out[0].n_tokens);
    n = lv_pack_step(sh + 3, 1, 64, 4, 8, false, out);
    CHECK(n == 1 && out[0].n_tokens == 64, "pack off chunks a long prompt");

    lv_test_rng r = {lv_test_seed()};
    for (int trial = 0; trial < 2000; trial++) {
        const int ni = 1 + (int)(lv_test_rng_u64(&r) % 12);
        lv_pack_item items[12];
        for (int i = 0; i < ni; i++) {
            const uint64_t kind = lv_test_rng_u64(&r) % 4;
            items[i].id = 100 + i;
            items[i].n_tokens = 1 + (int32_t)(lv_test_rng_u64(&r) % (kind == 0 ? 600 : 60));
            items[i].age = (int32_t)(lv_test_rng_u64(&r) % 10);
            items[i].order = (int64_t)(lv_test_rng_u64(&r) % 50);
            items[i].started = lv_test_rng_u64(&r) % 5 == 0;
        }
        const int32_t budget = 1 + (int32_t)(lv_test_rng_u64(&r) % 512);
        const int32_t age_cap = (int32_t)(lv_test_rng_u64(&r) % 12);
        const int max_items = 1 + (int)(lv_test_rng_u64(&r) % 14);
        lv_pack_place pl[12];
        const int np = lv_pack_step(items, ni, budget, max_items, age_cap, true, pl);
        int32_t sum = 0;
        int n_partial = 0;
        bool seen[12] = {0};
        bool ok = np >= 0 && np <= max_items && np <= ni;
        for (int k = 0; ok && k < np; k++) {
            const int i = pl[k].id - 100;
            ok = i >= 0 && i < ni && !seen[i] && pl[k].n_tokens >= 1 && pl[k].n_tokens <= items[i].n_tokens;
            if (!ok) break;
            seen[i] = true;
            sum += pl[k].n_tokens;
            n_partial += pl[k].n_tokens < items[i].n_tokens;
        }
        CHECK(ok, "trial %d: a placement is invalid or repeated", trial);
        if (!ok) break;
        CHECK(sum <= budget, "trial %d: %d tokens over the budget %d", trial, sum, budget);
        CHECK(n_partial <= 1, "trial %d: %d chunks", trial, n_partial);
        int n_unplaced = 0;
        bool aged_left = false;
        for (int i = 0; i < ni; i++) {
            if (!seen[i]) n_unplaced++;
            if (!seen[i] && age_cap > 0 && items[i].age >= age_cap) aged_left = true;
        }
        /* while anything waits, the step is full (or out of prompt slots) */
        if (n_unplaced > 0 && np < max_items) CHECK(sum == budget, "trial %d: %d of %d used with %d prompts left", trial, sum, budget, n_unplaced);
        if (aged_left && np < max_items) CHECK(sum == budget, "trial %d: an aged prompt was left with room", trial);
        /* with nothing aged and no limit on prompts, the whole placements are exactly the reference's */
        bool any_aged = false;
        for (int i = 0; i < ni; i++) any_aged |= age_cap > 0 && items[i].age >= age_cap;
        if (!any_aged && max_items >= ni) {
            bool whole[12] = {0};
            ref_whole(items, ni, budget, whole);
            bool same = true;
            for (int k = 0; k < np; k++) {
                const int i = pl[k].id - 100;
                if ((pl[k].n_tokens == items[i].n_tokens) != whole[i]) same = false;
            }
            for (int i = 0; i < ni; i++)
                if (whole[i] && !seen[i]) same = false;
            CHECK(same, "trial %d: whole placements differ from the reference", trial);
        }
        /* off: one prompt, started first then oldest */
        const int n1 = lv_pack_step(items, ni, budget, max_items, age_cap, false, pl);
        int want = 0;
        for (int i = 1; i < ni; i++)
            if (items[i].started != items[want].started ? items[i].started
                                                        : (items[i].order < items[want].order || (items[i].order == items[want].order && items[i].id < items[want].id)))
                want = i;
        CHECK(n1 == 1 && pl[0].id == items[want].id && pl[0].n_tokens == (items[want].n_tokens < budget ? items[want].n_tokens : budget),
              "trial %d: pack off picked %d", trial, pl[0].id);
    }
}

/* ---- a tiny model ---- */

static lv_model *g_model;

static lv_model *tiny(void) {
    if (g_model) return g_model;
    char path[1024];
    snprintf(path, sizeof(path), "%s/server-tiny.gguf", lv_test_tmpdir());
    lv_genmodel_params gp = lv_genmodel_default_params();
    gp.arch = "llama";
    gp.n_embd = 64;
    gp.n_layer = 2;
    gp.n_head = 4;
    gp.n_head_kv = 2;
    gp.n_ff = 96;
    gp.vocab_path = "builtin:bytes";
    gp.ftype = LV_FTYPE_Q8_0;
    gp.std = 0.08f; /* sharper logits: fewer near-ties in greedy decoding */
    gp.seed = 21;
    if (lv_genmodel_write(&gp, path) != LV_OK) return NULL;
    if (lv_model_load(path, lv_model_default_params(), &g_model) != LV_OK) return NULL;
    return g_model;
}

static lv_context *new_ctx(lv_model *m, uint32_t n_ctx, uint32_t n_seq, uint32_t n_batch) {
    lv_context_params cp = lv_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_ubatch = n_batch;
    cp.n_seq_max = n_seq;
    cp.n_threads = 2;
    cp.kv_type = LV_KV_F16;
    lv_context *ctx = NULL;
    return lv_context_create(m, cp, &ctx) == LV_OK ? ctx : NULL;
}

static void random_prompt(lv_test_rng *r, lv_token *t, int32_t n, int32_t V) {
    t[0] = 1; /* BOS */
    for (int32_t i = 1; i < n; i++) t[i] = 3 + (lv_token)(lv_test_rng_u64(r) % (uint64_t)(V - 3));
}

TEST(server_packed_prefill_equals_one_at_a_time) {
    lv_model *m = tiny();
    REQUIRE(m, "model: %s", lv_last_error());
    const int32_t V = lv_model_n_vocab(m);
    lv_test_rng r = {lv_test_seed()};
    enum { NP = 5 };
    const int32_t len[NP] = {7, 23, 50, 3, 90};
    lv_token toks[NP][90];
    for (int k = 0; k < NP; k++) random_prompt(&r, toks[k], len[k], V);
    /* the step: the packer chooses with a budget that takes four whole prompts and a chunk of the fifth */
    lv_pack_item items[NP];
    for (int k = 0; k < NP; k++) items[k] = (lv_pack_item){.id = k, .n_tokens = len[k], .order = k};
    lv_pack_place pl[NP];
    const int32_t budget = 128;
    const int np = lv_pack_step(items, NP, budget, NP, 8, true, pl);
    lv_context *ctx = new_ctx(m, 1024, NP, 256);
    REQUIRE(ctx, "ctx: %s", lv_last_error());
    lv_batch b = lv_batch_init(256);
    int32_t row[NP], done[NP] = {0};
    for (int k = 0; k < NP; k++) row[k] = -1;
    b.n_tokens = 0;
    for (int k = 0; k < np; k++) {
        const int s = pl[k].id;
        for (int32_t j = 0; j < pl[k].n_tokens; j++) {
            const int32_t t = b.n_tokens++;
            b.token[t] = toks[s][j];
            b.pos[t] = j;
            b.seq_id[t] = s;
            b.logits[t] = j == len[s] - 1;
            if (b.logits[t]) row[s] = t;
        }
        done[s] = pl[k].n_tokens;
    }
    CHECK(np == NP && b.n_tokens == budget, "the step packs %d prompts, %d tokens", np, b.n_tokens);
    REQUIRE(lv_decode(ctx, &b) == LV_OK, "packed decode: %s", lv_last_error());
    float *packed[NP] = {0};
    for (int s = 0; s < NP; s++)
        if (row[s] >= 0) {
            packed[s] = malloc(sizeof(float) * (size_t)V);
            memcpy(packed[s], lv_get_logits_ith(ctx, row[s]), sizeof(float) * (size_t)V);
        }
    /* the chunked prompt: its rest in a second step */
    for (int s = 0; s < NP; s++)
        if (done[s] < len[s]) {
            b.n_tokens = 0;
            for (int32_t j = done[s]; j < len[s]; j++) {
                const int32_t t = b.n_tokens++;
                b.token[t] = toks[s][j];
                b.pos[t] = j;
                b.seq_id[t] = s;
                b.logits[t] = j == len[s] - 1;
            }
            REQUIRE(lv_decode(ctx, &b) == LV_OK, "rest of the chunked prompt: %s", lv_last_error());
            packed[s] = malloc(sizeof(float) * (size_t)V);
            memcpy(packed[s], lv_get_logits_ith(ctx, b.n_tokens - 1), sizeof(float) * (size_t)V);
        }
    lv_context_free(ctx);
    /* each alone, in a fresh context, in one prefill */
    for (int s = 0; s < NP; s++) {
        lv_context *c1 = new_ctx(m, 1024, 1, 256);
        REQUIRE(c1, "ctx");
        b.n_tokens = len[s];
        for (int32_t j = 0; j < len[s]; j++) {
            b.token[j] = toks[s][j];
            b.pos[j] = j;
            b.seq_id[j] = 0;
            b.logits[j] = j == len[s] - 1;
        }
        REQUIRE(lv_decode(c1, &b) == LV_OK, "solo decode");
        const float *solo = lv_get_logits_ith(c1, len[s] - 1);
        CHECK(packed[s] && memcmp(packed[s], solo, sizeof(float) * (size_t)V) == 0, "prompt %d (%d tokens): packed logits differ from alone",
              s, len[s]);
        lv_context_free(c1);
        free(packed[s]);
    }
    lv_batch_free(&b);
}

/* the reference generation: one request alone, prompt in one prefill, then token by token;
 * embd: the rows of the prompt's LV_TOKEN_EMBD entries, in order (NULL: none) */
static int32_t solo_generate_e(lv_model *m, const lv_token *p, int32_t n, const float *embd, int32_t n_predict, lv_sampler_params sp,
                               lv_token *out) {
    lv_context *ctx = new_ctx(m, 1024, 1, 256);
    lv_sampler *smp = NULL;
    const int64_t E = lv_model_n_embd(m);
    lv_batch b = embd ? lv_batch_init_embd(256, (int32_t)E) : lv_batch_init(256);
    free(b.pos_mrope);
    b.pos_mrope = NULL;
    int32_t k = 0;
    if (!ctx || lv_sampler_create(sp, lv_model_n_vocab(m), &smp) != LV_OK) goto end;
    for (int32_t j = 0, row = 0; j < n; j++) {
        b.token[j] = p[j];
        if (p[j] == LV_TOKEN_EMBD) memcpy(b.embd + j * E, embd + (row++) * E, (size_t)E * sizeof(float));
        b.pos[j] = j;
        b.seq_id[j] = 0;
        b.logits[j] = j == n - 1;
    }
    b.n_tokens = n;
    if (lv_decode(ctx, &b) != LV_OK) goto end;
    for (; k < n_predict;) {
        const lv_token t = lv_sampler_sample(smp, lv_get_logits_ith(ctx, -1));
        out[k++] = t;
        if (lv_token_is_eog(m, t) || k == n_predict) break;
        b.n_tokens = 1;
        b.token[0] = t;
        b.pos[0] = n + k - 1;
        b.seq_id[0] = 0;
        b.logits[0] = 1;
        if (lv_decode(ctx, &b) != LV_OK) break;
    }
end:
    lv_batch_free(&b);
    lv_sampler_free(smp);
    lv_context_free(ctx);
    return k;
}
static int32_t solo_generate(lv_model *m, const lv_token *p, int32_t n, int32_t n_predict, lv_sampler_params sp, lv_token *out) {
    return solo_generate_e(m, p, n, NULL, n_predict, sp, out);
}

/* run steps until every request finished; returns false if it takes too many */
static bool run_until_done(lv_srv *srv, lv_srv_req **reqs, int n) {
    for (int it = 0; it < 10000; it++) {
        bool all = true;
        for (int k = 0; k < n; k++) {
            lv_srv_output o;
            lv_srv_req_poll(reqs[k], INT64_MAX / 2, INT32_MAX / 2, 0, &o);
            all &= o.finish != LV_SRV_FINISH_NONE;
            lv_srv_output_clear(&o);
        }
        if (all) return true;
        if (lv_srv_step(srv) < 0) return false;
    }
    return false;
}

TEST(server_engine_matches_single_request_runs) {
    lv_model *m = tiny();
    REQUIRE(m, "model: %s", lv_last_error());
    const int32_t V = lv_model_n_vocab(m);
    lv_test_rng r = {lv_test_seed()};
    for (int pack = 1; pack >= 0; pack--) {
        lv_context *ctx = new_ctx(m, 1024, 4, 64);
        REQUIRE(ctx, "ctx");
        lv_srv_params sp = lv_srv_default_params();
        sp.n_slots = 4;
        sp.n_batch = 32; /* small: prompts are chunked and mixed with decodes */
        sp.pack = pack;
        lv_srv *srv = NULL;
        REQUIRE(lv_srv_create(ctx, m, &sp, &srv) == LV_OK, "create: %s", lv_last_error());
        enum { NR = 7 };
        const int32_t len[NR] = {5, 40, 12, 70, 3, 25, 40};
        lv_token toks[NR][70];
        lv_srv_req *reqs[NR];
        lv_sampler_params smp[NR];
        for (int k = 0; k < NR; k++) {
            random_prompt(&r, toks[k], len[k], V);
            /* the last starts with the whole prompt of the one before it, admitted last: its slot still caches it */
            if (k == NR - 1) memcpy(toks[k], toks[k - 1], sizeof(lv_token) * (size_t)len[k - 1]);
            smp[k] = lv_sampler_default_params();
            smp[k].temp = k % 3 == 2 ? 0.9f : 0; /* some seeded draws */
            smp[k].seed = 1000 + (uint64_t)k;
            lv_srv_req_params rp = {.prompt = toks[k], .n_prompt = len[k], .n_predict = 9, .sampling = smp[k]};
            REQUIRE(lv_srv_submit(srv, &rp, &reqs[k]) == LV_SRV_ACCEPTED, "submit %d: %s", k, lv_last_error());
            if (k == NR - 2) REQUIRE(run_until_done(srv, reqs, NR - 1), "steps"); /* the last comes after the others */
        }
        REQUIRE(run_until_done(srv, reqs, NR), "the requests did not finish");
        lv_token prev[70 + 16]; /* the prompt and answer of the request before, as its slot cached them */
        int32_t n_prev = 0;
        for (int k = 0; k < NR; k++) {
            lv_srv_output o;
            lv_srv_req_poll(reqs[k], 0, 0, 0, &o);
            lv_token want[16];
            const int32_t nw = solo_generate(m, toks[k], len[k], 9, smp[k], want);
            CHECK(o.n_tokens == nw && (nw == 0 || memcmp(o.tokens, want, sizeof(lv_token) * (size_t)nw) == 0),
                  "pack %d request %d (%d tokens, temp %.1f): %d tokens differ from the single run's %d", pack, k, len[k], smp[k].temp, o.n_tokens, nw);
            CHECK(o.finish == LV_SRV_FINISH_LENGTH || o.finish == LV_SRV_FINISH_EOS, "finish %d", o.finish);
            if (k == NR - 1) {
                /* at least the whole earlier prompt; more only where the prompt goes on with the tokens
                 * the earlier request generated (its slot caches them too), never past that */
                int32_t lcp = 0;
                while (lcp < n_prev && lcp < len[k] - 1 && prev[lcp] == toks[k][lcp]) lcp++;
                CHECK(o.n_cached >= len[k - 1] && o.n_cached <= lcp, "pack %d: the shared prefix reused %d tokens, want %d..%d", pack, o.n_cached,
                      len[k - 1], lcp);
            }
            memcpy(prev, toks[k], sizeof(lv_token) * (size_t)len[k]);
            n_prev = len[k];
            for (int32_t i = 0; i < o.n_tokens && i < 16; i++) prev[n_prev++] = o.tokens[i];
            lv_srv_output_clear(&o);
            lv_srv_req_release(reqs[k]);
        }
        lv_srv_stats st;
        lv_srv_get_stats(srv, &st);
        CHECK(st.running == 0 && st.waiting == 0, "left running %d waiting %d", st.running, st.waiting);
        CHECK(st.requests_finished == NR, "finished %lld", (long long)st.requests_finished);
        CHECK(st.n_tokens_max <= 32, "a step of %lld tokens over the budget", (long long)st.n_tokens_max);
        if (pack) CHECK(st.prompts_per_step.sum > st.prompts_per_step.count, "packing never put two prompts in one step");
        else CHECK(st.prompts_per_step.sum == st.prompts_per_step.count, "pack off put two prompts in one step");
        lv_srv_free(srv);
        lv_context_free(ctx);
    }
}

TEST(server_refusals_cancel_and_stop_strings) {
    lv_model *m = tiny();
    REQUIRE(m, "model: %s", lv_last_error());
    const int32_t V = lv_model_n_vocab(m);
    lv_test_rng r = {lv_test_seed()};
    lv_context *ctx = new_ctx(m, 256, 2, 64);
    REQUIRE(ctx, "ctx");
    lv_srv_params sp = lv_srv_default_params();
    sp.n_slots = 2;
    sp.n_batch = 64;
    sp.max_waiting = 2;
    lv_srv *srv = NULL;
    REQUIRE(lv_srv_create(ctx, m, &sp, &srv) == LV_OK, "create: %s", lv_last_error());
    lv_token p[300];
    random_prompt(&r, p, 300, V);
    lv_srv_req_params rp = {.prompt = p, .n_prompt = 300, .n_predict = 4, .sampling = lv_sampler_default_params()};
    rp.sampling.temp = 0;
    lv_srv_req *q = NULL;
    CHECK(lv_srv_submit(srv, &rp, &q) == LV_SRV_REFUSE_TOO_LONG && !q, "a prompt longer than the context is refused");
    CHECK(strstr(lv_last_error(), "context") != NULL, "the message names the context: %s", lv_last_error());
    rp.n_prompt = 200;
    rp.n_predict = 100;
    CHECK(lv_srv_submit(srv, &rp, &q) == LV_SRV_REFUSE_TOO_LONG, "prompt + max tokens over the context is refused");
    rp.n_prompt = 3;
    lv_token bad[3] = {1, V, 2};
    rp.prompt = bad;
    rp.n_predict = 4;
    CHECK(lv_srv_submit(srv, &rp, &q) == LV_SRV_REFUSE_INVALID, "a token outside the vocabulary is refused");
    rp.prompt = p;
    /* queue: 2 waiting at most (nothing steps yet) */
    lv_srv_req *a = NULL, *b2 = NULL, *c = NULL;
    rp.n_prompt = 20;
    REQUIRE(lv_srv_submit(srv, &rp, &a) == LV_SRV_ACCEPTED, "a");
    REQUIRE(lv_srv_submit(srv, &rp, &b2) == LV_SRV_ACCEPTED, "b");
    CHECK(lv_srv_submit(srv, &rp, &c) == LV_SRV_REFUSE_QUEUE_FULL && !c, "the third waits in a full queue: refused");
    /* cancel a running request: its slot is free after the next step */
    lv_srv_step(srv);
    lv_srv_req_cancel(a);
    lv_srv_step(srv);
    lv_srv_output o;
    lv_srv_req_poll(a, 0, 0, 0, &o);
    CHECK(o.finish == LV_SRV_FINISH_CANCELLED, "cancelled: finish %d", o.finish);
    lv_srv_output_clear(&o);
    lv_srv_stats st;
    lv_srv_get_stats(srv, &st);
    CHECK(st.running == 1 && st.requests_cancelled == 1, "running %d cancelled %lld", st.running, (long long)st.requests_cancelled);
    lv_srv_req_release(a);
    lv_srv_req_release(b2); /* released while running: cancelled, no leak */
    lv_srv_step(srv);
    lv_srv_get_stats(srv, &st);
    CHECK(st.running == 0, "a released request still holds its slot");

    /* stop strings: the text of a run without them, then cut at a piece of it */
    rp.n_predict = 24;
    rp.n_prompt = 10;
    rp.ignore_eos = true; /* 24 byte tokens: text to cut */
    lv_srv_req *x = NULL;
    REQUIRE(lv_srv_submit(srv, &rp, &x) == LV_SRV_ACCEPTED, "x");
    REQUIRE(run_until_done(srv, &x, 1), "x steps");
    lv_srv_req_poll(x, 0, 0, 0, &o);
    char *full = o.n_text ? malloc((size_t)o.n_text) : NULL;
    if (full) memcpy(full, o.text, (size_t)o.n_text);
    const int64_t n_full = o.n_text;
    lv_srv_output_clear(&o);
    lv_srv_req_release(x);
    REQUIRE(n_full >= 4, "24 generated bytes gave %lld bytes of text", (long long)n_full);
    /* a stop string from the middle of the text, at a character boundary */
    int64_t at = n_full / 2;
    while (at < n_full - 1 && full[at] == 0) at++;
    while (at > 0 && ((unsigned char)full[at] & 0xC0) == 0x80) at--;
    int64_t end = at + 1;
    while (end < n_full && ((unsigned char)full[end] & 0xC0) == 0x80) end++;
    char stop[16] = {0};
    memcpy(stop, full + at, (size_t)(end - at));
    const char *stops[2] = {"\x01never", stop};
    rp.stop = stops;
    rp.n_stop = 2;
    REQUIRE(lv_srv_submit(srv, &rp, &x) == LV_SRV_ACCEPTED, "x with stop");
    REQUIRE(run_until_done(srv, &x, 1), "x with stop: steps");
    lv_srv_req_poll(x, 0, 0, 0, &o);
    const int64_t first = (const char *)memmem(full, (size_t)n_full, stop, strlen(stop)) - full;
    CHECK(o.finish == LV_SRV_FINISH_STOP && o.stop_word && strcmp(o.stop_word, stop) == 0, "finish %d", o.finish);
    CHECK(o.n_text == first && memcmp(o.text ? o.text : "", full, (size_t)first) == 0, "the text ends before the stop string: %lld bytes, want %lld",
          (long long)o.n_text, (long long)first);
    lv_srv_output_clear(&o);
    lv_srv_req_release(x);
    free(full);
    /* a wall-clock cap on generation: the second token is sampled after it, and ends the request */
    lv_srv_req_params rc = rp;
    rc.n_predict = 40;
    rc.ignore_eos = true;
    rc.n_stop = 0;
    rc.stop = NULL;
    rc.max_generate_s = 1e-9;
    lv_srv_req *capped = NULL;
    REQUIRE(lv_srv_submit(srv, &rc, &capped) == LV_SRV_ACCEPTED, "capped");
    bool ended = false;
    for (int i = 0; i < 200 && !ended; i++) {
        lv_srv_req_poll(capped, 0, 0, 0, &o);
        const lv_srv_finish f = o.finish;
        const int32_t n_tok = o.n_tokens;
        lv_srv_output_clear(&o);
        if (f != LV_SRV_FINISH_NONE) {
            CHECK(f == LV_SRV_FINISH_LENGTH && n_tok == 2, "the time cap: finish %d after %d tokens, want length after 2", f, n_tok);
            ended = true;
        } else {
            lv_srv_step(srv);
        }
    }
    CHECK(ended, "the capped request did not end");
    lv_srv_req_release(capped);
    lv_srv_free(srv);
    lv_context_free(ctx);
}

TEST(server_queue_timeout_and_drain) {
    lv_model *m = tiny();
    REQUIRE(m, "model: %s", lv_last_error());
    lv_context *ctx = new_ctx(m, 512, 1, 64);
    REQUIRE(ctx, "ctx");
    lv_srv_params sp = lv_srv_default_params();
    sp.n_slots = 1;
    sp.n_batch = 64;
    sp.queue_timeout_s = 0.05;
    lv_srv *srv = NULL;
    REQUIRE(lv_srv_create(ctx, m, &sp, &srv) == LV_OK, "create: %s", lv_last_error());
    lv_token p[8] = {1, 10, 11, 12, 13, 14, 15, 16};
    lv_srv_req_params rp = {.prompt = p, .n_prompt = 8, .n_predict = 40, .sampling = lv_sampler_default_params(), .ignore_eos = true};
    lv_srv_req *a = NULL, *b = NULL;
    REQUIRE(lv_srv_submit(srv, &rp, &a) == LV_SRV_ACCEPTED && lv_srv_submit(srv, &rp, &b) == LV_SRV_ACCEPTED, "submit");
    CHECK(!lv_srv_req_wait_admitted(a, 0) && !lv_srv_req_wait_admitted(b, 0.01), "both wait before the first step");
    lv_srv_step(srv); /* a takes the only slot, b waits */
    CHECK(lv_srv_req_wait_admitted(a, 0) && !lv_srv_req_wait_admitted(b, 0), "a admitted, b still waiting");
    struct timespec ts = {0, 80 * 1000 * 1000};
    nanosleep(&ts, NULL);
    lv_srv_step(srv);
    /* b left the queue without a slot: the HTTP side answers it 503 (a stream included) */
    CHECK(lv_srv_req_wait_admitted(b, 0), "b timed out: no longer waiting");
    lv_srv_output o;
    lv_srv_req_poll(b, 0, 0, 0, &o);
    CHECK(o.finish == LV_SRV_FINISH_TIMEOUT && strstr(o.error, "queue") != NULL && o.slot < 0, "b: finish %d '%s' slot %d", o.finish,
          o.error, o.slot);
    lv_srv_output_clear(&o);
    lv_srv_req_poll(a, 0, 0, 0, &o);
    CHECK(o.finish == LV_SRV_FINISH_NONE && o.slot == 0, "a still runs in slot 0: finish %d slot %d", o.finish, o.slot);
    lv_srv_output_clear(&o);
    lv_srv_stats st;
    lv_srv_get_stats(srv, &st);
    CHECK(st.rejected_timeout == 1 && st.waiting == 0, "timeouts %lld waiting %d", (long long)st.rejected_timeout, st.waiting);
    lv_srv_req_release(b);
    /* the engine thread: a drain lets a finish, refuses new requests */
    REQUIRE(lv_srv_start(srv) == LV_OK, "start");
    const int n_cancelled = lv_srv_drain(srv, 30);
    CHECK(n_cancelled == 0, "the drain cancelled %d", n_cancelled);
    lv_srv_req_poll(a, 0, 0, 0, &o);
    CHECK(o.finish == LV_SRV_FINISH_LENGTH && o.n_tokens == 40, "a after the drain: finish %d, %d tokens", o.finish, o.n_tokens);
    lv_srv_output_clear(&o);
    CHECK(lv_srv_submit(srv, &rp, &b) == LV_SRV_REFUSE_DRAINING && !b, "new requests are refused while draining");
    lv_srv_req_release(a);
    lv_srv_free(srv);
    lv_context_free(ctx);
}

/* the reference with penalties and logprobs: the sampler is given the prompt's last tokens and
 * each sampled one (as llama-server feeds its sampler), the logprobs come from the same logits */
static int32_t solo_generate_lp(lv_model *m, const lv_token *p, int32_t n, int32_t n_predict, lv_sampler_params sp, int32_t n_top, lv_token *out,
                                float *lp, lv_token *top_id, float *top_lp) {
    lv_context *ctx = new_ctx(m, 1024, 1, 256);
    lv_sampler *smp = NULL;
    lv_batch b = lv_batch_init(256);
    int32_t k = 0;
    const int32_t V = lv_model_n_vocab(m);
    if (sp.penalty_last_n < 0) sp.penalty_last_n = 1024; /* -1: the context */
    if (!ctx || lv_sampler_create(sp, V, &smp) != LV_OK) goto end;
    for (int32_t j = 0; j < n; j++) {
        b.token[j] = p[j];
        b.pos[j] = j;
        b.seq_id[j] = 0;
        b.logits[j] = j == n - 1;
        lv_sampler_accept(smp, p[j]);
    }
    b.n_tokens = n;
    if (lv_decode(ctx, &b) != LV_OK) goto end;
    for (; k < n_predict;) {
        const float *lg = lv_get_logits_ith(ctx, -1);
        const lv_token t = lv_sampler_sample(smp, lg);
        lv_sampler_accept(smp, t);
        lp[k] = lv_token_logprobs(lg, V, t, n_top, top_id + (size_t)k * n_top, top_lp + (size_t)k * n_top);
        out[k++] = t;
        if (lv_token_is_eog(m, t) || k == n_predict) break;
        b.n_tokens = 1;
        b.token[0] = t;
        b.pos[0] = n + k - 1;
        b.seq_id[0] = 0;
        b.logits[0] = 1;
        if (lv_decode(ctx, &b) != LV_OK) break;
    }
end:
    lv_batch_free(&b);
    lv_sampler_free(smp);
    lv_context_free(ctx);
    return k;
}

TEST(server_penalties_and_logprobs_match_a_solo_run) {
    lv_model *m = tiny();
    REQUIRE(m, "model: %s", lv_last_error());
    lv_test_rng r = {lv_test_seed()};
    lv_context *ctx = new_ctx(m, 1024, 4, 64);
    REQUIRE(ctx, "ctx");
    lv_srv_params sp = lv_srv_default_params();
    sp.n_slots = 4;
    sp.n_batch = 32;
    lv_srv *srv = NULL;
    REQUIRE(lv_srv_create(ctx, m, &sp, &srv) == LV_OK, "create: %s", lv_last_error());
    enum { NR = 6, NP = 12 };
    const int32_t len[NR] = {7, 30, 3, 50, 12, 20}, n_top[NR] = {5, 0, 20, 1, 3, 0};
    lv_token toks[NR][50];
    lv_srv_req *reqs[NR];
    lv_sampler_params smp[NR];
    for (int k = 0; k < NR; k++) {
        /* few distinct tokens: repeats for the penalties to see */
        for (int32_t j = 0; j < len[k]; j++) toks[k][j] = (lv_token)(3 + lv_test_rng_u64(&r) % 6);
        smp[k] = lv_sampler_default_params();
        smp[k].temp = k % 2 ? 0.8f : 0;
        smp[k].seed = 77 + (uint64_t)k;
        smp[k].penalty_last_n = k == 4 ? -1 : 4 + 9 * k;
        smp[k].penalty_repeat = k == 5 ? 1.0f : 1.3f;
        smp[k].penalty_freq = k % 3 == 0 ? 0.7f : -0.4f;
        smp[k].penalty_present = k % 3 == 1 ? 0.0f : 1.1f;
        lv_srv_req_params rp = {.prompt = toks[k], .n_prompt = len[k], .n_predict = NP, .sampling = smp[k], .ignore_eos = false,
                                .logprobs = k != 5, .n_top_logprobs = n_top[k]};
        REQUIRE(lv_srv_submit(srv, &rp, &reqs[k]) == LV_SRV_ACCEPTED, "submit %d: %s", k, lv_last_error());
    }
    REQUIRE(run_until_done(srv, reqs, NR), "the requests did not finish");
    int differs_from_plain = 0;
    for (int k = 0; k < NR; k++) {
        lv_srv_output o;
        REQUIRE(lv_srv_req_poll(reqs[k], 0, 0, 0, &o) == LV_OK, "poll");
        lv_token want[NP], top_id[NP * 20], plain[NP];
        float lp[NP], top_lp[NP * 20];
        const int32_t nw = solo_generate_lp(m, toks[k], len[k], NP, smp[k], n_top[k], want, lp, top_id, top_lp);
        CHECK(o.n_tokens == nw && memcmp(o.tokens, want, sizeof(lv_token) * (size_t)nw) == 0, "request %d: tokens differ from the solo run", k);
        if (k == 5) {
            CHECK(!o.logprobs && !o.top_ids && o.n_top == 0, "request %d: logprobs without asking", k);
        } else if (o.n_tokens == nw) {
            CHECK(o.logprobs && o.n_top == n_top[k] && memcmp(o.logprobs, lp, sizeof(float) * (size_t)nw) == 0, "request %d: logprobs differ", k);
            CHECK(n_top[k] == 0 || (memcmp(o.top_ids, top_id, sizeof(lv_token) * (size_t)(nw * n_top[k])) == 0 &&
                                    memcmp(o.top_logprobs, top_lp, sizeof(float) * (size_t)(nw * n_top[k])) == 0),
                  "request %d: top logprobs differ", k);
            for (int32_t i = 0; i < nw && n_top[k] > 0; i++)
                CHECK(o.logprobs[i] <= o.top_logprobs[(size_t)i * n_top[k]], "request %d token %d: above the best", k, i);
        }
        /* the penalties did something: the same request without them */
        lv_sampler_params off = smp[k];
        off.penalty_last_n = 0;
        const int32_t np = solo_generate(m, toks[k], len[k], NP, off, plain);
        differs_from_plain += np != nw || memcmp(plain, want, sizeof(lv_token) * (size_t)nw) != 0;
        lv_srv_output_clear(&o);
        lv_srv_req_release(reqs[k]);
    }
    CHECK(differs_from_plain >= 3, "the penalties changed only %d of %d answers", differs_from_plain, NR);
    /* out of range: refused at submission */
    lv_srv_req *bad = NULL;
    lv_srv_req_params rp = {.prompt = toks[0], .n_prompt = 3, .n_predict = 2, .sampling = smp[0], .logprobs = true, .n_top_logprobs = 21};
    CHECK(lv_srv_submit(srv, &rp, &bad) == LV_SRV_REFUSE_INVALID && !bad, "21 top logprobs accepted");
    rp.n_top_logprobs = 2;
    rp.sampling.penalty_last_n = -2;
    CHECK(lv_srv_submit(srv, &rp, &bad) == LV_SRV_REFUSE_INVALID && !bad, "last_n -2 accepted");
    rp.sampling.penalty_last_n = 8;
    rp.sampling.penalty_repeat = -1;
    CHECK(lv_srv_submit(srv, &rp, &bad) == LV_SRV_REFUSE_INVALID && !bad, "repeat -1 accepted");
    lv_srv_free(srv);
    lv_context_free(ctx);
}

/* prompts with embedding rows (images): each request gives the tokens of a one-request run over
 * the same rows, with steps of 16 tokens cutting through the rows; a prompt that differs from a
 * slot's cached one only in its image's rows reuses the text before the image and nothing of the
 * image; a count of rows that does not match the prompt is refused */
TEST(server_engine_embedding_rows) {
    lv_model *m = tiny();
    REQUIRE(m, "model: %s", lv_last_error());
    const int32_t V = lv_model_n_vocab(m), E = lv_model_n_embd(m);
    lv_test_rng r = {lv_test_seed()};
    lv_context *ctx = new_ctx(m, 1024, 2, 64);
    REQUIRE(ctx, "ctx");
    lv_srv_params sp = lv_srv_default_params();
    sp.n_slots = 2;
    sp.n_batch = 16;
    lv_srv *srv = NULL;
    REQUIRE(lv_srv_create(ctx, m, &sp, &srv) == LV_OK, "create: %s", lv_last_error());
    enum { N = 34, IMG0 = 10, NIMG = 12 };
    lv_token tok[N];
    random_prompt(&r, tok, N, V);
    for (int i = IMG0; i < IMG0 + NIMG; i++) tok[i] = LV_TOKEN_EMBD;
    float *img[2];
    for (int k = 0; k < 2; k++) {
        img[k] = malloc((size_t)NIMG * (size_t)E * sizeof(float));
        REQUIRE(img[k], "memory");
        for (int64_t i = 0; i < (int64_t)NIMG * E; i++) img[k][i] = (float)((double)(lv_test_rng_u64(&r) % 2001) / 1000.0 - 1.0);
    }
    lv_sampler_params smp = lv_sampler_default_params();
    smp.temp = 0;
    /* image 0, image 1 (same text: the slot of the first holds the text before the image), image 0 again */
    const int order[3] = {0, 1, 0};
    lv_token want[2][12];
    int32_t nw[2];
    for (int k = 0; k < 2; k++) nw[k] = solo_generate_e(m, tok, N, img[k], 12, smp, want[k]);
    CHECK(nw[0] != nw[1] || memcmp(want[0], want[1], sizeof(lv_token) * (size_t)nw[0]) != 0, "the two images give the same answer");
    for (int q = 0; q < 3; q++) {
        const int k = order[q];
        lv_srv_req_params rp = {.prompt = tok, .n_prompt = N, .embd = img[k], .n_embd_rows = NIMG, .n_predict = 12, .sampling = smp};
        lv_srv_req *req = NULL;
        REQUIRE(lv_srv_submit(srv, &rp, &req) == LV_SRV_ACCEPTED, "submit %d: %s", q, lv_last_error());
        REQUIRE(run_until_done(srv, &req, 1), "request %d did not finish", q);
        lv_srv_output o;
        lv_srv_req_poll(req, 0, 0, 0, &o);
        CHECK(o.n_tokens == nw[k] && memcmp(o.tokens, want[k], sizeof(lv_token) * (size_t)nw[k]) == 0, "request %d (image %d): differs from the one-request run",
              q, k);
        CHECK(q == 0 ? o.n_cached == 0 : o.n_cached == IMG0, "request %d: %d cached tokens, want %d (the text before the image)", q, o.n_cached,
              q == 0 ? 0 : IMG0);
        lv_srv_output_clear(&o);
        lv_srv_req_release(req);
    }
    /* rows that do not match the prompt's LV_TOKEN_EMBD entries */
    const int32_t bad_rows[3] = {NIMG - 1, NIMG + 1, NIMG};
    for (int c = 0; c < 3; c++) {
        lv_srv_req_params rp = {.prompt = tok, .n_prompt = N, .embd = c == 2 ? NULL : img[0], .n_embd_rows = bad_rows[c], .n_predict = 4, .sampling = smp};
        lv_srv_req *req = NULL;
        CHECK(lv_srv_submit(srv, &rp, &req) == LV_SRV_REFUSE_INVALID && !req, "case %d: rows %d accepted", c, bad_rows[c]);
    }
    free(img[0]), free(img[1]);
    lv_srv_free(srv);
    lv_context_free(ctx);
}

/* n choices sharing one prefill (share_prefill_of): the followers take a copy of the leader's
 * cache and its logits row, and each gives exactly the tokens of a one-request run with its seed;
 * the prompt is computed once. A follower whose leader is cancelled before its prompt is done, or
 * that gets a slot only after it, computes the prompt itself, with the same result. A leader of
 * another prompt is refused. */
TEST(server_engine_shared_prefill) {
    lv_model *m = tiny();
    REQUIRE(m, "model: %s", lv_last_error());
    const int32_t V = lv_model_n_vocab(m);
    lv_test_rng r = {lv_test_seed()};
    enum { N = 40, NC = 3 };
    lv_token tok[N];
    random_prompt(&r, tok, N, V);
    lv_sampler_params smp[NC];
    lv_token want[NC][10];
    int32_t nw[NC];
    for (int c = 0; c < NC; c++) {
        smp[c] = lv_sampler_default_params();
        smp[c].temp = 0.9f;
        smp[c].seed = 500 + (uint64_t)c;
        nw[c] = solo_generate(m, tok, N, 10, smp[c], want[c]);
    }
    /* case 0: all admitted at once; 1: the leader cancelled before any step; 2: two slots, the last waits */
    for (int cs = 0; cs < 3; cs++) {
        lv_context *ctx = new_ctx(m, 1024, 4, 64);
        REQUIRE(ctx, "ctx");
        lv_srv_params sp = lv_srv_default_params();
        sp.n_slots = cs == 2 ? 2 : 4;
        sp.n_batch = 32; /* the prompt takes two steps */
        lv_srv *srv = NULL;
        REQUIRE(lv_srv_create(ctx, m, &sp, &srv) == LV_OK, "create: %s", lv_last_error());
        lv_srv_req *reqs[NC] = {0};
        for (int c = 0; c < NC; c++) {
            lv_srv_req_params rp = {.prompt = tok, .n_prompt = N, .n_predict = 10, .sampling = smp[c], .share_prefill_of = c ? reqs[0] : NULL};
            REQUIRE(lv_srv_submit(srv, &rp, &reqs[c]) == LV_SRV_ACCEPTED, "case %d submit %d: %s", cs, c, lv_last_error());
        }
        if (cs == 1) lv_srv_req_cancel(reqs[0]);
        REQUIRE(run_until_done(srv, reqs, NC), "case %d: the requests did not finish", cs);
        for (int c = cs == 1 ? 1 : 0; c < NC; c++) {
            lv_srv_output o;
            lv_srv_req_poll(reqs[c], 0, 0, 0, &o);
            CHECK(o.n_tokens == nw[c] && memcmp(o.tokens, want[c], sizeof(lv_token) * (size_t)nw[c]) == 0, "case %d choice %d: differs from the one-request run",
                  cs, c);
            const bool shared = cs == 0 ? c > 0 : cs == 2 && c == 1;
            CHECK(!shared || o.n_cached == N, "case %d choice %d: %d prompt tokens taken from the leader, want %d", cs, c, o.n_cached, N);
            lv_srv_output_clear(&o);
        }
        lv_srv_stats st;
        lv_srv_get_stats(srv, &st);
        /* prompt tokens computed: once (case 0); by each follower (case 1); by the leader and the late one, which
         * may reuse a finished slot's cached prompt (case 2) */
        if (cs == 0) CHECK(st.prompt_tokens == N, "case 0: %lld prompt tokens computed, want %d", (long long)st.prompt_tokens, N);
        if (cs == 1) CHECK(st.prompt_tokens == 2 * N, "case 1: %lld prompt tokens computed, want %d", (long long)st.prompt_tokens, 2 * N);
        for (int c = 0; c < NC; c++) lv_srv_req_release(reqs[c]);
        lv_srv_free(srv);
        lv_context_free(ctx);
    }
    /* a leader of another prompt */
    lv_context *ctx = new_ctx(m, 1024, 2, 64);
    lv_srv_params sp = lv_srv_default_params();
    sp.n_slots = 2;
    sp.n_batch = 32;
    lv_srv *srv = NULL;
    REQUIRE(ctx && lv_srv_create(ctx, m, &sp, &srv) == LV_OK, "create: %s", lv_last_error());
    lv_srv_req *a = NULL, *b = NULL;
    lv_srv_req_params rp = {.prompt = tok, .n_prompt = N, .n_predict = 4, .sampling = smp[0]};
    REQUIRE(lv_srv_submit(srv, &rp, &a) == LV_SRV_ACCEPTED, "submit: %s", lv_last_error());
    rp.n_prompt = N - 1;
    rp.share_prefill_of = a;
    CHECK(lv_srv_submit(srv, &rp, &b) == LV_SRV_REFUSE_INVALID && !b, "a leader of another prompt was accepted");
    lv_srv_req_release(a);
    lv_srv_free(srv);
    lv_context_free(ctx);
}
