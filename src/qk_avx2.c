/*
 * qk_avx2.c: the AVX2 + FMA + F16C level of the per-type kernels (compiled with -mavx2 -mfma
 * -mf16c). Types without an AVX2 kernel here fall back to the scalar level.
 */
#include "qkernels.h"

const lv_qtype_ops *lv_qk_avx2_ops(lv_type t) {
    (void)t;
    return NULL;
}
