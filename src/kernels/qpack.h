/*
 * qpack.h: weights repacked at load time for the matrix kernels (q4_0 and q8_0).
 *
 * ggml's layout keeps each row's blocks together, so a kernel that multiplies a row with an
 * activation block gets one integer sum per 4 bytes of a lane and must scale every block pair in
 * float (bench/NOTES.md, 2026-11-26: half of the multiply pipe goes to scaling). Repacked, the
 * blocks of LV_PACK_ROWS = 16 rows are interleaved 4 bytes at a time, so one 64-byte vector holds
 * 4 bytes of each of the 16 rows: a vpdpbusd against 4 broadcast activation bytes advances all
 * 16 rows, one lane per row, and a block ends with one conversion, one scale product and one fma
 * for 16 rows. The same kernel serves decode (1 column) and prefill (up to LV_PACK_MAX_COLS),
 * with the same operations per column, so prefill and token-by-token decode stay bit-identical.
 *
 * A packed group (16 rows of k elements, nb = k / 32 blocks) is nb block groups in order; block
 * group b is, for q4_0 (288 bytes = 16 blocks of 18):
 *     uint16 d[16]          the 16 rows' fp16 scales of block b
 *     uint8  q[4][16][4]    q[j][r][i] = byte 4j + i of row r's 16 nibble bytes (unchanged)
 * and for q8_0 (544 bytes = 16 blocks of 34):
 *     uint16 d[16]
 *     uint8  q[8][16][4]    q[j][r][i] = (row r's quant 4j + i) + 128, as an unsigned byte
 * and for q5_0 (352 bytes = 16 blocks of 22):
 *     uint16 d[16]
 *     uint64 h[8]           bit 4r + i of h[j] = bit 4 of row r's element 4j + i (j < 4: the low
 *                           nibbles' elements 4j.., j >= 4: the high nibbles' 16 + 4(j - 4)..)
 *     uint8  q[4][16][4]    as q4_0
 * so the weights are unsigned bytes (q4_0: 0..15 = value + 8; q5_0: 0..31 = value + 16, the high
 * bit added under the mask; q8_0: value + 128) and the offset comes back through the activation
 * block's sum (below). Same size as the rows it replaces.
 *
 * q4_K (super-blocks of 256 = 8 sub-blocks of 32, 6-bit scales and mins): super-block group b
 * (2368 bytes, 16 rows' 2304 plus the unpacked scales) is
 *     uint16 d[16], dmin[16]
 *     uint8  sc[8][16]          sub-block j's scale of row r
 *     uint8  m[4][16][2]        (m of sub-block 2p, m of 2p + 1) of row r: int16 pairs once widened
 *     uint8  q[4][8][16][4]     q[i][q][r][:] = bytes 32i + 4q .. + 3 of row r's qs: low nibbles
 *                               are sub-block 2i, high nibbles sub-block 2i + 1
 *
 * iq4_xs (super-blocks of 256 = 8 sub-blocks of 32, 6-bit scales, non-linear levels): super-block
 * group b (2208 bytes, 16 rows' 2176 plus the unpacked scales) is
 *     uint16 d[16]
 *     int8   sc[8][16]          ls - 32 of sub-block j of row r
 *     uint8  q[8][4][16][4]     q[j][q][r][:] = bytes 16j + 4q .. + 3 of row r's qs: low nibbles are
 *                               elements 32j + 4q.., high nibbles 32j + 16 + 4q..
 * (AVX2 kernels only: the levels are signed, so they use the sign trick; on AVX-512 iq4_xs stays
 * in ggml's layout.)
 *
 * iq4_nl (blocks of 32 like q4_0, a 16-entry table of signed levels instead of value + 8): packed
 * exactly as q4_0, the nibbles being table indices (AVX2 kernels only, as iq4_xs).
 *
 * Packed activations (one row of k elements), q4_0, q5_0 and q8_0: the q8_0 row exactly as the type's
 * from_float makes it (nb blocks of 34 bytes), padded to 4 bytes, then float d[nb] (each block's
 * fp16 scale, widened) and int32 nsum[nb] (minus the sum of the block's 32 quants). With it the
 * exact integer dot product of a block is  sum(u_i * x_i) + nsum * offset  (offset 8, 16 or 128).
 * q4_K and iq4_xs: the q8_K row, then int16 sb[8 * nb]: the sums of each 32-element sub-block's
 * quants (iq4_xs does not read them).
 */
#ifndef LV_QPACK_H
#define LV_QPACK_H

#include "gguf/quant.h"
#include "kernels/qkernels.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LV_PACK_ROWS 16
#define LV_PACK_MAX_COLS 8

/* q4_0, q5_0, q8_0, q4_K, iq4_xs and iq4_nl: the types with a packed layout */
bool lv_pack_type_supported(lv_type t);

/* Bytes of a packed group of LV_PACK_ROWS rows of k elements: 16 * lv_row_bytes(t, k) for q4_0,
 * q5_0 and q8_0, (k / 256) * 2368 for q4_K, (k / 256) * 2208 for iq4_xs. */
size_t lv_pack_group_bytes(lv_type t, int64_t k);

/* Pack LV_PACK_ROWS rows of k elements (w_stride bytes apart) into dst, and back. */
void lv_pack_rows(lv_type t, int64_t k, const void *w, size_t w_stride, void *dst);
void lv_unpack_rows(lv_type t, int64_t k, const void *src, void *w, size_t w_stride);

/* Bytes of one packed activation row of k elements for weights of type t, and the offset in it of
 * the arrays that follow the q8_0 (q8_K) part (the kernels read them there). */
size_t lv_packx_row_bytes(lv_type t, int64_t k);
/* (inline: the layout is shared by qpack.c and the SIMD kernels, which qpack.c dispatches to) */
static inline bool lv_packx_is_q8_K(lv_type t) { return t == LV_TYPE_Q4_K || t == LV_TYPE_IQ4_XS; }
static inline size_t lv_packx_tail(lv_type t, int64_t k) {
    if (lv_packx_is_q8_K(t)) return (size_t)(k / 256) * sizeof(lv_block_q8_K);
    return ((size_t)(k / 32) * sizeof(lv_block_q8_0) + 3) & ~(size_t)3; /* 4-byte aligned floats follow */
}
/* Fill the arrays after the q8_0 (q8_K) part of a packed activation row once that is written. */
void lv_packx_finish(lv_type t, void *row, int64_t k);

/* The reference: y[c * y_stride + r] = lv_vec_dot_ref(t, k, row r, activation c) for r < 16,
 * c < nc, on rows unpacked from the group. Slow; for tests. */
void lv_pack_gemm_ref(lv_type t, int64_t k, const void *group, const void *x, size_t x_stride, float *y, size_t y_stride, int nc);

typedef struct lv_pack_ops {
    lv_type type;
    /* y[c * y_stride + r] = row r of the packed group . activation row c (packed activations,
     * x_stride bytes apart), for r < 16 and c < nc <= LV_PACK_MAX_COLS. Every column gets the
     * same operations whatever nc is. */
    void (*gemm)(int64_t k, const void *group, const void *x, size_t x_stride, float *y, size_t y_stride, int nc);
} lv_pack_ops;

/* The packed kernels of type t at a SIMD level (capped by what the CPU supports), or NULL when
 * that level has none: the caller then uses the rows in ggml's layout. */
const lv_pack_ops *lv_pack_ops_get(lv_type t, lv_simd level);
/* Defined in qpack_avx512.c: the AVX-512 VNNI kernels, NULL where the CPU or the build lacks them. */
const lv_pack_ops *lv_pack_avx512_ops(lv_type t);
/* Defined in qpack_avx2.c: the AVX2 kernels of the same four types and iq4_xs (vpmaddubsw instead
 * of vpdpbusd), NULL where the build lacks them. */
const lv_pack_ops *lv_pack_avx2_ops(lv_type t);

/* Whether models repack at load: the environment variable LV_REPACK=0 turns it off. */
bool lv_pack_enabled(void);

#endif
