/*
 * test_gguf.c: the GGUF reader and writer.
 *
 *  - round trips through the writer: every scalar type, strings, arrays of every element type
 *    (strings and empty arrays included), tensors of many types and 1-4 dims, custom alignments,
 *    files without tensors, lv_gguf_writer_copy_kv;
 *  - hostile files, hand-made byte by byte: each must fail with a status and a message naming
 *    the problem. Every image is parsed from the end of a mapping followed by a PROT_NONE page,
 *    so a read past the end faults even in the release build;
 *  - every prefix of a valid file, and random mutations of valid files.
 */
#define _GNU_SOURCE
#include "gguf/gguf.h"
#include "gguf_build.h"
#include "gguf_walk.h"
#include "core/core.h"
#include "lv_test.h"

#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* -------------------------------------------------------------------------------------------
 * helpers
 * ----------------------------------------------------------------------------------------- */

/* Parse an image from a guarded copy and expect failure with `want` (0: any error status) and
 * a message containing `needle`. */
#define EXPECT_BAD(buf, want, needle) expect_bad_((buf)->p, (buf)->n, want, needle, __LINE__)

static void expect_bad_(const void *p, size_t n, lv_status want, const char *needle, int line) {
    gb_guard gd;
    lv_gguf *g = (lv_gguf *)1;
    lv_error_clear();
    lv_status st = gb_open_guarded(&gd, p, n, &g);
    CHECK(st != LV_OK, "line %d: a hostile image (%zu bytes) was accepted", line, n);
    CHECK(g == NULL, "line %d: *out is not NULL after a failure", line);
    if (want != LV_OK) CHECK(st == want, "line %d: status %s, expected %s (%s)", line, lv_status_str(st), lv_status_str(want), lv_last_error());
    CHECK(strstr(lv_last_error(), needle) != NULL, "line %d: message '%s' does not contain '%s'", line, lv_last_error(), needle);
    lv_gguf_close(g == (lv_gguf *)1 ? NULL : g);
    gb_guard_free(&gd);
}

/* Open an image that must parse, from a guarded copy; walks it and checks the invariants. */
static lv_gguf *open_ok(gb_guard *gd, const gb_buf *b, int line) {
    lv_gguf *g = NULL;
    lv_status st = gb_open_guarded(gd, b->p, b->n, &g);
    CHECK(st == LV_OK, "line %d: valid image rejected: %s", line, lv_last_error());
    if (st != LV_OK) return NULL;
    int bad = 0;
    gguf_walk(g, gd->data, gd->n, &bad);
    CHECK(bad == 0, "line %d: %d reader invariants violated", line, bad);
    return g;
}
#define OPEN_OK(gd, b) open_ok(gd, b, __LINE__)

static const lv_gguf_type k_scalar_types[] = {
    LV_GGUF_UINT8, LV_GGUF_INT8, LV_GGUF_UINT16, LV_GGUF_INT16, LV_GGUF_UINT32, LV_GGUF_INT32,
    LV_GGUF_FLOAT32, LV_GGUF_BOOL, LV_GGUF_UINT64, LV_GGUF_INT64, LV_GGUF_FLOAT64,
};

static size_t scalar_size(lv_gguf_type t) {
    switch (t) {
    case LV_GGUF_UINT8: case LV_GGUF_INT8: case LV_GGUF_BOOL: return 1;
    case LV_GGUF_UINT16: case LV_GGUF_INT16: return 2;
    case LV_GGUF_UINT32: case LV_GGUF_INT32: case LV_GGUF_FLOAT32: return 4;
    case LV_GGUF_UINT64: case LV_GGUF_INT64: case LV_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* a random value of type t at p; floats are finite, bools 0/1 */
static void random_scalar(lv_test_rng *r, lv_gguf_type t, void *p) {
    uint64_t u = lv_test_rng_u64(r);
    /* sometimes an extreme value */
    switch (lv_test_rng_u64(r) % 8) {
    case 0: u = 0; break;
    case 1: u = ~0ull; break;
    case 2: u = 1ull << 63; break;
    case 3: u = (1ull << 63) - 1; break;
    default: break;
    }
    if (t == LV_GGUF_BOOL) {
        uint8_t b = u & 1;
        memcpy(p, &b, 1);
    } else if (t == LV_GGUF_FLOAT32) {
        float f = lv_test_rng_f32(r) * 1e6f;
        memcpy(p, &f, 4);
    } else if (t == LV_GGUF_FLOAT64) {
        double d = (lv_test_rng_unit(r) - 0.5) * 1e300;
        memcpy(p, &d, 8);
    } else {
        memcpy(p, &u, scalar_size(t));
    }
}

typedef struct expect_num {
    bool is_int, is_float, i64_ok;
    int64_t i;
    double f;
} expect_num;

/* what lv_gguf_get_i64 / get_f64 must return for a value of type t stored at p */
static expect_num decode_num(lv_gguf_type t, const void *p) {
    expect_num e = {0};
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f32; uint64_t u64; int64_t i64; double f64; } v;
    memcpy(&v, p, scalar_size(t));
    e.is_int = e.i64_ok = true;
    switch (t) {
    case LV_GGUF_UINT8: e.i = v.u8; break;
    case LV_GGUF_INT8: e.i = v.i8; break;
    case LV_GGUF_UINT16: e.i = v.u16; break;
    case LV_GGUF_INT16: e.i = v.i16; break;
    case LV_GGUF_UINT32: e.i = v.u32; break;
    case LV_GGUF_INT32: e.i = v.i32; break;
    case LV_GGUF_INT64: e.i = v.i64; break;
    case LV_GGUF_UINT64:
        if (v.u64 > (uint64_t)INT64_MAX) { /* not an int64, but still a number */
            e.is_int = e.i64_ok = false;
            e.is_float = true;
            e.f = (double)v.u64;
            return e;
        }
        e.i = (int64_t)v.u64;
        break;
    case LV_GGUF_FLOAT32: e.is_int = e.i64_ok = false; e.is_float = true; e.f = v.f32; return e;
    case LV_GGUF_FLOAT64: e.is_int = e.i64_ok = false; e.is_float = true; e.f = v.f64; return e;
    default: e.is_int = e.i64_ok = false; return e;
    }
    e.f = (double)e.i;
    return e;
}

static void random_string(lv_test_rng *r, char *s, size_t max_len) {
    size_t len = (size_t)(lv_test_rng_u64(r) % (max_len + 1));
    for (size_t i = 0; i < len; i++) s[i] = (char)(1 + lv_test_rng_u64(r) % 255); /* anything but NUL */
    s[len] = '\0';
}

/* -------------------------------------------------------------------------------------------
 * round trips
 * ----------------------------------------------------------------------------------------- */

typedef struct rt_tensor {
    const char *name;
    lv_type type;
    int n_dims;
    int64_t ne[4];
    uint8_t *data;
    uint64_t nbytes;
} rt_tensor;

#define RT_MAX_ARR 40
#define RT_STR_MAX 300

typedef struct rt_file {
    uint8_t scalars[LV_ARRAY_LEN(k_scalar_types)][8];
    char strs[4][RT_STR_MAX + 1];
    uint8_t arrs[LV_ARRAY_LEN(k_scalar_types)][RT_MAX_ARR * 8];
    uint64_t arr_n[LV_ARRAY_LEN(k_scalar_types)];
    char arr_strs[RT_MAX_ARR][RT_STR_MAX + 1];
    uint64_t n_arr_strs;
    rt_tensor t[12];
    int n_t;
} rt_file;

/* Build a writer holding every kind of value, and (with_tensors) tensors of many types and 1-4
 * dims with random contents; alignment 0 keeps the default. */
static lv_gguf_writer *rt_make(rt_file *f, lv_test_rng *r, uint32_t alignment, bool with_tensors) {
    memset(f, 0, sizeof(*f));
    lv_gguf_writer *w = lv_gguf_writer_create();
    if (!w) return NULL;
    bool ok = true;
    if (alignment) ok = ok && lv_gguf_writer_set_u32(w, "general.alignment", alignment);
    char key[64];
    for (size_t i = 0; i < LV_ARRAY_LEN(k_scalar_types); i++) {
        lv_gguf_type t = k_scalar_types[i];
        random_scalar(r, t, f->scalars[i]);
        snprintf(key, sizeof(key), "scalar.%s", lv_gguf_type_name(t));
        ok = ok && lv_gguf_writer_set_scalar(w, key, t, f->scalars[i]);
    }
    /* strings: empty, short, long, arbitrary bytes */
    snprintf(f->strs[0], sizeof(f->strs[0]), "%s", "");
    snprintf(f->strs[1], sizeof(f->strs[1]), "%s", "hello, gguf");
    memset(f->strs[2], 'x', RT_STR_MAX);
    f->strs[2][RT_STR_MAX] = '\0';
    random_string(r, f->strs[3], RT_STR_MAX);
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof(key), "string.%d", i);
        ok = ok && lv_gguf_writer_set_str(w, key, f->strs[i]);
    }
    /* arrays of every element type; the first one of each kind is sometimes empty */
    for (size_t i = 0; i < LV_ARRAY_LEN(k_scalar_types); i++) {
        lv_gguf_type t = k_scalar_types[i];
        f->arr_n[i] = i % 4 == 0 ? 0 : 1 + lv_test_rng_u64(r) % RT_MAX_ARR;
        for (uint64_t j = 0; j < f->arr_n[i]; j++) random_scalar(r, t, f->arrs[i] + j * scalar_size(t));
        snprintf(key, sizeof(key), "array.%s", lv_gguf_type_name(t));
        ok = ok && lv_gguf_writer_set_arr(w, key, t, f->arrs[i], f->arr_n[i]);
    }
    f->n_arr_strs = 1 + lv_test_rng_u64(r) % RT_MAX_ARR;
    const char *ptrs[RT_MAX_ARR];
    for (uint64_t j = 0; j < f->n_arr_strs; j++) {
        random_string(r, f->arr_strs[j], j % 3 == 0 ? 0 : 40);
        ptrs[j] = f->arr_strs[j];
    }
    ok = ok && lv_gguf_writer_set_arr_str(w, "array.str", ptrs, f->n_arr_strs);
    ok = ok && lv_gguf_writer_set_arr_str(w, "array.str_empty", ptrs, 0);
    /* a key set twice keeps the second value */
    ok = ok && lv_gguf_writer_set_u32(w, "replaced", 1) && lv_gguf_writer_set_str(w, "replaced", "second");
    if (!with_tensors) {
        if (!ok) lv_gguf_writer_free(w);
        return ok ? w : NULL;
    }
    static const struct { const char *name; lv_type type; int n_dims; int64_t ne0; } specs[] = {
        {"f32.vector", LV_TYPE_F32, 1, 7},     {"f16.matrix", LV_TYPE_F16, 2, 5},
        {"q4_0.3d", LV_TYPE_Q4_0, 3, 64},      {"q8_0.4d", LV_TYPE_Q8_0, 4, 32},
        {"bf16.empty", LV_TYPE_BF16, 2, 0},    {"q4_K.matrix", LV_TYPE_Q4_K, 2, 256},
        {"i8.3d", LV_TYPE_I8, 3, 9},           {"f64.4d", LV_TYPE_F64, 4, 2},
        {"iq4_nl.vector", LV_TYPE_IQ4_NL, 1, 32}, {"mxfp4.matrix", LV_TYPE_MXFP4, 2, 64},
        {"q6_K.vector", LV_TYPE_Q6_K, 1, 512},  {"i32.scalar_like", LV_TYPE_I32, 1, 1},
    };
    f->n_t = (int)LV_ARRAY_LEN(specs);
    for (int i = 0; ok && i < f->n_t; i++) {
        rt_tensor *t = &f->t[i];
        t->name = specs[i].name;
        t->type = specs[i].type;
        t->n_dims = specs[i].n_dims;
        t->ne[0] = specs[i].ne0;
        for (int d = 1; d < 4; d++) t->ne[d] = d < t->n_dims ? 1 + (int64_t)(lv_test_rng_u64(r) % 3) : 1;
        ok = lv_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne);
        if (!ok) break;
        t->nbytes = lv_gguf_writer_tensor_nbytes(w, i);
        const lv_type_traits *tt = lv_type_get(t->type);
        CHECK(t->nbytes == (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3] / tt->blck_size * tt->type_size),
              "writer size of %s", t->name);
        t->data = malloc(t->nbytes ? t->nbytes : 1);
        for (uint64_t j = 0; j < t->nbytes; j++) t->data[j] = (uint8_t)lv_test_rng_u64(r);
    }
    if (!ok) {
        lv_gguf_writer_free(w);
        return NULL;
    }
    return w;
}

static void rt_free(rt_file *f) {
    for (int i = 0; i < f->n_t; i++) free(f->t[i].data);
}

static bool rt_write(lv_gguf_writer *w, rt_file *f, gb_buf *out) {
    const void *data[12];
    for (int i = 0; i < f->n_t; i++) data[i] = f->t[i].data;
    return gb_write_mem(w, data, out);
}

/* Check every value and tensor of g against f. */
static void rt_check(const lv_gguf *g, const rt_file *f, uint32_t alignment) {
    char key[64];
    CHECK(lv_gguf_version(g) == 3, "version %u", lv_gguf_version(g));
    CHECK(lv_gguf_alignment(g) == (alignment ? alignment : 32), "alignment %u", lv_gguf_alignment(g));
    CHECK(lv_gguf_data_offset(g) % lv_gguf_alignment(g) == 0, "data section at %llu", (unsigned long long)lv_gguf_data_offset(g));
    for (size_t i = 0; i < LV_ARRAY_LEN(k_scalar_types); i++) {
        lv_gguf_type t = k_scalar_types[i];
        snprintf(key, sizeof(key), "scalar.%s", lv_gguf_type_name(t));
        int64_t k = lv_gguf_find_key(g, key);
        REQUIRE(k >= 0, "key %s missing", key);
        CHECK(lv_gguf_kv_type(g, k) == t, "%s has type %s", key, lv_gguf_type_name(lv_gguf_kv_type(g, k)));
        CHECK(lv_gguf_arr_n(g, k) == 0, "%s: arr_n of a scalar", key);
        const void *raw;
        uint64_t raw_size;
        lv_gguf_kv_raw(g, k, &raw, &raw_size);
        CHECK(raw_size == 4 + scalar_size(t) && memcmp((const uint8_t *)raw + 4, f->scalars[i], scalar_size(t)) == 0, "%s raw bytes", key);
        expect_num e = decode_num(t, f->scalars[i]);
        int64_t iv = 0;
        uint64_t uv = 0;
        double fv = 0;
        bool bv = false;
        bool got_i = lv_gguf_get_i64(g, k, &iv), got_u = lv_gguf_get_u64(g, k, &uv);
        bool got_f = lv_gguf_get_f64(g, k, &fv), got_b = lv_gguf_get_bool(g, k, &bv);
        CHECK(got_i == e.i64_ok && (!got_i || iv == e.i), "%s: get_i64", key);
        if (t == LV_GGUF_UINT64) {
            uint64_t want;
            memcpy(&want, f->scalars[i], 8);
            CHECK(got_u && uv == want, "%s: get_u64", key);
        } else {
            CHECK(got_u == (e.is_int && e.i >= 0) && (!got_u || uv == (uint64_t)e.i), "%s: get_u64", key);
        }
        CHECK(got_f == (e.i64_ok || e.is_float), "%s: get_f64 availability", key);
        if (got_f && e.is_float) CHECK(fv == e.f, "%s: get_f64 %g != %g", key, fv, e.f);
        if (got_f && e.is_int) CHECK(fv == (double)e.i, "%s: get_f64 of an integer", key);
        CHECK(got_b == (t == LV_GGUF_BOOL) && (!got_b || bv == (f->scalars[i][0] != 0)), "%s: get_bool", key);
        CHECK(lv_gguf_get_str(g, k).len == 0, "%s: get_str of a number", key);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof(key), "string.%d", i);
        int64_t k = lv_gguf_find_key(g, key);
        REQUIRE(k >= 0, "key %s missing", key);
        CHECK(lv_gguf_kv_type(g, k) == LV_GGUF_STRING, "%s type", key);
        lv_gguf_str s = lv_gguf_get_str(g, k);
        CHECK(s.len == strlen(f->strs[i]) && memcmp(s.ptr, f->strs[i], (size_t)s.len) == 0, "%s value", key);
        int64_t iv;
        CHECK(!lv_gguf_get_i64(g, k, &iv), "%s: get_i64 of a string", key);
    }
    for (size_t i = 0; i < LV_ARRAY_LEN(k_scalar_types); i++) {
        lv_gguf_type t = k_scalar_types[i];
        size_t es = scalar_size(t);
        snprintf(key, sizeof(key), "array.%s", lv_gguf_type_name(t));
        int64_t k = lv_gguf_find_key(g, key);
        REQUIRE(k >= 0, "key %s missing", key);
        CHECK(lv_gguf_kv_type(g, k) == LV_GGUF_ARRAY && lv_gguf_arr_type(g, k) == t, "%s types", key);
        CHECK(lv_gguf_arr_n(g, k) == f->arr_n[i], "%s: %llu elements, wrote %llu", key,
              (unsigned long long)lv_gguf_arr_n(g, k), (unsigned long long)f->arr_n[i]);
        const void *d = lv_gguf_arr_data(g, k);
        CHECK(d != NULL && (f->arr_n[i] == 0 || memcmp(d, f->arrs[i], f->arr_n[i] * es) == 0), "%s element bytes", key);
        for (uint64_t j = 0; j < f->arr_n[i] && j < lv_gguf_arr_n(g, k); j++) {
            expect_num e = decode_num(t, f->arrs[i] + j * es);
            int64_t iv = 0;
            double fv = 0;
            bool got_i = lv_gguf_arr_get_i64(g, k, j, &iv), got_f = lv_gguf_arr_get_f64(g, k, j, &fv);
            CHECK(got_i == e.i64_ok && (!got_i || iv == e.i), "%s[%llu]: arr_get_i64", key, (unsigned long long)j);
            CHECK(got_f == (e.i64_ok || e.is_float), "%s[%llu]: arr_get_f64 availability", key, (unsigned long long)j);
            if (got_f && e.is_float) CHECK(fv == e.f, "%s[%llu]: arr_get_f64", key, (unsigned long long)j);
        }
        int64_t iv;
        CHECK(!lv_gguf_arr_get_i64(g, k, f->arr_n[i], &iv), "%s: element past the end", key);
        CHECK(!lv_gguf_get_i64(g, k, &iv), "%s: get_i64 of an array", key);
    }
    int64_t k = lv_gguf_find_key(g, "array.str");
    REQUIRE(k >= 0, "array.str missing");
    CHECK(lv_gguf_arr_type(g, k) == LV_GGUF_STRING && lv_gguf_arr_n(g, k) == f->n_arr_strs, "array.str shape");
    CHECK(lv_gguf_arr_data(g, k) == NULL, "arr_data of a string array");
    for (uint64_t j = 0; j < f->n_arr_strs; j++) {
        lv_gguf_str s = lv_gguf_arr_str(g, k, j);
        CHECK(s.len == strlen(f->arr_strs[j]) && memcmp(s.ptr, f->arr_strs[j], (size_t)s.len) == 0, "array.str[%llu]", (unsigned long long)j);
    }
    k = lv_gguf_find_key(g, "array.str_empty");
    CHECK(k >= 0 && lv_gguf_arr_type(g, k) == LV_GGUF_STRING && lv_gguf_arr_n(g, k) == 0, "empty string array");
    k = lv_gguf_find_key(g, "replaced");
    CHECK(k >= 0 && lv_gguf_kv_type(g, k) == LV_GGUF_STRING && lv_gguf_get_str(g, k).len == 6, "replaced key keeps the last value");
    CHECK(lv_gguf_find_key(g, "no.such.key") == -1, "find_key of an absent key");

    CHECK(lv_gguf_n_tensors(g) == f->n_t, "%lld tensors, wrote %d", (long long)lv_gguf_n_tensors(g), f->n_t);
    for (int i = 0; i < f->n_t && i < lv_gguf_n_tensors(g); i++) {
        const rt_tensor *w = &f->t[i];
        const lv_gguf_tensor *t = lv_gguf_tensor_at(g, i);
        CHECK(lv_gguf_find_tensor(g, w->name) == i, "find_tensor(%s)", w->name);
        CHECK(strcmp(t->name, w->name) == 0, "tensor %d is '%s', wrote '%s'", i, t->name, w->name);
        CHECK(t->type == (uint32_t)w->type && t->n_dims == w->n_dims, "%s: type/dims", w->name);
        CHECK(memcmp(t->ne, w->ne, sizeof(t->ne)) == 0, "%s: shape", w->name);
        CHECK(t->nbytes == w->nbytes, "%s: %llu bytes, wrote %llu", w->name, (unsigned long long)t->nbytes, (unsigned long long)w->nbytes);
        CHECK(t->offset % lv_gguf_alignment(g) == 0, "%s: offset %llu unaligned", w->name, (unsigned long long)t->offset);
        CHECK(t->nbytes != w->nbytes || memcmp(t->data, w->data, (size_t)w->nbytes) == 0, "%s: data differs", w->name);
    }
    CHECK(lv_gguf_find_tensor(g, "no.such.tensor") == -1, "find_tensor of an absent name");
}

TEST(gguf_roundtrip_all_types) {
    lv_test_rng r = {lv_test_seed() ^ 0x6775676675ull};
    static const uint32_t aligns[] = {0, 1, 8, 64, 256};
    for (size_t a = 0; a < LV_ARRAY_LEN(aligns); a++) {
        rt_file f;
        lv_gguf_writer *w = rt_make(&f, &r, aligns[a], true);
        REQUIRE(w, "building the writer");
        gb_buf b = {0};
        REQUIRE(rt_write(w, &f, &b), "writing: %s", lv_last_error());
        CHECK(lv_gguf_writer_complete(w), "writer complete after all data");
        lv_gguf_writer_free(w);
        gb_guard gd;
        lv_gguf *g = OPEN_OK(&gd, &b);
        if (g) rt_check(g, &f, aligns[a]);
        lv_gguf_close(g);
        gb_guard_free(&gd);

        /* the same bytes from a file (lv_gguf_open maps it) */
        const char *path = gb_tmp_path("roundtrip.gguf");
        REQUIRE(gb_write_file(path, b.p, b.n), "writing %s", path);
        lv_gguf *gf = NULL;
        lv_status st = lv_gguf_open(path, &gf);
        CHECK(st == LV_OK, "lv_gguf_open: %s", lv_last_error());
        if (gf) {
            rt_check(gf, &f, aligns[a]);
            CHECK(lv_gguf_file_size(gf) == b.n, "file size");
        }
        lv_gguf_close(gf);
        gb_free(&b);
        rt_free(&f);
    }
}

TEST(gguf_roundtrip_without_tensors) {
    lv_test_rng r = {lv_test_seed() ^ 0x6e6f74656e73ull};
    rt_file f;
    lv_gguf_writer *w = rt_make(&f, &r, 0, false);
    REQUIRE(w, "building the writer");
    gb_buf b = {0};
    REQUIRE(rt_write(w, &f, &b), "writing");
    CHECK(lv_gguf_writer_complete(w), "a writer without tensors is complete after the header");
    lv_gguf_writer_free(w);
    gb_guard gd;
    lv_gguf *g = OPEN_OK(&gd, &b);
    if (g) {
        rt_check(g, &f, 0);
        CHECK(lv_gguf_n_tensors(g) == 0 && lv_gguf_tensor_at(g, 0) == NULL, "no tensors");
    }
    lv_gguf_close(g);
    gb_guard_free(&gd);
    gb_free(&b);

    /* the smallest valid file: a bare header */
    gb_header(&b, 3, 0, 0);
    g = OPEN_OK(&gd, &b);
    CHECK(g && lv_gguf_n_kv(g) == 0 && lv_gguf_n_tensors(g) == 0 && lv_gguf_alignment(g) == 32, "bare header");
    lv_gguf_close(g);
    gb_guard_free(&gd);
    gb_free(&b);
    /* version 2 is read too */
    gb_header(&b, 2, 0, 0);
    g = OPEN_OK(&gd, &b);
    CHECK(g && lv_gguf_version(g) == 2, "version 2");
    lv_gguf_close(g);
    gb_guard_free(&gd);
    gb_free(&b);
}

/* lv_gguf_writer_copy_kv reproduces every value byte for byte */
TEST(gguf_writer_copy_kv) {
    lv_test_rng r = {lv_test_seed() ^ 0x636f7079ull};
    rt_file f;
    lv_gguf_writer *w = rt_make(&f, &r, 64, false);
    REQUIRE(w, "building the writer");
    gb_buf a = {0}, b = {0};
    REQUIRE(rt_write(w, &f, &a), "writing");
    lv_gguf_writer_free(w);
    gb_guard ga, gbg;
    lv_gguf *g = OPEN_OK(&ga, &a);
    REQUIRE(g, "open");
    lv_gguf_writer *w2 = lv_gguf_writer_create();
    for (int64_t i = 0; i < lv_gguf_n_kv(g); i++) CHECK(lv_gguf_writer_copy_kv(w2, g, i), "copy kv %lld", (long long)i);
    CHECK(gb_write_mem(w2, NULL, &b), "writing the copy");
    lv_gguf_writer_free(w2);
    CHECK(a.n == b.n && memcmp(a.p, b.p, a.n) == 0, "the copy differs from the original (%zu vs %zu bytes)", a.n, b.n);
    lv_gguf *g2 = OPEN_OK(&gbg, &b);
    if (g2) rt_check(g2, &f, 64);
    lv_gguf_close(g2);
    lv_gguf_close(g);
    gb_guard_free(&ga);
    gb_guard_free(&gbg);
    gb_free(&a);
    gb_free(&b);
}

/* the writer refuses what the reader would reject */
TEST(gguf_writer_rejects_bad_tensors) {
    lv_gguf_writer *w = lv_gguf_writer_create();
    REQUIRE(w, "create");
    int64_t ne[4] = {32, 2, 1, 1};
    char long_name[80];
    memset(long_name, 'n', 64);
    long_name[64] = '\0';
    CHECK(!lv_gguf_writer_add_tensor(w, long_name, LV_TYPE_F32, 1, ne), "64-byte name accepted");
    long_name[63] = '\0';
    CHECK(lv_gguf_writer_add_tensor(w, long_name, LV_TYPE_F32, 1, ne), "63-byte name refused");
    CHECK(!lv_gguf_writer_add_tensor(w, "", LV_TYPE_F32, 1, ne), "empty name accepted");
    CHECK(!lv_gguf_writer_add_tensor(w, "t", (lv_type)4, 1, ne), "removed type 4 accepted");
    CHECK(!lv_gguf_writer_add_tensor(w, "t", LV_TYPE_COUNT, 1, ne), "type 43 accepted");
    CHECK(!lv_gguf_writer_add_tensor(w, "t", LV_TYPE_F32, 0, ne), "0 dims accepted");
    CHECK(!lv_gguf_writer_add_tensor(w, "t", LV_TYPE_F32, 5, ne), "5 dims accepted");
    int64_t odd[4] = {33, 1, 1, 1};
    CHECK(!lv_gguf_writer_add_tensor(w, "t", LV_TYPE_Q4_0, 2, odd), "q4_0 row of 33 accepted");
    int64_t neg[4] = {4, -1, 1, 1};
    CHECK(!lv_gguf_writer_add_tensor(w, "t", LV_TYPE_F32, 2, neg), "negative dimension accepted");
    int64_t big[4] = {INT64_C(1) << 32, INT64_C(1) << 32, 1, 1};
    CHECK(!lv_gguf_writer_add_tensor(w, "t", LV_TYPE_F32, 2, big), "element count overflow accepted");
    int64_t big_bytes[4] = {INT64_C(1) << 62, 1, 1, 1};
    CHECK(!lv_gguf_writer_add_tensor(w, "t", LV_TYPE_F32, 1, big_bytes), "byte size overflow accepted");
    CHECK(strstr(lv_last_error(), "bad tensor 't'") != NULL, "message: %s", lv_last_error());
    lv_gguf_writer_free(w);
}

/* An invalid general.alignment is written as given (so tests can make such files) but the
 * writer lays the data out with the default alignment instead of dividing by zero. */
TEST(gguf_writer_invalid_alignment_key) {
    static const uint32_t bad[] = {0, 3, 48, 0x80000001u};
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        lv_gguf_writer *w = lv_gguf_writer_create();
        REQUIRE(w, "create");
        CHECK(lv_gguf_writer_set_u32(w, "general.alignment", bad[i]), "set");
        int64_t ne[1] = {3};
        CHECK(lv_gguf_writer_add_tensor(w, "t", LV_TYPE_F32, 1, ne), "add");
        float data[3] = {1, 2, 3};
        const void *d[1] = {data};
        gb_buf b = {0};
        CHECK(gb_write_mem(w, d, &b), "writing with general.alignment = %u", bad[i]);
        CHECK(b.n % 32 == 0, "laid out with the default alignment (%zu bytes)", b.n);
        lv_gguf_writer_free(w);
        EXPECT_BAD(&b, LV_ERR_FORMAT, "not a power of two");
        gb_free(&b);
    }
    /* a valid value replaced by an invalid one falls back to the default too */
    lv_gguf_writer *w = lv_gguf_writer_create();
    REQUIRE(w, "create");
    CHECK(lv_gguf_writer_set_u32(w, "general.alignment", 128) && lv_gguf_writer_set_str(w, "general.alignment", "x"), "set");
    gb_buf b = {0};
    CHECK(gb_write_mem(w, NULL, &b) && b.n % 32 == 0, "written");
    EXPECT_BAD(&b, LV_ERR_FORMAT, "must be u32");
    lv_gguf_writer_free(w);
    gb_free(&b);
}

/* -------------------------------------------------------------------------------------------
 * hostile headers and metadata
 * ----------------------------------------------------------------------------------------- */

TEST(gguf_rejects_bad_headers) {
    gb_buf b = {0};
    EXPECT_BAD(&b, LV_ERR_FORMAT, "too small");
    gb_bytes(&b, "GGU", 3);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "too small");
    gb_free(&b);

    gb_bytes(&b, "GGUG", 4);
    gb_u32(&b, 3);
    gb_u64(&b, 0);
    gb_u64(&b, 0);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "not a GGUF file");
    gb_free(&b);
    gb_bytes(&b, "\0\0\0\0", 4);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "not a GGUF file");
    gb_free(&b);

    gb_bytes(&b, "GGUF", 4);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "truncated");
    gb_free(&b);

    static const struct { uint32_t v; lv_status st; const char *needle; } versions[] = {
        {1, LV_ERR_UNSUPPORTED, "version 1 is not supported"},
        {4, LV_ERR_UNSUPPORTED, "version 4 is not supported"},
        {0x03000000u, LV_ERR_UNSUPPORTED, "big-endian"},
        {0x02000000u, LV_ERR_UNSUPPORTED, "big-endian"},
        {0, LV_ERR_UNSUPPORTED, "version 0"},
        {0xffffffffu, LV_ERR_UNSUPPORTED, "not supported"},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(versions); i++) {
        gb_header(&b, versions[i].v, 0, 0);
        EXPECT_BAD(&b, versions[i].st, versions[i].needle);
        gb_free(&b);
    }

    /* counts */
    gb_header(&b, 3, 0, UINT64_MAX);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "key/value pairs");
    gb_free(&b);
    gb_header(&b, 3, UINT64_MAX, 0);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "tensors, more than");
    gb_free(&b);
    gb_header(&b, 3, (uint64_t)1 << 40, (uint64_t)1 << 40);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "more than");
    gb_free(&b);
    /* one key/value pair claimed, nothing there */
    gb_header(&b, 3, 0, 1);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "key/value pairs");
    gb_free(&b);
    /* counts that fit the bytes left but the data does not follow */
    gb_header(&b, 3, 0, 2);
    for (int i = 0; i < 28; i++) gb_u8(&b, 0);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "empty");
    gb_free(&b);
    /* the counts' own bytes cut short */
    gb_bytes(&b, "GGUF", 4);
    gb_u32(&b, 3);
    gb_u64(&b, 0);
    gb_u32(&b, 0);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "truncated GGUF header");
    gb_free(&b);
}

/* one key/value pair: key, type, then the raw value bytes */
static void kv_file(gb_buf *b, const char *key, uint32_t type, const void *val, size_t n) {
    gb_header(b, 3, 0, 1);
    gb_str(b, key);
    gb_u32(b, type);
    gb_bytes(b, val, n);
}

TEST(gguf_rejects_bad_metadata) {
    gb_buf b = {0};
    uint8_t zeros[64] = {0};

    /* keys */
    kv_file(&b, "", LV_GGUF_UINT32, zeros, 4);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "key 0 is empty");
    gb_free(&b);
    gb_header(&b, 3, 0, 1);
    gb_u64(&b, 3);
    gb_bytes(&b, "a\0b", 3);
    gb_u32(&b, LV_GGUF_UINT8);
    gb_u8(&b, 0);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "NUL");
    gb_free(&b);
    gb_header(&b, 3, 0, 1);
    gb_u64(&b, UINT64_MAX); /* huge key length */
    gb_bytes(&b, zeros, 16);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "key at byte 24 has length 18446744073709551615");
    gb_free(&b);
    gb_header(&b, 3, 0, 1);
    gb_u64(&b, 7); /* key length one past the end of the file */
    gb_bytes(&b, "abcdef", 6);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "has length 7 but only 6 bytes remain");
    gb_free(&b);
    gb_header(&b, 3, 0, 2);
    gb_str(&b, "dup");
    gb_u32(&b, LV_GGUF_UINT8);
    gb_u8(&b, 1);
    gb_str(&b, "dup");
    gb_u32(&b, LV_GGUF_STRING);
    gb_str(&b, "second");
    EXPECT_BAD(&b, LV_ERR_FORMAT, "duplicate key 'dup'");
    gb_free(&b);

    /* value types */
    kv_file(&b, "k", LV_GGUF_TYPE_COUNT, zeros, 16);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "key 'k' has invalid value type 13");
    gb_free(&b);
    kv_file(&b, "k", 0xffffffffu, zeros, 16);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "invalid value type 4294967295");
    gb_free(&b);
    uint8_t two = 2;
    kv_file(&b, "flag", LV_GGUF_BOOL, &two, 1);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "key 'flag' is a bool with value 2");
    gb_free(&b);
    kv_file(&b, "k", LV_GGUF_UINT64, zeros, 7); /* value cut short */
    EXPECT_BAD(&b, LV_ERR_FORMAT, "truncated file: value of key 'k'");
    gb_free(&b);
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "kkkkkk");
    uint16_t half = 3; /* type field cut short */
    gb_bytes(&b, &half, 2);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "truncated file: type of key 'kkkkkk'");
    gb_free(&b);

    /* string values */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "s");
    gb_u32(&b, LV_GGUF_STRING);
    gb_u64(&b, UINT64_MAX);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "key 's': string value");
    gb_free(&b);
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "s");
    gb_u32(&b, LV_GGUF_STRING);
    gb_u64(&b, 5);
    gb_bytes(&b, "abcd", 4); /* one byte short */
    EXPECT_BAD(&b, LV_ERR_FORMAT, "has length 5 but only 4 bytes remain");
    gb_free(&b);
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "s");
    gb_u32(&b, LV_GGUF_STRING);
    gb_u32(&b, 0); /* length field cut short */
    EXPECT_BAD(&b, LV_ERR_FORMAT, "truncated file: string value length");
    gb_free(&b);

    /* arrays */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "a");
    gb_u32(&b, LV_GGUF_ARRAY);
    gb_u32(&b, LV_GGUF_ARRAY); /* nested */
    gb_u64(&b, 1);
    gb_u32(&b, LV_GGUF_UINT8);
    gb_u64(&b, 1);
    gb_u8(&b, 0);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "key 'a' is an array of invalid element type 9");
    gb_free(&b);
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "a");
    gb_u32(&b, LV_GGUF_ARRAY);
    gb_u32(&b, 13);
    gb_u64(&b, 1);
    gb_bytes(&b, zeros, 8);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "invalid element type 13");
    gb_free(&b);
    static const uint64_t counts[] = {UINT64_MAX, (uint64_t)1 << 61, (uint64_t)1 << 32, 9};
    for (size_t i = 0; i < LV_ARRAY_LEN(counts); i++) {
        gb_header(&b, 3, 0, 1);
        gb_str(&b, "a");
        gb_u32(&b, LV_GGUF_ARRAY);
        gb_u32(&b, LV_GGUF_UINT8);
        gb_u64(&b, counts[i]);
        gb_bytes(&b, zeros, 8);
        EXPECT_BAD(&b, LV_ERR_FORMAT, "elements of u8, more than the 8 bytes left");
        gb_free(&b);
        gb_header(&b, 3, 0, 1);
        gb_str(&b, "a");
        gb_u32(&b, LV_GGUF_ARRAY);
        gb_u32(&b, LV_GGUF_UINT64);
        gb_u64(&b, counts[i] > 64 ? counts[i] / 8 + 1 : counts[i]); /* n * 8 wraps for the largest */
        gb_bytes(&b, zeros, 64);
        EXPECT_BAD(&b, LV_ERR_FORMAT, "elements of u64");
        gb_free(&b);
        gb_header(&b, 3, 0, 1);
        gb_str(&b, "a");
        gb_u32(&b, LV_GGUF_ARRAY);
        gb_u32(&b, LV_GGUF_STRING);
        gb_u64(&b, counts[i]);
        gb_bytes(&b, zeros, 64); /* 8 empty strings: one short of 9 */
        EXPECT_BAD(&b, LV_ERR_FORMAT, "key 'a'");
        gb_free(&b);
    }
    /* a string element running past the end */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "a");
    gb_u32(&b, LV_GGUF_ARRAY);
    gb_u32(&b, LV_GGUF_STRING);
    gb_u64(&b, 2);
    gb_str(&b, "ok");
    gb_u64(&b, 100);
    gb_bytes(&b, "short", 5);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "key 'a' element 1: string array element");
    gb_free(&b);
    /* array header cut short */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "a");
    gb_u32(&b, LV_GGUF_ARRAY);
    gb_u32(&b, LV_GGUF_UINT8);
    gb_u32(&b, 1);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "truncated file: array header of key 'a'");
    gb_free(&b);
}

TEST(gguf_rejects_bad_alignment) {
    gb_buf b = {0};
    static const uint32_t bad[] = {0, 3, 48, 100, 0x80000001u, 0xffffffffu};
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        kv_file(&b, "general.alignment", LV_GGUF_UINT32, &bad[i], 4);
        EXPECT_BAD(&b, LV_ERR_FORMAT, "is not a power of two");
        gb_free(&b);
    }
    int32_t i32 = 32;
    kv_file(&b, "general.alignment", LV_GGUF_INT32, &i32, 4);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "'general.alignment' must be u32 but is i32");
    gb_free(&b);
    uint64_t u64 = 32;
    kv_file(&b, "general.alignment", LV_GGUF_UINT64, &u64, 8);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "must be u32 but is u64");
    gb_free(&b);
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "general.alignment");
    gb_u32(&b, LV_GGUF_STRING);
    gb_str(&b, "32");
    EXPECT_BAD(&b, LV_ERR_FORMAT, "must be u32 but is str");
    gb_free(&b);
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "general.alignment");
    gb_u32(&b, LV_GGUF_ARRAY);
    gb_u32(&b, LV_GGUF_UINT32);
    gb_u64(&b, 1);
    gb_u32(&b, 32);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "must be u32 but is arr");
    gb_free(&b);
    /* every power of two is fine, up to 2^31 */
    for (int s = 0; s < 32; s++) {
        uint32_t a = 1u << s;
        kv_file(&b, "general.alignment", LV_GGUF_UINT32, &a, 4);
        gb_guard gd;
        lv_gguf *g = OPEN_OK(&gd, &b);
        CHECK(g && lv_gguf_alignment(g) == a, "alignment %u", a);
        lv_gguf_close(g);
        gb_guard_free(&gd);
        gb_free(&b);
    }
}

/* -------------------------------------------------------------------------------------------
 * hostile tensor infos and data
 * ----------------------------------------------------------------------------------------- */

/* header + one tensor info + padding to 32 + data_bytes zero bytes of data */
static void tensor_file(gb_buf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t offset,
                        size_t data_bytes) {
    gb_header(b, 3, 1, 0);
    gb_tensor_info(b, name, n_dims, ne, type, offset);
    gb_pad(b, 32);
    for (size_t i = 0; i < data_bytes; i++) gb_u8(b, 0);
}

TEST(gguf_rejects_bad_tensor_infos) {
    gb_buf b = {0};
    uint64_t ne[5] = {4, 1, 1, 1, 1};

    /* the baseline is valid */
    tensor_file(&b, "t", 1, ne, LV_TYPE_F32, 0, 16);
    gb_guard gd;
    lv_gguf *g = OPEN_OK(&gd, &b);
    CHECK(g && lv_gguf_n_tensors(g) == 1 && lv_gguf_tensor_at(g, 0)->nbytes == 16, "baseline tensor");
    lv_gguf_close(g);
    gb_guard_free(&gd);
    gb_free(&b);

    /* names */
    char name[80];
    memset(name, 'n', sizeof(name));
    name[64] = '\0';
    tensor_file(&b, name, 1, ne, LV_TYPE_F32, 0, 16);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "tensor 0: name is 64 bytes, the limit is 63");
    gb_free(&b);
    name[64] = 'n';
    name[79] = '\0';
    tensor_file(&b, name, 1, ne, LV_TYPE_F32, 0, 16);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "name is 79 bytes");
    gb_free(&b);
    name[63] = '\0';
    tensor_file(&b, name, 1, ne, LV_TYPE_F32, 0, 16);
    g = OPEN_OK(&gd, &b);
    CHECK(g != NULL, "a 63-byte name is allowed");
    lv_gguf_close(g);
    gb_guard_free(&gd);
    gb_free(&b);
    tensor_file(&b, "", 1, ne, LV_TYPE_F32, 0, 16);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "name is empty");
    gb_free(&b);
    gb_header(&b, 3, 1, 0);
    gb_u64(&b, 3);
    gb_bytes(&b, "a\0b", 3);
    gb_u32(&b, 1);
    gb_u64(&b, 4);
    gb_u32(&b, LV_TYPE_F32);
    gb_u64(&b, 0);
    gb_pad(&b, 32);
    gb_bytes(&b, name, 16);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "contains a NUL byte");
    gb_free(&b);
    gb_header(&b, 3, 1, 0);
    gb_u64(&b, UINT64_MAX);
    gb_bytes(&b, name, 40);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "tensor 0: tensor name at byte 24 has length");
    gb_free(&b);
    /* duplicate names */
    gb_header(&b, 3, 2, 0);
    gb_tensor_info(&b, "w", 1, ne, LV_TYPE_F32, 0);
    gb_tensor_info(&b, "w", 1, ne, LV_TYPE_F32, 32);
    gb_pad(&b, 32);
    gb_bytes(&b, name, 48);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "duplicate tensor name 'w' (tensors 0 and 1)");
    gb_free(&b);
    /* a tensor name equal to a key is fine: separate namespaces */
    gb_header(&b, 3, 1, 1);
    gb_str(&b, "w");
    gb_u32(&b, LV_GGUF_UINT8);
    gb_u8(&b, 1);
    gb_tensor_info(&b, "w", 1, ne, LV_TYPE_F32, 0);
    gb_pad(&b, 32);
    gb_bytes(&b, name, 16);
    g = OPEN_OK(&gd, &b);
    CHECK(g != NULL, "a tensor named like a key");
    lv_gguf_close(g);
    gb_guard_free(&gd);
    gb_free(&b);

    /* dimensions */
    tensor_file(&b, "t", 0, ne, LV_TYPE_F32, 0, 16);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "tensor 't' has 0 dimensions (1 to 4 allowed)");
    gb_free(&b);
    tensor_file(&b, "t", 5, ne, LV_TYPE_F32, 0, 16);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "tensor 't' has 5 dimensions");
    gb_free(&b);
    tensor_file(&b, "t", 0xffffffffu, ne, LV_TYPE_F32, 0, 16);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "4294967295 dimensions");
    gb_free(&b);
    uint64_t neg[2] = {UINT64_MAX, 1};
    tensor_file(&b, "t", 2, neg, LV_TYPE_F32, 0, 16);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "tensor 't' dimension 0 has 18446744073709551615 elements");
    gb_free(&b);
    uint64_t neg1[2] = {4, (uint64_t)1 << 63};
    tensor_file(&b, "t", 2, neg1, LV_TYPE_F32, 0, 16);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "dimension 1 has");
    gb_free(&b);
    uint64_t ovf[4] = {(uint64_t)1 << 32, (uint64_t)1 << 31, 1, 1};
    tensor_file(&b, "t", 4, ovf, LV_TYPE_F32, 0, 16);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "tensor 't': element count overflows 64 bits");
    gb_free(&b);
    uint64_t ovf4[4] = {2, 2, 2, (uint64_t)1 << 61};
    tensor_file(&b, "t", 4, ovf4, LV_TYPE_F32, 0, 16);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "element count overflows");
    gb_free(&b);
    uint64_t bytes_ovf[1] = {(uint64_t)1 << 62}; /* 2^62 f32 elements: 2^64 bytes */
    tensor_file(&b, "t", 1, bytes_ovf, LV_TYPE_F32, 0, 16);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "tensor 't': size in bytes overflows");
    gb_free(&b);
    uint64_t huge[2] = {(uint64_t)1 << 30, (uint64_t)1 << 30}; /* representable, but not in this file */
    tensor_file(&b, "t", 2, huge, LV_TYPE_F32, 0, 16);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "lies outside the file's data section");
    gb_free(&b);
    gb_header(&b, 3, 1, 0);
    gb_str(&b, "tensor.with.a.long.name");
    gb_u32(&b, 2);
    gb_u64(&b, 4); /* second dimension cut short */
    EXPECT_BAD(&b, LV_ERR_FORMAT, "truncated file: shape of tensor 'tensor.with.a.long.name'");
    gb_free(&b);
    gb_header(&b, 3, 1, 0);
    gb_str(&b, "tensor.with.a.long.name");
    gb_u32(&b, 1);
    gb_u64(&b, 4);
    gb_u32(&b, LV_TYPE_F32);
    gb_u32(&b, 0); /* offset cut short */
    EXPECT_BAD(&b, LV_ERR_FORMAT, "truncated file: type/offset of tensor 'tensor.with.a.long.name'");
    gb_free(&b);

    /* types: unknown and removed ids */
    static const uint32_t bad_types[] = {4, 5, 31, 32, 33, 36, 37, 38, 43, 1000, 0xffffffffu};
    for (size_t i = 0; i < LV_ARRAY_LEN(bad_types); i++) {
        tensor_file(&b, "t", 1, ne, bad_types[i], 0, 16);
        char needle[64];
        snprintf(needle, sizeof(needle), "tensor 't' has invalid type %u", bad_types[i]);
        EXPECT_BAD(&b, LV_ERR_FORMAT, needle);
        gb_free(&b);
    }
    /* rows that are not whole blocks */
    uint64_t row33[1] = {33};
    tensor_file(&b, "t", 1, row33, LV_TYPE_Q4_0, 0, 64);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "tensor 't' of type q4_0 has 33 elements per row, not a multiple of the block size 32");
    gb_free(&b);
    uint64_t row128[2] = {128, 2};
    tensor_file(&b, "t", 2, row128, LV_TYPE_Q4_K, 0, 512);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "of type q4_K has 128 elements per row, not a multiple of the block size 256");
    gb_free(&b);
}

TEST(gguf_rejects_bad_tensor_data) {
    gb_buf b = {0};
    uint64_t ne[1] = {4};
    uint8_t fill[64] = {0};

    /* offsets */
    tensor_file(&b, "t", 1, ne, LV_TYPE_F32, 32, 64);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "tensor 't' has data offset 32, expected 0");
    gb_free(&b);
    tensor_file(&b, "t", 1, ne, LV_TYPE_F32, (uint64_t)1 << 40, 64);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "tensor 't' has data offset 1099511627776");
    gb_free(&b);
    tensor_file(&b, "t", 1, ne, LV_TYPE_F32, UINT64_MAX, 64);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "has data offset 18446744073709551615");
    gb_free(&b);
    gb_header(&b, 3, 2, 0); /* second tensor not after the first */
    gb_tensor_info(&b, "a", 1, ne, LV_TYPE_F32, 0);
    gb_tensor_info(&b, "b", 1, ne, LV_TYPE_F32, 0);
    gb_pad(&b, 32);
    gb_bytes(&b, fill, 64);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "tensor 'b' has data offset 0, expected 32");
    gb_free(&b);
    gb_header(&b, 3, 2, 0); /* unaligned: right after the first tensor's 16 bytes */
    gb_tensor_info(&b, "a", 1, ne, LV_TYPE_F32, 0);
    gb_tensor_info(&b, "b", 1, ne, LV_TYPE_F32, 16);
    gb_pad(&b, 32);
    gb_bytes(&b, fill, 64);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "tensor 'b' has data offset 16, expected 32");
    gb_free(&b);
    gb_header(&b, 3, 2, 0); /* out of order */
    gb_tensor_info(&b, "a", 1, ne, LV_TYPE_F32, 32);
    gb_tensor_info(&b, "b", 1, ne, LV_TYPE_F32, 0);
    gb_pad(&b, 32);
    gb_bytes(&b, fill, 64);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "tensor 'a' has data offset 32, expected 0");
    gb_free(&b);

    /* data truncated: every length short of the 16 bytes */
    for (size_t have = 0; have < 16; have++) {
        tensor_file(&b, "t", 1, ne, LV_TYPE_F32, 0, have);
        EXPECT_BAD(&b, LV_ERR_FORMAT, "tensor 't' data [0, 16) lies outside the file's data section");
        gb_free(&b);
    }
    /* the second tensor truncated */
    gb_header(&b, 3, 2, 0);
    gb_tensor_info(&b, "a", 1, ne, LV_TYPE_F32, 0);
    gb_tensor_info(&b, "b", 1, ne, LV_TYPE_F32, 32);
    gb_pad(&b, 32);
    gb_bytes(&b, fill, 40);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "tensor 'b' data [32, 48)");
    gb_free(&b);
    /* exactly enough data (no trailing padding) is fine */
    gb_header(&b, 3, 2, 0);
    gb_tensor_info(&b, "a", 1, ne, LV_TYPE_F32, 0);
    gb_tensor_info(&b, "b", 1, ne, LV_TYPE_F32, 32);
    gb_pad(&b, 32);
    gb_bytes(&b, fill, 48);
    gb_guard gd;
    lv_gguf *g = OPEN_OK(&gd, &b);
    CHECK(g && lv_gguf_tensor_at(g, 1)->nbytes == 16, "unpadded last tensor");
    lv_gguf_close(g);
    gb_guard_free(&gd);
    gb_free(&b);
    /* tensors with no data at all need no bytes, but the data section must exist */
    uint64_t zero[2] = {0, 5};
    tensor_file(&b, "t", 2, zero, LV_TYPE_F32, 0, 0);
    g = OPEN_OK(&gd, &b);
    CHECK(g && lv_gguf_tensor_at(g, 0)->nbytes == 0, "zero-element tensor");
    lv_gguf_close(g);
    gb_guard_free(&gd);
    gb_free(&b);
}

/* -------------------------------------------------------------------------------------------
 * every prefix, random mutations
 * ----------------------------------------------------------------------------------------- */

TEST(gguf_rejects_every_truncation) {
    gb_buf b = {0};
    gb_small_file(&b, lv_test_seed());
    gb_guard gd;
    lv_gguf *g = OPEN_OK(&gd, &b);
    REQUIRE(g, "the full file parses");
    /* the file may end anywhere after the last tensor's bytes (its padding is optional) */
    const lv_gguf_tensor *last = lv_gguf_tensor_at(g, lv_gguf_n_tensors(g) - 1);
    const uint64_t min_valid = lv_gguf_data_offset(g) + last->offset + last->nbytes;
    lv_gguf_close(g);
    gb_guard_free(&gd);
    CHECK(min_valid < b.n, "the last tensor is padded (%llu of %zu bytes)", (unsigned long long)min_valid, b.n);
    int wrong = 0;
    for (size_t n = 0; n < b.n; n++) {
        lv_error_clear();
        lv_status st = gb_open_guarded(&gd, b.p, n, &g);
        bool want_ok = n >= min_valid;
        if ((st == LV_OK) != want_ok || (!want_ok && (st != LV_ERR_FORMAT || !lv_last_error()[0]))) {
            if (wrong++ < 5)
                CHECK(0, "prefix of %zu bytes: status %s (%s)", n, lv_status_str(st), lv_last_error());
        }
        if (g) {
            int bad = 0;
            gguf_walk(g, gd.data, gd.n, &bad);
            CHECK(bad == 0, "prefix of %zu bytes: %d invariants violated", n, bad);
        }
        lv_gguf_close(g);
        gb_guard_free(&gd);
    }
    CHECK(wrong == 0, "%d of %zu prefixes handled wrongly", wrong, b.n);
    gb_free(&b);
}

/* lv_gguf_open on files: empty, missing, a directory */
TEST(gguf_open_file_errors) {
    lv_gguf *g = (lv_gguf *)1;
    const char *path = gb_tmp_path("empty.gguf");
    REQUIRE(gb_write_file(path, "", 0), "writing %s", path);
    lv_status st = lv_gguf_open(path, &g);
    CHECK(st == LV_ERR_FORMAT && g == NULL, "empty file: %s", lv_status_str(st));
    CHECK(strstr(lv_last_error(), "empty.gguf") && strstr(lv_last_error(), "too small"), "message: %s", lv_last_error());
    st = lv_gguf_open(gb_tmp_path("does-not-exist.gguf"), &g);
    CHECK(st == LV_ERR_IO && g == NULL && strstr(lv_last_error(), "cannot open"), "missing file: %s", lv_last_error());
    st = lv_gguf_open(lv_test_tmpdir(), &g);
    CHECK(st == LV_ERR_IO && g == NULL && strstr(lv_last_error(), "not a regular file"), "directory: %s", lv_last_error());
    /* a truncated file on disk: the message names the file */
    gb_buf b = {0};
    gb_small_file(&b, 1);
    path = gb_tmp_path("truncated.gguf");
    REQUIRE(gb_write_file(path, b.p, b.n / 2), "writing %s", path);
    st = lv_gguf_open(path, &g);
    CHECK(st == LV_ERR_FORMAT && g == NULL && strstr(lv_last_error(), "truncated.gguf: "), "truncated file: %s", lv_last_error());
    gb_free(&b);
}

/* apply one random mutation to buf (length may shrink) */
static void mutate(lv_test_rng *r, gb_buf *b) {
    if (b->n == 0) return;
    size_t at = (size_t)(lv_test_rng_u64(r) % b->n);
    switch (lv_test_rng_u64(r) % 6) {
    case 0: b->p[at] ^= (uint8_t)(1u << (lv_test_rng_u64(r) % 8)); break;
    case 1: b->p[at] = (uint8_t)lv_test_rng_u64(r); break;
    case 2: b->p[at] = (uint8_t)(lv_test_rng_u64(r) % 2 ? 0xff : 0x00); break;
    case 3: { /* an interesting 32- or 64-bit value at an 8-aligned spot of the header area */
        static const uint64_t vals[] = {0, 1, 2, 4, 5, 9, 13, 31, 32, 63, 64, 255, 0x7fffffff, 0x80000000u, 0xffffffffu,
                                        (uint64_t)1 << 32, (uint64_t)INT64_MAX, (uint64_t)INT64_MIN, UINT64_MAX};
        uint64_t v = vals[lv_test_rng_u64(r) % LV_ARRAY_LEN(vals)];
        size_t w = lv_test_rng_u64(r) % 2 ? 4 : 8;
        at &= ~(size_t)3;
        if (at + w <= b->n) memcpy(b->p + at, &v, w);
        break;
    }
    case 4: b->n = at; break; /* truncate */
    default: { /* copy a run of bytes from elsewhere */
        size_t from = (size_t)(lv_test_rng_u64(r) % b->n), len = 1 + lv_test_rng_u64(r) % 16;
        if (from + len <= b->n && at + len <= b->n) memmove(b->p + at, b->p + from, len);
        break;
    }
    }
}

TEST(gguf_survives_random_mutations) {
    lv_test_rng r = {lv_test_seed() ^ 0x6d757461746521ull};
    gb_buf base = {0};
    gb_small_file(&base, lv_test_seed());
    const int iters = lv_test_quick() ? 5000 : 20000;
    int accepted = 0, rejected = 0, silent = 0, violations = 0;
    for (int it = 0; it < iters; it++) {
        gb_buf b = {0};
        gb_bytes(&b, base.p, base.n);
        int n_mut = 1 + (int)(lv_test_rng_u64(&r) % 3);
        for (int k = 0; k < n_mut; k++) mutate(&r, &b);
        gb_guard gd;
        lv_gguf *g = NULL;
        lv_error_clear();
        lv_status st = gb_open_guarded(&gd, b.p, b.n, &g);
        if (st == LV_OK) {
            accepted++;
            int bad = 0;
            gguf_walk(g, gd.data, gd.n, &bad);
            violations += bad != 0;
        } else {
            rejected++;
            if (!lv_last_error()[0] || (st != LV_ERR_FORMAT && st != LV_ERR_UNSUPPORTED)) silent++;
        }
        lv_gguf_close(g);
        gb_guard_free(&gd);
        gb_free(&b);
    }
    CHECK(violations == 0, "%d accepted mutants broke the reader's invariants", violations);
    CHECK(silent == 0, "%d rejections without a message or with an odd status", silent);
    CHECK(rejected > iters / 4, "only %d of %d mutants rejected", rejected, iters);
    CHECK(accepted > 0, "no mutant accepted (the walker never ran)");
    gb_free(&base);
}

/* -------------------------------------------------------------------------------------------
 * regressions
 * ----------------------------------------------------------------------------------------- */

/* The reader used to allocate its key/name arena at the size of the whole file, so opening a
 * model bigger than RAM failed with "out of memory" (and ASan aborted on the 1 TiB request).
 * A sparse file of 1 TiB: only the header is ever read. */
TEST(gguf_open_huge_sparse_file) {
    const uint64_t tib = (uint64_t)1 << 40;
    gb_buf b = {0};
    uint64_t ne[2] = {(uint64_t)1 << 28, 1024}; /* 2^38 f32 = 1 TiB */
    gb_header(&b, 3, 1, 1);
    gb_str(&b, "general.name");
    gb_u32(&b, LV_GGUF_STRING);
    gb_str(&b, "sparse");
    gb_tensor_info(&b, "huge", 2, ne, LV_TYPE_F32, 0);
    gb_pad(&b, 32);
    const size_t header = b.n;
    const char *path = gb_tmp_path("sparse-1tib.gguf");
    REQUIRE(gb_write_file(path, b.p, b.n), "writing %s", path);
    gb_free(&b);
    if (truncate(path, (off_t)(header + tib)) != 0) {
        unlink(path);
        SKIP("the scratch file system cannot hold a sparse 1 TiB file");
    }
    lv_gguf *g = NULL;
    lv_status st = lv_gguf_open(path, &g);
    if (st == LV_ERR_IO && strstr(lv_last_error(), "cannot map")) {
        unlink(path);
        SKIP("no room for a 1 TiB mapping here (ulimit -v?): %s", lv_last_error());
    }
    CHECK(st == LV_OK, "opening a 1 TiB file: %s", lv_last_error());
    if (g) {
        const lv_gguf_tensor *t = lv_gguf_tensor_at(g, 0);
        CHECK(lv_gguf_file_size(g) == header + tib, "file size");
        CHECK(t->nbytes == tib && lv_gguf_data_offset(g) == header, "tensor of 1 TiB at %llu", (unsigned long long)lv_gguf_data_offset(g));
        CHECK(strcmp(lv_gguf_key(g, 0), "general.name") == 0 && strcmp(t->name, "huge") == 0, "names");
    }
    lv_gguf_close(g);
    unlink(path);
}

/* Keys and names spread over many name chunks, and a key longer than a chunk. */
TEST(gguf_many_and_long_names) {
    lv_gguf_writer *w = lv_gguf_writer_create();
    REQUIRE(w, "create");
    enum { N = 3000 };
    char key[64];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "many.keys.number.%05d", i);
        REQUIRE(lv_gguf_writer_set_u32(w, key, (uint32_t)i), "set %s", key);
    }
    static char long_key[40001];
    memset(long_key, 'k', sizeof(long_key) - 1);
    REQUIRE(lv_gguf_writer_set_u32(w, long_key, 42), "set the long key");
    REQUIRE(lv_gguf_writer_set_u32(w, "after.the.long.key", 43), "set");
    char name[64];
    int64_t ne[1] = {1};
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "tensor.%03d.with.a.rather.long.name.to.fill.chunks.%d", i, i);
        REQUIRE(lv_gguf_writer_add_tensor(w, name, LV_TYPE_F32, 1, ne), "add %s", name);
    }
    float one = 1.0f;
    const void *data[200];
    for (int i = 0; i < 200; i++) data[i] = &one;
    gb_buf b = {0};
    REQUIRE(gb_write_mem(w, data, &b), "write");
    lv_gguf_writer_free(w);
    gb_guard gd;
    lv_gguf *g = OPEN_OK(&gd, &b);
    REQUIRE(g, "open");
    CHECK(lv_gguf_n_kv(g) == N + 2 && lv_gguf_n_tensors(g) == 200, "counts");
    int wrong = 0;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "many.keys.number.%05d", i);
        int64_t k = lv_gguf_find_key(g, key), v = -1;
        if (k != i || !lv_gguf_get_i64(g, k, &v) || v != i) wrong++;
    }
    CHECK(wrong == 0, "%d keys wrong", wrong);
    int64_t k = lv_gguf_find_key(g, long_key), v = 0;
    CHECK(k == N && strlen(lv_gguf_key(g, k)) == sizeof(long_key) - 1 && lv_gguf_get_i64(g, k, &v) && v == 42, "the long key");
    k = lv_gguf_find_key(g, "after.the.long.key");
    CHECK(k == N + 1 && lv_gguf_get_i64(g, k, &v) && v == 43, "the key after the long one");
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "tensor.%03d.with.a.rather.long.name.to.fill.chunks.%d", i, i);
        if (lv_gguf_find_tensor(g, name) != i) wrong++;
    }
    CHECK(wrong == 0, "%d tensor names wrong", wrong);
    lv_gguf_close(g);
    gb_guard_free(&gd);
    gb_free(&b);
}

/* A file whose tensors all have zero bytes but which ends inside the padding before the data
 * section used to be accepted with tensor data pointers past the end of the image. */
TEST(gguf_rejects_missing_data_section) {
    gb_buf b = {0};
    uint64_t ne[2] = {0, 4};
    gb_header(&b, 3, 1, 0);
    gb_tensor_info(&b, "empty", 2, ne, LV_TYPE_F32, 0);
    CHECK(b.n % 32 != 0, "the header ends unaligned (%zu)", b.n);
    const size_t unpadded = b.n;
    EXPECT_BAD(&b, LV_ERR_FORMAT, "data section");
    gb_pad(&b, 32);
    for (size_t n = unpadded; n <= b.n; n++) {
        gb_guard gd;
        lv_gguf *g = NULL;
        lv_status st = gb_open_guarded(&gd, b.p, n, &g);
        CHECK((st == LV_OK) == (n == b.n), "header of %zu bytes padded to %zu: %s", n, b.n, lv_last_error());
        if (g) {
            int bad = 0;
            gguf_walk(g, gd.data, gd.n, &bad);
            CHECK(bad == 0 && lv_gguf_tensor_at(g, 0)->data == gd.data + gd.n, "empty tensor data at the end of the image");
        }
        lv_gguf_close(g);
        gb_guard_free(&gd);
    }
    gb_free(&b);
    /* without tensors there is no data section and no padding is needed */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "k");
    gb_u32(&b, LV_GGUF_UINT8);
    gb_u8(&b, 1);
    gb_guard gd;
    lv_gguf *g = OPEN_OK(&gd, &b);
    CHECK(g != NULL, "no tensors, no padding");
    lv_gguf_close(g);
    gb_guard_free(&gd);
    gb_free(&b);
}

/* A bool scalar other than 0/1 was rejected but the same byte inside a bool array was not. */
TEST(gguf_rejects_bad_bool_array_element) {
    gb_buf b = {0};
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "flags");
    gb_u32(&b, LV_GGUF_ARRAY);
    gb_u32(&b, LV_GGUF_BOOL);
    gb_u64(&b, 4);
    gb_bytes(&b, "\1\0\2\1", 4);
    EXPECT_BAD(&b, LV_ERR_FORMAT, "key 'flags' element 2 is a bool with value 2");
    b.p[b.n - 2] = 0xff;
    EXPECT_BAD(&b, LV_ERR_FORMAT, "element 2 is a bool with value 255");
    b.p[b.n - 2] = 1;
    gb_guard gd;
    lv_gguf *g = OPEN_OK(&gd, &b);
    CHECK(g && lv_gguf_arr_n(g, 0) == 4 && memcmp(lv_gguf_arr_data(g, 0), "\1\0\1\1", 4) == 0, "valid bool array");
    lv_gguf_close(g);
    gb_guard_free(&gd);
    gb_free(&b);
}

/* lv_gguf_get_f64 / arr_get_f64 of a u64 above INT64_MAX used to fail ("not a number") although
 * the contract converts integers to floats; get_i64 must still refuse it. */
TEST(gguf_u64_above_int64_max_is_a_number) {
    lv_gguf_writer *w = lv_gguf_writer_create();
    REQUIRE(w, "create");
    const uint64_t vals[2] = {UINT64_MAX, (uint64_t)INT64_MAX};
    CHECK(lv_gguf_writer_set_u64(w, "big", UINT64_MAX) && lv_gguf_writer_set_arr(w, "bigs", LV_GGUF_UINT64, vals, 2), "set");
    gb_buf b = {0};
    REQUIRE(gb_write_mem(w, NULL, &b), "write");
    lv_gguf_writer_free(w);
    gb_guard gd;
    lv_gguf *g = OPEN_OK(&gd, &b);
    REQUIRE(g, "open");
    double f = 0;
    int64_t i = 0;
    uint64_t u = 0;
    CHECK(lv_gguf_get_f64(g, 0, &f) && f == 18446744073709551615.0, "get_f64: %g", f);
    CHECK(!lv_gguf_get_i64(g, 0, &i), "get_i64 of 2^64-1");
    CHECK(lv_gguf_get_u64(g, 0, &u) && u == UINT64_MAX, "get_u64");
    CHECK(lv_gguf_arr_get_f64(g, 1, 0, &f) && f == 18446744073709551615.0, "arr_get_f64[0]");
    CHECK(!lv_gguf_arr_get_i64(g, 1, 0, &i), "arr_get_i64[0]");
    CHECK(lv_gguf_arr_get_i64(g, 1, 1, &i) && i == INT64_MAX, "arr_get_i64[1]");
    lv_gguf_close(g);
    gb_guard_free(&gd);
    gb_free(&b);
}

/* An out-of-range key index is a caller bug: it aborts (always-on assert) instead of reading
 * outside the reader's tables. Run in a child process. */
static bool aborts_in_child(const lv_gguf *g, int which, int64_t i) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int null_fd = open("/dev/null", O_WRONLY);
        if (null_fd >= 0) dup2(null_fd, 2);
        double f;
        switch (which) {
        case 0: (void)lv_gguf_key(g, i); break;
        case 1: (void)lv_gguf_get_f64(g, i, &f); break;
        default: (void)lv_gguf_arr_str(g, i, 0); break;
        }
        _exit(0);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return false;
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

TEST(gguf_key_index_out_of_range_aborts) {
    gb_buf b = {0};
    gb_small_file(&b, 5);
    lv_gguf *g = NULL;
    REQUIRE(lv_gguf_open_memory(b.p, b.n, &g) == LV_OK, "open");
    const int64_t n = lv_gguf_n_kv(g);
    CHECK(aborts_in_child(g, 0, n), "lv_gguf_key(n_kv)");
    CHECK(aborts_in_child(g, 1, -1), "lv_gguf_get_f64(-1)");
    CHECK(aborts_in_child(g, 2, INT64_MAX), "lv_gguf_arr_str(INT64_MAX)");
    CHECK(!aborts_in_child(g, 0, n - 1), "the last valid index");
    lv_gguf_close(g);
    gb_free(&b);
}
