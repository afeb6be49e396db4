/*
 * test_tokenizer.c: the tokenizer against llama.cpp.
 *
 *  - llama.cpp's own test vectors (../shared/data/vocab/ggml-vocab-NAME.gguf.inp and .out) for every vocabulary there
 *    (llama-spm, phi-3, gpt-2, llama-bpe, qwen2), and again for Llama 3 and Qwen through their
 *    tokenizer.json files (converted with lv_vocab_json_to_gguf, written to the tmpdir, loaded).
 *  - Round trips (decode(encode(x))) on random UTF-8 and on the haystack, compared with what
 *    llama.cpp gives: tests/golden/tokenizer/ holds llama.cpp's answers, written by
 *    scripts/gen-tokenizer-golden.sh (the tests need neither llama.cpp nor a network).
 *  - Special tokens, streaming detokenization, buffer-size conventions, bad input.
 * Tests that need ../shared/data SKIP with a message when it is absent.
 */
#include "lv_test.h"
#include "longview.h"

#include "gguf/gguf.h"
#include "core/core.h"
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GOLDEN_DIR "tests/golden/tokenizer"

/* ---- helpers ---- */

static lv_model *load_vocab_file(const char *path) {
    lv_model_params mp = lv_model_default_params();
    mp.vocab_only = true;
    lv_model *m = NULL;
    if (lv_model_load(path, mp, &m) != LV_OK) {
        fprintf(stderr, "  cannot load %s: %s\n", path, lv_last_error());
        return NULL;
    }
    return m;
}

static lv_model *load_vocab(const char *name) {
    const char *sd = lv_test_shared_data();
    if (!sd) return NULL;
    char path[4096];
    snprintf(path, sizeof(path), "%s/vocab/ggml-vocab-%s.gguf", sd, name);
    return load_vocab_file(path);
}

/* tokenize into a malloc'ed array */
static lv_token *tok(const lv_model *m, const char *s, size_t n, int32_t *n_out, bool add, bool parse) {
    int32_t k = lv_tokenize(m, s, (int64_t)n, NULL, 0, add, parse);
    if (k == INT32_MIN) {
        *n_out = -1;
        return NULL;
    }
    int32_t cap = k < 0 ? -k : 1;
    lv_token *ids = malloc(sizeof(lv_token) * (size_t)cap);
    *n_out = k < 0 ? lv_tokenize(m, s, (int64_t)n, ids, cap, add, parse) : 0;
    return ids;
}


/* the strings of a .inp file (separated by "\n__ggml_vocab_test__\n") */
typedef struct vectors {
    char *inp, *out;
    char *str[128];
    size_t len[128];
    char *ids[128]; /* the expected line */
    int n;
} vectors;

static bool load_vectors(const char *name, vectors *vx) {
    memset(vx, 0, sizeof(*vx));
    const char *sd = lv_test_shared_data();
    char path[4096];
    snprintf(path, sizeof(path), "%s/vocab/ggml-vocab-%s.gguf.inp", sd, name);
    size_t n;
    vx->inp = lv_test_read_file(path, &n);
    snprintf(path, sizeof(path), "%s/vocab/ggml-vocab-%s.gguf.out", sd, name);
    vx->out = lv_test_read_file(path, NULL);
    if (!vx->inp || !vx->out) return false;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *p = vx->inp, *end = vx->inp + n;
    while (p < end && vx->n < 128) {
        char *q = strstr(p, sep);
        if (!q) break;
        *q = 0;
        vx->str[vx->n] = p;
        vx->len[vx->n] = (size_t)(q - p);
        vx->n++;
        p = q + sizeof(sep) - 1;
    }
    char *line = vx->out;
    for (int i = 0; i < vx->n; i++) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        vx->ids[i] = line;
        line = nl ? nl + 1 : line + strlen(line);
    }
    return true;
}

static void free_vectors(vectors *vx) {
    free(vx->inp);
    free(vx->out);
}

/* Check every vector of `name` against model m. Returns the number that passed. */
static int check_vectors(const lv_model *m, const char *name, const char *label) {
    vectors vx;
    if (!load_vectors(name, &vx)) {
        CHECK(0, "%s: cannot read the .inp/.out files", name);
        free_vectors(&vx);
        return 0;
    }
    int pass = 0;
    for (int i = 0; i < vx.n; i++) {
        int32_t n;
        lv_token *ids = tok(m, vx.str[i], vx.len[i], &n, false, false);
        char got[65536];
        size_t o = 0;
        got[0] = 0;
        for (int32_t k = 0; k < n && o + 16 < sizeof(got); k++) o += (size_t)snprintf(got + o, sizeof(got) - o, " %d", ids[k]);
        bool ok = n >= 0 && strcmp(got, vx.ids[i]) == 0;
        CHECK(ok, "%s vector %d '%.40s': got '%.200s' want '%.200s'", label, i, vx.str[i], got, vx.ids[i]);
        pass += ok;
        free(ids);
    }
    fprintf(stderr, "  %s: %d/%d vectors match llama.cpp\n", label, pass, vx.n);
    free_vectors(&vx);
    return pass;
}

#define NEED_SHARED()                                                                                \
    do {                                                                                             \
        if (!lv_test_shared_data()) SKIP("../shared/data is absent (set LV_SHARED_DATA): no vocab"); \
    } while (0)

/* ---- llama.cpp's vectors on the GGUF vocabularies ---- */

static void vectors_for(const char *name) {
    lv_model *m = load_vocab(name);
    REQUIRE(m, "cannot load vocab %s: %s", name, lv_last_error());
    check_vectors(m, name, name);
    lv_model_free(m);
}

TEST(tokenizer_vectors_llama_spm) { NEED_SHARED(); vectors_for("llama-spm"); }
TEST(tokenizer_vectors_phi3) { NEED_SHARED(); vectors_for("phi-3"); }
TEST(tokenizer_vectors_gpt2) { NEED_SHARED(); vectors_for("gpt-2"); }
TEST(tokenizer_vectors_llama_bpe) { NEED_SHARED(); vectors_for("llama-bpe"); }
TEST(tokenizer_vectors_qwen2) { NEED_SHARED(); vectors_for("qwen2"); }

/* ---- tokenizer.json import ---- */

/* Convert shared/data/vocab/<stem>.tokenizer.json into a vocab-only GGUF in the tmpdir. */
static lv_model *load_json_vocab(const char *stem, char *gguf_path, size_t n) {
    char json[4096];
    snprintf(json, sizeof(json), "%s/vocab/%s.tokenizer.json", lv_test_shared_data(), stem);
    snprintf(gguf_path, n, "%s/%s-from-json.gguf", lv_test_tmpdir(), stem);
    lv_gguf_writer *w = lv_gguf_writer_create();
    int64_t n_vocab = 0;
    lv_status st = lv_vocab_json_to_gguf(json, w, &n_vocab);
    if (st != LV_OK) {
        fprintf(stderr, "  lv_vocab_json_to_gguf(%s): %s\n", json, lv_last_error());
        lv_gguf_writer_free(w);
        return NULL;
    }
    /* llama.cpp wants an architecture even for a vocabulary-only file (the golden script loads
     * this file in llama.cpp too) */
    lv_gguf_writer_set_str(w, "general.architecture", "llama");
    FILE *f = fopen(gguf_path, "wb");
    st = f ? lv_gguf_writer_write_header(w, f) : LV_ERR_IO;
    if (f) fclose(f);
    lv_gguf_writer_free(w);
    if (st != LV_OK) return NULL;
    return load_vocab_file(gguf_path);
}

TEST(tokenizer_json_llama3) {
    NEED_SHARED();
    char path[4096];
    lv_model *m = load_json_vocab("llama3", path, sizeof(path));
    REQUIRE(m, "llama3 tokenizer.json did not convert and load: %s", lv_last_error());
    CHECK(lv_model_n_vocab(m) == 128256, "n_vocab %d", lv_model_n_vocab(m));
    CHECK(lv_token_bos(m) == 128000, "bos %d", lv_token_bos(m));
    CHECK(lv_token_eot(m) == 128009, "eot %d", lv_token_eot(m));
    CHECK(lv_tokenizer_add_bos(m), "llama-bpe adds BOS");
    check_vectors(m, "llama-bpe", "llama3 tokenizer.json");
    lv_model_free(m);
}

TEST(tokenizer_json_qwen3) {
    NEED_SHARED();
    char path[4096];
    lv_model *m = load_json_vocab("qwen3", path, sizeof(path));
    REQUIRE(m, "qwen3 tokenizer.json did not convert and load: %s", lv_last_error());
    CHECK(lv_token_eos(m) == 151645, "eos %d", lv_token_eos(m));
    CHECK(lv_token_pad(m) == 151643, "pad %d", lv_token_pad(m));
    CHECK(!lv_tokenizer_add_bos(m), "qwen adds no BOS");
    check_vectors(m, "qwen2", "qwen3 tokenizer.json");
    lv_model_free(m);
}

/* ---- round trips against llama.cpp's answers (tests/golden/tokenizer) ---- */

static uint64_t fnv64(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

/* decode a hex line ("-" is empty) into buf; returns the length */
static size_t unhex(const char *h, size_t hl, char *buf) {
    if (hl == 1 && h[0] == '-') return 0;
    for (size_t i = 0; i + 1 < hl; i += 2) buf[i / 2] = (char)(hexval(h[i]) * 16 + hexval(h[i + 1]));
    return hl / 2;
}

static lv_model *golden_model(const char *name, char *tmp, size_t n) {
    if (strcmp(name, "llama3-json") == 0) return load_json_vocab("llama3", tmp, n);
    if (strcmp(name, "qwen3-json") == 0) return load_json_vocab("qwen3", tmp, n);
    if (strcmp(name, "gemma4") == 0) return load_vocab_file(GOLDEN_DIR "/vocab-gemma4.gguf"); /* synthetic: scripts/gen-gemma4-vocab.py */
    return load_vocab(name);
}

/* golden: which golden file a vocabulary is compared with */
static void roundtrip_golden(const char *name, const char *golden) {
    char path[4096];
    snprintf(path, sizeof(path), GOLDEN_DIR "/inputs.txt");
    char *inputs = lv_test_read_file(path, NULL);
    snprintf(path, sizeof(path), GOLDEN_DIR "/roundtrip-%s.txt", golden);
    char *gold = lv_test_read_file(path, NULL);
    REQUIRE(inputs && gold, "cannot read %s (run from the project root)", path);
    char tmp[4096];
    lv_model *m = golden_model(name, tmp, sizeof(tmp));
    if (!m) {
        free(inputs);
        free(gold);
        REQUIRE(0, "cannot load %s", name);
    }
    char *in_line = inputs, *g_line = gold;
    int n = 0, ok_ids = 0, ok_text = 0;
    char *buf = malloc(1 << 20), *want = malloc(1 << 20);
    while (*in_line && *g_line) {
        char *in_end = strchr(in_line, '\n'), *g_end = strchr(g_line, '\n');
        if (!in_end || !g_end) break;
        size_t len = unhex(in_line, (size_t)(in_end - in_line), buf);
        int32_t nt;
        lv_token *ids = tok(m, buf, len, &nt, false, false);
        /* golden: "<n> <ids...> | <hex>" */
        char *p = g_line;
        long gn = strtol(p, &p, 10);
        bool same = nt == gn;
        for (long k = 0; k < gn; k++) {
            long id = strtol(p, &p, 10);
            if (same && ids[k] != id) same = false;
        }
        CHECK(same, "%s input %d (%zu bytes): ids differ from llama.cpp (%d vs %ld tokens)", name, n, len, nt, gn);
        ok_ids += same;
        p += 3; /* " | " */
        size_t wl = unhex(p, (size_t)(g_end - p), want);
        int64_t dl = lv_detokenize(m, ids, nt, NULL, 0, true, false);
        char *dec = malloc((size_t)(dl < 0 ? -dl : 0) + 1);
        dl = lv_detokenize(m, ids, nt, dec, dl < 0 ? -dl : 0, true, false);
        bool tsame = dl == (int64_t)wl && memcmp(dec, want, wl) == 0;
        CHECK(tsame, "%s input %d: decode(encode(x)) differs from llama.cpp's (%lld vs %zu bytes)", name, n, (long long)dl, wl);
        ok_text += tsame;
        free(dec);
        free(ids);
        n++;
        in_line = in_end + 1;
        g_line = g_end + 1;
    }
    CHECK(n > 300, "only %d round-trip inputs", n);
    fprintf(stderr, "  %s: %d/%d ids and %d/%d decoded texts match llama.cpp\n", name, ok_ids, n, ok_text, n);
    free(buf);
    free(want);
    free(inputs);
    free(gold);
    lv_model_free(m);
}

TEST(tokenizer_roundtrip_llama_spm) { NEED_SHARED(); roundtrip_golden("llama-spm", "llama-spm"); }
TEST(tokenizer_roundtrip_phi3) { NEED_SHARED(); roundtrip_golden("phi-3", "phi-3"); }
TEST(tokenizer_roundtrip_gpt2) { NEED_SHARED(); roundtrip_golden("gpt-2", "gpt-2"); }
TEST(tokenizer_roundtrip_llama_bpe) { NEED_SHARED(); roundtrip_golden("llama-bpe", "llama-bpe"); }
TEST(tokenizer_roundtrip_qwen2) { NEED_SHARED(); roundtrip_golden("qwen2", "qwen2"); }
TEST(tokenizer_roundtrip_llama3_json) { NEED_SHARED(); roundtrip_golden("llama3-json", "llama-bpe"); }
TEST(tokenizer_roundtrip_qwen3_json) { NEED_SHARED(); roundtrip_golden("qwen3-json", "qwen2"); }
TEST(tokenizer_roundtrip_gemma4) { roundtrip_golden("gemma4", "gemma4"); }

/* every essay of the haystack: token count, ids and decoded text as llama.cpp gives them */
static void haystack_golden(const char *name, const char *golden) {
    char path[4096];
    snprintf(path, sizeof(path), GOLDEN_DIR "/haystack-%s.txt", golden);
    char *gold = lv_test_read_file(path, NULL);
    REQUIRE(gold, "cannot read %s", path);
    char tmp[4096];
    lv_model *m = golden_model(name, tmp, sizeof(tmp));
    if (!m) {
        free(gold);
        REQUIRE(0, "cannot load %s", name);
    }
    int n = 0, ok = 0, max_files = lv_test_quick() ? 4 : 1000;
    int64_t total_tokens = 0;
    double t = 0;
    for (char *line = gold; *line && n < max_files;) {
        char *end = strchr(line, '\n');
        if (!end) break;
        *end = 0;
        char file[256];
        int gn, gsame;
        unsigned long long gh_ids, gh_text;
        if (sscanf(line, "%255s %d %llx %llx %d", file, &gn, &gh_ids, &gh_text, &gsame) != 5) break;
        snprintf(path, sizeof(path), "%s/haystack/paul-graham-essays/%s", lv_test_shared_data(), file);
        size_t len;
        char *text = lv_test_read_file(path, &len);
        if (!text) {
            CHECK(0, "cannot read %s", path);
            break;
        }
        double t0 = (double)clock() / CLOCKS_PER_SEC;
        int32_t nt;
        lv_token *ids = tok(m, text, len, &nt, false, false);
        t += (double)clock() / CLOCKS_PER_SEC - t0;
        total_tokens += nt;
        int64_t cap = (int64_t)len * 4 + 64;
        char *dec = malloc((size_t)cap);
        int64_t dl = lv_detokenize(m, ids, nt, dec, cap, true, false);
        bool same_ids = nt == gn && fnv64(ids, sizeof(lv_token) * (size_t)nt) == gh_ids;
        bool same_text = dl >= 0 && fnv64(dec, (size_t)dl) == gh_text;
        bool back = dl == (int64_t)len && memcmp(dec, text, len) == 0;
        CHECK(same_ids, "%s: %s: ids differ from llama.cpp (%d vs %d tokens)", name, file, nt, gn);
        CHECK(same_text && back == (gsame != 0), "%s: %s: decoded text differs from llama.cpp's", name, file);
        ok += same_ids && same_text;
        free(dec);
        free(ids);
        free(text);
        n++;
        line = end + 1;
    }
    fprintf(stderr, "  %s: %d/%d essays (%lld tokens) match llama.cpp; tokenize %.3f s\n", name, ok, n,
            (long long)total_tokens, t);
    CHECK(n > 0, "no essays");
    free(gold);
    lv_model_free(m);
}

TEST(tokenizer_haystack_llama_spm) { NEED_SHARED(); haystack_golden("llama-spm", "llama-spm"); }
TEST(tokenizer_haystack_phi3) { NEED_SHARED(); haystack_golden("phi-3", "phi-3"); }
TEST(tokenizer_haystack_gpt2) { NEED_SHARED(); haystack_golden("gpt-2", "gpt-2"); }
TEST(tokenizer_haystack_llama_bpe) { NEED_SHARED(); haystack_golden("llama-bpe", "llama-bpe"); }
TEST(tokenizer_haystack_qwen2) { NEED_SHARED(); haystack_golden("qwen2", "qwen2"); }
TEST(tokenizer_haystack_qwen3_json) { NEED_SHARED(); haystack_golden("qwen3-json", "qwen2"); }
TEST(tokenizer_haystack_gemma4) { NEED_SHARED(); haystack_golden("gemma4", "gemma4"); }

/* gemma4: what llama.cpp's "info" said of the synthetic vocabulary (tests/golden/tokenizer/
 * info-gemma4.txt: "bos N", "eos N", "eot N", "pad N", "sep N", "nl N", "add_bos N", "add_eos N",
 * "eog ids..."), the BOS it adds although the file says add_bos_token = false, and pieces: U+2581
 * renders as a space, <0xXX> as its byte, a control token only when asked */
TEST(tokenizer_gemma4_specials_and_pieces) {
    char *gold = lv_test_read_file(GOLDEN_DIR "/info-gemma4.txt", NULL);
    REQUIRE(gold, "cannot read " GOLDEN_DIR "/info-gemma4.txt");
    lv_model *m = load_vocab_file(GOLDEN_DIR "/vocab-gemma4.gguf");
    REQUIRE(m, "gemma4 vocabulary");
    long want[8];
    int n_eog = 0, n_eog_ours = 0;
    char *p = gold;
    REQUIRE(sscanf(p, "bos %ld\neos %ld\neot %ld\npad %ld\nsep %ld\nnl %ld\nadd_bos %ld\nadd_eos %ld\neog", &want[0], &want[1], &want[2],
                   &want[3], &want[4], &want[5], &want[6], &want[7]) == 8, "info-gemma4.txt format");
    p = strstr(p, "eog") + 3;
    for (char *q; ; p = q) {
        const long id = strtol(p, &q, 10);
        if (q == p) break;
        CHECK(lv_token_is_eog(m, (lv_token)id), "llama.cpp's eog id %ld", id);
        n_eog++;
    }
    for (lv_token i = 0; i < lv_model_n_vocab(m); i++) n_eog_ours += lv_token_is_eog(m, i);
    CHECK(n_eog >= 2 && n_eog_ours == n_eog, "eog ids: llama.cpp %d, longview %d", n_eog, n_eog_ours);
    CHECK(lv_token_bos(m) == want[0] && lv_token_eos(m) == want[1] && lv_token_eot(m) == want[2] && lv_token_nl(m) == want[5],
          "bos %d eos %d eot %d nl %d, llama.cpp %ld %ld %ld %ld", lv_token_bos(m), lv_token_eos(m), lv_token_eot(m), lv_token_nl(m), want[0],
          want[1], want[2], want[5]);
    int32_t n;
    lv_token *ids = tok(m, "Hello world", 11, &n, true, false);
    CHECK(want[6] == 1 && n > 1 && ids[0] == want[0], "BOS added (llama.cpp add_bos %ld): first id %d", want[6], n > 0 ? ids[0] : -1);
    free(ids);
    char buf[64];
    const lv_token byte_a = 8 + 0x41; /* <0x41> */
    CHECK(lv_token_to_piece(m, byte_a, buf, sizeof(buf), false) == 1 && buf[0] == 'A', "<0x41> renders as 'A'");
    ids = tok(m, "\xe2\x96\x81", 3, &n, false, false); /* a literal U+2581 in the text stays that character */
    int64_t dl = lv_detokenize(m, ids, n, buf, sizeof(buf), false, false);
    CHECK(dl == 1 && buf[0] == ' ', "U+2581 decodes to a space (%lld bytes)", (long long)dl);
    free(ids);
    CHECK(lv_token_to_piece(m, 1, buf, sizeof(buf), false) == 0 && lv_token_to_piece(m, 1, buf, sizeof(buf), true) == 5, "<eos> only with render_special");
    free(gold);
    lv_model_free(m);
}

/* ---- chat templates ---- */

static char *apply(const lv_model *m, const char *tmpl, const lv_chat_message *msgs, size_t n, bool add) {
    int64_t k = lv_chat_apply_template(m, tmpl, msgs, n, add, NULL, 0);
    if (k == INT32_MIN) return NULL;
    char *buf = malloc((size_t)-k);
    lv_chat_apply_template(m, tmpl, msgs, n, add, buf, -k);
    return buf;
}

TEST(tokenizer_chat_templates) {
    const lv_chat_message msgs[] = {{"system", "You are helpful."}, {"user", " Hi "}, {"assistant", "Hello!"}, {"user", "Why?"}};
    char *s = apply(NULL, "chatml", msgs, 4, true);
    REQUIRE(s, "chatml: %s", lv_last_error());
    CHECK(strcmp(s, "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n<|im_start|>assistant\n"
                    "Hello!<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n") == 0, "chatml: %s", s);
    free(s);
    s = apply(NULL, "llama3", msgs, 2, true);
    REQUIRE(s, "llama3");
    CHECK(strcmp(s, "<|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|><|start_header_id|>user<|end_header_id|>"
                    "\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n") == 0, "llama3: %s", s);
    free(s);
    s = apply(NULL, "mistral-v7", msgs, 3, false);
    REQUIRE(s, "mistral-v7");
    CHECK(strcmp(s, "[SYSTEM_PROMPT] You are helpful.[/SYSTEM_PROMPT][INST]  Hi [/INST] Hello!</s>") == 0, "mistral-v7: %s", s);
    free(s);
    /* unknown template: a clear error naming the way out */
    CHECK(lv_chat_apply_template(NULL, "{{ weird }}", msgs, 1, true, NULL, 0) == INT32_MIN, "unknown template accepted");
    CHECK(strstr(lv_last_error(), "--chat-template NAME") != NULL, "error does not name the way out: %s", lv_last_error());
    /* detection of the stored templates */
    CHECK(lv_chat_template_detect("{% for m in messages %}<|im_start|>{{ m.role }}") &&
              strcmp(lv_chat_template_detect("<|im_start|>"), "chatml") == 0, "chatml detection");
    CHECK(strcmp(lv_chat_template_detect("<|start_header_id|>x<|end_header_id|>"), "llama3") == 0, "llama3 detection");
    CHECK(strcmp(lv_chat_template_detect("{{ bos_token }}{% for m %}[INST] {{ m }} [/INST]"), "llama2") == 0, "llama2");
    CHECK(lv_chat_template_detect("<|assistant|><|user|>") == NULL, "falcon3 must not be claimed");
    /* the size-query convention */
    CHECK(lv_chat_apply_template(NULL, "chatml", msgs, 1, false, NULL, 0) < 0, "size query");
}

TEST(tokenizer_chat_template_from_models) {
    NEED_SHARED();
    const lv_chat_message msgs[] = {{"user", "Hello"}};
    struct { const char *json; const char *family; } cases[] = {{"llama3", "llama3"}, {"qwen3", "chatml"}};
    for (size_t i = 0; i < 2; i++) {
        char path[4096];
        lv_model *m = load_json_vocab(cases[i].json, path, sizeof(path));
        REQUIRE(m, "load %s", cases[i].json);
        char *s = apply(m, NULL, msgs, 1, true);
        char *w = apply(NULL, cases[i].family, msgs, 1, true);
        CHECK(s && w && strcmp(s, w) == 0, "%s: the stored template is not rendered as %s: %s", cases[i].json, cases[i].family,
              s ? s : lv_last_error());
        free(s);
        free(w);
        lv_model_free(m);
    }
    lv_model *m = load_vocab("phi-3");
    REQUIRE(m, "phi-3");
    char *s = apply(m, NULL, msgs, 1, true);
    CHECK(s && strcmp(s, "<|user|>\nHello<|end|>\n<|assistant|>\n") == 0, "phi-3: %s", s ? s : lv_last_error());
    free(s);
    lv_model_free(m);
}

/* ---- special tokens, buffer conventions, streaming ---- */

TEST(tokenizer_special_tokens) {
    NEED_SHARED();
    lv_model *m = load_vocab("phi-3");
    REQUIRE(m, "phi-3");
    /* llama.cpp: bos 1, eos 32000, eot 32007, eog {2, 32000, 32007} */
    CHECK(lv_token_bos(m) == 1 && lv_token_eos(m) == 32000 && lv_token_eot(m) == 32007, "phi-3 ids %d %d %d",
          lv_token_bos(m), lv_token_eos(m), lv_token_eot(m));
    CHECK(lv_token_is_eog(m, 2) && lv_token_is_eog(m, 32000) && lv_token_is_eog(m, 32007) && !lv_token_is_eog(m, 1),
          "phi-3 eog set");
    int32_t n;
    lv_token *ids = tok(m, "Hi", 2, &n, true, false);
    CHECK(n >= 2 && ids[0] == 1, "add_special adds BOS");
    free(ids);
    /* phi-3's special tokens strip the spaces right of them (RSTRIP), as llama.cpp sets */
    lv_token *a = tok(m, "<|user|> Hi", 11, &n, false, true);
    int32_t n2;
    lv_token *b = tok(m, "<|user|>Hi", 10, &n2, false, true);
    CHECK(n == n2 && n > 0 && memcmp(a, b, sizeof(lv_token) * (size_t)n) == 0 && a[0] == 32010, "rstrip after <|user|>");
    free(a);
    free(b);
    char buf[64];
    CHECK(lv_token_to_piece(m, 32000, buf, sizeof(buf), false) == 0, "control token rendered without render_special");
    CHECK(lv_token_to_piece(m, 32000, buf, sizeof(buf), true) == 13, "<|endoftext|> rendered");
    CHECK(lv_token_to_piece(m, 1000000, buf, sizeof(buf), true) == INT32_MIN, "bad id accepted");
    CHECK(lv_token_to_piece(m, 32000, buf, 3, true) == -13, "size query of a piece");
    CHECK(lv_tokenize(m, "Hello world", 11, buf[0] ? NULL : NULL, 0, false, false) == -2, "size query of tokenize");
    lv_model_free(m);

    m = load_vocab("qwen2");
    REQUIRE(m, "qwen2");
    CHECK(lv_token_eot(m) == 151645 && lv_token_eos(m) == 151643 && lv_token_nl(m) == 198, "qwen2 eot %d eos %d nl %d",
          lv_token_eot(m), lv_token_eos(m), lv_token_nl(m));
    CHECK(lv_token_is_eog(m, 128247), "qwen2's '</s>' ends generation in llama.cpp too");
    ids = tok(m, "<|im_start|>user", 16, &n, true, true);
    CHECK(n == 2 && ids[0] == 151644, "parse_special: %d tokens, first %d", n, n > 0 ? ids[0] : -1);
    free(ids);
    ids = tok(m, "<|im_start|>", 12, &n, false, false);
    CHECK(n > 1, "special text must stay text without parse_special");
    free(ids);
    lv_model_free(m);
}

/* is s[0..n) valid UTF-8 with no partial character? */
static bool valid_utf8(const char *s, int64_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (int64_t i = 0; i < n;) {
        int k = p[i] < 0x80 ? 1 : p[i] >= 0xC2 && p[i] < 0xE0 ? 2 : p[i] >= 0xE0 && p[i] < 0xF0 ? 3 : p[i] >= 0xF0 && p[i] < 0xF5 ? 4 : 0;
        if (!k || i + k > n) return false;
        for (int j = 1; j < k; j++)
            if ((p[i + j] & 0xC0) != 0x80) return false;
        i += k;
    }
    return true;
}

TEST(tokenizer_stream) {
    NEED_SHARED();
    const char *names[] = {"gpt-2", "llama-spm"};
    const char *text = "caf\xc3\xa9 \xf0\x9f\xa6\x99\xf0\x9f\xa6\x99 \xe4\xbd\xa0\xe5\xa5\xbd \xe2\x9c\x85 end";
    for (int v = 0; v < 2; v++) {
        lv_model *m = load_vocab(names[v]);
        REQUIRE(m, "%s", names[v]);
        int32_t n;
        lv_token *ids = tok(m, text, strlen(text), &n, false, false);
        lv_detok_stream *ds = NULL;
        REQUIRE(lv_detok_stream_create(m, &ds) == LV_OK, "stream create");
        char out[1024];
        int64_t o = 0;
        bool all_valid = true;
        for (int32_t i = 0; i < n; i++) {
            const char *p;
            int64_t len;
            CHECK(lv_detok_stream_push(ds, ids[i], &p, &len) == LV_OK, "push");
            all_valid &= valid_utf8(p, len);
            memcpy(out + o, p, (size_t)len);
            o += len;
        }
        const char *p;
        int64_t len;
        CHECK(lv_detok_stream_flush(ds, &p, &len) == LV_OK && len == 0, "nothing left over");
        CHECK(all_valid, "%s: a chunk held half a character", names[v]);
        /* SentencePiece pieces keep their leading space: compare from the text's start */
        const char *got = out;
        if (v == 1 && o > 0 && out[0] == ' ') {
            got++;
            o--;
        }
        CHECK(o == (int64_t)strlen(text) && memcmp(got, text, (size_t)o) == 0, "%s: stream gave '%.*s'", names[v], (int)o, got);
        /* an incomplete character at the end is flushed as U+FFFD */
        lv_token bt = -1;
        if (v == 0) { /* the byte token of 0xF0, the lead byte of a 4-byte character */
            for (lv_token t = 0; t < lv_model_n_vocab(m) && bt < 0; t++) {
                char pc[8];
                if (lv_token_to_piece(m, t, pc, sizeof(pc), false) == 1 && (unsigned char)pc[0] == 0xF0) bt = t;
            }
            CHECK(bt >= 0, "no byte token for 0xF0");
        }
        if (bt >= 0) {
            lv_detok_stream_push(ds, bt, &p, &len);
            CHECK(len == 0, "half a character was emitted");
            lv_detok_stream_flush(ds, &p, &len);
            CHECK(len == 3 && memcmp(p, "\xef\xbf\xbd", 3) == 0, "flush of an incomplete character");
        }
        lv_detok_stream_free(ds);
        free(ids);
        lv_model_free(m);
    }
}

TEST(tokenizer_bad_input) {
    lv_model_params mp = lv_model_default_params();
    mp.vocab_only = true;
    lv_model *m = NULL;
    /* a GGUF without tokenizer metadata */
    lv_gguf_writer *w = lv_gguf_writer_create();
    lv_gguf_writer_set_str(w, "general.architecture", "llama");
    char path[4096];
    snprintf(path, sizeof(path), "%s/no-tokenizer.gguf", lv_test_tmpdir());
    FILE *f = fopen(path, "wb");
    REQUIRE(f, "tmp");
    lv_gguf_writer_write_header(w, f);
    fclose(f);
    lv_gguf_writer_free(w);
    CHECK(lv_model_load(path, mp, &m) != LV_OK && strstr(lv_last_error(), "tokenizer.ggml.model"), "missing key not named: %s",
          lv_last_error());
    /* an unknown tokenizer model and a pre-tokenizer we do not know */
    const char *models[][2] = {{"bert", NULL}, {"gpt2", "no-such-pre"}};
    for (int k = 0; k < 2; k++) {
        w = lv_gguf_writer_create();
        const char *toks[] = {"a", "b", "ab"}, *merges[] = {"a b"};
        lv_gguf_writer_set_str(w, "tokenizer.ggml.model", models[k][0]);
        if (models[k][1]) lv_gguf_writer_set_str(w, "tokenizer.ggml.pre", models[k][1]);
        lv_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
        lv_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 1);
        f = fopen(path, "wb");
        lv_gguf_writer_write_header(w, f);
        fclose(f);
        lv_gguf_writer_free(w);
        CHECK(lv_model_load(path, mp, &m) == LV_ERR_UNSUPPORTED, "%s/%s accepted", models[k][0], models[k][1] ? models[k][1] : "");
    }
    /* a tiny BPE vocabulary built here: merges, and allocation failures during load */
    w = lv_gguf_writer_create();
    const char *toks[] = {"a", "b", "ab", "c", "abc"}, *merges[] = {"a b", "ab c"};
    lv_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    lv_gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2");
    lv_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 5);
    lv_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 2);
    f = fopen(path, "wb");
    lv_gguf_writer_write_header(w, f);
    fclose(f);
    lv_gguf_writer_free(w);
    REQUIRE(lv_model_load(path, mp, &m) == LV_OK, "tiny vocab: %s", lv_last_error());
    lv_token ids[8];
    CHECK(lv_tokenize(m, "abcab", 5, ids, 8, false, false) == 2 && ids[0] == 4 && ids[1] == 2, "tiny merges");
    lv_model_free(m);
    int fails = 0;
    for (int64_t k = 0; k < 200; k++) {
        lv_test_alloc_fail_after(k);
        lv_status st = lv_model_load(path, mp, &m);
        lv_test_alloc_fail_after(-1);
        if (st == LV_OK) {
            lv_model_free(m);
            break;
        }
        CHECK(m == NULL, "failed load left a model");
        fails++;
    }
    CHECK(fails > 5, "allocation-failure walk did not reach the vocabulary (%d)", fails);
}
