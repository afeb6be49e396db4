/*
 * train_data.h: the synthetic data of `longview train` and `longview identify`: retrieval prompts
 * from the lv_eval builders (passkey, multikey, multivalue, and NIAH with needles drawn at random)
 * followed by their answer, and windows of the haystack essays.
 */
#ifndef LV_TRAIN_DATA_H
#define LV_TRAIN_DATA_H

#include "longview.h"
#include "cli.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct td_rng {
    uint64_t s;
} td_rng;
uint64_t td_mix64(uint64_t z);
uint64_t td_rng_next(td_rng *r);
double td_rng_unit(td_rng *r);

/* the retrieval tasks of training samples */
enum { TD_PASSKEY, TD_MULTIKEY, TD_MULTIVALUE, TD_NIAH, TD_N_TASKS };
extern const char *const td_task_names[TD_N_TASKS];

typedef struct td_data {
    const lv_model *vocab;       /* tokenizer */
    lv_eval *ev[TD_N_TASKS];     /* prompt builders of the tasks in use (NULL: weight 0) */
    double task_w[TD_N_TASKS];   /* relative weights of the tasks among retrieval samples */
    int32_t task_min[TD_N_TASKS]; /* shortest prompt of each task */
    int32_t n_needles;           /* multikey / multivalue: needles per prompt (0: the builder's default, 4) */
    lv_token *hay;         /* the haystack essays, tokenized */
    int64_t n_hay;
    int32_t seq_len, pk_min, pk_max;
    int32_t pos_max; /* > seq_len: PoSE position skips in training samples up to this position (0: off) */
    double pk_frac, answer_weight, lm_weight;
    uint64_t seed;
    bool niah_random;      /* NIAH needles of random essay words instead of the fixed lists */
    bool niah_number;      /* with niah_random: "The special magic number for CITY is KEY." (5-digit key) */
    char *word_buf;        /* niah_random: the essays' distinct lowercase words, NUL-separated */
    const char **words;
    int32_t n_words;
} td_data;

typedef struct td_sample {
    int32_t *tok, *pos, *tgt;
    float *w;
    int64_t T;
    int64_t ans0, ans1; /* positions whose targets are the answer: [ans0, ans1) (empty for LM samples) */
} td_sample;

/* "passkey=0.4,multikey=0.2,niah=0.4" (names of td_task_names, weights >= 0, at least one > 0) into
 * w; 0, or 2 after printing the error */
int td_parse_tasks(const char *spec, double w[TD_N_TASKS]);
/* d->seq_len and d->task_w set (all 0: passkey only): create the builders of the tasks in use over
 * vocab's tokenizer (NIAH reads the essays of haystack_dir), set each task's shortest prompt (at
 * least pk_min and what its format allows) and pk_max. 0, or 1 / 2 (runtime / usage error) after
 * printing it. */
int td_init_tasks(td_data *d, const lv_model *vocab, int32_t pk_min, const char *haystack_dir);
void td_free(td_data *d);
/* $LV_HAYSTACK or ../shared/data/haystack/paul-graham-essays when readable, else NULL */
const char *td_default_haystack(void);
/* tokenize the *.txt files of dir (name order, concatenated); 0, or -1 after printing the error */
int td_load_haystack(td_data *d, const char *dir);
/* a prompt of the task, task_min..pk_max tokens, needle at a random depth, then " ANSWER."; the
 * answer's targets are [ans0, ans1). NIAH needles are "The best thing to do in CITY is ACTIVITY."
 * from fixed lists (San Francisco and its answer are not among them), or with d->niah_random a
 * CITY of 1-2 capitalized and an ACTIVITY of 4-9 lowercase words drawn from the essays' words
 * (nothing to memorize: only copying answers); with d->niah_number too, RULER-style needles
 * "The special magic number for CITY is KEY." with the prompt's 5-digit key. 0, or -1 after printing the error. */
int td_make_retrieval(const td_data *d, int task, td_rng *r, td_sample *s);
/* td_make_retrieval with the task drawn by the weights */
int td_draw_retrieval(const td_data *d, td_rng *r, td_sample *s);
/* sample b of step `step` (eval: held-out, always a retrieval task, plain positions): a function of (seed,
 * step, b) only. With pos_max, a training sample's positions jump once: a random split point c and a
 * skip u in [0, pos_max - T] give pos[i] = i + (i >= c ? u : 0) (PoSE, arXiv 2309.10400), so relative
 * distances up to pos_max are seen on sequences of seq_len tokens. */
int td_make_sample(const td_data *d, int64_t step, int b, bool eval, td_sample *s);

/* The vocabulary of a --vocab argument (a vocabulary GGUF, a tokenizer.json, builtin:bytes or
 * builtin:bytes-vision) as a vocabulary-only model, read through a temporary file. Returns 0, or -1
 * after printing the error. */
int td_load_vocab(const char *vocab, lv_model **out);

/* The optimizer, schedule and bookkeeping flags `train` and `train-video` share: their values, the
 * option table's entries (td_schedule_opts fills TD_SCHEDULE_N_OPTS of them, defaults set), and
 * the defaults that depend on other flags (td_schedule_finish, after parsing). */
typedef struct td_schedule {
    int64_t steps, warmup, threads, seed, save_every, stop_at, eval_every, eval_samples, log_every;
    double lr, min_lr, wd, clip, beta1, beta2;
    const char *log_path;
} td_schedule;
enum { TD_SCHEDULE_N_OPTS = 16 };
void td_schedule_opts(td_schedule *s, cli_opt *o);
void td_schedule_finish(td_schedule *s);

#endif
