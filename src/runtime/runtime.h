/*
 * runtime.h: a context = a model + a KV cache with its attention plan + the forward pass's state
 * (model/forward.h) + the outputs of the last lv_decode. Everything is sized at creation;
 * decoding allocates nothing.
 *
 * The module src/runtime/ (docs/architecture.md):
 *   Owns:  contexts: the attention plan (a KV policy per head) from the parameters, batch
 *          validation, the KV transaction around a step, micro-batching, the outputs; samplers.
 *   Never: reads files or computes a layer itself.
 */
#ifndef LV_RUNTIME_H
#define LV_RUNTIME_H

#include "kv/kv.h"
#include "model/forward.h"
#include "model/model.h"

struct lv_context {
    lv_model *model;
    lv_context_params p;
    lv_threadpool *tp;
    bool own_tp;
    lv_kv *kv;

    /* the attention plan */
    lv_kv_head_policy *policies; /* (n_layer, n_head_kv) */
    uint8_t *retrieval;          /* (n_layer, n_head_kv) 1 = full attention head */

    lv_fwd fw;                   /* the forward pass's state and scratch (model/forward.h) */

    /* per-decode bookkeeping, (n_batch) and (n_seq_max) */
    int64_t *slot;
    int64_t *n_vis;
    int32_t *out_row;
    int64_t *seq_count;
    int64_t *seq_new;
    int32_t *seq_last;
    int32_t *seq_first;  /* (n_seq_max) the batch's first position per sequence (lv_kv_reserve_pos) */
    /* M-RoPE models: the batch's four position rows (4 x n_batch), and per sequence the offset of
     * the rotary position from the cache position (HF's rope_deltas: after an image, whose tokens
     * share t, the next text token's t is its position plus this), and its value after the batch */
    lv_pos *mrope_pos;
    int32_t *mrope_delta, *mrope_delta_new;

    /* outputs of the last lv_decode */
    float *logits;      /* (n_batch, n_vocab), big allocation */
    size_t logits_size;
    int32_t *logit_row; /* (n_batch): batch index -> row, or -1 */
    int32_t n_batch_last;
    int32_t last_out;   /* batch index of the last token with logits, -1 */
    /* the last token of the last successful lv_decode, whose queries fw.qcap holds (VideoScan) */
    lv_seq_id qcap_seq; /* -1: none */
    lv_pos qcap_pos;
};

/* The sampler's logits after its penalties (its own buffer, valid until the next call), or logits
 * itself when the penalties are off or the history is empty: what lv_sampler_sample draws from
 * (tests/runtime/test_sampler.c checks it against the formula). */
const float *lv_sampler_penalized(lv_sampler *smp, const float *logits);

#endif
