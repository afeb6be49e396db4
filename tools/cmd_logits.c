/*
 * cmd_logits.c: `longview logits`: run a token sequence through the model and write
 * little-endian float32 logits, row-major [rows][n_vocab]: the last position, or every position
 * with --all.
 */
#include "common/cli.h"
#include "commands.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_logits(int argc, char **argv) {
    const char *model_path = NULL, *tokens_arg = NULL, *tokens_file = NULL, *prompt = NULL, *out = NULL;
    cli_kv kvo = {.both = "f32"};
    int64_t n_ctx = 0, n_batch = 512, n_threads = 0, verbose = 0;
    bool all = false, no_bos = false;
    cli_attention att;
    cli_opt base[] = {
        {"-m", "--model", CLI_STR, &model_path, "FILE", "GGUF model", .required = true},
        {NULL, "--tokens", CLI_STR, &tokens_arg, "1,2,3", "token ids, comma or space separated"},
        {NULL, "--tokens-file", CLI_STR, &tokens_file, "FILE", "token ids in a text file (comma or whitespace separated)"},
        {"-p", "--prompt", CLI_STR, &prompt, "TEXT", "text to tokenize (adds BOS as the vocabulary asks)"},
        {NULL, "--no-bos", CLI_FLAG, &no_bos, NULL, "with -p: do not add BOS/EOS"},
        {NULL, "--all", CLI_FLAG, &all, NULL, "write the logits of every position, not only the last"},
        {"-o", "--output", CLI_STR, &out, "FILE", "output file (float32 little-endian, [rows][n_vocab])", .required = true},
        {"-c", "--ctx-size", CLI_INT, &n_ctx, "N", "context size (default: the number of tokens)", .lo = 0, .hi = 1 << 30},
        {"-b", "--batch", CLI_INT, &n_batch, "N", "tokens per forward step (prefill chunk, default 512)", .lo = 1, .hi = 1 << 20},
        {"-t", "--threads", CLI_INT, &n_threads, "N", "threads (default: all cores)", .lo = 0, .hi = 512},
        CLI_KV_OPTS(kvo, "f32 here: exact"),
        {"-v", "--verbose", CLI_INT, &verbose, "N", "log level: 0 warnings, 1 info, 2 debug", .lo = 0, .hi = 2},
    };
    const int nb = (int)(sizeof(base) / sizeof(base[0]));
    cli_opt opts[sizeof(base) / sizeof(base[0]) + CLI_ATTENTION_N_OPTS];
    memcpy(opts, base, sizeof(base));
    const int n_opts = nb + cli_attention_opts(&att, opts + nb);
    int r = cli_parse(argc, argv, opts, n_opts,
                      "longview logits -m MODEL (--tokens 1,2,3 | --tokens-file F | -p TEXT) [--all] -o OUT.f32",
                      "Run a token sequence through the model in chunks of -b tokens and write its logits.", NULL, 0, NULL);
    if (r) return r > 0 ? 0 : 2;
    cli_set_verbosity(verbose);
    if (!!tokens_arg + !!tokens_file + !!prompt != 1) {
        cli_error("give exactly one of --tokens, --tokens-file, -p");
        return 2;
    }
    lv_kv_type kvt, kvt_v;
    if (cli_kv_types(&kvo, &kvt, &kvt_v) != 0) return 2;

    int rc = 1;
    lv_model *model = NULL;
    lv_context *ctx = NULL;
    lv_token *toks = NULL;
    int32_t n_toks = 0;
    FILE *f = NULL;
    cli_out outf;
    lv_batch batch = {0};
    lv_status st = lv_model_load(model_path, lv_model_default_params(), &model);
    if (st != LV_OK) {
        cli_fail("loading the model", st);
        goto end;
    }
    if (prompt) {
        toks = cli_tokenize(model, prompt, (int64_t)strlen(prompt), !no_bos, &n_toks);
    } else if (tokens_arg) {
        toks = cli_parse_tokens(tokens_arg, &n_toks, "--tokens");
    } else {
        char *text = cli_read_file(tokens_file, NULL);
        if (text) toks = cli_parse_tokens(text, &n_toks, tokens_file);
        free(text);
    }
    if (!toks) goto end;
    if (n_toks == 0) {
        cli_error("no tokens");
        goto end;
    }
    lv_context_params cp = lv_context_default_params();
    cp.n_ctx = n_ctx ? (uint32_t)n_ctx : (uint32_t)n_toks;
    cp.n_batch = (uint32_t)n_batch;
    cp.n_ubatch = (uint32_t)n_batch;
    cp.n_threads = (int32_t)n_threads;
    cp.kv_type = kvt;
    cp.kv_type_v = kvt_v;
    if (cli_attention_params(&att, &cp.attention) != 0) goto end;
    if ((st = lv_context_create(model, cp, &ctx)) != LV_OK) {
        cli_fail("creating the context", st);
        goto end;
    }
    if (n_ctx > 0) cli_warn_ctx_train(model, n_ctx, "-c");
    else cli_warn_ctx_train(model, n_toks, "the tokens");
    if (!(f = cli_out_open(&outf, out, true))) goto end;
    batch = lv_batch_init((int32_t)n_batch);
    if (!batch.token) {
        cli_error("out of memory");
        goto end;
    }
    const int32_t n_vocab = lv_model_n_vocab(model);
    cli_progress prog;
    cli_progress_start(&prog, "logits");
    for (int32_t i0 = 0; i0 < n_toks; i0 += (int32_t)n_batch) {
        const int32_t n = (int32_t)(n_toks - i0 < n_batch ? n_toks - i0 : n_batch);
        batch.n_tokens = n;
        for (int32_t i = 0; i < n; i++) {
            batch.token[i] = toks[i0 + i];
            batch.pos[i] = i0 + i;
            batch.seq_id[i] = 0;
            batch.logits[i] = all || i0 + i == n_toks - 1;
        }
        if ((st = lv_decode(ctx, &batch)) != LV_OK) {
            cli_progress_done(&prog, "failed");
            cli_fail("decode", st);
            goto end;
        }
        for (int32_t i = 0; i < n; i++) {
            if (!batch.logits[i]) continue;
            const float *lg = lv_get_logits_ith(ctx, i);
            if (!lg || fwrite(lg, sizeof(float), (size_t)n_vocab, f) != (size_t)n_vocab) {
                cli_error("writing '%s' failed", out);
                goto end;
            }
        }
        cli_progress_update(&prog, (double)(i0 + n) / n_toks, NULL);
    }
    f = NULL;
    if (cli_out_commit(&outf) != 0) goto end;
    cli_progress_done(&prog, NULL);
    rc = 0;
end:
    if (f) cli_out_abort(&outf);
    lv_batch_free(&batch);
    free(toks);
    lv_context_free(ctx);
    lv_model_free(model);
    cli_attention_free(&att);
    return rc;
}
