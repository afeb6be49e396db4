/*
 * vocab.c: the tokenizer module's core: loading a vocabulary from a GGUF's `tokenizer.ggml.*`
 * metadata (types, scores, attributes, special ids, the special-token detection by text that
 * llama.cpp applies), splitting a prompt around special tokens, the tokenize/detokenize driver,
 * token pieces and the streaming detokenizer.
 *
 * The SentencePiece merge loop lives in vocab_spm.c, byte-level BPE and its pre-tokenizers in
 * vocab_bpe.c, tokenizer.json import in vocab_json.c, chat templates in chat.c.
 *
 * Design notes (docs/tokenizer.md has the long version):
 *  - Token texts point into the GGUF mapping; a hash table maps text -> id.
 *  - Every token's rendered piece (special tokens rendered) is computed once at load, as
 *    llama.cpp's token-to-piece cache is, so decoding is a table lookup.
 *  - Nothing is global: a vocabulary is immutable after load and every call allocates its own
 *    scratch, so one vocabulary serves many threads.
 */
#define _GNU_SOURCE /* memmem */
#include "tokenizer/vocab_impl.h"

#include "core/core.h"
#include "tokenizer/unicode.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* -------------------------------------------------------------------------------------------
 * metadata helpers
 * ----------------------------------------------------------------------------------------- */

static bool key_str(const lv_gguf *g, const char *key, lv_gguf_str *out) {
    int64_t i = lv_gguf_find_key(g, key);
    if (i < 0 || lv_gguf_kv_type(g, i) != LV_GGUF_STRING) return false;
    *out = lv_gguf_get_str(g, i);
    return true;
}

static bool str_eq(lv_gguf_str s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

static void key_bool(const lv_gguf *g, const char *key, bool *out) {
    int64_t i = lv_gguf_find_key(g, key);
    bool b;
    if (i >= 0 && lv_gguf_get_bool(g, i, &b)) *out = b;
}

static bool tok_is(const lv_vocab *v, lv_token id, const char *lit) {
    size_t n = strlen(lit);
    return id >= 0 && v->tokens[id].len == n && memcmp(v->tokens[id].text, lit, n) == 0;
}

static lv_token find_lit(const lv_vocab *v, const char *lit) { return lv_vocab_find(v, lit, strlen(lit)); }

/* llama.cpp logs a warning when it has to mark a control-looking token as control. */
static void force_control(lv_vocab *v, lv_token id) {
    if (!(v->tokens[id].attr & LV_ATTR_CONTROL)) {
        LV_LOG_D("tokenizer: control-looking token %d '%.*s' was not control-type; marking it control", id,
                 (int)LV_MIN(v->tokens[id].len, 40), v->tokens[id].text);
        v->tokens[id].attr |= LV_ATTR_CONTROL;
    }
}

/* The first token (in candidate order) whose text is one of the candidates. llama.cpp takes the
 * first match in its hash map's iteration order; when a vocabulary holds several candidates
 * (Qwen: <|im_end|> and <|endoftext|>; Llama 3: <|eot_id|> and <|end_of_text|>) the list order
 * below reproduces its choice for every vocabulary we test. */
static void detect_by_text(lv_vocab *v, lv_token *id, const char *const *cands, size_t n) {
    if (*id >= 0) return;
    for (size_t k = 0; k < n; k++) {
        lv_token t = find_lit(v, cands[k]);
        if (t >= 0) {
            *id = t;
            force_control(v, t);
            return;
        }
    }
}

static const char *const k_eot_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                          "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
                                          ("<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"),
                                          "<end_of_utterance>"};
static const char *const k_eom_texts[] = {"<|eom_id|>"};
static const char *const k_fim_pre_texts[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                                              ("<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>"), "<PRE>",
                                              "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>"};
static const char *const k_fim_suf_texts[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                                              ("<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>"), "<SUF>",
                                              "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>"};
static const char *const k_fim_mid_texts[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                                              ("<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>"), "<MID>",
                                              "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>"};
static const char *const k_fim_pad_texts[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"};
static const char *const k_fim_rep_texts[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"};
static const char *const k_fim_sep_texts[] = {"<|file_sep|>"};
/* texts that end generation */
static const char *const k_eog_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
                                          "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
                                          "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
                                          "<turn|>", "<|tool_response>",
                                          ("<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"), "[e~["};

static int cmp_tok(const void *a, const void *b) {
    lv_token x = *(const lv_token *)a, y = *(const lv_token *)b;
    return x < y ? -1 : x > y;
}

static lv_status eog_add(lv_vocab *v, lv_token id) {
    if (id < 0) return LV_OK;
    for (int32_t i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id) return LV_OK;
    lv_token *p = lv_realloc(v->eog, sizeof(lv_token) * (size_t)(v->n_eog + 1));
    if (!p) return LV_ERR_NOMEM;
    v->eog = p;
    v->eog[v->n_eog++] = id;
    return LV_OK;
}

static void eog_remove(lv_vocab *v, lv_token id) {
    for (int32_t i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id) {
            v->eog[i] = v->eog[--v->n_eog];
            return;
        }
}

/* -------------------------------------------------------------------------------------------
 * pieces
 * ----------------------------------------------------------------------------------------- */

/* Render token id as llama.cpp's token_to_piece(special = true) does into *buf (grown as
 * needed). Returns the length, or -1 when out of memory. */
static int64_t render_piece(const lv_vocab *v, lv_token id, char **buf, size_t *cap) {
    const lv_vocab_token *t = &v->tokens[id];
    uint32_t attr = t->attr;
    size_t need = (size_t)t->len + 8;
    bool bpe_text = (attr & LV_ATTR_NORMAL) && !(attr & (LV_ATTR_UNKNOWN | LV_ATTR_CONTROL | LV_ATTR_USER_DEFINED)) &&
                    v->type == LV_VOCAB_TYPE_BPE && !v->escape_whitespaces;
    if (bpe_text) need = lv_bpe_decode_text(t->text, t->len, NULL, 0);
    if (need > *cap) {
        char *p = lv_realloc(*buf, need);
        if (!p) return -1;
        *buf = p;
        *cap = need;
    }
    char *out = *buf;
    if (attr & (LV_ATTR_UNKNOWN | LV_ATTR_CONTROL | LV_ATTR_USER_DEFINED)) {
        memcpy(out, t->text, t->len);
        return t->len;
    }
    if (attr & LV_ATTR_NORMAL) {
        if (bpe_text) return (int64_t)lv_bpe_decode_text(t->text, t->len, out, *cap);
        /* SentencePiece: U+2581 -> space */
        size_t n = 0;
        for (uint32_t i = 0; i < t->len;) {
            if (i + 3 <= t->len && memcmp(t->text + i, "\xe2\x96\x81", 3) == 0) {
                out[n++] = ' ';
                i += 3;
            } else {
                out[n++] = t->text[i++];
            }
        }
        return (int64_t)n;
    }
    if (attr & LV_ATTR_BYTE) {
        /* "<0xXX>": the two characters after "<0x" as hex (as strtol would read them) */
        unsigned val = 0;
        for (uint32_t i = 3; i < 5 && i < t->len; i++) {
            char c = t->text[i];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0) break;
            val = val * 16 + (unsigned)d;
        }
        out[0] = (char)val;
        return 1;
    }
    return 0; /* unused / undefined tokens render as nothing */
}

static lv_status build_pieces(lv_vocab *v) {
    char *tmp = NULL;
    size_t cap = 0;
    uint64_t need = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        int64_t n = render_piece(v, i, &tmp, &cap);
        if (n < 0) goto oom;
        need += (uint64_t)n;
    }
    if (need >= UINT32_MAX) {
        lv_free(tmp);
        return lv_error(LV_ERR_FORMAT, "tokenizer: token texts too large (%llu bytes)", (unsigned long long)need);
    }
    v->pieces = lv_malloc((size_t)need + 1);
    if (!v->pieces) goto oom;
    uint32_t off = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        int64_t n = render_piece(v, i, &tmp, &cap);
        if (n < 0) goto oom;
        memcpy(v->pieces + off, tmp, (size_t)n);
        v->tokens[i].piece_off = off;
        v->tokens[i].piece_len = (uint32_t)n;
        off += (uint32_t)n;
    }
    lv_free(tmp);
    return LV_OK;
oom:
    lv_free(tmp);
    return LV_ERR_NOMEM;
}

/* -------------------------------------------------------------------------------------------
 * loading
 * ----------------------------------------------------------------------------------------- */

typedef struct special_sort {
    lv_token id;
    uint32_t len;
} special_sort;

static int cmp_special(const void *a, const void *b) {
    const special_sort *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1; /* longest first */
    return x->id < y->id ? -1 : x->id > y->id;
}

static lv_status read_special_id(const lv_gguf *g, const lv_vocab *v, const char *key, lv_token *id) {
    if (*id >= v->n_tokens) *id = -1; /* a default out of range is disabled */
    int64_t i = lv_gguf_find_key(g, key);
    if (i < 0) return LV_OK;
    int64_t val;
    if (!lv_gguf_get_i64(g, i, &val)) return lv_error(LV_ERR_FORMAT, "key '%s' must be an integer", key);
    if (val < 0 || val >= v->n_tokens) {
        LV_LOG_W("tokenizer: bad special token '%s' = %lld, using default id %d", key, (long long)val, *id);
        return LV_OK;
    }
    *id = (lv_token)val;
    return LV_OK;
}

static lv_status load_tokens(const lv_gguf *g, lv_vocab *v) {
    int64_t ti = lv_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (ti < 0) return lv_error(LV_ERR_FORMAT, "key 'tokenizer.ggml.tokens' is missing");
    if (lv_gguf_kv_type(g, ti) != LV_GGUF_ARRAY || lv_gguf_arr_type(g, ti) != LV_GGUF_STRING)
        return lv_error(LV_ERR_FORMAT, "key 'tokenizer.ggml.tokens' must be an array of strings");
    uint64_t n = lv_gguf_arr_n(g, ti);
    if (n == 0 || n > (uint64_t)INT32_MAX / 4)
        return lv_error(LV_ERR_FORMAT, "tokenizer.ggml.tokens has %llu entries", (unsigned long long)n);
    v->n_tokens = (int32_t)n;

    int64_t si = lv_gguf_find_key(g, "tokenizer.ggml.scores");
    if (si >= 0) {
        lv_gguf_type at = lv_gguf_kv_type(g, si) == LV_GGUF_ARRAY ? lv_gguf_arr_type(g, si) : LV_GGUF_TYPE_COUNT;
        if (at != LV_GGUF_FLOAT32 && at != LV_GGUF_INT32)
            return lv_error(LV_ERR_FORMAT, "key 'tokenizer.ggml.scores' must be an array of float32 or int32");
        if (lv_gguf_arr_n(g, si) < n)
            return lv_error(LV_ERR_FORMAT, "tokenizer.ggml.scores has %llu entries for %llu tokens",
                            (unsigned long long)lv_gguf_arr_n(g, si), (unsigned long long)n);
    }
    int64_t yi = lv_gguf_find_key(g, "tokenizer.ggml.token_type");
    if (yi >= 0) {
        if (lv_gguf_kv_type(g, yi) != LV_GGUF_ARRAY || lv_gguf_arr_type(g, yi) != LV_GGUF_INT32)
            return lv_error(LV_ERR_FORMAT, "key 'tokenizer.ggml.token_type' must be an array of int32");
        if (lv_gguf_arr_n(g, yi) < n)
            return lv_error(LV_ERR_FORMAT, "tokenizer.ggml.token_type has %llu entries for %llu tokens",
                            (unsigned long long)lv_gguf_arr_n(g, yi), (unsigned long long)n);
    }

    v->tokens = lv_calloc(n, sizeof(lv_vocab_token));
    if (!v->tokens) return LV_ERR_NOMEM;
    /* empty tokens get "[EMPTY_<id>]": size their arena first */
    size_t arena = 0;
    for (uint64_t i = 0; i < n; i++)
        if (lv_gguf_arr_str(g, ti, i).len == 0) arena += 24;
    if (arena) {
        v->arena = lv_malloc(arena);
        if (!v->arena) return LV_ERR_NOMEM;
    }
    size_t aoff = 0;
    const unsigned char *scores = si >= 0 ? lv_gguf_arr_data(g, si) : NULL;
    const unsigned char *types = yi >= 0 ? lv_gguf_arr_data(g, yi) : NULL;
    bool iscores = si >= 0 && lv_gguf_arr_type(g, si) == LV_GGUF_INT32;
    for (uint64_t i = 0; i < n; i++) {
        lv_vocab_token *t = &v->tokens[i];
        lv_gguf_str s = lv_gguf_arr_str(g, ti, i);
        if (s.len > UINT32_MAX / 8) return lv_error(LV_ERR_FORMAT, "token %llu is too long", (unsigned long long)i);
        if (s.len == 0) {
            LV_LOG_W("tokenizer: empty token at index %llu", (unsigned long long)i);
            int k = snprintf(v->arena + aoff, 24, "[EMPTY_%llu]", (unsigned long long)i);
            t->text = v->arena + aoff;
            t->len = (uint32_t)k;
            aoff += 24;
        } else {
            t->text = s.ptr;
            t->len = (uint32_t)s.len;
        }
        if (scores) {
            if (iscores) {
                int32_t x;
                memcpy(&x, scores + 4 * i, 4);
                t->score = (float)x;
            } else {
                memcpy(&t->score, scores + 4 * i, 4);
            }
        }
        t->attr = LV_ATTR_NORMAL;
        if (types) {
            int32_t ty;
            memcpy(&ty, types + 4 * i, 4);
            switch (ty) {
            case 1: t->attr = LV_ATTR_NORMAL; break;
            case 2: t->attr = LV_ATTR_UNKNOWN; break;
            case 3: t->attr = LV_ATTR_CONTROL; break;
            case 4: t->attr = LV_ATTR_USER_DEFINED; break;
            case 5: t->attr = LV_ATTR_UNUSED; break;
            case 6: t->attr = LV_ATTR_BYTE; break;
            default: t->attr = 0; break; /* undefined */
            }
        }
    }
    return lv_vocab_map_build(v);
}

static lv_status load_merges(const lv_gguf *g, lv_vocab *v) {
    int64_t mi = lv_gguf_find_key(g, "tokenizer.ggml.merges");
    if (mi < 0) return lv_error(LV_ERR_FORMAT, "key 'tokenizer.ggml.merges' is missing (a gpt2 tokenizer needs its merges)");
    if (lv_gguf_kv_type(g, mi) != LV_GGUF_ARRAY || lv_gguf_arr_type(g, mi) != LV_GGUF_STRING)
        return lv_error(LV_ERR_FORMAT, "key 'tokenizer.ggml.merges' must be an array of strings");
    uint64_t n = lv_gguf_arr_n(g, mi);
    if (n > (uint64_t)INT32_MAX / 4) return lv_error(LV_ERR_FORMAT, "tokenizer.ggml.merges has too many entries");
    if (lv_merge_map_init(&v->merges, n) != LV_OK) return LV_ERR_NOMEM;
    for (uint64_t r = 0; r < n; r++) {
        lv_gguf_str s = lv_gguf_arr_str(g, mi, r);
        /* "left right": the first space at index >= 1 splits (llama.cpp: word.find(' ', 1)) */
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        if (!sp) continue; /* llama.cpp files it under ("", ""), which no lookup can reach */
        lv_merge m = {s.ptr, sp + 1, (uint32_t)(sp - s.ptr), (uint32_t)(s.len - (uint64_t)(sp + 1 - s.ptr)), (int32_t)r};
        lv_merge_map_add(&v->merges, m);
    }
    return LV_OK;
}


static bool contains(lv_gguf_str hay, const char *needle) {
    size_t n = strlen(needle);
    if (hay.len < n) return false;
    for (uint64_t i = 0; i + n <= hay.len; i++)
        if (strncasecmp(hay.ptr + i, needle, n) == 0) return true;
    return false;
}

static int tokenize_internal(const lv_vocab *v, const char *text, int64_t len, bool add_special, bool parse_special,
                             lv_tokbuf *out);

lv_status lv_vocab_load(const lv_gguf *g, lv_vocab **out) {
    *out = NULL;
    lv_gguf_str model;
    if (lv_gguf_find_key(g, "tokenizer.ggml.model") < 0)
        return lv_error(LV_ERR_FORMAT, "key 'tokenizer.ggml.model' is missing");
    if (!key_str(g, "tokenizer.ggml.model", &model))
        return lv_error(LV_ERR_FORMAT, "key 'tokenizer.ggml.model' must be a string");
    lv_vocab *v = lv_calloc(1, sizeof(*v));
    if (!v) return LV_ERR_NOMEM;
    lv_status st;
    v->bos = v->eos = v->eot = v->eom = v->unk = v->sep = v->pad = v->mask = v->nl = -1;
    v->fim_pre = v->fim_suf = v->fim_mid = v->fim_pad = v->fim_rep = v->fim_sep = -1;
    v->escape_whitespaces = true;

    lv_gguf_str pre = {"", 0};
    key_str(g, "tokenizer.ggml.pre", &pre);
    snprintf(v->pre_name, sizeof(v->pre_name), "%.*s", (int)LV_MIN(pre.len, 60), pre.ptr);

    if (str_eq(model, "llama")) {
        v->type = LV_VOCAB_TYPE_SPM;
        v->model_name = "llama";
        v->bos = 1;
        v->eos = 2;
        v->unk = 0;
    } else if (str_eq(model, "gpt2")) {
        v->type = LV_VOCAB_TYPE_BPE;
        v->model_name = "gpt2";
        v->bos = 11;
        v->eos = 11;
    } else if (str_eq(model, "gemma4")) {
        /* BPE over raw UTF-8 with its own pre-tokenizer whatever tokenizer.ggml.pre says, no
         * default special ids (llama.cpp's "gemma4" model) */
        v->type = LV_VOCAB_TYPE_BPE;
        v->model_name = "gemma4";
        snprintf(v->pre_name, sizeof(v->pre_name), "gemma4");
    } else {
        st = lv_error(LV_ERR_UNSUPPORTED, "tokenizer model '%.*s' is not supported (llama, gpt2 and gemma4 are)",
                      (int)LV_MIN(model.len, 40), model.ptr);
        goto fail;
    }
    if ((st = load_tokens(g, v)) != LV_OK) goto fail;
    if (v->type == LV_VOCAB_TYPE_BPE) {
        if ((st = load_merges(g, v)) != LV_OK) goto fail;
        v->add_space_prefix = false;
        v->escape_whitespaces = false;
        v->clean_spaces = true;
        if ((st = lv_bpe_pretok_init(v, v->pre_name)) != LV_OK) goto fail;
    } else {
        v->add_space_prefix = true;
        v->clean_spaces = false;
        v->add_bos = true;
        v->add_eos = false;
    }
    key_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix);
    key_bool(g, "tokenizer.ggml.remove_extra_whitespaces", &v->remove_extra_whitespaces);

    /* the newline token */
    if (v->type == LV_VOCAB_TYPE_SPM) {
        v->nl = lv_vocab_byte_to_token(v, '\n');
        v->spm_split_at_space = lv_spm_can_split(v);
    } else {
        lv_tokbuf tb = {0};
        if (tokenize_internal(v, "\n", 1, false, false, &tb) != 0 || tb.oom) {
            lv_free(tb.ids);
            st = LV_ERR_NOMEM;
            goto fail;
        }
        v->nl = tb.n > 0 ? tb.ids[0] : -1;
        lv_free(tb.ids);
    }

    /* special ids (a default that is out of range is disabled; a bad value keeps the default) */
    {
        struct {
            const char *key;
            lv_token *id;
        } keys[] = {
            {"tokenizer.ggml.bos_token_id", &v->bos},         {"tokenizer.ggml.eos_token_id", &v->eos},
            {"tokenizer.ggml.eot_token_id", &v->eot},         {"tokenizer.ggml.eom_token_id", &v->eom},
            {"tokenizer.ggml.unknown_token_id", &v->unk},     {"tokenizer.ggml.seperator_token_id", &v->sep},
            {"tokenizer.ggml.padding_token_id", &v->pad},     {"tokenizer.ggml.mask_token_id", &v->mask},
            {"tokenizer.ggml.fim_pre_token_id", &v->fim_pre}, {"tokenizer.ggml.fim_suf_token_id", &v->fim_suf},
            {"tokenizer.ggml.fim_mid_token_id", &v->fim_mid}, {"tokenizer.ggml.fim_pad_token_id", &v->fim_pad},
            {"tokenizer.ggml.fim_rep_token_id", &v->fim_rep}, {"tokenizer.ggml.fim_sep_token_id", &v->fim_sep},
            {"tokenizer.ggml.prefix_token_id", &v->fim_pre},  {"tokenizer.ggml.suffix_token_id", &v->fim_suf},
            {"tokenizer.ggml.middle_token_id", &v->fim_mid},
        };
        for (size_t k = 0; k < LV_ARRAY_LEN(keys); k++)
            if ((st = read_special_id(g, v, keys[k].key, keys[k].id)) != LV_OK) goto fail;
    }
    key_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos);
    key_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos);
    if (v->type == LV_VOCAB_TYPE_BPE && v->pre.nl_words) v->add_bos = true; /* gemma4: llama.cpp forces BOS on */

    /* special tokens found by their text */
    detect_by_text(v, &v->eot, k_eot_texts, LV_ARRAY_LEN(k_eot_texts));
    detect_by_text(v, &v->eom, k_eom_texts, LV_ARRAY_LEN(k_eom_texts));
    detect_by_text(v, &v->fim_pre, k_fim_pre_texts, LV_ARRAY_LEN(k_fim_pre_texts));
    detect_by_text(v, &v->fim_suf, k_fim_suf_texts, LV_ARRAY_LEN(k_fim_suf_texts));
    detect_by_text(v, &v->fim_mid, k_fim_mid_texts, LV_ARRAY_LEN(k_fim_mid_texts));
    detect_by_text(v, &v->fim_pad, k_fim_pad_texts, LV_ARRAY_LEN(k_fim_pad_texts));
    detect_by_text(v, &v->fim_rep, k_fim_rep_texts, LV_ARRAY_LEN(k_fim_rep_texts));
    detect_by_text(v, &v->fim_sep, k_fim_sep_texts, LV_ARRAY_LEN(k_fim_sep_texts));

    /* control tokens whose text says "unused" are unused */
    for (int32_t i = 0; i < v->n_tokens; i++) {
        lv_vocab_token *t = &v->tokens[i];
        if ((t->attr & LV_ATTR_CONTROL) && !(t->attr & LV_ATTR_UNUSED) && t->len >= 6) {
            for (uint32_t k = 0; k + 6 <= t->len; k++)
                if (memcmp(t->text + k, "unused", 6) == 0) {
                    t->attr |= LV_ATTR_UNUSED;
                    break;
                }
        }
    }

    /* end-of-generation tokens */
    if ((st = eog_add(v, v->fim_pad)) || (st = eog_add(v, v->fim_rep)) || (st = eog_add(v, v->fim_sep))) goto fail;
    for (size_t k = 0; k < LV_ARRAY_LEN(k_eog_texts); k++) {
        lv_token t = find_lit(v, k_eog_texts[k]);
        if (t < 0) continue;
        if ((st = eog_add(v, t)) != LV_OK) goto fail;
        force_control(v, t);
    }
    {
        /* gpt-oss: always render these */
        static const char *const render[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"};
        for (size_t k = 0; k < LV_ARRAY_LEN(render); k++) {
            lv_token t = find_lit(v, render[k]);
            if (t >= 0) v->tokens[t].attr = LV_ATTR_USER_DEFINED;
        }
    }
    if ((st = eog_add(v, v->eos)) || (st = eog_add(v, v->eot)) || (st = eog_add(v, v->eom))) goto fail;
    {
        /* o200k_harmony / solar-open: <|end|> is not end-of-generation when <|return|> and <|call|>
         * (or <|calls|> and <|flush|>) are */
        bool has_return = false, has_call = false, has_flush = false, has_end = false;
        lv_token end_id = -1;
        for (int32_t i = 0; i < v->n_eog; i++) {
            lv_token t = v->eog[i];
            if (tok_is(v, t, "<|return|>")) has_return = true;
            else if (tok_is(v, t, "<|call|>") || tok_is(v, t, "<|calls|>")) has_call = true;
            else if (tok_is(v, t, "<|flush|>")) has_flush = true;
            else if (tok_is(v, t, "<|end|>")) {
                has_end = true;
                end_id = t;
            }
        }
        if ((has_return && has_call && has_end) || (has_call && has_flush && has_end)) {
            eog_remove(v, end_id);
            v->tokens[end_id].attr = LV_ATTR_USER_DEFINED;
        }
        /* gemma4 / paddleocr: </s> is not end-of-generation next to <|tool_response> */
        bool has_tool = false;
        lv_token s_id = -1;
        for (int32_t i = 0; i < v->n_eog; i++) {
            if (tok_is(v, v->eog[i], "<|tool_response>")) has_tool = true;
            else if (tok_is(v, v->eog[i], "</s>")) s_id = v->eog[i];
        }
        if (has_tool && s_id >= 0) {
            eog_remove(v, s_id);
            v->tokens[s_id].attr = LV_ATTR_NORMAL;
        }
    }
    if (v->n_eog > 1) qsort(v->eog, (size_t)v->n_eog, sizeof(lv_token), cmp_tok);

    /* special tokens, longest text first (ties by id: llama.cpp's sort leaves ties unspecified) */
    {
        int32_t n = 0;
        for (int32_t i = 0; i < v->n_tokens; i++)
            if (v->tokens[i].attr & (LV_ATTR_CONTROL | LV_ATTR_USER_DEFINED | LV_ATTR_UNKNOWN)) n++;
        special_sort *ss = lv_mallocn(n ? (size_t)n : 1, sizeof(special_sort));
        v->special = lv_mallocn(n ? (size_t)n : 1, sizeof(lv_token));
        if (!ss || !v->special) {
            lv_free(ss);
            st = LV_ERR_NOMEM;
            goto fail;
        }
        n = 0;
        for (int32_t i = 0; i < v->n_tokens; i++)
            if (v->tokens[i].attr & (LV_ATTR_CONTROL | LV_ATTR_USER_DEFINED | LV_ATTR_UNKNOWN))
                ss[n++] = (special_sort){i, v->tokens[i].len};
        qsort(ss, (size_t)n, sizeof(special_sort), cmp_special);
        for (int32_t i = 0; i < n; i++) {
            v->special[i] = ss[i].id;
            unsigned char c = (unsigned char)v->tokens[ss[i].id].text[0];
            v->special_first[c >> 3] |= (uint8_t)(1u << (c & 7));
        }
        v->n_special = n;
        lv_free(ss);
    }

    if ((st = build_pieces(v)) != LV_OK) goto fail;

    /* per-model attributes (llama.cpp sets them by model or tokenizer name) */
    {
        lv_gguf_str name = {"", 0}, arch = {"", 0};
        key_str(g, "general.name", &name);
        key_str(g, "general.architecture", &arch);
        if (contains(pre, "jina-v2-de") || contains(pre, "jina-v2-es") || contains(pre, "jina-v2-code") ||
            contains(arch, "nomic-bert-moe") || contains(arch, "jina-bert-v3")) {
            lv_token t = find_lit(v, "<mask>");
            if (t >= 0) v->tokens[t].attr |= LV_ATTR_LSTRIP;
        } else if (contains(name, "phi-3") || contains(name, "phi3")) {
            for (int32_t i = 0; i < v->n_special; i++) v->tokens[v->special[i]].attr |= LV_ATTR_RSTRIP;
            lv_token t = find_lit(v, "</s>");
            if (t >= 0) v->tokens[t].attr |= LV_ATTR_RSTRIP;
            static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
            for (size_t k = 0; k < LV_ARRAY_LEN(keep); k++) {
                t = find_lit(v, keep[k]);
                if (t >= 0) v->tokens[t].attr &= ~(uint32_t)LV_ATTR_RSTRIP;
            }
        } else if (contains(name, "modern-bert")) {
            lv_token t = find_lit(v, "[MASK]");
            if (t >= 0) v->tokens[t].attr |= LV_ATTR_LSTRIP;
        }
    }

    /* chat template */
    {
        lv_gguf_str ct;
        if (key_str(g, "tokenizer.chat_template", &ct)) {
            char *s = lv_malloc(ct.len + 1);
            if (!s) {
                st = LV_ERR_NOMEM;
                goto fail;
            }
            memcpy(s, ct.ptr, ct.len);
            s[ct.len] = 0;
            v->chat_template = s;
        }
    }
    *out = v;
    return LV_OK;

fail:
    lv_vocab_free(v);
    return st;
}

void lv_vocab_free(lv_vocab *v) {
    if (!v) return;
    lv_bpe_pretok_free(&v->pre);
    lv_free(v->tokens);
    lv_free(v->map.slots);
    lv_free(v->merges.merges);
    lv_free(v->merges.slots);
    lv_free(v->arena);
    lv_free(v->pieces);
    lv_free(v->eog);
    lv_free(v->special);
    lv_free((void *)v->chat_template);
    lv_free(v);
}

int32_t lv_vocab_n_tokens(const lv_vocab *v) { return v ? v->n_tokens : 0; }

void lv_vocab_describe(const lv_vocab *v, char *buf, size_t n) {
    if (!n) return;
    if (!v) {
        snprintf(buf, n, "none");
        return;
    }
    snprintf(buf, n, "%s (%s%s%s), %d tokens, bos %d, eos %d%s%s", v->model_name,
             v->type == LV_VOCAB_TYPE_SPM ? "SentencePiece" : v->pre.raw_utf8 ? "BPE over UTF-8, U+2581 for spaces" : "byte-level BPE",
             v->type == LV_VOCAB_TYPE_BPE ? ", pre " : "", v->type == LV_VOCAB_TYPE_BPE ? v->pre.name : "", v->n_tokens,
             v->bos, v->eos, v->add_bos ? ", adds bos" : "", v->chat_template ? ", chat template" : "");
}

/* -------------------------------------------------------------------------------------------
 * special-token partition
 * ----------------------------------------------------------------------------------------- */

typedef struct fragment {
    lv_token token; /* -1 for raw text */
    int64_t off, len;
} fragment;

typedef struct fraglist {
    fragment *f;
    int64_t n, cap;
} fraglist;

static bool frag_push(fraglist *l, fragment fr) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 16;
        fragment *p = lv_realloc(l->f, (size_t)cap * sizeof(fragment));
        if (!p) return false;
        l->f = p;
        l->cap = cap;
    }
    l->f[l->n++] = fr;
    return true;
}

/* isspace() in the C locale */
static bool c_isspace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Split raw-text fragments around every occurrence of each special token, in the order of
 * v->special (longest first), as llama.cpp's tokenizer_st_partition does. Control and unknown
 * tokens take part only when parse_special; user-defined tokens always do. */
static lv_status partition(const lv_vocab *v, const char *text, int64_t len, bool parse_special, fraglist *out) {
    fraglist cur = {0}, next = {0};
    if (!frag_push(&cur, (fragment){-1, 0, len})) return LV_ERR_NOMEM;
    /* which special tokens occur at all (fragments are substrings of text) */
    bool any_first = false;
    for (int64_t i = 0; i < len && !any_first; i++) {
        unsigned char c = (unsigned char)text[i];
        if (v->special_first[c >> 3] & (1u << (c & 7))) any_first = true;
    }
    for (int32_t s = 0; any_first && s < v->n_special; s++) {
        lv_token id = v->special[s];
        const lv_vocab_token *t = &v->tokens[id];
        if (!parse_special && (t->attr & (LV_ATTR_CONTROL | LV_ATTR_UNKNOWN))) continue;
        if (t->len > (uint64_t)len || !memmem(text, (size_t)len, t->text, t->len)) continue;
        next.n = 0;
        for (int64_t k = 0; k < cur.n; k++) {
            fragment fr = cur.f[k];
            if (fr.token >= 0) {
                if (!frag_push(&next, fr)) goto oom;
                continue;
            }
            int64_t pos = fr.off, end = fr.off + fr.len;
            for (;;) {
                const char *m = end > pos ? memmem(text + pos, (size_t)(end - pos), t->text, t->len) : NULL;
                if (!m) {
                    if (end > pos && !frag_push(&next, (fragment){-1, pos, end - pos})) goto oom;
                    break;
                }
                int64_t mpos = m - text;
                int64_t left = mpos - pos;
                if (t->attr & LV_ATTR_LSTRIP)
                    while (left > 0 && c_isspace(text[pos + left - 1])) left--;
                if (left > 0 && !frag_push(&next, (fragment){-1, pos, left})) goto oom;
                if (!frag_push(&next, (fragment){id, 0, 0})) goto oom;
                pos = mpos + t->len;
                if (t->attr & LV_ATTR_RSTRIP)
                    while (pos < end && c_isspace(text[pos])) pos++;
            }
        }
        fraglist tmp = cur;
        cur = next;
        next = tmp;
    }
    lv_free(next.f);
    *out = cur;
    return LV_OK;
oom:
    lv_free(cur.f);
    lv_free(next.f);
    return LV_ERR_NOMEM;
}

/* -------------------------------------------------------------------------------------------
 * tokenize
 * ----------------------------------------------------------------------------------------- */

/* Returns 0, or an lv_status (negative) on failure. */
static int tokenize_internal(const lv_vocab *v, const char *text, int64_t len, bool add_special, bool parse_special,
                             lv_tokbuf *out) {
    fraglist frags = {0};
    lv_status st = LV_OK;
    if (len > 0 && (st = partition(v, text, len, parse_special, &frags)) != LV_OK) return st;
    char *scratch = NULL;
    size_t scratch_cap = 0;

    if (v->type == LV_VOCAB_TYPE_SPM) {
        bool prev_special = true;
        if (add_special && v->add_bos) {
            if (v->bos < 0) {
                st = lv_error(LV_ERR_INVALID_ARG, "the vocabulary asks for a BOS token but has none");
                goto done;
            }
            lv_tokbuf_push(out, v->bos);
        }
        for (int64_t k = 0; k < frags.n; k++) {
            fragment fr = frags.f[k];
            if (fr.token >= 0) {
                lv_tokbuf_push(out, fr.token);
                prev_special = true;
                continue;
            }
            /* escape: (optional leading space) + text with ' ' -> U+2581 */
            size_t need = (size_t)fr.len * 3 + 3;
            if (need > scratch_cap) {
                char *p = lv_realloc(scratch, need);
                if (!p) {
                    st = LV_ERR_NOMEM;
                    goto done;
                }
                scratch = p;
                scratch_cap = need;
            }
            size_t n = 0;
            if (v->add_space_prefix && prev_special) {
                memcpy(scratch, "\xe2\x96\x81", 3);
                n = 3;
            }
            const char *s = text + fr.off;
            for (int64_t i = 0; i < fr.len; i++) {
                if (s[i] == ' ') {
                    memcpy(scratch + n, "\xe2\x96\x81", 3);
                    n += 3;
                } else {
                    scratch[n++] = s[i];
                }
            }
            if ((st = lv_spm_tokenize(v, scratch, n, out)) != LV_OK) goto done;
            prev_special = false;
        }
        if (add_special && v->add_bos && out->n >= 2 && out->ids[1] == v->bos)
            LV_LOG_W("tokenize: the prompt already starts with BOS and one was added: it now starts with 2 BOS tokens");
        if (add_special && v->add_eos) {
            if (v->eos < 0) {
                st = lv_error(LV_ERR_INVALID_ARG, "the vocabulary asks for an EOS token but has none");
                goto done;
            }
            lv_tokbuf_push(out, v->eos);
        }
    } else {
        if (add_special && v->add_bos) {
            if (v->bos < 0) {
                st = lv_error(LV_ERR_INVALID_ARG, "the vocabulary asks for a BOS token but has none");
                goto done;
            }
            lv_tokbuf_push(out, v->bos);
        }
        for (int64_t k = 0; k < frags.n; k++) {
            fragment fr = frags.f[k];
            if (fr.token >= 0) {
                lv_tokbuf_push(out, fr.token);
                continue;
            }
            if ((st = lv_bpe_tokenize(v, text + fr.off, (size_t)fr.len, out)) != LV_OK) goto done;
        }
        if (add_special && v->add_eos) {
            if (v->eos < 0) {
                st = lv_error(LV_ERR_INVALID_ARG, "the vocabulary asks for an EOS token but has none");
                goto done;
            }
            lv_tokbuf_push(out, v->eos);
        }
    }
    if (out->oom) st = lv_error(LV_ERR_NOMEM, "tokenize: out of memory");
done:
    lv_free(scratch);
    lv_free(frags.f);
    return st;
}

int32_t lv_vocab_tokenize(const lv_vocab *v, const char *text, int64_t len, lv_token *tokens, int32_t n_tokens_max,
                          bool add_special, bool parse_special) {
    if (!v || (len > 0 && !text) || len < 0 || n_tokens_max < 0 || (n_tokens_max > 0 && !tokens)) {
        lv_error(LV_ERR_INVALID_ARG, "lv_tokenize: invalid arguments");
        return INT32_MIN;
    }
    lv_tokbuf tb = {0};
    int st = tokenize_internal(v, text, len, add_special, parse_special, &tb);
    if (st != LV_OK) {
        lv_free(tb.ids);
        return INT32_MIN;
    }
    if (tb.n >= INT32_MAX) {
        lv_free(tb.ids);
        lv_error(LV_ERR_INVALID_ARG, "lv_tokenize: %lld tokens do not fit an int32 count", (long long)tb.n);
        return INT32_MIN;
    }
    int32_t n = (int32_t)tb.n;
    if (n > n_tokens_max) {
        lv_free(tb.ids);
        return -n;
    }
    if (n) memcpy(tokens, tb.ids, (size_t)n * sizeof(lv_token));
    lv_free(tb.ids);
    return n;
}

/* -------------------------------------------------------------------------------------------
 * pieces and detokenize
 * ----------------------------------------------------------------------------------------- */

/* The piece of a token, or NULL with *n = 0 when it renders as nothing. */
static const char *piece_of(const lv_vocab *v, lv_token id, bool render_special, uint32_t *n) {
    const lv_vocab_token *t = &v->tokens[id];
    if (!render_special && (t->attr & (LV_ATTR_UNKNOWN | LV_ATTR_CONTROL))) {
        *n = 0;
        return NULL;
    }
    *n = t->piece_len;
    return v->pieces + t->piece_off;
}

int32_t lv_vocab_token_to_piece(const lv_vocab *v, lv_token token, char *buf, int32_t buf_size, bool render_special) {
    if (!v || token < 0 || token >= v->n_tokens) {
        lv_error(LV_ERR_INVALID_ARG, "token id %d is out of range", token);
        return INT32_MIN;
    }
    uint32_t n;
    const char *p = piece_of(v, token, render_special, &n);
    if ((int64_t)n > buf_size) return -(int32_t)n;
    if (n) memcpy(buf, p, n);
    return (int32_t)n;
}

int64_t lv_vocab_detokenize(const lv_vocab *v, const lv_token *tokens, int32_t n_tokens, char *buf, int64_t buf_size,
                            bool remove_leading_space, bool render_special) {
    if (!v || n_tokens < 0 || (n_tokens > 0 && !tokens) || buf_size < 0 || (buf_size > 0 && !buf)) {
        lv_error(LV_ERR_INVALID_ARG, "lv_detokenize: invalid arguments");
        return INT32_MIN;
    }
    for (int32_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= v->n_tokens) {
            lv_error(LV_ERR_INVALID_ARG, "lv_detokenize: token %d (at %d) is out of range", tokens[i], i);
            return INT32_MIN;
        }
    /* pass 1: the raw length */
    bool strip = v->add_space_prefix && remove_leading_space;
    int64_t total = 0;
    for (int32_t i = 0; i < n_tokens; i++) {
        uint32_t n;
        const char *p = piece_of(v, tokens[i], render_special, &n);
        if (i == 0 && strip && n > 0 && p[0] == ' ') n--;
        total += n;
    }
    if (total > buf_size) return -total; /* clean-up only shrinks the text, as in llama.cpp */
    char *o = buf;
    for (int32_t i = 0; i < n_tokens; i++) {
        uint32_t n;
        const char *p = piece_of(v, tokens[i], render_special, &n);
        if (i == 0 && strip && n > 0 && p[0] == ' ') {
            p++;
            n--;
        }
        if (n) memcpy(o, p, n);
        o += n;
    }
    if (v->clean_spaces && total > 0) {
        /* clean_up_tokenization_spaces, in llama.cpp's three passes */
        char *t = buf;
        int64_t n1 = total, w = 1;
        for (int64_t i = 1; i < n1; i++) { /* " ?", " !", " .", " ," lose the space */
            char x = t[i];
            if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) w--;
            t[w++] = x;
        }
        int64_t n2 = w;
        w = 1;
        for (int64_t i = 1; i < n2; i++) { /* " ' " -> "'" */
            char x = t[i];
            if (x == '\'' && i + 1 < n2 && t[i - 1] == ' ' && t[i + 1] == ' ') {
                w--;
                t[++i] = '\0';
            }
            t[w++] = x;
        }
        int64_t n3 = w;
        w = 1;
        for (int64_t i = 1; i < n3; i++) { /* " 's", " 'm", " 're", " 've" lose the space */
            char x = t[i];
            if (t[i - 1] == ' ' && x == '\'' && i + 1 < n3) {
                char x1 = t[i + 1];
                if (x1 == 's' || x1 == 'm') w--;
                else if (x1 != 't' && x1 != 'd' && i + 2 < n3) {
                    char x2 = t[i + 2];
                    if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) w--;
                }
            }
            t[w++] = x;
        }
        total = w;
    }
    return total;
}

/* -------------------------------------------------------------------------------------------
 * special tokens
 * ----------------------------------------------------------------------------------------- */

lv_token lv_vocab_bos(const lv_vocab *v) { return v ? v->bos : -1; }
lv_token lv_vocab_eos(const lv_vocab *v) { return v ? v->eos : -1; }
lv_token lv_vocab_eot(const lv_vocab *v) { return v ? v->eot : -1; }
lv_token lv_vocab_pad(const lv_vocab *v) { return v ? v->pad : -1; }
lv_token lv_vocab_nl(const lv_vocab *v) { return v ? v->nl : -1; }
bool lv_vocab_is_eog(const lv_vocab *v, lv_token token) {
    if (!v || token < 0) return false;
    return bsearch(&token, v->eog, (size_t)v->n_eog, sizeof(lv_token), cmp_tok) != NULL;
}
bool lv_vocab_is_control(const lv_vocab *v, lv_token token) {
    if (!v || token < 0 || token >= v->n_tokens) return false;
    return (v->tokens[token].attr & LV_ATTR_CONTROL) != 0;
}
bool lv_vocab_add_bos(const lv_vocab *v) { return v && v->add_bos; }
bool lv_vocab_add_eos(const lv_vocab *v) { return v && v->add_eos; }
const char *lv_vocab_token_text(const lv_vocab *v, lv_token token, int32_t *len) {
    if (!v || token < 0 || token >= v->n_tokens) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = (int32_t)v->tokens[token].len;
    return v->tokens[token].text;
}

/* -------------------------------------------------------------------------------------------
 * streaming detokenizer
 * ----------------------------------------------------------------------------------------- */

struct lv_detok_stream {
    const lv_vocab *v;
    char *pend;   /* bytes of an incomplete character held back */
    size_t n_pend, cap_pend;
    char *out;
    size_t cap_out;
};

lv_status lv_vocab_detok_stream_create(const lv_vocab *v, lv_detok_stream **out) {
    if (!out) return lv_error(LV_ERR_INVALID_ARG, "lv_detok_stream_create: out is NULL");
    *out = NULL;
    if (!v) return lv_error(LV_ERR_INVALID_ARG, "lv_detok_stream_create: no vocabulary");
    lv_detok_stream *ds = lv_calloc(1, sizeof(*ds));
    if (!ds) return LV_ERR_NOMEM;
    ds->v = v;
    *out = ds;
    return LV_OK;
}

void lv_detok_stream_free(lv_detok_stream *ds) {
    if (!ds) return;
    lv_free(ds->pend);
    lv_free(ds->out);
    lv_free(ds);
}

static bool ensure(char **p, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    char *q = lv_realloc(*p, c);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

/* Length of a complete, valid character at s (n bytes available): > 0 valid, 0 incomplete but
 * valid so far, < 0 invalid (-k: the first k bytes form the maximal invalid subpart). */
static int utf8_char(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c < 0xC2) return -1;
    if (c < 0xE0) need = 2;
    else if (c < 0xF0) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c < 0xF5) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return -1;
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= n) return 0;
        unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (s[i] < l || s[i] > h) return -i;
    }
    return need;
}

/* Move what is complete from ds->pend to ds->out; invalid bytes become U+FFFD; with flush, an
 * incomplete tail does too. */
static lv_status stream_drain(lv_detok_stream *ds, bool flush, const char **out, int64_t *out_len) {
    if (!ensure(&ds->out, &ds->cap_out, ds->n_pend * 3 + 4)) return LV_ERR_NOMEM;
    const unsigned char *s = (const unsigned char *)ds->pend;
    size_t i = 0, o = 0;
    while (i < ds->n_pend) {
        int k = utf8_char(s + i, ds->n_pend - i);
        if (k > 0) {
            memcpy(ds->out + o, s + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else if (k < 0 || flush) {
            memcpy(ds->out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i += k < 0 ? (size_t)-k : ds->n_pend - i;
        } else {
            break; /* incomplete: wait for more bytes */
        }
    }
    if (i < ds->n_pend) memmove(ds->pend, ds->pend + i, ds->n_pend - i);
    ds->n_pend -= i;
    *out = ds->out;
    *out_len = (int64_t)o;
    return LV_OK;
}

lv_status lv_detok_stream_push(lv_detok_stream *ds, lv_token token, const char **out, int64_t *out_len) {
    if (!ds || !out || !out_len) return lv_error(LV_ERR_INVALID_ARG, "lv_detok_stream_push: NULL argument");
    *out = "";
    *out_len = 0;
    if (token < 0 || token >= ds->v->n_tokens)
        return lv_error(LV_ERR_INVALID_ARG, "lv_detok_stream_push: token %d is out of range", token);
    uint32_t n;
    const char *p = piece_of(ds->v, token, false, &n);
    if (!ensure(&ds->pend, &ds->cap_pend, ds->n_pend + n + 1)) return LV_ERR_NOMEM;
    if (n) memcpy(ds->pend + ds->n_pend, p, n);
    ds->n_pend += n;
    return stream_drain(ds, false, out, out_len);
}

lv_status lv_detok_stream_flush(lv_detok_stream *ds, const char **out, int64_t *out_len) {
    if (!ds || !out || !out_len) return lv_error(LV_ERR_INVALID_ARG, "lv_detok_stream_flush: NULL argument");
    return stream_drain(ds, true, out, out_len);
}

const char *lv_vocab_chat_template(const lv_vocab *v) { return v ? v->chat_template : NULL; }
