/*
 * heads.c: DuoAttention head patterns: reading the published full_attention_heads.tsv files and
 * turning trained gates into retrieval / streaming heads (PAPERS.md §1.2).
 *
 * File format: one line per layer, one tab-separated float per KV head (numpy's %.18e), no
 * header. Values may be slightly negative. Every line must have the same number of columns.
 */
#include "lv_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lv_head_pattern {
    int32_t n_layer, n_head_kv;
    float *gate; /* (n_layer, n_head_kv) */
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
    p.block_size = 64;
    p.local_blocks = 16;
    p.vert_stride = 8;
    return p;
}

lv_status lv_head_pattern_load(const char *path, lv_head_pattern **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return lv_error(LV_ERR_IO, "cannot open head pattern '%s': %s", path, strerror(errno));
    char *text = lv_malloc(HEADS_MAX_FILE + 1);
    if (!text) {
        fclose(f);
        return LV_ERR_NOMEM;
    }
    size_t n = fread(text, 1, HEADS_MAX_FILE + 1, f);
    int err = ferror(f);
    fclose(f);
    if (err) {
        lv_free(text);
        return lv_error(LV_ERR_IO, "reading head pattern '%s' failed", path);
    }
    if (n > HEADS_MAX_FILE) {
        lv_free(text);
        return lv_error(LV_ERR_FORMAT, "head pattern '%s' is larger than %d bytes", path, HEADS_MAX_FILE);
    }
    text[n] = '\0';
    lv_status st = LV_OK;
    float *vals = NULL;
    int64_t cap = 0, count = 0;
    int32_t rows = 0, cols = -1;
    char *p = text;
    while (*p) {
        /* one line */
        char *eol = strchr(p, '\n');
        if (eol) *eol = '\0';
        char *line = p;
        p = eol ? eol + 1 : p + strlen(p);
        while (*line == ' ' || *line == '\r') line++;
        if (*line == '\0') continue; /* blank lines (a trailing newline) */
        int32_t c = 0;
        char *q = line;
        for (;;) {
            while (*q == '\t' || *q == ' ') q++;
            if (*q == '\0' || *q == '\r') break;
            char *end;
            errno = 0;
            double v = strtod(q, &end);
            if (end == q || errno == ERANGE || !isfinite(v)) {
                st = lv_error(LV_ERR_FORMAT, "head pattern '%s' line %d column %d: '%.20s' is not a finite number", path, rows + 1, c + 1, q);
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
            if (*q != '\t' && *q != ' ' && *q != '\0' && *q != '\r') {
                st = lv_error(LV_ERR_FORMAT, "head pattern '%s' line %d: unexpected '%c' after a number", path, rows + 1, *q);
                goto end;
            }
        }
        if (cols < 0) cols = c;
        if (c != cols) {
            st = lv_error(LV_ERR_FORMAT, "head pattern '%s': line %d has %d columns, line 1 has %d", path, rows + 1, c, cols);
            goto end;
        }
        if (++rows > HEADS_MAX_DIM || cols > HEADS_MAX_DIM) {
            st = lv_error(LV_ERR_FORMAT, "head pattern '%s' is larger than %d x %d", path, HEADS_MAX_DIM, HEADS_MAX_DIM);
            goto end;
        }
    }
    if (rows == 0 || cols <= 0) {
        st = lv_error(LV_ERR_FORMAT, "head pattern '%s' has no values", path);
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

int32_t lv_head_pattern_n_layer(const lv_head_pattern *p) { return p->n_layer; }
int32_t lv_head_pattern_n_head_kv(const lv_head_pattern *p) { return p->n_head_kv; }

float lv_head_pattern_gate(const lv_head_pattern *p, int32_t layer, int32_t head) {
    if (layer < 0 || layer >= p->n_layer || head < 0 || head >= p->n_head_kv) return NAN;
    return p->gate[(int64_t)layer * p->n_head_kv + head];
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int64_t lv_head_pattern_binarize(const lv_head_pattern *p, float sparsity, uint64_t seed, uint8_t *is_retrieval) {
    const int64_t n = (int64_t)p->n_layer * p->n_head_kv;
    if (!(sparsity > 0.0f)) {
        memset(is_retrieval, 1, (size_t)n);
        return n;
    }
    if (sparsity >= 1.0f) {
        memset(is_retrieval, 0, (size_t)n);
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
        is_retrieval[i] = v[i] >= thr;
        n_ret += is_retrieval[i];
    }
    lv_free(v);
    lv_free(sorted);
    return n_ret;
}
