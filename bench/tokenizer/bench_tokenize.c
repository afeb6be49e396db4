/*
 * bench_tokenize.c: time lv_tokenize on a text file (the same measurement lv_oracle's `bench`
 * makes with llama_tokenize). Built and run by bench/tokenizer/run.sh.
 *   bench_tokenize VOCAB.gguf FILE REPS
 */
#define _POSIX_C_SOURCE 200809L
#include "longview.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: bench_tokenize VOCAB.gguf FILE REPS\n");
        return 2;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) return 1;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)len);
    if (fread(text, 1, (size_t)len, f) != (size_t)len) return 1;
    fclose(f);
    lv_model_params mp = lv_model_default_params();
    mp.vocab_only = true;
    lv_model *m = NULL;
    if (lv_model_load(argv[1], mp, &m) != LV_OK) {
        fprintf(stderr, "%s\n", lv_last_error());
        return 1;
    }
    int reps = atoi(argv[3]);
    double *t = malloc(sizeof(double) * (size_t)reps);
    int32_t cap = (int32_t)len + 16, n = 0;
    lv_token *ids = malloc(sizeof(lv_token) * (size_t)cap);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        n = lv_tokenize(m, text, len, ids, cap, false, false);
        t[r] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_d);
    printf("longview  tokenize: %ld bytes -> %d tokens, best %.4f s, median %.4f s over %d reps\n", len, n, t[0],
           t[reps / 2], reps);
    lv_model_free(m);
    return 0;
}
