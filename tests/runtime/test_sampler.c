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
