/*
 * qk_avx2.c: the AVX2 + FMA + F16C level of the per-type kernels (compiled with -mavx2 -mfma
 * -mf16c -mbmi2), for x86-64 CPUs without AVX-512. Same design as qk_avx512.c with 8-lane
 * vectors and 16 registers:
 *  - one code path per pair (weight row, activation row): gemm tiles of 2 weight rows x up to 4
 *    activation rows run, for every pair, the same instructions in the same order as vec_dot, so
 *    a row's result does not depend on how the batch was split;
 *  - the 32-element types: one block per step, exact integer sums with vpmaddubsw + vpmaddwd
 *    (q8_0 with the sign trick: |w| times x with w's sign), acc += float(sums) * (d_w * d_x);
 *  - the K types: 32-element sub-steps, sub-block scales applied in integers with vpmaddwd,
 *    one conversion to float per super-block.
 *
 * Legend: k = elements per row, w = weight rows (ws bytes apart), x = activation rows (xs bytes
 * apart), s = results (ss floats apart), R x C = tile of weight rows x activation rows.
 */
#include "kernels/qkernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#define QK_INLINE static inline __attribute__((always_inline))

/* ============================================================================================
 * helpers
 * ========================================================================================== */

QK_INLINE uint16_t ld16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
QK_INLINE uint32_t ld32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
QK_INLINE float ldf32(const uint8_t *p) {
    float v;
    memcpy(&v, p, 4);
    return v;
}
QK_INLINE float h2f(uint16_t h) { return _cvtsh_ss(h); }

QK_INLINE float hsum8(__m256 v) {
    const __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 b = _mm_add_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_add_ss(b, _mm_movehdup_ps(b)));
}
QK_INLINE int hsum8i(__m256i v) {
    const __m128i a = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    const __m128i b = _mm_add_epi32(a, _mm_unpackhi_epi64(a, a));
    return _mm_cvtsi128_si32(_mm_add_epi32(b, _mm_shuffle_epi32(b, 1)));
}
QK_INLINE float hmax8(__m256 v) {
    const __m128 a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 b = _mm_max_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_max_ss(b, _mm_movehdup_ps(b)));
}
QK_INLINE __m256 abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

/* u8 x s8 -> int32 lanes, each the sum of 4 products (the callers keep |u * s| pairs < 2^15) */
QK_INLINE __m256i dot_u8s8(__m256i u, __m256i s) { return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)); }

/* ============================================================================================
 * activation conversions: bit-identical to quant.c's (tests/kernels/test_qkernels.c)
 * ========================================================================================== */

static void ff_f32(const float *x, void *y, int64_t k) { memcpy(y, x, (size_t)k * sizeof(float)); }

static void ff_f16(const float *x, void *vy, int64_t k) {
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), 0));
    if (i < k) {
        float t[8] = {0};
        uint16_t h[8];
        memcpy(t, x + i, (size_t)(k - i) * sizeof(float));
        _mm_storeu_si128((__m128i *)h, _mm256_cvtps_ph(_mm256_loadu_ps(t), 0));
        memcpy(y + i, h, (size_t)(k - i) * 2);
    }
}

/* lv_fp32_to_bf16 on 8 lanes (as 32-bit lanes) */
QK_INLINE __m256i bf16_round8(__m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i hi = _mm256_srli_epi32(u, 16);
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), _mm256_and_si256(hi, _mm256_set1_epi32(1)))), 16);
    /* NaN: |u| > 0x7f800000 (a signed compare is right: |u| < 2^31) */
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
    return _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(64)), nan);
}

/* 8 lanes of 32-bit values < 2^16 -> 8 uint16 */
QK_INLINE __m128i pack8_u16(__m256i v) { return _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)); }

static void ff_bf16(const float *x, void *vy, int64_t k) {
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) _mm_storeu_si128((__m128i *)(y + i), pack8_u16(bf16_round8(_mm256_loadu_ps(x + i))));
    if (i < k) {
        float t[8] = {0};
        uint16_t h[8];
        memcpy(t, x + i, (size_t)(k - i) * sizeof(float));
        _mm_storeu_si128((__m128i *)h, pack8_u16(bf16_round8(_mm256_loadu_ps(t))));
        memcpy(y + i, h, (size_t)(k - i) * 2);
    }
}

/* 32 floats * scale, rounded half to even and saturated to int8 (NaN and out-of-range -> -128 or
 * 127 through the signed-saturating packs, as quant.c's round_sat_i8) */
QK_INLINE __m256i q8_round32(const float *x, __m256 m) {
    const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), m));
    const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), m));
    const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), m));
    const __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), m));
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

QK_INLINE float amax_n(const float *x, int n) {
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) m = _mm256_max_ps(m, abs8(_mm256_loadu_ps(x + j)));
    return hmax8(m);
}

static void ff_q8_0(const float *x, void *vy, int64_t k) {
    uint8_t *y = vy;
    for (int64_t i = 0; i < k / 32; i++, x += 32, y += 34) {
        const float amax = amax_n(x, 32);
        const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        const uint16_t dh = (uint16_t)_cvtss_sh(d, 0);
        memcpy(y, &dh, 2);
        _mm256_storeu_si256((__m256i *)(y + 2), q8_round32(x, _mm256_set1_ps(id)));
    }
}

/* sum of 32 int8 */
QK_INLINE int sum_i8x32(__m256i q) { return hsum8i(dot_u8s8(_mm256_set1_epi8(1), q)); }

static void ff_q8_1(const float *x, void *vy, int64_t k) {
    uint8_t *y = vy;
    for (int64_t i = 0; i < k / 32; i++, x += 32, y += 36) {
        const float amax = amax_n(x, 32);
        const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        const __m256i q = q8_round32(x, _mm256_set1_ps(id));
        const uint16_t dh = (uint16_t)_cvtss_sh(d, 0), sh = (uint16_t)_cvtss_sh(d * (float)sum_i8x32(q), 0);
        memcpy(y, &dh, 2);
        memcpy(y + 2, &sh, 2);
        _mm256_storeu_si256((__m256i *)(y + 4), q);
    }
}

static void ff_q8_K(const float *x, void *vy, int64_t k) {
    uint8_t *y = vy;
    for (int64_t i = 0; i < k / 256; i++, x += 256, y += 292) {
        const float amax = amax_n(x, 256);
        if (amax == 0.0f) {
            memset(y, 0, 292);
            continue;
        }
        float max = amax; /* the first element of largest magnitude sets the sign */
        for (int j = 0; j < 256; j += 8) {
            const int m = _mm256_movemask_ps(_mm256_cmp_ps(abs8(_mm256_loadu_ps(x + j)), _mm256_set1_ps(amax), _CMP_EQ_OQ));
            if (m) {
                max = x[j + __builtin_ctz((unsigned)m)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < 8; j++) {
            const __m256i q = q8_round32(x + 32 * j, _mm256_set1_ps(iscale));
            _mm256_storeu_si256((__m256i *)(y + 4 + 32 * j), q);
            /* bsums of the two 16-element groups */
            const __m256i s = dot_u8s8(_mm256_set1_epi8(1), q);
            const __m128i lo = _mm256_castsi256_si128(s), hi = _mm256_extracti128_si256(s, 1);
            const __m128i l2 = _mm_add_epi32(lo, _mm_unpackhi_epi64(lo, lo)), h2 = _mm_add_epi32(hi, _mm_unpackhi_epi64(hi, hi));
            const int16_t b0 = (int16_t)(_mm_cvtsi128_si32(l2) + _mm_extract_epi32(l2, 1));
            const int16_t b1 = (int16_t)(_mm_cvtsi128_si32(h2) + _mm_extract_epi32(h2, 1));
            memcpy(y + 260 + 4 * j, &b0, 2);
            memcpy(y + 262 + 4 * j, &b1, 2);
        }
        const float d = 1.0f / iscale;
        memcpy(y, &d, 4);
    }
}

/* ============================================================================================
 * gemm from tiles of at most 2 rows x 4 columns; vec_dot is the 1 x 1 tile
 * ========================================================================================== */

#define QK_DEFINE_GEMM(NAME)                                                                                                   \
    static void gemm_##NAME(int64_t k, const void *w, size_t ws, const void *x, size_t xs, float *s, size_t ss, int nr, int nc) { \
        const uint8_t *X = x;                                                                                                  \
        for (int r = 0; r < nr; r += 2) {                                                                                      \
            const uint8_t *W = (const uint8_t *)w + (size_t)r * ws;                                                            \
            float *sr = s + (size_t)r * ss;                                                                                    \
            if (nr - r >= 2) {                                                                                                 \
                switch (nc) {                                                                                                  \
                case 1: tile_##NAME(2, 1, k, W, ws, X, xs, sr, ss); break;                                                     \
                case 2: tile_##NAME(2, 2, k, W, ws, X, xs, sr, ss); break;                                                     \
                case 3: tile_##NAME(2, 3, k, W, ws, X, xs, sr, ss); break;                                                     \
                default: tile_##NAME(2, 4, k, W, ws, X, xs, sr, ss); break;                                                    \
                }                                                                                                              \
            } else {                                                                                                           \
                switch (nc) {                                                                                                  \
                case 1: tile_##NAME(1, 1, k, W, ws, X, xs, sr, ss); break;                                                     \
                case 2: tile_##NAME(1, 2, k, W, ws, X, xs, sr, ss); break;                                                     \
                case 3: tile_##NAME(1, 3, k, W, ws, X, xs, sr, ss); break;                                                     \
                default: tile_##NAME(1, 4, k, W, ws, X, xs, sr, ss); break;                                                    \
                }                                                                                                              \
            }                                                                                                                  \
        }                                                                                                                      \
    }                                                                                                                          \
    static float vec_dot_##NAME(int64_t k, const void *w, const void *x) {                                                    \
        float s;                                                                                                               \
        tile_##NAME(1, 1, k, (const uint8_t *)w, 0, (const uint8_t *)x, 0, &s, 1);                                             \
        return s;                                                                                                              \
    }

/* ---- float weights: one fma per 8 elements and pair; the tail through a zero-padded copy ---- */

#define LD_F32(p) _mm256_loadu_ps((const float *)(p))
#define LD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define LD_BF16(p) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))

#define QK_FLOAT_TILE(NAME, ESIZE, LOAD)                                                                                          \
    QK_INLINE void tile_##NAME(const int R, const int C, int64_t k, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,     \
                               float *s, size_t ss) {                                                                            \
        __m256 acc[2][4];                                                                                                        \
        for (int r = 0; r < R; r++)                                                                                              \
            for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();                                                         \
        int64_t i = 0;                                                                                                           \
        for (; i + 8 <= k; i += 8) {                                                                                             \
            __m256 wv[2];                                                                                                        \
            for (int r = 0; r < R; r++) wv[r] = LOAD(w + (size_t)r * ws + (size_t)i * ESIZE);                                    \
            for (int c = 0; c < C; c++) {                                                                                        \
                const __m256 xv = LOAD(x + (size_t)c * xs + (size_t)i * ESIZE);                                                 \
                for (int r = 0; r < R; r++) acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);                                    \
            }                                                                                                                    \
        }                                                                                                                        \
        if (i < k) {                                                                                                             \
            uint8_t tw[2][32] = {{0}}, tx[4][32] = {{0}};                                                                        \
            __m256 wv[2];                                                                                                        \
            for (int r = 0; r < R; r++) {                                                                                        \
                memcpy(tw[r], w + (size_t)r * ws + (size_t)i * ESIZE, (size_t)(k - i) * ESIZE);                                  \
                wv[r] = LOAD(tw[r]);                                                                                             \
            }                                                                                                                    \
            for (int c = 0; c < C; c++) {                                                                                        \
                memcpy(tx[c], x + (size_t)c * xs + (size_t)i * ESIZE, (size_t)(k - i) * ESIZE);                                  \
                const __m256 xv = LOAD(tx[c]);                                                                                   \
                for (int r = 0; r < R; r++) acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);                                    \
            }                                                                                                                    \
        }                                                                                                                        \
        for (int r = 0; r < R; r++)                                                                                              \
            for (int c = 0; c < C; c++) s[(size_t)r * ss + (size_t)c] = hsum8(acc[r][c]);                                        \
    }

QK_FLOAT_TILE(f32, 4, LD_F32)
QK_DEFINE_GEMM(f32)
QK_FLOAT_TILE(f16, 2, LD_F16)
QK_DEFINE_GEMM(f16)
QK_FLOAT_TILE(bf16, 2, LD_BF16)
QK_DEFINE_GEMM(bf16)

/* ---- the 32-element types: one block per step ---- */

/* the 32 levels of a q4 block (16 nibble bytes at q): element j in the low nibble of byte j, j+16
 * in the high one */
QK_INLINE __m256i nibbles32(const uint8_t *q) {
    const __m128i a = _mm_loadu_si128((const __m128i *)q);
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(a), _mm_srli_epi16(a, 4), 1);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}

/* iq4: the signed levels of 32 indices (16 bytes, q4_0's nibble order) */
QK_INLINE __m256i iq4_levels32(const uint8_t *q) {
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)lv_kvalues_iq4nl));
    return _mm256_shuffle_epi8(tab, nibbles32(q));
}

/* + 16 for the levels whose bit is set in the 32-bit qh (bit j: element j) */
QK_INLINE __m256i add_high_bits32(__m256i q, uint32_t qh) {
    /* byte j gets byte j/8 of qh, then keeps bit j%8 */
    const __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), _mm256_setr_epi64x(0, 0x0101010101010101ll, 0x0202020202020202ll,
                                                                                          0x0303030303030303ll));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
    return _mm256_or_si256(q, _mm256_and_si256(set, _mm256_set1_epi8(16)));
}

/* weight block ib: levels (q8_0: signed; others unsigned), d, and m (q4_1/q5_1, in lane 0) */
QK_INLINE void ld_w(const lv_type T, const uint8_t *w, int64_t ib, __m256i *q, __m256 *d, __m256 *m) {
    switch (T) {
    case LV_TYPE_Q8_0: {
        const uint8_t *p = w + ib * 34;
        *q = _mm256_loadu_si256((const __m256i *)(p + 2));
        *d = _mm256_set1_ps(h2f(ld16(p)));
        break;
    }
    case LV_TYPE_Q4_0: {
        const uint8_t *p = w + ib * 18;
        *q = nibbles32(p + 2);
        *d = _mm256_set1_ps(h2f(ld16(p)));
        break;
    }
    case LV_TYPE_IQ4_NL: {
        const uint8_t *p = w + ib * 18;
        *q = iq4_levels32(p + 2);
        *d = _mm256_set1_ps(h2f(ld16(p)));
        break;
    }
    case LV_TYPE_Q5_0: {
        const uint8_t *p = w + ib * 22;
        *q = add_high_bits32(nibbles32(p + 6), ld32(p + 2));
        *d = _mm256_set1_ps(h2f(ld16(p)));
        break;
    }
    case LV_TYPE_Q4_1: {
        const uint8_t *p = w + ib * 20;
        *q = nibbles32(p + 4);
        *d = _mm256_set1_ps(h2f(ld16(p)));
        *m = _mm256_zextps128_ps256(_mm_set_ss(h2f(ld16(p + 2))));
        break;
    }
    default: { /* q5_1 */
        const uint8_t *p = w + ib * 24;
        *q = add_high_bits32(nibbles32(p + 8), ld32(p + 4));
        *d = _mm256_set1_ps(h2f(ld16(p)));
        *m = _mm256_zextps128_ps256(_mm_set_ss(h2f(ld16(p + 2))));
        break;
    }
    }
}

QK_INLINE void tile_b32(const lv_type T, const int R, const int C, int64_t k, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
                        float *s, size_t ss) {
    const int with_min = T == LV_TYPE_Q4_1 || T == LV_TYPE_Q5_1, offset = T == LV_TYPE_Q4_0 ? 8 : T == LV_TYPE_Q5_0 ? 16 : 0;
    const int xbs = with_min ? 36 : 34;
    __m256 acc[2][4];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < k / 32; ib++) {
        __m256i xq[4], xc[4];
        __m256 xd[4], xsum[4];
        for (int c = 0; c < C; c++) {
            const uint8_t *p = x + (size_t)c * xs + (size_t)ib * xbs;
            xq[c] = _mm256_loadu_si256((const __m256i *)(p + xbs - 32));
            xd[c] = _mm256_set1_ps(h2f(ld16(p)));
            /* levels stored with an offset (8, 16): each block's sum starts at -offset * sum(x) */
            if (offset) xc[c] = _mm256_sub_epi32(_mm256_setzero_si256(), dot_u8s8(_mm256_set1_epi8((char)offset), xq[c]));
            if (with_min) xsum[c] = _mm256_set1_ps(h2f(ld16(p + 2)));
        }
        for (int r = 0; r < R; r++) {
            __m256i wq;
            __m256 wd, wm = _mm256_setzero_ps();
            ld_w(T, w + (size_t)r * ws, ib, &wq, &wd, &wm);
            const bool sgn = T == LV_TYPE_Q8_0 || T == LV_TYPE_IQ4_NL; /* signed levels */
            const __m256i wabs = sgn ? _mm256_sign_epi8(wq, wq) : wq;
            for (int c = 0; c < C; c++) {
                __m256i isum;
                if (sgn) isum = dot_u8s8(wabs, _mm256_sign_epi8(xq[c], wq)); /* |w| * (x with w's sign) */
                else if (offset) isum = _mm256_add_epi32(xc[c], dot_u8s8(wq, xq[c]));
                else isum = dot_u8s8(wq, xq[c]);
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(wd, xd[c]), acc[r][c]);
                if (with_min) acc[r][c] = _mm256_fmadd_ps(wm, xsum[c], acc[r][c]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) s[(size_t)r * ss + (size_t)c] = hsum8(acc[r][c]);
}

#define QK_B32_TYPE(NAME, T)                                                                                                 \
    QK_INLINE void tile_##NAME(const int R, const int C, int64_t k, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs, \
                               float *s, size_t ss) {                                                                        \
        tile_b32(T, R, C, k, w, ws, x, xs, s, ss);                                                                          \
    }                                                                                                                        \
    QK_DEFINE_GEMM(NAME)

QK_B32_TYPE(q8_0, LV_TYPE_Q8_0)
QK_B32_TYPE(q4_0, LV_TYPE_Q4_0)
QK_B32_TYPE(q5_0, LV_TYPE_Q5_0)
QK_B32_TYPE(q4_1, LV_TYPE_Q4_1)
QK_B32_TYPE(q5_1, LV_TYPE_Q5_1)
QK_B32_TYPE(iq4_nl, LV_TYPE_IQ4_NL)

/* ---- the K types: super-blocks of 256 against q8_K, 32-element sub-steps ---- */

/* levels of 32-element sub-step t (sub-block t) */
QK_INLINE __m256i k4_levels(const uint8_t *qs, int t) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * (t >> 1)));
    return _mm256_and_si256((t & 1) ? _mm256_srli_epi16(q, 4) : q, _mm256_set1_epi8(0x0f));
}
/* bit t of each qh byte moved to bit 4 (within 16-bit lanes the 0x10 mask keeps each byte's own bit) */
QK_INLINE __m256i k5_levels(const uint8_t *qs, const uint8_t *qh, int t) {
    const __m256i h = _mm256_loadu_si256((const __m256i *)qh);
    const __m256i b = t <= 4 ? _mm256_slli_epi16(h, 4 - t) : _mm256_srli_epi16(h, t - 4);
    return _mm256_or_si256(k4_levels(qs, t), _mm256_and_si256(b, _mm256_set1_epi8(0x10)));
}
/* q2_K, sub-step t: bits 2(t % 4) of qs[32(t / 4) + l] */
QK_INLINE __m256i k2_levels(const uint8_t *qs, int t) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * (t >> 2)));
    return _mm256_and_si256(_mm256_srli_epi16(q, 2 * (t & 3)), _mm256_set1_epi8(3));
}
/* q3_K, sub-step t: the level + 4, in 0..7: the low 2 bits as q2_K's, bit t of hmask[l] as bit 2 */
QK_INLINE __m256i k3_levels(const uint8_t *qs, const uint8_t *hmask, int t) {
    const __m256i hm = _mm256_loadu_si256((const __m256i *)hmask);
    return _mm256_or_si256(k2_levels(qs, t), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, t), _mm256_set1_epi8(1)), 2));
}
/* sub-step t: half t/4, quarter g = t%4: low 4 bits from ql[64h + 32(g&1) + l] (g >= 2: high
 * nibble), bits 2g..2g+1 of qh[32h + l] as bits 4-5 */
QK_INLINE __m256i k6_levels(const uint8_t *ql, const uint8_t *qh, int t) {
    const int hh = t >> 2, g = t & 3;
    const __m256i l = _mm256_loadu_si256((const __m256i *)(ql + 64 * hh + 32 * (g & 1)));
    const __m256i lo = _mm256_and_si256(g >= 2 ? _mm256_srli_epi16(l, 4) : l, _mm256_set1_epi8(0x0f));
    const __m256i h = _mm256_loadu_si256((const __m256i *)(qh + 32 * hh));
    const __m256i hi = g <= 2 ? _mm256_slli_epi16(h, 4 - 2 * g) : _mm256_srli_epi16(h, 2);
    return _mm256_or_si256(lo, _mm256_and_si256(hi, _mm256_set1_epi8(0x30)));
}

QK_INLINE void tile_kq(const lv_type T, const int R, const int C, int64_t k, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
                       float *s, size_t ss) {
    const int wbs = T == LV_TYPE_Q4_K ? 144 : T == LV_TYPE_Q5_K ? 176 : T == LV_TYPE_IQ4_XS ? 136 : T == LV_TYPE_Q2_K ? 84 : T == LV_TYPE_Q3_K ? 110 : 210;
    __m256 acc[2][4];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < k / 256; i++) {
        uint8_t sc[2][16]; /* sub-block scales (q6_K: int8) */
        __m256i mn[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()}, isum[2][4];
        float dw[2], dminw[2] = {0, 0}, dx[4];
        for (int c = 0; c < C; c++) dx[c] = ldf32(x + (size_t)c * xs + (size_t)i * 292);
        for (int r = 0; r < R; r++) {
            const uint8_t *b = w + (size_t)r * ws + (size_t)i * wbs;
            if (T == LV_TYPE_Q6_K) {
                dw[r] = h2f(ld16(b + 208));
                memcpy(sc[r], b + 192, 16);
            } else if (T == LV_TYPE_Q3_K) { /* 16 6-bit scales minus 32, as int8 (the q6_K path below) */
                dw[r] = h2f(ld16(b + 108));
                for (int j = 0; j < 16; j++) sc[r][j] = (uint8_t)(int8_t)lv_q3_K_scale(b + 96, j);
            } else if (T == LV_TYPE_Q2_K) { /* 16 scales (low nibbles) and minima (high nibbles) */
                dw[r] = h2f(ld16(b + 80));
                dminw[r] = h2f(ld16(b + 82));
                const __m128i raw = _mm_loadu_si128((const __m128i *)b);
                _mm_storeu_si128((__m128i *)sc[r], _mm_and_si128(raw, _mm_set1_epi8(0x0f)));
                mn[r] = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0f)));
            } else if (T == LV_TYPE_IQ4_XS) { /* 6-bit scales minus 32, as int8 */
                dw[r] = h2f(ld16(b));
                const uint16_t sh = (uint16_t)ld16(b + 2);
                for (int j = 0; j < 8; j++) sc[r][j] = (uint8_t)(int8_t)((((b[4 + j / 2] >> (4 * (j & 1))) & 0xf) | (((sh >> (2 * j)) & 3) << 4)) - 32);
            } else {
                dw[r] = h2f(ld16(b));
                dminw[r] = h2f(ld16(b + 2));
                uint8_t m8[8];
                for (int j = 0; j < 8; j++) lv_get_scale_min_k4(j, b + 4, &sc[r][j], &m8[j]);
                const __m128i m = _mm_loadl_epi64((const __m128i *)m8);
                mn[r] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m)); /* each min twice, to meet q8_K's bsums */
            }
            for (int c = 0; c < C; c++) isum[r][c] = _mm256_setzero_si256();
        }
        for (int t = 0; t < 8; t++) {
            __m256i xq[4];
            for (int c = 0; c < C; c++) xq[c] = _mm256_loadu_si256((const __m256i *)(x + (size_t)c * xs + (size_t)i * 292 + 4 + 32 * t));
            for (int r = 0; r < R; r++) {
                const uint8_t *b = w + (size_t)r * ws + (size_t)i * wbs;
                __m256i wq, scv;
                if (T == LV_TYPE_IQ4_XS) { /* signed levels: |w| times x with w's sign */
                    const __m256i l = iq4_levels32(b + 8 + 16 * t), la = _mm256_sign_epi8(l, l);
                    scv = _mm256_set1_epi16((int8_t)sc[r][t]);
                    for (int c = 0; c < C; c++)
                        isum[r][c] = _mm256_add_epi32(isum[r][c], _mm256_madd_epi16(_mm256_maddubs_epi16(la, _mm256_sign_epi8(xq[c], l)), scv));
                    continue;
                }
                if (T == LV_TYPE_Q2_K) wq = k2_levels(b + 16, t);
                else if (T == LV_TYPE_Q3_K) wq = k3_levels(b + 32, b, t);
                else if (T == LV_TYPE_Q4_K) wq = k4_levels(b + 16, t);
                else if (T == LV_TYPE_Q5_K) wq = k5_levels(b + 48, b + 16, t);
                else wq = k6_levels(b, b + 128, t);
                if (T == LV_TYPE_Q6_K || T == LV_TYPE_Q3_K || T == LV_TYPE_Q2_K) /* two 16-element sub-blocks: int16 lanes 0-7 and 8-15 */
                    scv = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((int8_t)sc[r][2 * t])), _mm_set1_epi16((int8_t)sc[r][2 * t + 1]), 1);
                else scv = _mm256_set1_epi16(sc[r][t]);
                for (int c = 0; c < C; c++) isum[r][c] = _mm256_add_epi32(isum[r][c], _mm256_madd_epi16(_mm256_maddubs_epi16(wq, xq[c]), scv));
            }
        }
        for (int c = 0; c < C; c++) {
            const __m256i bsums = _mm256_loadu_si256((const __m256i *)(x + (size_t)c * xs + (size_t)i * 292 + 260));
            for (int r = 0; r < R; r++) {
                if (T == LV_TYPE_IQ4_XS) {
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][c]), _mm256_set1_ps(dw[r] * dx[c]), acc[r][c]);
                } else if (T == LV_TYPE_Q6_K || T == LV_TYPE_Q3_K) { /* the -32 (q3_K: -4) offset of the levels: 32 * sum(scale * bsum) */
                    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc[r]));
                    const __m256i is = _mm256_sub_epi32(isum[r][c], _mm256_slli_epi32(_mm256_madd_epi16(bsums, sc16), T == LV_TYPE_Q6_K ? 5 : 2));
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_set1_ps(dw[r] * dx[c]), acc[r][c]);
                } else {
                    const __m256i ms = _mm256_madd_epi16(bsums, mn[r]);
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][c]), _mm256_set1_ps(dw[r] * dx[c]), acc[r][c]);
                    acc[r][c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_set1_ps(dminw[r] * dx[c]), acc[r][c]);
                }
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) s[(size_t)r * ss + (size_t)c] = hsum8(acc[r][c]);
}

#define QK_K_TYPE(NAME, T)                                                                                                   \
    QK_INLINE void tile_##NAME(const int R, const int C, int64_t k, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs, \
                               float *s, size_t ss) {                                                                        \
        tile_kq(T, R, C, k, w, ws, x, xs, s, ss);                                                                           \
    }                                                                                                                        \
    QK_DEFINE_GEMM(NAME)

QK_K_TYPE(q4_K, LV_TYPE_Q4_K)
QK_K_TYPE(q5_K, LV_TYPE_Q5_K)
QK_K_TYPE(q6_K, LV_TYPE_Q6_K)
QK_K_TYPE(iq4_xs, LV_TYPE_IQ4_XS)
QK_K_TYPE(q2_K, LV_TYPE_Q2_K)
QK_K_TYPE(q3_K, LV_TYPE_Q3_K)

/* ============================================================================================
 * the table
 * ========================================================================================== */

static const lv_qtype_ops g_ops[] = {
    {LV_TYPE_F32, LV_TYPE_F32, ff_f32, vec_dot_f32, gemm_f32},
    {LV_TYPE_F16, LV_TYPE_F16, ff_f16, vec_dot_f16, gemm_f16},
    {LV_TYPE_BF16, LV_TYPE_BF16, ff_bf16, vec_dot_bf16, gemm_bf16},
    {LV_TYPE_Q8_0, LV_TYPE_Q8_0, ff_q8_0, vec_dot_q8_0, gemm_q8_0},
    {LV_TYPE_Q4_0, LV_TYPE_Q8_0, ff_q8_0, vec_dot_q4_0, gemm_q4_0},
    {LV_TYPE_Q5_0, LV_TYPE_Q8_0, ff_q8_0, vec_dot_q5_0, gemm_q5_0},
    {LV_TYPE_Q4_1, LV_TYPE_Q8_1, ff_q8_1, vec_dot_q4_1, gemm_q4_1},
    {LV_TYPE_Q5_1, LV_TYPE_Q8_1, ff_q8_1, vec_dot_q5_1, gemm_q5_1},
    {LV_TYPE_Q4_K, LV_TYPE_Q8_K, ff_q8_K, vec_dot_q4_K, gemm_q4_K},
    {LV_TYPE_Q5_K, LV_TYPE_Q8_K, ff_q8_K, vec_dot_q5_K, gemm_q5_K},
    {LV_TYPE_Q6_K, LV_TYPE_Q8_K, ff_q8_K, vec_dot_q6_K, gemm_q6_K},
    {LV_TYPE_Q2_K, LV_TYPE_Q8_K, ff_q8_K, vec_dot_q2_K, gemm_q2_K},
    {LV_TYPE_Q3_K, LV_TYPE_Q8_K, ff_q8_K, vec_dot_q3_K, gemm_q3_K},
    {LV_TYPE_IQ4_NL, LV_TYPE_Q8_0, ff_q8_0, vec_dot_iq4_nl, gemm_iq4_nl},
    {LV_TYPE_IQ4_XS, LV_TYPE_Q8_K, ff_q8_K, vec_dot_iq4_xs, gemm_iq4_xs},
};

const lv_qtype_ops *lv_qk_avx2_ops(lv_type t) {
    for (size_t i = 0; i < sizeof(g_ops) / sizeof(g_ops[0]); i++)
        if (g_ops[i].type == t) return &g_ops[i];
    return NULL;
}

#else /* the compiler does not target AVX2: this level falls back to scalar */

const lv_qtype_ops *lv_qk_avx2_ops(lv_type t) {
    (void)t;
    return NULL;
}

#endif
