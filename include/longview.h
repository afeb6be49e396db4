/*
 * longview.h: the public C API of longview, a long-context / long-video LLM engine.
 *
 * Conventions (see docs/architecture.md):
 *  - Handles are opaque. Options are passed in params structs that start from
 *    lv_*_default_params().
 *  - Every fallible function returns an lv_status (LV_OK == 0). On failure a human-readable
 *    message naming the offending input is available from lv_last_error() on the same thread.
 *  - Free functions accept NULL.
 *  - The library never exits the process and never writes to stdout. Diagnostics go to the
 *    log callback (default: warnings and errors to stderr).
 *  - Sizes, counts and offsets are 64-bit; token ids, positions and sequence ids are int32.
 *
 * Thread safety: a lv_model is immutable after load and may be shared by many contexts and
 * threads. A lv_context is used by one thread at a time. lv_last_error() is per thread.
 */
#ifndef LONGVIEW_H
#define LONGVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LV_VERSION_STRING "0.1.0"

typedef int32_t lv_token;
typedef int32_t lv_pos;
typedef int32_t lv_seq_id;

/* ---- status, errors, logging ------------------------------------------------------------ */

typedef enum lv_status {
    LV_OK                = 0,
    LV_ERR_INVALID_ARG   = -1, /* a parameter or an input (token id, batch, request) is invalid */
    LV_ERR_IO            = -2, /* open/read/write/mmap failed */
    LV_ERR_FORMAT        = -3, /* a file is malformed, truncated or hostile */
    LV_ERR_UNSUPPORTED   = -4, /* well-formed but not supported (architecture, tensor type) */
    LV_ERR_NOMEM         = -5, /* allocation failed */
    LV_ERR_CONTEXT_FULL  = -6, /* the KV cache has no room for this batch; nothing was changed */
    LV_ERR_ABORTED       = -7, /* the abort callback asked to stop */
    LV_ERR_INTERNAL      = -8, /* a broken invariant (a bug) */
} lv_status;

/* A static string naming the status ("invalid argument", ...). Never NULL. */
const char *lv_status_str(lv_status st);

/* The detailed message of the last failure on this thread ("" if none). The pointer stays valid
 * until the next failing call on this thread. */
const char *lv_last_error(void);

typedef enum lv_log_level {
    LV_LOG_DEBUG = 0,
    LV_LOG_INFO  = 1,
    LV_LOG_WARN  = 2,
    LV_LOG_ERROR = 3,
} lv_log_level;

typedef void (*lv_log_fn)(lv_log_level level, const char *msg, void *user);

/* Route library diagnostics to fn (NULL restores the default stderr logger). Messages below
 * min_level are dropped before formatting. Not thread-safe with concurrent logging: call at startup. */
void lv_log_set(lv_log_fn fn, void *user, lv_log_level min_level);

/* ---- thread pool ------------------------------------------------------------------------ */

/* One pool per process is the intended use: model, video and server share it. Workers spin
 * briefly after each job and then sleep, so an idle pool burns no CPU. */
typedef struct lv_threadpool lv_threadpool;

/* n_threads <= 0 means one per online core. The calling thread of lv_threadpool_run counts as
 * one of the n_threads. Returns NULL (and sets lv_last_error) on failure. */
lv_threadpool *lv_threadpool_create(int n_threads);
void           lv_threadpool_free(lv_threadpool *tp);
int            lv_threadpool_n_threads(const lv_threadpool *tp);
/* Number of online cores (at least 1). */
int            lv_n_cores(void);

/* ---- models ----------------------------------------------------------------------------- */

typedef struct lv_model lv_model;

typedef struct lv_model_params {
    bool vocab_only;  /* load only the tokenizer (a vocab GGUF has no tensors) */
    bool use_mmap;    /* map the file (default); false reads tensors into memory */
} lv_model_params;

lv_model_params lv_model_default_params(void);

/* Load a GGUF model. On failure *out is NULL and lv_last_error() says which key, tensor or
 * offset was wrong. */
lv_status lv_model_load(const char *path, lv_model_params params, lv_model **out);
void      lv_model_free(lv_model *model);

int32_t lv_model_n_vocab(const lv_model *model);
int32_t lv_model_n_ctx_train(const lv_model *model);
int32_t lv_model_n_embd(const lv_model *model);
/* Positions per token the model rotates by: 4 for M-RoPE models (qwen2vl), else 1. */
int32_t lv_model_n_pos_per_token(const lv_model *model);
int32_t lv_model_n_layer(const lv_model *model);
int32_t lv_model_n_head(const lv_model *model);
int32_t lv_model_n_head_kv(const lv_model *model);
/* "llama" or "qwen2" */
const char *lv_model_arch(const lv_model *model);

/* Sizes of a model, for reports and benchmarks. */
typedef struct lv_model_stats {
    int64_t n_params;         /* all tensor elements */
    int64_t n_bytes;          /* all tensor bytes */
    int64_t n_params_matmul;  /* elements of the weight matrices used per token (excluding the embedding table
                                 unless it is also the output matrix) */
    int64_t n_bytes_matmul;   /* their bytes: what a decode step must read */
    int32_t n_layer, n_head, n_head_kv, head_dim_k, head_dim_v, n_embd, n_ff, n_vocab;
    char    ftype[16];        /* the most common 2-D weight type, e.g. "q8_0" */
} lv_model_stats;

void lv_model_get_stats(const lv_model *model, lv_model_stats *out);

/* Write a human-readable description of the model (architecture, hyper-parameters, tensors,
 * types, sizes, what longview supports) into buf. Returns the length it needs (excluding the
 * terminating NUL), like snprintf. */
int64_t lv_model_describe(const lv_model *model, char *buf, size_t buf_size);

/* ---- contexts, batches, decoding --------------------------------------------------------- */

/* Element type of the KV cache, as llama.cpp's -ctk / -ctv. The quantized types are ggml's blocks
 * of 32 elements along the head dimension with one f16 scale each (head dims a multiple of 32):
 * the attention kernels read them as stored (docs/long-context.md, "Quantized KV pages"). */
typedef enum lv_kv_type {
    LV_KV_SAME = -1, /* kv_type_v only: the values take kv_type */
    LV_KV_F32  = 0,
    LV_KV_F16  = 1,
    LV_KV_Q8_0 = 2,  /* 8-bit, 8.5 bits per element */
    LV_KV_Q4_0 = 3,  /* 4-bit (x = d (q - 8)), 4.5 bits per element */
} lv_kv_type;

/* "f32", "f16", "q8_0", ... ("?" for an unknown value), and back (false for an unknown name) */
const char *lv_kv_type_name(lv_kv_type t);
bool        lv_kv_type_from_name(const char *name, lv_kv_type *out);

typedef struct lv_context lv_context;

typedef bool (*lv_abort_fn)(void *user);

/* ---- long-context attention: DuoAttention heads, LServe page selection, LongGen layers ----
 * Every (layer, KV head) gets a policy: full (retrieval) heads keep every token; streaming heads
 * and sink+window layers keep the first `sink` tokens and the last `window` (token-granular
 * Lambda mask, in prefill as in decode, constant memory); block-strided layers keep the blocks a
 * future query can still see. At decode, retrieval heads may read only the pages LServe's
 * selector picks. docs/long-context.md has the rules and the defaults' sources. */

/* A DuoAttention head pattern: one trained gate per (layer, KV head), as in the published
 * full_attention_heads.tsv files (rows = layers, tab-separated columns = KV heads). */
typedef struct lv_head_pattern lv_head_pattern;

lv_status lv_head_pattern_load(const char *path, lv_head_pattern **out);
void      lv_head_pattern_free(lv_head_pattern *p);
int32_t   lv_head_pattern_n_layer(const lv_head_pattern *p);
int32_t   lv_head_pattern_n_head_kv(const lv_head_pattern *p);
float     lv_head_pattern_gate(const lv_head_pattern *p, int32_t layer, int32_t head);
/* DuoAttention's binarization: clip gates to [0, 1], add uniform noise in [0, 1e-6) from seed,
 * threshold at the global quantile `sparsity` of all layers x heads: a head is retrieval iff its
 * value >= the threshold. sparsity <= 0: every head retrieval; >= 1: every head streaming.
 * is_retrieval receives n_layer * n_head_kv flags (layer-major). Returns the retrieval count. */
int64_t   lv_head_pattern_binarize(const lv_head_pattern *p, float sparsity, uint64_t seed, uint8_t *is_retrieval);

typedef struct lv_attention_params {
    const lv_head_pattern *heads; /* DuoAttention pattern (not owned; may be freed after lv_context_create); NULL: none */
    float    sparsity;            /* fraction of KV heads made streaming (default 0.5) */
    uint64_t pattern_seed;        /* seed of the tie-breaking noise (default 42) */
    int32_t  sink;                /* tokens kept at the start by streaming heads / sink+window layers (default 64) */
    int32_t  window;              /* most recent tokens they keep (default 256) */
    bool     select;              /* LServe: retrieval heads read only selected pages at decode */
    int32_t  kv_budget;           /* tokens of selected pages per query head (default 4096; a multiple of the page size) */
    int32_t  select_every;        /* selection recomputed every N decode steps (default 4) */
    float    select_drift;        /* ... and sooner when a query head's cosine with the query that made the selection
                                     falls below this (default 0.5; 0: never sooner, LServe's rule) */
    bool     select_shared;       /* one selection per KV head for all its query heads, a page scoring the max of
                                     their scores (default false: per query head, LServe's rule) */
    int32_t  select_groups;       /* two-level selection: pages per group of key statistics (0: off, the default).
                                     Each query head scores the groups, keeps its best 2 (budget pages - 1) / N + 2
                                     groups, and scores only the pages inside the groups some head kept: the cost
                                     of a selection grows with the groups, not the pages. Exhaustive whenever
                                     those groups are all the groups (docs/long-context.md) */
    bool     select_groups_exact; /* with select_groups: the exact rule instead (groups expanded in decreasing order
                                     of their largest bound over the query heads, until each head's (budget pages - 1)-th
                                     best page score exceeds its bound on every group left): always exhaustive
                                     selection's pages, at a cost that depends on how well the groups' bounds
                                     separate (default false) */
    const char *layer_plan;       /* LongGen: NULL = the model's metadata, else all full; "longgen" = layer l full iff
                                     l % 3 == 1, the others sink+window; or one word per layer, comma separated:
                                     full | sw (sink+window) | bs (block-strided) */
    int32_t  block_size;          /* block-strided layers: block size (default 64) */
    int32_t  local_blocks;        /* ... local blocks (default 16) */
    int32_t  vert_stride;         /* ... vertical stride (default 8) */
} lv_attention_params;

lv_attention_params lv_attention_default_params(void);

typedef struct lv_context_params {
    uint32_t n_ctx;        /* KV capacity in tokens, all sequences together; 0 = the model's training context */
    uint32_t n_batch;      /* max tokens in one lv_decode call */
    uint32_t n_ubatch;     /* tokens computed at once inside lv_decode (scratch is sized by it) */
    uint32_t n_seq_max;    /* number of distinct sequence ids (0 .. n_seq_max-1) */
    uint32_t kv_page_size; /* token slots per KV page */
    lv_kv_type kv_type;    /* element type of the KV cache's keys, and of its values unless kv_type_v says otherwise (default f16) */
    lv_kv_type kv_type_v;  /* element type of the values; LV_KV_SAME (the default): kv_type */
    int32_t  n_threads;    /* used only when threadpool is NULL: a private pool of this many threads (<= 0: cores) */
    lv_threadpool *threadpool; /* shared pool (not owned); NULL = create a private one */
    lv_abort_fn abort_fn;  /* polled between layers; returning true aborts lv_decode */
    void    *abort_user;
    lv_attention_params attention; /* long-context attention; the default is dense everywhere */
} lv_context_params;

lv_context_params lv_context_default_params(void);

lv_status lv_context_create(lv_model *model, lv_context_params params, lv_context **out);
void      lv_context_free(lv_context *ctx);
uint32_t  lv_context_n_ctx(const lv_context *ctx);
/* The attention plan in words: per layer the policy and retrieval-head count, KV bytes per token
 * in this mode and dense. Same return convention as snprintf. */
int64_t   lv_context_describe_plan(const lv_context *ctx, char *buf, size_t buf_size);
uint32_t  lv_context_n_batch(const lv_context *ctx);
/* The model the context was created for, and the pool its steps run on (its own or the shared one). */
const lv_model *lv_context_model(const lv_context *ctx);
lv_threadpool  *lv_context_threadpool(lv_context *ctx);

/* A batch of tokens, each with its own position and sequence id (as llama.cpp's llama_batch).
 * A token attends to the cached tokens of its own sequence whose position is <= its own
 * (and to the earlier tokens of the same batch in that sequence). Within a batch the positions
 * of one sequence must be strictly increasing and greater than every position already cached for
 * that sequence. logits[i] != 0 asks for the logits of token i (logits == NULL: only the last
 * token's).
 *
 * Embeddings instead of tokens (images: lv_mmproj_encode_*): a token whose id is LV_TOKEN_EMBD
 * takes row i of embd (n_embd floats) as its input instead of a row of the token embedding
 * table; text tokens and embedding rows mix freely in one batch.
 * M-RoPE models (qwen2vl: lv_model_n_pos_per_token() == 4) rotate by four positions per token
 * (t, h, w, e): pos_mrope (4 x n_tokens, row-major: all t, then all h, all w, all e) or NULL:
 * all four the token's pos plus the sequence's rotary offset (zero until an image made the
 * rotary positions fall behind the cache positions, as HF's rope_deltas). pos stays the token's place in its sequence (strictly increasing: the
 * causal order, what the cache, masks and sparse plans count), which for images differs from the
 * rotary positions: the tokens of one image share t. */
#define LV_TOKEN_EMBD (-1)
typedef struct lv_batch {
    int32_t    n_tokens;
    lv_token  *token;     /* (n_tokens) */
    lv_pos    *pos;       /* (n_tokens) */
    lv_seq_id *seq_id;    /* (n_tokens) */
    int8_t    *logits;    /* (n_tokens) */
    float     *embd;      /* (n_tokens x n_embd) or NULL: the inputs of LV_TOKEN_EMBD tokens */
    lv_pos    *pos_mrope; /* (4 x n_tokens) or NULL: M-RoPE positions */
} lv_batch;

/* Allocate a batch with room for n_tokens_max tokens (n_tokens = 0). */
lv_batch lv_batch_init(int32_t n_tokens_max);
/* The same with room for embedding rows of n_embd floats and M-RoPE positions. */
lv_batch lv_batch_init_embd(int32_t n_tokens_max, int32_t n_embd);
void     lv_batch_free(lv_batch *batch);

/* Run the forward pass over a batch and append its keys and values to the KV cache.
 * Returns:
 *   LV_OK
 *   LV_ERR_INVALID_ARG   bad token id, sequence id, position order or batch size; nothing changed
 *   LV_ERR_CONTEXT_FULL  the cache cannot hold the batch; nothing changed
 *   LV_ERR_ABORTED       the abort callback fired; the cache is restored to its state before the call
 * On every failure the KV cache is exactly as it was before the call (the append is transactional)
 * and no logits are available until the next successful call. */
lv_status lv_decode(lv_context *ctx, const lv_batch *batch);

/* For benchmarks: append n_tokens positions to sequence seq's cache, after its last one, with
 * pseudo-random keys and values (a function of seed) instead of running the model, so a decode
 * step at a depth of 128k tokens can be timed without a 128k-token prefill. Every plan applies as
 * to real tokens (streaming heads evict, LServe statistics are kept). Decode speed does not depend
 * on the values, only on how many are read. LV_ERR_CONTEXT_FULL if they do not fit (what fitted
 * stays). */
lv_status lv_context_fill_synthetic(lv_context *ctx, lv_seq_id seq, int32_t n_tokens, uint64_t seed);

/* Logits (n_vocab floats) of token i of the last successful lv_decode, or NULL if i is out of
 * range or its logits were not requested. i = -1 is the last token that asked for logits. */
const float *lv_get_logits_ith(lv_context *ctx, int32_t i);

/* Remove the tokens of sequence seq with positions in [p0, p1) (p1 < 0: to the end).
 * seq < 0: every sequence. Only suffix removal is supported in this version: the removed range
 * must extend to the newest token of the sequence. */
lv_status lv_kv_seq_rm(lv_context *ctx, lv_seq_id seq, lv_pos p0, lv_pos p1);
/* Make sequence dst, which must be empty, a copy of sequence src: its keys and values (copied
 * into pages of dst's own), its positions, prunings, evictions, recurrent state and rotary offset,
 * so that decoding on in dst gives what decoding on in src would (llama.cpp's llama_memory_seq_cp
 * for a whole sequence; the server's n choices share one prefill this way). LV_ERR_CONTEXT_FULL
 * without room; on any error nothing changes. */
lv_status lv_kv_seq_cp(lv_context *ctx, lv_seq_id src, lv_seq_id dst);
/* Number of tokens cached for a sequence; -1 if seq is out of range. */
int64_t   lv_kv_seq_n_tokens(const lv_context *ctx, lv_seq_id seq);
/* M-RoPE models: the sequence's rotary offset (rotary position of the next text token minus its
 * cache position, HF's rope_deltas; 0 for other models), and setting it back, to undo a failed
 * multi-step prefill after removing its tokens with lv_kv_seq_rm. */
int32_t   lv_kv_seq_rope_offset(const lv_context *ctx, lv_seq_id seq);
lv_status lv_kv_seq_set_rope_offset(lv_context *ctx, lv_seq_id seq, int32_t offset);
/* QuickPrefill's pruning (docs/video-questions.md): of the sequence's last n_last tokens
 * (consecutive positions, not pruned before), those with prunable[i] != 0 (NULL: all) are cut, in
 * every layer, to floor(n x keep) of them (n: the prunable count; nothing if that keeps them all)
 * with the smallest L2 norm of their keys concatenated over the layer's full-attention KV heads;
 * every other token stays, and kept tokens keep their positions. Each layer chooses on its own.
 * Streaming (DuoAttention) and block-strided heads are not pruned. The sequence's length in
 * positions does not change, and lv_kv_seq_rm removes a suffix of it as of any other sequence
 * (cutting inside a pruned range too). keep in (0, 1].
 * *n_pruned (may be NULL): tokens removed from each full head's cache. */
lv_status lv_kv_seq_prune_keys(lv_context *ctx, lv_seq_id seq, int64_t n_last, const uint8_t *prunable, double keep, int64_t *n_pruned);
/* VideoScan's pruning (docs/video-questions.md): of the sequence's last n_last tokens
 * (consecutive positions, not pruned before), the last of which is the carrier and also the last
 * token of the last lv_decode, every full-attention head keeps the tokens with visual[i] == 0 (the
 * carrier, text) and the k_keep visual ones (VideoScan+) that the carrier's query row attended to
 * most, its softmax per query head averaged over the layer's full-attention heads (the queries as
 * that decode used them, scored again against the stored keys in double precision; ties: the
 * earlier token). Kept tokens keep their positions, the dropped
 * ones leave every full head's cache as with lv_kv_seq_prune_keys (their range is remembered,
 * lv_kv_seq_rm counts them). DuoAttention streaming, sliding-window and block-strided heads keep
 * their own rule (nothing dropped from them). select_layer >= 0: that attention layer's choice is
 * every layer's (the reference's kv_select_layer; it needs a full-attention head); -1: each layer
 * chooses on its own. Recurrent layers: LV_ERR_UNSUPPORTED (n_last 0 only checks that and the
 * selecting layer). *n_dropped: tokens removed from each full head's cache. */
lv_status lv_kv_seq_carrier_keep(lv_context *ctx, lv_seq_id seq, int64_t n_last, const uint8_t *visual, int32_t k_keep, int32_t select_layer,
                                 int64_t *n_dropped);
/* VideoScan's memory cap: remove the tokens at positions [p0, p1), which must lie inside one range
 * pruned before (lv_kv_seq_carrier_keep / lv_kv_seq_prune_keys), from every full-attention head's
 * cache; the others keep their positions, the sequence's length in positions does not change.
 * *n_dropped: tokens removed from each full head's cache. */
lv_status lv_kv_seq_drop_pruned(lv_context *ctx, lv_seq_id seq, lv_pos p0, lv_pos p1, int64_t *n_dropped);
/* Bytes the KV cache holds for its current contents, and its capacity in bytes. */
int64_t   lv_kv_used_bytes(const lv_context *ctx);
int64_t   lv_kv_capacity_bytes(const lv_context *ctx);

/* ---- sampling --------------------------------------------------------------------------- */

typedef struct lv_sampler lv_sampler;

/* Applied in llama.cpp's default order: penalties, top-k, top-p, min-p, temperature, then a
 * draw. temp <= 0 is greedy (argmax of the penalized logits; ties go to the lowest id). top_k <= 0,
 * top_p >= 1 and min_p <= 0 disable their filter.
 * Penalties (llama.cpp's penalties sampler; OpenAI's frequency / presence formula): a token that
 * occurs c > 0 times among the last penalty_last_n tokens given to lv_sampler_accept has its logit
 * l turned into (l <= 0 ? l * penalty_repeat : l / penalty_repeat) - c * penalty_freq - penalty_present.
 * penalty_last_n 0 turns them off, as do penalty_repeat 1 (or 0, read as 1) with freq = present = 0
 * (the defaults: 64, 1, 0, 0). */
typedef struct lv_sampler_params {
    float    temp;
    int32_t  top_k;
    float    top_p;
    float    min_p;
    uint64_t seed;
    int32_t  penalty_last_n;   /* >= 0 */
    float    penalty_repeat;   /* > 0; 0 is read as 1 (off) */
    float    penalty_freq;
    float    penalty_present;
} lv_sampler_params;

lv_sampler_params lv_sampler_default_params(void);
lv_status lv_sampler_create(lv_sampler_params params, int32_t n_vocab, lv_sampler **out);
void      lv_sampler_free(lv_sampler *smp);
/* Pick a token from n_vocab logits. Allocation-free. The token is not added to the penalties'
 * history: the caller does that with lv_sampler_accept (llama.cpp's order). */
lv_token  lv_sampler_sample(lv_sampler *smp, const float *logits);
/* Add a token to the history the penalties look back on (the prompt's tokens, then each token
 * sampled). Allocation-free; does nothing when the penalties are off. */
void      lv_sampler_accept(lv_sampler *smp, lv_token token);
/* Log-probabilities of the raw distribution softmax(logits) over n_vocab (no penalties, no
 * temperature or filters: what llama-server and OpenAI report as logprobs). Returns the
 * log-probability of token, and writes the k (<= n_vocab) most probable tokens and theirs to
 * top_ids / top_logprobs (may be NULL when k is 0), most probable first, ties to the lowest id.
 * NaN logits count as -inf. Allocation-free. */
float     lv_token_logprobs(const float *logits, int32_t n_vocab, lv_token token, int32_t k, lv_token *top_ids, float *top_logprobs);

/* ---- tokenizer -------------------------------------------------------------------------- */

/* Tokenize text (len bytes, need not be NUL-terminated). add_special adds BOS/EOS as the
 * vocabulary asks; parse_special turns special-token text into special tokens.
 * Returns the number of tokens written, or, if n_tokens_max is too small, the negated number
 * of tokens needed (nothing useful is written). Returns INT32_MIN on failure (lv_last_error). */
int32_t lv_tokenize(const lv_model *model, const char *text, int64_t len,
                    lv_token *tokens, int32_t n_tokens_max, bool add_special, bool parse_special);

/* The bytes of one token's piece (SentencePiece spaces and byte tokens resolved; special tokens
 * rendered only if render_special). Returns the length, or the negated needed size if buf is too
 * small, or INT32_MIN for an invalid token. Not NUL-terminated. */
int32_t lv_token_to_piece(const lv_model *model, lv_token token, char *buf, int32_t buf_size,
                          bool render_special);

/* Decode a whole sequence of tokens to text (with the leading-space rule of SentencePiece
 * vocabularies applied to the first token unless remove_leading_space is false). Same return
 * convention as lv_token_to_piece. */
int64_t lv_detokenize(const lv_model *model, const lv_token *tokens, int32_t n_tokens,
                      char *buf, int64_t buf_size, bool remove_leading_space, bool render_special);

lv_token lv_token_bos(const lv_model *model); /* -1 if none */
lv_token lv_token_eos(const lv_model *model); /* -1 if none */
lv_token lv_token_eot(const lv_model *model); /* -1 if none */
bool     lv_token_is_eog(const lv_model *model, lv_token token); /* end of generation */

/* Streaming detokenizer: feeds token pieces and hands back only complete UTF-8 characters, so a
 * caller printing as it goes never prints half a character (and never loses one). */
typedef struct lv_detok_stream lv_detok_stream;
lv_status lv_detok_stream_create(const lv_model *model, lv_detok_stream **out);
void      lv_detok_stream_free(lv_detok_stream *ds);
/* Append a token; writes the newly complete text to *out / *out_len (valid until the next call). */
lv_status lv_detok_stream_push(lv_detok_stream *ds, lv_token token, const char **out, int64_t *out_len);
/* Flush what remains (an incomplete trailing sequence is emitted as U+FFFD). */
lv_status lv_detok_stream_flush(lv_detok_stream *ds, const char **out, int64_t *out_len);

/* More special tokens and flags (-1 / false when the vocabulary has none). */
lv_token lv_token_pad(const lv_model *model);
lv_token lv_token_nl(const lv_model *model);  /* the token of "\n" */
bool     lv_token_is_control(const lv_model *model, lv_token token);
bool     lv_tokenizer_add_bos(const lv_model *model); /* add_special adds BOS */
bool     lv_tokenizer_add_eos(const lv_model *model); /* add_special adds EOS */
/* The raw vocabulary text of a token (not NUL-terminated; *len receives its length), or NULL
 * for an invalid id. Valid while the model is. */
const char *lv_token_text(const lv_model *model, lv_token token, int32_t *len);

/* ---- chat templates ----
 * The template stored in tokenizer.chat_template is recognised by its text, as llama.cpp does
 * (llama_chat_apply_template), and rendered by a built-in formatter for its family. Families:
 * "llama3", "chatml" (Qwen2, SmolLM, ...), "mistral-v1", "mistral-v3", "mistral-v3-tekken",
 * "mistral-v7", "llama2", "llama2-sys", "phi3", "zephyr", "gemma". */
typedef struct lv_chat_message {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} lv_chat_message;

/* Render messages with a template. tmpl: a family name (above) or a template text to recognise;
 * NULL uses the model's tokenizer.chat_template. add_assistant appends the assistant prefix.
 * Returns the length of the text (excluding the NUL, which is written when it fits), or, when
 * buf_size is too small, the negated length needed; INT32_MIN when the template is not
 * recognised (lv_last_error says so and names --chat-template NAME as the way out). */
int64_t lv_chat_apply_template(const lv_model *model, const char *tmpl, const lv_chat_message *msgs, size_t n_msgs,
                               bool add_assistant, char *buf, int64_t buf_size);
/* The family a template text belongs to ("llama3", "chatml", ...), or NULL if unknown. */
const char *lv_chat_template_detect(const char *tmpl);
/* The built-in family names, NULL-terminated. */
const char *const *lv_chat_template_names(void);

/* ---- random-weight model generation (gen-model) ----------------------------------------- */

typedef enum lv_ftype {
    LV_FTYPE_F32  = 0,
    LV_FTYPE_F16  = 1,
    LV_FTYPE_BF16 = 2,
    LV_FTYPE_Q8_0 = 3,
    LV_FTYPE_Q4_0 = 4,
    LV_FTYPE_Q4_1 = 5,
    LV_FTYPE_Q5_0 = 6,
    LV_FTYPE_Q5_1 = 7,
    LV_FTYPE_Q4_K = 8,   /* every matrix q4_K (rows not a multiple of 256: q5_0, as llama-quantize) */
    LV_FTYPE_Q5_K = 9,   /* ... q5_K (fallback q5_1) */
    LV_FTYPE_Q6_K = 10,  /* ... q6_K (fallback q8_0) */
    LV_FTYPE_Q4_K_M = 11, /* llama-quantize's Q4_K_M mixture: q4_K, with q6_K for the output matrix and
                             for attn_v / ffn_down of the layers llama.cpp gives more bits */
    LV_FTYPE_IQ4_NL = 12, /* every matrix iq4_nl (a simple scale search, not llama-quantize's) */
    LV_FTYPE_IQ4_XS = 13, /* every matrix iq4_xs (rows not a multiple of 256: iq4_nl, as llama-quantize) */
    LV_FTYPE_Q2_K = 14,   /* every matrix q2_K (fallback q4_0; a simple quantizer, not llama-quantize's mixture) */
    LV_FTYPE_Q3_K = 15,   /* every matrix q3_K (fallback q4_0; likewise) */
} lv_ftype;

typedef struct lv_genmodel_params {
    const char *arch;       /* "llama", "qwen2", "qwen3", "smollm3", "gemma3" or "qwen35" */
    const char *preset;     /* "tiny", "smollm2-135m", "qwen2.5-0.5b", "llama3.2-1b", "qwen3-0.6b", "smollm3-3b",
                               "gemma3-270m", "gemma3-1b", "qwen3.5-0.8b", or NULL for explicit shape */
    int32_t n_embd, n_layer, n_head, n_head_kv, n_ff; /* explicit shape (used when preset is NULL; 0 = keep preset's) */
    int32_t n_ctx_train;    /* 0 = the preset's */
    float   rope_freq_base; /* 0 = the preset's */
    bool    tied_output;    /* token_embd doubles as the output matrix */
    bool    llama3_rope;    /* write a rope_freqs tensor with Llama 3.1 scaling (factor 32, 8192) */
    const char *vocab_path; /* GGUF whose tokenizer.* metadata is copied (its token count is n_vocab), a
                               tokenizer.json, or "builtin:bytes": 259 tokens, <unk> <s> </s> and 256 bytes
                               ("builtin:bytes-vision": then SmolVLM2's 4 control tokens <fake_token_around_image>
                               <global-img> <image> <end_of_utterance> and "\n\n") */
    lv_ftype ftype;         /* type of the 2-D weight matrices (a mixture for Q4_K_M); norms and biases stay F32 */
    uint64_t seed;
    float    std;           /* standard deviation of the weights (default 0.02) */
    void   (*progress)(double fraction, void *user);
    void    *progress_user;
    int32_t  head_dim;      /* 0 = the preset's, else n_embd / n_head */
    int32_t  n_swa;         /* gemma3: the sliding window of its local layers (0 = the preset's; < 0: none, all global) */
    int32_t  swa_pattern;   /* gemma3: one global layer per this many (0 = the preset's, llama.cpp's default 6) */
    int32_t  ssm_state;     /* qwen35: head size of the recurrent layers (0 = the preset's, else 128) */
    int32_t  ssm_k_heads;   /* qwen35: their key heads (0 = the preset's, else 16) */
    int32_t  ssm_v_heads;   /* qwen35: their value heads, a multiple of the key heads (0 = the preset's, else 16) */
    int32_t  full_attn_interval; /* qwen35: one attention layer per this many (0 = the preset's, else 4) */
} lv_genmodel_params;

lv_genmodel_params lv_genmodel_default_params(void);
/* Write a valid GGUF v3 file with random weights. Deterministic for a given seed and shape.
 * preset/arch/shape errors are LV_ERR_INVALID_ARG with a message. */
lv_status lv_genmodel_write(const lv_genmodel_params *params, const char *out_path);

/* ---- evaluation -------------------------------------------------------------------------
 * Needle-in-a-haystack (NIAH) and passkey-retrieval prompts of a chosen token length with the
 * needle at a chosen depth, the answer rule, and the head-pattern threshold that `longview heads`
 * prints. `longview eval` runs them in every attention mode; docs/eval.md has the formats. */

/* The threshold lv_head_pattern_binarize compares the noised, clipped gates with (a head is
 * retrieval iff its value >= it): -inf when sparsity <= 0, +inf when sparsity >= 1, NaN (and
 * lv_last_error) for a NaN sparsity or out of memory. lv_head_pattern_binarize returns -1 in the
 * same cases. */
double lv_head_pattern_threshold(const lv_head_pattern *p, float sparsity, uint64_t seed);

typedef enum lv_eval_task {
    LV_EVAL_NIAH    = 0, /* a needle sentence hidden in essays (haystack_dir) */
    LV_EVAL_PASSKEY = 1, /* "The pass key is NNNNN. ..." hidden in repeated filler sentences */
    LV_EVAL_MULTIKEY = 2,   /* n_needles pass keys in the passkey filler, named by their order ("the third pass
                               key"); the question asks for one of them (the one placed at the depth) */
    LV_EVAL_MULTIVALUE = 3, /* n_needles pass keys in the passkey filler; the question asks for all of them */
} lv_eval_task;

typedef struct lv_eval_params {
    lv_eval_task task;
    const char *haystack_dir;  /* NIAH: directory whose *.txt files, in name order, are the haystack (repeated as needed) */
    const char *needle;        /* NIAH: NULL = the standard needle (San Francisco, Dolores Park); each "{key}" in the
                                  needle and the keywords becomes the prompt's 5-digit key (from the seed, as passkey's) */
    const char *keywords;      /* NIAH: '|'-separated phrases a correct answer contains; NULL = "sandwich|Dolores Park"
                                  (required with a custom needle) */
    const char *question;      /* NULL = the task's standard question */
    const char *answer_prefix; /* the start of the answer, written after the question; NULL = the task's; "" = none */
    bool chat;                 /* wrap in a chat template: the document and question are the user turn, answer_prefix
                                  follows the assistant prefix */
    const char *chat_template; /* with chat: a family name or a template text; NULL = the model's */
    int32_t n_needles;         /* multikey / multivalue: needles per prompt, 2..10 (0 = 4) */
} lv_eval_params;

lv_eval_params lv_eval_default_params(void);

/* A prompt builder: holds the model's tokenizer and the filler, read and tokenized once. */
typedef struct lv_eval lv_eval;

/* Errors: a missing or empty haystack directory, a custom needle without keywords, a chat
 * template the model lacks or that is unknown (LV_ERR_INVALID_ARG / LV_ERR_IO). The model must
 * have a tokenizer and outlive the builder. */
lv_status lv_eval_create(const lv_model *model, const lv_eval_params *params, lv_eval **out);
void      lv_eval_free(lv_eval *ev);

typedef struct lv_eval_prompt {
    lv_token *tokens;        /* (n_tokens) the prompt, starting with BOS when the vocabulary adds one */
    int32_t   n_tokens;      /* <= the requested length, normally equal (a few short with many needles) */
    char     *text;          /* the prompt text that was tokenized (BOS not included) */
    char     *answer;        /* what a correct answer contains: '|'-separated keywords (passkey: the digits;
                                multivalue: every key) */
    char     *answer_text;   /* the answer as written after the answer prefix: the key (passkey, multikey),
                                "K1, K2 and K3" in order of appearance (multivalue), for NIAH the needle's
                                text after the answer prefix when the needle contains it, else the keywords */
    char     *needle;        /* the needle as inserted */
    int32_t   needle_pos;    /* token offset of the needle's first token (its first non-space character); with
                                several needles, of the one placed at the depth (multikey: the one asked for) */
    int32_t   needle_len;    /* tokens of the needle */
    int32_t   context_begin; /* token range of the filler, needle included */
    int32_t   context_end;
    double    depth;         /* the needle's actual depth in the filler: (needle_pos - context_begin) /
                                (context_end - context_begin - needle_len), in [0, 1] */
    uint64_t  seed;
} lv_eval_prompt;

/* Build a prompt of n_tokens tokens with the needle at `depth` (0 = the start of the filler,
 * 1 = its end), at the sentence boundary nearest to that depth. seed picks the pass key (5 digits)
 * and, for NIAH, the essay the haystack starts with (seed mod the number of essays; 0 = the
 * first, the standard haystack); for multikey / multivalue also the other needles' keys and
 * depths (uniform in [0, 1]) and, for multikey, which order the asked needle gets. Errors: n_tokens too small for the question, needle and
 * template (the message says the minimum), depth outside [0, 1]. Free with lv_eval_prompt_free. */
lv_status lv_eval_build(lv_eval *ev, int32_t n_tokens, double depth, uint64_t seed, lv_eval_prompt **out);
/* NIAH: replace the needle, its keywords, the question and the answer prefix for the builds that
 * follow (NULL question / answer_prefix: keep the current ones). The needle must contain its
 * keywords. For training data with varied needles without re-reading the haystack. */
lv_status lv_eval_set_needle(lv_eval *ev, const char *needle, const char *keywords, const char *question, const char *answer_prefix);
void      lv_eval_prompt_free(lv_eval_prompt *p);

/* The answer rule: both texts are reduced to lower-case words (runs of ASCII letters and digits
 * and of non-ASCII bytes; everything else, and U+2581 '▁', separates words), and a keyword is found when its
 * words occur consecutively in the answer's words. Correct iff every '|'-separated keyword is
 * found. Returns true when correct; *score (may be NULL) receives the fraction found. An answer
 * with no keywords is never correct. */
bool lv_eval_check_answer(const char *keywords, const char *text, int64_t len, double *score);

/* ---- vision ----------------------------------------------------------------------------- */

/* A vision tower and projector from a llama.cpp mmproj file (`clip` architecture; projector types
 * idefics3, qwen2vl_merger, qwen2.5vl_merger and mlp; docs/vision.md). It turns an image into rows
 * of text-model embeddings, computed as llama.cpp's mtmd computes them. Immutable after loading:
 * several threads may encode with one lv_mmproj at once (each call has its own scratch). */
typedef struct lv_mmproj lv_mmproj;

/* Load and check an mmproj file. n_embd_text > 0: the text model's embedding width
 * (lv_model_n_embd), which the projector's output must equal (LV_ERR_INVALID_ARG otherwise). */
lv_status   lv_mmproj_load(const char *path, int64_t n_embd_text, lv_mmproj **out);
void        lv_mmproj_free(lv_mmproj *mm);
int32_t     lv_mmproj_n_embd(const lv_mmproj *mm);      /* output width */
const char *lv_mmproj_projector(const lv_mmproj *mm);   /* "idefics3", "qwen2vl_merger", ... */
/* One paragraph about the tower and projector; returns the length it needed (as snprintf). */
int64_t     lv_mmproj_describe(const lv_mmproj *mm, char *buf, size_t buf_size);

/* One chunk of an image's embeddings, as mtmd makes them: idefics3 gives a chunk per tile (raster
 * order) and one for the overview; the other types one chunk per image. */
typedef struct lv_image_chunk {
    int32_t first;      /* first row of the chunk in lv_image_embd.embd */
    int32_t n_tokens;
    int32_t nx, ny;     /* the chunk's token grid (Qwen: merged patches; M-RoPE positions) */
    int32_t n_pos;      /* positions the chunk advances the text by (Qwen: max(nx, ny); others n_tokens) */
    int32_t tile_row, tile_col; /* idefics3: 1-based tile (0, 0 for the overview and other types) */
} lv_image_chunk;

typedef struct lv_image_embd {
    int32_t  n_tokens;  /* rows of embd, all chunks */
    int32_t  n_embd;
    float   *embd;      /* n_tokens x n_embd floats, token-major */
    int32_t  n_chunks;
    lv_image_chunk *chunks;
    int32_t  n_pos;     /* sum of the chunks' n_pos */
    int32_t  tile_rows, tile_cols; /* idefics3 tiling (0 when the image was not split) */
    int32_t  width, height;        /* the image as decoded */
    const char *projector;         /* the projector type (static string): which marker text surrounds the chunks */
} lv_image_embd;

/* Decode an image file (PNG, JPEG, anything libavcodec reads), preprocess it for the projector
 * type as mtmd does (resize, tiles, padding, normalisation) and encode it on the pool's threads. */
lv_status lv_mmproj_encode_file(const lv_mmproj *mm, lv_threadpool *tp, const char *path, lv_image_embd *out);
/* The same for an image file's bytes in memory (a request's upload); hostile data gets an error. */
lv_status lv_mmproj_encode_memory(const lv_mmproj *mm, lv_threadpool *tp, const uint8_t *data, int64_t size, lv_image_embd *out);
/* The same for an RGB8 image in memory (h rows of w RGB triplets). */
lv_status lv_mmproj_encode_rgb(const lv_mmproj *mm, lv_threadpool *tp, const uint8_t *rgb, int32_t w, int32_t h, lv_image_embd *out);
/* Qwen projectors: two frames of the same size as one temporal pair (one chunk). */
lv_status lv_mmproj_encode_pair(const lv_mmproj *mm, lv_threadpool *tp, const uint8_t *rgb0, const uint8_t *rgb1, int32_t w, int32_t h,
                                lv_image_embd *out);
void      lv_image_embd_free(lv_image_embd *e);

/* Video frames (docs/video-questions.md). The size the frames of a src_w x src_h video sampled
 * n_frames times are given to the encoder: idefics3 (SmolVLM2) the tile, image_size square (HF
 * stretches each frame to it); Qwen qwen_vl_utils' smart resize for video (multiples of 28, 128 to
 * 768 tokens per frame within a total pixel budget shared by the frames). Other projectors:
 * LV_ERR_UNSUPPORTED. */
lv_status lv_mmproj_video_frame_size(const lv_mmproj *mm, int32_t src_w, int32_t src_h, int64_t n_frames, int32_t *w, int32_t *h);
/* Tokens the projector gives for one encoder input of w x h pixels (a frame, a Qwen pair) and
 * its merged grid (nx, ny). */
lv_status lv_mmproj_n_tokens(const lv_mmproj *mm, int32_t w, int32_t h, int32_t *n_tokens, int32_t *nx, int32_t *ny);
/* Encode one video frame (idefics3: w x h must be the tile size; rgb1 NULL) or one Qwen temporal
 * pair (rgb1 NULL: the frame paired with itself) without any resizing: out gets
 * lv_mmproj_n_tokens() x lv_mmproj_n_embd() floats. */
lv_status lv_mmproj_encode_frames(const lv_mmproj *mm, lv_threadpool *tp, const uint8_t *rgb0, const uint8_t *rgb1, int32_t w, int32_t h,
                                  float *out);

/* Decode an image file into RGB8 (h rows of w RGB triplets, *rgb freed with lv_image_rgb_free). */
lv_status lv_image_decode_file(const char *path, uint8_t **rgb, int32_t *w, int32_t *h);
void      lv_image_rgb_free(uint8_t *rgb);

/* ---- prompts with images ----
 * Text and images laid out as llama.cpp's mtmd lays them out (docs/vision.md): the prompt says
 * where image i goes with LV_MEDIA_MARKER (a prompt without any marker gets the images before its
 * text); each image's chunks are surrounded by the projector's marker text (idefics3: tile tags
 * "<fake_token_around_image><row_Y_col_X>", rows separated by "\n", then "\n\n" "<fake_token_around_image>"
 * "<global-img>" + the overview + "<fake_token_around_image>"; Qwen: "<|vision_start|>" ...
 * "<|vision_end|>"; mlp: nothing). Every piece of text is tokenized on its own (parse_special), BOS
 * first when add_special and the vocabulary adds it. */
#define LV_MEDIA_MARKER "<__media__>"

typedef struct lv_mm_chunk {
    lv_token    *tokens;    /* text: n_tokens ids; NULL for an image chunk */
    const float *embd;      /* image: n_tokens rows of n_embd floats (into the lv_image_embd, which must outlive the prompt) */
    int32_t      n_tokens;
    int32_t      nx, ny;    /* image: its grid (M-RoPE positions) */
    int32_t      n_pos;     /* rotary positions it advances: M-RoPE models max(nx, ny) for an image, else n_tokens */
} lv_mm_chunk;

typedef struct lv_mm_prompt {
    int32_t      n_chunks;
    lv_mm_chunk *chunks;
    int32_t      n_rows;    /* text tokens + embedding rows: the cache positions the prompt takes */
} lv_mm_prompt;

lv_status lv_mm_tokenize(const lv_model *model, const char *prompt, int64_t len, const lv_image_embd *images, int32_t n_images,
                         bool add_special, lv_mm_prompt *out);
void      lv_mm_prompt_free(lv_mm_prompt *p);
/* Decode a prompt into sequence seq at cache positions *n_past.. (advanced), in batches of at most
 * the context's n_batch, with the rotary positions mtmd assigns (M-RoPE: an image chunk's token i
 * at (t0, t0 + i / nx, t0 + i % nx, 0), the next chunk at t0 + max(nx, ny)); the last row's logits
 * are kept (lv_get_logits_ith(ctx, -1)). On failure the cache holds the chunks before the failing
 * batch. */
lv_status lv_mm_decode(lv_context *ctx, const lv_mm_prompt *p, lv_seq_id seq, lv_pos *n_past);
/* The M-RoPE positions lv_mm_decode gives the prompt's rows when its first row's rotary position
 * is rope0: out (4, n_rows), all t then all h, w, e (as lv_batch.pos_mrope). */
void      lv_mm_prompt_mrope(const lv_mm_prompt *p, lv_pos rope0, lv_pos *out);

/* Write an mmproj file with RANDOM weights at a published tower's shape, or a tiny one for tests
 * (presets: lv_mmproj_preset_list()). type "f32", "f16" or "q8_0"; n_text > 0 overrides the output
 * width; preproc_image_size (idefics3) >= 0 overrides the preset's (0: none, the generic slicing), < 0 keeps it. Its output is noise: for tests and speed measurements. */
lv_status   lv_mmproj_write_random(const char *preset, const char *type, int32_t n_text, int32_t preproc_image_size, uint64_t seed, float std,
                                   const char *out_path);
const char *lv_mmproj_preset_list(void);

/* ---- video ------------------------------------------------------------------------------ */

/* Sampled video frames for a vision model (docs/video.md): open and probe a file, choose which
 * frames to keep (1 per second, N spread evenly, explicit times, or all), decode them in parallel
 * intervals split at keyframes, resize to the model's input and hand them over in order as they
 * become ready, with bounded memory. Built on FFmpeg's libavformat/libavcodec/libswscale.
 *
 * Exactness: the frames are exactly those a sequential decode of every frame returns, and with
 * LV_VIDEO_SAMPLE_FPS they are byte-identical to
 *   ffmpeg -i VIDEO -vf fps=F,scale=W:H -pix_fmt rgb24 -f rawvideo OUT
 * (ffmpeg 5.1) under the conditions listed in docs/video.md.
 *
 * Thread safety: a lv_video is immutable after lv_video_open and may be shared by several readers
 * and threads; it must outlive them. A lv_video_reader is used by one thread at a time (its decode
 * threads are internal). */

typedef struct lv_video lv_video;
typedef struct lv_video_reader lv_video_reader;

typedef struct lv_video_open_params {
    int32_t stream;      /* container stream index to use; -1 = the best video stream, chosen as the
                            ffmpeg CLI chooses it (largest width*height, default disposition first) */
    int64_t max_pixels;  /* refuse larger frames (width * height); default 1 << 26 (8192 x 8192) */
    int64_t max_packets; /* refuse streams with more packets; default 1 << 24 (7.7 days at 25 fps) */
} lv_video_open_params;

lv_video_open_params lv_video_default_open_params(void);

/* Open and probe a video: streams, and for the chosen stream a pass over every packet (demuxing,
 * no decoding) that indexes timestamps, keyframes and which frames nothing references.
 * Returns LV_ERR_IO (cannot open), LV_ERR_FORMAT (not a video container, truncated before the
 * first frame, absurd dimensions), LV_ERR_UNSUPPORTED (no decoder for the codec, no video stream)
 * or LV_ERR_INVALID_ARG (stream index). Damage after the first frames is not an error: the
 * packets that could be read are kept and a warning is logged. On failure *out is NULL. */
lv_status lv_video_open(const char *path, lv_video_open_params params, lv_video **out);
/* The same over a memory buffer (size bytes), which must stay valid until lv_video_free and the
 * end of every reader. */
lv_status lv_video_open_memory(const void *data, int64_t size, lv_video_open_params params, lv_video **out);
void      lv_video_free(lv_video *video);

typedef struct lv_video_info {
    int32_t stream;        /* index of the chosen stream in the container */
    int32_t n_streams;     /* streams of every type in the container */
    char    codec[32];     /* "h264", "hevc", ... */
    char    pix_fmt[32];   /* the decoder's output format, e.g. "yuv420p" */
    int32_t width, height;
    int32_t tb_num, tb_den;/* the stream's time base */
    int64_t n_packets;     /* packets of the stream */
    int64_t n_frames;      /* frames it presents (packets an edit list does not cut) */
    int64_t n_keyframes;   /* GOPs */
    int64_t n_nonref;      /* frames nothing references (H.264/HEVC; 0 when unknown) */
    int64_t n_leading;     /* open-GOP leading frames (decoded after their keyframe, shown before it) */
    int32_t max_reorder;   /* deepest B-frame reordering seen */
    int32_t max_gop;       /* longest GOP, in packets */
    double  start_s;       /* presentation time of the first frame, as in the container */
    double  duration_s;    /* from the first frame to the end of the last one */
    double  avg_fps;       /* n_frames / duration_s */
    bool    vfr;           /* frame durations vary */
    bool    split_ok;      /* the index-planned parallel path is used; false: the sequential path */
} lv_video_info;

void lv_video_get_info(const lv_video *video, lv_video_info *info);

/* A human-readable description (what `longview video-info` prints): container and streams,
 * duration, keyframes, GOP structure, what the decoder can skip. max_keyframes limits the
 * keyframe list (-1: all). Returns the length it needs (excluding the NUL), like snprintf. */
int64_t lv_video_describe(const lv_video *video, int64_t max_keyframes, char *buf, size_t buf_size);

/* Keyframe i's presentation time in seconds, i in [0, n_keyframes); NaN when out of range. */
double lv_video_keyframe_time(const lv_video *video, int64_t i);

typedef enum lv_video_sample {
    LV_VIDEO_SAMPLE_FPS   = 0, /* fps frames per second: the rule of ffmpeg's fps filter (docs/video.md) */
    LV_VIDEO_SAMPLE_COUNT = 1, /* n_frames spread evenly: frame round(i * (N-1) / (n-1)), half to even */
    LV_VIDEO_SAMPLE_TIMES = 2, /* times[] in seconds: the frame shown at each time */
    LV_VIDEO_SAMPLE_ALL   = 3, /* every frame, in presentation order */
    LV_VIDEO_SAMPLE_INDICES = 4, /* indices[]: frame numbers in presentation order (non-decreasing, < n_frames) */
} lv_video_sample;

typedef enum lv_video_format {
    LV_VIDEO_RGB24   = 0, /* uint8 (height, width, 3) */
    LV_VIDEO_F32_CHW = 1, /* float (3, height, width): (value / 255 - mean[c]) / std[c] */
} lv_video_format;

typedef struct lv_video_read_params {
    lv_video_sample sample;
    double   fps;            /* SAMPLE_FPS: frames per second (> 0) */
    int64_t  n_frames;       /* SAMPLE_COUNT: how many (> 0) */
    const double *times;     /* SAMPLE_TIMES: seconds from the start of the file (as ffmpeg counts it) */
    int64_t  n_times;
    const int64_t *indices;  /* SAMPLE_INDICES: frame numbers (copied at lv_video_read_start) */
    int64_t  n_indices;
    int32_t  width, height;  /* output size; 0 = the stream's own */
    lv_video_format format;
    float    mean[3], std[3];/* F32_CHW normalisation (default 0 and 1: plain value / 255) */
    int32_t  n_threads;      /* decode threads; <= 0: one per core */
    int64_t  max_buffered_bytes; /* decoded frames held ahead of the consumer, about (bounded memory);
                                    0 = 256 MiB. A slow consumer makes the decode threads wait. */
    int64_t  max_samples;    /* refuse plans with more samples; default 1 << 22 */
    bool     sequential;     /* the slow reference: decode every frame on one thread, sample online */
    bool     no_skip;        /* decode every frame of the decoded GOPs (ablation; same output) */
    lv_abort_fn abort_fn;    /* polled by the decode threads; true stops the reader (LV_ERR_ABORTED) */
    void    *abort_user;
} lv_video_read_params;

lv_video_read_params lv_video_default_read_params(void);

/* Plan the samples and start the decode threads. Frames are then taken with
 * lv_video_reader_next. LV_ERR_INVALID_ARG for a bad rule (fps <= 0, a time past the end, ...). */
lv_status lv_video_read_start(lv_video *video, const lv_video_read_params *params, lv_video_reader **out);
/* Stops the decode threads (abandoning frames not taken yet) and frees everything. */
void      lv_video_reader_free(lv_video_reader *reader);

/* Number of samples the plan holds (-1 for the sequential path, which learns it at the end). */
int64_t lv_video_reader_n_planned(const lv_video_reader *reader);

typedef struct lv_video_frame {
    int64_t index;        /* sample number in the plan (frames lost to damage leave gaps) */
    int64_t source_frame; /* the source frame's index in presentation order */
    int64_t pts;          /* its timestamp in the stream time base */
    double  time_s;       /* the sample's time: tick / fps for SAMPLE_FPS, else the frame's time */
    int32_t width, height;
    lv_video_format format;
    const void *data;     /* RGB24: height*width*3 bytes; F32_CHW: 3*height*width floats. NULL at the end */
    int64_t size;         /* bytes at data */
} lv_video_frame;

/* The next frame in order, waiting until it is decoded. data stays valid until the next call or
 * lv_video_reader_free. At the end returns LV_OK with frame->data == NULL. Returns an error if
 * the decode failed as a whole (the message names the file and the frame) or was aborted.
 * Samples whose frame could not be decoded (damaged packets) are skipped with a warning saying
 * which times were lost; lv_video_reader_stats counts them. */
lv_status lv_video_reader_next(lv_video_reader *reader, lv_video_frame *frame);

typedef struct lv_video_stats {
    int64_t n_planned;       /* samples in the plan */
    int64_t n_delivered;     /* frames handed out so far */
    int64_t n_lost;          /* samples whose frame could not be decoded */
    int64_t n_packets;       /* packets of the stream */
    int64_t n_decoded;       /* packets fed to a decoder (all threads, overlaps included) */
    int64_t n_skipped_nonref;/* non-reference packets skipped inside decoded GOPs */
    int64_t n_skipped_tail;  /* packets after the last needed one of a GOP, skipped */
    int64_t n_gops_skipped;  /* whole GOPs with nothing needed (seeked over or read past) */
    int64_t n_seeks;
    int64_t n_intervals;
    int32_t n_threads;
    int64_t max_held;        /* most decoded frames held ahead of the consumer at once */
    double  decode_s;        /* summed over the decode threads */
} lv_video_stats;

void lv_video_reader_stats(const lv_video_reader *reader, lv_video_stats *stats);

/* Convenience: run a reader to the end and return every frame in one array (n * frame size bytes,
 * free with lv_video_frames_free). For callers that do want all frames in memory. */
lv_status lv_video_read_all(lv_video *video, const lv_video_read_params *params, void **frames,
                            int64_t *n_frames, int64_t *frame_size);
void      lv_video_frames_free(void *frames);

/* Write an RGB24 image (rows packed) as a PNG file. */
lv_status lv_video_write_png(const char *path, const uint8_t *rgb, int32_t width, int32_t height);

/* Resize RGB24 images with swscale's bicubic filter, the reader's own settings (SWS_BICUBIC,
 * default parameters, one thread; convert.c): what a frame goes through when the reader reduces
 * it, except that its input here is RGB, not the decoder's YUV (swscale still scales in its
 * internal YUV, so colours round-trip). A scaler serves one (source, destination) size pair and
 * one thread at a time; it holds aligned buffers, so strides may be anything. */
typedef struct lv_video_scaler lv_video_scaler;
/* LV_ERR_INVALID_ARG for sizes outside 1..16384, LV_ERR_UNSUPPORTED if swscale refuses them. */
lv_status lv_video_scaler_new(int32_t src_w, int32_t src_h, int32_t dst_w, int32_t dst_h, lv_video_scaler **out);
/* src: src_h rows of src_w*3 bytes, src_stride apart; dst: dst_h rows, dst_stride apart. */
lv_status lv_video_scaler_run(lv_video_scaler *s, const uint8_t *src, int64_t src_stride, uint8_t *dst, int64_t dst_stride);
void      lv_video_scaler_free(lv_video_scaler *s);

/* Writing a video: RGB24 frames encoded to H.264 (libavcodec's libx264, yuv420p, BT.601 limited
 * range, tagged so) in an MP4 (or another libavformat container). Frame i is presented at i / fps.
 * Keyframes (closed GOPs) exactly every `gop` frames, none at scene cuts, so the reader's
 * parallel decode has intervals to split. libx264's log lines go to av_log (the CLI routes them
 * with lv_video_route_libav_log). One thread at a time. */
typedef struct lv_video_writer lv_video_writer;
typedef struct lv_video_writer_params {
    int32_t width, height;   /* even, 2..16384 (yuv420p) */
    int32_t fps_num, fps_den;/* frame rate fps_num / fps_den (> 0) */
    int32_t gop;             /* keyframe interval in frames; 0: about 10 s (at least 1 frame) */
    int32_t crf;             /* x264 constant rate factor 0..51 (default 23) */
    const char *preset;      /* x264 preset (default "veryfast") */
    const char *container;   /* libavformat muxer name (default "mp4"), whatever the path's extension */
    int32_t n_threads;       /* encoder threads; 0: libavcodec's choice */
} lv_video_writer_params;

lv_video_writer_params lv_video_default_writer_params(void);
/* Create path and start the stream. LV_ERR_UNSUPPORTED when this FFmpeg has no libx264 (or
 * refuses the preset), LV_ERR_INVALID_ARG for bad parameters, LV_ERR_IO when path cannot be
 * created. On failure *out is NULL and nothing is left open (a file created is left empty). */
lv_status lv_video_writer_open(const char *path, const lv_video_writer_params *params, lv_video_writer **out);
/* Encode the next frame: height rows of width*3 bytes, packed. */
lv_status lv_video_writer_push(lv_video_writer *w, const uint8_t *rgb);
/* Frames pushed so far. */
int64_t   lv_video_writer_n_frames(const lv_video_writer *w);
/* Flush the encoder, write the trailer and close the file; frees w whatever the result. */
lv_status lv_video_writer_close(lv_video_writer *w);
/* Abandon a writer (the file is left incomplete: the caller removes it); NULL is fine. */
void      lv_video_writer_free(lv_video_writer *w);

/* Route FFmpeg's own log messages (libavformat, libavcodec) through the longview log callback:
 * libav errors and warnings become LV_LOG_DEBUG messages prefixed "libav:", so that a decoder's
 * complaints about a damaged packet do not flood stderr (the video module reports what was lost
 * itself). Process-global, like lv_log_set: call at startup. */
void lv_video_route_libav_log(void);

/* ---- asking a video ----------------------------------------------------------------------
 * A question about a video (docs/video-questions.md): frames sampled by the model family's rule,
 * decoded by the interval-parallel reader, encoded by the mmproj and prefilled with the prompt in
 * the format the family was trained on (SmolVLM2: an intro with the frame count in words and the
 * duration, each frame's timestamp; Qwen2-VL / Qwen2.5-VL: temporal pairs in one
 * <|vision_start|> ... <|vision_end|> block with HF's M-RoPE video positions). The overlapped
 * pipeline decodes frames on the reader's threads while the calling thread encodes and prefills
 * on the pool, the two sharing one budget of the pool's thread count (the decode threads run
 * when the encoder is about to starve or the pool is idle; docs/video-questions.md); the sequential one (the reference) decodes every frame, then encodes them all, then
 * prefills. Both cut the prompt into the same batches, so their logits are equal bit for bit. */

typedef struct lv_video_ask_progress {
    int64_t n_frames;      /* frames in the plan */
    int64_t n_decoded;     /* frames decoded in order (handed to the encoder or ready for it) */
    int64_t n_encoded;     /* frames through the encoder */
    int64_t n_prefilled;   /* frames whose rows are all in the cache */
    int64_t n_rows;        /* prompt rows (tokens + embeddings) in all */
    int64_t n_rows_done;   /* rows in the cache */
    double  elapsed_s;
} lv_video_ask_progress;

/* Called after each frame decoded / encoded and each batch prefilled (on the calling thread). */
typedef void (*lv_video_ask_progress_fn)(const lv_video_ask_progress *p, void *user);

typedef struct lv_video_ask_params {
    const char *prompt;       /* the text; LV_MEDIA_MARKER once where the video goes (none: the video first) */
    bool     add_special;     /* BOS (and EOS) as the vocabulary asks, as lv_mm_tokenize (default true) */
    double   fps;             /* sampling rate; 0 = the family's (SmolVLM2 1, Qwen 2) */
    int64_t  n_frames;        /* > 0: this many frames instead (Qwen: rounded to even) */
    int64_t  max_frames;      /* cap on the frames; 0 = the family's (SmolVLM2 64, Qwen 768) */
    int32_t  n_decode_threads;/* video decode threads (<= 0: one per core) */
    int64_t  max_buffered_bytes; /* decoded frames held ahead of the encoder (0: the reader's default) */
    bool     sequential;      /* the reference: decode all, encode all, then prefill */
    bool     no_budget;       /* overlapped: run the decode threads beside the pool's threads instead of sharing one budget of
                                 the pool's thread count with them (the overlap before the shared budget; for comparison) */
    double   keep;            /* QuickPrefill (docs/video-questions.md): > 0 prefills group by group and, after each group,
                                 prunes its embedding rows in every layer's cache to this fraction (in (0, 1]; 1 prunes
                                 nothing: equal to dense); 0 = off (default) */
    int32_t  group;           /* QuickPrefill: frames per group (0: 16; Qwen: rounded up to whole pairs) */
    bool     carrier;         /* VideoScan (docs/video-questions.md): after each unit (a SmolVLM2 frame, a Qwen pair) one
                                 carrier row, the mean of the unit's embeddings; after the unit's forward every full-
                                 attention head's cache keeps the carrier (and carrier_keep visual rows) of it, text
                                 rows stay (DuoAttention streaming heads keep sink + window). Needs carrier-trained
                                 weights to answer well. Not with keep. */
    int32_t  carrier_keep;    /* VideoScan+: visual rows per unit kept besides the carrier, the most attended from it, per
                                 layer (default 0) */
    int32_t  carrier_layer;   /* VideoScan+: -1 (default): each layer keeps the rows its own carrier query attended to
                                 most; L >= 0: layer L's choice in every layer (the reference's kv_select_layer) */
    int32_t  carrier_max;     /* VideoScan's memory cap: most carriers held; above it the earlier of the two adjacent
                                 carriers whose input embeddings are the most similar (cosine) leaves every layer's
                                 cache with its unit's kept rows (default 64; 0 = no cap) */
    lv_seq_id seq;            /* sequence to prefill (default 0) */
    lv_video_ask_progress_fn progress;
    void    *progress_user;
    lv_abort_fn abort_fn;     /* polled between frames and batches, and by the decode threads */
    void    *abort_user;
} lv_video_ask_params;

lv_video_ask_params lv_video_ask_default_params(void);

/* The "MM:SS" a SmolVLM2 video prompt writes for a frame at t_s seconds ("Frame from MM:SS:"; HF's
 * int(t // 60), int(t % 60), two digits at least: 61.9 -> "01:01", 3600 -> "60:00"), for callers
 * that must name frames the way the prompt does (training data's questions). Writes at most n bytes
 * with the NUL, like snprintf. */
void lv_video_ask_timestamp(double t_s, char *buf, size_t n);

/* What a question will cost, known before any frame is decoded. */
typedef struct lv_video_ask_plan {
    const char *family;       /* "smolvlm2", "qwen2vl" or "qwen2.5vl" (static) */
    int64_t  n_frames;        /* frames sampled */
    int64_t  n_units;         /* encoder inputs: frames (SmolVLM2) or temporal pairs (Qwen) */
    int32_t  frame_w, frame_h;/* the size the frames are given to the encoder */
    int32_t  unit_tokens;     /* embedding rows per unit */
    int32_t  nx, ny;          /* the unit's merged grid */
    int64_t  n_rows;          /* prompt rows: text tokens + embeddings (the cache positions it takes) */
    int64_t  n_text;          /* of which text tokens */
    double   duration_s;      /* the video's */
    double   sample_fps;      /* frames per second of video the sampling gives */
} lv_video_ask_plan;

typedef struct lv_video_ask_result {
    lv_video_ask_plan plan;
    int64_t n_past;           /* the cache position after the prompt */
    double  decode_s;         /* overlapped: seconds the decode threads were busy, summed over them; sequential: wall seconds
                                 of decoding every frame */
    double  encode_s;         /* wall seconds in the encoder (on the pool; overlapped: less the waits for the budget's tokens) */
    double  prefill_s;        /* wall seconds in lv_decode (overlapped: less the waits for the budget's tokens) */
    double  wait_s;           /* wall seconds the calling thread waited for decoded frames: for the reader, and (overlapped)
                                 for the budget's tokens while the decode threads had them */
    double  prefill_cpu_s;    /* CPU seconds of the process (all threads) while in lv_decode and pruning: the prefill's own in
                                 the sequential execution; the overlapped one adds the decode threads' work meanwhile */
    double  prune_s;          /* QuickPrefill: wall seconds pruning (included in prefill_s) */
    int64_t n_groups;         /* QuickPrefill: groups prefilled */
    int32_t group_frames;     /* QuickPrefill: frames per group (params.group, or 16; Qwen: rounded up to whole pairs) */
    int64_t n_pruned;         /* QuickPrefill: embedding rows pruned from each full-attention head's cache; VideoScan: the
                                 visual rows dropped right after their unit's forward */
    int64_t n_carriers;       /* VideoScan: carriers held in the cache after the call */
    int64_t n_carrier_rows;   /* VideoScan: rows of the video held in each layer's cache: carriers + their kept visual rows */
    int64_t n_carriers_dropped; /* VideoScan: carriers the memory cap dropped (with their kept visual rows) */
    int64_t n_cap_rows_dropped; /* VideoScan: rows the memory cap dropped from each layer's cache */
    double  total_s;          /* wall seconds of the whole call */
    double  total_cpu_s;      /* CPU seconds of the process (all threads) during the call */
    int32_t budget_tokens;    /* overlapped: the shared thread budget's tokens (the pool's threads; 0: no budget) */
    int32_t budget_max_held;  /* the most tokens held at once (pool + decode threads; never above budget_tokens) */
    int64_t budget_yields;    /* times the pool gave its tokens to starving decode threads at a job boundary */
    double  budget_use;       /* the budget's tokens held, integrated over the overlapped execution, / (tokens x its wall
                                 seconds): 1 = every token in use all the time (the pool's holding counts, serial parts of
                                 its jobs included) */
} lv_video_ask_result;

/* Sample, encode and prefill: the video and the prompt go into sequence params->seq at cache
 * positions *n_past.. (advanced on success), the last row's logits kept (lv_get_logits_ith(ctx, -1)).
 * The context's batch size (lv_context_n_batch) cuts the batches. On any failure (a damaged or
 * truncated video whose sampled frames cannot all be decoded, an abort, a full context) the
 * sequence is restored to what it held before the call (its tokens and rotary offset; with a
 * sink + window plan that evicted tokens this is possible only when the sequence was empty) and
 * *n_past is unchanged. */
lv_status lv_video_ask(lv_context *ctx, const lv_mmproj *mm, lv_video *video, const lv_video_ask_params *params, lv_pos *n_past,
                       lv_video_ask_result *result);
/* The plan alone (frames, sizes, rows), without decoding anything. */
lv_status lv_video_ask_plan_for(const lv_model *model, const lv_mmproj *mm, const lv_video *video, const lv_video_ask_params *params,
                                lv_video_ask_plan *plan);
/* The prompt's text with every embedding row written as `<image>` (for tests and --verbose): the
 * text the family's HF processor writes. Returns the length it needs (as snprintf), or -1 on an error
 * (lv_last_error). */
int64_t lv_video_ask_prompt_text(const lv_model *model, const lv_mmproj *mm, const lv_video *video, const lv_video_ask_params *params,
                                 char *buf, size_t buf_size);

/* The rows of a SmolVLM2 (idefics3) video question over frames the caller holds: the prompt
 * lv_video_ask lays out for a video of duration_s seconds whose sampled frames are at times
 * frame_t[0 .. n_frames) (increasing), unit_tokens embedding rows per frame (lv_mmproj_n_tokens of
 * the frame size; + 1 carrier row with params->carrier), rotary positions 0, 1, 2, ... row by
 * row. params->prompt and add_special as lv_video_ask reads them. For training a video model
 * (`longview train-video`) on frames rendered in memory, with exactly the prompt users ask with. */
typedef struct lv_video_prompt {
    int64_t   n_rows;
    lv_token *tokens; /* (n_rows): a token, or LV_TOKEN_EMBD where an embedding row goes */
    int32_t  *frame;  /* (n_rows): the frame of an embedding row, -1 for text */
    int32_t  *row;    /* (n_rows): its row within the frame's unit (unit_tokens: the carrier), -1 for text */
} lv_video_prompt;
lv_status lv_video_prompt_build(const lv_model *model, int32_t unit_tokens, int64_t n_frames, const double *frame_t, double duration_s,
                                const lv_video_ask_params *params, lv_video_prompt *out);
void      lv_video_prompt_free(lv_video_prompt *p);

#ifdef __cplusplus
}
#endif

#endif /* LONGVIEW_H */
