/*
 * vnvideo.c: V-NIAH evaluation videos (vnvideo.h, docs/vniah.md): the looped haystack, needles
 * drawn on its frames, H.264 through lv_video_writer, the JSON sidecar.
 */
#define _POSIX_C_SOURCE 200809L /* strdup, strtok_r */
#include "vnvideo.h"
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STREAMS 64

/* the haystack: every video stream of every file, looped */
struct vn_hay {
    char *list; /* the paths, NUL-separated (path[] points into it) */
    lv_video *v[MAX_STREAMS];
    const char *path[MAX_STREAMS];
    int n, cur;
    lv_video_reader *rd;
    lv_video_read_params rp;
    /* one pass over the streams, kept when it fits in cache_bytes: then the loop is not decoded again */
    uint8_t *cache;
    int64_t n_cached, cap_frames, pos;
    size_t frame_bytes, cache_bytes;
    bool caching, can_cache, from_cache;
};

bool vn_parse_fps(const char *s, int32_t *num, int32_t *den) {
    char *end;
    errno = 0;
    const long long a = strtoll(s, &end, 10);
    if (!errno && end != s && *end == '/') {
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

bool vn_parse_size(const char *s, int32_t *w, int32_t *h) {
    char *end;
    const long a = strtol(s, &end, 10);
    if (end == s || (*end != 'x' && *end != 'X')) return false;
    const char *q = end + 1;
    const long b = strtol(q, &end, 10);
    if (end == q || *end || a < 2 || b < 2 || a > 16384 || b > 16384 || (a & 1) || (b & 1)) return false;
    *w = (int32_t)a, *h = (int32_t)b;
    return true;
}

int vn_vneedle_place(vn_vneedle *nd, int i, double fps, int64_t n_frames, int32_t W, int32_t H, uint64_t seed, double box_min,
                     double box_max) {
    nd->f0 = (int64_t)ceil(nd->t * fps - 1e-9);
    nd->f1 = (int64_t)ceil((nd->t + nd->dur) * fps - 1e-9);
    if (nd->f1 <= nd->f0) nd->f1 = nd->f0 + 1;
    if (nd->f0 >= n_frames) return -1;
    if (nd->f1 > n_frames) nd->f1 = n_frames;
    vn_rng rng = {seed * 0x9e3779b97f4a7c15ULL + (uint64_t)i + 1};
    vn_needle_style(&rng, nd->text, W, H, box_min, box_max, &nd->st);
    return 0;
}

void vn_hay_free(vn_hay *h) {
    if (!h) return;
    free(h->cache);
    lv_video_reader_free(h->rd);
    for (int i = 0; i < h->n; i++) lv_video_free(h->v[i]);
    free(h->list);
    free(h);
}

int vn_hay_open(const char *list, int32_t w, int32_t hh, double fps, int64_t threads, int64_t cache_mb, vn_hay **out) {
    *out = NULL;
    vn_hay *h = calloc(1, sizeof(*h));
    if (!h || !(h->list = strdup(list))) {
        free(h);
        return cli_error("out of memory"), -1;
    }
    h->frame_bytes = (size_t)w * hh * 3;
    h->cache_bytes = (size_t)cache_mb << 20;
    h->caching = cache_mb > 0;
    for (char *save = NULL, *p = strtok_r(h->list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        lv_video *v = NULL;
        lv_status st = lv_video_open(p, lv_video_default_open_params(), &v);
        if (st != LV_OK) {
            cli_fail("cannot read the haystack", st);
            goto fail;
        }
        lv_video_info info;
        lv_video_get_info(v, &info);
        lv_video_free(v);
        for (int32_t s = 0; s < info.n_streams; s++) {
            lv_video_open_params op = lv_video_default_open_params();
            op.stream = s;
            st = lv_video_open(p, op, &v);
            if (st == LV_ERR_INVALID_ARG) continue; /* not a video stream */
            if (st != LV_OK) {
                cli_fail("cannot read the haystack", st);
                goto fail;
            }
            if (h->n == MAX_STREAMS) {
                lv_video_free(v);
                cli_error("--haystack: more than %d video streams", MAX_STREAMS);
                goto fail;
            }
            h->path[h->n] = p;
            h->v[h->n++] = v;
        }
    }
    if (h->n == 0) {
        cli_error("--haystack: no video");
        goto fail;
    }
    double pass = 0; /* frames of one pass over the streams at this rate, about */
    for (int i = 0; i < h->n; i++) {
        lv_video_info info;
        lv_video_get_info(h->v[i], &info);
        pass += ceil(info.duration_s * fps) + 1;
    }
    if (pass * (double)h->frame_bytes > (double)h->cache_bytes) h->caching = false;
    h->can_cache = h->caching;
    h->rp = lv_video_default_read_params();
    h->rp.sample = LV_VIDEO_SAMPLE_FPS;
    h->rp.fps = fps;
    h->rp.width = w;
    h->rp.height = hh;
    h->rp.n_threads = (int32_t)threads;
    h->cur = -1;
    *out = h;
    return 0;
fail:
    vn_hay_free(h);
    return -1;
}

static void hay_uncache(vn_hay *h) {
    free(h->cache);
    h->cache = NULL;
    h->n_cached = h->cap_frames = 0;
    h->caching = false;
}

/* keep a copy of a decoded frame while the first pass fits in the cache */
static void hay_keep(vn_hay *h, const uint8_t *px) {
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

int vn_hay_next(vn_hay *h, const uint8_t **px) {
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

int vn_hay_rewind(vn_hay *h) {
    if (h->from_cache) { /* a whole pass in memory: read it from its start */
        h->pos = 0;
        return 0;
    }
    lv_video_reader_free(h->rd);
    h->rd = NULL;
    h->cur = -1;
    hay_uncache(h); /* a part of a pass: cached again from the start */
    h->caching = h->can_cache;
    return 0;
}

int vn_write_video(vn_hay *h, const char *path, const lv_video_writer_params *wp, int64_t n_frames, const vn_vneedle *nd, int n_needles,
                   const char *progress) {
    const int32_t W = wp->width, H = wp->height;
    uint8_t *frame = malloc((size_t)W * H * 3);
    if (!frame) return cli_error("out of memory"), -1;
    lv_video_writer *w = NULL;
    lv_status st = lv_video_writer_open(path, wp, &w);
    if (st != LV_OK) {
        free(frame);
        return cli_fail("cannot write the video", st), -1;
    }
    int rc = 0;
    cli_progress prog;
    if (progress) cli_progress_start(&prog, progress);
    const double t0 = cli_now_s();
    char detail[96];
    for (int64_t i = 0; i < n_frames && rc == 0; i++) {
        const uint8_t *px;
        if (vn_hay_next(h, &px)) {
            rc = -1;
            break;
        }
        memcpy(frame, px, (size_t)W * H * 3);
        for (int k = 0; k < n_needles; k++)
            if (i >= nd[k].f0 && i < nd[k].f1)
                vn_draw_text(frame, W, H, W * 3, nd[k].text, nd[k].st.x, nd[k].st.y, nd[k].st.scale_num, nd[k].st.scale_den, nd[k].st.fg,
                             nd[k].st.bg);
        st = lv_video_writer_push(w, frame);
        if (st != LV_OK) rc = (cli_fail("cannot write the video", st), -1);
        if (progress) {
            snprintf(detail, sizeof(detail), "%lld/%lld frames, %.1f fps", (long long)(i + 1), (long long)n_frames,
                     (double)(i + 1) / (cli_now_s() - t0 + 1e-9));
            cli_progress_update(&prog, (double)(i + 1) / (double)n_frames, detail);
        }
    }
    if (rc == 0) {
        st = lv_video_writer_close(w);
        w = NULL;
        if (st != LV_OK) rc = (cli_fail("cannot write the video", st), -1);
    }
    lv_video_writer_free(w);
    free(frame);
    if (progress) {
        const double secs = cli_now_s() - t0;
        if (rc == 0) snprintf(detail, sizeof(detail), "%lld frames in %.1f s (%.1f fps)", (long long)n_frames, secs, (double)n_frames / secs);
        cli_progress_done(&prog, rc == 0 ? detail : "failed");
    }
    return rc;
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

void vn_write_json(FILE *jf, const char *video, const vn_hay *h, const lv_video_writer_params *wp, int64_t n_frames, uint64_t seed,
                   const vn_vneedle *nd, int n_needles) {
    const double fps = (double)wp->fps_num / wp->fps_den;
    fprintf(jf, "{\"video\": ");
    json_str(jf, video);
    fprintf(jf, ", \"width\": %d, \"height\": %d, \"fps\": %.6f, \"fps_num\": %d, \"fps_den\": %d, \"n_frames\": %lld, \"length_s\": %.6f, "
                "\"seed\": %llu, \"haystack\": [",
            wp->width, wp->height, fps, wp->fps_num, wp->fps_den, (long long)n_frames, (double)n_frames / fps, (unsigned long long)seed);
    for (int i = 0; i < h->n; i++) {
        fprintf(jf, "%s{\"file\": ", i ? ", " : "");
        json_str(jf, h->path[i]);
        lv_video_info info;
        lv_video_get_info(h->v[i], &info);
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
                nd[k].t, nd[k].dur, (long long)nd[k].f0, (long long)nd[k].f1, (double)nd[k].f0 / fps, (double)nd[k].f1 / fps, ts, nd[k].st.x,
                nd[k].st.y, nd[k].st.box_w, nd[k].st.box_h);
    }
    fprintf(jf, "%s]}\n", n_needles ? "\n" : "");
}
