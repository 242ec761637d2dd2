/*
 * Unit tests of the resolutions and units of reads (api/server/units.c): names and order,
 * which units each kind of sensor reads in, and the factors of the rates. No server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/server/units.h"

#include <string.h>

static void test_resolutions(void **state)
{
    (void)state;
    static const char *const names[] = {"raw", "minute", "15min", "hour", "day", "month"};
    for (int i = 0; i < API_RES_COUNT; i++) {
        assert_int_equal(api_resolution_parse(names[i]), i);
        assert_string_equal(api_resolution_name(i), names[i]);
    }
    /* Finest first: the order the privacy rules compare. */
    assert_true(API_RES_RAW < API_RES_15MIN && API_RES_15MIN < API_RES_HOUR &&
                API_RES_HOUR < API_RES_DAY && API_RES_DAY < API_RES_MONTH);
    assert_int_equal(api_resolution_seconds(API_RES_15MIN), 900);
    assert_int_equal(api_resolution_parse("week"), -1);
    assert_int_equal(api_resolution_parse("Hour"), -1);
    assert_int_equal(api_resolution_parse(""), -1);
    assert_string_equal(api_resolution_name(-1), "?");
    assert_string_equal(api_resolution_name(API_RES_COUNT), "?");
}

static void test_own_unit(void **state)
{
    (void)state;
    /* No unit, or the sensor's own: the index of a counter, the mean of a gauge. */
    const api_unit_rule_t *r = api_unit_rule("Wh", "counter", "");
    assert_non_null(r);
    assert_int_equal(r->mode, API_VALUE_LAST);
    assert_true(r->factor == 1);
    r = api_unit_rule("W", "gauge", NULL);
    assert_non_null(r);
    assert_int_equal(r->mode, API_VALUE_MEAN);
    /* A combination no rule names still reads as itself. */
    r = api_unit_rule("W", "counter", "W");
    assert_non_null(r);
    assert_int_equal(r->mode, API_VALUE_LAST);
    assert_null(r->unit);
}

static void test_rates(void **state)
{
    (void)state;
    const api_unit_rule_t *r = api_unit_rule("Wh", "counter", "W");
    assert_non_null(r);
    assert_int_equal(r->mode, API_VALUE_RATE);
    /* 1 Wh per second is 3600 W. */
    assert_true(r->factor == 3600);
    r = api_unit_rule("Wh", "counter", "kWh/year");
    assert_non_null(r);
    /* 1 Wh per second for 365 days is 31,536 kWh. */
    assert_true(r->factor > 31535.999 && r->factor < 31536.001);
    r = api_unit_rule("L", "counter", "L/min");
    assert_non_null(r);
    assert_true(r->factor == 60);
    r = api_unit_rule("m3", "counter", "L/day");
    assert_non_null(r);
    assert_true(r->factor == 86400000);
    /* A gauge's "per year" is its mean times the hours of a year. */
    r = api_unit_rule("W", "gauge", "kWh/year");
    assert_non_null(r);
    assert_int_equal(r->mode, API_VALUE_MEAN);
    assert_true(r->factor > 8.7599 && r->factor < 8.7601);
}

static void test_refused(void **state)
{
    (void)state;
    assert_null(api_unit_rule("Wh", "counter", "L/min"));
    assert_null(api_unit_rule("L", "counter", "W"));
    assert_null(api_unit_rule("W", "gauge", "Wh"));
    assert_null(api_unit_rule("Wh", "counter", "w"));
    char list[160];
    api_unit_list("Wh", "counter", list, sizeof(list));
    assert_string_equal(list, "Wh, kWh, W, kWh/year");
    api_unit_list("L/min", "gauge", list, sizeof(list));
    assert_string_equal(list, "L/min, L/day, m3/year");
    /* A short buffer is cut, still terminated. */
    api_unit_list("Wh", "counter", list, 6);
    assert_int_equal(strlen(list), 5);
}

static void test_flukso_units(void **state)
{
    (void)state;
    assert_string_equal(api_flukso_unit("watt"), "W");
    assert_string_equal(api_flukso_unit("kwhperyear"), "kWh/year");
    assert_string_equal(api_flukso_unit("lpermin"), "L/min");
    assert_string_equal(api_flukso_unit("lperday"), "L/day");
    assert_string_equal(api_flukso_unit("m3peryear"), "m3/year");
    assert_null(api_flukso_unit("W"));
    assert_null(api_flukso_unit(""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolutions),  cmocka_unit_test(test_own_unit),
        cmocka_unit_test(test_rates),        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_flukso_units),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
