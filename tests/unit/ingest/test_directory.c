/* Unit tests of directory snapshots: lookups and reference counting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ingest/directory.h"

static void make_id(char *out, unsigned n)
{
    snprintf(out, MH_ID_LEN + 1, "%032x", n);
}

static void test_lookups(void **state)
{
    enum { ND = 1000, NS = 4000 };
    static ing_device_t devices[ND];
    static ing_sensor_t sensors[NS];
    for (unsigned i = 0; i < ND; i++) {
        devices[i].did = i + 1;
        devices[i].account = i % 7 + 1;
        devices[i].active = i % 10 != 0;
        make_id(devices[i].id, 0xd0000 + i);
        memset(devices[i].fingerprint, 0, MH_FINGERPRINT_LEN);
        memcpy(devices[i].fingerprint, &i, sizeof(i));
    }
    for (unsigned i = 0; i < NS; i++) {
        sensors[i].sid = i + 1;
        sensors[i].device_did = i / 4 + 1;
        sensors[i].counter = i % 4 != 3;
        make_id(sensors[i].id, 0x50000 + i);
    }
    ing_directory_t *dir = ing_directory_build(devices, ND, sensors, NS);
    for (unsigned i = 0; i < ND; i++) {
        const ing_device_t *d = ing_directory_device_by_fingerprint(dir, devices[i].fingerprint);
        assert_non_null(d);
        assert_int_equal(d->did, i + 1);
        assert_ptr_equal(ing_directory_device_by_did(dir, i + 1), d);
    }
    uint8_t unknown[MH_FINGERPRINT_LEN];
    memset(unknown, 0xee, sizeof(unknown));
    assert_null(ing_directory_device_by_fingerprint(dir, unknown));
    assert_null(ing_directory_device_by_did(dir, 999999));
    for (unsigned i = 0; i < NS; i++) {
        const ing_sensor_t *s = ing_directory_sensor(dir, sensors[i].id, MH_ID_LEN);
        assert_non_null(s);
        assert_int_equal(s->sid, i + 1);
    }
    char id[MH_ID_LEN + 1];
    make_id(id, 0x99999);
    assert_null(ing_directory_sensor(dir, id, MH_ID_LEN));
    assert_null(ing_directory_sensor(dir, "XYZ", 3));
    assert_null(ing_directory_sensor(dir, "0000000000000000000000000005000G", MH_ID_LEN));

    ing_dirhub_t hub;
    ing_dirhub_init(&hub);
    assert_null(ing_dirhub_acquire(&hub));
    ing_dirhub_publish(&hub, dir);
    ing_directory_t *held = ing_dirhub_acquire(&hub);
    assert_ptr_equal(held, dir);
    ing_directory_t *next = ing_directory_build(devices, 1, sensors, 1);
    ing_dirhub_publish(&hub, next);
    assert_true(ing_directory_generation(next) > ing_directory_generation(held));
    /* the old snapshot stays valid while referenced */
    assert_non_null(ing_directory_device_by_did(held, 500));
    ing_directory_unref(held);
    ing_dirhub_dispose(&hub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
