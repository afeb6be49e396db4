/*
 * cmd_train_video.c: `longview train-video`: train a small video model (a text model + an idefics3
 * vision tower and projector, SmolVLM2's layout) end to end on V-NIAH questions (docs/train.md):
 * frames of real footage with a rendered needle (tools/common/vniah.c), laid out in SmolVLM2's
 * video prompt exactly as `longview run --video` lays it out (lv_video_prompt_build), followed by
 * the answer. The tower's embeddings go into the text model as embedding rows; the gradient of the
 * answer's loss flows back through both.
 *
 * Every sample is a pure function of (--seed, step, index), so a run resumed from its checkpoints
 * (OUT.ckpt and MM.ckpt, each with its .optim) continues bit for bit as if it had not stopped.
 * Nothing is written at OUT or MM before the schedule is complete.
 */
#define _POSIX_C_SOURCE 200809L
#include "common/cli.h"
#include "commands.h"
#include "common/train_data.h"
#include "common/vniah.h"
#include "train/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The data seed of held-out evaluation samples: disjoint from every training sample's. */
#define EVAL_SEED_XOR 0x5EEDE7A1ull

typedef struct tv_run {
    lv_threadpool *tp;
    lv_model *vocab;     /* the tokenizer (the text model's) */
    lv_tmodel *m;        /* text model */
    lv_tvmodel *tv;      /* tower + projector */
    lv_tr_state st;
    lv_tv_state tst;
    const vn_bank *bank;
    vn_config vc;
    int32_t M;           /* embedding rows per frame */
    float answer_w, lm_w;
    bool oracle;         /* --oracle-rows: token embeddings stand in for the tower's rows */
    bool oracle_grid;    /* --oracle-grid: ... each character in the row of the grid cell it is drawn in */
    int32_t grid;        /* the tower's rows are a grid x grid raster of the frame */
    int64_t collisions;  /* --oracle-grid: characters that found their cell taken (counted, not placed) */
    float row_w;         /* --row-loss: weight of the tower rows' distance to the oracle's rows */
    float *target;       /* --row-loss: the oracle's rows (frames M, Et) */
    int64_t target_cap;
    float row_ce;        /* --row-ce: weight of the rows' cross-entropy against the oracle's tokens */
    bool row_ce_raw;     /* --row-ce-raw: logits of the row as it is, not scaled */
    int32_t *target_tok; /* the oracle's token of each row (frames M) */
    int64_t target_tok_cap;
    lv_token fill;       /* <image> */
    /* per step, grown */
    uint8_t *rgb;        /* every frame of the batch */
    int64_t rgb_cap;
    float *emb, *demb;   /* (frames M, Et) */
    int64_t emb_cap, demb_cap;
    float *logits;       /* (V) */
    float *ce;           /* (T) */
    int64_t ce_cap;
} tv_run;

/* One sample as the text model sees it. */
typedef struct tv_seq {
    int64_t T, n_prompt;     /* rows; the prompt's (the answer follows) */
    int32_t *tok, *pos, *tgt;
    float *w;
    int64_t cap;
    int32_t first_frame;     /* its first frame in the batch's frame array */
    vn_sample s;
} tv_seq;

static void seq_free(tv_seq *q) {
    free(q->tok), free(q->pos), free(q->tgt), free(q->w);
    vn_sample_free(&q->s);
    memset(q, 0, sizeof(*q));
}

static int grow(void **p, int64_t *cap, int64_t need, size_t elt) {
    if (need <= *cap) return 0;
    const int64_t n = need + need / 2 + 16;
    void *q = realloc(*p, (size_t)n * elt);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* The text rows of sample q: the video prompt (the question after the video), then " ANSWER." and
 * EOS; targets on every next text token, weights answer_w on the answer, lm_w on the prompt's
 * text. Returns 0 or -1 after printing the error. */
static int build_seq(tv_run *r, tv_seq *q) {
    const vn_sample *s = &q->s;
    double t[4096];
    if (s->n_frames > 4096) return cli_error("a sample of %d frames: at most 4096", s->n_frames), -1;
    for (int32_t f = 0; f < s->n_frames; f++) t[f] = (double)f / r->vc.fps;
    lv_video_ask_params ap = lv_video_ask_default_params();
    ap.prompt = s->question;
    lv_video_prompt vp;
    lv_status st = lv_video_prompt_build(r->vocab, r->M, s->n_frames, t, s->duration_s, &ap, &vp);
    if (st != LV_OK) return cli_fail("laying out the video prompt", st), -1;
    char ans[64];
    snprintf(ans, sizeof(ans), " %s.", s->answer);
    lv_token at[64];
    int32_t na = lv_tokenize(r->vocab, ans, (int64_t)strlen(ans), at, 62, false, false);
    if (na < 1) {
        lv_video_prompt_free(&vp);
        return cli_error("tokenizing the answer '%s'", ans), -1;
    }
    const lv_token eos = lv_token_eos(r->vocab);
    if (eos >= 0) at[na++] = eos;
    const int64_t T = vp.n_rows + na;
    if (T > q->cap) {
        const int64_t cap = T + T / 2;
        int32_t *a = realloc(q->tok, (size_t)cap * sizeof(int32_t));
        if (a) q->tok = a;
        int32_t *b = realloc(q->pos, (size_t)cap * sizeof(int32_t));
        if (b) q->pos = b;
        int32_t *c = realloc(q->tgt, (size_t)cap * sizeof(int32_t));
        if (c) q->tgt = c;
        float *d = realloc(q->w, (size_t)cap * sizeof(float));
        if (d) q->w = d;
        if (!a || !b || !c || !d) goto nomem;
        q->cap = cap;
    }
    for (int64_t i = 0; i < T; i++) {
        q->tok[i] = i < vp.n_rows ? vp.tokens[i] : at[i - vp.n_rows];
        q->pos[i] = (int32_t)i;
    }
    for (int64_t i = 0; i < T; i++) {
        const int32_t next = i + 1 < T ? q->tok[i + 1] : -1;
        q->tgt[i] = next;
        q->w[i] = next < 0 ? 0.0f : i + 1 >= vp.n_rows ? r->answer_w : r->lm_w;
        if (q->w[i] == 0) q->tgt[i] = -1;
    }
    q->T = T;
    q->n_prompt = vp.n_rows;
    lv_video_prompt_free(&vp);
    return 0;
nomem:
    lv_video_prompt_free(&vp);
    return cli_error("out of memory"), -1;
}

/* --oracle-rows: instead of the tower's output, each frame's rows are token embeddings: a needle
 * frame's first rows spell its text, one character a row (the rest, and every other frame's rows,
 * the embedding of <image>). The text model learns to find the needle's frame and read its rows;
 * a tower trained afterwards against that frozen model (--init, --freeze-text) gets a gradient that
 * says what to write (docs/train.md: the curriculum). */
static int oracle_rows(tv_run *r, tv_seq *q, int n, float *dst, int32_t *dst_tok) {
    const int64_t Et = r->m->c.n_embd;
    lv_token fill;
    if (lv_tokenize(r->vocab, "<image>", 7, &fill, 1, false, true) != 1) return cli_error("--oracle-rows: the vocabulary has no <image> token"), -1;
    r->fill = fill;
    lv_token row[4096];
    if (r->M > 4096) return cli_error("--oracle-rows: %d rows a frame, at most 4096", r->M), -1;
    for (int b = 0; b < n; b++) {
        const vn_sample *s = &q[b].s;
        for (int32_t f = 0; f < s->n_frames; f++) {
            const vn_needle *nd = NULL;
            for (int32_t k = 0; k < s->n_needles; k++)
                if (f >= s->needles[k].f0 && f < s->needles[k].f1) nd = &s->needles[k];
            for (int32_t i = 0; i < r->M; i++) row[i] = fill;
            for (int32_t i = 0; nd && nd->text[i]; i++) {
                if (r->oracle_grid && nd->text[i] == ' ') continue; /* nothing is drawn */
                lv_token t;
                if (lv_tokenize(r->vocab, nd->text + i, 1, &t, 1, false, false) != 1)
                    return cli_error("--oracle-rows: '%c' is not one token", nd->text[i]), -1;
                int32_t at = i;
                if (r->oracle_grid) { /* the cell holding the glyph's centre, in raster order */
                    const int32_t g = r->grid, gx = (int32_t)(nd->cx[i] * g), gy = (int32_t)(nd->cy * g);
                    at = (gy < 0 ? 0 : gy >= g ? g - 1 : gy) * g + (gx < 0 ? 0 : gx >= g ? g - 1 : gx);
                    if (row[at] != fill) {
                        r->collisions++;
                        continue;
                    }
                }
                if (at < r->M) row[at] = t;
            }
            for (int32_t i = 0; i < r->M; i++) {
                const int64_t at = ((int64_t)q[b].first_frame + f) * r->M + i;
                if (dst) memcpy(dst + at * Et, r->m->w.tok_embd + (int64_t)row[i] * Et, (size_t)Et * sizeof(float));
                if (dst_tok) dst_tok[at] = row[i];
            }
        }
    }
    return 0;
}

/* Samples (seed, step, 0..n) into q[], their frames into r->rgb, and the tower's forward. */
static int batch_forward(tv_run *r, uint64_t seed, int64_t step, tv_seq *q, int n, int64_t index0) {
    int64_t frames = 0;
    for (int b = 0; b < n; b++) {
        if (vn_make_sample(r->bank, &r->vc, seed, step, index0 + b, &q[b].s) != 0) return -1;
        if (build_seq(r, &q[b]) != 0) return -1;
        q[b].first_frame = (int32_t)frames;
        frames += q[b].s.n_frames;
    }
    const int64_t S = r->vc.size, px = S * S * 3, Et = r->tv->c.n_text_embd;
    if (grow((void **)&r->rgb, &r->rgb_cap, frames * px, 1) != 0) return cli_error("out of memory"), -1;
    if (grow((void **)&r->emb, &r->emb_cap, frames * r->M * Et, sizeof(float)) != 0 ||
        grow((void **)&r->demb, &r->demb_cap, frames * r->M * Et, sizeof(float)) != 0)
        return cli_error("out of memory"), -1;
    for (int b = 0; b < n; b++) memcpy(r->rgb + (int64_t)q[b].first_frame * px, q[b].s.rgb, (size_t)(q[b].s.n_frames * px));
    if (r->oracle) return oracle_rows(r, q, n, r->emb, NULL);
    lv_status st = lv_tv_forward(r->tp, r->tv, &r->tst, r->rgb, (int32_t)frames, r->emb);
    if (st != LV_OK) return cli_fail("vision forward", st), -1;
    if (r->row_w > 0 || r->row_ce > 0) {
        if (grow((void **)&r->target, &r->target_cap, frames * r->M * Et, sizeof(float)) != 0 ||
            grow((void **)&r->target_tok, &r->target_tok_cap, frames * r->M, sizeof(int32_t)) != 0)
            return cli_error("out of memory"), -1;
        return oracle_rows(r, q, n, r->target, r->target_tok);
    }
    return 0;
}

static lv_tr_seq seq_of(const tv_run *r, tv_seq *q, bool grad) {
    const int64_t off = (int64_t)q->first_frame * r->M * r->tv->c.n_text_embd;
    lv_tr_seq s = {q->T, q->tok, q->pos, q->tgt, q->w, r->emb + off, grad ? r->demb + off : NULL};
    return s;
}

/* The dot products of row e (Et) with every token embedding, into p (V): how --row-ce and the
 * evaluation's character-row accuracy read a tower row as a token. */
static void row_dots(const tv_run *r, const float *e, double *p) {
    const int64_t Et = r->m->c.n_embd, V = r->m->c.n_vocab;
    const float *E = r->m->w.tok_embd;
    for (int64_t v = 0; v < V; v++) {
        double d = 0;
        for (int64_t j = 0; j < Et; j++) d += (double)e[j] * E[v * Et + j];
        p[v] = d;
    }
}

/* --row-ce: each tower row read as a token (logits = the row, scaled to the token embeddings' mean
 * norm, dotted with each token embedding), cross-entropy against the oracle's token, averaged over
 * the rows holding a character and over the others (<image>) separately, so the few character rows
 * weigh as much as the many others; its gradient is added to r->demb and its value to *loss. The
 * scaling matters: on raw dot products the loss falls by growing the rows (measured: rows 60-85
 * times the embeddings' norm after 600 steps), which the reader then cannot read. 0, or -1 out of
 * memory. */
static int row_ce_step(tv_run *r, const tv_seq *q, int n, double *loss) {
    int64_t nf = 0;
    for (int b = 0; b < n; b++) nf += q[b].s.n_frames;
    const int64_t rows = nf * r->M, Et = r->m->c.n_embd, V = r->m->c.n_vocab;
    int64_t n_char = 0;
    for (int64_t i = 0; i < rows; i++) n_char += r->target_tok[i] != r->fill;
    const int64_t n_fill = rows - n_char;
    double *p = malloc(sizeof(double) * (size_t)V);
    if (!p) return -1;
    const float *E = r->m->w.tok_embd;
    double mnorm = 0;
    for (int64_t v = 0; v < V; v++) {
        double n2 = 0;
        for (int64_t j = 0; j < Et; j++) n2 += (double)E[v * Et + j] * E[v * Et + j];
        mnorm += sqrt(n2) / (double)V;
    }
    double *gh = malloc(sizeof(double) * (size_t)Et);
    if (!gh) return free(p), -1;
    double l = 0;
    for (int64_t i = 0; i < rows; i++) {
        const float *e = r->emb + i * Et;
        const int32_t t = r->target_tok[i];
        const double w = r->row_ce / (double)(t != r->fill ? n_char : n_fill);
        double en = 0;
        for (int64_t j = 0; j < Et; j++) en += (double)e[j] * e[j];
        en = sqrt(en) + 1e-12;
        const double sc = r->row_ce_raw ? 1.0 : mnorm / en; /* e^ = sc e */
        double mx = -INFINITY, z = 0;
        row_dots(r, e, p);
        for (int64_t v = 0; v < V; v++) {
            p[v] *= sc;
            mx = p[v] > mx ? p[v] : mx;
        }
        for (int64_t v = 0; v < V; v++) z += p[v] = exp(p[v] - mx);
        l += w * -log(p[t] / z);
        /* g^ = dL/de^ = sum_v (p_v - [v = t]) E_v; dL/de = sc (g^ - (g^ . u) u), u = e / |e| */
        for (int64_t j = 0; j < Et; j++) gh[j] = 0;
        for (int64_t v = 0; v < V; v++) {
            const double c = w * (p[v] / z - (v == t));
            if (c == 0) continue;
            for (int64_t j = 0; j < Et; j++) gh[j] += c * E[v * Et + j];
        }
        double gu = 0;
        for (int64_t j = 0; j < Et; j++) gu += gh[j] * e[j] / en;
        float *g = r->demb + i * Et;
        for (int64_t j = 0; j < Et; j++) g[j] += (float)(r->row_ce_raw ? gh[j] : sc * (gh[j] - gu * e[j] / en));
    }
    free(gh);
    free(p);
    *loss += l;
    return 0;
}

/* Held-out accuracy: the fraction of samples whose every answer token (up to the '.') is the
 * argmax under teacher forcing, which is when greedy decoding writes the answer. */
static double evaluate(tv_run *r, uint64_t seed, int n, tv_seq *q, double *tok_acc, double *row_acc) {
    int ok = 0;
    int64_t tok_ok = 0, tok_n = 0, row_ok = 0, row_n = 0;
    const int64_t V = r->m->c.n_vocab, Et = r->m->c.n_embd;
    double *dots = malloc(sizeof(double) * (size_t)V);
    if (!dots) return cli_error("out of memory"), -1;
    for (int i = 0; i < n; i++) {
        if (batch_forward(r, seed ^ EVAL_SEED_XOR, 0, q, 1, i) != 0) return free(dots), -1;
        /* with the oracle's rows at hand (--row-loss, --row-ce): how many character rows the tower
         * wrote closest (by dot product, as --row-ce reads them) to their character's embedding */
        for (int64_t k = 0; r->target_tok && (r->row_w > 0 || r->row_ce > 0) && k < (int64_t)q->s.n_frames * r->M; k++) {
            if (r->target_tok[k] == r->fill) continue;
            row_dots(r, r->emb + k * Et, dots);
            int64_t a = 0;
            for (int64_t v = 1; v < V; v++)
                if (dots[v] > dots[a]) a = v;
            row_ok += a == r->target_tok[k];
            row_n++;
        }
        lv_tr_seq s = seq_of(r, q, false);
        if (lv_tr_forward(r->tp, r->m, &r->st, &s, NULL) != LV_OK) return free(dots), cli_fail("forward", LV_ERR_INTERNAL), -1;
        bool good = true;
        const int64_t last = q->T - (lv_token_eos(r->vocab) >= 0 ? 2 : 1); /* the '.' (and EOS) are not the answer */
        for (int64_t t = q->n_prompt - 1; t < last - 1; t++) {
            lv_tr_logits(r->tp, r->m, &r->st, t, 1, r->logits);
            int64_t a = 0;
            for (int64_t j = 1; j < V; j++)
                if (r->logits[j] > r->logits[a]) a = j;
            good &= a == q->tok[t + 1];
            tok_ok += a == q->tok[t + 1];
            tok_n++;
        }
        ok += good;
    }
    *tok_acc = tok_n ? (double)tok_ok / (double)tok_n : 0;
    *row_acc = row_n ? (double)row_ok / (double)row_n : -1;
    free(dots);
    return (double)ok / n;
}

/* Save both models and both optimizers: text to tpath (+ .optim), tower to vpath (+ .optim). A
 * save before the end of the schedule is marked as a checkpoint. */
static int save_all(const tv_run *r, const lv_adamw *ot, const lv_adamw *ov, const lv_tr_ckpt_info *info, const char *vocab, const char *tpath,
                    const char *vpath, bool freeze_text) {
    char mark[64], opath[4200];
    snprintf(mark, sizeof(mark), "step %lld of %lld", (long long)info->step, (long long)info->total_steps);
    const char *ckpt_kv[] = {"longview.training.checkpoint", mark, NULL};
    const bool done = info->step >= info->total_steps;
    lv_status st = lv_tmodel_export_gguf(r->m, vocab, tpath, false, "longview-train-video", done ? NULL : ckpt_kv);
    if (st != LV_OK) return cli_fail("writing the text model", st), -1;
    if (!freeze_text) {
        snprintf(opath, sizeof(opath), "%s.optim", tpath);
        if ((st = lv_adamw_save(ot, info, opath)) != LV_OK) return cli_fail("writing the text optimizer state", st), -1;
    }
    if ((st = lv_tvmodel_export_gguf(r->tv, vpath, false, done ? "longview-train-video" : mark)) != LV_OK)
        return cli_fail("writing the mmproj", st), -1;
    snprintf(opath, sizeof(opath), "%s.optim", vpath);
    if ((st = lv_adamw_save(ov, info, opath)) != LV_OK) return cli_fail("writing the vision optimizer state", st), -1;
    return 0;
}

/* --init with a vocabulary that extends the model's own (a builtin:bytes model for builtin:bytes-
 * vision): the model grows the new tokens' rows and takes the --vocab tokenizer. The same vocabulary
 * changes nothing; any other is refused. Returns 0, or -1 after printing the error. */
static int grow_init_vocab(tv_run *r, const char *vocab, bool freeze_text, uint64_t seed, float std) {
    lv_model *nv = NULL;
    if (td_load_vocab(vocab, &nv) != 0) return -1;
    const int32_t V0 = lv_model_n_vocab(r->vocab), V1 = lv_model_n_vocab(nv);
    bool prefix = V1 >= V0;
    char a[256], b[256];
    for (int32_t t = 0; prefix && t < V0; t++) {
        const int32_t na = lv_token_to_piece(r->vocab, t, a, sizeof(a), true), nb = lv_token_to_piece(nv, t, b, sizeof(b), true);
        prefix = na == nb && (na <= 0 || !memcmp(a, b, (size_t)na));
    }
    if (!prefix) {
        lv_model_free(nv);
        return cli_error("--init's vocabulary (%d tokens) is not the start of --vocab %s (%d tokens): pass the model's own vocabulary", V0, vocab,
                         V1),
               -1;
    }
    if (V1 == V0) {
        lv_model_free(nv);
        return 0;
    }
    lv_tmodel *g = NULL;
    lv_status st = lv_tmodel_grow_vocab(r->m, V1, !freeze_text, seed, std, &g);
    if (st != LV_OK) {
        lv_model_free(nv);
        return cli_fail("growing the vocabulary", st), -1;
    }
    fprintf(stderr, "train-video: --init's %d tokens grown to --vocab %s's %d\n", V0, vocab, V1);
    lv_tmodel_free(r->m);
    r->m = g;
    lv_model_free(r->vocab);
    r->vocab = nv;
    return 0;
}

static int parse_tasks(const char *s, vn_config *c) {
    c->w_single = c->w_keyed = c->w_order = c->w_words = 0;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        double w = 1;
        if (eq) {
            *eq = 0;
            char *end;
            w = strtod(eq + 1, &end);
            if (*end || !(w >= 0) || w > 1e6) return cli_error("--tasks: bad weight in '%s'", s), -1;
        }
        if (!strcmp(tok, "single")) c->w_single = w;
        else if (!strcmp(tok, "keyed")) c->w_keyed = w;
        else if (!strcmp(tok, "order")) c->w_order = w;
        else if (!strcmp(tok, "words")) c->w_words = w;
        else return cli_error("--tasks: unknown task '%s' (single, keyed, order, words)", tok), -1;
    }
    if (c->w_single + c->w_keyed + c->w_order + c->w_words <= 0) return cli_error("--tasks: every weight is 0"), -1;
    return 0;
}

int cmd_train_video(int argc, char **argv) {
    const char *out = NULL, *mm_out = NULL, *vocab = "builtin:bytes-vision", *init = NULL, *init_mm = NULL, *haystack = NULL;
    const char *tasks = "single=1";
    int64_t dim = 128, layers = 4, heads = 4, kv_heads = 2, ffn = 384, ctx_train = 0;
    int64_t img = 128, patch = 8, vdim = 96, vheads = 4, vlayers = 2, vffn = 256, shuffle = 4;
    int64_t frames_min = 4, frames_max = 16, needle_frames = 1, keyed_needles = 3;
    int64_t batch = 4;
    double box_min = 0.45, box_max = 0.9;
    double fps = 1, vlr = -1, answer_weight = 1, lm_weight = 0.05,
           init_std = 0.02, rope_base = 10000;
    bool resume = false, freeze_text = false, grew = false, oracle = false, oracle_grid = false, row_ce_raw = false;
    double row_loss = 0, row_ce = 0;
    td_schedule sc;
    cli_opt own[] = {
        {"-o", "--output", CLI_STR, &out, "FILE", "the trained text model (GGUF, with FILE.optim), written when the schedule is complete", .required = true},
        {NULL, "--out-mmproj", CLI_STR, &mm_out, "FILE", "the trained vision tower + projector (mmproj GGUF, with FILE.optim)", .required = true},
        {NULL, "--dim", CLI_INT, &dim, "N", "text model width (default 128)", .lo = 2, .hi = 8192},
        {NULL, "--layers", CLI_INT, &layers, "N", "text model layers (default 4)", .lo = 1, .hi = 256},
        {NULL, "--heads", CLI_INT, &heads, "N", "text attention heads (default 4)", .lo = 1, .hi = 256},
        {NULL, "--kv-heads", CLI_INT, &kv_heads, "N", "text KV heads (default 2)", .lo = 1, .hi = 256},
        {NULL, "--ffn", CLI_INT, &ffn, "N", "text feed-forward size (default 384)", .lo = 1, .hi = 65536},
        {NULL, "--rope-base", CLI_FLOAT, &rope_base, "F", "text RoPE base (default 10000)", .flo = 2, .fhi = 1e9},
        {NULL, "--ctx-train", CLI_INT, &ctx_train, "N", "context_length written to the text GGUF (default 8192)", .lo = 1, .hi = 1 << 24},
        {NULL, "--vocab", CLI_STR, &vocab, "FILE", "vocabulary (default builtin:bytes-vision: bytes + SmolVLM2's markers)"},
        {NULL, "--init", CLI_STR, &init, "FILE", "start the text model from this GGUF (text shape flags ignored); a vocabulary that --vocab extends grows"},
        {NULL, "--init-mmproj", CLI_STR, &init_mm, "FILE", "start the tower from this mmproj GGUF (one this command wrote; tower shape flags ignored)"},
        {NULL, "--init-std", CLI_FLOAT, &init_std, "F", "standard deviation of fresh weights (default 0.02)", .flo = 1e-6, .fhi = 1},
        {NULL, "--image-size", CLI_INT, &img, "N", "tower input side in pixels: every frame is stretched to N x N (default 128: a 5-digit needle in 45% of the width gets 1.7 pixels per font pixel)", .lo = 8, .hi = 4096},
        {NULL, "--patch", CLI_INT, &patch, "N", "patch side (default 8)", .lo = 1, .hi = 256},
        {NULL, "--vdim", CLI_INT, &vdim, "N", "tower width (default 96)", .lo = 2, .hi = 8192},
        {NULL, "--vheads", CLI_INT, &vheads, "N", "tower heads (default 4)", .lo = 1, .hi = 256},
        {NULL, "--vlayers", CLI_INT, &vlayers, "N", "tower layers (default 2)", .lo = 1, .hi = 256},
        {NULL, "--vffn", CLI_INT, &vffn, "N", "tower feed-forward size, not --vdim (default 256)", .lo = 1, .hi = 65536},
        {NULL, "--shuffle", CLI_INT, &shuffle, "N", "idefics3 pixel-shuffle factor: (side / patch / N)^2 rows per frame (default 4: 16 rows)", .lo = 2, .hi = 16},
        {NULL, "--haystack", CLI_STR, &haystack, "FILES", "comma-separated haystack videos (default ../shared/data/video/nasa_13013.mp4)"},
        {NULL, "--frames-min", CLI_INT, &frames_min, "N", "fewest frames in a sample (default 4)", .lo = 1, .hi = 4096},
        {NULL, "--frames-max", CLI_INT, &frames_max, "N", "most frames in a sample (default 16)", .lo = 1, .hi = 4096},
        {NULL, "--fps", CLI_FLOAT, &fps, "F", "frames per second of a sample (timestamps in the prompt; default 1)", .flo = 1e-3, .fhi = 1000},
        {NULL, "--needle-frames", CLI_INT, &needle_frames, "N", "frames a needle stays on screen (default 1)", .lo = 1, .hi = 4096},
        {NULL, "--tasks", CLI_STR, &tasks, "LIST", "question kinds and weights: single=W,keyed=W,order=W,words=W (default single=1; docs/vniah.md)"},
        {NULL, "--box-min", CLI_FLOAT, &box_min, "F", "narrowest needle box, a fraction of the frame's width (default 0.45)", .flo = 0.05, .fhi = 1},
        {NULL, "--box-max", CLI_FLOAT, &box_max, "F", "widest needle box (default 0.9)", .flo = 0.05, .fhi = 1},
        {NULL, "--keyed-needles", CLI_INT, &keyed_needles, "N", "needles in a keyed sample, 2..8 (default 3)", .lo = 2, .hi = 8},
        {NULL, "--answer-weight", CLI_FLOAT, &answer_weight, "F", "loss weight of the answer tokens (default 1)", .flo = 0, .fhi = 1e6},
        {NULL, "--lm-weight", CLI_FLOAT, &lm_weight, "F", "loss weight of the prompt's text tokens (default 0.05)", .flo = 0, .fhi = 1e6},
        {NULL, "--freeze-text", CLI_FLAG, &freeze_text, NULL, "train the tower only (the text model as --init gives it)"},
        {NULL, "--oracle-rows", CLI_FLAG, &oracle, NULL, "train the text model only, on rows that spell the needle (token embeddings) instead of the tower's: character k in row k"},
        {NULL, "--oracle-grid", CLI_FLAG, &oracle_grid, NULL, "the oracle's layout (--oracle-rows, --row-loss): each character in the row of the grid cell its glyph is centred in (a cell holds one: --box-min 0.7 with --shuffle 2)"},
        {NULL, "--row-ce", CLI_FLOAT, &row_ce, "W", "add W x the cross-entropy of reading each row as the oracle's token (logits: the row, scaled to the token embeddings' mean norm, dotted with each of them), averaged over character rows and over the others separately (default 0)", .flo = 0, .fhi = 1e6},
        {NULL, "--row-ce-raw", CLI_FLAG, &row_ce_raw, NULL, "--row-ce on the row as it is (raw dot products: the loss also falls by growing rows; how the tower of docs/train.md's first answering pair was trained)"},
        {NULL, "--row-loss", CLI_FLOAT, &row_loss, "W", "add W x |rows - oracle rows|^2 / |oracle rows|^2 to the tower's loss: the tower is also taught the oracle's rows directly (default 0)", .flo = 0, .fhi = 1e6},
        {NULL, "--batch", CLI_INT, &batch, "N", "samples per step (default 4)", .lo = 1, .hi = 4096},
        {NULL, "--vlr", CLI_FLOAT, &vlr, "F", "peak learning rate of the tower (default --lr)", .flo = 0, .fhi = 10},
        {NULL, "--resume", CLI_FLAG, &resume, NULL, "continue from OUT.ckpt and MM.ckpt (+ .optim); pass the same flags as the first run"},
    };
    enum { N_OWN = sizeof(own) / sizeof(own[0]) };
    cli_opt opts[N_OWN + TD_SCHEDULE_N_OPTS];
    memcpy(opts, own, sizeof(own));
    td_schedule_opts(&sc, opts + N_OWN);
    const int n_opts = (int)(sizeof(opts) / sizeof(opts[0]));
    int r0 = cli_parse(argc, argv, opts, n_opts, "longview train-video -o TEXT.gguf --out-mmproj MM.gguf [shape flags] [--steps N] [--resume]",
                       "Train a small video model end to end on the CPU: a llama text model and an idefics3 vision tower +\n"
                       "projector (SmolVLM2's layout, which `longview run --video` and llama.cpp's mtmd read), on V-NIAH questions:\n"
                       "frames of real footage with a rendered number drawn into some of them, in SmolVLM2's video prompt with\n"
                       "frame timestamps, then the question and its answer. Every sample is a function of (--seed, step), so\n"
                       "--resume continues bit for bit. See docs/train.md.",
                       NULL, 0, NULL);
    if (r0) return r0 > 0 ? 0 : 2;
    if (dim % heads || (dim / heads) % 2 || heads % kv_heads) {
        cli_error("--dim %lld must be a multiple of --heads %lld (even head size), --heads of --kv-heads %lld", (long long)dim, (long long)heads,
                  (long long)kv_heads);
        return 2;
    }
    if (frames_min > frames_max) {
        cli_error("--frames-min %lld is above --frames-max %lld", (long long)frames_min, (long long)frames_max);
        return 2;
    }
    if (resume && (init || init_mm)) {
        cli_error("--resume and --init / --init-mmproj exclude each other");
        return 2;
    }
    if (freeze_text && !init) {
        cli_error("--freeze-text needs --init (a trained text model to keep)");
        return 2;
    }
    if (oracle_grid && !oracle && !(row_loss > 0) && !(row_ce > 0)) {
        cli_error("--oracle-grid is a layout of --oracle-rows, --row-loss or --row-ce");
        return 2;
    }
    if (row_ce_raw && !(row_ce > 0)) {
        cli_error("--row-ce-raw is a form of --row-ce");
        return 2;
    }
    if ((row_loss > 0 || row_ce > 0) && oracle) {
        cli_error("--row-loss and --row-ce teach the tower, which --oracle-rows does not train: choose one");
        return 2;
    }
    if (oracle && freeze_text) {
        cli_error("--oracle-rows trains the text model only; --freeze-text the tower only: choose one");
        return 2;
    }
    td_schedule_finish(&sc);
    const int64_t steps = sc.steps, warmup = sc.warmup, threads = sc.threads, seed = sc.seed, save_every = sc.save_every, stop_at = sc.stop_at,
                  eval_every = sc.eval_every, eval_samples = sc.eval_samples, log_every = sc.log_every;
    const double lr = sc.lr, min_lr = sc.min_lr, wd = sc.wd, clip = sc.clip, beta1 = sc.beta1, beta2 = sc.beta2;
    const char *log_path = sc.log_path;
    if (vlr < 0) vlr = lr;

    tv_run R = {0};
    tv_run *r = &R;
    int rc = 1;
    vn_bank *bank = NULL;
    tv_seq *q = NULL;
    lv_adamw ot = {0}, ov = {0};
    lv_model *tm_src = NULL;
    FILE *logf = NULL;
    lv_tr_ckpt_info info = {.step = 0, .total_steps = steps, .seed = (uint64_t)seed};
    lv_status st;
    char tck[4200], vck[4200], path[4300];
    snprintf(tck, sizeof(tck), "%s.ckpt", out);
    snprintf(vck, sizeof(vck), "%s.ckpt", mm_out);

    r->tp = lv_threadpool_create(threads ? (int)threads : lv_n_cores());
    if (!r->tp) return cli_fail("creating threads", LV_ERR_NOMEM);
    /* the text model */
    const char *tsrc = resume ? tck : init;
    if (tsrc) {
        lv_model_params mp = lv_model_default_params();
        mp.use_mmap = false;
        if ((st = lv_model_load(tsrc, mp, &tm_src)) != LV_OK) {
            rc = cli_fail(resume ? "loading the text checkpoint" : "loading --init", st);
            goto end;
        }
        if ((st = lv_tmodel_from_model(tm_src, !freeze_text, &r->m)) != LV_OK) {
            rc = cli_fail("converting the text model", st);
            goto end;
        }
        r->vocab = tm_src;
        tm_src = NULL;
        if (ctx_train) r->m->c.n_ctx_train = (int32_t)ctx_train;
        if (init) {
            const int32_t v0 = r->m->c.n_vocab;
            if (grow_init_vocab(r, vocab, freeze_text, (uint64_t)seed, (float)init_std) != 0) goto end;
            grew = r->m->c.n_vocab != v0;
        }
    } else {
        if (td_load_vocab(vocab, &r->vocab) != 0) goto end;
        lv_tr_config c = {
            .arch = LV_ARCH_LLAMA, .n_vocab = lv_model_n_vocab(r->vocab), .n_embd = (int32_t)dim, .n_layer = (int32_t)layers,
            .n_head = (int32_t)heads, .n_head_kv = (int32_t)kv_heads, .head_dim = (int32_t)(dim / heads), .n_ff = (int32_t)ffn,
            .n_rot = (int32_t)(dim / heads), .n_ctx_train = (int32_t)(ctx_train ? ctx_train : 8192), .rope_base = (float)rope_base,
            .norm_eps = 1e-5f, .tied = true,
        };
        if ((st = lv_tmodel_create(&c, true, &r->m)) != LV_OK) {
            rc = cli_fail("creating the text model", st);
            goto end;
        }
        lv_tmodel_init(r->m, (uint64_t)seed, (float)init_std);
    }
    if (!freeze_text && (st = lv_adamw_init(&ot, r->m)) != LV_OK) goto fail;
    /* the tower */
    const char *vsrc = resume ? vck : init_mm;
    if (vsrc) {
        if ((st = lv_tvmodel_load_gguf(vsrc, true, &r->tv)) != LV_OK) {
            rc = cli_fail(resume ? "loading the mmproj checkpoint" : "loading --init-mmproj", st);
            goto end;
        }
        if (r->tv->c.n_text_embd != r->m->c.n_embd) {
            cli_error("the mmproj gives %d-wide embeddings; the text model takes %d", r->tv->c.n_text_embd, r->m->c.n_embd);
            goto end;
        }
    } else {
        lv_tv_config c = lv_tv_config_default((int32_t)img, (int32_t)patch, (int32_t)vdim, (int32_t)vheads, (int32_t)vlayers, (int32_t)vffn,
                                              (int32_t)shuffle, r->m->c.n_embd);
        if ((st = lv_tv_config_check(&c)) != LV_OK) {
            rc = cli_fail("the tower's shape", st);
            rc = 2;
            goto end;
        }
        if ((st = lv_tvmodel_create(&c, true, &r->tv)) != LV_OK) goto fail;
        lv_tvmodel_init(r->tv, (uint64_t)seed + 1, (float)init_std);
        /* the projector writes rows of the token embedding's scale (post-LayerNorm features are of unit
         * variance): rows far larger than the text's get a gradient that much smaller through the
         * text model's RMSNorm, and the tower does not learn (docs/train.md) */
        double ss = 0;
        const int64_t ne = (int64_t)r->m->c.n_vocab * r->m->c.n_embd, P = (int64_t)r->tv->c.n_embd * r->tv->c.scale_factor * r->tv->c.scale_factor;
        for (int64_t i = 0; i < ne; i++) ss += (double)r->m->w.tok_embd[i] * r->m->w.tok_embd[i];
        lv_tr_fill_normal(r->tv->w.proj, P * r->tv->c.n_text_embd, (uint64_t)seed + 2, (float)(sqrt(ss / (double)ne) / sqrt((double)P)));
    }
    if ((st = lv_tv_adamw_init(&ov, r->tv)) != LV_OK) goto fail;
    if (resume) {
        lv_tr_ckpt_info vi;
        snprintf(path, sizeof(path), "%s.optim", vck);
        if ((st = lv_adamw_load(&ov, &vi, path)) != LV_OK) {
            rc = cli_fail("loading the vision optimizer state", st);
            goto end;
        }
        info = vi;
        if (!freeze_text) {
            lv_tr_ckpt_info ti;
            snprintf(path, sizeof(path), "%s.optim", tck);
            if ((st = lv_adamw_load(&ot, &ti, path)) != LV_OK) {
                rc = cli_fail("loading the text optimizer state", st);
                goto end;
            }
            if (ti.step != vi.step) {
                cli_error("the checkpoints are of different steps (text %lld, tower %lld)", (long long)ti.step, (long long)vi.step);
                goto end;
            }
        }
        if (info.total_steps != steps || info.seed != (uint64_t)seed) {
            cli_error("the checkpoints were made with --steps %lld --seed %llu; pass the same flags to resume", (long long)info.total_steps,
                      (unsigned long long)info.seed);
            rc = 2;
            goto end;
        }
        fprintf(stderr, "train-video: resuming at step %lld of %lld\n", (long long)info.step, (long long)steps);
    }
    {
        int32_t g = r->tv->c.image_size / r->tv->c.patch_size / r->tv->c.scale_factor;
        r->M = g * g;
        r->grid = g;
    }

    /* data */
    r->vc = (vn_config){.size = r->tv->c.image_size, .frames_min = (int32_t)frames_min, .frames_max = (int32_t)frames_max, .fps = fps,
                        .needle_frames = (int32_t)needle_frames, .digits = 5, .keyed_needles = (int32_t)keyed_needles};
    r->vc.box_min = box_min;
    r->vc.box_max = box_max;
    if (parse_tasks(tasks, &r->vc) != 0 || vn_config_check(&r->vc) != 0) {
        rc = 2;
        goto end;
    }
    {
        char hs[4096];
        const char *paths[16];
        int np = 0;
        if (!haystack) {
            haystack = access("../shared/data/video/nasa_13013.mp4", R_OK) == 0 ? "../shared/data/video/nasa_13013.mp4" : NULL;
            if (!haystack) {
                cli_error("no haystack video found: --haystack FILE[,FILE]");
                rc = 2;
                goto end;
            }
        }
        snprintf(hs, sizeof(hs), "%s", haystack);
        for (char *tok = strtok(hs, ","); tok && np < 16; tok = strtok(NULL, ",")) paths[np++] = tok;
        if (vn_bank_load(paths, np, &r->vc, &bank) != 0) goto end;
        r->bank = bank;
    }
    r->oracle = oracle;
    r->oracle_grid = oracle_grid;
    r->row_w = (float)row_loss;
    r->row_ce = (float)row_ce;
    r->row_ce_raw = row_ce_raw;
    r->answer_w = (float)answer_weight;
    r->lm_w = (float)lm_weight;
    q = calloc((size_t)batch, sizeof(tv_seq));
    r->logits = malloc(sizeof(float) * (size_t)r->m->c.n_vocab);
    if (!q || !r->logits) goto nomem;
    if (log_path && !(logf = fopen(log_path, "a"))) {
        cli_error("--log: cannot open '%s'", log_path);
        rc = 2;
        goto end;
    }
    {
        const lv_tr_config *c = &r->m->c;
        const lv_tv_config *v = &r->tv->c;
        fprintf(stderr,
                "train-video: text llama %d layers, dim %d, %d heads (%d KV), ffn %d, vocab %d: %.2fM parameters%s; tower %d px, patch %d, "
                "dim %d, %d layers, %d heads, ffn %d, shuffle %d -> %d rows a frame: %.2fM parameters; %d threads\n",
                c->n_layer, c->n_embd, c->n_head, c->n_head_kv, c->n_ff, c->n_vocab, (double)r->m->n_params / 1e6, freeze_text ? " (frozen)" : "",
                v->image_size, v->patch_size, v->n_embd, v->n_layer, v->n_head, v->n_ff, v->scale_factor, r->M, (double)r->tv->n_params / 1e6,
                lv_threadpool_n_threads(r->tp));
        fprintf(stderr, "train-video: %lld steps x %lld samples of %lld-%lld frames at %g fps; tasks %s\n", (long long)steps, (long long)batch,
                (long long)frames_min, (long long)frames_max, fps, tasks);
    }

    /* the tokenizer written with every save: the checkpoint's own, --init's unless it grew, or --vocab */
    const char *save_vocab = resume ? tck : init && lv_model_n_vocab(r->vocab) == r->m->c.n_vocab && !grew ? init : vocab;
    const bool tty = isatty(2);
    const double t0 = cli_now_s();
    double frames_seen = 0, last_print = 0;
    const int64_t first = info.step, last = stop_at ? stop_at : steps;
    for (int64_t step = first; step < last; step++) {
        if (batch_forward(r, (uint64_t)seed, step, q, (int)batch, 0) != 0) goto end;
        double wsum = 0;
        for (int64_t b = 0; b < batch; b++) {
            for (int64_t i = 0; i < q[b].T; i++) wsum += q[b].w[i];
            frames_seen += q[b].s.n_frames;
        }
        if (!freeze_text) memset(r->m->grads, 0, sizeof(float) * (size_t)r->m->n_params);
        memset(r->tv->grads, 0, sizeof(float) * (size_t)r->tv->n_params);
        double loss = 0, ans_loss = 0, ans_n = 0;
        for (int64_t b = 0; b < batch; b++) {
            lv_tr_seq s = seq_of(r, &q[b], true);
            if (grow((void **)&r->ce, &r->ce_cap, q[b].T, sizeof(float)) != 0) goto nomem;
            if ((st = lv_tr_forward(r->tp, r->m, &r->st, &s, NULL)) != LV_OK) {
                rc = cli_fail("forward", st);
                goto end;
            }
            /* grad: d/dxf for the backward pass (a frozen model has no gradient array to add to) */
            loss += lv_tr_xent_loss(r->tp, r->m, &r->st, &s, true, (float)(1.0 / wsum), r->ce);
            for (int64_t i = q[b].n_prompt - 1; i < q[b].T - 1; i++) ans_loss += r->ce[i], ans_n++;
            lv_tr_backward(r->tp, r->m, &r->st, &s, NULL);
        }
        double row_l = 0;
        if (r->row_w > 0) { /* --row-loss: W |e - t|^2 / |t|^2 over the batch's rows, its gradient added to the text model's */
            int64_t nf = 0;
            for (int64_t b = 0; b < batch; b++) nf += q[b].s.n_frames;
            const int64_t ne = nf * r->M * r->tv->c.n_text_embd;
            double tt = 0;
            for (int64_t i = 0; i < ne; i++) tt += (double)r->target[i] * r->target[i];
            const double k = tt > 0 ? r->row_w / tt : 0;
            for (int64_t i = 0; i < ne; i++) {
                const double d = (double)r->emb[i] - r->target[i];
                row_l += d * d;
                r->demb[i] += (float)(2 * k * d);
            }
            row_l *= k;
        }
        if (r->row_ce > 0 && row_ce_step(r, q, (int)batch, &row_l) != 0) goto nomem;
        if (!oracle) lv_tv_backward(r->tp, r->tv, &r->tst, r->demb);
        loss /= wsum;
        const float lr_t = lv_lr_schedule(step, steps, warmup, (float)lr, (float)min_lr);
        const float vlr_t = lv_lr_schedule(step, steps, warmup, (float)vlr, (float)(min_lr * vlr / (lr > 0 ? lr : 1)));
        float gt = 0;
        if (!freeze_text) gt = lv_adamw_step(r->tp, &ot, r->m->params, r->m->grads, lr_t, (float)beta1, (float)beta2, 1e-8f, (float)wd, (float)clip);
        float gv = 0;
        if (!oracle) gv = lv_adamw_step(r->tp, &ov, r->tv->params, r->tv->grads, vlr_t, (float)beta1, (float)beta2, 1e-8f, (float)wd, (float)clip);
        info.step = step + 1;
        const double el = cli_now_s() - t0;
        if (!isfinite(loss)) {
            cli_error("step %lld: the loss is not finite (%g): lower --lr", (long long)step + 1, loss);
            goto end;
        }
        if (logf) {
            fprintf(logf, "%lld\t%.6f\t%.6f\t%.6g\t%.6g\t%.6g\t%.0f\t%.3f\n", (long long)step + 1, loss, ans_n ? ans_loss / ans_n : NAN,
                    (double)lr_t, (double)gt, (double)gv, frames_seen, el);
            fflush(logf);
        }
        const bool at_end = step + 1 == last;
        double acc = -1, tacc = 0, racc = -1;
        if (eval_every && ((step + 1) % eval_every == 0 || at_end)) {
            acc = evaluate(r, (uint64_t)seed, (int)eval_samples, q, &tacc, &racc);
            if (acc < 0) goto end;
            char rs[48] = "";
            if (racc >= 0) snprintf(rs, sizeof(rs), ", character rows %.4f", racc);
            if (logf)
                fprintf(logf, "# step %lld answer accuracy %.4f, answer tokens %.4f (%lld held-out samples, argmax of every answer token)%s\n",
                        (long long)step + 1, acc, tacc, (long long)eval_samples, rs);
        }
        if (tty ? el - last_print >= 0.2 || at_end : (step + 1) % log_every == 0 || at_end || acc >= 0) {
            char eta[32], ela[32], accs[96] = "";
            cli_fmt_duration(el / (double)(step + 1 - first) * (double)(last - step - 1), eta, sizeof(eta));
            cli_fmt_duration(el, ela, sizeof(ela));
            if (acc >= 0) snprintf(accs, sizeof(accs), " | answer acc %.3f (tokens %.3f%s)", acc, tacc, racc >= 0 ? ", character rows" : "");
            if (acc >= 0 && racc >= 0) snprintf(accs + strlen(accs) - 1, sizeof(accs) - strlen(accs) + 1, " %.3f)", racc);
            char rows[32] = "";
            if (r->row_w > 0 || r->row_ce > 0) snprintf(rows, sizeof(rows), " | rows %.4f", row_l);
            fprintf(stderr, "%sstep %lld/%lld | loss %.4f | answer %.4f%s | lr %.2e | |g| %.2f / %.2f | %.1f frames/s | %s elapsed, ETA %s%s%s",
                    tty ? "\r\033[K" : "", (long long)step + 1, (long long)steps, loss, ans_n ? ans_loss / ans_n : NAN, rows, (double)lr_t, (double)gt,
                    (double)gv, frames_seen / el, ela, eta, accs, tty && !at_end && acc < 0 ? "" : "\n");
            last_print = el;
        }
        if (save_every && (step + 1) % save_every == 0 && !at_end)
            if (save_all(r, &ot, &ov, &info, save_vocab, tck, vck, freeze_text) != 0) goto end;
    }
    if (info.step < steps) {
        if (save_all(r, &ot, &ov, &info, save_vocab, tck, vck, freeze_text) != 0) goto end;
        fprintf(stderr, "train-video: wrote the checkpoints %s and %s (step %lld of %lld; continue with --resume)\n", tck, vck, (long long)info.step,
                (long long)steps);
    } else {
        if (save_all(r, &ot, &ov, &info, save_vocab, out, mm_out, freeze_text) != 0) goto end;
        const char *ck[2] = {tck, vck};
        for (int i = 0; i < 2; i++) {
            snprintf(path, sizeof(path), "%s.optim", ck[i]);
            unlink(ck[i]);
            unlink(path);
        }
        fprintf(stderr, "train-video: wrote %s and %s (step %lld of %lld)\n", out, mm_out, (long long)info.step, (long long)steps);
        if (r->oracle_grid)
            fprintf(stderr, "train-video: --oracle-grid: %lld characters found their cell taken and were left out\n", (long long)r->collisions);
    }
    rc = 0;
    goto end;
nomem:
    cli_error("out of memory");
    goto end;
fail:
    rc = cli_fail("train-video", st);
end:
    if (logf) fclose(logf);
    for (int64_t b = 0; q && b < batch; b++) seq_free(&q[b]);
    free(q);
    free(r->rgb), free(r->emb), free(r->demb), free(r->logits), free(r->ce), free(r->target), free(r->target_tok);
    vn_bank_free(bank);
    lv_tr_state_free(&r->st);
    lv_tv_state_free(&r->tst);
    lv_adamw_free(&ot);
    lv_adamw_free(&ov);
    lv_tmodel_free(r->m);
    lv_tvmodel_free(r->tv);
    lv_model_free(r->vocab);
    lv_model_free(tm_src);
    lv_threadpool_free(r->tp);
    return rc;
}
