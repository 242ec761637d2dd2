/* Unit tests of the mixed-bad assignment: deterministic by seed, every kind in turn, one
 * device at least stays good, attackers aim at good devices, and a wrong-CA certificate names
 * the device and carries its key but comes from another issuer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "device-sim/bad.h"

#define NDEV 20

static sim_fleet_t *make_fleet(void)
{
    sim_fleet_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->devices = calloc(NDEV, sizeof(*f->devices));
    assert_non_null(f->devices);
    f->count = NDEV;
    for (size_t d = 0; d < NDEV; d++) {
        snprintf(f->devices[d].id, sizeof(f->devices[d].id), "%032zx", d + 1);
        f->devices[d].key = EVP_EC_gen("P-256");
        assert_non_null(f->devices[d].key);
    }
    return f;
}

static void test_assignment(void **state)
{
    sim_fleet_t *f = make_fleet();
    sim_bad_t *a = sim_bad_new(f, NDEV, 0.5, 7), *b = sim_bad_new(f, NDEV, 0.5, 7);
    sim_bad_t *c = sim_bad_new(f, NDEV, 0.5, 8);
    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    /* Ten bad devices, two of each kind; the same seed picks the same ones. */
    assert_int_equal(a->devices[SIM_BAD_NONE], 10);
    for (int k = SIM_BAD_WRONG_CA; k < SIM_BAD_KINDS; k++)
        assert_int_equal(a->devices[k], 2);
    assert_memory_equal(a->kind, b->kind, NDEV);
    assert_memory_not_equal(a->kind, c->kind, NDEV);
    for (size_t d = 0; d < NDEV; d++) {
        assert_int_equal(a->kind[a->victim[d]], SIM_BAD_NONE);
        assert_true(a->victim[d] != d);
        if (a->kind[d] != SIM_BAD_WRONG_CA) {
            assert_null(a->cert[d]);
            continue;
        }
        X509 *x = a->cert[d];
        char cn[64];
        assert_non_null(x);
        assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
                                              sizeof(cn)) > 0);
        assert_string_equal(cn, f->devices[d].id);
        assert_int_equal(X509_check_private_key(x, f->devices[d].key), 1);
        assert_int_not_equal(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);
    }
    sim_bad_free(a);
    sim_bad_free(b);
    sim_bad_free(c);
    sim_fleet_free(f);
}

static void test_one_stays_good(void **state)
{
    sim_fleet_t *f = make_fleet();
    sim_bad_t *all = sim_bad_new(f, NDEV, 1.0, 1), *none = sim_bad_new(f, NDEV, 0, 1);
    (void)state;
    assert_non_null(all);
    assert_non_null(none);
    assert_int_equal(all->devices[SIM_BAD_NONE], 1);
    assert_int_equal(none->devices[SIM_BAD_NONE], NDEV);
    for (size_t d = 0; d < NDEV; d++)
        assert_int_equal(all->kind[all->victim[d]], SIM_BAD_NONE);
    sim_bad_free(all);
    sim_bad_free(none);
    sim_bad_free(NULL);
    sim_fleet_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assignment),
        cmocka_unit_test(test_one_stays_good),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
