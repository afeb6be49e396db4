/*
 * encode.c: the other direction, for generated test and evaluation videos (docs/vniah.md):
 *   - lv_video_scaler: RGB24 -> RGB24 resizing with the reader's swscale settings (SWS_BICUBIC,
 *     default parameters, one thread), so that a frame rendered in memory can be reduced to a
 *     model's input size the way the reader reduces a decoded one (convert.c);
 *   - lv_video_writer: RGB24 frames -> yuv420p (swscale, BT.601 limited range, tagged so) ->
 *     libx264 -> a libavformat container (MP4 by default), with a fixed keyframe interval.
 * It does not pick frames, draw anything or know about models: the caller does.
 */
#include "video/video.h"

#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
#include <string.h>

/* -------------------------------------------------------------------------------------------
 * RGB24 scaler
 * ----------------------------------------------------------------------------------------- */

struct lv_video_scaler {
    struct SwsContext *sws;
    AVFrame *src, *dst; /* aligned buffers (swscale's SIMD paths may depend on alignment) */
    int32_t sw, sh, dw, dh;
};

static AVFrame *rgb_frame(int w, int h) {
    AVFrame *f = av_frame_alloc();
    if (!f) return NULL;
    f->format = AV_PIX_FMT_RGB24;
    f->width = w;
    f->height = h;
    if (av_frame_get_buffer(f, 0) < 0) av_frame_free(&f);
    return f;
}

/* an swscale context as convert.c configures one (its yuv420p chroma siting aside) */
static struct SwsContext *sws_new(int sw, int sh, int sfmt, int dw, int dh, int dfmt) {
    struct SwsContext *s = sws_alloc_context();
    if (!s) return NULL;
    av_opt_set_int(s, "srcw", sw, 0);
    av_opt_set_int(s, "srch", sh, 0);
    av_opt_set_int(s, "src_format", sfmt, 0);
    av_opt_set_int(s, "dstw", dw, 0);
    av_opt_set_int(s, "dsth", dh, 0);
    av_opt_set_int(s, "dst_format", dfmt, 0);
    av_opt_set_int(s, "sws_flags", SWS_BICUBIC, 0);
    av_opt_set_double(s, "param0", SWS_PARAM_DEFAULT, 0);
    av_opt_set_double(s, "param1", SWS_PARAM_DEFAULT, 0);
    av_opt_set_int(s, "threads", 1, 0);
    if (sws_init_context(s, NULL, NULL) < 0) {
        sws_freeContext(s);
        return NULL;
    }
    return s;
}

void lv_video_scaler_free(lv_video_scaler *s) {
    if (!s) return;
    sws_freeContext(s->sws);
    av_frame_free(&s->src);
    av_frame_free(&s->dst);
    lv_free(s);
}

lv_status lv_video_scaler_new(int32_t sw, int32_t sh, int32_t dw, int32_t dh, lv_video_scaler **out) {
    if (!out) return lv_error(LV_ERR_INVALID_ARG, "lv_video_scaler_new: out is NULL");
    *out = NULL;
    if (sw < 1 || sh < 1 || dw < 1 || dh < 1 || sw > 16384 || sh > 16384 || dw > 16384 || dh > 16384)
        return lv_error(LV_ERR_INVALID_ARG, "lv_video_scaler_new: bad sizes %dx%d -> %dx%d", sw, sh, dw, dh);
    lv_video_scaler *s = lv_calloc(1, sizeof(*s));
    if (!s) return lv_error(LV_ERR_NOMEM, "out of memory");
    s->sw = sw, s->sh = sh, s->dw = dw, s->dh = dh;
    s->src = rgb_frame(sw, sh);
    s->dst = rgb_frame(dw, dh);
    if (!s->src || !s->dst) {
        lv_video_scaler_free(s);
        return lv_error(LV_ERR_NOMEM, "out of memory for a %dx%d -> %dx%d scaler", sw, sh, dw, dh);
    }
    s->sws = sws_new(sw, sh, AV_PIX_FMT_RGB24, dw, dh, AV_PIX_FMT_RGB24);
    if (!s->sws) {
        lv_video_scaler_free(s);
        return lv_error(LV_ERR_UNSUPPORTED, "swscale cannot resize %dx%d RGB24 to %dx%d", sw, sh, dw, dh);
    }
    *out = s;
    return LV_OK;
}

lv_status lv_video_scaler_run(lv_video_scaler *s, const uint8_t *src, int64_t src_stride, uint8_t *dst, int64_t dst_stride) {
    if (!s || !src || !dst || src_stride < (int64_t)s->sw * 3 || dst_stride < (int64_t)s->dw * 3 || src_stride > INT32_MAX ||
        dst_stride > INT32_MAX)
        return lv_error(LV_ERR_INVALID_ARG, "lv_video_scaler_run: bad arguments");
    av_image_copy_plane(s->src->data[0], s->src->linesize[0], src, (int)src_stride, s->sw * 3, s->sh);
    const int r = sws_scale(s->sws, (const uint8_t *const *)s->src->data, s->src->linesize, 0, s->sh, s->dst->data,
                            s->dst->linesize);
    if (r != s->dh) return lv_error(LV_ERR_INTERNAL, "swscale produced %d of %d rows", r, s->dh);
    av_image_copy_plane(dst, (int)dst_stride, s->dst->data[0], s->dst->linesize[0], s->dw * 3, s->dh);
    return LV_OK;
}

/* -------------------------------------------------------------------------------------------
 * H.264 writer
 * ----------------------------------------------------------------------------------------- */

struct lv_video_writer {
    AVFormatContext *fmt;
    AVCodecContext *enc;
    AVStream *st;
    AVFrame *yuv;
    AVPacket *pkt;
    struct SwsContext *sws; /* RGB24 -> yuv420p */
    AVFrame *rgb;           /* aligned copy of the caller's frame */
    int64_t n;
    int32_t w, h;
    bool opened_io;
};

lv_video_writer_params lv_video_default_writer_params(void) {
    lv_video_writer_params p = {0};
    p.fps_num = 25;
    p.fps_den = 1;
    p.crf = 23;
    p.preset = "veryfast";
    p.container = "mp4";
    return p;
}

void lv_video_writer_free(lv_video_writer *w) {
    if (!w) return;
    if (w->fmt && w->opened_io) avio_closep(&w->fmt->pb);
    avformat_free_context(w->fmt);
    avcodec_free_context(&w->enc);
    av_frame_free(&w->yuv);
    av_frame_free(&w->rgb);
    av_packet_free(&w->pkt);
    sws_freeContext(w->sws);
    lv_free(w);
}

/* every packet the encoder has ready, to the muxer */
static lv_status drain(lv_video_writer *w) {
    char eb[64];
    for (;;) {
        int ret = avcodec_receive_packet(w->enc, w->pkt);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return LV_OK;
        if (ret < 0) return lv_error(LV_ERR_INTERNAL, "H.264 encoding failed: %s", lv_av_err_(ret, eb));
        av_packet_rescale_ts(w->pkt, w->enc->time_base, w->st->time_base);
        w->pkt->stream_index = w->st->index;
        ret = av_interleaved_write_frame(w->fmt, w->pkt); /* takes the packet's reference */
        if (ret < 0) return lv_error(LV_ERR_IO, "cannot write %s: %s", w->fmt->url ? w->fmt->url : "the video", lv_av_err_(ret, eb));
    }
}

lv_status lv_video_writer_open(const char *path, const lv_video_writer_params *pp, lv_video_writer **out) {
    if (!out) return lv_error(LV_ERR_INVALID_ARG, "lv_video_writer_open: out is NULL");
    *out = NULL;
    lv_video_writer_params p = pp ? *pp : lv_video_default_writer_params();
    if (!path || !*path) return lv_error(LV_ERR_INVALID_ARG, "lv_video_writer_open: no path");
    if (p.width < 2 || p.height < 2 || p.width > 16384 || p.height > 16384 || (p.width & 1) || (p.height & 1))
        return lv_error(LV_ERR_INVALID_ARG, "video size %dx%d: width and height must be even, 2 to 16384", p.width, p.height);
    if (p.fps_num <= 0 || p.fps_den <= 0) return lv_error(LV_ERR_INVALID_ARG, "frame rate %d/%d: must be > 0", p.fps_num, p.fps_den);
    if (p.crf < 0 || p.crf > 51) return lv_error(LV_ERR_INVALID_ARG, "crf %d: must be 0..51", p.crf);
    if (p.gop < 0) return lv_error(LV_ERR_INVALID_ARG, "gop %d: must be >= 0", p.gop);
    const char *preset = p.preset ? p.preset : "veryfast";
    const char *container = p.container ? p.container : "mp4";
    const AVCodec *codec = avcodec_find_encoder_by_name("libx264");
    if (!codec)
        return lv_error(LV_ERR_UNSUPPORTED, "this FFmpeg's libavcodec has no libx264 encoder (Debian's libavcodec has it; "
                                            "a build without --enable-libx264 does not)");
    const AVRational fps = {p.fps_num, p.fps_den};
    int gop = p.gop;
    if (gop == 0) {
        const double g = 10.0 * av_q2d(fps);
        gop = g < 1 ? 1 : g > 100000 ? 100000 : (int)(g + 0.5);
    }
    char eb[64];
    lv_status st = LV_OK;
    int ret;
    AVDictionary *opts = NULL;
    lv_video_writer *w = lv_calloc(1, sizeof(*w));
    if (!w) return lv_error(LV_ERR_NOMEM, "out of memory");
    w->w = p.width;
    w->h = p.height;
    ret = avformat_alloc_output_context2(&w->fmt, NULL, container, path);
    if (ret < 0 || !w->fmt) {
        st = lv_error(LV_ERR_INVALID_ARG, "no libavformat muxer '%s': %s", container, lv_av_err_(ret, eb));
        goto fail;
    }
    w->st = avformat_new_stream(w->fmt, NULL);
    w->enc = avcodec_alloc_context3(codec);
    w->yuv = av_frame_alloc();
    w->pkt = av_packet_alloc();
    w->rgb = rgb_frame(p.width, p.height);
    if (!w->st || !w->enc || !w->yuv || !w->pkt || !w->rgb) {
        st = lv_error(LV_ERR_NOMEM, "out of memory");
        goto fail;
    }
    w->enc->width = p.width;
    w->enc->height = p.height;
    w->enc->pix_fmt = AV_PIX_FMT_YUV420P;
    w->enc->time_base = av_inv_q(fps);
    w->enc->framerate = fps;
    w->enc->gop_size = gop;
    w->enc->keyint_min = gop;
    w->enc->thread_count = p.n_threads > 0 ? p.n_threads : 0;
    w->enc->color_range = AVCOL_RANGE_MPEG;      /* what swscale's default RGB -> YUV writes */
    w->enc->colorspace = AVCOL_SPC_SMPTE170M;    /* BT.601 coefficients, swscale's default */
    w->enc->color_primaries = AVCOL_PRI_SMPTE170M;
    w->enc->color_trc = AVCOL_TRC_SMPTE170M;
    if (w->fmt->oformat->flags & AVFMT_GLOBALHEADER) w->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    char crf[16];
    snprintf(crf, sizeof(crf), "%d", p.crf);
    av_dict_set(&opts, "preset", preset, 0);
    av_dict_set(&opts, "crf", crf, 0);
    av_dict_set(&opts, "x264-params", "scenecut=0", 0); /* keyframes exactly every gop frames, none at scene cuts */
    ret = avcodec_open2(w->enc, codec, &opts);
    if (ret < 0) {
        st = lv_error(LV_ERR_UNSUPPORTED, "cannot open libx264 (%dx%d, preset %s): %s", p.width, p.height, preset, lv_av_err_(ret, eb));
        goto fail;
    }
    if (av_dict_count(opts) > 0) {
        st = lv_error(LV_ERR_INVALID_ARG, "libx264 did not take the option '%s'", av_dict_get(opts, "", NULL, AV_DICT_IGNORE_SUFFIX)->key);
        goto fail;
    }
    ret = avcodec_parameters_from_context(w->st->codecpar, w->enc);
    if (ret < 0) {
        st = lv_error(LV_ERR_INTERNAL, "cannot set the stream's parameters: %s", lv_av_err_(ret, eb));
        goto fail;
    }
    w->st->time_base = w->enc->time_base;
    w->st->avg_frame_rate = fps;
    w->yuv->format = AV_PIX_FMT_YUV420P;
    w->yuv->width = p.width;
    w->yuv->height = p.height;
    if (av_frame_get_buffer(w->yuv, 0) < 0) {
        st = lv_error(LV_ERR_NOMEM, "out of memory for a %dx%d frame", p.width, p.height);
        goto fail;
    }
    w->sws = sws_new(p.width, p.height, AV_PIX_FMT_RGB24, p.width, p.height, AV_PIX_FMT_YUV420P);
    if (!w->sws) {
        st = lv_error(LV_ERR_UNSUPPORTED, "swscale cannot convert %dx%d RGB24 to yuv420p", p.width, p.height);
        goto fail;
    }
    if (!(w->fmt->oformat->flags & AVFMT_NOFILE)) {
        ret = avio_open(&w->fmt->pb, path, AVIO_FLAG_WRITE);
        if (ret < 0) {
            st = lv_error(LV_ERR_IO, "cannot create %s: %s", path, lv_av_err_(ret, eb));
            goto fail;
        }
        w->opened_io = true;
    }
    ret = avformat_write_header(w->fmt, NULL);
    if (ret < 0) {
        st = lv_error(LV_ERR_IO, "cannot write the header of %s: %s", path, lv_av_err_(ret, eb));
        goto fail;
    }
    av_dict_free(&opts);
    *out = w;
    return LV_OK;
fail:
    av_dict_free(&opts);
    lv_video_writer_free(w);
    return st;
}

lv_status lv_video_writer_push(lv_video_writer *w, const uint8_t *rgb) {
    if (!w || !rgb) return lv_error(LV_ERR_INVALID_ARG, "lv_video_writer_push: bad arguments");
    char eb[64];
    int ret = av_frame_make_writable(w->yuv);
    if (ret < 0) return lv_error(LV_ERR_NOMEM, "out of memory: %s", lv_av_err_(ret, eb));
    av_image_copy_plane(w->rgb->data[0], w->rgb->linesize[0], rgb, w->w * 3, w->w * 3, w->h);
    const int r = sws_scale(w->sws, (const uint8_t *const *)w->rgb->data, w->rgb->linesize, 0, w->h, w->yuv->data, w->yuv->linesize);
    if (r != w->h) return lv_error(LV_ERR_INTERNAL, "swscale produced %d of %d rows", r, w->h);
    w->yuv->pts = w->n;
    ret = avcodec_send_frame(w->enc, w->yuv);
    if (ret < 0) return lv_error(LV_ERR_INTERNAL, "H.264 encoding failed at frame %lld: %s", (long long)w->n, lv_av_err_(ret, eb));
    w->n++;
    return drain(w);
}

int64_t lv_video_writer_n_frames(const lv_video_writer *w) { return w ? w->n : 0; }

lv_status lv_video_writer_close(lv_video_writer *w) {
    if (!w) return lv_error(LV_ERR_INVALID_ARG, "lv_video_writer_close: NULL writer");
    char eb[64];
    int ret = avcodec_send_frame(w->enc, NULL);
    lv_status st = ret < 0 ? lv_error(LV_ERR_INTERNAL, "cannot flush the H.264 encoder: %s", lv_av_err_(ret, eb)) : drain(w);
    if (st == LV_OK) {
        ret = av_write_trailer(w->fmt);
        if (ret < 0) st = lv_error(LV_ERR_IO, "cannot finish %s: %s", w->fmt->url ? w->fmt->url : "the video", lv_av_err_(ret, eb));
    }
    if (w->opened_io) {
        ret = avio_closep(&w->fmt->pb);
        w->opened_io = false;
        if (ret < 0 && st == LV_OK) st = lv_error(LV_ERR_IO, "cannot close %s: %s", w->fmt->url ? w->fmt->url : "the video", lv_av_err_(ret, eb));
    }
    lv_video_writer_free(w);
    return st;
}
