/*
 * train_data.c: synthetic training data (train_data.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "train_data.h"

#include "cli.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint64_t td_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t td_rng_next(td_rng *r) { return td_mix64(r->s += 0x9e3779b97f4a7c15ull); }
double td_rng_unit(td_rng *r) { return (double)(td_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

/* ---------------------------------------------------------------------------------------------
 * data
 * ------------------------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* the *.txt files of dir in name order, concatenated, tokenized (no BOS) */
int td_load_haystack(td_data *d, const char *dir) {
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
int td_make_passkey(const td_data *d, td_rng *r, td_sample *s) {
    const int32_t n = d->pk_min + (int32_t)(td_rng_next(r) % (uint64_t)(d->pk_max - d->pk_min + 1));
    const double depth = td_rng_unit(r);
    const uint64_t key_seed = td_rng_next(r) & 0xffffffffull;
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

static void make_lm(const td_data *d, td_rng *r, td_sample *s) {
    const int64_t T = d->seq_len;
    const int64_t off = (int64_t)(td_rng_next(r) % (uint64_t)(d->n_hay - T));
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
int td_make_sample(const td_data *d, int64_t step, int b, bool eval, td_sample *s) {
    td_rng r = {td_mix64(d->seed ^ td_mix64((uint64_t)step * 1000003ull + (uint64_t)b + (eval ? 0x8000000000000000ull : 0)))};
    if (eval || !d->hay || td_rng_unit(&r) < d->pk_frac) {
        if (td_make_passkey(d, &r, s) != 0) return -1;
    } else {
        make_lm(d, &r, s);
    }
    if (!eval && d->pos_max > s->T && s->T > 1) {
        const int64_t c = 1 + (int64_t)(td_rng_next(&r) % (uint64_t)(s->T - 1));
        const int64_t u = (int64_t)(td_rng_next(&r) % (uint64_t)(d->pos_max - s->T + 1));
        for (int64_t i = c; i < s->T; i++) s->pos[i] = (int32_t)(i + u);
    }
    return 0;
}

int td_init_passkey(td_data *d, const lv_model *vocab, int32_t pk_min) {
    d->vocab = vocab;
    lv_eval_params ep = lv_eval_default_params();
    ep.task = LV_EVAL_PASSKEY;
    lv_status st = lv_eval_create(vocab, &ep, &d->ev);
    if (st != LV_OK) return cli_fail("creating the passkey builder", st), 1;
    /* the shortest prompt the format allows: the smallest length that builds */
    lv_eval_prompt *p = NULL;
    int32_t lo = 1, hi = d->seq_len;
    while (lo < hi) {
        const int32_t mid = lo + (hi - lo) / 2;
        if (lv_eval_build(d->ev, mid, 0.5, 0, &p) == LV_OK) {
            lv_eval_prompt_free(p);
            p = NULL;
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    if (lv_eval_build(d->ev, lo, 0.5, 0, &p) != LV_OK) {
        cli_error("--seq-len %d is too short for a passkey prompt (%s)", d->seq_len, lv_last_error());
        return 2;
    }
    lv_eval_prompt_free(p);
    d->pk_max = d->seq_len - 16; /* room for the answer */
    d->pk_min = pk_min > lo ? pk_min : lo;
    if (d->pk_max < d->pk_min) {
        cli_error("--seq-len %d leaves no room for a passkey prompt (at least %d tokens plus the answer)", d->seq_len, d->pk_min);
        return 2;
    }
    return 0;
}

const char *td_default_haystack(void) {
    static const char *const cand[] = {"../shared/data/haystack/paul-graham-essays", "../../shared/data/haystack/paul-graham-essays"};
    const char *env = getenv("LV_HAYSTACK");
    if (env && *env) return env;
    for (size_t i = 0; i < sizeof(cand) / sizeof(cand[0]); i++)
        if (access(cand[i], R_OK) == 0) return cand[i];
    return NULL;
}

