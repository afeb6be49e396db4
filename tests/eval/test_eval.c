/*
 * test_eval.c: the retrieval prompt builder and the answer rule (src/eval/eval.c): prompts of the
 * requested token length with the needle at the requested depth, on real vocabularies (SPM, Llama 3
 * BPE, GPT-2, Qwen2) and the byte vocabulary; the needle, question and answer start present in
 * the decoded prompt; the pass key drawn from the seed; chat wrapping; errors; the answer rule.
 */
#include "lv_test.h"
#include "longview.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lv_model *load_vocab(const char *name) {
    const char *data = lv_test_shared_data();
    if (!data) return NULL;
    char path[1024];
    snprintf(path, sizeof(path), "%s/vocab/%s", data, name);
    lv_model_params mp = lv_model_default_params();
    mp.vocab_only = true;
    lv_model *m = NULL;
    return lv_model_load(path, mp, &m) == LV_OK ? m : NULL;
}

/* A tiny random-weight model with the byte vocabulary (no shared data needed). */
static lv_model *bytes_model(void) {
    static lv_model *m;
    if (m) return m;
    char path[1024];
    snprintf(path, sizeof(path), "%s/eval-bytes.gguf", lv_test_tmpdir());
    lv_genmodel_params gp = lv_genmodel_default_params();
    gp.arch = "llama";
    gp.n_embd = 32;
    gp.n_layer = 1;
    gp.n_head = 2;
    gp.n_head_kv = 1;
    gp.n_ff = 32;
    gp.vocab_path = "builtin:bytes";
    gp.seed = 5;
    if (lv_genmodel_write(&gp, path) != LV_OK) return NULL;
    if (lv_model_load(path, lv_model_default_params(), &m) != LV_OK) return NULL;
    return m;
}

static char *haystack_dir(void) {
    static char dir[1024];
    const char *data = lv_test_shared_data();
    if (!data) return NULL;
    snprintf(dir, sizeof(dir), "%s/haystack/paul-graham-essays", data);
    return dir;
}

/* Decode tokens [a, b) of a prompt. */
static char *decode(const lv_model *m, const lv_eval_prompt *p, int32_t a, int32_t b) {
    int64_t cap = (int64_t)(b - a) * 64 + 64;
    char *s = malloc((size_t)cap + 1);
    if (!s) return NULL;
    int64_t n = lv_detokenize(m, p->tokens + a, b - a, s, cap, false, true);
    if (n < 0) n = 0;
    s[n] = '\0';
    /* the byte vocabulary has no U+2581 token: SentencePiece's escaped spaces come back as bytes */
    char *w = s;
    for (const char *r = s; *r;) {
        if (strncmp(r, "\xe2\x96\x81", 3) == 0) {
            *w++ = ' ';
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return s;
}

/* The checks every prompt must pass. */
static void check_prompt(const lv_model *m, const char *what, const lv_eval_prompt *p, int32_t target, double depth, lv_eval_task task) {
    CHECK(p->n_tokens <= target && p->n_tokens >= target - 2, "%s: %d tokens for a target of %d", what, p->n_tokens, target);
    if (lv_tokenizer_add_bos(m)) CHECK(p->tokens[0] == lv_token_bos(m), "%s: starts with BOS", what);
    CHECK(p->context_begin > 0 && p->context_begin <= p->needle_pos && p->needle_pos + p->needle_len <= p->context_end &&
              p->context_end < p->n_tokens,
          "%s: context [%d, %d) holds the needle at %d+%d", what, p->context_begin, p->context_end, p->needle_pos, p->needle_len);
    const double room = p->context_end - p->context_begin - p->needle_len;
    /* the needle snaps to the nearest sentence end: allow about half a sentence either way */
    const double tol = LV_MAX(0.04, 40.0 / room);
    CHECK(fabs(p->depth - depth) <= tol, "%s: depth %.3f for %.3f (tolerance %.3f)", what, p->depth, depth, tol);
    CHECK(fabs((p->needle_pos - p->context_begin) / room - p->depth) < 1e-9, "%s: depth is the needle's offset in the filler", what);
    if (depth == 0.0) CHECK(p->needle_pos - p->context_begin <= 2, "%s: depth 0 is the start (%d)", what, p->needle_pos - p->context_begin);
    if (depth == 1.0) CHECK(p->context_end - p->needle_pos - p->needle_len <= 2, "%s: depth 1 is the end", what);
    /* the needle tokens decode to the needle; the whole prompt holds the question */
    char *nd = decode(m, p, p->needle_pos, p->needle_pos + p->needle_len);
    char *all = decode(m, p, 0, p->n_tokens);
    if (!nd || !all) {
        CHECK(0, "decode");
    } else if (task == LV_EVAL_NIAH) {
        CHECK(strstr(nd, "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.") != NULL,
              "%s: needle tokens decode to '%s'", what, nd);
        CHECK(strstr(all, "What is the best thing to do in San Francisco?") && strstr(all, "The best thing to do in San Francisco is"),
              "%s: question and answer start present", what);
        const char *tail = all + strlen(all) - strlen("San Francisco is");
        CHECK(strcmp(tail, "San Francisco is") == 0, "%s: the prompt ends with the start of the answer: '...%s'", what, tail - 20);
        CHECK(strcmp(p->answer, "sandwich|Dolores Park") == 0, "%s: answer keywords '%s'", what, p->answer);
    } else {
        char line[128];
        snprintf(line, sizeof(line), "The pass key is %s. Remember it. %s is the pass key.", p->answer, p->answer);
        CHECK(strstr(nd, line) != NULL, "%s: needle tokens decode to '%s'", what, nd);
        CHECK(strlen(p->answer) == 5 && strspn(p->answer, "0123456789") == 5 && p->answer[0] != '0', "%s: a 5-digit key '%s'", what, p->answer);
        const char *tail = all + strlen(all) - strlen("What is the pass key? The pass key is");
        CHECK(strcmp(tail, "What is the pass key? The pass key is") == 0, "%s: ends with the question: '%s'", what, tail);
        CHECK(strstr(all, "The grass is green. The sky is blue.") != NULL, "%s: filler", what);
    }
    /* the needle's token range is tight: its first token starts the needle, its last ends it */
    char *first = decode(m, p, p->needle_pos, p->needle_pos + 1);
    char *before = decode(m, p, p->needle_pos - 1, p->needle_pos);
    char *shorter = decode(m, p, p->needle_pos, p->needle_pos + p->needle_len - 1);
    if (first && before && shorter) {
        const char *f = first;
        while (*f == ' ' || *f == '\n') f++;
        CHECK(*f && (strncmp("The ", f, strlen(f) < 4 ? strlen(f) : 4) == 0), "%s: the first needle token is '%s'", what, first);
        CHECK(strstr(before, "The") == NULL, "%s: the token before the needle is '%s'", what, before);
        const char *end = task == LV_EVAL_NIAH ? "sunny day." : "is the pass key.";
        CHECK(strstr(shorter, end) == NULL, "%s: the needle's last token is needed ('%s')", what, shorter);
    } else {
        CHECK(0, "decode");
    }
    free(first);
    free(before);
    free(shorter);
    /* the text is what was tokenized */
    CHECK(strstr(p->text, p->needle) != NULL, "%s: text holds the needle", what);
    free(nd);
    free(all);
}

static void run_sweep(lv_model *m, const char *vocab, lv_eval_task task, const int32_t *lens, int n_lens) {
    lv_eval_params ep = lv_eval_default_params();
    ep.task = task;
    if (task == LV_EVAL_NIAH) ep.haystack_dir = haystack_dir();
    lv_eval *ev = NULL;
    REQUIRE(lv_eval_create(m, &ep, &ev) == LV_OK, "%s: create: %s", vocab, lv_last_error());
    const double depths[] = {0, 0.1, 0.25, 0.5, 0.75, 0.9, 1};
    for (int i = 0; i < n_lens; i++)
        for (size_t d = 0; d < LV_ARRAY_LEN(depths); d++) {
            lv_eval_prompt *p = NULL;
            lv_status st = lv_eval_build(ev, lens[i], depths[d], (uint64_t)(i * 7 + d), &p);
            CHECK(st == LV_OK, "%s len %d depth %g: %s", vocab, lens[i], depths[d], lv_last_error());
            if (st != LV_OK) continue;
            char what[160];
            snprintf(what, sizeof(what), "%s %s len %d depth %.2f", vocab, task == LV_EVAL_NIAH ? "niah" : "passkey", lens[i], depths[d]);
            check_prompt(m, what, p, lens[i], depths[d], task);
            lv_eval_prompt_free(p);
        }
    lv_eval_free(ev);
}

TEST(eval_prompts_real_vocabularies) {
    if (!lv_test_shared_data()) SKIP("../shared/data not found (vocabularies and the haystack)");
    const char *vocabs[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-llama-bpe.gguf", "ggml-vocab-gpt-2.gguf", "ggml-vocab-qwen2.gguf", "ggml-vocab-phi-3.gguf"};
    const int32_t lens[] = {300, 1000, 4096};
    for (size_t v = 0; v < LV_ARRAY_LEN(vocabs); v++) {
        lv_model *m = load_vocab(vocabs[v]);
        CHECK(m, "%s: %s", vocabs[v], lv_last_error());
        if (!m) continue;
        const int n = lv_test_quick() || v > 0 ? 2 : 3;
        run_sweep(m, vocabs[v], LV_EVAL_NIAH, lens, n);
        run_sweep(m, vocabs[v], LV_EVAL_PASSKEY, lens, n);
        lv_model_free(m);
    }
}

TEST(eval_prompt_longer_than_the_haystack) {
    if (!lv_test_shared_data()) SKIP("../shared/data not found (vocabularies and the haystack)");
    if (lv_test_quick()) SKIP("the sanitizer run skips the 200k-token prompt (the release run covers it)");
    lv_model *m = load_vocab("ggml-vocab-llama-spm.gguf");
    REQUIRE(m, "vocab: %s", lv_last_error());
    lv_eval_params ep = lv_eval_default_params();
    ep.haystack_dir = haystack_dir();
    lv_eval *ev = NULL;
    REQUIRE(lv_eval_create(m, &ep, &ev) == LV_OK, "create: %s", lv_last_error());
    lv_eval_prompt *p = NULL;
    /* the 49 essays are about 160k Llama tokens: this repeats them */
    REQUIRE(lv_eval_build(ev, 200000, 0.6, 0, &p) == LV_OK, "build: %s", lv_last_error());
    check_prompt(m, "spm 200000", p, 200000, 0.6, LV_EVAL_NIAH);
    lv_eval_prompt_free(p);
    lv_eval_free(ev);
    lv_model_free(m);
}

TEST(eval_prompts_byte_vocabulary) {
    lv_model *m = bytes_model();
    REQUIRE(m, "model: %s", lv_last_error());
    /* SentencePiece spaces cost 3 byte tokens here: the fixed part alone is about 340 tokens */
    const int32_t lens[] = {600, 1500};
    run_sweep(m, "bytes", LV_EVAL_PASSKEY, lens, 2);
    if (haystack_dir()) run_sweep(m, "bytes", LV_EVAL_NIAH, lens, 2);
}

TEST(eval_passkey_from_the_seed) {
    lv_model *m = bytes_model();
    REQUIRE(m, "model: %s", lv_last_error());
    lv_eval_params ep = lv_eval_default_params();
    ep.task = LV_EVAL_PASSKEY;
    lv_eval *ev = NULL;
    REQUIRE(lv_eval_create(m, &ep, &ev) == LV_OK, "create: %s", lv_last_error());
    char keys[8][8];
    int distinct = 0;
    for (uint64_t s = 0; s < 8; s++) {
        lv_eval_prompt *a = NULL, *b = NULL;
        REQUIRE(lv_eval_build(ev, 600, 0.5, s, &a) == LV_OK && lv_eval_build(ev, 600, 0.5, s, &b) == LV_OK, "build: %s", lv_last_error());
        CHECK(strcmp(a->answer, b->answer) == 0 && a->n_tokens == b->n_tokens && memcmp(a->tokens, b->tokens, (size_t)a->n_tokens * 4) == 0,
              "seed %llu: the same prompt twice", (unsigned long long)s);
        CHECK(a->seed == s, "seed recorded");
        snprintf(keys[s], sizeof(keys[s]), "%s", a->answer);
        int dup = 0;
        for (uint64_t j = 0; j < s; j++) dup |= strcmp(keys[j], keys[s]) == 0;
        distinct += !dup;
        /* the key is in the needle, twice */
        const char *k1 = strstr(a->needle, a->answer);
        CHECK(k1 && strstr(k1 + 5, a->answer), "the key appears twice in '%s'", a->needle);
        lv_eval_prompt_free(a);
        lv_eval_prompt_free(b);
    }
    CHECK(distinct >= 7, "seeds give different keys (%d distinct of 8)", distinct);
    lv_eval_free(ev);
}

/* Multikey and multivalue prompts: the requested length; every needle in the text, in the order
 * of their depths, named first, second, ... (multikey) in that order; the needle at the depth is the
 * one asked for (multikey: the question names its order) and is where needle_pos says; distinct
 * keys; the answer text passes the answer rule and lists every key in order (multivalue). */
TEST(eval_multikey_and_multivalue_prompts) {
    lv_model *m = bytes_model();
    REQUIRE(m, "model: %s", lv_last_error());
    static const char *const ord[] = {"first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"};
    for (int task = LV_EVAL_MULTIKEY; task <= LV_EVAL_MULTIVALUE; task++) {
        const int counts[2] = {3, 10};
        for (int ci = 0; ci < 2; ci++) {
            lv_eval_params ep = lv_eval_default_params();
            ep.task = (lv_eval_task)task;
            ep.n_needles = counts[ci];
            lv_eval *ev = NULL;
            REQUIRE(lv_eval_create(m, &ep, &ev) == LV_OK, "create: %s", lv_last_error());
            const double depths[] = {0, 0.3, 0.77, 1};
            for (int di = 0; di < 4; di++)
                for (uint64_t seed = 0; seed < 3; seed++) {
                    const int32_t len = ci ? 2600 : 1200;
                    lv_eval_prompt *p = NULL;
                    REQUIRE(lv_eval_build(ev, len, depths[di], seed, &p) == LV_OK, "build: %s", lv_last_error());
                    /* byte tokens: a space is 3 tokens, and each needle replaces one, so a few lengths cannot be hit */
                    CHECK(p->n_tokens <= len && p->n_tokens >= len - (counts[ci] > 3 ? 6 : 2), "%d tokens of %d", p->n_tokens, len);
                    /* the needles in text order */
                    const char *at = p->text, *prev = NULL;
                    unsigned keys[10];
                    int found = 0, main_rank = -1;
                    for (int r = 0; r < counts[ci]; r++) {
                        char head[64];
                        if (task == LV_EVAL_MULTIKEY) snprintf(head, sizeof(head), "The %s pass key is ", ord[r]);
                        else snprintf(head, sizeof(head), "One of the pass keys is ");
                        const char *h = strstr(at, head);
                        if (!h) break;
                        keys[r] = (unsigned)strtoul(h + strlen(head), NULL, 10);
                        if (strncmp(h - 1, p->needle, strlen(p->needle)) == 0 || strncmp(h, p->needle + 1, strlen(p->needle) - 2) == 0)
                            main_rank = r;
                        prev = h;
                        at = h + strlen(head);
                        found++;
                    }
                    (void)prev;
                    CHECK(found == counts[ci], "%d of %d needles found in order", found, counts[ci]);
                    CHECK(main_rank >= 0, "the needle at the depth is in the text");
                    for (int a = 0; a < found; a++)
                        for (int b = 0; b < a; b++) CHECK(keys[a] != keys[b], "keys %d and %d are equal (%u)", a, b, keys[a]);
                    /* needle_pos: the main needle's tokens decode to its text */
                    char *nt = decode(m, p, p->needle_pos, p->needle_pos + p->needle_len);
                    CHECK(nt && strncmp(nt, p->needle + 1, strlen(p->needle) - 2) == 0, "needle_pos/len: '%s' vs '%s'", nt ? nt : "", p->needle);
                    free(nt);
                    CHECK(lv_eval_check_answer(p->answer, p->answer_text, (int64_t)strlen(p->answer_text), NULL), "answer text '%s' for '%s'",
                          p->answer_text, p->answer);
                    if (task == LV_EVAL_MULTIKEY && found == counts[ci] && main_rank >= 0) {
                        char q[64];
                        snprintf(q, sizeof(q), "What is the %s pass key? The %s pass key is", ord[main_rank], ord[main_rank]);
                        CHECK(strstr(p->text, q) != NULL, "the question asks for the needle at the depth (%s)", ord[main_rank]);
                        CHECK((unsigned)strtoul(p->answer, NULL, 10) == keys[main_rank], "answer %s is the %s key %u", p->answer, ord[main_rank],
                              keys[main_rank]);
                        /* depth 0 / 1: the asked needle is the first / last */
                        if (depths[di] == 0) CHECK(main_rank == 0, "depth 0 asks the first (%d)", main_rank);
                        if (depths[di] == 1) CHECK(main_rank == counts[ci] - 1, "depth 1 asks the last (%d)", main_rank);
                    }
                    if (task == LV_EVAL_MULTIVALUE && found == counts[ci]) {
                        char want[128] = "", text[128] = "";
                        for (int r = 0; r < found; r++) {
                            snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%u", r ? "|" : "", keys[r]);
                            snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s%u", r == 0 ? "" : r == found - 1 ? " and " : ", ", keys[r]);
                        }
                        CHECK(strcmp(p->answer, want) == 0 && strcmp(p->answer_text, text) == 0, "answer '%s' / '%s', want '%s' / '%s'", p->answer,
                              p->answer_text, want, text);
                        CHECK(strstr(p->text, "What are all the pass keys? The pass keys are") != NULL, "the multivalue question");
                        /* all keys but one is not an answer */
                        char *bar = strrchr(want, '|');
                        *bar = '\0';
                        CHECK(!lv_eval_check_answer(p->answer, want, (int64_t)strlen(want), NULL), "a partial answer is wrong");
                    }
                    lv_eval_prompt_free(p);
                }
            lv_eval_free(ev);
        }
    }
    /* errors */
    lv_eval_params ep = lv_eval_default_params();
    lv_eval *ev = NULL;
    ep.task = LV_EVAL_MULTIKEY;
    ep.n_needles = 1;
    CHECK(lv_eval_create(m, &ep, &ev) == LV_ERR_INVALID_ARG && !ev, "one needle for multikey");
    ep.n_needles = 11;
    CHECK(lv_eval_create(m, &ep, &ev) == LV_ERR_INVALID_ARG && !ev, "11 needles");
    ep.n_needles = 0;
    ep.question = "What?";
    CHECK(lv_eval_create(m, &ep, &ev) == LV_ERR_INVALID_ARG && !ev, "multikey with a custom question");
    ep.question = NULL;
    ep.task = LV_EVAL_PASSKEY;
    ep.n_needles = 3;
    CHECK(lv_eval_create(m, &ep, &ev) == LV_ERR_INVALID_ARG && !ev, "passkey with 3 needles");
}

/* lv_eval_set_needle: later NIAH builds use the new needle, question and answer prefix; the answer
 * text is the needle after the prefix; a needle without its keywords, and a passkey builder, are refused. */
TEST(eval_set_needle) {
    if (!haystack_dir()) SKIP("../shared/data not found (the haystack)");
    lv_model *m = bytes_model();
    REQUIRE(m, "model: %s", lv_last_error());
    lv_eval_params ep = lv_eval_default_params();
    ep.haystack_dir = haystack_dir();
    lv_eval *ev = NULL;
    REQUIRE(lv_eval_create(m, &ep, &ev) == LV_OK, "create: %s", lv_last_error());
    lv_eval_prompt *p = NULL;
    REQUIRE(lv_eval_build(ev, 1500, 0.5, 0, &p) == LV_OK, "build: %s", lv_last_error());
    CHECK(strcmp(p->answer_text, "eat a sandwich and sit in Dolores Park on a sunny day") == 0, "standard answer text '%s'", p->answer_text);
    lv_eval_prompt_free(p);
    CHECK(lv_eval_set_needle(ev, "\nThe best thing to do in Oslo is swim in the fjord.\n", "swim in the fjord", "What is the best thing to do in Oslo?",
                             "The best thing to do in Oslo is") == LV_OK,
          "set: %s", lv_last_error());
    REQUIRE(lv_eval_build(ev, 1500, 0.25, 0, &p) == LV_OK, "build: %s", lv_last_error());
    CHECK(strstr(p->text, "The best thing to do in Oslo is swim in the fjord.") && strstr(p->text, "What is the best thing to do in Oslo?") &&
              !strstr(p->text, "San Francisco"),
          "the new needle and question are used");
    CHECK(strcmp(p->answer, "swim in the fjord") == 0 && strcmp(p->answer_text, "swim in the fjord") == 0, "answer '%s' / '%s'", p->answer,
          p->answer_text);
    CHECK(p->n_tokens == 1500, "length %d", p->n_tokens);
    lv_eval_prompt_free(p);
    CHECK(lv_eval_set_needle(ev, "\nThe best thing is tea.\n", "coffee", NULL, NULL) == LV_ERR_INVALID_ARG, "keywords not in the needle");
    CHECK(lv_eval_set_needle(ev, "", "x", NULL, NULL) == LV_ERR_INVALID_ARG && lv_eval_set_needle(NULL, "a", "a", NULL, NULL) == LV_ERR_INVALID_ARG,
          "empty needle / NULL builder");
    lv_eval_free(ev);
    ep = lv_eval_default_params();
    ep.task = LV_EVAL_PASSKEY;
    REQUIRE(lv_eval_create(m, &ep, &ev) == LV_OK, "passkey: %s", lv_last_error());
    CHECK(lv_eval_set_needle(ev, "\nA b.\n", "b", NULL, NULL) == LV_ERR_INVALID_ARG, "a passkey builder refuses a needle");
    lv_eval_free(ev);
}

TEST(eval_niah_seed_rotates_the_haystack) {
    if (!lv_test_shared_data()) SKIP("../shared/data not found (the haystack)");
    lv_model *m = load_vocab("ggml-vocab-llama-spm.gguf");
    REQUIRE(m, "vocab: %s", lv_last_error());
    lv_eval_params ep = lv_eval_default_params();
    ep.haystack_dir = haystack_dir();
    lv_eval *ev = NULL;
    REQUIRE(lv_eval_create(m, &ep, &ev) == LV_OK, "create: %s", lv_last_error());
    lv_eval_prompt *a = NULL, *b = NULL, *c = NULL;
    REQUIRE(lv_eval_build(ev, 400, 0.5, 0, &a) == LV_OK && lv_eval_build(ev, 400, 0.5, 1, &b) == LV_OK &&
                lv_eval_build(ev, 400, 0.5, 49, &c) == LV_OK,
            "build: %s", lv_last_error());
    /* seed 0: the first essay in name order (addiction.txt: "July 2010 ...") */
    CHECK(strstr(a->text, "<book> July 2010") != NULL, "seed 0 starts with the first essay: %.60s", a->text);
    CHECK(strcmp(a->text, b->text) != 0, "seed 1 starts elsewhere");
    CHECK(strcmp(a->text, c->text) == 0, "seed 49 wraps to the first essay (49 essays)");
    lv_eval_prompt_free(a);
    lv_eval_prompt_free(b);
    lv_eval_prompt_free(c);
    lv_eval_free(ev);
    lv_model_free(m);
}

TEST(eval_chat_wrapping) {
    if (!lv_test_shared_data()) SKIP("../shared/data not found (vocabularies and the haystack)");
    lv_model *m = load_vocab("ggml-vocab-llama-bpe.gguf");
    REQUIRE(m, "vocab: %s", lv_last_error());
    lv_eval_params ep = lv_eval_default_params();
    ep.haystack_dir = haystack_dir();
    ep.chat_template = "llama3";
    lv_eval *ev = NULL;
    REQUIRE(lv_eval_create(m, &ep, &ev) == LV_OK, "create: %s", lv_last_error());
    lv_eval_prompt *p = NULL;
    REQUIRE(lv_eval_build(ev, 1024, 0.5, 0, &p) == LV_OK, "build: %s", lv_last_error());
    CHECK(p->n_tokens <= 1024 && p->n_tokens >= 1022, "%d tokens", p->n_tokens);
    CHECK(strncmp(p->text, "<|start_header_id|>user<|end_header_id|>\n\nThis is a very long story book", 70) == 0, "user turn first: %.80s", p->text);
    const char *asst = strstr(p->text, "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nThe best thing to do in San Francisco is");
    CHECK(asst != NULL, "the answer start follows the assistant header");
    CHECK(strstr(p->text, "\nAnswer:") == NULL, "no 'Answer:' lead inside a chat");
    /* special tokens were parsed: the header ids are single tokens */
    int32_t n_special = 0;
    for (int32_t i = 0; i < p->n_tokens; i++) n_special += lv_token_is_control(m, p->tokens[i]);
    CHECK(n_special >= 6, "BOS and the header/eot tokens are special tokens (%d)", n_special);
    CHECK(fabs(p->depth - 0.5) < 0.05, "depth %.3f", p->depth);
    lv_eval_prompt_free(p);
    lv_eval_free(ev);
    /* passkey in chatml */
    ep = lv_eval_default_params();
    ep.task = LV_EVAL_PASSKEY;
    ep.chat = true;
    ep.chat_template = "chatml";
    REQUIRE(lv_eval_create(m, &ep, &ev) == LV_OK, "create: %s", lv_last_error());
    REQUIRE(lv_eval_build(ev, 512, 0.25, 3, &p) == LV_OK, "build: %s", lv_last_error());
    CHECK(strstr(p->text, "What is the pass key?<|im_end|>\n<|im_start|>assistant\nThe pass key is") != NULL, "chatml passkey: %s",
          p->text + strlen(p->text) - 80);
    lv_eval_prompt_free(p);
    lv_eval_free(ev);
    /* a vocabulary without a chat template */
    ep.chat_template = NULL;
    CHECK(lv_eval_create(m, &ep, &ev) == LV_ERR_INVALID_ARG && !ev && strstr(lv_last_error(), "no chat template"), "no template: %s",
          lv_last_error());
    ep.chat_template = "no-such-family";
    CHECK(lv_eval_create(m, &ep, &ev) != LV_OK && !ev && strstr(lv_last_error(), "--chat-template"), "unknown template: %s", lv_last_error());
    lv_model_free(m);
}

TEST(eval_custom_needle) {
    if (!lv_test_shared_data()) SKIP("../shared/data not found (the haystack)");
    lv_model *m = load_vocab("ggml-vocab-llama-spm.gguf");
    REQUIRE(m, "vocab: %s", lv_last_error());
    lv_eval_params ep = lv_eval_default_params();
    ep.haystack_dir = haystack_dir();
    ep.needle = " The secret ingredient of the soup is saffron. ";
    ep.keywords = "saffron";
    ep.question = "What is the secret ingredient of the soup?";
    ep.answer_prefix = "";
    lv_eval *ev = NULL;
    REQUIRE(lv_eval_create(m, &ep, &ev) == LV_OK, "create: %s", lv_last_error());
    lv_eval_prompt *p = NULL;
    REQUIRE(lv_eval_build(ev, 700, 0.3, 0, &p) == LV_OK, "build: %s", lv_last_error());
    CHECK(strcmp(p->answer, "saffron") == 0, "answer '%s'", p->answer);
    char *nd = decode(m, p, p->needle_pos, p->needle_pos + p->needle_len);
    CHECK(nd && strstr(nd, "secret ingredient of the soup is saffron."), "needle tokens: '%s'", nd ? nd : "");
    free(nd);
    const size_t tl = strlen(p->text);
    CHECK(tl > 20 && strcmp(p->text + tl - 20, "of the soup?\nAnswer:") == 0, "ends with the lead only: '%s'", p->text + tl - 20);
    lv_eval_prompt_free(p);
    lv_eval_free(ev);
    ep.keywords = "pepper";
    CHECK(lv_eval_create(m, &ep, &ev) == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "does not contain its keywords"), "%s", lv_last_error());
    ep.keywords = NULL;
    CHECK(lv_eval_create(m, &ep, &ev) == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "keywords"), "%s", lv_last_error());
    lv_model_free(m);
}

/* A NIAH needle with {key}: each prompt gets the seed's 5-digit key (passkey's key for that seed)
 * in the needle, the keywords and the answer text; two seeds, two keys. */
TEST(eval_niah_key_needle) {
    if (!lv_test_shared_data()) SKIP("../shared/data not found (the haystack)");
    lv_model *m = bytes_model();
    REQUIRE(m, "model: %s", lv_last_error());
    lv_eval_params pk = lv_eval_default_params();
    pk.task = LV_EVAL_PASSKEY;
    lv_eval_params ep = lv_eval_default_params();
    ep.haystack_dir = haystack_dir();
    ep.needle = "\nThe special magic number for San Francisco is {key}.\n";
    ep.keywords = "{key}";
    ep.question = "What is the special magic number for San Francisco?";
    ep.answer_prefix = "The special magic number for San Francisco is";
    lv_eval *ev = NULL, *pev = NULL;
    REQUIRE(lv_eval_create(m, &ep, &ev) == LV_OK && lv_eval_create(m, &pk, &pev) == LV_OK, "create: %s", lv_last_error());
    char first[16] = "";
    for (uint64_t s = 0; s < 3; s++) {
        lv_eval_prompt *p = NULL, *q = NULL;
        REQUIRE(lv_eval_build(ev, 900, 0.4, s * 7 + 1, &p) == LV_OK && lv_eval_build(pev, 600, 0.4, s * 7 + 1, &q) == LV_OK, "build: %s",
                lv_last_error());
        CHECK(strlen(p->answer) == 5 && strcmp(p->answer, q->answer) == 0, "seed %llu: key '%s', passkey's '%s'", (unsigned long long)s, p->answer,
              q->answer);
        CHECK(strcmp(p->answer_text, p->answer) == 0, "answer text '%s'", p->answer_text);
        char want[96];
        snprintf(want, sizeof(want), "magic number for San Francisco is %s.", p->answer);
        CHECK(strstr(p->needle, want) && !strstr(p->needle, "{key}"), "needle '%s'", p->needle);
        CHECK(strstr(p->text, want) && !strstr(p->text, "{key}"), "the prompt holds the needle with its key");
        char *nd = decode(m, p, p->needle_pos, p->needle_pos + p->needle_len);
        CHECK(nd && strstr(nd, want), "needle tokens: '%s'", nd ? nd : "");
        free(nd);
        double score = 0;
        CHECK(lv_eval_check_answer(p->answer, p->answer_text, (int64_t)strlen(p->answer_text), &score) && score == 1.0, "the answer text passes");
        if (s == 0) snprintf(first, sizeof(first), "%s", p->answer);
        else CHECK(strcmp(first, p->answer) != 0, "seeds differ in key: %s, %s", first, p->answer);
        lv_eval_prompt_free(p);
        lv_eval_prompt_free(q);
    }
    lv_eval_free(ev);
    lv_eval_free(pev); /* m is the file's shared model: not freed */
}

TEST(eval_errors) {
    lv_model *m = bytes_model();
    REQUIRE(m, "model: %s", lv_last_error());
    lv_eval_params ep = lv_eval_default_params();
    lv_eval *ev = NULL;
    CHECK(lv_eval_create(m, &ep, &ev) == LV_ERR_INVALID_ARG && !ev && strstr(lv_last_error(), "haystack"), "NIAH without a haystack: %s",
          lv_last_error());
    ep.haystack_dir = "/nonexistent/essays";
    CHECK(lv_eval_create(m, &ep, &ev) == LV_ERR_IO && !ev && strstr(lv_last_error(), "/nonexistent/essays"), "missing dir: %s", lv_last_error());
    char empty[1024];
    snprintf(empty, sizeof(empty), "%s/eval-empty-haystack", lv_test_tmpdir());
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s' && : > '%s/only.md'", empty, empty, empty);
    REQUIRE(system(cmd) == 0, "mkdir");
    ep.haystack_dir = empty;
    CHECK(lv_eval_create(m, &ep, &ev) == LV_ERR_INVALID_ARG && !ev && strstr(lv_last_error(), "no .txt files"), "empty dir: %s", lv_last_error());
    snprintf(cmd, sizeof(cmd), ": > '%s/empty.txt'", empty);
    REQUIRE(system(cmd) == 0, "touch");
    CHECK(lv_eval_create(m, &ep, &ev) == LV_ERR_INVALID_ARG && !ev && strstr(lv_last_error(), "all empty"), "empty files: %s", lv_last_error());
    ep.task = LV_EVAL_PASSKEY;
    CHECK(lv_eval_create(m, &ep, &ev) == LV_ERR_INVALID_ARG && !ev, "passkey with a haystack");
    ep.haystack_dir = NULL;
    ep.task = (lv_eval_task)7;
    CHECK(lv_eval_create(m, &ep, &ev) == LV_ERR_INVALID_ARG && !ev, "unknown task");
    ep.task = LV_EVAL_PASSKEY;
    CHECK(lv_eval_create(NULL, &ep, &ev) == LV_ERR_INVALID_ARG && lv_eval_create(m, NULL, &ev) == LV_ERR_INVALID_ARG, "NULL arguments");
    REQUIRE(lv_eval_create(m, &ep, &ev) == LV_OK, "passkey: %s", lv_last_error());
    lv_eval_prompt *p = NULL;
    CHECK(lv_eval_build(ev, 300, 0.5, 0, &p) == LV_ERR_INVALID_ARG && !p && strstr(lv_last_error(), "too short"), "too short: %s", lv_last_error());
    CHECK(lv_eval_build(ev, 600, 1.5, 0, &p) == LV_ERR_INVALID_ARG && !p, "depth > 1");
    CHECK(lv_eval_build(ev, 512, -0.1, 0, &p) == LV_ERR_INVALID_ARG && !p, "depth < 0");
    CHECK(lv_eval_build(ev, 512, NAN, 0, &p) == LV_ERR_INVALID_ARG && !p, "depth NaN");
    CHECK(lv_eval_build(ev, 0, 0.5, 0, &p) == LV_ERR_INVALID_ARG && !p, "length 0");
    /* out of memory anywhere in a build fails cleanly (ASan checks the leaks) */
    int ok = 0;
    /* every allocation fails from the k-th on: walk k densely at first, then geometrically (a build makes thousands) */
    for (int64_t k = 0; k < 10000000 && !ok; k += k < 64 ? 1 : k / 16) {
        lv_test_alloc_fail_after(k);
        lv_status st = lv_eval_build(ev, 600, 0.5, 1, &p);
        lv_test_alloc_fail_after(-1);
        if (st == LV_OK) ok = 1;
        else CHECK(!p && st == LV_ERR_NOMEM, "allocation %lld failing: %d %s", (long long)k, st, lv_last_error());
        lv_eval_prompt_free(p);
        p = NULL;
    }
    CHECK(ok, "a build succeeds once allocations do");
    lv_eval_free(ev);
    lv_eval_free(NULL);
    lv_eval_prompt_free(NULL);
}

TEST(eval_answer_rule) {
    static const struct {
        const char *keywords, *text;
        bool correct;
        double score;
    } cases[] = {
        {"sandwich|Dolores Park", " eat a sandwich and sit in Dolores Park on a sunny day.", true, 1},
        {"sandwich|Dolores Park", "EATING A SANDWICH in DOLORES   PARK!", true, 1},
        {"sandwich|Dolores Park", "eat a sandwich in the park", false, 0.5},
        {"sandwich|Dolores Park", "Dolores\nPark, with a sandwich", true, 1},
        {"sandwich|Dolores Park", "sandwiches at Dolores Park", false, 0.5}, /* whole words: no stemming */
        {"sandwich|Dolores Park", "Dolores Parkway sandwich", false, 0.5},
        {"sandwich|Dolores Park", "", false, 0},
        {"sandwich|Dolores Park", "go to the beach", false, 0},
        {"48213", " 48213.", true, 1},
        {"48213", "The pass key is 48213. Remember it.", true, 1},
        {"48213", "482130", false, 0},
        {"48213", "148213", false, 0},
        {"48213", "48 213", false, 0},
        {"48213", "4821", false, 0},
        {"48213", "key:48213,", true, 1},
        {"48213", "\xe2\x96\x81" "48213." "\xe2\x96\x81", true, 1}, /* U+2581, the SentencePiece space a byte vocabulary emits raw */
        {"48213", "\xe2\x96" "48213", false, 0},                   /* a truncated marker is not a space */
        {"Dolores Park", "Dolores" "\xe2\x96\x81" "Park", true, 1},
        {"", "anything", false, 0},
        {"|", "anything", false, 0},
        {"a||b", "b a", true, 1},
        {"Café", "un CAFÉ noir", false, 0}, /* only ASCII letters change case */
        {"café", "un café noir", true, 1},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
        double score = -1;
        bool r = lv_eval_check_answer(cases[i].keywords, cases[i].text, (int64_t)strlen(cases[i].text), &score);
        CHECK(r == cases[i].correct && fabs(score - cases[i].score) < 1e-9, "'%s' in '%s': %d %.2f, expected %d %.2f", cases[i].keywords,
              cases[i].text, r, score, cases[i].correct, cases[i].score);
    }
    CHECK(!lv_eval_check_answer(NULL, "x", 1, NULL), "NULL keywords");
    CHECK(lv_eval_check_answer("ab", "xx ab\0 yy", 9, NULL), "length, not NUL, ends the text");
    CHECK(!lv_eval_check_answer("yy", "xx ab\0 yy", 5, NULL), "only len bytes are read");
}
