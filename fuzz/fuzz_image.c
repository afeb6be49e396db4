/*
 * fuzz_image.c: libFuzzer target over image decoding from memory (lv_image_load_memory: the libav
 * demuxer whitelist, the header size sniffing, decoding with damage as an error, the conversion to
 * RGB including our JPEG YCbCr path) and, when an image comes out, one preprocessing of it.
 *
 *   make fuzz && build/fuzz/fuzz_image -max_total_time=300 fuzz/corpus/image
 *
 * Sizes are capped to keep one input cheap: at most 2^22 pixels decoded (lv_image_load_memory_capped),
 * only images up to 2^16 pixels preprocessed. The projector type is chosen by the input's length.
 */
#include "longview.h"
#include "vision/vision.h"

#include <stddef.h>
#include <stdint.h>

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
    lv_image img;
    if (lv_image_load_memory_capped(data, (int64_t)size, "fuzz", (int64_t)1 << 22, &img) != LV_OK) return 0;
    if ((int64_t)img.w * img.h <= (1 << 16)) {
        static const lv_vision_prep preps[4] = {
            {.type = LV_PROJ_IDEFICS3, .image_size = 32, .patch_size = 8, .merge = 2, .preproc_image_size = 64},
            {.type = LV_PROJ_IDEFICS3, .image_size = 32, .patch_size = 8, .merge = 2},
            {.type = LV_PROJ_QWEN25VL, .image_size = 560, .patch_size = 14, .merge = 2, .max_tokens = 16},
            {.type = LV_PROJ_MLP, .image_size = 28, .patch_size = 14},
        };
        lv_image_tiles t;
        if (lv_image_preprocess(&preps[size % 4], &img, &t) == LV_OK) lv_image_tiles_free(&t);
    }
    lv_image_free(&img);
    return 0;
}
