/*
 * image.c: images in, tower inputs out (docs/vision.md, "Images and preprocessing").
 *
 *   - lv_image_load / lv_image_load_memory: one still image (PNG, JPEG, PPM/PGM/PAM, BMP, GIF,
 *     TIFF, WebP, QOI, ... or the first frame of a video) decoded with libavformat + libavcodec
 *     from memory, converted to packed RGB24 by swscale without scaling (palette and grey
 *     expanded, alpha dropped as Pillow's convert("RGB") drops it, YUV with the frame's matrix
 *     and range to full-range RGB);
 *   - lv_image_preprocess: what llama.cpp v0.4.0's mtmd (tools/mtmd/mtmd-image.cpp, with the
 *     settings clip.cpp gives each projector type) makes of one image, up to the u8 -> float
 *     normalisation, which the tower does.
 * The arithmetic of the preprocessing is mtmd's, float for float: sizes are computed in the same
 * float / double types and rounding functions, since a different rounding moves a size by one.
 */
#define _GNU_SOURCE /* fseeko, ftello */
#include "vision/vision.h"

#include "video/video.h"

#include <errno.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* -------------------------------------------------------------------------------------------
 * images
 * ----------------------------------------------------------------------------------------- */

/* a decoded (input) image */
static bool size_ok(int64_t w, int64_t h) {
    return w > 0 && h > 0 && w <= LV_IMAGE_MAX_SIDE && h <= LV_IMAGE_MAX_SIDE && w * h <= LV_IMAGE_MAX_PIXELS;
}

/* -------------------------------------------------------------------------------------------
 * decoding
 * ----------------------------------------------------------------------------------------- */

/* Demuxers we open: the image "pipe" demuxers (one image from a byte stream; never image2, which
 * opens other files by pattern) and the video containers of src/video (their first frame). */
#define LV_IMAGE_FORMATS                                                                            \
    "png_pipe,jpeg_pipe,jpegls_pipe,bmp_pipe,ppm_pipe,pgm_pipe,pbm_pipe,pam_pipe,pgmyuv_pipe,"      \
    "tiff_pipe,webp_pipe,qoi_pipe,sgi_pipe,pcx_pipe,sunrast_pipe,xwd_pipe,dds_pipe,j2k_pipe,"       \
    "gif,gif_pipe,"                                                                                 \
    "mov,mp4,matroska,webm,avi,mpegts,flv,h264,hevc,ivf,mpeg,mpegvideo,m4v,asf,ogg,mxf,nut,obu,"     \
    "yuv4mpegpipe"

#define LV_IMAGE_MAX_FILE ((int64_t)1 << 30) /* 1 GiB: far beyond any image of LV_IMAGE_MAX_PIXELS */

/* Everything one decode holds, freed by dec_free whatever the state. */
typedef struct img_dec {
    lv_mem_io          mem;
    AVIOContext       *pb;
    AVFormatContext   *fmt;
    AVCodecContext    *ctx;
    AVPacket          *pkt;
    AVFrame           *frame;
    struct SwsContext *sws;
} img_dec;

static void dec_free(img_dec *d) {
    sws_freeContext(d->sws);
    av_frame_free(&d->frame);
    av_packet_free(&d->pkt);
    avcodec_free_context(&d->ctx);
    avformat_close_input(&d->fmt);
    if (d->pb) {
        av_freep(&d->pb->buffer);
        avio_context_free(&d->pb);
    }
}

static const char *av_err(int err, char buf[64]) {
    av_strerror(err, buf, 64);
    return buf;
}

/* Receive the first frame: 1 got one, 0 none yet (send more), < 0 a decoding error. */
static int dec_receive(img_dec *d) {
    int ret = avcodec_receive_frame(d->ctx, d->frame);
    if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return 0;
    return ret < 0 ? ret : 1;
}

/* JPEG's YCbCr -> RGB as libjpeg (Pillow's decoder) does it, rather than swscale's: "fancy"
 * upsampling of 4:2:0 / 4:2:2 chroma (the triangle filter 3/4, 1/4 with libjpeg's alternating
 * rounding biases, edges replicated) and the JFIF matrix in 16-bit fixed point with libjpeg's
 * rounding (jdcolor.c, jdsample.c, read for their arithmetic). With FFmpeg's IDCT this leaves
 * differences of a few levels from Pillow, where swscale's chroma interpolation gave tens. */
#define JFIX(x) ((int32_t)((x) * 65536.0 + 0.5))

/* One output row of chroma at full width: rows a (nearest) and b (the other neighbour) of the
 * subsampled plane, vertical 3:1 when v2 (else a alone, times 4), then horizontal x2 when h2. */
static void jpeg_up_row(const uint8_t *a, const uint8_t *b, int cw, int w, bool h2, bool v2, uint8_t *out) {
    if (!h2) { /* 4:4:4 (jpeg_layout never gives v2 without h2) */
        memcpy(out, a, (size_t)w);
        return;
    }
    /* column sums scaled to 4 (v2: 3a + b; else 4a, so that one formula serves both) */
#define CS(i) (v2 ? a[i] * 3 + b[i] : a[i] * 4)
    if (v2) {
        if (cw == 1) {
            out[0] = (uint8_t)((CS(0) * 4 + 8) >> 4);
            if (w > 1) out[1] = (uint8_t)((CS(0) * 4 + 7) >> 4);
            return;
        }
        for (int c = 0; c < cw; c++) {
            const int t = CS(c), l = c > 0 ? CS(c - 1) : -1, n = c < cw - 1 ? CS(c + 1) : -1;
            const int e = l < 0 ? (t * 4 + 8) >> 4 : (t * 3 + l + 8) >> 4;
            const int o = n < 0 ? (t * 4 + 7) >> 4 : (t * 3 + n + 7) >> 4;
            if (2 * c < w) out[2 * c] = (uint8_t)e;
            if (2 * c + 1 < w) out[2 * c + 1] = (uint8_t)o;
        }
    } else { /* h2v1: (3t + l + 1) >> 2 and (3t + n + 2) >> 2, edges copied */
        if (cw == 1) {
            out[0] = a[0];
            if (w > 1) out[1] = a[0];
            return;
        }
        for (int c = 0; c < cw; c++) {
            const int t = a[c];
            const int e = c == 0 ? t : (t * 3 + a[c - 1] + 1) >> 2;
            const int o = c == cw - 1 ? t : (t * 3 + a[c + 1] + 2) >> 2;
            if (2 * c < w) out[2 * c] = (uint8_t)e;
            if (2 * c + 1 < w) out[2 * c + 1] = (uint8_t)o;
        }
    }
#undef CS
}

/* 1 if f is JPEG-style YCbCr (full range, BT.601 or unspecified) that jpeg_to_rgb handles */
static int jpeg_layout(const AVFrame *f, bool *h2, bool *v2) {
    const bool full = f->color_range == AVCOL_RANGE_JPEG || f->format == AV_PIX_FMT_YUVJ420P ||
                      f->format == AV_PIX_FMT_YUVJ422P || f->format == AV_PIX_FMT_YUVJ444P;
    const bool bt601 = f->colorspace == AVCOL_SPC_UNSPECIFIED || f->colorspace == AVCOL_SPC_BT470BG ||
                       f->colorspace == AVCOL_SPC_SMPTE170M;
    if (!full || !bt601) return 0;
    switch (f->format) {
    case AV_PIX_FMT_YUVJ420P: case AV_PIX_FMT_YUV420P: *h2 = true, *v2 = true; return 1;
    case AV_PIX_FMT_YUVJ422P: case AV_PIX_FMT_YUV422P: *h2 = true, *v2 = false; return 1;
    case AV_PIX_FMT_YUVJ444P: case AV_PIX_FMT_YUV444P: *h2 = false, *v2 = false; return 1;
    default: return 0;
    }
}

static lv_status jpeg_to_rgb(const AVFrame *f, bool h2, bool v2, lv_image *out) {
    const int w = f->width, h = f->height, cw = h2 ? (w + 1) / 2 : w, chh = v2 ? (h + 1) / 2 : h;
    uint8_t *cb = lv_malloc((size_t)w * 2);
    if (!cb) return LV_ERR_NOMEM;
    uint8_t *cr = cb + w;
    for (int y = 0; y < h; y++) {
        const int cy = v2 ? y / 2 : y;
        const int ny = !v2 ? cy : (y % 2 == 0 ? (cy > 0 ? cy - 1 : 0) : (cy + 1 < chh ? cy + 1 : chh - 1));
        const uint8_t *b0 = f->data[1] + (size_t)cy * f->linesize[1], *b1 = f->data[1] + (size_t)ny * f->linesize[1];
        const uint8_t *r0 = f->data[2] + (size_t)cy * f->linesize[2], *r1 = f->data[2] + (size_t)ny * f->linesize[2];
        jpeg_up_row(b0, b1, cw, w, h2, v2, cb);
        jpeg_up_row(r0, r1, cw, w, h2, v2, cr);
        const uint8_t *yr = f->data[0] + (size_t)y * f->linesize[0];
        uint8_t *o = out->rgb + (size_t)y * w * 3;
        for (int x = 0; x < w; x++) {
            const int Y = yr[x], u = cb[x] - 128, v = cr[x] - 128;
            const int r = Y + ((JFIX(1.40200) * v + (1 << 15)) >> 16);
            const int g = Y + ((-JFIX(0.34414) * u + (1 << 15) - JFIX(0.71414) * v) >> 16);
            const int b = Y + ((JFIX(1.77200) * u + (1 << 15)) >> 16);
            o[3 * x + 0] = (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
            o[3 * x + 1] = (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g);
            o[3 * x + 2] = (uint8_t)(b < 0 ? 0 : b > 255 ? 255 : b);
        }
    }
    lv_free(cb);
    return LV_OK;
}

static lv_status frame_to_rgb(img_dec *d, const char *name, lv_image *out) {
    AVFrame *f = d->frame;
    if (!size_ok(f->width, f->height))
        return lv_error(LV_ERR_FORMAT, "%s: absurd image size %dx%d (at most %d per side and %lld pixels)", name,
                        f->width, f->height, LV_IMAGE_MAX_SIDE, (long long)LV_IMAGE_MAX_PIXELS);
    lv_status st = lv_image_alloc(out, f->width, f->height);
    if (st != LV_OK) return st;
    const int w = f->width, h = f->height;
    if (f->format == AV_PIX_FMT_RGB24) {
        av_image_copy_plane(out->rgb, w * 3, f->data[0], f->linesize[0], w * 3, h);
        return LV_OK;
    }
    bool h2, v2;
    if (d->ctx->codec_id == AV_CODEC_ID_MJPEG && jpeg_layout(f, &h2, &v2)) {
        if ((st = jpeg_to_rgb(f, h2, v2, out)) != LV_OK) lv_image_free(out);
        return st;
    }
    const enum AVPixelFormat fmt = (enum AVPixelFormat)f->format;
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(fmt);
    /* no scaling: the filter only matters for chroma upsampling; accurate rounding and full
     * chroma interpolation keep the conversion as exact as swscale makes it */
    d->sws = sws_getContext(w, h, fmt, w, h, AV_PIX_FMT_RGB24,
                            SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT | SWS_FULL_CHR_H_INP | SWS_BITEXACT,
                            NULL, NULL, NULL);
    if (!d->sws) {
        lv_image_free(out);
        return lv_error(LV_ERR_UNSUPPORTED, "%s: cannot convert %s pixels to RGB", name, desc ? desc->name : "?");
    }
    if (desc && !(desc->flags & AV_PIX_FMT_FLAG_RGB) && !(desc->flags & AV_PIX_FMT_FLAG_PAL) && desc->nb_components >= 3) {
        /* YUV: the frame's matrix (BT.601 when unspecified, as JPEG), its range (JPEG decoders
         * say full), RGB out at full range */
        int *inv_table, *table, in_full, out_full, brightness, contrast, saturation;
        sws_getColorspaceDetails(d->sws, &inv_table, &in_full, &table, &out_full, &brightness, &contrast, &saturation);
        int space = f->colorspace;
        if (space < 1 || space > 10 || space == 8) space = AVCOL_SPC_BT470BG;
        const int *coeffs = sws_getCoefficients(space);
        if (f->color_range != AVCOL_RANGE_UNSPECIFIED) in_full = f->color_range == AVCOL_RANGE_JPEG;
        sws_setColorspaceDetails(d->sws, coeffs, in_full, table, 1, brightness, contrast, saturation);
    }
    uint8_t *dst[4] = {out->rgb, NULL, NULL, NULL};
    int dst_ls[4] = {w * 3, 0, 0, 0};
    const int r = sws_scale(d->sws, (const uint8_t *const *)f->data, f->linesize, 0, h, dst, dst_ls);
    if (r != h) {
        lv_image_free(out);
        return lv_error(LV_ERR_INTERNAL, "%s: swscale converted %d of %d rows", name, r, h);
    }
    return LV_OK;
}

/* The size a PNG, BMP, GIF or binary PNM header claims (0 if not one of those), so that an absurd
 * size is named as such before libav refuses it in its own words. */
static void header_size(const uint8_t *p, int64_t n, int64_t *w, int64_t *h) {
    *w = *h = 0;
    if (n >= 24 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8) && !memcmp(p + 12, "IHDR", 4)) {
        *w = (int64_t)p[16] << 24 | p[17] << 16 | p[18] << 8 | p[19];
        *h = (int64_t)p[20] << 24 | p[21] << 16 | p[22] << 8 | p[23];
    } else if (n >= 26 && p[0] == 'B' && p[1] == 'M' && p[14] == 12 && !p[15] && !p[16] && !p[17]) {
        *w = p[18] | p[19] << 8; /* OS/2 1.x core header: 16-bit sizes */
        *h = p[20] | p[21] << 8;
    } else if (n >= 26 && p[0] == 'B' && p[1] == 'M' && p[14] >= 40) {
        const int32_t bw = (int32_t)((uint32_t)p[18] | (uint32_t)p[19] << 8 | (uint32_t)p[20] << 16 | (uint32_t)p[21] << 24);
        const int32_t bh = (int32_t)((uint32_t)p[22] | (uint32_t)p[23] << 8 | (uint32_t)p[24] << 16 | (uint32_t)p[25] << 24);
        *w = bw < 0 ? -(int64_t)bw : bw;
        *h = bh < 0 ? -(int64_t)bh : bh; /* negative: top-down rows */
    } else if (n >= 10 && !memcmp(p, "GIF8", 4)) {
        *w = p[6] | p[7] << 8;
        *h = p[8] | p[9] << 8;
    } else if (n >= 3 && p[0] == 'P' && p[1] >= '4' && p[1] <= '6') {
        char buf[64];
        const int64_t k = n < 63 ? n : 63;
        memcpy(buf, p, (size_t)k);
        buf[k] = 0;
        long long a = 0, b = 0;
        if (sscanf(buf + 2, "%lld %lld", &a, &b) == 2 && a > 0 && b > 0) *w = a, *h = b;
    }
}

static lv_status decode(img_dec *d, const uint8_t *data, int64_t size, const char *name, int64_t max_pixels,
                        lv_image *out) {
    char eb[64];
    int64_t hw, hh;
    header_size(data, size, &hw, &hh);
    if ((hw || hh) && (!size_ok(hw, hh) || hw * hh > max_pixels))
        return lv_error(LV_ERR_FORMAT, "%s: absurd image size %lldx%lld (at most %d per side and %lld pixels)", name,
                        (long long)hw, (long long)hh, LV_IMAGE_MAX_SIDE, (long long)LV_IMAGE_MAX_PIXELS);
    d->mem.data = data;
    d->mem.size = size;
    d->fmt = avformat_alloc_context();
    uint8_t *buf = av_malloc(1 << 15);
    if (!d->fmt || !buf) {
        av_free(buf);
        return lv_error(LV_ERR_NOMEM, "%s: out of memory", name);
    }
    d->pb = avio_alloc_context(buf, 1 << 15, 0, &d->mem, lv_mem_io_read, NULL, lv_mem_io_seek);
    if (!d->pb) {
        av_free(buf);
        return lv_error(LV_ERR_NOMEM, "%s: out of memory", name);
    }
    d->fmt->pb = d->pb;
    d->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "format_whitelist", LV_IMAGE_FORMATS, 0);
    av_dict_set(&opts, "protocol_whitelist", "", 0);
    int ret = avformat_open_input(&d->fmt, "", NULL, &opts); /* frees fmt (not pb) on failure */
    av_dict_free(&opts);
    if (ret < 0) return lv_error(LV_ERR_FORMAT, "%s is not an image longview can read: %s", name, av_err(ret, eb));

    const AVCodec *codec = NULL;
    const int si = av_find_best_stream(d->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (si == AVERROR_DECODER_NOT_FOUND)
        return lv_error(LV_ERR_UNSUPPORTED, "%s: no decoder for its image format", name);
    if (si < 0 || !codec) return lv_error(LV_ERR_FORMAT, "%s is not an image longview can read: no picture in it", name);
    const AVCodecParameters *par = d->fmt->streams[si]->codecpar;
    if ((par->width || par->height) && (!size_ok(par->width, par->height) || (int64_t)par->width * par->height > max_pixels))
        return lv_error(LV_ERR_FORMAT, "%s: absurd image size %dx%d (at most %d per side and %lld pixels)", name,
                        par->width, par->height, LV_IMAGE_MAX_SIDE, (long long)LV_IMAGE_MAX_PIXELS);
    for (unsigned i = 0; i < d->fmt->nb_streams; i++)
        if ((int)i != si) d->fmt->streams[i]->discard = AVDISCARD_ALL;

    d->ctx = avcodec_alloc_context3(codec);
    d->pkt = av_packet_alloc();
    d->frame = av_frame_alloc();
    if (!d->ctx || !d->pkt || !d->frame) return lv_error(LV_ERR_NOMEM, "%s: out of memory", name);
    if ((ret = avcodec_parameters_to_context(d->ctx, par)) < 0)
        return lv_error(LV_ERR_FORMAT, "%s: bad codec parameters: %s", name, av_err(ret, eb));
    d->ctx->thread_count = 1;
    d->ctx->max_pixels = max_pixels;
    /* damage is an error, not a concealed picture (Pillow refuses a truncated file too): for PNG
     * and JPEG, whose decoders otherwise return what they have; not for all (the TIFF decoder
     * explodes on a harmless unknown tag) */
    if (codec->id == AV_CODEC_ID_PNG || codec->id == AV_CODEC_ID_MJPEG || codec->id == AV_CODEC_ID_APNG)
        d->ctx->err_recognition |= AV_EF_CRCCHECK | AV_EF_BITSTREAM | AV_EF_BUFFER | AV_EF_EXPLODE;
    if ((ret = avcodec_open2(d->ctx, codec, NULL)) < 0)
        return lv_error(LV_ERR_UNSUPPORTED, "%s: cannot open the %s decoder: %s", name, codec->name, av_err(ret, eb));

    int got = 0, derr = 0;
    while (!got && !derr) {
        ret = av_read_frame(d->fmt, d->pkt);
        if (ret < 0) break; /* end of the data (or unreadable): drain below */
        if (d->pkt->stream_index == si) {
            ret = avcodec_send_packet(d->ctx, d->pkt);
            if (ret < 0 && ret != AVERROR(EAGAIN)) derr = ret;
            else if ((ret = dec_receive(d)) < 0) derr = ret;
            else got = ret;
        }
        av_packet_unref(d->pkt);
    }
    if (!got && !derr) {
        ret = avcodec_send_packet(d->ctx, NULL);
        if (ret < 0 && ret != AVERROR_EOF) derr = ret;
        else if ((ret = dec_receive(d)) < 0) derr = ret;
        else got = ret;
    }
    if (derr == AVERROR(ENOMEM)) return lv_error(LV_ERR_NOMEM, "%s: out of memory while decoding", name);
    if (derr) return lv_error(LV_ERR_FORMAT, "%s: corrupt or truncated %s data: %s", name, codec->name, av_err(derr, eb));
    if (!got) return lv_error(LV_ERR_FORMAT, "%s: corrupt or truncated %s data: no picture decoded", name, codec->name);
    if ((d->frame->flags & AV_FRAME_FLAG_CORRUPT) || d->frame->decode_error_flags)
        return lv_error(LV_ERR_FORMAT, "%s: corrupt or truncated %s data", name, codec->name);
    if ((int64_t)d->frame->width * d->frame->height > max_pixels)
        return lv_error(LV_ERR_FORMAT, "%s: image size %dx%d is over the limit of %lld pixels", name, d->frame->width,
                        d->frame->height, (long long)max_pixels);
    return frame_to_rgb(d, name, out);
}

lv_status lv_image_load_memory(const uint8_t *data, int64_t size, const char *name, lv_image *out) {
    return lv_image_load_memory_capped(data, size, name, LV_IMAGE_MAX_PIXELS, out);
}

lv_status lv_image_load_memory_capped(const uint8_t *data, int64_t size, const char *name, int64_t max_pixels,
                                      lv_image *out) {
    memset(out, 0, sizeof(*out));
    if (!name) name = "<memory>";
    if (max_pixels <= 0 || max_pixels > LV_IMAGE_MAX_PIXELS) max_pixels = LV_IMAGE_MAX_PIXELS;
    if (!data || size <= 0) return lv_error(LV_ERR_FORMAT, "%s is not an image longview can read: it is empty", name);
    img_dec d;
    memset(&d, 0, sizeof(d));
    lv_status st = decode(&d, data, size, name, max_pixels, out);
    dec_free(&d);
    if (st != LV_OK) lv_image_free(out);
    return st;
}

lv_status lv_image_load(const char *path, lv_image *out) {
    memset(out, 0, sizeof(*out));
    FILE *fp = fopen(path, "rb");
    if (!fp) return lv_error(LV_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    uint8_t *data = NULL;
    int64_t size = 0;
    lv_status st = LV_OK;
    if (fseeko(fp, 0, SEEK_END) != 0 || (size = ftello(fp)) < 0 || fseeko(fp, 0, SEEK_SET) != 0) {
        st = lv_error(LV_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    } else if (size == 0) {
        st = lv_error(LV_ERR_FORMAT, "%s is not an image longview can read: the file is empty", path);
    } else if (size > LV_IMAGE_MAX_FILE) {
        st = lv_error(LV_ERR_FORMAT, "%s: %lld bytes is too big for an image (at most %lld)", path, (long long)size,
                      (long long)LV_IMAGE_MAX_FILE);
    } else if (!(data = lv_malloc((size_t)size))) {
        st = LV_ERR_NOMEM;
    } else if (fread(data, 1, (size_t)size, fp) != (size_t)size) {
        st = lv_error(LV_ERR_IO, "cannot read %s: %s", path, ferror(fp) ? strerror(errno) : "short read");
    }
    fclose(fp);
    if (st == LV_OK) st = lv_image_load_memory(data, size, path, out);
    lv_free(data);
    return st;
}

/* -------------------------------------------------------------------------------------------
 * mtmd's image tools (img_tool in mtmd-image.cpp)
 * ----------------------------------------------------------------------------------------- */

/* img_tool::resize with PAD_CEIL: the sw x sh image fitted inside w x h with its aspect ratio
 * kept (a float scale, each side ceil'ed and capped), centred with the left / top offset rounded
 * down. Equal sizes are not resized at all. */
static void fit_ceil(int32_t sw, int32_t sh, int32_t w, int32_t h, lv_image_plan *pl) {
    if (sw == w && sh == h) {
        pl->fit_w = w, pl->fit_h = h, pl->fit_x = 0, pl->fit_y = 0;
        return;
    }
    const float sx = (float)w / (float)sw, sy = (float)h / (float)sh;
    const float s = sx < sy ? sx : sy;
    pl->fit_w = LV_MIN((int32_t)ceilf((float)sw * s), w);
    pl->fit_h = LV_MIN((int32_t)ceilf((float)sh * s), h);
    pl->fit_x = (w - pl->fit_w) / 2;
    pl->fit_y = (h - pl->fit_h) / 2;
}

/* src resized into the plan's fit rectangle of a w x h canvas filled with color. */
static lv_status resize_fit(const lv_image *src, const lv_image_plan *pl, int32_t w, int32_t h, lv_resample filter,
                            const uint8_t color[3], lv_image *dst) {
    if (pl->fit_w == w && pl->fit_h == h) return lv_image_resize(src, w, h, filter, dst);
    lv_image fit;
    lv_status st = lv_image_resize(src, pl->fit_w, pl->fit_h, filter, &fit);
    if (st != LV_OK) return st;
    if ((st = lv_image_alloc(dst, w, h)) != LV_OK) {
        lv_image_free(&fit);
        return st;
    }
    for (int64_t i = 0; i < (int64_t)w * h; i++) memcpy(dst->rgb + 3 * i, color, 3);
    for (int32_t y = 0; y < pl->fit_h; y++)
        memcpy(dst->rgb + ((size_t)(y + pl->fit_y) * w + pl->fit_x) * 3, fit.rgb + (size_t)y * pl->fit_w * 3,
               (size_t)pl->fit_w * 3);
    lv_image_free(&fit);
    return LV_OK;
}

static lv_status crop(const lv_image *src, int32_t x, int32_t y, int32_t w, int32_t h, lv_image *dst) {
    LV_ASSERT(x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= src->w && y + h <= src->h);
    lv_status st = lv_image_alloc(dst, w, h);
    if (st != LV_OK) return st;
    for (int32_t r = 0; r < h; r++)
        memcpy(dst->rgb + (size_t)r * w * 3, src->rgb + ((size_t)(y + r) * src->w + x) * 3, (size_t)w * 3);
    return LV_OK;
}

/* img_tool::calc_size_preserved_ratio ("smart resize"), in mtmd's float arithmetic. Limits <= 0
 * are off. Returns false if a side would not be a positive int. */
static bool smart_size(int32_t width, int32_t height, int32_t align, int64_t min_px, int64_t max_px,
                       int32_t longest_edge, int32_t *ow, int32_t *oh) {
    const float f = (float)align;
    int64_t wb, hb;
    if (longest_edge > 0) {
        const float s = LV_MIN((float)longest_edge / (float)width, (float)longest_edge / (float)height);
        wb = (int64_t)ceilf((float)width * s / f) * align;
        hb = (int64_t)ceilf((float)height * s / f) * align;
    } else {
        wb = LV_MAX((int64_t)align, (int64_t)roundf((float)width / f) * align);
        hb = LV_MAX((int64_t)align, (int64_t)roundf((float)height / f) * align);
    }
    if (max_px > 0 && hb * wb > max_px) {
        const float beta = sqrtf((float)height * (float)width / (float)max_px);
        hb = LV_MAX((int64_t)align, (int64_t)floorf((float)height / beta / f) * align);
        wb = LV_MAX((int64_t)align, (int64_t)floorf((float)width / beta / f) * align);
    } else if (min_px > 0 && hb * wb < min_px) {
        const float beta = sqrtf((float)min_px / ((float)height * (float)width));
        hb = (int64_t)ceilf((float)height * beta / f) * align;
        wb = (int64_t)ceilf((float)width * beta / f) * align;
    }
    if (wb <= 0 || hb <= 0 || wb > INT32_MAX || hb > INT32_MAX) return false;
    *ow = (int32_t)wb;
    *oh = (int32_t)hb;
    return true;
}

/* -------------------------------------------------------------------------------------------
 * preprocessing per projector type
 * ----------------------------------------------------------------------------------------- */

/* The token limits as clip.cpp's set_limit_image_tokens makes them: min / max pixels (-1 = off). */
static lv_status token_limits(const lv_vision_prep *p, int32_t def_min, int32_t def_max, int64_t *min_px, int64_t *max_px) {
    const int64_t area = (int64_t)p->patch_size * p->patch_size * p->merge * p->merge;
    const int32_t mn = p->min_tokens > 0 ? p->min_tokens : def_min;
    const int32_t mx = p->max_tokens > 0 ? p->max_tokens : def_max;
    *min_px = mn > 0 ? mn * area : -1;
    *max_px = mx > 0 ? mx * area : -1;
    if (*min_px > INT32_MAX || *max_px > INT32_MAX)
        return lv_error(LV_ERR_INVALID_ARG, "image token limits %d..%d are too large", mn, mx);
    if (*max_px < *min_px) /* clip.cpp refuses the file with these settings */
        return lv_error(LV_ERR_INVALID_ARG, "image token limits: max (%d) is below min (%d)", mx, mn);
    return LV_OK;
}

static lv_status check_prep(const lv_vision_prep *p, lv_vision_prep *q) {
    *q = *p;
    if (p->image_size <= 0 || p->image_size > 8192 || p->patch_size <= 0 || p->patch_size >= 65536)
        return lv_error(LV_ERR_INVALID_ARG, "preprocess: image_size %d / patch_size %d out of range", p->image_size,
                        p->patch_size);
    if (p->merge < 0 || p->merge >= 65536 || p->preproc_image_size < 0 || p->preproc_image_size > LV_IMAGE_MAX_SIDE ||
        p->min_tokens < 0 || p->max_tokens < 0)
        return lv_error(LV_ERR_INVALID_ARG, "preprocess: merge %d / preproc_image_size %d / token limits %d..%d out of range",
                        p->merge, p->preproc_image_size, p->min_tokens, p->max_tokens);
    switch (p->type) {
    case LV_PROJ_IDEFICS3:
        if (q->merge == 0) q->merge = 1;
        return LV_OK;
    case LV_PROJ_QWEN2VL:
    case LV_PROJ_QWEN25VL:
        if (q->merge == 0) q->merge = 2;
        return LV_OK;
    case LV_PROJ_MLP: return LV_OK;
    default: return lv_error(LV_ERR_UNSUPPORTED, "preprocess: projector type %d has no image preprocessing", (int)p->type);
    }
}

lv_status lv_image_plan_for(const lv_vision_prep *prep, int32_t w, int32_t h, lv_image_plan *pl) {
    memset(pl, 0, sizeof(*pl));
    if (!lv_image_dims_ok(w, h)) return lv_error(LV_ERR_INVALID_ARG, "preprocess: image size %dx%d out of range", w, h);
    lv_vision_prep q;
    lv_status st = check_prep(prep, &q);
    if (st != LV_OK) return st;
    const lv_vision_prep *p = &q;
    int64_t min_px, max_px;
    int32_t rw, rh;
    switch (p->type) {
    case LV_PROJ_IDEFICS3: {
        const int32_t T = p->image_size;
        if ((st = token_limits(p, 0, 0, &min_px, &max_px)) != LV_OK) return st;
        if (p->preproc_image_size > 0 && min_px <= 0 && max_px <= 0) {
            /* long side to E, the other truncated then made even; stretched to whole tiles */
            const int32_t E = p->preproc_image_size;
            const double ar = (double)w / h;
            if (w >= h) {
                rw = E;
                rh = (int32_t)(E / ar);
                rh += rh % 2;
            } else {
                rh = E;
                const double v = E * ar;
                rw = v < (double)LV_IMAGE_MAX_SIDE * 2 ? (int32_t)v : LV_IMAGE_MAX_SIDE * 2;
                rw += rw % 2;
            }
            if (rw <= 0 || rh <= 0)
                return lv_error(LV_ERR_INVALID_ARG, "a %dx%d image is too elongated for idefics3 tiles at %d", w, h, E);
            pl->lanczos = true;
            pl->resized_w = rw;
            pl->resized_h = rh;
            pl->n_cols = (rw + T - 1) / T;
            pl->n_rows = (rh + T - 1) / T;
            pl->refined_w = pl->fit_w = pl->n_cols * T;
            pl->refined_h = pl->fit_h = pl->n_rows * T;
        } else {
            /* generic slicing: smart resize to multiples of T, fitted with black padding */
            if (!smart_size(w, h, T, LV_MAX(min_px, 0), LV_MAX(max_px, 0), p->preproc_image_size, &rw, &rh))
                return lv_error(LV_ERR_INVALID_ARG, "idefics3: no tile grid for a %dx%d image", w, h);
            pl->refined_w = rw;
            pl->refined_h = rh;
            pl->n_cols = (int32_t)ceilf((float)rw / (float)T);
            pl->n_rows = (int32_t)ceilf((float)rh / (float)T);
            fit_ceil(w, h, rw, rh, pl);
        }
        if ((int64_t)pl->n_cols * pl->n_rows > 4096 || !lv_image_dims_ok(pl->refined_w, pl->refined_h))
            return lv_error(LV_ERR_INVALID_ARG, "idefics3: a %dx%d grid of %d-pixel tiles is too big", pl->n_cols,
                            pl->n_rows, T);
        pl->w = pl->h = T;
        pl->has_overview = true;
        break;
    }
    case LV_PROJ_QWEN2VL:
    case LV_PROJ_QWEN25VL:
        if ((st = token_limits(p, 8, 4096, &min_px, &max_px)) != LV_OK) return st;
        if (!smart_size(w, h, p->patch_size * p->merge, min_px, max_px, 0, &rw, &rh) || !lv_image_dims_ok(rw, rh))
            return lv_error(LV_ERR_INVALID_ARG, "qwen: no target size for a %dx%d image", w, h);
        pl->w = pl->refined_w = rw;
        pl->h = pl->refined_h = rh;
        fit_ceil(w, h, rw, rh, pl);
        break;
    default: /* mlp */
        pl->w = pl->refined_w = p->image_size;
        pl->h = pl->refined_h = p->image_size;
        fit_ceil(w, h, p->image_size, p->image_size, pl);
        break;
    }
    return LV_OK;
}

void lv_image_tiles_free(lv_image_tiles *t) {
    if (!t) return;
    for (int32_t i = 0; i < t->n; i++) lv_image_free(&t->img[i]);
    lv_free(t->img);
    memset(t, 0, sizeof(*t));
}

static const uint8_t k_black[3] = {0, 0, 0};
static const uint8_t k_llava_grey[3] = {122, 116, 104};

static lv_status run_plan(const lv_vision_prep *p, const lv_image_plan *pl, const lv_image *src, lv_image_tiles *out) {
    lv_status st;
    const int32_t n = p->type == LV_PROJ_IDEFICS3 ? pl->n_rows * pl->n_cols + 1 : 1;
    out->img = lv_calloc((size_t)n, sizeof(lv_image));
    if (!out->img) return LV_ERR_NOMEM;
    out->n = n;
    if (p->type != LV_PROJ_IDEFICS3)
        return resize_fit(src, pl, pl->w, pl->h, LV_RESAMPLE_BICUBIC, p->type == LV_PROJ_MLP ? k_llava_grey : k_black,
                          &out->img[0]);
    const int32_t T = pl->w, nt = n - 1;
    lv_image refined = {0}, tmp = {0};
    if (pl->lanczos) {
        /* E-long-side (Lanczos), whole tiles (Lanczos); overview = refined at T x T (Lanczos) */
        st = lv_image_resize(src, pl->resized_w, pl->resized_h, LV_RESAMPLE_LANCZOS, &tmp);
        if (st == LV_OK) st = lv_image_resize(&tmp, pl->refined_w, pl->refined_h, LV_RESAMPLE_LANCZOS, &refined);
        lv_image_free(&tmp);
        if (st == LV_OK) st = lv_image_resize(&refined, T, T, LV_RESAMPLE_LANCZOS, &out->img[nt]);
    } else {
        /* refined: fitted (bicubic, black); overview = the original stretched to T x T (bicubic) */
        st = resize_fit(src, pl, pl->refined_w, pl->refined_h, LV_RESAMPLE_BICUBIC, k_black, &refined);
        if (st == LV_OK) st = lv_image_resize(src, T, T, LV_RESAMPLE_BICUBIC, &out->img[nt]);
    }
    for (int32_t y = 0; y < pl->n_rows && st == LV_OK; y++)
        for (int32_t x = 0; x < pl->n_cols && st == LV_OK; x++)
            st = crop(&refined, x * T, y * T, T, T, &out->img[y * pl->n_cols + x]);
    lv_image_free(&refined);
    out->n_rows = pl->n_rows;
    out->n_cols = pl->n_cols;
    out->has_overview = true;
    return st;
}

lv_status lv_image_preprocess(const lv_vision_prep *p, const lv_image *src, lv_image_tiles *out) {
    memset(out, 0, sizeof(*out));
    if (!src || !src->rgb) return lv_error(LV_ERR_INVALID_ARG, "preprocess: empty image");
    lv_image_plan pl;
    lv_status st = lv_image_plan_for(p, src->w, src->h, &pl);
    if (st != LV_OK) return st;
    if ((st = run_plan(p, &pl, src, out)) != LV_OK) lv_image_tiles_free(out);
    return st;
}
