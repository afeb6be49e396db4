/*
 * kv.c: the paged KV cache with per-(layer, KV head) policies (design in kv.h).
 */
#include "kv/kv.h"

#include "gguf/quant.h"
#include "kernels/kernels.h"
#include "kernels/qkernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* float -> f16 rows with the active level's conversion (F16C where present; bit-identical to
 * quant.c's reference at every level, tests/kernels/test_qkernels.c): the cache is written every token */
static void to_f16(const float *x, void *y, int64_t n) { lv_qtype_ops_get(LV_TYPE_F16, lv_simd_active())->from_float(x, y, n); }

typedef struct kv_pool {    /* one per (layer, KV head) */
    lv_kv_head_policy pol;
    int64_t n_pages;        /* pages in this pool */
    uint8_t *k;             /* (n_pages, Dk, page_size) elements of the kv type: a page's keys transposed
                               (lv_attn_span), dimension d of its slot i at d * page_size + i; quantized keys:
                               per page (page_size, Dk) quants, then (Dk / 32, page_size) f16 scales */
    uint8_t *v;             /* (n_pages, page_size, Dv); quantized values: per page as quantized keys */
    /* the slots' positions, per page a base and one of three forms (pmode, KV_POS_*): consecutive
       from the base (nothing per slot), 16-bit offsets from the base, or 32-bit positions; only the
       form's own array is written (the arrays of the other forms stay untouched, uncommitted) */
    int32_t *pbase;         /* (n_pages) */
    uint8_t *pmode;         /* (n_pages) */
    uint16_t *poff;         /* (n_pages, page_size) KV_POS_OFF16: position - base */
    int32_t *pwide;         /* (n_pages, page_size) KV_POS_WIDE: the position */
    uint8_t *stats;         /* (n_pages, ceil(page_size / 16), 2, Dk) elements: f32 with f32 keys, else f16 (as LServe
                               keeps them): min then max, or NULL */
    int32_t *free_ids;      /* stack of free page ids */
    int64_t n_free;
} kv_pool;

typedef struct kv_stream {  /* one per (sequence, layer, KV head) */
    int32_t *pages;         /* page ids in token order */
    int64_t n_pages;        /* pages held (committed + reserved) */
    int64_t n_stored;       /* committed tokens in those pages */
    int64_t bs_cursor;      /* BLOCK_STRIDED: pages before this index were kept for good */
    uint8_t *gstats;        /* with stats and stats_group: (groups, 2, Dk) elements of the statistics' type, min then
                               max of the keys of each group of stats_group pages (in stream order), or NULL */
    uint8_t *snap;          /* with stats: the statistics of the partly filled logical page and group as the
                               transaction found them (2 x 2 Dk elements), restored by a rollback */
    uint8_t txn_pmode;      /* the position form of the partly filled page as the transaction found it (rollback) */
} kv_stream;

/* How a page keeps its slots' positions (kv_pool.pmode). Slot j of a page with base b holds: */
enum {
    KV_POS_RUN = 0,   /* b + j: consecutive positions (a prompt, decoding), nothing stored per slot */
    KV_POS_OFF16 = 1, /* b + poff[j]: positions within 65535 of b (a batch with gaps, pruned streams) */
    KV_POS_WIDE = 2,  /* pwide[j]: anything else */
};
#define KV_PAGE_HDR 5 /* bytes per page of the position base and form */

/* The logical tokens of a sequence whose keys and values some FULL streams no longer hold
 * (QuickPrefill): ranges [lo, hi] of consecutive positions, every position in them a token the
 * sequence appended, in increasing order; adjacent ranges merged. The FULL streams hold every
 * token outside them. A truncation counts the logical tokens it removes with them. */
typedef struct kv_pruned {
    int32_t *r;             /* (cap, 2) lo, hi */
    int64_t n, cap;
} kv_pruned;

struct lv_kv {
    lv_kv_params p;
    int64_t n_pools;        /* n_layer * n_head_kv */
    int64_t krow, vrow;     /* bytes of one token's key / value in a page (lv_kv_row_bytes) */
    size_t selt;            /* bytes per element of the key statistics: 4 with f32 keys, else 2 (f16) */
    uint8_t *snaps;         /* the streams' snap buffers */
    kv_pool *pools;
    kv_stream *streams;     /* (n_seq_max, n_pools) */
    int64_t *seq_len;       /* (n_seq_max) tokens appended (logical length) */
    int32_t *seq_max_pos;   /* (n_seq_max) */
    int64_t total_tokens;   /* committed, all sequences (logical) */
    int32_t *ids;           /* backing store of page tables and free stacks */
    bool in_txn;
    int64_t *txn_n_new;     /* (n_seq_max) */
    int32_t *txn_last_pos;  /* (n_seq_max) */
    int64_t *txn_old_pages; /* (n_seq_max * n_pools) */
    uint8_t *big;
    size_t big_size;
    uint8_t *gbig;          /* the streams' group statistics */
    size_t gbig_size;
    /* recurrent state: (n_seq_max, n_rs_layer, 2, rs_floats) floats */
    float *rs;
    size_t rs_size;
    uint8_t *rs_cur;        /* (n_seq_max) which of the two buffers holds the committed state */
    uint8_t *rs_empty;      /* (n_seq_max) the committed state is all zeros (no tokens yet) */
    uint8_t *rs_dirty;      /* (n_seq_max * n_rs_layer) written in this transaction */
    kv_pruned *pruned;      /* (n_seq_max) the position ranges pruned by lv_kv_seq_prune_tail */
};

static inline float *rs_buf(const lv_kv *kv, int64_t seq, int64_t rl, int which) {
    return kv->rs + ((size_t)(seq * kv->p.n_rs_layer + rl) * 2 + (size_t)which) * (size_t)kv->p.rs_floats;
}

static inline kv_stream *stream_at(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head) {
    return &kv->streams[seq * kv->n_pools + layer * kv->p.n_head_kv + head];
}
static inline kv_pool *pool_at(const lv_kv *kv, int64_t layer, int64_t head) { return &kv->pools[layer * kv->p.n_head_kv + head]; }
static inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* the position of slot j of a page */
static inline int32_t page_pos(const kv_pool *pl, int64_t P, int64_t page, int64_t j) {
    switch (pl->pmode[page]) {
    /* (in 64 bits: a slot past the stored tokens of a run near INT32_MAX is read by page_reform) */
    case KV_POS_RUN: return (int32_t)((int64_t)pl->pbase[page] + j);
    case KV_POS_OFF16: return (int32_t)((int64_t)pl->pbase[page] + pl->poff[page * P + j]);
    default: return pl->pwide[page * P + j];
    }
}

/* does a page of form mode and base hold position pos at slot j as it is? */
static inline bool page_holds(uint8_t mode, int32_t base, int64_t j, int32_t pos) {
    if (mode == KV_POS_RUN) return (int64_t)pos == (int64_t)base + j;
    if (mode == KV_POS_OFF16) return pos >= base && (int64_t)pos - base <= UINT16_MAX;
    return true;
}

/* change a page to form mode (OFF16 or WIDE, wider than its own), every slot keeping its position
 * (slots past the stored tokens included: they are rewritten before they are read). One writer. */
static void page_reform(kv_pool *pl, int64_t P, int64_t page, uint8_t mode) {
    LV_ASSERT(mode > pl->pmode[page]);
    if (mode == KV_POS_OFF16) { /* from RUN */
        LV_ASSERT(P - 1 <= UINT16_MAX);
        for (int64_t j = 0; j < P; j++) pl->poff[page * P + j] = (uint16_t)j;
    } else {
        for (int64_t j = 0; j < P; j++) pl->pwide[page * P + j] = page_pos(pl, P, page, j);
    }
    pl->pmode[page] = mode;
}

/* store pos at slot j of a page in its form, which must hold it (page_holds): any thread, one per slot */
static inline void page_put_pos(kv_pool *pl, int64_t P, int64_t page, int64_t j, int32_t pos) {
    const uint8_t mode = pl->pmode[page];
    LV_ASSERT(page_holds(mode, pl->pbase[page], j, pos));
    if (mode == KV_POS_OFF16) pl->poff[page * P + j] = (uint16_t)(pos - pl->pbase[page]);
    else if (mode == KV_POS_WIDE) pl->pwide[page * P + j] = pos;
}

/* store pos at slot j of a page, widening its form first when it cannot hold it: one writer per page */
static void page_set_pos(kv_pool *pl, int64_t P, int64_t page, int64_t j, int32_t pos) {
    const uint8_t mode = pl->pmode[page];
    if (!page_holds(mode, pl->pbase[page], j, pos)) {
        const bool off16 = mode == KV_POS_RUN && P - 1 <= UINT16_MAX && page_holds(KV_POS_OFF16, pl->pbase[page], j, pos);
        page_reform(pl, P, page, off16 ? KV_POS_OFF16 : KV_POS_WIDE);
    }
    page_put_pos(pl, P, page, j, pos);
}

/* a page taken from the pool for a stream: slot 0 will hold position base; the slots after it base + 1,
 * base + 2, ... (run), or positions in [base, last] */
static void page_start(kv_pool *pl, int64_t page, int32_t base, bool run, int32_t last) {
    pl->pbase[page] = base;
    pl->pmode[page] = run ? KV_POS_RUN : page_holds(KV_POS_OFF16, base, 0, last) ? KV_POS_OFF16 : KV_POS_WIDE;
}

/* pages one pool needs: enough for its policy's worst case over every sequence */
static int64_t pool_pages(const lv_kv_params *p, const lv_kv_head_policy *pol) {
    const int64_t P = p->page_size;
    const int64_t full = cdiv(p->n_ctx, P) + p->n_seq_max - 1;
    int64_t per_seq;
    switch (pol->kind) {
    case LV_MASK_SINK_WINDOW: per_seq = cdiv(pol->sink, P) + cdiv((int64_t)pol->window + p->n_batch, P) + 2; break;
    case LV_MASK_BLOCK_STRIDED:
        per_seq = cdiv(p->n_ctx, (int64_t)pol->block * pol->vert_stride) * (pol->block / P) + ((int64_t)pol->local_blocks + 1) * (pol->block / P) +
                  cdiv(p->n_batch, P) + 2;
        break;
    default: return full;
    }
    const int64_t n = per_seq * p->n_seq_max;
    return n < full ? n : full;
}

/* LServe logical pages per page: ceil(page_size / 16) (4 at 64-token pages; until 2026-12-07 this
 * was page_size / 16 + 1, a fifth set per 64-token page that nothing read) */
static int64_t lp_per_page(int64_t P) { return (P + LV_KV_LOGICAL_PAGE - 1) / LV_KV_LOGICAL_PAGE; }

/* Bytes of one page of a pool in use: K and V rows, the position base and form, and LServe
 * statistics when kept; plus, by its form, nothing, 2 or 4 bytes per slot of positions (page_pos_bytes). */
static int64_t page_bytes_of(const lv_kv *kv, bool stats) {
    const int64_t P = kv->p.page_size;
    return P * (kv->krow + kv->vrow) + KV_PAGE_HDR + (stats ? lp_per_page(P) * 2 * kv->p.head_dim_k * (int64_t)kv->selt : 0);
}
static int64_t page_pos_bytes(const kv_pool *pl, int64_t P, int64_t page) {
    return pl->pmode[page] == KV_POS_RUN ? 0 : pl->pmode[page] == KV_POS_OFF16 ? 2 * P : 4 * P;
}
static inline int64_t align64(int64_t n) { return (n + 63) & ~(int64_t)63; }
/* bytes a pool of n pages reserves: every page's K, V and statistics, its base and form, and room
 * for each form of positions (committed by the OS only where written) */
static int64_t pool_bytes_of(const lv_kv *kv, int64_t n, bool stats) {
    const int64_t P = kv->p.page_size;
    return align64(n * P * kv->krow) + align64(n * P * kv->vrow) + align64(n * 4) + align64(n) + align64(n * P * 2) + align64(n * P * 4) +
           (stats ? n * lp_per_page(P) * 2 * kv->p.head_dim_k * (int64_t)kv->selt : 0);
}

static bool kv_type_valid(lv_kv_type t) { return t == LV_KV_F32 || t == LV_KV_F16 || lv_kv_quantized(t); }

lv_status lv_kv_create(const lv_kv_params *p, lv_kv **out) {
    *out = NULL;
    if (p->n_layer <= 0 || p->n_head_kv <= 0 || p->head_dim_k <= 0 || p->head_dim_v <= 0 || p->page_size <= 0 || p->n_ctx <= 0 ||
        p->n_seq_max <= 0)
        return lv_error(LV_ERR_INVALID_ARG, "kv cache: invalid shape");
    if (p->page_size > (1 << 20) || p->n_seq_max > (1 << 16) || p->n_layer > (1 << 16) || p->n_head_kv > (1 << 16))
        return lv_error(LV_ERR_INVALID_ARG, "kv cache: page size %lld, %lld sequences, %lld x %lld heads: too large", (long long)p->page_size,
                        (long long)p->n_seq_max, (long long)p->n_layer, (long long)p->n_head_kv);
    lv_kv *kv = lv_calloc(1, sizeof(*kv));
    if (!kv) return LV_ERR_NOMEM;
    kv->p = *p;
    kv->p.policies = NULL;
    if (kv->p.n_batch <= 0 || kv->p.n_batch > kv->p.n_ctx) kv->p.n_batch = kv->p.n_ctx;
    if (kv->p.type_v == LV_KV_SAME) kv->p.type_v = p->type;
    if (!kv_type_valid(kv->p.type) || !kv_type_valid(kv->p.type_v)) {
        lv_free(kv);
        return lv_error(LV_ERR_INVALID_ARG, "kv cache: unknown type (keys %d, values %d)", (int)p->type, (int)kv->p.type_v);
    }
    if ((lv_kv_quantized(kv->p.type) && p->head_dim_k % LV_KV_QBLOCK) || (lv_kv_quantized(kv->p.type_v) && p->head_dim_v % LV_KV_QBLOCK)) {
        lv_free(kv);
        return lv_error(LV_ERR_INVALID_ARG, "kv cache: a %s cache needs head dims that are multiples of %d (keys %lld, values %lld)",
                        lv_kv_type_name(lv_kv_quantized(kv->p.type) ? kv->p.type : kv->p.type_v), LV_KV_QBLOCK, (long long)p->head_dim_k,
                        (long long)p->head_dim_v);
    }
    if (p->head_dim_k > 1024 || p->head_dim_v > 1024) {
        lv_free(kv);
        return lv_error(LV_ERR_INVALID_ARG, "kv cache: head dims %lld / %lld: at most 1024", (long long)p->head_dim_k, (long long)p->head_dim_v);
    }
    kv->krow = lv_kv_row_bytes(kv->p.type, p->head_dim_k);
    kv->vrow = lv_kv_row_bytes(kv->p.type_v, p->head_dim_v);
    kv->selt = kv->p.type == LV_KV_F32 ? 4 : 2;
    kv->n_pools = p->n_layer * p->n_head_kv;
    const int64_t n_streams = p->n_seq_max * kv->n_pools;
    const int64_t P = p->page_size, Dk = p->head_dim_k;
    lv_status st = LV_ERR_NOMEM;
    kv->pools = lv_calloc((size_t)kv->n_pools, sizeof(kv_pool));
    kv->streams = lv_calloc((size_t)n_streams, sizeof(kv_stream));
    kv->seq_len = lv_calloc((size_t)p->n_seq_max, sizeof(int64_t));
    kv->seq_max_pos = lv_mallocn((size_t)p->n_seq_max, sizeof(int32_t));
    kv->txn_n_new = lv_calloc((size_t)p->n_seq_max, sizeof(int64_t));
    kv->txn_last_pos = lv_calloc((size_t)p->n_seq_max, sizeof(int32_t));
    kv->txn_old_pages = lv_calloc((size_t)n_streams, sizeof(int64_t));
    kv->pruned = lv_calloc((size_t)p->n_seq_max, sizeof(kv_pruned));
    if (!kv->pruned ||
        !kv->pools || !kv->streams || !kv->seq_len || !kv->seq_max_pos || !kv->txn_n_new || !kv->txn_last_pos || !kv->txn_old_pages)
        goto fail;
    if (p->n_rs_layer < 0 || p->rs_floats < 0 || (p->n_rs_layer > 0 && p->rs_floats == 0)) {
        st = lv_error(LV_ERR_INVALID_ARG, "kv cache: invalid recurrent state shape");
        goto fail;
    }
    if (p->n_rs_layer > 0) {
        int64_t n;
        if (lv_mul_ovf_i64(p->n_seq_max * p->n_rs_layer * 2, p->rs_floats, &n) || (uint64_t)n > SIZE_MAX / 8) {
            st = lv_error(LV_ERR_INVALID_ARG, "kv cache: the recurrent state of %lld sequences does not fit in memory", (long long)p->n_seq_max);
            goto fail;
        }
        kv->rs_size = (size_t)n * sizeof(float);
        kv->rs = lv_big_alloc(kv->rs_size);
        kv->rs_cur = lv_calloc((size_t)p->n_seq_max, 1);
        kv->rs_empty = lv_calloc((size_t)p->n_seq_max, 1);
        kv->rs_dirty = lv_calloc((size_t)(p->n_seq_max * p->n_rs_layer), 1);
        if (!kv->rs || !kv->rs_cur || !kv->rs_empty || !kv->rs_dirty) goto fail;
    }

    /* policies and pool sizes */
    int64_t total = 0, n_ids = 0;
    for (int64_t i = 0; i < kv->n_pools; i++) {
        kv_pool *pl = &kv->pools[i];
        lv_kv_head_policy pol = {0};
        if (p->policies) pol = p->policies[i];
        if (pol.kind == LV_MASK_SINK_WINDOW && (pol.sink < 0 || pol.window < 1)) {
            st = lv_error(LV_ERR_INVALID_ARG, "kv cache: sink %d / window %d invalid (window >= 1)", pol.sink, pol.window);
            goto fail;
        }
        if (pol.kind == LV_MASK_BLOCK_STRIDED &&
            (pol.block < P || pol.block % P != 0 || pol.local_blocks < 1 || pol.vert_stride < 1)) {
            st = lv_error(LV_ERR_INVALID_ARG, "kv cache: block-strided layers need a block size that is a multiple of the page size %lld "
                          "(block %d, local blocks %d, vertical stride %d)", (long long)P, pol.block, pol.local_blocks, pol.vert_stride);
            goto fail;
        }
        if (pol.kind > LV_MASK_BLOCK_STRIDED) {
            st = lv_error(LV_ERR_INVALID_ARG, "kv cache: unknown policy %d", pol.kind);
            goto fail;
        }
        if (pol.kind != LV_MASK_CAUSAL) pol.stats = false;
        pl->pol = pol;
        pl->n_pages = pool_pages(p, &pol);
        const int64_t page_bytes = page_bytes_of(kv, pol.stats) + 6 * P + 64; /* with every form's positions, and alignment */
        int64_t bytes;
        if (lv_mul_ovf_i64(page_bytes, pl->n_pages, &bytes) || lv_add_ovf_i64(total, bytes, &total) || (uint64_t)total > SIZE_MAX / 2) {
            st = lv_error(LV_ERR_INVALID_ARG, "kv cache: %lld tokens x %lld layers x %lld heads does not fit in memory", (long long)p->n_ctx,
                          (long long)p->n_layer, (long long)p->n_head_kv);
            goto fail;
        }
        total += pool_bytes_of(kv, pl->n_pages, pol.stats) - bytes; /* exactly (the check above bounds it) */
        n_ids += pl->n_pages * (1 + p->n_seq_max); /* free stack + every sequence's page table */
    }
    kv->big_size = (size_t)total;
    kv->big = lv_big_alloc(kv->big_size);
    kv->ids = lv_mallocn((size_t)n_ids, sizeof(int32_t));
    if (!kv->big || !kv->ids) goto fail;
    uint8_t *b = kv->big;
    int32_t *ids = kv->ids;
    for (int64_t i = 0; i < kv->n_pools; i++) {
        kv_pool *pl = &kv->pools[i];
        const int64_t n = pl->n_pages;
        pl->k = b;
        b += align64(n * P * kv->krow);
        pl->v = b;
        b += align64(n * P * kv->vrow);
        pl->pbase = (int32_t *)b;
        b += align64(n * 4);
        pl->pmode = b;
        b += align64(n);
        pl->poff = (uint16_t *)b;
        b += align64(n * P * 2);
        pl->pwide = (int32_t *)b;
        b += align64(n * P * 4);
        if (pl->pol.stats) {
            pl->stats = b;
            b += pl->n_pages * lp_per_page(P) * 2 * Dk * (int64_t)kv->selt;
        }
        pl->free_ids = ids;
        ids += pl->n_pages;
        for (int64_t s = 0; s < p->n_seq_max; s++) {
            kv->streams[s * kv->n_pools + i].pages = ids;
            ids += pl->n_pages;
        }
    }
    if (p->stats_group < 0 || p->stats_group > (1 << 20)) {
        st = lv_error(LV_ERR_INVALID_ARG, "kv cache: statistics group of %lld pages is invalid", (long long)p->stats_group);
        goto fail;
    }
    if (p->stats_group > 0) { /* group statistics for every stream that keeps statistics */
        size_t total_g = 0;
        for (int64_t i = 0; i < kv->n_pools; i++)
            if (kv->pools[i].pol.stats)
                total_g += (size_t)(cdiv(kv->pools[i].n_pages, p->stats_group) * 2 * Dk) * kv->selt * (size_t)p->n_seq_max;
        if (total_g) {
            kv->gbig_size = total_g;
            kv->gbig = lv_big_alloc(total_g);
            if (!kv->gbig) {
                st = LV_ERR_NOMEM;
                goto fail;
            }
            uint8_t *g = kv->gbig;
            for (int64_t i = 0; i < kv->n_pools; i++) {
                if (!kv->pools[i].pol.stats) continue;
                const size_t per = (size_t)(cdiv(kv->pools[i].n_pages, p->stats_group) * 2 * Dk) * kv->selt;
                for (int64_t s = 0; s < p->n_seq_max; s++, g += per) kv->streams[s * kv->n_pools + i].gstats = g;
            }
        }
    }
    { /* rollback snapshots of the streams that keep statistics */
        int64_t n_snap = 0;
        for (int64_t i = 0; i < kv->n_pools; i++) n_snap += kv->pools[i].pol.stats ? p->n_seq_max : 0;
        if (n_snap) {
            const size_t per = (size_t)(4 * Dk) * kv->selt;
            kv->snaps = lv_mallocn((size_t)n_snap, per);
            if (!kv->snaps) {
                st = LV_ERR_NOMEM;
                goto fail;
            }
            uint8_t *sn = kv->snaps;
            for (int64_t i = 0; i < kv->n_pools; i++) {
                if (!kv->pools[i].pol.stats) continue;
                for (int64_t s = 0; s < p->n_seq_max; s++, sn += per) kv->streams[s * kv->n_pools + i].snap = sn;
            }
        }
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
    lv_big_free(kv->gbig, kv->gbig_size);
    lv_free(kv->snaps);
    lv_free(kv->pools);
    lv_free(kv->streams);
    lv_free(kv->seq_len);
    lv_free(kv->seq_max_pos);
    lv_free(kv->ids);
    lv_free(kv->txn_n_new);
    lv_free(kv->txn_last_pos);
    lv_free(kv->txn_old_pages);
    lv_big_free(kv->rs, kv->rs_size);
    lv_free(kv->rs_cur);
    lv_free(kv->rs_empty);
    lv_free(kv->rs_dirty);
    for (int64_t s = 0; kv->pruned && s < kv->p.n_seq_max; s++) lv_free(kv->pruned[s].r);
    lv_free(kv->pruned);
    lv_free(kv);
}

void lv_kv_clear(lv_kv *kv) {
    LV_ASSERT(!kv->in_txn);
    for (int64_t i = 0; i < kv->n_pools; i++) {
        kv_pool *pl = &kv->pools[i];
        for (int64_t j = 0; j < pl->n_pages; j++) pl->free_ids[j] = (int32_t)(pl->n_pages - 1 - j); /* pop 0, 1, 2, ... */
        pl->n_free = pl->n_pages;
    }
    for (int64_t i = 0; i < kv->p.n_seq_max * kv->n_pools; i++) {
        kv->streams[i].n_pages = 0;
        kv->streams[i].n_stored = 0;
        kv->streams[i].bs_cursor = 0;
    }
    for (int64_t s = 0; s < kv->p.n_seq_max; s++) {
        kv->seq_len[s] = 0;
        kv->seq_max_pos[s] = -1;
        if (kv->rs_empty) kv->rs_empty[s] = 1;
        kv->pruned[s].n = 0;
    }
    kv->total_tokens = 0;
}

/* -------------------------------------------------------------------------------------------
 * recurrent state
 * ----------------------------------------------------------------------------------------- */

void lv_kv_state(lv_kv *kv, int64_t seq, int64_t rl, const float **src, float **dst) {
    LV_ASSERT(kv->in_txn && kv->txn_n_new[seq] > 0 && rl >= 0 && rl < kv->p.n_rs_layer);
    const int cur = kv->rs_cur[seq];
    uint8_t *dirty = &kv->rs_dirty[seq * kv->p.n_rs_layer + rl];
    *dst = rs_buf(kv, seq, rl, !cur);
    if (*dirty) {
        *src = *dst;
    } else {
        *src = kv->rs_empty[seq] ? NULL : rs_buf(kv, seq, rl, cur);
        *dirty = 1;
    }
}

int64_t lv_kv_state_bytes_per_seq(const lv_kv *kv) { return kv->p.n_rs_layer * kv->p.rs_floats * (int64_t)sizeof(float); }

/* commit: the sequences this transaction wrote switch to the written buffers (every recurrent
 * layer of a sequence that appended tokens was written: the forward pass runs all layers) */
static void rs_commit(lv_kv *kv) {
    for (int64_t s = 0; s < kv->p.n_seq_max; s++) {
        if (!kv->txn_n_new[s]) continue;
        uint8_t *dirty = &kv->rs_dirty[s * kv->p.n_rs_layer];
        for (int64_t rl = 0; rl < kv->p.n_rs_layer; rl++) LV_ASSERT(dirty[rl]);
        memset(dirty, 0, (size_t)kv->p.n_rs_layer);
        kv->rs_cur[s] ^= 1;
        kv->rs_empty[s] = 0;
    }
}

/* -------------------------------------------------------------------------------------------
 * transactions
 * ----------------------------------------------------------------------------------------- */

static void snapshot(const lv_kv *kv, const kv_pool *pl, const kv_stream *st, bool restore);

lv_status lv_kv_reserve(lv_kv *kv, const int64_t *n_new, const int32_t *last_pos) { return lv_kv_reserve_pos(kv, n_new, NULL, last_pos); }

lv_status lv_kv_reserve_pos(lv_kv *kv, const int64_t *n_new, const int32_t *first_pos, const int32_t *last_pos) {
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
    for (int64_t s = 0; s < kv->p.n_seq_max; s++)
        if (n_new[s] > kv->p.n_batch)
            return lv_error(LV_ERR_INVALID_ARG, "kv cache: %lld tokens for sequence %lld in one step, more than n_batch %lld", (long long)n_new[s],
                            (long long)s, (long long)kv->p.n_batch);
    for (int64_t ip = 0; ip < kv->n_pools; ip++) {
        int64_t need = 0;
        for (int64_t s = 0; s < kv->p.n_seq_max; s++) {
            if (!n_new[s]) continue;
            const kv_stream *st = &kv->streams[s * kv->n_pools + ip];
            need += cdiv(st->n_stored + n_new[s], P) - st->n_pages;
        }
        if (need > kv->pools[ip].n_free)
            return lv_error(LV_ERR_CONTEXT_FULL, "context full: %lld more KV pages needed in layer %lld head %lld, %lld free (raise -c/--ctx-size)",
                            (long long)need, (long long)(ip / kv->p.n_head_kv), (long long)(ip % kv->p.n_head_kv), (long long)kv->pools[ip].n_free);
    }
    for (int64_t s = 0; s < kv->p.n_seq_max; s++) {
        kv->txn_n_new[s] = n_new[s];
        kv->txn_last_pos[s] = last_pos ? last_pos[s] : -1;
        if (!n_new[s]) continue;
        /* the positions' form: the tokens' positions increase, from f to l (without first_pos: from
         * after the sequence's largest, as a caller appending in order has them; lv_kv_write widens
         * a page's form when a position proves it wrong, lv_kv_write_slot cannot) */
        const int64_t f = first_pos ? first_pos[s] : (int64_t)kv->seq_max_pos[s] + 1;
        const int64_t l = last_pos ? LV_MAX(last_pos[s], f) : f + n_new[s] - 1;
        const bool run = l - f + 1 == n_new[s]; /* n_new increasing positions in [f, l]: consecutive */
        for (int64_t ip = 0; ip < kv->n_pools; ip++) {
            kv_stream *st = &kv->streams[s * kv->n_pools + ip];
            kv_pool *pl = &kv->pools[ip];
            kv->txn_old_pages[s * kv->n_pools + ip] = st->n_pages;
            if (pl->stats) snapshot(kv, pl, st, false);
            const int64_t j0 = st->n_stored % P;
            if (j0) { /* the partly filled page: keep its form if it holds f .. l, else widen it */
                const int64_t pg = st->pages[st->n_stored / P];
                const uint8_t mode = pl->pmode[pg];
                const int32_t base = pl->pbase[pg];
                st->txn_pmode = mode;
                /* f .. l fit offsets from the base (and so do a run's slot indices) */
                const bool off16 = page_holds(KV_POS_OFF16, base, j0, (int32_t)f) && page_holds(KV_POS_OFF16, base, j0, (int32_t)l) &&
                                   (mode == KV_POS_OFF16 || P - 1 <= UINT16_MAX);
                const bool keep = mode == KV_POS_WIDE || (mode == KV_POS_RUN && run && page_holds(KV_POS_RUN, base, j0, (int32_t)f)) ||
                                  (mode == KV_POS_OFF16 && off16);
                if (!keep) page_reform(pl, P, pg, off16 ? KV_POS_OFF16 : KV_POS_WIDE);
            }
            const int64_t want = cdiv(st->n_stored + n_new[s], P);
            while (st->n_pages < want) {
                LV_ASSERT(pl->n_free > 0);
                const int32_t pg = pl->free_ids[--pl->n_free];
                const int64_t k = st->n_pages * P - st->n_stored; /* the first token it takes */
                page_start(pl, pg, (int32_t)(run ? f + k : f), run, (int32_t)l);
                st->pages[st->n_pages++] = pg;
            }
        }
    }
    kv->in_txn = true;
    return LV_OK;
}

static inline uint8_t *stats_at(const lv_kv *kv, const kv_pool *pl, int32_t page, int64_t lp) {
    return pl->stats + ((int64_t)page * lp_per_page(kv->p.page_size) + lp) * 2 * kv->p.head_dim_k * (int64_t)kv->selt;
}

/* The statistics a transaction can change without starting them afresh: those of the logical page
 * and of the group the stream's next token falls in, when partly filled. Saved at reserve
 * (restore false) and put back by a rollback (restore true), so a rollback leaves them exactly as
 * they were (a quantized cache could not recompute them from its keys: they come from the keys
 * before quantization). */
static void snapshot(const lv_kv *kv, const kv_pool *pl, const kv_stream *st, bool restore) {
    const int64_t P = kv->p.page_size, n = st->n_stored;
    const size_t bytes = (size_t)(2 * kv->p.head_dim_k) * kv->selt;
    if (n % LV_KV_LOGICAL_PAGE && n % P) {
        uint8_t *live = stats_at(kv, pl, st->pages[n / P], (n % P) / LV_KV_LOGICAL_PAGE);
        if (restore) memcpy(live, st->snap, bytes);
        else memcpy(st->snap, live, bytes);
    }
    const int64_t gslots = P * kv->p.stats_group;
    if (st->gstats && n % gslots) {
        uint8_t *live = st->gstats + (size_t)(n / gslots) * bytes;
        if (restore) memcpy(live, st->snap + bytes, bytes);
        else memcpy(st->snap + bytes, live, bytes);
    }
}

static inline int32_t stored_pos(const lv_kv *kv, const kv_pool *pl, const kv_stream *st, int64_t slot) {
    const int64_t P = kv->p.page_size;
    return page_pos(pl, P, st->pages[slot / P], slot % P);
}

/* remove page index i of a stream (returning it to the pool) */
static void drop_page(kv_pool *pl, kv_stream *st, int64_t i, int64_t P) {
    pl->free_ids[pl->n_free++] = st->pages[i];
    memmove(st->pages + i, st->pages + i + 1, (size_t)(st->n_pages - i - 1) * sizeof(int32_t));
    st->n_pages--;
    st->n_stored -= P;
}

/* After a commit: return the pages no later query of this sequence can see. */
static void evict(lv_kv *kv, kv_pool *pl, kv_stream *st, int32_t newest) {
    const int64_t P = kv->p.page_size;
    const lv_kv_head_policy *pol = &pl->pol;
    if (pol->kind == LV_MASK_SINK_WINDOW) {
        /* pages holding a sink token stay; after them, a page is dead once its newest token is
         * outside the window of the next query (newest + 1): pos <= newest + 1 - window */
        const int64_t first = cdiv(pol->sink, P);
        const int64_t limit = (int64_t)newest + 1 - pol->window;
        while (first < st->n_pages - 1) { /* never the page being filled */
            const int32_t last_pos = stored_pos(kv, pl, st, first * P + P - 1);
            if (last_pos > limit) break;
            drop_page(pl, st, first, P);
        }
    } else if (pol->kind == LV_MASK_BLOCK_STRIDED) {
        /* the next query block is qb = (newest + 1) / block; key block kb stays visible to it and to
         * every later block iff it is a stride block or qb - kb < local_blocks */
        const int64_t qb = ((int64_t)newest + 1) / pol->block;
        while (st->bs_cursor < st->n_pages - 1) {
            const int64_t i = st->bs_cursor;
            const int64_t kb_last = stored_pos(kv, pl, st, i * P + P - 1) / pol->block;
            if (qb - kb_last < pol->local_blocks) break; /* still local: so are the pages after it */
            bool alive = false;
            for (int64_t j = 0; j < P && !alive; j++) {
                const int64_t kb = stored_pos(kv, pl, st, i * P + j) / pol->block;
                alive = (kb + 1) % pol->vert_stride == 0;
            }
            if (alive) st->bs_cursor++;
            else drop_page(pl, st, i, P);
        }
    }
}

void lv_kv_commit(lv_kv *kv) {
    LV_ASSERT(kv->in_txn);
    for (int64_t s = 0; s < kv->p.n_seq_max; s++) {
        const int64_t n = kv->txn_n_new[s];
        if (!n) continue;
        for (int64_t ip = 0; ip < kv->n_pools; ip++) {
            kv_stream *st = &kv->streams[s * kv->n_pools + ip];
            st->n_stored += n;
            evict(kv, &kv->pools[ip], st, kv->txn_last_pos[s]);
        }
        kv->seq_len[s] += n;
        kv->seq_max_pos[s] = kv->txn_last_pos[s];
        kv->total_tokens += n;
    }
    if (kv->rs) rs_commit(kv);
    kv->in_txn = false;
}

/* recompute the key statistics of the partly filled last logical page and group of a stream
 * (after a truncation they must describe only the tokens that stayed) */
static void restat(const lv_kv *kv, const kv_pool *pl, const kv_stream *st);

void lv_kv_rollback(lv_kv *kv) {
    LV_ASSERT(kv->in_txn);
    for (int64_t s = 0; s < kv->p.n_seq_max; s++) {
        if (!kv->txn_n_new[s]) continue;
        for (int64_t ip = 0; ip < kv->n_pools; ip++) {
            kv_stream *st = &kv->streams[s * kv->n_pools + ip];
            kv_pool *pl = &kv->pools[ip];
            const int64_t old = kv->txn_old_pages[s * kv->n_pools + ip];
            while (st->n_pages > old) pl->free_ids[pl->n_free++] = st->pages[--st->n_pages];
            if (st->n_stored % kv->p.page_size) /* the partly filled page's form as it was (its slots are intact in it) */
                pl->pmode[st->pages[st->n_stored / kv->p.page_size]] = st->txn_pmode;
            if (pl->stats) snapshot(kv, pl, st, true);
        }
        if (kv->rs) memset(&kv->rs_dirty[s * kv->p.n_rs_layer], 0, (size_t)kv->p.n_rs_layer); /* the committed state stays */
    }
    kv->in_txn = false;
}

int64_t lv_kv_seq_len(const lv_kv *kv, int64_t seq) { return kv->seq_len[seq]; }
int32_t lv_kv_seq_max_pos(const lv_kv *kv, int64_t seq) { return kv->seq_max_pos[seq]; }
const lv_kv_head_policy *lv_kv_policy(const lv_kv *kv, int64_t layer, int64_t head) { return &pool_at(kv, layer, head)->pol; }

/* -------------------------------------------------------------------------------------------
 * writing, key statistics
 * ----------------------------------------------------------------------------------------- */

/* the channel-wise min and max at s (2 Dk elements of the statistics' type) widened by [lo, hi]
 * (a key: lo = hi = k), or set to it. f16 statistics round to nearest, which is monotonic: the f16
 * minimum of f32 keys is the minimum of the keys rounded to f16, i.e. an f16 cache's statistics. */
static void minmax_add(const lv_kv *kv, uint8_t *s, bool fresh, const float *lo, const float *hi) {
    const int64_t Dk = kv->p.head_dim_k;
    if (kv->selt == 4) {
        float *mn = (float *)s, *mx = mn + Dk;
        for (int64_t d = 0; d < Dk; d++) {
            mn[d] = fresh || lo[d] < mn[d] ? lo[d] : mn[d];
            mx[d] = fresh || hi[d] > mx[d] ? hi[d] : mx[d];
        }
        return;
    }
    float m[2 * 1024];
    LV_ASSERT(Dk <= 1024);
    if (fresh) {
        memcpy(m, lo, (size_t)Dk * sizeof(float));
        memcpy(m + Dk, hi, (size_t)Dk * sizeof(float));
    } else {
        lv_to_float_row(LV_TYPE_F16, s, m, 2 * Dk);
        for (int64_t d = 0; d < Dk; d++) {
            m[d] = lo[d] < m[d] ? lo[d] : m[d];
            m[Dk + d] = hi[d] > m[Dk + d] ? hi[d] : m[Dk + d];
        }
    }
    to_f16(m, s, 2 * Dk);
}

/* k: the key as the statistics take it: as stored by a float cache (an f16 cache's rounding
 * included), before quantization by a quantized one (LServe keeps exact statistics) */
static void stats_add(const lv_kv *kv, const kv_pool *pl, const kv_stream *st, int64_t slot, const float *k) {
    const int64_t P = kv->p.page_size, Dk = kv->p.head_dim_k;
    /* a fresh logical page (group) starts from its first key */
    minmax_add(kv, stats_at(kv, pl, st->pages[slot / P], (slot % P) / LV_KV_LOGICAL_PAGE), slot % LV_KV_LOGICAL_PAGE == 0, k, k);
    if (st->gstats) {
        const int64_t gslots = P * kv->p.stats_group;
        minmax_add(kv, st->gstats + (size_t)(slot / gslots * 2 * Dk) * kv->selt, slot % gslots == 0, k, k);
    }
}

/* the key of a stored slot as bounds [lo, hi] of the key the statistics saw: the stored key itself
 * for a float cache; for a quantized one the dequantized key widened by one quantization step
 * (q8_0 rounds to within 0.57 of a step, the f16 rounding of the statistic adds at most 0.07), by
 * 1.25 steps for q4_0 (within a step: the +8 end is clamped to 7) */
static void key_bounds(const lv_kv *kv, const kv_pool *pl, const kv_stream *st, int64_t slot, float *lo, float *hi) {
    const int64_t P = kv->p.page_size, Dk = kv->p.head_dim_k, j = slot % P;
    const uint8_t *page = pl->k + (int64_t)st->pages[slot / P] * P * kv->krow;
    const lv_kv_type t = kv->p.type;
    if (lv_kv_quantized(t)) {
        const int64_t qrow = lv_kv_qrow_bytes(t, Dk);
        const uint16_t *sc = (const uint16_t *)(page + P * qrow);
        for (int64_t d = 0; d < Dk; d++) {
            const float x = lv_kv_qelt(t, page, sc, (int32_t)P, j, d, Dk);
            const float step = fabsf(lv_fp16_to_fp32(sc[(d / LV_KV_QBLOCK) * P + j])) * (t == LV_KV_Q4_0 ? 1.25f : 1.0f);
            lo[d] = x - step;
            hi[d] = x + step;
        }
        return;
    }
    for (int64_t d = 0; d < Dk; d++) {
        const int64_t i = d * P + j;
        lo[d] = hi[d] = t == LV_KV_F32 ? ((const float *)page)[i] : lv_fp16_to_fp32(((const uint16_t *)page)[i]);
    }
}

static void restat(const lv_kv *kv, const kv_pool *pl, const kv_stream *st) {
    float lo[1024], hi[1024];
    const int64_t P = kv->p.page_size, Dk = kv->p.head_dim_k, n = st->n_stored;
    LV_ASSERT(Dk <= 1024);
    /* the partly filled logical page, from its keys */
    for (int64_t slot = n / LV_KV_LOGICAL_PAGE * LV_KV_LOGICAL_PAGE; slot < n; slot++) {
        key_bounds(kv, pl, st, slot, lo, hi);
        minmax_add(kv, stats_at(kv, pl, st->pages[slot / P], (slot % P) / LV_KV_LOGICAL_PAGE), slot % LV_KV_LOGICAL_PAGE == 0, lo, hi);
    }
    /* the partly filled group, from its logical pages' statistics (exact: a min of mins) */
    const int64_t gslots = P * kv->p.stats_group;
    if (!st->gstats || n % gslots == 0) return;
    uint8_t *g = st->gstats + (size_t)(n / gslots * 2 * Dk) * kv->selt;
    for (int64_t slot = n / gslots * gslots; slot < n; slot += LV_KV_LOGICAL_PAGE) {
        const uint8_t *ls = stats_at(kv, pl, st->pages[slot / P], (slot % P) / LV_KV_LOGICAL_PAGE);
        float m[2 * 1024];
        if (kv->selt == 4) memcpy(m, ls, (size_t)(2 * Dk) * sizeof(float));
        else lv_to_float_row(LV_TYPE_F16, ls, m, 2 * Dk);
        minmax_add(kv, g, slot % gslots == 0, m, m + Dk);
    }
}

/* the row of D floats x as quantized blocks (type t) at quants q (the row's) and scales s (block b at
 * s[b * P]), rounded as llama.cpp writes its cache: q8_0 as its x86 from_float, q4_0 as ggml's reference */
static void quantize_row(lv_kv_type t, const float *x, int64_t D, int8_t *q, uint16_t *s, int64_t P) {
    if (t == LV_KV_Q4_0) {
        lv_block_q4_0 b4[1024 / LV_QK4_0];
        lv_quantize_q4_0_ref(x, b4, D);
        for (int64_t b = 0; b < D / LV_QK4_0; b++) {
            memcpy(q + b * 16, b4[b].qs, 16);
            s[b * P] = b4[b].d;
        }
        return;
    }
    lv_block_q8_0 blk[1024 / LV_QK8_0];
    lv_qtype_ops_get(LV_TYPE_Q8_0, lv_simd_active())->from_float(x, blk, D); /* lv_quantize_q8_0_act, bit for bit */
    for (int64_t b = 0; b < D / LV_QK8_0; b++) {
        memcpy(q + b * LV_QK8_0, blk[b].qs, LV_QK8_0);
        s[b * P] = blk[b].d;
    }
}

static void write_slot(lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t k_new, const float *k, const float *v, int32_t pos,
                       bool one_writer) {
    const kv_stream *st = stream_at(kv, seq, layer, head);
    kv_pool *pl = &kv->pools[layer * kv->p.n_head_kv + head];
    const int64_t P = kv->p.page_size, Dk = kv->p.head_dim_k, Dv = kv->p.head_dim_v;
    const int64_t slot = st->n_stored + k_new;
    LV_ASSERT(k_new >= 0 && slot / P < st->n_pages);
    const int64_t page = st->pages[slot / P], j = slot % P;
    uint8_t *page_k = pl->k + page * P * kv->krow; /* (Dk, P), or quants and scales */
    uint8_t *page_v = pl->v + page * P * kv->vrow;
    if (one_writer) page_set_pos(pl, P, page, j, pos);
    else page_put_pos(pl, P, page, j, pos);
    const lv_kv_type kt = kv->p.type, vt = kv->p.type_v;
    if (vt == LV_KV_F32) memcpy(page_v + j * Dv * 4, v, (size_t)Dv * 4);
    else if (vt == LV_KV_F16) to_f16(v, page_v + j * Dv * 2, Dv);
    else {
        const int64_t qrow = lv_kv_qrow_bytes(vt, Dv);
        quantize_row(vt, v, Dv, (int8_t *)page_v + j * qrow, (uint16_t *)(page_v + P * qrow) + j, P);
    }
    if (kt == LV_KV_F32) {
        for (int64_t d = 0; d < Dk; d++) ((float *)page_k)[d * P + j] = k[d];
    } else if (lv_kv_quantized(kt)) {
        const int64_t qrow = lv_kv_qrow_bytes(kt, Dk);
        quantize_row(kt, k, Dk, (int8_t *)page_k + j * qrow, (uint16_t *)(page_k + P * qrow) + j, P);
    } else {
        uint16_t kh[1024];
        LV_ASSERT(Dk <= 1024);
        to_f16(k, kh, Dk);
        for (int64_t d = 0; d < Dk; d++) ((uint16_t *)page_k)[d * P + j] = kh[d];
    }
}

void lv_kv_write_slot(lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t k_new, const float *k, const float *v, int32_t pos) {
    write_slot(kv, seq, layer, head, k_new, k, v, pos, false);
}

void lv_kv_write_stats(lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t k_new, const float *k) {
    const kv_stream *st = stream_at(kv, seq, layer, head);
    const kv_pool *pl = pool_at(kv, layer, head);
    if (!pl->stats) return;
    const int64_t slot = st->n_stored + k_new, Dk = kv->p.head_dim_k;
    if (kv->p.type != LV_KV_F16) { /* f32: the key as stored; quantized: before quantization (LServe keeps exact statistics) */
        stats_add(kv, pl, st, slot, k);
        return;
    }
    uint16_t kh[1024]; /* f16: the key as stored, the cache rounded it */
    float kr[1024];
    LV_ASSERT(Dk <= 1024);
    to_f16(k, kh, Dk);
    lv_to_float_row(LV_TYPE_F16, kh, kr, Dk);
    stats_add(kv, pl, st, slot, kr);
}

void lv_kv_write(lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t k_new, const float *k, const float *v, int32_t pos) {
    write_slot(kv, seq, layer, head, k_new, k, v, pos, true);
    lv_kv_write_stats(kv, seq, layer, head, k_new, k);
}

/* -------------------------------------------------------------------------------------------
 * reading: spans, masks, selection
 * ----------------------------------------------------------------------------------------- */

int64_t lv_kv_max_spans(const lv_kv *kv) {
    int64_t m = 0;
    for (int64_t i = 0; i < kv->n_pools; i++) m = kv->pools[i].n_pages > m ? kv->pools[i].n_pages : m;
    return m;
}

int64_t lv_kv_n_pages(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t n_new_visible) {
    const kv_stream *st = stream_at(kv, seq, layer, head);
    return cdiv(st->n_stored + n_new_visible, kv->p.page_size);
}

static void span_of_page(const lv_kv *kv, const kv_pool *pl, const kv_stream *st, int64_t i, int64_t n_tokens, lv_attn_span *sp) {
    const int64_t P = kv->p.page_size;
    const int64_t row = (int64_t)st->pages[i] * P;
    const uint8_t *k = pl->k + row * kv->krow, *v = pl->v + row * kv->vrow;
    sp->k = k;
    sp->v = v;
    sp->ks = lv_kv_quantized(kv->p.type) ? (const uint16_t *)(k + P * lv_kv_qrow_bytes(kv->p.type, kv->p.head_dim_k)) : NULL;
    sp->vs = lv_kv_quantized(kv->p.type_v) ? (const uint16_t *)(v + P * lv_kv_qrow_bytes(kv->p.type_v, kv->p.head_dim_v)) : NULL;
    const int32_t page = st->pages[i];
    sp->pos = pl->pmode[page] == KV_POS_WIDE ? pl->pwide + row : NULL;
    sp->pos16 = pl->pmode[page] == KV_POS_OFF16 ? pl->poff + row : NULL;
    sp->pos0 = pl->pbase[page];
    sp->n = (int32_t)LV_MIN(P, n_tokens - i * P);
    sp->ldk = (int32_t)P;
}

int lv_kv_spans(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t n_new_visible, lv_attn_span *spans, lv_attn_mask *mask) {
    const kv_stream *st = stream_at(kv, seq, layer, head);
    const kv_pool *pl = pool_at(kv, layer, head);
    const int64_t n = st->n_stored + n_new_visible;
    LV_ASSERT(n <= st->n_pages * kv->p.page_size);
    int ns = 0;
    if (spans)
        for (int64_t i = 0; i * kv->p.page_size < n; i++) span_of_page(kv, pl, st, i, n, &spans[ns++]);
    if (mask) {
        memset(mask, 0, sizeof(*mask));
        mask->kind = pl->pol.kind;
        mask->window = pl->pol.window;
        mask->block = pl->pol.block;
        mask->local_blocks = pl->pol.local_blocks;
        mask->vert_stride = pl->pol.vert_stride;
        /* the first `sink` tokens are never evicted, so the token stored at index `sink` is the first
         * stored non-sink: every stored key before it is a sink */
        mask->sink_end = pl->pol.sink < n ? stored_pos(kv, pl, st, pl->pol.sink) : INT32_MAX;
    }
    return ns;
}

int lv_kv_spans_of_pages(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t n_new_visible, const int32_t *pages,
                         int n_pages, lv_attn_span *spans) {
    const kv_stream *st = stream_at(kv, seq, layer, head);
    const kv_pool *pl = pool_at(kv, layer, head);
    const int64_t n = st->n_stored + n_new_visible;
    for (int i = 0; i < n_pages; i++) span_of_page(kv, pl, st, pages[i], n, &spans[i]);
    return n_pages;
}

typedef struct page_score {
    float score;
    int32_t page;
} page_score;

/* a before b: higher score, then the older page */
static inline bool ps_before(const page_score *a, const page_score *b) {
    return a->score > b->score || (a->score == b->score && a->page < b->page);
}

/* move the k best of v[0, n) to the front (any order) */
static void ps_select(page_score *v, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const page_score pivot = v[(lo + hi) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (ps_before(&v[i], &pivot)) i++;
            while (ps_before(&pivot, &v[j])) j--;
            if (i <= j) {
                page_score t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

static int cmp_i32(const void *a, const void *b) {
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* heaps of page scores with the worst entry (by ps_before) at the root: restore the heap v[0, n)
 * below i */
static void ps_sift_down(page_score *v, int64_t n, int64_t i) {
    const page_score x = v[i];
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && ps_before(&v[c], &v[c + 1])) c++; /* the worse child */
        if (!ps_before(&x, &v[c])) break;
        v[i] = v[c];
        i = c;
    }
    v[i] = x;
}

/* the heap v[0, *n) holds at most cap: x enters if there is room or if it is before the root
 * (which it then replaces) */
static void ps_heap_offer(page_score *v, int64_t *n, int64_t cap, page_score x) {
    if (*n < cap) { /* sift up */
        int64_t i = (*n)++;
        while (i > 0 && ps_before(&v[(i - 1) / 2], &x)) {
            v[i] = v[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        v[i] = x;
        return;
    }
    if (!ps_before(&x, &v[0])) return;
    v[0] = x;
    ps_sift_down(v, cap, 0);
}

/* sort v[0, n) best first (ps_before), in place: heapsort (qsort may allocate) */
static void ps_sort(page_score *v, int64_t n) {
    for (int64_t i = n / 2 - 1; i >= 0; i--) ps_sift_down(v, n, i);
    for (int64_t end = n - 1; end > 0; end--) { /* the worst of v[0, end] to its end */
        const page_score t = v[0];
        v[0] = v[end];
        v[end] = t;
        ps_sift_down(v, end, 0);
    }
}

/* gs[h * n_groups + g] = (the Quest bound of query h over group g's statistics, g). A group's
 * minima are <= and its maxima >= those of each of its logical pages, and rounding to nearest is
 * monotonic (each product, each max, each sum of the same shape), so the bound as computed is >=
 * each of its pages' scores as computed by the same kernel. */
static void group_bounds(const lv_kv *kv, const kv_stream *st, const float *q, int64_t q_stride, int n_q, int64_t n_groups, page_score *gs) {
    const int64_t Dk = kv->p.head_dim_k;
    float best[64];
    for (int h0 = 0; h0 < n_q; h0 += 64) {
        const int nh = n_q - h0 < 64 ? n_q - h0 : 64;
        for (int64_t g = 0; g < n_groups; g++) {
            const uint8_t *s = st->gstats + (size_t)(g * 2 * Dk) * kv->selt;
            if (kv->selt == 4) lv_quest_page(q + h0 * q_stride, q_stride, nh, (const float *)s, 1, (int)Dk, best);
            else lv_quest_page_f16(q + h0 * q_stride, q_stride, nh, (const uint16_t *)s, 1, (int)Dk, best);
            for (int h = 0; h < nh; h++) gs[(h0 + h) * n_groups + g] = (page_score){best[h], (int32_t)g};
        }
    }
}

int lv_kv_select_pages_multi(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t n_new_visible, const float *q,
                             int64_t q_stride, int n_q, bool shared, int64_t k_pages, int32_t *pages_out, int64_t out_stride, void *scratch) {
    const kv_stream *st = stream_at(kv, seq, layer, head);
    const kv_pool *pl = pool_at(kv, layer, head);
    const int64_t P = kv->p.page_size, Dk = kv->p.head_dim_k;
    const int64_t n = st->n_stored + n_new_visible;
    const int64_t n_pages = cdiv(n, P);
    if (k_pages < 1) k_pages = 1;
    if (n_pages <= k_pages || !pl->stats) {
        for (int h = 0; h < n_q; h++)
            for (int64_t i = 0; i < n_pages; i++) pages_out[h * out_stride + i] = (int32_t)i;
        return (int)n_pages;
    }
    /* score every page but the newest for every query: the max over its logical pages of the
     * Quest bound sum_d max(q_d kmax_d, q_d kmin_d); the statistics are read once for all queries */
    page_score *ps = scratch;
    float best[64];
    /* two levels: the groups' bounds first (the same bound over a group's statistics, which is
     * >= every page score of the group, also as rounded: see group_bounds) */
    const uint8_t *cand = NULL;
    const int64_t G = kv->p.stats_group;
    const int64_t n_groups = st->gstats ? cdiv(n_pages - 1, G) : 0;
    page_score *gs = ps + (int64_t)n_q * (n_pages - 1);
    if (st->gstats && kv->p.stats_group_exact && !shared && n_groups > 1) {
        /* the exact rule: the groups in decreasing order of their largest bound over the queries
         * (ties: the older group) are expanded one after the other, each expanded page scored for
         * every query (the statistics read once) and offered to that query's heap of its best
         * k - 1; it stops before group gi once every query holds k - 1 pages whose worst scores
         * more than that query's largest bound over groups gi, gi + 1, ... (suf below). A page not
         * scored lies in one of those groups, so it scores at most that bound, strictly less than
         * each page the query holds: every query gets exactly its exhaustive selection, ties included */
        LV_ASSERT(n_q <= 64);
        page_score *ord = gs + (int64_t)n_q * n_groups;
        float *suf = (float *)(ord + n_groups);
        group_bounds(kv, st, q, q_stride, n_q, n_groups, gs);
        for (int64_t g = 0; g < n_groups; g++) {
            float mx = gs[g].score;
            for (int h = 1; h < n_q; h++) mx = gs[h * n_groups + g].score > mx ? gs[h * n_groups + g].score : mx;
            ord[g] = (page_score){mx, (int32_t)g};
        }
        ps_sort(ord, n_groups);
        for (int h = 0; h < n_q; h++) {
            float run = -INFINITY;
            for (int64_t gi = n_groups - 1; gi >= 0; gi--) {
                const float b = gs[h * n_groups + ord[gi].page].score;
                run = b > run ? b : run;
                suf[h * n_groups + gi] = run;
            }
        }
        const int64_t kb = k_pages - 1;
        int64_t cnt[64] = {0};
        for (int64_t gi = 0; gi < n_groups; gi++) {
            bool done = true; /* v[0] of a full heap is its worst page */
            for (int h = 0; h < n_q && done; h++)
                done = cnt[h] == kb && (kb == 0 || ps[h * (n_pages - 1)].score > suf[h * n_groups + gi]);
            if (done) break;
            const int64_t p0 = (int64_t)ord[gi].page * G, p1 = p0 + G < n_pages - 1 ? p0 + G : n_pages - 1;
            for (int64_t i = p0; i < p1; i++) {
                const uint8_t *s = stats_at(kv, pl, st->pages[i], 0);
                if (kv->selt == 4) lv_quest_page(q, q_stride, n_q, (const float *)s, (int)(P / LV_KV_LOGICAL_PAGE), (int)Dk, best);
                else lv_quest_page_f16(q, q_stride, n_q, (const uint16_t *)s, (int)(P / LV_KV_LOGICAL_PAGE), (int)Dk, best);
                for (int h = 0; h < n_q; h++) ps_heap_offer(ps + h * (n_pages - 1), &cnt[h], kb, (page_score){best[h], (int32_t)i});
            }
        }
        for (int h = 0; h < n_q; h++) {
            const page_score *v = ps + h * (n_pages - 1);
            int32_t *out = pages_out + h * out_stride;
            for (int64_t i = 0; i < kb; i++) out[i] = v[i].page;
            out[kb] = (int32_t)(n_pages - 1);
            qsort(out, (size_t)kb, sizeof(int32_t), cmp_i32);
        }
        return (int)k_pages;
    }
    /* the kept-groups rule: each query keeps its best groups by the bound; only pages of kept
     * groups are scored (the others score -inf for every query). (The exact rule with a shared
     * selection scores every page: exhaustive, hence exact too.) */
    if (st->gstats && !kv->p.stats_group_exact) {
        const int64_t keep = lv_kv_groups_kept(k_pages, G);
        if (n_groups > keep) {
            uint8_t *c = (uint8_t *)(gs + (int64_t)n_q * n_groups);
            memset(c, 0, (size_t)n_groups);
            group_bounds(kv, st, q, q_stride, n_q, n_groups, gs);
            for (int h = 0; h < n_q; h++) {
                ps_select(gs + h * n_groups, n_groups, keep);
                for (int64_t i = 0; i < keep; i++) c[gs[h * n_groups + i].page] = 1;
            }
            cand = c;
        }
    }
    for (int h0 = 0; h0 < n_q; h0 += 64) {
        const int nh = n_q - h0 < 64 ? n_q - h0 : 64;
        for (int64_t i = 0; i < n_pages - 1; i++) {
            if (cand && !cand[i / G]) {
                for (int h = 0; h < nh; h++) ps[(h0 + h) * (n_pages - 1) + i] = (page_score){-INFINITY, (int32_t)i};
                continue;
            }
            const uint8_t *s = stats_at(kv, pl, st->pages[i], 0);
            if (kv->selt == 4) lv_quest_page(q + h0 * q_stride, q_stride, nh, (const float *)s, (int)(P / LV_KV_LOGICAL_PAGE), (int)Dk, best);
            else lv_quest_page_f16(q + h0 * q_stride, q_stride, nh, (const uint16_t *)s, (int)(P / LV_KV_LOGICAL_PAGE), (int)Dk, best);
            for (int h = 0; h < nh; h++) ps[(h0 + h) * (n_pages - 1) + i] = (page_score){best[h], (int32_t)i};
        }
    }
    if (shared) { /* one selection: query 0's list takes the max over the queries, then is copied */
        for (int h = 1; h < n_q; h++)
            for (int64_t i = 0; i < n_pages - 1; i++)
                if (ps[h * (n_pages - 1) + i].score > ps[i].score) ps[i].score = ps[h * (n_pages - 1) + i].score;
        ps_select(ps, n_pages - 1, k_pages - 1);
        for (int64_t i = 0; i < k_pages - 1; i++) pages_out[i] = ps[i].page;
        pages_out[k_pages - 1] = (int32_t)(n_pages - 1);
        qsort(pages_out, (size_t)(k_pages - 1), sizeof(int32_t), cmp_i32);
        for (int h = 1; h < n_q; h++) memcpy(pages_out + h * out_stride, pages_out, (size_t)k_pages * sizeof(int32_t));
        return (int)k_pages;
    }
    /* per query the best k - 1, then the newest page; in increasing order so the spans follow the tokens */
    for (int h = 0; h < n_q; h++) {
        page_score *v = ps + h * (n_pages - 1);
        int32_t *out = pages_out + h * out_stride;
        ps_select(v, n_pages - 1, k_pages - 1);
        for (int64_t i = 0; i < k_pages - 1; i++) out[i] = v[i].page;
        out[k_pages - 1] = (int32_t)(n_pages - 1);
        qsort(out, (size_t)(k_pages - 1), sizeof(int32_t), cmp_i32);
    }
    return (int)k_pages;
}

size_t lv_kv_select_scratch_bytes(const lv_kv *kv, int n_q) {
    const int64_t S = lv_kv_max_spans(kv), G = kv->p.stats_group;
    const int64_t n_groups = G > 0 ? cdiv(S, G) : 0;
    /* page scores (n_q x S) | group bounds (n_q x groups) | the exact rule's group order (groups) and
     * suffix maxima (n_q x groups floats), or the kept-groups rule's flags (groups bytes) */
    return (size_t)((int64_t)n_q * (S + n_groups) + n_groups) * sizeof(page_score) + (size_t)((int64_t)n_q * n_groups) * sizeof(float) +
           (size_t)n_groups;
}

int lv_kv_select_pages(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t n_new_visible, const float *q,
                       int64_t k_pages, int32_t *pages_out, void *scratch) {
    return lv_kv_select_pages_multi(kv, seq, layer, head, n_new_visible, q, 0, 1, false, k_pages, pages_out, 0, scratch);
}

/* -------------------------------------------------------------------------------------------
 * truncation, sizes
 * ----------------------------------------------------------------------------------------- */

/* the first FULL pool (the streams that QuickPrefill prunes and that never evict), or -1 */
static int64_t first_full_pool(const lv_kv *kv) {
    for (int64_t ip = 0; ip < kv->n_pools; ip++)
        if (kv->pools[ip].pol.kind == LV_MASK_CAUSAL) return ip;
    return -1;
}

/* is position p inside one of the sequence's pruned ranges? */
static bool in_pruned(const kv_pruned *pr, int32_t p) {
    for (int64_t i = pr->n - 1; i >= 0; i--) {
        if (p > pr->r[2 * i + 1]) return false; /* ranges increase: p is after this one and every earlier one */
        if (p >= pr->r[2 * i]) return true;
    }
    return false;
}

lv_status lv_kv_seq_truncate(lv_kv *kv, int64_t seq, int32_t p0) {
    LV_ASSERT(!kv->in_txn);
    const int64_t P = kv->p.page_size;
    kv_pruned *pr = &kv->pruned[seq];
    if (p0 > kv->seq_max_pos[seq]) return LV_OK; /* nothing to remove */
    /* removing the whole sequence is always possible: every stream's first token is at or after
     * p0, and no pruned range starts before it (its first tokens may be held by no stream) */
    bool all = pr->n == 0 || pr->r[0] >= p0;
    for (int64_t ip = 0; ip < kv->n_pools && all; ip++) {
        const kv_stream *st = &kv->streams[seq * kv->n_pools + ip];
        all = st->n_stored == 0 || stored_pos(kv, &kv->pools[ip], st, 0) >= p0;
    }
    if (all) {
        for (int64_t ip = 0; ip < kv->n_pools; ip++) {
            kv_stream *st = &kv->streams[seq * kv->n_pools + ip];
            kv_pool *pl = &kv->pools[ip];
            while (st->n_pages > 0) pl->free_ids[pl->n_free++] = st->pages[--st->n_pages];
            st->n_stored = 0;
            st->bs_cursor = 0;
        }
        kv->total_tokens -= kv->seq_len[seq];
        kv->seq_len[seq] = 0;
        kv->seq_max_pos[seq] = -1;
        pr->n = 0;
        if (kv->rs) kv->rs_empty[seq] = 1;
        return LV_OK;
    }
    if (kv->rs)
        return lv_error(LV_ERR_UNSUPPORTED,
                        "cannot remove tokens from position %d of sequence %lld: the model's recurrent layers keep a state of the whole "
                        "sequence, which cannot be rewound (remove the whole sequence and decode it again up to the position wanted)",
                        p0, (long long)seq);
    /* a stream that evicted tokens no longer holds the window the tokens after the cut need (FULL
     * streams never evict; they hold fewer tokens than the sequence only where it was pruned) */
    for (int64_t ip = 0; ip < kv->n_pools; ip++) {
        const kv_stream *st = &kv->streams[seq * kv->n_pools + ip];
        if (kv->pools[ip].pol.kind != LV_MASK_CAUSAL && st->n_stored != kv->seq_len[seq])
            return lv_error(LV_ERR_UNSUPPORTED,
                            "cannot remove tokens from position %d of sequence %lld: its streaming heads (layer %lld) already evicted "
                            "part of it",
                            p0, (long long)seq, (long long)(ip / kv->p.n_head_kv));
    }
    /* the logical tokens removed: with pruned ranges, those a FULL stream holds outside them plus
     * the ranges' positions from p0 on (a range's positions are consecutive tokens); else those
     * any stream holds from p0 on (they all hold every token) */
    const int64_t f = pr->n ? first_full_pool(kv) : 0;
    LV_ASSERT(f >= 0);
    int64_t removed = 0;
    {
        const kv_stream *st = &kv->streams[seq * kv->n_pools + f];
        const kv_pool *pl = &kv->pools[f];
        for (int64_t i = st->n_stored - 1; i >= 0; i--) {
            const int32_t p = stored_pos(kv, pl, st, i);
            if (p < p0) break;
            removed += !in_pruned(pr, p);
        }
        for (int64_t i = 0; i < pr->n; i++)
            if (pr->r[2 * i + 1] >= p0) removed += (int64_t)pr->r[2 * i + 1] - LV_MAX(p0, pr->r[2 * i]) + 1;
    }
    for (int64_t ip = 0; ip < kv->n_pools; ip++) {
        kv_stream *st = &kv->streams[seq * kv->n_pools + ip];
        kv_pool *pl = &kv->pools[ip];
        int64_t keep = st->n_stored;
        while (keep > 0 && stored_pos(kv, pl, st, keep - 1) >= p0) keep--;
        st->n_stored = keep;
        while (st->n_pages > cdiv(keep, P)) pl->free_ids[pl->n_free++] = st->pages[--st->n_pages];
        if (st->bs_cursor > st->n_pages) st->bs_cursor = st->n_pages;
        if (pl->stats) restat(kv, pl, st);
    }
    while (pr->n > 0 && pr->r[2 * (pr->n - 1)] >= p0) pr->n--;
    if (pr->n > 0 && pr->r[2 * pr->n - 1] >= p0) pr->r[2 * pr->n - 1] = p0 - 1;
    kv->seq_len[seq] -= removed;
    kv->total_tokens -= removed;
    /* the last logical token: the last one stream f holds, or the end of the last pruned range */
    const kv_stream *sf = &kv->streams[seq * kv->n_pools + f];
    int32_t last = sf->n_stored > 0 ? stored_pos(kv, &kv->pools[f], sf, sf->n_stored - 1) : -1;
    if (pr->n > 0) last = LV_MAX(last, pr->r[2 * pr->n - 1]);
    kv->seq_max_pos[seq] = last;
    return LV_OK;
}

/* -------------------------------------------------------------------------------------------
 * QuickPrefill: pruning the tail of a sequence by key norms
 * ----------------------------------------------------------------------------------------- */

/* the stored key of a slot as floats (dequantized) */
static void load_key(const lv_kv *kv, const kv_pool *pl, const kv_stream *st, int64_t slot, float *out) {
    const int64_t P = kv->p.page_size, Dk = kv->p.head_dim_k, j = slot % P;
    const uint8_t *page = pl->k + (int64_t)st->pages[slot / P] * P * kv->krow;
    const lv_kv_type t = kv->p.type;
    if (lv_kv_quantized(t)) {
        const uint16_t *sc = (const uint16_t *)(page + P * lv_kv_qrow_bytes(t, Dk));
        for (int64_t d = 0; d < Dk; d++) out[d] = lv_kv_qelt(t, page, sc, (int32_t)P, j, d, Dk);
        return;
    }
    for (int64_t d = 0; d < Dk; d++)
        out[d] = t == LV_KV_F32 ? ((const float *)page)[d * P + j] : lv_fp16_to_fp32(((const uint16_t *)page)[d * P + j]);
}

/* copy slot `from` of a stream to slot `to` (key dimension by dimension: keys are transposed per
 * page; quantized rows with their per-block scales; value row; position) */
static void move_slot(const lv_kv *kv, kv_pool *pl, const kv_stream *st, int64_t from, int64_t to) {
    const int64_t P = kv->p.page_size, Dk = kv->p.head_dim_k, Dv = kv->p.head_dim_v;
    const int64_t pf = st->pages[from / P], jf = from % P, pt = st->pages[to / P], jt = to % P;
    page_set_pos(pl, P, pt, jt, page_pos(pl, P, pf, jf));
    const lv_kv_type kt = kv->p.type, vt = kv->p.type_v;
    uint8_t *kf = pl->k + pf * P * kv->krow, *ktp = pl->k + pt * P * kv->krow;
    if (lv_kv_quantized(kt)) {
        const int64_t q = lv_kv_qrow_bytes(kt, Dk);
        memcpy(ktp + jt * q, kf + jf * q, (size_t)q);
        const uint16_t *sf = (const uint16_t *)(kf + P * q);
        uint16_t *sto = (uint16_t *)(ktp + P * q);
        for (int64_t b = 0; b < Dk / LV_KV_QBLOCK; b++) sto[b * P + jt] = sf[b * P + jf];
    } else {
        const size_t e = lv_kv_elt_size(kt);
        for (int64_t d = 0; d < Dk; d++) memcpy(ktp + (size_t)(d * P + jt) * e, kf + (size_t)(d * P + jf) * e, e);
    }
    uint8_t *vf = pl->v + pf * P * kv->vrow, *vto = pl->v + pt * P * kv->vrow;
    if (lv_kv_quantized(vt)) {
        const int64_t q = lv_kv_qrow_bytes(vt, Dv);
        memcpy(vto + jt * q, vf + jf * q, (size_t)q);
        const uint16_t *sf = (const uint16_t *)(vf + P * q);
        uint16_t *sto = (uint16_t *)(vto + P * q);
        for (int64_t b = 0; b < Dv / LV_KV_QBLOCK; b++) sto[b * P + jt] = sf[b * P + jf];
    } else {
        memcpy(vto + jt * kv->vrow, vf + jf * kv->vrow, (size_t)kv->vrow);
    }
}

/* the key statistics of every logical page and group from the one holding slot s0 on, from the
 * stored keys (after a compaction moved the keys from s0 on) */
static void restat_from(const lv_kv *kv, const kv_pool *pl, const kv_stream *st, int64_t s0) {
    float lo[1024], hi[1024], m[2 * 1024];
    const int64_t P = kv->p.page_size, Dk = kv->p.head_dim_k, n = st->n_stored;
    for (int64_t slot = s0 / LV_KV_LOGICAL_PAGE * LV_KV_LOGICAL_PAGE; slot < n; slot++) {
        key_bounds(kv, pl, st, slot, lo, hi);
        minmax_add(kv, stats_at(kv, pl, st->pages[slot / P], (slot % P) / LV_KV_LOGICAL_PAGE), slot % LV_KV_LOGICAL_PAGE == 0, lo, hi);
    }
    if (!st->gstats) return;
    const int64_t gslots = P * kv->p.stats_group;
    for (int64_t slot = s0 / gslots * gslots; slot < n; slot += LV_KV_LOGICAL_PAGE) {
        const uint8_t *ls = stats_at(kv, pl, st->pages[slot / P], (slot % P) / LV_KV_LOGICAL_PAGE);
        if (kv->selt == 4) memcpy(m, ls, (size_t)(2 * Dk) * sizeof(float));
        else lv_to_float_row(LV_TYPE_F16, ls, m, 2 * Dk);
        minmax_add(kv, st->gstats + (size_t)(slot / gslots * 2 * Dk) * kv->selt, slot % gslots == 0, m, m + Dk);
    }
}

typedef struct norm_idx {
    double norm;
    int64_t i;
} norm_idx;

static int cmp_norm_idx(const void *a, const void *b) {
    const norm_idx *x = a, *y = b;
    if (x->norm != y->norm) return x->norm < y->norm ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* the tail [lo, hi] of the sequence's positions about to be pruned (n_last tokens): it must be
 * consecutive positions that every FULL stream holds (not pruned before); room for its range */
static lv_status tail_prepare(lv_kv *kv, int64_t seq, int64_t n_last, int64_t *lo) {
    const int32_t hi = kv->seq_max_pos[seq];
    const int64_t lo64 = (int64_t)hi - (n_last - 1);
    kv_pruned *pr = &kv->pruned[seq];
    bool ok = lo64 >= 0 && (pr->n == 0 || pr->r[2 * pr->n - 1] < lo64);
    for (int64_t ip = 0; ip < kv->n_pools && ok; ip++) {
        const kv_stream *st = &kv->streams[seq * kv->n_pools + ip];
        const kv_pool *pl = &kv->pools[ip];
        if (pl->pol.kind != LV_MASK_CAUSAL) continue;
        ok = st->n_stored >= n_last && stored_pos(kv, pl, st, st->n_stored - n_last) == lo64 && stored_pos(kv, pl, st, st->n_stored - 1) == hi;
    }
    if (!ok)
        return lv_error(LV_ERR_INVALID_ARG,
                        "pruning: the last %lld tokens of sequence %lld are not consecutive positions held by every full-attention head "
                        "(already pruned, or positions with gaps)",
                        (long long)n_last, (long long)seq);
    if (pr->n == pr->cap && !(pr->n > 0 && pr->r[2 * pr->n - 1] + 1 == lo64)) {
        const int64_t cap = pr->cap ? 2 * pr->cap : 8;
        int32_t *r = lv_realloc(pr->r, (size_t)cap * 2 * sizeof(int32_t));
        if (!r) return LV_ERR_NOMEM;
        pr->r = r;
        pr->cap = cap;
    }
    *lo = lo64;
    return LV_OK;
}

/* record [lo, seq_max_pos] as pruned (tail_prepare made room) */
static void tail_record(lv_kv *kv, int64_t seq, int64_t lo64) {
    kv_pruned *pr = &kv->pruned[seq];
    const int32_t hi = kv->seq_max_pos[seq];
    if (pr->n > 0 && pr->r[2 * pr->n - 1] + 1 == lo64) {
        pr->r[2 * pr->n - 1] = hi;
    } else {
        pr->r[2 * pr->n] = (int32_t)lo64;
        pr->r[2 * pr->n + 1] = hi;
        pr->n++;
    }
}

/* keep[i] of the last n_last slots of every FULL stream of layer l: compact the kept ones in order */
static void compact_layer(lv_kv *kv, int64_t seq, int64_t l, int64_t n_last, const uint8_t *keep) {
    const int64_t H = kv->p.n_head_kv, P = kv->p.page_size;
    for (int64_t h = 0; h < H; h++) {
        kv_pool *pl = pool_at(kv, l, h);
        if (pl->pol.kind != LV_MASK_CAUSAL) continue;
        kv_stream *st = stream_at(kv, seq, l, h);
        const int64_t s0 = st->n_stored - n_last;
        int64_t w = s0;
        for (int64_t i = 0; i < n_last; i++) {
            if (!keep[i]) continue;
            if (w != s0 + i) move_slot(kv, pl, st, s0 + i, w);
            w++;
        }
        st->n_stored = w;
        while (st->n_pages > cdiv(w, P)) pl->free_ids[pl->n_free++] = st->pages[--st->n_pages];
        if (pl->stats) restat_from(kv, pl, st, s0);
    }
}

lv_status lv_kv_seq_prune_tail(lv_kv *kv, int64_t seq, int64_t n_last, const uint8_t *prunable, int64_t k_keep, int64_t *n_pruned) {
    LV_ASSERT(!kv->in_txn);
    if (n_pruned) *n_pruned = 0;
    if (seq < 0 || seq >= kv->p.n_seq_max) return lv_error(LV_ERR_INVALID_ARG, "pruning: sequence id %lld out of range", (long long)seq);
    if (n_last < 0 || n_last > kv->seq_len[seq])
        return lv_error(LV_ERR_INVALID_ARG, "pruning: the last %lld tokens of sequence %lld, which has %lld", (long long)n_last, (long long)seq,
                        (long long)kv->seq_len[seq]);
    int64_t n = 0;
    for (int64_t i = 0; i < n_last; i++) n += prunable ? prunable[i] != 0 : 1;
    if (k_keep < 0) k_keep = 0;
    const int64_t f = first_full_pool(kv);
    if (n <= k_keep || f < 0) return LV_OK; /* nothing to prune, or no stream that can be */
    int64_t lo64 = 0;
    lv_status st0 = tail_prepare(kv, seq, n_last, &lo64);
    if (st0 != LV_OK) return st0;
    norm_idx *ni = lv_mallocn((size_t)n, sizeof(norm_idx));
    uint8_t *keep = lv_mallocn((size_t)n_last, 1);
    if (!ni || !keep) {
        lv_free(ni);
        lv_free(keep);
        return LV_ERR_NOMEM;
    }
    const int64_t H = kv->p.n_head_kv, Dk = kv->p.head_dim_k;
    float key[1024];
    for (int64_t l = 0; l < kv->p.n_layer; l++) {
        int64_t m = 0;
        for (int64_t i = 0; i < n_last; i++)
            if (!prunable || prunable[i]) ni[m++] = (norm_idx){0.0, i};
        bool any = false;
        for (int64_t h = 0; h < H; h++) { /* the squared norm of the key over the layer's FULL heads */
            const kv_pool *pl = pool_at(kv, l, h);
            if (pl->pol.kind != LV_MASK_CAUSAL) continue;
            any = true;
            const kv_stream *st = stream_at(kv, seq, l, h);
            const int64_t s0 = st->n_stored - n_last;
            for (int64_t j = 0; j < n; j++) {
                load_key(kv, pl, st, s0 + ni[j].i, key);
                double s = 0;
                for (int64_t d = 0; d < Dk; d++) s += (double)key[d] * key[d];
                ni[j].norm += s;
            }
        }
        if (!any) continue;
        qsort(ni, (size_t)n, sizeof(norm_idx), cmp_norm_idx); /* the smallest norms first; ties: the earlier token */
        for (int64_t i = 0; i < n_last; i++) keep[i] = prunable && !prunable[i];
        for (int64_t j = 0; j < k_keep; j++) keep[ni[j].i] = 1;
        compact_layer(kv, seq, l, n_last, keep);
    }
    lv_free(ni);
    lv_free(keep);
    tail_record(kv, seq, lo64);
    if (n_pruned) *n_pruned = n - k_keep;
    return LV_OK;
}

lv_status lv_kv_seq_prune_mask(lv_kv *kv, int64_t seq, int64_t n_last, const uint8_t *keep, int64_t *n_dropped) {
    LV_ASSERT(!kv->in_txn);
    if (n_dropped) *n_dropped = 0;
    if (seq < 0 || seq >= kv->p.n_seq_max) return lv_error(LV_ERR_INVALID_ARG, "pruning: sequence id %lld out of range", (long long)seq);
    if (n_last < 0 || n_last > kv->seq_len[seq])
        return lv_error(LV_ERR_INVALID_ARG, "pruning: the last %lld tokens of sequence %lld, which has %lld", (long long)n_last, (long long)seq,
                        (long long)kv->seq_len[seq]);
    int64_t f = first_full_pool(kv), drop = 0;
    if (f < 0) return LV_OK;
    const int64_t fl = f / kv->p.n_head_kv;
    for (int64_t i = 0; i < n_last; i++) drop += !keep[fl * n_last + i];
    int64_t lo64 = 0;
    lv_status st = tail_prepare(kv, seq, n_last, &lo64);
    if (st != LV_OK) return st;
    for (int64_t l = 0; l < kv->p.n_layer; l++) compact_layer(kv, seq, l, n_last, keep + l * n_last);
    tail_record(kv, seq, lo64);
    if (n_dropped) *n_dropped = drop;
    return LV_OK;
}

lv_status lv_kv_seq_drop_range(lv_kv *kv, int64_t seq, int32_t p0, int32_t p1, int64_t *n_dropped) {
    LV_ASSERT(!kv->in_txn);
    if (n_dropped) *n_dropped = 0;
    if (seq < 0 || seq >= kv->p.n_seq_max) return lv_error(LV_ERR_INVALID_ARG, "dropping: sequence id %lld out of range", (long long)seq);
    if (p0 >= p1) return LV_OK;
    const kv_pruned *pr = &kv->pruned[seq];
    bool inside = false;
    for (int64_t i = 0; i < pr->n && !inside; i++) inside = pr->r[2 * i] <= p0 && p1 - 1 <= pr->r[2 * i + 1];
    if (!inside)
        return lv_error(LV_ERR_INVALID_ARG, "dropping positions [%d, %d) of sequence %lld: they are not inside a range pruned before", p0, p1,
                        (long long)seq);
    const int64_t P = kv->p.page_size, fp = first_full_pool(kv);
    for (int64_t ip = 0; ip < kv->n_pools; ip++) {
        kv_pool *pl = &kv->pools[ip];
        if (pl->pol.kind != LV_MASK_CAUSAL) continue;
        kv_stream *st = &kv->streams[seq * kv->n_pools + ip];
        int64_t s0 = st->n_stored;
        while (s0 > 0 && stored_pos(kv, pl, st, s0 - 1) >= p0) s0--;
        int64_t w = s0;
        for (int64_t i = s0; i < st->n_stored; i++) {
            const int32_t p = stored_pos(kv, pl, st, i);
            if (p < p1) continue;
            if (w != i) move_slot(kv, pl, st, i, w);
            w++;
        }
        if (ip == fp && n_dropped) *n_dropped = st->n_stored - w;
        st->n_stored = w;
        while (st->n_pages > cdiv(w, P)) pl->free_ids[pl->n_free++] = st->pages[--st->n_pages];
        if (pl->stats) restat_from(kv, pl, st, s0);
    }
    return LV_OK;
}

lv_status lv_kv_seq_copy(lv_kv *kv, int64_t src, int64_t dst) {
    LV_ASSERT(!kv->in_txn);
    const int64_t S = kv->p.n_seq_max, P = kv->p.page_size;
    if (src < 0 || src >= S || dst < 0 || dst >= S || src == dst)
        return lv_error(LV_ERR_INVALID_ARG, "kv copy: sequences %lld -> %lld (two different ids below %lld)", (long long)src, (long long)dst,
                        (long long)S);
    bool empty = kv->seq_len[dst] == 0 && kv->pruned[dst].n == 0;
    for (int64_t ip = 0; ip < kv->n_pools && empty; ip++) empty = kv->streams[dst * kv->n_pools + ip].n_pages == 0;
    if (!empty) return lv_error(LV_ERR_INVALID_ARG, "kv copy: sequence %lld is not empty", (long long)dst);
    if (kv->total_tokens + kv->seq_len[src] > kv->p.n_ctx)
        return lv_error(LV_ERR_CONTEXT_FULL, "kv copy: %lld tokens more than the context's %lld (%lld in use)", (long long)kv->seq_len[src],
                        (long long)kv->p.n_ctx, (long long)kv->total_tokens);
    for (int64_t ip = 0; ip < kv->n_pools; ip++)
        if (kv->streams[src * kv->n_pools + ip].n_pages > kv->pools[ip].n_free)
            return lv_error(LV_ERR_CONTEXT_FULL, "kv copy: %lld pages needed in layer %lld head %lld, %lld free",
                            (long long)kv->streams[src * kv->n_pools + ip].n_pages, (long long)(ip / kv->p.n_head_kv),
                            (long long)(ip % kv->p.n_head_kv), (long long)kv->pools[ip].n_free);
    const kv_pruned *ps = &kv->pruned[src];
    kv_pruned *pd = &kv->pruned[dst];
    if (ps->n > pd->cap) {
        int32_t *r = lv_realloc(pd->r, (size_t)ps->n * 2 * sizeof(int32_t));
        if (!r) return LV_ERR_NOMEM;
        pd->r = r;
        pd->cap = ps->n;
    }
    if (ps->n) memcpy(pd->r, ps->r, (size_t)ps->n * 2 * sizeof(int32_t));
    pd->n = ps->n;
    const size_t sbytes = (size_t)(lp_per_page(P) * 2 * kv->p.head_dim_k) * kv->selt;
    for (int64_t ip = 0; ip < kv->n_pools; ip++) {
        kv_pool *pl = &kv->pools[ip];
        const kv_stream *a = &kv->streams[src * kv->n_pools + ip];
        kv_stream *b = &kv->streams[dst * kv->n_pools + ip];
        for (int64_t i = 0; i < a->n_pages; i++) {
            const int64_t from = a->pages[i], to = pl->free_ids[--pl->n_free];
            b->pages[i] = (int32_t)to;
            memcpy(pl->k + to * P * kv->krow, pl->k + from * P * kv->krow, (size_t)(P * kv->krow));
            memcpy(pl->v + to * P * kv->vrow, pl->v + from * P * kv->vrow, (size_t)(P * kv->vrow));
            pl->pbase[to] = pl->pbase[from];
            pl->pmode[to] = pl->pmode[from];
            if (pl->pmode[from] == KV_POS_OFF16) memcpy(pl->poff + to * P, pl->poff + from * P, (size_t)P * sizeof(uint16_t));
            if (pl->pmode[from] == KV_POS_WIDE) memcpy(pl->pwide + to * P, pl->pwide + from * P, (size_t)P * sizeof(int32_t));
            if (pl->stats) memcpy(stats_at(kv, pl, (int32_t)to, 0), stats_at(kv, pl, (int32_t)from, 0), sbytes);
        }
        b->n_pages = a->n_pages;
        b->n_stored = a->n_stored;
        b->bs_cursor = a->bs_cursor;
        if (a->gstats && b->gstats)
            memcpy(b->gstats, a->gstats, (size_t)(cdiv(a->n_pages, kv->p.stats_group) * 2 * kv->p.head_dim_k) * kv->selt);
    }
    if (kv->rs) {
        const int cur = kv->rs_cur[src];
        for (int64_t rl = 0; rl < kv->p.n_rs_layer; rl++)
            memcpy(rs_buf(kv, dst, rl, cur), rs_buf(kv, src, rl, cur), (size_t)kv->p.rs_floats * sizeof(float));
        kv->rs_cur[dst] = (uint8_t)cur;
        kv->rs_empty[dst] = kv->rs_empty[src];
    }
    kv->seq_len[dst] = kv->seq_len[src];
    kv->seq_max_pos[dst] = kv->seq_max_pos[src];
    kv->total_tokens += kv->seq_len[src];
    return LV_OK;
}

void lv_kv_load_key(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head, int64_t slot, float *out) {
    load_key(kv, pool_at(kv, layer, head), stream_at(kv, seq, layer, head), slot, out);
}

int64_t lv_kv_stream_n_stored(const lv_kv *kv, int64_t seq, int64_t layer, int64_t head) { return stream_at(kv, seq, layer, head)->n_stored; }

lv_kv_type lv_kv_type_of(const lv_kv *kv) { return kv->p.type; }
lv_kv_type lv_kv_type_v_of(const lv_kv *kv) { return kv->p.type_v; }

const char *lv_kv_type_name(lv_kv_type t) {
    switch (t) {
    case LV_KV_F32: return "f32";
    case LV_KV_F16: return "f16";
    case LV_KV_Q8_0: return "q8_0";
    case LV_KV_Q4_0: return "q4_0";
    default: return "?";
    }
}

bool lv_kv_type_from_name(const char *name, lv_kv_type *out) {
    static const lv_kv_type all[] = {LV_KV_F32, LV_KV_F16, LV_KV_Q8_0, LV_KV_Q4_0};
    for (size_t i = 0; name && i < sizeof(all) / sizeof(all[0]); i++)
        if (strcmp(name, lv_kv_type_name(all[i])) == 0) {
            *out = all[i];
            return true;
        }
    return false;
}
int64_t lv_kv_n_ctx(const lv_kv *kv) { return kv->p.n_ctx; }
int64_t lv_kv_page_size(const lv_kv *kv) { return kv->p.page_size; }

int64_t lv_kv_used_bytes_(const lv_kv *kv) {
    const int64_t per_tok = kv->krow + kv->vrow;
    int64_t total = 0;
    for (int64_t i = 0; i < kv->p.n_seq_max * kv->n_pools; i++) total += kv->streams[i].n_stored * per_tok;
    for (int64_t s = 0; kv->rs && s < kv->p.n_seq_max; s++) total += kv->rs_empty[s] ? 0 : lv_kv_state_bytes_per_seq(kv);
    return total;
}

int64_t lv_kv_pages_in_use_bytes_(const lv_kv *kv) {
    int64_t total = 0;
    for (int64_t i = 0; i < kv->n_pools; i++) {
        const kv_pool *pl = &kv->pools[i];
        total += (pl->n_pages - pl->n_free) * page_bytes_of(kv, pl->pol.stats);
        for (int64_t s = 0; s < kv->p.n_seq_max; s++) { /* positions stored per slot, by each page's form */
            const kv_stream *st = &kv->streams[s * kv->n_pools + i];
            for (int64_t j = 0; j < st->n_pages; j++) total += page_pos_bytes(pl, kv->p.page_size, st->pages[j]);
        }
    }
    return total;
}

int64_t lv_kv_capacity_bytes_(const lv_kv *kv) {
    int64_t total = 0;
    for (int64_t i = 0; i < kv->n_pools; i++)
        total += kv->pools[i].n_pages * kv->p.page_size * (kv->krow + kv->vrow);
    return total + kv->p.n_seq_max * lv_kv_state_bytes_per_seq(kv);
}
