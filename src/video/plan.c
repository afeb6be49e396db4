/*
 * plan.c: from a sampling rule to the packets each decode thread feeds.
 *
 * 1. Samples. Each sampling rule turns the index into a list of samples, each naming one source
 *    frame (presentation order) and a time:
 *    - FPS: ffmpeg's fps filter (libavfilter/vf_fps.c, rounding "near", eof_action "round") run
 *      over the frames' timestamps as the ffmpeg 5.1 CLI feeds them to the filter graph (pts
 *      shifted by the file's start time; EOF at the last frame's pts + duration), followed by
 *      the CLI's constant-frame-rate output, which repeats the first frame for the ticks before
 *      it. Tick k is the last frame whose timestamp rounds to <= k ticks (the frame shown at
 *      (k + 1/2) / fps, roughly), for k = 0 .. round(end * fps) - 1.
 *    - COUNT: N frames spread evenly: frame round(j (n - 1) / (N - 1)), half to even, exactly.
 *    - TIMES: the frame shown at each time (the last frame whose time is <= t).
 *    - ALL: every frame.
 * 2. Needed packets and decode runs, GOP by GOP (decode order):
 *    - a GOP with no needed frame is not decoded at all (the reader seeks over it);
 *    - in a decoded GOP, packets are fed up to the last needed one, except non-reference frames
 *      no sample needs (they cannot affect any other frame);
 *    - a needed open-GOP leading frame needs the previous GOP decoded to its end, without a
 *      flush in between ("warm"); every other GOP is exact from a cold start at its keyframe.
 *    A run is a stretch of packets decoded without a flush; it starts at a GOP start.
 * 3. Intervals: consecutive GOPs grouped by cost (packet bytes plus a per-frame constant) with
 *    guided sizes (about remaining / (2 threads), at least total / (16 threads): large first,
 *    small last, so that the threads finish together), cut only where a cold start is exact (a
 *    GOP that is not warm). Decode threads take intervals in order; an interval's samples are a
 *    contiguous range.
 */
#include "video/video.h"

#include <libavutil/mathematics.h>
#include <math.h>
#include <string.h>

/* -------------------------------------------------------------------------------------------
 * the fps filter
 * ----------------------------------------------------------------------------------------- */

void lv_fps_init_(lv_fps_state *s, AVRational in_tb, double fps) {
    memset(s, 0, sizeof(*s));
    s->in_tb = in_tb;
    /* vf_fps: outlink->frame_rate = av_d2q(fps, INT_MAX); time_base = its inverse */
    s->out_tb = av_inv_q(av_d2q(fps, INT_MAX));
    s->next = AV_NOPTS_VALUE;
    s->held = -1;
}

static lv_status fps_emit(lv_fps_state *s, int64_t id, lv_fps_emit_fn emit, void *user) {
    lv_status st;
    if (!s->first_done) {
        /* The CLI's CFR output (vsync cfr, rawvideo) duplicates the first frame to fill the ticks
         * before it (do_video_out: nb_frames = lrintf(delta) with delta = first tick + 1). */
        s->first_done = true;
        for (int64_t t = 0; t < s->next; t++)
            if ((st = emit(user, id, t)) != LV_OK) return st;
    }
    st = emit(user, id, s->next);
    s->next++;
    return st;
}

lv_status lv_fps_push_(lv_fps_state *s, int64_t id, int64_t pts, lv_fps_emit_fn emit, void *user) {
    if (pts == AV_NOPTS_VALUE) return LV_OK; /* vf_fps discards frames without a timestamp */
    int64_t r = av_rescale_q_rnd(pts, s->in_tb, s->out_tb, AV_ROUND_NEAR_INF | AV_ROUND_PASS_MINMAX);
    if (s->held < 0) {
        s->held = id;
        s->held_rpts = r;
        if (s->next == AV_NOPTS_VALUE) s->next = r;
        return LV_OK;
    }
    /* two frames buffered: output the first until the second is acceptable for the next tick */
    while (r > s->next) {
        lv_status st = fps_emit(s, s->held, emit, user);
        if (st != LV_OK) return st;
    }
    s->held = id;
    s->held_rpts = r;
    return LV_OK;
}

lv_status lv_fps_eof_(lv_fps_state *s, int64_t end_pts, lv_fps_emit_fn emit, void *user) {
    if (s->held < 0 || end_pts == AV_NOPTS_VALUE) return LV_OK;
    int64_t status = av_rescale_q_rnd(end_pts, s->in_tb, s->out_tb, AV_ROUND_NEAR_INF | AV_ROUND_PASS_MINMAX);
    while (status > s->next) {
        lv_status st = fps_emit(s, s->held, emit, user);
        if (st != LV_OK) return st;
    }
    s->held = -1;
    return LV_OK;
}

/* -------------------------------------------------------------------------------------------
 * samples
 * ----------------------------------------------------------------------------------------- */

typedef struct sample_vec {
    lv_vsample *s;
    int64_t n, cap, max;
    const char *name;
    double tick_s; /* FPS: seconds per tick */
} sample_vec;

static lv_status vec_push(sample_vec *v, int64_t frame, double time_s) {
    if (v->n >= v->max)
        return lv_error(LV_ERR_INVALID_ARG, "%s: the sampling rule asks for more than %lld frames (max_samples)", v->name,
                        (long long)v->max);
    if (v->n == v->cap) {
        int64_t nc = v->cap ? v->cap * 2 : 256;
        lv_vsample *ns = lv_realloc(v->s, (size_t)nc * sizeof(*ns));
        if (!ns) return LV_ERR_NOMEM;
        v->s = ns;
        v->cap = nc;
    }
    v->s[v->n].frame = frame;
    v->s[v->n].time_s = time_s;
    v->n++;
    return LV_OK;
}

static lv_status fps_emit_sample(void *user, int64_t id, int64_t tick) {
    sample_vec *v = user;
    return vec_push(v, id, (double)tick * v->tick_s);
}

static double frame_time(const lv_video *v, int64_t f) {
    return (double)(v->pkts[v->frames[f]].pts + v->ts_offset) * av_q2d(v->tb);
}

lv_status lv_plan_samples_(const lv_video *v, const lv_video_read_params *p, lv_vsample **out, int64_t *n_out) {
    *out = NULL;
    *n_out = 0;
    const char *name = lv_video_name_(v);
    sample_vec vec = {NULL, 0, 0, p->max_samples > 0 ? p->max_samples : ((int64_t)1 << 22), name, 0.0};
    lv_status st = LV_OK;
    switch (p->sample) {
    case LV_VIDEO_SAMPLE_FPS: {
        if (!(p->fps > 0) || !isfinite(p->fps) || p->fps > 1e6)
            return lv_error(LV_ERR_INVALID_ARG, "%s: fps must be in (0, 1e6], got %g", name, p->fps);
        lv_fps_state fs;
        lv_fps_init_(&fs, v->tb, p->fps);
        if (fs.out_tb.num <= 0 || fs.out_tb.den <= 0)
            return lv_error(LV_ERR_INVALID_ARG, "%s: fps %g has no usable rational form", name, p->fps);
        vec.tick_s = av_q2d(fs.out_tb);
        for (int64_t f = 0; f < v->n_frames && st == LV_OK; f++)
            st = lv_fps_push_(&fs, f, v->pkts[v->frames[f]].pts + v->ts_offset, fps_emit_sample, &vec);
        if (st == LV_OK) st = lv_fps_eof_(&fs, v->end_pts, fps_emit_sample, &vec);
        break;
    }
    case LV_VIDEO_SAMPLE_COUNT: {
        int64_t N = p->n_frames, n = v->n_frames;
        if (N <= 0) return lv_error(LV_ERR_INVALID_ARG, "%s: the number of frames must be > 0, got %lld", name, (long long)N);
        if (N > vec.max)
            return lv_error(LV_ERR_INVALID_ARG, "%s: %lld frames asked, more than max_samples %lld", name, (long long)N,
                            (long long)vec.max);
        for (int64_t j = 0; j < N && st == LV_OK; j++) {
            int64_t f = 0;
            if (N > 1) {
                /* round(j * (n-1) / (N-1)) half to even, in integers (j * (n-1) < 2^22 * 2^24) */
                int64_t num = j * (n - 1), den = N - 1;
                int64_t q = num / den, r = num % den;
                if (2 * r > den || (2 * r == den && (q & 1))) q++;
                f = q;
            }
            st = vec_push(&vec, f, frame_time(v, f));
        }
        break;
    }
    case LV_VIDEO_SAMPLE_TIMES: {
        if (p->n_times <= 0 || !p->times) return lv_error(LV_ERR_INVALID_ARG, "%s: no times given", name);
        double end_s = v->end_pts != AV_NOPTS_VALUE ? (double)v->end_pts * av_q2d(v->tb) : INFINITY;
        int64_t f = 0;
        for (int64_t j = 0; j < p->n_times && st == LV_OK; j++) {
            double t = p->times[j];
            if (!isfinite(t) || t < 0)
                st = lv_error(LV_ERR_INVALID_ARG, "%s: time %g is not a time in seconds >= 0", name, t);
            else if (j > 0 && t < p->times[j - 1])
                st = lv_error(LV_ERR_INVALID_ARG, "%s: times must not decrease (%g after %g)", name, t, p->times[j - 1]);
            else if (t >= end_s)
                st = lv_error(LV_ERR_INVALID_ARG, "%s: time %g s is past the end of the video (%.3f s)", name, t, end_s);
            if (st != LV_OK) break;
            /* the last frame whose time is <= t (the first frame for times before it); a
             * nanosecond of slack so that a time printed from a frame's timestamp finds it */
            while (f + 1 < v->n_frames && frame_time(v, f + 1) <= t + 1e-9) f++;
            st = vec_push(&vec, f, t);
        }
        break;
    }
    case LV_VIDEO_SAMPLE_ALL:
        for (int64_t f = 0; f < v->n_frames && st == LV_OK; f++) st = vec_push(&vec, f, frame_time(v, f));
        break;
    case LV_VIDEO_SAMPLE_INDICES:
        if (p->n_indices <= 0 || !p->indices) return lv_error(LV_ERR_INVALID_ARG, "%s: no frame indices given", name);
        if (p->n_indices > vec.max)
            return lv_error(LV_ERR_INVALID_ARG, "%s: %lld frame indices, more than max_samples %lld", name, (long long)p->n_indices,
                            (long long)vec.max);
        for (int64_t j = 0; j < p->n_indices && st == LV_OK; j++) {
            const int64_t f = p->indices[j];
            if (f < 0 || f >= v->n_frames)
                st = lv_error(LV_ERR_INVALID_ARG, "%s: frame index %lld is not in 0..%lld", name, (long long)f, (long long)(v->n_frames - 1));
            else if (j > 0 && f < p->indices[j - 1])
                st = lv_error(LV_ERR_INVALID_ARG, "%s: frame indices must not decrease (%lld after %lld)", name, (long long)f,
                              (long long)p->indices[j - 1]);
            else
                st = vec_push(&vec, f, frame_time(v, f));
        }
        break;
    default: return lv_error(LV_ERR_INVALID_ARG, "%s: unknown sampling rule %d", name, (int)p->sample);
    }
    if (st != LV_OK) {
        lv_free(vec.s);
        return st;
    }
    *out = vec.s;
    *n_out = vec.n;
    return LV_OK;
}

/* -------------------------------------------------------------------------------------------
 * runs and intervals
 * ----------------------------------------------------------------------------------------- */

void lv_plan_free_(lv_vplan *pl) {
    if (!pl) return;
    lv_free(pl->samples);
    lv_free(pl->feed);
    lv_free(pl->needed);
    lv_free(pl->frame_sample);
    lv_free(pl->runs);
    lv_free(pl->intervals);
    lv_free(pl->gop_interval);
    memset(pl, 0, sizeof(*pl));
}

lv_status lv_plan_build_(const lv_video *v, lv_vsample *samples, int64_t n_samples, int n_threads,
                         int64_t max_samples_per_interval, bool skip, lv_vplan *pl) {
    memset(pl, 0, sizeof(*pl));
    pl->samples = samples;
    pl->n_samples = n_samples;
    const lv_vpkt *pk = v->pkts;
    int64_t n = v->n_pkts, G = v->n_gops;
    int64_t *end = NULL, *lead_end = NULL, *gop_sample_first = NULL;
    double *gop_cost = NULL;
    lv_status st = LV_OK;

    pl->feed = lv_calloc((size_t)n, 1);
    pl->needed = lv_calloc((size_t)n, 1);
    pl->frame_sample = lv_mallocn((size_t)v->n_frames, sizeof(int64_t));
    pl->gop_interval = lv_mallocn((size_t)G, sizeof(int64_t));
    end = lv_mallocn((size_t)G, sizeof(int64_t));
    lead_end = lv_mallocn((size_t)G, sizeof(int64_t));
    gop_cost = lv_calloc((size_t)G, sizeof(double));
    gop_sample_first = lv_mallocn((size_t)G, sizeof(int64_t));
    if (!pl->feed || !pl->needed || !pl->frame_sample || !pl->gop_interval || !end || !lead_end || !gop_cost ||
        !gop_sample_first) {
        st = LV_ERR_NOMEM;
        goto done;
    }
    for (int64_t f = 0; f < v->n_frames; f++) pl->frame_sample[f] = -1;
    for (int64_t g = 0; g < G; g++) {
        end[g] = lead_end[g] = -1;
        pl->gop_interval[g] = -1;
        gop_sample_first[g] = -1;
    }

    /* needed packets; the last needed packet of each GOP (leading ones apart) */
    for (int64_t k = 0; k < n_samples; k++) {
        int64_t f = samples[k].frame;
        LV_ASSERT(f >= 0 && f < v->n_frames);
        if (pl->frame_sample[f] < 0) pl->frame_sample[f] = k;
        int64_t p = v->frames[f];
        if (pl->needed[p]) continue;
        pl->needed[p] = 1;
        pl->n_needed_frames++;
        int64_t g = lv_video_gop_of_(v, p);
        if ((pk[p].flags & LV_PKT_LEADING) && g > 0) {
            if (p > lead_end[g]) lead_end[g] = p;
        } else if (p > end[g]) {
            end[g] = p;
        }
    }
    /* a needed leading frame needs its GOP up to it and the previous GOP whole */
    for (int64_t g = 1; g < G; g++)
        if (lead_end[g] >= 0) {
            if (lead_end[g] > end[g]) end[g] = lead_end[g];
            end[g - 1] = v->gops[g] - 1;
        }

    /* what to feed */
    for (int64_t g = 0; g < G; g++) {
        int64_t a = v->gops[g], b = g + 1 < G ? v->gops[g + 1] : n;
        if (end[g] < 0) {
            pl->n_gops_skipped++;
            continue;
        }
        int64_t last = skip ? end[g] : b - 1;
        for (int64_t p = a; p <= last; p++) {
            if (skip && (pk[p].flags & LV_PKT_NONREF) && !pl->needed[p]) {
                pl->n_skip_nonref++;
                continue;
            }
            pl->feed[p] = 1;
            pl->n_feed++;
            gop_cost[g] += (double)pk[p].size + 2000.0; /* bytes + a per-frame constant */
        }
        pl->n_skip_tail += b - 1 - last;
        if (!skip) end[g] = b - 1;
    }

    /* runs: GOPs decoded back to back without a flush when the previous one is decoded to its end */
    pl->runs = lv_mallocn((size_t)G, sizeof(lv_vrun));
    pl->intervals = lv_mallocn((size_t)G, sizeof(lv_vinterval));
    if (!pl->runs || !pl->intervals) {
        st = LV_ERR_NOMEM;
        goto done;
    }
    /* interval sizing: several intervals per thread (load balance), bounded samples per interval
     * (memory) */
    double total_cost = 0;
    int64_t n_decoded = 0;
    for (int64_t g = 0; g < G; g++)
        if (end[g] >= 0) {
            total_cost += gop_cost[g];
            n_decoded++;
        }
    /* guided sizes: each interval takes about remaining / (2 threads) of the work, but not less
     * than total / (16 threads): big intervals first (few cold starts), small ones last (threads
     * finish together) */
    double remaining = total_cost;
    double min_cost = total_cost / (16.0 * n_threads);

    /* samples per GOP, to bound samples per interval */
    for (int64_t k = n_samples - 1; k >= 0; k--) {
        int64_t g = lv_video_gop_of_(v, v->frames[samples[k].frame]);
        gop_sample_first[g] = k;
    }

    int64_t cur_run = -1, cur_iv = -1;
    double iv_cost = 0;
    int64_t iv_samples = 0;
    for (int64_t g = 0; g < G; g++) {
        if (end[g] < 0) {
            cur_run = -1; /* the next decoded GOP starts a new run */
            continue;
        }
        int64_t a = v->gops[g];
        bool warm = lead_end[g] >= 0 && g > 0;
        bool continues = cur_run >= 0 && g > 0 && end[g - 1] == a - 1 && pl->runs[cur_run].gop_last == g - 1;
        LV_ASSERT(!warm || continues);
        /* samples in this GOP (to bound an interval's) */
        int64_t g_samples = 0;
        if (gop_sample_first[g] >= 0) {
            int64_t k = gop_sample_first[g];
            while (k < n_samples && lv_video_gop_of_(v, v->frames[samples[k].frame]) == g) k++;
            g_samples = k - gop_sample_first[g];
        }
        double target = LV_MAX(min_cost, remaining / (2.0 * n_threads));
        /* cut before this GOP when that lands closer to the target than cutting after it */
        bool cut = cur_iv < 0 ||
                   (!warm && (iv_cost + 0.5 * gop_cost[g] >= target ||
                              (max_samples_per_interval > 0 && iv_samples > 0 && iv_samples + g_samples > max_samples_per_interval)));
        if (cut) {
            if (cur_iv >= 0) remaining -= iv_cost;
            cur_iv++;
            pl->intervals[cur_iv].run_first = pl->n_runs;
            pl->intervals[cur_iv].run_count = 0;
            pl->intervals[cur_iv].cost = 0;
            iv_cost = 0;
            iv_samples = 0;
            continues = false; /* an interval starts cold */
        }
        if (!continues) {
            lv_vrun *r = &pl->runs[pl->n_runs++];
            r->first = a;
            r->gop_first = g;
            pl->intervals[cur_iv].run_count++;
            cur_run = pl->n_runs - 1;
        }
        pl->runs[cur_run].last = end[g];
        pl->runs[cur_run].gop_last = g;
        pl->gop_interval[g] = cur_iv;
        iv_cost += gop_cost[g];
        iv_samples += g_samples;
        pl->intervals[cur_iv].cost += gop_cost[g];
    }
    pl->n_intervals = cur_iv + 1;

    /* each interval's samples must be one contiguous range, in interval order; a stream whose
     * presentation order interleaves GOPs breaks that: then everything is one interval */
    bool ordered = true;
    int64_t prev = 0;
    for (int64_t k = 0; k < n_samples; k++) {
        int64_t iv = pl->gop_interval[lv_video_gop_of_(v, v->frames[samples[k].frame])];
        LV_ASSERT(iv >= 0);
        if (iv < prev) ordered = false;
        prev = iv;
    }
    if (!ordered) {
        LV_LOG_I("%s: presentation order interleaves GOPs; decoding in one interval", lv_video_name_(v));
        pl->intervals[0].run_first = 0;
        pl->intervals[0].run_count = pl->n_runs;
        pl->intervals[0].cost = total_cost;
        pl->n_intervals = pl->n_runs ? 1 : 0;
        for (int64_t g = 0; g < G; g++)
            if (pl->gop_interval[g] >= 0) pl->gop_interval[g] = 0;
    }
    for (int64_t i = 0; i < pl->n_intervals; i++) pl->intervals[i].sample_first = pl->intervals[i].sample_end = -1;
    for (int64_t k = 0; k < n_samples; k++) {
        int64_t iv = pl->gop_interval[lv_video_gop_of_(v, v->frames[samples[k].frame])];
        if (pl->intervals[iv].sample_first < 0) pl->intervals[iv].sample_first = k;
        pl->intervals[iv].sample_end = k + 1;
    }
    /* intervals without samples (decoded only as a warm-up for the next) take an empty range at
     * the position they sit in the sample order */
    int64_t next_first = n_samples;
    for (int64_t i = pl->n_intervals - 1; i >= 0; i--) {
        if (pl->intervals[i].sample_first < 0) pl->intervals[i].sample_first = pl->intervals[i].sample_end = next_first;
        next_first = pl->intervals[i].sample_first;
    }
    (void)n_decoded;
done:
    lv_free(end);
    lv_free(lead_end);
    lv_free(gop_cost);
    lv_free(gop_sample_first);
    if (st != LV_OK) {
        pl->samples = NULL; /* owned by the caller on failure */
        lv_plan_free_(pl);
    }
    return st;
}
