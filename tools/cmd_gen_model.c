/*
 * cmd_gen_model.c: `longview gen-model`: write a GGUF model with random weights.
 */
#include "common/cli.h"
#include "commands.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static void on_progress(double frac, void *user) { cli_progress_update(user, frac, NULL); }

int cmd_gen_model(int argc, char **argv) {
    const char *arch = NULL, *preset = NULL, *vocab = NULL, *out = NULL, *type = "f32";
    int64_t dim = 0, layers = 0, heads = 0, kv_heads = 0, ffn = 0, ctx = 0, seed = 42, head_dim = 0, swa = 0, swa_pattern = 0;
    int64_t ssm_state = 0, ssm_k = 0, attn_every = 0;
    const char *ssm_heads = NULL;
    double rope_base = 0, std = 0.02;
    bool tied = false, llama3_rope = false;
    cli_opt opts[] = {
        {NULL, "--arch", CLI_STR, &arch, "NAME", "architecture: llama | qwen2 | qwen3 | smollm3 | gemma3 | qwen35 | qwen2vl (implied by a preset)"},
        {NULL, "--preset", CLI_STR, &preset, "NAME", "tiny | smollm2-135m | qwen2.5-0.5b | llama3.2-1b | qwen3-0.6b | smollm3-3b | gemma3-270m | gemma3-1b | qwen3.5-0.8b | smolvlm2-256m | smolvlm2-500m | qwen2.5-vl-3b (real shapes; the last three: the text models of the vision presets)"},
        {NULL, "--dim", CLI_INT, &dim, "N", "embedding size (overrides the preset)", .lo = 1, .hi = 1 << 16},
        {NULL, "--layers", CLI_INT, &layers, "N", "number of layers", .lo = 1, .hi = 4096},
        {NULL, "--heads", CLI_INT, &heads, "N", "attention heads", .lo = 1, .hi = 4096},
        {NULL, "--kv-heads", CLI_INT, &kv_heads, "N", "KV heads (GQA; default = heads)", .lo = 1, .hi = 4096},
        {NULL, "--ffn", CLI_INT, &ffn, "N", "feed-forward size", .lo = 1, .hi = 1 << 20},
        {NULL, "--head-dim", CLI_INT, &head_dim, "N", "head size (default dim / heads; qwen3 and gemma3 presets set their own)", .lo = 2, .hi = 1024},
        {NULL, "--swa", CLI_INT, &swa, "N", "gemma3: sliding window of the local layers (-1: none, every layer global)", .lo = -1, .hi = 1 << 30},
        {NULL, "--swa-pattern", CLI_INT, &swa_pattern, "N", "gemma3: one global layer in every N (default 6)", .lo = 1, .hi = 4096},
        {NULL, "--ssm-state", CLI_INT, &ssm_state, "N", "qwen35: head size of the recurrent layers (default 128)", .lo = 8, .hi = 1024},
        {NULL, "--ssm-heads", CLI_STR, &ssm_heads, "K,V", "qwen35: key and value heads of the recurrent layers (default 16,16)"},
        {NULL, "--attn-every", CLI_INT, &attn_every, "N", "qwen35: one gated attention layer in every N, the others recurrent (default 4)", .lo = 1, .hi = 4096},
        {NULL, "--ctx-train", CLI_INT, &ctx, "N", "training context length written to the file", .lo = 1, .hi = 1 << 30},
        {NULL, "--rope-base", CLI_FLOAT, &rope_base, "F", "rope frequency base", .flo = 1, .fhi = 1e12},
        {NULL, "--tied", CLI_FLAG, &tied, NULL, "no output.weight: token_embd is the output matrix"},
        {NULL, "--llama3-rope", CLI_FLAG, &llama3_rope, NULL, "write a Llama 3.1 rope_freqs tensor (factor 32, original context 8192)"},
        {NULL, "--vocab", CLI_STR, &vocab, "FILE", "vocabulary GGUF (tokenizer.* keys are copied), tokenizer.json, builtin:bytes (259 byte tokens) or builtin:bytes-vision (+ SmolVLM2's 4 markers)", .required = true},
        {NULL, "--type", CLI_STR, &type, "T", "weight type: f32 | f16 | bf16 | q8_0 | q4_0 | q4_1 | q5_0 | q5_1 | q4_k | q5_k | q6_k | q4_k_m | iq4_nl | iq4_xs | q2_k | q3_k (default f32)"},
        {NULL, "--seed", CLI_INT, &seed, "N", "random seed (default 42)", .lo = 0, .hi = INT64_MAX},
        {NULL, "--std", CLI_FLOAT, &std, "F", "standard deviation of the weights (default 0.02)", .flo = 1e-6, .fhi = 10},
        {"-o", "--output", CLI_STR, &out, "FILE", "output GGUF file", .required = true},
    };
    int r = cli_parse(argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0])),
                      "longview gen-model (--preset NAME | --arch A --dim N --layers N --heads N [--kv-heads N] --ffn N) --vocab FILE [--type T] [--seed S] -o OUT.gguf",
                      "Write a valid GGUF v3 model with RANDOM weights (N(0, std); norm weights near 1) and the tokenizer\n"
                      "metadata of a vocabulary file. Useful for tests and speed measurements; its output is noise.\n"
                      "With the 256-element types (q2_k, q3_k, q4_k, q5_k, q6_k, iq4_xs), matrices whose rows are not a\n"
                      "multiple of 256 are written as q4_0, q4_0, q5_0, q5_1, q8_0, iq4_nl instead, as llama-quantize does (a\n"
                      "warning names them); q4_k_m is llama-quantize's Q4_K_M mixture (q4_K, with q6_K for the output matrix\n"
                      "and for attn_v / ffn_down of some layers). q2_k, q3_k, iq4_nl and iq4_xs use simple quantizers of\n"
                      "longview's own (valid files, not llama-quantize's error). The presets are the published shapes.",
                      NULL, 0, NULL);
    if (r) return r > 0 ? 0 : 2;
    lv_genmodel_params gp = lv_genmodel_default_params();
    static const struct { const char *name; lv_ftype f; } types[] = {
        {"f32", LV_FTYPE_F32},   {"f16", LV_FTYPE_F16},   {"bf16", LV_FTYPE_BF16}, {"q8_0", LV_FTYPE_Q8_0},
        {"q4_0", LV_FTYPE_Q4_0}, {"q4_1", LV_FTYPE_Q4_1}, {"q5_0", LV_FTYPE_Q5_0}, {"q5_1", LV_FTYPE_Q5_1},
        {"q4_k", LV_FTYPE_Q4_K}, {"q5_k", LV_FTYPE_Q5_K}, {"q6_k", LV_FTYPE_Q6_K}, {"q4_k_m", LV_FTYPE_Q4_K_M},
        {"iq4_nl", LV_FTYPE_IQ4_NL}, {"iq4_xs", LV_FTYPE_IQ4_XS}, {"q2_k", LV_FTYPE_Q2_K}, {"q3_k", LV_FTYPE_Q3_K},
    };
    bool found = false;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcasecmp(type, types[i].name) == 0) {
            gp.ftype = types[i].f;
            found = true;
        }
    if (!found) {
        cli_error("--type: unknown type '%s' (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, q4_k_m, iq4_nl, iq4_xs, q2_k, q3_k)", type);
        return 2;
    }
    gp.arch = arch;
    gp.preset = preset;
    gp.n_embd = (int32_t)dim;
    gp.n_layer = (int32_t)layers;
    gp.n_head = (int32_t)heads;
    gp.n_head_kv = (int32_t)kv_heads;
    gp.n_ff = (int32_t)ffn;
    gp.n_ctx_train = (int32_t)ctx;
    gp.rope_freq_base = (float)rope_base;
    gp.tied_output = tied;
    gp.llama3_rope = llama3_rope;
    gp.head_dim = (int32_t)head_dim;
    gp.n_swa = (int32_t)swa;
    gp.swa_pattern = (int32_t)swa_pattern;
    if (ssm_heads) {
        long long k, v;
        char end;
        if (sscanf(ssm_heads, "%lld,%lld%c", &k, &v, &end) != 2 || k < 1 || v < 1 || k > 4096 || v > 4096) {
            cli_error("--ssm-heads: '%s' is not K,V (two counts in [1, 4096])", ssm_heads);
            return 2;
        }
        ssm_k = k;
        gp.ssm_v_heads = (int32_t)v;
    }
    gp.ssm_state = (int32_t)ssm_state;
    gp.ssm_k_heads = (int32_t)ssm_k;
    gp.full_attn_interval = (int32_t)attn_every;
    gp.vocab_path = vocab;
    gp.seed = (uint64_t)seed;
    gp.std = (float)std;
    cli_progress prog;
    cli_progress_start(&prog, "gen-model");
    gp.progress = on_progress;
    gp.progress_user = &prog;
    lv_status st = lv_genmodel_write(&gp, out);
    if (st != LV_OK) {
        cli_progress_done(&prog, "failed");
        return cli_fail("gen-model", st);
    }
    cli_progress_done(&prog, out);
    return 0;
}
