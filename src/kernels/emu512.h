/*
 * emu512.h: force-included (-include) into the *_avx512.c files of the emu512 build only
 * (make BUILD=emu512, docs/testing.md). It lets a CPU without AVX-512 run the AVX-512 kernels, so
 * that their tests against the scalar references run on every machine, CI included:
 *  - the AVX-512 intrinsics and types become SIMDe's portable implementations (Debian's
 *    libsimde-dev, header-only: the native aliases map _mm512_* and __m512* onto simde_*), which
 *    run on the AVX2 instructions the files are compiled for;
 *  - the feature macros the files test are defined, and LV_EMU_AVX512 (set for the whole build)
 *    makes the run-time checks (lv_simd_detect, VNNI, BF16) report the emulated features.
 * Timings of this build mean nothing; its results are those of the AVX-512 code paths, except
 * where SIMDe's approximations (rcp14 / rsqrt14) differ from the hardware's in the last bits.
 * Never part of a release build.
 */
#ifndef LV_EMU512_H
#define LV_EMU512_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

/* SIMDe 0.7.4's aliases of these two take the masked variant's arguments */
#undef _mm512_madd_epi16
#define _mm512_madd_epi16(a, b) simde_mm512_madd_epi16(a, b)
#undef _mm512_mask_cmple_epi32_mask
#define _mm512_mask_cmple_epi32_mask(k, a, b) simde_mm512_mask_cmple_epi32_mask(k, a, b)

/* What SIMDe 0.7.4 lacks, element by element, with the instructions' semantics (the conversions
 * through the AVX2 / F16C instructions on each half, so rounding is the hardware's). */
typedef simde__m512_private lv_emu_ps;
typedef simde__m512i_private lv_emu_si;
#define LV_EMU static inline __attribute__((unused))

LV_EMU simde__mmask64 lv_emu_cvtu64_mask64(uint64_t x) { return (simde__mmask64)x; }
LV_EMU simde__m512 lv_emu_cvtepi32_ps(simde__m512i a) {
    lv_emu_si x = simde__m512i_to_private(a);
    lv_emu_ps r;
    r.m256[0] = _mm256_cvtepi32_ps(x.m256i[0]);
    r.m256[1] = _mm256_cvtepi32_ps(x.m256i[1]);
    return simde__m512_from_private(r);
}
LV_EMU simde__m512i lv_emu_cvtps_epi32(simde__m512 a) {
    lv_emu_ps x = simde__m512_to_private(a);
    lv_emu_si r;
    r.m256i[0] = _mm256_cvtps_epi32(x.m256[0]);
    r.m256i[1] = _mm256_cvtps_epi32(x.m256[1]);
    return simde__m512i_from_private(r);
}
LV_EMU simde__m512 lv_emu_cvtph_ps(simde__m256i a) {
    lv_emu_ps r;
    r.m256[0] = _mm256_cvtph_ps(_mm256_castsi256_si128(a));
    r.m256[1] = _mm256_cvtph_ps(_mm256_extracti128_si256(a, 1));
    return simde__m512_from_private(r);
}
#define lv_emu_cvtps_ph(a, imm)                                                                                                 \
    __extension__({                                                                                                            \
        lv_emu_ps x_ = simde__m512_to_private(a);                                                                               \
        _mm256_set_m128i(_mm256_cvtps_ph(x_.m256[1], imm), _mm256_cvtps_ph(x_.m256[0], imm));                                   \
    })
#define lv_emu_extractf32x8_ps(a, imm) (simde__m512_to_private(a).m256[(imm) & 1])
LV_EMU simde__m256i lv_emu_cvtepi32_epi16(simde__m512i a) {
    lv_emu_si x = simde__m512i_to_private(a);
    int16_t r[16];
    for (int i = 0; i < 16; i++) r[i] = (int16_t)x.i32[i];
    return _mm256_loadu_si256((const __m256i *)r);
}
/* widening conversions: the AVX2 instruction on each half of the input (LO, HI) */
#define LV_EMU_WIDEN(name, IN, LO, HI, op)                                                                                     \
    LV_EMU simde__m512i name(IN a) {                                                                                           \
        lv_emu_si r;                                                                                                           \
        r.m256i[0] = op(LO);                                                                                                   \
        r.m256i[1] = op(HI);                                                                                                   \
        return simde__m512i_from_private(r);                                                                                   \
    }
LV_EMU_WIDEN(lv_emu_cvtepi8_epi32, simde__m128i, a, _mm_srli_si128(a, 8), _mm256_cvtepi8_epi32)
LV_EMU_WIDEN(lv_emu_cvtepu8_epi32, simde__m128i, a, _mm_srli_si128(a, 8), _mm256_cvtepu8_epi32)
LV_EMU_WIDEN(lv_emu_cvtepu16_epi32, simde__m256i, _mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1), _mm256_cvtepu16_epi32)
LV_EMU_WIDEN(lv_emu_cvtepu8_epi16, simde__m256i, _mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1), _mm256_cvtepu8_epi16)
LV_EMU simde__mmask16 lv_emu_cmpgt_epu32_mask(simde__m512i a, simde__m512i b) {
    lv_emu_si x = simde__m512i_to_private(a), y = simde__m512i_to_private(b);
    simde__mmask16 m = 0;
    for (int i = 0; i < 16; i++) m |= (simde__mmask16)((x.u32[i] > y.u32[i]) << i);
    return m;
}
LV_EMU simde__mmask16 lv_emu_cmplt_epi32_mask(simde__m512i a, simde__m512i b) {
    lv_emu_si x = simde__m512i_to_private(a), y = simde__m512i_to_private(b);
    simde__mmask16 m = 0;
    for (int i = 0; i < 16; i++) m |= (simde__mmask16)((x.i32[i] < y.i32[i]) << i);
    return m;
}
/* masked loads and stores touch only the selected elements, as the instructions do */
#define LV_EMU_MASKZ_LOAD(name, T, ET, n, field, tofrom)                                                                        \
    LV_EMU T name(uint64_t k, const void *p) {                                                                                 \
        lv_emu_si r;                                                                                                           \
        memset(&r, 0, sizeof r);                                                                                               \
        for (int i = 0; i < n; i++)                                                                                            \
            if ((k >> i) & 1) memcpy(&r.field[i], (const char *)p + (size_t)i * sizeof(ET), sizeof(ET));                       \
        return tofrom(r);                                                                                                      \
    }
LV_EMU_MASKZ_LOAD(lv_emu_maskz_loadu_epi8, simde__m512i, int8_t, 64, i8, simde__m512i_from_private)
LV_EMU_MASKZ_LOAD(lv_emu_maskz_loadu_epi16, simde__m512i, int16_t, 32, i16, simde__m512i_from_private)
LV_EMU_MASKZ_LOAD(lv_emu_maskz_loadu_epi32, simde__m512i, int32_t, 16, i32, simde__m512i_from_private)
LV_EMU simde__m512 lv_emu_maskz_loadu_ps(uint64_t k, const void *p) { return simde_mm512_castsi512_ps(lv_emu_maskz_loadu_epi32(k, p)); }
LV_EMU simde__m256i lv_emu_maskz_loadu_epi16_256(uint64_t k, const void *p) {
    int16_t r[16] = {0};
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) memcpy(&r[i], (const char *)p + 2 * i, 2);
    return _mm256_loadu_si256((const __m256i *)r);
}
LV_EMU void lv_emu_mask_storeu_epi16_256(void *p, uint64_t k, simde__m256i a) {
    int16_t v[16];
    _mm256_storeu_si256((__m256i *)v, a);
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) memcpy((char *)p + 2 * i, &v[i], 2);
}
LV_EMU void lv_emu_mask_storeu_ps(void *p, uint64_t k, simde__m512 a) {
    lv_emu_ps x = simde__m512_to_private(a);
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) memcpy((char *)p + 4 * i, &x.f32[i], 4);
}
/* the reductions in the order of gcc's avx512fintrin.h (halves, then quarters, then pairs) */
LV_EMU float lv_emu_reduce_add_ps(simde__m512 a) {
    lv_emu_ps x = simde__m512_to_private(a);
    float t3[8], t6[4];
    for (int i = 0; i < 8; i++) t3[i] = x.f32[8 + i] + x.f32[i];
    for (int i = 0; i < 4; i++) t6[i] = t3[4 + i] + t3[i];
    const float t8_0 = t6[0] + t6[2], t8_1 = t6[1] + t6[3];
    return t8_0 + t8_1;
}
LV_EMU float lv_emu_reduce_max_ps(simde__m512 a) {
    lv_emu_ps x = simde__m512_to_private(a);
    float t3[8], t6[4];
    for (int i = 0; i < 8; i++) t3[i] = x.f32[8 + i] > x.f32[i] ? x.f32[8 + i] : x.f32[i];
    for (int i = 0; i < 4; i++) t6[i] = t3[4 + i] > t3[i] ? t3[4 + i] : t3[i];
    const float a0 = t6[0] > t6[2] ? t6[0] : t6[2], a1 = t6[1] > t6[3] ? t6[1] : t6[3];
    return a0 > a1 ? a0 : a1;
}
LV_EMU int lv_emu_reduce_add_epi32(simde__m512i a) {
    lv_emu_si x = simde__m512i_to_private(a);
    uint32_t s = 0;
    for (int i = 0; i < 16; i++) s += x.u32[i];
    return (int)s;
}
#define _cvtu64_mask64 lv_emu_cvtu64_mask64
#define _mm512_cvtepi32_ps lv_emu_cvtepi32_ps
#define _mm512_cvtps_epi32 lv_emu_cvtps_epi32
#define _mm512_cvtph_ps lv_emu_cvtph_ps
#define _mm512_cvtps_ph lv_emu_cvtps_ph
#define _mm512_extractf32x8_ps lv_emu_extractf32x8_ps
#define _mm512_cvtepi32_epi16 lv_emu_cvtepi32_epi16
#define _mm512_cvtepi8_epi32 lv_emu_cvtepi8_epi32
#define _mm512_cvtepu8_epi32 lv_emu_cvtepu8_epi32
#define _mm512_cvtepu16_epi32 lv_emu_cvtepu16_epi32
#define _mm512_cvtepu8_epi16 lv_emu_cvtepu8_epi16
#define _mm512_cmpgt_epu32_mask lv_emu_cmpgt_epu32_mask
#define _mm512_cmplt_epi32_mask lv_emu_cmplt_epi32_mask
#define _mm512_maskz_loadu_epi8 lv_emu_maskz_loadu_epi8
#define _mm512_maskz_loadu_epi16 lv_emu_maskz_loadu_epi16
#define _mm512_maskz_loadu_epi32 lv_emu_maskz_loadu_epi32
#define _mm512_maskz_loadu_ps lv_emu_maskz_loadu_ps
#define _mm256_maskz_loadu_epi16 lv_emu_maskz_loadu_epi16_256
#define _mm256_mask_storeu_epi16 lv_emu_mask_storeu_epi16_256
#define _mm512_mask_storeu_ps lv_emu_mask_storeu_ps
#define _mm512_reduce_add_ps lv_emu_reduce_add_ps
#define _mm512_reduce_max_ps lv_emu_reduce_max_ps
#define _mm512_reduce_add_epi32 lv_emu_reduce_add_epi32

/* after SIMDe, which must not take them for the native instructions */
#ifndef __AVX512F__
#define __AVX512F__ 1
#define __AVX512BW__ 1
#define __AVX512DQ__ 1
#define __AVX512VL__ 1
#endif

#endif
