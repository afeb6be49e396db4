/*
 * kernels.h: the compute kernels of the forward pass: matrix multiplication per weight type,
 * RMSNorm, RoPE, SwiGLU, and attention over a list of KV spans. Each has a scalar reference;
 * the SIMD variants share the signatures and are tested against it.
 *
 * The module src/kernels/ (docs/architecture.md):
 *   Owns:  the compute kernels: matrix products per weight type (qkernels.h; repacked weights,
 *          qpack.h), RMSNorm, RoPE, SwiGLU, attention over spans and LServe's page score; each SIMD
 *          level beside its scalar reference, chosen at run time.
 *   Never: allocates, decides which tokens to attend, or knows a model.
 *
 * Kernels never allocate and never decide which tokens to attend: callers pass scratch and an
 * attention plan (spans).
 *
 * Legend: T = tokens in the micro-batch, E = n_embd, K = input features of a matrix, N = its
 * output features (rows), D = head dim.
 */
#ifndef LV_KERNELS_H
#define LV_KERNELS_H

#include "core/core.h"
#include "gguf/quant.h"
#include <math.h>

/* A weight as the kernels read it: bound by the model (model/) as a view into the model file. */
typedef struct lv_tensor {
    const char *name;
    lv_type type;
    int64_t ne[4];
    int64_t row_bytes; /* bytes of one row (ne[0] elements) */
    const void *data;
    /* the same rows repacked for the matrix kernels (qpack.h), or NULL; owned by the model.
     * data stays valid (lv_tensor users other than lv_matmul, and SIMD levels without packed
     * kernels, read it) */
    const void *packed;
} lv_tensor;

/* y (T, N) = x (T, K) @ W^T, W a bound weight of shape (K, N) (N rows of K elements), run on
 * the pool with the kernels of the active SIMD level (qkernels.h). xq is scratch for x
 * converted to W's vec-dot type: at least lv_matmul_scratch_bytes(W->type, T, K) bytes.
 * If bias is non-NULL (N floats) it is added after the product. */
void   lv_matmul(lv_threadpool *tp, const lv_tensor *W, const float *x, int64_t T, float *y, void *xq, const float *bias);
size_t lv_matmul_scratch_bytes(lv_type wtype, int64_t T, int64_t K); /* 4 * T * K covers every type */

/* Repack, for the active SIMD level's packed kernels (qpack.h), every matrix of list[0..n) that has
 * them (type with a packed layout, rows a multiple of 16, 2-D, data set; NULL entries skipped) into
 * one buffer, set each one's `packed`, and release the mapped file pages its rows came from through
 * g (NULL: none released). Returns the buffer (free with lv_big_free(buf, *size)), or NULL with
 * *size 0 when nothing was packed, repacking is off (LV_REPACK=0) or memory ran out (logged; the
 * weights are then used as stored). *n_packed: how many matrices were packed. */
struct lv_gguf;
void *lv_pack_tensors(lv_tensor *const *list, int64_t n, const struct lv_gguf *g, const char *what, size_t *size, int64_t *n_packed);

/* y (n) = rmsnorm(x) * w, with ggml's arithmetic: mean of squares accumulated in double,
 * scale = 1/sqrtf(mean + eps), y = (x * scale) * w. */
void lv_rmsnorm_ref(const float *x, const float *w, float *y, int64_t n, float eps);
/* y (n) = LayerNorm(x) * w + b (w, b may be NULL: 1, 0), as ggml's norm: mean summed in double
 * then rounded to float, variance of the float centred values summed in double, rstd =
 * 1/sqrtf(var + eps), y = ((x - mean) * rstd) * w + b. The vision tower and the trainer (which
 * keeps mean and rstd for its backward pass; NULL: not wanted) share it. */
void lv_layernorm_ref(const float *x, const float *w, const float *b, float *y, int64_t n, float eps, float *mean_out, float *rstd_out);

/* RoPE: cos/sin table for one position (n_rot/2 pairs), computed as ggml's rope_yarn cache:
 * theta_i = pos * base^(-2i/n_rot) by repeated float multiplication, divided by
 * freq_factors[i] (llama3 rope_freqs) when given, then YaRN/linear scaling. */
typedef enum lv_rope_type {
    LV_ROPE_NORM = 0, /* rotate adjacent pairs (x[2i], x[2i+1]): llama */
    LV_ROPE_NEOX = 2, /* rotate (x[i], x[i + n_rot/2]): qwen2 */
} lv_rope_type;

typedef struct lv_rope_params {
    int n_rot;
    lv_rope_type type;
    float freq_base, freq_scale, ext_factor, attn_factor, beta_fast, beta_slow;
    int n_ctx_orig;
    const float *freq_factors; /* (n_rot/2) or NULL */
} lv_rope_params;

/* cache: (n_rot) floats: cos, sin interleaved per pair */
void lv_rope_cache(const lv_rope_params *rp, int32_t pos, float *cache);
/* M-RoPE (ggml's GGML_ROPE_TYPE_MROPE, qwen2vl): pair k rotates by the angle of position row t, h,
 * w or e (pos[0..3]) as k % (sum of sections) falls in sections[0], [1], [2] or [3]; each row's
 * angle advances by base^(-2/n_rot) per pair from the row's position. sections NULL: pos[0]
 * everywhere (lv_rope_cache). Rotation pairs as rp->type (NEOX for M-RoPE). */
void lv_rope_cache_mrope(const lv_rope_params *rp, const int32_t *sections, const int32_t pos[4], float *cache);
/* Rotate the first n_rot dims of one head vector x (head_dim floats) in place. */
void lv_rope_apply(const lv_rope_params *rp, const float *cache, float *x);

/* Gated delta-net (qwen35's linear attention), one token of one value head. The state is S x S,
 * stored as ggml keeps it: row j holds column j of the matrix S[i][j]. With decay = exp(g):
 *   M = src * decay;  d_j = (v_j - M_j . k) * beta;  M_j += d_j k;  out_j = (M_j . q) * scale
 * (llama.cpp's ggml_gated_delta_net, per row). src may be dst (in place) or NULL (a zero state).
 * The reference is scalar; lv_gdn_step runs the active level's (AVX2 when S % 8 == 0). */
void lv_gdn_step_ref(const float *src, float *dst, const float *q, const float *k, const float *v, float decay, float beta, float scale,
                     float *out, int S);
void lv_gdn_step_avx2(const float *src, float *dst, const float *q, const float *k, const float *v, float decay, float beta, float scale,
                      float *out, int S);
void lv_gdn_step(const float *src, float *dst, const float *q, const float *k, const float *v, float decay, float beta, float scale,
                 float *out, int S);

/* out[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + expf(-x)) */
void lv_swiglu_ref(const float *gate, const float *up, float *out, int64_t n);
/* The same with a 16-lane exp (exp512.h): relative error below (8 + |gate|) * 2^-23 */
void lv_swiglu_avx512(const float *gate, const float *up, float *out, int64_t n);
/* The active SIMD level's swiglu (out may be gate) */
void lv_swiglu(const float *gate, const float *up, float *out, int64_t n);

/* out[i] = gelu(gate[i]) * up[i] with the tanh GELU, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
 * computed exactly in float (the reference) */
void lv_geglu_ref(const float *gate, const float *up, float *out, int64_t n);
/* The same as llama.cpp computes it (out may be gate): GELU looked up in a table indexed by the f16
 * value of x, the result rounded to f16 (0 for x <= -10, x for x >= 10). Within one f16 rounding of
 * the input and of the GELU (relative 2^-10) of lv_geglu_ref, and 20x faster. */
void lv_geglu(const float *gate, const float *up, float *out, int64_t n);

/* GELU (tanh form) and QuickGELU (x sigmoid(1.702 x)) of the vision towers, y may be x. The
 * fast ones compute what ggml does with its f16 tables (GELU: f16 input, f16 result, 0 at or below
 * -10 and x at or above 10; QuickGELU: the same without the clamp); the references in float.
 * Within one f16 rounding of the input and of the result of each other (tested). */
void lv_gelu(const float *x, float *y, int64_t n);
void lv_gelu_ref(const float *x, float *y, int64_t n);
void lv_gelu_quick(const float *x, float *y, int64_t n);
void lv_gelu_quick_ref(const float *x, float *y, int64_t n);
/* The AVX2 + F16C loop behind lv_gelu / lv_gelu_quick / lv_geglu (act_avx2.c): y[i] = table[f16(x[i])]
 * (clamp: 0 for x <= -10, x for x >= 10), times up[i] when up is non-NULL; equal to the scalar loops. */
void lv_act_table_avx2(const float *table, bool clamp, const float *x, const float *up, float *y, int64_t n);

/* ---- attention masks ----
 * Which cached keys a query sees, by stored position (kernels never see evicted tokens, so a
 * mask only has to exclude what a policy keeps but a given query must not see). */
typedef enum lv_attn_mask_kind {
    LV_MASK_CAUSAL = 0,        /* key position <= query position */
    LV_MASK_SINK_WINDOW = 1,   /* ... and (a sink, pos < sink_end, or q - k < window): the Lambda mask */
    LV_MASK_BLOCK_STRIDED = 2, /* ... and, with qb = q / block, kb = k / block: qb - kb < local_blocks or (kb + 1) % vert_stride == 0 */
} lv_attn_mask_kind;

typedef struct lv_attn_mask {
    uint8_t kind;
    int32_t sink_end, window;
    int32_t block, local_blocks, vert_stride;
} lv_attn_mask;

static inline bool lv_attn_visible(const lv_attn_mask *m, int32_t kpos, int32_t qpos) {
    if (kpos > qpos) return false;
    if (!m || m->kind == LV_MASK_CAUSAL) return true;
    if (m->kind == LV_MASK_SINK_WINDOW) return kpos < m->sink_end || qpos - kpos < m->window;
    const int32_t qb = qpos / m->block, kb = kpos / m->block;
    return qb - kb < m->local_blocks || (kb + 1) % m->vert_stride == 0;
}

/* ---- attention over a plan ----
 * A span is a run of cached tokens (keys, values and their stored positions) a query reads;
 * the dense plan is all pages of the sequence, sparse plans are subsets. Keys the mask hides
 * (mask NULL: causal) are skipped. */
typedef struct lv_attn_span {
    const void *k;      /* keys, transposed: element d of key j at k[d * ldk + j] (elements of kv_type);
                           quantized keys: key j's quants at k + j * lv_kv_qrow_bytes(kv_type, Dk) */
    const void *v;      /* (n, Dv): value j at v[j * Dv]; quantized values: value j's quants at v + j * lv_kv_qrow_bytes(kv_type_v, Dv) */
    const int32_t *pos; /* (n) the keys' positions, or NULL: then pos0 + pos16[j], or pos0 + j without pos16 (lv_span_pos) */
    int32_t n;
    int32_t ldk;        /* >= n: the keys' row stride (a KV cache page: its page size), and the scales' */
    const uint16_t *ks; /* quantized keys: the f16 scale of block b (elements 32b..32b+31) of key j at ks[b * ldk + j] */
    const uint16_t *vs; /* quantized values: the same for the values */
    /* A KV cache page keeps its positions as a base and, per slot, nothing (consecutive positions),
     * a 16-bit offset, or the 32-bit position (kv.h): with pos NULL, key j is at pos0 + pos16[j]
     * (pos16 set) or pos0 + j (pos16 NULL). A zeroed span with pos set reads pos as before. */
    const uint16_t *pos16;
    int32_t pos0;
} lv_attn_span;

/* the stored position of key j of a span */
static inline int32_t lv_span_pos(const lv_attn_span *sp, int64_t j) {
    if (sp->pos) return sp->pos[j];
    return sp->pos16 ? sp->pos0 + (int32_t)sp->pos16[j] : sp->pos0 + (int32_t)j;
}
/* the positions of keys j0 .. j0 + n - 1 into out (n); returns their largest */
static inline int32_t lv_span_pos_block(const lv_attn_span *sp, int32_t j0, int n, int32_t *out) {
    int32_t mx = INT32_MIN;
    if (sp->pos)
        for (int j = 0; j < n; j++) out[j] = sp->pos[j0 + j];
    else if (sp->pos16)
        for (int j = 0; j < n; j++) out[j] = sp->pos0 + (int32_t)sp->pos16[j0 + j];
    else
        for (int j = 0; j < n; j++) out[j] = sp->pos0 + j0 + j;
    for (int j = 0; j < n; j++) mx = out[j] > mx ? out[j] : mx;
    return mx;
}
/* where a span's positions of keys from j0 are stored (for prefetching), and their bytes per key (0: none stored) */
static inline const void *lv_span_pos_ptr(const lv_attn_span *sp, int32_t j0, size_t *bytes_per_key) {
    if (sp->pos) { *bytes_per_key = 4; return sp->pos + j0; }
    if (sp->pos16) { *bytes_per_key = 2; return sp->pos16 + j0; }
    *bytes_per_key = 0;
    return NULL;
}

/* bytes of one cached element (f32, f16) */
static inline size_t lv_kv_elt_size(lv_kv_type t) { return t == LV_KV_F32 ? 4 : 2; }

/* ---- quantized KV pages (LV_KV_Q8_0, LV_KV_Q4_0) ----
 * ggml's q8_0 / q4_0 blocks of 32 elements along the head dimension, each with an f16 scale d:
 * x = d q (q8_0, 32 bytes of int8 q) or x = d (q - 8) (q4_0, 16 bytes: element i in the low nibble of
 * byte i, element 16 + i in its high nibble). A page keeps its tokens' quants row by row (token j:
 * D / 32 blocks, in order) and the scales block by block (block b of every slot of the page, in
 * slot order), so that 8 keys' scales of one block are one vector load. */
#define LV_KV_QBLOCK 32
static inline bool lv_kv_quantized(lv_kv_type t) { return t == LV_KV_Q8_0 || t == LV_KV_Q4_0; }
/* bytes of the quants of one token's D elements (without the scales) */
static inline int64_t lv_kv_qrow_bytes(lv_kv_type t, int64_t D) { return t == LV_KV_Q4_0 ? D / 2 : D; }
/* bytes of one token's D elements in a page, scales included */
static inline int64_t lv_kv_row_bytes(lv_kv_type t, int64_t D) {
    return lv_kv_quantized(t) ? lv_kv_qrow_bytes(t, D) + D / LV_KV_QBLOCK * 2 : D * (int64_t)lv_kv_elt_size(t);
}
/* element d of token j of a quantized row set (quants q, scales s with stride ld) */
static inline float lv_kv_qelt(lv_kv_type t, const void *q, const uint16_t *s, int32_t ld, int64_t j, int64_t d, int64_t D) {
    const float sc = lv_fp16_to_fp32(s[(d / LV_KV_QBLOCK) * ld + j]);
    if (t == LV_KV_Q4_0) {
        const uint8_t b = ((const uint8_t *)q)[j * (D / 2) + d / LV_KV_QBLOCK * 16 + d % 16];
        return sc * (float)((d % LV_KV_QBLOCK < 16 ? b & 15 : b >> 4) - 8);
    }
    return sc * (float)((const int8_t *)q)[j * D + d];
}

/* Keys are stored transposed (the KV cache keeps a page's keys as Dk rows of page-size elements)
 * so that a block of 64 keys is 64 consecutive elements per dimension: the kernels' score loop
 * (one fma chain over the dimensions per key, 16 keys per vector) loads them as they are, where a
 * row-major block had to be transposed in registers first (bench/NOTES.md, session 13).
 * Quantized keys are rows of blocks instead (lv_attn_key_at). */
static inline float lv_attn_key(lv_kv_type t, const lv_attn_span *sp, int64_t j, int64_t d) {
    const int64_t i = d * sp->ldk + j;
    return t == LV_KV_F32 ? ((const float *)sp->k)[i] : lv_fp16_to_fp32(((const uint16_t *)sp->k)[i]);
}
/* element d of key j / value j of a span, any type (Dk, Dv: the head dims) */
static inline float lv_attn_key_at(lv_kv_type t, const lv_attn_span *sp, int64_t j, int64_t d, int64_t Dk) {
    return lv_kv_quantized(t) ? lv_kv_qelt(t, sp->k, sp->ks, sp->ldk, j, d, Dk) : lv_attn_key(t, sp, j, d);
}
static inline float lv_attn_val_at(lv_kv_type t, const lv_attn_span *sp, int64_t j, int64_t d, int64_t Dv) {
    if (lv_kv_quantized(t)) return lv_kv_qelt(t, sp->v, sp->vs, sp->ldk, j, d, Dv);
    return t == LV_KV_F32 ? ((const float *)sp->v)[j * Dv + d] : lv_fp16_to_fp32(((const uint16_t *)sp->v)[j * Dv + d]);
}

/* The query as the kernels dot it with keys of type t: rounded to f16 for f16 keys, quantized to
 * q8_0 (round half to even, as llama.cpp's x86 build) and read back for quantized keys, as is for
 * f32 keys (llama.cpp converts the query to the keys' vec_dot type the same way). */
void lv_attn_query_as(lv_kv_type t, const float *q, float *out, int D);

/* out (Dv) = softmax(scale * q.k_j over unmasked j) . v_j.
 * scores: scratch of at least the total span length. The query is first taken as the keys' type
 * takes it (lv_attn_query_as), as llama.cpp does; keys and values are read as stored (quantized
 * ones dequantized). kv_type: the keys' type, kv_type_v the values'. Returns the number of keys
 * attended (0: out is zero). */
int64_t lv_attn_ref(const float *q, const lv_attn_span *spans, int n_spans, int32_t q_pos, const lv_attn_mask *mask, float scale,
                    lv_kv_type kv_type, lv_kv_type kv_type_v, int Dk, int Dv, float *scores, float *out);

/* ---- tiled attention (attn_impl.h), the fast path ----
 * A job: n_tok tokens of one sequence x n_head query heads that share one KV stream; query row
 * (t, h) is q + t * q_tok_stride + h * q_head_stride, its output likewise, its position pos[t]. */
typedef struct lv_attn_job {
    const float *q;
    int64_t q_tok_stride, q_head_stride;
    float *out;
    int64_t out_tok_stride, out_head_stride;
    const int32_t *pos; /* (n_tok) */
    int n_tok, n_head;
    const lv_attn_span *spans;
    int n_spans;
    /* (n_spans) or NULL: bit h set when query head h reads span s (for every token of the job);
     * NULL: every head reads every span. LServe's decode gives the G heads of a KV head the union
     * of their selected pages, so a page two heads chose is loaded once. */
    const uint32_t *span_heads;
    /* split-K: when both are set, each output row is left unnormalised (sum of exp(s - m) v) and
     * its running max and sum of weights go to m_out[r], l_out[r] (row r = t * n_head + h; m
     * -INFINITY, l 0 and a zero row when nothing was attended); lv_attn_merge combines parts. */
    float *m_out, *l_out;
    lv_attn_mask mask;
    float scale;
    lv_kv_type kv_type;   /* the keys' type */
    lv_kv_type kv_type_v; /* the values' type (LV_KV_F32 = 0 in a zeroed job) */
    int Dk, Dv;
} lv_attn_job;

/* split-K: fold one part of a query row's keys (o unnormalised, its max m and weight sum l, as
 * a job with m_out/l_out leaves them) into a running (O, *M, *L), parts taken in key order; a
 * part that attended nothing (l 0) changes nothing. Start from *M = -INFINITY, *L = 0. */
static inline void lv_attn_fold(float *O, float *M, float *L, const float *o, float m, float l, int Dv) {
    if (l == 0.0f) return;
    if (*L == 0.0f) {
        for (int d = 0; d < Dv; d++) O[d] = o[d];
        *M = m;
        *L = l;
        return;
    }
    const float mx = m > *M ? m : *M, a = expf(*M - mx), b = expf(m - mx);
    for (int d = 0; d < Dv; d++) O[d] = O[d] * a + o[d] * b;
    *L = *L * a + l * b;
    *M = mx;
}

/* the folded row divided by its weight sum (zero when nothing was attended) */
static inline void lv_attn_finish(float *O, float L, int Dv) {
    const float inv = L == 0.0f ? 0.0f : 1.0f / L;
    for (int d = 0; d < Dv; d++) O[d] *= inv;
}

/* LServe's page score for n_q queries (query h at q + h * q_stride): best[h] = the max over the
 * n_lp logical pages of one physical page (stats: per logical page Dk minima then Dk maxima) of
 * the Quest bound sum_d max(q_d kmax_d, q_d kmin_d). The kernel of the active SIMD level;
 * lv_quest_page_ref is the portable one (16 partial sums), the tests compare the levels. */
void lv_quest_page(const float *q, int64_t q_stride, int n_q, const float *stats, int n_lp, int Dk, float *best);
void lv_quest_page_ref(const float *q, int64_t q_stride, int n_q, const float *stats, int n_lp, int Dk, float *best);
void lv_quest_page_avx2(const float *q, int64_t q_stride, int n_q, const float *stats, int n_lp, int Dk, float *best);
void lv_quest_page_avx512(const float *q, int64_t q_stride, int n_q, const float *stats, int n_lp, int Dk, float *best);
/* the same with f16 statistics (an f16 cache's, as LServe keeps them): each level widens them and
 * computes exactly what its f32 kernel computes on the widened values (tested) */
void lv_quest_page_f16(const float *q, int64_t q_stride, int n_q, const uint16_t *stats, int n_lp, int Dk, float *best);
void lv_quest_page_f16_ref(const float *q, int64_t q_stride, int n_q, const uint16_t *stats, int n_lp, int Dk, float *best);
void lv_quest_page_f16_avx2(const float *q, int64_t q_stride, int n_q, const uint16_t *stats, int n_lp, int Dk, float *best);
void lv_quest_page_f16_avx512(const float *q, int64_t q_stride, int n_q, const uint16_t *stats, int n_lp, int Dk, float *best);

/* floats of scratch a job of nq = n_tok * n_head query rows needs */
size_t lv_attn_scratch_floats(int nq, int Dk, int Dv);
/* Run a job with the kernel of the active SIMD level. */
void lv_attn(const lv_attn_job *job, float *scratch);
/* the per-level kernels (attn_scalar.c, attn_avx2.c, attn_avx512.c) */
void lv_attn_tiled_scalar(const lv_attn_job *job, float *scratch);
void lv_attn_tiled_avx2(const lv_attn_job *job, float *scratch);
void lv_attn_tiled_avx512(const lv_attn_job *job, float *scratch);
/* jobs with quantized keys or values, or keys and values of different types (attn_q_impl.h) */
void lv_attn_q_scalar(const lv_attn_job *job, float *scratch);
void lv_attn_q_avx2(const lv_attn_job *job, float *scratch);
void lv_attn_q_avx512(const lv_attn_job *job, float *scratch);

#endif
