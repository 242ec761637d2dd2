/* Unit tests of the per-device token buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ingest/ratelimit.h"

static void test_burst_then_refill(void **state)
{
    ing_ratelimit_t *rl = ing_ratelimit_new(2.0, 5.0, 1024);
    double retry = 0;
    for (int i = 0; i < 5; i++)
        assert_true(ing_ratelimit_take(rl, 42, 100.0, &retry));
    assert_false(ing_ratelimit_take(rl, 42, 100.0, &retry));
    assert_true(retry > 0.49 && retry < 0.51);
    /* another device is unaffected */
    assert_true(ing_ratelimit_take(rl, 43, 100.0, &retry));
    /* half a second later one token is back */
    assert_true(ing_ratelimit_take(rl, 42, 100.5, &retry));
    assert_false(ing_ratelimit_take(rl, 42, 100.5, &retry));
    /* refill never exceeds the burst */
    for (int i = 0; i < 5; i++)
        assert_true(ing_ratelimit_take(rl, 42, 1000.0, &retry));
    assert_false(ing_ratelimit_take(rl, 42, 1000.0, &retry));
    ing_ratelimit_free(rl);
}

static void test_bounded_table_evicts(void **state)
{
    ing_ratelimit_t *rl = ing_ratelimit_new(1.0, 1.0, 64);
    double retry;
    /* far more keys than capacity: must neither crash nor refuse fresh keys */
    for (uint64_t k = 1; k <= 100000; k++)
        assert_true(ing_ratelimit_take(rl, k, (double)k, &retry));
    ing_ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refill),
        cmocka_unit_test(test_bounded_table_evicts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
