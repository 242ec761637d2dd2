/* Unit tests of the simulator's retry backoff and its generator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "device-sim/backoff.h"

#define DRAWS 20000

static void test_rand(void **state)
{
    uint64_t s = sim_rand_seed(0);
    assert_true(s != 0);
    /* A zero state does not stick at zero. */
    uint64_t z = 0;
    sim_rand_next(&z);
    assert_true(z != 0);

    double sum = 0, lo = 1, hi = 0;
    for (int i = 0; i < DRAWS; i++) {
        double u = sim_rand_unit(&s);
        assert_true(u >= 0 && u < 1);
        sum += u;
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
    }
    assert_true(sum / DRAWS > 0.48 && sum / DRAWS < 0.52);
    assert_true(lo < 0.001 && hi > 0.999);
    /* Neighbouring seeds give different streams. */
    uint64_t a = sim_rand_seed(1), b = sim_rand_seed(2);
    assert_true(sim_rand_next(&a) != sim_rand_next(&b));
}

static void test_growth_and_cap(void **state)
{
    /* Over many meters, the largest delay seen at attempt k approaches min(cap, base * 2^k)
     * and never exceeds it. */
    const uint32_t base = 100, cap = 30000;
    uint32_t seen_max[12] = {0};
    double mean[12] = {0};
    for (uint64_t seed = 0; seed < 2000; seed++) {
        sim_backoff_t b;
        sim_backoff_init(&b, seed, base, cap);
        for (unsigned k = 0; k < 12; k++) {
            uint32_t window = base << k < cap ? base << k : cap;
            uint32_t d = sim_backoff_next(&b, 0);
            assert_true(d <= window);
            seen_max[k] = d > seen_max[k] ? d : seen_max[k];
            mean[k] += d / 2000.0;
        }
    }
    for (unsigned k = 0; k < 12; k++) {
        uint32_t window = base << k < cap ? base << k : cap;
        assert_true(seen_max[k] >= window * 0.99);
        /* Full jitter: the mean is half the window. */
        assert_true(mean[k] > window * 0.45 && mean[k] < window * 0.55);
    }
}

static void test_cap_after_many_attempts(void **state)
{
    sim_backoff_t b;
    sim_backoff_init(&b, 7, 500, 60000);
    uint32_t hi = 0;
    /* Far past the point where base << attempt would overflow. */
    for (int i = 0; i < 1000; i++) {
        uint32_t d = sim_backoff_next(&b, 0);
        assert_true(d <= 60000);
        hi = d > hi ? d : hi;
    }
    assert_true(hi > 50000);
    assert_int_equal(b.attempt, 1000);

    /* A cap below base: the cap still wins. */
    sim_backoff_init(&b, 7, 1000, 10);
    for (int i = 0; i < 100; i++)
        assert_true(sim_backoff_next(&b, 0) <= 10);
}

static void test_retry_after(void **state)
{
    sim_backoff_t b;
    sim_backoff_init(&b, 11, 250, 5000);
    for (uint32_t ra = 1; ra < 200; ra++) {
        uint32_t d = sim_backoff_next(&b, ra);
        assert_true(d >= ra * 1000);
        assert_true(d <= ra * 1000 + 250);
    }
    /* Retry-After beyond the cap is still honoured. */
    uint32_t d = sim_backoff_next(&b, 3600);
    assert_true(d >= 3600000 && d <= 3600250);
    /* An absurd Retry-After saturates rather than wrapping to a short delay. */
    assert_int_equal(sim_backoff_next(&b, UINT32_MAX), UINT32_MAX);

    /* The jitter actually spreads meters told the same Retry-After. */
    uint32_t lo = UINT32_MAX, hi = 0;
    for (uint64_t seed = 0; seed < 1000; seed++) {
        sim_backoff_init(&b, seed, 250, 5000);
        d = sim_backoff_next(&b, 5);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo < 5000 + 10);
    assert_true(hi > 5000 + 240);
}

static void test_reset(void **state)
{
    sim_backoff_t b;
    sim_backoff_init(&b, 5, 100, 100000);
    for (int i = 0; i < 10; i++)
        sim_backoff_next(&b, 0);
    assert_int_equal(b.attempt, 10);
    sim_backoff_reset(&b);
    assert_int_equal(b.attempt, 0);
    /* The first retry after a success is back within base_ms. */
    for (int i = 0; i < 100; i++) {
        assert_true(sim_backoff_next(&b, 0) <= 100);
        sim_backoff_reset(&b);
    }
}

static void test_deterministic_per_seed(void **state)
{
    sim_backoff_t a, b, c;
    sim_backoff_init(&a, 1234, 100, 20000);
    sim_backoff_init(&b, 1234, 100, 20000);
    sim_backoff_init(&c, 1235, 100, 20000);
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        uint32_t ra = i % 7 == 6 ? 2 : 0;
        uint32_t x = sim_backoff_next(&a, ra), y = sim_backoff_next(&b, ra);
        uint32_t z = sim_backoff_next(&c, ra);
        assert_int_equal(x, y);
        differ += x != z;
        if (i % 13 == 12) {
            sim_backoff_reset(&a);
            sim_backoff_reset(&b);
            sim_backoff_reset(&c);
        }
    }
    assert_true(differ > 150);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rand),
        cmocka_unit_test(test_growth_and_cap),
        cmocka_unit_test(test_cap_after_many_attempts),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_deterministic_per_seed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
