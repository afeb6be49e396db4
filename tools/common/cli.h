/*
 * cli.h: what the `longview` subcommands share: a declarative option parser whose --help is
 * generated from the same table it parses (so the help cannot drift from the code), error
 * reporting, and a progress line on stderr.
 *
 * Tools may print to stdout and exit; the library may not.
 */
#ifndef LV_CLI_H
#define LV_CLI_H

#include "longview.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum cli_opt_kind {
    CLI_STR,   /* const char ** */
    CLI_INT,   /* int64_t *, range [lo, hi] */
    CLI_FLOAT, /* double *, range [flo, fhi] */
    CLI_FLAG,  /* bool * set to true */
    CLI_LIST,  /* cli_list *: repeatable, every occurrence kept in order */
} cli_opt_kind;

#define CLI_LIST_MAX 64
typedef struct cli_list {
    const char *items[CLI_LIST_MAX];
    int n;
} cli_list;

typedef struct cli_opt {
    const char *short_name; /* "-m" or NULL */
    const char *long_name;  /* "--model" or NULL */
    cli_opt_kind kind;
    void *dst;
    const char *metavar;    /* "FILE", "N" ... */
    const char *help;       /* one line; the default is appended by the caller in the text */
    int64_t lo, hi;
    double flo, fhi;
    bool required;
    bool seen;              /* set by the parser */
} cli_opt;

typedef struct cli_command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} cli_command;

/* Parse argv[1..] against opts (terminated by an entry with kind 0 and no names... use n_opts).
 * Positional arguments are rejected unless positional != NULL, which then receives them
 * (up to max_positional). On --help prints usage + options to stdout and returns 1 (caller exits
 * 0). On an error prints it to stderr and returns -1 (caller exits 2). Returns 0 on success. */
int cli_parse(int argc, char **argv, cli_opt *opts, int n_opts, const char *usage, const char *description,
              const char **positional, int max_positional, int *n_positional);

/* Whether option with this long (or short) name was given. */
bool cli_seen(const cli_opt *opts, int n_opts, const char *name);

/* "longview: error: ..." on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Report a failed library call: the status and lv_last_error(). Returns 1. */
int cli_fail(const char *what, lv_status st);

/* A comma-separated list of fractions in [0, 1] (--depths): at most max into out; the count, or -1
 * after cli_error naming flag. */
int cli_parse_fractions(const char *flag, const char *s, double *out, int max);

/* Monotonic seconds (for the timings the commands print). */
double cli_now_s(void);
/* A duration for progress lines: "42s", "3m07s", "1h05m". */
void cli_fmt_duration(double s, char *buf, size_t n);

/* Read a whole file (or "-" for stdin) into a NUL-terminated buffer. NULL + error on failure. */
char *cli_read_file(const char *path, int64_t *len);

/* An output file that appears whole or not at all (output.c): cli_out_open writes to
 * "PATH.tmp-PID" beside PATH, cli_out_commit flushes it to disk and renames it over PATH,
 * cli_out_abort (or a failed commit, or SIGINT / SIGTERM / SIGHUP meanwhile) removes it, so a
 * failed or stopped run leaves whatever was at PATH untouched. PATH "-" is stdout. Both print
 * their errors; open returns NULL, commit -1. */
typedef struct cli_out {
    FILE *f;
    const char *path;
    char *tmp; /* NULL for stdout */
} cli_out;
FILE *cli_out_open(cli_out *o, const char *path, bool binary);
int   cli_out_commit(cli_out *o);
void  cli_out_abort(cli_out *o);

/* Parse "1,2,3" or whitespace-separated ids into a new array. */
lv_token *cli_parse_tokens(const char *s, int32_t *n, const char *what);

/* Tokenize len bytes of text with the model's vocabulary (add_special: BOS/EOS as the vocabulary
 * asks). Returns a malloc'd array and its length, or NULL after printing the error. */
lv_token *cli_tokenize(const lv_model *model, const char *text, int64_t len, bool add_special, int32_t *n);

/* A progress line on stderr, redrawn at most every 100 ms, only when stderr is a terminal
 * (otherwise one line at start and at the end). */
typedef struct cli_progress {
    const char *label;
    double t0, last;
    bool tty;
    bool active;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *label);
void cli_progress_update(cli_progress *p, double fraction, const char *detail);
void cli_progress_done(cli_progress *p, const char *detail);

/* The long-context attention flags shared by run, bench, logits, info: --heads, --sparsity, --sink,
 * --window, --lserve, --kv-budget, --select-every, --layer-plan, --block-size, --local-blocks,
 * --vert-stride. Usage: declare a cli_attention, append its options to a command's table with
 * cli_attention_opts (returns how many it added), parse, then cli_attention_params. */
typedef struct cli_attention {
    const char *heads, *layer_plan;
    double sparsity, select_drift;
    bool select_shared, select_exact;
    int64_t sink, window, kv_budget, select_every, block_size, local_blocks, vert_stride, select_groups;
    bool lserve;
    lv_head_pattern *pattern; /* loaded by cli_attention_params; free with cli_attention_free */
} cli_attention;
#define CLI_ATTENTION_N_OPTS 15
int  cli_attention_opts(cli_attention *a, cli_opt *opts);
/* Fill p from the parsed flags (loading the pattern file). Returns 0, or prints the error and returns -1. */
int  cli_attention_params(cli_attention *a, lv_attention_params *p);
void cli_attention_free(cli_attention *a);

/* The KV cache type flags of run, bench, serve, logits, eval: --kv-type T (keys and values), and
 * llama.cpp's -ctk / --cache-type-k T and -ctv / --cache-type-v T (keys, values; over --kv-type).
 * T: f32, f16, q8_0, q4_0. Declare `cli_kv kvo = {.both = "f16"}` (the command's default), put
 * CLI_KV_OPTS(kvo, "f16") in the option table, then cli_kv_types after parsing. */
typedef struct cli_kv {
    const char *both, *k, *v;
} cli_kv;
#define CLI_KV_OPTS(c, deflt)                                                                                                    \
    {NULL, "--kv-type", CLI_STR, &(c).both, "T", "KV cache type of keys and values: f16, q8_0, q4_0 or f32 (default " deflt ")"},    \
    {"-ctk", "--cache-type-k", CLI_STR, &(c).k, "T", "KV cache type of the keys (llama.cpp's flag; over --kv-type)"},          \
    {"-ctv", "--cache-type-v", CLI_STR, &(c).v, "T", "KV cache type of the values (llama.cpp's flag; over --kv-type)"}
/* The parsed types: 0, or prints the error and returns -1. */
int cli_kv_types(const cli_kv *c, lv_kv_type *k, lv_kv_type *v);
/* Bytes per element of a cache type (q8_0: 34 bytes per 32) */
double cli_kv_elt_bytes(lv_kv_type t);

/* A warning on stderr when n_tokens (what: "-c", "the prompt plus -n", ...) exceed the model's
 * training context: past it a model meets positions it was not trained on (llama.cpp warns too). */
void cli_warn_ctx_train(const lv_model *model, int64_t n_tokens, const char *what);

/* Configure library logging from -v/--verbose counts: 0 warnings, 1 info, 2 debug. */
void cli_set_verbosity(int64_t v);

#endif
