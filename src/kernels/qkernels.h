/*
 * qkernels.h: per-weight-type compute kernels and their run-time selection.
 *
 * For every weight type longview computes with there is one table of operations per SIMD level:
 * the scalar level is the reference (built from quant.c's routines, kept forever as the oracle),
 * and the AVX2 and AVX-512 levels (files *_avx2.c, *_avx512.c, compiled with their own -m flags)
 * are chosen at run time from the CPU's features. Every fast operation is tested against the
 * scalar one on fresh random inputs (tests/kernels/test_qkernels.c).
 *
 * The matmul driver (kernels.c) uses them as follows:
 *  - activations of a micro-batch are converted once per row with from_float into vec_dot_type;
 *  - decode (one token) calls vec_dot over weight rows: bandwidth-bound, each weight byte read once;
 *  - prefill calls gemm on tiles of up to LV_GEMM_MAX_ROWS weight rows x LV_GEMM_MAX_COLS tokens,
 *    so that loaded weights and activations are reused from registers.
 *
 * Legend: k = elements per row (a multiple of the type's block size), w = weight rows,
 * x = activation rows (already in vec_dot_type), s = results.
 */
#ifndef LV_QKERNELS_H
#define LV_QKERNELS_H

#include "gguf/quant.h"

#include <stddef.h>
#include <stdint.h>

typedef enum lv_simd {
    LV_SIMD_SCALAR = 0,
    LV_SIMD_AVX2 = 1,   /* AVX2 + FMA + F16C */
    LV_SIMD_AVX512 = 2, /* AVX-512 F/BW/DQ/VL (+ VNNI, BF16 where present) */
    LV_SIMD_COUNT = 3,
} lv_simd;

#define LV_GEMM_MAX_ROWS 4
#define LV_GEMM_MAX_COLS 4

typedef struct lv_qtype_ops {
    lv_type type;         /* the weight type */
    lv_type vec_dot_type; /* what activations are converted to */
    /* convert one activation row of k floats (bit-identical at every level) */
    void (*from_float)(const float *x, void *y, int64_t k);
    /* s = dot(w, x) for one weight row and one activation row */
    float (*vec_dot)(int64_t k, const void *w, const void *x);
    /* s[r * s_stride + c] = dot(w + r * w_stride, x + c * x_stride) for r < nr, c < nc
     * (nr <= LV_GEMM_MAX_ROWS, nc <= LV_GEMM_MAX_COLS; strides in bytes for w and x, floats for s) */
    void (*gemm)(int64_t k, const void *w, size_t w_stride, const void *x, size_t x_stride, float *s, size_t s_stride, int nr, int nc);
} lv_qtype_ops;

/* The operations for weight type t at a SIMD level, or NULL if t is not computable.
 * A level above what the CPU or the build supports falls back to the best one below it. */
const lv_qtype_ops *lv_qtype_ops_get(lv_type t, lv_simd level);

/* The best level this CPU supports, and the level in use: the lower of that and the cap set by
 * lv_simd_set_max() or the environment variable LV_SIMD (scalar | avx2 | avx512). */
lv_simd lv_simd_detect(void);
lv_simd lv_simd_active(void);
void    lv_simd_set_max(lv_simd level);
const char *lv_simd_name(lv_simd level);
/* Parse "scalar", "avx2", "avx512"; -1 if unknown. */
int     lv_simd_parse(const char *s);

/* ---- per-level tables, defined in qk_scalar.c, qk_avx2.c, qk_avx512.c ----
 * Each returns NULL for a type it does not accelerate (the dispatcher then uses the level below). */
const lv_qtype_ops *lv_qk_scalar_ops(lv_type t);
const lv_qtype_ops *lv_qk_avx2_ops(lv_type t);
const lv_qtype_ops *lv_qk_avx512_ops(lv_type t);
/* The AVX-512 kernels with (ext = 1) or without (ext = 0) the VNNI / BF16 extensions the type can
 * use; NULL where the CPU or the build lacks them. lv_qk_avx512_ops picks the best; tests run both. */
const lv_qtype_ops *lv_qk_avx512_ops_variant(lv_type t, int ext);

#endif
