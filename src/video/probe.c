/*
 * probe.c: open a video (file or memory), choose the stream, and index it.
 *
 * The index comes from one pass of the demuxer over every packet of the chosen stream (other
 * streams are discarded at the demuxer, so their data is not even read where the container
 * allows). Nothing is decoded. Per packet we keep pts, dts, byte position, duration, size and:
 *   - KEY: a GOP starts here. The container's keyframe flag, checked against the bitstream for
 *     H.264/HEVC (an IDR/BLA, a CRA, or an I picture whose recovery-point SEI says decoding is
 *     exact from it); a "keyframe" that is none of these is not used as a cut point.
 *   - NONREF: no frame references it (H.264 nal_ref_idc == 0; HEVC sub-layer non-reference NAL
 *     type at the highest TemporalId present in the stream).
 *   - LEADING: decoded after its GOP's keyframe but shown before it: an open-GOP leading frame,
 *     which references the previous GOP.
 *   - DISCARD: an edit list cuts it: it is decoded (others may reference it) but never shown.
 * Frames are the packets that are not DISCARD, in presentation (pts) order.
 *
 * The planner relies on: every frame has a pts, pts are unique, and one packet is one frame
 * (true of H.264, HEVC, VP8/9, AV1 and intra-only codecs in MP4/Matroska/WebM/MPEG-TS/AVI...).
 * When a check fails, split_ok is false (with the reason) and the reader takes the sequential
 * path, which does not depend on the index.
 */
#include "video/video.h"

#include <libavutil/avstring.h>
#include <libavutil/mathematics.h>
#include <libavutil/pixdesc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Containers we open. A whitelist keeps hostile input away from demuxers that open other files
 * (playlists, image sequences, concat) and keeps the fuzzer on the formats that matter. */
#define LV_VIDEO_FORMATS                                                                          \
    "mov,mp4,matroska,webm,avi,mpegts,flv,h264,hevc,ivf,mpeg,mpegvideo,m4v,asf,ogg,mxf,nut,obu,"  \
    "yuv4mpegpipe,dv,gif"

lv_video_open_params lv_video_default_open_params(void) {
    lv_video_open_params p;
    memset(&p, 0, sizeof(p));
    p.stream = -1;
    p.max_pixels = (int64_t)1 << 26;
    p.max_packets = (int64_t)1 << 24;
    return p;
}

const char *lv_av_err_(int err, char buf[64]) {
    av_strerror(err, buf, 64);
    return buf;
}

const char *lv_video_name_(const lv_video *v) { return v->path ? v->path : "<memory>"; }

/* -------------------------------------------------------------------------------------------
 * memory input (also the image decoder's, vision/image.c)
 * ----------------------------------------------------------------------------------------- */

int lv_mem_io_read(void *opaque, uint8_t *buf, int n) {
    lv_mem_io *m = opaque;
    int64_t left = m->size - m->pos;
    if (left <= 0) return AVERROR_EOF;
    if (n > left) n = (int)left;
    memcpy(buf, m->data + m->pos, (size_t)n);
    m->pos += n;
    return n;
}

int64_t lv_mem_io_seek(void *opaque, int64_t off, int whence) {
    lv_mem_io *m = opaque;
    int64_t base;
    switch (whence & ~AVSEEK_FORCE) {
    case AVSEEK_SIZE: return m->size;
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = m->pos; break;
    case SEEK_END: base = m->size; break;
    default: return AVERROR(EINVAL);
    }
    int64_t np;
    if (lv_add_ovf_i64(base, off, &np) || np < 0 || np > m->size) return AVERROR(EINVAL);
    m->pos = np;
    return np;
}

void lv_video_close_demuxer_(AVFormatContext **pfmt) {
    AVFormatContext *fmt = pfmt ? *pfmt : NULL;
    if (!fmt) return;
    AVIOContext *pb = (fmt->flags & AVFMT_FLAG_CUSTOM_IO) ? fmt->pb : NULL;
    avformat_close_input(pfmt);
    if (pb) {
        lv_free(pb->opaque);
        av_freep(&pb->buffer);
        avio_context_free(&pb);
    }
}

static lv_status open_demuxer(const char *path, const uint8_t *mem, int64_t mem_size, const char *name, bool find_info,
                              AVFormatContext **out) {
    *out = NULL;
    char eb[64];
    AVFormatContext *fmt = avformat_alloc_context();
    if (!fmt) return lv_error(LV_ERR_NOMEM, "%s: out of memory", name);
    AVIOContext *pb = NULL;
    if (!path) {
        lv_mem_io *m = lv_calloc(1, sizeof(*m));
        uint8_t *buf = av_malloc(1 << 15);
        if (!m || !buf) {
            lv_free(m);
            av_free(buf);
            avformat_free_context(fmt);
            return lv_error(LV_ERR_NOMEM, "%s: out of memory", name);
        }
        m->data = mem;
        m->size = mem_size;
        pb = avio_alloc_context(buf, 1 << 15, 0, m, lv_mem_io_read, NULL, lv_mem_io_seek);
        if (!pb) {
            lv_free(m);
            av_free(buf);
            avformat_free_context(fmt);
            return lv_error(LV_ERR_NOMEM, "%s: out of memory", name);
        }
        fmt->pb = pb;
        fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    }
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "format_whitelist", LV_VIDEO_FORMATS, 0);
    av_dict_set(&opts, "protocol_whitelist", "file", 0);
    char url[4200];
    if (path) snprintf(url, sizeof(url), "file:%s", path);
    int ret = avformat_open_input(&fmt, path ? url : "", NULL, &opts);
    av_dict_free(&opts);
    if (ret < 0) {
        /* avformat_open_input frees fmt on failure but not a custom pb */
        if (pb) {
            lv_free(pb->opaque);
            av_freep(&pb->buffer);
            avio_context_free(&pb);
        }
        if (ret == AVERROR(ENOENT) || ret == AVERROR(EACCES) || ret == AVERROR(EISDIR))
            return lv_error(LV_ERR_IO, "cannot open %s: %s", name, lv_av_err_(ret, eb));
        return lv_error(LV_ERR_FORMAT, "%s is not a video file longview can read (or it is truncated): %s", name, lv_av_err_(ret, eb));
    }
    if (find_info) {
        ret = avformat_find_stream_info(fmt, NULL);
        if (ret < 0) {
            lv_video_close_demuxer_(&fmt);
            return lv_error(LV_ERR_FORMAT, "%s: cannot read stream information: %s", name, lv_av_err_(ret, eb));
        }
    }
    *out = fmt;
    return LV_OK;
}

lv_status lv_video_open_demuxer_(const lv_video *v, const char *path, bool find_info, AVFormatContext **out) {
    lv_status st = open_demuxer(path, v->mem, v->mem_size, lv_video_name_(v), find_info, out);
    if (st != LV_OK) return st;
    AVFormatContext *fmt = *out;
    if (v->stream >= (int)fmt->nb_streams || fmt->streams[v->stream]->codecpar->codec_type != AVMEDIA_TYPE_VIDEO) {
        lv_video_close_demuxer_(out);
        return lv_error(LV_ERR_FORMAT, "%s: stream %d is not there when the file is opened again", lv_video_name_(v),
                        v->stream);
    }
    for (unsigned i = 0; i < fmt->nb_streams; i++)
        fmt->streams[i]->discard = (int)i == v->stream ? AVDISCARD_DEFAULT : AVDISCARD_ALL;
    return LV_OK;
}

/* -------------------------------------------------------------------------------------------
 * stream choice and description
 * ----------------------------------------------------------------------------------------- */

/* The ffmpeg CLI's choice of the video stream for an output file without -map (ffmpeg_opt.c,
 * 5.1): the largest width*height, +100000000 if packets were seen while probing, +5000000 for
 * the default disposition, attached pictures score 1; the first stream wins ties. */
static int choose_stream(const AVFormatContext *fmt) {
    int best = -1;
    int64_t best_score = 0;
    for (unsigned i = 0; i < fmt->nb_streams; i++) {
        const AVStream *st = fmt->streams[i];
        if (st->codecpar->codec_type != AVMEDIA_TYPE_VIDEO) continue;
        int64_t score = (int64_t)st->codecpar->width * st->codecpar->height +
                        100000000 * !!(st->event_flags & AVSTREAM_EVENT_FLAG_NEW_PACKETS) +
                        5000000 * !!(st->disposition & AV_DISPOSITION_DEFAULT);
        if (st->disposition & AV_DISPOSITION_ATTACHED_PIC) score = 1;
        if (score > best_score) {
            best_score = score;
            best = (int)i;
        }
    }
    return best;
}

static void describe_stream(const AVStream *st, char *line, size_t n) {
    const AVCodecParameters *par = st->codecpar;
    const char *type = av_get_media_type_string(par->codec_type);
    const char *codec = avcodec_get_name(par->codec_id);
    const char *prof = avcodec_profile_name(par->codec_id, par->profile);
    int k = snprintf(line, n, "%s %s", type ? type : "data", codec ? codec : "?");
    if (k < 0 || (size_t)k >= n) return;
    if (prof) k += snprintf(line + k, n - (size_t)k, " (%s)", prof);
    if ((size_t)k >= n) return;
    if (par->codec_type == AVMEDIA_TYPE_VIDEO) {
        const char *pf = av_get_pix_fmt_name((enum AVPixelFormat)par->format);
        k += snprintf(line + k, n - (size_t)k, " %dx%d %s", par->width, par->height, pf ? pf : "?");
        if ((size_t)k < n && st->avg_frame_rate.num > 0 && st->avg_frame_rate.den > 0)
            k += snprintf(line + k, n - (size_t)k, " %.3g fps", av_q2d(st->avg_frame_rate));
        if ((size_t)k < n && (st->disposition & AV_DISPOSITION_ATTACHED_PIC))
            k += snprintf(line + k, n - (size_t)k, " (attached picture)");
    } else if (par->codec_type == AVMEDIA_TYPE_AUDIO) {
        k += snprintf(line + k, n - (size_t)k, " %d Hz %d ch", par->sample_rate, par->ch_layout.nb_channels);
    }
    if ((size_t)k < n && (st->disposition & AV_DISPOSITION_DEFAULT)) snprintf(line + k, n - (size_t)k, " [default]");
}

/* -------------------------------------------------------------------------------------------
 * the packet scan
 * ----------------------------------------------------------------------------------------- */

static int cmp_frames_ctx_pts(const lv_vpkt *pk, int64_t a, int64_t b) {
    int64_t pa = pk[a].pts, pb = pk[b].pts;
    if (pa != pb) return pa < pb ? -1 : 1;
    return a < b ? -1 : a > b;
}

/* small merge sort of packet indices (qsort has no context argument in C11) */
typedef int (*idx_cmp)(const lv_vpkt *pk, int64_t a, int64_t b);
static void sort_idx(const lv_vpkt *pk, int64_t *a, int64_t *tmp, int64_t n, idx_cmp cmp) {
    if (n < 2) return;
    int64_t h = n / 2;
    sort_idx(pk, a, tmp, h, cmp);
    sort_idx(pk, a + h, tmp, n - h, cmp);
    if (cmp(pk, a[h - 1], a[h]) <= 0) return;
    int64_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = cmp(pk, a[i], a[j]) <= 0 ? a[i++] : a[j++];
    while (i < h) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, (size_t)n * sizeof(*a));
}

static int64_t pkt_sort_dts(const lv_vpkt *p) { return p->dts != AV_NOPTS_VALUE ? p->dts : p->pts; }

static int cmp_pos(const lv_vpkt *pk, int64_t a, int64_t b) {
    if (pk[a].pos != pk[b].pos) return pk[a].pos < pk[b].pos ? -1 : 1;
    return a < b ? -1 : a > b;
}

static int cmp_dts(const lv_vpkt *pk, int64_t a, int64_t b) {
    int64_t da = pkt_sort_dts(&pk[a]), db = pkt_sort_dts(&pk[b]);
    if (da != db) return da < db ? -1 : 1;
    return a < b ? -1 : a > b;
}

static lv_status scan_packets(lv_video *v, AVFormatContext *fmt, int64_t max_packets) {
    char eb[64];
    const char *name = lv_video_name_(v);
    AVPacket *pkt = av_packet_alloc();
    if (!pkt) return lv_error(LV_ERR_NOMEM, "%s: out of memory", name);
    int64_t cap = 1024;
    v->pkts = lv_mallocn((size_t)cap, sizeof(lv_vpkt));
    if (!v->pkts) {
        av_packet_free(&pkt);
        return LV_ERR_NOMEM;
    }
    int n_errors = 0;
    for (;;) {
        int ret = av_read_frame(fmt, pkt);
        if (ret == AVERROR(EAGAIN)) continue;
        if (ret < 0) {
            if (ret != AVERROR_EOF) {
                snprintf(v->probe_warning, sizeof(v->probe_warning),
                         "reading stopped after %lld packets: %s (the file is damaged or truncated)",
                         (long long)v->n_pkts, lv_av_err_(ret, eb));
            }
            break;
        }
        if (pkt->stream_index != v->stream) {
            av_packet_unref(pkt);
            continue;
        }
        if (v->n_pkts >= max_packets) {
            av_packet_unref(pkt);
            av_packet_free(&pkt);
            return lv_error(LV_ERR_FORMAT, "%s: the video stream has more than %lld packets (max_packets)", name,
                            (long long)max_packets);
        }
        if (v->n_pkts == cap) {
            lv_vpkt *np = lv_realloc(v->pkts, (size_t)cap * 2 * sizeof(lv_vpkt));
            if (!np) {
                av_packet_free(&pkt);
                return LV_ERR_NOMEM;
            }
            v->pkts = np;
            cap *= 2;
        }
        lv_vpkt *p = &v->pkts[v->n_pkts++];
        memset(p, 0, sizeof(*p));
        p->pts = pkt->pts;
        p->dts = pkt->dts;
        p->pos = pkt->pos;
        p->duration = pkt->duration > 0 ? pkt->duration : 0;
        p->size = pkt->size;
        p->frame = -1;
        if (pkt->flags & AV_PKT_FLAG_KEY) p->flags |= LV_PKT_CONTAINER_KEY;
        if (pkt->flags & AV_PKT_FLAG_DISCARD) p->flags |= LV_PKT_DISCARD;
        if (pkt->flags & AV_PKT_FLAG_CORRUPT) n_errors++;
        if (v->nal_codec != LV_NAL_NONE) {
            lv_nal_info ni = lv_nal_classify(v->nal_codec, v->nal_length_size, pkt->data, pkt->size);
            p->nal_kind = (uint8_t)ni.kind;
            p->tid = (uint8_t)LV_MIN(ni.tid, 7);
            if (ni.kind == LV_NAL_KIND_NONREF) p->flags |= LV_PKT_NONREF; /* HEVC: resolved below */
        }
        av_packet_unref(pkt);
    }
    av_packet_free(&pkt);
    if (n_errors && !v->probe_warning[0])
        snprintf(v->probe_warning, sizeof(v->probe_warning), "%d packets are flagged corrupt by the demuxer", n_errors);
    return LV_OK;
}

/* Everything derived from the packet list: frames, GOPs, leading frames, the end timestamp,
 * whether the planned path is exact. */
static lv_status build_index(lv_video *v) {
    const char *name = lv_video_name_(v);
    lv_vpkt *pk = v->pkts;
    int64_t n = v->n_pkts;

    /* HEVC: a sub-layer non-reference picture is unreferenced only at the highest sub-layer */
    if (v->nal_codec == LV_NAL_HEVC) {
        int max_tid = 0;
        for (int64_t i = 0; i < n; i++)
            if (pk[i].nal_kind != LV_NAL_KIND_UNKNOWN && pk[i].tid > max_tid) max_tid = pk[i].tid;
        for (int64_t i = 0; i < n; i++)
            if ((pk[i].flags & LV_PKT_NONREF) && pk[i].tid != max_tid) pk[i].flags &= (uint8_t)~LV_PKT_NONREF;
    }

    /* GOP starts */
    bool bitstream_checked = v->nal_codec != LV_NAL_NONE;
    int64_t n_gops = 0;
    for (int64_t i = 0; i < n; i++) {
        bool key = (pk[i].flags & LV_PKT_CONTAINER_KEY) != 0;
        if (key && bitstream_checked)
            key = pk[i].nal_kind == LV_NAL_KIND_IDR || pk[i].nal_kind == LV_NAL_KIND_RECOVERY;
        if (key || i == 0) {
            if (key) pk[i].flags |= LV_PKT_KEY;
            n_gops++;
        }
    }
    v->gops = lv_mallocn((size_t)n_gops, sizeof(int64_t));
    if (!v->gops) return LV_ERR_NOMEM;
    v->n_gops = 0;
    for (int64_t i = 0; i < n; i++)
        if (i == 0 || (pk[i].flags & LV_PKT_KEY)) v->gops[v->n_gops++] = i;

    /* frames in presentation order */
    bool all_pts = true;
    int64_t n_frames = 0;
    for (int64_t i = 0; i < n; i++) {
        if (pk[i].flags & LV_PKT_DISCARD) continue;
        n_frames++;
        if (pk[i].pts == AV_NOPTS_VALUE) all_pts = false;
    }
    v->frames = lv_mallocn((size_t)(n_frames ? n_frames : 1), sizeof(int64_t));
    int64_t *tmp = lv_mallocn((size_t)n, sizeof(int64_t));
    v->dts_order = lv_mallocn((size_t)n, sizeof(int64_t));
    if (!v->frames || !tmp || !v->dts_order) {
        lv_free(tmp);
        return LV_ERR_NOMEM;
    }
    v->n_frames = 0;
    for (int64_t i = 0; i < n; i++)
        if (!(pk[i].flags & LV_PKT_DISCARD)) v->frames[v->n_frames++] = i;
    if (all_pts) sort_idx(pk, v->frames, tmp, v->n_frames, cmp_frames_ctx_pts);
    for (int64_t i = 0; i < v->n_frames; i++) pk[v->frames[i]].frame = i;
    for (int64_t i = 0; i < n; i++) v->dts_order[i] = i;
    sort_idx(pk, v->dts_order, tmp, n, cmp_dts);
    bool all_pos = true;
    for (int64_t i = 0; i < n && all_pos; i++) all_pos = pk[i].pos >= 0;
    if (all_pos) {
        v->pos_order = lv_mallocn((size_t)n, sizeof(int64_t));
        if (!v->pos_order) {
            lv_free(tmp);
            return LV_ERR_NOMEM;
        }
        for (int64_t i = 0; i < n; i++) v->pos_order[i] = i;
        sort_idx(pk, v->pos_order, tmp, n, cmp_pos);
        for (int64_t i = 1; i < n && v->pos_order; i++)
            if (pk[v->pos_order[i]].pos == pk[v->pos_order[i - 1]].pos) {
                lv_free(v->pos_order);
                v->pos_order = NULL;
            }
    }
    lv_free(tmp);

    bool unique = true;
    for (int64_t i = 1; all_pts && i < v->n_frames; i++)
        if (pk[v->frames[i]].pts == pk[v->frames[i - 1]].pts) unique = false;

    /* leading frames of each GOP: shown before their keyframe */
    int64_t n_leading = 0;
    for (int64_t g = 0; g < v->n_gops && all_pts; g++) {
        int64_t a = v->gops[g], b = g + 1 < v->n_gops ? v->gops[g + 1] : n;
        int64_t kpts = pk[a].pts;
        for (int64_t i = a + 1; i < b; i++)
            if (pk[i].pts < kpts) {
                pk[i].flags |= LV_PKT_LEADING;
                n_leading++;
            }
    }

    /* the time origin of the ffmpeg CLI: the file's start time (the earliest stream) */
    v->ts_offset = 0;
    if (v->fmt_start_time != AV_NOPTS_VALUE)
        v->ts_offset = av_rescale_q(-v->fmt_start_time, AV_TIME_BASE_Q, v->tb);

    /* the EOF timestamp ffmpeg 5.1 sends to the filter graph: the last frame's pts plus its
     * duration, both converted to microseconds, converted back (send_filter_eof) */
    v->end_pts = AV_NOPTS_VALUE;
    if (v->n_frames > 0 && all_pts) {
        const lv_vpkt *last = &pk[v->frames[v->n_frames - 1]];
        int64_t us = av_rescale_q(last->pts + v->ts_offset, v->tb, AV_TIME_BASE_Q);
        if (last->duration > 0)
            us += av_rescale_q(last->duration, v->tb, AV_TIME_BASE_Q);
        else if (v->avg_frame_rate.num > 0 && v->avg_frame_rate.den > 0)
            us += av_rescale_q(1, av_inv_q(v->avg_frame_rate), AV_TIME_BASE_Q);
        v->end_pts = av_rescale_q_rnd(us, AV_TIME_BASE_Q, v->tb, AV_ROUND_NEAR_INF | AV_ROUND_PASS_MINMAX);
    }

    /* may the planner and the parallel path be used? */
    enum AVCodecID id = v->par->codec_id;
    const AVCodecDescriptor *cd = avcodec_descriptor_get(id);
    bool codec_ok = id == AV_CODEC_ID_H264 || id == AV_CODEC_ID_HEVC || id == AV_CODEC_ID_VP8 || id == AV_CODEC_ID_VP9 ||
                    id == AV_CODEC_ID_AV1 || (cd && (cd->props & AV_CODEC_PROP_INTRA_ONLY));
    v->split_ok = true;
    if (!codec_ok)
        snprintf(v->split_why, sizeof(v->split_why), "codec %s is not one whose packets are known to be one frame each",
                 avcodec_get_name(id));
    else if (!all_pts)
        snprintf(v->split_why, sizeof(v->split_why), "some frames have no timestamp");
    else if (!unique)
        snprintf(v->split_why, sizeof(v->split_why), "two frames share a timestamp");
    else if (!v->seekable)
        snprintf(v->split_why, sizeof(v->split_why), "the input cannot seek");
    else if (v->n_frames == 0)
        snprintf(v->split_why, sizeof(v->split_why), "no frames");
    if (v->split_why[0]) v->split_ok = false;

    /* info */
    lv_video_info *in = &v->info;
    in->n_packets = n;
    in->n_frames = v->n_frames;
    in->n_keyframes = v->n_gops;
    in->n_leading = n_leading;
    int64_t n_nonref = 0, max_gop = 0;
    for (int64_t i = 0; i < n; i++) n_nonref += (pk[i].flags & LV_PKT_NONREF) != 0;
    for (int64_t g = 0; g < v->n_gops; g++) {
        int64_t len = (g + 1 < v->n_gops ? v->gops[g + 1] : n) - v->gops[g];
        if (len > max_gop) max_gop = len;
    }
    in->n_nonref = n_nonref;
    in->max_gop = (int32_t)LV_MIN(max_gop, INT32_MAX);
    int64_t max_reorder = 0;
    for (int64_t i = 0; i < n && all_pts; i++)
        if (pk[i].frame >= 0) {
            /* frames shown before this one but decoded after it */
            int64_t ahead = pk[i].frame - i;
            if (ahead > max_reorder) max_reorder = ahead;
        }
    in->max_reorder = (int32_t)LV_MIN(max_reorder, INT32_MAX);
    in->split_ok = v->split_ok;
    if (v->n_frames > 0 && all_pts) {
        const lv_vpkt *first = &pk[v->frames[0]];
        const lv_vpkt *last = &pk[v->frames[v->n_frames - 1]];
        in->start_s = (double)first->pts * av_q2d(v->tb);
        double end = (double)last->pts * av_q2d(v->tb) +
                     (last->duration > 0 ? (double)last->duration * av_q2d(v->tb)
                                         : (v->avg_frame_rate.num > 0 ? 1.0 / av_q2d(v->avg_frame_rate) : 0.0));
        in->duration_s = end - in->start_s;
        in->avg_fps = in->duration_s > 0 ? (double)v->n_frames / in->duration_s : 0.0;
        /* variable frame rate: pts steps between consecutive frames differ by more than 1% */
        int64_t dmin = INT64_MAX, dmax = 0;
        for (int64_t i = 1; i < v->n_frames; i++) {
            int64_t d = pk[v->frames[i]].pts - pk[v->frames[i - 1]].pts;
            if (d < dmin) dmin = d;
            if (d > dmax) dmax = d;
        }
        in->vfr = v->n_frames > 2 && dmax > dmin + dmin / 100;
        /* a hole: no frame for more than a second and 10 typical frame durations (damaged data, or
         * a stream that pauses); the fps rule repeats the frame before it */
        double typical = in->duration_s > 0 ? in->duration_s / (double)v->n_frames : 0;
        for (int64_t i = 1; i < v->n_frames; i++) {
            double d = (double)(pk[v->frames[i]].pts - pk[v->frames[i - 1]].pts) * av_q2d(v->tb);
            if (d > 1.0 && d > 10 * typical) {
                LV_LOG_W("%s: no frame between %.3f s and %.3f s (damaged data, or the stream pauses)", name,
                         (double)(pk[v->frames[i - 1]].pts + v->ts_offset) * av_q2d(v->tb),
                         (double)(pk[v->frames[i]].pts + v->ts_offset) * av_q2d(v->tb));
                break;
            }
        }
    }
    return LV_OK;
}

/* -------------------------------------------------------------------------------------------
 * open
 * ----------------------------------------------------------------------------------------- */

static lv_status video_open(const char *path, const void *data, int64_t size, lv_video_open_params params,
                            lv_video **out) {
    *out = NULL;
    if (path) {
        struct stat sb;
        if (stat(path, &sb) != 0) return lv_error(LV_ERR_IO, "cannot open %s: no such file", path);
        if (!S_ISREG(sb.st_mode)) return lv_error(LV_ERR_IO, "cannot open %s: not a regular file", path);
    } else if (!data || size <= 0) {
        return lv_error(LV_ERR_INVALID_ARG, "lv_video_open_memory: empty buffer");
    }
    lv_video *v = lv_calloc(1, sizeof(*v));
    if (!v) return LV_ERR_NOMEM;
    if (path) {
        v->path = lv_strdup(path);
        if (!v->path) {
            lv_free(v);
            return LV_ERR_NOMEM;
        }
    } else {
        v->mem = data;
        v->mem_size = size;
    }
    const char *name = lv_video_name_(v);
    AVFormatContext *fmt = NULL;
    lv_status st = open_demuxer(v->path, v->mem, v->mem_size, name, true, &fmt);
    if (st != LV_OK) goto fail;
    snprintf(v->format_name, sizeof(v->format_name), "%s", fmt->iformat->name);
    v->file_size = fmt->pb ? avio_size(fmt->pb) : -1;
    v->seekable = fmt->pb && (fmt->pb->seekable & AVIO_SEEKABLE_NORMAL);
    v->fmt_start_time = fmt->start_time;

    v->n_streams = (int32_t)fmt->nb_streams;
    v->streams = lv_calloc(fmt->nb_streams ? fmt->nb_streams : 1, sizeof(lv_vstream_desc));
    if (!v->streams) {
        st = LV_ERR_NOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < fmt->nb_streams; i++) {
        v->streams[i].index = (int32_t)i;
        describe_stream(fmt->streams[i], v->streams[i].line, sizeof(v->streams[i].line));
    }

    if (params.stream >= 0) {
        if (params.stream >= (int)fmt->nb_streams) {
            st = lv_error(LV_ERR_INVALID_ARG, "%s has %u streams: there is no stream %d", name, fmt->nb_streams,
                          params.stream);
            goto fail;
        }
        if (fmt->streams[params.stream]->codecpar->codec_type != AVMEDIA_TYPE_VIDEO) {
            st = lv_error(LV_ERR_INVALID_ARG, "%s: stream %d is not a video stream (%s)", name, params.stream,
                          v->streams[params.stream].line);
            goto fail;
        }
        v->stream = params.stream;
    } else {
        v->stream = choose_stream(fmt);
        if (v->stream < 0) {
            st = lv_error(LV_ERR_UNSUPPORTED, "%s has no video stream (%u streams%s%s)", name, fmt->nb_streams,
                          fmt->nb_streams ? ", the first: " : "", fmt->nb_streams ? v->streams[0].line : "");
            goto fail;
        }
    }
    AVStream *stream = fmt->streams[v->stream];
    v->tb = stream->time_base;
    v->avg_frame_rate = stream->avg_frame_rate;
    v->sar = stream->sample_aspect_ratio;
    if (v->tb.num <= 0 || v->tb.den <= 0) {
        st = lv_error(LV_ERR_FORMAT, "%s: stream %d has an invalid time base %d/%d", name, v->stream, v->tb.num, v->tb.den);
        goto fail;
    }
    v->par = avcodec_parameters_alloc();
    if (!v->par || avcodec_parameters_copy(v->par, stream->codecpar) < 0) {
        st = lv_error(LV_ERR_NOMEM, "%s: out of memory", name);
        goto fail;
    }
    const AVCodec *dec = avcodec_find_decoder(v->par->codec_id);
    if (!dec) {
        st = lv_error(LV_ERR_UNSUPPORTED, "%s: stream %d: no decoder for codec %s in this FFmpeg", name, v->stream,
                      avcodec_get_name(v->par->codec_id));
        goto fail;
    }
    int64_t w = v->par->width, h = v->par->height;
    if (w <= 0 || h <= 0) {
        st = lv_error(LV_ERR_FORMAT, "%s: stream %d: frame size unknown (%lldx%lld): no decodable frame found", name,
                      v->stream, (long long)w, (long long)h);
        goto fail;
    }
    if (w > 32768 || h > 32768 || w * h > params.max_pixels) {
        st = lv_error(LV_ERR_FORMAT, "%s: stream %d: absurd frame size %lldx%lld (max_pixels %lld)", name, v->stream,
                      (long long)w, (long long)h, (long long)params.max_pixels);
        goto fail;
    }
    if (v->par->format < 0) {
        st = lv_error(LV_ERR_FORMAT, "%s: stream %d: pixel format unknown: no decodable frame found", name, v->stream);
        goto fail;
    }
    v->nal_codec = v->par->codec_id == AV_CODEC_ID_H264 ? LV_NAL_H264
                   : v->par->codec_id == AV_CODEC_ID_HEVC ? LV_NAL_HEVC : LV_NAL_NONE;
    v->nal_length_size = lv_nal_length_size(v->nal_codec, v->par->extradata, v->par->extradata_size);

    for (unsigned i = 0; i < fmt->nb_streams; i++)
        fmt->streams[i]->discard = (int)i == v->stream ? AVDISCARD_DEFAULT : AVDISCARD_ALL;
    /* No seek: the packets avformat_find_stream_info read ahead are buffered inside libavformat
     * and come back first, so the scan sees every packet from the start, as the ffmpeg CLI does. */
    st = scan_packets(v, fmt, params.max_packets);
    if (st != LV_OK) goto fail;
    if (v->n_pkts == 0) {
        st = lv_error(LV_ERR_FORMAT, "%s: stream %d has no packets%s%s", name, v->stream, v->probe_warning[0] ? ": " : "",
                      v->probe_warning);
        goto fail;
    }
    if (v->probe_warning[0]) LV_LOG_W("%s: %s", name, v->probe_warning);
    if (stream->nb_frames > v->n_pkts && !v->probe_warning[0])
        LV_LOG_W("%s: the container announces %lld frames, %lld could be read (truncated file?)", name,
                 (long long)stream->nb_frames, (long long)v->n_pkts);

    lv_video_info *in = &v->info;
    in->stream = v->stream;
    in->n_streams = v->n_streams;
    snprintf(in->codec, sizeof(in->codec), "%s", avcodec_get_name(v->par->codec_id));
    const char *pf = av_get_pix_fmt_name((enum AVPixelFormat)v->par->format);
    snprintf(in->pix_fmt, sizeof(in->pix_fmt), "%s", pf ? pf : "?");
    in->width = v->par->width;
    in->height = v->par->height;
    in->tb_num = v->tb.num;
    in->tb_den = v->tb.den;
    st = build_index(v);
    if (st != LV_OK) goto fail;
    if (v->n_frames == 0) {
        st = lv_error(LV_ERR_FORMAT, "%s: stream %d has no frame to show (every packet is cut by an edit list)", name,
                      v->stream);
        goto fail;
    }
    if (!v->split_ok)
        LV_LOG_I("%s: using the sequential decoder: %s", name, v->split_why);
    lv_video_close_demuxer_(&fmt);
    *out = v;
    return LV_OK;
fail:
    lv_video_close_demuxer_(&fmt);
    lv_video_free(v);
    return st;
}

lv_status lv_video_open(const char *path, lv_video_open_params params, lv_video **out) {
    if (!out) return lv_error(LV_ERR_INVALID_ARG, "lv_video_open: out is NULL");
    *out = NULL;
    if (!path) return lv_error(LV_ERR_INVALID_ARG, "lv_video_open: path is NULL");
    return video_open(path, NULL, 0, params, out);
}

lv_status lv_video_open_memory(const void *data, int64_t size, lv_video_open_params params, lv_video **out) {
    if (!out) return lv_error(LV_ERR_INVALID_ARG, "lv_video_open_memory: out is NULL");
    *out = NULL;
    return video_open(NULL, data, size, params, out);
}

void lv_video_free(lv_video *v) {
    if (!v) return;
    avcodec_parameters_free(&v->par);
    lv_free(v->path);
    lv_free(v->streams);
    lv_free(v->pkts);
    lv_free(v->frames);
    lv_free(v->gops);
    lv_free(v->dts_order);
    lv_free(v->pos_order);
    lv_free(v);
}

void lv_video_get_info(const lv_video *v, lv_video_info *info) {
    if (!v || !info) return;
    *info = v->info;
}

double lv_video_keyframe_time(const lv_video *v, int64_t i) {
    if (!v || i < 0 || i >= v->n_gops) return NAN;
    const lv_vpkt *p = &v->pkts[v->gops[i]];
    int64_t t = p->pts != AV_NOPTS_VALUE ? p->pts : p->dts;
    return (double)t * av_q2d(v->tb);
}

/* -------------------------------------------------------------------------------------------
 * lookups
 * ----------------------------------------------------------------------------------------- */

/* The same packet? Byte position and size identify it when the container has positions; pts
 * when known on both sides. dts is compared only without positions: libavformat derives it for
 * some containers (Matroska) and it can differ between two openings of the file, or after a seek. */
static bool pkt_matches(const lv_vpkt *p, const AVPacket *pkt, bool by_pos) {
    if (p->size != pkt->size) return false;
    if (p->pts != AV_NOPTS_VALUE && pkt->pts != AV_NOPTS_VALUE && p->pts != pkt->pts) return false;
    if (by_pos) return p->pos == pkt->pos;
    return p->dts == pkt->dts && p->pts == pkt->pts;
}

int64_t lv_video_find_packet_(const lv_video *v, const AVPacket *pkt, int64_t hint) {
    bool by_pos = v->pos_order && pkt->pos >= 0;
    if (hint >= 0 && hint < v->n_pkts && pkt_matches(&v->pkts[hint], pkt, by_pos)) return hint;
    if (by_pos) {
        int64_t lo = 0, hi = v->n_pkts;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (v->pkts[v->pos_order[mid]].pos < pkt->pos) lo = mid + 1;
            else hi = mid;
        }
        if (lo < v->n_pkts && pkt_matches(&v->pkts[v->pos_order[lo]], pkt, true)) return v->pos_order[lo];
        return -1;
    }
    int64_t key = pkt->dts != AV_NOPTS_VALUE ? pkt->dts : pkt->pts;
    int64_t lo = 0, hi = v->n_pkts;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (pkt_sort_dts(&v->pkts[v->dts_order[mid]]) < key) lo = mid + 1;
        else hi = mid;
    }
    for (int64_t i = lo; i < v->n_pkts && pkt_sort_dts(&v->pkts[v->dts_order[i]]) == key; i++)
        if (pkt_matches(&v->pkts[v->dts_order[i]], pkt, false)) return v->dts_order[i];
    return -1;
}

int64_t lv_video_find_frame_(const lv_video *v, int64_t pts) {
    int64_t lo = 0, hi = v->n_frames;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (v->pkts[v->frames[mid]].pts < pts) lo = mid + 1;
        else hi = mid;
    }
    return lo < v->n_frames && v->pkts[v->frames[lo]].pts == pts ? lo : -1;
}

int64_t lv_video_gop_of_(const lv_video *v, int64_t p) {
    int64_t lo = 0, hi = v->n_gops;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (v->gops[mid] <= p) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* -------------------------------------------------------------------------------------------
 * describe
 * ----------------------------------------------------------------------------------------- */

typedef struct sbuf {
    char *buf;
    size_t cap;
    int64_t len;
} sbuf;

static void sb_printf(sbuf *s, const char *fmt, ...) LV_PRINTF(2, 3);
static void sb_printf(sbuf *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = s->len < (int64_t)s->cap ? s->cap - (size_t)s->len : 0;
    int k = vsnprintf(room ? s->buf + s->len : NULL, room, fmt, ap);
    va_end(ap);
    if (k > 0) s->len += k;
}

int64_t lv_video_describe(const lv_video *v, int64_t max_keyframes, char *buf, size_t buf_size) {
    sbuf s = {buf, buf ? buf_size : 0, 0};
    if (buf && buf_size) buf[0] = '\0';
    if (!v) return 0;
    const lv_video_info *in = &v->info;
    sb_printf(&s, "file:      %s (%s", lv_video_name_(v), v->format_name);
    if (v->file_size >= 0) sb_printf(&s, ", %.1f MB", (double)v->file_size / 1e6);
    sb_printf(&s, ")\nstreams:\n");
    for (int32_t i = 0; i < v->n_streams; i++)
        sb_printf(&s, "  #%d %s%s\n", v->streams[i].index, v->streams[i].line, i == v->stream ? "   <- chosen" : "");
    sb_printf(&s, "video:     stream %d, %s %s %dx%d, time base %d/%d\n", in->stream, in->codec, in->pix_fmt, in->width,
              in->height, in->tb_num, in->tb_den);
    sb_printf(&s, "time:      first frame at %.3f s, duration %.3f s, %.3f fps average%s\n", in->start_s, in->duration_s,
              in->avg_fps, in->vfr ? ", variable frame rate" : ", constant frame rate");
    int64_t n_discard = 0;
    for (int64_t i = 0; i < v->n_pkts; i++) n_discard += (v->pkts[i].flags & LV_PKT_DISCARD) != 0;
    sb_printf(&s, "frames:    %lld shown, %lld packets", (long long)in->n_frames, (long long)in->n_packets);
    if (n_discard) sb_printf(&s, " (%lld cut by an edit list)", (long long)n_discard);
    sb_printf(&s, "\n");
    sb_printf(&s, "GOPs:      %lld keyframes, longest GOP %d packets, mean %.1f\n", (long long)in->n_keyframes, in->max_gop,
              in->n_keyframes ? (double)in->n_packets / (double)in->n_keyframes : 0.0);
    if (v->nal_codec != LV_NAL_NONE) {
        int64_t n_idr = 0, n_rec = 0;
        for (int64_t g = 0; g < v->n_gops; g++) {
            int k = v->pkts[v->gops[g]].nal_kind;
            n_idr += k == LV_NAL_KIND_IDR;
            n_rec += k == LV_NAL_KIND_RECOVERY;
        }
        sb_printf(&s, "           %lld closed (IDR), %lld open (%s), %lld leading frames\n", (long long)n_idr,
                  (long long)n_rec, v->nal_codec == LV_NAL_HEVC ? "CRA" : "recovery point", (long long)in->n_leading);
        sb_printf(&s, "reference: %lld of %lld frames are not referenced (%.1f%%): skipped when no sample needs them\n",
                  (long long)in->n_nonref, (long long)in->n_packets,
                  in->n_packets ? 100.0 * (double)in->n_nonref / (double)in->n_packets : 0.0);
    } else {
        sb_printf(&s, "reference: unknown for %s (no frame is skipped inside a decoded GOP)\n", in->codec);
    }
    sb_printf(&s, "reorder:   B-frame reordering depth %d\n", in->max_reorder);
    if (v->split_ok) sb_printf(&s, "decoding:  planned from this index; parallel intervals split at keyframes\n");
    else sb_printf(&s, "decoding:  sequential (%s)\n", v->split_why);
    if (v->probe_warning[0]) sb_printf(&s, "warning:   %s\n", v->probe_warning);
    /* the first GOP in decode order: K keyframe, R reference, n non-reference, l leading, x cut */
    if (v->n_gops > 0) {
        int64_t a = v->gops[0], b = v->n_gops > 1 ? v->gops[1] : v->n_pkts;
        int64_t show = LV_MIN(b - a, 120);
        sb_printf(&s, "GOP 0:     ");
        for (int64_t i = a; i < a + show; i++) {
            const lv_vpkt *p = &v->pkts[i];
            char c = (p->flags & LV_PKT_KEY) ? 'K' : (p->flags & LV_PKT_NONREF) ? 'n' : 'R';
            if (p->flags & LV_PKT_LEADING) c = (p->flags & LV_PKT_NONREF) ? 'l' : 'L';
            if (p->flags & LV_PKT_DISCARD) c = 'x';
            sb_printf(&s, "%c", c);
        }
        sb_printf(&s, "%s  (decode order: K key, R reference, n not referenced, L/l leading, x cut)\n",
                  b - a > show ? "..." : "");
    }
    int64_t nk = max_keyframes < 0 ? v->n_gops : LV_MIN(max_keyframes, v->n_gops);
    sb_printf(&s, "keyframes (s):");
    for (int64_t g = 0; g < nk; g++) sb_printf(&s, " %.3f", lv_video_keyframe_time(v, g));
    if (nk < v->n_gops) sb_printf(&s, " ... (%lld more)", (long long)(v->n_gops - nk));
    sb_printf(&s, "\n");
    return s.len;
}
