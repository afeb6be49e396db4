/*
 * fuzz_video.c: libFuzzer target over the video probe and decode path, from memory (a custom
 * AVIOContext over the input: lv_video_open_memory).
 *
 *   make fuzz && build/fuzz/fuzz_video -max_total_time=300 fuzz/corpus/video
 *
 * Each input is opened (container probe, stream choice, packet index, NAL classification) and,
 * when that succeeds, read with the fps rule through one of three paths chosen by the input's
 * length: planned on 1 thread, planned on 2 threads (seeks, intervals, ordered slots), or the
 * sequential path. Limits keep one input cheap: small frames, few packets, few samples.
 */
#include "longview.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

static void silent(lv_log_level level, const char *msg, void *user) {
    (void)level;
    (void)msg;
    (void)user;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) {
        lv_log_set(silent, NULL, LV_LOG_ERROR);
        lv_video_route_libav_log();
        init = 1;
    }
    if (size == 0) return 0;
    lv_video_open_params op = lv_video_default_open_params();
    op.max_pixels = 1 << 20;
    op.max_packets = 4096;
    lv_video *v = NULL;
    if (lv_video_open_memory(data, (int64_t)size, op, &v) != LV_OK) return 0;
    lv_video_info info;
    lv_video_get_info(v, &info);
    char desc[4096];
    lv_video_describe(v, 8, desc, sizeof(desc));

    lv_video_read_params p = lv_video_default_read_params();
    p.sample = LV_VIDEO_SAMPLE_FPS;
    p.fps = 4.0;
    p.width = 16;
    p.height = 16;
    p.max_samples = 512;
    p.n_threads = size % 3 == 1 ? 2 : 1;
    p.sequential = size % 3 == 2;
    lv_video_reader *r = NULL;
    if (lv_video_read_start(v, &p, &r) == LV_OK) {
        lv_video_frame f;
        uint32_t acc = 0;
        while (lv_video_reader_next(r, &f) == LV_OK && f.data) acc += ((const uint8_t *)f.data)[0];
        (void)acc;
        lv_video_stats s;
        lv_video_reader_stats(r, &s);
        lv_video_reader_free(r);
    }
    lv_video_free(v);
    return 0;
}
