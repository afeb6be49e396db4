/*
 * ask.c: asking a video (longview.h, "asking a video"; docs/video-questions.md). Two executions of
 * one layout (layout.c): the sequential reference (every frame decoded, then every unit encoded,
 * then the rows prefilled from whole arrays) and the overlapped pipeline (the reader's decode
 * threads run ahead, bounded by its buffer, while this thread encodes each unit as its frames
 * arrive and prefills a batch as soon as n_batch rows are staged; the decode threads and the pool
 * share one budget of the pool's thread count, core/budget.c: the decoders run when the encoder is
 * about to run out of frames or the pool is idle). Both cut the rows into batches
 * of the context's n_batch from the first row, so lv_decode sees the same batches and the logits
 * are equal bit for bit (tests/pipeline/test_ask.c). On failure the sequence is put back.
 */
#include "pipeline/pipeline.h"
#include "video/video.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

lv_video_ask_params lv_video_ask_default_params(void) {
    lv_video_ask_params p;
    memset(&p, 0, sizeof(p));
    p.add_special = true;
    p.carrier_max = 64;
    p.carrier_layer = -1;
    return p;
}

lv_status lv_video_ask_plan_for(const lv_model *model, const lv_mmproj *mm, const lv_video *video, const lv_video_ask_params *params,
                                lv_video_ask_plan *plan) {
    memset(plan, 0, sizeof(*plan));
    lv_vq_layout l;
    lv_status st = lv_vq_layout_build(model, mm, video, params, 0, &l);
    if (st != LV_OK) return st;
    *plan = l.plan;
    lv_vq_layout_free(&l);
    return LV_OK;
}

int64_t lv_video_ask_prompt_text(const lv_model *model, const lv_mmproj *mm, const lv_video *video, const lv_video_ask_params *params,
                                 char *buf, size_t buf_size) {
    lv_vq_layout l;
    if (buf && buf_size) buf[0] = 0;
    if (lv_vq_layout_build(model, mm, video, params, 0, &l) != LV_OK) return -1;
    const char *pad = l.fam == LV_VQ_SMOLVLM2 ? "<image>" : "<|video_pad|>";
    int64_t len = 0;
    for (int32_t s = 0; s < l.n_segs; s++) {
        const lv_vq_seg *sg = &l.segs[s];
        for (int32_t i = 0; i < (sg->unit ? sg->n : 1); i++) {
            const char *t = sg->unit ? (i < l.plan.unit_tokens ? pad : "<carrier>") : l.pieces[s];
            const size_t n = strlen(t);
            for (size_t k = 0; k < n; k++, len++)
                if (buf && (size_t)len + 1 < buf_size) buf[len] = t[k];
        }
    }
    if (buf && buf_size) buf[(size_t)len < buf_size ? (size_t)len : buf_size - 1] = 0;
    lv_vq_layout_free(&l);
    return len;
}

/* ---- shared by both executions ---- */

typedef struct run {
    lv_context *ctx;
    const lv_mmproj *mm;
    lv_video *video;
    const lv_video_ask_params *p;
    lv_vq_layout *l;
    lv_threadpool *tp;
    lv_seq_id seq;
    lv_pos pos0;             /* the cache position of row 0 */
    int32_t B;               /* rows per batch */
    int64_t E;
    int64_t unit_floats;     /* (unit_tokens + 1 with a carrier) x E: a unit's rows, the carrier's mean last */
    int32_t frames_per_unit; /* 1 (SmolVLM2) or 2 (Qwen pairs) */
    /* QuickPrefill: the groups' end rows (exclusive), which also end batches; the embedding rows */
    int64_t *gend;
    int32_t n_groups;
    int32_t next_group;      /* the first group not yet pruned */
    uint8_t *prunable;       /* (n_rows) 1 for an embedding row (VideoScan: not the carrier) */
    /* VideoScan with a memory cap: the held carriers' input embeddings ((cap + 1) x E) and their
     * units' position ranges [lo, hi] (the unit's first row .. its carrier) */
    float *cemb;
    lv_pos *clo, *chi;
    int32_t n_held;
    lv_video_reader *rd;     /* overlapped: the reader (progress: the frames it has ready in order) */
    lv_budget *budget;       /* overlapped: the shared thread budget, or NULL */
    lv_video_ask_progress prog;
    int32_t next_unit_seg;   /* progress: the first unit segment not yet all in the cache */
    double t0;
    lv_video_ask_result *res;
} run;

static lv_video_read_params read_params(const run *r) {
    lv_video_read_params rp = lv_video_default_read_params();
    const lv_vq_layout *l = r->l;
    if (l->fam == LV_VQ_SMOLVLM2) {
        rp.sample = LV_VIDEO_SAMPLE_INDICES;
        rp.indices = l->frame_idx;
        rp.n_indices = l->plan.n_frames;
    } else {
        rp.sample = LV_VIDEO_SAMPLE_COUNT;
        rp.n_frames = l->plan.n_frames;
    }
    rp.width = l->plan.frame_w;
    rp.height = l->plan.frame_h;
    rp.format = LV_VIDEO_RGB24;
    rp.n_threads = r->p->n_decode_threads;
    if (r->p->max_buffered_bytes > 0) rp.max_buffered_bytes = r->p->max_buffered_bytes;
    rp.abort_fn = r->p->abort_fn;
    rp.abort_user = r->p->abort_user;
    return rp;
}

static bool aborted(const run *r) { return r->p->abort_fn && r->p->abort_fn(r->p->abort_user); }

static void report(run *r) {
    /* frames whose unit is all in the cache */
    const lv_vq_layout *l = r->l;
    while (r->next_unit_seg < l->n_segs) {
        const lv_vq_seg *s = &l->segs[r->next_unit_seg];
        if (!s->unit) {
            r->next_unit_seg++;
            continue;
        }
        if (s->row0 + s->n > r->prog.n_rows_done) break;
        r->prog.n_prefilled = LV_MIN(r->prog.n_frames, (s->first + 1) * r->frames_per_unit);
        r->next_unit_seg++;
    }
    if (r->rd) r->prog.n_decoded = LV_MAX(r->prog.n_decoded, LV_MIN(r->prog.n_frames, lv_video_reader_n_ready_(r->rd)));
    r->prog.elapsed_s = lv_time_s() - r->t0;
    if (r->p->progress) r->p->progress(&r->prog, r->p->progress_user);
}

static lv_status lost_error(const run *r, int64_t want, const lv_video_frame *f) {
    const lv_vq_layout *l = r->l;
    if (!f || !f->data)
        return lv_error(LV_ERR_FORMAT, "the video ended after %lld of its %lld sampled frames (damaged or truncated): a question needs every one",
                        (long long)want, (long long)l->plan.n_frames);
    return lv_error(LV_ERR_FORMAT, "sampled frame %lld of the video could not be decoded (damaged data; the next one decoded is %lld at %.3f s): "
                    "a question needs every sampled frame", (long long)want, (long long)f->index, f->time_s);
}

/* ---- QuickPrefill: groups of units that cut the batches, pruned once all their rows are in ---- */

/* VideoScan: every unit is a group ending at its carrier; its visual rows are the prunable ones */
static lv_status carriers_build(run *r) {
    const lv_vq_layout *l = r->l;
    const lv_video_ask_params *p = r->p;
    if (p->keep > 0)
        return lv_error(LV_ERR_INVALID_ARG, "VideoScan (carrier) and QuickPrefill (keep %g) both prune the video's cache: choose one", p->keep);
    if (p->carrier_keep < 0 || p->carrier_max < 0 || p->carrier_layer < -1)
        return lv_error(LV_ERR_INVALID_ARG, "VideoScan: carrier_keep (%d) and carrier_max (%d) must not be negative, carrier_layer (%d) is -1 or a layer",
                        p->carrier_keep, p->carrier_max, p->carrier_layer);
    lv_status st = lv_kv_seq_carrier_keep(r->ctx, r->seq, 0, NULL, 0, p->carrier_layer, NULL); /* the plan allows it? */
    if (st != LV_OK) return st;
    r->gend = lv_mallocn((size_t)l->plan.n_units + 1, sizeof(int64_t));
    r->prunable = lv_calloc((size_t)l->plan.n_rows, 1);
    if (!r->gend || !r->prunable) return LV_ERR_NOMEM;
    if (p->carrier_max > 0) {
        const size_t n = (size_t)p->carrier_max + 1;
        r->cemb = lv_mallocn(n * (size_t)r->E, sizeof(float));
        r->clo = lv_mallocn(n, sizeof(lv_pos));
        r->chi = lv_mallocn(n, sizeof(lv_pos));
        if (!r->cemb || !r->clo || !r->chi) return LV_ERR_NOMEM;
    }
    for (int32_t s = 0; s < l->n_segs; s++) {
        const lv_vq_seg *sg = &l->segs[s];
        if (!sg->unit) continue;
        memset(r->prunable + sg->row0, 1, (size_t)l->plan.unit_tokens);
        r->gend[r->n_groups++] = sg->row0 + sg->n;
    }
    return LV_OK;
}

static lv_status groups_build(run *r) {
    const lv_vq_layout *l = r->l;
    if (r->p->carrier) return carriers_build(r);
    if (r->p->carrier_keep != 0 || r->p->carrier_layer >= 0)
        return lv_error(LV_ERR_INVALID_ARG, "carrier_keep (%d) and carrier_layer (%d) are VideoScan+'s: it needs carrier", r->p->carrier_keep,
                        r->p->carrier_layer);
    if (r->p->keep <= 0) return LV_OK;
    if (!(r->p->keep <= 1.0) || r->p->group < 0)
        return lv_error(LV_ERR_INVALID_ARG, "QuickPrefill: keep %g must be in (0, 1] and the group (%d frames) positive", r->p->keep, r->p->group);
    const int64_t gf = r->p->group > 0 ? r->p->group : 16;
    const int64_t upg = (gf + r->frames_per_unit - 1) / r->frames_per_unit; /* Qwen: whole pairs */
    r->res->group_frames = (int32_t)LV_MIN(upg * r->frames_per_unit, (int64_t)INT32_MAX);
    r->gend = lv_mallocn((size_t)(l->plan.n_units / upg + 1), sizeof(int64_t));
    r->prunable = lv_calloc((size_t)l->plan.n_rows, 1);
    if (!r->gend || !r->prunable) return LV_ERR_NOMEM;
    int64_t u = 0;
    for (int32_t s = 0; s < l->n_segs; s++) {
        const lv_vq_seg *sg = &l->segs[s];
        if (!sg->unit) continue;
        memset(r->prunable + sg->row0, 1, (size_t)sg->n);
        if (++u % upg == 0 || u == l->plan.n_units) r->gend[r->n_groups++] = sg->row0 + sg->n;
    }
    return LV_OK;
}

/* where the batch starting at row r0 ends: n_batch rows on, or at the end of a group */
static int64_t batch_end(const run *r, int64_t r0) {
    int64_t e = LV_MIN(r0 + (int64_t)r->B, r->l->plan.n_rows);
    if (r->next_group < r->n_groups) e = LV_MIN(e, r->gend[r->next_group]);
    return e;
}

/* the carrier's input embedding: the mean of the unit's n rows, each dimension summed in row order
 * in double precision (one function for both executions) */
static void carrier_mean(const float *unit, int32_t n, int64_t E, float *out) {
    for (int64_t e = 0; e < E; e++) {
        double s = 0;
        for (int32_t i = 0; i < n; i++) s += unit[(int64_t)i * E + e];
        out[e] = (float)(s / (double)n);
    }
}

/* VideoScan, after the batch that ended at the carrier (row end - 1; its input embedding cemb):
 * every layer keeps the carrier (+ carrier_keep visual rows) of the unit; then the memory cap */
static lv_status carrier_done(run *r, int64_t start, int64_t end, const float *cemb) {
    const lv_video_ask_params *p = r->p;
    int64_t nd = 0;
    const double t = lv_time_s(), c = lv_cpu_time_s();
    lv_status st = lv_kv_seq_carrier_keep(r->ctx, r->seq, end - start, r->prunable + start, p->carrier_keep, p->carrier_layer, &nd);
    if (st == LV_OK) {
        r->res->n_pruned += nd;
        r->res->n_carriers++;
        r->res->n_carrier_rows += 1 + (r->l->plan.unit_tokens - nd);
    }
    if (st == LV_OK && p->carrier_max > 0) {
        const int32_t k = r->n_held++;
        memcpy(r->cemb + (int64_t)k * r->E, cemb, (size_t)r->E * sizeof(float));
        r->clo[k] = r->pos0 + (lv_pos)(end - 1 - r->l->plan.unit_tokens);
        r->chi[k] = r->pos0 + (lv_pos)(end - 1);
        if (r->n_held > p->carrier_max) {
            const int32_t v = lv_vq_carrier_victim(r->cemb, r->n_held, r->E);
            int64_t nc = 0;
            st = lv_kv_seq_drop_pruned(r->ctx, r->seq, r->clo[v], r->chi[v] + 1, &nc);
            if (st == LV_OK) {
                r->res->n_carriers--;
                r->res->n_carriers_dropped++;
                r->res->n_carrier_rows -= nc;
                r->res->n_cap_rows_dropped += nc;
                const int32_t m = r->n_held - v - 1;
                memmove(r->cemb + (int64_t)v * r->E, r->cemb + (int64_t)(v + 1) * r->E, (size_t)m * (size_t)r->E * sizeof(float));
                memmove(r->clo + v, r->clo + v + 1, (size_t)m * sizeof(lv_pos));
                memmove(r->chi + v, r->chi + v + 1, (size_t)m * sizeof(lv_pos));
                r->n_held--;
            }
        }
    }
    const double dt = lv_time_s() - t;
    r->res->prefill_cpu_s += lv_cpu_time_s() - c;
    r->res->prune_s += dt;
    r->res->prefill_s += dt;
    if (st == LV_OK) r->next_group++;
    return st;
}

/* after the batch that ended at row `end` (its last row's input embedding last_embd): prune the
 * group it completed */
static lv_status group_done(run *r, int64_t end, const float *last_embd) {
    if (r->next_group >= r->n_groups || end != r->gend[r->next_group]) return LV_OK;
    const int64_t start = r->next_group ? r->gend[r->next_group - 1] : 0;
    if (r->p->carrier) return carrier_done(r, start, end, last_embd);
    int64_t np = 0;
    const double t = lv_time_s(), c = lv_cpu_time_s();
    lv_status st = lv_kv_seq_prune_keys(r->ctx, r->seq, end - start, r->prunable + start, r->p->keep, &np);
    const double dt = lv_time_s() - t;
    r->res->prefill_cpu_s += lv_cpu_time_s() - c;
    r->res->prune_s += dt;
    r->res->prefill_s += dt;
    if (st != LV_OK) return st;
    r->res->n_pruned += np;
    r->res->n_groups++;
    r->next_group++;
    return LV_OK;
}

/* ---- the sequential reference: decode all, encode all, prefill from whole arrays ---- */

static lv_status run_sequential(run *r) {
    const lv_vq_layout *l = r->l;
    const lv_video_ask_plan *pl = &l->plan;
    lv_video_read_params rp = read_params(r);
    void *frames = NULL;
    int64_t n_frames = 0, fsize = 0;
    float *embd = NULL, *rows_embd = NULL;
    lv_token *tok = NULL;
    lv_pos *pos4 = NULL;
    lv_batch b = {0};
    double t = lv_time_s();
    lv_status st = lv_video_read_all(r->video, &rp, &frames, &n_frames, &fsize);
    r->res->decode_s = lv_time_s() - t;
    if (st != LV_OK) goto done;
    if (n_frames != pl->n_frames) {
        st = lv_error(LV_ERR_FORMAT, "only %lld of the video's %lld sampled frames could be decoded (damaged or truncated): a question needs every one",
                      (long long)n_frames, (long long)pl->n_frames);
        goto done;
    }
    r->prog.n_decoded = n_frames;
    report(r);
    /* encode every unit */
    embd = lv_mallocn((size_t)(pl->n_units * r->unit_floats), sizeof(float));
    if (!embd) {
        st = LV_ERR_NOMEM;
        goto done;
    }
    t = lv_time_s();
    for (int64_t u = 0; u < pl->n_units && st == LV_OK; u++) {
        if (aborted(r)) {
            st = lv_error(LV_ERR_ABORTED, "asking a video: aborted while encoding");
            break;
        }
        const uint8_t *f0 = (const uint8_t *)frames + u * r->frames_per_unit * fsize;
        const uint8_t *f1 = r->frames_per_unit == 2 ? f0 + fsize : NULL;
        st = lv_mmproj_encode_frames(r->mm, r->tp, f0, f1, pl->frame_w, pl->frame_h, embd + u * r->unit_floats);
        if (st == LV_OK && l->carrier)
            carrier_mean(embd + u * r->unit_floats, pl->unit_tokens, r->E, embd + u * r->unit_floats + (int64_t)pl->unit_tokens * r->E);
        r->prog.n_encoded = LV_MIN(pl->n_frames, (u + 1) * r->frames_per_unit);
        report(r);
    }
    r->res->encode_s = lv_time_s() - t;
    lv_video_frames_free(frames);
    frames = NULL;
    if (st != LV_OK) goto done;
    /* every row: its token, its embedding (zeros for text) and its four positions */
    const int64_t N = pl->n_rows, E = r->E;
    tok = lv_mallocn((size_t)N, sizeof(lv_token));
    rows_embd = lv_mallocn((size_t)(N * E), sizeof(float));
    pos4 = lv_mallocn((size_t)(4 * N), sizeof(lv_pos));
    b = lv_batch_init_embd(r->B, (int32_t)E);
    if (!tok || !rows_embd || !pos4 || !b.token) {
        st = LV_ERR_NOMEM;
        goto done;
    }
    for (int32_t s = 0; s < l->n_segs; s++) {
        const lv_vq_seg *sg = &l->segs[s];
        for (int32_t i = 0; i < sg->n; i++) {
            const int64_t row = sg->row0 + i;
            tok[row] = sg->unit ? LV_TOKEN_EMBD : l->tokens[sg->first + i];
            if (sg->unit) memcpy(rows_embd + row * E, embd + sg->first * r->unit_floats + (int64_t)i * E, (size_t)E * sizeof(float));
            else memset(rows_embd + row * E, 0, (size_t)E * sizeof(float));
            lv_vq_row_pos(l, sg, i, &pos4[4 * row], &pos4[4 * row + 1], &pos4[4 * row + 2], &pos4[4 * row + 3]);
        }
    }
    lv_free(embd);
    embd = NULL;
    t = lv_time_s();
    for (int64_t r0 = 0, e; r0 < N && st == LV_OK; r0 = e) {
        e = batch_end(r, r0);
        if (aborted(r)) {
            st = lv_error(LV_ERR_ABORTED, "asking a video: aborted while prefilling");
            break;
        }
        const int32_t n = (int32_t)(e - r0);
        b.n_tokens = n;
        for (int32_t j = 0; j < n; j++) {
            b.token[j] = tok[r0 + j];
            b.pos[j] = r->pos0 + (lv_pos)(r0 + j);
            b.seq_id[j] = r->seq;
            b.logits[j] = r0 + j == N - 1;
            for (int k = 0; k < 4; k++) b.pos_mrope[(int64_t)k * n + j] = pos4[4 * (r0 + j) + k];
        }
        memcpy(b.embd, rows_embd + r0 * E, (size_t)n * (size_t)E * sizeof(float));
        lv_batch bb = b;
        if (!l->mrope) bb.pos_mrope = NULL;
        const double c = lv_cpu_time_s();
        st = lv_decode(r->ctx, &bb);
        r->res->prefill_cpu_s += lv_cpu_time_s() - c;
        if (st == LV_OK) st = group_done(r, e, rows_embd + (e - 1) * E);
        if (st == LV_OK) {
            r->prog.n_rows_done = r0 + n;
            report(r);
        }
    }
    r->res->prefill_s = lv_time_s() - t; /* the pruning included */
done:
    lv_video_frames_free(frames);
    lv_free(embd);
    lv_free(rows_embd);
    lv_free(tok);
    lv_free(pos4);
    lv_batch_free(&b);
    return st;
}

/* ---- the overlapped pipeline ---- */

typedef struct feeder {
    run *r;
    lv_batch b;
    lv_pos *stage;           /* (t, h, w, e) per staged row */
    int32_t n;               /* rows staged */
    int64_t row;             /* rows staged or done */
} feeder;

static lv_status flush(feeder *f) {
    run *r = f->r;
    if (f->n == 0) return LV_OK;
    if (aborted(r)) return lv_error(LV_ERR_ABORTED, "asking a video: aborted while prefilling");
    const int32_t n = f->n;
    f->b.n_tokens = n;
    f->b.logits[n - 1] = f->row == r->l->plan.n_rows;
    lv_batch bb = f->b;
    if (r->l->mrope) {
        for (int32_t j = 0; j < n; j++)
            for (int k = 0; k < 4; k++) bb.pos_mrope[(int64_t)k * n + j] = f->stage[4 * j + k];
    } else {
        bb.pos_mrope = NULL;
    }
    const double t = lv_time_s(), c = lv_cpu_time_s(), w = lv_budget_pool_wait_s(r->budget);
    lv_status st = lv_decode(r->ctx, &bb);
    const double dw = lv_budget_pool_wait_s(r->budget) - w; /* the decode threads had the cores */
    r->res->prefill_s += lv_time_s() - t - dw;
    r->res->wait_s += dw;
    r->res->prefill_cpu_s += lv_cpu_time_s() - c;
    f->n = 0;
    if (st == LV_OK) st = group_done(r, f->row, f->b.embd + (int64_t)(n - 1) * r->E);
    if (st != LV_OK) return st;
    r->prog.n_rows_done = f->row;
    report(r);
    return LV_OK;
}

static lv_status feed_row(feeder *f, const lv_vq_seg *s, int32_t i, const float *embd_row) {
    run *r = f->r;
    const int32_t n = f->n;
    f->b.token[n] = s->unit ? LV_TOKEN_EMBD : r->l->tokens[s->first + i];
    if (s->unit) memcpy(f->b.embd + (int64_t)n * r->E, embd_row, (size_t)r->E * sizeof(float));
    f->b.pos[n] = r->pos0 + (lv_pos)f->row;
    f->b.seq_id[n] = r->seq;
    f->b.logits[n] = 0;
    lv_pos *q = f->stage + 4 * n;
    lv_vq_row_pos(r->l, s, i, &q[0], &q[1], &q[2], &q[3]);
    f->n++;
    f->row++;
    if (f->n == r->B || f->row == r->l->plan.n_rows || (r->next_group < r->n_groups && f->row == r->gend[r->next_group])) return flush(f);
    return LV_OK;
}

static lv_status run_overlapped(run *r) {
    const lv_vq_layout *l = r->l;
    const lv_video_ask_plan *pl = &l->plan;
    lv_video_read_params rp = read_params(r);
    lv_video_reader *rd = NULL;
    /* the shared thread budget: the pool's threads and the decode threads together hold at most
     * the pool's thread count of tokens; the decoders are urgent while fewer than two units of
     * frames are ready ahead of the encoder, until four are */
    lv_budget *budget = NULL;
    if (!r->p->no_budget && r->tp) {
        budget = lv_budget_create(lv_threadpool_n_threads(r->tp));
        if (!budget) return LV_ERR_NOMEM;
        lv_threadpool_set_budget(r->tp, budget);
        r->budget = budget;
    }
    feeder f = {r, {0}, NULL, 0, 0};
    const int64_t fsize = (int64_t)pl->frame_w * pl->frame_h * 3;
    uint8_t *first = r->frames_per_unit == 2 ? lv_malloc((size_t)fsize) : NULL;
    float *unit = lv_mallocn((size_t)r->unit_floats, sizeof(float));
    f.b = lv_batch_init_embd(r->B, (int32_t)r->E);
    f.stage = lv_mallocn((size_t)(4 * r->B), sizeof(lv_pos));
    lv_status st = LV_OK;
    if (!unit || !f.b.token || !f.stage || (r->frames_per_unit == 2 && !first)) {
        st = LV_ERR_NOMEM;
        goto done;
    }
    if ((st = lv_video_read_start_budget_(r->video, &rp, budget, 2 * (int64_t)r->frames_per_unit, 4 * (int64_t)r->frames_per_unit, &rd)) != LV_OK)
        goto done;
    r->rd = rd;
    int64_t next_frame = 0;
    for (int32_t s = 0; s < l->n_segs && st == LV_OK; s++) {
        const lv_vq_seg *sg = &l->segs[s];
        if (!sg->unit) {
            for (int32_t i = 0; i < sg->n && st == LV_OK; i++) st = feed_row(&f, sg, i, NULL);
            continue;
        }
        if (aborted(r)) {
            st = lv_error(LV_ERR_ABORTED, "asking a video: aborted");
            break;
        }
        /* the unit's frames, in order, from the decode threads */
        const uint8_t *f0 = NULL, *f1 = NULL;
        for (int32_t j = 0; j < r->frames_per_unit && st == LV_OK; j++) {
            lv_video_frame fr;
            double t = lv_time_s();
            st = lv_video_reader_next(rd, &fr);
            r->res->wait_s += lv_time_s() - t;
            if (st != LV_OK) break;
            if (!fr.data || fr.index != next_frame) {
                st = lost_error(r, next_frame, &fr);
                break;
            }
            next_frame++;
            r->prog.n_decoded = next_frame;
            if (j == 0 && r->frames_per_unit == 2) {
                memcpy(first, fr.data, (size_t)fsize);
                f0 = first;
            } else if (j == 0) {
                f0 = fr.data;
            } else {
                f1 = fr.data;
            }
        }
        if (st != LV_OK) break;
        report(r);
        double t = lv_time_s(), w = lv_budget_pool_wait_s(budget);
        st = lv_mmproj_encode_frames(r->mm, r->tp, f0, f1, pl->frame_w, pl->frame_h, unit);
        if (st == LV_OK && l->carrier) carrier_mean(unit, pl->unit_tokens, r->E, unit + (int64_t)pl->unit_tokens * r->E);
        const double dw = lv_budget_pool_wait_s(budget) - w; /* the decode threads had the cores */
        r->res->encode_s += lv_time_s() - t - dw;
        r->res->wait_s += dw;
        if (st != LV_OK) break;
        r->prog.n_encoded = next_frame;
        report(r);
        for (int32_t i = 0; i < sg->n && st == LV_OK; i++) st = feed_row(&f, sg, i, unit + (int64_t)i * r->E);
    }
    if (st == LV_OK && f.row != pl->n_rows) st = lv_error(LV_ERR_INTERNAL, "fed %lld of %lld rows", (long long)f.row, (long long)pl->n_rows);
done:
    if (rd) {
        lv_video_stats vs;
        lv_video_reader_stats(rd, &vs);
        r->res->decode_s = vs.decode_s;
    }
    r->rd = NULL;
    lv_video_reader_free(rd); /* its threads stop, giving their tokens back */
    if (budget) {
        lv_budget_pool_leave(budget);
        lv_threadpool_set_budget(r->tp, NULL);
        lv_budget_stats bs;
        lv_budget_get_stats(budget, &bs);
        r->res->budget_tokens = bs.n_tokens;
        r->res->budget_max_held = bs.max_held;
        r->res->budget_yields = bs.n_pool_yields;
        r->res->budget_use = bs.wall_s > 0 ? bs.held_s / (bs.n_tokens * bs.wall_s) : 0;
        r->budget = NULL;
        lv_budget_free(budget);
    }
    lv_batch_free(&f.b);
    lv_free(f.stage);
    lv_free(unit);
    lv_free(first);
    return st;
}

/* ---- the public call: plan, run, and put the sequence back on failure ---- */

lv_status lv_video_ask(lv_context *ctx, const lv_mmproj *mm, lv_video *video, const lv_video_ask_params *params, lv_pos *n_past,
                       lv_video_ask_result *result) {
    lv_video_ask_result local;
    lv_video_ask_result *res = result ? result : &local;
    memset(res, 0, sizeof(*res));
    if (!ctx || !mm || !video || !params || !n_past) return lv_error(LV_ERR_INVALID_ARG, "lv_video_ask: a NULL argument");
    const lv_seq_id seq = params->seq;
    if (lv_kv_seq_n_tokens(ctx, seq) < 0) return lv_error(LV_ERR_INVALID_ARG, "lv_video_ask: sequence id %d out of range", seq);
    const lv_model *model = lv_context_model(ctx);
    const lv_pos n0 = *n_past;
    const int32_t off0 = lv_kv_seq_rope_offset(ctx, seq);
    const double t0 = lv_time_s(), c0 = lv_cpu_time_s();
    lv_vq_layout l;
    lv_status st = lv_vq_layout_build(model, mm, video, params, n0 + off0, &l);
    if (st != LV_OK) return st;
    res->plan = l.plan;
    if ((int64_t)n0 + l.plan.n_rows > (int64_t)lv_context_n_ctx(ctx)) {
        st = lv_error(LV_ERR_CONTEXT_FULL, "the video and prompt take %lld positions (%lld frames, %d embeddings each %s, %lld text tokens); "
                      "the context holds %u, %d of them used", (long long)l.plan.n_rows, (long long)l.plan.n_frames, l.plan.unit_tokens,
                      l.fam == LV_VQ_SMOLVLM2 ? "frame" : "pair", (long long)l.plan.n_text, lv_context_n_ctx(ctx), n0);
        lv_vq_layout_free(&l);
        return st;
    }
    run r;
    memset(&r, 0, sizeof(r));
    r.ctx = ctx;
    r.mm = mm;
    r.video = video;
    r.p = params;
    r.l = &l;
    r.tp = lv_context_threadpool(ctx);
    r.seq = seq;
    r.pos0 = n0;
    r.B = (int32_t)lv_context_n_batch(ctx);
    r.E = lv_model_n_embd(model);
    r.unit_floats = (int64_t)(l.plan.unit_tokens + (l.carrier ? 1 : 0)) * r.E;
    r.frames_per_unit = l.fam == LV_VQ_SMOLVLM2 ? 1 : 2;
    r.prog.n_frames = l.plan.n_frames;
    r.prog.n_rows = l.plan.n_rows;
    r.t0 = t0;
    r.res = res;
    st = groups_build(&r);
    if (st == LV_OK) st = params->sequential ? run_sequential(&r) : run_overlapped(&r);
    lv_free(r.gend);
    lv_free(r.prunable);
    lv_free(r.cemb);
    lv_free(r.clo);
    lv_free(r.chi);
    res->total_s = lv_time_s() - t0;
    res->total_cpu_s = lv_cpu_time_s() - c0;
    if (st == LV_OK) {
        *n_past = n0 + (lv_pos)l.plan.n_rows;
        res->n_past = *n_past;
    } else {
        /* put the sequence back: its tokens from n0 on, and its rotary offset */
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", lv_last_error());
        lv_status rs = lv_kv_seq_rm(ctx, seq, n0, -1);
        if (rs == LV_OK) rs = lv_kv_seq_set_rope_offset(ctx, seq, off0);
        if (rs != LV_OK)
            lv_error(st, "%s (and the sequence could not be put back: %s)", msg, lv_last_error());
        else
            lv_error(st, "%s", msg);
        res->n_past = n0;
    }
    lv_vq_layout_free(&l);
    return st;
}
