/*
 * convert.c: decoded frame -> RGB24 at the output size, the way the ffmpeg CLI's
 * `-vf ...,scale=W:H -pix_fmt rgb24` does it, so that the bytes are identical:
 *   - swscale flags SWS_BICUBIC (the CLI's default sws_flags "bicubic"; the scale filter's own
 *     default would be bilinear), param0/param1 at their defaults, one thread;
 *   - for yuv420p input the MPEG-2 chroma siting the scale filter sets (src_v_chr_pos 128);
 *   - colour details as the scale filter sets them per frame: the input matrix from the frame's
 *     colorspace ("auto"), the output table equal to it, the input range from the frame's
 *     color_range when it is specified;
 *   - the destination is an aligned frame buffer (as the filter's output), copied row by row
 *     into the caller's packed buffer (swscale's SIMD paths can depend on alignment);
 *   - a frame already in RGB24 at the output size is copied, as the filter passes it through.
 * Float output is a separate step on the RGB24 bytes: (x / 255 - mean) / std.
 */
#include "video/video.h"

#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
#include <string.h>

/* vf_scale.c parse_yuv_type("auto", colorspace) */
static const int *yuv_coeffs(int colorspace) {
    if (colorspace < 1 || colorspace > 10 || colorspace == 8) colorspace = AVCOL_SPC_BT470BG;
    return sws_getCoefficients(colorspace);
}

void lv_vconv_free_(lv_vconv *c) {
    if (!c) return;
    sws_freeContext(c->sws);
    av_frame_free(&c->tmp);
    memset(c, 0, sizeof(*c));
}

static lv_status conv_setup(lv_vconv *c, const AVFrame *src, int dst_w, int dst_h) {
    sws_freeContext(c->sws);
    c->sws = NULL;
    av_frame_free(&c->tmp);
    c->src_w = src->width;
    c->src_h = src->height;
    c->src_fmt = src->format;
    c->src_space = src->colorspace;
    c->src_range = src->color_range;
    c->dst_w = dst_w;
    c->dst_h = dst_h;
    c->tmp = av_frame_alloc();
    if (!c->tmp) return lv_error(LV_ERR_NOMEM, "out of memory");
    c->tmp->format = AV_PIX_FMT_RGB24;
    c->tmp->width = dst_w;
    c->tmp->height = dst_h;
    const int ret = av_frame_get_buffer(c->tmp, 0);
    if (ret == AVERROR(ENOMEM)) return lv_error(LV_ERR_NOMEM, "out of memory for a %dx%d frame", dst_w, dst_h);
    if (ret < 0) {
        char eb[64];
        return lv_error(LV_ERR_INVALID_ARG, "FFmpeg cannot allocate a %dx%d RGB frame: %s", dst_w, dst_h, lv_av_err_(ret, eb));
    }
    if (src->format == AV_PIX_FMT_RGB24 && src->width == dst_w && src->height == dst_h) return LV_OK; /* copy */

    struct SwsContext *s = sws_alloc_context();
    if (!s) return lv_error(LV_ERR_NOMEM, "out of memory");
    av_opt_set_int(s, "srcw", src->width, 0);
    av_opt_set_int(s, "srch", src->height, 0);
    av_opt_set_int(s, "src_format", src->format, 0);
    av_opt_set_int(s, "dstw", dst_w, 0);
    av_opt_set_int(s, "dsth", dst_h, 0);
    av_opt_set_int(s, "dst_format", AV_PIX_FMT_RGB24, 0);
    av_opt_set_int(s, "sws_flags", SWS_BICUBIC, 0);
    av_opt_set_double(s, "param0", SWS_PARAM_DEFAULT, 0);
    av_opt_set_double(s, "param1", SWS_PARAM_DEFAULT, 0);
    av_opt_set_int(s, "threads", 1, 0);
    av_opt_set_int(s, "src_h_chr_pos", -513, 0);
    av_opt_set_int(s, "src_v_chr_pos", src->format == AV_PIX_FMT_YUV420P ? 128 : -513, 0);
    av_opt_set_int(s, "dst_h_chr_pos", -513, 0);
    av_opt_set_int(s, "dst_v_chr_pos", -513, 0);
    if (sws_init_context(s, NULL, NULL) < 0) {
        sws_freeContext(s);
        const char *fn = av_get_pix_fmt_name((enum AVPixelFormat)src->format);
        return lv_error(LV_ERR_UNSUPPORTED, "cannot convert %dx%d %s frames to %dx%d RGB24", src->width, src->height,
                        fn ? fn : "?", dst_w, dst_h);
    }
    /* vf_scale scale_frame(): in_color_matrix "auto" is always set, so this always runs */
    int *inv_table, *table, in_full, out_full, brightness, contrast, saturation;
    sws_getColorspaceDetails(s, &inv_table, &in_full, &table, &out_full, &brightness, &contrast, &saturation);
    const int *in_coeffs = yuv_coeffs(src->colorspace);
    if (src->color_range != AVCOL_RANGE_UNSPECIFIED) in_full = src->color_range == AVCOL_RANGE_JPEG;
    sws_setColorspaceDetails(s, in_coeffs, in_full, in_coeffs, out_full, brightness, contrast, saturation);
    c->sws = s;
    return LV_OK;
}

lv_status lv_vconv_rgb24_(lv_vconv *c, const AVFrame *src, int dst_w, int dst_h, uint8_t *dst) {
    if (!c->tmp || c->src_w != src->width || c->src_h != src->height || c->src_fmt != src->format ||
        c->src_space != (int)src->colorspace || c->src_range != (int)src->color_range || c->dst_w != dst_w ||
        c->dst_h != dst_h) {
        lv_status st = conv_setup(c, src, dst_w, dst_h);
        if (st != LV_OK) {
            lv_vconv_free_(c);
            return st;
        }
    }
    if (!c->sws) {
        av_image_copy_plane(dst, dst_w * 3, src->data[0], src->linesize[0], dst_w * 3, dst_h);
        return LV_OK;
    }
    int r = sws_scale(c->sws, (const uint8_t *const *)src->data, src->linesize, 0, src->height, c->tmp->data,
                      c->tmp->linesize);
    if (r != dst_h) return lv_error(LV_ERR_INTERNAL, "swscale produced %d of %d rows", r, dst_h);
    av_image_copy_plane(dst, dst_w * 3, c->tmp->data[0], c->tmp->linesize[0], dst_w * 3, dst_h);
    return LV_OK;
}

void lv_vconv_normalize_(const uint8_t *rgb, int w, int h, const float mean[3], const float std_[3], float *out) {
    int64_t plane = (int64_t)w * h;
    for (int c = 0; c < 3; c++) {
        float scale = 1.0f / (255.0f * std_[c]), bias = -mean[c] / std_[c];
        float *o = out + c * plane;
        const uint8_t *in = rgb + c;
        for (int64_t i = 0; i < plane; i++) o[i] = (float)in[3 * i] * scale + bias;
    }
}

/* -------------------------------------------------------------------------------------------
 * PNG
 * ----------------------------------------------------------------------------------------- */

lv_status lv_video_write_png(const char *path, const uint8_t *rgb, int32_t w, int32_t h) {
    if (!path || !rgb || w <= 0 || h <= 0) return lv_error(LV_ERR_INVALID_ARG, "lv_video_write_png: bad arguments");
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_PNG);
    if (!codec) return lv_error(LV_ERR_UNSUPPORTED, "this FFmpeg has no PNG encoder");
    char eb[64];
    lv_status st = LV_OK;
    AVCodecContext *enc = avcodec_alloc_context3(codec);
    AVFrame *frame = av_frame_alloc();
    AVPacket *pkt = av_packet_alloc();
    FILE *f = NULL;
    if (!enc || !frame || !pkt) {
        st = lv_error(LV_ERR_NOMEM, "out of memory");
        goto done;
    }
    enc->width = w;
    enc->height = h;
    enc->pix_fmt = AV_PIX_FMT_RGB24;
    enc->time_base = (AVRational){1, 1};
    enc->thread_count = 1;
    int ret = avcodec_open2(enc, codec, NULL);
    if (ret < 0) {
        st = lv_error(LV_ERR_UNSUPPORTED, "cannot open the PNG encoder: %s", lv_av_err_(ret, eb));
        goto done;
    }
    frame->format = AV_PIX_FMT_RGB24;
    frame->width = w;
    frame->height = h;
    if (av_frame_get_buffer(frame, 0) < 0) {
        st = lv_error(LV_ERR_NOMEM, "out of memory");
        goto done;
    }
    av_image_copy_plane(frame->data[0], frame->linesize[0], rgb, w * 3, w * 3, h);
    ret = avcodec_send_frame(enc, frame);
    if (ret >= 0) ret = avcodec_receive_packet(enc, pkt);
    if (ret < 0) {
        st = lv_error(LV_ERR_INTERNAL, "PNG encoding failed: %s", lv_av_err_(ret, eb));
        goto done;
    }
    f = fopen(path, "wb");
    if (!f) {
        st = lv_error(LV_ERR_IO, "cannot create %s", path);
        goto done;
    }
    if (fwrite(pkt->data, 1, (size_t)pkt->size, f) != (size_t)pkt->size) st = lv_error(LV_ERR_IO, "cannot write %s", path);
    if (fclose(f) != 0 && st == LV_OK) st = lv_error(LV_ERR_IO, "cannot write %s", path);
done:
    av_packet_free(&pkt);
    av_frame_free(&frame);
    avcodec_free_context(&enc);
    return st;
}
