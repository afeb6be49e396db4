/*
 * test_heads.c: DuoAttention head patterns (src/kv/heads.c): the global-quantile binarization
 * (edge sparsities, ties broken by the noise, clipping, nesting, exact counts), the published
 * pattern files (shapes, counts at sparsity 0.5, the fractions of gates >= 0.5 quoted in
 * PAPERS.md §1.4), and the TSV reader's errors (ragged rows, non-numbers, empty, huge, NUL
 * bytes, too many columns) and round trip.
 */
#define _GNU_SOURCE
#include "lv_test.h"
#include "longview.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Write text to a scratch file named name; returns its path (static buffer). */
static const char *write_tmp(const char *name, const char *text, size_t len) {
    static char path[1024];
    snprintf(path, sizeof(path), "%s/heads-%s.tsv", lv_test_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    fwrite(text, 1, len, f);
    fclose(f);
    return path;
}

static lv_head_pattern *load_text(const char *name, const char *text, lv_status *st) {
    const char *path = write_tmp(name, text, strlen(text));
    lv_head_pattern *p = NULL;
    *st = path ? lv_head_pattern_load(path, &p) : LV_ERR_IO;
    return p;
}

/* A pattern from values (n_layer x n_head_kv), through a file written with %.18e like numpy. */
static lv_head_pattern *pattern_from(const char *name, const double *v, int nl, int nh) {
    size_t cap = (size_t)nl * nh * 32 + 16, n = 0;
    char *text = malloc(cap);
    if (!text) return NULL;
    for (int l = 0; l < nl; l++)
        for (int h = 0; h < nh; h++) n += (size_t)snprintf(text + n, cap - n, "%.18e%c", v[l * nh + h], h + 1 < nh ? '\t' : '\n');
    lv_status st;
    lv_head_pattern *p = load_text(name, text, &st);
    free(text);
    return p;
}

/* The count the quantile rule keeps for n distinct values: n - ceil(sparsity * (n - 1)). */
static int64_t expected_count(int64_t n, double sparsity) {
    if (sparsity <= 0) return n;
    if (sparsity >= 1) return 0;
    return n - (int64_t)ceil(sparsity * (double)(n - 1) - 1e-9);
}

TEST(heads_binarize_edge_sparsities) {
    double v[12];
    for (int i = 0; i < 12; i++) v[i] = i / 11.0;
    lv_head_pattern *p = pattern_from("edge", v, 3, 4);
    REQUIRE(p, "load: %s", lv_last_error());
    CHECK(lv_head_pattern_n_layer(p) == 3 && lv_head_pattern_n_head_kv(p) == 4, "shape %dx%d", lv_head_pattern_n_layer(p),
          lv_head_pattern_n_head_kv(p));
    uint8_t r[12];
    const float all[] = {0.0f, -0.5f, -INFINITY};
    for (size_t i = 0; i < LV_ARRAY_LEN(all); i++) {
        memset(r, 7, sizeof(r));
        CHECK(lv_head_pattern_binarize(p, all[i], 1, r) == 12, "sparsity %g keeps every head", (double)all[i]);
        int ok = 1;
        for (int k = 0; k < 12; k++) ok &= r[k] == 1;
        CHECK(ok, "flags are 0/1 and all set at sparsity %g", (double)all[i]);
        CHECK(isinf(lv_head_pattern_threshold(p, all[i], 1)) && lv_head_pattern_threshold(p, all[i], 1) < 0, "threshold -inf");
    }
    const float none[] = {1.0f, 1.5f, INFINITY};
    for (size_t i = 0; i < LV_ARRAY_LEN(none); i++) {
        memset(r, 7, sizeof(r));
        CHECK(lv_head_pattern_binarize(p, none[i], 1, r) == 0, "sparsity %g keeps none", (double)none[i]);
        int ok = 1;
        for (int k = 0; k < 12; k++) ok &= r[k] == 0;
        CHECK(ok, "flags all clear at sparsity %g", (double)none[i]);
        CHECK(lv_head_pattern_threshold(p, none[i], 1) == INFINITY, "threshold +inf");
    }
    CHECK(lv_head_pattern_binarize(p, NAN, 1, r) == -1, "NaN sparsity is an error");
    CHECK(strstr(lv_last_error(), "NaN") != NULL, "message: %s", lv_last_error());
    CHECK(isnan(lv_head_pattern_threshold(p, NAN, 1)), "NaN threshold");
    CHECK(lv_head_pattern_binarize(p, 0.5f, 1, NULL) == -1, "NULL output is an error");
    CHECK(lv_head_pattern_binarize(NULL, 0.5f, 1, r) == -1, "NULL pattern is an error");
    /* distinct values: the lowest ceil(s*(n-1)) are streaming, in value order */
    const float sp[] = {0.01f, 0.1f, 0.25f, 0.5f, 0.6f, 0.75f, 0.9f, 0.99f};
    for (size_t i = 0; i < LV_ARRAY_LEN(sp); i++) {
        int64_t n = lv_head_pattern_binarize(p, sp[i], 3, r);
        CHECK(n == expected_count(12, sp[i]), "sparsity %g: %lld retrieval, expected %lld", (double)sp[i], (long long)n,
              (long long)expected_count(12, sp[i]));
        int ok = 1;
        for (int k = 0; k < 12; k++) ok &= r[k] == (k >= 12 - n);
        CHECK(ok, "sparsity %g: the highest gates are the retrieval heads", (double)sp[i]);
        double thr = lv_head_pattern_threshold(p, sp[i], 3);
        CHECK(thr > v[11 - n] && thr <= v[12 - n] + 1e-6, "threshold %g between the last streaming and first retrieval gate", thr);
    }
    lv_head_pattern_free(p);
    lv_head_pattern_free(NULL);
}

TEST(heads_ties_broken_by_noise) {
    /* every gate equal: only the noise orders them */
    double v[64];
    for (int i = 0; i < 64; i++) v[i] = 0.5;
    lv_head_pattern *p = pattern_from("ties", v, 8, 8);
    REQUIRE(p, "load: %s", lv_last_error());
    uint8_t a[64], b[64], c[64];
    CHECK(lv_head_pattern_binarize(p, 0.5f, 42, a) == 32, "half of 64 equal gates (the quantile lies between two noised values)");
    CHECK(lv_head_pattern_binarize(p, 0.5f, 42, b) == 32 && memcmp(a, b, 64) == 0, "the same seed picks the same heads");
    int differ = 0;
    for (uint64_t s = 1; s <= 4 && !differ; s++) {
        CHECK(lv_head_pattern_binarize(p, 0.5f, s, c) == 32, "seed %llu: still half", (unsigned long long)s);
        differ = memcmp(a, c, 64) != 0;
    }
    CHECK(differ, "another seed picks other heads among ties");
    double thr = lv_head_pattern_threshold(p, 0.5f, 42);
    CHECK(thr >= 0.5 && thr < 0.5 + 1e-6, "threshold %.12f within the noise above the tied value", thr);
    lv_head_pattern_free(p);
}

TEST(heads_clip_and_nesting) {
    /* raw values outside [0, 1] are clipped: -3 and 0 tie, 1 and 7 tie */
    lv_test_rng rng = {lv_test_seed() ^ 0x4ead};
    double v[40];
    for (int i = 0; i < 40; i++) v[i] = lv_test_rng_unit(&rng) * 3.0 - 1.0; /* [-1, 2): many clipped */
    lv_head_pattern *p = pattern_from("clip", v, 5, 8);
    REQUIRE(p, "load: %s", lv_last_error());
    CHECK(fabs(lv_head_pattern_gate(p, 0, 0) - v[0]) < 1e-6, "gates are stored raw, not clipped");
    int n_hi = 0, n_lo = 0;
    for (int i = 0; i < 40; i++) n_hi += v[i] >= 1, n_lo += v[i] <= 0;
    uint8_t r[40], prev[40];
    memset(prev, 1, sizeof(prev));
    int64_t last = 40;
    for (int k = 1; k < 20; k++) {
        const float s = (float)k / 20.0f;
        int64_t n = lv_head_pattern_binarize(p, s, 9, r);
        CHECK(n == expected_count(40, s), "sparsity %g: %lld, expected %lld", (double)s, (long long)n, (long long)expected_count(40, s));
        int nested = 1, order = 1;
        for (int i = 0; i < 40; i++) {
            nested &= !r[i] || prev[i];
            double ci = v[i] < 0 ? 0 : v[i] > 1 ? 1 : v[i];
            for (int j = 0; j < 40; j++) {
                double cj = v[j] < 0 ? 0 : v[j] > 1 ? 1 : v[j];
                if (r[i] && !r[j]) order &= ci >= cj; /* no streaming head has a larger clipped gate */
            }
        }
        CHECK(nested, "sparsity %g: the retrieval set shrinks as sparsity grows (same seed)", (double)s);
        CHECK(order, "sparsity %g: retrieval heads have the largest clipped gates", (double)s);
        CHECK(n <= last, "monotone");
        last = n;
        memcpy(prev, r, sizeof(r));
    }
    /* with more clipped-to-1 gates than retrieval slots, which ones win is the noise's choice */
    if (n_hi > 2) {
        const float s = 1.0f - (float)(n_hi - 1) / 39.0f;
        int64_t n = lv_head_pattern_binarize(p, s, 9, r);
        int all_hi = 1;
        for (int i = 0; i < 40; i++)
            if (r[i]) all_hi &= v[i] >= 1;
        CHECK(n >= 1 && all_hi, "sparsity %g: the %lld retrieval heads are among the %d gates >= 1", (double)s, (long long)n, n_hi);
    } else {
        CHECK(n_lo + n_hi >= 0, "(rng gave few clipped values)");
    }
    lv_head_pattern_free(p);
}

static const struct {
    const char *dir;
    int nl, nh;
    double frac_ge_half; /* PAPERS.md §1.4 */
} k_real[] = {
    {"Llama-2-7B-32K-Instruct", 32, 32, 0.44},
    {"Llama-3-8B-Instruct-Gradient-1048k", 32, 8, 0.81},
    {"Llama-3-8B-Instruct-Gradient-4194k", 32, 8, 0.81},
    {"Meta-Llama-3.1-8B-Instruct", 32, 8, 0.91},
    {"Mistral-7B-Instruct-v0.2", 32, 8, 0.95},
    {"Mistral-7B-Instruct-v0.3", 32, 8, 0.94},
};

TEST(heads_real_patterns) {
    const char *data = lv_test_shared_data();
    if (!data) SKIP("../shared/data not found (the published patterns live in patterns/)");
    for (size_t m = 0; m < LV_ARRAY_LEN(k_real); m++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/patterns/%s/full_attention_heads.tsv", data, k_real[m].dir);
        lv_head_pattern *p = NULL;
        lv_status st = lv_head_pattern_load(path, &p);
        CHECK(st == LV_OK, "%s: %s", k_real[m].dir, lv_last_error());
        if (st != LV_OK) continue;
        const int nl = lv_head_pattern_n_layer(p), nh = lv_head_pattern_n_head_kv(p);
        CHECK(nl == k_real[m].nl && nh == k_real[m].nh, "%s: %dx%d, expected %dx%d", k_real[m].dir, nl, nh, k_real[m].nl, k_real[m].nh);
        const int64_t n = (int64_t)nl * nh;
        int64_t ge = 0;
        for (int l = 0; l < nl; l++)
            for (int h = 0; h < nh; h++) ge += lv_head_pattern_gate(p, l, h) >= 0.5f;
        CHECK(fabs((double)ge / (double)n - k_real[m].frac_ge_half) < 0.01, "%s: fraction >= 0.5 is %.4f, PAPERS.md says %.2f", k_real[m].dir,
              (double)ge / (double)n, k_real[m].frac_ge_half);
        uint8_t *r = malloc((size_t)n);
        REQUIRE(r, "malloc");
        const float sp[] = {0.5f, 0.75f, 0.25f};
        for (size_t i = 0; i < LV_ARRAY_LEN(sp); i++) {
            int64_t k = lv_head_pattern_binarize(p, sp[i], 42, r);
            CHECK(k == expected_count(n, sp[i]), "%s at sparsity %g: %lld retrieval heads, expected %lld", k_real[m].dir, (double)sp[i],
                  (long long)k, (long long)expected_count(n, sp[i]));
            int64_t sum = 0;
            for (int64_t j = 0; j < n; j++) sum += r[j];
            CHECK(sum == k, "flags agree with the count");
        }
        CHECK(expected_count(n, 0.5) == n / 2, "exactly half at 0.5");
        free(r);
        lv_head_pattern_free(p);
    }
    /* PAPERS.md §1.4 quotes the first row of the 1048k file; at 0.5 the quantile falls on a tie at 0.9609375 */
    char path[1024];
    snprintf(path, sizeof(path), "%s/patterns/Llama-3-8B-Instruct-Gradient-1048k/full_attention_heads.tsv", data);
    lv_head_pattern *p = NULL;
    REQUIRE(lv_head_pattern_load(path, &p) == LV_OK, "%s", lv_last_error());
    const double row0[8] = {8.59375e-01, 6.5234375e-01, 1.0, 3.3984375e-01, -9.2506e-05, 6.796875e-01, 3.4960938e-01, 2.734375e-01};
    for (int h = 0; h < 8; h++) CHECK(fabs(lv_head_pattern_gate(p, 0, h) - row0[h]) < 1e-6, "row 0 head %d: %g", h, (double)lv_head_pattern_gate(p, 0, h));
    CHECK(fabs(lv_head_pattern_gate(p, 1, 3) - 1.0) < 1e-9, "row 1 head 3 is 1");
    double thr = lv_head_pattern_threshold(p, 0.5f, 42);
    CHECK(thr >= 0.9609375 && thr < 0.9609375 + 1e-6, "threshold %.9f", thr);
    lv_head_pattern_free(p);
}

TEST(heads_tsv_round_trip) {
    lv_test_rng rng = {lv_test_seed() ^ 0x7a5};
    enum { NL = 7, NH = 5 };
    double v[NL * NH];
    for (int i = 0; i < NL * NH; i++) v[i] = lv_test_rng_unit(&rng) * 1.2 - 0.1;
    v[3] = -2.2292137145996094e-05;
    v[4] = 1.0;
    v[5] = 0.0;
    lv_head_pattern *p = pattern_from("roundtrip", v, NL, NH);
    REQUIRE(p, "load: %s", lv_last_error());
    int ok = 1;
    for (int l = 0; l < NL; l++)
        for (int h = 0; h < NH; h++) ok &= lv_head_pattern_gate(p, l, h) == (float)v[l * NH + h];
    CHECK(ok, "every gate reads back as the float of the written double");
    CHECK(isnan(lv_head_pattern_gate(p, NL, 0)) && isnan(lv_head_pattern_gate(p, 0, NH)) && isnan(lv_head_pattern_gate(p, -1, 0)),
          "out-of-range gates are NaN");
    lv_head_pattern_free(p);

    /* lenient forms: CRLF, spaces, blank and whitespace-only lines, no final newline, a BOM, %g */
    lv_status st;
    p = load_text("lenient", "\xef\xbb\xbf" "0.25\t1e0 \r\n\n \t \r\n-0\t0.5\r\n  .75  0x1p-1", &st);
    REQUIRE(st == LV_OK && p, "lenient file: %s", lv_last_error());
    CHECK(lv_head_pattern_n_layer(p) == 3 && lv_head_pattern_n_head_kv(p) == 2, "3x2, got %dx%d", lv_head_pattern_n_layer(p), lv_head_pattern_n_head_kv(p));
    CHECK(lv_head_pattern_gate(p, 0, 1) == 1.0f && lv_head_pattern_gate(p, 2, 0) == 0.75f && lv_head_pattern_gate(p, 2, 1) == 0.5f, "values");
    lv_head_pattern_free(p);
    p = load_text("tiny", "1e-320\t5e-324\n", &st);
    CHECK(st == LV_OK && p && lv_head_pattern_gate(p, 0, 0) == 0.0f, "a subnormal double is a (zero) gate, not an error: %s", lv_last_error());
    lv_head_pattern_free(p);
}

TEST(heads_tsv_errors) {
    static const struct {
        const char *name, *text, *msg;
    } bad[] = {
        {"ragged", "0.1\t0.2\n0.3\n", "line 2 has 1 columns"},
        {"ragged-long", "0.1\t0.2\n0.3\t0.4\t0.5\n", "line 2 has 3 columns"},
        {"ragged-after-blank", "0.1\t0.2\n\n0.3\n", "line 3"},
        {"word", "0.1\tabc\n", "line 1 column 2: 'abc' is not a finite number"},
        {"nan", "0.1\tnan\n", "not a finite number"},
        {"inf", "inf\t0.1\n", "not a finite number"},
        {"overflow", "1e999\t0.1\n", "not a finite number"},
        {"float-range", "1e300\t0.1\n", "out of the range of a float"},
        {"comma", "0.1,0.2\n", "unexpected ',0.2'"},
        {"suffix", "0.1\t0.2x\n", "column 2: unexpected 'x'"},
        {"header", "h0\th1\n0.1\t0.2\n", "line 1 column 1"},
        {"control", "0.1\t\x01\n", "\\x01"},
        {"empty", "", "no values"},
        {"blank", "\n\n  \t\r\n", "no values"},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        lv_status st;
        lv_head_pattern *p = load_text(bad[i].name, bad[i].text, &st);
        CHECK(st == LV_ERR_FORMAT && !p, "%s: status %d", bad[i].name, st);
        CHECK(strstr(lv_last_error(), bad[i].msg) != NULL, "%s: message '%s' lacks '%s'", bad[i].name, lv_last_error(), bad[i].msg);
        lv_head_pattern_free(p);
    }
    /* a NUL byte */
    const char nul[] = "0.1\t0.2\n0.3\0\t0.4\n";
    const char *path = write_tmp("nul", nul, sizeof(nul) - 1);
    lv_head_pattern *p = NULL;
    CHECK(lv_head_pattern_load(path, &p) == LV_ERR_FORMAT && !p && strstr(lv_last_error(), "line 2: a NUL byte"), "NUL: %s", lv_last_error());
    /* too many columns */
    size_t n = 4097 * 2;
    char *wide = malloc(n + 1);
    REQUIRE(wide, "malloc");
    for (size_t i = 0; i < n; i += 2) wide[i] = '1', wide[i + 1] = '\t';
    wide[n - 1] = '\n';
    path = write_tmp("wide", wide, n);
    free(wide);
    CHECK(lv_head_pattern_load(path, &p) == LV_ERR_FORMAT && strstr(lv_last_error(), "more than 4096 columns"), "wide: %s", lv_last_error());
    /* a huge file (sparse: no disk used) is refused by size, without parsing 16 MiB of zeros */
    char huge[1024];
    snprintf(huge, sizeof(huge), "%s/heads-huge.tsv", lv_test_tmpdir());
    FILE *f = fopen(huge, "wb");
    REQUIRE(f, "create %s", huge);
    fputs("0.5\t0.5\n", f);
    fclose(f);
    REQUIRE(truncate(huge, (off_t)64 << 20) == 0, "truncate");
    CHECK(lv_head_pattern_load(huge, &p) == LV_ERR_FORMAT && !p && strstr(lv_last_error(), "larger than"), "huge: %s", lv_last_error());
    unlink(huge);
    /* missing file, directory, NULL arguments */
    CHECK(lv_head_pattern_load("/nonexistent/dir/x.tsv", &p) == LV_ERR_IO && !p && strstr(lv_last_error(), "/nonexistent/dir/x.tsv"),
          "missing: %s", lv_last_error());
    CHECK(lv_head_pattern_load(lv_test_tmpdir(), &p) == LV_ERR_IO && !p, "a directory: %s", lv_last_error());
    CHECK(lv_head_pattern_load(NULL, &p) == LV_ERR_INVALID_ARG, "NULL path");
    CHECK(lv_head_pattern_load(path, NULL) == LV_ERR_INVALID_ARG, "NULL out");
}

TEST(heads_load_out_of_memory) {
    const char *text = "0.1\t0.2\t0.3\n0.4\t0.5\t0.6\n";
    const char *path = write_tmp("oom", text, strlen(text));
    REQUIRE(path, "write");
    int saw_nomem = 0, ok = 0;
    for (int64_t k = 0; k < 16 && !ok; k++) {
        lv_head_pattern *p = NULL;
        lv_test_alloc_fail_after(k);
        lv_status st = lv_head_pattern_load(path, &p);
        lv_test_alloc_fail_after(-1);
        if (st == LV_OK) {
            ok = 1;
            uint8_t r[6];
            CHECK(lv_head_pattern_binarize(p, 0.5f, 1, r) == 3, "loaded after %lld failing allocations", (long long)k);
            lv_test_alloc_fail_after(0);
            CHECK(lv_head_pattern_binarize(p, 0.5f, 1, r) == -1, "binarize reports out of memory");
            lv_test_alloc_fail_after(-1);
        } else {
            saw_nomem += st == LV_ERR_NOMEM && !p;
            CHECK(st == LV_ERR_NOMEM && !p, "allocation %lld failing: status %d, pattern %p", (long long)k, st, (void *)p);
        }
        lv_head_pattern_free(p);
    }
    CHECK(ok && saw_nomem >= 2, "every allocation was tried (%d failures before success)", saw_nomem);
}
