/*
 * context.h: a context = a model + a KV cache + the scratch of one forward pass + the outputs
 * of the last lv_decode. Everything is sized at creation; decoding allocates nothing.
 */
#ifndef LV_CONTEXT_H
#define LV_CONTEXT_H

#include "kernels/kernels.h"
#include "kv/kv.h"
#include "model/model.h"

/* tokens of one sequence that share an attention job */
#define LV_ATTN_RUN 16
#define LV_ATTN_CHUNK 16 /* split-K: spans (pages) per chunk of a full head's job, forward.c */

/* One micro-batch as the forward pass sees it (arrays of T). */
typedef struct lv_ubatch {
    int64_t T;
    const lv_token *token;
    const lv_pos *pos;
    const lv_seq_id *seq;
    const int64_t *slot;    /* index of each token among the tokens its sequence appends in this step */
    const int64_t *n_vis;   /* how many of those are written when the token attends */
    const int32_t *out_row; /* row in ctx->logits, or -1 for no logits */
    int64_t n_out;          /* tokens with out_row >= 0 */
} lv_ubatch;

struct lv_context {
    lv_model *model;
    lv_context_params p;
    lv_threadpool *tp;
    bool own_tp;
    int n_threads;
    lv_kv *kv;
    lv_rope_params rope;

    /* the attention plan */
    lv_kv_head_policy *policies; /* (n_layer, n_head_kv) */
    uint8_t *retrieval;          /* (n_layer, n_head_kv) 1 = full attention head */
    bool select;                 /* LServe page selection at decode */
    int32_t sel_k;               /* pages per selection: max(3, kv_budget / page) */
    int32_t *sel_pages;          /* (n_seq, n_layer, n_head, sel_k + 1) the last selection */
    int32_t *sel_n;              /* (n_seq, n_layer, n_head) its length, 0 = none */
    float *sel_q;                /* (n_seq, n_layer, n_head, head_dim_k): the query that made each selection */
    void *sel_scratch;           /* (n_threads, G, max_spans) page scores */
    int32_t *sel_tmp;            /* (n_threads, G + 1, max_spans + 1): the G heads' pages and their union */
    uint32_t *sel_heads;         /* (n_threads, max_spans + 1): which heads chose each page of the union */

    /* forward scratch, (n_ubatch, ...) */
    float *x;      /* (T, E) residual stream */
    float *xn;     /* (T, E) normed */
    float *tmp;    /* (T, E) */
    float *q;      /* (T, n_head * Dk) */
    float *k;      /* (T, n_head_kv * Dk) */
    float *v;      /* (T, n_head_kv * Dv) */
    float *attn;   /* (T, n_head * Dv) */
    float *gate;   /* (T, n_ff) */
    float *up;     /* (T, n_ff) */
    void *xq;      /* activations converted for a matmul */
    float *rope_cache;     /* (T, n_rot) */
    lv_attn_span *att_spans; /* (n_threads, max_spans) */
    int64_t max_spans;
    float *att_scratch;      /* (n_threads, att_scratch_floats) */
    int64_t att_scratch_floats;
    float *att_part;         /* (n_threads, att_part_floats): a chunk's partial outputs */
    int64_t att_part_floats;
    float *dec_part;         /* (n_head_kv, dec_max_chunks, G, Dv + 2): a decode step's chunk outputs, m, l */
    int64_t dec_max_chunks;
    int *dec_chunks;         /* (n_head_kv) chunks of each KV head's decode job */
    int64_t *run_start, *run_len; /* (n_ubatch) runs of one sequence's tokens in the micro-batch */
    int64_t n_runs;

    /* per-decode bookkeeping, (n_batch) and (n_seq_max) */
    int64_t *slot;
    int64_t *n_vis;
    int32_t *out_row;
    int64_t *seq_count;
    int64_t *seq_new;
    int32_t *seq_last;

    /* outputs of the last lv_decode */
    float *logits;      /* (n_batch, n_vocab), big allocation */
    size_t logits_size;
    int32_t *logit_row; /* (n_batch): batch index -> row, or -1 */
    int32_t n_batch_last;
    int32_t last_out;   /* batch index of the last token with logits, -1 */
};

/* The forward pass of the llama family (llama, qwen2) over one micro-batch. Writes K/V of the
 * micro-batch into the reserved slots and the logits of its output tokens. Returns
 * LV_ERR_ABORTED if the abort callback fired (the caller rolls the cache back). */
lv_status lv_forward_llama(lv_context *ctx, const lv_ubatch *ub);

#endif
