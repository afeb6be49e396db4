/*
 * context.c: contexts, batches and lv_decode: validation of a batch, the KV transaction around
 * it, splitting into micro-batches, and the outputs.
 */
#include "runtime/runtime.h"

#include "core/core.h"
#include "gguf/gguf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <string.h>

lv_context_params lv_context_default_params(void) {
    lv_context_params p;
    memset(&p, 0, sizeof(p));
    p.n_ctx = 4096;
    p.n_batch = 2048;
    p.n_ubatch = 512;
    p.n_seq_max = 1;
    p.kv_page_size = 64;
    p.kv_type = LV_KV_F16;
    p.kv_type_v = LV_KV_SAME;
    p.n_threads = 0;
    p.attention = lv_attention_default_params();
    return p;
}

/* -------------------------------------------------------------------------------------------
 * the attention plan: a KV policy per (layer, KV head)
 * ----------------------------------------------------------------------------------------- */

/* LongGen layer plan: NULL/"" all full; "longgen": full iff l % 3 == 1, else sink+window; or one
 * word per layer. kinds receives n_layer lv_attn_mask_kind values. */
static lv_status parse_layer_plan(const char *plan, int64_t n_layer, uint8_t *kinds) {
    memset(kinds, LV_MASK_CAUSAL, (size_t)n_layer);
    if (!plan || !plan[0] || strcmp(plan, "full") == 0) return LV_OK;
    if (strcmp(plan, "longgen") == 0) {
        for (int64_t l = 0; l < n_layer; l++) kinds[l] = l % 3 == 1 ? LV_MASK_CAUSAL : LV_MASK_SINK_WINDOW;
        return LV_OK;
    }
    int64_t l = 0;
    const char *p = plan;
    while (*p) {
        const char *e = p;
        while (*e && *e != ',') e++;
        const size_t n = (size_t)(e - p);
        uint8_t k;
        if (n == 4 && memcmp(p, "full", 4) == 0) k = LV_MASK_CAUSAL;
        else if (n == 2 && memcmp(p, "sw", 2) == 0) k = LV_MASK_SINK_WINDOW;
        else if (n == 2 && memcmp(p, "bs", 2) == 0) k = LV_MASK_BLOCK_STRIDED;
        else return lv_error(LV_ERR_INVALID_ARG, "layer plan: '%.*s' is not full, sw or bs (layer %lld)", (int)LV_MIN(n, 32), p, (long long)l);
        if (l >= n_layer) return lv_error(LV_ERR_INVALID_ARG, "layer plan names more than the model's %lld layers", (long long)n_layer);
        kinds[l++] = k;
        p = *e ? e + 1 : e;
    }
    if (l != n_layer) return lv_error(LV_ERR_INVALID_ARG, "layer plan names %lld layers, the model has %lld", (long long)l, (long long)n_layer);
    return LV_OK;
}

/* Model metadata (docs/long-context.md): longview.attention.layer_plan (string, as the flag) and
 * longview.attention.{sink,window,block_size,local_blocks,vert_stride} (integers) override the
 * defaults when the caller gives no plan of its own. */
static void plan_from_metadata(const lv_model *m, lv_attention_params *a, const char **plan) {
    const lv_gguf *g = m->gguf;
    int64_t i = lv_gguf_find_key(g, "longview.attention.layer_plan");
    if (i >= 0 && lv_gguf_kv_type(g, i) == LV_GGUF_STRING) {
        lv_gguf_str str = lv_gguf_get_str(g, i);
        static _Thread_local char buf[4096];
        snprintf(buf, sizeof(buf), "%.*s", (int)LV_MIN(str.len, sizeof(buf) - 1), str.ptr);
        *plan = buf;
    }
    struct { const char *key; int32_t *dst; } ints[] = {
        {"longview.attention.sink", &a->sink}, {"longview.attention.window", &a->window}, {"longview.attention.block_size", &a->block_size},
        {"longview.attention.local_blocks", &a->local_blocks}, {"longview.attention.vert_stride", &a->vert_stride},
    };
    for (size_t k = 0; k < LV_ARRAY_LEN(ints); k++) {
        int64_t v;
        i = lv_gguf_find_key(g, ints[k].key);
        if (i >= 0 && lv_gguf_get_i64(g, i, &v) && v >= 0 && v <= INT32_MAX) *ints[k].dst = (int32_t)v;
    }
}

static lv_status build_policies(lv_context *ctx) {
    const lv_hparams *hp = &ctx->model->hp;
    lv_attention_params a = ctx->p.attention;
    const int64_t L = hp->n_layer, H = hp->n_head_kv;
    lv_status st = LV_OK;
    const char *plan = a.layer_plan;
    if (!plan) plan_from_metadata(ctx->model, &a, &plan);
    ctx->p.attention = a;
    ctx->policies = lv_calloc((size_t)(L * H), sizeof(lv_kv_head_policy));
    ctx->retrieval = lv_calloc((size_t)(L * H), 1);
    uint8_t *kinds = lv_calloc((size_t)L, 1);
    if (!ctx->policies || !ctx->retrieval || !kinds) {
        lv_free(kinds);
        return LV_ERR_NOMEM;
    }
    if ((st = parse_layer_plan(plan, L, kinds)) != LV_OK) goto end;
    memset(ctx->retrieval, 1, (size_t)(L * H));
    if (a.heads) {
        if (lv_head_pattern_n_layer(a.heads) != L || lv_head_pattern_n_head_kv(a.heads) != H) {
            st = lv_error(LV_ERR_INVALID_ARG, "the head pattern has %d layers x %d KV heads, the model %lld x %lld",
                          lv_head_pattern_n_layer(a.heads), lv_head_pattern_n_head_kv(a.heads), (long long)L, (long long)H);
            goto end;
        }
        if (lv_head_pattern_binarize(a.heads, a.sparsity, a.pattern_seed, ctx->retrieval) < 0) {
            st = LV_ERR_NOMEM;
            goto end;
        }
    }
    if (a.select_groups != 0 && (a.select_groups < 2 || a.select_groups > 4096)) {
        st = lv_error(LV_ERR_INVALID_ARG, "select groups %d: 0 (off) or 2..4096 pages per group", a.select_groups);
        goto end;
    }
    if (a.sink < 0 || a.window < 1 || (a.select && (a.kv_budget < (int32_t)ctx->p.kv_page_size || a.kv_budget % (int32_t)ctx->p.kv_page_size != 0)) ||
        (a.select && (a.select_every < 1 || !(a.select_drift >= 0.0f && a.select_drift <= 1.0f)))) {
        st = lv_error(LV_ERR_INVALID_ARG, "attention parameters: sink %d >= 0, window %d >= 1, kv budget %d a positive multiple of the page size %u, "
                      "select every %d >= 1, select drift %g in [0, 1]", a.sink, a.window, a.kv_budget, ctx->p.kv_page_size, a.select_every,
                      (double)a.select_drift);
        goto end;
    }
    for (int64_t l = 0; l < L; l++) {
        if (ctx->model->layers[l].recurrent) { /* no attention, no KV: a state per sequence */
            memset(ctx->retrieval + l * H, 0, (size_t)H);
            continue;
        }
        for (int64_t h = 0; h < H; h++) {
            lv_kv_head_policy *pol = &ctx->policies[l * H + h];
            pol->sink = a.sink;
            pol->window = a.window;
            pol->block = a.block_size;
            pol->local_blocks = a.local_blocks;
            pol->vert_stride = a.vert_stride;
            if (lv_hp_layer_swa(hp, l)) {
                /* the model's own sliding-window layer (gemma3's local layers): the last n_swa
                 * positions, no sink, whatever the plan or head pattern says for it */
                pol->kind = LV_MASK_SINK_WINDOW;
                pol->sink = 0;
                pol->window = (int32_t)LV_MIN(hp->n_swa, INT32_MAX);
                ctx->retrieval[l * H + h] = 0;
            } else if (kinds[l] != LV_MASK_CAUSAL) {
                pol->kind = kinds[l];
                ctx->retrieval[l * H + h] = 0;
            } else if (!ctx->retrieval[l * H + h]) {
                pol->kind = LV_MASK_SINK_WINDOW; /* a DuoAttention streaming head */
            } else {
                pol->kind = LV_MASK_CAUSAL;
                pol->stats = a.select;
            }
        }
    }
end:
    lv_free(kinds);
    return st;
}

lv_status lv_context_create(lv_model *model, lv_context_params p, lv_context **out) {
    *out = NULL;
    if (!model || model->vocab_only) return lv_error(LV_ERR_INVALID_ARG, "a context needs a model with weights (this one is vocabulary-only)");
    const lv_hparams *hp = &model->hp;
    if (p.n_ctx == 0) p.n_ctx = (uint32_t)LV_MIN(hp->n_ctx_train, UINT32_MAX);
    if (p.n_ubatch == 0) p.n_ubatch = 512;
    if (p.n_batch == 0) p.n_batch = p.n_ubatch;
    if (p.n_ubatch > p.n_batch) p.n_ubatch = p.n_batch;
    if (p.n_seq_max == 0) p.n_seq_max = 1;
    if (p.kv_page_size == 0) p.kv_page_size = 64;
    if (p.kv_type_v == LV_KV_SAME) p.kv_type_v = p.kv_type;
    if (!strcmp(lv_kv_type_name(p.kv_type), "?") || !strcmp(lv_kv_type_name(p.kv_type_v), "?"))
        return lv_error(LV_ERR_INVALID_ARG, "unknown KV type (keys %d, values %d)", (int)p.kv_type, (int)p.kv_type_v);
    if ((lv_kv_quantized(p.kv_type) && hp->n_embd_head_k % LV_KV_QBLOCK) || (lv_kv_quantized(p.kv_type_v) && hp->n_embd_head_v % LV_KV_QBLOCK))
        return lv_error(LV_ERR_UNSUPPORTED, "a %s/%s KV cache needs head sizes that are multiples of %d (this model: keys %lld, values %lld)",
                        lv_kv_type_name(p.kv_type), lv_kv_type_name(p.kv_type_v), LV_KV_QBLOCK, (long long)hp->n_embd_head_k,
                        (long long)hp->n_embd_head_v);
    if (p.n_ctx > (1u << 30) || p.n_batch > (1u << 20) || p.n_seq_max > 4096 || p.kv_page_size > 65536)
        return lv_error(LV_ERR_INVALID_ARG, "context parameters out of range (n_ctx %u, n_batch %u, n_seq_max %u, page %u)", p.n_ctx,
                        p.n_batch, p.n_seq_max, p.kv_page_size);
    if (hp->n_embd_head_k > 1024) return lv_error(LV_ERR_UNSUPPORTED, "head size %lld > 1024 is not supported", (long long)hp->n_embd_head_k);

    lv_context *ctx = lv_calloc(1, sizeof(*ctx));
    if (!ctx) return LV_ERR_NOMEM;
    lv_status st = LV_ERR_NOMEM;
    ctx->model = model;
    ctx->p = p;
    if (p.threadpool) {
        ctx->tp = p.threadpool;
    } else {
        ctx->tp = lv_threadpool_create(p.n_threads);
        if (!ctx->tp) goto fail;
        ctx->own_tp = true;
    }

    if ((st = build_policies(ctx)) != LV_OK) goto fail;
    /* the cache holds the attention layers' streams (their policies in layer order) and the
     * recurrent layers' states */
    const int64_t H = hp->n_head_kv;
    lv_kv_head_policy *kv_pol = lv_calloc((size_t)(model->n_attn_layers * H), sizeof(*kv_pol));
    if (!kv_pol) goto fail;
    for (int64_t l = 0; l < hp->n_layer; l++)
        if (!model->layers[l].recurrent)
            memcpy(kv_pol + model->layers[l].kv_layer * H, ctx->policies + l * H, (size_t)H * sizeof(*kv_pol));
    lv_kv_params kp = {
        .n_layer = model->n_attn_layers, .n_head_kv = H, .head_dim_k = hp->n_embd_head_k, .head_dim_v = hp->n_embd_head_v,
        .page_size = p.kv_page_size, .n_ctx = p.n_ctx, .n_seq_max = p.n_seq_max, .n_batch = p.n_batch, .type = p.kv_type,
        .type_v = p.kv_type_v, .policies = kv_pol, .n_rs_layer = model->n_recr_layers, .rs_floats = model->n_recr_layers ? lv_hp_ssm_state_floats(hp) : 0,
        .stats_group = ctx->p.attention.select ? ctx->p.attention.select_groups : 0,
        .stats_group_exact = ctx->p.attention.select_groups_exact,
    };
    st = lv_kv_create(&kp, &ctx->kv);
    lv_free(kv_pol);
    if (st != LV_OK) goto fail;
    const lv_attention_params *a = &ctx->p.attention;
    const lv_fwd_params fp = {
        .n_ubatch = p.n_ubatch, .n_seq_max = p.n_seq_max, .kv_type = p.kv_type, .kv_type_v = p.kv_type_v, .select = a->select, .kv_budget = a->kv_budget,
        .page_size = (int32_t)p.kv_page_size, .select_every = a->select_every, .select_drift = a->select_drift,
        .select_shared = a->select_shared, .abort_fn = p.abort_fn, .abort_user = p.abort_user,
    };
    if ((st = lv_fwd_init(&ctx->fw, model, ctx->tp, ctx->kv, &fp)) != LV_OK) goto fail;
    st = LV_ERR_NOMEM;
    const size_t B = p.n_batch;
    ctx->slot = lv_calloc(B, sizeof(int64_t));
    ctx->n_vis = lv_calloc(B, sizeof(int64_t));
    ctx->out_row = lv_calloc(B, sizeof(int32_t));
    ctx->logit_row = lv_calloc(B, sizeof(int32_t));
    ctx->seq_count = lv_calloc(p.n_seq_max, sizeof(int64_t));
    ctx->seq_new = lv_calloc(p.n_seq_max, sizeof(int64_t));
    ctx->seq_last = lv_calloc(p.n_seq_max, sizeof(int32_t));
    ctx->seq_first = lv_calloc(p.n_seq_max, sizeof(int32_t));
    if (hp->mrope) {
        ctx->mrope_pos = lv_calloc(4 * B, sizeof(lv_pos));
        ctx->mrope_delta = lv_calloc(p.n_seq_max, sizeof(int32_t));
        ctx->mrope_delta_new = lv_calloc(p.n_seq_max, sizeof(int32_t));
        if (!ctx->mrope_pos || !ctx->mrope_delta || !ctx->mrope_delta_new) goto fail;
    }
    ctx->logits_size = B * (size_t)hp->n_vocab * sizeof(float);
    ctx->logits = lv_big_alloc(ctx->logits_size);
    if (!ctx->slot || !ctx->n_vis || !ctx->out_row || !ctx->logit_row || !ctx->seq_count || !ctx->seq_new || !ctx->seq_last || !ctx->seq_first || !ctx->logits)
        goto fail;
    ctx->last_out = -1;
    ctx->qcap_seq = -1;
    *out = ctx;
    return LV_OK;
fail:
    lv_context_free(ctx);
    return st;
}

void lv_context_free(lv_context *ctx) {
    if (!ctx) return;
    lv_free(ctx->policies);
    lv_free(ctx->retrieval);
    lv_fwd_free(&ctx->fw);
    lv_kv_free(ctx->kv);
    if (ctx->own_tp) lv_threadpool_free(ctx->tp);
    lv_free(ctx->slot);
    lv_free(ctx->n_vis);
    lv_free(ctx->out_row);
    lv_free(ctx->logit_row);
    lv_free(ctx->seq_count);
    lv_free(ctx->seq_new);
    lv_free(ctx->seq_last);
    lv_free(ctx->seq_first);
    lv_free(ctx->mrope_pos);
    lv_free(ctx->mrope_delta);
    lv_free(ctx->mrope_delta_new);
    lv_big_free(ctx->logits, ctx->logits_size);
    lv_free(ctx);
}

uint32_t lv_context_n_ctx(const lv_context *ctx) { return ctx->p.n_ctx; }
uint32_t lv_context_n_batch(const lv_context *ctx) { return ctx->p.n_batch; }

/* -------------------------------------------------------------------------------------------
 * batches
 * ----------------------------------------------------------------------------------------- */

lv_batch lv_batch_init_embd(int32_t n_tokens_max, int32_t n_embd) {
    lv_batch b = lv_batch_init(n_tokens_max);
    if (!b.token || n_embd <= 0) return b;
    b.embd = lv_mallocn((size_t)n_tokens_max * (size_t)n_embd, sizeof(float));
    b.pos_mrope = lv_calloc((size_t)n_tokens_max * 4, sizeof(lv_pos));
    if (!b.embd || !b.pos_mrope) {
        lv_batch_free(&b);
        memset(&b, 0, sizeof(b));
    }
    return b;
}

lv_batch lv_batch_init(int32_t n_tokens_max) {
    lv_batch b;
    memset(&b, 0, sizeof(b));
    if (n_tokens_max <= 0) return b;
    b.token = lv_calloc((size_t)n_tokens_max, sizeof(lv_token));
    b.pos = lv_calloc((size_t)n_tokens_max, sizeof(lv_pos));
    b.seq_id = lv_calloc((size_t)n_tokens_max, sizeof(lv_seq_id));
    b.logits = lv_calloc((size_t)n_tokens_max, sizeof(int8_t));
    if (!b.token || !b.pos || !b.seq_id || !b.logits) {
        lv_batch_free(&b);
        memset(&b, 0, sizeof(b));
    }
    return b;
}

void lv_batch_free(lv_batch *b) {
    if (!b) return;
    lv_free(b->token);
    lv_free(b->pos);
    lv_free(b->seq_id);
    lv_free(b->logits);
    lv_free(b->embd);
    lv_free(b->pos_mrope);
    b->embd = NULL;
    b->pos_mrope = NULL;
    b->token = NULL;
    b->pos = NULL;
    b->seq_id = NULL;
    b->logits = NULL;
    b->n_tokens = 0;
}

/* -------------------------------------------------------------------------------------------
 * decode
 * ----------------------------------------------------------------------------------------- */

static lv_status validate(lv_context *ctx, const lv_batch *b) {
    const int64_t n_vocab = ctx->model->hp.n_vocab;
    if (!b || b->n_tokens <= 0 || !b->token || !b->pos || !b->seq_id)
        return lv_error(LV_ERR_INVALID_ARG, "empty or incomplete batch");
    if ((uint32_t)b->n_tokens > ctx->p.n_batch)
        return lv_error(LV_ERR_INVALID_ARG, "batch of %d tokens is larger than the context's n_batch %u", b->n_tokens, ctx->p.n_batch);
    for (uint32_t s = 0; s < ctx->p.n_seq_max; s++) {
        ctx->seq_last[s] = lv_kv_seq_max_pos(ctx->kv, s);
        ctx->seq_new[s] = 0;
    }
    if (b->pos_mrope && !ctx->model->hp.mrope)
        return lv_error(LV_ERR_INVALID_ARG, "the batch carries M-RoPE positions but this %s model rotates by one position per token",
                        lv_arch_name(ctx->model->arch));
    const int64_t E = ctx->model->hp.n_embd;
    for (int32_t i = 0; i < b->n_tokens; i++) {
        if (b->token[i] == LV_TOKEN_EMBD) {
            if (!b->embd) return lv_error(LV_ERR_INVALID_ARG, "token %d of the batch is an embedding row (LV_TOKEN_EMBD) but the batch has no embd", i);
            for (int64_t e = 0; e < E; e++)
                if (!isfinite(b->embd[(int64_t)i * E + e]))
                    return lv_error(LV_ERR_INVALID_ARG, "embedding row %d of the batch has a non-finite value at %lld", i, (long long)e);
        } else if (b->token[i] < 0 || b->token[i] >= n_vocab) {
            return lv_error(LV_ERR_INVALID_ARG, "token %d of the batch has id %d, outside the vocabulary [0, %lld)", i, b->token[i],
                            (long long)n_vocab);
        }
        if (b->pos_mrope)
            for (int r = 0; r < 4; r++)
                if (b->pos_mrope[(int64_t)r * b->n_tokens + i] < 0)
                    return lv_error(LV_ERR_INVALID_ARG, "token %d of the batch has a negative M-RoPE position", i);
        const lv_seq_id s = b->seq_id[i];
        if (s < 0 || (uint32_t)s >= ctx->p.n_seq_max)
            return lv_error(LV_ERR_INVALID_ARG, "token %d of the batch has sequence id %d, outside [0, %u)", i, s, ctx->p.n_seq_max);
        if (b->pos[i] < 0) return lv_error(LV_ERR_INVALID_ARG, "token %d of the batch has negative position %d", i, b->pos[i]);
        if (b->pos[i] <= ctx->seq_last[s])
            return lv_error(LV_ERR_INVALID_ARG,
                            "token %d of the batch has position %d in sequence %d, but the sequence already reaches position %d "
                            "(positions must increase; remove tokens with lv_kv_seq_rm first)",
                            i, b->pos[i], s, ctx->seq_last[s]);
        if (!ctx->seq_new[s]) ctx->seq_first[s] = b->pos[i];
        ctx->seq_last[s] = b->pos[i];
        ctx->seq_new[s]++;
    }
    return LV_OK;
}

/* The batch's M-RoPE rows: the caller's, or (t, h, w, e) all pos + delta, with the sequence's rotary offset delta; and each sequence's offset after the batch: its
 * largest rotary position so far minus its last cache position (so that the next text token, at
 * the next cache position, takes the next rotary position, as HF's rope_deltas). Called after
 * validate (seq_last: each sequence's last position with the batch). */
static void fill_mrope(lv_context *ctx, const lv_batch *b) {
    const int64_t n = b->n_tokens;
    int32_t *m = ctx->mrope_delta_new; /* first the running maximum per sequence */
    for (uint32_t s = 0; s < ctx->p.n_seq_max; s++) m[s] = INT32_MIN;
    for (int64_t i = 0; i < n; i++) {
        const lv_seq_id s = b->seq_id[i];
        if (m[s] == INT32_MIN) {
            const int32_t prev = lv_kv_seq_max_pos(ctx->kv, s);
            m[s] = prev >= 0 ? prev + ctx->mrope_delta[s] : -1;
        }
        lv_pos *r = ctx->mrope_pos;
        if (b->pos_mrope) {
            for (int k = 0; k < 4; k++) r[k * n + i] = b->pos_mrope[k * n + i];
        } else {
            r[i] = r[n + i] = r[2 * n + i] = r[3 * n + i] = b->pos[i] + ctx->mrope_delta[s]; /* all four, as llama.cpp's batch allocator */
        }
        m[s] = LV_MAX(m[s], LV_MAX(r[i], LV_MAX(r[n + i], r[2 * n + i])));
    }
    for (uint32_t s = 0; s < ctx->p.n_seq_max; s++) m[s] = m[s] == INT32_MIN ? ctx->mrope_delta[s] : m[s] - ctx->seq_last[s];
}

lv_status lv_decode(lv_context *ctx, const lv_batch *b) {
    ctx->n_batch_last = 0; /* no outputs unless this call succeeds */
    ctx->last_out = -1;
    ctx->qcap_seq = -1;
    lv_status st = validate(ctx, b);
    if (st != LV_OK) return st;
    if ((st = lv_kv_reserve_pos(ctx->kv, ctx->seq_new, ctx->seq_first, ctx->seq_last)) != LV_OK) return st;
    if (ctx->mrope_pos) fill_mrope(ctx, b);

    /* slots and output rows for the whole batch */
    /* a prefill (several tokens of one sequence in a step) resets that sequence's page selections */
    for (uint32_t s = 0; s < ctx->p.n_seq_max; s++)
        if (ctx->seq_new[s] > 1) lv_fwd_forget_selections(&ctx->fw, s);
    /* slot[i]: the index of token i among the tokens its sequence appends in this step */
    for (uint32_t s = 0; s < ctx->p.n_seq_max; s++) ctx->seq_count[s] = 0;
    int32_t n_out = 0;
    for (int32_t i = 0; i < b->n_tokens; i++) {
        ctx->slot[i] = ctx->seq_count[b->seq_id[i]]++;
        const bool want = b->logits ? b->logits[i] != 0 : i == b->n_tokens - 1;
        ctx->out_row[i] = want ? n_out++ : -1;
    }
    /* micro-batches; n_vis[i]: how many of its sequence's new tokens are written when token i's
     * micro-batch attends (its own and the earlier ones; masking by position does the rest) */
    for (uint32_t s = 0; s < ctx->p.n_seq_max; s++) ctx->seq_count[s] = 0;
    const int64_t U = ctx->p.n_ubatch;
    for (int64_t i0 = 0; i0 < b->n_tokens; i0 += U) {
        const int64_t T = LV_MIN(U, b->n_tokens - i0);
        /* the stream length each token sees: its sequence's tokens up to the end of this micro-batch */
        for (int64_t i = i0; i < i0 + T; i++) ctx->seq_count[b->seq_id[i]]++;
        int64_t n_out_ub = 0;
        for (int64_t i = i0; i < i0 + T; i++) {
            ctx->n_vis[i] = ctx->seq_count[b->seq_id[i]];
            n_out_ub += ctx->out_row[i] >= 0;
        }
        lv_ubatch ub = {
            .T = T, .token = b->token + i0, .embd = b->embd ? b->embd + i0 * ctx->model->hp.n_embd : NULL, .pos = b->pos + i0,
            .pos_mrope = ctx->mrope_pos ? ctx->mrope_pos + i0 : NULL, .mrope_stride = b->n_tokens, .seq = b->seq_id + i0, .slot = ctx->slot + i0,
            .n_vis = ctx->n_vis + i0, .out_row = ctx->out_row + i0, .n_out = n_out_ub, .logits = ctx->logits,
        };
        ctx->fw.qcap_row = i0 + T == b->n_tokens ? T - 1 : -1; /* the batch's last token's queries */
        st = lv_forward_llama(&ctx->fw, &ub);
        if (st != LV_OK) {
            lv_kv_rollback(ctx->kv);
            return st;
        }
    }
    lv_kv_commit(ctx->kv);
    if (ctx->mrope_delta) memcpy(ctx->mrope_delta, ctx->mrope_delta_new, ctx->p.n_seq_max * sizeof(int32_t));
    ctx->n_batch_last = b->n_tokens;
    ctx->last_out = -1;
    ctx->qcap_seq = b->seq_id[b->n_tokens - 1];
    ctx->qcap_pos = b->pos[b->n_tokens - 1];
    for (int32_t i = 0; i < b->n_tokens; i++) {
        ctx->logit_row[i] = ctx->out_row[i];
        if (ctx->out_row[i] >= 0) ctx->last_out = i;
    }
    return LV_OK;
}

lv_status lv_context_fill_synthetic(lv_context *ctx, lv_seq_id seq, int32_t n_tokens, uint64_t seed) {
    if (!ctx || seq < 0 || (uint32_t)seq >= ctx->p.n_seq_max || n_tokens < 0)
        return lv_error(LV_ERR_INVALID_ARG, "fill: bad sequence %d or token count %d", seq, n_tokens);
    const lv_hparams *hp = &ctx->model->hp;
    const int64_t Hk = hp->n_head_kv, Dk = hp->n_embd_head_k, Dv = hp->n_embd_head_v;
    float *k = ctx->fw.k, *v = ctx->fw.v; /* the forward pass's (n_ubatch, Hk * D) scratch: one token's keys and values fit */
    uint64_t r = seed * 0x9e3779b97f4a7c15ull + 1;
    for (int32_t done = 0; done < n_tokens;) {
        for (uint32_t s = 0; s < ctx->p.n_seq_max; s++) {
            ctx->seq_last[s] = lv_kv_seq_max_pos(ctx->kv, s);
            ctx->seq_new[s] = 0;
        }
        const int32_t n = (int32_t)LV_MIN((int64_t)ctx->p.n_batch, (int64_t)(n_tokens - done));
        const int32_t first = ctx->seq_last[seq] + 1;
        ctx->seq_new[seq] = n;
        ctx->seq_first[seq] = first;
        ctx->seq_last[seq] = first + n - 1;
        lv_status st = lv_kv_reserve_pos(ctx->kv, ctx->seq_new, ctx->seq_first, ctx->seq_last);
        if (st != LV_OK) return st;
        lv_fwd_forget_selections(&ctx->fw, seq);
        /* recurrent layers: a zero state (its cost per step does not depend on its values) */
        for (int64_t rl = 0; rl < ctx->model->n_recr_layers; rl++) {
            const float *src;
            float *dst;
            lv_kv_state(ctx->kv, seq, rl, &src, &dst);
            memset(dst, 0, (size_t)lv_hp_ssm_state_floats(hp) * sizeof(float));
        }
        for (int32_t j = 0; j < n; j++)
            for (int64_t il = 0; il < ctx->model->n_attn_layers; il++) {
                /* xorshift values in [-1, 1): keys of the size post-RoPE keys have */
                for (int64_t e = 0; e < Hk * LV_MAX(Dk, Dv); e++) {
                    r ^= r << 13, r ^= r >> 7, r ^= r << 17;
                    const float x = (float)(r >> 40) / (float)(1ull << 23) - 1.0f;
                    if (e < Hk * Dk) k[e] = 2.0f * x;
                    if (e < Hk * Dv) v[e] = x;
                }
                for (int64_t h = 0; h < Hk; h++) lv_kv_write(ctx->kv, seq, il, h, j, k + h * Dk, v + h * Dv, first + j);
            }
        lv_kv_commit(ctx->kv);
        done += n;
    }
    return LV_OK;
}

const float *lv_get_logits_ith(lv_context *ctx, int32_t i) {
    if (i == -1) i = ctx->last_out;
    if (i < 0 || i >= ctx->n_batch_last || ctx->logit_row[i] < 0) return NULL;
    return ctx->logits + (size_t)ctx->logit_row[i] * (size_t)ctx->model->hp.n_vocab;
}

/* -------------------------------------------------------------------------------------------
 * KV queries
 * ----------------------------------------------------------------------------------------- */

lv_status lv_kv_seq_rm(lv_context *ctx, lv_seq_id seq, lv_pos p0, lv_pos p1) {
    if (seq >= 0 && (uint32_t)seq >= ctx->p.n_seq_max) return lv_error(LV_ERR_INVALID_ARG, "sequence id %d out of range", seq);
    if (p0 < 0) p0 = 0;
    for (uint32_t s = 0; s < ctx->p.n_seq_max; s++) {
        if (seq >= 0 && (lv_seq_id)s != seq) continue;
        if (p1 >= 0 && p1 <= lv_kv_seq_max_pos(ctx->kv, s) && p0 < p1)
            return lv_error(LV_ERR_UNSUPPORTED, "lv_kv_seq_rm: only removing a suffix is supported ([%d, %d) leaves position %d)", p0, p1,
                            lv_kv_seq_max_pos(ctx->kv, s));
        lv_status st = lv_kv_seq_truncate(ctx->kv, s, p0);
        if (st != LV_OK) return st;
        if (ctx->mrope_delta && lv_kv_seq_len(ctx->kv, s) == 0) ctx->mrope_delta[s] = 0;
    }
    return LV_OK;
}

lv_status lv_kv_seq_prune_keys(lv_context *ctx, lv_seq_id seq, int64_t n_last, const uint8_t *prunable, double keep, int64_t *n_pruned) {
    if (n_pruned) *n_pruned = 0;
    if (!ctx || seq < 0 || (uint32_t)seq >= ctx->p.n_seq_max) return lv_error(LV_ERR_INVALID_ARG, "lv_kv_seq_prune_keys: sequence id %d out of range", seq);
    if (!(keep > 0.0 && keep <= 1.0)) return lv_error(LV_ERR_INVALID_ARG, "lv_kv_seq_prune_keys: keep %g is not in (0, 1]", keep);
    if (n_last < 0) return lv_error(LV_ERR_INVALID_ARG, "lv_kv_seq_prune_keys: %lld tokens", (long long)n_last);
    int64_t n = 0;
    for (int64_t i = 0; i < n_last; i++) n += prunable ? prunable[i] != 0 : 1;
    const int64_t k = (int64_t)floor((double)n * keep); /* the reference's int(n * top_p) */
    int64_t np = 0;
    lv_status st = lv_kv_seq_prune_tail(ctx->kv, seq, n_last, prunable, k, &np);
    if (st != LV_OK) return st;
    if (np > 0) lv_fwd_forget_selections(&ctx->fw, seq); /* LServe's selected page indices no longer hold */
    if (n_pruned) *n_pruned = np;
    return LV_OK;
}

typedef struct carrier_score {
    double p;
    int64_t i;
} carrier_score;

static int cmp_carrier_score(const void *a, const void *b) {
    const carrier_score *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1; /* the highest attention first; ties: the earlier token */
    return (x->i > y->i) - (x->i < y->i);
}

lv_status lv_kv_seq_carrier_keep(lv_context *ctx, lv_seq_id seq, int64_t n_last, const uint8_t *visual, int32_t k_keep, int32_t select_layer,
                                 int64_t *n_dropped) {
    if (n_dropped) *n_dropped = 0;
    if (!ctx || seq < 0 || (uint32_t)seq >= ctx->p.n_seq_max)
        return lv_error(LV_ERR_INVALID_ARG, "lv_kv_seq_carrier_keep: sequence id %d out of range", seq);
    if (n_last < 0 || k_keep < 0 || (n_last > 0 && !visual))
        return lv_error(LV_ERR_INVALID_ARG, "lv_kv_seq_carrier_keep: %lld tokens, %d kept (both >= 0), and the visual rows", (long long)n_last, k_keep);
    const lv_hparams *hp = &ctx->model->hp;
    const int64_t Lk = ctx->model->n_attn_layers, Hk = hp->n_head_kv, Hq = hp->n_head, G = Hq / Hk, Dk = hp->n_embd_head_k;
    if (ctx->model->n_recr_layers > 0)
        return lv_error(LV_ERR_UNSUPPORTED, "VideoScan (carrier tokens) with recurrent layers: their state of the dropped tokens cannot be removed");
    if (select_layer >= 0) {
        bool full = false;
        for (int64_t h = 0; h < Hk && select_layer < Lk; h++) full |= lv_kv_policy(ctx->kv, select_layer, h)->kind == LV_MASK_CAUSAL;
        if (!full)
            return lv_error(LV_ERR_INVALID_ARG, "VideoScan: the selecting layer %d %s", select_layer,
                            select_layer < Lk ? "has no full-attention head to rank the visual rows by" : "is not a layer of the model");
    }
    if (n_last == 0) return LV_OK;
    if (Dk > 1024) return lv_error(LV_ERR_UNSUPPORTED, "VideoScan: key width %lld above 1024", (long long)Dk);
    if (n_last > lv_kv_seq_len(ctx->kv, seq) || ctx->qcap_seq != seq || ctx->qcap_pos != lv_kv_seq_max_pos(ctx->kv, seq))
        return lv_error(LV_ERR_INVALID_ARG, "lv_kv_seq_carrier_keep: the carrier must be the last token of sequence %d and of the last lv_decode",
                        seq);
    int64_t n_stored_max = 0, n_vis = 0;
    for (int64_t l = 0; l < Lk; l++)
        for (int64_t h = 0; h < Hk; h++)
            if (lv_kv_policy(ctx->kv, l, h)->kind == LV_MASK_CAUSAL) n_stored_max = LV_MAX(n_stored_max, lv_kv_stream_n_stored(ctx->kv, seq, l, h));
    for (int64_t i = 0; i < n_last; i++) n_vis += visual[i] != 0;
    const double scale = hp->attn_scale_on_q ? 1.0 : (double)hp->attn_scale;
    double *lg = lv_mallocn((size_t)(G * n_stored_max), sizeof(double)), *acc = lv_mallocn((size_t)n_last, sizeof(double));
    carrier_score *cs = lv_mallocn((size_t)LV_MAX(n_vis, 1), sizeof(carrier_score));
    uint8_t *keep = lv_mallocn((size_t)(Lk * n_last), 1);
    lv_status st = LV_OK;
    if (!lg || !acc || !cs || !keep) {
        st = LV_ERR_NOMEM;
        goto done;
    }
    float key[1024];
    for (int64_t l = 0; l < Lk; l++) {
        if (select_layer >= 0 && l != select_layer) continue;
        /* the carrier's attention over everything its query saw (the whole stream: it is the last
         * token), softmax per query head, averaged over the full-attention heads (the ones whose
         * cache this prunes; streaming and block-strided heads keep their own rule), at the last
         * n_last tokens */
        for (int64_t i = 0; i < n_last; i++) acc[i] = 0;
        const float *q = ctx->fw.qcap + l * Hq * Dk;
        for (int64_t h = 0; h < Hk; h++) {
            if (lv_kv_policy(ctx->kv, l, h)->kind != LV_MASK_CAUSAL) continue;
            const int64_t n = lv_kv_stream_n_stored(ctx->kv, seq, l, h);
            for (int64_t j = 0; j < n; j++) {
                lv_kv_load_key(ctx->kv, seq, l, h, j, key);
                for (int64_t g = 0; g < G; g++) {
                    const float *qh = q + (h * G + g) * Dk;
                    double s = 0;
                    for (int64_t d = 0; d < Dk; d++) s += (double)qh[d] * key[d];
                    lg[g * n + j] = s * scale;
                }
            }
            for (int64_t g = 0; g < G; g++) {
                double mx = -INFINITY, den = 0;
                for (int64_t j = 0; j < n; j++) mx = LV_MAX(mx, lg[g * n + j]);
                for (int64_t j = 0; j < n; j++) den += exp(lg[g * n + j] - mx);
                for (int64_t i = 0; i < n_last; i++) acc[i] += exp(lg[g * n + n - n_last + i] - mx) / den / (double)Hq;
            }
        }
        int64_t m = 0;
        for (int64_t i = 0; i < n_last; i++)
            if (visual[i]) cs[m++] = (carrier_score){acc[i], i};
        qsort(cs, (size_t)m, sizeof(carrier_score), cmp_carrier_score);
        uint8_t *kl = keep + l * n_last;
        for (int64_t i = 0; i < n_last; i++) kl[i] = !visual[i];
        for (int64_t j = 0; j < LV_MIN((int64_t)k_keep, m); j++) kl[cs[j].i] = 1;
    }
    if (select_layer >= 0) /* the reference's kv_select_layer: that layer's choice in every layer */
        for (int64_t l = 0; l < Lk; l++)
            if (l != select_layer) memcpy(keep + l * n_last, keep + (int64_t)select_layer * n_last, (size_t)n_last);
    int64_t nd = 0;
    st = lv_kv_seq_prune_mask(ctx->kv, seq, n_last, keep, &nd);
    if (st == LV_OK && nd > 0) lv_fwd_forget_selections(&ctx->fw, seq);
    if (st == LV_OK && n_dropped) *n_dropped = nd;
done:
    lv_free(lg);
    lv_free(acc);
    lv_free(cs);
    lv_free(keep);
    return st;
}

lv_status lv_kv_seq_drop_pruned(lv_context *ctx, lv_seq_id seq, lv_pos p0, lv_pos p1, int64_t *n_dropped) {
    if (n_dropped) *n_dropped = 0;
    if (!ctx || seq < 0 || (uint32_t)seq >= ctx->p.n_seq_max)
        return lv_error(LV_ERR_INVALID_ARG, "lv_kv_seq_drop_pruned: sequence id %d out of range", seq);
    lv_status st = lv_kv_seq_drop_range(ctx->kv, seq, p0, p1, n_dropped);
    if (st == LV_OK) lv_fwd_forget_selections(&ctx->fw, seq);
    return st;
}

lv_status lv_kv_seq_cp(lv_context *ctx, lv_seq_id src, lv_seq_id dst) {
    if (!ctx || src < 0 || dst < 0 || (uint32_t)src >= ctx->p.n_seq_max || (uint32_t)dst >= ctx->p.n_seq_max)
        return lv_error(LV_ERR_INVALID_ARG, "lv_kv_seq_cp: sequence ids %d -> %d out of range", src, dst);
    lv_status st = lv_kv_seq_copy(ctx->kv, src, dst);
    if (st != LV_OK) return st;
    lv_fwd_forget_selections(&ctx->fw, dst); /* LServe: dst chooses its own pages */
    if (ctx->mrope_delta) ctx->mrope_delta[dst] = ctx->mrope_delta[src];
    return LV_OK;
}

const lv_model *lv_context_model(const lv_context *ctx) { return ctx->model; }
lv_threadpool *lv_context_threadpool(lv_context *ctx) { return ctx->tp; }

int32_t lv_kv_seq_rope_offset(const lv_context *ctx, lv_seq_id seq) {
    if (!ctx || seq < 0 || (uint32_t)seq >= ctx->p.n_seq_max || !ctx->mrope_delta) return 0;
    return ctx->mrope_delta[seq];
}

lv_status lv_kv_seq_set_rope_offset(lv_context *ctx, lv_seq_id seq, int32_t offset) {
    if (!ctx || seq < 0 || (uint32_t)seq >= ctx->p.n_seq_max) return lv_error(LV_ERR_INVALID_ARG, "sequence id %d out of range", seq);
    if (!ctx->mrope_delta) {
        if (offset != 0) return lv_error(LV_ERR_INVALID_ARG, "the model has no M-RoPE: its rotary offset is always 0");
        return LV_OK;
    }
    ctx->mrope_delta[seq] = offset;
    return LV_OK;
}

int64_t lv_kv_seq_n_tokens(const lv_context *ctx, lv_seq_id seq) {
    if (seq < 0 || (uint32_t)seq >= ctx->p.n_seq_max) return -1;
    return lv_kv_seq_len(ctx->kv, seq);
}

int64_t lv_kv_used_bytes(const lv_context *ctx) { return lv_kv_used_bytes_(ctx->kv); }
int64_t lv_kv_capacity_bytes(const lv_context *ctx) { return lv_kv_capacity_bytes_(ctx->kv); }

/* -------------------------------------------------------------------------------------------
 * describing the plan
 * ----------------------------------------------------------------------------------------- */

int64_t lv_context_describe_plan(const lv_context *ctx, char *buf, size_t buf_size) {
    const lv_hparams *hp = &ctx->model->hp;
    const int64_t L = hp->n_layer, H = hp->n_head_kv;
    /* one token of one (layer, KV head), quantized blocks' scales included */
    const int64_t tok_bytes = lv_kv_row_bytes(ctx->p.kv_type, hp->n_embd_head_k) + lv_kv_row_bytes(ctx->p.kv_type_v, hp->n_embd_head_v);
    int64_t len = 0;
#define OUT(...)                                                                                    \
    do {                                                                                            \
        size_t avail = (size_t)len < buf_size ? buf_size - (size_t)len : 0;                        \
        int w = snprintf(avail ? buf + len : NULL, avail, __VA_ARGS__);                             \
        if (w > 0) len += w;                                                                        \
    } while (0)
    const lv_attention_params *a = &ctx->p.attention;
    int64_t n_full = 0, n_sw = 0, n_bs = 0, n_mw = 0; /* n_mw: the model's own sliding-window heads */
    for (int64_t i = 0; i < L * H; i++) {
        if (ctx->model->layers[i / H].recurrent) continue;
        const uint8_t k = ctx->policies[i].kind;
        const bool mw = lv_hp_layer_swa(hp, i / H);
        n_full += k == LV_MASK_CAUSAL;
        n_sw += k == LV_MASK_SINK_WINDOW && !mw;
        n_mw += mw;
        n_bs += k == LV_MASK_BLOCK_STRIDED;
    }
    OUT("attention plan: %lld layers x %lld KV heads: %lld full (retrieval), %lld sink+window, %lld block-strided", (long long)L,
        (long long)H, (long long)n_full, (long long)n_sw, (long long)n_bs);
    if (n_mw) OUT(", %lld sliding-window (the model's)", (long long)n_mw);
    OUT("%s\n", a->select ? "; LServe page selection at decode" : "");
    if (n_mw) OUT("  the model's sliding-window layers keep the last %lld positions, no sink\n", (long long)hp->n_swa);
    const lv_model *m = ctx->model;
    if (m->n_recr_layers)
        OUT("  %lld recurrent (gated delta-net) layers keep no KV: a state of %lld bytes per sequence (f32), whatever its length; "
            "the plan applies to the %lld attention layers\n", (long long)m->n_recr_layers, (long long)lv_kv_state_bytes_per_seq(ctx->kv),
            (long long)m->n_attn_layers);
    if (n_sw) OUT("  sink+window heads keep %d sink + %d recent tokens (Lambda mask in prefill and decode)\n", a->sink, a->window);
    if (n_bs) OUT("  block-strided layers: block %d, local blocks %d, vertical stride %d\n", a->block_size, a->local_blocks, a->vert_stride);
    if (a->select)
        OUT("  selection: %d pages of %u tokens (budget %d) per query head, recomputed every %d steps or when a query's cosine with the "
            "selecting one < %g%s\n", ctx->fw.sel_k, ctx->p.kv_page_size, a->kv_budget, a->select_every, (double)a->select_drift,
            a->select_shared ? "; one selection per KV head (max over its query heads)" : "");
    if (a->select && a->select_groups && a->select_groups_exact && !a->select_shared)
        OUT("  two-level selection: groups of %d pages scored first, each query head expands groups by their bound until no other page "
            "can be chosen (exhaustive selection's pages)\n", a->select_groups);
    else if (a->select && a->select_groups)
        OUT("  two-level selection: groups of %d pages scored first, each query head keeps its best %d groups and scores their pages\n",
            a->select_groups, (int)lv_kv_groups_kept(ctx->fw.sel_k, a->select_groups));
    for (int64_t l = 0; l < L; l++) {
        OUT("  layer %3lld: ", (long long)l);
        if (m->layers[l].recurrent) {
            OUT("recurrent (state)\n");
            continue;
        }
        int64_t r = 0;
        for (int64_t h = 0; h < H; h++) {
            const uint8_t k = ctx->policies[l * H + h].kind;
            OUT("%c", lv_hp_layer_swa(hp, l) ? 'w' : k == LV_MASK_CAUSAL ? 'R' : k == LV_MASK_SINK_WINDOW ? 's' : 'b');
            r += k == LV_MASK_CAUSAL;
        }
        OUT("  (%lld/%lld full)\n", (long long)r, (long long)H);
    }
    const int64_t sw_tokens = a->sink + a->window;
    OUT("KV bytes per token (%s keys, %s values): dense %lld; this plan %lld per token for the full heads", lv_kv_type_name(ctx->p.kv_type),
        lv_kv_type_name(ctx->p.kv_type_v), (long long)(m->n_attn_layers * H * tok_bytes), (long long)(n_full * tok_bytes));
    if (n_sw) OUT(" + %lld bytes constant for the sink+window heads (%lld tokens each)", (long long)(n_sw * tok_bytes * sw_tokens), (long long)sw_tokens);
    if (n_mw) OUT(" + %lld bytes constant for the model's sliding-window heads (%lld tokens each)", (long long)(n_mw * tok_bytes * hp->n_swa), (long long)hp->n_swa);
    if (n_bs) OUT(" + about %lld per token for the block-strided heads (1/%d of the blocks)", (long long)(n_bs * tok_bytes / LV_MAX(1, a->vert_stride)), a->vert_stride);
    if (m->n_recr_layers) OUT(" + %lld bytes of recurrent state per sequence", (long long)lv_kv_state_bytes_per_seq(ctx->kv));
    OUT("\n");
#undef OUT
    return len;
}

/* -------------------------------------------------------------------------------------------
 * prompts with images
 * ----------------------------------------------------------------------------------------- */

/* the M-RoPE positions of row i of chunk ch, whose first rotary position is rope: text (r, r, r, r);
 * image token i: (t0, t0 + i / nx, t0 + i % nx, 0), as llama.cpp */
static void mm_row_mrope(const lv_mm_chunk *ch, int32_t i, lv_pos rope, lv_pos r[4]) {
    const int32_t nx = LV_MAX(ch->nx, 1);
    r[0] = ch->tokens ? rope + i : rope;
    r[1] = ch->tokens ? rope + i : rope + i / nx;
    r[2] = ch->tokens ? rope + i : rope + i % nx;
    r[3] = ch->tokens ? rope + i : 0;
}

/* the rotary positions a chunk advances the prompt by */
static lv_pos mm_chunk_advance(const lv_mm_chunk *ch) { return ch->tokens ? ch->n_tokens : ch->n_pos; }

void lv_mm_prompt_mrope(const lv_mm_prompt *p, lv_pos rope0, lv_pos *out) {
    const int64_t N = p->n_rows;
    lv_pos rope = rope0, r[4];
    for (int32_t c = 0, row = 0; c < p->n_chunks; rope += mm_chunk_advance(&p->chunks[c]), c++)
        for (int32_t i = 0; i < p->chunks[c].n_tokens; i++, row++) {
            mm_row_mrope(&p->chunks[c], i, rope, r);
            for (int k = 0; k < 4; k++) out[k * N + row] = r[k];
        }
}

lv_status lv_mm_decode(lv_context *ctx, const lv_mm_prompt *p, lv_seq_id seq, lv_pos *n_past) {
    if (!ctx || !p || !n_past || seq < 0 || (uint32_t)seq >= ctx->p.n_seq_max)
        return lv_error(LV_ERR_INVALID_ARG, "lv_mm_decode: bad context, prompt or sequence id");
    const lv_hparams *hp = &ctx->model->hp;
    const int64_t E = hp->n_embd, B = ctx->p.n_batch;
    const bool mrope = hp->mrope;
    lv_batch b = lv_batch_init_embd((int32_t)B, (int32_t)E);
    lv_pos *stage = mrope ? lv_mallocn((size_t)(4 * B), sizeof(lv_pos)) : NULL; /* (t, h, w, e) per staged row */
    if (!b.token || (mrope && !stage)) {
        lv_batch_free(&b);
        lv_free(stage);
        return LV_ERR_NOMEM;
    }
    if (!mrope) {
        lv_free(b.pos_mrope);
        b.pos_mrope = NULL;
    }
    /* the rotary position of the next row: its cache position plus the sequence's offset */
    lv_pos rope = *n_past + (ctx->mrope_delta ? ctx->mrope_delta[seq] : 0);
    lv_status st = LV_OK;
    int32_t n = 0;
    for (int32_t c = 0; c < p->n_chunks && st == LV_OK; c++) {
        const lv_mm_chunk *ch = &p->chunks[c];
        for (int32_t i = 0; i < ch->n_tokens && st == LV_OK; i++) {
            b.token[n] = ch->tokens ? ch->tokens[i] : LV_TOKEN_EMBD;
            if (!ch->tokens) memcpy(b.embd + (int64_t)n * E, ch->embd + (int64_t)i * E, (size_t)E * sizeof(float));
            b.pos[n] = *n_past + n;
            b.seq_id[n] = seq;
            b.logits[n] = 0;
            if (mrope) mm_row_mrope(ch, i, rope, stage + 4 * n);
            n++;
            const bool last = c == p->n_chunks - 1 && i == ch->n_tokens - 1;
            if (n == B || last) {
                b.n_tokens = n;
                b.logits[n - 1] = last;
                if (mrope)
                    for (int32_t j = 0; j < n; j++)
                        for (int k = 0; k < 4; k++) b.pos_mrope[(int64_t)k * n + j] = stage[4 * j + k];
                st = lv_decode(ctx, &b);
                if (st == LV_OK) *n_past += n;
                n = 0;
            }
        }
        rope += mm_chunk_advance(ch);
    }
    lv_batch_free(&b);
    lv_free(stage);
    return st;
}
