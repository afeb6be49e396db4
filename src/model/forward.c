/*
 * forward.c: the forward pass of the llama family (llama: Llama 2/3, Mistral, SmolLM; qwen2,
 * qwen3, smollm3, gemma3) over one micro-batch of tokens, each with its own position and sequence:
 *
 *   x = embed(token) (* sqrt(n_embd): gemma3)
 *   per layer:  h = rmsnorm(x) * attn_norm
 *               q, k, v = h Wq (+bq), h Wk (+bk), h Wv (+bv)
 *               q, k = rmsnorm per head * q_norm, k_norm          (qwen3, gemma3)
 *               rope(q), rope(k) at pos      (not on smollm3's NoPE layers; gemma3's sliding-window
 *                                             layers with their own base)
 *               append (k, v) to the sequence's KV streams
 *               a = attention(q, plan) Wo (+bo);  a = rmsnorm(a) * attn_post_norm   (gemma3)
 *               x += a
 *               h = rmsnorm(x) * ffn_norm;  f = (act(h Wgate) * h Wup) Wdown, act = silu or
 *               gelu (gemma3);  f = rmsnorm(f) * ffn_post_norm (gemma3);  x += f
 *   logits = (rmsnorm(x) * output_norm) Woutput      (only for tokens that ask; gemma3 may cap them)
 *
 * qwen35 (src/models/qwen35.cpp): its attention layers' Wq gives [q | gate] per head and the
 * attention output is multiplied by sigmoid(gate) before Wo; its recurrent layers replace
 * attention by a gated delta-net (gdn_layer below):
 *   qkv = conv1d_causal(h Wqkv) then silu   (per channel over the sequence's last d_conv inputs)
 *   q, k = l2norm per key head;  beta = sigmoid(h Wbeta);  decay = exp(softplus(h Walpha + dt) * a)
 *   per value head (key head = value head mod key heads), token by token:
 *       S = S * decay;  S += k (beta (v - S^T k))^T;  o = S^T q / sqrt(head size)
 *   a = (rmsnorm(o) * ssm_norm * silu(h Wgate)) Wout
 *
 * The order of floating-point operations follows llama.cpp's graph (llm_build_llama /
 * llm_build_qwen2, and src/models/{qwen3,smollm3,gemma3}.cpp) so that logits agree closely: biases added after the product, the norm
 * weight applied after normalising, RoPE with the cached cos/sin of ggml.
 * Attention reads the plan of each (layer, KV head): the pages its stream keeps under its policy
 * (full, sink + window, block-strided) with the policy's mask, or at decode on a retrieval head
 * with LServe selection, the pages selected for each query head.
 */
#include "model/forward.h"

#include "core/core.h"
#include "gguf/quant.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

typedef struct fw_task {
    lv_fwd *f;
    const lv_ubatch *ub;
    const lv_layer *L;
    int64_t il;
    int64_t kl; /* the layer's index in the KV cache */
    const float *norm_w;
    const float *src;
    float *dst;
    atomic_llong next_job; /* attn_worker: the next (run, KV head) job to take */
} fw_task;

/* ---- the working state ---- */

static float *alloc_f(size_t n) { return lv_calloc(n ? n : 1, sizeof(float)); }

lv_status lv_fwd_init(lv_fwd *f, const lv_model *m, lv_threadpool *tp, lv_kv *kv, const lv_fwd_params *p) {
    const lv_hparams *hp = &m->hp;
    f->model = m;
    f->tp = tp;
    f->n_threads = lv_threadpool_n_threads(tp);
    f->kv = kv;
    f->rope = lv_rope_params_from(m);
    f->rope_swa = lv_rope_params_swa(m);
    f->p = *p;
    f->max_spans = lv_kv_max_spans(kv);
    const int64_t G = hp->n_head / hp->n_head_kv;
    /* LServe: pages selected per (sequence, layer, query head), reused for select_every steps */
    if (p->select && G > 32)
        return lv_error(LV_ERR_INVALID_ARG, "LServe selection supports at most 32 query heads per KV head (this model has %lld)", (long long)G);
    if (p->select) {
        const size_t n_sel = (size_t)p->n_seq_max * (size_t)hp->n_layer * (size_t)hp->n_head;
        const size_t stride = (size_t)f->max_spans + 1;
        f->sel_k = LV_MAX(3, p->kv_budget / p->page_size);
        f->sel_pages = lv_calloc(n_sel * (size_t)(f->sel_k + 1), sizeof(int32_t));
        f->sel_n = lv_calloc(n_sel, sizeof(int32_t));
        f->sel_q = lv_calloc(n_sel * (size_t)hp->n_embd_head_k, sizeof(float));
        f->sel_scratch_bytes = (lv_kv_select_scratch_bytes(kv, (int)G) + 63) / 64 * 64;
        f->sel_scratch = lv_calloc((size_t)f->n_threads, f->sel_scratch_bytes);
        f->sel_tmp = lv_calloc((size_t)f->n_threads * (size_t)(G + 1) * stride, sizeof(int32_t));
        f->sel_heads = lv_calloc((size_t)f->n_threads * stride, sizeof(uint32_t));
        if (!f->sel_pages || !f->sel_n || !f->sel_q || !f->sel_scratch || !f->sel_tmp || !f->sel_heads) return LV_ERR_NOMEM;
    }

    const size_t T = (size_t)p->n_ubatch, E = (size_t)hp->n_embd, F = (size_t)hp->n_ff;
    const size_t Qd = (size_t)(hp->n_head * hp->n_embd_head_k), Kd = (size_t)(hp->n_head_kv * hp->n_embd_head_k);
    const size_t Vd = (size_t)(hp->n_head_kv * hp->n_embd_head_v), Od = (size_t)(hp->n_head * hp->n_embd_head_v);
    f->x = alloc_f(T * E);
    f->xn = alloc_f(T * E);
    f->tmp = alloc_f(T * E);
    f->q = alloc_f(T * Qd);
    f->k = alloc_f(T * Kd);
    f->v = alloc_f(T * Vd);
    f->attn = alloc_f(T * Od);
    f->gate = alloc_f(T * F);
    f->up = alloc_f(T * F);
    f->rope_cache = alloc_f(T * (size_t)hp->n_rot);
    f->qcap = alloc_f((size_t)LV_MAX(m->n_attn_layers, 1) * Qd);
    f->qcap_row = -1;
    if (!f->qcap) return LV_ERR_NOMEM;
    /* activation scratch: the largest input of any matmul, 4 bytes per element covers every vec-dot type */
    f->xq = lv_calloc(T * LV_MAX(LV_MAX(E, F), LV_MAX(Od, (size_t)hp->ssm_d_inner)) + 64, 4);
    f->att_scratch_floats = (int64_t)lv_attn_scratch_floats((int)(LV_ATTN_RUN * G), (int)hp->n_embd_head_k, (int)hp->n_embd_head_v);
    f->att_scratch = alloc_f((size_t)f->n_threads * (size_t)f->att_scratch_floats);
    f->att_part_floats = LV_ATTN_RUN * G * (hp->n_embd_head_v + 4);
    f->att_part = alloc_f((size_t)f->n_threads * (size_t)f->att_part_floats);
    f->dec_max_chunks = f->max_spans / LV_ATTN_CHUNK + 1;
    f->dec_part = alloc_f((size_t)(hp->n_head_kv * f->dec_max_chunks * G * (hp->n_embd_head_v + 2)));
    f->dec_chunks = lv_calloc((size_t)hp->n_head_kv, sizeof(int));
    f->run_start = lv_calloc(T, sizeof(int64_t));
    f->run_len = lv_calloc(T, sizeof(int64_t));
    f->att_spans = lv_calloc((size_t)f->n_threads * (size_t)f->max_spans, sizeof(lv_attn_span));
    if (!f->x || !f->xn || !f->tmp || !f->q || !f->k || !f->v || !f->attn || !f->gate || !f->up || !f->rope_cache || !f->xq ||
        !f->att_scratch || !f->att_part || !f->dec_part || !f->dec_chunks || !f->run_start || !f->run_len || !f->att_spans)
        return LV_ERR_NOMEM;
    if (hp->attn_q_gate && !(f->qg = alloc_f(T * 2 * Qd))) return LV_ERR_NOMEM;
    if (m->n_recr_layers > 0) {
        const size_t C = (size_t)lv_hp_ssm_conv_dim(hp), Di = (size_t)hp->ssm_d_inner, Hv = (size_t)hp->ssm_dt_rank;
        f->rs_qkv = alloc_f(T * C);
        f->rs_z = alloc_f(T * Di);
        f->rs_b = alloc_f(T * Hv);
        f->rs_a = alloc_f(T * Hv);
        f->rs_o = alloc_f(T * Di);
        f->rs_src = lv_calloc((size_t)p->n_seq_max, sizeof(*f->rs_src));
        f->rs_dst = lv_calloc((size_t)p->n_seq_max, sizeof(*f->rs_dst));
        f->useq = lv_calloc(T, sizeof(int64_t));
        if (!f->rs_qkv || !f->rs_z || !f->rs_b || !f->rs_a || !f->rs_o || !f->rs_src || !f->rs_dst || !f->useq) return LV_ERR_NOMEM;
    }
    return LV_OK;
}

void lv_fwd_free(lv_fwd *f) {
    lv_free(f->sel_pages);
    lv_free(f->sel_n);
    lv_free(f->sel_q);
    lv_free(f->sel_scratch);
    lv_free(f->sel_tmp);
    lv_free(f->sel_heads);
    lv_free(f->x);
    lv_free(f->xn);
    lv_free(f->tmp);
    lv_free(f->q);
    lv_free(f->k);
    lv_free(f->v);
    lv_free(f->attn);
    lv_free(f->qcap);
    lv_free(f->gate);
    lv_free(f->up);
    lv_free(f->rope_cache);
    lv_free(f->xq);
    lv_free(f->att_scratch);
    lv_free(f->att_part);
    lv_free(f->dec_part);
    lv_free(f->dec_chunks);
    lv_free(f->run_start);
    lv_free(f->run_len);
    lv_free(f->att_spans);
    lv_free(f->qg);
    lv_free(f->rs_qkv);
    lv_free(f->rs_z);
    lv_free(f->rs_b);
    lv_free(f->rs_a);
    lv_free(f->rs_o);
    lv_free(f->rs_src);
    lv_free(f->rs_dst);
    lv_free(f->useq);
    memset(f, 0, sizeof(*f));
}

void lv_fwd_forget_selections(lv_fwd *f, int64_t seq) {
    if (!f->p.select) return;
    const size_t per_seq = (size_t)f->model->hp.n_layer * (size_t)f->model->hp.n_head;
    memset(f->sel_n + (size_t)seq * per_seq, 0, per_seq * sizeof(int32_t));
}

/* ---- embeddings ---- */
static void embed_range(void *arg, int64_t lo, int64_t hi, int ith) {
    fw_task *t = arg;
    const lv_model *m = t->f->model;
    const int64_t E = m->hp.n_embd;
    for (int64_t i = lo; i < hi; i++) {
        float *x = t->f->x + i * E;
        if (t->ub->token[i] == LV_TOKEN_EMBD) {
            memcpy(x, t->ub->embd + i * E, (size_t)E * sizeof(float));
        } else {
            const uint8_t *row = (const uint8_t *)m->tok_embd.data + (int64_t)t->ub->token[i] * m->tok_embd.row_bytes;
            lv_to_float_row(m->tok_embd.type, row, x, E);
        }
        if (m->hp.embd_scale != 1.0f)
            for (int64_t e = 0; e < E; e++) x[e] *= m->hp.embd_scale;
    }
}

/* ---- rmsnorm of rows ---- */
static void norm_range(void *arg, int64_t lo, int64_t hi, int ith) {
    fw_task *t = arg;
    const lv_hparams *hp = &t->f->model->hp;
    for (int64_t i = lo; i < hi; i++) lv_rmsnorm_ref(t->src + i * hp->n_embd, t->norm_w, t->dst + i * hp->n_embd, hp->n_embd, hp->norm_rms_eps);
}

/* ---- rope + KV append ---- */
static void rope_store_range(void *arg, int64_t lo, int64_t hi, int ith) {
    fw_task *t = arg;
    lv_fwd *f = t->f;
    const lv_hparams *hp = &f->model->hp;
    const int64_t Hq = hp->n_head, Hk = hp->n_head_kv, Dk = hp->n_embd_head_k, Dv = hp->n_embd_head_v;
    const lv_layer *L = t->L;
    const float *qn = L->q_norm.data, *kn = L->k_norm.data;
    const bool rope = lv_hp_layer_rope(hp, t->il);
    const lv_rope_params *rp = lv_hp_layer_swa(hp, t->il) ? &f->rope_swa : &f->rope;
    for (int64_t i = lo; i < hi; i++) {
        float *cache = f->rope_cache + i * hp->n_rot;
        if (rope && hp->mrope) {
            const lv_pos *pm = t->ub->pos_mrope;
            const int64_t st = t->ub->mrope_stride;
            const int32_t p4[4] = {pm ? pm[i] : t->ub->pos[i], pm ? pm[st + i] : t->ub->pos[i], pm ? pm[2 * st + i] : t->ub->pos[i],
                                   pm ? pm[3 * st + i] : t->ub->pos[i]};
            lv_rope_cache_mrope(rp, hp->rope_sections, p4, cache);
        } else if (rope) {
            lv_rope_cache(rp, t->ub->pos[i], cache);
        }
        float *q = f->q + i * Hq * Dk;
        float *k = f->k + i * Hk * Dk;
        const float *v = f->v + i * Hk * Dv;
        if (hp->attn_q_gate) /* qwen35: [q | gate] per head */
            for (int64_t h = 0; h < Hq; h++) memcpy(q + h * Dk, f->qg + (i * Hq + h) * 2 * Dk, (size_t)Dk * sizeof(float));
        for (int64_t h = 0; h < Hq; h++) {
            if (qn) lv_rmsnorm_ref(q + h * Dk, qn, q + h * Dk, Dk, hp->norm_rms_eps);
            if (rope) lv_rope_apply(rp, cache, q + h * Dk);
            if (hp->attn_scale_on_q)
                for (int64_t d = 0; d < Dk; d++) q[h * Dk + d] *= hp->attn_scale;
        }
        if (i == f->qcap_row) memcpy(f->qcap + t->kl * Hq * Dk, q, (size_t)(Hq * Dk) * sizeof(float));
        for (int64_t h = 0; h < Hk; h++) {
            if (kn) lv_rmsnorm_ref(k + h * Dk, kn, k + h * Dk, Dk, hp->norm_rms_eps);
            if (rope) lv_rope_apply(rp, cache, k + h * Dk);
            lv_kv_write_slot(f->kv, t->ub->seq[i], t->kl, h, t->ub->slot[i], k + h * Dk, v + h * Dv, t->ub->pos[i]);
        }
    }
}

/* ---- attention: one job per (run of consecutive tokens of one sequence, KV head) ----
 * The G query heads of a KV head and up to LV_ATTN_RUN tokens read the KV stream together, so
 * each cached key and value is loaded once per job. Threads take jobs one at a time from a shared
 * counter: a job's cost grows with its tokens' positions and differs by head (a DuoAttention
 * streaming head reads sink + window, a retrieval head the whole context), so a fixed deal
 * (round robin gave every KV head to the same thread whenever the thread count divides the KV
 * heads) would leave threads idle.
 *
 * Split-K: on a full head (no eviction) whose job reads more than LV_ATTN_CHUNK spans, the spans
 * are taken in chunks of LV_ATTN_CHUNK; each chunk gives unnormalised partial outputs that are
 * folded in chunk order (lv_attn_fold). The chunks of a prefill job run one after the other;
 * at a single-token decode step they run on different threads and are folded afterwards, with
 * the same operations in the same order, so decode still equals prefill bit for bit and the
 * result does not depend on the thread count. */

/* has a query head of the group drifted from the query that made its selection: cosine below
 * the threshold? (A zero vector has cosine 0 with anything.) */
static bool query_drifted(const float *q, const float *q_sel, int64_t G, int64_t D, float threshold) {
    for (int64_t h = 0; h < G; h++) {
        double dot = 0, nq = 0, ns = 0;
        for (int64_t d = 0; d < D; d++) {
            dot += (double)q[h * D + d] * q_sel[h * D + d];
            nq += (double)q[h * D + d] * q[h * D + d];
            ns += (double)q_sel[h * D + d] * q_sel[h * D + d];
        }
        const double c = nq > 0 && ns > 0 ? dot / sqrt(nq * ns) : 0.0;
        if (c < (double)threshold) return true;
    }
    return false;
}

/* LServe at decode: reselect the pages of the G query heads of stream (seq, layer, g) when due:
 * every select_every steps (timestep = tokens before this one), when there is none yet, or when
 * a query head's cosine with the query that made the selection fell below select_drift (LServe
 * reuses a selection because consecutive queries are alike; this checks it instead of assuming
 * it). The heads are scored together so the key statistics are read once. */
static void refresh_selection(lv_fwd *f, const fw_task *t, int64_t i, int64_t g, int ith) {
    const lv_hparams *hp = &f->model->hp;
    const int64_t seq = t->ub->seq[i], G = hp->n_head / hp->n_head_kv, D = hp->n_embd_head_k;
    const int64_t idx = (seq * hp->n_layer + t->il) * hp->n_head + g * G;
    const int64_t timestep = lv_kv_seq_len(f->kv, seq) + t->ub->slot[i];
    const float *q = f->q + (i * hp->n_head + g * G) * D;
    const float drift = f->p.select_drift;
    if (f->sel_n[idx] == 0 || timestep % f->p.select_every == 0 ||
        (drift > 0.0f && query_drifted(q, f->sel_q + idx * D, G, D, drift))) {
        void *scratch = (uint8_t *)f->sel_scratch + (size_t)ith * f->sel_scratch_bytes;
        const int n = lv_kv_select_pages_multi(f->kv, seq, t->kl, g, t->ub->n_vis[i], q, D, (int)G, f->p.select_shared, f->sel_k,
                                               f->sel_pages + idx * (f->sel_k + 1), f->sel_k + 1, scratch);
        for (int64_t h = 0; h < G; h++) f->sel_n[idx + h] = n;
        memcpy(f->sel_q + idx * D, q, (size_t)(G * D) * sizeof(float));
    }
}

/* the pages query head h reads: its last selection plus the newest page (pages appended since
 * the selection replace nothing); sorted. Returns the count written to pages. */
static int selected_pages(lv_fwd *f, const fw_task *t, int64_t i, int64_t h, int64_t g, int32_t *pages) {
    const lv_hparams *hp = &f->model->hp;
    const int64_t seq = t->ub->seq[i];
    const int64_t idx = (seq * hp->n_layer + t->il) * hp->n_head + h;
    const int64_t n_pages = lv_kv_n_pages(f->kv, seq, t->kl, g, t->ub->n_vis[i]);
    int n = f->sel_n[idx];
    memcpy(pages, f->sel_pages + idx * (f->sel_k + 1), (size_t)n * sizeof(int32_t));
    if (pages[n - 1] != (int32_t)(n_pages - 1)) pages[n++] = (int32_t)(n_pages - 1);
    return n;
}

/* does the job of (run, g) use LServe selection (a decode token on a retrieval head whose
 * stream holds more pages than a selection)? */
static bool selects(const lv_fwd *f, const fw_task *t, int64_t run, int64_t g) {
    const int64_t last = f->run_start[run] + f->run_len[run] - 1;
    return f->p.select && f->run_len[run] == 1 && lv_kv_policy(f->kv, t->kl, g)->stats &&
           lv_kv_n_pages(f->kv, t->ub->seq[last], t->kl, g, t->ub->n_vis[last]) > f->sel_k;
}

/* The job of (run, g), its spans written to spans (and for LServe the heads of each span to
 * heads). With selection, each query head reads its own selected pages: the G selections (each
 * sorted) are merged into one list with a bit per head that chose the page, so a page several
 * heads chose is loaded once and each head still attends over exactly its own pages. */
static lv_attn_job plan_job(lv_fwd *f, const fw_task *t, int64_t run, int64_t g, int ith, lv_attn_span *spans, uint32_t *heads) {
    const lv_hparams *hp = &f->model->hp;
    const int64_t Hq = hp->n_head, Hk = hp->n_head_kv, G = Hq / Hk, Dk = hp->n_embd_head_k, Dv = hp->n_embd_head_v;
    const int64_t i0 = f->run_start[run], nt = f->run_len[run];
    const int64_t last = i0 + nt - 1, seq = t->ub->seq[last];
    lv_attn_job job = {
        .q = f->q + (i0 * Hq + g * G) * Dk, .q_tok_stride = Hq * Dk, .q_head_stride = Dk,
        .out = f->attn + (i0 * Hq + g * G) * Dv, .out_tok_stride = Hq * Dv, .out_head_stride = Dv,
        .pos = t->ub->pos + i0, .n_tok = (int)nt, .n_head = (int)G, .spans = spans,
        .scale = hp->attn_scale_on_q ? 1.0f : hp->attn_scale, .kv_type = f->p.kv_type, .kv_type_v = f->p.kv_type_v, .Dk = (int)Dk, .Dv = (int)Dv,
    };
    /* the tokens of a run see the stream up to its last token (masking handles the rest) */
    if (!selects(f, t, run, g)) {
        job.n_spans = lv_kv_spans(f->kv, seq, t->kl, g, t->ub->n_vis[last], spans, &job.mask);
        return job;
    }
    lv_kv_spans(f->kv, seq, t->kl, g, t->ub->n_vis[last], NULL, &job.mask); /* the mask only: the spans are the selection's */
    const int64_t stride = f->max_spans + 1;
    int32_t *sel = f->sel_tmp + (int64_t)ith * (G + 1) * stride, *uni = sel + G * stride;
    int np[32], at[32];
    for (int64_t hh = 0; hh < G; hh++) {
        np[hh] = selected_pages(f, t, last, g * G + hh, g, sel + hh * stride);
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
    job.n_spans = lv_kv_spans_of_pages(f->kv, seq, t->kl, g, t->ub->n_vis[last], uni, nu, spans);
    job.span_heads = heads;
    return job;
}

/* chunks of a job (1: run it whole); only full heads are split, whose spans are the same pages
 * in prefill and decode (streaming heads' spans shift as pages are evicted) */
static int n_chunks(const lv_attn_job *job) {
    return job->mask.kind == LV_MASK_CAUSAL && job->n_spans > LV_ATTN_CHUNK ? (job->n_spans + LV_ATTN_CHUNK - 1) / LV_ATTN_CHUNK : 1;
}

/* chunk c of a job, its partial outputs to o (nq, Dv), m and l (nq) */
static lv_attn_job chunk_job(const lv_attn_job *job, int c, float *o, float *m, float *l) {
    lv_attn_job sub = *job;
    sub.spans = job->spans + (int64_t)c * LV_ATTN_CHUNK;
    sub.n_spans = job->n_spans - c * LV_ATTN_CHUNK < LV_ATTN_CHUNK ? job->n_spans - c * LV_ATTN_CHUNK : LV_ATTN_CHUNK;
    sub.span_heads = job->span_heads ? job->span_heads + (int64_t)c * LV_ATTN_CHUNK : NULL;
    sub.out = o;
    sub.out_tok_stride = (int64_t)job->n_head * job->Dv;
    sub.out_head_stride = job->Dv;
    sub.m_out = m;
    sub.l_out = l;
    return sub;
}

static inline float *out_row(const lv_attn_job *job, int r) {
    return job->out + (r / job->n_head) * job->out_tok_stride + (r % job->n_head) * job->out_head_stride;
}

/* a job, its chunks one after the other (part: (nq, Dv + 4) floats of scratch) */
static void run_job(const lv_attn_job *job, float *scratch, float *part) {
    const int nc = n_chunks(job);
    if (nc == 1) {
        lv_attn(job, scratch);
        return;
    }
    const int nq = job->n_tok * job->n_head, Dv = job->Dv;
    float *o = part, *m = o + (size_t)nq * Dv, *l = m + nq, *M = l + nq, *L = M + nq;
    for (int r = 0; r < nq; r++) {
        M[r] = -INFINITY;
        L[r] = 0.0f;
    }
    for (int c = 0; c < nc; c++) {
        const lv_attn_job sub = chunk_job(job, c, o, m, l);
        lv_attn(&sub, scratch);
        for (int r = 0; r < nq; r++) lv_attn_fold(out_row(job, r), &M[r], &L[r], o + (size_t)r * Dv, m[r], l[r], Dv);
    }
    for (int r = 0; r < nq; r++) lv_attn_finish(out_row(job, r), L[r], Dv);
}

static void attn_worker(void *arg, int ith, int nth) {
    fw_task *t = arg;
    lv_fwd *f = t->f;
    const lv_hparams *hp = &f->model->hp;
    const int64_t Hk = hp->n_head_kv;
    lv_attn_span *spans = f->att_spans + (int64_t)ith * f->max_spans;
    uint32_t *heads = f->sel_heads + (int64_t)ith * (f->max_spans + 1);
    float *scratch = f->att_scratch + (int64_t)ith * f->att_scratch_floats;
    float *part = f->att_part + (int64_t)ith * f->att_part_floats;
    const int64_t n_items = f->n_runs * Hk;
    for (int64_t item; (item = atomic_fetch_add_explicit(&t->next_job, 1, memory_order_relaxed)) < n_items;) {
        const int64_t run = item / Hk, g = item % Hk;
        if (selects(f, t, run, g)) refresh_selection(f, t, f->run_start[run], g, ith);
        const lv_attn_job job = plan_job(f, t, run, g, ith, spans, heads);
        run_job(&job, scratch, part);
    }
}

/* ---- a single-token decode step on several threads: the chunks of every KV head's job are
 * dealt across the threads (3 KV heads on 2 threads would otherwise leave one idle a third of
 * the time), then folded per query row. Three passes: selections (one per KV head), chunks,
 * folds. */
static void decode_select_worker(void *arg, int ith, int nth) {
    fw_task *t = arg;
    lv_fwd *f = t->f;
    const lv_hparams *hp = &f->model->hp;
    for (int64_t g = ith; g < hp->n_head_kv; g += nth)
        if (selects(f, t, 0, g)) refresh_selection(f, t, 0, g, ith);
}

static void decode_chunk_worker(void *arg, int ith, int nth) {
    fw_task *t = arg;
    lv_fwd *f = t->f;
    const lv_hparams *hp = &f->model->hp;
    const int64_t Hk = hp->n_head_kv, G = hp->n_head / Hk, Dv = hp->n_embd_head_v;
    lv_attn_span *spans = f->att_spans + (int64_t)ith * f->max_spans;
    uint32_t *heads = f->sel_heads + (int64_t)ith * (f->max_spans + 1);
    float *scratch = f->att_scratch + (int64_t)ith * f->att_scratch_floats;
    /* every thread plans every KV head (a few hundred pages: cheap next to reading them), so all
     * number the chunks alike; chunk items are dealt round robin over all heads */
    int64_t item = 0;
    for (int64_t g = 0; g < Hk; g++) {
        const lv_attn_job job = plan_job(f, t, 0, g, ith, spans, heads);
        const int nc = n_chunks(&job);
        if (ith == 0) f->dec_chunks[g] = nc;
        for (int c = 0; c < nc; c++, item++) {
            if (item % nth != ith) continue;
            if (nc == 1) {
                lv_attn(&job, scratch);
            } else {
                float *o = f->dec_part + (g * f->dec_max_chunks + c) * G * (Dv + 2), *m = o + G * Dv, *l = m + G;
                const lv_attn_job sub = chunk_job(&job, c, o, m, l);
                lv_attn(&sub, scratch);
            }
        }
    }
}

static void decode_fold_worker(void *arg, int ith, int nth) {
    fw_task *t = arg;
    lv_fwd *f = t->f;
    const lv_hparams *hp = &f->model->hp;
    const int64_t Hq = hp->n_head, G = Hq / hp->n_head_kv, Dv = hp->n_embd_head_v;
    for (int64_t h = ith; h < Hq; h += nth) {
        const int64_t g = h / G, hh = h % G;
        const int nc = f->dec_chunks[g];
        if (nc == 1) continue;
        float *out = f->attn + h * Dv, M = -INFINITY, L = 0.0f;
        for (int c = 0; c < nc; c++) {
            const float *o = f->dec_part + (g * f->dec_max_chunks + c) * G * (Dv + 2), *m = o + G * Dv, *l = m + G;
            lv_attn_fold(out, &M, &L, o + hh * Dv, m[hh], l[hh], (int)Dv);
        }
        lv_attn_finish(out, L, (int)Dv);
    }
}

/* runs of consecutive tokens of the same sequence, at most LV_ATTN_RUN long */
static void find_runs(lv_fwd *f, const lv_ubatch *ub) {
    f->n_runs = 0;
    for (int64_t i = 0; i < ub->T; i++) {
        if (i > 0 && ub->seq[i] == ub->seq[i - 1] && f->run_len[f->n_runs - 1] < LV_ATTN_RUN) {
            f->run_len[f->n_runs - 1]++;
        } else {
            f->run_start[f->n_runs] = i;
            f->run_len[f->n_runs] = 1;
            f->n_runs++;
        }
    }
}

/* ---- residual add, swiglu ---- */
static void add_range(void *arg, int64_t lo, int64_t hi, int ith) {
    fw_task *t = arg;
    const int64_t E = t->f->model->hp.n_embd;
    for (int64_t i = lo * E; i < hi * E; i++) t->dst[i] += t->src[i];
}

static void glu_range(void *arg, int64_t lo, int64_t hi, int ith) {
    fw_task *t = arg;
    const int64_t F = t->f->model->hp.n_ff;
    if (t->f->model->hp.ffn_act == LV_FFN_GELU) lv_geglu(t->f->gate + lo * F, t->f->up + lo * F, t->f->gate + lo * F, (hi - lo) * F);
    else lv_swiglu(t->f->gate + lo * F, t->f->up + lo * F, t->f->gate + lo * F, (hi - lo) * F);
}

/* logits = cap * tanh(logits / cap) */
static void softcap_range(void *arg, int64_t lo, int64_t hi, int ith) {
    fw_task *t = arg;
    const int64_t V = t->f->model->hp.n_vocab;
    const float cap = t->f->model->hp.final_softcap;
    for (int64_t i = lo * V; i < hi * V; i++) t->dst[i] = tanhf(t->dst[i] * (1.0f / cap)) * cap;
}

/* ---- qwen35: the attention output's gate ---- */
static void attn_gate_range(void *arg, int64_t lo, int64_t hi, int ith) {
    fw_task *t = arg;
    const lv_hparams *hp = &t->f->model->hp;
    const int64_t Hq = hp->n_head, D = hp->n_embd_head_v;
    for (int64_t i = lo; i < hi; i++)
        for (int64_t h = 0; h < Hq; h++) {
            float *a = t->f->attn + (i * Hq + h) * D;
            const float *g = t->f->qg + (i * Hq + h) * 2 * D + D;
            for (int64_t d = 0; d < D; d++) a[d] *= 1.0f / (1.0f + expf(-g[d]));
        }
}

/* ---- qwen35: the gated delta-net layer ---- */

static inline float silu(float x) { return x / (1.0f + expf(-x)); }

/* the causal convolution of channels [lo, hi), token by token in batch order, each token over
 * its sequence's window (the state's first (d_conv - 1) * conv_dim floats, per channel oldest
 * first), then silu; in place in rs_qkv */
static void gdn_conv_range(void *arg, int64_t lo, int64_t hi, int ith) {
    fw_task *t = arg;
    lv_fwd *f = t->f;
    const lv_hparams *hp = &f->model->hp;
    const int64_t C = lv_hp_ssm_conv_dim(hp), K = hp->ssm_d_conv;
    const float *w = t->L->ssm_conv1d.data;
    for (int64_t i = 0; i < t->ub->T; i++) {
        float *win0 = f->rs_dst[t->ub->seq[i]];
        float *x = f->rs_qkv + i * C;
        for (int64_t c = lo; c < hi; c++) {
            float *win = win0 + c * (K - 1);
            const float *wc = w + c * K;
            const float xc = x[c];
            float sum = 0.0f;
            for (int64_t k = 0; k < K - 1; k++) sum += win[k] * wc[k];
            sum += xc * wc[K - 1];
            for (int64_t k = 0; k + 1 < K - 1; k++) win[k] = win[k + 1];
            win[K - 2] = xc;
            x[c] = silu(sum);
        }
    }
}

/* l2 norm as ggml_l2_norm: x / max(sqrt(sum x^2), eps), the sum in double */
static void l2norm(float *x, int64_t n, float eps) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)x[i] * (double)x[i];
    const float scale = 1.0f / fmaxf(sqrtf((float)sum), eps);
    for (int64_t i = 0; i < n; i++) x[i] *= scale;
}

/* per token: q and k normalised per key head, beta = sigmoid, alpha -> the decay exp(g) */
static void gdn_prep_range(void *arg, int64_t lo, int64_t hi, int ith) {
    fw_task *t = arg;
    lv_fwd *f = t->f;
    const lv_hparams *hp = &f->model->hp;
    const int64_t C = lv_hp_ssm_conv_dim(hp), S = hp->ssm_d_state, Hk = hp->ssm_n_group, Hv = hp->ssm_dt_rank;
    const float *dt = t->L->ssm_dt.data, *A = t->L->ssm_a.data;
    for (int64_t i = lo; i < hi; i++) {
        float *x = f->rs_qkv + i * C;
        for (int64_t h = 0; h < 2 * Hk; h++) l2norm(x + h * S, S, hp->norm_rms_eps);
        for (int64_t h = 0; h < Hv; h++) {
            float *b = &f->rs_b[i * Hv + h], *a = &f->rs_a[i * Hv + h];
            *b = 1.0f / (1.0f + expf(-*b));
            const float ab = *a + dt[h];
            const float sp = ab > 20.0f ? ab : logf(1.0f + expf(ab)); /* ggml's softplus */
            *a = expf(sp * A[h]);
        }
    }
}

/* the delta rule of jobs (sequence of the micro-batch, value head) in [lo, hi): that sequence's
 * tokens in order, the first from the state before the micro-batch, the rest in place */
static void gdn_head_range(void *arg, int64_t lo, int64_t hi, int ith) {
    fw_task *t = arg;
    lv_fwd *f = t->f;
    const lv_hparams *hp = &f->model->hp;
    const int64_t C = lv_hp_ssm_conv_dim(hp), S = hp->ssm_d_state, Hk = hp->ssm_n_group, Hv = hp->ssm_dt_rank;
    const int64_t conv_floats = (hp->ssm_d_conv - 1) * C, Di = hp->ssm_d_inner;
    const float scale = 1.0f / sqrtf((float)S);
    for (int64_t job = lo; job < hi; job++) {
        const int64_t seq = f->useq[job / Hv], h = job % Hv, kh = h % Hk;
        const float *src = f->rs_src[seq] ? f->rs_src[seq] + conv_floats + h * S * S : NULL;
        float *dst = f->rs_dst[seq] + conv_floats + h * S * S;
        for (int64_t i = 0; i < t->ub->T; i++) {
            if (t->ub->seq[i] != seq) continue;
            const float *x = f->rs_qkv + i * C;
            lv_gdn_step(src, dst, x + kh * S, x + (Hk + kh) * S, x + 2 * Hk * S + h * S, f->rs_a[i * Hv + h], f->rs_b[i * Hv + h], scale,
                        f->rs_o + i * Di + h * S, (int)S);
            src = dst;
        }
    }
}

/* o = rmsnorm(o) * ssm_norm * silu(z), per head */
static void gdn_out_range(void *arg, int64_t lo, int64_t hi, int ith) {
    fw_task *t = arg;
    lv_fwd *f = t->f;
    const lv_hparams *hp = &f->model->hp;
    const int64_t S = hp->ssm_d_state, Di = hp->ssm_d_inner;
    for (int64_t i = lo; i < hi; i++)
        for (int64_t h = 0; h < hp->ssm_dt_rank; h++) {
            float *o = f->rs_o + i * Di + h * S;
            const float *z = f->rs_z + i * Di + h * S;
            lv_rmsnorm_ref(o, t->L->ssm_norm.data, o, S, hp->norm_rms_eps);
            for (int64_t d = 0; d < S; d++) o[d] *= silu(z[d]);
        }
}

/* a recurrent layer: f->xn (normed input) -> f->tmp (the layer's output before the residual) */
static void gdn_layer(lv_fwd *f, fw_task *t) {
    const lv_hparams *hp = &f->model->hp;
    const lv_layer *L = t->L;
    const lv_ubatch *ub = t->ub;
    const int64_t T = ub->T, C = lv_hp_ssm_conv_dim(hp), conv_floats = (hp->ssm_d_conv - 1) * C;
    lv_threadpool *tp = f->tp;
    lv_matmul(tp, &L->wqkv, f->xn, T, f->rs_qkv, f->xq, NULL);
    lv_matmul(tp, &L->wqkv_gate, f->xn, T, f->rs_z, f->xq, NULL);
    lv_matmul(tp, &L->ssm_beta, f->xn, T, f->rs_b, f->xq, NULL);
    lv_matmul(tp, &L->ssm_alpha, f->xn, T, f->rs_a, f->xq, NULL);
    /* each sequence's state: the convolution window is carried into the written buffer here, the
     * delta rule's matrices by the first step of each head */
    f->n_useq = 0;
    for (int64_t i = 0; i < T; i++) {
        const int64_t s = ub->seq[i];
        bool seen = false;
        for (int64_t u = 0; u < f->n_useq && !seen; u++) seen = f->useq[u] == s;
        if (seen) continue;
        f->useq[f->n_useq++] = s;
        lv_kv_state(f->kv, s, L->kv_layer, &f->rs_src[s], &f->rs_dst[s]);
        if (f->rs_src[s] == f->rs_dst[s]) continue;
        if (f->rs_src[s]) memcpy(f->rs_dst[s], f->rs_src[s], (size_t)conv_floats * sizeof(float));
        else memset(f->rs_dst[s], 0, (size_t)conv_floats * sizeof(float));
    }
    lv_parallel_for(tp, C, gdn_conv_range, t);
    lv_parallel_for(tp, T, gdn_prep_range, t);
    lv_parallel_for(tp, f->n_useq * hp->ssm_dt_rank, gdn_head_range, t);
    lv_parallel_for(tp, T, gdn_out_range, t);
    lv_matmul(tp, &L->ssm_out, f->rs_o, T, f->tmp, f->xq, NULL);
}

static const float *bias_of(const lv_tensor *b) { return b->data ? (const float *)b->data : NULL; }

lv_status lv_forward_llama(lv_fwd *f, const lv_ubatch *ub) {
    const lv_model *m = f->model;
    const lv_hparams *hp = &m->hp;
    const int64_t T = ub->T, E = hp->n_embd;
    lv_threadpool *tp = f->tp;
    fw_task t = {.f = f, .ub = ub};

    lv_parallel_for(tp, T, embed_range, &t);
    find_runs(f, ub);

    for (int64_t il = 0; il < hp->n_layer; il++) {
        const lv_layer *L = &m->layers[il];
        t.L = L;
        t.il = il;

        t.kl = L->kv_layer;

        /* attention block (or a recurrent layer's gated delta-net) */
        t.src = f->x;
        t.dst = f->xn;
        t.norm_w = L->attn_norm.data;
        lv_parallel_for(tp, T, norm_range, &t);
        if (L->recurrent) {
            gdn_layer(f, &t);
        } else {
            lv_matmul(tp, &L->wq, f->xn, T, hp->attn_q_gate ? f->qg : f->q, f->xq, bias_of(&L->bq));
            lv_matmul(tp, &L->wk, f->xn, T, f->k, f->xq, bias_of(&L->bk));
            lv_matmul(tp, &L->wv, f->xn, T, f->v, f->xq, bias_of(&L->bv));
            lv_parallel_for(tp, T, rope_store_range, &t);
            if (f->p.select) /* LServe's page statistics: one writer per stream, rows in order (their pages' min / max are
                                shared by the rows the threads above wrote) */
                for (int64_t i = 0; i < T; i++)
                    for (int64_t h = 0; h < hp->n_head_kv; h++)
                        lv_kv_write_stats(f->kv, ub->seq[i], t.kl, h, ub->slot[i], f->k + (i * hp->n_head_kv + h) * hp->n_embd_head_k);
            if (T == 1 && f->n_threads > 1) {
                if (f->p.select) lv_threadpool_run(tp, decode_select_worker, &t);
                lv_threadpool_run(tp, decode_chunk_worker, &t);
                lv_threadpool_run(tp, decode_fold_worker, &t);
            } else {
                atomic_store_explicit(&t.next_job, 0, memory_order_relaxed);
                lv_threadpool_run(tp, attn_worker, &t);
            }
            if (hp->attn_q_gate) lv_parallel_for(tp, T, attn_gate_range, &t);
            lv_matmul(tp, &L->wo, f->attn, T, f->tmp, f->xq, bias_of(&L->bo));
        }
        if (L->attn_post_norm.data) {
            t.src = t.dst = f->tmp;
            t.norm_w = L->attn_post_norm.data;
            lv_parallel_for(tp, T, norm_range, &t);
        }
        t.src = f->tmp;
        t.dst = f->x;
        lv_parallel_for(tp, T, add_range, &t);

        /* feed-forward block */
        t.src = f->x;
        t.dst = f->xn;
        t.norm_w = L->ffn_norm.data;
        lv_parallel_for(tp, T, norm_range, &t);
        lv_matmul(tp, &L->ffn_gate, f->xn, T, f->gate, f->xq, NULL);
        lv_matmul(tp, &L->ffn_up, f->xn, T, f->up, f->xq, NULL);
        lv_parallel_for(tp, T, glu_range, &t);
        lv_matmul(tp, &L->ffn_down, f->gate, T, f->tmp, f->xq, NULL);
        if (L->ffn_post_norm.data) {
            t.src = t.dst = f->tmp;
            t.norm_w = L->ffn_post_norm.data;
            lv_parallel_for(tp, T, norm_range, &t);
        }
        t.src = f->tmp;
        t.dst = f->x;
        lv_parallel_for(tp, T, add_range, &t);

        if (f->p.abort_fn && f->p.abort_fn(f->p.abort_user)) return lv_error(LV_ERR_ABORTED, "decode aborted by the caller");
    }

    if (ub->n_out == 0) return LV_OK;
    /* gather the rows that want logits (out_row is increasing in batch order), norm, project */
    int64_t n = 0, first_row = -1;
    for (int64_t i = 0; i < T; i++) {
        if (ub->out_row[i] < 0) continue;
        if (first_row < 0) first_row = ub->out_row[i];
        LV_ASSERT(ub->out_row[i] == first_row + n);
        if (n != i) memcpy(f->x + n * E, f->x + i * E, (size_t)E * sizeof(float));
        n++;
    }
    t.src = f->x;
    t.dst = f->xn;
    t.norm_w = m->output_norm.data;
    lv_parallel_for(tp, n, norm_range, &t);
    lv_matmul(tp, &m->output, f->xn, n, ub->logits + first_row * hp->n_vocab, f->xq, NULL);
    if (hp->final_softcap > 0) {
        t.dst = ub->logits + first_row * hp->n_vocab;
        lv_parallel_for(tp, n, softcap_range, &t);
    }
    return LV_OK;
}
