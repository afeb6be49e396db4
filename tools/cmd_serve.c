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
enum { K_CHAT, K_CMPL, K_NATIVE };

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
} server;

typedef struct conn {
    char *body;
    size_t n_body, cap_body;
    bool too_big;
    bool counted;
} conn;

/* ---- small helpers ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

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

/* nesting depth of a JSON text, counted before parsing (strings skipped) */
static int json_depth(const char *s, size_t n) {
    int d = 0, max = 0;
    bool str = false, esc = false;
    for (size_t i = 0; i < n; i++) {
        const char c = s[i];
        if (str) {
            if (esc) esc = false;
            else if (c == '\\') esc = true;
            else if (c == '"') str = false;
        } else if (c == '"') str = true;
        else if (c == '[' || c == '{') max = ++d > max ? d : max;
        else if (c == ']' || c == '}') d--;
    }
    return max;
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

/* ---- request fields ---- */

typedef struct gen_req {
    int kind;
    lv_token *prompt;
    int32_t n_prompt;
    int64_t n_predict;
    lv_sampler_params sp;
    bool stream, include_usage, ignore_eos, return_tokens;
    const char *stop[16];
    int n_stop;
} gen_req;

/* An error found while reading a request: status, type, message. */
typedef struct req_err {
    unsigned status;
    const char *type;
    char msg[512];
} req_err;

static bool bad(req_err *e, unsigned status, const char *type, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool bad(req_err *e, unsigned status, const char *type, const char *fmt, ...) {
    e->status = status;
    e->type = type;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return false;
}

static bool get_number(json_t *o, const char *key, double lo, double hi, double *out, req_err *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v)) return bad(e, 400, "invalid_request_error", "'%s' must be a number", key);
    const double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return bad(e, 400, "invalid_request_error", "'%s' must be in [%g, %g], got %g", key, lo, hi, x);
    *out = x;
    return true;
}

static bool get_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out, req_err *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_integer(v)) return bad(e, 400, "invalid_request_error", "'%s' must be an integer", key);
    const int64_t x = json_integer_value(v);
    if (x < lo || x > hi) return bad(e, 400, "invalid_request_error", "'%s' must be in [%lld, %lld]", key, (long long)lo, (long long)hi);
    *out = x;
    return true;
}

static bool get_bool(json_t *o, const char *key, bool *out, req_err *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) return bad(e, 400, "invalid_request_error", "'%s' must be true or false", key);
    *out = json_is_true(v);
    return true;
}

static lv_token *tokenize(server *S, const char *text, size_t len, bool add_special, bool parse_special, int32_t *n, req_err *e) {
    int32_t need = lv_tokenize(S->model, text, (int64_t)len, NULL, 0, add_special, parse_special);
    if (need == INT32_MIN) {
        bad(e, 500, "server_error", "tokenizing failed: %s", lv_last_error());
        return NULL;
    }
    need = need < 0 ? -need : need;
    lv_token *t = malloc(((size_t)need + 1) * sizeof(lv_token));
    if (!t || lv_tokenize(S->model, text, (int64_t)len, t, need, add_special, parse_special) != need) {
        free(t);
        bad(e, 500, "server_error", "tokenizing failed");
        return NULL;
    }
    *n = need;
    return t;
}

/* a prompt: a string, an array of token ids, or a one-element array of either */
static bool read_prompt(server *S, json_t *p, gen_req *g, req_err *e) {
    if (json_is_array(p) && json_array_size(p) == 1 && (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0))))
        p = json_array_get(p, 0);
    if (json_is_string(p)) {
        g->prompt = tokenize(S, json_string_value(p), json_string_length(p), true, true, &g->n_prompt, e);
        return g->prompt != NULL;
    }
    if (json_is_array(p)) {
        const size_t n = json_array_size(p);
        if (n > 0 && json_is_string(json_array_get(p, 0)))
            return bad(e, 501, "not_supported_error", "several prompts in one request are not supported yet");
        g->prompt = malloc((n + 1) * sizeof(lv_token));
        if (!g->prompt) return bad(e, 500, "server_error", "out of memory");
        for (size_t i = 0; i < n; i++) {
            json_t *t = json_array_get(p, i);
            if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= lv_model_n_vocab(S->model))
                return bad(e, 400, "invalid_request_error", "prompt element %zu is not a token id in [0, %d)", i, lv_model_n_vocab(S->model));
            g->prompt[i] = (lv_token)json_integer_value(t);
        }
        g->n_prompt = (int32_t)n;
        return true;
    }
    return bad(e, 400, "invalid_request_error", "'prompt' must be a string or an array of token ids");
}

static bool read_messages(server *S, json_t *body, gen_req *g, req_err *e) {
    json_t *msgs = json_object_get(body, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return bad(e, 400, "invalid_request_error", "'messages' must be a non-empty array");
    const size_t n = json_array_size(msgs);
    if (n > (size_t)S->max_messages) return bad(e, 400, "invalid_request_error", "%zu messages: at most %d", n, S->max_messages);
    lv_chat_message *cm = calloc(n, sizeof(*cm));
    char **owned = calloc(n, sizeof(char *));
    bool ok = cm && owned;
    if (!ok) bad(e, 500, "server_error", "out of memory");
    for (size_t i = 0; ok && i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_object(m) || !json_is_string(role)) {
            ok = bad(e, 400, "invalid_request_error", "message %zu needs a string 'role'", i);
            break;
        }
        const char *r = json_string_value(role);
        if (strcmp(r, "developer") == 0) r = "system";
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")) {
            ok = bad(e, 400, "invalid_request_error", "message %zu: role '%s' is not supported (system, developer, user, assistant)", i, r);
            break;
        }
        cm[i].role = r;
        if (json_is_string(content)) {
            cm[i].content = json_string_value(content);
        } else if (!content || json_is_null(content)) {
            cm[i].content = "";
        } else if (json_is_array(content)) { /* parts: text only */
            size_t len = 0, k;
            json_t *part;
            json_array_foreach(content, k, part) {
                json_t *ty = json_object_get(part, "type"), *tx = json_object_get(part, "text");
                if (!json_is_string(ty) || strcmp(json_string_value(ty), "text") != 0) {
                    ok = bad(e, json_is_string(ty) ? 501 : 400, json_is_string(ty) ? "not_supported_error" : "invalid_request_error",
                             "message %zu: only text content parts are supported", i);
                    break;
                }
                if (!json_is_string(tx)) {
                    ok = bad(e, 400, "invalid_request_error", "message %zu: a text part needs a string 'text'", i);
                    break;
                }
                len += json_string_length(tx);
            }
            if (!ok) break;
            char *cat = malloc(len + 1);
            if (!cat) {
                ok = bad(e, 500, "server_error", "out of memory");
                break;
            }
            size_t off = 0;
            json_array_foreach(content, k, part) {
                json_t *tx = json_object_get(part, "text");
                memcpy(cat + off, json_string_value(tx), json_string_length(tx));
                off += json_string_length(tx);
            }
            cat[off] = 0;
            owned[i] = cat;
            cm[i].content = cat;
        } else {
            ok = bad(e, 400, "invalid_request_error", "message %zu: 'content' must be a string or an array of parts", i);
        }
    }
    if (ok) {
        int64_t need = lv_chat_apply_template(S->model, S->chat_template, cm, n, true, NULL, 0);
        if (need == INT32_MIN) ok = bad(e, 500, "server_error", "chat template: %s", lv_last_error());
        else {
            need = need < 0 ? -need : need;
            char *text = malloc((size_t)need + 1);
            if (!text) ok = bad(e, 500, "server_error", "out of memory");
            else {
                lv_chat_apply_template(S->model, S->chat_template, cm, n, true, text, need + 1);
                g->prompt = tokenize(S, text, (size_t)need, true, true, &g->n_prompt, e);
                ok = g->prompt != NULL;
                free(text);
            }
        }
    }
    for (size_t i = 0; owned && i < n; i++) free(owned[i]);
    free(owned);
    free(cm);
    return ok;
}

/* the fields every generation route shares */
static bool read_gen(server *S, json_t *body, gen_req *g, req_err *e) {
    g->n_predict = -1;
    g->sp = lv_sampler_default_params(); /* llama.cpp's defaults: temp 0.8, top-k 40, top-p 0.95, min-p 0.05 */
    static atomic_ullong seed_ctr;
    g->sp.seed = (uint64_t)time(NULL) * 6364136223846793005ull + atomic_fetch_add(&seed_ctr, 1) * 1442695040888963407ull;
    double temp = g->sp.temp, top_p = g->sp.top_p, min_p = g->sp.min_p;
    int64_t top_k = g->sp.top_k, seed = -1, n = 1;
    if (!get_number(body, "temperature", 0, 100, &temp, e) || !get_number(body, "top_p", 0, 1, &top_p, e) ||
        !get_number(body, "min_p", 0, 1, &min_p, e) || !get_int(body, "top_k", 0, INT32_MAX, &top_k, e) ||
        !get_int(body, "seed", INT64_MIN, INT64_MAX, &seed, e) || !get_int(body, "n", 1, 1000, &n, e) ||
        !get_bool(body, "stream", &g->stream, e) || !get_bool(body, "ignore_eos", &g->ignore_eos, e) ||
        !get_bool(body, "return_tokens", &g->return_tokens, e))
        return false;
    /* (frequency / presence penalties are accepted and not applied yet: docs/server.md) */
    double pen = 0;
    if (!get_number(body, "frequency_penalty", -2, 2, &pen, e) || !get_number(body, "presence_penalty", -2, 2, &pen, e)) return false;
    const char *cap_keys[] = {"max_completion_tokens", "max_tokens", "n_predict"};
    for (int k = 0; k < 3; k++) {
        int64_t v = -2;
        if (!get_int(body, cap_keys[k], -1, INT32_MAX, &v, e)) return false;
        if (v != -2 && g->n_predict < 0) g->n_predict = v;
    }
    if (n != 1) return bad(e, 501, "not_supported_error", "'n' other than 1 is not supported yet");
    json_t *lp = json_object_get(body, "logprobs");
    if ((json_is_true(lp)) || (json_is_integer(lp) && json_integer_value(lp) > 0))
        return bad(e, 501, "not_supported_error", "logprobs are not supported yet");
    const char *unsupported[] = {"tools", "functions", "response_format", "grammar", "json_schema", "suffix"};
    for (size_t k = 0; k < sizeof(unsupported) / sizeof(*unsupported); k++) {
        json_t *v = json_object_get(body, unsupported[k]);
        if (v && !json_is_null(v) && !(json_is_array(v) && json_array_size(v) == 0))
            return bad(e, 501, "not_supported_error", "'%s' is not supported yet", unsupported[k]);
    }
    if (json_is_true(json_object_get(body, "echo"))) return bad(e, 501, "not_supported_error", "'echo' is not supported");
    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return bad(e, 400, "invalid_request_error", "'stream_options' must be an object");
        if (!get_bool(so, "include_usage", &g->include_usage, e)) return false;
    }
    json_t *stop = json_object_get(body, "stop");
    if (json_is_string(stop)) {
        if (json_string_length(stop)) g->stop[g->n_stop++] = json_string_value(stop);
    } else if (json_is_array(stop)) {
        if (json_array_size(stop) > 16) return bad(e, 400, "invalid_request_error", "at most 16 stop strings");
        size_t k;
        json_t *s;
        json_array_foreach(stop, k, s) {
            if (!json_is_string(s)) return bad(e, 400, "invalid_request_error", "'stop' must be a string or an array of strings");
            if (json_string_length(s) > 1024) return bad(e, 400, "invalid_request_error", "a stop string is longer than 1024 bytes");
            if (json_string_length(s)) g->stop[g->n_stop++] = json_string_value(s);
        }
    } else if (stop && !json_is_null(stop)) {
        return bad(e, 400, "invalid_request_error", "'stop' must be a string or an array of strings");
    }
    g->sp.temp = (float)temp;
    g->sp.top_p = (float)top_p;
    g->sp.min_p = (float)min_p;
    g->sp.top_k = (int32_t)top_k;
    if (seed >= 0) g->sp.seed = (uint64_t)seed;
    (void)S;
    return true;
}

/* ---- generation ---- */

static const char *finish_name(lv_srv_finish f) {
    return f == LV_SRV_FINISH_LENGTH ? "length" : "stop";
}

static json_t *usage_obj(const lv_srv_output *o) {
    return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", o->n_prompt, "completion_tokens", o->n_generated, "total_tokens",
                     o->n_prompt + o->n_generated, "prompt_tokens_details", "cached_tokens", o->n_cached);
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

typedef struct stream {
    server *S;
    lv_srv_req *req;
    struct MHD_Connection *conn;
    int kind;
    bool include_usage, sent_role, finished;
    char id[48];
    long long created;
    int64_t off_text;
    int32_t off_tok;
    char *pend;
    size_t n_pend, cap_pend, pos_pend;
    double t_last;
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
    return json_pack("{s:s,s:s,s:I,s:s,s:s}", "id", st->id, "object", st->kind == K_CHAT ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)st->created, "model", model, "system_fingerprint", "longview-" LV_VERSION_STRING);
}

static json_t *choice_delta(stream *st, const char *text, size_t n, const char *finish) {
    json_t *c;
    if (st->kind == K_CHAT) {
        json_t *delta = json_object();
        if (text) json_object_set_new(delta, "content", jstr(text, n));
        c = json_pack("{s:i,s:o,s:o}", "index", 0, "delta", delta, "finish_reason", finish ? json_string(finish) : json_null());
    } else {
        c = json_pack("{s:i,s:o,s:n,s:o}", "index", 0, "text", jstr(text ? text : "", text ? n : 0), "logprobs", "finish_reason",
                      finish ? json_string(finish) : json_null());
    }
    return c;
}

/* Turn what the request produced since the last call into SSE events. */
static bool stream_events(stream *st, const lv_srv_output *o) {
    server *S = st->S;
    const char *model = S->alias;
    if (st->kind == K_NATIVE) {
        if (o->n_text > 0 || (o->n_tokens > 0 && o->finish == LV_SRV_FINISH_NONE)) {
            json_t *j = json_pack("{s:o,s:b,s:i}", "content", jstr(o->text ? o->text : "", (size_t)o->n_text), "stop", 0, "id_slot", o->slot);
            if (o->n_tokens) {
                json_t *t = json_array();
                for (int32_t i = 0; i < o->n_tokens; i++) json_array_append_new(t, json_integer(o->tokens[i]));
                json_object_set_new(j, "tokens", t);
            }
            if (!pend_event(st, j)) return false;
        }
        if (o->finish != LV_SRV_FINISH_NONE) {
            unsigned status;
            json_t *err = finish_error(S, o, &status);
            if (err) return pend_event(st, err);
            json_t *j = json_pack("{s:s,s:b,s:i,s:s,s:i,s:i,s:s,s:s,s:o}", "content", "", "stop", 1, "id_slot", o->slot, "model", model,
                                  "tokens_predicted", o->n_generated, "tokens_evaluated", o->n_prompt, "stop_type",
                                  o->finish == LV_SRV_FINISH_LENGTH ? "limit" : o->finish == LV_SRV_FINISH_STOP ? "word" : "eos", "stopping_word",
                                  o->stop_word ? o->stop_word : "", "timings", timings_obj(o));
            return pend_event(st, j);
        }
        return true;
    }
    if (st->kind == K_CHAT && !st->sent_role) {
        json_t *j = chunk_obj(st, model);
        json_object_set_new(j, "choices",
                            json_pack("[{s:i,s:{s:s,s:n},s:n}]", "index", 0, "delta", "role", "assistant", "content", "finish_reason"));
        if (!pend_event(st, j)) return false;
        st->sent_role = true;
    }
    if (o->n_text > 0) {
        json_t *j = chunk_obj(st, model);
        json_object_set_new(j, "choices", json_pack("[o]", choice_delta(st, o->text, (size_t)o->n_text, NULL)));
        if (!pend_event(st, j)) return false;
    }
    if (o->finish != LV_SRV_FINISH_NONE) {
        unsigned status;
        json_t *err = finish_error(S, o, &status);
        if (err) return pend_event(st, err); /* the stream ends without [DONE], as llama.cpp's */
        json_t *j = chunk_obj(st, model);
        json_object_set_new(j, "choices", json_pack("[o]", choice_delta(st, NULL, 0, finish_name(o->finish))));
        json_object_set_new(j, "timings", timings_obj(o));
        if (!pend_event(st, j)) return false;
        if (st->include_usage) {
            j = chunk_obj(st, model);
            json_object_set_new(j, "choices", json_array());
            json_object_set_new(j, "usage", usage_obj(o));
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
        lv_srv_output o;
        if (lv_srv_req_poll(st->req, st->off_text, st->off_tok, 0.1, &o) != LV_OK) return MHD_CONTENT_READER_END_WITH_ERROR;
        st->off_text += o.n_text;
        st->off_tok += o.n_tokens;
        const bool ok = stream_events(st, &o);
        if (o.finish != LV_SRV_FINISH_NONE) st->finished = true;
        lv_srv_output_clear(&o);
        if (!ok) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (st->n_pend > 0) {
            st->t_last = now_s();
        } else if (client_gone(st->conn)) {
            lv_srv_req_cancel(st->req); /* the slot is free at the next step */
            return MHD_CONTENT_READER_END_WITH_ERROR;
        } else if (st->S->sse_ping_s > 0 && now_s() - st->t_last >= st->S->sse_ping_s) {
            if (!pend_add(st, ": ping\n\n", 8)) return MHD_CONTENT_READER_END_WITH_ERROR;
            st->t_last = now_s();
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
    lv_srv_req_release(st->req); /* cancels it if the client went away before the end */
    free(st->pend);
    free(st);
}

static enum MHD_Result generate(server *S, struct MHD_Connection *c, json_t *body, int kind) {
    gen_req g = {.kind = kind};
    req_err e = {0};
    bool ok = read_gen(S, body, &g, &e);
    if (ok) {
        if (kind == K_CHAT) ok = read_messages(S, body, &g, &e);
        else {
            json_t *p = json_object_get(body, kind == K_NATIVE && !json_object_get(body, "prompt") ? "content" : "prompt");
            ok = p ? read_prompt(S, p, &g, &e) : bad(&e, 400, "invalid_request_error", "'prompt' is required");
        }
    }
    if (ok && g.n_prompt == 0) ok = bad(&e, 400, "invalid_request_error", "the prompt is empty");
    if (!ok) {
        free(g.prompt);
        atomic_fetch_add(&S->rejected_bad, 1);
        return send_error(c, e.status, e.type, e.msg);
    }
    lv_srv_req_params rp = {.prompt = g.prompt, .n_prompt = g.n_prompt, .n_predict = (int32_t)g.n_predict, .sampling = g.sp,
                            .ignore_eos = g.ignore_eos, .stop = g.stop, .n_stop = g.n_stop};
    lv_srv_req *r = NULL;
    const lv_srv_refusal why = lv_srv_submit(S->srv, &rp, &r);
    free(g.prompt);
    switch (why) {
    case LV_SRV_ACCEPTED: break;
    case LV_SRV_REFUSE_TOO_LONG: {
        json_t *j = error_obj(400, "exceed_context_size_error", lv_last_error());
        json_object_set_new(json_object_get(j, "error"), "n_prompt_tokens", json_integer(g.n_prompt));
        json_object_set_new(json_object_get(j, "error"), "n_ctx", json_integer(S->n_ctx));
        return send_json(c, 400, j, 0);
    }
    case LV_SRV_REFUSE_QUEUE_FULL:
    case LV_SRV_REFUSE_DRAINING: return send_unavailable(S, c, lv_last_error());
    default: atomic_fetch_add(&S->rejected_bad, 1); return send_error(c, 400, "invalid_request_error", lv_last_error());
    }
    const long id = atomic_fetch_add(&S->next_id, 1);
    if (g.stream) {
        stream *st = calloc(1, sizeof(*st));
        if (!st) {
            lv_srv_req_release(r);
            return MHD_NO;
        }
        st->S = S;
        st->req = r;
        st->conn = c;
        st->kind = kind;
        st->include_usage = g.include_usage;
        st->created = (long long)time(NULL);
        st->t_last = now_s();
        snprintf(st->id, sizeof(st->id), "%s-%ld", kind == K_CHAT ? "chatcmpl" : "cmpl", id);
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
    /* not streamed: wait for the end, watching for the client going away */
    lv_srv_output o;
    for (;;) {
        lv_srv_req_poll(r, INT64_MAX / 2, INT32_MAX / 2, 0.1, &o);
        const bool done = o.finish != LV_SRV_FINISH_NONE;
        lv_srv_output_clear(&o);
        if (done) break;
        if (client_gone(c)) {
            lv_srv_req_release(r); /* cancels: the slot is free at the next step */
            return MHD_NO;
        }
    }
    if (lv_srv_req_poll(r, 0, 0, 0, &o) != LV_OK) {
        lv_srv_req_release(r);
        return send_error(c, 500, "server_error", "out of memory");
    }
    lv_srv_req_release(r);
    unsigned status = 200;
    json_t *err = finish_error(S, &o, &status);
    if (err) {
        lv_srv_output_clear(&o);
        return send_json(c, status, err, status == 503 ? S->retry_after_s : 0);
    }
    json_t *text = jstr(o.text ? o.text : "", (size_t)o.n_text);
    json_t *j;
    char idbuf[48];
    if (kind == K_NATIVE) {
        j = json_pack("{s:o,s:i,s:b,s:s,s:i,s:i,s:s,s:s,s:b,s:o}", "content", text, "id_slot", o.slot, "stop", 1, "model", S->alias,
                      "tokens_predicted", o.n_generated, "tokens_evaluated", o.n_prompt, "stop_type",
                      o.finish == LV_SRV_FINISH_LENGTH ? "limit" : o.finish == LV_SRV_FINISH_STOP ? "word" : "eos", "stopping_word",
                      o.stop_word ? o.stop_word : "", "truncated", 0, "timings", timings_obj(&o));
        if (g.return_tokens) {
            json_t *t = json_array();
            for (int32_t i = 0; i < o.n_tokens; i++) json_array_append_new(t, json_integer(o.tokens[i]));
            json_object_set_new(j, "tokens", t);
        }
    } else {
        snprintf(idbuf, sizeof(idbuf), "%s-%ld", kind == K_CHAT ? "chatcmpl" : "cmpl", id);
        json_t *choice = kind == K_CHAT ? json_pack("{s:i,s:{s:s,s:o},s:n,s:s}", "index", 0, "message", "role", "assistant", "content", text,
                                                    "logprobs", "finish_reason", finish_name(o.finish))
                                        : json_pack("{s:i,s:o,s:n,s:s}", "index", 0, "text", text, "logprobs", "finish_reason", finish_name(o.finish));
        j = json_pack("{s:s,s:s,s:I,s:s,s:s,s:[o],s:o,s:o}", "id", idbuf, "object", kind == K_CHAT ? "chat.completion" : "text_completion",
                      "created", (json_int_t)time(NULL), "model", S->alias, "system_fingerprint", "longview-" LV_VERSION_STRING, "choices",
                      choice, "usage", usage_obj(&o), "timings", timings_obj(&o));
    }
    lv_srv_output_clear(&o);
    return send_json(c, 200, j, 0);
}

/* ---- the other routes ---- */

static enum MHD_Result route_tokenize(server *S, struct MHD_Connection *c, json_t *body) {
    json_t *content = json_object_get(body, "content");
    if (!content) content = json_object_get(body, "prompt");
    if (!json_is_string(content)) return send_error(c, 400, "invalid_request_error", "'content' must be a string");
    bool add_special = false, parse_special = true, with_pieces = false;
    req_err e = {0};
    if (!get_bool(body, "add_special", &add_special, &e) || !get_bool(body, "parse_special", &parse_special, &e) ||
        !get_bool(body, "with_pieces", &with_pieces, &e))
        return send_error(c, e.status, e.type, e.msg);
    int32_t n = 0;
    lv_token *t = tokenize(S, json_string_value(content), json_string_length(content), add_special, parse_special, &n, &e);
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
    if (is(url, "/v1/chat/completions", "/chat/completions")) kind = K_CHAT;
    else if (is(url, "/v1/completions", "/completions")) kind = K_CMPL;
    else if (is(url, "/completion", NULL)) kind = K_NATIVE;
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
    if (json_depth(cn->body ? cn->body : "", cn->n_body) > S->max_depth) {
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
    const char *model_path = NULL, *host = "127.0.0.1", *alias = NULL, *api_key = NULL, *api_key_file = NULL, *kv = "f16",
               *chat_template = NULL;
    int64_t port = 8080, n_slots = 4, n_ctx = 4096, n_batch = 512, n_threads = 0, verbose = 0, max_queue = 0, max_conns = 0,
            timeout = 600, max_body = 16 << 20, max_messages = 1024, age_cap = 8;
    double queue_timeout = 0, sse_ping = 15, drain_timeout = 30;
    bool metrics = false, no_pack = false, no_cache_prompt = false;
    cli_attention att;
    cli_opt base[] = {
        {"-m", "--model", CLI_STR, &model_path, "FILE", "GGUF model", .required = true},
        {NULL, "--host", CLI_STR, &host, "ADDR", "address to listen on (default 127.0.0.1)"},
        {NULL, "--port", CLI_INT, &port, "N", "port (default 8080; 0 = any free port, printed at start)", .lo = 0, .hi = 65535},
        {"-np", "--parallel", CLI_INT, &n_slots, "N", "slots: requests served at once (default 4)", .lo = 1, .hi = 256},
        {"-c", "--ctx-size", CLI_INT, &n_ctx, "N", "KV cache tokens shared by all slots (default 4096; 0 = the model's training context)", .lo = 0, .hi = 1 << 30},
        {"-b", "--batch", CLI_INT, &n_batch, "N", "token budget of a step: decodes + packed prompt tokens (default 512)", .lo = 2, .hi = 1 << 16},
        {"-t", "--threads", CLI_INT, &n_threads, "N", "threads (default: all cores)", .lo = 0, .hi = 512},
        {NULL, "--api-key", CLI_STR, &api_key, "KEY", "require this key (comma-separated list) as 'Authorization: Bearer KEY' or X-Api-Key"},
        {NULL, "--api-key-file", CLI_STR, &api_key_file, "FILE", "read the keys from a file (one per line)"},
        {NULL, "--metrics", CLI_FLAG, &metrics, NULL, "expose Prometheus metrics at /metrics"},
        {NULL, "--alias", CLI_STR, &alias, "NAME", "model name in answers and /v1/models (default: the model path)"},
        {NULL, "--chat-template", CLI_STR, &chat_template, "NAME", "chat template family or text (default: the model's; chatml if it has none)"},
        {NULL, "--kv-type", CLI_STR, &kv, "T", "KV cache type: f16 (default) or f32"},
        {NULL, "--max-queue", CLI_INT, &max_queue, "N", "requests waiting for a slot before new ones get 503 (default 4 x slots)", .lo = 0, .hi = 1 << 20},
        {NULL, "--queue-timeout", CLI_FLOAT, &queue_timeout, "S", "answer 503 to a request that waited this long for a slot (default 0: no limit)", .flo = 0, .fhi = 1e6},
        {NULL, "--timeout", CLI_INT, &timeout, "S", "close a connection idle this long (default 600)", .lo = 1, .hi = 86400},
        {NULL, "--max-connections", CLI_INT, &max_conns, "N", "connections at once (default 8 x slots + 16)", .lo = 0, .hi = 65536},
        {NULL, "--max-body", CLI_INT, &max_body, "BYTES", "largest request body (default 16 MiB)", .lo = 1024, .hi = (int64_t)1 << 32},
        {NULL, "--max-messages", CLI_INT, &max_messages, "N", "most chat messages in a request (default 1024)", .lo = 1, .hi = 1 << 20},
        {NULL, "--sse-ping", CLI_FLOAT, &sse_ping, "S", "send an SSE comment after this many silent seconds, e.g. during a long prefill (default 15; 0 = never)", .flo = 0, .fhi = 3600},
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
                      "longview serve -m MODEL [--host 127.0.0.1] [--port 8080] [-np SLOTS] [-c CTX] [-b BATCH] [-t THREADS] [--api-key KEY | --api-key-file F] [--metrics] [--alias NAME]",
                      "An OpenAI-compatible HTTP server: /v1/chat/completions, /v1/completions (SSE streaming), /v1/models, /health,\n"
                      "/tokenize, /detokenize, llama.cpp's /completion and, with --metrics, /metrics. Continuous batching: every step\n"
                      "decodes one token of each generating slot and packs waiting prompts best-fit-decreasing into the rest of the\n"
                      "-b budget. SIGTERM or SIGINT drains and stops. See docs/server.md; attention flags: docs/long-context.md.",
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
    lv_kv_type kvt = LV_KV_F16;
    if (strcmp(kv, "f32") == 0) kvt = LV_KV_F32;
    else if (strcmp(kv, "f16") != 0) {
        cli_error("--kv-type: '%s' is not f32 or f16", kv);
        return 2;
    }
    static server S; /* static: the MHD threads may outlive a frame on an error path */
    memset(&S, 0, sizeof(S));
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

    double t0 = now_s();
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
    cp.attention = ap;
    if ((st = lv_context_create(S.model, cp, &S.ctx)) != LV_OK) {
        cli_fail("creating the context", st);
        goto end;
    }
    S.n_ctx = lv_context_n_ctx(S.ctx);
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
    fprintf(stderr, "longview serve: ready in %.2f s: %lld slots, context %lld tokens, step budget %lld tokens%s\n", now_s() - t0,
            (long long)n_slots, (long long)S.n_ctx, (long long)n_batch, no_pack ? ", packing off" : "");

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "longview serve: %s: draining (up to %.0f s)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT", drain_timeout);
    atomic_store(&S.state, ST_DRAINING);
    const int n_cancelled = lv_srv_drain(S.srv, drain_timeout);
    /* let the connections write their last bytes */
    for (double t_end = now_s() + 5; atomic_load(&S.n_conns) > 0 && now_s() < t_end;) usleep(20000);
    fprintf(stderr, "longview serve: stopped (%d requests cancelled by the drain)\n", n_cancelled);
    rc = 0;
end:
    if (d) MHD_stop_daemon(d);
    if (ai) freeaddrinfo(ai);
    lv_srv_free(S.srv);
    lv_context_free(S.ctx);
    lv_model_free(S.model);
    for (int i = 0; i < S.n_keys; i++) free(S.keys[i]);
    free(S.keys);
    cli_attention_free(&att);
    return rc;
}
