/*
 * gguf_walk.h: visit everything a parsed GGUF exposes, for the tests (tests/gguf/test_gguf.c) and the
 * fuzzer (fuzz/fuzz_gguf.c). Header-only so that the fuzz target links nothing but the library.
 *
 * gguf_walk calls every accessor on every key, value, array element and tensor, reads every
 * byte they point at (so ASan sees any pointer outside the image), checks the reader's
 * invariants and returns a checksum of what it read. *bad receives the number of violated
 * invariants:
 *  - each key and tensor name is non-empty, NUL-free, and found again by lookup at its index;
 *  - string values and array elements lie inside [base, base + size);
 *  - tensors have 1..4 dims, unused dims 1, a known type, whole blocks per row, the size
 *    the type implies, and data inside [base, base + size) at an aligned offset after the header.
 */
#ifndef LV_TEST_GGUF_WALK_H
#define LV_TEST_GGUF_WALK_H

#include "gguf/gguf.h"
#include "gguf/quant.h"

#include <stdint.h>
#include <string.h>

static uint64_t gguf_walk_mix_(uint64_t h, uint64_t v) { return (h ^ v) * 1099511628211ull; }

static int gguf_walk_inside_(const void *p, uint64_t n, const void *base, uint64_t size) {
    const uint8_t *b = base, *q = p;
    if (n == 0) return q >= b && q <= b + size;
    return q >= b && q <= b + size && n <= (uint64_t)(b + size - q);
}

static uint64_t gguf_walk_bytes_(uint64_t h, const void *p, uint64_t n) {
    const uint8_t *q = p;
    for (uint64_t i = 0; i < n; i++) h = gguf_walk_mix_(h, q[i]);
    return h;
}

static uint64_t gguf_walk(const lv_gguf *g, const void *base, uint64_t size, int *bad) {
    uint64_t h = 1469598103934665603ull;
    *bad = 0;
    h = gguf_walk_mix_(h, lv_gguf_version(g));
    h = gguf_walk_mix_(h, lv_gguf_alignment(g));
    if (lv_gguf_file_size(g) != size) (*bad)++;
    uint32_t align = lv_gguf_alignment(g);
    if (align == 0 || (align & (align - 1)) != 0) (*bad)++;
    for (int64_t i = 0; i < lv_gguf_n_kv(g); i++) {
        const char *key = lv_gguf_key(g, i);
        if (!key || !key[0] || lv_gguf_find_key(g, key) != i) (*bad)++;
        if (key) h = gguf_walk_bytes_(h, key, strlen(key));
        lv_gguf_type t = lv_gguf_kv_type(g, i);
        if ((unsigned)t >= LV_GGUF_TYPE_COUNT) (*bad)++;
        h = gguf_walk_mix_(h, (uint64_t)t);
        int64_t iv;
        uint64_t uv;
        double fv;
        bool bv;
        if (lv_gguf_get_i64(g, i, &iv)) h = gguf_walk_mix_(h, (uint64_t)iv);
        if (lv_gguf_get_u64(g, i, &uv)) h = gguf_walk_mix_(h, uv);
        if (lv_gguf_get_f64(g, i, &fv)) h = gguf_walk_mix_(h, (uint64_t)(fv == fv));
        if (lv_gguf_get_bool(g, i, &bv)) h = gguf_walk_mix_(h, bv);
        lv_gguf_str s = lv_gguf_get_str(g, i);
        if (t == LV_GGUF_STRING && !gguf_walk_inside_(s.ptr, s.len, base, size)) (*bad)++;
        h = gguf_walk_bytes_(h, s.ptr, s.len);
        const void *raw;
        uint64_t raw_size;
        lv_gguf_kv_raw(g, i, &raw, &raw_size);
        if (!gguf_walk_inside_(raw, raw_size, base, size) || raw_size < 5) (*bad)++;
        else h = gguf_walk_bytes_(h, raw, raw_size);
        if (t == LV_GGUF_ARRAY) {
            lv_gguf_type at = lv_gguf_arr_type(g, i);
            uint64_t n = lv_gguf_arr_n(g, i);
            if ((unsigned)at >= LV_GGUF_TYPE_COUNT || at == LV_GGUF_ARRAY) (*bad)++;
            const void *d = lv_gguf_arr_data(g, i);
            if (at != LV_GGUF_STRING && !d) (*bad)++;
            for (uint64_t j = 0; j < n; j++) {
                if (at == LV_GGUF_STRING) {
                    lv_gguf_str e = lv_gguf_arr_str(g, i, j);
                    if (!gguf_walk_inside_(e.ptr, e.len, base, size)) (*bad)++;
                    else h = gguf_walk_bytes_(h, e.ptr, e.len);
                } else {
                    if (lv_gguf_arr_get_i64(g, i, j, &iv)) h = gguf_walk_mix_(h, (uint64_t)iv);
                    if (lv_gguf_arr_get_f64(g, i, j, &fv)) h = gguf_walk_mix_(h, (uint64_t)(fv == fv));
                }
            }
            /* one past the end is refused */
            if (lv_gguf_arr_get_i64(g, i, n, &iv) || lv_gguf_arr_get_f64(g, i, n, &fv) || lv_gguf_arr_str(g, i, n).len != 0)
                (*bad)++;
        } else if (lv_gguf_arr_n(g, i) != 0) {
            (*bad)++;
        }
    }
    const uint64_t data_off = lv_gguf_data_offset(g);
    if (lv_gguf_n_tensors(g) > 0 && (data_off > size || data_off % align != 0)) (*bad)++;
    for (int64_t i = 0; i < lv_gguf_n_tensors(g); i++) {
        const lv_gguf_tensor *t = lv_gguf_tensor_at(g, i);
        if (!t || !t->name || !t->name[0] || strlen(t->name) >= LV_GGUF_MAX_NAME || lv_gguf_find_tensor(g, t->name) != i) {
            (*bad)++;
            continue;
        }
        h = gguf_walk_bytes_(h, t->name, strlen(t->name));
        const lv_type_traits *tt = lv_type_get(t->type);
        if (!tt || t->n_dims < 1 || t->n_dims > LV_GGUF_MAX_DIMS) {
            (*bad)++;
            continue;
        }
        int64_t nel = 1;
        for (int d = 0; d < LV_GGUF_MAX_DIMS; d++) {
            if (t->ne[d] < 0 || (d >= t->n_dims && t->ne[d] != 1)) (*bad)++;
            if (__builtin_mul_overflow(nel, t->ne[d], &nel)) (*bad)++;
        }
        if (t->ne[0] % tt->blck_size != 0 || (uint64_t)(nel / tt->blck_size) * (uint64_t)tt->type_size != t->nbytes) (*bad)++;
        if (!gguf_walk_inside_(t->data, t->nbytes, base, size) || t->offset % align != 0 ||
            (uint64_t)((const uint8_t *)t->data - (const uint8_t *)base) != data_off + t->offset) {
            (*bad)++;
            continue;
        }
        h = gguf_walk_bytes_(h, t->data, t->nbytes);
    }
    if (lv_gguf_tensor_at(g, -1) || lv_gguf_tensor_at(g, lv_gguf_n_tensors(g))) (*bad)++;
    if (lv_gguf_find_key(g, "") >= 0 || lv_gguf_find_tensor(g, "") >= 0) (*bad)++;
    return h;
}

#endif
