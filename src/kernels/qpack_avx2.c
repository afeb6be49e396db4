/*
 * qpack_avx2.c: the AVX2 kernels for packed q4_0, q5_0, q8_0, q4_K and iq4_xs weights (qpack.h), for
 * x86-64 CPUs without AVX-512 VNNI.
 *
 * The layout is the AVX-512 one: a block group holds 4 bytes of each of 16 rows per 64 bytes, so
 * each 32-byte half is 4 bytes of 8 rows, one 32-bit lane per row. The kernel runs the 8 rows of a
 * half against up to 4 activation columns at a time; per 4 elements and column: broadcast the
 * column's 4 quants to every lane, vpmaddubsw (unsigned weight byte x signed activation byte,
 * adjacent pairs summed to 16 bits), and each lane holds its row's partial sum. A block ends with
 * one conversion, one scale product d_w * d_x and one fma for 8 rows: the float operations per
 * lane of qpack_avx512.c, so the two levels give identical results. Weights are unpacked once per
 * step for all the columns of a tile.
 *
 * Without VNNI the 16-bit pair sums must not saturate:
 *  - q4_0 (levels 0..15), q5_0 (0..31) and q4_K (0..15) stay unsigned: a pair is at most
 *    2 x 31 x 127 = 7874, so the pair sums of 4 (q5_0) or 8 (q4_0, a q4_K sub-block) steps add in
 *    16 bits before one vpmaddwd widens them; the offset (8, 16) comes back as nsum * offset, as in
 *    the AVX-512 kernels;
 *  - iq4_nl is q4_0's layout holding indices: vpshufb turns them into the table's signed levels,
 *    then the sign trick as q8_0's, widened every step;
 *  - q8_0 is stored as value + 128: the kernel flips the top bit back to the signed value w and
 *    uses the sign trick of qk_avx2.c, |w| (unsigned) x (x with w's sign), a pair at most
 *    2 x 128 x 127 = 32512, widened every step; iq4_xs's signed levels (from the iq4_nl table)
 *    the same way, widened with their sub-block scale.
 * Each column's operations are the same whatever the tile width, so a batch gives the results of
 * token-by-token decode.
 */
#include "kernels/qpack.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

INLINE __m256i bcast32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* Rows 8h..8h+7 of the group against nc <= 4 columns. QB = quant bytes per row and block (16:
 * q4_0 and q5_0, 32: q8_0), H5 = q5_0's high-bit masks follow the scales, SH = log2 of the offset. */
INLINE void half_tile(const int QB, const int H5, const int SH, const int IQ, const int nc, const int h, int64_t k, const uint8_t *g,
                      const uint8_t *x, size_t xs, float *y, size_t ys) {
    const int64_t nb = k / 32;
    const size_t xoff = lv_packx_tail(LV_TYPE_Q8_0, k), qoff = 2 * LV_PACK_ROWS + (H5 ? 64 : 0), gb = qoff + LV_PACK_ROWS * (size_t)QB;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    /* iq4_nl's level table, loaded once per call */
    const __m256i tab = IQ ? _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)lv_kvalues_iq4nl)) : _mm256_setzero_si256();
    __m256 acc[4];
    const uint8_t *q[4];
    const float *xd[4];
    const int32_t *xn[4];
    for (int c = 0; c < nc; c++) {
        const uint8_t *xr = x + (size_t)c * xs;
        acc[c] = _mm256_setzero_ps();
        q[c] = xr + 2;
        xd[c] = (const float *)(xr + xoff);
        xn[c] = (const int32_t *)(xd[c] + nb);
    }
    for (int64_t b = 0; b < nb; b++, g += gb) {
        const size_t xb = (size_t)b * sizeof(lv_block_q8_0);
        __m256i s[4];
        if (QB == 16) {
            /* 8 steps (4 of low nibbles: elements 4j.., 4 of high: 16 + 4j..) */
            __m256i w[8];
            for (int j = 0; j < 4; j++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(g + qoff + 64 * j + 32 * h));
                w[j] = _mm256_and_si256(v, m4);
                w[4 + j] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            }
            if (H5) { /* bit 4 where the mask says: bit 4r + i of h[j] is row r's byte i */
                const __m256i b4 = _mm256_set1_epi8(0x10), bit = _mm256_set1_epi32(0x08040201);
                const __m256i rep = _mm256_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12, 0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12,
                                                     12);
                const __m256i shift = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
                for (int j = 0; j < 8; j++) {
                    uint64_t hm;
                    memcpy(&hm, g + 32 + 8 * j, 8);
                    /* lane r gets its 4 bits in every byte, then byte i keeps bit i */
                    const __m256i n = _mm256_shuffle_epi8(_mm256_srlv_epi32(_mm256_set1_epi32((int)(uint32_t)(hm >> (32 * h))), shift), rep);
                    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(n, bit), bit);
                    w[j] = _mm256_or_si256(w[j], _mm256_and_si256(set, b4));
                }
            }
            if (IQ) { /* iq4_nl: signed levels from the table, the sign trick, pairs <= 2 x 127 x 127 widened every step */
                for (int j = 0; j < 8; j++) w[j] = _mm256_shuffle_epi8(tab, w[j]);
                for (int c = 0; c < nc; c++) {
                    const uint8_t *qc = q[c] + xb;
                    __m256i a = _mm256_setzero_si256();
                    for (int j = 0; j < 8; j++) {
                        const int off = j < 4 ? 4 * j : 16 + 4 * (j - 4);
                        const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w[j], w[j]), _mm256_sign_epi8(bcast32(qc + off), w[j]));
                        a = _mm256_add_epi32(a, _mm256_madd_epi16(p, ones));
                    }
                    s[c] = a;
                }
            } else
            for (int c = 0; c < nc; c++) {
                const uint8_t *qc = q[c] + xb;
                if (H5) { /* pairs <= 7874: 4 steps per 16-bit sum */
                    __m256i a = _mm256_maddubs_epi16(w[0], bcast32(qc)), t = _mm256_maddubs_epi16(w[4], bcast32(qc + 16));
                    for (int j = 1; j < 4; j++) {
                        a = _mm256_add_epi16(a, _mm256_maddubs_epi16(w[j], bcast32(qc + 4 * j)));
                        t = _mm256_add_epi16(t, _mm256_maddubs_epi16(w[4 + j], bcast32(qc + 16 + 4 * j)));
                    }
                    s[c] = _mm256_add_epi32(_mm256_madd_epi16(a, ones), _mm256_madd_epi16(t, ones));
                } else { /* pairs <= 3810: all 8 steps in one 16-bit sum */
                    __m256i a = _mm256_maddubs_epi16(w[0], bcast32(qc));
                    for (int j = 1; j < 8; j++) a = _mm256_add_epi16(a, _mm256_maddubs_epi16(w[j], bcast32(qc + 4 * j)));
                    s[c] = _mm256_madd_epi16(a, ones);
                }
                s[c] = _mm256_add_epi32(s[c], _mm256_slli_epi32(_mm256_set1_epi32(xn[c][b]), SH));
            }
        } else {
            const __m256i top = _mm256_set1_epi8((char)0x80);
            for (int c = 0; c < nc; c++) s[c] = _mm256_setzero_si256();
            for (int j = 0; j < 8; j++) {
                const __m256i w = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(g + qoff + 64 * j + 32 * h)), top);
                const __m256i wa = _mm256_sign_epi8(w, w);
                for (int c = 0; c < nc; c++) {
                    const __m256i p = _mm256_maddubs_epi16(wa, _mm256_sign_epi8(bcast32(q[c] + xb + 4 * j), w));
                    s[c] = _mm256_add_epi32(s[c], _mm256_madd_epi16(p, ones));
                }
            }
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16 * h)));
        for (int c = 0; c < nc; c++) acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[c]), _mm256_mul_ps(dw, _mm256_set1_ps(xd[c][b])), acc[c]);
    }
    for (int c = 0; c < nc; c++) _mm256_storeu_ps(y + (size_t)c * ys + 8 * h, acc[c]);
}

/* q4_K, rows 8h..8h+7 against nc <= 4 columns, per super-block (256 elements): for each sub-block
 * j, 8 steps of nibbles (pairs <= 3810, summed in 16 bits) against the column's 32 quants; one
 * vpmaddwd with the rows' 6-bit scales (as 16-bit pairs) widens and scales the sub-block's sum
 * into isum. The mins part is sum_j m_j * sb_j, four vpmaddwd of (m, m) pairs against (sb, sb)
 * pairs. Then acc += isum * (d * d_x) and acc -= msum * (dmin * d_x), as qpack_avx512.c does. */
INLINE void half_tile_k4(const int nc, const int h, int64_t k, const uint8_t *g, const uint8_t *x, size_t xs, float *y, size_t ys) {
    const int64_t nb = k / 256;
    const size_t xoff = lv_packx_tail(LV_TYPE_Q4_K, k);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[4];
    for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, g += 2368) {
        __m256i isum[4];
        for (int c = 0; c < nc; c++) isum[c] = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) {
            const uint8_t *qv = g + 320 + 512 * (j / 2) + 32 * h;
            __m256i a[4];
            for (int i = 0; i < 8; i++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(qv + 64 * i));
                const __m256i w = _mm256_and_si256((j & 1) ? _mm256_srli_epi16(v, 4) : v, m4);
                for (int c = 0; c < nc; c++) {
                    const uint8_t *qx = x + (size_t)c * xs + (size_t)b * sizeof(lv_block_q8_K) + 4 + 32 * j + 4 * i;
                    const __m256i p = _mm256_maddubs_epi16(w, bcast32(qx));
                    a[c] = i ? _mm256_add_epi16(a[c], p) : p;
                }
            }
            const __m256i sc = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(g + 64 + 16 * j + 8 * h)));
            const __m256i sc2 = _mm256_or_si256(sc, _mm256_slli_epi32(sc, 16)); /* (sc, sc) per row */
            for (int c = 0; c < nc; c++) isum[c] = _mm256_add_epi32(isum[c], _mm256_madd_epi16(a[c], sc2));
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16 * h)));
        const __m256 dmw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 32 + 16 * h)));
        __m256i mp[4];
        for (int p = 0; p < 4; p++) mp[p] = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(g + 192 + 32 * p + 16 * h)));
        for (int c = 0; c < nc; c++) {
            const uint8_t *xr = x + (size_t)c * xs;
            const uint8_t *sb = xr + xoff + (size_t)b * 16;
            __m256i ms = _mm256_madd_epi16(mp[0], bcast32(sb));
            for (int p = 1; p < 4; p++) ms = _mm256_add_epi32(ms, _mm256_madd_epi16(mp[p], bcast32(sb + 4 * p)));
            float dx;
            memcpy(&dx, xr + (size_t)b * sizeof(lv_block_q8_K), 4);
            const __m256 vdx = _mm256_set1_ps(dx);
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_mul_ps(dw, vdx), acc[c]);
            acc[c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_mul_ps(dmw, vdx), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm256_storeu_ps(y + (size_t)c * ys + 8 * h, acc[c]);
}

/* iq4_xs, rows 8h..8h+7 against nc <= 4 columns, per super-block: the indices become signed
 * levels (vpshufb from the iq4_nl table), then the sign trick as q8_0 (pairs <= 2 x 127 x 127); each
 * step's pair sums go through one vpmaddwd with the sub-block's scale ls - 32 (as 16-bit pairs),
 * which widens and scales them at once. Then acc += isum * (d * d_x). */
INLINE void half_tile_x4(const int nc, const int h, int64_t k, const uint8_t *g, const uint8_t *x, size_t xs, float *y, size_t ys) {
    const int64_t nb = k / 256;
    const __m256i m4 = _mm256_set1_epi8(0x0F), lo16 = _mm256_set1_epi32(0xFFFF);
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)lv_kvalues_iq4nl));
    __m256 acc[4];
    for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, g += 2208) {
        __m256i isum[4];
        for (int c = 0; c < nc; c++) isum[c] = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) {
            const __m256i sc = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(g + 32 + 16 * j + 8 * h)));
            const __m256i sc2 = _mm256_or_si256(_mm256_and_si256(sc, lo16), _mm256_slli_epi32(sc, 16)); /* (sc, sc) per row */
            for (int q = 0; q < 4; q++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(g + 160 + 256 * j + 64 * q + 32 * h));
                const __m256i wl = _mm256_shuffle_epi8(tab, _mm256_and_si256(v, m4));
                const __m256i wh = _mm256_shuffle_epi8(tab, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
                const __m256i al = _mm256_sign_epi8(wl, wl), ah = _mm256_sign_epi8(wh, wh);
                for (int c = 0; c < nc; c++) {
                    const uint8_t *qx = x + (size_t)c * xs + (size_t)b * sizeof(lv_block_q8_K) + 4 + 32 * j + 4 * q;
                    const __m256i pl = _mm256_maddubs_epi16(al, _mm256_sign_epi8(bcast32(qx), wl));
                    const __m256i ph = _mm256_maddubs_epi16(ah, _mm256_sign_epi8(bcast32(qx + 16), wh));
                    isum[c] = _mm256_add_epi32(isum[c], _mm256_add_epi32(_mm256_madd_epi16(pl, sc2), _mm256_madd_epi16(ph, sc2)));
                }
            }
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16 * h)));
        for (int c = 0; c < nc; c++) {
            float dx;
            memcpy(&dx, x + (size_t)c * xs + (size_t)b * sizeof(lv_block_q8_K), 4);
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_mul_ps(dw, _mm256_set1_ps(dx)), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm256_storeu_ps(y + (size_t)c * ys + 8 * h, acc[c]);
}

/* both halves, the columns in fours (the last tile nc % 4); K4 = 1: q4_K, 2: iq4_xs, 3: iq4_nl (q4_0's layout) */
INLINE void gemm_all(const int QB, const int H5, const int SH, const int K4, int64_t k, const void *g, const void *x, size_t xs, float *y,
                     size_t ys, int nc) {
    for (int c0 = 0; c0 < nc; c0 += 4) {
        const uint8_t *xc = (const uint8_t *)x + (size_t)c0 * xs;
        float *yc = y + (size_t)c0 * ys;
        for (int h = 0; h < 2; h++) {
            const int n = nc - c0 < 4 ? nc - c0 : 4;
#define TILE(N)                                                                                                                \
    K4 == 2 ? half_tile_x4(N, h, k, g, xc, xs, yc, ys) : K4 == 1 ? half_tile_k4(N, h, k, g, xc, xs, yc, ys) : half_tile(QB, H5, SH, K4 == 3, N, h, k, g, xc, xs, yc, ys)
            switch (n) {
            case 1: TILE(1); break;
            case 2: TILE(2); break;
            case 3: TILE(3); break;
            default: TILE(4); break;
            }
#undef TILE
        }
    }
}

static void gemm_q4_0(int64_t k, const void *g, const void *x, size_t xs, float *y, size_t ys, int nc) { gemm_all(16, 0, 3, 0, k, g, x, xs, y, ys, nc); }
static void gemm_q5_0(int64_t k, const void *g, const void *x, size_t xs, float *y, size_t ys, int nc) { gemm_all(16, 1, 4, 0, k, g, x, xs, y, ys, nc); }
static void gemm_q8_0(int64_t k, const void *g, const void *x, size_t xs, float *y, size_t ys, int nc) { gemm_all(32, 0, 7, 0, k, g, x, xs, y, ys, nc); }
static void gemm_q4_K(int64_t k, const void *g, const void *x, size_t xs, float *y, size_t ys, int nc) { gemm_all(0, 0, 0, 1, k, g, x, xs, y, ys, nc); }
static void gemm_iq4_nl(int64_t k, const void *g, const void *x, size_t xs, float *y, size_t ys, int nc) { gemm_all(16, 0, 0, 3, k, g, x, xs, y, ys, nc); }
static void gemm_iq4_xs(int64_t k, const void *g, const void *x, size_t xs, float *y, size_t ys, int nc) { gemm_all(0, 0, 0, 2, k, g, x, xs, y, ys, nc); }

static const lv_pack_ops ops_q4_0 = {LV_TYPE_Q4_0, gemm_q4_0};
static const lv_pack_ops ops_q5_0 = {LV_TYPE_Q5_0, gemm_q5_0};
static const lv_pack_ops ops_q8_0 = {LV_TYPE_Q8_0, gemm_q8_0};
static const lv_pack_ops ops_q4_K = {LV_TYPE_Q4_K, gemm_q4_K};
static const lv_pack_ops ops_iq4_xs = {LV_TYPE_IQ4_XS, gemm_iq4_xs};
static const lv_pack_ops ops_iq4_nl = {LV_TYPE_IQ4_NL, gemm_iq4_nl};

const lv_pack_ops *lv_pack_avx2_ops(lv_type t) {
    switch (t) {
    case LV_TYPE_Q4_0: return &ops_q4_0;
    case LV_TYPE_Q5_0: return &ops_q5_0;
    case LV_TYPE_Q8_0: return &ops_q8_0;
    case LV_TYPE_Q4_K: return &ops_q4_K;
    case LV_TYPE_IQ4_XS: return &ops_iq4_xs;
    case LV_TYPE_IQ4_NL: return &ops_iq4_nl;
    default: return NULL;
    }
}

#else

const lv_pack_ops *lv_pack_avx2_ops(lv_type t) {
    (void)t;
    return NULL;
}

#endif
