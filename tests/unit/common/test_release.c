/*
 * Unit tests of common/release.c (docs/upgrade.md): Ed25519 keys, signatures, the manifest and
 * each of its rules, versions, release ids, the release log's entry hash (against values
 * computed with printf | sha256sum, so this file documents the format), base64.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/release.h"

/* SHA-256 of "abc" and of "def" (FIPS 180-2 / sha256sum). */
#define SHA_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_DEF "cb8379ac2098aa165029e3938a51da0bcecfc008fd6795f401178647f96c5b34"
#define ZEROS64 "0000000000000000000000000000000000000000000000000000000000000000"

/* ---- helpers ------------------------------------------------------------------------------ */

static void fill_manifest(mh_manifest_t *m, const char *version, const char *notes)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->version, sizeof(m->version), "%s", version);
    snprintf(m->hardware, sizeof(m->hardware), "flm02");
    m->size = 1048576;
    snprintf(m->sha256, sizeof(m->sha256), "%s", SHA_ABC);
    m->notes = strdup(notes);
    m->issued = 1764158400;
    m->expires = 1771934400;
    snprintf(m->key_id, sizeof(m->key_id), "0123456789abcdef");
}

/* The documented example manifest, as raw JSON values per key; NULL omits a key. */
typedef struct fields {
    const char *format, *version, *hardware, *size, *sha256, *notes, *issued, *expires, *key_id;
    const char *extra; /* appended inside the object, e.g. ",\"x\":1" */
} fields_t;

static fields_t good_fields(void)
{
    fields_t f = {"\"meterhub-manifest/1\"", "\"2.4.1\"", "\"flm02\"",  "1048576",
                  "\"" SHA_ABC "\"",         "\"fixes\"", "1764158400", "1771934400",
                  "\"0123456789abcdef\"",    ""};
    return f;
}

/* Builds a manifest line from f (owned, free()); its length in *len. */
static char *build(const fields_t *f, size_t *len)
{
    const char *names[] = {"format", "version", "hardware", "size",  "sha256",
                           "notes",  "issued",  "expires",  "key_id"};
    const char *values[] = {f->format, f->version, f->hardware, f->size,  f->sha256,
                            f->notes,  f->issued,  f->expires,  f->key_id};
    size_t cap = 16384, n = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    n += (size_t)snprintf(out + n, cap - n, "{");
    bool first = true;
    for (size_t i = 0; i < 9; i++) {
        if (values[i] == NULL)
            continue;
        n += (size_t)snprintf(out + n, cap - n, "%s\"%s\":%s", first ? "" : ",", names[i],
                              values[i]);
        first = false;
    }
    n += (size_t)snprintf(out + n, cap - n, "%s}\n", f->extra);
    assert_true(n < cap);
    *len = n;
    return out;
}

/* Parses f's manifest: expects failure with an error mentioning want (when not NULL). */
static void expect_refused(const fields_t *f, const char *want)
{
    size_t len;
    char *text = build(f, &len);
    mh_manifest_t m;
    char err[256] = "";
    int rc = mh_manifest_parse((const uint8_t *)text, len, &m, err, sizeof(err));
    if (rc == 0 || (want != NULL && strstr(err, want) == NULL))
        fail_msg("manifest %s: rc %d, err '%s', wanted '%s'", text, rc, err, want ? want : "");
    /* Nothing to dispose on failure: m was left zeroed. */
    assert_null(m.notes);
    free(text);
}

static void expect_bytes_refused(const char *bytes, size_t len, const char *want)
{
    mh_manifest_t m;
    char err[256] = "";
    int rc = mh_manifest_parse((const uint8_t *)bytes, len, &m, err, sizeof(err));
    if (rc == 0 || (want != NULL && strstr(err, want) == NULL))
        fail_msg("manifest '%.*s': rc %d, err '%s', wanted '%s'", (int)len, bytes, rc, err,
                 want ? want : "");
}

/* ---- keys and signatures ------------------------------------------------------------------ */

static void test_sign_verify(void **state)
{
    (void)state;
    EVP_PKEY *key = mh_release_keygen(), *other = mh_release_keygen();
    assert_non_null(key);
    assert_non_null(other);
    const uint8_t msg[] = "{\"format\":\"meterhub-manifest/1\"}\n";
    size_t len = sizeof(msg) - 1;
    uint8_t sig[MH_RELEASE_SIG_LEN], bad[MH_RELEASE_SIG_LEN];
    uint8_t copy[sizeof(msg)];
    char err[256];

    assert_int_equal(mh_release_sign(key, msg, len, sig, err, sizeof(err)), 0);
    assert_int_equal(mh_release_verify(key, msg, len, sig, err, sizeof(err)), 0);

    /* Ed25519 is deterministic: the same key and message give the same signature. */
    assert_int_equal(mh_release_sign(key, msg, len, bad, err, sizeof(err)), 0);
    assert_memory_equal(sig, bad, sizeof(sig));

    /* Every single flipped bit of the message or of the signature is caught. */
    for (size_t i = 0; i < len * 8; i++) {
        memcpy(copy, msg, len);
        copy[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_int_equal(mh_release_verify(key, copy, len, sig, err, sizeof(err)), -1);
    }
    assert_non_null(strstr(err, "signature"));
    for (size_t i = 0; i < sizeof(sig) * 8; i++) {
        memcpy(bad, sig, sizeof(sig));
        bad[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_int_equal(mh_release_verify(key, msg, len, bad, err, sizeof(err)), -1);
    }
    /* A message one byte shorter, and another key. */
    assert_int_equal(mh_release_verify(key, msg, len - 1, sig, err, sizeof(err)), -1);
    assert_int_equal(mh_release_verify(other, msg, len, sig, err, sizeof(err)), -1);

    /* Only Ed25519 keys are accepted. */
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(ec);
    assert_int_equal(mh_release_sign(ec, msg, len, bad, err, sizeof(err)), -1);
    assert_int_equal(mh_release_verify(ec, msg, len, sig, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "Ed25519"));
    uint8_t raw[MH_RELEASE_PUBKEY_LEN];
    assert_int_equal(mh_release_raw_public(ec, raw), -1);

    EVP_PKEY_free(ec);
    EVP_PKEY_free(other);
    EVP_PKEY_free(key);
}

static char *write_temp(const char *tmpl, const char *text, size_t len)
{
    char *path = strdup(tmpl);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

static char *pem_of(EVP_PKEY *key, bool private_key, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    if (private_key)
        assert_int_equal(PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL), 1);
    else
        assert_int_equal(PEM_write_bio_PUBKEY(bio, key), 1);
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *out = malloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    *len = (size_t)n;
    BIO_free(bio);
    return out;
}

static void test_key_files(void **state)
{
    (void)state;
    EVP_PKEY *key = mh_release_keygen();
    assert_non_null(key);
    size_t priv_len, pub_len;
    char *priv_pem = pem_of(key, true, &priv_len);
    char *pub_pem = pem_of(key, false, &pub_len);
    char *priv_path = write_temp("/tmp/test_release_keyXXXXXX", priv_pem, priv_len);
    char *pub_path = write_temp("/tmp/test_release_pubXXXXXX", pub_pem, pub_len);
    char err[256];
    uint8_t raw1[MH_RELEASE_PUBKEY_LEN], raw2[MH_RELEASE_PUBKEY_LEN], raw3[MH_RELEASE_PUBKEY_LEN];

    EVP_PKEY *priv = mh_release_load_private(priv_path, err, sizeof(err));
    EVP_PKEY *pub = mh_release_load_public(pub_path, err, sizeof(err));
    EVP_PKEY *mem = mh_release_public_from_pem(pub_pem, pub_len, err, sizeof(err));
    assert_non_null(priv);
    assert_non_null(pub);
    assert_non_null(mem);
    assert_int_equal(mh_release_raw_public(priv, raw1), 0);
    assert_int_equal(mh_release_raw_public(pub, raw2), 0);
    assert_int_equal(mh_release_raw_public(mem, raw3), 0);
    assert_memory_equal(raw1, raw2, sizeof(raw1));
    assert_memory_equal(raw1, raw3, sizeof(raw1));

    /* A signature by the loaded private key verifies with the loaded public key. */
    const uint8_t msg[] = "hello";
    uint8_t sig[MH_RELEASE_SIG_LEN];
    assert_int_equal(mh_release_sign(priv, msg, 5, sig, err, sizeof(err)), 0);
    assert_int_equal(mh_release_verify(pub, msg, 5, sig, err, sizeof(err)), 0);

    /* Fingerprint = SHA-256 of the raw public key; key id = its first 16 hex digits. */
    char fp[MH_RELEASE_HASH_HEX + 1], kid[MH_RELEASE_KEY_ID_LEN + 1], want[MH_RELEASE_HASH_HEX + 1];
    assert_int_equal(mh_release_key_ids(pub, fp, kid), 0);
    mh_sha256_hex(raw1, sizeof(raw1), want);
    assert_string_equal(fp, want);
    assert_int_equal(strlen(kid), 16);
    assert_memory_equal(kid, fp, 16);
    assert_int_equal(mh_release_key_ids(priv, NULL, kid), 0);
    assert_int_equal(mh_release_key_ids(priv, fp, NULL), 0);
    assert_string_equal(fp, want);

    /* Refusals: a public key file as private key and vice versa, a missing file, an EC key,
     * garbage. */
    assert_null(mh_release_load_private(pub_path, err, sizeof(err)));
    assert_non_null(strstr(err, "private key"));
    assert_null(mh_release_load_public(priv_path, err, sizeof(err)));
    assert_non_null(strstr(err, "public key"));
    assert_null(mh_release_load_public("/nonexistent/release.pub", err, sizeof(err)));
    assert_non_null(strstr(err, "cannot open"));
    assert_null(mh_release_public_from_pem("garbage", 7, err, sizeof(err)));

    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    size_t ec_len;
    char *ec_pem = pem_of(ec, false, &ec_len);
    assert_null(mh_release_public_from_pem(ec_pem, ec_len, err, sizeof(err)));
    assert_non_null(strstr(err, "not an Ed25519 key"));
    char *ec_priv_pem = pem_of(ec, true, &ec_len);
    char *ec_path = write_temp("/tmp/test_release_ecXXXXXX", ec_priv_pem, ec_len);
    assert_null(mh_release_load_private(ec_path, err, sizeof(err)));
    assert_non_null(strstr(err, "not an Ed25519 key"));

    unlink(ec_path);
    unlink(priv_path);
    unlink(pub_path);
    free(ec_path);
    free(ec_priv_pem);
    free(ec_pem);
    free(priv_path);
    free(pub_path);
    free(priv_pem);
    free(pub_pem);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(mem);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(priv);
    EVP_PKEY_free(key);
}

/* ---- versions ----------------------------------------------------------------------------- */

static void test_versions(void **state)
{
    (void)state;
    uint32_t a[4], b[4], c[4], d[4];

    assert_int_equal(mh_release_version_parse("2.4", a), 0);
    assert_int_equal(mh_release_version_parse("2.4.0", b), 0);
    assert_int_equal(mh_release_version_parse("2.4.1", c), 0);
    assert_int_equal(mh_release_version_parse("2.10", d), 0);
    assert_int_equal(mh_release_version_cmp(a, b), 0);
    assert_true(mh_release_version_cmp(b, c) < 0);
    assert_true(mh_release_version_cmp(c, d) < 0);
    assert_true(mh_release_version_cmp(d, a) > 0);
    assert_true(mh_release_version_cmp(c, b) > 0);
    assert_int_equal(a[0], 2);
    assert_int_equal(a[1], 4);
    assert_int_equal(a[2], 0);
    assert_int_equal(a[3], 0);

    assert_int_equal(mh_release_version_parse("2", a), 0);
    assert_int_equal(mh_release_version_parse("2.4.1.7", a), 0);
    assert_int_equal(a[3], 7);
    assert_int_equal(mh_release_version_parse("999999999.0.0.999999999", a), 0);
    assert_int_equal(a[0], 999999999);
    assert_int_equal(a[3], 999999999);
    /* Leading zeros are digits like any other: 02.4 is 2.4. */
    assert_int_equal(mh_release_version_parse("02.4", b), 0);
    assert_int_equal(mh_release_version_parse("2.4", c), 0);
    assert_int_equal(mh_release_version_cmp(b, c), 0);

    static const char *const bad[] = {
        "",         "1.", ".1",   "1..2",     "1.2.3.4.5", "1234567890", "1.1234567890",
        "-1",       "v1", "1.2a", " 1",       "1 ",        "1,2",        "+1",
        "1.2.3.4.", ".",  "1.-2", "\xc2\xb2",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint32_t v[4] = {7, 7, 7, 7};
        if (mh_release_version_parse(bad[i], v) != -1)
            fail_msg("version '%s' accepted", bad[i]);
        /* Output untouched on failure. */
        assert_int_equal(v[0], 7);
    }
    assert_int_equal(mh_release_version_parse(NULL, a), -1);
}

/* ---- manifests ---------------------------------------------------------------------------- */

static void test_manifest_roundtrip(void **state)
{
    (void)state;
    mh_manifest_t m, p;
    uint8_t *bytes = NULL, *again = NULL;
    size_t len = 0, len2 = 0;
    char err[256];

    fill_manifest(&m, "2.4.1", "fixes \"quotes\", \\ back\\slashes, \xc3\xa9t\xc3\xa9, tabs\t");
    assert_int_equal(mh_manifest_serialize(&m, &bytes, &len, err, sizeof(err)), 0);
    /* The documented layout: one compact line in the documented key order, then "\n". */
    static const char want[] =
        "{\"format\":\"meterhub-manifest/1\",\"version\":\"2.4.1\",\"hardware\":\"flm02\","
        "\"size\":1048576,\"sha256\":\"" SHA_ABC "\",\"notes\":\"fixes \\\"quotes\\\", \\\\ "
        "back\\\\slashes, \xc3\xa9t\xc3\xa9, tabs\\t\",\"issued\":1764158400,"
        "\"expires\":1771934400,\"key_id\":\"0123456789abcdef\"}\n";
    assert_int_equal(len, sizeof(want) - 1);
    assert_memory_equal(bytes, want, len);

    assert_int_equal(mh_manifest_parse(bytes, len, &p, err, sizeof(err)), 0);
    assert_string_equal(p.version, "2.4.1");
    assert_int_equal(p.version_key[0], 2);
    assert_int_equal(p.version_key[1], 4);
    assert_int_equal(p.version_key[2], 1);
    assert_int_equal(p.version_key[3], 0);
    assert_string_equal(p.hardware, "flm02");
    assert_int_equal(p.size, 1048576);
    assert_string_equal(p.sha256, SHA_ABC);
    assert_string_equal(p.notes, m.notes);
    assert_int_equal(p.issued, 1764158400);
    assert_int_equal(p.expires, 1771934400);
    assert_string_equal(p.key_id, "0123456789abcdef");

    /* Serialising what was parsed gives the same bytes back. */
    assert_int_equal(mh_manifest_serialize(&p, &again, &len2, err, sizeof(err)), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(again, bytes, len);

    /* The release id is the first 32 hex digits of the manifest's SHA-256. */
    char id[MH_RELEASE_ID_LEN + 1], sha[MH_RELEASE_HASH_HEX + 1];
    assert_int_equal(mh_release_id(bytes, len, id), 0);
    mh_sha256_hex(bytes, len, sha);
    assert_int_equal(strlen(id), 32);
    assert_memory_equal(id, sha, 32);
    assert_int_equal(mh_release_id((const uint8_t *)"abc", 3, id), 0);
    assert_string_equal(id, "ba7816bf8f01cfea414140de5dae2223");

    free(again);
    free(bytes);
    mh_manifest_dispose(&p);
    mh_manifest_dispose(&m);

    /* Bounds that are allowed: empty notes, 4096 bytes of notes, the largest size, a
     * one-second validity, issued 0. */
    char *big = malloc(MH_RELEASE_MAX_NOTES + 1);
    memset(big, 'n', MH_RELEASE_MAX_NOTES);
    big[MH_RELEASE_MAX_NOTES] = '\0';
    const char *notes[] = {"", big};
    for (size_t i = 0; i < 2; i++) {
        fill_manifest(&m, "1", notes[i]);
        m.size = MH_RELEASE_MAX_SIZE;
        m.issued = 0;
        m.expires = 1;
        snprintf(m.hardware, sizeof(m.hardware), "a.b_c-d0123456789012345678901234");
        assert_int_equal(strlen(m.hardware), 32);
        assert_int_equal(mh_manifest_serialize(&m, &bytes, &len, err, sizeof(err)), 0);
        assert_int_equal(mh_manifest_parse(bytes, len, &p, err, sizeof(err)), 0);
        assert_int_equal(p.size, MH_RELEASE_MAX_SIZE);
        assert_int_equal(strlen(p.notes), strlen(notes[i]));
        mh_manifest_dispose(&p);
        mh_manifest_dispose(&m);
        free(bytes);
    }
    free(big);
}

static void test_manifest_serialize_refusals(void **state)
{
    (void)state;
    mh_manifest_t m;
    uint8_t sentinel = 0;
    uint8_t *bytes = &sentinel;
    size_t len = 99;
    char err[256];

    fill_manifest(&m, "1.2.3.4.5", "");
    assert_int_equal(mh_manifest_serialize(&m, &bytes, &len, err, sizeof(err)), -1);
    assert_null(bytes);
    assert_int_equal(len, 0);
    assert_non_null(strstr(err, "version"));
    mh_manifest_dispose(&m);

    fill_manifest(&m, "1", "");
    snprintf(m.hardware, sizeof(m.hardware), "FLM02");
    assert_int_equal(mh_manifest_serialize(&m, &bytes, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "hardware"));
    mh_manifest_dispose(&m);

    fill_manifest(&m, "1", "");
    m.size = 0;
    assert_int_equal(mh_manifest_serialize(&m, &bytes, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "size"));
    mh_manifest_dispose(&m);

    fill_manifest(&m, "1", "");
    m.expires = m.issued;
    assert_int_equal(mh_manifest_serialize(&m, &bytes, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "expires"));
    mh_manifest_dispose(&m);

    fill_manifest(&m, "1", "bad \xff utf-8");
    assert_int_equal(mh_manifest_serialize(&m, &bytes, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "UTF-8"));
    mh_manifest_dispose(&m);

    /* 4096 bytes of notes, each a control character written as a 6-byte escape: the
     * manifest would exceed MH_RELEASE_MAX_MANIFEST. */
    char *ctl = malloc(MH_RELEASE_MAX_NOTES + 1);
    memset(ctl, 0x01, MH_RELEASE_MAX_NOTES);
    ctl[MH_RELEASE_MAX_NOTES] = '\0';
    fill_manifest(&m, "1", ctl);
    assert_int_equal(mh_manifest_serialize(&m, &bytes, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "longer than"));
    mh_manifest_dispose(&m);
    free(ctl);

    fill_manifest(&m, "1", "");
    snprintf(m.key_id, sizeof(m.key_id), "0123456789ABCDEF");
    assert_int_equal(mh_manifest_serialize(&m, &bytes, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "key_id"));
    mh_manifest_dispose(&m);
}

static void test_manifest_parse_rules(void **state)
{
    (void)state;
    fields_t f;
    size_t len;

    /* The baseline parses. */
    f = good_fields();
    char *text = build(&f, &len);
    mh_manifest_t m;
    char err[256];
    assert_int_equal(mh_manifest_parse((const uint8_t *)text, len, &m, err, sizeof(err)), 0);
    mh_manifest_dispose(&m);

    /* Each key missing. */
    const char **slots[] = {&f.format, &f.version, &f.hardware, &f.size,  &f.sha256,
                            &f.notes,  &f.issued,  &f.expires,  &f.key_id};
    const char *names[] = {"format", "version", "hardware", "size",  "sha256",
                           "notes",  "issued",  "expires",  "key_id"};
    for (size_t i = 0; i < 9; i++) {
        char want[64];
        f = good_fields();
        *slots[i] = NULL;
        snprintf(want, sizeof(want), "missing key '%s'", names[i]);
        expect_refused(&f, want);
    }
    /* Unknown and duplicate keys. */
    f = good_fields();
    f.extra = ",\"signature\":\"x\"";
    expect_refused(&f, "unknown key 'signature'");
    f.extra = ",\"Version\":\"2.4.1\"";
    expect_refused(&f, "unknown key 'Version'");
    f.extra = ",\"version\":\"2.4.1\"";
    expect_refused(&f, "duplicate");
    f.extra = ",\"size\":1048576";
    expect_refused(&f, "duplicate");

    /* Wrong types, one per key. */
    struct {
        size_t slot;
        const char *value;
        const char *want;
    } types[] = {
        {0, "1", "format"},
        {0, "\"meterhub-manifest/2\"", "format"},
        {0, "\"meterhub-manifest/1 \"", "format"},
        {1, "2.4", "version: expected a string"},
        {1, "[\"2.4.1\"]", "version: expected a string"},
        {2, "null", "hardware: expected a string"},
        {3, "\"1048576\"", "size: expected an integer"},
        {3, "1048576.0", "size: expected an integer"},
        {3, "1e6", "size: expected an integer"},
        {3, "true", "size: expected an integer"},
        {4, "{}", "sha256: expected a string"},
        {5, "null", "notes: expected a string"},
        {5, "[]", "notes: expected a string"},
        {6, "\"1764158400\"", "issued: expected an integer"},
        {7, "1771934400.5", "expires: expected an integer"},
        {8, "123", "key_id: expected a string"},
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        f = good_fields();
        *slots[types[i].slot] = types[i].value;
        expect_refused(&f, types[i].want);
    }

    /* Values out of their rules. */
    struct {
        size_t slot;
        const char *value;
        const char *want;
    } values[] = {
        {1, "\"\"", "version"},
        {1, "\"1.\"", "version"},
        {1, "\"1.2.3.4.5\"", "version"},
        {1, "\"1234567890\"", "version"},
        {1, "\"v2.4.1\"", "version"},
        {1, "\"-1\"", "version"},
        {1, "\"1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20\"", "version"},
        {2, "\"\"", "hardware"},
        {2, "\"FLM02\"", "hardware"},
        {2, "\"-flm\"", "hardware"},
        {2, "\".flm\"", "hardware"},
        {2, "\"flm 02\"", "hardware"},
        {2, "\"flm/02\"", "hardware"},
        {2, "\"a23456789012345678901234567890123\"", "hardware"},
        {3, "0", "size"},
        {3, "-1", "size"},
        {3, "268435457", "size"},
        {3, "99999999999999999999999", "JSON"},
        {4, "\"" ZEROS64 "0\"", "sha256"},
        {4, "\"BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD\"", "sha256"},
        {4, "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a\"", "sha256"},
        {4, "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ag\"", "sha256"},
        {6, "1771934400", "expires is not after issued"},
        {6, "1771934401", "expires is not after issued"},
        {6, "-1", "issued"},
        {7, "253402300800", "expires"},
        {8, "\"0123456789abcde\"", "key_id"},
        {8, "\"0123456789abcdef0\"", "key_id"},
        {8, "\"0123456789ABCDEF\"", "key_id"},
    };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        f = good_fields();
        *slots[values[i].slot] = values[i].value;
        expect_refused(&f, values[i].want);
    }

    /* Notes: 4096 bytes pass, 4097 do not (the byte count is of UTF-8, not characters). */
    char *notes = malloc(MH_RELEASE_MAX_NOTES + 8);
    notes[0] = '"';
    memset(notes + 1, 'x', MH_RELEASE_MAX_NOTES);
    strcpy(notes + 1 + MH_RELEASE_MAX_NOTES, "\"");
    f = good_fields();
    f.notes = notes;
    free(text);
    text = build(&f, &len);
    assert_int_equal(mh_manifest_parse((const uint8_t *)text, len, &m, err, sizeof(err)), 0);
    mh_manifest_dispose(&m);
    memset(notes + 1, 'x', MH_RELEASE_MAX_NOTES + 1);
    strcpy(notes + 2 + MH_RELEASE_MAX_NOTES, "\"");
    expect_refused(&f, "notes: longer than 4096 bytes");
    /* 2048 two-byte characters are 4096 bytes: fine; one more is not. */
    char *wide = malloc(2 * 2049 + 3);
    wide[0] = '"';
    for (size_t i = 0; i < 2048; i++)
        memcpy(wide + 1 + 2 * i, "\xc3\xa9", 2);
    strcpy(wide + 1 + 4096, "\"");
    f.notes = wide;
    free(text);
    text = build(&f, &len);
    assert_int_equal(mh_manifest_parse((const uint8_t *)text, len, &m, err, sizeof(err)), 0);
    mh_manifest_dispose(&m);
    memcpy(wide + 1 + 4096, "\xc3\xa9\"", 4);
    expect_refused(&f, "notes: longer than 4096 bytes");
    free(wide);
    free(notes);

    /* Not UTF-8, in a value and in a key; an escaped NUL. */
    f = good_fields();
    f.notes = "\"caf\xe9\"";
    expect_refused(&f, "JSON");
    f.notes = "\"\xc0\xaf\"";
    expect_refused(&f, "JSON");
    f.notes = "\"\xed\xa0\x80\"";
    expect_refused(&f, "JSON");
    f.notes = "\"a\\u0000b\"";
    expect_refused(&f, "JSON");
    f = good_fields();
    f.extra = ",\"\xff\":1";
    expect_refused(&f, "JSON");

    /* Not the canonical bytes: escapes, blanks, order, the newline. */
    f = good_fields();
    f.version = "\"\\u0032.4.1\"";
    expect_refused(&f, "canonical");
    f = good_fields();
    f.notes = "\"a\\/b\"";
    expect_refused(&f, "canonical");
    f = good_fields();
    f.size = "1048576 ";
    expect_refused(&f, "canonical");

    f = good_fields();
    free(text);
    text = build(&f, &len);
    /* Without the final newline, with two, with CRLF, with a space before it. */
    expect_bytes_refused(text, len - 1, "canonical");
    char *longer = malloc(len + 2);
    memcpy(longer, text, len);
    longer[len] = '\n';
    expect_bytes_refused(longer, len + 1, "canonical");
    memcpy(longer + len - 1, "\r\n", 2);
    expect_bytes_refused(longer, len + 1, "canonical");
    memcpy(longer + len - 1, " \n", 2);
    expect_bytes_refused(longer, len + 1, "canonical");
    /* Trailing garbage after the object. */
    memcpy(longer + len - 1, "x\n", 2);
    expect_bytes_refused(longer, len + 1, "JSON");
    memcpy(longer + len - 1, "{}", 2);
    expect_bytes_refused(longer, len + 1, "JSON");
    /* A NUL byte inside. */
    memcpy(longer, text, len);
    longer[len - 1] = '\0';
    longer[len] = '\n';
    expect_bytes_refused(longer, len + 1, "JSON");
    free(longer);

    /* Key order swapped. */
    static const char swapped[] =
        "{\"version\":\"2.4.1\",\"format\":\"meterhub-manifest/1\",\"hardware\":\"flm02\","
        "\"size\":1048576,\"sha256\":\"" SHA_ABC "\",\"notes\":\"fixes\",\"issued\":1764158400,"
        "\"expires\":1771934400,\"key_id\":\"0123456789abcdef\"}\n";
    expect_bytes_refused(swapped, sizeof(swapped) - 1, "canonical");

    /* Not an object; empty; too large. */
    expect_bytes_refused("[]\n", 3, "not a JSON object");
    expect_bytes_refused("\"x\"\n", 4, "JSON");
    expect_bytes_refused("", 0, "expected 1 to 8192 bytes");
    char *huge = malloc(MH_RELEASE_MAX_MANIFEST + 1);
    memset(huge, ' ', MH_RELEASE_MAX_MANIFEST + 1);
    expect_bytes_refused(huge, MH_RELEASE_MAX_MANIFEST + 1, "expected 1 to 8192 bytes");
    free(huge);
    free(text);

    /* A NULL err is allowed. */
    expect_bytes_refused("[]\n", 3, NULL);
    assert_int_equal(mh_manifest_parse((const uint8_t *)"[]", 2, &m, NULL, 0), -1);
}

/* ---- the release log ---------------------------------------------------------------------- */

/*
 * The expected hashes were computed with the documented formula in a shell, not with this
 * code:
 *   sig1=$(python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(64)))' | base64 -w0)
 *   printf 'meterhub-release-log/1\n1\n%s\n%s\n%s\n' "$(printf '0%.0s' $(seq 64))" \
 *       "$(printf abc | sha256sum | cut -c1-64)" "$sig1" | sha256sum
 *   sig2=$(python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(255,191,-1)))' | base64 -w0)
 *   printf 'meterhub-release-log/1\n2\n%s\n%s\n%s\n' "$hash1" \
 *       "$(printf def | sha256sum | cut -c1-64)" "$sig2" | sha256sum
 */
#define LOG_HASH_1 "f0bd34175bdbb9bcae9afa90128ff588ceff1f5355e1e5347f904ad1b90296ab"
#define LOG_HASH_2 "0dfe9d8a75eb96a74d511025c21c4b9fa54b98ae40d892e4f7c288622bda7fae"

static void test_log_hash(void **state)
{
    (void)state;
    uint8_t sig1[64], sig2[64];
    char h1[65], h2[65], again[65];
    for (int i = 0; i < 64; i++) {
        sig1[i] = (uint8_t)i;
        sig2[i] = (uint8_t)(255 - i);
    }

    assert_int_equal(mh_release_log_hash(1, ZEROS64, SHA_ABC, sig1, h1), 0);
    assert_string_equal(h1, LOG_HASH_1);
    assert_int_equal(mh_release_log_hash(2, h1, SHA_DEF, sig2, h2), 0);
    assert_string_equal(h2, LOG_HASH_2);

    /* The same formula spelled out with EVP_Digest and the base64 from the shell. */
    char text[512];
    int n = snprintf(text, sizeof(text), "meterhub-release-log/1\n%d\n%s\n%s\n%s\n", 1, ZEROS64,
                     SHA_ABC,
                     "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1"
                     "Njc4OTo7PD0+Pw==");
    mh_sha256_hex((const uint8_t *)text, (size_t)n, again);
    assert_string_equal(again, LOG_HASH_1);

    /* Each input matters. */
    assert_int_equal(mh_release_log_hash(3, h1, SHA_DEF, sig2, again), 0);
    assert_string_not_equal(again, LOG_HASH_2);
    assert_int_equal(mh_release_log_hash(2, ZEROS64, SHA_DEF, sig2, again), 0);
    assert_string_not_equal(again, LOG_HASH_2);
    assert_int_equal(mh_release_log_hash(2, h1, SHA_ABC, sig2, again), 0);
    assert_string_not_equal(again, LOG_HASH_2);
    sig2[63] ^= 1;
    assert_int_equal(mh_release_log_hash(2, h1, SHA_DEF, sig2, again), 0);
    assert_string_not_equal(again, LOG_HASH_2);

    /* Refusals: seq below 1, uppercase or short hex. */
    assert_int_equal(mh_release_log_hash(0, ZEROS64, SHA_ABC, sig1, again), -1);
    assert_int_equal(mh_release_log_hash(-1, ZEROS64, SHA_ABC, sig1, again), -1);
    assert_int_equal(mh_release_log_hash(1, "00", SHA_ABC, sig1, again), -1);
    assert_int_equal(
        mh_release_log_hash(1, ZEROS64,
                            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
                            sig1, again),
        -1);
    assert_int_equal(mh_release_log_hash(1, ZEROS64, SHA_ABC "0", sig1, again), -1);
}

/* ---- encodings ---------------------------------------------------------------------------- */

static void test_sha256_hex(void **state)
{
    (void)state;
    char out[65];
    mh_sha256_hex((const uint8_t *)"abc", 3, out);
    assert_string_equal(out, SHA_ABC);
    mh_sha256_hex((const uint8_t *)"", 0, out);
    assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_base64(void **state)
{
    (void)state;
    /* RFC 4648, section 10. */
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const coded[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                        "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char *e = mh_base64_encode((const uint8_t *)plain[i], strlen(plain[i]));
        assert_string_equal(e, coded[i]);
        size_t n = 99;
        uint8_t *d = mh_base64_decode(e, strlen(e), &n);
        assert_non_null(d);
        assert_int_equal(n, strlen(plain[i]));
        assert_memory_equal(d, plain[i], n);
        free(d);
        free(e);
    }

    /* Every byte value, every length up to 70, round trip; one trailing newline allowed. */
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    for (size_t len = 0; len <= 70; len++) {
        char *e = mh_base64_encode(all + 100, len);
        size_t elen = strlen(e);
        assert_int_equal(elen, (len + 2) / 3 * 4);
        char *nl = malloc(elen + 2);
        memcpy(nl, e, elen);
        nl[elen] = '\n';
        size_t n;
        uint8_t *d = mh_base64_decode(nl, elen + 1, &n);
        assert_non_null(d);
        assert_int_equal(n, len);
        assert_memory_equal(d, all + 100, len);
        free(d);
        free(nl);
        free(e);
    }
    char *e = mh_base64_encode(all, 256);
    assert_null(strchr(e, '\n'));
    free(e);

    /* Malformed: length, alphabet (base64url too), padding in the middle or too much, blanks,
     * two newlines, a leading newline, non-zero unused bits. */
    static const char *const bad[] = {
        "Z",      "Zg",    "Zg=",   "Zg===",    "Z===",     "====", "Zm9v\n\n",
        "\nZm9v", "Zm 9v", " Zm9v", "Zm9v ",    "Zm9v\r\n", "Zm-_", "Zm9v=Zg=",
        "Z=9v",   "Zh==",  "Zm9=",  "Zg==Zg==", "Zm9\x80",  "*m9v", "Zm9v\t",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = 99;
        uint8_t *d = mh_base64_decode(bad[i], strlen(bad[i]), &n);
        if (d != NULL)
            fail_msg("base64 '%s' accepted", bad[i]);
        assert_int_equal(n, 0);
    }
    /* Only len bytes are read: a valid prefix of a longer buffer decodes. */
    size_t n;
    uint8_t *d = mh_base64_decode("Zm9vgarbage", 4, &n);
    assert_non_null(d);
    assert_int_equal(n, 3);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_manifest_roundtrip),
        cmocka_unit_test(test_manifest_serialize_refusals),
        cmocka_unit_test(test_manifest_parse_rules),
        cmocka_unit_test(test_log_hash),
        cmocka_unit_test(test_sha256_hex),
        cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
