/*
 * budget.c: one budget of CPU tokens shared by a thread pool and helper threads (the video
 * pipeline's decode threads), so that together they never run more busy threads than the pool
 * has (docs/video-questions.md, "The shared thread budget").
 *
 * DESIGN
 *  - n tokens, n = the pool's thread count. The pool takes all n at once, lazily, before a job
 *    (lv_threadpool_run calls lv_budget_pool_enter) and keeps them across jobs; its caller gives
 *    them back when it is about to block (lv_budget_pool_leave). The pool's jobs are fork-join with
 *    a static split over all n threads, so a pool job never runs on fewer tokens: the split (and so
 *    every kernel's result) stays what it was; the budget changes only who runs when.
 *  - A helper thread takes one token before each slice of its work (a packet decoded and converted)
 *    and keeps it across slices while nobody else wants it (lv_budget_worker_enter), and gives it
 *    back before it blocks on anything else (lv_budget_worker_leave).
 *  - Who wins: a helper is *urgent* when its stage starves the next one (the reader: fewer than a
 *    low-water mark of frames ready for the encoder; set until a high-water mark). An urgent helper
 *    waiting for a token makes the pool give its tokens back at its next job boundary, and the pool
 *    then waits until no helper holds a token or waits urgently. A helper that is not urgent takes
 *    a token only while the pool neither holds nor wants them, and gives it back at the end of its
 *    slice once the pool wants them.
 *  - Nobody spins: waiting on the budget is a condition variable. A waiting helper also stops when
 *    its stop flag is set (the owner calls lv_budget_kick after setting it), so a failing or
 *    aborted stage never leaves another waiting. Changes of a helper's urgency flag are announced
 *    with lv_budget_kick too (its waiters count themselves urgent or not again).
 *  - Fast paths (the pool's next job with nobody waiting; a helper's next slice while the pool does
 *    not want its token) are two atomic loads and no lock.
 *  - Instrumentation: the most tokens ever held at once, the pool's yields, the helpers' takes,
 *    and the tokens held integrated over time (token-seconds; / (n x wall): the budget's use).
 */
#include "core/core.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

struct lv_budget {
    int n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic int pool_holds;     /* the pool holds all n tokens */
    _Atomic int pool_waiting;   /* the pool waits for its tokens */
    _Atomic int urgent_waiting; /* helpers waiting for a token while urgent */
    int workers_held;           /* tokens the helpers hold (mutex) */
    /* instrumentation (mutex) */
    int max_held;
    int64_t n_yields, n_takes, n_pool_takes;
    double t_created, t_last, held_s; /* tokens held integrated over time, up to t_last */
    double pool_wait_s;                /* the pool's caller waited for its tokens (written by it) */
};

lv_budget *lv_budget_create(int n_tokens) {
    if (n_tokens < 1) n_tokens = 1;
    lv_budget *b = lv_calloc(1, sizeof(*b));
    if (!b) return NULL;
    b->n = n_tokens;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->t_created = b->t_last = lv_time_s();
    return b;
}

void lv_budget_free(lv_budget *b) {
    if (!b) return;
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    lv_free(b);
}

int lv_budget_n_tokens(const lv_budget *b) { return b ? b->n : 0; }

static int held_locked(const lv_budget *b) { return (atomic_load(&b->pool_holds) ? b->n : 0) + b->workers_held; }

/* before the tokens held change (mutex held): integrate them up to now */
static void account_locked(lv_budget *b) {
    const double now = lv_time_s();
    b->held_s += held_locked(b) * (now - b->t_last);
    b->t_last = now;
}

static void note_held_locked(lv_budget *b) {
    const int h = held_locked(b);
    if (h > b->max_held) b->max_held = h;
}

void lv_budget_pool_enter(lv_budget *b) {
    if (!b) return;
    if (atomic_load(&b->pool_holds) && atomic_load(&b->urgent_waiting) == 0) return;
    pthread_mutex_lock(&b->mu);
    if (atomic_load(&b->pool_holds)) {
        if (atomic_load(&b->urgent_waiting) == 0) {
            pthread_mutex_unlock(&b->mu);
            return;
        }
        /* an urgent helper waits: give the tokens back at this job boundary */
        account_locked(b);
        atomic_store(&b->pool_holds, 0);
        b->n_yields++;
        pthread_cond_broadcast(&b->cv);
    }
    atomic_store(&b->pool_waiting, 1);
    const double t = lv_time_s();
    while (b->workers_held > 0 || atomic_load(&b->urgent_waiting) > 0) pthread_cond_wait(&b->cv, &b->mu);
    b->pool_wait_s += lv_time_s() - t;
    atomic_store(&b->pool_waiting, 0);
    account_locked(b);
    atomic_store(&b->pool_holds, 1);
    b->n_pool_takes++;
    note_held_locked(b);
    pthread_mutex_unlock(&b->mu);
}

void lv_budget_pool_leave(lv_budget *b) {
    if (!b || !atomic_load(&b->pool_holds)) return;
    pthread_mutex_lock(&b->mu);
    if (atomic_load(&b->pool_holds)) {
        account_locked(b);
        atomic_store(&b->pool_holds, 0);
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
}

bool lv_budget_worker_enter(lv_budget *b, bool *holding, const _Atomic bool *urgent, const _Atomic bool *stop) {
    if (!b) return !(stop && atomic_load(stop));
    if (*holding && (!atomic_load(&b->pool_waiting) || (urgent && atomic_load(urgent)))) return true;
    pthread_mutex_lock(&b->mu);
    if (*holding) {
        if (atomic_load(&b->pool_waiting) && !(urgent && atomic_load(urgent))) {
            /* the pool wants its tokens and this helper's stage is not starving the next one */
            account_locked(b);
            b->workers_held--;
            *holding = false;
            pthread_cond_broadcast(&b->cv);
        } else {
            pthread_mutex_unlock(&b->mu);
            return true;
        }
    }
    bool counted = false; /* counted in urgent_waiting */
    bool ok = false;
    for (;;) {
        if (stop && atomic_load(stop)) break;
        const bool u = urgent && atomic_load(urgent);
        if (u != counted) {
            atomic_fetch_add(&b->urgent_waiting, u ? 1 : -1);
            counted = u;
            if (!u) pthread_cond_broadcast(&b->cv); /* the pool may be waiting for no urgent helper left */
        }
        const bool free_token = held_locked(b) < b->n;
        if (free_token && (u || (!atomic_load(&b->pool_holds) && !atomic_load(&b->pool_waiting)))) {
            account_locked(b);
            b->workers_held++;
            b->n_takes++;
            *holding = true;
            note_held_locked(b);
            ok = true;
            break;
        }
        pthread_cond_wait(&b->cv, &b->mu);
    }
    if (counted) {
        atomic_fetch_sub(&b->urgent_waiting, 1);
        pthread_cond_broadcast(&b->cv); /* the pool may be waiting for no urgent helper left */
    }
    pthread_mutex_unlock(&b->mu);
    return ok;
}

void lv_budget_worker_leave(lv_budget *b, bool *holding) {
    if (!b || !*holding) return;
    pthread_mutex_lock(&b->mu);
    account_locked(b);
    b->workers_held--;
    *holding = false;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

double lv_budget_pool_wait_s(const lv_budget *b) { return b ? b->pool_wait_s : 0; }

void lv_budget_kick(lv_budget *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

void lv_budget_get_stats(lv_budget *b, lv_budget_stats *s) {
    memset(s, 0, sizeof(*s));
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    s->n_tokens = b->n;
    s->held = held_locked(b);
    s->max_held = b->max_held;
    s->n_pool_yields = b->n_yields;
    s->n_pool_takes = b->n_pool_takes;
    s->n_worker_takes = b->n_takes;
    account_locked(b);
    s->held_s = b->held_s;
    s->wall_s = b->t_last - b->t_created;
    pthread_mutex_unlock(&b->mu);
}
