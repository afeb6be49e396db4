/*
 * qk_avx512.c: the AVX-512 level of the per-type kernels (compiled with -mavx512f/bw/dq/vl).
 * VNNI (vpdpbusd, vpdpwssd) and BF16 (vdpbf16ps) instructions are not implied by that level:
 * qk_avx512_impl.h is compiled twice, the second time with __attribute__((target("avx512vnni")))
 * on the integer kernels and target("avx512bf16") on the bf16 ones, and a type's extended
 * kernels are chosen at run time only when the CPU reports the extension they use.
 *
 * Design (measurements in bench/NOTES.md):
 *  - one code path per pair (weight row, activation row): a gemm tile runs, for every pair, the
 *    same instructions in the same order as vec_dot does for that pair alone, so a row's result
 *    does not depend on how the batch was split (prefill == token-by-token decode, bit for bit);
 *  - integer block sums are exact (vpdpbusd / vpmaddubsw + vpmaddwd); each block's sum is
 *    converted to float and scaled by d_w * d_x into a 16-lane float accumulator; the lanes are
 *    summed once at the end (_mm512_reduce_add_ps);
 *  - the 32-element types step over two blocks (one zmm); the K types over a 256-element
 *    super-block, with the sub-block scales applied in integers (vpmaddubsw then vpdpwssd).
 *
 * Legend: k = elements per row, w = weight rows (ws bytes apart), x = activation rows (xs bytes
 * apart), s = results (ss floats apart), R x C = tile of weight rows x activation rows.
 */
#include "kernels/qkernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && defined(__FMA__) && \
    defined(__F16C__)

#include <immintrin.h>
#include <string.h>

/* the kernels without VNNI and BF16 */
#define QK_VNNI 0
#define QK_BF16 0
#define QK_ATTR_I
#define QK_ATTR_B
#define QK_SUFFIX(name) name##_base
#include "kernels/qk_avx512_impl.h"
#undef QK_VNNI
#undef QK_BF16
#undef QK_ATTR_I
#undef QK_ATTR_B
#undef QK_SUFFIX

/* the same with VNNI (the integer types) and BF16 (bf16 weights) */
#define QK_VNNI 1
#define QK_BF16 1
#ifdef LV_EMU_AVX512 /* emu512.h: SIMDe's code must not be compiled for the real extensions */
#define QK_ATTR_I
#define QK_ATTR_B
#define CPU_HAS(f) 1
#else
#define QK_ATTR_I __attribute__((target("avx512vnni")))
#define QK_ATTR_B __attribute__((target("avx512bf16")))
#define CPU_HAS(f) __builtin_cpu_supports(f)
#endif
#define QK_SUFFIX(name) name##_ext
#include "kernels/qk_avx512_impl.h"

/* The extension a type's _ext kernels need (0: none, they equal the base ones). */
static int ext_supported(lv_type t) {
    __builtin_cpu_init();
    switch (t) {
    case LV_TYPE_F32:
    case LV_TYPE_F16: return 0;
    case LV_TYPE_BF16: return CPU_HAS("avx512bf16");
    default: return CPU_HAS("avx512vnni");
    }
}

const lv_qtype_ops *lv_qk_avx512_ops_variant(lv_type t, int ext) {
    if (!ext) return qk_ops_base(t);
    return ext_supported(t) ? qk_ops_ext(t) : NULL;
}

const lv_qtype_ops *lv_qk_avx512_ops(lv_type t) { return ext_supported(t) ? qk_ops_ext(t) : qk_ops_base(t); }

#else /* the compiler does not target AVX-512: this level falls back to AVX2 */

const lv_qtype_ops *lv_qk_avx512_ops_variant(lv_type t, int ext) {
    (void)t;
    (void)ext;
    return NULL;
}
const lv_qtype_ops *lv_qk_avx512_ops(lv_type t) {
    (void)t;
    return NULL;
}

#endif
