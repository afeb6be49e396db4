/*
 * ops.c: the trainer's per-row operations, forward and backward: RMSNorm, RoPE, SwiGLU and
 * cross-entropy; LayerNorm and tanh GELU for the vision tower (tvision.c). These are memory-bound
 * and simple, so the reference is the implementation; callers parallelize over rows. The forward
 * arithmetic is the engine's (kernels.c, vision/encode.c), so the trainer's logits agree with
 * lv_decode's.
 */
#include "train/train.h"

#include <math.h>

float lv_tr_rmsnorm_fwd(const float *x, const float *w, float *y, int64_t n, float eps) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float r = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] * r) * w[i];
    return r;
}

/* y_i = x_i r w_i, r = (mean(x^2) + eps)^(-1/2), dr/dx_j = -r^3 x_j / n:
 * dx_j = r w_j dy_j - (r^3 / n) x_j sum_i dy_i w_i x_i;  dw_i = dy_i x_i r */
void lv_tr_rmsnorm_bwd(const float *x, const float *w, float r, const float *dy, float *dx, bool accumulate_dx, float *dw, int64_t n) {
    double dot = 0.0;
    for (int64_t i = 0; i < n; i++) dot += (double)dy[i] * (double)w[i] * (double)x[i];
    const float c = (float)(dot * (double)r * (double)r * (double)r / (double)n);
    for (int64_t i = 0; i < n; i++) {
        const float g = r * w[i] * dy[i] - c * x[i];
        dx[i] = accumulate_dx ? dx[i] + g : g;
    }
    if (dw)
        for (int64_t i = 0; i < n; i++) dw[i] += dy[i] * x[i] * r;
}

void lv_tr_rope(lv_rope_type type, int n_rot, const float *cache, float *x, int n_head, int D, bool inverse) {
    const float sgn = inverse ? -1.0f : 1.0f;
    for (int h = 0; h < n_head; h++) {
        float *xh = x + (int64_t)h * D;
        for (int i0 = 0; i0 < n_rot; i0 += 2) {
            const float c = cache[i0], s = sgn * cache[i0 + 1];
            const int a = type == LV_ROPE_NORM ? i0 : i0 / 2;
            const int b = type == LV_ROPE_NORM ? i0 + 1 : i0 / 2 + n_rot / 2;
            const float x0 = xh[a], x1 = xh[b];
            xh[a] = x0 * c - x1 * s;
            xh[b] = x0 * s + x1 * c;
        }
    }
}

void lv_tr_swiglu_fwd(const float *g, const float *u, float *h, int64_t n) {
    for (int64_t i = 0; i < n; i++) h[i] = (g[i] / (1.0f + expf(-g[i]))) * u[i];
}

/* silu(g) = g s, s = sigmoid(g); silu'(g) = s (1 + g (1 - s)) */
void lv_tr_swiglu_bwd(const float *g, const float *u, const float *dh, float *dg, float *du, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float s = 1.0f / (1.0f + expf(-g[i]));
        du[i] = dh[i] * g[i] * s;
        dg[i] = dh[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}

float lv_tr_xent(const float *logits, int64_t V, int32_t target, float *dlogits, float scale) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < V; i++) sum += (double)expf(logits[i] - mx);
    const double lse = (double)mx + log(sum);
    if (dlogits) {
        const float inv = (float)(1.0 / sum);
        for (int64_t i = 0; i < V; i++) dlogits[i] = expf(logits[i] - mx) * inv * scale;
        dlogits[target] -= scale;
    }
    return (float)(lse - (double)logits[target]);
}

void lv_tr_layernorm_bwd(const float *x, const float *w, float mean, float rstd, const float *dy, float *dx, bool accumulate_dx, float *dw,
                         float *db, int64_t n) {
    double sg = 0, sgx = 0;
    for (int64_t i = 0; i < n; i++) {
        const double g = (double)dy[i] * w[i], xh = (double)((x[i] - mean) * rstd);
        sg += g;
        sgx += g * xh;
    }
    const float mg = (float)(sg / (double)n), mgx = (float)(sgx / (double)n);
    for (int64_t i = 0; i < n; i++) {
        const float xh = (x[i] - mean) * rstd;
        const float d = rstd * (dy[i] * w[i] - mg - xh * mgx);
        dx[i] = accumulate_dx ? dx[i] + d : d;
        if (dw) dw[i] += dy[i] * xh;
        if (db) db[i] += dy[i];
    }
}

#define GELU_K0 0.79788456080286535587989211986876f /* sqrt(2 / pi) */
#define GELU_A 0.044715f

void lv_tr_gelu_fwd(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(GELU_K0 * v * (1.0f + GELU_A * v * v)));
    }
}

/* g = x (1 + t) / 2, t = tanh(u), u = k0 (x + a x^3):  g' = (1 + t) / 2 + x (1 - t^2) k0 (1 + 3 a x^2) / 2 */
void lv_tr_gelu_bwd(const float *x, const float *dy, float *dx, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i], t = tanhf(GELU_K0 * v * (1.0f + GELU_A * v * v));
        dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GELU_K0 * (1.0f + 3.0f * GELU_A * v * v));
    }
}
