/*
 * test_budget.c: the shared thread budget (core/budget.c) with a real pool and helper threads:
 * never more busy threads than tokens (counted by the threads themselves, not by the budget),
 * urgent helpers get the pool's tokens at a job boundary, idle ones run while the pool is idle,
 * and neither a stopped helper nor a helper that quits holding up the pool deadlocks.
 */
#include "core/core.h"
#include "lv_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

static _Atomic int busy, max_busy;
static _Atomic int filled; /* urgent slices since the urgency was raised (the reader's frames ahead) */

static void busy_begin(void) {
    const int b = atomic_fetch_add(&busy, 1) + 1;
    int m = atomic_load(&max_busy);
    while (b > m && !atomic_compare_exchange_weak(&max_busy, &m, b)) {}
}
static void busy_end(void) { atomic_fetch_sub(&busy, 1); }
static void spin_us(double us) {
    const double t = lv_time_s();
    while ((lv_time_s() - t) * 1e6 < us) {}
}
static void sleep_us(long us) {
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

static void pool_job(void *arg, int ith, int nth) {
    (void)arg, (void)ith, (void)nth;
    busy_begin();
    spin_us(30);
    busy_end();
}

typedef struct helper {
    lv_budget *b;
    _Atomic bool *urgent, *stop;
    pthread_t th;
    int64_t slices, slices_urgent;
    bool holding;
} helper;

static void *helper_main(void *arg) {
    helper *h = arg;
    while (lv_budget_worker_enter(h->b, &h->holding, h->urgent, h->stop)) {
        busy_begin();
        const bool u = atomic_load(h->urgent);
        spin_us(50);
        busy_end();
        if (u) {
            h->slices_urgent++;
            /* as the reader's high-water mark: urgent until enough was made ahead */
            if (atomic_fetch_add(&filled, 1) + 1 >= 8) {
                atomic_store(h->urgent, false);
                lv_budget_kick(h->b);
            }
        }
        if (++h->slices % 7 == 0) {
            /* as the reader before it waits on its gate */
            lv_budget_worker_leave(h->b, &h->holding);
            sleep_us(100);
        }
    }
    lv_budget_worker_leave(h->b, &h->holding);
    return NULL;
}

TEST(budget_never_more_busy_threads_than_tokens) {
    for (int n = 1; n <= 3; n++) {
        lv_threadpool *tp = lv_threadpool_create(n);
        lv_budget *b = lv_budget_create(n);
        REQUIRE(tp && b, "pool, budget");
        lv_threadpool_set_budget(tp, b);
        _Atomic bool urgent = true, stop = false;
        enum { H = 4 };
        helper hs[H];
        atomic_store(&busy, 0);
        atomic_store(&max_busy, 0);
        for (int i = 0; i < H; i++) {
            memset(&hs[i], 0, sizeof(hs[i]));
            hs[i].b = b;
            hs[i].urgent = &urgent;
            hs[i].stop = &stop;
            REQUIRE(pthread_create(&hs[i].th, NULL, helper_main, &hs[i]) == 0, "helper thread");
        }
        int64_t jobs = 0;
        for (int round = 0; round < 60; round++) {
            /* urgency flips every few rounds (as the reader's low / high water marks) */
            if (round % 4 == 0) {
                atomic_store(&filled, 0);
                atomic_store(&urgent, true);
                lv_budget_kick(b);
            }
            for (int j = 0; j < 20; j++, jobs++) lv_threadpool_run(tp, pool_job, NULL);
            if (round % 3 == 0) {
                /* the consumer waits for a frame: its pool's tokens go to the helpers */
                lv_budget_pool_leave(b);
                sleep_us(300);
            }
        }
        atomic_store(&stop, true);
        lv_budget_kick(b);
        int64_t slices = 0, slices_urgent = 0;
        for (int i = 0; i < H; i++) {
            pthread_join(hs[i].th, NULL);
            slices += hs[i].slices;
            slices_urgent += hs[i].slices_urgent;
        }
        lv_budget_pool_leave(b);
        lv_budget_stats s;
        lv_budget_get_stats(b, &s);
        CHECK(atomic_load(&max_busy) <= n, "n=%d: %d threads busy at once", n, atomic_load(&max_busy));
        CHECK(s.max_held <= n && s.held == 0, "n=%d: budget held at most %d, %d at the end", n, s.max_held, s.held);
        CHECK(jobs == 1200 && slices > 0 && slices_urgent > 0, "n=%d: %lld jobs, %lld helper slices (%lld urgent)", n, (long long)jobs,
              (long long)slices, (long long)slices_urgent);
        CHECK(s.n_pool_yields > 0, "n=%d: the pool never gave its tokens to an urgent helper", n);
        CHECK(s.held_s > 0 && s.held_s <= n * s.wall_s * (1 + 1e-9), "n=%d: %.4f token-seconds in %.4f s", n, s.held_s, s.wall_s);
        lv_threadpool_set_budget(tp, NULL);
        lv_budget_free(b);
        lv_threadpool_free(tp);
    }
}

/* The pool holds its tokens and never runs another job (its stage failed): helpers waiting for a
 * token, urgent or not, return once stop is set. */
TEST(budget_stop_wakes_waiting_helpers) {
    lv_threadpool *tp = lv_threadpool_create(2);
    lv_budget *b = lv_budget_create(2);
    REQUIRE(tp && b, "pool, budget");
    lv_threadpool_set_budget(tp, b);
    lv_threadpool_run(tp, pool_job, NULL); /* the pool now holds both tokens */
    _Atomic bool urgent = false, stop = false, urgent2 = true;
    helper hs[2];
    memset(hs, 0, sizeof(hs));
    hs[0] = (helper){.b = b, .urgent = &urgent, .stop = &stop};
    hs[1] = (helper){.b = b, .urgent = &urgent2, .stop = &stop};
    for (int i = 0; i < 2; i++) REQUIRE(pthread_create(&hs[i].th, NULL, helper_main, &hs[i]) == 0, "helper");
    sleep_us(20000);
    lv_budget_stats s;
    lv_budget_get_stats(b, &s);
    CHECK(hs[0].slices == 0 && hs[1].slices == 0 && s.held == 2, "helpers ran while the pool held every token (%lld, %lld; held %d)",
          (long long)hs[0].slices, (long long)hs[1].slices, s.held);
    atomic_store(&stop, true);
    lv_budget_kick(b);
    for (int i = 0; i < 2; i++) pthread_join(hs[i].th, NULL);
    lv_budget_get_stats(b, &s);
    CHECK(s.n_worker_takes == 0 && s.held == 2, "takes %lld, held %d", (long long)s.n_worker_takes, s.held);
    lv_budget_pool_leave(b);
    lv_threadpool_set_budget(tp, NULL);
    lv_budget_free(b);
    lv_threadpool_free(tp);
}

/* An urgent helper holds a token and quits (its stage failed) while the pool waits for it: the
 * pool gets its tokens once the helper lets go, and runs. */
static void *quitter(void *arg) {
    helper *h = arg;
    if (lv_budget_worker_enter(h->b, &h->holding, h->urgent, h->stop)) {
        h->slices++;
        sleep_us(20000);
    }
    lv_budget_worker_leave(h->b, &h->holding);
    return NULL;
}

TEST(budget_pool_waits_for_a_quitting_helper) {
    lv_threadpool *tp = lv_threadpool_create(2);
    lv_budget *b = lv_budget_create(2);
    REQUIRE(tp && b, "pool, budget");
    lv_threadpool_set_budget(tp, b);
    _Atomic bool urgent = true, stop = false;
    helper h = {.b = b, .urgent = &urgent, .stop = &stop};
    REQUIRE(pthread_create(&h.th, NULL, quitter, &h) == 0, "helper");
    lv_budget_stats s;
    for (int i = 0; i < 1000; i++) {
        lv_budget_get_stats(b, &s);
        if (s.held) break;
        sleep_us(1000);
    }
    CHECK(s.held == 1, "the helper holds %d tokens", s.held);
    atomic_store(&busy, 0);
    atomic_store(&max_busy, 0);
    const double t = lv_time_s();
    lv_threadpool_run(tp, pool_job, NULL);
    const double dt = lv_time_s() - t;
    pthread_join(h.th, NULL);
    lv_budget_get_stats(b, &s);
    CHECK(h.slices == 1 && dt > 0.005 && s.max_held <= 2 && s.held == 2, "the job ran after %.4f s, max held %d, held %d", dt, s.max_held, s.held);
    lv_budget_pool_leave(b);
    lv_threadpool_set_budget(tp, NULL);
    lv_budget_free(b);
    lv_threadpool_free(tp);
}
