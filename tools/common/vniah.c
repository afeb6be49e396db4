/*
 * vniah.c: V-NIAH data (docs/vniah.md): the font and renderer, the haystack frame bank, and the
 * training samples. The bank is decoded by the library's reader (include/longview.h); the needle
 * frames are reduced to S x S by lv_video_scaler, the reader's swscale settings. Nothing here
 * prints except errors through cli_error.
 */
#include "vniah.h"
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* -------------------------------------------------------------------------------------------
 * the font: 5 x 7 cells, one byte per row, bit 4 the leftmost pixel (drawn for this project)
 * ----------------------------------------------------------------------------------------- */

typedef struct glyph {
    char ch;
    uint8_t rows[VN_GLYPH_H];
} glyph;

static const glyph font[] = {
    {' ', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
    {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}},
    {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}},
    {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}},
    {'!', {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04}},
    {'\'', {0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00}},
    {'/', {0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10}},
    {'#', {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A}},
    {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}},
    {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
};

const uint8_t *vn_glyph(char ch) {
    if (ch >= 'a' && ch <= 'z') ch = (char)(ch - 'a' + 'A');
    for (size_t i = 0; i < sizeof(font) / sizeof(font[0]); i++)
        if (font[i].ch == ch) return font[i].rows;
    return NULL;
}

bool vn_text_ok(const char *text) {
    if (!text) return false;
    const size_t n = strlen(text);
    if (n < 1 || n > 23) return false;
    for (size_t i = 0; i < n; i++)
        if (!vn_glyph(text[i])) return false;
    return true;
}

static void box_cells(const char *text, int *cw, int *ch) {
    const int n = (int)strlen(text);
    *cw = VN_ADVANCE * n - 1 + 2 * VN_MARGIN;
    *ch = VN_GLYPH_H + 2 * VN_MARGIN;
}

void vn_text_box(const char *text, int num, int den, int *box_w, int *box_h) {
    int cw, ch;
    box_cells(text, &cw, &ch);
    *box_w = (int)((int64_t)cw * num / den);
    *box_h = (int)((int64_t)ch * num / den);
}

void vn_draw_text(uint8_t *rgb, int w, int h, int stride, const char *text, int x, int y, int num, int den, const uint8_t fg[3],
                  const uint8_t bg[3]) {
    if (!rgb || !text || num <= 0 || den <= 0 || w <= 0 || h <= 0) return;
    const int n = (int)strlen(text);
    const uint8_t *rows[64];
    if (n > 64) return;
    for (int i = 0; i < n; i++) rows[i] = vn_glyph(text[i]);
    int bw, bh;
    vn_text_box(text, num, den, &bw, &bh);
    const int64_t y0 = y > 0 ? y : 0, y1 = (int64_t)y + bh < h ? (int64_t)y + bh : h;
    const int64_t x0 = x > 0 ? x : 0, x1 = (int64_t)x + bw < w ? (int64_t)x + bw : w;
    for (int64_t py = y0; py < y1; py++) {
        /* the font pixel covering this row: the largest g with floor(g * num / den) <= py - y */
        const int64_t gy = (((py - y) + 1) * den - 1) / num - VN_MARGIN;
        uint8_t *row = rgb + py * stride;
        for (int64_t px = x0; px < x1; px++) {
            const int64_t gx = (((px - x) + 1) * den - 1) / num - VN_MARGIN;
            bool on = false;
            if (gy >= 0 && gy < VN_GLYPH_H && gx >= 0) {
                const int64_t i = gx / VN_ADVANCE, col = gx % VN_ADVANCE;
                if (i < n && col < VN_GLYPH_W && rows[i]) on = (rows[i][gy] >> (VN_GLYPH_W - 1 - col)) & 1;
            }
            const uint8_t *c = on ? fg : bg;
            row[3 * px] = c[0];
            row[3 * px + 1] = c[1];
            row[3 * px + 2] = c[2];
        }
    }
}

/* -------------------------------------------------------------------------------------------
 * randomness and placement
 * ----------------------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t vn_rng_next(vn_rng *r) { return mix64(r->s += 0x9e3779b97f4a7c15ULL); }
double vn_rng_unit(vn_rng *r) { return (double)(vn_rng_next(r) >> 11) * 0x1.0p-53; }
int64_t vn_rng_range(vn_rng *r, int64_t lo, int64_t hi) {
    if (hi <= lo) return lo;
    return lo + (int64_t)(vn_rng_next(r) % (uint64_t)(hi - lo + 1));
}

static uint8_t clamp_u8(int64_t v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

void vn_needle_style(vn_rng *r, const char *text, int w, int h, double box_min, double box_max, vn_style *st) {
    if (!(box_min > 0)) box_min = 0.45;
    if (!(box_max > 0)) box_max = 0.9;
    if (box_max < box_min) box_max = box_min;
    int cw, ch;
    box_cells(text, &cw, &ch);
    const double f = box_min + (box_max - box_min) * vn_rng_unit(r);
    const int den = 64;
    int64_t num = llround(f * w * den / cw);
    const int64_t num_h = (int64_t)floor(0.9 * h * den / ch); /* the box at most 0.9 of the height */
    if (num > num_h) num = num_h;
    if (num < 1) num = 1;
    st->scale_num = (int)num;
    st->scale_den = den;
    vn_text_box(text, st->scale_num, den, &st->box_w, &st->box_h);
    st->x = (int)vn_rng_range(r, 0, w > st->box_w ? w - st->box_w : 0);
    st->y = (int)vn_rng_range(r, 0, h > st->box_h ? h - st->box_h : 0);
    const int64_t g = vn_rng_range(r, 0, 60), b = vn_rng_range(r, 200, 255);
    for (int k = 0; k < 3; k++) {
        st->fg[k] = clamp_u8(g + vn_rng_range(r, -15, 15));
        st->bg[k] = clamp_u8(b + vn_rng_range(r, -10, 10));
    }
}

/* -------------------------------------------------------------------------------------------
 * configuration
 * ----------------------------------------------------------------------------------------- */

static int32_t kind_needles(const vn_config *c, vn_kind k) {
    return k == VN_KEYED ? c->keyed_needles : k == VN_ORDER ? 2 : 1;
}

int32_t vn_min_gap(const vn_config *c) {
    /* one needle's frames, then at least one frame and one second without it (distinct MM:SS) */
    const int64_t sec = (int64_t)ceil(c->fps);
    return c->needle_frames + (int32_t)(sec > 1 ? sec : 1);
}

int32_t vn_min_frames(const vn_config *c, vn_kind k) {
    return c->needle_frames + (kind_needles(c, k) - 1) * vn_min_gap(c);
}

static double kind_w(const vn_config *c, vn_kind k) {
    return k == VN_SINGLE ? c->w_single : k == VN_KEYED ? c->w_keyed : k == VN_ORDER ? c->w_order : c->w_words;
}

int vn_config_check(const vn_config *c) {
    if (!c) return cli_error("vniah: no configuration"), -1;
    if (c->size < 8 || c->size > 4096) return cli_error("vniah: frame size %d: must be 8..4096", c->size), -1;
    if (!(c->fps > 0) || c->fps > 1000) return cli_error("vniah: fps %g: must be in (0, 1000]", c->fps), -1;
    if (c->needle_frames < 1 || c->needle_frames > 100000)
        return cli_error("vniah: needle_frames %d: must be >= 1", c->needle_frames), -1;
    if (c->digits < 1 || c->digits > 9) return cli_error("vniah: digits %d: must be 1..9", c->digits), -1;
    if (c->frames_min < 1 || c->frames_max < c->frames_min || c->frames_max > 1000000)
        return cli_error("vniah: frames %d..%d: need 1 <= min <= max", c->frames_min, c->frames_max), -1;
    if (c->bank_step < 0 || c->bank_max < 0 || c->stride_max < 0) return cli_error("vniah: negative bank_step, bank_max or stride_max"), -1;
    if (c->box_min < 0 || c->box_max < 0 || c->box_min > 1 || c->box_max > 1 || (c->box_max > 0 && c->box_min > c->box_max))
        return cli_error("vniah: box fractions %g..%g: need 0 < min <= max <= 1 (0: defaults)", c->box_min, c->box_max), -1;
    double sum = 0;
    for (int k = VN_SINGLE; k <= VN_WORDS; k++) {
        const double wk = kind_w(c, (vn_kind)k);
        if (!(wk >= 0) || !isfinite(wk)) return cli_error("vniah: task weights must be >= 0"), -1;
        sum += wk;
    }
    if (!(sum > 0)) return cli_error("vniah: every task weight is 0"), -1;
    if (c->w_keyed > 0 && (c->keyed_needles < 2 || c->keyed_needles > 8))
        return cli_error("vniah: keyed_needles %d: must be 2..8", c->keyed_needles), -1;
    for (int k = VN_SINGLE; k <= VN_WORDS; k++) {
        if (!(kind_w(c, (vn_kind)k) > 0)) continue;
        const int32_t need = vn_min_frames(c, (vn_kind)k);
        if (c->frames_min < need)
            return cli_error("vniah: frames_min %d is too few for %s samples: %d needle(s) of %d frames, %d frames apart need %d",
                             c->frames_min, k == VN_SINGLE ? "single" : k == VN_KEYED ? "keyed" : k == VN_ORDER ? "order" : "words",
                             kind_needles(c, (vn_kind)k), c->needle_frames, vn_min_gap(c), need),
                   -1;
    }
    return 0;
}

/* -------------------------------------------------------------------------------------------
 * the bank
 * ----------------------------------------------------------------------------------------- */

struct vn_bank {
    int64_t n, cap;
    double rate_sum; /* sum over the bank's frames of the frame rate of the footage they came from */
    int32_t bw, bh, size;
    uint8_t *big;   /* n * bh * bw * 3 */
    uint8_t *small; /* n * size * size * 3 */
};

void vn_bank_free(vn_bank *b) {
    if (!b) return;
    free(b->big);
    free(b->small);
    free(b);
}

int64_t vn_bank_n_frames(const vn_bank *b) { return b ? b->n : 0; }
void vn_bank_frame_size(const vn_bank *b, int32_t *w, int32_t *h) {
    *w = b->bw;
    *h = b->bh;
}
const uint8_t *vn_bank_frame_big(const vn_bank *b, int64_t i) {
    return i >= 0 && i < b->n ? b->big + (size_t)i * (size_t)b->bw * (size_t)b->bh * 3 : NULL;
}
const uint8_t *vn_bank_frame_small(const vn_bank *b, int64_t i) {
    return i >= 0 && i < b->n ? b->small + (size_t)i * (size_t)b->size * (size_t)b->size * 3 : NULL;
}

/* one stream's frames appended to the bank; 0, 1 when it is not a video stream, -1 after cli_error */
static int bank_add_stream(vn_bank *b, const char *path, int32_t stream, const vn_config *c) {
    lv_video_open_params op = lv_video_default_open_params();
    op.stream = stream;
    lv_video *v = NULL;
    lv_status st = lv_video_open(path, op, &v);
    if (st == LV_ERR_INVALID_ARG && stream >= 0) return 1; /* "stream N is not a video stream" */
    if (st != LV_OK) return cli_error("vniah: cannot read %s: %s", path, lv_last_error()), -1;
    lv_video_info info;
    lv_video_get_info(v, &info);
    if (b->bw == 0) {
        const int32_t lim = c->bank_max > 0 ? c->bank_max : 4 * c->size;
        const int32_t longer = info.width > info.height ? info.width : info.height;
        const int32_t L = longer < lim ? longer : lim;
        if (info.width >= info.height) {
            b->bw = L;
            b->bh = (int32_t)llround((double)L * info.height / info.width);
        } else {
            b->bh = L;
            b->bw = (int32_t)llround((double)L * info.width / info.height);
        }
        if (b->bw < 1) b->bw = 1;
        if (b->bh < 1) b->bh = 1;
    }
    lv_video_read_params rp = lv_video_default_read_params();
    int64_t *idx = NULL;
    const int32_t step = c->bank_step > 1 ? c->bank_step : 1;
    if (step == 1) {
        rp.sample = LV_VIDEO_SAMPLE_ALL;
    } else {
        const int64_t n = (info.n_frames + step - 1) / step;
        idx = malloc((size_t)(n > 0 ? n : 1) * sizeof(*idx));
        if (!idx) {
            lv_video_free(v);
            return cli_error("vniah: out of memory"), -1;
        }
        for (int64_t i = 0; i < n; i++) idx[i] = i * step;
        rp.sample = LV_VIDEO_SAMPLE_INDICES;
        rp.indices = idx;
        rp.n_indices = n;
    }
    rp.width = b->bw;
    rp.height = b->bh;
    void *frames = NULL;
    int64_t n = 0, fsize = 0;
    st = lv_video_read_all(v, &rp, &frames, &n, &fsize);
    free(idx);
    lv_video_free(v);
    if (st != LV_OK) return cli_error("vniah: cannot decode %s: %s", path, lv_last_error()), -1;
    const size_t big = (size_t)b->bw * (size_t)b->bh * 3, small = (size_t)b->size * (size_t)b->size * 3;
    if (n > 0 && (size_t)fsize != big) {
        lv_video_frames_free(frames);
        return cli_error("vniah: %s: frames of %lld bytes, expected %zu", path, (long long)fsize, big), -1;
    }
    if (b->n + n > b->cap) {
        int64_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n) cap *= 2;
        uint8_t *nb = realloc(b->big, (size_t)cap * big);
        if (nb) b->big = nb;
        uint8_t *ns = nb ? realloc(b->small, (size_t)cap * small) : NULL;
        if (ns) b->small = ns;
        if (!nb || !ns) {
            lv_video_frames_free(frames);
            return cli_error("vniah: out of memory for %lld haystack frames of %dx%d", (long long)cap, b->bw, b->bh), -1;
        }
        b->cap = cap;
    }
    if (n > 0) memcpy(b->big + (size_t)b->n * big, frames, (size_t)n * big);
    lv_video_frames_free(frames);
    lv_video_scaler *sc = NULL;
    st = lv_video_scaler_new(b->bw, b->bh, b->size, b->size, &sc);
    if (st != LV_OK) return cli_error("vniah: %s", lv_last_error()), -1;
    for (int64_t i = b->n; i < b->n + n && st == LV_OK; i++)
        st = lv_video_scaler_run(sc, b->big + (size_t)i * big, (int64_t)b->bw * 3, b->small + (size_t)i * small, (int64_t)b->size * 3);
    lv_video_scaler_free(sc);
    if (st != LV_OK) return cli_error("vniah: %s", lv_last_error()), -1;
    b->n += n;
    b->rate_sum += (double)n * (info.avg_fps > 0 ? info.avg_fps : 25.0) / step;
    return 0;
}

double vn_bank_rate(const vn_bank *b) { return b && b->n > 0 ? b->rate_sum / (double)b->n : 0; }

int vn_bank_load(const char *const *paths, int n_paths, const vn_config *c, vn_bank **out) {
    *out = NULL;
    if (vn_config_check(c)) return -1;
    if (!paths || n_paths < 1) return cli_error("vniah: no haystack video"), -1;
    vn_bank *b = calloc(1, sizeof(*b));
    if (!b) return cli_error("vniah: out of memory"), -1;
    b->size = c->size;
    for (int p = 0; p < n_paths; p++) {
        lv_video *v = NULL;
        lv_status st = lv_video_open(paths[p], lv_video_default_open_params(), &v);
        if (st != LV_OK) {
            cli_error("vniah: cannot read haystack %s: %s", paths[p], lv_last_error());
            vn_bank_free(b);
            return -1;
        }
        lv_video_info info;
        lv_video_get_info(v, &info);
        lv_video_free(v);
        int n_video = 0;
        for (int32_t s = 0; s < info.n_streams; s++) {
            const int r = bank_add_stream(b, paths[p], s, c);
            if (r < 0) {
                vn_bank_free(b);
                return -1;
            }
            if (r == 0) n_video++;
        }
        if (n_video == 0) { /* cannot happen: the open above found one */
            cli_error("vniah: %s has no video stream", paths[p]);
            vn_bank_free(b);
            return -1;
        }
    }
    if (b->n < 1) {
        cli_error("vniah: the haystack videos gave no frames");
        vn_bank_free(b);
        return -1;
    }
    *out = b;
    return 0;
}

/* -------------------------------------------------------------------------------------------
 * samples
 * ----------------------------------------------------------------------------------------- */

/* short words for VN_WORDS needles (picked for this task, drawn by the font above) */
static const char *const words[] = {
    "RED",   "BLUE",  "GREEN", "GOLD",  "SILVER", "BLACK", "WHITE", "PINK",  "CAT",   "DOG",   "FOX",   "OWL",
    "BEAR",  "WOLF",  "HORSE", "FISH",  "BIRD",   "FROG",  "MOON",  "STAR",  "SUN",   "RAIN",  "SNOW",  "WIND",
    "RIVER", "LAKE",  "HILL",  "ROCK",  "TREE",   "LEAF",  "ROSE",  "CORN",  "BREAD", "APPLE", "PEAR",  "PLUM",
    "LAMP",  "DOOR",  "BOOK",  "PEN",   "CUP",    "KEY",   "SHIP",  "TRAIN", "BOAT",  "KITE",  "DRUM",  "BELL",
    "JUMP",  "RUN",   "SING",  "SWIM",  "FLY",    "READ",  "OPEN",  "SHUT",  "FAST",  "SLOW",  "TALL",  "WARM",
};
enum { N_WORDS = sizeof(words) / sizeof(words[0]) };

typedef struct vn_priv {
    lv_video_scaler *sc;
    int32_t sw, sh, dw;
    uint8_t *big;
    size_t big_cap, rgb_cap;
} vn_priv;

void vn_sample_free(vn_sample *s) {
    if (!s) return;
    vn_priv *p = s->priv_;
    if (p) {
        lv_video_scaler_free(p->sc);
        free(p->big);
        free(p);
    }
    free(s->rgb);
    memset(s, 0, sizeof(*s));
}

static vn_kind draw_kind(const vn_config *c, vn_rng *r) {
    double sum = 0;
    for (int k = VN_SINGLE; k <= VN_WORDS; k++) sum += kind_w(c, (vn_kind)k);
    double u = vn_rng_unit(r) * sum;
    int last = VN_SINGLE;
    for (int k = VN_SINGLE; k <= VN_WORDS; k++) {
        const double wk = kind_w(c, (vn_kind)k);
        if (!(wk > 0)) continue;
        last = k;
        if (u < wk) return (vn_kind)k;
        u -= wk;
    }
    return (vn_kind)last;
}

static void draw_number(int32_t digits, vn_rng *r, const vn_needle *nd, int upto, char out[24]) {
    int64_t lo = 1;
    for (int i = 1; i < digits; i++) lo *= 10;
    const int64_t hi = lo * 10 - 1;
    for (;;) {
        snprintf(out, 24, "%lld", (long long)vn_rng_range(r, lo, hi));
        bool dup = false;
        for (int i = 0; i < upto; i++) dup |= strcmp(nd[i].text, out) == 0;
        if (!dup || hi - lo < 8) return; /* 1 digit with many needles: duplicates are unavoidable */
    }
}

static void draw_words(vn_rng *r, char out[24]) {
    const int n = (int)vn_rng_range(r, 2, 3);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        const char *w = words[vn_rng_range(r, 0, N_WORDS - 1)];
        if (strlen(out) + strlen(w) + (i ? 1 : 0) > 23) break;
        if (i) strcat(out, " ");
        strcat(out, w);
    }
}

void vn_question(vn_kind kind, const vn_needle *nd, int32_t asked, bool swap, char question[160], char answer[32]) {
    char ts[32];
    switch (kind) {
    case VN_SINGLE:
        snprintf(question, 160, "What is the number shown in the video?");
        snprintf(answer, 32, "%s", nd[0].text);
        break;
    case VN_KEYED:
        lv_video_ask_timestamp(nd[asked].t, ts, sizeof(ts));
        snprintf(question, 160, "What number is shown at %s?", ts);
        snprintf(answer, 32, "%s", nd[asked].text);
        break;
    case VN_ORDER:
        snprintf(question, 160, "Which number was shown first, %s or %s?", nd[swap ? 1 : 0].text, nd[swap ? 0 : 1].text);
        snprintf(answer, 32, "%s", nd[0].text);
        break;
    case VN_WORDS:
        snprintf(question, 160, "What words are shown in the video?");
        snprintf(answer, 32, "%s", nd[0].text);
        break;
    }
}

int vn_eval_layout(vn_kind kind, int64_t n_frames, double fps, int32_t needle_frames, int32_t keyed_needles, int32_t digits, double depth,
                   uint64_t seed, vn_eval_needles *out) {
    memset(out, 0, sizeof(*out));
    if (kind != VN_SINGLE && kind != VN_KEYED && kind != VN_ORDER) return cli_error("vniah: evaluation tasks are single, keyed and order"), -1;
    const vn_config c = {.size = 64, .frames_min = 1000000, .frames_max = 1000000, .fps = fps, .needle_frames = needle_frames, .digits = digits,
                         .keyed_needles = keyed_needles, .w_single = 1};
    if (vn_config_check(&c)) return -1;
    if (kind == VN_KEYED && (keyed_needles < 2 || keyed_needles > 8)) return cli_error("vniah: keyed_needles %d: must be 2..8", keyed_needles), -1;
    if (!(depth >= 0 && depth <= 1)) return cli_error("vniah: depth %g: must be in [0, 1]", depth), -1;
    const int32_t K = kind_needles(&c, kind), NF = needle_frames, gap = vn_min_gap(&c);
    const int64_t need = vn_min_frames(&c, kind);
    if (n_frames < need || n_frames > INT32_MAX)
        return cli_error("vniah: a video of %lld frames is too short for %s: %d needle(s) of %d frames, %d frames apart need %lld",
                         (long long)n_frames, kind == VN_SINGLE ? "single" : kind == VN_KEYED ? "keyed" : "order", K, NF, gap, (long long)need),
               -1;
    vn_rng r = {mix64(mix64(mix64(seed ^ 0x7e57e7a1ull) ^ (uint64_t)n_frames) ^ (uint64_t)llround(depth * 1e6))};
    const int64_t last = n_frames - NF; /* the latest start frame */
    int64_t pos[8];
    pos[0] = llround(depth * (double)last); /* the needle at the depth */
    for (int i = 1; i < K; i++) {
        /* the others: uniform over the start frames at least `gap` from every needle placed */
        int64_t n_ok = 0;
        for (int pass = 0; pass < 2; pass++) {
            const int64_t pick = pass ? vn_rng_range(&r, 0, n_ok - 1) : -1;
            int64_t k = 0;
            for (int64_t p = 0; p <= last; p++) {
                bool ok = true;
                for (int j = 0; j < i && ok; j++) ok = llabs(p - pos[j]) >= gap;
                if (!ok) continue;
                if (pass && k == pick) {
                    pos[i] = p;
                    break;
                }
                k++;
            }
            if (!pass) n_ok = k;
            if (!pass && n_ok == 0)
                return cli_error("vniah: no room for %d needles %d frames apart with one at frame %lld of %lld", K, gap, (long long)pos[0],
                                 (long long)n_frames),
                       -1;
        }
    }
    const int64_t at_depth = pos[0];
    for (int i = 1; i < K; i++) /* time order */
        for (int j = i; j > 0 && pos[j - 1] > pos[j]; j--) {
            const int64_t t = pos[j];
            pos[j] = pos[j - 1];
            pos[j - 1] = t;
        }
    out->n_needles = K;
    for (int i = 0; i < K; i++) {
        vn_needle *nd = &out->needles[i];
        nd->f0 = (int32_t)pos[i];
        nd->f1 = nd->f0 + NF;
        nd->t = nd->f0 / fps;
        if (pos[i] == at_depth) out->at_depth = i;
        draw_number(digits, &r, out->needles, i, nd->text);
    }
    const bool swap = kind == VN_ORDER && (vn_rng_next(&r) & 1);
    out->asked = kind == VN_KEYED ? out->at_depth : 0;
    vn_question(kind, out->needles, out->asked, swap, out->question, out->answer);
    return 0;
}

int vn_first_number(const char *response, char *out, size_t n) {
    if (n) out[0] = '\0';
    const char *p = response;
    while (*p && !(*p >= '0' && *p <= '9')) p++;
    size_t k = 0;
    for (; *p >= '0' && *p <= '9'; p++, k++)
        if (k + 1 < n) out[k] = *p, out[k + 1] = '\0';
    return (int)k;
}

bool vn_answer_right(const char *response, const char *answer) {
    if (!response || !answer || !*answer) return false;
    const char *p = response;
    while (*p && !(*p >= '0' && *p <= '9')) p++;
    size_t k = 0;
    while (p[k] >= '0' && p[k] <= '9') k++;
    return k > 0 && k == strlen(answer) && memcmp(p, answer, k) == 0;
}

int vn_make_sample(const vn_bank *b, const vn_config *c, uint64_t seed, int64_t step, int64_t index, vn_sample *s) {
    if (!b || !s || vn_config_check(c)) return -1;
    if (c->size != b->size) return cli_error("vniah: the bank was loaded for size %d, not %d", b->size, c->size), -1;
    vn_rng r = {mix64(mix64(mix64(seed) ^ (uint64_t)step) ^ ((uint64_t)index * 0xd1b54a32d192ed03ULL))};
    const vn_kind kind = draw_kind(c, &r);
    const int32_t n = (int32_t)vn_rng_range(&r, c->frames_min, c->frames_max);
    const int32_t S = c->size;
    const size_t fbytes = (size_t)S * S * 3;
    if (!s->priv_) {
        s->priv_ = calloc(1, sizeof(vn_priv));
        if (!s->priv_) return cli_error("vniah: out of memory"), -1;
    }
    vn_priv *pv = s->priv_;
    if ((size_t)n * fbytes > pv->rgb_cap || !s->rgb) {
        uint8_t *nr = realloc(s->rgb, (size_t)n * fbytes);
        if (!nr) return cli_error("vniah: out of memory for %d frames of %dx%d", n, S, S), -1;
        s->rgb = nr;
        pv->rgb_cap = (size_t)n * fbytes;
    }
    s->kind = kind;
    s->n_frames = n;
    s->size = S;
    s->duration_s = n / c->fps;
    s->bank_start = vn_rng_range(&r, 0, b->n - 1);
    int64_t smax = c->stride_max;
    if (smax <= 0) smax = llround(vn_bank_rate(b) / c->fps); /* about the footage's own pace */
    s->stride = (int32_t)vn_rng_range(&r, 1, smax > 1 ? smax : 1);
    s->asked = 0;

    /* needles: K sorted start frames at least `gap` apart */
    const int32_t K = kind_needles(c, kind), NF = c->needle_frames, gap = vn_min_gap(c);
    const int64_t span = (int64_t)n - NF - (int64_t)(K - 1) * gap; /* >= 0 by vn_config_check */
    int64_t pos[8];
    for (int i = 0; i < K; i++) pos[i] = vn_rng_range(&r, 0, span);
    for (int i = 1; i < K; i++) /* insertion sort */
        for (int j = i; j > 0 && pos[j - 1] > pos[j]; j--) {
            const int64_t t = pos[j];
            pos[j] = pos[j - 1];
            pos[j - 1] = t;
        }
    s->n_needles = K;
    memset(s->needles, 0, sizeof(s->needles));
    for (int i = 0; i < K; i++) {
        vn_needle *nd = &s->needles[i];
        nd->f0 = (int32_t)(pos[i] + (int64_t)i * gap);
        nd->f1 = nd->f0 + NF;
        nd->t = nd->f0 / c->fps;
        if (kind == VN_WORDS) draw_words(&r, nd->text);
        else draw_number(c->digits, &r, s->needles, i, nd->text);
    }
    vn_style style[8];
    for (int i = 0; i < K; i++) {
        const vn_style *st = &style[i];
        vn_needle_style(&r, s->needles[i].text, b->bw, b->bh, c->box_min, c->box_max, &style[i]);
        /* glyph centres (the frame is stretched from bw x bh to S x S, so fractions carry over) */
        const double u = (double)st->scale_num / st->scale_den;
        for (int g = 0; s->needles[i].text[g]; g++)
            s->needles[i].cx[g] = (st->x + (VN_MARGIN + VN_ADVANCE * g + VN_GLYPH_W / 2.0) * u) / b->bw;
        s->needles[i].cy = (st->y + (VN_MARGIN + VN_GLYPH_H / 2.0) * u) / b->bh;
    }

    /* the question */
    bool swap = false;
    if (kind == VN_KEYED) s->asked = (int32_t)vn_rng_range(&r, 0, K - 1);
    if (kind == VN_ORDER) swap = vn_rng_next(&r) & 1;
    vn_question(kind, s->needles, s->asked, swap, s->question, s->answer);

    /* the frames */
    const size_t big = (size_t)b->bw * b->bh * 3;
    if (K > 0 && (!pv->sc || pv->sw != b->bw || pv->sh != b->bh || pv->dw != S)) {
        lv_video_scaler_free(pv->sc);
        pv->sc = NULL;
        if (lv_video_scaler_new(b->bw, b->bh, S, S, &pv->sc) != LV_OK) return cli_error("vniah: %s", lv_last_error()), -1;
        pv->sw = b->bw, pv->sh = b->bh, pv->dw = S;
    }
    if (pv->big_cap < big) {
        uint8_t *nb = realloc(pv->big, big);
        if (!nb) return cli_error("vniah: out of memory"), -1;
        pv->big = nb;
        pv->big_cap = big;
    }
    int needle = 0;
    for (int32_t i = 0; i < n; i++) {
        const int64_t bi = (int64_t)(((uint64_t)s->bank_start + (uint64_t)i * (uint64_t)s->stride) % (uint64_t)b->n);
        uint8_t *dst = s->rgb + (size_t)i * fbytes;
        while (needle < K && s->needles[needle].f1 <= i) needle++;
        if (needle < K && s->needles[needle].f0 <= i) {
            const vn_style *st = &style[needle];
            memcpy(pv->big, vn_bank_frame_big(b, bi), big);
            vn_draw_text(pv->big, b->bw, b->bh, b->bw * 3, s->needles[needle].text, st->x, st->y, st->scale_num, st->scale_den, st->fg,
                         st->bg);
            if (lv_video_scaler_run(pv->sc, pv->big, (int64_t)b->bw * 3, dst, (int64_t)S * 3) != LV_OK)
                return cli_error("vniah: %s", lv_last_error()), -1;
        } else {
            memcpy(dst, vn_bank_frame_small(b, bi), fbytes);
        }
    }
    return 0;
}
