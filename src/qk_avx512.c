/*
 * qk_avx512.c: the AVX-512 level of the per-type kernels (compiled with -mavx512f/bw/dq/vl,
 * VNNI and BF16 instructions used only when the CPU reports them). Types without an AVX-512
 * kernel here fall back to the AVX2 level.
 */
#include "qkernels.h"

const lv_qtype_ops *lv_qk_avx512_ops(lv_type t) {
    (void)t;
    return NULL;
}
