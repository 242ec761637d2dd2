/*
 * Unit tests of meterhub-api's checks of device and sensor bodies (api/server/devices.c), run
 * on the loop thread before any job exists: what is refused, with which message, and the
 * location rounded before the body goes further. No server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "api/server/api_internal.h"

static char msg[300];

/* The check's result on a body given as JSON text; *out (if not NULL) gets the body after it. */
static int check(api_check_fn fn, const char *text, json_t **out)
{
    json_error_t jerr;
    json_t *in = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(in);
    msg[0] = '\0';
    int rc = fn(in, msg, sizeof(msg));
    if (rc != 0)
        assert_true(msg[0] != '\0');
    if (out != NULL)
        *out = in;
    else
        json_decref(in);
    return rc;
}

static void test_register(void **state)
{
    (void)state;
    api_check_fn f = api_device_register_check;
    assert_int_equal(check(f, "{\"generate_key\": true}", NULL), 0);
    assert_int_equal(check(f, "{\"csr\": \"-----BEGIN...\", \"name\": \"Zoë's\"}", NULL), 0);
    assert_int_equal(check(f,
                           "{\"generate_key\": true, \"name\": null, \"sensors\": [{\"kind\": "
                           "\"gas\", \"type\": \"counter\", \"unit\": \"m3\", \"name\": \"G\"}]}",
                           NULL),
                     0);
    /* Exactly one of csr and generate_key: true. */
    assert_int_equal(check(f, "{}", NULL), -1);
    assert_int_equal(check(f, "{\"generate_key\": false}", NULL), -1);
    assert_int_equal(check(f, "{\"csr\": \"x\", \"generate_key\": true}", NULL), -1);
    assert_int_equal(check(f, "{\"csr\": \"\"}", NULL), -1);
    assert_int_equal(check(f, "{\"csr\": 1}", NULL), -1);
    assert_non_null(strstr(msg, "csr"));
    assert_int_equal(check(f, "{\"generate_key\": 1}", NULL), -1);
    /* Unknown fields are named. */
    assert_int_equal(check(f, "{\"generate_key\": true, \"owner\": \"bob\"}", NULL), -1);
    assert_non_null(strstr(msg, "owner"));
    assert_int_equal(check(f, "{\"generate_key\": true, \"name\": \"\"}", NULL), -1);
    assert_int_equal(check(f, "{\"generate_key\": true, \"name\": \"a\\nb\"}", NULL), -1);
    assert_int_equal(check(f, "{\"generate_key\": true, \"sensors\": {}}", NULL), -1);
    /* A sensor: every field checked, the failing one named with its index. */
    assert_int_equal(check(f,
                           "{\"generate_key\": true, \"sensors\": [{\"kind\": \"gas\", \"type\": "
                           "\"counter\", \"unit\": \"L\"}, {\"kind\": \"gas\", \"type\": "
                           "\"counter\", \"unit\": 3}]}",
                           NULL),
                     -1);
    assert_string_equal(msg, "sensors[1].unit: Wh, W, L, L/min or m3");
    assert_int_equal(
        check(f, "{\"generate_key\": true, \"sensors\": [{\"kind\": \"gas\", \"unit\": \"L\"}]}",
              NULL),
        -1);
    assert_string_equal(msg, "sensors[0]: kind, type and unit are required");
    assert_int_equal(check(f, "{\"generate_key\": true, \"sensors\": [\"gas\"]}", NULL), -1);
}

static void test_register_hardware(void **state)
{
    (void)state;
    api_check_fn f = api_device_register_check;
    /* The CHECK of devices.hardware: [a-z0-9][a-z0-9._-]{0,31}. */
    assert_int_equal(check(f, "{\"generate_key\": true, \"hardware\": \"flm02\"}", NULL), 0);
    assert_int_equal(check(f, "{\"generate_key\": true, \"hardware\": \"0a._-\"}", NULL), 0);
    assert_int_equal(
        check(f, "{\"generate_key\": true, \"hardware\": \"a2345678901234567890123456789012\"}",
              NULL),
        0);
    assert_int_equal(
        check(f, "{\"generate_key\": true, \"hardware\": \"a23456789012345678901234567890123\"}",
              NULL),
        -1);
    assert_string_equal(msg,
                        "hardware: 1 to 32 of a-z 0-9 . _ -, beginning with a letter or a digit");
    assert_int_equal(check(f, "{\"generate_key\": true, \"hardware\": \"\"}", NULL), -1);
    assert_int_equal(check(f, "{\"generate_key\": true, \"hardware\": \"-flm\"}", NULL), -1);
    assert_int_equal(check(f, "{\"generate_key\": true, \"hardware\": \"Flm02\"}", NULL), -1);
    assert_int_equal(check(f, "{\"generate_key\": true, \"hardware\": \"flm/02\"}", NULL), -1);
    assert_int_equal(check(f, "{\"generate_key\": true, \"hardware\": null}", NULL), -1);
    assert_int_equal(check(f, "{\"generate_key\": true, \"hardware\": 2}", NULL), -1);
}

static void test_register_sensor_bound(void **state)
{
    (void)state;
    char body[8192];
    for (int n = 64; n <= 65; n++) {
        size_t len =
            (size_t)snprintf(body, sizeof(body), "{\"generate_key\": true, \"sensors\": [");
        for (int i = 0; i < n; i++)
            len += (size_t)snprintf(body + len, sizeof(body) - len,
                                    "%s{\"kind\": \"water\", \"type\": \"gauge\", \"unit\": "
                                    "\"L/min\"}",
                                    i ? "," : "");
        snprintf(body + len, sizeof(body) - len, "]}");
        assert_int_equal(check(api_device_register_check, body, NULL), n == 64 ? 0 : -1);
    }
}

/* The hundredths the check leaves in the body for {"lat": lat, "lon": lon}. */
static void rounded(const char *lat, const char *lon, json_int_t want_lat, json_int_t want_lon)
{
    char text[128];
    json_t *in = NULL;
    snprintf(text, sizeof(text), "{\"location\": {\"lat\": %s, \"lon\": %s}}", lat, lon);
    assert_int_equal(check(api_device_patch_check, text, &in), 0);
    json_t *loc = json_object_get(in, "location");
    /* Integers: the exact coordinates are gone from the body. */
    assert_true(json_is_integer(json_object_get(loc, "lat")));
    assert_int_equal(json_integer_value(json_object_get(loc, "lat")), want_lat);
    assert_int_equal(json_integer_value(json_object_get(loc, "lon")), want_lon);
    json_decref(in);
}

static void test_location(void **state)
{
    (void)state;
    rounded("50.846711", "4.352487", 5085, 435);
    rounded("-33.86785", "151.20732", -3387, 15121);
    rounded("-0.004", "0.006", 0, 1);
    rounded("90", "-180", 9000, -18000);
    rounded("89.999", "179.996", 9000, 18000);
    api_check_fn f = api_device_patch_check;
    assert_int_equal(check(f, "{\"location\": null}", NULL), 0);
    assert_int_equal(check(f, "{\"location\": {\"lat\": 90.01, \"lon\": 0}}", NULL), -1);
    assert_int_equal(check(f, "{\"location\": {\"lat\": 0, \"lon\": -180.01}}", NULL), -1);
    assert_int_equal(check(f, "{\"location\": {\"lat\": 0}}", NULL), -1);
    assert_int_equal(check(f, "{\"location\": {\"lat\": 0, \"lon\": 0, \"alt\": 1}}", NULL), -1);
    assert_int_equal(check(f, "{\"location\": {\"lat\": \"0\", \"lon\": 0}}", NULL), -1);
    assert_int_equal(check(f, "{\"location\": [0, 0]}", NULL), -1);
}

static void test_device_patch(void **state)
{
    (void)state;
    api_check_fn f = api_device_patch_check;
    assert_int_equal(check(f, "{\"name\": \"Garage\"}", NULL), 0);
    assert_int_equal(check(f, "{\"name\": null}", NULL), 0);
    assert_int_equal(check(f, "{}", NULL), -1);
    assert_int_equal(check(f, "{\"name\": 5}", NULL), -1);
    assert_int_equal(check(f, "{\"colour\": \"red\"}", NULL), -1);
    assert_non_null(strstr(msg, "colour"));
}

static void test_secrets(void **state)
{
    (void)state;
    api_check_fn f = api_device_patch_check;
    char body[4096], value[1100];
    assert_int_equal(check(f, "{\"secrets\": {}}", NULL), 0);
    assert_int_equal(check(f, "{\"secrets\": {\"wifi_psk\": \"x\", \"a.b-C_9\": \"y\"}}", NULL), 0);
    /* At most 16. */
    for (int n = 16; n <= 17; n++) {
        size_t len = (size_t)snprintf(body, sizeof(body), "{\"secrets\": {");
        for (int i = 0; i < n; i++)
            len += (size_t)snprintf(body + len, sizeof(body) - len, "%s\"s%d\": \"v\"",
                                    i ? ", " : "", i);
        snprintf(body + len, sizeof(body) - len, "}}");
        assert_int_equal(check(f, body, NULL), n == 16 ? 0 : -1);
    }
    /* Values of 1 to 1024 bytes. */
    for (int n = 1024; n <= 1025; n++) {
        memset(value, 'k', (size_t)n);
        value[n] = '\0';
        snprintf(body, sizeof(body), "{\"secrets\": {\"key\": \"%s\"}}", value);
        assert_int_equal(check(f, body, NULL), n == 1024 ? 0 : -1);
    }
    assert_int_equal(check(f, "{\"secrets\": {\"key\": \"\"}}", NULL), -1);
    assert_int_equal(check(f, "{\"secrets\": {\"pin\": 1234}}", NULL), -1);
    assert_int_equal(check(f, "{\"secrets\": [\"x\"]}", NULL), -1);
    /* A refused name is not repeated: it might be the secret, typed in the wrong place. */
    assert_int_equal(check(f, "{\"secrets\": {\"hunter2 is my password\": \"x\"}}", NULL), -1);
    assert_null(strstr(msg, "hunter2"));
    assert_int_equal(check(f, "{\"secrets\": {\"k\": 7}}", NULL), -1);
    assert_null(strstr(msg, "7"));
}

static void test_sensor_patch(void **state)
{
    (void)state;
    api_check_fn f = api_sensor_patch_check;
    assert_int_equal(check(f, "{\"type\": \"gauge\", \"unit\": \"W\"}", NULL), 0);
    assert_int_equal(check(f, "{\"name\": null}", NULL), 0);
    assert_int_equal(check(f, "{\"kind\": \"electricity\", \"name\": \"Mains\"}", NULL), 0);
    assert_int_equal(check(f, "{}", NULL), -1);
    assert_int_equal(check(f, "{\"type\": 5}", NULL), -1);
    assert_string_equal(msg, "type: counter or gauge");
    assert_int_equal(check(f, "{\"unit\": \"kWh\"}", NULL), -1);
    assert_int_equal(check(f, "{\"device\": \"x\"}", NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register),
        cmocka_unit_test(test_register_hardware),
        cmocka_unit_test(test_register_sensor_bound),
        cmocka_unit_test(test_location),
        cmocka_unit_test(test_device_patch),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_sensor_patch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
