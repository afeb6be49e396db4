/*
 * vniah.h: the data of the video needle-in-a-haystack task (issue 20, docs/vniah.md): a bitmap
 * font and a text renderer of our own, a bank of real haystack frames decoded into memory, and
 * training samples made from them: frames with a rendered number (or words) drawn into some of
 * them, a question about it and its answer. The evaluation videos `longview video-vniah` writes
 * use the same font, styles and placement rule (vn_needle_style).
 *
 * Frames are RGB8, rows packed. Everything here is a pure function of its arguments (samples of
 * the seed, step and index), so the training data does not depend on the thread count.
 */
#ifndef LV_VNIAH_H
#define LV_VNIAH_H

#include "longview.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the font and the renderer ------------------------------------------------------------ */

/* Glyph cells: 5 x 7 pixels, 1 pixel apart; the text box has a margin of VN_MARGIN cell pixels. */
enum { VN_GLYPH_W = 5, VN_GLYPH_H = 7, VN_ADVANCE = 6, VN_MARGIN = 2 };

/* Glyph of character ch: 7 rows, bit 4 of a row is its leftmost pixel; NULL when the font has no
 * such character. Lowercase letters are drawn as capitals. The font: 0-9, A-Z, space and
 * : . , - ? ! ' / # + = ( ) */
const uint8_t *vn_glyph(char ch);
/* Whether every character of text is in the font (and text is 1..23 characters). */
bool vn_text_ok(const char *text);
/* Size in pixels of text's box at scale num/den (one font pixel = num/den image pixels):
 * floor(cells * num / den) for (VN_ADVANCE * n - 1 + 2 * VN_MARGIN) x (VN_GLYPH_H + 2 * VN_MARGIN) cells. */
void vn_text_box(const char *text, int scale_num, int scale_den, int *box_w, int *box_h);
/* Draw text's box with its top-left corner at (x, y) (may be off the frame: clipped, nothing is
 * written outside [0, w) x [0, h)): the box filled with bg, glyph pixels in fg, each font pixel
 * (gx, gy) covering image pixels x + floor(gx * num / den) .. x + floor((gx + 1) * num / den) - 1
 * (and the same vertically), so at scale 1/1 glyph i's pixel (c, r) is image pixel
 * (x + VN_MARGIN + VN_ADVANCE * i + c, y + VN_MARGIN + r). rgb: h rows of `stride` bytes. */
void vn_draw_text(uint8_t *rgb, int w, int h, int stride, const char *text, int x, int y, int scale_num, int scale_den,
                  const uint8_t fg[3], const uint8_t bg[3]);

/* ---- randomness (splitmix64) -------------------------------------------------------------- */

typedef struct vn_rng {
    uint64_t s;
} vn_rng;
uint64_t vn_rng_next(vn_rng *r);
double   vn_rng_unit(vn_rng *r);                  /* [0, 1) */
int64_t  vn_rng_range(vn_rng *r, int64_t lo, int64_t hi); /* uniform in [lo, hi] */

/* Where and how a needle is drawn on a w x h frame: a box of box_min..box_max of the frame's
 * width (less where its height would pass 0.9 h), at a uniform position inside the frame, dark
 * glyphs (grey 0..60, slightly tinted) on a light box (grey 200..255). */
typedef struct vn_style {
    int x, y, scale_num, scale_den, box_w, box_h;
    uint8_t fg[3], bg[3];
} vn_style;
void vn_needle_style(vn_rng *r, const char *text, int w, int h, double box_min, double box_max, vn_style *st);

/* ---- samples -------------------------------------------------------------------------------- */

/* A needle: text drawn into frames [f0, f1) of the sample (f1 - f0 >= 1). */
typedef struct vn_needle {
    int32_t f0, f1;
    double t;      /* seconds of frame f0 */
    char text[24];
    /* where glyph i's 5 x 7 cell is centred in the sample's S x S frames, as fractions of the width
     * (cx[i]) and of the height (cy, one line): --oracle-grid of train-video places characters by it */
    double cx[24], cy;
} vn_needle;

typedef enum vn_kind {
    VN_SINGLE = 0, /* one number: "What is the number shown in the video?" */
    VN_KEYED,      /* keyed_needles numbers: "What number is shown at MM:SS?" */
    VN_ORDER,      /* two numbers: "Which number was shown first, A or B?" */
    VN_WORDS,      /* one needle of 2-3 words: "What words are shown in the video?" (added; weight w_words) */
} vn_kind;

typedef struct vn_config {
    int32_t size;                   /* S: frames are S x S RGB8 (the tower's input; SmolVLM2 stretches every frame to one S x S tile) */
    int32_t frames_min, frames_max; /* frame count of a sample, drawn uniformly */
    double fps;                     /* sampling rate of the sample's frames (1.0: one frame a second); frame i is at time i / fps */
    int32_t needle_frames;          /* frames a needle stays on screen (>= 1) */
    int32_t digits;                 /* 5: needle numbers of this many digits, first digit not 0 */
    double w_single, w_keyed, w_order; /* task mix (weights) */
    int32_t keyed_needles;          /* needles in a keyed sample (2..8) */
    /* added (0 = the default in brackets) */
    double w_words;                 /* weight of VN_WORDS samples [0] */
    int32_t bank_step;              /* the bank keeps every bank_step-th frame of each stream [1: all] */
    int32_t bank_max;               /* bank frames' longer side, at most (the source's aspect kept) [4 * size] */
    int32_t stride_max;             /* a sample steps through the bank by a stride drawn in 1..stride_max [the bank's
                                       frames per second of footage / fps: up to the footage's own pace] */
    double box_min, box_max;        /* needle box width as a fraction of the frame's [0.45, 0.9] */
} vn_config;

/* The minimal frame count a sample of this kind needs under c (keyed and order needles are at
 * least vn_min_gap(c) frames apart). */
int32_t vn_min_gap(const vn_config *c);
int32_t vn_min_frames(const vn_config *c, vn_kind kind);
/* Check a configuration (sizes, weights, frames_min large enough for every kind with weight > 0).
 * 0, or -1 after cli_error. */
int vn_config_check(const vn_config *c);

typedef struct vn_bank vn_bank; /* haystack frames, opaque */
/* Decode haystack footage (each path: a video file; every video stream of it, all its frames or
 * one every c->bank_step) into memory: frames resized (swscale bicubic from the decoder's YUV, as
 * the reader does) to one bank size, the first stream's aspect with the longer side
 * min(c->bank_max or 4 S, the first stream's longer side), and each also reduced to S x S.
 * 0 or -1 after cli_error. */
int  vn_bank_load(const char *const *paths, int n_paths, const vn_config *c, vn_bank **out);
void vn_bank_free(vn_bank *b);
/* The bank's frames (all streams one after the other), their size, and frame i (0 <= i <
 * n_frames) at the bank size (big) and reduced to S x S (small) with lv_video_scaler. */
int64_t        vn_bank_n_frames(const vn_bank *b);
void           vn_bank_frame_size(const vn_bank *b, int32_t *w, int32_t *h);
const uint8_t *vn_bank_frame_big(const vn_bank *b, int64_t i);
const uint8_t *vn_bank_frame_small(const vn_bank *b, int64_t i);
/* Bank frames per second of footage (the streams' frame rates / bank_step, averaged over the frames). */
double         vn_bank_rate(const vn_bank *b);

typedef struct vn_sample {
    int32_t n_frames, size;
    uint8_t *rgb;                 /* n_frames * size * size * 3, owned, reused across calls (grown) */
    double duration_s;            /* n_frames / fps */
    int32_t n_needles;
    vn_needle needles[8];
    vn_kind kind;
    char question[160];           /* e.g. "What is the number shown in the video?" / "What number is shown at 01:23?" / "Which number was shown first, 12345 or 67890?" */
    char answer[32];              /* e.g. "12345" (no leading space, no period) */
    /* added */
    int64_t bank_start;           /* frame i is bank frame (bank_start + i * stride) mod n_frames of the bank */
    int32_t stride;
    int32_t asked;                /* VN_KEYED: the needle the question names */
    void *priv_;                  /* scratch (a scaler, a big frame), owned; the caller zero-initialises a vn_sample */
} vn_sample;

/* Sample (seed, step, index): a pure function of these and the config/bank (bit-identical on
 * every call and thread count). s must be zero-initialised before its first use and is reused
 * (one vn_sample per thread). 0 or -1 after cli_error. */
int  vn_make_sample(const vn_bank *b, const vn_config *c, uint64_t seed, int64_t step, int64_t index, vn_sample *s);
void vn_sample_free(vn_sample *s);

/* The question and the answer of a sample of this kind over needles nd[] (in time order), the
 * text vn_make_sample and `longview eval vniah` ask: VN_SINGLE "What is the number shown in the
 * video?" (nd[0]); VN_KEYED "What number is shown at MM:SS?" naming nd[asked] (MM:SS:
 * lv_video_ask_timestamp(nd[asked].t)); VN_ORDER "Which number was shown first, A or B?" (nd[0]
 * and nd[1], nd[1] named first when swap; the answer nd[0]); VN_WORDS "What words are shown in the
 * video?" (nd[0]). */
void vn_question(vn_kind kind, const vn_needle *nd, int32_t asked, bool swap, char question[160], char answer[32]);

/* ---- evaluation (`longview eval vniah`, docs/vniah.md) ------------------------------------- */

/* The needles of an evaluation video of n_frames frames at fps (frame f at f / fps seconds). */
typedef struct vn_eval_needles {
    int32_t n_needles;     /* 1 (single), keyed_needles (keyed), 2 (order) */
    vn_needle needles[8];  /* in time order; each needle_frames frames long */
    int32_t at_depth;      /* the needle placed at the depth: start frame round(depth * (n_frames - needle_frames)) */
    int32_t asked;         /* VN_KEYED: the needle the question names (= at_depth); else 0 */
    char question[160], answer[32];
} vn_eval_needles;
/* Lay out the needles of an evaluation video (a pure function of the arguments): one needle at the
 * depth; for keyed and order the others at start frames drawn uniformly among those at least
 * vn_min_gap frames from every needle already placed (so no two share a frame or an MM:SS); then
 * distinct numbers of `digits` digits (first not 0) in time order, and vn_question's text (keyed:
 * the question names the needle at the depth; order: the two named in a drawn order). kind: VN_SINGLE,
 * VN_KEYED or VN_ORDER. 0, or -1 after cli_error (a video too short for the needles). */
int vn_eval_layout(vn_kind kind, int64_t n_frames, double fps, int32_t needle_frames, int32_t keyed_needles, int32_t digits, double depth,
                   uint64_t seed, vn_eval_needles *out);

/* The scoring rule of `eval vniah`: the response's first number is its first maximal run of ASCII
 * digits 0-9 (whatever precedes it: spaces, words, punctuation); the answer is right when that run
 * is exactly the expected number, no digit more or less. " 12345.", "It is 12345, yes" and
 * "12345 67890" are right for 12345; "123456", "1234 5", "12,345", "01:23 12345", "" are wrong. */
bool vn_answer_right(const char *response, const char *answer);
/* The response's first number as text (at most n - 1 digits kept); returns its length in digits
 * (0: none). */
int vn_first_number(const char *response, char *out, size_t n);

#endif
