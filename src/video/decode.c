/*
 * decode.c: the reader. Decode threads turn the plan into frames; the consumer takes them in
 * order.
 *
 * DESIGN
 *  - Threads. The reader owns its decode threads (one per interval in flight, at most
 *    n_threads). The library's lv_threadpool runs fork-join jobs that block the caller until
 *    every thread returns; an interval is long-running work that must overlap with a consumer
 *    (the vision encoder starting on frame 0 while frame 500 decodes), so the reader keeps
 *    plain pthreads of its own, for its lifetime. Each thread has its own demuxer, decoder
 *    (thread_count 1: the parallelism is across intervals) and scaler.
 *  - Work. A free thread takes the costliest interval among the next 2 x n_threads not yet
 *    taken that the memory gate admits: frames still complete roughly in presentation order, threads
 *    balance dynamically, and an interval much costlier than its neighbours (a long GOP near the
 *    end) starts early instead of becoming the last thread's tail.
 *  - Slots. Every planned sample has a slot (buffer + state: pending, ready, lost). A thread
 *    writes a frame into its slot and marks it ready; the consumer waits for the next slot in
 *    order. One mutex guards the slot states and the free-buffer list (taken once per frame,
 *    never per packet); two condition variables wake the consumer and gated threads.
 *  - Bounded memory. A thread may start an interval only if its samples lie within
 *    max_buffered frames of the consumer (or the consumer is already inside it), so at most
 *    about max_buffered + one interval of frames are held, whatever the video's length. Intervals
 *    are sized to hold at most max_buffered / (2 n_threads) samples. The gate cannot deadlock:
 *    the interval holding the consumer's next sample is always allowed to run, and a running
 *    interval never waits.
 *  - Shared thread budget (optional, lv_video_read_start_budget_; core/budget.c): each thread
 *    takes a token before each slice of work (a packet) and gives it back before any wait; it is
 *    urgent while fewer than `low` frames are ready in order ahead of the consumer, until `high`
 *    are, and then takes tokens from the consumer's pool at the pool's next job boundary. The
 *    consumer gives the pool's tokens back when it waits for a frame.
 *  - Damage. A packet the demuxer cannot deliver makes every frame decoded after it in its GOP
 *    (and the next GOP's leading frames) untrustworthy: they are marked bad and their samples
 *    lost, and decoding resumes cold at the next keyframe. At the end of each interval its
 *    samples that never arrived are marked lost, with one warning naming the times.
 *  - Sequential path (the reference, and the fallback when the index cannot be trusted): one
 *    thread decodes every packet in file order and applies the sampling rule online to the
 *    frames as they come out, the way the ffmpeg CLI does; it appends slots as it goes.
 */
#include "video/video.h"

#include <libavutil/imgutils.h>

#include <libavutil/mathematics.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

enum { SLOT_PENDING = 0, SLOT_READY = 1, SLOT_LOST = 2 };

typedef struct vslot {
    uint8_t *buf;
    int64_t frame; /* source frame */
    int64_t pts;
    double time_s;
    int8_t state;
} vslot;

struct seq_state;

typedef struct vworker {
    lv_video_reader *r;
    int id;
    pthread_t thread;
    bool started, joined; /* joined: only the consumer's thread touches it */

    AVFormatContext *fmt;
    AVCodecContext *dec;
    AVPacket *pkt;     /* the packet read ahead (have) */
    bool have;
    int64_t cur_idx;   /* its index */
    int64_t next_idx;  /* index expected from the next read, -1 after a seek */
    bool eof;
    bool dec_used;     /* packets were fed since the last flush */
    AVFrame *frame;
    lv_vconv conv;
    uint8_t *rgb;      /* scratch for F32 output */
    int64_t interval;  /* the interval being decoded */
    bool no_index;     /* sequential path: feed packets without looking them up */
    struct seq_state *seq;
    bool tok;          /* holds a token of the reader's budget */

    int64_t n_decoded, n_seeks, n_decode_errors, n_unexpected, n_damage;
    double busy_s;
    double tok_wait_s; /* waiting for a token of the budget (not busy) */
    /* damaged data seen since the last report: packets the decoder rejected, frames it flagged */
    int64_t n_bad_data;
    double bad_t0, bad_t1;
} vworker;

struct lv_video_reader {
    lv_video *v;
    lv_video_read_params p;
    double *times;
    int64_t *indices;     /* SAMPLE_INDICES: the caller's list, copied */
    int out_w, out_h;
    int64_t frame_bytes;
    bool sequential;
    lv_vplan plan;
    uint8_t *bad; /* (n_pkts) frames not to use (damage) */

    vslot *slots;
    int64_t n_slots, cap_slots;

    pthread_mutex_t mu;
    pthread_cond_t cv_ready; /* a slot changed state, the sequential path finished, or an error */
    pthread_cond_t cv_gate;  /* the consumer advanced, or stop */
    int64_t consumer;        /* next sample to hand out */
    int64_t held, max_held;
    int64_t max_buffered;
    uint8_t **free_bufs;
    int64_t n_free, cap_free;
    int64_t next_interval;   /* the first interval not yet taken */
    uint8_t *taken;          /* (plan.n_intervals) taken by a thread */
    int64_t window;          /* intervals a free thread chooses among: 2 x threads */
    bool seq_done;
    atomic_bool stop;
    lv_status error;
    char error_msg[1024];
    uint8_t *returned; /* buffer of the frame handed out last */
    int64_t n_lost, n_delivered;

    /* the shared thread budget (lv_video_read_start_budget_), or NULL: the decode threads take a
     * token per slice of work; urgent (frames ready in order ahead of the consumer below low,
     * until high) lets them take it from the pool */
    lv_budget *budget;
    int64_t low, high;
    int64_t ready_end;       /* slots [0, ready_end) are ready, lost or consumed */
    atomic_bool urgent;

    vworker *workers;
    int n_workers;
    /* summed when a thread ends */
    int64_t s_decoded, s_seeks, s_decode_errors, s_unexpected, s_damage;
    double s_busy;
};

lv_video_read_params lv_video_default_read_params(void) {
    lv_video_read_params p;
    memset(&p, 0, sizeof(p));
    p.sample = LV_VIDEO_SAMPLE_FPS;
    p.fps = 1.0;
    p.format = LV_VIDEO_RGB24;
    for (int c = 0; c < 3; c++) {
        p.mean[c] = 0.0f;
        p.std[c] = 1.0f;
    }
    p.max_buffered_bytes = (int64_t)256 << 20;
    p.max_samples = (int64_t)1 << 22;
    return p;
}

/* -------------------------------------------------------------------------------------------
 * shared state helpers
 * ----------------------------------------------------------------------------------------- */

/* Record the first fatal error and stop everything. Called on the failing thread, whose
 * lv_last_error() holds the message. */
static void reader_fail(lv_video_reader *r, lv_status st) {
    pthread_mutex_lock(&r->mu);
    if (r->error == LV_OK) {
        r->error = st;
        snprintf(r->error_msg, sizeof(r->error_msg), "%s", lv_last_error()[0] ? lv_last_error() : lv_status_str(st));
    }
    atomic_store(&r->stop, true);
    pthread_cond_broadcast(&r->cv_ready);
    pthread_cond_broadcast(&r->cv_gate);
    pthread_mutex_unlock(&r->mu);
    lv_budget_kick(r->budget); /* a thread waiting for a token sees stop */
}

static bool should_stop(lv_video_reader *r) {
    if (atomic_load_explicit(&r->stop, memory_order_relaxed)) return true;
    if (r->p.abort_fn && r->p.abort_fn(r->p.abort_user)) {
        reader_fail(r, lv_error(LV_ERR_ABORTED, "%s: decoding aborted by the caller", lv_video_name_(r->v)));
        return true;
    }
    return false;
}

/* The frames ready in order moved (mutex held): advance ready_end and set the urgency with its
 * hysteresis. Returns whether the urgency changed (then lv_budget_kick after unlocking). */
static bool ready_moved_locked(lv_video_reader *r) {
    if (r->ready_end < r->consumer) r->ready_end = r->consumer;
    while (r->ready_end < r->n_slots && r->slots[r->ready_end].state != SLOT_PENDING) r->ready_end++;
    if (!r->budget) return false;
    const int64_t ahead = r->ready_end - r->consumer;
    const bool was = atomic_load(&r->urgent);
    bool now = was;
    if (ahead < r->low) now = true;
    else if (ahead >= r->high) now = false;
    if (now != was) atomic_store(&r->urgent, now);
    return now != was;
}

/* the next slice of this thread's work (under a token of the budget when there is one); false: stop */
static bool next_slice(vworker *w) {
    lv_video_reader *r = w->r;
    if (should_stop(r)) return false;
    if (r->budget) {
        const double t = lv_time_s();
        const bool ok = lv_budget_worker_enter(r->budget, &w->tok, &r->urgent, &r->stop);
        w->tok_wait_s += lv_time_s() - t;
        if (!ok) return false;
    }
    return !should_stop(r);
}

/* a frame buffer (mutex held) */
static uint8_t *buf_get_locked(lv_video_reader *r) {
    if (r->n_free > 0) return r->free_bufs[--r->n_free];
    return lv_malloc((size_t)r->frame_bytes);
}

static void buf_put_locked(lv_video_reader *r, uint8_t *b) {
    if (!b) return;
    if (r->n_free == r->cap_free) {
        int64_t nc = r->cap_free ? r->cap_free * 2 : 16;
        uint8_t **nf = lv_realloc(r->free_bufs, (size_t)nc * sizeof(*nf));
        if (!nf) {
            lv_free(b);
            return;
        }
        r->free_bufs = nf;
        r->cap_free = nc;
    }
    r->free_bufs[r->n_free++] = b;
}

/* Convert a decoded frame into a new buffer (RGB24 or normalised float). */
static lv_status convert_frame(vworker *w, const AVFrame *frame, uint8_t **out) {
    lv_video_reader *r = w->r;
    *out = NULL;
    pthread_mutex_lock(&r->mu);
    uint8_t *b = buf_get_locked(r);
    pthread_mutex_unlock(&r->mu);
    if (!b) return LV_ERR_NOMEM;
    lv_status st;
    if (r->p.format == LV_VIDEO_F32_CHW) {
        if (!w->rgb && !(w->rgb = lv_malloc((size_t)r->out_w * (size_t)r->out_h * 3))) st = LV_ERR_NOMEM;
        else st = lv_vconv_rgb24_(&w->conv, frame, r->out_w, r->out_h, w->rgb);
        if (st == LV_OK) lv_vconv_normalize_(w->rgb, r->out_w, r->out_h, r->p.mean, r->p.std, (float *)b);
    } else {
        st = lv_vconv_rgb24_(&w->conv, frame, r->out_w, r->out_h, b);
    }
    if (st != LV_OK) {
        lv_error_prefix("%s: frame at pts %lld", lv_video_name_(r->v), (long long)frame->pts);
        pthread_mutex_lock(&r->mu);
        buf_put_locked(r, b);
        pthread_mutex_unlock(&r->mu);
        return st;
    }
    *out = b;
    return LV_OK;
}

/* Put a converted frame into slots [s0, s1) (copies for the extra ones). */
static lv_status fill_slots(lv_video_reader *r, int64_t s0, int64_t s1, uint8_t *b) {
    pthread_mutex_lock(&r->mu);
    for (int64_t s = s0; s < s1; s++) {
        uint8_t *d = b;
        if (s > s0) {
            d = buf_get_locked(r);
            if (!d) {
                pthread_mutex_unlock(&r->mu);
                return LV_ERR_NOMEM;
            }
            memcpy(d, b, (size_t)r->frame_bytes);
        }
        if (r->slots[s].state != SLOT_PENDING) { /* delivered twice (a decoder quirk): keep the first */
            buf_put_locked(r, d);
            continue;
        }
        r->slots[s].buf = d;
        r->slots[s].state = SLOT_READY;
        r->held++;
        if (r->held > r->max_held) r->max_held = r->held;
    }
    const bool kick = ready_moved_locked(r);
    pthread_cond_broadcast(&r->cv_ready);
    pthread_mutex_unlock(&r->mu);
    if (kick) lv_budget_kick(r->budget);
    return LV_OK;
}

/* -------------------------------------------------------------------------------------------
 * demuxing and decoding on one thread
 * ----------------------------------------------------------------------------------------- */

static lv_status worker_open(vworker *w, bool find_info) {
    lv_video *v = w->r->v;
    const char *name = lv_video_name_(v);
    lv_status st = lv_video_open_demuxer_(v, v->path, find_info, &w->fmt);
    if (st != LV_OK && !find_info) st = lv_video_open_demuxer_(v, v->path, true, &w->fmt);
    if (st != LV_OK) return st;
    const AVCodec *codec = avcodec_find_decoder(v->par->codec_id);
    if (!codec) return lv_error(LV_ERR_UNSUPPORTED, "%s: no decoder for %s", name, avcodec_get_name(v->par->codec_id));
    w->dec = avcodec_alloc_context3(codec);
    w->pkt = av_packet_alloc();
    w->frame = av_frame_alloc();
    if (!w->dec || !w->pkt || !w->frame) return lv_error(LV_ERR_NOMEM, "%s: out of memory", name);
    if (avcodec_parameters_to_context(w->dec, v->par) < 0) return lv_error(LV_ERR_NOMEM, "%s: out of memory", name);
    w->dec->pkt_timebase = v->tb;
    w->dec->thread_count = 1;
    char eb[64];
    int ret = avcodec_open2(w->dec, codec, NULL);
    if (ret < 0)
        return lv_error(LV_ERR_UNSUPPORTED, "%s: cannot open the %s decoder: %s", name, codec->name, lv_av_err_(ret, eb));
    w->next_idx = 0;
    w->have = false;
    w->eof = false;
    return LV_OK;
}

static void worker_close(vworker *w) {
    lv_video_close_demuxer_(&w->fmt);
    avcodec_free_context(&w->dec);
    av_packet_free(&w->pkt);
    av_frame_free(&w->frame);
    lv_vconv_free_(&w->conv);
    lv_free(w->rgb);
    w->rgb = NULL;
}

/* Make w->pkt the next packet of the stream, with its index in w->cur_idx. false at the end. */
static bool peek_packet(vworker *w) {
    if (w->have) return true;
    if (w->eof) return false;
    lv_video *v = w->r->v;
    for (int again = 0; again < 1000;) {
        int ret = av_read_frame(w->fmt, w->pkt);
        if (ret == AVERROR(EAGAIN)) {
            again++;
            continue;
        }
        if (ret < 0) {
            w->eof = true;
            return false;
        }
        if (w->pkt->stream_index != v->stream) {
            av_packet_unref(w->pkt);
            continue;
        }
        int64_t i = w->no_index ? -1 : lv_video_find_packet_(v, w->pkt, w->next_idx);
        if (i < 0 && !w->no_index) {
            w->n_unexpected++;
            av_packet_unref(w->pkt);
            continue;
        }
        w->cur_idx = i;
        w->next_idx = i < 0 ? -1 : i + 1;
        w->have = true;
        return true;
    }
    w->eof = true;
    return false;
}

static void consume_packet(vworker *w) {
    av_packet_unref(w->pkt);
    w->have = false;
}

/* Seek so that the next packets start at or before packet `target` (the start of GOP g).
 * Returns false if the demuxer cannot seek at all. */
static bool seek_to_gop(vworker *w, int64_t g) {
    lv_video *v = w->r->v;
    const lv_vpkt *k = &v->pkts[v->gops[g]];
    int64_t ts = k->pts;
    if (k->dts != AV_NOPTS_VALUE && (ts == AV_NOPTS_VALUE || k->dts < ts)) ts = k->dts;
    if (w->have) consume_packet(w);
    w->n_seeks++;
    int ret = ts == AV_NOPTS_VALUE ? -1 : av_seek_frame(w->fmt, v->stream, ts, AVSEEK_FLAG_BACKWARD);
    if (ret < 0) ret = avformat_seek_file(w->fmt, v->stream, INT64_MIN, ts, ts, 0);
    w->next_idx = -1;
    w->eof = false;
    return ret >= 0;
}

static lv_status reopen(vworker *w) {
    lv_video *v = w->r->v;
    /* the packet read ahead belongs to the old demuxer: release it (av_read_frame writes over a
     * packet without unreferencing it, so clearing `have` alone leaked its buffers) */
    if (w->have) consume_packet(w);
    lv_video_close_demuxer_(&w->fmt);
    lv_status st = lv_video_open_demuxer_(v, v->path, false, &w->fmt);
    if (st != LV_OK) st = lv_video_open_demuxer_(v, v->path, true, &w->fmt);
    w->n_seeks++;
    w->next_idx = 0;
    w->eof = false;
    return st;
}

/* Position the demuxer so that the next packet is `target` (a GOP start), reading forward when it
 * is in the same or the next GOP and seeking otherwise. On return w->pkt holds target (*found),
 * or the first packet after it if target cannot be read, or nothing at the end of the file. */
static lv_status position(vworker *w, int64_t target, bool *found) {
    lv_video *v = w->r->v;
    *found = false;
    int64_t gt = lv_video_gop_of_(v, target);
    int64_t here = w->have ? w->cur_idx : w->next_idx;
    bool forward = !w->eof && here >= 0 && here <= target && gt - lv_video_gop_of_(v, here) <= 1;
    /* tries: read forward (when close), seek to the GOP, to 1 and 4 GOPs earlier, reopen at the
     * start of the file (which always works, slowly) */
    static const int64_t back[] = {0, 1, 4, -1};
    for (int attempt = forward ? -1 : 0; attempt < (int)LV_ARRAY_LEN(back); attempt++) {
        if (attempt >= 0) {
            lv_status st = LV_OK;
            if (back[attempt] < 0 || gt - back[attempt] < 0) st = reopen(w);
            else if (!seek_to_gop(w, gt - back[attempt])) st = reopen(w);
            if (st != LV_OK) return st;
        }
        bool overshoot = false;
        while (!overshoot && peek_packet(w)) {
            if (w->cur_idx < target) consume_packet(w);
            else if (w->cur_idx == target) {
                *found = true;
                return LV_OK;
            } else overshoot = true;
        }
        if (should_stop(w->r)) return LV_OK;
        if (!overshoot && attempt >= 0 && back[attempt] < 0) break; /* read the whole file: it is not there */
    }
    return LV_OK;
}

/* a cold start at GOP g: its leading frames reference the previous GOP */
static void mark_leading_bad(lv_video_reader *r, int64_t g) {
    lv_video *v = r->v;
    int64_t a = v->gops[g], b = g + 1 < v->n_gops ? v->gops[g + 1] : v->n_pkts;
    for (int64_t q = a; q < b; q++)
        if (v->pkts[q].flags & LV_PKT_LEADING) r->bad[q] = 1;
}

/* mark the packets of GOP g from p on (and the next GOP's leading frames) as untrustworthy */
static void mark_bad_from(lv_video_reader *r, int64_t p) {
    lv_video *v = r->v;
    int64_t g = lv_video_gop_of_(v, p);
    int64_t b = g + 1 < v->n_gops ? v->gops[g + 1] : v->n_pkts;
    for (int64_t q = p; q < b; q++) r->bad[q] = 1;
    /* the next GOP's leading frames, when this thread decodes it too (warm); another interval
     * starts that GOP cold and never uses its leading frames (and owns its bytes of bad[]) */
    if (g + 1 < v->n_gops && r->plan.gop_interval[g + 1] == r->plan.gop_interval[g]) {
        int64_t c = g + 2 < v->n_gops ? v->gops[g + 2] : v->n_pkts;
        for (int64_t q = b; q < c; q++)
            if (v->pkts[q].flags & LV_PKT_LEADING) r->bad[q] = 1;
    }
}

static lv_status handle_frame_planned(vworker *w, AVFrame *frame) {
    lv_video_reader *r = w->r;
    lv_video *v = r->v;
    int64_t ts = frame->pts != AV_NOPTS_VALUE ? frame->pts : frame->best_effort_timestamp;
    int64_t f = ts == AV_NOPTS_VALUE ? -1 : lv_video_find_frame_(v, ts);
    if (f < 0) {
        w->n_unexpected++;
        return LV_OK;
    }
    int64_t s0 = r->plan.frame_sample[f];
    if (s0 < 0) return LV_OK;
    int64_t p = v->frames[f];
    if (r->plan.gop_interval[lv_video_gop_of_(v, p)] != w->interval) return LV_OK; /* another interval's */
    if (r->bad[p]) return LV_OK;
    int64_t s1 = s0 + 1;
    while (s1 < r->plan.n_samples && r->plan.samples[s1].frame == f) s1++;
    uint8_t *b;
    lv_status st = convert_frame(w, frame, &b);
    if (st != LV_OK) return st;
    return fill_slots(r, s0, s1, b);
}

static void note_bad_data(vworker *w, int64_t pts) {
    lv_video *v = w->r->v;
    double t = pts == AV_NOPTS_VALUE ? NAN : (double)(pts + v->ts_offset) * av_q2d(v->tb);
    if (w->n_bad_data == 0 || t < w->bad_t0) w->bad_t0 = t;
    if (w->n_bad_data == 0 || t > w->bad_t1) w->bad_t1 = t;
    w->n_bad_data++;
}

static void report_bad_data(vworker *w) {
    if (w->n_bad_data && !atomic_load(&w->r->stop))
        LV_LOG_W("%s: %lld packets or frames between %.3f s and %.3f s did not decode cleanly (damaged data): frames "
                 "there may be missing or show artifacts",
                 lv_video_name_(w->r->v), (long long)w->n_bad_data, w->bad_t0, w->bad_t1);
    w->n_bad_data = 0;
}

/* Send one packet (NULL: drain) and take every frame that comes out. */
static lv_status decode_packet(vworker *w, AVPacket *pkt, lv_status (*on_frame)(vworker *, AVFrame *)) {
    char eb[64];
    int ret = avcodec_send_packet(w->dec, pkt);
    if (ret < 0 && ret != AVERROR_EOF && ret != AVERROR(EAGAIN)) {
        if (ret == AVERROR(ENOMEM))
            return lv_error(LV_ERR_NOMEM, "%s: decoder out of memory", lv_video_name_(w->r->v));
        w->n_decode_errors++;
        if (pkt) note_bad_data(w, pkt->pts);
        LV_LOG_D("%s: decoding packet at pts %lld: %s", lv_video_name_(w->r->v), pkt ? (long long)pkt->pts : -1LL,
                 lv_av_err_(ret, eb));
    }
    if (pkt) w->dec_used = true;
    for (int errors = 0; errors < 1000;) {
        ret = avcodec_receive_frame(w->dec, w->frame);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) break;
        if (ret < 0) {
            if (ret == AVERROR(ENOMEM))
                return lv_error(LV_ERR_NOMEM, "%s: decoder out of memory", lv_video_name_(w->r->v));
            w->n_decode_errors++;
            errors++;
            continue;
        }
        if (w->frame->decode_error_flags || (w->frame->flags & AV_FRAME_FLAG_CORRUPT))
            note_bad_data(w, w->frame->pts != AV_NOPTS_VALUE ? w->frame->pts : w->frame->best_effort_timestamp);
        lv_status st = on_frame(w, w->frame);
        av_frame_unref(w->frame);
        if (st != LV_OK) return st;
    }
    return LV_OK;
}

static lv_status drain_and_flush(vworker *w, lv_status (*on_frame)(vworker *, AVFrame *)) {
    if (!w->dec_used) return LV_OK;
    lv_status st = decode_packet(w, NULL, on_frame);
    avcodec_flush_buffers(w->dec);
    w->dec_used = false;
    return st;
}

static lv_status decode_run(vworker *w, const lv_vrun *run) {
    lv_video_reader *r = w->r;
    lv_video *v = r->v;
    const uint8_t *feed = r->plan.feed;
    bool found;
    lv_status st = position(w, run->first, &found);
    if (st != LV_OK) return st;
    bool synced = false;
    int64_t expect = run->first;
    while (next_slice(w) && peek_packet(w)) {
        int64_t i = w->cur_idx;
        if (i > run->last) break; /* the next run's */
        if (i < expect) {
            consume_packet(w);
            continue;
        }
        /* packets we should have fed and did not get: damage */
        for (int64_t q = expect; q < i; q++)
            if (feed[q] && !r->bad[q]) {
                w->n_damage++;
                mark_bad_from(r, q);
                synced = false;
                break;
            }
        if (!synced) {
            if (i == 0 || (v->pkts[i].flags & LV_PKT_KEY)) {
                if ((st = drain_and_flush(w, handle_frame_planned)) != LV_OK) return st;
                /* a cold start: this GOP's leading frames reference the previous GOP */
                if (i != run->first) mark_leading_bad(r, lv_video_gop_of_(v, i));
                synced = true;
            } else {
                r->bad[i] = 1;
                consume_packet(w);
                expect = i + 1;
                continue;
            }
        }
        if (feed[i]) {
            w->n_decoded++;
            st = decode_packet(w, w->pkt, handle_frame_planned);
            if (st != LV_OK) return st;
        }
        consume_packet(w);
        expect = i + 1;
    }
    /* the end of the file came before the end of the run */
    for (int64_t q = expect; q <= run->last; q++)
        if (feed[q] && !r->bad[q]) {
            w->n_damage++;
            mark_bad_from(r, q);
            break;
        }
    return drain_and_flush(w, handle_frame_planned);
}

static void finish_interval(lv_video_reader *r, int64_t iv) {
    const lv_vinterval *in = &r->plan.intervals[iv];
    int64_t lost = 0;
    pthread_mutex_lock(&r->mu);
    for (int64_t s = in->sample_first; s < in->sample_end; s++)
        if (r->slots[s].state == SLOT_PENDING) {
            r->slots[s].state = SLOT_LOST;
            lost++;
        }
    const bool kick = ready_moved_locked(r);
    pthread_cond_broadcast(&r->cv_ready);
    pthread_mutex_unlock(&r->mu);
    if (kick) lv_budget_kick(r->budget);
    if (lost && !atomic_load(&r->stop))
        LV_LOG_W("%s: %lld of %lld sampled frames between %.3f s and %.3f s could not be decoded (damaged data or "
                 "missing packets); they are left out",
                 lv_video_name_(r->v), (long long)lost, (long long)(in->sample_end - in->sample_first),
                 r->plan.samples[in->sample_first].time_s, r->plan.samples[in->sample_end - 1].time_s);
}

static lv_status run_intervals(vworker *w) {
    lv_video_reader *r = w->r;
    lv_status st = LV_OK;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        int64_t iv = -1;
        while (!atomic_load(&r->stop) && r->next_interval < r->plan.n_intervals) {
            /* the gate admits a prefix of the untaken intervals (their samples increase) */
            const int64_t end = LV_MIN(r->plan.n_intervals, r->next_interval + r->window);
            for (int64_t i = r->next_interval; i < end; i++) {
                const lv_vinterval *in = &r->plan.intervals[i];
                if (!(in->sample_first <= r->consumer || in->sample_end - r->consumer <= r->max_buffered)) break;
                if (!r->taken[i] && (iv < 0 || in->cost > r->plan.intervals[iv].cost)) iv = i;
            }
            if (iv >= 0) {
                r->taken[iv] = 1;
                while (r->next_interval < r->plan.n_intervals && r->taken[r->next_interval]) r->next_interval++;
                break;
            }
            lv_budget_worker_leave(r->budget, &w->tok); /* never block holding a token */
            pthread_cond_wait(&r->cv_gate, &r->mu);
        }
        pthread_mutex_unlock(&r->mu);
        if (iv < 0) break;
        if (!next_slice(w)) break;
        if (!w->dec && (st = worker_open(w, false)) != LV_OK) return st;
        double t0 = lv_time_s();
        w->tok_wait_s = 0;
        w->interval = iv;
        const lv_vinterval *in = &r->plan.intervals[iv];
        for (int64_t k = 0; k < in->run_count && st == LV_OK && !should_stop(r); k++)
            st = decode_run(w, &r->plan.runs[in->run_first + k]);
        w->busy_s += lv_time_s() - t0 - w->tok_wait_s;
        LV_LOG_D("%s: thread %d: interval %lld (%lld runs, samples %lld..%lld, cost %.3g) in %.3f s",
                 lv_video_name_(r->v), w->id, (long long)iv, (long long)in->run_count, (long long)in->sample_first,
                 (long long)in->sample_end, in->cost, lv_time_s() - t0);
        if (st != LV_OK) return st;
        report_bad_data(w);
        finish_interval(r, iv);
    }
    return LV_OK;
}

/* -------------------------------------------------------------------------------------------
 * the sequential path: every packet in file order, the sampling rule applied online
 * ----------------------------------------------------------------------------------------- */

typedef struct seq_state {
    vworker *w;
    lv_fps_state fps;
    AVFrame *held;        /* the frame the rule may still output (FPS, TIMES) */
    int64_t held_id, held_pts;
    int64_t n_out;        /* frames the decoder has output */
    int64_t last_ts;      /* the last frame's timestamp and duration (for the EOF time) */
    int64_t last_dur;
    int64_t *count_idx;   /* COUNT: the frame numbers wanted, in order */
    int64_t n_count, next_count;
    int64_t next_time;    /* TIMES */
} seq_state;

/* append one sample (blocking while too far ahead of the consumer) */
static lv_status seq_append(seq_state *s, const AVFrame *frame, int64_t id, int64_t pts, double time_s) {
    vworker *w = s->w;
    lv_video_reader *r = w->r;
    uint8_t *b; /* converted again for each duplicate: the slot buffers belong to the consumer once ready */
    lv_status st = convert_frame(w, frame, &b);
    if (st != LV_OK) return st;
    (void)id;
    pthread_mutex_lock(&r->mu);
    while (!atomic_load(&r->stop) && r->n_slots - r->consumer >= r->max_buffered) {
        lv_budget_worker_leave(r->budget, &w->tok); /* never block holding a token */
        pthread_cond_wait(&r->cv_gate, &r->mu);
    }
    if (r->n_slots == r->cap_slots || r->n_slots >= r->p.max_samples) {
        int64_t nc = r->cap_slots ? r->cap_slots * 2 : 256;
        vslot *ns = r->n_slots >= r->p.max_samples ? NULL : lv_realloc(r->slots, (size_t)nc * sizeof(*ns));
        if (!ns) {
            buf_put_locked(r, b);
            pthread_mutex_unlock(&r->mu);
            if (r->n_slots >= r->p.max_samples)
                return lv_error(LV_ERR_INVALID_ARG, "%s: the sampling rule asks for more than %lld frames (max_samples)",
                                lv_video_name_(r->v), (long long)r->p.max_samples);
            return LV_ERR_NOMEM;
        }
        r->slots = ns;
        r->cap_slots = nc;
    }
    vslot *sl = &r->slots[r->n_slots++];
    sl->buf = b;
    sl->frame = id;
    sl->pts = pts;
    sl->time_s = time_s;
    sl->state = SLOT_READY;
    r->held++;
    if (r->held > r->max_held) r->max_held = r->held;
    const bool kick = ready_moved_locked(r);
    pthread_cond_broadcast(&r->cv_ready);
    pthread_mutex_unlock(&r->mu);
    if (kick) lv_budget_kick(r->budget);
    return LV_OK;
}

static lv_status seq_fps_emit(void *user, int64_t id, int64_t tick) {
    seq_state *s = user;
    LV_ASSERT(id == s->held_id);
    return seq_append(s, s->held, id, s->held_pts, (double)tick * av_q2d(s->fps.out_tb));
}

static lv_status seq_on_frame(vworker *w, AVFrame *frame) {
    seq_state *s = w->seq;
    lv_video_reader *r = w->r;
    lv_video *v = r->v;
    /* the timestamp the ffmpeg CLI uses: best_effort_timestamp, shifted by the file start */
    int64_t ts = frame->best_effort_timestamp;
    int64_t id = s->n_out++;
    if (ts == AV_NOPTS_VALUE) {
        w->n_unexpected++;
        return LV_OK; /* the fps filter drops frames without a timestamp too (at the start) */
    }
    s->last_ts = ts;
    s->last_dur = frame->pkt_duration;
    int64_t cli = ts + v->ts_offset;
    double t = (double)cli * av_q2d(v->tb);
    lv_status st = LV_OK;
    switch (r->p.sample) {
    case LV_VIDEO_SAMPLE_FPS: {
        /* lv_fps_push_ emits ticks of the frame held before this one */
        st = lv_fps_push_(&s->fps, id, cli, seq_fps_emit, s);
        if (st == LV_OK && s->fps.held == id) {
            av_frame_unref(s->held);
            if (av_frame_ref(s->held, frame) < 0) return LV_ERR_NOMEM;
            s->held_id = id;
            s->held_pts = ts;
        }
        break;
    }
    case LV_VIDEO_SAMPLE_TIMES:
        if (s->held_id >= 0)
            while (st == LV_OK && s->next_time < r->p.n_times && r->times[s->next_time] < t - 1e-9) {
                st = seq_append(s, s->held, s->held_id, s->held_pts, r->times[s->next_time]);
                s->next_time++;
            }
        av_frame_unref(s->held);
        if (av_frame_ref(s->held, frame) < 0) return LV_ERR_NOMEM;
        s->held_id = id;
        s->held_pts = ts;
        break;
    case LV_VIDEO_SAMPLE_COUNT:
    case LV_VIDEO_SAMPLE_INDICES:
        while (st == LV_OK && s->next_count < s->n_count && s->count_idx[s->next_count] == id) {
            st = seq_append(s, frame, id, ts, t);
            s->next_count++;
        }
        break;
    case LV_VIDEO_SAMPLE_ALL: st = seq_append(s, frame, id, ts, t); break;
    }
    return st;
}

static lv_status run_sequential(vworker *w) {
    lv_video_reader *r = w->r;
    lv_video *v = r->v;
    seq_state s;
    memset(&s, 0, sizeof(s));
    s.w = w;
    s.held_id = -1;
    w->seq = &s;
    w->no_index = true;
    if (!next_slice(w)) return LV_OK;
    lv_status st = worker_open(w, true);
    if (st != LV_OK) return st;
    s.held = av_frame_alloc();
    if (!s.held) return LV_ERR_NOMEM;
    if (r->p.sample == LV_VIDEO_SAMPLE_FPS) lv_fps_init_(&s.fps, v->tb, r->p.fps);
    if (r->p.sample == LV_VIDEO_SAMPLE_COUNT || r->p.sample == LV_VIDEO_SAMPLE_INDICES) {
        /* the count rule needs the number of frames up front: the index's (indices: the same list) */
        lv_vsample *smp;
        st = lv_plan_samples_(v, &r->p, &smp, &s.n_count);
        if (st != LV_OK) goto done;
        s.count_idx = lv_mallocn((size_t)LV_MAX(s.n_count, 1), sizeof(int64_t));
        if (!s.count_idx) {
            lv_free(smp);
            st = LV_ERR_NOMEM;
            goto done;
        }
        for (int64_t i = 0; i < s.n_count; i++) s.count_idx[i] = smp[i].frame;
        lv_free(smp);
    }
    double t0 = lv_time_s();
    w->tok_wait_s = 0;
    while (st == LV_OK && next_slice(w) && peek_packet(w)) {
        w->n_decoded++;
        st = decode_packet(w, w->pkt, seq_on_frame);
        consume_packet(w);
    }
    if (st == LV_OK && !atomic_load(&r->stop)) st = drain_and_flush(w, seq_on_frame);
    if (st == LV_OK && !atomic_load(&r->stop)) {
        if (r->p.sample == LV_VIDEO_SAMPLE_FPS && s.fps.held >= 0) {
            /* EOF as ffmpeg 5.1 signals it: the last frame's pts + duration, via microseconds */
            int64_t us = av_rescale_q(s.last_ts + v->ts_offset, v->tb, AV_TIME_BASE_Q);
            if (s.last_dur > 0) us += av_rescale_q(s.last_dur, v->tb, AV_TIME_BASE_Q);
            else if (v->avg_frame_rate.num > 0 && v->avg_frame_rate.den > 0)
                us += av_rescale_q(1, av_inv_q(v->avg_frame_rate), AV_TIME_BASE_Q);
            int64_t end = av_rescale_q_rnd(us, AV_TIME_BASE_Q, v->tb, AV_ROUND_NEAR_INF | AV_ROUND_PASS_MINMAX);
            st = lv_fps_eof_(&s.fps, end, seq_fps_emit, &s);
        } else if (r->p.sample == LV_VIDEO_SAMPLE_TIMES && s.held_id >= 0) {
            for (; st == LV_OK && s.next_time < r->p.n_times; s.next_time++)
                st = seq_append(&s, s.held, s.held_id, s.held_pts, r->times[s.next_time]);
        }
    }
    w->busy_s += lv_time_s() - t0 - w->tok_wait_s;
    report_bad_data(w);
done:
    av_frame_free(&s.held);
    lv_free(s.count_idx);
    w->seq = NULL;
    pthread_mutex_lock(&r->mu);
    r->seq_done = true;
    pthread_cond_broadcast(&r->cv_ready);
    pthread_mutex_unlock(&r->mu);
    return st;
}

/* -------------------------------------------------------------------------------------------
 * threads
 * ----------------------------------------------------------------------------------------- */

static void join_workers(lv_video_reader *r);

static void *worker_main(void *arg) {
    vworker *w = arg;
    lv_video_reader *r = w->r;
    lv_status st = r->sequential ? run_sequential(w) : run_intervals(w);
    lv_budget_worker_leave(r->budget, &w->tok);
    if (st != LV_OK) reader_fail(r, st);
    worker_close(w);
    pthread_mutex_lock(&r->mu);
    r->s_decoded += w->n_decoded;
    r->s_seeks += w->n_seeks;
    r->s_decode_errors += w->n_decode_errors;
    r->s_unexpected += w->n_unexpected;
    r->s_damage += w->n_damage;
    r->s_busy += w->busy_s;
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

lv_status lv_video_read_start(lv_video *v, const lv_video_read_params *pp, lv_video_reader **out) {
    return lv_video_read_start_budget_(v, pp, NULL, 0, 0, out);
}

lv_status lv_video_read_start_budget_(lv_video *v, const lv_video_read_params *pp, lv_budget *budget, int64_t low, int64_t high,
                                      lv_video_reader **out) {
    if (!out) return lv_error(LV_ERR_INVALID_ARG, "lv_video_read_start: out is NULL");
    *out = NULL;
    if (!v || !pp) return lv_error(LV_ERR_INVALID_ARG, "lv_video_read_start: video or params is NULL");
    const char *name = lv_video_name_(v);
    lv_video_read_params p = *pp;
    if (p.max_samples <= 0) p.max_samples = (int64_t)1 << 22;
    if (p.max_buffered_bytes <= 0) p.max_buffered_bytes = (int64_t)256 << 20;
    int n_threads = p.n_threads > 0 ? p.n_threads : lv_n_cores();
    if (n_threads > 256) n_threads = 256;
    int64_t ow = p.width > 0 ? p.width : v->par->width, oh = p.height > 0 ? p.height : v->par->height;
    if (p.width < 0 || p.height < 0 || ow > 16384 || oh > 16384)
        return lv_error(LV_ERR_INVALID_ARG, "%s: output size %lldx%lld is not in 1..16384", name, (long long)ow,
                        (long long)oh);
    /* FFmpeg's own bound on an image it allocates (av_image_check_size): (8 W + 1024) (H + 128) < 2^31,
     * so 16384 x 16384 is refused here rather than as "out of memory" at the first frame */
    if (av_image_check_size((unsigned)ow, (unsigned)oh, 0, NULL) < 0)
        return lv_error(LV_ERR_INVALID_ARG, "%s: output size %lldx%lld is larger than FFmpeg's images allow ((8 W + 1024) (H + 128) < 2^31: "
                        "at width %lld, a height of at most %lld)", name, (long long)ow, (long long)oh, (long long)ow,
                        (long long)((INT_MAX - 1) / (8 * ow + 1024) - 128));
    if (p.format != LV_VIDEO_RGB24 && p.format != LV_VIDEO_F32_CHW)
        return lv_error(LV_ERR_INVALID_ARG, "%s: unknown output format %d", name, (int)p.format);
    if (p.format == LV_VIDEO_F32_CHW)
        for (int c = 0; c < 3; c++)
            if (!(fabsf(p.std[c]) > 0) || !isfinite(p.std[c]) || !isfinite(p.mean[c]))
                return lv_error(LV_ERR_INVALID_ARG, "%s: normalisation std[%d] must be finite and non-zero", name, c);
    if (p.sample == LV_VIDEO_SAMPLE_TIMES && p.n_times > p.max_samples)
        return lv_error(LV_ERR_INVALID_ARG, "%s: %lld times, more than max_samples", name, (long long)p.n_times);

    lv_video_reader *r = lv_calloc(1, sizeof(*r));
    if (!r) return LV_ERR_NOMEM;
    r->v = v;
    r->p = p;
    r->out_w = (int)ow;
    r->out_h = (int)oh;
    r->frame_bytes = ow * oh * 3 * (p.format == LV_VIDEO_F32_CHW ? (int64_t)sizeof(float) : 1);
    r->max_buffered = LV_MAX(1, p.max_buffered_bytes / r->frame_bytes);
    r->sequential = p.sequential || !v->split_ok;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv_ready, NULL);
    pthread_cond_init(&r->cv_gate, NULL);
    atomic_init(&r->stop, false);
    atomic_init(&r->urgent, true);
    r->budget = budget;
    r->high = LV_MAX(1, LV_MIN(high, r->max_buffered));
    r->low = LV_MAX(1, LV_MIN(low, r->high));
    lv_status st = LV_OK;
    if (p.sample == LV_VIDEO_SAMPLE_TIMES && p.n_times > 0 && p.times) {
        r->times = lv_mallocn((size_t)p.n_times, sizeof(double));
        if (!r->times) {
            st = LV_ERR_NOMEM;
            goto fail;
        }
        memcpy(r->times, p.times, (size_t)p.n_times * sizeof(double));
        r->p.times = r->times;
    }
    if (p.sample == LV_VIDEO_SAMPLE_INDICES && p.n_indices > 0 && p.indices) {
        if (p.n_indices > p.max_samples) {
            st = lv_error(LV_ERR_INVALID_ARG, "%s: %lld frame indices, more than max_samples", name, (long long)p.n_indices);
            goto fail;
        }
        r->indices = lv_mallocn((size_t)p.n_indices, sizeof(int64_t));
        if (!r->indices) {
            st = LV_ERR_NOMEM;
            goto fail;
        }
        memcpy(r->indices, p.indices, (size_t)p.n_indices * sizeof(int64_t));
        r->p.indices = r->indices;
    }
    lv_vsample *samples = NULL;
    int64_t n_samples = 0;
    if (r->sequential) {
        /* the rule is applied while decoding; check its arguments now */
        if (p.sample == LV_VIDEO_SAMPLE_FPS && (!(p.fps > 0) || !isfinite(p.fps) || p.fps > 1e6))
            st = lv_error(LV_ERR_INVALID_ARG, "%s: fps must be in (0, 1e6], got %g", name, p.fps);
        else if (p.sample == LV_VIDEO_SAMPLE_COUNT && p.n_frames <= 0)
            st = lv_error(LV_ERR_INVALID_ARG, "%s: the number of frames must be > 0", name);
        else if (p.sample == LV_VIDEO_SAMPLE_TIMES || p.sample == LV_VIDEO_SAMPLE_COUNT || p.sample == LV_VIDEO_SAMPLE_INDICES)
            st = lv_plan_samples_(v, &r->p, &samples, &n_samples); /* checks times / count */
        else if (p.sample != LV_VIDEO_SAMPLE_FPS && p.sample != LV_VIDEO_SAMPLE_ALL)
            st = lv_error(LV_ERR_INVALID_ARG, "%s: unknown sampling rule %d", name, (int)p.sample);
        lv_free(samples);
        if (st != LV_OK) goto fail;
        n_threads = 1;
    } else {
        /* the rule is turned into samples up front */
        st = lv_plan_samples_(v, &r->p, &samples, &n_samples);
        if (st != LV_OK) goto fail;
        int64_t per = LV_MAX(1, r->max_buffered / (2 * n_threads));
        st = lv_plan_build_(v, samples, n_samples, n_threads, per, !p.no_skip, &r->plan);
        if (st != LV_OK) {
            lv_free(samples);
            goto fail;
        }
        r->n_slots = r->cap_slots = n_samples;
        r->slots = lv_calloc((size_t)LV_MAX(n_samples, 1), sizeof(vslot));
        r->bad = lv_calloc((size_t)v->n_pkts, 1);
        r->taken = lv_calloc((size_t)LV_MAX(r->plan.n_intervals, 1), 1);
        if (!r->slots || !r->bad || !r->taken) {
            st = LV_ERR_NOMEM;
            goto fail;
        }
        for (int64_t k = 0; k < n_samples; k++) {
            r->slots[k].frame = samples[k].frame;
            r->slots[k].pts = v->pkts[v->frames[samples[k].frame]].pts;
            r->slots[k].time_s = samples[k].time_s;
        }
        LV_LOG_D("%s: plan: %lld samples, %lld of %lld packets to decode (%lld non-reference and %lld tail packets "
                 "skipped, %lld GOPs skipped), %lld runs, %lld intervals", name, (long long)n_samples,
                 (long long)r->plan.n_feed, (long long)v->n_pkts, (long long)r->plan.n_skip_nonref,
                 (long long)r->plan.n_skip_tail, (long long)r->plan.n_gops_skipped, (long long)r->plan.n_runs,
                 (long long)r->plan.n_intervals);
        if (n_threads > r->plan.n_intervals) n_threads = (int)LV_MAX(1, r->plan.n_intervals);
        if (r->plan.n_intervals == 0) n_threads = 0;
    }
    r->workers = lv_calloc((size_t)LV_MAX(n_threads, 1), sizeof(vworker));
    if (!r->workers) {
        st = LV_ERR_NOMEM;
        goto fail;
    }
    if (n_threads == 0) r->seq_done = true;
    r->window = 2 * (int64_t)LV_MAX(n_threads, 1);
    for (int i = 0; i < n_threads; i++) {
        vworker *w = &r->workers[i];
        w->r = r;
        w->id = i;
        w->interval = -1;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            st = lv_error(LV_ERR_INTERNAL, "%s: cannot start a decode thread", name);
            goto fail;
        }
        w->started = true;
        r->n_workers = i + 1;
    }
    *out = r;
    return LV_OK;
fail:
    lv_video_reader_free(r);
    return st;
}

static void join_workers(lv_video_reader *r) {
    for (int i = 0; i < r->n_workers; i++)
        if (r->workers[i].started && !r->workers[i].joined) {
            pthread_join(r->workers[i].thread, NULL);
            r->workers[i].joined = true;
        }
}

int64_t lv_video_reader_n_planned(const lv_video_reader *r) {
    if (!r) return 0;
    return r->sequential ? -1 : r->plan.n_samples;
}

lv_status lv_video_reader_next(lv_video_reader *r, lv_video_frame *f) {
    if (!r || !f) return lv_error(LV_ERR_INVALID_ARG, "lv_video_reader_next: reader or frame is NULL");
    memset(f, 0, sizeof(*f));
    pthread_mutex_lock(&r->mu);
    if (r->returned) {
        buf_put_locked(r, r->returned);
        r->returned = NULL;
        r->held--;
    }
    for (;;) {
        if (r->error != LV_OK) {
            lv_status st = r->error;
            pthread_mutex_unlock(&r->mu);
            return lv_error(st, "%s", r->error_msg);
        }
        bool known_end = !r->sequential || r->seq_done;
        if (r->consumer >= r->n_slots && known_end) {
            pthread_mutex_unlock(&r->mu);
            join_workers(r); /* every thread is done or about to be: let the statistics be complete */
            return LV_OK;    /* the end: data == NULL */
        }
        if (r->consumer < r->n_slots) {
            vslot *s = &r->slots[r->consumer];
            if (s->state == SLOT_LOST) {
                r->n_lost++;
                r->consumer++;
                if (ready_moved_locked(r)) lv_budget_kick(r->budget); /* order: reader, then budget */
                pthread_cond_broadcast(&r->cv_gate);
                continue;
            }
            if (s->state == SLOT_READY) {
                f->index = r->consumer;
                f->source_frame = s->frame;
                f->pts = s->pts;
                f->time_s = s->time_s;
                f->width = r->out_w;
                f->height = r->out_h;
                f->format = r->p.format;
                f->data = s->buf;
                f->size = r->frame_bytes;
                r->returned = s->buf;
                s->buf = NULL;
                r->consumer++;
                r->n_delivered++;
                const bool kick = ready_moved_locked(r);
                pthread_cond_broadcast(&r->cv_gate);
                pthread_mutex_unlock(&r->mu);
                if (kick) lv_budget_kick(r->budget);
                return LV_OK;
            }
        }
        /* about to wait: the consumer's pool gives its tokens to the decode threads */
        lv_budget_pool_leave(r->budget);
        pthread_cond_wait(&r->cv_ready, &r->mu);
    }
}

int64_t lv_video_reader_n_ready_(lv_video_reader *r) {
    if (!r) return 0;
    pthread_mutex_lock(&r->mu);
    const int64_t n = LV_MAX(r->ready_end, r->consumer);
    pthread_mutex_unlock(&r->mu);
    return n;
}

void lv_video_reader_stats(const lv_video_reader *r, lv_video_stats *s) {
    if (!s) return;
    memset(s, 0, sizeof(*s));
    if (!r) return;
    lv_video_reader *rr = (lv_video_reader *)r;
    pthread_mutex_lock(&rr->mu);
    s->n_planned = r->sequential ? r->n_slots : r->plan.n_samples;
    s->n_delivered = r->n_delivered;
    s->n_lost = r->n_lost;
    s->n_packets = r->v->n_pkts;
    s->n_decoded = r->s_decoded;
    s->n_skipped_nonref = r->plan.n_skip_nonref;
    s->n_skipped_tail = r->plan.n_skip_tail;
    s->n_gops_skipped = r->plan.n_gops_skipped;
    s->n_seeks = r->s_seeks;
    s->n_intervals = r->sequential ? 1 : r->plan.n_intervals;
    s->n_threads = r->n_workers;
    s->max_held = r->max_held;
    s->decode_s = r->s_busy;
    pthread_mutex_unlock(&rr->mu);
}

void lv_video_reader_free(lv_video_reader *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    atomic_store(&r->stop, true);
    pthread_cond_broadcast(&r->cv_gate);
    pthread_cond_broadcast(&r->cv_ready);
    pthread_mutex_unlock(&r->mu);
    lv_budget_kick(r->budget);
    join_workers(r);
    if (r->s_unexpected || r->s_decode_errors)
        LV_LOG_D("%s: %lld decode errors, %lld packets or frames not in the index", lv_video_name_(r->v),
                 (long long)r->s_decode_errors, (long long)r->s_unexpected);
    for (int64_t i = 0; i < r->n_slots; i++) lv_free(r->slots ? r->slots[i].buf : NULL);
    for (int64_t i = 0; i < r->n_free; i++) lv_free(r->free_bufs[i]);
    lv_free(r->returned);
    lv_free(r->free_bufs);
    lv_free(r->slots);
    lv_free(r->taken);
    lv_free(r->bad);
    lv_free(r->times);
    lv_free(r->indices);
    lv_free(r->workers);
    lv_plan_free_(&r->plan);
    pthread_cond_destroy(&r->cv_gate);
    pthread_cond_destroy(&r->cv_ready);
    pthread_mutex_destroy(&r->mu);
    lv_free(r);
}

/* -------------------------------------------------------------------------------------------
 * conveniences
 * ----------------------------------------------------------------------------------------- */

lv_status lv_video_read_all(lv_video *v, const lv_video_read_params *p, void **frames, int64_t *n_frames,
                            int64_t *frame_size) {
    if (!frames || !n_frames) return lv_error(LV_ERR_INVALID_ARG, "lv_video_read_all: NULL output");
    *frames = NULL;
    *n_frames = 0;
    if (frame_size) *frame_size = 0;
    lv_video_reader *r;
    lv_status st = lv_video_read_start(v, p, &r);
    if (st != LV_OK) return st;
    uint8_t *all = NULL;
    int64_t n = 0, cap = 0, fs = r->frame_bytes;
    lv_video_frame f;
    while ((st = lv_video_reader_next(r, &f)) == LV_OK && f.data) {
        if (n == cap) {
            int64_t nc = cap ? cap * 2 : 16;
            int64_t bytes;
            if (lv_mul_ovf_i64(nc, fs, &bytes)) {
                st = lv_error(LV_ERR_NOMEM, "frames do not fit in memory");
                break;
            }
            uint8_t *na = lv_realloc(all, (size_t)bytes);
            if (!na) {
                st = LV_ERR_NOMEM;
                break;
            }
            all = na;
            cap = nc;
        }
        memcpy(all + n * fs, f.data, (size_t)fs);
        n++;
    }
    lv_video_reader_free(r);
    if (st != LV_OK) {
        lv_free(all);
        return st;
    }
    *frames = all;
    *n_frames = n;
    if (frame_size) *frame_size = fs;
    return LV_OK;
}

void lv_video_frames_free(void *frames) { lv_free(frames); }

LV_PRINTF(3, 0) static void libav_log_cb(void *avcl, int level, const char *fmt, va_list vl) {
    (void)avcl;
    if (level > AV_LOG_WARNING) return;
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, vl);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    if (n) lv_log(LV_LOG_DEBUG, "libav: %s", msg);
}

void lv_video_route_libav_log(void) { av_log_set_callback(libav_log_cb); }
