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
 * (as ggml's vec_dot_type): F32->F32, F16->F16, BF16->BF16, Q8_0/Q4_0/Q5_0 -> Q8_0,
 * Q4_1/Q5_1 -> Q8_1, Q4_K/Q5_K/Q6_K -> Q8_K. LV_TYPE_COUNT for a type longview cannot compute. */
lv_type lv_vec_dot_type(lv_type t);

/* ---- blocks ----
 * Bit-compatible with ggml-common.h. "d" fields are fp16 bit patterns (except q8_K's float d).
 * Rows are arrays of blocks; a row of the 32-element types is k/32 blocks, of the K types
 * (super-blocks of 256 elements) k/256 blocks. */
#define LV_QK4_0 32
#define LV_QK4_1 32
#define LV_QK5_0 32
#define LV_QK5_1 32
#define LV_QK8_0 32
#define LV_QK8_1 32
#define LV_QK_K 256
#define LV_K_SCALE_SIZE 12

/* q4_0: x = d * (q - 8), q in 0..15 */
typedef struct {
    uint16_t d;                /* fp16 scale */
    uint8_t qs[LV_QK4_0 / 2];  /* element j in the low nibble of qs[j], j+16 in the high nibble */
} lv_block_q4_0;

/* q4_1: x = d * q + m, q in 0..15 (nibbles as q4_0) */
typedef struct {
    uint16_t d, m;             /* fp16 scale and minimum */
    uint8_t qs[LV_QK4_1 / 2];
} lv_block_q4_1;

/* q5_0: x = d * (q - 16), q in 0..31: low 4 bits as q4_0, bit 4 of element j in bit j of qh
 * (a little-endian uint32) */
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[LV_QK5_0 / 2];
} lv_block_q5_0;

/* q5_1: x = d * q + m, q in 0..31 (bits as q5_0) */
typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[LV_QK5_1 / 2];
} lv_block_q5_1;

/* q8_0: x = d * q */
typedef struct {
    uint16_t d;           /* fp16 scale */
    int8_t qs[LV_QK8_0];
} lv_block_q8_0;

/* q8_1 (activations for q4_1/q5_1): x = d * q, s = fp16(d * sum(q)) */
typedef struct {
    uint16_t d, s;
    int8_t qs[LV_QK8_1];
} lv_block_q8_1;

/* q2_K: 16 sub-blocks of 16; x = d * (scales[j] & 15) * q - dmin * (scales[j] >> 4), q in 0..3.
 * Element e (half h = e / 128, quarter g = (e % 128) / 32, l = e % 32) is bits 2g..2g+1 of
 * qs[32h + l]; its sub-block is e / 16. */
typedef struct {
    uint8_t scales[LV_QK_K / 16];
    uint8_t qs[LV_QK_K / 4];
    uint16_t d, dmin;
} lv_block_q2_K;

/* q3_K: 16 sub-blocks of 16; x = d * (sc[j] - 32) * q, q in -4..3: the low 2 bits of element e
 * (half h = e / 128, quarter g = (e % 128) / 32, l = e % 32) are bits 2g..2g+1 of qs[32h + l], and
 * q = low - 4 unless bit 4h + g of hmask[l] is set; the 6-bit sc[j] are packed in scales[12]
 * (lv_q3_K_scale). */
typedef struct {
    uint8_t hmask[LV_QK_K / 8];
    uint8_t qs[LV_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} lv_block_q3_K;
/* sub-block j's scale of a q3_K block, minus 32: j < 8: low 4 bits the low (j < 4) nibble... as
 * ggml's dequantize_row_q3_K unpacks them */
static inline int lv_q3_K_scale(const uint8_t *scales, int j) {
    const int lo = j < 8 ? scales[j] & 0xf : scales[j - 8] >> 4;
    const int hi = (scales[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* q4_K: 8 sub-blocks of 32; x = d * sc[j] * q - dmin * m[j], q in 0..15, sc and m 6-bit,
 * packed in scales[12] (lv_get_scale_min_k4). Sub-blocks 2i and 2i+1 share qs[32i .. 32i+31]:
 * 2i in the low nibbles, 2i+1 in the high nibbles. */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[LV_K_SCALE_SIZE];
    uint8_t qs[LV_QK_K / 2];
} lv_block_q4_K;

/* q5_K: as q4_K with q in 0..31; bit 4 of element l of sub-block j is bit j of qh[l] (l < 32) */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[LV_K_SCALE_SIZE];
    uint8_t qh[LV_QK_K / 8];
    uint8_t qs[LV_QK_K / 2];
} lv_block_q5_K;

/* q6_K: 16 sub-blocks of 16; x = d * scales[j] * (q - 32), q in 0..63. In each half of 128
 * elements (ql += 64, qh += 32 per half), element l (l < 32) of the four quarters is:
 * quarter 0: ql[l] & 15, quarter 1: ql[l + 32] & 15, quarter 2: ql[l] >> 4, quarter 3: ql[l + 32] >> 4,
 * with high bits (qh[l] >> 2*quarter) & 3. */
typedef struct {
    uint8_t ql[LV_QK_K / 2];
    uint8_t qh[LV_QK_K / 4];
    int8_t scales[LV_QK_K / 16];
    uint16_t d;
} lv_block_q6_K;

/* q8_K (activations for the K types): x = d * q, bsums[i] = sum of q[16i .. 16i+15] */
typedef struct {
    float d;
    int8_t qs[LV_QK_K];
    int16_t bsums[LV_QK_K / 16];
} lv_block_q8_K;

/* iq4_nl: blocks of 32, x = d * lv_kvalues_iq4nl[q], q a 4-bit index (nibbles as q4_0) */
typedef struct {
    uint16_t d;
    uint8_t qs[16];
} lv_block_iq4_nl;

/* iq4_xs: super-blocks of 256 in 8 sub-blocks of 32; x = d * (ls_j - 32) * lv_kvalues_iq4nl[q],
 * with ls_j 6 bits: its low 4 in scales_l[j / 2] (j odd: the high nibble), its high 2 in bits
 * 2j..2j+1 of scales_h; sub-block j's indices are qs[16j .. 16j + 15] (nibbles as q4_0). */
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[LV_QK_K / 64];
    uint8_t qs[LV_QK_K / 2];
} lv_block_iq4_xs;

/* the 16 non-linear levels of iq4_nl and iq4_xs (ggml's kvalues_iq4nl) */
extern const int8_t lv_kvalues_iq4nl[16];

_Static_assert(sizeof(lv_block_q2_K) == 84, "q2_K block layout");
_Static_assert(sizeof(lv_block_q3_K) == 110, "q3_K block layout");
_Static_assert(sizeof(lv_block_iq4_nl) == 18, "iq4_nl block layout");
_Static_assert(sizeof(lv_block_iq4_xs) == 136, "iq4_xs block layout");
_Static_assert(sizeof(lv_block_q4_0) == 18, "q4_0 block layout");
_Static_assert(sizeof(lv_block_q4_1) == 20, "q4_1 block layout");
_Static_assert(sizeof(lv_block_q5_0) == 22, "q5_0 block layout");
_Static_assert(sizeof(lv_block_q5_1) == 24, "q5_1 block layout");
_Static_assert(sizeof(lv_block_q8_0) == 34, "q8_0 block layout");
_Static_assert(sizeof(lv_block_q8_1) == 36, "q8_1 block layout");
_Static_assert(sizeof(lv_block_q4_K) == 144, "q4_K block layout");
_Static_assert(sizeof(lv_block_q5_K) == 176, "q5_K block layout");
_Static_assert(sizeof(lv_block_q6_K) == 210, "q6_K block layout");
_Static_assert(sizeof(lv_block_q8_K) == 292, "q8_K block layout");

/* The 6-bit scale and min of sub-block j (0..7) of a q4_K/q5_K block. */
static inline void lv_get_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

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
 * (roundf or truncation of x + 0.5 as ggml-quants.c; Q4_0/Q5_0 with the signed max / -8 or -16).
 * quantize_*_file for the K types: longview's own deterministic quantizer (a least-squares search
 * for each sub-block's scale and minimum, then 6-bit or 8-bit sub-block scales); it is not
 * llama-quantize's search, but reads back with ggml's layout and arithmetic.
 * quantize_*_act: the rounding llama.cpp's x86 build uses for activations before a dot product
 * (q8_0/q8_1: round half to even, q8_1's s = fp16(d * sum); q8_K: ggml's reference, scale
 * -127/max of the element with the largest magnitude), so our logits follow the same arithmetic. */
void lv_quantize_q8_0_ref(const float *x, lv_block_q8_0 *y, int64_t k);
void lv_quantize_q4_0_ref(const float *x, lv_block_q4_0 *y, int64_t k);
void lv_quantize_q4_1_ref(const float *x, lv_block_q4_1 *y, int64_t k);
void lv_quantize_q5_0_ref(const float *x, lv_block_q5_0 *y, int64_t k);
void lv_quantize_q5_1_ref(const float *x, lv_block_q5_1 *y, int64_t k);
void lv_quantize_q4_K_file(const float *x, lv_block_q4_K *y, int64_t k);
void lv_quantize_q5_K_file(const float *x, lv_block_q5_K *y, int64_t k);
void lv_quantize_q6_K_file(const float *x, lv_block_q6_K *y, int64_t k);
void lv_quantize_q8_0_act(const float *x, lv_block_q8_0 *y, int64_t k);
void lv_quantize_q8_1_act(const float *x, lv_block_q8_1 *y, int64_t k);
void lv_quantize_q8_K_act(const float *x, lv_block_q8_K *y, int64_t k);

/* Convert a row of k floats to type t: F32, F16, BF16; the activation types Q8_0, Q8_1, Q8_K
 * with the activation rounding above; the weight types with their file quantizers.
 * Returns false for a type it cannot produce. */
bool lv_from_float_row(lv_type t, const float *x, void *y, int64_t k);
/* Write a row of k floats as type t the way a model file is written (Q8_0 with roundf). */
bool lv_quantize_row_file(lv_type t, const float *x, void *y, int64_t k);
/* Dequantize a row of k elements of type t (every computable type and Q8_1, Q8_K).
 * Returns false for a type it cannot read. */
bool lv_to_float_row(lv_type t, const void *x, float *y, int64_t k);

/* Reference dot products of one weight row (type t) with one activation row already in
 * lv_vec_dot_type(t). Accumulation in double for the float types (the exact answer up to one
 * rounding); for the quantized types exact integer sums per block (per super-block for the K
 * types, sub-block scales applied in integers), scaled and accumulated in float as in ggml:
 *   q8_0, q4_0, q5_0:  s += (d_w * d_x) * isum
 *   q4_1, q5_1:        s += (d_w * d_x) * isum + m_w * s_x
 *   q4_K, q5_K:        s += (d_w * d_x) * isum - (dmin_w * d_x) * msum   (msum = sum m[j] * bsum_j)
 *   q6_K:              s += (d_w * d_x) * isum                          (isum over q - 32)
 *   q2_K:              s += (d_w * d_x) * isum - (dmin_w * d_x) * msum   (msum = sum (sc[j] >> 4) * bsum_j)
 *   q3_K:              s += (d_w * d_x) * isum                          (isum = sum (sc[j] - 32) * isum_j over q in -4..3)
 *   iq4_nl (q8_0 x):   s += (d_w * d_x) * isum                          (isum over the levels)
 *   iq4_xs (q8_K x):   s += (d_w * d_x) * isum                          (isum = sum (ls_j - 32) * isum_j)
 * The SIMD kernels compute the same integer sums exactly; only the float order differs. */
float lv_vec_dot_ref(lv_type t, int64_t k, const void *w, const void *x);

#endif
