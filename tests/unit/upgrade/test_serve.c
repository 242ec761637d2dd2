/* Unit tests of the Range requests of firmware downloads and of the store's paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "upgrade/serve.h"

/* parse(value) then resolve against size; returns -1 when unsatisfiable. */
static int span(const char *value, int64_t size, upg_range_kind_t *kind, int64_t *first,
                int64_t *last)
{
    upg_range_t r;
    upg_range_parse(value, &r);
    *kind = r.kind;
    return upg_range_resolve(&r, size, first, last);
}

static void test_served_forms(void **state)
{
    upg_range_kind_t k;
    int64_t f, l;
    assert_int_equal(span(NULL, 100, &k, &f, &l), 0);
    assert_int_equal(k, UPG_RANGE_ALL);
    assert_true(f == 0 && l == 99);
    assert_int_equal(span("bytes=0-9", 100, &k, &f, &l), 0);
    assert_int_equal(k, UPG_RANGE_SPAN);
    assert_true(f == 0 && l == 9);
    assert_int_equal(span("bytes=90-", 100, &k, &f, &l), 0);
    assert_int_equal(k, UPG_RANGE_FROM);
    assert_true(f == 90 && l == 99);
    assert_int_equal(span("bytes=-10", 100, &k, &f, &l), 0);
    assert_int_equal(k, UPG_RANGE_SUFFIX);
    assert_true(f == 90 && l == 99);
    /* the unit is case-insensitive */
    assert_int_equal(span("Bytes=5-5", 100, &k, &f, &l), 0);
    assert_true(k == UPG_RANGE_SPAN && f == 5 && l == 5);
}

static void test_clamped(void **state)
{
    upg_range_kind_t k;
    int64_t f, l;
    assert_int_equal(span("bytes=95-1000", 100, &k, &f, &l), 0);
    assert_true(f == 95 && l == 99);
    /* a suffix longer than the image is the whole image */
    assert_int_equal(span("bytes=-1000", 100, &k, &f, &l), 0);
    assert_true(f == 0 && l == 99);
}

static void test_unsatisfiable(void **state)
{
    upg_range_kind_t k;
    int64_t f, l;
    assert_int_equal(span("bytes=100-", 100, &k, &f, &l), -1);
    assert_int_equal(span("bytes=100-200", 100, &k, &f, &l), -1);
    assert_int_equal(span("bytes=-0", 100, &k, &f, &l), -1);
    assert_int_equal(span(NULL, 0, &k, &f, &l), -1);
}

/* Anything else is ignored, which HTTP allows: the whole image is served. */
static void test_ignored(void **state)
{
    static const char *const ignored[] = {
        "",
        "bytes=",
        "bytes=-",
        "bytes=9-2",
        "bytes=a-b",
        "bytes=1-2,4-5",
        "items=0-1",
        "bytes=+1-2",
        "bytes= 1-2",
        "bytes=1 -2",
        "bytes=0x10-",
        "bytes=1234567890123456789-",
        "bytes=1-2-3",
        "bytes=--1",
        "bytes 0-1",
    };
    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) {
        upg_range_t r;
        upg_range_parse(ignored[i], &r);
        if (r.kind != UPG_RANGE_ALL)
            fail_msg("not ignored: '%s'", ignored[i]);
    }
}

static void test_store_path(void **state)
{
    char out[256];
    const char *digest = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    assert_int_equal(upg_store_path("/srv/fw", digest, out, sizeof(out)), 0);
    assert_string_equal(out, "/srv/fw/sha256/00/"
                             "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    /* a digest is never allowed to become another path */
    assert_int_equal(upg_store_path("/srv/fw", "../../etc/passwd", out, sizeof(out)), -1);
    assert_int_equal(
        upg_store_path("/srv/fw",
                       "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff", out,
                       sizeof(out)),
        -1);
    assert_int_equal(upg_store_path("", digest, out, sizeof(out)), -1);
    assert_int_equal(upg_store_path("/srv/fw", digest, out, 20), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_served_forms),  cmocka_unit_test(test_clamped),
        cmocka_unit_test(test_unsatisfiable), cmocka_unit_test(test_ignored),
        cmocka_unit_test(test_store_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
