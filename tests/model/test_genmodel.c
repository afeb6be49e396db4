/*
 * test_genmodel.c: gen-model writes deterministic, loadable files of the requested shapes and
 * refuses bad requests without leaving a file behind. (That llama.cpp loads what it writes is
 * shown by the golden files: scripts/gen-golden.sh runs llama.cpp on them.)
 */
#include "longview.h"
#include "lv_test.h"
#include "sha256.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *vocab_path(const char *name) {
    static char p[1024];
    snprintf(p, sizeof(p), "%s/vocab/%s", lv_test_shared_data(), name);
    return p;
}

TEST(genmodel_is_deterministic_and_loads) {
    if (!lv_test_shared_data()) SKIP("../shared/data not found");
    char a[1024], b[1024], ha[65], hb[65];
    snprintf(a, sizeof(a), "%s/gen-a.gguf", lv_test_tmpdir());
    snprintf(b, sizeof(b), "%s/gen-b.gguf", lv_test_tmpdir());
    lv_genmodel_params gp = lv_genmodel_default_params();
    gp.preset = "qwen2.5-0.5b"; /* the real shape, cut to one layer to stay small */
    gp.n_layer = 1;
    gp.vocab_path = vocab_path("ggml-vocab-gpt-2.gguf");
    gp.ftype = LV_FTYPE_Q4_0;
    REQUIRE(lv_genmodel_write(&gp, a) == LV_OK, "write: %s", lv_last_error());
    REQUIRE(lv_genmodel_write(&gp, b) == LV_OK, "write again: %s", lv_last_error());
    REQUIRE(lv_sha256_file(a, ha) == 0 && lv_sha256_file(b, hb) == 0, "hash");
    CHECK(strcmp(ha, hb) == 0, "same parameters, same bytes");
    gp.seed = 43;
    REQUIRE(lv_genmodel_write(&gp, b) == LV_OK, "other seed");
    REQUIRE(lv_sha256_file(b, hb) == 0, "hash");
    CHECK(strcmp(ha, hb) != 0, "another seed, other weights");
    lv_model *m = NULL;
    REQUIRE(lv_model_load(a, lv_model_default_params(), &m) == LV_OK, "load: %s", lv_last_error());
    CHECK(strcmp(lv_model_arch(m), "qwen2") == 0, "arch");
    CHECK(lv_model_n_embd(m) == 896 && lv_model_n_head(m) == 14 && lv_model_n_head_kv(m) == 2 && lv_model_n_layer(m) == 1, "shape");
    CHECK(lv_model_n_vocab(m) == 50257 && lv_model_n_ctx_train(m) == 32768, "vocab %d ctx %d", lv_model_n_vocab(m), lv_model_n_ctx_train(m));
    char desc[4096];
    lv_model_describe(m, desc, sizeof(desc));
    CHECK(strstr(desc, "tied to token_embd") && strstr(desc, "q4_0") && strstr(desc, "neox"), "describe: %s", desc);
    lv_model_free(m);
    remove(a);
    remove(b);
}

TEST(genmodel_refuses_bad_requests_and_leaves_no_file) {
    if (!lv_test_shared_data()) SKIP("../shared/data not found");
    char out[1024], tmp[1100];
    snprintf(out, sizeof(out), "%s/gen-bad.gguf", lv_test_tmpdir());
    snprintf(tmp, sizeof(tmp), "%s.tmp", out);
    remove(out);
    struct { const char *what; const char *preset, *arch; int dim, layers, heads, kvh, ffn; lv_ftype f; const char *vocab; } bad[] = {
        {"unknown preset", "gpt-5", NULL, 0, 0, 0, 0, 0, LV_FTYPE_F32, "ggml-vocab-gpt-2.gguf"},
        {"preset of another arch", "qwen2.5-0.5b", "llama", 0, 0, 0, 0, 0, LV_FTYPE_F32, "ggml-vocab-gpt-2.gguf"},
        {"no shape", NULL, "llama", 0, 0, 0, 0, 0, LV_FTYPE_F32, "ggml-vocab-gpt-2.gguf"},
        {"heads do not divide dim", NULL, "llama", 100, 1, 3, 1, 64, LV_FTYPE_F32, "ggml-vocab-gpt-2.gguf"},
        {"kv heads do not divide heads", NULL, "llama", 96, 1, 4, 3, 64, LV_FTYPE_F32, "ggml-vocab-gpt-2.gguf"},
        {"q8_0 needs multiples of 32", NULL, "llama", 48, 1, 4, 2, 64, LV_FTYPE_Q8_0, "ggml-vocab-gpt-2.gguf"},
        {"vocabulary file missing", NULL, "llama", 64, 1, 4, 2, 64, LV_FTYPE_F32, "no-such-vocab.gguf"},
        {"unknown arch", NULL, "mamba", 64, 1, 4, 2, 64, LV_FTYPE_F32, "ggml-vocab-gpt-2.gguf"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lv_genmodel_params gp = lv_genmodel_default_params();
        gp.preset = bad[i].preset;
        gp.arch = bad[i].arch;
        gp.n_embd = bad[i].dim;
        gp.n_layer = bad[i].layers;
        gp.n_head = bad[i].heads;
        gp.n_head_kv = bad[i].kvh;
        gp.n_ff = bad[i].ffn;
        gp.ftype = bad[i].f;
        gp.vocab_path = vocab_path(bad[i].vocab);
        lv_status st = lv_genmodel_write(&gp, out);
        CHECK(st != LV_OK && lv_last_error()[0], "%s: status %d", bad[i].what, st);
        CHECK(access(out, F_OK) != 0 && access(tmp, F_OK) != 0, "%s: a file was left behind", bad[i].what);
    }
}
