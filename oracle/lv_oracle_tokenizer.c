/*
 * lv_oracle_tokenizer.c: a small program against llama.cpp's public llama.h, used only to produce the
 * golden files under tests/golden/tokenizer/ and the benchmark baseline (bench/tokenizer/).
 * It is built by scripts/gen-tokenizer-golden.sh against a prebuilt libllama; nothing in the
 * longview build or `make test` needs it.
 *
 *   lv_oracle_tokenizer tokenize VOCAB.gguf FILE [add_special parse_special]
 *       raw bytes of FILE -> ids on one line (space separated)
 *   lv_oracle_tokenizer roundtrip VOCAB.gguf FILE
 *       FILE holds records "u32 length + bytes"; for each, writes a record with the hex of
 *       detokenize(tokenize(x)) (add_special=0, parse_special=0, remove_special=0, unparse=0)
 *       and the ids, one line per record: "<n_ids> <ids...> | <hex>"
 *   lv_oracle_tokenizer pieces VOCAB.gguf
 *       for every id: "<id> <attr> <hex of token_to_piece(special=1)> <hex of special=0>"
 *   lv_oracle_tokenizer info VOCAB.gguf
 *       bos eos eot eom pad sep nl add_bos add_eos and the eog ids
 *   lv_oracle_tokenizer digest VOCAB.gguf FILE...
 *       per file: "<basename> <n_ids> <fnv64 of the ids (int32 LE)> <fnv64 of detokenize> <1 if
 *       detokenize gives the file back, else 0>" (add_special=0, parse_special=0)
 *   lv_oracle_tokenizer bench VOCAB.gguf FILE REPS
 *       times llama_tokenize over FILE REPS times; prints best and median seconds and n_tokens
 *   lv_oracle_tokenizer unicode
 *       dumps llama.cpp's codepoint flags as ranges (uses the exported C++ helper
 *       unicode_cpt_flags_from_cpt, not part of llama.h): "start flags" per line
 */
#include "llama.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void quiet_log(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) { perror(path); exit(1); }
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static const struct llama_vocab *load_vocab(const char *path, struct llama_model **out) {
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model *m = llama_model_load_from_file(path, mp);
    if (!m) { fprintf(stderr, "cannot load %s\n", path); exit(1); }
    *out = m;
    return llama_model_get_vocab(m);
}

static llama_token *tokenize(const struct llama_vocab *v, const char *text, size_t len, int *n, bool add, bool parse) {
    int cap = (int)len + 16;
    llama_token *ids = malloc(sizeof(*ids) * (size_t)cap);
    int r = llama_tokenize(v, text, (int32_t)len, ids, cap, add, parse);
    if (r < 0) {
        cap = -r;
        ids = realloc(ids, sizeof(*ids) * (size_t)cap);
        r = llama_tokenize(v, text, (int32_t)len, ids, cap, add, parse);
    }
    *n = r;
    return ids;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void put_hex(const char *s, int n) {
    if (n == 0) putchar('-');
    for (int i = 0; i < n; i++) printf("%02x", (unsigned char)s[i]);
}

static uint64_t fnv64(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint16_t _Z26unicode_cpt_flags_from_cptj(uint32_t cpt); /* unicode_cpt_flags_from_cpt(uint32_t) */
uint32_t _Z15unicode_tolowerj(uint32_t cpt);            /* unicode_tolower(uint32_t) */

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: see the comment at the top of lv_oracle_tokenizer.c\n"); return 2; }
    llama_log_set(quiet_log, NULL);
    llama_backend_init();
    const char *cmd = argv[1];
    struct llama_model *model = NULL;
    if (strcmp(cmd, "unicode") == 0) {
        uint32_t prev = 0xFFFFFFFF;
        for (uint32_t c = 0; c < 0x110000; c++) {
            uint32_t f = _Z26unicode_cpt_flags_from_cptj(c) & 0x01FF; /* categories + whitespace */
            if (f != prev) printf("%06X %04X\n", c, f);
            prev = f;
        }
        for (uint32_t c = 0x80; c < 0x110000; c++) {
            uint32_t l = _Z15unicode_tolowerj(c);
            if (l < 0x80) printf("lower %06X %02X\n", c, l);
        }
        return 0;
    }
    if (argc < 3) return 2;
    const struct llama_vocab *v = load_vocab(argv[2], &model);
    if (strcmp(cmd, "tokenize") == 0 && argc >= 4) {
        size_t len;
        char *text = read_file(argv[3], &len);
        bool add = argc > 4 && atoi(argv[4]);
        bool parse = argc > 5 && atoi(argv[5]);
        int n;
        llama_token *ids = tokenize(v, text, len, &n, add, parse);
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    } else if (strcmp(cmd, "roundtrip") == 0 && argc >= 4) {
        size_t len;
        char *data = read_file(argv[3], &len);
        size_t off = 0;
        while (off + 4 <= len) {
            uint32_t n;
            memcpy(&n, data + off, 4);
            off += 4;
            int nt;
            llama_token *ids = tokenize(v, data + off, n, &nt, false, false);
            off += n;
            int cap = 4 * n + 64;
            char *out = malloc((size_t)cap);
            int r = llama_detokenize(v, ids, nt, out, cap, false, false);
            if (r < 0) { out = realloc(out, (size_t)-r); cap = -r; r = llama_detokenize(v, ids, nt, out, cap, false, false); }
            printf("%d", nt);
            for (int i = 0; i < nt; i++) printf(" %d", ids[i]);
            printf(" | ");
            put_hex(out, r);
            printf("\n");
            free(out);
            free(ids);
        }
    } else if (strcmp(cmd, "pieces") == 0) {
        int n = llama_vocab_n_tokens(v);
        char buf[1024];
        for (int i = 0; i < n; i++) {
            printf("%d %d ", i, (int)llama_vocab_get_attr(v, i));
            int r = llama_token_to_piece(v, i, buf, sizeof(buf), 0, true);
            put_hex(buf, r);
            putchar(' ');
            r = llama_token_to_piece(v, i, buf, sizeof(buf), 0, false);
            put_hex(buf, r);
            putchar('\n');
        }
    } else if (strcmp(cmd, "info") == 0) {
        printf("bos %d\neos %d\neot %d\npad %d\nsep %d\nnl %d\nadd_bos %d\nadd_eos %d\neog", llama_vocab_bos(v),
               llama_vocab_eos(v), llama_vocab_eot(v), llama_vocab_pad(v), llama_vocab_sep(v), llama_vocab_nl(v),
               (int)llama_vocab_get_add_bos(v), (int)llama_vocab_get_add_eos(v));
        for (int i = 0; i < llama_vocab_n_tokens(v); i++)
            if (llama_vocab_is_eog(v, i)) printf(" %d", i);
        printf("\n");
    } else if (strcmp(cmd, "digest") == 0) {
        for (int a = 3; a < argc; a++) {
            size_t len;
            char *text = read_file(argv[a], &len);
            int nt;
            llama_token *ids = tokenize(v, text, len, &nt, false, false);
            int cap = 4 * (int)len + 64;
            char *out = malloc((size_t)cap);
            int r = llama_detokenize(v, ids, nt, out, cap, false, false);
            const char *base = strrchr(argv[a], '/');
            base = base ? base + 1 : argv[a];
            printf("%s %d %016llx %016llx %d\n", base, nt, (unsigned long long)fnv64(ids, sizeof(*ids) * (size_t)nt),
                   (unsigned long long)fnv64(out, (size_t)r), r == (int)len && memcmp(out, text, len) == 0);
            free(out);
            free(ids);
            free(text);
        }
    } else if (strcmp(cmd, "bench") == 0 && argc >= 5) {
        size_t len;
        char *text = read_file(argv[3], &len);
        int reps = atoi(argv[4]);
        double *t = malloc(sizeof(double) * (size_t)reps);
        int n = 0;
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            llama_token *ids = tokenize(v, text, len, &n, false, false);
            t[r] = now() - t0;
            free(ids);
        }
        qsort(t, (size_t)reps, sizeof(double), cmp_d);
        printf("llama.cpp tokenize: %zu bytes -> %d tokens, best %.4f s, median %.4f s over %d reps\n", len, n, t[0],
               t[reps / 2], reps);
    } else {
        fprintf(stderr, "unknown command %s\n", cmd);
        return 2;
    }
    llama_model_free(model);
    return 0;
}
