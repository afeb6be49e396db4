/*
 * vocab_bpe.c: byte-level BPE (tokenizer.ggml.model = "gpt2") and its pre-tokenizers.
 *
 * A text fragment is (1) decoded to codepoints (leniently, as llama.cpp does: an invalid byte is
 * U+FFFD), (2) split into words by the pre-tokenizer that `tokenizer.ggml.pre` names, a list of
 * regular expressions applied one after another (each splits every piece the previous ones
 * produced, keeping both the matches and the text between them), (3) each word's UTF-8 bytes are
 * mapped to GPT-2's printable byte characters, and (4) the word is merged pair by pair in merge
 * rank order (ties: leftmost) and emitted as tokens.
 *
 * How the expressions run, to agree with llama.cpp byte for byte:
 *  - The four most used ones (GPT-2's, Llama 3's, Qwen2's and Qwen3.5's) are hand-written
 *    splitters in llama.cpp; it picks them by comparing the expression text. We do the same,
 *    with our own implementations of the same rules (quirks included).
 *  - Any other expression runs in PCRE2 (32-bit code units, JIT). llama.cpp runs those with
 *    std::regex on a "collapsed" text in which each codepoint >= 128 becomes one byte naming its
 *    category (letters 0xD2, numbers 0xD1, punctuation 0xD3, marks 0xD4, symbols 0xD5, other 0xD0,
 *    whitespace 0x0B) and \p{..} in the expression becomes a class of that byte plus its ASCII
 *    members. We build the identical collapsed text and expression. An expression without \p{..}
 *    runs on the codepoints themselves (non-ASCII whitespace replaced by 0x0B, as llama.cpp does).
 *    PCRE2's semantics agree with ECMAScript's for every construct these expressions use (ordered
 *    alternation, greedy quantifiers, lookahead, \s as the six ASCII spaces); `$` is made to match
 *    only at the very end (PCRE2_DOLLAR_ENDONLY), as in ECMAScript.
 */
#define PCRE2_CODE_UNIT_WIDTH 32
#include "core/core.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab_impl.h"

#include <pcre2.h>
#include <string.h>

/* -------------------------------------------------------------------------------------------
 * the pre-tokenizers llama.cpp names
 * ----------------------------------------------------------------------------------------- */

#define R_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define R_LLAMA3                                                                                                     \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "          \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define R_QWEN2                                                                                                      \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "               \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define R_QWEN35                                                                                                     \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| "       \
    "?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define R_NEWLINES "[^\\n]+|[\\n]+"
#define R_CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define R_CJK_DEEPSEEK "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+"

enum {
    PRE_CLEAN_OFF = 1,  /* clean_spaces = false */
    PRE_IGNORE_MERGES = 2,
    PRE_ADD_BOS = 4,
    PRE_NO_BOS = 8,     /* the default BOS id is cleared (chatglm) */
    PRE_RAW_UTF8 = 16,  /* SPM-style BPE: raw UTF-8, spaces escaped to U+2581, <0xXX> byte fallback (gemma4, sarvam-moe) */
    PRE_NL_WORDS = 32,  /* a word of newlines only that is a token is taken whole (gemma4) */
};

typedef struct pre_family {
    const char *names;  /* '|'-separated tokenizer.ggml.pre values */
    int flags;
    const char *regex[LV_MAX_REGEX];
} pre_family;

static const pre_family k_families[] = {
    {"default", 0, {"[\\p{P}\\$\\+<=>\\^~\\|]+", R_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
    {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2|jina-v5-nano", PRE_IGNORE_MERGES | PRE_ADD_BOS,
     {R_LLAMA3}},
    {"dbrx|smaug-bpe", 0, {R_LLAMA3}},
    {"glm4|chatglm-bpe", PRE_NO_BOS, {R_LLAMA3}},
    {"jais-2", 0,
     {R_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!"
                     "\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|"
                     "\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}"}},
    {"deepseek-llm", PRE_CLEAN_OFF,
     {"[\r\n]",
      "\\s?[A-Za-z\xc2\xb5\xc3\x80-\xc3\x96\xc3\x98-\xc3\xb6\xc3\xb8-\xc6\xba\xc6\xbc-\xc6\xbf\xc7\x84-\xca\x93\xca\x95-"
      "\xca\xaf\xcd\xb0-\xcd\xb3\xcd\xb6\xcd\xb7\xcd\xbb-\xcd\xbd\xcd\xbf\xce\x86\xce\x88-\xce\x8a\xce\x8c\xce\x8e-\xce\xa1"
      "\xce\xa3-\xcf\xb5\xcf\xb7-\xd2\x81\xd2\x8a-\xd4\xaf\xd4\xb1-\xd5\x96\xe1\x82\xa0-\xe1\x83\x85\xe1\x8e\xa0-\xe1\x8f"
      "\xb5\xe1\x8f\xb8-\xe1\x8f\xbd\xe1\xb2\x90-\xe1\xb2\xba\xe1\xb2\xbd-\xe1\xb2\xbf\xe1\xb4\x80-\xe1\xb4\xab\xe1\xb5\xab-"
      "\xe1\xb5\xb7\xe1\xb5\xb9-\xe1\xb6\x9a\xe1\xb8\x80-\xe1\xbc\x95\xe1\xbc\x98-\xe1\xbc\x9d\xe1\xbc\xa0-\xe1\xbd\x85\xe1"
      "\xbd\x88-\xe1\xbd\x8d\xe1\xbd\x90-\xe1\xbd\x97\xe1\xbd\x99\xe1\xbd\x9b\xe1\xbd\x9d\xe1\xbd\x9f-\xe1\xbd\xbd\xe1\xbe"
      "\x80-\xe1\xbe\xb4\xe1\xbe\xb6-\xe1\xbe\xbc\xe1\xbe\xbe\xe1\xbf\x82-\xe1\xbf\x84\xe1\xbf\x86-\xe1\xbf\x8c\xe1\xbf\x90-"
      "\xe1\xbf\x93\xe1\xbf\x96-\xe1\xbf\x9b\xe1\xbf\xa0-\xe1\xbf\xac\xe1\xbf\xb2-\xe1\xbf\xb4\xe1\xbf\xb6-\xe1\xbf\xbc\xe2"
      "\x84\x82\xe2\x84\x87\xe2\x84\x8a-\xe2\x84\x93\xe2\x84\x95\xe2\x84\x99-\xe2\x84\x9d\xe2\x84\xa4\xe2\x84\xa6\xe2\x84"
      "\xa8\xe2\x84\xaa-\xe2\x84\xad\xe2\x84\xaf-\xe2\x84\xb4\xe2\x84\xb9\xe2\x84\xbc-\xe2\x84\xbf\xe2\x85\x85-\xe2\x85\x89"
      "\xe2\x85\x8e\xe2\x86\x83\xe2\x86\x84\xe2\xb0\x80-\xe2\xb1\xbb\xe2\xb1\xbe-\xe2\xb3\xa4\xe2\xb3\xab-\xe2\xb3\xae\xe2"
      "\xb3\xb2\xe2\xb3\xb3\xea\x99\x80-\xea\x99\xad\xea\x9a\x80-\xea\x9a\x9b\xea\x9c\xa2-\xea\x9d\xaf\xea\x9d\xb1-\xea\x9e"
      "\x87\xea\x9e\x8b-\xea\x9e\x8e\xea\xad\xb0-\xea\xae\xbf\xef\xac\x80-\xef\xac\x86\xef\xac\x93-\xef\xac\x97\xef\xbc\xa1-"
      "\xef\xbc\xba\xef\xbd\x81-\xef\xbd\x9a\xf0\x90\x90\x80-\xf0\x90\x91\x8f\xf0\x90\x92\xb0-\xf0\x90\x93\x93\xf0\x90\x93"
      "\x98-\xf0\x90\x93\xbb\xf0\x90\xb2\x80-\xf0\x90\xb2\xb2\xf0\x90\xb3\x80-\xf0\x90\xb3\xb2\xf0\x91\xa2\xa0-\xf0\x91\xa3"
      "\x9f\xf0\x9e\xa4\x80-\xf0\x9e\xa5\x83]+",
      "\\s?[!-/:-~\xef\xbc\x81-\xef\xbc\x8f\xef\xbc\x9a-\xef\xbd\x9e\xe2\x80\x98-\xe2\x80\x9f\xe3\x80\x80-\xe3\x80\x82]+",
      "\\s+$", R_CJK_DEEPSEEK, "\\p{N}+"}},
    {"deepseek-coder", PRE_CLEAN_OFF, {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", R_CJK_DEEPSEEK, "\\p{N}"}},
    {"deepseek-v3|hunyuan-dense|joyai-llm", PRE_CLEAN_OFF,
     {"\\p{N}{1,3}", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|"
      "\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}},
    {"falcon", 0, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", R_GPT2, "[0-9][0-9][0-9]"}},
    {"starcoder|refact|codeshell|exaone|minerva-7b|mellum2", 0, {"\\p{N}", R_GPT2}},
    {"command-r|smollm", PRE_CLEAN_OFF, {"\\p{N}", R_GPT2}},
    {"gpt-2|phi-2|jina-es|jina-de|gigachat|jina-v2-es|jina-v2-de|a.x-4.0|mellum|modern-bert|exaone4|jina-v1-en|"
     "jina-v2-code|roberta-bpe|mpt|olmo|jais",
     0,
     {R_GPT2}},
    {"trillion|granite-docling", PRE_CLEAN_OFF, {R_GPT2}},
    {"stablelm2|megrez", 0, {R_QWEN2}},
    {"qwen2|deepseek-r1-qwen|kormo|f2llmv2|hunyuan|solar-open|grok-2", PRE_CLEAN_OFF, {R_QWEN2}},
    {"qwen35", PRE_CLEAN_OFF, {R_QWEN35}},
    {"gemma4|granite-embed-multi-311m", PRE_RAW_UTF8 | PRE_NL_WORDS, {R_NEWLINES}},
    {"sarvam-moe", PRE_RAW_UTF8 | PRE_CLEAN_OFF, {R_NEWLINES}},
    {"laguna", PRE_CLEAN_OFF, {R_NEWLINES, R_QWEN2}},
    {"poro-chat|bloom|gpt3-finnish", PRE_CLEAN_OFF,
     {" ?[^(\\s|.,!?\xe2\x80\xa6\xe3\x80\x82\xef\xbc\x8c\xe3\x80\x81\xe0\xa5\xa4\xdb\x94\xd8\x8c)]+"}},
    {"viking", PRE_CLEAN_OFF, {" ?[^(\\s|.,!?\xe2\x80\xa6\xe3\x80\x82\xef\xbc\x8c\xe3\x80\x81\xe0\xa5\xa4\xdb\x94\xd8\x8c)]+", "\\p{N}"}},
    {"tekken", PRE_CLEAN_OFF | PRE_IGNORE_MERGES | PRE_ADD_BOS,
     {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+(("
      "?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"gpt-4o|llama4|kanana2|talkie|minimax-m2", PRE_CLEAN_OFF,
     {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+" R_CONTRACTIONS
      "?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*" R_CONTRACTIONS
      "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"chameleon", PRE_CLEAN_OFF | PRE_ADD_BOS,
     {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}", "[\\p{P}!-/:-@\\[-`{-~]",
      R_GPT2}},
    {"bailingmoe|bailingmoe2|llada-moe", PRE_CLEAN_OFF,
     {"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*["
      "\\r\\n]|\\s+(?!\\S)|\\s+"}},
    {"seed-coder", PRE_CLEAN_OFF,
     {R_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"minicpm5", PRE_IGNORE_MERGES,
     {"\\p{N}{1,3}", R_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
                                    "\\s+(?!\\S)|\\s+"}},
};

/* the \p{..} names llama.cpp collapses, and what each becomes */
static const struct {
    const char *name;
    char byte;
    const char *ascii; /* the ASCII members, as a class body */
} k_ucat[] = {
    {"\\p{N}", (char)0xD1, "\x30-\x39"},
    {"\\p{L}", (char)0xD2, "\x41-\x5A\x61-\x7A"},
    {"\\p{P}", (char)0xD3, "\x21-\x23\x25-\x2A\x2C-\x2F\x3A-\x3B\x3F-\x40\\\x5B-\\\x5D\x5F\\\x7B\\\x7D"},
    {"\\p{M}", (char)0xD4, ""},
    {"\\p{S}", (char)0xD5, "\\\x24\\\x2B\x3C-\x3E\x5E\x60\\\x7C\\\x7E"},
    {"\\p{Lu}", (char)0xD2, "\x41-\x5A\x61-\x7A"},
    {"\\p{Ll}", (char)0xD2, "\x41-\x5A\x61-\x7A"},
    {"\\p{Lt}", (char)0xD2, "\x41-\x5A\x61-\x7A"},
    {"\\p{Lm}", (char)0xD2, "\x41-\x5A\x61-\x7A"},
    {"\\p{Lo}", (char)0xD2, "\x41-\x5A\x61-\x7A"},
};

static bool uses_category(const char *re) {
    for (size_t k = 0; k < LV_ARRAY_LEN(k_ucat); k++)
        if (strstr(re, k_ucat[k].name)) return true;
    return false;
}

/* The collapsed form of an expression (the caller frees). */
static char *collapse_regex(const char *re) {
    size_t n = strlen(re);
    char *out = lv_malloc(n * 24 + 1);
    if (!out) return NULL;
    size_t o = 0;
    bool inside = false;
    for (size_t i = 0; i < n; i++) {
        char c = re[i];
        if (c == '[' && (i == 0 || re[i - 1] != '\\')) {
            out[o++] = '[';
            inside = true;
            continue;
        }
        if (inside && c == ']' && re[i - 1] != '\\') {
            out[o++] = ']';
            inside = false;
            continue;
        }
        if (c == '\\' && i + 3 < n && re[i + 1] == 'p' && re[i + 2] == '{') {
            const char *close = strchr(re + i + 3, '}');
            if (close && (size_t)(close - re) <= i + 10) {
                size_t plen = (size_t)(close - re) - i + 1;
                size_t k;
                for (k = 0; k < LV_ARRAY_LEN(k_ucat); k++)
                    if (strlen(k_ucat[k].name) == plen && memcmp(k_ucat[k].name, re + i, plen) == 0) break;
                if (k < LV_ARRAY_LEN(k_ucat)) {
                    if (!inside) out[o++] = '[';
                    out[o++] = k_ucat[k].byte;
                    size_t al = strlen(k_ucat[k].ascii);
                    memcpy(out + o, k_ucat[k].ascii, al);
                    o += al;
                    if (!inside) out[o++] = ']';
                    i = (size_t)(close - re);
                    continue;
                }
            }
        }
        out[o++] = c;
    }
    out[o] = 0;
    return out;
}

static bool name_in(const char *names, const char *name) {
    size_t n = strlen(name);
    for (const char *p = names; *p;) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == n && memcmp(p, name, n) == 0) return true;
        if (!bar) break;
        p = bar + 1;
    }
    return false;
}

lv_status lv_bpe_pretok_init(lv_vocab *v, const char *name) {
    lv_pretok *p = &v->pre;
    const pre_family *fam = NULL;
    if (!name || !name[0]) {
        LV_LOG_W("tokenizer: tokenizer.ggml.pre is missing; using 'default' (generation quality will be degraded)");
        fam = &k_families[0];
    } else {
        for (size_t k = 0; k < LV_ARRAY_LEN(k_families) && !fam; k++)
            if (name_in(k_families[k].names, name)) fam = &k_families[k];
    }
    if (!fam)
        return lv_error(LV_ERR_UNSUPPORTED,
                        "pre-tokenizer '%s' (tokenizer.ggml.pre) is not supported; see docs/tokenizer.md for the list", name);
    p->name = name && name[0] ? name : "default";
    if (fam->flags & PRE_CLEAN_OFF) v->clean_spaces = false;
    if (fam->flags & PRE_IGNORE_MERGES) v->ignore_merges = true;
    if (fam->flags & PRE_ADD_BOS) v->add_bos = true;
    if (fam->flags & PRE_NO_BOS) v->bos = -1;
    if (fam->flags & PRE_RAW_UTF8) {
        p->raw_utf8 = true;
        v->escape_whitespaces = true;
    }
    p->nl_words = (fam->flags & PRE_NL_WORDS) != 0;
    for (int k = 0; k < LV_MAX_REGEX && fam->regex[k]; k++) {
        const char *re = fam->regex[k];
        p->n = k + 1;
        if (strcmp(re, R_GPT2) == 0) p->kind[k] = LV_SPLIT_GPT2;
        else if (strcmp(re, R_LLAMA3) == 0) p->kind[k] = LV_SPLIT_LLAMA3;
        else if (strcmp(re, R_QWEN2) == 0) p->kind[k] = LV_SPLIT_QWEN2;
        else if (strcmp(re, R_QWEN35) == 0) p->kind[k] = LV_SPLIT_QWEN35;
        else if (strcmp(re, R_NEWLINES) == 0) p->kind[k] = LV_SPLIT_NEWLINES;
        else {
            /* the expression as 32-bit code units: collapsed bytes, or codepoints */
            bool collapsed = uses_category(re);
            char *cre = collapsed ? collapse_regex(re) : NULL;
            if (collapsed && !cre) return LV_ERR_NOMEM;
            const char *src = collapsed ? cre : re;
            size_t sl = strlen(src);
            PCRE2_UCHAR32 *units = lv_mallocn(sl + 1, sizeof(PCRE2_UCHAR32));
            if (!units) {
                lv_free(cre);
                return LV_ERR_NOMEM;
            }
            size_t nu = 0;
            if (collapsed) {
                for (size_t i = 0; i < sl; i++) units[nu++] = (unsigned char)src[i];
            } else {
                for (size_t off = 0; off < sl;) units[nu++] = lv_utf8_decode(src, sl, &off);
            }
            int err;
            PCRE2_SIZE erroff;
            pcre2_code *code = pcre2_compile(units, nu, PCRE2_DOLLAR_ENDONLY, &err, &erroff, NULL);
            lv_free(units);
            lv_free(cre);
            if (!code) {
                PCRE2_UCHAR32 msg[128];
                char m8[128];
                pcre2_get_error_message(err, msg, 128);
                size_t i = 0;
                for (; i < 127 && msg[i]; i++) m8[i] = (char)(msg[i] < 128 ? msg[i] : '?');
                m8[i] = 0;
                return lv_error(LV_ERR_INTERNAL, "pre-tokenizer '%s': regex %d does not compile: %s", p->name, k, m8);
            }
            pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* without JIT it still runs, slower */
            p->kind[k] = collapsed ? LV_SPLIT_PCRE_COLLAPSED : LV_SPLIT_PCRE_WIDE;
            p->code[k] = code;
            if (collapsed) p->need_collapse = true;
        }
    }
    return LV_OK;
}

void lv_bpe_pretok_free(lv_pretok *p) {
    for (int k = 0; k < p->n; k++) {
        if (p->code[k]) pcre2_code_free((pcre2_code *)p->code[k]);
        p->code[k] = NULL;
    }
    p->n = 0;
}

/* -------------------------------------------------------------------------------------------
 * splitting: every splitter maps a list of segment lengths (in codepoints) to a finer one
 * ----------------------------------------------------------------------------------------- */

typedef struct seglist {
    int64_t *len;
    int64_t n, cap;
    bool oom;
} seglist;

static void seg_push(seglist *s, int64_t len) {
    if (s->oom) return;
    if (s->n == s->cap) {
        int64_t cap = s->cap ? s->cap * 2 : 64;
        int64_t *p = lv_realloc(s->len, (size_t)cap * sizeof(int64_t));
        if (!p) {
            s->oom = true;
            return;
        }
        s->len = p;
        s->cap = cap;
    }
    s->len[s->n++] = len;
}

/* the state of one hand-written splitter over one segment */
typedef struct splitter {
    const uint32_t *cpt;
    int64_t ini, end, prev_end;
    seglist *out;
} splitter;

#define OUT_OF_RANGE 0xFFFFFFFFu

static inline uint32_t sp_cpt(const splitter *s, int64_t pos) {
    return pos >= s->ini && pos < s->end ? s->cpt[pos] : OUT_OF_RANGE;
}
static inline uint16_t sp_flags(const splitter *s, int64_t pos) {
    return pos >= s->ini && pos < s->end ? lv_cpt_flags(s->cpt[pos]) : 0;
}
/* close the current word at end; returns its length */
static inline int64_t sp_add(splitter *s, int64_t end) {
    int64_t len = end - s->prev_end;
    if (len > 0) seg_push(s->out, len);
    s->prev_end = end;
    return len;
}
static inline uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

#define F_WS LV_CPT_WHITESPACE
#define F_L LV_CPT_LETTER
#define F_N LV_CPT_NUMBER
#define F_M LV_CPT_MARK

/* 's|'t|'re|'ve|'m|'ll|'d (case-folded when fold): the length matched at pos, or 0 */
static int contraction(const splitter *s, int64_t pos, bool fold) {
    if (sp_cpt(s, pos) != '\'' || pos + 1 >= s->end) return 0;
    uint32_t a = sp_cpt(s, pos + 1);
    if (fold) a = ascii_lower(a);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 < s->end) {
        uint32_t b = sp_cpt(s, pos + 2);
        if (fold) b = ascii_lower(b);
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
    return 0;
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
static void split_gpt2(splitter *s) {
    for (int64_t pos = s->ini; pos < s->end;) {
        uint32_t cpt = sp_cpt(s, pos);
        uint16_t flags = sp_flags(s, pos);
        int c = contraction(s, pos, false);
        if (c) {
            pos += sp_add(s, pos + c);
            continue;
        }
        uint16_t f2 = cpt == ' ' ? sp_flags(s, pos + 1) : flags;
        if (f2 & F_L) {
            pos += cpt == ' ';
            while (f2 & F_L) f2 = sp_flags(s, ++pos);
            sp_add(s, pos);
            continue;
        }
        if (f2 & F_N) {
            pos += cpt == ' ';
            while (f2 & F_N) f2 = sp_flags(s, ++pos);
            sp_add(s, pos);
            continue;
        }
        if (!(f2 & (F_WS | F_L | F_N)) && f2) {
            pos += cpt == ' ';
            while (!(f2 & (F_WS | F_L | F_N)) && f2) f2 = sp_flags(s, ++pos);
            sp_add(s, pos);
            continue;
        }
        int64_t nws = 0;
        while (sp_flags(s, pos + nws) & F_WS) nws++;
        if (nws > 1 && sp_cpt(s, pos + nws) != OUT_OF_RANGE) { /* \s+(?!\S) */
            pos += nws - 1;
            sp_add(s, pos);
            continue;
        }
        if (nws > 0) {
            pos += nws;
            sp_add(s, pos);
            continue;
        }
        sp_add(s, ++pos);
    }
}

/* Llama 3 (digits = 3), Qwen2 (digits = 1) and Qwen3.5 (marks join letters):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static void split_llama3_like(splitter *s, int digits, bool marks) {
    const uint16_t LM = marks ? (F_L | F_M) : F_L;
    for (int64_t pos = s->ini; pos < s->end;) {
        uint32_t cpt = sp_cpt(s, pos);
        uint16_t flags = sp_flags(s, pos);
        int c = contraction(s, pos, true);
        if (c) {
            pos += sp_add(s, pos + c);
            continue;
        }
        if (!(cpt == '\r' || cpt == '\n' || (flags & F_N))) {
            if ((flags & LM) || (sp_flags(s, pos + 1) & LM)) {
                pos++;
                while (sp_flags(s, pos) & LM) pos++;
                sp_add(s, pos);
                continue;
            }
        }
        if (flags & F_N) {
            if (digits == 1) {
                sp_add(s, ++pos);
                continue;
            }
            int64_t ini = pos;
            while (sp_flags(s, pos) & F_N) {
                if (++pos - ini >= digits) {
                    sp_add(s, pos);
                    ini = pos;
                }
            }
            sp_add(s, pos);
            continue;
        }
        uint16_t f2 = cpt == ' ' ? sp_flags(s, pos + 1) : flags;
        /* (llama.cpp tests the current codepoint's flags here, not f2: kept as is) */
        if (!(f2 & (F_WS | LM | F_N)) && flags) {
            pos += cpt == ' ';
            while (!(f2 & (F_WS | LM | F_N)) && f2) f2 = sp_flags(s, ++pos);
            uint32_t c2 = sp_cpt(s, pos);
            while (c2 == '\r' || c2 == '\n') c2 = sp_cpt(s, ++pos);
            sp_add(s, pos);
            continue;
        }
        int64_t nws = 0, last_rn = 0;
        while (sp_flags(s, pos + nws) & F_WS) {
            uint32_t c2 = sp_cpt(s, pos + nws);
            if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
            nws++;
        }
        if (last_rn > 0) { /* \s*[\r\n]+ */
            pos = last_rn;
            sp_add(s, pos);
            continue;
        }
        if (nws > 1 && sp_cpt(s, pos + nws) != OUT_OF_RANGE) {
            pos += nws - 1;
            sp_add(s, pos);
            continue;
        }
        if (nws > 0) {
            pos += nws;
            sp_add(s, pos);
            continue;
        }
        sp_add(s, ++pos);
    }
}

/* [^\n]+|[\n]+ */
static void split_newlines(splitter *s) {
    for (int64_t pos = s->ini; pos < s->end;) {
        bool nl = s->cpt[pos] == '\n';
        int64_t start = pos;
        while (pos < s->end && (s->cpt[pos] == '\n') == nl) pos++;
        seg_push(s->out, pos - start);
    }
}

/* One PCRE2 expression over every segment, keeping matches and the gaps between them (empty
 * matches included, as llama.cpp's std::regex_iterator loop does). */
static lv_status split_pcre(const pcre2_code *code, pcre2_match_data *md, const uint32_t *units, const seglist *in,
                            seglist *out) {
    int64_t start = 0;
    for (int64_t k = 0; k < in->n; k++) {
        int64_t seglen = in->len[k];
        PCRE2_SPTR subject = (PCRE2_SPTR)(units + start);
        PCRE2_SIZE off = 0;
        uint32_t opts = 0;
        int64_t done = 0; /* end of the last match */
        for (;;) {
            if ((int64_t)off > seglen) break;
            int rc = pcre2_match(code, subject, (PCRE2_SIZE)seglen, off, opts, md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH) {
                if (opts == 0) break;
                /* an empty match could not be followed by a non-empty one here: step on */
                if ((int64_t)off >= seglen) break;
                off++;
                opts = 0;
                continue;
            }
            if (rc < 0) return lv_error(LV_ERR_INTERNAL, "pre-tokenizer regex failed (PCRE2 error %d)", rc);
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            int64_t ms = (int64_t)ov[0], me = (int64_t)ov[1];
            if (ms > done) seg_push(out, ms - done);
            seg_push(out, me - ms);
            done = me;
            off = (PCRE2_SIZE)me;
            opts = me == ms ? (PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED) : 0;
        }
        if (done < seglen) seg_push(out, seglen - done);
        start += seglen;
    }
    return LV_OK;
}

/* -------------------------------------------------------------------------------------------
 * GPT-2's byte <-> printable character map
 * ----------------------------------------------------------------------------------------- */

/* Bytes 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF stand for themselves; the other 68 take U+0100 +
 * their rank among those. */
static uint32_t byte_cpt(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    if (b <= 0x20) return 0x100u + b;             /* 0x00-0x20: ranks 0..32 */
    if (b <= 0xA0) return 0x100u + 33 + (b - 0x7F); /* 0x7F-0xA0: ranks 33..66 */
    return 0x100u + 67;                           /* 0xAD */
}

/* the byte a printable character stands for, or -1 */
static int cpt_byte(uint32_t c) {
    if ((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)) return (int)c;
    if (c >= 0x100 && c <= 0x100 + 32) return (int)(c - 0x100);
    if (c >= 0x100 + 33 && c <= 0x100 + 66) return (int)(c - 0x100 - 33 + 0x7F);
    if (c == 0x100 + 67) return 0xAD;
    return -1;
}

int lv_bpe_byte_char(uint8_t b, char *out) { return lv_utf8_encode(byte_cpt(b), out); }

size_t lv_bpe_decode_text(const char *text, size_t len, char *out, size_t cap) {
    size_t n = 0;
    for (size_t off = 0; off < len;) {
        size_t o0 = off;
        uint32_t c = lv_utf8_decode(text, len, &off);
        int b = cpt_byte(c);
        if (b >= 0) {
            if (n < cap) out[n] = (char)b;
            n++;
            continue;
        }
        /* llama.cpp: "[UNK_BYTE_0x" + hex of the character's UTF-8 + the whole token text + "]" */
        char u8[4];
        int ul = lv_utf8_encode(c, u8);
        (void)o0;
        static const char hex[] = "0123456789abcdef";
        char head[12 + 8];
        int h = 0;
        memcpy(head, "[UNK_BYTE_0x", 12);
        h = 12;
        for (int i = 0; i < ul; i++) {
            head[h++] = hex[(unsigned char)u8[i] >> 4];
            head[h++] = hex[(unsigned char)u8[i] & 15];
        }
        for (int i = 0; i < h; i++, n++)
            if (n < cap) out[n] = head[i];
        for (size_t i = 0; i < len; i++, n++)
            if (n < cap) out[n] = text[i];
        if (n < cap) out[n] = ']';
        n++;
    }
    return n;
}

/* -------------------------------------------------------------------------------------------
 * merging
 * ----------------------------------------------------------------------------------------- */

typedef struct bpe_sym {
    int32_t prev, next;
    uint32_t off, n;
} bpe_sym;

typedef struct bpe_bigram {
    int32_t left, right;
    int32_t rank;
    uint32_t size;
} bpe_bigram;

static inline bool bpe_before(const bpe_bigram *a, const bpe_bigram *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

/* per-call scratch, reused across words */
typedef struct bpe_work {
    bpe_sym *syms;
    int64_t cap_syms;
    bpe_bigram *heap;
    int64_t n_heap, cap_heap;
    char *word;
    size_t cap_word;
    bool oom;
} bpe_work;

static void heap_push(bpe_work *w, bpe_bigram b) {
    if (w->n_heap == w->cap_heap) {
        int64_t cap = w->cap_heap ? w->cap_heap * 2 : 64;
        bpe_bigram *p = lv_realloc(w->heap, (size_t)cap * sizeof(*p));
        if (!p) {
            w->oom = true;
            return;
        }
        w->heap = p;
        w->cap_heap = cap;
    }
    int64_t i = w->n_heap++;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!bpe_before(&b, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = b;
}

static bpe_bigram heap_pop(bpe_work *w) {
    bpe_bigram top = w->heap[0];
    bpe_bigram last = w->heap[--w->n_heap];
    int64_t i = 0, n = w->n_heap;
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, best = i;
        const bpe_bigram *bb = &last;
        if (l < n && bpe_before(&w->heap[l], bb)) {
            best = l;
            bb = &w->heap[l];
        }
        if (r < n && bpe_before(&w->heap[r], bb)) best = r;
        if (best == i) break;
        w->heap[i] = w->heap[best];
        i = best;
    }
    if (n > 0) w->heap[i] = last;
    return top;
}

static void add_bigram(const lv_vocab *v, bpe_work *w, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const bpe_sym *l = &w->syms[left], *r = &w->syms[right];
    int32_t rank = lv_bpe_rank(v, w->word + l->off, l->n, w->word + r->off, r->n);
    if (rank < 0) return;
    heap_push(w, (bpe_bigram){left, right, rank, l->n + r->n});
}

/* Merge one byte-encoded word (w->word[0..len)) and emit its tokens. */
static void bpe_word(const lv_vocab *v, bpe_work *w, size_t len, lv_tokbuf *out) {
    const char *word = w->word;
    if (v->pre.nl_words && len > 0 && strspn(word, "\n") >= len) { /* gemma4: a run of newlines that is a token */
        lv_token t = lv_vocab_find(v, word, len);
        if (t >= 0) {
            lv_tokbuf_push(out, t);
            return;
        }
    }
    if (v->ignore_merges) {
        lv_token t = lv_vocab_find(v, word, len);
        if (t >= 0) {
            lv_tokbuf_push(out, t);
            return;
        }
    }
    if ((int64_t)len > w->cap_syms) {
        bpe_sym *p = lv_realloc(w->syms, len * sizeof(bpe_sym));
        if (!p) {
            w->oom = true;
            return;
        }
        w->syms = p;
        w->cap_syms = (int64_t)len;
    }
    int32_t n = 0;
    for (size_t off = 0; off < len;) {
        size_t cl = lv_utf8_len((unsigned char)word[off]);
        if (cl > len - off) cl = len - off;
        w->syms[n] = (bpe_sym){n - 1, off + cl == len ? -1 : n + 1, (uint32_t)off, (uint32_t)cl};
        off += cl;
        n++;
    }
    w->n_heap = 0;
    for (int32_t i = 1; i < n; i++) add_bigram(v, w, i - 1, i);
    while (w->n_heap > 0 && !w->oom) {
        bpe_bigram b = heap_pop(w);
        bpe_sym *l = &w->syms[b.left], *r = &w->syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* outdated */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->syms[r->next].prev = b.left;
        add_bigram(v, w, l->prev, b.left);
        add_bigram(v, w, b.left, l->next);
    }
    for (int32_t i = 0; i != -1 && n > 0; i = w->syms[i].next) {
        const bpe_sym *s = &w->syms[i];
        if (s->n == 0) continue;
        lv_token t = lv_vocab_find(v, word + s->off, s->n);
        if (t >= 0) {
            lv_tokbuf_push(out, t);
            continue;
        }
        for (uint32_t k = 0; k < s->n; k++) { /* each byte as a one-byte token (raw UTF-8: "<0xXX>"), if there is one */
            lv_token bt;
            if (v->pre.raw_utf8) {
                char hex[7];
                snprintf(hex, sizeof(hex), "<0x%02X>", (unsigned char)word[s->off + k]);
                bt = lv_vocab_find(v, hex, 6);
            } else {
                bt = lv_vocab_find(v, word + s->off + k, 1);
            }
            if (bt >= 0) lv_tokbuf_push(out, bt);
        }
    }
}

lv_status lv_bpe_tokenize(const lv_vocab *v, const char *text, size_t len, lv_tokbuf *out) {
    if (len == 0) return LV_OK;
    lv_status st = LV_OK;
    const lv_pretok *p = &v->pre;
    uint32_t *cpts = lv_mallocn(len, sizeof(uint32_t));
    uint32_t *units = NULL; /* collapsed text (or codepoints with spaces folded) for PCRE2 */
    seglist a = {0}, b = {0};
    pcre2_match_data *md = NULL;
    bpe_work w = {0};
    if (!cpts) return LV_ERR_NOMEM;
    int64_t n = 0;
    for (size_t off = 0; off < len;) {
        uint32_t c = lv_utf8_decode(text, len, &off);
        /* llama.cpp throws (and aborts) on codepoints past U+10FFFF (lead bytes F5-F7); we read
         * them as U+FFFD */
        if (c > 0x10FFFF) c = LV_CPT_REPLACEMENT;
        if (c == ' ' && v->escape_whitespaces) c = 0x2581; /* SPM-style BPE: llama_escape_whitespace before splitting */
        cpts[n++] = c;
    }
    seg_push(&a, n);
    for (int k = 0; k < p->n && !a.oom; k++) {
        b.n = 0;
        if (p->kind[k] == LV_SPLIT_PCRE_COLLAPSED || p->kind[k] == LV_SPLIT_PCRE_WIDE) {
            if (!units) {
                units = lv_mallocn((size_t)n, sizeof(uint32_t));
                if (!units) goto oom;
            }
            bool collapsed = p->kind[k] == LV_SPLIT_PCRE_COLLAPSED;
            for (int64_t i = 0; i < n; i++) {
                uint32_t c = cpts[i];
                if (c < 128) {
                    units[i] = c;
                    continue;
                }
                uint16_t f = lv_cpt_flags(c);
                if (f & LV_CPT_WHITESPACE) units[i] = 0x0B;
                else if (!collapsed) units[i] = c;
                else switch (f & LV_CPT_CATEGORIES) {
                    case LV_CPT_NUMBER: units[i] = 0xD1; break;
                    case LV_CPT_LETTER: units[i] = 0xD2; break;
                    case LV_CPT_PUNCTUATION: units[i] = 0xD3; break;
                    case LV_CPT_MARK: units[i] = 0xD4; break;
                    case LV_CPT_SYMBOL: units[i] = 0xD5; break;
                    default: units[i] = 0xD0; break;
                    }
            }
            const pcre2_code *code = p->code[k];
            pcre2_match_data_free(md);
            md = pcre2_match_data_create_from_pattern(code, NULL);
            if (!md) goto oom;
            if ((st = split_pcre(code, md, units, &a, &b)) != LV_OK) goto done;
        } else {
            splitter s = {cpts, 0, 0, 0, &b};
            int64_t start = 0;
            for (int64_t i = 0; i < a.n; i++) {
                s.ini = s.prev_end = start;
                s.end = start + a.len[i];
                switch (p->kind[k]) {
                case LV_SPLIT_GPT2: split_gpt2(&s); break;
                case LV_SPLIT_LLAMA3: split_llama3_like(&s, 3, false); break;
                case LV_SPLIT_QWEN2: split_llama3_like(&s, 1, false); break;
                case LV_SPLIT_QWEN35: split_llama3_like(&s, 1, true); break;
                case LV_SPLIT_NEWLINES: split_newlines(&s); break;
                default: LV_ASSERT(0);
                }
                start = s.end;
            }
        }
        if (b.oom) goto oom;
        seglist t = a;
        a = b;
        b = t;
    }
    if (a.oom) goto oom;
    /* byte-encode and merge each word */
    {
        int64_t start = 0;
        for (int64_t i = 0; i < a.n && !w.oom && !out->oom; i++) {
            int64_t wl = a.len[i];
            size_t need = (size_t)wl * 8;
            if (need > w.cap_word) {
                char *q = lv_realloc(w.word, need);
                if (!q) goto oom;
                w.word = q;
                w.cap_word = need;
            }
            size_t o = 0;
            for (int64_t j = start; j < start + wl; j++) {
                char u8[4];
                int ul = lv_utf8_encode(cpts[j], u8);
                if (p->raw_utf8) {
                    memcpy(w.word + o, u8, (size_t)ul);
                    o += (size_t)ul;
                } else {
                    for (int q = 0; q < ul; q++) o += (size_t)lv_bpe_byte_char((uint8_t)u8[q], w.word + o);
                }
            }
            start += wl;
            if (o) bpe_word(v, &w, o, out);
        }
        if (w.oom) goto oom;
    }
    goto done;
oom:
    st = LV_ERR_NOMEM;
done:
    pcre2_match_data_free(md);
    lv_free(cpts);
    lv_free(units);
    lv_free(a.len);
    lv_free(b.len);
    lv_free(w.syms);
    lv_free(w.heap);
    lv_free(w.word);
    return st;
}
