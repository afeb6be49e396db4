/*
 * cmd_train.c: `longview train`: train a llama-architecture model from scratch with the trainer
 * of src/train (docs/train.md). Data is generated on the fly: passkey-retrieval prompts built by
 * the same lv_eval builder that `longview eval passkey` uses, followed by the answer, mixed with
 * plain language modelling on windows of the haystack essays. AdamW with warmup and cosine decay.
 *
 * Every sample is a pure function of (--seed, step, index in the batch), so a run resumed from a
 * checkpoint (OUT.gguf + OUT.gguf.optim) continues bit for bit as if it had not stopped.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "commands.h"
#include "train/train.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct rng {
    uint64_t s;
} rng;
static uint64_t rng_next(rng *r) { return mix64(r->s += 0x9e3779b97f4a7c15ull); }
static double rng_unit(rng *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fmt_dur(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e8) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

/* ---------------------------------------------------------------------------------------------
 * data
 * ------------------------------------------------------------------------------------------- */

typedef struct data {
    const lv_model *vocab; /* tokenizer */
    lv_eval *ev;           /* passkey prompt builder */
    lv_token *hay;         /* the haystack essays, tokenized */
    int64_t n_hay;
    int32_t seq_len, pk_min, pk_max;
    double pk_frac, answer_weight, lm_weight;
    uint64_t seed;
} data;

typedef struct sample {
    int32_t *tok, *pos, *tgt;
    float *w;
    int64_t T;
    int64_t ans0, ans1; /* positions whose targets are the answer: [ans0, ans1) (empty for LM samples) */
} sample;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* the *.txt files of dir in name order, concatenated, tokenized (no BOS) */
static int load_haystack(data *d, const char *dir) {
    DIR *dp = opendir(dir);
    if (!dp) {
        cli_error("--haystack: cannot open directory '%s'", dir);
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".txt") != 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof(*names));
            if (!nn) break;
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(dp);
    if (n == 0) {
        cli_error("--haystack: no .txt files in '%s'", dir);
        free(names);
        return -1;
    }
    qsort(names, n, sizeof(*names), cmp_str);
    char *text = NULL;
    int64_t len = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        int64_t fl = 0;
        char *ft = cli_read_file(path, &fl);
        if (!ft) {
            rc = -1;
            break;
        }
        char *nt = realloc(text, (size_t)(len + fl + 2));
        if (!nt) {
            free(ft);
            cli_error("out of memory reading the haystack");
            rc = -1;
            break;
        }
        text = nt;
        memcpy(text + len, ft, (size_t)fl);
        len += fl;
        text[len++] = '\n';
        text[len] = 0;
        free(ft);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    if (rc == 0) {
        int32_t nt = 0;
        d->hay = cli_tokenize(d->vocab, text, len, false, &nt);
        d->n_hay = nt;
        if (!d->hay) rc = -1;
        else if (d->n_hay < d->seq_len + 1) {
            cli_error("--haystack: %lld tokens, fewer than --seq-len + 1", (long long)d->n_hay);
            rc = -1;
        }
    }
    free(text);
    return rc;
}

/* A passkey prompt (the eval builder's) followed by " KEY." with the answer tokens weighted. */
static int make_passkey(const data *d, rng *r, sample *s) {
    const int32_t n = d->pk_min + (int32_t)(rng_next(r) % (uint64_t)(d->pk_max - d->pk_min + 1));
    const double depth = rng_unit(r);
    const uint64_t key_seed = rng_next(r) & 0xffffffffull;
    lv_eval_prompt *p = NULL;
    lv_status st = lv_eval_build(d->ev, n, depth, key_seed, &p);
    if (st != LV_OK) return cli_fail("building a passkey prompt", st), -1;
    const size_t tl = strlen(p->text), al = strlen(p->answer);
    char *full = malloc(tl + al + 3);
    if (!full) {
        lv_eval_prompt_free(p);
        cli_error("out of memory");
        return -1;
    }
    memcpy(full, p->text, tl);
    full[tl] = ' ';
    memcpy(full + tl + 1, p->answer, al);
    full[tl + 1 + al] = '.';
    full[tl + 2 + al] = 0;
    int32_t nt = 0;
    lv_token *toks = cli_tokenize(d->vocab, full, (int64_t)(tl + al + 2), true, &nt);
    free(full);
    int rc = 0;
    if (!toks) rc = -1;
    else if (nt <= p->n_tokens || memcmp(toks, p->tokens, (size_t)p->n_tokens * sizeof(lv_token)) != 0) {
        cli_error("the tokenization of prompt + answer does not start with the prompt's tokens (this vocabulary merges across the boundary)");
        rc = -1;
    } else if (nt > d->seq_len + 1) {
        cli_error("a passkey sample of %d tokens does not fit --seq-len %d", nt, d->seq_len);
        rc = -1;
    } else {
        s->T = nt - 1;
        for (int64_t i = 0; i < s->T; i++) {
            s->tok[i] = toks[i];
            s->pos[i] = (int32_t)i;
            s->tgt[i] = toks[i + 1];
            s->w[i] = (float)d->lm_weight;
        }
        s->ans0 = p->n_tokens - 1;
        s->ans1 = s->T;
        for (int64_t i = s->ans0; i < s->ans1; i++) s->w[i] = (float)d->answer_weight;
    }
    free(toks);
    lv_eval_prompt_free(p);
    return rc;
}

static void make_lm(const data *d, rng *r, sample *s) {
    const int64_t T = d->seq_len;
    const int64_t off = (int64_t)(rng_next(r) % (uint64_t)(d->n_hay - T));
    s->T = T;
    for (int64_t i = 0; i < T; i++) {
        s->tok[i] = d->hay[off + i];
        s->pos[i] = (int32_t)i;
        s->tgt[i] = d->hay[off + i + 1];
        s->w[i] = 1.0f;
    }
    s->ans0 = s->ans1 = 0;
}

/* sample b of step `step`: a function of (seed, step, b) only */
static int make_sample(const data *d, int64_t step, int b, bool eval, sample *s) {
    rng r = {mix64(d->seed ^ mix64((uint64_t)step * 1000003ull + (uint64_t)b + (eval ? 0x8000000000000000ull : 0)))};
    if (eval || !d->hay || rng_unit(&r) < d->pk_frac) return make_passkey(d, &r, s);
    make_lm(d, &r, s);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * the command
 * ------------------------------------------------------------------------------------------- */

static const char *default_haystack(void) {
    static const char *const cand[] = {"../shared/data/haystack/paul-graham-essays", "../../shared/data/haystack/paul-graham-essays"};
    const char *env = getenv("LV_HAYSTACK");
    if (env && *env) return env;
    for (size_t i = 0; i < sizeof(cand) / sizeof(cand[0]); i++)
        if (access(cand[i], R_OK) == 0) return cand[i];
    return NULL;
}

typedef struct preset {
    const char *name;
    int dim, layers, heads, kv_heads, ffn;
} preset;

static const preset k_presets[] = {
    {"nano", 32, 1, 2, 1, 64},
    {"tiny", 64, 2, 4, 2, 192},
    {"small", 128, 4, 4, 2, 384},
};

/* save the model to out and the optimizer to out.optim */
static int save_ckpt(const lv_tmodel *m, const lv_adamw *opt, const lv_tr_ckpt_info *info, const char *vocab, const char *out) {
    lv_status st = lv_tmodel_export_gguf(m, vocab, out, false, "longview-train", NULL);
    if (st != LV_OK) return cli_fail("writing the model", st), -1;
    char path[4096];
    snprintf(path, sizeof(path), "%s.optim", out);
    st = lv_adamw_save(opt, info, path);
    if (st != LV_OK) return cli_fail("writing the optimizer state", st), -1;
    return 0;
}

/* fraction of eval prompts whose every answer token is the argmax (teacher forcing: exactly the
 * prompts greedy decoding answers with the key) */
static double eval_passkey(lv_threadpool *tp, lv_tmodel *m, lv_tr_state *st, const data *d, sample *s, int n, float *logits) {
    int ok = 0;
    const int64_t V = m->c.n_vocab;
    for (int i = 0; i < n; i++) {
        if (make_sample(d, i, 0, true, s) != 0) return -1;
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
    const char *out = NULL, *preset_name = NULL, *vocab = "builtin:bytes", *resume = NULL, *haystack = NULL, *log_path = NULL, *arch = "llama";
    int64_t dim = 0, layers = 0, heads = 0, kv_heads = 0, ffn = 0, steps = 200, batch = 8, seq_len = 512, warmup = -1, threads = 0, seed = 1;
    int64_t save_every = 0, stop_at = 0, eval_every = 0, eval_samples = 32, pk_min = 0, log_every = 10, ctx_train = 0;
    double lr = 1e-3, min_lr = -1, wd = 0.1, clip = 1.0, beta1 = 0.9, beta2 = 0.95, pk_frac = 0.5, answer_weight = 10, lm_weight = 1,
           init_std = 0.02, rope_base = 10000;
    bool untied = false, no_haystack = false;
    cli_opt opts[] = {
        {"-o", "--output", CLI_STR, &out, "FILE", "the trained GGUF; checkpoints are FILE + FILE.optim", .required = true},
        {NULL, "--preset", CLI_STR, &preset_name, "NAME", "shape: nano (32x1) | tiny (64x2, default) | small (128x4); flags below override"},
        {NULL, "--arch", CLI_STR, &arch, "NAME", "llama (default) or qwen2 (q/k/v biases, NEOX rope)"},
        {NULL, "--dim", CLI_INT, &dim, "N", "embedding size", .lo = 2, .hi = 8192},
        {NULL, "--layers", CLI_INT, &layers, "N", "layers", .lo = 1, .hi = 256},
        {NULL, "--heads", CLI_INT, &heads, "N", "attention heads (head size = dim / heads)", .lo = 1, .hi = 256},
        {NULL, "--kv-heads", CLI_INT, &kv_heads, "N", "KV heads (GQA)", .lo = 1, .hi = 256},
        {NULL, "--ffn", CLI_INT, &ffn, "N", "feed-forward size", .lo = 1, .hi = 65536},
        {NULL, "--untied", CLI_FLAG, &untied, NULL, "a separate output matrix (default: tied to the token embedding)"},
        {NULL, "--rope-base", CLI_FLOAT, &rope_base, "F", "RoPE frequency base (default 10000)", .flo = 2, .fhi = 1e9},
        {NULL, "--ctx-train", CLI_INT, &ctx_train, "N", "context_length written to the GGUF (default: --seq-len)", .lo = 1, .hi = 1 << 24},
        {NULL, "--vocab", CLI_STR, &vocab, "FILE", "vocabulary GGUF, tokenizer.json, or builtin:bytes (default)"},
        {NULL, "--init-std", CLI_FLOAT, &init_std, "F", "standard deviation of the initial weights (default 0.02)", .flo = 1e-6, .fhi = 1},
        {NULL, "--steps", CLI_INT, &steps, "N", "optimizer steps (default 200)", .lo = 1, .hi = INT32_MAX},
        {NULL, "--batch", CLI_INT, &batch, "N", "sequences per step (default 8)", .lo = 1, .hi = 4096},
        {NULL, "--seq-len", CLI_INT, &seq_len, "N", "tokens per sequence: LM windows and the longest passkey sample (default 512)", .lo = 8, .hi = 1 << 20},
        {NULL, "--passkey-min", CLI_INT, &pk_min, "N", "shortest passkey prompt (default: the shortest the format allows)", .lo = 1, .hi = 1 << 20},
        {NULL, "--passkey-frac", CLI_FLOAT, &pk_frac, "F", "fraction of passkey samples; the rest is LM on the haystack (default 0.5)", .flo = 0, .fhi = 1},
        {NULL, "--answer-weight", CLI_FLOAT, &answer_weight, "F", "loss weight of the answer tokens of passkey samples (default 10)", .flo = 0, .fhi = 1e6},
        {NULL, "--lm-weight", CLI_FLOAT, &lm_weight, "F", "loss weight of the prompt tokens of passkey samples (default 1)", .flo = 0, .fhi = 1e6},
        {NULL, "--haystack", CLI_STR, &haystack, "DIR", "LM text: *.txt files (default $LV_HAYSTACK or ../shared/data/haystack/paul-graham-essays)"},
        {NULL, "--no-haystack", CLI_FLAG, &no_haystack, NULL, "passkey samples only"},
        {NULL, "--lr", CLI_FLOAT, &lr, "F", "peak learning rate (default 1e-3)", .flo = 0, .fhi = 10},
        {NULL, "--min-lr", CLI_FLOAT, &min_lr, "F", "learning rate at the end of the cosine decay (default lr / 10)", .flo = 0, .fhi = 10},
        {NULL, "--warmup", CLI_INT, &warmup, "N", "linear warmup steps (default steps / 20)", .lo = 0, .hi = INT32_MAX},
        {NULL, "--wd", CLI_FLOAT, &wd, "F", "AdamW weight decay on matrices (default 0.1)", .flo = 0, .fhi = 10},
        {NULL, "--beta1", CLI_FLOAT, &beta1, "F", "AdamW beta1 (default 0.9)", .flo = 0, .fhi = 0.999999},
        {NULL, "--beta2", CLI_FLOAT, &beta2, "F", "AdamW beta2 (default 0.95)", .flo = 0, .fhi = 0.999999},
        {NULL, "--clip", CLI_FLOAT, &clip, "F", "clip the global gradient norm to F (0: off; default 1)", .flo = 0, .fhi = 1e9},
        {NULL, "--seed", CLI_INT, &seed, "N", "seed of the initial weights and of the data (default 1)", .lo = 0, .hi = INT64_MAX},
        {"-t", "--threads", CLI_INT, &threads, "N", "threads (default: all cores)", .lo = 1, .hi = 1024},
        {NULL, "--save-every", CLI_INT, &save_every, "N", "write a checkpoint every N steps (default: only at the end)", .lo = 1, .hi = INT32_MAX},
        {NULL, "--stop-at", CLI_INT, &stop_at, "N", "stop after step N with a checkpoint, as if interrupted (resume with --resume)", .lo = 1, .hi = INT32_MAX},
        {NULL, "--resume", CLI_STR, &resume, "FILE", "continue from a checkpoint FILE (+ FILE.optim); pass the same flags as the first run"},
        {NULL, "--eval-every", CLI_INT, &eval_every, "N", "every N steps (and at the end) measure held-out passkey accuracy", .lo = 1, .hi = INT32_MAX},
        {NULL, "--eval-samples", CLI_INT, &eval_samples, "N", "held-out passkey prompts per evaluation (default 32)", .lo = 1, .hi = 100000},
        {NULL, "--log", CLI_STR, &log_path, "FILE", "append one tab-separated line per step (step, loss, answer loss, lr, grad norm, tokens, seconds)"},
        {NULL, "--log-every", CLI_INT, &log_every, "N", "when stderr is not a terminal, a progress line every N steps (default 10)", .lo = 1, .hi = INT32_MAX},
    };
    const int n_opts = (int)(sizeof(opts) / sizeof(opts[0]));
    int r = cli_parse(argc, argv, opts, n_opts, "longview train -o OUT.gguf [--preset NAME | --dim N --layers N --heads N ...] [--steps N] [--resume OUT.gguf]",
                      "Train a llama-architecture model from scratch on the CPU (f32, AdamW with linear warmup and cosine decay,\n"
                      "gradient-norm clipping). Data is generated on the fly: passkey-retrieval prompts from the builder that\n"
                      "`longview eval passkey` uses, each followed by its answer, mixed with language modelling on windows of the\n"
                      "haystack text. Every sample is a function of (--seed, step), so --resume continues bit for bit. The output is\n"
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
    if (warmup < 0) warmup = steps / 20;
    if (min_lr < 0) min_lr = lr / 10;
    if (stop_at && stop_at >= steps) stop_at = 0;

    int rc = 1;
    lv_threadpool *tp = NULL;
    lv_model *vm = NULL;
    lv_tmodel *m = NULL;
    lv_adamw opt = {0};
    lv_tr_state st = {0};
    data d = {0};
    sample *smp = NULL;
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
        /* find the vocabulary size: gen-model's writer through a one-layer placeholder is overkill; export a
         * 2-token model fails with the size in the message, so ask the loader instead */
        lv_genmodel_params gp = lv_genmodel_default_params();
        gp.arch = "llama";
        gp.n_embd = 8, gp.n_layer = 1, gp.n_head = 1, gp.n_head_kv = 1, gp.n_ff = 8;
        gp.vocab_path = vocab;
        if ((s = lv_genmodel_write(&gp, out)) != LV_OK) {
            rc = cli_fail("reading the vocabulary", s);
            goto end;
        }
        lv_model_params mp = lv_model_default_params();
        mp.vocab_only = true;
        if ((s = lv_model_load(out, mp, &vm)) != LV_OK) {
            rc = cli_fail("loading the vocabulary", s);
            goto end;
        }
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
    d.answer_weight = answer_weight;
    d.lm_weight = lm_weight;
    d.seed = (uint64_t)seed;
    {
        lv_eval_params ep = lv_eval_default_params();
        ep.task = LV_EVAL_PASSKEY;
        if ((s = lv_eval_create(vm, &ep, &d.ev)) != LV_OK) {
            rc = cli_fail("creating the passkey builder", s);
            goto end;
        }
        /* the shortest prompt the format allows: ask the builder (its error names the minimum) */
        lv_eval_prompt *p = NULL;
        int32_t lo = 1, hi = (int32_t)seq_len;
        while (lo < hi) { /* smallest n that builds */
            const int32_t mid = lo + (hi - lo) / 2;
            if (lv_eval_build(d.ev, mid, 0.5, 0, &p) == LV_OK) {
                lv_eval_prompt_free(p);
                p = NULL;
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        if (lv_eval_build(d.ev, lo, 0.5, 0, &p) != LV_OK) {
            cli_error("--seq-len %lld is too short for a passkey prompt (%s)", (long long)seq_len, lv_last_error());
            rc = 2;
            goto end;
        }
        lv_eval_prompt_free(p);
        d.pk_max = (int32_t)seq_len - 16; /* room for the answer */
        d.pk_min = pk_min ? (int32_t)pk_min : lo;
        if (d.pk_min < lo) d.pk_min = lo;
        if (d.pk_max < d.pk_min) {
            cli_error("--seq-len %lld leaves no room for a passkey prompt (at least %d tokens plus the answer)", (long long)seq_len, d.pk_min);
            rc = 2;
            goto end;
        }
    }
    if (!no_haystack && pk_frac < 1) {
        if (!haystack) haystack = default_haystack();
        if (!haystack) {
            cli_error("no haystack text found: --haystack DIR, or --no-haystack / --passkey-frac 1");
            rc = 2;
            goto end;
        }
        if (load_haystack(&d, haystack) != 0) {
            rc = 2;
            goto end;
        }
    }

    smp = calloc((size_t)batch, sizeof(sample));
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
        fprintf(stderr, "train: %lld steps x %lld sequences of <= %lld tokens; passkey %.0f%% (prompts %d..%d tokens), LM %.0f%%%s%s\n",
                (long long)steps, (long long)batch, (long long)seq_len, 100 * (d.hay ? pk_frac : 1.0), d.pk_min, d.pk_max,
                100 * (d.hay ? 1 - pk_frac : 0.0), d.hay ? " on " : "", d.hay ? haystack : "");
    }

    /* the tokenizer written with every save: the original --vocab, or the checkpoint's own */
    const char *save_vocab = resume ? resume : vocab;
    const bool tty = isatty(2);
    const double t0 = now_s();
    double tokens = 0, last_print = 0;
    const int64_t first = info.step, last = stop_at ? stop_at : steps;
    for (int64_t step = first; step < last; step++) {
        double wsum = 0;
        for (int64_t b = 0; b < batch; b++) {
            if (make_sample(&d, step, (int)b, false, &smp[b]) != 0) goto end;
            for (int64_t i = 0; i < smp[b].T; i++) wsum += smp[b].w[i];
        }
        memset(m->grads, 0, sizeof(float) * (size_t)m->n_params);
        double loss = 0, ans_loss = 0, ans_n = 0;
        for (int64_t b = 0; b < batch; b++) {
            sample *sp = &smp[b];
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
        const double el = now_s() - t0;
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
            if (logf) fprintf(logf, "# step %lld passkey accuracy %.4f (%lld held-out prompts, argmax of every answer token)\n", (long long)step + 1,
                              acc, (long long)eval_samples);
        }
        if (tty ? el - last_print >= 0.2 || at_end : (step + 1) % log_every == 0 || at_end || acc >= 0) {
            char eta[32], ela[32], accs[48] = "", ans[32] = "-";
            if (ans_n) snprintf(ans, sizeof(ans), "%.4f", ans_loss / ans_n);
            fmt_dur(el / (double)(step + 1 - first) * (double)(last - step - 1), eta, sizeof(eta));
            fmt_dur(el, ela, sizeof(ela));
            if (acc >= 0) snprintf(accs, sizeof(accs), " | passkey acc %.3f", acc);
            fprintf(stderr, "%sstep %lld/%lld | loss %.4f | answer %s | lr %.2e | |g| %.3f | %.0f tok/s | %s elapsed, ETA %s%s%s", tty ? "\r\033[K" : "",
                    (long long)step + 1, (long long)steps, loss, ans, (double)lr_t, (double)gnorm, tokens / el, ela, eta,
                    accs, tty && !at_end && acc < 0 ? "" : "\n");
            last_print = el;
        }
        if (save_every && (step + 1) % save_every == 0 && !at_end)
            if (save_ckpt(m, &opt, &info, save_vocab, out) != 0) goto end;
    }
    if (save_ckpt(m, &opt, &info, save_vocab, out) != 0) goto end;
    fprintf(stderr, "train: wrote %s (step %lld of %lld%s)\n", out, (long long)info.step, (long long)steps,
            info.step < steps ? "; resume with --resume" : "");
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
    lv_eval_free(d.ev);
    lv_tr_state_free(&st);
    lv_adamw_free(&opt);
    lv_tmodel_free(m);
    lv_model_free(vm);
    lv_threadpool_free(tp);
    return rc;
}
