/*
 * tokens.c: the public tokenizer API (longview.h) on a model: each call hands the model's
 * vocabulary to the tokenizer module (tokenizer/tokenizer.h), which never sees a model.
 */
#include "model/model.h"

#include "core/core.h"

#include <limits.h>

/* the model's vocabulary, or NULL with the error set */
static const lv_vocab *vocab_of(const lv_model *model) {
    if (!model) {
        lv_error(LV_ERR_INVALID_ARG, "model is NULL");
        return NULL;
    }
    const lv_vocab *v = lv_model_vocab(model);
    if (!v) lv_error(LV_ERR_INVALID_ARG, "this model has no tokenizer");
    return v;
}

/* the model's vocabulary or NULL, no error (the special-token queries answer -1 / false) */
static const lv_vocab *vocab_or_null(const lv_model *model) { return model ? lv_model_vocab(model) : NULL; }

int32_t lv_tokenize(const lv_model *model, const char *text, int64_t len, lv_token *tokens, int32_t n_tokens_max,
                    bool add_special, bool parse_special) {
    const lv_vocab *v = vocab_of(model);
    if (!v) return INT32_MIN;
    return lv_vocab_tokenize(v, text, len, tokens, n_tokens_max, add_special, parse_special);
}

int32_t lv_token_to_piece(const lv_model *model, lv_token token, char *buf, int32_t buf_size, bool render_special) {
    const lv_vocab *v = vocab_of(model);
    if (!v) return INT32_MIN;
    return lv_vocab_token_to_piece(v, token, buf, buf_size, render_special);
}

int64_t lv_detokenize(const lv_model *model, const lv_token *tokens, int32_t n_tokens, char *buf, int64_t buf_size,
                      bool remove_leading_space, bool render_special) {
    const lv_vocab *v = vocab_of(model);
    if (!v) return INT32_MIN;
    return lv_vocab_detokenize(v, tokens, n_tokens, buf, buf_size, remove_leading_space, render_special);
}

lv_status lv_detok_stream_create(const lv_model *model, lv_detok_stream **out) {
    if (!out) return lv_error(LV_ERR_INVALID_ARG, "lv_detok_stream_create: out is NULL");
    *out = NULL;
    const lv_vocab *v = vocab_of(model);
    if (!v) return LV_ERR_INVALID_ARG;
    return lv_vocab_detok_stream_create(v, out);
}

lv_token lv_token_bos(const lv_model *model) { return lv_vocab_bos(vocab_or_null(model)); }
lv_token lv_token_eos(const lv_model *model) { return lv_vocab_eos(vocab_or_null(model)); }
lv_token lv_token_eot(const lv_model *model) { return lv_vocab_eot(vocab_or_null(model)); }
lv_token lv_token_pad(const lv_model *model) { return lv_vocab_pad(vocab_or_null(model)); }
lv_token lv_token_nl(const lv_model *model) { return lv_vocab_nl(vocab_or_null(model)); }
bool lv_token_is_eog(const lv_model *model, lv_token token) { return lv_vocab_is_eog(vocab_or_null(model), token); }
bool lv_token_is_control(const lv_model *model, lv_token token) { return lv_vocab_is_control(vocab_or_null(model), token); }
bool lv_tokenizer_add_bos(const lv_model *model) { return lv_vocab_add_bos(vocab_or_null(model)); }
bool lv_tokenizer_add_eos(const lv_model *model) { return lv_vocab_add_eos(vocab_or_null(model)); }
const char *lv_token_text(const lv_model *model, lv_token token, int32_t *len) {
    return lv_vocab_token_text(vocab_or_null(model), token, len);
}

int64_t lv_chat_apply_template(const lv_model *model, const char *tmpl, const lv_chat_message *msgs, size_t n_msgs,
                               bool add_assistant, char *buf, int64_t buf_size) {
    return lv_vocab_chat_apply(vocab_or_null(model), tmpl, msgs, n_msgs, add_assistant, buf, buf_size);
}
