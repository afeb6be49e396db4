/*
 * train.h: training llama-family models in C (issue 7), in the spirit of llm.c: f32 weights,
 * gradients and AdamW state; forward and backward written out op by op, each with a scalar
 * reference beside the fast path; multi-threaded over the library's lv_threadpool.
 *
 * The module src/train/ (docs/architecture.md):
 *   Owns:  the trainer: f32 forward and backward of llama / qwen2 and of an idefics3 vision
 *          tower + projector (tvision.c), AdamW, DuoAttention gate optimization (docs/train.md).
 *   Never: shares state with inference contexts.
 *
 * The same machinery runs DuoAttention's head identification (identify.c): the model is loaded
 * from a GGUF (llama or qwen2, any weight type, converted to f32), its weights are frozen, and the
 * only parameters are the per-(layer, KV head) gates of the mixed attention.
 *
 * Legend (shapes in comments): T = tokens of the sequence, E = n_embd, V = n_vocab, L = layers,
 * Hq / Hkv = query / KV heads, D = head dim, G = Hq / Hkv, F = n_ff, Q = Hq * D, KV = Hkv * D.
 * Every matrix is row-major; a weight W of shape (N, K) has N rows of K floats and computes
 * y = x W^T, as ggml's (ne0 = K, ne1 = N) tensors do, so weights export to GGUF unchanged.
 *
 * Determinism: every kernel partitions work so that each output element is computed by one thread
 * in a fixed order. Results therefore do not depend on the number of threads, and a resumed run
 * continues bit for bit (tests/train/test_train.c checks both).
 */
#ifndef LV_TRAIN_H
#define LV_TRAIN_H

#include "core/core.h"
#include "kernels/kernels.h"
#include "model/model.h"

#include <stdbool.h>
#include <stdint.h>

/* -------------------------------------------------------------------------------------------
 * GEMM (tgemm.c, tgemm_avx2.c, tgemm_avx512.c)
 * C (M, N) = op(A) (M, K) . B (K, N)  [+ C when accumulate]
 * op(A) = A (row i at A + i * lda) or, with trans_a, A^T (A stored (K, M): element (i, k) at
 * A[k * lda + i]). B is always row-major (K, N) with leading dimension ldb.
 * The summation order of every C element is fixed (k blocks in order, k in order within a
 * block), whatever part of C a caller asks for: splitting C among threads changes nothing.
 * Kernel chosen at run time: AVX-512, else AVX2 + FMA (LV_SIMD caps it), else portable;
 * lv_tr_set_reference forces the reference. What is bit-identical to what:
 * - the AVX2 and AVX-512 kernels compute every element the same way: start from C (accumulate)
 *   or 0, one fused multiply-add (one rounding) per k in order, in float; so they agree bit for
 *   bit with each other and with a sequential fmaf loop (tests/train checks both); a whole
 *   training run still differs between AVX-512 and AVX2 CPUs, because the attention's exp is
 *   vectorized only at the AVX-512 level (lv_tr_exp_avx512, not libm's expf);
 * - the portable kernel sums in the same order but rounds the product and the sum separately
 *   (baseline x86-64 has no FMA; -std=c11 does not contract), so its results differ in the last
 *   bits from the FMA kernels': a run is reproducible bit for bit on CPUs of one kernel, not
 *   across them (the same holds between any kernel and the reference).
 * ----------------------------------------------------------------------------------------- */
void lv_tr_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, bool trans_a, const float *B, int64_t ldb, float *C,
                int64_t ldc, bool accumulate);
/* the reference: one dot product per element, accumulated in double */
void lv_tr_gemm_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, bool trans_a, const float *B, int64_t ldb, float *C,
                    int64_t ldc, bool accumulate);
/* the per-level kernels behind lv_tr_gemm (the portable one is compiled for baseline x86-64); the
 * AVX2 one returns false, C untouched, when it cannot allocate its packing buffers (lv_tr_gemm then
 * uses the portable one) */
void lv_tr_gemm_portable(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, bool trans_a, const float *B, int64_t ldb, float *C,
                         int64_t ldc, bool accumulate);
bool lv_tr_gemm_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, bool trans_a, const float *B, int64_t ldb, float *C,
                     int64_t ldc, bool accumulate);
void lv_tr_gemm_avx512(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, bool trans_a, const float *B, int64_t ldb, float *C,
                       int64_t ldc, bool accumulate);
/* x[i] = expf(x[i]) for x[i] >= -87 (smaller inputs give about 1e-38, not 0: callers zero what
 * they mask); vectorized at the AVX-512 level (relative error about 3e-8 |x| + 2e-7: the range
 * reduction is rounded to float; softmax arguments are small). */
void lv_tr_exp_inplace(float *x, int64_t n);
void lv_tr_exp_avx512(float *x, int64_t n);
/* Force the reference kernels everywhere (tests compare whole steps with and without). */
void lv_tr_set_reference(bool on);
bool lv_tr_reference(void);

/* y (T, N) = x (T, K) W^T (+ b), W (N, K). scratch: at least K * N floats. */
void lv_tr_matmul_fwd(lv_threadpool *tp, const float *x, const float *W, const float *b, float *y, int64_t T, int64_t K, int64_t N,
                      float *scratch);
/* dx (T, K) (+)= dy (T, N) W  (dx NULL: skipped; accumulate_dx adds to it)
 * dW (N, K) += dy^T x          (dW NULL: skipped)
 * db (N)    += sum_t dy        (db NULL: skipped) */
void lv_tr_matmul_bwd(lv_threadpool *tp, const float *dy, const float *x, const float *W, float *dx, bool accumulate_dx, float *dW, float *db,
                      int64_t T, int64_t K, int64_t N);

/* -------------------------------------------------------------------------------------------
 * Element-wise and per-row ops (ops.c): the reference implementations, which are also the ones
 * used (they are memory-bound; the per-row loops are parallelized by the callers).
 * ----------------------------------------------------------------------------------------- */
/* y = x * r * w, r = 1 / sqrtf(mean(x^2) + eps) with the mean of squares summed in double, as
 * lv_rmsnorm_ref (the engine's) does. Returns r. */
float lv_tr_rmsnorm_fwd(const float *x, const float *w, float *y, int64_t n, float eps);
/* dx (+)= d/dx, dw += d/dw, given r from the forward pass */
void lv_tr_rmsnorm_bwd(const float *x, const float *w, float r, const float *dy, float *dx, bool accumulate_dx, float *dw, int64_t n);

/* rotate the first n_rot dims of each of n_head vectors (stride D) with the cos/sin table of
 * lv_rope_cache; inverse = true rotates by -theta (the backward pass: the rotation is orthogonal) */
void lv_tr_rope(lv_rope_type type, int n_rot, const float *cache, float *x, int n_head, int D, bool inverse);

/* h = silu(g) * u; backward: dg, du from dh */
void lv_tr_swiglu_fwd(const float *g, const float *u, float *h, int64_t n);
void lv_tr_swiglu_bwd(const float *g, const float *u, const float *dh, float *dg, float *du, int64_t n);

/* loss = logsumexp(logits) - logits[target]; if dlogits: dlogits = (softmax - onehot) * scale */
float lv_tr_xent(const float *logits, int64_t V, int32_t target, float *dlogits, float scale);

/* LayerNorm's forward is the engine's lv_layernorm_ref (kernels.h), which returns mean and rstd. */
/* xh = (x - mean) rstd, g = dy w:  dx (+)= rstd (g - mean(g) - xh mean(g xh));
 * dw += dy xh, db += dy (each NULL: skipped) */
void lv_tr_layernorm_bwd(const float *x, const float *w, float mean, float rstd, const float *dy, float *dx, bool accumulate_dx, float *dw,
                         float *db, int64_t n);

/* GELU, the tanh approximation (ggml_gelu, SigLIP's gelu_pytorch_tanh), computed exactly in float
 * as the engine's lv_gelu_ref (lv_gelu itself looks it up in an f16 table: docs/vision.md) */
void lv_tr_gelu_fwd(const float *x, float *y, int64_t n);
/* dx = dy gelu'(x) */
void lv_tr_gelu_bwd(const float *x, const float *dy, float *dx, int64_t n);

/* -------------------------------------------------------------------------------------------
 * Attention (attn.c): causal, GQA, over one sequence, with an optional sink + window mask
 * (DuoAttention's streaming heads): key j is visible to query i iff j <= i and (window <= 0 or
 * j < sink or i - j < window); or, with bidir, every key to every query (no window then). q (T, Hq, D), k and v (T, Hkv, D) after RoPE; out (T, Hq, D);
 * lse (Hq, T) the log-sum-exp of each softmax row (saved for the backward pass).
 * ----------------------------------------------------------------------------------------- */
typedef struct lv_tr_attn_shape {
    int64_t T;
    int Hq, Hkv, D;
    int sink, window; /* window <= 0: plain causal */
    float scale;
    bool bidir;       /* bidirectional (ViT): every key visible to every query; no window */
} lv_tr_attn_shape;

void lv_tr_attn_fwd(lv_threadpool *tp, const lv_tr_attn_shape *s, const float *q, const float *k, const float *v, float *out, float *lse);
/* dq = d/dq (written), dk, dv = d/dk, d/dv (written), given out, lse and dout. scratch: at
 * least lv_tr_attn_bwd_scratch(s) floats. */
void lv_tr_attn_bwd(lv_threadpool *tp, const lv_tr_attn_shape *s, const float *q, const float *k, const float *v, const float *out,
                    const float *lse, const float *dout, float *dq, float *dk, float *dv, float *scratch);
size_t lv_tr_attn_bwd_scratch(const lv_tr_attn_shape *s);
/* the references: the whole score matrix, two passes, double accumulation */
void lv_tr_attn_fwd_ref(const lv_tr_attn_shape *s, const float *q, const float *k, const float *v, float *out, float *lse);
void lv_tr_attn_bwd_ref(const lv_tr_attn_shape *s, const float *q, const float *k, const float *v, const float *dout, float *dq, float *dk,
                        float *dv);

/* -------------------------------------------------------------------------------------------
 * The model (tmodel.c)
 * ----------------------------------------------------------------------------------------- */
typedef struct lv_tr_config {
    lv_arch arch;         /* llama (no biases, NORM rope) or qwen2 (q/k/v biases, NEOX rope) */
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_rot;
    int32_t n_ctx_train;  /* written to the GGUF as context_length */
    float rope_base, norm_eps;
    bool tied;            /* the output matrix is the token embedding */
    bool bias_qkv;        /* q/k/v biases (qwen2) */
    bool bias_o;          /* an output-projection bias (some llama-family files) */
} lv_tr_config;

/* Pointers into one contiguous array of floats (parameters or their gradients). */
typedef struct lv_tr_layer {
    float *attn_norm;          /* (E) */
    float *wq, *wk, *wv;       /* (Q, E), (KV, E), (KV, E) */
    float *bq, *bk, *bv;       /* (Q), (KV), (KV): with bias_qkv, else NULL */
    float *wo;                 /* (E, Q) */
    float *bo;                 /* (E): with bias_o, else NULL */
    float *ffn_norm;           /* (E) */
    float *w_gate, *w_up;      /* (F, E) */
    float *w_down;             /* (E, F) */
} lv_tr_layer;

typedef struct lv_tr_weights {
    float *tok_embd;    /* (V, E) */
    float *output_norm; /* (E) */
    float *output;      /* (V, E): tok_embd when tied */
    lv_tr_layer *layers;/* (L) */
} lv_tr_weights;

typedef struct lv_tmodel {
    lv_tr_config c;
    int64_t n_params;
    float *params;      /* (n_params) */
    float *grads;       /* (n_params), NULL for a frozen model */
    lv_tr_weights w, g; /* views of params and grads */
    lv_rope_params rope; /* as the engine computes it (scaling of a loaded model included) */
    float *rope_freqs;   /* (n_rot / 2) owned copy of a loaded model's rope_freqs, or NULL */
} lv_tmodel;

/* Check a configuration; LV_ERR_INVALID_ARG with a message naming the bad field. */
lv_status lv_tr_config_check(const lv_tr_config *c);
/* Allocate a model (parameters zero; with_grads: a gradient array too). */
lv_status lv_tmodel_create(const lv_tr_config *c, bool with_grads, lv_tmodel **out);
void lv_tmodel_free(lv_tmodel *m);
/* GPT-2-style initialisation: N(0, std) for matrices, std / sqrt(2 L) for the two projections
 * that write the residual stream (wo, w_down), ones for norm weights, zeros for biases.
 * Deterministic for a seed, whatever the thread count. */
void lv_tmodel_init(lv_tmodel *m, uint64_t seed, float std);
/* p[i] = N(0, std), i < n, from a splitmix64 stream of seed (Box-Muller in double): the
 * initialiser of lv_tmodel_init and lv_tvmodel_init */
void lv_tr_fill_normal(float *p, int64_t n, uint64_t seed, float std);
/* A copy of src with n_vocab >= src's tokens: the first rows of the token embedding (and of an
 * untied output) are src's, the new ones N(0, std) from seed; everything else is src's. For
 * fine-tuning a model on a vocabulary that extends its own (builtin:bytes -> builtin:bytes-vision). */
lv_status lv_tmodel_grow_vocab(const lv_tmodel *src, int32_t n_vocab, bool with_grads, uint64_t seed, float std, lv_tmodel **out);
/* Load any llama/qwen2 GGUF the engine loads (weights converted to f32). */
lv_status lv_tmodel_from_model(const lv_model *src, bool with_grads, lv_tmodel **out);
/* Write a GGUF (f32 or f16 matrices; norms and biases f32) with the tokenizer metadata of
 * vocab_gguf (a vocabulary GGUF or a model, a tokenizer.json, or "builtin:bytes", as gen-model's
 * --vocab; its token count must be n_vocab). Extra string keys
 * (pairs, NULL-terminated; may be NULL) go into the metadata. Written to OUT.tmp then renamed. */
lv_status lv_tmodel_export_gguf(const lv_tmodel *m, const char *vocab_gguf, const char *path, bool f16, const char *name,
                                const char *const *extra_kv);

/* A sequence to run: tokens at RoPE positions pos (any increasing or not values: training uses
 * skips), next-token targets (-1: none) and their loss weights (0: no loss). Embedding rows (an
 * image's projected embeddings, lv_tv_forward's output) stand in for tokens where tokens[i] is
 * -1: the k-th such position takes row k of embd. */
typedef struct lv_tr_seq {
    int64_t T;
    const int32_t *tokens;  /* (T); -1: an embedding row */
    const int32_t *pos;     /* (T) */
    const int32_t *targets; /* (T) or NULL (no loss) */
    const float *weights;   /* (T) or NULL */
    const float *embd;      /* (n, E), n = the count of tokens[i] == -1; NULL when there are none */
    float *dembd;           /* (n, E) or NULL: lv_tr_backward writes d/d(embd) here (for the tower's backward) */
} lv_tr_seq;

/* DuoAttention mixing for identify: in every layer the attention output of KV group g is
 * alpha[l, g] * o_full[l] + (1 - alpha[l, g]) * streaming attention (sink + window mask). */
typedef struct lv_tr_duo {
    const float *alpha;  /* (L, Hkv) */
    float *dalpha;       /* (L, Hkv): gradients are added here by the backward pass */
    const float *o_full; /* (L, T, Q): the teacher's attention outputs (lv_tr_state.att after a plain forward) */
    int sink, window;
} lv_tr_duo;

/* Activations of one sequence, kept for the backward pass; grown on demand. */
typedef struct lv_tr_state {
    int64_t T_cap;
    const lv_tmodel *m;
    float *rope_cache; /* (T, n_rot) */
    float *x;          /* (L + 1, T, E) the residual stream entering each layer; x[L] leaves the last */
    float *xn1;        /* (L, T, E) */
    float *r1;         /* (L, T) rmsnorm factors */
    float *q;          /* (L, T, Q) after RoPE */
    float *k, *v;      /* (L, T, KV) */
    float *att;        /* (L, T, Q) attention output (mixed, with duo) */
    float *att_s;      /* (L, T, Q) duo only: the streaming attention output */
    float *lse;        /* (L, Hq, T) */
    float *xmid;       /* (L, T, E) after the attention residual */
    float *xn2;        /* (L, T, E) */
    float *r2;         /* (L, T) */
    float *gate, *up;  /* (L, T, F) */
    float *hff;        /* (L, T, F) */
    float *xf;         /* (T, E) final norm output (the "hidden states") */
    float *rf;         /* (T) */
    /* backward scratch (one layer at a time) */
    float *dx, *dxn, *dq, *dk, *dv, *datt, *dgate, *dup, *dh, *dtmp; /* (T, max(E, Q, F)) each */
    float *wscratch;   /* matmul transposes: max(K * N) floats */
    float *ascratch;   /* attention backward scratch */
    size_t ascratch_n;
    float *logits;     /* (chunk, V) */
    float *dlogits;    /* (chunk, V) */
    float *xent_x, *xent_dx; /* (chunk, E) */
} lv_tr_state;

void lv_tr_state_free(lv_tr_state *s);
lv_status lv_tr_state_reserve(lv_tr_state *s, const lv_tmodel *m, int64_t T, bool duo);

/* Forward through the layers and the final norm: fills the state; xf holds the hidden states. */
lv_status lv_tr_forward(lv_threadpool *tp, const lv_tmodel *m, lv_tr_state *st, const lv_tr_seq *seq, const lv_tr_duo *duo);
/* Cross-entropy of the weighted targets (tokens with a target >= 0 and a weight > 0): returns
 * sum_t w_t CE_t; ce (T, optional) receives CE_t (0 where there is no loss). With grad: adds
 * scale * d/d(output matrix) to the gradients and writes scale * d/dxf to st->dx (T, E).
 * Call after lv_tr_forward. */
double lv_tr_xent_loss(lv_threadpool *tp, lv_tmodel *m, lv_tr_state *st, const lv_tr_seq *seq, bool grad, float scale, float *ce);
/* Backward from d/dxf (in st->dx, (T, E); overwritten): weight gradients are added to m->grads
 * when m->grads != NULL; duo gates' gradients to duo->dalpha; d/d(embedding rows) is written to
 * seq->dembd when given (whether or not the model has gradients: a frozen text model can train
 * the tower). */
void lv_tr_backward(lv_threadpool *tp, lv_tmodel *m, lv_tr_state *st, const lv_tr_seq *seq, const lv_tr_duo *duo);
/* logits (rows, V) of the tokens [t0, t0 + rows) after lv_tr_forward */
void lv_tr_logits(lv_threadpool *tp, const lv_tmodel *m, lv_tr_state *st, int64_t t0, int64_t rows, float *logits);

/* -------------------------------------------------------------------------------------------
 * The vision tower and projector (tvision.c): a SigLIP tower with the idefics3 projector, as
 * SmolVLM's mmproj files hold it and src/vision/encode.c (and llama.cpp's mtmd) run it:
 *   cols = im2col(pixels) normalised (u / 255 - mean) / std, rows of 3 p p in (c, ky, kx) order
 *   x = cols Wpatch^T + bpatch + pos
 *   per layer:  xn1 = LN(x) * ln1_w + ln1_b;  q, k, v = xn1 W^T + b
 *               att = bidirectional attention (H heads of E / H, scale 1 / sqrt(E / H))
 *               xmid = x + att Wo^T + bo
 *               xn2 = LN(xmid);  hup = xn2 Wup^T + bup;  x' = xmid + gelu(hup) Wdown^T + bdown
 *   xf = LN(x_L) * post_w + post_b;  xs = pixel_shuffle_s(xf);  out = xs Wproj^T (no bias)
 * Legend: S = image side, p = patch, G = S / p, N = G^2 patches, K = 3 p p, s = scale factor,
 * M = (G / s)^2 output tokens per image, P = E s^2, Et = the text model's width.
 * ----------------------------------------------------------------------------------------- */
typedef struct lv_tv_config {
    int32_t image_size, patch_size; /* S, p: S a multiple of p s */
    int32_t n_embd, n_head, n_layer, n_ff;
    int32_t scale_factor;           /* s > 1 */
    int32_t n_text_embd;            /* Et */
    float eps;                      /* LayerNorm epsilon (SigLIP: 1e-6) */
    float mean[3], std[3];          /* pixel normalisation (SmolVLM: 0.5 and 0.5) */
} lv_tv_config;

typedef struct lv_tv_layer {
    float *ln1_w, *ln1_b;                       /* (E) */
    float *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo; /* (E, E), (E) */
    float *ln2_w, *ln2_b;                       /* (E) */
    float *w_up, *b_up;                         /* (F, E), (F) */
    float *w_down, *b_down;                     /* (E, F), (E) */
} lv_tv_layer;

typedef struct lv_tv_weights {
    float *patch_w;         /* (E, K): the conv kernel [p, p, 3, E] of the GGUF as it lies */
    float *patch_b;         /* (E) */
    float *pos;             /* (N, E) */
    lv_tv_layer *layers;    /* (L) */
    float *post_w, *post_b; /* (E) */
    float *proj;            /* (Et, P): mm.model.fc.weight */
} lv_tv_weights;

typedef struct lv_tvmodel {
    lv_tv_config c;
    int64_t n_params;
    float *params, *grads; /* grads NULL for a frozen tower */
    lv_tv_weights w, g;
} lv_tvmodel;

/* A SmolVLM-like default configuration (SigLIP eps, mean = std = 0.5) for the given shape. */
lv_tv_config lv_tv_config_default(int32_t image_size, int32_t patch_size, int32_t n_embd, int32_t n_head, int32_t n_layer, int32_t n_ff,
                                  int32_t scale_factor, int32_t n_text_embd);
lv_status lv_tv_config_check(const lv_tv_config *c);
lv_status lv_tvmodel_create(const lv_tv_config *c, bool with_grads, lv_tvmodel **out);
void lv_tvmodel_free(lv_tvmodel *m);
/* N(0, std) matrices and position embeddings, std / sqrt(2 L) for wo and w_down, LayerNorm
 * weights 1, biases 0; deterministic for a seed. */
void lv_tvmodel_init(lv_tvmodel *m, uint64_t seed, float std);

/* Activations of a batch of images, kept for the backward pass; grown on demand. */
typedef struct lv_tv_state {
    int32_t B_cap, B;
    const lv_tvmodel *m;
    float *cols;            /* (B N, K) */
    float *x;               /* (L + 1, B N, E) residual stream entering each layer (x[L] leaves the last) */
    float *xn1, *mu1, *rs1; /* (L, B N, E), (L, B N), (L, B N) */
    float *q, *k, *v, *att; /* (L, B N, E) */
    float *lse;             /* (L, B, H, N) */
    float *xmid, *xn2, *mu2, *rs2;
    float *hup, *act;       /* (L, B N, F) before and after GELU */
    float *xf, *muf, *rsf;  /* (B N, E), (B N), (B N) */
    float *xs;              /* (B M, P) the shuffled tokens */
    /* backward scratch */
    float *dx, *dxn, *dq, *dk, *dv, *datt; /* (B N, E) */
    float *dh;              /* (B N, F) */
    float *dxs;             /* (B M, P) */
    float *wscratch;        /* matmul transposes */
    float *ascratch;        /* attention backward scratch (one image) */
} lv_tv_state;

void lv_tv_state_free(lv_tv_state *s);
lv_status lv_tv_state_reserve(lv_tv_state *s, const lv_tvmodel *m, int32_t n_img);

/* Patches of n_img RGB8 images of S x S pixels (rows packed, 3 bytes a pixel), normalised, as
 * im2col rows (B N, K) in raster patch order; the engine's arithmetic. */
void lv_tv_im2col(const lv_tv_config *c, const uint8_t *rgb, int32_t n_img, float *cols);
/* idefics3's pixel shuffle of one image, as HF's Idefics3Connector.pixel_shuffle and mtmd:
 * y (M, P), token (Y, X) = (x[(s Y + dy) G + s X + dx] for dy, dx in [0, s)), dy-major;
 * inverse = true writes x from y (the backward pass: a permutation). */
void lv_tv_pixel_shuffle(const float *x, float *y, int32_t G, int32_t s, int64_t E, bool inverse);

/* Forward n_img images (S x S RGB8 each, packed) to out (n_img M, Et), image-major, token order
 * as the engine's lv_clip_encode. Fills the state for lv_tv_backward. */
lv_status lv_tv_forward(lv_threadpool *tp, const lv_tvmodel *m, lv_tv_state *st, const uint8_t *rgb, int32_t n_img, float *out);
/* Given d(out) (n_img M, Et), add the parameter gradients to m->grads (after lv_tv_forward). */
void lv_tv_backward(lv_threadpool *tp, lv_tvmodel *m, lv_tv_state *st, const float *dout);
/* Write an mmproj GGUF (projector idefics3; the keys and tensor names gen-mmproj writes, which
 * src/vision and llama.cpp's mtmd load): f32, or f16 matrices (the patch kernel, position
 * embeddings, norms and biases stay f32). Written to PATH.tmp then renamed. */
lv_status lv_tvmodel_export_gguf(const lv_tvmodel *m, const char *path, bool f16, const char *name);
/* Read an mmproj file that lv_tvmodel_export_gguf wrote (its configuration from the clip.vision keys,
 * f32 or f16 tensors converted to f32; every tensor's name, type and shape checked): resuming and
 * fine-tuning a trained tower. */
lv_status lv_tvmodel_load_gguf(const char *path, bool with_grads, lv_tvmodel **out);

/* -------------------------------------------------------------------------------------------
 * Optimizer (optim.c): AdamW with decoupled weight decay on matrices (not on norms, biases or
 * the embedding), global gradient-norm clipping, and a warmup + cosine/linear decay schedule.
 * ----------------------------------------------------------------------------------------- */
typedef struct lv_adamw {
    int64_t n;
    float *m, *v;  /* (n) moments */
    uint8_t *decay;/* (n) 1 where weight decay applies */
    int64_t t;     /* steps taken */
} lv_adamw;

lv_status lv_adamw_init(lv_adamw *o, const lv_tmodel *m);
/* Moments for n parameters of any flat array, no weight decay anywhere (the caller sets o->decay
 * to 1 where it applies; lv_tv_adamw_init does for the vision tower). */
lv_status lv_adamw_init_n(lv_adamw *o, int64_t n);
/* For the vision tower (tvision.c): weight decay on the matrices (patch kernel, q/k/v/o, FFN,
 * projector), not on norms, biases or the position embeddings (timm's no_weight_decay). */
lv_status lv_tv_adamw_init(lv_adamw *o, const lv_tvmodel *m);
void lv_adamw_free(lv_adamw *o);
/* One update of params from grads. Returns the gradient norm before clipping (clip <= 0: none). */
float lv_adamw_step(lv_threadpool *tp, lv_adamw *o, float *params, float *grads, float lr, float beta1, float beta2, float eps, float wd,
                    float clip);

/* What a checkpoint's optimizer file records besides the moments. */
typedef struct lv_tr_ckpt_info {
    int64_t step;        /* steps completed */
    int64_t total_steps; /* the run's planned length (the schedule depends on it) */
    uint64_t seed;       /* the data seed */
} lv_tr_ckpt_info;
/* Save / load the moments and step count (o must be initialised for the same model: the
 * parameter count is checked). Checksummed; written to PATH.tmp then renamed. */
lv_status lv_adamw_save(const lv_adamw *o, const lv_tr_ckpt_info *info, const char *path);
lv_status lv_adamw_load(lv_adamw *o, lv_tr_ckpt_info *info, const char *path);
/* The learning rate at step (0-based): linear warmup over `warmup` steps to lr, then cosine decay
 * to min_lr at step total. */
float lv_lr_schedule(int64_t step, int64_t total, int64_t warmup, float lr, float min_lr);

#endif
