/*
 * layout.c: the layout of a question about a video, per model family (docs/video-questions.md):
 * which frames, at what size, the text around them as the family's HF processor writes it, and
 * every row's positions.
 */
#include "pipeline/pipeline.h"

#include "model/model.h"
#include "tokenizer/tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- number words (num2words, English) ---- */

static const char *const ones[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                                   "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
                                   "nineteen"};
static const char *const tens[] = {"", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"};

typedef struct sbuf {
    char *b;
    size_t cap, len;
} sbuf;

static void sput(sbuf *s, const char *t) {
    const size_t n = strlen(t);
    for (size_t i = 0; i < n; i++, s->len++)
        if (s->len + 1 < s->cap) s->b[s->len] = t[i];
    if (s->cap) s->b[s->len < s->cap ? s->len : s->cap - 1] = 0;
}

/* below 1000: "X hundred and Y", "X hundred", "Y" (Y: "twenty-one") */
static void words_999(sbuf *s, int64_t n) {
    const int64_t h = n / 100, r = n % 100;
    if (h) {
        sput(s, ones[h]);
        sput(s, " hundred");
        if (r) sput(s, " and ");
    }
    if (r || !h) {
        if (r < 20) {
            sput(s, ones[r]);
        } else {
            sput(s, tens[r / 10]);
            if (r % 10) {
                sput(s, "-");
                sput(s, ones[r % 10]);
            }
        }
    }
}

/* num2words' merge rule: a lower group joins with " and " when it is below 100, else with ", " */
int32_t lv_vq_number_words(int64_t n, char *buf, size_t n_buf) {
    sbuf s = {buf, n_buf, 0};
    if (n_buf) buf[0] = 0;
    if (n < 0 || n >= 1000000000) {
        sput(&s, "many");
        return (int32_t)s.len;
    }
    const int64_t groups[3] = {n / 1000000, n / 1000 % 1000, n % 1000};
    const char *names[3] = {" million", " thousand", ""};
    bool any = false;
    for (int g = 0; g < 3; g++) {
        if (!groups[g]) continue;
        if (any) sput(&s, groups[g] < 100 ? " and " : ", ");
        words_999(&s, groups[g]);
        sput(&s, names[g]);
        any = true;
    }
    if (!any) sput(&s, "zero");
    return (int32_t)s.len;
}

/* ---- sampling rules ---- */

/* Python's round(): half to even */
static int64_t py_round(double x) {
    const double f = floor(x), d = x - f;
    int64_t r = (int64_t)f;
    if (d > 0.5 || (d == 0.5 && (r & 1))) r++;
    return r;
}

lv_status lv_vq_smolvlm2_indices(int64_t total, double video_fps, double fps, int64_t max_frames, int64_t want, int64_t **out,
                                 int64_t *n) {
    *out = NULL;
    *n = 0;
    if (total <= 0 || !(video_fps > 0)) return lv_error(LV_ERR_INVALID_ARG, "the video has no frames or no frame rate");
    const double duration = (double)total / video_fps;
    int64_t desired, start = 0, end = total - 1;
    if (want > 0) {
        desired = want;
    } else {
        desired = LV_MIN(py_round(fps * duration), max_frames);
        if (desired < 1) desired = 1;
        /* skip_secs = 1 at each end when the video is longer than the frames cover */
        if (duration - 2.0 > (double)max_frames * fps) {
            start = (int64_t)(1.0 * video_fps);
            end = (int64_t)((double)total - 1.0 * video_fps);
        }
        start = LV_MAX(0, start);
        end = LV_MIN(end, total - 1);
        if (start >= end) {
            start = 0;
            end = total - 1;
        }
    }
    if (desired > ((int64_t)1 << 22)) return lv_error(LV_ERR_INVALID_ARG, "%lld frames is too many", (long long)desired);
    int64_t *idx = lv_mallocn((size_t)desired, sizeof(int64_t));
    if (!idx) return LV_ERR_NOMEM;
    /* numpy.linspace(start, end, desired, dtype=int): arange * step + start, the last = end, truncated */
    const double step = desired > 1 ? (double)(end - start) / (double)(desired - 1) : 0.0;
    int64_t k = 0;
    for (int64_t i = 0; i < desired; i++) {
        const double y = (desired > 1 && i == desired - 1) ? (double)end : (double)i * step + (double)start;
        const int64_t v = (int64_t)y;
        if (k == 0 || idx[k - 1] != v) idx[k++] = v; /* np.unique: the values are non-decreasing */
    }
    *out = idx;
    *n = k;
    return LV_OK;
}

int64_t lv_vq_qwen_nframes(int64_t total, double video_fps, double fps, int64_t max_frames, int64_t want) {
    int64_t nf;
    const int64_t cap = LV_MAX(2, LV_MIN(max_frames, total) / 2 * 2);
    if (want > 0) {
        nf = py_round((double)want / 2.0) * 2;
    } else {
        double x = (double)total / video_fps * fps;
        x = LV_MIN(LV_MAX(x, 4.0), (double)cap);
        x = LV_MIN(x, (double)total);
        nf = (int64_t)floor(x / 2.0) * 2;
    }
    return LV_MIN(LV_MAX(nf, 2), LV_MAX(cap, 2));
}

/* ---- the prompt ---- */

typedef struct lbuild {
    const lv_vocab *v;
    lv_vq_layout *l;
    int32_t cap_segs;
    int64_t cap_tokens;
    int32_t rope;   /* the next rotary position */
    int64_t row;    /* the next row */
} lbuild;

static lv_status push_seg(lbuild *b, lv_vq_seg s, char *piece) {
    lv_vq_layout *l = b->l;
    if (l->n_segs == b->cap_segs) {
        const int32_t cap = b->cap_segs ? 2 * b->cap_segs : 16;
        lv_vq_seg *n = lv_realloc(l->segs, (size_t)cap * sizeof(*n));
        if (!n) return LV_ERR_NOMEM;
        l->segs = n;
        char **p = lv_realloc(l->pieces, (size_t)cap * sizeof(*p));
        if (!p) return LV_ERR_NOMEM;
        l->pieces = p;
        b->cap_segs = cap;
    }
    s.row0 = b->row;
    b->row += s.n;
    l->pieces[l->n_segs] = piece;
    l->segs[l->n_segs++] = s;
    return LV_OK;
}

/* A piece of text, tokenized on its own with special tokens parsed (bos: BOS first). */
static lv_status add_text(lbuild *b, const char *text, bool bos) {
    const int64_t len = (int64_t)strlen(text);
    int32_t n = len ? lv_vocab_tokenize(b->v, text, len, NULL, 0, false, true) : 0;
    if (n == INT32_MIN) return LV_ERR_INVALID_ARG;
    if (n < 0) n = -n;
    const int32_t extra = bos ? 1 : 0;
    if (n + extra == 0) return LV_OK;
    lv_vq_layout *l = b->l;
    if (l->n_tokens + n + extra > b->cap_tokens) {
        const int64_t cap = LV_MAX(2 * b->cap_tokens, l->n_tokens + n + extra + 256);
        lv_token *t = lv_realloc(l->tokens, (size_t)cap * sizeof(lv_token));
        if (!t) return LV_ERR_NOMEM;
        l->tokens = t;
        b->cap_tokens = cap;
    }
    lv_token *dst = l->tokens + l->n_tokens;
    if (bos) dst[0] = lv_vocab_bos(b->v);
    if (n) {
        const int32_t got = lv_vocab_tokenize(b->v, text, len, dst + extra, n, false, true);
        if (got != n) return lv_error(LV_ERR_INTERNAL, "tokenizer count changed (%d, %d)", n, got);
    }
    char *piece = lv_malloc((size_t)len + 1);
    if (!piece) return LV_ERR_NOMEM;
    memcpy(piece, text, (size_t)len + 1);
    lv_vq_seg s = {0};
    s.first = l->n_tokens;
    s.n = n + extra;
    s.rope0 = b->rope;
    lv_status st = push_seg(b, s, piece);
    if (st != LV_OK) {
        lv_free(piece);
        return st;
    }
    l->n_tokens += n + extra;
    b->rope += n + extra;
    return LV_OK;
}

static lv_status add_unit(lbuild *b, int64_t u, int32_t st0, int32_t t) {
    lv_vq_seg s = {0};
    s.unit = true;
    s.first = u;
    s.n = b->l->plan.unit_tokens + (b->l->carrier ? 1 : 0);
    s.rope0 = st0;
    s.t = t;
    return push_seg(b, s, NULL);
}

/* "MM:SS" of HF's timestamps: int(t // 60), int(t % 60), two digits at least (public: the V-NIAH
 * training data names frames by it) */
void lv_video_ask_timestamp(double t, char *buf, size_t n) {
    const int64_t s = (int64_t)floor(t);
    snprintf(buf, n, "%02lld:%02lld", (long long)(s / 60), (long long)(s % 60));
}

void lv_vq_layout_free(lv_vq_layout *l) {
    if (!l) return;
    for (int32_t i = 0; l->pieces && i < l->n_segs; i++) lv_free(l->pieces[i]);
    lv_free(l->pieces);
    lv_free(l->segs);
    lv_free(l->tokens);
    lv_free(l->frame_idx);
    memset(l, 0, sizeof(*l));
}

int32_t lv_vq_carrier_victim(const float *emb, int32_t n, int64_t E) {
    int32_t best = -1;
    double bs = -INFINITY;
    for (int32_t i = 0; i + 1 < n; i++) {
        const float *a = emb + (int64_t)i * E, *c = a + E;
        double d = 0, na = 0, nc = 0;
        for (int64_t e = 0; e < E; e++) {
            d += (double)a[e] * c[e];
            na += (double)a[e] * a[e];
            nc += (double)c[e] * c[e];
        }
        const double cs = d / LV_MAX(sqrt(na) * sqrt(nc), 1e-8);
        if (cs > bs) {
            bs = cs;
            best = i;
        }
    }
    return best;
}

void lv_vq_row_pos(const lv_vq_layout *l, const lv_vq_seg *s, int32_t i, int32_t *t, int32_t *h, int32_t *w, int32_t *e) {
    if (!s->unit) {
        *t = *h = *w = *e = s->rope0 + i;
        return;
    }
    const int32_t nx = LV_MAX(l->plan.nx, 1);
    if (i >= l->plan.unit_tokens) { /* the carrier: the unit's t, the grid's last (h, w) */
        *t = s->rope0 + s->t;
        *h = s->rope0 + LV_MAX(l->plan.ny, 1) - 1;
        *w = s->rope0 + nx - 1;
        *e = 0;
        return;
    }
    *t = s->rope0 + s->t;
    *h = s->rope0 + i / nx;
    *w = s->rope0 + i % nx;
    *e = 0;
}

/* The prompt's text and units for the plan in l (family, n_frames / n_units, unit_tokens, grid,
 * duration, sample_fps; frame_t: the SmolVLM2 frames' times in seconds): tokens, segments,
 * pieces, l->rope_end and the plan's row counts. On failure the caller frees l. */
static lv_status layout_prompt(lv_vq_layout *l, const lv_vocab *v, const lv_video_ask_params *p, int32_t rope0, const double *frame_t) {
    lv_video_ask_plan *pl = &l->plan;
    lv_status st = LV_OK;
    /* the user's text around the video */
    const char *prompt = p->prompt ? p->prompt : "";
    const char *mk = strstr(prompt, LV_MEDIA_MARKER);
    if (mk && strstr(mk + strlen(LV_MEDIA_MARKER), LV_MEDIA_MARKER)) {
        st = lv_error(LV_ERR_INVALID_ARG, "the prompt has more than one %s marker; a question takes one video", LV_MEDIA_MARKER);
        return st;
    }
    const size_t plen = mk ? (size_t)(mk - prompt) : 0;
    const char *suffix = mk ? mk + strlen(LV_MEDIA_MARKER) : prompt;
    const size_t slen = strlen(suffix);
    const bool bos = p->add_special && lv_vocab_add_bos(v) && lv_vocab_bos(v) >= 0;

    lbuild b = {v, l, 0, 0, rope0, 0};
    /* a piece: the prefix (first piece only) + fixed text + the suffix (last piece only) */
    size_t cap = plen + slen + 512;
    char *buf = lv_malloc(cap);
    if (!buf) return LV_ERR_NOMEM;
    if (l->fam == LV_VQ_SMOLVLM2) {
        char words[256], dur[64], ts[64];
        lv_vq_number_words(pl->n_frames, words, sizeof(words));
        const int64_t d = (int64_t)floor(pl->duration_s); /* timedelta(seconds=int(duration)) */
        snprintf(dur, sizeof(dur), "%lld:%02lld:%02lld", (long long)(d / 3600), (long long)(d / 60 % 60), (long long)(d % 60));
        for (int64_t f = 0; f <= pl->n_frames && st == LV_OK; f++) {
            int n = 0;
            if (f == 0) {
                n = snprintf(buf, cap, "%.*sYou are provided the following series of %s frames from a %s [H:MM:SS] video.\n", (int)plen, prompt,
                             words, dur);
            } else {
                n = snprintf(buf, cap, "<fake_token_around_image>");
            }
            if (f < pl->n_frames) {
                lv_video_ask_timestamp(frame_t[f], ts, sizeof(ts));
                n += snprintf(buf + n, cap - (size_t)n, "\nFrame from %s:<fake_token_around_image><global-img>", ts);
            } else {
                n += snprintf(buf + n, cap - (size_t)n, "\n\n%s", suffix);
            }
            st = add_text(&b, buf, f == 0 && bos);
            if (st == LV_OK && f < pl->n_frames) {
                st = add_unit(&b, f, b.rope, 0);
                b.rope += pl->unit_tokens + (l->carrier ? 1 : 0);
            }
        }
    } else {
        snprintf(buf, cap, "%.*s<|vision_start|>", (int)plen, prompt);
        st = add_text(&b, buf, bos);
        /* HF get_rope_index: the block starts at st; pair g at t = g (Qwen2-VL) or
         * floor(g x seconds per pair x tokens_per_second) (Qwen2.5-VL: 2 frames / sample fps, 2 per
         * second); the text after it at st + max(t, h, w) + 1 */
        const int32_t st0 = b.rope;
        const double spg = 2.0 / pl->sample_fps;
        int32_t tmax = 0;
        for (int64_t g = 0; g < pl->n_units && st == LV_OK; g++) {
            const int32_t t = l->fam == LV_VQ_QWEN2VL ? (int32_t)g : (int32_t)((double)g * spg * 2.0);
            tmax = LV_MAX(tmax, t);
            st = add_unit(&b, g, st0, t);
        }
        b.rope = st0 + LV_MAX(tmax, LV_MAX(pl->nx, pl->ny) - 1) + 1;
        if (st == LV_OK) {
            snprintf(buf, cap, "<|vision_end|>%s", suffix);
            st = add_text(&b, buf, false);
        }
    }
    lv_free(buf);
    if (st == LV_OK && p->add_special && lv_vocab_add_eos(v) && lv_vocab_eos(v) >= 0) {
        /* EOS after everything, as lv_mm_tokenize: its own text segment */
        lv_vq_seg *last = &l->segs[l->n_segs - 1];
        if (last->unit || last->first + last->n != l->n_tokens) {
            st = lv_error(LV_ERR_INTERNAL, "the prompt does not end with text");
        } else {
            if (l->n_tokens + 1 > b.cap_tokens) {
                lv_token *t = lv_realloc(l->tokens, (size_t)(l->n_tokens + 1) * sizeof(lv_token));
                if (!t) st = LV_ERR_NOMEM;
                else l->tokens = t;
            }
            if (st == LV_OK) {
                l->tokens[l->n_tokens++] = lv_vocab_eos(v);
                last->n++;
                b.row++;
                b.rope++;
            }
        }
    }
    if (st != LV_OK) return st;
    l->rope_end = b.rope;
    pl->n_rows = b.row;
    pl->n_text = l->n_tokens;
    return LV_OK;
}

lv_status lv_vq_layout_build(const lv_model *model, const lv_mmproj *mm, const lv_video *video, const lv_video_ask_params *p, int32_t rope0,
                             lv_vq_layout *out) {
    memset(out, 0, sizeof(*out));
    if (!model || !mm || !video || !p) return lv_error(LV_ERR_INVALID_ARG, "asking a video: model, mmproj, video and parameters are needed");
    const lv_vocab *v = lv_model_vocab(model);
    if (!v) return lv_error(LV_ERR_INVALID_ARG, "the model has no tokenizer");
    if (lv_mmproj_n_embd(mm) != lv_model_n_embd(model))
        return lv_error(LV_ERR_INVALID_ARG, "the mmproj gives %d-wide embeddings; the text model takes %d", lv_mmproj_n_embd(mm),
                        lv_model_n_embd(model));
    const char *proj = lv_mmproj_projector(mm);
    lv_vq_layout *l = out;
    if (strcmp(proj, "idefics3") == 0) l->fam = LV_VQ_SMOLVLM2;
    else if (strcmp(proj, "qwen2vl_merger") == 0) l->fam = LV_VQ_QWEN2VL;
    else if (strcmp(proj, "qwen2.5vl_merger") == 0) l->fam = LV_VQ_QWEN25VL;
    else return lv_error(LV_ERR_UNSUPPORTED, "videos are supported for the idefics3 (SmolVLM2) and Qwen projectors, not %s", proj);
    if (p->fps < 0 || !isfinite(p->fps) || p->fps > 1000) return lv_error(LV_ERR_INVALID_ARG, "fps must be in (0, 1000], got %g", p->fps);
    if (p->n_frames < 0 || p->max_frames < 0) return lv_error(LV_ERR_INVALID_ARG, "frame counts must not be negative");
    l->mrope = lv_model_n_pos_per_token(model) == 4;
    l->carrier = p->carrier;
    if (l->mrope && l->fam == LV_VQ_SMOLVLM2)
        return lv_error(LV_ERR_UNSUPPORTED, "an idefics3 (SmolVLM2) video with an M-RoPE text model: no such model exists to follow");
    lv_video_info info;
    lv_video_get_info(video, &info);
    l->video_frames = info.n_frames;
    l->video_fps = info.avg_fps;
    if (info.n_frames <= 0 || !(info.avg_fps > 0) || !isfinite(info.avg_fps))
        return lv_error(LV_ERR_FORMAT, "the video has no frames or no frame rate (%lld frames, %g fps)", (long long)info.n_frames, info.avg_fps);
    lv_video_ask_plan *pl = &l->plan;
    pl->duration_s = info.duration_s;
    lv_status st;
    if (l->fam == LV_VQ_SMOLVLM2) {
        pl->family = "smolvlm2";
        st = lv_vq_smolvlm2_indices(info.n_frames, info.avg_fps, p->fps > 0 ? p->fps : 1.0, p->max_frames > 0 ? p->max_frames : 64,
                                    p->n_frames > 0 ? LV_MIN(p->n_frames, p->max_frames > 0 ? p->max_frames : p->n_frames) : 0,
                                    &l->frame_idx, &pl->n_frames);
        if (st != LV_OK) return st;
        pl->n_units = pl->n_frames;
    } else {
        pl->family = l->fam == LV_VQ_QWEN2VL ? "qwen2vl" : "qwen2.5vl";
        pl->n_frames = lv_vq_qwen_nframes(info.n_frames, info.avg_fps, p->fps > 0 ? p->fps : 2.0, p->max_frames > 0 ? p->max_frames : 768,
                                          p->n_frames);
        pl->n_units = pl->n_frames / 2;
    }
    pl->sample_fps = (double)pl->n_frames / (double)info.n_frames * info.avg_fps;
    if ((st = lv_mmproj_video_frame_size(mm, info.width, info.height, pl->n_frames, &pl->frame_w, &pl->frame_h)) != LV_OK) goto fail;
    if ((st = lv_mmproj_n_tokens(mm, pl->frame_w, pl->frame_h, &pl->unit_tokens, &pl->nx, &pl->ny)) != LV_OK) goto fail;

    {
        double *ft = lv_malloc((size_t)LV_MAX(pl->n_frames, 1) * sizeof(double));
        if (!ft) {
            st = LV_ERR_NOMEM;
            goto fail;
        }
        for (int64_t f = 0; l->fam == LV_VQ_SMOLVLM2 && f < pl->n_frames; f++) ft[f] = (double)l->frame_idx[f] / info.avg_fps;
        st = layout_prompt(l, v, p, rope0, ft);
        lv_free(ft);
        if (st != LV_OK) goto fail;
    }
    return LV_OK;
fail:
    lv_vq_layout_free(l);
    return st;
}

lv_status lv_video_prompt_build(const lv_model *model, int32_t unit_tokens, int64_t n_frames, const double *frame_t, double duration_s,
                                const lv_video_ask_params *p, lv_video_prompt *out) {
    if (!out) return lv_error(LV_ERR_INVALID_ARG, "lv_video_prompt_build: no output");
    memset(out, 0, sizeof(*out));
    if (!model || !p || (n_frames > 0 && !frame_t)) return lv_error(LV_ERR_INVALID_ARG, "lv_video_prompt_build: model, parameters and frame times are needed");
    const lv_vocab *v = lv_model_vocab(model);
    if (!v) return lv_error(LV_ERR_INVALID_ARG, "the model has no tokenizer");
    if (lv_model_n_pos_per_token(model) == 4)
        return lv_error(LV_ERR_UNSUPPORTED, "an idefics3 (SmolVLM2) video with an M-RoPE text model: no such model exists to follow");
    if (unit_tokens < 1 || unit_tokens > (1 << 20) || n_frames < 1 || n_frames > (1 << 24) || !(duration_s >= 0) || duration_s > 1e9)
        return lv_error(LV_ERR_INVALID_ARG, "video prompt: %d rows per frame, %lld frames, %g s: out of range", unit_tokens, (long long)n_frames,
                        duration_s);
    for (int64_t f = 0; f < n_frames; f++)
        if (!(frame_t[f] >= 0) || frame_t[f] > 1e9 || (f && frame_t[f] < frame_t[f - 1]))
            return lv_error(LV_ERR_INVALID_ARG, "video prompt: frame %lld's time %g is negative or before the previous frame's", (long long)f,
                            frame_t[f]);
    lv_vq_layout l = {0};
    l.fam = LV_VQ_SMOLVLM2;
    l.carrier = p->carrier;
    l.plan.family = "smolvlm2";
    l.plan.n_frames = l.plan.n_units = n_frames;
    l.plan.unit_tokens = unit_tokens;
    l.plan.duration_s = duration_s;
    lv_status st = layout_prompt(&l, v, p, 0, frame_t);
    if (st == LV_OK) {
        const int64_t n = l.plan.n_rows;
        out->tokens = lv_malloc((size_t)n * sizeof(lv_token));
        out->frame = lv_malloc((size_t)n * sizeof(int32_t));
        out->row = lv_malloc((size_t)n * sizeof(int32_t));
        if (!out->tokens || !out->frame || !out->row) st = LV_ERR_NOMEM;
        for (int32_t si = 0; st == LV_OK && si < l.n_segs; si++) {
            const lv_vq_seg *s = &l.segs[si];
            for (int32_t i = 0; i < s->n; i++) {
                const int64_t r = s->row0 + i;
                out->tokens[r] = s->unit ? LV_TOKEN_EMBD : l.tokens[s->first + i];
                out->frame[r] = s->unit ? (int32_t)s->first : -1;
                out->row[r] = s->unit ? i : -1;
            }
        }
        out->n_rows = n;
    }
    lv_vq_layout_free(&l);
    if (st != LV_OK) lv_video_prompt_free(out);
    return st;
}

void lv_video_prompt_free(lv_video_prompt *p) {
    if (!p) return;
    lv_free(p->tokens);
    lv_free(p->frame);
    lv_free(p->row);
    memset(p, 0, sizeof(*p));
}
