/*
 * qpack_avx512.c: the AVX-512 VNNI kernels for packed q4_0, q5_0, q8_0 and q4_K weights (qpack.h).
 *
 * Per block group (16 rows x 32 elements) and activation column: the block's quants are unsigned
 * bytes, 4 per lane per vector (one lane per row); vpdpbusd against 4 activation bytes broadcast
 * to every lane accumulates 4 products per row, so 4 (q4_0: low and high nibbles of 4 vectors =
 * 8 steps) or 8 (q8_0) steps give each lane its row's sum over the block. The steps run as two
 * chains added at the end (integer sums are exact in any order), starting from the offset
 * correction nsum * 8 (q4_0), nsum * 16 (q5_0: the nibbles get their bit 4 from a byte mask,
 * one masked add per vector) or nsum * 128 (q8_0). Then, for 16 rows at once: convert, scale by
 * d_w * d_x, fma into the column's accumulator. Weight unpacking (q4_0 nibbles) and the 16 scales
 * are shared by the columns of a tile; each column's operations are the same whatever the tile
 * width, so a result does not depend on how a batch was split.
 */
#include "kernels/qpack.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && defined(__FMA__) && \
    defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#ifdef LV_EMU_AVX512 /* emu512.h: SIMDe's code must not be compiled for the real extension */
#define ATTR
#define CPU_HAS(f) 1
#else
#define ATTR __attribute__((target("avx512vnni")))
#define CPU_HAS(f) __builtin_cpu_supports(f)
#endif
#define INLINE ATTR static inline __attribute__((always_inline))

INLINE __m512i bcast32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* QB = quant bytes per row and block (16: q4_0 and q5_0, 32: q8_0), H5 = q5_0's high-bit masks
 * follow the scales, SH = log2 of the offset */
INLINE void gemm_tile(const int QB, const int H5, const int SH, const int nc, int64_t k, const uint8_t *g, const uint8_t *x, size_t xs, float *y,
                      size_t ys) {
    const int64_t nb = k / 32;
    const size_t xoff = lv_packx_tail(LV_TYPE_Q8_0, k), qoff = 2 * LV_PACK_ROWS + (H5 ? 64 : 0), gb = qoff + LV_PACK_ROWS * (size_t)QB;
    __m512 acc[LV_PACK_MAX_COLS];
    for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++, g += gb) {
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
        __m512i w[8]; /* q4_0: w[0..3] low nibbles (elements 4j..4j+3), w[4..7] high (16+4j..) */
        if (QB == 16) {
            for (int j = 0; j < 4; j++) {
                const __m512i v = _mm512_loadu_si512(g + qoff + 64 * j);
                w[j] = _mm512_and_si512(v, m4);
                w[4 + j] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            }
            if (H5) { /* bit 4 of each byte where the mask says */
                const __m512i b4 = _mm512_set1_epi8(0x10);
                for (int j = 0; j < 8; j++) {
                    uint64_t h;
                    memcpy(&h, g + 32 + 8 * j, 8);
                    w[j] = _mm512_mask_add_epi8(w[j], _cvtu64_mask64(h), w[j], b4);
                }
            }
        } else {
            for (int j = 0; j < 8; j++) w[j] = _mm512_loadu_si512(g + 32 + 64 * j);
        }
        for (int c = 0; c < nc; c++) {
            const uint8_t *xr = x + (size_t)c * xs;
            const uint8_t *q = xr + b * (int64_t)sizeof(lv_block_q8_0) + 2;
            const float *xd = (const float *)(xr + xoff);
            const int32_t *xn = (const int32_t *)(xd + nb);
            __m512i s = _mm512_slli_epi32(_mm512_set1_epi32(xn[b]), SH), t = _mm512_setzero_si512();
            for (int j = 0; j < 8; j += 2) {
                s = _mm512_dpbusd_epi32(s, w[j], bcast32(q + 4 * j));
                t = _mm512_dpbusd_epi32(t, w[j + 1], bcast32(q + 4 * j + 4));
            }
            s = _mm512_add_epi32(s, t);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(xd[b])), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm512_storeu_ps(y + (size_t)c * ys, acc[c]);
}

/* q4_K, per super-block (256 elements) of 16 rows: for each sub-block j, 8 vectors of nibbles
 * (16 rows x 32 elements) against the column's 32 quants give each row's exact sub-block sum,
 * scaled in integers by the row's 6-bit scale (vpmulld) into isum; the mins part is
 * sum_j m_j * sb_j, four vpdpwssd on (m, m) pairs against (sb, sb) pairs. Then, per column,
 * acc += isum * (d * d_x) and acc -= msum * (dmin * d_x). */
INLINE void gemm_tile_k4(const int nc, int64_t k, const uint8_t *g, const uint8_t *x, size_t xs, float *y, size_t ys) {
    const int64_t nb = k / 256;
    const size_t xoff = lv_packx_tail(LV_TYPE_Q4_K, k);
    __m512 acc[LV_PACK_MAX_COLS];
    for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++, g += 2368) {
        __m512i isum[LV_PACK_MAX_COLS];
        for (int c = 0; c < nc; c++) isum[c] = _mm512_setzero_si512();
        for (int j = 0; j < 8; j++) {
            const uint8_t *qv = g + 320 + 512 * (j / 2);
            __m512i w[8];
            for (int q = 0; q < 8; q++) {
                const __m512i v = _mm512_loadu_si512(qv + 64 * q);
                w[q] = _mm512_and_si512((j & 1) ? _mm512_srli_epi16(v, 4) : v, m4);
            }
            const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(g + 64 + 16 * j)));
            for (int c = 0; c < nc; c++) {
                const uint8_t *q = x + (size_t)c * xs + b * (int64_t)sizeof(lv_block_q8_K) + 4 + 32 * j;
                __m512i s = _mm512_setzero_si512(), t = _mm512_setzero_si512();
                for (int i = 0; i < 8; i += 2) {
                    s = _mm512_dpbusd_epi32(s, w[i], bcast32(q + 4 * i));
                    t = _mm512_dpbusd_epi32(t, w[i + 1], bcast32(q + 4 * i + 4));
                }
                isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(_mm512_add_epi32(s, t), sc));
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
        const __m512 dmw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 32)));
        __m512i mp[4];
        for (int p = 0; p < 4; p++) mp[p] = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(g + 192 + 32 * p)));
        for (int c = 0; c < nc; c++) {
            const uint8_t *xr = x + (size_t)c * xs;
            const uint8_t *sb = xr + xoff + (size_t)b * 16;
            __m512i ms = _mm512_setzero_si512();
            for (int p = 0; p < 4; p++) ms = _mm512_dpwssd_epi32(ms, mp[p], bcast32(sb + 4 * p));
            float dx;
            memcpy(&dx, xr + b * (int64_t)sizeof(lv_block_q8_K), 4);
            const __m512 vdx = _mm512_set1_ps(dx);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), _mm512_mul_ps(dw, vdx), acc[c]);
            acc[c] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms), _mm512_mul_ps(dmw, vdx), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm512_storeu_ps(y + (size_t)c * ys, acc[c]);
}

/* q4_0's (q5_0's) w[] order above pairs w[j] with activation bytes 4j for j < 4 and 16 + 4(j-4)
 * after: the same as 4j for every j, since element 16 + 4(j - 4) = 4j. */

/* one function per type, the tile width a compile-time constant in each case */
#define DEFINE_GEMM(NAME, TILE, ...)                                                                                        \
    ATTR static void NAME(int64_t k, const void *g, const void *x, size_t xs, float *y, size_t ys, int nc) {                \
        switch (nc) {                                                                                                       \
        case 1: TILE(__VA_ARGS__ 1, k, g, x, xs, y, ys); break;                                                            \
        case 2: TILE(__VA_ARGS__ 2, k, g, x, xs, y, ys); break;                                                            \
        case 3: TILE(__VA_ARGS__ 3, k, g, x, xs, y, ys); break;                                                            \
        case 4: TILE(__VA_ARGS__ 4, k, g, x, xs, y, ys); break;                                                            \
        case 5: TILE(__VA_ARGS__ 5, k, g, x, xs, y, ys); break;                                                            \
        case 6: TILE(__VA_ARGS__ 6, k, g, x, xs, y, ys); break;                                                            \
        case 7: TILE(__VA_ARGS__ 7, k, g, x, xs, y, ys); break;                                                            \
        default: TILE(__VA_ARGS__ 8, k, g, x, xs, y, ys); break;                                                           \
        }                                                                                                                   \
    }

DEFINE_GEMM(gemm_q4_0, gemm_tile, 16, 0, 3, )
DEFINE_GEMM(gemm_q5_0, gemm_tile, 16, 1, 4, )
DEFINE_GEMM(gemm_q8_0, gemm_tile, 32, 0, 7, )
DEFINE_GEMM(gemm_q4_K, gemm_tile_k4, )

static const lv_pack_ops ops_q4_0 = {LV_TYPE_Q4_0, gemm_q4_0};
static const lv_pack_ops ops_q5_0 = {LV_TYPE_Q5_0, gemm_q5_0};
static const lv_pack_ops ops_q8_0 = {LV_TYPE_Q8_0, gemm_q8_0};
static const lv_pack_ops ops_q4_K = {LV_TYPE_Q4_K, gemm_q4_K};

const lv_pack_ops *lv_pack_avx512_ops(lv_type t) {
    __builtin_cpu_init();
    if (!CPU_HAS("avx512vnni")) return NULL;
    switch (t) {
    case LV_TYPE_Q4_0: return &ops_q4_0;
    case LV_TYPE_Q5_0: return &ops_q5_0;
    case LV_TYPE_Q8_0: return &ops_q8_0;
    case LV_TYPE_Q4_K: return &ops_q4_K;
    default: return NULL;
    }
}

#else

const lv_pack_ops *lv_pack_avx512_ops(lv_type t) {
    (void)t;
    return NULL;
}

#endif
