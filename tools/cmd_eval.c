/*
 * cmd_eval.c: `longview eval niah|passkey|multikey|multivalue`: long-context retrieval accuracy and speed in each
 * attention mode. For every (length, depth, sample) it builds a prompt with the library's builder
 * (lv_eval_build: exact token length, needle at the depth), prefills it in chunks of -b, generates
 * greedily up to -n tokens (stopping at end-of-generation), applies the answer rule
 * (lv_eval_check_answer) and records timings and the KV bytes in use. Output: a table per mode
 * (rows: lengths, columns: depths, cells: accuracy) with prefill and decode tokens/s and KV MiB,
 * optional JSON lines with every sample (-o) and an SVG heat map (--plot).
 *
 * Modes only set lv_context_params.attention; the engine does the rest:
 *   dense       every head keeps every token
 *   duo         DuoAttention: --heads pattern binarized at --sparsity; streaming heads keep
 *               --sink + --window tokens
 *   duo+lserve  duo, and retrieval heads read only LServe-selected pages at decode (--kv-budget,
 *               --select-every)
 *   longgen     LongGen layer plan: layer l full iff l % 3 == 1, the others sink+window
 */
#define _GNU_SOURCE
#include "common/cli.h"
#include "commands.h"
#include "common/svg.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_LENGTHS 64
#define MAX_DEPTHS 64
#define MAX_MODES 4

typedef enum eval_mode { MODE_DENSE, MODE_DUO, MODE_DUO_LSERVE, MODE_LONGGEN } eval_mode;
static const char *const k_mode_names[] = {"dense", "duo", "duo+lserve", "longgen"};

/* "1024,2048" -> lengths */
static int parse_ints(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < lo || v > hi || n == max) {
            cli_error("%s: '%s' is not a list of integers in [%lld, %lld] (at most %d)", flag, s, (long long)lo, (long long)hi, max);
            return -1;
        }
        /* 4k, 128K, 1M */
        if (*end == 'k' || *end == 'K') v *= 1024, end++;
        else if (*end == 'm' || *end == 'M') v *= 1024 * 1024, end++;
        if (v > hi) {
            cli_error("%s: %lld is larger than %lld", flag, v, (long long)hi);
            return -1;
        }
        out[n++] = v;
        p = end;
        if (*p == ',') p++;
        else if (*p) {
            cli_error("%s: '%s' is not a comma-separated list", flag, s);
            return -1;
        }
    }
    if (n == 0) cli_error("%s: empty list", flag);
    return n ? n : -1;
}

static int parse_modes(const char *s, eval_mode *out, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        size_t l = strcspn(p, ",");
        int found = -1;
        for (int m = 0; m < 4; m++)
            if (strlen(k_mode_names[m]) == l && strncmp(p, k_mode_names[m], l) == 0) found = m;
        if (found < 0 || n == max) {
            cli_error("--mode: '%.*s' is not one of dense, duo, duo+lserve, longgen (comma-separate several)", (int)l, p);
            return -1;
        }
        for (int j = 0; j < n; j++)
            if (out[j] == (eval_mode)found) {
                cli_error("--mode: '%s' is listed twice", k_mode_names[found]);
                return -1;
            }
        out[n++] = (eval_mode)found;
        p += l;
        if (*p == ',') p++;
    }
    if (n == 0) cli_error("--mode: empty list");
    return n ? n : -1;
}

/* one cell of the table */
typedef struct cell {
    int n, correct;
    double score;
} cell;

typedef struct mode_result {
    eval_mode mode;
    cell cells[MAX_LENGTHS][MAX_DEPTHS];
    double prefill_tokens, prefill_s, decode_tokens, decode_s;
    double len_prefill_tokens[MAX_LENGTHS], len_prefill_s[MAX_LENGTHS], len_decode_tokens[MAX_LENGTHS], len_decode_s[MAX_LENGTHS];
    int64_t len_kv_bytes[MAX_LENGTHS]; /* the most in use at the end of a sample of that length */
} mode_result;

/* A response, shortened to one line for the progress lines. */
static void one_line(const char *s, char *out, size_t size) {
    size_t j = 0;
    for (size_t i = 0; s[i] && j + 4 < size; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c == '\n') out[j++] = '\\', out[j++] = 'n';
        else if (c < 0x20) out[j++] = ' ';
        else out[j++] = (char)c;
        if (j >= 72) {
            memcpy(out + j, "...", 3);
            j += 3;
            break;
        }
    }
    out[j] = '\0';
}

static const char *default_haystack(void) {
    static const char *const cand[] = {"../shared/data/haystack/paul-graham-essays", "../../shared/data/haystack/paul-graham-essays"};
    const char *env = getenv("LV_HAYSTACK");
    if (env) return env;
    for (size_t i = 0; i < sizeof(cand) / sizeof(cand[0]); i++) {
        struct stat st;
        if (stat(cand[i], &st) == 0 && S_ISDIR(st.st_mode)) return cand[i];
    }
    return NULL;
}

static int write_plot(const char *path, const char *title, const mode_result *res, int n_modes, const int64_t *lengths, int n_len,
                      const double *depths, int n_dep) {
    const double cw = n_len <= 8 ? 56 : n_len <= 16 ? 36 : 20, ch = n_dep <= 11 ? 26 : 14;
    const double left = 70, top = 56, panel_w = cw * n_len, panel_gap = 40, grid_h = ch * n_dep;
    const double width = left + n_modes * (panel_w + panel_gap) + 60 > 520 ? left + n_modes * (panel_w + panel_gap) + 60 : 520;
    const double height = top + 24 + grid_h + 70;
    FILE *f = svg_begin(path, width, height);
    if (!f) return 1;
    svg_text(f, 12, 22, 14, "start", "%s", title);
    svg_text(f, 12, 40, 11, "start", "colour: accuracy (red 0, green 1); x: prompt length in tokens, y: needle depth");
    for (int m = 0; m < n_modes; m++) {
        const double x0 = left + m * (panel_w + panel_gap), y0 = top + 24;
        double acc = 0;
        int n = 0;
        for (int i = 0; i < n_len; i++)
            for (int d = 0; d < n_dep; d++) acc += res[m].cells[i][d].correct, n += res[m].cells[i][d].n;
        svg_text(f, x0 + panel_w / 2, top + 14, 12, "middle", "%s (mean %.2f)", k_mode_names[res[m].mode], n ? acc / n : 0.0);
        for (int d = 0; d < n_dep; d++) {
            if (m == 0) svg_text(f, x0 - 6, y0 + (d + 0.5) * ch + 4, 10, "end", "%.0f%%", depths[d] * 100);
            for (int i = 0; i < n_len; i++) {
                const cell *c = &res[m].cells[i][d];
                const double a = c->n ? (double)c->correct / c->n : NAN;
                char col[8], tip[200];
                svg_red_green(a, col);
                snprintf(tip, sizeof(tip), "%s: %lld tokens, depth %.2f: %d of %d correct", k_mode_names[res[m].mode], (long long)lengths[i], depths[d],
                         c->correct, c->n);
                svg_rect(f, x0 + i * cw, y0 + d * ch, cw, ch, col, "#ffffff", 1, tip);
                if (c->n && cw >= 30) {
                    fprintf(f, "<g fill=\"%s\">", svg_ink_on(col));
                    svg_text(f, x0 + (i + 0.5) * cw, y0 + (d + 0.5) * ch + 4, 10, "middle", "%.2f", a);
                    fputs("</g>\n", f);
                }
            }
        }
        for (int i = 0; i < n_len; i++) {
            char lab[32];
            if (lengths[i] >= 1024 && lengths[i] % 1024 == 0) snprintf(lab, sizeof(lab), "%lldK", (long long)(lengths[i] / 1024));
            else snprintf(lab, sizeof(lab), "%lld", (long long)lengths[i]);
            svg_text(f, x0 + (i + 0.5) * cw, y0 + grid_h + 14, 10, "middle", "%s", lab);
        }
    }
    svg_text(f, left + (width - left - 60) / 2, top + 24 + grid_h + 36, 11, "middle", "prompt length (tokens)");
    svg_text_vertical(f, 16, top + 24 + grid_h / 2, 11, "depth");
    return svg_end(f, path);
}

int cmd_eval(int argc, char **argv) {
    /* `eval vniah` (video needles) has options of its own: tools/cmd_eval_vniah.c */
    if (argc > 1 && strcmp(argv[1], "vniah") == 0) return cmd_eval_vniah(argc - 1, argv + 1);
    const char *model_path = NULL, *lengths_arg = "1024,2048,4096", *depths_arg = "0,0.25,0.5,0.75,1", *mode_arg = "dense";
    const char *heads_path = NULL, *out_path = NULL, *plot_path = NULL, *haystack = NULL, *needle = NULL, *keywords = NULL, *question = NULL,
               *answer_prefix = NULL;
    const char *chat_template = NULL, *dump_dir = NULL;
    cli_kv kvo = {.both = "f16"};
    int64_t samples = 1, n_predict = 32, sink = 64, window = 256, kv_budget = 4096, select_every = 4, n_ctx = 0, n_batch = 512, n_threads = 0;
    int64_t seed = 0, head_seed = 42, verbose = 0, n_needles = 0, select_groups = 0;
    double sparsity = 0.5, select_drift = lv_attention_default_params().select_drift;
    bool chat = false, quiet = false, select_shared = false, select_exact = false;
    cli_opt opts[] = {
        {"-m", "--model", CLI_STR, &model_path, "FILE", "GGUF model", .required = true},
        {NULL, "--lengths", CLI_STR, &lengths_arg, "N[,N]", "prompt lengths in tokens, e.g. 1024,4k,32k (default 1024,2048,4096)"},
        {NULL, "--depths", CLI_STR, &depths_arg, "D[,D]", "needle depths, fractions of the filler (default 0,0.25,0.5,0.75,1)"},
        {NULL, "--samples", CLI_INT, &samples, "N", "prompts per (length, depth), seeds --seed, --seed+1, ... (default 1)", .lo = 1, .hi = 100000},
        {"-n", "--n-predict", CLI_INT, &n_predict, "N", "tokens to generate at most (default 32; stops at end-of-generation)", .lo = 1, .hi = 1 << 20},
        {NULL, "--mode", CLI_STR, &mode_arg, "M[,M]", "dense | duo | duo+lserve | longgen, or several comma-separated (default dense)"},
        {NULL, "--heads", CLI_STR, &heads_path, "FILE.tsv", "DuoAttention pattern (full_attention_heads.tsv) for duo and duo+lserve"},
        {NULL, "--sparsity", CLI_FLOAT, &sparsity, "S", "fraction of KV heads made streaming (default 0.5)", .flo = 0, .fhi = 1},
        {NULL, "--head-seed", CLI_INT, &head_seed, "N", "seed of the pattern's tie-breaking noise (default 42)", .lo = 0, .hi = INT64_MAX},
        {NULL, "--sink", CLI_INT, &sink, "N", "tokens kept at the start by streaming heads / sink+window layers (default 64)", .lo = 0, .hi = 1 << 30},
        {NULL, "--window", CLI_INT, &window, "N", "recent tokens they keep (default 256)", .lo = 1, .hi = 1 << 30},
        {NULL, "--kv-budget", CLI_INT, &kv_budget, "N", "duo+lserve: tokens of selected pages per head (default 4096)", .lo = 1, .hi = 1 << 30},
        {NULL, "--select-every", CLI_INT, &select_every, "N", "duo+lserve: re-select pages every N decode steps (default 4)", .lo = 1, .hi = 1 << 20},
        {NULL, "--select-drift", CLI_FLOAT, &select_drift, "C",
         "duo+lserve: ... and sooner when a query's cosine with the selecting query falls below C (default 0.5; 0: only every N)", .flo = 0, .fhi = 1},
        {NULL, "--select-shared", CLI_FLAG, &select_shared, NULL, "duo+lserve: one selection per KV head for its query heads (not LServe's rule)"},
        {NULL, "--select-groups", CLI_INT, &select_groups, "N",
         "duo+lserve: two-level selection, groups of N pages scored first (default 0: every page)", .lo = 0, .hi = 4096},
        {NULL, "--select-exact", CLI_FLAG, &select_exact, NULL, "duo+lserve with --select-groups: the exact rule (exhaustive selection's pages)"},
        {"-c", "--ctx-size", CLI_INT, &n_ctx, "N", "KV capacity (default: the longest prompt plus -n)", .lo = 0, .hi = 1 << 30},
        {"-b", "--batch", CLI_INT, &n_batch, "N", "prefill chunk in tokens (default 512)", .lo = 1, .hi = 1 << 20},
        {"-t", "--threads", CLI_INT, &n_threads, "N", "threads (default: all cores)", .lo = 0, .hi = 512},
        CLI_KV_OPTS(kvo, "f16"),
        {NULL, "--seed", CLI_INT, &seed, "N", "first prompt seed: the pass key; for NIAH the essay the haystack starts with (default 0)",
         .lo = 0, .hi = INT64_MAX},
        {NULL, "--needles", CLI_INT, &n_needles, "N", "multikey / multivalue: needles per prompt, 2..10 (default 4)", .lo = 2, .hi = 10},
        {NULL, "--haystack", CLI_STR, &haystack, "DIR", "NIAH: directory of .txt essays (default $LV_HAYSTACK or ../shared/data/haystack/paul-graham-essays)"},
        {NULL, "--needle", CLI_STR, &needle, "TEXT", "NIAH: a custom needle (needs --keywords); {key} becomes each prompt's 5-digit key"},
        {NULL, "--keywords", CLI_STR, &keywords, "K[|K]", "NIAH: phrases a correct answer contains (default sandwich|Dolores Park; may use {key})"},
        {NULL, "--question", CLI_STR, &question, "TEXT", "a custom question"},
        {NULL, "--answer-prefix", CLI_STR, &answer_prefix, "TEXT", "the start of the answer written after the question (default: the task's; '' for none)"},
        {NULL, "--chat", CLI_FLAG, &chat, NULL, "wrap the prompt in the model's chat template"},
        {NULL, "--chat-template", CLI_STR, &chat_template, "NAME", "wrap it in this template family (chatml, llama3, mistral-v3, ...)"},
        {"-o", "--output", CLI_STR, &out_path, "FILE", "write every sample as a JSON line"},
        {NULL, "--plot", CLI_STR, &plot_path, "OUT.svg", "write an SVG heat map (length x depth, colour = accuracy), one panel per mode"},
        {NULL, "--dump-prompts", CLI_STR, &dump_dir, "DIR", "write each prompt's text to DIR/<task>-<length>-<depth>-<seed>.txt (DIR is created)"},
        {"-q", "--quiet", CLI_FLAG, &quiet, NULL, "no per-sample lines on stderr"},
        {"-v", "--verbose", CLI_INT, &verbose, "N", "log level: 0 warnings, 1 info, 2 debug", .lo = 0, .hi = 2},
    };
    const char *pos[1] = {NULL};
    int npos = 0;
    int r = cli_parse(argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0])),
                      "longview eval niah|passkey|multikey|multivalue -m MODEL [--lengths 1024,4k] [--depths 0,0.5,1] [--samples N] [-n N] [--mode dense,duo]\n"
                      "       [--heads FILE.tsv] [--sparsity S] [--sink N] [--window N] [--kv-budget N] [--select-every N]\n"
                      "       [--select-drift C] [--select-shared] [--select-groups N] [-c CTX] [-b N] [-t N]\n"
                      "       [-o results.jsonl] [--plot heat.svg]",
                      "Long-context retrieval: a needle (NIAH: the San Francisco sentence in Paul Graham's essays; passkey: a\n"
                      "5-digit key in repeated filler) at each depth of prompts of each length; greedy generation; the answer\n"
                      "rule of docs/eval.md. Prints accuracy per (length, depth) and prefill/decode speed and KV memory per mode.\n"
                      "Video needles (V-NIAH, docs/vniah.md) have their own options: longview eval vniah --help.",
                      pos, 1, &npos);
    if (r) return r > 0 ? 0 : 2;
    cli_set_verbosity(verbose);
    static const char *const task_names[] = {"niah", "passkey", "multikey", "multivalue"};
    int task = -1;
    for (int i = 0; npos == 1 && i < 4; i++)
        if (strcmp(pos[0], task_names[i]) == 0) task = i;
    if (task < 0) {
        cli_error("give the task: niah, passkey, multikey or multivalue (see --help), or vniah first (`longview eval vniah --help`)");
        return 2;
    }
    const bool niah = task == LV_EVAL_NIAH;
    if (n_needles && task != LV_EVAL_MULTIKEY && task != LV_EVAL_MULTIVALUE) {
        cli_error("--needles is for multikey and multivalue");
        return 2;
    }
    int64_t lengths[MAX_LENGTHS];
    double depths[MAX_DEPTHS];
    eval_mode modes[MAX_MODES];
    const int n_len = parse_ints("--lengths", lengths_arg, 1, INT32_MAX / 2, lengths, MAX_LENGTHS);
    const int n_dep = n_len < 0 ? -1 : cli_parse_fractions("--depths", depths_arg, depths, MAX_DEPTHS);
    const int n_modes = n_dep < 0 ? -1 : parse_modes(mode_arg, modes, MAX_MODES);
    if (n_modes < 0) return 2;
    bool need_heads = false;
    for (int m = 0; m < n_modes; m++) need_heads |= modes[m] == MODE_DUO || modes[m] == MODE_DUO_LSERVE;
    if (need_heads && !heads_path) {
        cli_error("--mode duo and duo+lserve need a head pattern: --heads full_attention_heads.tsv");
        return 2;
    }
    if (heads_path && !need_heads) fprintf(stderr, "longview: warning: --heads is used only by the duo and duo+lserve modes\n");
    if (dump_dir && mkdir(dump_dir, 0777) != 0 && errno != EEXIST) {
        cli_error("--dump-prompts: cannot create directory '%s': %s", dump_dir, strerror(errno));
        return 2;
    }
    if (!niah && (needle || keywords || haystack)) {
        cli_error("--needle, --keywords and --haystack are NIAH options");
        return 2;
    }
    lv_kv_type kvt, kvt_v;
    if (cli_kv_types(&kvo, &kvt, &kvt_v) != 0) return 2;
    if (niah && !haystack && !(haystack = default_haystack())) {
        cli_error("NIAH needs the essays: --haystack DIR (e.g. shared/data/haystack/paul-graham-essays)");
        return 2;
    }

    int rc = 1;
    lv_model *model = NULL;
    lv_head_pattern *pattern = NULL;
    lv_eval *ev = NULL;
    lv_context *ctx = NULL;
    lv_sampler *smp = NULL;
    lv_batch batch = {0};
    lv_token *gen = NULL;
    char *resp = NULL;
    FILE *jf = NULL;
    mode_result *res = calloc((size_t)n_modes, sizeof(mode_result));
    if (!res) {
        cli_error("out of memory");
        return 1;
    }
    lv_status st = lv_model_load(model_path, lv_model_default_params(), &model);
    if (st != LV_OK) {
        cli_fail("loading the model", st);
        goto end;
    }
    const char *model_base = strrchr(model_path, '/') ? strrchr(model_path, '/') + 1 : model_path;
    if (heads_path) {
        if ((st = lv_head_pattern_load(heads_path, &pattern)) != LV_OK) {
            cli_fail("loading the head pattern", st);
            goto end;
        }
        if (lv_head_pattern_n_layer(pattern) != lv_model_n_layer(model) || lv_head_pattern_n_head_kv(pattern) != lv_model_n_head_kv(model)) {
            cli_error("the head pattern '%s' is %d layers x %d KV heads but the model has %d layers x %d KV heads: it was trained for another model",
                      heads_path, lv_head_pattern_n_layer(pattern), lv_head_pattern_n_head_kv(pattern), lv_model_n_layer(model),
                      lv_model_n_head_kv(model));
            goto end;
        }
    }
    lv_eval_params ep = lv_eval_default_params();
    ep.task = (lv_eval_task)task;
    ep.n_needles = (int32_t)n_needles;
    ep.haystack_dir = niah ? haystack : NULL;
    ep.needle = needle;
    ep.keywords = keywords;
    ep.question = question;
    ep.answer_prefix = answer_prefix;
    ep.chat = chat || chat_template;
    ep.chat_template = chat_template;
    if ((st = lv_eval_create(model, &ep, &ev)) != LV_OK) {
        cli_fail("preparing the prompts", st);
        goto end;
    }
    int64_t max_len = 0, min_len = INT64_MAX;
    for (int i = 0; i < n_len; i++) {
        max_len = lengths[i] > max_len ? lengths[i] : max_len;
        min_len = lengths[i] < min_len ? lengths[i] : min_len;
    }
    {
        /* fail before any model work when the shortest prompt cannot be built */
        lv_eval_prompt *p = NULL;
        if ((st = lv_eval_build(ev, (int32_t)min_len, depths[0], (uint64_t)seed, &p)) != LV_OK) {
            cli_fail("building a prompt", st);
            goto end;
        }
        lv_eval_prompt_free(p);
    }
    if (n_ctx == 0) n_ctx = max_len + n_predict;
    if (max_len + n_predict > n_ctx) {
        cli_error("the longest prompt (%lld tokens) plus -n %lld does not fit -c %lld", (long long)max_len, (long long)n_predict, (long long)n_ctx);
        goto end;
    }
    if (lv_model_n_ctx_train(model) > 0 && max_len > lv_model_n_ctx_train(model))
        fprintf(stderr, "longview: warning: prompts of up to %lld tokens exceed the model's training context (%d)\n", (long long)max_len,
                lv_model_n_ctx_train(model));
    if (out_path && !(jf = fopen(out_path, "w"))) {
        cli_error("cannot write '%s'", out_path);
        goto end;
    }
    lv_sampler_params sp = lv_sampler_default_params();
    sp.temp = 0;
    if ((st = lv_sampler_create(sp, lv_model_n_vocab(model), &smp)) != LV_OK) {
        cli_fail("sampler", st);
        goto end;
    }
    batch = lv_batch_init((int32_t)n_batch);
    gen = malloc((size_t)n_predict * sizeof(lv_token));
    const int64_t resp_cap = n_predict * 256 + 64;
    resp = malloc((size_t)resp_cap + 1);
    if (!batch.token || !gen || !resp) {
        cli_error("out of memory");
        goto end;
    }

    for (int m = 0; m < n_modes; m++) {
        mode_result *mr = &res[m];
        mr->mode = modes[m];
        lv_context_params cp = lv_context_default_params();
        cp.n_ctx = (uint32_t)n_ctx;
        cp.n_batch = (uint32_t)n_batch;
        cp.n_ubatch = (uint32_t)n_batch;
        cp.n_threads = (int32_t)n_threads;
        cp.kv_type = kvt;
    cp.kv_type_v = kvt_v;
        lv_attention_params *ap = &cp.attention;
        ap->sink = (int32_t)sink;
        ap->window = (int32_t)window;
        if (modes[m] == MODE_DUO || modes[m] == MODE_DUO_LSERVE) {
            ap->heads = pattern;
            ap->sparsity = (float)sparsity;
            ap->pattern_seed = (uint64_t)head_seed;
        }
        if (modes[m] == MODE_DUO_LSERVE) {
            ap->select = true;
            ap->kv_budget = (int32_t)kv_budget;
            ap->select_every = (int32_t)select_every;
            ap->select_drift = (float)select_drift;
            ap->select_shared = select_shared;
            ap->select_groups = (int32_t)select_groups;
            ap->select_groups_exact = select_exact;
        }
        if (modes[m] == MODE_LONGGEN) ap->layer_plan = "longgen";
        if ((st = lv_context_create(model, cp, &ctx)) != LV_OK) {
            char what[64];
            snprintf(what, sizeof(what), "creating the context (mode %s)", k_mode_names[modes[m]]);
            cli_fail(what, st);
            goto end;
        }
        if (!quiet) {
            fprintf(stderr, "mode %s:", k_mode_names[modes[m]]);
            if (ap->heads) {
                const int64_t nh = (int64_t)lv_head_pattern_n_layer(pattern) * lv_head_pattern_n_head_kv(pattern);
                uint8_t *flags = malloc((size_t)nh);
                const int64_t nr = flags ? lv_head_pattern_binarize(pattern, ap->sparsity, ap->pattern_seed, flags) : -1;
                free(flags);
                fprintf(stderr, " heads %s at sparsity %g: %lld of %lld retrieval; streaming heads keep sink %d + window %d;", heads_path, sparsity,
                        (long long)nr, (long long)nh, ap->sink, ap->window);
            }
            if (ap->select) fprintf(stderr, " LServe page selection: budget %d tokens, every %d steps or at query drift (cosine < %g)%s;", ap->kv_budget,
                                      ap->select_every, (double)ap->select_drift, ap->select_shared ? ", one per KV head" : "");
            if (ap->select && ap->select_groups)
                fprintf(stderr, " two-level, groups of %d pages%s;", ap->select_groups, ap->select_groups_exact ? ", exact rule" : "");
            if (ap->layer_plan) fprintf(stderr, " layer plan %s (sink %d + window %d);", ap->layer_plan, ap->sink, ap->window);
            fprintf(stderr, " KV capacity %lld tokens, %.1f MiB\n", (long long)n_ctx, (double)lv_kv_capacity_bytes(ctx) / (1024.0 * 1024.0));
        }
        for (int li = 0; li < n_len; li++)
            for (int di = 0; di < n_dep; di++)
                for (int64_t s = 0; s < samples; s++) {
                    const uint64_t pseed = (uint64_t)seed + (uint64_t)s;
                    lv_eval_prompt *p = NULL;
                    if ((st = lv_eval_build(ev, (int32_t)lengths[li], depths[di], pseed, &p)) != LV_OK) {
                        cli_fail("building a prompt", st);
                        goto end;
                    }
                    if (dump_dir && m == 0) {
                        char fn[4096];
                        snprintf(fn, sizeof(fn), "%s/%s-%lld-%.2f-%llu.txt", dump_dir, task_names[task], (long long)lengths[li], depths[di],
                                 (unsigned long long)pseed);
                        FILE *df = fopen(fn, "w");
                        if (!df) {
                            cli_error("cannot write '%s'", fn);
                            lv_eval_prompt_free(p);
                            goto end;
                        }
                        fputs(p->text, df);
                        fclose(df);
                    }
                    /* prefill from an empty cache, in chunks of -b */
                    if ((st = lv_kv_seq_rm(ctx, -1, 0, -1)) != LV_OK) {
                        lv_eval_prompt_free(p);
                        cli_fail("clearing the cache", st);
                        goto end;
                    }
                    const double t0 = cli_now_s();
                    for (int32_t i0 = 0; i0 < p->n_tokens; i0 += (int32_t)n_batch) {
                        const int32_t nb = (int32_t)(p->n_tokens - i0 < n_batch ? p->n_tokens - i0 : n_batch);
                        batch.n_tokens = nb;
                        for (int32_t i = 0; i < nb; i++) {
                            batch.token[i] = p->tokens[i0 + i];
                            batch.pos[i] = i0 + i;
                            batch.seq_id[i] = 0;
                            batch.logits[i] = i0 + i == p->n_tokens - 1;
                        }
                        if ((st = lv_decode(ctx, &batch)) != LV_OK) {
                            lv_eval_prompt_free(p);
                            cli_fail("prefill", st);
                            goto end;
                        }
                    }
                    const double t_prefill = cli_now_s() - t0;
                    /* greedy generation */
                    int64_t n_gen = 0, n_dec = 0;
                    const double t1 = cli_now_s();
                    lv_pos posn = p->n_tokens;
                    for (;;) {
                        const lv_token tok = lv_sampler_sample(smp, lv_get_logits_ith(ctx, -1));
                        if (lv_token_is_eog(model, tok)) break;
                        gen[n_gen++] = tok;
                        if (n_gen == n_predict) break;
                        batch.n_tokens = 1;
                        batch.token[0] = tok;
                        batch.pos[0] = posn++;
                        batch.seq_id[0] = 0;
                        batch.logits[0] = 1;
                        if ((st = lv_decode(ctx, &batch)) != LV_OK) {
                            lv_eval_prompt_free(p);
                            cli_fail("decode", st);
                            goto end;
                        }
                        n_dec++;
                    }
                    const double t_decode = cli_now_s() - t1;
                    const int64_t kv_bytes = lv_kv_used_bytes(ctx);
                    int64_t rl = n_gen ? lv_detokenize(model, gen, (int32_t)n_gen, resp, resp_cap, false, false) : 0;
                    if (rl < 0) rl = 0;
                    resp[rl] = '\0';
                    double score = 0;
                    const bool ok = lv_eval_check_answer(p->answer, resp, rl, &score);
                    cell *c = &mr->cells[li][di];
                    c->n++;
                    c->correct += ok;
                    c->score += score;
                    mr->prefill_tokens += p->n_tokens;
                    mr->prefill_s += t_prefill;
                    mr->decode_tokens += (double)n_dec;
                    mr->decode_s += t_decode;
                    mr->len_prefill_tokens[li] += p->n_tokens;
                    mr->len_prefill_s[li] += t_prefill;
                    mr->len_decode_tokens[li] += (double)n_dec;
                    mr->len_decode_s[li] += t_decode;
                    if (kv_bytes > mr->len_kv_bytes[li]) mr->len_kv_bytes[li] = kv_bytes;
                    if (!quiet) {
                        char shown[128];
                        one_line(resp, shown, sizeof(shown));
                        fprintf(stderr,
                                "[%s] %d tokens, depth %.2f (needle at %d, %.2f), seed %llu: %s  \"%s\"  | prefill %.2f s, %.0f tokens/s;"
                                " decode %.0f tokens/s; KV %.2f MiB\n",
                                k_mode_names[modes[m]], p->n_tokens, depths[di], p->needle_pos, p->depth, (unsigned long long)pseed,
                                ok ? "correct" : "wrong  ", shown, t_prefill, p->n_tokens / (t_prefill > 0 ? t_prefill : 1e-9),
                                n_dec / (t_decode > 0 ? t_decode : 1e-9), (double)kv_bytes / (1024.0 * 1024.0));
                    }
                    if (jf) {
                        json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:f, s:f, s:I, s:I, s:I, s:s, s:s, s:b, s:f, s:I, s:f, s:f, s:I, s:I, s:f, s:f, s:I}",
                                              "task", task_names[task], "mode", k_mode_names[modes[m]], "model", model_base, "length",
                                              (json_int_t)lengths[li], "n_tokens", (json_int_t)p->n_tokens, "depth", depths[di], "needle_depth",
                                              p->depth, "needle_pos", (json_int_t)p->needle_pos, "sample", (json_int_t)s, "seed", (json_int_t)pseed,
                                              "answer", p->answer, "response", resp, "correct", ok, "score", score, "prefill_tokens",
                                              (json_int_t)p->n_tokens, "prefill_s", t_prefill, "prefill_tps",
                                              p->n_tokens / (t_prefill > 0 ? t_prefill : 1e-9), "gen_tokens", (json_int_t)n_gen, "decode_tokens",
                                              (json_int_t)n_dec, "decode_s", t_decode, "decode_tps", n_dec / (t_decode > 0 ? t_decode : 1e-9), "kv_bytes",
                                              (json_int_t)kv_bytes);
                        if (!o) {
                            /* json_pack refuses invalid UTF-8 (a response cut inside a character): keep the line, hex-free */
                            for (int64_t i = 0; i < rl; i++)
                                if ((unsigned char)resp[i] >= 0x80) resp[i] = '?';
                            o = json_pack("{s:s, s:s, s:I, s:f, s:I, s:s, s:b}", "task", task_names[task], "mode", k_mode_names[modes[m]],
                                          "length", (json_int_t)lengths[li], "depth", depths[di], "seed", (json_int_t)pseed, "response", resp,
                                          "correct", ok);
                        }
                        if (o) {
                            json_dumpf(o, jf, JSON_COMPACT | JSON_PRESERVE_ORDER);
                            fputc('\n', jf);
                            json_decref(o);
                        }
                    }
                    lv_eval_prompt_free(p);
                }
        lv_context_free(ctx);
        ctx = NULL;
    }

    /* tables */
    for (int m = 0; m < n_modes; m++) {
        const mode_result *mr = &res[m];
        printf("%s%s | mode %s | %s | %lld sample%s per cell, greedy, -n %lld\n", m ? "\n" : "", task_names[task], k_mode_names[mr->mode],
               model_base, (long long)samples, samples == 1 ? "" : "s", (long long)n_predict);
        printf("%8s", "length");
        for (int d = 0; d < n_dep; d++) printf(" %6.2f", depths[d]);
        printf(" | %5s | %12s | %11s | %8s\n", "mean", "prefill t/s", "decode t/s", "KV MiB");
        int tc = 0, tn = 0;
        for (int i = 0; i < n_len; i++) {
            printf("%8lld", (long long)lengths[i]);
            int rc_ = 0, rn = 0;
            for (int d = 0; d < n_dep; d++) {
                const cell *c = &mr->cells[i][d];
                printf(" %6.2f", c->n ? (double)c->correct / c->n : 0.0);
                rc_ += c->correct;
                rn += c->n;
            }
            tc += rc_;
            tn += rn;
            printf(" | %5.2f | %12.1f | %11.1f | %8.2f\n", rn ? (double)rc_ / rn : 0.0,
                   mr->len_prefill_tokens[i] / (mr->len_prefill_s[i] > 0 ? mr->len_prefill_s[i] : 1e-9),
                   mr->len_decode_tokens[i] / (mr->len_decode_s[i] > 0 ? mr->len_decode_s[i] : 1e-9), (double)mr->len_kv_bytes[i] / (1024.0 * 1024.0));
        }
        printf("%8s", "all");
        for (int d = 0; d < n_dep; d++) {
            int dc = 0, dn = 0;
            for (int i = 0; i < n_len; i++) dc += mr->cells[i][d].correct, dn += mr->cells[i][d].n;
            printf(" %6.2f", dn ? (double)dc / dn : 0.0);
        }
        printf(" | %5.2f | %12.1f | %11.1f |\n", tn ? (double)tc / tn : 0.0, mr->prefill_tokens / (mr->prefill_s > 0 ? mr->prefill_s : 1e-9),
               mr->decode_tokens / (mr->decode_s > 0 ? mr->decode_s : 1e-9));
    }
    if (n_modes > 1) {
        printf("\n%-11s %8s %12s %11s %14s\n", "mode", "accuracy", "prefill t/s", "decode t/s", "KV MiB @ max");
        for (int m = 0; m < n_modes; m++) {
            const mode_result *mr = &res[m];
            int tc = 0, tn = 0;
            int imax = 0;
            for (int i = 0; i < n_len; i++) {
                for (int d = 0; d < n_dep; d++) tc += mr->cells[i][d].correct, tn += mr->cells[i][d].n;
                if (lengths[i] > lengths[imax]) imax = i;
            }
            printf("%-11s %8.2f %12.1f %11.1f %14.2f\n", k_mode_names[mr->mode], tn ? (double)tc / tn : 0.0,
                   mr->prefill_tokens / (mr->prefill_s > 0 ? mr->prefill_s : 1e-9), mr->decode_tokens / (mr->decode_s > 0 ? mr->decode_s : 1e-9),
                   (double)mr->len_kv_bytes[imax] / (1024.0 * 1024.0));
        }
    }
    fflush(stdout);
    if (plot_path) {
        char title[512];
        snprintf(title, sizeof(title), "%s retrieval: %s, %lld sample%s per cell", niah ? "needle-in-a-haystack" : task_names[task], model_base,
                 (long long)samples, samples == 1 ? "" : "s");
        if (write_plot(plot_path, title, res, n_modes, lengths, n_len, depths, n_dep) != 0) goto end;
        if (!quiet) fprintf(stderr, "wrote %s\n", plot_path);
    }
    rc = 0;
end:
    if (jf && fclose(jf) != 0 && rc == 0) {
        cli_error("writing '%s' failed", out_path);
        rc = 1;
    }
    free(res);
    free(gen);
    free(resp);
    lv_batch_free(&batch);
    lv_sampler_free(smp);
    lv_context_free(ctx);
    lv_eval_free(ev);
    lv_head_pattern_free(pattern);
    lv_model_free(model);
    return rc;
}
