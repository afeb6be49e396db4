/*
 * forward.c: the forward pass of the llama family (llama: Llama 2/3, Mistral, SmolLM; qwen2)
 * over one micro-batch of tokens, each with its own position and sequence:
 *
 *   x = embed(token)
 *   per layer:  h = rmsnorm(x) * attn_norm
 *               q, k, v = h Wq (+bq), h Wk (+bk), h Wv (+bv);  rope(q), rope(k) at pos
 *               append (k, v) to the sequence's KV streams
 *               x += attention(q, plan) Wo (+bo)
 *               h = rmsnorm(x) * ffn_norm;  x += (silu(h Wgate) * h Wup) Wdown
 *   logits = (rmsnorm(x) * output_norm) Woutput      (only for tokens that ask)
 *
 * The order of floating-point operations follows llama.cpp's graph (llm_build_llama /
 * llm_build_qwen2) so that logits agree closely: biases added after the product, the norm
 * weight applied after normalising, RoPE with the cached cos/sin of ggml.
 * Attention reads the plan of each (layer, KV head): the pages its stream keeps under its policy
 * (full, sink + window, block-strided) with the policy's mask, or at decode on a retrieval head
 * with LServe selection, the pages selected for each query head.
 */
#include "context.h"

#include "quant.h"

#include <math.h>
#include <string.h>

typedef struct fw_task {
    lv_context *ctx;
    const lv_ubatch *ub;
    const lv_layer *L;
    int64_t il;
    const float *norm_w;
    const float *src;
    float *dst;
} fw_task;

/* ---- embeddings ---- */
static void embed_range(void *arg, int64_t lo, int64_t hi, int ith) {
    fw_task *t = arg;
    const lv_model *m = t->ctx->model;
    const int64_t E = m->hp.n_embd;
    for (int64_t i = lo; i < hi; i++) {
        const uint8_t *row = (const uint8_t *)m->tok_embd.data + (int64_t)t->ub->token[i] * m->tok_embd.row_bytes;
        lv_to_float_row(m->tok_embd.type, row, t->ctx->x + i * E, E);
    }
}

/* ---- rmsnorm of rows ---- */
static void norm_range(void *arg, int64_t lo, int64_t hi, int ith) {
    fw_task *t = arg;
    const lv_hparams *hp = &t->ctx->model->hp;
    for (int64_t i = lo; i < hi; i++) lv_rmsnorm_ref(t->src + i * hp->n_embd, t->norm_w, t->dst + i * hp->n_embd, hp->n_embd, hp->norm_rms_eps);
}

/* ---- rope + KV append ---- */
static void rope_store_range(void *arg, int64_t lo, int64_t hi, int ith) {
    fw_task *t = arg;
    lv_context *ctx = t->ctx;
    const lv_hparams *hp = &ctx->model->hp;
    const int64_t Hq = hp->n_head, Hk = hp->n_head_kv, Dk = hp->n_embd_head_k, Dv = hp->n_embd_head_v;
    for (int64_t i = lo; i < hi; i++) {
        float *cache = ctx->rope_cache + i * hp->n_rot;
        lv_rope_cache(&ctx->rope, t->ub->pos[i], cache);
        float *q = ctx->q + i * Hq * Dk;
        float *k = ctx->k + i * Hk * Dk;
        const float *v = ctx->v + i * Hk * Dv;
        for (int64_t h = 0; h < Hq; h++) lv_rope_apply(&ctx->rope, cache, q + h * Dk);
        for (int64_t h = 0; h < Hk; h++) {
            lv_rope_apply(&ctx->rope, cache, k + h * Dk);
            lv_kv_write(ctx->kv, t->ub->seq[i], t->il, h, t->ub->slot[i], k + h * Dk, v + h * Dv, t->ub->pos[i]);
        }
    }
}

/* ---- attention: one job per (run of consecutive tokens of one sequence, KV head) ----
 * The G query heads of a KV head and up to LV_ATTN_RUN tokens read the KV stream together, so
 * each cached key and value is loaded once per job. Jobs are dealt round robin: their cost grows
 * with the token's position, so contiguous ranges would leave one thread the long ones. */
/* LServe at decode: the pages query head h reads in stream (seq, layer, g): a fresh selection
 * every select_every steps (timestep = tokens before this one), else the last one plus the
 * newest page. Returns the page count written to pages. */
static int decode_pages(lv_context *ctx, const fw_task *t, int64_t i, int64_t h, int64_t g, int ith, int32_t *pages) {
    const lv_hparams *hp = &ctx->model->hp;
    const int64_t seq = t->ub->seq[i];
    const int64_t idx = (seq * hp->n_layer + t->il) * hp->n_head + h;
    int32_t *cached = ctx->sel_pages + idx * (ctx->sel_k + 1);
    const int64_t timestep = lv_kv_seq_len(ctx->kv, seq) + t->ub->slot[i];
    const int64_t n_pages = lv_kv_n_pages(ctx->kv, seq, t->il, g, t->ub->n_vis[i]);
    if (ctx->sel_n[idx] == 0 || timestep % ctx->p.attention.select_every == 0) {
        void *scratch = (uint8_t *)ctx->sel_scratch + (size_t)ith * (size_t)ctx->max_spans * 8;
        const float *q = ctx->q + (i * hp->n_head + h) * hp->n_embd_head_k;
        ctx->sel_n[idx] = lv_kv_select_pages(ctx->kv, seq, t->il, g, t->ub->n_vis[i], q, ctx->sel_k, cached, scratch);
    }
    int n = ctx->sel_n[idx];
    memcpy(pages, cached, (size_t)n * sizeof(int32_t));
    /* the newest page is always read: pages appended since the selection replace nothing */
    if (pages[n - 1] != (int32_t)(n_pages - 1)) pages[n++] = (int32_t)(n_pages - 1);
    return n;
}

static void attn_worker(void *arg, int ith, int nth) {
    fw_task *t = arg;
    lv_context *ctx = t->ctx;
    const lv_hparams *hp = &ctx->model->hp;
    const int64_t Hq = hp->n_head, Hk = hp->n_head_kv, G = Hq / Hk, Dk = hp->n_embd_head_k, Dv = hp->n_embd_head_v;
    lv_attn_span *spans = ctx->att_spans + (int64_t)ith * ctx->max_spans;
    float *scratch = ctx->att_scratch + (int64_t)ith * ctx->att_scratch_floats;
    const int64_t n_items = ctx->n_runs * Hk;
    for (int64_t item = ith; item < n_items; item += nth) {
        const int64_t run = item / Hk, g = item % Hk;
        const int64_t i0 = ctx->run_start[run], nt = ctx->run_len[run];
        const int64_t last = i0 + nt - 1, seq = t->ub->seq[last];
        lv_attn_job job = {
            .q = ctx->q + (i0 * Hq + g * G) * Dk, .q_tok_stride = Hq * Dk, .q_head_stride = Dk,
            .out = ctx->attn + (i0 * Hq + g * G) * Dv, .out_tok_stride = Hq * Dv, .out_head_stride = Dv,
            .pos = t->ub->pos + i0, .n_tok = (int)nt, .n_head = (int)G,
            .scale = 1.0f / sqrtf((float)Dk), .kv_type = ctx->p.kv_type, .Dk = (int)Dk, .Dv = (int)Dv,
        };
        /* the tokens of a run see the stream up to its last token (masking handles the rest) */
        job.n_spans = lv_kv_spans(ctx->kv, seq, t->il, g, t->ub->n_vis[last], spans, &job.mask);
        job.spans = spans;
        const lv_kv_head_policy *pol = lv_kv_policy(ctx->kv, t->il, g);
        if (!(ctx->select && pol->stats && nt == 1 && job.n_spans > ctx->sel_k)) {
            lv_attn(&job, scratch);
            continue;
        }
        /* a decode step on a retrieval head: each query head reads its own selected pages. The
         * G selections (each sorted) are merged into one list of pages with a bit per head that
         * chose it, so a page several heads chose is loaded once; each head still attends over
         * exactly its own pages (the kernel skips the spans a head did not choose). */
        const int64_t stride = ctx->max_spans + 1;
        int32_t *sel = ctx->sel_tmp + (int64_t)ith * (G + 1) * stride, *uni = sel + G * stride;
        uint32_t *heads = ctx->sel_heads + (int64_t)ith * stride;
        int np[32], at[32];
        for (int64_t hh = 0; hh < G; hh++) {
            np[hh] = decode_pages(ctx, t, last, g * G + hh, g, ith, sel + hh * stride);
            at[hh] = 0;
        }
        int nu = 0;
        for (;;) {
            int32_t next = INT32_MAX;
            for (int64_t hh = 0; hh < G; hh++)
                if (at[hh] < np[hh] && sel[hh * stride + at[hh]] < next) next = sel[hh * stride + at[hh]];
            if (next == INT32_MAX) break;
            uint32_t bits = 0;
            for (int64_t hh = 0; hh < G; hh++)
                if (at[hh] < np[hh] && sel[hh * stride + at[hh]] == next) {
                    bits |= 1u << hh;
                    at[hh]++;
                }
            uni[nu] = next;
            heads[nu++] = bits;
        }
        job.n_spans = lv_kv_spans_of_pages(ctx->kv, seq, t->il, g, t->ub->n_vis[last], uni, nu, spans);
        job.span_heads = heads;
        lv_attn(&job, scratch);
    }
}

/* runs of consecutive tokens of the same sequence, at most LV_ATTN_RUN long */
static void find_runs(lv_context *ctx, const lv_ubatch *ub) {
    ctx->n_runs = 0;
    for (int64_t i = 0; i < ub->T; i++) {
        if (i > 0 && ub->seq[i] == ub->seq[i - 1] && ctx->run_len[ctx->n_runs - 1] < LV_ATTN_RUN) {
            ctx->run_len[ctx->n_runs - 1]++;
        } else {
            ctx->run_start[ctx->n_runs] = i;
            ctx->run_len[ctx->n_runs] = 1;
            ctx->n_runs++;
        }
    }
}

/* ---- residual add, swiglu ---- */
static void add_range(void *arg, int64_t lo, int64_t hi, int ith) {
    fw_task *t = arg;
    const int64_t E = t->ctx->model->hp.n_embd;
    for (int64_t i = lo * E; i < hi * E; i++) t->dst[i] += t->src[i];
}

static void swiglu_range(void *arg, int64_t lo, int64_t hi, int ith) {
    fw_task *t = arg;
    const int64_t F = t->ctx->model->hp.n_ff;
    lv_swiglu_ref(t->ctx->gate + lo * F, t->ctx->up + lo * F, t->ctx->gate + lo * F, (hi - lo) * F);
}

static const float *bias_of(const lv_tensor *b) { return b->data ? (const float *)b->data : NULL; }

lv_status lv_forward_llama(lv_context *ctx, const lv_ubatch *ub) {
    const lv_model *m = ctx->model;
    const lv_hparams *hp = &m->hp;
    const int64_t T = ub->T, E = hp->n_embd;
    lv_threadpool *tp = ctx->tp;
    fw_task t = {.ctx = ctx, .ub = ub};

    lv_parallel_for(tp, T, embed_range, &t);
    find_runs(ctx, ub);

    for (int64_t il = 0; il < hp->n_layer; il++) {
        const lv_layer *L = &m->layers[il];
        t.L = L;
        t.il = il;

        /* attention block */
        t.src = ctx->x;
        t.dst = ctx->xn;
        t.norm_w = L->attn_norm.data;
        lv_parallel_for(tp, T, norm_range, &t);
        lv_matmul(tp, &L->wq, ctx->xn, T, ctx->q, ctx->xq, bias_of(&L->bq));
        lv_matmul(tp, &L->wk, ctx->xn, T, ctx->k, ctx->xq, bias_of(&L->bk));
        lv_matmul(tp, &L->wv, ctx->xn, T, ctx->v, ctx->xq, bias_of(&L->bv));
        lv_parallel_for(tp, T, rope_store_range, &t);
        lv_threadpool_run(tp, attn_worker, &t);
        lv_matmul(tp, &L->wo, ctx->attn, T, ctx->tmp, ctx->xq, bias_of(&L->bo));
        t.src = ctx->tmp;
        t.dst = ctx->x;
        lv_parallel_for(tp, T, add_range, &t);

        /* feed-forward block */
        t.src = ctx->x;
        t.dst = ctx->xn;
        t.norm_w = L->ffn_norm.data;
        lv_parallel_for(tp, T, norm_range, &t);
        lv_matmul(tp, &L->ffn_gate, ctx->xn, T, ctx->gate, ctx->xq, NULL);
        lv_matmul(tp, &L->ffn_up, ctx->xn, T, ctx->up, ctx->xq, NULL);
        lv_parallel_for(tp, T, swiglu_range, &t);
        lv_matmul(tp, &L->ffn_down, ctx->gate, T, ctx->tmp, ctx->xq, NULL);
        t.src = ctx->tmp;
        t.dst = ctx->x;
        lv_parallel_for(tp, T, add_range, &t);

        if (ctx->p.abort_fn && ctx->p.abort_fn(ctx->p.abort_user)) return lv_error(LV_ERR_ABORTED, "decode aborted by the caller");
    }

    if (ub->n_out == 0) return LV_OK;
    /* gather the rows that want logits (out_row is increasing in batch order), norm, project */
    int64_t n = 0, first_row = -1;
    for (int64_t i = 0; i < T; i++) {
        if (ub->out_row[i] < 0) continue;
        if (first_row < 0) first_row = ub->out_row[i];
        LV_ASSERT(ub->out_row[i] == first_row + n);
        if (n != i) memcpy(ctx->x + n * E, ctx->x + i * E, (size_t)E * sizeof(float));
        n++;
    }
    t.src = ctx->x;
    t.dst = ctx->xn;
    t.norm_w = m->output_norm.data;
    lv_parallel_for(tp, n, norm_range, &t);
    lv_matmul(tp, &m->output, ctx->xn, n, ctx->logits + first_row * hp->n_vocab, ctx->xq, NULL);
    return LV_OK;
}
