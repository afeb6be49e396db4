/*
 * test_main.c: runs the registered tests. Usage: lv_test [--list] [NAME|PREFIX ...]
 * Prints one line per test and a closing "N passed, N failed, N skipped" line; exits 1 on failure.
 */
#define _GNU_SOURCE
#include "lv_test.h"
#include "longview.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int lv_test_failures;
int lv_test_skipped;
int lv_test_checks;

typedef struct {
    const char *name;
    void (*fn)(void);
} test_entry;

static test_entry g_tests[1024];
static int g_n_tests;
static const char *g_current;

void lv_test_register(const char *name, void (*fn)(void)) {
    if (g_n_tests >= (int)(sizeof(g_tests) / sizeof(g_tests[0]))) {
        fprintf(stderr, "lv_test: too many tests\n");
        abort();
    }
    g_tests[g_n_tests].name = name;
    g_tests[g_n_tests].fn = fn;
    g_n_tests++;
}

void lv_test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    if (lv_test_failures < 20) {
        fprintf(stderr, "  FAIL %s (%s:%d): ", g_current, file, line);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    } else if (lv_test_failures == 20) {
        fprintf(stderr, "  ... further failures of %s not shown\n", g_current);
    }
    lv_test_failures++;
}

void lv_test_skip(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "  skip %s: ", g_current);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    lv_test_skipped = 1;
}

/* ---- helpers ---- */

const char *lv_test_shared_data(void) {
    static char path[4096];
    static int done;
    if (!done) {
        done = 1;
        const char *env = getenv("LV_SHARED_DATA");
        const char *cand[] = {env, "../shared/data", "../../shared/data"};
        for (size_t i = 0; i < sizeof(cand) / sizeof(cand[0]); i++) {
            struct stat st;
            if (cand[i] && stat(cand[i], &st) == 0 && S_ISDIR(st.st_mode)) {
                snprintf(path, sizeof(path), "%s", cand[i]);
                break;
            }
        }
    }
    return path[0] ? path : NULL;
}

const char *lv_test_tmpdir(void) {
    static char path[4096];
    if (!path[0]) {
        const char *env = getenv("LV_TEST_TMPDIR");
        snprintf(path, sizeof(path), "%s", env ? env : "build/tmp");
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "mkdir -p '%s'", path);
        if (system(tmp) != 0) fprintf(stderr, "lv_test: cannot create %s\n", path);
    }
    return path;
}

static uint64_t g_seed;

uint64_t lv_test_seed(void) { return g_seed; }

uint64_t lv_test_rng_u64(lv_test_rng *r) {
    /* splitmix64 */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double lv_test_rng_unit(lv_test_rng *r) { return (double)(lv_test_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

float lv_test_rng_f32(lv_test_rng *r) { return (float)(lv_test_rng_unit(r) * 2.0 - 1.0); }

void lv_test_transpose(const void *src, void *dst, int64_t rows, int64_t cols, size_t elt) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t c = 0; c < cols; c++) memcpy((char *)dst + (size_t)(c * rows + i) * elt, (const char *)src + (size_t)(i * cols + c) * elt, elt);
}

int lv_test_quick(void) { return getenv("LV_TEST_QUICK") != NULL; }

static int matches(const char *name, int argc, char **argv) {
    int any = 0;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') continue;
        any = 1;
        if (strncmp(name, argv[i], strlen(argv[i])) == 0) return 1;
    }
    return !any;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            for (int t = 0; t < g_n_tests; t++) printf("%s\n", g_tests[t].name);
            return 0;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: lv_test [--list] [NAME|PREFIX ...]\n"
                   "env: LV_TEST_SEED=N (reproduce), LV_TEST_QUICK=1 (smaller cases),\n"
                   "     LV_SHARED_DATA=DIR (default ../shared/data), LV_TEST_TMPDIR=DIR\n");
            return 0;
        }
    }
    const char *seed_env = getenv("LV_TEST_SEED");
    g_seed = seed_env ? strtoull(seed_env, NULL, 0) : ((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    printf("lv_test: seed %llu (set LV_TEST_SEED to reproduce)\n", (unsigned long long)g_seed);

    int passed = 0, failed = 0, skipped = 0;
    for (int t = 0; t < g_n_tests; t++) {
        if (!matches(g_tests[t].name, argc, argv)) continue;
        g_current = g_tests[t].name;
        lv_test_failures = 0;
        lv_test_skipped = 0;
        lv_test_checks = 0;
        double t0 = (double)clock() / CLOCKS_PER_SEC;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        g_tests[t].fn();
        clock_gettime(CLOCK_MONOTONIC, &b);
        (void)t0;
        double dt = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
        if (lv_test_failures == 0 && lv_test_skipped) {
            printf("skip %s\n", g_current);
            skipped++;
        } else if (lv_test_failures == 0 && lv_test_checks == 0) {
            printf("FAIL %s: it evaluated no check\n", g_current);
            failed++;
        } else if (lv_test_failures == 0) {
            printf("ok   %s (%d checks, %.2f s)\n", g_current, lv_test_checks, dt);
            passed++;
        } else {
            printf("FAIL %s (%d of %d checks failed)\n", g_current, lv_test_failures, lv_test_checks);
            failed++;
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
