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
 *   image.c    decode an image file or buffer (libavformat / libavcodec / swscale), the
 *              per-projector preprocessing (idefics3 tiles, Qwen smart resize, LLaVA padded fit)
 *   resize.c   the image type; resize as Pillow's Image.resize (nearest / bilinear / bicubic /
 *              Lanczos)
 *   clip.c     the mmproj loader: keys and tensors of the four projector types, mtmd's checks
 *   encode.c   the tower + projector forward pass of one preprocessed image (or Qwen frame pair)
 *   mmproj.c   the public lv_mmproj API: an image file or pixels -> preprocessing -> chunks of embeddings
 *   genmmproj.c random-weight mmproj files of the published shapes (`longview gen-mmproj`)
 */
#ifndef LV_VISION_H
#define LV_VISION_H

#include "core/core.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- images ---------------------------------------------------------------------------- */

/* An 8-bit RGB image: h rows of w pixels, each 3 bytes (R, G, B), rows packed (stride 3w). */
typedef struct lv_image {
    int32_t  w, h;
    uint8_t *rgb;
} lv_image;

/* Limits: a decoded image has sides 1..16384; any image (allocated, resized) has sides up to 65536
 * (preprocessing targets can be long and thin) and at most 2^28 pixels. */
#define LV_IMAGE_MAX_SIDE       16384
#define LV_IMAGE_MAX_ALLOC_SIDE 65536
#define LV_IMAGE_MAX_PIXELS     ((int64_t)1 << 28)

static inline bool lv_image_dims_ok(int64_t w, int64_t h) {
    return w > 0 && h > 0 && w <= LV_IMAGE_MAX_ALLOC_SIDE && h <= LV_IMAGE_MAX_ALLOC_SIDE && w * h <= LV_IMAGE_MAX_PIXELS;
}

/* Allocate a w x h image (contents zero). LV_ERR_INVALID_ARG outside the limits above. */
lv_status lv_image_alloc(lv_image *img, int32_t w, int32_t h);
void      lv_image_free(lv_image *img); /* accepts a zeroed or freed image */

/* Decode an image file (PNG, JPEG, PPM/PGM/PAM, BMP, GIF, TIFF, WebP, QOI, ... anything a
 * libavformat image demuxer and libavcodec read as a still image; the first frame of a video in
 * the containers src/video opens) into RGB8: grey and palettes expanded, alpha dropped (as
 * Pillow's convert("RGB")), YUV converted with the frame's matrix and range. Errors name the file:
 * LV_ERR_IO (cannot open or read), LV_ERR_FORMAT (not an image, corrupt or truncated data, absurd
 * size), LV_ERR_UNSUPPORTED (no decoder / no conversion), LV_ERR_NOMEM. *out is zeroed on error.
 * libav's own log lines go where lv_video_route_libav_log() sends them (stderr by default). */
lv_status lv_image_load(const char *path, lv_image *out);
/* The same from memory; name (may be NULL) is used in messages. _capped lowers the pixel limit
 * (max_pixels <= 0 or over LV_IMAGE_MAX_PIXELS: the default), e.g. for the fuzzer. */
lv_status lv_image_load_memory(const uint8_t *data, int64_t size, const char *name, lv_image *out);
lv_status lv_image_load_memory_capped(const uint8_t *data, int64_t size, const char *name, int64_t max_pixels,
                                      lv_image *out);

typedef enum lv_resample {
    LV_RESAMPLE_NEAREST,
    LV_RESAMPLE_BILINEAR,
    LV_RESAMPLE_BICUBIC,   /* a = -0.5, as Pillow */
    LV_RESAMPLE_LANCZOS,   /* a = 3 */
} lv_resample;

/* Resize src to w x h exactly as Pillow's Image.resize (separable, support widened by the scale
 * when shrinking, 22-bit fixed-point coefficients, horizontal pass first; nearest as Pillow's
 * affine scale). Byte-identical to Pillow 9.4 on the golden cases (tests/vision/). *dst is
 * allocated (zeroed on error). */
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
    int32_t merge;               /* mtmd's n_merge: qwen spatial merge size (0 = 2); idefics3
                                  * clip.vision.projector.scale_factor (0 = 1); unused by mlp */
    /* The user's image token limits (llama.cpp --image-min-tokens / --image-max-tokens), 0 =
     * none: qwen's defaults are 8..4096; for idefics3 either one set selects the generic
     * slicing, and min without max is refused as clip.cpp refuses it. */
    int32_t min_tokens;
    int32_t max_tokens;
} lv_vision_prep;

/* The images the tower encodes for one input image, in mtmd's order. */
typedef struct lv_image_tiles {
    int32_t   n;                 /* number of images in img[] */
    lv_image *img;               /* each at the tower's input size */
    int32_t   n_rows, n_cols;    /* idefics3 tile grid (img[0 .. n_rows*n_cols-1], raster order); 0, 0 if none */
    bool      has_overview;      /* idefics3: the last image is the overview */
} lv_image_tiles;

/* The geometry of the preprocessing of a w x h image, without touching pixels (the tests check
 * it against an independent re-implementation of mtmd's arithmetic on many sizes). */
typedef struct lv_image_plan {
    int32_t w, h;                 /* each image given to the tower: the tile (idefics3) or the output */
    int32_t n_rows, n_cols;       /* idefics3 tile grid; 0, 0 otherwise */
    bool    has_overview;         /* idefics3 */
    bool    lanczos;              /* idefics3 with preproc_image_size: the Lanczos path */
    int32_t resized_w, resized_h; /* idefics3 Lanczos path: the size with the long side at E; else 0 */
    int32_t refined_w, refined_h; /* idefics3: the image cut into tiles; qwen / mlp: = w, h */
    int32_t fit_w, fit_h;         /* the source resized to this ... */
    int32_t fit_x, fit_y;         /* ... at this offset inside refined, the rest padding (no padding:
                                   * fit = refined, offset 0; idefics3's Lanczos path never pads) */
} lv_image_plan;

lv_status lv_image_plan_for(const lv_vision_prep *p, int32_t w, int32_t h, lv_image_plan *plan);

/* Preprocess src for projector p->type as llama.cpp v0.4.0's mtmd does (docs/vision.md): the u8
 * images the tower normalises, tiles in raster order then the overview (idefics3), or one image
 * (qwen: the smart-resized size, black padding; mlp: image_size square, padding 122,116,104).
 * LV_ERR_INVALID_ARG for settings mtmd refuses or an image no grid fits; *out zeroed on error. */
lv_status lv_image_preprocess(const lv_vision_prep *p, const lv_image *src, lv_image_tiles *out);
void      lv_image_tiles_free(lv_image_tiles *t);

/* ---- mmproj files (clip.c) ----------------------------------------------------------------- */

typedef enum lv_clip_norm { LV_CLIP_LAYERNORM, LV_CLIP_RMSNORM } lv_clip_norm;
typedef enum lv_clip_act {
    LV_CLIP_GELU,        /* tanh GELU (clip.use_gelu) */
    LV_CLIP_QUICK_GELU,  /* x * sigmoid(1.702 x) (neither use_gelu nor use_silu) */
    LV_CLIP_SILU,        /* SiLU, gated when the blocks have ffn_gate (clip.use_silu) */
} lv_clip_act;

typedef struct lv_clip_block {
    lv_tensor ln1_w, ln1_b, ln2_w, ln2_b;       /* biases absent for RMSNorm */
    lv_tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b;
    lv_tensor up_w, up_b, gate_w, gate_b, down_w, down_b; /* gate only for gated SiLU */
} lv_clip_block;

typedef struct lv_clip_ws lv_clip_ws; /* encode.c */

typedef struct lv_clip {
    lv_gguf *gguf;
    char *path;
    lv_proj_type proj;
    /* hyper-parameters as mtmd reads them */
    int32_t image_size, patch_size, n_embd, n_ff, n_block, n_head, d_head;
    int32_t n_block_run;          /* blocks the forward pass runs (mlp: n_block - 1, as mtmd) */
    int32_t proj_dim;             /* clip.vision.projection_dim */
    int32_t n_out;                /* output width: the text model's n_embd */
    float eps;
    float mean[3], std[3];
    lv_clip_norm norm;
    lv_clip_act act;
    int32_t scale_factor;         /* idefics3 pixel shuffle */
    int32_t preproc_image_size;   /* idefics3, 0 if absent */
    int32_t merge;                /* qwen spatial merge (2) */
    int32_t n_wa_pattern;         /* qwen2.5: block i is full attention iff (i + 1) % n == 0; 0: all full */
    int32_t window_size;          /* qwen2.5 attention window in pixels (112) */
    int32_t min_tokens, max_tokens; /* qwen token limits of the smart resize */
    /* weights */
    lv_tensor patch_w, patch_w1;  /* conv kernels viewed as (3 p p, d) matrices; patch_w1: qwen's second temporal slice */
    void *patch_f16;              /* the conv kernels rounded to f16 (ggml's im2col is f16): owned */
    lv_tensor patch_h, patch_h1;  /* views of patch_f16 */
    lv_tensor patch_b, class_embd, pos_embd, pre_ln_w, pre_ln_b, post_ln_w, post_ln_b;
    lv_tensor mm_fc;              /* idefics3 */
    lv_tensor mm0_w, mm0_b, mm2_w, mm2_b; /* qwen merger and mlp */
    lv_clip_block *blocks;
    void *packed;                 /* the matrices repacked for the packed kernels (qpack.h), or NULL: owned */
    size_t packed_size;
    int64_t weight_bytes;
    /* encode.c's activation buffers, kept from one encode to the next so that a video's frames do
     * not each map and clear ~50 MB of fresh pages: taken by the call that finds ws_busy 0 (a
     * concurrent call allocates its own), grown when an input is larger; owned */
    lv_clip_ws *ws;
    _Atomic int ws_busy;
} lv_clip;

/* Open and check an mmproj file. n_text_embd > 0: the text model's embedding width, which the
 * projector's output must equal (0: not checked). Messages are prefixed with the path. */
lv_status lv_clip_load(const char *path, int64_t n_text_embd, lv_clip **out);
/* The same over a GGUF image in memory (not copied: it must outlive the handle); for the fuzzer. */
lv_status lv_clip_load_memory(const void *data, uint64_t size, int64_t n_text_embd, lv_clip **out);
void      lv_clip_free(lv_clip *c);
const char *lv_proj_type_name(lv_proj_type t);
/* One paragraph describing the tower and projector (for `longview info --mmproj`). */
void lv_clip_describe(const lv_clip *c, char *buf, size_t n);
/* The preprocessing parameters of a loaded file. */
lv_vision_prep lv_clip_prep(const lv_clip *c);

/* ---- the forward pass (encode.c) -------------------------------------------------------------- */

/* One encoder input: an image at the tower's input size, or (qwen) a temporal pair of frames. */
typedef struct lv_clip_input {
    const lv_image *img;          /* w, h multiples of the patch size (qwen: of 2 x patch size) */
    const lv_image *img2;         /* qwen: the second frame of a temporal pair, same size; or NULL */
} lv_clip_input;

/* Tokens the projector outputs for an input of w x h pixels, and the merged grid (nx, ny). */
lv_status lv_clip_n_tokens(const lv_clip *c, int32_t w, int32_t h, int32_t *n_tokens, int32_t *nx, int32_t *ny);

/* Run tower + projector: out gets n_tokens x n_out floats, token-major, in mtmd's order.
 * The activation buffers are the clip's, reused across calls (one call at a time takes them; a
 * concurrent call allocates its own, so calls from several threads stay correct). */
lv_status lv_clip_encode(const lv_clip *c, lv_threadpool *tp, const lv_clip_input *in, float *out);
/* Free a clip's kept buffers (lv_clip_free calls it). */
void lv_clip_ws_free(lv_clip_ws *ws);

/* ---- random files (genmmproj.c) ---- */
lv_status lv_genmmproj_write(const char *preset, lv_type wtype, int32_t n_text, int32_t preproc, uint64_t seed, float std, const char *out_path);

#endif /* LV_VISION_H */
