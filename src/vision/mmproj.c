/*
 * mmproj.c: the public vision API (include/longview.h, "vision"): an mmproj file loaded once,
 * images decoded, preprocessed per projector type and encoded chunk by chunk in mtmd's order.
 */
#include "vision/vision.h"

#include <math.h>
#include <string.h>
#include <strings.h>

struct lv_mmproj {
    lv_clip *clip;
};

lv_status lv_mmproj_load(const char *path, int64_t n_embd_text, lv_mmproj **out) {
    *out = NULL;
    lv_mmproj *mm = lv_calloc(1, sizeof(*mm));
    if (!mm) return LV_ERR_NOMEM;
    lv_status st = lv_clip_load(path, n_embd_text, &mm->clip);
    if (st != LV_OK) {
        lv_free(mm);
        return st;
    }
    *out = mm;
    return LV_OK;
}

void lv_mmproj_free(lv_mmproj *mm) {
    if (!mm) return;
    lv_clip_free(mm->clip);
    lv_free(mm);
}

int32_t lv_mmproj_n_embd(const lv_mmproj *mm) { return mm->clip->n_out; }
const char *lv_mmproj_projector(const lv_mmproj *mm) { return lv_proj_type_name(mm->clip->proj); }

int64_t lv_mmproj_describe(const lv_mmproj *mm, char *buf, size_t buf_size) {
    char tmp[1024];
    lv_clip_describe(mm->clip, tmp, sizeof(tmp));
    if (buf && buf_size) snprintf(buf, buf_size, "%s", tmp);
    return (int64_t)strlen(tmp);
}

void lv_image_embd_free(lv_image_embd *e) {
    if (!e) return;
    lv_free(e->embd);
    lv_free(e->chunks);
    memset(e, 0, sizeof(*e));
}

static bool is_qwen(const lv_clip *c) { return c->proj == LV_PROJ_QWEN2VL || c->proj == LV_PROJ_QWEN25VL; }

/* Encode n inputs (tiles, or one pair) into out, one chunk each. */
static lv_status encode_inputs(const lv_clip *c, lv_threadpool *tp, const lv_clip_input *in, int32_t n, const lv_image_tiles *tiles,
                               lv_image_embd *out) {
    memset(out, 0, sizeof(*out));
    out->n_embd = c->n_out;
    out->chunks = lv_calloc((size_t)n, sizeof(lv_image_chunk));
    if (!out->chunks) return LV_ERR_NOMEM;
    int64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        lv_image_chunk *ch = &out->chunks[i];
        lv_status st = lv_clip_n_tokens(c, in[i].img->w, in[i].img->h, &ch->n_tokens, &ch->nx, &ch->ny);
        if (st != LV_OK) {
            lv_image_embd_free(out);
            return st;
        }
        ch->first = (int32_t)total;
        ch->n_pos = is_qwen(c) ? LV_MAX(ch->nx, ch->ny) : ch->n_tokens;
        if (tiles && tiles->n_cols > 0 && i < tiles->n_rows * tiles->n_cols) {
            ch->tile_row = i / tiles->n_cols + 1;
            ch->tile_col = i % tiles->n_cols + 1;
        }
        total += ch->n_tokens;
        out->n_pos += ch->n_pos;
    }
    if (total > (1 << 24)) {
        lv_image_embd_free(out);
        return lv_error(LV_ERR_INVALID_ARG, "an image of %lld visual tokens is too large", (long long)total);
    }
    out->n_chunks = n;
    out->n_tokens = (int32_t)total;
    out->projector = lv_proj_type_name(c->proj);
    out->embd = lv_mallocn((size_t)total * (size_t)c->n_out, sizeof(float));
    if (!out->embd) {
        lv_image_embd_free(out);
        return LV_ERR_NOMEM;
    }
    for (int32_t i = 0; i < n; i++) {
        lv_status st = lv_clip_encode(c, tp, &in[i], out->embd + (int64_t)out->chunks[i].first * c->n_out);
        if (st != LV_OK) {
            lv_image_embd_free(out);
            return st;
        }
    }
    if (tiles) {
        out->tile_rows = tiles->n_rows;
        out->tile_cols = tiles->n_cols;
    }
    return LV_OK;
}

static lv_status encode_image(const lv_mmproj *mm, lv_threadpool *tp, const lv_image *img, lv_image_embd *out) {
    const lv_clip *c = mm->clip;
    const lv_vision_prep prep = lv_clip_prep(c);
    lv_image_tiles tiles = {0};
    lv_status st = lv_image_preprocess(&prep, img, &tiles);
    if (st != LV_OK) return st;
    lv_clip_input *in = lv_calloc((size_t)LV_MAX(tiles.n, 1), sizeof(*in));
    if (!in) {
        lv_image_tiles_free(&tiles);
        return LV_ERR_NOMEM;
    }
    for (int32_t i = 0; i < tiles.n; i++) in[i].img = &tiles.img[i];
    st = encode_inputs(c, tp, in, tiles.n, &tiles, out);
    if (st == LV_OK) {
        out->width = img->w;
        out->height = img->h;
    }
    lv_free(in);
    lv_image_tiles_free(&tiles);
    return st;
}

lv_status lv_mmproj_encode_file(const lv_mmproj *mm, lv_threadpool *tp, const char *path, lv_image_embd *out) {
    memset(out, 0, sizeof(*out));
    lv_image img = {0};
    lv_status st = lv_image_load(path, &img);
    if (st != LV_OK) return st;
    st = encode_image(mm, tp, &img, out);
    lv_image_free(&img);
    return st;
}

lv_status lv_mmproj_encode_memory(const lv_mmproj *mm, lv_threadpool *tp, const uint8_t *data, int64_t size, lv_image_embd *out) {
    memset(out, 0, sizeof(*out));
    lv_image img = {0};
    lv_status st = lv_image_load_memory(data, size, "the image", &img); /* its pixel count capped */
    if (st != LV_OK) return st;
    st = encode_image(mm, tp, &img, out);
    lv_image_free(&img);
    return st;
}

static lv_status wrap_rgb(const uint8_t *rgb, int32_t w, int32_t h, lv_image *img) {
    if (!rgb || w <= 0 || h <= 0 || w > 16384 || h > 16384)
        return lv_error(LV_ERR_INVALID_ARG, "an image of %dx%d pixels is out of range (1..16384 per side)", w, h);
    img->w = w;
    img->h = h;
    img->rgb = (uint8_t *)rgb; /* read only */
    return LV_OK;
}

lv_status lv_mmproj_encode_rgb(const lv_mmproj *mm, lv_threadpool *tp, const uint8_t *rgb, int32_t w, int32_t h, lv_image_embd *out) {
    memset(out, 0, sizeof(*out));
    lv_image img;
    lv_status st = wrap_rgb(rgb, w, h, &img);
    if (st != LV_OK) return st;
    return encode_image(mm, tp, &img, out);
}

lv_status lv_mmproj_encode_pair(const lv_mmproj *mm, lv_threadpool *tp, const uint8_t *rgb0, const uint8_t *rgb1, int32_t w, int32_t h,
                                lv_image_embd *out) {
    memset(out, 0, sizeof(*out));
    const lv_clip *c = mm->clip;
    if (!is_qwen(c)) return lv_error(LV_ERR_INVALID_ARG, "temporal pairs are for the Qwen projectors, not %s", lv_proj_type_name(c->proj));
    lv_image a, b;
    lv_status st;
    if ((st = wrap_rgb(rgb0, w, h, &a)) != LV_OK || (st = wrap_rgb(rgb1, w, h, &b)) != LV_OK) return st;
    const lv_vision_prep prep = lv_clip_prep(c);
    lv_image_tiles ta = {0}, tb = {0};
    if ((st = lv_image_preprocess(&prep, &a, &ta)) == LV_OK && (st = lv_image_preprocess(&prep, &b, &tb)) == LV_OK) {
        if (ta.n != 1 || tb.n != 1) {
            st = lv_error(LV_ERR_INTERNAL, "Qwen preprocessing gave %d and %d images", ta.n, tb.n);
        } else {
            lv_clip_input in = {&ta.img[0], &tb.img[0]};
            st = encode_inputs(c, tp, &in, 1, NULL, out);
            if (st == LV_OK) {
                out->width = w;
                out->height = h;
            }
        }
    }
    lv_image_tiles_free(&ta);
    lv_image_tiles_free(&tb);
    return st;
}

lv_status lv_mmproj_write_random(const char *preset, const char *type, int32_t n_text, int32_t preproc_image_size, uint64_t seed, float std,
                                 const char *out_path) {
    lv_type t;
    if (!type || strcasecmp(type, "f32") == 0) t = LV_TYPE_F32;
    else if (strcasecmp(type, "f16") == 0) t = LV_TYPE_F16;
    else if (strcasecmp(type, "q8_0") == 0) t = LV_TYPE_Q8_0;
    else return lv_error(LV_ERR_INVALID_ARG, "mmproj weight type '%s': use f32, f16 or q8_0", type);
    return lv_genmmproj_write(preset, t, n_text, preproc_image_size, seed, std, out_path);
}

lv_status lv_image_decode_file(const char *path, uint8_t **rgb, int32_t *w, int32_t *h) {
    *rgb = NULL;
    *w = *h = 0;
    lv_image img = {0};
    lv_status st = lv_image_load(path, &img);
    if (st != LV_OK) return st;
    *rgb = img.rgb;
    *w = img.w;
    *h = img.h;
    return LV_OK;
}

void lv_image_rgb_free(uint8_t *rgb) {
    lv_image img = {0};
    img.rgb = rgb;
    lv_image_free(&img);
}

/* ---- video frames (the ask pipeline, docs/video-questions.md) ---- */

lv_status lv_mmproj_n_tokens(const lv_mmproj *mm, int32_t w, int32_t h, int32_t *n_tokens, int32_t *nx, int32_t *ny) {
    int32_t n = 0, x = 0, y = 0;
    lv_status st = lv_clip_n_tokens(mm->clip, w, h, &n, &x, &y);
    if (n_tokens) *n_tokens = n;
    if (nx) *nx = x;
    if (ny) *ny = y;
    return st;
}

/* Python's round() of a / f for a >= 0 (half to even), times f */
static int64_t round_by_factor(double a, int64_t f) {
    const double q = a / (double)f, fl = floor(q), d = q - fl;
    int64_t r = (int64_t)fl;
    if (d > 0.5 || (d == 0.5 && (r & 1))) r++;
    return r * f;
}

lv_status lv_mmproj_video_frame_size(const lv_mmproj *mm, int32_t src_w, int32_t src_h, int64_t n_frames, int32_t *w, int32_t *h) {
    const lv_clip *c = mm->clip;
    *w = *h = 0;
    if (src_w <= 0 || src_h <= 0 || n_frames <= 0)
        return lv_error(LV_ERR_INVALID_ARG, "video frame size: bad source %dx%d or frame count %lld", src_w, src_h, (long long)n_frames);
    if (c->proj == LV_PROJ_IDEFICS3) { /* SmolVLM2: every frame stretched to one tile */
        *w = *h = c->image_size;
        return LV_OK;
    }
    if (!is_qwen(c))
        return lv_error(LV_ERR_UNSUPPORTED, "videos are supported for the idefics3 (SmolVLM2) and Qwen projectors, not %s", lv_proj_type_name(c->proj));
    /* qwen_vl_utils' smart_resize for video: factor 28, 128..768 tokens per frame, and the total
     * budget of 128000 x 28^2 x 0.9 pixels shared by the frames (two per temporal pair) */
    const int64_t f = (int64_t)c->patch_size * (c->merge > 0 ? c->merge : 2);
    const double min_px = 128.0 * (double)(f * f), max_px_frame = 768.0 * (double)(f * f);
    const double total_px = floor(128000.0 * (double)(f * f) * 0.9);
    double max_px = LV_MIN(max_px_frame, total_px / (double)n_frames * 2.0);
    max_px = LV_MAX(max_px, floor(min_px * 1.05));
    int64_t hb = LV_MAX(f, round_by_factor(src_h, f)), wb = LV_MAX(f, round_by_factor(src_w, f));
    if ((double)hb * (double)wb > max_px) {
        const double beta = sqrt((double)src_h * (double)src_w / max_px);
        hb = LV_MAX(f, (int64_t)floor((double)src_h / beta / (double)f) * f);
        wb = LV_MAX(f, (int64_t)floor((double)src_w / beta / (double)f) * f);
    } else if ((double)hb * (double)wb < min_px) {
        const double beta = sqrt(min_px / ((double)src_h * (double)src_w));
        hb = (int64_t)ceil((double)src_h * beta / (double)f) * f;
        wb = (int64_t)ceil((double)src_w * beta / (double)f) * f;
    }
    if (hb > 16384 || wb > 16384) return lv_error(LV_ERR_INVALID_ARG, "video frames of %dx%d would be resized to %lldx%lld", src_w, src_h, (long long)wb, (long long)hb);
    *w = (int32_t)wb;
    *h = (int32_t)hb;
    return LV_OK;
}

lv_status lv_mmproj_encode_frames(const lv_mmproj *mm, lv_threadpool *tp, const uint8_t *rgb0, const uint8_t *rgb1, int32_t w, int32_t h,
                                  float *out) {
    const lv_clip *c = mm->clip;
    if (c->proj != LV_PROJ_IDEFICS3 && !is_qwen(c))
        return lv_error(LV_ERR_UNSUPPORTED, "videos are supported for the idefics3 (SmolVLM2) and Qwen projectors, not %s", lv_proj_type_name(c->proj));
    if (c->proj == LV_PROJ_IDEFICS3 && rgb1) return lv_error(LV_ERR_INVALID_ARG, "idefics3 encodes video frames one at a time, not in pairs");
    if (c->proj == LV_PROJ_IDEFICS3 && (w != c->image_size || h != c->image_size))
        return lv_error(LV_ERR_INVALID_ARG, "an idefics3 video frame must be %dx%d (the tile size), not %dx%d", c->image_size, c->image_size, w, h);
    lv_image a, b;
    lv_status st;
    if ((st = wrap_rgb(rgb0, w, h, &a)) != LV_OK) return st;
    if (rgb1 && (st = wrap_rgb(rgb1, w, h, &b)) != LV_OK) return st;
    int32_t n, nx, ny;
    if ((st = lv_clip_n_tokens(c, w, h, &n, &nx, &ny)) != LV_OK) return st;
    /* a Qwen frame without its partner is paired with itself, as HF repeats an odd last frame */
    lv_clip_input in = {&a, is_qwen(c) ? (rgb1 ? &b : &a) : NULL};
    return lv_clip_encode(c, tp, &in, out);
}
