/*
 * heads.c: DuoAttention head patterns: reading the published full_attention_heads.tsv files and
 * turning trained gates into retrieval / streaming heads (PAPERS.md §1.2).
 *
 * File format: one line per layer, one tab-separated float per KV head (numpy's %.18e), no
 * header. Values may be slightly negative. Every line must have the same number of columns.
 * Accepted leniently: spaces as separators, CRLF line ends, blank (or whitespace-only) lines,
 * a missing final newline, a UTF-8 byte order mark. Rejected with the line and column: anything
 * that is not a finite number representable as a float, ragged rows, NUL bytes, more than
 * HEADS_MAX_DIM rows or columns, files over HEADS_MAX_FILE bytes.
 *
 * Binarization (lv_head_pattern_binarize) is the reference's sparsify_attention_heads: clip to
 * [0, 1], add U(0, 1e-6) noise (ours is splitmix64 from a seed, not numpy's generator, so the
 * heads chosen among exact ties differ from the reference's), take numpy's default quantile
 * (linear interpolation between closest ranks) of all values, keep heads >= the threshold. With
 * distinct values that keeps exactly n - ceil(sparsity * (n - 1)) heads.
 */
#include "core/core.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lv_head_pattern {
    int32_t n_layer, n_head_kv;
    float *gate; /* (n_layer, n_head_kv), raw (not clipped) */
};

#define HEADS_MAX_FILE (16 << 20)
#define HEADS_MAX_DIM 4096

lv_attention_params lv_attention_default_params(void) {
    lv_attention_params p;
    memset(&p, 0, sizeof(p));
    p.sparsity = 0.5f;
    p.pattern_seed = 42;
    p.sink = 64;
    p.window = 256;
    p.kv_budget = 4096;
    p.select_every = 4;
    p.select_drift = 0.5f;
    p.block_size = 64;
    p.local_blocks = 16;
    p.vert_stride = 8;
    return p;
}

/* Read at most HEADS_MAX_FILE bytes of path into a NUL-terminated buffer. */
static lv_status read_text(const char *path, char **out, size_t *out_len) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return lv_error(LV_ERR_IO, "cannot open head pattern '%s': %s", path, strerror(errno));
    size_t cap = 0, n = 0;
    char *buf = NULL;
    lv_status st = LV_OK;
    for (;;) {
        if (n == cap) {
            if (cap > HEADS_MAX_FILE) {
                st = lv_error(LV_ERR_FORMAT, "head pattern '%s' is larger than %d bytes: not a head pattern", path, HEADS_MAX_FILE);
                goto end;
            }
            size_t nc = cap ? 2 * cap : 64 * 1024;
            if (nc > (size_t)HEADS_MAX_FILE + 1) nc = (size_t)HEADS_MAX_FILE + 1;
            if (nc == cap) nc = cap + 1;
            char *nb = lv_realloc(buf, nc + 1);
            if (!nb) {
                st = LV_ERR_NOMEM;
                goto end;
            }
            buf = nb;
            cap = nc;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        st = lv_error(LV_ERR_IO, "reading head pattern '%s' failed", path);
        goto end;
    }
    if (n > HEADS_MAX_FILE) {
        st = lv_error(LV_ERR_FORMAT, "head pattern '%s' is larger than %d bytes: not a head pattern", path, HEADS_MAX_FILE);
        goto end;
    }
    if (!buf) {
        buf = lv_malloc(1);
        if (!buf) {
            st = LV_ERR_NOMEM;
            goto end;
        }
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    buf = NULL;
end:
    fclose(f);
    lv_free(buf);
    return st;
}

/* A printable rendering of the text at q for error messages. */
static void show_(const char *q, char *buf, size_t size) {
    size_t j = 0;
    for (size_t i = 0; q[i] && q[i] != '\n' && q[i] != '\t' && j + 5 < size && i < 24; i++) {
        unsigned char c = (unsigned char)q[i];
        if (c >= 0x20 && c < 0x7f) buf[j++] = (char)c;
        else j += (size_t)snprintf(buf + j, size - j, "\\x%02x", c);
    }
    buf[j] = '\0';
}

lv_status lv_head_pattern_load(const char *path, lv_head_pattern **out) {
    if (!out) return lv_error(LV_ERR_INVALID_ARG, "lv_head_pattern_load: out is NULL");
    *out = NULL;
    if (!path) return lv_error(LV_ERR_INVALID_ARG, "lv_head_pattern_load: path is NULL");
    char *text = NULL;
    size_t n = 0;
    lv_status st = read_text(path, &text, &n);
    if (st != LV_OK) return st;
    float *vals = NULL;
    int64_t cap = 0, count = 0;
    int32_t rows = 0, cols = -1;
    int64_t line_no = 0;
    char shown[128];
    if (strlen(text) != n) {
        line_no = 1;
        for (const char *c = text; *c; c++) line_no += *c == '\n';
        st = lv_error(LV_ERR_FORMAT, "head pattern '%s' line %lld: a NUL byte: not a text file", path, (long long)line_no);
        goto end;
    }
    char *p = text;
    if ((unsigned char)p[0] == 0xef && (unsigned char)p[1] == 0xbb && (unsigned char)p[2] == 0xbf) p += 3;
    while (*p) {
        /* one line */
        char *eol = strchr(p, '\n');
        if (eol) *eol = '\0';
        char *line = p;
        p = eol ? eol + 1 : p + strlen(p);
        line_no++;
        int32_t c = 0;
        char *q = line;
        for (;;) {
            while (*q == '\t' || *q == ' ' || *q == '\r') q++;
            if (*q == '\0') break;
            char *end;
            errno = 0;
            double v = strtod(q, &end);
            if (end == q || !isfinite(v) || (errno == ERANGE && fabs(v) > 1.0)) {
                show_(q, shown, sizeof(shown));
                st = lv_error(LV_ERR_FORMAT, "head pattern '%s' line %lld column %d: '%s' is not a finite number", path, (long long)line_no,
                              c + 1, shown);
                goto end;
            }
            if (fabs(v) > FLT_MAX) {
                show_(q, shown, sizeof(shown));
                st = lv_error(LV_ERR_FORMAT, "head pattern '%s' line %lld column %d: %s is out of the range of a float", path,
                              (long long)line_no, c + 1, shown);
                goto end;
            }
            if (*end != '\t' && *end != ' ' && *end != '\0' && *end != '\r') {
                show_(end, shown, sizeof(shown));
                st = lv_error(LV_ERR_FORMAT, "head pattern '%s' line %lld column %d: unexpected '%s' after a number (columns are tab-separated)",
                              path, (long long)line_no, c + 1, shown);
                goto end;
            }
            if (c == HEADS_MAX_DIM) {
                st = lv_error(LV_ERR_FORMAT, "head pattern '%s' line %lld has more than %d columns", path, (long long)line_no, HEADS_MAX_DIM);
                goto end;
            }
            if (count == cap) {
                int64_t nc = cap ? 2 * cap : 256;
                float *nv = lv_realloc(vals, (size_t)nc * sizeof(float));
                if (!nv) {
                    st = LV_ERR_NOMEM;
                    goto end;
                }
                vals = nv;
                cap = nc;
            }
            vals[count++] = (float)v;
            c++;
            q = end;
        }
        if (c == 0) continue; /* blank lines (a trailing newline) */
        if (cols < 0) cols = c;
        if (c != cols) {
            st = lv_error(LV_ERR_FORMAT, "head pattern '%s': line %lld has %d columns, the first row has %d (rows = layers, columns = KV heads)",
                          path, (long long)line_no, c, cols);
            goto end;
        }
        if (rows == HEADS_MAX_DIM) {
            st = lv_error(LV_ERR_FORMAT, "head pattern '%s' has more than %d rows", path, HEADS_MAX_DIM);
            goto end;
        }
        rows++;
    }
    if (rows == 0) {
        st = lv_error(LV_ERR_FORMAT, "head pattern '%s' has no values (expected one row of gates per layer)", path);
        goto end;
    }
    lv_head_pattern *hp = lv_calloc(1, sizeof(*hp));
    if (!hp) {
        st = LV_ERR_NOMEM;
        goto end;
    }
    hp->n_layer = rows;
    hp->n_head_kv = cols;
    hp->gate = vals;
    vals = NULL;
    *out = hp;
end:
    lv_free(vals);
    lv_free(text);
    return st;
}

void lv_head_pattern_free(lv_head_pattern *p) {
    if (!p) return;
    lv_free(p->gate);
    lv_free(p);
}

int32_t lv_head_pattern_n_layer(const lv_head_pattern *p) { return p ? p->n_layer : 0; }
int32_t lv_head_pattern_n_head_kv(const lv_head_pattern *p) { return p ? p->n_head_kv : 0; }

float lv_head_pattern_gate(const lv_head_pattern *p, int32_t layer, int32_t head) {
    if (!p || layer < 0 || layer >= p->n_layer || head < 0 || head >= p->n_head_kv) return NAN;
    return p->gate[(int64_t)layer * p->n_head_kv + head];
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The clipped, noised values (v, n of them) and the threshold at `sparsity`; either output may
 * be NULL. Returns the retrieval count, or -1 (lv_last_error) on failure. */
static int64_t binarize_(const lv_head_pattern *p, float sparsity, uint64_t seed, uint8_t *is_retrieval, double *thr_out) {
    if (!p) {
        lv_error(LV_ERR_INVALID_ARG, "head pattern is NULL");
        return -1;
    }
    if (isnan(sparsity)) {
        lv_error(LV_ERR_INVALID_ARG, "sparsity is NaN (expected a fraction in [0, 1])");
        return -1;
    }
    const int64_t n = (int64_t)p->n_layer * p->n_head_kv;
    if (sparsity <= 0.0f) {
        if (is_retrieval) memset(is_retrieval, 1, (size_t)n);
        if (thr_out) *thr_out = -INFINITY;
        return n;
    }
    if (sparsity >= 1.0f) {
        if (is_retrieval) memset(is_retrieval, 0, (size_t)n);
        if (thr_out) *thr_out = INFINITY;
        return 0;
    }
    double *v = lv_mallocn((size_t)n, sizeof(double)), *sorted = lv_mallocn((size_t)n, sizeof(double));
    if (!v || !sorted) {
        lv_free(v);
        lv_free(sorted);
        return -1;
    }
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) {
        double g = p->gate[i];
        g = g < 0 ? 0 : g > 1 ? 1 : g;
        /* splitmix64 -> uniform [0, 1e-6) */
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        v[i] = g + (double)(z >> 11) * (1.0 / 9007199254740992.0) * 1e-6;
        sorted[i] = v[i];
    }
    qsort(sorted, (size_t)n, sizeof(double), cmp_double);
    /* numpy's default quantile: linear interpolation between closest ranks */
    const double pos = (double)sparsity * (double)(n - 1);
    const int64_t lo = (int64_t)floor(pos), hi = lo + 1 < n ? lo + 1 : lo;
    const double thr = sorted[lo] + (pos - (double)lo) * (sorted[hi] - sorted[lo]);
    int64_t n_ret = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t r = v[i] >= thr;
        if (is_retrieval) is_retrieval[i] = r;
        n_ret += r;
    }
    if (thr_out) *thr_out = thr;
    lv_free(v);
    lv_free(sorted);
    return n_ret;
}

int64_t lv_head_pattern_binarize(const lv_head_pattern *p, float sparsity, uint64_t seed, uint8_t *is_retrieval) {
    if (!is_retrieval) {
        lv_error(LV_ERR_INVALID_ARG, "lv_head_pattern_binarize: is_retrieval is NULL");
        return -1;
    }
    return binarize_(p, sparsity, seed, is_retrieval, NULL);
}

double lv_head_pattern_threshold(const lv_head_pattern *p, float sparsity, uint64_t seed) {
    double thr = NAN;
    if (binarize_(p, sparsity, seed, NULL, &thr) < 0) return NAN;
    return thr;
}
