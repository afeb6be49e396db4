/*
 * genmmproj.c: mmproj files with random weights (`longview gen-mmproj`), at the shapes of the
 * published towers or tiny for tests: the keys and tensors llama.cpp's converters write for the
 * four projector types (docs/vision.md). Matrices N(0, std) in the requested type (a matrix whose
 * rows are not a whole number of blocks stays f16), norm weights near 1, biases N(0, 0.02), conv
 * kernels and position tables f32 as SmolVLM's converter writes them. Rows are seeded by
 * (seed, tensor name, row), so the file does not depend on anything else. Written to OUT.tmp and
 * renamed when complete.
 */
#include "vision/vision.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct mm_preset {
    const char *name;
    lv_proj_type type;
    int32_t d, f, blocks, heads, patch, image, n_text;
    int32_t scale;     /* idefics3 */
    int32_t preproc;   /* idefics3 preproc_image_size, 0 none */
    int32_t n_wa;      /* qwen2.5 */
    int32_t mm_hidden; /* mlp */
} mm_preset;

/* published shapes (their config.json / preprocessor_config.json); the tiny ones for tests */
static const mm_preset g_mm_presets[] = {
    {"smolvlm2-256m", LV_PROJ_IDEFICS3, 768, 3072, 12, 12, 16, 512, 576, 4, 2048, 0, 0},
    {"smolvlm2-500m", LV_PROJ_IDEFICS3, 768, 3072, 12, 12, 16, 512, 960, 4, 2048, 0, 0},
    {"smolvlm2-2.2b", LV_PROJ_IDEFICS3, 1152, 4304, 27, 16, 14, 384, 2048, 3, 1536, 0, 0},
    {"qwen2-vl-2b", LV_PROJ_QWEN2VL, 1280, 5120, 32, 16, 14, 560, 1536, 0, 0, 0, 0},
    {"qwen2.5-vl-3b", LV_PROJ_QWEN25VL, 1280, 3420, 32, 16, 14, 560, 2048, 0, 0, 8, 0},
    {"llava-1.5-7b", LV_PROJ_MLP, 1024, 4096, 23, 16, 14, 336, 4096, 0, 0, 0, 4096},
    {"tiny-idefics3", LV_PROJ_IDEFICS3, 64, 160, 2, 4, 16, 64, 256, 2, 0, 0, 0},
    {"tiny-qwen2vl", LV_PROJ_QWEN2VL, 64, 160, 2, 4, 14, 224, 256, 0, 0, 0, 0},
    {"tiny-qwen25vl", LV_PROJ_QWEN25VL, 64, 160, 3, 4, 14, 224, 256, 0, 0, 2, 0},
    {"tiny-mlp", LV_PROJ_MLP, 64, 160, 3, 4, 14, 56, 256, 0, 0, 0, 192},
};

const char *lv_mmproj_preset_list(void) {
    return "smolvlm2-256m, smolvlm2-500m, smolvlm2-2.2b, qwen2-vl-2b, qwen2.5-vl-3b, llava-1.5-7b, tiny-idefics3, tiny-qwen2vl, "
           "tiny-qwen25vl, tiny-mlp";
}

typedef enum { G_NORMAL, G_NORM_W, G_BIAS } g_init;

typedef struct g_tensor {
    char name[64];
    lv_type type;
    int n_dims;
    int64_t ne[4];
    g_init init;
    float std;
} g_tensor;

static lv_type matrix_type(lv_type want, int64_t ne0) {
    const lv_type_traits *tt = lv_type_get(want);
    return ne0 % tt->blck_size == 0 ? want : LV_TYPE_F16;
}

lv_status lv_genmmproj_write(const char *preset_name, lv_type wtype, int32_t n_text, int32_t preproc, uint64_t seed, float std, const char *out_path) {
    const mm_preset *pr = NULL;
    for (size_t i = 0; i < LV_ARRAY_LEN(g_mm_presets); i++)
        if (strcmp(g_mm_presets[i].name, preset_name) == 0) pr = &g_mm_presets[i];
    if (!pr) return lv_error(LV_ERR_INVALID_ARG, "unknown mmproj preset '%s' (%s)", preset_name, lv_mmproj_preset_list());
    if (wtype != LV_TYPE_F32 && wtype != LV_TYPE_F16 && wtype != LV_TYPE_Q8_0)
        return lv_error(LV_ERR_INVALID_ARG, "mmproj weight type must be f32, f16 or q8_0");
    mm_preset P = *pr;
    if (preproc >= 0 && P.type == LV_PROJ_IDEFICS3) P.preproc = preproc;
    const int32_t nt = n_text > 0 ? n_text : P.n_text;
    const bool qwen = P.type == LV_PROJ_QWEN2VL || P.type == LV_PROJ_QWEN25VL, q25 = P.type == LV_PROJ_QWEN25VL;
    const int64_t d = P.d, f = P.f, p = P.patch;

    lv_gguf_writer *w = lv_gguf_writer_create();
    g_tensor *ts = lv_calloc((size_t)(16 + 20 * P.blocks), sizeof(*ts));
    FILE *fp = NULL;
    char *tmp = NULL;
    float *fb = NULL;
    uint8_t *ob = NULL;
    lv_status st = LV_ERR_NOMEM;
    if (!w || !ts) goto end;

    const uint32_t ftype = wtype == LV_TYPE_F32 ? 0 : wtype == LV_TYPE_F16 ? 1 : 7;
    const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    const float half[3] = {0.5f, 0.5f, 0.5f};
    const bool ok = lv_gguf_writer_set_str(w, "general.architecture", "clip") && lv_gguf_writer_set_str(w, "general.type", "mmproj") &&
                    lv_gguf_writer_set_str(w, "general.name", P.name) && lv_gguf_writer_set_u32(w, "general.file_type", ftype) &&
                    lv_gguf_writer_set_bool(w, "clip.has_vision_encoder", true) &&
                    lv_gguf_writer_set_str(w, "clip.projector_type", lv_proj_type_name(P.type)) &&
                    lv_gguf_writer_set_u32(w, "clip.vision.image_size", (uint32_t)P.image) &&
                    lv_gguf_writer_set_u32(w, "clip.vision.patch_size", (uint32_t)P.patch) &&
                    lv_gguf_writer_set_u32(w, "clip.vision.embedding_length", (uint32_t)P.d) &&
                    lv_gguf_writer_set_u32(w, "clip.vision.feed_forward_length", (uint32_t)P.f) &&
                    lv_gguf_writer_set_u32(w, "clip.vision.block_count", (uint32_t)P.blocks) &&
                    lv_gguf_writer_set_u32(w, "clip.vision.attention.head_count", (uint32_t)P.heads) &&
                    lv_gguf_writer_set_f32(w, "clip.vision.attention.layer_norm_epsilon", q25 ? 1e-6f : 1e-6f) &&
                    lv_gguf_writer_set_u32(w, "clip.vision.projection_dim", (uint32_t)nt) &&
                    lv_gguf_writer_set_arr(w, "clip.vision.image_mean", LV_GGUF_FLOAT32, P.type == LV_PROJ_IDEFICS3 ? half : clip_mean, 3) &&
                    lv_gguf_writer_set_arr(w, "clip.vision.image_std", LV_GGUF_FLOAT32, P.type == LV_PROJ_IDEFICS3 ? half : clip_std, 3) &&
                    lv_gguf_writer_set_bool(w, "clip.use_gelu", P.type == LV_PROJ_IDEFICS3) && lv_gguf_writer_set_bool(w, "clip.use_silu", q25);
    if (!ok) goto end;
    if (P.type == LV_PROJ_IDEFICS3 && !lv_gguf_writer_set_u32(w, "clip.vision.projector.scale_factor", (uint32_t)P.scale)) goto end;
    if (P.preproc && !lv_gguf_writer_set_u32(w, "clip.vision.preproc_image_size", (uint32_t)P.preproc)) goto end;
    if (qwen && !lv_gguf_writer_set_u32(w, "clip.vision.spatial_merge_size", 2)) goto end;
    if (q25 && !lv_gguf_writer_set_u32(w, "clip.vision.n_wa_pattern", (uint32_t)P.n_wa)) goto end;

    int n = 0;
#define ADD(nm, ty, nd, a, b, c, dd, ini)                                                                                                \
    do {                                                                                                                                 \
        g_tensor *t_ = &ts[n++];                                                                                                         \
        snprintf(t_->name, sizeof(t_->name), "%s", (nm));                                                                               \
        t_->type = (ty);                                                                                                                 \
        t_->n_dims = (nd);                                                                                                               \
        t_->ne[0] = (a);                                                                                                                 \
        t_->ne[1] = (b);                                                                                                                 \
        t_->ne[2] = (c);                                                                                                                 \
        t_->ne[3] = (dd);                                                                                                                \
        t_->init = (ini);                                                                                                                \
        t_->std = (ini) == G_BIAS ? 0.02f : std;                                                                                         \
    } while (0)
#define VEC(nm, len, ini) ADD(nm, LV_TYPE_F32, 1, len, 1, 1, 1, ini)
#define MAT(nm, k, rows) ADD(nm, matrix_type(wtype, (k)), 2, k, rows, 1, 1, G_NORMAL)
    const lv_type conv_t = P.type == LV_PROJ_IDEFICS3 ? LV_TYPE_F32 : (wtype == LV_TYPE_F32 ? LV_TYPE_F32 : LV_TYPE_F16);
    ADD("v.patch_embd.weight", conv_t, 4, p, p, 3, d, G_NORMAL);
    if (qwen) ADD("v.patch_embd.weight.1", conv_t, 4, p, p, 3, d, G_NORMAL);
    if (P.type == LV_PROJ_IDEFICS3) VEC("v.patch_embd.bias", d, G_BIAS);
    if (!qwen) {
        const int64_t g = P.image / p;
        ADD("v.position_embd.weight", conv_t, 2, d, g * g, 1, 1, G_NORMAL);
    }
    if (P.type == LV_PROJ_MLP) {
        VEC("v.pre_ln.weight", d, G_NORM_W);
        VEC("v.pre_ln.bias", d, G_BIAS);
    }
    for (int il = 0; il < P.blocks; il++) {
        char nm[64];
#define BLK(s) (snprintf(nm, sizeof(nm), "v.blk.%d.%s", il, (s)), nm)
        VEC(BLK("ln1.weight"), d, G_NORM_W);
        if (!q25) VEC(BLK("ln1.bias"), d, G_BIAS);
        const char *qkvo[4] = {"attn_q", "attn_k", "attn_v", "attn_out"};
        for (int j = 0; j < 4; j++) {
            char s[32];
            snprintf(s, sizeof(s), "%s.weight", qkvo[j]);
            MAT(BLK(s), d, d);
            snprintf(s, sizeof(s), "%s.bias", qkvo[j]);
            VEC(BLK(s), d, G_BIAS);
        }
        VEC(BLK("ln2.weight"), d, G_NORM_W);
        if (!q25) VEC(BLK("ln2.bias"), d, G_BIAS);
        MAT(BLK("ffn_up.weight"), d, f);
        VEC(BLK("ffn_up.bias"), f, G_BIAS);
        if (q25) {
            MAT(BLK("ffn_gate.weight"), d, f);
            VEC(BLK("ffn_gate.bias"), f, G_BIAS);
        }
        MAT(BLK("ffn_down.weight"), f, d);
        VEC(BLK("ffn_down.bias"), d, G_BIAS);
#undef BLK
    }
    if (P.type != LV_PROJ_MLP) {
        VEC("v.post_ln.weight", d, G_NORM_W);
        if (!q25) VEC("v.post_ln.bias", d, G_BIAS);
    }
    if (P.type == LV_PROJ_IDEFICS3) {
        MAT("mm.model.fc.weight", d * P.scale * P.scale, nt);
    } else if (qwen) {
        MAT("mm.0.weight", 4 * d, 4 * d);
        VEC("mm.0.bias", 4 * d, G_BIAS);
        MAT("mm.2.weight", 4 * d, nt);
        VEC("mm.2.bias", nt, G_BIAS);
    } else {
        MAT("mm.0.weight", d, P.mm_hidden);
        VEC("mm.0.bias", P.mm_hidden, G_BIAS);
        MAT("mm.2.weight", P.mm_hidden, nt);
        VEC("mm.2.bias", nt, G_BIAS);
    }
#undef ADD
#undef VEC
#undef MAT
    int64_t max_row = 0;
    for (int i = 0; i < n; i++) {
        if (!lv_gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne)) goto end;
        max_row = LV_MAX(max_row, ts[i].ne[0]);
    }

    const size_t plen = strlen(out_path) + 5;
    if (!(tmp = lv_malloc(plen))) goto end;
    snprintf(tmp, plen, "%s.tmp", out_path);
    if (!(fp = fopen(tmp, "wb"))) {
        st = lv_error(LV_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
        goto end;
    }
    if ((st = lv_gguf_writer_write_header(w, fp)) != LV_OK) goto end;
    st = LV_ERR_NOMEM;
    if (!(fb = lv_mallocn((size_t)max_row, sizeof(float))) || !(ob = lv_mallocn((size_t)max_row, 4))) goto end;
    for (int i = 0; i < n; i++) {
        const g_tensor *t = &ts[i];
        const int64_t K = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3], rb = lv_row_bytes(t->type, K);
        const uint64_t base = lv_hash_str(seed * 0x100000001b3ull + 0x5bd1e995ull, t->name);
        for (int64_t r = 0; r < rows; r++) {
            lv_rng R = {base ^ ((uint64_t)r * 0xd1342543de82ef95ull), false, 0};
            for (int64_t k = 0; k < K; k++)
                fb[k] = t->init == G_NORM_W ? 1.0f + 0.1f * lv_rng_normal(&R) : t->std * lv_rng_normal(&R);
            lv_quantize_row_file(t->type, fb, ob, K);
            if ((st = lv_gguf_writer_write_data(w, fp, ob, (uint64_t)rb)) != LV_OK) goto end;
        }
    }
    st = lv_file_commit(&fp, tmp, out_path);
end:
    if (fp) fclose(fp);
    if (st != LV_OK && tmp) remove(tmp);
    lv_free(tmp);
    lv_free(fb);
    lv_free(ob);
    lv_free(ts);
    lv_gguf_writer_free(w);
    return st;
}
