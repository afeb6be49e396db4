/*
 * eval.c: long-context retrieval prompts (needle in a haystack, passkey) of an exact token length
 * with the needle at a chosen depth, and the answer rule. `longview eval` drives them.
 *
 * Prompt layout (docs/eval.md has the texts):
 *
 *     [BOS] [chat prefix] INTRO  FILLER[0:i] NEEDLE FILLER[i:K]  CLOSE QUESTION [chat suffix] ANSWER_LEAD
 *
 * NIAH follows DuoAttention's eval/needle (itself after gkamradt's LLMTest_NeedleInAHaystack): the
 * Paul Graham essays as a "story book", the San Francisco needle, "Answer: The best thing to do in
 * San Francisco is" as the start of the answer. Passkey follows the Landmark Attention / LongLoRA
 * format: a task line, the grass/sky/sun filler repeated, "The pass key is NNNNN. Remember it.
 * NNNNN is the pass key." on its own line, "What is the pass key? The pass key is".
 *
 * Hitting the length: the filler is tokenized once (per haystack rotation); K filler tokens map to
 * a byte offset through the token pieces; the prompt text for K is assembled and tokenized whole
 * (so the tokens are the tokenizer's, with no seams), and K is corrected until the prompt has the
 * requested length (or the longest length below it, when the boundary tokens merge). The needle
 * goes to the sentence boundary nearest to depth * K filler tokens; its token offset is found by
 * mapping its byte offset through the pieces of the final tokens.
 *
 * Not done here: running the model (tools/cmd_eval.c does), scoring with ROUGE (the answer rule
 * below is a keyword rule, documented in longview.h).
 */
#define _GNU_SOURCE
#include "eval/eval.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EVAL_MAX_FILE ((int64_t)64 << 20)      /* one essay */
#define EVAL_MAX_HAYSTACK ((int64_t)512 << 20) /* all of them */
#define EVAL_MAX_FILES 100000
#define EVAL_MAX_ITERS 16

/* ---- the texts ---------------------------------------------------------------------------- */

static const char k_niah_needle[] = "\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.\n";
static const char k_niah_keywords[] = "sandwich|Dolores Park";
static const char k_niah_question[] = "What is the best thing to do in San Francisco?";
static const char k_niah_answer_prefix[] = "The best thing to do in San Francisco is";
static const char k_niah_intro[] = "This is a very long story book: <book> ";
static const char k_niah_close[] = " </book>.\n\nQuestion: ";
static const char k_niah_answer_lead[] = "\nAnswer:";

static const char k_pk_intro[] = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
                                 "I will quiz you about the important information there.\n";
static const char k_pk_filler[] = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
static const char k_pk_question[] = "What is the pass key?";
static const char k_pk_answer_prefix[] = "The pass key is";
static const char k_pk_close[] = "\n";
static const char k_pk_answer_lead[] = "";
#define PK_UNIT_REPEAT 64 /* filler sentences per tokenized unit */
#define EVAL_MAX_NEEDLES 10

static const char *const k_ordinals[EVAL_MAX_NEEDLES] = {"first", "second", "third", "fourth", "fifth",
                                                         "sixth", "seventh", "eighth", "ninth", "tenth"};
static const char k_mv_question[] = "What are all the pass keys?";
static const char k_mv_answer_prefix[] = "The pass keys are";

/* ---- a growable string -------------------------------------------------------------------- */

typedef struct sbuf_ {
    char *p;
    int64_t n, cap;
    bool oom;
} sbuf_;

static void sb_put(sbuf_ *b, const char *s, int64_t n) {
    if (b->oom || n <= 0) return;
    if (b->n + n + 1 > b->cap) {
        int64_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = lv_realloc(b->p, (size_t)nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, (size_t)n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_puts(sbuf_ *b, const char *s) { sb_put(b, s, (int64_t)strlen(s)); }

/* ---- the builder -------------------------------------------------------------------------- */

/* A piece of filler (an essay; the passkey's block of sentences), tokenized on first use. */
typedef struct essay_ {
    char *text;
    int64_t len;
    int32_t ntok;  /* -1: not tokenized yet */
    int64_t *off;  /* (ntok + 1) byte offset where each token starts */
} essay_;

struct lv_eval {
    const lv_model *model;
    lv_eval_task task;
    int32_t n_needles;
    char *needle, *keywords, *question, *answer_prefix;
    const char *intro, *close, *answer_lead;
    bool parse_special;
    char *chat_pre, *chat_post; /* NULL without a chat template */
    lv_token bos;
    bool add_bos;
    /* the filler: essays[rot], essays[rot + 1], ... cycling (NIAH: in name order; passkey: one block) */
    essay_ *essays;
    int32_t n_essays;
    sbuf_ fill; /* scratch: the filler of the prompt being assembled */
};

lv_eval_params lv_eval_default_params(void) {
    lv_eval_params p;
    memset(&p, 0, sizeof(p));
    p.task = LV_EVAL_NIAH;
    return p;
}

static int cmp_str_(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static lv_status read_essay_(const char *path, essay_ *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return lv_error(LV_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || st.st_size > EVAL_MAX_FILE) {
        fclose(f);
        return lv_error(LV_ERR_INVALID_ARG, "haystack file '%s' is larger than %lld bytes", path, (long long)EVAL_MAX_FILE);
    }
    char *t = lv_malloc((size_t)st.st_size + 1);
    if (!t) {
        fclose(f);
        return LV_ERR_NOMEM;
    }
    size_t n = fread(t, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        lv_free(t);
        return lv_error(LV_ERR_IO, "reading '%s' failed", path);
    }
    t[n] = '\0';
    if (strlen(t) != n) {
        lv_free(t);
        return lv_error(LV_ERR_INVALID_ARG, "haystack file '%s' contains a NUL byte: not a text file", path);
    }
    e->text = t;
    e->len = (int64_t)n;
    return LV_OK;
}

/* Every *.txt regular file of dir, in name order. */
static lv_status read_haystack_(lv_eval *ev, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return lv_error(LV_ERR_IO, "cannot open the haystack directory '%s': %s", dir, strerror(errno));
    char **names = NULL;
    int32_t n = 0, cap = 0;
    lv_status st = LV_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 4, ".txt") != 0 || de->d_name[0] == '.') continue;
        if (n == EVAL_MAX_FILES) {
            st = lv_error(LV_ERR_INVALID_ARG, "the haystack directory '%s' has more than %d .txt files", dir, EVAL_MAX_FILES);
            goto end;
        }
        if (n == cap) {
            int32_t nc = cap ? 2 * cap : 64;
            char **nn = lv_realloc(names, (size_t)nc * sizeof(char *));
            if (!nn) {
                st = LV_ERR_NOMEM;
                goto end;
            }
            names = nn;
            cap = nc;
        }
        if (!(names[n] = lv_strdup(de->d_name))) {
            st = LV_ERR_NOMEM;
            goto end;
        }
        n++;
    }
    if (n == 0) {
        st = lv_error(LV_ERR_INVALID_ARG, "the haystack directory '%s' has no .txt files", dir);
        goto end;
    }
    qsort(names, (size_t)n, sizeof(char *), cmp_str_);
    if (!(ev->essays = lv_calloc((size_t)n, sizeof(essay_)))) {
        st = LV_ERR_NOMEM;
        goto end;
    }
    int64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t pl = strlen(dir) + strlen(names[i]) + 2;
        char *path = lv_malloc(pl);
        if (!path) {
            st = LV_ERR_NOMEM;
            goto end;
        }
        snprintf(path, pl, "%s/%s", dir, names[i]);
        struct stat sst;
        if (stat(path, &sst) != 0 || !S_ISREG(sst.st_mode)) {
            lv_free(path);
            continue;
        }
        essay_ e = {0};
        e.ntok = -1;
        st = read_essay_(path, &e);
        lv_free(path);
        if (st != LV_OK) goto end;
        if (e.len == 0) {
            lv_free(e.text);
            continue;
        }
        total += e.len;
        if (total > EVAL_MAX_HAYSTACK) {
            lv_free(e.text);
            st = lv_error(LV_ERR_INVALID_ARG, "the haystack in '%s' is larger than %lld bytes", dir, (long long)EVAL_MAX_HAYSTACK);
            goto end;
        }
        ev->essays[ev->n_essays++] = e;
    }
    if (ev->n_essays == 0) st = lv_error(LV_ERR_INVALID_ARG, "the .txt files in the haystack directory '%s' are all empty", dir);
end:
    for (int32_t i = 0; i < n; i++) lv_free(names[i]);
    lv_free(names);
    closedir(d);
    return st;
}

/* Tokenize text[0:len] (no BOS/EOS) into a new array. */
static lv_status tokenize_(const lv_eval *ev, const char *text, int64_t len, lv_token **out, int32_t *n_out) {
    *out = NULL;
    *n_out = 0;
    if (len > INT32_MAX - 16) return lv_error(LV_ERR_INVALID_ARG, "a prompt of %lld bytes is too long to tokenize", (long long)len);
    /* usually a token covers at least a byte; byte-fallback vocabularies may need more (then retry) */
    int32_t cap = (int32_t)len + 8;
    lv_token *t = lv_mallocn((size_t)cap, sizeof(lv_token));
    if (!t) return LV_ERR_NOMEM;
    int32_t n = lv_tokenize(ev->model, text, len, t, cap, false, ev->parse_special);
    if (n < 0 && n != INT32_MIN) {
        cap = -n;
        lv_free(t);
        if (!(t = lv_mallocn((size_t)cap, sizeof(lv_token)))) return LV_ERR_NOMEM;
        n = lv_tokenize(ev->model, text, len, t, cap, false, ev->parse_special);
    }
    if (n < 0) {
        lv_free(t);
        if (n != INT32_MIN) return lv_error(LV_ERR_INTERNAL, "tokenize: %d tokens from %lld bytes", -n, (long long)len);
        /* lv_tokenize reports no status: its message tells out-of-memory apart */
        return strstr(lv_last_error(), "out of memory") ? LV_ERR_NOMEM : LV_ERR_INVALID_ARG;
    }
    *out = t;
    *n_out = n;
    return LV_OK;
}

/* The byte length of a token's piece (render_special: special tokens as their text). */
static int32_t piece_len_(const lv_eval *ev, lv_token t, bool render_special) {
    char small[64];
    int32_t n = lv_token_to_piece(ev->model, t, small, (int32_t)sizeof(small), render_special);
    return n == INT32_MIN ? 0 : n < 0 ? -n : n;
}

/* Byte offsets where tokens t[0..n) start in the text they came from (off has n + 1 entries).
 * Uses the pieces; a SentencePiece leading space is allowed for. Returns false when the pieces do
 * not add up to the text (a normalizing tokenizer, unknown tokens), leaving off untouched. */
static bool piece_offsets_(const lv_eval *ev, const lv_token *t, int32_t n, const char *text, int64_t text_len, bool render_special,
                           int64_t *off) {
    int64_t pos = 0;
    for (int32_t i = 0; i < n; i++) pos += piece_len_(ev, t[i], render_special);
    int64_t shift = pos - text_len;
    if (shift != 0) {
        char first[8];
        int32_t fl = n > 0 ? lv_token_to_piece(ev->model, t[0], first, (int32_t)sizeof(first), render_special) : 0;
        if (!(shift == 1 && fl >= 1 && first[0] == ' ' && (text_len == 0 || text[0] != ' '))) return false;
    }
    pos = 0;
    for (int32_t i = 0; i < n; i++) {
        off[i] = pos - shift < 0 ? 0 : pos - shift;
        pos += piece_len_(ev, t[i], render_special);
    }
    off[n] = text_len;
    return true;
}

/* Tokenize essay i (once) and find where its tokens start. */
static lv_status tokenize_essay_(lv_eval *ev, int32_t i) {
    essay_ *e = &ev->essays[i];
    if (e->ntok >= 0) return LV_OK;
    lv_token *t = NULL;
    int32_t n = 0;
    const bool ps = ev->parse_special;
    ev->parse_special = false; /* filler text is never special */
    lv_status st = tokenize_(ev, e->text, e->len, &t, &n);
    ev->parse_special = ps;
    if (st != LV_OK) return st;
    if (n == 0) {
        lv_free(t);
        return lv_error(LV_ERR_INVALID_ARG, "filler text of %lld bytes tokenizes to nothing", (long long)e->len);
    }
    int64_t *off = lv_mallocn((size_t)n + 1, sizeof(int64_t));
    if (!off) {
        lv_free(t);
        return LV_ERR_NOMEM;
    }
    if (!piece_offsets_(ev, t, n, e->text, e->len, false, off)) {
        /* proportional: only a first guess, the length loop corrects it */
        for (int32_t j = 0; j <= n; j++) off[j] = (int64_t)((double)e->len * j / n);
    }
    lv_free(t);
    e->off = off;
    e->ntok = n;
    return LV_OK;
}

/* Byte length of the first k filler tokens starting at essay rot (essays tokenized one by one,
 * so the seams are approximate), at a UTF-8 character boundary. */
static lv_status filler_bytes_(lv_eval *ev, int32_t rot, int64_t k, int64_t *bytes) {
    int64_t b = 0;
    for (int32_t i = rot;; i = (i + 1) % ev->n_essays) {
        lv_status st = tokenize_essay_(ev, i);
        if (st != LV_OK) return st;
        const essay_ *e = &ev->essays[i];
        if (k < e->ntok) {
            int64_t c = e->off[k];
            while (c > 0 && c < e->len && ((unsigned char)e->text[c] & 0xc0) == 0x80) c--;
            *bytes = b + c;
            return LV_OK;
        }
        k -= e->ntok;
        b += e->len;
    }
}

/* The first n bytes of the filler starting at essay rot, into ev->fill. */
static void filler_text_(lv_eval *ev, int32_t rot, int64_t n) {
    sbuf_ *f = &ev->fill;
    f->n = 0;
    for (int32_t i = rot; f->n < n && !f->oom; i = (i + 1) % ev->n_essays) sb_put(f, ev->essays[i].text, LV_MIN(ev->essays[i].len, n - f->n));
}

static bool is_space_(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

/* Whether a needle may go before byte i of a filler of n bytes: the start, the end, or a space after
 * the end of a sentence (. ! ? possibly followed by a closing quote or bracket). */
static bool sentence_boundary_(const char *f, int64_t i, int64_t n) {
    if (i <= 0 || i >= n) return true;
    if (!is_space_(f[i])) return false;
    int64_t j = i - 1;
    for (int k = 0; k < 2 && j > 0 && f[j] && strchr("\"')]", f[j]); k++) j--;
    return f[j] == '.' || f[j] == '!' || f[j] == '?';
}

static int64_t nearest_boundary_(const char *f, int64_t p, int64_t n) {
    for (int64_t d = 0; d <= n; d++) {
        if (p - d >= 0 && sentence_boundary_(f, p - d, n)) return p - d;
        if (p + d <= n && sentence_boundary_(f, p + d, n)) return p + d;
    }
    return p;
}

static lv_status set_str_(char **dst, const char *src) {
    *dst = lv_strdup(src);
    return *dst ? LV_OK : LV_ERR_NOMEM;
}

void lv_eval_free(lv_eval *ev) {
    if (!ev) return;
    for (int32_t i = 0; i < ev->n_essays; i++) {
        lv_free(ev->essays[i].text);
        lv_free(ev->essays[i].off);
    }
    lv_free(ev->essays);
    lv_free(ev->needle);
    lv_free(ev->keywords);
    lv_free(ev->question);
    lv_free(ev->answer_prefix);
    lv_free(ev->chat_pre);
    lv_free(ev->chat_post);
    lv_free(ev->fill.p);
    lv_free(ev);
}

static lv_status setup_chat_(lv_eval *ev, const lv_eval_params *pp) {
    const char *tmpl = pp->chat_template;
    if (!tmpl) {
        const lv_vocab *v = lv_model_vocab(ev->model);
        if (!v || !lv_vocab_chat_template(v))
            return lv_error(LV_ERR_INVALID_ARG, "the model has no chat template (tokenizer.chat_template): name one (--chat-template NAME)");
    }
    static const char mark[] = "\x1eLV-EVAL-CONTENT\x1e";
    lv_chat_message m = {"user", mark};
    int64_t need = lv_chat_apply_template(ev->model, tmpl, &m, 1, true, NULL, 0);
    if (need == INT32_MIN) return LV_ERR_INVALID_ARG;
    need = need < 0 ? -need : need + 1;
    char *buf = lv_malloc((size_t)need);
    if (!buf) return LV_ERR_NOMEM;
    int64_t n = lv_chat_apply_template(ev->model, tmpl, &m, 1, true, buf, need);
    const char *at = n >= 0 ? strstr(buf, mark) : NULL;
    if (!at) {
        lv_free(buf);
        return lv_error(LV_ERR_INTERNAL, "chat template: the user message was not found in the rendered text");
    }
    ev->chat_pre = lv_malloc((size_t)(at - buf) + 1);
    ev->chat_post = lv_strdup(at + strlen(mark));
    if (!ev->chat_pre || !ev->chat_post) {
        lv_free(buf);
        return LV_ERR_NOMEM;
    }
    memcpy(ev->chat_pre, buf, (size_t)(at - buf));
    ev->chat_pre[at - buf] = '\0';
    lv_free(buf);
    ev->parse_special = true;
    return LV_OK;
}

lv_status lv_eval_create(const lv_model *model, const lv_eval_params *pp, lv_eval **out) {
    if (!out) return lv_error(LV_ERR_INVALID_ARG, "lv_eval_create: out is NULL");
    *out = NULL;
    if (!model || !pp) return lv_error(LV_ERR_INVALID_ARG, "lv_eval_create: model or params is NULL");
    if (!lv_model_vocab(model)) return lv_error(LV_ERR_INVALID_ARG, "the model has no tokenizer: prompts cannot be built");
    if (pp->task != LV_EVAL_NIAH && pp->task != LV_EVAL_PASSKEY && pp->task != LV_EVAL_MULTIKEY && pp->task != LV_EVAL_MULTIVALUE)
        return lv_error(LV_ERR_INVALID_ARG, "unknown evaluation task %d", (int)pp->task);
    const bool niah = pp->task == LV_EVAL_NIAH, multi = pp->task == LV_EVAL_MULTIKEY || pp->task == LV_EVAL_MULTIVALUE;
    if (!niah && (pp->needle || pp->keywords || pp->haystack_dir))
        return lv_error(LV_ERR_INVALID_ARG, "passkey prompts take no needle, keywords or haystack (they are NIAH settings)");
    if (multi && pp->n_needles != 0 && (pp->n_needles < 2 || pp->n_needles > EVAL_MAX_NEEDLES))
        return lv_error(LV_ERR_INVALID_ARG, "%d needles: multikey and multivalue prompts take 2 to %d", pp->n_needles, EVAL_MAX_NEEDLES);
    if (!multi && pp->n_needles > 1) return lv_error(LV_ERR_INVALID_ARG, "only multikey and multivalue prompts have several needles");
    if (niah && !pp->haystack_dir) return lv_error(LV_ERR_INVALID_ARG, "NIAH needs a haystack directory (of .txt files)");
    if (niah && pp->needle && !pp->keywords)
        return lv_error(LV_ERR_INVALID_ARG, "a custom needle needs its answer keywords ('|'-separated phrases a correct answer contains)");
    if (niah && pp->needle && !pp->needle[0]) return lv_error(LV_ERR_INVALID_ARG, "the needle is empty");
    lv_eval *ev = lv_calloc(1, sizeof(*ev));
    if (!ev) return LV_ERR_NOMEM;
    ev->model = model;
    ev->task = pp->task;
    ev->n_needles = multi ? (pp->n_needles ? pp->n_needles : 4) : 1;
    ev->bos = lv_token_bos(model);
    ev->add_bos = lv_tokenizer_add_bos(model) && ev->bos >= 0;
    ev->intro = niah ? k_niah_intro : k_pk_intro;
    ev->close = niah ? k_niah_close : k_pk_close;
    ev->answer_lead = niah ? k_niah_answer_lead : k_pk_answer_lead;
    lv_status st;
    const bool mv = pp->task == LV_EVAL_MULTIVALUE;
    /* multikey's question names the asked key's order: built per prompt (a custom one is refused) */
    if (pp->task == LV_EVAL_MULTIKEY && (pp->question || pp->answer_prefix)) {
        st = lv_error(LV_ERR_INVALID_ARG, "multikey prompts build their own question (it names the key asked for)");
        goto fail;
    }
    if ((st = set_str_(&ev->question, pp->question ? pp->question : niah ? k_niah_question : mv ? k_mv_question : k_pk_question)) != LV_OK ||
        (st = set_str_(&ev->answer_prefix, pp->answer_prefix ? pp->answer_prefix : niah ? k_niah_answer_prefix : mv ? k_mv_answer_prefix : k_pk_answer_prefix)) != LV_OK)
        goto fail;
    if (niah && ((st = set_str_(&ev->needle, pp->needle ? pp->needle : k_niah_needle)) != LV_OK ||
                 (st = set_str_(&ev->keywords, pp->keywords ? pp->keywords : k_niah_keywords)) != LV_OK))
        goto fail;
    if (niah) {
        double score = 0;
        if (!lv_eval_check_answer(ev->keywords, ev->needle, (int64_t)strlen(ev->needle), &score)) {
            st = lv_error(LV_ERR_INVALID_ARG, "the needle does not contain its keywords '%s' (found %.0f%%): no answer could be right", ev->keywords,
                          100 * score);
            goto fail;
        }
    }
    if ((pp->chat || pp->chat_template) && (st = setup_chat_(ev, pp)) != LV_OK) goto fail;
    if (niah) {
        if ((st = read_haystack_(ev, pp->haystack_dir)) != LV_OK) goto fail;
    } else {
        sbuf_ b = {0};
        for (int i = 0; i < PK_UNIT_REPEAT; i++) {
            sb_puts(&b, k_pk_filler);
            sb_puts(&b, " ");
        }
        if (b.oom || !(ev->essays = lv_calloc(1, sizeof(essay_)))) {
            lv_free(b.p);
            st = LV_ERR_NOMEM;
            goto fail;
        }
        ev->essays[0] = (essay_){b.p, b.n, -1, NULL};
        ev->n_essays = 1;
    }
    if ((st = tokenize_essay_(ev, 0)) != LV_OK) goto fail; /* the tokenizer works on this text */
    *out = ev;
    return LV_OK;
fail:
    lv_eval_free(ev);
    return st;
}

/* ---- building one prompt ------------------------------------------------------------------ */

typedef struct layout_ {
    sbuf_ text;
    int64_t ctx_begin, ctx_end;     /* byte range of the filler (needle included) */
    int64_t needle_begin, needle_end; /* byte range of the needle without its surrounding spaces */
} layout_;

/* A needle to insert: its text and depth; needles are passed sorted by depth (the order in the text). */
typedef struct needle_ {
    const char *text;
    double depth;
} needle_;

/* The prompt text for k filler tokens, the needles nd[0..nn) (sorted by depth) inserted at the
 * sentence boundaries nearest their depths; L's needle range is that of nd[main]. */
static lv_status assemble_(lv_eval *ev, int32_t rot, const needle_ *nd, int nn, int main_needle, const char *question, const char *answer_prefix,
                           int64_t k, layout_ *L) {
    int64_t fb = 0, at[EVAL_MAX_NEEDLES];
    lv_status st = filler_bytes_(ev, rot, k, &fb);
    for (int j = 0; j < nn && st == LV_OK; j++) {
        at[j] = 0;
        if (nd[j].depth > 0.0 && nd[j].depth < 1.0) st = filler_bytes_(ev, rot, (int64_t)llround(nd[j].depth * (double)k), &at[j]);
    }
    if (st != LV_OK) return st;
    filler_text_(ev, rot, fb);
    if (ev->fill.oom) return LV_ERR_NOMEM;
    const char *f = ev->fill.p ? ev->fill.p : "";
    for (int j = 0; j < nn; j++) {
        if (nd[j].depth >= 1.0) at[j] = fb;
        at[j] = nearest_boundary_(f, at[j], fb);
        if (j > 0 && at[j] < at[j - 1]) at[j] = at[j - 1]; /* keep the order of the depths */
    }

    sbuf_ *b = &L->text;
    b->n = 0;
    if (b->p) b->p[0] = '\0';
    if (ev->chat_pre) sb_puts(b, ev->chat_pre);
    sb_puts(b, ev->intro);
    L->ctx_begin = b->n;
    int64_t from = 0;
    for (int j = 0; j < nn; j++) {
        if (at[j] > from) sb_put(b, f + from, at[j] - from);
        const int64_t nl = (int64_t)strlen(nd[j].text);
        int64_t lead = 0, trail = 0;
        while (lead < nl && is_space_(nd[j].text[lead])) lead++;
        while (trail < nl - lead && is_space_(nd[j].text[nl - 1 - trail])) trail++;
        if (j == main_needle) L->needle_begin = b->n + lead;
        sb_put(b, nd[j].text, nl);
        if (j == main_needle) L->needle_end = b->n - trail;
        /* the needle's own trailing space replaces the space after the sentence */
        const int64_t next = trail > 0 && at[j] < fb && f[at[j]] == ' ' ? at[j] + 1 : at[j];
        if (next > from) from = next;
    }
    sb_put(b, f + from, fb - from);
    L->ctx_end = b->n;
    sb_puts(b, ev->close);
    sb_puts(b, question);
    if (ev->chat_post) {
        sb_puts(b, ev->chat_post);
        sb_puts(b, answer_prefix);
    } else {
        sb_puts(b, ev->answer_lead);
        if (answer_prefix[0]) {
            if (b->n > 0 && !is_space_(b->p[b->n - 1])) sb_puts(b, " ");
            sb_puts(b, answer_prefix);
        }
    }
    return b->oom ? LV_ERR_NOMEM : LV_OK;
}

/* Tokenize the assembled text, BOS first when the vocabulary adds one (*prepended: whether this
 * added it; a chat template may have written it as text). */
static lv_status tokenize_prompt_(const lv_eval *ev, const layout_ *L, lv_token **out, int32_t *n, bool *prepended) {
    if (prepended) *prepended = false;
    lv_token *t = NULL;
    int32_t m = 0;
    lv_status st = tokenize_(ev, L->text.p, L->text.n, &t, &m);
    if (st != LV_OK) return st;
    if (ev->add_bos && (m == 0 || t[0] != ev->bos)) {
        lv_token *nt = lv_realloc(t, ((size_t)m + 1) * sizeof(lv_token));
        if (!nt) {
            lv_free(t);
            return LV_ERR_NOMEM;
        }
        t = nt;
        memmove(t + 1, t, (size_t)m * sizeof(lv_token));
        t[0] = ev->bos;
        m++;
        if (prepended) *prepended = true;
    }
    *out = t;
    *n = m;
    return LV_OK;
}

/* Index of the token that holds byte c of the text (tokens t[0..n), of which the first `skip` are not in the text). */
static int32_t token_at_(const int64_t *off, int32_t n, int32_t skip, int64_t c) {
    int32_t lo = skip, hi = n - 1; /* last token with off <= c */
    if (hi < lo) return n;
    while (lo < hi) {
        const int32_t mid = lo + (hi - lo + 1) / 2;
        if (off[mid - skip] <= c) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Count of the tokens (BOS included) of the text's first c bytes: the fallback mapping. */
static lv_status count_prefix_(const lv_eval *ev, const layout_ *L, int64_t c, int32_t *out) {
    layout_ tmp = *L;
    tmp.text.n = c;
    lv_token *t = NULL;
    int32_t n = 0;
    lv_status st = tokenize_prompt_(ev, &tmp, &t, &n, NULL);
    lv_free(t);
    *out = n;
    return st;
}

static bool blank_token_(const lv_eval *ev, lv_token t) {
    char buf[64];
    const int32_t n = lv_token_to_piece(ev->model, t, buf, (int32_t)sizeof(buf), true);
    if (n <= 0) return n == 0;
    for (int32_t i = 0; i < n; i++)
        if (!is_space_(buf[i])) return false;
    return true;
}

/* Token offsets of the filler and the needle: through the pieces of the final tokens, or (when the
 * pieces do not add up to the text) by tokenizing prefixes of the text. */
static lv_status locate_(const lv_eval *ev, const layout_ *L, const lv_token *t, int32_t n, bool bos_prepended, lv_eval_prompt *p) {
    const int32_t skip = bos_prepended ? 1 : 0;
    int64_t *off = lv_mallocn((size_t)(n - skip) + 1, sizeof(int64_t));
    if (!off) return LV_ERR_NOMEM;
    lv_status st = LV_OK;
    if (piece_offsets_(ev, t + skip, n - skip, L->text.p, L->text.n, true, off)) {
        p->context_begin = token_at_(off, n, skip, L->ctx_begin);
        p->needle_pos = token_at_(off, n, skip, L->needle_begin);
        const int32_t ne = token_at_(off, n, skip, L->needle_end - 1) + 1;
        p->needle_len = ne - p->needle_pos;
        p->context_end = L->ctx_end > L->ctx_begin ? token_at_(off, n, skip, L->ctx_end - 1) + 1 : p->context_begin;
    } else {
        int32_t cb = 0, nb = 0, ne = 0, ce = 0;
        if ((st = count_prefix_(ev, L, L->ctx_begin, &cb)) != LV_OK || (st = count_prefix_(ev, L, L->needle_begin, &nb)) != LV_OK ||
            (st = count_prefix_(ev, L, L->needle_end, &ne)) != LV_OK || (st = count_prefix_(ev, L, L->ctx_end, &ce)) != LV_OK)
            goto end;
        /* a prefix cut before a merge ("\n\n" + "The") counts one token too few: skip whitespace tokens */
        nb = LV_MIN(nb, n - 1);
        while (nb < ne - 1 && nb < n - 1 && blank_token_(ev, t[nb])) nb++;
        p->context_begin = cb;
        p->needle_pos = nb;
        p->needle_len = LV_MAX(ne - nb, 1);
        p->context_end = LV_MIN(ce, n);
    }
    const double room = (double)(p->context_end - p->context_begin - p->needle_len);
    double d = room > 0 ? (double)(p->needle_pos - p->context_begin) / room : 0.0;
    p->depth = d < 0 ? 0 : d > 1 ? 1 : d;
end:
    lv_free(off);
    return st;
}

static uint64_t splitmix_(uint64_t x) {
    uint64_t z = x + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void lv_eval_prompt_free(lv_eval_prompt *p) {
    if (!p) return;
    lv_free(p->tokens);
    lv_free(p->text);
    lv_free(p->answer);
    lv_free(p->answer_text);
    lv_free(p->needle);
    lv_free(p);
}

/* a 5-digit key (10000-99999) from a hash: passkey's keys and keyed NIAH needles */
static unsigned key_of_(uint64_t h) { return 10000u + (unsigned)(h % 90000u); }

/* src with every "{key}" replaced by key (5 digits); NULL when out of memory */
static char *subst_key_(const char *src, unsigned key) {
    char *out = lv_malloc(strlen(src) + 1), *o = out; /* "{key}" (5) -> 5 digits: same length */
    if (!out) return NULL;
    for (const char *q = src; *q;) {
        if (strncmp(q, "{key}", 5) == 0) {
            o += snprintf(o, 6, "%05u", key);
            q += 5;
        } else {
            *o++ = *q++;
        }
    }
    *o = '\0';
    return out;
}

lv_status lv_eval_build(lv_eval *ev, int32_t n_tokens, double depth, uint64_t seed, lv_eval_prompt **out) {
    if (!out) return lv_error(LV_ERR_INVALID_ARG, "lv_eval_build: out is NULL");
    *out = NULL;
    if (!ev) return lv_error(LV_ERR_INVALID_ARG, "lv_eval_build: the builder is NULL");
    if (!(depth >= 0.0 && depth <= 1.0)) return lv_error(LV_ERR_INVALID_ARG, "depth %g is outside [0, 1]", depth);
    if (n_tokens <= 0) return lv_error(LV_ERR_INVALID_ARG, "prompt length %d is not positive", n_tokens);
    const int32_t rot = (int32_t)(seed % (uint64_t)ev->n_essays);
    lv_status st;

    /* the needles: nd[] sorted by depth; needle 0 of the draw sits at `depth` (multikey: the asked one) */
    const int nn = ev->n_needles;
    char needle_buf[EVAL_MAX_NEEDLES][128], question_buf[96], prefix_buf[64];
    char answer_buf[EVAL_MAX_NEEDLES * 8], text_buf[EVAL_MAX_NEEDLES * 8 + 16];
    unsigned keys[EVAL_MAX_NEEDLES];
    double dep[EVAL_MAX_NEEDLES];
    int order[EVAL_MAX_NEEDLES], main_needle = 0;
    needle_ nd[EVAL_MAX_NEEDLES];
    const char *question = ev->question, *answer_prefix = ev->answer_prefix, *answer = ev->keywords, *answer_text = NULL;
    nd[0] = (needle_){ev->needle, depth};
    char *key_needle = NULL, *key_keywords = NULL; /* NIAH with "{key}": the seed's key put in */
    if (ev->task == LV_EVAL_NIAH && strstr(ev->needle, "{key}")) {
        const unsigned key = key_of_(splitmix_(seed)); /* passkey's (first) key for this seed */
        key_needle = subst_key_(ev->needle, key);
        key_keywords = subst_key_(ev->keywords, key);
        if (!key_needle || !key_keywords) {
            lv_free(key_needle);
            lv_free(key_keywords);
            return LV_ERR_NOMEM;
        }
        nd[0].text = key_needle;
        answer = key_keywords;
    }
    if (ev->task != LV_EVAL_NIAH) {
        for (int j = 0; j < nn; j++) {
            uint64_t h = splitmix_(seed + (uint64_t)j * 0x632be59bd9b4e019ull);
            for (bool dup = true; dup;) { /* distinct keys */
                keys[j] = key_of_(h);
                dup = false;
                for (int i = 0; i < j; i++) dup |= keys[i] == keys[j];
                h = splitmix_(h);
            }
            dep[j] = j == 0 ? depth : (double)(splitmix_(h ^ 0xd1b54a32d192ed03ull) >> 11) * (1.0 / 9007199254740992.0);
            order[j] = j;
        }
        for (int a = 1; a < nn; a++) /* insertion sort by depth; ties keep the draw order */
            for (int b = a; b > 0 && dep[order[b]] < dep[order[b - 1]]; b--) {
                const int tmp = order[b];
                order[b] = order[b - 1];
                order[b - 1] = tmp;
            }
        answer_buf[0] = text_buf[0] = '\0';
        for (int r = 0; r < nn; r++) {
            const int j = order[r];
            const unsigned key = keys[j];
            if (ev->task == LV_EVAL_PASSKEY)
                snprintf(needle_buf[r], sizeof(needle_buf[r]), "\nThe pass key is %u. Remember it. %u is the pass key.\n", key, key);
            else if (ev->task == LV_EVAL_MULTIKEY)
                snprintf(needle_buf[r], sizeof(needle_buf[r]), "\nThe %s pass key is %u. Remember it. %u is the %s pass key.\n", k_ordinals[r], key,
                         key, k_ordinals[r]);
            else
                snprintf(needle_buf[r], sizeof(needle_buf[r]), "\nOne of the pass keys is %u. Remember it.\n", key);
            nd[r] = (needle_){needle_buf[r], dep[j]};
            if (j == 0) main_needle = r;
            if (ev->task == LV_EVAL_MULTIVALUE) {
                const size_t al = strlen(answer_buf), tl = strlen(text_buf);
                snprintf(answer_buf + al, sizeof(answer_buf) - al, "%s%u", r ? "|" : "", key);
                snprintf(text_buf + tl, sizeof(text_buf) - tl, "%s%u", r == 0 ? "" : r == nn - 1 ? " and " : ", ", key);
            }
        }
        if (ev->task != LV_EVAL_MULTIVALUE) {
            snprintf(answer_buf, sizeof(answer_buf), "%u", keys[0]);
            snprintf(text_buf, sizeof(text_buf), "%u", keys[0]);
        }
        if (ev->task == LV_EVAL_MULTIKEY) {
            snprintf(question_buf, sizeof(question_buf), "What is the %s pass key?", k_ordinals[main_needle]);
            snprintf(prefix_buf, sizeof(prefix_buf), "The %s pass key is", k_ordinals[main_needle]);
            question = question_buf;
            answer_prefix = prefix_buf;
        }
        answer = answer_buf;
        answer_text = text_buf;
    }

    lv_eval_prompt *p = lv_calloc(1, sizeof(*p));
    layout_ L = {0};
    lv_token *t = NULL;
    int32_t n = 0;
    if (!p) {
        st = LV_ERR_NOMEM;
        goto fail;
    }
    p->seed = seed;

    /* the fixed part: the prompt with no filler */
    if ((st = assemble_(ev, rot, nd, nn, main_needle, question, answer_prefix, 0, &L)) != LV_OK) goto fail;
    if ((st = tokenize_prompt_(ev, &L, &t, &n, NULL)) != LV_OK) goto fail;
    const int32_t fixed = n, min_len = fixed + 16;
    lv_free(t);
    t = NULL;
    if (n_tokens < min_len) {
        static const char *const names[] = {"NIAH", "passkey", "multikey", "multivalue"};
        st = lv_error(LV_ERR_INVALID_ARG, "a %s prompt of %d tokens is too short: the question, needles and template alone take %d (at least %d)",
                      names[ev->task], n_tokens, fixed, min_len);
        goto fail;
    }
    /* find K filler tokens giving n_tokens (or the longest prompt below it) */
    int64_t tried[EVAL_MAX_ITERS];
    int n_tried = 0;
    int64_t k = n_tokens - fixed, best_k = -1;
    int32_t best_n = -1;
    for (int it = 0; it < EVAL_MAX_ITERS; it++) {
        if ((st = assemble_(ev, rot, nd, nn, main_needle, question, answer_prefix, k, &L)) != LV_OK) goto fail;
        if ((st = tokenize_prompt_(ev, &L, &t, &n, NULL)) != LV_OK) goto fail;
        lv_free(t);
        t = NULL;
        tried[n_tried++] = k;
        if (n <= n_tokens && n > best_n) {
            best_n = n;
            best_k = k;
        }
        if (n == n_tokens) break;
        int64_t next = k + (n_tokens - n);
        for (int j = 0; j < n_tried; j++)
            if (tried[j] == next) next = n > n_tokens ? k - 1 : k + 1; /* a cycle: creep */
        bool seen = next < 0;
        for (int j = 0; j < n_tried && !seen; j++) seen = tried[j] == next;
        if (seen) break;
        k = next;
    }
    if (best_k < 0) {
        st = lv_error(LV_ERR_INTERNAL, "no filler length gives a prompt of at most %d tokens", n_tokens);
        goto fail;
    }
    if ((st = assemble_(ev, rot, nd, nn, main_needle, question, answer_prefix, best_k, &L)) != LV_OK) goto fail;
    bool prepended = false;
    if ((st = tokenize_prompt_(ev, &L, &t, &n, &prepended)) != LV_OK) goto fail;
    if ((st = locate_(ev, &L, t, n, prepended, p)) != LV_OK) goto fail;
    p->tokens = t;
    p->n_tokens = n;
    t = NULL;
    p->text = L.text.p;
    L.text.p = NULL;
    p->answer = lv_strdup(answer);
    p->needle = lv_strdup(nd[main_needle].text);
    if (!answer_text) { /* NIAH: the needle after the answer prefix, else the keywords */
        const char *after = answer_prefix[0] ? strstr(nd[main_needle].text, answer_prefix) : NULL;
        if (after) {
            after += strlen(answer_prefix);
            while (is_space_(*after)) after++;
            int64_t l = (int64_t)strlen(after);
            while (l > 0 && (is_space_(after[l - 1]) || after[l - 1] == '.')) l--;
            if ((p->answer_text = lv_malloc((size_t)l + 1)) != NULL) {
                memcpy(p->answer_text, after, (size_t)l);
                p->answer_text[l] = '\0';
            }
        } else {
            p->answer_text = lv_strdup(answer);
        }
    } else {
        p->answer_text = lv_strdup(answer_text);
    }
    if (!p->answer || !p->needle || !p->answer_text) {
        st = LV_ERR_NOMEM;
        goto fail;
    }
    lv_free(key_needle);
    lv_free(key_keywords);
    *out = p;
    return LV_OK;
fail:
    lv_free(key_needle);
    lv_free(key_keywords);
    lv_free(t);
    lv_free(L.text.p);
    lv_eval_prompt_free(p);
    return st;
}

lv_status lv_eval_set_needle(lv_eval *ev, const char *needle, const char *keywords, const char *question, const char *answer_prefix) {
    if (!ev || !needle || !keywords) return lv_error(LV_ERR_INVALID_ARG, "lv_eval_set_needle: the builder, needle or keywords is NULL");
    if (ev->task != LV_EVAL_NIAH) return lv_error(LV_ERR_INVALID_ARG, "only NIAH prompts take a custom needle");
    if (!needle[0]) return lv_error(LV_ERR_INVALID_ARG, "the needle is empty");
    double score = 0;
    if (!lv_eval_check_answer(keywords, needle, (int64_t)strlen(needle), &score))
        return lv_error(LV_ERR_INVALID_ARG, "the needle does not contain its keywords '%s' (found %.0f%%): no answer could be right", keywords,
                        100 * score);
    char *n = lv_strdup(needle), *k = lv_strdup(keywords);
    char *q = question ? lv_strdup(question) : NULL, *a = answer_prefix ? lv_strdup(answer_prefix) : NULL;
    if (!n || !k || (question && !q) || (answer_prefix && !a)) {
        lv_free(n);
        lv_free(k);
        lv_free(q);
        lv_free(a);
        return LV_ERR_NOMEM;
    }
    lv_free(ev->needle);
    lv_free(ev->keywords);
    ev->needle = n;
    ev->keywords = k;
    if (q) {
        lv_free(ev->question);
        ev->question = q;
    }
    if (a) {
        lv_free(ev->answer_prefix);
        ev->answer_prefix = a;
    }
    return LV_OK;
}

/* ---- the answer rule ---------------------------------------------------------------------- */

static bool word_byte_(unsigned char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80; }

/* " w1 w2 ... " in lower case: words are runs of ASCII letters and digits and non-ASCII bytes.
 * U+2581 (SentencePiece's space marker, which byte-level vocabularies such as builtin:bytes emit
 * as raw bytes) separates words like a space. */
static char *normalize_(const char *s, int64_t len) {
    char *o = lv_malloc((size_t)len + 3);
    if (!o) return NULL;
    int64_t n = 0;
    o[n++] = ' ';
    for (int64_t i = 0; i < len; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c == 0xE2 && i + 2 < len && (unsigned char)s[i + 1] == 0x96 && (unsigned char)s[i + 2] == 0x81) {
            if (o[n - 1] != ' ') o[n++] = ' ';
            i += 2;
        } else if (word_byte_(c)) o[n++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        else if (o[n - 1] != ' ') o[n++] = ' ';
    }
    if (o[n - 1] != ' ') o[n++] = ' ';
    o[n] = '\0';
    return o;
}

bool lv_eval_check_answer(const char *keywords, const char *text, int64_t len, double *score) {
    if (score) *score = 0;
    if (!keywords || (!text && len > 0) || len < 0) return false;
    char *hay = normalize_(text ? text : "", text ? len : 0);
    if (!hay) return false;
    int found = 0, total = 0;
    const char *k = keywords;
    for (;;) {
        const char *bar = strchr(k, '|');
        const int64_t kl = bar ? (int64_t)(bar - k) : (int64_t)strlen(k);
        char *kw = normalize_(k, kl);
        if (!kw) {
            lv_free(hay);
            return false;
        }
        if (strcmp(kw, " ") != 0) {
            total++;
            found += strstr(hay, kw) != NULL;
        }
        lv_free(kw);
        if (!bar) break;
        k = bar + 1;
    }
    lv_free(hay);
    if (score) *score = total ? (double)found / total : 0.0;
    return total > 0 && found == total;
}
