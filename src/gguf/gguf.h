/*
 * gguf.h: reading and writing GGUF files (llama.cpp's model format), versions 2 and 3,
 * little-endian.
 *
 * The module src/gguf/ (docs/architecture.md):
 *   Owns:  the GGUF container (a validating reader over a mapping, a streaming writer) and the
 *          tensor types of ggml: block layouts, fp16 / bf16, reference quantize / dequantize / dot
 *          (quant.h).
 *   Never: interprets an architecture (model/ does), or computes more than one row's reference
 *          arithmetic.
 *
 * File layout (all integers little-endian):
 *   u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv times:      string key | u32 value_type | value
 *   n_tensors times: string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset
 *   padding to `general.alignment` (u32, default 32)
 *   data section: tensor data at the given offsets (each a multiple of the alignment)
 * where string = u64 length + bytes (no NUL), and an array value = u32 elem_type + u64 count +
 * elements.
 *
 * The reader maps the file and validates everything before anyone uses it: every count against
 * the bytes left, every string length, element-count products against INT64_MAX, types, dims,
 * duplicate keys and tensor names, power-of-two alignment, and that each tensor's bytes lie
 * inside the data section. After lv_gguf_open succeeds, every accessor is safe.
 * It does not interpret architectures (that is model/model.c's job).
 */
#ifndef LV_GGUF_H
#define LV_GGUF_H

#include "longview.h"

#include "gguf/quant.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum lv_gguf_type {
    LV_GGUF_UINT8 = 0,
    LV_GGUF_INT8 = 1,
    LV_GGUF_UINT16 = 2,
    LV_GGUF_INT16 = 3,
    LV_GGUF_UINT32 = 4,
    LV_GGUF_INT32 = 5,
    LV_GGUF_FLOAT32 = 6,
    LV_GGUF_BOOL = 7,
    LV_GGUF_STRING = 8,
    LV_GGUF_ARRAY = 9,
    LV_GGUF_UINT64 = 10,
    LV_GGUF_INT64 = 11,
    LV_GGUF_FLOAT64 = 12,
    LV_GGUF_TYPE_COUNT = 13,
} lv_gguf_type;

#define LV_GGUF_MAX_DIMS 4
#define LV_GGUF_MAX_NAME 64 /* tensor names shorter than this, like ggml's GGML_MAX_NAME */
#define LV_GGUF_DEFAULT_ALIGNMENT 32

typedef struct lv_gguf lv_gguf;

typedef struct lv_gguf_str {
    const char *ptr; /* into the mapped file: NOT NUL-terminated */
    uint64_t len;
} lv_gguf_str;

typedef struct lv_gguf_tensor {
    const char *name;      /* NUL-terminated copy */
    uint32_t type;         /* lv_type; known to lv_type_get() */
    int n_dims;
    int64_t ne[LV_GGUF_MAX_DIMS]; /* unused dims are 1 */
    uint64_t offset;       /* relative to the data section */
    uint64_t nbytes;
    const void *data;      /* into the mapping (NULL for a header-only read) */
} lv_gguf_tensor;

/* Open and validate a file (mapped read-only). */
lv_status lv_gguf_open(const char *path, lv_gguf **out);
/* Validate a GGUF image in memory (not copied: it must outlive the handle). */
lv_status lv_gguf_open_memory(const void *data, uint64_t size, lv_gguf **out);
void lv_gguf_close(lv_gguf *g);
/* Let the kernel drop the pages of [p, p + n) (only those wholly inside: MADV_DONTNEED) when the
 * file is mapped; they read back from the file if touched again, page by page (MADV_RANDOM).
 * No-op for a file in memory. */
void lv_gguf_release_pages(const lv_gguf *g, const void *p, uint64_t n);

uint32_t lv_gguf_version(const lv_gguf *g);
uint32_t lv_gguf_alignment(const lv_gguf *g);
uint64_t lv_gguf_file_size(const lv_gguf *g);
uint64_t lv_gguf_data_offset(const lv_gguf *g); /* where the data section starts in the file */

/* ---- key/value metadata ----
 * Index arguments come from lv_gguf_find_key or a loop below lv_gguf_n_kv: an index out of
 * range is a bug in the caller and aborts (LV_ASSERT). */
int64_t      lv_gguf_n_kv(const lv_gguf *g);
int64_t      lv_gguf_find_key(const lv_gguf *g, const char *key); /* -1 if absent */
const char  *lv_gguf_key(const lv_gguf *g, int64_t i);
lv_gguf_type lv_gguf_kv_type(const lv_gguf *g, int64_t i);
lv_gguf_type lv_gguf_arr_type(const lv_gguf *g, int64_t i);   /* element type of an array */
uint64_t     lv_gguf_arr_n(const lv_gguf *g, int64_t i);
/* Raw bytes of a numeric array's elements (possibly unaligned: copy before use). */
const void  *lv_gguf_arr_data(const lv_gguf *g, int64_t i);
lv_gguf_str  lv_gguf_arr_str(const lv_gguf *g, int64_t i, uint64_t j);
lv_gguf_str  lv_gguf_get_str(const lv_gguf *g, int64_t i);
/* Scalar value converted to the requested kind. Returns false if the value is not a scalar of a
 * compatible kind (integers to integers/floats, floats to floats, bools to bools). */
bool lv_gguf_get_i64(const lv_gguf *g, int64_t i, int64_t *out);
bool lv_gguf_get_u64(const lv_gguf *g, int64_t i, uint64_t *out);
bool lv_gguf_get_f64(const lv_gguf *g, int64_t i, double *out);
bool lv_gguf_get_bool(const lv_gguf *g, int64_t i, bool *out);
/* Element j of a numeric array as double / int64 (false if not numeric or out of range). */
bool lv_gguf_arr_get_f64(const lv_gguf *g, int64_t i, uint64_t j, double *out);
bool lv_gguf_arr_get_i64(const lv_gguf *g, int64_t i, uint64_t j, int64_t *out);
/* Byte span of the whole value of kv i in the file (for copying it verbatim to a writer). */
void lv_gguf_kv_raw(const lv_gguf *g, int64_t i, const void **data, uint64_t *size);

const char *lv_gguf_type_name(lv_gguf_type t);

/* ---- tensors ---- */
int64_t lv_gguf_n_tensors(const lv_gguf *g);
int64_t lv_gguf_find_tensor(const lv_gguf *g, const char *name); /* -1 if absent */
const lv_gguf_tensor *lv_gguf_tensor_at(const lv_gguf *g, int64_t i);

/* ---- writing ----
 * Metadata and tensor infos are collected in memory; then lv_gguf_writer_write_header writes
 * the header with sequential aligned offsets, and the caller streams the tensors' data in the
 * order they were added with lv_gguf_writer_write_data (which pads between tensors).
 * Models far larger than memory can be written this way. */
typedef struct lv_gguf_writer lv_gguf_writer;

lv_gguf_writer *lv_gguf_writer_create(void);
void lv_gguf_writer_free(lv_gguf_writer *w);
/* Each setter replaces an existing key of the same name. All return false on allocation failure. */
bool lv_gguf_writer_set_u32(lv_gguf_writer *w, const char *key, uint32_t v);
bool lv_gguf_writer_set_i32(lv_gguf_writer *w, const char *key, int32_t v);
bool lv_gguf_writer_set_u64(lv_gguf_writer *w, const char *key, uint64_t v);
bool lv_gguf_writer_set_f32(lv_gguf_writer *w, const char *key, float v);
bool lv_gguf_writer_set_bool(lv_gguf_writer *w, const char *key, bool v);
/* Any fixed-size scalar type (not string or array); v points to a value of that type (a bool is
 * one byte, 0 or 1). */
bool lv_gguf_writer_set_scalar(lv_gguf_writer *w, const char *key, lv_gguf_type type, const void *v);
bool lv_gguf_writer_set_str(lv_gguf_writer *w, const char *key, const char *v);
bool lv_gguf_writer_set_arr(lv_gguf_writer *w, const char *key, lv_gguf_type elem_type,
                            const void *elems, uint64_t n);
bool lv_gguf_writer_set_arr_str(lv_gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
/* Copy key/value i of a reader verbatim (any type, arrays of strings included). */
bool lv_gguf_writer_copy_kv(lv_gguf_writer *w, const lv_gguf *src, int64_t i);

/* Returns false on a bad shape or type (with lv_error) or allocation failure. */
bool lv_gguf_writer_add_tensor(lv_gguf_writer *w, const char *name, lv_type type, int n_dims,
                               const int64_t *ne);
lv_status lv_gguf_writer_write_header(lv_gguf_writer *w, FILE *f);
/* Append tensor data: the bytes of the tensors in the order they were added, in chunks of any
 * size; padding is inserted when a tensor is complete. */
lv_status lv_gguf_writer_write_data(lv_gguf_writer *w, FILE *f, const void *data, uint64_t nbytes);
/* true once every tensor's data has been written */
bool lv_gguf_writer_complete(const lv_gguf_writer *w);
uint64_t lv_gguf_writer_tensor_nbytes(const lv_gguf_writer *w, int64_t index);

#endif
