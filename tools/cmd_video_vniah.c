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
#include "common/vnvideo.h"
#include "commands.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NEEDLES CLI_LIST_MAX

/* "TEXT@SECONDS[+DURATION]" (the last '@' splits) */
static bool parse_needle(const char *s, vn_vneedle *n, double default_dur) {
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
    if (!vn_parse_fps(fps_s, &fnum, &fden)) return cli_error("--fps: '%s' is not a rate in (0, 1000] (F or N/D)", fps_s), 2;
    if (!vn_parse_size(size_s, &W, &H)) return cli_error("--size: '%s' is not WxH with even sides in 2..16384", size_s), 2;
    if (box_max < box_min) return cli_error("--box-max %g is below --box %g", box_max, box_min), 2;
    if (strcmp(out_path, "-") == 0) return cli_error("-o: an MP4 needs a file it can seek in, not standard output"), 2;
    const double fps = (double)fnum / fden;
    const int64_t n_frames = llround(length * fps) > 0 ? llround(length * fps) : 1;
    if (n_frames > 100000000) return cli_error("--length: %lld frames is too many", (long long)n_frames), 2;
    vn_vneedle nd[MAX_NEEDLES];
    const int n_needles = needles.n;
    for (int i = 0; i < n_needles; i++) {
        if (!parse_needle(needles.items[i], &nd[i], needle_dur))
            return cli_error("--needle '%s': expected TEXT@SECONDS[+DURATION] (TEXT up to 23 characters)", needles.items[i]), 2;
        if (!vn_text_ok(nd[i].text))
            return cli_error("--needle '%s': the font has 0-9 A-Z (a-z drawn as capitals), space and : . , - ? ! ' / # + = ( )",
                             nd[i].text),
                   2;
        if (vn_vneedle_place(&nd[i], i, fps, n_frames, W, H, (uint64_t)seed, box_min, box_max) != 0)
            return cli_error("--needle '%s': %g s is past the end of a %g s video", needles.items[i], nd[i].t, (double)n_frames / fps), 2;
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
    vn_hay *h = NULL;
    int rc = 0;
    cli_out vo = {0}, jo = {0};
    if (vn_hay_open(haystack, W, H, fps, threads, cache_mb, &h)) {
        rc = 1;
        goto done;
    }
    /* the temporary beside OUT, which the writer then fills (MP4 needs a seekable file: no stdout) */
    if (!cli_out_open(&vo, out_path, true)) {
        rc = 1;
        goto done;
    }
    lv_video_writer_params wp = lv_video_default_writer_params();
    wp.width = W, wp.height = H, wp.fps_num = fnum, wp.fps_den = fden;
    wp.gop = (int32_t)gop, wp.crf = (int32_t)crf, wp.preset = preset, wp.n_threads = (int32_t)threads;
    if (vn_write_video(h, vo.tmp, &wp, n_frames, nd, n_needles, quiet ? NULL : "video-vniah") != 0 || cli_out_commit(&vo) != 0) {
        rc = 1;
        goto done;
    }
    FILE *jf = cli_out_open(&jo, json_path, false);
    if (!jf) {
        rc = 1;
        goto done;
    }
    vn_write_json(jf, out_path, h, &wp, n_frames, (uint64_t)seed, nd, n_needles);
    for (int k = 0; k < n_needles; k++) {
        char ts[32];
        lv_video_ask_timestamp((double)nd[k].f0 / fps, ts, sizeof(ts));
        printf("needle %d: \"%s\" frames [%lld, %lld) = %.3f..%.3f s (%s), box %dx%d at %d,%d\n", k, nd[k].text, (long long)nd[k].f0,
               (long long)nd[k].f1, (double)nd[k].f0 / fps, (double)nd[k].f1 / fps, ts, nd[k].st.box_w, nd[k].st.box_h, nd[k].st.x,
               nd[k].st.y);
    }
    if (cli_out_commit(&jo) != 0) {
        rc = 1;
        goto done;
    }
    printf("wrote %s (%dx%d, %lld frames at %g fps, %.1f s) and %s\n", out_path, W, H, (long long)n_frames, fps, (double)n_frames / fps,
           json_path);
done:
    cli_out_abort(&vo);
    cli_out_abort(&jo);
    vn_hay_free(h);
    free(json_def);
    return rc;
}
