/* Unit tests of batch parsing and validation (pure logic). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "ingest/batch.h"
#include "proto/meterhub.pb-c.h"

#define NOW 1800000000LL

static const ing_limits_t limits = {
    .max_readings = 10, .max_future_skew_s = 300, .max_age_s = 86400};

static int parse_validate(const char *json, bool counter, ing_batch_t *b, ing_batch_error_t *err)
{
    if (ing_batch_parse_json(json, strlen(json), limits.max_readings, b, err) != 0)
        return -1;
    return ing_batch_validate(b, &limits, NOW, counter, err);
}

static void test_valid_batch(void **state)
{
    ing_batch_t b;
    ing_batch_error_t err;
    ing_batch_init(&b);
    assert_int_equal(
        parse_validate("{\"measurements\":[[1800000000,10],[1799999940,5.5]]}", true, &b, &err), 0);
    assert_int_equal(b.n, 2);
    /* sorted by time */
    assert_int_equal(b.ts[0], 1799999940);
    assert_true(b.value[0] == 5.5);
    assert_int_equal(b.ts[1], 1800000000);
    ing_batch_dispose(&b);
}

static void expect_refusal(const char *json, bool counter, int status, const char *code,
                           const char *field)
{
    ing_batch_t b;
    ing_batch_error_t err;
    ing_batch_init(&b);
    assert_int_equal(parse_validate(json, counter, &b, &err), -1);
    assert_int_equal(err.status, status);
    assert_string_equal(err.code, code);
    if (field != NULL)
        assert_string_equal(err.field, field);
    assert_true(err.message[0] != '\0');
    ing_batch_dispose(&b);
}

static void test_refusals(void **state)
{
    expect_refusal("{", false, 400, "malformed_json", NULL);
    expect_refusal("[]", false, 400, "invalid_body", NULL);
    expect_refusal("{}", false, 400, "missing_field", "measurements");
    expect_refusal("{\"measurements\":{}}", false, 400, "invalid_type", "measurements");
    expect_refusal("{\"measurements\":[], \"extra\":1}", false, 400, "unknown_field", "extra");
    expect_refusal("{\"measurements\":[]}", false, 400, "empty_batch", "measurements");
    expect_refusal("{\"measurements\":[[1800000000]]}", false, 400, "invalid_type",
                   "measurements[0]");
    expect_refusal("{\"measurements\":[[\"1800000000\",1]]}", false, 400, "invalid_timestamp",
                   "measurements[0][0]");
    expect_refusal("{\"measurements\":[[1800000000.5,1]]}", false, 400, "invalid_timestamp",
                   "measurements[0][0]");
    expect_refusal("{\"measurements\":[[1800000000,null]]}", false, 400, "invalid_value",
                   "measurements[0][1]");
    expect_refusal("{\"measurements\":[[1800000000,1e999]]}", false, 400, "malformed_json", NULL);
    expect_refusal("{\"measurements\":[[1800000000,1],[1800000301,2]]}", false, 400,
                   "timestamp_in_future", "measurements[1][0]");
    expect_refusal("{\"measurements\":[[1700000000,1]]}", false, 400, "timestamp_too_old",
                   "measurements[0][0]");
    expect_refusal("{\"measurements\":[[1800000000,1],[1800000000,2]]}", false, 400,
                   "duplicate_timestamp", "measurements[1][0]");
    expect_refusal("{\"measurements\":[[1800000000,5],[1799999999,6]]}", true, 400,
                   "counter_decreased", "measurements[0][1]");
    expect_refusal("{\"measurements\":[[1,1],[2,2],[3,3],[4,4],[5,5],[6,6],[7,7],[8,8],[9,9],"
                   "[10,10],[11,11]]}",
                   false, 413, "too_many_readings", "measurements");
    expect_refusal("{\"measurements\":[[1800000000,1]], \"measurements\":[]}", false, 400,
                   "malformed_json", NULL);
}

static void test_gauge_may_decrease_and_duplicates_fold(void **state)
{
    ing_batch_t b;
    ing_batch_error_t err;
    ing_batch_init(&b);
    assert_int_equal(parse_validate("{\"measurements\":[[1800000000,5],[1799999999,6],"
                                    "[1800000000,5]]}",
                                    false, &b, &err),
                     0);
    assert_int_equal(b.n, 2);
    ing_batch_dispose(&b);
}

static void test_protobuf(void **state)
{
    int64_t ts[] = {NOW - 2, NOW - 1};
    double values[] = {1.0, NAN};
    Meterhub__ReadingBatch pb;
    meterhub__reading_batch__init(&pb);
    pb.n_ts = 2;
    pb.ts = ts;
    pb.n_value = 2;
    pb.value = values;
    uint8_t buf[128];
    size_t len = meterhub__reading_batch__pack(&pb, buf);

    ing_batch_t b;
    ing_batch_error_t err;
    ing_batch_init(&b);
    assert_int_equal(ing_batch_parse_protobuf(buf, len, 10, &b, &err), 0);
    assert_int_equal(b.n, 2);
    /* NaN is representable in protobuf but never accepted */
    assert_int_equal(ing_batch_validate(&b, &limits, NOW, false, &err), -1);
    assert_string_equal(err.code, "invalid_value");

    values[1] = 2.0;
    len = meterhub__reading_batch__pack(&pb, buf);
    assert_int_equal(ing_batch_parse_protobuf(buf, len, 10, &b, &err), 0);
    assert_int_equal(ing_batch_validate(&b, &limits, NOW, true, &err), 0);

    pb.n_value = 1;
    len = meterhub__reading_batch__pack(&pb, buf);
    assert_int_equal(ing_batch_parse_protobuf(buf, len, 10, &b, &err), -1);
    assert_string_equal(err.code, "length_mismatch");

    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(ing_batch_parse_protobuf(garbage, sizeof(garbage), 10, &b, &err), -1);
    assert_string_equal(err.code, "malformed_protobuf");
    ing_batch_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_batch),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_gauge_may_decrease_and_duplicates_fold),
        cmocka_unit_test(test_protobuf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
