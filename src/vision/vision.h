/*
 * vision.h: what the files of the vision module share (internal; the public API is the
 * "vision" section of include/longview.h, the design is docs/vision.md).
 *
 * The module src/vision/ (docs/architecture.md):
 *   Owns:  images (decoding a file into RGB8 with libavcodec, Pillow-compatible resampling, the
 *          preprocessing of each projector type as llama.cpp's mtmd does it), clip-architecture
 *          mmproj GGUF files (loading with mtmd's checks, random files of real shapes) and the
 *          vision tower + projector forward pass that turns an image into text-model embeddings.
 *   Never: runs the text model, owns KV memory, or prints.
 *
 *   image.c    decode an image file, resize (bilinear / bicubic / Lanczos, as Pillow), the
 *              per-projector preprocessing (idefics3 tiles, Qwen smart resize, LLaVA padded fit)
 */
#ifndef LV_VISION_H
#define LV_VISION_H

#include "core/core.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- images ---------------------------------------------------------------------------- */

/* An 8-bit RGB image: h rows of w pixels, each 3 bytes (R, G, B), rows packed (stride 3w). */
typedef struct lv_image {
    int32_t  w, h;
    uint8_t *rgb;
} lv_image;

/* Allocate a w x h image (contents zero). */
lv_status lv_image_alloc(lv_image *img, int32_t w, int32_t h);
void      lv_image_free(lv_image *img);

/* Decode an image file (PNG, JPEG, PPM, anything libavcodec decodes as a still image; the first
 * frame of anything else) into RGB8. Errors name the file and the reason. */
lv_status lv_image_load(const char *path, lv_image *out);

typedef enum lv_resample {
    LV_RESAMPLE_NEAREST,
    LV_RESAMPLE_BILINEAR,
    LV_RESAMPLE_BICUBIC,   /* a = -0.5, as Pillow */
    LV_RESAMPLE_LANCZOS,   /* a = 3 */
} lv_resample;

/* Resize src to w x h exactly as Pillow's Image.resize (separable, support widened by the scale
 * when shrinking, 22-bit fixed-point coefficients, horizontal pass first). */
lv_status lv_image_resize(const lv_image *src, int32_t w, int32_t h, lv_resample filter, lv_image *dst);

/* ---- preprocessing per projector type ---------------------------------------------------- */

typedef enum lv_proj_type {
    LV_PROJ_NONE = 0,
    LV_PROJ_IDEFICS3,      /* "idefics3": SigLIP, pixel shuffle, linear */
    LV_PROJ_QWEN2VL,       /* "qwen2vl_merger" */
    LV_PROJ_QWEN25VL,      /* "qwen2.5vl_merger" */
    LV_PROJ_MLP,           /* "mlp": LLaVA-1.5 */
} lv_proj_type;

/* What preprocessing needs to know of an mmproj file. */
typedef struct lv_vision_prep {
    lv_proj_type type;
    int32_t image_size;          /* clip.vision.image_size: tile side (idefics3), square input (mlp) */
    int32_t patch_size;          /* clip.vision.patch_size */
    int32_t preproc_image_size;  /* idefics3: clip.vision.preproc_image_size, 0 if absent */
    int32_t merge;               /* qwen: spatial merge size (2) */
    int32_t min_tokens;          /* qwen: token limits of the smart resize, 0 = mtmd's defaults */
    int32_t max_tokens;
} lv_vision_prep;

/* The images the tower encodes for one input image, in mtmd's order. */
typedef struct lv_image_tiles {
    int32_t   n;                 /* number of images in img[] */
    lv_image *img;               /* each at the tower's input size */
    int32_t   n_rows, n_cols;    /* idefics3 tile grid (img[0 .. n_rows*n_cols-1], raster order); 0, 0 if none */
    bool      has_overview;      /* idefics3: the last image is the overview */
} lv_image_tiles;

/* Preprocess src for projector p->type as llama.cpp v0.4.0's mtmd does (docs/vision.md). */
lv_status lv_image_preprocess(const lv_vision_prep *p, const lv_image *src, lv_image_tiles *out);
void      lv_image_tiles_free(lv_image_tiles *t);

#endif /* LV_VISION_H */
