/*
 * cli.c: option parsing, errors and progress for the `longview` tool (see cli.h).
 */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void cli_error(const char *fmt, ...) {
    va_list ap;
    fputs("longview: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_fail(const char *what, lv_status st) {
    const char *msg = lv_last_error();
    if (msg && msg[0])
        cli_error("%s: %s", what, msg);
    else
        cli_error("%s: %s", what, lv_status_str(st));
    return 1;
}

static bool opt_matches(const cli_opt *o, const char *arg, const char **inline_val) {
    *inline_val = NULL;
    if (o->short_name && strcmp(arg, o->short_name) == 0) return true;
    if (o->long_name) {
        size_t n = strlen(o->long_name);
        if (strncmp(arg, o->long_name, n) == 0) {
            if (arg[n] == '\0') return true;
            if (arg[n] == '=' && o->kind != CLI_FLAG) {
                *inline_val = arg + n + 1;
                return true;
            }
        }
    }
    return false;
}

static const char *opt_display(const cli_opt *o) { return o->long_name ? o->long_name : o->short_name; }

static void print_help(const cli_opt *opts, int n_opts, const char *usage, const char *description) {
    printf("usage: %s\n", usage);
    if (description) printf("\n%s\n", description);
    printf("\noptions:\n");
    for (int i = 0; i < n_opts; i++) {
        const cli_opt *o = &opts[i];
        char left[96];
        snprintf(left, sizeof(left), "%s%s%s%s%s", o->short_name ? o->short_name : "", o->short_name && o->long_name ? ", " : "",
                 o->long_name ? o->long_name : "", o->metavar ? " " : "", o->metavar ? o->metavar : "");
        printf("  %-30s %s%s\n", left, o->help, o->required ? " (required)" : "");
    }
    printf("  %-30s %s\n", "-h, --help", "show this help and exit");
}

int cli_parse(int argc, char **argv, cli_opt *opts, int n_opts, const char *usage, const char *description,
              const char **positional, int max_positional, int *n_positional) {
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            print_help(opts, n_opts, usage, description);
            return 1;
        }
        if (a[0] != '-' || strcmp(a, "-") == 0) {
            if (!positional || npos >= max_positional) {
                cli_error("unexpected argument '%s' (see --help)", a);
                return -1;
            }
            positional[npos++] = a;
            continue;
        }
        cli_opt *o = NULL;
        const char *val = NULL;
        for (int k = 0; k < n_opts; k++) {
            if (opt_matches(&opts[k], a, &val)) {
                o = &opts[k];
                break;
            }
        }
        if (!o) {
            cli_error("unknown option '%s' (see --help)", a);
            return -1;
        }
        o->seen = true;
        if (o->kind == CLI_FLAG) {
            *(bool *)o->dst = true;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc) {
                cli_error("option %s needs a value (%s)", a, o->metavar ? o->metavar : "value");
                return -1;
            }
            val = argv[++i];
        }
        switch (o->kind) {
        case CLI_STR: *(const char **)o->dst = val; break;
        case CLI_LIST: {
            cli_list *l = o->dst;
            if (l->n == CLI_LIST_MAX) {
                cli_error("%s: at most %d of them", opt_display(o), CLI_LIST_MAX);
                return -1;
            }
            l->items[l->n++] = val;
            break;
        }
        case CLI_INT: {
            char *end;
            errno = 0;
            long long v = strtoll(val, &end, 0);
            if (errno || end == val || *end || v < o->lo || v > o->hi) {
                cli_error("%s: '%s' is not an integer in [%lld, %lld]", opt_display(o), val, (long long)o->lo, (long long)o->hi);
                return -1;
            }
            *(int64_t *)o->dst = v;
            break;
        }
        case CLI_FLOAT: {
            char *end;
            errno = 0;
            double v = strtod(val, &end);
            if (errno || end == val || *end || !isfinite(v) || v < o->flo || v > o->fhi) {
                cli_error("%s: '%s' is not a number in [%g, %g]", opt_display(o), val, o->flo, o->fhi);
                return -1;
            }
            *(double *)o->dst = v;
            break;
        }
        default: break;
        }
    }
    for (int k = 0; k < n_opts; k++) {
        if (opts[k].required && !opts[k].seen) {
            cli_error("option %s is required (see --help)", opt_display(&opts[k]));
            return -1;
        }
    }
    if (n_positional) *n_positional = npos;
    return 0;
}

bool cli_seen(const cli_opt *opts, int n_opts, const char *name) {
    for (int k = 0; k < n_opts; k++) {
        if ((opts[k].long_name && strcmp(opts[k].long_name, name) == 0) ||
            (opts[k].short_name && strcmp(opts[k].short_name, name) == 0))
            return opts[k].seen;
    }
    return false;
}

char *cli_read_file(const char *path, int64_t *len) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        cli_error("cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int err = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf || err) {
        cli_error("cannot read '%s'", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (len) *len = (int64_t)n;
    return buf;
}

lv_token *cli_parse_tokens(const char *s, int32_t *n, const char *what) {
    size_t cap = 64;
    int32_t cnt = 0;
    lv_token *out = malloc(cap * sizeof(lv_token));
    const char *p = s;
    while (out) {
        while (*p == ',' || *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX) {
            cli_error("%s: '%.20s' is not a token id", what, p);
            free(out);
            return NULL;
        }
        if ((size_t)cnt == cap) {
            lv_token *no = realloc(out, 2 * cap * sizeof(lv_token));
            if (!no) {
                free(out);
                out = NULL;
                break;
            }
            out = no;
            cap *= 2;
        }
        out[cnt++] = (lv_token)v;
        p = end;
    }
    if (!out) {
        cli_error("out of memory");
        return NULL;
    }
    *n = cnt;
    return out;
}

lv_token *cli_tokenize(const lv_model *model, const char *text, int64_t len, bool add_special, int32_t *n) {
    int32_t need = lv_tokenize(model, text, len, NULL, 0, add_special, false);
    if (need == INT32_MIN) {
        cli_fail("tokenizing", LV_ERR_UNSUPPORTED);
        return NULL;
    }
    need = need < 0 ? -need : need;
    lv_token *toks = malloc(((size_t)need + 1) * sizeof(lv_token));
    if (!toks || lv_tokenize(model, text, len, toks, need, add_special, false) != need) {
        cli_error("tokenizing failed");
        free(toks);
        return NULL;
    }
    *n = need;
    return toks;
}

void cli_fmt_duration(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e8) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

double cli_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_progress_start(cli_progress *p, const char *label) {
    p->label = label;
    p->t0 = p->last = cli_now_s();
    p->tty = isatty(STDERR_FILENO);
    p->active = true;
    if (!p->tty) fprintf(stderr, "%s ...\n", label);
}

void cli_progress_update(cli_progress *p, double fraction, const char *detail) {
    if (!p->active || !p->tty) return;
    double t = cli_now_s();
    if (t - p->last < 0.1 && fraction < 1.0) return;
    p->last = t;
    double el = t - p->t0;
    double eta = fraction > 0.001 ? el * (1.0 - fraction) / fraction : 0.0;
    int width = 30, fill = (int)(fraction * width + 0.5);
    if (fill > width) fill = width;
    if (fill < 0) fill = 0;
    fprintf(stderr, "\r%s [%.*s%*s] %5.1f%% %6.1fs ETA %5.1fs %s\033[K", p->label, fill, "##############################",
            width - fill, "", 100.0 * fraction, el, eta, detail ? detail : "");
    fflush(stderr);
}

void cli_progress_done(cli_progress *p, const char *detail) {
    if (!p->active) return;
    double el = cli_now_s() - p->t0;
    if (p->tty) fprintf(stderr, "\r\033[K");
    fprintf(stderr, "%s: done in %.2f s%s%s\n", p->label, el, detail ? ", " : "", detail ? detail : "");
    p->active = false;
}

void cli_warn_ctx_train(const lv_model *model, int64_t n_tokens, const char *what) {
    const int64_t train = lv_model_n_ctx_train(model);
    if (train > 0 && n_tokens > train)
        fprintf(stderr,
                "longview: warning: %s (%lld tokens) exceeds the model's training context (%lld): past it the model sees positions "
                "it was not trained on\n",
                what, (long long)n_tokens, (long long)train);
}

void cli_set_verbosity(int64_t v) {
    lv_log_set(NULL, NULL, v >= 2 ? LV_LOG_DEBUG : v == 1 ? LV_LOG_INFO : LV_LOG_WARN);
}

int cli_attention_opts(cli_attention *a, cli_opt *o) {
    const lv_attention_params d = lv_attention_default_params();
    memset(a, 0, sizeof(*a));
    a->sparsity = d.sparsity;
    a->sink = d.sink;
    a->window = d.window;
    a->kv_budget = d.kv_budget;
    a->select_every = d.select_every;
    a->select_drift = d.select_drift;
    a->block_size = d.block_size;
    a->local_blocks = d.local_blocks;
    a->vert_stride = d.vert_stride;
    const cli_opt opts[CLI_ATTENTION_N_OPTS] = {
        {NULL, "--heads", CLI_STR, &a->heads, "FILE.tsv", "DuoAttention pattern (full_attention_heads.tsv): streaming heads keep sink + window"},
        {NULL, "--sparsity", CLI_FLOAT, &a->sparsity, "S", "fraction of KV heads made streaming, global quantile (default 0.5)", .flo = 0, .fhi = 1},
        {NULL, "--sink", CLI_INT, &a->sink, "N", "sink tokens of streaming heads / sink+window layers (default 64)", .lo = 0, .hi = 1 << 20},
        {NULL, "--window", CLI_INT, &a->window, "N", "recent tokens of streaming heads / sink+window layers (default 256)", .lo = 1, .hi = 1 << 30},
        {NULL, "--lserve", CLI_FLAG, &a->lserve, NULL, "LServe: retrieval heads read only selected KV pages at decode"},
        {NULL, "--kv-budget", CLI_INT, &a->kv_budget, "N", "tokens of selected pages per query head (default 4096)", .lo = 1, .hi = 1 << 30},
        {NULL, "--select-every", CLI_INT, &a->select_every, "N", "recompute the selection every N decode steps (default 4)", .lo = 1, .hi = 1 << 20},
        {NULL, "--select-drift", CLI_FLOAT, &a->select_drift, "C",
         "... and sooner when a query's cosine with the selecting query falls below C (default 0.5; 0: only every N)", .flo = 0, .fhi = 1},
        {NULL, "--select-shared", CLI_FLAG, &a->select_shared, NULL,
         "one selection per KV head for its query heads (max of their scores; not LServe's per-head rule)"},
        {NULL, "--select-groups", CLI_INT, &a->select_groups, "N",
         "two-level selection: score groups of N pages first, then only the pages of each head's best groups (default 0: every page)", .lo = 0, .hi = 4096},
        {NULL, "--select-exact", CLI_FLAG, &a->select_exact, NULL,
         "with --select-groups: expand groups by their bound until no unscored page can be chosen (exhaustive selection's pages exactly)"},
        {NULL, "--layer-plan", CLI_STR, &a->layer_plan, "PLAN", "LongGen layers: longgen (full iff l%3==1, else sink+window) or full|sw|bs per layer, comma separated"},
        {NULL, "--block-size", CLI_INT, &a->block_size, "N", "block-strided layers: block size (default 64)", .lo = 1, .hi = 1 << 20},
        {NULL, "--local-blocks", CLI_INT, &a->local_blocks, "N", "block-strided layers: local blocks (default 16)", .lo = 1, .hi = 1 << 20},
        {NULL, "--vert-stride", CLI_INT, &a->vert_stride, "N", "block-strided layers: vertical stride (default 8)", .lo = 1, .hi = 1 << 20},
    };
    memcpy(o, opts, sizeof(opts));
    return CLI_ATTENTION_N_OPTS;
}

int cli_attention_params(cli_attention *a, lv_attention_params *p) {
    *p = lv_attention_default_params();
    if (a->heads) {
        lv_status st = lv_head_pattern_load(a->heads, &a->pattern);
        if (st != LV_OK) {
            cli_fail("--heads", st);
            return -1;
        }
        p->heads = a->pattern;
    }
    p->sparsity = (float)a->sparsity;
    p->sink = (int32_t)a->sink;
    p->window = (int32_t)a->window;
    p->select = a->lserve;
    p->kv_budget = (int32_t)a->kv_budget;
    p->select_every = (int32_t)a->select_every;
    p->select_drift = (float)a->select_drift;
    p->select_shared = a->select_shared;
    p->select_groups = (int32_t)a->select_groups;
    p->select_groups_exact = a->select_exact;
    p->layer_plan = a->layer_plan;
    p->block_size = (int32_t)a->block_size;
    p->local_blocks = (int32_t)a->local_blocks;
    p->vert_stride = (int32_t)a->vert_stride;
    return 0;
}

void cli_attention_free(cli_attention *a) {
    lv_head_pattern_free(a->pattern);
    a->pattern = NULL;
}

int cli_kv_types(const cli_kv *c, lv_kv_type *k, lv_kv_type *v) {
    const char *names[3] = {c->both, c->k ? c->k : c->both, c->v ? c->v : c->both};
    const char *flags[3] = {"--kv-type", "--cache-type-k", "--cache-type-v"};
    lv_kv_type t[3];
    for (int i = 0; i < 3; i++)
        if (!lv_kv_type_from_name(names[i], &t[i])) {
            cli_error("%s: '%s' is not a KV cache type (f32, f16, q8_0, q4_0)", i == 0 || (i == 1 && c->k) || (i == 2 && c->v) ? flags[i] : flags[0],
                      names[i]);
            return -1;
        }
    *k = t[1];
    *v = t[2];
    return 0;
}

double cli_kv_elt_bytes(lv_kv_type t) {
    switch (t) {
    case LV_KV_F32: return 4;
    case LV_KV_Q8_0: return 34.0 / 32.0;
    case LV_KV_Q4_0: return 18.0 / 32.0;
    default: return 2;
    }
}

int cli_parse_fractions(const char *flag, const char *s, double *out, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !(v >= 0 && v <= 1) || n == max) {
            cli_error("%s: '%s' is not a list of fractions in [0, 1] (at most %d)", flag, s, max);
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
