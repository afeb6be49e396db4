/* prepack_ab: packed prefill against one prompt per step, through the library (no server, no HTTP),
 * the direct reproduction of bench/serve/RESULTS.md (a) that bench/NOTES.md reports.
 *
 *   make bench-prepack
 *   build/release/prepack_ab MODEL.gguf [-n 64] [--lengths 8:32] [-t 2] [-r 3] [-b 0,64,128,256,512]
 *
 * N prompts of random length in [A, B] (random token ids, fixed seed) are prefilled into N sequences
 * of a fresh context, in steps of at most BUDGET tokens, whole prompts packed first-fit in order
 * (BUDGET 0: one prompt per step, the --no-pack reference); only each prompt's last token asks for
 * logits, as the server does. For every budget, repeated -r times with the budgets alternating, it
 * prints the steps, the wall time and the process's CPU time (user + system, all threads): on a
 * machine shared with other work the CPU time per token is the comparison to read, the wall time
 * moves with the neighbours' load. */
#define _POSIX_C_SOURCE 200809L
#include "longview.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double wall_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double cpu_s(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)r.ru_utime.tv_sec + (double)r.ru_utime.tv_usec * 1e-6 + (double)r.ru_stime.tv_sec + (double)r.ru_stime.tv_usec * 1e-6;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33);
}

static void usage(void) {
    fprintf(stderr, "usage: prepack_ab MODEL.gguf [-n PROMPTS (64)] [--lengths A:B (8:32)] [-t THREADS (2)] [-r REPS (3)] "
                    "[-b BUDGET[,BUDGET...] (0,64,128,256,512; 0 = one prompt per step)]\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage();
        return 2;
    }
    const char *path = argv[1];
    int n = 64, lo = 8, hi = 32, threads = 2, reps = 3, n_budgets = 0, budgets[32];
    const char *blist = "0,64,128,256,512";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 2;
        }
        if (!strcmp(a, "-n")) n = atoi(v);
        else if (!strcmp(a, "--lengths")) {
            if (sscanf(v, "%d:%d", &lo, &hi) != 2) lo = hi = 0;
        } else if (!strcmp(a, "-t")) threads = atoi(v);
        else if (!strcmp(a, "-r")) reps = atoi(v);
        else if (!strcmp(a, "-b")) blist = v;
        else {
            usage();
            return 2;
        }
        i++;
    }
    for (const char *p = blist; *p && n_budgets < 32;) {
        budgets[n_budgets++] = atoi(p);
        p = strchr(p, ',');
        if (!p) break;
        p++;
    }
    if (n < 1 || n > 4096 || lo < 1 || hi < lo || hi > 512 || reps < 1 || threads < 1) {
        usage();
        return 2;
    }
    for (int k = 0; k < n_budgets; k++)
        if (budgets[k] < 0 || (budgets[k] > 0 && budgets[k] < hi) || budgets[k] > 4096) {
            fprintf(stderr, "prepack_ab: a budget must be 0 or between the longest prompt (%d) and 4096\n", hi);
            return 2;
        }

    lv_model *m = NULL;
    if (lv_model_load(path, lv_model_default_params(), &m) != LV_OK) {
        fprintf(stderr, "prepack_ab: %s\n", lv_last_error());
        return 1;
    }
    int *len = calloc((size_t)n, sizeof(int));
    int total = 0;
    for (int i = 0; i < n; i++) total += len[i] = lo + (int)(next_u32() % (uint32_t)(hi - lo + 1));
    lv_context_params cp = lv_context_default_params();
    cp.n_ctx = (uint32_t)(total + 64 * n);
    cp.n_batch = cp.n_ubatch = 4096;
    cp.n_seq_max = (uint32_t)n;
    cp.n_threads = threads;
    lv_context *ctx = NULL;
    if (lv_context_create(m, cp, &ctx) != LV_OK) {
        fprintf(stderr, "prepack_ab: %s\n", lv_last_error());
        return 1;
    }
    const int n_vocab = lv_model_n_vocab(m);
    lv_token *tok = calloc((size_t)total, sizeof(lv_token));
    for (int i = 0; i < total; i++) tok[i] = (lv_token)(1 + next_u32() % (uint32_t)(n_vocab - 1));
    lv_batch b = lv_batch_init(4096);
    printf("# %s: %d prompts of %d-%d tokens (%d in all), %d threads; budget 0 = one prompt per step\n", path, n, lo, hi, total, threads);
    printf("| budget | steps | wall s | tokens / s | CPU s | tokens / CPU s |\n|---:|---:|---:|---:|---:|---:|\n");
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < n_budgets; k++) {
            const int budget = budgets[k];
            lv_kv_seq_rm(ctx, -1, 0, -1);
            const double t0 = wall_s(), c0 = cpu_s();
            int steps = 0, s = 0, off = 0;
            while (s < n) {
                b.n_tokens = 0;
                while (s < n && (b.n_tokens == 0 || (budget > 0 && b.n_tokens + len[s] <= budget))) {
                    for (int j = 0; j < len[s]; j++) {
                        const int t = b.n_tokens++;
                        b.token[t] = tok[off + j];
                        b.pos[t] = j;
                        b.seq_id[t] = s;
                        b.logits[t] = j == len[s] - 1;
                    }
                    off += len[s++];
                }
                if (lv_decode(ctx, &b) != LV_OK) {
                    fprintf(stderr, "prepack_ab: %s\n", lv_last_error());
                    return 1;
                }
                steps++;
            }
            const double dw = wall_s() - t0, dc = cpu_s() - c0;
            printf("| %d | %d | %.3f | %.1f | %.3f | %.1f |\n", budget, steps, dw, total / dw, dc, total / dc);
            fflush(stdout);
        }
    lv_batch_free(&b);
    free(tok);
    free(len);
    lv_context_free(ctx);
    lv_model_free(m);
    return 0;
}
