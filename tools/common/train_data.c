/*
 * train_data.c: synthetic training data (train_data.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "train_data.h"

#include "cli.h"

#include <dirent.h>
#include <errno.h>
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

/* the *.txt files of dir in name order, concatenated ('\n' after each); NULL after printing the error */
static char *read_dir_text(const char *dir, int64_t *out_len) {
    DIR *dp = opendir(dir);
    if (!dp) {
        cli_error("--haystack: cannot open directory '%s'", dir);
        return NULL;
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
        return NULL;
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
    if (rc != 0) {
        free(text);
        return NULL;
    }
    *out_len = len;
    return text;
}

/* the *.txt files of dir in name order, concatenated, tokenized (no BOS) */
int td_load_haystack(td_data *d, const char *dir) {
    int64_t len = 0;
    char *text = read_dir_text(dir, &len);
    if (!text) return -1;
    int rc = 0;
    int32_t nt = 0;
    d->hay = cli_tokenize(d->vocab, text, len, false, &nt);
    d->n_hay = nt;
    if (!d->hay) rc = -1;
    else if (d->n_hay < d->seq_len + 1) {
        cli_error("--haystack: %lld tokens, fewer than --seq-len + 1", (long long)d->n_hay);
        rc = -1;
    }
    free(text);
    return rc;
}

static bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
static bool is_letter(char c) { return is_lower((char)(c | 0x20)); }

/* the distinct words of 3-10 lowercase ASCII letters in the essays (bounded by other characters),
 * sorted: the vocabulary of random NIAH needles */
static int load_words(td_data *d, const char *dir) {
    int64_t len = 0;
    char *text = read_dir_text(dir, &len);
    if (!text) return -1;
    /* words in place: NUL-terminate each kept word, collect pointers, sort, dedupe */
    const char **w = NULL;
    int64_t n = 0, cap = 0;
    for (int64_t i = 0; i < len;) {
        if (!is_lower(text[i]) || (i > 0 && is_letter(text[i - 1]))) { /* not a word's start */
            i++;
            continue;
        }
        int64_t j = i;
        while (j < len && is_lower(text[j])) j++;
        /* a whole word (not followed by a capital) of 3-10 letters; text[j] exists to end it */
        if (j < len && !is_letter(text[j]) && j - i >= 3 && j - i <= 10) {
            if (n == cap) {
                cap = cap ? 2 * cap : 4096;
                const char **nw = realloc(w, (size_t)cap * sizeof(*w));
                if (!nw) {
                    free(w);
                    free(text);
                    cli_error("out of memory collecting the essays' words");
                    return -1;
                }
                w = nw;
            }
            text[j] = 0;
            w[n++] = text + i;
        }
        i = j + 1;
    }
    qsort(w, (size_t)n, sizeof(*w), cmp_str);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (m == 0 || strcmp(w[m - 1], w[i]) != 0) w[m++] = w[i];
    if (m < 100) {
        cli_error("--haystack '%s': %lld distinct words, too few for random NIAH needles", dir, (long long)m);
        free(w);
        free(text);
        return -1;
    }
    d->word_buf = text;
    d->words = w;
    d->n_words = (int32_t)m;
    return 0;
}

const char *const td_task_names[TD_N_TASKS] = {"passkey", "multikey", "multivalue", "niah"};

/* NIAH training needles: "The best thing to do in CITY is ACTIVITY." (the evaluation's San
 * Francisco needle and its answer are not among them) */
static const char *const k_cities[] = {"Oslo", "Lisbon", "Kyoto", "Nairobi", "Lima", "Toronto", "Hanoi", "Prague", "Dublin", "Cairo",
                                       "Seoul", "Denver", "Havana", "Vienna", "Sydney", "Reykjavik", "Mumbai", "Boston", "Tallinn", "Quito",
                                       "Marrakesh", "Helsinki", "Austin", "Porto", "Jakarta", "Bergen", "Montreal", "Naples", "Santiago", "Zurich"};
static const char *const k_activities[] = {
    "swim in the harbor at dawn",     "ride a bicycle along the river", "climb the old clock tower",      "buy bread at the night market",
    "watch the boats from the pier",  "walk through the botanical garden", "drink tea in a quiet courtyard", "visit the museum of maps",
    "listen to jazz in a cellar bar", "take the ferry to the islands",  "hike up the hill behind the port", "read a book in the public library",
    "eat dumplings by the canal",     "paint the sunset from the bridge", "row a small boat on the lake",   "dance in the main square",
    "sing with the street musicians", "fly a kite on the beach",        "play chess in the park",         "count the pigeons at the station",
};

/* A prompt of the task (the eval builders') followed by " ANSWER." with the answer tokens weighted. */
int td_make_retrieval(const td_data *d, int task, td_rng *r, td_sample *s) {
    const int32_t lo = d->task_min[task];
    const int32_t n = lo + (int32_t)(td_rng_next(r) % (uint64_t)(d->pk_max - lo + 1));
    const double depth = td_rng_unit(r);
    const uint64_t key_seed = td_rng_next(r) & 0xffffffffull;
    if (task == TD_NIAH) {
        const char *city = k_cities[td_rng_next(r) % (sizeof(k_cities) / sizeof(k_cities[0]))];
        const char *act = k_activities[td_rng_next(r) % (sizeof(k_activities) / sizeof(k_activities[0]))];
        char rcity[32], ract[128];
        if (d->niah_random) { /* 1-2 capitalized words, then 4-9 words: at most 2 x 11 and 9 x 11 bytes */
            const int nc = 1 + (int)(td_rng_next(r) % 2), na = 4 + (int)(td_rng_next(r) % 6);
            size_t o = 0;
            for (int k = 0; k < nc; k++) {
                const char *wd = d->words[td_rng_next(r) % (uint64_t)d->n_words];
                o += (size_t)snprintf(rcity + o, sizeof(rcity) - o, "%s%c%s", k ? " " : "", wd[0] - 'a' + 'A', wd + 1);
            }
            o = 0;
            for (int k = 0; k < na; k++)
                o += (size_t)snprintf(ract + o, sizeof(ract) - o, "%s%s", k ? " " : "", d->words[td_rng_next(r) % (uint64_t)d->n_words]);
            city = rcity;
            act = ract;
        }
        char needle[256], question[128], prefix[128];
        if (d->niah_number) { /* the builder puts the prompt's key for {key} */
            snprintf(needle, sizeof(needle), "\nThe special magic number for %s is {key}.\n", city);
            snprintf(question, sizeof(question), "What is the special magic number for %s?", city);
            snprintf(prefix, sizeof(prefix), "The special magic number for %s is", city);
            act = "{key}";
        } else {
            snprintf(needle, sizeof(needle), "\nThe best thing to do in %s is %s.\n", city, act);
            snprintf(question, sizeof(question), "What is the best thing to do in %s?", city);
            snprintf(prefix, sizeof(prefix), "The best thing to do in %s is", city);
        }
        lv_status st = lv_eval_set_needle(d->ev[TD_NIAH], needle, act, question, prefix);
        if (st != LV_OK) return cli_fail("setting a NIAH needle", st), -1;
    }
    lv_eval_prompt *p = NULL;
    lv_status st = lv_eval_build(d->ev[task], n, depth, key_seed, &p);
    if (st != LV_OK) return cli_fail("building a training prompt", st), -1;
    const size_t tl = strlen(p->text), al = strlen(p->answer_text);
    char *full = malloc(tl + al + 3);
    if (!full) {
        lv_eval_prompt_free(p);
        cli_error("out of memory");
        return -1;
    }
    memcpy(full, p->text, tl);
    full[tl] = ' ';
    memcpy(full + tl + 1, p->answer_text, al);
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
        cli_error("a %s sample of %d tokens does not fit --seq-len %d", td_task_names[task], nt, d->seq_len);
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

int td_draw_retrieval(const td_data *d, td_rng *r, td_sample *s) {
    double total = 0;
    int last = TD_PASSKEY, used = 0;
    for (int t = 0; t < TD_N_TASKS; t++)
        if (d->task_w[t] > 0) total += d->task_w[t], last = t, used++;
    int task = last;
    if (used > 1) { /* one task: no draw, so the samples stay those of passkey-only runs */
        double u = td_rng_unit(r) * total;
        for (int t = 0; t < TD_N_TASKS; t++)
            if (d->task_w[t] > 0) {
                if (u < d->task_w[t]) {
                    task = t;
                    break;
                }
                u -= d->task_w[t];
            }
    }
    return td_make_retrieval(d, task, r, s);
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
        if (td_draw_retrieval(d, &r, s) != 0) return -1;
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

int td_parse_tasks(const char *spec, double w[TD_N_TASKS]) {
    for (int t = 0; t < TD_N_TASKS; t++) w[t] = 0;
    const char *p = spec;
    double total = 0;
    while (*p) {
        const char *eq = strchr(p, '=');
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        if (!eq || eq > end) {
            cli_error("--tasks: '%.*s' is not NAME=WEIGHT (names: passkey, multikey, multivalue, niah)", (int)(end - p), p);
            return 2;
        }
        int t = -1;
        for (int k = 0; k < TD_N_TASKS; k++)
            if ((size_t)(eq - p) == strlen(td_task_names[k]) && strncmp(p, td_task_names[k], (size_t)(eq - p)) == 0) t = k;
        char *e = NULL;
        const double v = strtod(eq + 1, &e);
        if (t < 0 || e != end || !(v >= 0 && v <= 1e6)) {
            cli_error("--tasks: '%.*s': unknown task or bad weight (names: passkey, multikey, multivalue, niah; weights >= 0)", (int)(end - p), p);
            return 2;
        }
        w[t] = v;
        total += v;
        p = *end ? end + 1 : end;
    }
    if (!(total > 0)) {
        cli_error("--tasks '%s': no task has a positive weight", spec);
        return 2;
    }
    return 0;
}

int td_init_tasks(td_data *d, const lv_model *vocab, int32_t pk_min, const char *haystack_dir) {
    d->vocab = vocab;
    if (d->niah_random && d->task_w[TD_NIAH] > 0 && haystack_dir && load_words(d, haystack_dir) != 0) return 1;
    bool any = false;
    for (int t = 0; t < TD_N_TASKS; t++) any |= d->task_w[t] > 0;
    if (!any) d->task_w[TD_PASSKEY] = 1;
    if (d->task_w[TD_NIAH] > 0 && !haystack_dir) {
        cli_error("NIAH training samples need the haystack essays: --haystack DIR");
        return 2;
    }
    /* room for the answer: a key and '.' (16), the keys of multivalue, or an activity (64; up to
     * 99 bytes for random ones) */
    int32_t room = 16;
    if (d->task_w[TD_NIAH] > 0) room = d->niah_random ? 112 : 64;
    const int32_t mv_room = 16 + 8 * (d->n_needles ? d->n_needles : 4) + 32;
    if (d->task_w[TD_MULTIVALUE] > 0 && room < mv_room) room = mv_room;
    d->pk_max = d->seq_len - room;
    if (d->pk_max < 1) {
        cli_error("--seq-len %d is too short for a retrieval prompt", d->seq_len);
        return 2;
    }
    for (int t = 0; t < TD_N_TASKS; t++) {
        if (!(d->task_w[t] > 0)) continue;
        lv_eval_params ep = lv_eval_default_params();
        ep.task = t == TD_PASSKEY ? LV_EVAL_PASSKEY : t == TD_MULTIKEY ? LV_EVAL_MULTIKEY : t == TD_MULTIVALUE ? LV_EVAL_MULTIVALUE : LV_EVAL_NIAH;
        if (t == TD_NIAH) ep.haystack_dir = haystack_dir;
        if (t == TD_MULTIKEY || t == TD_MULTIVALUE) ep.n_needles = d->n_needles;
        lv_status st = lv_eval_create(vocab, &ep, &d->ev[t]);
        if (st != LV_OK) {
            char what[64];
            snprintf(what, sizeof(what), "creating the %s prompt builder", td_task_names[t]);
            return cli_fail(what, st), 1;
        }
        /* the shortest prompt the format allows: the smallest length that builds */
        lv_eval_prompt *p = NULL;
        int32_t lo = 1, hi = d->pk_max;
        while (lo < hi) {
            const int32_t mid = lo + (hi - lo) / 2;
            if (lv_eval_build(d->ev[t], mid, 0.5, 0, &p) == LV_OK) {
                lv_eval_prompt_free(p);
                p = NULL;
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        if (lv_eval_build(d->ev[t], lo, 0.5, 0, &p) != LV_OK) {
            cli_error("--seq-len %d is too short for a %s prompt (%s)", d->seq_len, td_task_names[t], lv_last_error());
            return 2;
        }
        lv_eval_prompt_free(p);
        /* that was seed 0's prompt; other seeds' needles and questions can be longer (multikey's
         * order word, NIAH's city and activity): leave them room */
        if (t != TD_PASSKEY) lo += d->niah_random && t == TD_NIAH ? 96 : 64; /* random: city x 3 and activity up to 69 bytes more than seed 0's */
        d->task_min[t] = pk_min > lo ? pk_min : lo;
        if (d->pk_max < d->task_min[t]) {
            cli_error("--seq-len %d leaves no room for a %s prompt (at least %d tokens plus the answer)", d->seq_len, td_task_names[t],
                      d->task_min[t]);
            return 2;
        }
    }
    d->pk_min = d->task_min[TD_PASSKEY];
    for (int t = 0; t < TD_N_TASKS; t++)
        if (d->task_w[t] > 0 && (d->pk_min == 0 || d->task_min[t] < d->pk_min)) d->pk_min = d->task_min[t];
    return 0;
}

void td_free(td_data *d) {
    free(d->words);
    free(d->word_buf);
    d->words = NULL;
    d->word_buf = NULL;
    for (int t = 0; t < TD_N_TASKS; t++) {
        lv_eval_free(d->ev[t]);
        d->ev[t] = NULL;
    }
}

const char *td_default_haystack(void) {
    static const char *const cand[] = {"../shared/data/haystack/paul-graham-essays", "../../shared/data/haystack/paul-graham-essays"};
    const char *env = getenv("LV_HAYSTACK");
    if (env && *env) return env;
    for (size_t i = 0; i < sizeof(cand) / sizeof(cand[0]); i++)
        if (access(cand[i], R_OK) == 0) return cand[i];
    return NULL;
}

/* The vocabulary of the --vocab argument (a vocabulary GGUF, a tokenizer.json or builtin:bytes) as
 * a vocabulary-only model: gen-model writes its tokenizer keys into a one-layer model in the
 * temporary directory (never at the output path), read into memory, then removed. Returns 0, or
 * -1 after printing the error. */
int td_load_vocab(const char *vocab, lv_model **out) {
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/longview-vocab-XXXXXX", dir && dir[0] ? dir : "/tmp");
    const int fd = mkstemp(path);
    if (fd < 0) {
        cli_error("reading the vocabulary: cannot create a temporary file in %s: %s", dir && dir[0] ? dir : "/tmp", strerror(errno));
        return -1;
    }
    close(fd);
    lv_genmodel_params gp = lv_genmodel_default_params();
    gp.arch = "llama";
    gp.n_embd = 8, gp.n_layer = 1, gp.n_head = 1, gp.n_head_kv = 1, gp.n_ff = 8;
    gp.vocab_path = vocab;
    lv_status s = lv_genmodel_write(&gp, path);
    if (s == LV_OK) {
        lv_model_params mp = lv_model_default_params();
        mp.vocab_only = true;
        mp.use_mmap = false;
        s = lv_model_load(path, mp, out);
    }
    unlink(path);
    return s == LV_OK ? 0 : (cli_fail("reading the vocabulary", s), -1);
}

void td_schedule_opts(td_schedule *s, cli_opt *o) {
    *s = (td_schedule){.steps = 200, .warmup = -1, .seed = 1, .eval_samples = 32, .log_every = 10,
                       .lr = 1e-3, .min_lr = -1, .wd = 0.1, .clip = 1.0, .beta1 = 0.9, .beta2 = 0.95};
    const cli_opt opts[TD_SCHEDULE_N_OPTS] = {
        {NULL, "--steps", CLI_INT, &s->steps, "N", "optimizer steps (default 200)", .lo = 1, .hi = INT32_MAX},
        {NULL, "--lr", CLI_FLOAT, &s->lr, "F", "peak learning rate (default 1e-3)", .flo = 0, .fhi = 10},
        {NULL, "--min-lr", CLI_FLOAT, &s->min_lr, "F", "learning rate at the end of the cosine decay (default lr / 10)", .flo = 0, .fhi = 10},
        {NULL, "--warmup", CLI_INT, &s->warmup, "N", "linear warmup steps (default steps / 20)", .lo = 0, .hi = INT32_MAX},
        {NULL, "--wd", CLI_FLOAT, &s->wd, "F", "AdamW weight decay on matrices (default 0.1)", .flo = 0, .fhi = 10},
        {NULL, "--beta1", CLI_FLOAT, &s->beta1, "F", "AdamW beta1 (default 0.9)", .flo = 0, .fhi = 0.999999},
        {NULL, "--beta2", CLI_FLOAT, &s->beta2, "F", "AdamW beta2 (default 0.95)", .flo = 0, .fhi = 0.999999},
        {NULL, "--clip", CLI_FLOAT, &s->clip, "F", "clip the gradient norm (each model's own) to F (0: off; default 1)", .flo = 0, .fhi = 1e9},
        {NULL, "--seed", CLI_INT, &s->seed, "N", "seed of the initial weights and of the data (default 1)", .lo = 0, .hi = INT64_MAX},
        {"-t", "--threads", CLI_INT, &s->threads, "N", "threads (default: all cores)", .lo = 1, .hi = 1024},
        {NULL, "--save-every", CLI_INT, &s->save_every, "N", "write the checkpoint files (OUT.ckpt ...) every N steps (default: none)", .lo = 1, .hi = INT32_MAX},
        {NULL, "--stop-at", CLI_INT, &s->stop_at, "N", "stop after step N with checkpoint files, as if interrupted", .lo = 1, .hi = INT32_MAX},
        {NULL, "--eval-every", CLI_INT, &s->eval_every, "N", "every N steps (and at the end) measure held-out accuracy", .lo = 1, .hi = INT32_MAX},
        {NULL, "--eval-samples", CLI_INT, &s->eval_samples, "N", "held-out samples per evaluation (default 32)", .lo = 1, .hi = 100000},
        {NULL, "--log", CLI_STR, &s->log_path, "FILE", "append one tab-separated line per step (columns: docs/train.md)"},
        {NULL, "--log-every", CLI_INT, &s->log_every, "N", "when stderr is not a terminal, a progress line every N steps (default 10)", .lo = 1, .hi = INT32_MAX},
    };
    memcpy(o, opts, sizeof(opts));
}

void td_schedule_finish(td_schedule *s) {
    if (s->warmup < 0) s->warmup = s->steps / 20;
    if (s->min_lr < 0) s->min_lr = s->lr / 10;
    if (s->stop_at && s->stop_at >= s->steps) s->stop_at = 0;
}
