/*
 * test_video.c: the video module (docs/video.md).
 *
 * The oracle for every fast path is the slow one beside it: the planned, interval-parallel,
 * frame-skipping reader must return exactly (hash of every frame, pts, source frame) what the
 * sequential reader returns, which decodes every frame on one thread and samples online; and with
 * the fps rule both must be byte-identical to the ffmpeg CLI's
 *   ffmpeg -i X -vf fps=F,scale=W:H -pix_fmt rgb24 -f rawvideo
 * The test videos are generated here with Debian's ffmpeg (small and short: CI runs the suite
 * twice on 2 cores) into the test scratch directory, and kept there between runs. The real clips
 * of ../shared/data/video are used when present.
 */
#define _GNU_SOURCE
#include "lv_test.h"
#include "longview.h"
#include "video/video.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* -------------------------------------------------------------------------------------------
 * helpers
 * ----------------------------------------------------------------------------------------- */

static int have_ffmpeg(void) {
    static int have = -1;
    if (have < 0) have = system("ffmpeg -hide_banner -version >/dev/null 2>&1") == 0;
    return have;
}

static int quiet_logs_once;
static void quiet_logs(void) {
    if (!quiet_logs_once) {
        lv_video_route_libav_log();
        quiet_logs_once = 1;
    }
}

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && sb.st_size > 0;
}

/* Generate (once) tmpdir/video/<name> with `ffmpeg -y <args> <file>`. Returns the path or NULL. */
static const char *gen(const char *name, const char *args) {
    static char paths[64][512];
    static int n_paths;
    if (!have_ffmpeg()) return NULL;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/video", lv_test_tmpdir());
    mkdir(dir, 0755);
    char *path = paths[n_paths++ % 64];
    snprintf(path, 512, "%s/%s", dir, name);
    if (file_exists(path)) return path;
    char tmp[600], cmd[4096];
    snprintf(tmp, sizeof(tmp), "%s/tmp_%s", dir, name);
    snprintf(cmd, sizeof(cmd), "ffmpeg -hide_banner -loglevel error -nostdin -y %s '%s' && mv '%s' '%s'", args, tmp, tmp,
             path);
    if (system(cmd) != 0) {
        fprintf(stderr, "  cannot generate %s: %s\n", name, cmd);
        return NULL;
    }
    return path;
}

static uint64_t fnv1a64(const void *data, int64_t n) {
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (int64_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

typedef struct vres {
    int64_t n;
    uint64_t hash[4096];
    int64_t pts[4096], src[4096], index[4096];
    double time[4096];
    lv_video_stats stats;
    lv_status st;
} vres;

/* Run a reader to the end; keeps a hash per frame. */
static vres *run_reader(const char *path, const lv_video_read_params *p, int32_t stream) {
    vres *r = calloc(1, sizeof(*r));
    lv_video_open_params op = lv_video_default_open_params();
    op.stream = stream;
    lv_video *v = NULL;
    r->st = lv_video_open(path, op, &v);
    if (r->st != LV_OK) return r;
    lv_video_reader *rd = NULL;
    r->st = lv_video_read_start(v, p, &rd);
    if (r->st == LV_OK) {
        lv_video_frame f;
        while ((r->st = lv_video_reader_next(rd, &f)) == LV_OK && f.data) {
            if (r->n < 4096) {
                r->hash[r->n] = fnv1a64(f.data, f.size);
                r->pts[r->n] = f.pts;
                r->src[r->n] = f.source_frame;
                r->index[r->n] = f.index;
                r->time[r->n] = f.time_s;
            }
            r->n++;
        }
        lv_video_reader_stats(rd, &r->stats);
        lv_video_reader_free(rd);
    }
    lv_video_free(v);
    return r;
}

/* ffmpeg's own frames for the same job (hash per frame of frame_size bytes). */
static vres *run_ffmpeg(const char *path, const char *vf, const char *extra, int64_t frame_size) {
    vres *r = calloc(1, sizeof(*r));
    char out[600], cmd[4096];
    snprintf(out, sizeof(out), "%s/video/ffmpeg_out_%d.rgb", lv_test_tmpdir(), (int)getpid());
    snprintf(cmd, sizeof(cmd),
             "ffmpeg -hide_banner -loglevel error -nostdin -y -threads 1 -i '%s' %s -vf '%s' -pix_fmt rgb24 -f rawvideo '%s'",
             path, extra ? extra : "", vf, out);
    if (system(cmd) != 0) {
        r->st = LV_ERR_IO;
        return r;
    }
    FILE *f = fopen(out, "rb");
    uint8_t *buf = malloc((size_t)frame_size);
    while (f && buf && fread(buf, 1, (size_t)frame_size, f) == (size_t)frame_size) {
        if (r->n < 4096) r->hash[r->n] = fnv1a64(buf, frame_size);
        r->n++;
    }
    free(buf);
    if (f) fclose(f);
    unlink(out);
    return r;
}

/* Same frames, same order? (what = a label for the failure message) */
static int same_frames(const vres *a, const vres *b, int check_meta, const char *what) {
    CHECK(a->st == LV_OK && b->st == LV_OK, "%s: a reader failed (%s / %s): %s", what, lv_status_str(a->st),
          lv_status_str(b->st), lv_last_error());
    CHECK(a->n == b->n, "%s: %lld frames vs %lld", what, (long long)a->n, (long long)b->n);
    if (a->n != b->n || a->st != LV_OK || b->st != LV_OK) return 0;
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < a->n && i < 4096; i++) {
        int diff = a->hash[i] != b->hash[i];
        if (check_meta) diff |= a->pts[i] != b->pts[i] || a->src[i] != b->src[i] || fabs(a->time[i] - b->time[i]) > 1e-9;
        if (diff) {
            if (first < 0) first = i;
            bad++;
        }
    }
    CHECK(bad == 0, "%s: %lld of %lld frames differ, the first is #%lld (pts %lld vs %lld, source %lld vs %lld)", what,
          (long long)bad, (long long)a->n, (long long)first, first >= 0 ? (long long)a->pts[first] : 0LL,
          first >= 0 ? (long long)b->pts[first] : 0LL, first >= 0 ? (long long)a->src[first] : 0LL,
          first >= 0 ? (long long)b->src[first] : 0LL);
    return bad == 0;
}

static lv_video_read_params fps_params(double fps, int w, int h, int threads) {
    lv_video_read_params p = lv_video_default_read_params();
    p.sample = LV_VIDEO_SAMPLE_FPS;
    p.fps = fps;
    p.width = w;
    p.height = h;
    p.n_threads = threads;
    return p;
}

/* The full exactness check for one file and fps: planned at 1, 2 and 3 threads, without skipping,
 * sequential, and ffmpeg. Returns the sequential result's frame count. */
static int64_t check_exact(const char *path, double fps, const char *fps_str, int w, int h, int32_t stream,
                           const char *map) {
    char what[700];
    lv_video_read_params p = fps_params(fps, w, h, 1);
    p.sequential = true;
    vres *ref = run_reader(path, &p, stream);
    snprintf(what, sizeof(what), "%s fps=%s", path, fps_str);
    CHECK(ref->st == LV_OK && ref->n > 0, "%s: the sequential reader failed: %s", what, lv_last_error());
    if (ref->st != LV_OK || ref->n == 0) {
        free(ref);
        return 0;
    }
    int threads[] = {1, 2, 3};
    int n_thr = lv_test_quick() ? 2 : 3;
    for (int t = 0; t < n_thr; t++) {
        p = fps_params(fps, w, h, threads[t]);
        vres *r = run_reader(path, &p, stream);
        snprintf(what, sizeof(what), "%s fps=%s planned -j%d vs sequential", path, fps_str, threads[t]);
        same_frames(r, ref, 1, what);
        free(r);
    }
    p = fps_params(fps, w, h, 2);
    p.no_skip = true;
    vres *r = run_reader(path, &p, stream);
    snprintf(what, sizeof(what), "%s fps=%s no-skip vs sequential", path, fps_str);
    same_frames(r, ref, 1, what);
    free(r);
    char vf[128], extra[64] = "";
    snprintf(vf, sizeof(vf), "fps=%s,scale=%d:%d", fps_str, w, h);
    if (map) snprintf(extra, sizeof(extra), "-map %s", map);
    vres *ff = run_ffmpeg(path, vf, extra, (int64_t)w * h * 3);
    snprintf(what, sizeof(what), "%s fps=%s sequential vs ffmpeg -vf %s", path, fps_str, vf);
    same_frames(ref, ff, 0, what);
    free(ff);
    int64_t n = ref->n;
    free(ref);
    return n;
}

/* -------------------------------------------------------------------------------------------
 * units: NAL classification, the fps rule
 * ----------------------------------------------------------------------------------------- */

TEST(video_nal_h264) {
    /* length-prefixed (4): SEI recovery point (cnt 0) + non-IDR slice with ref_idc 3 */
    const uint8_t rec[] = {0, 0, 0, 4, 0x06, 0x06, 0x01, 0x80, /* SEI: type 6, size 1, ue(0) = '1' */
                           0, 0, 0, 3, 0x61, 0x88, 0x80};
    lv_nal_info ni = lv_nal_classify(LV_NAL_H264, 4, rec, sizeof(rec));
    CHECK(ni.kind == LV_NAL_KIND_RECOVERY, "recovery point I picture: kind %d", ni.kind);
    const uint8_t idr[] = {0, 0, 0, 2, 0x65, 0x88};
    CHECK(lv_nal_classify(LV_NAL_H264, 4, idr, sizeof(idr)).kind == LV_NAL_KIND_IDR, "IDR");
    const uint8_t nonref[] = {0, 0, 0, 2, 0x01, 0x9a, 0, 0, 0, 2, 0x01, 0x9a};
    CHECK(lv_nal_classify(LV_NAL_H264, 4, nonref, sizeof(nonref)).kind == LV_NAL_KIND_NONREF, "nal_ref_idc 0");
    const uint8_t mixed[] = {0, 0, 0, 2, 0x01, 0x9a, 0, 0, 0, 2, 0x21, 0x9a};
    CHECK(lv_nal_classify(LV_NAL_H264, 4, mixed, sizeof(mixed)).kind == LV_NAL_KIND_REF, "one slice is a reference");
    const uint8_t annexb[] = {0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x01, 0x9a, 0x00};
    CHECK(lv_nal_classify(LV_NAL_H264, 0, annexb, sizeof(annexb)).kind == LV_NAL_KIND_NONREF, "Annex B non-ref");
    const uint8_t trunc[] = {0, 0, 0, 9, 0x01, 0x9a};
    CHECK(lv_nal_classify(LV_NAL_H264, 4, trunc, sizeof(trunc)).kind == LV_NAL_KIND_UNKNOWN, "truncated: unknown");
    const uint8_t sei_only[] = {0, 0, 0, 2, 0x06, 0x05};
    CHECK(lv_nal_classify(LV_NAL_H264, 4, sei_only, sizeof(sei_only)).kind == LV_NAL_KIND_UNKNOWN, "no slice: unknown");
    /* a recovery point with recovery_frame_cnt 2 is not an exact cut point */
    const uint8_t rec2[] = {0, 0, 0, 4, 0x06, 0x06, 0x01, 0x60, 0, 0, 0, 3, 0x61, 0x88, 0x80};
    CHECK(lv_nal_classify(LV_NAL_H264, 4, rec2, sizeof(rec2)).kind == LV_NAL_KIND_REF, "recovery_frame_cnt 2");
    CHECK(lv_nal_length_size(LV_NAL_H264, (const uint8_t[]){1, 0x64, 0, 0x1f, 0xff, 0xe1, 0}, 7) == 4, "avcC length size");
}

TEST(video_nal_hevc) {
    /* type in bits 1..6 of byte 0, TemporalId + 1 in the low 3 bits of byte 1 */
    const uint8_t trail_n[] = {0, 0, 0, 3, 0x00, 0x01, 0xaf};
    lv_nal_info ni = lv_nal_classify(LV_NAL_HEVC, 4, trail_n, sizeof(trail_n));
    CHECK(ni.kind == LV_NAL_KIND_NONREF && ni.hevc_slnr && ni.tid == 0, "TRAIL_N: kind %d", ni.kind);
    const uint8_t trail_r[] = {0, 0, 0, 3, 0x02, 0x01, 0xaf};
    CHECK(lv_nal_classify(LV_NAL_HEVC, 4, trail_r, sizeof(trail_r)).kind == LV_NAL_KIND_REF, "TRAIL_R");
    const uint8_t cra[] = {0, 0, 0, 3, 21 << 1, 0x01, 0xaf};
    CHECK(lv_nal_classify(LV_NAL_HEVC, 4, cra, sizeof(cra)).kind == LV_NAL_KIND_RECOVERY, "CRA");
    const uint8_t idr[] = {0, 0, 1, 19 << 1, 0x01, 0xaf};
    CHECK(lv_nal_classify(LV_NAL_HEVC, 0, idr, sizeof(idr)).kind == LV_NAL_KIND_IDR, "IDR, Annex B");
    const uint8_t rasl_n[] = {0, 0, 0, 3, 8 << 1, 0x02, 0xaf};
    ni = lv_nal_classify(LV_NAL_HEVC, 4, rasl_n, sizeof(rasl_n));
    CHECK(ni.kind == LV_NAL_KIND_NONREF && ni.hevc_rasl && ni.tid == 1, "RASL_N at TemporalId 1");
    const uint8_t vps_only[] = {0, 0, 0, 3, 32 << 1, 0x01, 0x0c};
    CHECK(lv_nal_classify(LV_NAL_HEVC, 4, vps_only, sizeof(vps_only)).kind == LV_NAL_KIND_UNKNOWN, "no VCL: unknown");
    CHECK(lv_nal_classify(LV_NAL_HEVC, 4, NULL, 0).kind == LV_NAL_KIND_UNKNOWN, "empty");
}

typedef struct emitted {
    int64_t id[64], tick[64];
    int n;
} emitted;

static lv_status emit_cb(void *user, int64_t id, int64_t tick) {
    emitted *e = user;
    if (e->n < 64) {
        e->id[e->n] = id;
        e->tick[e->n] = tick;
    }
    e->n++;
    return LV_OK;
}

TEST(video_fps_rule) {
    /* time base 1/10 (pts in tenths of a second), fps 1: tick k takes the last frame whose pts
     * rounds (half away from zero) to <= k */
    lv_fps_state s;
    emitted e = {0};
    lv_fps_init_(&s, (AVRational){1, 10}, 1.0);
    int64_t pts[] = {0, 4, 5, 9, 14, 31};
    for (int i = 0; i < 6; i++) lv_fps_push_(&s, i, pts[i], emit_cb, &e);
    lv_fps_eof_(&s, 35, emit_cb, &e); /* the end at 3.5 s rounds to 4 ticks */
    /* tick 0: frames 0 (0), 1 (0.4 -> 0): 1; tick 1: 2 (0.5 -> 1), 3 (0.9 -> 1), 4 (1.4 -> 1): 4;
     * tick 2: still 4 (3.1 -> 3 > 2); tick 3: 5 */
    int64_t want[] = {1, 4, 4, 5};
    CHECK(e.n == 4, "4 ticks, got %d", e.n);
    for (int i = 0; i < 4 && i < e.n; i++) CHECK(e.id[i] == want[i] && e.tick[i] == i, "tick %d: frame %lld", i, (long long)e.id[i]);

    /* a late first frame: the CLI's CFR output repeats it for the ticks before */
    memset(&e, 0, sizeof(e));
    lv_fps_init_(&s, (AVRational){1, 10}, 1.0);
    lv_fps_push_(&s, 7, 23, emit_cb, &e);
    lv_fps_push_(&s, 8, 33, emit_cb, &e);
    lv_fps_eof_(&s, 40, emit_cb, &e);
    CHECK(e.n == 4 && e.id[0] == 7 && e.id[1] == 7 && e.id[2] == 7 && e.id[3] == 8 && e.tick[3] == 3,
          "padding: %d ticks, %lld %lld %lld %lld", e.n, (long long)e.id[0], (long long)e.id[1], (long long)e.id[2],
          (long long)e.id[3]);

    /* upsampling duplicates, and the 30000/1001 rate goes through av_d2q as in vf_fps */
    memset(&e, 0, sizeof(e));
    lv_fps_init_(&s, (AVRational){1, 1000}, 30000.0 / 1001.0);
    CHECK(s.out_tb.num == 1001 && s.out_tb.den == 30000, "out time base %d/%d", s.out_tb.num, s.out_tb.den);
    lv_fps_push_(&s, 0, 0, emit_cb, &e);
    lv_fps_push_(&s, 1, 100, emit_cb, &e);
    lv_fps_eof_(&s, 200, emit_cb, &e);
    CHECK(e.n == 6 && e.id[0] == 0 && e.id[2] == 0 && e.id[3] == 1 && e.id[5] == 1, "0.2 s at 29.97 fps: %d ticks", e.n);
    /* no frames: nothing */
    memset(&e, 0, sizeof(e));
    lv_fps_init_(&s, (AVRational){1, 10}, 1.0);
    lv_fps_eof_(&s, 40, emit_cb, &e);
    CHECK(e.n == 0, "no frames, no ticks");
}

/* -------------------------------------------------------------------------------------------
 * errors and bad input
 * ----------------------------------------------------------------------------------------- */

TEST(video_open_errors) {
    quiet_logs();
    lv_video *v = (lv_video *)1;
    lv_video_open_params op = lv_video_default_open_params();
    lv_status st = lv_video_open("/nonexistent/x.mp4", op, &v);
    CHECK(st == LV_ERR_IO && v == NULL, "missing file: %s", lv_status_str(st));
    CHECK(strstr(lv_last_error(), "/nonexistent/x.mp4") != NULL, "the message names the file: %s", lv_last_error());
    char path[600];
    snprintf(path, sizeof(path), "%s/video_not_a_video.txt", lv_test_tmpdir());
    FILE *f = fopen(path, "wb");
    REQUIRE(f, "cannot write %s", path);
    for (int i = 0; i < 200; i++) fputs("this is plain text, not a video container at all\n", f);
    fclose(f);
    st = lv_video_open(path, op, &v);
    CHECK(st == LV_ERR_FORMAT && v == NULL, "text file: %s (%s)", lv_status_str(st), lv_last_error());
    CHECK(lv_video_open_memory(NULL, 0, op, &v) == LV_ERR_INVALID_ARG, "empty memory");
    CHECK(lv_video_open(lv_test_tmpdir(), op, &v) == LV_ERR_IO, "a directory");

    const char *audio = gen("audio_only.m4a", "-f lavfi -i sine=f=440:d=1 -c:a aac");
    if (!audio) SKIP("ffmpeg cannot generate test files");
    st = lv_video_open(audio, op, &v);
    CHECK(st == LV_ERR_UNSUPPORTED && strstr(lv_last_error(), "no video stream"), "audio only: %s (%s)",
          lv_status_str(st), lv_last_error());
    const char *av = gen("av.mp4", "-f lavfi -i testsrc2=size=96x64:rate=10 -f lavfi -i sine=f=440 -t 1 -c:v libx264 "
                                   "-c:a aac -pix_fmt yuv420p");
    REQUIRE(av, "generation failed");
    op.stream = 1;
    st = lv_video_open(av, op, &v);
    CHECK(st == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "not a video stream"), "stream 1 is audio: %s",
          lv_last_error());
    op.stream = 7;
    st = lv_video_open(av, op, &v);
    CHECK(st == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "no stream 7"), "stream 7: %s", lv_last_error());
    op = lv_video_default_open_params();
    op.max_pixels = 1000;
    st = lv_video_open(av, op, &v);
    CHECK(st == LV_ERR_FORMAT && strstr(lv_last_error(), "absurd"), "max_pixels: %s", lv_last_error());

    /* bad sampling arguments */
    op = lv_video_default_open_params();
    REQUIRE(lv_video_open(av, op, &v) == LV_OK, "open: %s", lv_last_error());
    lv_video_reader *rd = NULL;
    lv_video_read_params p = fps_params(0.0, 32, 32, 1);
    CHECK(lv_video_read_start(v, &p, &rd) == LV_ERR_INVALID_ARG && !rd, "fps 0");
    p = fps_params(1.0, 32, 32, 1);
    p.sample = LV_VIDEO_SAMPLE_TIMES;
    double times[] = {0.5, 0.2};
    p.times = times;
    p.n_times = 2;
    CHECK(lv_video_read_start(v, &p, &rd) == LV_ERR_INVALID_ARG, "decreasing times");
    double late[] = {5.0};
    p.times = late;
    p.n_times = 1;
    CHECK(lv_video_read_start(v, &p, &rd) == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "past the end"),
          "a time past the end: %s", lv_last_error());
    p = fps_params(1e5, 32, 32, 1);
    p.max_samples = 1000;
    CHECK(lv_video_read_start(v, &p, &rd) == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "max_samples"),
          "too many samples: %s", lv_last_error());
    p = fps_params(1.0, 100000, 32, 1);
    CHECK(lv_video_read_start(v, &p, &rd) == LV_ERR_INVALID_ARG, "absurd output size");
    lv_video_free(v);
}

TEST(video_absurd_dimensions) {
    quiet_logs();
    /* a YUV4MPEG2 header announcing 30000 x 30000 */
    char path[600];
    snprintf(path, sizeof(path), "%s/video_huge.y4m", lv_test_tmpdir());
    FILE *f = fopen(path, "wb");
    REQUIRE(f, "cannot write");
    fputs("YUV4MPEG2 W30000 H30000 F25:1 Ip A1:1 C420jpeg\nFRAME\n", f);
    for (int i = 0; i < 4096; i++) fputc(i & 255, f);
    fclose(f);
    lv_video *v = NULL;
    lv_status st = lv_video_open(path, lv_video_default_open_params(), &v);
    CHECK(st == LV_ERR_FORMAT && v == NULL, "30000x30000: %s (%s)", lv_status_str(st), lv_last_error());
}

TEST(video_unsupported_codec) {
    quiet_logs();
    const char *src = gen("mpeg4.avi", "-f lavfi -i testsrc2=size=96x64:rate=10 -t 1 -c:v mpeg4");
    if (!src) SKIP("ffmpeg cannot generate test files");
    /* rename the codec's FourCC (FMP4) to one no decoder knows */
    FILE *f = fopen(src, "rb");
    REQUIRE(f, "cannot read");
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    int patched = 0;
    for (size_t i = 0; i + 4 <= n; i++)
        if (!memcmp(buf + i, "FMP4", 4) || !memcmp(buf + i, "fmp4", 4)) {
            memcpy(buf + i, "QQQQ", 4);
            patched++;
        }
    REQUIRE(patched > 0, "no FourCC found");
    lv_video *v = NULL;
    lv_status st = lv_video_open_memory(buf, (int64_t)n, lv_video_default_open_params(), &v);
    CHECK(st == LV_ERR_UNSUPPORTED || st == LV_ERR_FORMAT, "unknown codec: %s (%s)", lv_status_str(st), lv_last_error());
    CHECK(v == NULL, "no handle on failure");
}

/* -------------------------------------------------------------------------------------------
 * exactness: parallel == sequential == ffmpeg
 * ----------------------------------------------------------------------------------------- */

TEST(video_h264_bframes_long_gop) {
    quiet_logs();
    const char *path = gen("h264_bf.mp4", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 4 -c:v libx264 -g 40 -bf 3 "
                                          "-pix_fmt yuv420p");
    if (!path) SKIP("ffmpeg cannot generate test files");
    lv_video *v = NULL;
    REQUIRE(lv_video_open(path, lv_video_default_open_params(), &v) == LV_OK, "open: %s", lv_last_error());
    lv_video_info in;
    lv_video_get_info(v, &in);
    CHECK(in.n_frames == 100 && in.n_keyframes >= 3 && in.n_nonref > 10 && in.max_reorder >= 1 && in.split_ok,
          "index: %lld frames, %lld keyframes, %lld non-reference, reorder %d", (long long)in.n_frames,
          (long long)in.n_keyframes, (long long)in.n_nonref, in.max_reorder);
    lv_video_free(v);
    check_exact(path, 1.0, "1", 64, 48, -1, NULL);
    check_exact(path, 3.7, "3.7", 64, 48, -1, NULL);
    if (!lv_test_quick()) check_exact(path, 25.0, "25", 40, 30, -1, NULL);
}

TEST(video_hevc_open_gop) {
    quiet_logs();
    const char *path = gen("hevc_open.mp4", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 4 -c:v libx265 "
                                            "-x265-params keyint=30:bframes=4:log-level=error -pix_fmt yuv420p");
    if (!path) SKIP("ffmpeg cannot generate test files");
    lv_video *v = NULL;
    REQUIRE(lv_video_open(path, lv_video_default_open_params(), &v) == LV_OK, "open: %s", lv_last_error());
    lv_video_info in;
    lv_video_get_info(v, &in);
    CHECK(in.n_leading > 0 && in.n_keyframes >= 3, "open GOPs: %lld leading frames, %lld keyframes",
          (long long)in.n_leading, (long long)in.n_keyframes);
    /* sample exactly the leading frames (they need the previous GOP decoded to its end) */
    double times[64];
    int64_t n_times = 0;
    for (int64_t i = 0; i < v->n_pkts && n_times < 64; i++)
        if (v->pkts[i].flags & LV_PKT_LEADING) times[n_times++] = (double)(v->pkts[i].pts + v->ts_offset) * av_q2d(v->tb);
    lv_video_free(v);
    /* times in increasing order */
    for (int64_t i = 1; i < n_times; i++)
        for (int64_t j = i; j > 0 && times[j] < times[j - 1]; j--) {
            double t = times[j];
            times[j] = times[j - 1];
            times[j - 1] = t;
        }
    REQUIRE(n_times > 0, "no leading frame");
    lv_video_read_params p = fps_params(1, 64, 48, 1);
    p.sample = LV_VIDEO_SAMPLE_TIMES;
    p.times = times;
    p.n_times = n_times;
    p.sequential = true;
    vres *ref = run_reader(path, &p, -1);
    CHECK(ref->n == n_times, "sequential: %lld of %lld", (long long)ref->n, (long long)n_times);
    for (int t = 1; t <= 3; t++) {
        p.sequential = false;
        p.n_threads = t;
        vres *r = run_reader(path, &p, -1);
        char what[64];
        snprintf(what, sizeof(what), "leading frames -j%d", t);
        same_frames(r, ref, 1, what);
        free(r);
    }
    free(ref);
    check_exact(path, 1.0, "1", 64, 48, -1, NULL);
    check_exact(path, 25.0, "25", 40, 30, -1, NULL);
}

TEST(video_h264_open_gop) {
    quiet_logs();
    const char *path = gen("h264_open.mkv", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 4 -c:v libx264 "
                                            "-x264-params open-gop=1:keyint=30:bframes=3 -pix_fmt yuv420p");
    if (!path) SKIP("ffmpeg cannot generate test files");
    check_exact(path, 2.0, "2", 64, 48, -1, NULL);
    if (!lv_test_quick()) check_exact(path, 25.0, "25", 40, 30, -1, NULL);
}

TEST(video_nonzero_start) {
    quiet_logs();
    const char *base = gen("start_base.mp4", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 3 -c:v libx264 -g 30 -bf 2 "
                                             "-pix_fmt yuv420p");
    if (!base) SKIP("ffmpeg cannot generate test files");
    char args[700];
    snprintf(args, sizeof(args), "-i '%s' -c copy -output_ts_offset 5.3", base);
    const char *shifted = gen("start_5_3.mp4", args);
    REQUIRE(shifted, "generation failed");
    lv_video *v = NULL;
    REQUIRE(lv_video_open(shifted, lv_video_default_open_params(), &v) == LV_OK, "open: %s", lv_last_error());
    lv_video_info in;
    lv_video_get_info(v, &in);
    CHECK(fabs(in.start_s - 5.3) < 0.01, "start %.3f s", in.start_s);
    lv_video_free(v);
    check_exact(shifted, 2.0, "2", 64, 48, -1, NULL);
    /* video starting 1.7 s after the audio: the CLI repeats the first frame until it shows */
    const char *late = gen("late_video.mkv", "-f lavfi -i testsrc2=size=128x96:rate=25 -f lavfi -i sine=f=440 -t 3 "
                                             "-filter_complex [0:v]setpts=PTS+1.7/TB[v] -map [v] -map 1:a -c:v libx264 "
                                             "-g 30 -bf 2 -c:a libopus -pix_fmt yuv420p");
    REQUIRE(late, "generation failed");
    int64_t n = check_exact(late, 2.0, "2", 64, 48, -1, NULL);
    CHECK(n >= 5, "the late video yields ticks from 0: %lld", (long long)n);
    lv_video_read_params p = fps_params(2, 64, 48, 2);
    vres *r = run_reader(late, &p, -1);
    /* (tick 3.4 is the first: frame 1 at 1.74 s also rounds to tick 3 and replaces frame 0) */
    CHECK(r->n >= 5 && r->src[0] <= 1 && r->src[1] == r->src[0] && r->src[2] == r->src[0] && r->src[3] == r->src[0],
          "ticks 0 .. 1.5 s repeat the first frame output (at 1.5 s): %lld %lld %lld %lld", (long long)r->src[0],
          (long long)r->src[1], (long long)r->src[2], (long long)r->src[3]);
    free(r);
}

TEST(video_vfr) {
    quiet_logs();
    const char *mp4 = gen("vfr.mp4", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 4 -vf "
                                     "select='not(mod(n\\,3))+lt(n\\,12)+between(n\\,50\\,60)' -vsync vfr -c:v libx264 "
                                     "-g 20 -bf 3 -pix_fmt yuv420p");
    if (!mp4) SKIP("ffmpeg cannot generate test files");
    lv_video *v = NULL;
    REQUIRE(lv_video_open(mp4, lv_video_default_open_params(), &v) == LV_OK, "open: %s", lv_last_error());
    lv_video_info in;
    lv_video_get_info(v, &in);
    CHECK(in.vfr, "variable frame rate detected");
    lv_video_free(v);
    check_exact(mp4, 5.0, "5", 64, 48, -1, NULL);
    if (!lv_test_quick()) {
        char args[700];
        snprintf(args, sizeof(args), "-i '%s' -c copy", mp4);
        const char *mkv = gen("vfr.mkv", args);
        REQUIRE(mkv, "generation failed");
        check_exact(mkv, 5.0, "5", 64, 48, -1, NULL);
    }
}

TEST(video_edit_list) {
    quiet_logs();
    const char *base = gen("edit_base.mp4", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 4 -c:v libx264 -g 50 -bf 3 "
                                            "-pix_fmt yuv420p");
    if (!base) SKIP("ffmpeg cannot generate test files");
    char args[700];
    /* a stream copy that starts between keyframes writes an edit list that hides the frames before 1.3 s */
    snprintf(args, sizeof(args), "-ss 1.3 -i '%s' -c copy", base);
    const char *cut = gen("edit_cut.mp4", args);
    REQUIRE(cut, "generation failed");
    lv_video *v = NULL;
    REQUIRE(lv_video_open(cut, lv_video_default_open_params(), &v) == LV_OK, "open: %s", lv_last_error());
    int64_t n_discard = 0;
    for (int64_t i = 0; i < v->n_pkts; i++) n_discard += (v->pkts[i].flags & LV_PKT_DISCARD) != 0;
    CHECK(n_discard > 0 && v->n_frames < v->n_pkts, "edit list: %lld packets cut", (long long)n_discard);
    lv_video_free(v);
    check_exact(cut, 2.0, "2", 64, 48, -1, NULL);
    if (!lv_test_quick()) check_exact(cut, 25.0, "25", 40, 30, -1, NULL);
}

TEST(video_containers) {
    quiet_logs();
    /* MPEG-TS (Annex B), WebM/VP9, and a codec off the planned path (MPEG-4 part 2 in AVI) */
    const char *ts = gen("h264.ts", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 3 -c:v libx264 -g 30 -bf 3 -pix_fmt yuv420p");
    if (!ts) SKIP("ffmpeg cannot generate test files");
    check_exact(ts, 2.0, "2", 64, 48, -1, NULL);
    const char *vp9 = gen("vp9.webm", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 3 -c:v libvpx-vp9 -g 30 -b:v 200k "
                                      "-deadline realtime -cpu-used 8");
    REQUIRE(vp9, "generation failed");
    check_exact(vp9, 2.0, "2", 64, 48, -1, NULL);
    const char *avi = gen("mpeg4_bf.avi", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 3 -c:v mpeg4 -bf 2 -g 30");
    REQUIRE(avi, "generation failed");
    lv_video *v = NULL;
    REQUIRE(lv_video_open(avi, lv_video_default_open_params(), &v) == LV_OK, "open: %s", lv_last_error());
    lv_video_info in;
    lv_video_get_info(v, &in);
    CHECK(!in.split_ok, "MPEG-4 part 2 takes the sequential path");
    lv_video_free(v);
    check_exact(avi, 2.0, "2", 64, 48, -1, NULL);
}

TEST(video_real_clips) {
    quiet_logs();
    const char *data = lv_test_shared_data();
    if (!data) SKIP("../shared/data is absent (set LV_SHARED_DATA)");
    char path[600];
    snprintf(path, sizeof(path), "%s/video/nasa_13013.mp4", data);
    if (!file_exists(path)) SKIP("%s is absent", path);
    if (!have_ffmpeg()) SKIP("no ffmpeg");
    /* two H.264 video streams (the CLI picks the larger), audio, subtitles */
    lv_video *v = NULL;
    REQUIRE(lv_video_open(path, lv_video_default_open_params(), &v) == LV_OK, "open: %s", lv_last_error());
    lv_video_info in;
    lv_video_get_info(v, &in);
    CHECK(in.n_streams >= 4 && in.width == 480 && in.height == 270, "chose %dx%d of %d streams", in.width, in.height,
          in.n_streams);
    int other = -1;
    for (int32_t i = 0; i < v->n_streams; i++)
        if (i != in.stream && strncmp(v->streams[i].line, "video", 5) == 0) other = i;
    lv_video_free(v);
    check_exact(path, 2.0, "2", 96, 54, -1, NULL);
    if (!lv_test_quick()) check_exact(path, 25.0, "25", 64, 36, -1, NULL);
    REQUIRE(other >= 0, "the second video stream");
    char map[32];
    snprintf(map, sizeof(map), "0:%d", other);
    check_exact(path, 3.0, "3", 64, 36, other, map);
    snprintf(path, sizeof(path), "%s/video/h264_10bits.mp4", data);
    if (file_exists(path)) check_exact(path, 10.0, "10", 50, 50, -1, NULL);
    snprintf(path, sizeof(path), "%s/video/av1_video.mkv", data);
    if (file_exists(path)) check_exact(path, 2.0, "2", 64, 36, -1, NULL);
}

TEST(video_count_times_all) {
    quiet_logs();
    const char *path = gen("h264_bf.mp4", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 4 -c:v libx264 -g 40 -bf 3 "
                                          "-pix_fmt yuv420p");
    if (!path) SKIP("ffmpeg cannot generate test files");
    /* COUNT: frame round(j (n-1) / (N-1)), half to even */
    lv_video_read_params p = fps_params(1, 32, 24, 2);
    p.sample = LV_VIDEO_SAMPLE_COUNT;
    p.n_frames = 7;
    vres *r = run_reader(path, &p, -1);
    int64_t want[] = {0, 16, 33, 50, 66, 82, 99}; /* 99 j / 6: 16.5 -> 16, 49.5 -> 50, 82.5 -> 82 */
    CHECK(r->n == 7, "7 frames: %lld", (long long)r->n);
    for (int i = 0; i < 7 && i < r->n; i++) CHECK(r->src[i] == want[i], "sample %d: frame %lld, want %lld", i, (long long)r->src[i], (long long)want[i]);
    p.sequential = true;
    vres *ref = run_reader(path, &p, -1);
    same_frames(r, ref, 1, "COUNT planned vs sequential");
    free(r);
    free(ref);
    /* TIMES */
    double times[] = {0.0, 0.01, 0.5, 1.62, 1.62, 3.99};
    p = fps_params(1, 32, 24, 3);
    p.sample = LV_VIDEO_SAMPLE_TIMES;
    p.times = times;
    p.n_times = 6;
    r = run_reader(path, &p, -1);
    CHECK(r->n == 6 && r->src[0] == 0 && r->src[1] == 0 && r->src[2] == 12 && r->src[3] == 40 && r->src[4] == 40 &&
              r->src[5] == 99,
          "times -> frames %lld %lld %lld %lld %lld %lld", (long long)r->src[0], (long long)r->src[1], (long long)r->src[2],
          (long long)r->src[3], (long long)r->src[4], (long long)r->src[5]);
    p.sequential = true;
    ref = run_reader(path, &p, -1);
    same_frames(r, ref, 1, "TIMES planned vs sequential");
    free(r);
    free(ref);
    /* ALL: every frame, as `ffmpeg -vf scale -vsync passthrough` */
    p = fps_params(1, 32, 24, 2);
    p.sample = LV_VIDEO_SAMPLE_ALL;
    r = run_reader(path, &p, -1);
    vres *ff = run_ffmpeg(path, "scale=32:24", "-vsync passthrough", 32 * 24 * 3);
    same_frames(r, ff, 0, "ALL vs ffmpeg");
    CHECK(r->n == 100, "100 frames: %lld", (long long)r->n);
    free(r);
    free(ff);
}

/* INDICES: explicit frame numbers (repeats allowed), planned == sequential == the same frames by COUNT */
TEST(video_indices) {
    quiet_logs();
    const char *path = gen("h264_bf.mp4", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 4 -c:v libx264 -g 40 -bf 3 "
                                          "-pix_fmt yuv420p");
    if (!path) SKIP("ffmpeg cannot generate test files");
    int64_t idx[] = {0, 16, 33, 33, 50, 66, 82, 99};
    lv_video_read_params p = fps_params(1, 32, 24, 2);
    p.sample = LV_VIDEO_SAMPLE_INDICES;
    p.indices = idx;
    p.n_indices = 8;
    vres *r = run_reader(path, &p, -1);
    CHECK(r->n == 8, "8 frames: %lld", (long long)r->n);
    for (int i = 0; i < 8 && i < r->n; i++) CHECK(r->src[i] == idx[i] && r->index[i] == i, "sample %d: frame %lld", i, (long long)r->src[i]);
    p.sequential = true;
    vres *ref = run_reader(path, &p, -1);
    same_frames(r, ref, 1, "INDICES planned vs sequential");
    /* the COUNT rule's 7 frames are these without the repeat */
    lv_video_read_params c = fps_params(1, 32, 24, 2);
    c.sample = LV_VIDEO_SAMPLE_COUNT;
    c.n_frames = 7;
    vres *cnt = run_reader(path, &c, -1);
    CHECK(cnt->n == 7 && r->n == 8 && cnt->hash[3] == r->hash[4] && cnt->hash[6] == r->hash[7] && r->hash[2] == r->hash[3],
          "INDICES and COUNT give the same pixels for the same frames");
    free(r);
    free(ref);
    free(cnt);
    /* errors: decreasing, out of range, none */
    int64_t bad1[] = {5, 4}, bad2[] = {0, 100};
    lv_video *v = NULL;
    REQUIRE(lv_video_open(path, lv_video_default_open_params(), &v) == LV_OK, "%s", lv_last_error());
    lv_video_reader *rd = NULL;
    p.sequential = false;
    p.indices = bad1;
    p.n_indices = 2;
    CHECK(lv_video_read_start(v, &p, &rd) == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "must not decrease"), "decreasing: %s", lv_last_error());
    p.indices = bad2;
    CHECK(lv_video_read_start(v, &p, &rd) == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "not in 0..99"), "out of range: %s", lv_last_error());
    p.n_indices = 0;
    CHECK(lv_video_read_start(v, &p, &rd) == LV_ERR_INVALID_ARG, "no indices");
    p.sequential = true;
    p.indices = bad2;
    p.n_indices = 2;
    CHECK(lv_video_read_start(v, &p, &rd) == LV_ERR_INVALID_ARG, "sequential, out of range: %s", lv_last_error());
    lv_video_free(v);
}

/* -------------------------------------------------------------------------------------------
 * skipping, memory bounds, streaming, formats
 * ----------------------------------------------------------------------------------------- */

TEST(video_skipping) {
    quiet_logs();
    /* short GOPs and a low rate: whole GOPs carry no sample and are sought over */
    const char *path = gen("short_gops.mp4", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 8 -c:v libx264 -g 10 "
                                             "-keyint_min 10 -sc_threshold 0 -bf 3 -pix_fmt yuv420p");
    if (!path) SKIP("ffmpeg cannot generate test files");
    lv_video_read_params p = fps_params(0.25, 32, 24, 1);
    vres *r = run_reader(path, &p, -1);
    CHECK(r->st == LV_OK && r->n == 2, "2 samples: %lld", (long long)r->n);
    CHECK(r->stats.n_gops_skipped >= 10 && r->stats.n_seeks >= 1 && r->stats.n_decoded < r->stats.n_packets / 4,
          "skipped %lld GOPs with %lld seeks, decoded %lld of %lld packets", (long long)r->stats.n_gops_skipped,
          (long long)r->stats.n_seeks, (long long)r->stats.n_decoded, (long long)r->stats.n_packets);
    p.sequential = true;
    vres *ref = run_reader(path, &p, -1);
    same_frames(r, ref, 1, "sparse samples vs sequential");
    CHECK(ref->stats.n_decoded == ref->stats.n_packets, "the sequential path decodes everything");
    free(r);
    free(ref);
    /* at 1 fps the non-reference frames no sample needs are skipped inside decoded GOPs */
    const char *long_gop = gen("h264_bf.mp4", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 4 -c:v libx264 -g 40 -bf 3 "
                                              "-pix_fmt yuv420p");
    REQUIRE(long_gop, "generation failed");
    p = fps_params(1, 32, 24, 2);
    r = run_reader(long_gop, &p, -1);
    CHECK(r->stats.n_skipped_nonref > 20, "non-reference frames skipped: %lld", (long long)r->stats.n_skipped_nonref);
    free(r);
}

static int slow_consumer_delay;

TEST(video_bounded_memory) {
    quiet_logs();
    const char *path = gen("short_gops.mp4", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 8 -c:v libx264 -g 10 "
                                             "-keyint_min 10 -sc_threshold 0 -bf 3 -pix_fmt yuv420p");
    if (!path) SKIP("ffmpeg cannot generate test files");
    lv_video *v = NULL;
    REQUIRE(lv_video_open(path, lv_video_default_open_params(), &v) == LV_OK, "open: %s", lv_last_error());
    /* every frame, 3 threads, room for 6 frames, a slow consumer */
    lv_video_read_params p = fps_params(1, 64, 48, 3);
    p.sample = LV_VIDEO_SAMPLE_ALL;
    p.max_buffered_bytes = 6 * 64 * 48 * 3;
    lv_video_reader *rd = NULL;
    REQUIRE(lv_video_read_start(v, &p, &rd) == LV_OK, "start: %s", lv_last_error());
    lv_video_frame f;
    int64_t n = 0, last = -1;
    int ordered = 1;
    lv_status st;
    while ((st = lv_video_reader_next(rd, &f)) == LV_OK && f.data) {
        if (f.index <= last) ordered = 0;
        last = f.index;
        n++;
        if (n % 20 == 0) usleep((useconds_t)(slow_consumer_delay + 2000));
    }
    lv_video_stats s;
    lv_video_reader_stats(rd, &s);
    CHECK(st == LV_OK && n == 200 && ordered, "all 200 frames in order: %lld (%s)", (long long)n, lv_status_str(st));
    /* bound: max_buffered (6) plus one interval, intervals being sized to 6 / (2 * 3) samples
     * rounded up to whole GOPs (10 frames) */
    CHECK(s.max_held <= 6 + 10 + 3, "held at most %lld frames", (long long)s.max_held);
    CHECK(s.n_intervals >= 10, "many small intervals: %lld", (long long)s.n_intervals);
    lv_video_reader_free(rd);
    /* stopping early: free with frames still being decoded */
    p.max_buffered_bytes = 0;
    REQUIRE(lv_video_read_start(v, &p, &rd) == LV_OK, "start: %s", lv_last_error());
    CHECK(lv_video_reader_next(rd, &f) == LV_OK && f.data && f.index == 0, "first frame");
    lv_video_reader_free(rd);
    lv_video_free(v);
}

static int abort_after;
static bool abort_cb(void *user) {
    (void)user;
    return __atomic_sub_fetch(&abort_after, 1, __ATOMIC_SEQ_CST) < 0;
}

TEST(video_abort) {
    quiet_logs();
    const char *path = gen("h264_bf.mp4", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 4 -c:v libx264 -g 40 -bf 3 "
                                          "-pix_fmt yuv420p");
    if (!path) SKIP("ffmpeg cannot generate test files");
    for (int seq = 0; seq < 2; seq++) {
        lv_video_read_params p = fps_params(25, 32, 24, 2);
        p.sequential = seq;
        p.abort_fn = abort_cb;
        abort_after = 30;
        vres *r = run_reader(path, &p, -1);
        CHECK(r->st == LV_ERR_ABORTED, "%s: aborted: %s", seq ? "sequential" : "planned", lv_status_str(r->st));
        CHECK(r->n < 100, "stopped early: %lld frames", (long long)r->n);
        free(r);
    }
}

TEST(video_f32_and_memory) {
    quiet_logs();
    const char *path = gen("h264_bf.mp4", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 4 -c:v libx264 -g 40 -bf 3 "
                                          "-pix_fmt yuv420p");
    if (!path) SKIP("ffmpeg cannot generate test files");
    /* from memory, the same frames as from the file */
    FILE *f = fopen(path, "rb");
    REQUIRE(f, "cannot read");
    static uint8_t buf[4 << 20];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    lv_video *vm = NULL, *vf = NULL;
    REQUIRE(lv_video_open_memory(buf, (int64_t)n, lv_video_default_open_params(), &vm) == LV_OK, "memory: %s", lv_last_error());
    REQUIRE(lv_video_open(path, lv_video_default_open_params(), &vf) == LV_OK, "file: %s", lv_last_error());
    lv_video_read_params p = fps_params(2, 32, 24, 2);
    void *a = NULL, *b = NULL;
    int64_t na = 0, nb = 0, fs = 0;
    CHECK(lv_video_read_all(vm, &p, &a, &na, &fs) == LV_OK, "read_all memory: %s", lv_last_error());
    CHECK(lv_video_read_all(vf, &p, &b, &nb, NULL) == LV_OK, "read_all file: %s", lv_last_error());
    CHECK(na == 8 && na == nb && fs == 32 * 24 * 3 && a && b && memcmp(a, b, (size_t)(na * fs)) == 0,
          "memory == file (%lld, %lld frames)", (long long)na, (long long)nb);
    /* F32: (x / 255 - mean) / std of the RGB24 bytes, planar */
    lv_video_read_params q = p;
    q.format = LV_VIDEO_F32_CHW;
    float mean[3] = {0.48f, 0.45f, 0.40f}, sd[3] = {0.26f, 0.26f, 0.27f};
    memcpy(q.mean, mean, sizeof(mean));
    memcpy(q.std, sd, sizeof(sd));
    void *c = NULL;
    int64_t nc = 0, fsc = 0;
    CHECK(lv_video_read_all(vf, &q, &c, &nc, &fsc) == LV_OK, "read_all f32: %s", lv_last_error());
    CHECK(nc == na && fsc == fs * 4, "f32 frames: %lld of %lld bytes", (long long)nc, (long long)fsc);
    double maxdiff = 0;
    for (int64_t k = 0; k < nc && k < na; k++) {
        const uint8_t *rgb = (const uint8_t *)b + k * fs;
        const float *fl = (const float *)c + k * (fsc / 4);
        for (int ch = 0; ch < 3; ch++)
            for (int64_t i = 0; i < 32 * 24; i++) {
                double want = ((double)rgb[3 * i + ch] / 255.0 - mean[ch]) / sd[ch];
                double d = fabs(want - fl[ch * 32 * 24 + i]);
                if (d > maxdiff) maxdiff = d;
            }
    }
    CHECK(maxdiff < 1e-5, "f32 normalisation max diff %g", maxdiff);
    lv_video_frames_free(a);
    lv_video_frames_free(b);
    lv_video_frames_free(c);
    /* PNG */
    char png[600];
    snprintf(png, sizeof(png), "%s/video_test.png", lv_test_tmpdir());
    uint8_t img[16 * 8 * 3];
    for (int i = 0; i < (int)sizeof(img); i++) img[i] = (uint8_t)(i * 7);
    CHECK(lv_video_write_png(png, img, 16, 8) == LV_OK, "png: %s", lv_last_error());
    CHECK(file_exists(png), "png written");
    lv_video_free(vm);
    lv_video_free(vf);
}

/* -------------------------------------------------------------------------------------------
 * damage: truncated files, corrupt bytes, missing packets, allocation failures
 * ----------------------------------------------------------------------------------------- */

/* open + read everything from memory; must not crash or hang; returns frames read (-1: open failed) */
static int64_t read_damaged(const uint8_t *data, size_t n, int threads, lv_status *st_out) {
    lv_video *v = NULL;
    lv_status st = lv_video_open_memory(data, (int64_t)n, lv_video_default_open_params(), &v);
    if (st != LV_OK) {
        *st_out = st;
        return -1;
    }
    lv_video_read_params p = fps_params(5, 32, 24, threads);
    void *frames = NULL;
    int64_t nf = 0;
    st = lv_video_read_all(v, &p, &frames, &nf, NULL);
    lv_video_frames_free(frames);
    lv_video_free(v);
    *st_out = st;
    return nf;
}

typedef struct log_count {
    int lost, other;
} log_count;
static void count_log(lv_log_level level, const char *msg, void *user) {
    log_count *c = user;
    if (level < LV_LOG_WARN) return;
    if (strstr(msg, "damaged") && strstr(msg, " s and ")) c->lost++;
    else c->other++;
}

TEST(video_damaged_input) {
    quiet_logs();
    log_count logs = {0, 0};
    lv_log_set(count_log, &logs, LV_LOG_WARN);
    const char *fast = gen("faststart.mp4", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 4 -c:v libx264 -g 25 -bf 3 "
                                            "-pix_fmt yuv420p -movflags +faststart");
    const char *ts = gen("h264.ts", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 3 -c:v libx264 -g 30 -bf 3 -pix_fmt yuv420p");
    if (!fast || !ts) SKIP("ffmpeg cannot generate test files");
    size_t n = 0;
    uint8_t *orig = (uint8_t *)lv_test_read_file(fast, &n);
    REQUIRE(orig && n > 10000, "read %s", fast);
    lv_status st;
    /* truncated at several points: an error or fewer frames, never a crash */
    int64_t full = read_damaged(orig, n, 2, &st);
    CHECK(full == 20 && st == LV_OK, "intact: %lld frames", (long long)full);
    size_t cuts[] = {n / 10, n / 3, n / 2, n * 9 / 10};
    for (int i = 0; i < 4; i++) {
        int64_t got = read_damaged(orig, cuts[i], 2, &st);
        CHECK(got < 0 ? st != LV_OK : got <= full, "truncated at %zu: %lld frames (%s)", cuts[i], (long long)got,
              lv_status_str(st));
    }
    int64_t half = read_damaged(orig, n / 2, 2, &st);
    CHECK(half > 0 && half < full, "half a file gives the frames of its first half: %lld", (long long)half);
    /* corrupt bytes inside the packets */
    lv_test_rng rng = {lv_test_seed() ^ 0x5eed};
    uint8_t *bad = malloc(n);
    for (int round = 0; round < (lv_test_quick() ? 3 : 8); round++) {
        memcpy(bad, orig, n);
        for (int k = 0; k < 20; k++) {
            size_t at = n / 8 + (size_t)(lv_test_rng_unit(&rng) * (double)(n - n / 8 - 1));
            bad[at] = (uint8_t)lv_test_rng_u64(&rng);
        }
        int64_t got = read_damaged(bad, n, 1 + round % 3, &st);
        CHECK(got <= full + 1, "corrupt bytes (round %d): %lld frames (%s)", round, (long long)got, lv_status_str(st));
    }
    free(bad);
    free(orig);
    /* MPEG-TS with a stretch of packets missing in the middle: the frames around it, a warning */
    orig = (uint8_t *)lv_test_read_file(ts, &n);
    REQUIRE(orig && n > 20000, "read %s", ts);
    size_t hole_a = (n / 2) / 188 * 188, hole_b = hole_a + 188 * 40;
    uint8_t *holed = malloc(n);
    memcpy(holed, orig, hole_a);
    memcpy(holed + hole_a, orig + hole_b, n - hole_b);
    int64_t intact = read_damaged(orig, n, 2, &st);
    int64_t got = read_damaged(holed, n - (hole_b - hole_a), 2, &st);
    CHECK(st == LV_OK && got > 0 && got <= intact, "a hole in a TS: %lld of %lld frames (%s)", (long long)got,
          (long long)intact, lv_status_str(st));
    free(holed);
    free(orig);
    lv_log_set(NULL, NULL, LV_LOG_WARN);
    CHECK(logs.lost > 0, "damage was reported with its times (%d warnings, %d others)", logs.lost, logs.other);
}

/* LeakSanitizer's check, where the build has it (make BUILD=asan): the leaked blocks so far */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define LEAKS_NOW() __lsan_do_recoverable_leak_check()
#else
#define LEAKS_NOW() 0
#endif

/* ../shared/data/fuzz/video-leak-mpegts.bin (found by fuzz_video): an HLS playlist read through
 * the MPEG-TS demuxer, on which a decode thread reopens its demuxer while holding a packet read
 * ahead. Reopening dropped that packet without unreferencing it, and the next av_read_frame wrote
 * over it: its buffers and side data leaked. Read it the three ways the fuzzer does (1 thread,
 * 2 threads, the sequential path); under ASan nothing may leak, and in every build it ends with a
 * status, not a crash. */
TEST(video_reopen_does_not_leak_the_packet_read_ahead) {
    const char *data = lv_test_shared_data();
    if (!data) SKIP("../shared/data not found");
    char path[4096];
    snprintf(path, sizeof(path), "%s/fuzz/video-leak-mpegts.bin", data);
    size_t n = 0;
    uint8_t *buf = (uint8_t *)lv_test_read_file(path, &n);
    if (!buf) SKIP("%s not found", path);
    quiet_logs();
    for (int way = 0; way < 3; way++) {
        lv_video_open_params op = lv_video_default_open_params();
        op.max_pixels = 1 << 20;
        op.max_packets = 4096;
        lv_video *v = NULL;
        lv_status st = lv_video_open_memory(buf, (int64_t)n, op, &v);
        CHECK(st == LV_OK, "way %d: the file opens (%s: %s)", way, lv_status_str(st), lv_last_error());
        if (st != LV_OK) continue;
        lv_video_read_params p = lv_video_default_read_params();
        p.sample = LV_VIDEO_SAMPLE_FPS;
        p.fps = 4.0;
        p.width = 16;
        p.height = 16;
        p.max_samples = 512;
        p.n_threads = way == 1 ? 2 : 1;
        p.sequential = way == 2;
        lv_video_reader *r = NULL;
        st = lv_video_read_start(v, &p, &r);
        CHECK(st == LV_OK, "way %d: reading starts (%s)", way, lv_status_str(st));
        int64_t frames = 0;
        if (st == LV_OK) {
            lv_video_frame f;
            while ((st = lv_video_reader_next(r, &f)) == LV_OK && f.data) frames++;
            lv_video_reader_free(r);
        }
        CHECK(st == LV_OK || st == LV_ERR_FORMAT || st == LV_ERR_IO, "way %d: %lld frames, then %s", way, (long long)frames,
              lv_status_str(st));
        lv_video_free(v);
    }
    free(buf);
    CHECK(LEAKS_NOW() == 0, "LeakSanitizer finds blocks leaked by reading the file (see its report above)");
}

TEST(video_alloc_failures) {
    quiet_logs();
    const char *path = gen("h264_bf.mp4", "-f lavfi -i testsrc2=size=128x96:rate=25 -t 4 -c:v libx264 -g 40 -bf 3 "
                                          "-pix_fmt yuv420p");
    if (!path) SKIP("ffmpeg cannot generate test files");
    /* make the k-th library allocation fail, for every k until open + a planned read succeed */
    int ok = 0, k;
    for (k = 0; k < 400 && !ok; k++) {
        lv_test_alloc_fail_after(k);
        lv_video *v = NULL;
        lv_status st = lv_video_open(path, lv_video_default_open_params(), &v);
        if (st == LV_OK) {
            lv_video_read_params p = fps_params(2, 32, 24, 2);
            void *frames = NULL;
            int64_t nf = 0;
            st = lv_video_read_all(v, &p, &frames, &nf, NULL);
            lv_video_frames_free(frames);
            if (st == LV_OK && nf == 8) ok = 1;
            else CHECK(st != LV_OK, "fail-after %d: a silent short read (%lld frames)", k, (long long)nf);
        } else {
            CHECK(v == NULL, "no handle after a failed open");
        }
        lv_test_alloc_fail_after(-1);
        lv_video_free(v);
    }
    CHECK(ok, "succeeded once allocations were allowed (k = %d)", k);
}
