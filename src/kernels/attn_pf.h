/*
 * attn_pf.h: software prefetch of the blocks a decode job reads next, shared by the AVX2 and
 * AVX-512 attention kernels (attn_avx2.c, attn_avx512.c). A decode step reads its KV pages from
 * DRAM, one 64-key block at a time, and the hardware prefetcher restarts at every page; each block
 * prefetches a later one's key rows, value rows and positions a few lines at a time between its
 * own loads (bench/NOTES.md, sessions 12 and 13). Include after defining KB (keys per block).
 */
#ifndef LV_ATTN_PF_H
#define LV_ATTN_PF_H
#include "kernels/kernels.h"

#include <stdint.h>

#ifndef KB
#error "define KB before including attn_pf.h"
#endif

/* prefetcht0 as an asm statement: gcc deleted _mm_prefetch calls it judged without effect */
static inline void prefetch_line(const void *p) { __asm__ volatile("prefetcht0 %0" : : "m"(*(const char *)p)); }

/* the lines of n bytes from p */
static inline void prefetch_bytes(const char *p, size_t n) {
    const char *l = (const char *)((uintptr_t)p & ~(uintptr_t)63);
    for (size_t b = 0; b < n + (size_t)(p - l); b += 64) prefetch_line(l + b);
}

/* The block two blocks ahead of the current one (nk 0: none): a decode job reads its blocks from
 * DRAM, so each block prefetches a later one's key rows, value rows and positions a few lines at
 * a time between its own loads (its score loop takes a key row per dimension, its value loop a
 * value row per key), which keeps the core's miss buffers busy without stalling on them:
 * issuing a whole block at once stalls (bench/NOTES.md, sessions 12 and 13). */
#define PF_AHEAD 2
typedef struct next_block {
    const char *k; /* element (d = 0, j = 0) of its keys */
    size_t k_row;  /* bytes from one dimension's keys to the next's */
    size_t k_n;    /* bytes of one dimension's nk keys */
    const char *v; /* its first value row; rows of v_n bytes */
    size_t v_n;
    int nk;
} next_block;

/* the block `ahead` blocks after block j0 of span s; its positions prefetched */
static inline next_block find_next_block(const lv_attn_job *job, int s, int32_t j0, int ahead) {
    next_block nb = {NULL, 0, 0, NULL, 0, 0};
    if (s >= job->n_spans) return nb;
    const lv_attn_span *sp = &job->spans[s];
    for (int i = 0; i < ahead; i++) {
        j0 += KB;
        if (j0 >= sp->n) {
            if (s + 1 >= job->n_spans) return nb;
            s++;
            sp++;
            j0 = 0;
        }
    }
    const size_t es = lv_kv_elt_size(job->kv_type);
    nb.nk = sp->n - j0 < KB ? sp->n - j0 : KB;
    nb.k = (const char *)sp->k + (size_t)j0 * es;
    nb.k_row = (size_t)sp->ldk * es;
    nb.k_n = (size_t)nb.nk * es;
    nb.v = (const char *)sp->v + (size_t)j0 * (size_t)job->Dv * es;
    nb.v_n = (size_t)job->Dv * es;
    size_t pb;
    const void *pp = lv_span_pos_ptr(sp, j0, &pb);
    if (pp) prefetch_bytes((const char *)pp, (size_t)nb.nk * pb);
    return nb;
}

/* all of a block's lines: the first blocks of a job, which no earlier block prefetched */
static inline void prefetch_block(const next_block *nb, int Dk) {
    for (int d = 0; d < Dk && nb->nk; d++) prefetch_bytes(nb->k + (size_t)d * nb->k_row, nb->k_n);
    for (int j = 0; j < nb->nk; j++) prefetch_bytes(nb->v + (size_t)j * nb->v_n, nb->v_n);
}

#endif
