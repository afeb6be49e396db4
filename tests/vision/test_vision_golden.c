/*
 * test_vision_golden.c: longview's vision encoders against llama.cpp's mtmd (the LVV1 files in
 * tests/golden/vision/, made by scripts/gen-vision-golden.sh; format in tests/golden/README.md).
 *
 * Every `embed` case is a test: the same mmproj file and image(s) through lv_mmproj_encode_file
 * (decode, preprocessing, tower, projector), compared chunk by chunk (count, tokens, grid, position
 * advance) and element by element. Tolerance (docs/testing.md, "Vision goldens"): per token, max
 * |longview - mtmd| over the case's max |mtmd|; the median token within 2e-5 and every token
 * within 1e-3 (q8_0 weights: 2e-2). Both implementations round GELU through ggml's f16 tables
 * (and q8_0 activations to 8 bits), so an input within float noise of a rounding boundary can
 * round the other way: the median token agrees to 0 (qwen2.5vl) .. 7e-6 (qwen2vl's QuickGELU), a
 * few tokens per file to a few 1e-4 (q8_0: 1.4e-2).
 */
#include "lv_test.h"
#include "vision/vision.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN_DIR "tests/golden/vision"

typedef struct lvv_chunk {
    bool image;
    int32_t n_tokens, n_pos, nx, ny;
} lvv_chunk;

typedef struct lvv {
    char name[128], kind[16], mmproj[128], images[4][128], projector[32];
    int n_images, n_chunks, n_embd, n_image_tokens;
    bool mergeable, mrope;
    lvv_chunk chunks[64];
    float *embd;
} lvv;

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)sz + 1);
    if (p && fread(p, 1, (size_t)sz, f) != (size_t)sz) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) p[sz] = 0;
    *n = (size_t)sz;
    return p;
}

static bool lvv_parse(const char *path, lvv *g) {
    memset(g, 0, sizeof(*g));
    size_t n;
    char *buf = read_all(path, &n);
    if (!buf) return false;
    char *body = strstr(buf, "\nend\n");
    if (!body || strncmp(buf, "LVV1\n", 5) != 0) {
        free(buf);
        return false;
    }
    *body = 0;
    body += 5;
    char *save = NULL;
    for (char *line = strtok_r(buf + 5, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq) continue;
        *eq = 0;
        const char *k = line, *v = eq + 1;
        if (!strcmp(k, "name")) snprintf(g->name, sizeof(g->name), "%s", v);
        else if (!strcmp(k, "kind")) snprintf(g->kind, sizeof(g->kind), "%s", v);
        else if (!strcmp(k, "projector")) snprintf(g->projector, sizeof(g->projector), "%s", v);
        else if (!strcmp(k, "mmproj")) snprintf(g->mmproj, sizeof(g->mmproj), "%s", v);
        else if (!strcmp(k, "images")) {
            for (const char *s = v; *s && g->n_images < 4;) {
                const size_t len = strcspn(s, " ");
                if (len) snprintf(g->images[g->n_images++], 128, "%.*s", (int)len, s);
                s += len + (s[len] == ' ');
            }
        } else if (!strcmp(k, "mergeable")) g->mergeable = atoi(v) != 0;
        else if (!strcmp(k, "mrope")) g->mrope = atoi(v) != 0;
        else if (!strcmp(k, "n_embd")) g->n_embd = atoi(v);
        else if (!strcmp(k, "n_image_tokens")) g->n_image_tokens = atoi(v);
        else if (!strncmp(k, "chunk.", 6) && g->n_chunks < 64) {
            lvv_chunk *c = &g->chunks[g->n_chunks++];
            c->image = strncmp(v, "image", 5) == 0;
            const char *p;
            if ((p = strstr(v, "n_tokens="))) c->n_tokens = atoi(p + 9);
            if ((p = strstr(v, "n_pos="))) c->n_pos = atoi(p + 6);
            if ((p = strstr(v, "nx="))) c->nx = atoi(p + 3);
            if ((p = strstr(v, "ny="))) c->ny = atoi(p + 3);
        }
    }
    bool ok = g->n_embd > 0 && g->n_image_tokens > 0 && (size_t)(body - buf) + sizeof(float) * (size_t)g->n_image_tokens * (size_t)g->n_embd <= n;
    if (ok && !strcmp(g->kind, "embed")) {
        g->embd = malloc(sizeof(float) * (size_t)g->n_image_tokens * (size_t)g->n_embd);
        memcpy(g->embd, body, sizeof(float) * (size_t)g->n_image_tokens * (size_t)g->n_embd);
    }
    free(buf);
    return ok;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void run_embed_case(const void *arg) {
    const char *file = arg;
    char path[512];
    snprintf(path, sizeof(path), GOLDEN_DIR "/%s", file);
    lvv g;
    REQUIRE(lvv_parse(path, &g), "%s: not a valid LVV1 file", path);
    char mp[512];
    snprintf(mp, sizeof(mp), GOLDEN_DIR "/%s", g.mmproj);
    lv_mmproj *mm = NULL;
    lv_status st = lv_mmproj_load(mp, g.n_embd, &mm);
    REQUIRE(st == LV_OK, "%s: %s", mp, lv_last_error());
    CHECK(strcmp(lv_mmproj_projector(mm), g.projector) == 0, "projector %s, golden %s", lv_mmproj_projector(mm), g.projector);
    lv_threadpool *tp = lv_threadpool_create(2);
    /* longview's chunks of all images, in order */
    lv_image_chunk got[64];
    int n_got = 0;
    float *embd = malloc(sizeof(float) * (size_t)g.n_image_tokens * (size_t)g.n_embd);
    int64_t rows = 0;
    bool ok = true;
    if (g.mergeable) {
        REQUIRE(g.n_images == 2, "a pair has two images");
        char p0[512], p1[512];
        snprintf(p0, sizeof(p0), GOLDEN_DIR "/%s", g.images[0]);
        snprintf(p1, sizeof(p1), GOLDEN_DIR "/%s", g.images[1]);
        uint8_t *a = NULL, *b = NULL;
        int32_t wa, ha, wb, hb;
        REQUIRE(lv_image_decode_file(p0, &a, &wa, &ha) == LV_OK && lv_image_decode_file(p1, &b, &wb, &hb) == LV_OK, "%s", lv_last_error());
        lv_image_embd e;
        st = lv_mmproj_encode_pair(mm, tp, a, b, wa, ha, &e);
        CHECK(st == LV_OK, "%s: %s", g.name, lv_last_error());
        if (st == LV_OK && e.n_tokens == g.n_image_tokens) {
            memcpy(embd, e.embd, sizeof(float) * (size_t)e.n_tokens * (size_t)e.n_embd);
            rows = e.n_tokens;
            for (int i = 0; i < e.n_chunks && n_got < 64; i++) got[n_got++] = e.chunks[i];
        } else {
            ok = false;
        }
        lv_image_embd_free(&e);
        lv_image_rgb_free(a);
        lv_image_rgb_free(b);
    } else {
        for (int im = 0; im < g.n_images && ok; im++) {
            char p[512];
            snprintf(p, sizeof(p), GOLDEN_DIR "/%s", g.images[im]);
            lv_image_embd e;
            st = lv_mmproj_encode_file(mm, tp, p, &e);
            CHECK(st == LV_OK, "%s: %s", p, lv_last_error());
            if (st != LV_OK || rows + e.n_tokens > g.n_image_tokens) {
                CHECK(st != LV_OK, "%s: %lld + %d tokens, the golden has %d", g.name, (long long)rows, e.n_tokens, g.n_image_tokens);
                ok = false;
            } else {
                memcpy(embd + rows * g.n_embd, e.embd, sizeof(float) * (size_t)e.n_tokens * (size_t)e.n_embd);
                rows += e.n_tokens;
                for (int i = 0; i < e.n_chunks && n_got < 64; i++) got[n_got++] = e.chunks[i];
            }
            lv_image_embd_free(&e);
        }
    }
    /* the chunk structure */
    int gi = 0;
    for (int i = 0; i < g.n_chunks; i++) {
        const lvv_chunk *c = &g.chunks[i];
        if (!c->image) continue;
        if (gi >= n_got) {
            CHECK(false, "%s: mtmd has more image chunks than longview's %d", g.name, n_got);
            break;
        }
        const lv_image_chunk *l = &got[gi++];
        CHECK(l->n_tokens == c->n_tokens, "%s chunk %d: %d tokens, mtmd %d", g.name, gi - 1, l->n_tokens, c->n_tokens);
        /* mtmd's grid and position advance are the M-RoPE ones only with an M-RoPE text model */
        if (g.mrope) {
            CHECK(l->nx == c->nx && l->ny == c->ny, "%s chunk %d: grid %dx%d, mtmd %dx%d", g.name, gi - 1, l->nx, l->ny, c->nx, c->ny);
            CHECK(l->n_pos == c->n_pos, "%s chunk %d: n_pos %d, mtmd %d", g.name, gi - 1, l->n_pos, c->n_pos);
        } else {
            CHECK(c->n_pos == c->n_tokens, "%s: 1-D positions advance by n_tokens", g.name);
        }
    }
    CHECK(gi == n_got, "%s: longview made %d image chunks, mtmd %d", g.name, n_got, gi);
    if (ok && rows == g.n_image_tokens) {
        double mx = 0;
        for (int64_t i = 0; i < rows * g.n_embd; i++) mx = fmax(mx, fabs(g.embd[i]));
        double *tok = malloc(sizeof(double) * (size_t)rows), worst = 0;
        for (int64_t t = 0; t < rows; t++) {
            double d = 0;
            for (int64_t i = t * g.n_embd; i < (t + 1) * g.n_embd; i++) d = fmax(d, fabs((double)embd[i] - g.embd[i]));
            tok[t] = d / mx;
            worst = fmax(worst, tok[t]);
        }
        qsort(tok, (size_t)rows, sizeof(double), cmp_d);
        const bool q8 = strstr(g.mmproj, "q8_0") != NULL;
        const double lim_med = 2e-5, lim_max = q8 ? 2e-2 : 1e-3;
        CHECK(tok[rows / 2] <= lim_med && worst <= lim_max, "%s: |longview - mtmd| / max |mtmd|: median token %.3g (limit %.3g), worst %.3g (limit %.3g)",
              g.name, tok[rows / 2], lim_med, worst, lim_max);
        free(tok);
    } else {
        CHECK(false, "%s: longview gave %lld embedding rows, mtmd %d", g.name, (long long)rows, g.n_image_tokens);
    }
    free(embd);
    free(g.embd);
    lv_threadpool_free(tp);
    lv_mmproj_free(mm);
}

/* one test per embed golden, registered at start-up */
__attribute__((constructor)) static void register_vision_goldens(void) {
    DIR *d = opendir(GOLDEN_DIR);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".lvv") != 0 || strncmp(e->d_name, "logits-", 7) == 0) continue;
        char *file = malloc(n + 1), *name = malloc(n + 32);
        memcpy(file, e->d_name, n + 1);
        snprintf(name, n + 32, "vision_golden_%.*s", (int)(n - 4), e->d_name);
        lv_test_register_arg(name, run_embed_case, file);
    }
    closedir(d);
}
