/* Unit tests of the writer's batch and binary array encoding (store.c, pure parts; no server). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ingest/writer/store.c"

static uint32_t be32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static uint64_t be64(const char *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void test_pgarray_int8(void **state)
{
    wr_pgarray_t a = {0};
    int len;
    pgarray_reset(&a, WR_OID_INT8);
    pgarray_add_int8(&a, 1);
    pgarray_add_int8(&a, -2);
    pgarray_add_int8(&a, INT64_MAX);
    const char *p = pgarray_finish(&a, &len);
    assert_int_equal(len, 20 + 3 * 12);
    assert_int_equal(be32(p), 1);      /* ndim */
    assert_int_equal(be32(p + 4), 0);  /* no NULLs */
    assert_int_equal(be32(p + 8), 20); /* int8 */
    assert_int_equal(be32(p + 12), 3); /* length */
    assert_int_equal(be32(p + 16), 1); /* lower bound */
    assert_int_equal(be32(p + 20), 8);
    assert_int_equal((int64_t)be64(p + 24), 1);
    assert_int_equal((int64_t)be64(p + 36), -2);
    assert_int_equal((int64_t)be64(p + 48), INT64_MAX);
    pgarray_dispose(&a);
}

static void test_pgarray_float8_exact(void **state)
{
    wr_pgarray_t a = {0};
    int len;
    const double v[] = {0.1, -1e300, 5e-324, 12345.678901234567};
    pgarray_reset(&a, WR_OID_FLOAT8);
    for (size_t i = 0; i < 4; i++)
        pgarray_add_float8(&a, v[i]);
    const char *p = pgarray_finish(&a, &len);
    assert_int_equal(len, 20 + 4 * 12);
    assert_int_equal(be32(p + 8), 701);
    for (size_t i = 0; i < 4; i++) {
        uint64_t bits = be64(p + 24 + 12 * i);
        double d;
        memcpy(&d, &bits, sizeof(d));
        assert_memory_equal(&d, &v[i], sizeof(d)); /* bit for bit, unlike %.17g text */
    }
    pgarray_dispose(&a);
}

static void test_pgarray_text_bool(void **state)
{
    wr_pgarray_t t = {0}, b = {0};
    int len;
    pgarray_reset(&t, WR_OID_TEXT);
    pgarray_add_text(&t, "1.2.3");
    pgarray_add_text(&t, "");
    const char *p = pgarray_finish(&t, &len);
    assert_int_equal(len, 20 + 4 + 5 + 4);
    assert_int_equal(be32(p + 8), 25);
    assert_int_equal(be32(p + 20), 5);
    assert_memory_equal(p + 24, "1.2.3", 5);
    assert_int_equal(be32(p + 29), 0);

    pgarray_reset(&b, WR_OID_BOOL);
    pgarray_add_bool(&b, true);
    pgarray_add_bool(&b, false);
    p = pgarray_finish(&b, &len);
    assert_int_equal(len, 20 + 2 * 5);
    assert_int_equal(be32(p + 8), 16);
    assert_int_equal(p[24], 1);
    assert_int_equal(p[29], 0);
    pgarray_dispose(&t);
    pgarray_dispose(&b);
}

static void test_pgarray_empty_and_reuse(void **state)
{
    wr_pgarray_t a = {0};
    int len;
    pgarray_reset(&a, WR_OID_INT8);
    const char *p = pgarray_finish(&a, &len);
    /* No dimensions at all: the server refuses a dimension of length 0. */
    assert_int_equal(len, 12);
    assert_int_equal(be32(p), 0);
    assert_int_equal(be32(p + 8), 20);

    /* Growing past the initial capacity, then reusing the buffer. */
    for (int i = 0; i < 1000; i++)
        pgarray_add_int8(&a, i);
    p = pgarray_finish(&a, &len);
    assert_int_equal(len, 20 + 1000 * 12);
    assert_int_equal((int64_t)be64(p + 20 + 999 * 12 + 4), 999);
    pgarray_reset(&a, WR_OID_FLOAT8);
    pgarray_add_float8(&a, 1.0);
    p = pgarray_finish(&a, &len);
    assert_int_equal(len, 32);
    assert_int_equal(be32(p + 12), 1);
    pgarray_dispose(&a);
}

static void test_batch_truncate_reset(void **state)
{
    wr_batch_t b;
    wr_batch_init(&b);
    assert_true(wr_batch_empty(&b));
    for (int i = 0; i < 3000; i++)
        wr_batch_add_reading(&b, 1, i, i * 0.5);
    wr_batch_add_heartbeat(&b, 7, 100, "1.0", true);
    wr_batch_add_heartbeat(&b, 8, 101, NULL, false);
    assert_int_equal(b.nreadings, 3000);
    assert_int_equal(b.nheartbeats, 2);
    assert_string_equal(b.heartbeats[1].firmware, "");
    assert_false(wr_batch_empty(&b));

    wr_batch_truncate(&b, 10, 1); /* frees the dropped heartbeat's string (ASan checks) */
    assert_int_equal(b.nreadings, 10);
    assert_int_equal(b.nheartbeats, 1);
    assert_string_equal(b.heartbeats[0].firmware, "1.0");
    wr_batch_truncate(&b, 20, 5); /* never grows */
    assert_int_equal(b.nreadings, 10);
    assert_int_equal(b.nheartbeats, 1);

    wr_batch_reset(&b);
    assert_true(wr_batch_empty(&b));
    assert_non_null(b.readings); /* memory kept for the next batch */
    wr_batch_add_heartbeat(&b, 9, 1, "x", false);
    wr_batch_dispose(&b);
    assert_null(b.readings);
}

static void test_sort_order(void **state)
{
    wr_reading_t r[] = {{2, 5, 0}, {1, 9, 0}, {2, 1, 0}, {1, 3, 0}, {1, 3, 1}};
    qsort(r, 5, sizeof(r[0]), reading_cmp);
    assert_int_equal(r[0].sensor, 1);
    assert_int_equal(r[0].ts, 3);
    assert_int_equal(r[2].ts, 9);
    assert_int_equal(r[3].sensor, 2);
    assert_int_equal(r[3].ts, 1);
    assert_int_equal(r[4].ts, 5);
}

static void test_classify(void **state)
{
    assert_int_equal(store_classify("22008", false), WR_STORE_DATA); /* timestamp out of range */
    assert_int_equal(store_classify("22021", false), WR_STORE_DATA); /* bad encoding */
    assert_int_equal(store_classify("23505", false), WR_STORE_DATA);
    assert_int_equal(store_classify("08006", false), WR_STORE_LOST);
    assert_int_equal(store_classify("57P01", false), WR_STORE_LOST); /* admin shutdown */
    assert_int_equal(store_classify("57P03", false), WR_STORE_LOST);
    assert_int_equal(store_classify("57014", false), WR_STORE_RETRY); /* query cancelled */
    assert_int_equal(store_classify("40P01", false), WR_STORE_RETRY); /* deadlock */
    assert_int_equal(store_classify("42501", false), WR_STORE_RETRY); /* permission */
    assert_int_equal(store_classify(NULL, false), WR_STORE_RETRY);
    assert_int_equal(store_classify("", false), WR_STORE_RETRY);
    /* A lost connection wins over whatever the last result said. */
    assert_int_equal(store_classify("22008", true), WR_STORE_LOST);
    assert_int_equal(store_classify(NULL, true), WR_STORE_LOST);
}

static void test_copy_line(void **state)
{
    char buf[16];
    copy_line(buf, sizeof(buf), "first line\nsecond");
    assert_string_equal(buf, "first line");
    copy_line(buf, sizeof(buf), "a very long message that is cut");
    assert_int_equal(strlen(buf), 15);
    copy_line(buf, sizeof(buf), NULL);
    assert_string_equal(buf, "unknown error");
}

static void test_write_without_server(void **state)
{
    char err[128];
    wr_store_result_t res = {99, 99};
    wr_batch_t b;
    wr_store_t *s = wr_store_new("postgresql://nobody@127.0.0.1:1/none", "test");
    wr_batch_init(&b);

    assert_false(wr_store_connected(s));
    /* An empty batch is not sent: nothing to commit. */
    assert_int_equal(wr_store_write(s, &b, &res, err, sizeof(err)), WR_STORE_OK);
    assert_int_equal(res.inserted, 0);
    wr_batch_add_reading(&b, 1, 1, 1.0);
    assert_int_equal(wr_store_write(s, &b, &res, err, sizeof(err)), WR_STORE_LOST);
    assert_int_equal(wr_store_ping(s, err, sizeof(err)), -1);
    assert_int_equal(wr_store_ensure_partitions(s, err, sizeof(err)), -1);
    assert_int_equal(wr_store_connect(s, err, sizeof(err)), -1);
    assert_true(strlen(err) > 0);
    assert_null(strchr(err, '\n'));

    wr_batch_dispose(&b);
    wr_store_free(s);
    wr_store_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pgarray_int8),
        cmocka_unit_test(test_pgarray_float8_exact),
        cmocka_unit_test(test_pgarray_text_bool),
        cmocka_unit_test(test_pgarray_empty_and_reuse),
        cmocka_unit_test(test_batch_truncate_reset),
        cmocka_unit_test(test_sort_order),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_copy_line),
        cmocka_unit_test(test_write_without_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
