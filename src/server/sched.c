/*
 * sched.c: which prompt tokens fill a step (server.h, lv_pack_step). Prepacking (Zhao et al.,
 * siyan-zhao/prepacking processor.py) packs prompts of mixed lengths into fixed-size rows with
 * best-fit-decreasing; here the row is the step's token budget, recomputed every step (decode
 * tokens take their share first), so only one bin is open at a time and best fit is first fit.
 * What BFD leaves of the step goes to a chunk of a prompt that did not fit, so the budget is
 * always used while prompts wait; the age cap keeps a long prompt from being passed over for ever.
 */
#include "server/server.h"
#include "core/core.h"

/* decreasing length, then older first, then id: a total order, so the plan is deterministic */
static int by_len_desc(const lv_pack_item *a, const lv_pack_item *b) {
    if (a->n_tokens != b->n_tokens) return a->n_tokens > b->n_tokens ? -1 : 1;
    if (a->order != b->order) return a->order < b->order ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* the more deserving of a chunk: started first, then older */
static bool chunk_before(const lv_pack_item *a, const lv_pack_item *b) {
    if (a->started != b->started) return a->started;
    if (a->order != b->order) return a->order < b->order;
    return a->id < b->id;
}

int lv_pack_step(const lv_pack_item *items, int n, int32_t budget, int max_items, int32_t age_cap, bool pack,
                 lv_pack_place *out) {
    if (n <= 0 || budget <= 0 || max_items <= 0) return 0;
    int n_out = 0;
    int32_t room = budget;
    if (!pack) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (items[i].n_tokens > 0 && (best < 0 || chunk_before(&items[i], &items[best]))) best = i;
        if (best < 0) return 0;
        out[0].id = items[best].id;
        out[0].n_tokens = items[best].n_tokens < room ? items[best].n_tokens : room;
        return 1;
    }
    /* work on a sorted copy of the indices; placed[] marks what went in */
    int *idx = lv_mallocn((size_t)n, sizeof(int));
    bool *placed = lv_calloc((size_t)n, sizeof(bool));
    if (!idx || !placed) { /* no memory: fall back to the reference rule, which needs none */
        lv_free(idx);
        lv_free(placed);
        return lv_pack_step(items, n, budget, max_items, age_cap, false, out);
    }
    for (int i = 0; i < n; i++) {
        idx[i] = i;
        if (items[i].n_tokens <= 0) placed[i] = true; /* nothing to do */
    }
    /* 1. aged prompts, oldest first */
    if (age_cap > 0) {
        for (;;) {
            int best = -1;
            for (int i = 0; i < n; i++)
                if (!placed[i] && items[i].age >= age_cap && (best < 0 || items[i].order < items[best].order)) best = i;
            if (best < 0 || room == 0 || n_out == max_items) break;
            int32_t take = items[best].n_tokens < room ? items[best].n_tokens : room;
            out[n_out].id = items[best].id;
            out[n_out++].n_tokens = take;
            placed[best] = true;
            room -= take;
        }
    }
    /* 2. best fit decreasing over the rest (insertion sort: n is at most the slot count) */
    for (int i = 1; i < n; i++) {
        int v = idx[i], j = i - 1;
        while (j >= 0 && by_len_desc(&items[v], &items[idx[j]]) < 0) {
            idx[j + 1] = idx[j];
            j--;
        }
        idx[j + 1] = v;
    }
    for (int k = 0; k < n && room > 0 && n_out < max_items; k++) {
        const int i = idx[k];
        if (placed[i] || items[i].n_tokens > room) continue;
        out[n_out].id = items[i].id;
        out[n_out++].n_tokens = items[i].n_tokens;
        placed[i] = true;
        room -= items[i].n_tokens;
    }
    /* 3. one chunk into what is left */
    if (room > 0 && n_out < max_items) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (!placed[i] && (best < 0 || chunk_before(&items[i], &items[best]))) best = i;
        if (best >= 0) {
            out[n_out].id = items[best].id;
            out[n_out++].n_tokens = room; /* it did not fit whole, so it has more than room */
            room = 0;
        }
    }
    lv_free(idx);
    lv_free(placed);
    return n_out;
}
