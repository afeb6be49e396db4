/*
 * gguf_build.h: helpers shared by the GGUF and model-loading tests (tests/gguf_build.c):
 *  - gb_buf: a growable byte buffer with little-endian appenders, to hand-craft GGUF images
 *    byte by byte (including hostile ones the writer refuses to produce);
 *  - gb_guard: a copy of an image placed at the very end of a readable mapping followed by a
 *    PROT_NONE page (as picohttpparser's tests do), so that any read past the end faults;
 *  - gb_write_mem: run lv_gguf_writer into memory;
 *  - tiny models (llama / qwen2) described as plain data that a test edits before writing.
 * Test code: allocation failures abort.
 */
#ifndef LV_TEST_GGUF_BUILD_H
#define LV_TEST_GGUF_BUILD_H

#include "gguf/gguf.h"
#include "lv_test.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- byte buffer ---- */
typedef struct gb_buf {
    uint8_t *p;
    size_t n, cap;
} gb_buf;

void gb_free(gb_buf *b);
void gb_bytes(gb_buf *b, const void *p, size_t n);
void gb_u8(gb_buf *b, uint8_t v);
void gb_u32(gb_buf *b, uint32_t v);
void gb_u64(gb_buf *b, uint64_t v);
void gb_str(gb_buf *b, const char *s); /* u64 length + bytes */
void gb_pad(gb_buf *b, size_t align);  /* zero bytes up to a multiple of align */
/* "GGUF", version, n_tensors, n_kv */
void gb_header(gb_buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv);
/* one tensor info: name, n_dims, ne[min(n_dims, 5)], type, offset */
void gb_tensor_info(gb_buf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t offset);

/* ---- guard page ---- */
typedef struct gb_guard {
    void *map;
    size_t map_size;
    const uint8_t *data; /* n bytes ending exactly at the PROT_NONE page */
    size_t n;
} gb_guard;

void gb_guard_init(gb_guard *g, const void *data, size_t n);
void gb_guard_free(gb_guard *g);
/* lv_gguf_open_memory on a guarded copy; the copy is released with *g. */
lv_status gb_open_guarded(gb_guard *g, const void *data, size_t n, lv_gguf **out);

/* ---- writer to memory ----
 * data[i] holds lv_gguf_writer_tensor_nbytes(w, i) bytes for tensor i (NULL for empty ones). */
bool gb_write_mem(lv_gguf_writer *w, const void *const *data, gb_buf *out);
bool gb_write_file(const char *path, const void *p, size_t n);
/* build/<mode>/tmp/<name> (static buffer, rotated over 4 slots) */
const char *gb_tmp_path(const char *name);

/* A small valid file with a bit of everything (~700 bytes): scalars of several types, arrays
 * (u16, f32, bool, empty, strings), general.alignment 64, three tensors (f32, q8_0, f16). */
void gb_small_file(gb_buf *out, uint64_t seed);

/* ---- tiny models ---- */
#define GB_MAX_TENSORS 64
#define GB_MAX_OMIT 4

typedef struct gb_tensor {
    char name[96];
    uint32_t type;
    int n_dims;
    int64_t ne[4];
} gb_tensor;

typedef void (*gb_kv_edit_fn)(lv_gguf_writer *w, const char *arch, void *user);

typedef struct gb_model {
    char arch[32];           /* written as general.architecture (unless omitted) */
    int64_t n_vocab, n_ctx, n_embd, n_layer, n_ff, n_head, n_head_kv;
    float rms_eps;
    const char *omit[GB_MAX_OMIT]; /* full key names not to write */
    gb_kv_edit_fn edit;      /* called after the standard keys: override or add keys */
    void *edit_user;
    gb_tensor t[GB_MAX_TENSORS];
    int n_t;
    uint64_t seed;           /* tensor contents */
} gb_model;

/* A valid model: `arch` "llama" (untied output when untied), "qwen2" (q/k/v biases), "qwen3"
 * (q/k norms), "smollm3", or "gemma3" (q/k norms, post-norms).
 * Shapes: n_embd 8, 1 layer, n_ff 16, n_vocab 16, 2 heads, 1 kv head, all f32. */
void gb_model_init(gb_model *m, const char *arch, bool untied, uint64_t seed);
/* Rebuild the tensor list (all f32) from the model's sizes, after a test changed them. */
void gb_model_layout(gb_model *m, bool untied);
gb_tensor *gb_model_find(gb_model *m, const char *name);
void gb_model_remove(gb_model *m, const char *name);
gb_tensor *gb_model_add(gb_model *m, const char *name, uint32_t type, int n_dims, int64_t ne0, int64_t ne1);
/* The bytes written for tensor i of the model (nbytes as the writer computed them). */
void gb_model_tensor_data(const gb_model *m, int i, void *dst, uint64_t nbytes);
/* Write the model into out (a GGUF image). Returns false if the writer refused it. */
bool gb_model_build(const gb_model *m, gb_buf *out);
/* Write the model to a scratch file; returns its path (static buffer, see gb_tmp_path). */
const char *gb_model_file(const gb_model *m, const char *name);

#endif
