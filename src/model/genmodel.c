/*
 * genmodel.c: writing GGUF models with random weights (`longview gen-model`), for tests and
 * benchmarks of real shapes without downloading weights.
 *
 * The file is what llama.cpp's converter would write for such a model: the architecture's
 * hyper-parameter keys, the tokenizer metadata copied from a vocabulary GGUF (or converted from
 * a tokenizer.json), and every 2-D weight in the requested type (norms and biases stay f32).
 * Weights are N(0, std) (norm weights uniform in [0.9, 1.1]) from a generator seeded per row by
 * (seed, tensor name, row), so the output does not depend on the thread count. The file is
 * written to OUT.tmp and renamed when complete, so a failure never leaves a half-written model.
 */
#include "model/model.h"

#include "core/core.h"
#include "gguf/gguf.h"
#include "gguf/quant.h"
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct preset {
    const char *name;
    const char *arch;
    int32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    float rope_base, eps;
    bool tied, llama3_rope;
    int32_t head_dim;          /* 0: n_embd / n_head */
    int32_t n_swa, swa_pattern; /* gemma3 */
    int32_t ssm_state, ssm_k_heads, ssm_v_heads, full_attn_interval; /* qwen35 */
} preset;

/* the shapes of the published models (their config.json) */
static const preset g_presets[] = {
    {"tiny", "llama", 256, 4, 8, 4, 768, 4096, 10000.0f, 1e-5f, false, false, 0, 0, 0},
    {"smollm2-135m", "llama", 576, 30, 9, 3, 1536, 8192, 100000.0f, 1e-5f, true, false, 0, 0, 0},
    {"qwen2.5-0.5b", "qwen2", 896, 24, 14, 2, 4864, 32768, 1000000.0f, 1e-6f, true, false, 0, 0, 0},
    {"llama3.2-1b", "llama", 2048, 16, 32, 8, 8192, 131072, 500000.0f, 1e-5f, true, true, 0, 0, 0},
    {"qwen3-0.6b", "qwen3", 1024, 28, 16, 8, 3072, 40960, 1000000.0f, 1e-6f, true, false, 128, 0, 0},
    {"smollm3-3b", "smollm3", 2048, 36, 16, 4, 11008, 65536, 5000000.0f, 1e-6f, true, false, 0, 0, 0},
    {"gemma3-270m", "gemma3", 640, 18, 4, 1, 2048, 32768, 1000000.0f, 1e-6f, true, false, 256, 512, 6},
    {"gemma3-1b", "gemma3", 1152, 26, 4, 1, 6912, 32768, 1000000.0f, 1e-6f, true, false, 256, 512, 6},
    {"qwen3.5-0.8b", "qwen35", 1024, 24, 8, 2, 3584, 262144, 10000000.0f, 1e-6f, true, false, 256, 0, 0, 128, 16, 16, 4},
    /* the text models of the vision presets of gen-mmproj */
    {"smolvlm2-256m", "llama", 576, 30, 9, 3, 1536, 8192, 100000.0f, 1e-5f, true, false, 0, 0, 0},
    {"smolvlm2-500m", "llama", 960, 32, 15, 5, 2560, 8192, 100000.0f, 1e-5f, true, false, 0, 0, 0},
    {"qwen2.5-vl-3b", "qwen2vl", 2048, 36, 16, 2, 11008, 128000, 1000000.0f, 1e-6f, true, false, 0, 0, 0},
};
#define PRESET_LIST "tiny, smollm2-135m, qwen2.5-0.5b, llama3.2-1b, qwen3-0.6b, smollm3-3b, gemma3-270m, gemma3-1b, qwen3.5-0.8b, smolvlm2-256m, smolvlm2-500m, qwen2.5-vl-3b"
#define ARCH_LIST "llama, qwen2, qwen3, smollm3, gemma3, qwen35 or qwen2vl"

lv_genmodel_params lv_genmodel_default_params(void) {
    lv_genmodel_params p;
    memset(&p, 0, sizeof(p));
    p.ftype = LV_FTYPE_F32;
    p.seed = 42;
    p.std = 0.02f;
    return p;
}

/* ---- tensor plan ---- */

typedef enum init_kind { INIT_NORMAL, INIT_NORM_WEIGHT, INIT_ROPE_FREQS, INIT_SSM_A, INIT_CONV } init_kind;

typedef struct tplan {
    char name[LV_GGUF_MAX_NAME];
    lv_type type;
    lv_type want; /* the type chosen before llama-quantize's fallback (2-D only) */
    int n_dims;
    int64_t ne[2];
    init_kind init;
} tplan;

typedef struct gen_task {
    const lv_genmodel_params *gp;
    const tplan *t;
    int64_t row0, nrows;
    float *f;        /* (nrows, ne0) floats */
    uint8_t *out;    /* (nrows, row bytes) */
    int64_t row_bytes;
    float std;
    const float *rope_freqs; /* for INIT_ROPE_FREQS */
} gen_task;

static void gen_rows(void *arg, int64_t lo, int64_t hi, int ith) {
    gen_task *g = arg;
    const tplan *t = g->t;
    const int64_t K = t->ne[0];
    const uint64_t base = lv_hash_str(g->gp->seed * 0x100000001b3ull + 0x9e37ull, t->name);
    for (int64_t r = lo; r < hi; r++) {
        float *f = g->f + r * K;
        lv_rng R = {base ^ ((uint64_t)(g->row0 + r) * 0xd1342543de82ef95ull), false, 0};
        for (int64_t i = 0; i < K; i++) {
            switch (t->init) {
            case INIT_NORMAL: f[i] = lv_rng_normal(&R) * g->std; break;
            case INIT_NORM_WEIGHT: f[i] = 0.9f + 0.2f * (float)lv_rng_unit(&R); break;
            case INIT_ROPE_FREQS: f[i] = g->rope_freqs[i]; break;
            case INIT_SSM_A: f[i] = -(0.1f + 0.9f * (float)lv_rng_unit(&R)); break; /* -exp(A_log): decays exp(-0.07)..exp(-0.6) per token */
            case INIT_CONV: f[i] = lv_rng_normal(&R) * 0.25f; break;                 /* a 4-tap filter of real magnitude */
            }
        }
        lv_quantize_row_file(t->type, f, g->out + r * g->row_bytes, K);
    }
}

/* Llama 3.1 rope scaling factors, as llama.cpp's convert_hf_to_gguf.py computes them. */
static void llama3_rope_freqs(float *out, int n_rot, float base) {
    const float factor = 32.0f, low_freq_factor = 1.0f, high_freq_factor = 4.0f, old_ctx = 8192.0f;
    const float low_freq_wavelen = old_ctx / low_freq_factor, high_freq_wavelen = old_ctx / high_freq_factor;
    for (int i = 0; i < n_rot / 2; i++) {
        const double freq = 1.0 / pow((double)base, (2.0 * i) / n_rot);
        const double wavelen = 2.0 * LV_PI / freq;
        double f;
        if (wavelen < high_freq_wavelen) f = 1.0;
        else if (wavelen > low_freq_wavelen) f = factor;
        else {
            const double smooth = (old_ctx / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
            f = 1.0 / ((1 - smooth) / factor + smooth);
        }
        out[i] = (float)f;
    }
}

static lv_type ftype_type(lv_ftype f) {
    switch (f) {
    case LV_FTYPE_F32: return LV_TYPE_F32;
    case LV_FTYPE_F16: return LV_TYPE_F16;
    case LV_FTYPE_BF16: return LV_TYPE_BF16;
    case LV_FTYPE_Q8_0: return LV_TYPE_Q8_0;
    case LV_FTYPE_Q4_0: return LV_TYPE_Q4_0;
    case LV_FTYPE_Q4_1: return LV_TYPE_Q4_1;
    case LV_FTYPE_Q5_0: return LV_TYPE_Q5_0;
    case LV_FTYPE_Q5_1: return LV_TYPE_Q5_1;
    case LV_FTYPE_Q4_K:
    case LV_FTYPE_Q4_K_M: return LV_TYPE_Q4_K;
    case LV_FTYPE_Q5_K: return LV_TYPE_Q5_K;
    case LV_FTYPE_Q6_K: return LV_TYPE_Q6_K;
    case LV_FTYPE_IQ4_NL: return LV_TYPE_IQ4_NL;
    case LV_FTYPE_IQ4_XS: return LV_TYPE_IQ4_XS;
    case LV_FTYPE_Q2_K: return LV_TYPE_Q2_K;
    case LV_FTYPE_Q3_K: return LV_TYPE_Q3_K;
    }
    return LV_TYPE_COUNT;
}

/* llama.cpp's llama_ftype values for general.file_type (a pure K type is written as its _S mixture's id) */
static uint32_t ftype_llama(lv_ftype f) {
    switch (f) {
    case LV_FTYPE_F32: return 0;
    case LV_FTYPE_F16: return 1;
    case LV_FTYPE_Q4_0: return 2;
    case LV_FTYPE_Q4_1: return 3;
    case LV_FTYPE_Q8_0: return 7;
    case LV_FTYPE_Q5_0: return 8;
    case LV_FTYPE_Q5_1: return 9;
    case LV_FTYPE_Q4_K: return 14;
    case LV_FTYPE_Q4_K_M: return 15;
    case LV_FTYPE_Q5_K: return 16;
    case LV_FTYPE_Q6_K: return 18;
    case LV_FTYPE_BF16: return 32;
    case LV_FTYPE_IQ4_NL: return 25;
    case LV_FTYPE_IQ4_XS: return 30;
    case LV_FTYPE_Q2_K: return 10;
    case LV_FTYPE_Q3_K: return 11;
    }
    return 0;
}

/* what a matrix is to llama-quantize's type choice */
typedef enum mat_role { ROLE_OTHER, ROLE_OUTPUT, ROLE_ATTN_V, ROLE_FFN_DOWN } mat_role;

/* llama-quantize's use_more_bits: the first and last eighth of the layers and every third one between */
static bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* The type llama-quantize chooses for one matrix: the requested type, or for Q4_K_M its mixture
 * (output and a tied token_embd in q6_K, or q8_0 if their rows are not a multiple of 256; attn_v
 * and ffn_down of the use_more_bits layers in q6_K). */
static lv_type matrix_type(lv_ftype f, mat_role role, int il, int n_layer, int64_t ncols) {
    lv_type t = ftype_type(f);
    if (f == LV_FTYPE_Q4_K_M) {
        if (role == ROLE_OUTPUT) t = ncols % LV_QK_K == 0 ? LV_TYPE_Q6_K : LV_TYPE_Q8_0;
        else if ((role == ROLE_ATTN_V || role == ROLE_FFN_DOWN) && use_more_bits(il, n_layer)) t = LV_TYPE_Q6_K;
    }
    return t;
}

/* llama-quantize's fallback when the row length ncols is not a multiple of t's block:
 * q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0, iq4_xs -> iq4_nl, q2_K, q3_K -> q4_0, and f16 if even that does not divide. */
static lv_type fallback_type(lv_type t, int64_t ncols) {
    if (ncols % lv_type_get(t)->blck_size == 0) return t;
    lv_type fb = t == LV_TYPE_Q4_K ? LV_TYPE_Q5_0 : t == LV_TYPE_Q5_K ? LV_TYPE_Q5_1 : t == LV_TYPE_Q6_K ? LV_TYPE_Q8_0
               : t == LV_TYPE_IQ4_XS ? LV_TYPE_IQ4_NL : t == LV_TYPE_Q2_K || t == LV_TYPE_Q3_K ? LV_TYPE_Q4_0 : t;
    return ncols % lv_type_get(fb)->blck_size == 0 ? fb : LV_TYPE_F16;
}

/* "builtin:bytes": a SentencePiece-style vocabulary of <unk>, <s>, </s> and the 256 byte tokens
 * <0x00>..<0xFF>: every text tokenizes (byte fallback), and no file is needed.
 * "builtin:bytes-vision": the same 259 tokens, then SmolVLM2's four control tokens (ids 259-262)
 * and "\n\n" (263, a normal token: mtmd looks it up as a whole token for idefics3's image layout and
 * refuses a vocabulary without it), so that its image and video prompts (docs/vision.md,
 * docs/video-questions.md) take one token per marker instead of one per byte, and no
 * SentencePiece space prefix (which would add a U+2581, three byte tokens, after every marker):
 * the vocabulary of the trained video models (docs/train.md). */
static const char *const k_vision_markers[] = {"<fake_token_around_image>", "<global-img>", "<image>", "<end_of_utterance>", "\n\n"};

static lv_status add_builtin_bytes_vocab(lv_gguf_writer *w, bool vision, int64_t *n_vocab) {
    enum { NB = 3 + 256, NM = 5, NMAX = NB + NM };
    static char names[NB][8];
    const char *ptrs[NMAX];
    float scores[NMAX];
    int32_t types[NMAX];
    const int N = vision ? NMAX : NB;
    snprintf(names[0], sizeof(names[0]), "<unk>");
    snprintf(names[1], sizeof(names[1]), "<s>");
    snprintf(names[2], sizeof(names[2]), "</s>");
    for (int i = 0; i < N; i++) {
        if (i >= 3 && i < NB) snprintf(names[i], sizeof(names[i]), "<0x%02X>", i - 3);
        ptrs[i] = i < NB ? names[i] : k_vision_markers[i - NB];
        scores[i] = 0.0f;
        types[i] = i == 0 ? 2 : i < 3 || (i >= NB && i < NMAX - 1) ? 3 : i < NB ? 6 : 1; /* unknown, control, byte, normal */
    }
    bool ok = lv_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama") && lv_gguf_writer_set_str(w, "tokenizer.ggml.pre", "default") &&
              lv_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", ptrs, (uint64_t)N) &&
              lv_gguf_writer_set_arr(w, "tokenizer.ggml.scores", LV_GGUF_FLOAT32, scores, (uint64_t)N) &&
              lv_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", LV_GGUF_INT32, types, (uint64_t)N) &&
              lv_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0) && lv_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1) &&
              lv_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2) && lv_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true) &&
              lv_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false) &&
              (!vision || lv_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", false));
    *n_vocab = N;
    return ok ? LV_OK : LV_ERR_NOMEM;
}

lv_status lv_genmodel_add_vocab(lv_gguf_writer *w, const char *vocab_path, int64_t *n_vocab) {
    if (strcmp(vocab_path, "builtin:bytes") == 0) return add_builtin_bytes_vocab(w, false, n_vocab);
    if (strcmp(vocab_path, "builtin:bytes-vision") == 0) return add_builtin_bytes_vocab(w, true, n_vocab);
    size_t n = strlen(vocab_path);
    if (n >= 5 && strcmp(vocab_path + n - 5, ".json") == 0) return lv_vocab_json_to_gguf(vocab_path, w, n_vocab);
    lv_gguf *vg = NULL;
    lv_status st = lv_gguf_open(vocab_path, &vg);
    if (st != LV_OK) return st;
    int64_t ti = lv_gguf_find_key(vg, "tokenizer.ggml.tokens");
    if (ti < 0 || lv_gguf_kv_type(vg, ti) != LV_GGUF_ARRAY || lv_gguf_arr_type(vg, ti) != LV_GGUF_STRING) {
        lv_gguf_close(vg);
        return lv_error(LV_ERR_FORMAT, "%s: no tokenizer.ggml.tokens array: not a vocabulary file", vocab_path);
    }
    *n_vocab = (int64_t)lv_gguf_arr_n(vg, ti);
    for (int64_t i = 0; i < lv_gguf_n_kv(vg); i++) {
        if (strncmp(lv_gguf_key(vg, i), "tokenizer.", 10) == 0 && !lv_gguf_writer_copy_kv(w, vg, i)) {
            lv_gguf_close(vg);
            return LV_ERR_NOMEM;
        }
    }
    lv_gguf_close(vg);
    return LV_OK;
}

lv_status lv_genmodel_write(const lv_genmodel_params *gp, const char *out_path) {
    /* ---- resolve the shape ---- */
    preset sh = {"custom", gp->arch, 0, 0, 0, 0, 0, 4096, 10000.0f, 1e-5f, false, false, 0, 0, 0, 128, 16, 16, 4};
    if (gp->preset) {
        const preset *pr = NULL;
        for (size_t i = 0; i < LV_ARRAY_LEN(g_presets); i++)
            if (strcmp(g_presets[i].name, gp->preset) == 0) pr = &g_presets[i];
        if (!pr) return lv_error(LV_ERR_INVALID_ARG, "unknown preset '%s' (" PRESET_LIST ")", gp->preset);
        if (gp->arch && strcmp(gp->arch, pr->arch) != 0)
            return lv_error(LV_ERR_INVALID_ARG, "preset '%s' is a %s model, not %s", pr->name, pr->arch, gp->arch);
        sh = *pr;
    }
    if (!sh.arch) return lv_error(LV_ERR_INVALID_ARG, "give --arch (" ARCH_LIST ") or a --preset");
    const bool qwen2vl = strcmp(sh.arch, "qwen2vl") == 0;
    const bool qwen = strcmp(sh.arch, "qwen2") == 0 || qwen2vl, qwen3 = strcmp(sh.arch, "qwen3") == 0, gemma3 = strcmp(sh.arch, "gemma3") == 0;
    const bool qwen35 = strcmp(sh.arch, "qwen35") == 0;
    if (strcmp(sh.arch, "llama") != 0 && !qwen && !qwen3 && strcmp(sh.arch, "smollm3") != 0 && !gemma3 && !qwen35)
        return lv_error(LV_ERR_INVALID_ARG, "unknown architecture '%s' (" ARCH_LIST ")", sh.arch);
    if (gp->n_embd) sh.n_embd = gp->n_embd;
    if (gp->n_layer) sh.n_layer = gp->n_layer;
    if (gp->n_head) sh.n_head = gp->n_head;
    if (gp->n_head_kv) sh.n_head_kv = gp->n_head_kv;
    if (gp->n_ff) sh.n_ff = gp->n_ff;
    if (gp->n_ctx_train) sh.n_ctx = gp->n_ctx_train;
    if (gp->rope_freq_base > 0) sh.rope_base = gp->rope_freq_base;
    if (gp->tied_output) sh.tied = true;
    if (gp->llama3_rope) sh.llama3_rope = true;
    if (gp->head_dim) sh.head_dim = gp->head_dim;
    if (gp->n_swa) sh.n_swa = gp->n_swa < 0 ? 0 : gp->n_swa;
    if (gp->swa_pattern) sh.swa_pattern = gp->swa_pattern;
    if ((gp->n_swa > 0 || gp->swa_pattern) && !gemma3)
        return lv_error(LV_ERR_INVALID_ARG, "a sliding window (--swa, --swa-pattern) is a gemma3 feature, not %s", sh.arch);
    if (gp->ssm_state) sh.ssm_state = gp->ssm_state;
    if (gp->ssm_k_heads) sh.ssm_k_heads = gp->ssm_k_heads;
    if (gp->ssm_v_heads) sh.ssm_v_heads = gp->ssm_v_heads;
    if (gp->full_attn_interval) sh.full_attn_interval = gp->full_attn_interval;
    if ((gp->ssm_state || gp->ssm_k_heads || gp->ssm_v_heads || gp->full_attn_interval) && !qwen35)
        return lv_error(LV_ERR_INVALID_ARG, "recurrent layers (--ssm-state, --ssm-heads, --attn-every) are a qwen35 feature, not %s", sh.arch);
    if (qwen35 && (sh.ssm_state < 8 || sh.ssm_state > 1024 || sh.ssm_state % 8 || sh.ssm_k_heads < 1 || sh.ssm_v_heads < sh.ssm_k_heads ||
                   sh.ssm_v_heads % sh.ssm_k_heads || sh.full_attn_interval < 1 || sh.full_attn_interval > sh.n_layer))
        return lv_error(LV_ERR_INVALID_ARG, "qwen35: --ssm-state %d (a multiple of 8 in [8, 1024]), --ssm-heads %d,%d (value heads a multiple "
                        "of key heads) and --attn-every %d (in [1, layers %d]) are out of range", sh.ssm_state, sh.ssm_k_heads, sh.ssm_v_heads,
                        sh.full_attn_interval, sh.n_layer);
    if (sh.n_embd <= 0 || sh.n_layer <= 0 || sh.n_head <= 0 || sh.n_ff <= 0)
        return lv_error(LV_ERR_INVALID_ARG, "the shape needs --dim, --layers, --heads and --ffn (or a --preset)");
    if (sh.n_head_kv <= 0) sh.n_head_kv = sh.n_head;
    if ((sh.head_dim == 0 && sh.n_embd % sh.n_head != 0) || sh.n_head % sh.n_head_kv != 0)
        return lv_error(LV_ERR_INVALID_ARG, "--dim %d must be a multiple of --heads %d (or give --head-dim), and --heads of --kv-heads %d", sh.n_embd,
                        sh.n_head, sh.n_head_kv);
    const int32_t head_dim = sh.head_dim ? sh.head_dim : sh.n_embd / sh.n_head;
    if (head_dim % 2 != 0 || head_dim > 1024) return lv_error(LV_ERR_INVALID_ARG, "head size %d must be even and at most 1024", head_dim);
    const lv_type wtype = ftype_type(gp->ftype);
    if (wtype == LV_TYPE_COUNT) return lv_error(LV_ERR_INVALID_ARG, "unknown weight type %d", (int)gp->ftype);
    /* the K types fall back to 32-element types for other row lengths, as llama-quantize does */
    const int64_t blk = LV_MIN(lv_type_get(wtype)->blck_size, 32);
    if (sh.n_embd % blk || sh.n_ff % blk || (int64_t)sh.n_head * head_dim % blk)
        return lv_error(LV_ERR_INVALID_ARG, "for %s weights --dim (%d) and --ffn (%d) must be multiples of %lld", lv_type_name(wtype),
                        sh.n_embd, sh.n_ff, (long long)blk);
    if (!gp->vocab_path) return lv_error(LV_ERR_INVALID_ARG, "give --vocab VOCAB.gguf (or tokenizer.json)");
    if (!(gp->std > 0 && gp->std < 10)) return lv_error(LV_ERR_INVALID_ARG, "std %g out of range", (double)gp->std);

    /* ---- metadata ---- */
    lv_status st = LV_ERR_NOMEM;
    lv_gguf_writer *w = lv_gguf_writer_create();
    FILE *f = NULL;
    char *tmp_path = NULL;
    tplan *plan = NULL;
    float *fbuf = NULL;
    uint8_t *obuf = NULL;
    lv_threadpool *tp = NULL;
    if (!w) goto end;
    int64_t n_vocab = 0;
    char key[128], name[128];
#define K(suffix) (snprintf(key, sizeof(key), "%s.%s", sh.arch, suffix), key)
    bool ok = lv_gguf_writer_set_str(w, "general.architecture", sh.arch);
    snprintf(name, sizeof(name), "longview random-weight %s (%s)", sh.name, gp->ftype == LV_FTYPE_Q4_K_M ? "q4_K_M" : lv_type_name(wtype));
    ok = ok && lv_gguf_writer_set_str(w, "general.name", name);
    ok = ok && lv_gguf_writer_set_u32(w, "general.file_type", ftype_llama(gp->ftype));
    ok = ok && lv_gguf_writer_set_u32(w, "general.quantization_version", 2);
    ok = ok && lv_gguf_writer_set_u32(w, K("context_length"), (uint32_t)sh.n_ctx);
    ok = ok && lv_gguf_writer_set_u32(w, K("embedding_length"), (uint32_t)sh.n_embd);
    ok = ok && lv_gguf_writer_set_u32(w, K("block_count"), (uint32_t)sh.n_layer);
    ok = ok && lv_gguf_writer_set_u32(w, K("feed_forward_length"), (uint32_t)sh.n_ff);
    ok = ok && lv_gguf_writer_set_u32(w, K("attention.head_count"), (uint32_t)sh.n_head);
    ok = ok && lv_gguf_writer_set_u32(w, K("attention.head_count_kv"), (uint32_t)sh.n_head_kv);
    ok = ok && lv_gguf_writer_set_f32(w, K("rope.freq_base"), sh.rope_base);
    ok = ok && lv_gguf_writer_set_f32(w, K("attention.layer_norm_rms_epsilon"), sh.eps);
    /* qwen35 rotates a quarter of each head (partial_rotary_factor 0.25), in M-RoPE sections of
     * 11/11/10 per 32 pairs as Qwen3.5's config */
    const int32_t n_rot = qwen35 ? head_dim / 4 : head_dim;
    if (!qwen) ok = ok && lv_gguf_writer_set_u32(w, K("rope.dimension_count"), (uint32_t)n_rot);
    if (qwen2vl) { /* Qwen2-VL's mrope_section [16, 24, 24] per 64 pairs */
        const int32_t pairs = n_rot / 2, s0 = pairs / 4, s1 = (pairs - s0) / 2;
        const int32_t sections[4] = {s0, s1, pairs - s0 - s1, 0};
        ok = ok && lv_gguf_writer_set_arr(w, K("rope.dimension_sections"), LV_GGUF_INT32, sections, 4);
    }
    if (qwen35) {
        const int32_t pairs = n_rot / 2, s2 = pairs * 10 / 32, s1 = (pairs - s2) / 2, s0 = pairs - s2 - s1;
        const int32_t sections[4] = {s0, s1, s2, 0};
        ok = ok && lv_gguf_writer_set_arr(w, K("rope.dimension_sections"), LV_GGUF_INT32, sections, 4);
        ok = ok && lv_gguf_writer_set_u32(w, K("ssm.conv_kernel"), 4);
        ok = ok && lv_gguf_writer_set_u32(w, K("ssm.state_size"), (uint32_t)sh.ssm_state);
        ok = ok && lv_gguf_writer_set_u32(w, K("ssm.group_count"), (uint32_t)sh.ssm_k_heads);
        ok = ok && lv_gguf_writer_set_u32(w, K("ssm.time_step_rank"), (uint32_t)sh.ssm_v_heads);
        ok = ok && lv_gguf_writer_set_u32(w, K("ssm.inner_size"), (uint32_t)(sh.ssm_state * sh.ssm_v_heads));
        ok = ok && lv_gguf_writer_set_u32(w, K("full_attention_interval"), (uint32_t)sh.full_attn_interval);
    }
    if (head_dim * sh.n_head != sh.n_embd || gemma3 || qwen35) {
        ok = ok && lv_gguf_writer_set_u32(w, K("attention.key_length"), (uint32_t)head_dim);
        ok = ok && lv_gguf_writer_set_u32(w, K("attention.value_length"), (uint32_t)head_dim);
    }
    if (gemma3 && sh.n_swa > 0) {
        ok = ok && lv_gguf_writer_set_u32(w, K("attention.sliding_window"), (uint32_t)sh.n_swa);
        if (sh.swa_pattern && sh.swa_pattern != 6)
            ok = ok && lv_gguf_writer_set_u32(w, K("attention.sliding_window_pattern"), (uint32_t)sh.swa_pattern);
    }
    if (!ok) goto end;
    if ((st = lv_genmodel_add_vocab(w, gp->vocab_path, &n_vocab)) != LV_OK) {
        lv_error_prefix("--vocab %s", gp->vocab_path);
        goto end;
    }
    st = LV_ERR_NOMEM;
    if (n_vocab <= 0 || n_vocab > INT32_MAX) {
        st = lv_error(LV_ERR_FORMAT, "--vocab %s: %lld tokens", gp->vocab_path, (long long)n_vocab);
        goto end;
    }
    if (!lv_gguf_writer_set_u32(w, K("vocab_size"), (uint32_t)n_vocab)) goto end;
#undef K

    /* ---- tensors ---- */
    const int64_t E = sh.n_embd, F = sh.n_ff, Q = (int64_t)sh.n_head * head_dim, KV = (int64_t)sh.n_head_kv * head_dim;
    const int64_t max_tensors = 16 + 16 * (int64_t)sh.n_layer;
    plan = lv_calloc((size_t)max_tensors, sizeof(tplan));
    if (!plan) goto end;
    int64_t nt = 0;
#define T2R(nm, a, b, role, il) (snprintf(plan[nt].name, LV_GGUF_MAX_NAME, "%s", nm), plan[nt].n_dims = 2, \
                      plan[nt].want = matrix_type(gp->ftype, role, il, sh.n_layer, a), plan[nt].type = fallback_type(plan[nt].want, a), \
                      plan[nt].ne[0] = (a), plan[nt].ne[1] = (b), plan[nt].init = INIT_NORMAL, nt++)
#define T2(nm, a, b) T2R(nm, a, b, ROLE_OTHER, il)
#define T1(nm, a, kind) (snprintf(plan[nt].name, LV_GGUF_MAX_NAME, "%s", nm), plan[nt].type = LV_TYPE_F32, plan[nt].n_dims = 1, \
                         plan[nt].ne[0] = (a), plan[nt].ne[1] = 1, plan[nt].init = (kind), nt++)
    T2R("token_embd.weight", E, n_vocab, sh.tied ? ROLE_OUTPUT : ROLE_OTHER, 0);
    if (sh.llama3_rope) T1("rope_freqs.weight", head_dim / 2, INIT_ROPE_FREQS);
    for (int32_t il = 0; il < sh.n_layer; il++) {
        char nm[LV_GGUF_MAX_NAME];
#define BLK(suffix) (snprintf(nm, sizeof(nm), "blk.%d.%s", il, suffix), nm)
        T1(BLK("attn_norm.weight"), E, INIT_NORM_WEIGHT);
        if (qwen35) {
            const int64_t Sd = sh.ssm_state, Di = Sd * sh.ssm_v_heads, C = 2 * Sd * sh.ssm_k_heads + Di;
            if ((il + 1) % sh.full_attn_interval != 0) { /* a gated delta-net layer */
                T2(BLK("attn_qkv.weight"), E, C);
                T2(BLK("attn_gate.weight"), E, Di);
                snprintf(plan[nt].name, LV_GGUF_MAX_NAME, "blk.%d.ssm_conv1d.weight", il); /* 2-D, f32 as llama-quantize keeps it */
                plan[nt].type = plan[nt].want = LV_TYPE_F32;
                plan[nt].n_dims = 2;
                plan[nt].ne[0] = 4;
                plan[nt].ne[1] = C;
                plan[nt++].init = INIT_CONV;
                T1(BLK("ssm_dt.bias"), sh.ssm_v_heads, INIT_NORMAL);
                T1(BLK("ssm_a"), sh.ssm_v_heads, INIT_SSM_A);
                T2(BLK("ssm_beta.weight"), E, sh.ssm_v_heads);
                T2(BLK("ssm_alpha.weight"), E, sh.ssm_v_heads);
                T1(BLK("ssm_norm.weight"), Sd, INIT_NORM_WEIGHT);
                T2(BLK("ssm_out.weight"), Di, E);
            } else {                                      /* gated full attention: [q | gate] per head */
                T2(BLK("attn_q.weight"), E, 2 * Q);
                T2(BLK("attn_k.weight"), E, KV);
                T2R(BLK("attn_v.weight"), E, KV, ROLE_ATTN_V, il);
                T1(BLK("attn_q_norm.weight"), head_dim, INIT_NORM_WEIGHT);
                T1(BLK("attn_k_norm.weight"), head_dim, INIT_NORM_WEIGHT);
                T2(BLK("attn_output.weight"), Q, E);
            }
            T1(BLK("post_attention_norm.weight"), E, INIT_NORM_WEIGHT);
            T2(BLK("ffn_gate.weight"), E, F);
            T2(BLK("ffn_up.weight"), E, F);
            T2R(BLK("ffn_down.weight"), F, E, ROLE_FFN_DOWN, il);
            continue;
        }
        T2(BLK("attn_q.weight"), E, Q);
        T2(BLK("attn_k.weight"), E, KV);
        T2R(BLK("attn_v.weight"), E, KV, ROLE_ATTN_V, il);
        if (qwen) {
            T1(BLK("attn_q.bias"), Q, INIT_NORMAL);
            T1(BLK("attn_k.bias"), KV, INIT_NORMAL);
            T1(BLK("attn_v.bias"), KV, INIT_NORMAL);
        }
        if (qwen3 || gemma3) {
            T1(BLK("attn_q_norm.weight"), head_dim, INIT_NORM_WEIGHT);
            T1(BLK("attn_k_norm.weight"), head_dim, INIT_NORM_WEIGHT);
        }
        T2(BLK("attn_output.weight"), Q, E);
        if (gemma3) T1(BLK("post_attention_norm.weight"), E, INIT_NORM_WEIGHT);
        T1(BLK("ffn_norm.weight"), E, INIT_NORM_WEIGHT);
        T2(BLK("ffn_gate.weight"), E, F);
        T2(BLK("ffn_up.weight"), E, F);
        T2R(BLK("ffn_down.weight"), F, E, ROLE_FFN_DOWN, il);
        if (gemma3) T1(BLK("post_ffw_norm.weight"), E, INIT_NORM_WEIGHT);
#undef BLK
    }
    T1("output_norm.weight", E, INIT_NORM_WEIGHT);
    if (!sh.tied) T2R("output.weight", E, n_vocab, ROLE_OUTPUT, 0);
#undef T1
#undef T2
#undef T2R
    /* say which matrices fell back to another type, as llama-quantize does */
    for (int64_t i = 0; i < nt; i++) {
        const tplan *t = &plan[i];
        if (t->n_dims != 2 || t->type == t->want) continue;
        bool first = true;
        for (int64_t j = 0; j < i; j++)
            if (plan[j].n_dims == 2 && plan[j].want == t->want && plan[j].type == t->type && plan[j].ne[0] == t->ne[0]) first = false;
        if (!first) continue;
        int64_t n = 0;
        for (int64_t j = 0; j < nt; j++)
            if (plan[j].n_dims == 2 && plan[j].want == t->want && plan[j].type == t->type && plan[j].ne[0] == t->ne[0]) n++;
        LV_LOG_W("gen-model: %lld %s (e.g. %s) %s rows of %lld elements, not a multiple of %lld: written as %s instead of %s, "
                 "as llama-quantize falls back", (long long)n, n == 1 ? "matrix" : "matrices", t->name, n == 1 ? "has" : "have", (long long)t->ne[0], (long long)lv_type_get(t->want)->blck_size,
                 lv_type_name(t->type), lv_type_name(t->want));
    }
    for (int64_t i = 0; i < nt; i++)
        if (!lv_gguf_writer_add_tensor(w, plan[i].name, plan[i].type, plan[i].n_dims, plan[i].ne)) goto end;

    /* ---- write ---- */
    size_t plen = strlen(out_path) + 5;
    tmp_path = lv_malloc(plen);
    if (!tmp_path) goto end;
    snprintf(tmp_path, plen, "%s.tmp", out_path);
    f = fopen(tmp_path, "wb");
    if (!f) {
        st = lv_error(LV_ERR_IO, "cannot create '%s': %s", tmp_path, strerror(errno));
        goto end;
    }
    if ((st = lv_gguf_writer_write_header(w, f)) != LV_OK) goto end;
    st = LV_ERR_NOMEM;
    const int64_t chunk_rows = 256;
    const int64_t max_k = LV_MAX(LV_MAX(E, F), LV_MAX(Q, (int64_t)n_vocab)) + (qwen35 ? (int64_t)sh.ssm_state * sh.ssm_v_heads : 0);
    fbuf = lv_mallocn((size_t)(chunk_rows * max_k), sizeof(float));
    obuf = lv_mallocn((size_t)(chunk_rows * max_k), 4);
    tp = lv_threadpool_create(0);
    float rope_freqs[1024];
    if (!fbuf || !obuf || !tp) goto end;
    if (sh.llama3_rope) llama3_rope_freqs(rope_freqs, head_dim, sh.rope_base);
    int64_t total = 0, done = 0;
    for (int64_t i = 0; i < nt; i++) total += plan[i].ne[0] * plan[i].ne[1];
    for (int64_t i = 0; i < nt; i++) {
        const tplan *t = &plan[i];
        for (int64_t r0 = 0; r0 < t->ne[1]; r0 += chunk_rows) {
            gen_task g = {gp, t, r0, LV_MIN(chunk_rows, t->ne[1] - r0), fbuf, obuf, lv_row_bytes(t->type, t->ne[0]), gp->std, rope_freqs};
            lv_parallel_for(tp, g.nrows, gen_rows, &g);
            if ((st = lv_gguf_writer_write_data(w, f, obuf, (uint64_t)(g.nrows * g.row_bytes))) != LV_OK) goto end;
            st = LV_ERR_NOMEM;
            done += g.nrows * t->ne[0];
            if (gp->progress) gp->progress((double)done / (double)total, gp->progress_user);
        }
    }
    LV_ASSERT(lv_gguf_writer_complete(w));
    st = lv_file_commit(&f, tmp_path, out_path);
end:
    if (f) fclose(f);
    if (st != LV_OK && tmp_path) remove(tmp_path);
    lv_threadpool_free(tp);
    lv_free(fbuf);
    lv_free(obuf);
    lv_free(plan);
    lv_free(tmp_path);
    lv_gguf_writer_free(w);
    return st;
}
