/*
 * test_model_load.c: lv_model_load on files written with the GGUF writer.
 *
 *  - valid tiny llama (tied and untied output) and qwen2 (q/k/v biases) models load, through
 *    mmap, a private copy and memory, with the hyper-parameters and weight bytes that were written;
 *  - broken models fail with a status and a message naming the key or tensor: missing or wrong
 *    architecture, missing / mistyped / out-of-range hyper-parameters, missing tensors, wrong
 *    shapes, unsupported types, unexpected tensors;
 *  - random mutations of a valid model;
 *  - allocation failure at every allocation of a load (no leak, no crash, LV_ERR_NOMEM);
 *  - the fuzzer's seed corpus (fuzz/corpus/gguf) is written from here and checked.
 */
#define _GNU_SOURCE
#include "gguf_build.h"
#include "gguf_walk.h"
#include "core/core.h"
#include "lv_test.h"
#include "model/model.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

/* -------------------------------------------------------------------------------------------
 * helpers
 * ----------------------------------------------------------------------------------------- */

/* Load m from memory (a guarded copy) and expect failure with `want` and `needle` in the
 * message. Also loads it from a file, which must fail the same way. */
#define EXPECT_MODEL_BAD(m, want, needle) expect_model_bad_(m, want, needle, __LINE__)

static void expect_model_bad_(const gb_model *m, lv_status want, const char *needle, int line) {
    gb_buf b = {0};
    if (!gb_model_build(m, &b)) {
        CHECK(0, "line %d: the writer refused the model: %s", line, lv_last_error());
        return;
    }
    gb_guard gd;
    gb_guard_init(&gd, b.p, b.n);
    lv_model *model = (lv_model *)1;
    lv_error_clear();
    lv_status st = lv_model_load_memory(gd.data, gd.n, lv_model_default_params(), &model);
    CHECK(st != LV_OK && model == NULL, "line %d: a broken model was accepted", line);
    CHECK(st == want, "line %d: status %s, expected %s (%s)", line, lv_status_str(st), lv_status_str(want), lv_last_error());
    CHECK(strstr(lv_last_error(), needle) != NULL, "line %d: message '%s' does not contain '%s'", line, lv_last_error(), needle);
    if (model != (lv_model *)1) lv_model_free(model);
    gb_guard_free(&gd);
    /* the file path gives the same verdict, with the path in the message */
    const char *path = gb_tmp_path("broken-model.gguf");
    if (gb_write_file(path, b.p, b.n)) {
        model = NULL;
        st = lv_model_load(path, lv_model_default_params(), &model);
        CHECK(st == want && model == NULL, "line %d: from a file: %s", line, lv_status_str(st));
        CHECK(strstr(lv_last_error(), needle) && strstr(lv_last_error(), "broken-model.gguf"), "line %d: file message '%s'", line,
              lv_last_error());
        lv_model_free(model);
    }
    gb_free(&b);
}

/* Load m (memory, guarded); returns NULL and records a failure if it does not load. The guard
 * must outlive the model. */
static lv_model *load_ok(const gb_model *m, gb_guard *gd, int line) {
    gb_buf b = {0};
    if (!gb_model_build(m, &b)) {
        CHECK(0, "line %d: the writer refused the model: %s", line, lv_last_error());
        return NULL;
    }
    gb_guard_init(gd, b.p, b.n);
    gb_free(&b);
    lv_model *model = NULL;
    lv_status st = lv_model_load_memory(gd->data, gd->n, lv_model_default_params(), &model);
    CHECK(st == LV_OK, "line %d: a valid model was rejected: %s", line, lv_last_error());
    return model;
}
#define LOAD_OK(m, gd) load_ok(m, gd, __LINE__)

/* every bound weight has the bytes the builder wrote for it */
static int check_weights(const lv_model *model, const gb_model *m) {
    int wrong = 0;
    const lv_gguf *g = model->gguf;
    for (int i = 0; i < m->n_t; i++) {
        int64_t ti = lv_gguf_find_tensor(g, m->t[i].name);
        if (ti < 0) {
            wrong++;
            continue;
        }
        const lv_gguf_tensor *t = lv_gguf_tensor_at(g, ti);
        uint8_t *want = malloc(t->nbytes ? t->nbytes : 1);
        gb_model_tensor_data(m, i, want, t->nbytes);
        if (memcmp(want, t->data, t->nbytes) != 0) wrong++;
        free(want);
    }
    /* and the bound views point at those tensors */
    const lv_tensor *views[] = {&model->tok_embd, &model->output_norm, &model->layers[0].wq, &model->layers[0].ffn_down,
                                &model->layers[model->hp.n_layer - 1].wo, &model->layers[model->hp.n_layer - 1].attn_norm};
    for (size_t v = 0; v < LV_ARRAY_LEN(views); v++) {
        int64_t ti = lv_gguf_find_tensor(g, views[v]->name);
        if (ti < 0 || lv_gguf_tensor_at(g, ti)->data != views[v]->data) wrong++;
    }
    return wrong;
}

/* -------------------------------------------------------------------------------------------
 * valid models
 * ----------------------------------------------------------------------------------------- */

static void check_tiny(const lv_model *model, const gb_model *m, bool qwen2, bool untied) {
    const lv_hparams *hp = &model->hp;
    CHECK(strcmp(lv_model_arch(model), qwen2 ? "qwen2" : "llama") == 0, "arch %s", lv_model_arch(model));
    CHECK(lv_model_n_vocab(model) == 16 && lv_model_n_embd(model) == 8 && lv_model_n_layer(model) == 2 &&
              lv_model_n_head(model) == 2 && lv_model_n_head_kv(model) == 1 && lv_model_n_ctx_train(model) == 128,
          "hyper-parameters");
    CHECK(hp->n_ff == 16 && hp->n_embd_head_k == 4 && hp->n_embd_head_v == 4 && hp->n_rot == 4, "derived sizes");
    CHECK(hp->norm_rms_eps == 1e-5f, "rms eps %g", (double)hp->norm_rms_eps);
    CHECK(hp->rope_type == (qwen2 ? LV_ROPE_NEOX : LV_ROPE_NORM), "rope type");
    CHECK(hp->rope_freq_base == 10000.0f && hp->rope_freq_scale == 1.0f, "rope defaults");
    CHECK(model->tied_output == !untied, "tied output");
    CHECK(untied ? model->output.data != model->tok_embd.data : model->output.data == model->tok_embd.data, "output weight");
    CHECK(model->rope_freqs.data == NULL, "no rope_freqs");
    for (int64_t il = 0; il < 2; il++) {
        const lv_layer *L = &model->layers[il];
        CHECK((L->bq.data != NULL) == qwen2 && (L->bk.data != NULL) == qwen2 && (L->bv.data != NULL) == qwen2, "biases of layer %lld",
              (long long)il);
        CHECK(L->bo.data == NULL, "no output bias");
        CHECK(L->wq.ne[0] == 8 && L->wq.ne[1] == 8 && L->wk.ne[1] == 4 && L->ffn_down.ne[0] == 16 && L->ffn_down.ne[1] == 8,
              "shapes of layer %lld", (long long)il);
        CHECK(L->wq.row_bytes == 32 && L->wq.type == LV_TYPE_F32, "row bytes");
    }
    CHECK(check_weights(model, m) == 0, "weight bytes differ from what was written");
    char buf[4096];
    int64_t need = lv_model_describe(model, buf, sizeof(buf));
    CHECK(need > 0 && need < (int64_t)sizeof(buf), "describe: %lld", (long long)need);
    CHECK(strstr(buf, qwen2 ? "architecture:  qwen2" : "architecture:  llama") && strstr(buf, "n_layer:       2"), "describe:\n%s", buf);
    char small[16];
    CHECK(lv_model_describe(model, small, sizeof(small)) == need && strlen(small) == sizeof(small) - 1, "describe into a small buffer");
}

TEST(model_loads_tiny_llama_and_qwen2) {
    static const struct { const char *arch; bool untied; } cases[] = {{"llama", false}, {"llama", true}, {"qwen2", false}, {"qwen2", true}};
    for (size_t c = 0; c < LV_ARRAY_LEN(cases); c++) {
        gb_model m;
        gb_model_init(&m, cases[c].arch, cases[c].untied, lv_test_seed() + c);
        const bool qwen2 = strcmp(cases[c].arch, "qwen2") == 0;
        /* from memory */
        gb_guard gd;
        lv_model *model = LOAD_OK(&m, &gd);
        if (model) check_tiny(model, &m, qwen2, cases[c].untied);
        lv_model_free(model);
        gb_guard_free(&gd);
        /* from a file, mapped and copied */
        const char *path = gb_model_file(&m, "tiny.gguf");
        for (int mmap_on = 0; mmap_on < 2; mmap_on++) {
            lv_model_params p = lv_model_default_params();
            p.use_mmap = mmap_on;
            model = NULL;
            lv_status st = lv_model_load(path, p, &model);
            CHECK(st == LV_OK, "%s (mmap %d): %s", cases[c].arch, mmap_on, lv_last_error());
            if (model) check_tiny(model, &m, qwen2, cases[c].untied);
            lv_model_free(model);
        }
    }
}

/* llama with a q/k/v/o bias and llama3 rope_freqs are optional extras */
TEST(model_loads_optional_tensors) {
    gb_model m;
    gb_model_init(&m, "llama", false, lv_test_seed());
    gb_model_add(&m, "rope_freqs.weight", LV_TYPE_F32, 1, 2, 0);
    gb_model_add(&m, "blk.0.attn_q.bias", LV_TYPE_F32, 1, 8, 0);
    gb_model_add(&m, "blk.1.attn_output.bias", LV_TYPE_F32, 1, 8, 0);
    gb_guard gd;
    lv_model *model = LOAD_OK(&m, &gd);
    if (model) {
        CHECK(model->rope_freqs.data && model->rope_freqs.ne[0] == 2, "rope_freqs bound");
        CHECK(model->layers[0].bq.data && !model->layers[1].bq.data, "bias of layer 0 only");
        CHECK(model->layers[1].bo.data && !model->layers[0].bo.data, "output bias of layer 1 only");
        CHECK(check_weights(model, &m) == 0, "weights");
    }
    lv_model_free(model);
    gb_guard_free(&gd);
}

/* every type longview computes with loads for 2-D weights */
TEST(model_loads_computable_types) {
    gb_model m;
    gb_model_init(&m, "llama", true, lv_test_seed());
    m.n_embd = 64;
    m.n_ff = 64;
    m.n_head = 2;
    m.n_head_kv = 2;
    gb_model_layout(&m, true);
    gb_model_find(&m, "token_embd.weight")->type = LV_TYPE_Q8_0;
    gb_model_find(&m, "output.weight")->type = LV_TYPE_Q4_0;
    gb_model_find(&m, "blk.0.attn_q.weight")->type = LV_TYPE_F16;
    gb_model_find(&m, "blk.0.attn_k.weight")->type = LV_TYPE_BF16;
    gb_model_find(&m, "blk.0.attn_v.weight")->type = LV_TYPE_Q8_0;
    gb_model_find(&m, "blk.0.attn_output.weight")->type = LV_TYPE_Q4_0;
    gb_model_find(&m, "blk.1.ffn_down.weight")->type = LV_TYPE_F16;
    gb_guard gd;
    lv_model *model = LOAD_OK(&m, &gd);
    if (model) {
        CHECK(model->tok_embd.type == LV_TYPE_Q8_0 && model->tok_embd.row_bytes == 2 * 34, "q8_0 rows");
        CHECK(model->output.type == LV_TYPE_Q4_0 && model->output.row_bytes == 2 * 18, "q4_0 rows");
        CHECK(model->layers[0].wq.type == LV_TYPE_F16 && model->layers[0].wq.row_bytes == 128, "f16 rows");
        CHECK(model->layers[0].wk.type == LV_TYPE_BF16, "bf16");
        CHECK(check_weights(model, &m) == 0, "weights");
    }
    lv_model_free(model);
    gb_guard_free(&gd);
}

/* -------------------------------------------------------------------------------------------
 * architecture and hyper-parameters
 * ----------------------------------------------------------------------------------------- */

static void edit_arch_u32(lv_gguf_writer *w, const char *arch, void *user) {
    (void)arch;
    (void)user;
    lv_gguf_writer_set_u32(w, "general.architecture", 1);
}

static void edit_key_length(lv_gguf_writer *w, const char *arch, void *user) {
    (void)user;
    char key[96];
    snprintf(key, sizeof(key), "%s.attention.key_length", arch);
    lv_gguf_writer_set_u32(w, key, 8);
    snprintf(key, sizeof(key), "%s.attention.value_length", arch);
    lv_gguf_writer_set_u32(w, key, 8);
    snprintf(key, sizeof(key), "%s.rope.dimension_count", arch);
    lv_gguf_writer_set_u32(w, key, 8);
}

TEST(model_rejects_bad_architecture) {
    gb_model m;
    gb_model_init(&m, "llama", false, 1);
    m.omit[0] = "general.architecture";
    EXPECT_MODEL_BAD(&m, LV_ERR_FORMAT, "key 'general.architecture' is missing or not a string");
    gb_model_init(&m, "llama", false, 1);
    m.edit = edit_arch_u32;
    EXPECT_MODEL_BAD(&m, LV_ERR_FORMAT, "key 'general.architecture' is missing or not a string");
    gb_model_init(&m, "gpt2", false, 1);
    EXPECT_MODEL_BAD(&m, LV_ERR_UNSUPPORTED, "architecture 'gpt2' is not supported (supported: llama, qwen2, qwen3, smollm3, gemma3, qwen35, qwen2vl)");
    gb_model_init(&m, "llama3", false, 1);
    EXPECT_MODEL_BAD(&m, LV_ERR_UNSUPPORTED, "architecture 'llama3' is not supported");
    gb_model_init(&m, "", false, 1);
    EXPECT_MODEL_BAD(&m, LV_ERR_UNSUPPORTED, "architecture '' is not supported");
    gb_model_init(&m, "llam", false, 1);
    EXPECT_MODEL_BAD(&m, LV_ERR_UNSUPPORTED, "architecture 'llam' is not supported");
}

TEST(model_rejects_missing_hparams) {
    static const char *required[] = {
        "context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
        "attention.layer_norm_rms_epsilon",
    };
    static const char *archs[] = {"llama", "qwen2"};
    for (size_t a = 0; a < LV_ARRAY_LEN(archs); a++) {
        for (size_t i = 0; i < LV_ARRAY_LEN(required); i++) {
            char key[128], needle[160];
            snprintf(key, sizeof(key), "%s.%s", archs[a], required[i]);
            snprintf(needle, sizeof(needle), "required key '%s' is missing", key);
            gb_model m;
            gb_model_init(&m, archs[a], false, 1);
            m.omit[0] = key;
            EXPECT_MODEL_BAD(&m, LV_ERR_FORMAT, needle);
        }
    }
    /* head_count_kv is optional: it defaults to head_count */
    gb_model m;
    gb_model_init(&m, "llama", false, 1);
    m.omit[0] = "llama.attention.head_count_kv";
    m.n_head_kv = m.n_head;
    gb_model_layout(&m, false);
    gb_guard gd;
    lv_model *model = LOAD_OK(&m, &gd);
    CHECK(model && model->hp.n_head_kv == 2, "head_count_kv defaults to head_count");
    lv_model_free(model);
    gb_guard_free(&gd);
}

/* An edit: set one key (arch-relative suffix) to a value of some type. */
typedef struct key_edit {
    const char *suffix;
    lv_gguf_type type; /* LV_GGUF_ARRAY: an array of `arr_type` with `n` elements from `vals` */
    lv_gguf_type arr_type;
    const void *vals;
    uint64_t n;
    const char *str;
} key_edit;

static void apply_edit(lv_gguf_writer *w, const char *arch, void *user) {
    const key_edit *e = user;
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", arch, e->suffix);
    bool ok;
    if (e->type == LV_GGUF_STRING) ok = lv_gguf_writer_set_str(w, key, e->str);
    else if (e->type == LV_GGUF_ARRAY && e->arr_type == LV_GGUF_STRING) ok = lv_gguf_writer_set_arr_str(w, key, e->vals, e->n);
    else if (e->type == LV_GGUF_ARRAY) ok = lv_gguf_writer_set_arr(w, key, e->arr_type, e->vals, e->n);
    else ok = lv_gguf_writer_set_scalar(w, key, e->type, e->vals);
    if (!ok) abort();
}

#define EXPECT_EDIT_BAD(arch_, edit_, want, needle)        \
    do {                                                   \
        gb_model m_;                                       \
        gb_model_init(&m_, arch_, false, 1);               \
        key_edit e_ = edit_;                               \
        m_.edit = apply_edit;                              \
        m_.edit_user = &e_;                                \
        expect_model_bad_(&m_, want, needle, __LINE__);    \
    } while (0)

TEST(model_rejects_bad_hparam_values) {
    const float f8 = 8.0f, nan = __builtin_nanf(""), neg = -1e-5f, inf = __builtin_inff();
    const uint8_t yes = 1;
    const uint32_t zero = 0, big_layers = 5000, three = 3, u32_8 = 8;
    const int32_t minus = -4;
    const uint64_t u64_huge = UINT64_MAX;
    const char *strs[] = {"8"};
    const uint32_t per_layer_same[2] = {1, 1}, per_layer_diff[2] = {1, 2};
    const double f64_eps = 1e-6, f64_huge = 1e300;

    /* wrong types */
    EXPECT_EDIT_BAD("llama", ((key_edit){"context_length", LV_GGUF_STRING, 0, NULL, 0, "128"}), LV_ERR_FORMAT,
                    "key 'llama.context_length' must be an integer but is str");
    EXPECT_EDIT_BAD("llama", ((key_edit){"embedding_length", LV_GGUF_FLOAT32, 0, &f8, 0, NULL}), LV_ERR_FORMAT,
                    "key 'llama.embedding_length' must be an integer but is f32");
    EXPECT_EDIT_BAD("qwen2", ((key_edit){"block_count", LV_GGUF_BOOL, 0, &yes, 0, NULL}), LV_ERR_FORMAT,
                    "key 'qwen2.block_count' must be an integer but is bool");
    EXPECT_EDIT_BAD("llama", ((key_edit){"attention.head_count", LV_GGUF_ARRAY, LV_GGUF_STRING, strs, 1, NULL}), LV_ERR_FORMAT,
                    "key 'llama.attention.head_count' is an empty or non-integer array");
    EXPECT_EDIT_BAD("llama", ((key_edit){"feed_forward_length", LV_GGUF_ARRAY, LV_GGUF_UINT32, per_layer_same, 0, NULL}), LV_ERR_FORMAT,
                    "key 'llama.feed_forward_length' is an empty or non-integer array");
    EXPECT_EDIT_BAD("llama", ((key_edit){"attention.layer_norm_rms_epsilon", LV_GGUF_STRING, 0, NULL, 0, "1e-5"}), LV_ERR_FORMAT,
                    "key 'llama.attention.layer_norm_rms_epsilon' must be a number but is str");
    EXPECT_EDIT_BAD("llama", ((key_edit){"attention.layer_norm_rms_epsilon", LV_GGUF_BOOL, 0, &yes, 0, NULL}), LV_ERR_FORMAT,
                    "must be a number but is bool");
    EXPECT_EDIT_BAD("llama", ((key_edit){"rope.freq_base", LV_GGUF_STRING, 0, NULL, 0, "10000"}), LV_ERR_FORMAT,
                    "key 'llama.rope.freq_base' must be a number but is str");
    EXPECT_EDIT_BAD("llama", ((key_edit){"rope.scaling.type", LV_GGUF_UINT32, 0, &three, 0, NULL}), LV_ERR_FORMAT,
                    "key 'llama.rope.scaling.type' must be a string");
    /* values out of range */
    EXPECT_EDIT_BAD("llama", ((key_edit){"context_length", LV_GGUF_UINT32, 0, &zero, 0, NULL}), LV_ERR_FORMAT,
                    "key 'llama.context_length' = 0 is outside [1, 2147483648]");
    EXPECT_EDIT_BAD("llama", ((key_edit){"block_count", LV_GGUF_UINT32, 0, &big_layers, 0, NULL}), LV_ERR_FORMAT,
                    "key 'llama.block_count' = 5000 is outside [1, 4096]");
    EXPECT_EDIT_BAD("llama", ((key_edit){"embedding_length", LV_GGUF_INT32, 0, &minus, 0, NULL}), LV_ERR_FORMAT,
                    "key 'llama.embedding_length' = -4 is outside");
    EXPECT_EDIT_BAD("llama", ((key_edit){"context_length", LV_GGUF_UINT64, 0, &u64_huge, 0, NULL}), LV_ERR_FORMAT,
                    "key 'llama.context_length' = 18446744073709551615 is outside");
    EXPECT_EDIT_BAD("llama", ((key_edit){"attention.head_count_kv", LV_GGUF_UINT32, 0, &zero, 0, NULL}), LV_ERR_FORMAT,
                    "key 'llama.attention.head_count_kv' = 0 is outside");
    EXPECT_EDIT_BAD("llama", ((key_edit){"attention.layer_norm_rms_epsilon", LV_GGUF_FLOAT32, 0, &nan, 0, NULL}), LV_ERR_FORMAT,
                    "key 'llama.attention.layer_norm_rms_epsilon' is not finite");
    EXPECT_EDIT_BAD("llama", ((key_edit){"attention.layer_norm_rms_epsilon", LV_GGUF_FLOAT32, 0, &inf, 0, NULL}), LV_ERR_FORMAT,
                    "is not finite");
    EXPECT_EDIT_BAD("llama", ((key_edit){"attention.layer_norm_rms_epsilon", LV_GGUF_FLOAT32, 0, &neg, 0, NULL}), LV_ERR_FORMAT,
                    "llama.attention.layer_norm_rms_epsilon is negative");
    /* finite as a double, infinite as the float it is stored in: used to pass as eps = inf */
    EXPECT_EDIT_BAD("llama", ((key_edit){"attention.layer_norm_rms_epsilon", LV_GGUF_FLOAT64, 0, &f64_huge, 0, NULL}), LV_ERR_FORMAT,
                    "key 'llama.attention.layer_norm_rms_epsilon' = 1e+300 is out of range for a 32-bit float");
    EXPECT_EDIT_BAD("llama", ((key_edit){"rope.freq_base", LV_GGUF_FLOAT32, 0, &neg, 0, NULL}), LV_ERR_FORMAT,
                    "llama.rope.freq_base must be positive");
    EXPECT_EDIT_BAD("llama", ((key_edit){"rope.scaling.type", LV_GGUF_STRING, 0, NULL, 0, "longrope"}), LV_ERR_UNSUPPORTED,
                    "rope scaling type 'longrope' is not supported");
    EXPECT_EDIT_BAD("llama", ((key_edit){"rope.dimension_count", LV_GGUF_UINT32, 0, &three, 0, NULL}), LV_ERR_FORMAT,
                    "invalid rope.dimension_count 3, expected 4");
    EXPECT_EDIT_BAD("qwen2", ((key_edit){"rope.dimension_count", LV_GGUF_UINT32, 0, &u32_8, 0, NULL}), LV_ERR_FORMAT,
                    "rope.dimension_count 8 must be even and at most the head size 4");
    EXPECT_EDIT_BAD("llama", ((key_edit){"expert_count", LV_GGUF_UINT32, 0, &u32_8, 0, NULL}), LV_ERR_UNSUPPORTED,
                    "mixture-of-experts models (llama.expert_count = 8) are not supported");
    /* per-layer arrays: uniform ones are read, varying ones refused */
    EXPECT_EDIT_BAD("llama", ((key_edit){"attention.head_count_kv", LV_GGUF_ARRAY, LV_GGUF_UINT32, per_layer_diff, 2, NULL}),
                    LV_ERR_UNSUPPORTED, "key 'llama.attention.head_count_kv' varies per layer");
    {
        gb_model m;
        gb_model_init(&m, "llama", false, 1);
        key_edit e = {"attention.head_count_kv", LV_GGUF_ARRAY, LV_GGUF_UINT32, per_layer_same, 2, NULL};
        m.edit = apply_edit;
        m.edit_user = &e;
        gb_guard gd;
        lv_model *model = LOAD_OK(&m, &gd);
        CHECK(model && model->hp.n_head_kv == 1, "a uniform per-layer array");
        lv_model_free(model);
        gb_guard_free(&gd);
        /* a u64 beyond INT64_MAX is still a number (it used to read as "not a number") */
        key_edit e3 = {"rope.freq_base", LV_GGUF_UINT64, 0, &u64_huge, 0, NULL};
        m.edit_user = &e3;
        model = LOAD_OK(&m, &gd);
        CHECK(model && model->hp.rope_freq_base == (float)UINT64_MAX, "u64 freq_base");
        lv_model_free(model);
        gb_guard_free(&gd);
        /* an f64 epsilon is a number too */
        key_edit e2 = {"attention.layer_norm_rms_epsilon", LV_GGUF_FLOAT64, 0, &f64_eps, 0, NULL};
        m.edit_user = &e2;
        model = LOAD_OK(&m, &gd);
        CHECK(model && model->hp.norm_rms_eps == 1e-6f, "f64 epsilon");
        lv_model_free(model);
        gb_guard_free(&gd);
    }
}

TEST(model_rejects_bad_head_counts) {
    const uint32_t three = 3, u32_16 = 16;
    /* 2 heads, 3 kv heads */
    EXPECT_EDIT_BAD("llama", ((key_edit){"attention.head_count_kv", LV_GGUF_UINT32, 0, &three, 0, NULL}), LV_ERR_FORMAT,
                    "attention.head_count 2 is not a multiple of head_count_kv 3");
    /* 16 heads of an 8-wide embedding: a head size of 0 */
    EXPECT_EDIT_BAD("llama", ((key_edit){"attention.head_count", LV_GGUF_UINT32, 0, &u32_16, 0, NULL}), LV_ERR_FORMAT,
                    "head size 0/0 is invalid (llama.embedding_length 8 / attention.head_count 16");
    /* The same with tensors shaped to match a head size of 0 (q/k/v 1-D, as the loader used to
     * expect when a zero width made it take a 2-D weight for a 1-D one): it used to load. */
    gb_model m;
    gb_model_init(&m, "llama", false, 1);
    m.n_head = 16;
    gb_model_layout(&m, false);
    for (int il = 0; il < 2; il++) {
        static const char *qkv[] = {"attn_q.weight", "attn_k.weight", "attn_v.weight"};
        for (int k = 0; k < 3; k++) {
            char name[64];
            snprintf(name, sizeof(name), "blk.%d.%s", il, qkv[k]);
            gb_tensor *t = gb_model_find(&m, name);
            t->n_dims = 1;
            t->ne[1] = 1;
        }
    }
    EXPECT_MODEL_BAD(&m, LV_ERR_FORMAT, "head size 0/0 is invalid");
    /* an explicit key_length makes the head size independent of embedding_length */
    const uint32_t four = 4;
    gb_model_init(&m, "llama", false, 1);
    key_edit e = {"attention.key_length", LV_GGUF_UINT32, 0, &four, 0, NULL};
    m.edit = apply_edit;
    m.edit_user = &e;
    gb_guard gd;
    lv_model *model = LOAD_OK(&m, &gd);
    CHECK(model && model->hp.n_embd_head_k == 4, "key_length");
    lv_model_free(model);
    gb_guard_free(&gd);
}

/* -------------------------------------------------------------------------------------------
 * tensors
 * ----------------------------------------------------------------------------------------- */

TEST(model_rejects_missing_tensors) {
    static const char *archs[] = {"llama", "qwen2"};
    for (size_t a = 0; a < LV_ARRAY_LEN(archs); a++) {
        gb_model full;
        gb_model_init(&full, archs[a], false, 1);
        for (int i = 0; i < full.n_t; i++) {
            gb_model m = full;
            char needle[160];
            snprintf(needle, sizeof(needle), "tensor '%s' is missing", full.t[i].name);
            gb_model_remove(&m, full.t[i].name);
            EXPECT_MODEL_BAD(&m, LV_ERR_FORMAT, needle);
        }
    }
}

TEST(model_rejects_wrong_shapes) {
    static const char *archs[] = {"llama", "qwen2"};
    for (size_t a = 0; a < LV_ARRAY_LEN(archs); a++) {
        gb_model full;
        gb_model_init(&full, archs[a], true, 1);
        for (int i = 0; i < full.n_t; i++) {
            gb_model m = full;
            char needle[160];
            snprintf(needle, sizeof(needle), "tensor '%s' has shape [", full.t[i].name);
            /* one more element per row */
            m.t[i].ne[0] += 1;
            EXPECT_MODEL_BAD(&m, LV_ERR_FORMAT, needle);
            /* one dimension more or less */
            m = full;
            if (m.t[i].n_dims == 1) {
                m.t[i].n_dims = 2;
                m.t[i].ne[1] = 2;
            } else {
                m.t[i].n_dims = 3;
                m.t[i].ne[2] = 2;
            }
            EXPECT_MODEL_BAD(&m, LV_ERR_FORMAT, needle);
        }
        /* rows and columns swapped */
        gb_model m = full;
        gb_tensor *t = gb_model_find(&m, "blk.1.ffn_down.weight");
        int64_t tmp = t->ne[0];
        t->ne[0] = t->ne[1];
        t->ne[1] = tmp;
        EXPECT_MODEL_BAD(&m, LV_ERR_FORMAT, "tensor 'blk.1.ffn_down.weight' has shape [8, 16, 1, 1], expected [16, 8]");
        /* the output matrix disagreeing with token_embd about the vocabulary */
        m = full;
        gb_model_find(&m, "output.weight")->ne[1] = 17;
        EXPECT_MODEL_BAD(&m, LV_ERR_FORMAT, "tensor 'output.weight' has shape [8, 17, 1, 1], expected [8, 16]");
    }
}

TEST(model_rejects_unsupported_tensor_types) {
    gb_model m;
    gb_model_init(&m, "llama", false, 1);
    m.n_embd = 256;
    m.n_head = 4;
    m.n_head_kv = 2;
    m.n_ff = 32;
    gb_model_layout(&m, false);
    static const struct { const char *name; uint32_t type; const char *needle; } cases[] = {
        {"blk.0.attn_q.weight", LV_TYPE_IQ3_XXS, "tensor 'blk.0.attn_q.weight' has type iq3_xxs, which longview does not support yet"},
        {"blk.1.ffn_up.weight", LV_TYPE_IQ2_XS, "tensor 'blk.1.ffn_up.weight' has type iq2_xs"},
        {"token_embd.weight", LV_TYPE_Q8_1, "tensor 'token_embd.weight' has type q8_1"},
        {"blk.0.attn_v.weight", LV_TYPE_IQ3_S, "tensor 'blk.0.attn_v.weight' has type iq3_s"},
        {"blk.0.attn_k.weight", LV_TYPE_F64, "tensor 'blk.0.attn_k.weight' has type f64"},
        {"blk.0.attn_output.weight", LV_TYPE_I8, "tensor 'blk.0.attn_output.weight' has type i8"},
        {"output_norm.weight", LV_TYPE_F16, "tensor 'output_norm.weight' has type f16; 1-D tensors must be f32"},
        {"blk.1.attn_norm.weight", LV_TYPE_Q8_0, "tensor 'blk.1.attn_norm.weight' has type q8_0; 1-D tensors must be f32"},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
        gb_model e = m;
        gb_model_find(&e, cases[i].name)->type = cases[i].type;
        EXPECT_MODEL_BAD(&e, LV_ERR_UNSUPPORTED, cases[i].needle);
    }
}

TEST(model_rejects_unexpected_tensors) {
    gb_model m;
    gb_model_init(&m, "llama", false, 1);
    gb_model_add(&m, "blk.0.attn_q_norm.weight", LV_TYPE_F32, 1, 4, 0);
    EXPECT_MODEL_BAD(&m, LV_ERR_UNSUPPORTED, "tensor 'blk.0.attn_q_norm.weight' is not used by the llama architecture (1 unexpected tensor");
    gb_model_init(&m, "llama", false, 1);
    gb_model_add(&m, "blk.2.attn_norm.weight", LV_TYPE_F32, 1, 8, 0); /* a layer past block_count */
    gb_model_add(&m, "blk.2.ffn_norm.weight", LV_TYPE_F32, 1, 8, 0);
    EXPECT_MODEL_BAD(&m, LV_ERR_UNSUPPORTED, "tensor 'blk.2.attn_norm.weight' is not used by the llama architecture (2 unexpected tensors)");
    /* an unexpected tensor first in the file: the count is of unexpected tensors only */
    gb_model_init(&m, "qwen2", false, 1);
    gb_model_add(&m, "pos_embd.weight", LV_TYPE_F32, 2, 8, 16);
    gb_tensor extra = m.t[m.n_t - 1];
    memmove(&m.t[1], &m.t[0], (size_t)(m.n_t - 1) * sizeof(m.t[0]));
    m.t[0] = extra;
    EXPECT_MODEL_BAD(&m, LV_ERR_UNSUPPORTED, "tensor 'pos_embd.weight' is not used by the qwen2 architecture (1 unexpected tensor)");
}

/* files that are not models at all */
TEST(model_rejects_non_models) {
    lv_model *model = (lv_model *)1;
    lv_status st = lv_model_load(gb_tmp_path("no-such-model.gguf"), lv_model_default_params(), &model);
    CHECK(st == LV_ERR_IO && model == NULL && strstr(lv_last_error(), "no-such-model.gguf"), "missing file: %s", lv_last_error());
    const char *path = gb_tmp_path("not-a-model.gguf");
    REQUIRE(gb_write_file(path, "GGML\3\0\0\0", 8), "write");
    for (int mmap_on = 0; mmap_on < 2; mmap_on++) {
        lv_model_params p = lv_model_default_params();
        p.use_mmap = mmap_on;
        model = (lv_model *)1;
        st = lv_model_load(path, p, &model);
        CHECK(st == LV_ERR_FORMAT && model == NULL, "bad magic (mmap %d): %s", mmap_on, lv_status_str(st));
        CHECK(strstr(lv_last_error(), "not-a-model.gguf: not a GGUF file"), "message: %s", lv_last_error());
    }
    /* a GGUF without any model in it */
    gb_buf b = {0};
    gb_small_file(&b, 1);
    gb_guard gd;
    gb_guard_init(&gd, b.p, b.n);
    model = (lv_model *)1;
    st = lv_model_load_memory(gd.data, gd.n, lv_model_default_params(), &model);
    CHECK(st != LV_OK && model == NULL, "a metadata-only GGUF is not a model");
    CHECK(strstr(lv_last_error(), "<memory>: required key 'llama.context_length' is missing"), "message: %s", lv_last_error());
    gb_guard_free(&gd);
    gb_free(&b);
    /* a vocabulary-only load of a file without a tokenizer */
    gb_model m;
    gb_model_init(&m, "llama", false, 1);
    gb_buf mb = {0};
    REQUIRE(gb_model_build(&m, &mb), "build");
    gb_guard_init(&gd, mb.p, mb.n);
    lv_model_params p = lv_model_default_params();
    p.vocab_only = true;
    model = (lv_model *)1;
    st = lv_model_load_memory(gd.data, gd.n, p, &model);
    CHECK(st != LV_OK && model == NULL && strstr(lv_last_error(), "tokenizer"), "vocab-only without a tokenizer: %s", lv_last_error());
    gb_guard_free(&gd);
    gb_free(&mb);
}

/* -------------------------------------------------------------------------------------------
 * mutations, allocation failures
 * ----------------------------------------------------------------------------------------- */

TEST(model_survives_random_mutations) {
    lv_test_rng r = {lv_test_seed() ^ 0x6d6f64656cull};
    gb_buf base[2] = {{0}, {0}};
    gb_model m;
    gb_model_init(&m, "llama", true, lv_test_seed());
    REQUIRE(gb_model_build(&m, &base[0]), "build");
    gb_model_init(&m, "qwen2", false, lv_test_seed());
    REQUIRE(gb_model_build(&m, &base[1]), "build");
    const int iters = lv_test_quick() ? 2000 : 8000;
    int loaded = 0, rejected = 0, silent = 0;
    for (int it = 0; it < iters; it++) {
        const gb_buf *src = &base[it % 2];
        gb_buf b = {0};
        gb_bytes(&b, src->p, src->n);
        /* mutations in the header area, where the model's structure lives */
        size_t header = b.n / 2;
        int n_mut = 1 + (int)(lv_test_rng_u64(&r) % 3);
        for (int k = 0; k < n_mut; k++) {
            size_t at = (size_t)(lv_test_rng_u64(&r) % header);
            if (lv_test_rng_u64(&r) % 2) b.p[at] ^= (uint8_t)(1u << (lv_test_rng_u64(&r) % 8));
            else b.p[at] = (uint8_t)lv_test_rng_u64(&r);
        }
        gb_guard gd;
        gb_guard_init(&gd, b.p, b.n);
        lv_model *model = NULL;
        lv_error_clear();
        lv_status st = lv_model_load_memory(gd.data, gd.n, lv_model_default_params(), &model);
        if (st == LV_OK) {
            loaded++;
            char desc[4096];
            lv_model_describe(model, desc, sizeof(desc));
            const uint8_t *p = model->tok_embd.data;
            CHECK(p >= gd.data && p < gd.data + gd.n, "token_embd inside the image");
        } else {
            rejected++;
            if (!lv_last_error()[0] || (st != LV_ERR_FORMAT && st != LV_ERR_UNSUPPORTED)) silent++;
        }
        lv_model_free(model);
        gb_guard_free(&gd);
        gb_free(&b);
    }
    CHECK(silent == 0, "%d rejections without a message or with an odd status", silent);
    CHECK(rejected > iters / 4 && loaded > 0, "%d loaded, %d rejected", loaded, rejected);
    gb_free(&base[0]);
    gb_free(&base[1]);
}

/* Fail the n-th allocation of a load, for n = 0, 1, 2, ... until the load succeeds. Each
 * failing load must return LV_ERR_NOMEM with nothing leaked (the ASan build checks leaks). */
static void alloc_failure_walk(const char *what, lv_status (*load)(void *ctx, lv_model **out), void *ctx) {
    int n = 0;
    for (;; n++) {
        REQUIRE(n < 10000, "%s: still failing after %d allocations", what, n);
        lv_model *model = (lv_model *)1;
        lv_test_alloc_fail_after(n);
        lv_status st = load(ctx, &model);
        lv_test_alloc_fail_after(-1);
        if (st == LV_OK) {
            CHECK(model != NULL && model != (lv_model *)1, "%s: no model", what);
            if (model && model != (lv_model *)1) {
                CHECK(lv_model_n_layer(model) == 2, "%s: loaded after %d injected failures", what, n);
                lv_model_free(model);
            }
            break;
        }
        CHECK(st == LV_ERR_NOMEM, "%s: allocation %d failed but the load said %s (%s)", what, n, lv_status_str(st), lv_last_error());
        CHECK(model == NULL, "%s: allocation %d: *out not NULL", what, n);
    }
    CHECK(n >= 5, "%s: only %d allocations: is the injection reaching the loader?", what, n);
}

typedef struct load_ctx {
    const char *path;
    bool use_mmap;
    const void *data;
    uint64_t size;
} load_ctx;

static lv_status load_path(void *ctx, lv_model **out) {
    load_ctx *c = ctx;
    lv_model_params p = lv_model_default_params();
    p.use_mmap = c->use_mmap;
    return lv_model_load(c->path, p, out);
}

static lv_status load_mem(void *ctx, lv_model **out) {
    load_ctx *c = ctx;
    return lv_model_load_memory(c->data, c->size, lv_model_default_params(), out);
}

TEST(model_load_allocation_failures) {
    gb_model m;
    gb_model_init(&m, "llama", true, 1);
    load_ctx c = {gb_model_file(&m, "alloc-llama.gguf"), true, NULL, 0};
    alloc_failure_walk("llama, mmap", load_path, &c);
    c.use_mmap = false;
    alloc_failure_walk("llama, read into memory", load_path, &c);
    gb_model_init(&m, "qwen2", false, 2);
    gb_buf b = {0};
    REQUIRE(gb_model_build(&m, &b), "build");
    c.data = b.p;
    c.size = b.n;
    alloc_failure_walk("qwen2, memory", load_mem, &c);
    gb_free(&b);
}

/* the same for the reader alone, on a file with string arrays (one allocation per array) */
TEST(gguf_open_allocation_failures) {
    gb_buf b = {0};
    gb_small_file(&b, 3);
    int n = 0;
    for (;; n++) {
        REQUIRE(n < 1000, "still failing after %d allocations", n);
        lv_gguf *g = (lv_gguf *)1;
        lv_test_alloc_fail_after(n);
        lv_status st = lv_gguf_open_memory(b.p, b.n, &g);
        lv_test_alloc_fail_after(-1);
        if (st == LV_OK) {
            int bad = 0;
            gguf_walk(g, b.p, b.n, &bad);
            CHECK(bad == 0, "walk after %d failures", n);
            lv_gguf_close(g);
            break;
        }
        CHECK(st == LV_ERR_NOMEM && g == NULL, "allocation %d: %s (%s)", n, lv_status_str(st), lv_last_error());
        CHECK(strstr(lv_last_error(), "out of memory"), "allocation %d: message %s", n, lv_last_error());
    }
    CHECK(n >= 4, "only %d allocations", n);
    /* the writer: every setter reports failure, and a failed setter leaves the writer usable */
    for (n = 0;; n++) {
        REQUIRE(n < 1000, "writer still failing after %d allocations", n);
        lv_test_alloc_fail_after(n);
        lv_gguf_writer *w = lv_gguf_writer_create();
        int64_t ne[1] = {4};
        const char *strs[2] = {"a", "b"};
        bool ok = w && lv_gguf_writer_set_u32(w, "a", 1) && lv_gguf_writer_set_str(w, "b", "x") &&
                  lv_gguf_writer_set_arr_str(w, "c", strs, 2) && lv_gguf_writer_add_tensor(w, "t", LV_TYPE_F32, 1, ne);
        lv_test_alloc_fail_after(-1);
        lv_gguf_writer_free(w);
        if (ok) break;
    }
    CHECK(n >= 4, "writer: only %d allocations", n);
    gb_free(&b);
}

/* -------------------------------------------------------------------------------------------
 * the fuzzer's seeds
 * ----------------------------------------------------------------------------------------- */

/* the optional hyper-parameters a fuzzer would not invent: YaRN scaling, head sizes, a
 * per-layer array */
static void edit_rich(lv_gguf_writer *w, const char *arch, void *user) {
    (void)user;
    char key[128];
    const uint32_t kv_heads[1] = {1};
    bool ok = true;
#define K(suffix) (snprintf(key, sizeof(key), "%s.%s", arch, suffix), key)
    ok = ok && lv_gguf_writer_set_str(w, K("rope.scaling.type"), "yarn");
    ok = ok && lv_gguf_writer_set_f32(w, K("rope.scaling.factor"), 4.0f);
    ok = ok && lv_gguf_writer_set_u32(w, K("rope.scaling.original_context_length"), 32);
    ok = ok && lv_gguf_writer_set_f32(w, K("rope.scaling.attn_factor"), 1.0f);
    ok = ok && lv_gguf_writer_set_f32(w, K("rope.freq_base"), 500000.0f);
    ok = ok && lv_gguf_writer_set_u32(w, K("attention.key_length"), 4);
    ok = ok && lv_gguf_writer_set_u32(w, K("attention.value_length"), 4);
    ok = ok && lv_gguf_writer_set_u32(w, K("rope.dimension_count"), 4);
    ok = ok && lv_gguf_writer_set_u32(w, K("expert_count"), 0);
    ok = ok && lv_gguf_writer_set_arr(w, K("attention.head_count_kv"), LV_GGUF_UINT32, kv_heads, 1);
#undef K
    if (!ok) abort();
}

/* Writes the seed corpus to $LV_WRITE_FUZZ_CORPUS when set (see fuzz/fuzz_gguf.c), checks
 * that every seed parses and that the model seeds load, and that the committed corpus in
 * fuzz/corpus/gguf (when run from the repository root) still parses. */
TEST(gguf_fuzz_seeds) {
    const char *out_dir = getenv("LV_WRITE_FUZZ_CORPUS");
    static const struct { const char *file; const char *arch; bool untied, rich; } models[] = {
        {"tiny-llama.gguf", "llama", false, false},
        {"tiny-llama-untied.gguf", "llama", true, false},
        {"tiny-qwen2.gguf", "qwen2", false, false},
        {"tiny-llama-yarn.gguf", "llama", false, true},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(models); i++) {
        gb_model m;
        gb_model_init(&m, models[i].arch, models[i].untied, 1000 + i);
        m.n_layer = 1; /* small seeds fuzz faster */
        gb_model_layout(&m, models[i].untied);
        if (models[i].rich) {
            m.edit = edit_rich;
            gb_model_add(&m, "rope_freqs.weight", LV_TYPE_F32, 1, 2, 0);
            gb_model_find(&m, "token_embd.weight")->type = LV_TYPE_F16;
            gb_model_find(&m, "blk.0.ffn_up.weight")->type = LV_TYPE_BF16;
        }
        gb_buf b = {0};
        REQUIRE(gb_model_build(&m, &b), "build");
        CHECK(b.n < 8192, "%s is %zu bytes", models[i].file, b.n);
        lv_model *model = NULL;
        CHECK(lv_model_load_memory(b.p, b.n, lv_model_default_params(), &model) == LV_OK, "%s: %s", models[i].file, lv_last_error());
        if (model && models[i].rich) {
            const lv_hparams *hp = &model->hp;
            CHECK(hp->rope_scaling == LV_ROPE_SCALING_YARN && hp->rope_freq_scale == 0.25f && hp->n_ctx_orig == 32 &&
                      hp->rope_freq_base == 500000.0f && hp->yarn_ext_factor == 1.0f && model->rope_freqs.data != NULL,
                  "%s: rope settings", models[i].file);
        }
        lv_model_free(model);
        if (out_dir) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", out_dir, models[i].file);
            CHECK(gb_write_file(path, b.p, b.n), "writing %s", path);
        }
        gb_free(&b);
    }
    gb_buf b = {0};
    gb_small_file(&b, 7);
    lv_gguf *g = NULL;
    CHECK(lv_gguf_open_memory(b.p, b.n, &g) == LV_OK, "small file");
    lv_gguf_close(g);
    if (out_dir) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/small-metadata.gguf", out_dir);
        CHECK(gb_write_file(path, b.p, b.n), "writing %s", path);
    }
    gb_free(&b);

    DIR *d = opendir("fuzz/corpus/gguf");
    if (!d) return; /* not run from the repository root */
    int n_files = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof(path), "fuzz/corpus/gguf/%s", de->d_name);
        g = NULL;
        CHECK(lv_gguf_open(path, &g) == LV_OK, "seed %s: %s", path, lv_last_error());
        if (g) CHECK(lv_gguf_file_size(g) < 16384, "seed %s is large", path);
        lv_gguf_close(g);
        n_files++;
    }
    closedir(d);
    CHECK(n_files > 0, "fuzz/corpus/gguf is empty");
}

/* The newer families load with their extra tensors, and name what is missing or mismatched: a
 * missing q/k norm or post-norm, and a head size key that disagrees with the tensors (the message
 * names the key). */
TEST(model_new_architectures_bind_their_tensors) {
    static const char *const archs[] = {"qwen3", "smollm3", "gemma3"};
    for (size_t i = 0; i < sizeof(archs) / sizeof(archs[0]); i++) {
        gb_model m;
        gb_model_init(&m, archs[i], false, 7);
        gb_guard gd;
        lv_model *model = LOAD_OK(&m, &gd);
        CHECK(model && !strcmp(lv_model_arch(model), archs[i]), "%s loads", archs[i]);
        if (model) {
            const bool norms = i != 1, post = i == 2;
            CHECK((model->layers[1].q_norm.data != NULL) == norms && (model->layers[1].k_norm.data != NULL) == norms, "%s: q/k norms", archs[i]);
            CHECK((model->layers[1].attn_post_norm.data != NULL) == post && (model->layers[1].ffn_post_norm.data != NULL) == post, "%s: post-norms",
                  archs[i]);
            CHECK(model->hp.nope_step == (i == 1 ? 4 : 0), "%s: NoPE step %d", archs[i], model->hp.nope_step);
        }
        lv_model_free(model);
        gb_guard_free(&gd);
    }
    gb_model m;
    gb_model_init(&m, "qwen3", false, 7);
    gb_model_remove(&m, "blk.1.attn_k_norm.weight");
    EXPECT_MODEL_BAD(&m, LV_ERR_FORMAT, "tensor 'blk.1.attn_k_norm.weight' is missing");
    gb_model_init(&m, "gemma3", false, 7);
    gb_model_remove(&m, "blk.0.post_ffw_norm.weight");
    EXPECT_MODEL_BAD(&m, LV_ERR_FORMAT, "tensor 'blk.0.post_ffw_norm.weight' is missing");
    gb_model_init(&m, "llama", false, 7);
    snprintf(m.arch, sizeof(m.arch), "qwen3"); /* a llama layout under the qwen3 name: no q/k norms */
    EXPECT_MODEL_BAD(&m, LV_ERR_FORMAT, "tensor 'blk.0.attn_q_norm.weight' is missing");
    gb_model_init(&m, "gemma3", false, 7);
    m.edit = edit_key_length;
    EXPECT_MODEL_BAD(&m, LV_ERR_FORMAT, "gemma3.attention.key_length = 8");
}

/* qwen35 (hybrid): a tiny gen-model file loads with its recurrent and attention layers mapped, and
 * rewritten copies of it with one key removed or changed, or one tensor left out, are refused with
 * a message naming the key or tensor. */
typedef struct q35_edit {
    const char *skip_key;    /* a key left out, or NULL */
    const char *set_key;     /* a u32 key set (replacing its value), or NULL */
    uint32_t set_val;
    const char *skip_tensor; /* a tensor left out, or NULL */
} q35_edit;

static bool q35_rewrite(const char *src, const char *dst, const q35_edit *e) {
    lv_gguf *g = NULL;
    if (lv_gguf_open(src, &g) != LV_OK) return false;
    lv_gguf_writer *w = lv_gguf_writer_create();
    bool ok = w != NULL;
    for (int64_t i = 0; ok && i < lv_gguf_n_kv(g); i++) {
        const char *k = lv_gguf_key(g, i);
        if ((e->skip_key && !strcmp(k, e->skip_key)) || (e->set_key && !strcmp(k, e->set_key))) continue;
        ok = lv_gguf_writer_copy_kv(w, g, i);
    }
    if (ok && e->set_key) ok = lv_gguf_writer_set_u32(w, e->set_key, e->set_val);
    for (int64_t i = 0; ok && i < lv_gguf_n_tensors(g); i++) {
        const lv_gguf_tensor *t = lv_gguf_tensor_at(g, i);
        if (e->skip_tensor && !strcmp(t->name, e->skip_tensor)) continue;
        ok = lv_gguf_writer_add_tensor(w, t->name, (lv_type)t->type, (int)t->n_dims, t->ne);
    }
    FILE *f = ok ? fopen(dst, "wb") : NULL;
    ok = f && lv_gguf_writer_write_header(w, f) == LV_OK;
    for (int64_t i = 0; ok && i < lv_gguf_n_tensors(g); i++) {
        const lv_gguf_tensor *t = lv_gguf_tensor_at(g, i);
        if (e->skip_tensor && !strcmp(t->name, e->skip_tensor)) continue;
        ok = lv_gguf_writer_write_data(w, f, t->data, t->nbytes) == LV_OK;
    }
    if (f) ok = fclose(f) == 0 && ok;
    lv_gguf_writer_free(w);
    lv_gguf_close(g);
    return ok;
}

TEST(model_qwen35_hybrid_layers_and_bad_keys) {
    const char *data = lv_test_shared_data();
    if (!data) SKIP("../shared/data not found (the test model needs a vocabulary)");
    char vocab[1024], src[1024], dst[1024];
    snprintf(vocab, sizeof(vocab), "%s/vocab/ggml-vocab-llama-spm.gguf", data);
    snprintf(src, sizeof(src), "%s", gb_tmp_path("q35.gguf"));
    snprintf(dst, sizeof(dst), "%s", gb_tmp_path("q35-edit.gguf"));
    lv_genmodel_params gp = lv_genmodel_default_params();
    gp.arch = "qwen35";
    gp.n_embd = 64;
    gp.n_layer = 8;
    gp.n_head = 2;
    gp.n_head_kv = 1;
    gp.head_dim = 32;
    gp.n_ff = 96;
    gp.ssm_state = 16;
    gp.ssm_k_heads = 2;
    gp.ssm_v_heads = 4;
    gp.vocab_path = vocab;
    REQUIRE(lv_genmodel_write(&gp, src) == LV_OK, "gen-model: %s", lv_last_error());
    lv_model *m = NULL;
    REQUIRE(lv_model_load(src, lv_model_default_params(), &m) == LV_OK, "load: %s", lv_last_error());
    CHECK(m->n_attn_layers == 2 && m->n_recr_layers == 6, "2 attention + 6 recurrent layers: %lld + %lld", (long long)m->n_attn_layers,
          (long long)m->n_recr_layers);
    for (int il = 0; il < 8; il++) {
        const bool recr = (il + 1) % 4 != 0;
        CHECK(m->layers[il].recurrent == recr && m->layers[il].kv_layer == (recr ? il - (il + 1) / 4 : il / 4), "layer %d: recurrent %d, index %lld",
              il, m->layers[il].recurrent, (long long)m->layers[il].kv_layer);
    }
    CHECK(m->hp.n_rot == 8 && m->hp.attn_q_gate && m->layers[3].wq.ne[1] == 2 * 2 * 32, "partial RoPE, [q | gate] per head");
    lv_model_free(m);
    const q35_edit bad[] = {
        {.skip_key = "qwen35.rope.dimension_sections"},
        {.skip_key = "qwen35.ssm.state_size"},
        {.set_key = "qwen35.ssm.inner_size", .set_val = 48},
        {.set_key = "qwen35.ssm.group_count", .set_val = 3},
        {.set_key = "qwen35.full_attention_interval", .set_val = 100},
        {.set_key = "qwen35.ssm.conv_kernel", .set_val = 1},
        {.skip_tensor = "blk.2.ssm_a"},
        {.skip_tensor = "blk.3.attn_q_norm.weight"},
        {.set_key = "qwen35.attention.key_length", .set_val = 16},
    };
    const char *const needle[] = {
        "required key 'qwen35.rope.dimension_sections' is missing",
        "required key 'qwen35.ssm.state_size' is missing",
        "qwen35.ssm.inner_size 48 must be ssm.time_step_rank 4 value heads of ssm.state_size 16",
        "ssm.time_step_rank 4 (value heads) is not a multiple of ssm.group_count 3",
        "full_attention_interval 100 leaves none of the 8 layers with attention",
        "qwen35.ssm.conv_kernel' = 1 is outside [2, 64]",
        "tensor 'blk.2.ssm_a' is missing",
        "tensor 'blk.3.attn_q_norm.weight' is missing",
        "qwen35.attention.key_length 16 differs from value_length 32",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        REQUIRE(q35_rewrite(src, dst, &bad[i]), "rewrite %zu", i);
        m = NULL;
        const lv_status st = lv_model_load(dst, lv_model_default_params(), &m);
        CHECK(st != LV_OK && m == NULL, "edit %zu loaded", i);
        CHECK(strstr(lv_last_error(), needle[i]) != NULL, "edit %zu: '%s' does not say '%s'", i, lv_last_error(), needle[i]);
        lv_model_free(m);
    }
    /* a per-layer choice of recurrent layers is named, not misread */
    q35_edit e = {.set_key = "qwen35.attention.recurrent_layers", .set_val = 1};
    REQUIRE(q35_rewrite(src, dst, &e), "rewrite");
    m = NULL;
    CHECK(lv_model_load(dst, lv_model_default_params(), &m) == LV_ERR_UNSUPPORTED && strstr(lv_last_error(), "recurrent_layers"),
          "recurrent_layers: %s", lv_last_error());
    lv_model_free(m);
}
