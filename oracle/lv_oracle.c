/*
 * lv_oracle.c: our reference-output generator for the golden logits (the tokenizer's is
 * lv_oracle_tokenizer.c beside it), written against llama.cpp's public llama.h.
 * It loads a GGUF with llama.cpp (the prebuilt libraries of the npm package node-llama-cpp 3.21.1,
 * llama.cpp release v0.4.0), runs a token sequence, and writes the body of a golden file that
 * longview's tests compare against (format: tests/golden/README.md):
 *
 *   lv_oracle MODEL TOKENS_FILE OUT_BODY [options]
 *     --kv T[/T]          KV cache type of keys and values (keys/values when they differ):
 *                         f32 (default), f16, q8_0, q4_0 (a quantized V cache needs --fa on)
 *     --fa on|off|auto    flash attention (default off)
 *     --n-sample N        vocabulary ids sampled per row (default 32)
 *     --n-gen N           greedy tokens to generate (default 64)
 *     --gen-prompt N      prompt length for the greedy run: the first N tokens (default 16)
 *     --threads N         (default 2)
 *     --batch N           tokens per llama_decode for the prefill (default 512)
 *
 * Built and run by scripts/gen-golden.sh; never part of the longview build or its tests.
 */
#include "ggml-backend.h"
#include "llama.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *msg) {
    fprintf(stderr, "lv_oracle: %s\n", msg);
    exit(1);
}

static void quiet_log(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level >= GGML_LOG_LEVEL_WARN) fputs(text, stderr);
}

static int32_t *read_tokens(const char *path, int32_t *n) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open the tokens file");
    int32_t cap = 1024, cnt = 0;
    int32_t *t = malloc(sizeof(int32_t) * (size_t)cap);
    long v;
    for (;;) {
        int c = fgetc(f);
        while (c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t') c = fgetc(f);
        if (c == EOF) break;
        ungetc(c, f);
        if (fscanf(f, "%ld", &v) != 1) die("bad token id");
        if (cnt == cap) t = realloc(t, sizeof(int32_t) * (size_t)(cap *= 2));
        t[cnt++] = (int32_t)v;
    }
    fclose(f);
    *n = cnt;
    return t;
}

static void put(FILE *f, const void *p, size_t n) {
    if (fwrite(p, 1, n, f) != n) die("write failed");
}

#define TOPK 4

/* the TOPK best ids, best first (ties: lower id first) */
static void topk(const float *lg, int32_t n, int32_t *ids) {
    for (int k = 0; k < TOPK; k++) ids[k] = -1;
    for (int32_t i = 0; i < n; i++) {
        int k = TOPK;
        while (k > 0 && (ids[k - 1] < 0 || lg[i] > lg[ids[k - 1]])) k--;
        if (k == TOPK) continue;
        for (int j = TOPK - 1; j > k; j--) ids[j] = ids[j - 1];
        ids[k] = i;
    }
}

/* decode tokens [0, n) at positions [0, n) in chunks, calling row() for each position's logits */
static void run(struct llama_context *ctx, const int32_t *toks, int32_t n, int32_t n_batch, int all,
                void (*row)(void *, const float *), void *user) {
    struct llama_batch b = llama_batch_init(n_batch, 0, 1);
    for (int32_t i0 = 0; i0 < n; i0 += n_batch) {
        int32_t m = n - i0 < n_batch ? n - i0 : n_batch;
        b.n_tokens = m;
        for (int32_t i = 0; i < m; i++) {
            b.token[i] = toks[i0 + i];
            b.pos[i] = i0 + i;
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = 0;
            b.logits[i] = all || i0 + i == n - 1;
        }
        if (llama_decode(ctx, b) != 0) die("llama_decode failed");
        for (int32_t i = 0; i < m; i++)
            if (b.logits[i]) row(user, llama_get_logits_ith(ctx, i));
    }
    llama_batch_free(b);
}

typedef struct rows_out {
    FILE *f;
    int32_t n_vocab, n_sample;
    const int32_t *sample;
    float *last;
} rows_out;

static void write_row(void *user, const float *lg) {
    rows_out *o = user;
    int32_t ids[TOPK];
    topk(lg, o->n_vocab, ids);
    double sum = 0, sumsq = 0;
    for (int32_t i = 0; i < o->n_vocab; i++) {
        sum += lg[i];
        sumsq += (double)lg[i] * lg[i];
    }
    for (int k = 0; k < TOPK; k++) {
        put(o->f, &ids[k], 4);
        put(o->f, &lg[ids[k]], 4);
    }
    for (int32_t j = 0; j < o->n_sample; j++) put(o->f, &lg[o->sample[j]], 4);
    put(o->f, &sum, 8);
    put(o->f, &sumsq, 8);
    memcpy(o->last, lg, sizeof(float) * (size_t)o->n_vocab);
}

typedef struct greedy_state {
    int32_t n_vocab;
    int32_t next;
    float gap;
} greedy_state;

static void greedy_row(void *user, const float *lg) {
    greedy_state *g = user;
    int32_t ids[TOPK];
    topk(lg, g->n_vocab, ids);
    g->next = ids[0];
    g->gap = lg[ids[0]] - lg[ids[1]];
}

/* a KV cache type by name (n characters of s) */
static enum ggml_type kv_type(const char *s, size_t n) {
    static const struct {
        const char *name;
        enum ggml_type t;
    } types[] = {{"f32", GGML_TYPE_F32}, {"f16", GGML_TYPE_F16}, {"q8_0", GGML_TYPE_Q8_0}, {"q4_0", GGML_TYPE_Q4_0}};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strlen(types[i].name) == n && !strncmp(s, types[i].name, n)) return types[i].t;
    die("--kv: unknown type");
    return GGML_TYPE_F32;
}

int main(int argc, char **argv) {
    if (argc < 4) die("usage: lv_oracle MODEL TOKENS_FILE OUT_BODY [--kv T[/T]] [--fa on|off|auto] [--n-sample N] [--n-gen N] [--gen-prompt N] [--threads N] [--batch N]");
    const char *model_path = argv[1], *tok_path = argv[2], *out_path = argv[3];
    const char *kv = "f32";
    int fa = 0, n_sample = 32, n_gen = 64, gen_prompt = 16, threads = 2, n_batch = 512;
    for (int i = 4; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--kv")) kv = v;
        else if (!strcmp(k, "--fa")) fa = !strcmp(v, "on") ? 1 : !strcmp(v, "auto") ? -1 : 0;
        else if (!strcmp(k, "--n-sample")) n_sample = atoi(v);
        else if (!strcmp(k, "--n-gen")) n_gen = atoi(v);
        else if (!strcmp(k, "--gen-prompt")) gen_prompt = atoi(v);
        else if (!strcmp(k, "--threads")) threads = atoi(v);
        else if (!strcmp(k, "--batch")) n_batch = atoi(v);
        else die("unknown option");
    }
    llama_log_set(quiet_log, NULL);
    const char *libdir = getenv("LV_ORACLE_LIBDIR");
    if (libdir) ggml_backend_load_all_from_path(libdir);
    else ggml_backend_load_all();
    llama_backend_init();

    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) die("llama.cpp could not load the model");
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);

    int32_t n_tok;
    int32_t *toks = read_tokens(tok_path, &n_tok);
    if (n_tok <= 0 || gen_prompt > n_tok) die("bad token list");

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n_tok + n_gen + 64);
    cp.n_batch = (uint32_t)n_batch;
    cp.n_ubatch = (uint32_t)n_batch;
    cp.n_seq_max = 1;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.flash_attn_type = fa == 1 ? LLAMA_FLASH_ATTN_TYPE_ENABLED : fa == -1 ? LLAMA_FLASH_ATTN_TYPE_AUTO : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    const char *slash = strchr(kv, '/');
    cp.type_k = kv_type(kv, slash ? (size_t)(slash - kv) : strlen(kv));
    cp.type_v = slash ? kv_type(slash + 1, strlen(slash + 1)) : cp.type_k;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) die("llama.cpp could not create the context");

    FILE *f = fopen(out_path, "wb");
    if (!f) die("cannot create the output");
    int32_t *sample = malloc(sizeof(int32_t) * (size_t)n_sample);
    for (int32_t j = 0; j < n_sample; j++) sample[j] = (int32_t)(((int64_t)j * 7919 + 13) % n_vocab);
    put(f, toks, sizeof(int32_t) * (size_t)n_tok);
    put(f, sample, sizeof(int32_t) * (size_t)n_sample);

    /* every position's logits in one prefill */
    rows_out ro = {f, n_vocab, n_sample, sample, malloc(sizeof(float) * (size_t)n_vocab)};
    run(ctx, toks, n_tok, n_batch, 1, write_row, &ro);
    put(f, ro.last, sizeof(float) * (size_t)n_vocab);

    /* greedy generation from the first gen_prompt tokens, one token per step */
    llama_memory_clear(llama_get_memory(ctx), true);
    greedy_state g = {n_vocab, 0, 0};
    run(ctx, toks, gen_prompt, n_batch, 0, greedy_row, &g);
    struct llama_batch b = llama_batch_init(1, 0, 1);
    for (int32_t i = 0; i < n_gen; i++) {
        put(f, &g.next, 4);
        put(f, &g.gap, 4);
        b.n_tokens = 1;
        b.token[0] = g.next;
        b.pos[0] = gen_prompt + i;
        b.n_seq_id[0] = 1;
        b.seq_id[0][0] = 0;
        b.logits[0] = 1;
        if (llama_decode(ctx, b) != 0) die("llama_decode failed (greedy)");
        greedy_row(&g, llama_get_logits_ith(ctx, 0));
    }
    llama_batch_free(b);
    if (fclose(f) != 0) die("write failed");
    fprintf(stderr, "lv_oracle: %s: %d tokens, n_vocab %d, kv %s, fa %d\n", model_path, n_tok, n_vocab, kv, fa);
    free(sample);
    free(ro.last);
    free(toks);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
