/*
 * test_encode.c: the writing side of the video module (src/video/encode.c): the RGB24 scaler
 * and the H.264 writer, read back through the library's own reader. Synthetic frames only (no
 * ../shared/data); the V-NIAH end-to-end test with real footage is tests/tools/test_vniah.c.
 */
#include "longview.h"
#include "lv_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* a moving pattern: gradients plus a bright square at a place that depends on the frame */
static void pattern(uint8_t *rgb, int w, int h, int i) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x * 255 / (w - 1));
            p[1] = (uint8_t)(y * 255 / (h - 1));
            p[2] = (uint8_t)((x + y + 8 * i) & 0xff);
            const int sx = (i * 7) % (w - 16), sy = (i * 5) % (h - 16);
            if (x >= sx && x < sx + 16 && y >= sy && y < sy + 16) p[0] = p[1] = p[2] = 250;
        }
}

static double mean_abs_diff(const uint8_t *a, const uint8_t *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += abs((int)a[i] - (int)b[i]);
    return s / (double)n;
}

static double psnr(const uint8_t *a, const uint8_t *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)a[i] - b[i];
        s += d * d;
    }
    return s == 0 ? 99 : 10 * log10(255.0 * 255.0 / (s / (double)n));
}

TEST(video_writer_roundtrip) {
    lv_video_route_libav_log(); /* libx264's statistics at debug level, not on stderr */
    const int W = 160, H = 96, N = 15;
    char path[512];
    snprintf(path, sizeof(path), "%s/writer_roundtrip_%d.mp4", lv_test_tmpdir(), (int)getpid());
    lv_video_writer_params p = lv_video_default_writer_params();
    p.width = W, p.height = H, p.fps_num = 5, p.fps_den = 1, p.gop = 5, p.crf = 18, p.n_threads = 1;
    lv_video_writer *w = NULL;
    lv_status st = lv_video_writer_open(path, &p, &w);
    if (st == LV_ERR_UNSUPPORTED && strstr(lv_last_error(), "libx264")) SKIP("%s", lv_last_error());
    REQUIRE(st == LV_OK, "open: %s", lv_last_error());
    uint8_t *src = malloc((size_t)N * W * H * 3);
    REQUIRE(src, "memory");
    for (int i = 0; i < N; i++) {
        pattern(src + (size_t)i * W * H * 3, W, H, i);
        CHECK(lv_video_writer_push(w, src + (size_t)i * W * H * 3) == LV_OK, "push %d: %s", i, lv_last_error());
    }
    CHECK(lv_video_writer_n_frames(w) == N, "frames pushed: %lld", (long long)lv_video_writer_n_frames(w));
    REQUIRE(lv_video_writer_close(w) == LV_OK, "close: %s", lv_last_error());

    lv_video *v = NULL;
    REQUIRE(lv_video_open(path, lv_video_default_open_params(), &v) == LV_OK, "reopen: %s", lv_last_error());
    lv_video_info in;
    lv_video_get_info(v, &in);
    CHECK(strcmp(in.codec, "h264") == 0 && in.width == W && in.height == H, "%s %dx%d", in.codec, in.width, in.height);
    CHECK(in.n_frames == N, "frames: %lld", (long long)in.n_frames);
    CHECK(fabs(in.avg_fps - 5.0) < 1e-6, "fps %.6f", in.avg_fps);
    CHECK(in.n_keyframes == 3, "keyframes every 5 frames: %lld", (long long)in.n_keyframes);
    lv_video_read_params rp = lv_video_default_read_params();
    rp.sample = LV_VIDEO_SAMPLE_ALL;
    rp.n_threads = 2;
    void *frames = NULL;
    int64_t n = 0, fs = 0;
    REQUIRE(lv_video_read_all(v, &rp, &frames, &n, &fs) == LV_OK, "read: %s", lv_last_error());
    CHECK(n == N && fs == (int64_t)W * H * 3, "%lld frames of %lld bytes", (long long)n, (long long)fs);
    const size_t fb = (size_t)W * H * 3;
    for (int i = 0; i < N && i < n; i++) {
        const double q = psnr((const uint8_t *)frames + i * fb, src + i * fb, fb);
        /* yuv420p halves the chroma resolution; the pattern's per-pixel blue ramp costs some dB */
        CHECK(q > 28, "frame %d: PSNR %.1f dB against what was pushed", i, q);
        if (i > 0) {
            const double other = psnr((const uint8_t *)frames + i * fb, src + (i - 1) * fb, fb);
            CHECK(other < q - 3, "frame %d matches its own input (%.1f dB) better than the previous one's (%.1f dB)", i, q, other);
        }
    }
    lv_video_frames_free(frames);
    lv_video_free(v);
    free(src);
    remove(path);
}

TEST(video_writer_rejects_bad_params) {
    lv_video_route_libav_log();
    lv_video_writer_params p = lv_video_default_writer_params();
    lv_video_writer *w = (lv_video_writer *)1;
    char path[512];
    snprintf(path, sizeof(path), "%s/writer_bad_%d.mp4", lv_test_tmpdir(), (int)getpid());
    p.width = 33, p.height = 32;
    CHECK(lv_video_writer_open(path, &p, &w) == LV_ERR_INVALID_ARG && w == NULL, "odd width refused");
    p.width = 32, p.fps_num = 0;
    CHECK(lv_video_writer_open(path, &p, &w) == LV_ERR_INVALID_ARG, "fps 0 refused");
    p.fps_num = 25, p.crf = 60;
    CHECK(lv_video_writer_open(path, &p, &w) == LV_ERR_INVALID_ARG, "crf 60 refused");
    p.crf = 23, p.container = "no-such-muxer";
    CHECK(lv_video_writer_open(path, &p, &w) != LV_OK && w == NULL, "unknown container refused");
    p.container = "mp4";
    snprintf(path, sizeof(path), "%s/no/such/dir/x.mp4", lv_test_tmpdir());
    lv_status st = lv_video_writer_open(path, &p, &w);
    CHECK(st == LV_ERR_IO || (st == LV_ERR_UNSUPPORTED && strstr(lv_last_error(), "libx264")), "missing directory: %s",
          lv_status_str(st));
    lv_video_writer_free(NULL);
}

TEST(video_scaler) {
    lv_video_scaler *s = NULL;
    CHECK(lv_video_scaler_new(0, 10, 5, 5, &s) == LV_ERR_INVALID_ARG && !s, "size 0 refused");
    REQUIRE(lv_video_scaler_new(64, 40, 16, 16, &s) == LV_OK, "new: %s", lv_last_error());
    uint8_t src[40][64][3], dst[16][16][3], dst2[16][16][3];
    /* a flat grey stays grey (through swscale's internal YUV: within 1-2 levels) */
    memset(src, 128, sizeof(src));
    REQUIRE(lv_video_scaler_run(s, &src[0][0][0], 64 * 3, &dst[0][0][0], 16 * 3) == LV_OK, "run: %s", lv_last_error());
    int worst = 0;
    for (int i = 0; i < 16 * 16 * 3; i++) {
        const int d = abs((int)(&dst[0][0][0])[i] - 128);
        if (d > worst) worst = d;
    }
    CHECK(worst <= 2, "flat grey 128 -> off by %d", worst);
    /* left half black, right half white: the left columns dark, the right ones light; deterministic */
    for (int y = 0; y < 40; y++)
        for (int x = 0; x < 64; x++) memset(src[y][x], x < 32 ? 0 : 255, 3);
    REQUIRE(lv_video_scaler_run(s, &src[0][0][0], 64 * 3, &dst[0][0][0], 16 * 3) == LV_OK, "run");
    CHECK(dst[8][1][0] < 20 && dst[8][14][0] > 235, "edges kept: %d %d", dst[8][1][0], dst[8][14][0]);
    REQUIRE(lv_video_scaler_run(s, &src[0][0][0], 64 * 3, &dst2[0][0][0], 16 * 3) == LV_OK, "run");
    CHECK(memcmp(dst, dst2, sizeof(dst)) == 0, "same input, same output");
    CHECK(mean_abs_diff(&dst[0][0][0], &dst2[0][0][0], sizeof(dst)) == 0, "bytes equal");
    lv_video_scaler_free(s);
}

/* The scaler is the reader's conversion: on a video stored as RGB24 (rawvideo in AVI, made by the
 * ffmpeg CLI) the reader resizes with swscale from RGB24 as well, so the two must agree byte for
 * byte (the flags, the parameters and the colour details; SWS_POINT or SWS_BILINEAR would not). */
TEST(video_scaler_is_the_readers_resize) {
    lv_video_route_libav_log();
    char path[512], cmd[1200];
    snprintf(path, sizeof(path), "%s/scaler_rgb_%d.avi", lv_test_tmpdir(), (int)getpid());
    snprintf(cmd, sizeof(cmd),
             "ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi -i testsrc2=size=200x120:rate=5 -t 1 -c:v rawvideo "
             "-pix_fmt rgb24 '%s' 2>/dev/null",
             path);
    if (system("ffmpeg -version >/dev/null 2>&1") != 0 || system(cmd) != 0) SKIP("the ffmpeg CLI cannot make an RGB24 video");
    lv_video *v = NULL;
    REQUIRE(lv_video_open(path, lv_video_default_open_params(), &v) == LV_OK, "open: %s", lv_last_error());
    lv_video_read_params rp = lv_video_default_read_params();
    rp.sample = LV_VIDEO_SAMPLE_ALL;
    rp.n_threads = 1;
    void *full = NULL, *small = NULL;
    int64_t n1 = 0, n2 = 0, fs1 = 0, fs2 = 0;
    REQUIRE(lv_video_read_all(v, &rp, &full, &n1, &fs1) == LV_OK && n1 == 5 && fs1 == 200 * 120 * 3, "full size: %lld", (long long)n1);
    const int sizes[][2] = {{64, 64}, {50, 30}, {333, 201}};
    for (int k = 0; k < 3; k++) {
        const int dw = sizes[k][0], dh = sizes[k][1];
        rp.width = dw, rp.height = dh;
        REQUIRE(lv_video_read_all(v, &rp, &small, &n2, &fs2) == LV_OK && n2 == 5, "resized");
        lv_video_scaler *s = NULL;
        REQUIRE(lv_video_scaler_new(200, 120, dw, dh, &s) == LV_OK, "scaler");
        uint8_t *mine = malloc((size_t)fs2);
        REQUIRE(mine, "memory");
        int differ = 0;
        for (int i = 0; i < 5; i++) {
            CHECK(lv_video_scaler_run(s, (const uint8_t *)full + (size_t)i * fs1, 200 * 3, mine, dw * 3) == LV_OK, "run");
            differ += memcmp(mine, (const uint8_t *)small + (size_t)i * fs2, (size_t)fs2) != 0;
        }
        CHECK(differ == 0, "%dx%d: %d of 5 frames differ from the reader's resize", dw, dh, differ);
        free(mine);
        lv_video_scaler_free(s);
        lv_video_frames_free(small);
    }
    lv_video_frames_free(full);
    lv_video_free(v);
    remove(path);
}
