/*
 * test_image.c: images of the vision module (src/vision/image.c, resize.c; docs/vision.md).
 *
 * The oracles are outside longview, in tests/golden/vision (scripts/gen-resize-golden.py; format
 * in tests/golden/README.md):
 *   - resize/: Pillow 9.4's Image.resize with NEAREST / BILINEAR / BICUBIC / LANCZOS on noise and
 *     gradients of many sizes; ours must be byte-identical (no tolerance: same algorithm, same
 *     double coefficients, same fixed-point rounding, so a single level of difference is a bug);
 *   - preprocess/plans.txt: mtmd's preprocessing geometry from an independent Python
 *     re-implementation of mtmd-image.cpp's arithmetic; the PPMs of preprocess/: whole preprocessings
 *     done with Pillow following mtmd's steps (byte-identical expected);
 *   - load/: PNG / BMP / JPEG files written by Pillow with Pillow's own decoding: PNG and BMP must
 *     be identical; JPEG within the difference of two IDCT / upsampling implementations.
 * Tests run from the project root (as `make test` does).
 */
#include "lv_test.h"
#include "longview.h"
#include "vision/vision.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN "tests/golden/vision"

static void quiet_libav(void) {
    static int done;
    if (!done) {
        lv_video_route_libav_log(); /* libav's messages through lv_log, not stderr */
        done = 1;
    }
}

/* A binary PPM (P6, maxval 255) -> image; independent of libav. */
static int read_ppm(const char *path, lv_image *img) {
    memset(img, 0, sizeof(*img));
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int w, h, maxv;
    int ok = fscanf(f, "P6 %d %d %d", &w, &h, &maxv) == 3 && maxv == 255 && fgetc(f) == '\n' &&
             lv_image_alloc(img, w, h) == LV_OK;
    if (ok) ok = fread(img->rgb, 1, (size_t)w * h * 3, f) == (size_t)w * h * 3;
    fclose(f);
    if (!ok) lv_image_free(img);
    return ok;
}

/* max |a - b| over the bytes, -1 if the sizes differ; *n_diff = bytes that differ */
static int max_diff(const lv_image *a, const lv_image *b, int64_t *n_diff) {
    if (a->w != b->w || a->h != b->h) return -1;
    int m = 0;
    int64_t n = 0;
    for (int64_t i = 0; i < (int64_t)a->w * a->h * 3; i++) {
        int d = abs((int)a->rgb[i] - (int)b->rgb[i]);
        if (d) n++;
        if (d > m) m = d;
    }
    if (n_diff) *n_diff = n;
    return m;
}

static lv_resample filter_of(const char *s) {
    if (!strcmp(s, "nearest")) return LV_RESAMPLE_NEAREST;
    if (!strcmp(s, "bilinear")) return LV_RESAMPLE_BILINEAR;
    if (!strcmp(s, "bicubic")) return LV_RESAMPLE_BICUBIC;
    if (!strcmp(s, "lanczos")) return LV_RESAMPLE_LANCZOS;
    return (lv_resample)-1;
}

static lv_proj_type proj_of(const char *s) {
    if (!strcmp(s, "idefics3")) return LV_PROJ_IDEFICS3;
    if (!strcmp(s, "qwen2vl")) return LV_PROJ_QWEN2VL;
    if (!strcmp(s, "qwen25vl")) return LV_PROJ_QWEN25VL;
    if (!strcmp(s, "mlp")) return LV_PROJ_MLP;
    return LV_PROJ_NONE;
}

/* -------------------------------------------------------------------------------------------
 * resize
 * ----------------------------------------------------------------------------------------- */

TEST(vision_resize_pillow) {
    FILE *f = fopen(GOLDEN "/resize/cases.txt", "r");
    REQUIRE(f, "cannot open %s/resize/cases.txt (run from the project root)", GOLDEN);
    char line[256], name[64], filt[32], prev[64] = "";
    int n_cases = 0, n_exact = 0, worst = 0;
    lv_image src = {0};
    while (fgets(line, sizeof(line), f)) {
        int w, h;
        if (line[0] == '#' || sscanf(line, "%63s %d %d %31s", name, &w, &h, filt) != 4) continue;
        char path[512];
        if (strcmp(prev, name) != 0) {
            lv_image_free(&src);
            snprintf(path, sizeof(path), GOLDEN "/resize/src-%s.ppm", name);
            REQUIRE(read_ppm(path, &src), "cannot read %s", path);
            snprintf(prev, sizeof(prev), "%s", name);
        }
        lv_image want, got;
        snprintf(path, sizeof(path), GOLDEN "/resize/%s-%dx%d-%s.ppm", name, w, h, filt);
        if (!read_ppm(path, &want)) {
            CHECK(0, "cannot read %s", path);
            continue;
        }
        lv_status st = lv_image_resize(&src, w, h, filter_of(filt), &got);
        CHECK(st == LV_OK, "%s %dx%d -> %dx%d %s: %s", name, src.w, src.h, w, h, filt, lv_last_error());
        if (st == LV_OK) {
            int64_t nd = 0;
            int d = max_diff(&got, &want, &nd);
            CHECK(d == 0, "%s %dx%d -> %dx%d %s: differs from Pillow by up to %d in %lld of %d values", name, src.w,
                  src.h, w, h, filt, d, (long long)nd, w * h * 3);
            n_exact += d == 0;
            if (d > worst || d < 0) worst = d < 0 ? 999 : d;
        }
        n_cases++;
        lv_image_free(&want);
        lv_image_free(&got);
    }
    fclose(f);
    lv_image_free(&src);
    CHECK(n_cases >= 100, "expected the resize golden cases, found %d", n_cases);
    printf("  resize: %d/%d cases byte-identical to Pillow (max difference %d)\n", n_exact, n_cases, worst);
}

TEST(vision_resize_args) {
    lv_image src, dst;
    REQUIRE(lv_image_alloc(&src, 4, 3) == LV_OK, "alloc");
    for (int i = 0; i < 36; i++) src.rgb[i] = (uint8_t)(i * 7);
    CHECK(lv_image_resize(&src, 0, 3, LV_RESAMPLE_BICUBIC, &dst) == LV_ERR_INVALID_ARG && !dst.rgb, "width 0");
    CHECK(lv_image_resize(&src, 3, -1, LV_RESAMPLE_BICUBIC, &dst) == LV_ERR_INVALID_ARG && !dst.rgb, "height -1");
    CHECK(lv_image_resize(&src, LV_IMAGE_MAX_ALLOC_SIDE + 1, 1, LV_RESAMPLE_BILINEAR, &dst) == LV_ERR_INVALID_ARG,
          "a side over the limit");
    CHECK(lv_image_resize(&src, 16384, 16385, LV_RESAMPLE_BILINEAR, &dst) == LV_ERR_INVALID_ARG, "too many pixels");
    CHECK(lv_image_resize(&src, 2, 2, (lv_resample)42, &dst) == LV_ERR_INVALID_ARG, "unknown filter");
    lv_image empty = {0};
    CHECK(lv_image_resize(&empty, 2, 2, LV_RESAMPLE_BICUBIC, &dst) == LV_ERR_INVALID_ARG, "empty source");
    /* same size: a copy */
    REQUIRE(lv_image_resize(&src, 4, 3, LV_RESAMPLE_LANCZOS, &dst) == LV_OK, "same size");
    CHECK(memcmp(src.rgb, dst.rgb, 36) == 0, "same size is a copy");
    lv_image_free(&dst);
    /* every allocation failing in turn: an error or a result, never a leak or a crash */
    for (int n = 0; n < 8; n++) {
        lv_test_alloc_fail_after(n);
        lv_status st = lv_image_resize(&src, 7, 5, LV_RESAMPLE_BICUBIC, &dst);
        lv_test_alloc_fail_after(-1);
        CHECK(st == LV_OK || (st == LV_ERR_NOMEM && !dst.rgb), "allocation %d failing: %d", n, (int)st);
        lv_image_free(&dst);
    }
    lv_image_free(&src);
}

/* -------------------------------------------------------------------------------------------
 * preprocessing
 * ----------------------------------------------------------------------------------------- */

TEST(vision_plan_mtmd) {
    FILE *f = fopen(GOLDEN "/preprocess/plans.txt", "r");
    REQUIRE(f, "cannot open %s/preprocess/plans.txt (run from the project root)", GOLDEN);
    char line[512], type[32], status[8];
    int n = 0, n_err = 0;
    while (fgets(line, sizeof(line), f)) {
        lv_vision_prep p = {0};
        int w, h, v[13] = {0};
        if (line[0] == '#') continue;
        int k = sscanf(line, "%31s %d %d %d %d %d %d %d %d : %7s %d %d %d %d %d %d %d %d %d %d %d %d %d", type,
                       &p.image_size, &p.patch_size, &p.merge, &p.preproc_image_size, &p.min_tokens, &p.max_tokens, &w,
                       &h, status, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11],
                       &v[12]);
        if (k < 10) continue;
        p.type = proj_of(type);
        lv_image_plan pl;
        lv_status st = lv_image_plan_for(&p, w, h, &pl);
        n++;
        if (!strcmp(status, "err")) {
            n_err++;
            CHECK(st == LV_ERR_INVALID_ARG, "%s S=%d E=%d tokens %d..%d, %dx%d: mtmd refuses it, we gave %d", type,
                  p.image_size, p.preproc_image_size, p.min_tokens, p.max_tokens, w, h, (int)st);
            continue;
        }
        REQUIRE(k == 23, "bad line in plans.txt: %s", line);
        if ((int64_t)v[0] > LV_IMAGE_MAX_ALLOC_SIDE || (int64_t)v[0] * v[1] > LV_IMAGE_MAX_PIXELS) {
            /* mtmd would go on with a 114688x28 image; longview refuses sides over its limit */
            n_err++;
            CHECK(st == LV_ERR_INVALID_ARG, "%s %dx%d: a %dx%d result is over longview's limits, we gave %d", type, w, h,
                  v[0], v[1], (int)st);
            continue;
        }
        if (st != LV_OK) {
            CHECK(0, "%s S=%d E=%d tokens %d..%d, %dx%d: %s", type, p.image_size, p.preproc_image_size, p.min_tokens,
                  p.max_tokens, w, h, lv_last_error());
            continue;
        }
        const int got[13] = {pl.w,         pl.h,         pl.n_rows,    pl.n_cols,    pl.lanczos, pl.resized_w, pl.resized_h,
                             pl.refined_w, pl.refined_h, pl.fit_w,     pl.fit_h,     pl.fit_x,   pl.fit_y};
        CHECK(memcmp(got, v, sizeof(got)) == 0,
              "%s S=%d E=%d tokens %d..%d, %dx%d:\n    mtmd: out %dx%d grid %dx%d lanczos %d resized %dx%d refined %dx%d "
              "fit %dx%d@%d,%d\n    ours: out %dx%d grid %dx%d lanczos %d resized %dx%d refined %dx%d fit %dx%d@%d,%d",
              type, p.image_size, p.preproc_image_size, p.min_tokens, p.max_tokens, w, h, v[0], v[1], v[3], v[2], v[4],
              v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], got[0], got[1], got[3], got[2], got[4], got[5], got[6],
              got[7], got[8], got[9], got[10], got[11], got[12]);
        CHECK(pl.has_overview == (p.type == LV_PROJ_IDEFICS3), "%s: overview flag", type);
    }
    fclose(f);
    CHECK(n >= 300 && n_err >= 20, "expected the plan cases, found %d (%d refused)", n, n_err);
    printf("  preprocessing geometry: %d cases (%d refused: by mtmd's rules or over longview's size limits)\n", n, n_err);
}

TEST(vision_preprocess_pillow) {
    FILE *f = fopen(GOLDEN "/preprocess/cases.txt", "r");
    REQUIRE(f, "cannot open %s/preprocess/cases.txt", GOLDEN);
    char line[256], name[64], type[32];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        lv_vision_prep p = {0};
        int n_img;
        if (line[0] == '#' || sscanf(line, "%63s %31s %d %d %d %d %d %d %d", name, type, &p.image_size, &p.patch_size,
                                     &p.merge, &p.preproc_image_size, &p.min_tokens, &p.max_tokens, &n_img) != 9)
            continue;
        p.type = proj_of(type);
        char path[512];
        lv_image src, want;
        snprintf(path, sizeof(path), GOLDEN "/preprocess/%s-src.ppm", name);
        REQUIRE(read_ppm(path, &src), "cannot read %s", path);
        snprintf(path, sizeof(path), GOLDEN "/preprocess/%s-out.ppm", name);
        REQUIRE(read_ppm(path, &want), "cannot read %s", path);
        lv_image_tiles t;
        lv_status st = lv_image_preprocess(&p, &src, &t);
        CHECK(st == LV_OK, "%s: %s", name, lv_last_error());
        if (st == LV_OK) {
            CHECK(t.n == n_img, "%s: %d images, expected %d", name, t.n, n_img);
            CHECK(t.has_overview == (p.type == LV_PROJ_IDEFICS3), "%s: overview", name);
            CHECK(p.type != LV_PROJ_IDEFICS3 || t.n_rows * t.n_cols + 1 == t.n, "%s: grid %dx%d for %d images", name,
                  t.n_cols, t.n_rows, t.n);
            const int tw = want.w, th = n_img ? want.h / n_img : 0;
            for (int i = 0; i < t.n && i < n_img; i++) {
                lv_image part = {tw, th, want.rgb + (size_t)i * tw * th * 3};
                int64_t nd = 0;
                int d = max_diff(&t.img[i], &part, &nd);
                CHECK(d == 0, "%s: image %d of %d (%dx%d, expected %dx%d) differs from Pillow's by up to %d in %lld values",
                      name, i, t.n, t.img[i].w, t.img[i].h, tw, th, d, (long long)nd);
            }
            lv_image_tiles_free(&t);
        }
        lv_image_free(&src);
        lv_image_free(&want);
        n++;
    }
    fclose(f);
    CHECK(n >= 8, "expected the preprocessing cases, found %d", n);
}

TEST(vision_preprocess_args) {
    lv_image src;
    REQUIRE(lv_image_alloc(&src, 30, 20) == LV_OK, "alloc");
    for (int i = 0; i < 30 * 20 * 3; i++) src.rgb[i] = (uint8_t)(i * 13);
    lv_image_tiles t;
    lv_vision_prep p = {.type = LV_PROJ_NONE, .image_size = 32, .patch_size = 8};
    CHECK(lv_image_preprocess(&p, &src, &t) == LV_ERR_UNSUPPORTED && t.n == 0, "no projector type");
    p.type = LV_PROJ_MLP;
    p.image_size = 0;
    CHECK(lv_image_preprocess(&p, &src, &t) == LV_ERR_INVALID_ARG, "image_size 0");
    p.image_size = 9000;
    CHECK(lv_image_preprocess(&p, &src, &t) == LV_ERR_INVALID_ARG, "image_size over mtmd's 8192");
    p = (lv_vision_prep){.type = LV_PROJ_QWEN25VL, .image_size = 560, .patch_size = 14, .min_tokens = 100, .max_tokens = 50};
    CHECK(lv_image_preprocess(&p, &src, &t) == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "below"),
          "min tokens above max: %s", lv_last_error());
    /* a 30x20 image for qwen: below 8 tokens, scaled up to the minimum */
    p.min_tokens = p.max_tokens = 0;
    REQUIRE(lv_image_preprocess(&p, &src, &t) == LV_OK, "qwen: %s", lv_last_error());
    CHECK(t.n == 1 && t.img[0].w % 28 == 0 && t.img[0].h % 28 == 0 && (t.img[0].w / 28) * (t.img[0].h / 28) >= 8,
          "qwen output %dx%d: multiples of 28, at least 8 tokens", t.img[0].w, t.img[0].h);
    lv_image_tiles_free(&t);
    /* every allocation failing in turn, on the longest path (idefics3 Lanczos: 3 resizes, tiles) */
    p = (lv_vision_prep){.type = LV_PROJ_IDEFICS3, .image_size = 16, .patch_size = 8, .merge = 2, .preproc_image_size = 40};
    int n_ok = 0;
    for (int n = 0; n < 200 && !n_ok; n++) {
        lv_test_alloc_fail_after(n);
        lv_status st = lv_image_preprocess(&p, &src, &t);
        lv_test_alloc_fail_after(-1);
        CHECK(st == LV_OK || (st == LV_ERR_NOMEM && t.n == 0 && !t.img), "allocation %d failing: %d", n, (int)st);
        n_ok += st == LV_OK;
        lv_image_tiles_free(&t);
    }
    CHECK(n_ok > 0, "the preprocessing succeeds once the allocations do");
    lv_image_free(&src);
}

/* -------------------------------------------------------------------------------------------
 * decoding
 * ----------------------------------------------------------------------------------------- */

TEST(vision_load_pillow) {
    quiet_libav();
    FILE *f = fopen(GOLDEN "/load/cases.txt", "r");
    REQUIRE(f, "cannot open %s/load/cases.txt", GOLDEN);
    char line[256], name[64];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '#' || sscanf(line, "%63s", name) != 1) continue;
        char path[512];
        lv_image want, got;
        snprintf(path, sizeof(path), GOLDEN "/load/%s.ppm", name);
        REQUIRE(read_ppm(path, &want), "cannot read %s", path);
        snprintf(path, sizeof(path), GOLDEN "/load/%s", name);
        lv_status st = lv_image_load(path, &got);
        CHECK(st == LV_OK, "%s: %s", name, lv_last_error());
        if (st == LV_OK) {
            int64_t nd = 0;
            const int d = max_diff(&got, &want, &nd);
            const int jpeg = strstr(name, ".jpg") != NULL;
            /* JPEG: FFmpeg's IDCT is not libjpeg's (Pillow's); the upsampling and the colour
             * conversion are libjpeg's arithmetic (image.c), so a few levels remain. */
            const int tol = jpeg ? 4 : 0;
            CHECK(d >= 0 && d <= tol, "%s: %dx%d, differs from Pillow's decoding by up to %d (allowed %d) in %lld values",
                  name, got.w, got.h, d, tol, (long long)nd);
            printf("  %-14s %dx%d  max difference from Pillow %d, %lld of %d values differ\n", name, got.w, got.h, d,
                   (long long)nd, got.w * got.h * 3);
        }
        lv_image_free(&want);
        lv_image_free(&got);
        n++;
    }
    fclose(f);
    CHECK(n >= 15, "expected the load cases, found %d", n);
    /* the PPM sources of the resize cases through libav equal our own PPM reader */
    lv_image a, b;
    REQUIRE(read_ppm(GOLDEN "/resize/src-noise37x23.ppm", &a), "read");
    CHECK(lv_image_load(GOLDEN "/resize/src-noise37x23.ppm", &b) == LV_OK, "ppm: %s", lv_last_error());
    CHECK(max_diff(&a, &b, NULL) == 0, "ppm decodes exactly");
    lv_image_free(&a);
    lv_image_free(&b);
}

/* Write bytes to the scratch directory; returns the path (static buffer per slot). */
static const char *scratch_file(int slot, const char *name, const void *data, size_t n) {
    static char paths[8][512];
    snprintf(paths[slot], sizeof(paths[slot]), "%s/vision-%s", lv_test_tmpdir(), name);
    FILE *f = fopen(paths[slot], "wb");
    if (!f) return NULL;
    if (n) fwrite(data, 1, n, f);
    fclose(f);
    return paths[slot];
}

/* An error with the right status whose message names the file. */
static void expect_error(const char *what, const char *path, lv_status want) {
    lv_image img;
    memset(&img, 0xAB, sizeof(img));
    lv_status st = lv_image_load(path, &img);
    CHECK(st == want, "%s: status %s, expected %s (%s)", what, lv_status_str(st), lv_status_str(want), lv_last_error());
    CHECK(strstr(lv_last_error(), path) != NULL, "%s: the message names the file: %s", what, lv_last_error());
    CHECK(!img.rgb && img.w == 0, "%s: the image is left empty", what);
    printf("  %-28s -> %s\n", what, lv_last_error());
}

TEST(vision_load_errors) {
    quiet_libav();
    expect_error("missing file", "/nonexistent/dir/cat.png", LV_ERR_IO);
    const char text[] = "this is not an image, just a line of text long enough to be probed\n";
    expect_error("text file", scratch_file(0, "text.png", text, sizeof(text) - 1), LV_ERR_FORMAT);
    expect_error("empty file", scratch_file(1, "empty.jpg", "", 0), LV_ERR_FORMAT);

    size_t n = 0;
    uint8_t *png = (uint8_t *)lv_test_read_file(GOLDEN "/load/rgb.png", &n);
    REQUIRE(png && n > 100, "read rgb.png");
    expect_error("truncated PNG (half)", scratch_file(2, "half.png", png, n / 2), LV_ERR_FORMAT);
    expect_error("PNG header only", scratch_file(3, "head.png", png, 40), LV_ERR_FORMAT);
    /* a bit flipped in the middle of the compressed data: the CRC check refuses it */
    png[n / 2] ^= 0x10;
    expect_error("corrupt PNG", scratch_file(4, "flip.png", png, n), LV_ERR_FORMAT);
    free(png);

    uint8_t *jpg = (uint8_t *)lv_test_read_file(GOLDEN "/load/q90-420.jpg", &n);
    REQUIRE(jpg && n > 100, "read q90-420.jpg");
    expect_error("truncated JPEG (half)", scratch_file(5, "half.jpg", jpg, n / 2), LV_ERR_FORMAT);
    free(jpg);
    static const char *const others[] = {"rgb.bmp", "rgb.tif", "rgba-deflate.tif", "palette.gif", "lossless.webp"};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        char path[256], what[64];
        snprintf(path, sizeof(path), GOLDEN "/load/%s", others[i]);
        uint8_t *b = (uint8_t *)lv_test_read_file(path, &n);
        REQUIRE(b && n > 100, "read %s", path);
        snprintf(what, sizeof(what), "truncated %s (half)", others[i]);
        expect_error(what, scratch_file(5, others[i], b, n / 2), LV_ERR_FORMAT);
        free(b);
    }

    /* absurd sizes: a PPM and a BMP header claiming 20000 x 20000 */
    const char ppm[] = "P6\n20000 20000\n255\n\x01\x02\x03\x04\x05\x06";
    expect_error("PPM of 20000x20000", scratch_file(6, "huge.ppm", ppm, sizeof(ppm) - 1), LV_ERR_FORMAT);
    const char ppm_wide[] = "P6\n40000 1\n255\n\x01\x02\x03";
    expect_error("PPM of 40000x1", scratch_file(7, "wide.ppm", ppm_wide, sizeof(ppm_wide) - 1), LV_ERR_FORMAT);
    CHECK(strstr(lv_last_error(), "absurd image size 40000x1") != NULL, "the size is named: %s", lv_last_error());
    /* a PNG whose IHDR claims 100000 x 100000 (the CRC is not even looked at) */
    png = (uint8_t *)lv_test_read_file(GOLDEN "/load/rgb.png", &n);
    REQUIRE(png && n > 24, "read rgb.png");
    png[16] = 0, png[17] = 1, png[18] = 0x86, png[19] = 0xa0;
    png[20] = 0, png[21] = 1, png[22] = 0x86, png[23] = 0xa0;
    expect_error("PNG of 100000x100000", scratch_file(3, "huge.png", png, n), LV_ERR_FORMAT);
    CHECK(strstr(lv_last_error(), "absurd image size 100000x100000") != NULL, "the size is named: %s", lv_last_error());
    free(png);

    /* from memory: garbage of every length up to 64 bytes, and prefixes of a PNG */
    lv_image img;
    uint8_t junk[64];
    lv_test_rng r = {lv_test_seed()};
    for (int len = 1; len <= 64; len++) {
        for (int i = 0; i < len; i++) junk[i] = (uint8_t)lv_test_rng_u64(&r);
        lv_status st = lv_image_load_memory(junk, len, "junk", &img);
        CHECK(st != LV_OK || img.rgb, "junk of %d bytes", len);
        lv_image_free(&img);
    }
    png = (uint8_t *)lv_test_read_file(GOLDEN "/load/rgba.png", &n);
    REQUIRE(png, "read rgba.png");
    int n_ok = 0;
    for (size_t len = 1; len <= n; len += len < 80 ? 1 : 37) {
        lv_status st = lv_image_load_memory(png, (int64_t)len, "prefix", &img);
        CHECK(st == LV_OK || st == LV_ERR_FORMAT, "PNG prefix of %zu bytes: %s", len, lv_last_error());
        n_ok += st == LV_OK;
        lv_image_free(&img);
    }
    CHECK(lv_image_load_memory(png, (int64_t)n, "whole", &img) == LV_OK, "the whole PNG: %s", lv_last_error());
    lv_image_free(&img);
    CHECK(n_ok <= 1, "no strict prefix of a PNG decodes (%d did)", n_ok);
    free(png);
}

/* The first frame of a video: a YUV frame through swscale with our flags equals the ffmpeg CLI's
 * scale filter with the same flags, byte for byte. Needs Debian's ffmpeg (skips without). */
TEST(vision_load_video_frame) {
    quiet_libav();
    if (system("ffmpeg -hide_banner -version >/dev/null 2>&1") != 0) SKIP("no ffmpeg");
    char mp4[512], rgb[512], cmd[2048];
    snprintf(mp4, sizeof(mp4), "%s/vision-frame.mp4", lv_test_tmpdir());
    snprintf(rgb, sizeof(rgb), "%s/vision-frame.rgb", lv_test_tmpdir());
    snprintf(cmd, sizeof(cmd),
             "ffmpeg -v error -y -f lavfi -i testsrc2=size=62x46:rate=5 -t 1 -pix_fmt yuv420p -c:v mpeg4 -q:v 2 '%s' && "
             "ffmpeg -v error -y -i '%s' -frames:v 1 "
             "-vf scale=flags=bicubic+accurate_rnd+full_chroma_int+full_chroma_inp+bitexact -pix_fmt rgb24 -f rawvideo '%s'",
             mp4, mp4, rgb);
    REQUIRE(system(cmd) == 0, "ffmpeg failed: %s", cmd);
    lv_image img;
    REQUIRE(lv_image_load(mp4, &img) == LV_OK, "%s", lv_last_error());
    size_t n = 0;
    uint8_t *want = (uint8_t *)lv_test_read_file(rgb, &n);
    REQUIRE(want, "read %s", rgb);
    CHECK(img.w == 62 && img.h == 46 && n == (size_t)62 * 46 * 3, "%dx%d, %zu bytes from ffmpeg", img.w, img.h, n);
    if (n == (size_t)img.w * img.h * 3) CHECK(memcmp(want, img.rgb, n) == 0, "the first frame equals ffmpeg's");
    free(want);
    lv_image_free(&img);
}
