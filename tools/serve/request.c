/*
 * request.c: JSON request bodies of `longview serve` -> token arrays and sampling (request.h).
 */
#define _GNU_SOURCE
#include "request.h"
#include "server/server.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* nesting depth of a JSON text, counted before parsing (strings skipped) */
int srv_json_depth(const char *s, size_t n) {
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




bool srv_bad(srv_req_err *e, unsigned status, const char *type, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
bool srv_bad(srv_req_err *e, unsigned status, const char *type, const char *fmt, ...) {
    e->status = status;
    e->type = type;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return false;
}

bool srv_get_number(json_t *o, const char *key, double lo, double hi, double *out, srv_req_err *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v)) return srv_bad(e, 400, "invalid_request_error", "'%s' must be a number", key);
    const double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return srv_bad(e, 400, "invalid_request_error", "'%s' must be in [%g, %g], got %g", key, lo, hi, x);
    *out = x;
    return true;
}

bool srv_get_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out, srv_req_err *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_integer(v)) return srv_bad(e, 400, "invalid_request_error", "'%s' must be an integer", key);
    const int64_t x = json_integer_value(v);
    if (x < lo || x > hi) return srv_bad(e, 400, "invalid_request_error", "'%s' must be in [%lld, %lld]", key, (long long)lo, (long long)hi);
    *out = x;
    return true;
}

bool srv_get_bool(json_t *o, const char *key, bool *out, srv_req_err *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) return srv_bad(e, 400, "invalid_request_error", "'%s' must be true or false", key);
    *out = json_is_true(v);
    return true;
}

lv_token *srv_tokenize(const srv_parse_ctx *S, const char *text, size_t len, bool add_special, bool parse_special, int32_t *n, srv_req_err *e) {
    int32_t need = lv_tokenize(S->model, text, (int64_t)len, NULL, 0, add_special, parse_special);
    if (need == INT32_MIN) {
        srv_bad(e, 500, "server_error", "tokenizing failed: %s", lv_last_error());
        return NULL;
    }
    need = need < 0 ? -need : need;
    lv_token *t = malloc(((size_t)need + 1) * sizeof(lv_token));
    if (!t || lv_tokenize(S->model, text, (int64_t)len, t, need, add_special, parse_special) != need) {
        free(t);
        srv_bad(e, 500, "server_error", "tokenizing failed");
        return NULL;
    }
    *n = need;
    return t;
}

uint8_t *srv_base64_decode(const char *s, size_t n, size_t *out_n) {
    while (n > 0 && s[n - 1] == '=') n--;
    if (n == 0 || n % 4 == 1) return NULL;
    uint8_t *out = malloc(n / 4 * 3 + 3);
    if (!out) return NULL;
    uint32_t acc = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char c = s[i];
        int v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52 : c == '+' ? 62 : c == '/' ? 63 : -1;
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            out[o++] = (uint8_t)(acc >> 16), out[o++] = (uint8_t)(acc >> 8), out[o++] = (uint8_t)acc;
            acc = 0;
        }
    }
    if (n % 4 == 2) out[o++] = (uint8_t)(acc >> 4);
    else if (n % 4 == 3) out[o++] = (uint8_t)(acc >> 10), out[o++] = (uint8_t)(acc >> 2);
    *out_n = o;
    return out;
}

/* one image of a request: a data: URI (url) or plain base64 (native), decoded into g */
static bool add_image(srv_gen_req *g, const char *s, size_t n, bool url, srv_req_err *e) {
    if (g->n_images == SRV_MAX_IMAGES) return srv_bad(e, 400, "invalid_request_error", "more than %d images in one request", SRV_MAX_IMAGES);
    if (url) {
        if (n >= 4 && (strncmp(s, "http", 4) == 0))
            return srv_bad(e, 400, "invalid_request_error", "image URLs are not fetched by this server: send the image as a data: URI (data:image/png;base64,...)");
        const char *comma = memchr(s, ',', n);
        if (n < 5 || strncmp(s, "data:", 5) != 0 || !comma || comma - s < 12 || strncmp(comma - 7, ";base64", 7) != 0)
            return srv_bad(e, 400, "invalid_request_error", "an image URL must be a base64 data: URI (data:image/png;base64,...)");
        n -= (size_t)(comma + 1 - s);
        s = comma + 1;
    }
    size_t sz = 0;
    uint8_t *b = srv_base64_decode(s, n, &sz);
    if (!b) return srv_bad(e, 400, "invalid_request_error", "image %d is not valid base64", g->n_images);
    g->image[g->n_images] = b;
    g->image_size[g->n_images++] = sz;
    return true;
}

/* a prompt: a string, an array of token ids, or a one-element array of either */
static bool read_prompt(const srv_parse_ctx *S, json_t *p, srv_gen_req *g, srv_req_err *e) {
    if (json_is_array(p) && json_array_size(p) == 1 && (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0))))
        p = json_array_get(p, 0);
    if (json_is_string(p)) {
        g->prompt = srv_tokenize(S, json_string_value(p), json_string_length(p), true, true, &g->n_prompt, e);
        return g->prompt != NULL;
    }
    if (json_is_array(p)) {
        const size_t n = json_array_size(p);
        if (n > 0 && json_is_string(json_array_get(p, 0)))
            return srv_bad(e, 501, "not_supported_error", "several prompts in one request are not supported yet");
        g->prompt = malloc((n + 1) * sizeof(lv_token));
        if (!g->prompt) return srv_bad(e, 500, "server_error", "out of memory");
        for (size_t i = 0; i < n; i++) {
            json_t *t = json_array_get(p, i);
            if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= lv_model_n_vocab(S->model))
                return srv_bad(e, 400, "invalid_request_error", "prompt element %zu is not a token id in [0, %d)", i, lv_model_n_vocab(S->model));
            g->prompt[i] = (lv_token)json_integer_value(t);
        }
        g->n_prompt = (int32_t)n;
        return true;
    }
    return srv_bad(e, 400, "invalid_request_error", "'prompt' must be a string or an array of token ids");
}

static bool read_messages(const srv_parse_ctx *S, json_t *body, srv_gen_req *g, srv_req_err *e) {
    json_t *msgs = json_object_get(body, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return srv_bad(e, 400, "invalid_request_error", "'messages' must be a non-empty array");
    const size_t n = json_array_size(msgs);
    if (n > (size_t)S->max_messages) return srv_bad(e, 400, "invalid_request_error", "%zu messages: at most %d", n, S->max_messages);
    lv_chat_message *cm = calloc(n, sizeof(*cm));
    char **owned = calloc(n, sizeof(char *));
    bool ok = cm && owned;
    if (!ok) srv_bad(e, 500, "server_error", "out of memory");
    for (size_t i = 0; ok && i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_object(m) || !json_is_string(role)) {
            ok = srv_bad(e, 400, "invalid_request_error", "message %zu needs a string 'role'", i);
            break;
        }
        const char *r = json_string_value(role);
        if (strcmp(r, "developer") == 0) r = "system";
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")) {
            ok = srv_bad(e, 400, "invalid_request_error", "message %zu: role '%s' is not supported (system, developer, user, assistant)", i, r);
            break;
        }
        cm[i].role = r;
        if (json_is_string(content)) {
            cm[i].content = json_string_value(content);
        } else if (!content || json_is_null(content)) {
            cm[i].content = "";
        } else if (json_is_array(content)) { /* parts: text, and images (their place marked for lv_mm_tokenize) */
            size_t len = 0, k;
            json_t *part;
            const size_t mlen = strlen(LV_MEDIA_MARKER);
            json_array_foreach(content, k, part) {
                json_t *ty = json_object_get(part, "type"), *tx = json_object_get(part, "text");
                const char *t = json_is_string(ty) ? json_string_value(ty) : NULL;
                if (t && strcmp(t, "image_url") == 0) {
                    json_t *iu = json_object_get(part, "image_url"), *u = json_is_object(iu) ? json_object_get(iu, "url") : iu;
                    if (!json_is_string(u)) {
                        ok = srv_bad(e, 400, "invalid_request_error", "message %zu: an image_url part needs 'image_url': {'url': '...'}", i);
                        break;
                    }
                    if (!(ok = add_image(g, json_string_value(u), json_string_length(u), true, e))) break;
                    len += mlen;
                    continue;
                }
                if (!t || strcmp(t, "text") != 0) {
                    ok = srv_bad(e, t ? 501 : 400, t ? "not_supported_error" : "invalid_request_error",
                             "message %zu: only text and image_url content parts are supported", i);
                    break;
                }
                if (!json_is_string(tx)) {
                    ok = srv_bad(e, 400, "invalid_request_error", "message %zu: a text part needs a string 'text'", i);
                    break;
                }
                len += json_string_length(tx);
            }
            if (!ok) break;
            char *cat = malloc(len + 1);
            if (!cat) {
                ok = srv_bad(e, 500, "server_error", "out of memory");
                break;
            }
            size_t off = 0;
            json_array_foreach(content, k, part) {
                json_t *tx = json_object_get(part, "text");
                if (strcmp(json_string_value(json_object_get(part, "type")), "image_url") == 0) {
                    memcpy(cat + off, LV_MEDIA_MARKER, mlen);
                    off += mlen;
                    continue;
                }
                memcpy(cat + off, json_string_value(tx), json_string_length(tx));
                off += json_string_length(tx);
            }
            cat[off] = 0;
            owned[i] = cat;
            cm[i].content = cat;
        } else {
            ok = srv_bad(e, 400, "invalid_request_error", "message %zu: 'content' must be a string or an array of parts", i);
        }
    }
    if (ok) {
        int64_t need = lv_chat_apply_template(S->model, S->chat_template, cm, n, true, NULL, 0);
        if (need == INT32_MIN) ok = srv_bad(e, 500, "server_error", "chat template: %s", lv_last_error());
        else {
            need = need < 0 ? -need : need;
            char *text = malloc((size_t)need + 1);
            if (!text) ok = srv_bad(e, 500, "server_error", "out of memory");
            else {
                lv_chat_apply_template(S->model, S->chat_template, cm, n, true, text, need + 1);
                if (g->n_images > 0) { /* tokenized with the images, once they are encoded */
                    g->mm_text = text;
                    text = NULL;
                } else {
                    g->prompt = srv_tokenize(S, text, (size_t)need, true, true, &g->n_prompt, e);
                    ok = g->prompt != NULL;
                }
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
static bool read_gen(const srv_parse_ctx *S, json_t *body, srv_gen_req *g, srv_req_err *e) {
    g->n_predict = -1;
    g->sp = lv_sampler_default_params(); /* llama.cpp's defaults: temp 0.8, top-k 40, top-p 0.95, min-p 0.05 */
    static atomic_ullong seed_ctr;
    g->sp.seed = (uint64_t)time(NULL) * 6364136223846793005ull + atomic_fetch_add(&seed_ctr, 1) * 1442695040888963407ull;
    double temp = g->sp.temp, top_p = g->sp.top_p, min_p = g->sp.min_p;
    int64_t top_k = g->sp.top_k, seed = -1, n = 1, last_n = g->sp.penalty_last_n;
    double freq = 0, pres = 0, repeat = 1;
    if (!srv_get_number(body, "temperature", 0, 100, &temp, e) || !srv_get_number(body, "top_p", 0, 1, &top_p, e) ||
        !srv_get_number(body, "min_p", 0, 1, &min_p, e) || !srv_get_int(body, "top_k", 0, INT32_MAX, &top_k, e) ||
        !srv_get_int(body, "seed", INT64_MIN, INT64_MAX, &seed, e) ||
        !srv_get_bool(body, "stream", &g->stream, e) || !srv_get_bool(body, "ignore_eos", &g->ignore_eos, e) ||
        !srv_get_bool(body, "return_tokens", &g->return_tokens, e))
        return false;
    /* penalties: OpenAI's ranges; llama.cpp's repeat_penalty (1 or 0: off) over repeat_last_n tokens (-1: the context, 0: off) */
    if (!srv_get_number(body, "frequency_penalty", -2, 2, &freq, e) || !srv_get_number(body, "presence_penalty", -2, 2, &pres, e) ||
        !srv_get_number(body, "repeat_penalty", 0, 10, &repeat, e) || !srv_get_int(body, "repeat_last_n", -1, INT32_MAX, &last_n, e))
        return false;
    g->sp.penalty_freq = (float)freq;
    g->sp.penalty_present = (float)pres;
    g->sp.penalty_repeat = (float)repeat;
    g->sp.penalty_last_n = (int32_t)last_n;
    /* choices: on the OpenAI routes, at most one per slot (llama.cpp: 1..n_parallel) */
    const int max_n = S && S->max_n > 0 ? S->max_n : 1;
    if (g->kind == SRV_NATIVE) {
        if (!srv_get_int(body, "n", 1, 1, &n, e)) return false;
    } else if (!srv_get_int(body, "n", 1, max_n, &n, e)) {
        return srv_bad(e, 400, "invalid_request_error", "'n' must be an integer in [1, %d] (this server's slots)", max_n);
    }
    g->n = (int)n;
    /* logprobs (of the raw softmax, as llama-server and OpenAI report them) */
    json_t *lp = json_object_get(body, "logprobs");
    int64_t n_top = 0;
    if (g->kind == SRV_CHAT) {
        if (!srv_get_bool(body, "logprobs", &g->logprobs, e) || !srv_get_int(body, "top_logprobs", 0, LV_SRV_MAX_TOP_LOGPROBS, &n_top, e)) return false;
        json_t *tl = json_object_get(body, "top_logprobs");
        if (tl && !json_is_null(tl) && !g->logprobs)
            return srv_bad(e, 400, "invalid_request_error", "'top_logprobs' needs 'logprobs': true");
    } else if (g->kind == SRV_CMPL) {
        if (lp && !json_is_null(lp) && !json_is_false(lp)) {
            if (!json_is_integer(lp) || json_integer_value(lp) < 0 || json_integer_value(lp) > LV_SRV_MAX_TOP_LOGPROBS)
                return srv_bad(e, 400, "invalid_request_error", "'logprobs' must be an integer in [0, %d]", LV_SRV_MAX_TOP_LOGPROBS);
            g->logprobs = true;
            n_top = json_integer_value(lp);
        }
    } else {
        if (!srv_get_int(body, "n_probs", 0, LV_SRV_MAX_TOP_LOGPROBS, &n_top, e)) return false;
        g->logprobs = n_top > 0;
    }
    g->n_top = (int32_t)n_top;
    const char *cap_keys[] = {"max_completion_tokens", "max_tokens", "n_predict"};
    for (int k = 0; k < 3; k++) {
        int64_t v = -2;
        if (!srv_get_int(body, cap_keys[k], -1, INT32_MAX, &v, e)) return false;
        if (v != -2 && g->n_predict < 0) g->n_predict = v;
    }
    int64_t t_max_ms = 0;
    if (!srv_get_int(body, "t_max_predict_ms", 0, INT32_MAX, &t_max_ms, e)) return false;
    g->max_generate_s = (double)t_max_ms / 1000.0;
    const char *unsupported[] = {"tools", "functions", "response_format", "grammar", "json_schema", "suffix"};
    for (size_t k = 0; k < sizeof(unsupported) / sizeof(*unsupported); k++) {
        json_t *v = json_object_get(body, unsupported[k]);
        if (v && !json_is_null(v) && !(json_is_array(v) && json_array_size(v) == 0))
            return srv_bad(e, 501, "not_supported_error", "'%s' is not supported yet", unsupported[k]);
    }
    if (json_is_true(json_object_get(body, "echo"))) return srv_bad(e, 501, "not_supported_error", "'echo' is not supported");
    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return srv_bad(e, 400, "invalid_request_error", "'stream_options' must be an object");
        if (!srv_get_bool(so, "include_usage", &g->include_usage, e)) return false;
    }
    json_t *stop = json_object_get(body, "stop");
    if (json_is_string(stop)) {
        if (json_string_length(stop)) g->stop[g->n_stop++] = json_string_value(stop);
    } else if (json_is_array(stop)) {
        if (json_array_size(stop) > 16) return srv_bad(e, 400, "invalid_request_error", "at most 16 stop strings");
        size_t k;
        json_t *s;
        json_array_foreach(stop, k, s) {
            if (!json_is_string(s)) return srv_bad(e, 400, "invalid_request_error", "'stop' must be a string or an array of strings");
            if (json_string_length(s) > 1024) return srv_bad(e, 400, "invalid_request_error", "a stop string is longer than 1024 bytes");
            if (json_string_length(s)) g->stop[g->n_stop++] = json_string_value(s);
        }
    } else if (stop && !json_is_null(stop)) {
        return srv_bad(e, 400, "invalid_request_error", "'stop' must be a string or an array of strings");
    }
    g->sp.temp = (float)temp;
    g->sp.top_p = (float)top_p;
    g->sp.min_p = (float)min_p;
    g->sp.top_k = (int32_t)top_k;
    if (seed >= 0) g->sp.seed = (uint64_t)seed;
    return true;
}

bool srv_parse_generation(const srv_parse_ctx *S, json_t *body, int kind, srv_gen_req *g, srv_req_err *e) {
    memset(g, 0, sizeof(*g));
    g->kind = kind;
    if (!read_gen(S, body, g, e)) return false;
    bool ok;
    if (kind == SRV_CHAT) {
        ok = read_messages(S, body, g, e);
    } else {
        json_t *p = json_object_get(body, kind == SRV_NATIVE && !json_object_get(body, "prompt") ? "content" : "prompt");
        json_t *mmd = kind == SRV_NATIVE ? json_object_get(body, "multimodal_data") : NULL;
        ok = true;
        if (mmd && !json_is_null(mmd)) { /* llama-server's: base64 images for the prompt's <__media__> markers */
            size_t k;
            json_t *im;
            ok = json_is_array(mmd) && json_is_string(p);
            if (!ok) srv_bad(e, 400, "invalid_request_error", "'multimodal_data' must be an array of base64 strings, with a string 'prompt'");
            json_array_foreach(mmd, k, im) {
                if (!ok) break;
                ok = json_is_string(im) ? add_image(g, json_string_value(im), json_string_length(im), false, e)
                                        : srv_bad(e, 400, "invalid_request_error", "'multimodal_data' must be an array of base64 strings");
            }
            if (ok && g->n_images > 0 && !(g->mm_text = strndup(json_string_value(p), json_string_length(p))))
                ok = srv_bad(e, 500, "server_error", "out of memory");
        }
        if (ok && !g->mm_text) ok = p ? read_prompt(S, p, g, e) : srv_bad(e, 400, "invalid_request_error", "'prompt' is required");
    }
    if (ok && g->n_prompt == 0 && !g->mm_text) ok = srv_bad(e, 400, "invalid_request_error", "the prompt is empty");
    return ok;
}

void srv_gen_req_clear(srv_gen_req *g) {
    free(g->prompt);
    g->prompt = NULL;
    g->n_prompt = 0;
    for (int i = 0; i < g->n_images; i++) free(g->image[i]);
    g->n_images = 0;
    free(g->mm_text);
    g->mm_text = NULL;
}
