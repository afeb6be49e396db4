/*
 * kv.c: the paged KV cache (design in kv.h).
 */
#include "kv.h"

#include "quant.h"

#include <string.h>

typedef struct kv_pool {   /* one per (layer, KV head) */
    uint8_t *k;            /* (n_pages, page_size, Dk) elements of the kv type */
    uint8_t *v;            /* (n_pages, page_size, Dv) */
    int32_t *pos;          /* (n_pages, page_size) */
    int32_t *free_ids;     /* stack of free page ids */
    int64_t n_free;
} kv_pool;

typedef struct kv_stream { /* one per (sequence, layer, KV head) */
    int32_t *pages;        /* (max_pages) page ids in the pool of (layer, head) */
    int64_t n_pages;       /* pages held (committed + reserved) */
    int64_t n_tokens;      /* committed tokens */
} kv_stream;

struct lv_kv {
    lv_kv_params p;
    int64_t n_streams_per_seq; /* n_layer * n_head_kv */
    int64_t n_pages;           /* pages per pool */
    size_t elt;                /* bytes per element */
    kv_pool *pools;            /* (n_layer * n_head_kv) */
    kv_stream *streams;        /* (n_seq_max, n_layer * n_head_kv) */
    int32_t *page_ids;         /* backing store of every stream's page table and the free stacks */
    int32_t *seq_max_pos;      /* (n_seq_max) */
    int64_t total_tokens;      /* committed, all sequences */
    /* the open transaction */
    bool in_txn;
    int64_t *txn_n_new;        /* (n_seq_max) */
    int32_t *txn_last_pos;     /* (n_seq_max) */
    int64_t *txn_old_pages;    /* (n_seq_max * n_streams_per_seq) */
    uint8_t *big;              /* K, V, pos storage of all pools */
    size_t big_size;
};

static inline kv_stream *stream_at(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head) {
    return &kv->streams[seq * kv->n_streams_per_seq + layer * kv->p.n_head_kv + head];
}

lv_status lv_kv_create(const lv_kv_params *p, lv_kv **out) {
    *out = NULL;
    if (p->n_layer <= 0 || p->n_head_kv <= 0 || p->head_dim_k <= 0 || p->head_dim_v <= 0 || p->page_size <= 0 ||
        p->n_ctx <= 0 || p->n_seq_max <= 0)
        return lv_error(LV_ERR_INVALID_ARG, "kv cache: invalid shape");
    if (p->page_size > (1 << 20) || p->n_seq_max > (1 << 16))
        return lv_error(LV_ERR_INVALID_ARG, "kv cache: page size %lld or %lld sequences too large", (long long)p->page_size,
                        (long long)p->n_seq_max);
    lv_kv *kv = lv_calloc(1, sizeof(*kv));
    if (!kv) return LV_ERR_NOMEM;
    kv->p = *p;
    kv->elt = p->type == LV_KV_F32 ? 4 : 2;
    kv->n_streams_per_seq = p->n_layer * p->n_head_kv;
    /* enough pages for n_ctx tokens plus a partly filled last page for every other sequence */
    kv->n_pages = (p->n_ctx + p->page_size - 1) / p->page_size + (p->n_seq_max - 1);
    const int64_t n_pools = kv->n_streams_per_seq;
    const int64_t n_streams = p->n_seq_max * n_pools;
    lv_status st = LV_ERR_NOMEM;

    int64_t page_bytes = p->page_size * ((p->head_dim_k + p->head_dim_v) * (int64_t)kv->elt + 4);
    int64_t pool_bytes, total;
    if (lv_mul_ovf_i64(page_bytes, kv->n_pages, &pool_bytes) || lv_mul_ovf_i64(pool_bytes, n_pools, &total) ||
        (uint64_t)total > SIZE_MAX / 2) {
        st = lv_error(LV_ERR_INVALID_ARG, "kv cache: %lld tokens x %lld layers x %lld heads does not fit in memory",
                      (long long)p->n_ctx, (long long)p->n_layer, (long long)p->n_head_kv);
        goto fail;
    }
    kv->big_size = (size_t)total;
    kv->big = lv_big_alloc(kv->big_size);
    kv->pools = lv_calloc((size_t)n_pools, sizeof(kv_pool));
    kv->streams = lv_calloc((size_t)n_streams, sizeof(kv_stream));
    /* page tables: every stream can hold every page of its pool; free stacks likewise */
    int64_t n_ids;
    if (lv_mul_ovf_i64(n_streams + n_pools, kv->n_pages, &n_ids)) goto fail;
    kv->page_ids = lv_mallocn((size_t)n_ids, sizeof(int32_t));
    kv->seq_max_pos = lv_mallocn((size_t)p->n_seq_max, sizeof(int32_t));
    kv->txn_n_new = lv_calloc((size_t)p->n_seq_max, sizeof(int64_t));
    kv->txn_last_pos = lv_calloc((size_t)p->n_seq_max, sizeof(int32_t));
    kv->txn_old_pages = lv_calloc((size_t)n_streams, sizeof(int64_t));
    if (!kv->big || !kv->pools || !kv->streams || !kv->page_ids || !kv->seq_max_pos || !kv->txn_n_new || !kv->txn_last_pos ||
        !kv->txn_old_pages)
        goto fail;
    uint8_t *b = kv->big;
    int32_t *ids = kv->page_ids;
    for (int64_t i = 0; i < n_pools; i++) {
        kv_pool *pl = &kv->pools[i];
        pl->k = b;
        b += kv->n_pages * p->page_size * p->head_dim_k * (int64_t)kv->elt;
        pl->v = b;
        b += kv->n_pages * p->page_size * p->head_dim_v * (int64_t)kv->elt;
        pl->pos = (int32_t *)b;
        b += kv->n_pages * p->page_size * 4;
        pl->free_ids = ids;
        ids += kv->n_pages;
    }
    for (int64_t i = 0; i < n_streams; i++) {
        kv->streams[i].pages = ids;
        ids += kv->n_pages;
    }
    lv_kv_clear(kv);
    *out = kv;
    return LV_OK;
fail:
    lv_kv_free(kv);
    return st;
}

void lv_kv_free(lv_kv *kv) {
    if (!kv) return;
    lv_big_free(kv->big, kv->big_size);
    lv_free(kv->pools);
    lv_free(kv->streams);
    lv_free(kv->page_ids);
    lv_free(kv->seq_max_pos);
    lv_free(kv->txn_n_new);
    lv_free(kv->txn_last_pos);
    lv_free(kv->txn_old_pages);
    lv_free(kv);
}

void lv_kv_clear(lv_kv *kv) {
    LV_ASSERT(!kv->in_txn);
    for (int64_t i = 0; i < kv->n_streams_per_seq; i++) {
        kv_pool *pl = &kv->pools[i];
        /* pop order 0, 1, 2, ... */
        for (int64_t j = 0; j < kv->n_pages; j++) pl->free_ids[j] = (int32_t)(kv->n_pages - 1 - j);
        pl->n_free = kv->n_pages;
    }
    for (int64_t i = 0; i < kv->p.n_seq_max * kv->n_streams_per_seq; i++) {
        kv->streams[i].n_pages = 0;
        kv->streams[i].n_tokens = 0;
    }
    for (int64_t s = 0; s < kv->p.n_seq_max; s++) kv->seq_max_pos[s] = -1;
    kv->total_tokens = 0;
}

/* ---- transactions ---- */

lv_status lv_kv_reserve(lv_kv *kv, const int64_t *n_new, const int32_t *last_pos) {
    LV_ASSERT(!kv->in_txn);
    const int64_t P = kv->p.page_size;
    int64_t add = 0;
    for (int64_t s = 0; s < kv->p.n_seq_max; s++) add += n_new[s];
    if (kv->total_tokens + add > kv->p.n_ctx) {
        for (int64_t s = 0; s < kv->p.n_seq_max; s++) {
            if (n_new[s] > 0)
                return lv_error(LV_ERR_CONTEXT_FULL,
                                "context full: sequence %lld needs %lld more tokens, but the context holds %lld tokens and %lld are in use "
                                "(raise -c/--ctx-size)",
                                (long long)s, (long long)n_new[s], (long long)kv->p.n_ctx, (long long)kv->total_tokens);
        }
    }
    /* pages needed from each pool: every stream of a sequence grows the same way in the dense policy */
    for (int64_t ip = 0; ip < kv->n_streams_per_seq; ip++) {
        int64_t need = 0;
        for (int64_t s = 0; s < kv->p.n_seq_max; s++) {
            if (!n_new[s]) continue;
            const kv_stream *st = &kv->streams[s * kv->n_streams_per_seq + ip];
            need += (st->n_tokens + n_new[s] + P - 1) / P - st->n_pages;
        }
        if (need > kv->pools[ip].n_free)
            return lv_error(LV_ERR_CONTEXT_FULL, "context full: %lld more KV pages needed, %lld free (raise -c/--ctx-size)",
                            (long long)need, (long long)kv->pools[ip].n_free);
    }
    for (int64_t s = 0; s < kv->p.n_seq_max; s++) {
        kv->txn_n_new[s] = n_new[s];
        kv->txn_last_pos[s] = last_pos ? last_pos[s] : -1;
        if (!n_new[s]) continue;
        for (int64_t ip = 0; ip < kv->n_streams_per_seq; ip++) {
            kv_stream *st = &kv->streams[s * kv->n_streams_per_seq + ip];
            kv_pool *pl = &kv->pools[ip];
            kv->txn_old_pages[s * kv->n_streams_per_seq + ip] = st->n_pages;
            const int64_t want = (st->n_tokens + n_new[s] + P - 1) / P;
            while (st->n_pages < want) {
                LV_ASSERT(pl->n_free > 0);
                st->pages[st->n_pages++] = pl->free_ids[--pl->n_free];
            }
        }
    }
    kv->in_txn = true;
    return LV_OK;
}

void lv_kv_commit(lv_kv *kv) {
    LV_ASSERT(kv->in_txn);
    for (int64_t s = 0; s < kv->p.n_seq_max; s++) {
        const int64_t n = kv->txn_n_new[s];
        if (!n) continue;
        for (int64_t ip = 0; ip < kv->n_streams_per_seq; ip++) kv->streams[s * kv->n_streams_per_seq + ip].n_tokens += n;
        kv->seq_max_pos[s] = kv->txn_last_pos[s];
        kv->total_tokens += n;
    }
    kv->in_txn = false;
}

void lv_kv_rollback(lv_kv *kv) {
    LV_ASSERT(kv->in_txn);
    for (int64_t s = 0; s < kv->p.n_seq_max; s++) {
        if (!kv->txn_n_new[s]) continue;
        for (int64_t ip = 0; ip < kv->n_streams_per_seq; ip++) {
            kv_stream *st = &kv->streams[s * kv->n_streams_per_seq + ip];
            kv_pool *pl = &kv->pools[ip];
            const int64_t old = kv->txn_old_pages[s * kv->n_streams_per_seq + ip];
            while (st->n_pages > old) pl->free_ids[pl->n_free++] = st->pages[--st->n_pages];
        }
    }
    kv->in_txn = false;
}

int64_t lv_kv_seq_len(const lv_kv *kv, int64_t seq) { return kv->streams[seq * kv->n_streams_per_seq].n_tokens; }
int32_t lv_kv_seq_max_pos(const lv_kv *kv, int64_t seq) { return kv->seq_max_pos[seq]; }

void lv_kv_write(lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t slot, const float *k, const float *v, int32_t pos) {
    const kv_stream *st = stream_at(kv, seq, layer, head);
    const int64_t P = kv->p.page_size, Dk = kv->p.head_dim_k, Dv = kv->p.head_dim_v;
    LV_ASSERT(slot >= 0 && slot / P < st->n_pages);
    const kv_pool *pl = &kv->pools[layer * kv->p.n_head_kv + head];
    const int64_t row = (int64_t)st->pages[slot / P] * P + slot % P;
    if (kv->p.type == LV_KV_F32) {
        memcpy(pl->k + row * Dk * 4, k, (size_t)Dk * 4);
        memcpy(pl->v + row * Dv * 4, v, (size_t)Dv * 4);
    } else {
        lv_from_float_row(LV_TYPE_F16, k, pl->k + row * Dk * 2, Dk);
        lv_from_float_row(LV_TYPE_F16, v, pl->v + row * Dv * 2, Dv);
    }
    pl->pos[row] = pos;
}

int64_t lv_kv_max_spans(const lv_kv *kv) { return kv->n_pages; }

int lv_kv_dense_spans(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t n_tokens, lv_attn_span *spans) {
    const kv_stream *st = stream_at(kv, seq, layer, head);
    const int64_t P = kv->p.page_size, Dk = kv->p.head_dim_k, Dv = kv->p.head_dim_v;
    const kv_pool *pl = &kv->pools[layer * kv->p.n_head_kv + head];
    LV_ASSERT(n_tokens <= st->n_pages * P);
    int n = 0;
    for (int64_t t = 0; t < n_tokens; t += P) {
        const int64_t row = (int64_t)st->pages[t / P] * P;
        spans[n].k = pl->k + row * Dk * (int64_t)kv->elt;
        spans[n].v = pl->v + row * Dv * (int64_t)kv->elt;
        spans[n].pos = pl->pos + row;
        spans[n].n = (int32_t)LV_MIN(P, n_tokens - t);
        n++;
    }
    return n;
}

lv_status lv_kv_seq_truncate(lv_kv *kv, int64_t seq, int32_t p0) {
    LV_ASSERT(!kv->in_txn);
    const int64_t P = kv->p.page_size;
    /* positions increase along a stream: find the first slot with pos >= p0 (same in every stream) */
    const kv_stream *s0 = stream_at(kv, seq, 0, 0);
    const kv_pool *pl0 = &kv->pools[0];
    int64_t keep = s0->n_tokens;
    for (int64_t t = 0; t < s0->n_tokens; t++) {
        if (pl0->pos[(int64_t)s0->pages[t / P] * P + t % P] >= p0) {
            keep = t;
            break;
        }
    }
    const int64_t removed = s0->n_tokens - keep;
    for (int64_t ip = 0; ip < kv->n_streams_per_seq; ip++) {
        kv_stream *st = &kv->streams[seq * kv->n_streams_per_seq + ip];
        kv_pool *pl = &kv->pools[ip];
        st->n_tokens = keep;
        const int64_t want = (keep + P - 1) / P;
        while (st->n_pages > want) pl->free_ids[pl->n_free++] = st->pages[--st->n_pages];
    }
    kv->total_tokens -= removed;
    /* the new max position: that of the last kept token */
    kv->seq_max_pos[seq] = keep > 0 ? pl0->pos[(int64_t)s0->pages[(keep - 1) / P] * P + (keep - 1) % P] : -1;
    return LV_OK;
}

lv_kv_type lv_kv_type_of(const lv_kv *kv) { return kv->p.type; }
int64_t lv_kv_n_ctx(const lv_kv *kv) { return kv->p.n_ctx; }

int64_t lv_kv_used_bytes_(const lv_kv *kv) {
    int64_t per_tok = (kv->p.head_dim_k + kv->p.head_dim_v) * (int64_t)kv->elt;
    int64_t total = 0;
    for (int64_t i = 0; i < kv->p.n_seq_max * kv->n_streams_per_seq; i++) total += kv->streams[i].n_tokens * per_tok;
    return total;
}

int64_t lv_kv_capacity_bytes_(const lv_kv *kv) {
    return kv->n_pages * kv->p.page_size * (kv->p.head_dim_k + kv->p.head_dim_v) * (int64_t)kv->elt * kv->n_streams_per_seq;
}
