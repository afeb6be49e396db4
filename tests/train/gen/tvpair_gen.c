/*
 * tvpair_gen: writes the trainer-initialised text + mmproj pair of tests/train/tvpair.h, for
 * scripts/gen-tvision-golden.sh (llama.cpp's mtmd runs on it). Run from the repository root (the
 * vocabulary is tests/golden/vision/vocab-vlm.gguf).
 *   tvpair_gen "seed=N type=f32|f16 scale=2|4" TEXT.gguf MMPROJ.gguf
 */
#include "train/tvpair.h"

#include <stdio.h>

int main(int argc, char **argv) {
    tvpair_spec sp;
    if (argc != 4 || !tvpair_parse(argv[1], &sp)) {
        fprintf(stderr, "usage: tvpair_gen \"seed=N type=f32|f16 scale=2|4\" TEXT.gguf MMPROJ.gguf\n");
        return 2;
    }
    const lv_status st = tvpair_write(&sp, argv[2], argv[3]);
    if (st != LV_OK) {
        fprintf(stderr, "tvpair_gen: %s\n", lv_last_error());
        return 1;
    }
    return 0;
}
