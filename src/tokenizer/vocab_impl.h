/*
 * vocab_impl.h: the tokenizer's internal structures, shared by vocab.c (loading, special
 * tokens, the tokenize/detokenize driver), vocab_spm.c (SentencePiece), vocab_bpe.c (byte-level
 * BPE and its pre-tokenizers) and chat.c. Not part of any API.
 *
 * Every behaviour here follows llama.cpp's src/llama-vocab.cpp (the oracle): the same token
 * attributes, the same special-token detection by text, the same SPM and BPE merge orders and
 * the same pre-tokenizer splits, so that ids agree byte for byte.
 */
#ifndef LV_VOCAB_IMPL_H
#define LV_VOCAB_IMPL_H

#include "tokenizer/tokenizer.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum lv_vocab_type {
    LV_VOCAB_TYPE_SPM = 1, /* tokenizer.ggml.model = "llama" */
    LV_VOCAB_TYPE_BPE = 2, /* tokenizer.ggml.model = "gpt2" */
} lv_vocab_type;

/* Token attributes: the bit values of llama.cpp's llama_token_attr. */
enum {
    LV_ATTR_UNKNOWN      = 1 << 0,
    LV_ATTR_UNUSED       = 1 << 1,
    LV_ATTR_NORMAL       = 1 << 2,
    LV_ATTR_CONTROL      = 1 << 3,
    LV_ATTR_USER_DEFINED = 1 << 4,
    LV_ATTR_BYTE         = 1 << 5,
    LV_ATTR_NORMALIZED   = 1 << 6,
    LV_ATTR_LSTRIP       = 1 << 7,
    LV_ATTR_RSTRIP       = 1 << 8,
    LV_ATTR_SINGLE_WORD  = 1 << 9,
};

typedef struct lv_vocab_token {
    const char *text; /* into the GGUF mapping (or the vocab's arena): not NUL-terminated */
    uint32_t len;
    uint32_t attr;
    float score;
    uint32_t piece_off; /* the rendered piece (special = true) in v->pieces */
    uint32_t piece_len;
} lv_vocab_token;

/* Open-addressing hash from token text to id. */
typedef struct lv_token_map {
    int32_t *slots; /* (cap) id, or -1 */
    uint64_t mask;
} lv_token_map;

typedef struct lv_merge {
    const char *left, *right;
    uint32_t llen, rlen;
    int32_t rank;
} lv_merge;

typedef struct lv_merge_map {
    lv_merge *merges;  /* (n) */
    int32_t *slots;    /* (cap) index into merges, or -1 */
    uint64_t mask;
    int64_t n;
} lv_merge_map;

/* One pre-tokenizer regex: a hand-written splitter (as llama.cpp uses for the most common
 * expressions) or a PCRE2 program run on the "collapsed" text or on the codepoints. */
typedef enum lv_split_kind {
    LV_SPLIT_PCRE_COLLAPSED = 0,
    LV_SPLIT_PCRE_WIDE,
    LV_SPLIT_GPT2,
    LV_SPLIT_LLAMA3,
    LV_SPLIT_QWEN2,
    LV_SPLIT_QWEN35,
    LV_SPLIT_NEWLINES,
} lv_split_kind;

#define LV_MAX_REGEX 8

typedef struct lv_pretok {
    const char *name;         /* the tokenizer.ggml.pre value family, e.g. "llama3" */
    int n;
    lv_split_kind kind[LV_MAX_REGEX];
    void *code[LV_MAX_REGEX]; /* pcre2_code_32 * for the PCRE kinds */
    bool need_collapse;
    bool raw_utf8;            /* BPE over raw UTF-8 with <0xXX> byte fallback, not GPT-2's byte characters (gemma4) */
    bool nl_words;            /* a word of newlines only that is a token is taken whole (gemma4) */
} lv_pretok;

struct lv_vocab {
    lv_vocab_type type;
    const char *model_name; /* tokenizer.ggml.model: "llama", "gpt2" or "gemma4" */
    int32_t n_tokens;
    lv_vocab_token *tokens; /* (n_tokens) */
    lv_token_map map;
    lv_merge_map merges;
    lv_pretok pre;
    char pre_name[64];
    char *arena;            /* texts for empty tokens ("[EMPTY_i]") */
    char *pieces;           /* rendered pieces of all tokens */

    lv_token bos, eos, eot, eom, unk, sep, pad, mask, nl;
    lv_token fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;
    lv_token *eog;          /* sorted */
    int32_t n_eog;
    lv_token *special;      /* control / user-defined / unknown tokens, longest text first */
    int32_t n_special;
    uint8_t special_first[32]; /* bitmap of the first bytes of special texts */

    bool add_space_prefix, add_bos, add_eos, ignore_merges, clean_spaces;
    bool remove_extra_whitespaces, escape_whitespaces;
    /* SPM: no token has U+2581 right after another character, so no merge can cross the point
     * before a U+2581 that follows a non-U+2581 character (vocab_spm.c splits there) */
    bool spm_split_at_space;

    const char *chat_template; /* tokenizer.chat_template (NUL-terminated copy) or NULL */
};

/* ---- lookup tables (vocab_map.c), shared by the loader and the tokenizers ---- */
lv_status lv_vocab_map_build(lv_vocab *v); /* the text -> id map of v->tokens; a duplicate text is an error */
lv_token lv_vocab_find(const lv_vocab *v, const char *text, size_t len); /* -1 if absent */
lv_status lv_merge_map_init(lv_merge_map *mm, uint64_t n); /* room for n merges */
void      lv_merge_map_add(lv_merge_map *mm, lv_merge m);  /* a pair already present keeps its first rank */
/* SPM byte fallback: "<0xXX>", else the one-byte text; -1 if neither. */
lv_token lv_vocab_byte_to_token(const lv_vocab *v, uint8_t byte);

/* A growable token list. */
typedef struct lv_tokbuf {
    lv_token *ids;
    int64_t n, cap;
    bool oom;
} lv_tokbuf;
void lv_tokbuf_push(lv_tokbuf *b, lv_token id);

/* ---- SentencePiece (vocab_spm.c) ---- */
/* Tokenize one already-escaped text fragment (spaces replaced by U+2581). */
lv_status lv_spm_tokenize(const lv_vocab *v, const char *text, size_t len, lv_tokbuf *out);
/* true if no token contains U+2581 right after a different character (see spm_split_at_space) */
bool lv_spm_can_split(const lv_vocab *v);

/* ---- byte-level BPE (vocab_bpe.c) ---- */
/* Set up v->pre for tokenizer.ggml.pre = name (NULL or "" = default). Also sets the flags that
 * llama.cpp ties to the pre-tokenizer (clean_spaces, ignore_merges, add_bos). */
lv_status lv_bpe_pretok_init(lv_vocab *v, const char *name);
void      lv_bpe_pretok_free(lv_pretok *p);
lv_status lv_bpe_tokenize(const lv_vocab *v, const char *text, size_t len, lv_tokbuf *out);
/* Map a byte-level BPE token text back to bytes (llama.cpp's llama_decode_text) into out if the
 * result fits cap bytes. Returns the length of the result (whether or not it was written). */
size_t    lv_bpe_decode_text(const char *text, size_t len, char *out, size_t cap);
/* The byte-level character (UTF-8, 1-2 bytes) that stands for byte b; returns its length. */
int       lv_bpe_byte_char(uint8_t b, char *out);

#endif
