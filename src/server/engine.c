/*
 * engine.c: the serving engine (server.h). One thread owns the context; each step it
 *   1. drops cancelled and timed-out requests (their slots are free from this step on),
 *   2. admits waiting requests first come, first served into free slots while the KV cache can
 *      hold every admitted request's prompt + max tokens (idle slots' cached prompts are evicted,
 *      least recently used first, to make room; a slot whose cache shares the longest prefix with
 *      the prompt is preferred and that prefix is not computed again),
 *   3. builds one flat batch: the last sampled token of every generating slot, then the prompt
 *      tokens lv_pack_step chooses under what is left of the budget (each slot its own sequence
 *      id, positions restarting at its cached length; logits only at a prompt's last token),
 *   4. decodes it, samples the slots that have logits, applies stop strings and publishes text.
 * Callers see requests only through the mutex: the queue, each request's output and state, and
 * the statistics live under srv->mu; the slots and the context belong to the engine thread.
 */
#define _GNU_SOURCE
#include "server/server.h"
#include "core/core.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum { REQ_QUEUED, REQ_RUNNING, REQ_DONE };

struct lv_srv_req {
    lv_srv *srv;
    int refs; /* the caller's and the engine's */
    int state;
    bool cancel;
    int64_t order;
    lv_token *prompt;
    int32_t n_prompt, n_predict;
    float *embd;       /* the rows of the prompt's LV_TOKEN_EMBD entries, in order (NULL: none) */
    int64_t share_order; /* the order of the request whose prefill this one shares (-1: none) */
    lv_pos *mpos;      /* M-RoPE: (4, n_prompt) the prompt rows' rotary positions, or NULL (text: the row's position) */
    int32_t *erow;     /* (n_prompt) with embd: the row of each prompt entry, -1 for a text token */
    lv_sampler_params sp;
    bool ignore_eos;
    bool logprobs;
    int32_t n_top;
    char **stop;
    int n_stop;
    int64_t max_stop;
    double max_generate_s;
    double t_arrival, t_admit, t_first, t_last, t_end;
    /* output */
    char *text;
    int64_t n_text, cap_text;
    lv_token *toks;
    int32_t n_toks;
    int64_t cap_toks;
    float *lp;         /* with logprobs: (n_toks) */
    lv_token *top_id;  /* (n_toks, n_top) */
    float *top_lp;     /* (n_toks, n_top) */
    int64_t cap_lp, cap_top_id, cap_top_lp;
    lv_srv_finish finish;
    int stop_idx;
    int32_t n_cached, slot;
    char error[256];
    pthread_cond_t cv;
    lv_srv_req *next; /* waiting queue */
};

typedef struct srv_slot {
    lv_srv_req *req;   /* NULL: idle */
    lv_token *cache;   /* the tokens of this sequence in the KV cache */
    int32_t n_cache;
    int64_t cap_cache;
    int32_t n_done;    /* prompt tokens in the cache */
    int32_t n_gen;
    int32_t age;
    int32_t batch_i;   /* row of its logits in this step's batch, -1: none */
    int32_t n_added;   /* tokens it has in this step's batch */
    lv_token last;
    bool generating;
    bool wait_share;   /* waiting for the request it shares the prefill of (share_order) to finish its prompt */
    bool shared_now;   /* this step: took that request's cache and samples from its logits row (batch_i) */
    lv_sampler *smp;
    lv_detok_stream *ds;
    char *full;        /* generated text; [0, n_emitted) is published */
    int64_t n_full, cap_full, n_emitted;
    /* this step's result, published under the lock */
    lv_token new_tok;
    bool has_tok;
    float new_lp;                               /* with logprobs: new_tok's */
    lv_token new_top_id[LV_SRV_MAX_TOP_LOGPROBS]; /* and the best n_top at its place */
    float new_top_lp[LV_SRV_MAX_TOP_LOGPROBS];
    int64_t visible;   /* text that may be published: [n_emitted, visible) */
    lv_srv_finish fin;
    int fin_stop;
    double t_used;
} srv_slot;

struct lv_srv {
    lv_context *ctx;
    const lv_model *model;
    lv_srv_params p;
    int32_t n_ctx, n_vocab, n_embd;
    bool mrope;          /* the model rotates by four positions per token: every batch row carries them */
    lv_pos *mstage;      /* with mrope: (n_batch, 4) the rows' positions while the step's batch is built */
    pthread_mutex_t mu;
    pthread_cond_t work; /* submit, cancel, stop */
    pthread_cond_t idle; /* a step ended */
    lv_srv_req *q_head, *q_tail;
    int32_t n_waiting;
    int64_t waiting_tokens;
    int32_t running;
    srv_slot *slots;
    lv_batch batch;
    lv_pack_item *items;
    lv_pack_place *places;
    int64_t next_order;
    bool draining, stop, started;
    pthread_t thread;
    lv_srv_stats st;
};

/* ---- small helpers ---- */

static bool grow(void **p, int64_t *cap, int64_t need, size_t elt) {
    if (need <= *cap) return true;
    int64_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = lv_realloc(*p, (size_t)c * elt);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static bool append_text(char **buf, int64_t *n, int64_t *cap, const char *s, int64_t len) {
    if (len <= 0) return true;
    if (!grow((void **)buf, cap, *n + len + 1, 1)) return false;
    memcpy(*buf + *n, s, (size_t)len);
    *n += len;
    (*buf)[*n] = 0;
    return true;
}

static void hist_init(lv_srv_hist *h, const double *b, int n) {
    memset(h, 0, sizeof(*h));
    h->n_bounds = n;
    memcpy(h->bounds, b, (size_t)n * sizeof(double));
}

static void hist_add(lv_srv_hist *h, double v) {
    int i = 0;
    while (i < h->n_bounds && v > h->bounds[i]) i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

static void abs_deadline(struct timespec *ts, double timeout_s) {
    clock_gettime(CLOCK_REALTIME, ts);
    double s = (double)ts->tv_sec + (double)ts->tv_nsec * 1e-9 + (timeout_s > 0 ? timeout_s : 0);
    ts->tv_sec = (time_t)s;
    ts->tv_nsec = (long)((s - (double)ts->tv_sec) * 1e9);
    if (ts->tv_nsec >= 1000000000L) ts->tv_nsec = 999999999L;
}

lv_srv_params lv_srv_default_params(void) {
    lv_srv_params p = {0};
    p.n_slots = 4;
    p.n_batch = 512;
    p.queue_timeout_s = 0;
    p.age_cap = 8;
    p.pack = true;
    p.prompt_cache = true;
    return p;
}

/* ---- requests ---- */

static void req_free(lv_srv_req *r) {
    if (!r) return;
    for (int i = 0; i < r->n_stop; i++) lv_free(r->stop[i]);
    lv_free(r->stop);
    lv_free(r->prompt);
    lv_free(r->embd);
    lv_free(r->erow);
    lv_free(r->mpos);
    lv_free(r->text);
    lv_free(r->toks);
    lv_free(r->lp);
    lv_free(r->top_id);
    lv_free(r->top_lp);
    pthread_cond_destroy(&r->cv);
    lv_free(r);
}

/* drop one reference (under mu); returns the request if it is to be freed after unlocking */
static lv_srv_req *req_unref_locked(lv_srv_req *r) {
    LV_ASSERT(r->refs > 0);
    return --r->refs == 0 ? r : NULL;
}

/* the request is over (under mu): publish the state, wake its reader, drop the engine's reference */
static lv_srv_req *req_finish_locked(lv_srv *s, lv_srv_req *r, lv_srv_finish f, const char *err) {
    r->finish = f;
    r->state = REQ_DONE;
    r->t_end = lv_time_s();
    if (err) snprintf(r->error, sizeof(r->error), "%s", err);
    if (f == LV_SRV_FINISH_CANCELLED) s->st.requests_cancelled++;
    else s->st.requests_finished++;
    if (f == LV_SRV_FINISH_TIMEOUT) s->st.rejected_timeout++;
    if (f != LV_SRV_FINISH_CANCELLED && f != LV_SRV_FINISH_TIMEOUT && f != LV_SRV_FINISH_ERROR)
        hist_add(&s->st.e2e, r->t_end - r->t_arrival);
    pthread_cond_broadcast(&r->cv);
    return req_unref_locked(r);
}

lv_srv_refusal lv_srv_submit(lv_srv *s, const lv_srv_req_params *p, lv_srv_req **out) {
    *out = NULL;
    if (!p || !p->prompt || p->n_prompt <= 0) {
        lv_error(LV_ERR_INVALID_ARG, "the prompt is empty");
        return LV_SRV_REFUSE_INVALID;
    }
    int32_t n_rows = 0;
    for (int32_t i = 0; i < p->n_prompt; i++) {
        if (p->prompt[i] == LV_TOKEN_EMBD && n_rows < p->n_embd_rows) {
            n_rows++;
            continue;
        }
        if (p->prompt[i] < 0 || p->prompt[i] >= s->n_vocab) {
            lv_error(LV_ERR_INVALID_ARG, "prompt token %d (at %d) is not in the vocabulary [0, %d)%s", p->prompt[i], i, s->n_vocab,
                     p->prompt[i] == LV_TOKEN_EMBD ? " (more embedding rows than given)" : "");
            return LV_SRV_REFUSE_INVALID;
        }
    }
    if (n_rows != p->n_embd_rows || (n_rows > 0 && !p->embd)) {
        lv_error(LV_ERR_INVALID_ARG, "%d embedding rows given for %d LV_TOKEN_EMBD entries of the prompt", p->n_embd_rows, n_rows);
        return LV_SRV_REFUSE_INVALID;
    }
    if (!(p->sampling.temp >= 0) || !(p->sampling.top_p >= 0 && p->sampling.top_p <= 1) || !(p->sampling.min_p >= 0 && p->sampling.min_p <= 1)) {
        lv_error(LV_ERR_INVALID_ARG, "temperature must be >= 0, top_p and min_p in [0, 1]");
        return LV_SRV_REFUSE_INVALID;
    }
    if (p->logprobs && (p->n_top_logprobs < 0 || p->n_top_logprobs > LV_SRV_MAX_TOP_LOGPROBS)) {
        lv_error(LV_ERR_INVALID_ARG, "top logprobs: %d is not in [0, %d]", p->n_top_logprobs, LV_SRV_MAX_TOP_LOGPROBS);
        return LV_SRV_REFUSE_INVALID;
    }
    {
        lv_sampler_params sp = p->sampling;
        if (sp.penalty_last_n < -1 || !(sp.penalty_repeat >= 0 && sp.penalty_repeat <= 1e6f) || !(sp.penalty_freq >= -1e6f && sp.penalty_freq <= 1e6f) ||
            !(sp.penalty_present >= -1e6f && sp.penalty_present <= 1e6f)) {
            lv_error(LV_ERR_INVALID_ARG, "penalties: last_n must be >= -1, repeat >= 0, frequency and presence finite");
            return LV_SRV_REFUSE_INVALID;
        }
    }
    if (p->n_stop < 0 || (p->n_stop > 0 && !p->stop)) {
        lv_error(LV_ERR_INVALID_ARG, "bad stop list");
        return LV_SRV_REFUSE_INVALID;
    }
    if (p->pos_mrope && !s->mrope) {
        lv_error(LV_ERR_INVALID_ARG, "M-RoPE positions for a model that rotates by one position per token");
        return LV_SRV_REFUSE_INVALID;
    }
    if (p->share_prefill_of) {
        const lv_srv_req *l = p->share_prefill_of;
        bool same = l->srv == s && l->n_prompt == p->n_prompt && memcmp(l->prompt, p->prompt, (size_t)p->n_prompt * sizeof(lv_token)) == 0;
        if (same && n_rows > 0) same = l->embd && memcmp(l->embd, p->embd, (size_t)n_rows * (size_t)s->n_embd * sizeof(float)) == 0;
        if (same) same = !l->mpos == !p->pos_mrope && (!l->mpos || memcmp(l->mpos, p->pos_mrope, (size_t)p->n_prompt * 4 * sizeof(lv_pos)) == 0);
        if (!same) {
            lv_error(LV_ERR_INVALID_ARG, "share_prefill_of: a request of another prompt (or another server)");
            return LV_SRV_REFUSE_INVALID;
        }
    }
    int64_t n_predict = p->n_predict;
    if (n_predict < 0) {
        n_predict = (int64_t)s->n_ctx / s->p.n_slots - p->n_prompt;
        if (n_predict <= 0) n_predict = (int64_t)s->n_ctx - p->n_prompt;
    }
    if ((int64_t)p->n_prompt + n_predict > s->n_ctx || p->n_prompt >= s->n_ctx) {
        if (p->n_predict < 0 || p->n_prompt >= s->n_ctx)
            lv_error(LV_ERR_INVALID_ARG, "the request (%d prompt tokens) exceeds the available context size (%d tokens)", p->n_prompt, s->n_ctx);
        else
            lv_error(LV_ERR_INVALID_ARG, "the prompt (%d tokens) plus the tokens to generate (%d) exceed the context size (%d tokens)",
                     p->n_prompt, p->n_predict, s->n_ctx);
        pthread_mutex_lock(&s->mu);
        s->st.rejected_too_long++;
        pthread_mutex_unlock(&s->mu);
        return LV_SRV_REFUSE_TOO_LONG;
    }
    lv_srv_req *r = lv_calloc(1, sizeof(*r));
    if (!r) return LV_SRV_REFUSE_INVALID;
    pthread_cond_init(&r->cv, NULL);
    r->srv = s;
    r->refs = 2;
    r->slot = -1;
    r->n_prompt = p->n_prompt;
    r->n_predict = (int32_t)n_predict;
    r->share_order = p->share_prefill_of ? p->share_prefill_of->order : -1;
    r->sp = p->sampling;
    if (r->sp.penalty_last_n < 0 || r->sp.penalty_last_n > s->n_ctx) r->sp.penalty_last_n = s->n_ctx;
    r->ignore_eos = p->ignore_eos;
    r->logprobs = p->logprobs;
    r->n_top = p->logprobs ? p->n_top_logprobs : 0;
    r->max_generate_s = p->max_generate_s;
    r->prompt = lv_mallocn((size_t)p->n_prompt, sizeof(lv_token));
    r->stop = p->n_stop ? lv_calloc((size_t)p->n_stop, sizeof(char *)) : NULL;
    if (n_rows > 0) {
        r->embd = lv_mallocn((size_t)n_rows * (size_t)s->n_embd, sizeof(float));
        r->erow = lv_mallocn((size_t)p->n_prompt, sizeof(int32_t));
    }
    if (p->pos_mrope) r->mpos = lv_mallocn((size_t)p->n_prompt * 4, sizeof(lv_pos));
    bool ok = r->prompt && (!p->n_stop || r->stop) && (n_rows == 0 || (r->embd && r->erow)) && (!p->pos_mrope || r->mpos);
    if (ok && p->pos_mrope) memcpy(r->mpos, p->pos_mrope, (size_t)p->n_prompt * 4 * sizeof(lv_pos));
    if (ok) memcpy(r->prompt, p->prompt, (size_t)p->n_prompt * sizeof(lv_token));
    if (ok && n_rows > 0) {
        memcpy(r->embd, p->embd, (size_t)n_rows * (size_t)s->n_embd * sizeof(float));
        for (int32_t i = 0, k = 0; i < p->n_prompt; i++) r->erow[i] = p->prompt[i] == LV_TOKEN_EMBD ? k++ : -1;
    }
    for (int i = 0; ok && i < p->n_stop; i++) {
        if (!p->stop[i] || !p->stop[i][0]) {
            lv_error(LV_ERR_INVALID_ARG, "stop string %d is empty", i);
            r->n_stop = i;
            req_free(r);
            return LV_SRV_REFUSE_INVALID;
        }
        ok = (r->stop[i] = lv_strdup(p->stop[i])) != NULL;
        r->n_stop = i + 1;
        int64_t len = (int64_t)strlen(p->stop[i]);
        if (len > r->max_stop) r->max_stop = len;
    }
    if (!ok) {
        req_free(r);
        return LV_SRV_REFUSE_INVALID;
    }
    r->t_arrival = lv_time_s();
    pthread_mutex_lock(&s->mu);
    lv_srv_refusal why = LV_SRV_ACCEPTED;
    if (s->draining || s->stop) {
        why = LV_SRV_REFUSE_DRAINING;
        s->st.rejected_draining++;
        lv_error(LV_ERR_INVALID_ARG, "the server is shutting down");
    } else if (s->n_waiting >= s->p.max_waiting || (s->n_waiting > 0 && s->waiting_tokens + p->n_prompt > s->p.max_waiting_tokens)) {
        why = LV_SRV_REFUSE_QUEUE_FULL;
        s->st.rejected_queue_full++;
        lv_error(LV_ERR_INVALID_ARG, "the server is busy: %d requests (%lld prompt tokens) are waiting", s->n_waiting,
                 (long long)s->waiting_tokens);
    } else {
        r->order = s->next_order++;
        r->state = REQ_QUEUED;
        if (s->q_tail) s->q_tail->next = r;
        else s->q_head = r;
        s->q_tail = r;
        s->n_waiting++;
        s->waiting_tokens += r->n_prompt;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
    if (why != LV_SRV_ACCEPTED) {
        req_free(r);
        return why;
    }
    *out = r;
    return LV_SRV_ACCEPTED;
}

lv_status lv_srv_req_poll(lv_srv_req *r, int64_t text_off, int32_t tok_off, double timeout_s, lv_srv_output *o) {
    memset(o, 0, sizeof(*o));
    lv_srv *s = r->srv;
    pthread_mutex_lock(&s->mu);
    if (timeout_s > 0) {
        struct timespec dl;
        abs_deadline(&dl, timeout_s);
        while (r->state != REQ_DONE && r->n_text <= text_off && r->n_toks <= tok_off)
            if (pthread_cond_timedwait(&r->cv, &s->mu, &dl) == ETIMEDOUT) break;
    }
    lv_status st = LV_OK;
    if (r->n_text > text_off) {
        o->n_text = r->n_text - text_off;
        if ((o->text = lv_malloc((size_t)o->n_text + 1))) {
            memcpy(o->text, r->text + text_off, (size_t)o->n_text);
            o->text[o->n_text] = 0;
        } else {
            o->n_text = 0;
            st = LV_ERR_NOMEM;
        }
    }
    if (st == LV_OK && r->n_toks > tok_off) {
        o->n_tokens = r->n_toks - tok_off;
        if ((o->tokens = lv_mallocn((size_t)o->n_tokens, sizeof(lv_token))))
            memcpy(o->tokens, r->toks + tok_off, (size_t)o->n_tokens * sizeof(lv_token));
        else {
            o->n_tokens = 0;
            st = LV_ERR_NOMEM;
        }
    }
    if (st == LV_OK && r->logprobs && r->n_toks > tok_off) {
        const size_t n = (size_t)(r->n_toks - tok_off), k = (size_t)r->n_top;
        o->n_top = r->n_top;
        o->logprobs = lv_mallocn(n, sizeof(float));
        o->top_ids = k ? lv_mallocn(n * k, sizeof(lv_token)) : NULL;
        o->top_logprobs = k ? lv_mallocn(n * k, sizeof(float)) : NULL;
        if (!o->logprobs || (k && (!o->top_ids || !o->top_logprobs))) {
            st = LV_ERR_NOMEM;
        } else {
            memcpy(o->logprobs, r->lp + tok_off, n * sizeof(float));
            if (k) {
                memcpy(o->top_ids, r->top_id + (size_t)tok_off * k, n * k * sizeof(lv_token));
                memcpy(o->top_logprobs, r->top_lp + (size_t)tok_off * k, n * k * sizeof(float));
            }
        }
    }
    if (st == LV_OK) {
        /* finished only once everything before it was handed over */
        o->finish = r->state == REQ_DONE ? r->finish : LV_SRV_FINISH_NONE;
        o->stop_word = r->finish == LV_SRV_FINISH_STOP && r->stop_idx >= 0 && r->stop_idx < r->n_stop ? r->stop[r->stop_idx] : NULL;
        memcpy(o->error, r->error, sizeof(o->error));
    } else {
        lv_free(o->text);
        o->text = NULL;
        o->n_text = 0;
        lv_srv_output_clear(o);
        o->n_tokens = 0;
        o->n_top = 0;
    }
    o->n_prompt = r->n_prompt;
    o->n_cached = r->n_cached;
    o->n_generated = r->n_toks;
    o->slot = r->slot;
    const double now = r->state == REQ_DONE ? r->t_end : lv_time_s();
    o->t_queue = (r->t_admit > 0 ? r->t_admit : now) - r->t_arrival;
    o->t_prompt = r->t_admit > 0 ? (r->t_first > 0 ? r->t_first : now) - r->t_admit : 0;
    o->t_generate = r->t_first > 0 ? now - r->t_first : 0;
    pthread_mutex_unlock(&s->mu);
    return st;
}

bool lv_srv_req_wait_admitted(lv_srv_req *r, double timeout_s) {
    lv_srv *s = r->srv;
    pthread_mutex_lock(&s->mu);
    if (timeout_s > 0) {
        struct timespec dl;
        abs_deadline(&dl, timeout_s);
        while (r->state == REQ_QUEUED)
            if (pthread_cond_timedwait(&r->cv, &s->mu, &dl) == ETIMEDOUT) break;
    }
    const bool left = r->state != REQ_QUEUED;
    pthread_mutex_unlock(&s->mu);
    return left;
}

void lv_srv_output_clear(lv_srv_output *o) {
    if (!o) return;
    lv_free(o->text);
    lv_free(o->tokens);
    lv_free(o->logprobs);
    lv_free(o->top_ids);
    lv_free(o->top_logprobs);
    o->text = NULL;
    o->tokens = NULL;
    o->logprobs = NULL;
    o->top_ids = NULL;
    o->top_logprobs = NULL;
}

void lv_srv_req_cancel(lv_srv_req *r) {
    if (!r) return;
    lv_srv *s = r->srv;
    pthread_mutex_lock(&s->mu);
    if (r->state != REQ_DONE) {
        r->cancel = true;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
}

void lv_srv_req_release(lv_srv_req *r) {
    if (!r) return;
    lv_srv *s = r->srv;
    pthread_mutex_lock(&s->mu);
    if (r->state != REQ_DONE) {
        r->cancel = true;
        pthread_cond_signal(&s->work);
    }
    lv_srv_req *dead = req_unref_locked(r);
    pthread_mutex_unlock(&s->mu);
    req_free(dead);
}

/* requests whose last reference went while the lock was held: freed after unlocking (a request
 * that is done is in no queue, so its queue link is free to chain them) */
static void dead_push(lv_srv_req **list, lv_srv_req *d) {
    if (!d) return;
    d->next = *list;
    *list = d;
}

static void dead_free(lv_srv_req *list) {
    while (list) {
        lv_srv_req *n = list->next;
        req_free(list);
        list = n;
    }
}

/* ---- slots ---- */

static void slot_clear_kv(lv_srv *s, int i) {
    lv_kv_seq_rm(s->ctx, i, 0, -1);
    s->slots[i].n_cache = 0;
}

/* The slot's request is over (under mu; engine thread). The tokens stay cached for the next
 * request unless prompt caching is off or the step failed. */
static lv_srv_req *slot_release_locked(lv_srv *s, int i, lv_srv_finish f, const char *err) {
    srv_slot *sl = &s->slots[i];
    lv_srv_req *r = sl->req;
    sl->req = NULL;
    sl->generating = false;
    sl->t_used = lv_time_s();
    s->running--;
    lv_sampler_free(sl->smp);
    sl->smp = NULL;
    lv_detok_stream_free(sl->ds);
    sl->ds = NULL;
    if (!s->p.prompt_cache || f == LV_SRV_FINISH_ERROR) slot_clear_kv(s, i);
    return req_finish_locked(s, r, f, err);
}

/* the tokens two prompts share from the start; an image's embedding rows (LV_TOKEN_EMBD) end it,
 * as two images' rows look alike here */
static int64_t common_prefix(const lv_token *a, int64_t na, const lv_token *b, int64_t nb) {
    int64_t n = 0;
    while (n < na && n < nb && a[n] == b[n] && a[n] != LV_TOKEN_EMBD) n++;
    return n;
}

/* tokens of the KV cache promised: running requests' prompt + max tokens, idle slots' caches */
static int64_t kv_reserved(const lv_srv *s, int except) {
    int64_t t = 0;
    for (int i = 0; i < s->p.n_slots; i++) {
        if (i == except) continue;
        const srv_slot *sl = &s->slots[i];
        t += sl->req ? (int64_t)sl->req->n_prompt + sl->req->n_predict : sl->n_cache;
    }
    return t;
}

/* the slot of the running request of this order that is still computing its prompt, or -1 */
static int leader_slot(const lv_srv *s, int64_t order) {
    for (int i = 0; i < s->p.n_slots; i++) {
        const srv_slot *sl = &s->slots[i];
        if (sl->req && sl->req->order == order && !sl->generating && !sl->wait_share) return i;
    }
    return -1;
}

/* Admit waiting requests, first come first served, while a slot is free and the KV cache can
 * hold them (under mu; engine thread). */
static void admit_locked(lv_srv *s) {
    while (s->q_head) {
        lv_srv_req *r = s->q_head;
        /* the idle slot that shares the longest prefix, else the least recently used */
        int best = -1, lru = -1;
        int64_t best_lcp = 0;
        for (int i = 0; i < s->p.n_slots; i++) {
            srv_slot *sl = &s->slots[i];
            if (sl->req) continue;
            if (lru < 0 || sl->n_cache == 0 || (s->slots[lru].n_cache > 0 && sl->t_used < s->slots[lru].t_used)) lru = i;
            if (s->p.prompt_cache) {
                int64_t l = common_prefix(sl->cache, sl->n_cache, r->prompt, r->n_prompt);
                if (l > best_lcp) {
                    best_lcp = l;
                    best = i;
                }
            }
        }
        if (lru < 0) return; /* every slot busy */
        /* reuse only a prefix worth it (llama.cpp: 10% of the prompt), and leave one token to compute */
        if (best < 0 || best_lcp * 10 < r->n_prompt) {
            best = lru;
            best_lcp = s->p.prompt_cache ? common_prefix(s->slots[lru].cache, s->slots[lru].n_cache, r->prompt, r->n_prompt) : 0;
        }
        if (best_lcp >= r->n_prompt) best_lcp = r->n_prompt - 1;
        const int64_t need = (int64_t)r->n_prompt + r->n_predict;
        int64_t used = kv_reserved(s, best);
        /* evict idle caches, least recently used first, until the request fits */
        while (used + need > s->n_ctx) {
            int v = -1;
            for (int i = 0; i < s->p.n_slots; i++)
                if (i != best && !s->slots[i].req && s->slots[i].n_cache > 0 && (v < 0 || s->slots[i].t_used < s->slots[v].t_used)) v = i;
            if (v < 0) break;
            used -= s->slots[v].n_cache;
            slot_clear_kv(s, v);
        }
        if (used + need > s->n_ctx) return; /* wait for running requests to finish */
        srv_slot *sl = &s->slots[best];
        if (sl->n_cache > best_lcp) {
            if (lv_kv_seq_rm(s->ctx, best, (lv_pos)best_lcp, -1) != LV_OK) { /* e.g. a recurrent state cannot be cut */
                slot_clear_kv(s, best);
                best_lcp = 0;
            } else {
                sl->n_cache = (int32_t)best_lcp;
                /* the prefix kept is text before any image (common_prefix stops at embedding rows): its
                 * rotary positions are its cache positions */
                lv_kv_seq_set_rope_offset(s->ctx, best, 0);
            }
        }
        lv_sampler *smp = NULL;
        lv_detok_stream *ds = NULL;
        if (lv_sampler_create(r->sp, s->n_vocab, &smp) != LV_OK || !grow((void **)&sl->cache, &sl->cap_cache, need, sizeof(lv_token))) {
            lv_sampler_free(smp);
            return; /* out of memory: try again next step */
        }
        /* the penalties look back on the prompt's last tokens too (llama-server feeds the prompt to its sampler) */
        for (int32_t j = r->n_prompt - r->sp.penalty_last_n > 0 ? r->n_prompt - r->sp.penalty_last_n : 0; j < r->n_prompt; j++)
            if (r->prompt[j] >= 0) lv_sampler_accept(smp, r->prompt[j]); /* not an image's embedding rows */
        /* a model without a tokenizer has no detokenizer: the text stays empty, tokens still flow */
        if (lv_detok_stream_create(s->model, &ds) != LV_OK) ds = NULL;
        s->q_head = r->next;
        if (!s->q_head) s->q_tail = NULL;
        r->next = NULL;
        s->n_waiting--;
        s->waiting_tokens -= r->n_prompt;
        r->state = REQ_RUNNING;
        r->slot = best;
        r->t_admit = lv_time_s();
        pthread_cond_broadcast(&r->cv); /* lv_srv_req_wait_admitted */
        r->n_cached = (int32_t)best_lcp;
        hist_add(&s->st.queue, r->t_admit - r->t_arrival);
        s->st.prefix_hit_tokens += best_lcp;
        s->st.prefix_query_tokens += r->n_prompt;
        s->running++;
        sl->req = r;
        sl->smp = smp;
        sl->ds = ds;
        sl->n_done = (int32_t)best_lcp;
        sl->n_gen = 0;
        sl->age = 0;
        sl->generating = false;
        sl->wait_share = false;
        if (r->share_order >= 0 && leader_slot(s, r->share_order) >= 0) { /* the copy needs an empty sequence */
            slot_clear_kv(s, best);
            sl->n_done = 0;
            r->n_cached = 0;
            sl->wait_share = true;
        }
        sl->n_full = sl->n_emitted = 0;
    }
}

/* drop cancelled and timed-out requests (under mu; engine thread); returns requests to free */
static void reap_locked(lv_srv *s, lv_srv_req **dead) {
    for (int i = 0; i < s->p.n_slots; i++) {
        srv_slot *sl = &s->slots[i];
        if (sl->req && sl->req->cancel) {
            dead_push(dead, slot_release_locked(s, i, LV_SRV_FINISH_CANCELLED, NULL));
        }
    }
    const double now = lv_time_s();
    lv_srv_req **pp = &s->q_head, *prev = NULL;
    while (*pp) {
        lv_srv_req *r = *pp;
        const bool timed_out = s->p.queue_timeout_s > 0 && now - r->t_arrival > s->p.queue_timeout_s;
        if (r->cancel || timed_out) {
            *pp = r->next;
            if (s->q_tail == r) s->q_tail = prev;
            r->next = NULL;
            s->n_waiting--;
            s->waiting_tokens -= r->n_prompt;
            char msg[128];
            snprintf(msg, sizeof(msg), "the request waited %.1f s in the queue (limit %.1f s)", now - r->t_arrival, s->p.queue_timeout_s);
            dead_push(dead, req_finish_locked(s, r, r->cancel ? LV_SRV_FINISH_CANCELLED : LV_SRV_FINISH_TIMEOUT, r->cancel ? NULL : msg));
            continue;
        }
        prev = r;
        pp = &r->next;
    }
}

/* ---- text: stop strings ---- */

/* After new text in the slot's buffer: find the first stop string (returns its index and sets
 * *at), or say how much may be published (*visible: all but a tail that could begin a stop). */
static int scan_stops(const lv_srv_req *r, const srv_slot *sl, int64_t *at, int64_t *visible) {
    int found = -1;
    int64_t first = INT64_MAX;
    const int64_t from = sl->n_emitted - r->max_stop + 1 > 0 ? sl->n_emitted - r->max_stop + 1 : 0;
    for (int k = 0; k < r->n_stop; k++) {
        const size_t len = strlen(r->stop[k]);
        const char *p = memmem(sl->full + from, (size_t)(sl->n_full - from), r->stop[k], len);
        if (p && p - sl->full < first) {
            first = p - sl->full;
            found = k;
        }
    }
    if (found >= 0) {
        *at = first;
        *visible = first;
        return found;
    }
    int64_t hold = 0;
    for (int k = 0; k < r->n_stop; k++) {
        const int64_t len = (int64_t)strlen(r->stop[k]);
        for (int64_t h = len - 1 < sl->n_full ? len - 1 : sl->n_full; h > hold; h--)
            if (memcmp(sl->full + sl->n_full - h, r->stop[k], (size_t)h) == 0) {
                hold = h;
                break;
            }
    }
    *visible = sl->n_full - hold;
    return -1;
}

/* Sample the slot's next token from its logits and decide whether the request is over
 * (engine thread; nothing shared is touched). */
static void slot_sample(lv_srv *s, srv_slot *sl, const float *logits) {
    lv_srv_req *r = sl->req;
    sl->has_tok = false;
    sl->fin = LV_SRV_FINISH_NONE;
    sl->fin_stop = -1;
    sl->visible = sl->n_emitted;
    if (sl->n_gen >= r->n_predict) { /* max_tokens 0: the prompt only */
        sl->fin = LV_SRV_FINISH_LENGTH;
        return;
    }
    const lv_token tok = lv_sampler_sample(sl->smp, logits);
    lv_sampler_accept(sl->smp, tok);
    if (r->logprobs) sl->new_lp = lv_token_logprobs(logits, s->n_vocab, tok, r->n_top, sl->new_top_id, sl->new_top_lp);
    sl->new_tok = tok;
    sl->has_tok = true;
    sl->n_gen++;
    const char *piece = NULL;
    int64_t plen = 0;
    if (sl->ds && lv_detok_stream_push(sl->ds, tok, &piece, &plen) == LV_OK && plen > 0 &&
        !append_text(&sl->full, &sl->n_full, &sl->cap_full, piece, plen)) {
        sl->fin = LV_SRV_FINISH_ERROR;
        return;
    }
    if (!r->ignore_eos && lv_token_is_eog(s->model, tok)) sl->fin = LV_SRV_FINISH_EOS;
    int64_t at = 0, visible = sl->n_full;
    if (r->n_stop) {
        const int k = scan_stops(r, sl, &at, &visible);
        if (k >= 0) {
            sl->fin = LV_SRV_FINISH_STOP;
            sl->fin_stop = k;
            sl->n_full = at;
        }
    }
    if (sl->fin == LV_SRV_FINISH_NONE && sl->n_gen >= r->n_predict) sl->fin = LV_SRV_FINISH_LENGTH;
    /* (t_first is written by this thread, in slot_publish_locked) */
    if (sl->fin == LV_SRV_FINISH_NONE && r->max_generate_s > 0 && r->t_first > 0 && lv_time_s() - r->t_first >= r->max_generate_s)
        sl->fin = LV_SRV_FINISH_LENGTH;
    if (sl->fin != LV_SRV_FINISH_NONE && sl->fin != LV_SRV_FINISH_STOP) {
        if (sl->ds && lv_detok_stream_flush(sl->ds, &piece, &plen) == LV_OK && plen > 0)
            append_text(&sl->full, &sl->n_full, &sl->cap_full, piece, plen);
        visible = sl->n_full;
    }
    sl->visible = visible; /* published by slot_publish_locked */
}

static lv_srv_req *slot_publish_locked(lv_srv *s, int i, double now) {
    srv_slot *sl = &s->slots[i];
    lv_srv_req *r = sl->req;
    const int64_t visible = sl->visible;
    if (sl->has_tok) {
        if (!grow((void **)&r->toks, &r->cap_toks, r->n_toks + 1, sizeof(lv_token)))
            return slot_release_locked(s, i, LV_SRV_FINISH_ERROR, "out of memory");
        if (r->logprobs) {
            const int64_t k = r->n_top, need = (int64_t)r->n_toks + 1;
            if (!grow((void **)&r->lp, &r->cap_lp, need, sizeof(float)) ||
                (k && (!grow((void **)&r->top_id, &r->cap_top_id, need * k, sizeof(lv_token)) ||
                       !grow((void **)&r->top_lp, &r->cap_top_lp, need * k, sizeof(float)))))
                return slot_release_locked(s, i, LV_SRV_FINISH_ERROR, "out of memory");
            r->lp[r->n_toks] = sl->new_lp;
            if (k) {
                memcpy(r->top_id + (size_t)r->n_toks * k, sl->new_top_id, (size_t)k * sizeof(lv_token));
                memcpy(r->top_lp + (size_t)r->n_toks * k, sl->new_top_lp, (size_t)k * sizeof(float));
            }
        }
        r->toks[r->n_toks++] = sl->new_tok;
        s->st.generated_tokens++;
        if (r->t_first == 0) {
            r->t_first = now;
            hist_add(&s->st.ttft, now - r->t_arrival);
        } else {
            hist_add(&s->st.itl, now - r->t_last);
        }
        r->t_last = now;
    }
    if (visible > sl->n_emitted) {
        if (!append_text(&r->text, &r->n_text, &r->cap_text, sl->full + sl->n_emitted, visible - sl->n_emitted))
            return slot_release_locked(s, i, LV_SRV_FINISH_ERROR, "out of memory");
        sl->n_emitted = visible;
    }
    if (sl->has_tok || visible > 0) pthread_cond_broadcast(&r->cv);
    if (sl->fin != LV_SRV_FINISH_NONE) {
        r->stop_idx = sl->fin_stop;
        return slot_release_locked(s, i, sl->fin, sl->fin == LV_SRV_FINISH_ERROR ? "out of memory" : NULL);
    }
    return NULL;
}

/* ---- the step ---- */

static bool cache_push(srv_slot *sl, lv_token t) {
    if (sl->n_cache >= sl->cap_cache) return false;
    sl->cache[sl->n_cache++] = t;
    return true;
}

int32_t lv_srv_step(lv_srv *s) {
    const int ns = s->p.n_slots;
    lv_srv_req *dead = NULL;
    pthread_mutex_lock(&s->mu);
    reap_locked(s, &dead);
    admit_locked(s);
    pthread_mutex_unlock(&s->mu);
    dead_free(dead);
    dead = NULL;

    /* 1. decode tokens of generating slots */
    lv_batch *b = &s->batch;
    b->n_tokens = 0;
    int n_items = 0;
    for (int i = 0; i < ns; i++) {
        srv_slot *sl = &s->slots[i];
        sl->batch_i = -1;
        sl->n_added = 0;
        sl->shared_now = false;
        if (!sl->req) continue;
        if (sl->wait_share && leader_slot(s, sl->req->share_order) < 0) sl->wait_share = false; /* it ended: prefill alone */
        if (sl->wait_share) continue;
        if (sl->generating) {
            const int32_t k = b->n_tokens++;
            b->token[k] = sl->last;
            b->pos[k] = sl->n_cache;
            if (s->mrope) /* a text token: its cache position plus the sequence's rotary offset, all four */
                for (int c = 0; c < 4; c++) s->mstage[4 * k + c] = sl->n_cache + lv_kv_seq_rope_offset(s->ctx, i);
            b->seq_id[k] = i;
            b->logits[k] = 1;
            sl->batch_i = k;
            sl->n_added = 1;
        } else {
            s->items[n_items++] = (lv_pack_item){.id = i,
                                                 .n_tokens = sl->req->n_prompt - sl->n_done,
                                                 .age = sl->age,
                                                 .order = sl->req->order,
                                                 .started = sl->n_done > sl->req->n_cached};
        }
    }
    const int32_t n_decode = b->n_tokens;
    /* 2. prompt tokens, packed */
    const int n_place = lv_pack_step(s->items, n_items, s->p.n_batch - n_decode, ns, s->p.age_cap, s->p.pack, s->places);
    int32_t n_prompt_tok = 0;
    for (int k = 0; k < n_place; k++) {
        const int i = s->places[k].id;
        srv_slot *sl = &s->slots[i];
        const lv_srv_req *r = sl->req;
        for (int32_t j = 0; j < s->places[k].n_tokens; j++) {
            const int32_t t = b->n_tokens++;
            const int32_t pj = sl->n_done + j;
            b->token[t] = r->prompt[pj];
            if (r->prompt[pj] == LV_TOKEN_EMBD)
                memcpy(b->embd + (int64_t)t * s->n_embd, r->embd + (int64_t)r->erow[pj] * s->n_embd, (size_t)s->n_embd * sizeof(float));
            b->pos[t] = pj;
            if (s->mrope)
                for (int c = 0; c < 4; c++) s->mstage[4 * t + c] = r->mpos ? r->mpos[(int64_t)c * r->n_prompt + pj] : pj + lv_kv_seq_rope_offset(s->ctx, i);
            b->seq_id[t] = i;
            b->logits[t] = pj == r->n_prompt - 1;
            if (b->logits[t]) sl->batch_i = t;
        }
        sl->n_added = s->places[k].n_tokens;
        n_prompt_tok += s->places[k].n_tokens;
    }
    for (int k = 0; k < n_items; k++) {
        bool placed = false;
        for (int j = 0; j < n_place; j++) placed |= s->places[j].id == s->items[k].id;
        s->slots[s->items[k].id].age = placed ? 0 : s->slots[s->items[k].id].age + 1;
    }
    if (b->n_tokens == 0) return 0;
    if (s->mrope)
        for (int32_t t = 0; t < b->n_tokens; t++)
            for (int c = 0; c < 4; c++) b->pos_mrope[(int64_t)c * b->n_tokens + t] = s->mstage[4 * t + c];

    const double t0 = lv_time_s();
    const lv_status st = lv_decode(s->ctx, b);
    const double t1 = lv_time_s(), dt = t1 - t0;
    if (st != LV_OK) {
        char msg[256];
        snprintf(msg, sizeof(msg), "decoding failed: %s", lv_last_error()[0] ? lv_last_error() : lv_status_str(st));
        LV_LOG_W("server: %s", msg);
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < ns; i++)
            if (s->slots[i].req && s->slots[i].n_added > 0) dead_push(&dead, slot_release_locked(s, i, LV_SRV_FINISH_ERROR, msg));
        pthread_cond_broadcast(&s->idle);
        pthread_mutex_unlock(&s->mu);
        dead_free(dead);
        return (int32_t)st;
    }
    /* the cache now holds the batch's tokens */
    for (int t = 0; t < b->n_tokens; t++) LV_ASSERT(cache_push(&s->slots[b->seq_id[t]], b->token[t]));
    for (int i = 0; i < ns; i++) {
        srv_slot *sl = &s->slots[i];
        if (sl->req && sl->n_added && !sl->generating) sl->n_done += sl->n_added;
    }
    /* requests waiting for a prompt that was completed in this step take a copy of its cache and
     * its logits row */
    for (int i = 0; i < ns; i++) {
        srv_slot *sl = &s->slots[i];
        if (!sl->req || !sl->wait_share) continue;
        const int l = leader_slot(s, sl->req->share_order);
        if (l < 0 || s->slots[l].batch_i < 0 || s->slots[l].n_done < s->slots[l].req->n_prompt) continue;
        const srv_slot *ls = &s->slots[l];
        sl->wait_share = false;
        if (lv_kv_seq_cp(s->ctx, l, i) != LV_OK) continue; /* (nothing changed) it computes the prompt itself from the next step */
        memcpy(sl->cache, ls->cache, (size_t)ls->n_cache * sizeof(lv_token));
        sl->n_cache = ls->n_cache;
        sl->n_done = sl->req->n_prompt;
        sl->req->n_cached = sl->req->n_prompt;
        sl->batch_i = ls->batch_i;
        sl->shared_now = true;
    }
    for (int i = 0; i < ns; i++) {
        srv_slot *sl = &s->slots[i];
        if (!sl->req || (!sl->n_added && !sl->shared_now)) continue;
        if (sl->batch_i < 0) continue; /* a chunk: no logits yet */
        slot_sample(s, sl, lv_get_logits_ith(s->ctx, sl->batch_i));
        if (sl->fin == LV_SRV_FINISH_NONE) {
            sl->last = sl->new_tok;
            sl->generating = true;
        }
    }
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < ns; i++) {
        srv_slot *sl = &s->slots[i];
        if (!sl->req || (!sl->n_added && !sl->shared_now)) continue;
        if (sl->batch_i < 0) continue; /* a chunk: nothing to publish */
        dead_push(&dead, slot_publish_locked(s, i, t1));
    }
    lv_srv_stats *S = &s->st;
    S->n_decode++;
    int busy = 0;
    for (int i = 0; i < ns; i++) busy += s->slots[i].n_added > 0;
    S->busy_slots_sum += busy;
    if (b->n_tokens > S->n_tokens_max) S->n_tokens_max = b->n_tokens;
    S->prompt_tokens += n_prompt_tok;
    S->prompt_seconds += dt * n_prompt_tok / b->n_tokens;
    S->generate_seconds += dt * n_decode / b->n_tokens;
    if (n_place > 0) hist_add(&S->prompts_per_step, n_place);
    S->kv_reserved = kv_reserved(s, -1);
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
    dead_free(dead);
    return b->n_tokens;
}

/* ---- the engine thread ---- */

static bool has_work_locked(const lv_srv *s) {
    return s->running > 0 || s->q_head != NULL;
}

static void *engine_main(void *arg) {
    lv_srv *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        if (!has_work_locked(s)) {
            pthread_cond_broadcast(&s->idle);
            pthread_cond_wait(&s->work, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        const int32_t n = lv_srv_step(s);
        pthread_mutex_lock(&s->mu);
        if (n == 0 && !s->stop) { /* waiting for room (or a queue timeout): do not spin */
            struct timespec dl;
            abs_deadline(&dl, 0.02);
            pthread_cond_timedwait(&s->work, &s->mu, &dl);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

lv_status lv_srv_create(lv_context *ctx, const lv_model *model, const lv_srv_params *params, lv_srv **out) {
    *out = NULL;
    lv_srv_params p = params ? *params : lv_srv_default_params();
    if (!ctx || !model) return lv_error(LV_ERR_INVALID_ARG, "lv_srv_create: no context or model");
    if (p.n_slots < 1 || p.n_slots > 4096) return lv_error(LV_ERR_INVALID_ARG, "slots: %d is not in [1, 4096]", p.n_slots);
    if ((uint32_t)p.n_batch > lv_context_n_batch(ctx) || p.n_batch <= p.n_slots)
        return lv_error(LV_ERR_INVALID_ARG, "the step budget (%d tokens) must exceed the slot count (%d) and fit the context's batch (%u)",
                        p.n_batch, p.n_slots, lv_context_n_batch(ctx));
    const int64_t n_ctx = lv_context_n_ctx(ctx);
    if (p.max_waiting <= 0) p.max_waiting = 4 * p.n_slots;
    if (p.max_waiting_tokens <= 0) p.max_waiting_tokens = 4 * n_ctx;
    if (p.age_cap < 0) p.age_cap = 0;
    lv_srv *s = lv_calloc(1, sizeof(*s));
    if (!s) return LV_ERR_NOMEM;
    s->ctx = ctx;
    s->model = model;
    s->p = p;
    s->n_ctx = (int32_t)n_ctx;
    s->n_vocab = lv_model_n_vocab(model);
    s->n_embd = lv_model_n_embd(model);
    s->mrope = lv_model_n_pos_per_token(model) == 4;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->idle, NULL);
    s->slots = lv_calloc((size_t)p.n_slots, sizeof(srv_slot));
    s->items = lv_calloc((size_t)p.n_slots, sizeof(lv_pack_item));
    s->places = lv_calloc((size_t)p.n_slots, sizeof(lv_pack_place));
    s->batch = lv_batch_init_embd(p.n_batch, s->n_embd); /* embedding rows: images */
    if (!s->mrope) { /* one position per token */
        lv_free(s->batch.pos_mrope);
        s->batch.pos_mrope = NULL;
    } else {
        s->mstage = lv_mallocn((size_t)p.n_batch * 4, sizeof(lv_pos));
    }
    if (!s->slots || !s->items || !s->places || !s->batch.token || !s->batch.embd || (s->mrope && (!s->batch.pos_mrope || !s->mstage))) {
        lv_srv_free(s);
        return lv_error(LV_ERR_NOMEM, "lv_srv_create: out of memory");
    }
    for (int i = 0; i < p.n_slots; i++) {
        s->slots[i].batch_i = -1;
        lv_kv_seq_rm(ctx, i, 0, -1); /* start from empty sequences */
    }
    static const double b_ttft[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80};
    static const double b_itl[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5};
    static const double b_e2e[] = {0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320};
    static const double b_queue[] = {0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60};
    static const double b_pps[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64};
    hist_init(&s->st.ttft, b_ttft, (int)LV_ARRAY_LEN(b_ttft));
    hist_init(&s->st.itl, b_itl, (int)LV_ARRAY_LEN(b_itl));
    hist_init(&s->st.e2e, b_e2e, (int)LV_ARRAY_LEN(b_e2e));
    hist_init(&s->st.queue, b_queue, (int)LV_ARRAY_LEN(b_queue));
    hist_init(&s->st.prompts_per_step, b_pps, (int)LV_ARRAY_LEN(b_pps));
    *out = s;
    return LV_OK;
}

lv_status lv_srv_start(lv_srv *s) {
    if (s->started) return lv_error(LV_ERR_INVALID_ARG, "the engine is already running");
    if (pthread_create(&s->thread, NULL, engine_main, s) != 0) return lv_error(LV_ERR_INTERNAL, "cannot start the engine thread");
    s->started = true;
    return LV_OK;
}

int lv_srv_drain(lv_srv *s, double timeout_s) {
    pthread_mutex_lock(&s->mu);
    s->draining = true;
    const double t_end = lv_time_s() + timeout_s;
    while ((s->running > 0 || s->q_head) && lv_time_s() < t_end) {
        struct timespec dl;
        abs_deadline(&dl, 0.05);
        pthread_cond_timedwait(&s->idle, &s->mu, &dl);
    }
    int n = 0;
    for (lv_srv_req *r = s->q_head; r; r = r->next) r->cancel = true, n++;
    for (int i = 0; i < s->p.n_slots; i++)
        if (s->slots[i].req) s->slots[i].req->cancel = true, n++;
    pthread_cond_signal(&s->work);
    /* the engine reaps them at its next step */
    while ((s->running > 0 || s->q_head) && s->started) {
        struct timespec dl;
        abs_deadline(&dl, 0.05);
        pthread_cond_timedwait(&s->idle, &s->mu, &dl);
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

void lv_srv_free(lv_srv *s) {
    if (!s) return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_broadcast(&s->work);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        s->started = false;
    }
    lv_srv_req *dead[2];
    pthread_mutex_lock(&s->mu);
    while (s->q_head) {
        lv_srv_req *r = s->q_head;
        s->q_head = r->next;
        s->n_waiting--;
        dead[0] = req_finish_locked(s, r, LV_SRV_FINISH_CANCELLED, NULL);
        if (dead[0]) req_free(dead[0]);
    }
    s->q_tail = NULL;
    for (int i = 0; s->slots && i < s->p.n_slots; i++)
        if (s->slots[i].req) {
            dead[1] = slot_release_locked(s, i, LV_SRV_FINISH_CANCELLED, NULL);
            if (dead[1]) req_free(dead[1]);
        }
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; s->slots && i < s->p.n_slots; i++) {
        lv_free(s->slots[i].cache);
        lv_free(s->slots[i].full);
    }
    lv_free(s->slots);
    lv_free(s->items);
    lv_free(s->mstage);
    lv_free(s->places);
    lv_batch_free(&s->batch);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->mu);
    lv_free(s);
}

void lv_srv_get_stats(lv_srv *s, lv_srv_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->running = s->running;
    out->waiting = s->n_waiting;
    out->waiting_tokens = s->waiting_tokens;
    out->n_slots = s->p.n_slots;
    out->n_ctx = s->n_ctx;
    pthread_mutex_unlock(&s->mu);
}
