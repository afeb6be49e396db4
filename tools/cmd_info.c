/*
 * cmd_info.c: `longview info -m MODEL`: architecture, shapes, tensor types, sizes and what
 * longview supports of it.
 */
#include "common/cli.h"
#include "commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int describe_mmproj(const char *path, int64_t n_embd_text) {
    lv_mmproj *mm = NULL;
    lv_status st = lv_mmproj_load(path, n_embd_text, &mm);
    if (st != LV_OK) return cli_fail("cannot use this mmproj", st);
    char buf[2048];
    lv_mmproj_describe(mm, buf, sizeof(buf));
    printf("%s\n", buf);
    if (n_embd_text > 0) printf("mmproj: its %d-wide output fits the text model\n", lv_mmproj_n_embd(mm));
    lv_mmproj_free(mm);
    return 0;
}

int cmd_info(int argc, char **argv) {
    const char *model_path = NULL, *mmproj_path = NULL;
    bool vocab_only = false;
    int64_t verbose = 0;
    cli_kv kvo = {.both = "f16"};
    cli_attention att;
    cli_opt base[] = {
        {"-m", "--model", CLI_STR, &model_path, "FILE", "GGUF model file"},
        {NULL, "--mmproj", CLI_STR, &mmproj_path, "FILE", "an mmproj file (vision tower + projector): describe it (with -m: check that it fits the model)"},
        {NULL, "--vocab-only", CLI_FLAG, &vocab_only, NULL, "read only the tokenizer (vocabulary GGUF files)"},
        CLI_KV_OPTS(kvo, "f16"),
        {"-v", "--verbose", CLI_INT, &verbose, "N", "log level: 0 warnings, 1 info, 2 debug", .lo = 0, .hi = 2},
    };
    const int nb = (int)(sizeof(base) / sizeof(base[0]));
    cli_opt opts[sizeof(base) / sizeof(base[0]) + CLI_ATTENTION_N_OPTS];
    memcpy(opts, base, sizeof(base));
    const int n_opts = nb + cli_attention_opts(&att, opts + nb);
    int r = cli_parse(argc, argv, opts, n_opts, "longview info [-m MODEL] [--mmproj MMPROJ] [--vocab-only] [-ctk T -ctv T] [--heads FILE.tsv --sparsity S | --layer-plan PLAN ...]",
                      "Describe a GGUF model: architecture, hyper-parameters, tensor types and sizes, and whether\n"
                      "longview can run it (an unsupported file gets the reason, naming the key or tensor), and the\n"
                      "attention plan the long-context flags give (heads per layer, KV bytes per token of the cache type\n"
                      "--kv-type / -ctk / -ctv give). With --mmproj,\n"
                      "the vision tower and projector of an mmproj file (and, with -m, whether it fits the model).",
                      NULL, 0, NULL);
    if (r) return r > 0 ? 0 : 2;
    cli_set_verbosity(verbose);
    if (!model_path && !mmproj_path) {
        cli_error("give -m MODEL, --mmproj MMPROJ or both");
        return 2;
    }
    if (!model_path) return describe_mmproj(mmproj_path, 0);
    lv_model_params mp = lv_model_default_params();
    mp.vocab_only = vocab_only;
    lv_model *model = NULL;
    lv_status st = lv_model_load(model_path, mp, &model);
    if (st != LV_OK) {
        cli_fail("cannot use this model", st);
        return 1;
    }
    int64_t need = lv_model_describe(model, NULL, 0);
    char *buf = malloc((size_t)need + 1);
    if (!buf) {
        lv_model_free(model);
        cli_error("out of memory");
        return 1;
    }
    lv_model_describe(model, buf, (size_t)need + 1);
    fputs(buf, stdout);
    free(buf);
    int rc = 0;
    if (!vocab_only) {
        /* the attention plan these flags give (a small context is enough to build it) */
        lv_context_params cp = lv_context_default_params();
        cp.n_ctx = 256;
        cp.n_batch = cp.n_ubatch = 16;
        cp.n_threads = 1;
        lv_context *ctx = NULL;
        if (cli_kv_types(&kvo, &cp.kv_type, &cp.kv_type_v) != 0 || cli_attention_params(&att, &cp.attention) != 0) {
            rc = 1;
        } else if ((st = lv_context_create(model, cp, &ctx)) != LV_OK) {
            rc = cli_fail("attention plan", st);
        } else {
            need = lv_context_describe_plan(ctx, NULL, 0);
            buf = malloc((size_t)need + 1);
            if (buf) {
                lv_context_describe_plan(ctx, buf, (size_t)need + 1);
                fputs(buf, stdout);
                free(buf);
            }
        }
        lv_context_free(ctx);
    }
    if (rc == 0 && mmproj_path) rc = describe_mmproj(mmproj_path, vocab_only ? 0 : lv_model_n_embd(model));
    cli_attention_free(&att);
    lv_model_free(model);
    return rc;
}
