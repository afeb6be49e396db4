/*
 * cmd_info.c: `longview info -m MODEL`: architecture, shapes, tensor types, sizes and what
 * longview supports of it.
 */
#include "cli.h"
#include "commands.h"

#include <stdio.h>
#include <stdlib.h>

int cmd_info(int argc, char **argv) {
    const char *model_path = NULL;
    bool vocab_only = false;
    int64_t verbose = 0;
    cli_opt opts[] = {
        {"-m", "--model", CLI_STR, &model_path, "FILE", "GGUF model file", .required = true},
        {NULL, "--vocab-only", CLI_FLAG, &vocab_only, NULL, "read only the tokenizer (vocabulary GGUF files)"},
        {"-v", "--verbose", CLI_INT, &verbose, "N", "log level: 0 warnings, 1 info, 2 debug", .lo = 0, .hi = 2},
    };
    int r = cli_parse(argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0])), "longview info -m MODEL [--vocab-only]",
                      "Describe a GGUF model: architecture, hyper-parameters, tensor types and sizes, and whether\n"
                      "longview can run it (an unsupported file gets the reason, naming the key or tensor).",
                      NULL, 0, NULL);
    if (r) return r > 0 ? 0 : 2;
    cli_set_verbosity(verbose);
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
    lv_model_free(model);
    return 0;
}
