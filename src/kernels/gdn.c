/*
 * gdn.c: the gated delta-net step (kernels.h), scalar reference and dispatch.
 */
#include "kernels/kernels.h"

#include "core/core.h"
#include "kernels/qkernels.h"

void lv_gdn_step_ref(const float *src, float *dst, const float *q, const float *k, const float *v, float decay, float beta, float scale,
                     float *out, int S) {
    for (int j = 0; j < S; j++) {
        const float *a = src ? src + (int64_t)j * S : NULL;
        float *m = dst + (int64_t)j * S;
        float dk = 0.0f;
        for (int i = 0; i < S; i++) {
            const float x = a ? a[i] * decay : 0.0f;
            m[i] = x;
            dk += x * k[i];
        }
        const float d = (v[j] - dk) * beta;
        float dq = 0.0f;
        for (int i = 0; i < S; i++) {
            m[i] += d * k[i];
            dq += m[i] * q[i];
        }
        out[j] = dq * scale;
    }
}

void lv_gdn_step(const float *src, float *dst, const float *q, const float *k, const float *v, float decay, float beta, float scale,
                 float *out, int S) {
    if (lv_simd_active() >= LV_SIMD_AVX2 && S % 8 == 0) lv_gdn_step_avx2(src, dst, q, k, v, decay, beta, scale, out, S);
    else lv_gdn_step_ref(src, dst, q, k, v, decay, beta, scale, out, S);
}
