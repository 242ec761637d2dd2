/*
 * Unit tests of meterhub-api's check of PUT /v1/devices/{id}/upgrades (api/server/upgrades.c),
 * run on the loop thread before any job exists: exactly {"consent": "off" | "ask" | "auto"}.
 * No server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "api/server/api_internal.h"

static char msg[300];

static int check(const char *text)
{
    json_error_t jerr;
    json_t *in = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(in);
    msg[0] = '\0';
    int rc = api_upgrade_consent_check(in, msg, sizeof(msg));
    if (rc != 0)
        assert_true(msg[0] != '\0');
    json_decref(in);
    return rc;
}

static void test_consent(void **state)
{
    (void)state;
    assert_int_equal(check("{\"consent\": \"off\"}"), 0);
    assert_int_equal(check("{\"consent\": \"ask\"}"), 0);
    assert_int_equal(check("{\"consent\": \"auto\"}"), 0);
    /* Another value, or the right one in another case, is refused. */
    assert_int_equal(check("{\"consent\": \"on\"}"), -1);
    assert_string_equal(msg, "consent: off, ask or auto");
    assert_int_equal(check("{\"consent\": \"Auto\"}"), -1);
    assert_int_equal(check("{\"consent\": \"\"}"), -1);
    assert_int_equal(check("{\"consent\": \"ask \"}"), -1);
}

static void test_consent_shape(void **state)
{
    (void)state;
    /* Missing, mistyped or unknown fields are refused, the fields named. */
    assert_int_equal(check("{}"), -1);
    assert_non_null(strstr(msg, "consent"));
    assert_int_equal(check("{\"consent\": true}"), -1);
    assert_int_equal(check("{\"consent\": null}"), -1);
    assert_int_equal(check("{\"consent\": [\"ask\"]}"), -1);
    assert_int_equal(check("{\"consent\": \"ask\", \"release\": \"x\"}"), -1);
    assert_non_null(strstr(msg, "release"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consent),
        cmocka_unit_test(test_consent_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
