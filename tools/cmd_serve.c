/*
 * cmd_serve.c: `longview serve`: an OpenAI-compatible HTTP server (docs/server.md) over the
 * serving engine of src/server/ (the scheduler, the queue, the slots). This file is the HTTP and
 * JSON side only: libmicrohttpd with a thread per connection (a connection's thread may block
 * while its request is served), jansson for JSON. Requests are parsed and tokenized on their
 * connection's thread and handed to the engine as token arrays; answers are formatted here.
 *
 * Routes: GET /health, /v1/models, /metrics; POST /v1/chat/completions, /v1/completions,
 * /completion (llama.cpp's native), /tokenize, /detokenize. Errors in the OpenAI / llama.cpp
 * shape {"error": {"code", "message", "type"}}.
 */
#define _GNU_SOURCE
#include "common/cli.h"
#include "commands.h"
#include "server/server.h"
#include "serve/request.h"

#include <jansson.h>
#include <microhttpd.h>

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ST_LOADING = 0, ST_READY = 1, ST_DRAINING = 2 };

typedef struct server {
    atomic_int state;
    lv_model *model;
    lv_context *ctx;
    lv_srv *srv;
    const char *alias;
    const char *chat_template; /* NULL: the model's */
    char **keys;               /* API keys (NULL: none) */
    int n_keys;
    bool metrics;
    int64_t max_body;
    int max_depth, max_messages;
    double sse_ping_s;
    int retry_after_s;
    atomic_long next_id;
    atomic_int n_conns;
    atomic_llong rejected_bad, rejected_auth;
    int64_t n_ctx;
    int n_slots;
    double max_generate_s;
    srv_parse_ctx pc; /* what request.c needs */
    lv_mmproj *mm;             /* --mmproj: images in requests (NULL: refused) */
    lv_threadpool *enc_tp;     /* the encoder's threads (beside the engine's) */
    pthread_mutex_t enc_mu;    /* one image encoded at a time */
} server;

typedef struct conn {
    char *body;
    size_t n_body, cap_body;
    bool too_big;
    bool counted;
} conn;

/* ---- small helpers ---- */

/* valid UTF-8 copy: invalid bytes become U+FFFD (JSON strings must be UTF-8) */
static char *utf8_clean(const char *s, size_t n, size_t *out_n) {
    char *o = malloc(n * 3 + 1);
    if (!o) return NULL;
    size_t i = 0, k = 0;
    const unsigned char *u = (const unsigned char *)s;
    while (i < n) {
        unsigned char c = u[i];
        int need = c < 0x80 ? 1 : c >= 0xC2 && c < 0xE0 ? 2 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xF0 && c < 0xF5 ? 4 : 0;
        bool ok = need > 0 && i + (size_t)need <= n;
        for (int j = 1; ok && j < need; j++) {
            unsigned char lo = 0x80, hi = 0xBF;
            if (j == 1 && c == 0xE0) lo = 0xA0;
            if (j == 1 && c == 0xED) hi = 0x9F;
            if (j == 1 && c == 0xF0) lo = 0x90;
            if (j == 1 && c == 0xF4) hi = 0x8F;
            ok = u[i + j] >= lo && u[i + j] <= hi;
        }
        if (ok) {
            memcpy(o + k, s + i, (size_t)need);
            k += (size_t)need;
            i += (size_t)need;
        } else {
            memcpy(o + k, "\xef\xbf\xbd", 3);
            k += 3;
            i++;
        }
    }
    o[k] = 0;
    *out_n = k;
    return o;
}

static json_t *jstr(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    if (j) return j;
    size_t m;
    char *c = utf8_clean(s, n, &m);
    j = c ? json_stringn(c, m) : NULL;
    free(c);
    return j ? j : json_string("");
}

/* the peer closed its side (or the socket failed): the client is gone */
static bool client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* ---- responses ---- */

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *type, char *text, size_t n, int retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *j, int retry_after) {
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) return MHD_NO;
    return send_text(c, status, "application/json; charset=utf-8", s, strlen(s), retry_after);
}

static json_t *error_obj(unsigned status, const char *type, const char *msg) {
    return json_pack("{s:{s:i,s:s,s:s}}", "error", "code", (int)status, "message", msg, "type", type);
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *type, const char *msg) {
    return send_json(c, status, error_obj(status, type, msg), 0);
}

static enum MHD_Result send_unavailable(server *S, struct MHD_Connection *c, const char *msg) {
    return send_json(c, 503, error_obj(503, "unavailable_error", msg), S->retry_after_s);
}

/* ---- generation ---- */

static const char *finish_name(lv_srv_finish f) {
    return f == LV_SRV_FINISH_LENGTH ? "length" : "stop";
}

/* usage of a request's choices: the prompt counted once (OpenAI), the completions summed */
static json_t *usage_obj(int32_t n_prompt, int32_t n_cached, int64_t n_generated) {
    return json_pack("{s:i,s:I,s:I,s:{s:i}}", "prompt_tokens", n_prompt, "completion_tokens", (json_int_t)n_generated, "total_tokens",
                     (json_int_t)(n_prompt + n_generated), "prompt_tokens_details", "cached_tokens", n_cached);
}

static json_t *timings_obj(const lv_srv_output *o) {
    const int32_t pn = o->n_prompt - o->n_cached;
    const double pms = o->t_prompt * 1e3, gms = o->t_generate * 1e3;
    return json_pack("{s:i,s:i,s:f,s:f,s:i,s:f,s:f}", "cache_n", o->n_cached, "prompt_n", pn, "prompt_ms", pms, "prompt_per_second",
                     pms > 0 ? pn / o->t_prompt : 0.0, "predicted_n", o->n_generated, "predicted_ms", gms, "predicted_per_second",
                     gms > 0 && o->n_generated > 1 ? (o->n_generated - 1) / o->t_generate : 0.0);
}

/* the error an unfinished or failed request gets: NULL if it finished normally */
static json_t *finish_error(server *S, const lv_srv_output *o, unsigned *status) {
    switch (o->finish) {
    case LV_SRV_FINISH_TIMEOUT: *status = 503; return error_obj(503, "unavailable_error", o->error);
    case LV_SRV_FINISH_CANCELLED:
        *status = 503;
        return error_obj(503, "unavailable_error", atomic_load(&S->state) == ST_DRAINING ? "the server is shutting down" : "the request was cancelled");
    case LV_SRV_FINISH_ERROR: *status = 500; return error_obj(500, "server_error", o->error);
    default: return NULL;
    }
}

/* ---- logprobs (SERVING.md 1.4): of the raw softmax, as llama-server and OpenAI report them ---- */

/* a log-probability as JSON: -inf (a token the model rules out) as OpenAI's -9999 */
static json_t *jlogprob(float lp) { return json_real(lp > -9999.0f ? (double)lp : -9999.0); }

/* a token's text: in small (cap bytes) or, when longer, malloc'd (free it when != small); *n its length */
static char *token_piece(server *S, lv_token id, char *small, int32_t cap, int32_t *n) {
    int32_t len = lv_token_to_piece(S->model, id, small, cap, true);
    char *p = small;
    if (len < 0 && len != INT32_MIN && (p = malloc((size_t)-len))) len = lv_token_to_piece(S->model, id, p, -len, true);
    if (!p) p = small;
    *n = len < 0 ? 0 : len;
    return p;
}

/* {"token", "logprob", "bytes"} (+ "id" for llama.cpp's native route) */
static json_t *lp_item(server *S, lv_token id, float lp, bool with_id) {
    char small[256];
    int32_t n;
    char *buf = token_piece(S, id, small, (int32_t)sizeof(small), &n);
    json_t *bytes = json_array();
    for (int32_t k = 0; k < n; k++) json_array_append_new(bytes, json_integer((unsigned char)buf[k]));
    json_t *j = json_pack("{s:o,s:o,s:o}", "token", jstr(buf, (size_t)n), "logprob", jlogprob(lp), "bytes", bytes);
    if (buf != small) free(buf);
    if (with_id) json_object_set_new(j, "id", json_integer(id));
    return j;
}

/* OpenAI chat's (and llama.cpp's completion_probabilities) entries for the new tokens of o, appended to arr */
static void lp_chat_append(server *S, json_t *arr, const lv_srv_output *o, bool with_id) {
    for (int32_t i = 0; o->logprobs && i < o->n_tokens; i++) {
        json_t *e = lp_item(S, o->tokens[i], o->logprobs[i], with_id), *top = json_array();
        for (int32_t k = 0; k < o->n_top; k++)
            json_array_append_new(top, lp_item(S, o->top_ids[(size_t)i * o->n_top + k], o->top_logprobs[(size_t)i * o->n_top + k], with_id));
        json_object_set_new(e, "top_logprobs", top);
        json_array_append_new(arr, e);
    }
}

/* the legacy completions shape {tokens, token_logprobs, top_logprobs, text_offset}; *off: characters
 * of the completion before the first new token (text_offset counts from the completion's start) */
static json_t *lp_legacy_new(void) {
    return json_pack("{s:[],s:[],s:[],s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

static void lp_legacy_append(server *S, json_t *lo, const lv_srv_output *o, int64_t *off) {
    for (int32_t i = 0; o->logprobs && i < o->n_tokens; i++) {
        char small[256];
        int32_t n;
        char *buf = token_piece(S, o->tokens[i], small, (int32_t)sizeof(small), &n);
        json_array_append_new(json_object_get(lo, "tokens"), jstr(buf, (size_t)n));
        json_array_append_new(json_object_get(lo, "token_logprobs"), jlogprob(o->logprobs[i]));
        json_t *top = json_object();
        for (int32_t k = 0; k < o->n_top; k++) {
            char tsmall[256];
            int32_t tn;
            char *tb = token_piece(S, o->top_ids[(size_t)i * o->n_top + k], tsmall, (int32_t)sizeof(tsmall), &tn);
            json_t *key = jstr(tb, (size_t)tn);
            if (tb != tsmall) free(tb);
            if (!json_object_get(top, json_string_value(key))) /* two tokens of one text: the likelier */
                json_object_set_new(top, json_string_value(key), jlogprob(o->top_logprobs[(size_t)i * o->n_top + k]));
            json_decref(key);
        }
        json_array_append_new(json_object_get(lo, "top_logprobs"), top);
        json_array_append_new(json_object_get(lo, "text_offset"), json_integer(*off));
        for (int32_t k = 0; k < n; k++) *off += ((unsigned char)buf[k] & 0xC0) != 0x80; /* characters, not bytes */
        if (buf != small) free(buf);
    }
}

/* ---- one request's choices (n of them: one engine request each) ---- */

typedef struct choice {
    lv_srv_req *req;
    int64_t off_text;
    int32_t off_tok;
    int64_t lp_off;      /* legacy text_offset so far */
    bool finished, sent_role;
    int32_t n_prompt, n_cached, n_generated;
} choice;

typedef struct stream {
    server *S;
    struct MHD_Connection *conn;
    int kind;
    bool include_usage, logprobs, finished;
    char id[48];
    long long created;
    char *pend;
    size_t n_pend, cap_pend, pos_pend;
    double t_last;
    int n;
    choice ch[]; /* (n) */
} stream;

static bool pend_add(stream *st, const char *s, size_t n) {
    if (st->n_pend + n + 1 > st->cap_pend) {
        size_t c = st->cap_pend ? st->cap_pend : 4096;
        while (c < st->n_pend + n + 1) c *= 2;
        char *p = realloc(st->pend, c);
        if (!p) return false;
        st->pend = p;
        st->cap_pend = c;
    }
    memcpy(st->pend + st->n_pend, s, n);
    st->n_pend += n;
    return true;
}

static bool pend_event(stream *st, json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) return false;
    bool ok = pend_add(st, "data: ", 6) && pend_add(st, s, strlen(s)) && pend_add(st, "\n\n", 2);
    free(s);
    return ok;
}

static json_t *chunk_obj(stream *st, const char *model) {
    return json_pack("{s:s,s:s,s:I,s:s,s:s}", "id", st->id, "object", st->kind == SRV_CHAT ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)st->created, "model", model, "system_fingerprint", "longview-" LV_VERSION_STRING);
}

/* a streamed choice: new text (text may be NULL), the logprobs of the new tokens (o: NULL for none), a finish */
static json_t *choice_delta(stream *st, choice *ch, int index, const char *text, size_t n, const lv_srv_output *o, const char *finish) {
    json_t *c, *lp = json_null();
    if (o && st->logprobs) {
        if (st->kind == SRV_CHAT) {
            json_t *arr = json_array();
            lp_chat_append(st->S, arr, o, false);
            lp = json_pack("{s:o}", "content", arr);
        } else {
            lp = lp_legacy_new();
            lp_legacy_append(st->S, lp, o, &ch->lp_off);
        }
    }
    if (st->kind == SRV_CHAT) {
        json_t *delta = json_object();
        if (text) json_object_set_new(delta, "content", jstr(text, n));
        c = json_pack("{s:i,s:o,s:o,s:o}", "index", index, "delta", delta, "logprobs", lp, "finish_reason", finish ? json_string(finish) : json_null());
    } else {
        c = json_pack("{s:i,s:o,s:o,s:o}", "index", index, "text", jstr(text ? text : "", text ? n : 0), "logprobs", lp, "finish_reason",
                      finish ? json_string(finish) : json_null());
    }
    return c;
}

/* Turn what choice i produced since the last call into SSE events. */
static bool stream_events(stream *st, int i, const lv_srv_output *o) {
    server *S = st->S;
    choice *ch = &st->ch[i];
    const char *model = S->alias;
    if (st->kind == SRV_NATIVE) {
        if (o->n_text > 0 || (o->n_tokens > 0 && o->finish == LV_SRV_FINISH_NONE)) {
            json_t *j = json_pack("{s:o,s:b,s:i}", "content", jstr(o->text ? o->text : "", (size_t)o->n_text), "stop", 0, "id_slot", o->slot);
            if (o->n_tokens) {
                json_t *t = json_array();
                for (int32_t k = 0; k < o->n_tokens; k++) json_array_append_new(t, json_integer(o->tokens[k]));
                json_object_set_new(j, "tokens", t);
            }
            if (st->logprobs && o->n_tokens) {
                json_t *arr = json_array();
                lp_chat_append(S, arr, o, true);
                json_object_set_new(j, "completion_probabilities", arr);
            }
            if (!pend_event(st, j)) return false;
        }
        if (o->finish != LV_SRV_FINISH_NONE) {
            unsigned status;
            json_t *err = finish_error(S, o, &status);
            if (err) return pend_event(st, err);
            json_t *j = json_pack("{s:s,s:b,s:i,s:s,s:i,s:i,s:i,s:s,s:s,s:o}", "content", "", "stop", 1, "id_slot", o->slot, "model", model,
                                  "tokens_predicted", o->n_generated, "tokens_evaluated", o->n_prompt, "tokens_cached", o->n_cached, "stop_type",
                                  o->finish == LV_SRV_FINISH_LENGTH ? "limit" : o->finish == LV_SRV_FINISH_STOP ? "word" : "eos", "stopping_word",
                                  o->stop_word ? o->stop_word : "", "timings", timings_obj(o));
            return pend_event(st, j);
        }
        return true;
    }
    if (st->kind == SRV_CHAT && !ch->sent_role) {
        json_t *j = chunk_obj(st, model);
        json_object_set_new(j, "choices",
                            json_pack("[{s:i,s:{s:s,s:n},s:n,s:n}]", "index", i, "delta", "role", "assistant", "content", "logprobs", "finish_reason"));
        if (!pend_event(st, j)) return false;
        ch->sent_role = true;
    }
    /* text, or (with logprobs) tokens whose text is held back: their logprobs go out with them */
    if (o->n_text > 0 || (st->logprobs && o->n_tokens > 0)) {
        json_t *j = chunk_obj(st, model);
        json_object_set_new(j, "choices", json_pack("[o]", choice_delta(st, ch, i, o->text ? o->text : "", (size_t)o->n_text, o, NULL)));
        if (!pend_event(st, j)) return false;
    }
    if (o->finish != LV_SRV_FINISH_NONE) {
        unsigned status;
        json_t *err = finish_error(S, o, &status);
        if (err) { /* the stream ends without [DONE], as llama.cpp's */
            st->finished = true;
            return pend_event(st, err);
        }
        ch->finished = true;
        ch->n_prompt = o->n_prompt;
        ch->n_cached = o->n_cached;
        ch->n_generated = o->n_generated;
        json_t *j = chunk_obj(st, model);
        json_object_set_new(j, "choices", json_pack("[o]", choice_delta(st, ch, i, NULL, 0, NULL, finish_name(o->finish))));
        json_object_set_new(j, "timings", timings_obj(o));
        if (!pend_event(st, j)) return false;
        for (int k = 0; k < st->n; k++)
            if (!st->ch[k].finished) return true;
        st->finished = true;
        if (st->include_usage) {
            int64_t gen = 0;
            for (int k = 0; k < st->n; k++) gen += st->ch[k].n_generated;
            j = chunk_obj(st, model);
            json_object_set_new(j, "choices", json_array());
            json_object_set_new(j, "usage", usage_obj(st->ch[0].n_prompt, st->ch[0].n_cached, gen));
            if (!pend_event(st, j)) return false;
        }
        return pend_add(st, "data: [DONE]\n\n", 14);
    }
    return true;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *st = cls;
    (void)pos;
    while (st->pos_pend == st->n_pend) {
        st->pos_pend = st->n_pend = 0;
        if (st->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        /* the first unfinished choice is waited on (briefly when there are others), the rest polled */
        bool waited = false;
        for (int i = 0; i < st->n && !st->finished; i++) {
            choice *ch = &st->ch[i];
            if (ch->finished) continue;
            lv_srv_output o;
            const double wait = waited ? 0 : st->n == 1 ? 0.1 : 0.02;
            waited = true;
            if (lv_srv_req_poll(ch->req, ch->off_text, ch->off_tok, wait, &o) != LV_OK) return MHD_CONTENT_READER_END_WITH_ERROR;
            ch->off_text += o.n_text;
            ch->off_tok += o.n_tokens;
            const bool ok = stream_events(st, i, &o);
            if (st->kind == SRV_NATIVE && o.finish != LV_SRV_FINISH_NONE) st->finished = true;
            lv_srv_output_clear(&o);
            if (!ok) return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (st->n_pend > 0) {
            st->t_last = cli_now_s();
        } else if (client_gone(st->conn)) {
            for (int i = 0; i < st->n; i++) lv_srv_req_cancel(st->ch[i].req); /* the slots are free at the next step */
            return MHD_CONTENT_READER_END_WITH_ERROR;
        } else if (st->S->sse_ping_s > 0 && cli_now_s() - st->t_last >= st->S->sse_ping_s) {
            if (!pend_add(st, ": ping\n\n", 8)) return MHD_CONTENT_READER_END_WITH_ERROR;
            st->t_last = cli_now_s();
        }
    }
    size_t n = st->n_pend - st->pos_pend;
    if (n > max) n = max;
    memcpy(buf, st->pend + st->pos_pend, n);
    st->pos_pend += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream *st = cls;
    for (int i = 0; i < st->n; i++) lv_srv_req_release(st->ch[i].req); /* cancels those the client left before the end */
    free(st->pend);
    free(st);
}

static void release_all(lv_srv_req **r, int n) {
    for (int i = 0; i < n; i++) lv_srv_req_release(r[i]);
}

/* A request's images: each encoded by the tower (one request at a time, on the encoder's threads),
 * then the text with its markers and the images laid out as lv_mm_tokenize does (the projector's
 * marker text around each image's chunks), flattened into g->prompt with LV_TOKEN_EMBD entries and
 * *rows (malloc'd) holding their embeddings; M-RoPE models: *mpos (malloc'd, (4, n_prompt)) the
 * rows' rotary positions as lv_mm_decode gives them from position 0 (lv_mm_prompt_mrope).
 * false: e says why. */
static bool encode_images(server *S, srv_gen_req *g, float **rows, int32_t *n_rows, lv_pos **mpos, srv_req_err *e) {
    *rows = NULL;
    *n_rows = 0;
    *mpos = NULL;
    if (!S->mm) return srv_bad(e, 400, "invalid_request_error", "this server takes no images: start it with --mmproj (the vision tower)");
    lv_image_embd im[SRV_MAX_IMAGES];
    memset(im, 0, sizeof(im));
    bool ok = true;
    pthread_mutex_lock(&S->enc_mu);
    for (int i = 0; i < g->n_images && ok; i++)
        if (lv_mmproj_encode_memory(S->mm, S->enc_tp, g->image[i], (int64_t)g->image_size[i], &im[i]) != LV_OK)
            ok = srv_bad(e, 400, "invalid_request_error", "image %d: %s", i, lv_last_error());
    pthread_mutex_unlock(&S->enc_mu);
    lv_mm_prompt mp = {0};
    if (ok && lv_mm_tokenize(S->model, g->mm_text, (int64_t)strlen(g->mm_text), im, g->n_images, true, &mp) != LV_OK)
        ok = srv_bad(e, 400, "invalid_request_error", "the prompt with its images: %s", lv_last_error());
    if (ok) {
        const int64_t E = lv_model_n_embd(S->model);
        int32_t n_emb = 0;
        for (int32_t c = 0; c < mp.n_chunks; c++) n_emb += mp.chunks[c].tokens ? 0 : mp.chunks[c].n_tokens;
        const bool mrope = lv_model_n_pos_per_token(S->model) == 4;
        const int64_t N = mp.n_rows;
        g->prompt = malloc(((size_t)N + 1) * sizeof(lv_token));
        *rows = malloc(((size_t)n_emb + 1) * (size_t)E * sizeof(float));
        if (mrope) *mpos = malloc((size_t)N * 4 * sizeof(lv_pos));
        if (!g->prompt || !*rows || (mrope && !*mpos)) ok = srv_bad(e, 500, "server_error", "out of memory");
        for (int32_t c = 0, t = 0, r = 0; ok && c < mp.n_chunks; c++) {
            const lv_mm_chunk *ch = &mp.chunks[c];
            for (int32_t j = 0; j < ch->n_tokens; j++) g->prompt[t++] = ch->tokens ? ch->tokens[j] : LV_TOKEN_EMBD;
            if (!ch->tokens) memcpy(*rows + (int64_t)r * E, ch->embd, (size_t)ch->n_tokens * (size_t)E * sizeof(float));
            r += ch->tokens ? 0 : ch->n_tokens;
        }
        if (ok && mrope) lv_mm_prompt_mrope(&mp, 0, *mpos);
        g->n_prompt = mp.n_rows;
        *n_rows = n_emb;
    }
    lv_mm_prompt_free(&mp);
    for (int i = 0; i < g->n_images; i++) lv_image_embd_free(&im[i]);
    if (!ok) {
        free(*rows);
        free(*mpos);
        *rows = NULL;
        *mpos = NULL;
    }
    return ok;
}

static enum MHD_Result generate(server *S, struct MHD_Connection *c, json_t *body, int kind) {
    srv_gen_req g;
    srv_req_err e = {0};
    float *rows = NULL;
    lv_pos *mpos = NULL;
    int32_t n_rows = 0;
    if (!srv_parse_generation(&S->pc, body, kind, &g, &e) || (g.n_images > 0 && !encode_images(S, &g, &rows, &n_rows, &mpos, &e))) {
        srv_gen_req_clear(&g);
        atomic_fetch_add(&S->rejected_bad, 1);
        return send_error(c, e.status, e.type, e.msg);
    }
    lv_srv_req_params rp = {.prompt = g.prompt, .n_prompt = g.n_prompt, .embd = rows, .n_embd_rows = n_rows, .pos_mrope = mpos, .n_predict = (int32_t)g.n_predict, .sampling = g.sp,
                            .ignore_eos = g.ignore_eos, .stop = g.stop, .n_stop = g.n_stop, .max_generate_s = g.max_generate_s,
                            .logprobs = g.logprobs, .n_top_logprobs = g.n_top};
    /* the server's cap, when the request asks for none or for more */
    if (S->max_generate_s > 0 && (rp.max_generate_s <= 0 || rp.max_generate_s > S->max_generate_s)) rp.max_generate_s = S->max_generate_s;
    /* n choices: n engine requests of the same prompt, choice i drawing with seed + i; choices 1..n-1
     * share choice 0's prefill (a copy of its cache when its prompt is done: lv_kv_seq_cp), or
     * compute the prompt themselves if they get a slot only after that */
    const int n = g.n > 0 ? g.n : 1;
    lv_srv_req *reqs[256] = {0};
    if (n > (int)(sizeof(reqs) / sizeof(reqs[0]))) { /* (n <= -np <= 256: request.c) */
        srv_gen_req_clear(&g);
        return send_error(c, 400, "invalid_request_error", "'n' is too large");
    }
    lv_srv_refusal why = LV_SRV_ACCEPTED;
    for (int i = 0; i < n && why == LV_SRV_ACCEPTED; i++) {
        rp.sampling.seed = g.sp.seed + (uint64_t)i;
        rp.share_prefill_of = i > 0 ? reqs[0] : NULL;
        why = lv_srv_submit(S->srv, &rp, &reqs[i]);
    }
    const int32_t n_prompt = g.n_prompt;
    srv_gen_req_clear(&g);
    free(rows); /* the engine copied them */
    free(mpos);
    if (why != LV_SRV_ACCEPTED) release_all(reqs, n); /* the choices already queued go too */
    switch (why) {
    case LV_SRV_ACCEPTED: break;
    case LV_SRV_REFUSE_TOO_LONG: {
        json_t *j = error_obj(400, "exceed_context_size_error", lv_last_error());
        json_object_set_new(json_object_get(j, "error"), "n_prompt_tokens", json_integer(n_prompt));
        json_object_set_new(json_object_get(j, "error"), "n_ctx", json_integer(S->n_ctx));
        return send_json(c, 400, j, 0);
    }
    case LV_SRV_REFUSE_QUEUE_FULL:
    case LV_SRV_REFUSE_DRAINING: return send_unavailable(S, c, lv_last_error());
    default: atomic_fetch_add(&S->rejected_bad, 1); return send_error(c, 400, "invalid_request_error", lv_last_error());
    }
    const long id = atomic_fetch_add(&S->next_id, 1);
    if (g.stream) {
        /* the status line goes out only once every choice has a slot: a stream refused after waiting
         * in the queue (--queue-timeout, a drain) gets its 503 + Retry-After and a JSON error like a
         * non-streamed request, not a 200 and an error event. Meanwhile the connection is silent,
         * as a waiting non-streamed request's is: libmicrohttpd's idle timeout does not run while
         * this handler blocks, and queueing the response counts as activity. */
        for (int i = 0; i < n; i++)
            while (!lv_srv_req_wait_admitted(reqs[i], 0.1)) {
                if (client_gone(c)) {
                    release_all(reqs, n); /* queued requests are dropped */
                    return MHD_NO;
                }
            }
        for (int i = 0; i < n; i++) {
            lv_srv_output o;
            if (lv_srv_req_poll(reqs[i], INT64_MAX / 2, INT32_MAX / 2, 0, &o) == LV_OK && o.slot < 0) {
                unsigned status = 200;
                json_t *err = finish_error(S, &o, &status);
                lv_srv_output_clear(&o);
                release_all(reqs, n);
                if (!err) return send_error(c, 500, "server_error", "the request finished without a slot");
                return send_json(c, status, err, status == 503 ? S->retry_after_s : 0);
            }
            lv_srv_output_clear(&o);
        }
        stream *st = calloc(1, sizeof(*st) + (size_t)n * sizeof(choice));
        if (!st) {
            release_all(reqs, n);
            return MHD_NO;
        }
        st->S = S;
        st->n = n;
        for (int i = 0; i < n; i++) st->ch[i].req = reqs[i];
        st->conn = c;
        st->kind = kind;
        st->include_usage = g.include_usage;
        st->logprobs = g.logprobs;
        st->created = (long long)time(NULL);
        st->t_last = cli_now_s();
        snprintf(st->id, sizeof(st->id), "%s-%ld", kind == SRV_CHAT ? "chatcmpl" : "cmpl", id);
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, st, stream_free);
        if (!resp) {
            stream_free(st);
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    /* not streamed: wait for the end of every choice, watching for the client going away */
    lv_srv_output o;
    for (int i = 0; i < n; i++)
        for (;;) {
            lv_srv_req_poll(reqs[i], INT64_MAX / 2, INT32_MAX / 2, 0.1, &o);
            const bool done = o.finish != LV_SRV_FINISH_NONE;
            lv_srv_output_clear(&o);
            if (done) break;
            if (client_gone(c)) {
                release_all(reqs, n); /* cancels: the slots are free at the next step */
                return MHD_NO;
            }
        }
    lv_srv_output *outs = calloc((size_t)n, sizeof(*outs));
    if (!outs) {
        release_all(reqs, n);
        return send_error(c, 500, "server_error", "out of memory");
    }
    int n_out = 0;
    json_t *err = NULL;
    unsigned status = 200;
    for (; n_out < n; n_out++) {
        if (lv_srv_req_poll(reqs[n_out], 0, 0, 0, &outs[n_out]) != LV_OK) {
            err = error_obj(status = 500, "server_error", "out of memory");
            break;
        }
        if ((err = finish_error(S, &outs[n_out], &status))) {
            n_out++;
            break;
        }
    }
    release_all(reqs, n);
    if (err) {
        for (int i = 0; i < n_out; i++) lv_srv_output_clear(&outs[i]);
        free(outs);
        return send_json(c, status, err, status == 503 ? S->retry_after_s : 0);
    }
    json_t *j;
    char idbuf[48];
    if (kind == SRV_NATIVE) {
        const lv_srv_output *q = &outs[0];
        j = json_pack("{s:o,s:i,s:b,s:s,s:i,s:i,s:i,s:s,s:s,s:b,s:o}", "content", jstr(q->text ? q->text : "", (size_t)q->n_text), "id_slot", q->slot,
                      "stop", 1, "model", S->alias, "tokens_predicted", q->n_generated, "tokens_evaluated", q->n_prompt, "tokens_cached", q->n_cached, "stop_type",
                      q->finish == LV_SRV_FINISH_LENGTH ? "limit" : q->finish == LV_SRV_FINISH_STOP ? "word" : "eos", "stopping_word",
                      q->stop_word ? q->stop_word : "", "truncated", 0, "timings", timings_obj(q));
        if (g.return_tokens) {
            json_t *t = json_array();
            for (int32_t i = 0; i < q->n_tokens; i++) json_array_append_new(t, json_integer(q->tokens[i]));
            json_object_set_new(j, "tokens", t);
        }
        if (g.logprobs) {
            json_t *arr = json_array();
            lp_chat_append(S, arr, q, true);
            json_object_set_new(j, "completion_probabilities", arr);
        }
    } else {
        snprintf(idbuf, sizeof(idbuf), "%s-%ld", kind == SRV_CHAT ? "chatcmpl" : "cmpl", id);
        json_t *choices = json_array();
        int64_t gen = 0;
        for (int i = 0; i < n; i++) {
            const lv_srv_output *q = &outs[i];
            gen += q->n_generated;
            json_t *text = jstr(q->text ? q->text : "", (size_t)q->n_text), *lp = json_null();
            if (g.logprobs && kind == SRV_CHAT) {
                json_t *arr = json_array();
                lp_chat_append(S, arr, q, false);
                lp = json_pack("{s:o}", "content", arr);
            } else if (g.logprobs) {
                int64_t off = 0;
                lp = lp_legacy_new();
                lp_legacy_append(S, lp, q, &off);
            }
            json_array_append_new(choices, kind == SRV_CHAT ? json_pack("{s:i,s:{s:s,s:o},s:o,s:s}", "index", i, "message", "role", "assistant", "content",
                                                                        text, "logprobs", lp, "finish_reason", finish_name(q->finish))
                                                            : json_pack("{s:i,s:o,s:o,s:s}", "index", i, "text", text, "logprobs", lp, "finish_reason",
                                                                        finish_name(q->finish)));
        }
        j = json_pack("{s:s,s:s,s:I,s:s,s:s,s:o,s:o,s:o}", "id", idbuf, "object", kind == SRV_CHAT ? "chat.completion" : "text_completion",
                      "created", (json_int_t)time(NULL), "model", S->alias, "system_fingerprint", "longview-" LV_VERSION_STRING, "choices",
                      choices, "usage", usage_obj(outs[0].n_prompt, outs[0].n_cached, gen), "timings", timings_obj(&outs[0]));
    }
    for (int i = 0; i < n_out; i++) lv_srv_output_clear(&outs[i]);
    free(outs);
    return send_json(c, 200, j, 0);
}

/* ---- the other routes ---- */

static enum MHD_Result route_tokenize(server *S, struct MHD_Connection *c, json_t *body) {
    json_t *content = json_object_get(body, "content");
    if (!content) content = json_object_get(body, "prompt");
    if (!json_is_string(content)) return send_error(c, 400, "invalid_request_error", "'content' must be a string");
    bool add_special = false, parse_special = true, with_pieces = false;
    srv_req_err e = {0};
    if (!srv_get_bool(body, "add_special", &add_special, &e) || !srv_get_bool(body, "parse_special", &parse_special, &e) ||
        !srv_get_bool(body, "with_pieces", &with_pieces, &e))
        return send_error(c, e.status, e.type, e.msg);
    int32_t n = 0;
    lv_token *t = srv_tokenize(&S->pc, json_string_value(content), json_string_length(content), add_special, parse_special, &n, &e);
    if (!t) return send_error(c, e.status, e.type, e.msg);
    json_t *arr = json_array();
    for (int32_t i = 0; i < n; i++) {
        if (!with_pieces) {
            json_array_append_new(arr, json_integer(t[i]));
            continue;
        }
        char small[256], *piece = small;
        int32_t len = lv_token_to_piece(S->model, t[i], small, sizeof(small), true);
        if (len < 0 && len != INT32_MIN && (piece = malloc((size_t)-len)))
            len = lv_token_to_piece(S->model, t[i], piece, -len, true);
        if (len < 0) len = 0;
        json_t *ps = json_stringn(piece, (size_t)len);
        if (!ps) { /* not UTF-8 on its own (a byte token): its bytes, as llama.cpp */
            ps = json_array();
            for (int32_t k = 0; k < len; k++) json_array_append_new(ps, json_integer((unsigned char)piece[k]));
        }
        if (piece != small) free(piece);
        json_array_append_new(arr, json_pack("{s:i,s:o}", "id", t[i], "piece", ps));
    }
    free(t);
    return send_json(c, 200, json_pack("{s:o}", "tokens", arr), 0);
}

static enum MHD_Result route_detokenize(server *S, struct MHD_Connection *c, json_t *body) {
    json_t *toks = json_object_get(body, "tokens");
    if (!json_is_array(toks)) return send_error(c, 400, "invalid_request_error", "'tokens' must be an array of token ids");
    const size_t n = json_array_size(toks);
    lv_token *t = malloc((n + 1) * sizeof(lv_token));
    if (!t) return send_error(c, 500, "server_error", "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(toks, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= lv_model_n_vocab(S->model)) {
            free(t);
            char msg[128];
            snprintf(msg, sizeof(msg), "tokens[%zu] is not a token id in [0, %d)", i, lv_model_n_vocab(S->model));
            return send_error(c, 400, "invalid_request_error", msg);
        }
        t[i] = (lv_token)json_integer_value(v);
    }
    int64_t need = lv_detokenize(S->model, t, (int32_t)n, NULL, 0, false, true);
    need = need < 0 ? -need : need;
    char *buf = malloc((size_t)need + 1);
    if (!buf || lv_detokenize(S->model, t, (int32_t)n, buf, need + 1, false, true) < 0) {
        free(t);
        free(buf);
        return send_error(c, 500, "server_error", "detokenizing failed");
    }
    free(t);
    json_t *j = json_pack("{s:o}", "content", jstr(buf, (size_t)need));
    free(buf);
    return send_json(c, 200, j, 0);
}

static enum MHD_Result route_models(server *S, struct MHD_Connection *c) {
    lv_model_stats ms;
    lv_model_get_stats(S->model, &ms);
    json_t *m = json_pack("{s:s,s:s,s:I,s:s,s:{s:i,s:i,s:I,s:I}}", "id", S->alias, "object", "model", "created", (json_int_t)time(NULL),
                          "owned_by", "longview", "meta", "n_vocab", lv_model_n_vocab(S->model), "n_ctx_train", lv_model_n_ctx_train(S->model),
                          "n_params", (json_int_t)ms.n_params, "size", (json_int_t)ms.n_bytes);
    return send_json(c, 200, json_pack("{s:s,s:[o]}", "object", "list", "data", m), 0);
}

typedef struct text_buf {
    char *s;
    size_t n, cap;
} text_buf;

static void tb_printf(text_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(text_buf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        const int k = b->s ? vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap) : -1;
        va_end(ap);
        if (k >= 0 && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t c = b->cap ? b->cap * 2 : 8192;
        while (k >= 0 && c < b->n + (size_t)k + 1) c *= 2;
        char *p = realloc(b->s, c);
        if (!p) return;
        b->s = p;
        b->cap = c;
    }
}

static void metric(text_buf *b, const char *name, const char *type, const char *help, double v) {
    tb_printf(b, "# HELP longview:%s %s\n# TYPE longview:%s %s\nlongview:%s %.17g\n", name, help, name, type, name, v);
}

static void histogram(text_buf *b, const char *name, const char *help, const lv_srv_hist *h) {
    tb_printf(b, "# HELP longview:%s %s\n# TYPE longview:%s histogram\n", name, help, name);
    int64_t cum = 0;
    for (int i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        tb_printf(b, "longview:%s_bucket{le=\"%g\"} %lld\n", name, h->bounds[i], (long long)cum);
    }
    cum += h->counts[h->n_bounds];
    tb_printf(b, "longview:%s_bucket{le=\"+Inf\"} %lld\nlongview:%s_sum %.17g\nlongview:%s_count %lld\n", name, (long long)cum, name, h->sum, name,
              (long long)h->count);
}

static enum MHD_Result route_metrics(server *S, struct MHD_Connection *c) {
    if (!S->metrics)
        return send_error(c, 501, "not_supported_error", "this server does not expose metrics: start it with --metrics");
    lv_srv_stats st;
    lv_srv_get_stats(S->srv, &st);
    text_buf b = {0};
    metric(&b, "prompt_tokens_total", "counter", "Prompt tokens computed (cached ones excluded).", (double)st.prompt_tokens);
    metric(&b, "prompt_seconds_total", "counter", "Prompt computation time (its share of each step).", st.prompt_seconds);
    metric(&b, "tokens_predicted_total", "counter", "Generated tokens.", (double)st.generated_tokens);
    metric(&b, "generation_tokens_total", "counter", "Generated tokens (vLLM's name).", (double)st.generated_tokens);
    metric(&b, "tokens_predicted_seconds_total", "counter", "Decode time (its share of each step).", st.generate_seconds);
    metric(&b, "prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s.",
           st.prompt_seconds > 0 ? (double)st.prompt_tokens / st.prompt_seconds : 0);
    metric(&b, "predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s.",
           st.generate_seconds > 0 ? (double)st.generated_tokens / st.generate_seconds : 0);
    metric(&b, "requests_processing", "gauge", "Requests in a slot.", st.running);
    metric(&b, "requests_deferred", "gauge", "Requests waiting for a slot.", st.waiting);
    metric(&b, "num_requests_running", "gauge", "Requests in a slot.", st.running);
    metric(&b, "num_requests_waiting", "gauge", "Requests waiting for a slot.", st.waiting);
    metric(&b, "kv_cache_usage_perc", "gauge", "KV cache tokens reserved or held by slot caches, as a fraction of the context.",
           st.n_ctx > 0 ? (double)st.kv_reserved / (double)st.n_ctx : 0);
    metric(&b, "n_tokens_max", "counter", "Largest step, in tokens.", (double)st.n_tokens_max);
    metric(&b, "n_decode_total", "counter", "Steps (lv_decode calls).", (double)st.n_decode);
    metric(&b, "n_busy_slots_per_decode", "gauge", "Average slots per step.", st.n_decode ? (double)st.busy_slots_sum / (double)st.n_decode : 0);
    metric(&b, "num_preemptions_total", "counter", "Preemptions (KV is reserved at admission: always 0).", 0);
    metric(&b, "prefix_cache_hits_total", "counter", "Prompt tokens reused from a slot's cache.", (double)st.prefix_hit_tokens);
    metric(&b, "prefix_cache_queries_total", "counter", "Prompt tokens of admitted requests.", (double)st.prefix_query_tokens);
    metric(&b, "requests_finished_total", "counter", "Requests that ran to the end.", (double)st.requests_finished);
    metric(&b, "requests_cancelled_total", "counter", "Requests cancelled (client gone, drain).", (double)st.requests_cancelled);
    tb_printf(&b, "# HELP longview:requests_rejected_total Requests refused, by reason.\n# TYPE longview:requests_rejected_total counter\n");
    tb_printf(&b, "longview:requests_rejected_total{reason=\"queue_full\"} %lld\n", (long long)st.rejected_queue_full);
    tb_printf(&b, "longview:requests_rejected_total{reason=\"too_long\"} %lld\n", (long long)st.rejected_too_long);
    tb_printf(&b, "longview:requests_rejected_total{reason=\"draining\"} %lld\n", (long long)st.rejected_draining);
    tb_printf(&b, "longview:requests_rejected_total{reason=\"queue_timeout\"} %lld\n", (long long)st.rejected_timeout);
    tb_printf(&b, "longview:requests_rejected_total{reason=\"bad_request\"} %lld\n", (long long)atomic_load(&S->rejected_bad));
    tb_printf(&b, "longview:requests_rejected_total{reason=\"auth\"} %lld\n", (long long)atomic_load(&S->rejected_auth));
    histogram(&b, "time_to_first_token_seconds", "From arrival to the first token.", &st.ttft);
    histogram(&b, "inter_token_latency_seconds", "Between consecutive tokens of a request.", &st.itl);
    histogram(&b, "e2e_request_latency_seconds", "From arrival to the end, requests that finished.", &st.e2e);
    histogram(&b, "request_queue_time_seconds", "From arrival to admission into a slot.", &st.queue);
    histogram(&b, "prepack_prompts_per_step", "Prompts (whole or a chunk) packed into a step that had any.", &st.prompts_per_step);
    if (!b.s) return MHD_NO;
    return send_text(c, 200, "text/plain; version=0.0.4", b.s, b.n, 0);
}

/* ---- dispatch ---- */

static bool authorized(server *S, struct MHD_Connection *c) {
    if (!S->n_keys) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *key = NULL;
    if (h && strncasecmp(h, "Bearer ", 7) == 0) key = h + 7;
    if (!key) key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Api-Key");
    if (!key) return false;
    for (int i = 0; i < S->n_keys; i++)
        if (strcmp(key, S->keys[i]) == 0) return true;
    return false;
}

static bool is(const char *url, const char *a, const char *b) { return strcmp(url, a) == 0 || (b && strcmp(url, b) == 0); }

static enum MHD_Result dispatch(server *S, struct MHD_Connection *c, const char *url, const char *method, conn *cn) {
    const int state = atomic_load(&S->state);
    const bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    if (is(url, "/health", "/v1/health")) {
        if (state == ST_LOADING) return send_unavailable(S, c, "Loading model");
        /* draining: a balancer's health check takes this replica out */
        if (state == ST_DRAINING) return send_unavailable(S, c, "shutting down");
        return send_json(c, 200, json_pack("{s:s}", "status", "ok"), 0);
    }
    if (state == ST_LOADING) return send_unavailable(S, c, "Loading model");
    if (!authorized(S, c)) {
        atomic_fetch_add(&S->rejected_auth, 1);
        return send_error(c, 401, "authentication_error", "Invalid API Key");
    }
    int kind = -1;
    if (is(url, "/v1/chat/completions", "/chat/completions")) kind = SRV_CHAT;
    else if (is(url, "/v1/completions", "/completions")) kind = SRV_CMPL;
    else if (is(url, "/completion", NULL)) kind = SRV_NATIVE;
    const bool known_post = kind >= 0 || is(url, "/tokenize", NULL) || is(url, "/detokenize", NULL);
    const bool known_get = is(url, "/v1/models", "/models") || is(url, "/metrics", NULL);
    if (!known_post && !known_get) return send_error(c, 404, "not_found_error", "File Not Found");
    if ((known_post && !post) || (known_get && !get)) return send_error(c, 405, "invalid_request_error", "method not allowed on this route");
    if (known_get) return is(url, "/metrics", NULL) ? route_metrics(S, c) : route_models(S, c);
    /* a POST with a JSON body */
    if (cn->too_big) {
        char msg[96];
        snprintf(msg, sizeof(msg), "the request body is larger than %lld bytes", (long long)S->max_body);
        atomic_fetch_add(&S->rejected_bad, 1);
        return send_error(c, 413, "invalid_request_error", msg);
    }
    if (srv_json_depth(cn->body ? cn->body : "", cn->n_body) > S->max_depth) {
        char msg[96];
        snprintf(msg, sizeof(msg), "the JSON body is nested deeper than %d levels", S->max_depth);
        atomic_fetch_add(&S->rejected_bad, 1);
        return send_error(c, 400, "invalid_request_error", msg);
    }
    json_error_t je;
    json_t *body = json_loadb(cn->body ? cn->body : "", cn->n_body, 0, &je);
    if (!body || !json_is_object(body)) {
        char msg[300];
        if (body) snprintf(msg, sizeof(msg), "the request body must be a JSON object");
        else snprintf(msg, sizeof(msg), "invalid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        json_decref(body);
        atomic_fetch_add(&S->rejected_bad, 1);
        return send_error(c, 400, "invalid_request_error", msg);
    }
    enum MHD_Result ret;
    if (kind >= 0) {
        if (state == ST_DRAINING) ret = send_unavailable(S, c, "the server is shutting down");
        else ret = generate(S, c, body, kind);
    } else if (is(url, "/tokenize", NULL)) ret = route_tokenize(S, c, body);
    else ret = route_detokenize(S, c, body);
    json_decref(body);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls) {
    server *S = cls;
    (void)version;
    conn *cn = *con_cls;
    if (!cn) {
        if (!(cn = calloc(1, sizeof(*cn)))) return MHD_NO;
        *con_cls = cn;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoll(cl, NULL, 10) > S->max_body) cn->too_big = true;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cn->too_big && cn->n_body + *upload_size > (size_t)S->max_body) cn->too_big = true;
        if (!cn->too_big) {
            if (cn->n_body + *upload_size + 1 > cn->cap_body) {
                size_t cap = cn->cap_body ? cn->cap_body : 4096;
                while (cap < cn->n_body + *upload_size + 1) cap *= 2;
                char *p = realloc(cn->body, cap);
                if (!p) return MHD_NO;
                cn->body = p;
                cn->cap_body = cap;
            }
            memcpy(cn->body + cn->n_body, upload, *upload_size);
            cn->n_body += *upload_size;
            cn->body[cn->n_body] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return dispatch(S, c, url, method, cn);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
    (void)cls;
    (void)c;
    (void)why;
    conn *cn = *con_cls;
    if (!cn) return;
    free(cn->body);
    free(cn);
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx, enum MHD_ConnectionNotificationCode code) {
    server *S = cls;
    (void)c;
    (void)socket_ctx;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) atomic_fetch_add(&S->n_conns, 1);
    else atomic_fetch_sub(&S->n_conns, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    fputs("longview serve: http: ", stderr);
    vfprintf(stderr, fmt, ap);
}

/* ---- the command ---- */

static int read_keys(server *S, const char *key, const char *key_file) {
    char *text = NULL;
    if (key_file) {
        int64_t len;
        if (!(text = cli_read_file(key_file, &len))) return -1;
    } else {
        text = strdup(key);
    }
    /* comma or newline separated; blanks around are ignored */
    int n = 0;
    for (char *save = NULL, *t = strtok_r(text, ",\r\n", &save); t; t = strtok_r(NULL, ",\r\n", &save)) {
        while (*t == ' ' || *t == '\t') t++;
        size_t l = strlen(t);
        while (l && (t[l - 1] == ' ' || t[l - 1] == '\t')) t[--l] = 0;
        if (!l) continue;
        char **k = realloc(S->keys, (size_t)(n + 1) * sizeof(char *));
        if (!k) break;
        S->keys = k;
        S->keys[n++] = strdup(t);
    }
    free(text);
    S->n_keys = n;
    if (!n) {
        cli_error("--api-key / --api-key-file: no key given");
        return -1;
    }
    return 0;
}

int cmd_serve(int argc, char **argv) {
    cli_kv kvo = {.both = "f16"};
    const char *model_path = NULL, *host = "127.0.0.1", *alias = NULL, *api_key = NULL, *api_key_file = NULL,
               *chat_template = NULL, *mmproj_path = NULL;
    int64_t port = 8080, n_slots = 4, n_ctx = 4096, n_batch = 512, n_threads = 0, verbose = 0, max_queue = 0, max_conns = 0,
            timeout = 600, max_body = 16 << 20, max_messages = 1024, age_cap = 8;
    double queue_timeout = 0, sse_ping = 15, drain_timeout = 30, max_generate = 0;
    bool metrics = false, no_pack = false, no_cache_prompt = false;
    cli_attention att;
    cli_opt base[] = {
        {"-m", "--model", CLI_STR, &model_path, "FILE", "GGUF model", .required = true},
        {NULL, "--host", CLI_STR, &host, "ADDR", "address to listen on (default 127.0.0.1)"},
        {NULL, "--port", CLI_INT, &port, "N", "port (default 8080; 0 = any free port, printed at start)", .lo = 0, .hi = 65535},
        {"-np", "--parallel", CLI_INT, &n_slots, "N", "slots: sequences served at once, and the most choices ('n') one request may ask for (default 4)", .lo = 1, .hi = 256},
        {"-c", "--ctx-size", CLI_INT, &n_ctx, "N", "KV cache tokens shared by all slots (default 4096; 0 = the model's training context)", .lo = 0, .hi = 1 << 30},
        {"-b", "--batch", CLI_INT, &n_batch, "N", "token budget of a step: decodes + packed prompt tokens (default 512)", .lo = 2, .hi = 1 << 16},
        {"-t", "--threads", CLI_INT, &n_threads, "N", "threads (default: all cores)", .lo = 0, .hi = 512},
        {NULL, "--api-key", CLI_STR, &api_key, "KEY", "require this key (comma-separated list) as 'Authorization: Bearer KEY' or X-Api-Key"},
        {NULL, "--api-key-file", CLI_STR, &api_key_file, "FILE", "read the keys from a file (one per line)"},
        {NULL, "--metrics", CLI_FLAG, &metrics, NULL, "expose Prometheus metrics at /metrics"},
        {NULL, "--alias", CLI_STR, &alias, "NAME", "model name in answers and /v1/models (default: the model path)"},
        {NULL, "--chat-template", CLI_STR, &chat_template, "NAME", "chat template family or text (default: the model's; chatml if it has none)"},
        {NULL, "--mmproj", CLI_STR, &mmproj_path, "FILE", "vision tower + projector (llama.cpp mmproj GGUF): chat image_url parts (data: URIs) and /completion's multimodal_data (Qwen2-VL / 2.5-VL with M-RoPE positions too)"},
        CLI_KV_OPTS(kvo, "f16"),
        {NULL, "--max-queue", CLI_INT, &max_queue, "N", "requests waiting for a slot before new ones get 503 (default 4 x slots)", .lo = 0, .hi = 1 << 20},
        {NULL, "--max-generate", CLI_FLOAT, &max_generate, "S", "stop a request's generation this many seconds after its first token, finish_reason length (default 0: no cap; t_max_predict_ms per request)", .flo = 0, .fhi = 1e7},
        {NULL, "--queue-timeout", CLI_FLOAT, &queue_timeout, "S", "answer 503 to a request that waited this long for a slot (default 0: no limit)", .flo = 0, .fhi = 1e6},
        {NULL, "--timeout", CLI_INT, &timeout, "S", "close a connection idle this long (default 600)", .lo = 1, .hi = 86400},
        {NULL, "--max-connections", CLI_INT, &max_conns, "N", "connections at once (default 8 x slots + 16)", .lo = 0, .hi = 65536},
        {NULL, "--max-body", CLI_INT, &max_body, "BYTES", "largest request body (default 16 MiB)", .lo = 1024, .hi = (int64_t)1 << 32},
        {NULL, "--max-messages", CLI_INT, &max_messages, "N", "most chat messages in a request (default 1024)", .lo = 1, .hi = 1 << 20},
        {NULL, "--sse-ping", CLI_FLOAT, &sse_ping, "S", "send an SSE comment after this many silent seconds, e.g. during a long prefill (default 15, at most half of --timeout; 0 = never)", .flo = 0, .fhi = 3600},
        {NULL, "--drain-timeout", CLI_FLOAT, &drain_timeout, "S", "on SIGTERM / SIGINT, wait this long for running requests (default 30)", .flo = 0, .fhi = 86400},
        {NULL, "--age-cap", CLI_INT, &age_cap, "N", "steps a prompt may be passed over by the packer before it goes first (default 8)", .lo = 0, .hi = 1 << 20},
        {NULL, "--no-pack", CLI_FLAG, &no_pack, NULL, "one prompt per step instead of best-fit-decreasing packing (for comparison)"},
        {NULL, "--no-cache-prompt", CLI_FLAG, &no_cache_prompt, NULL, "do not reuse a slot's cached prompt prefix"},
        {"-v", "--verbose", CLI_INT, &verbose, "N", "log level: 0 warnings, 1 info, 2 debug", .lo = 0, .hi = 2},
    };
    const int nb = (int)(sizeof(base) / sizeof(base[0]));
    cli_opt opts[sizeof(base) / sizeof(base[0]) + CLI_ATTENTION_N_OPTS];
    memcpy(opts, base, sizeof(base));
    const int n_opts = nb + cli_attention_opts(&att, opts + nb);
    int r = cli_parse(argc, argv, opts, n_opts,
                      "longview serve -m MODEL [--mmproj MM] [--host 127.0.0.1] [--port 8080] [-np SLOTS] [-c CTX] [-b BATCH] [-t THREADS] [--api-key KEY | --api-key-file F] [--metrics] [--alias NAME]",
                      "An OpenAI-compatible HTTP server: /v1/chat/completions, /v1/completions (SSE streaming), /v1/models, /health,\n"
                      "/tokenize, /detokenize, llama.cpp's /completion and, with --metrics, /metrics. Continuous batching: every step\n"
                      "decodes one token of each generating slot and packs waiting prompts best-fit-decreasing into the rest of the\n"
                      "-b budget. Requests may ask for logprobs (of the raw softmax; chat: logprobs + top_logprobs <= 20, completions:\n"
                      "logprobs N <= 20, /completion: n_probs), n choices (up to -np, each its own slot, one prefill shared, choice i seeded\n"
                      "seed + i) and penalties (frequency_penalty, presence_penalty in [-2, 2], repeat_penalty, repeat_last_n).\n"
                      "With --mmproj, images too: chat content parts {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,...\"}}\n"
                      "(up to 16 a request, encoded one request at a time on -t more threads) and /completion's multimodal_data.\n"
                      "SIGTERM or SIGINT drains and stops. See docs/server.md; attention flags: docs/long-context.md.",
                      NULL, 0, NULL);
    if (r) return r > 0 ? 0 : 2;
    cli_set_verbosity(verbose);
    if (api_key && api_key_file) {
        cli_error("give --api-key or --api-key-file, not both");
        return 2;
    }
    if (n_batch <= n_slots) {
        cli_error("-b %lld must be larger than -np %lld (each step decodes one token per slot first)", (long long)n_batch, (long long)n_slots);
        return 2;
    }
    /* libmicrohttpd closes a connection that has been silent for --timeout seconds, a stream waiting
     * in the queue or in a long prefill included: the pings must come more often than that */
    if (sse_ping > 0 && sse_ping > (double)timeout / 2) {
        fprintf(stderr, "longview serve: --sse-ping %g s lowered to %g s, half of --timeout %lld s (a silent stream would be closed)\n",
                sse_ping, (double)timeout / 2, (long long)timeout);
        sse_ping = (double)timeout / 2;
    }
    lv_kv_type kvt, kvt_v;
    if (cli_kv_types(&kvo, &kvt, &kvt_v) != 0) return 2;
    static server S; /* static: the MHD threads may outlive a frame on an error path */
    memset(&S, 0, sizeof(S));
    pthread_mutex_init(&S.enc_mu, NULL);
    atomic_init(&S.state, ST_LOADING);
    S.alias = alias ? alias : model_path;
    S.chat_template = chat_template;
    S.metrics = metrics;
    S.max_body = max_body;
    S.max_depth = 64;
    S.max_messages = (int)max_messages;
    S.sse_ping_s = sse_ping;
    S.retry_after_s = 1;
    S.n_slots = (int)n_slots;
    S.max_generate_s = max_generate;
    if ((api_key || api_key_file) && read_keys(&S, api_key, api_key_file) != 0) return 2;
    int rc = 1;
    struct MHD_Daemon *d = NULL;
    struct addrinfo *ai = NULL;
    lv_attention_params ap;
    bool att_ok = cli_attention_params(&att, &ap) == 0;

    /* signals: SIGTERM / SIGINT are taken by sigwait below, in this thread only; a failed write
     * to a closed socket must not kill the process */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (!att_ok) goto end;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    char port_s[16];
    snprintf(port_s, sizeof(port_s), "%lld", (long long)port);
    int gai = getaddrinfo(host, port_s, &hints, &ai);
    if (gai != 0) {
        cli_error("--host %s: %s", host, gai_strerror(gai));
        goto end;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    const unsigned conn_limit = max_conns > 0 ? (unsigned)max_conns : (unsigned)(8 * n_slots + 16);
    /* (the logger first: options before it would log through libmicrohttpd's own) */
    d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, &S, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_SOCK_ADDR,
                         ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, &S, MHD_OPTION_NOTIFY_CONNECTION, on_connection, &S,
                         MHD_OPTION_CONNECTION_LIMIT, conn_limit, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)timeout,
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 << 10), MHD_OPTION_END);
    if (!d) {
        cli_error("cannot listen on %s port %lld: %s", host, (long long)port, errno ? strerror(errno) : "libmicrohttpd failed to start");
        goto end;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    fprintf(stderr, "longview serve: listening on http://%s%s%s:%u (loading %s)\n", ai->ai_family == AF_INET6 ? "[" : "", host,
            ai->ai_family == AF_INET6 ? "]" : "", di ? di->port : (unsigned)port, model_path);

    double t0 = cli_now_s();
    /* for tests/cli/serve.sh: a slow load, to see the 503 that /health gives meanwhile */
    const char *delay = getenv("LV_TEST_SERVE_LOAD_DELAY_MS");
    if (delay) usleep((useconds_t)(atoi(delay) > 0 && atoi(delay) < 60000 ? atoi(delay) : 0) * 1000u);
    lv_status st = lv_model_load(model_path, lv_model_default_params(), &S.model);
    if (st != LV_OK) {
        cli_fail("loading the model", st);
        goto end;
    }
    lv_context_params cp = lv_context_default_params();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = (uint32_t)n_batch;
    cp.n_ubatch = (uint32_t)(n_batch < 512 ? n_batch : 512);
    cp.n_seq_max = (uint32_t)n_slots;
    cp.n_threads = (int32_t)n_threads;
    cp.kv_type = kvt;
    cp.kv_type_v = kvt_v;
    cp.attention = ap;
    if ((st = lv_context_create(S.model, cp, &S.ctx)) != LV_OK) {
        cli_fail("creating the context", st);
        goto end;
    }
    S.n_ctx = lv_context_n_ctx(S.ctx);
    S.pc.model = S.model;
    S.pc.max_messages = S.max_messages;
    S.pc.max_n = (int)n_slots;
    if (cli_seen(opts, n_opts, "--ctx-size") && n_ctx > 0) cli_warn_ctx_train(S.model, n_ctx, "-c");
    /* the chat template: the model's, else chatml (as llama.cpp) */
    {
        lv_chat_message m = {"user", "hi"};
        if (lv_chat_apply_template(S.model, S.chat_template, &m, 1, true, NULL, 0) == INT32_MIN) {
            if (S.chat_template) {
                cli_fail("--chat-template", LV_ERR_INVALID_ARG);
                goto end;
            }
            fprintf(stderr, "longview serve: the model has no chat template it knows; /v1/chat/completions uses chatml\n");
            S.chat_template = "chatml";
        }
    }
    S.pc.chat_template = S.chat_template;
    if (mmproj_path) {
        if ((st = lv_mmproj_load(mmproj_path, lv_model_n_embd(S.model), &S.mm)) != LV_OK) {
            cli_fail(mmproj_path, st);
            goto end;
        }
        if (!(S.enc_tp = lv_threadpool_create((int)n_threads))) {
            cli_fail("the encoder's threads", LV_ERR_NOMEM);
            goto end;
        }
        fprintf(stderr, "longview serve: images with %s (%s projector)\n", mmproj_path, lv_mmproj_projector(S.mm));
    }
    lv_srv_params sp = lv_srv_default_params();
    sp.n_slots = (int32_t)n_slots;
    sp.n_batch = (int32_t)n_batch;
    sp.max_waiting = (int32_t)max_queue;
    sp.queue_timeout_s = queue_timeout;
    sp.age_cap = (int32_t)age_cap;
    sp.pack = !no_pack;
    sp.prompt_cache = !no_cache_prompt;
    if ((st = lv_srv_create(S.ctx, S.model, &sp, &S.srv)) != LV_OK || (st = lv_srv_start(S.srv)) != LV_OK) {
        cli_fail("starting the engine", st);
        goto end;
    }
    atomic_store(&S.state, ST_READY);
    fprintf(stderr, "longview serve: ready in %.2f s: %lld slots, context %lld tokens, step budget %lld tokens%s\n", cli_now_s() - t0,
            (long long)n_slots, (long long)S.n_ctx, (long long)n_batch, no_pack ? ", packing off" : "");

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "longview serve: %s: draining (up to %.0f s)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT", drain_timeout);
    atomic_store(&S.state, ST_DRAINING);
    const int n_cancelled = lv_srv_drain(S.srv, drain_timeout);
    /* let the connections write their last bytes */
    for (double t_end = cli_now_s() + 5; atomic_load(&S.n_conns) > 0 && cli_now_s() < t_end;) usleep(20000);
    fprintf(stderr, "longview serve: stopped (%d requests cancelled by the drain)\n", n_cancelled);
    rc = 0;
end:
    if (d) MHD_stop_daemon(d);
    if (ai) freeaddrinfo(ai);
    lv_srv_free(S.srv);
    lv_context_free(S.ctx);
    lv_mmproj_free(S.mm);
    lv_threadpool_free(S.enc_tp);
    lv_model_free(S.model);
    for (int i = 0; i < S.n_keys; i++) free(S.keys[i]);
    free(S.keys);
    cli_attention_free(&att);
    return rc;
}
