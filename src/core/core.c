/*
 * core.c: status strings, per-thread error messages, the log callback, checked allocation
 * with fault injection, monotonic time.
 */
#define _GNU_SOURCE
#include "core/core.h"

#include <errno.h>
#include <math.h>
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

/* Length of the valid, printable UTF-8 character at s (n bytes left), or 0: a control character
 * (other than newline and tab), DEL, a C1 control, or bytes that are not UTF-8. */
static size_t printable_char(const unsigned char *s, size_t n) {
    const unsigned c = s[0];
    if (c < 0x80) return (c >= 0x20 && c != 0x7f) || c == '\n' || c == '\t' ? 1 : 0;
    size_t len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07;
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    if (cp >= 0x80 && cp < 0xa0) return 0; /* C1 controls */
    return len;
}

/* Rewrite msg (NUL-terminated, in a buffer of cap bytes) so that it is safe to print: bytes of a
 * file (key names, strings) can carry terminal escapes or invalid UTF-8, so anything but printable
 * UTF-8, newline and tab becomes \xNN. Truncates at cap. */
static void make_printable(char *msg, size_t cap) {
    const size_t n = strlen(msg);
    size_t i = 0;
    while (i < n && printable_char((const unsigned char *)msg + i, n - i)) i += printable_char((const unsigned char *)msg + i, n - i);
    if (i == n) return; /* the usual case: nothing to escape */
    char out[2 * LV_ERR_MSG_MAX + 64];
    const size_t lim = LV_MIN(cap, sizeof(out)) - 1;
    memcpy(out, msg, i);
    size_t o = i;
    while (i < n && o < lim) {
        const size_t l = printable_char((const unsigned char *)msg + i, n - i);
        if (l) {
            if (o + l > lim) break;
            memcpy(out + o, msg + i, l);
            o += l;
            i += l;
        } else {
            if (o + 4 > lim) break;
            snprintf(out + o, 5, "\\x%02x", (unsigned char)msg[i]);
            o += 4;
            i++;
        }
    }
    out[o] = '\0';
    memcpy(msg, out, o + 1);
}

const char *lv_last_error(void) { return tl_err; }

void lv_error_clear(void) { tl_err[0] = '\0'; }

lv_status lv_error(lv_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_err, sizeof(tl_err), fmt, ap);
    va_end(ap);
    make_printable(tl_err, sizeof(tl_err));
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
    make_printable(tl_err, sizeof(tl_err));
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
    make_printable(msg, sizeof(msg));
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

lv_status lv_file_commit(FILE **fp, const char *tmp, const char *path) {
    FILE *f = *fp;
    *fp = NULL;
    const bool flushed = fflush(f) == 0 && !ferror(f);
    const int e = errno;
    const bool closed = fclose(f) == 0;
    if (!flushed || !closed) return lv_error(LV_ERR_IO, "writing '%s': %s", tmp, strerror(flushed ? errno : e));
    if (rename(tmp, path) != 0) return lv_error(LV_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    return LV_OK;
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

double lv_cpu_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int lv_n_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* ---- deterministic generator ---- */

uint64_t lv_rng_u64(lv_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double lv_rng_unit(lv_rng *r) { return ((double)(lv_rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

float lv_rng_normal(lv_rng *r) {
    if (r->has_spare) {
        r->has_spare = false;
        return r->spare;
    }
    const double u1 = lv_rng_unit(r), u2 = lv_rng_unit(r);
    const double rad = sqrt(-2.0 * log(u1));
    r->spare = (float)(rad * sin(2.0 * LV_PI * u2));
    r->has_spare = true;
    return (float)(rad * cos(2.0 * LV_PI * u2));
}

uint64_t lv_hash_str(uint64_t h, const char *s) {
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}
