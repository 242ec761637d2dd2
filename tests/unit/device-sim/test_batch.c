/* Unit tests of the simulator's reading buffer and request bodies: a retried batch is the
 * same batch, nothing acknowledged is sent again, the buffer is bounded, the JSON round-trips
 * every value exactly; and of the refusal counters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <float.h>
#include <jansson.h>
#include <math.h>

#include "device-sim/batch.h"
#include "device-sim/stats.h"

static void test_batches_and_acks(void **state)
{
    sim_buffer_t b;
    char body[4096];
    (void)state;
    sim_buffer_init(&b, 100);
    assert_int_equal(sim_buffer_take(&b, 10), 0);
    for (int i = 0; i < 25; i++)
        assert_int_equal(sim_buffer_push(&b, 1000 + i, i * 1.5), 0);

    assert_int_equal(sim_buffer_take(&b, 10), 10);
    int n1 = sim_batch_json(&b, body, sizeof(body));
    assert_true(n1 > 0);
    char first[4096];
    memcpy(first, body, (size_t)n1 + 1);

    /* A retry: more readings arrived meanwhile, the batch is still exactly the same. */
    for (int i = 25; i < 30; i++)
        assert_int_equal(sim_buffer_push(&b, 1000 + i, i * 1.5), 0);
    assert_int_equal(sim_buffer_take(&b, 50), 10);
    assert_int_equal(sim_batch_json(&b, body, sizeof(body)), n1);
    assert_string_equal(body, first);

    /* Acknowledged: the next batch starts after it, never repeating a reading. */
    sim_buffer_ack(&b);
    assert_int_equal(b.len, 20);
    assert_int_equal(sim_buffer_take(&b, 15), 15);
    assert_int_equal(sim_buffer_at(&b, 0)->ts, 1010);
    assert_int_equal(sim_buffer_at(&b, 14)->ts, 1024);
    /* Refused for good: dropped the same way. */
    sim_buffer_drop_pending(&b);
    assert_int_equal(sim_buffer_take(&b, 15), 5);
    assert_int_equal(sim_buffer_at(&b, 0)->ts, 1025);
    sim_buffer_ack(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(sim_buffer_take(&b, 15), 0);
    sim_buffer_dispose(&b);
}

static void test_bounded_and_wraps(void **state)
{
    sim_buffer_t b;
    (void)state;
    sim_buffer_init(&b, 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(sim_buffer_push(&b, i, i), 0);
    /* Full: a new reading is refused and the pending batch stays intact. */
    assert_int_equal(sim_buffer_take(&b, 3), 3);
    assert_int_equal(sim_buffer_push(&b, 99, 99), -1);
    assert_int_equal(b.len, 8);
    sim_buffer_ack(&b);
    /* The ring wraps around its end and keeps the order. */
    for (int i = 8; i < 11; i++)
        assert_int_equal(sim_buffer_push(&b, i, i), 0);
    assert_int_equal(b.alloc, 8);
    for (size_t i = 0; i < b.len; i++)
        assert_int_equal(sim_buffer_at(&b, i)->ts, (int64_t)(3 + i));
    sim_buffer_dispose(&b);
}

static void test_json_round_trip(void **state)
{
    static const double values[] = {0.0,
                                    1234567.0,
                                    0.1,
                                    1e-300,
                                    -2.5,
                                    DBL_MAX,
                                    1.0 / 3.0,
                                    123456789.123456789,
                                    4e-320 /* subnormal */,
                                    9007199254740993.0};
    size_t n = sizeof(values) / sizeof(values[0]);
    sim_buffer_t b;
    (void)state;
    sim_buffer_init(&b, 64);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sim_buffer_push(&b, 1764115200 + (int64_t)i * 60, values[i]), 0);
    assert_int_equal(sim_buffer_take(&b, 64), n);
    size_t cap = sim_batch_json_max(n);
    char *body = malloc(cap);
    int len = sim_batch_json(&b, body, cap);
    assert_true(len > 0 && (size_t)len < cap);
    assert_int_equal(strlen(body), (size_t)len);

    json_error_t jerr;
    json_t *o = json_loads(body, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(o);
    assert_int_equal(json_object_size(o), 1);
    json_t *m = json_object_get(o, "measurements");
    assert_int_equal(json_array_size(m), n);
    for (size_t i = 0; i < n; i++) {
        json_t *pair = json_array_get(m, i);
        assert_int_equal(json_array_size(pair), 2);
        /* The timestamp is a JSON integer, as ingest requires. */
        assert_true(json_is_integer(json_array_get(pair, 0)));
        assert_int_equal(json_integer_value(json_array_get(pair, 0)), 1764115200 + (int64_t)i * 60);
        /* The value is exactly the double that was generated. */
        assert_true(json_number_value(json_array_get(pair, 1)) == values[i]);
    }
    json_decref(o);

    /* A body that does not fit is refused, never truncated. */
    assert_int_equal(sim_batch_json(&b, body, 40), -1);
    free(body);
    sim_buffer_dispose(&b);
}

static void test_json_refuses_non_finite(void **state)
{
    sim_buffer_t b;
    char body[256];
    (void)state;
    sim_buffer_init(&b, 4);
    assert_int_equal(sim_buffer_push(&b, 1, NAN), 0);
    sim_buffer_take(&b, 4);
    assert_int_equal(sim_batch_json(&b, body, sizeof(body)), -1);
    sim_buffer_dispose(&b);
}

static void test_error_counts(void **state)
{
    sim_stats_t *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    (void)state;
    sim_stats_init(a);
    sim_stats_init(b);
    sim_stats_add_error(a, 400, "timestamp_too_old");
    sim_stats_add_error(a, 400, "timestamp_too_old");
    sim_stats_add_error(a, 409, "counter_decreased");
    sim_stats_add_error(b, 409, "counter_decreased");
    sim_stats_add_error(b, 413, NULL);
    sim_stats_merge(a, b);
    assert_int_equal(a->nerrors, 3);
    assert_int_equal(a->errors[0].n, 2);
    assert_int_equal(a->errors[1].n, 2);
    assert_string_equal(a->errors[2].code, "-");
    /* Beyond SIM_ERRORS_MAX distinct codes, refusals are still counted. */
    char code[16];
    for (int i = 0; i < SIM_ERRORS_MAX + 5; i++) {
        snprintf(code, sizeof(code), "c%d", i);
        sim_stats_add_error(b, 400, code);
    }
    assert_int_equal(b->nerrors, SIM_ERRORS_MAX);
    assert_int_equal(b->errors_unnamed, 7);
    free(a);
    free(b);
}

/* A clock off by a day: the same readings, every timestamp moved, the values unchanged. */
static void test_json_shifted(void **state)
{
    sim_buffer_t b;
    char out[256];
    (void)state;
    sim_buffer_init(&b, 8);
    assert_int_equal(sim_buffer_push(&b, 1000, 1.5), 0);
    assert_int_equal(sim_buffer_push(&b, 1060, 2.5), 0);
    assert_int_equal(sim_buffer_take(&b, 8), 2);
    assert_true(sim_batch_json_shifted(&b, 86400, out, sizeof(out)) > 0);
    assert_string_equal(out, "{\"measurements\":[[87400,1.5],[87460,2.5]]}");
    assert_true(sim_batch_json(&b, out, sizeof(out)) > 0);
    assert_string_equal(out, "{\"measurements\":[[1000,1.5],[1060,2.5]]}");
    sim_buffer_dispose(&b);
}

/* Storm figures merge as sums, except the recovery time (the fleet's is its slowest
 * device's); requests land in their 100 ms slot, and late ones in the last. */
static void test_storm_counts(void **state)
{
    sim_stats_t *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    sim_stats_init(a);
    sim_stats_init(b);
    a->recovery_max_us = 3000000;
    a->storm_recovered = 2;
    b->recovery_max_us = 1000000;
    b->storm_recovered = 3;
    b->retry_after_waits = 4;
    sim_stats_count_request(a, 50000);
    sim_stats_count_request(b, 99999);
    sim_stats_count_request(b, 100000);
    sim_stats_count_request(b, (uint64_t)SIM_RATE_SLOTS * SIM_RATE_SLOT_MS * 1000u * 2);
    sim_stats_merge(a, b);
    assert_int_equal(a->recovery_max_us, 3000000);
    assert_int_equal(a->storm_recovered, 5);
    assert_int_equal(a->retry_after_waits, 4);
    assert_int_equal(a->requests, 4);
    assert_int_equal(a->per_slot[0], 2);
    assert_int_equal(a->per_slot[1], 1);
    assert_int_equal(a->per_slot[SIM_RATE_SLOTS - 1], 1);
    free(a);
    free(b);
}

/* What each bad kind expects, and a ramp step's bounds. */
static void test_expectations(void **state)
{
    sim_ramp_step_t st = {.devices = 10, .requests = 1000, .errors = 10, .p99_ms = 50};
    (void)state;
    assert_true(sim_bad_kind_expected(SIM_BAD_WRONG_CA, 0, ""));
    assert_false(sim_bad_kind_expected(SIM_BAD_WRONG_CA, 403, "unknown_device"));
    assert_true(sim_bad_kind_expected(SIM_BAD_REVOKED, 403, "device_revoked"));
    assert_false(sim_bad_kind_expected(SIM_BAD_REVOKED, 0, ""));
    assert_true(sim_bad_kind_expected(SIM_BAD_OTHER_SENSOR, 403, "not_your_sensor"));
    assert_false(sim_bad_kind_expected(SIM_BAD_OTHER_SENSOR, 200, ""));
    assert_true(sim_bad_kind_expected(SIM_BAD_MALFORMED, 400, "malformed_json"));
    assert_false(sim_bad_kind_expected(SIM_BAD_MALFORMED, 400, "invalid_body"));
    assert_true(sim_bad_kind_expected(SIM_BAD_FUTURE, 400, "timestamp_in_future"));
    assert_true(sim_bad_kind_expected(SIM_BAD_NONE, 200, ""));
    assert_false(sim_bad_kind_expected(SIM_BAD_NONE, 409, "counter_decreased"));
    assert_string_equal(sim_bad_kind_name(SIM_BAD_OTHER_SENSOR), "other-sensor");
    /* Exactly 1% errors and p99 at the bound are still within bounds. */
    assert_true(sim_ramp_step_ok(&st, 50));
    st.errors = 11;
    assert_false(sim_ramp_step_ok(&st, 50));
    st.errors = 0;
    st.p99_ms = 50.01;
    assert_false(sim_ramp_step_ok(&st, 50));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batches_and_acks), cmocka_unit_test(test_bounded_and_wraps),
        cmocka_unit_test(test_json_round_trip),  cmocka_unit_test(test_json_refuses_non_finite),
        cmocka_unit_test(test_error_counts),     cmocka_unit_test(test_json_shifted),
        cmocka_unit_test(test_storm_counts),     cmocka_unit_test(test_expectations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
