/*
 * qk_scalar.c: the scalar (reference) level of the per-type kernels: quant.c's reference
 * routines behind the lv_qtype_ops interface. These are the oracle for every SIMD level.
 */
#include "kernels/qkernels.h"

#include "core/core.h"

static void gemm_from_vec_dot(float (*dot)(int64_t, const void *, const void *), int64_t k, const void *w, size_t w_stride,
                              const void *x, size_t x_stride, float *s, size_t s_stride, int nr, int nc) {
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++)
            s[(size_t)r * s_stride + (size_t)c] = dot(k, (const uint8_t *)w + (size_t)r * w_stride, (const uint8_t *)x + (size_t)c * x_stride);
}

#define SCALAR_TYPE(NAME, T, VT)                                                                                            \
    static void from_float_##NAME(const float *x, void *y, int64_t k) { lv_from_float_row(lv_vec_dot_type(T), x, y, k); } \
    static float vec_dot_##NAME(int64_t k, const void *w, const void *x) { return lv_vec_dot_ref(T, k, w, x); }          \
    static void gemm_##NAME(int64_t k, const void *w, size_t ws, const void *x, size_t xs, float *s, size_t ss, int nr, int nc) { \
        gemm_from_vec_dot(vec_dot_##NAME, k, w, ws, x, xs, s, ss, nr, nc);                                               \
    }                                                                                                                     \
    static const lv_qtype_ops ops_##NAME = {T, VT, from_float_##NAME, vec_dot_##NAME, gemm_##NAME};

SCALAR_TYPE(f32, LV_TYPE_F32, LV_TYPE_F32)
SCALAR_TYPE(f16, LV_TYPE_F16, LV_TYPE_F16)
SCALAR_TYPE(bf16, LV_TYPE_BF16, LV_TYPE_BF16)
SCALAR_TYPE(q8_0, LV_TYPE_Q8_0, LV_TYPE_Q8_0)
SCALAR_TYPE(q4_0, LV_TYPE_Q4_0, LV_TYPE_Q8_0)
SCALAR_TYPE(q4_1, LV_TYPE_Q4_1, LV_TYPE_Q8_1)
SCALAR_TYPE(q5_0, LV_TYPE_Q5_0, LV_TYPE_Q8_0)
SCALAR_TYPE(q5_1, LV_TYPE_Q5_1, LV_TYPE_Q8_1)
SCALAR_TYPE(q4_K, LV_TYPE_Q4_K, LV_TYPE_Q8_K)
SCALAR_TYPE(q5_K, LV_TYPE_Q5_K, LV_TYPE_Q8_K)
SCALAR_TYPE(q6_K, LV_TYPE_Q6_K, LV_TYPE_Q8_K)
SCALAR_TYPE(q2_K, LV_TYPE_Q2_K, LV_TYPE_Q8_K)
SCALAR_TYPE(q3_K, LV_TYPE_Q3_K, LV_TYPE_Q8_K)
SCALAR_TYPE(iq4_nl, LV_TYPE_IQ4_NL, LV_TYPE_Q8_0)
SCALAR_TYPE(iq4_xs, LV_TYPE_IQ4_XS, LV_TYPE_Q8_K)

const lv_qtype_ops *lv_qk_scalar_ops(lv_type t) {
    switch (t) {
    case LV_TYPE_F32: return &ops_f32;
    case LV_TYPE_F16: return &ops_f16;
    case LV_TYPE_BF16: return &ops_bf16;
    case LV_TYPE_Q8_0: return &ops_q8_0;
    case LV_TYPE_Q4_0: return &ops_q4_0;
    case LV_TYPE_Q4_1: return &ops_q4_1;
    case LV_TYPE_Q5_0: return &ops_q5_0;
    case LV_TYPE_Q5_1: return &ops_q5_1;
    case LV_TYPE_Q4_K: return &ops_q4_K;
    case LV_TYPE_Q5_K: return &ops_q5_K;
    case LV_TYPE_Q6_K: return &ops_q6_K;
    case LV_TYPE_Q2_K: return &ops_q2_K;
    case LV_TYPE_Q3_K: return &ops_q3_K;
    case LV_TYPE_IQ4_NL: return &ops_iq4_nl;
    case LV_TYPE_IQ4_XS: return &ops_iq4_xs;
    default: return NULL;
    }
}
