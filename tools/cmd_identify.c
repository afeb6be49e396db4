/*
 * cmd_identify.c: `longview identify`: DuoAttention's retrieval-head identification
 * (../shared/PAPERS.md section 1.1) with the trainer of src/train. One gate alpha per (layer, KV
 * head), initialised to 1 and clamped to [0, 1] before every step; the model's weights are frozen.
 * Each step runs a passkey sample twice: the teacher with full attention, and the student whose
 * attention output per KV group is alpha * O_full (the teacher's) + (1 - alpha) * O_stream (its own
 * sink + window attention). Loss = mean over the answer positions and dimensions of the squared
 * distance of the final hidden states + reg * mean(alpha). AdamW on the gates (no weight decay)
 * with DuoAttention's schedule: 20% linear warmup, 20% linear decay, floor 0.1. Writes the gates
 * in DuoAttention's full_attention_heads.tsv format and an SVG map.
 */
#include "common/cli.h"
#include "commands.h"
#include "common/svg.h"
#include "train/train.h"
#include "common/train_data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double duo_lr_mult(int64_t s, int64_t n) {
    const double w = (double)n / 5.0;
    double a = (double)(s + 1) / w, b = (double)(n - s) / w;
    a = a < 0.1 ? 0.1 : a;
    b = b < 0.1 ? 0.1 : b;
    double m = a < b ? a : b;
    return m < 1 ? m : 1;
}

static int write_tsv(const char *path, const float *a, int L, int H) {
    cli_out o;
    FILE *f = cli_out_open(&o, path, false);
    if (!f) return -1;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < H; h++) fprintf(f, "%.18e%c", (double)a[l * H + h], h + 1 < H ? '\t' : '\n');
    return cli_out_commit(&o);
}

static int write_map(const char *path, const float *a, int L, int H, const char *title) {
    const double cw = H <= 16 ? 36 : 14, ch = L <= 32 ? 18 : 10, left = 60, top = 60;
    FILE *f = svg_begin(path, left + H * cw + 40, top + L * ch + 50);
    if (!f) return -1;
    svg_text(f, 12, 22, 14, "start", "%s", title);
    svg_text(f, 12, 40, 11, "start", "DuoAttention gates per (layer, KV head): colour = gate (viridis, 0 to 1)");
    for (int h = 0; h < H; h++) svg_text(f, left + (h + 0.5) * cw, top - 6, 9, "middle", "%d", h);
    for (int l = 0; l < L; l++) {
        svg_text(f, left - 6, top + (l + 0.5) * ch + 3, 9, "end", "%d", l);
        for (int h = 0; h < H; h++) {
            char col[8], tip[64];
            svg_viridis(a[l * H + h], col);
            snprintf(tip, sizeof(tip), "layer %d, KV head %d: %.4f", l, h, (double)a[l * H + h]);
            svg_rect(f, left + h * cw, top + l * ch, cw, ch, col, "#ffffff", 0.5, tip);
        }
    }
    svg_text_vertical(f, 18, top + L * ch / 2, 11, "layer");
    svg_text(f, left + H * cw / 2, top + L * ch + 20, 11, "middle", "KV head");
    return svg_end(f, path);
}

int cmd_identify(int argc, char **argv) {
    const char *model_path = NULL, *out = "full_attention_heads.tsv", *plot = NULL, *tasks = "passkey=1", *haystack = NULL;
    int64_t steps = 200, seq_len = 1024, sink = 64, window = 256, threads = 0, seed = 42, pk_min = 0, n_needles = 0;
    double lr = 0.02, reg = 0.05;
    cli_opt opts[] = {
        {"-m", "--model", CLI_STR, &model_path, "FILE", "GGUF model (llama or qwen2, any weight type; converted to f32)", .required = true},
        {"-o", "--output", CLI_STR, &out, "FILE", "gates in DuoAttention's TSV format (default full_attention_heads.tsv)"},
        {NULL, "--plot", CLI_STR, &plot, "OUT.svg", "an SVG map of the gates"},
        {NULL, "--steps", CLI_INT, &steps, "N", "optimizer steps, one passkey sample each (default 200)", .lo = 1, .hi = 1000000},
        {NULL, "--lr", CLI_FLOAT, &lr, "F", "peak learning rate of the gates (default 0.02)", .flo = 0, .fhi = 10},
        {NULL, "--reg", CLI_FLOAT, &reg, "F", "weight of mean(alpha) in the loss (default 0.05)", .flo = 0, .fhi = 100},
        {NULL, "--sink", CLI_INT, &sink, "N", "streaming heads keep the first N tokens (default 64)", .lo = 0, .hi = 1 << 20},
        {NULL, "--window", CLI_INT, &window, "N", "... and the N most recent (default 256)", .lo = 1, .hi = 1 << 20},
        {NULL, "--seq-len", CLI_INT, &seq_len, "N", "longest passkey sample in tokens (default 1024)", .lo = 8, .hi = 1 << 20},
        {NULL, "--passkey-min", CLI_INT, &pk_min, "N", "shortest passkey prompt (default: the shortest the format allows)", .lo = 1, .hi = 1 << 20},
        {NULL, "--tasks", CLI_STR, &tasks, "LIST", "prompts: passkey=W,multikey=W,multivalue=W,niah=W (default passkey=1; multivalue asks 4 keys at once)"},
        {NULL, "--needles", CLI_INT, &n_needles, "N", "keys per multikey / multivalue prompt, 2..10 (default 4; the reference asks 10)", .lo = 2, .hi = 10},
        {NULL, "--haystack", CLI_STR, &haystack, "DIR", "essays for the niah task (default $LV_HAYSTACK or ../shared/data/haystack/paul-graham-essays)"},
        {NULL, "--seed", CLI_INT, &seed, "N", "data seed (default 42)", .lo = 0, .hi = INT64_MAX},
        {"-t", "--threads", CLI_INT, &threads, "N", "threads (default: all cores)", .lo = 1, .hi = 1024},
    };
    const int n_opts = (int)(sizeof(opts) / sizeof(opts[0]));
    int r = cli_parse(argc, argv, opts, n_opts, "longview identify -m MODEL [-o full_attention_heads.tsv] [--plot gates.svg] [--steps N]",
                      "DuoAttention's retrieval-head identification (PAPERS.md 1.1): one gate per (layer, KV head) mixing full and\n"
                      "sink + window attention, optimized with frozen weights so that the final hidden states at the answer of\n"
                      "passkey prompts (the `longview eval passkey` builder) stay those of full attention, plus reg * mean(gate).\n"
                      "AdamW, lr 0.02, 20% warmup and 20% decay (floor 0.1). Gates near 1 mark retrieval heads; use the TSV\n"
                      "with --heads in run/eval and `longview heads` to binarize it. See docs/train.md.",
                      NULL, 0, NULL);
    if (r) return r > 0 ? 0 : 2;

    int rc = 1;
    lv_status s;
    lv_model *vm = NULL;
    lv_tmodel *m = NULL;
    lv_tr_state teacher = {0}, student = {0};
    td_data d = {0};
    td_sample smp = {0};
    float *alpha = NULL, *dalpha = NULL, *mo = NULL, *vo = NULL;
    lv_threadpool *tp = lv_threadpool_create(threads ? (int)threads : lv_n_cores());
    if (!tp) return cli_fail("creating threads", LV_ERR_NOMEM);
    if ((s = lv_model_load(model_path, lv_model_default_params(), &vm)) != LV_OK) {
        rc = cli_fail("loading the model", s);
        goto end;
    }
    if ((s = lv_tmodel_from_model(vm, false, &m)) != LV_OK) {
        rc = cli_fail("converting the model", s);
        goto end;
    }
    d.seq_len = (int32_t)seq_len;
    d.seed = (uint64_t)seed;
    if ((rc = td_parse_tasks(tasks, d.task_w)) != 0) goto end;
    d.n_needles = (int32_t)n_needles;
    if (d.task_w[TD_NIAH] > 0 && !haystack) haystack = td_default_haystack();
    if ((rc = td_init_tasks(&d, vm, (int32_t)pk_min, haystack)) != 0) goto end;
    rc = 1;
    const int L = m->c.n_layer, H = m->c.n_head_kv, n = L * H;
    const int64_t E = m->c.n_embd;
    alpha = malloc(sizeof(float) * (size_t)n);
    dalpha = malloc(sizeof(float) * (size_t)n);
    mo = calloc((size_t)n, sizeof(float));
    vo = calloc((size_t)n, sizeof(float));
    smp.tok = malloc(sizeof(int32_t) * (size_t)(seq_len + 1));
    smp.pos = malloc(sizeof(int32_t) * (size_t)(seq_len + 1));
    smp.tgt = malloc(sizeof(int32_t) * (size_t)(seq_len + 1));
    smp.w = malloc(sizeof(float) * (size_t)(seq_len + 1));
    if (!alpha || !dalpha || !mo || !vo || !smp.tok || !smp.pos || !smp.tgt || !smp.w) {
        cli_error("out of memory");
        goto end;
    }
    for (int i = 0; i < n; i++) alpha[i] = 1.0f;
    fprintf(stderr, "identify: %s, %d layers x %d KV heads; sink %lld, window %lld; %lld steps, prompts (%s) of %d..%d tokens\n", model_path, L, H,
            (long long)sink, (long long)window, (long long)steps, tasks, d.pk_min, d.pk_max);
    cli_progress prog;
    cli_progress_start(&prog, "identify");
    const float b1 = 0.9f, b2 = 0.999f;
    double last_loss = 0;
    for (int64_t step = 0; step < steps; step++) {
        td_rng rg = {td_mix64((uint64_t)seed ^ td_mix64((uint64_t)step + 1))};
        if (td_draw_retrieval(&d, &rg, &smp) != 0) goto end;
        lv_tr_seq seq = {smp.T, smp.tok, smp.pos, NULL, NULL};
        if ((s = lv_tr_forward(tp, m, &teacher, &seq, NULL)) != LV_OK) {
            rc = cli_fail("forward", s);
            goto end;
        }
        for (int i = 0; i < n; i++) alpha[i] = alpha[i] < 0 ? 0 : alpha[i] > 1 ? 1 : alpha[i];
        memset(dalpha, 0, sizeof(float) * (size_t)n);
        lv_tr_duo duo = {alpha, dalpha, teacher.att, (int)sink, (int)window};
        if ((s = lv_tr_forward(tp, m, &student, &seq, &duo)) != LV_OK) {
            rc = cli_fail("forward", s);
            goto end;
        }
        /* d loss / d xf at the answer positions: 2 (h_B - h_A) / (N_answer * E) */
        memset(student.dx, 0, sizeof(float) * (size_t)(smp.T * E));
        const int64_t na = smp.ans1 - smp.ans0;
        double mse = 0;
        for (int64_t t = smp.ans0; t < smp.ans1; t++)
            for (int64_t e = 0; e < E; e++) {
                const float diff = student.xf[t * E + e] - teacher.xf[t * E + e];
                mse += (double)diff * diff;
                student.dx[t * E + e] = 2.0f * diff / (float)(na * E);
            }
        mse /= (double)(na * E);
        lv_tr_backward(tp, m, &student, &seq, &duo);
        double mean_a = 0;
        for (int i = 0; i < n; i++) mean_a += alpha[i];
        mean_a /= n;
        last_loss = mse + reg * mean_a;
        const float lr_t = (float)(lr * duo_lr_mult(step, steps));
        const float bc1 = 1.0f - powf(b1, (float)(step + 1)), bc2 = 1.0f - powf(b2, (float)(step + 1));
        for (int i = 0; i < n; i++) {
            const float g = dalpha[i] + (float)(reg / n);
            mo[i] = b1 * mo[i] + (1 - b1) * g;
            vo[i] = b2 * vo[i] + (1 - b2) * g * g;
            alpha[i] -= lr_t * (mo[i] / bc1) / (sqrtf(vo[i] / bc2) + 1e-8f);
        }
        char detail[96];
        snprintf(detail, sizeof(detail), "step %lld/%lld, distance %.3g, mean gate %.3f", (long long)step + 1, (long long)steps, mse, mean_a);
        cli_progress_update(&prog, (double)(step + 1) / (double)steps, detail);
    }
    for (int i = 0; i < n; i++) alpha[i] = alpha[i] < 0 ? 0 : alpha[i] > 1 ? 1 : alpha[i];
    cli_progress_done(&prog, NULL);
    fprintf(stderr, "identify: final loss %.4g\n", last_loss);
    if (write_tsv(out, alpha, L, H) != 0) goto end;
    printf("wrote %s (%d x %d gates)\n", out, L, H);
    if (plot) {
        char title[256];
        snprintf(title, sizeof(title), "%s: DuoAttention gates (sink %lld, window %lld, %lld steps)", model_path, (long long)sink, (long long)window,
                 (long long)steps);
        if (write_map(plot, alpha, L, H, title) != 0) goto end;
        printf("wrote %s\n", plot);
    }
    rc = 0;
end:
    free(alpha), free(dalpha), free(mo), free(vo);
    free(smp.tok), free(smp.pos), free(smp.tgt), free(smp.w);
    td_free(&d);
    lv_tr_state_free(&teacher);
    lv_tr_state_free(&student);
    lv_tmodel_free(m);
    lv_model_free(vm);
    lv_threadpool_free(tp);
    return rc;
}
