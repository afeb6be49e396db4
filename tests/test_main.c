/*
 * test_main.c: runs the registered tests. Usage: lv_test [-j N] [--list] [NAME|PREFIX ...]
 * Prints one line per test and a closing "N passed, N failed, N skipped" line; exits 1 on failure.
 *
 * -j N (or LV_TEST_JOBS=N) runs the tests in N worker processes that take them one at a time from
 * a shared counter. A worker keeps what its tests cache (a model loaded once per file), writes
 * into its own temporary directory, and captures each test's output, which the parent prints
 * whole with the test's line as it finishes (so the lines of tests running at once never mix). A
 * worker that dies in a test (a crash, an abort) fails that test and is replaced; one whose exit
 * reports a failure (LeakSanitizer) fails the run.
 */
#define _GNU_SOURCE
#include "lv_test.h"
#include "longview.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int lv_test_failures;
int lv_test_skipped;
int lv_test_checks;

typedef struct {
    const char *name;
    void (*fn)(void);
    void (*fn_arg)(const void *);
    const void *arg;
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

void lv_test_register_arg(const char *name, void (*fn)(const void *arg), const void *arg) {
    lv_test_register(name, NULL);
    g_tests[g_n_tests - 1].fn_arg = fn;
    g_tests[g_n_tests - 1].arg = arg;
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

static int g_worker = -1; /* -j: this process's worker number */

const char *lv_test_tmpdir(void) {
    static char path[4096];
    if (!path[0]) {
        const char *env = getenv("LV_TEST_TMPDIR");
        if (g_worker >= 0) snprintf(path, sizeof(path), "%s/w%d", env ? env : "build/tmp", g_worker);
        else snprintf(path, sizeof(path), "%s", env ? env : "build/tmp");
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

/* ---- running ---- */

enum { TR_OK, TR_FAIL, TR_SKIP, TR_NOCHECK };

/* Run test t; returns its result and fills *checks, *failures, *dt. */
static int run_test(int t, int *checks, int *failures, double *dt) {
    g_current = g_tests[t].name;
    lv_test_failures = 0;
    lv_test_skipped = 0;
    lv_test_checks = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (g_tests[t].fn) g_tests[t].fn();
    else g_tests[t].fn_arg(g_tests[t].arg);
    clock_gettime(CLOCK_MONOTONIC, &b);
    *dt = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
    *checks = lv_test_checks;
    *failures = lv_test_failures;
    if (lv_test_failures == 0 && lv_test_skipped) return TR_SKIP;
    if (lv_test_failures == 0 && lv_test_checks == 0) return TR_NOCHECK;
    return lv_test_failures == 0 ? TR_OK : TR_FAIL;
}

static void print_result(const char *name, int r, int checks, int failures, double dt) {
    switch (r) {
    case TR_SKIP: printf("skip %s\n", name); break;
    case TR_NOCHECK: printf("FAIL %s: it evaluated no check\n", name); break;
    case TR_OK: printf("ok   %s (%d checks, %.2f s)\n", name, checks, dt); break;
    default: printf("FAIL %s (%d of %d checks failed)\n", name, failures, checks); break;
    }
    fflush(stdout);
}

/* -j: the state the workers share with the parent */
typedef struct {
    atomic_int state; /* 0 waiting, 1 running, 2 done */
    int worker, result, checks, failures;
    double dt;
} job_slot;
typedef struct {
    atomic_int next;
    int n;
    job_slot slot[];
} job_table;

static void log_path(char *buf, size_t n, const char *dir, int i) { snprintf(buf, n, "%s/test-%d.log", dir, i); }

/* a worker: take tests from the shared counter until none is left; each test's stdout and stderr
 * go to its log file; its index goes to the parent through the pipe when it is done */
static void worker(job_table *jt, const int *sel, int w, const char *logdir, int pipe_w) {
    g_worker = w;
    const int out = dup(STDOUT_FILENO), err = dup(STDERR_FILENO);
    for (int i; (i = atomic_fetch_add(&jt->next, 1)) < jt->n;) {
        job_slot *js = &jt->slot[i];
        js->worker = w;
        atomic_store(&js->state, 1);
        char path[4200];
        log_path(path, sizeof(path), logdir, i);
        const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        fflush(stdout);
        fflush(stderr);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        js->result = run_test(sel[i], &js->checks, &js->failures, &js->dt);
        fflush(stdout);
        fflush(stderr);
        dup2(out, STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        atomic_store(&js->state, 2);
        if (write(pipe_w, &i, sizeof(i)) != (ssize_t)sizeof(i)) break;
    }
    close(pipe_w);
    exit(0); /* a normal exit: destructors and LeakSanitizer run, and report through the status */
}

static void print_log(const char *logdir, int i) {
    char path[4200];
    log_path(path, sizeof(path), logdir, i);
    FILE *f = fopen(path, "rb");
    if (f) {
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0) fwrite(buf, 1, n, stdout);
        fclose(f);
    }
    remove(path);
}

static int run_parallel(const int *sel, int n_sel, int jobs, int *passed, int *failed, int *skipped) {
    job_table *jt = mmap(NULL, sizeof(job_table) + (size_t)n_sel * sizeof(job_slot), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (jt == MAP_FAILED) return -1;
    atomic_init(&jt->next, 0);
    jt->n = n_sel;
    for (int i = 0; i < n_sel; i++) atomic_init(&jt->slot[i].state, 0);
    char logdir[4096];
    const char *env = getenv("LV_TEST_TMPDIR");
    snprintf(logdir, sizeof(logdir), "%s/logs-%ld", env ? env : "build/tmp", (long)getpid());
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", logdir);
    if (system(cmd) != 0) return -1;
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t *pids = calloc((size_t)jobs, sizeof(pid_t));
    fflush(stdout);
    fflush(stderr);
    for (int w = 0; w < jobs; w++) {
        pids[w] = fork();
        if (pids[w] == 0) {
            close(fds[0]);
            worker(jt, sel, w, logdir, fds[1]);
        }
    }
    int done = 0, alive = jobs, next_w = jobs, bad_exit = 0;
    while (alive > 0) {
        /* the results in the pipe first (a worker writes its last one before it exits) */
        struct pollfd pf = {.fd = fds[0], .events = POLLIN};
        if (poll(&pf, 1, 100) > 0 && (pf.revents & POLLIN)) {
            int i;
            if (read(fds[0], &i, sizeof(i)) == (ssize_t)sizeof(i) && i >= 0 && i < n_sel) {
                job_slot *js = &jt->slot[i];
                print_log(logdir, i);
                print_result(g_tests[sel[i]].name, js->result, js->checks, js->failures, js->dt);
                *passed += js->result == TR_OK;
                *failed += js->result == TR_FAIL || js->result == TR_NOCHECK;
                *skipped += js->result == TR_SKIP;
                done++;
            }
            continue;
        }
        int status;
        const pid_t p = waitpid(-1, &status, WNOHANG);
        if (p <= 0) continue;
        int w = -1;
        for (int k = 0; k < jobs; k++)
            if (pids[k] == p) w = k;
        if (w < 0) continue;
        pids[w] = 0;
        alive--;
        if (!WIFSIGNALED(status) && WEXITSTATUS(status) == 0) continue;
        /* a test the worker was running when it died (its finished ones were read above: the
         * pipe is empty when poll times out) */
        for (int k = 0; k < n_sel; k++) {
            job_slot *js = &jt->slot[k];
            if (js->worker != w || atomic_load(&js->state) != 1) continue;
            print_log(logdir, k);
            if (WIFSIGNALED(status))
                printf("FAIL %s (its process died: signal %d, %s)\n", g_tests[sel[k]].name, WTERMSIG(status), strsignal(WTERMSIG(status)));
            else
                printf("FAIL %s (its process exited with status %d)\n", g_tests[sel[k]].name, WEXITSTATUS(status));
            fflush(stdout);
            atomic_store(&js->state, 2);
            (*failed)++;
            done++;
            w = -2; /* the death is accounted to this test */
        }
        if (w != -2) { /* it died after its last test: a leak report or a destructor */
            printf("lv_test: a worker ended with %s %d after its tests (see above)\n", WIFSIGNALED(status) ? "signal" : "status",
                   WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            bad_exit = 1;
        }
        if (atomic_load(&jt->next) < n_sel) { /* tests remain: a new worker takes its place */
            fflush(stdout);
            const pid_t np = fork();
            if (np == 0) {
                close(fds[0]);
                worker(jt, sel, next_w, logdir, fds[1]);
            }
            for (int k = 0; k < jobs && np > 0; k++)
                if (pids[k] == 0) {
                    pids[k] = np;
                    alive++;
                    break;
                }
            next_w++;
        }
    }
    close(fds[0]);
    free(pids);
    rmdir(logdir);
    munmap(jt, sizeof(job_table) + (size_t)n_sel * sizeof(job_slot));
    if (done < n_sel) {
        printf("lv_test: %d tests did not run\n", n_sel - done);
        *failed += n_sel - done;
    }
    return bad_exit;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines in order with the library's warnings on stderr */
    int jobs = getenv("LV_TEST_JOBS") ? atoi(getenv("LV_TEST_JOBS")) : 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            for (int t = 0; t < g_n_tests; t++) printf("%s\n", g_tests[t].name);
            return 0;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: lv_test [-j N] [--list] [NAME|PREFIX ...]\n"
                   "  -j N  run the tests in N processes (default 1, or LV_TEST_JOBS)\n"
                   "env: LV_TEST_SEED=N (reproduce), LV_TEST_QUICK=1 (smaller cases),\n"
                   "     LV_SHARED_DATA=DIR (default ../shared/data), LV_TEST_TMPDIR=DIR\n");
            return 0;
        }
        if (strncmp(argv[i], "-j", 2) == 0) {
            const char *v = argv[i][2] ? argv[i] + 2 : i + 1 < argc ? argv[++i] : "1";
            jobs = atoi(v);
            argv[i] = "-"; /* not a name */
        }
    }
    if (jobs < 1) jobs = 1;
    if (jobs > 64) jobs = 64;
    const char *seed_env = getenv("LV_TEST_SEED");
    g_seed = seed_env ? strtoull(seed_env, NULL, 0) : ((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    printf("lv_test: seed %llu (set LV_TEST_SEED to reproduce)%s\n", (unsigned long long)g_seed, jobs > 1 ? "" : "");

    int *sel = calloc((size_t)g_n_tests + 1, sizeof(int)), n_sel = 0;
    for (int t = 0; t < g_n_tests; t++)
        if (matches(g_tests[t].name, argc, argv)) sel[n_sel++] = t;
    int passed = 0, failed = 0, skipped = 0, bad_exit = 0;
    if (jobs > 1 && n_sel > 1) {
        printf("lv_test: %d tests in %d processes\n", n_sel, jobs);
        bad_exit = run_parallel(sel, n_sel, jobs < n_sel ? jobs : n_sel, &passed, &failed, &skipped);
        if (bad_exit < 0) {
            fprintf(stderr, "lv_test: cannot start the worker processes\n");
            return 1;
        }
    } else {
        for (int i = 0; i < n_sel; i++) {
            int checks, failures;
            double dt;
            const int r = run_test(sel[i], &checks, &failures, &dt);
            print_result(g_tests[sel[i]].name, r, checks, failures, dt);
            passed += r == TR_OK;
            failed += r == TR_FAIL || r == TR_NOCHECK;
            skipped += r == TR_SKIP;
        }
    }
    free(sel);
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed || bad_exit ? 1 : 0;
}

char *lv_test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!buf) {
        fclose(f);
        return NULL;
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = 0;
    if (len) *len = got;
    return buf;
}
