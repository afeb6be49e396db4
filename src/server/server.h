/*
 * server.h: the serving engine behind `longview serve`: a bounded queue of requests, slots (one
 * sequence id each) and the scheduler that turns them into one flat lv_batch per step: the
 * decode token of every generating slot first, then prompt tokens chosen by best-fit-decreasing
 * (Prepacking) under the step's token budget. No HTTP and no JSON here: the tool (tools/serve/)
 * parses requests into token arrays and formats what comes back (docs/server.md).
 *
 * The module src/server/ (docs/architecture.md):
 *   Owns:  the packer (which prompts, whole or chunked, fill a step), admission (KV reserved for
 *          prompt + max tokens at admission, a prompt longer than the context refused), the
 *          bounded waiting queue and its timeout, per-slot prompt-prefix reuse, the engine thread
 *          that owns the lv_context, sampling / stop strings / text per request, cancellation,
 *          drain, and the serving statistics (counters and histograms).
 *   Never: speaks HTTP or JSON, writes to stdout, exits the process.
 *
 * Threads: lv_srv_submit / _req_* / _stats / _drain may be called from any thread. The context
 * is used only by the engine thread (lv_srv_start) or, without it, by whoever calls lv_srv_step.
 */
#ifndef LV_SERVER_H
#define LV_SERVER_H

#include "longview.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- the packer (sched.c): a pure function, tested on its own ---- */

typedef struct lv_pack_item {
    int32_t id;        /* the caller's handle (a slot) */
    int32_t n_tokens;  /* prompt tokens still to compute (> 0) */
    int32_t age;       /* steps this prompt has waited with tokens left and none computed */
    int64_t order;     /* arrival order (smaller = older); breaks ties and picks the chunked prompt */
    bool    started;   /* some of its tokens are already computed (a chunked prompt in progress) */
} lv_pack_item;

typedef struct lv_pack_place {
    int32_t id;
    int32_t n_tokens;  /* tokens of this prompt computed in the step: all it has left, or a chunk */
} lv_pack_place;

/* Choose the prompt tokens of one step, at most `budget` tokens and `max_items` prompts:
 *   1. prompts that waited age_cap steps or more (age_cap > 0), oldest first, as much of each as fits;
 *   2. the others by decreasing length, each placed whole when it fits the room left (best fit
 *      decreasing: with one bin, the step, best fit and first fit coincide);
 *   3. the room still left goes to one prompt that did not fit, as a chunk: one already started,
 *      else the oldest.
 * With pack = false it is the one-prompt-per-step reference: the oldest prompt (started first),
 * whole or a chunk of `budget`. Writes up to n placements to out (every id at most once) and
 * returns their count. */
int lv_pack_step(const lv_pack_item *items, int n, int32_t budget, int max_items, int32_t age_cap, bool pack,
                 lv_pack_place *out);

/* ---- the engine (engine.c) ---- */

typedef struct lv_srv lv_srv;
typedef struct lv_srv_req lv_srv_req;

typedef struct lv_srv_params {
    int32_t n_slots;            /* sequences served at once (<= the context's n_seq_max) */
    int32_t n_batch;            /* token budget of a step (<= the context's n_batch) */
    int32_t max_waiting;        /* requests the waiting queue holds; more are refused (0: 4 x n_slots) */
    int64_t max_waiting_tokens; /* prompt tokens the waiting queue holds (0: 4 x n_ctx) */
    double  queue_timeout_s;    /* a request waiting longer is answered LV_SRV_FINISH_TIMEOUT (<= 0: never) */
    int32_t age_cap;            /* steps a prompt may be passed over before it goes first (default 8) */
    bool    pack;               /* best-fit-decreasing packing (default); false: one prompt per step */
    bool    prompt_cache;       /* keep a finished slot's tokens and reuse the longest common prefix */
} lv_srv_params;

lv_srv_params lv_srv_default_params(void);

/* The engine serves ctx (not owned; created with n_seq_max >= n_slots) and model (for the
 * tokenizer). Nothing runs until lv_srv_start or lv_srv_step. */
lv_status lv_srv_create(lv_context *ctx, const lv_model *model, const lv_srv_params *params, lv_srv **out);
/* Stops the engine thread (cancelling what is left) and frees the engine. Every request must
 * have been released before (their lock is the engine's). */
void      lv_srv_free(lv_srv *srv);
/* Start the engine thread, which steps while there is work and sleeps otherwise. */
lv_status lv_srv_start(lv_srv *srv);
/* Without the thread (tests): run one step. Returns the tokens it computed (0: nothing to do),
 * or a negative lv_status if the step failed (its requests are finished with an error). */
int32_t   lv_srv_step(lv_srv *srv);
/* Refuse new requests from now on (LV_SRV_REFUSE_DRAINING); wait up to timeout_s for the queued
 * and running ones to finish, then cancel the rest. Returns the requests that had to be cancelled. */
int       lv_srv_drain(lv_srv *srv, double timeout_s);

#define LV_SRV_MAX_TOP_LOGPROBS 20

typedef struct lv_srv_req_params {
    const lv_token *prompt;     /* copied; LV_TOKEN_EMBD entries take the rows of embd in order (images) */
    int32_t n_prompt;
    const float *embd;          /* n_embd_rows x the model's n_embd floats (copied), or NULL */
    const lv_pos *pos_mrope;    /* M-RoPE models: (4, n_prompt) rotary positions t, h, w, e of the prompt's rows as
                                   lv_mm_decode lays them out from position 0 (copied); NULL: all four = the row's
                                   position (text). Other models: must be NULL */
    int32_t n_embd_rows;        /* must equal the prompt's LV_TOKEN_EMBD count; a prompt prefix reused
                                   from a slot's cache ends at the first embedding row */
    int32_t n_predict;          /* tokens to generate at most; < 0: the request's share of the context
                                   (n_ctx / n_slots minus the prompt, or what the context has left) */
    lv_sampler_params sampling; /* penalty_last_n -1: the whole context (llama.cpp's -1) */
    bool    ignore_eos;
    bool    logprobs;           /* report each generated token's log-probability (raw softmax, lv_token_logprobs) */
    int32_t n_top_logprobs;     /* and the most probable tokens' at its place, 0..LV_SRV_MAX_TOP_LOGPROBS (with logprobs) */
    const char *const *stop;    /* stop strings (copied); the text ends before the first one found */
    int     n_stop;
    double  max_generate_s;     /* wall-clock cap on generation, from the first token: past it the request
                                   ends as LV_SRV_FINISH_LENGTH (<= 0: none; llama.cpp's t_max_predict_ms) */
    const lv_srv_req *share_prefill_of; /* a request submitted before with the same prompt (rows included; the
                                   other choices of an 'n' request), or NULL. Admitted while that one still computes
                                   its prompt, this one waits for it, then takes a copy of its cache (lv_kv_seq_cp)
                                   and draws its first token from the same logits: the prompt is computed once.
                                   Admitted later, or if that one ends first, it computes the prompt itself. */
} lv_srv_req_params;

typedef enum lv_srv_refusal {
    LV_SRV_ACCEPTED = 0,
    LV_SRV_REFUSE_INVALID,      /* empty prompt, bad token id, bad sampling parameters (lv_last_error) */
    LV_SRV_REFUSE_TOO_LONG,     /* prompt + n_predict larger than the context (HTTP 400) */
    LV_SRV_REFUSE_QUEUE_FULL,   /* the waiting queue is full, by count or by tokens (HTTP 503) */
    LV_SRV_REFUSE_DRAINING,     /* the server is shutting down (HTTP 503) */
} lv_srv_refusal;

/* Queue a request. On LV_SRV_ACCEPTED *out holds it (release with lv_srv_req_release); on a
 * refusal *out is NULL and lv_last_error() says why. */
lv_srv_refusal lv_srv_submit(lv_srv *srv, const lv_srv_req_params *params, lv_srv_req **out);

typedef enum lv_srv_finish {
    LV_SRV_FINISH_NONE = 0,     /* still running */
    LV_SRV_FINISH_EOS,          /* an end-of-generation token */
    LV_SRV_FINISH_STOP,         /* a stop string (the text ends before it) */
    LV_SRV_FINISH_LENGTH,       /* n_predict tokens, or max_generate_s */
    LV_SRV_FINISH_CANCELLED,    /* lv_srv_req_cancel, or the drain timed out */
    LV_SRV_FINISH_TIMEOUT,      /* waited in the queue longer than queue_timeout_s */
    LV_SRV_FINISH_ERROR,        /* the step failed (message in the output) */
} lv_srv_finish;

/* What a request produced past the caller's offsets. text / tokens are malloc'd copies of the new
 * part (the caller frees them; NULL when nothing new). */
typedef struct lv_srv_output {
    char     *text;
    int64_t   n_text;
    lv_token *tokens;
    int32_t   n_tokens;
    /* with logprobs: per new token its log-probability, and n_top (id, log-probability) pairs
     * after each other, most probable first (malloc'd copies, like tokens; NULL otherwise) */
    float    *logprobs;
    lv_token *top_ids;
    float    *top_logprobs;
    int32_t   n_top;
    lv_srv_finish finish;       /* NONE while running */
    const char *stop_word;      /* with FINISH_STOP: the stop string found (valid while the request is) */
    int32_t   n_prompt;         /* prompt tokens */
    int32_t   n_cached;         /* of which reused from the slot's cache */
    int32_t   n_generated;      /* tokens generated so far */
    int32_t   slot;             /* -1 while queued */
    double    t_queue, t_prompt, t_generate; /* seconds: waiting, prompt computation (to the first token), after it */
    char      error[256];       /* with FINISH_ERROR / TIMEOUT */
} lv_srv_output;

/* Wait up to timeout_s (0: do not wait) until the request has text or tokens past
 * (text_off, tok_off), or has finished; fill *o with the new part and the state. Returns
 * LV_OK, or LV_ERR_NOMEM (the copies could not be made; nothing was consumed). */
lv_status lv_srv_req_poll(lv_srv_req *r, int64_t text_off, int32_t tok_off, double timeout_s, lv_srv_output *o);
void      lv_srv_output_clear(lv_srv_output *o);
/* Wait up to timeout_s (0: do not wait) until the request has left the waiting queue: admitted
 * into a slot, or finished without one (queue timeout, cancellation, a drain). Returns false while
 * it still waits; lv_srv_req_poll then tells which (slot >= 0 once admitted). The HTTP side holds
 * a stream's 200 and SSE headers back until then, so that a request refused after waiting gets
 * its status (503 + Retry-After), not a 200 and an error event. */
bool      lv_srv_req_wait_admitted(lv_srv_req *r, double timeout_s);
/* Ask the engine to stop the request: a queued one is dropped, a running one frees its slot at
 * the next step boundary. Safe to call more than once and after it finished. */
void      lv_srv_req_cancel(lv_srv_req *r);
/* Let go of a request (cancelling it if it still runs). NULL is fine. */
void      lv_srv_req_release(lv_srv_req *r);

/* ---- statistics (SERVING.md 1.5) ---- */

#define LV_SRV_HIST_MAX 16
typedef struct lv_srv_hist {
    int     n_bounds;
    double  bounds[LV_SRV_HIST_MAX];      /* upper bounds of the buckets (the last bucket is +Inf) */
    int64_t counts[LV_SRV_HIST_MAX + 1];  /* per bucket, not cumulative */
    double  sum;
    int64_t count;
} lv_srv_hist;

typedef struct lv_srv_stats {
    int64_t prompt_tokens;       /* prompt tokens computed (cached ones excluded) */
    double  prompt_seconds;      /* time of steps that computed prompt tokens */
    int64_t generated_tokens;
    double  generate_seconds;    /* time of steps that only decoded */
    int64_t n_decode;            /* steps */
    int64_t busy_slots_sum;      /* slots in the batch, summed over steps */
    int64_t n_tokens_max;        /* the largest step */
    int64_t requests_finished;
    int64_t requests_cancelled;
    int64_t rejected_queue_full, rejected_too_long, rejected_draining, rejected_timeout;
    int64_t prefix_hit_tokens, prefix_query_tokens;
    int32_t running, waiting, n_slots;
    int64_t waiting_tokens;
    int64_t kv_reserved, n_ctx;  /* tokens reserved for running requests and held by caches, of n_ctx */
    lv_srv_hist ttft, itl, e2e, queue, prompts_per_step;
} lv_srv_stats;

void lv_srv_get_stats(lv_srv *srv, lv_srv_stats *out);

#endif
