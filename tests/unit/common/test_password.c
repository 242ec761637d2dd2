/*
 * Unit tests of common/password.c: scrypt password hashes (round trip, a known answer from an
 * independent implementation, malformed encodings), the password policy, and API tokens.
 * scrypt at the default parameters costs tens of milliseconds: the test runs it four times.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "common/ids.h"
#include "common/password.h"

static const char pw[] = "correct horse battery";

/*
 * The scrypt of pw with N=2^10, r=8, p=1 and the salt 00 01 .. 0f, computed with Python's
 * hashlib.scrypt (not OpenSSL's code path through this module).
 */
static const char known[] =
    "$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk";

static void test_hash_verify(void **state)
{
    (void)state;
    char h1[MH_PASSWORD_HASH_MAX], h2[MH_PASSWORD_HASH_MAX];

    assert_int_equal(mh_password_hash(pw, h1, sizeof(h1)), 0);
    assert_int_equal(strncmp(h1, "$scrypt$ln=15,r=8,p=1$", 22), 0);
    /* 22 characters of salt, '$', 43 of key. */
    assert_int_equal(strlen(h1), 22 + 22 + 1 + 43);
    assert_int_equal(h1[22 + 22], '$');
    assert_null(strchr(h1 + 22, '='));

    assert_int_equal(mh_password_verify(pw, h1), 1);
    assert_int_equal(mh_password_verify("correct horse batterY", h1), 0);

    /* A fresh salt each time. */
    assert_int_equal(mh_password_hash(pw, h2, sizeof(h2)), 0);
    assert_string_not_equal(h1, h2);

    /* A buffer smaller than documented is refused, not overrun. */
    char small[64];
    assert_int_equal(mh_password_hash(pw, small, sizeof(small)), -1);
    assert_string_equal(small, "");
}

static void test_known_answer(void **state)
{
    (void)state;
    assert_int_equal(mh_password_verify(pw, known), 1);
    assert_int_equal(mh_password_verify("", known), 0);

    /* Longer than any acceptable password: no match, without running scrypt. */
    char huge[MH_PASSWORD_MAX + 2];
    memset(huge, 'a', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    assert_int_equal(mh_password_verify(huge, known), 0);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "$scrypt$",
        "scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        "$argon2$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        /* out of range or odd numbers */
        "$scrypt$ln=30,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        "$scrypt$ln=9,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        "$scrypt$ln=21,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        "$scrypt$ln=10,r=0,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        "$scrypt$ln=10,r=17,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        "$scrypt$ln=10,r=8,p=5$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        "$scrypt$ln=10,r=8,p=0$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        "$scrypt$ln=010,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        "$scrypt$ln=+10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        "$scrypt$ln=,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        /* missing or reordered fields */
        "$scrypt$ln=10,r=8$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        "$scrypt$r=8,ln=10,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        "$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw",
        "$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$",
        "$scrypt$ln=10,r=8,p=1$$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        "$scrypt$ln=10,r=8,p=1",
        /* bad base64: alphabet, padding, blanks, non-canonical last character, lengths */
        "$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0OD*$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        "$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw==$"
        "hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        "$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk=",
        "$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOW ",
        "$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODx$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        "$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWl",
        "$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0O$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
        "$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOW",
        "$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYO",
        "$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$"
        "hKGWL22WtdGfIbxEPAZ06BS2bWyYKuZIKvypfAlYOWkAA",
        "$scrypt$ln=10,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$hKGWL22WtdGf$IbxEPAZ06BS2bWyYKuZIKvypfAlYOWk",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (mh_password_verify(pw, bad[i]) != -1)
            fail_msg("accepted malformed encoding #%zu: %s", i, bad[i]);
    }

    /* Too long to be a hash of ours. */
    char longer[MH_PASSWORD_HASH_MAX + 8];
    snprintf(longer, sizeof(longer), "%s%0*d", known, (int)(sizeof(longer) - sizeof(known)), 0);
    assert_int_equal(mh_password_verify(pw, longer), -1);
}

static void test_policy(void **state)
{
    (void)state;
    char err[128];
    char big[MH_PASSWORD_MAX + 2];

    assert_int_equal(mh_password_acceptable("0123456789", err, sizeof(err)), 0);
    assert_int_equal(mh_password_acceptable("pässwörd with spaces ~!", err, sizeof(err)), 0);

    assert_int_equal(mh_password_acceptable("", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too short"));
    assert_int_equal(mh_password_acceptable("012345678", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too short"));
    /* The message never quotes the password. */
    assert_null(strstr(err, "012345678"));

    memset(big, 'x', MH_PASSWORD_MAX);
    big[MH_PASSWORD_MAX] = '\0';
    assert_int_equal(mh_password_acceptable(big, err, sizeof(err)), 0);
    big[MH_PASSWORD_MAX] = 'x';
    big[MH_PASSWORD_MAX + 1] = '\0';
    assert_int_equal(mh_password_acceptable(big, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too long"));

    assert_int_equal(mh_password_acceptable("0123456789\t", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "control character"));
    assert_int_equal(mh_password_acceptable("0123456789\n", err, sizeof(err)), -1);
    assert_int_equal(mh_password_acceptable("0123456789\x7f", err, sizeof(err)), -1);
    assert_int_equal(mh_password_acceptable("\x1b[31m0123456789", err, sizeof(err)), -1);
}

static void test_generate(void **state)
{
    (void)state;
    char a[MH_PASSWORD_GENERATED_LEN + 1], b[MH_PASSWORD_GENERATED_LEN + 1];
    char err[128];

    assert_int_equal(mh_password_generate(a, sizeof(a)), 0);
    assert_int_equal(mh_password_generate(b, sizeof(b)), 0);
    assert_int_equal(strlen(a), MH_PASSWORD_GENERATED_LEN);
    assert_int_equal(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                     MH_PASSWORD_GENERATED_LEN);
    assert_string_not_equal(a, b);
    assert_int_equal(mh_password_acceptable(a, err, sizeof(err)), 0);
    assert_int_equal(mh_password_generate(a, MH_PASSWORD_GENERATED_LEN), -1);
}

static void test_token(void **state)
{
    (void)state;
    char t1[MH_TOKEN_MAX], t2[MH_TOKEN_MAX];

    assert_int_equal(mh_token_new(t1, sizeof(t1)), 0);
    assert_int_equal(mh_token_new(t2, sizeof(t2)), 0);
    assert_int_equal(strncmp(t1, MH_TOKEN_PREFIX, 4), 0);
    assert_string_equal(MH_TOKEN_PREFIX, "mht_");
    assert_int_equal(strlen(t1), MH_TOKEN_LEN);
    assert_int_equal(MH_TOKEN_LEN, 4 + 43);
    assert_int_equal(
        strspn(t1 + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);
    assert_string_not_equal(t1, t2);
    assert_true(mh_token_well_formed(t1));
    assert_true(mh_token_well_formed(t2));

    char small[MH_TOKEN_LEN + 1];
    assert_int_equal(mh_token_new(small, sizeof(small) - 1), -1);
    assert_string_equal(small, "");

    const char *body43 = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-_Z";
    char v[MH_TOKEN_MAX + 8];
    assert_int_equal(strlen(body43), 43);
    snprintf(v, sizeof(v), "mht_%s", body43);
    assert_true(mh_token_well_formed(v));
    snprintf(v, sizeof(v), "mhx_%s", body43);
    assert_false(mh_token_well_formed(v));
    snprintf(v, sizeof(v), "MHT_%s", body43);
    assert_false(mh_token_well_formed(v));
    snprintf(v, sizeof(v), "%s", body43);
    assert_false(mh_token_well_formed(v));
    snprintf(v, sizeof(v), "mht_%.42s", body43);
    assert_false(mh_token_well_formed(v));
    snprintf(v, sizeof(v), "mht_%sA", body43);
    assert_false(mh_token_well_formed(v));
    snprintf(v, sizeof(v), "mht_+%.42s", body43);
    assert_false(mh_token_well_formed(v));
    snprintf(v, sizeof(v), "mht_%.42s=", body43);
    assert_false(mh_token_well_formed(v));
    snprintf(v, sizeof(v), "mht_%.42s ", body43);
    assert_false(mh_token_well_formed(v));
    assert_false(mh_token_well_formed(""));
    assert_false(mh_token_well_formed("mht_"));
}

static void test_token_hash(void **state)
{
    (void)state;
    /* printf %s 'mht_abc' | sha256sum */
    static const char want[] = "492e7eff03f44397813638d25b058f3fdba85ab275749eb578abb6fa0accabe5";
    uint8_t h1[MH_TOKEN_HASH_LEN], h2[MH_TOKEN_HASH_LEN];
    char hex[2 * MH_TOKEN_HASH_LEN + 1];

    assert_int_equal(mh_token_hash("mht_abc", h1), 0);
    mh_hex_encode(h1, sizeof(h1), hex);
    assert_string_equal(hex, want);
    assert_int_equal(mh_token_hash("mht_abc", h2), 0);
    assert_memory_equal(h1, h2, sizeof(h1));
    assert_int_equal(mh_token_hash("mht_abd", h2), 0);
    assert_memory_not_equal(h1, h2, sizeof(h1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_verify), cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_malformed),   cmocka_unit_test(test_policy),
        cmocka_unit_test(test_generate),    cmocka_unit_test(test_token),
        cmocka_unit_test(test_token_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
