/*
 * fuzz_mmproj.c: libFuzzer target over the mmproj loader (lv_clip_load_memory: the GGUF reader,
 * then the clip keys and tensors of the four projector types and mtmd's checks) and, when a file
 * loads and is small, one encoder pass over a small image at a size the tower accepts.
 *
 *   make fuzz && build/fuzz/fuzz_mmproj -dict=fuzz/gguf.dict -max_total_time=300 fuzz/corpus/mmproj
 *
 * The seeds are the tiny random mmproj files of tests/golden/vision. An encoder pass runs only for
 * towers under 2^22 weight bytes and images of at most 64 patches, so one input stays cheap.
 */
#include "longview.h"
#include "vision/vision.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static void silent(lv_log_level level, const char *msg, void *user) {
    (void)level;
    (void)msg;
    (void)user;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static lv_threadpool *tp;
    if (!tp) {
        lv_log_set(silent, NULL, LV_LOG_ERROR);
        tp = lv_threadpool_create(1);
    }
    lv_clip *c = NULL;
    if (lv_clip_load_memory(data, size, 0, &c) != LV_OK) return 0;
    const int32_t p = c->patch_size, g = c->proj == LV_PROJ_MLP ? c->image_size / p : 4;
    int32_t n, nx, ny;
    if (c->weight_bytes < (1 << 22) && g <= 8 && lv_clip_n_tokens(c, g * p, g * p, &n, &nx, &ny) == LV_OK && n <= 64 && c->n_out <= 4096) {
        lv_image img;
        if (lv_image_alloc(&img, g * p, g * p) == LV_OK) {
            for (int64_t i = 0; i < (int64_t)img.w * img.h * 3; i++) img.rgb[i] = (uint8_t)(i * 37);
            float *out = lv_mallocn((size_t)n * (size_t)c->n_out, sizeof(float));
            lv_clip_input in = {&img, NULL};
            if (out) lv_clip_encode(c, tp, &in, out);
            lv_free(out);
            lv_image_free(&img);
        }
    }
    lv_clip_free(c);
    return 0;
}
