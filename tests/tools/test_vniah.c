/*
 * test_vniah.c: the V-NIAH data of tools/common/vniah.c (docs/vniah.md): the font and renderer,
 * the samples made from the haystack bank (../shared/data/video/nasa_13013.mp4; skipped without
 * it), and an evaluation video written with the H.264 writer and read back by the reader.
 */
#include "../../tools/common/vniah.h"
#include "lv_test.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint8_t FG[3] = {10, 20, 30}, BG[3] = {240, 230, 220};
static const char *const CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ :.,-?!'/#+=()";

static bool px_is(const uint8_t *p, const uint8_t c[3]) { return p[0] == c[0] && p[1] == c[1] && p[2] == c[2]; }

TEST(vniah_glyphs_at_scale_1) {
    const int W = 24, H = 16, X = 3, Y = 2;
    uint8_t img[16][24][3];
    int n_glyphs = 0;
    for (const char *c = CHARSET; *c; c++) {
        const uint8_t *g = vn_glyph(*c);
        REQUIRE(g, "the font has '%c'", *c);
        n_glyphs++;
        memset(img, 77, sizeof(img));
        const char text[2] = {*c, 0};
        vn_draw_text(&img[0][0][0], W, H, W * 3, text, X, Y, 1, 1, FG, BG);
        int bw, bh;
        vn_text_box(text, 1, 1, &bw, &bh);
        CHECK(bw == VN_GLYPH_W + 2 * VN_MARGIN && bh == VN_GLYPH_H + 2 * VN_MARGIN, "'%c': box %dx%d", *c, bw, bh);
        int bad = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                const int gx = x - X - VN_MARGIN, gy = y - Y - VN_MARGIN;
                const bool in_box = x >= X && x < X + bw && y >= Y && y < Y + bh;
                const bool on = gx >= 0 && gx < VN_GLYPH_W && gy >= 0 && gy < VN_GLYPH_H && ((g[gy] >> (4 - gx)) & 1);
                const uint8_t keep[3] = {77, 77, 77};
                bad += !px_is(img[y][x], !in_box ? keep : on ? FG : BG);
            }
        CHECK(bad == 0, "'%c': %d pixels differ from its bitmap", *c, bad);
    }
    /* digits and letters all drawn (no empty cell) and all different; lowercase is the capital */
    for (const char *a = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"; *a; a++) {
        const uint8_t *g = vn_glyph(*a);
        int on = 0;
        for (int r = 0; r < VN_GLYPH_H; r++) on += g[r] != 0 && (g[r] & ~0x1f) == 0;
        CHECK(on >= 3, "'%c' has ink in only %d rows (or bits outside the 5 columns)", *a, on);
        for (const char *b = a + 1; *b; b++) CHECK(memcmp(g, vn_glyph(*b), VN_GLYPH_H) != 0, "'%c' and '%c' look the same", *a, *b);
    }
    CHECK(vn_glyph('q') == vn_glyph('Q') && vn_glyph('@') == NULL && vn_glyph('"') == NULL, "lowercase and unknown characters");
    CHECK(vn_text_ok("12345") && vn_text_ok("RED fox") && !vn_text_ok("") && !vn_text_ok("a@b") &&
              !vn_text_ok("123456789012345678901234"),
          "vn_text_ok");
    /* a string: glyph i at VN_ADVANCE * i, the column between glyphs is background */
    uint8_t line[11][40][3];
    memset(line, 0, sizeof(line));
    vn_draw_text(&line[0][0][0], 40, 11, 40 * 3, "3:7", 0, 0, 1, 1, FG, BG);
    int bad = 0;
    for (int i = 0; i < 3; i++) {
        const uint8_t *g = vn_glyph("3:7"[i]);
        for (int r = 0; r < VN_GLYPH_H; r++)
            for (int c = 0; c < VN_ADVANCE; c++) {
                const bool on = c < VN_GLYPH_W && ((g[r] >> (4 - c)) & 1);
                const int x = VN_MARGIN + VN_ADVANCE * i + c;
                if (x < VN_MARGIN + VN_ADVANCE * 3 - 1) bad += !px_is(line[VN_MARGIN + r][x], on ? FG : BG);
            }
    }
    CHECK(bad == 0, "'3:7' at scale 1: %d pixels wrong", bad);
    CHECK(n_glyphs == (int)strlen(CHARSET), "glyphs");
}

/* at scale k/1 every font pixel is a k x k block: the same as the scale-1 drawing enlarged */
TEST(vniah_scaled_text_is_the_bitmap_enlarged) {
    const char *text = "90210";
    int bw1, bh1, bw3, bh3;
    vn_text_box(text, 1, 1, &bw1, &bh1);
    vn_text_box(text, 3, 1, &bw3, &bh3);
    REQUIRE(bw3 == 3 * bw1 && bh3 == 3 * bh1, "box %dx%d at 3 vs %dx%d", bw3, bh3, bw1, bh1);
    uint8_t *a = calloc((size_t)bw1 * bh1 * 3, 1), *b = calloc((size_t)bw3 * bh3 * 3, 1);
    REQUIRE(a && b, "memory");
    vn_draw_text(a, bw1, bh1, bw1 * 3, text, 0, 0, 1, 1, FG, BG);
    vn_draw_text(b, bw3, bh3, bw3 * 3, text, 0, 0, 6, 2, FG, BG); /* 6/2 = 3 */
    int bad = 0;
    for (int y = 0; y < bh3; y++)
        for (int x = 0; x < bw3; x++) bad += memcmp(b + ((size_t)y * bw3 + x) * 3, a + ((size_t)(y / 3) * bw1 + x / 3) * 3, 3) != 0;
    CHECK(bad == 0, "%d pixels differ from the enlarged bitmap", bad);
    /* a fractional scale covers the box exactly: floor(cells * num / den) pixels, each a glyph or box colour */
    vn_text_box(text, 37, 16, &bw3, &bh3);
    CHECK(bw3 == (int)((int64_t)bw1 * 37 / 16) && bh3 == (int)((int64_t)bh1 * 37 / 16), "box at 37/16: %dx%d", bw3, bh3);
    free(a);
    free(b);
}

TEST(vniah_text_clipped_at_frame_edges) {
    /* the frame sits inside a guarded buffer: a wider stride and rows above and below */
    enum { W = 50, H = 30, STRIDE = (W + 7) * 3, PAD = 4 };
    uint8_t *buf = malloc((size_t)STRIDE * (H + 2 * PAD));
    uint8_t *ref = malloc((size_t)(W + 400) * 3 * (H + 400));
    REQUIRE(buf && ref, "memory");
    const int pos[][2] = {{-20, -5}, {40, 25}, {-200, 10}, {10, -60}, {45, -3}, {-3, 28}, {49, 29}, {60, 40}};
    const int scales[][2] = {{1, 1}, {3, 1}, {5, 2}, {7, 16}};
    int guard_bad = 0, inside_bad = 0;
    for (size_t k = 0; k < sizeof(pos) / sizeof(pos[0]); k++)
        for (size_t s = 0; s < sizeof(scales) / sizeof(scales[0]); s++) {
            memset(buf, 0x5a, (size_t)STRIDE * (H + 2 * PAD));
            uint8_t *frame = buf + (size_t)PAD * STRIDE;
            vn_draw_text(frame, W, H, STRIDE, "NEEDLE 42", pos[k][0], pos[k][1], scales[s][0], scales[s][1], FG, BG);
            for (int y = 0; y < H + 2 * PAD; y++)
                for (int x = 0; x < STRIDE; x++) {
                    const bool in = y >= PAD && y < PAD + H && x < W * 3;
                    if (!in) guard_bad += buf[(size_t)y * STRIDE + x] != 0x5a;
                }
            /* inside the frame: what an unclipped drawing on a large canvas has there */
            const int RW = W + 400, RH = H + 400, OX = 200, OY = 200;
            memset(ref, 0x5a, (size_t)RW * 3 * RH);
            vn_draw_text(ref, RW, RH, RW * 3, "NEEDLE 42", OX + pos[k][0], OY + pos[k][1], scales[s][0], scales[s][1], FG, BG);
            for (int y = 0; y < H; y++)
                inside_bad += memcmp(frame + (size_t)y * STRIDE, ref + ((size_t)(OY + y) * RW + OX) * 3, (size_t)W * 3) != 0;
        }
    CHECK(guard_bad == 0, "%d bytes written outside the frame", guard_bad);
    CHECK(inside_bad == 0, "%d rows inside the frame differ from the unclipped drawing", inside_bad);
    /* deterministic: the same call twice, the same bytes */
    uint8_t *again = malloc((size_t)STRIDE * (H + 2 * PAD));
    REQUIRE(again, "memory");
    memcpy(again, buf, (size_t)STRIDE * (H + 2 * PAD));
    vn_draw_text(buf + (size_t)PAD * STRIDE, W, H, STRIDE, "NEEDLE 42", 60, 40, 7, 16, FG, BG);
    CHECK(memcmp(again, buf, (size_t)STRIDE * (H + 2 * PAD)) == 0, "a box entirely outside draws nothing");
    free(again);
    free(buf);
    free(ref);
}

TEST(vniah_timestamps_follow_the_prompt_rule) {
    char b[16];
    const struct {
        double t;
        const char *s;
    } cases[] = {{0, "00:00"}, {0.999, "00:00"}, {59.5, "00:59"}, {61.9, "01:01"}, {600, "10:00"}, {3600, "60:00"}, {6001, "100:01"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        lv_video_ask_timestamp(cases[i].t, b, sizeof(b));
        CHECK(strcmp(b, cases[i].s) == 0, "%g s -> '%s', want '%s'", cases[i].t, b, cases[i].s);
    }
}

TEST(vniah_config_check) {
    vn_config c = {.size = 64, .frames_min = 8, .frames_max = 16, .fps = 1, .needle_frames = 2, .digits = 5,
                   .w_single = 1, .w_keyed = 1, .w_order = 1, .keyed_needles = 3};
    CHECK(vn_config_check(&c) == 0, "a good configuration");
    CHECK(vn_min_gap(&c) == 3 && vn_min_frames(&c, VN_KEYED) == 8 && vn_min_frames(&c, VN_ORDER) == 5, "gap %d, keyed %d",
          vn_min_gap(&c), vn_min_frames(&c, VN_KEYED));
    fprintf(stderr, "(the errors below are expected)\n");
    vn_config d = c;
    d.frames_min = 7;
    CHECK(vn_config_check(&d) != 0, "7 frames cannot hold 3 keyed needles 3 apart");
    d = c, d.keyed_needles = 9;
    CHECK(vn_config_check(&d) != 0, "9 keyed needles");
    d = c, d.w_single = d.w_keyed = d.w_order = 0;
    CHECK(vn_config_check(&d) != 0, "no task");
    d = c, d.fps = 2.5;
    CHECK(vn_min_gap(&d) == 5 && vn_config_check(&d) != 0, "at 2.5 fps needles are 3 frames + 1 s apart: gap %d", vn_min_gap(&d));
}

/* ---- samples from the real haystack ------------------------------------------------------ */

static vn_config sample_config(void) {
    vn_config c = {.size = 64, .frames_min = 10, .frames_max = 16, .fps = 1, .needle_frames = 2, .digits = 5,
                   .w_single = 1, .w_keyed = 1, .w_order = 1, .keyed_needles = 3, .w_words = 0.5,
                   .bank_step = 5, .stride_max = 3};
    return c;
}

static const char *nasa_path(char *buf, size_t n) {
    const char *data = lv_test_shared_data();
    if (!data) return NULL;
    snprintf(buf, n, "%s/video/nasa_13013.mp4", data);
    struct stat sb;
    return stat(buf, &sb) == 0 ? buf : NULL;
}

static uint64_t fnv(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t sample_hash(const vn_sample *s) {
    uint64_t h = fnv(s->rgb, (size_t)s->n_frames * s->size * s->size * 3);
    h ^= fnv((const uint8_t *)s->question, strlen(s->question)) * 3;
    h ^= fnv((const uint8_t *)s->answer, strlen(s->answer)) * 7;
    return h;
}

typedef struct thr_arg {
    const vn_bank *b;
    const vn_config *c;
    int first, n;
    uint64_t h[16];
    int rc;
} thr_arg;

static void *thr_run(void *p) {
    thr_arg *a = p;
    vn_sample s = {0};
    for (int i = 0; i < a->n; i++) {
        a->rc |= vn_make_sample(a->b, a->c, 42, 7, a->first + i, &s);
        a->h[i] = sample_hash(&s);
    }
    vn_sample_free(&s);
    return NULL;
}

TEST(vniah_samples) {
    char pb[600];
    const char *path = nasa_path(pb, sizeof(pb));
    if (!path) SKIP("../shared/data/video/nasa_13013.mp4 is absent (set LV_SHARED_DATA)");
    vn_config c = sample_config();
    vn_bank *b = NULL;
    REQUIRE(vn_bank_load(&path, 1, &c, &b) == 0, "bank");
    int32_t bw, bh;
    vn_bank_frame_size(b, &bw, &bh);
    const int64_t nb = vn_bank_n_frames(b);
    /* both video streams (325 + 390 frames), one in 5 of each: 65 + 78; 480x270 -> 256x144 */
    CHECK(nb == 65 + 78, "bank frames: %lld", (long long)nb);
    CHECK(bw == 256 && bh == 144, "bank frame size %dx%d", bw, bh);
    const size_t fb = (size_t)c.size * c.size * 3;
    vn_sample s = {0}, t = {0};
    int kinds[4] = {0};
    int bad_frames = 0, bad_needles = 0, n_checked = 0;
    for (int64_t idx = 0; idx < 40; idx++) {
        REQUIRE(vn_make_sample(b, &c, 1234, 5, idx, &s) == 0, "sample %lld", (long long)idx);
        kinds[s.kind]++;
        CHECK(s.n_frames >= c.frames_min && s.n_frames <= c.frames_max && s.size == 64, "frames %d", s.n_frames);
        CHECK(fabs(s.duration_s - s.n_frames / c.fps) < 1e-12, "duration");
        /* each frame: the bank's (reduced) frame, except the needles' frames, which differ from it */
        for (int32_t i = 0; i < s.n_frames; i++) {
            const int64_t bi = (s.bank_start + (int64_t)i * s.stride) % nb;
            const uint8_t *want = vn_bank_frame_small(b, bi), *got = s.rgb + (size_t)i * fb;
            bool in_needle = false;
            for (int k = 0; k < s.n_needles; k++) in_needle |= i >= s.needles[k].f0 && i < s.needles[k].f1;
            if (!in_needle) {
                bad_frames += memcmp(want, got, fb) != 0;
            } else {
                double d = 0;
                for (size_t j = 0; j < fb; j++) d += abs((int)want[j] - (int)got[j]);
                bad_needles += d / (double)fb < 8; /* a box of 45-90% of the width with text on it */
                /* the glyph centres (train-video --oracle-grid) are centred in the box that changed the frame */
                const vn_needle *nd = NULL;
                for (int k = 0; k < s.n_needles; k++)
                    if (i >= s.needles[k].f0 && i < s.needles[k].f1) nd = &s.needles[k];
                int x0 = c.size, x1 = -1, y0 = c.size, y1 = -1;
                for (int y = 0; y < c.size; y++)
                    for (int x = 0; x < c.size; x++) {
                        const size_t o = ((size_t)y * c.size + (size_t)x) * 3;
                        int dd = 0;
                        for (int ch = 0; ch < 3; ch++) dd += abs((int)want[o + ch] - (int)got[o + ch]);
                        if (dd > 90) x0 = x < x0 ? x : x0, x1 = x > x1 ? x : x1, y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1;
                    }
                const int n = (int)strlen(nd->text);
                const double mid_x = (nd->cx[0] + nd->cx[n - 1]) / 2 * c.size, box_x = (x0 + x1 + 1) / 2.0, box_y = (y0 + y1 + 1) / 2.0;
                bool inc = true;
                for (int g = 1; g < n; g++) inc &= nd->cx[g] > nd->cx[g - 1] && fabs((nd->cx[g] - nd->cx[g - 1]) - (nd->cx[1] - nd->cx[0])) < 1e-12;
                CHECK(x1 >= 0 && inc && fabs(mid_x - box_x) < 1.0 && fabs(nd->cy * c.size - box_y) < 1.0 && nd->cx[0] * c.size > x0 &&
                          nd->cx[n - 1] * c.size < x1 + 1,
                      "'%s' glyph centres %.2f..%.2f (mid %.2f), line %.2f; the changed box %d..%d x %d..%d", nd->text, nd->cx[0] * c.size,
                      nd->cx[n - 1] * c.size, mid_x, nd->cy * c.size, x0, x1, y0, y1);
            }
            n_checked++;
        }
        /* needles: sorted, inside the sample, the configured length, at least the gap apart; t of f0 */
        for (int k = 0; k < s.n_needles; k++) {
            const vn_needle *nd = &s.needles[k];
            CHECK(nd->f0 >= 0 && nd->f1 == nd->f0 + c.needle_frames && nd->f1 <= s.n_frames, "needle %d: [%d, %d)", k, nd->f0, nd->f1);
            CHECK(fabs(nd->t - nd->f0 / c.fps) < 1e-12, "needle %d: t %g", k, nd->t);
            if (k) CHECK(nd->f0 - s.needles[k - 1].f0 >= vn_min_gap(&c), "needles %d and %d: %d and %d", k - 1, k, s.needles[k - 1].f0, nd->f0);
            CHECK(vn_text_ok(nd->text), "needle text '%s'", nd->text);
        }
        char ts[32], q[160];
        switch (s.kind) {
        case VN_SINGLE:
            CHECK(s.n_needles == 1 && strcmp(s.question, "What is the number shown in the video?") == 0, "single: %s", s.question);
            CHECK(strcmp(s.answer, s.needles[0].text) == 0 && strlen(s.answer) == 5 && s.answer[0] != '0' &&
                      strspn(s.answer, "0123456789") == 5,
                  "single answer '%s'", s.answer);
            break;
        case VN_KEYED:
            CHECK(s.n_needles == c.keyed_needles && s.asked >= 0 && s.asked < s.n_needles, "keyed: %d needles", s.n_needles);
            lv_video_ask_timestamp((double)s.needles[s.asked].f0 / c.fps, ts, sizeof(ts));
            snprintf(q, sizeof(q), "What number is shown at %s?", ts);
            CHECK(strcmp(s.question, q) == 0, "keyed: '%s', want '%s'", s.question, q);
            CHECK(strcmp(s.answer, s.needles[s.asked].text) == 0, "keyed answer '%s'", s.answer);
            for (int k = 0; k < s.n_needles; k++)
                for (int l = k + 1; l < s.n_needles; l++) {
                    char a[32], bb[32];
                    lv_video_ask_timestamp(s.needles[k].t, a, sizeof(a));
                    lv_video_ask_timestamp(s.needles[l].t, bb, sizeof(bb));
                    CHECK(strcmp(a, bb) != 0 && strcmp(s.needles[k].text, s.needles[l].text) != 0, "keyed needles %d, %d: %s %s", k, l, a, bb);
                }
            break;
        case VN_ORDER: {
            char q1[160], q2[160];
            snprintf(q1, sizeof(q1), "Which number was shown first, %s or %s?", s.needles[0].text, s.needles[1].text);
            snprintf(q2, sizeof(q2), "Which number was shown first, %s or %s?", s.needles[1].text, s.needles[0].text);
            CHECK(s.n_needles == 2 && (strcmp(s.question, q1) == 0 || strcmp(s.question, q2) == 0), "order: %s", s.question);
            CHECK(s.needles[0].f0 < s.needles[1].f0 && strcmp(s.answer, s.needles[0].text) == 0, "order answer '%s'", s.answer);
            break;
        }
        case VN_WORDS:
            CHECK(s.n_needles == 1 && strcmp(s.answer, s.needles[0].text) == 0 && strchr(s.answer, ' ') &&
                      strspn(s.answer, "ABCDEFGHIJKLMNOPQRSTUVWXYZ ") == strlen(s.answer),
                  "words '%s'", s.answer);
            break;
        }
        CHECK(s.answer[0] != ' ' && s.answer[strlen(s.answer) - 1] != '.', "answer '%s'", s.answer);
        /* the same (seed, step, index) in a fresh sample: the same bytes; the next index differs */
        REQUIRE(vn_make_sample(b, &c, 1234, 5, idx, &t) == 0, "again");
        CHECK(t.n_frames == s.n_frames && memcmp(t.rgb, s.rgb, (size_t)s.n_frames * fb) == 0 && strcmp(t.question, s.question) == 0 &&
                  strcmp(t.answer, s.answer) == 0,
              "sample %lld is not reproduced", (long long)idx);
        REQUIRE(vn_make_sample(b, &c, 1234, 5, idx + 1, &t) == 0, "next");
        CHECK(sample_hash(&t) != sample_hash(&s), "samples %lld and %lld are equal", (long long)idx, (long long)idx + 1);
    }
    CHECK(bad_frames == 0, "%d frames without a needle differ from the bank's", bad_frames);
    CHECK(bad_needles == 0, "%d needle frames look like the bank's", bad_needles);
    CHECK(kinds[0] && kinds[1] && kinds[2] && kinds[3], "kinds %d %d %d %d", kinds[0], kinds[1], kinds[2], kinds[3]);
    CHECK(n_checked > 300, "frames checked: %d", n_checked);
    /* another seed or step: other samples */
    REQUIRE(vn_make_sample(b, &c, 1235, 5, 0, &t) == 0 && vn_make_sample(b, &c, 1234, 5, 0, &s) == 0, "seeds");
    CHECK(sample_hash(&t) != sample_hash(&s), "seed 1234 and 1235 give the same sample 0");
    REQUIRE(vn_make_sample(b, &c, 1234, 6, 0, &t) == 0, "step");
    CHECK(sample_hash(&t) != sample_hash(&s), "steps 5 and 6 give the same sample 0");
    /* thread count: two threads making samples 0..7 and 8..15 at once, as one thread does */
    thr_arg one = {b, &c, 0, 16, {0}, 0}, a0 = {b, &c, 0, 8, {0}, 0}, a1 = {b, &c, 8, 8, {0}, 0};
    thr_run(&one);
    pthread_t th[2];
    pthread_create(&th[0], NULL, thr_run, &a0);
    pthread_create(&th[1], NULL, thr_run, &a1);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    CHECK(one.rc == 0 && a0.rc == 0 && a1.rc == 0, "threads' samples");
    CHECK(memcmp(one.h, a0.h, 8 * sizeof(uint64_t)) == 0 && memcmp(one.h + 8, a1.h, 8 * sizeof(uint64_t)) == 0,
          "samples made on two threads differ from one thread's");
    vn_sample_free(&s);
    vn_sample_free(&t);
    vn_bank_free(b);
}

/* at 2 fps with 3-frame needles, keyed needles still get distinct MM:SS (at least 1 s apart) */
TEST(vniah_keyed_at_two_fps) {
    char pb[600];
    const char *path = nasa_path(pb, sizeof(pb));
    if (!path) SKIP("../shared/data/video/nasa_13013.mp4 is absent (set LV_SHARED_DATA)");
    vn_config c = {.size = 32, .frames_min = 40, .frames_max = 40, .fps = 2, .needle_frames = 3, .digits = 5, .w_keyed = 1,
                   .keyed_needles = 8, .bank_step = 13};
    vn_bank *b = NULL;
    REQUIRE(vn_bank_load(&path, 1, &c, &b) == 0, "bank");
    vn_sample s = {0};
    int bad = 0;
    for (int idx = 0; idx < 30; idx++) {
        REQUIRE(vn_make_sample(b, &c, 9, 0, idx, &s) == 0, "sample");
        REQUIRE(s.kind == VN_KEYED && s.n_needles == 8, "keyed");
        for (int k = 1; k < 8; k++) {
            char a[32], bb[32];
            lv_video_ask_timestamp(s.needles[k - 1].t, a, sizeof(a));
            lv_video_ask_timestamp(s.needles[k].t, bb, sizeof(bb));
            bad += strcmp(a, bb) == 0 || s.needles[k].f0 - s.needles[k - 1].f0 < 5;
        }
    }
    CHECK(bad == 0, "%d pairs of keyed needles too close", bad);
    vn_sample_free(&s);
    vn_bank_free(b);
}

/* an evaluation video: NASA footage with a needle, through libx264 and back through the reader */
TEST(vniah_h264_needle_roundtrip) {
    lv_video_route_libav_log(); /* libx264's statistics at debug level, not on stderr */
    char pb[600];
    const char *hay = nasa_path(pb, sizeof(pb));
    if (!hay) SKIP("../shared/data/video/nasa_13013.mp4 is absent (set LV_SHARED_DATA)");
    const int W = 192, H = 108, N = 12, F0 = 5, F1 = 7; /* 4 fps, 3 s; the needle on frames 5 and 6 */
    lv_video *v = NULL;
    REQUIRE(lv_video_open(hay, lv_video_default_open_params(), &v) == LV_OK, "open: %s", lv_last_error());
    lv_video_read_params rp = lv_video_default_read_params();
    rp.sample = LV_VIDEO_SAMPLE_FPS;
    rp.fps = 4;
    rp.width = W, rp.height = H, rp.n_threads = 1;
    void *hf = NULL;
    int64_t nh = 0, fs = 0;
    REQUIRE(lv_video_read_all(v, &rp, &hf, &nh, &fs) == LV_OK && nh >= N, "haystack frames: %lld", (long long)nh);
    lv_video_free(v);
    const size_t fb = (size_t)W * H * 3;
    uint8_t *src = malloc((size_t)N * fb);
    REQUIRE(src, "memory");
    memcpy(src, hf, (size_t)N * fb);
    lv_video_frames_free(hf);
    vn_rng r = {5};
    vn_style st;
    vn_needle_style(&r, "48151", W, H, 0.45, 0.9, &st);
    CHECK(st.box_w >= (int)(0.44 * W) && st.box_w <= (int)(0.91 * W) && st.x >= 0 && st.x + st.box_w <= W && st.y >= 0 &&
              st.y + st.box_h <= H,
          "box %dx%d at %d,%d", st.box_w, st.box_h, st.x, st.y);
    for (int i = F0; i < F1; i++) vn_draw_text(src + i * fb, W, H, W * 3, "48151", st.x, st.y, st.scale_num, st.scale_den, st.fg, st.bg);

    char path[512];
    snprintf(path, sizeof(path), "%s/vniah_roundtrip_%d.mp4", lv_test_tmpdir(), (int)getpid());
    lv_video_writer_params wp = lv_video_default_writer_params();
    wp.width = W, wp.height = H, wp.fps_num = 4, wp.fps_den = 1, wp.gop = 4, wp.n_threads = 1;
    lv_video_writer *w = NULL;
    lv_status s = lv_video_writer_open(path, &wp, &w);
    if (s == LV_ERR_UNSUPPORTED && strstr(lv_last_error(), "libx264")) {
        free(src);
        SKIP("%s", lv_last_error());
    }
    REQUIRE(s == LV_OK, "writer: %s", lv_last_error());
    for (int i = 0; i < N; i++) CHECK(lv_video_writer_push(w, src + i * fb) == LV_OK, "push: %s", lv_last_error());
    REQUIRE(lv_video_writer_close(w) == LV_OK, "close: %s", lv_last_error());

    REQUIRE(lv_video_open(path, lv_video_default_open_params(), &v) == LV_OK, "reopen: %s", lv_last_error());
    lv_video_info in;
    lv_video_get_info(v, &in);
    CHECK(in.n_frames == N && fabs(in.avg_fps - 4) < 1e-6 && in.n_keyframes == 3, "%lld frames at %.3f fps, %lld keyframes",
          (long long)in.n_frames, in.avg_fps, (long long)in.n_keyframes);
    rp = lv_video_default_read_params();
    rp.sample = LV_VIDEO_SAMPLE_FPS;
    rp.fps = 4;
    rp.n_threads = 2;
    void *got = NULL;
    int64_t ng = 0;
    REQUIRE(lv_video_read_all(v, &rp, &got, &ng, &fs) == LV_OK && ng == N && fs == (int64_t)fb, "read back %lld frames", (long long)ng);
    lv_video_free(v);
    /* only the needle's box: the decoded needle frames against the rendered ones, and against a
     * frame without the needle (the box's pixels differ there by far more than compression) */
    for (int i = 0; i < N; i++) {
        double own = 0, other = 0;
        const uint8_t *g = (const uint8_t *)got + i * fb;
        const uint8_t *o = src + (size_t)(i >= F0 && i < F1 ? F1 : F0) * fb; /* a frame across the needle boundary */
        int64_t cnt = 0;
        for (int y = st.y; y < st.y + st.box_h; y++)
            for (int x = st.x; x < st.x + st.box_w; x++)
                for (int k = 0; k < 3; k++) {
                    const size_t j = ((size_t)y * W + x) * 3 + k;
                    own += abs((int)g[j] - (int)src[i * fb + j]);
                    other += abs((int)g[j] - (int)o[j]);
                    cnt++;
                }
        own /= (double)cnt, other /= (double)cnt;
        CHECK(own < 12, "frame %d: mean abs diff %.1f from what was rendered in the box", i, own);
        if (i == F0 || i == F1 - 1 || i == F1) CHECK(other > 3 * own + 20, "frame %d: the box %s the needle frames (%.1f vs own %.1f)", i,
                                                     i < F1 ? "differs too little from outside" : "looks like", other, own);
    }
    lv_video_frames_free(got);
    free(src);
    remove(path);
}

/* `eval vniah`'s scoring rule (vn_answer_right, docs/vniah.md): the response's first run of digits
 * must be the expected number, exactly. */
TEST(vniah_answer_rule) {
    const struct {
        const char *resp;
        bool right;
        const char *first;
    } cases[] = {
        {"12345", true, "12345"},          {" 12345.", true, "12345"},       {"It is 12345, yes", true, "12345"},
        {"12345 67890", true, "12345"},    {"\n12345</s>", true, "12345"},   {"The number: 12345!", true, "12345"},
        {"123456", false, "123456"},       {"1234 5", false, "1234"},        {"12,345", false, "12"},
        {"01:23 12345", false, "01"},      {"", false, ""},                  {"no number", false, ""},
        {"67890 12345", false, "67890"},   {"1234", false, "1234"},          {"012345", false, "012345"},
        {"\xc3\xa9" "12345", true, "12345"},  {"-12345", true, "12345"},        {"12345.6", true, "12345"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK(vn_answer_right(cases[i].resp, "12345") == cases[i].right, "'%s' for 12345: %s, want %s", cases[i].resp,
              vn_answer_right(cases[i].resp, "12345") ? "right" : "wrong", cases[i].right ? "right" : "wrong");
        char first[32];
        const int n = vn_first_number(cases[i].resp, first, sizeof(first));
        CHECK(strcmp(first, cases[i].first) == 0 && n == (int)strlen(cases[i].first), "first number of '%s': '%s' (%d)", cases[i].resp, first, n);
    }
    CHECK(!vn_answer_right("12345", "") && !vn_answer_right(NULL, "12345"), "an empty answer is never right");
    char small[4];
    CHECK(vn_first_number("x123456", small, sizeof(small)) == 6 && strcmp(small, "123") == 0, "cut: '%s'", small);
}

/* `eval vniah`'s needles (vn_eval_layout): the needle at the depth, the others far enough apart,
 * distinct 5-digit numbers in time order, each task's question naming the right needle; a pure
 * function of its arguments. */
TEST(vniah_eval_layout) {
    const double depths[] = {0, 0.1, 0.25, 0.5, 0.75, 0.9, 1};
    const vn_kind kinds[] = {VN_SINGLE, VN_KEYED, VN_ORDER};
    int swaps = 0, orders = 0;
    for (int ki = 0; ki < 3; ki++)
        for (int fi = 0; fi < 2; fi++)
            for (size_t di = 0; di < sizeof(depths) / sizeof(depths[0]); di++)
                for (uint64_t seed = 0; seed < 6; seed++) {
                    const double fps = fi ? 2.0 : 1.0;
                    const int64_t n = fi ? 41 : 60;
                    const int32_t NF = fi ? 2 : 1, K = 4;
                    vn_eval_needles e, e2;
                    REQUIRE(vn_eval_layout(kinds[ki], n, fps, NF, K, 5, depths[di], seed, &e) == 0, "layout");
                    REQUIRE(vn_eval_layout(kinds[ki], n, fps, NF, K, 5, depths[di], seed, &e2) == 0 && memcmp(&e, &e2, sizeof(e)) == 0,
                            "the same arguments, the same needles");
                    const int want_n = kinds[ki] == VN_KEYED ? K : kinds[ki] == VN_ORDER ? 2 : 1;
                    REQUIRE(e.n_needles == want_n, "%d needles", e.n_needles);
                    const vn_needle *d = &e.needles[e.at_depth];
                    CHECK(d->f0 == llround(depths[di] * (double)(n - NF)) && d->f1 == d->f0 + NF, "depth %g: needle at frame %d", depths[di],
                          d->f0);
                    const int32_t gap = NF + (int32_t)ceil(fps);
                    for (int i = 0; i < e.n_needles; i++) {
                        const vn_needle *x = &e.needles[i];
                        CHECK(x->f0 >= 0 && x->f1 == x->f0 + NF && x->f1 <= n && fabs(x->t - x->f0 / fps) < 1e-12, "needle %d frames", i);
                        CHECK(strlen(x->text) == 5 && x->text[0] != '0' && strspn(x->text, "0123456789") == 5, "number '%s'", x->text);
                        for (int j = 0; j < i; j++) {
                            CHECK(x->f0 - e.needles[j].f0 >= gap, "needles %d and %d: frames %d, %d (gap %d)", j, i, e.needles[j].f0, x->f0, gap);
                            CHECK(strcmp(x->text, e.needles[j].text) != 0, "two needles say %s", x->text);
                        }
                    }
                    if (kinds[ki] == VN_SINGLE) {
                        CHECK(strcmp(e.question, "What is the number shown in the video?") == 0 && strcmp(e.answer, e.needles[0].text) == 0,
                              "single: %s / %s", e.question, e.answer);
                    } else if (kinds[ki] == VN_KEYED) {
                        char ts[32], q[64];
                        lv_video_ask_timestamp(d->f0 / fps, ts, sizeof(ts));
                        snprintf(q, sizeof(q), "What number is shown at %s?", ts);
                        CHECK(e.asked == e.at_depth && strcmp(e.question, q) == 0 && strcmp(e.answer, d->text) == 0, "keyed: %s / %s",
                              e.question, e.answer);
                    } else {
                        char q1[80], q2[80];
                        snprintf(q1, sizeof(q1), "Which number was shown first, %s or %s?", e.needles[0].text, e.needles[1].text);
                        snprintf(q2, sizeof(q2), "Which number was shown first, %s or %s?", e.needles[1].text, e.needles[0].text);
                        CHECK((strcmp(e.question, q1) == 0 || strcmp(e.question, q2) == 0) && strcmp(e.answer, e.needles[0].text) == 0,
                              "order: %s / %s", e.question, e.answer);
                        swaps += strcmp(e.question, q2) == 0;
                        orders++;
                    }
                }
    CHECK(swaps > orders / 4 && swaps < orders * 3 / 4, "order questions name the earlier needle first %d of %d times", orders - swaps, orders);
    vn_eval_needles a, b;
    REQUIRE(vn_eval_layout(VN_SINGLE, 60, 1, 1, 3, 5, 0.5, 1, &a) == 0 && vn_eval_layout(VN_SINGLE, 60, 1, 1, 3, 5, 0.5, 2, &b) == 0, "layout");
    CHECK(strcmp(a.needles[0].text, b.needles[0].text) != 0, "seeds 1 and 2 give the same number %s", a.needles[0].text);
    /* too short: keyed 3 needles 2 frames apart need 5 frames */
    fprintf(stderr, "(the errors below are expected)\n");
    CHECK(vn_eval_layout(VN_KEYED, 5, 1, 1, 3, 5, 0.5, 0, &a) == 0, "5 frames are enough for 3 keyed needles");
    CHECK(vn_eval_layout(VN_KEYED, 4, 1, 1, 3, 5, 0, 0, &a) != 0, "4 frames are not");
    CHECK(vn_eval_layout(VN_WORDS, 60, 1, 1, 3, 5, 0, 0, &a) != 0, "words are not an evaluation task");
    CHECK(vn_eval_layout(VN_SINGLE, 60, 1, 1, 3, 5, 1.5, 0, &a) != 0, "depth 1.5 refused");
}
