/*
 * qkernels.c: choosing the SIMD level at run time (CPU features, capped by LV_SIMD or
 * lv_simd_set_max) and the per-type operation tables of each level.
 */
#include "kernels/qkernels.h"

#include "core/core.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic int g_simd_max = -1; /* -1: not set; read LV_SIMD once */

const char *lv_simd_name(lv_simd level) {
    switch (level) {
    case LV_SIMD_SCALAR: return "scalar";
    case LV_SIMD_AVX2: return "avx2";
    case LV_SIMD_AVX512: return "avx512";
    default: return "?";
    }
}

int lv_simd_parse(const char *s) {
    for (int l = 0; l < LV_SIMD_COUNT; l++)
        if (s && strcmp(s, lv_simd_name((lv_simd)l)) == 0) return l;
    return -1;
}

lv_simd lv_simd_detect(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
#ifdef LV_EMU_AVX512 /* the emu512 test build (kernels/emu512.h): AVX-512 emulated on AVX2 */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return LV_SIMD_AVX512;
#endif
    /* F16C is not asked separately: every CPU with AVX2 has it (and clang's builtin cannot name it) */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
        return LV_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return LV_SIMD_AVX2;
#endif
    return LV_SIMD_SCALAR;
}

void lv_simd_set_max(lv_simd level) { atomic_store(&g_simd_max, (int)level); }

lv_simd lv_simd_active(void) {
    int cap = atomic_load(&g_simd_max);
    if (cap < 0) {
        const char *env = getenv("LV_SIMD");
        int v = lv_simd_parse(env);
        if (env && v < 0) LV_LOG_W("LV_SIMD=%s is not scalar, avx2 or avx512; ignored", env);
        cap = v < 0 ? LV_SIMD_COUNT - 1 : v;
        int expected = -1;
        atomic_compare_exchange_strong(&g_simd_max, &expected, cap);
        cap = atomic_load(&g_simd_max);
    }
    lv_simd det = lv_simd_detect();
    return (lv_simd)(cap < (int)det ? cap : (int)det);
}

const lv_qtype_ops *lv_qtype_ops_get(lv_type t, lv_simd level) {
    lv_simd det = lv_simd_detect();
    if ((int)level > (int)det) level = det;
    const lv_qtype_ops *o = NULL;
    if (level >= LV_SIMD_AVX512 && (o = lv_qk_avx512_ops(t))) return o;
    if (level >= LV_SIMD_AVX2 && (o = lv_qk_avx2_ops(t))) return o;
    return lv_qk_scalar_ops(t);
}
