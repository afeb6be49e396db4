/*
 * fuzz_serve_request.c: libFuzzer target for the JSON request reader of `longview serve`
 * (tools/serve/request.c, included whole below: it is tool code, not in liblongview).
 *
 *   make fuzz
 *   build/fuzz/fuzz_serve_request -dict=fuzz/serve.dict -max_total_time=600 build/fuzz/corpus-serve_request fuzz/corpus/serve_request
 *
 * Each input is a request body. It goes through the server's own steps: the depth count before
 * parsing, jansson, then the reader of each generation route (chat with the chatml template,
 * completions, llama.cpp's /completion) and /tokenize's. A request that reads must have a
 * non-empty prompt of valid token ids, sampling in range and at most 16 non-empty stop strings;
 * one that does not must say why with a 4xx/5xx status, a type and a message. Anything else
 * traps, so libFuzzer reports it like a crash. The model (random weights, byte vocabulary) is
 * generated at start-up.
 */
#include "../tools/serve/request.c"

#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static srv_parse_ctx g_pc;

static void quiet_log(lv_log_level level, const char *msg, void *user) {
    (void)level;
    (void)msg;
    (void)user;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    lv_log_set(quiet_log, NULL, LV_LOG_ERROR);
    char path[256];
    snprintf(path, sizeof(path), "/tmp/lv-fuzz-serve-%d.gguf", (int)getpid());
    lv_genmodel_params gp = lv_genmodel_default_params();
    gp.arch = "llama";
    gp.n_embd = 32;
    gp.n_layer = 1;
    gp.n_head = 2;
    gp.n_head_kv = 1;
    gp.n_ff = 32;
    gp.vocab_path = "builtin:bytes";
    lv_model *m = NULL;
    if (lv_genmodel_write(&gp, path) != LV_OK || lv_model_load(path, lv_model_default_params(), &m) != LV_OK) abort();
    unlink(path); /* the mapping keeps it */
    g_pc.model = m;
    g_pc.chat_template = "chatml";
    g_pc.max_messages = 64;
    g_pc.max_n = 4;
    return 0;
}

static void check_error(const srv_req_err *e) {
    if (e->status < 400 || e->status > 599 || !e->type || !e->msg[0]) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    if (srv_json_depth((const char *)data, size) > 64) return 0; /* refused before parsing, as the server does */
    json_error_t je;
    json_t *body = json_loadb((const char *)data, size, 0, &je);
    if (!body) return 0;
    if (!json_is_object(body)) {
        json_decref(body);
        return 0;
    }
    const int32_t n_vocab = lv_model_n_vocab(g_pc.model);
    for (int kind = SRV_CHAT; kind <= SRV_NATIVE; kind++) {
        srv_gen_req g;
        srv_req_err e = {0};
        if (srv_parse_generation(&g_pc, body, kind, &g, &e)) {
            if (g.mm_text) { /* images: the text kept for lv_mm_tokenize, every image decoded */
                if (g.prompt || g.n_images < 1 || g.n_images > SRV_MAX_IMAGES) abort();
                for (int k = 0; k < g.n_images; k++)
                    if (!g.image[k] || g.image_size[k] == 0) abort();
            } else {
                if (g.n_prompt <= 0 || !g.prompt || g.n_images != 0) abort();
            }
            for (int32_t i = 0; i < g.n_prompt; i++)
                if (g.prompt[i] < 0 || g.prompt[i] >= n_vocab) abort();
            if (!(g.sp.temp >= 0) || !(g.sp.top_p >= 0 && g.sp.top_p <= 1) || !(g.sp.min_p >= 0 && g.sp.min_p <= 1) || g.sp.top_k < 0) abort();
            if (g.n_predict < -1 || g.n_predict > INT32_MAX || g.n_stop < 0 || g.n_stop > 16 || !(g.max_generate_s >= 0)) abort();
            for (int k = 0; k < g.n_stop; k++)
                if (!g.stop[k] || !g.stop[k][0]) abort();
            if (g.n < 1 || g.n > (kind == SRV_NATIVE ? 1 : g_pc.max_n) || g.n_top < 0 || g.n_top > 20 || (!g.logprobs && g.n_top)) abort();
            if (!(g.sp.penalty_freq >= -2 && g.sp.penalty_freq <= 2) || !(g.sp.penalty_present >= -2 && g.sp.penalty_present <= 2) ||
                !(g.sp.penalty_repeat >= 0 && g.sp.penalty_repeat <= 10) || g.sp.penalty_last_n < -1)
                abort();
        } else {
            check_error(&e);
        }
        srv_gen_req_clear(&g);
    }
    json_t *content = json_object_get(body, "content");
    if (json_is_string(content)) {
        srv_req_err e = {0};
        int32_t n = -1;
        lv_token *t = srv_tokenize(&g_pc, json_string_value(content), json_string_length(content), true, true, &n, &e);
        if (!t) check_error(&e);
        else if (n < 0) abort();
        free(t);
    }
    json_decref(body);
    return 0;
}
