/*
 * cmd_heads.c: `longview heads`: look at a DuoAttention head pattern (full_attention_heads.tsv):
 * the gate distribution, the global-quantile threshold at a sparsity, which (layer, KV head) is
 * a retrieval or a streaming head, per-layer counts, a check against a model's shape, and an SVG
 * heat map. The binarization is the library's (lv_head_pattern_binarize), exactly what a context
 * created with these settings uses.
 */
#include "common/cli.h"
#include "commands.h"
#include "common/svg.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* "patterns/<Model>/full_attention_heads.tsv" -> "<Model>" (the parent directory's name), else the file name */
static void pattern_name(const char *path, char *out, size_t size) {
    const char *end = strrchr(path, '/');
    if (!end) {
        snprintf(out, size, "%s", path);
        return;
    }
    const char *start = end;
    while (start > path && start[-1] != '/') start--;
    if (end > start && !(end - start == 1 && start[0] == '.')) snprintf(out, size, "%.*s", (int)(end - start), start);
    else snprintf(out, size, "%s", end + 1);
}

static void file_base(const char *path, char *out, size_t size) {
    const char *s = strrchr(path, '/');
    snprintf(out, size, "%s", s ? s + 1 : path);
}

/* The training settings in config.json beside the TSV, if there is one. */
static void print_config(const char *tsv_path) {
    char cfg[4096];
    const char *slash = strrchr(tsv_path, '/');
    if (slash) snprintf(cfg, sizeof(cfg), "%.*s/config.json", (int)(slash - tsv_path), tsv_path);
    else snprintf(cfg, sizeof(cfg), "config.json");
    json_error_t err;
    json_t *root = json_load_file(cfg, 0, &err);
    if (!root) return;
    json_t *sink = json_object_get(root, "sink_size"), *recent = json_object_get(root, "recent_size");
    json_t *lo = json_object_get(root, "context_length_min"), *hi = json_object_get(root, "context_length_max");
    if (json_is_integer(sink) && json_is_integer(recent)) {
        printf("training:   sink %lld, recent %lld", (long long)json_integer_value(sink), (long long)json_integer_value(recent));
        if (json_is_integer(lo) && json_is_integer(hi))
            printf(", contexts %lld..%lld", (long long)json_integer_value(lo), (long long)json_integer_value(hi));
        printf(" (config.json; longview's defaults are sink 64, window 256 as in the reference's evaluations)\n");
    }
    json_decref(root);
}

static int write_plot(const char *path, const lv_head_pattern *p, const uint8_t *ret, const char *title, double thr) {
    const int nl = lv_head_pattern_n_layer(p), nh = lv_head_pattern_n_head_kv(p);
    if (nl > 512 || nh > 512) {
        cli_error("--plot: a %d x %d pattern is too large to draw (at most 512 x 512)", nl, nh);
        return 1;
    }
    const double cw = nh <= 8 ? 36 : nh <= 16 ? 24 : nh <= 64 ? 14 : 6;
    const double ch = nl <= 32 ? 16 : nl <= 64 ? 10 : 5;
    const double left = 64, top = 64, bar_w = 16;
    double grid_w = cw * nh, grid_h = ch * nl;
    const double width = left + grid_w + 110 > 680 ? left + grid_w + 110 : 680, height = top + grid_h + 56;
    FILE *f = svg_begin(path, width, height);
    if (!f) return 1;
    svg_text(f, 12, 22, 14, "start", "%s", title);
    svg_text(f, 12, 40, 11, "start", "cell colour: gate value (clipped to [0, 1]); red outline: retrieval head; others stream");
    /* head labels */
    const int hstep = cw >= 12 ? 1 : 8;
    for (int h = 0; h < nh; h += hstep) svg_text(f, left + (h + 0.5) * cw, top - 6, 9, "middle", "%d", h);
    const int lstep = ch >= 10 ? 1 : 8;
    for (int l = 0; l < nl; l += lstep) svg_text(f, left - 6, top + (l + 0.5) * ch + 3, 9, "end", "%d", l);
    svg_text_vertical(f, 18, top + grid_h / 2, 11, "layer");
    svg_text(f, left + grid_w / 2, top + grid_h + 18, 11, "middle", "KV head");
    for (int l = 0; l < nl; l++)
        for (int h = 0; h < nh; h++) {
            const float g = lv_head_pattern_gate(p, l, h);
            char col[8], tip[160];
            svg_viridis(g, col);
            snprintf(tip, sizeof(tip), "layer %d head %d: gate %.6g, %s", l, h, (double)g, ret[l * nh + h] ? "retrieval" : "streaming");
            svg_rect(f, left + h * cw, top + l * ch, cw, ch, col, NULL, 0, tip);
        }
    for (int l = 0; l < nl; l++)
        for (int h = 0; h < nh; h++)
            if (ret[l * nh + h]) svg_rect(f, left + h * cw + 1, top + l * ch + 1, cw - 2, ch - 2, "none", "#e41a1c", cw >= 12 && ch >= 10 ? 2 : 1, NULL);
    /* colour bar with the threshold marked */
    const double bx = left + grid_w + 24, by = top, bh = grid_h < 120 ? 120 : grid_h;
    for (int i = 0; i < 100; i++) {
        char col[8];
        svg_viridis(1.0 - (i + 0.5) / 100.0, col);
        svg_rect(f, bx, by + bh * i / 100.0, bar_w, bh / 100.0 + 0.5, col, NULL, 0, NULL);
    }
    svg_rect(f, bx, by, bar_w, bh, "none", "#444444", 0.5, NULL);
    for (int k = 0; k <= 4; k++) svg_text(f, bx + bar_w + 4, by + bh * (1 - k / 4.0) + 3, 9, "start", "%.2f", k / 4.0);
    if (isfinite(thr) && thr >= 0 && thr <= 1.000001) {
        const double y = by + bh * (1 - (thr > 1 ? 1 : thr));
        svg_line(f, bx - 4, y, bx + bar_w + 4, y, "#e41a1c", 2);
        svg_text(f, bx - 6, y - 4, 9, "end", "thr");
    }
    return svg_end(f, path);
}

int cmd_heads(int argc, char **argv) {
    const char *model_path = NULL, *plot = NULL;
    int64_t seed = 42;
    double sparsity = 0.5;
    cli_opt opts[] = {
        {NULL, "--sparsity", CLI_FLOAT, &sparsity, "S", "fraction of KV heads made streaming (default 0.5; 0.75 suits MHA models)", .flo = 0, .fhi = 1},
        {NULL, "--seed", CLI_INT, &seed, "N", "seed of the tie-breaking noise (default 42, as lv_attention_params)", .lo = 0, .hi = INT64_MAX},
        {"-m", "--model", CLI_STR, &model_path, "FILE", "check the pattern's shape against this GGUF model (layers x KV heads)"},
        {NULL, "--plot", CLI_STR, &plot, "OUT.svg", "write an SVG heat map (layers x KV heads, gate as colour, retrieval heads outlined)"},
    };
    const char *pos[1] = {NULL};
    int npos = 0;
    int r = cli_parse(argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0])), "longview heads FILE.tsv [--sparsity S] [--seed N] [-m MODEL] [--plot OUT.svg]",
                      "Show a DuoAttention head pattern (full_attention_heads.tsv: one row of trained gates per layer, one\n"
                      "column per KV head) binarized the way the engine does it: clip to [0, 1], add noise in [0, 1e-6)\n"
                      "from the seed, and keep as retrieval heads those >= the global quantile at the sparsity. Prints the\n"
                      "threshold, the map ('#' retrieval, '.' streaming), per-layer counts and the gate distribution.",
                      pos, 1, &npos);
    if (r) return r > 0 ? 0 : 2;
    if (npos != 1) {
        cli_error("give the pattern file (full_attention_heads.tsv); see --help");
        return 2;
    }
    const char *path = pos[0];
    int rc = 1;
    lv_head_pattern *p = NULL;
    lv_model *model = NULL;
    uint8_t *ret = NULL;
    float *sorted = NULL;
    lv_status st = lv_head_pattern_load(path, &p);
    if (st != LV_OK) {
        cli_fail("loading the head pattern", st);
        goto end;
    }
    const int nl = lv_head_pattern_n_layer(p), nh = lv_head_pattern_n_head_kv(p);
    const int64_t n = (int64_t)nl * nh;
    char name[256], model_name[256] = "";
    pattern_name(path, name, sizeof(name));
    if (model_path) {
        lv_model_params mp = lv_model_default_params();
        if ((st = lv_model_load(model_path, mp, &model)) != LV_OK) {
            cli_fail("loading the model", st);
            goto end;
        }
        file_base(model_path, model_name, sizeof(model_name));
        if (lv_model_n_layer(model) != nl || lv_model_n_head_kv(model) != nh) {
            cli_error("the pattern '%s' is %d layers x %d KV heads but the model '%s' has %d layers x %d KV heads: "
                      "it was trained for another model",
                      path, nl, nh, model_path, lv_model_n_layer(model), lv_model_n_head_kv(model));
            goto end;
        }
    }
    ret = malloc((size_t)n);
    sorted = malloc((size_t)n * sizeof(float));
    if (!ret || !sorted) {
        cli_error("out of memory");
        goto end;
    }
    const int64_t n_ret = lv_head_pattern_binarize(p, (float)sparsity, (uint64_t)seed, ret);
    const double thr = lv_head_pattern_threshold(p, (float)sparsity, (uint64_t)seed);
    if (n_ret < 0) {
        cli_fail("binarizing", LV_ERR_INTERNAL);
        goto end;
    }
    /* distribution of the raw gates */
    int64_t ge_half = 0, below0 = 0, above1 = 0, at1 = 0;
    for (int l = 0; l < nl; l++)
        for (int h = 0; h < nh; h++) {
            const float g = lv_head_pattern_gate(p, l, h);
            sorted[l * nh + h] = g;
            ge_half += g >= 0.5f;
            below0 += g < 0;
            above1 += g > 1;
            at1 += g >= 1;
        }
    qsort(sorted, (size_t)n, sizeof(float), cmp_float);
    const double median = n % 2 ? sorted[n / 2] : 0.5 * ((double)sorted[n / 2 - 1] + (double)sorted[n / 2]);

    printf("pattern:    %s (%s)\n", path, name);
    printf("shape:      %d layers x %d KV heads (%lld gates)\n", nl, nh, (long long)n);
    if (model) printf("model:      %s: %s, %d layers, %d KV heads (%d query heads): the shape matches\n", model_path, lv_model_arch(model),
                      lv_model_n_layer(model), lv_model_n_head_kv(model), lv_model_n_head(model));
    printf("gates:      min %.6g, median %.6g, max %.6g; >= 0.5: %lld of %lld (%.2f); below 0 (clipped): %lld; >= 1: %lld", (double)sorted[0],
           median, (double)sorted[n - 1], (long long)ge_half, (long long)n, (double)ge_half / (double)n, (long long)below0, (long long)at1);
    if (above1) printf(" (%lld above 1, clipped)", (long long)above1);
    printf("\n");
    print_config(path);
    if (isinf(thr)) printf("threshold:  %s (sparsity %g: every head is %s)\n", thr < 0 ? "-inf" : "+inf", sparsity, thr < 0 ? "retrieval" : "streaming");
    else printf("threshold:  %.8f (global quantile %g of the clipped gates plus noise, seed %lld)\n", thr, sparsity, (long long)seed);
    printf("heads:      %lld retrieval (%.1f%%), %lld streaming (%.1f%%)\n\n", (long long)n_ret, 100.0 * (double)n_ret / (double)n,
           (long long)(n - n_ret), 100.0 * (double)(n - n_ret) / (double)n);

    /* map: one row per layer */
    printf("map ('#' retrieval, '.' streaming)\n");
    if (nh > 10) { /* tens digits above the units */
        printf("       ");
        for (int h = 0; h < nh; h++) putchar(h % 10 ? ' ' : (char)('0' + (h / 10) % 10));
        printf("\n");
    }
    printf("layer  ");
    for (int h = 0; h < nh; h++) putchar((char)('0' + h % 10));
    printf("  retrieval\n");
    int empty_layers = 0, full_layers = 0;
    for (int l = 0; l < nl; l++) {
        int c = 0;
        printf("%5d  ", l);
        for (int h = 0; h < nh; h++) {
            putchar(ret[l * nh + h] ? '#' : '.');
            c += ret[l * nh + h];
        }
        printf("  %*d/%d\n", nh >= 10 ? 3 : 2, c, nh);
        empty_layers += c == 0;
        full_layers += c == nh;
    }
    printf("total: %lld retrieval, %lld streaming; %d layer%s all streaming, %d layer%s all retrieval\n", (long long)n_ret, (long long)(n - n_ret),
           empty_layers, empty_layers == 1 ? "" : "s", full_layers, full_layers == 1 ? "" : "s");
    /* per head index: retrieval heads sit unevenly across the KV heads too */
    printf("per KV head:");
    for (int h = 0; h < nh; h++) {
        int c = 0;
        for (int l = 0; l < nl; l++) c += ret[l * nh + h];
        printf(" %d", c);
    }
    printf("\n");

    if (plot) {
        char title[512];
        snprintf(title, sizeof(title), "%s: sparsity %g, threshold %.4f, %lld/%lld retrieval heads", model_name[0] ? model_name : name, sparsity,
                 isfinite(thr) ? thr : (thr < 0 ? -1.0 : 2.0), (long long)n_ret, (long long)n);
        if (write_plot(plot, p, ret, title, thr) != 0) goto end;
        fprintf(stderr, "wrote %s\n", plot);
    }
    rc = 0;
end:
    free(ret);
    free(sorted);
    lv_model_free(model);
    lv_head_pattern_free(p);
    return rc;
}
