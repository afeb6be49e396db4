/*
 * quant.h: tensor element types and their block layouts, bit-compatible with ggml
 * (ggml/src/ggml-common.h of llama.cpp), FP16/BF16 conversion, and the scalar reference
 * quantize / dequantize / dot-product routines. These references stay in the tree forever:
 * every SIMD kernel is tested against them.
 *
 * Legend: k = number of elements in a row (a multiple of the type's block size).
 */
#ifndef LV_QUANT_H
#define LV_QUANT_H

#include <stdbool.h>
#include <stdint.h>

/* ggml_type values, as stored in GGUF files. Gaps are removed types. */
typedef enum lv_type {
    LV_TYPE_F32 = 0,
    LV_TYPE_F16 = 1,
    LV_TYPE_Q4_0 = 2,
    LV_TYPE_Q4_1 = 3,
    LV_TYPE_Q5_0 = 6,
    LV_TYPE_Q5_1 = 7,
    LV_TYPE_Q8_0 = 8,
    LV_TYPE_Q8_1 = 9,
    LV_TYPE_Q2_K = 10,
    LV_TYPE_Q3_K = 11,
    LV_TYPE_Q4_K = 12,
    LV_TYPE_Q5_K = 13,
    LV_TYPE_Q6_K = 14,
    LV_TYPE_Q8_K = 15,
    LV_TYPE_IQ2_XXS = 16,
    LV_TYPE_IQ2_XS = 17,
    LV_TYPE_IQ3_XXS = 18,
    LV_TYPE_IQ1_S = 19,
    LV_TYPE_IQ4_NL = 20,
    LV_TYPE_IQ3_S = 21,
    LV_TYPE_IQ2_S = 22,
    LV_TYPE_IQ4_XS = 23,
    LV_TYPE_I8 = 24,
    LV_TYPE_I16 = 25,
    LV_TYPE_I32 = 26,
    LV_TYPE_I64 = 27,
    LV_TYPE_F64 = 28,
    LV_TYPE_IQ1_M = 29,
    LV_TYPE_BF16 = 30,
    LV_TYPE_TQ1_0 = 34,
    LV_TYPE_TQ2_0 = 35,
    LV_TYPE_MXFP4 = 39,
    LV_TYPE_NVFP4 = 40,
    LV_TYPE_Q1_0 = 41,
    LV_TYPE_Q2_0 = 42,
    LV_TYPE_COUNT = 43,
} lv_type;

typedef struct lv_type_traits {
    const char *name;   /* ggml's name: "f32", "q4_0", "q4_K", ... */
    int64_t blck_size;  /* elements per block (0: not a valid type) */
    int64_t type_size;  /* bytes per block */
    bool computable;    /* longview can multiply with it */
} lv_type_traits;

/* Traits of a type id read from a file, or NULL for an unknown or removed id. */
const lv_type_traits *lv_type_get(uint32_t type);
/* "q4_0", or "unknown type 31" (static buffer per thread). */
const char *lv_type_name(uint32_t type);
/* Bytes of a row of ne0 elements; ne0 must be a multiple of the block size. */
int64_t lv_row_bytes(lv_type type, int64_t ne0);
/* The type activations are converted to before a dot product with weights of type t
 * (as ggml's vec_dot_type): F32->F32, F16->F16, BF16->BF16, Q8_0 and Q4_0 -> Q8_0. */
lv_type lv_vec_dot_type(lv_type t);

/* ---- blocks ---- */
#define LV_QK4_0 32
#define LV_QK8_0 32

typedef struct {
    uint16_t d;                /* fp16 scale */
    uint8_t qs[LV_QK4_0 / 2];  /* element j in the low nibble of qs[j], j+16 in the high nibble */
} lv_block_q4_0;

typedef struct {
    uint16_t d;           /* fp16 scale */
    int8_t qs[LV_QK8_0];
} lv_block_q8_0;

_Static_assert(sizeof(lv_block_q4_0) == 18, "q4_0 block layout");
_Static_assert(sizeof(lv_block_q8_0) == 34, "q8_0 block layout");

/* ---- scalar conversions (bit-exact with ggml: round to nearest even) ---- */
uint16_t lv_fp32_to_fp16(float f);
uint16_t lv_fp32_to_bf16(float f);
float    lv_fp16_to_fp32_slow(uint16_t h); /* subnormals, inf, nan */

static inline float lv_bits_to_f32(uint32_t u) {
    union { uint32_t u; float f; } v = {u};
    return v.f;
}

static inline uint32_t lv_f32_to_bits(float f) {
    union { float f; uint32_t u; } v = {f};
    return v.u;
}

/* Inline and branch-free, so the reference kernels' loops vectorize: the exponent and mantissa
 * bits are placed in a float and scaled by 2^112 (exact for normal and subnormal halves alike);
 * infinities and NaNs get the all-ones exponent. */
static inline float lv_fp16_to_fp32(uint16_t h) {
    const uint32_t em = (uint32_t)(h & 0x7fff) << 13;
    uint32_t u = lv_f32_to_bits(lv_bits_to_f32(em) * 0x1p112f);
    if ((h & 0x7c00) == 0x7c00) u = em | 0x7f800000u;
    return lv_bits_to_f32(u | ((uint32_t)(h & 0x8000) << 16));
}

static inline float lv_bf16_to_fp32(uint16_t h) { return lv_bits_to_f32((uint32_t)h << 16); }

/* ---- reference row routines ----
 * quantize_*_ref: the deterministic rounding llama.cpp uses to write model files
 * (roundf; Q4_0 with the signed max / -8 scale).
 * quantize_q8_0_act: the rounding llama.cpp's x86 build uses for activations before a dot
 * product (round half to even), so our logits follow the same arithmetic. */
void lv_quantize_q8_0_ref(const float *x, lv_block_q8_0 *y, int64_t k);
void lv_quantize_q4_0_ref(const float *x, lv_block_q4_0 *y, int64_t k);
void lv_quantize_q8_0_act(const float *x, lv_block_q8_0 *y, int64_t k);

/* Convert a row of k floats to type t (F32, F16, BF16, Q8_0 with activation rounding,
 * Q4_0 with file rounding). Returns false for a type it cannot produce. */
bool lv_from_float_row(lv_type t, const float *x, void *y, int64_t k);
/* Write a row of k floats as type t the way a model file is written (Q8_0 with roundf). */
bool lv_quantize_row_file(lv_type t, const float *x, void *y, int64_t k);
/* Dequantize a row of k elements of type t. Returns false for a type it cannot read. */
bool lv_to_float_row(lv_type t, const void *x, float *y, int64_t k);

/* Reference dot products of one weight row (type t) with one activation row already in
 * lv_vec_dot_type(t). Accumulation in double for the float types (the exact answer up to one
 * rounding); per-block integer sums scaled in float for the quantized types, as in ggml. */
float lv_vec_dot_ref(lv_type t, int64_t k, const void *w, const void *x);

#endif
