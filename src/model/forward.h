/*
 * forward.h: the forward pass over one micro-batch, and the working state it runs in.
 *
 * An lv_fwd is what a forward pass needs besides the weights: the thread pool, the KV cache it
 * appends to and reads through each (layer, KV head)'s plan, LServe's page selections, and the
 * scratch of one micro-batch, all sized by lv_fwd_init so that a step allocates nothing. The
 * runtime (runtime/) owns one per context and calls lv_forward_* per micro-batch inside its KV
 * transaction; the forward pass never validates a batch, reserves pages or commits them.
 */
#ifndef LV_FORWARD_H
#define LV_FORWARD_H

#include "kernels/kernels.h"
#include "kv/kv.h"
#include "model/model.h"

/* tokens of one sequence that share an attention job */
#define LV_ATTN_RUN 16
#define LV_ATTN_CHUNK 16 /* split-K: spans (pages) per chunk of a full head's job, forward.c */

/* One micro-batch as the forward pass sees it (arrays of T). */
typedef struct lv_ubatch {
    int64_t T;
    const lv_token *token;  /* LV_TOKEN_EMBD: the input is row i of embd */
    const float *embd;      /* (T x n_embd) or NULL */
    const lv_pos *pos;
    const lv_pos *pos_mrope; /* M-RoPE models: row r of token i at pos_mrope[r * mrope_stride + i]; NULL: (pos, pos, pos, 0) */
    int64_t mrope_stride;
    const lv_seq_id *seq;
    const int64_t *slot;    /* index of each token among the tokens its sequence appends in this step */
    const int64_t *n_vis;   /* how many of those are written when the token attends */
    const int32_t *out_row; /* row of the token's logits in `logits`, or -1 for no logits */
    int64_t n_out;          /* tokens with out_row >= 0 */
    float *logits;          /* (rows, n_vocab): output row r at logits + r * n_vocab */
} lv_ubatch;

typedef struct lv_fwd_params {
    int64_t n_ubatch;     /* most tokens of one micro-batch */
    int64_t n_seq_max;
    lv_kv_type kv_type;   /* the cache keys' element type (the query is rounded to f16 for f16 keys, to q8_0 for quantized ones) */
    lv_kv_type kv_type_v; /* the values' */
    /* LServe page selection at decode on the streams that keep key statistics */
    bool select;
    int32_t kv_budget;    /* tokens of selected pages per query head: max(3, kv_budget / page) pages */
    int32_t page_size;
    int32_t select_every; /* reselect every N decode steps ... */
    float select_drift;   /* ... and when a query head's cosine with the selecting query falls below this */
    bool select_shared;   /* one selection per KV head (max over its query heads) */
    lv_abort_fn abort_fn; /* polled between layers */
    void *abort_user;
} lv_fwd_params;

typedef struct lv_fwd {
    const lv_model *model;
    lv_threadpool *tp;
    int n_threads;
    lv_kv *kv;
    lv_rope_params rope;     /* the global layers' RoPE */
    lv_rope_params rope_swa; /* the sliding-window layers' (their own base and scale) */
    lv_fwd_params p;

    /* LServe: the pages selected per (sequence, layer, query head), reused for select_every steps */
    int32_t sel_k;               /* pages per selection: max(3, kv_budget / page) */
    int32_t *sel_pages;          /* (n_seq, n_layer, n_head, sel_k + 1) the last selection */
    int32_t *sel_n;              /* (n_seq, n_layer, n_head) its length, 0 = none */
    float *sel_q;                /* (n_seq, n_layer, n_head, head_dim_k): the query that made each selection */
    void *sel_scratch;           /* (n_threads, sel_scratch_bytes): page and group scores (lv_kv_select_scratch_bytes) */
    size_t sel_scratch_bytes;
    int32_t *sel_tmp;            /* (n_threads, G + 1, max_spans + 1): the G heads' pages and their union */
    uint32_t *sel_heads;         /* (n_threads, max_spans + 1): which heads chose each page of the union */

    /* scratch, (n_ubatch, ...) */
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
    float *qcap;           /* (n_attn_layers, n_head * Dk): the queries of row qcap_row of the micro-batch, as attention
                              uses them (after norm, RoPE and a scale on q), per KV layer (VideoScan's carrier) */
    int64_t qcap_row;      /* -1: none */
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

    /* qwen35: gated attention and the recurrent (gated delta-net) layers */
    float *qg;               /* (T, 2 * n_head * Dk): [q | gate] per head */
    float *rs_qkv;           /* (T, conv_dim): q, k, v before and after the convolution */
    float *rs_z;             /* (T, d_inner) the output gate */
    float *rs_b, *rs_a;      /* (T, n_v_heads): beta, then alpha -> decay */
    float *rs_o;             /* (T, d_inner) the heads' outputs */
    const float **rs_src;    /* (n_seq_max) a layer's state before the micro-batch (lv_kv_state) */
    float **rs_dst;          /* (n_seq_max) and the buffer it is written to */
    int64_t *useq;           /* (n_ubatch) the sequences of the micro-batch, once each */
    int64_t n_useq;
} lv_fwd;

/* Size and allocate f for model m over the cache kv (f zeroed by the caller). On failure the
 * status is returned and lv_fwd_free(f) releases what was allocated. */
lv_status lv_fwd_init(lv_fwd *f, const lv_model *m, lv_threadpool *tp, lv_kv *kv, const lv_fwd_params *p);
void      lv_fwd_free(lv_fwd *f);
/* Drop sequence seq's page selections (a prefill of it starts them over). */
void      lv_fwd_forget_selections(lv_fwd *f, int64_t seq);

/* The forward pass of the llama family (llama, qwen2, qwen3, smollm3, gemma3, and the hybrid
 * qwen35, whose recurrent layers read and write their state through lv_kv_state) over one micro-batch. Writes K/V of the
 * micro-batch into the reserved slots and the logits of its output tokens. Returns
 * LV_ERR_ABORTED if the abort callback fired (the caller rolls the cache back). */
lv_status lv_forward_llama(lv_fwd *f, const lv_ubatch *ub);

#endif
