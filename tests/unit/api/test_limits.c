/*
 * Unit tests of meterhub-api's failed-login limits (api/server/limits.c): per username and
 * per address, fixed windows, success resets the username, registrations count against the
 * address alone. No server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/server/limits.c"

static void test_per_account(void **state)
{
    (void)state;
    api_limits_t *l = api_limits_new(3, 100, 300);
    assert_non_null(l);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(api_limits_check(l, "alice", "10.0.0.1", 1000), 0);
        api_limits_failed(l, "alice", "10.0.0.1", 1000);
    }
    /* The fourth try waits for the rest of the window, whatever the address. */
    assert_int_equal(api_limits_check(l, "alice", "10.0.0.1", 1010), 290);
    assert_int_equal(api_limits_check(l, "alice", "10.9.9.9", 1010), 290);
    /* Another username is not affected. */
    assert_int_equal(api_limits_check(l, "bob", "10.0.0.1", 1010), 0);
    /* A new window starts afresh. */
    assert_int_equal(api_limits_check(l, "alice", "10.0.0.1", 1300), 0);
    api_limits_free(l);
}

static void test_per_address(void **state)
{
    (void)state;
    api_limits_t *l = api_limits_new(100, 5, 60);
    for (int i = 0; i < 5; i++)
        api_limits_failed(l, i % 2 ? "a" : "b", "192.0.2.7", 0);
    /* Spraying many usernames from one address is stopped too. */
    assert_int_equal(api_limits_check(l, "c", "192.0.2.7", 10), 50);
    assert_int_equal(api_limits_check(l, "c", "192.0.2.8", 10), 0);
    api_limits_free(l);
}

static void test_success_resets_account(void **state)
{
    (void)state;
    api_limits_t *l = api_limits_new(2, 100, 300);
    api_limits_failed(l, "alice", "10.0.0.1", 0);
    api_limits_succeeded(l, "alice", 1);
    api_limits_failed(l, "alice", "10.0.0.1", 2);
    assert_int_equal(api_limits_check(l, "alice", "10.0.0.1", 3), 0);
    api_limits_failed(l, "alice", "10.0.0.1", 3);
    assert_true(api_limits_check(l, "alice", "10.0.0.1", 4) > 0);
    api_limits_free(l);
}

static void test_address_only(void **state)
{
    (void)state;
    api_limits_t *l = api_limits_new(2, 3, 60);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(api_limits_check_address(l, "192.0.2.7", 0), 0);
        api_limits_address_used(l, "192.0.2.7", 0);
    }
    /* Registrations from one address share its limit with failed logins... */
    assert_int_equal(api_limits_check_address(l, "192.0.2.7", 10), 50);
    assert_int_equal(api_limits_check(l, "alice", "192.0.2.7", 10), 50);
    /* ...but are no username's failures. */
    assert_int_equal(api_limits_check(l, "alice", "192.0.2.8", 10), 0);
    assert_int_equal(api_limits_check_address(l, "192.0.2.7", 60), 0);
    api_limits_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_per_account),
        cmocka_unit_test(test_per_address),
        cmocka_unit_test(test_success_resets_account),
        cmocka_unit_test(test_address_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
