/*
 * kernels.c: reference kernels (scalar, portable). Their arithmetic follows ggml's CPU backend
 * where that matters for agreeing with llama.cpp's logits: activations are converted to the
 * weight's vec-dot type before a matrix product (f16 for f16 weights, q8_0 for q8_0/q4_0),
 * RMSNorm sums in double, RoPE angles come from repeated float multiplication.
 */
#include "kernels/kernels.h"

#include "gguf/gguf.h"
#include "gguf/quant.h"
#include "kernels/qkernels.h"
#include "kernels/qpack.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* -------------------------------------------------------------------------------------------
 * matmul
 * ----------------------------------------------------------------------------------------- */

size_t lv_matmul_scratch_bytes(lv_type wtype, int64_t T, int64_t K) {
    const size_t plain = (size_t)(T * lv_row_bytes(lv_vec_dot_type(wtype), K));
    return lv_pack_type_supported(wtype) ? LV_MAX(plain, (size_t)T * lv_packx_row_bytes(wtype, K)) : plain;
}

/* Bytes of converted activations a prefill chunk may take: half of the core's L2 as the OS reports
 * it (1 MiB on a 2 MiB Zen 5 L2, 256 KiB on a 512 KiB Zen 3 one), within [128 KiB, 1 MiB];
 * 1 MiB when unknown. LV_MATMUL_CHUNK_KB overrides it (for measurements). */
static size_t g_chunk_bytes;
static pthread_once_t g_chunk_once = PTHREAD_ONCE_INIT;
static void chunk_init(void) {
    const char *e = getenv("LV_MATMUL_CHUNK_KB");
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    size_t b = l2 > 0 ? (size_t)l2 / 2 : (size_t)1 << 20;
    if (e && atol(e) > 0) b = (size_t)atol(e) << 10;
    else b = LV_MIN(LV_MAX(b, (size_t)128 << 10), (size_t)1 << 20);
    g_chunk_bytes = b;
}
static size_t chunk_bytes(void) {
    pthread_once(&g_chunk_once, chunk_init);
    return g_chunk_bytes;
}
#define LV_MATMUL_CHUNK_BYTES chunk_bytes()

typedef struct matmul_task {
    const lv_tensor *W;
    const lv_qtype_ops *ops;
    const lv_pack_ops *pk; /* packed kernels for W->packed, or NULL: use W->data */
    const float *x;
    int64_t T;
    float *y;
    uint8_t *xq;
    const float *bias;
    int64_t xq_row;
    lv_threadpool *tp;
} matmul_task;

/* The product with packed weights (qpack.h): groups of LV_PACK_ROWS rows split among threads;
 * decode runs each group against the one token, prefill each group against tiles of up to
 * LV_PACK_MAX_COLS tokens of an L2-sized chunk. The kernel computes every column the same way
 * whatever the tile, so batch and token-by-token results are identical. */
static void matmul_packed(matmul_task *mt, int ith, int nth) {
    const lv_tensor *W = mt->W;
    const int64_t K = W->ne[0], N = W->ne[1], T = mt->T, G = N / LV_PACK_ROWS;
    const size_t gbytes = lv_pack_group_bytes(W->type, K), xs = (size_t)mt->xq_row;
    const uint8_t *wp = W->packed;
    int64_t lo, hi;
    lv_split_range(G, ith, nth, &lo, &hi);
    const int64_t CB = LV_PACK_MAX_COLS;
    const int64_t chunk = T == 1 ? 1 : LV_MAX(CB, (int64_t)(LV_MATMUL_CHUNK_BYTES / xs) / CB * CB);
    for (int64_t t0 = 0; t0 < T; t0 += chunk) {
        const int64_t t1 = LV_MIN(T, t0 + chunk);
        for (int64_t g = lo; g < hi; g++)
            for (int64_t c0 = t0; c0 < t1; c0 += CB) {
                const int nc = (int)LV_MIN(CB, t1 - c0);
                float *y = mt->y + c0 * N + g * LV_PACK_ROWS;
                mt->pk->gemm(K, wp + (size_t)g * gbytes, mt->xq + (size_t)c0 * xs, xs, y, (size_t)N, nc);
                if (mt->bias)
                    for (int c = 0; c < nc; c++)
                        for (int r = 0; r < LV_PACK_ROWS; r++) y[c * N + r] += mt->bias[g * LV_PACK_ROWS + r];
            }
    }
}

/* Rows [r_begin, r_end) of the product in the file's layout (all of it, or the rows after the packed
 * groups), split among the threads. */
static void matmul_rows(matmul_task *mt, int64_t r_begin, int64_t r_end, int ith, int nth) {
    const lv_tensor *W = mt->W;
    const lv_qtype_ops *ops = mt->ops;
    const int64_t K = W->ne[0], N = W->ne[1], T = mt->T;
    int64_t lo, hi;
    const uint8_t *wd = W->data;
    if (T == 1) {
        /* 2a. decode: rows split among threads, each weight byte streamed once */
        lv_split_range(r_end - r_begin, ith, nth, &lo, &hi);
        for (int64_t r = r_begin + lo; r < r_begin + hi; r++) mt->y[r] = ops->vec_dot(K, wd + r * W->row_bytes, mt->xq) + (mt->bias ? mt->bias[r] : 0.0f);
        return;
    }
    /* 2b. prefill: blocks of LV_GEMM_MAX_ROWS weight rows split among threads. The tokens are taken
     * in chunks whose converted activations fit in about half of L2 (LV_MATMUL_CHUNK_BYTES): for
     * each chunk, every row block of this thread is combined with the chunk's tokens in tiles of
     * LV_GEMM_MAX_COLS, so a block of weight rows is read from memory once per chunk and then reused
     * from L1 for every tile, and the chunk's activations are reused from L2 across the row blocks
     * (without chunks, a 512-token batch with K = 8192 re-read 4 MB of activations from L3 for every
     * 4 weight rows: bench/NOTES.md). Each tile computes exactly what vec_dot computes for each of
     * its pairs, so the result does not depend on the chunking. */
    const int64_t RB = LV_GEMM_MAX_ROWS, CB = LV_GEMM_MAX_COLS;
    const int64_t n_blocks = (r_end - r_begin + RB - 1) / RB;
    lv_split_range(n_blocks, ith, nth, &lo, &hi);
    const int64_t chunk = LV_MAX(CB, (int64_t)(LV_MATMUL_CHUNK_BYTES / (size_t)mt->xq_row) / CB * CB);
    float tile[LV_GEMM_MAX_ROWS * LV_GEMM_MAX_COLS];
    for (int64_t t0 = 0; t0 < T; t0 += chunk) {
        const int64_t t1 = LV_MIN(T, t0 + chunk);
        for (int64_t rb = lo; rb < hi; rb++) {
            const int64_t r0 = r_begin + rb * RB;
            const int nr = (int)LV_MIN(RB, r_end - r0);
            for (int64_t c0 = t0; c0 < t1; c0 += CB) {
                const int nc = (int)LV_MIN(CB, t1 - c0);
                ops->gemm(K, wd + r0 * W->row_bytes, (size_t)W->row_bytes, mt->xq + c0 * mt->xq_row, (size_t)mt->xq_row, tile, CB, nr, nc);
                for (int r = 0; r < nr; r++) {
                    const float b = mt->bias ? mt->bias[r0 + r] : 0.0f;
                    for (int c = 0; c < nc; c++) mt->y[(c0 + c) * N + r0 + r] = tile[r * CB + c] + b;
                }
            }
        }
    }
}

static void matmul_worker(void *arg, int ith, int nth) {
    matmul_task *mt = arg;
    const lv_tensor *W = mt->W;
    const lv_qtype_ops *ops = mt->ops;
    const int64_t K = W->ne[0], N = W->ne[1], T = mt->T;
    int64_t lo, hi;
    /* 1. convert the activations once per row */
    lv_split_range(T, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        ops->from_float(mt->x + t * K, mt->xq + t * mt->xq_row, K);
        if (mt->pk) lv_packx_finish(W->type, mt->xq + t * mt->xq_row, K);
    }
    lv_threadpool_barrier(mt->tp);
    if (mt->pk) {
        matmul_packed(mt, ith, nth);
        /* rows past the last whole group of 16 stay in the file's layout; the unpacked kernels
         * read the q8_0 (q8_K) part at the start of each packed activation row */
        if (N % LV_PACK_ROWS) matmul_rows(mt, N / LV_PACK_ROWS * LV_PACK_ROWS, N, ith, nth);
        return;
    }
    matmul_rows(mt, 0, N, ith, nth);
}

void lv_matmul(lv_threadpool *tp, const lv_tensor *W, const float *x, int64_t T, float *y, void *xq, const float *bias) {
    const lv_simd level = lv_simd_active();
    const lv_pack_ops *pk = W->packed ? lv_pack_ops_get(W->type, level) : NULL;
    matmul_task mt = {W, lv_qtype_ops_get(W->type, level), pk, x, T, y, xq, bias, 0, tp};
    LV_ASSERT(mt.ops);
    LV_ASSERT(!pk || W->ne[1] >= LV_PACK_ROWS);
    mt.xq_row = pk ? (int64_t)lv_packx_row_bytes(W->type, W->ne[0]) : lv_row_bytes(mt.ops->vec_dot_type, W->ne[0]);
    lv_threadpool_run(tp, matmul_worker, &mt);
}

static size_t packed_size(const lv_tensor *t) { /* 64-byte aligned, as laid out in the buffer */
    return (lv_pack_group_bytes(t->type, t->ne[0]) * (size_t)(t->ne[1] / LV_PACK_ROWS) + 63) / 64 * 64;
}

/* a matrix the packed kernels of this level can take: at least one whole group of rows, 2-D, not packed yet */
static bool packable(const lv_tensor *t, lv_simd level) {
    return t && t->data && !t->packed && lv_pack_ops_get(t->type, level) && t->ne[1] >= LV_PACK_ROWS && t->ne[2] == 1 && t->ne[3] == 1;
}

void *lv_pack_tensors(lv_tensor *const *list, int64_t n, const lv_gguf *g, const char *what, size_t *size, int64_t *n_packed) {
    *size = 0;
    *n_packed = 0;
    if (!lv_pack_enabled()) return NULL;
    const lv_simd level = lv_simd_active();
    size_t total = 0;
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        const lv_tensor *t = list[i];
        if (!packable(t, level)) continue;
        total += packed_size(t);
        kept++;
    }
    if (!kept) return NULL;
    uint8_t *buf = lv_big_alloc_huge(total);
    if (!buf) {
        LV_LOG_W("%s: no memory to repack %.1f MiB of weights; using them as stored", what, (double)total / 1048576.0);
        return NULL;
    }
    size_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        lv_tensor *t = list[i];
        if (!packable(t, level)) continue;
        const size_t gin = (size_t)t->row_bytes * LV_PACK_ROWS, gout = lv_pack_group_bytes(t->type, t->ne[0]);
        const int64_t groups = t->ne[1] / LV_PACK_ROWS;
        for (int64_t j = 0; j < groups; j++)
            lv_pack_rows(t->type, t->ne[0], (const uint8_t *)t->data + (size_t)j * gin, (size_t)t->row_bytes, buf + off + (size_t)j * gout);
        t->packed = buf + off;
        if (g) lv_gguf_release_pages(g, t->data, (uint64_t)(groups * (int64_t)gin));
        off += packed_size(t);
    }
    *size = total;
    *n_packed = kept;
    LV_LOG_D("%s: repacked %lld matrices (%.1f MiB) for the %s kernels", what, (long long)kept, (double)total / 1048576.0, lv_simd_name(level));
    return buf;
}

/* -------------------------------------------------------------------------------------------
 * norms, activations
 * ----------------------------------------------------------------------------------------- */

void lv_rmsnorm_ref(const float *x, const float *w, float *y, int64_t n, float eps) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] * scale) * w[i];
}

void lv_layernorm_ref(const float *x, const float *w, const float *b, float *y, int64_t n, float eps, float *mean_out, float *rstd_out) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += x[i];
    const float mean = (float)(sum / (double)n);
    double var = 0;
    for (int64_t i = 0; i < n; i++) {
        const float t = x[i] - mean;
        var += (double)t * t;
    }
    const float rstd = 1.0f / sqrtf((float)(var / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) {
        float t = (x[i] - mean) * rstd;
        if (w) t *= w[i];
        if (b) t += b[i];
        y[i] = t;
    }
    if (mean_out) *mean_out = mean;
    if (rstd_out) *rstd_out = rstd;
}

void lv_swiglu_ref(const float *gate, const float *up, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        out[i] = (g / (1.0f + expf(-g))) * up[i];
    }
}

void lv_swiglu(const float *gate, const float *up, float *out, int64_t n) {
    if (lv_simd_active() >= LV_SIMD_AVX512) lv_swiglu_avx512(gate, up, out, n);
    else lv_swiglu_ref(gate, up, out, n);
}

static float gelu_tanh(float x) {
    const float SQRT_2_OVER_PI = 0.79788456080286535587989211986876f, COEF_A = 0.044715f;
    return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * x * (1.0f + COEF_A * x * x)));
}

void lv_geglu_ref(const float *gate, const float *up, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = gelu_tanh(gate[i]) * up[i];
}

/* GELU of every f16 value, rounded to f16 and widened back: 256 KiB, filled once */
static float g_gelu_table[65536];
static pthread_once_t g_gelu_once = PTHREAD_ONCE_INIT;
static void gelu_table_init(void) {
    for (uint32_t i = 0; i < 65536; i++) g_gelu_table[i] = lv_fp16_to_fp32(lv_fp32_to_fp16(gelu_tanh(lv_fp16_to_fp32((uint16_t)i))));
}

void lv_geglu(const float *gate, const float *up, float *out, int64_t n) {
    pthread_once(&g_gelu_once, gelu_table_init);
    if (lv_simd_active() >= LV_SIMD_AVX2) {
        lv_act_table_avx2(g_gelu_table, true, gate, up, out, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        const float x = gate[i];
        out[i] = x <= -10.0f ? 0.0f : x >= 10.0f ? x * up[i] : g_gelu_table[lv_fp32_to_fp16(x)] * up[i];
    }
}

/* GELU alone (no gate), as ggml_vec_gelu_f32 with GGML_GELU_FP16: the table above, 0 below -10
 * and x above 10 */
void lv_gelu(const float *x, float *y, int64_t n) {
    pthread_once(&g_gelu_once, gelu_table_init);
    if (lv_simd_active() >= LV_SIMD_AVX2) {
        lv_act_table_avx2(g_gelu_table, true, x, NULL, y, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        y[i] = v <= -10.0f ? 0.0f : v >= 10.0f ? v : g_gelu_table[lv_fp32_to_fp16(v)];
    }
}

void lv_gelu_ref(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = gelu_tanh(x[i]);
}

/* QuickGELU x * sigmoid(1.702 x), as ggml_vec_gelu_quick_f32 with GGML_GELU_QUICK_FP16: looked
 * up by the f16 value of x in a table of f16 results, with no clamp */
static float gelu_quick(float x) { return x * (1.0f / (1.0f + expf(-1.702f * x))); }
static float g_gelu_quick_table[65536];
static pthread_once_t g_gelu_quick_once = PTHREAD_ONCE_INIT;
static void gelu_quick_table_init(void) {
    for (uint32_t i = 0; i < 65536; i++)
        g_gelu_quick_table[i] = lv_fp16_to_fp32(lv_fp32_to_fp16(gelu_quick(lv_fp16_to_fp32((uint16_t)i))));
}

void lv_gelu_quick(const float *x, float *y, int64_t n) {
    pthread_once(&g_gelu_quick_once, gelu_quick_table_init);
    if (lv_simd_active() >= LV_SIMD_AVX2) {
        lv_act_table_avx2(g_gelu_quick_table, false, x, NULL, y, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) y[i] = g_gelu_quick_table[lv_fp32_to_fp16(x[i])];
}

void lv_gelu_quick_ref(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = gelu_quick(x[i]);
}

/* -------------------------------------------------------------------------------------------
 * rope
 * ----------------------------------------------------------------------------------------- */

static float yarn_corr_dim(int n_dims, int n_ctx_orig, float n_rot, float base) {
    return n_dims * logf(n_ctx_orig / (n_rot * 2 * (float)LV_PI)) / (2 * logf(base));
}

static float yarn_ramp(float low, float high, int i0) {
    const float y = (i0 / 2 - low) / LV_MAX(0.001f, high - low);
    return 1 - LV_MIN(1, LV_MAX(0, y));
}

void lv_rope_cache_mrope(const lv_rope_params *rp, const int32_t *sections, const int32_t pos[4], float *cache) {
    const int n = rp->n_rot;
    const float theta_scale = powf(rp->freq_base, -2.0f / n);
    float corr[2] = {0, 0};
    if (rp->ext_factor != 0.0f) {
        float start = floorf(yarn_corr_dim(n, rp->n_ctx_orig, rp->beta_fast, rp->freq_base));
        float end = ceilf(yarn_corr_dim(n, rp->n_ctx_orig, rp->beta_slow, rp->freq_base));
        corr[0] = LV_MAX(0, start);
        corr[1] = LV_MIN(n - 1, end);
    }
    /* one running angle per position row, each advanced by theta_scale every pair (ggml's
     * ggml_mrope_cache_init without independent sections): pair k takes row t, h, w or e by
     * which section k % (sum of sections) falls in */
    float theta[4] = {(float)pos[0], (float)pos[1], (float)pos[2], (float)pos[3]};
    const int s0 = sections ? sections[0] : 0, s01 = sections ? s0 + sections[1] : 0, s012 = sections ? s01 + sections[2] : 0;
    const int sect_dims = sections ? s012 + sections[3] : 0;
    for (int i0 = 0; i0 < n; i0 += 2) {
        int row = 0;
        if (sections && sect_dims > 0) {
            const int sector = (i0 / 2) % sect_dims;
            row = sector < s0 ? 0 : sector < s01 ? 1 : sector < s012 ? 2 : 3;
        }
        /* freq_factors hold plain f32 values; read them with memcpy (the mapping may be unaligned
         * only in a malformed file, which the loader rejects, but stay safe) */
        float ff = 1.0f;
        if (rp->freq_factors) memcpy(&ff, (const char *)rp->freq_factors + (size_t)(i0 / 2) * 4, 4);
        const float theta_extrap = theta[row] / ff;
        const float theta_interp = rp->freq_scale * theta_extrap;
        float th = theta_interp;
        float mscale = rp->attn_factor;
        if (rp->ext_factor != 0.0f) {
            const float ramp_mix = yarn_ramp(corr[0], corr[1], i0) * rp->ext_factor;
            th = theta_interp * (1 - ramp_mix) + theta_extrap * ramp_mix;
            mscale *= 1.0f + 0.1f * logf(1.0f / rp->freq_scale);
        }
        cache[i0 + 0] = cosf(th) * mscale;
        cache[i0 + 1] = sinf(th) * mscale;
        for (int r = 0; r < 4; r++) theta[r] *= theta_scale;
    }
}

void lv_rope_cache(const lv_rope_params *rp, int32_t pos, float *cache) {
    const int32_t p4[4] = {pos, pos, pos, pos};
    lv_rope_cache_mrope(rp, NULL, p4, cache);
}

void lv_rope_apply(const lv_rope_params *rp, const float *cache, float *x) {
    const int n = rp->n_rot;
    if (rp->type == LV_ROPE_NORM) {
        for (int i0 = 0; i0 < n; i0 += 2) {
            const float c = cache[i0], s = cache[i0 + 1];
            const float x0 = x[i0], x1 = x[i0 + 1];
            x[i0] = x0 * c - x1 * s;
            x[i0 + 1] = x0 * s + x1 * c;
        }
    } else {
        const int half = n / 2;
        for (int i0 = 0; i0 < n; i0 += 2) {
            const float c = cache[i0], s = cache[i0 + 1];
            const int ic = i0 / 2;
            const float x0 = x[ic], x1 = x[ic + half];
            x[ic] = x0 * c - x1 * s;
            x[ic + half] = x0 * s + x1 * c;
        }
    }
}

/* -------------------------------------------------------------------------------------------
 * attention: the kernel of the active SIMD level (the references are in attn_ref.c)
 * ----------------------------------------------------------------------------------------- */

void lv_quest_page_f16(const float *q, int64_t q_stride, int n_q, const uint16_t *stats, int n_lp, int Dk, float *best) {
    switch (lv_simd_active()) {
    case LV_SIMD_AVX512: lv_quest_page_f16_avx512(q, q_stride, n_q, stats, n_lp, Dk, best); break;
    case LV_SIMD_AVX2: lv_quest_page_f16_avx2(q, q_stride, n_q, stats, n_lp, Dk, best); break;
    default: lv_quest_page_f16_ref(q, q_stride, n_q, stats, n_lp, Dk, best); break;
    }
}

void lv_quest_page(const float *q, int64_t q_stride, int n_q, const float *stats, int n_lp, int Dk, float *best) {
    switch (lv_simd_active()) {
    case LV_SIMD_AVX512: lv_quest_page_avx512(q, q_stride, n_q, stats, n_lp, Dk, best); break;
    case LV_SIMD_AVX2: lv_quest_page_avx2(q, q_stride, n_q, stats, n_lp, Dk, best); break;
    default: lv_quest_page_ref(q, q_stride, n_q, stats, n_lp, Dk, best); break;
    }
}

void lv_attn(const lv_attn_job *job, float *scratch) {
    if (lv_kv_quantized(job->kv_type) || job->kv_type_v != job->kv_type) {
        switch (lv_simd_active()) {
        case LV_SIMD_AVX512: lv_attn_q_avx512(job, scratch); break;
        case LV_SIMD_AVX2: lv_attn_q_avx2(job, scratch); break;
        default: lv_attn_q_scalar(job, scratch); break;
        }
        return;
    }
    switch (lv_simd_active()) {
    case LV_SIMD_AVX512: lv_attn_tiled_avx512(job, scratch); break;
    case LV_SIMD_AVX2: lv_attn_tiled_avx2(job, scratch); break;
    default: lv_attn_tiled_scalar(job, scratch); break;
    }
}
