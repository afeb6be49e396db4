/*
 * resize.c: the lv_image type (allocation) and Pillow's Image.resize for 8-bit RGB, byte for byte
 * (docs/vision.md, "The resampler").
 *
 * Bilinear, bicubic (a = -0.5) and Lanczos (a = 3) are Pillow's convolution resampler
 * (libImaging/Resample.c), which llama.cpp's mtmd ports as resize_pillow:
 *   - separable: a horizontal pass into an 8-bit intermediate (clipped), then a vertical pass;
 *     a pass whose size does not change is skipped, and equal sizes are a copy;
 *   - for output pixel i the source centre is c = (i + 0.5) * in / out; when shrinking, the
 *     filter is stretched by s = in / out (support and argument), never narrowed when growing;
 *     the window is [(int)(c - support + 0.5), (int)(c + support + 0.5)) clipped to the image,
 *     and weight j is filter((j - c + 0.5) / max(s, 1));
 *   - the weights of a window are divided by their sum in double, then made 22-bit fixed point
 *     by adding +-0.5 and truncating toward zero (not by rounding the product twice);
 *   - each output value starts at 2^21 (one half), adds pixel * weight in 32-bit integers, and is
 *     shifted right by 22 and clipped to 0..255.
 * Nearest is a different path in Pillow (an affine "scale" transform, libImaging/Geometry.c):
 * source column = (int)x, with x starting at s / 2 and advanced by adding s = in / out in double
 * for each output column (an accumulated sum, not i * s), rows the same way.
 * All of this is written from reading Pillow 9.4 and mtmd-image.cpp; the code is ours.
 */
#include "vision/vision.h"

#include <math.h>
#include <string.h>

lv_status lv_image_alloc(lv_image *img, int32_t w, int32_t h) {
    memset(img, 0, sizeof(*img));
    if (!lv_image_dims_ok(w, h))
        return lv_error(LV_ERR_INVALID_ARG, "image size %dx%d is out of range (1..%d per side, at most %lld pixels)", w,
                        h, LV_IMAGE_MAX_ALLOC_SIDE, (long long)LV_IMAGE_MAX_PIXELS);
    img->rgb = lv_calloc((size_t)w * (size_t)h, 3);
    if (!img->rgb) return LV_ERR_NOMEM;
    img->w = w;
    img->h = h;
    return LV_OK;
}

void lv_image_free(lv_image *img) {
    if (!img) return;
    lv_free(img->rgb);
    memset(img, 0, sizeof(*img));
}

#define LV_RS_BITS 22 /* 32 - 8 - 2: 8 bits of pixel, 2 bits of headroom for negative lobes */

static double filt_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double filt_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

static double sinc(double x) {
    if (x == 0.0) return 1.0;
    x *= LV_PI;
    return sin(x) / x;
}

static double filt_lanczos(double x) {
    if (x >= -3.0 && x < 3.0) return sinc(x) * sinc(x / 3.0);
    return 0.0;
}

/* One axis: for each output position its first source index, count and ksize fixed-point weights. */
typedef struct axis_coeffs {
    int32_t  ksize;
    int32_t *first, *count; /* [n_out] */
    int32_t *w;             /* [n_out * ksize] */
} axis_coeffs;

static void axis_free(axis_coeffs *a) {
    lv_free(a->first);
    lv_free(a->count);
    lv_free(a->w);
    memset(a, 0, sizeof(*a));
}

static lv_status axis_build(int32_t n_in, int32_t n_out, lv_resample filter, axis_coeffs *a) {
    double (*fn)(double);
    double support;
    switch (filter) {
    case LV_RESAMPLE_BILINEAR: fn = filt_bilinear; support = 1.0; break;
    case LV_RESAMPLE_BICUBIC: fn = filt_bicubic; support = 2.0; break;
    case LV_RESAMPLE_LANCZOS: fn = filt_lanczos; support = 3.0; break;
    default: return lv_error(LV_ERR_INVALID_ARG, "resize: unknown filter %d", (int)filter);
    }
    memset(a, 0, sizeof(*a));
    const double scale = (double)n_in / n_out;
    const double fscale = scale < 1.0 ? 1.0 : scale;
    support *= fscale;
    a->ksize = (int32_t)ceil(support) * 2 + 1;
    a->first = lv_mallocn((size_t)n_out, sizeof(int32_t));
    a->count = lv_mallocn((size_t)n_out, sizeof(int32_t));
    a->w = lv_calloc((size_t)n_out * (size_t)a->ksize, sizeof(int32_t));
    double *tmp = lv_mallocn((size_t)a->ksize, sizeof(double));
    if (!a->first || !a->count || !a->w || !tmp) {
        lv_free(tmp);
        axis_free(a);
        return LV_ERR_NOMEM;
    }
    const double inv = 1.0 / fscale;
    for (int32_t i = 0; i < n_out; i++) {
        const double c = (i + 0.5) * scale;
        int32_t lo = (int32_t)(c - support + 0.5);
        int32_t hi = (int32_t)(c + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > n_in) hi = n_in;
        const int32_t n = hi - lo;
        LV_ASSERT(n >= 0 && n <= a->ksize);
        double sum = 0.0;
        for (int32_t j = 0; j < n; j++) {
            tmp[j] = fn((j + lo - c + 0.5) * inv);
            sum += tmp[j];
        }
        int32_t *w = a->w + (size_t)i * a->ksize;
        for (int32_t j = 0; j < n; j++) {
            const double v = sum != 0.0 ? tmp[j] / sum : tmp[j];
            /* Pillow: (int)(v * 2^22 +- 0.5), truncation toward zero */
            w[j] = (int32_t)(v < 0 ? v * (1 << LV_RS_BITS) - 0.5 : v * (1 << LV_RS_BITS) + 0.5);
        }
        a->first[i] = lo;
        a->count[i] = n;
    }
    lv_free(tmp);
    return LV_OK;
}

static inline uint8_t clip8(int32_t acc) {
    const int32_t v = acc >> LV_RS_BITS; /* arithmetic shift (gcc, clang): floor */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* src (in_w x h) -> dst (out_w x h) */
static void pass_h(const uint8_t *src, int32_t in_w, int32_t h, const axis_coeffs *a, int32_t out_w, uint8_t *dst) {
    for (int32_t y = 0; y < h; y++) {
        const uint8_t *row = src + (size_t)y * in_w * 3;
        uint8_t *out = dst + (size_t)y * out_w * 3;
        for (int32_t x = 0; x < out_w; x++) {
            const int32_t *w = a->w + (size_t)x * a->ksize;
            const uint8_t *p = row + (size_t)a->first[x] * 3;
            int32_t s0 = 1 << (LV_RS_BITS - 1), s1 = s0, s2 = s0;
            for (int32_t j = 0; j < a->count[x]; j++, p += 3) {
                s0 += p[0] * w[j];
                s1 += p[1] * w[j];
                s2 += p[2] * w[j];
            }
            out[3 * x + 0] = clip8(s0);
            out[3 * x + 1] = clip8(s1);
            out[3 * x + 2] = clip8(s2);
        }
    }
}

/* src (w x in_h) -> dst (w x out_h); acc is scratch of 3w int32 */
static void pass_v(const uint8_t *src, int32_t w, const axis_coeffs *a, int32_t out_h, uint8_t *dst, int32_t *acc) {
    const size_t n = (size_t)w * 3;
    for (int32_t y = 0; y < out_h; y++) {
        const int32_t *k = a->w + (size_t)y * a->ksize;
        for (size_t i = 0; i < n; i++) acc[i] = 1 << (LV_RS_BITS - 1);
        for (int32_t j = 0; j < a->count[y]; j++) {
            const uint8_t *row = src + (size_t)(a->first[y] + j) * n;
            const int32_t kj = k[j];
            for (size_t i = 0; i < n; i++) acc[i] += row[i] * kj;
        }
        uint8_t *out = dst + (size_t)y * n;
        for (size_t i = 0; i < n; i++) out[i] = clip8(acc[i]);
    }
}

static lv_status resize_nearest(const lv_image *src, lv_image *dst) {
    const int32_t w = dst->w, h = dst->h;
    int32_t *xin = lv_mallocn((size_t)w, sizeof(int32_t));
    if (!xin) return LV_ERR_NOMEM;
    const double ax = (double)src->w / w, ay = (double)src->h / h;
    double xo = ax * 0.5;
    for (int32_t x = 0; x < w; x++) {
        int32_t v = xo < 0.0 ? 0 : (int32_t)xo;
        xin[x] = v < src->w ? v : src->w - 1;
        xo += ax;
    }
    double yo = ay * 0.5;
    for (int32_t y = 0; y < h; y++) {
        int32_t yi = yo < 0.0 ? 0 : (int32_t)yo;
        if (yi >= src->h) yi = src->h - 1;
        const uint8_t *in = src->rgb + (size_t)yi * src->w * 3;
        uint8_t *out = dst->rgb + (size_t)y * w * 3;
        for (int32_t x = 0; x < w; x++) memcpy(out + 3 * x, in + 3 * (size_t)xin[x], 3);
        yo += ay;
    }
    lv_free(xin);
    return LV_OK;
}

lv_status lv_image_resize(const lv_image *src, int32_t w, int32_t h, lv_resample filter, lv_image *dst) {
    memset(dst, 0, sizeof(*dst));
    if (!src || !src->rgb || src->w <= 0 || src->h <= 0)
        return lv_error(LV_ERR_INVALID_ARG, "resize: empty source image");
    if (filter != LV_RESAMPLE_NEAREST && filter != LV_RESAMPLE_BILINEAR && filter != LV_RESAMPLE_BICUBIC &&
        filter != LV_RESAMPLE_LANCZOS)
        return lv_error(LV_ERR_INVALID_ARG, "resize: unknown filter %d", (int)filter);
    lv_status st = lv_image_alloc(dst, w, h); /* checks w, h against the limits */
    if (st != LV_OK) return st;
    if (w == src->w && h == src->h) {
        memcpy(dst->rgb, src->rgb, (size_t)w * h * 3);
        return LV_OK;
    }
    if (filter == LV_RESAMPLE_NEAREST) {
        if ((st = resize_nearest(src, dst)) != LV_OK) lv_image_free(dst);
        return st;
    }
    const bool need_h = w != src->w, need_v = h != src->h;
    axis_coeffs ah = {0}, av = {0};
    uint8_t *tmp = NULL;
    int32_t *acc = NULL;
    if (need_h && (st = axis_build(src->w, w, filter, &ah)) != LV_OK) goto fail;
    if (need_v && (st = axis_build(src->h, h, filter, &av)) != LV_OK) goto fail;
    if (need_v) {
        acc = lv_mallocn((size_t)w * 3, sizeof(int32_t));
        if (!acc) {
            st = LV_ERR_NOMEM;
            goto fail;
        }
    }
    if (need_h && need_v) {
        tmp = lv_mallocn((size_t)w * src->h, 3);
        if (!tmp) {
            st = LV_ERR_NOMEM;
            goto fail;
        }
        pass_h(src->rgb, src->w, src->h, &ah, w, tmp);
        pass_v(tmp, w, &av, h, dst->rgb, acc);
    } else if (need_h) {
        pass_h(src->rgb, src->w, src->h, &ah, w, dst->rgb);
    } else {
        pass_v(src->rgb, w, &av, h, dst->rgb, acc);
    }
    lv_free(tmp);
    lv_free(acc);
    axis_free(&ah);
    axis_free(&av);
    return LV_OK;
fail:
    lv_free(tmp);
    lv_free(acc);
    axis_free(&ah);
    axis_free(&av);
    lv_image_free(dst);
    return st;
}
