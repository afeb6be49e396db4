/*
 * cmd_video_vniah.c: `longview video-vniah`, the evaluation videos of the V-NIAH task
 * (docs/vniah.md): haystack footage looped to a length, resized to the output size by the
 * library's reader, needles drawn at full resolution with tools/common/vniah.c's font and
 * placement rule, encoded to H.264 by the library's writer (lv_video_writer), and the truth
 * (each needle's text, times, frames and box) in a JSON sidecar and on stdout.
 * The files appear whole or not at all (cli_out: written beside the target, renamed when complete;
 * a signal removes the temporary).
 */
#define _POSIX_C_SOURCE 200809L /* strdup, strtok_r */
#include "common/cli.h"
#include "common/vniah.h"
#include "commands.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NEEDLES CLI_LIST_MAX
#define MAX_STREAMS 64

typedef struct ev_needle {
    char text[24];
    double t, dur;
    int64_t f0, f1;
    vn_style st;
} ev_needle;

/* the haystack: every video stream of every file, looped */
typedef struct hay {
    lv_video *v[MAX_STREAMS];
    const char *path[MAX_STREAMS];
    int n, cur;
    lv_video_reader *rd;
    lv_video_read_params rp;
    /* one pass over the streams, kept when it fits in cache_bytes: then the loop is not decoded again */
    uint8_t *cache;
    int64_t n_cached, cap_frames, pos;
    size_t frame_bytes, cache_bytes;
    bool caching, from_cache;
} hay;

static int hay_open(hay *h, char *list, int32_t w, int32_t hh, double fps, int64_t threads, int64_t cache_mb) {
    memset(h, 0, sizeof(*h));
    h->frame_bytes = (size_t)w * hh * 3;
    h->cache_bytes = (size_t)cache_mb << 20;
    h->caching = cache_mb > 0;
    for (char *save = NULL, *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        lv_video *v = NULL;
        lv_status st = lv_video_open(p, lv_video_default_open_params(), &v);
        if (st != LV_OK) return cli_fail("cannot read the haystack", st), -1;
        lv_video_info info;
        lv_video_get_info(v, &info);
        lv_video_free(v);
        for (int32_t s = 0; s < info.n_streams; s++) {
            lv_video_open_params op = lv_video_default_open_params();
            op.stream = s;
            st = lv_video_open(p, op, &v);
            if (st == LV_ERR_INVALID_ARG) continue; /* not a video stream */
            if (st != LV_OK) return cli_fail("cannot read the haystack", st), -1;
            if (h->n == MAX_STREAMS) {
                lv_video_free(v);
                return cli_error("--haystack: more than %d video streams", MAX_STREAMS), -1;
            }
            h->path[h->n] = p;
            h->v[h->n++] = v;
        }
    }
    if (h->n == 0) return cli_error("--haystack: no video"), -1;
    double pass = 0; /* frames of one pass over the streams at this rate, about */
    for (int i = 0; i < h->n; i++) {
        lv_video_info info;
        lv_video_get_info(h->v[i], &info);
        pass += ceil(info.duration_s * fps) + 1;
    }
    if (pass * (double)h->frame_bytes > (double)h->cache_bytes) h->caching = false;
    h->rp = lv_video_default_read_params();
    h->rp.sample = LV_VIDEO_SAMPLE_FPS;
    h->rp.fps = fps;
    h->rp.width = w;
    h->rp.height = hh;
    h->rp.n_threads = (int32_t)threads;
    h->cur = -1;
    return 0;
}

static void hay_close(hay *h) {
    free(h->cache);
    lv_video_reader_free(h->rd);
    for (int i = 0; i < h->n; i++) lv_video_free(h->v[i]);
    memset(h, 0, sizeof(*h));
}

static void hay_uncache(hay *h) {
    free(h->cache);
    h->cache = NULL;
    h->n_cached = h->cap_frames = 0;
    h->caching = false;
}

/* keep a copy of a decoded frame while the first pass fits in the cache */
static void hay_keep(hay *h, const uint8_t *px) {
    if (!h->caching) return;
    if ((size_t)(h->n_cached + 1) * h->frame_bytes > h->cache_bytes) return hay_uncache(h);
    if (h->n_cached == h->cap_frames) {
        const int64_t cap = h->cap_frames ? 2 * h->cap_frames : 16;
        uint8_t *nc = realloc(h->cache, (size_t)cap * h->frame_bytes);
        if (!nc) return hay_uncache(h); /* decode every loop instead */
        h->cache = nc;
        h->cap_frames = cap;
    }
    memcpy(h->cache + (size_t)h->n_cached++ * h->frame_bytes, px, h->frame_bytes);
}

/* the next haystack frame (valid until the next call): streams one after the other, looped */
static int hay_next(hay *h, const uint8_t **px) {
    if (h->from_cache) {
        *px = h->cache + (size_t)(h->pos++ % h->n_cached) * h->frame_bytes;
        return 0;
    }
    for (int tries = 0; tries <= h->n; tries++) {
        if (h->rd) {
            lv_video_frame f;
            lv_status st = lv_video_reader_next(h->rd, &f);
            if (st != LV_OK) return cli_fail("cannot decode the haystack", st), -1;
            if (f.data) {
                hay_keep(h, f.data);
                *px = f.data;
                return 0;
            }
            lv_video_reader_free(h->rd);
            h->rd = NULL;
        }
        if (h->cur == h->n - 1 && h->caching && h->n_cached > 0) { /* a whole pass is in memory */
            h->from_cache = true;
            h->pos = 1;
            *px = h->cache;
            return 0;
        }
        h->cur = (h->cur + 1) % h->n;
        lv_status st = lv_video_read_start(h->v[h->cur], &h->rp, &h->rd);
        if (st != LV_OK) return cli_fail("cannot decode the haystack", st), -1;
    }
    return cli_error("the haystack gives no frames at this rate"), -1;
}

/* "25", "2.5" or "30000/1001" as a fraction */
static bool parse_fps(const char *s, int32_t *num, int32_t *den) {
    char *end;
    errno = 0;
    const long long a = strtoll(s, &end, 10);
    if (!errno && end != s && *end == '/' ) {
        const char *q = end + 1;
        const long long b = strtoll(q, &end, 10);
        if (errno || end == q || *end || a < 1 || b < 1 || a > 1000000 || b > 1000000 || (double)a / (double)b > 1000) return false;
        *num = (int32_t)a, *den = (int32_t)b;
        return true;
    }
    const double x = strtod(s, &end);
    if (end == s || *end || !(x > 0) || x > 1000) return false;
    if (fabs(x - round(x)) < 1e-9) *num = (int32_t)round(x), *den = 1;
    else *num = (int32_t)llround(x * 1000), *den = 1000;
    return *num > 0;
}

static bool parse_wh(const char *s, int32_t *w, int32_t *h) {
    char *end;
    const long a = strtol(s, &end, 10);
    if (end == s || (*end != 'x' && *end != 'X')) return false;
    const char *q = end + 1;
    const long b = strtol(q, &end, 10);
    if (end == q || *end || a < 2 || b < 2 || a > 16384 || b > 16384 || (a & 1) || (b & 1)) return false;
    *w = (int32_t)a, *h = (int32_t)b;
    return true;
}

/* "TEXT@SECONDS[+DURATION]" (the last '@' splits) */
static bool parse_needle(const char *s, ev_needle *n, double default_dur) {
    const char *at = strrchr(s, '@');
    if (!at || at == s || (size_t)(at - s) > 23) return false;
    memcpy(n->text, s, (size_t)(at - s));
    n->text[at - s] = '\0';
    char *end;
    n->t = strtod(at + 1, &end);
    if (end == at + 1 || !isfinite(n->t) || n->t < 0) return false;
    n->dur = default_dur;
    if (*end == '+') {
        const char *q = end + 1;
        n->dur = strtod(q, &end);
        if (end == q || !isfinite(n->dur) || !(n->dur > 0)) return false;
    }
    return *end == '\0';
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", (unsigned char)*s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

int cmd_video_vniah(int argc, char **argv) {
    const char *out_path = NULL, *haystack = NULL, *fps_s = "25", *size_s = "1280x720", *json_path = NULL, *preset = "veryfast";
    double length = 0, needle_dur = 1.0, box_min = 0.45, box_max = 0.9;
    int64_t seed = 0, gop = 0, crf = 23, threads = 0, verbose = 0, cache_mb = 512;
    bool quiet = false;
    cli_list needles = {0};
    cli_opt opts[] = {
        {"-o", "--output", CLI_STR, &out_path, "OUT.mp4", "the video to write (H.264 in MP4; appears whole or not at all)",
         .required = true},
        {NULL, "--haystack", CLI_STR, &haystack, "FILE[,FILE]", "haystack footage: every video stream of each file, looped",
         .required = true},
        {NULL, "--length", CLI_FLOAT, &length, "SECONDS", "length of the video", .flo = 0.001, .fhi = 1e6, .required = true},
        {NULL, "--needle", CLI_LIST, &needles, "TEXT@SECONDS[+DURATION]",
         "draw TEXT (0-9 A-Z space : . , - ? ! ' / # + = ( ), up to 23) on the frames from SECONDS for DURATION (default "
         "--needle-duration); repeatable"},
        {NULL, "--needle-duration", CLI_FLOAT, &needle_dur, "SECONDS", "default needle duration (default 1; at least one frame)",
         .flo = 1e-6, .fhi = 1e6},
        {NULL, "--fps", CLI_STR, &fps_s, "F", "frame rate, F or N/D (default 25)"},
        {NULL, "--size", CLI_STR, &size_s, "WxH", "frame size, even sides (default 1280x720)"},
        {NULL, "--seed", CLI_INT, &seed, "N", "placement and colours of the needles (default 0)", .lo = 0, .hi = INT64_MAX},
        {NULL, "--box", CLI_FLOAT, &box_min, "F", "smallest needle box, a fraction of the width (default 0.45)", .flo = 0.01, .fhi = 1},
        {NULL, "--box-max", CLI_FLOAT, &box_max, "F", "largest needle box, a fraction of the width (default 0.9)", .flo = 0.01, .fhi = 1},
        {NULL, "--gop", CLI_INT, &gop, "N", "keyframe every N frames (default: 10 seconds' worth)", .lo = 0, .hi = 100000},
        {NULL, "--crf", CLI_INT, &crf, "N", "x264 quality, 0 (lossless) to 51 (default 23)", .lo = 0, .hi = 51},
        {NULL, "--preset", CLI_STR, &preset, "P", "x264 preset: ultrafast ... veryslow (default veryfast)"},
        {NULL, "--json", CLI_STR, &json_path, "FILE", "the truth as JSON (default: OUT with .json for its extension)"},
        {NULL, "--cache", CLI_INT, &cache_mb, "MB", "keep one pass of the resized haystack in memory when it fits (default 512; 0: "
                                                  "decode every loop)", .lo = 0, .hi = 1 << 20},
        {"-j", "--threads", CLI_INT, &threads, "N", "decode and encode threads (default: one per core)", .lo = 0, .hi = 256},
        {"-q", "--quiet", CLI_FLAG, &quiet, NULL, "no progress line"},
        {"-v", "--verbose", CLI_INT, &verbose, "N", "log level: 0 warnings, 1 info, 2 debug", .lo = 0, .hi = 2},
    };
    const int n_opts = (int)(sizeof(opts) / sizeof(opts[0]));
    int r = cli_parse(argc, argv, opts, n_opts,
                      "longview video-vniah -o OUT.mp4 --haystack FILE[,FILE] --length SECONDS [--fps F] [--size WxH] "
                      "--needle TEXT@SECONDS[+DURATION] ... [--seed N]",
                      "Write a V-NIAH evaluation video (docs/vniah.md): the haystack footage looped to the length and\n"
                      "resized to the frame size, each needle's text drawn on its frames (a light box with dark glyphs,\n"
                      "placed and sized at random by the seed: 45-90% of the width), encoded to H.264 with libx264.\n"
                      "Prints one line per needle and writes them as JSON (text, seconds, frames [f0, f1), MM:SS, box).",
                      NULL, 0, NULL);
    if (r) return r > 0 ? 0 : 2;
    cli_set_verbosity(verbose);
    lv_video_route_libav_log();
    int32_t fnum, fden, W, H;
    if (!parse_fps(fps_s, &fnum, &fden)) return cli_error("--fps: '%s' is not a rate in (0, 1000] (F or N/D)", fps_s), 2;
    if (!parse_wh(size_s, &W, &H)) return cli_error("--size: '%s' is not WxH with even sides in 2..16384", size_s), 2;
    if (box_max < box_min) return cli_error("--box-max %g is below --box %g", box_max, box_min), 2;
    if (strcmp(out_path, "-") == 0) return cli_error("-o: an MP4 needs a file it can seek in, not standard output"), 2;
    const double fps = (double)fnum / fden;
    const int64_t n_frames = llround(length * fps) > 0 ? llround(length * fps) : 1;
    if (n_frames > 100000000) return cli_error("--length: %lld frames is too many", (long long)n_frames), 2;
    ev_needle nd[MAX_NEEDLES];
    const int n_needles = needles.n;
    for (int i = 0; i < n_needles; i++) {
        if (!parse_needle(needles.items[i], &nd[i], needle_dur))
            return cli_error("--needle '%s': expected TEXT@SECONDS[+DURATION] (TEXT up to 23 characters)", needles.items[i]), 2;
        if (!vn_text_ok(nd[i].text))
            return cli_error("--needle '%s': the font has 0-9 A-Z (a-z drawn as capitals), space and : . , - ? ! ' / # + = ( )",
                             nd[i].text),
                   2;
        nd[i].f0 = (int64_t)ceil(nd[i].t * fps - 1e-9);
        nd[i].f1 = (int64_t)ceil((nd[i].t + nd[i].dur) * fps - 1e-9);
        if (nd[i].f1 <= nd[i].f0) nd[i].f1 = nd[i].f0 + 1;
        if (nd[i].f0 >= n_frames)
            return cli_error("--needle '%s': %g s is past the end of a %g s video", needles.items[i], nd[i].t, (double)n_frames / fps), 2;
        if (nd[i].f1 > n_frames) nd[i].f1 = n_frames;
        vn_rng rng = {(uint64_t)seed * 0x9e3779b97f4a7c15ULL + (uint64_t)i + 1};
        vn_needle_style(&rng, nd[i].text, W, H, box_min, box_max, &nd[i].st);
    }
    char *json_def = NULL;
    if (!json_path) {
        const size_t n = strlen(out_path);
        json_def = malloc(n + 6);
        if (!json_def) return cli_error("out of memory"), 1;
        memcpy(json_def, out_path, n + 1);
        char *dot = strrchr(json_def, '.'), *slash = strrchr(json_def, '/');
        if (dot && (!slash || dot > slash) && dot != json_def) *dot = '\0';
        strcat(json_def, ".json");
        json_path = json_def;
    }
    char *hay_list = strdup(haystack);
    uint8_t *frame = malloc((size_t)W * H * 3);
    if (!hay_list || !frame) {
        free(hay_list), free(frame), free(json_def);
        return cli_error("out of memory"), 1;
    }
    hay h;
    int rc = 0;
    lv_video_writer *w = NULL;
    cli_out vo = {0}, jo = {0};
    if (hay_open(&h, hay_list, W, H, fps, threads, cache_mb)) {
        rc = 1;
        goto done;
    }
    /* the temporary beside OUT, which the writer then fills (MP4 needs a seekable file: no stdout) */
    if (!cli_out_open(&vo, out_path, true)) {
        rc = 1;
        goto done;
    }
    const char *tmp = vo.tmp;
    lv_video_writer_params wp = lv_video_default_writer_params();
    wp.width = W, wp.height = H, wp.fps_num = fnum, wp.fps_den = fden;
    wp.gop = (int32_t)gop, wp.crf = (int32_t)crf, wp.preset = preset, wp.n_threads = (int32_t)threads;
    lv_status st = lv_video_writer_open(tmp, &wp, &w);
    if (st != LV_OK) {
        rc = cli_fail("cannot write the video", st);
        goto done;
    }
    cli_progress prog;
    if (!quiet) cli_progress_start(&prog, "video-vniah");
    const double t0 = cli_now_s();
    char detail[96];
    for (int64_t i = 0; i < n_frames && rc == 0; i++) {
        const uint8_t *px;
        if (hay_next(&h, &px)) {
            rc = 1;
            break;
        }
        memcpy(frame, px, (size_t)W * H * 3);
        for (int k = 0; k < n_needles; k++)
            if (i >= nd[k].f0 && i < nd[k].f1)
                vn_draw_text(frame, W, H, W * 3, nd[k].text, nd[k].st.x, nd[k].st.y, nd[k].st.scale_num, nd[k].st.scale_den,
                             nd[k].st.fg, nd[k].st.bg);
        st = lv_video_writer_push(w, frame);
        if (st != LV_OK) rc = cli_fail("cannot write the video", st);
        if (!quiet) {
            snprintf(detail, sizeof(detail), "%lld/%lld frames, %.1f fps", (long long)(i + 1), (long long)n_frames,
                     (double)(i + 1) / (cli_now_s() - t0 + 1e-9));
            cli_progress_update(&prog, (double)(i + 1) / (double)n_frames, detail);
        }
    }
    if (rc == 0) {
        st = lv_video_writer_close(w);
        w = NULL;
        if (st != LV_OK) rc = cli_fail("cannot write the video", st);
    }
    if (rc == 0 && cli_out_commit(&vo) != 0) rc = 1;
    if (rc != 0) goto done;
    const double secs = cli_now_s() - t0;
    if (!quiet) {
        snprintf(detail, sizeof(detail), "%lld frames in %.1f s (%.1f fps)", (long long)n_frames, secs, (double)n_frames / secs);
        cli_progress_done(&prog, detail);
    }
    FILE *jf = cli_out_open(&jo, json_path, false);
    if (!jf) {
        rc = 1;
        goto done;
    }
    fprintf(jf, "{\"video\": ");
    json_str(jf, out_path);
    fprintf(jf, ", \"width\": %d, \"height\": %d, \"fps\": %.6f, \"fps_num\": %d, \"fps_den\": %d, \"n_frames\": %lld, \"length_s\": %.6f, "
                "\"seed\": %lld, \"haystack\": [",
            W, H, fps, fnum, fden, (long long)n_frames, (double)n_frames / fps, (long long)seed);
    for (int i = 0; i < h.n; i++) {
        fprintf(jf, "%s{\"file\": ", i ? ", " : "");
        json_str(jf, h.path[i]);
        lv_video_info info;
        lv_video_get_info(h.v[i], &info);
        fprintf(jf, ", \"stream\": %d}", info.stream);
    }
    fprintf(jf, "], \"needles\": [");
    for (int k = 0; k < n_needles; k++) {
        char ts[32];
        lv_video_ask_timestamp((double)nd[k].f0 / fps, ts, sizeof(ts));
        fprintf(jf, "%s\n  {\"text\": ", k ? "," : "");
        json_str(jf, nd[k].text);
        fprintf(jf, ", \"t\": %.6f, \"duration\": %.6f, \"f0\": %lld, \"f1\": %lld, \"t0\": %.6f, \"t1\": %.6f, \"mmss\": \"%s\", "
                    "\"box\": [%d, %d, %d, %d]}",
                nd[k].t, nd[k].dur, (long long)nd[k].f0, (long long)nd[k].f1, (double)nd[k].f0 / fps, (double)nd[k].f1 / fps, ts,
                nd[k].st.x, nd[k].st.y, nd[k].st.box_w, nd[k].st.box_h);
        printf("needle %d: \"%s\" frames [%lld, %lld) = %.3f..%.3f s (%s), box %dx%d at %d,%d\n", k, nd[k].text, (long long)nd[k].f0,
               (long long)nd[k].f1, (double)nd[k].f0 / fps, (double)nd[k].f1 / fps, ts, nd[k].st.box_w, nd[k].st.box_h, nd[k].st.x,
               nd[k].st.y);
    }
    fprintf(jf, "%s]}\n", n_needles ? "\n" : "");
    if (cli_out_commit(&jo) != 0) {
        rc = 1;
        goto done;
    }
    printf("wrote %s (%dx%d, %lld frames at %g fps, %.1f s) and %s\n", out_path, W, H, (long long)n_frames, fps, (double)n_frames / fps,
           json_path);
done:
    lv_video_writer_free(w); /* before the temporary goes */
    cli_out_abort(&vo);
    cli_out_abort(&jo);
    hay_close(&h);
    free(hay_list), free(frame), free(json_def);
    return rc;
}
