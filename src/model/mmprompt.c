/*
 * mmprompt.c: prompts with images (longview.h, "prompts with images"): the text around each
 * image's chunks as llama.cpp v0.4.0's mtmd writes it (mtmd.cpp, mtmd_tokenizer), each piece of
 * text tokenized on its own and consecutive text pieces joined into one chunk; the rows the
 * chunks take in the cache and the rotary positions they advance.
 */
#include "model/model.h"

#include "core/core.h"

#include <string.h>

typedef struct builder {
    const lv_model *model;
    const lv_vocab *v;
    lv_mm_prompt *p;
    int32_t cap;
} builder;

static lv_status push_chunk(builder *b, lv_mm_chunk c) {
    if (b->p->n_chunks == b->cap) {
        const int32_t cap = b->cap ? 2 * b->cap : 16;
        lv_mm_chunk *n = lv_realloc(b->p->chunks, (size_t)cap * sizeof(*n));
        if (!n) return LV_ERR_NOMEM;
        b->p->chunks = n;
        b->cap = cap;
    }
    b->p->chunks[b->p->n_chunks++] = c;
    return LV_OK;
}

/* append tokens to the last chunk when it is text, else start a text chunk */
static lv_status add_tokens(builder *b, const lv_token *t, int32_t n) {
    if (n <= 0) return LV_OK;
    lv_mm_chunk *last = b->p->n_chunks ? &b->p->chunks[b->p->n_chunks - 1] : NULL;
    if (!last || !last->tokens) {
        lv_mm_chunk c = {0};
        c.tokens = lv_mallocn((size_t)n, sizeof(lv_token));
        if (!c.tokens) return LV_ERR_NOMEM;
        lv_status st = push_chunk(b, c);
        if (st != LV_OK) {
            lv_free(c.tokens);
            return st;
        }
        last = &b->p->chunks[b->p->n_chunks - 1];
    } else {
        lv_token *grown = lv_realloc(last->tokens, (size_t)(last->n_tokens + n) * sizeof(lv_token));
        if (!grown) return LV_ERR_NOMEM;
        last->tokens = grown;
    }
    memcpy(last->tokens + last->n_tokens, t, (size_t)n * sizeof(lv_token));
    last->n_tokens += n;
    last->n_pos = last->n_tokens;
    b->p->n_rows += n;
    return LV_OK;
}

/* a piece of text, tokenized alone with parse_special and no BOS (mtmd's add_text) */
static lv_status add_text(builder *b, const char *text, int64_t len) {
    if (len <= 0) return LV_OK;
    int32_t n = lv_vocab_tokenize(b->v, text, len, NULL, 0, false, true);
    if (n == INT32_MIN) return LV_ERR_INVALID_ARG;
    if (n < 0) n = -n;
    if (n == 0) return LV_OK;
    lv_token *t = lv_mallocn((size_t)n, sizeof(lv_token));
    if (!t) return LV_ERR_NOMEM;
    const int32_t got = lv_vocab_tokenize(b->v, text, len, t, n, false, true);
    lv_status st = got == n ? add_tokens(b, t, n) : lv_error(LV_ERR_INTERNAL, "tokenizer count changed (%d, %d)", n, got);
    lv_free(t);
    return st;
}

/* the first token whose rendered piece is exactly `text` (mtmd's lookup_token); LV_ERR_UNSUPPORTED
 * when the vocabulary has none (mtmd would decode an invalid id) */
static lv_status add_lookup(builder *b, const char *text) {
    const int32_t nv = lv_vocab_n_tokens(b->v), len = (int32_t)strlen(text);
    char buf[64];
    for (lv_token t = 0; t < nv; t++) {
        const int32_t n = lv_vocab_token_to_piece(b->v, t, buf, sizeof(buf), true);
        if (n == len && memcmp(buf, text, (size_t)len) == 0) return add_tokens(b, &t, 1);
    }
    char shown[128]; /* newlines written as \n: "\n\n" is one of mtmd's idefics3 markers */
    int32_t k = 0;
    for (int32_t i = 0; i < len && k < (int32_t)sizeof(shown) - 3; i++) {
        if (text[i] == '\n') shown[k++] = '\\', shown[k++] = 'n';
        else shown[k++] = text[i];
    }
    shown[k] = 0;
    return lv_error(LV_ERR_UNSUPPORTED, "the vocabulary has no token '%s', which this projector's image markers need", shown);
}

static lv_status add_image(builder *b, const lv_image_embd *im) {
    const bool idefics3 = im->projector && strcmp(im->projector, "idefics3") == 0;
    const bool qwen = im->projector && strncmp(im->projector, "qwen2", 5) == 0;
    const bool mrope = b->model->hp.mrope;
    lv_status st;
    if (qwen && (st = add_text(b, "<|vision_start|>", 16)) != LV_OK) return st;
    for (int32_t i = 0; i < im->n_chunks; i++) {
        const lv_image_chunk *ch = &im->chunks[i];
        const bool tile = idefics3 && ch->tile_row > 0;
        if (tile) {
            char tag[96];
            const int n = snprintf(tag, sizeof(tag), "<fake_token_around_image><row_%d_col_%d>", ch->tile_row, ch->tile_col);
            if ((st = add_text(b, tag, n)) != LV_OK) return st;
        } else if (idefics3) { /* the overview */
            if ((st = add_lookup(b, "\n\n")) != LV_OK || (st = add_lookup(b, "<fake_token_around_image>")) != LV_OK ||
                (st = add_lookup(b, "<global-img>")) != LV_OK)
                return st;
        }
        lv_mm_chunk c = {0};
        c.embd = im->embd + (int64_t)ch->first * im->n_embd;
        c.n_tokens = ch->n_tokens;
        c.nx = mrope ? ch->nx : ch->n_tokens;
        c.ny = mrope ? ch->ny : 1;
        c.n_pos = mrope ? LV_MAX(ch->nx, ch->ny) : ch->n_tokens;
        if ((st = push_chunk(b, c)) != LV_OK) return st;
        b->p->n_rows += c.n_tokens;
        if (tile && ch->tile_col == im->tile_cols && ch->tile_row < im->tile_rows && (st = add_lookup(b, "\n")) != LV_OK) return st;
        if (idefics3 && !tile && (st = add_lookup(b, "<fake_token_around_image>")) != LV_OK) return st;
    }
    if (qwen && (st = add_text(b, "<|vision_end|>", 14)) != LV_OK) return st;
    return LV_OK;
}

void lv_mm_prompt_free(lv_mm_prompt *p) {
    if (!p) return;
    for (int32_t i = 0; i < p->n_chunks; i++) lv_free(p->chunks[i].tokens);
    lv_free(p->chunks);
    memset(p, 0, sizeof(*p));
}

lv_status lv_mm_tokenize(const lv_model *model, const char *prompt, int64_t len, const lv_image_embd *images, int32_t n_images,
                         bool add_special, lv_mm_prompt *out) {
    memset(out, 0, sizeof(*out));
    const lv_vocab *v = model ? lv_model_vocab(model) : NULL;
    if (!v) return lv_error(LV_ERR_INVALID_ARG, "the model has no tokenizer");
    if (n_images < 0 || (n_images > 0 && !images)) return lv_error(LV_ERR_INVALID_ARG, "bad image list");
    if (len < 0) len = prompt ? (int64_t)strlen(prompt) : 0;
    for (int32_t i = 0; i < n_images; i++)
        if (images[i].n_embd != model->hp.n_embd)
            return lv_error(LV_ERR_INVALID_ARG, "image %d has %d-wide embeddings; the text model takes %lld", i, images[i].n_embd,
                            (long long)model->hp.n_embd);
    /* count the markers */
    const char *mk = LV_MEDIA_MARKER;
    const int64_t mlen = (int64_t)strlen(mk);
    int32_t n_mark = 0;
    for (int64_t i = 0; i + mlen <= len; i++)
        if (memcmp(prompt + i, mk, (size_t)mlen) == 0) {
            n_mark++;
            i += mlen - 1;
        }
    if (n_mark > 0 && n_mark != n_images)
        return lv_error(LV_ERR_INVALID_ARG, "the prompt has %d %s markers but %d images were given", n_mark, mk, n_images);
    builder b = {model, v, out, 0};
    lv_status st = LV_OK;
    int32_t img = 0;
    if (n_mark == 0) /* images first, then the text */
        for (; img < n_images && st == LV_OK; img++) st = add_image(&b, &images[img]);
    int64_t start = 0;
    for (int64_t i = 0; st == LV_OK && i <= len; i++) {
        const bool at_mark = n_mark > 0 && i + mlen <= len && memcmp(prompt + i, mk, (size_t)mlen) == 0;
        if (!at_mark && i < len) continue;
        st = add_text(&b, prompt + start, i - start);
        if (st == LV_OK && at_mark) st = add_image(&b, &images[img++]);
        start = i + (at_mark ? mlen : 0);
        if (at_mark) i += mlen - 1;
    }
    /* BOS at the front: into the first chunk if it is text, else a chunk of its own */
    if (st == LV_OK && add_special && lv_vocab_add_bos(v) && lv_vocab_bos(v) >= 0) {
        const lv_token bos = lv_vocab_bos(v);
        if (out->n_chunks > 0 && out->chunks[0].tokens) {
            lv_mm_chunk *c = &out->chunks[0];
            lv_token *t = lv_realloc(c->tokens, (size_t)(c->n_tokens + 1) * sizeof(lv_token));
            if (!t) {
                st = LV_ERR_NOMEM;
            } else {
                memmove(t + 1, t, (size_t)c->n_tokens * sizeof(lv_token));
                t[0] = bos;
                c->tokens = t;
                c->n_tokens++;
                c->n_pos++;
                out->n_rows++;
            }
        } else {
            lv_mm_chunk c = {0};
            c.tokens = lv_malloc(sizeof(lv_token));
            if (!c.tokens || (st = push_chunk(&b, c)) != LV_OK) {
                lv_free(c.tokens);
                st = LV_ERR_NOMEM;
            } else {
                memmove(out->chunks + 1, out->chunks, (size_t)(out->n_chunks - 1) * sizeof(lv_mm_chunk));
                out->chunks[0] = c;
                out->chunks[0].tokens[0] = bos;
                out->chunks[0].n_tokens = out->chunks[0].n_pos = 1;
                out->n_rows++;
            }
        }
    }
    if (st == LV_OK && add_special && lv_vocab_add_eos(v) && lv_vocab_eos(v) >= 0) {
        const lv_token eos = lv_vocab_eos(v);
        st = add_tokens(&b, &eos, 1);
    }
    if (st != LV_OK) lv_mm_prompt_free(out);
    return st;
}
