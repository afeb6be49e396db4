/*
 * test_vision_golden.c: longview's vision encoders against llama.cpp's mtmd (the LVV1 files in
 * tests/golden/vision/, made by scripts/gen-vision-golden.sh; format in tests/golden/README.md).
 *
 * Every `embed` case is a test: the same mmproj file and image(s) through lv_mmproj_encode_file
 * (decode, preprocessing, tower, projector), compared chunk by chunk (count, tokens, grid, position
 * advance) and element by element. Tolerance (docs/testing.md, "Vision goldens"): per token, max
 * |longview - mtmd| over the case's max |mtmd|. f32 weights: the median token within 5e-5, every
 * token within 1e-3; f16 weights 1e-3 and 2e-3; q8_0 weights 1e-3 and 2e-2. Both implementations
 * round GELU through ggml's f16 tables and the activations of an f16 / q8_0 matrix to f16 / 8
 * bits, so a value within float noise (the two attention kernels differ by ~1e-6) of a rounding
 * boundary rounds the other way: f32 files agree to 0 .. 4e-5 on the median token, a few tokens
 * to a few 1e-4; the f16 file (every matrix input rounded) to 3e-4; q8_0 to 1.4e-2 at worst.
 */
#include "lv_test.h"
#include "sha256.h"
#include "train/train.h"
#include "train/tvpair.h"
#include "vision/vision.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN_DIR "tests/golden/vision"
#define GOLDEN_ROOT "tests/golden"

typedef struct lvv_chunk {
    bool image;
    int32_t n_tokens, n_pos, nx, ny;
    int32_t ids[256]; /* text chunks: their first (up to 256) token ids */
} lvv_chunk;

typedef struct lvv {
    char name[128], kind[16], mmproj[128], images[4][128], projector[32], gen[512], sha[80], prompt[256], text_file[128];
    char pair_gen[128], pair_files[512], mm_sha[80]; /* tests/golden/tvision: the trainer's pair, generated or shipped */
    int n_images, n_chunks, n_embd, n_image_tokens, n_seq, n_vocab, n_out;
    bool mergeable, mrope;
    lvv_chunk chunks[64];
    float *embd;
    float *logits; /* logits cases: n_out x n_vocab */
    int32_t *pos4; /* logits cases with mrope=1: n_seq x (t, h, w, e) */
} lvv;

static bool lvv_parse(const char *path, lvv *g) {
    memset(g, 0, sizeof(*g));
    size_t n;
    char *buf = lv_test_read_file(path, &n);
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
        else if (!strcmp(k, "text_gen_model")) snprintf(g->gen, sizeof(g->gen), "%s", v);
        else if (!strcmp(k, "text_sha256")) snprintf(g->sha, sizeof(g->sha), "%s", v);
        else if (!strcmp(k, "text_model")) snprintf(g->text_file, sizeof(g->text_file), "%s", v);
        else if (!strcmp(k, "pair_gen")) snprintf(g->pair_gen, sizeof(g->pair_gen), "%s", v);
        else if (!strcmp(k, "pair_files")) snprintf(g->pair_files, sizeof(g->pair_files), "%s", v);
        else if (!strcmp(k, "mmproj_sha256")) snprintf(g->mm_sha, sizeof(g->mm_sha), "%s", v);
        else if (!strcmp(k, "prompt")) snprintf(g->prompt, sizeof(g->prompt), "%s", v);
        else if (!strcmp(k, "n_seq")) g->n_seq = atoi(v);
        else if (!strcmp(k, "n_vocab")) g->n_vocab = atoi(v);
        else if (!strcmp(k, "n_out")) g->n_out = atoi(v);
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
            if ((p = strstr(v, "ids="))) {
                p += 4;
                for (int j = 0; j < c->n_tokens && j < 256; j++) {
                    c->ids[j] = (int32_t)strtol(p, (char **)&p, 10);
                    if (*p == ',') p++;
                }
            }
        }
    }
    bool ok = g->n_embd > 0 && g->n_image_tokens > 0 && (size_t)(body - buf) + sizeof(float) * (size_t)g->n_image_tokens * (size_t)g->n_embd <= n;
    if (ok && !strcmp(g->kind, "embed")) {
        g->embd = malloc(sizeof(float) * (size_t)g->n_image_tokens * (size_t)g->n_embd);
        memcpy(g->embd, body, sizeof(float) * (size_t)g->n_image_tokens * (size_t)g->n_embd);
    }
    if (ok && !strcmp(g->kind, "logits")) { /* ids, pos (n_seq each), embd, logits */
        const size_t off = 8 * (size_t)g->n_seq + sizeof(float) * (size_t)g->n_image_tokens * (size_t)g->n_embd;
        const size_t nl = (size_t)g->n_out * (size_t)g->n_vocab;
        ok = g->n_out > 0 && g->n_vocab > 0 && (size_t)(body - buf) + off + sizeof(float) * nl <= n;
        if (ok) {
            g->logits = malloc(sizeof(float) * nl);
            memcpy(g->logits, body + off, sizeof(float) * nl);
            g->embd = malloc(sizeof(float) * (size_t)g->n_image_tokens * (size_t)g->n_embd);
            memcpy(g->embd, body + 8 * (size_t)g->n_seq, sizeof(float) * (size_t)g->n_image_tokens * (size_t)g->n_embd);
        }
        const size_t off4 = off + sizeof(float) * nl, n4 = 4 * (size_t)g->n_seq;
        if (ok && g->mrope && (size_t)(body - buf) + off4 + sizeof(int32_t) * n4 <= n) {
            g->pos4 = malloc(sizeof(int32_t) * n4);
            memcpy(g->pos4, body + off4, sizeof(int32_t) * n4);
        } else if (ok && g->mrope) {
            ok = false;
        }
    }
    free(buf);
    return ok;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The mmproj (and, for a trainer pair, the text model) of a golden. tests/golden/vision: the
 * committed mmproj file. tests/golden/tvision: `pair_gen` = the trainer-initialised pair of
 * tests/train/tvpair.h, written again here with the trainer's exporters, or `pair_files` = a
 * shipped pair's two files; either way both files' SHA-256 must equal the golden's, so the
 * comparison is with what llama.cpp ran on (a changed exporter or initialiser fails here: rerun
 * scripts/gen-tvision-golden.sh after checking why). text is "" for tests/golden/vision. */
static bool golden_files(const lvv *g, char *mm, size_t mm_n, char *text, size_t text_n) {
    text[0] = 0;
    if (!g->pair_gen[0] && !g->pair_files[0]) {
        snprintf(mm, mm_n, GOLDEN_DIR "/%s", g->mmproj);
        return true;
    }
    if (g->pair_gen[0]) {
        tvpair_spec sp;
        if (!tvpair_parse(g->pair_gen, &sp)) {
            lv_test_fail(__FILE__, __LINE__, "%s: bad pair_gen '%s'", g->name, g->pair_gen);
            return false;
        }
        snprintf(mm, mm_n, "%s/%s-mmproj.gguf", lv_test_tmpdir(), g->name);
        snprintf(text, text_n, "%s/%s-text.gguf", lv_test_tmpdir(), g->name);
        if (tvpair_write(&sp, text, mm) != LV_OK) {
            lv_test_fail(__FILE__, __LINE__, "%s: writing the trainer pair: %s", g->name, lv_last_error());
            return false;
        }
    } else if (sscanf(g->pair_files, "%255s %255s", text, mm) != 2) {
        lv_test_fail(__FILE__, __LINE__, "%s: bad pair_files '%s'", g->name, g->pair_files);
        return false;
    }
    char hm[65], ht[65];
    if (lv_sha256_file(mm, hm) != 0 || lv_sha256_file(text, ht) != 0 || strcmp(hm, g->mm_sha) != 0 || strcmp(ht, g->sha) != 0) {
        lv_test_fail(__FILE__, __LINE__, "%s: the pair (%s) is not the one llama.cpp ran on: mmproj %s (golden %.12s), text %s (golden %.12s)", g->name,
                     g->pair_gen[0] ? g->pair_gen : g->pair_files, hm, g->mm_sha, ht, g->sha);
        return false;
    }
    return true;
}

/* A trainer pair's image of exactly the tile size is its own first tile (no resampling in mtmd's
 * preprocessing): the trainer's forward pass (lv_tv_forward, f32 weights, exact GELU and im2col)
 * on its pixels against mtmd's first chunk, within the bound the trainer and the engine are held
 * to (tests/train/test_tvision.c: 4e-3 (f32 file) / 6e-3 (f16 file) of the largest embedding;
 * the engine rounds im2col and GELU through f16 as ggml does, the trainer does not). So what the
 * trainer optimises is what llama.cpp computes. */
static void check_trainer_forward(const lvv *g, lv_threadpool *tp) {
    tvpair_spec sp;
    lv_tvmodel *m = NULL;
    if (!g->pair_gen[0] || g->n_images != 1 || !tvpair_parse(g->pair_gen, &sp)) return;
    if (tvpair_tower(&sp, &m) != LV_OK) {
        CHECK(false, "%s: the trainer's tower: %s", g->name, lv_last_error());
        return;
    }
    char p[512];
    snprintf(p, sizeof(p), GOLDEN_DIR "/%s", g->images[0]);
    uint8_t *rgb = NULL;
    int32_t w = 0, h = 0;
    CHECK(lv_image_decode_file(p, &rgb, &w, &h) == LV_OK, "%s: %s", p, lv_last_error());
    if (rgb && w == m->c.image_size && h == m->c.image_size) { /* else: resampled by mtmd, not the trainer's input */
        const int64_t side = m->c.image_size / m->c.patch_size / m->c.scale_factor, n = side * side * m->c.n_text_embd;
        float *out = malloc(sizeof(float) * (size_t)n);
        lv_tv_state st = {0};
        CHECK(lv_tv_forward(tp, m, &st, rgb, 1, out) == LV_OK, "%s: trainer forward: %s", g->name, lv_last_error());
        double mx = 0, worst = 0;
        for (int64_t i = 0; i < n; i++) {
            mx = fmax(mx, fabs(g->embd[i]));
            worst = fmax(worst, fabs((double)out[i] - g->embd[i]));
        }
        const double lim = sp.f16 ? 6e-3 : 4e-3;
        fprintf(stderr, "    %s: trainer forward vs mtmd: max |diff| %.3g of max |embedding| %.3g (%.3g)\n", g->name, worst, mx, worst / mx);
        CHECK(worst <= lim * mx, "%s: the trainer's forward pass differs from mtmd's tile by %.3g of the largest embedding (limit %.3g)", g->name,
              worst / mx, lim);
        free(out);
        lv_tv_state_free(&st);
    }
    lv_image_rgb_free(rgb);
    lv_tvmodel_free(m);
}

static void run_embed_case(const void *arg) {
    const char *file = arg;
    char path[512];
    snprintf(path, sizeof(path), GOLDEN_ROOT "/%s", file);
    lvv g;
    REQUIRE(lvv_parse(path, &g), "%s: not a valid LVV1 file", path);
    char mp[512], tpath[512];
    REQUIRE(golden_files(&g, mp, sizeof(mp), tpath, sizeof(tpath)), "%s: files", g.name);
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
        const bool q8 = strstr(g.mmproj, "q8_0") != NULL, f16 = strstr(g.mmproj, "f16") != NULL;
        const double lim_med = q8 || f16 ? 1e-3 : 5e-5, lim_max = q8 ? 2e-2 : f16 ? 2e-3 : 1e-3;
        CHECK(tok[rows / 2] <= lim_med && worst <= lim_max, "%s: |longview - mtmd| / max |mtmd|: median token %.3g (limit %.3g), worst %.3g (limit %.3g)",
              g.name, tok[rows / 2], lim_med, worst, lim_max);
        fprintf(stderr, "    %s: |longview - mtmd| / max |mtmd|: median token %.3g, worst %.3g\n", g.name, tok[rows / 2], worst);
        free(tok);
        check_trainer_forward(&g, tp);
    } else {
        CHECK(false, "%s: longview gave %lld embedding rows, mtmd %d", g.name, (long long)rows, g.n_image_tokens);
    }
    free(embd);
    free(g.embd);
    lv_threadpool_free(tp);
    lv_mmproj_free(mm);
}

/* The text model of a logits case: `longview gen-model` arguments in the header, regenerated here
 * and checked against the recorded SHA-256. */
static lv_model *text_model(const lvv *g, const char *pair_text) {
    if (pair_text[0]) { /* a trainer pair's, checked by golden_files */
        lv_model *m = NULL;
        return lv_model_load(pair_text, lv_model_default_params(), &m) == LV_OK ? m : NULL;
    }
    if (g->text_file[0]) { /* a committed file */
        char path[512], hex[65];
        snprintf(path, sizeof(path), GOLDEN_DIR "/%s", g->text_file);
        if (lv_sha256_file(path, hex) != 0 || strcmp(hex, g->sha) != 0) return NULL;
        lv_model *m = NULL;
        return lv_model_load(path, lv_model_default_params(), &m) == LV_OK ? m : NULL;
    }
    lv_genmodel_params gp = lv_genmodel_default_params();
    char buf[512], vocab[256] = "";
    snprintf(buf, sizeof(buf), "%s", g->gen);
    char *save = NULL;
    for (char *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        char *v = strtok_r(NULL, " ", &save);
        if (!v) return NULL;
        if (!strcmp(t, "--arch")) gp.arch = !strcmp(v, "llama") ? "llama" : !strcmp(v, "qwen2vl") ? "qwen2vl" : "qwen2";
        else if (!strcmp(t, "--dim")) gp.n_embd = atoi(v);
        else if (!strcmp(t, "--layers")) gp.n_layer = atoi(v);
        else if (!strcmp(t, "--heads")) gp.n_head = atoi(v);
        else if (!strcmp(t, "--ffn")) gp.n_ff = atoi(v);
        else if (!strcmp(t, "--vocab")) snprintf(vocab, sizeof(vocab), "%s", v);
        else if (!strcmp(t, "--seed")) gp.seed = (uint64_t)atoll(v);
        else if (!strcmp(t, "--type") && strcmp(v, "f32") != 0) return NULL;
    }
    gp.vocab_path = vocab;
    char path[512], hex[65];
    snprintf(path, sizeof(path), "%s/%s-text.gguf", lv_test_tmpdir(), g->name);
    if (lv_genmodel_write(&gp, path) != LV_OK || lv_sha256_file(path, hex) != 0 || strcmp(hex, g->sha) != 0) {
        lv_test_fail(__FILE__, __LINE__, "%s: the regenerated text model differs from the golden's (%s)", g->name, g->gen);
        return NULL;
    }
    lv_model *m = NULL;
    return lv_model_load(path, lv_model_default_params(), &m) == LV_OK ? m : NULL;
}

/* End to end against llama.cpp: the prompt through lv_mm_tokenize (chunks and ids as mtmd's), our
 * encoder's embeddings in the batch (M-RoPE models: at the oracle's four positions per row), and
 * the logits of the text after the image (the last n_out rows), within 1e-3 of max |logit| (the
 * embeddings differ by up to a few 1e-4, see above; the committed qwen2vl text model is f16, whose
 * activation rounding flips turn that into a few 1e-4 of the logits); and lv_mm_decode, which
 * assigns the positions itself, gives the batch's last row. Then the text model alone: the same
 * batch with mtmd's embeddings, within 1e-3 (measured: f32 text models 3e-7 .. 2e-6, the f16
 * qwen2vl one 1.7e-4).
 * The trainer's f16 pair (tests/golden/tvision, "f16" in the mmproj name) is held to 4e-3 end to
 * end and 2e-3 alone: its text model has logits up to 9.5 (trainer init std 0.2, where the tiny
 * gen-model ones stay below 0.6), so both the f16 rounding flips of its own activations (measured
 * 2.8e-4 with mtmd's embeddings) and the f16 tower's embedding differences (4e-4, see above;
 * 2.2e-3 end to end) show more. */
static void run_logits_case(const void *arg) {
    const char *file = arg;
    char path[512];
    snprintf(path, sizeof(path), GOLDEN_ROOT "/%s", file);
    lvv g;
    REQUIRE(lvv_parse(path, &g), "%s: not a valid LVV1 file", path);
    char mp[512], tpath[512];
    REQUIRE(golden_files(&g, mp, sizeof(mp), tpath, sizeof(tpath)), "%s: files", g.name);
    lv_model *model = text_model(&g, tpath);
    REQUIRE(model, "%s: text model: %s", g.name, lv_last_error());
    lv_mmproj *mm = NULL;
    REQUIRE(lv_mmproj_load(mp, lv_model_n_embd(model), &mm) == LV_OK, "%s", lv_last_error());
    lv_threadpool *tp = lv_threadpool_create(2);
    lv_image_embd im[4];
    for (int i = 0; i < g.n_images; i++) {
        char ip[512];
        snprintf(ip, sizeof(ip), GOLDEN_DIR "/%s", g.images[i]);
        REQUIRE(lv_mmproj_encode_file(mm, tp, ip, &im[i]) == LV_OK, "%s", lv_last_error());
    }
    lv_mm_prompt p;
    REQUIRE(lv_mm_tokenize(model, g.prompt, -1, im, g.n_images, true, &p) == LV_OK, "%s", lv_last_error());
    /* the chunks: same count, kinds, sizes and text ids as mtmd's */
    CHECK(p.n_chunks == g.n_chunks, "%s: %d chunks, mtmd %d", g.name, p.n_chunks, g.n_chunks);
    for (int i = 0; i < p.n_chunks && i < g.n_chunks; i++) {
        const lv_mm_chunk *c = &p.chunks[i];
        CHECK((c->tokens == NULL) == g.chunks[i].image && c->n_tokens == g.chunks[i].n_tokens, "%s chunk %d: %s of %d, mtmd %s of %d", g.name, i,
              c->tokens ? "text" : "image", c->n_tokens, g.chunks[i].image ? "image" : "text", g.chunks[i].n_tokens);
        if (c->tokens && !g.chunks[i].image && c->n_tokens == g.chunks[i].n_tokens) {
            int diff = 0;
            for (int j = 0; j < c->n_tokens && j < 256; j++) diff += c->tokens[j] != g.chunks[i].ids[j];
            CHECK(diff == 0, "%s chunk %d: %d token ids differ from mtmd's", g.name, i, diff);
        }
    }
    REQUIRE(p.n_rows == g.n_seq, "%s: %d rows, mtmd %d", g.name, p.n_rows, g.n_seq);
    lv_context_params cp = lv_context_default_params();
    cp.n_ctx = 256;
    cp.n_batch = cp.n_ubatch = 256;
    cp.kv_type = LV_KV_F32;
    cp.threadpool = tp;
    lv_context *ctx = NULL;
    REQUIRE(lv_context_create(model, cp, &ctx) == LV_OK, "%s", lv_last_error());
    lv_batch b = lv_batch_init_embd(g.n_seq, lv_model_n_embd(model));
    const int64_t E = lv_model_n_embd(model);
    int32_t n = 0;
    for (int i = 0; i < p.n_chunks; i++)
        for (int j = 0; j < p.chunks[i].n_tokens; j++, n++) {
            b.token[n] = p.chunks[i].tokens ? p.chunks[i].tokens[j] : LV_TOKEN_EMBD;
            if (!p.chunks[i].tokens) memcpy(b.embd + n * E, p.chunks[i].embd + j * E, sizeof(float) * (size_t)E);
            b.pos[n] = n;
            b.seq_id[n] = 0;
            b.logits[n] = n >= g.n_seq - g.n_out;
        }
    b.n_tokens = n;
    if (g.mrope) { /* the oracle's four positions per row (rows of n) */
        REQUIRE(g.pos4 && lv_model_n_pos_per_token(model) == 4, "%s: M-RoPE positions", g.name);
        for (int i = 0; i < n; i++)
            for (int k = 0; k < 4; k++) b.pos_mrope[k * n + i] = g.pos4[4 * i + k];
    } else {
        lv_free(b.pos_mrope); /* 1-D model */
        b.pos_mrope = NULL;
    }
    REQUIRE(lv_decode(ctx, &b) == LV_OK, "%s", lv_last_error());
    double worst = 0, mx = 0;
    for (int r = 0; r < g.n_out; r++) {
        const float *lg = lv_get_logits_ith(ctx, g.n_seq - g.n_out + r), *gl = g.logits + (size_t)r * g.n_vocab;
        REQUIRE(lg, "no logits for row %d", r);
        for (int v = 0; v < g.n_vocab; v++) {
            worst = fmax(worst, fabs(lg[v] - gl[v]));
            mx = fmax(mx, fabs(gl[v]));
        }
    }
    fprintf(stderr, "    %s: max |longview - llama.cpp| logit %.3g, max |logit| %.3g (%.3g)\n", g.name, worst, mx, worst / mx);
    const bool f16_pair = (g.pair_gen[0] || g.pair_files[0]) && strstr(g.mmproj, "f16") != NULL;
    const double lim_e2e = f16_pair ? 4e-3 : 1e-3, lim_alone = f16_pair ? 2e-3 : 1e-3;
    CHECK(worst <= lim_e2e * mx, "%s: max |longview - llama.cpp| logit %.3g, max |logit| %.3g (limit %.3g of it)", g.name, worst, mx, lim_e2e);
    /* lv_mm_decode on a fresh sequence gives the same last row */
    float *last = malloc(sizeof(float) * (size_t)g.n_vocab);
    memcpy(last, lv_get_logits_ith(ctx, -1), sizeof(float) * (size_t)g.n_vocab);
    CHECK(lv_kv_seq_rm(ctx, 0, 0, -1) == LV_OK, "clear");
    lv_pos n_past = 0;
    CHECK(lv_mm_decode(ctx, &p, 0, &n_past) == LV_OK && n_past == g.n_seq, "lv_mm_decode: %s", lv_last_error());
    const float *lm = lv_get_logits_ith(ctx, -1);
    double d2 = 0;
    for (int v = 0; lm && v < g.n_vocab; v++) d2 = fmax(d2, fabs(lm[v] - last[v]));
    CHECK(lm && d2 <= 1e-5 * mx, "%s: lv_mm_decode's last row differs from the batch's by %.3g", g.name, d2);
    free(last);
    /* the text model alone: the same batch with mtmd's own embeddings in the image rows */
    CHECK(lv_kv_seq_rm(ctx, 0, 0, -1) == LV_OK, "clear");
    for (int32_t i = 0, k = 0; i < n; i++)
        if (b.token[i] == LV_TOKEN_EMBD) memcpy(b.embd + i * E, g.embd + (int64_t)k++ * E, sizeof(float) * (size_t)E);
    REQUIRE(lv_decode(ctx, &b) == LV_OK, "%s", lv_last_error());
    double wt = 0;
    for (int r = 0; r < g.n_out; r++) {
        const float *lg = lv_get_logits_ith(ctx, g.n_seq - g.n_out + r), *gl = g.logits + (size_t)r * g.n_vocab;
        for (int v = 0; lg && v < g.n_vocab; v++) wt = fmax(wt, fabs(lg[v] - gl[v]));
    }
    fprintf(stderr, "    %s: with mtmd's embeddings: max |longview - llama.cpp| logit %.3g (%.3g)\n", g.name, wt, wt / mx);
    CHECK(wt <= lim_alone * mx, "%s: with mtmd's embeddings, max |longview - llama.cpp| logit %.3g, max |logit| %.3g (limit %.3g of it)", g.name, wt, mx,
          lim_alone);
    lv_batch_free(&b);
    lv_context_free(ctx);
    lv_mm_prompt_free(&p);
    for (int i = 0; i < g.n_images; i++) lv_image_embd_free(&im[i]);
    lv_threadpool_free(tp);
    lv_mmproj_free(mm);
    lv_model_free(model);
    free(g.logits);
    free(g.embd);
    free(g.pos4);
}

/* The trainer's pair (tests/train/tvpair.h, the f16 shuffle-4 variant) as longview reads it: every
 * key of the mmproj back as the trainer's configuration, the text model's width and vocabulary,
 * the width check between the two; and the vocabulary rule of mtmd's idefics3 prompts: mtmd looks
 * its overview markers "\n\n", <fake_token_around_image>, <global-img> up as whole tokens
 * (mtmd.cpp lookup_token), so with builtin:bytes they become token -1 and llama_decode fails
 * ("invalid token[0] = -1", seen with oracle/lv_mtmd); lv_mm_tokenize refuses the prompt instead,
 * naming the first missing piece. */
TEST(tvision_pair_metadata) {
    tvpair_spec sp;
    REQUIRE(tvpair_parse("seed=9 type=f16 scale=4", &sp), "spec");
    char mm[512], text[512], bytes[512];
    snprintf(mm, sizeof(mm), "%s/tvpair-meta-mmproj.gguf", lv_test_tmpdir());
    snprintf(text, sizeof(text), "%s/tvpair-meta-text.gguf", lv_test_tmpdir());
    snprintf(bytes, sizeof(bytes), "%s/tvpair-meta-bytes.gguf", lv_test_tmpdir());
    REQUIRE(tvpair_write(&sp, text, mm) == LV_OK, "write: %s", lv_last_error());
    lv_clip *c = NULL;
    REQUIRE(lv_clip_load(mm, 128, &c) == LV_OK, "%s", lv_last_error());
    CHECK(c->proj == LV_PROJ_IDEFICS3 && c->image_size == 64 && c->patch_size == 8 && c->n_embd == 64 && c->n_ff == 160 && c->n_block == 2 &&
              c->n_block_run == 2 && c->n_head == 4 && c->d_head == 16 && c->scale_factor == 4 && c->n_out == 128 && c->proj_dim == 128 &&
              c->preproc_image_size == 0 && c->act == LV_CLIP_GELU,
          "the mmproj's keys");
    CHECK(c->eps == 1e-6f && c->mean[0] == 0.5f && c->mean[2] == 0.5f && c->std[1] == 0.5f, "eps %g, mean / std", (double)c->eps);
    lv_clip_free(c);
    lv_mmproj *m = NULL;
    CHECK(lv_mmproj_load(mm, 96, &m) != LV_OK, "a 96-wide text model is refused");
    REQUIRE(lv_mmproj_load(mm, 128, &m) == LV_OK, "%s", lv_last_error());
    CHECK(strcmp(lv_mmproj_projector(m), "idefics3") == 0, "projector");
    lv_model *tm = NULL;
    REQUIRE(lv_model_load(text, lv_model_default_params(), &tm) == LV_OK, "%s", lv_last_error());
    CHECK(lv_model_n_embd(tm) == 128 && lv_model_n_vocab(tm) == 264, "text model: n_embd %d, n_vocab %d", (int)lv_model_n_embd(tm), (int)lv_model_n_vocab(tm));
    lv_threadpool *tp = lv_threadpool_create(1);
    lv_image_embd im;
    REQUIRE(lv_mmproj_encode_file(m, tp, GOLDEN_DIR "/img-64x64.ppm", &im) == LV_OK, "%s", lv_last_error());
    lv_mm_prompt p;
    CHECK(lv_mm_tokenize(tm, "Describe <__media__> please", -1, &im, 1, true, &p) == LV_OK, "builtin:bytes-vision: %s", lv_last_error());
    lv_mm_prompt_free(&p);
    lv_model_free(tm);
    sp.bytes_vocab = true;
    REQUIRE(tvpair_write(&sp, bytes, NULL) == LV_OK && lv_model_load(bytes, lv_model_default_params(), &tm) == LV_OK, "%s", lv_last_error());
    CHECK(lv_mm_tokenize(tm, "Describe <__media__> please", -1, &im, 1, true, &p) == LV_ERR_UNSUPPORTED && strstr(lv_last_error(), "'\\n\\n'"),
          "builtin:bytes: %s", lv_last_error());
    lv_model_free(tm);
    lv_image_embd_free(&im);
    lv_threadpool_free(tp);
    lv_mmproj_free(m);
}

/* one test per golden, registered at start-up: tests/golden/vision/NAME.lvv as vision_golden_NAME,
 * tests/golden/tvision/NAME.lvv (the trainer's pairs) as tvision_mtmd_NAME */
static void register_dir(const char *dir, const char *prefix) {
    char path[64];
    snprintf(path, sizeof(path), GOLDEN_ROOT "/%s", dir);
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".lvv") != 0) continue;
        char *file = malloc(n + 32), *name = malloc(n + 32);
        snprintf(file, n + 32, "%s/%s", dir, e->d_name);
        snprintf(name, n + 32, "%s%.*s", prefix, (int)(n - 4), e->d_name);
        lv_test_register_arg(name, strncmp(e->d_name, "logits-", 7) == 0 ? run_logits_case : run_embed_case, file);
    }
    closedir(d);
}

__attribute__((constructor)) static void register_vision_goldens(void) {
    register_dir("vision", "vision_golden_");
    register_dir("tvision", "tvision_mtmd_");
}
