/* tvpair.c: the trainer-initialised text + mmproj pair of tvpair.h */
#include "tvpair.h"

#include "core/core.h"
#include "train/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool tvpair_parse(const char *s, tvpair_spec *out) {
    tvpair_spec sp = {.seed = 1, .f16 = false, .scale = 2};
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", s ? s : "");
    char *save = NULL;
    for (char *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        if (!strncmp(t, "seed=", 5)) sp.seed = strtoull(t + 5, NULL, 10);
        else if (!strcmp(t, "type=f32")) sp.f16 = false;
        else if (!strcmp(t, "type=f16")) sp.f16 = true;
        else if (!strncmp(t, "scale=", 6)) sp.scale = atoi(t + 6);
        else if (!strcmp(t, "vocab=bytes")) sp.bytes_vocab = true;
        else return false;
    }
    if (sp.scale != 2 && sp.scale != 4) return false;
    *out = sp;
    return true;
}

/* every parameter += 0.05 N(0, 1) (a stream of its own, from the seed) */
static lv_status perturb(float *p, int64_t n, uint64_t seed) {
    float *z = lv_mallocn((size_t)n, sizeof(float));
    if (!z) return LV_ERR_NOMEM;
    lv_tr_fill_normal(z, n, seed, 0.05f);
    for (int64_t i = 0; i < n; i++) p[i] += z[i];
    lv_free(z);
    return LV_OK;
}

enum { N_TEXT = 128 };

lv_status tvpair_tower(const tvpair_spec *sp, lv_tvmodel **out) {
    const lv_tv_config c = lv_tv_config_default(64, 8, 64, 4, 2, 160, sp->scale, N_TEXT);
    lv_tvmodel *m = NULL;
    lv_status st = lv_tvmodel_create(&c, false, &m);
    if (st != LV_OK) return st;
    lv_tvmodel_init(m, sp->seed, 0.2f);
    if ((st = perturb(m->params, m->n_params, sp->seed * 2 + 1)) != LV_OK) {
        lv_tvmodel_free(m);
        return st;
    }
    *out = m;
    return LV_OK;
}

lv_status tvpair_write(const tvpair_spec *sp, const char *text_path, const char *mm_path) {
    lv_status st = LV_OK;
    if (mm_path) {
        lv_tvmodel *m = NULL;
        if ((st = tvpair_tower(sp, &m)) != LV_OK) return st;
        st = lv_tvmodel_export_gguf(m, mm_path, sp->f16, "longview-tvpair");
        lv_tvmodel_free(m);
        if (st != LV_OK) return st;
    }
    if (text_path) {
        const lv_tr_config c = {.arch = LV_ARCH_LLAMA, .n_vocab = sp->bytes_vocab ? 259 : 264, .n_embd = N_TEXT, .n_layer = 2, .n_head = 4, .n_head_kv = 2,
                                .head_dim = 32, .n_ff = 256, .n_rot = 32, .n_ctx_train = 512, .rope_base = 10000.0f, .norm_eps = 1e-5f,
                                .tied = true};
        lv_tmodel *m = NULL;
        if ((st = lv_tmodel_create(&c, false, &m)) != LV_OK) return st;
        lv_tmodel_init(m, sp->seed + 1000, 0.2f);
        if ((st = perturb(m->params, m->n_params, sp->seed * 2 + 2)) == LV_OK)
            st = lv_tmodel_export_gguf(m, sp->bytes_vocab ? "builtin:bytes" : TVPAIR_VOCAB, text_path, sp->f16, "longview-tvpair-text", NULL);
        lv_tmodel_free(m);
    }
    return st;
}
