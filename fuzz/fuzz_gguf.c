/*
 * fuzz_gguf.c: libFuzzer target for the GGUF reader and the model loader.
 *
 *   make fuzz
 *   build/fuzz/fuzz_gguf -dict=fuzz/gguf.dict -max_total_time=600 build/fuzz/corpus-gguf fuzz/corpus/gguf
 *
 * (new inputs go to the first directory, which is not committed; fuzz/corpus/gguf holds the
 * seeds written by `LV_WRITE_FUZZ_CORPUS=fuzz/corpus/gguf build/release/lv_test gguf_fuzz_seeds`).
 *
 * Each input is parsed with lv_gguf_open_memory; when it parses, every accessor is walked
 * (tests/gguf_walk.h) and the reader's invariants are checked. Then the same bytes go through
 * lv_model_load_memory, and a model that loads must have every bound weight inside the input
 * with the shape its hyper-parameters imply. A failure must come with a message. Any violated
 * invariant traps, so libFuzzer reports it like a crash.
 */
#include "gguf/gguf.h"
#include "core/core.h"
#include "model/model.h"
#include "gguf/quant.h"

#include "../tests/gguf_walk.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static void quiet_log(lv_log_level level, const char *msg, void *user) {
    (void)level;
    (void)msg;
    (void)user;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    lv_log_set(quiet_log, NULL, LV_LOG_ERROR);
    return 0;
}

#define FUZZ_CHECK(x) do { if (!(x)) __builtin_trap(); } while (0)

/* a bound weight: inside the input, with the bytes its shape and type imply */
static void check_tensor(const lv_tensor *t, const uint8_t *data, size_t size, int64_t ne0, int64_t ne1) {
    if (!t->data) return;
    const lv_type_traits *tt = lv_type_get(t->type);
    FUZZ_CHECK(tt != NULL);
    FUZZ_CHECK(t->ne[0] == ne0 && t->ne[1] == (ne1 ? ne1 : 1) && t->ne[2] == 1 && t->ne[3] == 1);
    FUZZ_CHECK(t->row_bytes == ne0 / tt->blck_size * tt->type_size);
    uint64_t nbytes = (uint64_t)t->row_bytes * (uint64_t)t->ne[1];
    const uint8_t *p = t->data;
    FUZZ_CHECK(p >= data && p <= data + size && nbytes <= (uint64_t)(data + size - p));
    /* touch the first and last byte so ASan sees any stray pointer */
    if (nbytes) {
        volatile uint8_t sink = p[0];
        sink = p[nbytes - 1];
        (void)sink;
    }
}

static void check_model(const lv_model *m, const uint8_t *data, size_t size) {
    const lv_hparams *hp = &m->hp;
    FUZZ_CHECK(hp->n_vocab > 0 && hp->n_embd > 0 && hp->n_layer > 0 && hp->n_head > 0 && hp->n_head_kv > 0);
    FUZZ_CHECK(hp->n_head % hp->n_head_kv == 0 && hp->n_embd_head_k > 0 && hp->n_embd_head_v > 0);
    FUZZ_CHECK(hp->n_rot <= hp->n_embd_head_k && hp->n_rot % 2 == 0);
    const int64_t E = hp->n_embd, V = hp->n_vocab;
    const int64_t q = hp->n_head * hp->n_embd_head_k, k = hp->n_head_kv * hp->n_embd_head_k;
    const int64_t v = hp->n_head_kv * hp->n_embd_head_v, o = hp->n_head * hp->n_embd_head_v;
    FUZZ_CHECK(m->tok_embd.data && m->output.data && m->output_norm.data);
    check_tensor(&m->tok_embd, data, size, E, V);
    check_tensor(&m->output, data, size, E, V);
    check_tensor(&m->output_norm, data, size, E, 0);
    check_tensor(&m->rope_freqs, data, size, hp->n_rot / 2, 0);
    for (int64_t il = 0; il < hp->n_layer; il++) {
        const lv_layer *L = &m->layers[il];
        FUZZ_CHECK(L->attn_norm.data && L->wq.data && L->wk.data && L->wv.data && L->wo.data && L->ffn_norm.data &&
                   L->ffn_gate.data && L->ffn_up.data && L->ffn_down.data);
        check_tensor(&L->attn_norm, data, size, E, 0);
        check_tensor(&L->wq, data, size, E, q);
        check_tensor(&L->wk, data, size, E, k);
        check_tensor(&L->wv, data, size, E, v);
        check_tensor(&L->wo, data, size, o, E);
        check_tensor(&L->bq, data, size, q, 0);
        check_tensor(&L->bk, data, size, k, 0);
        check_tensor(&L->bv, data, size, v, 0);
        check_tensor(&L->bo, data, size, E, 0);
        check_tensor(&L->ffn_norm, data, size, E, 0);
        check_tensor(&L->ffn_gate, data, size, E, hp->n_ff);
        check_tensor(&L->ffn_up, data, size, E, hp->n_ff);
        check_tensor(&L->ffn_down, data, size, hp->n_ff, E);
    }
    char buf[4096];
    int64_t need = lv_model_describe(m, buf, sizeof(buf));
    FUZZ_CHECK(need > 0 && strlen(buf) == (size_t)LV_MIN(need, (int64_t)sizeof(buf) - 1));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lv_gguf *g = NULL;
    lv_error_clear();
    lv_status st = lv_gguf_open_memory(data, size, &g);
    if (st == LV_OK) {
        int bad = 0;
        gguf_walk(g, data, size, &bad);
        FUZZ_CHECK(bad == 0);
        lv_gguf_close(g);
    } else {
        FUZZ_CHECK(g == NULL && lv_last_error()[0] != '\0');
        FUZZ_CHECK(st == LV_ERR_FORMAT || st == LV_ERR_UNSUPPORTED);
        return 0; /* the model loader would only repeat the reader's verdict */
    }

    lv_model *m = NULL;
    lv_error_clear();
    st = lv_model_load_memory(data, size, lv_model_default_params(), &m);
    if (st == LV_OK) {
        check_model(m, data, size);
        lv_model_free(m);
    } else {
        FUZZ_CHECK(m == NULL && lv_last_error()[0] != '\0');
        FUZZ_CHECK(st == LV_ERR_FORMAT || st == LV_ERR_UNSUPPORTED);
    }
    return 0;
}
