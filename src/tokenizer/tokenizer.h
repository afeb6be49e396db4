/*
 * tokenizer.h: the tokenizer module's interface to the rest of the library (implementation:
 * vocab*.c, unicode*.c, chat.c; vocab_impl.h is what those files share).
 *
 * The module src/tokenizer/ (docs/architecture.md):
 *   Owns:  vocabularies from GGUF tokenizer metadata (SentencePiece, byte-level BPE and its pre-
 *          tokenizers), tokenize / detokenize, tokenizer.json import, chat templates.
 *   Never: sees a model (model/tokens.c hands it the model's vocabulary), or samples.
 *
 * A vocabulary is read from a GGUF's `tokenizer.ggml.*` metadata the way llama.cpp reads it.
 * The model module owns the GGUF mapping and keeps it open for the model's lifetime, so a
 * vocabulary may point into the mapped file.
 */
#ifndef LV_TOKENIZER_H
#define LV_TOKENIZER_H

#include "longview.h"

#include "gguf/gguf.h"

typedef struct lv_vocab lv_vocab;

/* Read the tokenizer metadata of g. A file without tokenizer metadata yields an error
 * (LV_ERR_FORMAT) naming the missing key. */
lv_status lv_vocab_load(const lv_gguf *g, lv_vocab **out);
void      lv_vocab_free(lv_vocab *v);
int32_t   lv_vocab_n_tokens(const lv_vocab *v);
/* One-line summary for `longview info` ("llama (SPM), 32000 tokens, bos 1, eos 2"). */
void      lv_vocab_describe(const lv_vocab *v, char *buf, size_t buf_size);

/* Turn a Hugging Face tokenizer.json (+ tokenizer_config.json beside it, if present) into GGUF
 * tokenizer metadata on w (`tokenizer.ggml.*`, `tokenizer.chat_template`), as llama.cpp's
 * convert_hf_to_gguf.py would. *n_vocab receives the number of tokens. */
lv_status lv_vocab_json_to_gguf(const char *tokenizer_json_path, lv_gguf_writer *w, int64_t *n_vocab);

/* The public tokenizer API (lv_tokenize, lv_token_bos, ... in longview.h) takes a model: the
 * model module (model/tokens.c) hands its vocabulary to the functions below, which are the same
 * calls on a vocabulary directly, so this module never sees a model. */
int32_t lv_vocab_tokenize(const lv_vocab *v, const char *text, int64_t len, lv_token *tokens, int32_t n_tokens_max,
                          bool add_special, bool parse_special);
int32_t lv_vocab_token_to_piece(const lv_vocab *v, lv_token token, char *buf, int32_t buf_size, bool render_special);
int64_t lv_vocab_detokenize(const lv_vocab *v, const lv_token *tokens, int32_t n_tokens, char *buf, int64_t buf_size,
                            bool remove_leading_space, bool render_special);
/* BPE merge rank of (left, right), or -1. */
int32_t lv_bpe_rank(const lv_vocab *v, const char *l, size_t ll, const char *r, size_t rl);
/* The tokenizer.chat_template string (NUL-terminated) or NULL. */
const char *lv_vocab_chat_template(const lv_vocab *v);
/* Special tokens and flags (-1 / false / NULL for a NULL vocabulary or an out-of-range token). */
lv_token    lv_vocab_bos(const lv_vocab *v);
lv_token    lv_vocab_eos(const lv_vocab *v);
lv_token    lv_vocab_eot(const lv_vocab *v);
lv_token    lv_vocab_pad(const lv_vocab *v);
lv_token    lv_vocab_nl(const lv_vocab *v);
bool        lv_vocab_is_eog(const lv_vocab *v, lv_token token);
bool        lv_vocab_is_control(const lv_vocab *v, lv_token token);
bool        lv_vocab_add_bos(const lv_vocab *v);
bool        lv_vocab_add_eos(const lv_vocab *v);
const char *lv_vocab_token_text(const lv_vocab *v, lv_token token, int32_t *len);
lv_status   lv_vocab_detok_stream_create(const lv_vocab *v, lv_detok_stream **out);
/* lv_chat_apply_template with v's template when tmpl is NULL (chatml when v is NULL or has none) */
int64_t lv_vocab_chat_apply(const lv_vocab *v, const char *tmpl, const lv_chat_message *msgs, size_t n_msgs, bool add_assistant,
                            char *buf, int64_t buf_size);

#endif
