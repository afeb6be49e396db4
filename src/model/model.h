/*
 * model.h: architectures, hyper-parameters and weight binding.
 *
 * The module src/model/ (docs/architecture.md):
 *   Owns:  architectures: hyper-parameters as llama.cpp reads them, weight binding with shape and
 *          type checks, repacking at load; the forward pass over a micro-batch (forward.h); gen-
 *          model; the public calls that take a model (tokens.c), prompts with images laid out as
 *          llama.cpp's mtmd lays them out (mmprompt.c).
 *   Never: owns the KV memory, or validates and schedules batches (runtime/ does).
 *
 * A model is a validated view over a GGUF file: hyper-parameters read from the metadata exactly
 * as llama.cpp reads them, and every weight bound by name with its shape and type checked.
 * Weights stay in the read-only mapping (or one private copy when mmap is off); nothing here
 * owns KV memory or computes anything.
 *
 * Shapes use ggml's order: ne[0] is the contiguous dimension (a row), so a weight matrix of
 * shape (ne0 = n_in, ne1 = n_out) has n_out rows of n_in elements and computes y = W x.
 */
#ifndef LV_MODEL_H
#define LV_MODEL_H

#include "longview.h"

#include "gguf/gguf.h"
#include "gguf/quant.h"
#include "kernels/kernels.h"
#include "tokenizer/tokenizer.h"

typedef enum lv_arch {
    LV_ARCH_LLAMA = 0,
    LV_ARCH_QWEN2 = 1,
    LV_ARCH_QWEN3 = 2,   /* per-head RMSNorm of q and k before RoPE */
    LV_ARCH_SMOLLM3 = 3, /* llama with no RoPE on every fourth layer */
    LV_ARCH_GEMMA3 = 4,  /* sliding-window and global layers, GeGLU, post-norms, scaled embeddings */
    LV_ARCH_QWEN35 = 5,  /* hybrid: gated delta-net (recurrent) layers and gated full-attention layers */
    LV_ARCH_QWEN2VL = 6, /* qwen2 with M-RoPE: four positions per token (Qwen2-VL, Qwen2.5-VL text) */
} lv_arch;

typedef enum lv_ffn_act {
    LV_FFN_SILU = 0, /* SwiGLU: silu(gate) * up */
    LV_FFN_GELU = 1, /* GeGLU: gelu_tanh(gate) * up */
} lv_ffn_act;

typedef enum lv_rope_scaling {
    LV_ROPE_SCALING_NONE = 0,
    LV_ROPE_SCALING_LINEAR = 1,
    LV_ROPE_SCALING_YARN = 2,
} lv_rope_scaling;

typedef struct lv_hparams {
    int64_t n_vocab;
    int64_t n_ctx_train;
    int64_t n_embd;
    int64_t n_layer;
    int64_t n_ff;
    int64_t n_head;
    int64_t n_head_kv;
    int64_t n_embd_head_k; /* head dim of q and k */
    int64_t n_embd_head_v; /* head dim of v */
    int64_t n_rot;         /* rotated dims per head (<= n_embd_head_k) */
    float norm_rms_eps;
    lv_rope_type rope_type;
    lv_rope_scaling rope_scaling;
    float rope_freq_base;
    float rope_freq_scale;  /* 1 / scaling factor */
    int64_t n_ctx_orig;     /* rope.scaling.original_context_length */
    float yarn_ext_factor;  /* 0 unless YaRN */
    float yarn_attn_factor;
    float yarn_beta_fast;
    float yarn_beta_slow;
    /* per-architecture features (all off for llama / qwen2) */
    float attn_scale;        /* the softmax scale of q.k: 1/sqrt(n_embd_head_k) unless the architecture says otherwise */
    bool attn_scale_on_q;    /* the scale multiplies q after RoPE, before the cache type's rounding (gemma3, as its graph) */
    float embd_scale;        /* token embeddings are multiplied by this (gemma3: sqrt(n_embd)), 1 otherwise */
    lv_ffn_act ffn_act;
    int32_t nope_step;       /* > 0: layers with (il + 1) % nope_step == 0 apply no RoPE (smollm3: 4) */
    int64_t n_swa;           /* > 0: the sliding-window layers see the last n_swa positions (gemma3) */
    int32_t swa_period;      /* with n_swa: layer il is sliding-window iff il % swa_period < swa_period - 1 */
    float rope_freq_base_swa;  /* the RoPE of sliding-window layers */
    float rope_freq_scale_swa;
    float final_softcap;     /* > 0: logits = softcap * tanh(logits / softcap) */
    /* qwen35: the attention layers' q projection carries a sigmoid gate per head ([q | gate] per
     * head), and the recurrent (gated delta-net) layers' shape */
    bool attn_q_gate;
    int32_t rope_sections[4]; /* M-RoPE sections (text positions make it NEOX over n_rot dims) */
    bool mrope;               /* qwen2vl: tokens carry four positions (t, h, w, e) rotated by rope_sections */
    int64_t n_layer_nextn;    /* trailing multi-token-prediction layers in the file, not run */
    int32_t full_attn_interval; /* > 0: layer il is recurrent iff (il + 1) % full_attn_interval != 0 */
    int64_t ssm_d_conv;       /* causal convolution width */
    int64_t ssm_d_inner;      /* value width: n_v_heads * head_v */
    int64_t ssm_d_state;      /* head size of q, k and v */
    int64_t ssm_dt_rank;      /* value heads */
    int64_t ssm_n_group;      /* key heads */
} lv_hparams;

/* Is layer il a recurrent (gated delta-net) layer? */
static inline bool lv_hp_layer_recr(const lv_hparams *hp, int64_t il) {
    return hp->full_attn_interval > 0 && (il + 1) % hp->full_attn_interval != 0;
}
/* The recurrent layers' derived sizes (qwen35) */
static inline int64_t lv_hp_ssm_conv_dim(const lv_hparams *hp) { return 2 * hp->ssm_n_group * hp->ssm_d_state + hp->ssm_d_inner; }
/* floats of one sequence's state in one recurrent layer: the convolution's last d_conv - 1
 * inputs, then one S x S matrix per value head */
static inline int64_t lv_hp_ssm_state_floats(const lv_hparams *hp) {
    return (hp->ssm_d_conv - 1) * lv_hp_ssm_conv_dim(hp) + hp->ssm_dt_rank * hp->ssm_d_state * hp->ssm_d_state;
}

/* Is layer il one of the model's own sliding-window layers (gemma3's local layers)? */
static inline bool lv_hp_layer_swa(const lv_hparams *hp, int64_t il) {
    return hp->n_swa > 0 && (hp->swa_period == 0 || il % hp->swa_period < hp->swa_period - 1);
}
/* How many of the model's layers are sliding-window layers */
static inline int64_t lv_hp_n_swa_layers(const lv_hparams *hp) {
    int64_t n = 0;
    for (int64_t il = 0; il < hp->n_layer; il++) n += lv_hp_layer_swa(hp, il);
    return n;
}
/* Does layer il apply RoPE (smollm3's NoPE layers do not)? */
static inline bool lv_hp_layer_rope(const lv_hparams *hp, int64_t il) {
    return hp->nope_step <= 0 || (il + 1) % hp->nope_step != 0;
}

typedef struct lv_layer {
    lv_tensor attn_norm;           /* (n_embd) */
    lv_tensor wq;                  /* (n_embd, n_head * n_embd_head_k) */
    lv_tensor wk;                  /* (n_embd, n_head_kv * n_embd_head_k) */
    lv_tensor wv;                  /* (n_embd, n_head_kv * n_embd_head_v) */
    lv_tensor wo;                  /* (n_head * n_embd_head_v, n_embd) */
    lv_tensor bq, bk, bv, bo;      /* optional biases; data == NULL when absent */
    lv_tensor q_norm, k_norm;      /* (n_embd_head_k) per-head RMSNorm of q and k before RoPE (qwen3, gemma3), or absent */
    lv_tensor attn_post_norm;      /* (n_embd) RMSNorm of the attention output before the residual (gemma3), or absent */
    lv_tensor ffn_post_norm;       /* (n_embd) the same for the FFN output (gemma3), or absent */
    lv_tensor ffn_norm;            /* (n_embd) */
    lv_tensor ffn_gate;            /* (n_embd, n_ff) */
    lv_tensor ffn_up;              /* (n_embd, n_ff) */
    lv_tensor ffn_down;            /* (n_ff, n_embd) */
    /* a recurrent layer (qwen35's gated delta-net) instead of attention: wq..bo are absent */
    bool recurrent;
    int64_t kv_layer;              /* attention layers: the layer's index in the KV cache (recurrent
                                      layers keep none); recurrent layers: the index of their state */
    lv_tensor wqkv;                /* (n_embd, conv_dim): q, k (n_group heads) and v (dt_rank heads) */
    lv_tensor wqkv_gate;           /* (n_embd, d_inner): z, the output gate */
    lv_tensor ssm_conv1d;          /* (d_conv, conv_dim) f32: the causal convolution per channel */
    lv_tensor ssm_dt;              /* (dt_rank) f32: bias of alpha */
    lv_tensor ssm_a;               /* (dt_rank) f32: -exp(A_log) */
    lv_tensor ssm_beta;            /* (n_embd, dt_rank) */
    lv_tensor ssm_alpha;           /* (n_embd, dt_rank) */
    lv_tensor ssm_norm;            /* (head_v) f32: RMSNorm of each head's output */
    lv_tensor ssm_out;             /* (d_inner, n_embd) */
} lv_layer;

struct lv_model {
    lv_gguf *gguf;
    void *file_copy;      /* the whole file, when use_mmap is false */
    char *path;
    lv_arch arch;
    lv_hparams hp;
    lv_vocab *vocab;
    bool vocab_only;
    lv_tensor tok_embd;    /* (n_embd, n_vocab) */
    lv_tensor output_norm; /* (n_embd) */
    lv_tensor output;      /* (n_embd, n_vocab): tok_embd when tied */
    bool tied_output;
    lv_tensor rope_freqs;  /* (n_rot/2), optional: data == NULL when absent */
    lv_layer *layers;      /* (n_layer) */
    int64_t n_attn_layers; /* layers with attention (and KV streams) */
    int64_t n_recr_layers; /* recurrent layers (with a state per sequence) */
    void *packed;          /* the repacked matrix weights (qpack.h), or NULL: lv_big_alloc_huge */
    size_t packed_size;
};

const char *lv_arch_name(lv_arch a);
/* The vocabulary of a loaded model (NULL if it has none). */
const lv_vocab *lv_model_vocab(const lv_model *model);
/* genmodel.c: write the tokenizer.* keys of vocab_path (a vocabulary GGUF, a tokenizer.json, or
 * "builtin:bytes", "builtin:bytes-vision") into w; *n_vocab receives its token count. Used by gen-model and the trainer. */
lv_status lv_genmodel_add_vocab(lv_gguf_writer *w, const char *vocab_path, int64_t *n_vocab);
/* the RoPE parameters of the model's hyper-parameters (and rope_freqs), for the kernels: those of
 * the global layers, and those of the sliding-window layers (their own base and scale) */
lv_rope_params lv_rope_params_from(const lv_model *m);
lv_rope_params lv_rope_params_swa(const lv_model *m);

/* lv_model_load over a GGUF image in memory (not copied: it must outlive the model); messages
 * name the file "<memory>". params.use_mmap is ignored. For tests and the fuzzer. */
lv_status lv_model_load_memory(const void *data, uint64_t size, lv_model_params params, lv_model **out);

#endif
