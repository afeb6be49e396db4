/*
 * vocab_json.c: a Hugging Face tokenizer.json (+ the tokenizer_config.json beside it) turned into
 * GGUF tokenizer metadata, as llama.cpp's convert_hf_to_gguf.py writes it for byte-level BPE
 * models (Llama 3, Qwen2/2.5/3, SmolLM, GPT-2, ...), so that such vocabularies can be used and
 * tested without their GGUF files.
 *
 * What it writes: tokenizer.ggml.model = "gpt2", tokenizer.ggml.pre (recognised from the Split
 * expression of the pre-tokenizer), tokens (the vocabulary plus the added tokens; ids without a
 * token become "[PAD<id>]", unused), token_type (added tokens: control when special or when they
 * look special, else user-defined; others normal), merges ("a b"; the newer [a, b] pair form has
 * its spaces encoded as U+0120 as convert_hf_to_gguf.py does), the special ids named in
 * tokenizer_config.json (bos, eos, unk, sep, pad, cls, mask), add_bos_token / add_eos_token, and
 * tokenizer.chat_template.
 *
 * Not handled (an error says so): SentencePiece-style tokenizer.json files (a Unigram model, or BPE
 * without a ByteLevel pre-tokenizer) and pre-tokenizers we cannot name. The converter's
 * "encode/decode non-normalized added tokens" step needs the Python tokenizer and is skipped: the
 * added tokens of the supported families are already normalized.
 */
#include "core/core.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The pre-tokenizer names we recognise, by the expression of a Split pre-tokenizer. */
static const struct {
    const char *regex;
    const char *pre;
} k_split_pre[] = {
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     "llama-bpe"},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     "qwen2"},
};

typedef struct pre_scan {
    bool byte_level, byte_level_regex, digits_individual;
    const char *split; /* the Split expression, if any */
    int n_split;
} pre_scan;

static void scan_pretok(json_t *p, pre_scan *s) {
    if (!json_is_object(p)) return;
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type) return;
    if (strcmp(type, "Sequence") == 0) {
        json_t *arr = json_object_get(p, "pretokenizers");
        size_t i;
        json_t *e;
        json_array_foreach(arr, i, e) scan_pretok(e, s);
    } else if (strcmp(type, "ByteLevel") == 0) {
        s->byte_level = true;
        json_t *ur = json_object_get(p, "use_regex");
        if (!ur || json_is_true(ur)) s->byte_level_regex = true;
    } else if (strcmp(type, "Split") == 0) {
        const char *re = json_string_value(json_object_get(json_object_get(p, "pattern"), "Regex"));
        if (re) {
            s->split = re;
            s->n_split++;
        }
    } else if (strcmp(type, "Digits") == 0) {
        s->digits_individual = json_is_true(json_object_get(p, "individual_digits"));
    }
}

/* tokenizer_config.json beside tokenizer.json: "dir/tokenizer.json" -> "dir/tokenizer_config.json",
 * "x.tokenizer.json" -> "x.tokenizer_config.json" */
static json_t *load_config(const char *path) {
    size_t n = strlen(path);
    static const char suf[] = "tokenizer.json";
    if (n < sizeof(suf) - 1 || strcmp(path + n - (sizeof(suf) - 1), suf) != 0) return NULL;
    char *cfg = lv_malloc(n + 16);
    if (!cfg) return NULL;
    memcpy(cfg, path, n - (sizeof(suf) - 1));
    strcpy(cfg + n - (sizeof(suf) - 1), "tokenizer_config.json");
    json_error_t err;
    /* model_max_length can exceed int64 (Llama 3: 1e30): read numbers as reals */
    json_t *j = json_load_file(cfg, JSON_DECODE_INT_AS_REAL, &err);
    if (!j) LV_LOG_I("tokenizer.json import: no %s (%s)", cfg, err.text);
    lv_free(cfg);
    return j;
}

static bool looks_special(const char *t) {
    size_t n = strlen(t);
    if (!strcmp(t, "<pad>") || !strcmp(t, "<mask>") || !strcmp(t, "<2mass>") || !strcmp(t, "[@BOS@]")) return true;
    if (n >= 4 && !strncmp(t, "<|", 2) && !strcmp(t + n - 2, "|>")) return true;
    if (n >= 8 && !strncmp(t, "<\xef\xbd\x9c", 4) && !strcmp(t + n - 4, "\xef\xbd\x9c>")) return true;
    if (n >= 8 && !strncmp(t, "<unused", 7) && t[n - 1] == '>') return true;
    return false;
}

/* the content of a tokenizer_config entry: a string or {"content": ...} */
static const char *entry_content(json_t *e) {
    if (json_is_string(e)) return json_string_value(e);
    if (json_is_object(e)) return json_string_value(json_object_get(e, "content"));
    return NULL;
}

lv_status lv_vocab_json_to_gguf(const char *path, lv_gguf_writer *w, int64_t *n_vocab) {
    json_error_t err;
    lv_status st = LV_OK;
    json_t *cfg = NULL;
    char **toks = NULL, **merges = NULL, *merge_buf = NULL;
    int32_t *types = NULL;
    int64_t n = 0;
    size_t n_merges = 0;
    if (n_vocab) *n_vocab = 0;
    json_t *j = json_load_file(path, 0, &err);
    if (!j) return lv_error(LV_ERR_FORMAT, "%s:%d: not valid JSON: %s", path, err.line, err.text);
    json_t *model = json_object_get(j, "model");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    json_t *vocab = json_object_get(model, "vocab");
    if (!mtype || strcmp(mtype, "BPE") != 0 || !json_is_object(vocab)) {
        st = lv_error(LV_ERR_UNSUPPORTED, "%s: model type '%s' is not supported (byte-level BPE is)", path, mtype ? mtype : "?");
        goto done;
    }
    pre_scan ps = {0};
    scan_pretok(json_object_get(j, "pre_tokenizer"), &ps);
    if (!ps.byte_level) {
        st = lv_error(LV_ERR_UNSUPPORTED, "%s: no ByteLevel pre-tokenizer: only byte-level BPE tokenizers are supported", path);
        goto done;
    }
    const char *pre = NULL;
    if (ps.n_split == 1 && !ps.byte_level_regex) {
        for (size_t k = 0; k < LV_ARRAY_LEN(k_split_pre); k++)
            if (strcmp(ps.split, k_split_pre[k].regex) == 0) pre = k_split_pre[k].pre;
    } else if (ps.n_split == 0 && ps.byte_level_regex) {
        pre = ps.digits_individual ? "smollm" : "gpt-2";
    }
    if (!pre) {
        st = lv_error(LV_ERR_UNSUPPORTED, "%s: cannot tell which llama.cpp pre-tokenizer this is (Split '%.80s')", path,
                      ps.split ? ps.split : "none");
        goto done;
    }

    /* ids */
    json_t *added = json_object_get(j, "added_tokens");
    {
        const char *key;
        json_t *val;
        json_object_foreach(vocab, key, val) {
            json_int_t id = json_integer_value(val);
            if (!json_is_integer(val) || id < 0 || id >= INT32_MAX / 2) {
                st = lv_error(LV_ERR_FORMAT, "%s: token '%.40s' has a bad id", path, key);
                goto done;
            }
            if (id + 1 > n) n = id + 1;
        }
        size_t i;
        json_t *e;
        json_array_foreach(added, i, e) {
            json_int_t id = json_integer_value(json_object_get(e, "id"));
            if (!json_is_string(json_object_get(e, "content")) || id < 0 || id >= INT32_MAX / 2) {
                st = lv_error(LV_ERR_FORMAT, "%s: added token %zu is malformed", path, i);
                goto done;
            }
            if (id + 1 > n) n = id + 1;
        }
    }
    if (n == 0) {
        st = lv_error(LV_ERR_FORMAT, "%s: empty vocabulary", path);
        goto done;
    }
    toks = lv_calloc((size_t)n, sizeof(char *));
    types = lv_calloc((size_t)n, sizeof(int32_t));
    if (!toks || !types) {
        st = LV_ERR_NOMEM;
        goto done;
    }
    {
        const char *key;
        json_t *val;
        json_object_foreach(vocab, key, val) {
            json_int_t id = json_integer_value(val);
            toks[id] = (char *)key;
            types[id] = 1; /* normal */
        }
        size_t i;
        json_t *e;
        json_array_foreach(added, i, e) {
            json_int_t id = json_integer_value(json_object_get(e, "id"));
            const char *c = json_string_value(json_object_get(e, "content"));
            toks[id] = (char *)c;
            bool special = json_is_true(json_object_get(e, "special")) || looks_special(c);
            types[id] = special ? 3 : 4; /* control : user-defined */
            if (!special && strstr(c, "\xe2\x96\x81")) {
                /* user-defined tokens are stored pre-normalized: U+2581 -> ' ' */
                LV_LOG_W("tokenizer.json import: user-defined token %lld contains U+2581; kept as is", (long long)id);
            }
        }
    }
    /* ids without a token */
    size_t pad_bytes = 0;
    for (int64_t i = 0; i < n; i++)
        if (!toks[i]) pad_bytes += 24;
    char *pads = pad_bytes ? lv_malloc(pad_bytes) : NULL;
    if (pad_bytes && !pads) {
        st = LV_ERR_NOMEM;
        goto done;
    }
    {
        size_t o = 0;
        for (int64_t i = 0; i < n; i++)
            if (!toks[i]) {
                snprintf(pads + o, 24, "[PAD%lld]", (long long)i);
                toks[i] = pads + o;
                types[i] = 5; /* unused */
                o += 24;
            }
    }

    /* merges */
    json_t *jm = json_object_get(model, "merges");
    n_merges = json_array_size(jm);
    if (n_merges) {
        merges = lv_calloc(n_merges, sizeof(char *));
        if (!merges) goto nomem;
        size_t total = 0, i;
        json_t *e;
        json_array_foreach(jm, i, e) {
            if (json_is_string(e)) {
                total += json_string_length(e) + 1;
            } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                       json_is_string(json_array_get(e, 1))) {
                total += 2 * (json_string_length(json_array_get(e, 0)) + json_string_length(json_array_get(e, 1))) + 2;
            } else {
                lv_free(pads);
                st = lv_error(LV_ERR_FORMAT, "%s: merge %zu is neither \"a b\" nor [a, b]", path, i);
                goto done;
            }
        }
        merge_buf = lv_malloc(total);
        if (!merge_buf) goto nomem;
        size_t o = 0;
        json_array_foreach(jm, i, e) {
            merges[i] = merge_buf + o;
            if (json_is_string(e)) {
                memcpy(merge_buf + o, json_string_value(e), json_string_length(e) + 1);
                o += json_string_length(e) + 1;
                continue;
            }
            for (int part = 0; part < 2; part++) {
                const char *s = json_string_value(json_array_get(e, (size_t)part));
                if (part) merge_buf[o++] = ' ';
                for (; *s; s++) {
                    if (*s == ' ') { /* a space inside a merge part: U+0120 */
                        merge_buf[o++] = (char)0xC4;
                        merge_buf[o++] = (char)0xA0;
                    } else {
                        merge_buf[o++] = *s;
                    }
                }
            }
            merge_buf[o++] = 0;
        }
    }

    bool ok = lv_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2") &&
              lv_gguf_writer_set_str(w, "tokenizer.ggml.pre", pre) &&
              lv_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, (uint64_t)n) &&
              lv_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", LV_GGUF_INT32, types, (uint64_t)n) &&
              (!n_merges || lv_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)merges, n_merges));
    lv_free(pads);
    if (!ok) goto nomem;

    /* special tokens, add_bos/add_eos and the chat template from tokenizer_config.json */
    cfg = load_config(path);
    if (cfg) {
        static const struct {
            const char *cfg_key, *add_key, *gguf_key;
        } specials[] = {
            {"bos_token", "add_bos_token", "tokenizer.ggml.bos_token_id"},
            {"eos_token", "add_eos_token", "tokenizer.ggml.eos_token_id"},
            {"unk_token", NULL, "tokenizer.ggml.unknown_token_id"},
            {"sep_token", NULL, "tokenizer.ggml.seperator_token_id"},
            {"pad_token", NULL, "tokenizer.ggml.padding_token_id"},
            {"cls_token", NULL, "tokenizer.ggml.cls_token_id"},
            {"mask_token", NULL, "tokenizer.ggml.mask_token_id"},
        };
        for (size_t k = 0; k < LV_ARRAY_LEN(specials); k++) {
            if (specials[k].add_key) {
                json_t *a = json_object_get(cfg, specials[k].add_key);
                if (json_is_boolean(a)) {
                    char key[64];
                    snprintf(key, sizeof(key), "tokenizer.ggml.%s", specials[k].add_key);
                    if (!lv_gguf_writer_set_bool(w, key, json_is_true(a))) goto nomem;
                }
            }
            const char *c = entry_content(json_object_get(cfg, specials[k].cfg_key));
            if (!c) continue;
            size_t i;
            json_t *e;
            json_array_foreach(added, i, e) {
                const char *ac = json_string_value(json_object_get(e, "content"));
                if (ac && strcmp(ac, c) == 0) {
                    if (!lv_gguf_writer_set_u32(w, specials[k].gguf_key, (uint32_t)json_integer_value(json_object_get(e, "id"))))
                        goto nomem;
                    break;
                }
            }
        }
        json_t *ct = json_object_get(cfg, "chat_template");
        const char *tmpl = json_string_value(ct);
        if (json_is_array(ct)) { /* [{"name": "default", "template": ...}, ...] */
            size_t i;
            json_t *e;
            json_array_foreach(ct, i, e) {
                const char *nm = json_string_value(json_object_get(e, "name"));
                if (nm && strcmp(nm, "default") == 0) tmpl = json_string_value(json_object_get(e, "template"));
            }
        }
        if (tmpl && !lv_gguf_writer_set_str(w, "tokenizer.chat_template", tmpl)) goto nomem;
    }
    if (n_vocab) *n_vocab = n;
    goto done;
nomem:
    st = lv_error(LV_ERR_NOMEM, "tokenizer.json import: out of memory");
done:
    lv_free(toks);
    lv_free(types);
    lv_free(merges);
    lv_free(merge_buf);
    json_decref(cfg);
    json_decref(j);
    return st;
}
