/*
 * vnvideo.h: writing V-NIAH evaluation videos (docs/vniah.md), shared by `longview video-vniah`
 * and `longview eval vniah`: the haystack (every video stream of each file, looped, resized to the
 * output size by the library's reader, one pass kept in memory when it fits), needles drawn at full
 * resolution with vniah.c's font and placement rule, H.264 through the library's writer
 * (lv_video_writer), and the JSON sidecar with the truth.
 */
#ifndef LV_VNVIDEO_H
#define LV_VNVIDEO_H

#include "longview.h"
#include "vniah.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* A needle of an evaluation video: text on frames [f0, f1), drawn with style st. */
typedef struct vn_vneedle {
    char text[24];
    double t, dur; /* seconds: from t for dur */
    int64_t f0, f1;
    vn_style st;
} vn_vneedle;

/* "25", "2.5" or "30000/1001" as a fraction in (0, 1000]. */
bool vn_parse_fps(const char *s, int32_t *num, int32_t *den);

/* "WxH" with even sides in 2..16384. */
bool vn_parse_size(const char *s, int32_t *w, int32_t *h);

/* The frames of needle i (t, dur set) in a video of n_frames at fps: [ceil(t fps), ceil((t + dur)
 * fps)) (at least one; cut at the end), and its style: vn_needle_style on a W x H frame with the
 * generator {seed * 0x9e3779b97f4a7c15 + i + 1}, so the same seed and needle list always give the
 * same boxes. -1 when t is past the end. */
int vn_vneedle_place(vn_vneedle *nd, int i, double fps, int64_t n_frames, int32_t W, int32_t H, uint64_t seed, double box_min,
                     double box_max);

typedef struct vn_hay vn_hay;
/* Open the haystack: list is FILE[,FILE] (comma-separated); every video stream of each file, one
 * after the other, looped; frames sampled at fps and resized to w x h by the reader; one pass kept
 * in memory when it fits in cache_mb MB. 0, or -1 after cli_error. */
int  vn_hay_open(const char *list, int32_t w, int32_t h, double fps, int64_t threads, int64_t cache_mb, vn_hay **out);
void vn_hay_free(vn_hay *h);
/* The next haystack frame (valid until the next call). 0, or -1 after cli_error. */
int  vn_hay_next(vn_hay *h, const uint8_t **px);
/* Start again at the haystack's first frame (a whole pass in memory is kept). 0 or -1. */
int  vn_hay_rewind(vn_hay *h);

/* Write n_frames haystack frames (from where the haystack is) with the needles drawn to path
 * through lv_video_writer (wp: size, rate, GOP, CRF, preset, threads). progress: a label for the
 * progress line, NULL for none. 0, or -1 after cli_error (the file is then incomplete: the caller
 * removes it). */
int vn_write_video(vn_hay *h, const char *path, const lv_video_writer_params *wp, int64_t n_frames, const vn_vneedle *nd, int n_needles,
                   const char *progress);

/* The JSON sidecar: {"video", "width", "height", "fps", "fps_num", "fps_den", "n_frames", "length_s",
 * "seed", "haystack": [{"file", "stream"}], "needles": [{"text", "t", "duration", "f0", "f1", "t0",
 * "t1", "mmss", "box": [x, y, w, h]}]} */
void vn_write_json(FILE *f, const char *video, const vn_hay *h, const lv_video_writer_params *wp, int64_t n_frames, uint64_t seed,
                   const vn_vneedle *nd, int n_needles);

#endif
