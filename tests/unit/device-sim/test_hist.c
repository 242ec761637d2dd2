/* Unit tests of the simulator's log-linear latency histogram. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "device-sim/backoff.h"
#include "device-sim/hist.h"

#define N 100000

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The nearest-rank quantile of sorted v: v[ceil(q * n) - 1]. */
static uint64_t exact_quantile(const uint64_t *v, size_t n, double q)
{
    size_t rank = (size_t)(q * (double)n);
    if ((double)rank < q * (double)n)
        rank++;
    if (rank == 0)
        rank = 1;
    return v[rank - 1];
}

static const double qs[] = {0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1};

/* Records v, then checks every quantile against the exact one: never below it (an upper edge)
 * and less than 2 % above it. */
static void check_against_exact(uint64_t *v, size_t n)
{
    sim_hist_t *h = malloc(sizeof(*h));
    assert_non_null(h);
    sim_hist_init(h);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        sim_hist_record(h, v[i]);
        sum += (double)v[i];
    }
    qsort(v, n, sizeof(*v), cmp_u64);
    assert_int_equal(h->total, n);
    assert_int_equal(h->min, v[0]);
    assert_int_equal(h->max, v[n - 1]);
    assert_true(sim_hist_mean(h) == sum / (double)n);
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        uint64_t want = exact_quantile(v, n, qs[i]);
        uint64_t got = sim_hist_quantile(h, qs[i]);
        assert_true(got >= want);
        assert_true((double)(got - want) <= 0.02 * (double)want);
    }
    assert_int_equal(sim_hist_quantile(h, 0), v[0]);
    assert_int_equal(sim_hist_quantile(h, 1), v[n - 1]);
    free(h);
}

static void test_uniform(void **state)
{
    uint64_t rng = sim_rand_seed(1);
    uint64_t *v = malloc(N * sizeof(*v));
    assert_non_null(v);
    for (size_t i = 0; i < N; i++)
        v[i] = 1 + sim_rand_next(&rng) % 5000000; /* up to 5 s */
    check_against_exact(v, N);
    free(v);
}

static void test_skewed(void **state)
{
    /* Log-normal-ish latencies: most around 2 ms, a long tail to minutes. */
    uint64_t rng = sim_rand_seed(2);
    uint64_t *v = malloc(N * sizeof(*v));
    assert_non_null(v);
    for (size_t i = 0; i < N; i++) {
        double u = sim_rand_unit(&rng);
        double x = 2000.0;
        while (u < 0.3 && x < 1e8) {
            x *= 4;
            u = sim_rand_unit(&rng);
        }
        v[i] = (uint64_t)(x * (0.5 + sim_rand_unit(&rng)));
    }
    check_against_exact(v, N);
    free(v);
}

static void test_small_values_exact(void **state)
{
    /* Below 128 us every value has a bucket of its own. */
    uint64_t v[256];
    for (size_t i = 0; i < 256; i++)
        v[i] = i % 128;
    sim_hist_t h;
    sim_hist_init(&h);
    for (size_t i = 0; i < 256; i++)
        sim_hist_record(&h, v[i]);
    qsort(v, 256, sizeof(*v), cmp_u64);
    for (double q = 0; q <= 1.0; q += 0.01)
        assert_int_equal(sim_hist_quantile(&h, q), exact_quantile(v, 256, q));
    check_against_exact(v, 256);
}

static void test_empty(void **state)
{
    sim_hist_t h;
    sim_hist_init(&h);
    assert_int_equal(h.total, 0);
    assert_int_equal(sim_hist_quantile(&h, 0.5), 0);
    assert_int_equal(sim_hist_quantile(&h, 1), 0);
    assert_true(sim_hist_mean(&h) == 0);

    /* Merging an empty histogram changes nothing, into an empty one neither. */
    sim_hist_t a;
    sim_hist_init(&a);
    sim_hist_merge(&a, &h);
    assert_int_equal(a.total, 0);
    sim_hist_record(&a, 500);
    sim_hist_merge(&a, &h);
    assert_int_equal(a.total, 1);
    assert_int_equal(a.min, 500);
    assert_int_equal(a.max, 500);
    sim_hist_merge(&h, &a);
    assert_int_equal(h.min, 500);
    assert_int_equal(h.max, 500);
    assert_int_equal(sim_hist_quantile(&h, 0.5), 500);
}

static void test_min_max_single(void **state)
{
    sim_hist_t h;
    sim_hist_init(&h);
    sim_hist_record(&h, 123457);
    /* One value: every quantile is it (the bucket edge is clamped to max). */
    assert_int_equal(sim_hist_quantile(&h, 0), 123457);
    assert_int_equal(sim_hist_quantile(&h, 0.5), 123457);
    assert_int_equal(sim_hist_quantile(&h, 1), 123457);
    sim_hist_record(&h, 7);
    sim_hist_record(&h, 9000000);
    assert_int_equal(h.min, 7);
    assert_int_equal(h.max, 9000000);
    assert_int_equal(sim_hist_quantile(&h, 0), 7);
    assert_int_equal(sim_hist_quantile(&h, 1), 9000000);
    assert_true(sim_hist_mean(&h) == (123457.0 + 7 + 9000000) / 3);
    /* Out-of-range q is clamped. */
    assert_int_equal(sim_hist_quantile(&h, -1), 7);
    assert_int_equal(sim_hist_quantile(&h, 2), 9000000);
}

static void test_merge(void **state)
{
    uint64_t rng = sim_rand_seed(3);
    sim_hist_t *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b)), *all = malloc(sizeof(*all));
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(all);
    sim_hist_init(a);
    sim_hist_init(b);
    sim_hist_init(all);
    for (int i = 0; i < 20000; i++) {
        /* b holds the slow half, so min comes from a and max from b. */
        uint64_t fast = 100 + sim_rand_next(&rng) % 10000;
        uint64_t slow = 50000 + sim_rand_next(&rng) % 1000000;
        sim_hist_record(a, fast);
        sim_hist_record(b, slow);
        sim_hist_record(all, fast);
        sim_hist_record(all, slow);
    }
    sim_hist_merge(a, b);
    assert_int_equal(a->total, all->total);
    assert_int_equal(a->min, all->min);
    assert_int_equal(a->max, all->max);
    assert_memory_equal(a->counts, all->counts, sizeof(a->counts));
    assert_true(sim_hist_mean(a) > 0);
    assert_true(sim_hist_mean(a) == sim_hist_mean(all) ||
                (sim_hist_mean(a) - sim_hist_mean(all)) / sim_hist_mean(all) < 1e-12);
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
        assert_int_equal(sim_hist_quantile(a, qs[i]), sim_hist_quantile(all, qs[i]));
    /* src is untouched. */
    assert_int_equal(b->total, 20000);
    free(a);
    free(b);
    free(all);
}

/* A step's histogram: the later snapshot less the earlier holds exactly what came between. */
static void test_sub(void **state)
{
    sim_hist_t *h = malloc(sizeof(*h)), *early = malloc(sizeof(*early)),
               *late = malloc(sizeof(*late));
    (void)state;
    assert_non_null(h);
    assert_non_null(early);
    assert_non_null(late);
    sim_hist_init(h);
    sim_hist_init(late);
    for (uint64_t v = 1; v <= 1000; v++)
        sim_hist_record(h, v);
    *early = *h;
    for (uint64_t v = 100000; v < 100100; v++) {
        sim_hist_record(h, v);
        sim_hist_record(late, v);
    }
    sim_hist_sub(h, early);
    assert_int_equal(h->total, 100);
    assert_memory_equal(h->counts, late->counts, sizeof(h->counts));
    assert_int_equal(sim_hist_quantile(h, 0.5), sim_hist_quantile(late, 0.5));
    free(h);
    free(early);
    free(late);
}

static void test_huge_values_clamp(void **state)
{
    sim_hist_t h;
    sim_hist_init(&h);
    /* Beyond the covered range (2^37 us): counted in the last bucket, min/max/mean exact. */
    sim_hist_record(&h, UINT64_MAX);
    sim_hist_record(&h, (uint64_t)1 << 40);
    sim_hist_record(&h, 1000);
    assert_int_equal(h.total, 3);
    assert_int_equal(h.max, UINT64_MAX);
    assert_int_equal(h.min, 1000);
    assert_int_equal(h.counts[SIM_HIST_POW * SIM_HIST_SUB - 1], 2);
    assert_int_equal(sim_hist_quantile(&h, 0), 1000);
    assert_int_equal(sim_hist_quantile(&h, 1), UINT64_MAX);
    /* The quantile of a clamped value is max: not invented, never below the true value. */
    assert_true(sim_hist_quantile(&h, 0.5) >= (uint64_t)1 << 40);
    assert_true(sim_hist_mean(&h) > 6e18);

    /* Values at the top of the covered range still meet the error bound. */
    uint64_t top = ((uint64_t)1 << 37) - 1;
    sim_hist_t t;
    sim_hist_init(&t);
    sim_hist_record(&t, top - 1000000);
    sim_hist_record(&t, 3600ull * 1000000);
    assert_true(sim_hist_quantile(&t, 0.5) >= 3600ull * 1000000);
    assert_true((double)sim_hist_quantile(&t, 0.5) <= 1.02 * 3600e6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform), cmocka_unit_test(test_sub),
        cmocka_unit_test(test_skewed),  cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_empty),   cmocka_unit_test(test_min_max_single),
        cmocka_unit_test(test_merge),   cmocka_unit_test(test_huge_values_clamp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
