/*
 * cmd_train.c: `longview train`: train a llama-architecture model from scratch with the trainer
 * of src/train (docs/train.md). Data is generated on the fly: passkey-retrieval prompts built by
 * the same lv_eval builder that `longview eval passkey` uses, followed by the answer, mixed with
 * plain language modelling on windows of the haystack essays. AdamW with warmup and cosine decay.
 *
 * Every sample is a pure function of (--seed, step, index in the batch), so a run resumed from a
 * checkpoint (OUT.ckpt + OUT.ckpt.optim) continues bit for bit as if it had not stopped.
 *
 * Nothing is written at OUT before the schedule is complete: checkpoints (--save-every, --stop-at)
 * go to OUT.ckpt, a GGUF marked as a checkpoint (longview.training.checkpoint, which the loader
 * warns about), and the finished model replaces OUT in one rename (the trainer writes beside it).
 */
#define _POSIX_C_SOURCE 200809L
#include "common/cli.h"
#include "commands.h"
#include "common/train_data.h"
#include "train/train.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct preset {
    const char *name;
    int dim, layers, heads, kv_heads, ffn;
} preset;

static const preset k_presets[] = {
    {"nano", 32, 1, 2, 1, 64},
    {"tiny", 64, 2, 4, 2, 192},
    {"small", 128, 4, 4, 2, 384},
};

/* the checkpoint of output out: "out.ckpt" (and its optimizer state "out.ckpt.optim") */
static void ckpt_path(const char *out, char *buf, size_t n) { snprintf(buf, n, "%s.ckpt", out); }

/* Save the model to path and the optimizer to path.optim (each written beside its target and
 * renamed into place). A model saved before the end of the schedule is marked as a checkpoint. */
static int save_state(const lv_tmodel *m, const lv_adamw *opt, const lv_tr_ckpt_info *info, const char *vocab, const char *path) {
    char mark[64];
    snprintf(mark, sizeof(mark), "step %lld of %lld", (long long)info->step, (long long)info->total_steps);
    const char *ckpt_kv[] = {"longview.training.checkpoint", mark, NULL};
    const bool done = info->step >= info->total_steps;
    lv_status st = lv_tmodel_export_gguf(m, vocab, path, false, "longview-train", done ? NULL : ckpt_kv);
    if (st != LV_OK) return cli_fail("writing the model", st), -1;
    char opath[4096];
    snprintf(opath, sizeof(opath), "%s.optim", path);
    st = lv_adamw_save(opt, info, opath);
    if (st != LV_OK) return cli_fail("writing the optimizer state", st), -1;
    return 0;
}

/* fraction of eval prompts whose every answer token is the argmax (teacher forcing: exactly the
 * prompts greedy decoding answers with the key) */
static double eval_passkey(lv_threadpool *tp, lv_tmodel *m, lv_tr_state *st, const td_data *d, td_sample *s, int n, float *logits) {
    int ok = 0;
    const int64_t V = m->c.n_vocab;
    for (int i = 0; i < n; i++) {
        if (td_make_sample(d, i, 0, true, s) != 0) return -1;
        lv_tr_seq seq = {s->T, s->tok, s->pos, NULL, NULL};
        if (lv_tr_forward(tp, m, st, &seq, NULL) != LV_OK) return -1;
        bool good = true;
        for (int64_t t = s->ans0; t < s->ans1 - 1 && good; t++) { /* the final '.' is not part of the answer */
            lv_tr_logits(tp, m, st, t, 1, logits);
            int64_t a = 0;
            for (int64_t j = 1; j < V; j++)
                if (logits[j] > logits[a]) a = j;
            good = a == s->tgt[t];
        }
        ok += good;
    }
    return (double)ok / n;
}

int cmd_train(int argc, char **argv) {
    const char *out = NULL, *preset_name = NULL, *vocab = "builtin:bytes", *resume = NULL, *init = NULL, *haystack = NULL, *arch = "llama";
    const char *tasks = "passkey=1";
    int64_t dim = 0, layers = 0, heads = 0, kv_heads = 0, ffn = 0, batch = 8, seq_len = 512;
    int64_t pos_max = 0, pk_min = 0, ctx_train = 0, n_needles = 0;
    double pk_frac = 0.5, answer_weight = 10, lm_weight = 1,
           init_std = 0.02, rope_base = 10000;
    bool untied = false, no_haystack = false;
    const char *niah_needles = "list";
    td_schedule sc;
    cli_opt own[] = {
        {"-o", "--output", CLI_STR, &out, "FILE", "the trained GGUF, written when the schedule is complete (with FILE.optim); checkpoints go to FILE.ckpt + FILE.ckpt.optim", .required = true},
        {NULL, "--preset", CLI_STR, &preset_name, "NAME", "shape: nano (32x1) | tiny (64x2, default) | small (128x4); flags below override"},
        {NULL, "--arch", CLI_STR, &arch, "NAME", "llama (default) or qwen2 (q/k/v biases, NEOX rope)"},
        {NULL, "--dim", CLI_INT, &dim, "N", "embedding size", .lo = 2, .hi = 8192},
        {NULL, "--layers", CLI_INT, &layers, "N", "layers", .lo = 1, .hi = 256},
        {NULL, "--heads", CLI_INT, &heads, "N", "attention heads (head size = dim / heads)", .lo = 1, .hi = 256},
        {NULL, "--kv-heads", CLI_INT, &kv_heads, "N", "KV heads (GQA)", .lo = 1, .hi = 256},
        {NULL, "--ffn", CLI_INT, &ffn, "N", "feed-forward size", .lo = 1, .hi = 65536},
        {NULL, "--untied", CLI_FLAG, &untied, NULL, "a separate output matrix (default: tied to the token embedding)"},
        {NULL, "--rope-base", CLI_FLOAT, &rope_base, "F", "RoPE frequency base (default 10000; with --init: change the loaded model's)", .flo = 2, .fhi = 1e9},
        {NULL, "--ctx-train", CLI_INT, &ctx_train, "N", "context_length written to the GGUF (default: --seq-len, or --init's)", .lo = 1, .hi = 1 << 24},
        {NULL, "--vocab", CLI_STR, &vocab, "FILE", "vocabulary GGUF, tokenizer.json, or builtin:bytes (default) or builtin:bytes-vision"},
        {NULL, "--init-std", CLI_FLOAT, &init_std, "F", "standard deviation of the initial weights (default 0.02)", .flo = 1e-6, .fhi = 1},
        {NULL, "--batch", CLI_INT, &batch, "N", "sequences per step (default 8)", .lo = 1, .hi = 4096},
        {NULL, "--seq-len", CLI_INT, &seq_len, "N", "tokens per sequence: LM windows and the longest passkey sample (default 512)", .lo = 8, .hi = 1 << 20},
        {NULL, "--pos-max", CLI_INT, &pos_max, "N", "PoSE: training samples jump once to positions up to N, for contexts past --seq-len (default off)", .lo = 0, .hi = 1 << 24},
        {NULL, "--passkey-min", CLI_INT, &pk_min, "N", "shortest passkey prompt (default: the shortest the format allows)", .lo = 1, .hi = 1 << 20},
        {NULL, "--passkey-frac", CLI_FLOAT, &pk_frac, "F", "fraction of retrieval samples (--tasks); the rest is LM on the haystack (default 0.5)", .flo = 0, .fhi = 1},
        {NULL, "--niah-needles", CLI_STR, &niah_needles, "KIND", "NIAH training needles: 'list' (30 cities x 20 activities, the default), 'random' (essay words) or 'number' (magic numbers)"},
        {NULL, "--needles", CLI_INT, &n_needles, "N", "keys per multikey / multivalue prompt, 2..10 (default 4)", .lo = 2, .hi = 10},
        {NULL, "--tasks", CLI_STR, &tasks, "LIST", "retrieval tasks and their weights: passkey=W,multikey=W,multivalue=W,niah=W (default passkey=1)"},
        {NULL, "--answer-weight", CLI_FLOAT, &answer_weight, "F", "loss weight of the answer tokens of passkey samples (default 10)", .flo = 0, .fhi = 1e6},
        {NULL, "--lm-weight", CLI_FLOAT, &lm_weight, "F", "loss weight of the prompt tokens of passkey samples (default 1)", .flo = 0, .fhi = 1e6},
        {NULL, "--haystack", CLI_STR, &haystack, "DIR", "LM text: *.txt files (default $LV_HAYSTACK or ../shared/data/haystack/paul-graham-essays)"},
        {NULL, "--no-haystack", CLI_FLAG, &no_haystack, NULL, "retrieval samples only (not with the niah task)"},
        {NULL, "--resume", CLI_STR, &resume, "FILE", "continue from a checkpoint FILE (+ FILE.optim), e.g. OUT.ckpt; pass the same flags as the first run"},
        {NULL, "--init", CLI_STR, &init, "FILE", "start from this GGUF's weights (and vocabulary) with a fresh optimizer; shape flags are ignored"},
    };
    enum { N_OWN = sizeof(own) / sizeof(own[0]) };
    cli_opt opts[N_OWN + TD_SCHEDULE_N_OPTS];
    memcpy(opts, own, sizeof(own));
    td_schedule_opts(&sc, opts + N_OWN);
    const int n_opts = (int)(sizeof(opts) / sizeof(opts[0]));
    int r = cli_parse(argc, argv, opts, n_opts, "longview train -o OUT.gguf [--preset NAME | --dim N --layers N --heads N ...] [--steps N] [--resume OUT.gguf.ckpt]",
                      "Train a llama-architecture model from scratch on the CPU (f32, AdamW with linear warmup and cosine decay,\n"
                      "gradient-norm clipping). Data is generated on the fly: retrieval prompts (passkey, multikey, multivalue,\n"
                      "NIAH with random needles: --tasks) from the builders `longview eval` uses, each followed by its answer,\n"
                      "mixed with language modelling on windows of the haystack text. Every sample is a function of (--seed, step), so --resume continues bit for bit. The output is\n"
                      "a standard GGUF (f32) that `longview run` and `longview eval` load. See docs/train.md.",
                      NULL, 0, NULL);
    if (r) return r > 0 ? 0 : 2;
    if (strcmp(arch, "llama") != 0 && strcmp(arch, "qwen2") != 0) {
        cli_error("--arch: '%s' is not llama or qwen2", arch);
        return 2;
    }
    const preset *pr = &k_presets[1];
    if (preset_name) {
        pr = NULL;
        for (size_t i = 0; i < sizeof(k_presets) / sizeof(k_presets[0]); i++)
            if (strcmp(preset_name, k_presets[i].name) == 0) pr = &k_presets[i];
        if (!pr) {
            cli_error("--preset: unknown '%s' (nano, tiny, small)", preset_name);
            return 2;
        }
    }
    if (!dim) dim = pr->dim;
    if (!layers) layers = pr->layers;
    if (!heads) heads = pr->heads;
    if (!kv_heads) kv_heads = cli_seen(opts, n_opts, "--heads") ? heads : pr->kv_heads;
    if (!ffn) ffn = pr->ffn;
    if (dim % heads != 0 || (dim / heads) % 2 != 0) {
        cli_error("--dim %lld must be a multiple of --heads %lld with an even head size", (long long)dim, (long long)heads);
        return 2;
    }
    if (heads % kv_heads != 0) {
        cli_error("--heads %lld must be a multiple of --kv-heads %lld", (long long)heads, (long long)kv_heads);
        return 2;
    }
    td_schedule_finish(&sc);
    const int64_t steps = sc.steps, warmup = sc.warmup, threads = sc.threads, seed = sc.seed, save_every = sc.save_every, stop_at = sc.stop_at,
                  eval_every = sc.eval_every, eval_samples = sc.eval_samples, log_every = sc.log_every;
    const double lr = sc.lr, min_lr = sc.min_lr, wd = sc.wd, clip = sc.clip, beta1 = sc.beta1, beta2 = sc.beta2;
    const char *log_path = sc.log_path;
    if (resume && init) {
        cli_error("--resume and --init exclude each other");
        return 2;
    }

    int rc = 1;
    lv_threadpool *tp = NULL;
    lv_model *vm = NULL;
    lv_tmodel *m = NULL;
    lv_adamw opt = {0};
    lv_tr_state st = {0};
    td_data d = {0};
    td_sample *smp = NULL;
    float *logits = NULL, *ce = NULL;
    FILE *logf = NULL;
    lv_tr_ckpt_info info = {.step = 0, .total_steps = steps, .seed = (uint64_t)seed};
    lv_status s;

    tp = lv_threadpool_create(threads ? (int)threads : lv_n_cores());
    if (!tp) return cli_fail("creating threads", LV_ERR_NOMEM);
    if (resume) {
        lv_model_params mp = lv_model_default_params();
        mp.use_mmap = false;
        if ((s = lv_model_load(resume, mp, &vm)) != LV_OK) {
            rc = cli_fail("loading the checkpoint", s);
            goto end;
        }
        if ((s = lv_tmodel_from_model(vm, true, &m)) != LV_OK) {
            rc = cli_fail("converting the checkpoint", s);
            goto end;
        }
        if ((s = lv_adamw_init(&opt, m)) != LV_OK) goto fail;
        char path[4096];
        snprintf(path, sizeof(path), "%s.optim", resume);
        if ((s = lv_adamw_load(&opt, &info, path)) != LV_OK) {
            rc = cli_fail("loading the optimizer state", s);
            goto end;
        }
        if (info.total_steps != steps || info.seed != (uint64_t)seed) {
            cli_error("the checkpoint was made with --steps %lld --seed %llu; pass the same flags to resume", (long long)info.total_steps,
                      (unsigned long long)info.seed);
            rc = 2;
            goto end;
        }
        fprintf(stderr, "train: resuming %s at step %lld of %lld\n", resume, (long long)info.step, (long long)steps);
    } else if (init) {
        lv_model_params mp = lv_model_default_params();
        mp.use_mmap = false;
        if ((s = lv_model_load(init, mp, &vm)) != LV_OK) {
            rc = cli_fail("loading --init", s);
            goto end;
        }
        if ((s = lv_tmodel_from_model(vm, true, &m)) != LV_OK) {
            rc = cli_fail("converting --init", s);
            goto end;
        }
        if ((s = lv_adamw_init(&opt, m)) != LV_OK) goto fail;
        fprintf(stderr, "train: starting from the weights of %s (fresh optimizer and schedule)\n", init);
        if (ctx_train) m->c.n_ctx_train = (int32_t)ctx_train; /* the loaded file's value otherwise */
        if (cli_seen(opts, n_opts, "--rope-base")) { /* fine-tune to another RoPE base (e.g. for longer reach) */
            m->c.rope_base = (float)rope_base;
            m->rope.freq_base = (float)rope_base;
        }
    } else {
        /* the vocabulary: written once with the initial weights, then loaded for its tokenizer */
        lv_tr_config c = {
            .arch = strcmp(arch, "qwen2") == 0 ? LV_ARCH_QWEN2 : LV_ARCH_LLAMA,
            .n_vocab = 2, /* set below from the vocabulary */
            .n_embd = (int32_t)dim, .n_layer = (int32_t)layers, .n_head = (int32_t)heads, .n_head_kv = (int32_t)kv_heads,
            .head_dim = (int32_t)(dim / heads), .n_ff = (int32_t)ffn, .n_rot = (int32_t)(dim / heads),
            .n_ctx_train = (int32_t)(ctx_train ? ctx_train : seq_len), .rope_base = (float)rope_base, .norm_eps = 1e-5f, .tied = !untied,
        };
        c.bias_qkv = c.arch == LV_ARCH_QWEN2;
        if (td_load_vocab(vocab, &vm) != 0) goto end;
        c.n_vocab = lv_model_n_vocab(vm);
        if ((s = lv_tmodel_create(&c, true, &m)) != LV_OK) {
            rc = cli_fail("creating the model", s);
            goto end;
        }
        lv_tmodel_init(m, (uint64_t)seed, (float)init_std);
        if ((s = lv_adamw_init(&opt, m)) != LV_OK) goto fail;
    }

    /* data */
    d.vocab = vm;
    d.seq_len = (int32_t)seq_len;
    d.pk_frac = pk_frac;
    d.pos_max = (int32_t)pos_max;
    d.answer_weight = answer_weight;
    d.lm_weight = lm_weight;
    d.seed = (uint64_t)seed;
    if ((rc = td_parse_tasks(tasks, d.task_w)) != 0) goto end;
    d.n_needles = (int32_t)n_needles;
    if (strcmp(niah_needles, "list") != 0 && strcmp(niah_needles, "random") != 0 && strcmp(niah_needles, "number") != 0) {
        cli_error("--niah-needles '%s': expected 'list', 'random' or 'number'", niah_needles);
        rc = 2;
        goto end;
    }
    d.niah_number = strcmp(niah_needles, "number") == 0;
    d.niah_random = d.niah_number || strcmp(niah_needles, "random") == 0;
    if (no_haystack && d.task_w[TD_NIAH] > 0) {
        cli_error("--no-haystack: the niah task needs the haystack essays");
        rc = 2;
        goto end;
    }
    if (!no_haystack && (pk_frac < 1 || d.task_w[TD_NIAH] > 0)) {
        if (!haystack) haystack = td_default_haystack();
        if (!haystack) {
            cli_error("no haystack text found: --haystack DIR, or --no-haystack / --passkey-frac 1");
            rc = 2;
            goto end;
        }
    }
    if ((rc = td_init_tasks(&d, vm, (int32_t)pk_min, haystack)) != 0) goto end;
    rc = 1;
    if (!no_haystack && pk_frac < 1 && td_load_haystack(&d, haystack) != 0) {
        rc = 2;
        goto end;
    }

    smp = calloc((size_t)batch, sizeof(td_sample));
    logits = malloc(sizeof(float) * (size_t)m->c.n_vocab);
    ce = malloc(sizeof(float) * (size_t)(seq_len + 1));
    if (!smp || !logits || !ce) goto nomem;
    for (int64_t b = 0; b < batch; b++) {
        smp[b].tok = malloc(sizeof(int32_t) * (size_t)(seq_len + 1));
        smp[b].pos = malloc(sizeof(int32_t) * (size_t)(seq_len + 1));
        smp[b].tgt = malloc(sizeof(int32_t) * (size_t)(seq_len + 1));
        smp[b].w = malloc(sizeof(float) * (size_t)(seq_len + 1));
        if (!smp[b].tok || !smp[b].pos || !smp[b].tgt || !smp[b].w) goto nomem;
    }
    if ((s = lv_tr_state_reserve(&st, m, seq_len, false)) != LV_OK) {
        rc = cli_fail("allocating activations", s);
        goto end;
    }
    if (log_path && !(logf = fopen(log_path, "a"))) {
        cli_error("--log: cannot open '%s'", log_path);
        rc = 2;
        goto end;
    }
    {
        const lv_tr_config *c = &m->c;
        fprintf(stderr, "train: %s %d layers, dim %d, %d heads (%d KV), ffn %d, vocab %d, %s: %.2fM parameters; %d threads\n",
                c->arch == LV_ARCH_QWEN2 ? "qwen2" : "llama", c->n_layer, c->n_embd, c->n_head, c->n_head_kv, c->n_ff, c->n_vocab,
                c->tied ? "tied" : "untied", (double)m->n_params / 1e6, lv_threadpool_n_threads(tp));
        fprintf(stderr, "train: %lld steps x %lld sequences of <= %lld tokens; retrieval %.0f%% (%s; prompts %d..%d tokens), LM %.0f%%%s%s\n",
                (long long)steps, (long long)batch, (long long)seq_len, 100 * (d.hay ? pk_frac : 1.0), tasks, d.pk_min, d.pk_max,
                100 * (d.hay ? 1 - pk_frac : 0.0), d.hay ? " on " : "", d.hay ? haystack : "");
    }

    /* the tokenizer written with every save: the original --vocab, or the checkpoint's own */
    const char *save_vocab = resume ? resume : init ? init : vocab;
    char ckpt[4096];
    ckpt_path(out, ckpt, sizeof(ckpt));
    const bool tty = isatty(2);
    const double t0 = cli_now_s();
    double tokens = 0, last_print = 0;
    const int64_t first = info.step, last = stop_at ? stop_at : steps;
    for (int64_t step = first; step < last; step++) {
        double wsum = 0;
        for (int64_t b = 0; b < batch; b++) {
            if (td_make_sample(&d, step, (int)b, false, &smp[b]) != 0) goto end;
            for (int64_t i = 0; i < smp[b].T; i++) wsum += smp[b].w[i];
        }
        memset(m->grads, 0, sizeof(float) * (size_t)m->n_params);
        double loss = 0, ans_loss = 0, ans_n = 0;
        for (int64_t b = 0; b < batch; b++) {
            td_sample *sp = &smp[b];
            lv_tr_seq seq = {sp->T, sp->tok, sp->pos, sp->tgt, sp->w};
            if ((s = lv_tr_forward(tp, m, &st, &seq, NULL)) != LV_OK) {
                rc = cli_fail("forward", s);
                goto end;
            }
            loss += lv_tr_xent_loss(tp, m, &st, &seq, true, (float)(1.0 / wsum), ce);
            for (int64_t i = sp->ans0; i < sp->ans1; i++) ans_loss += ce[i], ans_n++;
            lv_tr_backward(tp, m, &st, &seq, NULL);
            tokens += (double)sp->T;
        }
        loss /= wsum;
        const float lr_t = lv_lr_schedule(step, steps, warmup, (float)lr, (float)min_lr);
        const float gnorm = lv_adamw_step(tp, &opt, m->params, m->grads, lr_t, (float)beta1, (float)beta2, 1e-8f, (float)wd, (float)clip);
        info.step = step + 1;
        const double el = cli_now_s() - t0;
        if (!isfinite(loss)) {
            cli_error("step %lld: the loss is not finite (%g): lower --lr", (long long)step + 1, loss);
            goto end;
        }
        if (logf) {
            fprintf(logf, "%lld\t%.6f\t%.6f\t%.6g\t%.6g\t%.0f\t%.3f\n", (long long)step + 1, loss, ans_n ? ans_loss / ans_n : NAN, (double)lr_t,
                    (double)gnorm, tokens, el);
            fflush(logf);
        }
        const bool at_end = step + 1 == last;
        double acc = -1;
        if (eval_every && ((step + 1) % eval_every == 0 || at_end)) {
            acc = eval_passkey(tp, m, &st, &d, &smp[0], (int)eval_samples, logits);
            if (acc < 0) goto end;
            if (logf) fprintf(logf, "# step %lld retrieval accuracy %.4f (%lld held-out prompts, argmax of every answer token)\n", (long long)step + 1,
                              acc, (long long)eval_samples);
        }
        if (tty ? el - last_print >= 0.2 || at_end : (step + 1) % log_every == 0 || at_end || acc >= 0) {
            char eta[32], ela[32], accs[48] = "", ans[32] = "-";
            if (ans_n) snprintf(ans, sizeof(ans), "%.4f", ans_loss / ans_n);
            cli_fmt_duration(el / (double)(step + 1 - first) * (double)(last - step - 1), eta, sizeof(eta));
            cli_fmt_duration(el, ela, sizeof(ela));
            if (acc >= 0) snprintf(accs, sizeof(accs), " | retrieval acc %.3f", acc);
            fprintf(stderr, "%sstep %lld/%lld | loss %.4f | answer %s | lr %.2e | |g| %.3f | %.0f tok/s | %s elapsed, ETA %s%s%s", tty ? "\r\033[K" : "",
                    (long long)step + 1, (long long)steps, loss, ans, (double)lr_t, (double)gnorm, tokens / el, ela, eta,
                    accs, tty && !at_end && acc < 0 ? "" : "\n");
            last_print = el;
        }
        if (save_every && (step + 1) % save_every == 0 && !at_end)
            if (save_state(m, &opt, &info, save_vocab, ckpt) != 0) goto end;
    }
    if (info.step < steps) { /* --stop-at: a checkpoint, not the model */
        if (save_state(m, &opt, &info, save_vocab, ckpt) != 0) goto end;
        fprintf(stderr, "train: wrote the checkpoint %s (step %lld of %lld; resume with --resume %s)\n", ckpt, (long long)info.step,
                (long long)steps, ckpt);
    } else {
        if (save_state(m, &opt, &info, save_vocab, out) != 0) goto end;
        /* the finished model supersedes this run's checkpoint */
        char opath[4200];
        snprintf(opath, sizeof(opath), "%s.optim", ckpt);
        unlink(ckpt);
        unlink(opath);
        fprintf(stderr, "train: wrote %s (step %lld of %lld)\n", out, (long long)info.step, (long long)steps);
    }
    rc = 0;
    goto end;
nomem:
    cli_error("out of memory");
    goto end;
fail:
    rc = cli_fail("train", s);
end:
    if (logf) fclose(logf);
    if (smp)
        for (int64_t b = 0; b < batch; b++) free(smp[b].tok), free(smp[b].pos), free(smp[b].tgt), free(smp[b].w);
    free(smp);
    free(logits);
    free(ce);
    free(d.hay);
    td_free(&d);
    lv_tr_state_free(&st);
    lv_adamw_free(&opt);
    lv_tmodel_free(m);
    lv_model_free(vm);
    lv_threadpool_free(tp);
    return rc;
}
