/*
 * vocab.c: placeholder until the tokenizer lands (issue 3): every call reports that the
 * tokenizer is not available. Replaced wholesale by the real implementation.
 */
#include "vocab.h"

#include "lv_internal.h"

#include <limits.h>

struct lv_vocab {
    int32_t n_tokens;
};

/* Only the token count is read, so that models load; tokenizing reports "not implemented". */
lv_status lv_vocab_load(const lv_gguf *g, lv_vocab **out) {
    *out = NULL;
    int64_t i = lv_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (i < 0 || lv_gguf_kv_type(g, i) != LV_GGUF_ARRAY || lv_gguf_arr_n(g, i) > INT32_MAX)
        return lv_error(LV_ERR_FORMAT, "key 'tokenizer.ggml.tokens' is missing");
    lv_vocab *v = lv_calloc(1, sizeof(*v));
    if (!v) return LV_ERR_NOMEM;
    v->n_tokens = (int32_t)lv_gguf_arr_n(g, i);
    *out = v;
    return LV_OK;
}
void lv_vocab_free(lv_vocab *v) { lv_free(v); }
int32_t lv_vocab_n_tokens(const lv_vocab *v) { return v->n_tokens; }
void lv_vocab_describe(const lv_vocab *v, char *buf, size_t n) { (void)v; if (n) buf[0] = 0; }
lv_status lv_vocab_json_to_gguf(const char *p, lv_gguf_writer *w, int64_t *n) {
    (void)p; (void)w; (void)n;
    return lv_error(LV_ERR_UNSUPPORTED, "tokenizer.json import not implemented yet");
}
int32_t lv_tokenize(const lv_model *m, const char *t, int64_t l, lv_token *o, int32_t n, bool a, bool p) {
    (void)m; (void)t; (void)l; (void)o; (void)n; (void)a; (void)p;
    lv_error(LV_ERR_UNSUPPORTED, "tokenizer not implemented yet");
    return INT32_MIN;
}
int32_t lv_token_to_piece(const lv_model *m, lv_token t, char *b, int32_t n, bool r) {
    (void)m; (void)t; (void)b; (void)n; (void)r;
    return INT32_MIN;
}
int64_t lv_detokenize(const lv_model *m, const lv_token *t, int32_t n, char *b, int64_t bs, bool a, bool r) {
    (void)m; (void)t; (void)n; (void)b; (void)bs; (void)a; (void)r;
    return INT32_MIN;
}
lv_token lv_token_bos(const lv_model *m) { (void)m; return -1; }
lv_token lv_token_eos(const lv_model *m) { (void)m; return -1; }
lv_token lv_token_eot(const lv_model *m) { (void)m; return -1; }
bool lv_token_is_eog(const lv_model *m, lv_token t) { (void)m; (void)t; return false; }
lv_status lv_detok_stream_create(const lv_model *m, lv_detok_stream **o) { (void)m; *o = NULL; return LV_ERR_UNSUPPORTED; }
void lv_detok_stream_free(lv_detok_stream *d) { (void)d; }
lv_status lv_detok_stream_push(lv_detok_stream *d, lv_token t, const char **o, int64_t *n) { (void)d; (void)t; (void)o; (void)n; return LV_ERR_UNSUPPORTED; }
lv_status lv_detok_stream_flush(lv_detok_stream *d, const char **o, int64_t *n) { (void)d; (void)o; (void)n; return LV_ERR_UNSUPPORTED; }
