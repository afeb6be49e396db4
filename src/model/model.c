/*
 * model.c: loading a GGUF model: architecture, hyper-parameters (read exactly as llama.cpp's
 * llama_model::load_hparams reads them) and weight binding with shape and type checks.
 *
 * Supported architectures share one tensor layout; what differs is the table below:
 *   llama    Llama 2/3, Mistral, SmolLM/SmolLM2: GQA, RMSNorm, SwiGLU, tied or untied output,
 *            llama3 `rope_freqs`, optional q/k/v biases
 *   qwen2    required q/k/v biases, NEOX RoPE
 *   qwen3    per-head RMSNorm of q and k (attn_q_norm, attn_k_norm) before NEOX RoPE
 *   smollm3  llama with no RoPE on every fourth layer (NoPE)
 *   gemma3   q/k norms, RMSNorm of the attention and FFN outputs (attn_post_norm, ffn_post_norm),
 *            GeGLU (tanh GELU), embeddings scaled by sqrt(n_embd), five sliding-window layers (the
 *            last `sliding_window` positions, RoPE base `rope.freq_base_swa`, 10000) per global one
 *   qwen35   hybrid: of every `full_attention_interval` (4) layers the last is gated full attention
 *            (q projection [q | gate] per head, q/k norms, partial NEOX RoPE over
 *            rope.dimension_count dims: M-RoPE whose sections all see the text position), the
 *            others gated delta-net layers (attn_qkv, attn_gate, ssm_*: a causal convolution and a
 *            recurrent state per head); post_attention_norm is the pre-FFN norm; trailing
 *            nextn_predict_layers (multi-token prediction) are loaded past and not run
 */
#define _GNU_SOURCE
#include "model/model.h"

#include "core/core.h"
#include "kernels/qkernels.h"
#include "kernels/qpack.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *lv_arch_name(lv_arch a) {
    switch (a) {
    case LV_ARCH_LLAMA: return "llama";
    case LV_ARCH_QWEN2: return "qwen2";
    case LV_ARCH_QWEN3: return "qwen3";
    case LV_ARCH_SMOLLM3: return "smollm3";
    case LV_ARCH_GEMMA3: return "gemma3";
    case LV_ARCH_QWEN35: return "qwen35";
    case LV_ARCH_QWEN2VL: return "qwen2vl";
    }
    return "?";
}

typedef struct arch_info {
    const char *name;
    lv_arch arch;
    lv_rope_type rope_type;
    bool qkv_bias_required;
    bool qk_norm;    /* attn_q_norm / attn_k_norm required */
    bool post_norms; /* attn_post_norm / ffn_post_norm required */
} arch_info;

static const arch_info g_archs[] = {
    {"llama", LV_ARCH_LLAMA, LV_ROPE_NORM, false, false, false},
    {"qwen2", LV_ARCH_QWEN2, LV_ROPE_NEOX, true, false, false},
    {"qwen3", LV_ARCH_QWEN3, LV_ROPE_NEOX, false, true, false},
    {"smollm3", LV_ARCH_SMOLLM3, LV_ROPE_NORM, false, false, false},
    {"gemma3", LV_ARCH_GEMMA3, LV_ROPE_NEOX, false, true, true},
    {"qwen35", LV_ARCH_QWEN35, LV_ROPE_NEOX, false, true, false},
    {"qwen2vl", LV_ARCH_QWEN2VL, LV_ROPE_NEOX, true, false, false},
};
#define LV_ARCH_LIST "llama, qwen2, qwen3, smollm3, gemma3, qwen35, qwen2vl"

/* -------------------------------------------------------------------------------------------
 * metadata helpers
 * ----------------------------------------------------------------------------------------- */

typedef struct kv_reader {
    const lv_gguf *g;
    const char *arch;
} kv_reader;

static void arch_key(const kv_reader *r, const char *suffix, char *buf, size_t n) {
    snprintf(buf, n, "%s.%s", r->arch, suffix);
}

/* An unsigned integer key, or (for llama.cpp's get_key_or_arr) an array whose elements are all
 * equal. required: missing is an error. Range [lo, hi]. */
static lv_status get_int(const kv_reader *r, const char *suffix, bool required, int64_t lo, int64_t hi, int64_t *out) {
    char key[256];
    arch_key(r, suffix, key, sizeof(key));
    int64_t i = lv_gguf_find_key(r->g, key);
    if (i < 0) {
        if (required) return lv_error(LV_ERR_FORMAT, "required key '%s' is missing", key);
        return LV_OK;
    }
    int64_t v;
    if (lv_gguf_kv_type(r->g, i) == LV_GGUF_ARRAY) {
        uint64_t n = lv_gguf_arr_n(r->g, i);
        if (n == 0 || !lv_gguf_arr_get_i64(r->g, i, 0, &v))
            return lv_error(LV_ERR_FORMAT, "key '%s' is an empty or non-integer array", key);
        for (uint64_t j = 1; j < n; j++) {
            int64_t w;
            if (!lv_gguf_arr_get_i64(r->g, i, j, &w) || w != v)
                return lv_error(LV_ERR_UNSUPPORTED, "key '%s' varies per layer; only uniform layers are supported", key);
        }
    } else if (!lv_gguf_get_i64(r->g, i, &v)) {
        uint64_t u;
        if (lv_gguf_get_u64(r->g, i, &u)) /* a u64 beyond INT64_MAX */
            return lv_error(LV_ERR_FORMAT, "key '%s' = %llu is outside [%lld, %lld]", key, (unsigned long long)u, (long long)lo, (long long)hi);
        return lv_error(LV_ERR_FORMAT, "key '%s' must be an integer but is %s", key, lv_gguf_type_name(lv_gguf_kv_type(r->g, i)));
    }
    if (v < lo || v > hi)
        return lv_error(LV_ERR_FORMAT, "key '%s' = %lld is outside [%lld, %lld]", key, (long long)v, (long long)lo, (long long)hi);
    *out = v;
    return LV_OK;
}

static lv_status get_float(const kv_reader *r, const char *suffix, bool required, float *out, bool *found) {
    char key[256];
    arch_key(r, suffix, key, sizeof(key));
    int64_t i = lv_gguf_find_key(r->g, key);
    if (found) *found = i >= 0;
    if (i < 0) {
        if (required) return lv_error(LV_ERR_FORMAT, "required key '%s' is missing", key);
        return LV_OK;
    }
    double v;
    if (!lv_gguf_get_f64(r->g, i, &v))
        return lv_error(LV_ERR_FORMAT, "key '%s' must be a number but is %s", key, lv_gguf_type_name(lv_gguf_kv_type(r->g, i)));
    if (!isfinite(v)) return lv_error(LV_ERR_FORMAT, "key '%s' is not finite", key);
    /* an f64 (or an integer) beyond FLT_MAX would become inf as a float */
    if (!isfinite((float)v)) return lv_error(LV_ERR_FORMAT, "key '%s' = %g is out of range for a 32-bit float", key, v);
    *out = (float)v;
    return LV_OK;
}

/* qwen35's keys, as llama_model_qwen35::load_arch_hparams reads them, and which layers are
 * recurrent (full_attention_interval; a per-layer attention.recurrent_layers array is refused) */
/* ARCH.rope.dimension_sections: up to 4 integers (M-RoPE: pairs of t, h, w, e) */
static lv_status read_rope_sections(const kv_reader *r, lv_hparams *hp) {
    char key[256];
    arch_key(r, "rope.dimension_sections", key, sizeof(key));
    int64_t i = lv_gguf_find_key(r->g, key);
    if (i < 0) return lv_error(LV_ERR_FORMAT, "required key '%s' is missing", key);
    if (lv_gguf_kv_type(r->g, i) != LV_GGUF_ARRAY || lv_gguf_arr_n(r->g, i) > 4)
        return lv_error(LV_ERR_FORMAT, "key '%s' must be an array of at most 4 integers", key);
    for (uint64_t j = 0; j < lv_gguf_arr_n(r->g, i); j++) {
        int64_t v;
        if (!lv_gguf_arr_get_i64(r->g, i, j, &v) || v < 0 || v > 1 << 16)
            return lv_error(LV_ERR_FORMAT, "key '%s': element %llu is not an integer in [0, 65536]", key, (unsigned long long)j);
        hp->rope_sections[j] = (int32_t)v;
    }
    return LV_OK;
}

static lv_status read_qwen35(const kv_reader *r, lv_model *m) {
    lv_hparams *hp = &m->hp;
    lv_status st;
    const char *a = r->arch;
    if (hp->n_embd_head_k != hp->n_embd_head_v)
        return lv_error(LV_ERR_FORMAT, "%s.attention.key_length %lld differs from value_length %lld", a, (long long)hp->n_embd_head_k,
                        (long long)hp->n_embd_head_v);
    hp->attn_q_gate = true;
    if ((st = read_rope_sections(r, hp)) != LV_OK) return st;
    char key[256];
    if ((st = get_int(r, "ssm.conv_kernel", true, 2, 64, &hp->ssm_d_conv)) != LV_OK) return st;
    if ((st = get_int(r, "ssm.inner_size", true, 1, 1 << 20, &hp->ssm_d_inner)) != LV_OK) return st;
    if ((st = get_int(r, "ssm.state_size", true, 1, 1024, &hp->ssm_d_state)) != LV_OK) return st;
    if ((st = get_int(r, "ssm.time_step_rank", true, 1, 1 << 12, &hp->ssm_dt_rank)) != LV_OK) return st;
    if ((st = get_int(r, "ssm.group_count", true, 1, 1 << 12, &hp->ssm_n_group)) != LV_OK) return st;
    if (hp->ssm_d_inner % hp->ssm_dt_rank != 0 || hp->ssm_d_inner / hp->ssm_dt_rank != hp->ssm_d_state)
        return lv_error(LV_ERR_FORMAT, "%s.ssm.inner_size %lld must be ssm.time_step_rank %lld value heads of ssm.state_size %lld", a,
                        (long long)hp->ssm_d_inner, (long long)hp->ssm_dt_rank, (long long)hp->ssm_d_state);
    if (hp->ssm_dt_rank % hp->ssm_n_group != 0)
        return lv_error(LV_ERR_FORMAT, "%s.ssm.time_step_rank %lld (value heads) is not a multiple of ssm.group_count %lld (key heads)", a,
                        (long long)hp->ssm_dt_rank, (long long)hp->ssm_n_group);
    arch_key(r, "attention.recurrent_layers", key, sizeof(key));
    if (lv_gguf_find_key(r->g, key) >= 0)
        return lv_error(LV_ERR_UNSUPPORTED, "key '%s' (a per-layer choice of recurrent layers) is not supported; "
                        "full_attention_interval is", key);
    int64_t interval = 4;
    if ((st = get_int(r, "full_attention_interval", false, 1, 4096, &interval)) != LV_OK) return st;
    hp->full_attn_interval = (int32_t)interval;
    /* layer il has attention iff (il + 1) % interval == 0: some layer does iff interval <= n_layer
     * (bind_tensors counts and numbers both kinds) */
    if (interval > hp->n_layer)
        return lv_error(LV_ERR_UNSUPPORTED, "%s.full_attention_interval %lld leaves none of the %lld layers with attention; longview "
                        "needs at least one", a, (long long)interval, (long long)hp->n_layer);
    return LV_OK;
}

static lv_status read_hparams(lv_model *m, const arch_info *ai) {
    kv_reader r = {m->gguf, ai->name};
    lv_hparams *hp = &m->hp;
    lv_status st;
    const int64_t BIG = (int64_t)1 << 31;
    int64_t n_expert = 0;
    if ((st = get_int(&r, "expert_count", false, 0, BIG, &n_expert)) != LV_OK) return st;
    if (n_expert > 0) return lv_error(LV_ERR_UNSUPPORTED, "mixture-of-experts models (%s.expert_count = %lld) are not supported", ai->name, (long long)n_expert);
    if ((st = get_int(&r, "context_length", true, 1, BIG, &hp->n_ctx_train)) != LV_OK) return st;
    if ((st = get_int(&r, "embedding_length", true, 1, 1 << 20, &hp->n_embd)) != LV_OK) return st;
    if ((st = get_int(&r, "block_count", true, 1, 4096, &hp->n_layer)) != LV_OK) return st;
    if ((st = get_int(&r, "nextn_predict_layers", false, 0, hp->n_layer - 1, &hp->n_layer_nextn)) != LV_OK) return st;
    hp->n_layer -= hp->n_layer_nextn; /* the multi-token-prediction layers follow the model's own */
    if ((st = get_int(&r, "feed_forward_length", true, 1, 1 << 22, &hp->n_ff)) != LV_OK) return st;
    if ((st = get_int(&r, "attention.head_count", true, 1, 1 << 16, &hp->n_head)) != LV_OK) return st;
    hp->n_head_kv = hp->n_head;
    if ((st = get_int(&r, "attention.head_count_kv", false, 1, 1 << 16, &hp->n_head_kv)) != LV_OK) return st;
    if (hp->n_head % hp->n_head_kv != 0)
        return lv_error(LV_ERR_FORMAT, "attention.head_count %lld is not a multiple of head_count_kv %lld", (long long)hp->n_head, (long long)hp->n_head_kv);

    hp->n_ctx_orig = hp->n_ctx_train;
    if ((st = get_int(&r, "rope.scaling.original_context_length", false, 1, BIG, &hp->n_ctx_orig)) != LV_OK) return st;
    hp->rope_freq_base = 10000.0f;
    if ((st = get_float(&r, "rope.freq_base", false, &hp->rope_freq_base, NULL)) != LV_OK) return st;
    if (!(hp->rope_freq_base > 0)) return lv_error(LV_ERR_FORMAT, "%s.rope.freq_base must be positive", ai->name);

    hp->rope_scaling = LV_ROPE_SCALING_LINEAR; /* llama.cpp's default */
    {
        char key[256];
        arch_key(&r, "rope.scaling.type", key, sizeof(key));
        int64_t i = lv_gguf_find_key(m->gguf, key);
        if (i >= 0) {
            if (lv_gguf_kv_type(m->gguf, i) != LV_GGUF_STRING) return lv_error(LV_ERR_FORMAT, "key '%s' must be a string", key);
            lv_gguf_str s = lv_gguf_get_str(m->gguf, i);
            if (s.len == 4 && memcmp(s.ptr, "none", 4) == 0) hp->rope_scaling = LV_ROPE_SCALING_NONE;
            else if (s.len == 6 && memcmp(s.ptr, "linear", 6) == 0) hp->rope_scaling = LV_ROPE_SCALING_LINEAR;
            else if (s.len == 4 && memcmp(s.ptr, "yarn", 4) == 0) hp->rope_scaling = LV_ROPE_SCALING_YARN;
            else return lv_error(LV_ERR_UNSUPPORTED, "rope scaling type '%.*s' is not supported (none, linear, yarn are)", (int)LV_MIN(s.len, 64), s.ptr);
        }
    }
    float ropescale = 0.0f;
    bool found = false;
    if ((st = get_float(&r, "rope.scaling.factor", false, &ropescale, &found)) != LV_OK) return st;
    if (!found && (st = get_float(&r, "rope.scale_linear", false, &ropescale, NULL)) != LV_OK) return st;
    if (ropescale < 0) return lv_error(LV_ERR_FORMAT, "rope scaling factor %g is negative", (double)ropescale);
    hp->rope_freq_scale = ropescale == 0.0f ? 1.0f : 1.0f / ropescale;
    if (hp->rope_scaling == LV_ROPE_SCALING_NONE) hp->rope_freq_scale = 1.0f;
    float rope_attn_factor = 1.0f;
    if ((st = get_float(&r, "rope.scaling.attn_factor", false, &rope_attn_factor, NULL)) != LV_OK) return st;
    hp->yarn_beta_fast = 32.0f;
    hp->yarn_beta_slow = 1.0f;
    hp->yarn_ext_factor = hp->rope_scaling == LV_ROPE_SCALING_YARN ? 1.0f : 0.0f;
    hp->yarn_attn_factor = 1.0f;
    if (hp->yarn_ext_factor != 0.0f) {
        /* as llama_context: mscale(factor) cancelled by the 1 + 0.1 ln(factor) that rope_yarn applies */
        const float factor = 1.0f / hp->rope_freq_scale;
        const float mscale = factor <= 1.0f ? 1.0f : 0.1f * logf(factor) + 1.0f;
        hp->yarn_attn_factor = mscale * (1.0f / (1.0f + 0.1f * logf(factor)));
    }
    hp->yarn_attn_factor *= rope_attn_factor;

    hp->n_embd_head_k = hp->n_embd / hp->n_head;
    hp->n_embd_head_v = hp->n_embd / hp->n_head;
    if ((st = get_int(&r, "attention.key_length", false, 1, 1 << 16, &hp->n_embd_head_k)) != LV_OK) return st;
    if ((st = get_int(&r, "attention.value_length", false, 1, 1 << 16, &hp->n_embd_head_v)) != LV_OK) return st;
    if (hp->n_embd_head_k < 1 || hp->n_embd_head_v < 1)
        return lv_error(LV_ERR_FORMAT, "head size %lld/%lld is invalid (%s.embedding_length %lld / attention.head_count %lld, "
                        "no attention.key_length/value_length)", (long long)hp->n_embd_head_k, (long long)hp->n_embd_head_v,
                        ai->name, (long long)hp->n_embd, (long long)hp->n_head);
    hp->n_rot = hp->n_embd_head_k;
    if ((st = get_int(&r, "rope.dimension_count", false, 0, 1 << 16, &hp->n_rot)) != LV_OK) return st;
    if (ai->arch == LV_ARCH_LLAMA && hp->n_rot != hp->n_embd_head_k)
        return lv_error(LV_ERR_FORMAT, "invalid rope.dimension_count %lld, expected %lld", (long long)hp->n_rot, (long long)hp->n_embd_head_k);
    if (hp->n_rot > hp->n_embd_head_k || hp->n_rot % 2 != 0)
        return lv_error(LV_ERR_FORMAT, "rope.dimension_count %lld must be even and at most the head size %lld", (long long)hp->n_rot, (long long)hp->n_embd_head_k);
    if ((st = get_float(&r, "attention.layer_norm_rms_epsilon", true, &hp->norm_rms_eps, NULL)) != LV_OK) return st;
    if (!(hp->norm_rms_eps >= 0)) return lv_error(LV_ERR_FORMAT, "%s.attention.layer_norm_rms_epsilon is negative", ai->name);
    hp->rope_type = ai->rope_type;

    /* per-architecture features, as llama.cpp's load_arch_hparams of each reads them */
    hp->attn_scale = 1.0f / sqrtf((float)hp->n_embd_head_k);
    hp->embd_scale = 1.0f;
    hp->ffn_act = LV_FFN_SILU;
    hp->rope_freq_base_swa = 10000.0f;
    hp->rope_freq_scale_swa = 1.0f;
    if (ai->arch == LV_ARCH_QWEN3 || ai->arch == LV_ARCH_SMOLLM3 || ai->arch == LV_ARCH_GEMMA3) {
        /* their graphs assert one head size and full rotation */
        if (hp->n_embd_head_k != hp->n_embd_head_v)
            return lv_error(LV_ERR_FORMAT, "%s.attention.key_length %lld differs from value_length %lld", ai->name, (long long)hp->n_embd_head_k,
                            (long long)hp->n_embd_head_v);
        if (hp->n_rot != hp->n_embd_head_k)
            return lv_error(LV_ERR_FORMAT, "invalid %s.rope.dimension_count %lld, expected the head size %lld", ai->name, (long long)hp->n_rot,
                            (long long)hp->n_embd_head_k);
    }
    if (ai->arch == LV_ARCH_SMOLLM3) hp->nope_step = 4;
    if (ai->arch == LV_ARCH_QWEN35 && (st = read_qwen35(&r, m)) != LV_OK) return st;
    if (ai->arch == LV_ARCH_QWEN2VL) {
        if ((st = read_rope_sections(&r, hp)) != LV_OK) return st;
        const int64_t sum = (int64_t)hp->rope_sections[0] + hp->rope_sections[1] + hp->rope_sections[2] + hp->rope_sections[3];
        if (sum <= 0 || sum > hp->n_rot / 2)
            return lv_error(LV_ERR_FORMAT, "qwen2vl.rope.dimension_sections sum to %lld; they must cover 1 .. rope.dimension_count / 2 = %lld pairs",
                            (long long)sum, (long long)(hp->n_rot / 2));
        hp->mrope = true;
    }
    if (ai->arch == LV_ARCH_GEMMA3) {
        hp->ffn_act = LV_FFN_GELU;
        hp->attn_scale_on_q = true;
        hp->embd_scale = sqrtf((float)hp->n_embd);
        /* gemma_pytorch's query scale: the head size, except the 27B (62 layers) uses n_embd / n_head */
        if (hp->n_layer == 62) hp->attn_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));
        int64_t n_swa = 0, period = 6;
        if ((st = get_int(&r, "attention.sliding_window", false, 0, BIG, &n_swa)) != LV_OK) return st;
        if (n_swa > 0) {
            if ((st = get_int(&r, "attention.sliding_window_pattern", false, 0, 4096, &period)) != LV_OK) return st;
            if ((st = get_float(&r, "rope.freq_base_swa", false, &hp->rope_freq_base_swa, NULL)) != LV_OK) return st;
            if (!(hp->rope_freq_base_swa > 0)) return lv_error(LV_ERR_FORMAT, "%s.rope.freq_base_swa must be positive", ai->name);
            hp->n_swa = n_swa;
            hp->swa_period = (int32_t)period;
        }
        if ((st = get_float(&r, "final_logit_softcapping", false, &hp->final_softcap, NULL)) != LV_OK) return st;
        if (hp->final_softcap < 0) return lv_error(LV_ERR_FORMAT, "%s.final_logit_softcapping is negative", ai->name);
    }
    return LV_OK;
}

/* -------------------------------------------------------------------------------------------
 * tensor binding
 * ----------------------------------------------------------------------------------------- */

typedef struct binder {
    lv_model *m;
    uint8_t *used; /* (n_tensors) */
} binder;

/* Bind a tensor by name with an expected shape: n_dims 1 (ne0) or 2 (ne0, ne1). A 2-D weight
 * must have a type longview computes with; a 1-D tensor must be F32. */
static lv_status bind(binder *b, lv_tensor *t, const char *name, int want_dims, int64_t ne0, int64_t ne1, bool required) {
    LV_ASSERT(want_dims == 1 || want_dims == 2);
    memset(t, 0, sizeof(*t));
    int64_t i = lv_gguf_find_tensor(b->m->gguf, name);
    if (i < 0) {
        if (required) return lv_error(LV_ERR_FORMAT, "tensor '%s' is missing", name);
        return LV_OK;
    }
    const lv_gguf_tensor *gt = lv_gguf_tensor_at(b->m->gguf, i);
    b->used[i] = 1;
    if (gt->n_dims != want_dims || gt->ne[0] != ne0 || (want_dims == 2 && gt->ne[1] != ne1)) {
        /* the keys the expected shape comes from, so a file whose keys disagree with its tensors
         * names them */
        const char *a = lv_arch_name(b->m->arch);
        const lv_hparams *hp = &b->m->hp;
        char keys[512];
        snprintf(keys, sizeof(keys), "the shape follows the keys %s.embedding_length = %lld, %s.feed_forward_length = %lld, "
                 "%s.attention.head_count = %lld, %s.attention.head_count_kv = %lld, %s.attention.key_length = %lld, "
                 "%s.attention.value_length = %lld and the vocabulary's %lld tokens", a, (long long)hp->n_embd, a, (long long)hp->n_ff, a,
                 (long long)hp->n_head, a, (long long)hp->n_head_kv, a, (long long)hp->n_embd_head_k, a, (long long)hp->n_embd_head_v,
                 (long long)hp->n_vocab);
        if (want_dims == 2)
            return lv_error(LV_ERR_FORMAT, "tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]: %s", name,
                            (long long)gt->ne[0], (long long)gt->ne[1], (long long)gt->ne[2], (long long)gt->ne[3],
                            (long long)ne0, (long long)ne1, keys);
        return lv_error(LV_ERR_FORMAT, "tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld]: %s", name,
                        (long long)gt->ne[0], (long long)gt->ne[1], (long long)gt->ne[2], (long long)gt->ne[3], (long long)ne0, keys);
    }
    const lv_type_traits *tt = lv_type_get(gt->type);
    if (want_dims == 1 && gt->type != LV_TYPE_F32)
        return lv_error(LV_ERR_UNSUPPORTED, "tensor '%s' has type %s; 1-D tensors must be f32", name, tt->name);
    if (!tt->computable)
        return lv_error(LV_ERR_UNSUPPORTED, "tensor '%s' has type %s, which longview does not support yet (supported: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K, q3_K, q4_K, q5_K, q6_K, iq4_nl, iq4_xs)",
                        name, tt->name);
    t->name = gt->name;
    t->type = (lv_type)gt->type;
    for (int d = 0; d < 4; d++) t->ne[d] = gt->ne[d];
    t->row_bytes = lv_row_bytes(t->type, t->ne[0]);
    t->data = gt->data;
    return LV_OK;
}

/* One qwen35 layer after its attn_norm: a gated full-attention layer or a gated delta-net layer
 * (shapes as llama_model_qwen35::load_arch_tensors), then post_attention_norm (the pre-FFN norm,
 * bound as ffn_norm) and the SwiGLU FFN. */
static lv_status bind_qwen35_layer(binder *b, lv_model *m, int64_t il) {
    const lv_hparams *hp = &m->hp;
    lv_layer *L = &m->layers[il];
    const int64_t E = hp->n_embd, D = hp->n_embd_head_k;
    char name[LV_GGUF_MAX_NAME + 16];
    lv_status st;
#define B(field, suffix, nd, a, c)                                              \
    do {                                                                        \
        snprintf(name, sizeof(name), "blk.%lld." suffix, (long long)il);        \
        if ((st = bind(b, &L->field, name, nd, a, c, true)) != LV_OK) return st; \
    } while (0)
    L->recurrent = lv_hp_layer_recr(hp, il);
    if (!L->recurrent) {
        B(wq, "attn_q.weight", 2, E, 2 * D * hp->n_head); /* [q | gate] per head */
        B(wk, "attn_k.weight", 2, E, D * hp->n_head_kv);
        B(wv, "attn_v.weight", 2, E, D * hp->n_head_kv);
        B(wo, "attn_output.weight", 2, D * hp->n_head, E);
        B(q_norm, "attn_q_norm.weight", 1, D, 0);
        B(k_norm, "attn_k_norm.weight", 1, D, 0);
    } else {
        const int64_t conv_dim = lv_hp_ssm_conv_dim(hp), Hv = hp->ssm_dt_rank;
        B(wqkv, "attn_qkv.weight", 2, E, conv_dim);
        B(wqkv_gate, "attn_gate.weight", 2, E, hp->ssm_d_inner);
        B(ssm_conv1d, "ssm_conv1d.weight", 2, hp->ssm_d_conv, conv_dim);
        if (L->ssm_conv1d.type != LV_TYPE_F32)
            return lv_error(LV_ERR_UNSUPPORTED, "tensor '%s' has type %s; the convolution must be f32", name, lv_type_name(L->ssm_conv1d.type));
        B(ssm_dt, "ssm_dt.bias", 1, Hv, 0);
        B(ssm_a, "ssm_a", 1, Hv, 0);
        B(ssm_beta, "ssm_beta.weight", 2, E, Hv);
        B(ssm_alpha, "ssm_alpha.weight", 2, E, Hv);
        B(ssm_norm, "ssm_norm.weight", 1, hp->ssm_d_state, 0);
        B(ssm_out, "ssm_out.weight", 2, hp->ssm_d_inner, E);
    }
    B(ffn_norm, "post_attention_norm.weight", 1, E, 0);
    B(ffn_gate, "ffn_gate.weight", 2, E, hp->n_ff);
    B(ffn_up, "ffn_up.weight", 2, E, hp->n_ff);
    B(ffn_down, "ffn_down.weight", 2, hp->n_ff, E);
#undef B
    return LV_OK;
}

static lv_status bind_tensors(lv_model *m, const arch_info *ai) {
    const lv_hparams *hp = &m->hp;
    const int64_t n_tensors = lv_gguf_n_tensors(m->gguf);
    binder b = {m, lv_calloc((size_t)(n_tensors ? n_tensors : 1), 1)};
    if (!b.used) return LV_ERR_NOMEM;
    lv_status st;
    const int64_t E = hp->n_embd, V = hp->n_vocab;
    const int64_t q_dim = hp->n_head * hp->n_embd_head_k;
    const int64_t k_dim = hp->n_head_kv * hp->n_embd_head_k;
    const int64_t v_dim = hp->n_head_kv * hp->n_embd_head_v;
    const int64_t o_dim = hp->n_head * hp->n_embd_head_v;
    char name[LV_GGUF_MAX_NAME + 16];

    if ((st = bind(&b, &m->tok_embd, "token_embd.weight", 2, E, V, true)) != LV_OK) goto end;
    if ((st = bind(&b, &m->output_norm, "output_norm.weight", 1, E, 0, true)) != LV_OK) goto end;
    if ((st = bind(&b, &m->output, "output.weight", 2, E, V, false)) != LV_OK) goto end;
    if (!m->output.data) {
        m->output = m->tok_embd;
        m->tied_output = true;
    }
    if ((st = bind(&b, &m->rope_freqs, "rope_freqs.weight", 1, hp->n_rot / 2, 0, false)) != LV_OK) goto end;

    m->layers = lv_calloc((size_t)hp->n_layer, sizeof(lv_layer));
    if (!m->layers) {
        st = LV_ERR_NOMEM;
        goto end;
    }
    for (int64_t il = 0; il < hp->n_layer; il++) {
        lv_layer *L = &m->layers[il];
#define BIND(field, suffix, nd, a, c, req)                                              \
    do {                                                                                \
        snprintf(name, sizeof(name), "blk.%lld." suffix, (long long)il);                \
        if ((st = bind(&b, &L->field, name, nd, a, c, req)) != LV_OK) goto end;         \
    } while (0)
        BIND(attn_norm, "attn_norm.weight", 1, E, 0, true);
        if (ai->arch == LV_ARCH_QWEN35) {
            if ((st = bind_qwen35_layer(&b, m, il)) != LV_OK) goto end;
            continue;
        }
        BIND(wq, "attn_q.weight", 2, E, q_dim, true);
        BIND(wk, "attn_k.weight", 2, E, k_dim, true);
        BIND(wv, "attn_v.weight", 2, E, v_dim, true);
        BIND(wo, "attn_output.weight", 2, o_dim, E, true);
        BIND(bq, "attn_q.bias", 1, q_dim, 0, ai->qkv_bias_required);
        BIND(bk, "attn_k.bias", 1, k_dim, 0, ai->qkv_bias_required);
        BIND(bv, "attn_v.bias", 1, v_dim, 0, ai->qkv_bias_required);
        BIND(bo, "attn_output.bias", 1, E, 0, false);
        if (ai->qk_norm) {
            BIND(q_norm, "attn_q_norm.weight", 1, hp->n_embd_head_k, 0, true);
            BIND(k_norm, "attn_k_norm.weight", 1, hp->n_embd_head_k, 0, true);
        }
        if (ai->post_norms) {
            BIND(attn_post_norm, "post_attention_norm.weight", 1, E, 0, true);
            BIND(ffn_post_norm, "post_ffw_norm.weight", 1, E, 0, true);
        }
        BIND(ffn_norm, "ffn_norm.weight", 1, E, 0, true);
        BIND(ffn_gate, "ffn_gate.weight", 2, E, hp->n_ff, true);
        BIND(ffn_up, "ffn_up.weight", 2, E, hp->n_ff, true);
        BIND(ffn_down, "ffn_down.weight", 2, hp->n_ff, E, true);
#undef BIND
    }
    /* attention layers index the KV cache, recurrent layers the state store, each in order */
    m->n_attn_layers = m->n_recr_layers = 0;
    for (int64_t il = 0; il < hp->n_layer; il++) m->layers[il].kv_layer = m->layers[il].recurrent ? m->n_recr_layers++ : m->n_attn_layers++;
    /* the multi-token-prediction layers after the model's own are not run */
    for (int64_t i = 0; i < n_tensors && hp->n_layer_nextn > 0; i++) {
        long long il;
        if (sscanf(lv_gguf_tensor_at(m->gguf, i)->name, "blk.%lld.", &il) == 1 && il >= hp->n_layer && il < hp->n_layer + hp->n_layer_nextn)
            b.used[i] = 1;
    }
    int64_t n_unused = 0, first_unused = -1;
    for (int64_t i = 0; i < n_tensors; i++) {
        if (!b.used[i]) {
            if (first_unused < 0) first_unused = i;
            n_unused++;
        }
    }
    if (n_unused > 0) {
        st = lv_error(LV_ERR_UNSUPPORTED, "tensor '%s' is not used by the %s architecture (%lld unexpected tensor%s): "
                      "a different model variant?", lv_gguf_tensor_at(m->gguf, first_unused)->name, ai->name,
                      (long long)n_unused, n_unused == 1 ? "" : "s");
        goto end;
    }
    st = LV_OK;
end:
    lv_free(b.used);
    return st;
}

/* -------------------------------------------------------------------------------------------
 * load
 * ----------------------------------------------------------------------------------------- */

lv_model_params lv_model_default_params(void) {
    lv_model_params p;
    memset(&p, 0, sizeof(p));
    p.use_mmap = true;
    return p;
}

static lv_status read_whole_file(const char *path, void **out, uint64_t *size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lv_error(LV_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return lv_error(LV_ERR_IO, "'%s' is not a readable regular file", path);
    }
    uint64_t n = (uint64_t)sb.st_size;
    uint8_t *buf = lv_aligned_alloc(64, (size_t)(n ? n : 1));
    if (!buf) {
        close(fd);
        return LV_ERR_NOMEM;
    }
    uint64_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, (size_t)LV_MIN(n - got, (uint64_t)1 << 30));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            close(fd);
            lv_aligned_free(buf);
            return lv_error(LV_ERR_IO, "reading '%s': %s", path, r < 0 ? strerror(e) : "unexpected end of file");
        }
        got += (uint64_t)r;
    }
    close(fd);
    *out = buf;
    *size = n;
    return LV_OK;
}

/* Repack the matrix weights this CPU has packed kernels for (qpack.h: q4_0, q5_0, q8_0 and q4_K with
 * AVX-512 VNNI or AVX2, rows a multiple of 16) into one buffer, and let the kernel drop the mapped pages
 * they came from, so resident memory does not grow (q4_K: by 2.8%, its scales unpacked; a file
 * read into memory, or an image given by the caller, keeps both). Off with LV_REPACK=0, or when
 * LV_SIMD caps the level below the kernels'. Running out of memory here is not an error: the
 * weights stay as they are. */
static void pack_weights(lv_model *m) {
    lv_tensor **list = lv_calloc((size_t)(1 + 12 * m->hp.n_layer), sizeof(*list));
    int64_t n = 0, packed = 0;
    if (!list) return;
    list[n++] = &m->output;
    for (int64_t il = 0; il < m->hp.n_layer; il++) {
        lv_layer *L = &m->layers[il];
        lv_tensor *ts[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_gate, &L->ffn_up, &L->ffn_down,
                           &L->wqkv, &L->wqkv_gate, &L->ssm_beta, &L->ssm_alpha, &L->ssm_out};
        for (size_t i = 0; i < LV_ARRAY_LEN(ts); i++) list[n++] = ts[i];
    }
    m->packed = lv_pack_tensors(list, n, m->gguf, m->path, &m->packed_size, &packed);
    lv_free(list);
}

/* Everything after the GGUF is open: architecture, vocabulary, hyper-parameters, weights.
 * Messages are prefixed with m->path. */
static lv_status model_init(lv_model *m, lv_model_params params) {
    const char *path = m->path;
    lv_status st;
    /* architecture */
    const arch_info *ai = NULL;
    {
        int64_t i = lv_gguf_find_key(m->gguf, "general.architecture");
        if (i < 0 || lv_gguf_kv_type(m->gguf, i) != LV_GGUF_STRING) {
            if (!params.vocab_only)
                return lv_error(LV_ERR_FORMAT, "%s: key 'general.architecture' is missing or not a string", path);
        } else {
            lv_gguf_str s = lv_gguf_get_str(m->gguf, i);
            for (size_t k = 0; k < LV_ARRAY_LEN(g_archs); k++)
                if (strlen(g_archs[k].name) == s.len && memcmp(g_archs[k].name, s.ptr, s.len) == 0) ai = &g_archs[k];
            if (!ai && !params.vocab_only)
                return lv_error(LV_ERR_UNSUPPORTED, "%s: architecture '%.*s' is not supported (supported: " LV_ARCH_LIST ")", path,
                                (int)LV_MIN(s.len, 64), s.ptr);
        }
    }
    if (ai) m->arch = ai->arch;

    /* vocabulary */
    if ((st = lv_vocab_load(m->gguf, &m->vocab)) != LV_OK) {
        if (!params.vocab_only && st == LV_ERR_FORMAT && lv_gguf_find_key(m->gguf, "tokenizer.ggml.model") < 0) {
            /* no tokenizer at all: allowed for a weights-only model (token ids in, logits out) */
            m->vocab = NULL;
            lv_error_clear();
        } else {
            lv_error_prefix("%s: tokenizer", path);
            return st;
        }
    }
    if (params.vocab_only) return LV_OK;

    if ((st = read_hparams(m, ai)) != LV_OK) {
        lv_error_prefix("%s", path);
        return st;
    }
    /* n_vocab: the tokenizer's size, else token_embd's rows */
    {
        int64_t ti = lv_gguf_find_tensor(m->gguf, "token_embd.weight");
        if (ti < 0) return lv_error(LV_ERR_FORMAT, "%s: tensor 'token_embd.weight' is missing", path);
        m->hp.n_vocab = m->vocab ? lv_vocab_n_tokens(m->vocab) : lv_gguf_tensor_at(m->gguf, ti)->ne[1];
        if (m->hp.n_vocab <= 0 || m->hp.n_vocab > INT32_MAX)
            return lv_error(LV_ERR_FORMAT, "%s: vocabulary size %lld is invalid", path, (long long)m->hp.n_vocab);
    }
    if ((st = bind_tensors(m, ai)) != LV_OK) {
        lv_error_prefix("%s", path);
        return st;
    }
    pack_weights(m);
    return LV_OK;
}

/* "step N of M" when the file is a checkpoint `longview train` wrote before the end of its
 * schedule (key longview.training.checkpoint) */
static bool checkpoint_of(const lv_model *m, char *buf, size_t size) {
    const int64_t i = lv_gguf_find_key(m->gguf, "longview.training.checkpoint");
    if (i < 0 || lv_gguf_kv_type(m->gguf, i) != LV_GGUF_STRING) return false;
    const lv_gguf_str v = lv_gguf_get_str(m->gguf, i);
    snprintf(buf, size, "%.*s", (int)LV_MIN(v.len, size - 1), v.ptr);
    return true;
}

lv_status lv_model_load(const char *path, lv_model_params params, lv_model **out) {
    *out = NULL;
    lv_model *m = lv_calloc(1, sizeof(*m));
    if (!m) return LV_ERR_NOMEM;
    lv_status st;
    m->path = lv_strdup(path);
    m->vocab_only = params.vocab_only;
    if (!m->path) {
        st = LV_ERR_NOMEM;
        goto fail;
    }
    if (params.use_mmap) {
        st = lv_gguf_open(path, &m->gguf);
    } else {
        uint64_t size = 0;
        st = read_whole_file(path, &m->file_copy, &size);
        if (st == LV_OK) {
            st = lv_gguf_open_memory(m->file_copy, size, &m->gguf);
            if (st != LV_OK) lv_error_prefix("%s", path);
        }
    }
    if (st != LV_OK || (st = model_init(m, params)) != LV_OK) goto fail;
    char ck[64];
    if (!params.vocab_only && checkpoint_of(m, ck, sizeof(ck)))
        LV_LOG_W("%s is a training checkpoint (%s), not a finished model: longview train --resume continues it", path, ck);
    *out = m;
    return LV_OK;

fail:
    lv_model_free(m);
    return st;
}

lv_status lv_model_load_memory(const void *data, uint64_t size, lv_model_params params, lv_model **out) {
    *out = NULL;
    lv_model *m = lv_calloc(1, sizeof(*m));
    if (!m) return LV_ERR_NOMEM;
    lv_status st;
    m->path = lv_strdup("<memory>");
    m->vocab_only = params.vocab_only;
    if (!m->path) {
        st = LV_ERR_NOMEM;
        goto fail;
    }
    if ((st = lv_gguf_open_memory(data, size, &m->gguf)) != LV_OK) {
        lv_error_prefix("%s", m->path);
        goto fail;
    }
    if ((st = model_init(m, params)) != LV_OK) goto fail;
    *out = m;
    return LV_OK;

fail:
    lv_model_free(m);
    return st;
}

void lv_model_free(lv_model *m) {
    if (!m) return;
    lv_vocab_free(m->vocab);
    lv_free(m->layers);
    lv_big_free(m->packed, m->packed_size);
    lv_gguf_close(m->gguf);
    lv_aligned_free(m->file_copy);
    lv_free(m->path);
    lv_free(m);
}

const lv_vocab *lv_model_vocab(const lv_model *model) { return model->vocab; }

int32_t lv_model_n_vocab(const lv_model *m) {
    if (m->vocab_only) return m->vocab ? lv_vocab_n_tokens(m->vocab) : 0;
    return (int32_t)m->hp.n_vocab;
}
int32_t lv_model_n_ctx_train(const lv_model *m) { return (int32_t)LV_MIN(m->hp.n_ctx_train, INT32_MAX); }
int32_t lv_model_n_embd(const lv_model *m) { return (int32_t)m->hp.n_embd; }
int32_t lv_model_n_pos_per_token(const lv_model *m) { return m->hp.mrope ? 4 : 1; }
int32_t lv_model_n_layer(const lv_model *m) { return (int32_t)m->hp.n_layer; }
int32_t lv_model_n_head(const lv_model *m) { return (int32_t)m->hp.n_head; }
int32_t lv_model_n_head_kv(const lv_model *m) { return (int32_t)m->hp.n_head_kv; }
const char *lv_model_arch(const lv_model *m) { return lv_arch_name(m->arch); }

/* -------------------------------------------------------------------------------------------
 * describe
 * ----------------------------------------------------------------------------------------- */

typedef struct sbuf {
    char *buf;
    size_t cap;
    int64_t len;
} sbuf;

static void LV_PRINTF(2, 3) sb_printf(sbuf *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t avail = (size_t)s->len < s->cap ? s->cap - (size_t)s->len : 0;
    int n = vsnprintf(avail ? s->buf + s->len : NULL, avail, fmt, ap);
    va_end(ap);
    if (n > 0) s->len += n;
}

int64_t lv_model_describe(const lv_model *m, char *buf, size_t buf_size) {
    sbuf s = {buf, buf_size, 0};
    if (buf_size) buf[0] = '\0';
    const lv_gguf *g = m->gguf;
    sb_printf(&s, "file:          %s (%.1f MiB, GGUF v%u, %lld tensors, %lld metadata keys)\n", m->path,
              (double)lv_gguf_file_size(g) / (1024.0 * 1024.0), lv_gguf_version(g), (long long)lv_gguf_n_tensors(g),
              (long long)lv_gguf_n_kv(g));
    int64_t ni = lv_gguf_find_key(g, "general.name");
    if (ni >= 0 && lv_gguf_kv_type(g, ni) == LV_GGUF_STRING) {
        lv_gguf_str n = lv_gguf_get_str(g, ni);
        sb_printf(&s, "name:          %.*s\n", (int)LV_MIN(n.len, 200), n.ptr);
    }
    char ck[64];
    if (checkpoint_of(m, ck, sizeof(ck)))
        sb_printf(&s, "checkpoint:    a training checkpoint (%s), not a finished model: longview train --resume continues it\n", ck);
    if (m->vocab) {
        char vd[256];
        lv_vocab_describe(m->vocab, vd, sizeof(vd));
        sb_printf(&s, "tokenizer:     %s\n", vd);
    } else {
        sb_printf(&s, "tokenizer:     none (token ids only)\n");
    }
    if (m->vocab_only) {
        sb_printf(&s, "weights:       none (vocabulary-only file)\n");
        return s.len;
    }
    const lv_hparams *hp = &m->hp;
    sb_printf(&s, "architecture:  %s\n", lv_arch_name(m->arch));
    sb_printf(&s, "n_vocab:       %lld\n", (long long)hp->n_vocab);
    sb_printf(&s, "n_ctx_train:   %lld\n", (long long)hp->n_ctx_train);
    sb_printf(&s, "n_embd:        %lld\n", (long long)hp->n_embd);
    sb_printf(&s, "n_layer:       %lld\n", (long long)hp->n_layer);
    sb_printf(&s, "n_head:        %lld (kv heads %lld, GQA group %lld)\n", (long long)hp->n_head, (long long)hp->n_head_kv,
              (long long)(hp->n_head / hp->n_head_kv));
    sb_printf(&s, "head dim:      k %lld, v %lld, rotary %lld\n", (long long)hp->n_embd_head_k, (long long)hp->n_embd_head_v,
              (long long)hp->n_rot);
    sb_printf(&s, "n_ff:          %lld\n", (long long)hp->n_ff);
    sb_printf(&s, "rms_norm_eps:  %g\n", (double)hp->norm_rms_eps);
    static const char *scal[] = {"none", "linear", "yarn"};
    sb_printf(&s, "rope:          %s, base %g, scaling %s (freq scale %g, original context %lld)%s\n",
              hp->rope_type == LV_ROPE_NEOX ? "neox" : "normal", (double)hp->rope_freq_base, scal[hp->rope_scaling],
              (double)hp->rope_freq_scale, (long long)hp->n_ctx_orig, m->rope_freqs.data ? ", rope_freqs factors" : "");
    if (hp->nope_step > 0) sb_printf(&s, "NoPE layers:   every %d-th layer applies no RoPE\n", hp->nope_step);
    const int64_t n_local = lv_hp_n_swa_layers(hp);
    if (hp->n_swa > 0)
        sb_printf(&s, "sliding window: %lld of %lld layers see the last %lld positions (pattern %d, RoPE base %g there); "
                  "the others are global\n", (long long)n_local, (long long)hp->n_layer, (long long)hp->n_swa, hp->swa_period,
                  (double)hp->rope_freq_base_swa);
    if (m->layers[0].q_norm.data)
        sb_printf(&s, "layers:        q/k RMSNorm per head%s; FFN %s; attention scale %g%s\n",
                  m->layers[0].attn_post_norm.data ? ", post-attention and post-FFN norms" : "",
                  hp->ffn_act == LV_FFN_GELU ? "GeGLU (tanh GELU)" : "SwiGLU", (double)hp->attn_scale,
                  hp->embd_scale != 1.0f ? ", embeddings scaled by sqrt(n_embd)" : "");
    if (hp->final_softcap > 0) sb_printf(&s, "logit softcap: %g\n", (double)hp->final_softcap);
    if (m->n_recr_layers > 0) {
        sb_printf(&s, "hybrid:        %lld gated delta-net (recurrent) layers and %lld gated full-attention layers (every %d-th); "
                  "M-RoPE sections %d/%d/%d/%d\n", (long long)m->n_recr_layers, (long long)m->n_attn_layers, hp->full_attn_interval,
                  hp->rope_sections[0], hp->rope_sections[1], hp->rope_sections[2], hp->rope_sections[3]);
        sb_printf(&s, "recurrent:     %lld key heads, %lld value heads of %lld, convolution width %lld; state %lld bytes per sequence "
                  "(f32), constant in its length\n", (long long)hp->ssm_n_group, (long long)hp->ssm_dt_rank, (long long)hp->ssm_d_state,
                  (long long)hp->ssm_d_conv, (long long)(m->n_recr_layers * lv_hp_ssm_state_floats(hp) * 4));
    }
    if (hp->n_layer_nextn > 0) sb_printf(&s, "nextn layers:  %lld multi-token-prediction layers in the file, not run\n", (long long)hp->n_layer_nextn);
    sb_printf(&s, "output:        %s\n", m->tied_output ? "tied to token_embd" : "separate output.weight");
    /* parameter and byte counts per type */
    int64_t n_params = 0, n_bytes = 0;
    int64_t per_type_n[LV_TYPE_COUNT] = {0}, per_type_b[LV_TYPE_COUNT] = {0};
    for (int64_t i = 0; i < lv_gguf_n_tensors(g); i++) {
        const lv_gguf_tensor *t = lv_gguf_tensor_at(g, i);
        int64_t ne = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        n_params += ne;
        n_bytes += (int64_t)t->nbytes;
        per_type_n[t->type]++;
        per_type_b[t->type] += (int64_t)t->nbytes;
    }
    sb_printf(&s, "parameters:    %.2f M, %.1f MiB of weights (%.2f bits per weight)\n", (double)n_params / 1e6,
              (double)n_bytes / (1024.0 * 1024.0), n_params ? 8.0 * (double)n_bytes / (double)n_params : 0.0);
    sb_printf(&s, "tensor types: ");
    for (int t = 0; t < LV_TYPE_COUNT; t++)
        if (per_type_n[t]) sb_printf(&s, " %s x%lld (%.1f MiB)", lv_type_name((uint32_t)t), (long long)per_type_n[t], (double)per_type_b[t] / (1024.0 * 1024.0));
    sb_printf(&s, "\n");
    const int64_t kv_per_tok = 2 * m->n_attn_layers * hp->n_head_kv * (hp->n_embd_head_k + hp->n_embd_head_v) / 2;
    sb_printf(&s, "KV per token:  %lld bytes (f16), %lld bytes (f32)", (long long)(kv_per_tok * 2), (long long)(kv_per_tok * 4));
    if (hp->n_swa > 0) { /* the sliding-window layers' part stops growing at n_swa tokens */
        const int64_t per_layer = hp->n_head_kv * (hp->n_embd_head_k + hp->n_embd_head_v);
        sb_printf(&s, " dense; the model's plan: %lld bytes per token (f16) for the %lld global layers, plus at most %lld bytes for the "
                  "%lld sliding-window layers", (long long)(2 * per_layer * (hp->n_layer - n_local)), (long long)(hp->n_layer - n_local),
                  (long long)(2 * per_layer * n_local * hp->n_swa), (long long)n_local);
    }
    sb_printf(&s, "\n");
    sb_printf(&s, "supported:     yes (all tensors bound; kernels: %s level, LV_SIMD caps it)\n", lv_simd_name(lv_simd_active()));
    return s.len;
}

void lv_model_get_stats(const lv_model *m, lv_model_stats *st) {
    memset(st, 0, sizeof(*st));
    const lv_gguf *g = m->gguf;
    int64_t per_type[LV_TYPE_COUNT] = {0};
    for (int64_t i = 0; i < lv_gguf_n_tensors(g); i++) {
        const lv_gguf_tensor *t = lv_gguf_tensor_at(g, i);
        const int64_t ne = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        st->n_params += ne;
        st->n_bytes += (int64_t)t->nbytes;
        if (t->n_dims >= 2) per_type[t->type] += ne;
    }
    int best = 0;
    for (int t = 1; t < LV_TYPE_COUNT; t++)
        if (per_type[t] > per_type[best]) best = t;
    snprintf(st->ftype, sizeof(st->ftype), "%s", lv_type_name((uint32_t)best));
    if (m->vocab_only) return;
    const lv_hparams *hp = &m->hp;
    for (int64_t il = 0; il < hp->n_layer; il++) {
        const lv_layer *L = &m->layers[il];
        const lv_tensor *lm[12] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_gate, &L->ffn_up, &L->ffn_down,
                                   &L->wqkv, &L->wqkv_gate, &L->ssm_beta, &L->ssm_alpha, &L->ssm_out};
        for (int k = 0; k < 12; k++) {
            st->n_params_matmul += lm[k]->ne[0] * lm[k]->ne[1];
            st->n_bytes_matmul += lm[k]->row_bytes * lm[k]->ne[1];
        }
    }
    st->n_params_matmul += m->output.ne[0] * m->output.ne[1];
    st->n_bytes_matmul += m->output.row_bytes * m->output.ne[1];
    st->n_layer = (int32_t)hp->n_layer;
    st->n_head = (int32_t)hp->n_head;
    st->n_head_kv = (int32_t)hp->n_head_kv;
    st->head_dim_k = (int32_t)hp->n_embd_head_k;
    st->head_dim_v = (int32_t)hp->n_embd_head_v;
    st->n_embd = (int32_t)hp->n_embd;
    st->n_ff = (int32_t)hp->n_ff;
    st->n_vocab = (int32_t)hp->n_vocab;
}

/* -------------------------------------------------------------------------------------------
 * the kernels' view of the hyper-parameters
 * ----------------------------------------------------------------------------------------- */

lv_rope_params lv_rope_params_from(const lv_model *m) {
    const lv_hparams *hp = &m->hp;
    lv_rope_params rp = {
        .n_rot = (int)hp->n_rot,
        .type = hp->rope_type,
        .freq_base = hp->rope_freq_base,
        .freq_scale = hp->rope_freq_scale,
        .ext_factor = hp->yarn_ext_factor,
        .attn_factor = hp->yarn_attn_factor,
        .beta_fast = hp->yarn_beta_fast,
        .beta_slow = hp->yarn_beta_slow,
        .n_ctx_orig = (int)LV_MIN(hp->n_ctx_orig, INT32_MAX),
        .freq_factors = m->rope_freqs.data,
    };
    return rp;
}

lv_rope_params lv_rope_params_swa(const lv_model *m) {
    lv_rope_params rp = lv_rope_params_from(m);
    rp.freq_base = m->hp.rope_freq_base_swa;
    rp.freq_scale = m->hp.rope_freq_scale_swa;
    return rp;
}
