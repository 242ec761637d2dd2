/*
 * Unit tests of common/provision.c without a database: the device CA, issued certificates and
 * CSR signing against a throwaway PKI made here, the pure helpers, and the staging of files.
 * (mh_prov_insert, mh_prov_account_ensure and mh_prov_run need PostgreSQL: integration.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cert.h"
#include "common/ids.h"
#include "common/provision.h"

static const char device_id[] = "0123456789abcdef0123456789abcdef";

/* ---- a throwaway PKI -------------------------------------------------------------------- */

typedef struct pki {
    char dir[64];
    EVP_PKEY *root_key, *dca_key;
    X509 *root, *dca;
    mh_device_ca_t *ca;
} pki_t;

static long next_serial = 1;

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* A certificate for key named cn, signed by issuer (NULL: self-signed), CA or leaf. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, int is_ca)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), next_serial++);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "O", MBSTRING_ASC,
                               (const unsigned char *)"meterhub test", -1, -1, 0);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    add_ext(x, issuer ? issuer : x, NID_basic_constraints,
            is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    add_ext(x, issuer ? issuer : x, NID_key_usage,
            is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    add_ext(x, issuer ? issuer : x, NID_subject_key_identifier, "hash");
    if (issuer != NULL)
        add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
    assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static char *cert_pem(X509 *x)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509(bio, x), 1);
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    char *s = strndup(data, (size_t)len);
    BIO_free(bio);
    return s;
}

static void write_file(const char *dir, const char *name, const char *data, mode_t mode)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(data, f);
    fclose(f);
    chmod(path, mode);
}

static void write_key(const char *dir, const char *name, EVP_PKEY *key)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    chmod(path, 0600);
}

static void write_cert(const char *dir, const char *name, X509 *x)
{
    char *pem = cert_pem(x);
    write_file(dir, name, pem, 0644);
    free(pem);
}

static void remove_tree(const char *path)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static int pki_setup(void **state)
{
    pki_t *p = calloc(1, sizeof(*p));
    snprintf(p->dir, sizeof(p->dir), "/tmp/mh-test-pki-XXXXXX");
    if (mkdtemp(p->dir) == NULL)
        return -1;
    p->root_key = EVP_EC_gen("P-256");
    p->dca_key = EVP_EC_gen("P-256");
    p->root = make_cert(p->root_key, "root", NULL, NULL, 1);
    p->dca = make_cert(p->dca_key, "device CA", p->root, p->root_key, 1);
    write_key(p->dir, "device-ca.key", p->dca_key);
    write_cert(p->dir, "device-ca.crt", p->dca);
    write_cert(p->dir, "ca.crt", p->root);
    p->ca = mh_device_ca_load(p->dir);
    if (p->ca == NULL)
        return -1;
    *state = p;
    return 0;
}

static int pki_teardown(void **state)
{
    pki_t *p = *state;
    mh_device_ca_free(p->ca);
    X509_free(p->root);
    X509_free(p->dca);
    EVP_PKEY_free(p->root_key);
    EVP_PKEY_free(p->dca_key);
    remove_tree(p->dir);
    free(p);
    return 0;
}

static X509 *parse_cert(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *parse_key(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(k);
    return k;
}

/* Verifies leaf against the PKI: root trusted, device CA as intermediate, client purpose.
 * Returns the X509_V_* result. */
static int verify_chain(const pki_t *p, X509 *leaf)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_add_cert(store, p->root);
    STACK_OF(X509) *chain = sk_X509_new_null();
    sk_X509_push(chain, p->dca);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, store, leaf, chain);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    int ok = X509_verify_cert(ctx);
    int err = ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    sk_X509_free(chain);
    X509_STORE_free(store);
    ERR_clear_error();
    return err;
}

static const char *name_entry(X509_NAME *name, int idx, int *nid)
{
    X509_NAME_ENTRY *e = X509_NAME_get_entry(name, idx);
    assert_non_null(e);
    *nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
    return (const char *)ASN1_STRING_get0_data(X509_NAME_ENTRY_get_data(e));
}

static int ext_critical(X509 *x, int nid)
{
    int idx = X509_get_ext_by_NID(x, nid, -1);
    assert_true(idx >= 0);
    return X509_EXTENSION_get_critical(X509_get_ext(x, idx));
}

/* The fields every device certificate has, whatever its key came from. */
static void check_device_cert(const pki_t *p, X509 *x, const mh_device_cred_t *cred, int days)
{
    int nid;
    X509_NAME *subj = X509_get_subject_name(x);
    assert_int_equal(X509_NAME_entry_count(subj), 2);
    assert_string_equal(name_entry(subj, 0, &nid), "meterhub device");
    assert_int_equal(nid, NID_organizationName);
    assert_string_equal(name_entry(subj, 1, &nid), device_id);
    assert_int_equal(nid, NID_commonName);
    char cn[64];
    assert_int_equal(mh_cert_subject_cn(x, cn, sizeof(cn)), 0);
    assert_string_equal(cn, device_id);
    assert_string_equal(cred->id, device_id);

    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(p->dca)), 0);
    assert_int_equal(X509_get_version(x), X509_VERSION_3);

    /* Serial: positive, at most 128 bits, and not a small counter. */
    BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    assert_false(BN_is_negative(serial));
    assert_true(BN_num_bits(serial) <= 128);
    assert_true(BN_num_bits(serial) > 64);
    BN_free(serial);

    /* Validity: starts about now, lasts exactly `days`. */
    int pday = 0, psec = 0;
    assert_int_equal(ASN1_TIME_diff(&pday, &psec, X509_get0_notBefore(x), X509_get0_notAfter(x)),
                     1);
    assert_int_equal(pday, days);
    assert_int_equal(psec, 0);

    /* Extensions. */
    uint32_t flags = X509_get_extension_flags(x);
    assert_false(flags & EXFLAG_CA);
    assert_true(flags & EXFLAG_BCONS);
    assert_int_equal(ext_critical(x, NID_basic_constraints), 1);
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
    assert_int_equal(ext_critical(x, NID_key_usage), 1);
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_CLIENT);
    assert_int_equal(ext_critical(x, NID_ext_key_usage), 0);
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(x);
    assert_non_null(skid);
    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(x);
    assert_non_null(akid);
    assert_int_equal(ASN1_OCTET_STRING_cmp(akid, X509_get0_subject_key_id(p->dca)), 0);
    assert_int_equal(X509_get_ext_count(x), 5);

    /* Signature: SHA-256 by the device CA; the chain verifies for client auth. */
    assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
    assert_int_equal(X509_verify(x, p->dca_key), 1);
    assert_int_equal(verify_chain(p, x), X509_V_OK);

    /* Fingerprint: SHA-256 over the DER. */
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    assert_true(len > 0);
    uint8_t md[32];
    unsigned int mdlen = 0;
    assert_int_equal(EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL), 1);
    assert_memory_equal(md, cred->fingerprint, 32);
    OPENSSL_free(der);
}

/* ---- the device CA ---------------------------------------------------------------------- */

static void test_ca_load(void **state)
{
    pki_t *p = *state;
    assert_int_equal(X509_cmp(mh_device_ca_cert(p->ca), p->dca), 0);
    char *root_pem = cert_pem(p->root);
    assert_string_equal(mh_device_ca_trust_pem(p->ca), root_pem);
    free(root_pem);
}

static void test_ca_load_refuses(void **state)
{
    pki_t *p = *state;
    char dir[64] = "/tmp/mh-test-badpki-XXXXXX";
    assert_non_null(mkdtemp(dir));

    /* Missing directory and missing files. */
    assert_null(mh_device_ca_load("/nonexistent/mh-pki"));
    assert_null(mh_device_ca_load(""));
    assert_null(mh_device_ca_load(dir));

    /* A key that is not the certificate's. */
    EVP_PKEY *other = EVP_EC_gen("P-256");
    write_key(dir, "device-ca.key", other);
    write_cert(dir, "device-ca.crt", p->dca);
    write_cert(dir, "ca.crt", p->root);
    assert_null(mh_device_ca_load(dir));

    /* A device CA that ca.crt does not vouch for. */
    EVP_PKEY *other_root_key = EVP_EC_gen("P-256");
    X509 *other_root = make_cert(other_root_key, "other root", NULL, NULL, 1);
    write_key(dir, "device-ca.key", p->dca_key);
    write_cert(dir, "ca.crt", other_root);
    assert_null(mh_device_ca_load(dir));

    /* ca.crt that holds no certificate. */
    write_file(dir, "ca.crt", "not a certificate\n", 0644);
    assert_null(mh_device_ca_load(dir));

    /* Back to good: loads. */
    write_cert(dir, "ca.crt", p->root);
    mh_device_ca_t *ca = mh_device_ca_load(dir);
    assert_non_null(ca);
    mh_device_ca_free(ca);

    /* A leaf certificate cannot be a device CA. */
    EVP_PKEY *leaf_key = EVP_EC_gen("P-256");
    X509 *leaf = make_cert(leaf_key, "leaf", p->root, p->root_key, 0);
    char *root_pem = cert_pem(p->root);
    assert_null(mh_device_ca_new(leaf_key, leaf, root_pem)); /* takes ownership */
    assert_null(mh_device_ca_new(NULL, NULL, root_pem));
    free(root_pem);

    X509_free(other_root);
    EVP_PKEY_free(other_root_key);
    EVP_PKEY_free(other);
    mh_device_ca_free(NULL);
    remove_tree(dir);
}

static void test_ca_new(void **state)
{
    pki_t *p = *state;
    char *root_pem = cert_pem(p->root);
    EVP_PKEY_up_ref(p->dca_key);
    X509_up_ref(p->dca);
    mh_device_ca_t *ca = mh_device_ca_new(p->dca_key, p->dca, root_pem);
    assert_non_null(ca);
    assert_string_equal(mh_device_ca_trust_pem(ca), root_pem);
    free(root_pem);

    mh_device_cred_t cred;
    assert_int_equal(mh_device_ca_issue(ca, device_id, NULL, &cred), 0);
    X509 *x = parse_cert(cred.cert_pem);
    check_device_cert(p, x, &cred, MH_CERT_DAYS_DEFAULT);
    X509_free(x);
    mh_device_cred_dispose(&cred);
    mh_device_ca_free(ca);
}

/* ---- issuing ---------------------------------------------------------------------------- */

static void test_issue(void **state)
{
    pki_t *p = *state;
    mh_device_cred_t cred;
    assert_int_equal(mh_device_ca_issue(p->ca, device_id, NULL, &cred), 0);
    assert_non_null(cred.cert_pem);
    assert_non_null(cred.key_pem);

    X509 *x = parse_cert(cred.cert_pem);
    check_device_cert(p, x, &cred, MH_CERT_DAYS_DEFAULT);

    /* notBefore is now (within a minute). */
    time_t now = time(NULL);
    int pday = 0, psec = 0;
    ASN1_TIME *t = ASN1_TIME_set(NULL, now);
    assert_int_equal(ASN1_TIME_diff(&pday, &psec, t, X509_get0_notBefore(x)), 1);
    assert_int_equal(pday, 0);
    assert_true(psec > -60 && psec <= 0);
    ASN1_TIME_free(t);

    /* The key: P-256, the certificate's, and encoded exactly as OpenSSL's own encoder would
     * (the library writes the PKCS#8 and SubjectPublicKeyInfo of P-256 keys directly). */
    EVP_PKEY *key = parse_key(cred.key_pem);
    assert_true(EVP_PKEY_is_a(key, "EC"));
    char group[32];
    size_t glen = 0;
    assert_int_equal(EVP_PKEY_get_group_name(key, group, sizeof(group), &glen), 1);
    assert_string_equal(group, "prime256v1");
    assert_int_equal(EVP_PKEY_eq(key, X509_get0_pubkey(x)), 1);
    assert_int_equal(X509_check_private_key(x, key), 1);

    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL), 1);
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    assert_int_equal((size_t)len, strlen(cred.key_pem));
    assert_memory_equal(data, cred.key_pem, (size_t)len);
    BIO_free(bio);

    unsigned char *spki_cert = NULL, *spki_key = NULL;
    int l1 = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki_cert);
    int l2 = i2d_PUBKEY(key, &spki_key);
    assert_true(l1 > 0);
    assert_int_equal(l1, l2);
    assert_memory_equal(spki_cert, spki_key, (size_t)l1);
    OPENSSL_free(spki_cert);
    OPENSSL_free(spki_key);

    EVP_PKEY_free(key);
    X509_free(x);
    mh_device_cred_dispose(&cred);
    assert_null(cred.key_pem);
    assert_null(cred.cert_pem);
    mh_device_cred_dispose(&cred); /* twice is harmless */
}

static void test_issue_unique(void **state)
{
    pki_t *p = *state;
    mh_device_cred_t a, b;
    assert_int_equal(mh_device_ca_issue(p->ca, device_id, NULL, &a), 0);
    assert_int_equal(mh_device_ca_issue(p->ca, device_id, NULL, &b), 0);
    X509 *xa = parse_cert(a.cert_pem), *xb = parse_cert(b.cert_pem);
    assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(xa), X509_get0_serialNumber(xb)),
                         0);
    assert_memory_not_equal(a.fingerprint, b.fingerprint, MH_FINGERPRINT_LEN);
    assert_string_not_equal(a.key_pem, b.key_pem);
    X509_free(xa);
    X509_free(xb);
    mh_device_cred_dispose(&a);
    mh_device_cred_dispose(&b);
}

static void test_issue_validity(void **state)
{
    pki_t *p = *state;
    mh_issue_opts_t opts;
    mh_issue_opts_init(&opts);
    assert_int_equal(opts.days, MH_CERT_DAYS_DEFAULT);
    assert_int_equal(opts.not_before_days_ago, 0);

    /* An expired certificate, for negative tests: two days back, valid one day. */
    opts.days = 1;
    opts.not_before_days_ago = 2;
    mh_device_cred_t cred;
    assert_int_equal(mh_device_ca_issue(p->ca, device_id, &opts, &cred), 0);
    X509 *x = parse_cert(cred.cert_pem);
    assert_true(X509_cmp_current_time(X509_get0_notAfter(x)) < 0);
    assert_int_equal(verify_chain(p, x), X509_V_ERR_CERT_HAS_EXPIRED);
    X509_free(x);
    mh_device_cred_dispose(&cred);

    opts.days = 30;
    opts.not_before_days_ago = 0;
    assert_int_equal(mh_device_ca_issue(p->ca, device_id, &opts, &cred), 0);
    x = parse_cert(cred.cert_pem);
    check_device_cert(p, x, &cred, 30);
    X509_free(x);
    mh_device_cred_dispose(&cred);
}

static void test_issue_refuses(void **state)
{
    pki_t *p = *state;
    mh_device_cred_t cred;
    mh_issue_opts_t opts;
    static const mh_device_cred_t zero;

    assert_int_equal(mh_device_ca_issue(p->ca, "not-an-id", NULL, &cred), -1);
    assert_memory_equal(&cred, &zero, sizeof(cred));
    assert_int_equal(mh_device_ca_issue(p->ca, "0123456789ABCDEF0123456789ABCDEF", NULL, &cred),
                     -1);
    mh_issue_opts_init(&opts);
    opts.days = 0;
    assert_int_equal(mh_device_ca_issue(p->ca, device_id, &opts, &cred), -1);
    opts.days = MH_CERT_DAYS_MAX + 1;
    assert_int_equal(mh_device_ca_issue(p->ca, device_id, &opts, &cred), -1);
    opts.days = 10;
    opts.not_before_days_ago = -1;
    assert_int_equal(mh_device_ca_issue(p->ca, device_id, &opts, &cred), -1);
    assert_memory_equal(&cred, &zero, sizeof(cred));
}

/* ---- CSRs ------------------------------------------------------------------------------- */

/* A PEM CSR carrying pub_key, signed with sign_key, asking for a subject and extensions a
 * device must never get. */
static char *make_csr(EVP_PKEY *pub_key, EVP_PKEY *sign_key, const EVP_MD *md)
{
    X509_REQ *req = X509_REQ_new();
    X509_REQ_set_version(req, 0);
    X509_NAME *name = X509_REQ_get_subject_name(req);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"evil corp", -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)"ffffffffffffffffffffffffffffffff", -1, -1,
                               0);
    assert_int_equal(X509_REQ_set_pubkey(req, pub_key), 1);
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, NULL, NULL, req, NULL, 0);
    sk_X509_EXTENSION_push(exts,
                           X509V3_EXT_nconf_nid(NULL, &ctx, NID_basic_constraints, "CA:TRUE"));
    sk_X509_EXTENSION_push(exts, X509V3_EXT_nconf_nid(NULL, &ctx, NID_key_usage, "keyCertSign"));
    sk_X509_EXTENSION_push(exts,
                           X509V3_EXT_nconf_nid(NULL, &ctx, NID_subject_alt_name, "DNS:evil"));
    assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    assert_true(X509_REQ_sign(req, sign_key, md) > 0);

    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509_REQ(bio, req), 1);
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    char *s = strndup(data, (size_t)len);
    BIO_free(bio);
    X509_REQ_free(req);
    return s;
}

static void check_csr_cert(pki_t *p, EVP_PKEY *key)
{
    char *csr = make_csr(key, key, EVP_sha256());
    mh_device_cred_t cred;
    assert_int_equal(mh_device_ca_sign_csr(p->ca, device_id, csr, strlen(csr), NULL, &cred), 0);
    assert_null(cred.key_pem);
    X509 *x = parse_cert(cred.cert_pem);
    /* Only the public key came from the request. */
    check_device_cert(p, x, &cred, MH_CERT_DAYS_DEFAULT);
    assert_int_equal(EVP_PKEY_eq(key, X509_get0_pubkey(x)), 1);
    assert_int_equal(X509_get_ext_by_NID(x, NID_subject_alt_name, -1), -1);
    X509_free(x);
    mh_device_cred_dispose(&cred);
    free(csr);
}

static void test_csr_sign(void **state)
{
    pki_t *p = *state;
    EVP_PKEY *p256 = EVP_EC_gen("P-256");
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    check_csr_cert(p, p256);
    check_csr_cert(p, p384);
    check_csr_cert(p, rsa);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(rsa);
}

static char *der_to_pem(const unsigned char *der, long len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_true(PEM_write_bio(bio, "CERTIFICATE REQUEST", "", der, len) > 0);
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(bio);
    return s;
}

static void test_csr_bad_signature(void **state)
{
    pki_t *p = *state;
    mh_device_cred_t cred;
    static const mh_device_cred_t zero;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    EVP_PKEY *other = EVP_EC_gen("P-256");

    /* Signed by another key than the one it carries: no proof of possession. */
    char *csr = make_csr(key, other, EVP_sha256());
    assert_int_equal(mh_device_ca_sign_csr(p->ca, device_id, csr, strlen(csr), NULL, &cred), -1);
    assert_memory_equal(&cred, &zero, sizeof(cred));
    assert_int_equal(mh_csr_check(csr, strlen(csr)), MH_CSR_BAD_SIGNATURE);
    free(csr);

    /* A well-formed request whose signature was altered: the last byte of the DER is the last
     * byte of the ECDSA signature's s. */
    csr = make_csr(key, key, EVP_sha256());
    BIO *bio = BIO_new_mem_buf(csr, -1);
    X509_REQ *req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(req);
    unsigned char *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    assert_true(len > 0);
    der[len - 1] ^= 0x01;
    char *bad = der_to_pem(der, len);
    assert_int_equal(mh_device_ca_sign_csr(p->ca, device_id, bad, strlen(bad), NULL, &cred), -1);
    assert_int_equal(mh_csr_check(bad, strlen(bad)), MH_CSR_BAD_SIGNATURE);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(mh_csr_check(csr, strlen(csr)), MH_CSR_OK);
    /* The untouched request is fine, so the refusal was the signature. */
    assert_int_equal(mh_device_ca_sign_csr(p->ca, device_id, csr, strlen(csr), NULL, &cred), 0);
    mh_device_cred_dispose(&cred);

    free(bad);
    OPENSSL_free(der);
    X509_REQ_free(req);
    free(csr);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

static void test_csr_refuses(void **state)
{
    pki_t *p = *state;
    mh_device_cred_t cred;

    /* Key types we do not accept. */
    EVP_PKEY *keys[3] = {EVP_EC_gen("P-521"), EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"),
                         EVP_RSA_gen(1024)};
    const EVP_MD *mds[3] = {EVP_sha256(), NULL, EVP_sha256()};
    for (int i = 0; i < 3; i++) {
        assert_non_null(keys[i]);
        char *csr = make_csr(keys[i], keys[i], mds[i]);
        assert_int_equal(mh_device_ca_sign_csr(p->ca, device_id, csr, strlen(csr), NULL, &cred),
                         -1);
        assert_int_equal(mh_csr_check(csr, strlen(csr)), MH_CSR_KEY_REFUSED);
        free(csr);
        EVP_PKEY_free(keys[i]);
    }

    /* Not a CSR, empty, too large, a bad device id. */
    const char junk[] = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE "
                        "REQUEST-----\n";
    assert_int_equal(mh_device_ca_sign_csr(p->ca, device_id, junk, strlen(junk), NULL, &cred), -1);
    assert_int_equal(mh_csr_check(junk, strlen(junk)), MH_CSR_MALFORMED);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(mh_csr_check("", 0), MH_CSR_MALFORMED);
    assert_int_equal(mh_csr_check(NULL, 10), MH_CSR_MALFORMED);
    assert_non_null(strstr(mh_csr_status_text(MH_CSR_MALFORMED), "16384"));
    assert_int_equal(mh_device_ca_sign_csr(p->ca, device_id, "", 0, NULL, &cred), -1);
    assert_int_equal(mh_device_ca_sign_csr(p->ca, device_id, NULL, 10, NULL, &cred), -1);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    char *csr = make_csr(key, key, EVP_sha256());
    size_t big = MH_CSR_MAX_BYTES + 1;
    char *padded = calloc(1, big + 1);
    memcpy(padded, csr, strlen(csr));
    memset(padded + strlen(csr), '\n', big - strlen(csr));
    assert_int_equal(mh_device_ca_sign_csr(p->ca, device_id, padded, big, NULL, &cred), -1);
    assert_int_equal(mh_csr_check(padded, big), MH_CSR_MALFORMED);
    assert_int_equal(mh_device_ca_sign_csr(p->ca, "nope", csr, strlen(csr), NULL, &cred), -1);
    /* A length shorter than the text: the request is cut, hence refused. */
    assert_int_equal(mh_device_ca_sign_csr(p->ca, device_id, csr, strlen(csr) / 2, NULL, &cred),
                     -1);
    free(padded);
    free(csr);
    EVP_PKEY_free(key);
}

/* ---- pure helpers ----------------------------------------------------------------------- */

static void test_account_name(void **state)
{
    (void)state;
    assert_true(mh_account_name_valid("a"));
    assert_true(mh_account_name_valid("acme"));
    assert_true(mh_account_name_valid("Jo.Smith_1@example-home"));
    assert_true(mh_account_name_valid("0x"));
    char max[MH_ACCOUNT_NAME_MAX + 2];
    memset(max, 'a', sizeof(max));
    max[MH_ACCOUNT_NAME_MAX] = '\0';
    assert_true(mh_account_name_valid(max));
    max[MH_ACCOUNT_NAME_MAX] = 'a';
    max[MH_ACCOUNT_NAME_MAX + 1] = '\0';
    assert_false(mh_account_name_valid(max));
    assert_false(mh_account_name_valid(NULL));
    assert_false(mh_account_name_valid(""));
    assert_false(mh_account_name_valid(".acme"));
    assert_false(mh_account_name_valid("-acme"));
    assert_false(mh_account_name_valid("ac me"));
    assert_false(mh_account_name_valid("acme;drop"));
    assert_false(mh_account_name_valid("acm\xc3\xa9"));
    assert_false(mh_account_name_valid("a\"b"));
}

static void test_sensor_cycle(void **state)
{
    (void)state;
    static const char *const want[4][3] = {{"electricity", "counter", "Wh"},
                                           {"gas", "counter", "L"},
                                           {"water", "counter", "L"},
                                           {"electricity", "gauge", "W"}};
    for (size_t i = 0; i < 9; i++) {
        const mh_sensor_spec_t *s = mh_sensor_spec_cycle(i);
        assert_string_equal(s->kind, want[i % 4][0]);
        assert_string_equal(s->type, want[i % 4][1]);
        assert_string_equal(s->unit, want[i % 4][2]);
    }
}

/* ---- batches and files ------------------------------------------------------------------ */

static size_t progress_calls;

static void count_progress(const char *phase, size_t done, size_t total, void *arg)
{
    (void)phase;
    (void)arg;
    assert_true(done <= total);
    progress_calls++;
}

static void test_batch_generate(void **state)
{
    pki_t *p = *state;
    progress_calls = 0;
    mh_prov_batch_t *b = mh_prov_batch_generate(p->ca, 3, 5, NULL, count_progress, NULL);
    assert_non_null(b);
    assert_int_equal(b->count, 3);
    assert_int_equal(progress_calls, 1);
    for (size_t i = 0; i < b->count; i++) {
        const mh_prov_device_t *d = &b->devices[i];
        assert_true(mh_id_valid(d->cred.id));
        assert_non_null(d->cred.key_pem);
        assert_int_equal(d->nsensors, 5);
        for (size_t s = 0; s < d->nsensors; s++) {
            assert_true(mh_id_valid(d->sensor_ids[s]));
            assert_string_not_equal(d->sensor_ids[s], d->cred.id);
        }
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(d->cred.id, b->devices[j].cred.id);
        X509 *x = parse_cert(d->cred.cert_pem);
        char cn[64];
        assert_int_equal(mh_cert_subject_cn(x, cn, sizeof(cn)), 0);
        assert_string_equal(cn, d->cred.id);
        assert_int_equal(verify_chain(p, x), X509_V_OK);
        X509_free(x);
    }
    mh_prov_batch_free(b);

    b = mh_prov_batch_generate(p->ca, 1, 0, NULL, NULL, NULL);
    assert_non_null(b);
    assert_int_equal(b->devices[0].nsensors, 0);
    mh_prov_batch_free(b);

    assert_null(mh_prov_batch_generate(p->ca, 0, 1, NULL, NULL, NULL));
    assert_null(mh_prov_batch_generate(p->ca, MH_PROV_MAX_DEVICES + 1, 1, NULL, NULL, NULL));
    assert_null(mh_prov_batch_generate(p->ca, 1, MH_PROV_MAX_SENSORS + 1, NULL, NULL, NULL));
    mh_prov_batch_free(NULL);
}

/* Entries of dir, "." and ".." excepted; staging counts those named .mh-staging-*. */
static size_t count_entries(const char *dir, size_t *staging)
{
    size_t n = 0;
    *staging = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        n++;
        if (strncmp(e->d_name, ".mh-staging-", 12) == 0)
            (*staging)++;
    }
    closedir(d);
    return n;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static mode_t file_mode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static void test_stage_many(void **state)
{
    pki_t *p = *state;
    char root[64] = "/tmp/mh-test-out-XXXXXX";
    char out[128], path[256];
    size_t staging;
    assert_non_null(mkdtemp(root));
    /* out does not exist yet: created, parents included. */
    snprintf(out, sizeof(out), "%s/a/b", root);

    mh_prov_batch_t *b = mh_prov_batch_generate(p->ca, 3, 1, NULL, NULL, NULL);
    assert_non_null(b);

    /* Staged then discarded: nothing is left. */
    mh_prov_stage_t *st = mh_prov_stage_write(b, out, "TRUST\n", NULL, NULL);
    assert_non_null(st);
    assert_int_equal(count_entries(out, &staging), 1);
    assert_int_equal(staging, 1);
    mh_prov_stage_discard(st);
    mh_prov_stage_free(st);
    assert_int_equal(count_entries(out, &staging), 0);

    /* Staged then published: one directory per device, no staging left. */
    st = mh_prov_stage_write(b, out, "TRUST\n", NULL, NULL);
    assert_non_null(st);
    assert_int_equal(mh_prov_stage_publish(st), 0);
    mh_prov_stage_discard(st); /* after publishing: must not touch the published files */
    mh_prov_stage_free(st);
    assert_int_equal(count_entries(out, &staging), 3);
    assert_int_equal(staging, 0);
    for (size_t i = 0; i < b->count; i++) {
        const mh_prov_device_t *d = &b->devices[i];
        snprintf(path, sizeof(path), "%s/%s/device.key", out, d->cred.id);
        assert_int_equal(file_mode(path), 0600);
        char *s = slurp(path);
        assert_string_equal(s, d->cred.key_pem);
        free(s);
        snprintf(path, sizeof(path), "%s/%s/device.crt", out, d->cred.id);
        s = slurp(path);
        assert_string_equal(s, d->cred.cert_pem);
        free(s);
        snprintf(path, sizeof(path), "%s/%s/ca.crt", out, d->cred.id);
        s = slurp(path);
        assert_string_equal(s, "TRUST\n");
        free(s);
    }

    /* Out is a file: refused, nothing written. */
    snprintf(path, sizeof(path), "%s/file", root);
    write_file(root, "file", "x", 0644);
    assert_null(mh_prov_stage_write(b, path, "TRUST\n", NULL, NULL));

    mh_prov_batch_free(b);
    remove_tree(root);
}

static void test_stage_single(void **state)
{
    pki_t *p = *state;
    char out[64] = "/tmp/mh-test-out1-XXXXXX";
    char path[256];
    size_t staging;
    assert_non_null(mkdtemp(out));

    mh_prov_batch_t *b = mh_prov_batch_generate(p->ca, 1, 2, NULL, NULL, NULL);
    assert_non_null(b);
    write_file(out, "device.key", "old key", 0600);
    mh_prov_stage_t *st = mh_prov_stage_write(b, out, "TRUST\n", NULL, NULL);
    assert_non_null(st);
    /* Until published, the old files are untouched. */
    snprintf(path, sizeof(path), "%s/device.key", out);
    char *s = slurp(path);
    assert_string_equal(s, "old key");
    free(s);
    assert_int_equal(mh_prov_stage_publish(st), 0);
    mh_prov_stage_free(st);

    assert_int_equal(count_entries(out, &staging), 3);
    assert_int_equal(staging, 0);
    assert_int_equal(file_mode(path), 0600);
    s = slurp(path);
    assert_string_equal(s, b->devices[0].cred.key_pem);
    free(s);
    snprintf(path, sizeof(path), "%s/device.crt", out);
    s = slurp(path);
    assert_string_equal(s, b->devices[0].cred.cert_pem);
    free(s);
    snprintf(path, sizeof(path), "%s/ca.crt", out);
    s = slurp(path);
    assert_string_equal(s, "TRUST\n");
    free(s);

    mh_prov_batch_free(b);
    remove_tree(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ca_load),
        cmocka_unit_test(test_ca_load_refuses),
        cmocka_unit_test(test_ca_new),
        cmocka_unit_test(test_issue),
        cmocka_unit_test(test_issue_unique),
        cmocka_unit_test(test_issue_validity),
        cmocka_unit_test(test_issue_refuses),
        cmocka_unit_test(test_csr_sign),
        cmocka_unit_test(test_csr_bad_signature),
        cmocka_unit_test(test_csr_refuses),
        cmocka_unit_test(test_account_name),
        cmocka_unit_test(test_sensor_cycle),
        cmocka_unit_test(test_batch_generate),
        cmocka_unit_test(test_stage_many),
        cmocka_unit_test(test_stage_single),
    };
    return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}
