/*
 * qk_avx512_impl.h: the AVX-512 kernels, included twice by qk_avx512.c: once plain (QK_VNNI = 0,
 * QK_BF16 = 0) and once with the VNNI / BF16 instructions (QK_ATTR_I, QK_ATTR_B carry the target
 * attributes). Names get QK_SUFFIX. The helpers and activation converters that need no extension
 * are defined once (QK_AVX512_SHARED).
 *
 * Every kernel is a tile function tile_T(R, C, ...) over R weight rows x C activation rows; R and
 * C are compile-time constants after inlining (gemm instantiates 4xC and 1xC, vec_dot is 1x1),
 * so the per-pair instruction sequence is the same in every tile shape.
 */

/* ============================================================================================
 * shared: loads, scales, activation conversions (no VNNI / BF16)
 * ========================================================================================== */
#ifndef QK_AVX512_SHARED
#define QK_AVX512_SHARED

#define QK_INLINE static inline __attribute__((always_inline))

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

/* 32 bytes at p0 in the low half, 32 bytes at p1 (or zeros) in the high half */
QK_INLINE __m512i load_2x32(const uint8_t *p0, const uint8_t *p1, const int two) {
    const __m256i a = _mm256_loadu_si256((const __m256i *)p0);
    const __m256i b = two ? _mm256_loadu_si256((const __m256i *)p1) : _mm256_setzero_si256();
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

/* The 4-bit levels of two 32-element blocks whose 16 nibble bytes are at q0 and q1 (q1 absent:
 * zeros): [lo(q0) hi(q0) lo(q1) hi(q1)], element j of a block in the low nibble of byte j, j+16 in
 * the high one. */
QK_INLINE __m512i nibbles_2x16(const uint8_t *q0, const uint8_t *q1, const int two) {
    const __m128i a = _mm_loadu_si128((const __m128i *)q0);
    const __m128i b = two ? _mm_loadu_si128((const __m128i *)q1) : _mm_setzero_si128();
    const __m512i ab = _mm512_castsi256_si512(_mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1));
    const __m512i aabb = _mm512_permutexvar_epi64(_mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0), ab);
    const __m512i sh = _mm512_set_epi64(0x0004000400040004ll, 0x0004000400040004ll, 0, 0, 0x0004000400040004ll, 0x0004000400040004ll, 0, 0);
    return _mm512_and_si512(_mm512_srlv_epi16(aabb, sh), _mm512_set1_epi8(0x0f));
}

/* bit 4 of each level of two blocks from their 32-bit qh words */
QK_INLINE __m512i add_high_bits(__m512i q, uint32_t qh0, uint32_t qh1) {
    const __mmask64 m = _cvtu64_mask64((uint64_t)qh0 | ((uint64_t)qh1 << 32));
    return _mm512_mask_add_epi8(q, m, q, _mm512_set1_epi8(16));
}

/* ---- activation conversions: bit-identical to quant.c's (tests/kernels/test_qkernels.c) ---- */

static void ff_f32(const float *x, void *y, int64_t k) { memcpy(y, x, (size_t)k * sizeof(float)); }

static void ff_f16(const float *x, void *vy, int64_t k) {
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtps_ph(_mm512_loadu_ps(x + i), 0));
    if (i < k) {
        const __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
        _mm256_mask_storeu_epi16(y + i, m, _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), 0));
    }
}

/* round to nearest even on the bits, NaN -> quiet NaN: lv_fp32_to_bf16 on 16 lanes */
QK_INLINE __m256i bf16_round16(__m512 v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i hi = _mm512_srli_epi32(u, 16);
    const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(hi, _mm512_set1_epi32(1)))), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(64))));
}

static void ff_bf16(const float *x, void *vy, int64_t k) {
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) _mm256_storeu_si256((__m256i *)(y + i), bf16_round16(_mm512_loadu_ps(x + i)));
    if (i < k) {
        const __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
        _mm256_mask_storeu_epi16(y + i, m, bf16_round16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* max |x| of 32 floats */
QK_INLINE float amax32(__m512 a, __m512 b) { return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b))); }

/* round half to even and saturate to int8 (cvtps2dq gives 0x80000000 for NaN / out of range,
 * which the signed saturation turns into -128: quant.c's round_sat_i8) */
QK_INLINE __m128i q8_round16(__m512 v) { return _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)); }

static void ff_q8_0(const float *x, void *vy, int64_t k) {
    uint8_t *y = vy;
    for (int64_t i = 0; i < k / 32; i++, x += 32, y += 34) {
        const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
        const float amax = amax32(a, b);
        const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        const uint16_t dh = (uint16_t)_cvtss_sh(d, 0);
        memcpy(y, &dh, 2);
        const __m512 vid = _mm512_set1_ps(id);
        _mm_storeu_si128((__m128i *)(y + 2), q8_round16(_mm512_mul_ps(a, vid)));
        _mm_storeu_si128((__m128i *)(y + 18), q8_round16(_mm512_mul_ps(b, vid)));
    }
}

static void ff_q8_1(const float *x, void *vy, int64_t k) {
    uint8_t *y = vy;
    for (int64_t i = 0; i < k / 32; i++, x += 32, y += 36) {
        const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
        const float amax = amax32(a, b);
        const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        const __m128i qa = q8_round16(_mm512_mul_ps(a, vid)), qb = q8_round16(_mm512_mul_ps(b, vid));
        const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_cvtepi8_epi32(qa), _mm512_cvtepi8_epi32(qb)));
        const uint16_t dh = (uint16_t)_cvtss_sh(d, 0), sh = (uint16_t)_cvtss_sh(d * (float)sum, 0);
        memcpy(y, &dh, 2);
        memcpy(y + 2, &sh, 2);
        _mm_storeu_si128((__m128i *)(y + 4), qa);
        _mm_storeu_si128((__m128i *)(y + 20), qb);
    }
}

static void ff_q8_K(const float *x, void *vy, int64_t k) {
    uint8_t *y = vy;
    for (int64_t i = 0; i < k / 256; i++, x += 256, y += 292) {
        __m512 mx = _mm512_setzero_ps();
        for (int j = 0; j < 16; j++) mx = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * j)), mx);
        const float amax = _mm512_reduce_max_ps(mx);
        if (amax == 0.0f) {
            memset(y, 0, 292);
            continue;
        }
        /* the first element of largest magnitude sets the sign, as in the reference */
        float max = amax;
        for (int j = 0; j < 16; j++) {
            const __mmask16 m = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * j)), _mm512_set1_ps(amax), _CMP_EQ_OQ);
            if (m) {
                max = x[16 * j + __builtin_ctz(m)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m512 vis = _mm512_set1_ps(iscale);
        for (int j = 0; j < 16; j++) {
            const __m128i q = q8_round16(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * j), vis));
            _mm_storeu_si128((__m128i *)(y + 4 + 16 * j), q);
            const int16_t bs = (int16_t)_mm512_reduce_add_epi32(_mm512_cvtepi8_epi32(q));
            memcpy(y + 260 + 2 * j, &bs, 2);
        }
        const float d = 1.0f / iscale;
        memcpy(y, &d, 4);
    }
}

/* the int8 dot product the integer kernels build on, without VNNI: vpmaddubsw (u8 x s8 -> s16
 * pairs; the callers keep |u * s| pairs below 2^15) then vpmaddwd with ones */
QK_INLINE __m512i dot_u8s8_base(__m512i acc, __m512i u, __m512i s) {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
}

/* q4_K / q5_K: the eight 6-bit scales and mins of a super-block (lv_get_scale_min_k4) as int16:
 * scales in lanes 0..7 of *sc, each min twice (lanes 2j, 2j+1) in *mn, to meet q8_K's bsums */
QK_INLINE void k4_scales(const uint8_t *sc12, __m512i *sc, __m256i *mn) {
    uint32_t u[3];
    memcpy(u, sc12, 12);
    const uint32_t s_lo = u[0] & 0x3f3f3f3fu, m_lo = u[1] & 0x3f3f3f3fu;
    const uint32_t s_hi = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
    const uint32_t m_hi = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
    const __m128i s8 = _mm_cvtsi64_si128((long long)((uint64_t)s_lo | ((uint64_t)s_hi << 32)));
    const __m128i m8 = _mm_cvtsi64_si128((long long)((uint64_t)m_lo | ((uint64_t)m_hi << 32)));
    *sc = _mm512_castsi128_si512(_mm_cvtepu8_epi16(s8));
    *mn = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
}

/* int16 lane p of the vpmaddubsw result of 64-element sub-step s belongs to sub-block:
 * q4_K/q5_K (32 elements): 2s + p/16; q6_K (16 elements): 4s + p/8 */
QK_INLINE __m512i k4_scale_idx(int s) {
    return _mm512_add_epi16(_mm512_set1_epi16((short)(2 * s)), _mm512_set_epi16(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0,
                                                                              0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
}
QK_INLINE __m512i k6_scale_idx(int s) {
    return _mm512_add_epi16(_mm512_set1_epi16((short)(4 * s)), _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1,
                                                                              1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0));
}

/* the levels of 64-element sub-step s of a super-block */
QK_INLINE __m512i k4_levels(const uint8_t *qs, int s) {
    const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * s)));
    const __m512i sh = _mm512_set_epi64(0x0004000400040004ll, 0x0004000400040004ll, 0x0004000400040004ll, 0x0004000400040004ll, 0, 0, 0, 0);
    return _mm512_and_si512(_mm512_srlv_epi16(q, sh), _mm512_set1_epi8(0x0f));
}
QK_INLINE __m512i k5_levels(const uint8_t *qs, const uint8_t *qh, int s) {
    const __m512i q = k4_levels(qs, s);
    const __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qh));
    const __m512i bits = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * s))), _mm256_set1_epi8((char)(1 << (2 * s + 1))), 1);
    return _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(h, bits), q, _mm512_set1_epi8(16));
}
QK_INLINE __m512i k6_levels(const uint8_t *ql, const uint8_t *qh, int s) {
    const __m512i l = _mm512_loadu_si512((const void *)(ql + 64 * (s >> 1)));
    const __m512i lo = _mm512_and_si512((s & 1) ? _mm512_srli_epi16(l, 4) : l, _mm512_set1_epi8(0x0f));
    const __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qh + 32 * (s >> 1))));
    /* quarters 0,1 take bits 0-1 and 2-3 of qh (shift left 4 and 2), quarters 2,3 bits 4-5 and 6-7
     * (shift right 0 and 2); within 16-bit lanes the 0x30 mask keeps each byte's own bits */
    const __m512i hi = (s & 1) ? _mm512_srlv_epi16(h, _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1))
                               : _mm512_sllv_epi16(h, _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1));
    return _mm512_or_si512(lo, _mm512_and_si512(hi, _mm512_set1_epi8(0x30)));
}

/* q2_K, 64-element sub-step s: 2-bit levels, bits 2 (t % 4) of qs[32 (t / 4) + l] for the two
 * 32-element sub-steps t = 2s (low half) and 2s + 1 (high half) */
QK_INLINE __m512i k2_levels(const uint8_t *qs, int s) {
    const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * (s >> 1))));
    const int lo = 4 * (s & 1);
    const __m512i sh = _mm512_inserti64x4(_mm512_set1_epi16((short)lo), _mm256_set1_epi16((short)(lo + 2)), 1);
    return _mm512_and_si512(_mm512_srlv_epi16(q, sh), _mm512_set1_epi8(3));
}
/* q3_K: the level + 4 (0..7): q2_K's low bits, and bit t of hmask[l] as bit 2 */
QK_INLINE __m512i k3_levels(const uint8_t *qs, const uint8_t *hmask, int s) {
    const __m512i q = k2_levels(qs, s);
    const __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)hmask));
    const __m512i bits = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * s))), _mm256_set1_epi8((char)(1 << (2 * s + 1))), 1);
    return _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(h, bits), q, _mm512_set1_epi8(4));
}
/* iq4_nl / iq4_xs: the signed levels of 4-bit indices (lv_kvalues_iq4nl) */
QK_INLINE __m512i iq4_lookup(__m512i idx) {
    return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)lv_kvalues_iq4nl)), idx);
}

/* 16 fp16 values, one per block: at byte `off` of blocks of `stride` bytes starting at base, for
 * blocks i < n (the others 0), as floats. A full chunk (n = 16) loads the chunk in 128-byte windows
 * (masked at its end, so nothing past the chunk is read) and picks the values with vpermt2w: about
 * one instruction per block and row, where building the vector from scalar loads cost several
 * (and vpgatherdd more still: bench/NOTES.md). */
QK_INLINE __m512i load64_upto(const uint8_t *p, int avail) {
    if (avail >= 64) return _mm512_loadu_si512((const void *)p);
    if (avail <= 0) return _mm512_setzero_si512();
    return _mm512_maskz_loadu_epi8((__mmask64)(~0ull >> (64 - avail)), (const void *)p);
}
QK_INLINE __m512 fp16_gather16(const uint8_t *base, const int stride, int n, const int off) {
    __m256i h = _mm256_setzero_si256();
    if (n >= 16) {
        const int region = 16 * stride, last = (15 * stride + off) / 2;
        for (int win = 0; win * 64 <= last; win++) {
            const __m512i a = load64_upto(base + 128 * win, region - 128 * win);
            const __m512i b = load64_upto(base + 128 * win + 64, region - 128 * win - 64);
            /* lane i takes word (stride * i + off) / 2 - 64 * win of the window [a b] */
            const __m512i idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                 (short)(((15 * stride + off) / 2 - 64 * win) & 127), (short)(((14 * stride + off) / 2 - 64 * win) & 127),
                                                 (short)(((13 * stride + off) / 2 - 64 * win) & 127), (short)(((12 * stride + off) / 2 - 64 * win) & 127),
                                                 (short)(((11 * stride + off) / 2 - 64 * win) & 127), (short)(((10 * stride + off) / 2 - 64 * win) & 127),
                                                 (short)(((9 * stride + off) / 2 - 64 * win) & 127), (short)(((8 * stride + off) / 2 - 64 * win) & 127),
                                                 (short)(((7 * stride + off) / 2 - 64 * win) & 127), (short)(((6 * stride + off) / 2 - 64 * win) & 127),
                                                 (short)(((5 * stride + off) / 2 - 64 * win) & 127), (short)(((4 * stride + off) / 2 - 64 * win) & 127),
                                                 (short)(((3 * stride + off) / 2 - 64 * win) & 127), (short)(((2 * stride + off) / 2 - 64 * win) & 127),
                                                 (short)(((1 * stride + off) / 2 - 64 * win) & 127), (short)(((0 * stride + off) / 2 - 64 * win) & 127));
            __mmask16 k = 0;
            for (int i = 0; i < 16; i++) {
                const int wd = (stride * i + off) / 2 - 64 * win;
                if (wd >= 0 && wd < 64) k |= (__mmask16)(1u << i);
            }
            h = _mm256_mask_mov_epi16(h, k, _mm512_castsi512_si256(_mm512_permutex2var_epi16(a, idx, b)));
        }
    } else {
        uint16_t t[16] = {0};
        for (int i = 0; i < n; i++) t[i] = ld16(base + i * stride + off);
        h = _mm256_loadu_si256((const __m256i *)t);
    }
    return _mm512_cvtph_ps(h);
}

/* the levels of weight blocks ib, ib+1 (q8_0, iq4_nl: signed; the others unsigned) */
QK_INLINE __m512i ld_levels(const lv_type T, const uint8_t *w, int64_t ib, const int two) {
    switch (T) {
    case LV_TYPE_Q8_0: {
        const uint8_t *p = w + ib * 34;
        return load_2x32(p + 2, p + 36, two);
    }
    case LV_TYPE_Q4_0: {
        const uint8_t *p = w + ib * 18;
        return nibbles_2x16(p + 2, p + 20, two);
    }
    case LV_TYPE_IQ4_NL: {
        const uint8_t *p = w + ib * 18;
        return iq4_lookup(nibbles_2x16(p + 2, p + 20, two));
    }
    case LV_TYPE_Q5_0: {
        const uint8_t *p = w + ib * 22;
        return add_high_bits(nibbles_2x16(p + 6, p + 28, two), ld32(p + 2), two ? ld32(p + 24) : 0);
    }
    case LV_TYPE_Q4_1: {
        const uint8_t *p = w + ib * 20;
        return nibbles_2x16(p + 4, p + 24, two);
    }
    default: { /* q5_1 */
        const uint8_t *p = w + ib * 24;
        return add_high_bits(nibbles_2x16(p + 8, p + 32, two), ld32(p + 4), two ? ld32(p + 28) : 0);
    }
    }
}

/* sum of 8 floats, one fixed order (the K types' results: lanes 0-7 or 8-15 of an accumulator) */
QK_INLINE float hsum8_ps(__m256 v) {
    const __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 b = _mm_add_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_add_ss(b, _mm_movehdup_ps(b)));
}

#endif /* QK_AVX512_SHARED */

/* ============================================================================================
 * per variant
 * ========================================================================================== */

#define S_(name) QK_SUFFIX(name)

#if QK_VNNI
#define DOT_U8S8(acc, u, s) _mm512_dpbusd_epi32((acc), (u), (s))
#define DOT_S16(acc, a, b) _mm512_dpwssd_epi32((acc), (a), (b))
#else
#define DOT_U8S8(acc, u, s) dot_u8s8_base((acc), (u), (s))
#define DOT_S16(acc, a, b) _mm512_add_epi32((acc), _mm512_madd_epi16((a), (b)))
#endif

/* gemm over tiles of the tile function and vec_dot as its 1x1 tile */
#define QK_DEFINE_GEMM(NAME, ATTR)                                                                                              \
    ATTR static void S_(gemm_##NAME)(int64_t k, const void *w, size_t ws, const void *x, size_t xs, float *s, size_t ss, int nr, \
                                     int nc) {                                                                                  \
        const uint8_t *W = w, *X = x;                                                                                           \
        if (nr == 4) {                                                                                                          \
            switch (nc) {                                                                                                       \
            case 1: S_(tile_##NAME)(4, 1, k, W, ws, X, xs, s, ss); break;                                                       \
            case 2: S_(tile_##NAME)(4, 2, k, W, ws, X, xs, s, ss); break;                                                       \
            case 3: S_(tile_##NAME)(4, 3, k, W, ws, X, xs, s, ss); break;                                                       \
            default: S_(tile_##NAME)(4, 4, k, W, ws, X, xs, s, ss); break;                                                      \
            }                                                                                                                   \
            return;                                                                                                             \
        }                                                                                                                       \
        for (int r = 0; r < nr; r++) {                                                                                          \
            const uint8_t *Wr = W + (size_t)r * ws;                                                                             \
            float *sr = s + (size_t)r * ss;                                                                                     \
            switch (nc) {                                                                                                       \
            case 1: S_(tile_##NAME)(1, 1, k, Wr, ws, X, xs, sr, ss); break;                                                     \
            case 2: S_(tile_##NAME)(1, 2, k, Wr, ws, X, xs, sr, ss); break;                                                     \
            case 3: S_(tile_##NAME)(1, 3, k, Wr, ws, X, xs, sr, ss); break;                                                     \
            default: S_(tile_##NAME)(1, 4, k, Wr, ws, X, xs, sr, ss); break;                                                    \
            }                                                                                                                   \
        }                                                                                                                       \
    }                                                                                                                           \
    ATTR static float S_(vec_dot_##NAME)(int64_t k, const void *w, const void *x) {                                           \
        float s;                                                                                                                \
        S_(tile_##NAME)(1, 1, k, (const uint8_t *)w, 0, (const uint8_t *)x, 0, &s, 1);                                          \
        return s;                                                                                                               \
    }

/* the same from tiles of at most 2 rows (the integer types: their accumulators, scale products
 * and sub-block sums of 2 x 4 pairs fill the 32 registers) */
#define QK_DEFINE_GEMM2(NAME, ATTR)                                                                                             \
    ATTR static void S_(gemm_##NAME)(int64_t k, const void *w, size_t ws, const void *x, size_t xs, float *s, size_t ss, int nr, \
                                     int nc) {                                                                                  \
        const uint8_t *X = x;                                                                                                   \
        for (int r = 0; r < nr; r += 2) {                                                                                       \
            const uint8_t *W = (const uint8_t *)w + (size_t)r * ws;                                                             \
            float *sr = s + (size_t)r * ss;                                                                                     \
            if (nr - r >= 2) {                                                                                                  \
                switch (nc) {                                                                                                   \
                case 1: S_(tile_##NAME)(2, 1, k, W, ws, X, xs, sr, ss); break;                                                  \
                case 2: S_(tile_##NAME)(2, 2, k, W, ws, X, xs, sr, ss); break;                                                  \
                case 3: S_(tile_##NAME)(2, 3, k, W, ws, X, xs, sr, ss); break;                                                  \
                default: S_(tile_##NAME)(2, 4, k, W, ws, X, xs, sr, ss); break;                                                 \
                }                                                                                                               \
            } else {                                                                                                            \
                switch (nc) {                                                                                                   \
                case 1: S_(tile_##NAME)(1, 1, k, W, ws, X, xs, sr, ss); break;                                                  \
                case 2: S_(tile_##NAME)(1, 2, k, W, ws, X, xs, sr, ss); break;                                                  \
                case 3: S_(tile_##NAME)(1, 3, k, W, ws, X, xs, sr, ss); break;                                                  \
                default: S_(tile_##NAME)(1, 4, k, W, ws, X, xs, sr, ss); break;                                                 \
                }                                                                                                               \
            }                                                                                                                   \
        }                                                                                                                       \
    }                                                                                                                           \
    ATTR static float S_(vec_dot_##NAME)(int64_t k, const void *w, const void *x) {                                           \
        float s;                                                                                                                \
        S_(tile_##NAME)(1, 1, k, (const uint8_t *)w, 0, (const uint8_t *)x, 0, &s, 1);                                          \
        return s;                                                                                                               \
    }

/* ---- float weights: one fma per 16 elements and pair ---- */

/* LOAD(p, i, m): 16 floats of a row at element i (m: lanes present, all for a full step) */
#define QK_FLOAT_TILE(NAME, ATTR, ESIZE, LOAD_FULL, LOAD_MASKED)                                                                 \
    ATTR QK_INLINE void S_(tile_##NAME)(const int R, const int C, int64_t k, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs, \
                                        float *s, size_t ss) {                                                                  \
        __m512 acc[4][4];                                                                                                       \
        for (int r = 0; r < R; r++)                                                                                             \
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();                                                        \
        int64_t i = 0;                                                                                                          \
        for (; i + 16 <= k; i += 16) {                                                                                          \
            __m512 wv[4];                                                                                                       \
            for (int r = 0; r < R; r++) wv[r] = LOAD_FULL(w + (size_t)r * ws + (size_t)i * ESIZE);                              \
            for (int c = 0; c < C; c++) {                                                                                       \
                const __m512 xv = LOAD_FULL(x + (size_t)c * xs + (size_t)i * ESIZE);                                            \
                for (int r = 0; r < R; r++) acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);                                   \
            }                                                                                                                   \
        }                                                                                                                       \
        if (i < k) {                                                                                                            \
            const __mmask16 m = (__mmask16)((1u << (k - i)) - 1);                                                               \
            __m512 wv[4];                                                                                                       \
            for (int r = 0; r < R; r++) wv[r] = LOAD_MASKED(m, w + (size_t)r * ws + (size_t)i * ESIZE);                         \
            for (int c = 0; c < C; c++) {                                                                                       \
                const __m512 xv = LOAD_MASKED(m, x + (size_t)c * xs + (size_t)i * ESIZE);                                       \
                for (int r = 0; r < R; r++) acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);                                   \
            }                                                                                                                   \
        }                                                                                                                       \
        for (int r = 0; r < R; r++)                                                                                             \
            for (int c = 0; c < C; c++) s[(size_t)r * ss + (size_t)c] = _mm512_reduce_add_ps(acc[r][c]);                       \
    }

#ifndef QK_FLOAT_LOADS
#define QK_FLOAT_LOADS
#define LD_F32(p) _mm512_loadu_ps((const void *)(p))
#define LDM_F32(m, p) _mm512_maskz_loadu_ps((m), (const void *)(p))
#define LD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define LDM_F16(m, p) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((m), (const void *)(p)))
#define LD_BF16(p) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define LDM_BF16(m, p) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16((m), (const void *)(p))), 16))
#endif

QK_FLOAT_TILE(f32, , 4, LD_F32, LDM_F32)
QK_DEFINE_GEMM(f32, )
QK_FLOAT_TILE(f16, , 2, LD_F16, LDM_F16)
QK_DEFINE_GEMM(f16, )

#if QK_BF16
/* bf16 with vdpbf16ps: 32 elements (16 pairs) per instruction and pair of rows */
QK_ATTR_B QK_INLINE void S_(tile_bf16)(const int R, const int C, int64_t k, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
                                       float *s, size_t ss) {
    __m512 acc[4][4];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
        __m512i wv[4];
        for (int r = 0; r < R; r++) wv[r] = _mm512_loadu_si512((const void *)(w + (size_t)r * ws + (size_t)i * 2));
        for (int c = 0; c < C; c++) {
            const __m512i xv = _mm512_loadu_si512((const void *)(x + (size_t)c * xs + (size_t)i * 2));
            for (int r = 0; r < R; r++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], (__m512bh)wv[r], (__m512bh)xv);
        }
    }
    if (i < k) {
        const __mmask32 m = (__mmask32)((1ull << (k - i)) - 1);
        __m512i wv[4];
        for (int r = 0; r < R; r++) wv[r] = _mm512_maskz_loadu_epi16(m, (const void *)(w + (size_t)r * ws + (size_t)i * 2));
        for (int c = 0; c < C; c++) {
            const __m512i xv = _mm512_maskz_loadu_epi16(m, (const void *)(x + (size_t)c * xs + (size_t)i * 2));
            for (int r = 0; r < R; r++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], (__m512bh)wv[r], (__m512bh)xv);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) s[(size_t)r * ss + (size_t)c] = _mm512_reduce_add_ps(acc[r][c]);
}
QK_DEFINE_GEMM(bf16, QK_ATTR_B)
#else
QK_FLOAT_TILE(bf16, , 2, LD_BF16, LDM_BF16)
QK_DEFINE_GEMM(bf16, )
#endif

/* ---- the 32-element types: two blocks per step ----
 * Per pair and step: the exact integer sums of both blocks in 16 int32 lanes (8 per block), then
 * acc += float(sums) * (d_w * d_x); for q4_1/q5_1 also acc += m_w * s_x (lanes 0 and 8). */

/* one step: blocks ib, ib+1 (two = 0: ib alone, the row's last block) of every pair; prod holds
 * the 16 scale products d_w * d_x of each pair's current chunk, idx picks this step's two */
QK_ATTR_I QK_INLINE void S_(step_b32)(const lv_type T, const int R, const int C, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
                                      int64_t ib, const int two, const __m512 prod[2][4], __m512i idx, __m512 acc[2][4]) {
    const int xbs = (T == LV_TYPE_Q4_1 || T == LV_TYPE_Q5_1) ? 36 : 34;
    __m512i xq[4], xc[4];
    for (int c = 0; c < C; c++) {
        const uint8_t *p = x + (size_t)c * xs + (size_t)ib * xbs;
        xq[c] = load_2x32(p + xbs - 32, p + 2 * xbs - 32, two);
        if (T == LV_TYPE_Q4_0 || T == LV_TYPE_Q5_0) {
            /* levels are stored with an offset (8, 16): start each block's sum at -offset * sum(x) */
            const __m512i off = _mm512_set1_epi8(T == LV_TYPE_Q4_0 ? 8 : 16);
            xc[c] = _mm512_sub_epi32(_mm512_setzero_si512(), DOT_U8S8(_mm512_setzero_si512(), off, xq[c]));
        } else if ((T == LV_TYPE_Q8_0 || T == LV_TYPE_IQ4_NL) && QK_VNNI) {
            xc[c] = _mm512_xor_si512(xq[c], _mm512_set1_epi8((char)0x80)); /* x + 128 as unsigned bytes */
        }
    }
    for (int r = 0; r < R; r++) {
        const __m512i wq = ld_levels(T, w + (size_t)r * ws, ib, two);
        __m512i wc = _mm512_setzero_si512();
        __mmask64 wneg = 0;
        if (T == LV_TYPE_Q8_0 || T == LV_TYPE_IQ4_NL) {
            if (QK_VNNI) /* sum((x + 128) * w) - 128 * sum(w) */
                wc = _mm512_sub_epi32(_mm512_setzero_si512(), DOT_U8S8(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), wq));
            else { /* |w| * (x with w's sign) */
                wneg = _mm512_movepi8_mask(wq);
                wc = _mm512_abs_epi8(wq);
            }
        }
        for (int c = 0; c < C; c++) {
            __m512i isum;
            if (T == LV_TYPE_Q8_0 || T == LV_TYPE_IQ4_NL) {
                if (QK_VNNI) isum = DOT_U8S8(wc, xc[c], wq);
                else isum = DOT_U8S8(_mm512_setzero_si512(), wc, _mm512_mask_sub_epi8(xq[c], wneg, _mm512_setzero_si512(), xq[c]));
            } else if (T == LV_TYPE_Q4_0 || T == LV_TYPE_Q5_0) {
                isum = DOT_U8S8(xc[c], wq, xq[c]);
            } else {
                isum = DOT_U8S8(_mm512_setzero_si512(), wq, xq[c]);
            }
            acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_permutexvar_ps(idx, prod[r][c]), acc[r][c]);
        }
    }
}

/* Rows in chunks of 16 blocks: the chunk's scales of each row and column are loaded and converted
 * once, their products formed once per pair (kept in registers) and q4_1/q5_1's m_w * s_x added
 * into the accumulator's 16 lanes (one block per lane); then two blocks per step. */
QK_ATTR_I QK_INLINE void S_(tile_b32)(const lv_type T, const int R, const int C, int64_t k, const uint8_t *w, size_t ws, const uint8_t *x,
                                      size_t xs, float *s, size_t ss) {
    const int with_min = T == LV_TYPE_Q4_1 || T == LV_TYPE_Q5_1;
    const int wbs = T == LV_TYPE_Q8_0 ? 34 : T == LV_TYPE_Q4_0 || T == LV_TYPE_IQ4_NL ? 18 : T == LV_TYPE_Q5_0 ? 22 : T == LV_TYPE_Q4_1 ? 20 : 24;
    const int xbs = with_min ? 36 : 34;
    __m512 acc[2][4], prod[2][4];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    const int64_t nb = k / 32;
    for (int64_t b0 = 0; b0 < nb; b0 += 16) {
        const int n = (int)(nb - b0 < 16 ? nb - b0 : 16);
        __m512 wsc[2], xsc[4];
        for (int r = 0; r < R; r++) wsc[r] = fp16_gather16(w + (size_t)r * ws + (size_t)b0 * wbs, wbs, n, 0);
        for (int c = 0; c < C; c++) xsc[c] = fp16_gather16(x + (size_t)c * xs + (size_t)b0 * xbs, xbs, n, 0);
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) prod[r][c] = _mm512_mul_ps(wsc[r], xsc[c]);
        if (with_min) {
            for (int r = 0; r < R; r++) wsc[r] = fp16_gather16(w + (size_t)r * ws + (size_t)b0 * wbs, wbs, n, 2);
            for (int c = 0; c < C; c++) xsc[c] = fp16_gather16(x + (size_t)c * xs + (size_t)b0 * xbs, xbs, n, 2);
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++) acc[r][c] = _mm512_fmadd_ps(wsc[r], xsc[c], acc[r][c]);
        }
        __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        int j = 0;
        for (; j + 2 <= n; j += 2) {
            S_(step_b32)(T, R, C, w, ws, x, xs, b0 + j, 1, prod, idx, acc);
            idx = _mm512_add_epi32(idx, _mm512_set1_epi32(2));
        }
        if (j < n) S_(step_b32)(T, R, C, w, ws, x, xs, b0 + j, 0, prod, idx, acc);
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) s[(size_t)r * ss + (size_t)c] = _mm512_reduce_add_ps(acc[r][c]);
}

#define QK_B32_TYPE(NAME, T)                                                                                                  \
    QK_ATTR_I QK_INLINE void S_(tile_##NAME)(const int R, const int C, int64_t k, const uint8_t *w, size_t ws, const uint8_t *x, \
                                             size_t xs, float *s, size_t ss) {                                                 \
        S_(tile_b32)(T, R, C, k, w, ws, x, xs, s, ss);                                                                        \
    }                                                                                                                         \
    QK_DEFINE_GEMM2(NAME, QK_ATTR_I)

QK_B32_TYPE(q8_0, LV_TYPE_Q8_0)
QK_B32_TYPE(q4_0, LV_TYPE_Q4_0)
QK_B32_TYPE(q5_0, LV_TYPE_Q5_0)
QK_B32_TYPE(q4_1, LV_TYPE_Q4_1)
QK_B32_TYPE(q5_1, LV_TYPE_Q5_1)
QK_B32_TYPE(iq4_nl, LV_TYPE_IQ4_NL)

/* ---- the K types: super-blocks of 256 against q8_K ----
 * Per pair and super-block: four 64-element sub-steps of vpmaddubsw (levels x activations ->
 * int16 pairs) and vpdpwssd with the sub-block scales (-> int32 lanes), all exact; the mins
 * (q4_K, q5_K) or the -32 offset (q6_K) through q8_K's bsums; then one conversion to float and
 * acc += float(isum) * (d_w * d_x) (- float(msum) * (dmin_w * d_x)). */

/* Per super-block and pair: four 64-element sub-steps of vpmaddubsw + vpdpwssd into 16 int32
 * lanes; then the pairs of two activation rows (a "couple": columns cA, cB) share one float
 * register: each pair's 16 lanes folded to 8 (lane j + lane j+8: exact integers), cA in lanes 0-7,
 * cB in lanes 8-15, so the float work (conversion, scales, mins through q8_K's bsums) is done
 * once for two pairs. vec_dot runs the same code with cB = cA and reads lanes 0-7; every lane's
 * operations depend only on its own pair, so the results are identical. */
QK_ATTR_I QK_INLINE void S_(tile_kq)(const lv_type T, const int R, const int C, int64_t k, const uint8_t *w, size_t ws, const uint8_t *x,
                                     size_t xs, float *s, size_t ss) {
    const int wbs = T == LV_TYPE_Q4_K ? 144 : T == LV_TYPE_Q5_K ? 176 : T == LV_TYPE_Q2_K ? 84 : T == LV_TYPE_Q3_K ? 110 : T == LV_TYPE_IQ4_XS ? 136 : 210;
    /* 16-element sub-blocks (scales by k6_scale_idx) and levels with an offset (-32, -4) */
    const int sub16 = T == LV_TYPE_Q6_K || T == LV_TYPE_Q3_K || T == LV_TYPE_Q2_K, offset = T == LV_TYPE_Q6_K || T == LV_TYPE_Q3_K;
    const int NC2 = (C + 1) / 2;
    __m512 acc[2][2];
    for (int r = 0; r < R; r++)
        for (int h = 0; h < NC2; h++) acc[r][h] = _mm512_setzero_ps();
    const __m512i fold_lo = _mm512_set_epi32(23, 22, 21, 20, 19, 18, 17, 16, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i fold_hi = _mm512_set_epi32(31, 30, 29, 28, 27, 26, 25, 24, 15, 14, 13, 12, 11, 10, 9, 8);
    for (int64_t i = 0; i < k / 256; i++) {
        __m512i sc[2], isum[2][4];
        __m256i mn[2];
        __m512 dw[2], dminw[2];
        for (int r = 0; r < R; r++) {
            const uint8_t *b = w + (size_t)r * ws + (size_t)i * wbs;
            if (T == LV_TYPE_Q6_K) {
                dw[r] = _mm512_set1_ps(h2f(ld16(b + 208)));
                sc[r] = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + 192))));
            } else if (T == LV_TYPE_Q3_K) { /* 16 6-bit scales minus 32 */
                int8_t s8[16];
                for (int j = 0; j < 16; j++) s8[j] = (int8_t)lv_q3_K_scale(b + 96, j);
                dw[r] = _mm512_set1_ps(h2f(ld16(b + 108)));
                sc[r] = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)s8)));
            } else if (T == LV_TYPE_Q2_K) { /* 16 scales (low nibbles) and minima (high nibbles) */
                const __m128i raw = _mm_loadu_si128((const __m128i *)b);
                dw[r] = _mm512_set1_ps(h2f(ld16(b + 80)));
                dminw[r] = _mm512_set1_ps(h2f(ld16(b + 82)));
                sc[r] = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(raw, _mm_set1_epi8(0x0f))));
                mn[r] = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0f)));
            } else if (T == LV_TYPE_IQ4_XS) { /* 8 6-bit scales minus 32 */
                int16_t s16[16] = {0};
                const uint16_t sh = (uint16_t)ld16(b + 2);
                for (int j = 0; j < 8; j++) s16[j] = (int16_t)((((b[4 + j / 2] >> (4 * (j & 1))) & 0xf) | (((sh >> (2 * j)) & 3) << 4)) - 32);
                dw[r] = _mm512_set1_ps(h2f(ld16(b)));
                sc[r] = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)s16));
            } else {
                dw[r] = _mm512_set1_ps(h2f(ld16(b)));
                dminw[r] = _mm512_set1_ps(h2f(ld16(b + 2)));
                k4_scales(b + 4, &sc[r], &mn[r]);
            }
            for (int c = 0; c < C; c++) isum[r][c] = _mm512_setzero_si512();
        }
        for (int st = 0; st < 4; st++) {
            __m512i xq[4];
            for (int c = 0; c < C; c++) xq[c] = _mm512_loadu_si512((const void *)(x + (size_t)c * xs + (size_t)i * 292 + 4 + 64 * st));
            for (int r = 0; r < R; r++) {
                const uint8_t *b = w + (size_t)r * ws + (size_t)i * wbs;
                __m512i wq, scv;
                scv = _mm512_permutexvar_epi16(sub16 ? k6_scale_idx(st) : k4_scale_idx(st), sc[r]);
                if (T == LV_TYPE_IQ4_XS) { /* signed levels: |w| times x with w's sign */
                    const __m512i l = iq4_lookup(nibbles_2x16(b + 8 + 32 * st, b + 24 + 32 * st, 1)), la = _mm512_abs_epi8(l);
                    const __mmask64 neg = _mm512_movepi8_mask(l);
                    for (int c = 0; c < C; c++)
                        isum[r][c] = DOT_S16(isum[r][c], _mm512_maddubs_epi16(la, _mm512_mask_sub_epi8(xq[c], neg, _mm512_setzero_si512(), xq[c])), scv);
                    continue;
                }
                if (T == LV_TYPE_Q4_K) wq = k4_levels(b + 16, st);
                else if (T == LV_TYPE_Q5_K) wq = k5_levels(b + 48, b + 16, st);
                else if (T == LV_TYPE_Q2_K) wq = k2_levels(b + 16, st);
                else if (T == LV_TYPE_Q3_K) wq = k3_levels(b + 32, b, st);
                else wq = k6_levels(b, b + 128, st);
                for (int c = 0; c < C; c++) isum[r][c] = DOT_S16(isum[r][c], _mm512_maddubs_epi16(wq, xq[c]), scv);
            }
        }
        /* acc += d_x * (d_w * isum - dmin_w * msum), or for q6_K acc += d_x * d_w * (isum - 32 * sum(sc * bsums)) */
        for (int h = 0; h < NC2; h++) {
            const int ca = 2 * h, cb = 2 * h + 1 < C ? 2 * h + 1 : 2 * h;
            const uint8_t *xa = x + (size_t)ca * xs + (size_t)i * 292, *xb = x + (size_t)cb * xs + (size_t)i * 292;
            const __m512i bsums = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(xa + 260))),
                                                     _mm256_loadu_si256((const __m256i *)(xb + 260)), 1);
            const __m512 dx = _mm512_insertf32x8(_mm512_set1_ps(ldf32(xa)), _mm256_set1_ps(ldf32(xb)), 1);
            for (int r = 0; r < R; r++) {
                const __m512i ia = isum[r][ca], ib = isum[r][cb];
                __m512i is = _mm512_add_epi32(_mm512_permutex2var_epi32(ia, fold_lo, ib), _mm512_permutex2var_epi32(ia, fold_hi, ib));
                __m512 t;
                if (offset) { /* the levels' -32 (q6_K) or -4 (q3_K): offset * sum(scale * bsum) */
                    const __m512i corr = _mm512_madd_epi16(bsums, _mm512_broadcast_i64x4(_mm512_castsi512_si256(sc[r])));
                    is = _mm512_sub_epi32(is, _mm512_slli_epi32(corr, T == LV_TYPE_Q6_K ? 5 : 2));
                    t = _mm512_mul_ps(_mm512_cvtepi32_ps(is), dw[r]);
                } else if (T == LV_TYPE_IQ4_XS) {
                    t = _mm512_mul_ps(_mm512_cvtepi32_ps(is), dw[r]);
                } else {
                    const __m512i ms = _mm512_madd_epi16(bsums, _mm512_broadcast_i64x4(mn[r]));
                    t = _mm512_mul_ps(_mm512_cvtepi32_ps(is), dw[r]);
                    t = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms), dminw[r], t);
                }
                acc[r][h] = _mm512_fmadd_ps(t, dx, acc[r][h]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            const __m512 a = acc[r][c / 2];
            s[(size_t)r * ss + (size_t)c] = hsum8_ps((c & 1) ? _mm512_extractf32x8_ps(a, 1) : _mm512_castps512_ps256(a));
        }
}

#define QK_K_TYPE(NAME, T)                                                                                                    \
    QK_ATTR_I QK_INLINE void S_(tile_##NAME)(const int R, const int C, int64_t k, const uint8_t *w, size_t ws, const uint8_t *x, \
                                             size_t xs, float *s, size_t ss) {                                                 \
        S_(tile_kq)(T, R, C, k, w, ws, x, xs, s, ss);                                                                         \
    }                                                                                                                         \
    QK_DEFINE_GEMM2(NAME, QK_ATTR_I)

QK_K_TYPE(q4_K, LV_TYPE_Q4_K)
QK_K_TYPE(q5_K, LV_TYPE_Q5_K)
QK_K_TYPE(q6_K, LV_TYPE_Q6_K)
QK_K_TYPE(q2_K, LV_TYPE_Q2_K)
QK_K_TYPE(q3_K, LV_TYPE_Q3_K)
QK_K_TYPE(iq4_xs, LV_TYPE_IQ4_XS)

/* ---- the table ---- */

static const lv_qtype_ops *QK_SUFFIX(qk_ops)(lv_type t) {
    static const lv_qtype_ops ops[] = {
        {LV_TYPE_F32, LV_TYPE_F32, ff_f32, S_(vec_dot_f32), S_(gemm_f32)},
        {LV_TYPE_F16, LV_TYPE_F16, ff_f16, S_(vec_dot_f16), S_(gemm_f16)},
        {LV_TYPE_BF16, LV_TYPE_BF16, ff_bf16, S_(vec_dot_bf16), S_(gemm_bf16)},
        {LV_TYPE_Q8_0, LV_TYPE_Q8_0, ff_q8_0, S_(vec_dot_q8_0), S_(gemm_q8_0)},
        {LV_TYPE_Q4_0, LV_TYPE_Q8_0, ff_q8_0, S_(vec_dot_q4_0), S_(gemm_q4_0)},
        {LV_TYPE_Q5_0, LV_TYPE_Q8_0, ff_q8_0, S_(vec_dot_q5_0), S_(gemm_q5_0)},
        {LV_TYPE_Q4_1, LV_TYPE_Q8_1, ff_q8_1, S_(vec_dot_q4_1), S_(gemm_q4_1)},
        {LV_TYPE_Q5_1, LV_TYPE_Q8_1, ff_q8_1, S_(vec_dot_q5_1), S_(gemm_q5_1)},
        {LV_TYPE_Q4_K, LV_TYPE_Q8_K, ff_q8_K, S_(vec_dot_q4_K), S_(gemm_q4_K)},
        {LV_TYPE_Q5_K, LV_TYPE_Q8_K, ff_q8_K, S_(vec_dot_q5_K), S_(gemm_q5_K)},
        {LV_TYPE_Q6_K, LV_TYPE_Q8_K, ff_q8_K, S_(vec_dot_q6_K), S_(gemm_q6_K)},
        {LV_TYPE_Q2_K, LV_TYPE_Q8_K, ff_q8_K, S_(vec_dot_q2_K), S_(gemm_q2_K)},
        {LV_TYPE_Q3_K, LV_TYPE_Q8_K, ff_q8_K, S_(vec_dot_q3_K), S_(gemm_q3_K)},
        {LV_TYPE_IQ4_NL, LV_TYPE_Q8_0, ff_q8_0, S_(vec_dot_iq4_nl), S_(gemm_iq4_nl)},
        {LV_TYPE_IQ4_XS, LV_TYPE_Q8_K, ff_q8_K, S_(vec_dot_iq4_xs), S_(gemm_iq4_xs)},
    };
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (ops[i].type == t) return &ops[i];
    return NULL;
}

#undef S_
#undef DOT_U8S8
#undef DOT_S16
#undef QK_DEFINE_GEMM
#undef QK_DEFINE_GEMM2
#undef QK_FLOAT_TILE
#undef QK_B32_TYPE
#undef QK_K_TYPE
