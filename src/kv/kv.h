/*
 * kv.h: the paged KV cache with a policy per (layer, KV head).
 *
 * The module src/kv/ (docs/architecture.md):
 *   Owns:  the paged KV cache: a pool and a policy per (layer, KV head), streams, LServe key
 *          statistics and page selection, transactions; DuoAttention head patterns (heads.c).
 *   Never: computes attention or touches weights.
 *
 * DESIGN
 *  - Storage is split per (layer, KV head): each has its own pool of fixed-size pages of
 *    `page_size` token slots (K rows, V rows and the token's stored position). Keys are stored
 *    after RoPE at the token's original position, so nothing is ever re-rotated.
 *  - A sequence owns one *stream* per (layer, KV head): a page table (page ids of that pool, in
 *    token order) and counts. Because the unit is a (layer, KV head), each can follow its own
 *    policy without the forward pass knowing: the pass only asks a stream for a slot to write
 *    and for the spans (and mask) its queries read.
 *  - Policies:
 *      FULL           every token is kept (DuoAttention retrieval heads, full LongGen layers);
 *                     optionally with LServe's key statistics: per 16-token logical page, the
 *                     channel-wise min and max of the keys, updated as tokens are written.
 *      SINK_WINDOW    the first `sink` tokens and the last `window` (DuoAttention streaming
 *                     heads, LongGen sink+window layers): a query at position p sees key j iff
 *                     pos_j <= p and (j is a sink token or p - pos_j < window). After each step
 *                     the pages holding only tokens no later query can see are returned, so
 *                     the memory is sink + window + one step's tokens, whatever the context.
 *      BLOCK_STRIDED  LongGen / Phi-3-small blocks of `block` positions: query block qb sees key
 *                     block kb <= qb iff qb - kb < local_blocks or (kb + 1) % vert_stride == 0;
 *                     pages of blocks no later query can see are returned.
 *  - Positions: a page keeps a 32-bit base and one of three forms for its slots' positions: none
 *    stored (slot j at base + j: consecutive positions, what a prompt and decoding write), 16-bit
 *    offsets from the base (positions with gaps within 65535 of it: a batch whose positions skip,
 *    the kept tokens of a pruned stream), or 32-bit positions (anything else). A page's form is
 *    chosen when a reservation takes it or writes into it, from the batch's first and last
 *    positions (lv_kv_reserve_pos), and only ever widens while it holds tokens (a one-writer path,
 *    lv_kv_write or pruning's moves, widens it when a position does not fit); spans carry the form
 *    (lv_attn_span.pos / pos16 / pos0). The result is exact: every slot reads back its position.
 *  - Appending is transactional. lv_kv_reserve() takes the pages a whole batch needs from every
 *    pool up front (or fails, changing nothing); the forward pass writes slots past each
 *    stream's stored tokens; lv_kv_commit() publishes them and evicts what the policies drop;
 *    lv_kv_rollback() returns the pages and leaves the cache (key statistics included) exactly
 *    as it was.
 *  - Memory is reserved at creation (anonymous mappings committed lazily by the OS), sized per
 *    pool by its policy: no allocation per token.
 *  - Recurrent state (hybrid models: qwen35's gated delta-net layers): each sequence also owns
 *    `rs_floats` floats per recurrent layer, whatever its length. It lives in the same
 *    transaction: two buffers per (sequence, layer), the committed one and the one this
 *    transaction writes (lv_kv_state); commit makes the written one current, rollback forgets
 *    it, so a failed or aborted step leaves the state as it was. A state cannot be rewound: a
 *    sequence with one can lose all its tokens (lv_kv_seq_truncate at or before its first
 *    position) or none, as llama.cpp's recurrent memory.
 */
#ifndef LV_KV_H
#define LV_KV_H

#include "core/core.h"
#include "kernels/kernels.h"

typedef struct lv_kv lv_kv;

#define LV_KV_LOGICAL_PAGE 16 /* tokens per LServe logical page (key statistics granularity) */

typedef struct lv_kv_head_policy {
    uint8_t kind;   /* lv_attn_mask_kind: LV_MASK_CAUSAL (full), LV_MASK_SINK_WINDOW, LV_MASK_BLOCK_STRIDED */
    bool stats;     /* FULL only: keep per-logical-page key min/max for page selection */
    int32_t sink, window;
    int32_t block, local_blocks, vert_stride;
} lv_kv_head_policy;

typedef struct lv_kv_params {
    int64_t n_layer;
    int64_t n_head_kv;
    int64_t head_dim_k;
    int64_t head_dim_v;
    int64_t page_size;  /* token slots per page */
    int64_t n_ctx;      /* tokens of all sequences together (the logical length) */
    int64_t n_seq_max;
    int64_t n_batch;    /* at most this many tokens are appended to one sequence in one step */
    lv_kv_type type;    /* the keys' element type (f32, f16, q8_0, q4_0) */
    lv_kv_type type_v;  /* the values' (LV_KV_SAME: type) */
    const lv_kv_head_policy *policies; /* (n_layer * n_head_kv), copied; NULL: every head FULL */
    int64_t stats_group; /* > 0: streams with key statistics also keep them per group of this many pages (two-level selection) */
    bool stats_group_exact; /* with stats_group: select by the exact rule (lv_kv_select_pages_multi), not the kept-groups rule */
    int64_t n_rs_layer; /* recurrent layers (0: none) */
    int64_t rs_floats;  /* floats of state per (sequence, recurrent layer) */
} lv_kv_params;

lv_status lv_kv_create(const lv_kv_params *p, lv_kv **out);
void      lv_kv_free(lv_kv *kv);

/* ---- transactions ----
 * n_new: (n_seq_max) tokens each sequence appends in this step (at most n_batch); last_pos:
 * (n_seq_max) the position of the last of them. LV_ERR_CONTEXT_FULL (with a message) and nothing
 * changed if they do not fit. */
lv_status lv_kv_reserve(lv_kv *kv, const int64_t *n_new, const int32_t *last_pos);
/* The same, knowing also first_pos (n_seq_max): the position of the first of each sequence's new
 * tokens. Positions must increase along a sequence; the reservation chooses how the pages the new
 * tokens fill keep their positions (a page's base and, per slot, nothing when the positions are
 * consecutive, a 16-bit offset when they lie within 65535 of the base, else the position: see
 * "Positions" above). lv_kv_write_slot relies on that choice (it asserts that each position fits
 * it); lv_kv_write widens a page's form when a position does not. lv_kv_reserve (first_pos
 * unknown) takes the positions as following the sequence's largest. */
lv_status lv_kv_reserve_pos(lv_kv *kv, const int64_t *n_new, const int32_t *first_pos, const int32_t *last_pos);
void      lv_kv_commit(lv_kv *kv);
void      lv_kv_rollback(lv_kv *kv);

/* Tokens a sequence has appended (its logical length), and its largest position (-1 if empty). */
int64_t lv_kv_seq_len(const lv_kv *kv, int64_t seq);
int32_t lv_kv_seq_max_pos(const lv_kv *kv, int64_t seq);

const lv_kv_head_policy *lv_kv_policy(const lv_kv *kv, int64_t layer, int64_t head);

/* Write the k_new-th token this transaction appends to sequence seq, in stream (layer, head):
 * k (Dk floats), v (Dv floats), its position; and widen the stream's LServe key statistics by k
 * (lv_kv_write_stats). */
void lv_kv_write(lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t k_new, const float *k, const float *v, int32_t pos);
/* The two halves of lv_kv_write, for a forward pass that writes the rows of one stream from
 * several threads: the statistics of a logical page are a read-modify-write shared by its slots,
 * so the slot writes (lv_kv_write_slot: any thread, one per slot) go first and the statistics
 * (lv_kv_write_stats: one thread per stream, slots in order) after them. */
void lv_kv_write_slot(lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t k_new, const float *k, const float *v, int32_t pos);
void lv_kv_write_stats(lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t k_new, const float *k);

/* What a query of sequence seq reads in stream (layer, head) once the first n_new_visible tokens
 * of this transaction are written: every stored page as a span (the last one partial), and the
 * mask the policy implies. spans must hold lv_kv_max_spans(kv) entries, or be NULL for the mask
 * alone (then 0 is returned). Returns the span count. */
int     lv_kv_spans(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t n_new_visible, lv_attn_span *spans,
                    lv_attn_mask *mask);
int64_t lv_kv_max_spans(const lv_kv *kv);
/* Stored pages of the stream (with the transaction's first n_new_visible tokens). */
int64_t lv_kv_n_pages(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t n_new_visible);

/* LServe's query-aware page selection on a stream with key statistics: scores each page by
 * max over its logical pages of sum_d max(q_d * kmax_d, q_d * kmin_d), keeps the best
 * (k_pages - 1) pages among all but the newest, plus the newest; every page if there are at most
 * k_pages. Writes the chosen page indices in increasing order; returns how many. */
/* The same for n_q queries that share the stream (the query heads of a KV head), reading the
 * statistics once: query h is q + h * q_stride, its pages go to pages_out + h * out_stride.
 * scratch: lv_kv_select_scratch_bytes(kv, n_q). With groups (stats_group), each query keeps its best
 * 2 (k_pages - 1) / stats_group + 2 groups by the same bound over a group's statistics (an upper
 * bound of its pages' scores) and only the pages of groups some query kept are scored; with no
 * more groups than that, every page is, as without groups. With stats_group_exact (and not shared),
 * groups are instead expanded in decreasing order of their largest bound over the queries (ties:
 * the older group), their pages scored for every query, until each query holds k_pages - 1 scores
 * whose worst is greater than its own bound on every group left: each query then gets exactly the
 * pages of the exhaustive selection, at a cost that depends on how far the bounds separate the
 * groups (with shared, it scores every page).
 * Every query gets the returned count. shared: one selection
 * for all n_q queries, a page scoring the max of their scores (not LServe's rule: a KV head then
 * reads k_pages pages however many query heads it serves), written for each query. */
int lv_kv_select_pages_multi(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t n_new_visible, const float *q,
                             int64_t q_stride, int n_q, bool shared, int64_t k_pages, int32_t *pages_out, int64_t out_stride, void *scratch);
size_t lv_kv_select_scratch_bytes(const lv_kv *kv, int n_q);
/* Two-level selection: the groups of `group` pages each query keeps when it selects k_pages pages */
static inline int64_t lv_kv_groups_kept(int64_t k_pages, int64_t group) { return 2 * (k_pages - 1) / group + 2; }
int lv_kv_select_pages(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t n_new_visible, const float *q,
                       int64_t k_pages, int32_t *pages_out, void *scratch /* 8 bytes per page */);
/* The spans of the given pages (indices into the stream's page list, increasing). */
int lv_kv_spans_of_pages(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t n_new_visible, const int32_t *pages,
                         int n_pages, lv_attn_span *spans);

/* The recurrent state of (seq, recurrent layer rl) inside a transaction that appends to seq:
 * *src is the state before this call's tokens (NULL: all zeros, a sequence without tokens) and
 * *dst the buffer to write the state after them. The first call of a transaction for (seq, rl)
 * gives the committed state as src and the other buffer as dst; later calls give dst == src
 * (updated in place). Call from one thread per (seq, rl). */
void    lv_kv_state(lv_kv *kv, int64_t seq, int64_t rl, const float **src, float **dst);
/* Bytes of recurrent state per sequence (all recurrent layers) */
int64_t lv_kv_state_bytes_per_seq(const lv_kv *kv);

/* Remove the tokens of seq with position >= p0 (a suffix). Removing the whole sequence always
 * works; removing part of it returns LV_ERR_UNSUPPORTED, changing nothing, if a streaming or
 * block-strided stream of the sequence already evicted tokens, or if the cache keeps a
 * recurrent state (which cannot be rewound). A pruned sequence (lv_kv_seq_prune_tail) can be cut
 * anywhere: the logical tokens removed are counted with its pruned ranges, so its length and
 * largest position stay those of the tokens appended. */
lv_status lv_kv_seq_truncate(lv_kv *kv, int64_t seq, int32_t p0);

/* QuickPrefill's pruning (../shared/PAPERS.md §3.2, docs/video-questions.md). In every layer, of
 * the sequence's last n_last tokens (committed, consecutive positions, not pruned before), those
 * with prunable[i] (NULL: all) are cut to the k_keep with the smallest L2 norm of their stored keys
 * (dequantized) concatenated over the layer's FULL heads (ties: the earlier token); the others stay,
 * in order, with their positions. Only FULL streams are pruned: streaming (sink + window) and
 * block-strided streams keep their own policies; a layer without FULL heads is left alone. The
 * kept slots move down dimension by dimension (keys are transposed per page), the freed pages go
 * back to the pools, LServe statistics are rebuilt from the first moved slot. The sequence's
 * logical length and largest position do not change (the positions are the tokens'); the range is
 * remembered for lv_kv_seq_truncate. Nothing is pruned if at most k_keep tokens are prunable.
 * *n_pruned: tokens removed from every FULL stream. Errors change nothing. Outside a transaction. */
lv_status lv_kv_seq_prune_tail(lv_kv *kv, int64_t seq, int64_t n_last, const uint8_t *prunable, int64_t k_keep, int64_t *n_pruned);
/* VideoScan's pruning (docs/video-questions.md): of the sequence's last n_last tokens (as for
 * lv_kv_seq_prune_tail), layer l's FULL streams keep those with keep[l * n_last + i] != 0, in
 * order, with their positions; the range is remembered as pruned (also when every layer keeps
 * them all, so that lv_kv_seq_drop_range can later remove some of them). *n_dropped: tokens removed from the first FULL layer's streams. */
lv_status lv_kv_seq_prune_mask(lv_kv *kv, int64_t seq, int64_t n_last, const uint8_t *keep, int64_t *n_dropped);
/* VideoScan's memory cap: remove the tokens with positions in [p0, p1), which must lie inside one
 * range pruned before, from every FULL stream (later slots move down; pages freed; LServe
 * statistics rebuilt). The logical length does not change. *n_dropped: tokens the first FULL
 * stream lost. */
lv_status lv_kv_seq_drop_range(lv_kv *kv, int64_t seq, int32_t p0, int32_t p1, int64_t *n_dropped);
/* Make sequence dst (empty) a copy of sequence src: every stream's pages (keys, values, positions,
 * LServe statistics and group statistics) copied into pages of its own, its evictions, pruned
 * ranges, length and recurrent state alike, so that dst continues exactly as src would (llama.cpp's
 * seq_cp for a whole sequence). LV_ERR_CONTEXT_FULL when the pools or n_ctx lack room; errors
 * change nothing. Outside a transaction. */
lv_status lv_kv_seq_copy(lv_kv *kv, int64_t src, int64_t dst);
/* The stored key of a slot as floats (dequantized). */
void      lv_kv_load_key(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t slot, float *out);
/* Tokens a stream holds (tests, memory accounting) */
int64_t   lv_kv_stream_n_stored(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head);
void      lv_kv_clear(lv_kv *kv);

lv_kv_type lv_kv_type_of(const lv_kv *kv);   /* the keys' type */
lv_kv_type lv_kv_type_v_of(const lv_kv *kv); /* the values' */
int64_t    lv_kv_page_size(const lv_kv *kv);
int64_t    lv_kv_used_bytes_(const lv_kv *kv);
int64_t    lv_kv_capacity_bytes_(const lv_kv *kv);
/* Bytes of the pages taken from the pools (K, V, positions and key statistics), reserved or stored. */
int64_t    lv_kv_pages_in_use_bytes_(const lv_kv *kv);
int64_t    lv_kv_n_ctx(const lv_kv *kv);

#endif
