/*
 * core.c: status strings, per-thread error messages, the log callback, checked allocation
 * with fault injection, monotonic time.
 */
#define _GNU_SOURCE
#include "core/core.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* -------------------------------------------------------------------------------------------
 * status and errors
 * ----------------------------------------------------------------------------------------- */

const char *lv_status_str(lv_status st) {
    switch (st) {
    case LV_OK:               return "ok";
    case LV_ERR_INVALID_ARG:  return "invalid argument";
    case LV_ERR_IO:           return "i/o error";
    case LV_ERR_FORMAT:       return "malformed file";
    case LV_ERR_UNSUPPORTED:  return "unsupported";
    case LV_ERR_NOMEM:        return "out of memory";
    case LV_ERR_CONTEXT_FULL: return "context full";
    case LV_ERR_ABORTED:      return "aborted";
    case LV_ERR_INTERNAL:     return "internal error";
    }
    return "unknown status";
}

#define LV_ERR_MSG_MAX 1024
static _Thread_local char tl_err[LV_ERR_MSG_MAX];

const char *lv_last_error(void) { return tl_err; }

void lv_error_clear(void) { tl_err[0] = '\0'; }

lv_status lv_error(lv_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_err, sizeof(tl_err), fmt, ap);
    va_end(ap);
    lv_log(LV_LOG_DEBUG, "error (%s): %s", lv_status_str(st), tl_err);
    return st;
}

void lv_error_prefix(const char *fmt, ...) {
    char prefix[512];
    char old[LV_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, tl_err, sizeof(old));
    snprintf(tl_err, sizeof(tl_err), "%s: %s", prefix, old);
}

/* -------------------------------------------------------------------------------------------
 * logging
 * ----------------------------------------------------------------------------------------- */

static void log_default(lv_log_level level, const char *msg, void *user) {
    (void)user;
    static const char *names[] = {"debug", "info", "warning", "error"};
    fprintf(stderr, "longview %s: %s\n", names[level], msg);
}

static lv_log_fn g_log_fn = log_default;
static void *g_log_user;
static lv_log_level g_log_min = LV_LOG_WARN;

void lv_log_set(lv_log_fn fn, void *user, lv_log_level min_level) {
    g_log_fn = fn ? fn : log_default;
    g_log_user = fn ? user : NULL;
    g_log_min = min_level;
}

void lv_log(lv_log_level level, const char *fmt, ...) {
    if (level < g_log_min) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    g_log_fn(level, msg, g_log_user);
}

void lv_abort(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "longview: fatal internal error at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* -------------------------------------------------------------------------------------------
 * allocation
 * ----------------------------------------------------------------------------------------- */

static _Atomic int64_t g_alloc_fail_after = -1;

void lv_test_alloc_fail_after(int64_t n) { atomic_store(&g_alloc_fail_after, n); }

/* true if this allocation must fail (fault injection) */
static int alloc_injected_failure(void) {
    int64_t v = atomic_load_explicit(&g_alloc_fail_after, memory_order_relaxed);
    if (LV_LIKELY(v < 0)) return 0;
    for (;;) {
        if (v < 0) return 0;
        if (v == 0) return 1; /* stays at 0: every later allocation fails too */
        if (atomic_compare_exchange_weak(&g_alloc_fail_after, &v, v - 1)) return 0;
    }
}

static void *nomem(size_t size) {
    lv_error(LV_ERR_NOMEM, "out of memory allocating %zu bytes", size);
    return NULL;
}

void *lv_malloc(size_t size) {
    if (alloc_injected_failure()) return nomem(size);
    void *p = malloc(size ? size : 1);
    return p ? p : nomem(size);
}

void *lv_calloc(size_t n, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) return nomem(SIZE_MAX);
    if (alloc_injected_failure()) return nomem(total);
    void *p = calloc(total ? total : 1, 1);
    return p ? p : nomem(total);
}

void *lv_mallocn(size_t n, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) return nomem(SIZE_MAX);
    return lv_malloc(total);
}

void *lv_realloc(void *p, size_t size) {
    if (alloc_injected_failure()) return nomem(size);
    void *q = realloc(p, size ? size : 1);
    return q ? q : nomem(size);
}

void *lv_aligned_alloc(size_t align, size_t size) {
    if (alloc_injected_failure()) return nomem(size);
    void *p = NULL;
    size_t rounded = (size + align - 1) / align * align;
    if (rounded < size || posix_memalign(&p, align, rounded ? rounded : align) != 0) return nomem(size);
    memset(p, 0, rounded);
    return p;
}

void lv_free(void *p) { free(p); }
void lv_aligned_free(void *p) { free(p); }

void *lv_big_alloc(size_t size) {
    if (alloc_injected_failure()) return nomem(size);
    void *p = mmap(NULL, size ? size : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nomem(size) : p;
}

void *lv_big_alloc_huge(size_t size) {
    void *p = lv_big_alloc(size);
#ifdef MADV_HUGEPAGE
    if (p) (void)madvise(p, size ? size : 1, MADV_HUGEPAGE); /* advice: failure changes nothing */
#endif
    return p;
}

void lv_big_free(void *p, size_t size) {
    if (p) munmap(p, size ? size : 1);
}

char *lv_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = lv_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* -------------------------------------------------------------------------------------------
 * time, cores
 * ----------------------------------------------------------------------------------------- */

double lv_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int lv_n_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
