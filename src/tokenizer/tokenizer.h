/*
 * vocab.h: the tokenizer module's internal interface (implementation: vocab*.c).
 *
 * A vocabulary is read from a GGUF's `tokenizer.ggml.*` metadata the way llama.cpp reads it.
 * The model module owns the GGUF mapping and keeps it open for the model's lifetime, so a
 * vocabulary may point into the mapped file.
 */
#ifndef LV_VOCAB_H
#define LV_VOCAB_H

#include "gguf/gguf.h"
#include "longview.h"

typedef struct lv_vocab lv_vocab;

/* Read the tokenizer metadata of g. A file without tokenizer metadata yields an error
 * (LV_ERR_FORMAT) naming the missing key. */
lv_status lv_vocab_load(const lv_gguf *g, lv_vocab **out);
void      lv_vocab_free(lv_vocab *v);
int32_t   lv_vocab_n_tokens(const lv_vocab *v);
/* One-line summary for `longview info` ("llama (SPM), 32000 tokens, bos 1, eos 2"). */
void      lv_vocab_describe(const lv_vocab *v, char *buf, size_t buf_size);

/* The vocabulary of a loaded model (NULL if it has none). Implemented in model.c. */
const lv_vocab *lv_model_vocab(const lv_model *model);

/* Turn a Hugging Face tokenizer.json (+ tokenizer_config.json beside it, if present) into GGUF
 * tokenizer metadata on w (`tokenizer.ggml.*`, `tokenizer.chat_template`), as llama.cpp's
 * convert_hf_to_gguf.py would. *n_vocab receives the number of tokens. */
lv_status lv_vocab_json_to_gguf(const char *tokenizer_json_path, lv_gguf_writer *w, int64_t *n_vocab);
/* genmodel.c: write the tokenizer.* keys of vocab_path (a vocabulary GGUF, a tokenizer.json, or
 * "builtin:bytes") into w; *n_vocab receives its token count. Used by gen-model and the trainer. */
lv_status lv_genmodel_add_vocab(lv_gguf_writer *w, const char *vocab_path, int64_t *n_vocab);

/* The same as lv_tokenize / lv_token_to_piece / lv_detokenize, on a vocabulary directly. */
int32_t lv_vocab_tokenize(const lv_vocab *v, const char *text, int64_t len, lv_token *tokens, int32_t n_tokens_max,
                          bool add_special, bool parse_special);
int32_t lv_vocab_token_to_piece(const lv_vocab *v, lv_token token, char *buf, int32_t buf_size, bool render_special);
int64_t lv_vocab_detokenize(const lv_vocab *v, const lv_token *tokens, int32_t n_tokens, char *buf, int64_t buf_size,
                            bool remove_leading_space, bool render_special);
/* BPE merge rank of (left, right), or -1. */
int32_t lv_bpe_rank(const lv_vocab *v, const char *l, size_t ll, const char *r, size_t rl);
/* The tokenizer.chat_template string (NUL-terminated) or NULL. */
const char *lv_vocab_chat_template(const lv_vocab *v);

#endif
