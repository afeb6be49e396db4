/*
 * encode.c: the vision tower and projector of one encoder input (an image at the tower's input
 * size, or a Qwen temporal pair of frames), computed as llama.cpp's mtmd computes it: patch
 * embedding (with ggml's f16 im2col), learned positions or 2-D RoPE, pre-norm ViT blocks with
 * bidirectional attention (per window in Qwen2.5's windowed blocks), then the projector: pixel
 * shuffle + linear (idefics3), the 2x2 merger (Qwen) or the two-layer MLP (LLaVA).
 *
 * The matrix products run on the text model's kernels (lv_matmul), attention on the tiled
 * attention kernel (lv_attn) with every key at position 0, so the causal rule admits them all.
 */
#include "vision/vision.h"

#include <math.h>
#include <string.h>

lv_status lv_clip_n_tokens(const lv_clip *c, int32_t w, int32_t h, int32_t *n_tokens, int32_t *nx, int32_t *ny) {
    const int32_t p = c->patch_size;
    if (w <= 0 || h <= 0 || w % p || h % p)
        return lv_error(LV_ERR_INVALID_ARG, "an encoder input of %dx%d pixels is not a whole number of %d-pixel patches", w, h, p);
    const int32_t gx = w / p, gy = h / p;
    switch (c->proj) {
    case LV_PROJ_IDEFICS3: {
        const int32_t s = c->scale_factor;
        *nx = (gx + s - 1) / s;
        *ny = (gy + s - 1) / s;
        break;
    }
    case LV_PROJ_QWEN2VL:
    case LV_PROJ_QWEN25VL:
        if (gx % 2 || gy % 2) return lv_error(LV_ERR_INVALID_ARG, "a Qwen encoder input of %dx%d pixels is not a whole number of 2x2 patch blocks", w, h);
        *nx = gx / 2;
        *ny = gy / 2;
        break;
    case LV_PROJ_MLP:
        if (w != c->image_size || h != c->image_size)
            return lv_error(LV_ERR_INVALID_ARG, "the mlp tower takes %dx%d images, not %dx%d", c->image_size, c->image_size, w, h);
        *nx = gx;
        *ny = gy;
        break;
    default:
        return lv_error(LV_ERR_INTERNAL, "no projector");
    }
    *n_tokens = *nx * *ny;
    return LV_OK;
}

/* ---- the working state of one call ---- */

typedef struct attn_task {
    int32_t head, t0, n;     /* query tokens [t0, t0 + n) of one head */
    int32_t span0, n_spans;  /* its keys: spans[span0 ..] (per head: offset by head below) */
} attn_task;

typedef struct enc {
    const lv_clip *c;
    lv_threadpool *tp;
    int n_threads;
    int64_t N;               /* tokens in the tower (patches, + the class token) */
    int32_t gx, gy;          /* patch grid */
    int64_t d, f, H, D;
    float *x, *cur, *q, *k, *v, *att, *up, *gate, *proj;
    float *kT;               /* per head: D rows of N keys (element dd of key j at kT[(h D + dd) N + j]) */
    float *vh;               /* per head: N rows of D values */
    int32_t *zeros;          /* N zero positions */
    int32_t *prow, *pcol;    /* qwen: each token's patch row and column */
    float *scratch;          /* attention scratch, per thread */
    size_t scratch_floats;
    void *xq;
    /* attention plan: spans (key runs, as offsets into a head's keys) and query tasks */
    int32_t *span_start, *span_len;
    int32_t n_span_full;     /* full attention: span index 0 */
    attn_task *tasks_full, *tasks_win;
    int32_t n_tasks_full, n_tasks_win;
    lv_clip_ws *ws;           /* the clip's buffers when this call holds them, else NULL (own buffers) */
    const float *ln_w, *ln_b; /* the norm being applied */
    float *norm_in, *norm_out;
    int64_t norm_n;
} enc;

static void norm_rows(void *arg, int64_t lo, int64_t hi, int ith) {
    enc *e = arg;
    const int64_t n = e->norm_n;
    for (int64_t t = lo; t < hi; t++) {
        const float *x = e->norm_in + t * n;
        float *y = e->norm_out + t * n;
        if (e->c->norm == LV_CLIP_RMSNORM) lv_rmsnorm_ref(x, e->ln_w, y, n, e->c->eps);
        else lv_layernorm_ref(x, e->ln_w, e->ln_b, y, n, e->c->eps, NULL, NULL);
    }
}

static void apply_norm(enc *e, const lv_tensor *w, const lv_tensor *b, float *in, float *out, int64_t rows) {
    e->ln_w = w->data;
    e->ln_b = b->data;
    e->norm_in = in;
    e->norm_out = out;
    e->norm_n = e->d;
    lv_parallel_for(e->tp, rows, norm_rows, e);
}

/* 2-D RoPE of the Qwen tower (ggml's GGML_ROPE_TYPE_VISION, sections d/4 x 4, base 10000): pair
 * k < D/2 rotates (x_k, x_{k + D/2}) by row * s^k for k < D/4 and col * s^(k - D/4) after, with
 * s = 10000^(-4/D), the angles accumulated by float multiplication as ggml does */
static void rope2d_rows(void *arg, int64_t lo, int64_t hi, int ith) {
    enc *e = arg;
    const int64_t D = e->D, half = D / 2, quarter = D / 4;
    const float scale = powf(10000.0f, -2.0f / (float)half);
    float cs[512];
    for (int64_t t = lo; t < hi; t++) {
        float th_r = (float)e->prow[t], th_c = (float)e->pcol[t];
        for (int64_t kk = 0; kk < half; kk++) {
            if (kk == quarter) th_c = (float)e->pcol[t];
            const float th = kk < quarter ? th_r : th_c;
            cs[2 * kk] = cosf(th);
            cs[2 * kk + 1] = sinf(th);
            th_r *= scale;
            th_c *= scale;
        }
        float *rows[2] = {e->q + t * e->d, e->k + t * e->d};
        for (int r = 0; r < 2; r++)
            for (int64_t h = 0; h < e->H; h++) {
                float *x = rows[r] + h * D;
                for (int64_t kk = 0; kk < half; kk++) {
                    const float x0 = x[kk], x1 = x[kk + half], c = cs[2 * kk], s = cs[2 * kk + 1];
                    x[kk] = x0 * c - x1 * s;
                    x[kk + half] = x0 * s + x1 * c;
                }
            }
    }
}

/* keys transposed and values per head, the layout lv_attn reads */
static void kv_layout(void *arg, int64_t lo, int64_t hi, int ith) {
    enc *e = arg;
    const int64_t N = e->N, D = e->D, d = e->d;
    for (int64_t h = lo; h < hi; h++) {
        float *kt = e->kT + h * D * N, *vv = e->vh + h * N * D;
        for (int64_t j = 0; j < N; j++) {
            const float *kr = e->k + j * d + h * D, *vr = e->v + j * d + h * D;
            for (int64_t dd = 0; dd < D; dd++) kt[dd * N + j] = kr[dd];
            memcpy(vv + j * D, vr, (size_t)D * sizeof(float));
        }
    }
}

typedef struct attn_run {
    enc *e;
    const attn_task *tasks;
} attn_run;

static void attn_tasks(void *arg, int64_t lo, int64_t hi, int ith) {
    const attn_run *ar = arg;
    enc *e = ar->e;
    const int64_t N = e->N, D = e->D;
    lv_attn_span spans[64];
    for (int64_t i = lo; i < hi; i++) {
        const attn_task *t = &ar->tasks[i];
        const int64_t h = t->head;
        for (int s = 0; s < t->n_spans; s++) {
            const int32_t st = e->span_start[t->span0 + s];
            spans[s].k = e->kT + h * D * N + st;
            spans[s].v = e->vh + (h * N + st) * D;
            spans[s].pos = e->zeros;
            spans[s].n = e->span_len[t->span0 + s];
            spans[s].ldk = (int32_t)N;
        }
        lv_attn_job job = {0};
        job.q = e->q + (int64_t)t->t0 * e->d + h * D;
        job.q_tok_stride = e->d;
        job.q_head_stride = D;
        job.out = e->att + (int64_t)t->t0 * e->d + h * D;
        job.out_tok_stride = e->d;
        job.out_head_stride = D;
        job.pos = e->zeros;
        job.n_tok = t->n;
        job.n_head = 1;
        job.spans = spans;
        job.n_spans = t->n_spans;
        job.mask.kind = LV_MASK_CAUSAL;
        job.scale = 1.0f / sqrtf((float)D);
        job.kv_type = job.kv_type_v = LV_KV_F32;
        job.Dk = job.Dv = (int)D;
        lv_attn(&job, e->scratch + (size_t)ith * e->scratch_floats);
    }
}

#define Q_CHUNK 16

/* The query tasks and key spans: full attention (one span of all N keys), and for Qwen2.5 the
 * windows: a window of w x w merged tokens (2x2 patches each, in merge-block order) is one run of
 * 4 ww tokens per merged row, every run a span of its keys and a run of its queries. */
static lv_status plan_attention(enc *e) {
    const lv_clip *c = e->c;
    const int64_t N = e->N, H = e->H;
    int32_t n_win_spans = 0, n_win_tasks = 0, win = 0, mx = 0, my = 0;
    if (c->n_wa_pattern > 0) {
        win = LV_MAX(1, c->window_size / c->patch_size / 2);
        mx = e->gx / 2;
        my = e->gy / 2;
        for (int32_t wy = 0; wy < my; wy += win)
            for (int32_t wx = 0; wx < mx; wx += win) {
                const int32_t wh = LV_MIN(win, my - wy), ww = LV_MIN(win, mx - wx);
                n_win_spans += wh;
                n_win_tasks += wh * ((4 * ww + Q_CHUNK - 1) / Q_CHUNK);
            }
        if (win > 64) return lv_error(LV_ERR_UNSUPPORTED, "attention windows of more than 64 merged rows");
    }
    const int64_t chunks = (N + Q_CHUNK - 1) / Q_CHUNK;
    e->span_start = lv_mallocn((size_t)(1 + n_win_spans), sizeof(int32_t));
    e->span_len = lv_mallocn((size_t)(1 + n_win_spans), sizeof(int32_t));
    e->tasks_full = lv_mallocn((size_t)(chunks * H), sizeof(attn_task));
    e->tasks_win = n_win_tasks ? lv_mallocn((size_t)n_win_tasks * (size_t)H, sizeof(attn_task)) : NULL;
    if (!e->span_start || !e->span_len || !e->tasks_full || (n_win_tasks && !e->tasks_win)) return LV_ERR_NOMEM;
    e->span_start[0] = 0;
    e->span_len[0] = (int32_t)N;
    for (int64_t h = 0; h < H; h++)
        for (int64_t ch = 0; ch < chunks; ch++) {
            attn_task *t = &e->tasks_full[e->n_tasks_full++];
            t->head = (int32_t)h;
            t->t0 = (int32_t)(ch * Q_CHUNK);
            t->n = (int32_t)LV_MIN(Q_CHUNK, N - ch * Q_CHUNK);
            t->span0 = 0;
            t->n_spans = 1;
        }
    if (n_win_tasks) {
        int32_t ns = 1;
        for (int32_t wy = 0; wy < my; wy += win)
            for (int32_t wx = 0; wx < mx; wx += win) {
                const int32_t wh = LV_MIN(win, my - wy), ww = LV_MIN(win, mx - wx), span0 = ns;
                for (int32_t y = wy; y < wy + wh; y++) {
                    e->span_start[ns] = 4 * (y * mx + wx);
                    e->span_len[ns] = 4 * ww;
                    ns++;
                }
                for (int64_t h = 0; h < H; h++)
                    for (int32_t y = wy; y < wy + wh; y++)
                        for (int32_t q0 = 0; q0 < 4 * ww; q0 += Q_CHUNK) {
                            attn_task *t = &e->tasks_win[e->n_tasks_win++];
                            t->head = (int32_t)h;
                            t->t0 = 4 * (y * mx + wx) + q0;
                            t->n = LV_MIN(Q_CHUNK, 4 * ww - q0);
                            t->span0 = span0;
                            t->n_spans = wh;
                        }
            }
    }
    return LV_OK;
}

/* patches of an image, normalised, as im2col rows (c, ky, kx), in the token order of the tower:
 * raster order, or the Qwen 2x2 merge-block order */
typedef struct im2col_arg {
    enc *e;
    const lv_image *img;
    float *out;
    int64_t row0; /* mlp with a class token: patches start at row 1 */
} im2col_arg;

static void im2col_rows(void *arg, int64_t lo, int64_t hi, int ith) {
    const im2col_arg *a = arg;
    const lv_clip *c = a->e->c;
    const int64_t p = c->patch_size, K = 3 * p * p, gx = a->e->gx;
    const bool qwen = c->proj == LV_PROJ_QWEN2VL || c->proj == LV_PROJ_QWEN25VL;
    for (int64_t i = lo; i < hi; i++) {
        const int64_t r = i / gx, col = i % gx;
        const int64_t row = qwen ? ((r / 2) * (gx / 2) + col / 2) * 4 + (r % 2) * 2 + (col % 2) : i;
        float *dst = a->out + (a->row0 + row) * K;
        for (int ch = 0; ch < 3; ch++)
            for (int64_t ky = 0; ky < p; ky++) {
                const uint8_t *src = a->img->rgb + ((r * p + ky) * a->img->w + col * p) * 3 + ch;
                for (int64_t kx = 0; kx < p; kx++) dst[(ch * p + ky) * p + kx] = ((float)src[kx * 3] / 255.0f - c->mean[ch]) / c->std[ch];
            }
        if (qwen) {
            a->e->prow[row] = (int32_t)r;
            a->e->pcol[row] = (int32_t)col;
        }
    }
}

/* The activation buffers (enc's x .. xq, in this order), kept in the clip between calls. */
enum { WS_X, WS_CUR, WS_Q, WS_K, WS_V, WS_ATT, WS_UP, WS_GATE, WS_PROJ, WS_KT, WS_VH, WS_ZEROS, WS_PROW, WS_PCOL, WS_SCRATCH, WS_XQ, WS_N };
struct lv_clip_ws {
    void *p[WS_N];
    size_t cap[WS_N];
};

void lv_clip_ws_free(lv_clip_ws *ws) {
    if (!ws) return;
    for (int i = 0; i < WS_N; i++) lv_free(ws->p[i]);
    lv_free(ws);
}

/* Buffer i of at least n bytes: the workspace's (grown if smaller; its contents are not kept) or,
 * without one, a fresh allocation the caller frees. NULL when out of memory. */
static void *ws_get(lv_clip_ws *ws, int i, size_t n) {
    if (!ws) return lv_malloc(n ? n : 1);
    if (ws->cap[i] < n || !ws->p[i]) {
        lv_free(ws->p[i]);
        ws->p[i] = lv_malloc(n ? n : 1);
        ws->cap[i] = ws->p[i] ? n : 0;
    }
    return ws->p[i];
}

static void enc_free(enc *e) {
    if (e->ws) {
        atomic_store(&((lv_clip *)e->c)->ws_busy, 0); /* the buffers stay with the clip */
    } else {
        void *own[WS_N] = {e->x, e->cur, e->q, e->k, e->v, e->att, e->up, e->gate, e->proj, e->kT, e->vh, e->zeros, e->prow, e->pcol, e->scratch, e->xq};
        for (int i = 0; i < WS_N; i++) lv_free(own[i]);
    }
    lv_free(e->span_start);
    lv_free(e->span_len);
    lv_free(e->tasks_full);
    lv_free(e->tasks_win);
}

static void add_rows(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

static void ffn_act(const lv_clip *c, float *x, int64_t n) {
    if (c->act == LV_CLIP_GELU) lv_gelu(x, x, n);
    else if (c->act == LV_CLIP_QUICK_GELU) lv_gelu_quick(x, x, n);
    else
        for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}

static const float *bias(const lv_tensor *t) { return t->data; }

lv_status lv_clip_encode(const lv_clip *c, lv_threadpool *tp, const lv_clip_input *in, float *out) {
    int32_t n_out_tok, nx, ny;
    lv_status st = lv_clip_n_tokens(c, in->img->w, in->img->h, &n_out_tok, &nx, &ny);
    if (st != LV_OK) return st;
    const bool qwen = c->proj == LV_PROJ_QWEN2VL || c->proj == LV_PROJ_QWEN25VL;
    if (in->img2 && (!qwen || in->img2->w != in->img->w || in->img2->h != in->img->h))
        return lv_error(LV_ERR_INVALID_ARG, "a second frame is only taken by the Qwen towers, at the size of the first");
    enc E = {0}, *e = &E;
    e->c = c;
    e->tp = tp;
    e->n_threads = lv_threadpool_n_threads(tp);
    e->gx = in->img->w / c->patch_size;
    e->gy = in->img->h / c->patch_size;
    const bool cls = c->class_embd.data != NULL;
    const int64_t n_patch = (int64_t)e->gx * e->gy;
    e->N = n_patch + (cls ? 1 : 0);
    e->d = c->n_embd;
    e->f = c->n_ff;
    e->H = c->n_head;
    e->D = c->d_head;
    const int64_t N = e->N, d = e->d, f = e->f, p = c->patch_size, K = 3 * p * p;
    int64_t kmax = LV_MAX(K, LV_MAX(d, f));
    int64_t proj_rows = 0, proj_cols = 0; /* the projector's input */
    if (c->proj == LV_PROJ_IDEFICS3) {
        proj_rows = n_out_tok;
        proj_cols = d * c->scale_factor * c->scale_factor;
    } else if (qwen) {
        proj_rows = n_patch / 4;
        proj_cols = 4 * d;
    } else {
        proj_rows = n_patch;
        proj_cols = c->mm0_w.ne[1];
    }
    kmax = LV_MAX(kmax, proj_cols);
    const int64_t nf = LV_MAX(f, proj_cols);
    /* the clip's buffers when no other call holds them (created on first use), else our own */
    lv_clip *cm = (lv_clip *)c; /* the workspace is the only thing an encode changes in the clip */
    if (atomic_exchange(&cm->ws_busy, 1) == 0) {
        if (!cm->ws) cm->ws = lv_calloc(1, sizeof(lv_clip_ws));
        if (cm->ws) e->ws = cm->ws;
        else atomic_store(&cm->ws_busy, 0);
    }
    const size_t fs = sizeof(float), nd = (size_t)(N * d) * fs;
    e->scratch_floats = (lv_attn_scratch_floats(Q_CHUNK, (int)e->D, (int)e->D) + 15) / 16 * 16;
    e->x = ws_get(e->ws, WS_X, (size_t)(N * LV_MAX(d, K)) * fs);
    e->cur = ws_get(e->ws, WS_CUR, (size_t)(N * LV_MAX(d, K)) * fs);
    e->q = ws_get(e->ws, WS_Q, nd);
    e->k = ws_get(e->ws, WS_K, nd);
    e->v = ws_get(e->ws, WS_V, nd);
    e->att = ws_get(e->ws, WS_ATT, nd);
    e->up = ws_get(e->ws, WS_UP, (size_t)(N * nf) * fs);
    e->gate = ws_get(e->ws, WS_GATE, (size_t)(N * nf) * fs);
    e->proj = ws_get(e->ws, WS_PROJ, (size_t)LV_MAX(proj_rows * proj_cols, 1) * fs);
    e->kT = ws_get(e->ws, WS_KT, nd);
    e->vh = ws_get(e->ws, WS_VH, nd);
    e->zeros = ws_get(e->ws, WS_ZEROS, (size_t)N * sizeof(int32_t));
    e->prow = ws_get(e->ws, WS_PROW, (size_t)N * sizeof(int32_t));
    e->pcol = ws_get(e->ws, WS_PCOL, (size_t)N * sizeof(int32_t));
    e->scratch = ws_get(e->ws, WS_SCRATCH, (size_t)e->n_threads * e->scratch_floats * fs);
    e->xq = ws_get(e->ws, WS_XQ, lv_matmul_scratch_bytes(LV_TYPE_F32, N, kmax) + 64);
    if (!e->x || !e->cur || !e->q || !e->k || !e->v || !e->att || !e->up || !e->gate || !e->proj || !e->kT || !e->vh || !e->zeros || !e->prow ||
        !e->pcol || !e->scratch || !e->xq) {
        enc_free(e);
        return LV_ERR_NOMEM;
    }
    memset(e->zeros, 0, (size_t)N * sizeof(int32_t));
    memset(e->prow, 0, (size_t)N * sizeof(int32_t));
    memset(e->pcol, 0, (size_t)N * sizeof(int32_t));
    if ((st = plan_attention(e)) != LV_OK) {
        enc_free(e);
        return st;
    }

    /* patch embedding: im2col rows (rounded to f16 by the f16 kernel's activation conversion, as
     * ggml's f16 im2col) times the f16 kernel, + bias; Qwen adds the second temporal slice's
     * product with the second frame (or the same image) */
    const int64_t row0 = cls ? 1 : 0;
    im2col_arg ia = {e, in->img, e->cur, 0};
    lv_parallel_for(tp, n_patch, im2col_rows, &ia);
    lv_matmul(tp, &c->patch_h, e->cur, n_patch, e->x + row0 * d, e->xq, bias(&c->patch_b));
    if (qwen) {
        im2col_arg ib = {e, in->img2 ? in->img2 : in->img, e->cur, 0};
        if (in->img2) lv_parallel_for(tp, n_patch, im2col_rows, &ib);
        lv_matmul(tp, &c->patch_h1, e->cur, n_patch, e->q, e->xq, NULL);
        add_rows(e->x, e->q, n_patch * d);
    }
    if (cls) memcpy(e->x, c->class_embd.data, (size_t)d * sizeof(float));
    if (c->pos_embd.data) {
        for (int64_t t = 0; t < N; t++) {
            const uint8_t *row = (const uint8_t *)c->pos_embd.data + t * c->pos_embd.row_bytes;
            lv_to_float_row(c->pos_embd.type, row, e->q, d);
            add_rows(e->x + t * d, e->q, d);
        }
    }
    if (c->pre_ln_w.data) apply_norm(e, &c->pre_ln_w, &c->pre_ln_b, e->x, e->x, N);

    for (int il = 0; il < c->n_block_run; il++) {
        const lv_clip_block *b = &c->blocks[il];
        apply_norm(e, &b->ln1_w, &b->ln1_b, e->x, e->cur, N);
        lv_matmul(tp, &b->q_w, e->cur, N, e->q, e->xq, bias(&b->q_b));
        lv_matmul(tp, &b->k_w, e->cur, N, e->k, e->xq, bias(&b->k_b));
        lv_matmul(tp, &b->v_w, e->cur, N, e->v, e->xq, bias(&b->v_b));
        if (qwen) lv_parallel_for(tp, N, rope2d_rows, e);
        lv_parallel_for(tp, e->H, kv_layout, e);
        const bool windowed = c->n_wa_pattern > 0 && (il + 1) % c->n_wa_pattern != 0;
        attn_run ar = {e, windowed ? e->tasks_win : e->tasks_full};
        lv_parallel_for(tp, windowed ? e->n_tasks_win : e->n_tasks_full, attn_tasks, &ar);
        lv_matmul(tp, &b->o_w, e->att, N, e->cur, e->xq, bias(&b->o_b));
        add_rows(e->x, e->cur, N * d);
        apply_norm(e, &b->ln2_w, &b->ln2_b, e->x, e->cur, N);
        lv_matmul(tp, &b->up_w, e->cur, N, e->up, e->xq, bias(&b->up_b));
        if (b->gate_w.data) {
            lv_matmul(tp, &b->gate_w, e->cur, N, e->gate, e->xq, bias(&b->gate_b));
            lv_swiglu(e->gate, e->up, e->up, N * f);
        } else {
            ffn_act(c, e->up, N * f);
        }
        lv_matmul(tp, &b->down_w, e->up, N, e->cur, e->xq, bias(&b->down_b));
        add_rows(e->x, e->cur, N * d);
    }
    if (c->post_ln_w.data) apply_norm(e, &c->post_ln_w, &c->post_ln_b, e->x, e->x, N);

    /* the projector */
    const float *xin = e->x + row0 * d; /* patch tokens (the class token dropped, as HF does) */
    switch (c->proj) {
    case LV_PROJ_IDEFICS3: {
        /* pixel shuffle: output token (Y, X) concatenates patches (s Y + dy, s X + dx), dy-major,
         * zero where the grid was padded to a multiple of s */
        const int64_t s = c->scale_factor;
        memset(e->proj, 0, (size_t)(proj_rows * proj_cols) * sizeof(float));
        for (int64_t Y = 0; Y < ny; Y++)
            for (int64_t X = 0; X < nx; X++)
                for (int64_t dy = 0; dy < s; dy++)
                    for (int64_t dx = 0; dx < s; dx++) {
                        const int64_t r = s * Y + dy, col = s * X + dx;
                        if (r >= e->gy || col >= e->gx) continue;
                        memcpy(e->proj + (Y * nx + X) * proj_cols + (dy * s + dx) * d, xin + (r * e->gx + col) * d, (size_t)d * sizeof(float));
                    }
        lv_matmul(tp, &c->mm_fc, e->proj, proj_rows, out, e->xq, NULL);
        break;
    }
    case LV_PROJ_QWEN2VL:
    case LV_PROJ_QWEN25VL:
        /* 4 consecutive tokens (one 2x2 block) are one 4d row */
        lv_matmul(tp, &c->mm0_w, xin, proj_rows, e->up, e->xq, bias(&c->mm0_b));
        lv_gelu(e->up, e->up, proj_rows * proj_cols);
        lv_matmul(tp, &c->mm2_w, e->up, proj_rows, out, e->xq, bias(&c->mm2_b));
        break;
    case LV_PROJ_MLP:
        lv_matmul(tp, &c->mm0_w, xin, proj_rows, e->up, e->xq, bias(&c->mm0_b));
        lv_gelu(e->up, e->up, proj_rows * proj_cols);
        lv_matmul(tp, &c->mm2_w, e->up, proj_rows, out, e->xq, bias(&c->mm2_b));
        break;
    default:
        break;
    }
    enc_free(e);
    return LV_OK;
}
