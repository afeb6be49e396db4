/*
 * vocab_map.c: the vocabulary's lookup tables, built at load (vocab.c) and read by every
 * tokenizer (vocab_spm.c, vocab_bpe.c): token text -> id, BPE merge pair -> rank (open
 * addressing over one hash), the SPM byte fallback, and the growable token list. The loader and
 * the tokenizers both depend on this file; it depends on neither.
 */
#include "tokenizer/vocab_impl.h"

#include "core/core.h"

#include <string.h>

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then a final mix */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static uint64_t pow2_at_least(uint64_t n) {
    uint64_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

lv_token lv_vocab_find(const lv_vocab *v, const char *text, size_t len) {
    uint64_t i = hash_bytes(text, len) & v->map.mask;
    for (;;) {
        int32_t id = v->map.slots[i];
        if (id < 0) return -1;
        const lv_vocab_token *t = &v->tokens[id];
        if (t->len == len && memcmp(t->text, text, len) == 0) return id;
        i = (i + 1) & v->map.mask;
    }
}

lv_status lv_vocab_map_build(lv_vocab *v) {
    uint64_t cap = pow2_at_least((uint64_t)v->n_tokens * 2 + 1);
    v->map.slots = lv_mallocn(cap, sizeof(int32_t));
    if (!v->map.slots) return LV_ERR_NOMEM;
    memset(v->map.slots, 0xff, cap * sizeof(int32_t));
    v->map.mask = cap - 1;
    for (int32_t id = 0; id < v->n_tokens; id++) {
        const lv_vocab_token *t = &v->tokens[id];
        uint64_t i = hash_bytes(t->text, t->len) & v->map.mask;
        for (;;) {
            int32_t o = v->map.slots[i];
            if (o < 0) {
                v->map.slots[i] = id;
                break;
            }
            if (v->tokens[o].len == t->len && memcmp(v->tokens[o].text, t->text, t->len) == 0)
                return lv_error(LV_ERR_FORMAT, "tokenizer.ggml.tokens: token %d duplicates token %d ('%.*s')", id, o,
                                (int)LV_MIN(t->len, 40), t->text);
            i = (i + 1) & v->map.mask;
        }
    }
    return LV_OK;
}

lv_token lv_vocab_byte_to_token(const lv_vocab *v, uint8_t byte) {
    static const char hex[] = "0123456789ABCDEF";
    char buf[6] = {'<', '0', 'x', hex[byte >> 4], hex[byte & 15], '>'};
    lv_token t = lv_vocab_find(v, buf, 6);
    if (t >= 0) return t;
    char c = (char)byte;
    return lv_vocab_find(v, &c, 1);
}

void lv_tokbuf_push(lv_tokbuf *b, lv_token id) {
    if (b->oom) return;
    if (b->n == b->cap) {
        int64_t cap = b->cap ? b->cap * 2 : 256;
        lv_token *p = lv_realloc(b->ids, (size_t)cap * sizeof(lv_token));
        if (!p) {
            b->oom = true;
            return;
        }
        b->ids = p;
        b->cap = cap;
    }
    b->ids[b->n++] = id;
}

lv_status lv_merge_map_init(lv_merge_map *mm, uint64_t n) {
    uint64_t cap = pow2_at_least(n * 2 + 1);
    mm->merges = lv_mallocn(n ? n : 1, sizeof(lv_merge));
    mm->slots = lv_mallocn(cap, sizeof(int32_t));
    if (!mm->merges || !mm->slots) return LV_ERR_NOMEM;
    memset(mm->slots, 0xff, cap * sizeof(int32_t));
    mm->mask = cap - 1;
    return LV_OK;
}

void lv_merge_map_add(lv_merge_map *mm, lv_merge m) {
    uint64_t h = (hash_bytes(m.left, m.llen) * 31 + hash_bytes(m.right, m.rlen)) & mm->mask;
    for (;;) {
        int32_t o = mm->slots[h];
        if (o < 0) break;
        const lv_merge *x = &mm->merges[o];
        if (x->llen == m.llen && x->rlen == m.rlen && memcmp(x->left, m.left, m.llen) == 0 && memcmp(x->right, m.right, m.rlen) == 0)
            return; /* the first rank wins (std::unordered_map::emplace) */
        h = (h + 1) & mm->mask;
    }
    mm->merges[mm->n] = m;
    mm->slots[h] = (int32_t)mm->n;
    mm->n++;
}
int32_t lv_bpe_rank(const lv_vocab *v, const char *l, size_t ll, const char *r, size_t rl) {
    const lv_merge_map *mm = &v->merges;
    if (!mm->slots) return -1;
    uint64_t h = (hash_bytes(l, ll) * 31 + hash_bytes(r, rl)) & mm->mask;
    for (;;) {
        int32_t o = mm->slots[h];
        if (o < 0) return -1;
        const lv_merge *x = &mm->merges[o];
        if (x->llen == ll && x->rlen == rl && memcmp(x->left, l, ll) == 0 && memcmp(x->right, r, rl) == 0) return x->rank;
        h = (h + 1) & mm->mask;
    }
}
