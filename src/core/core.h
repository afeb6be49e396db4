/*
 * core.h: what every library file shares: error reporting, logging, checked allocation (with a
 * fault-injection hook for tests), always-on assertions, small helpers and the thread pool.
 *
 * The module src/core/ (docs/architecture.md):
 *   Owns:  errors and logging, checked allocation with fault injection, big lazily committed
 *          mappings, time, the thread pool.
 *   Never: knows about files, models or tensors.
 *
 * Two failure classes are kept apart (docs/architecture.md):
 *  - bad input (a hostile file, an invalid token id) -> return an lv_status and set the message
 *    with lv_error(); never assert.
 *  - a broken internal invariant (a bug) -> LV_ASSERT, always on, aborts with file and line.
 */
#ifndef LV_CORE_H
#define LV_CORE_H

#include "longview.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__) || defined(__clang__)
#define LV_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define LV_LIKELY(x)    __builtin_expect(!!(x), 1)
#define LV_UNLIKELY(x)  __builtin_expect(!!(x), 0)
#define LV_NORETURN     __attribute__((noreturn))
#else
#define LV_PRINTF(a, b)
#define LV_LIKELY(x)   (x)
#define LV_UNLIKELY(x) (x)
#define LV_NORETURN
#endif

#define LV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LV_MAX(a, b) ((a) > (b) ? (a) : (b))
#define LV_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define LV_CACHE_LINE 64
#define LV_PI 3.14159265358979323846

/* ---- errors ---- */

/* Record the detailed message of a failure for lv_last_error() and return st, so that
 * `return lv_error(LV_ERR_FORMAT, "%s: ...", __func__, ...)` reads naturally. */
lv_status lv_error(lv_status st, const char *fmt, ...) LV_PRINTF(2, 3);
/* Prefix the current thread's error message with more context ("loading x.gguf: ..."). */
void lv_error_prefix(const char *fmt, ...) LV_PRINTF(1, 2);
void lv_error_clear(void);

/* ---- logging ---- */

void lv_log(lv_log_level level, const char *fmt, ...) LV_PRINTF(2, 3);
#define LV_LOG_W(...) lv_log(LV_LOG_WARN, __VA_ARGS__)
#define LV_LOG_I(...) lv_log(LV_LOG_INFO, __VA_ARGS__)
#define LV_LOG_D(...) lv_log(LV_LOG_DEBUG, __VA_ARGS__)

/* ---- invariants ---- */

LV_NORETURN void lv_abort(const char *file, int line, const char *fmt, ...) LV_PRINTF(3, 4);
#define LV_ASSERT(x) \
    do { if (LV_UNLIKELY(!(x))) lv_abort(__FILE__, __LINE__, "assertion failed: %s", #x); } while (0)

/* ---- allocation ----
 * Every library allocation goes through these. They return NULL on failure (never abort) and
 * record LV_ERR_NOMEM with lv_error(). lv_calloc and lv_mallocn check n*size for overflow.
 * Tests use lv_test_alloc_fail_after() to make the N-th allocation from now fail. */
void *lv_malloc(size_t size);
void *lv_calloc(size_t n, size_t size);
void *lv_mallocn(size_t n, size_t size);
void *lv_realloc(void *p, size_t size);
void *lv_aligned_alloc(size_t align, size_t size); /* zero-filled, freed with lv_aligned_free */
void  lv_free(void *p);
void  lv_aligned_free(void *p);
char *lv_strdup(const char *s);
/* Finish a file written under a temporary name: flush and close *f (NULL afterwards, also on
 * failure), then rename tmp to path. LV_ERR_IO naming the file on any failure; the caller removes
 * tmp. */
lv_status lv_file_commit(FILE **f, const char *tmp, const char *path);
/* Large zero-filled allocations (KV pools): anonymous mappings, committed lazily by the OS, so a
 * capacity that is never used costs no memory. Freed with lv_big_free(p, size). */
void *lv_big_alloc(size_t size);
/* lv_big_alloc asking for transparent huge pages (Linux madvise; ignored elsewhere or when the
 * system says never): for buffers that are used whole, such as the repacked weights, which a
 * decode step streams from end to end (a 4 KiB page is a TLB miss every 64 lines). */
void *lv_big_alloc_huge(size_t size);
void  lv_big_free(void *p, size_t size);
/* n < 0 disables injection; n == 0 fails the next allocation. */
void  lv_test_alloc_fail_after(int64_t n);

/* Overflow-checked arithmetic on sizes: return false if the result does not fit. */
static inline int lv_mul_ovf_i64(int64_t a, int64_t b, int64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline int lv_add_ovf_i64(int64_t a, int64_t b, int64_t *out) {
    return __builtin_add_overflow(a, b, out);
}

/* ---- time ---- */
double lv_time_s(void); /* monotonic seconds */
double lv_cpu_time_s(void); /* CPU seconds of the whole process (every thread), user + system */

/* ---- a deterministic generator for random weights and tests (splitmix64, Box-Muller) ---- */
typedef struct lv_rng {
    uint64_t s;
    bool has_spare;
    float spare;
} lv_rng;
uint64_t lv_rng_u64(lv_rng *r);
double   lv_rng_unit(lv_rng *r);   /* uniform in (0, 1) */
float    lv_rng_normal(lv_rng *r); /* N(0, 1) */
uint64_t lv_hash_str(uint64_t h, const char *s); /* FNV-1a step over a string */

/* ---- thread pool internals (threadpool.c) ----
 * lv_threadpool_run executes fn(arg, ith, nth) on nth = n_threads threads (the caller is
 * ith 0) and returns when all have returned. Calls from different threads are serialized.
 * Inside fn, lv_threadpool_barrier() waits for all nth threads of the job. */
typedef void (*lv_task_fn)(void *arg, int ith, int nth);
void lv_threadpool_run(lv_threadpool *tp, lv_task_fn fn, void *arg);
void lv_threadpool_barrier(lv_threadpool *tp);

/* Run fn(arg, lo, hi) over [0, n) split in contiguous ranges, one per thread. */
typedef void (*lv_range_fn)(void *arg, int64_t lo, int64_t hi, int ith);
void lv_parallel_for(lv_threadpool *tp, int64_t n, lv_range_fn fn, void *arg);

/* ---- the shared thread budget (budget.c; docs/video-questions.md) ----
 * n CPU tokens shared by a pool (it takes all n before a job, keeps them across jobs, gives them
 * back at a job boundary when an urgent helper waits, or when its caller is about to block) and
 * helper threads (one token each, taken before each slice of work, kept while the pool does not
 * want it or while the helper is urgent, given back before blocking on anything else). Together
 * they never hold more than n. stop: a helper waiting for a token returns false once it is set
 * (set it, then lv_budget_kick); urgent: the helper's stage starves the next (a kick announces a
 * change). */
typedef struct lv_budget lv_budget;
typedef struct lv_budget_stats {
    int n_tokens, held, max_held;
    int64_t n_pool_yields, n_pool_takes, n_worker_takes;
    double held_s, wall_s; /* tokens held integrated over time; seconds since the budget was made */
} lv_budget_stats;
lv_budget *lv_budget_create(int n_tokens);
void lv_budget_free(lv_budget *b);
int  lv_budget_n_tokens(const lv_budget *b);
void lv_budget_pool_enter(lv_budget *b);
void lv_budget_pool_leave(lv_budget *b);
bool lv_budget_worker_enter(lv_budget *b, bool *holding, const _Atomic bool *urgent, const _Atomic bool *stop);
void lv_budget_worker_leave(lv_budget *b, bool *holding);
void lv_budget_kick(lv_budget *b);
/* Seconds the pool's caller has waited in lv_budget_pool_enter (read it on that thread). */
double lv_budget_pool_wait_s(const lv_budget *b);
void lv_budget_get_stats(lv_budget *b, lv_budget_stats *s);
/* Attach a budget to a pool (NULL detaches): every lv_threadpool_run / lv_parallel_for on it
 * then enters the budget first. Attach and detach while no job runs. */
void lv_threadpool_set_budget(lv_threadpool *tp, lv_budget *b);

/* Split n items among nth threads: thread ith gets [*lo, *hi). */
static inline void lv_split_range(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi) {
    int64_t per = (n + nth - 1) / nth;
    int64_t a = per * ith;
    int64_t b = a + per;
    if (a > n) a = n;
    if (b > n) b = n;
    *lo = a;
    *hi = b;
}

#endif /* LV_CORE_H */
