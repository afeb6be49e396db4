/*
 * request.h: reading the JSON body of a `longview serve` request into what the engine takes
 * (tools/cmd_serve.c; docs/server.md): the prompt as tokens (a chat through the model's template),
 * sampling, limits, stop strings. Apart from the HTTP side so that the fuzzer can drive it
 * (fuzz/fuzz_serve_request.c). Errors come back as an HTTP status, an error type and a message.
 */
#ifndef LV_SERVE_REQUEST_H
#define LV_SERVE_REQUEST_H

#include "longview.h"

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { SRV_CHAT, SRV_CMPL, SRV_NATIVE }; /* /v1/chat/completions, /v1/completions, /completion */

typedef struct srv_parse_ctx {
    const lv_model *model;
    const char *chat_template; /* NULL: the model's */
    int max_messages;
    int max_n;                 /* the largest 'n' (choices per request): the slots */
} srv_parse_ctx;

typedef struct srv_gen_req {
    int kind;
    lv_token *prompt;          /* malloc'd; srv_gen_req_clear frees it */
    int32_t n_prompt;
    int64_t n_predict;         /* -1: the default */
    lv_sampler_params sp;
    bool stream, include_usage, ignore_eos, return_tokens;
    const char *stop[16];      /* point into the JSON body */
    int n_stop;
    double max_generate_s;     /* t_max_predict_ms / 1000; 0: none */
    bool logprobs;             /* chat logprobs: true, legacy logprobs: N, native n_probs: N > 0 */
    int32_t n_top;             /* top logprobs per token, 0..LV_SRV_MAX_TOP_LOGPROBS */
    int n;                     /* choices (1..max_n; 1 on /completion) */
    /* images: chat content parts {"type": "image_url", "image_url": {"url": "data:...;base64,..."}}
     * and /completion's "multimodal_data" (base64 strings), decoded to their file bytes (malloc'd).
     * With images the prompt is not tokenized here: prompt stays NULL and mm_text (malloc'd) is
     * the text with LV_MEDIA_MARKER where each image goes (chat: the template applied), for
     * lv_mm_tokenize once the images are encoded. */
#define SRV_MAX_IMAGES 16
    uint8_t *image[SRV_MAX_IMAGES];
    size_t image_size[SRV_MAX_IMAGES];
    int n_images;
    char *mm_text;
} srv_gen_req;

/* An error found while reading a request: status, type, message. */
typedef struct srv_req_err {
    unsigned status;
    const char *type;
    char msg[512];
} srv_req_err;

/* Fill e and return false. */
bool srv_bad(srv_req_err *e, unsigned status, const char *type, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Optional fields: absent or null leaves *out as it is; a wrong type or range is an error. */
bool srv_get_number(json_t *o, const char *key, double lo, double hi, double *out, srv_req_err *e);
bool srv_get_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out, srv_req_err *e);
bool srv_get_bool(json_t *o, const char *key, bool *out, srv_req_err *e);
/* Nesting depth of a JSON text, counted without parsing (strings skipped). */
int srv_json_depth(const char *s, size_t n);
/* The bytes of a base64 text (RFC 4648, padding optional, no other characters), malloc'd; NULL
 * when it is not base64 (or empty). */
uint8_t *srv_base64_decode(const char *s, size_t n, size_t *out_n);
/* Tokens of a text (malloc'd), or NULL with e set. */
lv_token *srv_tokenize(const srv_parse_ctx *S, const char *text, size_t len, bool add_special, bool parse_special, int32_t *n,
                       srv_req_err *e);
/* Read a generation request of the given kind. On false, e says why (and g holds nothing to free
 * beyond what srv_gen_req_clear frees). */
bool srv_parse_generation(const srv_parse_ctx *S, json_t *body, int kind, srv_gen_req *g, srv_req_err *e);
void srv_gen_req_clear(srv_gen_req *g);

#endif
