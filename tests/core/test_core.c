/*
 * test_core.c: thread pool, error reporting, allocation fault injection, helpers.
 */
#include "core/core.h"
#include "lv_test.h"

#include <stdatomic.h>
#include <string.h>
#include <time.h>

typedef struct tp_job {
    lv_threadpool *tp;
    _Atomic int64_t sum;
    _Atomic int hits[64];
    int64_t phase_ok;
    _Atomic int phase_count[8];
    int slow; /* the last thread sleeps before some barriers, so the others go to sleep in them */
} tp_job;

static void tp_fn(void *arg, int ith, int nth) {
    tp_job *j = arg;
    atomic_fetch_add(&j->sum, ith + 1);
    atomic_fetch_add(&j->hits[ith], 1);
    /* barriers: every thread must see all nth increments of phase p before any enters p + 1 */
    for (int p = 0; p < 8; p++) {
        if (j->slow && ith == nth - 1 && p % 3 == 0) {
            struct timespec ts = {0, 2000000}; /* 2 ms: longer than any spin budget */
            nanosleep(&ts, NULL);
        }
        atomic_fetch_add(&j->phase_count[p], 1);
        lv_threadpool_barrier(j->tp);
        if (atomic_load(&j->phase_count[p]) != nth) j->phase_ok = 0;
        lv_threadpool_barrier(j->tp);
    }
}

TEST(threadpool_runs_every_thread_once_with_barriers) {
    const int sizes[] = {1, 2, 3, 5, 8}; /* 8 oversubscribes a small machine: the sleeping paths */
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        int n = sizes[s];
        lv_threadpool *tp = lv_threadpool_create(n);
        REQUIRE(tp, "create %d: %s", n, lv_last_error());
        CHECK(lv_threadpool_n_threads(tp) == n, "n_threads");
        for (int rep = 0; rep < 200; rep++) {
            tp_job j;
            memset(&j, 0, sizeof(j));
            j.tp = tp;
            j.phase_ok = 1;
            j.slow = rep % 20 == 7;
            lv_threadpool_run(tp, tp_fn, &j);
            CHECK(atomic_load(&j.sum) == (int64_t)n * (n + 1) / 2, "sum with %d threads: %lld", n, (long long)atomic_load(&j.sum));
            for (int i = 0; i < n; i++) CHECK(atomic_load(&j.hits[i]) == 1, "thread %d ran %d times", i, atomic_load(&j.hits[i]));
            CHECK(j.phase_ok, "barrier let a thread through early (%d threads)", n);
            if (lv_test_failures) break;
        }
        lv_threadpool_free(tp);
    }
    lv_threadpool_free(NULL);
    CHECK(lv_threadpool_create(100000) == NULL && strstr(lv_last_error(), "limit"), "absurd thread count refused");
}

static void sleepy(void *arg, int64_t lo, int64_t hi, int ith) {
    _Atomic int64_t *acc = arg;
    for (int64_t i = lo; i < hi; i++) atomic_fetch_add(acc, i);
}

TEST(parallel_for_covers_the_range_once) {
    lv_threadpool *tp = lv_threadpool_create(3);
    REQUIRE(tp, "create");
    for (int64_t n = 0; n < 50; n++) {
        _Atomic int64_t acc = 0;
        lv_parallel_for(tp, n, sleepy, &acc);
        CHECK(atomic_load(&acc) == n * (n - 1) / 2, "n=%lld", (long long)n);
    }
    lv_threadpool_free(tp);
    int64_t lo, hi, covered = 0;
    for (int ith = 0; ith < 7; ith++) {
        lv_split_range(100, ith, 7, &lo, &hi);
        covered += hi - lo;
        CHECK(lo <= hi && hi <= 100, "split range");
    }
    CHECK(covered == 100, "split covers");
}

TEST(errors_and_status_strings) {
    lv_error_clear();
    CHECK(strcmp(lv_last_error(), "") == 0, "cleared");
    CHECK(lv_error(LV_ERR_FORMAT, "bad %s at %d", "thing", 7) == LV_ERR_FORMAT, "returns status");
    CHECK(strcmp(lv_last_error(), "bad thing at 7") == 0, "message: %s", lv_last_error());
    lv_error_prefix("file.gguf");
    CHECK(strcmp(lv_last_error(), "file.gguf: bad thing at 7") == 0, "prefix: %s", lv_last_error());
    for (int s = -8; s <= 0; s++) CHECK(lv_status_str((lv_status)s)[0] != '\0', "status %d has a name", s);
}

/* a message that carries bytes of a file (a key name, a string) is safe to print */
static void capture_log(lv_log_level level, const char *msg, void *user) {
    (void)level;
    snprintf((char *)user, 256, "%s", msg);
}

TEST(error_and_log_messages_escape_what_a_terminal_would_run) {
    /* ESC [ 2 J clears a terminal; 0xff and a lone continuation byte are not UTF-8; a BEL rings;
     * an overlong encoding of '/' and a C1 control (U+009B, CSI) are refused too */
    lv_error(LV_ERR_FORMAT, "key '%s' is bad", "a\x1b[2Jb\xff\x80" "c\x07\xc0\xaf\xc2\x9b");
    CHECK(strcmp(lv_last_error(), "key 'a\\x1b[2Jb\\xff\\x80c\\x07\\xc0\\xaf\\xc2\\x9b' is bad") == 0, "escaped: %s", lv_last_error());
    /* printable UTF-8, newlines and tabs stay as they are */
    lv_error(LV_ERR_FORMAT, "caf\xc3\xa9 \xe2\x96\x81 \xf0\x9f\x98\x80\tline\n2");
    CHECK(strcmp(lv_last_error(), "caf\xc3\xa9 \xe2\x96\x81 \xf0\x9f\x98\x80\tline\n2") == 0, "kept: %s", lv_last_error());
    /* the prefix is escaped too, and a long message is cut, never overflowed */
    lv_error(LV_ERR_FORMAT, "x");
    lv_error_prefix("%s", "\x1b]0;title\x07");
    CHECK(strcmp(lv_last_error(), "\\x1b]0;title\\x07: x") == 0, "prefix: %s", lv_last_error());
    char big[1500];
    memset(big, 0x1b, sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    lv_error(LV_ERR_FORMAT, "%s", big);
    const char *e = lv_last_error();
    CHECK(strlen(e) < 1024 && strlen(e) % 4 == 0 && strncmp(e, "\\x1b\\x1b", 8) == 0, "cut at whole escapes: %zu", strlen(e));
    /* warnings through the log callback */
    char got[256] = "";
    lv_log_set(capture_log, got, LV_LOG_WARN);
    lv_log(LV_LOG_WARN, "tensor '%s'", "w\x1b[0m");
    lv_log_set(NULL, NULL, LV_LOG_WARN);
    CHECK(strcmp(got, "tensor 'w\\x1b[0m'") == 0, "log escaped: %s", got);
    lv_error_clear();
}

TEST(allocation_fault_injection) {
    lv_test_alloc_fail_after(2);
    void *a = lv_malloc(16), *b = lv_calloc(4, 4), *c = lv_malloc(16);
    CHECK(a && b && !c, "third allocation fails");
    CHECK(strstr(lv_last_error(), "out of memory") != NULL, "message: %s", lv_last_error());
    void *d = lv_malloc(1);
    CHECK(!d, "and every later one");
    lv_test_alloc_fail_after(-1);
    void *e = lv_malloc(8);
    CHECK(e != NULL, "disabled again");
    CHECK(lv_calloc(SIZE_MAX / 2, 4) == NULL, "overflowing calloc refused");
    CHECK(lv_mallocn(SIZE_MAX / 2, 4) == NULL, "overflowing mallocn refused");
    lv_free(a);
    lv_free(b);
    lv_free(e);
    void *big = lv_big_alloc(1 << 20);
    CHECK(big && ((char *)big)[12345] == 0, "big allocations are zeroed");
    lv_big_free(big, 1 << 20);
}
