/*
 * kv.h: the paged KV cache.
 *
 * DESIGN
 *  - Storage is split per (layer, KV head): each has its own pool of fixed-size pages of
 *    `page_size` token slots (K rows, V rows and the token's stored position). Keys are stored
 *    after RoPE at the token's original position, so nothing is ever re-rotated.
 *  - A sequence owns one *stream* per (layer, KV head): a page table (list of page ids in that
 *    pool) and a token count. In the dense policy every stream of a sequence holds the same
 *    tokens in the same slots; because streams are per (layer, KV head), a later policy can give
 *    each head its own layout (sink + ring window, selected pages, pruned tokens) without
 *    changing the forward pass, which only ever asks a stream for its spans and for a slot to
 *    write.
 *  - Appending is transactional. lv_kv_reserve() takes the pages a whole batch needs from every
 *    pool up front (or fails, changing nothing); the forward pass writes slots past each
 *    stream's committed length; lv_kv_commit() publishes them, lv_kv_rollback() returns the
 *    pages and leaves the cache exactly as it was.
 *  - Memory is reserved at creation (anonymous mappings committed lazily by the OS): no
 *    allocation per token.
 */
#ifndef LV_KV_H
#define LV_KV_H

#include "kernels.h"
#include "lv_internal.h"

typedef struct lv_kv lv_kv;

typedef struct lv_kv_params {
    int64_t n_layer;
    int64_t n_head_kv;
    int64_t head_dim_k;
    int64_t head_dim_v;
    int64_t page_size;  /* token slots per page */
    int64_t n_ctx;      /* token capacity, all sequences together */
    int64_t n_seq_max;
    lv_kv_type type;
} lv_kv_params;

lv_status lv_kv_create(const lv_kv_params *p, lv_kv **out);
void      lv_kv_free(lv_kv *kv);

/* ---- transactions ----
 * n_new: (n_seq_max) tokens each sequence will append in this step; last_pos: (n_seq_max) the
 * position of the last of them (for the bookkeeping that commit publishes).
 * Returns LV_ERR_CONTEXT_FULL (with a message) and changes nothing if they do not fit. */
lv_status lv_kv_reserve(lv_kv *kv, const int64_t *n_new, const int32_t *last_pos);
void      lv_kv_commit(lv_kv *kv);
void      lv_kv_rollback(lv_kv *kv);

/* Committed tokens of a sequence, and the largest stored position (-1 if empty). */
int64_t lv_kv_seq_len(const lv_kv *kv, int64_t seq);
int32_t lv_kv_seq_max_pos(const lv_kv *kv, int64_t seq);

/* Write token slot `slot` (0-based index in the stream, committed or reserved) of the stream
 * (seq, layer, head): k (Dk floats), v (Dv floats), stored position pos. */
void lv_kv_write(lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t slot, const float *k, const float *v, int32_t pos);

/* The dense plan for one stream: its first n_tokens slots as one span per page. spans must hold
 * lv_kv_max_spans(kv) entries. Returns the number of spans. */
int     lv_kv_dense_spans(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t n_tokens, lv_attn_span *spans);
int64_t lv_kv_max_spans(const lv_kv *kv);

/* Remove the tokens of seq with position >= p0 (a suffix). */
lv_status lv_kv_seq_truncate(lv_kv *kv, int64_t seq, int32_t p0);
void      lv_kv_clear(lv_kv *kv);

lv_kv_type lv_kv_type_of(const lv_kv *kv);
int64_t    lv_kv_used_bytes_(const lv_kv *kv);
int64_t    lv_kv_capacity_bytes_(const lv_kv *kv);
int64_t    lv_kv_n_ctx(const lv_kv *kv);

#endif
