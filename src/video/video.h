/*
 * video.h: what the files of the video module share (internal; the public API is the
 * "video" section of include/longview.h, the design is docs/video.md).
 *
 * The module src/video/ (docs/architecture.md):
 *   Owns:  probing, the sampling plan, interval-parallel decoding into ordered slots, conversion,
 *          and the other direction for generated videos (RGB resizing, an H.264 writer), on
 *          FFmpeg's libav* (docs/video.md, docs/vniah.md).
 *   Never: decodes a codec itself, prints, or runs a model.
 *
 *   probe.c    open a file or a memory buffer, choose the stream, demux every packet of it once
 *              (no decoding) into the packet index: timestamps, keyframes, which frames nothing
 *              references, open-GOP leading frames; describe it
 *   nal.c      the few bits of H.264/HEVC NAL headers the index needs (reference or not,
 *              random-access point or not); no decoding
 *   plan.c     sampling rules (fps as ffmpeg's fps filter, evenly spread count, explicit
 *              times, all) -> samples -> needed frames -> decode runs per GOP -> intervals
 *   convert.c  decoded frame -> RGB24 at the output size, exactly as ffmpeg's scale filter
 *              does it (same swscale flags and colour details); float normalisation; PNG
 *   decode.c   the reader: N decode threads over intervals, ordered slots with ready flags,
 *              bounded memory; and the sequential reference path
 *   encode.c   RGB24 -> RGB24 resizing with the reader's swscale settings (lv_video_scaler), and
 *              RGB24 frames -> libx264 -> MP4 (lv_video_writer): test and evaluation videos
 *
 * Not here: codecs (libavcodec decodes and encodes everything), model-specific preprocessing beyond
 * mean/std normalisation.
 */
#ifndef LV_VIDEO_H
#define LV_VIDEO_H

#include "core/core.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/frame.h>
#include <pthread.h>
#include <stdatomic.h>

/* ---- packet index -------------------------------------------------------------------- */

enum {
    LV_PKT_KEY      = 1 << 0, /* a GOP starts here: the container says keyframe (and, for H.264/HEVC, the
                                 bitstream agrees that it is a random-access point) */
    LV_PKT_DISCARD  = 1 << 1, /* decoded (it may be a reference) but never shown: an edit list cut it */
    LV_PKT_NONREF   = 1 << 2, /* no other frame references it: may be skipped when no sample needs it */
    LV_PKT_LEADING  = 1 << 3, /* after its GOP's keyframe in decode order, before it in presentation
                                 order (open GOP): needs the previous GOP to decode correctly */
    LV_PKT_CONTAINER_KEY = 1 << 4, /* the container flagged it keyframe (whether or not we use it) */
};

typedef struct lv_vpkt {
    int64_t pts;      /* presentation timestamp (stream time base, as demuxed) */
    int64_t dts;
    int64_t pos;      /* byte position in the file, -1 if unknown */
    int64_t duration; /* stream time base, 0 if unknown */
    int64_t frame;    /* index in presentation order, -1 for DISCARD packets */
    int32_t size;
    uint8_t flags;
    uint8_t tid;      /* HEVC temporal id (0 otherwise) */
    uint8_t nal_kind; /* LV_NAL_* from nal.c (for video-info) */
    uint8_t pad_;
} lv_vpkt;

/* ---- nal.c ---- */

typedef enum lv_nal_codec { LV_NAL_NONE = 0, LV_NAL_H264, LV_NAL_HEVC } lv_nal_codec;

enum {
    LV_NAL_KIND_UNKNOWN = 0,
    LV_NAL_KIND_IDR,      /* H.264 IDR, HEVC IDR/BLA: a closed GOP starts */
    LV_NAL_KIND_RECOVERY, /* H.264 I slice with a recovery-point SEI, HEVC CRA: an open GOP starts */
    LV_NAL_KIND_REF,      /* a reference frame */
    LV_NAL_KIND_NONREF,   /* nothing references it (H.264 nal_ref_idc 0; HEVC sub-layer non-reference) */
};

typedef struct lv_nal_info {
    int kind;        /* LV_NAL_KIND_* */
    int tid;         /* HEVC TemporalId of the VCL NAL units (the smallest seen) */
    bool hevc_slnr;  /* HEVC: every VCL NAL unit is a sub-layer non-reference picture */
    bool hevc_rasl;  /* HEVC: RASL picture */
} lv_nal_info;

/* From the codec parameters' extradata: the NAL length-prefix size (1..4) of avcC/hvcC streams, or 0
 * for Annex B start codes. */
int lv_nal_length_size(lv_nal_codec codec, const uint8_t *extradata, int extradata_size);
/* Classify one packet. Never reads outside [data, data+size); anything unparsable is "unknown",
 * which every caller treats as a reference frame (the safe side). */
lv_nal_info lv_nal_classify(lv_nal_codec codec, int length_size, const uint8_t *data, int64_t size);

/* ---- the opened video ---- */

typedef struct lv_vstream_desc {
    int32_t index;
    char    line[200]; /* "video h264 (High) 1280x720 yuv420p 25 fps" */
} lv_vstream_desc;

struct lv_video {
    char *path;               /* file path, or NULL when opened from memory */
    const uint8_t *mem;       /* memory input (not owned) */
    int64_t mem_size;
    char  format_name[64];
    int64_t file_size;

    int stream;               /* chosen stream index */
    AVCodecParameters *par;   /* its parameters after avformat_find_stream_info (owned copy) */
    AVRational tb;            /* its time base */
    AVRational avg_frame_rate;
    AVRational sar;           /* stream sample aspect ratio (the CLI overrides the frame's with it) */
    int64_t fmt_start_time;   /* AVFormatContext.start_time (AV_TIME_BASE units) or AV_NOPTS_VALUE */
    int64_t ts_offset;        /* added to pts to get the timestamps the ffmpeg CLI works with (tb) */
    lv_nal_codec nal_codec;
    int nal_length_size;
    bool seekable;

    lv_vstream_desc *streams;
    int32_t n_streams;

    lv_vpkt *pkts;            /* (n_pkts) decode order */
    int64_t n_pkts;
    int64_t *frames;          /* (n_frames) presentation order -> packet index */
    int64_t n_frames;
    int64_t *gops;            /* (n_gops) packet index where each GOP starts; gops[0] == 0 */
    int64_t n_gops;
    int64_t *dts_order;       /* (n_pkts) packet indices sorted by (dts, index): find a packet after a seek */
    int64_t *pos_order;       /* (n_pkts) sorted by byte position when every packet has a distinct one, else NULL
                                 (dts can differ between two openings of a file: libavformat derives it) */

    int64_t end_pts;          /* the end of the last frame as the ffmpeg CLI signals EOF (tb, with ts_offset) */
    bool split_ok;            /* planning from the index + parallel/seeking decode is exact (docs/video.md) */
    char split_why[160];      /* why not, when !split_ok */
    int64_t n_lost_probe;     /* packets the probe could not read (damage) */
    char probe_warning[200];

    lv_video_info info;
};

/* Open a demuxer on the video's file or memory (each decode thread has its own). On success the
 * stream's discard is default and every other stream's is AVDISCARD_ALL. find_info: also run
 * avformat_find_stream_info (the probe does; decode threads reuse the probe's parameters). */
lv_status lv_video_open_demuxer_(const lv_video *v, const char *path, bool find_info, AVFormatContext **out);

/* A buffer read through libavformat (avio_alloc_context's read and seek callbacks, opaque = the
 * lv_mem_io): a video opened from memory, and the image decoder (vision/image.c). */
typedef struct lv_mem_io {
    const uint8_t *data;
    int64_t size, pos;
} lv_mem_io;
int     lv_mem_io_read(void *opaque, uint8_t *buf, int n);
int64_t lv_mem_io_seek(void *opaque, int64_t off, int whence);
void      lv_video_close_demuxer_(AVFormatContext **fmt);
/* "file.mp4" or "<memory>" for messages */
const char *lv_video_name_(const lv_video *v);
/* Find the packet index of a demuxed packet (after a seek): by dts, then pts and position.
 * hint: the index we expect (checked first). Returns -1 if the packet is not in the index. */
int64_t lv_video_find_packet_(const lv_video *v, const AVPacket *pkt, int64_t hint);
/* Presentation index of a frame with this pts (stream time base, as demuxed), -1 if none. */
int64_t lv_video_find_frame_(const lv_video *v, int64_t pts);
/* GOP containing packet p. */
int64_t lv_video_gop_of_(const lv_video *v, int64_t p);
/* The same libav error text for every message. */
const char *lv_av_err_(int err, char buf[64]);

/* ---- decode.c: the reader under a shared thread budget (core/budget.c) ----
 * As lv_video_read_start, with the decode threads taking a token of b for each slice of their
 * work (a packet demuxed, decoded and converted) and giving it back before they block; they are
 * urgent (take tokens from the pool at its next job boundary) while fewer than `low` frames are
 * ready in order ahead of the consumer, until `high` are (both capped by max_buffered_bytes).
 * lv_video_reader_next gives the pool's tokens back (lv_budget_pool_leave) before it blocks:
 * the consumer is the pool's caller. b NULL: as lv_video_read_start. */
lv_status lv_video_read_start_budget_(lv_video *v, const lv_video_read_params *p, lv_budget *b, int64_t low, int64_t high,
                                      lv_video_reader **out);
/* Frames decoded in order so far: the consumer's position plus the frames ready right after it. */
int64_t   lv_video_reader_n_ready_(lv_video_reader *r);

/* ---- plan.c ---- */

typedef struct lv_vsample {
    int64_t frame;  /* presentation index of the source frame */
    double  time_s; /* the sample's time: tick / fps for FPS, the frame's time otherwise */
} lv_vsample;

/* A run of packets fed to one decoder without a flush: [first, last] in decode order. The run
 * starts at a GOP start (a keyframe, or packet 0); packets inside it are skipped as decided by
 * lv_plan_feed_ (non-reference frames no sample needs, everything after the last needed packet
 * of a GOP that the next GOP does not need). */
typedef struct lv_vrun {
    int64_t first, last;
    int64_t gop_first, gop_last; /* GOPs it spans */
} lv_vrun;

typedef struct lv_vinterval {
    int64_t run_first, run_count;   /* runs [run_first, run_first + run_count) */
    int64_t sample_first, sample_end; /* samples it produces: [sample_first, sample_end) */
    double  cost;
} lv_vinterval;

typedef struct lv_vplan {
    lv_vsample *samples;  /* (n_samples) in output order */
    int64_t n_samples;
    /* per packet: 1 = feed to the decoder, 0 = skip (only meaningful inside runs) */
    uint8_t *feed;        /* (n_pkts) */
    uint8_t *needed;      /* (n_pkts) a sample uses this packet's frame */
    int64_t *frame_sample;/* (n_frames) first sample using the frame, -1 if none */
    lv_vrun *runs;
    int64_t n_runs;
    lv_vinterval *intervals;
    int64_t n_intervals;
    int64_t *gop_interval;/* (n_gops) interval that owns each GOP, -1 if not decoded */
    /* statistics of the plan */
    int64_t n_feed, n_skip_nonref, n_skip_tail, n_gops_skipped, n_needed_frames;
} lv_vplan;

/* Build the samples for a sampling rule (FPS / COUNT / TIMES / ALL) from the index. */
lv_status lv_plan_samples_(const lv_video *v, const lv_video_read_params *p, lv_vsample **out, int64_t *n_out);
/* Samples -> which packets to feed, runs, intervals (n_threads and max_samples_per_interval steer
 * the interval size). skip: false feeds every packet of every decoded GOP (ablation). */
lv_status lv_plan_build_(const lv_video *v, lv_vsample *samples, int64_t n_samples, int n_threads,
                         int64_t max_samples_per_interval, bool skip, lv_vplan *plan);
void lv_plan_free_(lv_vplan *plan);

/* The fps filter's rule applied online to a sequence of frames (the sequential reference uses it
 * while decoding; plan.c runs the same code over the index). */
typedef struct lv_fps_state {
    AVRational in_tb, out_tb;
    int64_t next;       /* next output tick, AV_NOPTS_VALUE before the first frame */
    int64_t held;       /* the buffered frame (caller's id), -1 if none */
    int64_t held_rpts;  /* its pts in output ticks */
    bool first_done;    /* the CLI's CFR padding before the first frame has been applied */
} lv_fps_state;
/* Each call may emit zero or more (frame id, tick) pairs through emit. */
typedef lv_status (*lv_fps_emit_fn)(void *user, int64_t id, int64_t tick);
void      lv_fps_init_(lv_fps_state *s, AVRational in_tb, double fps);
lv_status lv_fps_push_(lv_fps_state *s, int64_t id, int64_t pts, lv_fps_emit_fn emit, void *user);
lv_status lv_fps_eof_(lv_fps_state *s, int64_t end_pts, lv_fps_emit_fn emit, void *user);

/* ---- convert.c ---- */

typedef struct lv_vconv {
    struct SwsContext *sws;
    int src_w, src_h, src_fmt, src_space, src_range;
    int dst_w, dst_h;
    AVFrame *tmp; /* aligned RGB24 destination, as the scale filter's output buffer */
} lv_vconv;

/* Convert a decoded frame to RGB24 (dst_w x dst_h, rows packed: stride dst_w*3) as
 * `-vf scale=W:H -pix_fmt rgb24` does in the ffmpeg CLI. */
lv_status lv_vconv_rgb24_(lv_vconv *c, const AVFrame *src, int dst_w, int dst_h, uint8_t *dst);
void      lv_vconv_free_(lv_vconv *c);
/* RGB24 (h, w, 3) -> float (3, h, w) with (x/255 - mean[c]) / std[c]. */
void      lv_vconv_normalize_(const uint8_t *rgb, int w, int h, const float mean[3], const float std_[3], float *out);

#endif /* LV_VIDEO_H */
