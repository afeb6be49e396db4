/*
 * pipeline.h: what the files of the pipeline module share (internal; the public API is the
 * "asking a video" section of include/longview.h, the design docs/video-questions.md).
 *
 * The module src/pipeline/ (docs/architecture.md):
 *   Owns:  asking a video: each model family's frame-count rules and frame size, its video prompt
 *          (SmolVLM2's intro and frame timestamps, Qwen2-VL / Qwen2.5-VL's temporal pairs and
 *          M-RoPE video positions), the layout of the prompt's rows, and the two executions of it:
 *          the sequential reference and the overlapped pipeline (decode threads, encode and prefill
 *          within one thread budget of the pool's size, core/budget.c), both cutting the rows into
 *          the same batches, and the rollback on failure.
 *   Never: decodes codecs, computes a layer or an encoder block itself, owns KV memory, prints.
 *
 *   layout.c  sampling rules, number words, the prompt's pieces of text and units of embeddings,
 *             every row's positions
 *   ask.c     the executions (sequential, overlapped), progress, rollback, the public calls
 */
#ifndef LV_PIPELINE_H
#define LV_PIPELINE_H

#include "core/core.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum lv_vq_family {
    LV_VQ_SMOLVLM2 = 0, /* idefics3 projector */
    LV_VQ_QWEN2VL,      /* qwen2vl_merger: t = pair index */
    LV_VQ_QWEN25VL,     /* qwen2.5vl_merger: t = floor(pair * seconds per pair * tokens_per_second) */
} lv_vq_family;

/* One segment of the prompt: a run of text tokens or the rows of one encoder unit. */
typedef struct lv_vq_seg {
    bool    unit;        /* false: text tokens tokens[first .. first + n) */
    int64_t first;       /* text: index into layout.tokens; unit: the unit number */
    int32_t n;           /* rows */
    int64_t row0;        /* the segment's first row in the prompt */
    int32_t rope0;       /* text: the rotary position of its first token; unit: st, the video block's start */
    int32_t t;           /* unit: its temporal position (added to st) */
} lv_vq_seg;

typedef struct lv_vq_layout {
    lv_vq_family fam;
    lv_video_ask_plan plan;
    bool     mrope;          /* the text model takes four positions per token */
    bool     carrier;        /* VideoScan: each unit segment ends with a carrier row (n = unit_tokens + 1) */
    /* sampling: SmolVLM2 frame indices (INDICES rule); Qwen the COUNT rule over plan.n_frames */
    int64_t *frame_idx;
    double   video_fps;      /* the container's average frame rate (HF metadata.fps) */
    int64_t  video_frames;   /* frames of the video (HF total_num_frames) */
    /* the prompt */
    lv_token *tokens;
    int64_t   n_tokens;
    lv_vq_seg *segs;
    int32_t   n_segs;
    char    **pieces;        /* each text segment's text (for the prompt text) */
    int32_t   rope_end;      /* the rotary position after the prompt (M-RoPE models) */
} lv_vq_layout;

/* Number words as Python's num2words(n) (English): "sixty-four", "three hundred and sixty",
 * "one thousand, two hundred and thirty-four". n in [0, 10^9). Writes at most n_buf bytes with
 * the NUL; returns the length. */
int32_t lv_vq_number_words(int64_t n, char *buf, size_t n_buf);

/* The frame indices of SmolVLM2's HF sampler (smolvlm_sample_indices_fn): min(round(fps x
 * duration), max_frames) frames over [0, total) (a second trimmed at each end when the video is
 * long), numpy's linspace truncated to integers, duplicates removed. want > 0: that many frames
 * over the whole video instead. *out is allocated; returns the count through *n. */
lv_status lv_vq_smolvlm2_indices(int64_t total, double video_fps, double fps, int64_t max_frames, int64_t want, int64_t **out,
                                 int64_t *n);
/* Qwen's frame count (qwen_vl_utils smart_nframes): even, 4 .. min(max_frames, total) at fps. */
int64_t lv_vq_qwen_nframes(int64_t total, double video_fps, double fps, int64_t max_frames, int64_t want);

/* Build the layout of a question. rope0: the rotary position of the first row (the cache
 * position plus the sequence's rotary offset). */
lv_status lv_vq_layout_build(const lv_model *model, const lv_mmproj *mm, const lv_video *video, const lv_video_ask_params *p, int32_t rope0,
                             lv_vq_layout *out);
void      lv_vq_layout_free(lv_vq_layout *l);
/* VideoScan's memory cap: of n carriers' input embeddings (n x E), the index of the earlier member
 * of the adjacent pair (i, i + 1) with the highest cosine similarity, dot / max(|a| |b|, 1e-8) in
 * double precision (ties: the earlier pair); -1 when n < 2. */
int32_t   lv_vq_carrier_victim(const float *emb, int32_t n, int64_t E);
/* The rotary positions (t, h, w, e) of row i of segment s (a unit's carrier row, i = unit_tokens:
 * the unit's t and the grid's last (h, w)). */
void      lv_vq_row_pos(const lv_vq_layout *l, const lv_vq_seg *s, int32_t i, int32_t *t, int32_t *h, int32_t *w, int32_t *e);

#endif /* LV_PIPELINE_H */
