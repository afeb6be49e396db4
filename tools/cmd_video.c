/*
 * cmd_video.c: `longview video-info` (streams, duration, keyframes, GOP structure) and
 * `longview video-frames` (sampled frames as raw RGB24, normalised floats, PNGs or hashes).
 * The work is the library's video module (docs/video.md); this file parses options and writes.
 */
#include "common/cli.h"
#include "commands.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cmd_video_info(int argc, char **argv) {
    const char *input = NULL;
    int64_t stream = -1, keyframes = 20, verbose = 0;
    cli_opt opts[] = {
        {"-i", "--input", CLI_STR, &input, "VIDEO", "video file", .required = true},
        {NULL, "--stream", CLI_INT, &stream, "N", "container stream index (default: the best video stream)", .lo = -1,
         .hi = 1 << 20},
        {NULL, "--keyframes", CLI_INT, &keyframes, "N", "list at most N keyframe times (-1: all; default 20)", .lo = -1,
         .hi = INT64_MAX},
        {"-v", "--verbose", CLI_INT, &verbose, "N", "log level: 0 warnings, 1 info, 2 debug", .lo = 0, .hi = 2},
    };
    int r = cli_parse(argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0])), "longview video-info -i VIDEO [--stream N]",
                      "Describe a video: container and streams, duration, frame count, keyframes and GOP structure,\n"
                      "which frames nothing references (the decoder skips them when no sample needs them).",
                      NULL, 0, NULL);
    if (r) return r > 0 ? 0 : 2;
    cli_set_verbosity(verbose);
    lv_video_route_libav_log();
    lv_video_open_params op = lv_video_default_open_params();
    op.stream = (int32_t)stream;
    lv_video *v = NULL;
    lv_status st = lv_video_open(input, op, &v);
    if (st != LV_OK) return cli_fail("cannot read this video", st);
    int64_t need = lv_video_describe(v, keyframes, NULL, 0);
    char *buf = malloc((size_t)need + 1);
    if (!buf) {
        lv_video_free(v);
        cli_error("out of memory");
        return 1;
    }
    lv_video_describe(v, keyframes, buf, (size_t)need + 1);
    fputs(buf, stdout);
    free(buf);
    lv_video_free(v);
    return 0;
}

/* "30000/1001", "2.5" */
static bool parse_rate(const char *s, double *out) {
    char *end;
    errno = 0;
    double a = strtod(s, &end);
    if (errno || end == s) return false;
    if (*end == '/') {
        const char *q = end + 1;
        double b = strtod(q, &end);
        if (end == q || *end || !(b > 0)) return false;
        a /= b;
    } else if (*end) {
        return false;
    }
    if (!(a > 0) || !isfinite(a)) return false;
    *out = a;
    return true;
}

/* "384x384" */
static bool parse_size(const char *s, int32_t *w, int32_t *h) {
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || (*end != 'x' && *end != 'X')) return false;
    const char *q = end + 1;
    long b = strtol(q, &end, 10);
    if (end == q || *end || a < 1 || b < 1 || a > 16384 || b > 16384) return false;
    *w = (int32_t)a;
    *h = (int32_t)b;
    return true;
}

/* "a,b,c" -> 3 floats */
static bool parse3(const char *s, float out[3]) {
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (errno || end == p || !isfinite(x)) return false;
        out[i] = (float)x;
        p = end;
        if (i < 2) {
            if (*p != ',') return false;
            p++;
        }
    }
    return *p == '\0';
}

/* "1.5,3,10.25" -> array */
static double *parse_times(const char *s, int64_t *n) {
    int64_t cap = 16, k = 0;
    double *t = malloc((size_t)cap * sizeof(double));
    const char *p = s;
    while (t) {
        while (*p == ',' || *p == ' ') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (errno || end == p) {
            cli_error("--times: '%.20s' is not a time in seconds", p);
            free(t);
            return NULL;
        }
        if (k == cap) {
            double *nt = realloc(t, (size_t)cap * 2 * sizeof(double));
            if (!nt) {
                free(t);
                t = NULL;
                break;
            }
            t = nt;
            cap *= 2;
        }
        t[k++] = x;
        p = end;
    }
    if (!t) {
        cli_error("out of memory");
        return NULL;
    }
    if (k == 0) {
        cli_error("--times: no time given");
        free(t);
        return NULL;
    }
    *n = k;
    return t;
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

int cmd_video_frames(int argc, char **argv) {
    const char *input = NULL, *fps_s = NULL, *size_s = NULL, *out_path = NULL, *dir = NULL, *times_s = NULL;
    const char *mean_s = NULL, *std_s = NULL;
    int64_t n_frames = 0, threads = 0, stream = -1, verbose = 0, max_buffer_mb = 256;
    bool all = false, f32 = false, sequential = false, no_skip = false, hashes = false, stats = false, quiet = false;
    cli_opt opts[] = {
        {"-i", "--input", CLI_STR, &input, "VIDEO", "video file", .required = true},
        {NULL, "--fps", CLI_STR, &fps_s, "F", "sample F frames per second, as ffmpeg's fps filter (default 1; F may be N/D)"},
        {NULL, "--frames", CLI_INT, &n_frames, "N", "sample N frames spread evenly over the video", .lo = 1, .hi = 1 << 22},
        {NULL, "--times", CLI_STR, &times_s, "T,T,...", "sample the frames shown at these times (seconds, increasing)"},
        {NULL, "--all", CLI_FLAG, &all, NULL, "every frame"},
        {NULL, "--size", CLI_STR, &size_s, "WxH", "output size (default: the video's)"},
        {"-j", "--threads", CLI_INT, &threads, "N", "decode threads (default: one per core)", .lo = 0, .hi = 256},
        {"-o", "--output", CLI_STR, &out_path, "FILE", "write the frames there, one after the other ('-': stdout)"},
        {NULL, "--dir", CLI_STR, &dir, "DIR", "write one PNG per frame there (frame_000000.png ...)"},
        {NULL, "--hashes", CLI_FLAG, &hashes, NULL, "print one line per frame: index time pts source-frame fnv1a64"},
        {NULL, "--stream", CLI_INT, &stream, "N", "container stream index (default: the best video stream)", .lo = -1,
         .hi = 1 << 20},
        {NULL, "--f32", CLI_FLAG, &f32, NULL, "float32 planar (3,H,W) output, (x/255 - mean) / std, instead of RGB24"},
        {NULL, "--mean", CLI_STR, &mean_s, "R,G,B", "normalisation mean for --f32 (default 0,0,0)"},
        {NULL, "--std", CLI_STR, &std_s, "R,G,B", "normalisation std for --f32 (default 1,1,1)"},
        {NULL, "--max-buffer", CLI_INT, &max_buffer_mb, "MB", "frames decoded ahead of the writer, at most (default 256)",
         .lo = 1, .hi = 1 << 20},
        {NULL, "--sequential", CLI_FLAG, &sequential, NULL, "the reference path: decode every frame on one thread"},
        {NULL, "--no-skip", CLI_FLAG, &no_skip, NULL, "decode every frame of the decoded GOPs (for comparison)"},
        {NULL, "--stats", CLI_FLAG, &stats, NULL, "print what was decoded, skipped and sought on stderr"},
        {"-q", "--quiet", CLI_FLAG, &quiet, NULL, "no progress line"},
        {"-v", "--verbose", CLI_INT, &verbose, "N", "log level: 0 warnings, 1 info, 2 debug", .lo = 0, .hi = 2},
    };
    int n_opts = (int)(sizeof(opts) / sizeof(opts[0]));
    int r = cli_parse(
        argc, argv, opts, n_opts,
        "longview video-frames -i VIDEO [--fps F | --frames N | --times T,... | --all] [--size WxH] [-j N] "
        "[-o OUT.rgb | --dir DIR | --hashes]",
        "Decode the sampled frames of a video in parallel intervals and write them in order.\n"
        "With --fps F -o OUT the bytes are those of\n"
        "  ffmpeg -i VIDEO -vf fps=F,scale=W:H -pix_fmt rgb24 -f rawvideo OUT\n"
        "(see docs/video.md for the sampling rules and where exactness holds).",
        NULL, 0, NULL);
    if (r) return r > 0 ? 0 : 2;
    cli_set_verbosity(verbose);
    lv_video_route_libav_log();

    int n_rules = (fps_s != NULL) + (n_frames > 0) + (times_s != NULL) + all;
    if (n_rules > 1) {
        cli_error("give one of --fps, --frames, --times, --all");
        return 2;
    }
    if (!out_path && !dir && !hashes) {
        cli_error("nothing to write: give -o FILE, --dir DIR or --hashes");
        return 2;
    }
    lv_video_read_params rp = lv_video_default_read_params();
    double *times = NULL;
    if (n_frames > 0) {
        rp.sample = LV_VIDEO_SAMPLE_COUNT;
        rp.n_frames = n_frames;
    } else if (times_s) {
        rp.sample = LV_VIDEO_SAMPLE_TIMES;
        times = parse_times(times_s, &rp.n_times);
        if (!times) return 2;
        rp.times = times;
    } else if (all) {
        rp.sample = LV_VIDEO_SAMPLE_ALL;
    } else {
        rp.sample = LV_VIDEO_SAMPLE_FPS;
        rp.fps = 1.0;
        if (fps_s && !parse_rate(fps_s, &rp.fps)) {
            cli_error("--fps: '%s' is not a positive rate (F or N/D)", fps_s);
            free(times);
            return 2;
        }
    }
    if (size_s && !parse_size(size_s, &rp.width, &rp.height)) {
        cli_error("--size: '%s' is not WxH with sides in 1..16384", size_s);
        free(times);
        return 2;
    }
    if (f32) {
        rp.format = LV_VIDEO_F32_CHW;
        if ((mean_s && !parse3(mean_s, rp.mean)) || (std_s && !parse3(std_s, rp.std))) {
            cli_error("--mean/--std: expected three numbers R,G,B");
            free(times);
            return 2;
        }
    } else if (mean_s || std_s) {
        cli_error("--mean and --std apply to --f32 output");
        free(times);
        return 2;
    }
    rp.n_threads = (int32_t)threads;
    rp.max_buffered_bytes = max_buffer_mb << 20;
    rp.sequential = sequential;
    rp.no_skip = no_skip;
    if (dir && f32) {
        cli_error("--dir writes PNG images: it cannot be combined with --f32");
        free(times);
        return 2;
    }
    if (dir) {
        struct stat sb;
        if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            cli_error("--dir: '%s' is not a directory", dir);
            free(times);
            return 2;
        }
    }

    lv_video_open_params op = lv_video_default_open_params();
    op.stream = (int32_t)stream;
    lv_video *v = NULL;
    lv_status st = lv_video_open(input, op, &v);
    if (st != LV_OK) {
        free(times);
        return cli_fail("cannot read this video", st);
    }
    lv_video_info info;
    lv_video_get_info(v, &info);
    lv_video_reader *rd = NULL;
    st = lv_video_read_start(v, &rp, &rd);
    free(times);
    if (st != LV_OK) {
        lv_video_free(v);
        return cli_fail("cannot decode", st);
    }
    FILE *out = NULL;
    cli_out outf;
    if (out_path && !(out = cli_out_open(&outf, out_path, true))) {
        lv_video_reader_free(rd);
        lv_video_free(v);
        return 1;
    }
    int64_t planned = lv_video_reader_n_planned(rd);
    cli_progress prog;
    if (!quiet) cli_progress_start(&prog, "video-frames");
    int rc = 0;
    lv_video_frame f;
    int64_t n = 0;
    char detail[64], path[4200];
    while ((st = lv_video_reader_next(rd, &f)) == LV_OK && f.data) {
        if (out && fwrite(f.data, 1, (size_t)f.size, out) != (size_t)f.size) {
            cli_error("cannot write '%s': %s", out_path, strerror(errno));
            rc = 1;
            break;
        }
        if (dir) {
            snprintf(path, sizeof(path), "%s/frame_%06lld.png", dir, (long long)n);
            lv_status ps = lv_video_write_png(path, f.data, f.width, f.height);
            if (ps != LV_OK) {
                rc = cli_fail("cannot write a PNG", ps);
                break;
            }
        }
        if (hashes)
            printf("%lld %.6f %lld %lld %016llx\n", (long long)f.index, f.time_s, (long long)f.pts,
                   (long long)f.source_frame, (unsigned long long)fnv1a64(f.data, f.size));
        n++;
        if (!quiet) {
            double frac = planned > 0 ? (double)(f.index + 1) / (double)planned
                          : info.duration_s > 0 ? f.time_s / info.duration_s : 0.0;
            snprintf(detail, sizeof(detail), "%lld frames", (long long)n);
            cli_progress_update(&prog, frac > 1 ? 1 : frac, detail);
        }
    }
    if (st != LV_OK && rc == 0) rc = cli_fail("decoding failed", st);
    /* the frames appear at -o only when all of them were written (stdout streams as it goes) */
    if (out && rc == 0 && cli_out_commit(&outf) != 0) rc = 1;
    else if (out && rc != 0) cli_out_abort(&outf);
    lv_video_stats s;
    lv_video_reader_stats(rd, &s);
    if (!quiet) {
        snprintf(detail, sizeof(detail), "%lld frames%s", (long long)n, s.n_lost ? " (some lost: see the warnings)" : "");
        cli_progress_done(&prog, detail);
    }
    if (stats)
        fprintf(stderr,
                "stats: %lld frames of %lld planned, %lld lost; %lld of %lld packets decoded; skipped: %lld not referenced, "
                "%lld after the last needed frame of a GOP, %lld whole GOPs; %lld seeks; %lld intervals on %d threads; "
                "%.2f s decoding (summed); at most %lld frames held\n",
                (long long)s.n_delivered, (long long)s.n_planned, (long long)s.n_lost, (long long)s.n_decoded,
                (long long)s.n_packets, (long long)s.n_skipped_nonref, (long long)s.n_skipped_tail,
                (long long)s.n_gops_skipped, (long long)s.n_seeks, (long long)s.n_intervals, s.n_threads, s.decode_s,
                (long long)s.max_held);
    lv_video_reader_free(rd);
    lv_video_free(v);
    return rc;
}
