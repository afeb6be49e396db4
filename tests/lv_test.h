/*
 * lv_test.h: the in-tree test harness (a few macros and a registry, in the spirit of redis'
 * testhelp.h). A test file defines tests with
 *
 *     TEST(gguf_rejects_bad_magic) { ... CHECK(...); ... }
 *
 * which registers them at start-up (no central table to edit). `lv_test [--list] [NAME|PREFIX...]`
 * runs all or some. A test that evaluates no check and does not SKIP counts as failed: a test
 * that asserts nothing is a defect.
 *
 * CHECK(cond, fmt, ...)   records a failure (with file:line and the message) and continues.
 * REQUIRE(cond, fmt, ...) records a failure and returns from the current test function.
 * SKIP(fmt, ...)          marks the test skipped (e.g. ../shared/data absent) and returns.
 */
#ifndef LV_TEST_H
#define LV_TEST_H

#include <stdio.h>
#include <stdint.h>

void lv_test_register(const char *name, void (*fn)(void));
/* A test made at start-up from data (one per golden file, say): fn(arg) runs it. name and arg
 * must live as long as the program. */
void lv_test_register_arg(const char *name, void (*fn)(const void *arg), const void *arg);

#define TEST(name)                                                                     \
    static void test_##name(void);                                                     \
    __attribute__((constructor)) static void test_reg_##name(void) {                  \
        lv_test_register(#name, test_##name);                                          \
    }                                                                                  \
    static void test_##name(void)

extern int lv_test_failures;  /* failures in the current test */
extern int lv_test_skipped;   /* set by SKIP */
extern int lv_test_checks;    /* checks evaluated in the current test */

void lv_test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void lv_test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define CHECK(cond, ...) \
    do { lv_test_checks++; if (!(cond)) lv_test_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define REQUIRE(cond, ...) \
    do { lv_test_checks++; if (!(cond)) { lv_test_fail(__FILE__, __LINE__, __VA_ARGS__); return; } } while (0)
#define SKIP(...) do { lv_test_skip(__VA_ARGS__); return; } while (0)

/* Helpers shared by tests (tests/test_main.c). */
/* Path of ../shared/data (or $LV_SHARED_DATA), or NULL if absent. */
const char *lv_test_shared_data(void);
/* A whole file, NUL-terminated (malloc'd; *len, if given, gets its size), or NULL. */
char *lv_test_read_file(const char *path, size_t *len);
/* A scratch directory for this test run (build/<mode>/tmp), created on demand. */
const char *lv_test_tmpdir(void);
/* Fresh random seed per run unless LV_TEST_SEED is set; printed so that a failure reproduces. */
uint64_t lv_test_seed(void);
/* Small deterministic PRNG for tests. */
typedef struct { uint64_t s; } lv_test_rng;
uint64_t lv_test_rng_u64(lv_test_rng *r);
float    lv_test_rng_f32(lv_test_rng *r); /* uniform [-1, 1) */
double   lv_test_rng_unit(lv_test_rng *r); /* uniform [0, 1) */
/* dst (cols x rows) = the transpose of src (rows x cols), elements of elt bytes: keys in the
 * layout attention spans read (lv_attn_span: element d of key j at k[d * ldk + j], ldk = rows) */
void lv_test_transpose(const void *src, void *dst, int64_t rows, int64_t cols, size_t elt);
/* 1 if LV_TEST_QUICK is set (the sanitizer run uses smaller cases). */
int lv_test_quick(void);

#endif
