/*
 * clip.c: the mmproj loader. A `clip`-architecture GGUF (what llama.cpp's mtmd reads, written by
 * its converters) holds a vision tower (`v.*`) and a projector (`mm.*`); this reads the keys and
 * tensors of the four projector types longview runs (idefics3, qwen2vl_merger, qwen2.5vl_merger,
 * mlp) with the checks mtmd makes, and clear errors where mtmd asserts. docs/vision.md.
 */
#include "vision/vision.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    lv_proj_type type;
} g_proj_names[] = {
    {"idefics3", LV_PROJ_IDEFICS3},
    {"qwen2vl_merger", LV_PROJ_QWEN2VL},
    {"qwen2.5vl_merger", LV_PROJ_QWEN25VL},
    {"qwen2.5o", LV_PROJ_QWEN25VL}, /* mtmd maps the omni model's vision side to 2.5-VL */
    {"mlp", LV_PROJ_MLP},
};

const char *lv_proj_type_name(lv_proj_type t) {
    for (size_t i = 0; i < LV_ARRAY_LEN(g_proj_names); i++)
        if (g_proj_names[i].type == t) return g_proj_names[i].name;
    return "none";
}

/* ---- keys: the GGUF value types mtmd's getters assert ---- */

typedef struct reader {
    const lv_gguf *g;
    const char *path;
} reader;

static lv_status key_u32(const reader *r, const char *key, bool required, int32_t lo, int32_t hi, int32_t *out) {
    int64_t i = lv_gguf_find_key(r->g, key);
    if (i < 0) return required ? lv_error(LV_ERR_FORMAT, "%s: key '%s' is missing", r->path, key) : LV_OK;
    if (lv_gguf_kv_type(r->g, i) != LV_GGUF_UINT32)
        return lv_error(LV_ERR_FORMAT, "%s: key '%s' has type %s, expected uint32", r->path, key, lv_gguf_type_name(lv_gguf_kv_type(r->g, i)));
    uint64_t v = 0;
    lv_gguf_get_u64(r->g, i, &v);
    if ((int64_t)v < lo || (int64_t)v > hi)
        return lv_error(LV_ERR_FORMAT, "%s: key '%s' = %llu is out of range [%d, %d]", r->path, key, (unsigned long long)v, lo, hi);
    *out = (int32_t)v;
    return LV_OK;
}

static lv_status key_f32(const reader *r, const char *key, bool required, float *out) {
    int64_t i = lv_gguf_find_key(r->g, key);
    if (i < 0) return required ? lv_error(LV_ERR_FORMAT, "%s: key '%s' is missing", r->path, key) : LV_OK;
    if (lv_gguf_kv_type(r->g, i) != LV_GGUF_FLOAT32)
        return lv_error(LV_ERR_FORMAT, "%s: key '%s' has type %s, expected float32", r->path, key, lv_gguf_type_name(lv_gguf_kv_type(r->g, i)));
    double v = 0;
    lv_gguf_get_f64(r->g, i, &v);
    if (!isfinite(v)) return lv_error(LV_ERR_FORMAT, "%s: key '%s' is not finite", r->path, key);
    *out = (float)v;
    return LV_OK;
}

static lv_status key_bool(const reader *r, const char *key, bool *out) {
    int64_t i = lv_gguf_find_key(r->g, key);
    if (i < 0) return LV_OK;
    if (lv_gguf_kv_type(r->g, i) != LV_GGUF_BOOL)
        return lv_error(LV_ERR_FORMAT, "%s: key '%s' has type %s, expected bool", r->path, key, lv_gguf_type_name(lv_gguf_kv_type(r->g, i)));
    lv_gguf_get_bool(r->g, i, out);
    return LV_OK;
}

/* an f32 array of at least 3 elements (mean / std per channel) */
static lv_status key_rgb(const reader *r, const char *key, float *out) {
    int64_t i = lv_gguf_find_key(r->g, key);
    if (i < 0) return lv_error(LV_ERR_FORMAT, "%s: key '%s' is missing", r->path, key);
    if (lv_gguf_kv_type(r->g, i) != LV_GGUF_ARRAY || lv_gguf_arr_type(r->g, i) != LV_GGUF_FLOAT32 || lv_gguf_arr_n(r->g, i) < 3)
        return lv_error(LV_ERR_FORMAT, "%s: key '%s' must be an array of at least 3 float32", r->path, key);
    for (int c = 0; c < 3; c++) {
        double v = 0;
        lv_gguf_arr_get_f64(r->g, i, (uint64_t)c, &v);
        if (!isfinite(v)) return lv_error(LV_ERR_FORMAT, "%s: key '%s'[%d] is not finite", r->path, key, c);
        out[c] = (float)v;
    }
    return LV_OK;
}

static lv_status key_str(const reader *r, const char *key, bool required, lv_gguf_str *out) {
    int64_t i = lv_gguf_find_key(r->g, key);
    out->ptr = NULL;
    out->len = 0;
    if (i < 0) return required ? lv_error(LV_ERR_FORMAT, "%s: key '%s' is missing", r->path, key) : LV_OK;
    if (lv_gguf_kv_type(r->g, i) != LV_GGUF_STRING)
        return lv_error(LV_ERR_FORMAT, "%s: key '%s' has type %s, expected string", r->path, key, lv_gguf_type_name(lv_gguf_kv_type(r->g, i)));
    *out = lv_gguf_get_str(r->g, i);
    return LV_OK;
}

/* ---- tensors ---- */

/* Bind tensor `name` with the expected ne (n_dims of them; ne[d] < 0: any). Matrices (2-D and
 * more) must have a type longview computes with; vectors must be f32. */
static lv_status bind(const reader *r, lv_tensor *t, const char *name, bool required, int n_dims, int64_t ne0, int64_t ne1, int64_t ne2,
                      int64_t ne3) {
    memset(t, 0, sizeof(*t));
    int64_t i = lv_gguf_find_tensor(r->g, name);
    if (i < 0) return required ? lv_error(LV_ERR_FORMAT, "%s: tensor '%s' is missing", r->path, name) : LV_OK;
    const lv_gguf_tensor *gt = lv_gguf_tensor_at(r->g, i);
    const int64_t want[4] = {ne0, ne1, ne2, ne3};
    bool ok = gt->n_dims <= LV_MAX(n_dims, 1) || n_dims == 0;
    for (int d = 0; d < 4 && ok; d++) ok = want[d] < 0 || gt->ne[d] == (d < n_dims ? want[d] : 1);
    if (!ok)
        return lv_error(LV_ERR_FORMAT, "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld, %lld, %lld] (from the clip.vision.* keys)",
                        r->path, name, (long long)gt->ne[0], (long long)gt->ne[1], (long long)gt->ne[2], (long long)gt->ne[3],
                        (long long)ne0, (long long)(n_dims > 1 ? ne1 : 1), (long long)(n_dims > 2 ? ne2 : 1), (long long)(n_dims > 3 ? ne3 : 1));
    const lv_type_traits *tt = lv_type_get(gt->type);
    if (n_dims == 1 && gt->type != LV_TYPE_F32)
        return lv_error(LV_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s; vectors (norms, biases) must be f32", r->path, name, tt->name);
    if (!tt->computable)
        return lv_error(LV_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, which longview does not compute with", r->path, name, tt->name);
    t->name = gt->name;
    t->type = (lv_type)gt->type;
    for (int d = 0; d < 4; d++) t->ne[d] = gt->ne[d];
    t->row_bytes = lv_row_bytes(t->type, t->ne[0]);
    t->data = gt->data;
    return LV_OK;
}

#define VEC(t, name, req, n) bind(&r, (t), (name), (req), 1, (n), 1, 1, 1)
#define MAT(t, name, req, k, n) bind(&r, (t), (name), (req), 2, (k), (n), 1, 1)

static lv_status bind_block(const reader *rp, lv_clip *c, int il) {
    const reader r = *rp;
    lv_clip_block *b = &c->blocks[il];
    const int64_t d = c->n_embd;
    char n[96];
    lv_status st;
    const bool ln = c->norm == LV_CLIP_LAYERNORM;
#define NAME(s) (snprintf(n, sizeof(n), "v.blk.%d.%s", il, (s)), n)
    if ((st = VEC(&b->ln1_w, NAME("ln1.weight"), true, d)) != LV_OK) return st;
    if ((st = VEC(&b->ln1_b, NAME("ln1.bias"), ln, d)) != LV_OK) return st;
    if ((st = VEC(&b->ln2_w, NAME("ln2.weight"), true, d)) != LV_OK) return st;
    if ((st = VEC(&b->ln2_b, NAME("ln2.bias"), ln, d)) != LV_OK) return st;
    const char *qkvo[4] = {"attn_q", "attn_k", "attn_v", "attn_out"};
    lv_tensor *w[4] = {&b->q_w, &b->k_w, &b->v_w, &b->o_w}, *bias[4] = {&b->q_b, &b->k_b, &b->v_b, &b->o_b};
    for (int j = 0; j < 4; j++) {
        char nm[64];
        snprintf(nm, sizeof(nm), "%s.weight", qkvo[j]);
        if ((st = MAT(w[j], NAME(nm), true, d, d)) != LV_OK) return st;
        snprintf(nm, sizeof(nm), "%s.bias", qkvo[j]);
        if ((st = VEC(bias[j], NAME(nm), c->proj != LV_PROJ_MLP, d)) != LV_OK) return st;
    }
    /* up / down, any shape first: mtmd swaps them when ffn_down's input width is n_embd (files
     * written before the converter's naming was fixed) */
    lv_tensor up, down, upb, downb;
    if ((st = bind(&r, &up, NAME("ffn_up.weight"), true, 2, -1, -1, 1, 1)) != LV_OK) return st;
    if ((st = bind(&r, &down, NAME("ffn_down.weight"), true, 2, -1, -1, 1, 1)) != LV_OK) return st;
    if ((st = bind(&r, &upb, NAME("ffn_up.bias"), false, 1, -1, 1, 1, 1)) != LV_OK) return st;
    if ((st = bind(&r, &downb, NAME("ffn_down.bias"), false, 1, -1, 1, 1, 1)) != LV_OK) return st;
    if (down.ne[0] == d) {
        lv_tensor tmp = up;
        up = down;
        down = tmp;
        tmp = upb;
        upb = downb;
        downb = tmp;
    }
    const int64_t f = c->n_ff;
    if (up.ne[0] != d || up.ne[1] != f || down.ne[0] != f || down.ne[1] != d)
        return lv_error(LV_ERR_FORMAT, "%s: block %d: ffn_up [%lld, %lld] and ffn_down [%lld, %lld] do not match embedding_length %lld and feed_forward_length %lld",
                        c->path, il, (long long)up.ne[0], (long long)up.ne[1], (long long)down.ne[0], (long long)down.ne[1], (long long)d, (long long)f);
    if ((upb.data && upb.ne[0] != f) || (downb.data && downb.ne[0] != d))
        return lv_error(LV_ERR_FORMAT, "%s: block %d: the FFN biases do not match the FFN widths", c->path, il);
    b->up_w = up;
    b->down_w = down;
    b->up_b = upb;
    b->down_b = downb;
    if ((st = MAT(&b->gate_w, NAME("ffn_gate.weight"), false, d, f)) != LV_OK) return st;
    if ((st = VEC(&b->gate_b, NAME("ffn_gate.bias"), false, f)) != LV_OK) return st;
    if (b->gate_w.data && c->act != LV_CLIP_SILU)
        return lv_error(LV_ERR_UNSUPPORTED, "%s: block %d has ffn_gate but the file does not say clip.use_silu (gated GELU is not supported)", c->path, il);
    if (c->proj == LV_PROJ_QWEN25VL && !b->gate_w.data)
        return lv_error(LV_ERR_FORMAT, "%s: block %d: qwen2.5vl_merger blocks need ffn_gate.weight", c->path, il);
#undef NAME
    return LV_OK;
}

/* the conv kernel [p, p, 3, d] viewed as the (3 p p, d) matrix of im2col rows, and its f16 copy */
static lv_tensor as_matrix(lv_tensor t) {
    t.ne[0] = t.ne[0] * t.ne[1] * t.ne[2];
    t.ne[1] = t.ne[3];
    t.ne[2] = t.ne[3] = 1;
    t.row_bytes = lv_row_bytes(t.type, t.ne[0]);
    return t;
}

static lv_status patch_to_f16(lv_clip *c, const lv_tensor *src, lv_tensor *dst, uint16_t *buf) {
    const int64_t K = src->ne[0], N = src->ne[1];
    float *row = lv_mallocn((size_t)K, sizeof(float));
    if (!row) return LV_ERR_NOMEM;
    for (int64_t j = 0; j < N; j++) {
        if (!lv_to_float_row(src->type, (const uint8_t *)src->data + j * src->row_bytes, row, K)) {
            lv_free(row);
            return lv_error(LV_ERR_UNSUPPORTED, "%s: tensor '%s' of type %s cannot be read", c->path, src->name, lv_type_name(src->type));
        }
        for (int64_t i = 0; i < K; i++) buf[j * K + i] = lv_fp32_to_fp16(row[i]);
    }
    lv_free(row);
    *dst = *src;
    dst->type = LV_TYPE_F16;
    dst->row_bytes = lv_row_bytes(LV_TYPE_F16, K);
    dst->data = buf;
    dst->packed = NULL;
    return LV_OK;
}

static lv_status clip_init(lv_clip *c, int64_t n_text_embd) {
    const reader r = {c->gguf, c->path};
    lv_status st;
    lv_gguf_str s;
    if ((st = key_str(&r, "general.architecture", true, &s)) != LV_OK) return st;
    if (s.len != 4 || memcmp(s.ptr, "clip", 4) != 0)
        return lv_error(LV_ERR_FORMAT, "%s: general.architecture is '%.*s', not 'clip': not an mmproj file", c->path, (int)LV_MIN(s.len, 64), s.ptr);
    bool has_vision = false;
    if ((st = key_bool(&r, "clip.has_vision_encoder", &has_vision)) != LV_OK) return st;
    if (!has_vision) return lv_error(LV_ERR_UNSUPPORTED, "%s: clip.has_vision_encoder is absent or false: the file has no vision encoder", c->path);
    if ((st = key_str(&r, "clip.vision.projector_type", false, &s)) != LV_OK) return st;
    if (!s.ptr && (st = key_str(&r, "clip.projector_type", true, &s)) != LV_OK) return st;
    for (size_t i = 0; i < LV_ARRAY_LEN(g_proj_names); i++)
        if (strlen(g_proj_names[i].name) == s.len && memcmp(g_proj_names[i].name, s.ptr, s.len) == 0) c->proj = g_proj_names[i].type;
    if (c->proj == LV_PROJ_NONE)
        return lv_error(LV_ERR_UNSUPPORTED, "%s: projector type '%.*s' is not supported (supported: idefics3, qwen2vl_merger, qwen2.5vl_merger, mlp)",
                        c->path, (int)LV_MIN(s.len, 64), s.ptr);
    const bool qwen = c->proj == LV_PROJ_QWEN2VL || c->proj == LV_PROJ_QWEN25VL;

    if ((st = key_u32(&r, "clip.vision.image_size", true, 1, 8192, &c->image_size)) != LV_OK) return st;
    if ((st = key_u32(&r, "clip.vision.patch_size", true, 1, 1024, &c->patch_size)) != LV_OK) return st;
    if ((st = key_u32(&r, "clip.vision.embedding_length", true, 1, 1 << 16, &c->n_embd)) != LV_OK) return st;
    if ((st = key_u32(&r, "clip.vision.feed_forward_length", true, 1, 1 << 18, &c->n_ff)) != LV_OK) return st;
    if ((st = key_u32(&r, "clip.vision.block_count", true, 1, 1024, &c->n_block)) != LV_OK) return st;
    if ((st = key_u32(&r, "clip.vision.attention.head_count", true, 1, 1024, &c->n_head)) != LV_OK) return st;
    c->d_head = c->n_embd / c->n_head;
    if ((st = key_u32(&r, "clip.vision.attention.head_dim", false, 1, 4096, &c->d_head)) != LV_OK) return st;
    if ((int64_t)c->d_head * c->n_head != c->n_embd)
        return lv_error(LV_ERR_FORMAT, "%s: %d heads of %d do not make the embedding width %d", c->path, c->n_head, c->d_head, c->n_embd);
    if ((st = key_f32(&r, "clip.vision.attention.layer_norm_epsilon", true, &c->eps)) != LV_OK) return st;
    if (!(c->eps >= 0)) return lv_error(LV_ERR_FORMAT, "%s: clip.vision.attention.layer_norm_epsilon is negative", c->path);
    if ((st = key_u32(&r, "clip.vision.projection_dim", false, 1, 1 << 20, &c->proj_dim)) != LV_OK) return st;
    if ((st = key_rgb(&r, "clip.vision.image_mean", c->mean)) != LV_OK) return st;
    if ((st = key_rgb(&r, "clip.vision.image_std", c->std)) != LV_OK) return st;
    for (int k = 0; k < 3; k++)
        if (c->std[k] == 0) return lv_error(LV_ERR_FORMAT, "%s: clip.vision.image_std[%d] is zero", c->path, k);
    bool gelu = false, silu = false;
    if ((st = key_bool(&r, "clip.use_gelu", &gelu)) != LV_OK) return st;
    if ((st = key_bool(&r, "clip.use_silu", &silu)) != LV_OK) return st;
    if (gelu && silu) return lv_error(LV_ERR_FORMAT, "%s: clip.use_gelu and clip.use_silu are both true", c->path);
    c->act = gelu ? LV_CLIP_GELU : silu ? LV_CLIP_SILU : LV_CLIP_QUICK_GELU;
    c->norm = c->proj == LV_PROJ_QWEN25VL ? LV_CLIP_RMSNORM : LV_CLIP_LAYERNORM;
    c->n_block_run = c->proj == LV_PROJ_MLP ? c->n_block - 1 : c->n_block;
    {
        int64_t i = lv_gguf_find_key(c->gguf, "clip.vision.feature_layer");
        if (i >= 0) return lv_error(LV_ERR_UNSUPPORTED, "%s: clip.vision.feature_layer (feature-layer stacking, Granite) is not supported", c->path);
    }

    switch (c->proj) {
    case LV_PROJ_IDEFICS3:
        c->scale_factor = 1;
        if ((st = key_u32(&r, "clip.vision.projector.scale_factor", false, 1, 64, &c->scale_factor)) != LV_OK) return st;
        if (c->scale_factor < 2) return lv_error(LV_ERR_FORMAT, "%s: idefics3 needs clip.vision.projector.scale_factor > 1", c->path);
        if ((st = key_u32(&r, "clip.vision.preproc_image_size", false, 1, 8192 * 4, &c->preproc_image_size)) != LV_OK) return st;
        if (c->image_size % c->patch_size)
            return lv_error(LV_ERR_FORMAT, "%s: image_size %d is not a multiple of patch_size %d", c->path, c->image_size, c->patch_size);
        break;
    case LV_PROJ_QWEN2VL:
    case LV_PROJ_QWEN25VL:
        c->merge = 2;
        if ((st = key_u32(&r, "clip.vision.spatial_merge_size", false, 1, 16, &c->merge)) != LV_OK) return st;
        if (c->merge != 2) return lv_error(LV_ERR_UNSUPPORTED, "%s: spatial_merge_size %d: the Qwen merger is 2x2", c->path, c->merge);
        if ((st = key_u32(&r, "clip.vision.n_wa_pattern", c->proj == LV_PROJ_QWEN25VL, 0, 1024, &c->n_wa_pattern)) != LV_OK) return st;
        c->window_size = 112; /* mtmd's fixed window for qwen2.5vl (it does not read clip.vision.window_size for this type) */
        c->min_tokens = 8;
        c->max_tokens = 4096;
        if (c->d_head % 4) return lv_error(LV_ERR_FORMAT, "%s: head size %d is not a multiple of 4 (2-D RoPE)", c->path, c->d_head);
        break;
    case LV_PROJ_MLP:
        if (c->n_block < 2) return lv_error(LV_ERR_FORMAT, "%s: mlp runs block_count - 1 blocks; block_count is %d", c->path, c->n_block);
        if (c->image_size % c->patch_size)
            return lv_error(LV_ERR_FORMAT, "%s: image_size %d is not a multiple of patch_size %d", c->path, c->image_size, c->patch_size);
        break;
    default:
        break;
    }

    /* tensors */
    const int64_t d = c->n_embd, p = c->patch_size;
    if ((st = bind(&r, &c->patch_w, "v.patch_embd.weight", true, 4, p, p, 3, d)) != LV_OK) return st;
    if ((st = bind(&r, &c->patch_w1, "v.patch_embd.weight.1", qwen, 4, p, p, 3, d)) != LV_OK) return st;
    if ((st = VEC(&c->patch_b, "v.patch_embd.bias", false, d)) != LV_OK) return st;
    if (qwen && c->patch_b.data) return lv_error(LV_ERR_FORMAT, "%s: the Qwen tower has no patch bias", c->path);
    if ((st = VEC(&c->class_embd, "v.class_embd", false, d)) != LV_OK) return st;
    if (c->class_embd.data && c->proj != LV_PROJ_MLP)
        return lv_error(LV_ERR_UNSUPPORTED, "%s: a class embedding is only supported with the mlp projector", c->path);
    if (!qwen) {
        const int64_t g = c->image_size / p, n_pos = g * g + (c->class_embd.data ? 1 : 0);
        if ((st = bind(&r, &c->pos_embd, "v.position_embd.weight", true, 2, d, n_pos, 1, 1)) != LV_OK) return st;
        if (c->pos_embd.type != LV_TYPE_F32 && c->pos_embd.type != LV_TYPE_F16)
            return lv_error(LV_ERR_UNSUPPORTED, "%s: v.position_embd.weight must be f32 or f16", c->path);
    }
    if ((st = VEC(&c->pre_ln_w, "v.pre_ln.weight", false, d)) != LV_OK) return st;
    if ((st = VEC(&c->pre_ln_b, "v.pre_ln.bias", false, d)) != LV_OK) return st;
    if ((st = VEC(&c->post_ln_w, "v.post_ln.weight", false, d)) != LV_OK) return st;
    if ((st = VEC(&c->post_ln_b, "v.post_ln.bias", false, d)) != LV_OK) return st;
    if (c->pre_ln_b.data && !c->pre_ln_w.data) return lv_error(LV_ERR_FORMAT, "%s: v.pre_ln.bias without v.pre_ln.weight", c->path);
    if (c->post_ln_b.data && !c->post_ln_w.data) return lv_error(LV_ERR_FORMAT, "%s: v.post_ln.bias without v.post_ln.weight", c->path);

    c->blocks = lv_calloc((size_t)c->n_block, sizeof(*c->blocks));
    if (!c->blocks) return LV_ERR_NOMEM;
    for (int il = 0; il < c->n_block; il++)
        if ((st = bind_block(&r, c, il)) != LV_OK) return st;

    /* the projector; its output width is what the text model must take */
    int64_t n_out = 0;
    switch (c->proj) {
    case LV_PROJ_IDEFICS3: {
        const int64_t k = d * c->scale_factor * c->scale_factor;
        if ((st = bind(&r, &c->mm_fc, "mm.model.fc.weight", true, 2, k, -1, 1, 1)) != LV_OK) return st;
        n_out = c->mm_fc.ne[1];
        break;
    }
    case LV_PROJ_QWEN2VL:
    case LV_PROJ_QWEN25VL:
        if ((st = MAT(&c->mm0_w, "mm.0.weight", true, 4 * d, 4 * d)) != LV_OK) return st;
        if ((st = VEC(&c->mm0_b, "mm.0.bias", true, 4 * d)) != LV_OK) return st;
        if ((st = bind(&r, &c->mm2_w, "mm.2.weight", true, 2, 4 * d, -1, 1, 1)) != LV_OK) return st;
        n_out = c->mm2_w.ne[1];
        if ((st = VEC(&c->mm2_b, "mm.2.bias", true, n_out)) != LV_OK) return st;
        break;
    case LV_PROJ_MLP:
        if ((st = bind(&r, &c->mm0_w, "mm.0.weight", true, 2, d, -1, 1, 1)) != LV_OK) return st;
        if ((st = VEC(&c->mm0_b, "mm.0.bias", true, c->mm0_w.ne[1])) != LV_OK) return st;
        if ((st = bind(&r, &c->mm2_w, "mm.2.weight", true, 2, c->mm0_w.ne[1], -1, 1, 1)) != LV_OK) return st;
        n_out = c->mm2_w.ne[1];
        if ((st = VEC(&c->mm2_b, "mm.2.bias", true, n_out)) != LV_OK) return st;
        break;
    default:
        break;
    }
    c->n_out = (int32_t)n_out;
    if (n_text_embd > 0 && n_out != n_text_embd)
        return lv_error(LV_ERR_INVALID_ARG, "%s: the projector outputs %lld-wide embeddings but the text model's embedding width is %lld: "
                        "this mmproj file belongs to another model", c->path, (long long)n_out, (long long)n_text_embd);

    /* the patch kernels rounded to f16, as ggml's im2col does */
    const int64_t K = 3 * p * p, n_kern = qwen ? 2 : 1;
    c->patch_f16 = lv_mallocn((size_t)(n_kern * K * d), sizeof(uint16_t));
    if (!c->patch_f16) return LV_ERR_NOMEM;
    lv_tensor m0 = as_matrix(c->patch_w);
    if ((st = patch_to_f16(c, &m0, &c->patch_h, c->patch_f16)) != LV_OK) return st;
    if (qwen) {
        lv_tensor m1 = as_matrix(c->patch_w1);
        if ((st = patch_to_f16(c, &m1, &c->patch_h1, (uint16_t *)c->patch_f16 + K * d)) != LV_OK) return st;
    }
    c->weight_bytes = (int64_t)lv_gguf_file_size(c->gguf) - (int64_t)lv_gguf_data_offset(c->gguf);

    /* the tower's and projector's matrices repacked as the text model's are (q8_0 and q4_0 mmproj
     * weights on CPUs with packed kernels; f16 / f32 are left as they are) */
    lv_tensor **list = lv_calloc((size_t)(3 + 7 * c->n_block), sizeof(*list));
    if (!list) return LV_ERR_NOMEM;
    int64_t n = 0, n_packed = 0;
    for (int32_t i = 0; i < c->n_block; i++) {
        lv_clip_block *b = &c->blocks[i];
        lv_tensor *ts[] = {&b->q_w, &b->k_w, &b->v_w, &b->o_w, &b->up_w, &b->gate_w, &b->down_w};
        for (size_t j = 0; j < LV_ARRAY_LEN(ts); j++) list[n++] = ts[j];
    }
    list[n++] = &c->mm_fc;
    list[n++] = &c->mm0_w;
    list[n++] = &c->mm2_w;
    c->packed = lv_pack_tensors(list, n, c->gguf, c->path, &c->packed_size, &n_packed);
    lv_free(list);
    return LV_OK;
}

static lv_status clip_open(const char *path, const void *data, uint64_t size, int64_t n_text_embd, lv_clip **out) {
    *out = NULL;
    lv_clip *c = lv_calloc(1, sizeof(*c));
    if (!c) return LV_ERR_NOMEM;
    c->path = lv_strdup(path);
    if (!c->path) {
        lv_free(c);
        return LV_ERR_NOMEM;
    }
    lv_status st = data ? lv_gguf_open_memory(data, size, &c->gguf) : lv_gguf_open(path, &c->gguf);
    if (st == LV_OK) st = clip_init(c, n_text_embd);
    if (st != LV_OK) {
        lv_clip_free(c);
        return st;
    }
    *out = c;
    return LV_OK;
}

lv_status lv_clip_load(const char *path, int64_t n_text_embd, lv_clip **out) { return clip_open(path, NULL, 0, n_text_embd, out); }

lv_status lv_clip_load_memory(const void *data, uint64_t size, int64_t n_text_embd, lv_clip **out) {
    return clip_open("<memory>", data, size, n_text_embd, out);
}

void lv_clip_free(lv_clip *c) {
    if (!c) return;
    lv_clip_ws_free(c->ws);
    if (c->gguf) lv_gguf_close(c->gguf);
    lv_big_free(c->packed, c->packed_size);
    lv_free(c->blocks);
    lv_free(c->patch_f16);
    lv_free(c->path);
    lv_free(c);
}

lv_vision_prep lv_clip_prep(const lv_clip *c) {
    lv_vision_prep p = {0};
    p.type = c->proj;
    p.image_size = c->image_size;
    p.patch_size = c->patch_size;
    p.preproc_image_size = c->preproc_image_size;
    p.merge = c->proj == LV_PROJ_IDEFICS3 ? c->scale_factor : c->merge;
    p.min_tokens = 0; /* mtmd's defaults (the user's --image-min-tokens / --image-max-tokens would go here) */
    p.max_tokens = 0;
    return p;
}

static const char *act_name(lv_clip_act a) {
    return a == LV_CLIP_GELU ? "GELU (tanh)" : a == LV_CLIP_SILU ? "SiLU" : "QuickGELU";
}

void lv_clip_describe(const lv_clip *c, char *buf, size_t n) {
    const lv_clip_block *b = &c->blocks[0];
    const char *tower = c->proj == LV_PROJ_IDEFICS3 ? "SigLIP" : c->proj == LV_PROJ_MLP ? "CLIP" : "Qwen ViT";
    int w = snprintf(buf, n,
                     "mmproj %s: projector %s, %s tower: %d blocks (%d run), width %d, %d heads of %d, FFN %d %s%s, %s, eps %g; "
                     "patch %d, input %d px, mean (%.4g, %.4g, %.4g), std (%.4g, %.4g, %.4g); weights %s, %.1f MiB; output width %d",
                     c->path, lv_proj_type_name(c->proj), tower, c->n_block, c->n_block_run, c->n_embd, c->n_head, c->d_head, c->n_ff,
                     act_name(c->act), b->gate_w.data ? " gated" : "", c->norm == LV_CLIP_RMSNORM ? "RMSNorm" : "LayerNorm", (double)c->eps,
                     c->patch_size, c->image_size, (double)c->mean[0], (double)c->mean[1], (double)c->mean[2], (double)c->std[0],
                     (double)c->std[1], (double)c->std[2], lv_type_name(b->q_w.type), (double)c->weight_bytes / 1048576.0, c->n_out);
    if (w < 0 || (size_t)w >= n) return;
    switch (c->proj) {
    case LV_PROJ_IDEFICS3:
        w += snprintf(buf + w, n - (size_t)w, "; pixel shuffle %dx%d -> %d tokens per %d px tile", c->scale_factor, c->scale_factor,
                      (c->image_size / c->patch_size / c->scale_factor) * (c->image_size / c->patch_size / c->scale_factor), c->image_size);
        if (c->preproc_image_size > 0 && w > 0 && (size_t)w < n)
            snprintf(buf + w, n - (size_t)w, ", images resized to a long side of %d px before tiling", c->preproc_image_size);
        break;
    case LV_PROJ_QWEN2VL:
    case LV_PROJ_QWEN25VL:
        snprintf(buf + w, n - (size_t)w, "; 2-D RoPE, 2x2 merger, temporal pairs%s, %d..%d tokens per image", c->n_wa_pattern ? ", window attention" : "",
                 c->min_tokens, c->max_tokens);
        break;
    case LV_PROJ_MLP:
        snprintf(buf + w, n - (size_t)w, "; two-layer MLP, %d tokens per image%s", (c->image_size / c->patch_size) * (c->image_size / c->patch_size),
                 c->class_embd.data ? ", class embedding" : "");
        break;
    default:
        break;
    }
}
