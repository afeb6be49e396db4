/*
 * cmd_tokenize.c: `longview tokenize -m MODEL (-p TEXT | -f FILE) [--ids] [--no-bos]
 * [--parse-special]`: print the tokens of a text, one "id piece" per line, or the ids alone on
 * one line with --ids. Works on vocabulary-only GGUF files.
 */
#include "common/cli.h"
#include "commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Print a piece with control characters and invalid UTF-8 escaped, so that one token stays on
 * one line. */
static void print_piece(const char *p, int32_t n) {
    putchar('\'');
    for (int32_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\\') fputs("\\\\", stdout);
        else if (c == '\'') fputs("\\'", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('\'');
}

int cmd_tokenize(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *file = NULL;
    bool ids_only = false, no_bos = false, parse_special = false, show_count = false;
    int64_t verbose = 0;
    cli_opt opts[] = {
        {"-m", "--model", CLI_STR, &model_path, "FILE", "GGUF model or vocabulary file", .required = true},
        {"-p", "--prompt", CLI_STR, &prompt, "TEXT", "the text to tokenize"},
        {"-f", "--file", CLI_STR, &file, "FILE", "read the text from a file ('-' for stdin)"},
        {NULL, "--ids", CLI_FLAG, &ids_only, NULL, "print only the ids, space separated, on one line"},
        {NULL, "--no-bos", CLI_FLAG, &no_bos, NULL, "do not add the BOS/EOS tokens the vocabulary asks for"},
        {NULL, "--parse-special", CLI_FLAG, &parse_special, NULL, "turn special-token text (<|eot_id|>, ...) into special tokens"},
        {NULL, "--count", CLI_FLAG, &show_count, NULL, "print only the number of tokens"},
        {"-v", "--verbose", CLI_INT, &verbose, "N", "log level: 0 warnings, 1 info, 2 debug", .lo = 0, .hi = 2},
    };
    int r = cli_parse(argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0])),
                      "longview tokenize -m MODEL (-p TEXT | -f FILE) [--ids] [--no-bos] [--parse-special]",
                      "Tokenize a text with the model's tokenizer (the same ids llama.cpp gives) and print\n"
                      "one token per line as 'id piece', or only the ids with --ids. Vocabulary-only GGUF\n"
                      "files (no tensors) work too.",
                      NULL, 0, NULL);
    if (r) return r > 0 ? 0 : 2;
    if ((prompt != NULL) == (file != NULL)) {
        cli_error("give exactly one of -p TEXT and -f FILE");
        return 2;
    }
    cli_set_verbosity(verbose);
    char *text = NULL;
    int64_t len;
    if (file) {
        text = cli_read_file(file, &len);
        if (!text) return 1;
    } else {
        len = (int64_t)strlen(prompt);
    }
    const char *t = file ? text : prompt;

    lv_model_params mp = lv_model_default_params();
    mp.vocab_only = true; /* only the tokenizer is needed: works for any GGUF */
    lv_model *model = NULL;
    lv_status st = lv_model_load(model_path, mp, &model);
    if (st != LV_OK) {
        free(text);
        return cli_fail("cannot load the tokenizer", st);
    }
    int rc = 0;
    int32_t n = lv_tokenize(model, t, len, NULL, 0, !no_bos, parse_special);
    lv_token *ids = NULL;
    if (n < 0 && n != INT32_MIN) {
        ids = malloc(sizeof(lv_token) * (size_t)-n);
        if (!ids) {
            cli_error("out of memory");
            rc = 1;
            goto end;
        }
        n = lv_tokenize(model, t, len, ids, -n, !no_bos, parse_special);
    }
    if (n == INT32_MIN) {
        rc = cli_fail("tokenize failed", LV_ERR_INVALID_ARG);
        goto end;
    }
    if (show_count) {
        printf("%d\n", n);
    } else if (ids_only) {
        for (int32_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    } else {
        char buf[256];
        for (int32_t i = 0; i < n; i++) {
            int32_t k = lv_token_to_piece(model, ids[i], buf, sizeof(buf), true);
            printf("%6d -> ", ids[i]);
            if (k >= 0) {
                print_piece(buf, k);
            } else {
                char *big = malloc((size_t)-k);
                if (big) {
                    k = lv_token_to_piece(model, ids[i], big, -k, true);
                    print_piece(big, k);
                    free(big);
                }
            }
            putchar('\n');
        }
    }
end:
    free(ids);
    free(text);
    lv_model_free(model);
    return rc;
}
