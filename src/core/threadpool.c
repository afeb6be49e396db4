/*
 * threadpool.c: one persistent pool of worker threads shared by every kernel.
 *
 * DESIGN
 *  - lv_threadpool_run(fn, arg) runs fn(arg, ith, nth) on all nth threads; the caller is ith 0,
 *    so a 1-thread pool has no workers and no synchronisation at all.
 *  - A job is published by bumping an atomic generation counter. Workers that finished the
 *    previous job spin on that counter for a short while (a decode step issues hundreds of small
 *    jobs back to back, and waking a sleeping thread costs tens of microseconds), then go to
 *    sleep on a condition variable, so an idle pool burns no CPU (unlike an OpenMP build whose
 *    workers spin forever unless told OMP_WAIT_POLICY=passive).
 *  - Lost wake-ups are impossible: the publisher stores the generation and then reads the
 *    sleeper count; a worker increments the sleeper count and then re-reads the generation under
 *    the mutex. Both are sequentially consistent, so one of them sees the other.
 *  - lv_threadpool_barrier() is a sense barrier for use inside a job: spin, then sleep.
 *  - Oversubscription: when another process takes one of our cores, a thread we spin for may be
 *    waiting for its time slice, and a spinning (or sched_yield-ing) waiter keeps its own core
 *    busy, so the scheduler never moves the starved thread there: every job and barrier then
 *    costs a time slice (a 2-thread decode fell from 150 to 2 tokens/s beside one busy process).
 *    Each thread therefore checks its involuntary context switches every LV_TP_CHECK_EVERY jobs;
 *    when the pool's threads were preempted LV_TP_PREEMPT_MIN times within LV_TP_WINDOW_S, the
 *    whole pool spins only LV_TP_SPIN_SHORT_S before sleeping, for the next
 *    LV_TP_CONTENDED_HOLD_S seconds (renewed while preemption goes on). A niced background job
 *    preempts rarely and leaves the long spins in place (short spins beside it made 2 threads
 *    slower than 1).
 *  - Calls to lv_threadpool_run from different threads are serialized by a mutex.
 *  - A budget (budget.c) may be attached: each job (and lv_parallel_for's inline path) first
 *    enters it, taking the pool's tokens back from helper threads, or giving them to an urgent
 *    one at this job boundary. The job itself is unchanged: always all n_threads, the same split.
 */
#define _GNU_SOURCE
#include "core/core.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <stdatomic.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define lv_cpu_relax() _mm_pause()
#else
#define lv_cpu_relax() ((void)0)
#endif

/* How long an idle worker spins before sleeping, in seconds; the same when the pool sees
 * preemption (see DESIGN), how often a thread looks, and how long the short spin lasts. */
#define LV_TP_SPIN_S 0.0005
#define LV_TP_SPIN_SHORT_S 0.00002
#define LV_TP_CHECK_EVERY 32
#define LV_TP_CONTENDED_HOLD_S 0.25
/* Preemptions (all threads together) within LV_TP_WINDOW_S that mean "oversubscribed": a process
 * of the same priority on our cores preempts a running thread every few milliseconds (tens per
 * window); a nice-19 one, which the scheduler gives ~1.5% of a core, a couple of times. */
#define LV_TP_WINDOW_S 0.1
#define LV_TP_PREEMPT_MIN 8

typedef struct worker {
    lv_threadpool *tp;
    int ith;
    pthread_t thread;
} worker;

struct lv_threadpool {
    int n_threads;
    worker *workers; /* (n_threads - 1) */

    pthread_mutex_t run_lock; /* serializes lv_threadpool_run callers */

    /* the current job */
    lv_task_fn fn;
    void *arg;
    _Atomic uint64_t generation;
    _Atomic int n_done;
    _Atomic int stop;

    /* sleeping */
    pthread_mutex_t mutex;
    pthread_cond_t cond_job;
    pthread_cond_t cond_done;
    _Atomic int n_sleeping;
    _Atomic int main_sleeping;

    /* barrier */
    _Atomic int bar_count;
    _Atomic int bar_phase;
    _Atomic int bar_sleeping;
    pthread_cond_t cond_bar;

    /* oversubscription: until when (lv_time_s) to spin only briefly; 0 = not seen */
    _Atomic double contended_until;
    _Atomic double win_start; /* the current counting window */
    _Atomic int win_count;    /* preemptions seen in it */

    lv_budget *_Atomic budget; /* shared thread budget, or NULL */
};

/* Per-thread preemption check, every LV_TP_CHECK_EVERY calls. */
typedef struct preempt_check {
    int calls;
    long nivcsw;
} preempt_check;

static void check_preemption(lv_threadpool *tp, preempt_check *pc) {
    if (++pc->calls < LV_TP_CHECK_EVERY) return;
    pc->calls = 0;
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) != 0) return;
    const long delta = ru.ru_nivcsw - pc->nivcsw;
    const bool first = pc->nivcsw == 0;
    pc->nivcsw = ru.ru_nivcsw;
    if (delta <= 0 || first) return;
    /* races between threads only blur the window's edges */
    const double now = lv_time_s();
    if (now - atomic_load(&tp->win_start) > LV_TP_WINDOW_S) {
        atomic_store(&tp->win_start, now);
        atomic_store(&tp->win_count, 0);
    }
    if (atomic_fetch_add(&tp->win_count, (int)delta) + (int)delta >= LV_TP_PREEMPT_MIN)
        atomic_store(&tp->contended_until, now + LV_TP_CONTENDED_HOLD_S);
}

static double spin_budget(lv_threadpool *tp, double now) {
    return now < atomic_load(&tp->contended_until) ? LV_TP_SPIN_SHORT_S : LV_TP_SPIN_S;
}

static void *worker_main(void *p) {
    worker *w = p;
    lv_threadpool *tp = w->tp;
    uint64_t seen = 0;
    preempt_check pc = {0, 0};
    for (;;) {
        /* wait for a new generation: spin, then sleep */
        uint64_t gen = atomic_load(&tp->generation);
        if (gen == seen) {
            double t0 = lv_time_s(), budget = spin_budget(tp, t0);
            for (int i = 0;; i++) {
                lv_cpu_relax();
                gen = atomic_load(&tp->generation);
                if (gen != seen || atomic_load(&tp->stop)) break;
                if ((i & 63) == 63 && lv_time_s() - t0 > budget) break;
            }
        }
        if (gen == seen && !atomic_load(&tp->stop)) {
            pthread_mutex_lock(&tp->mutex);
            atomic_fetch_add(&tp->n_sleeping, 1);
            while ((gen = atomic_load(&tp->generation)) == seen && !atomic_load(&tp->stop))
                pthread_cond_wait(&tp->cond_job, &tp->mutex);
            atomic_fetch_sub(&tp->n_sleeping, 1);
            pthread_mutex_unlock(&tp->mutex);
        }
        if (atomic_load(&tp->stop)) break;
        seen = gen;

        tp->fn(tp->arg, w->ith, tp->n_threads);
        check_preemption(tp, &pc);

        if (atomic_fetch_add(&tp->n_done, 1) + 1 == tp->n_threads - 1 && atomic_load(&tp->main_sleeping)) {
            pthread_mutex_lock(&tp->mutex);
            pthread_cond_signal(&tp->cond_done);
            pthread_mutex_unlock(&tp->mutex);
        }
    }
    return NULL;
}

lv_threadpool *lv_threadpool_create(int n_threads) {
    if (n_threads <= 0) n_threads = lv_n_cores();
    if (n_threads > 512) {
        lv_error(LV_ERR_INVALID_ARG, "thread pool: %d threads is more than the limit of 512", n_threads);
        return NULL;
    }
    lv_threadpool *tp = lv_calloc(1, sizeof(*tp));
    if (!tp) return NULL;
    tp->n_threads = n_threads;
    pthread_mutex_init(&tp->run_lock, NULL);
    pthread_mutex_init(&tp->mutex, NULL);
    pthread_cond_init(&tp->cond_job, NULL);
    pthread_cond_init(&tp->cond_done, NULL);
    pthread_cond_init(&tp->cond_bar, NULL);
    if (n_threads > 1) {
        tp->workers = lv_calloc((size_t)n_threads - 1, sizeof(worker));
        if (!tp->workers) {
            tp->n_threads = 1;
            lv_threadpool_free(tp);
            return NULL;
        }
        for (int i = 0; i < n_threads - 1; i++) {
            tp->workers[i].tp = tp;
            tp->workers[i].ith = i + 1;
            if (pthread_create(&tp->workers[i].thread, NULL, worker_main, &tp->workers[i]) != 0) {
                lv_error(LV_ERR_NOMEM, "thread pool: cannot start thread %d of %d", i + 1, n_threads);
                tp->n_threads = i + 1; /* only i workers to join */
                lv_threadpool_free(tp);
                return NULL;
            }
        }
    }
    return tp;
}

void lv_threadpool_free(lv_threadpool *tp) {
    if (!tp) return;
    if (tp->workers) {
        pthread_mutex_lock(&tp->mutex);
        atomic_store(&tp->stop, 1);
        pthread_cond_broadcast(&tp->cond_job);
        pthread_mutex_unlock(&tp->mutex);
        for (int i = 0; i < tp->n_threads - 1; i++) pthread_join(tp->workers[i].thread, NULL);
        lv_free(tp->workers);
    }
    pthread_mutex_destroy(&tp->run_lock);
    pthread_mutex_destroy(&tp->mutex);
    pthread_cond_destroy(&tp->cond_job);
    pthread_cond_destroy(&tp->cond_done);
    pthread_cond_destroy(&tp->cond_bar);
    lv_free(tp);
}

int lv_threadpool_n_threads(const lv_threadpool *tp) { return tp ? tp->n_threads : 1; }

void lv_threadpool_set_budget(lv_threadpool *tp, lv_budget *b) {
    if (tp) atomic_store(&tp->budget, b);
}

void lv_threadpool_run(lv_threadpool *tp, lv_task_fn fn, void *arg) {
    if (!tp || tp->n_threads == 1) {
        if (tp) lv_budget_pool_enter(atomic_load(&tp->budget));
        fn(arg, 0, 1);
        return;
    }
    pthread_mutex_lock(&tp->run_lock);
    lv_budget_pool_enter(atomic_load(&tp->budget));
    tp->fn = fn;
    tp->arg = arg;
    atomic_store(&tp->n_done, 0);
    atomic_store(&tp->bar_count, 0);
    atomic_fetch_add(&tp->generation, 1);
    if (atomic_load(&tp->n_sleeping) > 0) {
        pthread_mutex_lock(&tp->mutex);
        pthread_cond_broadcast(&tp->cond_job);
        pthread_mutex_unlock(&tp->mutex);
    }

    fn(arg, 0, tp->n_threads);
    static _Thread_local preempt_check pc;
    check_preemption(tp, &pc);

    /* wait for the workers: spin, then sleep */
    const int want = tp->n_threads - 1;
    double t0 = lv_time_s(), budget = spin_budget(tp, t0);
    for (int i = 0; atomic_load(&tp->n_done) < want; i++) {
        lv_cpu_relax();
        if ((i & 63) == 63 && lv_time_s() - t0 > budget) {
            pthread_mutex_lock(&tp->mutex);
            atomic_store(&tp->main_sleeping, 1);
            while (atomic_load(&tp->n_done) < want) pthread_cond_wait(&tp->cond_done, &tp->mutex);
            atomic_store(&tp->main_sleeping, 0);
            pthread_mutex_unlock(&tp->mutex);
            break;
        }
    }
    pthread_mutex_unlock(&tp->run_lock);
}

void lv_threadpool_barrier(lv_threadpool *tp) {
    if (!tp || tp->n_threads == 1) return;
    int phase = atomic_load(&tp->bar_phase);
    if (atomic_fetch_add(&tp->bar_count, 1) == tp->n_threads - 1) {
        atomic_store(&tp->bar_count, 0);
        atomic_fetch_add(&tp->bar_phase, 1);
        /* the same store-then-load protocol as job wake-ups: a waiter that has not yet counted
         * itself as sleeping will see the new phase under the mutex */
        if (atomic_load(&tp->bar_sleeping) > 0) {
            pthread_mutex_lock(&tp->mutex);
            pthread_cond_broadcast(&tp->cond_bar);
            pthread_mutex_unlock(&tp->mutex);
        }
        return;
    }
    /* spin, then sleep: never sched_yield, which keeps this core busy while the thread we wait
     * for may be queued behind another process on the other one */
    double t0 = lv_time_s(), budget = spin_budget(tp, t0);
    for (int i = 0; atomic_load(&tp->bar_phase) == phase; i++) {
        lv_cpu_relax();
        if ((i & 63) == 63 && lv_time_s() - t0 > budget) {
            pthread_mutex_lock(&tp->mutex);
            atomic_fetch_add(&tp->bar_sleeping, 1);
            while (atomic_load(&tp->bar_phase) == phase) pthread_cond_wait(&tp->cond_bar, &tp->mutex);
            atomic_fetch_sub(&tp->bar_sleeping, 1);
            pthread_mutex_unlock(&tp->mutex);
            break;
        }
    }
}

typedef struct pfor_task {
    int64_t n;
    lv_range_fn fn;
    void *arg;
} pfor_task;

static void pfor_worker(void *arg, int ith, int nth) {
    pfor_task *t = arg;
    int64_t lo, hi;
    lv_split_range(t->n, ith, nth, &lo, &hi);
    if (lo < hi) t->fn(t->arg, lo, hi, ith);
}

void lv_parallel_for(lv_threadpool *tp, int64_t n, lv_range_fn fn, void *arg) {
    if (n <= 0) return;
    pfor_task t = {n, fn, arg};
    if (!tp || tp->n_threads == 1 || n == 1) {
        if (tp) lv_budget_pool_enter(atomic_load(&tp->budget));
        fn(arg, 0, n, 0);
        return;
    }
    lv_threadpool_run(tp, pfor_worker, &t);
}
