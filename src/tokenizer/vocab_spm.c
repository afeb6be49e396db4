/*
 * vocab_spm.c: SentencePiece-style tokenization (tokenizer.ggml.model = "llama"), the way
 * llama.cpp's llm_tokenizer_spm does it: start from one symbol per UTF-8 character, repeatedly
 * merge the adjacent pair whose concatenation is a token with the highest score (ties: the
 * leftmost), then emit each symbol's token, or its bytes as <0xXX> byte tokens when the symbol is
 * not in the vocabulary (byte fallback).
 *
 * The caller has already replaced spaces by U+2581 and added the leading space.
 */
#include "core/core.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab_impl.h"

#include <string.h>

typedef struct spm_sym {
    int32_t prev, next;
    uint32_t off, n; /* bytes text[off .. off + n) */
} spm_sym;

typedef struct spm_bigram {
    int32_t left, right;
    float score;
    uint32_t size;
} spm_bigram;

/* a comes out of the queue before b */
static inline bool spm_before(const spm_bigram *a, const spm_bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct spm_heap {
    spm_bigram *h;
    int64_t n, cap;
} spm_heap;

static bool heap_push(spm_heap *q, spm_bigram b) {
    if (q->n == q->cap) {
        int64_t cap = q->cap ? q->cap * 2 : 64;
        spm_bigram *p = lv_realloc(q->h, (size_t)cap * sizeof(*p));
        if (!p) return false;
        q->h = p;
        q->cap = cap;
    }
    int64_t i = q->n++;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!spm_before(&b, &q->h[parent])) break;
        q->h[i] = q->h[parent];
        i = parent;
    }
    q->h[i] = b;
    return true;
}

static spm_bigram heap_pop(spm_heap *q) {
    spm_bigram top = q->h[0];
    spm_bigram last = q->h[--q->n];
    int64_t i = 0;
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, best = i;
        const spm_bigram *bb = &last;
        if (l < q->n && spm_before(&q->h[l], bb)) {
            best = l;
            bb = &q->h[l];
        }
        if (r < q->n && spm_before(&q->h[r], bb)) best = r;
        if (best == i) break;
        q->h[i] = q->h[best];
        i = best;
    }
    if (q->n > 0) q->h[i] = last;
    return top;
}

static bool try_add(const lv_vocab *v, const char *text, const spm_sym *syms, int32_t left, int32_t right, spm_heap *q) {
    if (left < 0 || right < 0) return true;
    uint32_t size = syms[left].n + syms[right].n;
    lv_token t = lv_vocab_find(v, text + syms[left].off, size);
    if (t < 0) return true;
    return heap_push(q, (spm_bigram){left, right, v->tokens[t].score, size});
}

static const char k_space[3] = {(char)0xE2, (char)0x96, (char)0x81}; /* U+2581 */

bool lv_spm_can_split(const lv_vocab *v) {
    for (int32_t i = 0; i < v->n_tokens; i++) {
        const char *t = v->tokens[i].text;
        const uint32_t n = v->tokens[i].len;
        for (uint32_t k = 1; k + 3 <= n; k++) {
            if (memcmp(t + k, k_space, 3) != 0) continue;
            /* a U+2581 at byte k: fine only if what precedes it is also U+2581 */
            if (k < 3 || memcmp(t + k - 3, k_space, 3) != 0) return false;
        }
    }
    return true;
}

static lv_status spm_tokenize_piece(const lv_vocab *v, const char *text, size_t len, lv_tokbuf *out);

/* Merges only ever produce tokens, and with spm_split_at_space no token can contain the point
 * before a U+2581 that follows another character, so the text splits there into pieces that
 * merge independently: the same merges happen in the same order within each piece (the leftmost
 * tie-break compares positions inside one piece), and the result equals one merge loop over the
 * whole text, in time proportional to the text instead of text x log(text). */
lv_status lv_spm_tokenize(const lv_vocab *v, const char *text, size_t len, lv_tokbuf *out) {
    if (!v->spm_split_at_space) return spm_tokenize_piece(v, text, len, out);
    /* walk characters exactly as the merge loop cuts them (invalid bytes included), so a split
     * never falls inside a symbol */
    size_t start = 0;
    bool prev_is_space = true; /* never split before the first character */
    for (size_t off = 0; off < len;) {
        size_t cl = lv_utf8_len((unsigned char)text[off]);
        if (cl > len - off) cl = len - off;
        const bool is_space = cl == 3 && memcmp(text + off, k_space, 3) == 0;
        if (is_space && !prev_is_space) {
            lv_status st = spm_tokenize_piece(v, text + start, off - start, out);
            if (st != LV_OK) return st;
            start = off;
        }
        prev_is_space = is_space;
        off += cl;
    }
    return spm_tokenize_piece(v, text + start, len - start, out);
}

static lv_status spm_tokenize_piece(const lv_vocab *v, const char *text, size_t len, lv_tokbuf *out) {
    if (len == 0) return LV_OK;
    if (len > INT32_MAX / 2) return lv_error(LV_ERR_INVALID_ARG, "tokenize: a text fragment of %zu bytes is too long", len);
    spm_sym *syms = lv_mallocn(len, sizeof(spm_sym));
    spm_heap q = {0};
    lv_status st = LV_OK;
    if (!syms) return LV_ERR_NOMEM;
    int32_t n = 0;
    for (size_t off = 0; off < len;) {
        size_t cl = lv_utf8_len((unsigned char)text[off]);
        if (cl > len - off) cl = len - off;
        syms[n] = (spm_sym){n - 1, off + cl == len ? -1 : n + 1, (uint32_t)off, (uint32_t)cl};
        off += cl;
        n++;
    }
    for (int32_t i = 1; i < n; i++)
        if (!try_add(v, text, syms, i - 1, i, &q)) goto oom;
    while (q.n > 0) {
        spm_bigram b = heap_pop(&q);
        spm_sym *l = &syms[b.left], *r = &syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) syms[r->next].prev = b.left;
        if (!try_add(v, text, syms, l->prev, b.left, &q)) goto oom;
        if (!try_add(v, text, syms, b.left, l->next, &q)) goto oom;
    }
    for (int32_t i = 0; i != -1; i = syms[i].next) {
        const spm_sym *s = &syms[i];
        lv_token t = lv_vocab_find(v, text + s->off, s->n);
        if (t >= 0) {
            lv_tokbuf_push(out, t);
            continue;
        }
        /* byte fallback (a merged symbol is always a token, so only single characters get here) */
        for (uint32_t k = 0; k < s->n; k++) {
            lv_token bt = lv_vocab_byte_to_token(v, (uint8_t)text[s->off + k]);
            if (bt < 0) bt = v->unk; /* llama.cpp throws here; we fall back to <unk> if there is one */
            if (bt >= 0) lv_tokbuf_push(out, bt);
        }
    }
    goto done;
oom:
    st = LV_ERR_NOMEM;
done:
    lv_free(syms);
    lv_free(q.h);
    return st;
}
