/*
 * test_sampler.c: greedy, the top-k / top-p / min-p / temperature chain, seeds.
 */
#include "longview.h"
#include "lv_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static lv_sampler *mk(float temp, int32_t k, float p, float minp, uint64_t seed, int32_t V) {
    lv_sampler_params sp = {.temp = temp, .top_k = k, .top_p = p, .min_p = minp, .seed = seed};
    lv_sampler *s = NULL;
    return lv_sampler_create(sp, V, &s) == LV_OK ? s : NULL;
}

TEST(greedy_picks_the_argmax_lowest_id_on_ties) {
    float lg[10] = {0, 1, 5, 3, 5, -1, 2, 5, 0, 0};
    lv_sampler *s = mk(0, 0, 1, 0, 1, 10);
    REQUIRE(s, "create");
    CHECK(lv_sampler_sample(s, lg) == 2, "argmax with ties -> lowest id");
    lg[9] = 9;
    CHECK(lv_sampler_sample(s, lg) == 9, "last element");
    lv_sampler_free(s);
    lv_sampler *k1 = mk(1.0f, 1, 1, 0, 7, 10);
    CHECK(lv_sampler_sample(k1, lg) == 9, "top-k 1 is greedy");
    lv_sampler_free(k1);
}

TEST(sampling_follows_the_softmax_and_filters) {
    const int V = 6;
    float lg[6] = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, -8.0f};
    int counts[6] = {0};
    lv_sampler *s = mk(1.0f, 0, 1.0f, 0.0f, lv_test_seed(), V);
    REQUIRE(s, "create");
    const int N = 40000;
    for (int i = 0; i < N; i++) counts[lv_sampler_sample(s, lg)]++;
    double z = 0;
    for (int i = 0; i < V; i++) z += exp(lg[i]);
    for (int i = 0; i < V; i++) {
        const double p = exp(lg[i]) / z, sd = sqrt(N * p * (1 - p)) + 1;
        CHECK(fabs(counts[i] - N * p) <= 5 * sd, "token %d: %d draws, expected %.0f", i, counts[i], N * p);
    }
    lv_sampler_free(s);
    /* top-k 2: only ids 0, 1 */
    s = mk(1.0f, 2, 1.0f, 0, 3, V);
    for (int i = 0; i < 2000; i++) CHECK(lv_sampler_sample(s, lg) <= 1, "top-k");
    lv_sampler_free(s);
    /* top-p 0.5: p0 = 0.53 alone covers it */
    s = mk(1.0f, 0, 0.5f, 0, 4, V);
    for (int i = 0; i < 2000; i++) CHECK(lv_sampler_sample(s, lg) == 0, "top-p");
    lv_sampler_free(s);
    /* min-p 0.3: keep p >= 0.3 p_max, i.e. logit >= 2 + ln 0.3 = 0.796: ids 0, 1 */
    s = mk(1.0f, 0, 1.0f, 0.3f, 5, V);
    for (int i = 0; i < 2000; i++) CHECK(lv_sampler_sample(s, lg) <= 1, "min-p");
    lv_sampler_free(s);
    /* very low temperature concentrates on the best */
    s = mk(0.01f, 0, 1.0f, 0, 6, V);
    for (int i = 0; i < 200; i++) CHECK(lv_sampler_sample(s, lg) == 0, "low temperature");
    lv_sampler_free(s);
}

TEST(same_seed_same_draws) {
    const int V = 1000;
    float *lg = malloc(sizeof(float) * V);
    lv_test_rng r = {lv_test_seed()};
    for (int i = 0; i < V; i++) lg[i] = lv_test_rng_f32(&r) * 3;
    lv_sampler *a = mk(0.9f, 50, 0.9f, 0.02f, 1234, V), *b = mk(0.9f, 50, 0.9f, 0.02f, 1234, V), *c = mk(0.9f, 50, 0.9f, 0.02f, 999, V);
    REQUIRE(a && b && c, "create");
    int diff_c = 0;
    for (int i = 0; i < 500; i++) {
        lv_token ta = lv_sampler_sample(a, lg), tb = lv_sampler_sample(b, lg), tc = lv_sampler_sample(c, lg);
        CHECK(ta == tb, "same seed, step %d", i);
        diff_c += ta != tc;
    }
    CHECK(diff_c > 0, "another seed draws differently");
    lv_sampler_free(a);
    lv_sampler_free(b);
    lv_sampler_free(c);
    free(lg);
    lv_sampler *bad = NULL;
    lv_sampler_params sp = lv_sampler_default_params();
    CHECK(lv_sampler_create(sp, 0, &bad) == LV_ERR_INVALID_ARG && !bad, "n_vocab 0 refused");
    sp.temp = NAN;
    CHECK(lv_sampler_create(sp, 10, &bad) == LV_ERR_INVALID_ARG && !bad, "NaN refused");
}

/* ---- penalties and logprobs against slow references ---- */

#include "runtime/runtime.h"

/* the formula, from the whole list of accepted tokens: count each token among the last n */
static void ref_penalties(const float *lg, int V, const lv_token *acc, int n_acc, int last_n, float rep, float freq, float pres, float *out) {
    memcpy(out, lg, sizeof(float) * (size_t)V);
    const int from = n_acc - last_n > 0 ? n_acc - last_n : 0;
    for (int t = 0; t < V; t++) {
        int c = 0;
        for (int i = from; i < n_acc; i++) c += acc[i] == t;
        if (c == 0) continue;
        float l = lg[t];
        l = l <= 0 ? l * rep : l / rep;
        out[t] = l - (float)c * freq - pres;
    }
}

TEST(sampler_penalties_match_the_formula) {
    lv_test_rng r = {lv_test_seed()};
    const int V = 97;
    float lg[97], want[97];
    lv_token acc[300];
    int cases = 0, changed = 0;
    for (int tc = 0; tc < 200; tc++) {
        lv_sampler_params sp = lv_sampler_default_params();
        sp.temp = 0;
        sp.penalty_last_n = 1 + (int)(lv_test_rng_u64(&r) % 80);
        sp.penalty_repeat = tc % 4 == 0 ? 1.0f : 0.5f + 1.5f * (float)lv_test_rng_unit(&r);
        sp.penalty_freq = tc % 4 == 1 ? 0.0f : 2.0f * lv_test_rng_f32(&r);
        sp.penalty_present = tc % 4 == 2 ? 0.0f : 2.0f * lv_test_rng_f32(&r);
        lv_sampler *s = NULL;
        REQUIRE(lv_sampler_create(sp, V, &s) == LV_OK, "create");
        const int n_acc = (int)(lv_test_rng_u64(&r) % 300);
        /* few distinct tokens, so that counts > 1 happen */
        for (int i = 0; i < n_acc; i++) acc[i] = (lv_token)(lv_test_rng_u64(&r) % (tc % 2 ? 12 : (uint64_t)V));
        for (int i = 0; i < n_acc; i++) lv_sampler_accept(s, acc[i]);
        for (int rep = 0; rep < 2; rep++) { /* twice: the counts survive a call */
            for (int i = 0; i < V; i++) lg[i] = 4 * lv_test_rng_f32(&r);
            ref_penalties(lg, V, acc, n_acc, sp.penalty_last_n, sp.penalty_repeat, sp.penalty_freq, sp.penalty_present, want);
            const float *got = lv_sampler_penalized(s, lg);
            int bad = 0, best = 0;
            for (int i = 0; i < V; i++) {
                bad += got[i] != want[i];
                if (want[i] > want[best]) best = i;
                changed += want[i] != lg[i];
            }
            CHECK(bad == 0, "case %d: %d logits differ from the formula (last_n %d, %d accepted)", tc, bad, sp.penalty_last_n, n_acc);
            CHECK(lv_sampler_sample(s, lg) == best, "case %d: greedy takes the argmax of the penalized logits", tc);
            cases++;
        }
        lv_sampler_free(s);
    }
    CHECK(changed > 1000, "the penalties changed only %d logits in %d cases", changed, cases);
    /* off: last_n 0, or neutral values: the logits themselves */
    lv_sampler_params sp = lv_sampler_default_params();
    sp.penalty_last_n = 0;
    sp.penalty_freq = 1;
    lv_sampler *s = NULL;
    REQUIRE(lv_sampler_create(sp, V, &s) == LV_OK, "create");
    lv_sampler_accept(s, 3);
    CHECK(lv_sampler_penalized(s, lg) == lg, "last_n 0: off");
    lv_sampler_free(s);
    sp = (lv_sampler_params){.temp = 0}; /* a zeroed struct: repeat 0 is read as 1, penalties off */
    REQUIRE(lv_sampler_create(sp, V, &s) == LV_OK, "create zeroed");
    lv_sampler_accept(s, 3);
    CHECK(lv_sampler_penalized(s, lg) == lg, "zeroed params: off");
    lv_sampler_free(s);
    sp = lv_sampler_default_params();
    sp.penalty_last_n = -1;
    CHECK(lv_sampler_create(sp, V, &s) == LV_ERR_INVALID_ARG && !s, "last_n -1 refused");
    sp = lv_sampler_default_params();
    sp.penalty_repeat = -1;
    CHECK(lv_sampler_create(sp, V, &s) == LV_ERR_INVALID_ARG && !s, "negative repeat refused");
    sp.penalty_repeat = 1;
    sp.penalty_freq = NAN;
    CHECK(lv_sampler_create(sp, V, &s) == LV_ERR_INVALID_ARG && !s, "NaN penalty refused");
}

TEST(sampler_token_logprobs_match_a_sort) {
    lv_test_rng r = {lv_test_seed()};
    enum { V = 300 };
    float lg[V];
    lv_token ids[21];
    float lps[21];
    for (int tc = 0; tc < 100; tc++) {
        for (int i = 0; i < V; i++) lg[i] = 6 * lv_test_rng_f32(&r);
        if (tc % 3 == 0) /* ties */
            for (int i = 0; i < V; i += 7) lg[i] = 2.5f;
        if (tc % 5 == 0) lg[tc] = -INFINITY;
        if (tc % 7 == 0) lg[tc + 1] = NAN;
        double mx = -INFINITY, sum = 0;
        for (int i = 0; i < V; i++)
            if (lg[i] > mx) mx = lg[i];
        for (int i = 0; i < V; i++)
            if (lg[i] == lg[i]) sum += exp(lg[i] - mx);
        const int k = tc % 21;
        const lv_token tok = (lv_token)(lv_test_rng_u64(&r) % V);
        const float lp = lv_token_logprobs(lg, V, tok, k, ids, lps);
        const double want = lg[tok] == lg[tok] ? lg[tok] - mx - log(sum) : -INFINITY;
        CHECK(lp == (float)want || fabs(lp - want) < 1e-5, "case %d: logprob of %d: %g, want %g", tc, tok, lp, want);
        /* the reference top list: selection by repeated scans (larger first, ties to the lower id) */
        bool used[V] = {0};
        double psum = 0;
        for (int j = 0; j < k; j++) {
            int b = -1;
            for (int i = 0; i < V; i++) {
                const float li = lg[i] == lg[i] ? lg[i] : -INFINITY;
                if (used[i]) continue;
                if (b < 0 || li > (lg[b] == lg[b] ? lg[b] : -INFINITY)) b = i;
            }
            used[b] = true;
            const double wl = lg[b] == lg[b] ? lg[b] - mx - log(sum) : -INFINITY;
            CHECK(ids[j] == b, "case %d: top %d is %d, want %d", tc, j, ids[j], b);
            CHECK(lps[j] <= 0 && (lps[j] == (float)wl || fabs(lps[j] - wl) < 1e-5), "case %d: top %d logprob %g, want %g", tc, j, lps[j], wl);
            psum += exp(lps[j]);
        }
        CHECK(psum <= 1 + 1e-6, "case %d: top probabilities sum to %g", tc, psum);
        if (k > 0) CHECK(lps[0] >= lp, "case %d: the best is at least the token's", tc);
    }
}
